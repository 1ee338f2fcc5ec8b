package analysis_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelship/modelship/internal/deploy/analysis"
	"github.com/modelship/modelship/internal/ml/dataset"
	"github.com/modelship/modelship/internal/ml/inference"
	"github.com/modelship/modelship/internal/plumbing/projectpath"
	"github.com/modelship/modelship/internal/testenv"
	"github.com/modelship/modelship/serving/oip"
)

// TestMain removes the model-server binary the tests build.
func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// modelServer is a real model-server process serving one model as "digits".
type modelServer struct {
	base    string
	metrics string
	client  *oip.Client
	input   string
}

func startModelServer(t *testing.T, model string, extraArgs ...string) modelServer {
	t.Helper()
	bin := testenv.Binary(t, "./serving/cmd/model-server")
	addr := testenv.FreeAddr(t)
	p := testenv.Start(t, bin, append([]string{"-addr", addr, "-model-path", projectpath.Join(t, model),
		"-model-name", "digits", "-model-version", "1.0.0", "-log-level", "warn"}, extraArgs...), nil)
	base := "http://" + addr
	testenv.WaitHTTP(t, p, base+"/v2/health/ready", http.StatusOK)
	client := oip.NewClient(base)
	meta, err := client.Metadata(context.Background(), "digits")
	require.NoError(t, err)
	require.NotEmpty(t, meta.Inputs)
	return modelServer{base: base, metrics: base + "/metrics", client: client, input: meta.Inputs[0].Name}
}

func (s modelServer) scrape(t *testing.T) *analysis.Snapshot {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	snap, err := analysis.Scrape(ctx, http.DefaultClient, s.metrics)
	require.NoError(t, err)
	return snap
}

// infer sends rows as one request and returns the class the model predicted for each.
func (s modelServer) infer(t *testing.T, rows [][]float32) []int {
	t.Helper()
	resp, err := s.client.Infer(context.Background(), "digits", s.input, rows)
	require.NoError(t, err)
	require.NotEmpty(t, resp.Outputs)
	out := resp.Outputs[0]
	require.Len(t, out.Shape, 2)
	width := int(out.Shape[1])
	classes := make([]int, len(rows))
	for i := range rows {
		classes[i] = inference.ArgmaxRow(out.Data[i*width : (i+1)*width])
	}
	return classes
}

// digitRows are the validation samples' features, with their labels.
func digitRows(t *testing.T) ([][]float32, []int) {
	t.Helper()
	f, err := dataset.ReadFixture(projectpath.Join(t, "tests/fixtures/digits_validation.json"))
	require.NoError(t, err)
	rows, labels := make([][]float32, len(f.Samples)), make([]int, len(f.Samples))
	for i, s := range f.Samples {
		rows[i] = make([]float32, len(s.Features))
		for j, v := range s.Features {
			rows[i][j] = float32(v)
		}
		labels[i] = s.Label
	}
	return rows, labels
}

// lowDigitRows are the validation samples of digits 0, 1 and 2.
func lowDigitRows(t *testing.T) [][]float32 {
	t.Helper()
	all, labels := digitRows(t)
	var rows [][]float32
	for i, r := range all {
		if labels[i] <= 2 {
			rows = append(rows, r)
		}
	}
	return rows
}

func TestScrapeOfARealServerCountsWhatWasSent(t *testing.T) {
	srv := startModelServer(t, "models/digits-reference.onnx")
	rows, _ := digitRows(t)

	before := srv.scrape(t)
	require.Len(t, before.Models, 1)
	assert.Equal(t, "digits", before.Models[0].Name)
	assert.Equal(t, "1.0.0", before.Models[0].Version)
	assert.Len(t, before.Models[0].SHA256, 64)

	// Batches of 1 to 7 rows, so rows and requests differ.
	var requests, sent int
	predicted := make([]float64, 10)
	for size := 1; sent+size <= 60; size = size%7 + 1 {
		for _, c := range srv.infer(t, rows[sent:sent+size]) {
			predicted[c]++
		}
		sent += size
		requests++
	}
	// One request the server must refuse (no such input): a 4xx, not a server error.
	_, err := srv.client.Infer(context.Background(), "digits", "no-such-input", rows[:1])
	require.Error(t, err)
	requests++

	w := srv.windowAfter(t, before, requests)
	t.Logf("%d requests, %d rows: window %+v", requests, sent, w)
	assert.Equal(t, float64(requests), w.Requests)
	assert.Zero(t, w.Errors)
	assert.Equal(t, 1.0, w.ClientErrors)
	assert.Equal(t, float64(requests), w.Latency.Count, "every inference request timed")
	assert.Positive(t, w.P99())
	assert.Less(t, w.P99(), time.Second)
	require.NotEmpty(t, w.Classes, "the server exports no modelship_predictions_total")
	assert.Equal(t, predicted, padded(w.Classes, len(predicted)), "the class counts are the classes the responses predicted")
}

// padded is counts with zeros up to n classes: a server may export only the classes it has seen.
func padded(counts []float64, n int) []float64 {
	out := make([]float64, max(n, len(counts)))
	copy(out, counts)
	return out
}

func TestCanaryOfRealServers(t *testing.T) {
	stable := startModelServer(t, "models/digits-reference.onnx")
	twin := startModelServer(t, "models/digits-reference.onnx")
	weak := startModelServer(t, "models/digits-weak.onnx")

	// Only digits 0, 1 and 2: on them the weak model's answers spread where the reference's do
	// not.
	rows := lowDigitRows(t)
	require.GreaterOrEqual(t, len(rows), analysis.DefaultThresholds().MinRequests, "one request per row must reach MinRequests")

	servers := []modelServer{stable, twin, weak}
	before := make([]*analysis.Snapshot, len(servers))
	for i, s := range servers {
		before[i] = s.scrape(t)
	}
	for _, r := range rows {
		for _, s := range servers {
			s.infer(t, [][]float32{r})
		}
	}
	windows := make([]analysis.Window, len(servers))
	for i, s := range servers {
		windows[i] = s.windowAfter(t, before[i], len(rows))
		require.Equal(t, float64(len(rows)), windows[i].Requests)
	}
	stableW, twinW, weakW := windows[0], windows[1], windows[2]
	require.NotEmpty(t, stableW.Classes, "the server exports no modelship_predictions_total")

	th := analysis.DefaultThresholds()
	same := analysis.Canary(stableW, twinW, th)
	t.Logf("reference vs reference: JS %.4f, PSI %.4f: %s", analysis.JensenShannon(stableW.Classes, twinW.Classes),
		analysis.PSI(stableW.Classes, twinW.Classes), same)
	assert.True(t, same.Passed, "%s", same)
	assert.Less(t, check(t, same, "drift(js)").Value, 0.01)

	worse := analysis.Canary(stableW, weakW, th)
	js, psi := analysis.JensenShannon(stableW.Classes, weakW.Classes), analysis.PSI(stableW.Classes, weakW.Classes)
	t.Logf("reference vs weak: JS %.4f, PSI %.4f, classes %v vs %v: %s", js, psi, stableW.Classes, weakW.Classes, worse)
	assert.Greater(t, js, 0.1)
	assert.False(t, worse.Passed)
	drift := check(t, worse, "drift(js)")
	assert.False(t, drift.Passed)
	assert.InDelta(t, js, drift.Value, 1e-12)
	for _, c := range worse.Checks {
		if c.Name != "drift(js)" {
			assert.True(t, c.Passed, "only the predictions differ: %s", c)
		}
	}
}

func TestShadowOfRealServers(t *testing.T) {
	twin := startModelServer(t, "models/digits-reference.onnx")
	weak := startModelServer(t, "models/digits-weak.onnx")
	// Live servers that mirror every inference request to a candidate.
	toTwin := startModelServer(t, "models/digits-reference.onnx", "-shadow-url", twin.base)
	toWeak := startModelServer(t, "models/digits-reference.onnx", "-shadow-url", weak.base)

	// Digits 0, 1 and 2, where the weak model goes most wrong (see TestCanaryOfRealServers).
	rows := lowDigitRows(t)
	pairs := []struct{ live, candidate modelServer }{{toTwin, twin}, {toWeak, weak}}
	verdicts := make([]analysis.Verdict, len(pairs))
	for i, p := range pairs {
		liveBefore, candBefore := p.live.scrape(t), p.candidate.scrape(t)
		for _, r := range rows {
			p.live.infer(t, [][]float32{r})
		}
		live := p.live.waitMirrored(t, liveBefore, len(rows))
		candidate := p.candidate.windowAfter(t, candBefore, len(rows))
		require.Zero(t, live.Shadow.Dropped, "a mirror queue this short traffic overflowed")
		require.Equal(t, float64(len(rows)), live.Shadow.Mirrored)
		require.Equal(t, float64(len(rows)), live.Shadow.Agree+live.Shadow.Disagree, "one row per mirrored request")
		require.Equal(t, float64(len(rows)), candidate.Requests, "the candidate answered every mirrored request")
		verdicts[i] = analysis.Shadow(live, candidate, analysis.DefaultThresholds())
		t.Logf("shadow %d: agree %.0f, disagree %.0f, JS %.4f: %s", i, live.Shadow.Agree, live.Shadow.Disagree,
			analysis.JensenShannon(live.Shadow.LiveClasses, live.Shadow.CandidateClasses), verdicts[i])
	}
	same, worse := verdicts[0], verdicts[1]
	assert.True(t, same.Passed, "%s", same)
	assert.Equal(t, 1.0, check(t, same, "agreement").Value, "the same model agrees on every row")
	assert.False(t, worse.Passed)
	assert.False(t, check(t, worse, "agreement").Passed)
	assert.False(t, check(t, worse, "drift(js)").Passed)
	assert.True(t, check(t, worse, "mirror_errors").Passed, "the weak model answers; it is only wrong")
}

// windowAfter is s's window since before once it has counted n inference requests: a server
// counts a request just after writing its answer, so a scrape right after the last answer can
// come too early. More than n is left for the caller's checks to catch.
func (s modelServer) windowAfter(t *testing.T, before *analysis.Snapshot, n int) analysis.Window {
	t.Helper()
	return s.waitFor(t, before, fmt.Sprintf("%d inference requests counted", n),
		func(w analysis.Window) bool { return w.Requests >= float64(n) })
}

// waitMirrored is the live server s's window since before once it has settled every one of n
// one-row mirrored requests: mirroring runs after the live answer, and the server counts a
// request's result before the rows it compared.
func (s modelServer) waitMirrored(t *testing.T, before *analysis.Snapshot, n int) analysis.Window {
	t.Helper()
	return s.waitFor(t, before, fmt.Sprintf("%d one-row requests mirrored and compared", n), func(w analysis.Window) bool {
		return w.Shadow.Mirrored+w.Shadow.Dropped >= float64(n) && w.Shadow.Agree+w.Shadow.Disagree >= w.Shadow.Mirrored
	})
}

func (s modelServer) waitFor(t *testing.T, before *analysis.Snapshot, what string, done func(analysis.Window) bool) analysis.Window {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		w := analysis.Delta(before, s.scrape(t))
		if done(w) {
			return w
		}
		require.True(t, time.Now().Before(deadline), "not %s after 30s: %+v", what, w)
		time.Sleep(10 * time.Millisecond)
	}
}
