// Take an AI model from a commit to production, and back again when it goes wrong.
//
// The functions build the modelship CLI and model server from source in cached containers and
// run them; the CLI does the work (registry, quality gate, deploy state, deploy, rollback), so
// the same calls run on a laptop and in any CI. With no S3 endpoint given, a MinIO runs inside
// the session (state kept in a cache volume) seeded with the reference model; with no registry
// given, a registry service runs for the build, and deploys load the image into the engine.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/modelship/modelship/ci/internal/dagger"
	"github.com/modelship/modelship/internal/pipeline"
)

// Cache volume names are namespaced: volumes are shared by every module an engine runs.
const (
	cacheGoMod   = "github.com/modelship/modelship:go-mod"
	cacheGoBuild = "github.com/modelship/modelship:go-build"
	cacheModels  = "github.com/modelship/modelship:models"
	cacheMinio   = "github.com/modelship/modelship:minio-data"
	gotestsumPkg = "gotest.tools/gotestsum@v1.13.0"
	golangciPkg  = "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.15.0"
	govulnPkg    = "golang.org/x/vuln/cmd/govulncheck@v1.9.0"
	embeddedUser = "modelship"
	embeddedS3   = "http://minio:9000"
	embeddedReg  = "registry:5000"
	srcDir       = "/src"
	evidenceDir  = "/evidence"
	// engineVersion is dagger.json's engineVersion, the engine these functions are written for
	// and recorded in every stage's evidence (a test keeps the two equal).
	engineVersion = "v0.21.9"
	reportsDir    = "/reports"
	candidateHost = "candidate"
)

// Modelship is the pipeline's shared configuration.
type Modelship struct {
	// +private
	Source *dagger.Directory
	// +private
	StorageEndpoint string
	// +private
	StorageAccessKey *dagger.Secret
	// +private
	StorageSecretKey *dagger.Secret
	// +private
	StorageRegion string
	// +private
	ModelsBucket string
	// +private
	StateBucket string
	// +private
	Environment string
	// +private
	Registry string
	// +private
	RegistryUsername string
	// +private
	RegistryPassword *dagger.Secret
	// +private
	ImageRepository string
	// +private
	ModelName string
	// +private
	GoImage string
	// +private
	RuntimeImage string
	// +private
	MinioImage string
	// +private
	RegistryImage string
	// +private
	WebhookURL *dagger.Secret
	// +private
	TrivyImage string
}

func New(
	// The repository: sources, serving/Dockerfile, tests/fixtures and model_baseline.json.
	// +defaultPath="/"
	// +ignore=["**/.git", "ci", "docs", "reports", "test-results", "**/*.test"]
	source *dagger.Directory,
	// S3 endpoint of the model registry and deploy state, e.g. https://s3.eu-west-1.amazonaws.com
	// or http://minio.internal:9000. Empty: a MinIO inside the session, seeded with the reference model.
	// +optional
	storageEndpoint string,
	// S3 access key ID (AWS_ACCESS_KEY_ID).
	// +optional
	storageAccessKey *dagger.Secret,
	// S3 secret access key (AWS_SECRET_ACCESS_KEY).
	// +optional
	storageSecretKey *dagger.Secret,
	// S3 region.
	// +optional
	// +default="us-east-1"
	storageRegion string,
	// Bucket of the model registry.
	// +optional
	// +default="models"
	modelsBucket string,
	// Bucket of the deploy_state.json files.
	// +optional
	// +default="deploy-state"
	stateBucket string,
	// Environment deployed to and recorded in deploy_state.json.
	// +optional
	// +default="production"
	environment string,
	// Container registry images are pushed to, host[:port] (e.g. ghcr.io). Empty: a registry
	// service inside the session for builds; deploys then load the image into the engine.
	// +optional
	registry string,
	// Registry user name.
	// +optional
	registryUsername string,
	// Registry password or token.
	// +optional
	registryPassword *dagger.Secret,
	// Image repository under the registry; images are tagged <registry>/<repository>:<git-sha>.
	// +optional
	// +default="modelship/digits"
	imageRepository string,
	// Model name in the registry and in the server's API.
	// +optional
	// +default="digits"
	modelName string,
	// Go toolchain image that builds the CLI, the server and runs the gate (a mirror works).
	// +optional
	// +default="golang:1.26"
	goImage string,
	// Runtime base image of the model server image.
	// +optional
	// +default="gcr.io/distroless/static-debian12:nonroot"
	runtimeImage string,
	// MinIO image of the embedded S3 store.
	// +optional
	// +default="quay.io/minio/minio:RELEASE.2025-04-22T22-12-26Z"
	minioImage string,
	// Registry image of the embedded container registry.
	// +optional
	// +default="registry:3"
	registryImage string,
	// Slack- or Discord-compatible webhook told about deploys, rollbacks, failed verifications
	// and halts (MODELSHIP_WEBHOOK_URL).
	// +optional
	webhookUrl *dagger.Secret,
	// Trivy image of the scan check and the SBOM.
	// +optional
	// +default="aquasec/trivy:0.67.2"
	trivyImage string,
) (*Modelship, error) {
	if (storageAccessKey == nil) != (storageSecretKey == nil) {
		return nil, errors.New("give both --storage-access-key and --storage-secret-key, or neither")
	}
	if registry != "" && registryPassword != nil && registryUsername == "" {
		return nil, errors.New("--registry-password needs --registry-username")
	}
	return &Modelship{
		Source: source, StorageEndpoint: storageEndpoint, StorageAccessKey: storageAccessKey, StorageSecretKey: storageSecretKey, StorageRegion: storageRegion,
		ModelsBucket: modelsBucket, StateBucket: stateBucket, Environment: environment,
		Registry: registry, RegistryUsername: registryUsername, RegistryPassword: registryPassword,
		ImageRepository: imageRepository, ModelName: modelName, GoImage: goImage, RuntimeImage: runtimeImage,
		MinioImage: minioImage, RegistryImage: registryImage, WebhookURL: webhookUrl, TrivyImage: trivyImage,
	}, nil
}

// goEnv is the Go toolchain with the source and shared module and build caches.
func (m *Modelship) goEnv() *dagger.Container {
	return dag.Container().
		From(m.GoImage).
		WithMountedCache("/go/pkg/mod", dag.CacheVolume(cacheGoMod)).
		WithMountedCache("/root/.cache/go-build", dag.CacheVolume(cacheGoBuild)).
		WithEnvVariable("CGO_ENABLED", "0").
		WithEnvVariable("GOFLAGS", "-trimpath").
		WithDirectory(srcDir, m.Source).
		WithWorkdir(srcDir)
}

// Tools builds the modelship CLI, the model server and gotestsum from source.
func (m *Modelship) Tools() *dagger.Directory {
	return m.goEnv().
		WithEnvVariable("GOBIN", "/out").
		WithExec([]string{"go", "build", "-o", "/out/", "./cmd/modelship", "./serving/cmd/model-server"}).
		WithExec([]string{"go", "install", gotestsumPkg}).
		Directory("/out")
}

// storage is where the registry and the state live, and the service to bind when embedded.
func (m *Modelship) storage() (endpoint string, svc *dagger.Service, access, secret *dagger.Secret) {
	if m.StorageEndpoint != "" {
		return m.StorageEndpoint, nil, m.StorageAccessKey, m.StorageSecretKey
	}
	// An ephemeral store on the engine: its fixed credentials guard nothing outside the session.
	password := dag.SetSecret("modelship-embedded-minio-password", "modelship-embedded-minio")
	user := dag.SetSecret("modelship-embedded-minio-user", embeddedUser)
	svc = dag.Container().
		From(m.MinioImage).
		WithMountedCache("/data", dag.CacheVolume(cacheMinio)).
		WithEnvVariable("MINIO_ROOT_USER", embeddedUser).
		WithSecretVariable("MINIO_ROOT_PASSWORD", password).
		WithEnvVariable("MINIO_BROWSER", "off").
		WithExposedPort(9000).
		AsService(dagger.ContainerAsServiceOpts{Args: []string{"minio", "server", "/data", "--address", ":9000"}})
	return embeddedS3, svc, user, password
}

// Cli is a container with the modelship CLI set up for this pipeline's storage and caches,
// e.g. `dagger call cli terminal`, or `dagger call cli with-exec --args modelship,model,ls,--name,digits stdout`.
func (m *Modelship) Cli() *dagger.Container {
	endpoint, svc, access, secret := m.storage()
	c := m.goEnv().
		WithDirectory("/usr/local/bin", m.Tools()).
		WithMountedCache("/var/cache/modelship", dag.CacheVolume(cacheModels)).
		WithEnvVariable("MODELSHIP_CACHE_DIR", "/var/cache/modelship").
		WithEnvVariable("AWS_ENDPOINT_URL_S3", endpoint).
		WithEnvVariable("AWS_REGION", m.StorageRegion).
		WithEnvVariable("MODELSHIP_MODELS_BUCKET", m.ModelsBucket).
		WithEnvVariable("MODELSHIP_STATE_BUCKET", m.StateBucket).
		WithEnvVariable("MODELSHIP_ENVIRONMENT", m.Environment).
		WithEnvVariable("MODELSHIP_MODEL_NAME", m.ModelName).
		WithEnvVariable("MODELSHIP_DAGGER_ENGINE_VERSION", engineVersion).
		WithEnvVariable("MODELSHIP_EVIDENCE_DIR", evidenceDir)
	if access != nil {
		c = c.WithSecretVariable("AWS_ACCESS_KEY_ID", access).WithSecretVariable("AWS_SECRET_ACCESS_KEY", secret)
	}
	if m.WebhookURL != nil {
		c = c.WithSecretVariable("MODELSHIP_WEBHOOK_URL", m.WebhookURL)
	}
	if svc != nil {
		// The embedded store starts empty: give it the reference model (a no-op once there).
		c = c.WithServiceBinding("minio", svc).
			WithExec([]string{"modelship", "model", "push", pipeline.ReferenceModelFile, "--name", m.ModelName,
				"--version", pipeline.ReferenceModelVersion, "--git-sha", pipeline.ReferenceGitSHA})
	}
	return c
}

// Stage is what a pipeline stage produced: its result and its evidence.json.
type Stage struct {
	// The stage's result: the pushed image reference, or what deploy or rollback printed.
	Output string
	// The stage's evidence.json: versions, inputs, outputs, timings, outcome; secrets redacted.
	Evidence *dagger.File
	// build-image only: the CycloneDX SBOM of the image (built when asked for).
	Sbom *dagger.File
}

// manifest is the part of `modelship model pull --json` the pipeline reads.
type manifest struct {
	Manifest struct {
		Version string `json:"version"`
		GitSHA  string `json:"git_sha"`
		SHA256  string `json:"sha256"`
	}
}

// pullModel fetches the model version (or the newest pushed from gitSha, or the latest).
func (m *Modelship) pullModel(ctx context.Context, modelVersion, gitSha string) (*dagger.File, manifest, error) {
	args := []string{"modelship", "--json", "model", "pull", "--name", m.ModelName, "-o", "/model/model.onnx"}
	switch {
	case modelVersion != "":
		args = append(args, "--version", modelVersion)
	case gitSha != "":
		args = append(args, "--git-sha", gitSha)
	}
	c := m.Cli()
	if modelVersion == "" && gitSha == "" {
		// "latest" moves: resolve it afresh rather than reuse a cached pull of another day.
		c = c.WithEnvVariable("MODELSHIP_RESOLVED_AT", time.Now().UTC().Format(time.RFC3339Nano))
	}
	pulled := c.WithExec(args)
	var man manifest
	out, err := pulled.Stdout(ctx)
	if err != nil {
		return nil, man, fmt.Errorf("pull model %s from the registry: %w", m.ModelName, err)
	}
	if err := json.Unmarshal([]byte(out), &man); err != nil {
		return nil, man, fmt.Errorf("read the pulled model's manifest: %w", err)
	}
	return pulled.File("/model/model.onnx"), man, nil
}

// serverImage builds serving/Dockerfile with the model placed in the build context.
func (m *Modelship) serverImage(model *dagger.File, man manifest, revision string) *dagger.Container {
	return m.Source.
		WithFile("models/candidate.onnx", model).
		DockerBuild(dagger.DirectoryDockerBuildOpts{
			Dockerfile: "serving/Dockerfile",
			BuildArgs: []dagger.BuildArg{
				{Name: "GO_IMAGE", Value: m.GoImage},
				{Name: "RUNTIME_IMAGE", Value: m.RuntimeImage},
				{Name: "MODEL_FILE", Value: "models/candidate.onnx"},
				{Name: "MODEL_NAME", Value: m.ModelName},
				{Name: "MODEL_VERSION", Value: man.Manifest.Version},
				{Name: "REVISION", Value: revision},
			},
		})
}

// Serve runs a model version's server image as a service: `dagger call serve up --ports 8000:8000`.
func (m *Modelship) Serve(
	ctx context.Context,
	// Model version to serve (default: the newest, or the one pushed from --git-sha).
	// +optional
	modelVersion string,
	// Serve the newest version pushed from this commit.
	// +optional
	gitSha string,
) (*dagger.Service, error) {
	model, man, err := m.pullModel(ctx, modelVersion, gitSha)
	if err != nil {
		return nil, err
	}
	return m.service(model, man), nil
}

// service runs a pulled model's server image as a service on port 8000.
func (m *Modelship) service(model *dagger.File, man manifest) *dagger.Service {
	return m.serverImage(model, man, man.Manifest.GitSHA).
		WithExposedPort(8000).
		AsService(dagger.ContainerAsServiceOpts{UseEntrypoint: true})
}

// gate runs the quality gate against the candidate served from its image, and returns the
// reports and the gate's exit code. The reports are there whatever the verdict.
func (m *Modelship) gate(ctx context.Context, modelVersion, gitSha string) (*dagger.Directory, int, error) {
	// One pull: the version reported is the version served, even when "latest" moves.
	model, man, err := m.pullModel(ctx, modelVersion, gitSha)
	if err != nil {
		return nil, 0, err
	}
	run := m.Cli().
		WithServiceBinding(candidateHost, m.service(model, man)).
		WithEnvVariable("MODELSHIP_SERVER_URL", "http://"+candidateHost+":8000").
		WithEnvVariable("MODELSHIP_MODEL_VERSION", man.Manifest.Version).
		WithEnvVariable("MODELSHIP_REPORT_DIR", reportsDir).
		WithExec([]string{"bash", "scripts/gate.sh"}, dagger.ContainerWithExecOpts{Expect: dagger.ReturnTypeAny})
	code, err := run.ExitCode(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("run the quality gate: %w", err)
	}
	return run.Directory(reportsDir), code, nil
}

// QualityReports runs the quality gate on a candidate and returns its reports, pass or fail:
// test-results.xml (JUnit), quality-report.json, quality-report.md and the charts.
// `dagger call quality-reports --git-sha $SHA export --path reports`
func (m *Modelship) QualityReports(
	ctx context.Context,
	// Model version to gate (default: the newest, or the one pushed from --git-sha).
	// +optional
	modelVersion string,
	// Gate the newest version pushed from this commit.
	// +optional
	gitSha string,
) (*dagger.Directory, error) {
	reports, _, err := m.gate(ctx, modelVersion, gitSha)
	return reports, err
}

// TestQuality is the test-quality stage: the candidate from the registry must reach the floors
// in model_baseline.json (accuracy >= 0.85, p95 latency < 200 ms, ...). Returns the reports;
// fails, naming every missed floor, when the gate fails. The reports of a failed run come from
// quality-reports (the same run, cached).
// +check
func (m *Modelship) TestQuality(
	ctx context.Context,
	// Model version to gate (default: the newest, or the one pushed from --git-sha).
	// +optional
	modelVersion string,
	// Gate the newest version pushed from this commit.
	// +optional
	gitSha string,
) (*dagger.Directory, error) {
	reports, code, err := m.gate(ctx, modelVersion, gitSha)
	if err != nil {
		return nil, err
	}
	if code != 0 {
		summary, _ := reports.File("quality-report.md").Contents(ctx)
		return nil, fmt.Errorf("quality gate failed (exit %d); export the reports with quality-reports:\n%s", code, summary)
	}
	return reports, nil
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

// image builds the server image of the model pushed from gitSha (or modelVersion).
func (m *Modelship) image(ctx context.Context, gitSha, modelVersion string) (*dagger.Container, manifest, error) {
	if err := pipeline.ValidateGitSHA(gitSha); err != nil {
		return nil, manifest{}, err
	}
	model, man, err := m.pullModel(ctx, modelVersion, gitSha)
	if err != nil {
		return nil, man, err
	}
	return m.serverImage(model, man, gitSha), man, nil
}

// BuildImage is the build-image stage: fetches the model artifact for the commit (or version)
// from the registry, builds serving/Dockerfile with it, and pushes <registry>/<repository>:<git-sha>.
// Its output is the pushed reference with its digest: `dagger call build-image --git-sha $SHA output`;
// `... evidence export --path evidence.json` keeps the evidence.
func (m *Modelship) BuildImage(
	ctx context.Context,
	// Commit being built; the image tag (full SHA, never a moving tag).
	gitSha string,
	// Model version to bake in (default: the newest pushed from --git-sha).
	// +optional
	modelVersion string,
) (*Stage, error) {
	started := time.Now()
	img, man, err := m.image(ctx, gitSha, modelVersion)
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
	goBase, _ := dag.Container().From(m.GoImage).ImageRef(ctx)
	runtimeBase, _ := dag.Container().From(m.RuntimeImage).ImageRef(ctx)
	evidence := m.Cli().
		WithEnvVariable("MODELSHIP_COMMIT", gitSha).
		WithExec([]string{"modelship", "evidence", "--stage", "build-image",
			"--model-name", m.ModelName, "--model-version", man.Manifest.Version, "--model-sha256", man.Manifest.SHA256,
			"--input", "git_sha=" + gitSha, "--input", "model_sha256=" + man.Manifest.SHA256,
			"--input", "go_image=" + goBase, "--input", "runtime_image=" + runtimeBase,
			"--config", "registry=" + ref, "--config", "config_source=dagger call arguments",
			"--output", "image=" + digest, "--output", "duration=" + time.Since(started).Round(time.Millisecond).String(),
			"--out", evidenceDir + "/evidence.json"}).
		File(evidenceDir + "/evidence.json")
	return &Stage{Output: digest, Evidence: evidence, Sbom: m.sbomOf(img)}, nil
}

// target says where deploys and rollbacks go: a Docker engine, or a Kubernetes cluster.
type target struct {
	dockerSocket *dagger.Socket
	dockerHost   string
	kubeconfig   *dagger.Secret
	namespace    string
}

// deployer is the CLI container wired to the target: a Docker engine by socket or tcp:// host,
// or a cluster by kubeconfig (mounted as a secret file).
func (m *Modelship) deployer(t target) (*dagger.Container, error) {
	c := m.Cli().WithEnvVariable("MODELSHIP_CHECK_HOST", "container")
	dockerSocket, dockerHost := t.dockerSocket, t.dockerHost
	switch {
	case t.kubeconfig != nil && (dockerSocket != nil || dockerHost != ""):
		return nil, errors.New("give a Docker engine (--docker-socket, --docker-host) or a cluster (--kubeconfig), not both")
	case t.kubeconfig != nil:
		return c.WithMountedSecret("/run/secrets/kubeconfig", t.kubeconfig).
			WithEnvVariable("MODELSHIP_TARGET", "kubernetes").
			WithEnvVariable("KUBECONFIG", "/run/secrets/kubeconfig").
			WithEnvVariable("MODELSHIP_NAMESPACE", t.namespace).
			WithEnvVariable("MODELSHIP_K8S_NAME", m.ModelName), nil
	case dockerSocket != nil && dockerHost != "":
		return nil, errors.New("give --docker-socket or --docker-host, not both")
	case dockerSocket != nil:
		return c.WithUnixSocket("/var/run/docker.sock", dockerSocket).WithEnvVariable("DOCKER_HOST", "unix:///var/run/docker.sock"), nil
	case strings.HasPrefix(dockerHost, "tcp://"):
		return c.WithEnvVariable("DOCKER_HOST", dockerHost), nil
	default:
		return nil, fmt.Errorf("a target is needed: --docker-socket /var/run/docker.sock, --docker-host tcp://HOST:2375 or --kubeconfig (got %q)", dockerHost)
	}
}

// Deploy is the deploy stage (main only): rolls the commit's image out to a Docker engine,
// verifies readiness and a smoke inference, and records it in deploy_state.json.
// +cache="never"
func (m *Modelship) Deploy(
	ctx context.Context,
	// Commit being deployed.
	gitSha string,
	// Branch of this run; anything but main is refused.
	branch string,
	// Docker engine socket, e.g. /var/run/docker.sock.
	// +optional
	dockerSocket *dagger.Socket,
	// Docker engine address, tcp://HOST:PORT.
	// +optional
	dockerHost string,
	// Kubeconfig of a cluster to deploy to blue-green instead of a Docker engine.
	// +optional
	kubeconfig *dagger.Secret,
	// Kubernetes namespace.
	// +optional
	// +default="default"
	namespace string,
	// Address the live server is published on, on the Docker host.
	// +optional
	// +default="0.0.0.0:8000"
	publish string,
	// Model version in the image (default: the newest pushed from --git-sha).
	// +optional
	modelVersion string,
) (*Stage, error) {
	if branch != pipeline.DeployBranch {
		return nil, fmt.Errorf("deploys run only for %s; this run is on %q", pipeline.DeployBranch, branch)
	}
	t := target{dockerSocket: dockerSocket, dockerHost: dockerHost, kubeconfig: kubeconfig, namespace: namespace}
	c, err := m.deployer(t)
	if err != nil {
		return nil, err
	}
	img, man, err := m.image(ctx, gitSha, modelVersion)
	if err != nil {
		return nil, err
	}
	args := []string{"modelship", "deploy", "--branch", branch, "--git-sha", gitSha, "--model-version", man.Manifest.Version, "--publish", publish}
	if m.Registry == "" && kubeconfig != nil {
		return nil, errors.New("a cluster pulls images from a registry: give --registry to deploy to Kubernetes")
	}
	if m.Registry == "" {
		// No registry the engine can reach: hand it the image as a tarball.
		local := "modelship.local/" + m.ImageRepository + ":" + gitSha
		c = c.WithFile("/image.tar", img.AsTarball(dagger.ContainerAsTarballOpts{MediaTypes: dagger.ImageMediaTypesDocker}))
		args = append(args, "--image", local, "--image-archive", "/image.tar")
	} else {
		built, err := m.BuildImage(ctx, gitSha, man.Manifest.Version)
		if err != nil {
			return nil, err
		}
		args = append(args, "--image", built.Output)
	}
	return m.runStage(ctx, c.WithEnvVariable("MODELSHIP_COMMIT", gitSha), args)
}

// runStage runs a CLI stage that writes its own evidence, and returns what it printed with it.
func (m *Modelship) runStage(ctx context.Context, c *dagger.Container, args []string) (*Stage, error) {
	ran := c.WithExec(args)
	out, err := ran.Stdout(ctx)
	if err != nil {
		return nil, err
	}
	return &Stage{Output: out, Evidence: ran.File(evidenceDir + "/evidence.json")}, nil
}

// Rollback puts the last good deployment back from deploy_state.json, within the rollback
// budget: the third rollback within an hour halts the environment until `state resume`.
// +cache="never"
func (m *Modelship) Rollback(
	ctx context.Context,
	// Why; recorded in deploy_state.json and sent to the webhook.
	reason string,
	// current restores what the state records as live (after a failed gate or rollout);
	// previous goes back past it.
	// +optional
	// +default="current"
	to string,
	// Docker engine socket, e.g. /var/run/docker.sock.
	// +optional
	dockerSocket *dagger.Socket,
	// Docker engine address, tcp://HOST:PORT.
	// +optional
	dockerHost string,
	// Kubeconfig of a cluster to deploy to blue-green instead of a Docker engine.
	// +optional
	kubeconfig *dagger.Secret,
	// Kubernetes namespace.
	// +optional
	// +default="default"
	namespace string,
	// Address the live server is published on, on the Docker host.
	// +optional
	// +default="0.0.0.0:8000"
	publish string,
) (*Stage, error) {
	c, err := m.deployer(target{dockerSocket: dockerSocket, dockerHost: dockerHost, kubeconfig: kubeconfig, namespace: namespace})
	if err != nil {
		return nil, err
	}
	return m.runStage(ctx, c, []string{"modelship", "rollback", "--reason", reason, "--to", to, "--publish", publish})
}

// EvaluateProduction runs the quality gate against the model deploy_state.json records as live,
// deploying nothing, and returns the reports whatever the verdict (for the scheduled evaluation:
// a slow regression shows without a commit). quality-report.json says "passed".
// +cache="never"
func (m *Modelship) EvaluateProduction(ctx context.Context) (*dagger.Directory, error) {
	out, err := m.Cli().
		WithEnvVariable("MODELSHIP_STATE_READ_AT", time.Now().UTC().Format(time.RFC3339Nano)).
		WithExec([]string{"modelship", "--json", "state", "show"}).
		Stdout(ctx)
	if err != nil {
		return nil, fmt.Errorf("read deploy_state.json of %s: %w", m.Environment, err)
	}
	var st struct {
		Current *struct {
			ModelVersion string `json:"model_version"`
		} `json:"current"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return nil, fmt.Errorf("read deploy_state.json of %s: %w", m.Environment, err)
	}
	if st.Current == nil {
		return nil, fmt.Errorf("nothing is deployed in %s: deploy_state.json has no current deployment", m.Environment)
	}
	return m.QualityReports(ctx, st.Current.ModelVersion, "")
}

// State prints the environment's deploy_state.json, validated.
// +cache="never"
func (m *Modelship) State(ctx context.Context) (string, error) {
	return m.Cli().WithExec([]string{"modelship", "state", "show"}).Stdout(ctx)
}

// Pipeline is the whole run: the quality gate; on failure a rollback (on main) and fail; else
// build the image, and on main deploy and verify it, rolling back and failing if it is unhealthy.
// +cache="never"
func (m *Modelship) Pipeline(
	ctx context.Context,
	// Commit being shipped.
	gitSha string,
	// Branch of this run; only main deploys.
	// +optional
	// +default="main"
	branch string,
	// Model version (default: the newest pushed from --git-sha, else the newest).
	// +optional
	modelVersion string,
	// Docker engine socket, e.g. /var/run/docker.sock.
	// +optional
	dockerSocket *dagger.Socket,
	// Docker engine address, tcp://HOST:PORT.
	// +optional
	dockerHost string,
	// Kubeconfig of a cluster to deploy to blue-green instead of a Docker engine.
	// +optional
	kubeconfig *dagger.Secret,
	// Kubernetes namespace.
	// +optional
	// +default="default"
	namespace string,
	// Address the live server is published on, on the Docker host.
	// +optional
	// +default="0.0.0.0:8000"
	publish string,
) (string, error) {
	if err := pipeline.ValidateGitSHA(gitSha); err != nil {
		return "", err
	}
	var log strings.Builder
	if _, err := m.TestQuality(ctx, modelVersion, gitSha); err != nil {
		fmt.Fprintf(&log, "test-quality: FAILED\n%v\n", err)
		if branch == pipeline.DeployBranch {
			rb, rerr := m.Rollback(ctx, "quality gate failed for "+gitSha, "current", dockerSocket, dockerHost, kubeconfig, namespace, publish)
			fmt.Fprintf(&log, "rollback: %s %v\n", output(rb), rerr)
		}
		return "", errors.New(log.String())
	}
	log.WriteString("test-quality: passed\n")
	if branch != pipeline.DeployBranch {
		built, err := m.BuildImage(ctx, gitSha, modelVersion)
		if err != nil {
			return "", fmt.Errorf("%sbuild-image: %w", log.String(), err)
		}
		fmt.Fprintf(&log, "build-image: %s\ndeploy: skipped (branch %s; only %s deploys)\n", built.Output, branch, pipeline.DeployBranch)
		return log.String(), nil
	}
	out, err := m.Deploy(ctx, gitSha, branch, dockerSocket, dockerHost, kubeconfig, namespace, publish, modelVersion)
	if err != nil {
		fmt.Fprintf(&log, "deploy: FAILED: %v\n", err)
		rb, rerr := m.Rollback(ctx, "deploy of "+gitSha+" failed verification", "current", dockerSocket, dockerHost, kubeconfig, namespace, publish)
		fmt.Fprintf(&log, "rollback: %s %v\n", output(rb), rerr)
		return "", errors.New(log.String())
	}
	fmt.Fprintf(&log, "deploy: %s", out.Output)
	return log.String(), nil
}

func output(s *Stage) string {
	if s == nil {
		return ""
	}
	return s.Output
}

// Lint runs golangci-lint v2 with the committed .golangci.yml (vet, staticcheck, errcheck,
// gofmt, goimports and more) over the root module.
// +check
func (m *Modelship) Lint(ctx context.Context) (string, error) {
	return m.goEnv().
		WithExec([]string{"go", "install", golangciPkg}).
		WithExec([]string{"golangci-lint", "run", "./..."}).
		Stdout(ctx)
}

// UnitTest runs the root module's tests that need no servers (tests that need MinIO, a
// registry, Docker or a control plane skip and say so) and returns the JUnit file; fails when
// a test fails.
// +check
func (m *Modelship) UnitTest(ctx context.Context) (*dagger.File, error) {
	run := m.goEnv().
		WithDirectory("/usr/local/bin", m.Tools()).
		WithExec([]string{"gotestsum", "--junitfile", reportsDir + "/unit-tests.xml", "--", "-count=1", "./..."},
			dagger.ContainerWithExecOpts{Expect: dagger.ReturnTypeAny})
	code, err := run.ExitCode(ctx)
	if err != nil {
		return nil, fmt.Errorf("run the unit tests: %w", err)
	}
	if code != 0 {
		out, _ := run.Stdout(ctx)
		return nil, fmt.Errorf("unit tests failed (exit %d):\n%s", code, out)
	}
	return run.File(reportsDir + "/unit-tests.xml"), nil
}

// Scan checks serving/Dockerfile and the Kubernetes manifests for misconfiguration (trivy
// config), the source for committed secrets (trivy fs --scanners secret), and the Go
// dependencies for known vulnerabilities (govulncheck). A vulnerability database that cannot be
// reached fails the check: unknown is not a pass.
// +check
func (m *Modelship) Scan(ctx context.Context) (string, error) {
	manifests := m.Cli().
		WithExec([]string{"sh", "-c", "mkdir -p /scan && cp serving/Dockerfile /scan/ && modelship manifests --image registry.example.com/digits:" +
			pipeline.ReferenceGitSHA + " --model-version " + pipeline.ReferenceModelVersion + " --git-sha " + pipeline.ReferenceGitSHA +
			" > /scan/kubernetes.yaml"}).
		Directory("/scan")
	trivy := dag.Container().From(m.TrivyImage).
		WithDirectory("/scan", manifests).
		WithDirectory(srcDir, m.Source)
	var report strings.Builder
	for _, args := range [][]string{
		{"trivy", "config", "--exit-code", "1", "--severity", "HIGH,CRITICAL", "/scan"},
		{"trivy", "fs", "--scanners", "secret", "--exit-code", "1", srcDir},
	} {
		out, err := trivy.WithExec(args).Stdout(ctx)
		if err != nil {
			return "", fmt.Errorf("%s: %w", strings.Join(args[:2], " "), err)
		}
		report.WriteString(out)
	}
	vuln := m.goEnv().
		WithExec([]string{"go", "install", govulnPkg}).
		WithExec([]string{"govulncheck", "./..."}, dagger.ContainerWithExecOpts{Expect: dagger.ReturnTypeAny})
	code, err := vuln.ExitCode(ctx)
	if err != nil {
		return "", fmt.Errorf("govulncheck: %w", err)
	}
	out, _ := vuln.CombinedOutput(ctx)
	switch {
	case code == 0:
		report.WriteString(out)
	case strings.Contains(out, "vuln.go.dev") || strings.Contains(out, "dial tcp") || strings.Contains(out, "no such host"):
		return "", fmt.Errorf("govulncheck: vulnerability database unreachable, dependencies NOT checked:\n%s", out)
	default:
		return "", fmt.Errorf("govulncheck found vulnerabilities (exit %d):\n%s", code, out)
	}
	return report.String(), nil
}

// Sbom is the CycloneDX SBOM of the server image build-image builds for the commit (trivy
// image --input on the exported image): `dagger call sbom --git-sha $SHA export --path sbom.cdx.json`.
func (m *Modelship) Sbom(
	ctx context.Context,
	// Commit whose image to describe.
	gitSha string,
	// Model version baked in (default: the newest pushed from --git-sha).
	// +optional
	modelVersion string,
) (*dagger.File, error) {
	img, _, err := m.image(ctx, gitSha, modelVersion)
	if err != nil {
		return nil, err
	}
	return m.sbomOf(img), nil
}

// sbomOf is trivy's CycloneDX SBOM of an image, from its exported tarball.
func (m *Modelship) sbomOf(img *dagger.Container) *dagger.File {
	return dag.Container().From(m.TrivyImage).
		WithFile("/image.tar", img.AsTarball()).
		WithExec([]string{"trivy", "image", "--input", "/image.tar", "--format", "cyclonedx", "--output", "/sbom.cdx.json"}).
		File("/sbom.cdx.json")
}
