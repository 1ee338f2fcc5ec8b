package serving_test

import (
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelship/modelship/internal/ml/inference"
	"github.com/modelship/modelship/internal/plumbing/projectpath"
	"github.com/modelship/modelship/serving"
)

var testSpec = serving.InputSpec{Name: "input", Features: 4, MaxBatch: 8, Outputs: []string{"probabilities"}}

func TestDecodeAcceptsFlatAndNestedData(t *testing.T) {
	flat, err := serving.DecodeInferRequest([]byte(`{"id":"a","inputs":[{"name":"input","shape":[2,4],"datatype":"FP32","data":[1,2,3,4,5,6,7,8.5]}]}`), testSpec)
	require.NoError(t, err)
	nested, err := serving.DecodeInferRequest([]byte(`{"id":"a","inputs":[{"name":"input","shape":[2,4],"datatype":"FP32","data":[[1,2,3,4],[5,6,7,8.5]]}]}`), testSpec)
	require.NoError(t, err)
	assert.Equal(t, flat, nested)
	assert.Equal(t, 2, flat.Rows)
	assert.Equal(t, "a", flat.ID)
	assert.Equal(t, []float32{1, 2, 3, 4, 5, 6, 7, 8.5}, flat.Data)
}

// The count is checked while decoding: a body with far more values than its shape declares is
// refused at the first value past the count, naming it, with every form of excess.
func TestDecodeStopsAtTheFirstValuePastTheShape(t *testing.T) {
	many := strings.TrimSuffix(strings.Repeat("1,", 100000), ",")
	rows := strings.TrimSuffix(strings.Repeat("[1,2,3,4],", 3), ",")
	cases := map[string]struct{ data, want string }{
		"flat":             {"[" + many + "]", "more than 8 values; shape [2, 4] needs 8"},
		"nested, long row": {"[[" + many + "]]", "row 0 has more than 4 values"},
		"nested, too many": {"[" + rows + "]", "more than 2 rows"},
		"mixed forms":      {"[[1,2,3,4],5,6,7,8]", "not a mix"},
		"NaN as a string":  {`[1,2,"NaN",4,5,6,7,8]`, `input value 2 (row 0, feature 2) is the string "NaN"; values must be JSON numbers, and NaN and Infinity are not allowed`},
		"Infinity":         {`[[1,2,3,4],[5,"-Infinity",7,8]]`, `input value 5 (row 1, feature 1) is the string "-Infinity"`},
		"overflow":         {"[1,2,3,4,5,6,7,1e999]", "input value 7 (row 1, feature 3) is 1e999, not a finite FP32 number"},
		"null":             {"[1,null,3,4,5,6,7,8]", "input value 1 (row 0, feature 1) is null"},
		"object":           {`[1,{"a":1},3,4,5,6,7,8]`, "input value 1 (row 0, feature 1) is an array or object"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := serving.DecodeInferRequest([]byte(`{"inputs":[{"name":"input","shape":[2,4],"datatype":"FP32","data":`+tc.data+`}]}`), testSpec)
			var reqErr *serving.RequestError
			require.ErrorAs(t, err, &reqErr)
			assert.Equal(t, http.StatusBadRequest, reqErr.Status)
			assert.Contains(t, reqErr.Message, tc.want)
		})
	}
}

// Anything after the request object is refused, including a stray '}' or ']', which
// json.Decoder.More() does not see.
func TestDecodeRefusesTrailingData(t *testing.T) {
	body := `{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}`
	_, err := serving.DecodeInferRequest([]byte(body+" \n"), testSpec)
	require.NoError(t, err)
	for _, tail := range []string{"}", "}junk", "]", "{}"} {
		_, err := serving.DecodeInferRequest([]byte(body+tail), testSpec)
		assert.ErrorContains(t, err, "data after the JSON object", "tail %q", tail)
	}
}

// FuzzDecodeInferRequest: whatever the bytes, the decoder never panics, and it either returns
// a batch the model can run as is, or a 4xx RequestError with a message.
func FuzzDecodeInferRequest(f *testing.F) {
	for _, seed := range []string{
		`{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}`,
		`{"inputs":[{"name":"input","shape":[2,4],"datatype":"FP32","data":[[1,2,3,4],[5,6,7,8]]}],"outputs":[{"name":"probabilities"}]}`,
		`{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[1e39,2,3,4]}]}`,
		`{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[null,2,3,4]}]}`,
		`{"inputs":[{"name":"input","shape":[9,4],"datatype":"FP32","data":[]}]}`,
		`{"inputs":[{"name":"input","shape":[-1,4],"datatype":"FP32","data":[]}]}`,
		`{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP64","data":[1,2,3,4]}]}`,
		`{"inputs":[]}`, `[]`, `null`, `{`, ``, `{"inputs":[{"data":[[[1]]]}]}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		batch, err := serving.DecodeInferRequest(body, testSpec)
		if err != nil {
			var reqErr *serving.RequestError
			if !errors.As(err, &reqErr) {
				t.Fatalf("error is %T, not a *RequestError: %v", err, err)
			}
			if reqErr.Status != http.StatusBadRequest && reqErr.Status != http.StatusRequestEntityTooLarge {
				t.Fatalf("status %d for a client error", reqErr.Status)
			}
			if strings.TrimSpace(reqErr.Message) == "" {
				t.Fatal("empty error message")
			}
			return
		}
		if batch.Rows < 1 || batch.Rows > testSpec.MaxBatch {
			t.Fatalf("accepted %d rows", batch.Rows)
		}
		if len(batch.Data) != batch.Rows*testSpec.Features {
			t.Fatalf("accepted %d values for %d rows", len(batch.Data), batch.Rows)
		}
		for _, v := range batch.Data {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				t.Fatalf("accepted a non-finite value %v", v)
			}
		}
	})
}

func newTestServer(tb testing.TB) *serving.Server {
	tb.Helper()
	m, err := inference.Load(projectpath.Join(tb, "models/digits-reference.onnx"))
	require.NoError(tb, err)
	s, err := serving.New(m, serving.Config{ModelName: "digits", ModelVersion: "1"})
	require.NoError(tb, err)
	return s
}

func TestNotReadyUntilWarmedUp(t *testing.T) {
	s := newTestServer(t)
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v2/health/ready", nil))
	assert.Equal(t, http.StatusServiceUnavailable, rec.Code)

	rec = httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v2/models/digits/infer", strings.NewReader(`{}`)))
	assert.Equal(t, http.StatusServiceUnavailable, rec.Code)
	assert.Contains(t, rec.Body.String(), "not ready")

	rec = httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v2/health/live", nil))
	assert.Equal(t, http.StatusOK, rec.Code, "live while warming up")

	require.NoError(t, s.WarmUp())
	rec = httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v2/health/ready", nil))
	assert.Equal(t, http.StatusOK, rec.Code)
}

func BenchmarkInferHandlerSingleRow(b *testing.B) {
	s := newTestServer(b)
	require.NoError(b, s.WarmUp())
	benchSingleRow(b, s.Handler())
}

// benchSingleRow times one-row inference requests through h.
func benchSingleRow(b *testing.B, h http.Handler) {
	row := strings.TrimSuffix(strings.Repeat("7,", 64), ",")
	body := `{"inputs":[{"name":"input","shape":[1,64],"datatype":"FP32","data":[` + row + `]}]}`
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v2/models/digits/infer", strings.NewReader(body)))
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	}
}

func BenchmarkDecodeInferRequest(b *testing.B) {
	row := strings.TrimSuffix(strings.Repeat("7,", 64), ",")
	body := []byte(`{"inputs":[{"name":"input","shape":[1,64],"datatype":"FP32","data":[` + row + `]}]}`)
	spec := serving.InputSpec{Name: "input", Features: 64, MaxBatch: 1024}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := serving.DecodeInferRequest(body, spec); err != nil {
			b.Fatal(err)
		}
	}
}
