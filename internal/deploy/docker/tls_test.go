package docker_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelship/modelship/internal/deploy/docker"
	"github.com/modelship/modelship/internal/testenv"
)

// A tcp:// engine is reached with verified TLS both ways, or not at all unless the caller
// accepts the risk in so many words. Against a real dockerd started with --tlsverify.
func TestATCPEngineNeedsVerifiedTLS(t *testing.T) {
	tlsd := testenv.StartTLSDocker(t)
	ping := func(conn docker.Connection) error {
		_, cli, err := docker.Dial(conn, docker.Config{Environment: "tls", Publish: testenv.FreeAddr(t)})
		if err != nil {
			return err
		}
		defer cli.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err = cli.Ping(ctx)
		return err
	}

	t.Run("the engine's CA and a client certificate it issued", func(t *testing.T) {
		require.NoError(t, ping(docker.Connection{Host: tlsd.Host, TLS: docker.TLSFiles{CA: tlsd.CA, Cert: tlsd.ClientCert, Key: tlsd.ClientKey}}))
	})
	t.Run("DOCKER_CERT_PATH with DOCKER_TLS_VERIFY", func(t *testing.T) {
		dir := t.TempDir()
		for src, name := range map[string]string{tlsd.CA: "ca.pem", tlsd.ClientCert: "cert.pem", tlsd.ClientKey: "key.pem"} {
			raw, err := os.ReadFile(src)
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(filepath.Join(dir, name), raw, 0o600))
		}
		t.Setenv("DOCKER_CERT_PATH", dir)
		t.Setenv("DOCKER_TLS_VERIFY", "1")
		require.NoError(t, ping(docker.Connection{Host: tlsd.Host}))
	})
	t.Run("no TLS is refused before connecting", func(t *testing.T) {
		err := ping(docker.Connection{Host: tlsd.Host})
		require.ErrorIs(t, err, docker.ErrInsecureHost)
		assert.ErrorContains(t, err, "--docker-tls-ca")
		assert.ErrorContains(t, err, "--docker-insecure-tcp")
	})
	t.Run("DOCKER_CERT_PATH without DOCKER_TLS_VERIFY is not verified TLS", func(t *testing.T) {
		t.Setenv("DOCKER_CERT_PATH", t.TempDir())
		t.Setenv("DOCKER_TLS_VERIFY", "")
		require.ErrorIs(t, ping(docker.Connection{Host: tlsd.Host}), docker.ErrInsecureHost)
	})
	t.Run("accepting the risk sends plain HTTP, which this engine refuses", func(t *testing.T) {
		err := ping(docker.Connection{Host: tlsd.Host, AllowInsecureTCP: true})
		require.Error(t, err)
		assert.NotErrorIs(t, err, docker.ErrInsecureHost)
	})
	t.Run("an engine whose certificate another CA signed is not trusted", func(t *testing.T) {
		err := ping(docker.Connection{Host: tlsd.Host, TLS: docker.TLSFiles{CA: tlsd.OtherCA, Cert: tlsd.ClientCert, Key: tlsd.ClientKey}})
		require.Error(t, err)
		assert.ErrorContains(t, err, "certificate signed by unknown authority")
	})
	t.Run("a client certificate of another CA is refused by the engine", func(t *testing.T) {
		err := ping(docker.Connection{Host: tlsd.Host, TLS: docker.TLSFiles{CA: tlsd.CA, Cert: tlsd.OtherClientCert, Key: tlsd.OtherClientKey}})
		require.Error(t, err)
		assert.ErrorContains(t, err, "certificate")
	})
	t.Run("half the TLS files", func(t *testing.T) {
		err := ping(docker.Connection{Host: tlsd.Host, TLS: docker.TLSFiles{CA: tlsd.CA}})
		require.Error(t, err)
		assert.ErrorContains(t, err, "together")
	})
	t.Run("TLS files for a unix socket", func(t *testing.T) {
		err := ping(docker.Connection{Host: "unix:///var/run/docker.sock", TLS: docker.TLSFiles{CA: tlsd.CA, Cert: tlsd.ClientCert, Key: tlsd.ClientKey}})
		require.Error(t, err)
		assert.ErrorContains(t, err, "tcp://")
	})
}
