package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/modelship/modelship/internal/plumbing/objstore"
)

// MinIO credentials the harness starts every server with.
const (
	MinIOUser     = "modelship-test"
	MinIOPassword = "modelship-test-secret"
)

// MinIOServer is a real MinIO process on a loopback port.
type MinIOServer struct {
	Addr           string
	Dir            string
	User, Password string // root credentials
	bin            string
	process        *Process
	t              testing.TB
}

// Config is the objstore configuration that reaches this server.
func (s *MinIOServer) Config() objstore.Config {
	return objstore.Config{Endpoint: "http://" + s.Addr, Region: "us-east-1", AccessKey: s.User, SecretKey: s.Password}
}

// Client is a minio-go client of this server.
func (s *MinIOServer) Client(t testing.TB) *minio.Client {
	t.Helper()
	c, err := objstore.NewClient(s.Config())
	if err != nil {
		t.Fatalf("minio client: %v", err)
	}
	return c
}

// Bucket makes a fresh bucket with a random name, so tests sharing a server never collide.
func (s *MinIOServer) Bucket(t testing.TB, prefix string) string {
	t.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := prefix + "-" + hex.EncodeToString(b)
	if err := s.Client(t).MakeBucket(context.Background(), name, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("make bucket %s: %v", name, err)
	}
	return name
}

// Stop ends the server (SIGTERM, then SIGKILL) and waits for it.
func (s *MinIOServer) Stop() {
	if s.process == nil || s.process.Exited() {
		return
	}
	_ = s.process.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.process.done:
	case <-time.After(10 * time.Second):
		_ = s.process.Cmd.Process.Kill()
		<-s.process.done
	}
}

// Start (re)starts the server on its address and data folder and waits until it is live.
func (s *MinIOServer) Start(t testing.TB) {
	t.Helper()
	s.process = Start(t, s.bin, []string{"server", s.Dir, "--address", s.Addr, "--console-address", FreeAddr(t), "--quiet"},
		[]string{"MINIO_ROOT_USER=" + s.User, "MINIO_ROOT_PASSWORD=" + s.Password, "MINIO_BROWSER=off", "MINIO_UPDATE=off", "MINIO_CI_CD=1"})
	WaitHTTP(t, s.process, "http://"+s.Addr+"/minio/health/ready", http.StatusOK)
}

func minioBinary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("MODELSHIP_MINIO_BIN"); p != "" {
		return p
	}
	p, err := exec.LookPath("minio")
	if err != nil {
		Missing(t, "minio", "no minio binary on PATH or in MODELSHIP_MINIO_BIN; scripts/tools.sh builds it")
	}
	return p
}

// StartMinIO starts a server of the test's own, stopped at the test's end.
func StartMinIO(t testing.TB) *MinIOServer {
	t.Helper()
	return StartMinIOAs(t, MinIOUser, MinIOPassword)
}

// StartMinIOAs starts a server of the test's own whose root credentials are user and password
// (MinIO wants at least 3 and 8 characters), stopped at the test's end.
func StartMinIOAs(t testing.TB, user, password string) *MinIOServer {
	t.Helper()
	s := &MinIOServer{Addr: FreeAddr(t), Dir: t.TempDir(), User: user, Password: password, bin: minioBinary(t), t: t}
	s.Start(t)
	t.Cleanup(s.Stop)
	return s
}

var (
	sharedMu    sync.Mutex
	sharedMinIO *MinIOServer
	sharedStop  []func()
)

// SharedMinIO is one server per test package, started by the first test that asks and stopped
// by Main when the package's tests are done.
func SharedMinIO(t testing.TB) *MinIOServer {
	t.Helper()
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if sharedMinIO != nil {
		return sharedMinIO
	}
	dir, err := os.MkdirTemp("", "modelship-minio-")
	if err != nil {
		t.Fatalf("minio data folder: %v", err)
	}
	s := &MinIOServer{Addr: FreeAddr(t), Dir: dir, User: MinIOUser, Password: MinIOPassword, bin: minioBinary(t)}
	// The shared server outlives the first test, so it is not tied to that test's cleanup.
	s.process = startDetached(t, s.bin, []string{"server", dir, "--address", s.Addr, "--console-address", FreeAddr(t), "--quiet"},
		[]string{"MINIO_ROOT_USER=" + s.User, "MINIO_ROOT_PASSWORD=" + s.Password, "MINIO_BROWSER=off", "MINIO_UPDATE=off", "MINIO_CI_CD=1"})
	WaitHTTP(t, s.process, "http://"+s.Addr+"/minio/health/ready", http.StatusOK)
	sharedMinIO = s
	sharedStop = append(sharedStop, func() { s.Stop(); os.RemoveAll(dir) })
	return s
}

// Main runs a package's tests and then stops the shared servers they started.
func Main(m *testing.M) int {
	code := m.Run()
	sharedMu.Lock()
	defer sharedMu.Unlock()
	for _, stop := range sharedStop {
		stop()
	}
	// The binaries Binary built (about 90 MB a package) are the process's alone.
	buildMu.Lock()
	defer buildMu.Unlock()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	return code
}
