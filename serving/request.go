package serving

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
)

// InferRequest is an Open Inference Protocol (KServe v2) inference request.
type InferRequest struct {
	ID         string          `json:"id,omitempty"`
	Parameters map[string]any  `json:"parameters,omitempty"`
	Inputs     []RequestInput  `json:"inputs"`
	Outputs    []RequestOutput `json:"outputs,omitempty"`
}

// RequestInput is one input tensor. Data is row-major, flat or nested one level per dimension.
type RequestInput struct {
	Name       string          `json:"name"`
	Shape      []int64         `json:"shape"`
	Datatype   string          `json:"datatype"`
	Parameters map[string]any  `json:"parameters,omitempty"`
	Data       json.RawMessage `json:"data"`
}

// RequestOutput asks for one output by name.
type RequestOutput struct {
	Name       string         `json:"name"`
	Parameters map[string]any `json:"parameters,omitempty"`
}

// InferResponse is the Open Inference Protocol response.
type InferResponse struct {
	ModelName    string           `json:"model_name"`
	ModelVersion string           `json:"model_version,omitempty"`
	ID           string           `json:"id,omitempty"`
	Outputs      []ResponseOutput `json:"outputs"`
}

// ResponseOutput is one output tensor, row-major and flat.
type ResponseOutput struct {
	Name     string    `json:"name"`
	Datatype string    `json:"datatype"`
	Shape    []int64   `json:"shape"`
	Data     []float32 `json:"data"`
}

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
	var req InferRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&req); err != nil {
		return nil, badRequest("request body is not a valid inference request: %v", jsonProblem(err))
	}
	if dec.More() {
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
	if _, binary := in.Parameters["binary_data_size"]; binary {
		return nil, badRequest("the binary tensor extension is not supported; send the values in \"data\"")
	}
	rows, err := checkShape(in.Shape, spec)
	if err != nil {
		return nil, err
	}
	data, err := decodeData(in.Data, rows, spec.Features)
	if err != nil {
		return nil, err
	}
	outputs, err := checkOutputs(req.Outputs, spec.Outputs)
	if err != nil {
		return nil, err
	}
	return &Batch{ID: req.ID, Rows: rows, Data: data, Outputs: outputs}, nil
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

// decodeData accepts the flat form [v, v, ...] and the nested form [[v, ...], ...].
func decodeData(raw json.RawMessage, rows, features int) ([]float32, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, badRequest("input has no \"data\"")
	}
	// encoding/json turns null into 0 inside a []float64; a missing value must not become a pixel.
	if bytes.Contains(raw, []byte("null")) {
		return nil, badRequest("input data contains null; every value must be a number")
	}
	var values []float64
	var flat []float64
	if err := json.Unmarshal(raw, &flat); err == nil {
		values = flat
	} else {
		var nested [][]float64
		if err2 := json.Unmarshal(raw, &nested); err2 != nil {
			return nil, badRequest("input data must be an array of numbers (flat or one array per row): %v", jsonProblem(err))
		}
		if len(nested) != rows {
			return nil, badRequest("input data has %d rows; the shape says %d", len(nested), rows)
		}
		values = make([]float64, 0, rows*features)
		for i, row := range nested {
			if len(row) != features {
				return nil, badRequest("input data row %d has %d values; the model takes %d", i, len(row), features)
			}
			values = append(values, row...)
		}
	}
	if len(values) != rows*features {
		return nil, badRequest("input data has %d values; shape [%d, %d] needs %d", len(values), rows, features, rows*features)
	}
	out := make([]float32, len(values))
	for i, v := range values {
		if math.IsNaN(v) || math.IsInf(v, 0) || math.Abs(v) > math.MaxFloat32 {
			return nil, badRequest("input value %d (row %d, feature %d) is %v, not a finite FP32 number", i, i/features, i%features, v)
		}
		out[i] = float32(v)
	}
	return out, nil
}

func checkOutputs(requested []RequestOutput, known []string) ([]string, error) {
	var names []string
	for _, o := range requested {
		found := false
		for _, k := range known {
			found = found || k == o.Name
		}
		if !found {
			return nil, badRequest("output %q is unknown; the model's outputs are %q", o.Name, known)
		}
		names = append(names, o.Name)
	}
	return names, nil
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
