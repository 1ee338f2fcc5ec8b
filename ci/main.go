// Take an AI model from a commit to production, and back again when it goes wrong.
//
// The functions build the modelship CLI and model server from source in cached containers and
// run them; the CLI does the work (registry, quality gate, deploy state, deploy, rollback), so
// the same calls run on a laptop and in any CI. With no S3 endpoint given, a MinIO runs inside
// the session (state kept in a cache volume) seeded with the reference model; with no registry
// given, a registry service runs for the build, and deploys load the image into the engine.
package main

import (
	"errors"

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
	TrivyImage string
	// +private
	WebhookURL *dagger.Secret
	// +private
	DockerSocket *dagger.Socket
	// +private
	DockerHost string
	// +private
	Kubeconfig *dagger.Secret
	// +private
	Namespace string
	// +private
	Publish string
}

func New(
	// The repository: sources, serving/Dockerfile, tests/fixtures, model_baseline.json and
	// modelship.json (the model version a commit that pushed none ships).
	//
	// +defaultPath="/"
	// +ignore=["**/.git", "ci", "docs", "reports", "test-results", "**/*.test"]
	source *dagger.Directory,
	// S3 endpoint of the model registry and deploy state, e.g. https://s3.eu-west-1.amazonaws.com
	// or http://minio.internal:9000. Empty: a MinIO inside the session, seeded with the reference model.
	//
	// +optional
	storageEndpoint string,
	// S3 access key ID (AWS_ACCESS_KEY_ID), e.g. env://AWS_ACCESS_KEY_ID.
	//
	// +optional
	storageAccessKey *dagger.Secret,
	// S3 secret access key (AWS_SECRET_ACCESS_KEY), e.g. env://AWS_SECRET_ACCESS_KEY.
	//
	// +optional
	storageSecretKey *dagger.Secret,
	// S3 region.
	//
	// +optional
	// +default="us-east-1"
	storageRegion string,
	// Bucket of the model registry.
	//
	// +optional
	// +default="models"
	modelsBucket string,
	// Bucket of the deploy_state.json files.
	//
	// +optional
	// +default="deploy-state"
	stateBucket string,
	// Environment deployed to and recorded in deploy_state.json.
	//
	// +optional
	// +default="production"
	environment string,
	// Container registry images are pushed to, host[:port] (e.g. ghcr.io). Empty: a registry
	// service inside the session for builds; deploys then load the image into the engine.
	//
	// +optional
	registry string,
	// Registry user name.
	//
	// +optional
	registryUsername string,
	// Registry password or token, e.g. env://REGISTRY_PASSWORD.
	//
	// +optional
	registryPassword *dagger.Secret,
	// Image repository under the registry; images are tagged <registry>/<repository>:<git-sha>.
	//
	// +optional
	// +default="modelship/digits"
	imageRepository string,
	// Model name in the registry and in the server's API.
	//
	// +optional
	// +default="digits"
	modelName string,
	// Go toolchain image that builds the CLI, the server and runs the gate (a mirror works).
	//
	// +optional
	// +default="golang:1.26"
	goImage string,
	// Runtime base image of the model server image.
	//
	// +optional
	// +default="gcr.io/distroless/static-debian12:nonroot"
	runtimeImage string,
	// MinIO image of the embedded S3 store.
	//
	// +optional
	// +default="quay.io/minio/minio:RELEASE.2025-04-22T22-12-26Z"
	minioImage string,
	// Registry image of the embedded container registry.
	//
	// +optional
	// +default="registry:3"
	registryImage string,
	// Trivy image of the scan check and the SBOM.
	//
	// +optional
	// +default="aquasec/trivy:0.67.2"
	trivyImage string,
	// Slack- or Discord-compatible webhook told about deploys, rollbacks, failed verifications
	// and halts (MODELSHIP_WEBHOOK_URL), e.g. env://MODELSHIP_WEBHOOK_URL.
	//
	// +optional
	webhookUrl *dagger.Secret,
	// Deploy target: a Docker engine socket, e.g. /var/run/docker.sock.
	//
	// +optional
	dockerSocket *dagger.Socket,
	// Deploy target: a Docker engine address, tcp://HOST:PORT.
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
	if (storageAccessKey == nil) != (storageSecretKey == nil) {
		return nil, errors.New("give both --storage-access-key and --storage-secret-key, or neither")
	}
	if registry != "" && registryPassword != nil && registryUsername == "" {
		return nil, errors.New("--registry-password needs --registry-username")
	}
	if err := checkTarget(dockerSocket, dockerHost, kubeconfig); err != nil {
		return nil, err
	}
	return &Modelship{
		Source: source, StorageEndpoint: storageEndpoint, StorageAccessKey: storageAccessKey, StorageSecretKey: storageSecretKey,
		StorageRegion: storageRegion, ModelsBucket: modelsBucket, StateBucket: stateBucket, Environment: environment,
		Registry: registry, RegistryUsername: registryUsername, RegistryPassword: registryPassword,
		ImageRepository: imageRepository, ModelName: modelName,
		GoImage: goImage, RuntimeImage: runtimeImage, MinioImage: minioImage, RegistryImage: registryImage, TrivyImage: trivyImage,
		WebhookURL:   webhookUrl,
		DockerSocket: dockerSocket, DockerHost: dockerHost, Kubeconfig: kubeconfig, Namespace: namespace, Publish: publish,
	}, nil
}
