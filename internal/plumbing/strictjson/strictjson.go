// Package strictjson decodes the files modelship trusts only when they are exactly what it
// writes: one JSON object, no fields it does not know, nothing after it.
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
)

// ErrTrailingData is a document with something after its one JSON value.
var ErrTrailingData = errors.New("data after the JSON object")

// Decode fills v from raw, refusing unknown fields and trailing data.
func Decode(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	return AtEnd(dec)
}

// AtEnd says whether dec has read all of its input but white space. Decoder.More alone is not
// enough: it reports false before a stray '}' or ']', so `{...}}junk` would pass.
func AtEnd(dec *json.Decoder) error {
	if _, err := dec.Token(); err != io.EOF {
		return ErrTrailingData
	}
	return nil
}
