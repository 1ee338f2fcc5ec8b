package dataset

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"

	"github.com/modelship/modelship/internal/plumbing/strictjson"
)

// Fixture is the held-out validation set as it is shipped in tests/fixtures/.
type Fixture struct {
	Dataset  string   `json:"dataset"`
	Source   string   `json:"source"`
	License  string   `json:"license"`
	Seed     uint64   `json:"seed"`
	Features int      `json:"features"`
	Classes  int      `json:"classes"`
	Samples  []Sample `json:"samples"`
}

// Validate reports the first thing that makes the fixture unusable for a quality gate.
func (f *Fixture) Validate() error {
	if f.Features <= 0 {
		return fmt.Errorf("features is %d; it must be the model's input width (e.g. 64)", f.Features)
	}
	if f.Classes < 2 {
		return fmt.Errorf("classes is %d; a classifier needs at least 2", f.Classes)
	}
	if len(f.Samples) == 0 {
		return errors.New("no samples")
	}
	for i, s := range f.Samples {
		if len(s.Features) != f.Features {
			return fmt.Errorf("sample %d has %d features, want %d", i, len(s.Features), f.Features)
		}
		if s.Label < 0 || s.Label >= f.Classes {
			return fmt.Errorf("sample %d has label %d, want 0..%d", i, s.Label, f.Classes-1)
		}
		for j, v := range s.Features {
			if math.IsNaN(v) || math.IsInf(v, 0) || math.Abs(v) > math.MaxFloat32 {
				return fmt.Errorf("sample %d feature %d is %v, not a finite FP32 value", i, j, v)
			}
		}
	}
	return nil
}

// ReadFixture reads and validates a fixture file.
func ReadFixture(path string) (*Fixture, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read validation fixture %s: %w", path, err)
	}
	f, err := ParseFixture(raw)
	if err != nil {
		return nil, fmt.Errorf("%w (validation fixture %s)", err, path)
	}
	return f, nil
}

// ParseFixture decodes and validates a fixture's bytes.
func ParseFixture(raw []byte) (*Fixture, error) {
	var f Fixture
	if err := strictjson.Decode(raw, &f); err != nil {
		return nil, fmt.Errorf("parse validation fixture: %w", err)
	}
	if err := f.Validate(); err != nil {
		return nil, err
	}
	return &f, nil
}

// Marshal renders the fixture one sample per line, so a diff of a regenerated fixture reads well.
func (f *Fixture) Marshal() ([]byte, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	head := *f
	head.Samples = nil
	var buf bytes.Buffer
	hb, err := json.Marshal(head)
	if err != nil {
		return nil, err
	}
	// Re-open the header object so the samples can be written one per line.
	buf.Write(bytes.TrimSuffix(hb, []byte("null}")))
	buf.WriteString("[\n")
	for i, s := range f.Samples {
		sb, err := json.Marshal(s)
		if err != nil {
			return nil, err
		}
		buf.WriteString("  ")
		buf.Write(sb)
		if i < len(f.Samples)-1 {
			buf.WriteByte(',')
		}
		buf.WriteByte('\n')
	}
	buf.WriteString("]}\n")
	return buf.Bytes(), nil
}
