// Command train-examples regenerates the example projects' data products from data/wine and
// data/diabetes: each example's held-out validation fixture and its ONNX model. Same inputs,
// same bytes out: run it twice and nothing changes.
//
//	go run ./cmd/train-examples
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"

	"github.com/modelship/modelship/internal/ml/examples"
)

func main() {
	var opts examples.Options
	flag.StringVar(&opts.DataDir, "data", "data", "folder holding wine/ and diabetes/ from python3-sklearn")
	flag.StringVar(&opts.OutputDir, "out", "examples", "folder holding the wine-classifier/ and diabetes-regression/ example projects")
	flag.IntVar(&opts.WineEpochs, "wine-epochs", 0, "train the wine model this many epochs (default 100, the shipped model); fewer makes another candidate")
	flag.Parse()

	report, err := examples.Generate(opts)
	if err != nil {
		slog.Error("train example artifacts", "err", err)
		os.Exit(1)
	}
	w, d := report.Wine, report.Diabetes
	fmt.Printf("wine: train=%d validation=%d accuracy=%.4f macro_f1=%.4f recall=%.4f\n",
		w.TrainSamples, w.ValidationSamples, w.Accuracy, w.MacroF1, w.Recall)
	fmt.Printf("diabetes: train=%d validation=%d mae=%.4f rmse=%.4f r2=%.4f\n",
		d.TrainSamples, d.ValidationSamples, d.MAE, d.RMSE, d.R2)
}
