package analysis_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelship/modelship/internal/deploy/analysis"
)

// livePage is a live server's page with every series analysis reads, as client_golang writes it.
const livePage = `# HELP modelship_model_info The model this server runs.
# TYPE modelship_model_info gauge
modelship_model_info{backend="gonnx",name="digits",sha256="abc",version="1.0.0"} 1
# TYPE modelship_http_requests_total counter
modelship_http_requests_total{code="200",handler="infer",method="post"} 40
modelship_http_requests_total{code="400",handler="infer",method="post"} 2
modelship_http_requests_total{code="503",handler="infer",method="post"} 1
modelship_http_requests_total{code="200",handler="ready",method="get"} 500
# TYPE modelship_http_request_duration_seconds histogram
modelship_http_request_duration_seconds_bucket{handler="infer",method="post",le="0.001"} 30
modelship_http_request_duration_seconds_bucket{handler="infer",method="post",le="0.01"} 42
modelship_http_request_duration_seconds_bucket{handler="infer",method="post",le="+Inf"} 43
modelship_http_request_duration_seconds_sum{handler="infer",method="post"} 0.2
modelship_http_request_duration_seconds_count{handler="infer",method="post"} 43
modelship_http_request_duration_seconds_bucket{handler="ready",method="get",le="0.001"} 500
modelship_http_request_duration_seconds_bucket{handler="ready",method="get",le="0.01"} 500
modelship_http_request_duration_seconds_bucket{handler="ready",method="get",le="+Inf"} 500
modelship_http_request_duration_seconds_sum{handler="ready",method="get"} 0.1
modelship_http_request_duration_seconds_count{handler="ready",method="get"} 500
# TYPE modelship_predictions_total counter
modelship_predictions_total{class="0"} 5
modelship_predictions_total{class="2"} 7
# TYPE modelship_shadow_requests_total counter
modelship_shadow_requests_total{result="ok"} 30
modelship_shadow_requests_total{result="error"} 2
modelship_shadow_requests_total{result="dropped"} 4
# TYPE modelship_shadow_rows_total counter
modelship_shadow_rows_total{result="agree"} 50
modelship_shadow_rows_total{result="disagree"} 3
# TYPE modelship_shadow_predictions_total counter
modelship_shadow_predictions_total{class="0",source="live"} 20
modelship_shadow_predictions_total{class="1",source="live"} 33
modelship_shadow_predictions_total{class="1",source="candidate"} 53
# TYPE modelship_shadow_duration_seconds histogram
modelship_shadow_duration_seconds_bucket{le="0.01"} 31
modelship_shadow_duration_seconds_bucket{le="+Inf"} 32
modelship_shadow_duration_seconds_sum 0.1
modelship_shadow_duration_seconds_count 32
`

const regressionPage = `# TYPE modelship_model_info gauge
modelship_model_info{backend="gonnx",name="diabetes",sha256="def",version="2"} 1
# TYPE modelship_prediction_values_total counter
modelship_prediction_values_total 4
# TYPE modelship_prediction_value_sum gauge
modelship_prediction_value_sum -6
# TYPE modelship_prediction_value_squares_sum gauge
modelship_prediction_value_squares_sum 20
# TYPE modelship_shadow_values_total counter
modelship_shadow_values_total{source="live"} 3
modelship_shadow_values_total{source="candidate"} 3
# TYPE modelship_shadow_value_sum gauge
modelship_shadow_value_sum{source="live"} 6
modelship_shadow_value_sum{source="candidate"} 9
# TYPE modelship_shadow_value_squares_sum gauge
modelship_shadow_value_squares_sum{source="live"} 14
modelship_shadow_value_squares_sum{source="candidate"} 29
`

func TestParseReadsEverySeries(t *testing.T) {
	s, err := analysis.Parse(strings.NewReader(livePage))
	require.NoError(t, err)
	assert.Equal(t, []analysis.ModelInfo{{Name: "digits", Version: "1.0.0", SHA256: "abc", Backend: "gonnx"}}, s.Models)
	assert.Equal(t, map[string]float64{"2xx": 40, "4xx": 2, "5xx": 1}, s.Infer, "inference requests only, by status class")
	assert.Equal(t, analysis.Histogram{Count: 43, Sum: 0.2, Buckets: []analysis.Bucket{{UpperBound: 0.001, Count: 30}, {UpperBound: 0.01, Count: 42}}},
		s.Latency, "the infer histogram alone, +Inf as the count")
	assert.Equal(t, []float64{5, 0, 7}, s.Classes)
	assert.Equal(t, map[string]float64{"ok": 30, "error": 2, "dropped": 4}, s.Shadow.Requests)
	assert.Equal(t, map[string]float64{"agree": 50, "disagree": 3}, s.Shadow.Rows)
	assert.Equal(t, []float64{20, 33}, s.Shadow.LiveClasses)
	assert.Equal(t, []float64{0, 53}, s.Shadow.CandidateClasses)
	assert.Equal(t, analysis.Histogram{Count: 32, Sum: 0.1, Buckets: []analysis.Bucket{{UpperBound: 0.01, Count: 31}}}, s.Shadow.Latency)

	r, err := analysis.Parse(strings.NewReader(regressionPage))
	require.NoError(t, err)
	assert.Empty(t, r.Classes)
	assert.Equal(t, analysis.Moments{Count: 4, Sum: -6, SumSquares: 20}, r.Values)
	assert.Equal(t, analysis.Moments{Count: 3, Sum: 6, SumSquares: 14}, r.Shadow.Live)
	assert.Equal(t, analysis.Moments{Count: 3, Sum: 9, SumSquares: 29}, r.Shadow.Candidate)
}

func TestParseRefusesWhatIsNotAModelServerPage(t *testing.T) {
	_, err := analysis.Parse(strings.NewReader("# TYPE go_goroutines gauge\ngo_goroutines 7\n"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "not a modelship model server")

	_, err = analysis.Parse(strings.NewReader("<html>login</html>"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "Prometheus text format")

	_, err = analysis.Parse(strings.NewReader(livePage + "modelship_predictions_total{class=\"cat\"} 1\n"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), `class="cat"`)
}

func TestScrapeNamesTheURLAndWhatIsWrong(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		// Parse reads the text format; a scraper that does not ask for it may get protobuf.
		if !strings.Contains(r.Header.Get("Accept"), "text/plain") {
			http.Error(w, "want text", http.StatusNotAcceptable)
			return
		}
		_, _ = w.Write([]byte(livePage))
	})
	mux.HandleFunc("/other/metrics", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("# TYPE up gauge\nup 1\n"))
	})
	mux.HandleFunc("/huge", func(w http.ResponseWriter, r *http.Request) {
		line := []byte("# " + strings.Repeat("x", 1<<20) + "\n")
		for range 9 {
			_, _ = w.Write(line)
		}
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	ctx := context.Background()

	s, err := analysis.Scrape(ctx, srv.Client(), srv.URL+"/metrics")
	require.NoError(t, err)
	assert.Equal(t, 40.0, s.Infer["2xx"])

	_, err = analysis.Scrape(ctx, nil, srv.URL+"/nothing")
	require.Error(t, err)
	assert.Contains(t, err.Error(), srv.URL+"/nothing")
	assert.Contains(t, err.Error(), "404")

	_, err = analysis.Scrape(ctx, nil, srv.URL+"/other/metrics")
	require.Error(t, err)
	assert.Contains(t, err.Error(), srv.URL+"/other/metrics")
	assert.Contains(t, err.Error(), "not a modelship model server")

	_, err = analysis.Scrape(ctx, nil, srv.URL+"/huge")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "over 8 MiB")

	closed := httptest.NewServer(mux)
	closed.Close()
	_, err = analysis.Scrape(ctx, nil, closed.URL+"/metrics")
	require.Error(t, err)
	assert.Contains(t, err.Error(), closed.URL+"/metrics")
	assert.Contains(t, err.Error(), "running")
}
