package main

import (
	"errors"
	"fmt"
	"regexp"

	"github.com/modelship/modelship/ci/internal/dagger"
)

// Defaults of the settings; a With* call with an empty value keeps them.
const (
	defaultRegion       = "us-east-1"
	defaultModelsBucket = "models"
	defaultStateBucket  = "deploy-state"
	defaultGoImage      = "golang:1.26"
	defaultRuntimeImage = "gcr.io/distroless/static-debian12:nonroot"
	// The onnxruntime server links glibc: distroless cc of golang:1.26's Debian release.
	defaultOnnxruntimeImage = "gcr.io/distroless/cc-debian13:nonroot"
	defaultMinioImage       = "quay.io/minio/minio:RELEASE.2025-04-22T22-12-26Z"
	defaultRegistryImage    = "registry:3"
	defaultTrivyImage       = "aquasec/trivy:0.67.2"
)

// WithStorage keeps the model registry and the deploy state in an S3 bucket pair instead of the
// MinIO embedded in the session: `dagger call with-storage --endpoint=https://s3.eu-west-1.amazonaws.com
// --access-key=env://AWS_ACCESS_KEY_ID --secret-key=env://AWS_SECRET_ACCESS_KEY deploy ...`.
func (m *Modelship) WithStorage(
	// S3 endpoint, e.g. https://s3.eu-west-1.amazonaws.com or http://minio.internal:9000.
	endpoint string,
	// S3 access key ID (AWS_ACCESS_KEY_ID), e.g. env://AWS_ACCESS_KEY_ID.
	//
	// +optional
	accessKey *dagger.Secret,
	// S3 secret access key (AWS_SECRET_ACCESS_KEY), e.g. env://AWS_SECRET_ACCESS_KEY.
	//
	// +optional
	secretKey *dagger.Secret,
	// S3 region.
	//
	// +optional
	// +default="us-east-1"
	region string,
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
) (*Modelship, error) {
	if endpoint == "" {
		return nil, errors.New("with-storage needs --endpoint (leave with-storage out for the embedded MinIO)")
	}
	if (accessKey == nil) != (secretKey == nil) {
		return nil, errors.New("give with-storage both --access-key and --secret-key, or neither")
	}
	c := *m
	c.StorageEndpoint, c.StorageAccessKey, c.StorageSecretKey = endpoint, accessKey, secretKey
	c.StorageRegion = or(region, defaultRegion)
	c.ModelsBucket = or(modelsBucket, defaultModelsBucket)
	c.StateBucket = or(stateBucket, defaultStateBucket)
	return &c, nil
}

// WithRegistry pushes images to a container registry instead of the one embedded in the session
// (whose images only the engine's own deploys can load): `with-registry --address=ghcr.io
// --username=$USER --password=env://REGISTRY_PASSWORD`.
func (m *Modelship) WithRegistry(
	// Registry host[:port], e.g. ghcr.io.
	address string,
	// Registry user name.
	//
	// +optional
	username string,
	// Registry password or token, e.g. env://REGISTRY_PASSWORD.
	//
	// +optional
	password *dagger.Secret,
	// How the pipeline's containers reach a registry on this machine's localhost, to sign and
	// verify there: --service=tcp://localhost:5000 (the engine pushes to localhost itself).
	//
	// +optional
	service *dagger.Service,
) (*Modelship, error) {
	if address == "" {
		return nil, errors.New("with-registry needs --address (leave with-registry out for the embedded registry)")
	}
	if password != nil && username == "" {
		return nil, errors.New("with-registry --password needs --username")
	}
	c := *m
	c.Registry, c.RegistryUsername, c.RegistryPassword, c.RegistryService = address, username, password, service
	return &c, nil
}

// WithSigning signs what build-image pushes and checks it before deploy and promote roll it
// out: `with-signing --key=env://COSIGN_PRIVATE_KEY --password=env://COSIGN_PASSWORD
// --public-key=./cosign.pub`. build-image writes a cosign signature and SLSA provenance and SBOM
// attestations beside the image; deploy refuses an image whose signature does not verify with
// the public key or whose provenance names another commit or model. Production requires it.
func (m *Modelship) WithSigning(
	// cosign private key (cosign generate-key-pair's cosign.key), e.g. env://COSIGN_PRIVATE_KEY.
	//
	// +optional
	key *dagger.Secret,
	// Its password, e.g. env://COSIGN_PASSWORD.
	//
	// +optional
	password *dagger.Secret,
	// The public key (cosign.pub) deploys and promotions verify with.
	//
	// +optional
	publicKey *dagger.File,
) (*Modelship, error) {
	if key == nil && publicKey == nil {
		return nil, errors.New("with-signing needs --key (to sign in build-image), --public-key (to verify in deploy and promote), or both")
	}
	if key != nil && password == nil {
		return nil, errors.New("with-signing --key needs --password (cosign keys are encrypted; cosign generate-key-pair asks for one)")
	}
	c := *m
	c.SigningKey, c.SigningPassword, c.PublicKey = key, password, publicKey
	return &c, nil
}

// WithWebhook tells a Slack- or Discord-compatible webhook about deploys, rollbacks, failed
// verifications and halts.
func (m *Modelship) WithWebhook(
	// The webhook's URL (MODELSHIP_WEBHOOK_URL), e.g. env://MODELSHIP_WEBHOOK_URL.
	url *dagger.Secret,
) *Modelship {
	c := *m
	c.WebhookURL = url
	return &c
}

// WithDockerTLS reaches the --docker-host engine over verified TLS, both ways: its certificate
// must chain to ca, and it sees this client's cert and key (DOCKER_TLS_VERIFY semantics). A
// tcp:// engine without it is refused, since that API is root on the serving host for whoever
// reaches the port: `dagger call --docker-host=tcp://HOST:2376 with-docker-tls
// --ca=env://DOCKER_TLS_CA --cert=env://DOCKER_TLS_CERT --key=env://DOCKER_TLS_KEY deploy ...`.
func (m *Modelship) WithDockerTLS(
	// CA certificate (PEM) the engine's certificate must chain to.
	ca *dagger.Secret,
	// Client certificate (PEM) the engine trusts.
	cert *dagger.Secret,
	// The client certificate's private key (PEM).
	key *dagger.Secret,
) *Modelship {
	c := *m
	c.DockerTLSCA, c.DockerTLSCert, c.DockerTLSKey = ca, cert, key
	return &c
}

// WithDockerSSH reaches an ssh://USER@HOST --docker-host engine through one SSH session: the
// Docker API over a channel to the engine's socket, the new server's checks over the same
// session, so the serving host needs nothing open but sshd. The host key must be pinned:
// `dagger call --docker-host=ssh://deploy@HOST with-docker-ssh --key=env://DOCKER_SSH_KEY
// --known-hosts="$DOCKER_SSH_KNOWN_HOSTS" deploy ...`.
func (m *Modelship) WithDockerSSH(
	// Private key (OpenSSH PEM, no passphrase) of a user the serving host lets use its Docker socket.
	key *dagger.Secret,
	// known_hosts lines holding the serving host's key, e.g. from ssh-keyscan checked against the host.
	knownHosts string,
) *Modelship {
	c := *m
	c.DockerSSHKey, c.DockerSSHKnownHosts = key, knownHosts
	return &c
}

// WithInsecureDockerHost accepts a tcp:// --docker-host without TLS. Whoever reaches that port
// can run anything as root on the serving host; use it only on a network nobody else is on.
func (m *Modelship) WithInsecureDockerHost() *Modelship {
	c := *m
	c.DockerInsecureTCP = true
	return &c
}

// defaultPlatforms are what build-image pushes, as one index.
var defaultPlatforms = []string{"linux/amd64", "linux/arm64"}

var platformRe = regexp.MustCompile(`^linux/(amd64|arm64|ppc64le|s390x|riscv64)$`)

// WithPlatforms sets the platforms build-image builds and pushes as one multi-platform index
// (default linux/amd64 and linux/arm64; the model layer is one blob shared by all). A project
// Dockerfile that cannot cross-compile names its own platform only.
func (m *Modelship) WithPlatforms(
	// Platforms, e.g. linux/amd64,linux/arm64.
	platforms []string,
) (*Modelship, error) {
	if len(platforms) == 0 {
		return nil, fmt.Errorf("with-platforms needs at least one platform, e.g. --platforms=linux/amd64")
	}
	for _, p := range platforms {
		if !platformRe.MatchString(p) {
			return nil, fmt.Errorf("with-platforms: %q is not a platform Go builds the server for; use linux/amd64, linux/arm64, linux/ppc64le, linux/s390x or linux/riscv64", p)
		}
	}
	c := *m
	c.Platforms = platforms
	return &c, nil
}

// WithBaseImages pulls the images the pipeline runs on from elsewhere, e.g. a mirror; an
// argument left out keeps its public default.
func (m *Modelship) WithBaseImages(
	// Go toolchain image that builds the CLI, the server and runs the gate (default golang:1.26).
	//
	// +optional
	goImage string,
	// Runtime base image of the model server image (default gcr.io/distroless/static-debian12:nonroot).
	//
	// +optional
	runtimeImage string,
	// MinIO image of the embedded S3 store (default quay.io/minio/minio:RELEASE.2025-04-22T22-12-26Z).
	//
	// +optional
	minioImage string,
	// Registry image of the embedded container registry (default registry:3).
	//
	// +optional
	registryImage string,
	// Trivy image of the scan check and the SBOM (default aquasec/trivy:0.67.2).
	//
	// +optional
	trivyImage string,
	// Runtime base image of model server images with ONNX Runtime, which need glibc and
	// libstdc++ (default gcr.io/distroless/cc-debian13:nonroot, the Debian release of golang:1.26).
	//
	// +optional
	onnxruntimeImage string,
) *Modelship {
	c := *m
	c.GoImage = or(goImage, c.GoImage)
	c.RuntimeImage = or(runtimeImage, c.RuntimeImage)
	c.MinioImage = or(minioImage, c.MinioImage)
	c.RegistryImage = or(registryImage, c.RegistryImage)
	c.TrivyImage = or(trivyImage, c.TrivyImage)
	c.OnnxruntimeImage = or(onnxruntimeImage, c.OnnxruntimeImage)
	return &c
}

// or is value, or fallback when value is empty.
func or(value, fallback string) string {
	if value == "" {
		return fallback
	}
	return value
}
