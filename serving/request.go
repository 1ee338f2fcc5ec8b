package serving

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"

	"github.com/modelship/modelship/internal/plumbing/strictjson"
	"github.com/modelship/modelship/serving/oip"
)

// The wire types and the client live in serving/oip, which clients import without the server.
type (
	InferRequest   = oip.InferRequest
	RequestInput   = oip.RequestInput
	RequestOutput  = oip.RequestOutput
	InferResponse  = oip.InferResponse
	ResponseOutput = oip.ResponseOutput
	ModelMetadata  = oip.ModelMetadata
)

// InputSpec is what a request is checked against.
type InputSpec struct {
	Name     string   // the model's input tensor
	Features int      // values per row
	MaxBatch int      // rows per request at most
	Outputs  []string // output tensors a request may ask for
}

// Batch is a decoded, checked request ready for the model.
type Batch struct {
	ID      string
	Rows    int
	Data    []float32
	Outputs []string // empty means all
	// BinaryOutputs are sent as raw bytes after the JSON (the binary tensor extension); with
	// AllBinary, every output is.
	BinaryOutputs []string
	AllBinary     bool
}

func (b *Batch) binaryOutput(name string) bool {
	return b.AllBinary || slices.Contains(b.BinaryOutputs, name)
}

// RequestError is a problem with the client's request; Status is the HTTP code to answer.
type RequestError struct {
	Status  int
	Message string
}

func (e *RequestError) Error() string { return e.Message }

func badRequest(format string, args ...any) error {
	return &RequestError{Status: http.StatusBadRequest, Message: fmt.Sprintf(format, args...)}
}

// DecodeInferRequest parses and checks an inference request body. Every failure is a
// *RequestError that says what was wrong and what the model expects.
func DecodeInferRequest(body []byte, spec InputSpec) (*Batch, error) {
	if b, ok := fastDecode(body, spec); ok {
		return b, nil
	}
	return decodeGeneral(body, nil, spec)
}

// BinaryHeader is the binary tensor extension's header: in a request, the length of the JSON
// that starts the body, the input tensors' raw bytes following it; in a response, the same for
// the outputs asked for with "binary_data".
const BinaryHeader = "Inference-Header-Content-Length"

// DecodeBinaryInferRequest reads a request under the binary tensor extension: the first
// jsonLen bytes of body are the JSON request, whose input says with its parameter
// binary_data_size how many bytes of little-endian FP32 values follow.
func DecodeBinaryInferRequest(body []byte, jsonLen int, spec InputSpec) (*Batch, error) {
	if jsonLen > len(body) {
		return nil, badRequest("header %s says the JSON is %d bytes, but the body has only %d", BinaryHeader, jsonLen, len(body))
	}
	return decodeGeneral(body[:jsonLen], body[jsonLen:], spec)
}

// decodeGeneral reads any request encoding/json can, and says what is wrong with the others.
// binaryData is what follows the JSON under the binary tensor extension; nil without it.
func decodeGeneral(body, binaryData []byte, spec InputSpec) (*Batch, error) {
	var req InferRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&req); err != nil {
		return nil, badRequest("request body is not a valid inference request: %v", jsonProblem(err))
	}
	if strictjson.AtEnd(dec) != nil {
		return nil, badRequest("request body has data after the JSON object")
	}
	if len(req.Inputs) != 1 {
		return nil, badRequest("request has %d inputs; the model takes exactly one, %q", len(req.Inputs), spec.Name)
	}
	in := req.Inputs[0]
	if in.Name != spec.Name {
		return nil, badRequest("input %q is unknown; the model's input is %q", in.Name, spec.Name)
	}
	if in.Datatype != "FP32" {
		return nil, badRequest("input %q has datatype %q; the model takes FP32", in.Name, in.Datatype)
	}
	rows, err := checkShape(in.Shape, spec)
	if err != nil {
		return nil, err
	}
	data, err := inputData(in, binaryData, rows, spec.Features)
	if err != nil {
		return nil, err
	}
	outputs, binaryOutputs, err := checkOutputs(req.Outputs, spec.Outputs)
	if err != nil {
		return nil, err
	}
	allBinary, err := boolParameter(req.Parameters, "binary_data_output", "the request")
	if err != nil {
		return nil, err
	}
	return &Batch{ID: req.ID, Rows: rows, Data: data, Outputs: outputs, BinaryOutputs: binaryOutputs, AllBinary: allBinary}, nil
}

// inputData is the input's values, from "data" or from the binary part of the body.
func inputData(in RequestInput, binaryData []byte, rows, features int) ([]float32, error) {
	size, binary, err := binaryDataSize(in)
	if err != nil {
		return nil, err
	}
	if !binary {
		if len(binaryData) > 0 {
			return nil, badRequest("the body has %d bytes after its JSON, but input %q has no binary_data_size parameter", len(binaryData), in.Name)
		}
		return decodeData(in.Data, rows, features)
	}
	if binaryData == nil {
		return nil, badRequest("input %q uses the binary tensor extension (binary_data_size), but the request has no %s header; send the header with the JSON's length in bytes, or the values in \"data\"", in.Name, BinaryHeader)
	}
	if d := bytes.TrimSpace(in.Data); len(d) > 0 && !bytes.Equal(d, []byte("null")) {
		return nil, badRequest("input %q has both \"data\" and binary_data_size; send its values one way", in.Name)
	}
	return decodeBinaryData(binaryData, size, rows, features)
}

func checkShape(shape []int64, spec InputSpec) (int, error) {
	if len(shape) != 2 {
		return 0, badRequest("input shape %v has %d dimensions; want [rows, %d]", shape, len(shape), spec.Features)
	}
	if shape[1] != int64(spec.Features) {
		return 0, badRequest("input shape %v has %d features per row; the model takes %d", shape, shape[1], spec.Features)
	}
	if shape[0] < 1 {
		return 0, badRequest("input shape %v has no rows; send at least one", shape)
	}
	if shape[0] > int64(spec.MaxBatch) {
		return 0, &RequestError{Status: http.StatusRequestEntityTooLarge,
			Message: fmt.Sprintf("batch of %d rows is over the limit of %d; split it into smaller requests", shape[0], spec.MaxBatch)}
	}
	return int(shape[0]), nil
}

// decodeData reads "data" one token at a time, in the flat form [v, v, ...] or the nested form
// [[v, ...], ...], into exactly rows × features values. It stops at the first value past that
// count, so what a request can make the server hold is bounded by the shape it declares (and
// MaxBatch), not by how many values its body carries.
func decodeData(raw json.RawMessage, rows, features int) ([]float32, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, badRequest("input has no \"data\"")
	}
	d := &dataReader{dec: json.NewDecoder(bytes.NewReader(raw)), rows: rows, features: features,
		out: make([]float32, 0, rows*features)}
	d.dec.UseNumber()
	if err := d.read(); err != nil {
		return nil, err
	}
	return d.out, nil
}

// dataReader is the state of one decodeData.
type dataReader struct {
	dec            *json.Decoder
	rows, features int
	out            []float32
}

const notArray = "input data must be an array of numbers (flat or one array per row)"

func (d *dataReader) read() error {
	if tok, err := d.dec.Token(); err != nil || tok != json.Delim('[') {
		return badRequest(notArray)
	}
	want := d.rows * d.features
	nestedRows := -1 // -1 until the first element says which form this is
	for d.dec.More() {
		tok, err := d.dec.Token()
		if err != nil {
			return badRequest("%s: %v", notArray, jsonProblem(err))
		}
		if tok == json.Delim('[') {
			if nestedRows == -1 {
				nestedRows = 0
			}
			if nestedRows < 0 {
				return badRequest("%s, not a mix of the two", notArray)
			}
			if nestedRows == d.rows {
				return badRequest("input data has more than %d rows; the shape says %d", d.rows, d.rows)
			}
			if err := d.row(nestedRows); err != nil {
				return err
			}
			nestedRows++
			continue
		}
		if nestedRows >= 0 {
			return badRequest("%s, not a mix of the two", notArray)
		}
		nestedRows = -2 // flat
		if len(d.out) == want {
			return badRequest("input data has more than %d values; shape [%d, %d] needs %d", want, d.rows, d.features, want)
		}
		if err := d.value(tok); err != nil {
			return err
		}
	}
	if nestedRows >= 0 && nestedRows != d.rows {
		return badRequest("input data has %d rows; the shape says %d", nestedRows, d.rows)
	}
	if len(d.out) != want {
		return badRequest("input data has %d values; shape [%d, %d] needs %d", len(d.out), d.rows, d.features, want)
	}
	return nil
}

// row reads one nested row, after its '['.
func (d *dataReader) row(i int) error {
	n := 0
	for d.dec.More() {
		if n == d.features {
			return badRequest("input data row %d has more than %d values; the model takes %d", i, d.features, d.features)
		}
		tok, err := d.dec.Token()
		if err != nil {
			return badRequest("%s: %v", notArray, jsonProblem(err))
		}
		if err := d.value(tok); err != nil {
			return err
		}
		n++
	}
	if _, err := d.dec.Token(); err != nil { // the row's ']'
		return badRequest("%s: %v", notArray, jsonProblem(err))
	}
	if n != d.features {
		return badRequest("input data row %d has %d values; the model takes %d", i, n, d.features)
	}
	return nil
}

// value appends one element, which must be a finite number within FP32's range.
func (d *dataReader) value(tok json.Token) error {
	i := len(d.out)
	where := fmt.Sprintf("input value %d (row %d, feature %d)", i, i/d.features, i%d.features)
	switch v := tok.(type) {
	case json.Number:
		f, err := strconv.ParseFloat(string(v), 64)
		if err != nil || math.Abs(f) > math.MaxFloat32 {
			return badRequest("%s is %s, not a finite FP32 number", where, v)
		}
		d.out = append(d.out, float32(f))
		return nil
	case string:
		return badRequest("%s is the string %q; values must be JSON numbers, and NaN and Infinity are not allowed", where, v)
	case nil:
		// encoding/json would make null a 0; a missing value must not become a pixel.
		return badRequest("%s is null; every value must be a number", where)
	case json.Delim:
		return badRequest("%s is an array or object; %s", where, notArray)
	default:
		return badRequest("%s is %v; every value must be a number", where, v)
	}
}

// checkOutputs returns the names of the outputs asked for, and of those asked for as binary.
func checkOutputs(requested []RequestOutput, known []string) (names, binary []string, err error) {
	for _, o := range requested {
		if !slices.Contains(known, o.Name) {
			return nil, nil, badRequest("output %q is unknown; the model's outputs are %q", o.Name, known)
		}
		names = append(names, o.Name)
		asBinary, err := boolParameter(o.Parameters, "binary_data", fmt.Sprintf("output %q", o.Name))
		if err != nil {
			return nil, nil, err
		}
		if asBinary {
			binary = append(binary, o.Name)
		}
	}
	return names, binary, nil
}

// boolParameter is a true/false parameter of the request or of one of its outputs.
func boolParameter(params map[string]any, key, of string) (bool, error) {
	v, ok := params[key]
	if !ok {
		return false, nil
	}
	b, ok := v.(bool)
	if !ok {
		raw, _ := json.Marshal(v) // a value decoded from JSON encodes
		return false, badRequest("parameter %q of %s is %s; it must be true or false", key, of, raw)
	}
	return b, nil
}

// jsonProblem turns encoding/json errors into text a client can act on.
func jsonProblem(err error) string {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return fmt.Sprintf("malformed JSON at byte %d: %v", syntax.Offset, syntax)
	case errors.As(err, &typ):
		if typ.Field != "" {
			return fmt.Sprintf("field %q is a JSON %s, want %s", typ.Field, typ.Value, typ.Type)
		}
		return fmt.Sprintf("found a JSON %s where %s belongs", typ.Value, typ.Type)
	default:
		return err.Error()
	}
}
