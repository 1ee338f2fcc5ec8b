package main

import (
	"context"
	"fmt"

	"github.com/modelship/modelship/ci/internal/dagger"
	"github.com/modelship/modelship/internal/pipeline"
	"github.com/modelship/modelship/internal/project"
)

// projectDir is where the gate reads the project (modelship.json, fixtures, baseline).
const projectDir = "/project"

// gateInputs is what the gate reads of the project, and nothing more, so that a change
// elsewhere in the project leaves a gate run cached.
func (m *Modelship) gateInputs() *dagger.Directory {
	return m.Source.Filter(dagger.DirectoryFilterOpts{Include: []string{project.FileName, m.Fixture, m.Baseline}})
}

// toolSource is modelship's own source, whichever project the module runs for: the CLI, the
// server, the gate and serving/Dockerfile come from here, never from the project, so a
// repository that installs the module needs no Go and none of modelship's files. Only what the
// tools are built from: the root's tests and test harness stay out, so editing them rebuilds
// nothing.
func (m *Modelship) toolSource() *dagger.Directory {
	return m.Toolchain.Filter(dagger.DirectoryFilterOpts{
		Include: []string{"go.mod", "go.sum", "cmd/modelship/", "internal/", "serving/", "tests/", "scripts/gate.sh", "scripts/tools.sh", pipeline.ReferenceModelFile},
		Exclude: []string{"internal/**/*_test.go", "serving/**/*_test.go", "cmd/**/*_test.go", "**/testdata/", "internal/testenv/"},
	})
}

// settings is what the project's modelship.json says, with its defaults filled in.
type settings struct {
	model    string
	serving  project.Serving
	fixture  string
	baseline string
	sample   int
	seed     bool
}

// readProject reads the project's modelship.json. A project without one must name its model
// with --model-name; it then gets the defaults (the builtin server, tests/fixtures/validation.json).
func readProject(ctx context.Context, src *dagger.Directory, modelName string) (settings, error) {
	var cfg *project.Config
	ok, err := src.Exists(ctx, project.FileName)
	if err != nil {
		return settings{}, fmt.Errorf("look for the project's %s: %w", project.FileName, err)
	}
	if ok {
		raw, err := src.File(project.FileName).Contents(ctx)
		if err != nil {
			return settings{}, fmt.Errorf("read the project's %s: %w", project.FileName, err)
		}
		if cfg, err = project.Parse([]byte(raw)); err != nil {
			return settings{}, fmt.Errorf("the project's %s: %w", project.FileName, err)
		}
	} else {
		if modelName == "" {
			return settings{}, fmt.Errorf("the project (--source) has no %s and no --model-name was given: "+
				"add %s naming the model (README: Ship your own model)", project.FileName, project.FileName)
		}
		cfg = &project.Config{Model: project.Model{Name: modelName}}
	}
	s := settings{model: or(modelName, cfg.Model.Name), serving: cfg.Server(),
		fixture: cfg.FixturesPath(), baseline: cfg.BaselinePath(), sample: cfg.SmokeSample()}
	// Only modelship's own project ships the reference model the embedded store starts with;
	// another project's model comes from its training job (push-model).
	if s.model == pipeline.ReferenceModelName {
		if s.seed, err = src.Exists(ctx, pipeline.ReferenceModelFile); err != nil {
			return settings{}, fmt.Errorf("look for %s: %w", pipeline.ReferenceModelFile, err)
		}
	}
	return s, nil
}

// PushModel pushes a model to the registry as <model>@<version>, tagged with the commit it was
// trained from: what a project's training job does, e.g. `dagger call -m github.com/modelship/modelship
// --source=. push-model --file=model.onnx --version=1.1.0 --git-sha=$(git rev-parse HEAD)`.
// Pushing the same bytes again is a no-op; other bytes under a pushed version are refused.
//
// +cache="never"
func (m *Modelship) PushModel(
	ctx context.Context,
	// The ONNX model.
	file *dagger.File,
	// Version to push it as, e.g. 1.1.0.
	version string,
	// The commit the model was trained from: build-image and ship find it by this SHA.
	gitSha string,
) (string, error) {
	out, err := fresh(m.registryCli()).
		WithFile("/push/model.onnx", file).
		WithExec([]string{"modelship", "model", "push", "/push/model.onnx", "--name", m.ModelName, "--version", version, "--git-sha", gitSha}).
		Stdout(ctx)
	if err != nil {
		return "", failed(fmt.Sprintf("push %s@%s", m.ModelName, version), err)
	}
	return out, nil
}

// PromoteBaseline gates a candidate and, when it passes, returns the project's baseline with the
// candidate recorded as its production model: what later candidates are diffed and held against.
// `dagger call --source=. promote-baseline --git-sha=$SHA --by="$USER" export --path=model_baseline.json`,
// then commit the file. A failed gate promotes nothing.
func (m *Modelship) PromoteBaseline(
	ctx context.Context,
	// Who promotes; recorded in the baseline.
	by string,
	// Model version to gate and promote (default: the one pushed from --git-sha, else the pinned one).
	//
	// +optional
	modelVersion string,
	// Promote the model of this commit.
	//
	// +optional
	gitSha string,
) (*dagger.File, error) {
	reports, err := m.passedGate(ctx, modelVersion, gitSha)
	if err != nil {
		return nil, err
	}
	baseline := projectDir + "/" + m.Baseline
	promoted := m.tooled().
		WithDirectory(projectDir, m.gateInputs()).
		WithDirectory(reportsDir, reports).
		WithExec([]string{"modelship", "baseline", "promote", "--report", reportsDir + "/quality-report.json", "--baseline", baseline, "--by", by})
	if _, err := promoted.Sync(ctx); err != nil {
		return nil, failed("promote the candidate into "+m.Baseline, err)
	}
	return promoted.File(baseline), nil
}
