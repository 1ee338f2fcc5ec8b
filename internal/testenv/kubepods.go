package testenv

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/modelship/modelship/internal/plumbing/projectpath"
)

// podCIDR is where KWOK gives the simulated pods their addresses (its --cidr).
const podCIDR = "10.244.0.0/16"

// Pod labels the model servers are chosen by; the deploy target sets them (deploy.LabelModel*).
const (
	podLabelModelName    = "dev.modelship.model.name"
	podLabelModelVersion = "dev.modelship.model.version"
)

// PodServers make KWOK's pods answer. KWOK gives each pod an address in podCIDR but runs
// nothing; a route makes the whole range local to this host, and a listener on the pods' port
// hands each connection to a real model server of the model name and version the pod's labels
// name (one process per version, started on first use, reference model weights). So the API
// server's pod proxy reaches a real server, as it would on a cluster, and a pod of another
// version answers with that version.
type PodServers struct {
	client    kubernetes.Interface
	modelFile string
	binary    string

	mu       sync.Mutex
	backends map[string]*url.URL // name@version → server
}

var (
	podRouteOnce sync.Once
	podRouteErr  error
)

// ServePods listens on a free port of every address in podCIDR, for a test whose pods serve on
// it (kubernetes.Config.Port), until the test ends. It needs root and ip to add the route.
func (k *KubeControlPlane) ServePods(t testing.TB) int32 {
	t.Helper()
	podRouteOnce.Do(func() { podRouteErr = localPodRoute() })
	if podRouteErr != nil {
		Missing(t, "kubernetes", fmt.Sprintf("the simulated pods cannot be made to answer: %v", podRouteErr))
	}
	k.podsOnce.Do(func() {
		k.pods = &PodServers{client: k.Client, modelFile: projectpath.Join(t, "models/digits-reference.onnx"),
			binary: Binary(t, "./serving/cmd/model-server"), backends: map[string]*url.URL{}}
	})
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatalf("listen for the pods: %v", err)
	}
	srv := &http.Server{Handler: k.pods, ReadHeaderTimeout: 10 * time.Second,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, localAddrKey{}, c.LocalAddr())
		}}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return int32(ln.Addr().(*net.TCPAddr).Port)
}

type localAddrKey struct{}

// ServeHTTP finds the pod the connection was addressed to and proxies to its version's server.
func (p *PodServers) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	addr, _ := r.Context().Value(localAddrKey{}).(*net.TCPAddr)
	if addr == nil {
		http.Error(w, "no local address", http.StatusInternalServerError)
		return
	}
	pods, err := p.client.CoreV1().Pods("").List(r.Context(), metav1.ListOptions{FieldSelector: "status.podIP=" + addr.IP.String()})
	if err != nil || len(pods.Items) != 1 {
		http.Error(w, fmt.Sprintf("no one pod at %s (%d found): %v", addr.IP, len(pods.Items), err), http.StatusBadGateway)
		return
	}
	labels := pods.Items[0].Labels
	backend, err := p.backend(labels[podLabelModelName], labels[podLabelModelVersion])
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	httputil.NewSingleHostReverseProxy(backend).ServeHTTP(w, r)
}

// backend is the model server of name@version, started on first use and kept until the test
// binary ends (the servers are shared by the package's tests).
func (p *PodServers) backend(name, version string) (*url.URL, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	key := name + "@" + version
	if u, ok := p.backends[key]; ok {
		return u, nil
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(p.binary, "-addr", addr, "-model-path", p.modelFile, "-model-name", name, "-model-version", version, "-log-level", "warn")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the model server of %s: %w", key, err)
	}
	sharedMu.Lock()
	sharedStop = append(sharedStop, func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	sharedMu.Unlock()
	u := &url.URL{Scheme: "http", Host: addr}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get(u.String() + "/v2/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the model server of %s did not become ready: %v", key, err)
		}
	}
	p.backends[key] = u
	return u, nil
}

// podRouteLock is held shared by every test process using the route: the packages run at once,
// and one finishing must not take the route from another still testing.
var podRouteLock = filepath.Join(os.TempDir(), "modelship-pod-route.lock")

// localPodRoute makes every address of podCIDR local to this host (the "AnyIP" local route), so
// connections to a simulated pod reach a listener on 0.0.0.0. The API server refuses to proxy
// to loopback addresses, which is why the pods keep their own range. Main removes it when this
// process is the last one using it.
func localPodRoute() error {
	ip, err := exec.LookPath("ip")
	if err != nil {
		return fmt.Errorf("no ip command (iproute2): %w", err)
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("adding a local route for %s needs root", podCIDR)
	}
	lock, err := os.OpenFile(podRouteLock, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("open %s: %w", podRouteLock, err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_SH); err != nil {
		lock.Close()
		return fmt.Errorf("lock %s: %w", podRouteLock, err)
	}
	if out, err := exec.Command(ip, "route", "replace", "local", podCIDR, "dev", "lo").CombinedOutput(); err != nil {
		lock.Close()
		return fmt.Errorf("ip route replace local %s dev lo: %v: %s", podCIDR, err, out)
	}
	sharedMu.Lock()
	sharedStop = append(sharedStop, func() { releasePodRoute(ip, lock) })
	sharedMu.Unlock()
	return nil
}

// releasePodRoute drops this process's hold on the route and removes the route when no other
// process holds it (an exclusive lock is then free to take); a process starting meanwhile waits
// for its shared lock before adding the route again.
func releasePodRoute(ip string, lock *os.File) {
	lock.Close()
	last, err := os.OpenFile(podRouteLock, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return
	}
	defer last.Close()
	if syscall.Flock(int(last.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
		_ = exec.Command(ip, "route", "del", "local", podCIDR, "dev", "lo").Run()
	}
}
