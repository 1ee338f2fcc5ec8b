package mlp_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelship/modelship/internal/ml/inference"
	"github.com/modelship/modelship/internal/ml/mlp"
)

// Two well-separated clusters must be learnt perfectly; this fails if the gradient is wrong.
func TestTrainLearnsASeparableProblem(t *testing.T) {
	var x [][]float64
	var y []int
	for i := 0; i < 100; i++ {
		v := float64(i%10) / 10
		x = append(x, []float64{v, 8 + v}, []float64{8 + v, v})
		y = append(y, 0, 1)
	}
	cfg := mlp.DefaultConfig()
	cfg.Hidden, cfg.Epochs = 8, 20
	n, err := mlp.Train(cfg, x, y, 2)
	require.NoError(t, err)
	assert.Equal(t, 1.0, n.Accuracy(x, y))

	again, err := mlp.Train(cfg, x, y, 2)
	require.NoError(t, err)
	assert.Equal(t, n.W1, again.W1, "same seed, same weights")
}

func TestTrainRejectsBadInput(t *testing.T) {
	cfg := mlp.DefaultConfig()
	_, err := mlp.Train(cfg, nil, nil, 2)
	assert.ErrorContains(t, err, "0 rows")
	_, err = mlp.Train(cfg, [][]float64{{1, 2}, {1}}, []int{0, 1}, 2)
	assert.ErrorContains(t, err, "row 1 has 1 features")
	_, err = mlp.Train(cfg, [][]float64{{1, 2}}, []int{5}, 2)
	assert.ErrorContains(t, err, "label 5")
	cfg.Epochs = 0
	_, err = mlp.Train(cfg, [][]float64{{1, 2}}, []int{0}, 2)
	assert.Error(t, err)
}

// The ballast head adds zero to the logits, so gonnx (opset 13) gives the plain export's
// probabilities bit for bit, however far the inputs are from the training data; the file holds
// its big matrix once however many products use it.
func TestBallastHeadAnswersAsThePlainNetwork(t *testing.T) {
	var x [][]float64
	var y []int
	for i := 0; i < 100; i++ {
		v := float64(i%10) / 10
		x = append(x, []float64{v, 8 + v}, []float64{8 + v, v})
		y = append(y, 0, 1)
	}
	cfg := mlp.DefaultConfig()
	cfg.Hidden, cfg.Epochs = 8, 20
	n, err := mlp.Train(cfg, x, y, 2)
	require.NoError(t, err)

	plainRaw, err := n.ExportONNX("test", nil)
	require.NoError(t, err)
	slowRaw, err := n.ExportVariantONNX(mlp.Variant{Opset: 13, Head: mlp.HeadBallast}, mlp.DigitsDescription, "test", nil)
	require.NoError(t, err)
	assert.Less(t, len(slowRaw), 5<<20, "one 1024x1024 matrix, reused by every product")
	plain, err := inference.LoadBytesWith(plainRaw, inference.Options{Backend: inference.BackendGonnx})
	require.NoError(t, err)
	slow, err := inference.LoadBytesWith(slowRaw, inference.Options{Backend: inference.BackendGonnx})
	require.NoError(t, err, "gonnx runs the ballast head")

	for _, row := range [][]float32{{0, 0}, {0.3, 8.3}, {8.9, 0.9}, {16, 16}, {-1000, 1000}, {1e6, -1e6}} {
		want, err := plain.Infer(1, row)
		require.NoError(t, err)
		got, err := slow.Infer(1, row)
		require.NoError(t, err)
		assert.Equal(t, want[0].Data, got[0].Data, "row %v", row)
	}

	_, err = n.ExportVariantONNX(mlp.Variant{Opset: 13, Head: "heavy"}, mlp.DigitsDescription, "test", nil)
	assert.ErrorContains(t, err, `"ballast"`, "the error lists the heads there are")
}
