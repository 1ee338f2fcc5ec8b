package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/minio/minio-go/v7"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelship/modelship/internal/plumbing/projectpath"
	"github.com/modelship/modelship/internal/registry"
	"github.com/modelship/modelship/internal/registry/manifest"
)

func TestModelAliasSetLsRmAndPullByAlias(t *testing.T) {
	c := newCLI(t)
	ref, weak := projectpath.Join(t, "models/digits-reference.onnx"), projectpath.Join(t, "models/digits-weak.onnx")
	for v, file := range map[string]string{"1.1.0": weak, "1.2.0": ref} {
		out, code := c.run("model", "push", file, "--name", "digits", "--version", v, "--git-sha", gitSHA)
		require.Equal(t, 0, code, out)
	}

	out, code := c.run("model", "alias", "ls", "--name", "digits")
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "model digits has no aliases")

	out, code = c.run("model", "alias", "set", "--name", "digits", "--alias", "production", "--version", "1.1.0", "--by", "alice", "--reason", "first release")
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "digits alias production → 1.1.0 (new), set by alice: first release")
	out, code = c.run("model", "alias", "set", "--name", "digits", "--alias", "production", "--version", "1.2.0", "--by", "alice", "--reason", "better model")
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "digits alias production → 1.2.0 (was 1.1.0)")
	out, code = c.run("model", "alias", "set", "--name", "digits", "--alias", "challenger", "--version", "1.1.0", "--by", "bob", "--reason", "shadow test")
	require.Equal(t, 0, code, out)

	out, code = c.run("model", "alias", "ls", "--name", "digits")
	require.Equal(t, 0, code, out)
	assert.Regexp(t, `(?m)^challenger\s+1\.1\.0\s+bob\s`, out)
	assert.Regexp(t, `(?m)^production\s+1\.2\.0\s+alice\s`, out)
	assert.NotContains(t, out, "first release", "the log only with --history")
	out, code = c.run("model", "alias", "ls", "--name", "digits", "--history")
	require.Equal(t, 0, code, out)
	assert.Regexp(t, `set\s+production\s+1\.1\.0\s+1\.2\.0\s+alice\s+better model`, out)

	dest := filepath.Join(t.TempDir(), "model.onnx")
	out, code = c.run("model", "pull", "--name", "digits", "--alias", "production", "-o", dest)
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "pulled digits@1.2.0")
	assert.Contains(t, out, "chosen by alias production → 1.2.0")
	want, _ := os.ReadFile(ref)
	got, err := os.ReadFile(dest)
	require.NoError(t, err)
	assert.Equal(t, want, got)

	out, code = c.run("--json", "model", "resolve", "--name", "digits", "--alias", "challenger")
	require.Equal(t, 0, code, out)
	var res manifest.Resolution
	require.NoError(t, json.Unmarshal([]byte(out), &res))
	assert.Equal(t, "1.1.0", res.Manifest.Version)
	assert.Equal(t, "alias challenger → 1.1.0", res.ResolvedBy)

	out, code = c.run("model", "alias", "rm", "--name", "digits", "--alias", "challenger", "--by", "bob", "--reason", "shadow test over")
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "digits alias challenger removed (was 1.1.0)")
	out, code = c.run("model", "alias", "rm", "--name", "digits", "--alias", "challenger", "--by", "bob", "--reason", "again")
	assert.Equal(t, 3, code, "not found: %s", out)
	assert.Contains(t, out, `model digits has no alias "challenger" to remove`)
	out, code = c.run("model", "pull", "--name", "digits", "--alias", "challenger")
	assert.Equal(t, 3, code, "not found: %s", out)

	out, code = c.run("--json", "model", "alias", "ls", "--name", "digits", "--history")
	require.Equal(t, 0, code, out)
	var set registry.AliasSet
	require.NoError(t, json.Unmarshal([]byte(out), &set))
	assert.Equal(t, "1.2.0", set.Aliases["production"].Version)
	assert.Len(t, set.Aliases, 1)
	require.Len(t, set.Log, 4)
	assert.Equal(t, registry.AliasChange{Action: "rm", Alias: "challenger", From: "1.1.0", By: "bob", Reason: "shadow test over", At: set.Log[3].At}, set.Log[3])
}

func TestModelAliasRefusals(t *testing.T) {
	c := newCLI(t)
	out, code := c.run("model", "push", projectpath.Join(t, "models/digits-reference.onnx"), "--name", "digits", "--version", "1", "--git-sha", gitSHA)
	require.Equal(t, 0, code, out)

	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"model", "alias", "set", "--name", "digits", "--alias", "production", "--version", "1", "--reason", "r"}, 2, `required flag(s) "by" not set`},
		{[]string{"model", "alias", "set", "--name", "digits", "--alias", "production", "--version", "1", "--by", "alice"}, 2, `required flag(s) "reason" not set`},
		{[]string{"model", "alias", "rm", "--name", "digits", "--alias", "production"}, 2, `required flag(s) "by", "reason" not set`},
		{[]string{"model", "alias", "set", "--name", "digits", "--alias", "production", "--version", "1", "--by", " ", "--reason", "r"}, 2, "needs who (--by) and why (--reason)"},
		{[]string{"model", "alias", "set", "--name", "digits", "--alias", "Prod/1", "--version", "1", "--by", "a", "--reason", "r"}, 2, `alias "Prod/1"`},
		{[]string{"model", "alias", "set", "--name", "digits", "--alias", "production", "--version", "9", "--by", "a", "--reason", "r"}, 3, "at version 9: there is no such version"},
		{[]string{"model", "pull", "--name", "digits", "--alias", "production", "--version", "1"}, 2, "[alias version] were all set"},
		{[]string{"model", "resolve", "--name", "digits", "--alias", "production", "--git-sha", gitSHA}, 2, "[alias git-sha] were all set"},
		{[]string{"model", "alias", "sett", "--name", "digits"}, 2, "did you mean set?"},
	}
	for _, tc := range cases {
		out, code := c.run(tc.args...)
		assert.Equal(t, tc.code, code, "%v: %s", tc.args, out)
		assert.Contains(t, out, tc.want, "%v", tc.args)
	}
	out, code = c.run("model", "alias", "ls", "--name", "digits")
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "no aliases", "no refused change was written")
}

// A corrupt aliases.json is an integrity failure (exit 4) for every command, and stays as it was.
func TestACorruptAliasesFileStopsTheCLI(t *testing.T) {
	c := newCLI(t)
	out, code := c.run("model", "push", projectpath.Join(t, "models/digits-reference.onnx"), "--name", "digits", "--version", "1", "--git-sha", gitSHA)
	require.Equal(t, 0, code, out)
	client, bucket, ctx := c.srv.Client(t), c.bucket("MODELSHIP_MODELS_BUCKET"), context.Background()
	corrupt := []byte(`{"schema_version": 1, "model": "digits", "aliases": {"production": {"version": "../../etc"`)
	_, err := client.PutObject(ctx, bucket, "digits/aliases.json", bytes.NewReader(corrupt), int64(len(corrupt)), minio.PutObjectOptions{})
	require.NoError(t, err)

	for _, args := range [][]string{
		{"model", "alias", "ls", "--name", "digits"},
		{"model", "alias", "set", "--name", "digits", "--alias", "production", "--version", "1", "--by", "a", "--reason", "r"},
		{"model", "alias", "rm", "--name", "digits", "--alias", "production", "--by", "a", "--reason", "r"},
		{"model", "pull", "--name", "digits", "--alias", "production"},
	} {
		out, code := c.run(args...)
		assert.Equal(t, 4, code, "%v: %s", args, out)
		assert.Contains(t, out, "s3://"+bucket+"/digits/aliases.json is not valid JSON", "%v", args)
	}
	obj, err := client.GetObject(ctx, bucket, "digits/aliases.json", minio.GetObjectOptions{})
	require.NoError(t, err)
	got, err := io.ReadAll(obj)
	require.NoError(t, err)
	assert.Equal(t, corrupt, got, "nothing overwrote it")
}
