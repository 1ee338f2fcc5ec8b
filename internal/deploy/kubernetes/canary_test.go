package kubernetes_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/modelship/modelship/internal/deploy"
	"github.com/modelship/modelship/internal/deploy/analysis"
	"github.com/modelship/modelship/internal/deploy/deploytest"
	"github.com/modelship/modelship/internal/deploy/kubernetes"
	"github.com/modelship/modelship/internal/deploystate"
	"github.com/modelship/modelship/internal/deploystate/store"
	"github.com/modelship/modelship/internal/ml/dataset"
	"github.com/modelship/modelship/internal/plumbing/projectpath"
	"github.com/modelship/modelship/internal/testenv"
)

// Canary releases: pods of each version serve a model of their own (testenv.ServeModelVersion).
const (
	weakVersion = 6 // models/digits-weak.onnx: trained on shuffled labels
	slowVersion = 7 // the reference with a ballast branch: the same answers, tens of ms a row
)

// progressiveEnv is a namespace with 4 pods per colour (a 20% step is one candidate pod beside
// four stable ones), release 1 live, and clients sending traffic to the Service.
func progressiveEnv(t *testing.T) (*kubeEnv, *testenv.Traffic) {
	t.Helper()
	e := newKubeEnv(t, func(c *kubernetes.Config) { c.Replicas = 4 })
	kube := testenv.SharedKube(t)
	kube.ServeModelVersion(t, fmt.Sprint(weakVersion), projectpath.Join(t, "models/digits-weak.onnx"))
	kube.ServeModelVersion(t, fmt.Sprint(slowVersion), testenv.SlowReferenceModel(t))
	_, err := e.deploy(t, 1)
	require.NoError(t, err)
	svc, err := e.cfg.Client.CoreV1().Services(e.ns).Get(context.Background(), "digits", metav1.GetOptions{})
	require.NoError(t, err)
	// What clients send is skewed, as real traffic is: digits 0 to 2 only.
	traffic := testenv.StartTraffic(t, fmt.Sprintf("http://%s:%d", svc.Spec.ClusterIP, e.cfg.Port), "digits", skewedRows(t), 60)
	return e, traffic
}

func skewedRows(t *testing.T) [][]float32 {
	t.Helper()
	fx, err := dataset.ReadFixture(projectpath.Join(t, "tests/fixtures/digits_validation.json"))
	require.NoError(t, err)
	var rows [][]float32
	for _, s := range fx.Samples {
		if s.Label > 2 {
			continue
		}
		row := make([]float32, len(s.Features))
		for i, f := range s.Features {
			row[i] = float32(f)
		}
		rows = append(rows, row)
	}
	return rows
}

func canaryRollout() *deploy.Progressive {
	th := analysis.DefaultThresholds()
	th.MinRequests = 25
	return &deploy.Progressive{Strategy: deploy.StrategyCanary, Steps: []int{20, 50}, Interval: 3 * time.Second, MaxWait: 40 * time.Second, Thresholds: th}
}

func (e *kubeEnv) progressive(t *testing.T, rel deploy.Release, p *deploy.Progressive) (*deploy.Outcome, error) {
	t.Helper()
	return deploy.Deploy(context.Background(), e.deps, deploy.DeployRequest{Environment: e.ns, Branch: "main", Release: rel, Progressive: p})
}

// noSmoke is release n deployed without a smoke inference: the weak model would fail the
// reference's, and the canary is what must catch it here.
func noSmoke(n int) deploy.Release {
	rel := kubeRelease(n)
	rel.Smoke, rel.NoSmoke = deploy.Smoke{}, true
	return rel
}

func TestKubernetesCanaryAbortsAWeakModelAtTheFirstStep(t *testing.T) {
	e, traffic := progressiveEnv(t)
	out, err := e.progressive(t, noSmoke(weakVersion), canaryRollout())
	aborted := time.Now()
	require.ErrorIs(t, err, deploy.ErrRolloutAborted)
	time.Sleep(2 * time.Second)
	stats := traffic.Stop()

	require.NotNil(t, out.Rollout)
	logRollout(t, out)
	assert.Equal(t, deploystate.OutcomeAborted, out.Rollout.Outcome)
	require.Len(t, out.Rollout.Steps, 1, "aborted at the first step")
	step := out.Rollout.Steps[0]
	assert.InDelta(t, 0.2, step.EffectiveWeight, 1e-9, "one candidate pod beside four stable ones")
	drift := deploytest.Check(t, step.Checks, "drift(js)")
	assert.False(t, drift.Passed, "the weak model predicts other classes: %+v", drift)

	weak := fmt.Sprint(weakVersion)
	assert.Positive(t, stats.Share(weak, stats.Start, aborted), "the candidate took its first step's share")
	assert.LessOrEqual(t, stats.Share(weak, stats.Start, aborted), 0.35, "never more than about the first step's 20%%")
	after, _ := stats.Window(aborted.Add(time.Second), time.Now())
	assert.Zero(t, after[weak], "stable has all the traffic once aborted: %v", after)
	assert.Positive(t, after["1"])

	assert.Equal(t, kubernetes.Blue, e.selected(t), "the Service selects stable alone again")
	assert.Equal(t, map[string]int{kubernetes.Blue: 4}, e.endpointColours(t))
	st, err := e.store.Load(context.Background(), e.ns, store.LoadOptions{})
	require.NoError(t, err)
	assert.Equal(t, "1", st.Current.ModelVersion)
	require.Len(t, st.Rollouts, 1)
	assert.Equal(t, deploystate.OutcomeAborted, st.Rollouts[0].Outcome)
	require.Len(t, st.Rollbacks, 1, "an abort counts in the rollback budget")
	assert.Contains(t, st.Rollbacks[0].Reason, "canary aborted")
}

func TestKubernetesCanaryPromotesAGoodModelByItself(t *testing.T) {
	e, traffic := progressiveEnv(t)
	out, err := e.progressive(t, kubeRelease(2), canaryRollout())
	require.NoError(t, err)
	promoted := time.Now()
	time.Sleep(2 * time.Second)
	stats := traffic.Stop()

	require.NotNil(t, out.Rollout)
	logRollout(t, out)
	assert.Equal(t, deploystate.OutcomePromoted, out.Rollout.Outcome)
	require.Len(t, out.Rollout.Steps, 2)
	for i, want := range []float64{0.2, 0.5} {
		assert.InDelta(t, want, out.Rollout.Steps[i].EffectiveWeight, 1e-9)
		assert.True(t, out.Rollout.Steps[i].Passed, "step %d: %+v", i+1, out.Rollout.Steps[i].Checks)
	}
	assert.Equal(t, kubernetes.Green, e.selected(t))
	assert.Equal(t, map[string]int{kubernetes.Green: 4}, e.endpointColours(t), "100%: the candidate alone")
	after, _ := stats.Window(promoted.Add(time.Second), time.Now())
	assert.Zero(t, after["1"], "the old version answers no one after the promotion: %v", after)
	assert.Positive(t, after["2"])

	st, err := e.store.Load(context.Background(), e.ns, store.LoadOptions{})
	require.NoError(t, err)
	assert.Equal(t, "2", st.Current.ModelVersion)
	require.Len(t, st.Rollouts, 1)
	assert.Equal(t, deploystate.OutcomePromoted, st.Rollouts[0].Outcome)
	assert.Empty(t, st.Rollbacks)
}

func TestKubernetesCanaryAbortsASlowModelThatAgreesOnLatency(t *testing.T) {
	e, traffic := progressiveEnv(t)
	p := canaryRollout()
	// The ballast adds tens of milliseconds a row; stable answers in well under one. The
	// absolute limit is the gate's; the ratio against stable is what catches it.
	out, err := e.progressive(t, kubeRelease(slowVersion), p)
	require.ErrorIs(t, err, deploy.ErrRolloutAborted)
	traffic.Stop()
	require.NotNil(t, out.Rollout)
	logRollout(t, out)
	require.Len(t, out.Rollout.Steps, 1)
	checks := out.Rollout.Steps[0].Checks
	assert.True(t, deploytest.Check(t, checks, "drift(js)").Passed, "it predicts what stable predicts: %+v", checks)
	assert.False(t, deploytest.Check(t, checks, "p99_ratio").Passed, "it is aborted for its latency: %+v", checks)
	assert.Equal(t, kubernetes.Blue, e.selected(t))
}

func TestKubernetesShadowRefusesAWeakModelThatNeverTookTraffic(t *testing.T) {
	e, traffic := progressiveEnv(t)
	th := analysis.DefaultThresholds()
	th.MinRequests = 50
	out, err := e.progressive(t, noSmoke(weakVersion), &deploy.Progressive{Strategy: deploy.StrategyShadow, Interval: 3 * time.Second, MaxWait: 40 * time.Second, Thresholds: th})
	require.ErrorIs(t, err, deploy.ErrShadowRefused)
	stats := traffic.Stop()

	assert.Zero(t, stats.Answered[fmt.Sprint(weakVersion)], "a shadow answers no client")
	require.NotNil(t, out.Rollout)
	assert.Equal(t, deploystate.OutcomeRefused, out.Rollout.Outcome)
	agreement := deploytest.Check(t, out.Rollout.Steps[0].Checks, "agreement")
	assert.Less(t, agreement.Value, 0.5)
	assert.Equal(t, kubernetes.Blue, e.selected(t))
	_, err = e.cfg.Client.CoreV1().Services(e.ns).Get(context.Background(), "digits-shadow", metav1.GetOptions{})
	assert.Error(t, err, "the shadow's Service is gone")
	d, err := e.cfg.Client.AppsV1().Deployments(e.ns).Get(context.Background(), "digits-blue", metav1.GetOptions{})
	require.NoError(t, err)
	for _, env := range d.Spec.Template.Spec.Containers[0].Env {
		assert.NotContains(t, env.Name, "SHADOW", "the live pods mirror no more")
	}
	st, err := e.store.Load(context.Background(), e.ns, store.LoadOptions{})
	require.NoError(t, err)
	assert.Empty(t, st.Rollbacks, "nothing took traffic, nothing was rolled back")
	require.Len(t, st.Rollouts, 1)
}

// logRollout shows each step's analysis in -v output: the numbers the README quotes.
func logRollout(t *testing.T, out *deploy.Outcome) {
	t.Helper()
	t.Logf("%s %s; steps: %s", out.Rollout.Strategy, out.Rollout.Outcome, out.Result.Steps)
	for i, st := range out.Rollout.Steps {
		for _, c := range st.Checks {
			t.Logf("step %d (%d%%, effective %.2f, %.1fs): %s %.4g %s %.4g passed=%v %s", i+1, st.Weight, st.EffectiveWeight, st.Seconds, c.Name, c.Value, c.Op, c.Limit, c.Passed, c.Detail)
		}
	}
}
