package main

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/modelship/modelship/ci/internal/dagger"
	"github.com/modelship/modelship/internal/deploystate"
	"github.com/modelship/modelship/internal/registry/manifest"
)

const (
	candidateHost = "candidate"
	// projectFile pins the model version a commit that pushed none ships.
	projectFile = "modelship.json"
)

// resolution is what `modelship --json model resolve` prints: the version chosen and how.
type resolution = manifest.Resolution

// resolve chooses the model version: modelVersion; else the newest pushed from gitSha, else the
// version modelship.json pins; else the newest. It runs on every call, since what a SHA or
// "latest" points at changes as models are pushed.
func (m *Modelship) resolve(ctx context.Context, modelVersion, gitSha string) (resolution, error) {
	args := []string{"modelship", "--json", "model", "resolve", "--name", m.ModelName}
	switch {
	case modelVersion != "":
		args = append(args, "--version", modelVersion)
	case gitSha != "":
		args = append(args, "--git-sha", gitSha, "--pinned-from", projectFile)
	}
	var res resolution
	out, err := fresh(m.registryCli()).WithExec(args).Stdout(ctx)
	if err != nil {
		return res, failed("resolve model "+m.ModelName+" in the registry", err)
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		return res, fmt.Errorf("read the resolved model's manifest: %w", err)
	}
	return res, nil
}

// versionOf is the model version a function runs with: modelVersion, or with an alias the
// version the alias points at now (resolved afresh on every call, as aliases move); an alias
// with a version or a SHA is refused.
func (m *Modelship) versionOf(ctx context.Context, modelVersion, gitSha, alias string) (string, error) {
	if alias == "" {
		return modelVersion, nil
	}
	if modelVersion != "" || gitSha != "" {
		return "", fmt.Errorf("give --alias, --model-version or --git-sha, not more than one")
	}
	out, err := fresh(m.registryCli()).
		WithExec([]string{"modelship", "--json", "model", "resolve", "--name", m.ModelName, "--alias", alias}).
		Stdout(ctx)
	if err != nil {
		return "", failed("resolve alias "+alias+" of "+m.ModelName, err)
	}
	var res resolution
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		return "", fmt.Errorf("read the resolved model's manifest: %w", err)
	}
	return res.Manifest.Version, nil
}

// pullModel resolves the model version afresh, then pulls that exact, immutable version: the
// pull is cached by version and digest, so the builds and the gate after it are too.
func (m *Modelship) pullModel(ctx context.Context, modelVersion, gitSha string) (*dagger.File, resolution, error) {
	res, err := m.resolve(ctx, modelVersion, gitSha)
	if err != nil {
		return nil, res, err
	}
	pulled := m.registryCli().
		WithEnvVariable("MODELSHIP_MODEL_SHA256", res.Manifest.SHA256).
		WithExec([]string{"modelship", "model", "pull", "--name", m.ModelName, "--version", res.Manifest.Version, "-o", "/model/model.onnx"})
	if _, err := pulled.Sync(ctx); err != nil {
		return nil, res, failed(fmt.Sprintf("pull model %s@%s from the registry", m.ModelName, res.Manifest.Version), err)
	}
	// A fixed time keeps the file, and so the image's model layer, byte-identical whenever the
	// pull runs again (a new CLI).
	return pulled.File("/model/model.onnx").WithTimestamps(0), res, nil
}

// Serve runs a model version's server image as a service: `dagger call serve up --ports 8001:8000`.
func (m *Modelship) Serve(
	ctx context.Context,
	// Model version to serve (default: the one pushed from --git-sha, else the pinned one, else the newest).
	//
	// +optional
	modelVersion string,
	// Serve the model of this commit.
	//
	// +optional
	gitSha string,
	// Run with the version this model alias points at (e.g. production, challenger).
	//
	// +optional
	alias string,
) (*dagger.Service, error) {
	modelVersion, err := m.versionOf(ctx, modelVersion, gitSha, alias)
	if err != nil {
		return nil, err
	}
	model, res, err := m.pullModel(ctx, modelVersion, gitSha)
	if err != nil {
		return nil, err
	}
	return m.service(ctx, model, res)
}

// gateRun is one quality gate run: its reports and the gate's exit code.
type gateRun struct {
	reports *dagger.Directory
	code    int
}

// gate runs the quality gate against the candidate served from its image. An error means the
// gate could not evaluate (no model, no store); a non-zero code means it evaluated and failed.
// The reports are there whatever the verdict. Fresh runs evaluate again even when nothing changed.
func (m *Modelship) gate(ctx context.Context, modelVersion, gitSha string, again bool) (gateRun, error) {
	// One pull: the version reported is the version served, even when "latest" moves.
	model, res, err := m.pullModel(ctx, modelVersion, gitSha)
	if err != nil {
		return gateRun{}, err
	}
	svc, err := m.service(ctx, model, res)
	if err != nil {
		return gateRun{}, err
	}
	c := m.Cli().
		WithDirectory(projectDir, m.gateInputs()).
		WithEnvVariable("MODELSHIP_PROJECT", projectDir).
		WithServiceBinding(candidateHost, svc).
		WithEnvVariable("MODELSHIP_SERVER_URL", fmt.Sprintf("http://%s:%d", candidateHost, m.Port)).
		WithEnvVariable("MODELSHIP_MODEL_VERSION", res.Manifest.Version).
		WithEnvVariable("MODELSHIP_REPORT_DIR", reportsDir)
	if again {
		c = fresh(c)
	}
	run := c.WithExec([]string{"bash", "scripts/gate.sh"}, dagger.ContainerWithExecOpts{Expect: dagger.ReturnTypeAny})
	code, err := run.ExitCode(ctx)
	if err != nil {
		return gateRun{}, failed("run the quality gate", err)
	}
	return gateRun{reports: run.Directory(reportsDir), code: code}, nil
}

// QualityReports runs the quality gate on a candidate and returns its reports, pass or fail:
// test-results.xml (JUnit), quality-report.json, quality-report.md and the charts.
// `dagger call quality-reports --git-sha $SHA export --path reports`
func (m *Modelship) QualityReports(
	ctx context.Context,
	// Model version to gate (default: the one pushed from --git-sha, else the pinned one, else the newest).
	//
	// +optional
	modelVersion string,
	// Gate the model of this commit.
	//
	// +optional
	gitSha string,
	// Run with the version this model alias points at (e.g. production, challenger).
	//
	// +optional
	alias string,
) (*dagger.Directory, error) {
	modelVersion, err := m.versionOf(ctx, modelVersion, gitSha, alias)
	if err != nil {
		return nil, err
	}
	run, err := m.gate(ctx, modelVersion, gitSha, false)
	return run.reports, err
}

// TestQuality is the test-quality stage: the candidate from the registry must reach the floors
// in model_baseline.json (accuracy >= 0.85, p95 latency < 200 ms, ...). Returns the reports;
// fails, naming every missed floor, when the gate fails. The reports of a failed run come from
// quality-reports (the same run, cached).
//
// +check
func (m *Modelship) TestQuality(
	ctx context.Context,
	// Model version to gate (default: the one pushed from --git-sha, else the pinned one, else the newest).
	//
	// +optional
	modelVersion string,
	// Gate the model of this commit.
	//
	// +optional
	gitSha string,
	// Run with the version this model alias points at (e.g. production, challenger).
	//
	// +optional
	alias string,
) (*dagger.Directory, error) {
	modelVersion, err := m.versionOf(ctx, modelVersion, gitSha, alias)
	if err != nil {
		return nil, err
	}
	return m.passedGate(ctx, modelVersion, gitSha)
}

// passedGate runs the gate and returns its reports when the candidate passed; a failed gate is
// a *gateFailed naming every missed floor.
func (m *Modelship) passedGate(ctx context.Context, modelVersion, gitSha string) (*dagger.Directory, error) {
	run, err := m.gate(ctx, modelVersion, gitSha, false)
	if err != nil {
		return nil, err
	}
	if run.code != 0 {
		return nil, &gateFailed{code: run.code, summary: summary(ctx, run.reports)}
	}
	return run.reports, nil
}

// gateFailed is a gate that evaluated the candidate and failed it: what calls for a rollback,
// unlike a gate that could not evaluate at all.
type gateFailed struct {
	code    int
	summary string
}

func (e *gateFailed) Error() string {
	return fmt.Sprintf("quality gate failed (exit %d); export the reports with quality-reports:\n%s", e.code, e.summary)
}

// summary is the gate's Markdown report, or why it is missing.
func summary(ctx context.Context, reports *dagger.Directory) string {
	md, err := reports.File("quality-report.md").Contents(ctx)
	if err != nil {
		return "(no quality-report.md: " + err.Error() + ")"
	}
	return md
}

// EvaluateProduction runs the quality gate again against the model deploy_state.json records as
// live, deploying nothing, and returns the reports whatever the verdict (for the scheduled
// evaluation: a slow regression shows without a commit). quality-report.json says "passed".
//
// +cache="never"
func (m *Modelship) EvaluateProduction(ctx context.Context) (*dagger.Directory, error) {
	out, err := fresh(m.Cli()).WithExec([]string{"modelship", "--json", "state", "show"}).Stdout(ctx)
	if err != nil {
		return nil, failed("read deploy_state.json of "+m.Environment, err)
	}
	var st deploystate.State
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return nil, fmt.Errorf("read deploy_state.json of %s: %w", m.Environment, err)
	}
	if st.Current == nil {
		return nil, fmt.Errorf("nothing is deployed in %s: deploy_state.json has no current deployment", m.Environment)
	}
	run, err := m.gate(ctx, st.Current.ModelVersion, "", true)
	return run.reports, err
}
