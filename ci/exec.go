package main

import (
	"crypto/rand"
	"errors"
	"fmt"
	"strings"

	"github.com/modelship/modelship/ci/internal/dagger"
)

// stderrLines is how much of a failed command's stderr an error carries.
const stderrLines = 20

// fresh makes the container's next exec run on every call. The engine reuses an identical
// exec from its cache even inside a +cache="never" function, so an exec that reads or changes
// the outside world (deploy, rollback, state, resolving a moving reference) must differ per call,
// or it silently does nothing and returns an old answer. Whatever is chained after a fresh exec
// misses the cache as well, so a fresh exec is read (stdout, a file) and never built upon.
func fresh(c *dagger.Container) *dagger.Container {
	return c.WithEnvVariable("MODELSHIP_CALL_ID", rand.Text())
}

// failed says what failed and carries the command's last stderr lines: the engine's own
// message is only "exit code: N", which names neither the cause nor the way out.
func failed(what string, err error) error {
	var ee *dagger.ExecError
	if !errors.As(err, &ee) {
		return fmt.Errorf("%s: %w", what, err)
	}
	return &commandError{what: what, exec: ee}
}

// commandError is a command that ran and exited non-zero; callers read its exit code.
type commandError struct {
	what string
	exec *dagger.ExecError
}

func (e *commandError) Error() string {
	return fmt.Sprintf("%s: `%s` exited %d:\n%s", e.what, strings.Join(e.exec.Cmd, " "), e.exec.ExitCode, tail(e.exec.Stderr, stderrLines))
}

func (e *commandError) Unwrap() error { return e.exec }

// exitCode is the exit code of the command behind err, or -1 when no command exited.
func exitCode(err error) int {
	var ee *dagger.ExecError
	if errors.As(err, &ee) {
		return ee.ExitCode
	}
	return -1
}

// tail is the last n non-empty lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
