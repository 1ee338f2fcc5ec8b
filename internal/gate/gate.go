package gate

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/modelship/modelship/internal/ml/dataset"
	"github.com/modelship/modelship/internal/ml/inference"
	"github.com/modelship/modelship/internal/plumbing/objstore"
	"github.com/modelship/modelship/internal/registry"
	"github.com/modelship/modelship/serving/oip"
)

// Config says what to gate and against what. Exactly one model source is used, in this
// order: ServerURL (a server already running the candidate), the registry (when Ref names a
// version or SHA), ModelFile.
type Config struct {
	BaselinePath string
	FixturePath  string
	ReportDir    string

	ServerURL    string // e.g. the candidate container the pipeline started
	ModelName    string // served name; defaults to the baseline's model
	ModelVersion string // reported identity when ServerURL is used

	S3           objstore.Config // registry access, when Ref is used
	ModelsBucket string
	CacheDir     string
	Ref          registry.Ref // Version or GitSHA selects a registry version

	ModelFile string // a local ONNX file
	// Serve runs a loaded model file (or registry version) on a local address until stop is
	// called: serving.Local. The gate takes it as a function so that what imports the gate's
	// reports and baseline (the CLI) is not built from the server.
	Serve   func(model *inference.Model, name, version string) (url string, stop func(), err error)
	Warmup  int
	Timeout time.Duration // for the whole evaluation; default 5 minutes
}

// ConfigFromEnv reads the gate's settings. Paths, given or default, are relative to the
// repository root (go test runs the gate from tests/).
//
//	MODELSHIP_BASELINE      model_baseline.json
//	MODELSHIP_FIXTURES      tests/fixtures/digits_validation.json
//	MODELSHIP_REPORT_DIR    reports/quality
//	MODELSHIP_SERVER_URL    gate a running server
//	MODELSHIP_MODEL_NAME    model name (default: the baseline's)
//	MODELSHIP_MODEL_VERSION registry version ("latest" allowed), or the running server's version
//	MODELSHIP_GIT_SHA       registry version pushed from this commit
//	MODELSHIP_MODEL_FILE    a local ONNX file (default models/digits-reference.onnx)
//	AWS_* and MODELSHIP_MODELS_BUCKET, MODELSHIP_CACHE_DIR for the registry
func ConfigFromEnv(root string) Config {
	env := func(k, def string) string {
		if v := os.Getenv(k); v != "" {
			return v
		}
		return def
	}
	file := func(k, def string) string {
		p := env(k, def)
		if !filepath.IsAbs(p) {
			p = filepath.Join(root, p)
		}
		return p
	}
	cfg := Config{
		BaselinePath: file("MODELSHIP_BASELINE", "model_baseline.json"),
		FixturePath:  file("MODELSHIP_FIXTURES", "tests/fixtures/digits_validation.json"),
		ReportDir:    file("MODELSHIP_REPORT_DIR", "reports/quality"),
		ServerURL:    os.Getenv("MODELSHIP_SERVER_URL"),
		ModelName:    os.Getenv("MODELSHIP_MODEL_NAME"),
		ModelVersion: os.Getenv("MODELSHIP_MODEL_VERSION"),
		S3:           objstore.FromEnv(),
		ModelsBucket: env("MODELSHIP_MODELS_BUCKET", "models"),
		CacheDir:     env("MODELSHIP_CACHE_DIR", filepath.Join(os.TempDir(), "modelship-gate-cache")),
		ModelFile:    file("MODELSHIP_MODEL_FILE", "models/digits-reference.onnx"),
	}
	if cfg.ServerURL == "" {
		cfg.Ref = registry.Ref{Version: cfg.ModelVersion, GitSHA: os.Getenv("MODELSHIP_GIT_SHA")}
	}
	return cfg
}

// Run evaluates the candidate and returns the report; it never returns nil. A gate that
// cannot evaluate (bad baseline, fixtures, model or server) is a failed report with Error set.
func Run(ctx context.Context, cfg Config) *Report {
	started := time.Now()
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	id := ModelIdentity{Name: cfg.ModelName, Version: cfg.ModelVersion, Source: cfg.ModelFile}
	fixtureName := filepath.Base(cfg.FixturePath)
	baseline, err := LoadBaseline(cfg.BaselinePath)
	if err != nil {
		return FailedReport(id, fixtureName, nil, err, started)
	}
	if id.Name == "" {
		id.Name = baseline.Model
	}
	fx, err := dataset.ReadFixture(cfg.FixturePath)
	if err != nil {
		return FailedReport(id, fixtureName, baseline, err, started)
	}
	client, id, stop, err := candidate(ctx, cfg, id)
	if err != nil {
		return FailedReport(id, fixtureName, baseline, err, started)
	}
	defer stop()
	ev, err := Evaluate(ctx, client, fx, EvalOptions{Model: id.Name, Warmup: cfg.Warmup})
	if err != nil {
		return FailedReport(id, fixtureName, baseline, fmt.Errorf("evaluate %s: %w", id.Label(), err), started)
	}
	return NewReport(id, fixtureName, baseline, ev, started)
}

// candidate returns a client of a server running the candidate, and how to stop that server.
func candidate(ctx context.Context, cfg Config, id ModelIdentity) (*oip.Client, ModelIdentity, func(), error) {
	noop := func() {}
	if cfg.ServerURL != "" {
		id.Source = cfg.ServerURL
		client := oip.NewClient(cfg.ServerURL)
		waitCtx, cancel := context.WithTimeout(ctx, min(time.Minute, cfg.Timeout))
		defer cancel()
		if err := client.WaitReady(waitCtx); err != nil {
			return nil, id, noop, fmt.Errorf("the candidate server does not answer: %w", err)
		}
		return client, id, noop, nil
	}
	file := cfg.ModelFile
	if cfg.Ref.Version != "" || cfg.Ref.GitSHA != "" {
		pulled, manifest, err := pullCandidate(ctx, cfg, id.Name)
		if err != nil {
			return nil, id, noop, err
		}
		file = pulled
		id.Version, id.GitSHA, id.Source = manifest.Version, manifest.GitSHA, fmt.Sprintf("s3://%s/%s", cfg.ModelsBucket, manifest.Blob)
	}
	model, err := inference.Load(file)
	if err != nil {
		return nil, id, noop, err
	}
	id.SHA256 = model.SHA256()
	if cfg.Serve == nil {
		return nil, id, noop, errors.New("gating a model file needs a server to run it in: set Config.Serve (serving.Local) or MODELSHIP_SERVER_URL")
	}
	url, stop, err := cfg.Serve(model, id.Name, id.Version)
	if err != nil {
		return nil, id, noop, err
	}
	return oip.NewClient(url), id, stop, nil
}

func pullCandidate(ctx context.Context, cfg Config, name string) (string, *registry.Manifest, error) {
	client, err := objstore.NewClient(cfg.S3)
	if err != nil {
		return "", nil, err
	}
	reg, err := registry.New(client, registry.Options{Bucket: cfg.ModelsBucket, CacheDir: cfg.CacheDir})
	if err != nil {
		return "", nil, err
	}
	ref := cfg.Ref
	ref.Name = name
	res, err := reg.Pull(ctx, ref, "")
	if err != nil {
		if errors.Is(err, registry.ErrNotFound) {
			return "", nil, fmt.Errorf("the candidate is not in the registry: %w", err)
		}
		return "", nil, fmt.Errorf("pull the candidate %s: %w", ref, err)
	}
	return res.Path, &res.Manifest, nil
}
