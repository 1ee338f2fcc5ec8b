package testenv

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/jsonmessage"
	archive "github.com/moby/go-archive"
	"github.com/moby/patternmatcher/ignorefile"

	"github.com/modelship/modelship/internal/plumbing/projectpath"
)

// Docker connects to the engine named by DOCKER_HOST (or the default socket), negotiating the
// API version because Debian's dockerd 20.10 speaks API 1.41.
func Docker(t testing.TB) *client.Client {
	t.Helper()
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		Missing(t, "docker", fmt.Sprintf("docker client: %v", err))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := cli.Ping(ctx); err != nil {
		cli.Close()
		Missing(t, "docker", fmt.Sprintf("no Docker engine answers at %s: %v", cli.DaemonHost(), err))
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// RemoveEnvironmentContainers force-removes the containers a deploy target ran for env (label
// dev.modelship.environment, deploy.LabelEnvironment), at a test's end.
func RemoveEnvironmentContainers(cli *client.Client, env string) {
	ctx := context.Background()
	list, _ := cli.ContainerList(ctx, container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", "dev.modelship.environment="+env))})
	for _, c := range list {
		_ = cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
	}
}

// BaseImages are locally made stand-ins for the Dockerfile's public base images, since this
// machine cannot pull: a Go toolchain on busybox, and a distroless-like static runtime.
type BaseImages struct {
	Go      string
	Runtime string
}

// EnsureBaseImages imports the two base images once per engine (their tags carry the Go
// version) and returns their names.
func EnsureBaseImages(t testing.TB, cli *client.Client) BaseImages {
	t.Helper()
	goVersion := strings.TrimSpace(run(t, "go", "env", "GOVERSION"))
	goroot := strings.TrimSpace(run(t, "go", "env", "GOROOT"))
	imgs := BaseImages{Go: "modelship.test/golang:" + strings.TrimPrefix(goVersion, "go"), Runtime: "modelship.test/static:nonroot"}
	busybox, err := exec.LookPath("busybox")
	if err != nil || !isStatic(busybox) {
		Missing(t, "busybox-static", "a static /bin/busybox is needed for the shell of the local Go base image (apt-get install busybox-static)")
	}
	ca := hostCABundle(t)
	importImage(t, cli, imgs.Runtime, func(tw *tar.Writer) error {
		return addNonrootRuntime(tw, ca)
	}, "USER 65532:65532")
	importImage(t, cli, imgs.Go, func(tw *tar.Writer) error {
		bb, err := os.ReadFile(busybox)
		if err != nil {
			return err
		}
		if err := addFiles(tw, map[string][]byte{"etc/ssl/certs/ca-certificates.crt": ca}, "tmp", "go", "root"); err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Name: "bin/busybox", Mode: 0o755, Size: int64(len(bb)), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		if _, err := tw.Write(bb); err != nil {
			return err
		}
		for _, applet := range []string{"sh", "ls", "cat", "mkdir", "rm", "cp", "mv", "env", "wget", "tar"} {
			if err := tw.WriteHeader(&tar.Header{Name: "bin/" + applet, Linkname: "busybox", Typeflag: tar.TypeSymlink, Mode: 0o777}); err != nil {
				return err
			}
		}
		for _, part := range []string{"VERSION", "go.env", "bin", "lib", "pkg/include", "pkg/tool", "src"} {
			if err := addTree(tw, goroot, part, "usr/local/go"); err != nil {
				return err
			}
		}
		return nil
	}, "ENV PATH=/usr/local/go/bin:/go/bin:/bin", "ENV GOPATH=/go", "ENV HOME=/root", "ENV GOTOOLCHAIN=local", "WORKDIR /go")
	return imgs
}

// EnsureGlibcBaseImages imports, once per engine, stand-ins for the base images of
// serving/onnxruntime.Dockerfile, whose cgo binary and ONNX Runtime need glibc: a Go toolchain
// with gcc on Debian (golang:1.26), and a distroless-cc-like runtime (glibc, libstdc++,
// libgcc_s and libgomp, the CA bundle, the nonroot user, no shell). Both come from one
// debootstrap tree of Debian bookworm, the host's release, kept in MODELSHIP_CACHE.
func EnsureGlibcBaseImages(t testing.TB, cli *client.Client) BaseImages {
	t.Helper()
	goVersion := strings.TrimSpace(run(t, "go", "env", "GOVERSION"))
	goroot := strings.TrimSpace(run(t, "go", "env", "GOROOT"))
	imgs := BaseImages{
		Go:      "modelship.test/golang:" + strings.TrimPrefix(goVersion, "go") + "-" + debootstrapSuite,
		Runtime: "modelship.test/cc-" + debootstrapSuite + ":nonroot",
	}
	if imageExists(cli, imgs.Go) && imageExists(cli, imgs.Runtime) {
		return imgs
	}
	ca := hostCABundle(t)
	tree := debootstrapTree(t)
	importImage(t, cli, imgs.Runtime, func(tw *tar.Writer) error {
		if err := addGlibcLibraries(tw, tree); err != nil {
			return err
		}
		return addNonrootRuntime(tw, ca)
	}, "USER 65532:65532")
	importImage(t, cli, imgs.Go, func(tw *tar.Writer) error {
		if err := addDebootstrapTree(tw, tree); err != nil {
			return err
		}
		if err := addFiles(tw, map[string][]byte{"etc/ssl/certs/ca-certificates.crt": ca}, "go"); err != nil {
			return err
		}
		for _, part := range []string{"VERSION", "go.env", "bin", "lib", "pkg/include", "pkg/tool", "src"} {
			if err := addTree(tw, goroot, part, "usr/local/go"); err != nil {
				return err
			}
		}
		return nil
	}, "ENV PATH=/usr/local/go/bin:/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"ENV GOPATH=/go", "ENV HOME=/root", "ENV GOTOOLCHAIN=local", "WORKDIR /go")
	return imgs
}

func imageExists(cli *client.Client, ref string) bool {
	_, err := cli.ImageInspect(context.Background(), ref)
	return err == nil
}

// hostCABundle is the host's CA bundle, which goes into every base image made here so that
// builds reach the module proxy and Debian's mirror.
func hostCABundle(t testing.TB) []byte {
	t.Helper()
	ca, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt")
	if err != nil {
		Missing(t, "ca-certificates", "the host's CA bundle goes into every base image: "+err.Error())
	}
	return ca
}

// addNonrootRuntime writes what distroless images have besides their libraries: the CA
// bundle, the nonroot user (65532) and its home, and a /tmp anyone may write.
func addNonrootRuntime(tw *tar.Writer, ca []byte) error {
	return addFiles(tw, map[string][]byte{
		"etc/ssl/certs/ca-certificates.crt": ca,
		"etc/passwd":                        []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"),
		"etc/group":                         []byte("root:x:0:\nnonroot:x:65532:\n"),
	}, "tmp", "home/nonroot")
}

func isStatic(path string) bool {
	out, err := exec.Command("file", "-L", path).Output()
	return err == nil && bytes.Contains(out, []byte("statically linked"))
}

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		t.Fatalf("%s %v: %v", name, args, err)
	}
	return string(out)
}

// importImage docker-imports a root file system written by fill, unless ref already exists.
func importImage(t testing.TB, cli *client.Client, ref string, fill func(*tar.Writer) error, changes ...string) {
	t.Helper()
	ctx := context.Background()
	if _, err := cli.ImageInspect(ctx, ref); err == nil {
		return
	}
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		err := fill(tw)
		if err == nil {
			err = tw.Close()
		}
		pw.CloseWithError(err)
	}()
	rc, err := cli.ImageImport(ctx, image.ImportSource{Source: pr, SourceName: "-"}, ref, image.ImportOptions{Changes: changes})
	if err != nil {
		t.Fatalf("import base image %s: %v", ref, err)
	}
	defer rc.Close()
	if err := jsonmessage.DisplayJSONMessagesStream(rc, io.Discard, 0, false, nil); err != nil {
		t.Fatalf("import base image %s: %v", ref, err)
	}
}

func addFiles(tw *tar.Writer, files map[string][]byte, dirs ...string) error {
	for _, d := range dirs {
		mode := int64(0o755)
		if d == "tmp" {
			mode = 0o1777
		}
		hdr := &tar.Header{Name: d + "/", Mode: mode, Typeflag: tar.TypeDir}
		if strings.HasPrefix(d, "home/nonroot") {
			hdr.Uid, hdr.Gid = 65532, 65532
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
	}
	for name, data := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		if _, err := tw.Write(data); err != nil {
			return err
		}
	}
	return nil
}

// addTree copies root/part into the archive under prefix/part.
func addTree(tw *tar.Writer, root, part, prefix string) error {
	return filepath.WalkDir(filepath.Join(root, part), func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		info, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(path); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(filepath.Join(prefix, rel))
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		if d.IsDir() {
			hdr.Name += "/"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(tw, f)
		return err
	})
}

// BuildOptions is one build of the server's image.
type BuildOptions struct {
	Tag        string
	Dockerfile string // path inside the build context; default serving/Dockerfile
	ModelFile  string // path inside the build context
	BuildArgs  map[string]string
}

// BuildServerImage builds opts.Dockerfile (serving/Dockerfile by default) from the repository
// root (honouring .dockerignore) with the local base images, and returns the image ID.
func BuildServerImage(t testing.TB, cli *client.Client, bases BaseImages, opts BuildOptions) string {
	t.Helper()
	id, log, err := TryBuildServerImage(t, cli, bases, opts)
	if err != nil {
		t.Fatalf("%v\n%s", err, log)
	}
	t.Logf("built %s", opts.Tag)
	return id
}

// TryBuildServerImage is BuildServerImage for builds that may fail: it returns the build's
// error and its log instead of failing the test.
func TryBuildServerImage(t testing.TB, cli *client.Client, bases BaseImages, opts BuildOptions) (id, log string, err error) {
	t.Helper()
	if opts.Dockerfile == "" {
		opts.Dockerfile = "serving/Dockerfile"
	}
	root := projectpath.Root(t)
	ctxTar := buildContext(t, root, opts.Dockerfile)
	defer ctxTar.Close()
	args := map[string]*string{}
	set := func(k, v string) { args[k] = &v }
	set("GO_IMAGE", bases.Go)
	set("RUNTIME_IMAGE", bases.Runtime)
	if opts.ModelFile != "" {
		set("MODEL_FILE", opts.ModelFile)
	}
	for k, v := range opts.BuildArgs {
		set(k, v)
	}
	unlock := buildTurn(t)
	defer unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	resp, err := cli.ImageBuild(ctx, ctxTar, build.ImageBuildOptions{
		Dockerfile: opts.Dockerfile, Tags: []string{opts.Tag}, BuildArgs: args, Remove: true, ForceRemove: true,
	})
	if err != nil {
		return "", "", fmt.Errorf("docker build -f %s -t %s: %w", opts.Dockerfile, opts.Tag, err)
	}
	defer resp.Body.Close()
	var out bytes.Buffer
	if err := jsonmessage.DisplayJSONMessagesStream(resp.Body, &out, 0, false, nil); err != nil {
		return "", out.String(), fmt.Errorf("docker build -f %s -t %s failed: %w", opts.Dockerfile, opts.Tag, err)
	}
	img, err := cli.ImageInspect(context.Background(), opts.Tag)
	if err != nil {
		return "", out.String(), fmt.Errorf("inspect built image %s: %w", opts.Tag, err)
	}
	return img.ID, out.String(), nil
}

func buildContext(t testing.TB, root, dockerfile string) io.ReadCloser {
	t.Helper()
	var excludes []string
	if f, err := os.Open(filepath.Join(root, ".dockerignore")); err == nil {
		excludes, err = ignorefile.ReadAll(f)
		f.Close()
		if err != nil {
			t.Fatalf("read .dockerignore: %v", err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("open .dockerignore: %v", err)
	}
	rc, err := archive.TarWithOptions(root, &archive.TarOptions{ExcludePatterns: excludes})
	if err != nil {
		t.Fatalf("tar build context %s: %v", root, err)
	}
	return legacyContext(rc, dockerfile)
}

// mountFlag is a BuildKit RUN option the legacy builder rejects, and buildPlatform the FROM
// option it cannot parse (it knows no $BUILDPLATFORM): without it the build stage runs on the
// engine's platform, which is what BUILDPLATFORM names anyway.
var (
	mountFlag     = regexp.MustCompile(`--mount=\S+\s+`)
	buildPlatform = regexp.MustCompile(`--platform=\$BUILDPLATFORM\s+`)
)

// legacyContext rewrites the context's dockerfile for the legacy builder, which this Debian
// dockerd runs for API builds: its cache mounts and --platform=$BUILDPLATFORM are dropped, as
// the Dockerfile's own comment tells users of DOCKER_BUILDKIT=0 to do, so the tests build what
// those users build.
func legacyContext(rc io.ReadCloser, dockerfile string) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		defer rc.Close()
		tr, tw := tar.NewReader(rc), tar.NewWriter(pw)
		err := func() error {
			for {
				hdr, err := tr.Next()
				if errors.Is(err, io.EOF) {
					return tw.Close()
				}
				if err != nil {
					return err
				}
				body, err := io.ReadAll(tr)
				if err != nil {
					return err
				}
				if hdr.Name == dockerfile {
					body = buildPlatform.ReplaceAll(mountFlag.ReplaceAll(body, nil), nil)
					hdr.Size = int64(len(body))
				}
				if err := tw.WriteHeader(hdr); err != nil {
					return err
				}
				if _, err := tw.Write(body); err != nil {
					return err
				}
			}
		}()
		pw.CloseWithError(err)
	}()
	return pr
}

// buildTurn makes the test processes of one run build images one at a time. Concurrent builds
// on a cold engine all miss the layer cache and each downloads every module and compiles from
// scratch (the legacy builder has no cache mounts), which on 2 cores took one build past ten
// minutes; one at a time, the first fills the cache (go mod download, the base layers) and the
// rest reuse it.
func buildTurn(t testing.TB) (unlock func()) {
	t.Helper()
	path := filepath.Join(os.TempDir(), "modelship-image-build.lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatalf("open the image build lock %s: %v", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		t.Fatalf("take the image build lock %s: %v", path, err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}
}
