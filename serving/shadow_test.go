package serving_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelship/modelship/internal/ml/inference"
	"github.com/modelship/modelship/internal/plumbing/projectpath"
	"github.com/modelship/modelship/internal/testenv"
	"github.com/modelship/modelship/serving"
)

// waitFor is how long a test waits for mirrors to end before failing: far longer than they
// take, so only a mirror that never ends fails it.
const waitFor = 30 * time.Second

// shadowResults are a live server's modelship_shadow_requests_total by result.
func shadowResults(t *testing.T, families map[string]*dto.MetricFamily) (ok, failed, dropped float64) {
	t.Helper()
	return value(t, families, "modelship_shadow_requests_total", "result=ok"),
		value(t, families, "modelship_shadow_requests_total", "result=error"),
		value(t, families, "modelship_shadow_requests_total", "result=dropped")
}

// poll checks done until it holds, failing the test after waitFor. Unlike require.Eventually
// it checks on the test's goroutine, so done may use require.
func poll(t *testing.T, what string, done func() bool) {
	t.Helper()
	for deadline := time.Now().Add(waitFor); !done(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, waitFor)
		}
	}
}

// waitMirrored waits until n mirrors have ended (answered, failed or dropped) and returns the
// metrics then.
func waitMirrored(t *testing.T, base string, n float64) map[string]*dto.MetricFamily {
	t.Helper()
	poll(t, fmt.Sprintf("%v mirrors end", n), func() bool {
		ok, failed, dropped := shadowResults(t, scrape(t, base))
		return ok+failed+dropped >= n
	})
	// A scrape gathers its collectors concurrently, so the one that saw the last mirror end
	// may have read the row counters just before it: only a scrape begun after it sees all.
	return scrape(t, base)
}

// blockedCandidate is a candidate that takes requests and answers none until released, then
// 503: entered gets each request it holds, by its ShadowHeader.
type blockedCandidate struct {
	URL     string
	entered chan string
	release func()
}

func startBlockedCandidate(t *testing.T) *blockedCandidate {
	t.Helper()
	released := make(chan struct{})
	c := &blockedCandidate{entered: make(chan string, 1000)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		c.entered <- r.Header.Get(serving.ShadowHeader)
		<-released // not the request's context: only the test ends the wait
		http.Error(w, `{"error":"the candidate was held"}`, http.StatusServiceUnavailable)
	}))
	var once sync.Once
	c.release = func() { once.Do(func() { close(released) }) }
	t.Cleanup(srv.Close)
	t.Cleanup(c.release) // before srv.Close, which waits for the handlers
	c.URL = srv.URL
	return c
}

// lockedBuffer is a log destination the server's goroutines and the test share.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// A live server shadowed by a copy of its own model agrees on every mirrored row; shadowed by
// the model trained on shuffled labels, on few. Either way its answers are byte for byte those
// of a server without a shadow, its own request series count only its own requests, and the
// candidate sees the mirrored requests as ordinary ones.
func TestShadowMeasuresAgreementWithTheCandidate(t *testing.T) {
	samples := fixture(t).Samples
	requests := batches(samples, 6)
	plain := runServer(t, "models/digits-reference.onnx", serving.Config{})
	var want [][]byte
	for _, rows := range requests {
		want = append(want, postRows(t, plain, rows))
	}

	for _, tc := range []struct {
		candidate string
		check     func(t *testing.T, agree, disagree float64)
	}{
		{"models/digits-reference.onnx", func(t *testing.T, agree, disagree float64) {
			assert.Equal(t, float64(len(samples)), agree, "the same model agrees on every row")
			assert.Zero(t, disagree)
		}},
		{"models/digits-weak.onnx", func(t *testing.T, agree, disagree float64) {
			assert.Equal(t, float64(len(samples)), agree+disagree)
			assert.Less(t, agree/(agree+disagree), 0.5, "the weak model agrees on few rows")
		}},
	} {
		t.Run(tc.candidate, func(t *testing.T) {
			candidate := runServer(t, tc.candidate, serving.Config{})
			live := runServer(t, "models/digits-reference.onnx", serving.Config{ShadowURL: candidate})
			for i, rows := range requests {
				require.Equal(t, string(want[i]), string(postRows(t, live, rows)), "request %d: the shadow changed the live answer", i)
			}
			n := float64(len(requests))
			m := waitMirrored(t, live, n)
			ok, failed, dropped := shadowResults(t, m)
			assert.Equal(t, []float64{n, 0, 0}, []float64{ok, failed, dropped}, "ok, error, dropped")
			agree := value(t, m, "modelship_shadow_rows_total", "result=agree")
			disagree := value(t, m, "modelship_shadow_rows_total", "result=disagree")
			t.Logf("agreement %.3f over %v rows", agree/(agree+disagree), agree+disagree)
			tc.check(t, agree, disagree)
			assert.Equal(t, n, value(t, m, "modelship_shadow_duration_seconds"), "one round trip per mirror")

			// The live side of the mirrored rows is what the live server predicted; the two
			// sides differ where the models disagree.
			var liveTotal, candidateTotal, moved float64
			for class := range 10 {
				c := "class=" + strconv.Itoa(class)
				l := value(t, m, "modelship_shadow_predictions_total", "source=live", c)
				cand := value(t, m, "modelship_shadow_predictions_total", "source=candidate", c)
				assert.Equal(t, value(t, m, "modelship_predictions_total", c), l, "class %d", class)
				liveTotal, candidateTotal, moved = liveTotal+l, candidateTotal+cand, moved+max(l-cand, 0)
			}
			assert.Equal(t, float64(len(samples)), liveTotal)
			assert.Equal(t, float64(len(samples)), candidateTotal)
			assert.LessOrEqual(t, moved, disagree, "rows that changed class are disagreements")

			assert.Equal(t, n, value(t, m, "modelship_http_requests_total", "handler=infer", "code=200"), "the live server counts its own requests only")
			cm := scrape(t, candidate)
			assert.Equal(t, n, value(t, cm, "modelship_http_requests_total", "handler=infer", "code=200"), "the candidate counts the mirrors as requests")
			assert.Equal(t, float64(len(samples)), value(t, cm, "modelship_inference_rows_total"))
			assert.NotContains(t, cm, "modelship_shadow_requests_total", "the candidate mirrors nothing")
		})
	}
}

// A regression model is compared value by value, and the moments of both sides' values are
// counted: a copy of the model agrees on every row and has the live moments.
func TestShadowComparesARegressorsValues(t *testing.T) {
	const model = "examples/diabetes-regression/model/diabetes.onnx"
	candidate := runServer(t, model, serving.Config{ModelName: "diabetes"})
	live := runServer(t, model, serving.Config{ModelName: "digits", ShadowURL: candidate, ShadowModel: "diabetes"})
	before := scrape(t, live)
	assert.NotContains(t, before, "modelship_shadow_predictions_total", "a regressor has no class series")
	for _, source := range []string{"source=live", "source=candidate"} {
		v, ok := lookup(before, "modelship_shadow_values_total", source)
		assert.True(t, ok, "%s is there at 0 from the start", source)
		assert.Zero(t, v)
	}

	rows := [][]float64{
		{0.038, 0.051, 0.062, 0.022, -0.044, -0.035, -0.043, -0.003, 0.020, -0.018},
		{-0.002, -0.045, -0.051, -0.026, -0.008, -0.019, 0.074, -0.039, -0.068, -0.092},
		{0.085, 0.051, 0.044, -0.006, -0.046, -0.034, -0.032, -0.003, 0.003, -0.026},
	}
	var sum float64
	for _, row := range firstOutput(t, postRows(t, live, rows)) {
		sum += float64(row[0])
	}
	m := waitMirrored(t, live, 1)
	ok, _, _ := shadowResults(t, m)
	require.Equal(t, 1.0, ok)
	assert.Equal(t, 3.0, value(t, m, "modelship_shadow_rows_total", "result=agree"))
	assert.Zero(t, value(t, m, "modelship_shadow_rows_total", "result=disagree"))
	for _, source := range []string{"source=live", "source=candidate"} {
		assert.Equal(t, 3.0, value(t, m, "modelship_shadow_values_total", source))
		assert.InEpsilon(t, sum, value(t, m, "modelship_shadow_value_sum", source), 1e-6, source)
		assert.InEpsilon(t, value(t, m, "modelship_prediction_value_squares_sum"), value(t, m, "modelship_shadow_value_squares_sum", source), 1e-6, source)
	}
}

// A regressor's rows agree within 1%: a candidate (the same model, its answers scaled on the
// way back) 0.5% off agrees, 2% off does not; one that answers the wrong number of rows is a
// failed mirror, and nothing of it is compared.
func TestShadowJudgesAValueWithinOnePercent(t *testing.T) {
	const model = "examples/diabetes-regression/model/diabetes.onnx"
	diabetes := runServer(t, model, serving.Config{ModelName: "diabetes"})
	scale := func(scales ...float32) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			resp, err := http.Post(diabetes+"/v2/models/diabetes/infer", "application/json", r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			defer resp.Body.Close()
			var answer serving.InferResponse
			if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil || len(answer.Outputs) != 1 {
				http.Error(w, fmt.Sprintf("decode %v", err), http.StatusBadGateway)
				return
			}
			out := &answer.Outputs[0]
			out.Data = out.Data[:min(len(out.Data), len(scales))]
			for i := range out.Data {
				out.Data[i] *= scales[i]
			}
			_ = json.NewEncoder(w).Encode(answer)
		}))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	rows := [][]float64{
		{0.038, 0.051, 0.062, 0.022, -0.044, -0.035, -0.043, -0.003, 0.020, -0.018},
		{-0.002, -0.045, -0.051, -0.026, -0.008, -0.019, 0.074, -0.039, -0.068, -0.092},
		{0.085, 0.051, 0.044, -0.006, -0.046, -0.034, -0.032, -0.003, 0.003, -0.026},
	}

	live := runServer(t, model, serving.Config{ShadowURL: scale(1.005, 0.98, 1), ShadowModel: "diabetes"})
	postRows(t, live, rows)
	m := waitMirrored(t, live, 1)
	assert.Equal(t, 2.0, value(t, m, "modelship_shadow_rows_total", "result=agree"))
	assert.Equal(t, 1.0, value(t, m, "modelship_shadow_rows_total", "result=disagree"))

	short := runServer(t, model, serving.Config{ShadowURL: scale(1, 1), ShadowModel: "diabetes"})
	postRows(t, short, rows)
	m = waitMirrored(t, short, 1)
	ok, failed, _ := shadowResults(t, m)
	assert.Equal(t, []float64{0, 1}, []float64{ok, failed}, "two rows for three is a failed mirror")
	assert.Zero(t, value(t, m, "modelship_shadow_rows_total", "result=agree")+value(t, m, "modelship_shadow_rows_total", "result=disagree"))
	assert.Zero(t, value(t, m, "modelship_shadow_values_total", "source=candidate"))
}

// A candidate that holds every request does not hold the live answers: each comes back while
// the candidate still holds the mirrors before it, which end only once it lets go.
func TestShadowNeverHoldsTheLiveAnswer(t *testing.T) {
	candidate := startBlockedCandidate(t)
	logs := &lockedBuffer{}
	live := runServer(t, "models/digits-reference.onnx", serving.Config{ShadowURL: candidate.URL,
		ShadowTimeout: time.Hour, Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	rows := [][]float64{fixture(t).Samples[0].Features}
	body := inferBody(rows)

	const n = 4
	for i := range n {
		answered := make(chan int, 1)
		go func() {
			resp, err := http.Post(live+"/v2/models/digits/infer", "application/json", strings.NewReader(body))
			if err != nil {
				answered <- 0
				return
			}
			resp.Body.Close()
			answered <- resp.StatusCode
		}()
		select {
		case status := <-answered:
			require.Equal(t, http.StatusOK, status, "request %d", i)
		case <-time.After(waitFor):
			t.Fatalf("request %d got no answer while the candidate held its mirror", i)
		}
		if i == 0 {
			// The candidate holds the first mirror before more requests come.
			select {
			case marker := <-candidate.entered:
				assert.Equal(t, "1", marker, "a mirrored request says so in %s", serving.ShadowHeader)
			case <-time.After(waitFor):
				t.Fatal("the candidate never got the mirrored request")
			}
		}
	}
	ok, failed, _ := shadowResults(t, scrape(t, live))
	assert.Zero(t, ok+failed, "no mirror can have ended while the candidate holds them")

	candidate.release()
	m := waitMirrored(t, live, n)
	ok, failed, dropped := shadowResults(t, m)
	assert.Equal(t, []float64{0, n, 0}, []float64{ok, failed, dropped}, "a 503 is a failed mirror")
	assert.Zero(t, value(t, m, "modelship_shadow_rows_total", "result=agree")+value(t, m, "modelship_shadow_rows_total", "result=disagree"),
		"rows the candidate did not answer are not compared")
	warnings := strings.Count(logs.String(), "mirroring to the shadow candidate failed")
	assert.Equal(t, 1, warnings, "one warning for a burst of failures, not one each:\n%s", logs)
	assert.Contains(t, logs.String(), candidate.URL)
	assert.Contains(t, logs.String(), "status 503")
}

// A candidate that accepts connections and never answers: every mirror ends as an error after
// the shadow timeout, while the live answers are all there.
func TestShadowTimesOutAHangingCandidate(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // held open, never read or answered
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	const timeout = 200 * time.Millisecond
	live := runServer(t, "models/digits-reference.onnx", serving.Config{ShadowURL: "http://" + ln.Addr().String(), ShadowTimeout: timeout})

	const n = 4
	for i := range n {
		postRows(t, live, [][]float64{fixture(t).Samples[i].Features})
	}
	m := waitMirrored(t, live, n)
	ok, failed, dropped := shadowResults(t, m)
	assert.Equal(t, []float64{0, n, 0}, []float64{ok, failed, dropped})
	h := m["modelship_shadow_duration_seconds"].GetMetric()[0].GetHistogram()
	assert.Equal(t, uint64(n), h.GetSampleCount(), "a timed-out round trip is observed too")
	assert.GreaterOrEqual(t, h.GetSampleSum(), n*timeout.Seconds(), "each mirror waited out the timeout")
}

// With the queue full and the workers held by the candidate, more mirrors are dropped and
// counted, and the live answers do not wait.
func TestShadowDropsWhatTheQueueCannotHold(t *testing.T) {
	candidate := startBlockedCandidate(t)
	live := runServer(t, "models/digits-reference.onnx", serving.Config{ShadowURL: candidate.URL, ShadowQueue: 1, ShadowTimeout: time.Hour})
	const n = 12
	row := [][]float64{fixture(t).Samples[0].Features}
	for range n {
		postRows(t, live, row)
	}
	// Two workers hold one mirror each and the queue one more: the rest are dropped.
	_, _, dropped := shadowResults(t, scrape(t, live))
	assert.GreaterOrEqual(t, dropped, float64(n-3))

	candidate.release()
	m := waitMirrored(t, live, n)
	ok, failed, dropped2 := shadowResults(t, m)
	assert.Equal(t, dropped, dropped2, "only a full queue drops")
	assert.Equal(t, float64(n), ok+failed+dropped2)
	assert.Zero(t, ok)
}

// ShadowSample mirrors about that fraction of requests.
func TestShadowMirrorsTheSampleOnly(t *testing.T) {
	candidate := runServer(t, "models/digits-reference.onnx", serving.Config{})
	live := runServer(t, "models/digits-reference.onnx", serving.Config{ShadowURL: candidate, ShadowSample: 0.25})
	row := [][]float64{fixture(t).Samples[0].Features}
	const n = 400
	for range n {
		postRows(t, live, row)
	}
	// The mirrors were all queued before the last answer came; wait until the count has settled
	// and the candidate has answered that many. (Even a few still on their way would leave the
	// count well inside the bounds below.)
	var mirrored float64
	settled := 0
	poll(t, "the mirrors settle", func() bool {
		ok, failed, dropped := shadowResults(t, scrape(t, live))
		require.Zero(t, failed+dropped)
		answered := value(t, scrape(t, candidate), "modelship_http_requests_total", "handler=infer", "code=200")
		if ok != mirrored || answered != ok {
			mirrored, settled = ok, 0
			return false
		}
		settled++
		return settled >= 20
	})
	// 400 draws at 1/4: 100 expected, σ ≈ 8.7; 40 and 160 are seven σ away.
	assert.Greater(t, mirrored, 40.0)
	assert.Less(t, mirrored, 160.0)
	t.Logf("mirrored %v of %d", mirrored, n)
}

// A request that is itself a mirror is never mirrored again, so two servers that shadow each
// other do not bounce requests. The queue of one and a held candidate make it visible at once:
// every mirror past the first three is counted dropped before its request is answered.
func TestShadowDoesNotMirrorAMirror(t *testing.T) {
	candidate := startBlockedCandidate(t)
	live := runServer(t, "models/digits-reference.onnx", serving.Config{ShadowURL: candidate.URL, ShadowQueue: 1, ShadowTimeout: time.Hour})
	body := inferBody([][]float64{fixture(t).Samples[0].Features})
	marked := map[string]string{serving.ShadowHeader: "1", "Content-Type": "application/json"}
	for range 10 {
		status, raw := do(t, http.MethodPost, live+"/v2/models/digits/infer", body, marked)
		require.Equal(t, http.StatusOK, status, string(raw))
	}
	_, _, dropped := shadowResults(t, scrape(t, live))
	assert.Zero(t, dropped, "no mirrored request was mirrored")
	assert.Empty(t, candidate.entered)

	for range 10 {
		postRows(t, live, [][]float64{fixture(t).Samples[0].Features})
	}
	_, _, dropped = shadowResults(t, scrape(t, live))
	assert.GreaterOrEqual(t, dropped, 7.0, "ordinary requests are mirrored")
}

// Stopping a server whose workers are held by a candidate: Serve returns (the graceful
// shutdown does not wait for mirrors), and no shadow worker is left running.
func TestShadowStopsWithTheServer(t *testing.T) {
	candidate := startBlockedCandidate(t)
	t.Run("serve", func(t *testing.T) {
		live := runServer(t, "models/digits-reference.onnx", serving.Config{ShadowURL: candidate.URL, ShadowTimeout: time.Hour})
		for range 5 {
			postRows(t, live, [][]float64{fixture(t).Samples[0].Features})
		}
		for range 2 {
			select {
			case <-candidate.entered:
			case <-time.After(waitFor):
				t.Fatal("the workers never reached the candidate")
			}
		}
		assert.True(t, shadowWorkersRunning(t))
	}) // runServer's cleanup stops the server and fails the test if Serve does not return
	// A worker has signalled its WaitGroup from its deferred call but may still be on its way
	// out of work, so its goroutine is given a moment to end; a leaked worker never does.
	poll(t, "the shadow workers stop with the server", func() bool { return !shadowWorkersRunning(t) })
}

// shadowWorkersRunning reports whether any goroutine is in a shadow worker.
func shadowWorkersRunning(t *testing.T) bool {
	t.Helper()
	var b bytes.Buffer
	require.NoError(t, pprof.Lookup("goroutine").WriteTo(&b, 1))
	return strings.Contains(b.String(), "serving.(*shadow).work")
}

// The binary mirrors when given -shadow-url, and refuses shadow settings that cannot work,
// naming the flag (or variable) at fault.
func TestBinaryShadowFlags(t *testing.T) {
	candidate := runServer(t, "models/digits-weak.onnx", serving.Config{ModelName: "weak"})
	base, _ := startServer(t, "-shadow-url", candidate, "-shadow-model", "weak", "-shadow-sample", "1", "-shadow-timeout", "5s")
	for i := range 3 {
		postRows(t, base, [][]float64{fixture(t).Samples[i].Features})
	}
	m := waitMirrored(t, base, 3)
	ok, _, _ := shadowResults(t, m)
	assert.Equal(t, 3.0, ok)

	bin := testenv.Binary(t, "./serving/cmd/model-server")
	cases := map[string]struct {
		args, env []string
		want      string
	}{
		"no scheme":       {[]string{"-shadow-url", "10.0.0.7:8000"}, nil, `-shadow-url: "10.0.0.7:8000" is not a URL`},
		"ftp":             {[]string{"-shadow-url", "ftp://10.0.0.7"}, nil, `-shadow-url: "ftp://10.0.0.7" is not an http:// or https:// URL with a host`},
		"no host":         {[]string{"-shadow-url", "http://:8000"}, nil, "URL with a host"},
		"query":           {[]string{"-shadow-url", "http://10.0.0.7:8000/?x=1"}, nil, "has a query or fragment"},
		"sample 0":        {[]string{"-shadow-sample", "0"}, nil, "-shadow-sample: 0 is not a fraction in (0, 1]"},
		"sample over 1":   {[]string{"-shadow-sample", "1.5"}, nil, "-shadow-sample: 1.5 is not a fraction in (0, 1]"},
		"negative sample": {[]string{"-shadow-sample", "-0.1"}, nil, "-shadow-sample: -0.1 is not a fraction"},
		"zero timeout":    {[]string{"-shadow-timeout", "0s"}, nil, "-shadow-timeout 0s must be positive"},
		"env URL":         {nil, []string{"MODELSHIP_SHADOW_URL=ftp://x"}, `-shadow-url: "ftp://x" is not an http:// or https:// URL`},
		"env sample":      {nil, []string{"MODELSHIP_SHADOW_SAMPLE=ten percent"}, `MODELSHIP_SHADOW_SAMPLE="ten percent" (the environment's -shadow-sample)`},
		"env timeout":     {nil, []string{"MODELSHIP_SHADOW_TIMEOUT=2"}, `MODELSHIP_SHADOW_TIMEOUT="2" (the environment's -shadow-timeout)`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			args := append([]string{"-addr", testenv.FreeAddr(t), "-model-path", "/nonexistent.onnx"}, tc.args...)
			p := testenv.Start(t, bin, args, tc.env)
			err := p.Wait()
			var exitErr interface{ ExitCode() int }
			require.ErrorAs(t, err, &exitErr)
			assert.Equal(t, 2, exitErr.ExitCode(), "a usage error, before the model is loaded")
			assert.Contains(t, p.Output(), tc.want)
		})
	}
}

// The live side's cost of mirroring every request (the copy and the hand-over; a full queue
// drops), next to BenchmarkInferHandlerSingleRow. The workers and the candidate share the CPU.
func BenchmarkInferHandlerSingleRowShadowed(b *testing.B) {
	m, err := inference.Load(projectpath.Join(b, "models/digits-reference.onnx"))
	require.NoError(b, err)
	candidate := httptest.NewServer(newBenchCandidate(b))
	defer candidate.Close()
	s, err := serving.New(m, serving.Config{ModelName: "digits", ModelVersion: "1", ShadowURL: candidate.URL})
	require.NoError(b, err)
	defer s.Close()
	require.NoError(b, s.WarmUp())
	benchSingleRow(b, s.Handler())
}

// newBenchCandidate is a reference model server's handler.
func newBenchCandidate(b *testing.B) http.Handler {
	m, err := inference.Load(projectpath.Join(b, "models/digits-reference.onnx"))
	require.NoError(b, err)
	s, err := serving.New(m, serving.Config{ModelName: "digits"})
	require.NoError(b, err)
	require.NoError(b, s.WarmUp())
	return s.Handler()
}
