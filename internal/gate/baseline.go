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
	"slices"
	"strings"
	"time"

	"github.com/modelship/modelship/internal/ml/dataset"
	"github.com/modelship/modelship/internal/plumbing/atomicfile"
	"github.com/modelship/modelship/internal/plumbing/strictjson"
)

// BaselineSchema is the model_baseline.json format this package reads and writes.
const BaselineSchema = 1

// ErrInvalidBaseline marks a model_baseline.json the gate cannot trust.
var ErrInvalidBaseline = errors.New("invalid baseline")

// Baseline is model_baseline.json: the floors every candidate must meet, the metrics of the
// model in production, and how far a candidate may fall behind it. A baseline belongs to one
// model: gating another against it is refused.
type Baseline struct {
	SchemaVersion int           `json:"schema_version"`
	Model         string        `json:"model"`
	Task          string        `json:"task,omitempty"` // classification when empty
	Floors        Floors        `json:"floors"`
	MaxRegression MaxRegression `json:"max_regression"`
	Production    *Production   `json:"production,omitempty"`
}

// Floors are absolute limits. The classification ones and the regression ones are exclusive;
// a zero turns an optional one off.
type Floors struct {
	Accuracy       float64 `json:"accuracy,omitempty"`         // at least this share correct
	P95LatencyMS   float64 `json:"p95_latency_ms"`             // p95 per-request latency below this
	PerClassRecall float64 `json:"per_class_recall,omitempty"` // every class's recall at least this
	MacroF1        float64 `json:"macro_f1,omitempty"`         // the unweighted mean of the classes' F1 at least this
	MaxMAE         float64 `json:"max_mae,omitempty"`          // mean absolute error at most this
	MaxRMSE        float64 `json:"max_rmse,omitempty"`         // root mean squared error at most this
	MinR2          float64 `json:"min_r2,omitempty"`           // coefficient of determination at least this
}

// MaxRegression bounds how far a candidate may fall behind production; 0 turns a bound off.
type MaxRegression struct {
	Accuracy float64 `json:"accuracy,omitempty"` // candidate accuracy >= production's - this
	MacroF1  float64 `json:"macro_f1,omitempty"` // candidate macro F1 >= production's - this
	MAE      float64 `json:"mae,omitempty"`      // candidate MAE <= production's + this
	RMSE     float64 `json:"rmse,omitempty"`     // candidate RMSE <= production's + this
	R2       float64 `json:"r2,omitempty"`       // candidate R² >= production's - this
}

// Production is the promoted model's identity and metrics.
type Production struct {
	Version      string    `json:"version"`
	GitSHA       string    `json:"git_sha,omitempty"`
	SHA256       string    `json:"sha256,omitempty"`
	Accuracy     float64   `json:"accuracy,omitempty"`
	MacroF1      float64   `json:"macro_f1,omitempty"`
	MAE          float64   `json:"mae,omitempty"`
	RMSE         float64   `json:"rmse,omitempty"`
	R2           float64   `json:"r2,omitempty"`
	P50LatencyMS float64   `json:"p50_latency_ms"`
	P95LatencyMS float64   `json:"p95_latency_ms"`
	P99LatencyMS float64   `json:"p99_latency_ms"`
	PromotedAt   time.Time `json:"promoted_at"`
	PromotedBy   string    `json:"promoted_by,omitempty"`
}

// TaskOf is the baseline's task, with the default filled in.
func (b *Baseline) TaskOf() string {
	if b.Task == "" {
		return dataset.TaskClassification
	}
	return b.Task
}

// Validate says everything wrong with the baseline at once.
func (b *Baseline) Validate() error {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if b.SchemaVersion != BaselineSchema {
		add("schema_version is %d; this modelship reads %d", b.SchemaVersion, BaselineSchema)
	}
	if strings.TrimSpace(b.Model) == "" {
		add("model is empty; name the model this baseline is for")
	}
	if math.IsNaN(b.Floors.P95LatencyMS) || b.Floors.P95LatencyMS <= 0 {
		add("floors.p95_latency_ms is %v; it must be a positive number of milliseconds, e.g. 200", b.Floors.P95LatencyMS)
	}
	switch b.TaskOf() {
	case dataset.TaskClassification:
		problems = append(problems, b.classificationProblems()...)
	case dataset.TaskRegression:
		problems = append(problems, b.regressionProblems()...)
	default:
		add("task is %q; it must be %q or %q", b.Task, dataset.TaskClassification, dataset.TaskRegression)
	}
	if p := b.Production; p != nil {
		if p.Version == "" {
			add("production.version is empty")
		}
		if !unit(p.Accuracy) || !unit(p.MacroF1) {
			add("production accuracy and macro_f1 must be in [0, 1]")
		}
		if !finiteNonNeg(p.MAE) || !finiteNonNeg(p.RMSE) || math.IsNaN(p.R2) || p.R2 > 1 {
			add("production mae and rmse must be finite and not negative, r2 at most 1")
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

func (b *Baseline) classificationProblems() []string {
	var out []string
	f, r := b.Floors, b.MaxRegression
	if !unit(f.Accuracy) || f.Accuracy == 0 {
		out = append(out, fmt.Sprintf("floors.accuracy is %v; it must be in (0, 1], e.g. 0.85", f.Accuracy))
	}
	for name, v := range map[string]float64{"floors.per_class_recall": f.PerClassRecall, "floors.macro_f1": f.MacroF1,
		"max_regression.accuracy": r.Accuracy, "max_regression.macro_f1": r.MacroF1} {
		if !unit(v) {
			out = append(out, fmt.Sprintf("%s is %v; it must be in [0, 1] (0 turns it off)", name, v))
		}
	}
	if f.MaxMAE != 0 || f.MaxRMSE != 0 || f.MinR2 != 0 || r.MAE != 0 || r.RMSE != 0 || r.R2 != 0 {
		out = append(out, "mae, rmse and r2 bounds are for a regression baseline; set \"task\": \"regression\" or remove them")
	}
	slices.Sort(out)
	return out
}

func (b *Baseline) regressionProblems() []string {
	var out []string
	f, r := b.Floors, b.MaxRegression
	if f.MaxMAE == 0 && f.MaxRMSE == 0 && f.MinR2 == 0 {
		out = append(out, "a regression baseline needs at least one of floors.max_mae, floors.max_rmse, floors.min_r2")
	}
	for name, v := range map[string]float64{"floors.max_mae": f.MaxMAE, "floors.max_rmse": f.MaxRMSE,
		"max_regression.mae": r.MAE, "max_regression.rmse": r.RMSE, "max_regression.r2": r.R2} {
		if !finiteNonNeg(v) {
			out = append(out, fmt.Sprintf("%s is %v; it must be a finite number, not negative (0 turns it off)", name, v))
		}
	}
	if math.IsNaN(f.MinR2) || f.MinR2 > 1 {
		out = append(out, fmt.Sprintf("floors.min_r2 is %v; it must be at most 1", f.MinR2))
	}
	if f.Accuracy != 0 || f.PerClassRecall != 0 || f.MacroF1 != 0 || r.Accuracy != 0 || r.MacroF1 != 0 {
		out = append(out, "accuracy, per_class_recall and macro_f1 bounds are for a classification baseline; remove them or set \"task\": \"classification\"")
	}
	slices.Sort(out)
	return out
}

func unit(v float64) bool         { return !math.IsNaN(v) && v >= 0 && v <= 1 }
func finiteNonNeg(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) && v >= 0 }

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
		Accuracy: r.Metrics.Accuracy, MacroF1: r.Metrics.MacroF1, MAE: r.Metrics.MAE, RMSE: r.Metrics.RMSE, R2: r.Metrics.R2,
		P50LatencyMS: r.Metrics.P50LatencyMS, P95LatencyMS: r.Metrics.P95LatencyMS,
		P99LatencyMS: r.Metrics.P99LatencyMS, PromotedAt: now.UTC(), PromotedBy: by}
	return b.Validate()
}
