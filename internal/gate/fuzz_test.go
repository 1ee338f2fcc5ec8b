package gate_test

import (
	"encoding/json"
	"errors"
	"os"
	"testing"

	"github.com/modelship/modelship/internal/gate"
	"github.com/modelship/modelship/internal/plumbing/projectpath"
)

// FuzzParseBaseline: whatever the bytes, the baseline parser never panics; it refuses with
// ErrInvalidBaseline, or what it accepts is valid and survives being saved and read again.
func FuzzParseBaseline(f *testing.F) {
	shipped, err := os.ReadFile(projectpath.Join(f, "model_baseline.json"))
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{string(shipped), `{}`, `{"schema_version":1}`, `{"schema_version":1,"model":"m","floors":{"accuracy":2}}`,
		string(shipped) + "}", `[]`, `null`, ``} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		b, err := gate.ParseBaseline(raw)
		if err != nil {
			if !errors.Is(err, gate.ErrInvalidBaseline) {
				t.Fatalf("refusal is not ErrInvalidBaseline: %v", err)
			}
			return
		}
		if err := b.Validate(); err != nil {
			t.Fatalf("accepted an invalid baseline: %v", err)
		}
		out, err := json.Marshal(b)
		if err != nil {
			t.Fatalf("marshal an accepted baseline: %v", err)
		}
		again, err := gate.ParseBaseline(out)
		if err != nil {
			t.Fatalf("an accepted baseline does not read back: %v\n%s", err, out)
		}
		if out2, _ := json.Marshal(again); string(out2) != string(out) {
			t.Fatalf("round trip changed the baseline:\n%s\n%s", out, out2)
		}
	})
}
