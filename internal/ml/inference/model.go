// Package inference loads an ONNX model and runs batches through it, with one of two backends:
// gonnx (pure Go, opset 13 only, so the server can be a static binary) or ONNX Runtime (cgo,
// every opset and operator ONNX Runtime knows).
package inference

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"

	"github.com/advancedclimatesystems/gonnx"
	"github.com/advancedclimatesystems/gonnx/onnx"
)

// DatatypeFP32 is the Open Inference Protocol name of float32 tensors, the only kind served.
const DatatypeFP32 = "FP32"

// TensorSpec describes one model input or output; -1 in Shape is a dimension of any size.
type TensorSpec struct {
	Name     string  `json:"name"`
	Datatype string  `json:"datatype"`
	Shape    []int64 `json:"shape"`
}

// Output is one output tensor of a batch, row-major.
type Output struct {
	Name  string
	Shape []int
	Data  []float32
}

// Model is a loaded ONNX model with one FP32 input of shape [batch, features].
type Model struct {
	runner   runner
	input    TensorSpec
	outputs  []TensorSpec
	features int
	opset    int64
	sha256   string
	props    map[string]string
}

// runner is a backend's prepared model: it runs a checked batch and returns every output.
type runner interface {
	run(m *Model, rows int, data []float32) ([]Output, error)
	backend() Backend
	close() error
}

// ErrInvalidModel marks a file that is not an ONNX model this server can run.
var ErrInvalidModel = errors.New("invalid model")

// Load reads, checks and prepares the ONNX model at path, with the backend and ONNX Runtime
// library the environment names (OptionsFromEnv).
func Load(path string) (*Model, error) {
	return LoadWith(path, OptionsFromEnv())
}

// LoadWith is Load with the backend chosen by opts.
func LoadWith(path string, opts Options) (*Model, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read model file %s: %w", path, err)
	}
	m, err := LoadBytesWith(raw, opts)
	if err != nil {
		return nil, fmt.Errorf("model file %s: %w", path, err)
	}
	return m, nil
}

// LoadBytes checks and prepares an ONNX model held in memory, as Load does.
func LoadBytes(raw []byte) (*Model, error) {
	return LoadBytesWith(raw, OptionsFromEnv())
}

// LoadBytesWith checks an ONNX model held in memory and prepares it on the backend opts ask
// for: with BackendAuto, gonnx when gonnx can run it, else ONNX Runtime.
func LoadBytesWith(raw []byte, opts Options) (*Model, error) {
	backend, err := opts.backend()
	if err != nil {
		return nil, err
	}
	mp, m, err := parse(raw)
	if err != nil {
		return nil, err
	}
	if m.runner, err = prepare(backend, mp, raw, m, opts); err != nil {
		return nil, err
	}
	return m, nil
}

// parse checks what every backend needs (an ONNX graph with one FP32 [batch, features]
// input and FP32 outputs) and describes the model, without preparing it to run.
func parse(raw []byte) (*onnx.ModelProto, *Model, error) {
	if len(raw) == 0 {
		return nil, nil, fmt.Errorf("%w: the file is empty", ErrInvalidModel)
	}
	mp, err := gonnx.ModelProtoFromBytes(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: not an ONNX protobuf: %v", ErrInvalidModel, err)
	}
	if mp.GetGraph() == nil || len(mp.GetGraph().GetNode()) == 0 {
		return nil, nil, fmt.Errorf("%w: the ONNX graph has no nodes", ErrInvalidModel)
	}
	m := &Model{props: map[string]string{}, opset: Opset(mp)}
	if err := m.describe(mp); err != nil {
		return nil, nil, err
	}
	sum := sha256.Sum256(raw)
	m.sha256 = hex.EncodeToString(sum[:])
	for _, p := range mp.GetMetadataProps() {
		m.props[p.GetKey()] = p.GetValue()
	}
	return mp, m, nil
}

// Info is what Inspect finds in a model file without running it.
type Info struct {
	SHA256    string       `json:"sha256"`
	Opset     int64        `json:"opset"`
	Operators []string     `json:"operators"`
	Input     TensorSpec   `json:"input"`
	Outputs   []TensorSpec `json:"outputs"`
	// Backend is what BackendAuto picks: gonnx when gonnx runs the model, else onnxruntime.
	Backend Backend `json:"backend"`
	// GonnxCannot says why gonnx cannot run it ("" when it can).
	GonnxCannot string `json:"gonnx_cannot,omitempty"`
}

// Inspect checks a model as every backend needs it to be and says which backend runs it,
// without loading either: what a push checks, and how a build picks its image variant, in a
// binary that may have no ONNX Runtime.
func Inspect(raw []byte) (*Info, error) {
	mp, m, err := parse(raw)
	if err != nil {
		return nil, err
	}
	info := &Info{SHA256: m.sha256, Opset: m.opset, Input: m.input, Outputs: m.outputs, Backend: BackendGonnx}
	for _, n := range mp.GetGraph().GetNode() {
		if !slices.Contains(info.Operators, n.GetOpType()) {
			info.Operators = append(info.Operators, n.GetOpType())
		}
	}
	if why := GonnxCannotRun(mp); why != nil {
		info.Backend, info.GonnxCannot = BackendORT, why.Error()
	}
	return info, nil
}

// prepare builds the runner: the backend asked for, or with BackendAuto the one that runs it.
func prepare(backend Backend, mp *onnx.ModelProto, raw []byte, m *Model, opts Options) (runner, error) {
	switch backend {
	case BackendGonnx:
		return newGonnx(mp)
	case BackendORT:
		return newORT(raw, m, opts.ORTLibrary)
	}
	why := GonnxCannotRun(mp)
	if why == nil {
		return gonnxGraph(mp)
	}
	r, err := newORT(raw, m, opts.ORTLibrary)
	switch {
	case errors.Is(err, ErrNoRuntime):
		return nil, fmt.Errorf("%w: %v, and ONNX Runtime is not available: %v", ErrInvalidModel, why, err)
	case err != nil:
		return nil, fmt.Errorf("neither backend runs it (gonnx: %v): %w", why, err)
	}
	return r, nil
}

// Opset is the default-domain ONNX operator set the model declares (0 when none).
func Opset(mp *onnx.ModelProto) int64 {
	var opset int64
	for _, imp := range mp.GetOpsetImport() {
		if imp.GetDomain() == "" || imp.GetDomain() == "ai.onnx" {
			opset = imp.GetVersion()
		}
	}
	return opset
}

// describe fills the input and output specs and insists on one FP32 [batch, features] input.
func (m *Model) describe(mp *onnx.ModelProto) error {
	params := mp.GetGraph().ParamNames()
	var inputs []*onnx.ValueInfoProto
	for _, in := range mp.GetGraph().GetInput() {
		if !slices.Contains(params, in.GetName()) {
			inputs = append(inputs, in)
		}
	}
	if len(inputs) != 1 {
		return fmt.Errorf("%w: the model has %d inputs; the server runs models with exactly one", ErrInvalidModel, len(inputs))
	}
	in, err := spec(inputs[0])
	if err != nil {
		return err
	}
	if len(in.Shape) != 2 || in.Shape[1] <= 0 {
		return fmt.Errorf("%w: input %q has shape %v; want [batch, features] with a fixed feature count", ErrInvalidModel, in.Name, in.Shape)
	}
	m.input, m.features = in, int(in.Shape[1])
	for _, out := range mp.GetGraph().GetOutput() {
		o, err := spec(out)
		if err != nil {
			return err
		}
		m.outputs = append(m.outputs, o)
	}
	if len(m.outputs) == 0 {
		return fmt.Errorf("%w: the model declares no outputs", ErrInvalidModel)
	}
	return nil
}

func spec(v *onnx.ValueInfoProto) (TensorSpec, error) {
	tt := v.GetType().GetTensorType()
	if tt == nil || tt.GetElemType() != int32(onnx.TensorProto_FLOAT) {
		return TensorSpec{}, fmt.Errorf("%w: tensor %q is not FP32; the server runs FP32 models only", ErrInvalidModel, v.GetName())
	}
	s := TensorSpec{Name: v.GetName(), Datatype: DatatypeFP32}
	for _, d := range tt.GetShape().GetDim() {
		size := d.GetDimValue()
		if size <= 0 {
			size = -1
		}
		s.Shape = append(s.Shape, size)
	}
	return s, nil
}

// Input describes the model's single input.
func (m *Model) Input() TensorSpec { return m.input }

// Outputs describes the model's outputs in graph order.
func (m *Model) Outputs() []TensorSpec { return slices.Clone(m.outputs) }

// Features is the width of one input row.
func (m *Model) Features() int { return m.features }

// Backend is the backend running the model.
func (m *Model) Backend() Backend { return m.runner.backend() }

// DeclaredOpset is the ONNX operator set the model declares.
func (m *Model) DeclaredOpset() int64 { return m.opset }

// Close releases what the backend holds outside Go's heap (ONNX Runtime's session).
func (m *Model) Close() error { return m.runner.close() }

// SHA256 is the hex digest of the model file's bytes.
func (m *Model) SHA256() string { return m.sha256 }

// Property returns a metadata_props value of the ONNX file ("" when absent).
func (m *Model) Property(key string) string { return m.props[key] }

// Infer runs rows x Features() values (row-major) through the model. It is safe for
// concurrent use: gonnx builds fresh operators per run and only reads the weights, and an ONNX
// Runtime session's Run is thread-safe.
func (m *Model) Infer(rows int, data []float32) ([]Output, error) {
	if rows <= 0 || len(data) != rows*m.features {
		return nil, fmt.Errorf("batch of %d rows needs %d values, got %d", rows, rows*m.features, len(data))
	}
	return m.runner.run(m, rows, data)
}

// Argmax returns the index of the largest value in each row of a [rows, width] output.
func Argmax(o Output) []int {
	if len(o.Shape) != 2 || o.Shape[1] == 0 {
		return nil
	}
	width := o.Shape[1]
	labels := make([]int, o.Shape[0])
	for r := range labels {
		labels[r] = ArgmaxRow(o.Data[r*width : (r+1)*width])
	}
	return labels
}

// NonFinite returns the index of the first NaN or infinite value, or -1: an output that no
// JSON response can carry and no prediction can rest on.
func NonFinite(data []float32) int {
	for i, v := range data {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return i
		}
	}
	return -1
}

// ArgmaxRow returns the index of the largest value of one row (the first on ties).
func ArgmaxRow(row []float32) int {
	best := 0
	for i, v := range row {
		if v > row[best] {
			best = i
		}
	}
	return best
}
