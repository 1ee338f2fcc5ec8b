package deploy

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/modelship/modelship/internal/deploystate"
	"github.com/modelship/modelship/internal/deploystate/store"
	"github.com/modelship/modelship/internal/notify"
	"github.com/modelship/modelship/internal/pipeline"
)

// ErrNotMain refuses a deploy from any branch but the deploy branch.
var ErrNotMain = errors.New("deploys run only from main")

// DeployBranch is the one branch whose pipelines deploy.
const DeployBranch = pipeline.DeployBranch

// Deps are what deploys and rollbacks work with.
type Deps struct {
	Target   Target
	State    *store.Store
	Notifier notify.Notifier
	// Verifier, when set, must accept a release's image before anything rolls out (deploys and
	// promotions; a rollback restores what was verified when it first went out).
	Verifier ImageVerifier
}

// ImageVerifier checks a release's image signature and provenance. It returns the image pinned
// to the digest it verified, which is what is deployed, and what it checked, for the state.
type ImageVerifier interface {
	VerifyRelease(ctx context.Context, rel Release) (pinned string, rec *deploystate.SignatureRecord, err error)
}

// DeployRequest is one deploy.
type DeployRequest struct {
	Environment string
	Branch      string
	PipelineRun string
	Release     Release
	Evidence    string // where this run's evidence.json is kept, recorded with the deployment
	// Gate is the quality gate the release passed, recorded with it (promotions require one).
	Gate *deploystate.GateRecord
	// PromotedFrom is set by Promote: the deployment elsewhere this one copies.
	PromotedFrom *deploystate.Promotion
	// Progressive, when set, rolls the release out as a canary or a shadow, judged against
	// the live release; nil gives it all the traffic once verified.
	Progressive *Progressive
	// Signature is set by Deploy once the Verifier accepted the image.
	signature *deploystate.SignatureRecord
}

// Outcome says what a deploy or rollback did.
type Outcome struct {
	Result     *Result
	Deployment deploystate.Deployment
	State      *deploystate.State
	Elapsed    time.Duration // from the start of the call to verified serving
	// Rollout is a canary's or shadow's record, steps and analysis included, however it ended.
	Rollout *deploystate.Rollout
}

// Deploy refuses unless the branch is main and the environment is not halted, rolls the release
// out, and only once it is verified records it as current in deploy_state.json.
func Deploy(ctx context.Context, deps Deps, req DeployRequest) (*Outcome, error) {
	start := time.Now()
	if req.Branch != DeployBranch {
		return nil, fmt.Errorf("%w: this run is on branch %q; tests and builds run anywhere, the deploy job only for pushes to %s", ErrNotMain, req.Branch, DeployBranch)
	}
	// Everything the state will record is checked before anything touches the target: a release
	// that cannot be recorded must never start serving.
	if err := deployment(req.Release, &Result{}, deps.Target.Name(), req.PipelineRun).Validate(); err != nil {
		return nil, fmt.Errorf("%w: release %s: %v; nothing was deployed", deploystate.ErrInvalidInput, req.Release.Image, err)
	}
	prev, err := ready(ctx, deps, req.Environment)
	if err != nil {
		return nil, err
	}
	if deps.Verifier != nil {
		pinned, rec, err := deps.Verifier.VerifyRelease(ctx, req.Release)
		if err != nil {
			deps.notify(ctx, notify.Event{Kind: notify.VerificationFailed, Environment: req.Environment, Image: req.Release.Image,
				GitSHA: req.Release.GitSHA, Model: req.Release.ModelName + "@" + req.Release.ModelVersion, Message: err.Error()})
			return nil, fmt.Errorf("deploy %s to %s: %w; nothing was rolled out", req.Release.Image, req.Environment, err)
		}
		req.Release.Image, req.signature = pinned, rec
	}
	if req.Progressive != nil && req.Progressive.Strategy != StrategyDirect {
		return deps.deployProgressive(ctx, req, prev, start)
	}
	res, err := deps.Target.Deploy(ctx, req.Release)
	if err != nil {
		deps.notify(ctx, notify.Event{Kind: notify.VerificationFailed, Environment: req.Environment, Image: req.Release.Image,
			GitSHA: req.Release.GitSHA, Model: req.Release.ModelName + "@" + req.Release.ModelVersion, Message: err.Error()})
		return &Outcome{Result: res, Elapsed: time.Since(start)}, fmt.Errorf("deploy %s to %s (%s): %w", req.Release.Image, req.Environment, deps.Target.Name(), err)
	}
	d := req.deployment(res, deps.Target.Name())
	st, err := deps.State.RecordDeploy(ctx, req.Environment, d)
	if err != nil {
		return &Outcome{Result: res, Elapsed: time.Since(start)}, deps.putBack(ctx, req, prev, err)
	}
	deps.notify(ctx, notify.Event{Kind: notify.Deployed, Environment: req.Environment, Image: d.Image, GitSHA: d.GitSHA,
		Model: d.ModelName + "@" + d.ModelVersion, Message: fmt.Sprintf("%s@%s (git %.12s) is live: %s", d.ModelName, d.ModelVersion, d.GitSHA, res.Steps)})
	return &Outcome{Result: res, Deployment: d, State: st, Elapsed: time.Since(start)}, nil
}

// ready refuses work on a halted environment and returns what the state records as live (nil
// on a first deploy: a missing state is fine).
func ready(ctx context.Context, deps Deps, env string) (*deploystate.Deployment, error) {
	st, err := deps.State.Load(ctx, env, store.LoadOptions{})
	if errors.Is(err, deploystate.ErrNoState) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return st.Current, st.CheckNotHalted()
}

// putBack answers a deploy that went live but could not be recorded: the release the state
// still names is deployed again, so what serves is what deploy_state.json says.
func (deps Deps) putBack(ctx context.Context, req DeployRequest, prev *deploystate.Deployment, recErr error) error {
	err := fmt.Errorf("%s went live on %s but recording it in deploy_state.json failed: %w", req.Release.Image, req.Environment, recErr)
	if prev == nil {
		return fmt.Errorf("%w; nothing was deployed before it to put back, so it keeps serving unrecorded: deploy it again once the state can be written", err)
	}
	return deps.restoreRecorded(ctx, *prev, req.Release.DefaultSmoke, err)
}

// restoreRecorded deploys again d, the release deploy_state.json still names, after a change
// went live that could not be recorded (err says which), so what serves is what the state says.
func (deps Deps) restoreRecorded(ctx context.Context, d deploystate.Deployment, fallback Smoke, err error) error {
	if _, perr := deps.Target.Deploy(context.WithoutCancel(ctx), releaseOf(d, fallback)); perr != nil {
		return fmt.Errorf("%w; and putting back %s, which the state still names, failed too, so what went live serves unrecorded: %v", err, d.Image, perr)
	}
	return fmt.Errorf("%w; %s, which the state still names, was put back and serves again", err, d.Image)
}

// deployment is what the state records of req once res went live on target: the release as
// it ran, with the request's evidence, gate and promotion.
func (req DeployRequest) deployment(res *Result, target string) deploystate.Deployment {
	d := deployment(req.Release, res, target, req.PipelineRun)
	d.Evidence, d.Gate, d.PromotedFrom, d.Signature = req.Evidence, req.Gate, req.PromotedFrom, req.signature
	return d
}

func deployment(rel Release, res *Result, target, run string) deploystate.Deployment {
	d := deploystate.Deployment{GitSHA: rel.GitSHA, Image: rel.Image, ModelName: rel.ModelName, ModelVersion: rel.ModelVersion,
		DeployedAt: time.Now().UTC(), PipelineRun: run, Target: target, ImageID: res.ImageDigest, NoSmoke: rel.NoSmoke}
	smoke := res.Smoke
	if len(smoke.Input) == 0 {
		smoke = rel.Smoke
	}
	if len(smoke.Input) > 0 && !rel.NoSmoke {
		d.Smoke = &deploystate.SmokeSample{Input: smoke.Input, Label: smoke.Want}
	}
	if res.ImageDigest != "" && !isImageID(res.ImageDigest) {
		d.Image, d.ImageID = res.ImageDigest, ""
	}
	if res.ModelName != "" {
		d.ModelName, d.ModelVersion = res.ModelName, res.ModelVersion
	}
	return d
}

// releaseOf is the release a recorded deployment was, for deploying it again (a rollback, a
// put-back). Its smoke inference is the one recorded with it, which fits its model whatever the
// project's fixture is now; fallback serves a deployment recorded without one.
func releaseOf(d deploystate.Deployment, fallback Smoke) Release {
	rel := Release{Image: d.Image, ModelName: d.ModelName, ModelVersion: d.ModelVersion, GitSHA: d.GitSHA, DefaultSmoke: fallback}
	if d.Smoke != nil {
		rel.Smoke = Smoke{Input: d.Smoke.Input, Want: d.Smoke.Label}
	}
	return rel
}

func isImageID(s string) bool { return len(s) == 71 && s[:7] == "sha256:" }

// RollbackTo names which deployment a rollback restores.
type RollbackTo string

// Rollback targets.
const (
	// ToCurrent restores the deployment deploy_state.json records as current: the candidate
	// failed its gate or its rollout and never became current, and production must be it again.
	ToCurrent RollbackTo = "current"
	// ToPrevious goes back past the current deployment to the one before it.
	ToPrevious RollbackTo = "previous"
)

// RollbackRequest is one rollback.
type RollbackRequest struct {
	Environment string
	To          RollbackTo
	Reason      string
	PipelineRun string
	Smoke       Smoke // overrides the smoke inference the state recorded with the deployment
	// DefaultSmoke is used when neither Smoke nor the state has one (states from before smoke
	// inferences were recorded).
	DefaultSmoke Smoke
	NoSmoke      bool // verify without a smoke inference, on purpose
	MaxStateAge  time.Duration
	Evidence     string // where this run's evidence.json is kept, recorded with the rollback
}

// Rollback reads and validates deploy_state.json, applies the rollback budget (the third within
// an hour halts the environment instead), redeploys the chosen deployment and records it.
func Rollback(ctx context.Context, deps Deps, req RollbackRequest) (*Outcome, error) {
	start := time.Now()
	st, err := deps.State.Load(ctx, req.Environment, store.LoadOptions{MaxAge: req.MaxStateAge})
	if err != nil {
		return nil, fmt.Errorf("rollback of %s: %w", req.Environment, err)
	}
	if st.Current == nil {
		return nil, fmt.Errorf("%w: rollback of %s: deploy_state.json records no deployment yet; deploy a release first", deploystate.ErrNothingToRollBackTo, req.Environment)
	}
	target := *st.Current
	if req.To == ToPrevious {
		prev, ok := st.Previous()
		if !ok {
			return nil, fmt.Errorf("%w: rollback of %s: deploy_state.json has no earlier deployment than %s that was not itself rolled back; use --to current to restore it, or deploy the release you want", deploystate.ErrNothingToRollBackTo, req.Environment, st.Current.Image)
		}
		target = prev
	} else if req.To != ToCurrent {
		return nil, fmt.Errorf("%w: rollback target %q: use current or previous", deploystate.ErrInvalidInput, req.To)
	}
	from := st.Current
	admitted, err := deps.State.AdmitRollback(ctx, req.Environment, deploystate.Rollback{From: from, To: target, Reason: req.Reason, PipelineRun: req.PipelineRun, Evidence: req.Evidence})
	if err != nil {
		if errors.Is(err, deploystate.ErrHalted) {
			deps.notify(ctx, notify.Event{Kind: notify.Halted, Environment: req.Environment, Message: err.Error()})
		}
		return nil, err
	}
	// The admission is recorded before the redeploy, so concurrent rollbacks and one that dies
	// half-way count against the budget; only a redeploy seen to fail is taken off it.
	at := admitted.Rollbacks[len(admitted.Rollbacks)-1].At
	rel := releaseOf(target, req.DefaultSmoke)
	switch {
	case req.NoSmoke:
		rel.Smoke, rel.NoSmoke = Smoke{}, true
	case len(req.Smoke.Input) > 0:
		rel.Smoke = req.Smoke
	}
	res, err := deps.Target.Deploy(ctx, rel)
	if err != nil {
		return &Outcome{Result: res, Elapsed: time.Since(start)}, deps.rollbackFailed(ctx, req.Environment, at, target, err)
	}
	elapsed := time.Since(start)
	st, err = deps.State.Update(ctx, req.Environment, func(s *deploystate.State) error { return s.RolledBackTo(target) })
	if err != nil {
		return &Outcome{Result: res, Elapsed: elapsed}, deps.undoRollback(ctx, req, *from, target, err)
	}
	deps.notify(ctx, notify.Event{Kind: notify.RolledBack, Environment: req.Environment, Image: target.Image, GitSHA: target.GitSHA,
		Model:   target.ModelName + "@" + target.ModelVersion,
		Message: fmt.Sprintf("rolled back to %s@%s (git %.12s) in %s: %s", target.ModelName, target.ModelVersion, target.GitSHA, elapsed.Round(time.Millisecond), req.Reason)})
	return &Outcome{Result: res, Deployment: target, State: st, Elapsed: elapsed}, nil
}

// undoRollback answers a rollback that went live but could not be recorded: the release the
// state still names as current is deployed again, so what serves is what deploy_state.json
// says, and the rollback can simply be run again once the state can be written.
func (deps Deps) undoRollback(ctx context.Context, req RollbackRequest, current, target deploystate.Deployment, recErr error) error {
	err := fmt.Errorf("%s served %s again but recording the rollback in deploy_state.json failed: %w", req.Environment, target.Image, recErr)
	if current.Image == target.Image {
		return fmt.Errorf("%w; it is the release the state names as current, so state and target agree; run the rollback again once the state can be written to log it", err)
	}
	return fmt.Errorf("%w; run the rollback again once the state can be written (this attempt counts against the rollback budget: it was admitted before the redeploy)",
		deps.restoreRecorded(ctx, current, req.DefaultSmoke, err))
}

// rollbackFailed logs the failed attempt in the state (so it stops counting as a rollback) and
// alerts, saying how many attempts failed within the window.
func (deps Deps) rollbackFailed(ctx context.Context, env string, at time.Time, target deploystate.Deployment, cause error) error {
	err := fmt.Errorf("roll %s back to %s: %w", env, target.Image, cause)
	failed := 1
	st, recErr := deps.State.RollbackFailed(context.WithoutCancel(ctx), env, at, cause.Error())
	if recErr != nil {
		err = fmt.Errorf("%w; and logging the failed attempt in deploy_state.json failed too, so it still counts against the rollback budget: %v", err, recErr)
	} else {
		failed = st.FailedRollbacksSince(time.Now().Add(-deploystate.RollbackWindow))
	}
	deps.notify(ctx, notify.Event{Kind: notify.VerificationFailed, Environment: env, Image: target.Image, GitSHA: target.GitSHA,
		Model:   target.ModelName + "@" + target.ModelVersion,
		Message: fmt.Sprintf("rollback attempt failed (%d failed within %s; the live release was not interrupted): %v", failed, deploystate.RollbackWindow, cause)})
	return err
}

func (deps Deps) notify(ctx context.Context, e notify.Event) {
	if deps.Notifier != nil {
		deps.Notifier.Notify(context.WithoutCancel(ctx), e)
	}
}
