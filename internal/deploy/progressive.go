package deploy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/modelship/modelship/internal/deploy/analysis"
	"github.com/modelship/modelship/internal/deploystate"
	"github.com/modelship/modelship/internal/notify"
)

// Strategy is how a verified release takes traffic.
type Strategy string

// Strategies.
const (
	// StrategyDirect gives a verified release all the traffic at once: blue-green on
	// Kubernetes, a swap of the published port on Docker.
	StrategyDirect Strategy = "direct"
	// StrategyCanary moves traffic to the candidate in weighted steps, analysing both versions'
	// metrics after each, and promotes or aborts by itself.
	StrategyCanary Strategy = "canary"
	// StrategyShadow mirrors a sample of live requests to the candidate, which answers none of
	// them, compares the two versions' predictions, then promotes or refuses.
	StrategyShadow Strategy = "shadow"
)

// Strategies lists them for flags and messages.
var Strategies = []Strategy{StrategyDirect, StrategyCanary, StrategyShadow}

// Errors of a progressive rollout.
var (
	// ErrRolloutAborted: a canary step failed its analysis; stable has all the traffic again.
	ErrRolloutAborted = errors.New("canary aborted")
	// ErrShadowRefused: the shadow analysis failed; the candidate never took traffic.
	ErrShadowRefused = errors.New("shadow candidate refused")
	// ErrStrategyUnsupported: the target cannot roll out this way.
	ErrStrategyUnsupported = errors.New("strategy not supported by this target")
)

// Progressive configures a canary or shadow rollout.
type Progressive struct {
	Strategy Strategy
	// Steps are the canary's traffic percentages, increasing, each 1-99; 100 follows the last
	// passed step. Default 10, 25, 50.
	Steps []int
	// Interval is how long each canary step, or the shadow, is watched before its analysis.
	Interval time.Duration
	// MaxWait is how long a step may go on while too little traffic came to judge it
	// (Thresholds.MinRequests); then it fails. Default 5 × Interval.
	MaxWait time.Duration
	// Sample is the share of live requests a shadow gets mirrored (default 1).
	Sample     float64
	Thresholds analysis.Thresholds
}

// DefaultSteps are the canary's weights when none are given.
var DefaultSteps = []int{10, 25, 50}

// WithDefaults fills in what p leaves empty.
func (p Progressive) WithDefaults() Progressive {
	if p.Strategy == StrategyCanary && len(p.Steps) == 0 {
		p.Steps = slices.Clone(DefaultSteps)
	}
	if p.Interval <= 0 {
		p.Interval = time.Minute
	}
	if p.MaxWait <= 0 {
		p.MaxWait = 5 * p.Interval
	}
	if p.Sample == 0 {
		p.Sample = 1
	}
	return p
}

// Validate checks a progressive rollout's settings, naming the flag to change.
func (p Progressive) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidRollout, fmt.Sprintf(format, args...))
	}
	switch p.Strategy {
	case StrategyCanary, StrategyShadow:
	default:
		return bad("strategy %q: use %s or %s for a progressive rollout", p.Strategy, StrategyCanary, StrategyShadow)
	}
	for i, w := range p.Steps {
		if w < 1 || w > 99 || (i > 0 && w <= p.Steps[i-1]) {
			return bad("--steps %v: each step is a traffic percentage 1-99, increasing (100 follows the last)", p.Steps)
		}
	}
	if p.MaxWait < p.Interval {
		return bad("--max-wait %s is shorter than --interval %s", p.MaxWait, p.Interval)
	}
	if p.Sample <= 0 || p.Sample > 1 {
		return bad("--shadow-sample %g: the share of live requests mirrored, in (0, 1]", p.Sample)
	}
	if err := p.Thresholds.Validate(); err != nil {
		return bad("%v", err)
	}
	return nil
}

// ErrInvalidRollout marks progressive settings that cannot run.
var ErrInvalidRollout = errors.New("invalid rollout settings")

// Observed is a candidate beside the stable release whose servers' metrics can be read.
type Observed interface {
	// Scrape reads the metrics of every stable and every candidate server now.
	Scrape(ctx context.Context) (stable, candidate *analysis.Snapshot, err error)
	// Promote gives the candidate all the traffic, verified, and returns what serves now.
	Promote(ctx context.Context) (*Result, error)
	// Abort puts back the stable release alone at once and removes the candidate; it returns
	// cause, annotated with what it restored or could not.
	Abort(ctx context.Context, cause error) error
}

// Canary is a candidate whose share of the traffic can be set.
type Canary interface {
	Observed
	// Shift gives the candidate about weight percent of the traffic, once it is ready to take
	// it, and returns the share it really has (replica ratios round).
	Shift(ctx context.Context, weight int) (float64, error)
}

// CanaryTarget is a target that runs canaries.
type CanaryTarget interface {
	Target
	// StartCanary runs and verifies (readiness, smoke) the candidate beside the live release,
	// taking no traffic yet. The result says what runs and carries the steps so far.
	StartCanary(ctx context.Context, rel Release) (Canary, *Result, error)
}

// ShadowTarget is a target that runs shadows.
type ShadowTarget interface {
	Target
	// StartShadow runs and verifies the candidate and has the live servers mirror the sample
	// share of their requests to it.
	StartShadow(ctx context.Context, rel Release, sample float64) (Observed, *Result, error)
}

// progressive runs req's canary or shadow (its settings defaulted) on the target: each step watched and analysed,
// recorded in rec and notified; it returns what serves at the end and the error that stopped
// it (ErrRolloutAborted, ErrShadowRefused, or a failure of the target).
func (deps Deps) progressive(ctx context.Context, req DeployRequest, stable deploystate.Deployment, rec *deploystate.Rollout) (*Result, error) {
	p := *req.Progressive
	event := func(kind notify.Kind, msg string) {
		deps.notify(ctx, notify.Event{Kind: kind, Environment: req.Environment, Image: req.Release.Image, GitSHA: req.Release.GitSHA,
			Model: req.Release.ModelName + "@" + req.Release.ModelVersion, Message: msg})
	}
	event(notify.RolloutStarted, fmt.Sprintf("%s of %s@%s (git %.12s) against %s started", p.Strategy, req.Release.ModelName, req.Release.ModelVersion, req.Release.GitSHA, stable.Image))
	var obs Observed
	var res *Result
	var err error
	var shift func(ctx context.Context, weight int) (float64, error)
	judge := analysis.Canary
	weights := p.Steps
	fail := ErrRolloutAborted
	switch p.Strategy {
	case StrategyCanary:
		t, ok := deps.Target.(CanaryTarget)
		if !ok {
			return nil, fmt.Errorf("%w: %s runs no canary; use --strategy shadow or direct", ErrStrategyUnsupported, deps.Target.Name())
		}
		var c Canary
		c, res, err = t.StartCanary(ctx, req.Release)
		if c != nil {
			obs, shift = c, c.Shift
		}
	case StrategyShadow:
		t, ok := deps.Target.(ShadowTarget)
		if !ok {
			return nil, fmt.Errorf("%w: %s runs no shadow; use --strategy canary or direct", ErrStrategyUnsupported, deps.Target.Name())
		}
		obs, res, err = t.StartShadow(ctx, req.Release, p.Sample)
		judge, weights, fail = analysis.Shadow, []int{0}, ErrShadowRefused
		shift = func(context.Context, int) (float64, error) { return 0, nil }
	}
	if err != nil {
		return res, err
	}
	for i, w := range weights {
		step := deploystate.RolloutStep{Weight: w, StartedAt: time.Now().UTC()}
		start := time.Now()
		step.EffectiveWeight, err = shift(ctx, w)
		var verdict analysis.Verdict
		if err == nil {
			verdict, err = watch(ctx, obs, p, judge)
		}
		step.Seconds = time.Since(start).Seconds()
		step.Passed, step.Inconclusive, step.Checks = verdict.Passed, verdict.Inconclusive, checks(verdict)
		if p.Strategy == StrategyShadow {
			step.Mirrored = p.Sample
		}
		rec.Steps = append(rec.Steps, step)
		res.Steps = append(res.Steps, Step{Name: stepName(p.Strategy, w), Duration: time.Since(start), Status: status(err == nil && verdict.Passed)})
		if err != nil {
			return res, obs.Abort(ctx, fmt.Errorf("%s step %d (%d%%): %w", p.Strategy, i+1, w, err))
		}
		event(notify.RolloutStep, fmt.Sprintf("%s %s: %s", stepName(p.Strategy, w), passedWord(verdict), verdict))
		if !verdict.Passed {
			rec.Reason = fmt.Sprintf("%s: %s", stepName(p.Strategy, w), failedChecks(verdict))
			return res, obs.Abort(ctx, fmt.Errorf("%w at %s: %s; %s keeps all the traffic", fail, stepName(p.Strategy, w), failedChecks(verdict), stable.Image))
		}
	}
	promoted, err := obs.Promote(ctx)
	if promoted != nil {
		promoted.Steps = append(res.Steps, promoted.Steps...)
		res = promoted
	}
	return res, err
}

// watch reads both versions' metrics at the start and after each interval, and judges the
// window once it is an interval long and holds enough traffic, or MaxWait has passed.
func watch(ctx context.Context, obs Observed, p Progressive, judge func(stable, candidate analysis.Window, th analysis.Thresholds) analysis.Verdict) (analysis.Verdict, error) {
	s0, c0, err := obs.Scrape(ctx)
	if err != nil {
		return analysis.Verdict{}, err
	}
	start := time.Now()
	for {
		select {
		case <-ctx.Done():
			return analysis.Verdict{}, fmt.Errorf("rollout cancelled while watching: %w", ctx.Err())
		case <-time.After(p.Interval):
		}
		s1, c1, err := obs.Scrape(ctx)
		if err != nil {
			return analysis.Verdict{}, err
		}
		v := judge(analysis.Delta(s0, s1), analysis.Delta(c0, c1), p.Thresholds)
		if !v.Inconclusive || time.Since(start)+p.Interval > p.MaxWait {
			return v, nil
		}
	}
}

func checks(v analysis.Verdict) []deploystate.Check {
	out := make([]deploystate.Check, 0, len(v.Checks))
	for _, c := range v.Checks {
		out = append(out, deploystate.Check{Name: c.Name, Value: c.Value, Limit: c.Limit, Op: c.Op, Unit: c.Unit, Passed: c.Passed, Skipped: c.Skipped, Detail: c.Detail})
	}
	return out
}

func failedChecks(v analysis.Verdict) string {
	var parts []string
	for _, c := range v.Failed() {
		parts = append(parts, c.String())
	}
	if v.Inconclusive {
		parts = append(parts, "not enough traffic to judge (raise --max-wait or send traffic)")
	}
	if len(parts) == 0 {
		return v.String()
	}
	return strings.Join(parts, "; ")
}

func stepName(s Strategy, weight int) string {
	if s == StrategyShadow {
		return "shadow"
	}
	return fmt.Sprintf("canary-%d%%", weight)
}

func passedWord(v analysis.Verdict) string {
	if v.Passed {
		return "passed"
	}
	return "failed"
}

func status(ok bool) string {
	if ok {
		return StepOK
	}
	return StepFailed
}

// deployProgressive is Deploy for a canary or shadow: the candidate is judged against the live
// release, and the rollout, whatever its end, is recorded with every step. A canary that
// aborted after taking traffic counts against the rollback budget, as the rollback it is.
func (deps Deps) deployProgressive(ctx context.Context, req DeployRequest, prev *deploystate.Deployment, start time.Time) (*Outcome, error) {
	p := req.Progressive.WithDefaults()
	req.Progressive = &p
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if prev == nil {
		return nil, fmt.Errorf("%w: a %s compares the candidate with the live release, and %s has none yet; deploy the first release with --strategy direct",
			ErrInvalidRollout, p.Strategy, req.Environment)
	}
	rec := deploystate.Rollout{Strategy: string(p.Strategy), Candidate: req.deployment(&Result{}, deps.Target.Name()), Stable: prev.Image, StartedAt: time.Now().UTC(), Steps: []deploystate.RolloutStep{}}
	res, err := deps.progressive(ctx, req, *prev, &rec)
	rec.EndedAt = time.Now().UTC()
	if res != nil {
		rec.Candidate = req.deployment(res, deps.Target.Name())
	}
	if err != nil {
		err = deps.stopped(ctx, req, *prev, &rec, err)
		return &Outcome{Result: res, Elapsed: time.Since(start), Rollout: &rec}, err
	}
	rec.Outcome = deploystate.OutcomePromoted
	d := rec.Candidate
	st, err := deps.State.Update(ctx, req.Environment, func(s *deploystate.State) error {
		if err := s.RecordDeploy(d); err != nil {
			return err
		}
		return s.RecordRollout(rec)
	})
	if err != nil {
		return &Outcome{Result: res, Elapsed: time.Since(start), Rollout: &rec}, deps.putBack(ctx, req, prev, err)
	}
	deps.notify(ctx, notify.Event{Kind: notify.RolloutPromoted, Environment: req.Environment, Image: d.Image, GitSHA: d.GitSHA,
		Model: d.ModelName + "@" + d.ModelVersion, Message: fmt.Sprintf("%s promoted %s@%s (git %.12s) after %d step(s): %s", p.Strategy, d.ModelName, d.ModelVersion, d.GitSHA, len(rec.Steps), res.Steps)})
	return &Outcome{Result: res, Deployment: d, State: st, Elapsed: time.Since(start), Rollout: &rec}, nil
}

// stopped records a rollout that did not promote. One whose candidate took a share of the
// traffic was aborted: that is a rollback to prev, admitted against the budget (the third
// within the hour halts the environment). One that never took traffic was refused.
func (deps Deps) stopped(ctx context.Context, req DeployRequest, prev deploystate.Deployment, rec *deploystate.Rollout, cause error) error {
	tookTraffic := slices.ContainsFunc(rec.Steps, func(s deploystate.RolloutStep) bool { return s.EffectiveWeight > 0 })
	rec.Outcome = deploystate.OutcomeRefused
	if tookTraffic {
		rec.Outcome = deploystate.OutcomeAborted
	}
	if rec.Reason == "" {
		rec.Reason = cause.Error()
	}
	from := rec.Candidate
	_, err := deps.State.Update(context.WithoutCancel(ctx), req.Environment, func(s *deploystate.State) error {
		if err := s.RecordRollout(*rec); err != nil {
			return err
		}
		if !tookTraffic {
			return nil
		}
		return s.AdmitRollback(deploystate.Rollback{From: &from, To: prev, Reason: fmt.Sprintf("%s aborted: %s", rec.Strategy, rec.Reason),
			PipelineRun: req.PipelineRun, Evidence: req.Evidence}, time.Now().UTC())
	})
	kind := notify.RolloutAborted
	switch {
	case errors.Is(err, deploystate.ErrHalted):
		deps.notify(ctx, notify.Event{Kind: notify.Halted, Environment: req.Environment, Message: err.Error()})
		cause = fmt.Errorf("%w; and the abort was the rollback over budget: %w", cause, err)
	case err != nil:
		cause = fmt.Errorf("%w; recording the rollout in deploy_state.json failed: %v", cause, err)
	}
	deps.notify(ctx, notify.Event{Kind: kind, Environment: req.Environment, Image: req.Release.Image, GitSHA: req.Release.GitSHA,
		Model: req.Release.ModelName + "@" + req.Release.ModelVersion, Message: fmt.Sprintf("%s %s: %v", rec.Strategy, rec.Outcome, cause)})
	return fmt.Errorf("deploy %s to %s (%s, %s): %w", req.Release.Image, req.Environment, deps.Target.Name(), rec.Strategy, cause)
}
