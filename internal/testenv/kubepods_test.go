package testenv_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/modelship/modelship/internal/plumbing/projectpath"
	"github.com/modelship/modelship/internal/testenv"
	"github.com/modelship/modelship/serving/oip"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// Versions of the two Deployments; the weak one has a character a label cannot hold.
const (
	weakVersion   = "1.0.0+weak"
	strongVersion = "2.0.0"
)

// podsEnv is a namespace with one pod of the weak version and three of the strong one behind
// one Service, all served by the harness.
type podsEnv struct {
	kube *testenv.KubeControlPlane
	ns   string
	port int32
}

func newPodsEnv(t *testing.T) *podsEnv {
	t.Helper()
	kube := testenv.SharedKube(t)
	// A namespace of the run's own: -count=N runs each test again on the same control plane.
	ns := strings.ToLower(strings.TrimPrefix(t.Name(), "Test"))
	ns = fmt.Sprintf("%s-%d", ns[:min(len(ns), 50)], rand.IntN(1e6))
	e := &podsEnv{kube: kube, ns: ns, port: kube.ServePods(t)}
	kube.ServeModelVersion(t, weakVersion, projectpath.Join(t, "models/digits-weak.onnx"))
	ctx := context.Background()
	_, err := kube.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: e.ns}}, metav1.CreateOptions{})
	require.NoError(t, err)
	// The weak pods' env says more than their labels can: the real version, a batch limit, and
	// an address the harness must override.
	e.deployment(t, "weak", weakVersion, 1, map[string]string{"MODELSHIP_MAX_BATCH": "1", "MODELSHIP_ADDR": ":1"})
	e.deployment(t, "strong", strongVersion, 3, nil)
	e.service(t, "digits", "digits")
	e.waitEndpoints(t, "digits", 4)
	return e
}

func (e *podsEnv) deployment(t *testing.T, track, version string, replicas int32, env map[string]string) {
	t.Helper()
	labels := map[string]string{"app": "digits", "track": track}
	podLabels := map[string]string{"app": "digits", "track": track,
		"dev.modelship.model.name": "digits", "dev.modelship.model.version": strings.ReplaceAll(version, "+", "_")}
	vars := []corev1.EnvVar{{Name: "MODELSHIP_MODEL_NAME", Value: "digits"}, {Name: "MODELSHIP_MODEL_VERSION", Value: version}}
	for k, v := range env {
		vars = append(vars, corev1.EnvVar{Name: k, Value: v})
	}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "digits-" + track, Namespace: e.ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: podLabels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "model-server", Image: "digits:" + version, Env: vars,
					Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: e.port}}}}},
			},
		},
	}
	_, err := e.kube.Client.AppsV1().Deployments(e.ns).Create(context.Background(), d, metav1.CreateOptions{})
	require.NoError(t, err)
}

func (e *podsEnv) service(t *testing.T, name, app string) *corev1.Service {
	t.Helper()
	svc, err := e.kube.Client.CoreV1().Services(e.ns).Create(context.Background(), &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: e.ns},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": app},
			Ports: []corev1.ServicePort{{Name: "http", Port: e.port, TargetPort: intstr.FromString("http")}}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	return svc
}

func (e *podsEnv) serviceURL(t *testing.T, name string) string {
	t.Helper()
	svc, err := e.kube.Client.CoreV1().Services(e.ns).Get(context.Background(), name, metav1.GetOptions{})
	require.NoError(t, err)
	return fmt.Sprintf("http://%s:%d", svc.Spec.ClusterIP, e.port)
}

// waitEndpoints waits until the Service has n ready endpoints.
func (e *podsEnv) waitEndpoints(t *testing.T, service string, n int) {
	t.Helper()
	require.Eventually(t, func() bool {
		slices, err := e.kube.Client.DiscoveryV1().EndpointSlices(e.ns).List(context.Background(),
			metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + service})
		if err != nil {
			return false
		}
		ready := 0
		for _, s := range slices.Items {
			for _, ep := range s.Endpoints {
				if ep.Conditions.Ready != nil && *ep.Conditions.Ready {
					ready++
				}
			}
		}
		return ready == n
	}, time.Minute, 100*time.Millisecond, "%d ready endpoints of %s", n, service)
}

func (e *podsEnv) pods(t *testing.T, track string) []corev1.Pod {
	t.Helper()
	list, err := e.kube.Client.CoreV1().Pods(e.ns).List(context.Background(), metav1.ListOptions{LabelSelector: "track=" + track})
	require.NoError(t, err)
	return list.Items
}

// scrape reads one counter of a pod's /metrics through the API server's pod proxy, as the
// canary analysis does.
func (e *podsEnv) scrape(t *testing.T, pod, metric string) float64 {
	t.Helper()
	raw, err := e.kube.Client.CoreV1().Pods(e.ns).ProxyGet("http", pod, strconv.Itoa(int(e.port)), "/metrics", nil).DoRaw(context.Background())
	require.NoError(t, err)
	sc := bufio.NewScanner(strings.NewReader(string(raw)))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), metric+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			require.NoError(t, err)
			return f
		}
	}
	t.Fatalf("pod %s has no %s", pod, metric)
	return 0
}

func (e *podsEnv) metadata(t *testing.T, pod string) oip.ModelMetadata {
	t.Helper()
	raw, err := e.kube.Client.CoreV1().Pods(e.ns).ProxyGet("http", pod, strconv.Itoa(int(e.port)), "/v2/models/digits", nil).DoRaw(context.Background())
	require.NoError(t, err)
	var meta oip.ModelMetadata
	require.NoError(t, json.Unmarshal(raw, &meta))
	return meta
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:])
}

// Every pod has a model server of its own, of the model its version was given, with the
// pod's MODELSHIP_* environment; a pod made again gets a fresh one.
func TestEachPodHasItsOwnModelServer(t *testing.T) {
	e := newPodsEnv(t)
	rows := testenv.DigitsRows(t)
	weak, strong := e.pods(t, "weak"), e.pods(t, "strong")
	require.Len(t, weak, 1)
	require.Len(t, strong, 3)

	// Pod i gets i+1 requests, straight to its address: each counts its own.
	all := append(weak, strong...)
	before := map[string]float64{}
	for _, pod := range all {
		before[pod.Name] = e.scrape(t, pod.Name, "modelship_inference_rows_total")
	}
	for i, pod := range all {
		c := oip.NewClient(fmt.Sprintf("http://%s:%d", pod.Status.PodIP, e.port))
		for n := 0; n <= i; n++ {
			_, err := c.Infer(context.Background(), "digits", "input", rows[:1])
			require.NoError(t, err, "pod %s", pod.Name)
		}
	}
	for i, pod := range all {
		assert.Equal(t, float64(i+1), e.scrape(t, pod.Name, "modelship_inference_rows_total")-before[pod.Name], "rows pod %s ran", pod.Name)
	}

	// The weak version's pods serve the file ServeModelVersion gave it, the rest the reference.
	assert.Equal(t, fileSHA256(t, projectpath.Join(t, "models/digits-weak.onnx")), e.metadata(t, weak[0].Name).Params["sha256"])
	assert.Equal(t, fileSHA256(t, projectpath.Join(t, "models/digits-reference.onnx")), e.metadata(t, strong[0].Name).Params["sha256"])

	// The pod's env reached its server: the version as the env has it (the label cannot hold
	// the '+'), and the weak pods' batch limit of one row.
	weakClient := oip.NewClient(fmt.Sprintf("http://%s:%d", weak[0].Status.PodIP, e.port))
	resp, err := weakClient.Infer(context.Background(), "digits", "input", rows[:1])
	require.NoError(t, err)
	assert.Equal(t, weakVersion, resp.ModelVersion)
	_, err = weakClient.Infer(context.Background(), "digits", "input", rows[:2])
	assert.ErrorContains(t, err, "over the limit of 1", "MODELSHIP_MAX_BATCH=1 reached the weak pod's server")
	_, err = oip.NewClient(fmt.Sprintf("http://%s:%d", strong[0].Status.PodIP, e.port)).Infer(context.Background(), "digits", "input", rows[:2])
	assert.NoError(t, err, "the strong pods have no such limit")

	// A pod made again is a new process: its counters start from nothing.
	require.NoError(t, e.kube.Client.CoreV1().Pods(e.ns).Delete(context.Background(), strong[0].Name, metav1.DeleteOptions{}))
	e.waitEndpoints(t, "digits", 4)
	var fresh string
	require.Eventually(t, func() bool {
		for _, pod := range e.pods(t, "strong") {
			if pod.Name != strong[0].Name && pod.Name != strong[1].Name && pod.Name != strong[2].Name && pod.Status.PodIP != "" {
				fresh = pod.Name
			}
		}
		return fresh != ""
	}, time.Minute, 100*time.Millisecond)
	assert.Zero(t, e.scrape(t, fresh, "modelship_inference_rows_total"), "pod %s replaced %s", fresh, strong[0].Name)
}

// Traffic to a Service's ClusterIP spreads over its ready endpoints as kube-proxy spreads it:
// one weak pod of four answers about a quarter.
func TestClusterIPTrafficSpreadsOverTheEndpoints(t *testing.T) {
	e := newPodsEnv(t)
	traffic := testenv.StartTraffic(t, e.serviceURL(t, "digits"), "digits", testenv.DigitsRows(t), 100)
	time.Sleep(4 * time.Second)
	stats := traffic.Stop()
	t.Logf("%d requests: %v, %d errors %q, %d skipped", stats.Sent, stats.Answered, stats.Errors, stats.ErrorSamples, stats.Skipped)

	assert.Zero(t, stats.Errors)
	assert.GreaterOrEqual(t, stats.Sent, 300)
	assert.Equal(t, stats.Sent, stats.Answered[weakVersion]+stats.Answered[strongVersion], "only the two versions answered")
	share := stats.Share(weakVersion, stats.Start, time.Now())
	assert.InDelta(t, 0.275, share, 0.175, "one endpoint of four: a share between 10%% and 45%%")
	assert.GreaterOrEqual(t, stats.MaxShare(weakVersion, time.Second), share, "no second had less than the whole run's share at its busiest")
}

// A Service none of whose endpoints is ready answers 503 with a message, as a ClusterIP with
// no endpoints would refuse the connection.
func TestAServiceWithoutReadyEndpointsAnswers503(t *testing.T) {
	e := newPodsEnv(t)
	e.service(t, "nobody", "nobody")
	resp, err := http.Get(e.serviceURL(t, "nobody") + "/v2/health/ready")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.Contains(t, string(body), "no ready endpoint")
}
