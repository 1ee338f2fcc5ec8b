package kubernetes_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/modelship/modelship/internal/deploy"
	"github.com/modelship/modelship/internal/deploy/deploytest"
	"github.com/modelship/modelship/internal/deploy/imageref"
	"github.com/modelship/modelship/internal/deploy/kubernetes"
	"github.com/modelship/modelship/internal/deploystate"
	"github.com/modelship/modelship/internal/deploystate/store"
	"github.com/modelship/modelship/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

func sha(n int) string { return fmt.Sprintf("%040x", n) }

// kubeEnv is one test's namespace on the shared control plane, with its own deploy state.
type kubeEnv struct {
	ns     string
	cfg    kubernetes.Config
	target *kubernetes.Target
	deps   deploy.Deps
	store  *store.Store
}

func newKubeEnv(t *testing.T, change func(*kubernetes.Config)) *kubeEnv {
	t.Helper()
	return newKubeEnvNamed(t, t.Name(), change)
}

func newKubeEnvNamed(t testing.TB, name string, change func(*kubernetes.Config)) *kubeEnv {
	t.Helper()
	kube := testenv.SharedKube(t)
	srv := testenv.SharedMinIO(t)
	pushReleases(t)
	ns := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(name))
	if len(ns) > 50 {
		ns = ns[:50]
	}
	_, err := kube.Client.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	require.NoError(t, err)
	// The pods answer on a port of the test's own, through real model servers (ServePods), and
	// every deploy smoke-tests them through the API server's pod proxy as it would on a cluster.
	cfg := kubernetes.Config{Client: kube.Client, REST: kube.Config, Port: kube.ServePods(t), Namespace: ns, Name: "digits",
		Environment: ns, Replicas: 2, ProgressDeadline: 4 * time.Second, RolloutTimeout: time.Minute, Resolve: imageref.Resolve, Labels: imageref.Labels}
	if change != nil {
		change(&cfg)
	}
	target, err := kubernetes.New(cfg)
	require.NoError(t, err)
	states := store.New(srv.Client(t), srv.Bucket(t, "state"))
	return &kubeEnv{ns: ns, cfg: cfg, target: target, store: states, deps: deploy.Deps{Target: target, State: states}}
}

// KWOK never pulls images, but the target pins each tag to its digest at the registry: the
// releases are small random images pushed to the test registry, once per package.
var (
	imagesOnce sync.Once
	imageRepo  = "registry.test/digits" // until pushReleases ran: only the dry runs use it
	digests    = map[int]string{}
)

func pushReleases(t testing.TB) {
	imagesOnce.Do(func() {
		reg := testenv.SharedRegistry(t)
		for n := 1; n <= 9; n++ {
			digests[n] = reg.PushRandomImage(t, fmt.Sprintf("digits:%s", sha(n)))
		}
		imageRepo = reg.Addr + "/digits"
	})
}

// kubeRelease n is model version n; its pods serve the reference weights, so the fixture's
// first sample is its smoke inference.
func kubeRelease(n int) deploy.Release {
	return deploy.Release{Image: fmt.Sprintf("%s:%s", imageRepo, sha(n)), ModelName: "digits", ModelVersion: fmt.Sprint(n), GitSHA: sha(n), Smoke: smokeSample}
}

var smokeSample = func() deploy.Smoke {
	s, err := deploy.SmokeFromFixture("../../../tests/fixtures/digits_validation.json")
	if err != nil {
		panic(err)
	}
	return s
}()

// pinned is what the colour's Deployment runs for release n: its tag with the digest added.
func pinned(n int) string { return kubeRelease(n).Image + "@" + strings.SplitN(digests[n], "@", 2)[1] }

func (e *kubeEnv) deploy(t *testing.T, n int) (*deploy.Outcome, error) {
	t.Helper()
	return deploy.Deploy(context.Background(), e.deps, deploy.DeployRequest{Environment: e.ns, Branch: "main", Release: kubeRelease(n)})
}

// selected is the colour the Service selects.
func (e *kubeEnv) selected(t *testing.T) string {
	t.Helper()
	svc, err := e.cfg.Client.CoreV1().Services(e.ns).Get(context.Background(), "digits", metav1.GetOptions{})
	require.NoError(t, err)
	return svc.Spec.Selector["dev.modelship.colour"]
}

// endpointColours are the colours of the pods behind the Service's endpoints.
func (e *kubeEnv) endpointColours(t *testing.T) map[string]int {
	t.Helper()
	ctx := context.Background()
	slices, err := e.cfg.Client.DiscoveryV1().EndpointSlices(e.ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=digits"})
	require.NoError(t, err)
	colours := map[string]int{}
	for _, s := range slices.Items {
		for _, ep := range s.Endpoints {
			require.NotNil(t, ep.TargetRef)
			pod, err := e.cfg.Client.CoreV1().Pods(e.ns).Get(ctx, ep.TargetRef.Name, metav1.GetOptions{})
			require.NoError(t, err)
			colours[pod.Labels["dev.modelship.colour"]]++
		}
	}
	return colours
}

func (e *kubeEnv) image(t *testing.T, colour string) (string, int32) {
	t.Helper()
	d, err := e.cfg.Client.AppsV1().Deployments(e.ns).Get(context.Background(), "digits-"+colour, metav1.GetOptions{})
	require.NoError(t, err)
	return d.Spec.Template.Spec.Containers[0].Image, d.Status.AvailableReplicas
}

func TestKubernetesBlueGreenDeploy(t *testing.T) {
	e := newKubeEnv(t, nil)
	out, err := e.deploy(t, 1)
	require.NoError(t, err)
	t.Logf("first deploy: %s", out.Result.Steps)
	assert.Equal(t, kubernetes.Blue, e.selected(t))
	assert.Equal(t, map[string]int{kubernetes.Blue: 2}, e.endpointColours(t))

	out, err = e.deploy(t, 2)
	require.NoError(t, err)
	t.Logf("blue-green switch: %s", out.Result.Steps)
	assert.Equal(t, kubernetes.Green, e.selected(t))
	assert.Equal(t, map[string]int{kubernetes.Green: 2}, e.endpointColours(t), "the endpoints moved to the new colour only")
	img, avail := e.image(t, kubernetes.Blue)
	assert.Equal(t, pinned(1), img, "the pods run the digest the registry served for the tag")
	assert.Equal(t, int32(2), avail, "the old colour keeps running for a fast rollback")

	st, err := e.store.Load(context.Background(), e.ns, store.LoadOptions{})
	require.NoError(t, err)
	assert.Equal(t, "2", st.Current.ModelVersion)
	assert.Equal(t, "kubernetes", st.Current.Target)
	assert.Equal(t, digests[2], st.Current.Image, "the state records the image by digest")
	require.Len(t, st.History, 1)
	assert.Equal(t, digests[1], st.History[0].Image)
}

func TestKubernetesStuckRolloutLeavesTheServiceAlone(t *testing.T) {
	e := newKubeEnv(t, nil)
	_, err := e.deploy(t, 1)
	require.NoError(t, err)

	// No node has this label: the new pods stay Pending and the rollout cannot progress.
	stuck, err := kubernetes.New(func() kubernetes.Config {
		c := e.cfg
		c.NodeSelector = map[string]string{"modelship.test/pool": "nowhere"}
		return c
	}())
	require.NoError(t, err)
	deps := e.deps
	deps.Target = stuck
	start := time.Now()
	_, err = deploy.Deploy(context.Background(), deps, deploy.DeployRequest{Environment: e.ns, Branch: "main", Release: kubeRelease(2)})
	require.ErrorIs(t, err, kubernetes.ErrRolloutStuck)
	assert.ErrorContains(t, err, "ProgressDeadlineExceeded")
	assert.ErrorContains(t, err, `the Service still selects "blue"`)
	t.Logf("stuck rollout detected after %s", time.Since(start).Round(time.Millisecond))
	assert.Equal(t, kubernetes.Blue, e.selected(t))
	assert.Equal(t, map[string]int{kubernetes.Blue: 2}, e.endpointColours(t))

	st, err := e.store.Load(context.Background(), e.ns, store.LoadOptions{})
	require.NoError(t, err)
	assert.Equal(t, "1", st.Current.ModelVersion, "deploy_state.json still names v1")
	_, err = e.cfg.Client.AppsV1().Deployments(e.ns).Get(context.Background(), "digits-green", metav1.GetOptions{})
	assert.True(t, apierrors.IsNotFound(err), "the green Deployment this deploy created was removed again: %v", err)
}

// Every pod of the new colour is smoke-tested through the API server's pod proxy before the
// Service moves: a release whose inference comes back wrong never takes traffic, and the idle
// colour is put back.
func TestKubernetesAWrongSmokeInferenceKeepsTheServiceOnTheLiveColour(t *testing.T) {
	e := newKubeEnv(t, nil)
	_, err := e.deploy(t, 1)
	require.NoError(t, err)

	wrong := kubeRelease(2)
	wrong.Smoke.Want = (wrong.Smoke.Want + 1) % 10
	_, err = deploy.Deploy(context.Background(), e.deps, deploy.DeployRequest{Environment: e.ns, Branch: "main", Release: wrong})
	require.ErrorIs(t, err, deploy.ErrVerification)
	assert.ErrorContains(t, err, "smoke inference predicted class")
	assert.ErrorContains(t, err, `the Service still selects "blue"`)
	assert.Equal(t, kubernetes.Blue, e.selected(t))
	assert.Equal(t, map[string]int{kubernetes.Blue: 2}, e.endpointColours(t))
	st, err := e.store.Load(context.Background(), e.ns, store.LoadOptions{})
	require.NoError(t, err)
	assert.Equal(t, "1", st.Current.ModelVersion)
}

// A release given no smoke inference runs the one its image carries (read from the registry's
// image config, as build-image baked it in), and the state records it.
func TestKubernetesTheSmokeInferenceTravelsWithTheImage(t *testing.T) {
	e := newKubeEnv(t, nil)
	label, err := deploy.SmokeLabel(smokeSample)
	require.NoError(t, err)
	reg := testenv.SharedRegistry(t)
	reg.PushRandomImageWithLabels(t, "digits:labelled", map[string]string{deploy.LabelSmoke: label, deploy.LabelModelVersion: "7"})
	rel := deploy.Release{Image: reg.Addr + "/digits:labelled", ModelName: "digits", ModelVersion: "8", GitSHA: sha(7)}
	_, err = deploy.Deploy(context.Background(), e.deps, deploy.DeployRequest{Environment: e.ns, Branch: "main", Release: rel})
	require.ErrorIs(t, err, deploy.ErrModelMismatch, "the image's labels name version 7")
	_, err = e.cfg.Client.AppsV1().Deployments(e.ns).Get(context.Background(), "digits-blue", metav1.GetOptions{})
	assert.True(t, apierrors.IsNotFound(err), "refused before anything was applied: %v", err)

	rel.ModelVersion = "7"
	out, err := deploy.Deploy(context.Background(), e.deps, deploy.DeployRequest{Environment: e.ns, Branch: "main", Release: rel})
	require.NoError(t, err)
	assert.Equal(t, smokeSample, out.Result.Smoke)
	assert.Contains(t, out.Result.Steps.String(), "labels")
	st, err := e.store.Load(context.Background(), e.ns, store.LoadOptions{})
	require.NoError(t, err)
	require.NotNil(t, st.Current.Smoke)
	assert.Equal(t, smokeSample.Input, st.Current.Smoke.Input)
}

// Without a way to the pods (no API server connection to proxy through, no --smoke-url), a
// deploy refuses before it applies anything, unless told to go without a smoke inference, which
// the state then records.
func TestKubernetesADeployThatCannotSmokeTestRefusesUnlessNoSmoke(t *testing.T) {
	e := newKubeEnv(t, nil)
	blind := e.cfg
	blind.REST = nil
	target, err := kubernetes.New(blind)
	require.NoError(t, err)
	deps := e.deps
	deps.Target = target

	_, err = deploy.Deploy(context.Background(), deps, deploy.DeployRequest{Environment: e.ns, Branch: "main", Release: kubeRelease(1)})
	require.ErrorIs(t, err, kubernetes.ErrCannotSmoke)
	assert.ErrorContains(t, err, "--no-smoke")
	_, err = e.cfg.Client.AppsV1().Deployments(e.ns).Get(context.Background(), "digits-blue", metav1.GetOptions{})
	assert.True(t, apierrors.IsNotFound(err), "nothing was applied: %v", err)

	rel := kubeRelease(1)
	rel.Smoke, rel.NoSmoke = deploy.Smoke{}, true
	_, err = deploy.Deploy(context.Background(), deps, deploy.DeployRequest{Environment: e.ns, Branch: "main", Release: rel})
	require.NoError(t, err)
	assert.Equal(t, kubernetes.Blue, e.selected(t))
	st, err := e.store.Load(context.Background(), e.ns, store.LoadOptions{})
	require.NoError(t, err)
	assert.True(t, st.Current.NoSmoke, "the state says it went live without a smoke inference")
}

// KWOK's pods never pull an image, so the test plays the kubelet: the new pods are left
// unscheduled (a node selector no node has) and the test writes the status a kubelet writes
// when the image cannot be pulled. The deploy must fail on that status at once, not wait out a
// progress deadline of a minute, and put the idle colour back as it was.
func TestKubernetesAPodThatCannotPullFailsTheRolloutAndTheIdleColourIsPutBack(t *testing.T) {
	e := newKubeEnv(t, nil)
	for n := 1; n <= 2; n++ { // v1 blue, v2 green
		_, err := e.deploy(t, n)
		require.NoError(t, err)
	}
	cfg := e.cfg
	cfg.NodeSelector = map[string]string{"modelship.test/pool": "nowhere"}
	cfg.ProgressDeadline = time.Minute
	cfg.RolloutTimeout = 2 * time.Minute
	stuck, err := kubernetes.New(cfg)
	require.NoError(t, err)
	deps := e.deps
	deps.Target = stuck

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go e.failPulls(ctx, t, kubeRelease(3).GitSHA)
	_, err = deploy.Deploy(context.Background(), deps, deploy.DeployRequest{Environment: e.ns, Branch: "main", Release: kubeRelease(3)})
	require.ErrorIs(t, err, kubernetes.ErrRolloutStuck)
	assert.ErrorContains(t, err, "ImagePullBackOff")
	assert.ErrorContains(t, err, "Back-off pulling image")
	assert.NotContains(t, err.Error(), "ProgressDeadlineExceeded", "failed on the pod's status, not the deadline")
	assert.ErrorContains(t, err, "was given back its previous spec ("+pinned(1)+")")

	assert.Equal(t, kubernetes.Green, e.selected(t), "traffic never left v2")
	img, _ := e.image(t, kubernetes.Blue)
	assert.Equal(t, pinned(1), img, "blue runs v1 again")
	out, err := deploy.Rollback(context.Background(), e.deps, deploy.RollbackRequest{Environment: e.ns, To: deploy.ToPrevious, Reason: "v2 unhealthy"})
	require.NoError(t, err)
	assert.True(t, out.Result.Reused, "so the rollback to v1 is still a selector switch")
	assert.Equal(t, kubernetes.Blue, e.selected(t))
}

// failPulls writes an image pull back-off into every pod of the release until ctx ends.
func (e *kubeEnv) failPulls(ctx context.Context, t *testing.T, gitSHA string) {
	pods := e.cfg.Client.CoreV1().Pods(e.ns)
	for ctx.Err() == nil {
		list, err := pods.List(ctx, metav1.ListOptions{LabelSelector: deploy.LabelGitSHA + "=" + gitSHA})
		if err == nil {
			for _, p := range list.Items {
				if len(p.Status.ContainerStatuses) > 0 {
					continue
				}
				p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "model-server", Image: p.Spec.Containers[0].Image,
					State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff",
						Message: "Back-off pulling image \"" + p.Spec.Containers[0].Image + "\""}}}}
				if _, err := pods.UpdateStatus(ctx, &p, metav1.UpdateOptions{}); err != nil && ctx.Err() == nil {
					t.Logf("write pod status: %v", err)
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// An installation made before the colour label was renamed (modelship.dev/colour) keeps working:
// the live colour is read off the old selector, and the idle Deployment, whose selector cannot
// change, is recreated with the new one.
func TestKubernetesAnInstallationWithTheOldColourLabelIsTakenOver(t *testing.T) {
	e := newKubeEnv(t, nil)
	ctx := context.Background()
	dep, svc := e.target.Manifests(kubeRelease(1), kubernetes.Blue)
	old := func(m map[string]string) {
		delete(m, "dev.modelship.colour")
		m["modelship.dev/colour"] = kubernetes.Blue
	}
	old(dep.Spec.Selector.MatchLabels)
	old(dep.Spec.Template.Labels)
	old(svc.Spec.Selector)
	_, err := e.cfg.Client.AppsV1().Deployments(e.ns).Create(ctx, dep, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = e.cfg.Client.CoreV1().Services(e.ns).Create(ctx, svc, metav1.CreateOptions{})
	require.NoError(t, err)

	for n := 2; n <= 3; n++ { // v2 to green beside the old blue, then v3 onto blue itself
		_, err := e.deploy(t, n)
		require.NoError(t, err, "deploy v%d", n)
	}
	got, err := e.cfg.Client.CoreV1().Services(e.ns).Get(ctx, "digits", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"app.kubernetes.io/name": "digits", "dev.modelship.colour": kubernetes.Blue}, got.Spec.Selector)
	blue, err := e.cfg.Client.AppsV1().Deployments(e.ns).Get(ctx, "digits-blue", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, kubernetes.Blue, blue.Spec.Selector.MatchLabels["dev.modelship.colour"])
	assert.NotContains(t, blue.Spec.Selector.MatchLabels, "modelship.dev/colour")
	assert.Equal(t, map[string]int{kubernetes.Blue: 2}, e.endpointColours(t))
}

func TestKubernetesRollbackBySwitchThenByImageThenHalt(t *testing.T) {
	e := newKubeEnv(t, nil)
	for n := 1; n <= 3; n++ { // v1 blue, v2 green, v3 blue (v1 replaced)
		_, err := e.deploy(t, n)
		require.NoError(t, err)
	}
	require.Equal(t, kubernetes.Blue, e.selected(t))
	ctx := context.Background()
	back := func(reason string) (*deploy.Outcome, error) {
		return deploy.Rollback(ctx, e.deps, deploy.RollbackRequest{Environment: e.ns, To: deploy.ToPrevious, Reason: reason})
	}

	// v2 still runs on green: the rollback is a selector switch.
	out, err := back("v3 unhealthy")
	require.NoError(t, err)
	assert.True(t, out.Result.Reused)
	assert.Equal(t, kubernetes.Green, e.selected(t))
	assert.Equal(t, map[string]int{kubernetes.Green: 2}, e.endpointColours(t))
	t.Logf("rollback by selector switch: %s (API time)", out.Result.Steps)
	for _, s := range out.Result.Steps {
		assert.NotEqual(t, "rollout", s.Name, "no rollout when the previous colour still runs")
	}

	// v1 was replaced on blue by v3: the rollback sets v1's image on blue, waits, then switches.
	out, err = back("v2 unhealthy too")
	require.NoError(t, err)
	assert.False(t, out.Result.Reused)
	assert.Equal(t, kubernetes.Blue, e.selected(t))
	img, _ := e.image(t, kubernetes.Blue)
	assert.True(t, imageref.Same(digests[1], img), "blue runs v1's digest again: %s", img)
	t.Logf("rollback by image: %s", out.Result.Steps)

	_, err = deploy.Rollback(ctx, e.deps, deploy.RollbackRequest{Environment: e.ns, To: deploy.ToCurrent, Reason: "third"})
	require.ErrorIs(t, err, deploystate.ErrHalted, "the third rollback within an hour halts")
	assert.Equal(t, kubernetes.Blue, e.selected(t), "and changes nothing on the cluster")
}

func TestKubernetesDryRunPrintsTheManifests(t *testing.T) {
	e := newKubeEnv(t, func(c *kubernetes.Config) { c.CPURequest, c.MemoryLimit = "250m", "512Mi" })
	var out bytes.Buffer
	require.NoError(t, e.target.DryRun(context.Background(), kubeRelease(1), &out))
	y := out.String()
	for _, want := range []string{"kind: Deployment", "name: digits-blue", "kind: Service", "path: /v2/health/ready",
		"image: " + kubeRelease(1).Image, "cpu: 250m", "memory: 512Mi", "dev.modelship.colour: blue", "progressDeadlineSeconds: 4"} {
		assert.Contains(t, y, want)
	}
	list, err := e.cfg.Client.AppsV1().Deployments(e.ns).List(context.Background(), metav1.ListOptions{})
	require.NoError(t, err)
	assert.Empty(t, list.Items, "a dry run creates nothing")

	_, err = kubernetes.New(kubernetes.Config{Client: e.cfg.Client, CPURequest: "lots"})
	assert.Error(t, err)
}

// The conformance suite every target passes, on the test control plane. KWOK runs any image,
// so the broken release goes to a target whose pods no node can take: its rollout cannot progress.
func TestConformance(t *testing.T) {
	deploytest.Run(t, func(t *testing.T) *deploytest.Env {
		e := newKubeEnv(t, nil)
		stuckCfg := e.cfg
		stuckCfg.NodeSelector = map[string]string{"modelship.test/pool": "nowhere"}
		stuck, err := kubernetes.New(stuckCfg)
		require.NoError(t, err)
		broken := kubeRelease(9)
		deps := e.deps
		deps.Target = routed{normal: e.target, stuck: stuck, broken: broken.Image}
		return &deploytest.Env{Name: e.ns, Deps: deps, Release: kubeRelease, Broken: broken,
			Serving: func(t *testing.T) string {
				colour := e.selected(t)
				if colour == "" {
					return ""
				}
				d, err := e.cfg.Client.AppsV1().Deployments(e.ns).Get(context.Background(), "digits-"+colour, metav1.GetOptions{})
				require.NoError(t, err)
				return d.Spec.Template.Labels[deploy.LabelGitSHA]
			},
			Forget: func(t *testing.T, n int) {
				for _, colour := range []string{kubernetes.Blue, kubernetes.Green} {
					if colour == e.selected(t) {
						continue
					}
					if d, err := e.cfg.Client.AppsV1().Deployments(e.ns).Get(context.Background(), "digits-"+colour, metav1.GetOptions{}); err == nil &&
						imageref.Same(d.Spec.Template.Spec.Containers[0].Image, digests[n]) {
						require.NoError(t, e.cfg.Client.AppsV1().Deployments(e.ns).Delete(context.Background(), "digits-"+colour, metav1.DeleteOptions{}))
					}
				}
			},
		}
	})
}

// routed sends one release to another target: the broken release to the one that cannot schedule.
type routed struct {
	normal, stuck deploy.Target
	broken        string
}

func (r routed) Name() string { return r.normal.Name() }

func (r routed) Deploy(ctx context.Context, rel deploy.Release) (*deploy.Result, error) {
	if rel.Image == r.broken {
		return r.stuck.Deploy(ctx, rel)
	}
	return r.normal.Deploy(ctx, rel)
}
