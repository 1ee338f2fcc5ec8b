package analysis_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelship/modelship/internal/deploy/analysis"
)

// serverBuckets are the model server's latency buckets (serving/metrics.go).
var serverBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .2, .5, 1, 2.5}

// latencyOf is the histogram of n requests that each took seconds.
func latencyOf(n int, seconds float64) analysis.Histogram {
	h := analysis.Histogram{Count: float64(n), Sum: float64(n) * seconds}
	for _, le := range serverBuckets {
		var c float64
		if seconds <= le {
			c = float64(n)
		}
		h.Buckets = append(h.Buckets, analysis.Bucket{UpperBound: le, Count: c})
	}
	return h
}

// window is n requests, errors of them 5xx, each taking seconds, predicting classes.
func window(n, errors int, seconds float64, classes ...float64) analysis.Window {
	return analysis.Window{Requests: float64(n), Errors: float64(errors), Latency: latencyOf(n, seconds), Classes: classes}
}

// check finds the named check, failing the test when it is missing.
func check(t *testing.T, v analysis.Verdict, name string) analysis.Check {
	t.Helper()
	for _, c := range v.Checks {
		if c.Name == name {
			return c
		}
	}
	require.Failf(t, "no such check", "%q in %s", name, v)
	return analysis.Check{}
}

// assertVerdict holds a verdict to what a case wants: passed or not, inconclusive or not, exactly
// these checks failed (in order), and each named check's detail saying what it should.
func assertVerdict(t *testing.T, v analysis.Verdict, passed, undecided bool, failed []string, detailHas map[string]string) {
	t.Helper()
	t.Log(v)
	assert.Equal(t, passed, v.Passed)
	assert.Equal(t, undecided, v.Inconclusive)
	var got []string
	for _, f := range v.Failed() {
		got = append(got, f.Name)
	}
	assert.Equal(t, failed, got)
	for name, want := range detailHas {
		assert.Contains(t, check(t, v, name).Detail, want)
	}
}

func TestCanaryVerdicts(t *testing.T) {
	th := analysis.DefaultThresholds()
	noFloor := th
	noFloor.P99RatioFloor = 0
	// Requests of 0.3ms land in (0.25ms, 0.5ms]: p99 = 0.25ms + 0.25ms·0.99 = 0.4975ms.
	// Requests of 2ms land in (1ms, 2.5ms]:        p99 = 1ms + 1.5ms·0.99   = 2.485ms.
	// Requests of 8ms land in (5ms, 10ms]:          p99 = 5ms + 5ms·0.99     = 9.95ms.
	// Requests of 40ms land in (25ms, 50ms]:        p99 = 25ms + 25ms·0.99   = 49.75ms.
	stable := window(200, 0, 0.0003, 60, 70, 70)
	regStable := analysis.Window{Requests: 200, Latency: latencyOf(200, 0.0003), Values: momentsOf(8, 12)}

	cases := []struct {
		name       string
		stable     analysis.Window
		candidate  analysis.Window
		th         analysis.Thresholds
		passed     bool
		undecided  bool
		failed     []string // the checks that must fail
		detailHas  map[string]string
		skippedHas map[string]string
	}{
		{name: "a healthy candidate passes", stable: stable, candidate: window(100, 0, 0.0003, 30, 35, 35), th: th, passed: true},
		{name: "too few requests is inconclusive", stable: stable, candidate: window(12, 12, 3, 12), th: th, undecided: true,
			failed: []string{"requests"}, detailHas: map[string]string{"requests": "answered 12 inference requests; 50 are needed"}},
		{name: "2% 5xx fails the error rate", stable: stable, candidate: window(100, 2, 0.0003, 30, 35, 35), th: th,
			failed: []string{"error_rate"}, detailHas: map[string]string{"error_rate": "2 of 100"}},
		{name: "a slow candidate fails the absolute p99", stable: window(100, 0, 0.3, 30, 35, 35), candidate: window(100, 0, 0.3, 30, 35, 35), th: th,
			failed: []string{"p99"}},
		{name: "5x a sub-millisecond stable passes through the floor", stable: stable, candidate: window(100, 0, 0.002, 30, 35, 35), th: th, passed: true,
			detailHas: map[string]string{"p99_ratio": "counted as 5ms"}},
		{name: "5x a sub-millisecond stable fails without the floor", stable: stable, candidate: window(100, 0, 0.002, 30, 35, 35), th: noFloor,
			failed: []string{"p99_ratio"}},
		{name: "5x a stable above the floor fails the ratio", stable: window(100, 0, 0.008, 30, 35, 35), candidate: window(100, 0, 0.04, 30, 35, 35), th: th,
			failed: []string{"p99_ratio"}},
		{name: "a stable without latency data skips the ratio", stable: analysis.Window{Classes: []float64{1, 1, 1}}, candidate: window(100, 0, 0.002, 30, 35, 35), th: th,
			passed: true, skippedHas: map[string]string{"p99_ratio": "stable has no latency data"}},
		{name: "a candidate without latency data fails the p99", stable: stable, candidate: analysis.Window{Requests: 100, Classes: []float64{30, 35, 35}}, th: th,
			failed: []string{"p99"}, detailHas: map[string]string{"p99": "no inference latency observations"}},
		{name: "a different class distribution fails the drift", stable: window(100, 0, 0.0003, 50, 50, 0), candidate: window(100, 0, 0.0003, 0, 50, 50), th: th,
			failed: []string{"drift(js)"}, detailHas: map[string]string{"drift(js)": "psi "}},
		{name: "a stable that predicted nothing passes the drift", stable: window(100, 0, 0.0003), candidate: window(100, 0, 0.0003, 30, 35, 35), th: th,
			passed: true, skippedHas: map[string]string{"drift": "stable answered nothing to compare with"}},
		{name: "a candidate that predicted nothing fails the drift", stable: stable, candidate: window(100, 0, 0.0003), th: th,
			failed: []string{"drift(js)"}, detailHas: map[string]string{"drift(js)": "the candidate none"}},
		// stable: 8 and 12, mean 10, std 2.
		{name: "a regression mean shift of 1 std fails", stable: regStable, candidate: withValues(momentsOf(10, 14)), th: th,
			failed: []string{"mean_shift"}, detailHas: map[string]string{"mean_shift": "candidate mean 12 vs stable mean 10 (std 2)"}},
		{name: "a regression mean shift of 0.25 std passes", stable: regStable, candidate: withValues(momentsOf(8.5, 12.5)), th: th, passed: true},
		{name: "a regression variance 4x stable's fails", stable: regStable, candidate: withValues(momentsOf(6, 14)), th: th,
			failed: []string{"variance_ratio"}},
		{name: "a regression variance 1/4 of stable's fails", stable: regStable, candidate: withValues(momentsOf(9, 11)), th: th,
			failed: []string{"variance_ratio"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := analysis.Canary(c.stable, c.candidate, c.th)
			assertVerdict(t, v, c.passed, c.undecided, c.failed, c.detailHas)
			for name, want := range c.skippedHas {
				ch := check(t, v, name)
				assert.True(t, ch.Skipped && ch.Passed, "%s skipped and passed", name)
				assert.Contains(t, ch.Detail, want)
			}
		})
	}
}

func withValues(m analysis.Moments) analysis.Window {
	return analysis.Window{Requests: 200, Latency: latencyOf(200, 0.0003), Values: m}
}

func TestCanaryP99RatioIsMeasuredAgainstTheFloor(t *testing.T) {
	v := analysis.Canary(window(200, 0, 0.0003, 1), window(100, 0, 0.002, 1), analysis.DefaultThresholds())
	// 2.485ms over max(0.4975ms, 5ms).
	assert.InDelta(t, 2.485/5, check(t, v, "p99_ratio").Value, 1e-9)
	assert.InDelta(t, 0.002485, check(t, v, "p99").Value, 1e-12)

	th := analysis.DefaultThresholds()
	th.P99RatioFloor = 0
	v = analysis.Canary(window(200, 0, 0.0003, 1), window(100, 0, 0.002, 1), th)
	assert.InDelta(t, 2.485/0.4975, check(t, v, "p99_ratio").Value, 1e-9)

	th.MaxP99Ratio = 0
	v = analysis.Canary(window(200, 0, 0.0003, 1), window(100, 0, 0.002, 1), th)
	assert.True(t, check(t, v, "p99_ratio").Skipped, "max_p99_ratio 0 turns the ratio off")
	assert.True(t, v.Passed)
}

func TestVerdictStringAndJSON(t *testing.T) {
	v := analysis.Canary(window(200, 0, 0.0003, 50, 50, 0), window(100, 0, 0.0003, 0, 50, 50), analysis.DefaultThresholds())
	s := v.String()
	assert.True(t, strings.HasPrefix(s, "failed: requests 100 >= 50 ok; error_rate 0.000 <= 0.010 ok; p99 498µs <= 200ms ok; "), s)
	// JS of (1/2, 1/2, 0) and (0, 1/2, 1/2) is 1/2 (see the divergence test).
	assert.Contains(t, s, "drift(js) 0.500 > 0.100 FAILED (psi ")
	assert.NotContains(t, s, "\n")

	// A regression candidate whose mean moved against a constant stable: an unbounded shift,
	// which must still encode.
	v = analysis.Canary(analysis.Window{Requests: 100, Latency: latencyOf(100, 0.001), Values: momentsOf(5, 5)},
		withValues(momentsOf(6, 6)), analysis.DefaultThresholds())
	assert.Contains(t, v.String(), "mean_shift inf > 0.50σ FAILED")
	raw, err := json.Marshal(v)
	require.NoError(t, err)
	var back analysis.Verdict
	require.NoError(t, json.Unmarshal(raw, &back))
	assert.Equal(t, v, back)
	assert.Contains(t, string(raw), `"name":"mean_shift"`)

	inc := analysis.Canary(window(200, 0, 0.0003, 1), window(3, 0, 0.0003, 1), analysis.DefaultThresholds())
	assert.Equal(t, "inconclusive: requests 3 < 50 not yet (candidate answered 3 inference requests; 50 are needed before judging)", inc.String())
}

// mirror is a live server's window while it mirrored to a candidate.
func mirror(agree, disagree, mirrored, failed float64, live, candidate []float64) analysis.Window {
	return analysis.Window{Requests: mirrored, Latency: latencyOf(int(mirrored), 0.0003), Classes: live,
		Shadow: analysis.ShadowWindow{Mirrored: mirrored, Failed: failed, Dropped: 7, Agree: agree, Disagree: disagree,
			LiveClasses: live, CandidateClasses: candidate}}
}

func TestShadowVerdicts(t *testing.T) {
	th := analysis.DefaultThresholds()
	fast := window(100, 0, 0.0004)
	// 60 mirrored rows: live predicted 8 and 12 (mean 10, std 2), the candidate 10 and 14.
	regLive := analysis.Window{Requests: 60, Latency: latencyOf(60, 0.0003), Shadow: analysis.ShadowWindow{Mirrored: 60,
		Live: momentsOf(repeat(30, 8, 12)...), Candidate: momentsOf(repeat(30, 10, 14)...)}}

	cases := []struct {
		name      string
		live      analysis.Window
		candidate analysis.Window
		passed    bool
		undecided bool
		failed    []string
		detailHas map[string]string
	}{
		{name: "an agreeing candidate passes", live: mirror(98, 2, 100, 0, []float64{50, 50}, []float64{49, 51}), candidate: fast, passed: true,
			detailHas: map[string]string{"mirror_errors": "7 not mirrored"}},
		{name: "too few rows is inconclusive", live: mirror(30, 0, 30, 0, []float64{15, 15}, []float64{15, 15}), candidate: fast, undecided: true,
			failed: []string{"rows"}, detailHas: map[string]string{"rows": "30 mirrored rows compared; 50 are needed"}},
		{name: "90% agreement fails", live: mirror(90, 10, 100, 0, []float64{50, 50}, []float64{45, 55}), candidate: fast,
			failed: []string{"agreement"}, detailHas: map[string]string{"agreement": "90 of 100"}},
		{name: "5% failed mirrors fail", live: mirror(98, 2, 100, 5, []float64{50, 50}, []float64{49, 51}), candidate: fast,
			failed: []string{"mirror_errors"}, detailHas: map[string]string{"mirror_errors": "5 of 100 mirrored requests failed"}},
		{name: "a drifting candidate fails", live: mirror(96, 4, 100, 0, []float64{100, 0}, []float64{50, 50}), candidate: fast,
			failed: []string{"drift(js)"}},
		{name: "a slow candidate fails its p99", live: mirror(98, 2, 100, 0, []float64{50, 50}, []float64{50, 50}), candidate: window(100, 0, 0.3),
			failed: []string{"p99", "p99_ratio"}},
		{name: "a regression mirror is judged by its values", live: regLive, candidate: fast,
			failed: []string{"mean_shift"}, detailHas: map[string]string{"mean_shift": "candidate mean 12 vs live mean 10 (std 2)"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := analysis.Shadow(c.live, c.candidate, th)
			assertVerdict(t, v, c.passed, c.undecided, c.failed, c.detailHas)
		})
	}
}

func TestThresholdsValidateAndJSON(t *testing.T) {
	require.NoError(t, analysis.DefaultThresholds().Validate())

	bad := analysis.DefaultThresholds()
	bad.MinRequests = 0
	bad.MaxErrorRate = 1.5
	bad.MaxP99 = 0
	bad.MaxP99Ratio = 0.5
	bad.MaxDrift = -0.1
	bad.MinAgreement = 2
	err := bad.Validate()
	require.Error(t, err)
	for _, want := range []string{"min_requests is 0; want at least 1", "max_error_rate is 1.5; want a share from 0 to 1",
		"max_p99 is 0s", "max_p99_ratio is 0.5; want 0 (off) or at least 1", "max_drift is -0.1", "min_agreement is 2"} {
		assert.Contains(t, err.Error(), want)
	}
	assert.NotContains(t, err.Error(), "max_variance_ratio", "only the bad fields are named")

	th := analysis.DefaultThresholds()
	require.NoError(t, json.Unmarshal([]byte(`{"max_p99": "150ms", "max_drift": 0.05}`), &th))
	want := analysis.DefaultThresholds()
	want.MaxP99, want.MaxDrift = 150*time.Millisecond, 0.05
	assert.Equal(t, want, th, "fields left out keep their defaults")

	raw, err := json.Marshal(want)
	require.NoError(t, err)
	assert.Contains(t, string(raw), `"max_p99":"150ms"`)
	assert.Contains(t, string(raw), `"p99_ratio_floor":"5ms"`)
	var back analysis.Thresholds
	require.NoError(t, json.Unmarshal(raw, &back))
	assert.Equal(t, want, back)

	err = json.Unmarshal([]byte(`{"max_p99": 200}`), &th)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `such as "200ms"`)
	err = json.Unmarshal([]byte(`{"max_p99_ration": 2}`), &th)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "max_p99_ration")
}

// repeat is values n times over.
func repeat(n int, values ...float64) []float64 {
	var out []float64
	for range n {
		out = append(out, values...)
	}
	return out
}
