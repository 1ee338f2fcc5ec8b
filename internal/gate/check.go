package gate

import (
	"fmt"
	"strings"

	"github.com/modelship/modelship/internal/ml/dataset"
)

// Check is one gate condition and how the candidate did.
type Check struct {
	Name      string  `json:"name"`
	Value     float64 `json:"value"`
	Op        string  `json:"op"` // ">=" or "<"
	Threshold float64 `json:"threshold"`
	Passed    bool    `json:"passed"`
	Message   string  `json:"message"`
}

// Checks applies the baseline to the metrics. Checks whose bound is off are not listed.
func Checks(m Metrics, b *Baseline) []Check {
	var checks []Check
	add := func(name, op string, value, limit float64, what string) {
		c := Check{Name: name, Value: value, Op: op, Threshold: limit}
		switch op {
		case ">=":
			c.Passed = value >= limit
			c.Message = fmt.Sprintf("%s %.4f %s the floor %.4f", what, value, pick(c.Passed, "meets", "is below"), limit)
		case "<=":
			c.Passed = value <= limit
			c.Message = fmt.Sprintf("%s %.4f %s the limit %.4f", what, value, pick(c.Passed, "is within", "is over"), limit)
		case "<":
			c.Passed = value < limit
			c.Message = fmt.Sprintf("%s %.3f ms %s the limit %.3f ms", what, value, pick(c.Passed, "is under", "is not under"), limit)
		}
		checks = append(checks, c)
	}
	f, r, prod := b.Floors, b.MaxRegression, b.Production
	if b.TaskOf() == dataset.TaskRegression {
		if f.MaxMAE > 0 {
			add("mae", "<=", m.MAE, f.MaxMAE, "MAE")
		}
		if f.MaxRMSE > 0 {
			add("rmse", "<=", m.RMSE, f.MaxRMSE, "RMSE")
		}
		if f.MinR2 != 0 {
			add("r2", ">=", m.R2, f.MinR2, "R²")
		}
	} else {
		add("accuracy", ">=", m.Accuracy, f.Accuracy, "accuracy")
		if f.PerClassRecall > 0 {
			add("per_class_recall", ">=", m.MinClassRecall, f.PerClassRecall, fmt.Sprintf("lowest class recall (class %d)", worstClass(m.PerClassRecall)))
		}
		if f.MacroF1 > 0 {
			add("macro_f1", ">=", m.MacroF1, f.MacroF1, "macro F1")
		}
	}
	add("p95_latency_ms", "<", m.P95LatencyMS, f.P95LatencyMS, "p95 latency")
	if prod == nil {
		return checks
	}
	vs := func(metric string, prodValue, allowed float64) string {
		return fmt.Sprintf("%s (production %s has %.4f, allowed %.4f)", metric, prod.Version, prodValue, allowed)
	}
	if r.Accuracy > 0 {
		add("accuracy_vs_production", ">=", m.Accuracy, prod.Accuracy-r.Accuracy, vs("accuracy", prod.Accuracy, r.Accuracy))
	}
	if r.MacroF1 > 0 {
		add("macro_f1_vs_production", ">=", m.MacroF1, prod.MacroF1-r.MacroF1, vs("macro F1", prod.MacroF1, r.MacroF1))
	}
	if r.MAE > 0 {
		add("mae_vs_production", "<=", m.MAE, prod.MAE+r.MAE, vs("MAE", prod.MAE, r.MAE))
	}
	if r.RMSE > 0 {
		add("rmse_vs_production", "<=", m.RMSE, prod.RMSE+r.RMSE, vs("RMSE", prod.RMSE, r.RMSE))
	}
	if r.R2 > 0 {
		add("r2_vs_production", ">=", m.R2, prod.R2-r.R2, vs("R²", prod.R2, r.R2))
	}
	return checks
}

func pick(ok bool, yes, no string) string {
	if ok {
		return yes
	}
	return no
}

func worstClass(recall []float64) int {
	worst := 0
	for i, r := range recall {
		if r < recall[worst] {
			worst = i
		}
	}
	return worst
}

// failed lists the messages of the failed checks.
func failed(checks []Check) []string {
	var out []string
	for _, c := range checks {
		if !c.Passed {
			out = append(out, c.Message)
		}
	}
	return out
}

func joinOr(items []string, none string) string {
	if len(items) == 0 {
		return none
	}
	return strings.Join(items, "; ")
}
