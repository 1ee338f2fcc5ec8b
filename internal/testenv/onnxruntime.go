package testenv

import (
	"fmt"
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
	return ORTLibraryFile(t)
}

// ORTLibraryFile is the library file alone, for tests that put it in an image rather than load
// it (they need no cgo of their own).
func ORTLibraryFile(t testing.TB) string {
	t.Helper()
	lib := os.Getenv("MODELSHIP_ORT_LIBRARY")
	if lib == "" {
		Missing(t, "onnxruntime", "MODELSHIP_ORT_LIBRARY names no libonnxruntime.so (source scripts/tools.sh; install_onnxruntime)")
	}
	if st, err := os.Stat(lib); err != nil || !st.Mode().IsRegular() {
		Missing(t, "onnxruntime", fmt.Sprintf("MODELSHIP_ORT_LIBRARY=%q names no ONNX Runtime library file: %v", lib, err))
	}
	return lib
}
