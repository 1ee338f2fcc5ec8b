package testenv

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// KubeControlPlane is a real etcd, kube-apiserver, kube-controller-manager and kube-scheduler on
// loopback, with KWOK standing in for kubelets: nodes and pods are simulated, the API and its
// controllers are not.
type KubeControlPlane struct {
	Kubeconfig string
	Config     *rest.Config
	Client     kubernetes.Interface

	podsOnce sync.Once
	pods     *PodServers
}

var sharedKube *KubeControlPlane

func kubeBinary(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Missing(t, "kubernetes", fmt.Sprintf("no %s on PATH; scripts/tools.sh install_kube_tools builds etcd, the control plane and kwok", name))
	}
	return p
}

// SharedKube starts one control plane per test package (stopped by Main) with two fake nodes.
func SharedKube(t testing.TB) *KubeControlPlane {
	t.Helper()
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if sharedKube != nil {
		return sharedKube
	}
	bins := map[string]string{}
	for _, name := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"} {
		bins[name] = kubeBinary(t, name)
	}
	dir, err := os.MkdirTemp("", "modelship-kube-")
	if err != nil {
		t.Fatalf("kube folder: %v", err)
	}
	var procs []*Process
	stop := func() {
		for i := len(procs) - 1; i >= 0; i-- {
			_ = procs[i].Cmd.Process.Kill()
			<-procs[i].done
		}
		os.RemoveAll(dir)
	}
	fail := func(format string, args ...any) {
		for _, p := range procs {
			t.Logf("output of %s:\n%s", filepath.Base(p.Cmd.Path), tail(p.Output(), 30))
		}
		stop()
		t.Fatalf(format, args...)
	}
	pki, err := makePKI(dir)
	if err != nil {
		fail("certificates: %v", err)
	}

	etcdClient, etcdPeer := FreeAddr(t), FreeAddr(t)
	procs = append(procs, startDetached(t, bins["etcd"], []string{
		"--data-dir", filepath.Join(dir, "etcd"), "--name", "default",
		"--listen-client-urls", "http://" + etcdClient, "--advertise-client-urls", "http://" + etcdClient,
		"--listen-peer-urls", "http://" + etcdPeer, "--initial-advertise-peer-urls", "http://" + etcdPeer,
		"--initial-cluster", "default=http://" + etcdPeer, "--log-level", "error", "--unsafe-no-fsync",
	}, nil))
	apiAddr := FreeAddr(t)
	_, apiPort, _ := net.SplitHostPort(apiAddr)
	procs = append(procs, startDetached(t, bins["kube-apiserver"], []string{
		"--etcd-servers", "http://" + etcdClient,
		"--bind-address", "127.0.0.1", "--secure-port", apiPort, "--advertise-address", "127.0.0.1",
		"--tls-cert-file", pki.serverCert, "--tls-private-key-file", pki.serverKey,
		"--client-ca-file", pki.caCert,
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file", pki.saPub, "--service-account-signing-key-file", pki.saKey,
		"--service-cluster-ip-range", serviceCIDR,
		"--authorization-mode", "AlwaysAllow",
		"--disable-admission-plugins", "ServiceAccount,TaintNodesByCondition",
		"--endpoint-reconciler-type", "none",
		"--enable-priority-and-fairness=false",
	}, nil))
	kubeconfig := filepath.Join(dir, "admin.kubeconfig")
	if err := writeKubeconfig(kubeconfig, "https://"+apiAddr, pki); err != nil {
		fail("kubeconfig: %v", err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		fail("load kubeconfig: %v", err)
	}
	// client-go's default of 5 requests/s would throttle the rollout and endpoint polling.
	cfg.QPS, cfg.Burst = 100, 200
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		fail("kubernetes client: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := waitAPI(ctx, client); err != nil {
		fail("kube-apiserver did not become ready: %v", err)
	}
	procs = append(procs,
		startDetached(t, bins["kube-controller-manager"], []string{
			"--kubeconfig", kubeconfig, "--leader-elect=false", "--bind-address", "127.0.0.1", "--secure-port", "0",
			"--controllers", "deployment,replicaset,endpointslice,namespace,garbagecollector",
			"--root-ca-file", pki.caCert, "--service-account-private-key-file", pki.saKey,
			"--concurrent-deployment-syncs", "5", "--concurrent-replicaset-syncs", "5",
		}, nil),
		startDetached(t, bins["kube-scheduler"], []string{
			"--kubeconfig", kubeconfig, "--leader-elect=false", "--bind-address", "127.0.0.1", "--secure-port", "0",
		}, nil),
	)
	stages, err := kwokStages(bins["kwok"])
	if err != nil {
		fail("kwok stages: %v", err)
	}
	kwokArgs := []string{"--kubeconfig", kubeconfig, "--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector", "kwok.x-k8s.io/node=fake",
		"--cidr", "10.244.0.0/16", "--node-ip", "10.244.0.1", "--server-address", "127.0.0.1:0"}
	for _, s := range stages {
		kwokArgs = append(kwokArgs, "--config", s)
	}
	procs = append(procs, startDetached(t, bins["kwok"], kwokArgs, nil))
	for i := 0; i < 2; i++ {
		if err := createFakeNode(ctx, client, fmt.Sprintf("kwok-node-%d", i)); err != nil {
			fail("create fake node: %v", err)
		}
	}
	if err := waitNodesReady(ctx, client, 2); err != nil {
		fail("fake nodes did not become ready: %v", err)
	}
	sharedKube = &KubeControlPlane{Kubeconfig: kubeconfig, Config: cfg, Client: client}
	sharedStop = append(sharedStop, stop)
	return sharedKube
}

func tail(s string, lines int) string {
	parts := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

// kwokStages lists the Stage files KWOK needs, shipped beside the binary by tools.sh.
func kwokStages(kwok string) ([]string, error) {
	root := filepath.Join(filepath.Dir(kwok), "stage")
	var files []string
	for _, rel := range []string{"node/fast/node-initialize.yaml", "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
		"pod/fast/pod-ready.yaml", "pod/fast/pod-complete.yaml", "pod/fast/pod-delete.yaml"} {
		p := filepath.Join(root, rel)
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("kwok stage %s: %w", rel, err)
		}
		files = append(files, p)
	}
	return files, nil
}

func waitAPI(ctx context.Context, client kubernetes.Interface) error {
	for {
		_, err := client.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{})
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func createFakeNode(ctx context.Context, client kubernetes.Interface, name string) error {
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name,
			Annotations: map[string]string{"node.alpha.kubernetes.io/ttl": "0", "kwok.x-k8s.io/node": "fake"},
			Labels:      map[string]string{"kubernetes.io/hostname": name, "kubernetes.io/role": "agent", "type": "kwok"}},
		Status: corev1.NodeStatus{
			Allocatable: corev1.ResourceList{corev1.ResourceCPU: mustQty("32"), corev1.ResourceMemory: mustQty("256Gi"), corev1.ResourcePods: mustQty("110")},
			Capacity:    corev1.ResourceList{corev1.ResourceCPU: mustQty("32"), corev1.ResourceMemory: mustQty("256Gi"), corev1.ResourcePods: mustQty("110")},
		},
	}
	_, err := client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

func waitNodesReady(ctx context.Context, client kubernetes.Interface, n int) error {
	for {
		nodes, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: "type=kwok"})
		if err == nil {
			ready := 0
			for _, node := range nodes.Items {
				for _, c := range node.Status.Conditions {
					if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
						ready++
					}
				}
			}
			if ready >= n {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

type pkiFiles struct {
	caCert, serverCert, serverKey, clientCert, clientKey, saKey, saPub string
}

// makePKI writes a CA, the apiserver's serving certificate, an admin client certificate
// (system:masters) and the service-account signing key.
func makePKI(dir string) (*pkiFiles, error) {
	p := &pkiFiles{caCert: filepath.Join(dir, "ca.crt"), serverCert: filepath.Join(dir, "apiserver.crt"), serverKey: filepath.Join(dir, "apiserver.key"),
		clientCert: filepath.Join(dir, "admin.crt"), clientKey: filepath.Join(dir, "admin.key"), saKey: filepath.Join(dir, "sa.key"), saPub: filepath.Join(dir, "sa.pub")}
	ca, err := newTestCA("modelship-test-ca", p.caCert)
	if err != nil {
		return nil, err
	}
	if err := ca.issue(2, "kube-apiserver", nil, x509.ExtKeyUsageServerAuth, []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.96.0.1")},
		[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"}, p.serverCert, p.serverKey); err != nil {
		return nil, err
	}
	if err := ca.issue(3, "modelship-admin", []string{"system:masters"}, x509.ExtKeyUsageClientAuth, nil, nil, p.clientCert, p.clientKey); err != nil {
		return nil, err
	}
	sa, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	if err := writePEM(p.saKey, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(sa)); err != nil {
		return nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(&sa.PublicKey)
	if err != nil {
		return nil, err
	}
	return p, writePEM(p.saPub, "PUBLIC KEY", pub)
}

func writePEM(path, typ string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
}

func writeKubeconfig(path, server string, p *pkiFiles) error {
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: admin
  user:
    client-certificate: %s
    client-key: %s
contexts:
- name: test
  context:
    cluster: test
    user: admin
current-context: test
`, server, p.caCert, p.clientCert, p.clientKey)
	return os.WriteFile(path, []byte(cfg), 0o600)
}

func mustQty(s string) resource.Quantity { return resource.MustParse(s) }
