package serving

import (
	"bytes"
	"math"
	"slices"
	"strconv"
)

// fastDecode reads the request shape nearly every client sends — one input with name, shape,
// datatype and data (flat or nested), an optional plain id and output names — without
// encoding/json's reflection and per-token allocations. It accepts only requests it is sure of:
// for anything else (an escape in a string, another key, a duplicate key, a value out of place,
// any error at all) it reports false, and DecodeInferRequest takes the general path, which
// gives every refusal its message. So the two paths agree on what is accepted and how
// (FuzzFastDecodeAgrees checks it), and the errors stay those of one implementation.
func fastDecode(body []byte, spec InputSpec) (*Batch, bool) {
	s := scanner{buf: body}
	req, ok := s.request()
	if !ok || !s.atEnd() {
		return nil, false
	}
	rows, ok := req.checkedRows(spec)
	if !ok {
		return nil, false
	}
	data := make([]float32, 0, rows*spec.Features)
	data, ok = decodeDataFast(req.data, rows, spec.Features, data)
	if !ok {
		return nil, false
	}
	for _, o := range req.outputs {
		if !slices.Contains(spec.Outputs, o) {
			return nil, false
		}
	}
	return &Batch{ID: req.id, Rows: rows, Data: data, Outputs: req.outputs}, true
}

// fastRequest is what fastDecode collected before checking it against the model.
type fastRequest struct {
	id             string
	name, datatype []byte
	shape          []int64
	data           []byte // the raw array, checked to hold only numbers, commas and brackets
	outputs        []string
	sawInputs      bool
}

// checkedRows is the row count when the input is what the model takes.
func (r *fastRequest) checkedRows(spec InputSpec) (int, bool) {
	if string(r.name) != spec.Name || string(r.datatype) != "FP32" || r.data == nil || len(r.shape) != 2 {
		return 0, false
	}
	if r.shape[1] != int64(spec.Features) || r.shape[0] < 1 || r.shape[0] > int64(spec.MaxBatch) {
		return 0, false
	}
	return int(r.shape[0]), true
}

// scanner walks a JSON document; every method reports false on anything it does not handle.
type scanner struct {
	buf []byte
	pos int
}

func (s *scanner) skipSpace() {
	for s.pos < len(s.buf) {
		switch s.buf[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// consume skips white space, then the byte c if it is next.
func (s *scanner) consume(c byte) bool {
	s.skipSpace()
	if s.pos < len(s.buf) && s.buf[s.pos] == c {
		s.pos++
		return true
	}
	return false
}

func (s *scanner) atEnd() bool {
	s.skipSpace()
	return s.pos == len(s.buf)
}

// plainString reads a string of printable ASCII without escapes, the only strings whose bytes
// are their value without decoding.
func (s *scanner) plainString() ([]byte, bool) {
	if !s.consume('"') {
		return nil, false
	}
	start := s.pos
	for s.pos < len(s.buf) {
		c := s.buf[s.pos]
		switch {
		case c == '"':
			s.pos++
			return s.buf[start : s.pos-1], true
		case c == '\\' || c < 0x20 || c >= 0x7f:
			return nil, false
		}
		s.pos++
	}
	return nil, false
}

// object reads {"key": value, ...}, calling field for each key; a repeated key is refused
// (encoding/json keeps the last, which one pass cannot know in advance), and so is an object
// of more keys than any this reader knows.
func (s *scanner) object(field func(key []byte) bool) bool {
	if !s.consume('{') {
		return false
	}
	if s.consume('}') {
		return true
	}
	var seen [6][]byte
	for n := 0; ; n++ {
		key, ok := s.plainString()
		if !ok || n == len(seen) || !s.consume(':') {
			return false
		}
		for _, k := range seen[:n] {
			if bytes.Equal(k, key) {
				return false
			}
		}
		seen[n] = key
		if !field(key) {
			return false
		}
		if !s.consume(',') {
			return s.consume('}')
		}
	}
}

// array reads [elem, ...], calling elem for each element.
func (s *scanner) array(elem func() bool) bool {
	if !s.consume('[') {
		return false
	}
	if s.consume(']') {
		return true
	}
	for {
		if !elem() {
			return false
		}
		if s.consume(',') {
			continue
		}
		return s.consume(']')
	}
}

func (s *scanner) request() (*fastRequest, bool) {
	r := &fastRequest{}
	ok := s.object(func(key []byte) bool {
		switch string(key) {
		case "id":
			id, ok := s.plainString()
			r.id = string(id)
			return ok
		case "inputs":
			r.sawInputs = true
			n := 0
			return s.array(func() bool { n++; return n == 1 && s.input(r) })
		case "outputs":
			return s.array(func() bool {
				name, ok := s.output()
				r.outputs = append(r.outputs, name)
				return ok
			})
		}
		return false
	})
	return r, ok && r.sawInputs
}

func (s *scanner) input(r *fastRequest) bool {
	return s.object(func(key []byte) bool {
		var ok bool
		switch string(key) {
		case "name":
			r.name, ok = s.plainString()
		case "datatype":
			r.datatype, ok = s.plainString()
		case "shape":
			ok = s.array(func() bool {
				d, ok := s.dimension()
				r.shape = append(r.shape, d)
				return ok
			})
		case "data":
			r.data, ok = s.numberArray()
		}
		return ok
	})
}

// output reads {"name": "..."}; parameters (binary_data and the like) take the general path.
func (s *scanner) output() (string, bool) {
	var name []byte
	ok := s.object(func(key []byte) bool {
		if string(key) != "name" {
			return false
		}
		var ok bool
		name, ok = s.plainString()
		return ok
	})
	return string(name), ok && name != nil
}

// dimension reads a non-negative integer of at most 9 digits without leading zeros.
func (s *scanner) dimension() (int64, bool) {
	s.skipSpace()
	start := s.pos
	var v int64
	for s.pos < len(s.buf) && s.buf[s.pos] >= '0' && s.buf[s.pos] <= '9' {
		v = v*10 + int64(s.buf[s.pos]-'0')
		s.pos++
	}
	n := s.pos - start
	if n == 0 || n > 9 || (n > 1 && s.buf[start] == '0') {
		return 0, false
	}
	return v, true
}

// numberArray returns the bytes of an array (nested one level at most) holding only what
// numbers, commas, brackets and white space are made of; decodeDataFast checks its grammar.
func (s *scanner) numberArray() ([]byte, bool) {
	s.skipSpace()
	if s.pos >= len(s.buf) || s.buf[s.pos] != '[' {
		return nil, false
	}
	start, depth := s.pos, 0
	for ; s.pos < len(s.buf); s.pos++ {
		switch c := s.buf[s.pos]; c {
		case '[':
			if depth++; depth > 2 {
				return nil, false
			}
		case ']':
			if depth--; depth == 0 {
				s.pos++
				return s.buf[start:s.pos], true
			}
		case ',', ' ', '\t', '\n', '\r', '-', '+', '.', 'e', 'E':
		default:
			if c < '0' || c > '9' {
				return nil, false
			}
		}
	}
	return nil, false
}

// decodeDataFast appends exactly rows × features values from raw, flat or one array per row,
// to out; false for anything else, including a count that does not match.
func decodeDataFast(raw []byte, rows, features int, out []float32) ([]float32, bool) {
	s := scanner{buf: raw}
	want := rows * features
	if !s.consume('[') {
		return nil, false
	}
	s.skipSpace()
	nested := s.pos < len(raw) && raw[s.pos] == '['
	for i := 0; i < rows && nested || i < want && !nested; i++ {
		if i > 0 && !s.consume(',') {
			return nil, false
		}
		var ok bool
		if nested {
			out, ok = s.numbers(features, out)
		} else {
			out, ok = s.number(out)
		}
		if !ok {
			return nil, false
		}
	}
	if !s.consume(']') || !s.atEnd() || len(out) != want {
		return nil, false
	}
	return out, true
}

// numbers reads one row [v, ...] of exactly n values.
func (s *scanner) numbers(n int, out []float32) ([]float32, bool) {
	if !s.consume('[') {
		return nil, false
	}
	for i := range n {
		if i > 0 && !s.consume(',') {
			return nil, false
		}
		var ok bool
		if out, ok = s.number(out); !ok {
			return nil, false
		}
	}
	return out, s.consume(']')
}

// number appends one JSON number within FP32's range, converted as the general path does it
// (to float64, then float32), so both give the same bits.
func (s *scanner) number(out []float32) ([]float32, bool) {
	s.skipSpace()
	start := s.pos
	integer, ok := s.numberGrammar()
	if !ok {
		return nil, false
	}
	lit := s.buf[start:s.pos]
	if v, ok := smallInt(lit); integer && ok {
		return append(out, float32(v)), true
	}
	f, err := strconv.ParseFloat(string(lit), 64)
	if err != nil || math.Abs(f) > math.MaxFloat32 {
		return nil, false
	}
	return append(out, float32(f)), true
}

// numberGrammar moves past -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?, JSON's number
// (strconv.ParseFloat alone would also take "1_0", "0x1p3", "Inf" and "+1"), and says whether
// it was an integer.
func (s *scanner) numberGrammar() (integer, ok bool) {
	b, i := s.buf, s.pos
	digits := func() int {
		n := 0
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
			n++
		}
		return n
	}
	if i < len(b) && b[i] == '-' {
		i++
	}
	intStart := i
	if n := digits(); n == 0 || n > 1 && b[intStart] == '0' {
		return false, false
	}
	integer = true
	if i < len(b) && b[i] == '.' {
		i++
		integer = false
		if digits() == 0 {
			return false, false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		integer = false
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false, false
		}
	}
	s.pos = i
	return integer, true
}

// smallInt is the value of an integer literal (one numberGrammar passed) of up to 7 digits,
// exact in a float32: the common case of pixel-like features, without a call to strconv. "-0"
// stays a negative zero.
func smallInt(lit []byte) (float64, bool) {
	neg := len(lit) > 0 && lit[0] == '-'
	digits := lit
	if neg {
		digits = lit[1:]
	}
	if len(digits) == 0 || len(digits) > 7 {
		return 0, false
	}
	v := 0.0
	for _, c := range digits {
		v = v*10 + float64(c-'0')
	}
	if neg {
		v = -v
	}
	return v, true
}
