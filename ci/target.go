package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/modelship/modelship/ci/internal/dagger"
	"github.com/modelship/modelship/internal/pipeline"
)

// checkTarget refuses two targets at once: deploys go to one Docker engine or one cluster.
func checkTarget(dockerSocket *dagger.Socket, dockerHost string, kubeconfig *dagger.Secret) error {
	switch {
	case kubeconfig != nil && (dockerSocket != nil || dockerHost != ""):
		return errors.New("give a Docker engine (--docker-socket, --docker-host) or a cluster (--kubeconfig), not both")
	case dockerSocket != nil && dockerHost != "":
		return errors.New("give --docker-socket or --docker-host, not both")
	case dockerHost != "" && !strings.HasPrefix(dockerHost, "tcp://") && !strings.HasPrefix(dockerHost, "ssh://"):
		return fmt.Errorf("--docker-host %q: want tcp://HOST:PORT or ssh://USER@HOST (a local engine is --docker-socket /var/run/docker.sock)", dockerHost)
	}
	return nil
}

// deployer is the CLI container wired to the target: a Docker engine by socket, tcp:// or ssh:// host,
// or a cluster by kubeconfig (mounted as a secret file).
func (m *Modelship) deployer() (*dagger.Container, error) {
	c := m.Cli().WithEnvVariable("MODELSHIP_PUBLISH", m.Publish)
	switch {
	case m.Kubeconfig != nil:
		return c.WithMountedSecret("/run/secrets/kubeconfig", m.Kubeconfig).
			WithEnvVariable("MODELSHIP_TARGET", "kubernetes").
			WithEnvVariable("KUBECONFIG", "/run/secrets/kubeconfig").
			WithEnvVariable("MODELSHIP_NAMESPACE", m.Namespace).
			WithEnvVariable("MODELSHIP_K8S_NAME", m.ModelName), nil
	case m.DockerSocket != nil:
		// This container is not on the engine's host network, so it checks a new server at its
		// container address; a remote engine's servers are checked where that engine publishes them.
		return c.WithUnixSocket("/var/run/docker.sock", m.DockerSocket).WithEnvVariable("DOCKER_HOST", "unix:///var/run/docker.sock").
			WithEnvVariable("MODELSHIP_CHECK_HOST", "container"), nil
	case m.DockerHost != "":
		return m.remoteDocker(c.WithEnvVariable("DOCKER_HOST", m.DockerHost))
	default:
		return nil, errors.New("no deploy target: give one before the function, e.g. `dagger call --docker-socket=/var/run/docker.sock deploy ...`, or --docker-host tcp://HOST:2376 with with-docker-tls (ssh://USER@HOST with with-docker-ssh), or --kubeconfig file://$HOME/.kube/config")
	}
}

// remoteDocker gives the CLI what it needs to reach a remote engine: the SSH key and pinned host
// keys, the TLS files as secret mounts, or the explicit acceptance of an unauthenticated API.
// The CLI refuses the rest too;
// refusing here says which module call to add.
func (m *Modelship) remoteDocker(c *dagger.Container) (*dagger.Container, error) {
	tls := []*dagger.Secret{m.DockerTLSCA, m.DockerTLSCert, m.DockerTLSKey}
	switch {
	case strings.HasPrefix(m.DockerHost, "ssh://") && (m.DockerSSHKey == nil || m.DockerSSHKnownHosts == ""):
		return nil, fmt.Errorf("--docker-host %s: add with-docker-ssh --key=env://DOCKER_SSH_KEY --known-hosts=\"$DOCKER_SSH_KNOWN_HOSTS\" "+
			"(the host's key is pinned, never taken on first sight)", m.DockerHost)
	case strings.HasPrefix(m.DockerHost, "ssh://"):
		return c.WithMountedSecret("/run/secrets/docker/ssh_key", m.DockerSSHKey).
			WithNewFile("/run/secrets/docker/known_hosts", m.DockerSSHKnownHosts).
			WithEnvVariable("MODELSHIP_DOCKER_SSH_KEY", "/run/secrets/docker/ssh_key").
			WithEnvVariable("MODELSHIP_DOCKER_SSH_KNOWN_HOSTS", "/run/secrets/docker/known_hosts"), nil
	case tls[0] != nil && tls[1] != nil && tls[2] != nil:
		for i, name := range []string{"CA", "CERT", "KEY"} {
			path := "/run/secrets/docker/" + strings.ToLower(name) + ".pem"
			c = c.WithMountedSecret(path, tls[i]).WithEnvVariable("MODELSHIP_DOCKER_TLS_"+name, path)
		}
		return c, nil
	case m.DockerInsecureTCP:
		return c.WithEnvVariable("MODELSHIP_DOCKER_INSECURE_TCP", "true"), nil
	default:
		return nil, fmt.Errorf("--docker-host %s is the Docker API without TLS: whoever reaches it is root on that host; "+
			"add with-docker-tls --ca=env://DOCKER_TLS_CA --cert=env://DOCKER_TLS_CERT --key=env://DOCKER_TLS_KEY "+
			"(or, on a network nobody else is on, with-insecure-docker-host)", m.DockerHost)
	}
}

// runStage runs a CLI stage that writes its own evidence, on every call, and returns what it
// printed with it.
func runStage(ctx context.Context, what string, c *dagger.Container, args []string) (*Stage, error) {
	ran := fresh(c).WithExec(args)
	out, err := ran.Stdout(ctx)
	if err != nil {
		return nil, failed(what, err)
	}
	return &Stage{Output: out, Evidence: ran.File(evidenceDir + "/evidence.json")}, nil
}

// Deploy is the deploy stage (main only): rolls the commit's image out to the target given
// before it (--docker-socket, --docker-host or --kubeconfig), verifies readiness and a smoke
// inference, and records it in deploy_state.json. Runs on every call.
//
// +cache="never"
func (m *Modelship) Deploy(
	ctx context.Context,
	// Commit being deployed.
	gitSha string,
	// Branch of this run; anything but main is refused.
	branch string,
	// Model version in the image (default: the one pushed from --git-sha, else the one modelship.json pins).
	//
	// +optional
	modelVersion string,
	// How the release takes traffic: direct (all at once, once verified), canary (weighted
	// steps, each analysed against the live release; Kubernetes) or shadow (a sample of live
	// requests mirrored to it and compared, then promoted or refused).
	//
	// +optional
	// +default="direct"
	strategy string,
	// Canary traffic percentages, comma-separated and increasing, e.g. "10,25,50" (100 follows).
	//
	// +optional
	steps string,
	// How long each canary step, or the shadow, is watched before its analysis, e.g. "2m".
	//
	// +optional
	duration string,
	// Shadow: the share of live requests mirrored to the candidate, in (0, 1].
	//
	// +optional
	shadowSample string,
	// Shadow: the smallest share of mirrored rows the candidate must predict as live did, e.g. "0.95".
	//
	// +optional
	minAgreement string,
	// Largest Jensen-Shannon divergence (0-1) of the candidate's predicted classes from live's, e.g. "0.1".
	//
	// +optional
	maxDrift string,
	// Largest share of the candidate's inference requests that may fail, e.g. "0.01".
	//
	// +optional
	maxErrorRate string,
	// Largest p99 inference latency the candidate may show, e.g. "200ms".
	//
	// +optional
	maxP99 string,
	// Whether the image must carry a signature and provenance that verify with with-signing's
	// public key: true or false (default: required for production only). An image the engine
	// loads from a tarball (no with-registry) has no signature, so production needs false.
	//
	// +optional
	requireSignature string,
	// The image build-image pushed for this commit, by digest (its output), e.g.
	// ${{ needs.build-image.outputs.image }}: deployed as it is, not built again. A CI job on
	// another machine rebuilds to another digest, which its signature does not cover.
	//
	// +optional
	image string,
) (*Stage, error) {
	if branch != pipeline.DeployBranch {
		return nil, fmt.Errorf("deploys run only for %s; this run is on %q", pipeline.DeployBranch, branch)
	}
	if image != "" {
		if err := m.checkBuilt(image, gitSha); err != nil {
			return nil, err
		}
	}
	rollout := rolloutArgs(strategy, map[string]string{"--steps": steps, "--duration": duration, "--shadow-sample": shadowSample,
		"--min-agreement": minAgreement, "--max-drift": maxDrift, "--max-error-rate": maxErrorRate, "--max-p99": maxP99})
	c, err := m.deployer()
	if err != nil {
		return nil, err
	}
	if m.Registry == "" && m.Kubeconfig != nil {
		return nil, errors.New("a cluster pulls images from a registry: give --registry to deploy to Kubernetes")
	}
	img, res, _, err := m.image(ctx, gitSha, modelVersion)
	if err != nil {
		return nil, err
	}
	// The release goes out with the gate it passed (the same run as ship's, cached), recorded
	// with it: what promotions out of this environment require.
	reports, err := m.passedGate(ctx, res.Manifest.Version, "")
	if err != nil {
		return nil, fmt.Errorf("deploy %s@%s: %w", m.ModelName, res.Manifest.Version, err)
	}
	c = c.WithFile("/gate/quality-report.json", reports.File("quality-report.json"))
	args := []string{"modelship", "deploy", "--branch", branch, "--git-sha", gitSha, "--model-version", res.Manifest.Version,
		"--port", strconv.Itoa(m.Port), "--health-path", m.HealthPath, "--gate-report", "/gate/quality-report.json"}
	args = append(args, rollout...)
	switch requireSignature {
	case "":
	case "true", "false":
		args = append(args, "--require-signature="+requireSignature)
	default:
		return nil, fmt.Errorf("--require-signature %q: want true or false", requireSignature)
	}
	if m.Registry == "" {
		// No registry the engine can reach: hand it the image as a tarball.
		local := "modelship.local/" + m.ImageRepository + ":" + gitSha
		c = c.WithFile("/image.tar", img.AsTarball(dagger.ContainerAsTarballOpts{MediaTypes: dagger.ImageMediaTypesDocker}))
		args = append(args, "--image", local, "--image-archive", "/image.tar")
	} else {
		if image == "" {
			built, err := m.BuildImage(ctx, gitSha, res.Manifest.Version)
			if err != nil {
				return nil, err
			}
			image = built.Output
		}
		args = append(args, "--image", image)
		var verify []string
		if c, verify, err = m.verifying(c, res.Manifest.SHA256); err != nil {
			return nil, err
		}
		args = append(args, verify...)
	}
	return runStage(ctx, "deploy "+gitSha+" to "+m.Environment, c.WithEnvVariable("MODELSHIP_COMMIT", gitSha), args)
}

// checkBuilt refuses an image given to deploy that is not build-image's output for the commit:
// pinned to a digest, under this registry, tagged with the commit.
func (m *Modelship) checkBuilt(given, gitSha string) error {
	if m.Registry == "" {
		return errors.New("--image names a pushed image; with no with-registry the engine hands the target a tarball of its own build: give with-registry, or leave out --image")
	}
	want, _, err := m.registryRef(gitSha)
	if err != nil {
		return err
	}
	tagged, digest, pinned := strings.Cut(given, "@")
	if !pinned || !strings.HasPrefix(digest, "sha256:") || tagged != want {
		return fmt.Errorf("--image %q: want build-image's output for this commit, %s@sha256:<digest>", given, want)
	}
	return nil
}

// rolloutArgs are the CLI flags of a deploy's strategy and the settings given (the CLI checks
// them and names what is wrong), in a fixed order so the same call is the same exec.
func rolloutArgs(strategy string, given map[string]string) []string {
	args := []string{"--strategy", strategy}
	for _, flag := range slices.Sorted(maps.Keys(given)) {
		if v := given[flag]; v != "" {
			args = append(args, flag, v)
		}
	}
	return args
}

// Rollback puts the last good deployment back from deploy_state.json on the target given
// before it, within the rollback budget: the third rollback within an hour halts the
// environment until `resume`. Runs on every call.
//
// +cache="never"
func (m *Modelship) Rollback(
	ctx context.Context,
	// Why; recorded in deploy_state.json and sent to the webhook.
	reason string,
	// current restores what the state records as live (after a failed gate or rollout);
	// previous goes back past it.
	//
	// +optional
	// +default="current"
	to string,
) (*Stage, error) {
	c, err := m.deployer()
	if err != nil {
		return nil, err
	}
	return runStage(ctx, "roll "+m.Environment+" back", c, []string{"modelship", "rollback", "--reason", reason, "--to", to,
		"--port", strconv.Itoa(m.Port), "--health-path", m.HealthPath})
}

// Promote deploys to this environment (--environment) exactly what --from records as live:
// the same image digest and model version, verified again here, nothing rebuilt. Refused unless
// that deployment passed its gate and verification and has been live --min-age, and while either
// environment is halted. `dagger call --environment=production --docker-host=... promote --from=staging`.
// Runs on every call.
//
// +cache="never"
func (m *Modelship) Promote(
	ctx context.Context,
	// Environment whose live deployment is promoted, e.g. staging.
	from string,
	// How long it must have been live there, e.g. 30m.
	//
	// +optional
	// +default="15m"
	minAge string,
) (*Stage, error) {
	c, err := m.deployer()
	if err != nil {
		return nil, err
	}
	c, verify, err := m.verifying(c, "")
	if err != nil {
		return nil, err
	}
	return runStage(ctx, "promote "+from+" to "+m.Environment, c, append([]string{"modelship", "promote", "--from", from, "--to", m.Environment,
		"--min-age", minAge, "--port", strconv.Itoa(m.Port), "--health-path", m.HealthPath}, verify...))
}

// State prints the environment's deploy_state.json, validated, as it is now.
//
// +cache="never"
func (m *Modelship) State(ctx context.Context) (string, error) {
	out, err := fresh(m.Cli()).WithExec([]string{"modelship", "state", "show"}).Stdout(ctx)
	if err != nil {
		return "", failed("read deploy_state.json of "+m.Environment, err)
	}
	return out, nil
}

// Resume lifts a halt so deploys and rollbacks run again; who and why are logged in
// deploy_state.json, and the rollback budget counts from now.
//
// +cache="never"
func (m *Modelship) Resume(
	ctx context.Context,
	// Who is resuming.
	by string,
	// Why it is safe to go on.
	reason string,
) (string, error) {
	out, err := fresh(m.Cli()).WithExec([]string{"modelship", "state", "resume", "--by", by, "--reason", reason}).Stdout(ctx)
	if err != nil {
		return "", failed("resume "+m.Environment, err)
	}
	return out, nil
}

// deployStrategyDirect is the strategy ship deploys with: verified, then all the traffic.
const deployStrategyDirect = "direct"
