package deploystate

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Rollout strategies and outcomes, as deploy_state.json spells them.
const (
	StrategyCanary = "canary"
	StrategyShadow = "shadow"

	OutcomePromoted = "promoted" // the candidate took all the traffic and is current
	OutcomeAborted  = "aborted"  // a canary failed a step: stable got all the traffic back (a rollback)
	OutcomeRefused  = "refused"  // a shadow candidate did not qualify; it never took traffic
)

// Rollout is one canary or shadow rollout: the candidate, each step with its analysis, and
// how it ended.
type Rollout struct {
	Strategy  string        `json:"strategy"`
	Candidate Deployment    `json:"candidate"`
	Stable    string        `json:"stable"` // the image that served before
	StartedAt time.Time     `json:"started_at"`
	EndedAt   time.Time     `json:"ended_at"`
	Outcome   string        `json:"outcome"`
	Reason    string        `json:"reason,omitempty"` // why it was aborted or refused
	Steps     []RolloutStep `json:"steps"`
}

// RolloutStep is one stage of a rollout: the share of traffic the candidate had (a shadow sees
// a mirrored share and answers none), how long it was watched, and what the analysis found.
type RolloutStep struct {
	Weight          int       `json:"weight"`           // percent asked for
	EffectiveWeight float64   `json:"effective_weight"` // share it really had (replica ratios round)
	Mirrored        float64   `json:"mirrored,omitempty"`
	StartedAt       time.Time `json:"started_at"`
	Seconds         float64   `json:"seconds"`
	Passed          bool      `json:"passed"`
	Inconclusive    bool      `json:"inconclusive,omitempty"`
	Checks          []Check   `json:"checks"`
}

// Check is one analysis check of a step.
type Check struct {
	Name   string  `json:"name"`
	Value  float64 `json:"value"`
	Limit  float64 `json:"limit"`
	Op     string  `json:"op,omitempty"` // how value must compare with limit to pass: <= or >=
	Unit   string  `json:"unit,omitempty"`
	Passed bool    `json:"passed"`
	// Skipped checks passed with nothing to measure; Detail says why.
	Skipped bool   `json:"skipped,omitempty"`
	Detail  string `json:"detail,omitempty"`
}

// Validate checks one rollout record.
func (r Rollout) Validate() error {
	var problems []string
	if r.Strategy != StrategyCanary && r.Strategy != StrategyShadow {
		problems = append(problems, fmt.Sprintf("strategy %q is not %s or %s", r.Strategy, StrategyCanary, StrategyShadow))
	}
	switch r.Outcome {
	case OutcomePromoted, OutcomeAborted, OutcomeRefused:
	default:
		problems = append(problems, fmt.Sprintf("outcome %q is not %s, %s or %s", r.Outcome, OutcomePromoted, OutcomeAborted, OutcomeRefused))
	}
	if err := r.Candidate.Validate(); err != nil {
		problems = append(problems, "candidate: "+err.Error())
	}
	if r.StartedAt.IsZero() || r.EndedAt.Before(r.StartedAt) {
		problems = append(problems, "started_at is missing or after ended_at")
	}
	for i, st := range r.Steps {
		if st.Weight < 0 || st.Weight > 100 || st.EffectiveWeight < 0 || st.EffectiveWeight > 1 {
			problems = append(problems, fmt.Sprintf("steps[%d]: weight %d%% / effective %.3f out of range", i, st.Weight, st.EffectiveWeight))
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, ", "))
	}
	return nil
}

// RecordRollout appends r to the rollout log, keeping the newest MaxRollouts.
func (s *State) RecordRollout(r Rollout) error {
	if err := r.Validate(); err != nil {
		return fmt.Errorf("%w: rollout: %v", ErrInvalidInput, err)
	}
	s.Rollouts = append(s.Rollouts, r)
	if len(s.Rollouts) > MaxRollouts {
		s.Rollouts = s.Rollouts[len(s.Rollouts)-MaxRollouts:]
	}
	return nil
}

// LastRollout is the newest rollout recorded, if any.
func (s *State) LastRollout() (Rollout, bool) {
	if len(s.Rollouts) == 0 {
		return Rollout{}, false
	}
	return s.Rollouts[len(s.Rollouts)-1], true
}
