package serving_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelship/modelship/internal/ml/inference"
	"github.com/modelship/modelship/internal/plumbing/projectpath"
	"github.com/modelship/modelship/internal/testenv"
	"github.com/modelship/modelship/serving"
)

// binaryBody is a request under the binary tensor extension: the JSON, then the values as
// little-endian FP32; it returns the body and the JSON's length.
func binaryBody(json string, values ...float32) ([]byte, int) {
	var b bytes.Buffer
	b.WriteString(json)
	for _, v := range values {
		_ = binary.Write(&b, binary.LittleEndian, v)
	}
	return b.Bytes(), len(json)
}

func binaryHeader(shape string, size int) string {
	return fmt.Sprintf(`{"inputs":[{"name":"input","shape":%s,"datatype":"FP32","parameters":{"binary_data_size":%d}}]}`, shape, size)
}

func TestDecodeBinaryRequest(t *testing.T) {
	body, n := binaryBody(`{"id":"b","inputs":[{"name":"input","shape":[2,4],"datatype":"FP32","parameters":{"binary_data_size":32}}],`+
		`"outputs":[{"name":"probabilities","parameters":{"binary_data":true}}]}`, 1, 2, 3, 4, 5, 6, 7, 8.5)
	batch, err := serving.DecodeBinaryInferRequest(body, n, testSpec)
	require.NoError(t, err)
	assert.Equal(t, "b", batch.ID)
	assert.Equal(t, 2, batch.Rows)
	assert.Equal(t, []float32{1, 2, 3, 4, 5, 6, 7, 8.5}, batch.Data)
	assert.Equal(t, []string{"probabilities"}, batch.BinaryOutputs)

	// Binary outputs may be asked for by a plain JSON request too, one by one or all at once.
	batch, err = serving.DecodeInferRequest([]byte(`{"parameters":{"binary_data_output":true},"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}`), testSpec)
	require.NoError(t, err)
	assert.True(t, batch.AllBinary)
}

func TestDecodeBinaryRequestRefusesWhatDoesNotAddUp(t *testing.T) {
	nan := float32(math.NaN())
	cases := map[string]struct {
		json    string
		values  []float32
		jsonLen int // 0: the JSON's own length
		want    string
	}{
		"size not the shape's":      {json: binaryHeader("[1,4]", 12), values: []float32{1, 2, 3}, want: "binary_data_size is 12 bytes; shape [1, 4] of FP32 needs 16"},
		"fewer bytes than the size": {json: binaryHeader("[1,4]", 16), values: []float32{1, 2, 3}, want: "the body has 12 bytes after its JSON; binary_data_size says 16"},
		"more bytes than the size":  {json: binaryHeader("[1,4]", 16), values: []float32{1, 2, 3, 4, 5}, want: "the body has 20 bytes after its JSON; binary_data_size says 16"},
		"header length past the body": {json: binaryHeader("[1,4]", 16), values: []float32{1, 2, 3, 4}, jsonLen: 1 << 20,
			want: "Inference-Header-Content-Length says the JSON is 1048576 bytes, but the body has only"},
		"header length inside the JSON": {json: binaryHeader("[1,4]", 16), values: []float32{1, 2, 3, 4}, jsonLen: 10, want: "not a valid inference request"},
		"NaN":                           {json: binaryHeader("[1,4]", 16), values: []float32{1, nan, 3, 4}, want: "input value 1 (row 0, feature 1) is NaN, not a finite FP32 number"},
		"infinity":                      {json: binaryHeader("[1,4]", 16), values: []float32{1, 2, 3, float32(math.Inf(-1))}, want: "input value 3 (row 0, feature 3) is -Inf"},
		"size not a count":              {json: binaryHeader("[1,4]", 16)[:0] + `{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","parameters":{"binary_data_size":"16"}}]}`, values: []float32{1, 2, 3, 4}, want: `binary_data_size "16"; it must be a byte count`},
		"data and binary both":          {json: `{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[1,2,3,4],"parameters":{"binary_data_size":16}}]}`, values: []float32{1, 2, 3, 4}, want: `both "data" and binary_data_size`},
		"bytes but no binary input":     {json: `{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}`, values: []float32{1}, want: "the body has 4 bytes after its JSON, but input \"input\" has no binary_data_size parameter"},
		"rows over the batch limit":     {json: binaryHeader("[9,4]", 144), want: "batch of 9 rows is over the limit of 8"},
		"binary_data not a boolean":     {json: `{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}],"outputs":[{"name":"probabilities","parameters":{"binary_data":"yes"}}]}`, want: `parameter "binary_data" of output "probabilities" is "yes"; it must be true or false`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			body, n := binaryBody(tc.json, tc.values...)
			if tc.jsonLen != 0 {
				n = tc.jsonLen
			}
			_, err := serving.DecodeBinaryInferRequest(body, n, testSpec)
			var reqErr *serving.RequestError
			require.ErrorAs(t, err, &reqErr)
			assert.Contains(t, []int{http.StatusBadRequest, http.StatusRequestEntityTooLarge}, reqErr.Status)
			assert.Contains(t, reqErr.Message, tc.want)
		})
	}
	// Without the header, binary_data_size is a request the server cannot read, and says why.
	_, err := serving.DecodeInferRequest([]byte(binaryHeader("[1,4]", 16)), testSpec)
	assert.ErrorContains(t, err, "uses the binary tensor extension (binary_data_size), but the request has no Inference-Header-Content-Length header")
}

// postInfer sends body to the in-process server's infer endpoint.
func postInfer(t *testing.T, h http.Handler, body []byte, headers map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/v2/models/digits/infer", bytes.NewReader(body))
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// A binary request with binary outputs gets the same probabilities as the JSON request, as
// raw bytes after the response's JSON.
func TestServerAnswersBinaryRequestsInKind(t *testing.T) {
	s := newTestServer(t)
	require.NoError(t, s.WarmUp())
	row := fixture(t).Samples[0].Features
	values := make([]float32, len(row))
	for i, v := range row {
		values[i] = float32(v)
	}
	rec := postInfer(t, s.Handler(), []byte(inferBody([][]float64{row})), nil)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	var plain serving.InferResponse
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &plain))

	body, n := binaryBody(`{"id":"bin","inputs":[{"name":"input","shape":[1,64],"datatype":"FP32","parameters":{"binary_data_size":256}}],`+
		`"outputs":[{"name":"probabilities","parameters":{"binary_data":true}}]}`, values...)
	rec = postInfer(t, s.Handler(), body, map[string]string{serving.BinaryHeader: strconv.Itoa(n), "Content-Type": "application/octet-stream"})
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	assert.Equal(t, "application/octet-stream", rec.Header().Get("Content-Type"))
	jsonLen, err := strconv.Atoi(rec.Header().Get(serving.BinaryHeader))
	require.NoError(t, err)
	raw := rec.Body.Bytes()
	require.LessOrEqual(t, jsonLen, len(raw))
	var resp struct {
		ID      string `json:"id"`
		Outputs []struct {
			Name       string          `json:"name"`
			Shape      []int64         `json:"shape"`
			Data       json.RawMessage `json:"data"`
			Parameters map[string]int  `json:"parameters"`
		} `json:"outputs"`
	}
	require.NoError(t, json.Unmarshal(raw[:jsonLen], &resp))
	assert.Equal(t, "bin", resp.ID)
	require.Len(t, resp.Outputs, 1)
	assert.Equal(t, []int64{1, 10}, resp.Outputs[0].Shape)
	assert.Nil(t, resp.Outputs[0].Data, "a binary output has no \"data\"")
	assert.Equal(t, 40, resp.Outputs[0].Parameters["binary_data_size"])
	got := make([]float32, 10)
	require.NoError(t, binary.Read(bytes.NewReader(raw[jsonLen:]), binary.LittleEndian, got))
	assert.Equal(t, plain.Outputs[0].Data, got)
	assert.Len(t, raw, jsonLen+40)

	// Binary input, JSON output.
	body, n = binaryBody(binaryHeader("[1,64]", 256), values...)
	rec = postInfer(t, s.Handler(), body, map[string]string{serving.BinaryHeader: strconv.Itoa(n)})
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	assert.Empty(t, rec.Header().Get(serving.BinaryHeader))
	var fromBinary serving.InferResponse
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &fromBinary))
	assert.Equal(t, plain.Outputs, fromBinary.Outputs)

	// A header that is no byte count.
	rec = postInfer(t, s.Handler(), body, map[string]string{serving.BinaryHeader: "lots"})
	assert.Equal(t, http.StatusBadRequest, rec.Code)
	assert.Contains(t, rec.Body.String(), `header Inference-Header-Content-Length: \"lots\" is not a byte count`)
}

// A 100,000-row batch is refused with a 413 that names the limit it is over, whichever limit
// it meets first, before any of it is decoded: the body limit for a real one (JSON or binary),
// the row limit for a short body that declares the shape.
// ortServer serves the opset-17 reference model, which only ONNX Runtime runs.
func ortServer(t *testing.T) *serving.Server {
	t.Helper()
	m, err := inference.LoadWith(projectpath.Join(t, "models/digits-layernorm-opset17.onnx"), inference.Options{ORTLibrary: testenv.ORTLibrary(t)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Close() })
	require.Equal(t, inference.BackendORT, m.Backend())
	s, err := serving.New(m, serving.Config{ModelName: "digits", ModelVersion: "17"})
	require.NoError(t, err)
	return s
}

// The limits hold before any backend sees the batch, on either backend.
func TestServerRefusesAHundredThousandRows(t *testing.T) {
	t.Run("gonnx", func(t *testing.T) { refusesAHundredThousandRows(t, newTestServer(t)) })
	t.Run("onnxruntime", func(t *testing.T) { refusesAHundredThousandRows(t, ortServer(t)) })
}

func refusesAHundredThousandRows(t *testing.T, s *serving.Server) {
	require.NoError(t, s.WarmUp())
	const rows = 100000
	row := strings.TrimSuffix(strings.Repeat("7,", 64), ",")
	jsonBody := []byte(`{"inputs":[{"name":"input","shape":[100000,64],"datatype":"FP32","data":[` +
		strings.TrimSuffix(strings.Repeat(row+",", rows), ",") + `]}]}`)
	binBody, n := binaryBody(binaryHeader("[100000,64]", rows*64*4), make([]float32, rows*64)...)
	cases := map[string]struct {
		body    []byte
		headers map[string]string
		want    string
	}{
		"JSON":                  {jsonBody, nil, fmt.Sprintf("request body is over %d bytes", serving.DefaultMaxBodyBytes)},
		"binary":                {binBody, map[string]string{serving.BinaryHeader: strconv.Itoa(n)}, fmt.Sprintf("request body is over %d bytes", serving.DefaultMaxBodyBytes)},
		"shape on a short body": {[]byte(inferReq("[100000,64]", "[]")), nil, fmt.Sprintf("batch of 100000 rows is over the limit of %d", serving.DefaultMaxBatch)},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			rec := postInfer(t, s.Handler(), tc.body, tc.headers)
			assert.Equal(t, http.StatusRequestEntityTooLarge, rec.Code)
			assert.Contains(t, rec.Body.String(), tc.want)
		})
	}
}
