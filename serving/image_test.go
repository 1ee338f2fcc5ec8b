package serving_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/docker/go-connections/nat"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelship/modelship/internal/plumbing/projectpath"
	"github.com/modelship/modelship/internal/testenv"
	"github.com/modelship/modelship/serving"
)

// TestDockerfileBuildsAServingImage builds serving/Dockerfile with a real Docker engine, runs
// the image, and checks the layer layout that keeps pushes small.
func TestDockerfileBuildsAServingImage(t *testing.T) {
	cli := testenv.Docker(t)
	bases := testenv.EnsureBaseImages(t, cli)

	tag := "modelship.test/model:image-test-a"
	testenv.BuildServerImage(t, cli, bases, testenv.BuildOptions{Tag: tag, ModelFile: "models/digits-reference.onnx",
		BuildArgs: map[string]string{"REVISION": "0123456789abcdef0123456789abcdef01234567", "MODEL_VERSION": "7", "VERSION": "a"}})
	_, layers := assertServerImage(t, cli, tag, bases.Runtime, "0123456789abcdef0123456789abcdef01234567", "7")
	require.Len(t, layers, 2, "runtime base + model layer + binary layer")

	// A code-only change (here: another version stamped into the binary) rebuilds the binary
	// layer and leaves the model layer byte-identical.
	codeChange := "modelship.test/model:image-test-b"
	testenv.BuildServerImage(t, cli, bases, testenv.BuildOptions{Tag: codeChange, ModelFile: "models/digits-reference.onnx",
		BuildArgs: map[string]string{"REVISION": "fedcba9876543210fedcba9876543210fedcba98", "MODEL_VERSION": "7", "VERSION": "b"}})
	layersB := layersAbove(t, cli, codeChange, bases.Runtime)
	assert.Equal(t, layers[0], layersB[0], "model layer unchanged by a code change")
	assert.NotEqual(t, layers[1], layersB[1], "binary layer rebuilt")

	// Another model changes the model layer.
	modelChange := "modelship.test/model:image-test-weak"
	testenv.BuildServerImage(t, cli, bases, testenv.BuildOptions{Tag: modelChange, ModelFile: "models/digits-weak.onnx",
		BuildArgs: map[string]string{"REVISION": "fedcba9876543210fedcba9876543210fedcba98", "MODEL_VERSION": "8", "VERSION": "b"}})
	layersW := layersAbove(t, cli, modelChange, bases.Runtime)
	assert.NotEqual(t, layers[0], layersW[0], "a new model is a new model layer")
	assert.Equal(t, layersB[1], layersW[1], "and the same binary the same binary layer")

	// The image serves: ready, metadata with the baked-in version, a correct prediction.
	assertServes(t, runContainer(t, cli, tag), "7")
}

// assertServerImage checks what every server image promises (non-root, port 8000, the
// revision and model labels, a health check) and returns it with its layers above the base.
func assertServerImage(t *testing.T, cli *client.Client, tag, base, revision, version string) (image.InspectResponse, []string) {
	t.Helper()
	img, err := cli.ImageInspect(context.Background(), tag)
	require.NoError(t, err)
	assert.Equal(t, "65532:65532", img.Config.User, "runs as non-root")
	assert.Contains(t, img.Config.ExposedPorts, "8000/tcp")
	assert.Equal(t, revision, img.Config.Labels["org.opencontainers.image.revision"])
	assert.Equal(t, version, img.Config.Labels["dev.modelship.model.version"])
	assert.Equal(t, "digits", img.Config.Labels["dev.modelship.model.name"])
	require.NotNil(t, img.Config.Healthcheck)
	return img, layersAbove(t, cli, tag, base)
}

// layersAbove are the layers an image adds to its base image.
func layersAbove(t *testing.T, cli *client.Client, tag, base string) []string {
	t.Helper()
	img, err := cli.ImageInspect(context.Background(), tag)
	require.NoError(t, err)
	runtime, err := cli.ImageInspect(context.Background(), base)
	require.NoError(t, err)
	require.Equal(t, runtime.RootFS.Layers, img.RootFS.Layers[:len(runtime.RootFS.Layers)], "%s is built on %s", tag, base)
	return img.RootFS.Layers[len(runtime.RootFS.Layers):]
}

// assertServes checks a running server image: its metadata names the baked-in version, and it
// predicts a fixture sample right. It returns the metadata.
func assertServes(t *testing.T, url, version string) serving.ModelMetadata {
	t.Helper()
	status, body := do(t, http.MethodGet, url+"/v2/models/digits", "", nil)
	require.Equal(t, http.StatusOK, status, string(body))
	var meta serving.ModelMetadata
	require.NoError(t, json.Unmarshal(body, &meta))
	assert.Equal(t, []string{version}, meta.Versions)
	f := fixture(t)
	status, body = do(t, http.MethodPost, url+"/v2/models/digits/infer", inferBody([][]float64{f.Samples[2].Features}), nil)
	require.Equal(t, http.StatusOK, status, string(body))
	var resp serving.InferResponse
	require.NoError(t, json.Unmarshal(body, &resp))
	assert.Equal(t, f.Samples[2].Label, argmax(resp.Outputs[0].Data))
	return meta
}

// TestOnnxRuntimeDockerfileServesAnOpset17Model builds serving/onnxruntime.Dockerfile with
// glibc base images and the ONNX Runtime library of MODELSHIP_ORT_LIBRARY put in the build
// context, runs the image on a model gonnx cannot run, and checks the layer layout.
func TestOnnxRuntimeDockerfileServesAnOpset17Model(t *testing.T) {
	lib := testenv.ORTLibraryFile(t)
	cli := testenv.Docker(t)
	start := time.Now()
	bases := testenv.EnsureGlibcBaseImages(t, cli)
	t.Logf("glibc base images ready in %s", time.Since(start).Round(time.Millisecond))
	const model = "models/digits-layernorm-opset17.onnx"
	ortLibrary, ortSHA256 := putInBuildContext(t, lib)
	build := func(tag string, args map[string]string) testenv.BuildOptions {
		args["ORT_LIBRARY"] = ortLibrary
		if _, ok := args["ORT_SHA256"]; !ok {
			args["ORT_SHA256"] = ortSHA256
		}
		removeImageAtCleanup(t, cli, tag)
		return testenv.BuildOptions{Tag: tag, Dockerfile: "serving/onnxruntime.Dockerfile", ModelFile: model, BuildArgs: args}
	}

	t.Run("serves with ONNX Runtime and keeps the layers apart", func(t *testing.T) {
		tag := "modelship.test/model:ort-image-test-a"
		start := time.Now()
		testenv.BuildServerImage(t, cli, bases, build(tag, map[string]string{
			"REVISION": "0123456789abcdef0123456789abcdef01234567", "MODEL_VERSION": "17", "VERSION": "a"}))
		t.Logf("ONNX Runtime image built in %s", time.Since(start).Round(time.Millisecond))
		img, layers := assertServerImage(t, cli, tag, bases.Runtime, "0123456789abcdef0123456789abcdef01234567", "17")
		t.Logf("image size %.1f MB", float64(img.Size)/1e6)
		assert.Equal(t, ortSHA256, img.Config.Labels["dev.modelship.onnxruntime.sha256"])
		assert.Subset(t, img.Config.Env, []string{"MODELSHIP_ORT_LIBRARY=/libonnxruntime.so", "MODELSHIP_BACKEND=auto", "MODELSHIP_MODEL_PATH=/model.onnx"})
		require.Len(t, layers, 3, "runtime base + ONNX Runtime layer + model layer + binary layer")

		// A code-only change rebuilds the binary layer alone.
		codeChange := "modelship.test/model:ort-image-test-b"
		testenv.BuildServerImage(t, cli, bases, build(codeChange, map[string]string{
			"REVISION": "fedcba9876543210fedcba9876543210fedcba98", "MODEL_VERSION": "17", "VERSION": "b"}))
		layersB := layersAbove(t, cli, codeChange, bases.Runtime)
		assert.Equal(t, layers[0], layersB[0], "ONNX Runtime layer unchanged by a code change")
		assert.Equal(t, layers[1], layersB[1], "model layer unchanged by a code change")
		assert.NotEqual(t, layers[2], layersB[2], "binary layer rebuilt")

		// The image serves the opset-17 model with ONNX Runtime: metadata, a correct prediction.
		meta := assertServes(t, runContainer(t, cli, tag), "17")
		assert.Equal(t, "onnxruntime", meta.Params["backend"], "metadata: %+v", meta)
	})

	t.Run("a wrong ORT_SHA256 fails the build naming both digests", func(t *testing.T) {
		wrong := strings.Repeat("0", 64)
		_, log, err := testenv.TryBuildServerImage(t, cli, bases, build("modelship.test/model:ort-image-test-wrong-sha", map[string]string{
			"ORT_SHA256": wrong}))
		require.Error(t, err, "a library that is not the pinned one must fail the build")
		assert.Contains(t, log, "sha256 mismatch")
		assert.Contains(t, log, "expected "+wrong)
		assert.Contains(t, log, "got "+ortSHA256)
	})
}

// putInBuildContext copies the library into the build context's onnxruntime/ folder, the one
// .dockerignore lets in for ORT_LIBRARY, under a name no one else uses, and removes it (and the
// folder, when the test made it) at cleanup. It returns the path in the context and the sha256.
func putInBuildContext(t *testing.T, lib string) (string, string) {
	t.Helper()
	dir := projectpath.Join(t, "onnxruntime")
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		require.NoError(t, os.Mkdir(dir, 0o755))
		t.Cleanup(func() { _ = os.Remove(dir) }) // only when empty: someone may have put a file there
	}
	name := fmt.Sprintf("%s.image-test-%d", filepath.Base(lib), os.Getpid())
	src, err := os.Open(lib)
	require.NoError(t, err)
	defer src.Close()
	dst, err := os.OpenFile(filepath.Join(dir, name), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.Remove(filepath.Join(dir, name)) })
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(dst, h), src)
	require.NoError(t, err)
	require.NoError(t, dst.Close())
	return path.Join("onnxruntime", name), hex.EncodeToString(h.Sum(nil))
}

// removeImageAtCleanup removes a test image (and its untagged parents) when the test ends.
func removeImageAtCleanup(t *testing.T, cli *client.Client, ref string) {
	t.Cleanup(func() {
		_, _ = cli.ImageRemove(context.Background(), ref, image.RemoveOptions{Force: true, PruneChildren: true})
	})
}

// runContainer starts image with port 8000 published on a free loopback port and returns its
// base URL once ready.
func runContainer(t *testing.T, cli *client.Client, image string) string {
	t.Helper()
	ctx := context.Background()
	addr := testenv.FreeAddr(t)
	host, port, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	created, err := cli.ContainerCreate(ctx, &container.Config{Image: image, ExposedPorts: nat.PortSet{"8000/tcp": {}}},
		&container.HostConfig{PortBindings: nat.PortMap{"8000/tcp": {{HostIP: host, HostPort: port}}}}, nil, nil, "")
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = cli.ContainerRemove(context.Background(), created.ID, container.RemoveOptions{Force: true})
	})
	require.NoError(t, cli.ContainerStart(ctx, created.ID, container.StartOptions{}))
	url := fmt.Sprintf("http://%s", addr)
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := http.Get(url + "/v2/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return url
			}
		}
		if time.Now().After(deadline) {
			logs, _ := cli.ContainerLogs(ctx, created.ID, container.LogsOptions{ShowStdout: true, ShowStderr: true})
			t.Fatalf("container of %s not ready within a minute (%v); logs: %v", image, err, logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
