package docker_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelship/modelship/internal/deploy"
	"github.com/modelship/modelship/internal/deploy/analysis"
	"github.com/modelship/modelship/internal/deploy/deploytest"
	"github.com/modelship/modelship/internal/deploystate"
	"github.com/modelship/modelship/internal/deploystate/store"
	"github.com/modelship/modelship/internal/notify"
	"github.com/modelship/modelship/internal/testenv"
)

// liveWithTraffic is a test's environment with v1 live and clients sending it the validation
// rows, their answers counted by the model version that gave them: a shadow never answers one.
func liveWithTraffic(t *testing.T) (*world, *env, *testenv.Traffic) {
	t.Helper()
	w := setup(t)
	e := newEnv(t, w)
	_, err := e.deploy(t, "v1")
	require.NoError(t, err)
	return w, e, testenv.StartTraffic(t, "http://"+e.publish, "digits", testenv.DigitsRows(t), 100)
}

func shadowRollout() *deploy.Progressive {
	th := analysis.DefaultThresholds()
	th.MinRequests = 50
	return &deploy.Progressive{Strategy: deploy.StrategyShadow, Interval: 2 * time.Second, MaxWait: 30 * time.Second, Thresholds: th}
}

func (e *env) shadow(t *testing.T, rel deploy.Release) (*deploy.Outcome, error) {
	t.Helper()
	return deploy.Deploy(context.Background(), e.deps, deploy.DeployRequest{Environment: e.name, Branch: "main", PipelineRun: "test",
		Release: rel, Progressive: shadowRollout()})
}

func TestAShadowOfAWeakModelIsRefusedAndNeverAnswersAClient(t *testing.T) {
	w, e, traffic := liveWithTraffic(t)

	// The weak model passes its verification (none asked for) but predicts nothing like v1.
	weak := w.releases["weak"]
	weak.Smoke, weak.NoSmoke = deploy.Smoke{}, true
	out, err := e.shadow(t, weak)
	require.ErrorIs(t, err, deploy.ErrShadowRefused)
	got := traffic.Stop().Answered

	assert.Equal(t, "1", e.serving(t), "v1 serves alone again")
	assert.Zero(t, got["4"], "the shadow answered clients: %v", got)
	assert.Positive(t, got["1"])
	running, _ := e.containers(t)
	assert.Equal(t, 1, running, "the shadow candidate and the mirroring copy are gone")

	require.NotNil(t, out.Rollout)
	assert.Equal(t, deploystate.OutcomeRefused, out.Rollout.Outcome)
	require.Len(t, out.Rollout.Steps, 1)
	agreement := deploytest.Check(t, out.Rollout.Steps[0].Checks, "agreement")
	assert.False(t, agreement.Passed)
	assert.Less(t, agreement.Value, 0.5, "the weak model agrees with v1 on a share of rows near chance")

	st, err := e.store.Load(context.Background(), e.name, store.LoadOptions{})
	require.NoError(t, err)
	assert.Equal(t, w.releases["v1"].GitSHA, st.Current.GitSHA, "the state still names v1")
	require.Len(t, st.Rollouts, 1)
	assert.Equal(t, deploystate.OutcomeRefused, st.Rollouts[0].Outcome)
	assert.Empty(t, st.Rollbacks, "a refused shadow took no traffic: no rollback to count")
	assert.Contains(t, e.events.kinds(), notify.RolloutAborted)
}

func TestAShadowThatAgreesIsPromoted(t *testing.T) {
	w, e, traffic := liveWithTraffic(t)

	out, err := e.shadow(t, w.releases["v2"])
	stats := traffic.Stop()
	t.Logf("clients: answered %v, failed %d", stats.Answered, stats.Errors)
	require.NoError(t, err)

	assert.Equal(t, "2", e.serving(t))
	require.NotNil(t, out.Rollout)
	assert.Equal(t, deploystate.OutcomePromoted, out.Rollout.Outcome)
	agreement := deploytest.Check(t, out.Rollout.Steps[0].Checks, "agreement")
	assert.True(t, agreement.Passed)
	assert.InDelta(t, 1.0, agreement.Value, 1e-9, "the same weights predict the same classes")
	st, err := e.store.Load(context.Background(), e.name, store.LoadOptions{})
	require.NoError(t, err)
	assert.Equal(t, w.releases["v2"].GitSHA, st.Current.GitSHA)
	require.Len(t, st.Rollouts, 1)
	assert.Equal(t, deploystate.OutcomePromoted, st.Rollouts[0].Outcome)
	assert.Subset(t, e.events.kinds(), []notify.Kind{notify.RolloutStarted, notify.RolloutStep, notify.RolloutPromoted})
}

func TestAShadowNeedsALiveRelease(t *testing.T) {
	w := setup(t)
	e := newEnv(t, w)
	_, err := e.shadow(t, w.releases["v2"])
	require.ErrorIs(t, err, deploy.ErrInvalidRollout)
	assert.Contains(t, err.Error(), "--strategy direct")
	running, stopped := e.containers(t)
	assert.Zero(t, running+stopped, "nothing was started")
}
