package docker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/minio/minio-go/v7"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelship/modelship/internal/deploy"
	"github.com/modelship/modelship/internal/deploy/deploytest"
	"github.com/modelship/modelship/internal/deploy/docker"
	"github.com/modelship/modelship/internal/deploystate"
	"github.com/modelship/modelship/internal/deploystate/store"
	"github.com/modelship/modelship/internal/notify"
	"github.com/modelship/modelship/internal/plumbing/objstore"
	"github.com/modelship/modelship/internal/plumbing/projectpath"
	"github.com/modelship/modelship/internal/testenv"
	"github.com/modelship/modelship/serving/oip"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// world is what every test here shares: a Docker engine, a registry holding four releases,
// and a MinIO for deploy state.
type world struct {
	docker   *client.Client
	minio    *testenv.MinIOServer
	releases map[string]deploy.Release // v1, v2 (good), unready (never ready), weak (fails smoke)
}

var (
	worldOnce sync.Mutex
	shared    *world
)

func sha(n int) string { return fmt.Sprintf("%040x", n) }

func setup(t testing.TB) *world {
	t.Helper()
	worldOnce.Lock()
	defer worldOnce.Unlock()
	if shared != nil {
		return shared
	}
	cli := testenv.Docker(t)
	srv := testenv.SharedMinIO(t)
	reg := testenv.SharedRegistry(t)
	bases := testenv.EnsureBaseImages(t, cli)
	smoke, err := deploy.SmokeFromFixture(projectpath.Join(t, "tests/fixtures/digits_validation.json"))
	require.NoError(t, err)
	label, err := deploy.SmokeLabel(smoke)
	require.NoError(t, err)
	w := &world{docker: cli, minio: srv, releases: map[string]deploy.Release{}}
	for i, spec := range []struct{ name, model, version, smoke string }{
		{"v1", "models/digits-reference.onnx", "1", label},
		{"v2", "models/digits-reference.onnx", "2", label},
		{"unready", "go.mod", "3", ""}, // not a model: the server exits at start; no smoke inference baked in
		{"weak", "models/digits-weak.onnx", "4", label},
	} {
		ref := fmt.Sprintf("%s/digits:%s", reg.Addr, sha(i+1))
		testenv.BuildServerImage(t, cli, bases, testenv.BuildOptions{Tag: ref, ModelFile: spec.model,
			BuildArgs: map[string]string{"MODEL_VERSION": spec.version, "REVISION": sha(i + 1), "SMOKE": spec.smoke}})
		testenv.Push(t, cli, ref)
		// Drop the local tag so the first deploy really pulls from the registry.
		_, err := cli.ImageRemove(context.Background(), ref, image.RemoveOptions{})
		require.NoError(t, err)
		w.releases[spec.name] = deploy.Release{Image: ref, ModelName: "digits", ModelVersion: spec.version, GitSHA: sha(i + 1), Smoke: smoke}
	}
	shared = w
	return w
}

// env is one test's environment: its own name, port, state bucket and target.
type env struct {
	name    string
	publish string
	deps    deploy.Deps
	store   *store.Store
	events  *recorder
	w       *world
}

func newEnv(t testing.TB, w *world) *env {
	t.Helper()
	name := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	if len(name) > 40 {
		name = name[:40]
	}
	publish := testenv.FreeAddr(t)
	target, err := docker.New(docker.Config{Client: w.docker, Environment: name, Publish: publish, ReadyTimeout: 30 * time.Second})
	require.NoError(t, err)
	states := store.New(w.minio.Client(t), w.minio.Bucket(t, "state"))
	rec := &recorder{}
	t.Cleanup(func() { testenv.RemoveEnvironmentContainers(w.docker, name) })
	return &env{name: name, publish: publish, store: states, events: rec, w: w,
		deps: deploy.Deps{Target: target, State: states, Notifier: rec}}
}

func (e *env) deploy(t *testing.T, rel string) (*deploy.Outcome, error) {
	t.Helper()
	return deploy.Deploy(context.Background(), e.deps, deploy.DeployRequest{Environment: e.name, Branch: "main", PipelineRun: "test", Release: e.w.releases[rel]})
}

// serving returns the model version answering on the published port ("" if none).
func (e *env) serving(t *testing.T) string {
	t.Helper()
	meta, err := oip.NewClient("http://"+e.publish).Metadata(context.Background(), "digits")
	if err != nil {
		return ""
	}
	require.Len(t, meta.Versions, 1)
	return meta.Versions[0]
}

func (e *env) containers(t *testing.T) (running, stopped int) {
	t.Helper()
	list, err := e.w.docker.ContainerList(context.Background(), container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", deploy.LabelEnvironment+"="+e.name))})
	require.NoError(t, err)
	for _, c := range list {
		if c.State == "running" {
			running++
		} else {
			stopped++
		}
	}
	return running, stopped
}

type recorder struct {
	mu     sync.Mutex
	events []notify.Event
}

func (r *recorder) Notify(_ context.Context, e notify.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) kinds() []notify.Kind {
	r.mu.Lock()
	defer r.mu.Unlock()
	var k []notify.Kind
	for _, e := range r.events {
		k = append(k, e.Kind)
	}
	return k
}

// messages is every event's message, one per line.
func (r *recorder) messages() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var m []string
	for _, e := range r.events {
		m = append(m, e.Message)
	}
	return strings.Join(m, "\n")
}

func TestDeployV1ThenV2(t *testing.T) {
	w := setup(t)
	e := newEnv(t, w)

	out, err := e.deploy(t, "v1")
	require.NoError(t, err)
	assert.Equal(t, "1", e.serving(t))
	assert.Contains(t, out.Deployment.Image, "@sha256:", "the state records the image by digest")
	t.Logf("first deploy: %s", out.Result.Steps)

	out, err = e.deploy(t, "v2")
	require.NoError(t, err)
	assert.Equal(t, "2", e.serving(t))
	t.Logf("upgrade: %s", out.Result.Steps)

	st, err := e.store.Load(context.Background(), e.name, store.LoadOptions{})
	require.NoError(t, err)
	assert.Equal(t, "2", st.Current.ModelVersion)
	assert.Equal(t, sha(2), st.Current.GitSHA)
	require.Len(t, st.History, 1)
	assert.Equal(t, "1", st.History[0].ModelVersion)
	running, stopped := e.containers(t)
	assert.Equal(t, 1, running, "one live container")
	assert.Equal(t, 1, stopped, "v1 kept stopped for a fast rollback")
	assert.Equal(t, []notify.Kind{notify.Deployed, notify.Deployed}, e.events.kinds())
}

func TestAReleaseThatFailsVerificationIsRefusedAndTheOldOneKeepsServing(t *testing.T) {
	w := setup(t)
	e := newEnv(t, w)
	_, err := e.deploy(t, "v2")
	require.NoError(t, err)

	_, err = e.deploy(t, "unready")
	require.ErrorIs(t, err, deploy.ErrVerification)
	assert.ErrorContains(t, err, "exited with code")
	assert.ErrorContains(t, err, "not an ONNX protobuf", "the container's own log says why")
	assert.Equal(t, "2", e.serving(t), "v2 keeps serving")

	_, err = e.deploy(t, "weak")
	require.ErrorIs(t, err, deploy.ErrVerification)
	assert.ErrorContains(t, err, "smoke inference predicted class")
	assert.Equal(t, "2", e.serving(t), "v2 keeps serving")

	st, err := e.store.Load(context.Background(), e.name, store.LoadOptions{})
	require.NoError(t, err)
	assert.Equal(t, "2", st.Current.ModelVersion, "deploy_state.json still names v2")
	running, stopped := e.containers(t)
	assert.Equal(t, 1, running)
	assert.Equal(t, 0, stopped, "refused candidates are removed")
	assert.Equal(t, []notify.Kind{notify.Deployed, notify.VerificationFailed, notify.VerificationFailed}, e.events.kinds())
}

func TestRollbackAfterAFailedGateRestoresTheStatesImage(t *testing.T) {
	w := setup(t)
	e := newEnv(t, w)
	_, err := e.deploy(t, "v1")
	require.NoError(t, err)
	// Production has drifted: the live container is gone (crashed, removed by hand).
	testenv.RemoveEnvironmentContainers(w.docker, e.name)
	require.Equal(t, "", e.serving(t))

	out, err := deploy.Rollback(context.Background(), e.deps, deploy.RollbackRequest{Environment: e.name, To: deploy.ToCurrent,
		Reason: "quality gate failed for candidate " + sha(9), Smoke: w.releases["v1"].Smoke})
	require.NoError(t, err)
	assert.Equal(t, "1", e.serving(t))
	t.Logf("rollback (pull + start): %s, %s from the call", out.Result.Steps, out.Elapsed)

	st, err := e.store.Load(context.Background(), e.name, store.LoadOptions{})
	require.NoError(t, err)
	require.Len(t, st.Rollbacks, 1)
	assert.Contains(t, st.Rollbacks[0].Reason, "quality gate failed")
	assert.Equal(t, "1", st.Current.ModelVersion)
}

func TestRollbackToThePreviousReleaseUsesItsImageOnTheHost(t *testing.T) {
	w := setup(t)
	e := newEnv(t, w)
	for _, rel := range []string{"v1", "v2"} {
		_, err := e.deploy(t, rel)
		require.NoError(t, err)
	}
	out, err := deploy.Rollback(context.Background(), e.deps, deploy.RollbackRequest{Environment: e.name, To: deploy.ToPrevious,
		Reason: "v2 unhealthy in production", Smoke: w.releases["v1"].Smoke})
	require.NoError(t, err)
	assert.True(t, out.Result.Reused, "nothing pulled: v1's image is still on the host")
	assert.Equal(t, "1", e.serving(t))
	t.Logf("rollback with the image on the host: %s; %s from the call", out.Result.Steps, out.Elapsed)

	st, err := e.store.Load(context.Background(), e.name, store.LoadOptions{})
	require.NoError(t, err)
	assert.Equal(t, "1", st.Current.ModelVersion)
	require.NotEmpty(t, st.History)
	assert.Equal(t, "2", st.History[0].ModelVersion)
	assert.True(t, st.History[0].RolledBack, "v2 is marked as rolled back")
	_, ok := st.Previous()
	assert.False(t, ok, "nothing earlier to go back to: v2 was rolled back")
}

// A rollback that fails verification never interrupts what is live: the release it meant to
// bring back is tried as a candidate, so the live container is never stopped (restarting v1's
// stopped container on the published port would have meant stopping v2 first).
func TestAFailedRollbackNeverInterruptsTheLiveRelease(t *testing.T) {
	w := setup(t)
	e := newEnv(t, w)
	for _, rel := range []string{"v1", "v2"} {
		_, err := e.deploy(t, rel)
		require.NoError(t, err)
	}
	before := e.live(t)
	wrong := w.releases["v1"].Smoke
	wrong.Want = (wrong.Want + 1) % 10
	_, err := deploy.Rollback(context.Background(), e.deps, deploy.RollbackRequest{Environment: e.name, To: deploy.ToPrevious,
		Reason: "v2 unhealthy in production", Smoke: wrong})
	require.ErrorIs(t, err, deploy.ErrVerification)
	assert.Contains(t, err.Error(), "keeps serving")

	after := e.live(t)
	assert.Equal(t, before.ID, after.ID, "the live container is the same one")
	assert.Equal(t, before.State.StartedAt, after.State.StartedAt, "and it was never stopped or restarted")
	assert.Equal(t, "2", e.serving(t))

	// The attempt is logged as failed and alerted, and it does not use up the budget: two more
	// failed attempts (the third would have halted) leave the environment open.
	st, err := e.store.Load(context.Background(), e.name, store.LoadOptions{})
	require.NoError(t, err)
	require.Len(t, st.Rollbacks, 1)
	assert.Contains(t, st.Rollbacks[0].Failed, "smoke inference predicted class")
	assert.Equal(t, 0, st.RollbacksSince(time.Now().Add(-time.Hour)))
	assert.Equal(t, "2", st.Current.ModelVersion, "the state still records v2 as live")
	assert.Contains(t, e.events.messages(), "rollback attempt failed (1 failed within 1h0m0s; the live release was not interrupted)")
	for i := 0; i < 2; i++ {
		_, err := deploy.Rollback(context.Background(), e.deps, deploy.RollbackRequest{Environment: e.name, To: deploy.ToPrevious,
			Reason: "v2 unhealthy in production", Smoke: wrong})
		require.ErrorIs(t, err, deploy.ErrVerification)
	}
	st, err = e.store.Load(context.Background(), e.name, store.LoadOptions{})
	require.NoError(t, err)
	assert.Nil(t, st.Halt, "failed attempts are not rollbacks")
	assert.Equal(t, 3, st.FailedRollbacksSince(time.Now().Add(-time.Hour)))
	assert.Contains(t, e.events.messages(), "rollback attempt failed (3 failed within 1h0m0s")
}

// A release that cannot be recorded never goes live: its inputs are checked before the target
// is touched. And when recording fails after all (the state was written over mid-deploy), the
// release the state names is put back, so what serves is what deploy_state.json says.
func TestStateAndWhatServesNeverDisagree(t *testing.T) {
	w := setup(t)
	e := newEnv(t, w)
	_, err := e.deploy(t, "v1")
	require.NoError(t, err)
	before := e.live(t)

	bad := w.releases["v2"]
	bad.GitSHA = "xyz"
	_, err = deploy.Deploy(context.Background(), e.deps, deploy.DeployRequest{Environment: e.name, Branch: "main", Release: bad})
	require.ErrorIs(t, err, deploystate.ErrInvalidInput)
	assert.ErrorContains(t, err, `git_sha "xyz" is not a full commit SHA`)
	assert.ErrorContains(t, err, "nothing was deployed")
	assert.Equal(t, before.State.StartedAt, e.live(t).State.StartedAt, "the target was not touched")

	deps := e.deps
	deps.Target = clobbering{Target: e.deps.Target, on: "2", clobber: func() {
		_, err := w.minio.Client(t).PutObject(context.Background(), e.store.Bucket(), e.store.Key(e.name), strings.NewReader("{}"), 2, minio.PutObjectOptions{})
		require.NoError(t, err)
	}}
	_, err = deploy.Deploy(context.Background(), deps, deploy.DeployRequest{Environment: e.name, Branch: "main", Release: w.releases["v2"]})
	require.ErrorIs(t, err, deploystate.ErrInvalidState, "the state was unreadable when v2 was to be recorded")
	assert.ErrorContains(t, err, "was put back and serves again")
	assert.Equal(t, "1", e.serving(t), "v1, which the state names, serves again")
}

// MinIO killed in the middle of a deploy (after the new release went live, before it was
// recorded): the deploy fails naming the storage, the release the state names serves again, and
// once MinIO is back the state is whole and still names it. The state is never half-written.
func TestStorageLostMidDeployLeavesStateAndServingAgreed(t *testing.T) {
	w := setup(t)
	e := newEnv(t, w)
	own, states, deps := e.ownStore(t)
	_, err := deploy.Deploy(context.Background(), deps, deploy.DeployRequest{Environment: e.name, Branch: "main", Release: w.releases["v1"]})
	require.NoError(t, err)

	deps.Target = clobbering{Target: e.deps.Target, on: "2", clobber: own.Stop}
	_, err = deploy.Deploy(context.Background(), deps, deploy.DeployRequest{Environment: e.name, Branch: "main", Release: w.releases["v2"]})
	require.ErrorIs(t, err, objstore.ErrUnreachable)
	assert.ErrorContains(t, err, "was put back and serves again")
	assert.Equal(t, "1", e.serving(t))

	own.Start(t)
	st, err := states.Load(context.Background(), e.name, store.LoadOptions{})
	require.NoError(t, err, "the state file is whole")
	assert.Equal(t, "1", st.Current.ModelVersion, "and names what serves")
	assert.Empty(t, st.History)
}

// MinIO killed in the middle of a rollback (release 1 serves again, the rollback is not yet
// recorded): the rollback fails naming the storage and release 2, which the state still names,
// is put back, so the state never says one thing while the target serves another. Once MinIO is
// back the file is whole, and the rollback can simply be run again.
func TestStorageLostMidRollbackLeavesStateAndServingAgreed(t *testing.T) {
	w := setup(t)
	e := newEnv(t, w)
	own, states, deps := e.ownStore(t)
	for _, rel := range []string{"v1", "v2"} {
		_, err := deploy.Deploy(context.Background(), deps, deploy.DeployRequest{Environment: e.name, Branch: "main", Release: w.releases[rel]})
		require.NoError(t, err)
	}

	deps.Target = clobbering{Target: e.deps.Target, on: "1", clobber: own.Stop}
	_, err := deploy.Rollback(context.Background(), deps, deploy.RollbackRequest{Environment: e.name, To: deploy.ToPrevious, Reason: "test"})
	require.ErrorIs(t, err, objstore.ErrUnreachable)
	assert.ErrorContains(t, err, "was put back and serves again")
	assert.Equal(t, "2", e.serving(t), "release 2, which the state names, serves again")

	own.Start(t)
	st, err := states.Load(context.Background(), e.name, store.LoadOptions{})
	require.NoError(t, err, "the state file is whole")
	assert.Equal(t, "2", st.Current.ModelVersion, "and names what serves")

	deps.Target = e.deps.Target
	_, err = deploy.Rollback(context.Background(), deps, deploy.RollbackRequest{Environment: e.name, To: deploy.ToPrevious, Reason: "test, again"})
	require.NoError(t, err, "run again once the storage is back")
	assert.Equal(t, "1", e.serving(t))
}

// ownStore is a MinIO of the test's own, to stop and start, holding the environment's state.
func (e *env) ownStore(t *testing.T) (*testenv.MinIOServer, *store.Store, deploy.Deps) {
	t.Helper()
	own := testenv.StartMinIO(t)
	states := store.New(own.Client(t), own.Bucket(t, "state"))
	require.NoError(t, states.EnsureBucket(context.Background()))
	return own, states, deploy.Deps{Target: e.deps.Target, State: states}
}

// clobbering is a target that calls clobber whenever a deploy of model version on has gone live.
type clobbering struct {
	deploy.Target
	on      string
	clobber func()
}

func (c clobbering) Deploy(ctx context.Context, rel deploy.Release) (*deploy.Result, error) {
	res, err := c.Target.Deploy(ctx, rel)
	if c.clobber != nil && rel.ModelVersion == c.on {
		c.clobber()
	}
	return res, err
}

// live inspects the environment's one running live container.
func (e *env) live(t *testing.T) container.InspectResponse {
	t.Helper()
	for _, c := range e.list(t) {
		if c.State == "running" && c.Labels[deploy.LabelRole] == "live" {
			info, err := e.w.docker.ContainerInspect(context.Background(), c.ID)
			require.NoError(t, err)
			return info
		}
	}
	require.FailNow(t, "no live container in "+e.name)
	return container.InspectResponse{}
}

// The smoke inference a release passed is recorded with it, and a rollback to it runs that one:
// here the project's default would predict wrong, and the rollback still passes on the recorded.
func TestARollbackRunsTheSmokeInferenceRecordedWithTheRelease(t *testing.T) {
	w := setup(t)
	e := newEnv(t, w)
	for _, rel := range []string{"v1", "v2"} {
		_, err := e.deploy(t, rel)
		require.NoError(t, err)
	}
	st, err := e.store.Load(context.Background(), e.name, store.LoadOptions{})
	require.NoError(t, err)
	require.NotNil(t, st.History[0].Smoke)
	assert.Equal(t, w.releases["v1"].Smoke.Input, st.History[0].Smoke.Input)
	assert.Equal(t, w.releases["v1"].Smoke.Want, st.History[0].Smoke.Label)

	wrong := w.releases["v1"].Smoke
	wrong.Want = (wrong.Want + 1) % 10
	_, err = deploy.Rollback(context.Background(), e.deps, deploy.RollbackRequest{Environment: e.name, To: deploy.ToPrevious,
		Reason: "v2 unhealthy", DefaultSmoke: wrong})
	require.NoError(t, err, "the recorded inference, not the default, was run")
	assert.Equal(t, "1", e.serving(t))

	// --no-smoke is recorded, and a rollback to that release does not invent an inference.
	rel := w.releases["v2"]
	rel.Smoke, rel.NoSmoke = deploy.Smoke{}, true
	_, err = deploy.Deploy(context.Background(), e.deps, deploy.DeployRequest{Environment: e.name, Branch: "main", Release: rel})
	require.NoError(t, err)
	st, err = e.store.Load(context.Background(), e.name, store.LoadOptions{})
	require.NoError(t, err)
	assert.True(t, st.Current.NoSmoke)
	assert.Nil(t, st.Current.Smoke)
}

func TestTheThirdRollbackWithinAnHourHaltsAndResumeClearsIt(t *testing.T) {
	w := setup(t)
	e := newEnv(t, w)
	_, err := e.deploy(t, "v1")
	require.NoError(t, err)
	req := deploy.RollbackRequest{Environment: e.name, To: deploy.ToCurrent, Reason: "gate failed", Smoke: w.releases["v1"].Smoke}
	for i := 0; i < 2; i++ {
		_, err := deploy.Rollback(context.Background(), e.deps, req)
		require.NoError(t, err, "rollback %d is within budget", i+1)
	}
	_, err = deploy.Rollback(context.Background(), e.deps, req)
	require.ErrorIs(t, err, deploystate.ErrHalted)
	assert.Contains(t, e.events.kinds(), notify.Halted)

	_, err = e.deploy(t, "v2")
	require.ErrorIs(t, err, deploystate.ErrHalted, "deploys wait for a person")
	assert.Equal(t, "1", e.serving(t))

	_, err = e.store.Resume(context.Background(), e.name, "alice", "bad candidates withdrawn")
	require.NoError(t, err)
	_, err = e.deploy(t, "v2")
	require.NoError(t, err)
	assert.Equal(t, "2", e.serving(t))
}

func TestOnlyMainDeploys(t *testing.T) {
	w := setup(t)
	e := newEnv(t, w)
	_, err := deploy.Deploy(context.Background(), e.deps, deploy.DeployRequest{Environment: e.name, Branch: "feature/faster", Release: w.releases["v1"]})
	require.ErrorIs(t, err, deploy.ErrNotMain)
	running, stopped := e.containers(t)
	assert.Zero(t, running+stopped, "nothing was started")
	_, err = e.store.Load(context.Background(), e.name, store.LoadOptions{})
	assert.ErrorIs(t, err, deploystate.ErrNoState, "nothing was recorded")
}

func TestBadInputChangesNothing(t *testing.T) {
	w := setup(t)
	e := newEnv(t, w)
	_, err := e.deploy(t, "v1")
	require.NoError(t, err)
	before, err := e.store.Load(context.Background(), e.name, store.LoadOptions{})
	require.NoError(t, err)

	t.Run("image that does not exist", func(t *testing.T) {
		rel := w.releases["v2"]
		rel.Image = strings.Replace(rel.Image, sha(2), "nonexistent", 1)
		_, err := deploy.Deploy(context.Background(), e.deps, deploy.DeployRequest{Environment: e.name, Branch: "main", Release: rel})
		require.ErrorIs(t, err, docker.ErrImageNotFound)
		assert.ErrorContains(t, err, "nonexistent")
	})
	t.Run("unreachable Docker engine", func(t *testing.T) {
		dead, err := client.NewClientWithOpts(client.WithHost("tcp://"+testenv.FreeAddr(t)), client.WithAPIVersionNegotiation())
		require.NoError(t, err)
		target, err := docker.New(docker.Config{Client: dead, Environment: e.name, Publish: e.publish})
		require.NoError(t, err)
		deps := e.deps
		deps.Target = target
		_, err = deploy.Deploy(context.Background(), deps, deploy.DeployRequest{Environment: e.name, Branch: "main", Release: w.releases["v2"]})
		require.ErrorIs(t, err, docker.ErrEngineUnreachable)
		assert.ErrorContains(t, err, "tcp://127.0.0.1:")
	})
	t.Run("a model version the image does not carry", func(t *testing.T) {
		live := e.live(t)
		rel := w.releases["v2"]
		rel.ModelVersion = "7.7.7"
		_, err := deploy.Deploy(context.Background(), e.deps, deploy.DeployRequest{Environment: e.name, Branch: "main", Release: rel})
		require.ErrorIs(t, err, deploy.ErrModelMismatch)
		assert.ErrorContains(t, err, `dev.modelship.model.version "2"`)
		assert.ErrorContains(t, err, `"7.7.7"`)
		assert.Equal(t, live.State.StartedAt, e.live(t).State.StartedAt, "the live container was not touched")
	})
	t.Run("a rollback with nothing earlier to go back to", func(t *testing.T) {
		_, err := deploy.Rollback(context.Background(), e.deps, deploy.RollbackRequest{Environment: e.name, To: deploy.ToPrevious, Reason: "v1 unhealthy"})
		require.ErrorIs(t, err, deploystate.ErrNothingToRollBackTo)
		assert.NotErrorIs(t, err, deploystate.ErrNoState, "the state exists; it is the history that is empty")
		assert.ErrorContains(t, err, "use --to current")
	})
	t.Run("a model name the image does not serve", func(t *testing.T) {
		rel := w.releases["v2"]
		rel.ModelName = "wine"
		_, err := deploy.Deploy(context.Background(), e.deps, deploy.DeployRequest{Environment: e.name, Branch: "main", Release: rel})
		require.ErrorIs(t, err, deploy.ErrModelMismatch)
		assert.ErrorContains(t, err, "--model-name")
	})
	after, err := e.store.Load(context.Background(), e.name, store.LoadOptions{})
	require.NoError(t, err)
	assert.Equal(t, before.Current, after.Current)
	assert.Equal(t, "1", e.serving(t))

	t.Run("corrupt deploy_state.json", func(t *testing.T) {
		client := w.minio.Client(t)
		_, err := client.PutObject(context.Background(), e.store.Bucket(), e.store.Key(e.name), strings.NewReader("{\"schema_version\": 1,"), 21, minio.PutObjectOptions{})
		require.NoError(t, err)
		_, err = e.deploy(t, "v2")
		require.ErrorIs(t, err, deploystate.ErrInvalidState)
		_, err = deploy.Rollback(context.Background(), e.deps, deploy.RollbackRequest{Environment: e.name, To: deploy.ToCurrent, Reason: "x"})
		require.ErrorIs(t, err, deploystate.ErrInvalidState)
		assert.Equal(t, "1", e.serving(t), "nothing was deployed from a bad file")
	})
}

func TestAWebhookHearsAboutDeploysAndItsFailureNeverFailsOne(t *testing.T) {
	w := setup(t)
	e := newEnv(t, w)
	var mu sync.Mutex
	var bodies []map[string]any
	status := http.StatusOK
	hook := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		var body map[string]any
		_ = json.Unmarshal(raw, &body)
		mu.Lock()
		bodies = append(bodies, body)
		rw.WriteHeader(status)
		mu.Unlock()
	}))
	defer hook.Close()
	n, err := notify.NewWebhook(hook.URL+"/hooks/T000/B000/secret-token", nil)
	require.NoError(t, err)
	e.deps.Notifier = n

	_, err = e.deploy(t, "v1")
	require.NoError(t, err)
	mu.Lock()
	status = http.StatusInternalServerError
	mu.Unlock()
	_, err = e.deploy(t, "v2")
	require.NoError(t, err, "a failing webhook does not fail the deploy")
	hook.Close()
	_, err = e.deploy(t, "weak")
	require.ErrorIs(t, err, deploy.ErrVerification, "an unreachable webhook changes nothing either")

	mu.Lock()
	defer mu.Unlock()
	require.Len(t, bodies, 2)
	assert.Contains(t, bodies[0]["text"], "deployed")
	assert.Equal(t, bodies[0]["text"], bodies[0]["content"], "Slack reads text, Discord content")
}

// A deployer in a container (a Dagger function) cannot reach the host's loopback; it verifies
// each container at its own address on the Docker network instead.
func TestVerificationThroughTheContainersOwnAddress(t *testing.T) {
	w := setup(t)
	e := newEnv(t, w)
	target, err := docker.New(docker.Config{Client: w.docker, Environment: e.name, Publish: e.publish,
		CheckHost: docker.CheckViaContainerIP, ReadyTimeout: 30 * time.Second})
	require.NoError(t, err)
	e.deps.Target = target
	for _, rel := range []string{"v1", "v2"} {
		out, err := e.deploy(t, rel)
		require.NoError(t, err)
		assert.Contains(t, out.Result.URL, e.publish[strings.LastIndex(e.publish, ":"):])
	}
	assert.Equal(t, "2", e.serving(t))
	_, err = e.deploy(t, "weak")
	require.ErrorIs(t, err, deploy.ErrVerification, "the smoke test runs through the container address too")
}

// A laptop pipeline hands its image to the engine as a tarball, with no registry in between.
func TestAnImageArchiveDeploysWithoutARegistry(t *testing.T) {
	w := setup(t)
	e := newEnv(t, w)
	ctx := context.Background()
	src := w.releases["v1"].Image
	rc, err := w.docker.ImagePull(ctx, src, image.PullOptions{})
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, rc)
	rc.Close()
	saved, err := w.docker.ImageSave(ctx, []string{src})
	require.NoError(t, err)
	archive := t.TempDir() + "/image.tar"
	f, err := os.Create(archive)
	require.NoError(t, err)
	_, err = io.Copy(f, saved)
	require.NoError(t, err)
	saved.Close()
	require.NoError(t, f.Close())

	local := "modelship.local/digits:" + sha(1)
	require.NoError(t, docker.LoadImageArchive(ctx, w.docker, archive, local))
	rel := w.releases["v1"]
	rel.Image = local
	_, err = deploy.Deploy(ctx, e.deps, deploy.DeployRequest{Environment: e.name, Branch: "main", Release: rel})
	require.NoError(t, err)
	assert.Equal(t, "1", e.serving(t))

	require.NoError(t, os.WriteFile(archive, []byte("not a tarball"), 0o644))
	assert.Error(t, docker.LoadImageArchive(ctx, w.docker, archive, local))
}

// The conformance suite every target passes, on the real Docker engine.
func TestConformance(t *testing.T) {
	w := setup(t)
	deploytest.Run(t, func(t *testing.T) *deploytest.Env {
		e := newEnv(t, w)
		return &deploytest.Env{Name: e.name, Deps: e.deps,
			Release: func(n int) deploy.Release { return w.releases[fmt.Sprintf("v%d", n)] },
			Broken:  w.releases["unready"],
			Serving: e.servingSHA,
			// Forget leaves nothing of release n on the host: its stopped containers and its image
			// go, so bringing it back means a pull from the registry.
			Forget: func(t *testing.T, n int) {
				rel := w.releases[fmt.Sprintf("v%d", n)]
				for _, c := range e.list(t) {
					if c.State != "running" && c.Labels[deploy.LabelGitSHA] == rel.GitSHA {
						require.NoError(t, w.docker.ContainerRemove(context.Background(), c.ID, container.RemoveOptions{Force: true}))
					}
				}
				_, err := w.docker.ImageRemove(context.Background(), rel.Image, image.RemoveOptions{Force: true})
				require.NoError(t, err)
			},
		}
	})
}

// list is every container of the environment, running or not.
func (e *env) list(t *testing.T) []container.Summary {
	t.Helper()
	list, err := e.w.docker.ContainerList(context.Background(), container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", deploy.LabelEnvironment+"="+e.name))})
	require.NoError(t, err)
	return list
}

// servingSHA is the git SHA of the running live container ("" when none runs).
func (e *env) servingSHA(t *testing.T) string {
	t.Helper()
	for _, c := range e.list(t) {
		if c.State == "running" && c.Labels[deploy.LabelRole] == "live" {
			return c.Labels[deploy.LabelGitSHA]
		}
	}
	return ""
}

// The smoke inference travels with the image: a release given none runs the one build-image
// baked into its label, and the state records it, so a rollback runs it too. An image without
// one, given none, is refused before anything starts.
func TestTheSmokeInferenceTravelsWithTheImage(t *testing.T) {
	w := setup(t)
	e := newEnv(t, w)
	rel := w.releases["v1"]
	want := rel.Smoke
	rel.Smoke = deploy.Smoke{}
	out, err := deploy.Deploy(context.Background(), e.deps, deploy.DeployRequest{Environment: e.name, Branch: "main", Release: rel})
	require.NoError(t, err)
	assert.Equal(t, want, out.Result.Smoke, "the image's own smoke inference ran")
	st, err := e.store.Load(context.Background(), e.name, store.LoadOptions{})
	require.NoError(t, err)
	require.NotNil(t, st.Current.Smoke, "and is recorded for the rollbacks to it")
	assert.Equal(t, want.Input, st.Current.Smoke.Input)

	// A flag still overrides it: a wrong label given by hand fails verification.
	wrong := w.releases["v2"]
	wrong.Smoke.Want = (wrong.Smoke.Want + 1) % 10
	_, err = deploy.Deploy(context.Background(), e.deps, deploy.DeployRequest{Environment: e.name, Branch: "main", Release: wrong})
	require.ErrorIs(t, err, deploy.ErrVerification)
	assert.Equal(t, "1", e.serving(t))

	bare := w.releases["unready"]
	bare.Smoke = deploy.Smoke{}
	_, err = deploy.Deploy(context.Background(), e.deps, deploy.DeployRequest{Environment: e.name, Branch: "main", Release: bare})
	require.ErrorIs(t, err, deploy.ErrNoSmokeInput, "refused before the server that cannot start was even tried")
	assert.ErrorContains(t, err, "--smoke-fixture")
	assert.Equal(t, "1", e.serving(t))
	bare.DefaultSmoke = want
	_, err = deploy.Deploy(context.Background(), e.deps, deploy.DeployRequest{Environment: e.name, Branch: "main", Release: bare})
	require.ErrorIs(t, err, deploy.ErrVerification, "with the project's fixture as the fallback it gets as far as starting")
}
