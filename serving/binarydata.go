package serving

import (
	"encoding/binary"
	"encoding/json"
	"math"
)

// binaryDataSize is the input's binary_data_size parameter: how many bytes of the body's binary
// part are its values.
func binaryDataSize(in RequestInput) (size int, ok bool, err error) {
	v, ok := in.Parameters["binary_data_size"]
	if !ok {
		return 0, false, nil
	}
	f, isNumber := v.(float64)
	if !isNumber || f < 0 || f != math.Trunc(f) || f > math.MaxInt32 {
		raw, _ := json.Marshal(v) // a value decoded from JSON encodes
		return 0, false, badRequest("input %q has binary_data_size %s; it must be a byte count", in.Name, raw)
	}
	return int(f), true, nil
}

// decodeBinaryData reads rows × features little-endian FP32 values, refusing NaN and infinities
// as "data" does: the model's answer to them is no answer.
func decodeBinaryData(raw []byte, size, rows, features int) ([]float32, error) {
	want := rows * features
	if size != 4*want {
		return nil, badRequest("input binary_data_size is %d bytes; shape [%d, %d] of FP32 needs %d", size, rows, features, 4*want)
	}
	if len(raw) != size {
		return nil, badRequest("the body has %d bytes after its JSON; binary_data_size says %d", len(raw), size)
	}
	out := make([]float32, want)
	for i := range out {
		v := math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return nil, badRequest("input value %d (row %d, feature %d) is %v, not a finite FP32 number", i, i/features, i%features, v)
		}
		out[i] = v
	}
	return out, nil
}
