// Package examples builds the two example user projects under examples/ from public data
// shipped in data/: a wine classifier (a small perceptron) and a diabetes regression (a ridge
// linear model), each with its held-out validation fixture and its ONNX model. Splits and
// training are seeded and run in plain float64 Go, so a rerun gives the same bytes.
package examples

import (
	"fmt"
	"math"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/modelship/modelship/internal/plumbing/atomicfile"
)

const (
	// Seed drives both splits and the wine model's initial weights and batch order.
	Seed = 42
	// ProducerVersion is written into the ONNX files; bump it when training changes.
	ProducerVersion = "train-examples/1"
	// debianSource is where every data file in data/wine and data/diabetes was copied from.
	debianSource = "Debian python3-sklearn 1.2.1+dfsg-1"
)

// The outputs, relative to Options.OutputDir and slash-separated.
const (
	WineFixturePath     = "wine-classifier/fixtures/validation.json"
	WineModelPath       = "wine-classifier/model/wine.onnx"
	DiabetesFixturePath = "diabetes-regression/fixtures/validation.json"
	DiabetesModelPath   = "diabetes-regression/model/diabetes.onnx"
)

// Outputs lists every file Generate writes, relative to Options.OutputDir.
var Outputs = []string{WineFixturePath, WineModelPath, DiabetesFixturePath, DiabetesModelPath}

// Options names the input and output folders.
type Options struct {
	DataDir   string // the repository's data/, holding wine/ and diabetes/
	OutputDir string // the repository's examples/, where wine-classifier/ and diabetes-regression/ go
	// WineEpochs trains the wine model for this many epochs instead of the shipped model's 100.
	WineEpochs int
}

// Report says how both models did on their validation sets.
type Report struct {
	Wine     ClassificationReport
	Diabetes RegressionReport
}

// Generate trains both models and writes the two fixtures and the two ONNX files. Nothing is
// written unless both examples build, so a failure leaves the previous files in place.
func Generate(opts Options) (*Report, error) {
	wine, wineFiles, err := buildWine(opts.DataDir, opts.WineEpochs)
	if err != nil {
		return nil, err
	}
	diabetes, diabetesFiles, err := buildDiabetes(opts.DataDir)
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{}
	for _, built := range []map[string][]byte{wineFiles, diabetesFiles} {
		for rel, data := range built {
			files[rel] = data
		}
	}
	// Write in a fixed order so a failure always stops at the same file.
	for _, rel := range Outputs {
		if err := atomicfile.Write(filepath.Join(opts.OutputDir, filepath.FromSlash(rel)), files[rel]); err != nil {
			return nil, fmt.Errorf("write example output: %w", err)
		}
	}
	return &Report{Wine: *wine, Diabetes: *diabetes}, nil
}

// parseFinite reads one data value; NaN and infinities would poison the scaling and the fit.
func parseFinite(field string) (float64, error) {
	v, err := strconv.ParseFloat(strings.TrimSpace(field), 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("%q is not a finite number", field)
	}
	return v, nil
}
