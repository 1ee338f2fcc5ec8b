package gate

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/modelship/modelship/internal/evidence"
	"github.com/modelship/modelship/internal/ml/dataset"
	"github.com/modelship/modelship/internal/plumbing/atomicfile"
)

// Report file names in the report folder.
const (
	ReportJSON       = "quality-report.json"
	ReportMarkdown   = "quality-report.md"
	LatencyChart     = "latency-histogram.svg"
	ConfusionChart   = "confusion-matrix.svg"
	JUnitFile        = "test-results.xml"
	reportSchemaVers = 1
)

// ModelIdentity says which model was gated.
type ModelIdentity struct {
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
	GitSHA  string `json:"git_sha,omitempty"`
	SHA256  string `json:"sha256,omitempty"`
	Source  string `json:"source"` // where it came from: s3://..., a file, or a server URL
}

// Label is name@version, or name and its source when it has no version.
func (m ModelIdentity) Label() string {
	if m.Version != "" {
		return m.Name + "@" + m.Version
	}
	return m.Name + " (" + m.Source + ")"
}

// Report is everything the gate found, written even when the gate fails or cannot run.
type Report struct {
	SchemaVersion int           `json:"schema_version"`
	Passed        bool          `json:"passed"`
	Error         string        `json:"error,omitempty"` // why the gate could not evaluate at all
	Model         ModelIdentity `json:"model"`
	Fixture       string        `json:"fixture"`
	Metrics       Metrics       `json:"metrics"`
	Checks        []Check       `json:"checks"`
	Baseline      *Baseline     `json:"baseline,omitempty"`
	Confusion     [][]int       `json:"confusion_matrix,omitempty"`
	LatenciesMS   []float64     `json:"latencies_ms,omitempty"`
	Diff          *Diff         `json:"diff,omitempty"` // against production, sample by sample
	StartedAt     time.Time     `json:"started_at"`
	DurationMS    float64       `json:"duration_ms"`
}

// NewReport builds the report of a finished evaluation.
func NewReport(model ModelIdentity, fixture string, b *Baseline, ev *Evaluation, started time.Time) *Report {
	r := &Report{SchemaVersion: reportSchemaVers, Model: model, Fixture: fixture, Baseline: b, StartedAt: started.UTC()}
	r.Metrics = ev.Metrics()
	r.Checks = Checks(r.Metrics, b)
	r.Confusion = ev.Confusion
	for _, d := range ev.Latencies {
		r.LatenciesMS = append(r.LatenciesMS, ms(d))
	}
	r.Passed = len(failed(r.Checks)) == 0
	r.DurationMS = ms(time.Since(started))
	return r
}

// FailedReport records a gate that could not evaluate (missing fixtures, no model, no server).
func FailedReport(model ModelIdentity, fixture string, b *Baseline, err error, started time.Time) *Report {
	return &Report{SchemaVersion: reportSchemaVers, Model: model, Fixture: fixture, Baseline: b, Error: err.Error(),
		StartedAt: started.UTC(), DurationMS: ms(time.Since(started))}
}

// FailureSummary says in one line why the gate failed ("" when it passed).
func (r *Report) FailureSummary() string {
	if r.Error != "" {
		return r.Error
	}
	return joinOr(failed(r.Checks), "")
}

// ReadReport reads a quality-report.json.
func ReadReport(path string) (*Report, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read quality report %s: %w", path, err)
	}
	var r Report
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, fmt.Errorf("quality report %s is not valid JSON: %w", path, err)
	}
	if r.SchemaVersion != reportSchemaVers {
		return nil, fmt.Errorf("quality report %s has schema_version %d; want %d", path, r.SchemaVersion, reportSchemaVers)
	}
	return &r, nil
}

// Write puts the JSON and Markdown reports and the two charts in dir.
func (r *Report) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create report folder %s: %w", dir, err)
	}
	raw, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode quality report: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(dir, ReportJSON), append(raw, '\n')); err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(dir, ReportMarkdown), []byte(r.Markdown())); err != nil {
		return err
	}
	if r.Error != "" {
		return nil
	}
	if err := writeLatencyChart(filepath.Join(dir, LatencyChart), r); err != nil {
		return fmt.Errorf("draw %s: %w", LatencyChart, err)
	}
	if len(r.Confusion) == 0 {
		return nil // regression: no classes to confuse
	}
	if err := writeConfusionChart(filepath.Join(dir, ConfusionChart), r.Confusion); err != nil {
		return fmt.Errorf("draw %s: %w", ConfusionChart, err)
	}
	return nil
}

// Markdown is the report as a table, fit for a GitHub step summary or a merge request comment.
func (r *Report) Markdown() string {
	var b strings.Builder
	verdict := "✅ passed"
	if !r.Passed {
		verdict = "❌ failed"
	}
	fmt.Fprintf(&b, "## Quality gate %s: %s\n\n", verdict, r.Model.Label())
	fmt.Fprintf(&b, "Model source: `%s`", r.Model.Source)
	if r.Model.GitSHA != "" {
		fmt.Fprintf(&b, " · git `%s`", r.Model.GitSHA)
	}
	if r.Model.SHA256 != "" {
		fmt.Fprintf(&b, " · sha256 `%.12s`", r.Model.SHA256)
	}
	fmt.Fprintf(&b, "  \nFixtures: `%s` (%d samples) · %s · took %.1f s\n\n", r.Fixture, r.Metrics.Samples, r.StartedAt.Format(time.RFC3339), r.DurationMS/1000)
	if r.Error != "" {
		fmt.Fprintf(&b, "**The gate could not evaluate the model:** %s\n", r.Error)
		return b.String()
	}
	var prod *Production
	if r.Baseline != nil {
		prod = r.Baseline.Production
	}
	b.WriteString("| check | candidate | limit | production | Δ vs production | result |\n|---|---|---|---|---|---|\n")
	for _, c := range r.Checks {
		prodCell, delta := "–", "–"
		if v, ok := prod.metric(c.Name); ok {
			prodCell, delta = fmt.Sprintf("%.4f", v), fmt.Sprintf("%+.4f", c.Value-v)
			if strings.HasSuffix(c.Name, "_ms") {
				prodCell, delta = fmt.Sprintf("%.3f ms", v), fmt.Sprintf("%+.3f ms", c.Value-v)
			}
		}
		value, limit := fmt.Sprintf("%.4f", c.Value), fmt.Sprintf("%s %.4f", c.Op, c.Threshold)
		if strings.HasSuffix(c.Name, "_ms") {
			value, limit = fmt.Sprintf("%.3f ms", c.Value), fmt.Sprintf("%s %.0f ms", c.Op, c.Threshold)
		}
		result := "✅"
		if !c.Passed {
			result = "❌ " + c.Message
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", c.Name, value, limit, prodCell, delta, result)
	}
	m := r.Metrics
	fmt.Fprintf(&b, "\nLatency per request at the client, after warm-up: p50 %.3f ms · p95 %.3f ms · p99 %.3f ms · max %.3f ms.\n\n", m.P50LatencyMS, m.P95LatencyMS, m.P99LatencyMS, m.MaxLatencyMS)
	if m.Task == dataset.TaskRegression {
		fmt.Fprintf(&b, "MAE %.4f · RMSE %.4f · R² %.4f\n\nChart: `%s`.\n", m.MAE, m.RMSE, m.R2, LatencyChart)
	} else {
		fmt.Fprintf(&b, "Macro F1 %.4f.\n\n| class | recall | F1 |\n|---|---|---|\n", m.MacroF1)
		for c, rec := range m.PerClassRecall {
			fmt.Fprintf(&b, "| %d | %.3f | %.3f |\n", c, rec, at(m.PerClassF1, c))
		}
		fmt.Fprintf(&b, "\nCharts: `%s`, `%s`.\n", LatencyChart, ConfusionChart)
	}
	if r.Diff != nil {
		b.WriteString(r.Diff.Markdown())
	}
	return b.String()
}

// metric is production's value of a check's metric, if the baseline records it.
func (p *Production) metric(check string) (float64, bool) {
	if p == nil {
		return 0, false
	}
	v, ok := map[string]float64{"accuracy": p.Accuracy, "accuracy_vs_production": p.Accuracy, "macro_f1": p.MacroF1,
		"macro_f1_vs_production": p.MacroF1, "mae": p.MAE, "mae_vs_production": p.MAE, "rmse": p.RMSE,
		"rmse_vs_production": p.RMSE, "r2": p.R2, "r2_vs_production": p.R2, "p95_latency_ms": p.P95LatencyMS}[check]
	return v, ok && v != 0
}

func at(v []float64, i int) float64 {
	if i < len(v) {
		return v[i]
	}
	return 0
}

// Markdown is the diff's section of the report.
func (d *Diff) Markdown() string {
	var b strings.Builder
	b.WriteString("\n### Against production\n\n")
	if d.Skipped != "" {
		fmt.Fprintf(&b, "No prediction diff: %s.\n", d.Skipped)
		return b.String()
	}
	fmt.Fprintf(&b, "Production: %s (`%s`).", d.Production.Label(), d.Production.Source)
	if d.P95LatencyRatio > 0 {
		fmt.Fprintf(&b, " p95 latency %.2f× production's (%.3f ms).", d.P95LatencyRatio, d.ProductionP95LatencyMS)
	}
	b.WriteString("\n\n")
	if d.ByClass == nil {
		fmt.Fprintf(&b, "Mean |candidate − production| %.4f; the error grew on %d of %d samples and shrank on %d.\n\n", d.MeanAbsChange, d.Worse, d.Samples, d.Better)
		b.WriteString("| sample | target | production | candidate | error change |\n|---|---|---|---|---|\n")
		for _, s := range d.Worst {
			fmt.Fprintf(&b, "| %s | %.4g | %.4g | %.4g | %+.4g |\n", s.ID, s.Target, s.Production, s.Candidate, s.ErrorChange)
		}
		return b.String()
	}
	fmt.Fprintf(&b, "Agreement %.1f%%: %d of %d samples changed class, %d fixed and %d broken.\n\n", d.Agreement*100, d.Flips, d.Samples, d.Fixed, d.Broken)
	if d.Flips == 0 {
		return b.String()
	}
	b.WriteString("| true class | flips | fixed | broken |\n|---|---|---|---|\n")
	for _, c := range d.ByClass {
		if c.Flips > 0 {
			fmt.Fprintf(&b, "| %d | %d | %d | %d |\n", c.Class, c.Flips, c.Fixed, c.Broken)
		}
	}
	b.WriteString("\n| sample | label | production | candidate |\n|---|---|---|---|\n")
	for _, s := range d.Worst {
		fmt.Fprintf(&b, "| %s | %d | %.0f | %.0f |\n", s.ID, s.Label, s.Production, s.Candidate)
	}
	return b.String()
}

// Evidence is the test-quality stage's run record: the model gated, the fixture and baseline
// it was held to, the metrics and verdict.
func (r *Report) Evidence(cfg Config, args []string) *evidence.Record {
	rec := evidence.New("test-quality", "dev", args)
	rec.StartedAt = r.StartedAt
	rec.Model = evidence.Model{Name: r.Model.Name, Version: r.Model.Version, SHA256: r.Model.SHA256}
	rec.Config["baseline"] = cfg.BaselinePath
	rec.Config["fixtures"] = cfg.FixturePath
	rec.Config["report_dir"] = cfg.ReportDir
	rec.Config["config_source"] = "environment (MODELSHIP_*, AWS_*)"
	rec.Inputs["model_source"] = r.Model.Source
	rec.Inputs["git_sha"] = r.Model.GitSHA
	rec.Inputs["model_sha256"] = r.Model.SHA256
	rec.Outputs["passed"] = r.Passed
	rec.Outputs["metrics"] = r.Metrics
	rec.Outputs["checks"] = r.Checks
	rec.Time("evaluate", time.Duration(r.DurationMS*float64(time.Millisecond)))
	var err error
	if !r.Passed {
		err = errors.New(r.FailureSummary())
	}
	rec.Finish(err)
	return rec
}
