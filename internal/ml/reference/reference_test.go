package reference_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

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
