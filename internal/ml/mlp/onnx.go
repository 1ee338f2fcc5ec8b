package mlp

import (
	"fmt"
	"sort"

	"github.com/advancedclimatesystems/gonnx/onnx"
	"google.golang.org/protobuf/proto"
)

// ONNX names of the exported graph's tensors.
const (
	InputName  = "input"
	OutputName = "probabilities"
	// Opset is the ONNX operator set the export declares; gonnx v1.1.0 runs opset 13 only.
	Opset = 13
	// irVersion 7 is the ONNX IR version that goes with opset 13.
	irVersion = 7
)

// Description is what an exported model says about itself: its graph name and doc string.
type Description struct {
	Name, Doc string
}

// digitsDescription is the reference model's; ExportONNX keeps it so the shipped digits
// models stay byte-identical.
var digitsDescription = Description{
	Name: "digits_mlp",
	Doc:  "Multi-layer perceptron for 8x8 handwritten digits: input pixels 0..16, output class probabilities 0..9.",
}

// ExportONNX writes the network as an ONNX model: input [batch, inputs] FP32 holding raw
// (unscaled) features, output [batch, classes] FP32 probabilities. The input scale is folded
// into the first layer's weights, so clients send pixels as they are. metadata lands in the
// model's metadata_props, sorted by key so the bytes are stable.
func (n *Network) ExportONNX(producerVersion string, metadata map[string]string) ([]byte, error) {
	return n.ExportDescribedONNX(digitsDescription, producerVersion, metadata)
}

// ExportDescribedONNX is ExportONNX for a network that is not the digits model: the same
// graph under another name and doc string.
func (n *Network) ExportDescribedONNX(desc Description, producerVersion string, metadata map[string]string) ([]byte, error) {
	w1 := make([]float64, len(n.W1))
	for i, w := range n.W1 {
		w1[i] = w * n.InputScale
	}
	graph := &onnx.GraphProto{
		Name: desc.Name,
		Node: []*onnx.NodeProto{
			{Name: "dense1", OpType: "Gemm", Input: []string{InputName, "W1", "B1"}, Output: []string{"dense1_out"}},
			{Name: "relu1", OpType: "Relu", Input: []string{"dense1_out"}, Output: []string{"relu1_out"}},
			{Name: "dense2", OpType: "Gemm", Input: []string{"relu1_out", "W2", "B2"}, Output: []string{"logits"}},
			{Name: "softmax", OpType: "Softmax", Input: []string{"logits"}, Output: []string{OutputName},
				Attribute: []*onnx.AttributeProto{{Name: "axis", Type: onnx.AttributeProto_INT, I: 1}}},
		},
		Initializer: []*onnx.TensorProto{
			floatTensor("W1", w1, int64(n.Inputs), int64(n.Hidden)),
			floatTensor("B1", n.B1, int64(n.Hidden)),
			floatTensor("W2", n.W2, int64(n.Hidden), int64(n.Classes)),
			floatTensor("B2", n.B2, int64(n.Classes)),
		},
		Input:  []*onnx.ValueInfoProto{batchTensorInfo(InputName, int64(n.Inputs))},
		Output: []*onnx.ValueInfoProto{batchTensorInfo(OutputName, int64(n.Classes))},
	}
	return marshalModel(graph, desc.Doc, producerVersion, metadata)
}

// marshalModel wraps graph in an opset-13 model and marshals it deterministically, so the
// same weights always give the same bytes.
func marshalModel(graph *onnx.GraphProto, doc, producerVersion string, metadata map[string]string) ([]byte, error) {
	model := &onnx.ModelProto{
		IrVersion:       irVersion,
		OpsetImport:     []*onnx.OperatorSetIdProto{{Domain: "", Version: Opset}},
		ProducerName:    "modelship",
		ProducerVersion: producerVersion,
		DocString:       doc,
		Graph:           graph,
		MetadataProps:   sortedProps(metadata),
	}
	out, err := proto.MarshalOptions{Deterministic: true}.Marshal(model)
	if err != nil {
		return nil, fmt.Errorf("marshal ONNX model: %w", err)
	}
	return out, nil
}

func floatTensor(name string, values []float64, dims ...int64) *onnx.TensorProto {
	data := make([]float32, len(values))
	for i, v := range values {
		data[i] = float32(v)
	}
	return &onnx.TensorProto{Name: name, Dims: dims, DataType: int32(onnx.TensorProto_FLOAT), FloatData: data}
}

// batchTensorInfo declares an FP32 [batch, width] tensor with a symbolic batch dimension.
func batchTensorInfo(name string, width int64) *onnx.ValueInfoProto {
	return &onnx.ValueInfoProto{
		Name: name,
		Type: &onnx.TypeProto{Value: &onnx.TypeProto_TensorType{TensorType: &onnx.TypeProto_Tensor{
			ElemType: int32(onnx.TensorProto_FLOAT),
			Shape: &onnx.TensorShapeProto{Dim: []*onnx.TensorShapeProto_Dimension{
				{Value: &onnx.TensorShapeProto_Dimension_DimParam{DimParam: "batch"}},
				{Value: &onnx.TensorShapeProto_Dimension_DimValue{DimValue: width}},
			}},
		}}},
	}
}

func sortedProps(m map[string]string) []*onnx.StringStringEntryProto {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	props := make([]*onnx.StringStringEntryProto, 0, len(keys))
	for _, k := range keys {
		props = append(props, &onnx.StringStringEntryProto{Key: k, Value: m[k]})
	}
	return props
}
