package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/advancedclimatesystems/gonnx/onnx"
	"google.golang.org/protobuf/proto"
)

// The test model is value = input · w + b, so every expected answer can be worked out by hand.
var (
	testWeights = []float32{0.5, -1, 2}
	testBias    = float32(0.25)
)

// linearModel is a Gemm (W [3,1], B [1]) from input "input" [batch,3] to output "value"
// [batch,1], opset 13 and IR version 7. change, if given, alters it before it is serialized.
func linearModel(t testing.TB, change func(*onnx.ModelProto)) []byte {
	t.Helper()
	mp := &onnx.ModelProto{
		IrVersion:   7,
		OpsetImport: []*onnx.OperatorSetIdProto{{Domain: "", Version: 13}},
		Graph: &onnx.GraphProto{
			Name: "linear",
			Node: []*onnx.NodeProto{{Name: "gemm", OpType: "Gemm", Input: []string{"input", "W", "B"}, Output: []string{"value"}}},
			Initializer: []*onnx.TensorProto{
				{Name: "W", Dims: []int64{3, 1}, DataType: int32(onnx.TensorProto_FLOAT), FloatData: testWeights},
				{Name: "B", Dims: []int64{1}, DataType: int32(onnx.TensorProto_FLOAT), FloatData: []float32{testBias}},
			},
			Input:  []*onnx.ValueInfoProto{batchTensor("input", 3, onnx.TensorProto_FLOAT)},
			Output: []*onnx.ValueInfoProto{batchTensor("value", 1, onnx.TensorProto_FLOAT)},
		},
	}
	if change != nil {
		change(mp)
	}
	raw, err := proto.Marshal(mp)
	if err != nil {
		t.Fatalf("marshal the test model: %v", err)
	}
	return raw
}

// batchTensor declares a [batch, width] tensor whose batch dimension is symbolic.
func batchTensor(name string, width int64, elem onnx.TensorProto_DataType) *onnx.ValueInfoProto {
	return &onnx.ValueInfoProto{
		Name: name,
		Type: &onnx.TypeProto{Value: &onnx.TypeProto_TensorType{TensorType: &onnx.TypeProto_Tensor{
			ElemType: int32(elem),
			Shape: &onnx.TensorShapeProto{Dim: []*onnx.TensorShapeProto_Dimension{
				{Value: &onnx.TensorShapeProto_Dimension_DimParam{DimParam: "batch"}},
				{Value: &onnx.TensorShapeProto_Dimension_DimValue{DimValue: width}},
			}},
		}}},
	}
}

func writeModel(t testing.TB, raw []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "model.onnx")
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// newTestServer serves the linear model as "diabetes" version "7", loaded the way the server
// loads it: from a file.
func newTestServer(t *testing.T) (*httptest.Server, *api) {
	t.Helper()
	m, err := loadModel(writeModel(t, linearModel(t, nil)))
	if err != nil {
		t.Fatalf("load the test model: %v", err)
	}
	a := newAPI(m, "diabetes", "7")
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	return srv, a
}

func call(t *testing.T, method, url, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" && method != http.MethodHead {
		t.Errorf("%s %s: Content-Type %q, want application/json", method, url, ct)
	}
	return resp.StatusCode, raw
}

func decodeInto(t *testing.T, raw []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("response %s is not the expected JSON: %v", raw, err)
	}
}

func TestHealthAndServerMetadata(t *testing.T) {
	srv, _ := newTestServer(t)
	for _, path := range []string{"/v2/health/live", "/v2/health/ready", "/v2/models/diabetes/ready", "/v2/models/diabetes/versions/7/ready"} {
		if status, body := call(t, http.MethodGet, srv.URL+path, ""); status != http.StatusOK {
			t.Errorf("GET %s: status %d (%s), want 200", path, status, body)
		}
	}
	status, body := call(t, http.MethodGet, srv.URL+"/v2", "")
	var meta struct {
		Name, Version string
		Extensions    []string
	}
	decodeInto(t, body, &meta)
	if status != http.StatusOK || meta.Name != serverName || meta.Version == "" || meta.Extensions == nil {
		t.Errorf("GET /v2: status %d, body %s", status, body)
	}
	if status, _ := call(t, http.MethodHead, srv.URL+"/v2/health/ready", ""); status != http.StatusOK {
		t.Errorf("HEAD /v2/health/ready: status %d, want 200", status)
	}
}

func TestReadinessEndsWhenShuttingDown(t *testing.T) {
	srv, a := newTestServer(t)
	a.ready.Store(false)
	for _, path := range []string{"/v2/health/ready", "/v2/models/diabetes/ready"} {
		if status, _ := call(t, http.MethodGet, srv.URL+path, ""); status != http.StatusServiceUnavailable {
			t.Errorf("GET %s while shutting down: status %d, want 503", path, status)
		}
	}
	if status, _ := call(t, http.MethodGet, srv.URL+"/v2/health/live", ""); status != http.StatusOK {
		t.Errorf("GET /v2/health/live while shutting down: status %d, want 200", status)
	}
}

func TestModelMetadata(t *testing.T) {
	srv, _ := newTestServer(t)
	want := modelMetadata{Name: "diabetes", Versions: []string{"7"}, Platform: "onnx",
		Inputs:  []tensorSpec{{Name: "input", Datatype: "FP32", Shape: []int64{-1, 3}}},
		Outputs: []tensorSpec{{Name: "value", Datatype: "FP32", Shape: []int64{-1, 1}}}}
	for _, path := range []string{"/v2/models/diabetes", "/v2/models/diabetes/versions/7"} {
		status, body := call(t, http.MethodGet, srv.URL+path, "")
		if status != http.StatusOK {
			t.Fatalf("GET %s: status %d (%s)", path, status, body)
		}
		var got modelMetadata
		decodeInto(t, body, &got)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("GET %s:\n got %+v\nwant %+v", path, got, want)
		}
	}
}

func TestInferComputesTheLinearModel(t *testing.T) {
	srv, _ := newTestServer(t)
	// 1·0.5 + 2·(-1) + 3·2 + 0.25 = 4.75; 0 + 0.25 = 0.25; -2·0.5 + 0.5·(-1) + 1·2 + 0.25 = 0.75
	want := []float32{4.75, 0.25, 0.75}
	cases := map[string]struct{ path, body string }{
		"flat": {"/v2/models/diabetes/infer",
			`{"id":"req-1","inputs":[{"name":"input","shape":[3,3],"datatype":"FP32","data":[1,2,3,0,0,0,-2,0.5,1]}]}`},
		"nested, versioned, output asked for": {"/v2/models/diabetes/versions/7/infer",
			`{"id":"req-1","parameters":{"x":1},"inputs":[{"name":"input","shape":[3,3],"datatype":"FP32","data":[[1,2,3],[0,0,0],[-2,0.5,1]]}],"outputs":[{"name":"value"}]}`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			status, body := call(t, http.MethodPost, srv.URL+tc.path, tc.body)
			if status != http.StatusOK {
				t.Fatalf("status %d: %s", status, body)
			}
			var got inferResponse
			decodeInto(t, body, &got)
			if got.ModelName != "diabetes" || got.ModelVersion != "7" || got.ID != "req-1" || len(got.Outputs) != 1 {
				t.Fatalf("response %s", body)
			}
			out := got.Outputs[0]
			if out.Name != "value" || out.Datatype != "FP32" || !reflect.DeepEqual(out.Shape, []int64{3, 1}) {
				t.Errorf("output %+v, want value FP32 [3 1]", out)
			}
			assertClose(t, out.Data, want)
		})
	}
}

func assertClose(t *testing.T, got, want []float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if math.Abs(float64(got[i]-want[i])) > 1e-6 {
			t.Errorf("value %d: got %v, want %v", i, got[i], want[i])
		}
	}
}

func inferBody(input, datatype, shape, data string) string {
	return fmt.Sprintf(`{"inputs":[{"name":%q,"shape":%s,"datatype":%q,"data":%s}]}`, input, shape, datatype, data)
}

func TestErrorsAreOIPErrorBodies(t *testing.T) {
	srv, _ := newTestServer(t)
	const infer = "/v2/models/diabetes/infer"
	ok := func(shape, data string) string { return inferBody("input", "FP32", shape, data) }
	huge := ok("[1,3]", "[1,2,3"+strings.Repeat(" ", 4<<20)+"]")
	cases := []struct {
		name, method, path, body string
		status                   int
		want                     string // a part of the error message
	}{
		{"unknown model metadata", "GET", "/v2/models/iris", "", 404, `model "iris" is not served here`},
		{"unknown model infer", "POST", "/v2/models/iris/infer", ok("[1,3]", "[1,2,3]"), 404, `model "iris"`},
		{"unknown model ready", "GET", "/v2/models/iris/ready", "", 404, `model "iris"`},
		{"unknown version", "GET", "/v2/models/diabetes/versions/8", "", 404, `no version "8"`},
		{"unknown version infer", "POST", "/v2/models/diabetes/versions/8/infer", ok("[1,3]", "[1,2,3]"), 404, `no version "8"`},
		{"unknown endpoint", "GET", "/v2/nothing", "", 404, "no endpoint /v2/nothing"},
		{"malformed JSON", "POST", infer, `{"inputs":[`, 400, "not a valid inference request"},
		{"trailing data", "POST", infer, ok("[1,3]", "[1,2,3]") + "{}", 400, "not a valid inference request"},
		{"no inputs", "POST", infer, `{"inputs":[]}`, 400, "has 0 inputs"},
		{"wrong input name", "POST", infer, inferBody("x", "FP32", "[1,3]", "[1,2,3]"), 400, `input "x" is unknown`},
		{"wrong datatype", "POST", infer, inferBody("input", "INT64", "[1,3]", "[1,2,3]"), 400, `datatype "INT64"`},
		{"wrong feature count", "POST", infer, ok("[1,4]", "[1,2,3,4]"), 400, "want [rows, 3]"},
		{"one-dimensional shape", "POST", infer, ok("[3]", "[1,2,3]"), 400, "want [rows, 3]"},
		{"no rows", "POST", infer, ok("[0,3]", "[]"), 400, "no rows"},
		{"shape beyond the data", "POST", infer, ok("[1000000000000,3]", "[1,2,3]"), 400, "cannot hold"},
		{"too few values", "POST", infer, ok("[2,3]", "[1,2,3,4,5]"), 400, "has 5 values; the shape needs 6"},
		{"too many values", "POST", infer, ok("[1,3]", "[1,2,3,4]"), 400, "more than 3 values"},
		{"short nested row", "POST", infer, ok("[2,3]", "[[1,2,3],[4,5]]"), 400, "row 1 has 2 values"},
		{"too many nested rows", "POST", infer, ok("[1,3]", "[[1,2,3],[4,5,6]]"), 400, "more than 1 rows"},
		{"too few nested rows", "POST", infer, ok("[2,3]", "[[1,2,3]]"), 400, "has 1 rows"},
		{"mixed forms", "POST", infer, ok("[2,3]", "[[1,2,3],4,5,6]"), 400, "not a mix"},
		{"no data", "POST", infer, `{"inputs":[{"name":"input","shape":[1,3],"datatype":"FP32"}]}`, 400, `no "data"`},
		{"data not an array", "POST", infer, ok("[1,3]", `"1,2,3"`), 400, "must be an array"},
		{"NaN", "POST", infer, ok("[1,3]", `[1,"NaN",3]`), 400, `the string "NaN"`},
		{"Infinity", "POST", infer, ok("[1,3]", `[1,2,"Infinity"]`), 400, "finite"},
		{"beyond FP32", "POST", infer, ok("[1,3]", "[1,2,1e39]"), 400, "not a finite FP32 number"},
		{"beyond FP64", "POST", infer, ok("[1,3]", "[1e400,2,3]"), 400, "not a finite FP32 number"},
		{"null value", "POST", infer, ok("[1,3]", "[1,null,3]"), 400, "is null"},
		{"unknown output", "POST", infer, `{"inputs":[{"name":"input","shape":[1,3],"datatype":"FP32","data":[1,2,3]}],"outputs":[{"name":"proba"}]}`, 400, `output "proba" is unknown`},
		{"body over 4 MiB", "POST", infer, huge, 400, "over 4194304 bytes"},
		{"GET on infer", "GET", infer, "", 405, "use POST"},
		{"POST on health", "POST", "/v2/health/ready", "", 405, "use GET"},
		{"DELETE on metadata", "DELETE", "/v2/models/diabetes", "", 405, "use GET"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, body := call(t, tc.method, srv.URL+tc.path, tc.body)
			if status != tc.status {
				t.Errorf("status %d, want %d (body %.300s)", status, tc.status, body)
			}
			var e map[string]string
			decodeInto(t, body, &e)
			if len(e) != 1 || !strings.Contains(e["error"], tc.want) {
				t.Errorf("body %.300s, want {\"error\": \"...%s...\"}", body, tc.want)
			}
		})
	}
}

func TestMethodNotAllowedSaysWhichIs(t *testing.T) {
	srv, _ := newTestServer(t)
	resp, err := http.Get(srv.URL + "/v2/models/diabetes/infer")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("Allow"); got != http.MethodPost {
		t.Errorf("Allow %q, want POST", got)
	}
}

// The server relies on gonnx runs being independent; -race checks that.
func TestConcurrentInferenceAgreesWithTheFormula(t *testing.T) {
	srv, _ := newTestServer(t)
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			x := float32(i)
			body := inferBody("input", "FP32", "[1,3]", fmt.Sprintf("[%v,%v,%v]", x, x, x))
			req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v2/models/diabetes/infer", strings.NewReader(body))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			var got inferResponse
			if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || len(got.Outputs) != 1 {
				t.Errorf("row %d: %v %+v", i, err, got)
				return
			}
			// x·(0.5 - 1 + 2) + 0.25
			if want := x*1.5 + testBias; got.Outputs[0].Data[0] != want {
				t.Errorf("row %d: got %v, want %v", i, got.Outputs[0].Data[0], want)
			}
		})
	}
	wg.Wait()
}

func TestLoadModelRefusesWhatItCannotServe(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, raw []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, raw, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := map[string]struct{ path, want string }{
		"missing":  {filepath.Join(dir, "nope.onnx"), "no such file"},
		"empty":    {write("empty.onnx", nil), "the file is empty"},
		"not onnx": {write("text.onnx", []byte("not a protobuf \xff\xff\xff")), "not an ONNX model"},
		"no nodes": {write("nodes.onnx", linearModel(t, func(mp *onnx.ModelProto) { mp.Graph.Node = nil })), "no nodes"},
		"opset 17": {write("opset.onnx", linearModel(t, func(mp *onnx.ModelProto) { mp.OpsetImport[0].Version = 17 })), "opset 13"},
		"unknown operator": {write("op.onnx", linearModel(t, func(mp *onnx.ModelProto) { mp.Graph.Node[0].OpType = "Frobnicate" })),
			`node "gemm"`},
		"INT64 input": {write("int.onnx", linearModel(t, func(mp *onnx.ModelProto) {
			mp.Graph.Input[0] = batchTensor("input", 3, onnx.TensorProto_INT64)
		})), `tensor "input" is not FP32`},
		"two inputs": {write("two.onnx", linearModel(t, func(mp *onnx.ModelProto) {
			mp.Graph.Input = append(mp.Graph.Input, batchTensor("extra", 3, onnx.TensorProto_FLOAT))
		})), "has 2 inputs"},
		"weights that do not fit": {write("shape.onnx", linearModel(t, func(mp *onnx.ModelProto) {
			mp.Graph.Input[0] = batchTensor("input", 4, onnx.TensorProto_FLOAT)
		})), "trial inference"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := loadModel(tc.path)
			if err == nil {
				t.Fatal("loaded; want an error")
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.path) {
				t.Errorf("error %q, want it to name %s and say %q", err, tc.path, tc.want)
			}
		})
	}
}

func TestLoadModelSkipsInitializersListedAsInputs(t *testing.T) {
	m, err := loadModel(writeModel(t, linearModel(t, func(mp *onnx.ModelProto) {
		w := &onnx.ValueInfoProto{Name: "W", Type: &onnx.TypeProto{Value: &onnx.TypeProto_TensorType{
			TensorType: &onnx.TypeProto_Tensor{ElemType: int32(onnx.TensorProto_FLOAT)}}}}
		mp.Graph.Input = append(mp.Graph.Input, w)
	})))
	if err != nil {
		t.Fatal(err)
	}
	if m.input.Name != "input" || m.features != 3 {
		t.Errorf("input %+v, %d features", m.input, m.features)
	}
}

func TestConfigFromEnv(t *testing.T) {
	t.Setenv("MODEL_FILE", "")
	t.Setenv("MODEL_VERSION", "")
	t.Setenv("LISTEN_ADDR", "")
	t.Setenv("MODEL_NAME", "")
	if _, err := configFromEnv(); err == nil || !strings.Contains(err.Error(), "MODEL_NAME") {
		t.Errorf("without MODEL_NAME: error %v, want one naming MODEL_NAME", err)
	}
	t.Setenv("MODEL_NAME", "diabetes")
	cfg, err := configFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	want := config{modelFile: "/model/model.onnx", modelName: "diabetes", modelVersion: "1", listenAddr: ":8080"}
	if cfg != want {
		t.Errorf("defaults %+v, want %+v", cfg, want)
	}
	t.Setenv("MODEL_FILE", "/m.onnx")
	t.Setenv("MODEL_VERSION", "3")
	t.Setenv("LISTEN_ADDR", "127.0.0.1:9")
	cfg, _ = configFromEnv()
	want = config{modelFile: "/m.onnx", modelName: "diabetes", modelVersion: "3", listenAddr: "127.0.0.1:9"}
	if cfg != want {
		t.Errorf("from env %+v, want %+v", cfg, want)
	}
}

func TestStartFailsOnAMissingModel(t *testing.T) {
	t.Setenv("MODEL_NAME", "diabetes")
	t.Setenv("MODEL_FILE", filepath.Join(t.TempDir(), "absent.onnx"))
	t.Setenv("LISTEN_ADDR", "127.0.0.1:0")
	err := start(slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "absent.onnx") {
		t.Errorf("error %v, want one naming the missing file", err)
	}
}

func TestProbe(t *testing.T) {
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(status) }))
	defer srv.Close()
	if code := probe(srv.URL); code != 0 {
		t.Errorf("probe of a 200: exit %d, want 0", code)
	}
	status = http.StatusServiceUnavailable
	if code := probe(srv.URL); code != 1 {
		t.Errorf("probe of a 503: exit %d, want 1", code)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	if code := probe(closed); code != 1 {
		t.Errorf("probe of a closed port: exit %d, want 1", code)
	}
	if code := run([]string{"-probe", srv.URL}); code != 1 {
		t.Errorf("run -probe of a 503: exit %d, want 1", code)
	}
}

func TestServeFinishesInFlightRequestsOnShutdown(t *testing.T) {
	m, err := loadModel(writeModel(t, linearModel(t, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a := newAPI(m, "diabetes", "1")
	errc := make(chan error, 1)
	go func() { errc <- serve(ctx, ln, a, slog.New(slog.DiscardHandler)) }()
	base := "http://" + ln.Addr().String()

	// A request whose body is still arriving when the stop comes must still get its answer.
	pr, pw := io.Pipe()
	respc := make(chan *http.Response, 1)
	go func() {
		resp, err := http.Post(base+"/v2/models/diabetes/infer", "application/json", pr)
		if err != nil {
			t.Error(err)
		}
		respc <- resp
	}()
	body := inferBody("input", "FP32", "[1,3]", "[1,2,3]")
	if _, err := pw.Write([]byte(body[:10])); err != nil {
		t.Fatal(err)
	}
	waitForConnection(t, base)
	cancel()
	time.Sleep(100 * time.Millisecond) // let Shutdown begin
	if _, err := io.Copy(pw, bytes.NewReader([]byte(body[10:]))); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	resp := <-respc
	if resp == nil {
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("in-flight request: status %d, want 200", resp.StatusCode)
	}
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not return after the stop")
	}
	if a.ready.Load() {
		t.Error("still ready after shutdown")
	}
}

// waitForConnection waits until Serve runs: a stop before that would close the listener with
// the pending request unserved, which is not what the test is about.
func waitForConnection(t *testing.T, base string) {
	t.Helper()
	for range 50 {
		resp, err := http.Get(base + "/v2/health/live")
		if err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("the server never answered")
}
