package serving_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelship/modelship/internal/ml/dataset"
	"github.com/modelship/modelship/internal/ml/inference"
	"github.com/modelship/modelship/internal/plumbing/projectpath"
	"github.com/modelship/modelship/internal/testenv"
	"github.com/modelship/modelship/serving"
)

const smallBodyLimit = 64 << 10

// startServer runs the real model-server binary on a free loopback port and waits until ready.
// TestMain removes the binaries the tests build when they are done.
func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

func startServer(t *testing.T, extraArgs ...string) (string, *testenv.Process) {
	t.Helper()
	bin := testenv.Binary(t, "./serving/cmd/model-server")
	addr := testenv.FreeAddr(t)
	args := append([]string{"-addr", addr, "-model-path", projectpath.Join(t, "models/digits-reference.onnx"),
		"-model-name", "digits", "-model-version", "1"}, extraArgs...)
	p := testenv.Start(t, bin, args, nil)
	base := "http://" + addr
	testenv.WaitHTTP(t, p, base+"/v2/health/ready", http.StatusOK)
	return base, p
}

func fixture(t testing.TB) *dataset.Fixture {
	t.Helper()
	f, err := dataset.ReadFixture(projectpath.Join(t, "tests/fixtures/digits_validation.json"))
	require.NoError(t, err)
	return f
}

func inferBody(rows [][]float64) string {
	var flat []float64
	for _, r := range rows {
		flat = append(flat, r...)
	}
	b, _ := json.Marshal(map[string]any{"id": "t1", "inputs": []map[string]any{{
		"name": "input", "shape": []int{len(rows), len(rows[0])}, "datatype": "FP32", "data": flat}}})
	return string(b)
}

// do sends one request; headers replace the default Content-Type: application/json.
func do(t *testing.T, method, url, body string, headers map[string]string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, raw
}

func TestBinaryServesEveryEndpoint(t *testing.T) {
	base, _ := startServer(t)
	f := fixture(t)

	status, body := do(t, http.MethodGet, base+"/v2/health/live", "", nil)
	assert.Equal(t, http.StatusOK, status)
	assert.JSONEq(t, `{"live":true}`, string(body))

	status, body = do(t, http.MethodGet, base+"/v2/health/ready", "", nil)
	assert.Equal(t, http.StatusOK, status)
	assert.JSONEq(t, `{"ready":true}`, string(body))

	status, body = do(t, http.MethodGet, base+"/v2", "", nil)
	assert.Equal(t, http.StatusOK, status)
	assert.Contains(t, string(body), `"name":"modelship"`)

	for _, path := range []string{"/v2/models/digits", "/v2/models/digits/versions/1"} {
		status, body = do(t, http.MethodGet, base+path, "", nil)
		require.Equal(t, http.StatusOK, status, path)
		var meta serving.ModelMetadata
		require.NoError(t, json.Unmarshal(body, &meta))
		assert.Equal(t, "digits", meta.Name)
		assert.Equal(t, []string{"1"}, meta.Versions)
		assert.Equal(t, "onnx", meta.Platform)
		require.Len(t, meta.Inputs, 1)
		assert.Equal(t, "input", meta.Inputs[0].Name)
		assert.Equal(t, "FP32", meta.Inputs[0].Datatype)
		assert.Equal(t, []int64{-1, 64}, meta.Inputs[0].Shape)
		require.Len(t, meta.Outputs, 1)
		assert.Equal(t, []int64{-1, 10}, meta.Outputs[0].Shape)
		assert.Len(t, meta.Params["sha256"], 64)
	}

	status, _ = do(t, http.MethodGet, base+"/v2/models/digits/ready", "", nil)
	assert.Equal(t, http.StatusOK, status)

	// One row: the predicted class is the label.
	status, body = do(t, http.MethodPost, base+"/v2/models/digits/infer", inferBody([][]float64{f.Samples[0].Features}), nil)
	require.Equal(t, http.StatusOK, status, string(body))
	var resp serving.InferResponse
	require.NoError(t, json.Unmarshal(body, &resp))
	assert.Equal(t, "digits", resp.ModelName)
	assert.Equal(t, "1", resp.ModelVersion)
	assert.Equal(t, "t1", resp.ID)
	require.Len(t, resp.Outputs, 1)
	assert.Equal(t, []int64{1, 10}, resp.Outputs[0].Shape)
	assert.Equal(t, f.Samples[0].Label, argmax(resp.Outputs[0].Data))

	// A batch of 50 rows in one request, in the nested form, through the versioned path.
	var rows [][]float64
	for _, s := range f.Samples[:50] {
		rows = append(rows, s.Features)
	}
	nested, _ := json.Marshal(map[string]any{"inputs": []map[string]any{{"name": "input", "shape": []int{50, 64}, "datatype": "FP32", "data": rows}},
		"outputs": []map[string]any{{"name": "probabilities"}}})
	status, body = do(t, http.MethodPost, base+"/v2/models/digits/versions/1/infer", string(nested), nil)
	require.Equal(t, http.StatusOK, status, string(body))
	require.NoError(t, json.Unmarshal(body, &resp))
	require.Equal(t, []int64{50, 10}, resp.Outputs[0].Shape)
	correct := 0
	for i := 0; i < 50; i++ {
		if argmax(resp.Outputs[0].Data[i*10:(i+1)*10]) == f.Samples[i].Label {
			correct++
		}
	}
	assert.GreaterOrEqual(t, correct, 45, "the reference model gets most of a batch right")

	status, body = do(t, http.MethodGet, base+"/metrics", "", nil)
	require.Equal(t, http.StatusOK, status)
	for _, series := range []string{
		`modelship_http_requests_total{code="200",handler="infer",method="post"} 2`,
		`modelship_inference_rows_total 51`,
		`modelship_http_request_duration_seconds_bucket{handler="infer",method="post",le="+Inf"} 2`,
		`modelship_inference_duration_seconds_count 2`,
		`modelship_inference_errors_total{reason="model_error"} 0`,
		`modelship_model_ready 1`,
		`modelship_model_info{backend="gonnx",name="digits",sha256="`,
	} {
		assert.Contains(t, string(body), series)
	}
}

func argmax(v []float32) int { return inference.ArgmaxRow(v) }

func TestBinaryAnswersBadInputWithAClear4xx(t *testing.T) {
	base, _ := startServer(t, "-max-body-bytes", fmt.Sprint(smallBodyLimit), "-max-batch", "100")
	row := strings.TrimSuffix(strings.Repeat("1,", 64), ",")
	req := func(shape, datatype, data string) string {
		return fmt.Sprintf(`{"inputs":[{"name":"input","shape":%s,"datatype":"%s","data":%s}]}`, shape, datatype, data)
	}
	infer := base + "/v2/models/digits/infer"
	cases := []struct {
		name, method, url, body string
		status                  int
		want                    string
	}{
		{"unknown model", "POST", base + "/v2/models/cats/infer", req("[1,64]", "FP32", "["+row+"]"), 404, `model "cats" not found`},
		{"unknown version", "POST", base + "/v2/models/digits/versions/9/infer", req("[1,64]", "FP32", "["+row+"]"), 404, `version "9"`},
		{"wrong feature count in shape", "POST", infer, req("[1,63]", "FP32", "["+row+"]"), 400, "63 features per row; the model takes 64"},
		{"data shorter than shape", "POST", infer, req("[2,64]", "FP32", "["+row+"]"), 400, "has 64 values; shape [2, 64] needs 128"},
		{"nested row too short", "POST", infer, req("[1,64]", "FP32", "[[1,2,3]]"), 400, "row 0 has 3 values"},
		{"rank 1 shape", "POST", infer, req("[64]", "FP32", "["+row+"]"), 400, "want [rows, 64]"},
		{"wrong datatype", "POST", infer, req("[1,64]", "INT32", "["+row+"]"), 400, `datatype "INT32"; the model takes FP32`},
		{"NaN as a string", "POST", infer, req("[1,64]", "FP32", `["NaN",`+row[2:]+"]"), 400, "input value 0 (row 0, feature 0) is the string \"NaN\"; values must be JSON numbers, and NaN and Infinity are not allowed"},
		{"Inf as an overflowing number", "POST", infer, req("[1,64]", "FP32", "[1e999,"+row[2:]+"]"), 400, "is 1e999, not a finite FP32 number"},
		{"beyond FP32 range", "POST", infer, req("[1,64]", "FP32", "[1e39,"+row[2:]+"]"), 400, "not a finite FP32 number"},
		{"null value", "POST", infer, req("[1,64]", "FP32", "[null,"+row[2:]+"]"), 400, "is null; every value must be a number"},
		{"empty batch", "POST", infer, req("[0,64]", "FP32", "[]"), 400, "no rows"},
		{"batch over the row limit", "POST", infer, req("[101,64]", "FP32", "[]"), 413, "101 rows is over the limit of 100"},
		{"body over the size limit", "POST", infer, req("[1,64]", "FP32", "["+row+strings.Repeat(",1", smallBodyLimit)+"]"), 413, fmt.Sprintf("over %d bytes", smallBodyLimit)},
		{"malformed JSON", "POST", infer, `{"inputs": [`, 400, "not a valid inference request"},
		{"JSON of the wrong shape", "POST", infer, `{"inputs": {"name": "input"}}`, 400, `field "inputs"`},
		{"trailing garbage", "POST", infer, req("[1,64]", "FP32", "["+row+"]") + "{}", 400, "data after the JSON object"},
		{"trailing brace", "POST", infer, req("[1,64]", "FP32", "["+row+"]") + "}junk", 400, "data after the JSON object"},
		{"more values than the shape", "POST", infer, req("[1,64]", "FP32", "["+row+","+row+"]"), 400, "more than 64 values"},
		{"no inputs", "POST", infer, `{"inputs":[]}`, 400, "0 inputs"},
		{"unknown input name", "POST", infer, `{"inputs":[{"name":"pixels","shape":[1,64],"datatype":"FP32","data":[` + row + `]}]}`, 400, `input "pixels" is unknown`},
		{"missing data", "POST", infer, `{"inputs":[{"name":"input","shape":[1,64],"datatype":"FP32"}]}`, 400, `no "data"`},
		{"unknown output", "POST", infer, `{"inputs":[{"name":"input","shape":[1,64],"datatype":"FP32","data":[` + row + `]}],"outputs":[{"name":"logits"}]}`, 400, `output "logits" is unknown`},
		{"binary extension", "POST", infer, `{"inputs":[{"name":"input","shape":[1,64],"datatype":"FP32","parameters":{"binary_data_size":256}}]}`, 400, "binary tensor extension"},
		{"GET on infer", "GET", infer, "", 405, "GET is not allowed"},
		{"POST on metadata", "POST", base + "/v2/models/digits", "{}", 405, "use GET"},
		{"unknown path", "GET", base + "/v1/models/digits:predict", "", 404, "no endpoint"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, body := do(t, tc.method, tc.url, tc.body, nil)
			assert.Equal(t, tc.status, status, string(body))
			var e struct {
				Error string `json:"error"`
			}
			require.NoError(t, json.Unmarshal(body, &e), "error bodies are JSON: %s", body)
			assert.Contains(t, e.Error, tc.want)
		})
	}
	status, body := do(t, http.MethodGet, base+"/metrics", "", nil)
	require.Equal(t, http.StatusOK, status)
	assert.NotContains(t, string(body), `code="500"`, "no bad input may cause a 500")
	assert.Regexp(t, `modelship_inference_errors_total\{reason="bad_request"\} [1-9]`, string(body))
	assert.Regexp(t, `modelship_inference_errors_total\{reason="too_large"\} [1-9]`, string(body))

	// The server is still healthy after all of that.
	status, _ = do(t, http.MethodGet, base+"/v2/health/ready", "", nil)
	assert.Equal(t, http.StatusOK, status)
}

func TestBinaryRefusesToStartWithoutAServableModel(t *testing.T) {
	bin := testenv.Binary(t, "./serving/cmd/model-server")
	dir := t.TempDir()
	notONNX := dir + "/notes.onnx"
	require.NoError(t, writeFile(notONNX, "this is a README, not a model"))
	cases := map[string]struct {
		args     []string
		exitCode int
		want     string
	}{
		"missing file":  {[]string{"-model-path", dir + "/absent.onnx"}, 1, "absent.onnx: no such file"},
		"not ONNX":      {[]string{"-model-path", notONNX}, 1, "not an ONNX protobuf"},
		"unknown flag":  {[]string{"-no-such-flag", "x"}, 2, "flag provided but not defined"},
		"bad log level": {[]string{"-log-level", "loud"}, 2, `log level "loud"`},
		"stray args":    {[]string{"serve"}, 2, "unexpected arguments"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			args := append([]string{"-addr", testenv.FreeAddr(t)}, tc.args...)
			p := testenv.Start(t, bin, args, nil)
			err := p.Wait()
			require.Error(t, err)
			var exitErr interface{ ExitCode() int }
			require.ErrorAs(t, err, &exitErr)
			assert.Equal(t, tc.exitCode, exitErr.ExitCode())
			assert.Contains(t, p.Output(), tc.want)
		})
	}
}

// SIGTERM with a request in flight: the request still completes, then the process exits 0.
func TestBinaryShutsDownGracefullyOnSIGTERM(t *testing.T) {
	base, p := startServer(t)
	f := fixture(t)
	body := inferBody([][]float64{f.Samples[1].Features})
	half := len(body) / 2

	pr, pw := io.Pipe()
	type result struct {
		status int
		body   []byte
		err    error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := http.Post(base+"/v2/models/digits/infer", "application/json", pr)
		if err != nil {
			done <- result{err: err}
			return
		}
		defer resp.Body.Close()
		raw, err := io.ReadAll(resp.Body)
		done <- result{status: resp.StatusCode, body: raw, err: err}
	}()
	_, err := pw.Write([]byte(body[:half]))
	require.NoError(t, err)
	// Stop the server only once it is inside the handler, holding half the body.
	require.Eventually(t, func() bool {
		_, m := do(t, http.MethodGet, base+"/metrics", "", nil)
		return strings.Contains(string(m), "modelship_http_requests_in_flight 1")
	}, 10*time.Second, 5*time.Millisecond)
	require.NoError(t, p.Cmd.Process.Signal(syscall.SIGTERM))
	require.Eventually(t, func() bool { return strings.Contains(p.Output(), "shutting down") }, 10*time.Second, 10*time.Millisecond)
	_, err = pw.Write([]byte(body[half:]))
	require.NoError(t, err)
	require.NoError(t, pw.Close())

	r := <-done
	require.NoError(t, r.err)
	assert.Equal(t, http.StatusOK, r.status, string(r.body))
	require.NoError(t, p.Wait(), "the server exits 0 after a graceful shutdown")
	assert.Contains(t, p.Output(), "shutdown complete")

	resp, err := http.Get(base + "/v2/health/live")
	if err == nil {
		resp.Body.Close()
	}
	assert.Error(t, err, "nothing listens after shutdown")
}

func writeFile(path, content string) error {
	return os.WriteFile(path, []byte(content), 0o644)
}
