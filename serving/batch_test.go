package serving_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelship/modelship/internal/ml/inference"
	"github.com/modelship/modelship/internal/plumbing/projectpath"
	"github.com/modelship/modelship/serving"
)

// With batching, concurrent requests of different sizes each get exactly their own rows'
// outputs, the ones they get alone; and the model ran fewer times than there were requests.
func TestBatchingHandsEachRequestItsOwnRows(t *testing.T) {
	m, err := inference.Load(projectpath.Join(t, "models/digits-reference.onnx"))
	require.NoError(t, err)
	s, err := serving.New(m, serving.Config{ModelName: "digits", BatchMaxDelay: 2 * time.Millisecond, MaxInFlight: 16})
	require.NoError(t, err)
	require.NoError(t, s.WarmUp())
	samples := fixture(t).Samples

	const clients, rounds = 16, 20
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				first, n := (c*rounds+r)%len(samples), 1+(c+r)%3
				var rows [][]float64
				flat := []float32{}
				for i := range n {
					row := samples[(first+i)%len(samples)].Features
					rows = append(rows, row)
					for _, v := range row {
						flat = append(flat, float32(v))
					}
				}
				rec := httptest.NewRecorder()
				s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v2/models/digits/infer", strings.NewReader(inferBody(rows))))
				if !assert.Equal(t, http.StatusOK, rec.Code, rec.Body.String()) {
					return
				}
				var resp serving.InferResponse
				require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &resp))
				alone, err := m.Infer(n, flat)
				require.NoError(t, err)
				assert.Equal(t, []int64{int64(n), 10}, resp.Outputs[0].Shape)
				assert.InDeltaSlice(t, alone[0].Data, resp.Outputs[0].Data, 1e-6)
			}
		}()
	}
	wg.Wait()

	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	runs := metricValue(t, rec.Body.String(), "modelship_inference_duration_seconds_count")
	t.Logf("%d requests in %v model runs", clients*rounds, runs)
	assert.Less(t, runs, float64(clients*rounds+1), "warm-up included")
}

// The handlers' series keep promhttp's labels: methods in lower case ("unknown" for made-up
// ones), the status code, 200 for a handler that wrote nothing else.
func TestMetricsLabelRequestsAsPromhttpDid(t *testing.T) {
	s := newTestServer(t)
	require.NoError(t, s.WarmUp())
	for _, r := range []*http.Request{
		httptest.NewRequest(http.MethodGet, "/v2/health/live", nil),
		httptest.NewRequest(http.MethodHead, "/v2/health/ready", nil),
		httptest.NewRequest("BREW", "/v2/models/digits/infer", nil),
		httptest.NewRequest(http.MethodPost, "/v2/models/digits/infer", strings.NewReader("{")),
	} {
		s.Handler().ServeHTTP(httptest.NewRecorder(), r)
	}
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	for _, series := range []string{
		`modelship_http_requests_total{code="200",handler="live",method="get"} 1`,
		`modelship_http_requests_total{code="200",handler="ready",method="head"} 1`,
		`modelship_http_requests_total{code="405",handler="infer",method="unknown"} 1`,
		`modelship_http_requests_total{code="400",handler="infer",method="post"} 1`,
		`modelship_http_request_duration_seconds_count{handler="infer",method="post"} 1`,
		`modelship_http_requests_in_flight 0`,
		`modelship_inference_errors_total{reason="bad_request"} 1`,
	} {
		assert.Contains(t, rec.Body.String(), series)
	}
}

func metricValue(t *testing.T, exposition, name string) float64 {
	t.Helper()
	for _, line := range strings.Split(exposition, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			var f float64
			require.NoError(t, json.Unmarshal([]byte(v), &f))
			return f
		}
	}
	t.Fatalf("no %s in the metrics", name)
	return 0
}
