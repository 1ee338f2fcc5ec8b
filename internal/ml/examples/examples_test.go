package examples_test

import (
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelship/modelship/internal/gate"
	"github.com/modelship/modelship/internal/ml/dataset"
	"github.com/modelship/modelship/internal/ml/examples"
	"github.com/modelship/modelship/internal/ml/inference"
	"github.com/modelship/modelship/internal/plumbing/projectpath"
)

// generate regenerates every example output into a fresh folder.
func generate(t *testing.T) (*examples.Report, string) {
	t.Helper()
	dir := t.TempDir()
	report, err := examples.Generate(examples.Options{DataDir: projectpath.Join(t, "data"), OutputDir: dir})
	require.NoError(t, err)
	return report, dir
}

// Regenerating from the shipped data must give the shipped bytes: the files under examples/
// are exactly what `go run ./cmd/train-examples` makes, so they cannot drift from it.
func TestGenerateReproducesTheShippedExamples(t *testing.T) {
	report, dir := generate(t)
	w, d := report.Wine, report.Diabetes
	t.Logf("wine: train %d, validation %d, accuracy %.4f, recall %.4f, macro F1 %.4f",
		w.TrainSamples, w.ValidationSamples, w.Accuracy, w.Recall, w.MacroF1)
	t.Logf("diabetes: train %d, validation %d, MAE %.4f, RMSE %.4f, R² %.4f",
		d.TrainSamples, d.ValidationSamples, d.MAE, d.RMSE, d.R2)
	assert.Equal(t, []int{133, 45}, []int{w.TrainSamples, w.ValidationSamples})
	assert.Equal(t, []int{332, 110}, []int{d.TrainSamples, d.ValidationSamples})
	assert.GreaterOrEqual(t, w.Accuracy, 0.9)
	assert.GreaterOrEqual(t, d.R2, 0.35)

	for _, rel := range examples.Outputs {
		got, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(rel)))
		require.NoError(t, err)
		want, err := os.ReadFile(projectpath.Join(t, "examples/"+rel))
		require.NoError(t, err)
		assert.True(t, string(got) == string(want), "examples/%s differs from a fresh run of train-examples; regenerate it with `go run ./cmd/train-examples`", rel)
	}
}

// The shipped ONNX wine model, fed the shipped fixture's raw features, must give what the Go
// network gives on standardised ones: this is what proves the folded scaling right.
func TestShippedWineModelMatchesTheGoModel(t *testing.T) {
	report, _ := generate(t)
	fixture, model := loadShipped(t, examples.WineFixturePath, examples.WineModelPath)
	assert.Equal(t, inference.TensorSpec{Name: "input", Datatype: "FP32", Shape: []int64{-1, 13}}, model.Input())
	require.Len(t, fixture.Samples, len(report.Wine.Probabilities))

	out := infer(t, model, fixture)
	require.Equal(t, "probabilities", out.Name)
	require.Equal(t, []int{len(fixture.Samples), examples.WineClasses}, out.Shape)
	correct, worst := 0, 0.0
	for i, want := range report.Wine.Probabilities {
		row := out.Data[i*examples.WineClasses : (i+1)*examples.WineClasses]
		for k, p := range want {
			assert.InDelta(t, p, row[k], 1e-4, "sample %s, class %d", fixture.SampleID(i), k)
			worst = max(worst, math.Abs(p-float64(row[k])))
		}
		if inference.ArgmaxRow(row) == fixture.Samples[i].Label {
			correct++
		}
	}
	t.Logf("largest ONNX-vs-Go probability difference: %.2g", worst)
	assert.Equal(t, report.Wine.Accuracy, float64(correct)/float64(len(fixture.Samples)), "the ONNX model scores what the Go model scores")
}

func TestShippedDiabetesModelMatchesTheGoModel(t *testing.T) {
	report, _ := generate(t)
	fixture, model := loadShipped(t, examples.DiabetesFixturePath, examples.DiabetesModelPath)
	assert.Equal(t, inference.TensorSpec{Name: "input", Datatype: "FP32", Shape: []int64{-1, 10}}, model.Input())
	assert.Equal(t, []inference.TensorSpec{{Name: "value", Datatype: "FP32", Shape: []int64{-1, 1}}}, model.Outputs())
	require.Len(t, fixture.Samples, len(report.Diabetes.Predictions))

	out := infer(t, model, fixture)
	require.Equal(t, []int{len(fixture.Samples), 1}, out.Shape)
	worst := 0.0
	for i, want := range report.Diabetes.Predictions {
		assert.InDelta(t, want, out.Data[i], 1e-4, "sample %s", fixture.SampleID(i))
		worst = max(worst, math.Abs(want-float64(out.Data[i])))
	}
	t.Logf("largest ONNX-vs-Go prediction difference: %.2g", worst)
}

// The baselines are written by hand; the gate's own checks against them must pass for the
// shipped models, or the examples' quality gate would fail.
func TestShippedBaselinesAreMetByTheModels(t *testing.T) {
	report, _ := generate(t)
	w, d := report.Wine, report.Diabetes
	for _, ex := range []struct {
		baseline, model, task string
		metrics               gate.Metrics
	}{
		{"examples/wine-classifier/model_baseline.json", "wine", dataset.TaskClassification, gate.Metrics{Task: dataset.TaskClassification,
			Accuracy: w.Accuracy, PerClassRecall: w.Recall, MinClassRecall: slices.Min(w.Recall), MacroF1: w.MacroF1}},
		{"examples/diabetes-regression/model_baseline.json", "diabetes", dataset.TaskRegression, gate.Metrics{Task: dataset.TaskRegression,
			MAE: d.MAE, RMSE: d.RMSE, R2: d.R2}},
	} {
		b, err := gate.LoadBaseline(projectpath.Join(t, ex.baseline))
		require.NoError(t, err)
		assert.Equal(t, []string{ex.model, ex.task}, []string{b.Model, b.TaskOf()})
		checks := gate.Checks(ex.metrics, b)
		require.Greater(t, len(checks), 1, "%s: the baseline sets floors beyond latency", ex.baseline)
		for _, c := range checks {
			assert.True(t, c.Passed, "%s: %s", ex.baseline, c.Message)
		}
	}
}

func TestGenerateFailsOnMissingDataAndWritesNothing(t *testing.T) {
	data, out := t.TempDir(), t.TempDir()
	_, err := examples.Generate(examples.Options{DataDir: data, OutputDir: out})
	require.ErrorContains(t, err, "wine_data.csv")
	entries, err := os.ReadDir(out)
	require.NoError(t, err)
	assert.Empty(t, entries, "nothing is written when an input is missing")
}

func loadShipped(t *testing.T, fixturePath, modelPath string) (*dataset.Fixture, *inference.Model) {
	t.Helper()
	fixture, err := dataset.ReadFixture(projectpath.Join(t, "examples/"+fixturePath))
	require.NoError(t, err)
	model, err := inference.Load(projectpath.Join(t, "examples/"+modelPath))
	require.NoError(t, err)
	return fixture, model
}

// infer runs every fixture sample through the model in one batch and returns its one output.
func infer(t *testing.T, model *inference.Model, fixture *dataset.Fixture) inference.Output {
	t.Helper()
	var batch []float32
	for _, s := range fixture.Samples {
		for _, v := range s.Features {
			batch = append(batch, float32(v))
		}
	}
	outs, err := model.Infer(len(fixture.Samples), batch)
	require.NoError(t, err)
	require.Len(t, outs, 1)
	return outs[0]
}
