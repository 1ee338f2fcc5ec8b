// Package reference builds the project's reference artifacts from the digits data: the
// validation fixture the quality gate runs, the reference model, and a weak model that the
// gate must reject. Everything is seeded, so the outputs are byte-for-byte reproducible.
package reference

import (
	"fmt"
	"math/rand/v2"
	"strconv"

	"github.com/modelship/modelship/internal/ml/dataset"
	"github.com/modelship/modelship/internal/ml/mlp"
	"github.com/modelship/modelship/internal/plumbing/atomicfile"
)

const (
	// Seed drives the split, the initial weights and the batch order.
	Seed = 42
	// ValidationSamples is the held-out share: 450 of 1,797 rows, just over 25%.
	ValidationSamples = 450
	// ProducerVersion is written into the ONNX files; bump it when training changes.
	ProducerVersion = "train-reference/1"
)

// Options names the input and the three outputs.
type Options struct {
	DataPath, FixturePath, ModelPath, WeakModelPath string
}

// Report says what was produced.
type Report struct {
	TrainSamples, ValidationSamples int
	ReferenceAccuracy, WeakAccuracy float64
}

// Generate trains both models and writes the fixture and the two ONNX files.
func Generate(opts Options) (*Report, error) {
	samples, err := dataset.LoadDigitsCSV(opts.DataPath)
	if err != nil {
		return nil, err
	}
	train, validation, err := dataset.Split(samples, Seed, ValidationSamples)
	if err != nil {
		return nil, fmt.Errorf("split digits: %w", err)
	}
	x, y := columns(train)
	vx, vy := columns(validation)

	cfg := mlp.DefaultConfig()
	cfg.Seed = Seed
	ref, err := mlp.Train(cfg, x, y, dataset.DigitsClasses)
	if err != nil {
		return nil, fmt.Errorf("train reference model: %w", err)
	}
	// The weak model learns from labels shuffled against their images: it has seen the
	// data but cannot have learnt the task, so it scores near chance (0.1).
	shuffled := append([]int(nil), y...)
	rand.New(rand.NewPCG(Seed, Seed+1)).Shuffle(len(shuffled), func(i, j int) {
		shuffled[i], shuffled[j] = shuffled[j], shuffled[i]
	})
	weak, err := mlp.Train(cfg, x, shuffled, dataset.DigitsClasses)
	if err != nil {
		return nil, fmt.Errorf("train weak model: %w", err)
	}
	report := &Report{TrainSamples: len(train), ValidationSamples: len(validation),
		ReferenceAccuracy: ref.Accuracy(vx, vy), WeakAccuracy: weak.Accuracy(vx, vy)}

	fixture := &dataset.Fixture{
		Dataset:  "uci-digits",
		Source:   "data/digits/digits.csv.gz (Debian python3-sklearn 1.2.1+dfsg-1)",
		License:  "BSD-3-Clause, Scikit-Learn Developers; see data/digits/README.md",
		Seed:     Seed,
		Features: dataset.DigitsFeatures,
		Classes:  dataset.DigitsClasses,
		Samples:  validation,
	}
	fixtureBytes, err := fixture.Marshal()
	if err != nil {
		return nil, fmt.Errorf("render validation fixture: %w", err)
	}
	refBytes, err := ref.ExportONNX(ProducerVersion, modelProps("reference", report.ReferenceAccuracy))
	if err != nil {
		return nil, fmt.Errorf("export reference model: %w", err)
	}
	weakBytes, err := weak.ExportONNX(ProducerVersion, modelProps("weak-shuffled-labels", report.WeakAccuracy))
	if err != nil {
		return nil, fmt.Errorf("export weak model: %w", err)
	}
	for path, data := range map[string][]byte{opts.FixturePath: fixtureBytes, opts.ModelPath: refBytes, opts.WeakModelPath: weakBytes} {
		if err := atomicfile.Write(path, data); err != nil {
			return nil, err
		}
	}
	return report, nil
}

func columns(samples []dataset.Sample) ([][]float64, []int) {
	x := make([][]float64, len(samples))
	y := make([]int, len(samples))
	for i, s := range samples {
		x[i], y[i] = s.Features, s.Label
	}
	return x, y
}

func modelProps(variant string, accuracy float64) map[string]string {
	return map[string]string{
		"dataset":             "uci-digits",
		"variant":             variant,
		"seed":                strconv.Itoa(Seed),
		"labels":              "0,1,2,3,4,5,6,7,8,9",
		"validation_accuracy": strconv.FormatFloat(accuracy, 'f', 4, 64),
	}
}
