package gate_test

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelship/modelship/internal/gate"
	"github.com/modelship/modelship/internal/ml/dataset"
	"github.com/modelship/modelship/internal/plumbing/projectpath"
	"github.com/modelship/modelship/internal/testenv"
	"github.com/modelship/modelship/serving"
)

func TestRegressionMetrics(t *testing.T) {
	ev := &gate.Evaluation{Task: dataset.TaskRegression, Samples: 4,
		Targets: []float64{1, 2, 3, 4}, Values: []float64{1, 3, 3, 2}, Latencies: make([]time.Duration, 4)}
	m := ev.Metrics()
	// errors 0, 1, 0, -2: MAE 3/4, MSE 5/4; SStot = 2.25+0.25+0.25+2.25 = 5, so R² = 1 - 5/5 = 0.
	assert.InDelta(t, 0.75, m.MAE, 1e-12)
	assert.InDelta(t, math.Sqrt(1.25), m.RMSE, 1e-12)
	assert.InDelta(t, 0, m.R2, 1e-12)
	assert.Zero(t, m.Accuracy)
}

func TestMacroF1AndRecall(t *testing.T) {
	// class 0: 3 right, 1 taken for class 1; class 1: 2 right; class 2 never seen nor predicted.
	ev := &gate.Evaluation{Task: dataset.TaskClassification, Samples: 6, Correct: 5,
		Confusion: [][]int{{3, 1, 0}, {0, 2, 0}, {0, 0, 0}}, Latencies: make([]time.Duration, 6)}
	m := ev.Metrics()
	assert.InDelta(t, 5.0/6, m.Accuracy, 1e-12)
	assert.Equal(t, []float64{0.75, 1, 0}, m.PerClassRecall)
	// F1: class 0 = 2*3/(4+3) = 6/7, class 1 = 2*2/(2+3) = 4/5; class 2 has no F1 and no say.
	assert.InDelta(t, (6.0/7+4.0/5)/2, m.MacroF1, 1e-12)
}

func TestBaselineTasksDoNotMix(t *testing.T) {
	_, err := gate.ParseBaseline([]byte(`{"schema_version":1,"model":"m","task":"regression","floors":{"p95_latency_ms":200,"accuracy":0.9}}`))
	require.ErrorIs(t, err, gate.ErrInvalidBaseline)
	assert.ErrorContains(t, err, "at least one of floors.max_mae")
	assert.ErrorContains(t, err, "are for a classification baseline")
	_, err = gate.ParseBaseline([]byte(`{"schema_version":1,"model":"m","floors":{"p95_latency_ms":200,"accuracy":0.9,"max_mae":3}}`))
	assert.ErrorContains(t, err, "are for a regression baseline")
	_, err = gate.ParseBaseline([]byte(`{"schema_version":1,"model":"m","task":"regression","floors":{"p95_latency_ms":200,"max_rmse":-1}}`))
	assert.ErrorContains(t, err, "floors.max_rmse is -1")
	b, err := gate.ParseBaseline([]byte(`{"schema_version":1,"model":"m","task":"regression","floors":{"p95_latency_ms":200,"min_r2":-0.5}}`))
	require.NoError(t, err, "a negative R² floor is a floor")
	assert.Equal(t, dataset.TaskRegression, b.TaskOf())
}

// The production baseline is kept per model: a wine candidate gated against the digits
// baseline is refused before anything is evaluated.
func TestAnotherModelsBaselineIsRefused(t *testing.T) {
	root := projectpath.Root(t)
	cfg := baseConfig(t)
	cfg.ModelName = "wine"
	cfg.FixturePath = filepath.Join(root, "examples/wine-classifier/fixtures/validation.json")
	cfg.ModelFile = filepath.Join(root, "examples/wine-classifier/model/wine.onnx")
	r := gate.Run(context.Background(), cfg)
	require.False(t, r.Passed)
	assert.Contains(t, r.Error, `is the baseline of model "digits", and the candidate is "wine"`)
	assert.Empty(t, r.Checks)
}

func TestTaskMismatchIsRefused(t *testing.T) {
	root := projectpath.Root(t)
	cfg := baseConfig(t)
	cfg.BaselinePath = filepath.Join(root, "examples/diabetes-regression/model_baseline.json")
	cfg.FixturePath = filepath.Join(root, "examples/wine-classifier/fixtures/validation.json")
	r := gate.Run(context.Background(), cfg)
	assert.Contains(t, r.Error, "is for regression and the fixture")
}

// The examples' project files drive the gate: fixtures, baseline, model name, task and inputs
// all come from modelship.json, as ConfigFromEnv reads it.
func TestExampleProjectsPassTheGate(t *testing.T) {
	root := projectpath.Root(t)
	for _, ex := range []struct{ dir, model string }{{"wine-classifier", "wine"}, {"diabetes-regression", "diabetes"}} {
		t.Run(ex.dir, func(t *testing.T) {
			t.Setenv("MODELSHIP_PROJECT", "examples/"+ex.dir)
			t.Setenv("MODELSHIP_MODEL_FILE", "examples/"+ex.dir+"/model/"+ex.model+".onnx")
			cfg := gate.ConfigFromEnv(root)
			require.NoError(t, cfg.ProjectErr)
			assert.Equal(t, ex.model, cfg.ModelName)
			cfg.Serve, cfg.Timeout = serving.Local, time.Minute
			r := gate.Run(context.Background(), cfg)
			require.Empty(t, r.Error)
			assert.True(t, r.Passed, r.FailureSummary())
			assert.Equal(t, ex.model, r.Model.Name)
			require.NotNil(t, r.Diff)
			assert.Contains(t, r.Diff.Skipped, "no production model")
		})
	}
}

// A project whose declared inputs differ from what the server declares is not evaluated.
func TestDeclaredInputsMustMatchTheServer(t *testing.T) {
	root := projectpath.Root(t)
	dir := t.TempDir()
	for _, f := range []string{"model_baseline.json", "fixtures/validation.json"} {
		raw, err := os.ReadFile(filepath.Join(root, "examples/wine-classifier", f))
		require.NoError(t, err)
		require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(dir, f)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, f), raw, 0o644))
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "modelship.json"), []byte(`{"model":{"name":"wine"},"fixtures":"fixtures/validation.json",
		"inputs":[{"name":"features","datatype":"FP32","shape":[-1,13]}]}`), 0o644))
	t.Setenv("MODELSHIP_PROJECT", dir)
	t.Setenv("MODELSHIP_MODEL_FILE", filepath.Join(root, "examples/wine-classifier/model/wine.onnx"))
	cfg := gate.ConfigFromEnv(root)
	cfg.Serve, cfg.Timeout = serving.Local, time.Minute
	r := gate.Run(context.Background(), cfg)
	assert.Contains(t, r.Error, "declares input input FP32 [-1 13]; modelship.json declares features FP32 [-1 13]")
}

func TestABadProjectFileStopsTheGate(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "modelship.json"), []byte(`{"model":{"name":"wine","task":"ranking"}}`), 0o644))
	t.Setenv("MODELSHIP_PROJECT", dir)
	cfg := gate.ConfigFromEnv(projectpath.Root(t))
	r := gate.Run(context.Background(), cfg)
	assert.Contains(t, r.Error, "/model/task: value must be one of")
}

func TestClassificationDiff(t *testing.T) {
	fx := &dataset.Fixture{Task: dataset.TaskClassification, Features: 1, Classes: 3, Samples: []dataset.Sample{
		{ID: "a", Features: []float64{0}, Label: 0}, {ID: "b", Features: []float64{0}, Label: 1},
		{ID: "c", Features: []float64{0}, Label: 2}, {ID: "d", Features: []float64{0}, Label: 2}}}
	prod := &gate.Evaluation{Task: dataset.TaskClassification, Samples: 4, Classes: []int{0, 0, 2, 1}, Latencies: ms(1, 1, 1, 2)}
	cand := &gate.Evaluation{Task: dataset.TaskClassification, Samples: 4, Classes: []int{0, 1, 0, 1}, Latencies: ms(1, 1, 1, 3)}
	d := gate.NewDiff(fx, cand, prod, gate.ModelIdentity{Name: "m", Version: "1"}, prod.Metrics().P95LatencyMS)
	assert.Equal(t, 2, d.Flips)
	assert.Equal(t, 1, d.Fixed)  // b: 0 -> 1, right now
	assert.Equal(t, 1, d.Broken) // c: 2 -> 0, wrong now
	assert.InDelta(t, 0.5, d.Agreement, 1e-12)
	assert.Equal(t, gate.ClassFlips{Class: 2, Flips: 1, Broken: 1}, d.ByClass[2])
	require.Len(t, d.Worst, 2)
	assert.Equal(t, "c", d.Worst[0].ID, "breaks come first")
	assert.InDelta(t, 1.5, d.P95LatencyRatio, 1e-12)
	assert.Contains(t, (&gate.Report{Diff: d}).Diff.Markdown(), "Agreement 50.0%: 2 of 4 samples changed class, 1 fixed and 1 broken")
}

func TestRegressionDiff(t *testing.T) {
	fx := &dataset.Fixture{Task: dataset.TaskRegression, Features: 1, Samples: []dataset.Sample{
		{ID: "a", Features: []float64{0}, Target: 10}, {ID: "b", Features: []float64{0}, Target: 20}, {Features: []float64{0}, Target: 30}}}
	prod := &gate.Evaluation{Task: dataset.TaskRegression, Samples: 3, Values: []float64{10, 25, 30}, Latencies: ms(1, 1, 1)}
	cand := &gate.Evaluation{Task: dataset.TaskRegression, Samples: 3, Values: []float64{14, 20, 30}, Latencies: ms(1, 1, 1)}
	d := gate.NewDiff(fx, cand, prod, gate.ModelIdentity{Name: "m"}, prod.Metrics().P95LatencyMS)
	assert.Equal(t, 1, d.Worse)
	assert.Equal(t, 1, d.Better)
	assert.InDelta(t, 3, d.MeanAbsChange, 1e-12)
	require.Len(t, d.Worst, 3)
	assert.Equal(t, gate.SampleDiff{ID: "a", Target: 10, Production: 10, Candidate: 14, ErrorChange: 4}, d.Worst[0])
	assert.Equal(t, "#2", d.Worst[1].ID, "a sample without an id is named by its index")
}

// The gate speaks the Open Inference Protocol to any server: here the diabetes example's own
// server, an independent implementation that shares no code with modelship's. Its predictions
// are also production's for the diff: the same model on two servers agrees sample by sample.
func TestGateAgainstAnIndependentServer(t *testing.T) {
	root := projectpath.Root(t)
	bin := testenv.ModuleBinary(t, "examples/diabetes-regression/server")
	addr := testenv.FreeAddr(t)
	p := testenv.Start(t, bin, nil, []string{"MODEL_FILE=" + filepath.Join(root, "examples/diabetes-regression/model/diabetes.onnx"),
		"MODEL_NAME=diabetes", "MODEL_VERSION=1.0.0", "LISTEN_ADDR=" + addr})
	testenv.WaitHTTP(t, p, "http://"+addr+"/v2/health/ready", 200)
	t.Setenv("MODELSHIP_PROJECT", "examples/diabetes-regression")
	t.Setenv("MODELSHIP_SERVER_URL", "http://"+addr)
	t.Setenv("MODELSHIP_PRODUCTION_URL", "http://"+addr)
	cfg := gate.ConfigFromEnv(root)
	cfg.Timeout = time.Minute
	r := gate.Run(context.Background(), cfg)
	require.Empty(t, r.Error)
	assert.True(t, r.Passed, r.FailureSummary())
	assert.InDelta(t, 0.4393, r.Metrics.R2, 1e-3)
	require.NotNil(t, r.Diff)
	assert.Empty(t, r.Diff.Skipped)
	assert.Zero(t, r.Diff.Worse+r.Diff.Better)

	// The same server fails a baseline its model cannot meet, naming the check.
	strict := writeJSONFile(t, map[string]any{"schema_version": 1, "model": "diabetes", "task": "regression",
		"floors": map[string]any{"p95_latency_ms": 200, "min_r2": 0.9}})
	cfg.BaselinePath = strict
	r = gate.Run(context.Background(), cfg)
	require.Empty(t, r.Error)
	assert.False(t, r.Passed)
	assert.Contains(t, r.FailureSummary(), "R² 0.4393 is below the floor 0.9000")
}

func ms(v ...int) []time.Duration {
	out := make([]time.Duration, len(v))
	for i, n := range v {
		out[i] = time.Duration(n) * time.Millisecond
	}
	return out
}
