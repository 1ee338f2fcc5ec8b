package main

import (
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelship/modelship/internal/plumbing/projectpath"
)

// The README's exit-code table is the CLI's list, rendered: `go test ./cmd/modelship -run
// TestREADMEExitCodes -update-readme` rewrites it after a change to exitMeanings.
func TestREADMEExitCodes(t *testing.T) {
	path := projectpath.Join(t, "README.md")
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	const heading = "Exit codes (also in `modelship --help`):\n\n"
	start := strings.Index(string(raw), heading)
	require.GreaterOrEqual(t, start, 0, "README.md has no exit-code table")
	start += len(heading)
	end := start + strings.Index(string(raw[start:]), "\n\n") + 1
	if *updateReadme {
		out := string(raw[:start]) + exitCodesMarkdown() + string(raw[end:])
		require.NoError(t, os.WriteFile(path, []byte(out), 0o644))
		return
	}
	assert.Equal(t, exitCodesMarkdown(), string(raw[start:end]), "run go test ./cmd/modelship -run TestREADMEExitCodes -update-readme")
	assert.Contains(t, exitCodesHelp(), "stale state")
}

var updateReadme = flag.Bool("update-readme", false, "rewrite README.md's exit-code table from exitMeanings")
