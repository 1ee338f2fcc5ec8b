package analysis

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// Check is one measured value against its limit.
type Check struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Limit float64 `json:"limit"`
	// Op is how Value must compare with Limit to pass: "<=" or ">=".
	Op string `json:"op"`
	// Unit says how to read Value and Limit: "s" (seconds), "x" (a ratio), "bits"
	// (Jensen-Shannon divergence), "std" (standard deviations), "requests", "rows", or "" (a
	// share). An unbounded value (a shift against a constant) is written as math.MaxFloat64,
	// which JSON can carry and +Inf it cannot.
	Unit   string `json:"unit,omitempty"`
	Passed bool   `json:"passed"`
	// Skipped checks pass because there was nothing to measure; Detail says why.
	Skipped bool   `json:"skipped,omitempty"`
	Detail  string `json:"detail,omitempty"`
}

// Verdict is the outcome of one analysis: Passed when every check passed, Inconclusive when
// too little traffic was seen to judge (then neither passed nor failed: wait and look again).
type Verdict struct {
	Passed       bool    `json:"passed"`
	Inconclusive bool    `json:"inconclusive"`
	Checks       []Check `json:"checks"`
}

// Failed are the checks that did not pass.
func (v Verdict) Failed() []Check {
	var out []Check
	for _, c := range v.Checks {
		if !c.Passed {
			out = append(out, c)
		}
	}
	return out
}

// String is the verdict on one line, e.g.
// "failed: error_rate 0.000 <= 0.010 ok; p99 1.2ms <= 200ms ok; drift(js) 0.412 > 0.100 FAILED (psi 2.1)".
func (v Verdict) String() string {
	outcome, mark := "failed", "FAILED"
	switch {
	case v.Inconclusive:
		outcome, mark = "inconclusive", "not yet"
	case v.Passed:
		outcome = "passed"
	}
	parts := make([]string, len(v.Checks))
	for i, c := range v.Checks {
		parts[i] = c.format(mark)
	}
	return outcome + ": " + strings.Join(parts, "; ")
}

// String is the check on its own, as Verdict.String writes it.
func (c Check) String() string { return c.format("FAILED") }

func (c Check) format(failMark string) string {
	if c.Skipped {
		return fmt.Sprintf("%s skipped (%s)", c.Name, c.Detail)
	}
	op, mark := c.Op, "ok"
	if !c.Passed {
		op, mark = negate(c.Op), failMark
	}
	s := fmt.Sprintf("%s %s %s %s %s", c.Name, formatValue(c.Value, c.Unit), op, formatValue(c.Limit, c.Unit), mark)
	if !c.Passed && c.Detail != "" {
		s += " (" + c.Detail + ")"
	}
	return s
}

func negate(op string) string {
	switch op {
	case "<=":
		return ">"
	case ">=":
		return "<"
	}
	return "!" + op
}

func formatValue(v float64, unit string) string {
	if v >= math.MaxFloat64 {
		return "inf"
	}
	switch unit {
	case "s":
		return roundSignificant(seconds(v)).String()
	case "x":
		return fmt.Sprintf("%.2fx", v)
	case "std":
		return fmt.Sprintf("%.2fσ", v)
	case "requests", "rows":
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.3f", v)
}

// roundSignificant keeps three significant digits: 1.234567ms reads as 1.23ms.
func roundSignificant(d time.Duration) time.Duration {
	if d < 1000 {
		return d
	}
	step := time.Duration(math.Pow10(int(math.Floor(math.Log10(float64(d)))) - 2))
	return d.Round(step)
}

// newCheck makes a check of value against limit, keeping both finite for JSON.
func newCheck(name string, value float64, op string, limit float64, unit, detail string) Check {
	value, limit = finite(value), finite(limit)
	passed := value <= limit
	if op == ">=" {
		passed = value >= limit
	}
	return Check{Name: name, Value: value, Limit: limit, Op: op, Unit: unit, Passed: passed, Detail: detail}
}

func skipped(name, detail string) Check {
	return Check{Name: name, Op: "<=", Passed: true, Skipped: true, Detail: detail}
}

func failed(name string, value float64, op string, limit float64, unit, detail string) Check {
	c := newCheck(name, value, op, limit, unit, detail)
	c.Passed = false
	return c
}

func finite(v float64) float64 {
	switch {
	case math.IsInf(v, +1):
		return math.MaxFloat64
	case math.IsInf(v, -1):
		return -math.MaxFloat64
	case math.IsNaN(v):
		return 0
	}
	return v
}

func verdict(checks []Check) Verdict {
	v := Verdict{Passed: true, Checks: checks}
	for _, c := range checks {
		v.Passed = v.Passed && c.Passed
	}
	return v
}

func inconclusive(c Check) Verdict {
	return Verdict{Inconclusive: true, Checks: []Check{c}}
}

// Canary judges a candidate serving part of the traffic against stable serving the rest, from
// their windows over the same period. th should pass Validate. With fewer than MinRequests
// candidate requests the verdict is inconclusive. Otherwise: the candidate's 5xx rate; its p99
// latency, absolute and against stable's; and whether it predicts what stable predicts — the
// Jensen-Shannon divergence of the class distributions (PSI in the detail), or for regression
// the mean shift and variance ratio. The comparison of predictions assumes both receive the
// same kind of traffic, which a random traffic split gives.
func Canary(stable, candidate Window, th Thresholds) Verdict {
	requests := newCheck("requests", candidate.Requests, ">=", float64(th.MinRequests), "requests",
		fmt.Sprintf("candidate answered %.0f inference requests; %d are needed before judging", candidate.Requests, th.MinRequests))
	if !requests.Passed {
		return inconclusive(requests)
	}
	checks := []Check{requests,
		newCheck("error_rate", candidate.ErrorRate(), "<=", th.MaxErrorRate, "",
			fmt.Sprintf("%.0f of %.0f candidate inference requests answered 5xx", candidate.Errors, candidate.Requests)),
	}
	checks = append(checks, latencyChecks("stable", stable, candidate, th)...)
	checks = append(checks, driftChecks("stable", prediction{stable.Classes, stable.Values}, prediction{candidate.Classes, candidate.Values}, th)...)
	return verdict(checks)
}

// Shadow judges a candidate that receives a copy of the live server's traffic. live is the
// window of the live server (its Shadow part counts the mirrored requests and both models'
// predictions on them); candidate is the candidate server's own window, for its latency. Here
// MinRequests counts compared rows, not requests: agreement is per row and one request can
// carry many rows. Rows compared are agree+disagree; a mirror that does not count agreement
// (regression) is judged by the candidate's predicted values instead. Checks: agreement, the
// share of mirrored requests that failed (dropped ones are the mirror's choice, not the
// candidate's fault, and are only reported), drift of the candidate's predictions from live's on
// the same rows, and the candidate's p99 latency, absolute and against the live server's.
func Shadow(live, candidate Window, th Thresholds) Verdict {
	sw := live.Shadow
	compared := sw.Agree + sw.Disagree
	if compared == 0 {
		compared = sw.Candidate.Count
	}
	rows := newCheck("rows", compared, ">=", float64(th.MinRequests), "rows",
		fmt.Sprintf("%.0f mirrored rows compared; %d are needed before judging", compared, th.MinRequests))
	if !rows.Passed {
		return inconclusive(rows)
	}
	checks := []Check{rows}
	if judged := sw.Agree + sw.Disagree; judged > 0 {
		checks = append(checks, newCheck("agreement", sw.Agree/judged, ">=", th.MinAgreement, "",
			fmt.Sprintf("%.0f of %.0f mirrored rows predicted the same by both models", sw.Agree, judged)))
	} else {
		checks = append(checks, skipped("agreement", "the live server counted no agreeing or disagreeing rows"))
	}
	var failRate float64
	if sw.Mirrored > 0 {
		failRate = sw.Failed / sw.Mirrored
	}
	checks = append(checks, newCheck("mirror_errors", failRate, "<=", th.MaxErrorRate, "",
		fmt.Sprintf("%.0f of %.0f mirrored requests failed; %.0f not mirrored (dropped)", sw.Failed, sw.Mirrored, sw.Dropped)))
	checks = append(checks, driftChecks("live", prediction{sw.LiveClasses, sw.Live}, prediction{sw.CandidateClasses, sw.Candidate}, th)...)
	checks = append(checks, latencyChecks("live", live, candidate, th)...)
	return verdict(checks)
}

// latencyChecks are the candidate's p99, against MaxP99 and against the reference's p99.
func latencyChecks(refName string, ref, candidate Window, th Thresholds) []Check {
	if candidate.Latency.Count <= 0 {
		return []Check{failed("p99", 0, "<=", th.MaxP99.Seconds(), "s",
			fmt.Sprintf("no inference latency observations in the candidate's window; does it export %s{handler=%q}?", metricDuration, inferHandler))}
	}
	p99 := candidate.P99()
	checks := []Check{newCheck("p99", p99.Seconds(), "<=", th.MaxP99.Seconds(), "s", "")}
	switch {
	case th.MaxP99Ratio == 0:
		checks = append(checks, skipped("p99_ratio", "off: max_p99_ratio is 0"))
	case ref.Latency.Count <= 0:
		checks = append(checks, skipped("p99_ratio", refName+" has no latency data to compare with"))
	default:
		refP99 := ref.P99()
		base := max(refP99, th.P99RatioFloor)
		detail := fmt.Sprintf("candidate p99 %s vs %s p99 %s", roundSignificant(p99), refName, roundSignificant(refP99))
		if base > refP99 {
			detail += fmt.Sprintf(", counted as %s (p99_ratio_floor)", base)
		}
		checks = append(checks, newCheck("p99_ratio", ratio(p99.Seconds(), base.Seconds()), "<=", th.MaxP99Ratio, "x", detail))
	}
	return checks
}

// prediction is what a model predicted in a window: classes or regression values.
type prediction struct {
	classes []float64
	values  Moments
}

func (p prediction) rows() float64 {
	var n float64
	for _, c := range p.classes {
		n += max(c, 0)
	}
	return n
}

// driftChecks compare what the candidate predicted with what the reference predicted.
func driftChecks(refName string, ref, candidate prediction, th Thresholds) []Check {
	switch {
	case ref.rows() > 0:
		if candidate.rows() == 0 {
			return []Check{failed("drift(js)", 1, "<=", th.MaxDrift, "bits", fmt.Sprintf(
				"%s predicted classes for %.0f rows, the candidate none (does it export %s? is it a regression model?)", refName, ref.rows(), metricPredictions))}
		}
		js := JensenShannon(ref.classes, candidate.classes)
		detail := fmt.Sprintf("psi %.3f; %s %s, candidate %s", PSI(ref.classes, candidate.classes),
			refName, shares(ref.classes), shares(candidate.classes))
		return []Check{newCheck("drift(js)", js, "<=", th.MaxDrift, "bits", detail)}
	case ref.values.Count > 0:
		if candidate.values.Count == 0 {
			return []Check{failed("mean_shift", math.Inf(1), "<=", th.MaxMeanShift, "std", fmt.Sprintf(
				"%s predicted %.0f values, the candidate none (does it export %s? is it a classifier?)", refName, ref.values.Count, metricValuesTotal))}
		}
		mr, mc := ref.values.Mean(), candidate.values.Mean()
		vr, vc := ref.values.Variance(), candidate.values.Variance()
		return []Check{
			newCheck("mean_shift", meanShift(mr, mc, vr), "<=", th.MaxMeanShift, "std",
				fmt.Sprintf("candidate mean %.4g vs %s mean %.4g (std %.4g)", mc, refName, mr, math.Sqrt(vr))),
			newCheck("variance_ratio", max(ratio(vc, vr), ratio(vr, vc)), "<=", th.MaxVarianceRatio, "x",
				fmt.Sprintf("candidate variance %.4g vs %s variance %.4g", vc, refName, vr)),
		}
	}
	return []Check{skipped("drift", refName+" answered nothing to compare with")}
}

// meanShift is |mc - mr| in reference standard deviations: 0 when the means are equal, even
// against a constant reference, and unbounded when a constant reference's mean moved.
func meanShift(mr, mc, vr float64) float64 {
	d := math.Abs(mc - mr)
	if d == 0 {
		return 0
	}
	return ratio(d, math.Sqrt(vr))
}

// ratio is a/b with 0/0 = 1 (equal) and a/0 = +Inf.
func ratio(a, b float64) float64 {
	switch {
	case b > 0:
		return a / b
	case a == 0:
		return 1
	}
	return math.Inf(1)
}

// shares writes a class distribution as proportions, for a check's detail; long ones are
// summarised, a detail is no place for a thousand classes.
func shares(counts []float64) string {
	var total float64
	for _, c := range counts {
		total += max(c, 0)
	}
	if len(counts) > 20 || total == 0 {
		return fmt.Sprintf("%d classes, %.0f rows", len(counts), total)
	}
	parts := make([]string, len(counts))
	for i, c := range counts {
		parts[i] = fmt.Sprintf("%.2f", max(c, 0)/total)
	}
	return "[" + strings.Join(parts, " ") + "]"
}
