package main

import (
	"fmt"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/modelship/modelship/internal/deploy"
	"github.com/modelship/modelship/internal/deploy/analysis"
)

// rolloutFlags are how a deploy takes traffic: at once, or as a canary or shadow judged
// against the live release.
type rolloutFlags struct {
	strategy   string
	steps      []int
	duration   time.Duration
	maxWait    time.Duration
	sample     float64
	thresholds analysis.Thresholds
}

func (r *rolloutFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	def := analysis.DefaultThresholds()
	fl.StringVar(&r.strategy, "strategy", envOr("MODELSHIP_STRATEGY", string(deploy.StrategyDirect)),
		"how the release takes traffic: direct (all at once once verified), canary (weighted steps, each analysed) or shadow (mirrored requests compared, then promoted or refused) (MODELSHIP_STRATEGY)")
	fl.IntSliceVar(&r.steps, "steps", deploy.DefaultSteps, "canary: the candidate's traffic percentages, increasing; 100 follows the last")
	fl.DurationVar(&r.duration, "duration", time.Minute, "how long each canary step, or the shadow, is watched before its analysis")
	fl.DurationVar(&r.maxWait, "max-wait", 0, "how long a step may go on while too little traffic came to judge it (--min-requests); then it fails (default 5 × --duration)")
	fl.Float64Var(&r.sample, "shadow-sample", 1, "shadow: the share of live requests mirrored to the candidate, in (0, 1]")
	fl.IntVar(&r.thresholds.MinRequests, "min-requests", def.MinRequests, "requests (shadow: mirrored rows) the candidate must see before a step is judged")
	fl.Float64Var(&r.thresholds.MaxErrorRate, "max-error-rate", def.MaxErrorRate, "largest share of the candidate's inference requests that may fail (5xx)")
	fl.DurationVar(&r.thresholds.MaxP99, "max-p99", def.MaxP99, "largest p99 inference latency the candidate may show")
	fl.Float64Var(&r.thresholds.MaxP99Ratio, "max-p99-ratio", def.MaxP99Ratio, "the candidate's p99 may be at most this many times stable's (0: off)")
	fl.DurationVar(&r.thresholds.P99RatioFloor, "p99-ratio-floor", def.P99RatioFloor, "stable p99s below this count as this in --max-p99-ratio, so sub-millisecond noise fails nothing")
	fl.Float64Var(&r.thresholds.MaxDrift, "max-drift", def.MaxDrift, "largest Jensen-Shannon divergence (base 2, 0-1) of the candidate's predicted classes from stable's")
	fl.Float64Var(&r.thresholds.MaxMeanShift, "max-mean-shift", def.MaxMeanShift, "regression: largest shift of the mean prediction, in stable's standard deviations")
	fl.Float64Var(&r.thresholds.MaxVarianceRatio, "max-variance-ratio", def.MaxVarianceRatio, "regression: largest ratio between the two versions' prediction variances")
	fl.Float64Var(&r.thresholds.MinAgreement, "min-agreement", def.MinAgreement, "shadow: smallest share of mirrored rows on which the candidate must predict what live did")
}

// progressive is the rollout the flags ask for; nil for a direct deploy.
func (r *rolloutFlags) progressive() (*deploy.Progressive, error) {
	s := deploy.Strategy(r.strategy)
	if !slices.Contains(deploy.Strategies, s) {
		return nil, usageError{fmt.Errorf("--strategy %q: use %v", r.strategy, deploy.Strategies)}
	}
	if s == deploy.StrategyDirect {
		return nil, nil
	}
	p := deploy.Progressive{Strategy: s, Steps: r.steps, Interval: r.duration, MaxWait: r.maxWait, Sample: r.sample, Thresholds: r.thresholds}.WithDefaults()
	if err := p.Validate(); err != nil {
		return nil, usageError{err}
	}
	return &p, nil
}
