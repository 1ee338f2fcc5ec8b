package docker_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelship/modelship/internal/deploy"
	"github.com/modelship/modelship/internal/deploy/docker"
	"github.com/modelship/modelship/internal/testenv"
)

// An ssh:// engine is reached through one SSH session whose host key is pinned: the Docker API
// over a channel to the engine's socket, the candidate's checks over the same session, so the
// serving host needs nothing reachable but sshd and no Docker CLI. Against Debian's sshd and
// the real engine.
func TestAnSSHEngineIsReachedThroughAPinnedSession(t *testing.T) {
	w := setup(t)
	sshd := testenv.StartSSHD(t)
	daemon := w.docker.DaemonHost()
	require.True(t, strings.HasPrefix(daemon, "unix://"), "the test engine is on a unix socket, not %s", daemon)
	host := sshd.Host + strings.TrimPrefix(daemon, "unix://")
	e := newEnv(t, w)
	dial := func(conn docker.Connection) (*docker.Target, error) {
		target, engine, err := docker.Dial(conn, docker.Config{Environment: e.name, Publish: e.publish, ReadyTimeout: 30 * time.Second})
		if err == nil {
			t.Cleanup(func() { engine.Close() })
		}
		return target, err
	}

	t.Run("a release rolls out and is verified through the session", func(t *testing.T) {
		target, err := dial(docker.Connection{Host: host, SSH: docker.SSHFiles{Key: sshd.Key, KnownHosts: sshd.KnownHosts}})
		require.NoError(t, err)
		deps := e.deps
		deps.Target = target
		_, err = deploy.Deploy(context.Background(), deps, deploy.DeployRequest{Environment: e.name, Branch: "main", Release: w.releases["v1"]})
		require.NoError(t, err)
		assert.Equal(t, "1", e.serving(t))
		log := sshd.Log()
		assert.Contains(t, log, "direct-streamlocal", "the Docker API went through the session")
		assert.Contains(t, log, "direct-tcpip", "and so did the candidate's checks")
	})
	t.Run("a host key other than the pinned one is refused", func(t *testing.T) {
		_, err := dial(docker.Connection{Host: host, SSH: docker.SSHFiles{Key: sshd.Key, KnownHosts: sshd.OtherHosts}})
		require.Error(t, err)
		assert.ErrorContains(t, err, "not the one pinned")
	})
	t.Run("a host the known hosts do not list is refused", func(t *testing.T) {
		empty := filepath.Join(t.TempDir(), "known_hosts")
		require.NoError(t, os.WriteFile(empty, nil, 0o600))
		_, err := dial(docker.Connection{Host: host, SSH: docker.SSHFiles{Key: sshd.Key, KnownHosts: empty}})
		require.Error(t, err)
		assert.ErrorContains(t, err, "ssh-keyscan")
	})
	t.Run("a key the host does not authorize is refused", func(t *testing.T) {
		_, err := dial(docker.Connection{Host: host, SSH: docker.SSHFiles{Key: sshd.OtherKey, KnownHosts: sshd.KnownHosts}})
		require.Error(t, err)
		assert.ErrorContains(t, err, "unable to authenticate")
	})
	t.Run("no key names the flag", func(t *testing.T) {
		_, err := dial(docker.Connection{Host: host, SSH: docker.SSHFiles{KnownHosts: sshd.KnownHosts}})
		require.Error(t, err)
		assert.ErrorContains(t, err, "--docker-ssh-key")
	})
	t.Run("no user names the form", func(t *testing.T) {
		_, err := dial(docker.Connection{Host: "ssh://" + sshd.Addr, SSH: docker.SSHFiles{Key: sshd.Key, KnownHosts: sshd.KnownHosts}})
		require.Error(t, err)
		assert.ErrorContains(t, err, "ssh://USER@HOST")
	})
	t.Run("SSH files for another kind of engine", func(t *testing.T) {
		_, err := dial(docker.Connection{Host: daemon, SSH: docker.SSHFiles{Key: sshd.Key}})
		require.Error(t, err)
		assert.ErrorContains(t, err, "ssh://")
	})
	t.Run("no sshd listening", func(t *testing.T) {
		_, err := dial(docker.Connection{Host: "ssh://root@" + testenv.FreeAddr(t), SSH: docker.SSHFiles{Key: sshd.Key, KnownHosts: sshd.KnownHosts}})
		require.ErrorIs(t, err, docker.ErrEngineUnreachable)
	})
}
