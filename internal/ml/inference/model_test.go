package inference_test

import (
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelship/modelship/internal/ml/dataset"
	"github.com/modelship/modelship/internal/ml/inference"
	"github.com/modelship/modelship/internal/plumbing/projectpath"
)

func loadFixture(t testing.TB) *dataset.Fixture {
	t.Helper()
	f, err := dataset.ReadFixture(projectpath.Join(t, "tests/fixtures/digits_validation.json"))
	require.NoError(t, err)
	return f
}

// fixtureBatch is every sample of f as one row-major batch.
func fixtureBatch(f *dataset.Fixture) []float32 {
	data := make([]float32, 0, len(f.Samples)*f.Features)
	for _, s := range f.Samples {
		for _, v := range s.Features {
			data = append(data, float32(v))
		}
	}
	return data
}

func accuracy(t testing.TB, m *inference.Model, f *dataset.Fixture) float64 {
	t.Helper()
	outs, err := m.Infer(len(f.Samples), fixtureBatch(f))
	require.NoError(t, err)
	require.Len(t, outs, 1)
	labels := inference.Argmax(outs[0])
	require.Len(t, labels, len(f.Samples))
	correct := 0
	for i, s := range f.Samples {
		if labels[i] == s.Label {
			correct++
		}
	}
	return float64(correct) / float64(len(f.Samples))
}

func TestReferenceModelIsAccurateAndWeakModelIsNot(t *testing.T) {
	f := loadFixture(t)
	require.GreaterOrEqual(t, len(f.Samples), 450)

	ref, err := inference.Load(projectpath.Join(t, "models/digits-reference.onnx"))
	require.NoError(t, err)
	weak, err := inference.Load(projectpath.Join(t, "models/digits-weak.onnx"))
	require.NoError(t, err)

	refAcc, weakAcc := accuracy(t, ref, f), accuracy(t, weak, f)
	t.Logf("validation accuracy: reference %.4f, weak %.4f", refAcc, weakAcc)
	assert.GreaterOrEqual(t, refAcc, 0.95, "reference model must score >= 0.95")
	assert.Less(t, weakAcc, 0.85, "weak model must fall below the gate's 0.85 floor")
}

func TestModelDescribesItsTensors(t *testing.T) {
	m, err := inference.Load(projectpath.Join(t, "models/digits-reference.onnx"))
	require.NoError(t, err)
	assert.Equal(t, inference.TensorSpec{Name: "input", Datatype: "FP32", Shape: []int64{-1, 64}}, m.Input())
	assert.Equal(t, []inference.TensorSpec{{Name: "probabilities", Datatype: "FP32", Shape: []int64{-1, 10}}}, m.Outputs())
	assert.Equal(t, 64, m.Features())
	assert.Len(t, m.SHA256(), 64)
	assert.Equal(t, "reference", m.Property("variant"))
}

func TestProbabilitiesSumToOne(t *testing.T) {
	m, err := inference.Load(projectpath.Join(t, "models/digits-reference.onnx"))
	require.NoError(t, err)
	outs, err := m.Infer(2, make([]float32, 128))
	require.NoError(t, err)
	require.Equal(t, []int{2, 10}, outs[0].Shape)
	for r := 0; r < 2; r++ {
		sum := float32(0)
		for _, p := range outs[0].Data[r*10 : (r+1)*10] {
			sum += p
		}
		assert.InDelta(t, 1.0, sum, 1e-5)
	}
}

func TestConcurrentInferenceAgreesWithSerial(t *testing.T) {
	f := loadFixture(t)
	m, err := inference.Load(projectpath.Join(t, "models/digits-reference.onnx"))
	require.NoError(t, err)
	want := make([]int, len(f.Samples))
	row := func(i int) []float32 {
		r := make([]float32, f.Features)
		for j, v := range f.Samples[i].Features {
			r[j] = float32(v)
		}
		return r
	}
	for i := range f.Samples {
		outs, err := m.Infer(1, row(i))
		require.NoError(t, err)
		want[i] = inference.Argmax(outs[0])[0]
	}
	var wg sync.WaitGroup
	got := make([]int, len(f.Samples))
	errs := make([]error, len(f.Samples))
	for i := range f.Samples {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs, err := m.Infer(1, row(i))
			if errs[i] = err; err == nil {
				got[i] = inference.Argmax(outs[0])[0]
			}
		}()
	}
	wg.Wait()
	for i := range errs {
		require.NoError(t, errs[i], "sample %d", i)
	}
	assert.Equal(t, want, got)
}

func TestInferRejectsAMismatchedBatch(t *testing.T) {
	m, err := inference.Load(projectpath.Join(t, "models/digits-reference.onnx"))
	require.NoError(t, err)
	_, err = m.Infer(2, make([]float32, 64))
	assert.ErrorContains(t, err, "needs 128 values, got 64")
	_, err = m.Infer(0, nil)
	assert.Error(t, err)
}

func TestLoadRejectsFilesThatAreNotServableModels(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, data, 0o644))
		return p
	}
	cases := map[string]struct {
		path string
		want string
	}{
		"missing":  {filepath.Join(dir, "nope.onnx"), "no such file"},
		"empty":    {write("empty.onnx", nil), "the file is empty"},
		"not onnx": {write("text.onnx", []byte("this is not a protobuf \xff\xff\xff")), "not an ONNX protobuf"},
		"no graph": {write("nograph.onnx", []byte{0x08, 0x07}), "no nodes"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := inference.Load(tc.path)
			require.Error(t, err)
			assert.ErrorContains(t, err, tc.want)
			assert.ErrorContains(t, err, tc.path, "the error names the file")
		})
	}
}

// benchModels loads the reference model on each backend this machine has.
func benchModels(b *testing.B) map[inference.Backend]*inference.Model {
	path := projectpath.Join(b, "models/digits-reference.onnx")
	g, err := inference.LoadWith(path, inference.Options{Backend: inference.BackendGonnx})
	require.NoError(b, err)
	models := map[inference.Backend]*inference.Model{inference.BackendGonnx: g}
	if lib := os.Getenv("MODELSHIP_ORT_LIBRARY"); lib != "" && inference.RuntimeBuiltIn {
		o, err := inference.LoadWith(path, inference.Options{Backend: inference.BackendORT, ORTLibrary: lib})
		require.NoError(b, err)
		b.Cleanup(func() { _ = o.Close() })
		models[inference.BackendORT] = o
	}
	return models
}

func BenchmarkInferSingleRow(b *testing.B) {
	f := loadFixture(b)
	row := make([]float32, f.Features)
	for j, v := range f.Samples[0].Features {
		row[j] = float32(v)
	}
	for backend, m := range benchModels(b) {
		b.Run(string(backend), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := m.Infer(1, row); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkInferBatch64(b *testing.B) {
	data := make([]float32, 64*64)
	for i := range data {
		data[i] = float32(i % 17)
	}
	for backend, m := range benchModels(b) {
		b.Run(string(backend), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := m.Infer(64, data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
