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

// DigitsDescription is the reference model's; ExportONNX keeps it so the shipped digits
// models stay byte-identical.
var DigitsDescription = Description{
	Name: "digits_mlp",
	Doc:  "Multi-layer perceptron for 8x8 handwritten digits: input pixels 0..16, output class probabilities 0..9.",
}

// ExportONNX writes the network as an ONNX model: input [batch, inputs] FP32 holding raw
// (unscaled) features, output [batch, classes] FP32 probabilities. The input scale is folded
// into the first layer's weights, so clients send pixels as they are. metadata lands in the
// model's metadata_props, sorted by key so the bytes are stable.
func (n *Network) ExportONNX(producerVersion string, metadata map[string]string) ([]byte, error) {
	return n.ExportDescribedONNX(DigitsDescription, producerVersion, metadata)
}

// ExportDescribedONNX is ExportONNX for a network that is not the digits model: the same
// graph under another name and doc string.
func (n *Network) ExportDescribedONNX(desc Description, producerVersion string, metadata map[string]string) ([]byte, error) {
	return marshalModel(n.graph(desc), desc.Doc, producerVersion, metadata)
}

// graph is the plain network: Gemm, Relu, Gemm, Softmax, with the input scale folded in.
func (n *Network) graph(desc Description) *onnx.GraphProto {
	w1 := make([]float64, len(n.W1))
	for i, w := range n.W1 {
		w1[i] = w * n.InputScale
	}
	return &onnx.GraphProto{
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
}

// Head is what an export puts between the logits and the softmax. Each head keeps every row's
// order of logits, so a model exported with any head predicts exactly what the plain one does:
// the same network, exercising operators only newer opsets have.
type Head string

const (
	// HeadNone is the plain network: Gemm, Relu, Gemm, Softmax (opset 13 and later).
	HeadNone Head = ""
	// HeadLayerNorm normalises the logits with LayerNormalization (opset 17 and later).
	HeadLayerNorm Head = "layernorm"
	// HeadLayerNormGelu shifts the normalised logits into Gelu's increasing range and applies
	// Gelu (opset 20 and later).
	HeadLayerNormGelu Head = "layernorm-gelu"
	// HeadBallast adds to the logits a branch of heavy matrix products multiplied by zero
	// (opset 13 and later, so gonnx runs it): a model with the plain one's outputs, bit for bit,
	// that takes tens of milliseconds a row. Tests of latency-based rollout analysis need a
	// candidate that is slow yet right.
	HeadBallast Head = "ballast"
)

// The ballast branch: the input goes through a [features, ballastWidth] product, then
// ballastRounds products with one [ballastWidth, ballastWidth] matrix (one initializer reused,
// so the file grows by one matrix, 4 MiB), then to [ballastWidth, classes] and times zero.
// Every weight is 1/ballastWidth: each product averages its input, so the values stay those of
// the input's scale (finite: zero times infinity would be NaN and poison the logits).
const (
	ballastWidth  = 1024
	ballastRounds = 180
)

// geluShift moves LayerNormalization's output, which for c classes lies within ±sqrt(c-1),
// above -0.75, where Gelu is increasing, so the head keeps each row's order.
const geluShift = 4

// Variant is an export of the network at an opset of choice, with a head of choice.
type Variant struct {
	Opset int64
	Head  Head
}

// irVersions is the ONNX IR version that goes with each opset this writer declares.
var irVersions = map[int64]int64{13: 7, 14: 7, 15: 8, 16: 8, 17: 8, 18: 8, 19: 9, 20: 9, 21: 10}

// minOpset is the first opset that has each head's operators.
var minOpset = map[Head]int64{HeadNone: 13, HeadLayerNorm: 17, HeadLayerNormGelu: 20, HeadBallast: 13}

// ExportVariantONNX is ExportDescribedONNX at another opset, with a head: models that only
// ONNX Runtime runs (gonnx runs opset 13 only), whose predictions are the plain model's.
func (n *Network) ExportVariantONNX(v Variant, desc Description, producerVersion string, metadata map[string]string) ([]byte, error) {
	ir, ok := irVersions[v.Opset]
	if !ok {
		return nil, fmt.Errorf("export at opset %d: this writer declares opsets 13 to 21", v.Opset)
	}
	first, ok := minOpset[v.Head]
	if !ok {
		return nil, fmt.Errorf("export head %q: want %q, %q, %q or %q", v.Head, HeadNone, HeadLayerNorm, HeadLayerNormGelu, HeadBallast)
	}
	if v.Opset < first {
		return nil, fmt.Errorf("export head %q at opset %d: its operators need opset %d or later", v.Head, v.Opset, first)
	}
	graph := n.graph(desc)
	switch v.Head {
	case HeadNone:
	case HeadBallast:
		addBallast(graph, n.Inputs, n.Classes)
	default:
		addHead(graph, v.Head, n.Classes)
	}
	return marshalModelAt(graph, v.Opset, ir, desc.Doc, producerVersion, metadata)
}

// addHead rewires the softmax to read the head's output instead of the logits.
func addHead(graph *onnx.GraphProto, head Head, classes int) {
	softmax := graph.Node[len(graph.Node)-1]
	ones, zeros := make([]float64, classes), make([]float64, classes)
	for i := range ones {
		ones[i] = 1
	}
	bias := zeros
	if head == HeadLayerNormGelu {
		bias = make([]float64, classes)
		for i := range bias {
			bias[i] = geluShift
		}
	}
	nodes := []*onnx.NodeProto{{Name: "layernorm", OpType: "LayerNormalization", Input: []string{"logits", "LN_scale", "LN_bias"}, Output: []string{"normalised"},
		Attribute: []*onnx.AttributeProto{
			{Name: "axis", Type: onnx.AttributeProto_INT, I: -1},
			{Name: "epsilon", Type: onnx.AttributeProto_FLOAT, F: 1e-5},
		}}}
	out := "normalised"
	if head == HeadLayerNormGelu {
		nodes = append(nodes, &onnx.NodeProto{Name: "gelu", OpType: "Gelu", Input: []string{"normalised"}, Output: []string{"activated"},
			Attribute: []*onnx.AttributeProto{{Name: "approximate", Type: onnx.AttributeProto_STRING, S: []byte("none")}}})
		out = "activated"
	}
	softmax.Input = []string{out}
	graph.Node = append(graph.Node[:len(graph.Node)-1], append(nodes, softmax)...)
	graph.Initializer = append(graph.Initializer, floatTensor("LN_scale", ones, int64(classes)), floatTensor("LN_bias", bias, int64(classes)))
}

// addBallast rewires the softmax to read the logits plus the ballast branch, which is exactly
// zero: its products are finite and then multiplied by 0, and x + 0 is x, so the
// probabilities are the plain network's bit for bit.
func addBallast(graph *onnx.GraphProto, inputs, classes int) {
	softmax := graph.Node[len(graph.Node)-1]
	fill := func(n int) []float64 {
		w := make([]float64, n)
		for i := range w {
			w[i] = 1.0 / ballastWidth
		}
		return w
	}
	nodes := []*onnx.NodeProto{{Name: "ballast_in", OpType: "MatMul", Input: []string{InputName, "ballast_W_in"}, Output: []string{"ballast_0"}}}
	for i := 1; i <= ballastRounds; i++ {
		nodes = append(nodes, &onnx.NodeProto{Name: fmt.Sprintf("ballast_round%d", i), OpType: "MatMul",
			Input: []string{fmt.Sprintf("ballast_%d", i-1), "ballast_W"}, Output: []string{fmt.Sprintf("ballast_%d", i)}})
	}
	nodes = append(nodes,
		&onnx.NodeProto{Name: "ballast_out", OpType: "MatMul", Input: []string{fmt.Sprintf("ballast_%d", ballastRounds), "ballast_W_out"}, Output: []string{"ballast_logits"}},
		&onnx.NodeProto{Name: "ballast_zero", OpType: "Mul", Input: []string{"ballast_logits", "ballast_zero"}, Output: []string{"ballast_nothing"}},
		&onnx.NodeProto{Name: "ballast_add", OpType: "Add", Input: []string{"logits", "ballast_nothing"}, Output: []string{"ballasted"}},
	)
	softmax.Input = []string{"ballasted"}
	graph.Node = append(graph.Node[:len(graph.Node)-1], append(nodes, softmax)...)
	graph.Initializer = append(graph.Initializer,
		floatTensor("ballast_W_in", fill(inputs*ballastWidth), int64(inputs), ballastWidth),
		floatTensor("ballast_W", fill(ballastWidth*ballastWidth), ballastWidth, ballastWidth),
		floatTensor("ballast_W_out", fill(ballastWidth*classes), ballastWidth, int64(classes)),
		floatTensor("ballast_zero", []float64{0}, 1))
}

// marshalModel wraps graph in an opset-13 model and marshals it deterministically, so the
// same weights always give the same bytes.
func marshalModel(graph *onnx.GraphProto, doc, producerVersion string, metadata map[string]string) ([]byte, error) {
	return marshalModelAt(graph, Opset, irVersion, doc, producerVersion, metadata)
}

func marshalModelAt(graph *onnx.GraphProto, opset, ir int64, doc, producerVersion string, metadata map[string]string) ([]byte, error) {
	model := &onnx.ModelProto{
		IrVersion:       ir,
		OpsetImport:     []*onnx.OperatorSetIdProto{{Domain: "", Version: opset}},
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
