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
	"github.com/modelship/modelship/internal/project"
	"github.com/modelship/modelship/internal/registry"
	"github.com/modelship/modelship/serving/oip"
)

// Config says what to gate and against what. Exactly one model source is used, in this
// order: ServerURL (a server already running the candidate), the registry (when Ref names a
// version, SHA or alias), ModelFile.
type Config struct {
	BaselinePath string
	FixturePath  string
	ReportDir    string
	Task         string          // the project's task; the baseline and fixture must agree
	Inputs       []project.Input // what the served model must declare
	ProjectFile  string          // the modelship.json read, if any
	ProjectErr   error           // why it could not be read: the gate then cannot evaluate
	HealthPath   string          // the candidate server's readiness endpoint (modelship.json's serving)

	// ProductionURL is a server running the production model, for the prediction diff; empty,
	// the gate pulls the baseline's production version from the registry and serves it.
	ProductionURL string

	ServerURL    string // e.g. the candidate container the pipeline started
	ModelName    string // served name; defaults to the baseline's model
	ModelVersion string // reported identity when ServerURL is used

	S3           objstore.Config // registry access, when Ref is used
	ModelsBucket string
	CacheDir     string
	Ref          registry.Ref // Version, GitSHA or Alias selects a registry version

	ModelFile string // a local ONNX file
	// Serve runs a loaded model file (or registry version) on a local address until stop is
	// called: serving.Local. The gate takes it as a function so that what imports the gate's
	// reports and baseline (the CLI) is not built from the server.
	Serve   func(model *inference.Model, name, version string) (url string, stop func(), err error)
	Warmup  int
	Timeout time.Duration // for the whole evaluation; default 5 minutes
}

// ConfigFromEnv reads the gate's settings: the project file first (MODELSHIP_PROJECT, a folder,
// default the repository root; its modelship.json names the model, task, inputs, fixtures and
// baseline, relative to it), then the variables, which override it. Paths given in variables
// are relative to the repository root (go test runs the gate from tests/).
//
//	MODELSHIP_PROJECT        the project folder holding modelship.json
//	MODELSHIP_BASELINE       the baseline (default: modelship.json's, else model_baseline.json)
//	MODELSHIP_FIXTURES       the fixture (default: modelship.json's, else tests/fixtures/validation.json)
//	MODELSHIP_REPORT_DIR     reports/quality
//	MODELSHIP_SERVER_URL     gate a running server
//	MODELSHIP_PRODUCTION_URL diff against a running production server
//	MODELSHIP_MODEL_NAME     model name (default: modelship.json's, else the baseline's)
//	MODELSHIP_MODEL_VERSION  registry version ("latest" allowed), or the running server's version
//	MODELSHIP_GIT_SHA        registry version pushed from this commit
//	MODELSHIP_MODEL_ALIAS    registry version an alias points at (champion, production, ...)
//	MODELSHIP_MODEL_FILE     a local ONNX file (default models/digits-reference.onnx)
//	AWS_* and MODELSHIP_MODELS_BUCKET, MODELSHIP_CACHE_DIR for the registry
func ConfigFromEnv(root string) Config {
	env := func(k, def string) string {
		if v := os.Getenv(k); v != "" {
			return v
		}
		return def
	}
	under := func(base, p string) string {
		if !filepath.IsAbs(p) {
			p = filepath.Join(base, p)
		}
		return p
	}
	projectDir := under(root, env("MODELSHIP_PROJECT", "."))
	cfg := Config{
		ProjectFile:   filepath.Join(projectDir, project.FileName),
		ReportDir:     under(root, env("MODELSHIP_REPORT_DIR", "reports/quality")),
		ServerURL:     os.Getenv("MODELSHIP_SERVER_URL"),
		ProductionURL: os.Getenv("MODELSHIP_PRODUCTION_URL"),
		ModelName:     os.Getenv("MODELSHIP_MODEL_NAME"),
		ModelVersion:  os.Getenv("MODELSHIP_MODEL_VERSION"),
		S3:            objstore.FromEnv(),
		ModelsBucket:  env("MODELSHIP_MODELS_BUCKET", "models"),
		CacheDir:      env("MODELSHIP_CACHE_DIR", filepath.Join(os.TempDir(), "modelship-gate-cache")),
		ModelFile:     under(root, env("MODELSHIP_MODEL_FILE", "models/digits-reference.onnx")),
	}
	fixtures, baseline := project.DefaultFixtures, project.DefaultBaseline
	proj, err := project.Load(cfg.ProjectFile)
	switch {
	case errors.Is(err, project.ErrNoFile):
		cfg.ProjectFile = ""
	case err != nil:
		cfg.ProjectErr = err
	default:
		fixtures, baseline = proj.FixturesPath(), proj.BaselinePath()
		cfg.Task, cfg.Inputs, cfg.HealthPath = proj.Task(), proj.Inputs, proj.Server().HealthPath
		if cfg.ModelName == "" {
			cfg.ModelName = proj.Model.Name
		}
	}
	cfg.FixturePath = under(projectDir, fixtures)
	if v := os.Getenv("MODELSHIP_FIXTURES"); v != "" {
		cfg.FixturePath = under(root, v)
	}
	cfg.BaselinePath = under(projectDir, baseline)
	if v := os.Getenv("MODELSHIP_BASELINE"); v != "" {
		cfg.BaselinePath = under(root, v)
	}
	if cfg.ServerURL == "" {
		cfg.Ref = registry.Ref{Version: cfg.ModelVersion, GitSHA: os.Getenv("MODELSHIP_GIT_SHA"), Alias: os.Getenv("MODELSHIP_MODEL_ALIAS")}
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
	if cfg.ProjectErr != nil {
		return FailedReport(id, fixtureName, nil, cfg.ProjectErr, started)
	}
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
	if err := agree(cfg, id.Name, baseline, fx); err != nil {
		return FailedReport(id, fixtureName, baseline, err, started)
	}
	client, id, stop, err := candidate(ctx, cfg, id)
	if err != nil {
		return FailedReport(id, fixtureName, baseline, err, started)
	}
	defer stop()
	opts := EvalOptions{Model: id.Name, Inputs: cfg.Inputs, Warmup: cfg.Warmup}
	ev, err := Evaluate(ctx, client, fx, opts)
	if err != nil {
		return FailedReport(id, fixtureName, baseline, fmt.Errorf("evaluate %s: %w", id.Label(), err), started)
	}
	r := NewReport(id, fixtureName, baseline, ev, started)
	r.Diff = productionDiff(ctx, cfg, baseline, fx, ev, id, opts)
	r.DurationMS = ms(time.Since(started))
	return r
}

// agree refuses a gate whose parts describe different models: a baseline kept for another
// model, or a baseline, fixture and project that disagree on the task.
func agree(cfg Config, model string, b *Baseline, fx *dataset.Fixture) error {
	if b.Model != model {
		return fmt.Errorf("%s is the baseline of model %q, and the candidate is %q: each model keeps its own baseline (its floors and its production record); "+
			"point modelship.json's \"baseline\" (or MODELSHIP_BASELINE) at %q's, or create one with \"model\": %q", cfg.BaselinePath, b.Model, model, model, model)
	}
	if b.TaskOf() != fx.TaskOf() {
		return fmt.Errorf("the baseline %s is for %s and the fixture %s holds %s samples: use a fixture of the model's task",
			cfg.BaselinePath, b.TaskOf(), cfg.FixturePath, fx.TaskOf())
	}
	if cfg.Task != "" && cfg.Task != b.TaskOf() {
		return fmt.Errorf("modelship.json says the task is %s, the baseline %s says %s: set one task in both", cfg.Task, cfg.BaselinePath, b.TaskOf())
	}
	return nil
}

// productionDiff evaluates production on the same fixture, for the prediction diff. It never
// fails the gate: a diff it cannot make says why.
func productionDiff(ctx context.Context, cfg Config, b *Baseline, fx *dataset.Fixture, cand *Evaluation, candID ModelIdentity, opts EvalOptions) *Diff {
	skipped := func(format string, args ...any) *Diff { return &Diff{Skipped: fmt.Sprintf(format, args...)} }
	prodID := ModelIdentity{Name: candID.Name, Source: cfg.ProductionURL}
	var client *oip.Client
	switch {
	case cfg.ProductionURL != "":
		client = oip.NewClient(cfg.ProductionURL)
		if meta, err := client.Metadata(ctx, candID.Name); err == nil && len(meta.Versions) > 0 {
			prodID.Version = meta.Versions[0]
		}
	case b.Production == nil:
		return skipped("the baseline records no production model yet (modelship baseline promote records one)")
	case b.Production.Version == candID.Version && candID.Version != "":
		return skipped("the candidate is the production version %s", b.Production.Version)
	case cfg.S3.Endpoint == "" || cfg.Serve == nil:
		return skipped("no registry to pull production %s from (set AWS_ENDPOINT_URL_S3) or MODELSHIP_PRODUCTION_URL", b.Production.Version)
	default:
		prodCfg := cfg
		prodCfg.Ref = registry.Ref{Version: b.Production.Version}
		file, manifest, err := pullCandidate(ctx, prodCfg, candID.Name)
		if err != nil {
			return skipped("production %s: %v", b.Production.Version, err)
		}
		model, err := inference.Load(file)
		if err != nil {
			return skipped("production %s: %v", b.Production.Version, err)
		}
		url, stop, err := cfg.Serve(model, candID.Name, manifest.Version)
		if err != nil {
			return skipped("serve production %s: %v", b.Production.Version, err)
		}
		defer stop()
		client = oip.NewClient(url)
		prodID.Version, prodID.GitSHA, prodID.SHA256 = manifest.Version, manifest.GitSHA, manifest.SHA256
		prodID.Source = fmt.Sprintf("s3://%s/%s", cfg.ModelsBucket, manifest.Blob)
	}
	prod, err := Evaluate(ctx, client, fx, opts)
	if err != nil {
		return skipped("evaluate production: %v", err)
	}
	prodP95 := prod.Metrics().P95LatencyMS
	if cfg.ProductionURL == "" && b.Production.P95LatencyMS > 0 {
		// Served here, production's latency is not what its own server measured when promoted.
		prodP95 = b.Production.P95LatencyMS
	}
	return NewDiff(fx, cand, prod, prodID, prodP95)
}

// candidate returns a client of a server running the candidate, and how to stop that server.
func candidate(ctx context.Context, cfg Config, id ModelIdentity) (*oip.Client, ModelIdentity, func(), error) {
	noop := func() {}
	if cfg.ServerURL != "" {
		id.Source = cfg.ServerURL
		client := oip.NewClient(cfg.ServerURL).WithReadyPath(cfg.HealthPath)
		waitCtx, cancel := context.WithTimeout(ctx, min(time.Minute, cfg.Timeout))
		defer cancel()
		if err := client.WaitReady(waitCtx); err != nil {
			return nil, id, noop, fmt.Errorf("the candidate server does not answer: %w", err)
		}
		return client, id, noop, nil
	}
	file := cfg.ModelFile
	if cfg.Ref.Version != "" || cfg.Ref.GitSHA != "" || cfg.Ref.Alias != "" {
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
