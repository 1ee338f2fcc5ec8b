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

// Options names the input and the outputs.
type Options struct {
	DataPath, FixturePath, ModelPath, WeakModelPath string
	// LayerNormModelPath gets the reference network at opset 17 with a LayerNormalization
	// head: the model only ONNX Runtime serves, with the reference model's predictions.
	LayerNormModelPath string
}

// LayerNormVariant is the export LayerNormModelPath gets.
var LayerNormVariant = mlp.Variant{Opset: 17, Head: mlp.HeadLayerNorm}

// Report says what was produced.
type Report struct {
	TrainSamples, ValidationSamples int
	ReferenceAccuracy, WeakAccuracy float64
}

// split loads the digits and splits them into the training and validation sets.
func split(dataPath string) (train, validation []dataset.Sample, err error) {
	samples, err := dataset.LoadDigitsCSV(dataPath)
	if err != nil {
		return nil, nil, err
	}
	train, validation, err = dataset.Split(samples, Seed, ValidationSamples)
	if err != nil {
		return nil, nil, fmt.Errorf("split digits: %w", err)
	}
	return train, validation, nil
}

func trainReference(train []dataset.Sample) (*mlp.Network, error) {
	x, y := columns(train)
	cfg := mlp.DefaultConfig()
	cfg.Seed = Seed
	ref, err := mlp.Train(cfg, x, y, dataset.DigitsClasses)
	if err != nil {
		return nil, fmt.Errorf("train reference model: %w", err)
	}
	return ref, nil
}

// Variant trains the reference network again (seeded: the same weights) and exports it as v:
// the reference model at another opset, for the backends' tests.
func Variant(dataPath string, v mlp.Variant) ([]byte, error) {
	train, validation, err := split(dataPath)
	if err != nil {
		return nil, err
	}
	ref, err := trainReference(train)
	if err != nil {
		return nil, err
	}
	vx, vy := columns(validation)
	out, err := ref.ExportVariantONNX(v, mlp.DigitsDescription, ProducerVersion, modelProps(fmt.Sprintf("reference-opset%d-%s", v.Opset, v.Head), ref.Accuracy(vx, vy)))
	if err != nil {
		return nil, fmt.Errorf("export the reference model at opset %d: %w", v.Opset, err)
	}
	return out, nil
}

// SlowVariant is the reference network with a ballast head: gonnx runs it (opset 13), it
// predicts exactly what the reference model does, and a row takes it tens of milliseconds.
var SlowVariant = mlp.Variant{Opset: 13, Head: mlp.HeadBallast}

// SlowModel is the reference model made slow (SlowVariant), for tests of rollouts that judge
// a candidate by its latency: a candidate whose answers are right but late. It is not shipped
// (4.5 MB); training and exporting it takes well under a second.
func SlowModel(dataPath string) ([]byte, error) {
	return Variant(dataPath, SlowVariant)
}

// WriteSlowModel writes SlowModel to path.
func WriteSlowModel(dataPath, path string) error {
	raw, err := SlowModel(dataPath)
	if err != nil {
		return err
	}
	return atomicfile.Write(path, raw)
}

// Generate trains both models and writes the fixture and the ONNX files.
func Generate(opts Options) (*Report, error) {
	train, validation, err := split(opts.DataPath)
	if err != nil {
		return nil, err
	}
	x, y := columns(train)
	vx, vy := columns(validation)
	cfg := mlp.DefaultConfig()
	cfg.Seed = Seed
	ref, err := trainReference(train)
	if err != nil {
		return nil, err
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
	outputs := map[string][]byte{opts.FixturePath: fixtureBytes, opts.ModelPath: refBytes, opts.WeakModelPath: weakBytes}
	if opts.LayerNormModelPath != "" {
		v := LayerNormVariant
		ln, err := ref.ExportVariantONNX(v, mlp.DigitsDescription, ProducerVersion,
			modelProps(fmt.Sprintf("reference-opset%d-%s", v.Opset, v.Head), report.ReferenceAccuracy))
		if err != nil {
			return nil, fmt.Errorf("export the opset-%d model: %w", v.Opset, err)
		}
		outputs[opts.LayerNormModelPath] = ln
	}
	for path, data := range outputs {
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
