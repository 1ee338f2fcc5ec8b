package store_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelship/modelship/internal/deploystate"
	"github.com/modelship/modelship/internal/deploystate/store"
	"github.com/modelship/modelship/internal/plumbing/objstore"
	"github.com/modelship/modelship/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

const env = "production"

func sha(i int) string { return fmt.Sprintf("%040x", i+1) }

func deployment(i int) deploystate.Deployment {
	return deploystate.Deployment{GitSHA: sha(i), Image: fmt.Sprintf("127.0.0.1:5000/digits:%s@sha256:%064x", sha(i), i),
		ModelName: "digits", ModelVersion: fmt.Sprint(i), DeployedAt: time.Date(2026, 1, 1, 0, i, 0, 0, time.UTC), PipelineRun: fmt.Sprint("run-", i)}
}

// clock is a settable time source for the rollback window.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newStore(t *testing.T) (*store.Store, *minio.Client, *clock) {
	t.Helper()
	srv := testenv.SharedMinIO(t)
	client := srv.Client(t)
	st := store.New(client, srv.Bucket(t, "state"))
	require.NoError(t, st.EnsureBucket(context.Background()))
	c := &clock{t: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)}
	return st.WithClock(c.now), client, c
}

func TestDeploysAreRecordedWithHistory(t *testing.T) {
	states, _, _ := newStore(t)
	ctx := context.Background()

	_, err := states.Load(ctx, env, store.LoadOptions{})
	require.ErrorIs(t, err, deploystate.ErrNoState)

	for i := 0; i < 3; i++ {
		_, err := states.RecordDeploy(ctx, env, deployment(i))
		require.NoError(t, err)
	}
	st, err := states.Load(ctx, env, store.LoadOptions{})
	require.NoError(t, err)
	assert.Equal(t, deploystate.SchemaVersion, st.SchemaVersion)
	assert.Equal(t, env, st.Environment)
	require.NotNil(t, st.Current)
	assert.Equal(t, deployment(2), *st.Current)
	assert.Equal(t, []deploystate.Deployment{deployment(1), deployment(0)}, st.History)
	prev, ok := st.Previous()
	require.True(t, ok)
	assert.Equal(t, deployment(1), prev)

	_, err = states.RecordDeploy(ctx, env, deploystate.Deployment{GitSHA: "main", Image: "x"})
	assert.ErrorIs(t, err, deploystate.ErrInvalidInput)
}

func TestSixtyFourConcurrentWritersLoseNothing(t *testing.T) {
	states, _, _ := newStore(t)
	srv := testenv.SharedMinIO(t)
	ctx := context.Background()
	const writers = 64
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for i := 0; i < writers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each writer is its own pipeline with its own client.
			own := store.New(srv.Client(t), states.Bucket())
			_, errs[i] = own.RecordDeploy(ctx, env, deployment(i))
		}()
	}
	wg.Wait()
	for i, err := range errs {
		require.NoError(t, err, "writer %d", i)
	}
	st, err := states.Load(ctx, env, store.LoadOptions{})
	require.NoError(t, err)
	seen := map[string]bool{st.Current.GitSHA: true}
	for _, d := range st.History {
		assert.False(t, seen[d.GitSHA], "deployment %s recorded twice", d.GitSHA)
		seen[d.GitSHA] = true
	}
	assert.Len(t, seen, min(writers, deploystate.MaxHistory+1), "every writer's deployment is in the state, up to the history cap")

	// The bucket is versioned, so every write is kept: 64 writes, each made on top of the one
	// before it (the deployment it replaced is the one the previous version had as current).
	// A lost update would be a version whose predecessor's current is missing from it.
	var versions []minio.ObjectInfo
	for obj := range srv.Client(t).ListObjects(ctx, states.Bucket(), minio.ListObjectsOptions{Prefix: states.Key(env), WithVersions: true}) {
		require.NoError(t, obj.Err)
		versions = append(versions, obj)
	}
	require.Len(t, versions, writers, "one version per writer")
	var newer *deploystate.State
	for _, v := range versions { // newest first
		obj, err := srv.Client(t).GetObject(ctx, states.Bucket(), v.Key, minio.GetObjectOptions{VersionID: v.VersionID})
		require.NoError(t, err)
		raw, err := io.ReadAll(obj)
		require.NoError(t, err)
		older, err := deploystate.Decode(raw, env)
		require.NoError(t, err)
		if newer != nil {
			require.NotEmpty(t, newer.History)
			assert.Equal(t, older.Current.GitSHA, newer.History[0].GitSHA, "version %s was written on top of the one before it", v.VersionID)
		}
		newer = older
	}
	assert.Empty(t, newer.History, "the oldest version is the first deploy")
}

func rollbackTo(i int, reason string) deploystate.Rollback {
	from := deployment(i + 1)
	return deploystate.Rollback{From: &from, To: deployment(i), Reason: reason}
}

func TestTheThirdRollbackWithinAnHourHaltsUntilResumed(t *testing.T) {
	states, _, clk := newStore(t)
	ctx := context.Background()
	_, err := states.RecordDeploy(ctx, env, deployment(0))
	require.NoError(t, err)

	_, err = states.AdmitRollback(ctx, env, rollbackTo(0, "gate failed"))
	require.NoError(t, err)
	clk.add(20 * time.Minute)
	_, err = states.AdmitRollback(ctx, env, rollbackTo(0, "gate failed again"))
	require.NoError(t, err)
	clk.add(20 * time.Minute)
	_, err = states.AdmitRollback(ctx, env, rollbackTo(0, "unhealthy rollout"))
	require.ErrorIs(t, err, deploystate.ErrHalted)
	assert.ErrorContains(t, err, "state resume")

	st, err := states.Load(ctx, env, store.LoadOptions{})
	require.NoError(t, err)
	require.NotNil(t, st.Halt, "the halt is written down")
	assert.Contains(t, st.Halt.Reason, "rollback 3 within 1h0m0s refused")
	assert.Len(t, st.Rollbacks, 2, "the refused rollback is not recorded as done")

	// While halted, neither deploys nor rollbacks go through, and the state does not change.
	_, err = states.RecordDeploy(ctx, env, deployment(5))
	assert.ErrorIs(t, err, deploystate.ErrHalted)
	_, err = states.AdmitRollback(ctx, env, rollbackTo(0, "again"))
	assert.ErrorIs(t, err, deploystate.ErrHalted)
	after, err := states.Load(ctx, env, store.LoadOptions{})
	require.NoError(t, err)
	assert.Equal(t, st.Current, after.Current)

	_, err = states.Resume(ctx, env, "", "fixed")
	assert.ErrorIs(t, err, deploystate.ErrInvalidInput, "a resume says who")
	st, err = states.Resume(ctx, env, "alice", "bad model removed from registry")
	require.NoError(t, err)
	assert.Nil(t, st.Halt)
	require.Len(t, st.Resumes, 1)
	assert.Equal(t, "alice", st.Resumes[0].By)
	assert.Contains(t, st.Resumes[0].Halt.Reason, "refused")

	// After the resume the budget starts afresh.
	_, err = states.AdmitRollback(ctx, env, rollbackTo(0, "after resume"))
	require.NoError(t, err)
	_, err = states.Resume(ctx, env, "alice", "not halted")
	assert.ErrorIs(t, err, deploystate.ErrInvalidInput)
}

func TestRollbacksOlderThanAnHourDoNotCount(t *testing.T) {
	states, _, clk := newStore(t)
	ctx := context.Background()
	for i := 0; i < 4; i++ {
		_, err := states.AdmitRollback(ctx, env, rollbackTo(0, fmt.Sprint("rollback ", i)))
		require.NoError(t, err, "rollback %d, 40 minutes after the one before", i)
		clk.add(40 * time.Minute)
	}
}

func TestCorruptOrForeignStateIsNeverActedOn(t *testing.T) {
	states, client, _ := newStore(t)
	ctx := context.Background()
	good := `{"schema_version":1,"environment":"production","history":[],"rollbacks":[],"resumes":[],"updated_at":"2026-11-23T12:00:00Z",
	  "current":{"git_sha":"` + sha(1) + `","image":"r/digits:1","model_name":"digits","model_version":"1","deployed_at":"2026-11-23T12:00:00Z"}}`
	cases := map[string]struct{ body, want string }{
		"truncated JSON":  {good[:60], "not valid deploy_state.json"},
		"not JSON":        {"<html>502 Bad Gateway</html>", "not valid deploy_state.json"},
		"other env":       {replace(good, `"environment":"production"`, `"environment":"staging"`), `belongs to environment "staging"`},
		"future schema":   {replace(good, `"schema_version":1`, `"schema_version":7`), "schema_version is 7"},
		"missing image":   {replace(good, `"image":"r/digits:1",`, ""), "not an image reference"},
		"short SHA":       {replace(good, sha(1), "abc123"), "not a full commit SHA"},
		"unknown field":   {replace(good, `"history":[]`, `"history":[],"extra":true`), `unknown field "extra"`},
		"no updated time": {replace(good, `"updated_at":"2026-11-23T12:00:00Z",`, ""), "updated_at is missing"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			key := states.Key(env)
			_, err := client.PutObject(ctx, states.Bucket(), key, bytes.NewReader([]byte(tc.body)), int64(len(tc.body)), minio.PutObjectOptions{})
			require.NoError(t, err)

			_, err = states.Load(ctx, env, store.LoadOptions{})
			require.ErrorIs(t, err, deploystate.ErrInvalidState)
			assert.ErrorContains(t, err, tc.want)
			assert.ErrorContains(t, err, "s3://"+states.Bucket()+"/"+key)

			_, err = states.RecordDeploy(ctx, env, deployment(3))
			require.ErrorIs(t, err, deploystate.ErrInvalidState, "no write on top of a bad file")
			obj, err := client.GetObject(ctx, states.Bucket(), key, minio.GetObjectOptions{})
			require.NoError(t, err)
			var buf bytes.Buffer
			_, err = buf.ReadFrom(obj)
			require.NoError(t, err)
			assert.Equal(t, tc.body, buf.String(), "the file is left as it was for a person to inspect")
		})
	}
	_, err := states.Load(ctx, "../prod", store.LoadOptions{})
	assert.ErrorIs(t, err, deploystate.ErrInvalidInput)
}

func replace(s, old, new string) string { return strings.Replace(s, old, new, 1) }

func TestStaleStateGuardIsOptIn(t *testing.T) {
	states, _, clk := newStore(t)
	ctx := context.Background()
	_, err := states.RecordDeploy(ctx, env, deployment(0))
	require.NoError(t, err)
	clk.add(2 * time.Hour)
	_, err = states.Load(ctx, env, store.LoadOptions{MaxAge: time.Hour})
	require.ErrorIs(t, err, deploystate.ErrStale)
	assert.ErrorContains(t, err, "last written 2h0m0s ago")
	_, err = states.Load(ctx, env, store.LoadOptions{})
	assert.NoError(t, err, "off unless asked")
}

func TestEveryEarlierStateIsKeptByBucketVersioning(t *testing.T) {
	states, client, _ := newStore(t)
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		_, err := states.RecordDeploy(ctx, env, deployment(i))
		require.NoError(t, err)
	}
	cfg, err := client.GetBucketVersioning(ctx, states.Bucket())
	require.NoError(t, err)
	if !cfg.Enabled() {
		t.Skip("skipped: this MinIO runs without versioning support (single-drive FS mode)")
	}
	versions := 0
	for obj := range client.ListObjects(ctx, states.Bucket(), minio.ListObjectsOptions{Prefix: states.Key(env), WithVersions: true}) {
		require.NoError(t, obj.Err)
		versions++
	}
	assert.Equal(t, 3, versions)
}

func TestStorageStoppedMidRunLeavesThePreviousStateIntact(t *testing.T) {
	srv := testenv.StartMinIO(t)
	states := store.New(srv.Client(t), "deploy-state")
	ctx := context.Background()
	require.NoError(t, states.EnsureBucket(ctx))
	_, err := states.RecordDeploy(ctx, env, deployment(0))
	require.NoError(t, err)

	srv.Stop()
	shortCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, err = states.RecordDeploy(shortCtx, env, deployment(1))
	require.ErrorIs(t, err, objstore.ErrUnreachable)
	assert.ErrorContains(t, err, "s3://deploy-state/production/deploy_state.json")

	srv.Start(t)
	st, err := states.Load(ctx, env, store.LoadOptions{})
	require.NoError(t, err)
	assert.Equal(t, deployment(0), *st.Current, "the state before the outage is whole")
}
