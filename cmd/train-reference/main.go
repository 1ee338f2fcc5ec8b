// Command train-reference regenerates the reference data products from data/digits:
// the held-out validation fixture, the reference model and the deliberately weak model.
// Same inputs, same bytes out: run it twice and nothing changes.
//
//	go run ./cmd/train-reference
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"

	"github.com/modelship/modelship/internal/ml/reference"
)

func main() {
	var opts reference.Options
	flag.StringVar(&opts.DataPath, "data", "data/digits/digits.csv.gz", "digits CSV (gzip) from python3-sklearn")
	flag.StringVar(&opts.FixturePath, "fixture", "tests/fixtures/digits_validation.json", "where the validation set is written")
	flag.StringVar(&opts.ModelPath, "model", "models/digits-reference.onnx", "where the reference model is written")
	flag.StringVar(&opts.WeakModelPath, "weak-model", "models/digits-weak.onnx", "where the weak model (shuffled labels) is written")
	flag.StringVar(&opts.LayerNormModelPath, "layernorm-model", "models/digits-layernorm-opset17.onnx", "where the reference network at opset 17 with a LayerNormalization head is written (ONNX Runtime only)")
	flag.Parse()

	report, err := reference.Generate(opts)
	if err != nil {
		slog.Error("train reference artifacts", "err", err)
		os.Exit(1)
	}
	fmt.Printf("train=%d validation=%d reference_accuracy=%.4f weak_accuracy=%.4f\n",
		report.TrainSamples, report.ValidationSamples, report.ReferenceAccuracy, report.WeakAccuracy)
}
