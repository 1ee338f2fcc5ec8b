// Package testenv is the test harness: it builds this repository's binaries, starts real
// servers on free loopback ports, and decides what a test does when a part is missing.
//
// A test that needs something this machine lacks skips with a message naming it — unless
// MODELSHIP_TEST_REQUIRE names that part (the test command sets it for everything it set up),
// in which case the missing part is a failure, so CI can never pass by skipping.
package testenv

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/modelship/modelship/internal/plumbing/projectpath"
)

// Missing skips the test because part is not available, or fails it when the test command
// promised that part through MODELSHIP_TEST_REQUIRE.
func Missing(t testing.TB, part, why string) {
	t.Helper()
	required := strings.Split(os.Getenv("MODELSHIP_TEST_REQUIRE"), ",")
	if slices.Contains(required, part) || slices.Contains(required, "all") {
		t.Fatalf("%s is required (MODELSHIP_TEST_REQUIRE=%s) but not available: %s", part, os.Getenv("MODELSHIP_TEST_REQUIRE"), why)
	}
	t.Skipf("skipped: needs %s, which this machine lacks (%s); `bash scripts/test.sh` sets it up", part, why)
}

var (
	buildMu    sync.Mutex
	builtPaths = map[string]string{}
	buildDir   string
)

// Binary builds a main package of this repository (e.g. "./serving/cmd/model-server") once per
// test process and returns the executable's path.
func Binary(t testing.TB, pkg string) string {
	t.Helper()
	return buildIn(t, ".", pkg)
}

// ModuleBinary builds the main package at the root of a Go module of its own inside this
// repository (e.g. "examples/diabetes-regression/server", an example project's own server),
// once per test process.
func ModuleBinary(t testing.TB, dir string) string {
	t.Helper()
	return buildIn(t, dir, ".")
}

func buildIn(t testing.TB, dir, pkg string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	key := filepath.Join(dir, pkg)
	if p, ok := builtPaths[key]; ok {
		return p
	}
	if buildDir == "" {
		dir, err := os.MkdirTemp("", "modelship-bin-")
		if err != nil {
			t.Fatalf("make build folder: %v", err)
		}
		buildDir = dir
	}
	out := filepath.Join(buildDir, filepath.Base(key))
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = filepath.Join(projectpath.Root(t), dir)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s in %s: %v\n%s", pkg, cmd.Dir, err, msg)
	}
	builtPaths[key] = out
	return out
}

// FreeAddr returns a loopback address with a port nobody listens on right now.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free loopback port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Process is a child process started for a test.
type Process struct {
	Cmd    *exec.Cmd
	output *syncBuffer
	done   chan struct{}
	err    error
}

// Output is what the process printed so far (stdout and stderr).
func (p *Process) Output() string { return p.output.String() }

// Wait blocks until the process exits and returns its error.
func (p *Process) Wait() error {
	<-p.done
	return p.err
}

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Start runs a command that dies with the test binary (Pdeathsig) and is stopped at cleanup.
func Start(t testing.TB, name string, args []string, env []string) *Process {
	t.Helper()
	p := startDetached(t, name, args, env)
	t.Cleanup(func() {
		if !p.Exited() {
			_ = p.Cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(10 * time.Second):
				_ = syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGKILL)
				<-p.done
			}
		}
		if t.Failed() {
			t.Logf("output of %s:\n%s", filepath.Base(name), p.output.String())
		}
	})
	return p
}

// startDetached runs a command that dies with the test binary but not with the test.
func startDetached(t testing.TB, name string, args []string, env []string) *Process {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	buf := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = buf, buf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &Process{Cmd: cmd, output: buf, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	return p
}

// WaitHTTP polls url until it answers with want, the process exits, or a minute passes.
func WaitHTTP(t testing.TB, p *Process, url string, want int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == want {
				return
			}
		}
		if p != nil && p.Exited() {
			t.Fatalf("process exited before %s answered %d: %v\n%s", url, want, p.Wait(), p.Output())
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s did not answer %d within a minute (last error: %v)", url, want, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
