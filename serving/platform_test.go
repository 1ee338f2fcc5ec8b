package serving_test

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"io"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelship/modelship/internal/testenv"
)

// serverMachine reads /model-server out of an image, without running it (an arm64 binary does
// not run here), and returns its ELF machine.
func serverMachine(t *testing.T, cli *client.Client, ref string) elf.Machine {
	t.Helper()
	ctx := context.Background()
	created, err := cli.ContainerCreate(ctx, &container.Config{Image: ref}, nil, nil, nil, "")
	require.NoError(t, err)
	defer func() {
		_ = cli.ContainerRemove(context.Background(), created.ID, container.RemoveOptions{Force: true})
	}()
	rc, _, err := cli.CopyFromContainer(ctx, created.ID, "/model-server")
	require.NoError(t, err)
	defer rc.Close()
	tr := tar.NewReader(rc)
	_, err = tr.Next()
	require.NoError(t, err)
	raw, err := io.ReadAll(tr)
	require.NoError(t, err)
	f, err := elf.NewFile(bytes.NewReader(raw))
	require.NoError(t, err, "/model-server of %s is not an ELF binary", ref)
	return f.Machine
}

// serving/Dockerfile cross-compiles for the target platform in a build stage that runs on the
// builder's: what lets build-image push linux/amd64 and linux/arm64 without an emulator. The
// legacy builder here takes the target as TARGETOS/TARGETARCH build arguments, as BuildKit sets
// them per platform; the arm64 image's binary is checked by its ELF header, the amd64 one too.
func TestDockerfileBuildsForBothPlatforms(t *testing.T) {
	cli := testenv.Docker(t)
	bases := testenv.EnsureBaseImages(t, cli)
	want := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}
	layers := map[string][]string{}
	for arch, machine := range want {
		tag := "modelship.test/model:platform-" + arch
		testenv.BuildServerImage(t, cli, bases, testenv.BuildOptions{Tag: tag, ModelFile: "models/digits-reference.onnx",
			BuildArgs: map[string]string{"TARGETOS": "linux", "TARGETARCH": arch, "MODEL_VERSION": "1", "REVISION": "platform-test"}})
		t.Cleanup(func() { _, _ = cli.ImageRemove(context.Background(), tag, image.RemoveOptions{Force: true}) })
		assert.Equal(t, machine, serverMachine(t, cli, tag), "linux/%s image", arch)
		img, err := cli.ImageInspect(context.Background(), tag)
		require.NoError(t, err)
		layers[arch] = img.RootFS.Layers
	}
	require.Equal(t, len(layers["amd64"]), len(layers["arm64"]))
	n := len(layers["amd64"])
	assert.Equal(t, layers["amd64"][n-2], layers["arm64"][n-2], "one model layer, shared by both platforms")
	assert.NotEqual(t, layers["amd64"][n-1], layers["arm64"][n-1], "a binary layer per platform")
}
