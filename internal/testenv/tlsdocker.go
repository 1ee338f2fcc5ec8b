package testenv

import (
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/client"
)

// TLSDocker is a second Docker engine that listens on tcp:// with --tlsverify: it answers only
// clients holding a certificate of its CA. Client* are such a certificate; Other* are a CA,
// certificate and key of another authority, for the refusals.
type TLSDocker struct {
	Host                                     string // tcp://127.0.0.1:PORT
	CA, ClientCert, ClientKey                string
	OtherCA, OtherClientCert, OtherClientKey string
}

// StartTLSDocker starts the engine with certificates made here, on a bridge of its own and
// without iptables rules, so it cannot disturb the main engine; it is stopped at cleanup. It
// needs root, dockerd and ip, which the test command provides.
func StartTLSDocker(t testing.TB) *TLSDocker {
	t.Helper()
	dockerd, dir := dockerdFolder(t, "a TLS engine", "mstls")
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	d := &TLSDocker{CA: filepath.Join(dir, "ca.pem"), ClientCert: filepath.Join(dir, "cert.pem"), ClientKey: filepath.Join(dir, "key.pem"),
		OtherCA: filepath.Join(dir, "other-ca.pem"), OtherClientCert: filepath.Join(dir, "other-cert.pem"), OtherClientKey: filepath.Join(dir, "other-key.pem")}
	serverCert, serverKey := filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem")
	ca, err := newTestCA("modelship-test-docker-ca", d.CA)
	if err == nil {
		err = ca.issue(2, "dockerd", nil, x509.ExtKeyUsageServerAuth, []net.IP{net.ParseIP("127.0.0.1")}, []string{"localhost"}, serverCert, serverKey)
	}
	if err == nil {
		err = ca.issue(3, "modelship-deployer", nil, x509.ExtKeyUsageClientAuth, nil, nil, d.ClientCert, d.ClientKey)
	}
	var other *testCA
	if err == nil {
		other, err = newTestCA("somebody-else", d.OtherCA)
	}
	if err == nil {
		err = other.issue(2, "intruder", nil, x509.ExtKeyUsageClientAuth, nil, nil, d.OtherClientCert, d.OtherClientKey)
	}
	if err != nil {
		t.Fatalf("make the TLS engine's certificates: %v", err)
	}
	bridge := ownBridge(t)
	addr := FreeAddr(t)
	d.Host = "tcp://" + addr
	p := Start(t, dockerd, []string{"--host", d.Host, "--tlsverify", "--tlscacert", d.CA, "--tlscert", serverCert, "--tlskey", serverKey,
		"--data-root", filepath.Join(dir, "data"), "--exec-root", filepath.Join(dir, "x"), "--pidfile", filepath.Join(dir, "pid"),
		"--bridge", bridge, "--iptables=false"}, nil)
	waitDockerd(t, p, "the TLS dockerd", time.Minute, 2*time.Second, client.WithHost(d.Host), client.WithTLSClientConfig(d.CA, d.ClientCert, d.ClientKey))
	return d
}

// waitDockerd returns once the engine p runs answers a ping (each given perPing) through a
// client made with opts, and fails the test when it exits or does not answer within.
func waitDockerd(t testing.TB, p *Process, what string, within, perPing time.Duration, opts ...client.Opt) {
	t.Helper()
	cli, err := client.NewClientWithOpts(append(opts, client.WithAPIVersionNegotiation())...)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	deadline := time.Now().Add(within)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), perPing)
		_, err := cli.Ping(ctx)
		cancel()
		if err == nil {
			return
		}
		if p.Exited() || time.Now().After(deadline) {
			t.Fatalf("%s did not answer at %s: %v\n%s", what, cli.DaemonHost(), err, tail(p.Output(), 20))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// ownBridge makes a bridge for one test engine on a 10.215.x.0/24 no route holds, removed at
// cleanup. Not "--bridge none": dockerd then deletes the host's docker0, which the main engine
// (or the developer's) is using.
func ownBridge(t testing.TB) string {
	t.Helper()
	ip, err := exec.LookPath("ip")
	if err != nil {
		Missing(t, "docker", "no ip command (iproute2) to make the TLS engine's bridge with")
	}
	routes, err := exec.Command(ip, "-4", "route", "show").Output()
	if err != nil {
		t.Fatalf("ip route: %v", err)
	}
	for n := 0; n < 255; n++ {
		if strings.Contains(string(routes), fmt.Sprintf("10.215.%d.0/24 ", n)) {
			continue
		}
		name := fmt.Sprintf("mstls%d", n)
		for _, args := range [][]string{{"link", "add", name, "type", "bridge"}, {"addr", "add", fmt.Sprintf("10.215.%d.1/24", n), "dev", name}, {"link", "set", name, "up"}} {
			if out, err := exec.Command(ip, args...).CombinedOutput(); err != nil {
				_ = exec.Command(ip, "link", "delete", name).Run()
				t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
			}
		}
		t.Cleanup(func() { _ = exec.Command(ip, "link", "delete", name).Run() })
		return name
	}
	t.Fatal("no free 10.215.x.0/24 for the TLS engine's bridge")
	return ""
}

// dockerdFolder finds dockerd and makes the short folder a test engine keeps its state in
// (containerd's socket lives under the exec root, and a unix socket path is limited to 108
// bytes); it skips, or fails under MODELSHIP_TEST_REQUIRE, without dockerd or root.
func dockerdFolder(t testing.TB, what, prefix string) (dockerd, dir string) {
	t.Helper()
	dockerd, err := exec.LookPath("dockerd")
	if err != nil {
		Missing(t, "docker", "no dockerd binary to start "+what+" with")
	}
	if os.Geteuid() != 0 {
		Missing(t, "docker", "starting "+what+" needs root")
	}
	if dir, err = os.MkdirTemp("/tmp", prefix); err != nil {
		t.Fatal(err)
	}
	return dockerd, dir
}
