package main_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelship/modelship/internal/plumbing/projectpath"
	"github.com/modelship/modelship/internal/signing"
	"github.com/modelship/modelship/internal/testenv"
)

// writeKeys makes a cosign key pair in dir: cosign.key (password pw) and cosign.pub.
func writeKeys(t *testing.T, dir, pw string) (priv, pub string) {
	t.Helper()
	privPEM, pubPEM, err := signing.GenerateKeyPair([]byte(pw))
	require.NoError(t, err)
	priv, pub = filepath.Join(dir, "cosign.key"), filepath.Join(dir, "cosign.pub")
	require.NoError(t, os.WriteFile(priv, privPEM, 0o600))
	require.NoError(t, os.WriteFile(pub, pubPEM, 0o644))
	return priv, pub
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// containersOf counts the containers, running or not, a deploy to env has made.
func containersOf(t *testing.T, docker *client.Client, env string) int {
	t.Helper()
	list, err := docker.ContainerList(context.Background(), container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", "dev.modelship.environment="+env))})
	require.NoError(t, err)
	return len(list)
}

// Deploy checks the image before anything rolls out, against a real registry, Docker engine and
// MinIO: signed by image sign, it deploys, pinned to the digest verified; unsigned, tampered
// (another image pushed under the signed tag) or checked with the wrong key, it is refused with
// exit 11 and no container is ever made; production refuses to deploy without a key at all.
func TestSignedDeploys(t *testing.T) {
	docker, reg, ref := pushedServerImage(t)
	c := newCLI(t)
	dir := t.TempDir()
	priv, pub := writeKeys(t, dir, "s3cret")
	_, otherPub := writeKeys(t, t.TempDir(), "other")
	c.set("COSIGN_PASSWORD", "s3cret")
	modelSHA := fileSHA256(t, projectpath.Join(t, "models/digits-reference.onnx"))

	predicate := filepath.Join(dir, "provenance.json")
	out, code := c.run("image", "sign", "--image", ref, "--signing-key", priv, "--git-sha", gitSHA, "--model-version", "1",
		"--model-sha256", modelSHA, "--dockerfile", projectpath.Join(t, "serving/Dockerfile"), "--provenance-out", predicate)
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "signed "+reg.Addr+"/digits@sha256:")
	assert.Contains(t, out, signing.ProvenanceType)
	// The predicate alone, as cosign attest --predicate takes it, for a keyless attestation.
	raw, err := os.ReadFile(predicate)
	require.NoError(t, err)
	var slsa struct {
		BuildDefinition struct {
			BuildType          string         `json:"buildType"`
			ExternalParameters map[string]any `json:"externalParameters"`
		} `json:"buildDefinition"`
	}
	require.NoError(t, json.Unmarshal(raw, &slsa), string(raw))
	assert.Equal(t, signing.BuildType, slsa.BuildDefinition.BuildType)
	assert.Equal(t, gitSHA, slsa.BuildDefinition.ExternalParameters["git_sha"])
	signed := strings.TrimSpace(out[strings.Index(out, "signed ")+len("signed ") : strings.Index(out, ";")])

	out, code = c.run("image", "verify", "--image", ref, "--public-key", pub, "--git-sha", gitSHA, "--model-sha256", modelSHA)
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "names git "+gitSHA[:12])
	out, code = c.run("image", "verify", "--image", ref, "--public-key", pub, "--git-sha", gitSHA, "--model-sha256", strings.Repeat("0", 64))
	assert.Equal(t, 11, code, "provenance naming another model: %s", out)

	env := "sig-" + strings.ToLower(rand.Text()[:8])
	t.Cleanup(func() { testenv.RemoveEnvironmentContainers(docker, env) })
	deploy := func(image string, extra ...string) (string, int) {
		return c.run(append([]string{"deploy", "--image", image, "--model-version", "1", "--git-sha", gitSHA, "--branch", "main",
			"--env", env, "--publish", testenv.FreeAddr(t), "--smoke-fixture", projectpath.Join(t, "tests/fixtures/digits_validation.json"),
			"--require-signature", "--model-sha256", modelSHA}, extra...)...)
	}

	out, code = deploy(ref)
	assert.Equal(t, 11, code, "required but no key: %s", out)
	assert.Contains(t, out, "--public-key")
	out, code = deploy(ref, "--public-key", otherPub)
	assert.Equal(t, 11, code, "the wrong key: %s", out)
	assert.Contains(t, out, "another key")
	assert.Zero(t, containersOf(t, docker, env), "a refused image never gets a container")

	out, code = deploy(ref, "--public-key", pub)
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "deployed "+signed)
	out, code = c.run("state", "show", "--env", env)
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "signature: verified "+signed+" at ")
	assert.Contains(t, out, "SBOM attested: false")
	before := containersOf(t, docker, env)

	unsigned := reg.PushRandomImage(t, "digits:unsigned")
	out, code = deploy(unsigned, "--public-key", pub)
	assert.Equal(t, 11, code, "unsigned: %s", out)
	assert.Contains(t, out, "has no signature")

	// Someone pushes other bytes under the signed tag: deploying the tag is refused; the signed
	// digest still deploys.
	reg.PushRandomImage(t, "digits:"+gitSHA)
	out, code = deploy(reg.Addr+"/digits:"+gitSHA, "--public-key", pub)
	assert.Equal(t, 11, code, "tampered: %s", out)
	assert.Contains(t, out, "nothing was rolled out")
	assert.Equal(t, before, containersOf(t, docker, env), "no refused image got a container")

	prod := containersOf(t, docker, "production") // other tests may deploy there too
	out, code = c.run("deploy", "--image", unsigned, "--model-version", "1", "--git-sha", gitSHA, "--branch", "main", "--env", "production",
		"--publish", testenv.FreeAddr(t), "--no-smoke")
	assert.Equal(t, 11, code, "production requires a signature by default: %s", out)
	assert.Contains(t, out, "production requires a signed image")
	assert.LessOrEqual(t, containersOf(t, docker, "production"), prod, "nothing started for the refused deploy")
}

// A model pushed with a key pulls with the public key, the signature written for the server;
// without a signature it is refused with exit 11 and nothing is written.
func TestSignedModelCommands(t *testing.T) {
	c := newCLI(t)
	priv, pub := writeKeys(t, t.TempDir(), "pw")
	c.set("COSIGN_PASSWORD", "pw")
	model := projectpath.Join(t, "models/digits-reference.onnx")
	out, code := c.run("model", "push", model, "--name", "digits", "--version", "1.0.0", "--git-sha", gitSHA, "--signing-key", priv)
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "signed digits@1.0.0")

	dir := t.TempDir()
	dest, sig := filepath.Join(dir, "model.onnx"), filepath.Join(dir, "model.sig.json")
	out, code = c.run("model", "pull", "--name", "digits", "--version", "1.0.0", "-o", dest, "--public-key", pub, "--signature-out", sig)
	require.Equal(t, 0, code, out)
	assert.Equal(t, fileSHA256(t, model), fileSHA256(t, dest))
	assert.FileExists(t, sig)

	out, code = c.run("model", "push", model, "--name", "digits", "--version", "2.0.0", "--git-sha", gitSHA)
	require.Equal(t, 0, code, out)
	dest2 := filepath.Join(dir, "model2.onnx")
	out, code = c.run("model", "pull", "--name", "digits", "--version", "2.0.0", "-o", dest2, "--public-key", pub)
	assert.Equal(t, 11, code, "unsigned: %s", out)
	assert.Contains(t, out, "has no signature")
	assert.NoFileExists(t, dest2)

	out, code = c.run("model", "sign", "--name", "digits", "--version", "2.0.0", "--signing-key", priv)
	require.Equal(t, 0, code, out)
	out, code = c.run("model", "pull", "--name", "digits", "--version", "2.0.0", "-o", dest2, "--public-key", pub)
	assert.Equal(t, 0, code, out)
}
