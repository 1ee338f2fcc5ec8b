package analysis_test

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/modelship/modelship/internal/deploy/analysis"
)

func TestJensenShannonAgainstHandComputedValues(t *testing.T) {
	// Same proportions, different totals: nothing diverges.
	assert.InDelta(t, 0, analysis.JensenShannon([]float64{3, 1, 2}, []float64{6, 2, 4}), 1e-12)
	// No class in common: the maximum, 1 bit.
	assert.InDelta(t, 1, analysis.JensenShannon([]float64{5, 0}, []float64{0, 7}), 1e-12)

	// P = (1, 0), Q = (1/2, 1/2), M = (3/4, 1/4):
	//   KL(P||M) = log2(4/3)                        = 2 - log2 3
	//   KL(Q||M) = 1/2·log2(2/3) + 1/2·log2(2)      = 1 - 1/2·log2 3
	//   JS = (KL(P||M) + KL(Q||M)) / 2               = 3/2 - 3/4·log2 3 ≈ 0.311278
	want := 1.5 - 0.75*math.Log2(3)
	assert.InDelta(t, 0.311278, want, 1e-6, "the hand computation itself")
	assert.InDelta(t, want, analysis.JensenShannon([]float64{1, 0}, []float64{1, 1}), 1e-12)
	assert.InDelta(t, want, analysis.JensenShannon([]float64{1, 1}, []float64{1, 0}), 1e-12, "symmetric")
	assert.InDelta(t, want, analysis.JensenShannon([]float64{4}, []float64{9, 9}), 1e-12, "the shorter side is padded with zeros")

	// P = (1/2, 1/2, 0), Q = (0, 1/2, 1/2), M = (1/4, 1/2, 1/4): each KL is 1/2·log2 2 = 1/2.
	assert.InDelta(t, 0.5, analysis.JensenShannon([]float64{50, 50, 0}, []float64{0, 50, 50}), 1e-12)

	assert.Zero(t, analysis.JensenShannon(nil, nil), "empty input")
	assert.Zero(t, analysis.JensenShannon([]float64{0, 0}, []float64{1, 2}), "a side with no counts leaves nothing to compare")
}

func TestPSIAgainstHandComputedValues(t *testing.T) {
	// P = (0.5, 0.5), Q = (0.8, 0.2): (0.3)·ln(1.6) + (-0.3)·ln(0.4) = 0.3·ln 4 ≈ 0.41589. The
	// 1e-4 smoothing moves it by about 2e-4.
	assert.InDelta(t, 0.3*math.Log(4), analysis.PSI([]float64{50, 50}, []float64{80, 20}), 1e-3)
	assert.InDelta(t, 0, analysis.PSI([]float64{1, 2, 3}, []float64{10, 20, 30}), 1e-12)

	// A class the reference never predicted: smoothed P = (1.0001, 0.0001)/1.0002, Q = (0.5, 0.5):
	//   (0.5 - 0.99990)·ln(0.5/0.99990) + (0.5 - 0.00010)·ln(0.5/0.00010) ≈ 0.3465 + 4.2578 = 4.6043
	psi := analysis.PSI([]float64{10, 0}, []float64{5, 5})
	assert.False(t, math.IsInf(psi, 0))
	assert.InDelta(t, 4.6043, psi, 1e-3)

	assert.Zero(t, analysis.PSI(nil, []float64{1}))
}
