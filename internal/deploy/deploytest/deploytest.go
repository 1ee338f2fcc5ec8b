// Package deploytest is the conformance suite every deploy target passes: the same deploys,
// failures, rollbacks and halt, run through deploy.Deploy and deploy.Rollback against the real
// target, so a new target (or rollout strategy) proves it keeps the promises the others keep.
package deploytest

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelship/modelship/internal/deploy"
	"github.com/modelship/modelship/internal/deploystate"
	"github.com/modelship/modelship/internal/deploystate/store"
)

// Env is one test's environment on the target under test: its own name, state and instances.
type Env struct {
	Name string
	Deps deploy.Deps
	// Release returns good release n (1 or 2): distinct images of a model that verifies.
	Release func(n int) deploy.Release
	// Broken is a release the target must refuse at verification (never ready, wrong answers,
	// a rollout that cannot progress).
	Broken deploy.Release
	// Serving is the git SHA of the release the environment's traffic reaches now ("" when
	// none): a rollback may name the image by digest rather than by the tag it was deployed as.
	Serving func(t *testing.T) string
	// Forget removes everything of release n the target keeps while it is not taking traffic
	// (stopped instances, the image on the host), so a rollback to it must fetch it again.
	Forget func(t *testing.T, n int)
}

// Run runs the suite; newEnv makes a fresh environment for each test.
func Run(t *testing.T, newEnv func(t *testing.T) *Env) {
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, e *Env)
	}{
		{"V1ThenV2", v1ThenV2},
		{"FailedVerificationKeepsTheOldVersionServing", failedVerification},
		{"RepeatedDeployIsANoOp", repeatedDeploy},
		{"RollbackReusesWhatIsLeft", rollbackReusesWhatIsLeft},
		{"RollbackByImage", rollbackByImage},
		{"ThirdRollbackWithinAnHourHalts", halt},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, newEnv(t)) })
	}
}

func (e *Env) deploy(t *testing.T, rel deploy.Release) (*deploy.Outcome, error) {
	t.Helper()
	return deploy.Deploy(context.Background(), e.Deps, deploy.DeployRequest{Environment: e.Name, Branch: deploy.DeployBranch, PipelineRun: "conformance", Release: rel})
}

func (e *Env) mustDeploy(t *testing.T, n int) *deploy.Outcome {
	t.Helper()
	out, err := e.deploy(t, e.Release(n))
	require.NoError(t, err, "deploy release %d", n)
	require.Equal(t, e.Release(n).GitSHA, e.Serving(t), "release %d serves after its deploy", n)
	return out
}

func (e *Env) rollback(t *testing.T, to deploy.RollbackTo) (*deploy.Outcome, error) {
	t.Helper()
	return deploy.Rollback(context.Background(), e.Deps, deploy.RollbackRequest{Environment: e.Name, To: to, Reason: "conformance", Smoke: e.Release(1).Smoke})
}

func (e *Env) state(t *testing.T) *deploystate.State {
	t.Helper()
	st, err := e.Deps.State.Load(context.Background(), e.Name, store.LoadOptions{})
	require.NoError(t, err)
	return st
}

func v1ThenV2(t *testing.T, e *Env) {
	e.mustDeploy(t, 1)
	e.mustDeploy(t, 2)
	st := e.state(t)
	assert.Equal(t, e.Release(2).GitSHA, st.Current.GitSHA)
	require.Len(t, st.History, 1)
	assert.Equal(t, e.Release(1).GitSHA, st.History[0].GitSHA)
}

func failedVerification(t *testing.T, e *Env) {
	e.mustDeploy(t, 1)
	out, err := e.deploy(t, e.Broken)
	require.Error(t, err, "a release that fails verification is refused")
	require.NotNil(t, out.Result, "a refused release still reports its rollout's steps")
	failed := ""
	for _, s := range out.Result.Steps {
		if s.Status == deploy.StepFailed {
			failed = s.Name
		}
	}
	assert.NotEmpty(t, failed, "the steps name the one that failed: %s", out.Result.Steps)
	assert.Equal(t, e.Release(1).GitSHA, e.Serving(t), "the old version keeps serving")
	assert.Equal(t, e.Release(1).GitSHA, e.state(t).Current.GitSHA, "the state still names the old version")
}

func repeatedDeploy(t *testing.T, e *Env) {
	e.mustDeploy(t, 1)
	out := e.mustDeploy(t, 1)
	assert.True(t, out.Result.Reused, "the live instance is kept, not replaced")
}

func rollbackReusesWhatIsLeft(t *testing.T, e *Env) {
	e.mustDeploy(t, 1)
	e.mustDeploy(t, 2)
	out, err := e.rollback(t, deploy.ToPrevious)
	require.NoError(t, err)
	assert.True(t, out.Result.Reused, "what release 1 left on the target is used again: nothing is pulled or rebuilt")
	assert.Equal(t, e.Release(1).GitSHA, e.Serving(t))
	assert.Equal(t, e.Release(1).GitSHA, e.state(t).Current.GitSHA)
}

func rollbackByImage(t *testing.T, e *Env) {
	e.mustDeploy(t, 1)
	e.mustDeploy(t, 2)
	e.Forget(t, 1)
	out, err := e.rollback(t, deploy.ToPrevious)
	require.NoError(t, err)
	assert.False(t, out.Result.Reused, "nothing of release 1 was left to restart")
	assert.Equal(t, e.Release(1).GitSHA, e.Serving(t))
}

func halt(t *testing.T, e *Env) {
	e.mustDeploy(t, 1)
	for i := 0; i < 2; i++ {
		_, err := e.rollback(t, deploy.ToCurrent)
		require.NoError(t, err, "rollback %d of 2 is within the budget", i+1)
	}
	_, err := e.rollback(t, deploy.ToCurrent)
	require.ErrorIs(t, err, deploystate.ErrHalted, "the third rollback within an hour halts")
	_, err = e.deploy(t, e.Release(2))
	require.ErrorIs(t, err, deploystate.ErrHalted, "a halted environment takes no deploys")
	assert.Equal(t, e.Release(1).GitSHA, e.Serving(t))
	_, err = e.Deps.State.Resume(context.Background(), e.Name, "conformance", "checked")
	require.NoError(t, err)
	e.mustDeploy(t, 2)
}

// Check is the analysis check called name in a rollout step's checks; the test fails when the
// step has none.
func Check(t *testing.T, checks []deploystate.Check, name string) deploystate.Check {
	t.Helper()
	for _, c := range checks {
		if c.Name == name {
			return c
		}
	}
	require.Failf(t, "no such check", "no check %q in %+v", name, checks)
	return deploystate.Check{}
}
