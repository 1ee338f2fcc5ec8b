// Package strictjson decodes the files modelship trusts only when they are exactly what it
// writes: one JSON object, no fields it does not know, nothing after it.
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
)

// Decode fills v from raw, refusing unknown fields and trailing data.
func Decode(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("data after the JSON object")
	}
	return nil
}
