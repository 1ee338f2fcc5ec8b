package dataset_test

import (
	"os"
	"testing"

	"github.com/modelship/modelship/internal/ml/dataset"
	"github.com/modelship/modelship/internal/plumbing/projectpath"
)

// FuzzParseFixture: whatever the bytes, the fixture parser never panics; what it accepts is
// valid and renders back to bytes it reads the same way.
func FuzzParseFixture(f *testing.F) {
	shipped, err := os.ReadFile(projectpath.Join(f, "tests/fixtures/digits_validation.json"))
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{string(shipped[:min(len(shipped), 4096)]),
		`{"features":2,"classes":2,"samples":[{"features":[0.5,1],"label":1}]}`,
		`{"features":2,"classes":2,"samples":[{"features":[1e39,1],"label":1}]}`,
		`{"features":64,`, `{}`, `null`, ``} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		fx, err := dataset.ParseFixture(raw)
		if err != nil {
			return
		}
		if err := fx.Validate(); err != nil {
			t.Fatalf("accepted an invalid fixture: %v", err)
		}
		out, err := fx.Marshal()
		if err != nil {
			t.Fatalf("render an accepted fixture: %v", err)
		}
		again, err := dataset.ParseFixture(out)
		if err != nil {
			t.Fatalf("an accepted fixture does not read back: %v\n%s", err, out)
		}
		out2, err := again.Marshal()
		if err != nil || string(out2) != string(out) {
			t.Fatalf("round trip changed the fixture (%v):\n%s\n%s", err, out, out2)
		}
	})
}
