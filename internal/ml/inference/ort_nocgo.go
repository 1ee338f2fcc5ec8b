//go:build !cgo

package inference

import "fmt"

// ORTVersion is "" in a binary without ONNX Runtime.
func ORTVersion() string { return "" }

func newORT([]byte, *Model, string) (runner, error) {
	return nil, fmt.Errorf("%w: this binary was built without cgo, so it has no ONNX Runtime backend; build it with CGO_ENABLED=1 (the image from serving/onnxruntime.Dockerfile)", ErrNoRuntime)
}

// RuntimeBuiltIn reports whether this binary has the ONNX Runtime backend (built with cgo).
const RuntimeBuiltIn = false
