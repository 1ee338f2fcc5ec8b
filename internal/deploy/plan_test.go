package deploy_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelship/modelship/internal/deploy"
)

// journal is a plan's side effects, in order.
type journal []string

func (j *journal) action(name string, fail bool) deploy.Action {
	return deploy.Action{
		Name: name,
		Run: func(context.Context) error {
			*j = append(*j, "run "+name)
			if fail {
				return errors.New(name + " broke")
			}
			return nil
		},
		Undo: func(ctx context.Context, cause error) error {
			*j = append(*j, fmt.Sprintf("undo %s (ctx err: %v)", name, ctx.Err()))
			return fmt.Errorf("%w; %s undone", cause, name)
		},
	}
}

func statuses(steps deploy.Steps) []string {
	out := make([]string, len(steps))
	for i, s := range steps {
		out[i] = s.Name + ":" + s.Status
	}
	return out
}

func TestAPlanRunsItsStepsInOrderAndRecordsEach(t *testing.T) {
	var j journal
	var steps deploy.Steps
	require.NoError(t, deploy.Plan{j.action("a", false), j.action("b", false)}.Run(context.Background(), &steps))
	assert.Equal(t, journal{"run a", "run b"}, j)
	assert.Equal(t, []string{"a:ok", "b:ok"}, statuses(steps))
}

func TestAFailedStepStopsThePlanAndUndoesWhatRanNewestFirst(t *testing.T) {
	var j journal
	var steps deploy.Steps
	ctx, cancel := context.WithCancel(context.Background())
	plan := deploy.Plan{j.action("stop-current", false), {Name: "log", Run: func(context.Context) error { cancel(); return nil }},
		j.action("start", false), j.action("smoke", true), j.action("never", false)}
	err := plan.Run(ctx, &steps)
	require.Error(t, err)
	assert.Equal(t, "smoke broke; start undone; stop-current undone", err.Error(), "each undo annotates the failure, newest first")
	assert.Equal(t, journal{"run stop-current", "run start", "run smoke",
		"undo start (ctx err: <nil>)", "undo stop-current (ctx err: <nil>)"}, j,
		"the failed step is not undone, later ones never run, and undos run though the caller's context is cancelled")
	assert.Equal(t, []string{"stop-current:ok", "log:ok", "start:ok", "smoke:failed", "undo-start:undone", "undo-stop-current:undone"}, statuses(steps))
	assert.Contains(t, steps.String(), "smoke 0s (failed)")
}
