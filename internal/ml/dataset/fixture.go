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

// The tasks a fixture can hold.
const (
	TaskClassification = "classification"
	TaskRegression     = "regression"
)

// Fixture is the held-out validation set as it is shipped in tests/fixtures/. A classification
// fixture's samples carry "label" (a class 0..classes-1); a regression fixture's carry "target".
type Fixture struct {
	Dataset  string   `json:"dataset"`
	Source   string   `json:"source"`
	License  string   `json:"license"`
	Seed     uint64   `json:"seed"`
	Task     string   `json:"task,omitempty"` // classification when empty
	Features int      `json:"features"`
	Classes  int      `json:"classes,omitempty"`
	Samples  []Sample `json:"samples"`
}

// TaskOf is the fixture's task, with the default filled in.
func (f *Fixture) TaskOf() string {
	if f.Task == "" {
		return TaskClassification
	}
	return f.Task
}

// Validate reports the first thing that makes the fixture unusable for a quality gate.
func (f *Fixture) Validate() error {
	if f.Features <= 0 {
		return fmt.Errorf("features is %d; it must be the model's input width (e.g. 64)", f.Features)
	}
	regression := false
	switch f.TaskOf() {
	case TaskClassification:
		if f.Classes < 2 {
			return fmt.Errorf("classes is %d; a classifier needs at least 2", f.Classes)
		}
	case TaskRegression:
		if f.Classes != 0 {
			return fmt.Errorf("classes is %d; a regression fixture has none (leave it out)", f.Classes)
		}
		regression = true
	default:
		return fmt.Errorf("task is %q; it must be %q or %q", f.Task, TaskClassification, TaskRegression)
	}
	if len(f.Samples) == 0 {
		return errors.New("no samples")
	}
	ids := make(map[string]int, len(f.Samples))
	for i, s := range f.Samples {
		if len(s.Features) != f.Features {
			return fmt.Errorf("sample %d has %d features, want %d", i, len(s.Features), f.Features)
		}
		if s.ID != "" {
			if j, dup := ids[s.ID]; dup {
				return fmt.Errorf("samples %d and %d share the id %q; ids name one sample each", j, i, s.ID)
			}
			ids[s.ID] = i
		}
		if regression {
			if s.Label != 0 {
				return fmt.Errorf("sample %d has a label; a regression sample has a target", i)
			}
			if !finite32(s.Target) {
				return fmt.Errorf("sample %d target is %v, not a finite FP32 value", i, s.Target)
			}
		} else {
			if s.Target != 0 {
				return fmt.Errorf("sample %d has a target; a classification sample has a label", i)
			}
			if s.Label < 0 || s.Label >= f.Classes {
				return fmt.Errorf("sample %d has label %d, want 0..%d", i, s.Label, f.Classes-1)
			}
		}
		for j, v := range s.Features {
			if !finite32(v) {
				return fmt.Errorf("sample %d feature %d is %v, not a finite FP32 value", i, j, v)
			}
		}
	}
	return nil
}

func finite32(v float64) bool {
	return !math.IsNaN(v) && !math.IsInf(v, 0) && math.Abs(v) <= math.MaxFloat32
}

// SampleID is how reports name sample i: its id, else its index.
func (f *Fixture) SampleID(i int) string {
	if id := f.Samples[i].ID; id != "" {
		return id
	}
	return fmt.Sprintf("#%d", i)
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

// classificationSample and regressionSample are a sample as each task writes it: only the
// field the task reads, so a fixture never shows a label of 0 on a regression sample.
type classificationSample struct {
	ID       string    `json:"id,omitempty"`
	Features []float64 `json:"features"`
	Label    int       `json:"label"`
}

type regressionSample struct {
	ID       string    `json:"id,omitempty"`
	Features []float64 `json:"features"`
	Target   float64   `json:"target"`
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
		var row any = classificationSample{ID: s.ID, Features: s.Features, Label: s.Label}
		if f.TaskOf() == TaskRegression {
			row = regressionSample{ID: s.ID, Features: s.Features, Target: s.Target}
		}
		sb, err := json.Marshal(row)
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
