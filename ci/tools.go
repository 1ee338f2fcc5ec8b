package main

import (
	"github.com/modelship/modelship/ci/internal/dagger"
	"github.com/modelship/modelship/internal/pipeline"
)

const (
	gotestsumPkg = "gotest.tools/gotestsum@v1.13.0"
	// embeddedUser is the embedded MinIO's user. It is a secret, and the engine redacts a
	// secret's value wherever it appears, so it must be a string no log, image name or message
	// contains by chance.
	embeddedUser     = "msx-embedded-7c1e"
	embeddedPassword = "msx-embedded-minio-4f2a9d"
	embeddedS3       = "http://minio:9000"
)

// goEnv is the Go toolchain with the project's source and shared module and build caches: for
// the checks of a Go project (lint, unit-test, scan), modelship's own among them.
func (m *Modelship) goEnv() *dagger.Container {
	return m.goEnvOf(m.Source)
}

func (m *Modelship) goEnvOf(src *dagger.Directory) *dagger.Container {
	return dag.Container().
		From(m.GoImage).
		WithMountedCache("/go/pkg/mod", dag.CacheVolume(cacheGoMod)).
		WithMountedCache("/root/.cache/go-build", dag.CacheVolume(cacheGoBuild)).
		WithEnvVariable("CGO_ENABLED", "0").
		WithEnvVariable("GOFLAGS", "-trimpath").
		WithDirectory(srcDir, src).
		WithWorkdir(srcDir)
}

// versioned builds pkgs from the container's source into /out; the binaries report the digest
// of that source as their version.
func versioned(c *dagger.Container, pkgs ...string) *dagger.Container {
	return c.WithExec(append([]string{"sh", "-c", `set -e
v="src-$(find . -type f ! -path './.git/*' | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-12)"
go build -ldflags "-X main.version=$v" -o /out/ "$@"`, "build"}, pkgs...))
}

// cliSource is what the CLI is built from, of the module's own source: its own packages and the
// ones they import, without tests and without the server (it speaks to servers through
// serving/oip). A change anywhere else (the server, tests, docs, the project) leaves the CLI,
// and the model pulls made with it, cached.
func (m *Modelship) cliSource() *dagger.Directory {
	return m.toolSource().Filter(dagger.DirectoryFilterOpts{
		Include: []string{"go.mod", "go.sum", "cmd/modelship/", "internal/", "serving/oip/"},
		Exclude: []string{"**/*_test.go", "**/testdata/", "internal/testenv/"},
	})
}

// cli is the modelship CLI binary, built from cliSource alone.
func (m *Modelship) cli() *dagger.File {
	return versioned(m.goEnvOf(m.cliSource()), "./cmd/modelship").File("/out/modelship")
}

// Tools builds the modelship CLI, the model server and gotestsum from the module's own source.
// The binaries report the digest of the source they were built from as their version.
func (m *Modelship) Tools() *dagger.Directory {
	return versioned(m.goEnvOf(m.toolSource()), "./serving/cmd/model-server").
		WithEnvVariable("GOBIN", "/out").
		WithExec([]string{"go", "install", gotestsumPkg}).
		Directory("/out").
		WithFile("modelship", m.cli())
}

// tooled is the Go toolchain in the module's own source (where the gate's tests are), with the
// built binaries on PATH and no storage: for what needs the CLI but neither registry nor state.
func (m *Modelship) tooled() *dagger.Container {
	return m.goEnvOf(m.toolSource()).WithDirectory("/usr/local/bin", m.Tools())
}

// storage is where the registry and the state live, and the service to bind when embedded.
func (m *Modelship) storage() (endpoint string, svc *dagger.Service, access, secret *dagger.Secret) {
	if m.StorageEndpoint != "" {
		return m.StorageEndpoint, nil, m.StorageAccessKey, m.StorageSecretKey
	}
	// An ephemeral store on the engine: its fixed credentials guard nothing outside the session.
	user := dag.SetSecret("modelship-embedded-minio-user", embeddedUser)
	password := dag.SetSecret("modelship-embedded-minio-password", embeddedPassword)
	svc = dag.Container().
		From(m.MinioImage).
		WithMountedCache("/data", dag.CacheVolume(cacheMinio)).
		WithSecretVariable("MINIO_ROOT_USER", user).
		WithSecretVariable("MINIO_ROOT_PASSWORD", password).
		WithEnvVariable("MINIO_BROWSER", "off").
		WithExposedPort(9000).
		AsService(dagger.ContainerAsServiceOpts{Args: []string{"minio", "server", "/data", "--address", ":9000"}})
	return embeddedS3, svc, user, password
}

// Cli is a container with the modelship CLI set up for this pipeline's storage and caches,
// e.g. `dagger call cli terminal`, or `dagger call cli with-exec --args modelship,model,ls,--name,digits stdout`.
func (m *Modelship) Cli() *dagger.Container {
	return m.withStore(m.tooled())
}

// registryCli is the CLI with the store and, of the project, only what its registry commands
// read (modelship.json, and the reference model an empty embedded store is seeded with): a model
// pulled with it is pulled again only when the model, the store or the CLI changes, never for a
// code change elsewhere.
func (m *Modelship) registryCli() *dagger.Container {
	return m.withStore(dag.Container().
		From(m.GoImage).
		WithFile("/usr/local/bin/modelship", m.cli()).
		WithDirectory(srcDir, m.Source.Filter(dagger.DirectoryFilterOpts{Include: []string{pipeline.ReferenceModelFile, projectFile}})).
		WithWorkdir(srcDir))
}

// withStore sets c up for this pipeline's storage and caches.
func (m *Modelship) withStore(c *dagger.Container) *dagger.Container {
	endpoint, svc, access, secret := m.storage()
	c = c.
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
		c = c.WithServiceBinding("minio", svc)
	}
	if svc != nil && m.Seed {
		// The embedded store starts empty: give it the reference model (a no-op once there).
		// Not fresh: every exec chained after a fresh one would miss the cache too.
		c = c.WithExec([]string{"modelship", "model", "push", srcDir + "/" + pipeline.ReferenceModelFile, "--name", m.ModelName,
			"--version", pipeline.ReferenceModelVersion, "--git-sha", pipeline.ReferenceGitSHA})
	}
	return c
}
