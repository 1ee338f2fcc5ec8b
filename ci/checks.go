package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/modelship/modelship/ci/internal/dagger"
	"github.com/modelship/modelship/internal/pipeline"
)

const (
	golangciPkg = "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.15.0"
	govulnPkg   = "golang.org/x/vuln/cmd/govulncheck@v1.9.0"
)

// Lint runs golangci-lint v2 with the committed .golangci.yml (vet, staticcheck, errcheck,
// gofmt, goimports and more) over the root module.
//
// +check
func (m *Modelship) Lint(ctx context.Context) (string, error) {
	out, err := m.goEnv().
		WithExec([]string{"go", "install", golangciPkg}).
		WithExec([]string{"golangci-lint", "run", "./..."}).
		Stdout(ctx)
	if err != nil {
		return "", failed("golangci-lint", err)
	}
	return out, nil
}

// UnitTest runs the root module's tests that need no servers (tests that need MinIO, a
// registry, Docker or a control plane skip and say so) and returns the JUnit file; fails when
// a test fails.
//
// +check
func (m *Modelship) UnitTest(ctx context.Context) (*dagger.File, error) {
	run := m.goEnv().WithDirectory("/usr/local/bin", m.Tools()).
		WithExec([]string{"gotestsum", "--junitfile", reportsDir + "/unit-tests.xml", "--", "-count=1", "./..."},
			dagger.ContainerWithExecOpts{Expect: dagger.ReturnTypeAny})
	code, err := run.ExitCode(ctx)
	if err != nil {
		return nil, failed("run the unit tests", err)
	}
	if code != 0 {
		out, _ := run.Stdout(ctx)
		return nil, fmt.Errorf("unit tests failed (exit %d):\n%s", code, tail(out, 60))
	}
	return run.File(reportsDir + "/unit-tests.xml"), nil
}

// Scan checks serving/Dockerfile and the Kubernetes manifests for misconfiguration (trivy
// config), the source for committed secrets (trivy fs --scanners secret), and the Go
// dependencies for known vulnerabilities (govulncheck). A vulnerability database that cannot be
// reached fails the check: unknown is not a pass.
//
// +check
func (m *Modelship) Scan(ctx context.Context) (string, error) {
	// Rendering manifests needs the CLI only, not the store.
	manifests := m.tooled().
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
			return "", failed(strings.Join(args[:2], " "), err)
		}
		report.WriteString(out)
	}
	vuln := m.goEnv().
		WithExec([]string{"go", "install", govulnPkg}).
		WithExec([]string{"govulncheck", "./..."}, dagger.ContainerWithExecOpts{Expect: dagger.ReturnTypeAny})
	code, err := vuln.ExitCode(ctx)
	if err != nil {
		return "", failed("govulncheck", err)
	}
	out, _ := vuln.CombinedOutput(ctx)
	switch {
	case code == 0:
		report.WriteString(out)
	case strings.Contains(out, "vuln.go.dev") || strings.Contains(out, "dial tcp") || strings.Contains(out, "no such host"):
		return "", fmt.Errorf("govulncheck: vulnerability database unreachable, dependencies NOT checked:\n%s", tail(out, stderrLines))
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
	// Model version baked in (default: the one pushed from --git-sha, else the one modelship.json pins).
	//
	// +optional
	modelVersion string,
) (*dagger.File, error) {
	img, _, _, err := m.image(ctx, gitSha, modelVersion)
	if err != nil {
		return nil, err
	}
	return sbomOf(m.TrivyImage, img), nil
}

// sbomOf is trivy's CycloneDX SBOM of an image, from its exported tarball.
func sbomOf(trivyImage string, img *dagger.Container) *dagger.File {
	return dag.Container().From(trivyImage).
		WithFile("/image.tar", img.AsTarball()).
		WithExec([]string{"trivy", "image", "--input", "/image.tar", "--format", "cyclonedx", "--output", "/sbom.cdx.json"}).
		File("/sbom.cdx.json")
}
