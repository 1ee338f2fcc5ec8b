package testenv

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/modelship/modelship/internal/deploy"
	"github.com/modelship/modelship/internal/ml/reference"
	"github.com/modelship/modelship/internal/plumbing/projectpath"
)

// podCIDR is where KWOK gives the simulated pods their addresses (its --cidr).
const podCIDR = "10.244.0.0/16"

// serviceCIDR is where the API server gives Services their ClusterIPs
// (--service-cluster-ip-range).
const serviceCIDR = "10.96.0.0/16"

var (
	_, podNet, _     = net.ParseCIDR(podCIDR)
	_, serviceNet, _ = net.ParseCIDR(serviceCIDR)
)

// Pod labels the model servers are chosen by; the deploy target sets them (deploy.LabelModel*).
const (
	podLabelModelName    = "dev.modelship.model.name"
	podLabelModelVersion = "dev.modelship.model.version"
)

// defaultPodModel is what a pod serves unless ServeModelVersion says otherwise.
const defaultPodModel = "models/digits-reference.onnx"

// PodServers make KWOK's pods answer, and their Services' ClusterIPs, as kubelets and
// kube-proxy would. KWOK gives each pod an address in podCIDR but runs nothing; a route makes
// that range and serviceCIDR local to this host, and a listener on the pods' port hands each
// connection to a real model server of the pod it was addressed to: one process per pod (by
// UID, so a recreated pod gets a fresh one and no two pods share counters), started on first
// use, serving the model ServeModelVersion chose for the pod's version label with the pod's
// MODELSHIP_* environment. A connection to a ClusterIP goes to a ready endpoint of that Service
// chosen at random, as kube-proxy's iptables mode does. So the API server's pod proxy reaches
// a real server, as it would on a cluster, and traffic to a Service splits by endpoint count.
type PodServers struct {
	client       kubernetes.Interface
	defaultModel string
	binary       string

	// What kube-proxy and the kubelets would know: watched copies, looked up per request.
	pods         *mirror[*corev1.Pod]
	services     *mirror[*corev1.Service]
	slices       *mirror[*discoveryv1.EndpointSlice]
	stopWatching context.CancelFunc

	mu       sync.Mutex
	models   map[string]*modelChoice // safe version label → model file
	backends map[types.UID]*podBackend
	gone     map[types.UID]bool // deleted pods: a late request must not start them again

	initErr error // why the watches could not start
}

// modelChoice is the model file a version's pods serve, and the tests that asked for it.
type modelChoice struct {
	file   string
	owners map[testing.TB]bool
}

// podBackend is one pod's model server.
type podBackend struct {
	pod   string // namespace/name, for messages
	owner *podListener
	ready chan struct{} // closed once started (or failed: err)
	err   error
	proxy *httputil.ReverseProxy
	cmd   *exec.Cmd
	done  chan struct{} // closed when the process has exited
	stop  sync.Once
}

// podListener is one ServePods listener; the servers started through it stop with its test.
type podListener struct{ port int }

var (
	podRouteOnce sync.Once
	podRouteErr  error
)

// ServePods listens on a free port of every address in podCIDR and serviceCIDR, for a test
// whose pods and Services serve on it (kubernetes.Config.Port), until the test ends; the model
// servers its pods got stop then too. It needs root and ip to add the routes.
func (k *KubeControlPlane) ServePods(t testing.TB) int32 {
	t.Helper()
	p := k.podServers(t)
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatalf("listen for the pods: %v", err)
	}
	pl := &podListener{port: ln.Addr().(*net.TCPAddr).Port}
	srv := &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, &podConn{local: c.LocalAddr().(*net.TCPAddr), listener: pl})
		}}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = srv.Close()
		p.stopListener(pl)
	})
	return int32(pl.port)
}

// ServeModelVersion makes the pods whose version label is version (as the deploy target
// writes it: characters outside [A-Za-z0-9_.-] become '_') serve modelFile instead of the
// reference model, for pods started from now until the test ends. Two tests running at once
// cannot give one version two different files.
func (k *KubeControlPlane) ServeModelVersion(t testing.TB, version, modelFile string) {
	t.Helper()
	if _, err := os.Stat(modelFile); err != nil {
		t.Fatalf("serve model version %s: %v", version, err)
	}
	p := k.podServers(t)
	key := deploy.LabelValue(version)
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.models[key]
	if c == nil {
		c = &modelChoice{owners: map[testing.TB]bool{}}
		p.models[key] = c
	}
	if c.file != "" && c.file != modelFile {
		for owner := range c.owners {
			if owner != t {
				t.Fatalf("pods of version %s already serve %s for %s; use another version", version, c.file, owner.Name())
			}
		}
	}
	c.file = modelFile
	c.owners[t] = true
	t.Cleanup(func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		delete(c.owners, t)
		if len(c.owners) == 0 && p.models[key] == c {
			delete(p.models, key)
		}
	})
}

var (
	slowModelOnce sync.Once
	slowModelPath string
	slowModelErr  error
)

// SlowReferenceModel is the path of the reference model made slow (reference.SlowModel: the
// same answers, tens of milliseconds a row with gonnx), made once per test process (well under
// a second) and removed by Main.
func SlowReferenceModel(t testing.TB) string {
	t.Helper()
	slowModelOnce.Do(func() {
		dir, err := os.MkdirTemp("", "modelship-slow-model-")
		if err != nil {
			slowModelErr = fmt.Errorf("folder for the slow model: %w", err)
			return
		}
		sharedMu.Lock()
		sharedStop = append(sharedStop, func() { os.RemoveAll(dir) })
		sharedMu.Unlock()
		path := filepath.Join(dir, "digits-slow.onnx")
		if slowModelErr = reference.WriteSlowModel(projectpath.Join(t, "data/digits/digits.csv.gz"), path); slowModelErr == nil {
			slowModelPath = path
		}
	})
	if slowModelErr != nil {
		t.Fatalf("make the slow model: %v", slowModelErr)
	}
	return slowModelPath
}

// podServers starts, once per control plane, the routes, the model server binary and the
// watches that stand in for kube-proxy's view of the cluster.
func (k *KubeControlPlane) podServers(t testing.TB) *PodServers {
	t.Helper()
	podRouteOnce.Do(func() { podRouteErr = localRoutes() })
	if podRouteErr != nil {
		Missing(t, "kubernetes", fmt.Sprintf("the simulated pods cannot be made to answer: %v", podRouteErr))
	}
	k.podsOnce.Do(func() {
		p := &PodServers{client: k.Client, defaultModel: projectpath.Join(t, defaultPodModel),
			binary: Binary(t, "./serving/cmd/model-server"),
			models: map[string]*modelChoice{}, backends: map[types.UID]*podBackend{}, gone: map[types.UID]bool{}}
		k.pods = p
		if p.initErr = p.watch(); p.initErr != nil {
			return
		}
		// First in line at Main: the watches and servers stop before the API server does.
		sharedMu.Lock()
		sharedStop = append([]func(){p.stopAll}, sharedStop...)
		sharedMu.Unlock()
	})
	if k.pods.initErr != nil {
		t.Fatalf("watch the simulated cluster for the pods: %v", k.pods.initErr)
	}
	return k.pods
}

// watch mirrors the pods, Services and EndpointSlices of every namespace. (client-go's
// informers would do, but pull in a module go.mod does not list.)
func (p *PodServers) watch() error {
	ctx, cancel := context.WithCancel(context.Background())
	p.stopWatching = cancel
	core, discovery := p.client.CoreV1(), p.client.DiscoveryV1()
	p.pods = startMirror(ctx, "pods", func(ctx context.Context, o metav1.ListOptions) ([]*corev1.Pod, string, error) {
		l, err := core.Pods("").List(ctx, o)
		if err != nil {
			return nil, "", err
		}
		return pointers(l.Items), l.ResourceVersion, nil
	}, core.Pods("").Watch, p.podDeleted)
	p.services = startMirror(ctx, "services", func(ctx context.Context, o metav1.ListOptions) ([]*corev1.Service, string, error) {
		l, err := core.Services("").List(ctx, o)
		if err != nil {
			return nil, "", err
		}
		return pointers(l.Items), l.ResourceVersion, nil
	}, core.Services("").Watch, nil)
	p.slices = startMirror(ctx, "endpoint slices", func(ctx context.Context, o metav1.ListOptions) ([]*discoveryv1.EndpointSlice, string, error) {
		l, err := discovery.EndpointSlices("").List(ctx, o)
		if err != nil {
			return nil, "", err
		}
		return pointers(l.Items), l.ResourceVersion, nil
	}, discovery.EndpointSlices("").Watch, nil)
	deadline := time.After(time.Minute)
	for _, m := range []interface {
		waitSynced() <-chan struct{}
		lastError() error
	}{p.pods, p.services, p.slices} {
		select {
		case <-m.waitSynced():
		case <-deadline:
			cancel()
			return fmt.Errorf("no first list within a minute: %v", m.lastError())
		}
	}
	return nil
}

func pointers[T any](items []T) []*T {
	out := make([]*T, len(items))
	for i := range items {
		out[i] = &items[i]
	}
	return out
}

// mirror is a watched copy of one kind of object, keyed by namespace/name: a list, then a
// watch from its resource version, then a list again whenever the watch ends.
type mirror[T metav1.Object] struct {
	mu       sync.RWMutex
	items    map[string]T
	err      error
	synced   chan struct{}
	onDelete func(T)
}

func startMirror[T metav1.Object](ctx context.Context, what string,
	list func(context.Context, metav1.ListOptions) ([]T, string, error),
	watchFrom func(context.Context, metav1.ListOptions) (watch.Interface, error), onDelete func(T)) *mirror[T] {
	m := &mirror[T]{items: map[string]T{}, synced: make(chan struct{}), onDelete: onDelete}
	go func() {
		first := true
		for ctx.Err() == nil {
			if err := m.sync(ctx, what, list, watchFrom, &first); err != nil && ctx.Err() == nil {
				m.mu.Lock()
				m.err = err
				m.mu.Unlock()
				select {
				case <-ctx.Done():
				case <-time.After(200 * time.Millisecond):
				}
			}
		}
	}()
	return m
}

// sync lists, then follows the watch until it ends.
func (m *mirror[T]) sync(ctx context.Context, what string,
	list func(context.Context, metav1.ListOptions) ([]T, string, error),
	watchFrom func(context.Context, metav1.ListOptions) (watch.Interface, error), first *bool) error {
	items, rv, err := list(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list %s: %w", what, err)
	}
	fresh := make(map[string]T, len(items))
	for _, it := range items {
		fresh[key(it)] = it
	}
	m.mu.Lock()
	var deleted []T
	for k, old := range m.items {
		if cur, ok := fresh[k]; !ok || cur.GetUID() != old.GetUID() {
			deleted = append(deleted, old)
		}
	}
	m.items, m.err = fresh, nil
	m.mu.Unlock()
	m.deleted(deleted...)
	if *first {
		*first = false
		close(m.synced)
	}
	w, err := watchFrom(ctx, metav1.ListOptions{ResourceVersion: rv})
	if err != nil {
		return fmt.Errorf("watch %s: %w", what, err)
	}
	defer w.Stop()
	for ev := range w.ResultChan() {
		obj, ok := ev.Object.(T)
		switch {
		case ev.Type == watch.Error:
			return fmt.Errorf("watch %s: %v", what, ev.Object)
		case !ok:
		case ev.Type == watch.Added || ev.Type == watch.Modified:
			m.mu.Lock()
			old, had := m.items[key(obj)]
			m.items[key(obj)] = obj
			m.mu.Unlock()
			if had && old.GetUID() != obj.GetUID() {
				m.deleted(old)
			}
		case ev.Type == watch.Deleted:
			m.mu.Lock()
			delete(m.items, key(obj))
			m.mu.Unlock()
			m.deleted(obj)
		}
	}
	return nil
}

func (m *mirror[T]) deleted(objs ...T) {
	if m.onDelete != nil {
		for _, o := range objs {
			m.onDelete(o)
		}
	}
}

func key(o metav1.Object) string { return o.GetNamespace() + "/" + o.GetName() }

func (m *mirror[T]) waitSynced() <-chan struct{} { return m.synced }

func (m *mirror[T]) lastError() error {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.err
}

// find is every object match accepts.
func (m *mirror[T]) find(match func(T) bool) []T {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []T
	for _, o := range m.items {
		if match(o) {
			out = append(out, o)
		}
	}
	return out
}

// get is the object namespace/name.
func (m *mirror[T]) get(namespace, name string) (T, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	o, ok := m.items[namespace+"/"+name]
	return o, ok
}

type connKey struct{}

// podConn is what a connection was addressed to and, for a ClusterIP, the endpoint kube-proxy
// chose for it: the choice is made per connection, not per request.
type podConn struct {
	local    *net.TCPAddr
	listener *podListener

	mu       sync.Mutex
	endpoint types.UID
}

// ServeHTTP finds the pod the connection was addressed to, directly or through a Service's
// ClusterIP, and proxies to that pod's model server.
func (p *PodServers) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	conn, _ := r.Context().Value(connKey{}).(*podConn)
	if conn == nil {
		http.Error(w, "no local address", http.StatusInternalServerError)
		return
	}
	ip := conn.local.IP.String()
	pod, err := p.podAt(r.Context(), ip)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	if pod == nil {
		var status int
		pod, status, err = p.serviceEndpoint(r.Context(), conn, ip)
		if err != nil {
			http.Error(w, err.Error(), status)
			return
		}
	}
	b, err := p.backend(pod, conn.listener)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	b.proxy.ServeHTTP(w, r)
}

// podAt is the pod whose status.podIP is ip, or nil when no pod has it. KWOK hands a deleted
// pod's address to the next pod, so of several the newest one that still runs wins.
func (p *PodServers) podAt(ctx context.Context, ip string) (*corev1.Pod, error) {
	pods := p.pods.find(func(pod *corev1.Pod) bool { return pod.Status.PodIP == ip })
	if len(pods) == 0 && podNet.Contains(net.ParseIP(ip)) {
		// The watch may not have brought a pod made ready a moment ago: ask the API server.
		list, err := p.client.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "status.podIP=" + ip})
		if err != nil {
			return nil, fmt.Errorf("list the pods at %s: %w", ip, err)
		}
		for i := range list.Items {
			pods = append(pods, &list.Items[i])
		}
	}
	var best *corev1.Pod
	for _, pod := range pods {
		if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			continue
		}
		if best == nil || newerRunning(pod, best) {
			best = pod
		}
	}
	return best, nil
}

// newerRunning reports whether a is to be preferred to b for one address: not being deleted
// first, then the newer.
func newerRunning(a, b *corev1.Pod) bool {
	if (a.DeletionTimestamp == nil) != (b.DeletionTimestamp == nil) {
		return a.DeletionTimestamp == nil
	}
	return a.CreationTimestamp.After(b.CreationTimestamp.Time)
}

// serviceEndpoint plays kube-proxy for a connection to a ClusterIP: a ready endpoint of the
// Service, chosen uniformly at random once per connection.
func (p *PodServers) serviceEndpoint(ctx context.Context, conn *podConn, ip string) (*corev1.Pod, int, error) {
	svc, err := p.serviceAt(ctx, ip)
	if err != nil {
		return nil, http.StatusBadGateway, err
	}
	if svc == nil {
		return nil, http.StatusBadGateway, fmt.Errorf("no pod and no Service has the address %s", ip)
	}
	ready := p.readyEndpoints(svc)
	conn.mu.Lock()
	defer conn.mu.Unlock()
	if pod, ok := ready[conn.endpoint]; ok {
		return pod, 0, nil
	}
	// The connection is new, or its endpoint went away (kube-proxy would leave it broken; a
	// fresh choice keeps a keep-alive client from failing on a rollout's pod churn).
	if len(ready) == 0 {
		return nil, http.StatusServiceUnavailable, fmt.Errorf("service %s/%s (%s) has no ready endpoint", svc.Namespace, svc.Name, ip)
	}
	uids := make([]types.UID, 0, len(ready))
	for uid := range ready {
		uids = append(uids, uid)
	}
	conn.endpoint = uids[rand.IntN(len(uids))]
	return ready[conn.endpoint], 0, nil
}

// serviceAt is the Service whose ClusterIP is ip, or nil.
func (p *PodServers) serviceAt(ctx context.Context, ip string) (*corev1.Service, error) {
	if svcs := p.services.find(func(svc *corev1.Service) bool { return svc.Spec.ClusterIP == ip }); len(svcs) > 0 {
		return svcs[0], nil
	}
	if !serviceNet.Contains(net.ParseIP(ip)) {
		return nil, nil
	}
	// A Service made a moment ago may not have come through the watch yet.
	list, err := p.client.CoreV1().Services("").List(ctx, metav1.ListOptions{FieldSelector: "spec.clusterIP=" + ip})
	if err != nil {
		return nil, fmt.Errorf("list the services at %s: %w", ip, err)
	}
	if len(list.Items) == 0 {
		return nil, nil
	}
	return &list.Items[0], nil
}

// readyEndpoints are the pods behind the Service's ready endpoints, by UID (an endpoint that
// shows up in two slices during an update counts once). An endpoint without a ready condition
// is ready, as the EndpointSlice API and kube-proxy have it.
func (p *PodServers) readyEndpoints(svc *corev1.Service) map[types.UID]*corev1.Pod {
	slices := p.slices.find(func(s *discoveryv1.EndpointSlice) bool {
		return s.Namespace == svc.Namespace && s.Labels[discoveryv1.LabelServiceName] == svc.Name
	})
	ready := map[types.UID]*corev1.Pod{}
	for _, s := range slices {
		for _, ep := range s.Endpoints {
			ref := ep.TargetRef
			if ref == nil || ref.Kind != "Pod" || ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			ns := ref.Namespace
			if ns == "" {
				ns = svc.Namespace
			}
			pod, ok := p.pods.get(ns, ref.Name)
			if !ok {
				continue // gone, or not come through the watch yet: not an endpoint to send to
			}
			if ref.UID == "" || ref.UID == pod.UID {
				ready[pod.UID] = pod
			}
		}
	}
	return ready
}

// backend is the pod's model server, started on first use: the model file of its version
// label, the pod's first container's MODELSHIP_* environment on top of the name and version
// its labels give, the address and model path the harness chose.
func (p *PodServers) backend(pod *corev1.Pod, via *podListener) (*podBackend, error) {
	key := pod.Namespace + "/" + pod.Name
	p.mu.Lock()
	if p.gone[pod.UID] {
		p.mu.Unlock()
		return nil, fmt.Errorf("pod %s was deleted", key)
	}
	b, ok := p.backends[pod.UID]
	if !ok {
		b = &podBackend{pod: key, owner: via, ready: make(chan struct{}), done: make(chan struct{})}
		p.backends[pod.UID] = b
		model := p.defaultModel
		if c := p.models[pod.Labels[podLabelModelVersion]]; c != nil {
			model = c.file
		}
		p.mu.Unlock()
		b.err = b.start(p.binary, model, podEnv(pod))
		close(b.ready)
	} else {
		p.mu.Unlock()
		<-b.ready
	}
	if b.err != nil {
		return nil, b.err
	}
	return b, nil
}

// podEnv is the environment a pod's server runs with: the test process's, without its own
// MODELSHIP_* settings, then the name and version the pod's labels give (MODELSHIP_MODEL_VERSION
// from the pod's env wins: the label holds a safe form of it), then the pod's first container's
// MODELSHIP_* variables. The harness sets the address and model path by flag, which wins.
func podEnv(pod *corev1.Pod) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MODELSHIP_") {
			env = append(env, kv)
		}
	}
	env = append(env, "MODELSHIP_MODEL_NAME="+pod.Labels[podLabelModelName],
		"MODELSHIP_MODEL_VERSION="+pod.Labels[podLabelModelVersion], "MODELSHIP_LOG_LEVEL=warn")
	if len(pod.Spec.Containers) > 0 {
		for _, e := range pod.Spec.Containers[0].Env {
			if strings.HasPrefix(e.Name, "MODELSHIP_") && e.Name != "MODELSHIP_ADDR" && e.Name != "MODELSHIP_MODEL_PATH" && e.ValueFrom == nil {
				env = append(env, e.Name+"="+e.Value)
			}
		}
	}
	return env
}

// start runs the model server and waits until it is ready.
func (b *podBackend) start(binary, model string, env []string) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("find a port for the model server of pod %s: %w", b.pod, err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(binary, "-addr", addr, "-model-path", model)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start the model server of pod %s: %w", b.pod, err)
	}
	b.cmd = cmd
	go func() { _ = cmd.Wait(); close(b.done) }()
	u := &url.URL{Scheme: "http", Host: addr}
	probe := &http.Client{Timeout: 2 * time.Second}
	for deadline := time.Now().Add(30 * time.Second); ; {
		resp, err := probe.Get(u.String() + "/v2/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-b.done:
			return fmt.Errorf("the model server of pod %s (model %s) exited before it was ready: %s", b.pod, model, cmd.ProcessState)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			b.terminate(0)
			return fmt.Errorf("the model server of pod %s (model %s) did not become ready within 30s: %v", b.pod, model, err)
		}
	}
	b.proxy = httputil.NewSingleHostReverseProxy(u)
	b.proxy.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		http.Error(w, fmt.Sprintf("pod %s: %v", b.pod, err), http.StatusBadGateway)
	}
	return nil
}

// terminate stops the server as a kubelet stops a container: SIGTERM, so requests in flight
// finish, then SIGKILL after grace. It returns at once unless wait.
func (b *podBackend) terminate(grace time.Duration) {
	b.stop.Do(func() {
		if b.cmd == nil {
			return
		}
		_ = b.cmd.Process.Signal(syscall.SIGTERM)
		go func() {
			select {
			case <-b.done:
			case <-time.After(grace):
				_ = b.cmd.Process.Kill()
			}
		}()
	})
}

// podDeleted stops a deleted pod's server.
func (p *PodServers) podDeleted(pod *corev1.Pod) {
	p.mu.Lock()
	b := p.backends[pod.UID]
	delete(p.backends, pod.UID)
	p.gone[pod.UID] = true
	p.mu.Unlock()
	if b != nil {
		go func() {
			<-b.ready
			b.terminate(10 * time.Second)
		}()
	}
}

// stopListener stops the servers of the pods reached through a test's listener: that test's pods.
func (p *PodServers) stopListener(l *podListener) {
	p.mu.Lock()
	var stop []*podBackend
	for uid, b := range p.backends {
		if b.owner == l {
			stop = append(stop, b)
			delete(p.backends, uid)
		}
	}
	p.mu.Unlock()
	waitStopped(stop)
}

// stopAll stops the watches and every server (Main).
func (p *PodServers) stopAll() {
	p.stopWatching()
	p.mu.Lock()
	var stop []*podBackend
	for uid, b := range p.backends {
		stop = append(stop, b)
		delete(p.backends, uid)
	}
	p.mu.Unlock()
	waitStopped(stop)
}

func waitStopped(backends []*podBackend) {
	for _, b := range backends {
		<-b.ready
		b.terminate(5 * time.Second)
	}
	for _, b := range backends {
		if b.cmd != nil {
			<-b.done
		}
	}
}

// podRouteLock is held shared by every test process using the routes: the packages run at
// once, and one finishing must not take the routes from another still testing.
var podRouteLock = filepath.Join(os.TempDir(), "modelship-pod-route.lock")

// localRoutes makes every address of podCIDR and serviceCIDR local to this host (the "AnyIP"
// local route), so connections to a simulated pod or ClusterIP reach a listener on 0.0.0.0.
// The API server refuses to proxy to loopback addresses, which is why the pods keep their own
// range. Main removes the routes when this process is the last one using them.
func localRoutes() error {
	ip, err := exec.LookPath("ip")
	if err != nil {
		return fmt.Errorf("no ip command (iproute2): %w", err)
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("adding local routes for %s and %s needs root", podCIDR, serviceCIDR)
	}
	lock, err := os.OpenFile(podRouteLock, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("open %s: %w", podRouteLock, err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_SH); err != nil {
		lock.Close()
		return fmt.Errorf("lock %s: %w", podRouteLock, err)
	}
	var errs []error
	for _, cidr := range []string{podCIDR, serviceCIDR} {
		if out, err := exec.Command(ip, "route", "replace", "local", cidr, "dev", "lo").CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("ip route replace local %s dev lo: %v: %s", cidr, err, out))
		}
	}
	sharedMu.Lock()
	sharedStop = append(sharedStop, func() { releaseRoutes(ip, lock) })
	sharedMu.Unlock()
	return errors.Join(errs...)
}

// releaseRoutes drops this process's hold on the routes and removes them when no other
// process holds them (an exclusive lock is then free to take); a process starting meanwhile
// waits for its shared lock before adding the routes again.
func releaseRoutes(ip string, lock *os.File) {
	lock.Close()
	last, err := os.OpenFile(podRouteLock, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return
	}
	defer last.Close()
	if syscall.Flock(int(last.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
		for _, cidr := range []string{podCIDR, serviceCIDR} {
			_ = exec.Command(ip, "route", "del", "local", cidr, "dev", "lo").Run()
		}
	}
}
