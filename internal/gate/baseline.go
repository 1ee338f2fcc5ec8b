// Package gate is the quality gate: the floors a candidate model must meet (from
// model_baseline.json), the evaluation of a running model server on the validation fixtures,
// the checks, and the reports a person reads.
package gate

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"time"

	"github.com/modelship/modelship/internal/plumbing/atomicfile"
	"github.com/modelship/modelship/internal/plumbing/strictjson"
)

// BaselineSchema is the model_baseline.json format this package reads and writes.
const BaselineSchema = 1

// ErrInvalidBaseline marks a model_baseline.json the gate cannot trust.
var ErrInvalidBaseline = errors.New("invalid baseline")

// Baseline is model_baseline.json: the floors every candidate must meet, the metrics of the
// model in production, and how far a candidate may fall behind it.
type Baseline struct {
	SchemaVersion int           `json:"schema_version"`
	Model         string        `json:"model"`
	Floors        Floors        `json:"floors"`
	MaxRegression MaxRegression `json:"max_regression"`
	Production    *Production   `json:"production,omitempty"`
}

// Floors are absolute limits.
type Floors struct {
	Accuracy       float64 `json:"accuracy"`                   // at least this share correct
	P95LatencyMS   float64 `json:"p95_latency_ms"`             // p95 per-request latency below this
	PerClassRecall float64 `json:"per_class_recall,omitempty"` // every class's recall at least this; 0 is off
}

// MaxRegression bounds the drop against production; 0 turns a bound off.
type MaxRegression struct {
	Accuracy float64 `json:"accuracy,omitempty"` // candidate accuracy >= production accuracy - this
}

// Production is the promoted model's identity and metrics.
type Production struct {
	Version      string    `json:"version"`
	GitSHA       string    `json:"git_sha,omitempty"`
	SHA256       string    `json:"sha256,omitempty"`
	Accuracy     float64   `json:"accuracy"`
	P50LatencyMS float64   `json:"p50_latency_ms"`
	P95LatencyMS float64   `json:"p95_latency_ms"`
	P99LatencyMS float64   `json:"p99_latency_ms"`
	PromotedAt   time.Time `json:"promoted_at"`
	PromotedBy   string    `json:"promoted_by,omitempty"`
}

// Validate says everything wrong with the baseline at once.
func (b *Baseline) Validate() error {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	unit := func(v float64) bool { return !math.IsNaN(v) && v >= 0 && v <= 1 }
	if b.SchemaVersion != BaselineSchema {
		add("schema_version is %d; this modelship reads %d", b.SchemaVersion, BaselineSchema)
	}
	if strings.TrimSpace(b.Model) == "" {
		add("model is empty; name the model this baseline is for")
	}
	if !unit(b.Floors.Accuracy) || b.Floors.Accuracy == 0 {
		add("floors.accuracy is %v; it must be in (0, 1], e.g. 0.85", b.Floors.Accuracy)
	}
	if math.IsNaN(b.Floors.P95LatencyMS) || b.Floors.P95LatencyMS <= 0 {
		add("floors.p95_latency_ms is %v; it must be a positive number of milliseconds, e.g. 200", b.Floors.P95LatencyMS)
	}
	if !unit(b.Floors.PerClassRecall) {
		add("floors.per_class_recall is %v; it must be in [0, 1] (0 turns it off)", b.Floors.PerClassRecall)
	}
	if !unit(b.MaxRegression.Accuracy) {
		add("max_regression.accuracy is %v; it must be in [0, 1] (0 turns it off)", b.MaxRegression.Accuracy)
	}
	if p := b.Production; p != nil {
		if p.Version == "" {
			add("production.version is empty")
		}
		if !unit(p.Accuracy) {
			add("production.accuracy is %v; it must be in [0, 1]", p.Accuracy)
		}
		if p.P95LatencyMS < 0 || p.P50LatencyMS < 0 || p.P99LatencyMS < 0 {
			add("production latencies must not be negative")
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalidBaseline, strings.Join(problems, "; "))
	}
	return nil
}

// LoadBaseline reads and validates model_baseline.json.
func LoadBaseline(path string) (*Baseline, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read baseline %s: %w", path, err)
	}
	b, err := ParseBaseline(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return b, nil
}

// ParseBaseline decodes and validates a baseline's bytes: one JSON object, no unknown fields.
func ParseBaseline(raw []byte) (*Baseline, error) {
	var b Baseline
	if err := strictjson.Decode(raw, &b); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidBaseline, err)
	}
	if err := b.Validate(); err != nil {
		return nil, err
	}
	return &b, nil
}

// Save writes the baseline atomically (a reader never sees half a file).
func (b *Baseline) Save(path string) error {
	if err := b.Validate(); err != nil {
		return err
	}
	raw, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(path, append(raw, '\n'))
}

// ErrNotPromotable is returned when a report cannot become the production baseline.
var ErrNotPromotable = errors.New("report cannot be promoted")

// Promote makes a passing report's candidate the production baseline. The floors and bounds
// stay as they are: only a person editing the file changes them.
func (b *Baseline) Promote(r *Report, by string, now time.Time) error {
	if !r.Passed {
		return fmt.Errorf("%w: the gate failed for %s (%s); only a passing candidate becomes the baseline", ErrNotPromotable, r.Model.Label(), r.FailureSummary())
	}
	if r.Model.Name != b.Model {
		return fmt.Errorf("%w: the report is for model %q, the baseline for %q", ErrNotPromotable, r.Model.Name, b.Model)
	}
	if r.Model.Version == "" {
		return fmt.Errorf("%w: the report's model has no version; gate a registry version to promote it", ErrNotPromotable)
	}
	b.Production = &Production{Version: r.Model.Version, GitSHA: r.Model.GitSHA, SHA256: r.Model.SHA256,
		Accuracy: r.Metrics.Accuracy, P50LatencyMS: r.Metrics.P50LatencyMS, P95LatencyMS: r.Metrics.P95LatencyMS,
		P99LatencyMS: r.Metrics.P99LatencyMS, PromotedAt: now.UTC(), PromotedBy: by}
	return b.Validate()
}
