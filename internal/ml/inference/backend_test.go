package inference_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/advancedclimatesystems/gonnx/onnx"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/modelship/modelship/internal/ml/inference"
	"github.com/modelship/modelship/internal/ml/mlp"
	"github.com/modelship/modelship/internal/ml/reference"
	"github.com/modelship/modelship/internal/plumbing/projectpath"
	"github.com/modelship/modelship/internal/testenv"
)

// variantFile exports the reference network as v into a temporary file.
func variantFile(t testing.TB, v mlp.Variant) string {
	t.Helper()
	raw, err := reference.Variant(projectpath.Join(t, "data/digits/digits.csv.gz"), v)
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), fmt.Sprintf("digits-opset%d.onnx", v.Opset))
	require.NoError(t, os.WriteFile(path, raw, 0o644))
	return path
}

// Every export of the reference network, whatever its opset and head, predicts what the
// reference model predicts; auto picks gonnx for opset 13 and ONNX Runtime for the rest.
func TestEachOpsetIsServedWithTheReferenceAccuracy(t *testing.T) {
	lib := testenv.ORTLibrary(t)
	f := loadFixture(t)
	ref, err := inference.LoadWith(projectpath.Join(t, "models/digits-reference.onnx"), inference.Options{Backend: inference.BackendGonnx})
	require.NoError(t, err)
	want := accuracy(t, ref, f)

	cases := []struct {
		variant mlp.Variant
		backend inference.Backend
	}{
		{mlp.Variant{Opset: 13}, inference.BackendGonnx},
		{mlp.Variant{Opset: 15}, inference.BackendORT},
		{mlp.Variant{Opset: 17, Head: mlp.HeadLayerNorm}, inference.BackendORT},
		{mlp.Variant{Opset: 18, Head: mlp.HeadLayerNorm}, inference.BackendORT},
		{mlp.Variant{Opset: 20, Head: mlp.HeadLayerNormGelu}, inference.BackendORT},
		{mlp.Variant{Opset: 21, Head: mlp.HeadLayerNormGelu}, inference.BackendORT},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("opset%d%s", tc.variant.Opset, tc.variant.Head), func(t *testing.T) {
			m, err := inference.LoadWith(variantFile(t, tc.variant), inference.Options{ORTLibrary: lib})
			require.NoError(t, err)
			defer m.Close()
			assert.Equal(t, tc.backend, m.Backend())
			assert.Equal(t, tc.variant.Opset, m.DeclaredOpset())
			got := accuracy(t, m, f)
			t.Logf("opset %d %q on %s: accuracy %.4f", tc.variant.Opset, tc.variant.Head, m.Backend(), got)
			assert.Equal(t, want, got, "the head keeps each row's order of logits")
		})
	}
}

// The shipped opset-17 model is what the image tests and the e2e run serve.
func TestShippedOpset17ModelNeedsONNXRuntime(t *testing.T) {
	path := projectpath.Join(t, "models/digits-layernorm-opset17.onnx")
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	info, err := inference.Inspect(raw)
	require.NoError(t, err)
	assert.Equal(t, inference.BackendORT, info.Backend)
	assert.Contains(t, info.Operators, "LayerNormalization")
	assert.Contains(t, info.GonnxCannot, "opset 17")

	_, err = inference.LoadWith(path, inference.Options{Backend: inference.BackendGonnx})
	require.ErrorIs(t, err, inference.ErrInvalidModel)
	assert.ErrorContains(t, err, "opset 17", "forced onto gonnx, the error names the opset gonnx lacks")

	_, err = inference.LoadWith(path, inference.Options{})
	require.ErrorIs(t, err, inference.ErrInvalidModel)
	assert.ErrorContains(t, err, "opset 17")
	howTo := "MODELSHIP_ORT_LIBRARY"
	if !inference.RuntimeBuiltIn {
		howTo = "CGO_ENABLED=1"
	}
	assert.ErrorContains(t, err, howTo, "without a runtime, the error says how to give it one")
}

// Where both backends run a model, they agree: same labels, the same probabilities to FP32
// rounding, and so the same accuracy.
func TestBothBackendsAgreeOnAnOpset13Model(t *testing.T) {
	lib := testenv.ORTLibrary(t)
	f := loadFixture(t)
	path := projectpath.Join(t, "models/digits-reference.onnx")
	g, err := inference.LoadWith(path, inference.Options{Backend: inference.BackendGonnx})
	require.NoError(t, err)
	o, err := inference.LoadWith(path, inference.Options{Backend: inference.BackendORT, ORTLibrary: lib})
	require.NoError(t, err)
	defer o.Close()
	assert.Equal(t, inference.BackendORT, o.Backend())
	assert.Equal(t, accuracy(t, g, f), accuracy(t, o, f))

	data := fixtureBatch(f)
	gOut, err := g.Infer(len(f.Samples), data)
	require.NoError(t, err)
	oOut, err := o.Infer(len(f.Samples), data)
	require.NoError(t, err)
	require.Equal(t, gOut[0].Shape, oOut[0].Shape)
	assert.Equal(t, inference.Argmax(gOut[0]), inference.Argmax(oOut[0]))
	assert.InDeltaSlice(t, gOut[0].Data, oOut[0].Data, 1e-5)
}

// A model using an operator neither backend has fails at load, naming the operator.
func TestAnOperatorNoBackendHasIsNamedAtLoad(t *testing.T) {
	lib := testenv.ORTLibrary(t)
	for _, opset := range []int64{13, 17} {
		t.Run(fmt.Sprintf("opset%d", opset), func(t *testing.T) {
			raw, err := os.ReadFile(projectpath.Join(t, "models/digits-reference.onnx"))
			require.NoError(t, err)
			var mp onnx.ModelProto
			require.NoError(t, proto.Unmarshal(raw, &mp))
			mp.OpsetImport[0].Version = opset
			mp.IrVersion = 8
			mp.Graph.Node[1].OpType = "Frobnicate"
			path := filepath.Join(t.TempDir(), "frobnicate.onnx")
			out, err := proto.Marshal(&mp)
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(path, out, 0o644))

			_, err = inference.LoadWith(path, inference.Options{ORTLibrary: lib})
			require.ErrorIs(t, err, inference.ErrInvalidModel)
			assert.ErrorContains(t, err, "Frobnicate")
			t.Logf("%v", err)
		})
	}
}

func TestUnknownBackendIsRefused(t *testing.T) {
	_, err := inference.LoadWith(projectpath.Join(t, "models/digits-reference.onnx"), inference.Options{Backend: "tensorrt"})
	assert.ErrorContains(t, err, `backend "tensorrt" is unknown`)
}
