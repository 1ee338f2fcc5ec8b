package reference_test

import (
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelship/modelship/internal/ml/dataset"
	"github.com/modelship/modelship/internal/ml/inference"
	"github.com/modelship/modelship/internal/ml/reference"
	"github.com/modelship/modelship/internal/plumbing/projectpath"
)

// Regenerating from the shipped data must give the shipped bytes: the artifacts in the
// repository are exactly what `go run ./cmd/train-reference` makes.
func TestGenerateReproducesTheShippedArtifacts(t *testing.T) {
	dir := t.TempDir()
	opts := reference.Options{
		DataPath:      projectpath.Join(t, "data/digits/digits.csv.gz"),
		FixturePath:   filepath.Join(dir, "fixture.json"),
		ModelPath:     filepath.Join(dir, "reference.onnx"),
		WeakModelPath: filepath.Join(dir, "weak.onnx"),

		LayerNormModelPath: filepath.Join(dir, "layernorm.onnx"),
	}
	report, err := reference.Generate(opts)
	require.NoError(t, err)
	t.Logf("reference accuracy %.4f, weak accuracy %.4f", report.ReferenceAccuracy, report.WeakAccuracy)
	assert.Equal(t, 450, report.ValidationSamples)
	assert.Equal(t, 1347, report.TrainSamples)
	assert.GreaterOrEqual(t, report.ReferenceAccuracy, 0.95)
	assert.Less(t, report.WeakAccuracy, 0.85)

	for generated, shipped := range map[string]string{
		opts.FixturePath:   "tests/fixtures/digits_validation.json",
		opts.ModelPath:     "models/digits-reference.onnx",
		opts.WeakModelPath: "models/digits-weak.onnx",

		opts.LayerNormModelPath: "models/digits-layernorm-opset17.onnx",
	} {
		got, err := os.ReadFile(generated)
		require.NoError(t, err)
		want, err := os.ReadFile(projectpath.Join(t, shipped))
		require.NoError(t, err)
		assert.True(t, string(got) == string(want), "%s differs from a fresh run of train-reference; regenerate it with `go run ./cmd/train-reference`", shipped)
	}
}

func TestGenerateFailsOnMissingData(t *testing.T) {
	dir := t.TempDir()
	_, err := reference.Generate(reference.Options{DataPath: filepath.Join(dir, "none.csv.gz"),
		FixturePath: filepath.Join(dir, "f.json"), ModelPath: filepath.Join(dir, "m.onnx"), WeakModelPath: filepath.Join(dir, "w.onnx")})
	require.ErrorContains(t, err, "none.csv.gz")
	_, statErr := os.Stat(filepath.Join(dir, "m.onnx"))
	assert.True(t, os.IsNotExist(statErr), "nothing is written when the input is missing")
}

// The slow model must be the reference model in everything but speed: the rollout tests send
// it as a candidate that only latency can tell apart. Its ballast adds exactly zero, so the
// probabilities are the reference's bit for bit, not just the classes.
func TestSlowModelAnswersAsTheReferenceOnlySlower(t *testing.T) {
	start := time.Now()
	raw, err := reference.SlowModel(projectpath.Join(t, "data/digits/digits.csv.gz"))
	require.NoError(t, err)
	t.Logf("slow model: %d bytes, made in %s", len(raw), time.Since(start).Round(time.Millisecond))
	assert.Less(t, len(raw), 8<<20, "small enough to make per test run")

	slow, err := inference.LoadBytesWith(raw, inference.Options{Backend: inference.BackendGonnx})
	require.NoError(t, err, "gonnx runs it")
	refRaw, err := os.ReadFile(projectpath.Join(t, "models/digits-reference.onnx"))
	require.NoError(t, err)
	ref, err := inference.LoadBytesWith(refRaw, inference.Options{Backend: inference.BackendGonnx})
	require.NoError(t, err)
	fixture, err := dataset.ReadFixture(projectpath.Join(t, "tests/fixtures/digits_validation.json"))
	require.NoError(t, err)

	// Every fifth sample (90, every class): the whole fixture would take the slow model 10 s
	// or more, and its ballast can only change an answer by overflowing, which
	// TestBallastHeadAnswersAsThePlainNetwork tries with far larger inputs.
	var rows [][]float32
	for i := 0; i < len(fixture.Samples); i += 5 {
		row := make([]float32, len(fixture.Samples[i].Features))
		for j, v := range fixture.Samples[i].Features {
			row[j] = float32(v)
		}
		rows = append(rows, row)
	}
	want := probabilities(t, ref, rows)
	start = time.Now()
	got := probabilities(t, slow, rows)
	t.Logf("%d rows through the slow model in %s", len(rows), time.Since(start).Round(time.Millisecond))
	for i := range rows {
		require.Equal(t, inference.ArgmaxRow(want[i]), inference.ArgmaxRow(got[i]), "class of sample %d", i)
		require.Equal(t, want[i], got[i], "probabilities of sample %d", i)
	}

	refLatency, slowLatency := rowLatency(t, ref, rows[:20]), rowLatency(t, slow, rows[:20])
	t.Logf("median latency of one row with gonnx: reference %s, slow %s", refLatency, slowLatency)
	assert.Greater(t, slowLatency, 10*refLatency, "the slow model is slow")
}

// probabilities runs each row alone, as the servers see them, on every core at once.
func probabilities(t *testing.T, m *inference.Model, rows [][]float32) [][]float32 {
	t.Helper()
	out := make([][]float32, len(rows))
	errs := make([]error, len(rows))
	var wg sync.WaitGroup
	workers := runtime.GOMAXPROCS(0)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(rows); i += workers {
				res, err := m.Infer(1, rows[i])
				if err == nil {
					out[i] = res[0].Data
				}
				errs[i] = err
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		require.NoError(t, err, "infer sample %d", i)
	}
	return out
}

func rowLatency(t *testing.T, m *inference.Model, rows [][]float32) time.Duration {
	t.Helper()
	took := make([]time.Duration, len(rows))
	for i, row := range rows {
		start := time.Now()
		_, err := m.Infer(1, row)
		require.NoError(t, err)
		took[i] = time.Since(start)
	}
	slices.Sort(took)
	return took[len(took)/2]
}
