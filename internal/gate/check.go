package gate

import (
	"fmt"
	"strings"
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
	atLeast := func(name string, value, floor float64, what string) {
		c := Check{Name: name, Value: value, Op: ">=", Threshold: floor, Passed: value >= floor}
		if c.Passed {
			c.Message = fmt.Sprintf("%s %.4f meets the floor %.4f", what, value, floor)
		} else {
			c.Message = fmt.Sprintf("%s %.4f is below the floor %.4f", what, value, floor)
		}
		checks = append(checks, c)
	}
	atLeast("accuracy", m.Accuracy, b.Floors.Accuracy, "accuracy")
	p95 := Check{Name: "p95_latency_ms", Value: m.P95LatencyMS, Op: "<", Threshold: b.Floors.P95LatencyMS, Passed: m.P95LatencyMS < b.Floors.P95LatencyMS}
	if p95.Passed {
		p95.Message = fmt.Sprintf("p95 latency %.3f ms is under the limit %.3f ms", m.P95LatencyMS, b.Floors.P95LatencyMS)
	} else {
		p95.Message = fmt.Sprintf("p95 latency %.3f ms is not under the limit %.3f ms", m.P95LatencyMS, b.Floors.P95LatencyMS)
	}
	checks = append(checks, p95)
	if b.Floors.PerClassRecall > 0 {
		atLeast("per_class_recall", m.MinClassRecall, b.Floors.PerClassRecall, fmt.Sprintf("lowest class recall (class %d)", worstClass(m.PerClassRecall)))
	}
	if b.Production != nil && b.MaxRegression.Accuracy > 0 {
		floor := b.Production.Accuracy - b.MaxRegression.Accuracy
		atLeast("accuracy_vs_production", m.Accuracy, floor,
			fmt.Sprintf("accuracy (production %s has %.4f, allowed drop %.4f)", b.Production.Version, b.Production.Accuracy, b.MaxRegression.Accuracy))
	}
	return checks
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
