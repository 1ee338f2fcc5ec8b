package testenv

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/jsonmessage"
)

// OwnDocker is a plain Docker engine of one test's own, on a unix socket, that the test may
// stop and start again: the main engine is shared by every test (and may be a developer's), so
// it is never the one restarted.
type OwnDocker struct {
	Host    string // unix:///tmp/msd.../docker.sock
	bin     string
	args    []string
	process *Process
	t       testing.TB
}

// How long the engine gets to stop its containers and exit, and to answer again, before the
// test gives up on it: generous, since a loaded two-core machine is slow but not broken.
const (
	ownDockerStopWait  = 2 * time.Minute
	ownDockerStartWait = 2 * time.Minute
)

// StartOwnDocker starts the engine with its own data, exec root, pidfile and bridge and without
// iptables rules, so it shares no state with the main engine; it is stopped, with everything it
// ran, at cleanup. It needs root, dockerd and ip, which the test command provides.
func StartOwnDocker(t testing.TB) *OwnDocker {
	t.Helper()
	// The API socket lives in the folder too.
	dockerd, dir := dockerdFolder(t, "an engine of the test's own", "msd")
	// Runs last, once the engine has stopped: what it left running or mounted goes with its
	// folder.
	t.Cleanup(func() {
		killStrays(dir)
		unmountUnder(dir)
		_ = os.RemoveAll(dir)
	})
	// An empty configuration file, so a host's /etc/docker/daemon.json can neither clash with
	// these flags nor point this engine at the main one's folders.
	config := filepath.Join(dir, "daemon.json")
	if err := os.WriteFile(config, []byte("{}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := &OwnDocker{Host: "unix://" + filepath.Join(dir, "docker.sock"), bin: dockerd, t: t}
	d.args = []string{"--config-file", config, "--host", d.Host,
		"--data-root", filepath.Join(dir, "data"), "--exec-root", filepath.Join(dir, "x"), "--pidfile", filepath.Join(dir, "pid"),
		"--bridge", ownBridge(t), "--iptables=false"}
	d.start(t)
	// Registered after the process's own cleanup, so it runs first: the containers go while the
	// engine can still remove them, and the engine is given the time it needs to stop.
	t.Cleanup(func() {
		d.removeContainers()
		d.stop(t)
	})
	return d
}

// Client is a client of this engine, closed at the test's end.
func (d *OwnDocker) Client(t testing.TB) *client.Client {
	t.Helper()
	cli, err := client.NewClientWithOpts(client.WithHost(d.Host), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatalf("client of the own dockerd at %s: %v", d.Host, err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// Restart stops the engine the way a host's service manager does (SIGTERM, then waiting for it
// to exit) and starts it again with the same arguments and data, returning once it answers.
// Without live restore, the engine stops its containers on the way down and, on the way up,
// starts again those whose restart policy says so.
func (d *OwnDocker) Restart(t testing.TB) {
	t.Helper()
	d.stop(t)
	d.start(t)
}

// start runs dockerd and waits until it answers a ping. The process is tied to the test that
// started the engine, whichever test restarts it.
func (d *OwnDocker) start(t testing.TB) {
	t.Helper()
	d.process = Start(d.t, d.bin, d.args, nil)
	waitDockerd(t, d.process, "the own dockerd", ownDockerStartWait, 5*time.Second, client.WithHost(d.Host))
}

// stop sends SIGTERM and waits for the engine to exit; one that hangs is killed with its
// process group (its containerd included).
func (d *OwnDocker) stop(t testing.TB) {
	t.Helper()
	p := d.process
	if p == nil || p.Exited() {
		return
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(ownDockerStopWait):
		_ = syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		t.Errorf("the own dockerd at %s did not exit within %s of SIGTERM and was killed\n%s", d.Host, ownDockerStopWait, tail(p.Output(), 20))
	}
}

// removeContainers force-removes every container of this engine; their processes would
// otherwise outlive it under their shims.
func (d *OwnDocker) removeContainers() {
	if d.process == nil || d.process.Exited() {
		return
	}
	cli, err := client.NewClientWithOpts(client.WithHost(d.Host), client.WithAPIVersionNegotiation())
	if err != nil {
		return
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), ownDockerStopWait)
	defer cancel()
	list, _ := cli.ContainerList(ctx, container.ListOptions{All: true})
	for _, c := range list {
		_ = cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
	}
}

// killStrays kills what the engine started and left behind once it is gone: a container
// start cut short by the engine going down leaves its containerd shim running, which neither
// the engine's next start nor its stop reaps. Only processes whose arguments name this engine's
// own folder are touched, by their id, a shim's children before it.
func killStrays(dir string) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !strings.Contains(string(cmdline), dir+"/") {
			continue
		}
		if children, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid)); err == nil {
			for _, c := range strings.Fields(string(children)) {
				if child, err := strconv.Atoi(c); err == nil {
					_ = syscall.Kill(child, syscall.SIGKILL)
				}
			}
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// unmountUnder detaches whatever is still mounted below dir (overlay layers, a container's
// shm), deepest first. Only this engine's folder is ever looked at.
func unmountUnder(dir string) {
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 1 && strings.HasPrefix(fields[1], dir+"/") {
			points = append(points, fields[1])
		}
	}
	for i := len(points) - 1; i >= 0; i-- {
		_ = syscall.Unmount(points[i], syscall.MNT_DETACH)
	}
}

// CopyImages copies images from another engine into this one through the Docker API (save
// there, load here), so this engine needs no registry. An image the source had to pull from its
// registry for this is untagged there again afterwards, leaving the source as it was found.
func (d *OwnDocker) CopyImages(t testing.TB, from *client.Client, refs ...string) {
	t.Helper()
	ctx := context.Background()
	for _, ref := range refs {
		if _, err := from.ImageInspect(ctx, ref); err == nil {
			continue
		} else if !errdefs.IsNotFound(err) {
			t.Fatalf("inspect %s on %s: %v", ref, from.DaemonHost(), err)
		}
		rc, err := from.ImagePull(ctx, ref, image.PullOptions{RegistryAuth: noAuth})
		if err == nil {
			err = jsonmessage.DisplayJSONMessagesStream(rc, io.Discard, 0, false, nil)
			rc.Close()
		}
		if err != nil {
			t.Fatalf("pull %s on %s to copy it: %v", ref, from.DaemonHost(), err)
		}
		t.Cleanup(func() { _, _ = from.ImageRemove(context.Background(), ref, image.RemoveOptions{}) })
	}
	saved, err := from.ImageSave(ctx, refs)
	if err != nil {
		t.Fatalf("save %s on %s: %v", strings.Join(refs, ", "), from.DaemonHost(), err)
	}
	defer saved.Close()
	to := d.Client(t)
	resp, err := to.ImageLoad(ctx, saved, client.ImageLoadWithQuiet(true))
	if err != nil {
		t.Fatalf("load %s into %s: %v", strings.Join(refs, ", "), d.Host, err)
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var msg jsonmessage.JSONMessage
		if err := dec.Decode(&msg); err != nil {
			break
		}
		if msg.Error != nil {
			t.Fatalf("load %s into %s: %s", strings.Join(refs, ", "), d.Host, msg.Error.Message)
		}
	}
	for _, ref := range refs {
		if _, err := to.ImageInspect(ctx, ref); err != nil {
			t.Fatalf("%s was not loaded into %s: %v", ref, d.Host, err)
		}
	}
}
