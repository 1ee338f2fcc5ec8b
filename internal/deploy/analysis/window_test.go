package analysis_test

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelship/modelship/internal/deploy/analysis"
)

func TestQuantileInterpolatesLikeHistogramQuantile(t *testing.T) {
	// 100 observations: 10 at or below 0.1s, 20 more up to 0.2s, 60 more up to 0.5s, 10 above.
	h := analysis.Histogram{Count: 100, Sum: 30, Buckets: []analysis.Bucket{
		{UpperBound: 0.1, Count: 10}, {UpperBound: 0.2, Count: 30}, {UpperBound: 0.5, Count: 90},
	}}
	// histogram_quantile: rank = q·100; find the first bucket whose count reaches the rank and
	// interpolate from the bucket's lower bound (0 for the first) to its upper bound.
	cases := []struct {
		q    float64
		want float64
		why  string
	}{
		{0.10, 0.1, "rank 10 is the whole first bucket: 0 + 0.1·10/10"},
		{0.25, 0.175, "rank 25 is 15 of the 20 in (0.1,0.2]: 0.1 + 0.1·15/20"},
		{0.50, 0.3, "rank 50 is 20 of the 60 in (0.2,0.5]: 0.2 + 0.3·20/60"},
		{0.90, 0.5, "rank 90 is the top of (0.2,0.5]"},
		{0.99, 0.5, "rank 99 falls in +Inf: the highest finite bound"},
	}
	for _, c := range cases {
		assert.InDelta(t, c.want, h.Quantile(c.q), 1e-12, "q=%v: %s", c.q, c.why)
	}

	w := analysis.Window{Latency: h}
	assert.Equal(t, 300*time.Millisecond, w.Quantile(0.5))
	assert.Equal(t, 500*time.Millisecond, w.P99())

	assert.True(t, math.IsNaN(analysis.Histogram{}.Quantile(0.5)), "no observations")
	assert.Zero(t, analysis.Window{}.P99(), "a window without latency data has no p99")
}

func TestDeltaSubtractsAndRestartsCountersThatWentDown(t *testing.T) {
	before := &analysis.Snapshot{
		Infer:   map[string]float64{"2xx": 100, "4xx": 3, "5xx": 5},
		Latency: analysis.Histogram{Count: 108, Sum: 2, Buckets: []analysis.Bucket{{UpperBound: 0.01, Count: 100}, {UpperBound: 0.1, Count: 108}}},
		Classes: []float64{10, 20, 30},
		Values:  analysis.Moments{Count: 50, Sum: 100, SumSquares: 400},
	}
	after := &analysis.Snapshot{
		Infer:   map[string]float64{"2xx": 130, "4xx": 4, "5xx": 7},
		Latency: analysis.Histogram{Count: 141, Sum: 3, Buckets: []analysis.Bucket{{UpperBound: 0.01, Count: 130}, {UpperBound: 0.1, Count: 141}}},
		Classes: []float64{12, 45, 30, 1},
		Values:  analysis.Moments{Count: 60, Sum: 130, SumSquares: 500},
	}
	w := analysis.Delta(before, after)
	assert.Equal(t, 33.0, w.Requests)
	assert.Equal(t, 2.0, w.Errors)
	assert.Equal(t, 1.0, w.ClientErrors)
	assert.InDelta(t, 2.0/33, w.ErrorRate(), 1e-12)
	assert.Equal(t, []float64{2, 25, 0, 1}, w.Classes)
	assert.Equal(t, analysis.Moments{Count: 10, Sum: 30, SumSquares: 100}, w.Values)
	assert.Equal(t, analysis.Histogram{Count: 33, Sum: 1, Buckets: []analysis.Bucket{{UpperBound: 0.01, Count: 30}, {UpperBound: 0.1, Count: 33}}}, w.Latency)

	// The process restarted in between: every series is below its old value, so each counts
	// from zero and after is taken as is.
	restarted := &analysis.Snapshot{
		Infer:   map[string]float64{"2xx": 7, "5xx": 1},
		Latency: analysis.Histogram{Count: 8, Sum: 0.05, Buckets: []analysis.Bucket{{UpperBound: 0.01, Count: 8}, {UpperBound: 0.1, Count: 8}}},
		Classes: []float64{3, 4},
		Values:  analysis.Moments{Count: 8, Sum: -4, SumSquares: 9},
	}
	w = analysis.Delta(after, restarted)
	assert.Equal(t, 8.0, w.Requests)
	assert.Equal(t, 1.0, w.Errors)
	assert.Zero(t, w.ClientErrors, "a series gone after a restart counts nothing")
	assert.Equal(t, []float64{3, 4}, w.Classes)
	assert.Equal(t, restarted.Values, w.Values)
	assert.Equal(t, restarted.Latency, w.Latency)

	// One series reset on its own (the others kept growing): only it restarts from zero.
	w = analysis.Delta(after, &analysis.Snapshot{Infer: map[string]float64{"2xx": 150, "5xx": 2}})
	assert.Equal(t, 22.0, w.Requests, "20 more 2xx and 2 5xx since the 5xx counter restarted")
	assert.Equal(t, 2.0, w.Errors)
}

func TestDeltaOfShadowCounters(t *testing.T) {
	before := &analysis.Snapshot{Shadow: analysis.ShadowCounters{
		Requests:    map[string]float64{"ok": 10, "error": 1, "dropped": 2},
		Rows:        map[string]float64{"agree": 20, "disagree": 2},
		LiveClasses: []float64{11, 11}, CandidateClasses: []float64{12, 10},
		Candidate: analysis.Moments{Count: 5, Sum: 5, SumSquares: 5},
	}}
	after := &analysis.Snapshot{Shadow: analysis.ShadowCounters{
		Requests:    map[string]float64{"ok": 30, "error": 3, "dropped": 2},
		Rows:        map[string]float64{"agree": 60, "disagree": 4},
		LiveClasses: []float64{31, 33}, CandidateClasses: []float64{33, 31},
		Candidate: analysis.Moments{Count: 9, Sum: 7, SumSquares: 11},
	}}
	sw := analysis.Delta(before, after).Shadow
	assert.Equal(t, 22.0, sw.Mirrored, "ok and error: 20 + 2")
	assert.Equal(t, 2.0, sw.Failed)
	assert.Zero(t, sw.Dropped)
	assert.Equal(t, 40.0, sw.Agree)
	assert.Equal(t, 2.0, sw.Disagree)
	assert.Equal(t, []float64{20, 22}, sw.LiveClasses)
	assert.Equal(t, []float64{21, 21}, sw.CandidateClasses)
	assert.Equal(t, analysis.Moments{Count: 4, Sum: 2, SumSquares: 6}, sw.Candidate)
}

func TestSumAddsPodsBucketByBound(t *testing.T) {
	info := analysis.ModelInfo{Name: "digits", Version: "1.0.0"}
	a := &analysis.Snapshot{Models: []analysis.ModelInfo{info}, Infer: map[string]float64{"2xx": 10},
		Latency: analysis.Histogram{Count: 10, Sum: 1, Buckets: []analysis.Bucket{{UpperBound: 0.1, Count: 4}, {UpperBound: 1, Count: 9}}},
		Classes: []float64{1, 2}, Values: analysis.Moments{Count: 1, Sum: 2, SumSquares: 4}}
	b := &analysis.Snapshot{Models: []analysis.ModelInfo{info}, Infer: map[string]float64{"2xx": 5, "5xx": 1},
		Latency: analysis.Histogram{Count: 6, Sum: 2, Buckets: []analysis.Bucket{{UpperBound: 0.1, Count: 1}, {UpperBound: 0.5, Count: 3}, {UpperBound: 1, Count: 5}}},
		Classes: []float64{0, 1, 7}, Values: analysis.Moments{Count: 2, Sum: 1, SumSquares: 1}}
	s := analysis.Sum(a, nil, b)
	assert.Equal(t, []analysis.ModelInfo{info}, s.Models, "one version, listed once")
	assert.Equal(t, map[string]float64{"2xx": 15, "5xx": 1}, s.Infer)
	assert.Equal(t, []float64{1, 3, 7}, s.Classes)
	assert.Equal(t, analysis.Moments{Count: 3, Sum: 3, SumSquares: 5}, s.Values)
	// a has no 0.5 bucket: its count there is what it had at 0.1 (4), never more than it saw.
	assert.Equal(t, analysis.Histogram{Count: 16, Sum: 3, Buckets: []analysis.Bucket{
		{UpperBound: 0.1, Count: 5}, {UpperBound: 0.5, Count: 7}, {UpperBound: 1, Count: 14},
	}}, s.Latency)
}

func TestMomentsMeanAndVariance(t *testing.T) {
	m := momentsOf(2, 4, 4, 4, 5, 5, 7, 9) // the textbook example: mean 5, population variance 4
	assert.InDelta(t, 5, m.Mean(), 1e-12)
	assert.InDelta(t, 4, m.Variance(), 1e-12)
	assert.Zero(t, analysis.Moments{}.Mean())
	assert.Zero(t, analysis.Moments{}.Variance())
	// Computed from moments, 0.1 three times comes out at about -1.7e-18; a variance is never negative.
	require.GreaterOrEqual(t, momentsOf(0.1, 0.1, 0.1).Variance(), 0.0)
}

func momentsOf(values ...float64) analysis.Moments {
	var m analysis.Moments
	for _, v := range values {
		m.Count++
		m.Sum += v
		m.SumSquares += v * v
	}
	return m
}
