package testenv

import (
	"os"
	"testing"

	"github.com/modelship/modelship/internal/ml/inference"
)

// ORTLibrary is the ONNX Runtime library the tests load (MODELSHIP_ORT_LIBRARY, which
// scripts/tools.sh's install_onnxruntime sets), or a skip naming what is missing.
func ORTLibrary(t testing.TB) string {
	t.Helper()
	if !inference.RuntimeBuiltIn {
		Missing(t, "onnxruntime", "this test binary was built without cgo (CGO_ENABLED=0 or no C compiler), so it has no ONNX Runtime backend")
	}
	lib := os.Getenv("MODELSHIP_ORT_LIBRARY")
	if lib == "" {
		Missing(t, "onnxruntime", "MODELSHIP_ORT_LIBRARY names no libonnxruntime.so (source scripts/tools.sh; install_onnxruntime)")
	}
	if _, err := os.Stat(lib); err != nil {
		Missing(t, "onnxruntime", "MODELSHIP_ORT_LIBRARY: "+err.Error())
	}
	return lib
}
