package serving_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelship/modelship/internal/ml/dataset"
	"github.com/modelship/modelship/internal/ml/inference"
	"github.com/modelship/modelship/internal/plumbing/projectpath"
	"github.com/modelship/modelship/serving"
)

// runServer serves the model at modelPath (in the repository) with cfg on a loopback port,
// through Serve as the binary does, until the test ends; it returns the base URL. The model
// is named "digits" unless cfg names it.
func runServer(t *testing.T, modelPath string, cfg serving.Config) string {
	t.Helper()
	m, err := inference.Load(projectpath.Join(t, modelPath))
	require.NoError(t, err)
	if cfg.ModelName == "" {
		cfg.ModelName = "digits"
	}
	s, err := serving.New(m, cfg)
	require.NoError(t, err)
	require.NoError(t, s.WarmUp())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			assert.NoError(t, err, "graceful shutdown")
		case <-time.After(time.Minute):
			t.Errorf("the server on %s did not shut down within a minute", ln.Addr())
		}
	})
	return "http://" + ln.Addr().String()
}

// scrape reads a server's /metrics page with the Prometheus text parser.
func scrape(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	return families
}

// lookup is the value of the series of family name that has the given labels ("name=value"),
// and whether there is one: a counter's or gauge's value, a histogram's sample count.
func lookup(families map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
next:
	for _, m := range families[name].GetMetric() {
		for _, l := range labels {
			k, v, _ := strings.Cut(l, "=")
			if !hasLabel(m, k, v) {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue() == value
		}
	}
	return false
}

// value is lookup for a series that must exist.
func value(t *testing.T, families map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	v, ok := lookup(families, name, labels...)
	require.True(t, ok, "no series %s%v", name, labels)
	return v
}

// postRows sends rows to base's model "digits" and returns the body of its 200 answer.
func postRows(t *testing.T, base string, rows [][]float64) []byte {
	t.Helper()
	status, body := do(t, http.MethodPost, base+"/v2/models/digits/infer", inferBody(rows), nil)
	require.Equal(t, http.StatusOK, status, string(body))
	return body
}

// firstOutput is an answer's first output: its rows, one slice each.
func firstOutput(t *testing.T, body []byte) [][]float32 {
	t.Helper()
	var resp serving.InferResponse
	require.NoError(t, json.Unmarshal(body, &resp))
	require.NotEmpty(t, resp.Outputs)
	out := resp.Outputs[0]
	require.Len(t, out.Shape, 2)
	rows, width := int(out.Shape[0]), int(out.Shape[1])
	require.Len(t, out.Data, rows*width)
	var split [][]float32
	for i := range rows {
		split = append(split, out.Data[i*width:(i+1)*width])
	}
	return split
}

// batches cuts samples into requests of 1, 2, 3, ... rows, wrapping around to 1.
func batches(samples []dataset.Sample, most int) [][][]float64 {
	var out [][][]float64
	for i, n := 0, 1; i < len(samples); n = n%most + 1 {
		var rows [][]float64
		for _, s := range samples[i:min(i+n, len(samples))] {
			rows = append(rows, s.Features)
		}
		out = append(out, rows)
		i += n
	}
	return out
}

// Every answered row is counted under the class the answer predicted; the series of every
// class are there at 0 from the start, and a classifier has no regression series.
func TestPredictionsCountTheClassesAnswered(t *testing.T) {
	base := runServer(t, "models/digits-reference.onnx", serving.Config{})
	before := scrape(t, base)
	for class := range 10 {
		v, ok := lookup(before, "modelship_predictions_total", "class="+strconv.Itoa(class))
		assert.True(t, ok, "class %d has a series before any request", class)
		assert.Zero(t, v, "the warm-up is not a prediction")
	}
	assert.NotContains(t, before, "modelship_prediction_values_total")
	assert.NotContains(t, before, "modelship_shadow_requests_total", "no shadow series without a shadow")

	want := make([]float64, 10)
	rows := 0
	for _, batch := range batches(fixture(t).Samples[:60], 4) {
		for _, row := range firstOutput(t, postRows(t, base, batch)) {
			want[inference.ArgmaxRow(row)]++
			rows++
		}
	}
	after := scrape(t, base)
	got := make([]float64, 10)
	for class := range got {
		got[class] = value(t, after, "modelship_predictions_total", "class="+strconv.Itoa(class))
	}
	assert.Equal(t, want, got)
	assert.Equal(t, 60, rows)
	assert.Len(t, after["modelship_predictions_total"].GetMetric(), 10, "one series per class, no more")
	assert.Equal(t, float64(rows), value(t, after, "modelship_inference_rows_total"))

	// A refused request predicts nothing.
	status, _ := do(t, http.MethodPost, base+"/v2/models/digits/infer", inferReq("[1,3]", "[1,2,3]"), nil)
	require.Equal(t, http.StatusBadRequest, status)
	var total float64
	for _, m := range scrape(t, base)["modelship_predictions_total"].GetMetric() {
		total += m.GetCounter().GetValue()
	}
	assert.Equal(t, float64(rows), total)
}

// A regression model (one value per row) gets the count, sum and sum of squares of the values
// it answered, and no class series.
func TestPredictionsSumARegressorsValues(t *testing.T) {
	f, err := dataset.ReadFixture(projectpath.Join(t, "examples/diabetes-regression/fixtures/validation.json"))
	require.NoError(t, err)
	base := runServer(t, "examples/diabetes-regression/model/diabetes.onnx", serving.Config{ModelName: "digits"})
	before := scrape(t, base)
	for _, name := range []string{"modelship_prediction_values_total", "modelship_prediction_value_sum", "modelship_prediction_value_squares_sum"} {
		v, ok := lookup(before, name)
		assert.True(t, ok, "%s is there at 0 from the start", name)
		assert.Zero(t, v)
	}

	var n, sum, squares float64
	for _, batch := range batches(f.Samples[:40], 5) {
		for _, row := range firstOutput(t, postRows(t, base, batch)) {
			require.Len(t, row, 1)
			v := float64(row[0])
			n, sum, squares = n+1, sum+v, squares+v*v
		}
	}
	require.NotZero(t, squares)
	after := scrape(t, base)
	assert.Equal(t, n, value(t, after, "modelship_prediction_values_total"))
	assert.InEpsilon(t, sum, value(t, after, "modelship_prediction_value_sum"), 1e-9)
	assert.InEpsilon(t, squares, value(t, after, "modelship_prediction_value_squares_sum"), 1e-9)
	assert.NotContains(t, after, "modelship_predictions_total", "a regressor has no classes")
}
