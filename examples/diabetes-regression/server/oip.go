package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"sync/atomic"
)

// maxBodyBytes bounds what one inference request can make the server read and hold.
const maxBodyBytes = 4 << 20

// serverName and serverVersion are what GET /v2 reports.
const (
	serverName    = "diabetes-server"
	serverVersion = "1.0.0"
)

// api is the Open Inference Protocol REST API over one model.
type api struct {
	model         *model
	name, version string
	ready         atomic.Bool
	mux           *http.ServeMux
}

func newAPI(m *model, name, version string) *api {
	a := &api{model: m, name: name, version: version, mux: http.NewServeMux()}
	a.ready.Store(true) // the model is loaded and has run once before an api exists
	a.route(http.MethodGet, "/v2/health/live", a.live)
	a.route(http.MethodGet, "/v2/health/ready", a.healthReady)
	a.route(http.MethodGet, "/v2", a.serverMetadata)
	a.route(http.MethodGet, "/v2/models/{name}", a.modelMetadata)
	a.route(http.MethodGet, "/v2/models/{name}/versions/{version}", a.modelMetadata)
	a.route(http.MethodGet, "/v2/models/{name}/ready", a.modelReady)
	a.route(http.MethodGet, "/v2/models/{name}/versions/{version}/ready", a.modelReady)
	a.route(http.MethodPost, "/v2/models/{name}/infer", a.infer)
	a.route(http.MethodPost, "/v2/models/{name}/versions/{version}/infer", a.infer)
	a.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no endpoint %s; see /v2/health/ready, /v2/models/%s and /v2/models/%s/infer", r.URL.Path, name, name))
	})
	return a
}

func (a *api) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

// route registers h for one method. ServeMux's own method patterns answer 405 in plain text;
// OIP clients expect {"error": ...} on every failure.
func (a *api) route(method, pattern string, h http.HandlerFunc) {
	a.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != method && !(method == http.MethodGet && r.Method == http.MethodHead) {
			w.Header().Set("Allow", method)
			writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("%s is not allowed on %s; use %s", r.Method, r.URL.Path, method))
			return
		}
		h(w, r)
	})
}

func (a *api) live(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]bool{"live": true})
}

func (a *api) healthReady(w http.ResponseWriter, _ *http.Request) {
	if !a.ready.Load() {
		writeError(w, http.StatusServiceUnavailable, "the server is shutting down")
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"ready": true})
}

func (a *api) serverMetadata(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"name": serverName, "version": serverVersion, "extensions": []string{}})
}

// modelMetadata is the body of GET /v2/models/{name}.
type modelMetadata struct {
	Name     string       `json:"name"`
	Versions []string     `json:"versions"`
	Platform string       `json:"platform"`
	Inputs   []tensorSpec `json:"inputs"`
	Outputs  []tensorSpec `json:"outputs"`
}

func (a *api) modelMetadata(w http.ResponseWriter, r *http.Request) {
	if !a.knownModel(w, r) {
		return
	}
	writeJSON(w, http.StatusOK, modelMetadata{Name: a.name, Versions: []string{a.version}, Platform: "onnx",
		Inputs: []tensorSpec{a.model.input}, Outputs: a.model.outputs})
}

func (a *api) modelReady(w http.ResponseWriter, r *http.Request) {
	if !a.knownModel(w, r) {
		return
	}
	if !a.ready.Load() {
		writeError(w, http.StatusServiceUnavailable, "the server is shutting down")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"name": a.name, "ready": true})
}

// knownModel answers 404 unless the path names the served model (and version, if it has one).
func (a *api) knownModel(w http.ResponseWriter, r *http.Request) bool {
	if name := r.PathValue("name"); name != a.name {
		writeError(w, http.StatusNotFound, fmt.Sprintf("model %q is not served here; this server serves %q", name, a.name))
		return false
	}
	if v := r.PathValue("version"); v != "" && v != a.version {
		writeError(w, http.StatusNotFound, fmt.Sprintf("model %q has no version %q; this server serves version %q", a.name, v, a.version))
		return false
	}
	return true
}

// inferRequest is an OIP inference request; parameters are accepted and ignored.
type inferRequest struct {
	ID      string          `json:"id"`
	Inputs  []requestInput  `json:"inputs"`
	Outputs []requestOutput `json:"outputs"`
}

type requestInput struct {
	Name     string          `json:"name"`
	Shape    []int64         `json:"shape"`
	Datatype string          `json:"datatype"`
	Data     json.RawMessage `json:"data"`
}

type requestOutput struct {
	Name string `json:"name"`
}

type inferResponse struct {
	ModelName    string           `json:"model_name"`
	ModelVersion string           `json:"model_version"`
	ID           string           `json:"id,omitempty"`
	Outputs      []responseOutput `json:"outputs"`
}

type responseOutput struct {
	Name     string    `json:"name"`
	Datatype string    `json:"datatype"`
	Shape    []int64   `json:"shape"`
	Data     []float32 `json:"data"`
}

// batch is a checked request, ready for the model.
type batch struct {
	id      string
	rows    int
	data    []float32
	outputs []string // empty means all
}

// badRequest is a problem with what the client sent: a 400 whose message says what was wrong.
type badRequest struct{ msg string }

func (e *badRequest) Error() string { return e.msg }

func badRequestf(format string, args ...any) error {
	return &badRequest{msg: fmt.Sprintf(format, args...)}
}

func (a *api) infer(w http.ResponseWriter, r *http.Request) {
	if !a.knownModel(w, r) {
		return
	}
	if !a.ready.Load() {
		writeError(w, http.StatusServiceUnavailable, "the server is shutting down")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("request body is over %d bytes; send fewer rows per request", maxBodyBytes))
			return
		}
		writeError(w, http.StatusBadRequest, fmt.Sprintf("read request body: %v", err))
		return
	}
	b, err := a.decode(body)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	outs, err := a.model.infer(b.rows, b.data)
	if err != nil {
		writeError(w, http.StatusInternalServerError, fmt.Sprintf("inference failed: %v", err))
		return
	}
	a.respond(w, b, outs)
}

func (a *api) respond(w http.ResponseWriter, b *batch, outs []outputTensor) {
	resp := inferResponse{ModelName: a.name, ModelVersion: a.version, ID: b.id, Outputs: []responseOutput{}}
	for _, o := range outs {
		if len(b.outputs) > 0 && !slices.Contains(b.outputs, o.name) {
			continue
		}
		if i := nonFinite(o.data); i >= 0 {
			// JSON has no NaN or infinity. The input was valid FP32, but outside what the model
			// computes sensibly.
			writeError(w, http.StatusUnprocessableEntity, fmt.Sprintf(
				"the model computed %v for output %q, element %d; the input is valid but outside the range this model handles", o.data[i], o.name, i))
			return
		}
		shape := make([]int64, len(o.shape))
		for i, d := range o.shape {
			shape[i] = int64(d)
		}
		resp.Outputs = append(resp.Outputs, responseOutput{Name: o.name, Datatype: "FP32", Shape: shape, Data: o.data})
	}
	writeJSON(w, http.StatusOK, resp)
}

// decode parses and checks an inference request against the model's input.
func (a *api) decode(body []byte) (*batch, error) {
	var req inferRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, badRequestf("request body is not a valid inference request: %v", err)
	}
	if len(req.Inputs) != 1 {
		return nil, badRequestf("request has %d inputs; the model takes exactly one, %q", len(req.Inputs), a.model.input.Name)
	}
	in := req.Inputs[0]
	if in.Name != a.model.input.Name {
		return nil, badRequestf("input %q is unknown; the model's input is %q", in.Name, a.model.input.Name)
	}
	if in.Datatype != "FP32" {
		return nil, badRequestf("input %q has datatype %q; the model takes FP32", in.Name, in.Datatype)
	}
	in.Data = bytes.TrimSpace(in.Data)
	if len(in.Data) == 0 || bytes.Equal(in.Data, []byte("null")) {
		return nil, badRequestf("input %q has no \"data\"", in.Name)
	}
	rows, err := a.checkShape(in.Shape, len(in.Data))
	if err != nil {
		return nil, err
	}
	data, err := readData(in.Data, rows, a.model.features)
	if err != nil {
		return nil, err
	}
	outputs, err := a.checkOutputs(req.Outputs)
	if err != nil {
		return nil, err
	}
	return &batch{id: req.ID, rows: rows, data: data, outputs: outputs}, nil
}

// checkShape returns the row count of a [rows, features] shape. dataBytes bounds the rows: every
// value takes at least one byte of JSON, so a shape larger than that cannot match its data and
// must not size an allocation.
func (a *api) checkShape(shape []int64, dataBytes int) (int, error) {
	features := int64(a.model.features)
	if len(shape) != 2 || shape[1] != features {
		return 0, badRequestf("input shape %v does not fit the model; want [rows, %d]", shape, features)
	}
	if batchDim := a.model.input.Shape[0]; batchDim > 0 && shape[0] != batchDim {
		return 0, badRequestf("input shape %v does not fit the model; it takes exactly %d rows", shape, batchDim)
	}
	if shape[0] < 1 {
		return 0, badRequestf("input shape %v has no rows; send at least one", shape)
	}
	if shape[0] > int64(dataBytes)/features {
		return 0, badRequestf("input shape %v needs %d values; the data cannot hold that many", shape, shape[0]*features)
	}
	return int(shape[0]), nil
}

func (a *api) checkOutputs(requested []requestOutput) ([]string, error) {
	var names []string
	for _, o := range requested {
		if !slices.ContainsFunc(a.model.outputs, func(s tensorSpec) bool { return s.Name == o.Name }) {
			return nil, badRequestf("output %q is unknown; the model's outputs are %s", o.Name, outputNames(a.model.outputs))
		}
		names = append(names, o.Name)
	}
	return names, nil
}

func outputNames(specs []tensorSpec) string {
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = strconv.Quote(s.Name)
	}
	return fmt.Sprint(names)
}

const notNumbers = "input data must be an array of numbers, flat or one array per row"

// readData reads "data" in the flat form [v, ...] or the nested form [[v, ...], ...] into
// exactly rows × features values, one JSON token at a time.
func readData(raw json.RawMessage, rows, features int) ([]float32, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
		return nil, badRequestf(notNumbers)
	}
	d := &dataReader{dec: dec, features: features, out: make([]float32, 0, rows*features)}
	nested, err := d.nested()
	if err != nil {
		return nil, err
	}
	if nested {
		err = d.readRows(rows)
	} else {
		err = d.readFlat(rows * features)
	}
	if err != nil {
		return nil, err
	}
	return d.out, nil
}

type dataReader struct {
	dec      *json.Decoder
	features int
	out      []float32
}

// nested reports whether the array's first element is itself an array. It consumes that
// element's opening bracket, which readRows expects.
func (d *dataReader) nested() (bool, error) {
	if !d.dec.More() {
		return false, nil
	}
	tok, err := d.dec.Token()
	if err != nil {
		return false, badRequestf("%s: %v", notNumbers, err)
	}
	if tok == json.Delim('[') {
		return true, nil
	}
	return false, d.value(tok)
}

func (d *dataReader) readFlat(want int) error {
	for d.dec.More() {
		if len(d.out) == want {
			return badRequestf("input data has more than %d values; the shape needs %d", want, want)
		}
		tok, err := d.dec.Token()
		if err != nil {
			return badRequestf("%s: %v", notNumbers, err)
		}
		if err := d.value(tok); err != nil {
			return err
		}
	}
	if len(d.out) != want {
		return badRequestf("input data has %d values; the shape needs %d", len(d.out), want)
	}
	return nil
}

// readRows reads rows arrays of features numbers; the first row's '[' is already consumed.
func (d *dataReader) readRows(rows int) error {
	for row := 0; ; row++ {
		if row == rows {
			return badRequestf("input data has more than %d rows; the shape says %d", rows, rows)
		}
		if err := d.readRow(row); err != nil {
			return err
		}
		if !d.dec.More() {
			if row+1 != rows {
				return badRequestf("input data has %d rows; the shape says %d", row+1, rows)
			}
			return nil
		}
		if tok, err := d.dec.Token(); err != nil || tok != json.Delim('[') {
			return badRequestf("%s, not a mix of the two", notNumbers)
		}
	}
}

// readRow reads one row's values and its closing bracket.
func (d *dataReader) readRow(row int) error {
	start := len(d.out)
	for d.dec.More() {
		if len(d.out)-start == d.features {
			return badRequestf("input data row %d has more than %d values; the model takes %d", row, d.features, d.features)
		}
		tok, err := d.dec.Token()
		if err != nil {
			return badRequestf("%s: %v", notNumbers, err)
		}
		if err := d.value(tok); err != nil {
			return err
		}
	}
	if _, err := d.dec.Token(); err != nil {
		return badRequestf("%s: %v", notNumbers, err)
	}
	if n := len(d.out) - start; n != d.features {
		return badRequestf("input data row %d has %d values; the model takes %d", row, n, d.features)
	}
	return nil
}

// value appends one element, which must be a finite number within FP32's range.
func (d *dataReader) value(tok json.Token) error {
	num, ok := tok.(json.Number)
	if !ok {
		// encoding/json would turn null into 0; a missing value must not become a measurement.
		return badRequestf("%s is %s; every value must be a finite JSON number (NaN and Infinity are not allowed)", d.where(), describe(tok))
	}
	f, err := strconv.ParseFloat(string(num), 64)
	if err != nil || math.Abs(f) > math.MaxFloat32 {
		return badRequestf("%s is %s, not a finite FP32 number", d.where(), num)
	}
	d.out = append(d.out, float32(f))
	return nil
}

// where names the value about to be appended, for error messages.
func (d *dataReader) where() string {
	i := len(d.out)
	return fmt.Sprintf("input value %d (row %d, feature %d)", i, i/d.features, i%d.features)
}

func describe(tok json.Token) string {
	switch v := tok.(type) {
	case nil:
		return "null"
	case string:
		return fmt.Sprintf("the string %q", v)
	case json.Delim:
		return "an array or object"
	default:
		return fmt.Sprintf("%v", v)
	}
}

// writeJSON encodes v before sending anything, so a value that cannot be encoded becomes a 500
// with a message rather than a 200 with a broken body.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		body, _ = json.Marshal(map[string]string{"error": fmt.Sprintf("encode the response: %v", err)})
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// writeError answers with the OIP error body, {"error": "..."}.
func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}
