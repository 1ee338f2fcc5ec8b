package registry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelship/modelship/internal/registry"
	"github.com/modelship/modelship/internal/testenv"
)

// pushVersions pushes one small version of "digits" per name given.
func (f *fixture) pushVersions(t *testing.T, versions ...string) {
	t.Helper()
	for _, v := range versions {
		_, err := f.reg.Push(context.Background(), f.file(t, "m-"+v, []byte("model "+v)), registry.PushOptions{Name: "digits", Version: v, GitSHA: sha1})
		require.NoError(t, err)
	}
}

// object is the raw bytes of key, or nil when there is none.
func (f *fixture) object(t *testing.T, key string) []byte {
	t.Helper()
	obj, err := f.client.GetObject(context.Background(), f.bucket, key, minio.GetObjectOptions{})
	require.NoError(t, err)
	defer obj.Close()
	raw, err := io.ReadAll(obj)
	if minio.ToErrorResponse(err).Code == "NoSuchKey" {
		return nil
	}
	require.NoError(t, err)
	return raw
}

func (f *fixture) putObject(t *testing.T, key string, raw []byte) {
	t.Helper()
	_, err := f.client.PutObject(context.Background(), f.bucket, key, bytes.NewReader(raw), int64(len(raw)), minio.PutObjectOptions{})
	require.NoError(t, err)
}

func TestAliasesSetListMoveRemove(t *testing.T) {
	f := newRegistry(t)
	ctx := context.Background()
	f.pushVersions(t, "1.1.0", "1.2.0")

	empty, err := f.reg.Aliases(ctx, "digits")
	require.NoError(t, err)
	assert.Empty(t, empty.Aliases, "a model that never had an alias has none")
	assert.Nil(t, f.object(t, "digits/aliases.json"), "reading writes nothing")

	c, err := f.reg.SetAlias(ctx, "digits", "production", "1.1.0", "alice", "first release")
	require.NoError(t, err)
	assert.Equal(t, registry.AliasChange{Action: "set", Alias: "production", To: "1.1.0", By: "alice", Reason: "first release", At: c.At}, *c)
	_, err = f.reg.SetAlias(ctx, "digits", "champion", "1.2.0", "bob", "won the offline eval")
	require.NoError(t, err)
	moved, err := f.reg.SetAlias(ctx, "digits", "production", "1.2.0", "alice", "promote the champion")
	require.NoError(t, err)
	assert.Equal(t, "1.1.0", moved.From, "the log says where the alias came from")

	set, err := f.reg.Aliases(ctx, "digits")
	require.NoError(t, err)
	assert.Equal(t, "digits", set.Model)
	assert.Equal(t, "1.2.0", set.Aliases["production"].Version)
	assert.Equal(t, "alice", set.Aliases["production"].SetBy)
	assert.Equal(t, "1.2.0", set.Aliases["champion"].Version)

	res, err := f.reg.Pull(ctx, registry.Ref{Name: "digits", Alias: "production"}, filepath.Join(f.dir, "prod.onnx"))
	require.NoError(t, err)
	assert.Equal(t, "1.2.0", res.Manifest.Version)
	assert.Equal(t, "alias production → 1.2.0", res.ResolvedBy)
	got, err := os.ReadFile(res.Path)
	require.NoError(t, err)
	assert.Equal(t, "model 1.2.0", string(got))

	removed, err := f.reg.RemoveAlias(ctx, "digits", "champion", "bob", "eval withdrawn")
	require.NoError(t, err)
	assert.Equal(t, "1.2.0", removed.From)
	_, err = f.reg.RemoveAlias(ctx, "digits", "champion", "bob", "again")
	require.ErrorIs(t, err, registry.ErrNotFound)
	assert.ErrorContains(t, err, `model digits has no alias "champion" to remove`)

	_, err = f.reg.Resolve(ctx, registry.Ref{Name: "digits", Alias: "champion"})
	require.ErrorIs(t, err, registry.ErrNotFound)
	assert.ErrorContains(t, err, "model alias ls --name digits")

	set, err = f.reg.Aliases(ctx, "digits")
	require.NoError(t, err)
	assert.Equal(t, []string{"production"}, keys(set.Aliases))
	var log []string
	for _, c := range set.Log {
		log = append(log, fmt.Sprintf("%s %s %s->%s by %s: %s", c.Action, c.Alias, c.From, c.To, c.By, c.Reason))
		assert.False(t, c.At.IsZero())
	}
	assert.Equal(t, []string{
		"set production ->1.1.0 by alice: first release",
		"set champion ->1.2.0 by bob: won the offline eval",
		"set production 1.1.0->1.2.0 by alice: promote the champion",
		"rm champion 1.2.0-> by bob: eval withdrawn",
	}, log)
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestAnAliasOnlyPointsAtAVersionThatExists(t *testing.T) {
	f := newRegistry(t)
	ctx := context.Background()
	f.pushVersions(t, "1")
	_, err := f.reg.SetAlias(ctx, "digits", "production", "2", "alice", "typo")
	require.ErrorIs(t, err, registry.ErrNotFound)
	assert.ErrorContains(t, err, `cannot point alias "production" of model digits at version 2`)
	assert.ErrorContains(t, err, "model ls --name digits")
	assert.Nil(t, f.object(t, "digits/aliases.json"), "nothing was written")

	_, err = f.reg.SetAlias(ctx, "other", "production", "1", "alice", "wrong model")
	require.ErrorIs(t, err, registry.ErrNotFound, "version 1 is digits', not other's")
}

func TestAliasChangesNeedWhoAndWhy(t *testing.T) {
	f := newRegistry(t)
	ctx := context.Background()
	f.pushVersions(t, "1")
	for _, who := range [][2]string{{"", "why"}, {"alice", ""}, {" ", "why"}, {"alice", "\t"}} {
		_, err := f.reg.SetAlias(ctx, "digits", "production", "1", who[0], who[1])
		assert.ErrorIs(t, err, registry.ErrInvalidInput, "%q", who)
		_, err = f.reg.RemoveAlias(ctx, "digits", "production", who[0], who[1])
		assert.ErrorIs(t, err, registry.ErrInvalidInput, "%q", who)
	}
	assert.Nil(t, f.object(t, "digits/aliases.json"))
}

func TestBadAliasesNeverReachTheBucket(t *testing.T) {
	f := newRegistry(t)
	ctx := context.Background()
	for _, alias := range []string{"", "Production", "../x", "a/b", "prod.1", "1prod", "-x", "latest", "v2", "v1-rc1",
		"production\n", strings.Repeat("a", 64)} {
		_, err := f.reg.SetAlias(ctx, "digits", alias, "1", "alice", "why")
		assert.ErrorIs(t, err, registry.ErrInvalidName, "%q", alias)
		_, err = f.reg.RemoveAlias(ctx, "digits", alias, "alice", "why")
		assert.ErrorIs(t, err, registry.ErrInvalidName, "%q", alias)
		_, err = f.reg.Pull(ctx, registry.Ref{Name: "digits", Alias: alias}, "")
		if alias != "" { // an empty alias is no alias: that pull asks for latest
			assert.ErrorIs(t, err, registry.ErrInvalidName, "%q", alias)
		}
	}
	for _, name := range []string{"../x", "a/b", ""} {
		_, err := f.reg.SetAlias(ctx, name, "production", "1", "alice", "why")
		assert.ErrorIs(t, err, registry.ErrInvalidName, "%q", name)
		_, err = f.reg.Aliases(ctx, name)
		assert.ErrorIs(t, err, registry.ErrInvalidName, "%q", name)
	}
	for _, ok := range []string{"production", "champion", "a", "canary_eu-1", "version-two"} {
		assert.NoError(t, registry.ValidateAlias(ok), ok)
	}
	var keys []string
	for obj := range f.client.ListObjects(ctx, f.bucket, minio.ListObjectsOptions{Recursive: true}) {
		keys = append(keys, obj.Key)
	}
	assert.Empty(t, keys, "no bad name ever got as far as a key")
}

func TestAnAliasIsNotMixedWithAVersionOrSHA(t *testing.T) {
	f := newRegistry(t)
	ctx := context.Background()
	f.pushVersions(t, "1")
	_, err := f.reg.SetAlias(ctx, "digits", "production", "1", "alice", "why")
	require.NoError(t, err)
	for _, ref := range []registry.Ref{
		{Name: "digits", Alias: "production", Version: "1"},
		{Name: "digits", Alias: "production", Version: "latest"},
		{Name: "digits", Alias: "production", GitSHA: sha1},
		{Name: "digits", Alias: "production", Pinned: "1"},
	} {
		_, err := f.reg.Resolve(ctx, ref)
		require.ErrorIs(t, err, registry.ErrInvalidName, "%+v", ref)
		assert.ErrorContains(t, err, "not several")
	}
}

// Writers racing on one model's aliases.json: some set their own alias, some move a shared one
// back and forth. Every change lands in the log, in an order in which each change starts from
// where the one before it (for that alias) left it, and the aliases end where the log says.
func TestConcurrentAliasMoversLoseNothing(t *testing.T) {
	f := newRegistry(t)
	ctx := context.Background()
	f.pushVersions(t, "1", "2")
	srv := testenv.SharedMinIO(t)
	const writers = 16
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each writer is its own person with their own client.
			own, err := registry.New(srv.Client(t), registry.Options{Bucket: f.bucket, CacheDir: t.TempDir()})
			if err != nil {
				errs[i] = err
				return
			}
			alias, version := fmt.Sprintf("role-%d", i), "1"
			if i%4 == 0 {
				alias, version = "champion", []string{"1", "2"}[i/4%2]
			}
			_, errs[i] = own.SetAlias(ctx, "digits", alias, version, fmt.Sprintf("writer-%d", i), "race")
		}()
	}
	wg.Wait()
	for i, err := range errs {
		require.NoError(t, err, "writer %d", i)
	}

	set, err := f.reg.Aliases(ctx, "digits")
	require.NoError(t, err)
	require.Len(t, set.Log, writers, "every change is in the log")
	writersSeen := map[string]bool{}
	last := map[string]string{}
	for _, c := range set.Log {
		assert.False(t, writersSeen[c.By], "%s logged twice", c.By)
		writersSeen[c.By] = true
		assert.Equal(t, last[c.Alias], c.From, "%s moved %s from where the change before it left it", c.By, c.Alias)
		last[c.Alias] = c.To
	}
	assert.Len(t, set.Aliases, writers-writers/4+1, "every distinct alias is there")
	for alias, version := range last {
		assert.Equal(t, version, set.Aliases[alias].Version, "alias %s is where the log last put it", alias)
	}
}

func TestACorruptAliasesFileIsNeverActedOn(t *testing.T) {
	valid := func(mutate func(map[string]any)) []byte {
		doc := map[string]any{"schema_version": 1, "model": "digits",
			"aliases": map[string]any{"production": map[string]any{"version": "1", "set_by": "alice", "set_at": "2025-01-01T00:00:00Z"}},
			"log":     []any{map[string]any{"action": "set", "alias": "production", "to": "1", "by": "alice", "reason": "r", "at": "2025-01-01T00:00:00Z"}}}
		mutate(doc)
		raw, err := json.Marshal(doc)
		require.NoError(t, err)
		return raw
	}
	cases := map[string][]byte{
		"not JSON":          []byte("{\"schema_version\": 1, \"model\": \"dig"),
		"trailing data":     append(valid(func(map[string]any) {}), []byte("}junk")...),
		"unknown field":     valid(func(d map[string]any) { d["extra"] = true }),
		"other schema":      valid(func(d map[string]any) { d["schema_version"] = 2 }),
		"other model":       valid(func(d map[string]any) { d["model"] = "wine" }),
		"no aliases object": valid(func(d map[string]any) { delete(d, "aliases") }),
		"bad alias name": valid(func(d map[string]any) {
			d["aliases"] = map[string]any{"../x": map[string]any{"version": "1", "set_by": "a", "set_at": "2025-01-01T00:00:00Z"}}
		}),
		"bad version": valid(func(d map[string]any) {
			d["aliases"] = map[string]any{"production": map[string]any{"version": "../1", "set_by": "a", "set_at": "2025-01-01T00:00:00Z"}}
		}),
		"unknown log action": valid(func(d map[string]any) { d["log"].([]any)[0].(map[string]any)["action"] = "move" }),
		"anonymous change":   valid(func(d map[string]any) { delete(d["log"].([]any)[0].(map[string]any), "by") }),
	}
	for name, raw := range cases {
		t.Run(name, func(t *testing.T) {
			f := newRegistry(t)
			ctx := context.Background()
			f.pushVersions(t, "1", "2")
			f.putObject(t, "digits/aliases.json", raw)

			_, err := f.reg.Aliases(ctx, "digits")
			require.ErrorIs(t, err, registry.ErrIntegrity)
			assert.ErrorContains(t, err, "s3://"+f.bucket+"/digits/aliases.json")
			assert.ErrorContains(t, err, "delete it to start over")
			_, err = f.reg.Resolve(ctx, registry.Ref{Name: "digits", Alias: "production"})
			assert.ErrorIs(t, err, registry.ErrIntegrity)
			_, err = f.reg.SetAlias(ctx, "digits", "production", "2", "alice", "move")
			assert.ErrorIs(t, err, registry.ErrIntegrity)
			_, err = f.reg.RemoveAlias(ctx, "digits", "production", "alice", "drop")
			assert.ErrorIs(t, err, registry.ErrIntegrity)
			assert.Equal(t, raw, f.object(t, "digits/aliases.json"), "the file is left as it was")
		})
	}
}

func TestTheAliasLogKeepsTheNewestChanges(t *testing.T) {
	f := newRegistry(t)
	ctx := context.Background()
	f.pushVersions(t, "1")
	// A file whose log is full: the next change drops the oldest entry, and only it.
	full := registry.AliasSet{SchemaVersion: 1, Model: "digits", Aliases: map[string]registry.AliasTarget{}}
	at := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range registry.AliasLogLimit {
		full.Log = append(full.Log, registry.AliasChange{Action: "set", Alias: "production", To: "1", By: "bot", Reason: fmt.Sprint(i), At: at})
	}
	full.Aliases["production"] = registry.AliasTarget{Version: "1", SetBy: "bot", SetAt: at}
	raw, err := json.Marshal(full)
	require.NoError(t, err)
	f.putObject(t, "digits/aliases.json", raw)

	_, err = f.reg.SetAlias(ctx, "digits", "champion", "1", "alice", "newest")
	require.NoError(t, err)
	set, err := f.reg.Aliases(ctx, "digits")
	require.NoError(t, err)
	require.Len(t, set.Log, registry.AliasLogLimit)
	assert.Equal(t, "1", set.Log[0].Reason, "the oldest change went")
	assert.Equal(t, "newest", set.Log[len(set.Log)-1].Reason)
}
