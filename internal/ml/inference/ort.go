//go:build cgo

package inference

import (
	"errors"
	"fmt"
	"os"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

// runtime is the process's one ONNX Runtime environment: onnxruntime_go loads one library
// per process, so every model shares the first library loaded.
var runtime struct {
	sync.Mutex
	library string
	err     error
}

// ORTVersion is the loaded ONNX Runtime's version, or "" before the first ORT model loads.
func ORTVersion() string {
	runtime.Lock()
	defer runtime.Unlock()
	if runtime.library == "" || runtime.err != nil {
		return ""
	}
	return ort.GetVersion()
}

// loadRuntime loads library once; asking for another library afterwards is an error, not a
// silent use of the first.
func loadRuntime(library string) error {
	runtime.Lock()
	defer runtime.Unlock()
	if library == "" {
		return fmt.Errorf("%w: no library named; set MODELSHIP_ORT_LIBRARY (or the server's -ort-library) to libonnxruntime.so of ONNX Runtime 1.24 or later", ErrNoRuntime)
	}
	if runtime.library != "" {
		if runtime.library != library {
			return fmt.Errorf("%w: this process already loaded %s; one library per process, not also %s", ErrNoRuntime, runtime.library, library)
		}
		return runtime.err
	}
	runtime.library = library
	if _, err := os.Stat(library); err != nil {
		runtime.err = fmt.Errorf("%w: library %s: %v", ErrNoRuntime, library, err)
		return runtime.err
	}
	ort.SetSharedLibraryPath(library)
	if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
		runtime.err = fmt.Errorf("%w: load %s (ONNX Runtime 1.24 or later, C API 24): %v", ErrNoRuntime, library, err)
	}
	return runtime.err
}

type ortRunner struct {
	session *ort.DynamicAdvancedSession
}

func newORT(raw []byte, m *Model, library string) (runner, error) {
	if err := loadRuntime(library); err != nil {
		return nil, err
	}
	opts, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("ONNX Runtime session options: %w", err)
	}
	defer func() { _ = opts.Destroy() }()
	// Concurrency comes from requests, one Run each; an intra-op pool per Run would only
	// fight them for the cores.
	if err := errors.Join(opts.SetIntraOpNumThreads(1), opts.SetInterOpNumThreads(1)); err != nil {
		return nil, fmt.Errorf("ONNX Runtime session options: %w", err)
	}
	names := make([]string, len(m.outputs))
	for i, o := range m.outputs {
		names[i] = o.Name
	}
	session, err := ort.NewDynamicAdvancedSessionWithONNXData(raw, []string{m.input.Name}, names, opts)
	if err != nil {
		// ONNX Runtime names the operator or opset it lacks.
		return nil, fmt.Errorf("%w: ONNX Runtime %s cannot load the model: %v", ErrInvalidModel, ort.GetVersion(), err)
	}
	return &ortRunner{session: session}, nil
}

func (r *ortRunner) backend() Backend { return BackendORT }
func (r *ortRunner) close() error     { return r.session.Destroy() }

func (r *ortRunner) run(m *Model, rows int, data []float32) ([]Output, error) {
	in, err := ort.NewTensor(ort.NewShape(int64(rows), int64(m.features)), data)
	if err != nil {
		return nil, fmt.Errorf("run model: input tensor: %w", err)
	}
	defer func() { _ = in.Destroy() }()
	results := make([]ort.Value, len(m.outputs))
	if err := r.session.Run([]ort.Value{in}, results); err != nil {
		return nil, fmt.Errorf("run model: %w", err)
	}
	defer func() {
		for _, v := range results {
			if v != nil {
				_ = v.Destroy()
			}
		}
	}()
	outs := make([]Output, 0, len(m.outputs))
	for i, spec := range m.outputs {
		t, ok := results[i].(*ort.Tensor[float32])
		if !ok {
			return nil, fmt.Errorf("run model: output %q is %T, want a float32 tensor", spec.Name, results[i])
		}
		shape := t.GetShape()
		dims := make([]int, len(shape))
		for j, d := range shape {
			dims[j] = int(d)
		}
		// The tensor's memory is ONNX Runtime's and goes with Destroy.
		outs = append(outs, Output{Name: spec.Name, Shape: dims, Data: append([]float32(nil), t.GetData()...)})
	}
	return outs, nil
}

// RuntimeBuiltIn reports whether this binary has the ONNX Runtime backend (built with cgo).
const RuntimeBuiltIn = true
