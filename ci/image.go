package main

import (
	"context"
	"fmt"
	"time"

	"github.com/modelship/modelship/ci/internal/dagger"
	"github.com/modelship/modelship/internal/ml/dataset"
	"github.com/modelship/modelship/internal/pipeline"
	"github.com/modelship/modelship/internal/project"
)

// embeddedReg is where builds push with no --registry: a registry service bound as
// "localhost", since the engine speaks plain HTTP only to a registry on localhost.
const embeddedReg = "localhost:5000"

// Stage is what a pipeline stage produced: its result and its evidence.json.
type Stage struct {
	// The stage's result: the pushed image reference, or what deploy or rollback printed.
	Output string
	// The stage's evidence.json: versions, inputs, outputs, timings, outcome; secrets redacted.
	Evidence *dagger.File
	// +private
	Image *dagger.Container
	// +private
	TrivyImage string
}

// Sbom is the CycloneDX SBOM of the image build-image built (trivy image --input on the
// exported image); built only when asked for.
func (s *Stage) Sbom() (*dagger.File, error) {
	if s.Image == nil {
		return nil, fmt.Errorf("this stage built no image; the SBOM belongs to build-image")
	}
	return sbomOf(s.TrivyImage, s.Image), nil
}

// registryRef is where an image of gitSha is pushed, and the registry service when embedded.
func (m *Modelship) registryRef(gitSha string) (string, *dagger.Service, error) {
	host := m.Registry
	var svc *dagger.Service
	if host == "" {
		host = embeddedReg
		svc = dag.Container().From(m.RegistryImage).WithExposedPort(5000).AsService(dagger.ContainerAsServiceOpts{UseEntrypoint: true})
	}
	ref, err := pipeline.ImageRef(host, m.ImageRepository, gitSha)
	return ref, svc, err
}

// image builds the server image of the model for gitSha (or modelVersion).
func (m *Modelship) image(ctx context.Context, gitSha, modelVersion string) (*dagger.Container, resolution, error) {
	if err := pipeline.ValidateGitSHA(gitSha); err != nil {
		return nil, resolution{}, err
	}
	model, res, err := m.pullModel(ctx, modelVersion, gitSha)
	if err != nil {
		return nil, res, err
	}
	img, err := m.serverImage(ctx, model, res, gitSha)
	return img, res, err
}

// candidateFile is where the model goes in the build context; the Dockerfile gets it as MODEL_FILE.
const candidateFile = "modelship/candidate.onnx"

// serverImage builds the server image with the model placed in the build context and the
// project's smoke inference in its label: modelship's serving/Dockerfile, or the project's own
// (modelship.json serving.server "dockerfile"), given the same build arguments.
func (m *Modelship) serverImage(ctx context.Context, model *dagger.File, res resolution, revision string) (*dagger.Container, error) {
	smoke, err := m.smokeLabel(ctx)
	if err != nil {
		return nil, err
	}
	buildDir, dockerfile := m.buildContext(), "serving/Dockerfile"
	if m.Server == project.ServerDockerfile {
		buildDir, dockerfile = m.Source.Directory(m.BuildDir), m.Dockerfile
	}
	return buildDir.
		WithFile(candidateFile, model).
		DockerBuild(dagger.DirectoryDockerBuildOpts{
			Dockerfile: dockerfile,
			BuildArgs: []dagger.BuildArg{
				{Name: "GO_IMAGE", Value: m.GoImage},
				{Name: "RUNTIME_IMAGE", Value: m.RuntimeImage},
				{Name: "MODEL_FILE", Value: candidateFile},
				{Name: "MODEL_NAME", Value: m.ModelName},
				{Name: "MODEL_VERSION", Value: res.Manifest.Version},
				{Name: "REVISION", Value: revision},
				{Name: "SMOKE", Value: smoke},
			},
		}), nil
}

// service runs a pulled model's server image as a service on the project's port.
func (m *Modelship) service(ctx context.Context, model *dagger.File, res resolution) (*dagger.Service, error) {
	img, err := m.serverImage(ctx, model, res, res.Manifest.GitSHA)
	if err != nil {
		return nil, err
	}
	return img.WithExposedPort(m.Port).AsService(dagger.ContainerAsServiceOpts{UseEntrypoint: true}), nil
}

// buildContext is what serving/Dockerfile copies, of the module's own source, as .dockerignore
// says, and nothing more: the engine checksums every file of a build's context on each change
// to it, and the tests and their corpora are most of the files.
func (m *Modelship) buildContext() *dagger.Directory {
	return m.toolSource().Filter(dagger.DirectoryFilterOpts{
		Include: []string{"go.mod", "go.sum", "internal/", "serving/"},
		Exclude: []string{"**/*_test.go", "**/testdata/"},
	})
}

// smokeLabel is the image's smoke inference label (pipeline.LabelSmoke): the fixture sample
// modelship.json names (smoke.sample, default the first), so deploy and rollback run one that
// fits the model wherever they run from. A project without its fixture builds images without
// one; its deploys then need --smoke-fixture.
func (m *Modelship) smokeLabel(ctx context.Context) (string, error) {
	if ok, err := m.Source.Exists(ctx, m.Fixture); err != nil || !ok {
		return "", err
	}
	raw, err := m.Source.File(m.Fixture).Contents(ctx)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", m.Fixture, err)
	}
	fx, err := dataset.ParseFixture([]byte(raw))
	if err != nil {
		return "", fmt.Errorf("%s: %w", m.Fixture, err)
	}
	if m.SmokeSample >= len(fx.Samples) {
		return "", fmt.Errorf("modelship.json smoke.sample is %d; %s has %d samples (0..%d)", m.SmokeSample, m.Fixture, len(fx.Samples), len(fx.Samples)-1)
	}
	s := fx.Samples[m.SmokeSample]
	return pipeline.EncodeSmokeLabel(pipeline.SampleSmoke(s.Features, s.Label))
}

// BuildImage is the build-image stage: fetches the model artifact for the commit (or version)
// from the registry, builds serving/Dockerfile with it, and pushes <registry>/<repository>:<git-sha>.
// Its output is the pushed reference with its digest: `dagger call build-image --git-sha $SHA output`;
// `... evidence export --path evidence.json` keeps the evidence, `... sbom export --path sbom.cdx.json` the SBOM.
func (m *Modelship) BuildImage(
	ctx context.Context,
	// Commit being built; the image tag (full SHA, never a moving tag).
	gitSha string,
	// Model version to bake in (default: the one pushed from --git-sha, else the one modelship.json pins).
	//
	// +optional
	modelVersion string,
) (*Stage, error) {
	started := time.Now()
	img, res, err := m.image(ctx, gitSha, modelVersion)
	if err != nil {
		return nil, err
	}
	ref, svc, err := m.registryRef(gitSha)
	if err != nil {
		return nil, err
	}
	if m.RegistryPassword != nil {
		img = img.WithRegistryAuth(m.Registry, m.RegistryUsername, m.RegistryPassword)
	}
	digest, err := img.Publish(ctx, ref, dagger.ContainerPublishOpts{RegistryService: svc})
	if err != nil {
		return nil, fmt.Errorf("push %s: %w", ref, err)
	}
	goBase, err := dag.Container().From(m.GoImage).ImageRef(ctx)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", m.GoImage, err)
	}
	runtimeBase, err := dag.Container().From(m.RuntimeImage).ImageRef(ctx)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", m.RuntimeImage, err)
	}
	evidence := m.Cli().
		WithEnvVariable("MODELSHIP_COMMIT", gitSha).
		WithExec([]string{"modelship", "evidence", "--stage", "build-image",
			"--model-name", m.ModelName, "--model-version", res.Manifest.Version, "--model-sha256", res.Manifest.SHA256,
			"--input", "git_sha=" + gitSha, "--input", "model_sha256=" + res.Manifest.SHA256, "--input", "model_resolved_by=" + res.ResolvedBy,
			"--input", "go_image=" + goBase, "--input", "runtime_image=" + runtimeBase,
			"--config", "registry=" + ref, "--config", "config_source=dagger call arguments",
			"--output", "image=" + digest, "--output", "duration=" + time.Since(started).Round(time.Millisecond).String(),
			"--out", evidenceDir + "/evidence.json"}).
		File(evidenceDir + "/evidence.json")
	return &Stage{Output: digest, Evidence: evidence, Image: img, TrivyImage: m.TrivyImage}, nil
}
