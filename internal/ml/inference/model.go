// Package inference loads an ONNX classifier with gonnx (pure Go) and runs batches through it.
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
	"github.com/advancedclimatesystems/gonnx/ops/opset13"
	"gorgonia.org/tensor"
)

// SupportedOpset is the one ONNX operator set gonnx v1.1.0 runs.
const SupportedOpset = 13

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
	graph    *gonnx.Model
	input    TensorSpec
	outputs  []TensorSpec
	features int
	sha256   string
	props    map[string]string
}

// ErrInvalidModel marks a file that is not an ONNX model this server can run.
var ErrInvalidModel = errors.New("invalid model")

// Load reads, checks and prepares the ONNX model at path.
func Load(path string) (*Model, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read model file %s: %w", path, err)
	}
	m, err := LoadBytes(raw)
	if err != nil {
		return nil, fmt.Errorf("model file %s: %w", path, err)
	}
	return m, nil
}

// LoadBytes checks and prepares an ONNX model held in memory.
func LoadBytes(raw []byte) (*Model, error) {
	if len(raw) == 0 {
		return nil, fmt.Errorf("%w: the file is empty", ErrInvalidModel)
	}
	mp, err := gonnx.ModelProtoFromBytes(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: not an ONNX protobuf: %v", ErrInvalidModel, err)
	}
	if mp.GetGraph() == nil || len(mp.GetGraph().GetNode()) == 0 {
		return nil, fmt.Errorf("%w: the ONNX graph has no nodes", ErrInvalidModel)
	}
	if err := checkOpset(mp); err != nil {
		return nil, err
	}
	for _, n := range mp.GetGraph().GetNode() {
		if _, err := opset13.GetOperator(n.GetOpType()); err != nil {
			return nil, fmt.Errorf("%w: operator %q (node %q) is not supported by gonnx at opset %d", ErrInvalidModel, n.GetOpType(), n.GetName(), SupportedOpset)
		}
	}
	graph, err := gonnx.NewModel(mp)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidModel, err)
	}
	m := &Model{graph: graph, props: map[string]string{}}
	if err := m.describe(mp); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(raw)
	m.sha256 = hex.EncodeToString(sum[:])
	for _, p := range mp.GetMetadataProps() {
		m.props[p.GetKey()] = p.GetValue()
	}
	return m, nil
}

func checkOpset(mp *onnx.ModelProto) error {
	var opset int64
	for _, imp := range mp.GetOpsetImport() {
		if imp.GetDomain() == "" || imp.GetDomain() == "ai.onnx" {
			opset = imp.GetVersion()
		}
	}
	if opset != SupportedOpset {
		return fmt.Errorf("%w: the model declares ONNX opset %d; export it at opset %d, the one gonnx runs", ErrInvalidModel, opset, SupportedOpset)
	}
	return nil
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

// SHA256 is the hex digest of the model file's bytes.
func (m *Model) SHA256() string { return m.sha256 }

// Property returns a metadata_props value of the ONNX file ("" when absent).
func (m *Model) Property(key string) string { return m.props[key] }

// Infer runs rows x Features() values (row-major) through the model. It is safe for
// concurrent use: gonnx builds fresh operators per run and only reads the weights.
func (m *Model) Infer(rows int, data []float32) (outs []Output, err error) {
	if rows <= 0 || len(data) != rows*m.features {
		return nil, fmt.Errorf("batch of %d rows needs %d values, got %d", rows, rows*m.features, len(data))
	}
	// gorgonia panics on some shape errors; a bad batch must not take the server down.
	defer func() {
		if r := recover(); r != nil {
			outs, err = nil, fmt.Errorf("inference panicked: %v", r)
		}
	}()
	in := tensor.New(tensor.WithShape(rows, m.features), tensor.WithBacking(data))
	res, err := m.graph.Run(gonnx.Tensors{m.input.Name: in})
	if err != nil {
		return nil, fmt.Errorf("run model: %w", err)
	}
	outs = make([]Output, 0, len(m.outputs))
	for _, spec := range m.outputs {
		t, ok := res[spec.Name]
		if !ok || t == nil {
			return nil, fmt.Errorf("run model: output %q missing", spec.Name)
		}
		vals, ok := t.Data().([]float32)
		if !ok {
			return nil, fmt.Errorf("run model: output %q is %T, want []float32", spec.Name, t.Data())
		}
		outs = append(outs, Output{Name: spec.Name, Shape: slices.Clone([]int(t.Shape())), Data: vals})
	}
	return outs, nil
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
