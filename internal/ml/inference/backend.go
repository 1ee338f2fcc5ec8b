package inference

import (
	"errors"
	"fmt"
	"os"
)

// Backend names what runs a model.
type Backend string

const (
	// BackendAuto picks gonnx when gonnx can run the model, else ONNX Runtime.
	BackendAuto Backend = "auto"
	// BackendGonnx is github.com/advancedclimatesystems/gonnx: pure Go, opset 13 only.
	BackendGonnx Backend = "gonnx"
	// BackendORT is ONNX Runtime through cgo (github.com/yalue/onnxruntime_go).
	BackendORT Backend = "onnxruntime"
)

// Backends lists the values Options.Backend takes.
var Backends = []Backend{BackendAuto, BackendGonnx, BackendORT}

// ErrNoRuntime marks an ONNX Runtime that cannot be used here: a binary built without cgo, no
// library named, or a library that does not load.
var ErrNoRuntime = errors.New("ONNX Runtime unavailable")

// Options choose the backend.
type Options struct {
	Backend Backend // "" is BackendAuto
	// ORTLibrary is the path of libonnxruntime.so (ONNX Runtime 1.24 or later, whose C API
	// version 24 onnxruntime_go v1.27 speaks). One library per process: the first model
	// loaded with ONNX Runtime loads it.
	ORTLibrary string
}

// OptionsFromEnv reads MODELSHIP_BACKEND and MODELSHIP_ORT_LIBRARY.
func OptionsFromEnv() Options {
	return Options{Backend: Backend(os.Getenv("MODELSHIP_BACKEND")), ORTLibrary: os.Getenv("MODELSHIP_ORT_LIBRARY")}
}

func (o Options) backend() (Backend, error) {
	switch o.Backend {
	case "", BackendAuto:
		return BackendAuto, nil
	case BackendGonnx, BackendORT:
		return o.Backend, nil
	}
	return "", fmt.Errorf("backend %q is unknown; use %q, %q or %q", o.Backend, BackendAuto, BackendGonnx, BackendORT)
}
