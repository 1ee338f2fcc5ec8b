package testenv

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// SSHD is an OpenSSH server (Debian's openssh-server) on 127.0.0.1 that lets in root with one
// key made in the test: a serving host reached the way ssh://root@127.0.0.1:PORT reaches it.
// Other* are a key it does not know, and a known_hosts that pins a host key it does not have.
type SSHD struct {
	Host       string // ssh://root@127.0.0.1:PORT
	Addr       string // 127.0.0.1:PORT
	Key        string // the client's private key (OpenSSH PEM), authorized for root
	KnownHosts string // known_hosts pinning the server's host key
	OtherKey   string
	OtherHosts string
	process    *Process
}

// Log is what sshd logged so far (DEBUG1: the channels clients opened, with their kinds).
func (s *SSHD) Log() string { return s.process.Output() }

// StartSSHD starts sshd on a free port with its own host key and config, stopped at cleanup. It
// needs root (to log in as root, whom the Docker socket admits) and /usr/sbin/sshd.
func StartSSHD(t testing.TB) *SSHD {
	t.Helper()
	const sshd = "/usr/sbin/sshd"
	if _, err := os.Stat(sshd); err != nil {
		Missing(t, "sshd", "no /usr/sbin/sshd (Debian's openssh-server) to reach a Docker engine over ssh:// with")
	}
	if os.Geteuid() != 0 {
		Missing(t, "sshd", "starting sshd for root logins needs root")
	}
	// sshd refuses to start without its privilege separation directory.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	addr := FreeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	s := &SSHD{Host: "ssh://root@" + addr, Addr: addr, Key: filepath.Join(dir, "id_ed25519"), KnownHosts: filepath.Join(dir, "known_hosts"),
		OtherKey: filepath.Join(dir, "other_ed25519"), OtherHosts: filepath.Join(dir, "other_known_hosts")}
	hostKey := filepath.Join(dir, "host_ed25519")
	hostPub, err := writeSSHKey(hostKey)
	if err != nil {
		t.Fatal(err)
	}
	clientPub, err := writeSSHKey(s.Key)
	if err == nil {
		_, err = writeSSHKey(s.OtherKey)
	}
	var otherHostPub ssh.PublicKey
	if err == nil {
		otherHostPub, err = writeSSHKey(filepath.Join(dir, "other_host_ed25519"))
	}
	if err != nil {
		t.Fatal(err)
	}
	known := fmt.Sprintf("[127.0.0.1]:%s %s", port, ssh.MarshalAuthorizedKey(hostPub))
	other := fmt.Sprintf("[127.0.0.1]:%s %s", port, ssh.MarshalAuthorizedKey(otherHostPub))
	config := fmt.Sprintf(`Port %s
ListenAddress 127.0.0.1
HostKey %s
PidFile %s
AuthorizedKeysFile %s
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AllowTcpForwarding yes
AllowStreamLocalForwarding yes
LogLevel DEBUG1
`, port, hostKey, filepath.Join(dir, "sshd.pid"), filepath.Join(dir, "authorized_keys"))
	for path, content := range map[string]string{s.KnownHosts: known, s.OtherHosts: other,
		filepath.Join(dir, "authorized_keys"): string(ssh.MarshalAuthorizedKey(clientPub)), filepath.Join(dir, "sshd_config"): config} {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command(sshd, "-t", "-f", filepath.Join(dir, "sshd_config")).CombinedOutput(); err != nil {
		t.Fatalf("sshd rejects its test config: %v\n%s", err, out)
	}
	p := Start(t, sshd, []string{"-D", "-e", "-f", filepath.Join(dir, "sshd_config")}, nil)
	s.process = p
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			return s
		}
		if p.Exited() || time.Now().After(deadline) {
			t.Fatalf("sshd did not listen on %s: %v\n%s", addr, err, tail(p.Output(), 20))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// writeSSHKey makes an ed25519 key, writes its private half in OpenSSH's format and returns the
// public half.
func writeSSHKey(path string) (ssh.PublicKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	block, err := ssh.MarshalPrivateKey(priv, "modelship test")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		return nil, err
	}
	return ssh.NewPublicKey(pub)
}
