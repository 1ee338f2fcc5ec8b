package deploy

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/modelship/modelship/internal/deploystate"
	"github.com/modelship/modelship/internal/deploystate/store"
)

// ErrPromotionRefused marks a promotion whose source deployment does not qualify: nothing
// live there, no passed gate or verification recorded, too young, or a halted source.
var ErrPromotionRefused = errors.New("promotion refused")

// PromoteRequest promotes what From records as live to To.
type PromoteRequest struct {
	From, To    string
	MinAge      time.Duration // the source deployment must have been live this long
	PipelineRun string
	Evidence    string
	Now         time.Time // zero: time.Now()
}

// Promote deploys to To exactly the release From's deploy_state.json records as live (the same
// image reference with its digest, the same model version, the smoke inference it passed), once
// that deployment qualifies; nothing is rebuilt. The target environment must not be halted
// (Deploy checks), and its record links the source deployment and carries its gate.
func Promote(ctx context.Context, deps Deps, req PromoteRequest) (*Outcome, error) {
	if req.From == req.To {
		return nil, fmt.Errorf("%w: --from and --to are both %q; promote between two environments", deploystate.ErrInvalidInput, req.From)
	}
	for _, env := range []string{req.From, req.To} {
		if err := deploystate.ValidateEnvironment(env); err != nil {
			return nil, err
		}
	}
	now := req.Now
	if now.IsZero() {
		now = time.Now()
	}
	src, err := deps.State.Load(ctx, req.From, store.LoadOptions{})
	if errors.Is(err, deploystate.ErrNoState) {
		return nil, fmt.Errorf("%w: nothing was ever deployed to %s (no deploy_state.json); deploy there first", ErrPromotionRefused, req.From)
	}
	if err != nil {
		return nil, fmt.Errorf("read the state of %s, the promotion's source: %w", req.From, err)
	}
	d, err := qualifies(src, req, now)
	if err != nil {
		return nil, err
	}
	rel := releaseOf(*d, Smoke{})
	return Deploy(ctx, deps, DeployRequest{
		Environment: req.To, Branch: DeployBranch, PipelineRun: req.PipelineRun, Release: rel, Evidence: req.Evidence,
		Gate: d.Gate,
		PromotedFrom: &deploystate.Promotion{Environment: req.From, DeployedAt: d.DeployedAt, Evidence: d.Evidence,
			PipelineRun: d.PipelineRun},
	})
}

// qualifies returns the source's live deployment when it may be promoted, or says why not.
func qualifies(src *deploystate.State, req PromoteRequest, now time.Time) (*deploystate.Deployment, error) {
	refuse := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrPromotionRefused, fmt.Sprintf(format, args...))
	}
	d := src.Current
	switch {
	case src.Halt != nil:
		return nil, refuse("%s is halted (%s); what it serves is in question until someone runs modelship state resume --env %s", req.From, src.Halt.Reason, req.From)
	case d == nil:
		return nil, refuse("%s records no live deployment", req.From)
	case d.Gate == nil || !d.Gate.Passed:
		return nil, refuse("%s's live deployment %s records no passed quality gate; deploy it there with its gate (ship, or deploy --gate-report)", req.From, d.Image)
	case d.NoSmoke || d.Smoke == nil:
		return nil, refuse("%s's live deployment %s took traffic without a smoke inference, so its verification is incomplete; deploy it there with one", req.From, d.Image)
	case now.Sub(d.DeployedAt) < req.MinAge:
		return nil, refuse("%s's live deployment %s has been live %s; promotions need %s (--min-age), so %s more",
			req.From, d.Image, now.Sub(d.DeployedAt).Round(time.Second), req.MinAge, (req.MinAge - now.Sub(d.DeployedAt)).Round(time.Second))
	}
	return d, nil
}
