package main_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/client"
	"github.com/minio/minio-go/v7"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/modelship/modelship/internal/deploystate"
	"github.com/modelship/modelship/internal/deploystate/store"
	"github.com/modelship/modelship/internal/plumbing/projectpath"
	"github.com/modelship/modelship/internal/registry/manifest"
	"github.com/modelship/modelship/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

const gitSHA = "0123456789abcdef0123456789abcdef01234567"

type cli struct {
	bin string
	env []string
	srv *testenv.MinIOServer
	t   *testing.T
}

func newCLI(t *testing.T) *cli {
	t.Helper()
	srv := testenv.SharedMinIO(t)
	cfg := srv.Config()
	return &cli{bin: testenv.Binary(t, "./cmd/modelship"), srv: srv, t: t, env: []string{
		"AWS_ENDPOINT_URL_S3=" + cfg.Endpoint, "AWS_REGION=us-east-1",
		"AWS_ACCESS_KEY_ID=" + cfg.AccessKey, "AWS_SECRET_ACCESS_KEY=" + cfg.SecretKey,
		"MODELSHIP_MODELS_BUCKET=" + srv.Bucket(t, "models"), "MODELSHIP_STATE_BUCKET=" + srv.Bucket(t, "state"),
		"MODELSHIP_CACHE_DIR=" + filepath.Join(t.TempDir(), "cache"),
		"MODELSHIP_EVIDENCE_DIR=" + t.TempDir(),
	}}
}

// run executes the CLI and returns stdout+stderr and the exit code.
func (c *cli) run(args ...string) (string, int) {
	c.t.Helper()
	cmd := exec.Command(c.bin, args...)
	cmd.Env = append(os.Environ(), c.env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		return out.String(), exitErr.ExitCode()
	}
	require.NoError(c.t, err)
	return out.String(), 0
}

// set replaces (or adds) one environment variable of the CLI's runs.
func (c *cli) set(key, value string) {
	for i, kv := range c.env {
		if strings.HasPrefix(kv, key+"=") {
			c.env[i] = key + "=" + value
			return
		}
	}
	c.env = append(c.env, key+"="+value)
}

func (c *cli) bucket(envKey string) string {
	for _, kv := range c.env {
		if v, ok := strings.CutPrefix(kv, envKey+"="); ok {
			return v
		}
	}
	return ""
}

func TestModelPushPullLs(t *testing.T) {
	c := newCLI(t)
	model := projectpath.Join(t, "models/digits-reference.onnx")
	out, code := c.run("model", "push", model, "--name", "digits", "--version", "1.0.0", "--git-sha", gitSHA, "--metadata", "accuracy=0.9733", "--gzip")
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "pushed digits@1.0.0")

	out, code = c.run("model", "push", model, "--name", "digits", "--version", "1.0.0", "--git-sha", gitSHA)
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "nothing uploaded")

	out, code = c.run("model", "push", projectpath.Join(t, "models/digits-weak.onnx"), "--name", "digits", "--version", "1.0.0", "--git-sha", gitSHA)
	assert.Equal(t, 5, code, "conflict: %s", out)
	assert.Contains(t, out, "versions are immutable")

	dest := filepath.Join(t.TempDir(), "model.onnx")
	out, code = c.run("model", "pull", "--name", "digits", "--git-sha", gitSHA[:10], "-o", dest)
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "downloaded")
	want, _ := os.ReadFile(model)
	got, err := os.ReadFile(dest)
	require.NoError(t, err)
	assert.Equal(t, want, got)

	out, code = c.run("model", "pull", "--name", "digits", "-o", dest)
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "cache hit, 0 bytes transferred")

	out, code = c.run("model", "ls", "--name", "digits")
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "1.0.0")
	assert.Contains(t, out, "gzip")

	out, code = c.run("--json", "model", "ls", "--name", "digits")
	require.Equal(t, 0, code, out)
	var list []map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &list))
	require.Len(t, list, 1)
	assert.Equal(t, "0.9733", list[0]["metadata"].(map[string]any)["accuracy"])
}

// A commit that pushed no model of its own ships the version modelship.json pins; one that did
// ships its own. A pin that names another model, or a version the registry lacks, is an error.
func TestACommitWithoutItsOwnModelShipsThePinnedVersion(t *testing.T) {
	c := newCLI(t)
	out, code := c.run("model", "push", projectpath.Join(t, "models/digits-reference.onnx"), "--name", "digits", "--version", "1.0.0", "--git-sha", gitSHA)
	require.Equal(t, 0, code, out)
	const codeOnly = "fedcba9876543210fedcba9876543210fedcba98"
	dir := t.TempDir()
	pin := filepath.Join(dir, "modelship.json")
	require.NoError(t, os.WriteFile(pin, []byte(`{"model": {"name": "digits", "version": "1.0.0"}}`), 0o644))

	resolve := func(args ...string) (manifest.Resolution, string, int) {
		out, code := c.run(append([]string{"--json", "model", "resolve", "--name", "digits"}, args...)...)
		var r manifest.Resolution
		if code == 0 {
			require.NoError(t, json.Unmarshal([]byte(out), &r), out)
		}
		return r, out, code
	}
	r, out, code := resolve("--git-sha", codeOnly, "--pinned-from", pin)
	require.Equal(t, 0, code, out)
	assert.Equal(t, "pin", r.ResolvedBy)
	assert.Equal(t, "1.0.0", r.Manifest.Version)

	r, out, code = resolve("--git-sha", gitSHA, "--pinned-from", pin)
	require.Equal(t, 0, code, out)
	assert.Equal(t, "git-sha", r.ResolvedBy, "a commit that pushed a model ships its own")

	_, out, code = resolve("--git-sha", codeOnly)
	assert.Equal(t, 3, code, "without a pin: %s", out)
	assert.Contains(t, out, "no version of model \"digits\" was pushed from git SHA "+codeOnly)

	_, out, code = resolve("--git-sha", codeOnly, "--pinned-from", filepath.Join(dir, "absent.json"))
	assert.Equal(t, 3, code, "a missing project file pins nothing: %s", out)

	dest := filepath.Join(dir, "model.onnx")
	out, code = c.run("model", "pull", "--name", "digits", "--git-sha", codeOnly, "--pinned-from", pin, "-o", dest)
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "modelship.json pins 1.0.0")
	assert.FileExists(t, dest)

	for name, body := range map[string]string{
		"another model":    `{"model": {"name": "wine", "version": "1.0.0"}}`,
		"an unknown field": `{"model": {"name": "digits", "version": "1.0.0", "flavour": "2"}}`,
		"a bad version":    `{"model": {"name": "digits", "version": "../1"}}`,
	} {
		require.NoError(t, os.WriteFile(pin, []byte(body), 0o644))
		_, out, code = resolve("--git-sha", codeOnly, "--pinned-from", pin)
		assert.Equal(t, 2, code, "%s: %s", name, out)
		assert.Contains(t, out, "modelship.json", name)
	}

	require.NoError(t, os.WriteFile(pin, []byte(`{"model": {"name": "digits", "version": "9.9.9"}}`), 0o644))
	_, out, code = resolve("--git-sha", codeOnly, "--pinned-from", pin)
	assert.Equal(t, 3, code, "a pinned version the registry lacks: %s", out)
	assert.Contains(t, out, "version 9.9.9 is not in")
}

func TestExitCodesNameWhatWentWrong(t *testing.T) {
	c := newCLI(t)
	model := projectpath.Join(t, "models/digits-reference.onnx")
	out, code := c.run("model", "push", model, "--name", "digits", "--version", "1", "--git-sha", gitSHA)
	require.Equal(t, 0, code, out)

	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"missing flag", []string{"model", "pull"}, 2, `"name" not set`},
		{"unknown command", []string{"no-such-command"}, 2, "unknown command"},
		{"bad name", []string{"model", "pull", "--name", "../etc"}, 2, "model name"},
		{"bad sha", []string{"model", "push", model, "--name", "digits", "--version", "2", "--git-sha", "HEAD"}, 2, "full commit SHA"},
		{"bad metadata", []string{"model", "push", model, "--name", "digits", "--version", "2", "--git-sha", gitSHA, "--metadata", "x"}, 2, "KEY=VALUE"},
		{"unknown version", []string{"model", "pull", "--name", "digits", "--version", "9"}, 3, "not in s3://"},
		{"unknown commit", []string{"model", "pull", "--name", "digits", "--git-sha", "fedcba9"}, 3, "no version"},
		{"no state yet", []string{"state", "show", "--env", "production"}, 3, "never been deployed"},
		{"bad env", []string{"state", "show", "--env", "Prod/../x"}, 2, "environment"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, code := c.run(tc.args...)
			assert.Equal(t, tc.code, code, out)
			assert.Contains(t, out, tc.want)
		})
	}

	// Integrity: corrupt the stored artifact behind the CLI's back.
	ctx := context.Background()
	client := c.srv.Client(t)
	bucket := c.bucket("MODELSHIP_MODELS_BUCKET")
	for obj := range client.ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: "digits/blobs/", Recursive: true}) {
		require.NoError(t, obj.Err)
		_, err := client.PutObject(ctx, bucket, obj.Key, strings.NewReader("tampered"), 8, minio.PutObjectOptions{})
		require.NoError(t, err)
	}
	out, code = c.run("model", "pull", "--name", "digits", "--version", "1", "-o", filepath.Join(t.TempDir(), "m.onnx"))
	assert.Equal(t, 4, code, out)
	assert.Contains(t, out, "integrity check failed")
}

func TestStateShowHaltAndResume(t *testing.T) {
	c := newCLI(t)
	client := c.srv.Client(t)
	states := store.New(client, c.bucket("MODELSHIP_STATE_BUCKET"))
	ctx := context.Background()
	d := deploystate.Deployment{GitSHA: gitSHA, Image: "127.0.0.1:5000/digits:" + gitSHA, ModelName: "digits", ModelVersion: "1", DeployedAt: time.Now().UTC()}
	_, err := states.RecordDeploy(ctx, "production", d)
	require.NoError(t, err)
	for i := 0; i < 3; i++ {
		_, err = states.AdmitRollback(ctx, "production", deploystate.Rollback{To: d, Reason: "gate failed"})
	}
	require.ErrorIs(t, err, deploystate.ErrHalted)

	out, code := c.run("state", "show", "--env", "production")
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "HALTED")
	assert.Contains(t, out, "digits@1")

	out, code = c.run("state", "resume", "--env", "production", "--by", "alice")
	assert.Equal(t, 2, code, "resume needs a reason: %s", out)

	out, code = c.run("state", "resume", "--env", "production", "--by", "alice", "--reason", "weak model removed")
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "halt lifted by alice")

	out, code = c.run("--json", "state", "show", "--env", "production")
	require.Equal(t, 0, code, out)
	var st deploystate.State
	require.NoError(t, json.Unmarshal([]byte(out), &st))
	assert.Nil(t, st.Halt)
	require.Len(t, st.Resumes, 1)

	// A corrupt state file is an integrity failure.
	key := states.Key("production")
	_, err = client.PutObject(ctx, states.Bucket(), key, strings.NewReader("{not json"), 9, minio.PutObjectOptions{})
	require.NoError(t, err)
	out, code = c.run("state", "show", "--env", "production")
	assert.Equal(t, 4, code, out)
	assert.Contains(t, out, "nothing was deployed from it")
}

func TestCredentialsAreNeverPrinted(t *testing.T) {
	c := newCLI(t)
	const secret = "sup3r-s3cret-never-print-me"
	c.env = append(c.env, "AWS_SECRET_ACCESS_KEY="+secret)
	out, code := c.run("model", "ls", "--name", "digits")
	assert.NotEqual(t, 0, code, "a wrong secret is refused: %s", out)
	assert.NotContains(t, out, secret)
	out, _ = c.run("--help")
	assert.NotContains(t, out, secret)
	out, _ = c.run("--json", "model", "pull", "--name", "digits")
	assert.NotContains(t, out, secret)
}

func TestUnreachableStorageHasItsOwnExitCode(t *testing.T) {
	c := newCLI(t)
	c.env = append(c.env, "AWS_ENDPOINT_URL_S3=http://"+testenv.FreeAddr(t))
	out, code := c.run("state", "show", "--env", "production")
	assert.Equal(t, 7, code, out)
	assert.Contains(t, out, "storage unreachable")
}

// Mistakes in how storage is named get a message that names the mistake and the fix.
func TestStorageMistakesAreNamed(t *testing.T) {
	c := newCLI(t)
	host := strings.TrimPrefix(c.srv.Config().Endpoint, "http://")

	t.Run("mistyped scheme", func(t *testing.T) {
		c.set("AWS_ENDPOINT_URL_S3", "htp//"+host)
		out, code := c.run("state", "show", "--env", "production")
		assert.Equal(t, 2, code, out)
		assert.Contains(t, out, `S3 endpoint "htp//`+host+`"`)
		assert.Contains(t, out, "did you mean http://"+host)
	})
	t.Run("bare host:port of a plain-HTTP server", func(t *testing.T) {
		c.set("AWS_ENDPOINT_URL_S3", host)
		out, code := c.run("state", "show", "--env", "production")
		assert.Equal(t, 7, code, out)
		assert.Contains(t, out, "--s3-plain-http")
		c.set("MODELSHIP_S3_PLAIN_HTTP", "true")
		out, code = c.run("state", "show", "--env", "production")
		assert.Equal(t, 3, code, "with the flag it reaches MinIO, which has no state yet: %s", out)
		c.set("MODELSHIP_S3_PLAIN_HTTP", "false")
	})
	t.Run("no endpoint at all", func(t *testing.T) {
		c.set("AWS_ENDPOINT_URL_S3", "")
		c.set("AWS_ENDPOINT_URL", "")
		// The AWS host does not resolve here (or the keys are refused): either way the command
		// fails, and it said first where it was going.
		out, code := c.run("state", "show", "--env", "production")
		assert.NotEqual(t, 0, code, out)
		assert.True(t, strings.HasPrefix(out, "modelship: no S3 endpoint configured (AWS_ENDPOINT_URL_S3 or --s3-endpoint); trying AWS\n"), out)
	})
}

// Only a file the server can load becomes a version, unless the push says it is not ONNX.
func TestOnlyLoadableModelsArePushed(t *testing.T) {
	c := newCLI(t)
	dir := t.TempDir()
	empty, junk := filepath.Join(dir, "empty.onnx"), filepath.Join(dir, "junk.onnx")
	require.NoError(t, os.WriteFile(empty, nil, 0o644))
	raw := make([]byte, 4096)
	_, _ = rand.Read(raw)
	require.NoError(t, os.WriteFile(junk, raw, 0o644))
	for _, f := range []string{empty, junk} {
		out, code := c.run("model", "push", f, "--name", "digits", "--version", "1", "--git-sha", gitSHA)
		assert.Equal(t, 2, code, out)
		assert.Contains(t, out, "invalid model")
		assert.Contains(t, out, "nothing was pushed")
		assert.Contains(t, out, "--skip-load-check")
	}
	out, code := c.run("model", "ls", "--name", "digits")
	assert.Equal(t, 0, code, out)
	assert.Contains(t, out, "no versions of digits", "no version was created")

	out, code = c.run("model", "push", junk, "--name", "digits", "--version", "1", "--git-sha", gitSHA, "--skip-load-check")
	assert.Equal(t, 0, code, out)
	assert.Contains(t, out, "pushed digits@1")
}

// The workflow's old way, an unauthenticated tcp:// Docker API, is refused before anything
// connects: it would hand root on the serving host to whoever reaches the port.
func TestAPlainTCPDockerHostIsRefused(t *testing.T) {
	c := newCLI(t)
	c.set("MODELSHIP_SMOKE_FIXTURE", projectpath.Join(t, "tests/fixtures/digits_validation.json"))
	for _, cmd := range [][]string{
		{"deploy", "--image", "registry.example.com/digits:" + gitSHA, "--model-version", "1", "--git-sha", gitSHA, "--branch", "main"},
		{"rollback", "--reason", "x"},
	} {
		out, code := c.run(append(cmd, "--docker-host", "tcp://"+testenv.FreeAddr(t))...)
		assert.Equal(t, 2, code, out)
		assert.Contains(t, out, "unauthenticated Docker API refused")
		assert.Contains(t, out, "--docker-tls-ca")
	}
	out, code := c.run("deploy", "--image", "registry.example.com/digits:"+gitSHA, "--model-version", "1", "--git-sha", gitSHA, "--branch", "main",
		"--docker-host", "tcp://"+testenv.FreeAddr(t), "--docker-insecure-tcp", "--require-signature=false")
	assert.Equal(t, 7, code, "with the flag it tries, and finds nothing listening: %s", out)
}

// --no-smoke and --smoke-fixture contradict each other; --no-smoke alone goes on to the target.
// (Without either, the image's own smoke inference is used: TestDeployAndRollbackCommands.)
func TestADeployWithoutASmokeInputSaysWhatToDo(t *testing.T) {
	c := newCLI(t)
	deployArgs := []string{"deploy", "--image", "registry.example.com/digits:" + gitSHA, "--model-version", "1", "--git-sha", gitSHA,
		"--branch", "main", "--docker-host", "unix:///nonexistent.sock"}
	out, code := c.run(append(deployArgs, "--smoke-fixture", "missing.json")...)
	assert.Equal(t, 2, code, "a fixture that was asked for must be there: %s", out)
	out, code = c.run(append(deployArgs, "--no-smoke", "--smoke-fixture", "x.json")...)
	assert.Equal(t, 2, code, out)
	assert.Contains(t, out, "not both")
	out, code = c.run(append(deployArgs, "--no-smoke", "--require-signature=false")...)
	assert.Equal(t, 7, code, "past the smoke check it goes for the engine, which is not there: %s", out)
}

// A mistyped subcommand is named as one, with a suggestion, even when flags follow it.
func TestAMistypedSubcommandIsNamed(t *testing.T) {
	c := newCLI(t)
	out, code := c.run("model", "pul", "--name", "x")
	assert.Equal(t, 2, code, out)
	assert.Contains(t, out, `unknown command "pul" for "modelship model"; did you mean push or pull?`)
	assert.NotContains(t, out, "unknown flag")
	out, code = c.run("state", "shw")
	assert.Equal(t, 2, code, out)
	assert.Contains(t, out, "did you mean show?")
	out, code = c.run("model")
	assert.Equal(t, 0, code, "a group alone prints its help: %s", out)
	assert.Contains(t, out, "Available Commands")
}

// Large artifacts stream: the CLI's peak memory does not grow with the artifact. The same
// commands on a 1 KiB artifact are the baseline, since the binary itself (Docker, Kubernetes and
// S3 clients) takes tens of MiB before it reads a byte.
func TestLargeArtifactsStreamInBoundedMemory(t *testing.T) {
	c := newCLI(t)
	const size = 192 << 20
	dir := t.TempDir()
	write := func(name string, n int) string {
		p := filepath.Join(dir, name)
		f, err := os.Create(p)
		require.NoError(t, err)
		chunk := make([]byte, 1<<20)
		for written := 0; written < n; written += len(chunk) {
			_, _ = rand.Read(chunk)
			_, err := f.Write(chunk[:min(len(chunk), n-written)])
			require.NoError(t, err)
		}
		require.NoError(t, f.Close())
		return p
	}
	small, big := write("small.bin", 1<<10), write("big.bin", size)
	peak := func(args ...string) int64 {
		cmd := exec.Command(c.bin, args...)
		cmd.Env = append(os.Environ(), c.env...)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, string(out))
		return cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss * 1024
	}
	for _, op := range []string{"push", "pull"} {
		args := func(file, version string) []string {
			if op == "push" {
				return []string{"model", "push", file, "--name", "big", "--version", version, "--git-sha", gitSHA, "--skip-load-check"}
			}
			return []string{"model", "pull", "--name", "big", "--version", version, "-o", filepath.Join(t.TempDir(), "out.bin")}
		}
		base := peak(args(small, "small")...)
		large := peak(args(big, "large")...)
		t.Logf("model %s: peak RSS %d MiB for 1 KiB, %d MiB for %d MiB", op, base>>20, large>>20, size>>20)
		assert.Less(t, large-base, int64(size/4), "model %s must stream, not buffer the artifact", op)
	}
}

// The deploy and rollback commands against a real Docker engine, registry and MinIO.
// pushedServerImage builds the reference model's server image (digits@1) and pushes it to the
// shared registry; the engine caches the build, so the tests that deploy it share it.
func pushedServerImage(t *testing.T) (*client.Client, *testenv.OCIRegistry, string) {
	t.Helper()
	docker := testenv.Docker(t)
	reg := testenv.SharedRegistry(t)
	bases := testenv.EnsureBaseImages(t, docker)
	ref := reg.Addr + "/digits:" + gitSHA
	testenv.BuildServerImage(t, docker, bases, testenv.BuildOptions{Tag: ref, ModelFile: "models/digits-reference.onnx",
		BuildArgs: map[string]string{"MODEL_VERSION": "1", "REVISION": gitSHA}})
	testenv.Push(t, docker, ref)
	return docker, reg, ref
}

func TestDeployAndRollbackCommands(t *testing.T) {
	docker, reg, ref := pushedServerImage(t)
	c := newCLI(t)
	publish := testenv.FreeAddr(t)
	env := "cli-" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))[:20]
	t.Cleanup(func() { testenv.RemoveEnvironmentContainers(docker, env) })
	common := []string{"--env", env, "--publish", publish, "--smoke-fixture", projectpath.Join(t, "tests/fixtures/digits_validation.json")}
	deployArgs := append([]string{"deploy", "--image", ref, "--model-version", "1", "--git-sha", gitSHA}, common...)

	// An empty store: the state bucket does not exist until the first deploy creates it.
	c.set("MODELSHIP_STATE_BUCKET", "state-new-"+strings.ToLower(rand.Text()[:8]))
	out, code := c.run("state", "show", "--env", env)
	assert.Equal(t, 3, code, "no state yet is 'not found': %s", out)
	assert.Contains(t, out, "does not exist yet")

	out, code = c.run(append(deployArgs, "--branch", "feature/x")...)
	assert.Equal(t, 8, code, out)

	// Run from cmd/modelship, where the default fixture path is not, for an image built without a
	// smoke inference of its own: refused before anything starts, saying how to give one.
	out, code = c.run("deploy", "--image", ref, "--model-version", "1", "--git-sha", gitSHA, "--env", env, "--publish", publish, "--branch", "main")
	assert.Equal(t, 2, code, out)
	assert.Contains(t, out, "--smoke-fixture FILE")
	assert.Contains(t, out, "--no-smoke")
	assert.Contains(t, out, "dev.modelship.smoke")

	out, code = c.run(append(deployArgs, "--branch", "main")...)
	require.Equal(t, 0, code, "the first deploy creates the state bucket: %s", out)
	assert.Contains(t, out, "deployed "+reg.Addr+"/digits@sha256:")
	assert.Contains(t, out, "steps: pull")
	assert.Contains(t, out, "stage deploy, model digits@1", "the stage says what it runs with before it starts")
	assertEvidence(t, c, env, "deploy")

	for i := 0; i < 2; i++ {
		out, code = c.run(append([]string{"rollback", "--reason", "gate failed"}, common...)...)
		require.Equal(t, 0, code, out)
		assert.Contains(t, out, "rolled "+env+" back to")
	}
	out, code = c.run(append([]string{"rollback", "--reason", "gate failed again"}, common...)...)
	assert.Equal(t, 6, code, "the third rollback within an hour halts: %s", out)
	out, code = c.run(append(deployArgs, "--branch", "main")...)
	assert.Equal(t, 6, code, "halted: %s", out)

	out, code = c.run("state", "resume", "--env", env, "--by", "alice", "--reason", "checked")
	require.Equal(t, 0, code, out)
	out, code = c.run(append(deployArgs, "--branch", "main")...)
	assert.Equal(t, 0, code, out)

	out, code = c.run(append([]string{"deploy", "--image", reg.Addr + "/digits:missing", "--model-version", "1", "--git-sha", gitSHA, "--branch", "main"}, common...)...)
	assert.Equal(t, 3, code, "an image no registry has: %s", out)
}

// The Kubernetes target through the CLI, against the test control plane.
func TestKubernetesTargetCommands(t *testing.T) {
	kube := testenv.SharedKube(t)
	c := newCLI(t)
	reg := testenv.SharedRegistry(t)
	ns := "cli-kube"
	_, err := kube.Client.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	require.NoError(t, err)
	// The pods answer on their own port through real model servers, and each deploy smoke-tests
	// them through the API server's pod proxy.
	port := strconv.Itoa(int(kube.ServePods(t)))
	common := []string{"--target", "kubernetes", "--kubeconfig", kube.Kubeconfig, "--namespace", ns, "--k8s-name", "digits", "--port", port,
		"--env", ns, "--progress-deadline", "5s", "--smoke-fixture", projectpath.Join(t, "tests/fixtures/digits_validation.json")}
	deployArgs := func(sha, version string) []string {
		return append([]string{"deploy", "--image", reg.Addr + "/digits:" + sha, "--model-version", version, "--git-sha", sha, "--branch", "main"}, common...)
	}
	other := "89abcdef0123456789abcdef0123456789abcdef"
	// KWOK pulls nothing, but the CLI pins each tag to the digest its registry serves.
	pushed := map[string]string{gitSHA: reg.PushRandomImage(t, "digits:"+gitSHA), other: reg.PushRandomImage(t, "digits:"+other)}

	out, code := c.run(append(deployArgs(gitSHA, "1"), "--dry-run")...)
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "kind: Deployment")
	assert.Contains(t, out, "name: digits-blue")

	// manifests renders exactly what deploy applies, from the same flags and defaults (the scan
	// check reads it); with resource flags set, both carry them.
	for _, extra := range [][]string{nil, {"--cpu-request", "250m", "--memory-limit", "256Mi"}} {
		dry, code := c.run(append(append(deployArgs(gitSHA, "1"), "--dry-run"), extra...)...)
		require.Equal(t, 0, code, dry)
		rendered, code := c.run(append([]string{"manifests", "--image", reg.Addr + "/digits:" + gitSHA, "--model-version", "1",
			"--git-sha", gitSHA, "--namespace", ns, "--k8s-name", "digits", "--port", port, "--env", ns, "--progress-deadline", "5s"}, extra...)...)
		require.Equal(t, 0, code, rendered)
		assert.Equal(t, dry, rendered, "manifests %v", extra)
	}
	assert.NotContains(t, out, "cpu: 100m", "no resource requests unless asked for, as deploy")

	out, code = c.run(deployArgs(gitSHA, "1")...)
	require.Equal(t, 0, code, out)
	out, code = c.run(deployArgs(other, "2")...)
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "steps: resolve")
	out, code = c.run("state", "show", "--env", ns)
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, pushed[other], "the state records the image by digest")
	assert.Contains(t, out, pushed[gitSHA])
	out, code = c.run(append(deployArgs("0000000000000000000000000000000000000000", "3"), "--model-version", "3")...)
	assert.Equal(t, 3, code, "a tag its registry does not have: %s", out)
	assert.Contains(t, out, "image not found in its registry")

	out, code = c.run(append([]string{"rollback", "--to", "previous", "--reason", "v2 unhealthy"}, common...)...)
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "restarted", "a selector switch reuses the running colour")
	svc, err := kube.Client.CoreV1().Services(ns).Get(context.Background(), "digits", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "blue", svc.Spec.Selector["dev.modelship.colour"])

	out, code = c.run(append(deployArgs(gitSHA, "1"), "--kubeconfig", filepath.Join(t.TempDir(), "missing"))...)
	assert.Equal(t, 2, code, "a kubeconfig that is not there: %s", out)
}

// assertEvidence checks the stage's evidence.json: every field named, no secret in it, and the
// deploy state pointing at the copy kept in the state bucket.
func assertEvidence(t *testing.T, c *cli, env, stage string) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(c.bucket("MODELSHIP_EVIDENCE_DIR"), "evidence.json"))
	require.NoError(t, err)
	assert.NotContains(t, string(raw), testenv.MinIOPassword, "no secret in the evidence")
	var rec map[string]any
	require.NoError(t, json.Unmarshal(raw, &rec))
	for _, f := range []string{"schema_version", "stage", "invocation", "versions", "model", "config", "inputs", "outputs", "timings", "outcome", "duration_ms"} {
		assert.Contains(t, rec, f)
	}
	assert.Equal(t, stage, rec["stage"])
	assert.Equal(t, "succeeded", rec["outcome"])
	assert.NotEmpty(t, rec["timings"])
	st, err := store.New(c.srv.Client(t), c.bucket("MODELSHIP_STATE_BUCKET")).Load(context.Background(), env, store.LoadOptions{})
	require.NoError(t, err)
	require.NotNil(t, st.Current)
	assert.True(t, strings.HasPrefix(st.Current.Evidence, "s3://"+c.bucket("MODELSHIP_STATE_BUCKET")+"/"+env+"/evidence/"), st.Current.Evidence)
}

func TestEvidenceCommandRedactsAndNamesEveryField(t *testing.T) {
	c := newCLI(t)
	out := filepath.Join(t.TempDir(), "evidence.json")
	const token = "ghp_not-a-real-token-but-secret"
	c.env = append(c.env, "REGISTRY_PASSWORD="+token)
	res, code := c.run("evidence", "--stage", "build-image", "--model-name", "digits", "--model-version", "1",
		"--input", "git_sha="+gitSHA, "--input", "registry_auth="+token, "--output", "image=r/digits@sha256:abc", "--out", out)
	require.Equal(t, 0, code, res)
	raw, err := os.ReadFile(out)
	require.NoError(t, err)
	assert.NotContains(t, string(raw), token)
	var rec map[string]any
	require.NoError(t, json.Unmarshal(raw, &rec))
	assert.Equal(t, "build-image", rec["stage"])
	assert.Equal(t, "r/digits@sha256:abc", rec["outputs"].(map[string]any)["image"])
}

// A model only ONNX Runtime runs is a servable model: push stores it without loading a
// backend, and inspect says which backend (and so which image) it gets.
func TestAnOpset17ModelIsPushedAndInspected(t *testing.T) {
	c := newCLI(t)
	opset17 := projectpath.Join(t, "models/digits-layernorm-opset17.onnx")
	out, code := c.run("model", "push", opset17, "--name", "digits", "--version", "17", "--git-sha", gitSHA)
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "pushed digits@17")

	out, code = c.run("--json", "model", "inspect", opset17)
	require.Equal(t, 0, code, out)
	var info struct {
		Opset     int64
		Operators []string
		Backend   string
	}
	require.NoError(t, json.Unmarshal([]byte(out), &info), out)
	assert.Equal(t, int64(17), info.Opset)
	assert.Contains(t, info.Operators, "LayerNormalization")
	assert.Equal(t, "onnxruntime", info.Backend)

	out, code = c.run("model", "inspect", projectpath.Join(t, "models/digits-reference.onnx"))
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "backend: gonnx")

	out, code = c.run("model", "inspect", filepath.Join(t.TempDir(), "missing.onnx"))
	assert.Equal(t, 1, code, out)
	assert.Contains(t, out, "missing.onnx")
}

// writeReport writes a quality-report.json of a gate over digits@version.
func writeReport(t *testing.T, version string, passed bool) string {
	t.Helper()
	r := map[string]any{"schema_version": 1, "passed": passed, "model": map[string]string{"name": "digits", "version": version},
		"fixture": "tests/fixtures/digits_validation.json", "started_at": time.Now().UTC(),
		"checks": []map[string]any{{"name": "accuracy", "value": 0.9733, "op": ">=", "threshold": 0.85, "passed": passed}}}
	raw, err := json.Marshal(r)
	require.NoError(t, err)
	p := filepath.Join(t.TempDir(), "quality-report.json")
	require.NoError(t, os.WriteFile(p, raw, 0o644))
	return p
}

// deploy --gate-report records the gate; promote copies the gated, verified release from one
// environment to the next by digest, moves each environment's model alias, and refuses what
// does not qualify.
func TestPromoteCommand(t *testing.T) {
	docker, reg, ref := pushedServerImage(t)
	c := newCLI(t)
	out, code := c.run("model", "push", projectpath.Join(t, "models/digits-reference.onnx"), "--name", "digits", "--version", "1", "--git-sha", gitSHA)
	require.Equal(t, 0, code, out)
	staging, production := "cli-promote-staging", "cli-promote-production"
	t.Cleanup(func() {
		testenv.RemoveEnvironmentContainers(docker, staging)
		testenv.RemoveEnvironmentContainers(docker, production)
	})
	fixture := projectpath.Join(t, "tests/fixtures/digits_validation.json")
	deployTo := func(env string, extra ...string) (string, int) {
		args := []string{"deploy", "--image", ref, "--model-version", "1", "--git-sha", gitSHA, "--branch", "main",
			"--env", env, "--publish", testenv.FreeAddr(t), "--smoke-fixture", fixture}
		return c.run(append(args, extra...)...)
	}
	promote := func(extra ...string) (string, int) {
		return c.run(append([]string{"promote", "--from", staging, "--to", production, "--publish", testenv.FreeAddr(t)}, extra...)...)
	}

	out, code = deployTo(staging, "--gate-report", writeReport(t, "1", false))
	assert.Equal(t, 2, code, "a failed gate's report is refused: %s", out)
	assert.Contains(t, out, "records a failed gate")
	out, code = deployTo(staging, "--gate-report", writeReport(t, "2", true))
	assert.Equal(t, 2, code, "another model's report is refused: %s", out)
	assert.Contains(t, out, "not the digits@1 being deployed")

	out, code = deployTo(staging)
	require.Equal(t, 0, code, out)
	out, code = promote("--min-age", "0s")
	assert.Equal(t, 8, code, "no gate recorded: %s", out)
	assert.Contains(t, out, "records no passed quality gate")

	out, code = deployTo(staging, "--gate-report", writeReport(t, "1", true))
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "model alias "+staging+" of digits now points at 1")
	out, code = promote()
	assert.Equal(t, 8, code, "younger than the default --min-age: %s", out)
	assert.Contains(t, out, "promotions need 15m0s")

	out, code = promote("--min-age", "0s")
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "promoted "+reg.Addr+"/digits@sha256:")
	out, code = c.run("state", "show", "--env", staging)
	require.Equal(t, 0, code, out)
	stagingImage := regexp.MustCompile(`current: \S+ git \S+ image (\S+)`).FindStringSubmatch(out)
	require.Len(t, stagingImage, 2, out)
	assert.Contains(t, out, "gate: passed")
	out, code = c.run("state", "show", "--env", production)
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "image "+stagingImage[1]+" deployed", "production runs staging's image, by digest")
	assert.Contains(t, out, "promoted from "+staging)

	out, code = c.run("--json", "model", "alias", "ls", "--name", "digits")
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, `"`+production+`"`, "promote moved production's alias")
	assert.Contains(t, out, `"`+staging+`"`)
}
