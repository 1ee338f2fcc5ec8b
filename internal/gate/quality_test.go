package gate_test

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelship/modelship/internal/gate"
	"github.com/modelship/modelship/internal/ml/dataset"
	"github.com/modelship/modelship/internal/plumbing/projectpath"
	"github.com/modelship/modelship/internal/registry"
	"github.com/modelship/modelship/internal/testenv"
	"github.com/modelship/modelship/serving"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

const (
	refSHA  = "1111111111111111111111111111111111111111"
	weakSHA = "2222222222222222222222222222222222222222"
)

func baseConfig(t *testing.T) gate.Config {
	t.Helper()
	root := projectpath.Root(t)
	return gate.Config{
		BaselinePath: filepath.Join(root, "model_baseline.json"),
		FixturePath:  filepath.Join(root, "tests/fixtures/digits_validation.json"),
		ModelFile:    filepath.Join(root, "models/digits-reference.onnx"),
		Timeout:      time.Minute,
		Serve:        serving.Local,
	}
}

func writeJSONFile(t *testing.T, v any) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "file.json")
	raw, err := json.Marshal(v)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(p, raw, 0o644))
	return p
}

func check(t *testing.T, r *gate.Report, name string) gate.Check {
	t.Helper()
	for _, c := range r.Checks {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no check %q in %+v", name, r.Checks)
	return gate.Check{}
}

func assertReportFiles(t *testing.T, dir string, charts bool) {
	t.Helper()
	files := []string{gate.ReportJSON, gate.ReportMarkdown}
	if charts {
		files = append(files, gate.LatencyChart, gate.ConfusionChart)
	}
	for _, f := range files {
		info, err := os.Stat(filepath.Join(dir, f))
		require.NoError(t, err, "report file %s", f)
		assert.NotZero(t, info.Size(), f)
	}
	svg, err := os.ReadFile(filepath.Join(dir, gate.ReportJSON))
	require.NoError(t, err)
	_, err = gate.ReadReport(filepath.Join(dir, gate.ReportJSON))
	require.NoError(t, err, string(svg))
}

// pushed is one model a test's registry holds: the file, pushed as digits@version from sha.
type pushed struct{ file, version, sha string }

// registryHolding is a registry in a bucket of its own on the shared MinIO holding models.
func registryHolding(t *testing.T, models ...pushed) (*testenv.MinIOServer, string, *registry.Registry) {
	t.Helper()
	srv := testenv.SharedMinIO(t)
	bucket := srv.Bucket(t, "models")
	reg, err := registry.New(srv.Client(t), registry.Options{Bucket: bucket, CacheDir: t.TempDir()})
	require.NoError(t, err)
	for _, m := range models {
		_, err = reg.Push(context.Background(), projectpath.Join(t, m.file), registry.PushOptions{Name: "digits", Version: m.version, GitSHA: m.sha})
		require.NoError(t, err)
	}
	return srv, bucket, reg
}

// The registry path of the gate, as the pipeline runs it: reference passes, weak fails on
// accuracy, and both leave every report.
func TestGateOnRegistryCandidates(t *testing.T) {
	srv, bucket, _ := registryHolding(t, pushed{"models/digits-reference.onnx", "1", refSHA}, pushed{"models/digits-weak.onnx", "2", weakSHA})
	ctx := context.Background()

	cfg := baseConfig(t)
	cfg.ModelFile = ""
	cfg.S3, cfg.ModelsBucket, cfg.CacheDir = srv.Config(), bucket, t.TempDir()

	cfg.Ref = registry.Ref{Version: "1"}
	good := gate.Run(ctx, cfg)
	require.Empty(t, good.Error)
	assert.True(t, good.Passed, good.FailureSummary())
	assert.Equal(t, "1", good.Model.Version)
	assert.Equal(t, refSHA, good.Model.GitSHA)
	assert.Contains(t, good.Model.Source, "s3://"+bucket+"/digits/blobs/sha256/")
	assert.GreaterOrEqual(t, good.Metrics.Accuracy, 0.95)
	assert.Equal(t, 450, good.Metrics.Samples)
	dir := t.TempDir()
	require.NoError(t, good.Write(dir))
	assertReportFiles(t, dir, true)

	cfg.Ref = registry.Ref{GitSHA: weakSHA}
	bad := gate.Run(ctx, cfg)
	require.Empty(t, bad.Error)
	assert.False(t, bad.Passed)
	acc := check(t, bad, "accuracy")
	assert.False(t, acc.Passed)
	assert.Contains(t, acc.Message, "is below the floor 0.8500")
	assert.True(t, check(t, bad, "p95_latency_ms").Passed, "the weak model is fast, just wrong")
	dir = t.TempDir()
	require.NoError(t, bad.Write(dir))
	assertReportFiles(t, dir, true)
	md, err := os.ReadFile(filepath.Join(dir, gate.ReportMarkdown))
	require.NoError(t, err)
	assert.Contains(t, string(md), "❌ failed: digits@2")

	// Deterministic: the same model and fixtures give the same predictions.
	cfg.Ref = registry.Ref{Version: "1"}
	again := gate.Run(ctx, cfg)
	assert.Equal(t, good.Metrics.Accuracy, again.Metrics.Accuracy)
	assert.Equal(t, good.Confusion, again.Confusion)
}

func TestALatencyFloorBelowWhatIsMeasuredFails(t *testing.T) {
	b, err := gate.LoadBaseline(projectpath.Join(t, "model_baseline.json"))
	require.NoError(t, err)
	b.Floors.P95LatencyMS = 0.000001 // one nanosecond: no HTTP request is that fast
	cfg := baseConfig(t)
	cfg.BaselinePath = writeJSONFile(t, b)
	r := gate.Run(context.Background(), cfg)
	require.Empty(t, r.Error)
	assert.False(t, r.Passed)
	assert.True(t, check(t, r, "accuracy").Passed)
	p95 := check(t, r, "p95_latency_ms")
	assert.False(t, p95.Passed)
	assert.Contains(t, p95.Message, "is not under the limit")
}

func TestTheGateFailsClearlyOnBadInput(t *testing.T) {
	srv := testenv.SharedMinIO(t)
	fx, err := dataset.ReadFixture(projectpath.Join(t, "tests/fixtures/digits_validation.json"))
	require.NoError(t, err)
	narrow := *fx
	narrow.Features = 10
	narrow.Samples = []dataset.Sample{{Features: make([]float64, 10), Label: 1}}

	cases := map[string]struct {
		change func(*gate.Config)
		want   string
	}{
		"missing fixtures": {func(c *gate.Config) { c.FixturePath = filepath.Join(t.TempDir(), "none.json") }, "none.json"},
		"wrong feature count": {func(c *gate.Config) { c.FixturePath = writeJSONFile(t, narrow) },
			"the fixtures have 10 features per sample"},
		"floor out of range": {func(c *gate.Config) {
			c.BaselinePath = writeJSONFile(t, map[string]any{"schema_version": 1, "model": "digits",
				"floors": map[string]any{"accuracy": 1.5, "p95_latency_ms": -1}, "max_regression": map[string]any{}})
		}, "floors.accuracy is 1.5"},
		"model not in registry": {func(c *gate.Config) {
			c.S3, c.ModelsBucket, c.CacheDir = srv.Config(), srv.Bucket(t, "empty"), t.TempDir()
			c.Ref = registry.Ref{Version: "7"}
		}, "not in the registry"},
		"server does not answer": {func(c *gate.Config) {
			c.ServerURL, c.Timeout = "http://"+testenv.FreeAddr(t), 2*time.Second
		}, "does not answer"},
		"not a model": {func(c *gate.Config) { c.ModelFile = projectpath.Join(t, "go.mod") }, "not an ONNX"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			cfg := baseConfig(t)
			tc.change(&cfg)
			r := gate.Run(context.Background(), cfg)
			assert.False(t, r.Passed, "a gate that cannot evaluate never passes")
			assert.Contains(t, r.Error, tc.want)
			dir := t.TempDir()
			require.NoError(t, r.Write(dir))
			assertReportFiles(t, dir, false)
		})
	}
}

func TestBaselineValidationAndPromotion(t *testing.T) {
	b, err := gate.LoadBaseline(projectpath.Join(t, "model_baseline.json"))
	require.NoError(t, err, "the shipped baseline is valid")
	assert.Equal(t, 0.85, b.Floors.Accuracy)
	assert.Equal(t, 200.0, b.Floors.P95LatencyMS)

	bad := *b
	bad.Floors.PerClassRecall = 2
	bad.MaxRegression.Accuracy = -0.1
	err = bad.Validate()
	require.ErrorIs(t, err, gate.ErrInvalidBaseline)
	assert.ErrorContains(t, err, "per_class_recall is 2")
	assert.ErrorContains(t, err, "max_regression.accuracy is -0.1")

	_, err = gate.LoadBaseline(writeJSONFile(t, map[string]any{"schema_version": 1, "model": "digits", "floor": 1}))
	assert.ErrorContains(t, err, `unknown field "floor"`)

	passing := &gate.Report{Passed: true, Model: gate.ModelIdentity{Name: "digits", Version: "3", GitSHA: refSHA},
		Metrics: gate.Metrics{Accuracy: 0.97, P95LatencyMS: 0.3}}
	failing := &gate.Report{Passed: false, Model: gate.ModelIdentity{Name: "digits", Version: "4"},
		Checks: []gate.Check{{Name: "accuracy", Message: "accuracy 0.1 is below the floor 0.85"}}}
	before := b.Production
	require.ErrorIs(t, b.Promote(failing, "bob", time.Now()), gate.ErrNotPromotable)
	assert.Equal(t, before, b.Production, "a refused promotion changes nothing")
	require.NoError(t, b.Promote(passing, "alice", time.Now()))
	assert.Equal(t, "3", b.Production.Version)
	assert.Equal(t, 0.97, b.Production.Accuracy)

	// With production set, a candidate 0.03 worse fails the allowed drop of 0.02.
	ev := gate.Checks(gate.Metrics{Accuracy: 0.94, P95LatencyMS: 1}, b)
	var regression *gate.Check
	for i := range ev {
		if ev[i].Name == "accuracy_vs_production" {
			regression = &ev[i]
		}
	}
	require.NotNil(t, regression)
	assert.False(t, regression.Passed)
	assert.InDelta(t, 0.95, regression.Threshold, 1e-9)
}

func TestPercentileIsNearestRank(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	assert.Equal(t, 50*time.Millisecond, gate.Percentile(d, 50))
	assert.Equal(t, 95*time.Millisecond, gate.Percentile(d, 95))
	assert.Equal(t, 100*time.Millisecond, gate.Percentile(d, 100))
	assert.Equal(t, time.Duration(0), gate.Percentile(nil, 95))
}

type junit struct {
	Suites []struct {
		Cases []struct {
			Name    string    `xml:"name,attr"`
			Failure *struct{} `xml:"failure"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

// The gate as CI runs it: scripts/gate.sh exits 0 or 1 and leaves a JUnit file naming each check.
func TestGateScriptWritesJUnitNamingEachCheck(t *testing.T) {
	if _, err := exec.LookPath("gotestsum"); err != nil {
		testenv.Missing(t, "gotestsum", "gotestsum is not on PATH; scripts/tools.sh builds it")
	}
	for model, wantExit := range map[string]int{"models/digits-reference.onnx": 0, "models/digits-weak.onnx": 1} {
		t.Run(filepath.Base(model), func(t *testing.T) {
			dir := t.TempDir()
			cmd := exec.Command("bash", "scripts/gate.sh")
			cmd.Dir = projectpath.Root(t)
			cmd.Env = append(os.Environ(), "MODELSHIP_MODEL_FILE="+model, "MODELSHIP_REPORT_DIR="+dir)
			out, err := cmd.CombinedOutput()
			code := 0
			var exitErr *exec.ExitError
			if errors.As(err, &exitErr) {
				code = exitErr.ExitCode()
			} else {
				require.NoError(t, err)
			}
			require.Equal(t, wantExit, code, string(out))
			assertReportFiles(t, dir, true)
			ev, err := os.ReadFile(filepath.Join(dir, "evidence.json"))
			require.NoError(t, err, "the gate leaves evidence.json beside its reports")
			var rec map[string]any
			require.NoError(t, json.Unmarshal(ev, &rec))
			assert.Equal(t, "test-quality", rec["stage"])
			assert.Equal(t, map[int]string{0: "succeeded", 1: "failed"}[wantExit], rec["outcome"])
			for _, f := range []string{"invocation", "versions", "model", "config", "inputs", "outputs", "timings"} {
				assert.Contains(t, rec, f)
			}

			raw, err := os.ReadFile(filepath.Join(dir, gate.JUnitFile))
			require.NoError(t, err)
			var j junit
			require.NoError(t, xml.Unmarshal(raw, &j))
			failedCases := map[string]bool{}
			for _, s := range j.Suites {
				for _, c := range s.Cases {
					failedCases[c.Name] = c.Failure != nil
				}
			}
			for _, name := range []string{"TestQualityGate/accuracy", "TestQualityGate/p95_latency_ms", "TestQualityGate/per_class_recall"} {
				assert.Contains(t, failedCases, name)
			}
			assert.Equal(t, wantExit == 1, failedCases["TestQualityGate/accuracy"])
			assert.False(t, failedCases["TestQualityGate/p95_latency_ms"])
		})
	}
}

// A model only ONNX Runtime runs (opset 17, LayerNormalization) goes through the gate as any
// other: pulled from the registry, served, and passed with the reference's accuracy.
func TestGateOnAnOpset17ModelFromTheRegistry(t *testing.T) {
	testenv.ORTLibrary(t)
	srv, bucket, _ := registryHolding(t, pushed{"models/digits-layernorm-opset17.onnx", "17", refSHA})
	ctx := context.Background()

	cfg := baseConfig(t)
	ref := gate.Run(ctx, cfg)
	require.Empty(t, ref.Error)

	cfg.ModelFile = ""
	cfg.S3, cfg.ModelsBucket, cfg.CacheDir = srv.Config(), bucket, t.TempDir()
	cfg.Ref = registry.Ref{Version: "17"}
	r := gate.Run(ctx, cfg)
	require.Empty(t, r.Error)
	assert.True(t, r.Passed, r.FailureSummary())
	assert.Equal(t, "17", r.Model.Version)
	assert.Equal(t, ref.Metrics.Accuracy, r.Metrics.Accuracy, "the LayerNormalization head keeps the reference's predictions")
	assert.Equal(t, ref.Confusion, r.Confusion)
}
