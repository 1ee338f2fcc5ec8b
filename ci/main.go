// Take an AI model from a commit to production, and back again when it goes wrong.
//
// The functions build the modelship CLI and model server from the module's own source in cached
// containers and run them for the project given as --source (its modelship.json names the model,
// fixtures, baseline and server); the CLI does the work (registry, quality gate, deploy state, deploy, rollback), so
// the same calls run on a laptop and in any CI. With no S3 endpoint given, a MinIO runs inside
// the session (state kept in a cache volume) seeded with the reference model; with no registry
// given, a registry service runs for the build, and deploys load the image into the engine.
package main

import (
	"context"

	"github.com/modelship/modelship/ci/internal/dagger"
)

// Cache volume names are namespaced: volumes are shared by every module an engine runs.
const (
	cacheGoMod   = "github.com/modelship/modelship:go-mod"
	cacheGoBuild = "github.com/modelship/modelship:go-build"
	cacheModels  = "github.com/modelship/modelship:models"
	cacheMinio   = "github.com/modelship/modelship:minio-data"
	srcDir       = "/src"
	evidenceDir  = "/evidence"
	reportsDir   = "/reports"
	// engineVersion is dagger.json's engineVersion, the engine these functions are written for
	// and recorded in every stage's evidence (a test keeps the two equal).
	engineVersion = "v0.21.9"
)

// Modelship is the pipeline's shared configuration: where models and state live, where images
// go, which base images to pull, and the target deploys and rollbacks act on.
type Modelship struct {
	// +private
	Source *dagger.Directory
	// +private
	Toolchain *dagger.Directory
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
	RegistryService *dagger.Service
	// +private
	SigningKey *dagger.Secret
	// +private
	SigningPassword *dagger.Secret
	// +private
	PublicKey *dagger.File
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
	TrivyImage string
	// +private
	WebhookURL *dagger.Secret
	// +private
	DockerSocket *dagger.Socket
	// +private
	DockerHost string
	// +private
	DockerTLSCA *dagger.Secret
	// +private
	DockerTLSCert *dagger.Secret
	// +private
	DockerTLSKey *dagger.Secret
	// +private
	DockerInsecureTCP bool
	// +private
	DockerSSHKey *dagger.Secret
	// +private
	DockerSSHKnownHosts string
	// +private
	Kubeconfig *dagger.Secret
	// +private
	Namespace string
	// +private
	Publish string
	// +private
	Server string
	// +private
	Dockerfile string
	// +private
	BuildDir string
	// +private
	Port int
	// +private
	HealthPath string
	// +private
	Backend string
	// +private
	OrtLibrary string
	// +private
	OrtURL string
	// +private
	OrtSHA256 string
	// +private
	OnnxruntimeImage string
	// +private
	Platforms []string
	// +private
	Fixture string
	// +private
	Baseline string
	// +private
	SmokeSample int
	// +private
	Seed bool
}

// New sets what almost every project sets: the repository, the environment, the model and image
// names, and the deploy target. Storage, registry, webhook and base images are With* settings.
func New(
	ctx context.Context,
	// The project: its modelship.json (model, task, inputs, fixtures, baseline, serving, smoke
	// sample), the fixtures and baseline it names, and its own Dockerfile if it serves with one.
	// From another repository: --source=. (the default is the module's own repository).
	//
	// +defaultPath="/"
	// +ignore=["**/.git", "ci", "docs", "reports", "test-results", "**/*.test"]
	source *dagger.Directory,
	// modelship's own source, which the CLI, the model server, the quality gate and
	// serving/Dockerfile are built from. Leave it out: it is the module's own repository wherever
	// the module is called from. (Loaded as a directory, not through the module's source,
	// because only a loaded directory is keyed by its content: a build keyed by the module's
	// source would run again for any change to any file of it.)
	//
	// +defaultPath="/"
	// +ignore=["**/.git", "ci", "docs", "reports", "test-results", "**/*.test", "examples", "data"]
	toolchain *dagger.Directory,
	// Environment deployed to and recorded in deploy_state.json.
	//
	// +optional
	// +default="production"
	environment string,
	// Model name in the registry and in the server's API (default: modelship.json's model.name).
	//
	// +optional
	modelName string,
	// Image repository under the registry; images are tagged <registry>/<repository>:<git-sha>
	// (default: modelship/<model name>).
	//
	// +optional
	imageRepository string,
	// Deploy target: a Docker engine socket, e.g. /var/run/docker.sock.
	//
	// +optional
	dockerSocket *dagger.Socket,
	// Deploy target: a Docker engine address: tcp://HOST:PORT, reached over verified TLS
	// (with-docker-tls) or, where nobody else is on the network, with-insecure-docker-host; or
	// ssh://USER@HOST[:PORT][/path/to/docker.sock] (with-docker-ssh).
	//
	// +optional
	dockerHost string,
	// Deploy target: the kubeconfig of a cluster to deploy to blue-green, e.g. file://$HOME/.kube/config.
	//
	// +optional
	kubeconfig *dagger.Secret,
	// Kubernetes namespace of the deployment.
	//
	// +optional
	// +default="default"
	namespace string,
	// Address the live server is published on, on the Docker host.
	//
	// +optional
	// +default="0.0.0.0:8000"
	publish string,
) (*Modelship, error) {
	if err := checkTarget(dockerSocket, dockerHost, kubeconfig); err != nil {
		return nil, err
	}
	proj, err := readProject(ctx, source, modelName)
	if err != nil {
		return nil, err
	}
	m := &Modelship{
		Source: source, Toolchain: toolchain, Environment: environment, ModelName: proj.model, ImageRepository: or(imageRepository, "modelship/"+proj.model),
		Server: proj.serving.Server, Dockerfile: proj.serving.Dockerfile, BuildDir: proj.serving.Context,
		Port: proj.serving.Port, HealthPath: proj.serving.HealthPath, Fixture: proj.fixture, Baseline: proj.baseline, SmokeSample: proj.sample, Seed: proj.seed,
		DockerSocket: dockerSocket, DockerHost: dockerHost, Kubeconfig: kubeconfig, Namespace: namespace, Publish: publish,
		// The embedded store's; WithStorage sets a real one's.
		StorageRegion: defaultRegion, ModelsBucket: defaultModelsBucket, StateBucket: defaultStateBucket,
		GoImage: defaultGoImage, RuntimeImage: defaultRuntimeImage, MinioImage: defaultMinioImage,
		RegistryImage: defaultRegistryImage, TrivyImage: defaultTrivyImage, OnnxruntimeImage: defaultOnnxruntimeImage,
		Platforms: defaultPlatforms,
		Backend:   proj.serving.Backend,
	}
	if ort := proj.serving.ONNXRuntime; ort != nil {
		m.OrtLibrary, m.OrtURL, m.OrtSHA256 = ort.Library, ort.URL, ort.SHA256
	}
	return m, nil
}
