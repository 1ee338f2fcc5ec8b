package serving

import (
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var fastSpec = InputSpec{Name: "input", Features: 4, MaxBatch: 8, Outputs: []string{"probabilities"}}

// The shapes clients send take the fast path; anything unusual is left to the general one.
func TestFastDecodeTakesTheCommonShapesOnly(t *testing.T) {
	common := []string{
		`{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[0,1.5,-2e3,16]}]}`,
		` {"id":"r-1", "inputs": [ {"datatype":"FP32","data":[[1,2,3,4],[5,6,7,8]],"shape":[2,4],"name":"input"} ],
		  "outputs":[{"name":"probabilities"}]}` + "\n",
		`{"inputs":[{"name":"input","shape":[2,4],"datatype":"FP32","data":[1,2,3,4,5,6,7,-0]}],"outputs":[]}`,
	}
	for _, body := range common {
		fast, ok := fastDecode([]byte(body), fastSpec)
		require.True(t, ok, body)
		general, err := decodeGeneral([]byte(body), nil, fastSpec)
		require.NoError(t, err)
		assert.Equal(t, general, fast)
	}
	unusual := map[string]string{
		"escaped id":          `{"id":"a\"b","inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}`,
		"non-ASCII id":        `{"id":"é","inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}`,
		"key in other case":   `{"Inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}`,
		"repeated key":        `{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[1,2,3,4],"data":[5,6,7,8]}]}`,
		"parameters":          `{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[1,2,3,4],"parameters":{}}]}`,
		"binary output":       `{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}],"outputs":[{"name":"probabilities","parameters":{"binary_data":true}}]}`,
		"leading zero":        `{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[01,2,3,4]}]}`,
		"too many values":     `{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[1,2,3,4,5]}]}`,
		"beyond FP32":         `{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[1e39,2,3,4]}]}`,
		"trailing data":       `{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}}`,
		"two inputs":          `{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]},{"name":"input","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}`,
		"null data":           `{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":null}]}`,
		"fractional shape":    `{"inputs":[{"name":"input","shape":[1.0,4],"datatype":"FP32","data":[1,2,3,4]}]}`,
		"rows over the batch": `{"inputs":[{"name":"input","shape":[9,4],"datatype":"FP32","data":[]}]}`,
	}
	for name, body := range unusual {
		_, ok := fastDecode([]byte(body), fastSpec)
		assert.False(t, ok, name)
	}
}

// FuzzFastDecodeAgrees: whatever the fast path accepts, the general path accepts too, with the
// same batch, so the fast path changes speed and nothing else.
func FuzzFastDecodeAgrees(f *testing.F) {
	for _, seed := range []string{
		`{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}`,
		`{"id":"x","inputs":[{"name":"input","shape":[2,4],"datatype":"FP32","data":[[1,2,3,4],[5,6,7,8]]}],"outputs":[{"name":"probabilities"}]}`,
		`{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[1e-7,-0,3.25E+2,0.1]}]}`,
		`{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[3.4028235e38,-3.4028235e38,1e-50,16777217]}]}`,
		`{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}],"id":""}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		fast, ok := fastDecode(body, fastSpec)
		if !ok {
			return
		}
		general, err := decodeGeneral(body, nil, fastSpec)
		if err != nil {
			t.Fatalf("the fast path accepted what the general path refuses (%v): %q", err, body)
		}
		if !equalBatches(fast, general) {
			t.Fatalf("the paths disagree on %q:\nfast    %+v\ngeneral %+v", body, fast, general)
		}
	})
}

// equalBatches compares values by their bits, so that -0 and 0 differ.
func equalBatches(a, b *Batch) bool {
	if a.ID != b.ID || a.Rows != b.Rows || len(a.Data) != len(b.Data) || strings.Join(a.Outputs, ",") != strings.Join(b.Outputs, ",") {
		return false
	}
	for i := range a.Data {
		if math.Float32bits(a.Data[i]) != math.Float32bits(b.Data[i]) {
			return false
		}
	}
	return true
}

// The response encoder writes what encoding/json would, byte for byte.
func TestAppendInferResponseMatchesEncodingJSON(t *testing.T) {
	data := []float32{0, float32(math.Copysign(0, -1)), 1, -1.5, 0.99999976, 4.56573e-13, 1e-6, 9.99e-7,
		1e21, 9.9e20, math.MaxFloat32, math.SmallestNonzeroFloat32, 123456789, 1e-45, 2.5e-10}
	for _, tc := range []struct{ name, version, id string }{
		{"digits", "", ""},
		{"digits", "1.0.0", "req-1"},
		{"naïve <model>", "v&1", "quote \" backslash \\ newline \n tab \t \u2028 control \x01"},
	} {
		want, err := json.Marshal(InferResponse{ModelName: tc.name, ModelVersion: tc.version, ID: tc.id,
			Outputs: []ResponseOutput{{Name: "probabilities", Datatype: "FP32", Shape: []int64{3, 5}, Data: data}}})
		require.NoError(t, err)
		got := appendInferResponse(nil, tc.name, tc.version, tc.id, []responseTensor{{Name: "probabilities", Shape: []int{3, 5}, Data: data}})
		assert.Equal(t, string(want)+"\n", string(got))
	}
}
