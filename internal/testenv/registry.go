package testenv

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/jsonmessage"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// OCIRegistry is a real distribution registry (v3) on a loopback port.
type OCIRegistry struct {
	Addr string // host:port, usable as the registry part of an image reference
}

var sharedReg *OCIRegistry

// SharedRegistry starts one registry per test package (stopped by Main).
func SharedRegistry(t testing.TB) *OCIRegistry {
	t.Helper()
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if sharedReg != nil {
		return sharedReg
	}
	bin := os.Getenv("MODELSHIP_REGISTRY_BIN")
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("registry"); err != nil {
			Missing(t, "registry", "no distribution registry binary on PATH or in MODELSHIP_REGISTRY_BIN; scripts/tools.sh builds it")
		}
	}
	dir, err := os.MkdirTemp("", "modelship-registry-")
	if err != nil {
		t.Fatalf("registry folder: %v", err)
	}
	addr := FreeAddr(t)
	cfg := fmt.Sprintf("version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\nhttp:\n  addr: %s\n", filepath.Join(dir, "data"), addr)
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatalf("registry config: %v", err)
	}
	p := startDetached(t, bin, []string{"serve", cfgPath}, nil)
	WaitHTTP(t, p, "http://"+addr+"/v2/", http.StatusOK)
	sharedReg = &OCIRegistry{Addr: addr}
	sharedStop = append(sharedStop, func() {
		_ = p.Cmd.Process.Kill()
		<-p.done
		os.RemoveAll(dir)
	})
	return sharedReg
}

// noAuth is the registry auth header for a registry without authentication.
var noAuth = base64.URLEncoding.EncodeToString([]byte("{}"))

// Push pushes a local image reference (which must name this registry) through the engine.
func Push(t testing.TB, cli *client.Client, ref string) {
	t.Helper()
	rc, err := cli.ImagePush(context.Background(), ref, image.PushOptions{RegistryAuth: noAuth})
	if err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	defer rc.Close()
	if err := jsonmessage.DisplayJSONMessagesStream(rc, io.Discard, 0, false, nil); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
}

// PushRandomImage pushes a small image of random layers as repoTag (repository:tag, under this
// registry) straight through the registry API, no engine needed, and returns its digest
// reference. Targets that never run the image (KWOK pods) still resolve it like a real one.
func (r *OCIRegistry) PushRandomImage(t testing.TB, repoTag string) string {
	t.Helper()
	return r.PushRandomImageWithLabels(t, repoTag, nil)
}

// PushRandomImageWithLabels is PushRandomImage with labels in the image config, as a build
// would set them.
func (r *OCIRegistry) PushRandomImageWithLabels(t testing.TB, repoTag string, labels map[string]string) string {
	t.Helper()
	ref, err := name.ParseReference(r.Addr + "/" + repoTag)
	if err != nil {
		t.Fatalf("image reference %s: %v", repoTag, err)
	}
	img, err := random.Image(512, 1)
	if err == nil && labels != nil {
		var cfg *v1.ConfigFile
		if cfg, err = img.ConfigFile(); err == nil {
			cfg = cfg.DeepCopy()
			cfg.Config.Labels = labels
			img, err = mutate.ConfigFile(img, cfg)
		}
	}
	if err != nil {
		t.Fatalf("make a random image: %v", err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	digest, err := img.Digest()
	if err != nil {
		t.Fatalf("digest of %s: %v", ref, err)
	}
	return ref.Context().Name() + "@" + digest.String()
}
