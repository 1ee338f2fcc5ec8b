package docker_test

import (
	"context"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelship/modelship/internal/deploy"
	"github.com/modelship/modelship/internal/deploy/docker"
	"github.com/modelship/modelship/internal/deploystate/store"
	"github.com/modelship/modelship/internal/testenv"
	"github.com/modelship/modelship/serving/oip"
)

// The Docker engine restarted in the middle of a rollout (a host update, the service manager
// restarting dockerd): the deploy fails naming the engine, not the release; the release
// deploy_state.json names serves again once the engine is back; nothing of the half-done rollout
// runs; and the same release deploys cleanly afterwards. The engine is one of the test's own,
// since the main one is shared (and may be a developer's). The restart hits each half of a
// rollout: while the candidate is checked on its side port, v1 still holds the published port
// and the engine's restart policy brings it back; once v2 is taking that port over, v1 has been
// stopped by the rollout, and only the rollout's undo can start it again.
func TestADockerdRestartMidRolloutLeavesTheStatesReleaseServing(t *testing.T) {
	w := setup(t)
	own := testenv.StartOwnDocker(t)
	own.CopyImages(t, w.docker, w.releases["v1"].Image, w.releases["v2"].Image)
	ow := *w
	ow.docker = own.Client(t)

	for _, phase := range []struct {
		name string
		role string // the v2 container whose creation sets off the restart
	}{
		{"while the candidate is checked on its side port", "candidate"},
		{"while v2 takes over the published port", "live"},
	} {
		t.Run(phase.name, func(t *testing.T) {
			e := newEnv(t, &ow)
			// The undo waits this long for the engine to come back: far more than a restart takes
			// here, so a slow machine does not turn into a half-done rollout.
			target, err := docker.New(docker.Config{Client: ow.docker, Environment: e.name, Publish: e.publish, ReadyTimeout: 2 * time.Minute})
			require.NoError(t, err)
			e.deps.Target = target
			_, err = e.deploy(t, "v1")
			require.NoError(t, err)
			require.Equal(t, "1", e.serving(t))

			done := make(chan error, 1)
			go func() {
				_, err := deploy.Deploy(context.Background(), e.deps, deploy.DeployRequest{Environment: e.name, Branch: "main", PipelineRun: "test", Release: w.releases["v2"]})
				done <- err
			}()
			e.waitForContainer(t, phase.role, sha(2), done)
			restarted := time.Now()
			own.Restart(t)
			t.Logf("v2's %s container was created; the engine answered again %s after the restart began", phase.role, time.Since(restarted).Round(time.Millisecond))
			var deployErr error
			select {
			case deployErr = <-done:
			case <-time.After(10 * time.Minute):
				require.FailNow(t, "the deploy of v2 did not return within 10 minutes of the engine's restart")
			}
			t.Logf("deploy of v2: %v", deployErr)
			// The swap can finish inside the engine's own shutdown (it stops containers last): then
			// v2 is verified and recorded, and comes back with the engine. Either way the state and
			// what serves agree.
			want := "1"
			if deployErr == nil && phase.role == "live" {
				want = "2"
			} else {
				require.ErrorIs(t, deployErr, docker.ErrEngineUnreachable)
				assert.ErrorContains(t, deployErr, own.Host+" stopped answering in the middle of the rollout")
				assert.NotErrorIs(t, deployErr, deploy.ErrVerification, "what the restart did to v2's containers says nothing of v2")
			}

			require.Eventually(t, func() bool { return e.servingNow() == want }, 3*time.Minute, 200*time.Millisecond,
				"v%s, which the state names, serves once the engine is back", want)
			st, err := e.store.Load(context.Background(), e.name, store.LoadOptions{})
			require.NoError(t, err)
			assert.Equal(t, want, st.Current.ModelVersion, "deploy_state.json names what serves")
			var running []string
			for _, c := range e.list(t) {
				if c.State == "running" {
					running = append(running, c.Labels[deploy.LabelRole]+" "+c.Labels[deploy.LabelModelVersion])
				}
			}
			assert.Equal(t, []string{"live " + want}, running, "that release's container alone runs: nothing else was left on the published port or beside it")

			_, err = e.deploy(t, "v2")
			require.NoError(t, err, "v2 deploys cleanly once the engine is back")
			assert.Equal(t, "2", e.serving(t))
			st, err = e.store.Load(context.Background(), e.name, store.LoadOptions{})
			require.NoError(t, err)
			assert.Equal(t, "2", st.Current.ModelVersion)
		})
	}
}

// waitForContainer returns once a container of the environment with role and git SHA exists.
// The deploy returning first means the restart could not hit it mid-rollout.
func (e *env) waitForContainer(t *testing.T, role, gitSHA string, done <-chan error) {
	t.Helper()
	f := filters.NewArgs(filters.Arg("label", deploy.LabelEnvironment+"="+e.name),
		filters.Arg("label", deploy.LabelRole+"="+role), filters.Arg("label", deploy.LabelGitSHA+"="+gitSHA))
	for {
		list, err := e.w.docker.ContainerList(context.Background(), container.ListOptions{All: true, Filters: f})
		require.NoError(t, err)
		if len(list) > 0 {
			return
		}
		select {
		case err := <-done:
			require.FailNowf(t, "the deploy returned before the restart", "no %s container of %s was seen before it returned (error: %v)", role, gitSHA, err)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// servingNow is the model version answering on the published port, "" while none answers.
func (e *env) servingNow() string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	meta, err := oip.NewClient("http://"+e.publish).Metadata(ctx, "digits")
	if err != nil || len(meta.Versions) != 1 {
		return ""
	}
	return meta.Versions[0]
}
