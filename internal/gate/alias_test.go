package gate_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelship/modelship/internal/gate"
	"github.com/modelship/modelship/internal/plumbing/projectpath"
	"github.com/modelship/modelship/serving"
)

// MODELSHIP_MODEL_ALIAS gates whatever version the alias points at when the gate runs: moving
// the alias changes the candidate without touching the pipeline's settings.
func TestTheGateTakesItsCandidateByAlias(t *testing.T) {
	srv, bucket, reg := registryHolding(t, pushed{"models/digits-reference.onnx", "1", refSHA}, pushed{"models/digits-weak.onnx", "2", weakSHA})
	ctx := context.Background()
	_, err := reg.SetAlias(ctx, "digits", "challenger", "1", "alice", "candidate for production")
	require.NoError(t, err)

	s3 := srv.Config()
	t.Setenv("AWS_ENDPOINT_URL_S3", s3.Endpoint)
	t.Setenv("AWS_ACCESS_KEY_ID", s3.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", s3.SecretKey)
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("MODELSHIP_MODELS_BUCKET", bucket)
	t.Setenv("MODELSHIP_CACHE_DIR", t.TempDir())
	t.Setenv("MODELSHIP_MODEL_ALIAS", "challenger")
	gateRun := func() *gate.Report {
		cfg := gate.ConfigFromEnv(projectpath.Root(t))
		require.Equal(t, "challenger", cfg.Ref.Alias)
		cfg.Serve, cfg.Timeout = serving.Local, time.Minute
		return gate.Run(ctx, cfg)
	}

	good := gateRun()
	require.Empty(t, good.Error)
	assert.True(t, good.Passed, good.FailureSummary())
	assert.Equal(t, "1", good.Model.Version, "the version the alias points at")
	assert.Equal(t, refSHA, good.Model.GitSHA)

	_, err = reg.SetAlias(ctx, "digits", "challenger", "2", "bob", "try the small one")
	require.NoError(t, err)
	moved := gateRun()
	require.Empty(t, moved.Error)
	assert.False(t, moved.Passed, "the alias moved to the weak model")
	assert.Equal(t, "2", moved.Model.Version)

	t.Setenv("MODELSHIP_MODEL_VERSION", "1")
	both := gateRun()
	assert.False(t, both.Passed)
	assert.Contains(t, both.Error, "not several", "an alias and a version at once is refused, not guessed between")
}
