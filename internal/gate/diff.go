package gate

import (
	"cmp"
	"math"
	"slices"

	"github.com/modelship/modelship/internal/ml/dataset"
)

// maxListed bounds the samples a diff lists by name: the worst, for a person to look at.
const maxListed = 10

// Diff is where the candidate and production disagree on the held-out set, sample by sample:
// a gate that only compares totals hides a candidate that fixes ten samples and breaks ten others.
type Diff struct {
	Production ModelIdentity `json:"production"`
	Samples    int           `json:"samples"`
	// Classification.
	Agreement float64      `json:"agreement,omitempty"` // share of samples given the same class
	Flips     int          `json:"flips,omitempty"`     // samples given another class
	Fixed     int          `json:"fixed,omitempty"`     // flips from wrong to right
	Broken    int          `json:"broken,omitempty"`    // flips from right to wrong
	ByClass   []ClassFlips `json:"by_class,omitempty"`  // per true class
	// Regression.
	MeanAbsChange float64 `json:"mean_abs_change,omitempty"` // mean |candidate - production|
	Worse         int     `json:"worse,omitempty"`           // samples whose absolute error grew
	Better        int     `json:"better,omitempty"`          // samples whose absolute error shrank
	// Both: the worst samples, broken flips first or the largest error growth first.
	Worst []SampleDiff `json:"worst,omitempty"`
	// Latency: the candidate's p95 over production's (measured now, or the baseline's).
	ProductionP95LatencyMS float64 `json:"production_p95_latency_ms,omitempty"`
	P95LatencyRatio        float64 `json:"p95_latency_ratio,omitempty"`
	// Skipped says why there is no diff (no production, or it could not be evaluated).
	Skipped string `json:"skipped,omitempty"`
}

// ClassFlips counts one true class's flips.
type ClassFlips struct {
	Class  int `json:"class"`
	Flips  int `json:"flips"`
	Fixed  int `json:"fixed"`
	Broken int `json:"broken"`
}

// SampleDiff is one sample both models answered differently.
type SampleDiff struct {
	ID          string  `json:"id"`
	Label       int     `json:"label,omitempty"`
	Target      float64 `json:"target,omitempty"`
	Production  float64 `json:"production"` // class or value
	Candidate   float64 `json:"candidate"`
	ErrorChange float64 `json:"error_change,omitempty"` // |candidate error| - |production error|
}

// NewDiff compares the candidate's evaluation with production's on the same fixture, and the
// candidate's p95 latency with prodP95 (production's as measured now, or as its own server
// measured it when promoted; 0 leaves latency out).
func NewDiff(fx *dataset.Fixture, cand, prod *Evaluation, prodID ModelIdentity, prodP95 float64) *Diff {
	d := &Diff{Production: prodID, Samples: cand.Samples}
	if cand.Task == dataset.TaskRegression {
		d.regression(fx, cand, prod)
	} else {
		d.classification(fx, cand, prod)
	}
	if prodP95 > 0 {
		d.ProductionP95LatencyMS = prodP95
		d.P95LatencyRatio = cand.Metrics().P95LatencyMS / prodP95
	}
	return d
}

func (d *Diff) classification(fx *dataset.Fixture, cand, prod *Evaluation) {
	d.ByClass = make([]ClassFlips, fx.Classes)
	for c := range d.ByClass {
		d.ByClass[c].Class = c
	}
	var broken, fixed []SampleDiff
	for i, s := range fx.Samples {
		pc, cc := prod.Classes[i], cand.Classes[i]
		if pc == cc {
			continue
		}
		d.Flips++
		d.ByClass[s.Label].Flips++
		sd := SampleDiff{ID: fx.SampleID(i), Label: s.Label, Production: float64(pc), Candidate: float64(cc)}
		switch {
		case pc == s.Label:
			d.Broken++
			d.ByClass[s.Label].Broken++
			broken = append(broken, sd)
		case cc == s.Label:
			d.Fixed++
			d.ByClass[s.Label].Fixed++
			fixed = append(fixed, sd)
		default:
			broken = append(broken, sd) // wrong both ways: still a change to look at, after the breaks
		}
	}
	d.Agreement = 1 - ratio(d.Flips, d.Samples)
	d.Worst = append(broken, fixed...)[:min(maxListed, len(broken)+len(fixed))]
}

func (d *Diff) regression(fx *dataset.Fixture, cand, prod *Evaluation) {
	var changes []SampleDiff
	for i, s := range fx.Samples {
		pv, cv := prod.Values[i], cand.Values[i]
		d.MeanAbsChange += math.Abs(cv - pv)
		change := math.Abs(cv-s.Target) - math.Abs(pv-s.Target)
		switch {
		case change > 0:
			d.Worse++
		case change < 0:
			d.Better++
		}
		changes = append(changes, SampleDiff{ID: fx.SampleID(i), Target: s.Target, Production: pv, Candidate: cv, ErrorChange: change})
	}
	if len(changes) > 0 {
		d.MeanAbsChange /= float64(len(changes))
	}
	slices.SortStableFunc(changes, func(a, b SampleDiff) int { return cmp.Compare(b.ErrorChange, a.ErrorChange) })
	d.Worst = changes[:min(maxListed, len(changes))]
}
