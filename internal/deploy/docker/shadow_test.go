package docker_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelship/modelship/internal/deploy"
	"github.com/modelship/modelship/internal/deploy/analysis"
	"github.com/modelship/modelship/internal/deploystate"
	"github.com/modelship/modelship/internal/deploystate/store"
	"github.com/modelship/modelship/internal/ml/dataset"
	"github.com/modelship/modelship/internal/notify"
	"github.com/modelship/modelship/internal/plumbing/projectpath"
	"github.com/modelship/modelship/serving/oip"
)

// clients sends validation rows to the published port until stopped, and counts the answers by
// the model version that gave them: a shadow never answers a client.
type clients struct {
	stop     chan struct{}
	done     sync.WaitGroup
	mu       sync.Mutex
	versions map[string]int
	failed   atomic.Int64
}

func sendTraffic(t *testing.T, url string) *clients {
	t.Helper()
	fx, err := dataset.ReadFixture(projectpath.Join(t, "tests/fixtures/digits_validation.json"))
	require.NoError(t, err)
	c := &clients{stop: make(chan struct{}), versions: map[string]int{}}
	client := oip.NewClient(url)
	meta, err := client.Metadata(context.Background(), "digits")
	require.NoError(t, err)
	input := meta.Inputs[0].Name
	rows := make([][]float32, len(fx.Samples))
	for i, s := range fx.Samples {
		for _, f := range s.Features {
			rows[i] = append(rows[i], float32(f))
		}
	}
	c.done.Add(1)
	go func() {
		defer c.done.Done()
		for i := 0; ; i++ {
			select {
			case <-c.stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			resp, err := client.Infer(ctx, "digits", input, [][]float32{rows[i%len(rows)]})
			cancel()
			if err != nil {
				// The swaps in and out of the shadow close the port for a moment, as a deploy's swap does.
				c.failed.Add(1)
				continue
			}
			c.mu.Lock()
			c.versions[resp.ModelVersion]++
			c.mu.Unlock()
		}
	}()
	t.Cleanup(c.end)
	return c
}

func (c *clients) end() {
	select {
	case <-c.stop:
	default:
		close(c.stop)
	}
	c.done.Wait()
}

func (c *clients) answeredBy() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for k, v := range c.versions {
		out[k] = v
	}
	return out
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
	w := setup(t)
	e := newEnv(t, w)
	_, err := e.deploy(t, "v1")
	require.NoError(t, err)
	traffic := sendTraffic(t, "http://"+e.publish)

	// The weak model passes its verification (none asked for) but predicts nothing like v1.
	weak := w.releases["weak"]
	weak.Smoke, weak.NoSmoke = deploy.Smoke{}, true
	out, err := e.shadow(t, weak)
	require.ErrorIs(t, err, deploy.ErrShadowRefused)
	traffic.end()

	assert.Equal(t, "1", e.serving(t), "v1 serves alone again")
	got := traffic.answeredBy()
	assert.Zero(t, got["4"], "the shadow answered clients: %v", got)
	assert.Positive(t, got["1"])
	running, _ := e.containers(t)
	assert.Equal(t, 1, running, "the shadow candidate and the mirroring copy are gone")

	require.NotNil(t, out.Rollout)
	assert.Equal(t, deploystate.OutcomeRefused, out.Rollout.Outcome)
	require.Len(t, out.Rollout.Steps, 1)
	agreement := checkNamed(t, out.Rollout.Steps[0].Checks, "agreement")
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
	w := setup(t)
	e := newEnv(t, w)
	_, err := e.deploy(t, "v1")
	require.NoError(t, err)
	traffic := sendTraffic(t, "http://"+e.publish)

	out, err := e.shadow(t, w.releases["v2"])
	traffic.end()
	t.Logf("clients: answered %v, failed %d", traffic.answeredBy(), traffic.failed.Load())
	require.NoError(t, err)

	assert.Equal(t, "2", e.serving(t))
	require.NotNil(t, out.Rollout)
	assert.Equal(t, deploystate.OutcomePromoted, out.Rollout.Outcome)
	agreement := checkNamed(t, out.Rollout.Steps[0].Checks, "agreement")
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

func checkNamed(t *testing.T, checks []deploystate.Check, name string) deploystate.Check {
	t.Helper()
	for _, c := range checks {
		if c.Name == name {
			return c
		}
	}
	require.Failf(t, "no such check", "no check %q in %+v", name, checks)
	return deploystate.Check{}
}
