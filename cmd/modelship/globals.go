package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/minio/minio-go/v7"
	"github.com/spf13/cobra"

	"github.com/modelship/modelship/internal/deploystate/store"
	"github.com/modelship/modelship/internal/plumbing/objstore"
	"github.com/modelship/modelship/internal/registry"
)

// globals are the settings every command shares.
type globals struct {
	s3           objstore.Config
	modelsBucket string
	stateBucket  string
	cacheDir     string
	jsonOutput   bool
	stderr       func() io.Writer // where notices go (the root command's, once its output is set)
	toldAWS      bool
}

func envOr(key, fallback string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return fallback
}

func defaultCacheDir() string {
	if dir, err := os.UserCacheDir(); err == nil {
		return filepath.Join(dir, "modelship", "models")
	}
	return filepath.Join(os.TempDir(), "modelship-models")
}

func (g *globals) register(cmd *cobra.Command) {
	env := objstore.FromEnv()
	g.s3.AccessKey, g.s3.SecretKey = env.AccessKey, env.SecretKey
	f := cmd.PersistentFlags()
	f.StringVar(&g.s3.Endpoint, "s3-endpoint", env.Endpoint, "S3 endpoint URL or host:port (AWS_ENDPOINT_URL_S3)")
	f.StringVar(&g.s3.Region, "s3-region", envOr("AWS_REGION", "us-east-1"), "S3 region (AWS_REGION)")
	f.BoolVar(&g.s3.PlainHTTP, "s3-plain-http", os.Getenv("MODELSHIP_S3_PLAIN_HTTP") == "true", "use plain HTTP for a host:port endpoint (MODELSHIP_S3_PLAIN_HTTP=true)")
	f.StringVar(&g.modelsBucket, "models-bucket", envOr("MODELSHIP_MODELS_BUCKET", "models"), "bucket of the model registry (MODELSHIP_MODELS_BUCKET)")
	f.StringVar(&g.stateBucket, "state-bucket", envOr("MODELSHIP_STATE_BUCKET", "deploy-state"), "bucket of deploy_state.json files (MODELSHIP_STATE_BUCKET)")
	f.StringVar(&g.cacheDir, "cache-dir", envOr("MODELSHIP_CACHE_DIR", defaultCacheDir()), "local cache of pulled models, by digest (MODELSHIP_CACHE_DIR)")
	f.BoolVar(&g.jsonOutput, "json", false, "print results as JSON")
}

func (g *globals) client() (*minio.Client, error) {
	c, err := objstore.NewClient(g.s3)
	if err != nil {
		return nil, usageError{err}
	}
	// Going to AWS by default is right for some users and a surprise for the rest, whose
	// failure would otherwise be a DNS error about a bucket host they never named.
	if g.s3.IsAWS() && !g.toldAWS && g.stderr != nil {
		g.toldAWS = true
		fmt.Fprintln(g.stderr(), "modelship: no S3 endpoint configured (AWS_ENDPOINT_URL_S3 or --s3-endpoint); trying AWS")
	}
	return c, nil
}

func (g *globals) registry() (*registry.Registry, error) {
	c, err := g.client()
	if err != nil {
		return nil, err
	}
	return registry.New(c, registry.Options{Bucket: g.modelsBucket, CacheDir: g.cacheDir})
}

func (g *globals) stateStore() (*store.Store, error) {
	c, err := g.client()
	if err != nil {
		return nil, err
	}
	return store.New(c, g.stateBucket), nil
}

// writableStateStore is the state store for commands that write it: the bucket is created
// (versioned) when missing, so the first deploy to an empty store succeeds.
func (g *globals) writableStateStore(ctx context.Context) (*store.Store, error) {
	states, err := g.stateStore()
	if err != nil {
		return nil, err
	}
	if err := states.EnsureBucket(ctx); err != nil {
		return nil, err
	}
	return states, nil
}
