package docker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelship/modelship/internal/deploy"
	"github.com/modelship/modelship/internal/deploy/docker"
	"github.com/modelship/modelship/internal/deploystate"
	"github.com/modelship/modelship/internal/deploystate/store"
	"github.com/modelship/modelship/internal/testenv"
)

// environments are two environments on one engine sharing one state bucket, as staging and
// production share a pipeline's state.
func environments(t *testing.T, w *world) (staging, production *env) {
	t.Helper()
	states := store.New(w.minio.Client(t), w.minio.Bucket(t, "state"))
	mk := func(suffix string) *env {
		name := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
		name = name[:min(len(name), 30)] + "-" + suffix
		publish := testenv.FreeAddr(t)
		target, err := docker.New(docker.Config{Client: w.docker, Environment: name, Publish: publish, ReadyTimeout: 30 * time.Second})
		require.NoError(t, err)
		t.Cleanup(func() { testenv.RemoveEnvironmentContainers(w.docker, name) })
		rec := &recorder{}
		return &env{name: name, publish: publish, store: states, events: rec, w: w,
			deps: deploy.Deps{Target: target, State: states, Notifier: rec}}
	}
	return mk("staging"), mk("production")
}

func passedGate(at time.Time) *deploystate.GateRecord {
	return &deploystate.GateRecord{Passed: true, Summary: "accuracy 0.9733 >= 0.85", ReportSHA256: strings.Repeat("ab", 32), At: at}
}

func (e *env) promote(from *env, minAge time.Duration, now time.Time) (*deploy.Outcome, error) {
	return deploy.Promote(context.Background(), e.deps, deploy.PromoteRequest{From: from.name, To: e.name, MinAge: minAge,
		PipelineRun: "promote-test", Evidence: "s3://evidence/promote.json", Now: now})
}

// What staging runs, verified and gated, goes to production as the same digest, rebuilt from
// nothing; anything short of that is refused before production is touched.
func TestPromotionCopiesTheVerifiedDigestAndRefusesWhatDoesNotQualify(t *testing.T) {
	w := setup(t)
	staging, production := environments(t, w)
	ctx := context.Background()

	_, err := production.promote(staging, 0, time.Time{})
	require.ErrorIs(t, err, deploy.ErrPromotionRefused)
	assert.ErrorContains(t, err, "nothing was ever deployed to "+staging.name)

	_, err = staging.deploy(t, "v1")
	require.NoError(t, err)
	_, err = production.promote(staging, 0, time.Time{})
	require.ErrorIs(t, err, deploy.ErrPromotionRefused)
	assert.ErrorContains(t, err, "records no passed quality gate")

	gated, err := deploy.Deploy(ctx, staging.deps, deploy.DeployRequest{Environment: staging.name, Branch: "main", PipelineRun: "staging-run",
		Release: w.releases["v2"], Evidence: "s3://evidence/staging-deploy.json", Gate: passedGate(time.Now().UTC())})
	require.NoError(t, err)
	live := gated.Deployment

	_, err = production.promote(staging, time.Hour, time.Time{})
	require.ErrorIs(t, err, deploy.ErrPromotionRefused)
	assert.ErrorContains(t, err, "promotions need 1h0m0s")
	assert.Equal(t, "", production.serving(t), "nothing was deployed to production by a refused promotion")

	out, err := production.promote(staging, time.Hour, live.DeployedAt.Add(2*time.Hour))
	require.NoError(t, err)
	assert.Equal(t, "2", production.serving(t))
	st, err := production.store.Load(ctx, production.name, store.LoadOptions{})
	require.NoError(t, err)
	got := st.Current
	assert.Equal(t, live.Image, got.Image, "the same image, by digest")
	assert.Contains(t, got.Image, "@sha256:")
	assert.Equal(t, live.ModelVersion, got.ModelVersion)
	assert.Equal(t, live.GitSHA, got.GitSHA)
	require.NotNil(t, got.PromotedFrom)
	assert.Equal(t, staging.name, got.PromotedFrom.Environment)
	assert.Equal(t, "s3://evidence/staging-deploy.json", got.PromotedFrom.Evidence, "the source's evidence is linked")
	assert.True(t, got.PromotedFrom.DeployedAt.Equal(live.DeployedAt))
	require.NotNil(t, got.Gate, "the gate travels with the release")
	assert.Equal(t, "s3://evidence/promote.json", got.Evidence)
	assert.Equal(t, out.Deployment.Image, got.Image)

	// A halted target takes no promotion.
	_, err = production.store.Update(ctx, production.name, func(s *deploystate.State) error {
		s.Halt = &deploystate.Halt{At: time.Now().UTC(), Reason: "test halt"}
		return nil
	})
	require.NoError(t, err)
	_, err = production.promote(staging, 0, time.Time{})
	require.ErrorIs(t, err, deploystate.ErrHalted)
}

// A deployment that skipped its smoke inference was never fully verified: not promoted.
func TestADeploymentWithoutASmokeInferenceIsNotPromoted(t *testing.T) {
	w := setup(t)
	staging, production := environments(t, w)
	rel := w.releases["v1"]
	rel.NoSmoke, rel.Smoke = true, deploy.Smoke{}
	_, err := deploy.Deploy(context.Background(), staging.deps, deploy.DeployRequest{Environment: staging.name, Branch: "main",
		Release: rel, Gate: passedGate(time.Now().UTC())})
	require.NoError(t, err)
	_, err = production.promote(staging, 0, time.Time{})
	require.ErrorIs(t, err, deploy.ErrPromotionRefused)
	assert.ErrorContains(t, err, "without a smoke inference")
	_, err = production.promote(production, 0, time.Time{})
	assert.ErrorIs(t, err, deploystate.ErrInvalidInput, "an environment is not promoted to itself")
}
