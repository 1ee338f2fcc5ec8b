package inference

import (
	"fmt"
	"slices"

	"github.com/advancedclimatesystems/gonnx"
	"github.com/advancedclimatesystems/gonnx/onnx"
	"github.com/advancedclimatesystems/gonnx/ops/opset13"
	"gorgonia.org/tensor"
)

// GonnxOpset is the one ONNX operator set gonnx v1.1.0 runs.
const GonnxOpset = 13

// GonnxCannotRun says why gonnx cannot run the model (its opset, or the first operator it
// lacks), or returns nil when it can.
func GonnxCannotRun(mp *onnx.ModelProto) error {
	if opset := Opset(mp); opset != GonnxOpset {
		return fmt.Errorf("the model declares ONNX opset %d; gonnx runs opset %d only", opset, GonnxOpset)
	}
	for _, n := range mp.GetGraph().GetNode() {
		if _, err := opset13.GetOperator(n.GetOpType()); err != nil {
			return fmt.Errorf("operator %q (node %q) is not supported by gonnx at opset %d", n.GetOpType(), n.GetName(), GonnxOpset)
		}
	}
	return nil
}

type gonnxRunner struct{ graph *gonnx.Model }

// newGonnx prepares a model gonnx was asked to run, saying why it cannot when it cannot.
func newGonnx(mp *onnx.ModelProto) (runner, error) {
	if why := GonnxCannotRun(mp); why != nil {
		return nil, fmt.Errorf("%w: %v; export it at opset %d with gonnx's operators, or serve it with ONNX Runtime (backend %q)", ErrInvalidModel, why, GonnxOpset, BackendORT)
	}
	return gonnxGraph(mp)
}

// gonnxGraph builds a model GonnxCannotRun has passed.
func gonnxGraph(mp *onnx.ModelProto) (runner, error) {
	graph, err := gonnx.NewModel(mp)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidModel, err)
	}
	return &gonnxRunner{graph: graph}, nil
}

func (g *gonnxRunner) backend() Backend { return BackendGonnx }
func (g *gonnxRunner) close() error     { return nil }

func (g *gonnxRunner) run(m *Model, rows int, data []float32) (outs []Output, err error) {
	// gorgonia panics on some shape errors; a bad batch must not take the server down.
	defer func() {
		if r := recover(); r != nil {
			outs, err = nil, fmt.Errorf("inference panicked: %v", r)
		}
	}()
	in := tensor.New(tensor.WithShape(rows, m.features), tensor.WithBacking(data))
	res, err := g.graph.Run(gonnx.Tensors{m.input.Name: in})
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
