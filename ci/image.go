package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strings"
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
	// +private
	SignedProvenance *dagger.File
}

// Provenance is the SLSA v1 predicate build-image attested with with-signing --key, as
// `cosign attest --type slsaprovenance1 --predicate` takes it: for a keyless (OIDC) attestation
// of the same provenance in CI.
func (s *Stage) Provenance() (*dagger.File, error) {
	if s.SignedProvenance == nil {
		return nil, errors.New("no provenance: build-image attests it only when signing (with-signing --key)")
	}
	return s.SignedProvenance, nil
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
func (m *Modelship) image(ctx context.Context, gitSha, modelVersion string) (*dagger.Container, resolution, variant, error) {
	if err := pipeline.ValidateGitSHA(gitSha); err != nil {
		return nil, resolution{}, variant{}, err
	}
	model, res, err := m.pullModel(ctx, modelVersion, gitSha)
	if err != nil {
		return nil, res, variant{}, err
	}
	img, v, err := m.serverImage(ctx, model, res, gitSha)
	return img, res, v, err
}

// candidateFile is where the model goes in the build context; the Dockerfile gets it as MODEL_FILE.
const candidateFile = "modelship/candidate.onnx"

// serverImage builds the server image with the model placed in the build context and the
// project's smoke inference in its label: modelship's serving/Dockerfile, or the project's own
// (modelship.json serving.server "dockerfile"), given the same build arguments.
func (m *Modelship) serverImage(ctx context.Context, model *dagger.File, res resolution, revision string) (*dagger.Container, variant, error) {
	smoke, err := m.smokeLabel(ctx)
	if err != nil {
		return nil, variant{}, err
	}
	v, err := m.variant(ctx, model)
	if err != nil {
		return nil, v, err
	}
	args := append([]dagger.BuildArg{
		{Name: "GO_IMAGE", Value: m.GoImage},
		{Name: "RUNTIME_IMAGE", Value: v.runtimeImage},
		{Name: "MODEL_FILE", Value: candidateFile},
		{Name: "MODEL_NAME", Value: m.ModelName},
		{Name: "MODEL_VERSION", Value: res.Manifest.Version},
		{Name: "REVISION", Value: revision},
		{Name: "SMOKE", Value: smoke},
	}, v.args...)
	v.buildArgs = args
	v.context = v.context.WithFile(candidateFile, model)
	return v.build(""), v, nil
}

// build builds the variant for platform ("" is the engine's own).
func (v variant) build(platform dagger.Platform) *dagger.Container {
	return v.context.DockerBuild(dagger.DirectoryDockerBuildOpts{Dockerfile: v.dockerfile, BuildArgs: v.buildArgs, Platform: platform})
}

// platformImages are the images build-image pushes as one index, one per platform: both of
// modelship's Dockerfiles cross-compile (the ONNX Runtime one with Debian's cross gcc); a
// project's own Dockerfile must too, or with-platforms names fewer.
func (m *Modelship) platformImages(native *dagger.Container, v variant) ([]*dagger.Container, []string) {
	if len(m.Platforms) == 0 {
		return []*dagger.Container{native}, nil
	}
	imgs := make([]*dagger.Container, len(m.Platforms))
	for i, p := range m.Platforms {
		imgs[i] = v.build(dagger.Platform(p))
	}
	return imgs, m.Platforms
}

// variant is which image a model gets: the project's own Dockerfile, modelship's static
// gonnx image, or modelship's ONNX Runtime image.
type variant struct {
	backend      string // "" for the project's own server
	context      *dagger.Directory
	dockerfile   string
	runtimeImage string
	args         []dagger.BuildArg // the variant's own build arguments
	buildArgs    []dagger.BuildArg // all of them, set by serverImage
}

// ortContextDir is where a library from the project goes in the build context; the one
// folder of it serving/onnxruntime.Dockerfile copies ORT_LIBRARY from.
const ortContextDir = "onnxruntime"

// variant picks the image for model: modelship.json's serving.backend, or with "auto" what
// `modelship model inspect` says the server would pick (gonnx when gonnx runs the model).
func (m *Modelship) variant(ctx context.Context, model *dagger.File) (variant, error) {
	if m.Server == project.ServerDockerfile {
		return variant{context: m.Source.Directory(m.BuildDir), dockerfile: m.Dockerfile, runtimeImage: m.RuntimeImage}, nil
	}
	backend := m.Backend
	if backend == "" || backend == project.BackendAuto {
		out, err := m.tooled().
			WithFile("/inspect/model.onnx", model).
			WithExec([]string{"modelship", "--json", "model", "inspect", "/inspect/model.onnx"}).
			Stdout(ctx)
		if err != nil {
			return variant{}, failed("inspect the model for its backend", err)
		}
		var info struct{ Backend string }
		if err := json.Unmarshal([]byte(out), &info); err != nil {
			return variant{}, fmt.Errorf("read model inspect's output: %w", err)
		}
		backend = info.Backend
	}
	if backend != project.BackendONNXRuntime {
		return variant{backend: project.BackendGonnx, context: m.buildContext(), dockerfile: "serving/Dockerfile", runtimeImage: m.RuntimeImage}, nil
	}
	v := variant{backend: backend, context: m.buildContext(), dockerfile: "serving/onnxruntime.Dockerfile", runtimeImage: m.OnnxruntimeImage}
	switch {
	case m.OrtLibrary != "":
		file := ortContextDir + "/" + path.Base(m.OrtLibrary)
		v.context = v.context.WithFile(file, m.Source.File(m.OrtLibrary))
		v.args = []dagger.BuildArg{{Name: "ORT_LIBRARY", Value: file}, {Name: "ORT_SHA256", Value: m.OrtSHA256}}
	case m.OrtURL != "":
		v.args = []dagger.BuildArg{{Name: "ORT_LIBRARY_URL", Value: m.OrtURL}, {Name: "ORT_SHA256", Value: m.OrtSHA256}}
	}
	return v, nil
}

// service runs a pulled model's server image as a service on the project's port.
func (m *Modelship) service(ctx context.Context, model *dagger.File, res resolution) (*dagger.Service, error) {
	img, _, err := m.serverImage(ctx, model, res, res.Manifest.GitSHA)
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
	img, res, v, err := m.image(ctx, gitSha, modelVersion)
	if err != nil {
		return nil, err
	}
	ref, svc, err := m.registryRef(gitSha)
	if err != nil {
		return nil, err
	}
	if m.SigningKey != nil {
		// Before the build and the push, not after: a registry the signer cannot reach fails now.
		if err := m.signerReaches(svc); err != nil {
			return nil, err
		}
	}
	imgs, platforms := m.platformImages(img, v)
	if m.RegistryPassword != nil {
		for i := range imgs {
			imgs[i] = imgs[i].WithRegistryAuth(m.Registry, m.RegistryUsername, m.RegistryPassword)
		}
	}
	digest, err := imgs[0].Publish(ctx, ref, dagger.ContainerPublishOpts{RegistryService: svc, PlatformVariants: imgs[1:]})
	if err != nil {
		return nil, fmt.Errorf("push %s: %w", ref, err)
	}
	pushed := strings.Join(platforms, ",")
	goBase, err := dag.Container().From(m.GoImage).ImageRef(ctx)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", m.GoImage, err)
	}
	runtimeBase, err := dag.Container().From(v.runtimeImage).ImageRef(ctx)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", v.runtimeImage, err)
	}
	signed := "no (give with-signing --key)"
	var provenance *dagger.File
	if m.SigningKey != nil {
		if provenance, err = m.sign(ctx, digest, svc, img, res, gitSha, started, platforms,
			[]string{"go=" + goBase, "runtime=" + runtimeBase}); err != nil {
			return nil, err
		}
		signed = "cosign signature, SLSA v1 provenance, CycloneDX SBOM"
	}
	evidence := m.Cli().
		WithEnvVariable("MODELSHIP_COMMIT", gitSha).
		WithExec([]string{"modelship", "evidence", "--stage", "build-image",
			"--model-name", m.ModelName, "--model-version", res.Manifest.Version, "--model-sha256", res.Manifest.SHA256,
			"--input", "git_sha=" + gitSha, "--input", "model_sha256=" + res.Manifest.SHA256, "--input", "model_resolved_by=" + res.ResolvedBy,
			"--input", "go_image=" + goBase, "--input", "runtime_image=" + runtimeBase, "--input", "backend=" + or(v.backend, "project dockerfile"), "--input", "platforms=" + pushed,
			"--config", "registry=" + ref, "--config", "config_source=dagger call arguments",
			"--output", "image=" + digest, "--output", "signed=" + signed, "--output", "duration=" + time.Since(started).Round(time.Millisecond).String(),
			"--out", evidenceDir + "/evidence.json"}).
		File(evidenceDir + "/evidence.json")
	return &Stage{Output: digest, Evidence: evidence, Image: img, TrivyImage: m.TrivyImage, SignedProvenance: provenance}, nil
}

// sign runs `modelship image sign` on the pushed digest: a cosign signature, and SLSA provenance
// and the SBOM as attestations, in the image's own repository; it returns the provenance's
// predicate. A registry on this machine's localhost, or the embedded one, is reached through a
// service binding.
func (m *Modelship) sign(ctx context.Context, digest string, embedded *dagger.Service, img *dagger.Container, res resolution,
	gitSha string, started time.Time, platforms, bases []string) (*dagger.File, error) {
	c, err := m.withImageRegistry(m.Cli(), embedded)
	if err != nil {
		return nil, err
	}
	const predicate = "/out/provenance.json"
	args := []string{"modelship", "image", "sign", "--image", digest, "--signing-key", "/run/secrets/cosign.key",
		"--git-sha", gitSha, "--model-name", m.ModelName, "--model-version", res.Manifest.Version, "--model-sha256", res.Manifest.SHA256,
		"--dockerfile", "serving/Dockerfile", "--sbom", "/sbom.cdx.json", "--started-on", started.UTC().Format(time.RFC3339),
		"--provenance-out", predicate}
	for _, b := range bases {
		args = append(args, "--base-image", b)
	}
	for _, p := range platforms {
		args = append(args, "--platform", p)
	}
	signed, err := c.WithMountedSecret("/run/secrets/cosign.key", m.SigningKey).
		WithSecretVariable("COSIGN_PASSWORD", m.SigningPassword).
		WithFile("/sbom.cdx.json", sbomOf(m.TrivyImage, img)).
		WithDirectory("/out", dag.Directory()).
		WithExec(args).Sync(ctx)
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", digest, err)
	}
	return signed.File(predicate), nil
}

// withImageRegistry lets c reach the image registry for signatures: the embedded one, or one
// tunnelled by with-registry --service, through a binding named modelshipRegistryHost
// (MODELSHIP_REGISTRY_VIA); any other at its address; with the registry's credentials when given.
func (m *Modelship) withImageRegistry(c *dagger.Container, embedded *dagger.Service) (*dagger.Container, error) {
	if err := m.signerReaches(embedded); err != nil {
		return nil, err
	}
	if m.RegistryPassword != nil {
		c = c.WithEnvVariable("MODELSHIP_REGISTRY_USERNAME", m.RegistryUsername).WithSecretVariable("MODELSHIP_REGISTRY_PASSWORD", m.RegistryPassword)
	}
	if embedded != nil {
		return c.WithServiceBinding(modelshipRegistryHost, embedded).WithEnvVariable("MODELSHIP_REGISTRY_VIA", modelshipRegistryHost+":5000"), nil
	}
	if m.RegistryService != nil {
		_, port, _ := strings.Cut(m.Registry, ":")
		if port == "" {
			port = "443"
		}
		return c.WithServiceBinding(modelshipRegistryHost, m.RegistryService).WithEnvVariable("MODELSHIP_REGISTRY_VIA", modelshipRegistryHost+":"+port), nil
	}
	return c, nil
}

// signerReaches refuses a registry the pipeline's containers, which sign and verify, cannot
// reach: one on this machine's localhost with no tunnel. The engine pushes there from its own
// network; the containers cannot.
func (m *Modelship) signerReaches(embedded *dagger.Service) error {
	if embedded != nil || m.RegistryService != nil {
		return nil
	}
	if name, _, _ := strings.Cut(m.Registry, ":"); name == "localhost" || name == "127.0.0.1" {
		return fmt.Errorf("with-signing: the pipeline's containers cannot reach the registry %s on this machine's localhost to sign or verify there; tunnel it with with-registry --service=tcp://%s, give an address they reach (a host name or IP), or use the embedded registry", m.Registry, m.Registry)
	}
	return nil
}

const modelshipRegistryHost = "modelship-registry"

// verifying gives deploy and promote the public key their image must verify with, and the
// registry to check it in; without with-signing --public-key the CLI decides (production
// refuses an unchecked image).
func (m *Modelship) verifying(c *dagger.Container, modelSHA256 string) (*dagger.Container, []string, error) {
	if m.PublicKey == nil {
		return c, nil, nil
	}
	c, err := m.withImageRegistry(c.WithFile("/run/modelship/cosign.pub", m.PublicKey), nil)
	if err != nil {
		return nil, nil, err
	}
	args := []string{"--public-key", "/run/modelship/cosign.pub"}
	if modelSHA256 != "" {
		args = append(args, "--model-sha256", modelSHA256)
	}
	return c, args, nil
}
