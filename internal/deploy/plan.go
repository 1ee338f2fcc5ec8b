package deploy

import (
	"context"
	"time"
)

// Plan is a rollout as data: named steps run in order. Each target's way of rolling out is one
// plan (Docker: candidate, verify, swap; Kubernetes: apply, rollout, switch), so a new strategy
// such as a canary is another list, with analysis steps, rather than another code path.
type Plan []Action

// Action is one named step of a plan.
type Action struct {
	Name string
	Run  func(ctx context.Context) error
	// Undo, when set, puts back what Run changed once a later step has failed: it gets the
	// failure and returns it, annotated with what it restored or could not. Undos run newest
	// first, so the world is left as it was before the plan.
	Undo func(ctx context.Context, cause error) error
}

// Step statuses.
const (
	StepOK     = "ok"
	StepFailed = "failed"
	StepUndone = "undone"
)

// Run runs the plan, recording each step's name, time and status in steps. The first failure
// stops it; then the Undo of every step that completed runs, newest first, even when ctx has
// been cancelled, since a half-done rollout must not stay half-done.
func (p Plan) Run(ctx context.Context, steps *Steps) error {
	for i, a := range p {
		start := time.Now()
		err := a.Run(ctx)
		status := StepOK
		if err != nil {
			status = StepFailed
		}
		*steps = append(*steps, Step{Name: a.Name, Duration: time.Since(start), Status: status})
		if err == nil {
			continue
		}
		undoCtx := context.WithoutCancel(ctx)
		for j := i - 1; j >= 0; j-- {
			if p[j].Undo == nil {
				continue
			}
			start := time.Now()
			err = p[j].Undo(undoCtx, err)
			*steps = append(*steps, Step{Name: "undo-" + p[j].Name, Duration: time.Since(start), Status: StepUndone})
		}
		return err
	}
	return nil
}
