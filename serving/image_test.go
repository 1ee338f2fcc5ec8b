package serving_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
	"github.com/docker/go-connections/nat"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelship/modelship/internal/testenv"
	"github.com/modelship/modelship/serving"
)

// TestDockerfileBuildsAServingImage builds serving/Dockerfile with a real Docker engine, runs
// the image, and checks the layer layout that keeps pushes small.
func TestDockerfileBuildsAServingImage(t *testing.T) {
	cli := testenv.Docker(t)
	bases := testenv.EnsureBaseImages(t, cli)
	ctx := context.Background()

	tag := "modelship.test/model:image-test-a"
	testenv.BuildServerImage(t, cli, bases, testenv.BuildOptions{Tag: tag, ModelFile: "models/digits-reference.onnx",
		BuildArgs: map[string]string{"REVISION": "0123456789abcdef0123456789abcdef01234567", "MODEL_VERSION": "7", "VERSION": "a"}})
	img, err := cli.ImageInspect(ctx, tag)
	require.NoError(t, err)
	assert.Equal(t, "65532:65532", img.Config.User, "runs as non-root")
	assert.Contains(t, img.Config.ExposedPorts, "8000/tcp")
	assert.Equal(t, "0123456789abcdef0123456789abcdef01234567", img.Config.Labels["org.opencontainers.image.revision"])
	assert.Equal(t, "7", img.Config.Labels["dev.modelship.model.version"])
	assert.Equal(t, "digits", img.Config.Labels["dev.modelship.model.name"])
	require.NotNil(t, img.Config.Healthcheck)

	runtime, err := cli.ImageInspect(ctx, bases.Runtime)
	require.NoError(t, err)
	base := len(runtime.RootFS.Layers)
	require.Len(t, img.RootFS.Layers, base+2, "runtime base + model layer + binary layer")

	// A code-only change (here: another version stamped into the binary) rebuilds the binary
	// layer and leaves the model layer byte-identical.
	codeChange := "modelship.test/model:image-test-b"
	testenv.BuildServerImage(t, cli, bases, testenv.BuildOptions{Tag: codeChange, ModelFile: "models/digits-reference.onnx",
		BuildArgs: map[string]string{"REVISION": "fedcba9876543210fedcba9876543210fedcba98", "MODEL_VERSION": "7", "VERSION": "b"}})
	imgB, err := cli.ImageInspect(ctx, codeChange)
	require.NoError(t, err)
	assert.Equal(t, img.RootFS.Layers[base], imgB.RootFS.Layers[base], "model layer unchanged by a code change")
	assert.NotEqual(t, img.RootFS.Layers[base+1], imgB.RootFS.Layers[base+1], "binary layer rebuilt")

	// Another model changes the model layer.
	modelChange := "modelship.test/model:image-test-weak"
	testenv.BuildServerImage(t, cli, bases, testenv.BuildOptions{Tag: modelChange, ModelFile: "models/digits-weak.onnx",
		BuildArgs: map[string]string{"REVISION": "fedcba9876543210fedcba9876543210fedcba98", "MODEL_VERSION": "8", "VERSION": "b"}})
	imgW, err := cli.ImageInspect(ctx, modelChange)
	require.NoError(t, err)
	assert.NotEqual(t, img.RootFS.Layers[base], imgW.RootFS.Layers[base], "a new model is a new model layer")
	assert.Equal(t, imgB.RootFS.Layers[base+1], imgW.RootFS.Layers[base+1], "and the same binary the same binary layer")

	// The image serves: ready, metadata with the baked-in version, a correct prediction.
	url := runContainer(t, cli, tag)
	status, body := do(t, http.MethodGet, url+"/v2/models/digits", "", nil)
	require.Equal(t, http.StatusOK, status, string(body))
	var meta serving.ModelMetadata
	require.NoError(t, json.Unmarshal(body, &meta))
	assert.Equal(t, []string{"7"}, meta.Versions)
	f := fixture(t)
	status, body = do(t, http.MethodPost, url+"/v2/models/digits/infer", inferBody([][]float64{f.Samples[2].Features}), nil)
	require.Equal(t, http.StatusOK, status, string(body))
	var resp serving.InferResponse
	require.NoError(t, json.Unmarshal(body, &resp))
	assert.Equal(t, f.Samples[2].Label, argmax(resp.Outputs[0].Data))
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
