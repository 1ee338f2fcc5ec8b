package mlp

import (
	"errors"

	"github.com/advancedclimatesystems/gonnx/onnx"
)

// ValueName is the output of an exported linear model: one predicted value per row.
const ValueName = "value"

// ExportLinearONNX writes the linear model x·weights + bias as an ONNX model of one Gemm
// node: input [batch, len(weights)] FP32, output [batch, 1] FP32 named ValueName. It lives
// beside the perceptron export so both share one way of writing tensors and model headers.
func ExportLinearONNX(desc Description, weights []float64, bias float64, producerVersion string, metadata map[string]string) ([]byte, error) {
	if len(weights) == 0 {
		return nil, errors.New("export linear model: no weights")
	}
	width := int64(len(weights))
	graph := &onnx.GraphProto{
		Name: desc.Name,
		Node: []*onnx.NodeProto{
			{Name: "linear", OpType: "Gemm", Input: []string{InputName, "W", "B"}, Output: []string{ValueName}},
		},
		Initializer: []*onnx.TensorProto{
			floatTensor("W", weights, width, 1),
			floatTensor("B", []float64{bias}, 1),
		},
		Input:  []*onnx.ValueInfoProto{batchTensorInfo(InputName, width)},
		Output: []*onnx.ValueInfoProto{batchTensorInfo(ValueName, 1)},
	}
	return marshalModel(graph, desc.Doc, producerVersion, metadata)
}
