package docker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// SSHFiles are what an ssh:// engine is reached with: this client's private key, and the
// known_hosts lines that pin the serving host's key (default ~/.ssh/known_hosts).
type SSHFiles struct{ Key, KnownHosts string }

func (f SSHFiles) given() bool { return f.Key != "" || f.KnownHosts != "" }

// defaultDockerSocket is where an ssh:// engine without a path is reached on the serving host.
const defaultDockerSocket = "/var/run/docker.sock"

// sshEngine is one SSH session to the serving host. The Docker API goes through it to the
// engine's unix socket (a streamlocal channel, as `ssh -L` makes), and so do the verification
// checks, to the candidate's port on the serving host: nothing but sshd needs to be reachable,
// and the remote side needs no Docker CLI.
type sshEngine struct {
	client *ssh.Client
	socket string
	name   string // ssh://user@host:port/socket, for messages
}

// dialSSH opens the session ssh://user@host[:port][/path/to/docker.sock] names, authenticating
// with files.Key and refusing a host key that files.KnownHosts does not pin.
func dialSSH(ctx context.Context, host string, files SSHFiles) (*sshEngine, error) {
	u, err := url.Parse(host)
	if err != nil || u.Hostname() == "" || u.User == nil || u.User.Username() == "" || u.RawQuery != "" {
		return nil, fmt.Errorf("docker host %q: want ssh://USER@HOST[:PORT][/path/to/docker.sock]", host)
	}
	addr := net.JoinHostPort(u.Hostname(), cmp.Or(u.Port(), "22"))
	e := &sshEngine{socket: cmp.Or(u.Path, defaultDockerSocket)}
	e.name = "ssh://" + u.User.Username() + "@" + addr + e.socket
	if files.Key == "" {
		return nil, fmt.Errorf("docker host %s: give the SSH private key with --docker-ssh-key (MODELSHIP_DOCKER_SSH_KEY)", e.name)
	}
	signer, err := readSSHKey(files.Key)
	if err != nil {
		return nil, err
	}
	hostKeys, err := pinnedHostKeys(files.KnownHosts)
	if err != nil {
		return nil, err
	}
	cfg := &ssh.ClientConfig{User: u.User.Username(), Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: hostKeys, Timeout: 15 * time.Second}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%w: ssh to %s: %w", ErrEngineUnreachable, addr, err)
	}
	sc, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
	if err != nil {
		conn.Close()
		var keyErr *knownhosts.KeyError
		if errors.As(err, &keyErr) {
			if len(keyErr.Want) == 0 {
				return nil, fmt.Errorf("ssh to %s: its host key is not in the known hosts, so it is not trusted: add the host's key (ssh-keyscan -p %s %s, checked against the host) to --docker-ssh-known-hosts: %w", addr, cmp.Or(u.Port(), "22"), u.Hostname(), err)
			}
			return nil, fmt.Errorf("ssh to %s: its host key is not the one pinned in the known hosts; somebody may be in the middle, or the host was rebuilt: %w", addr, err)
		}
		return nil, fmt.Errorf("ssh to %s as %s: %w", addr, u.User.Username(), err)
	}
	e.client = ssh.NewClient(sc, chans, reqs)
	return e, nil
}

// dialDocker opens a connection to the engine's socket on the serving host.
func (e *sshEngine) dialDocker(ctx context.Context, _, _ string) (net.Conn, error) {
	conn, err := e.client.DialContext(ctx, "unix", e.socket)
	if err != nil {
		return nil, fmt.Errorf("docker socket %s over ssh (the SSH user must be allowed to use it, and sshd to forward to it): %w", e.socket, err)
	}
	return conn, nil
}

// dialCheck opens a TCP connection as the serving host itself would: a verification check of
// 127.0.0.1:PORT reaches the candidate published there.
func (e *sshEngine) dialCheck(ctx context.Context, _, addr string) (net.Conn, error) {
	conn, err := e.client.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s from the serving host over ssh: %w", addr, err)
	}
	return conn, nil
}

func readSSHKey(path string) (ssh.Signer, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("docker SSH key: %w", err)
	}
	signer, err := ssh.ParsePrivateKey(raw)
	var missing *ssh.PassphraseMissingError
	if errors.As(err, &missing) {
		return nil, fmt.Errorf("docker SSH key %s is protected by a passphrase, which a pipeline cannot type: use a deploy key without one, kept as a secret", path)
	}
	if err != nil {
		return nil, fmt.Errorf("docker SSH key %s: not a private key OpenSSH reads: %w", path, err)
	}
	return signer, nil
}

// pinnedHostKeys trusts the host keys the known_hosts file lists, and no other: never the key
// a host happens to present.
func pinnedHostKeys(path string) (ssh.HostKeyCallback, error) {
	if path == "" {
		home, err := os.UserHomeDir()
		if err == nil {
			path = filepath.Join(home, ".ssh", "known_hosts")
		}
		if _, statErr := os.Stat(path); err != nil || statErr != nil {
			return nil, errors.New("docker SSH: no known hosts to pin the serving host's key with: give --docker-ssh-known-hosts (MODELSHIP_DOCKER_SSH_KNOWN_HOSTS), a known_hosts file holding the host's key")
		}
	}
	cb, err := knownhosts.New(path)
	if err != nil {
		return nil, fmt.Errorf("docker SSH known hosts %s: %w", path, err)
	}
	return cb, nil
}

func isSSH(host string) bool { return strings.HasPrefix(host, "ssh://") }
