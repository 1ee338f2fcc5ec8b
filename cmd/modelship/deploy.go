package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/modelship/modelship/internal/deploy"
	"github.com/modelship/modelship/internal/deploy/docker"
	"github.com/modelship/modelship/internal/deploy/imageref"
	"github.com/modelship/modelship/internal/deploy/kubernetes"
	"github.com/modelship/modelship/internal/deploystate"
	"github.com/modelship/modelship/internal/notify"
	"github.com/modelship/modelship/serving/oip"
)

// targetFlags are the deploy target settings shared by deploy and rollback.
type targetFlags struct {
	env          string
	target       string
	engine       docker.Connection
	publish      string
	readyTimeout time.Duration
	checkHost    string
	smokeFixture string
	noSmoke      bool
	pipelineRun  string
	kube         kubeFlags
}

// kubeFlags configure the Kubernetes target.
type kubeFlags struct {
	kubeconfig, namespace, name            string
	port, replicas, idleReplicas           int32
	healthPath                             string
	cpuRequest, memoryRequest, memoryLimit string
	progressDeadline                       time.Duration
	smokeURL                               string
}

// register binds the Kubernetes target's flags; deploy, rollback and manifests share them, so
// manifests renders what deploy applies.
func (k *kubeFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&k.kubeconfig, "kubeconfig", "", "kubeconfig file (default: KUBECONFIG, ~/.kube/config, or in-cluster)")
	fl.StringVar(&k.namespace, "namespace", envOr("MODELSHIP_NAMESPACE", "default"), "Kubernetes namespace (MODELSHIP_NAMESPACE)")
	fl.StringVar(&k.name, "k8s-name", envOr("MODELSHIP_K8S_NAME", "modelship"), "Kubernetes base name: Deployments NAME-blue/NAME-green, Service NAME")
	fl.Int32Var(&k.port, "port", 8000, "port the server listens on in its container or pods (a Kubernetes Service's port too)")
	fl.StringVar(&k.healthPath, "health-path", envOr("MODELSHIP_HEALTH_PATH", oip.ReadyPath), "the server's readiness endpoint (MODELSHIP_HEALTH_PATH)")
	fl.Int32Var(&k.replicas, "replicas", 2, "pods per colour")
	fl.Int32Var(&k.idleReplicas, "idle-replicas", 0, "pods the old colour keeps after a switch (default: all, so rollback is a selector switch)")
	fl.StringVar(&k.cpuRequest, "cpu-request", "", "CPU request per pod, e.g. 250m")
	fl.StringVar(&k.memoryRequest, "memory-request", "", "memory request per pod, e.g. 128Mi")
	fl.StringVar(&k.memoryLimit, "memory-limit", "", "memory limit per pod, e.g. 512Mi")
	fl.DurationVar(&k.progressDeadline, "progress-deadline", time.Minute, "a rollout that does not progress for this long fails")
	fl.StringVar(&k.smokeURL, "smoke-url", "", "URL of the new colour's server for the smoke test, {colour} replaced (default: each new pod through the API server's pod proxy)")
}

// config is the Kubernetes target's configuration, without a client (manifests needs none).
func (k *kubeFlags) config(env string, readyTimeout time.Duration) kubernetes.Config {
	kc := kubernetes.Config{Namespace: k.namespace, Name: k.name, Environment: env, Port: k.port, HealthPath: k.healthPath,
		Replicas: k.replicas, IdleReplicas: k.idleReplicas, CPURequest: k.cpuRequest,
		MemoryRequest: k.memoryRequest, MemoryLimit: k.memoryLimit, ProgressDeadline: k.progressDeadline,
		RolloutTimeout: readyTimeout + k.progressDeadline}
	if k.smokeURL != "" {
		tmpl := k.smokeURL
		kc.SmokeURL = func(colour string) string { return strings.ReplaceAll(tmpl, "{colour}", colour) }
	}
	return kc
}

// bindRelease binds the flags that name a release; deploy and manifests share them.
func bindRelease(cmd *cobra.Command, rel *deploy.Release) {
	f := cmd.Flags()
	f.StringVar(&rel.Image, "image", "", "image reference to deploy, <registry>/<name>:<git-sha> (required)")
	f.StringVar(&rel.ModelName, "model-name", envOr("MODELSHIP_MODEL_NAME", "digits"), "model name the server serves (MODELSHIP_MODEL_NAME)")
	f.StringVar(&rel.ModelVersion, "model-version", "", "model version in the image (required)")
	f.StringVar(&rel.GitSHA, "git-sha", "", "commit the image was built from (required)")
	for _, name := range []string{"image", "model-version", "git-sha"} {
		_ = cmd.MarkFlagRequired(name)
	}
}

func (f *targetFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.env, "env", envOr("MODELSHIP_ENVIRONMENT", "production"), "environment (MODELSHIP_ENVIRONMENT)")
	fl.StringVar(&f.target, "target", envOr("MODELSHIP_TARGET", "docker"), "deploy target: docker or kubernetes (MODELSHIP_TARGET)")
	f.kube.register(cmd)
	fl.StringVar(&f.engine.Host, "docker-host", os.Getenv("DOCKER_HOST"), "Docker engine: unix:///path, tcp://host:port (with --docker-tls-*) or ssh://user@host[:port][/socket] (with --docker-ssh-*) (DOCKER_HOST)")
	fl.StringVar(&f.engine.TLS.CA, "docker-tls-ca", os.Getenv("MODELSHIP_DOCKER_TLS_CA"), "CA certificate the tcp:// engine's certificate must chain to (MODELSHIP_DOCKER_TLS_CA)")
	fl.StringVar(&f.engine.TLS.Cert, "docker-tls-cert", os.Getenv("MODELSHIP_DOCKER_TLS_CERT"), "client certificate for the tcp:// engine (MODELSHIP_DOCKER_TLS_CERT)")
	fl.StringVar(&f.engine.TLS.Key, "docker-tls-key", os.Getenv("MODELSHIP_DOCKER_TLS_KEY"), "client key for the tcp:// engine (MODELSHIP_DOCKER_TLS_KEY)")
	fl.StringVar(&f.engine.SSH.Key, "docker-ssh-key", os.Getenv("MODELSHIP_DOCKER_SSH_KEY"), "private key for an ssh:// engine; passphrase-less, kept as a secret (MODELSHIP_DOCKER_SSH_KEY)")
	fl.StringVar(&f.engine.SSH.KnownHosts, "docker-ssh-known-hosts", os.Getenv("MODELSHIP_DOCKER_SSH_KNOWN_HOSTS"), "known_hosts file pinning the ssh:// engine's host key (MODELSHIP_DOCKER_SSH_KNOWN_HOSTS; default ~/.ssh/known_hosts)")
	fl.BoolVar(&f.engine.AllowInsecureTCP, "docker-insecure-tcp", os.Getenv("MODELSHIP_DOCKER_INSECURE_TCP") == "true", "allow a tcp:// engine without verified TLS: whoever reaches it is root on that host (MODELSHIP_DOCKER_INSECURE_TCP=true)")
	fl.StringVar(&f.publish, "publish", envOr("MODELSHIP_PUBLISH", "127.0.0.1:8000"), "host address the live server is published on (MODELSHIP_PUBLISH)")
	fl.StringVar(&f.checkHost, "check-host", os.Getenv("MODELSHIP_CHECK_HOST"), "where to reach new servers to verify them: a host, or 'container' for their Docker network address (MODELSHIP_CHECK_HOST; default: the engine's host)")
	fl.DurationVar(&f.readyTimeout, "ready-timeout", 60*time.Second, "how long a new server may take to become ready")
	fl.StringVar(&f.smokeFixture, "smoke-fixture", envOr("MODELSHIP_SMOKE_FIXTURE", "tests/fixtures/digits_validation.json"), "fixture whose first sample is the smoke inference (MODELSHIP_SMOKE_FIXTURE); given, it overrides the image's own (label dev.modelship.smoke) and, in a rollback, the one recorded with the deployment; left at its default, it serves only an image without one")
	fl.BoolVar(&f.noSmoke, "no-smoke", false, "verify without a smoke inference (readiness and model metadata only); recorded in the state")
	fl.StringVar(&f.pipelineRun, "pipeline-run", firstEnv("MODELSHIP_PIPELINE_RUN", "GITHUB_RUN_ID", "CI_PIPELINE_ID"), "pipeline run recorded in the state (GITHUB_RUN_ID, CI_PIPELINE_ID)")
}

func firstEnv(keys ...string) string {
	for _, k := range keys {
		if v := os.Getenv(k); v != "" {
			return v
		}
	}
	return ""
}

// deps builds the target, state store and notifier. The webhook URL is a secret: it comes
// from MODELSHIP_WEBHOOK_URL only, never a flag, and is never printed.
func (f *targetFlags) deps(ctx context.Context, g *globals, stderr io.Writer) (deploy.Deps, io.Closer, error) {
	store, err := g.writableStateStore(ctx)
	if err != nil {
		return deploy.Deps{}, nil, err
	}
	n, err := notify.NewWebhook(os.Getenv("MODELSHIP_WEBHOOK_URL"), slog.New(slog.NewTextHandler(stderr, nil)))
	if err != nil {
		return deploy.Deps{}, nil, usageError{err}
	}
	switch f.target {
	case "docker":
		target, cli, err := f.docker()
		if err != nil {
			return deploy.Deps{}, nil, err
		}
		return deploy.Deps{Target: target, State: store, Notifier: n}, cli, nil
	case "kubernetes":
		target, err := f.kubernetes()
		if err != nil {
			return deploy.Deps{}, nil, err
		}
		return deploy.Deps{Target: target, State: store, Notifier: n}, io.NopCloser(nil), nil
	default:
		return deploy.Deps{}, nil, usageError{fmt.Errorf("--target %q: use docker or kubernetes", f.target)}
	}
}

// smokeInput is what the flags say about the smoke inference: none on purpose (--no-smoke), or
// the fixture's first sample, given explicitly or by default (err when it cannot be read).
type smokeInput struct {
	smoke deploy.Smoke
	given bool
	none  bool
	err   error
}

// required is the smoke inference a deploy runs: it must have one, or be told it has none.
func (s smokeInput) required() (deploy.Smoke, error) {
	if s.err != nil {
		return deploy.Smoke{}, usageError{fmt.Errorf("%w; give --smoke-fixture FILE (its first sample is the smoke inference) or --no-smoke to verify without one (recorded in the state)", s.err)}
	}
	return s.smoke, nil
}

func (f *targetFlags) smokeInput(cmd *cobra.Command) (smokeInput, error) {
	given := cmd.Flags().Changed("smoke-fixture") || os.Getenv("MODELSHIP_SMOKE_FIXTURE") != ""
	if f.noSmoke {
		if cmd.Flags().Changed("smoke-fixture") {
			return smokeInput{}, usageError{errors.New("give --smoke-fixture or --no-smoke, not both")}
		}
		return smokeInput{none: true}, nil
	}
	smoke, err := deploy.SmokeFromFixture(f.smokeFixture)
	return smokeInput{smoke: smoke, given: given, err: err}, nil
}

// run is the RunE of a command that acts on the target (deploy, rollback): it reads what the
// flags say about the smoke inference, connects the target, state and notifier, hands them to
// do, and disconnects.
func (f *targetFlags) run(g *globals, do func(cmd *cobra.Command, smoke smokeInput, deps deploy.Deps) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, _ []string) error {
		smoke, err := f.smokeInput(cmd)
		if err != nil {
			return err
		}
		deps, closer, err := f.deps(cmd.Context(), g, cmd.ErrOrStderr())
		if err != nil {
			return err
		}
		defer closer.Close()
		return do(cmd, smoke, deps)
	}
}

// printRollout shows each step of a canary or shadow and what its analysis found.
func printRollout(cmd *cobra.Command, out *deploy.Outcome) {
	if out == nil || out.Rollout == nil {
		return
	}
	r := out.Rollout
	w := cmd.ErrOrStderr()
	fmt.Fprintf(w, "%s %s (%s -> %s)\n", r.Strategy, r.Outcome, r.Stable, r.Candidate.Image)
	for _, line := range rolloutLines(*r) {
		fmt.Fprintf(w, "  %s\n", line)
	}
}

// printSteps shows how long each step of a deploy or rollback took, failed or not.
func printSteps(cmd *cobra.Command, out *deploy.Outcome) {
	if out != nil && out.Result != nil {
		fmt.Fprintf(cmd.ErrOrStderr(), "steps: %s\n", out.Result.Steps)
	}
}

func (f *targetFlags) kubernetes() (*kubernetes.Target, error) {
	cfg := f.kube.config(f.env, f.readyTimeout)
	// The pods run, and the state records, the digest the registry serves for the tag now.
	cfg.Resolve, cfg.Labels = imageref.Resolve, imageref.Labels
	t, err := kubernetes.Dial(f.kube.kubeconfig, cfg)
	if err != nil {
		return nil, usageError{err}
	}
	return t, nil
}

func (f *targetFlags) docker() (*docker.Target, io.Closer, error) {
	t, cli, err := docker.Dial(f.engine, docker.Config{Environment: f.env, Publish: f.publish, Port: int(f.kube.port), HealthPath: f.kube.healthPath, ReadyTimeout: f.readyTimeout, CheckHost: f.checkHost})
	if err != nil {
		return nil, nil, usageError{err}
	}
	return t, cli, nil
}

func newDeployCmd(g *globals) *cobra.Command {
	var tf targetFlags
	var rf rolloutFlags
	var sf signatureFlags
	var rel deploy.Release
	var branch, archive, gateReport string
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "deploy --image REF --model-version V --git-sha SHA --branch main",
		Short: "Roll a model server image out, verify it, and record it in deploy_state.json",
		Long: `Deploy runs only for the main branch and only while the environment is not halted. The new
server starts beside the live one, must answer ready and get the smoke inference right (the
image's own, which build-image bakes in, unless --smoke-fixture is given), and only
then takes the published port; if anything fails the previous server keeps (or gets back) the
traffic and the command exits 9. On success deploy_state.json records the commit, the image with
its digest, the model version and the time.`,
		Example: `  modelship deploy --image registry.example.com/digits:$GIT_SHA --model-name digits \
    --model-version 1.0.0 --git-sha $GIT_SHA --branch main --env production --publish 0.0.0.0:8000`,
		Args: requireArgs(cobra.NoArgs),
		RunE: tf.run(g, func(cmd *cobra.Command, smoke smokeInput, deps deploy.Deps) error {
			rel.NoSmoke = smoke.none
			switch {
			case smoke.none:
			case smoke.given:
				var err error
				if rel.Smoke, err = smoke.required(); err != nil {
					return err
				}
			case smoke.err == nil:
				// The image's own smoke inference (build-image bakes it in) comes first; the
				// project's fixture is for images built without one.
				rel.DefaultSmoke = smoke.smoke
			}
			if dryRun {
				k, ok := deps.Target.(*kubernetes.Target)
				if !ok {
					return usageError{fmt.Errorf("--dry-run prints Kubernetes manifests: use it with --target kubernetes")}
				}
				return k.DryRun(cmd.Context(), rel, cmd.OutOrStdout())
			}
			var err error
			if deps.Verifier, err = sf.verifier(cmd, g, tf.env, archive); err != nil {
				return err
			}
			if archive != "" && branch == deploy.DeployBranch {
				d, ok := deps.Target.(*docker.Target)
				if !ok {
					return usageError{fmt.Errorf("--image-archive loads into a Docker engine: use it with --target docker")}
				}
				if err := d.LoadImageArchive(cmd.Context(), archive, rel.Image); err != nil {
					return err
				}
			}
			progressive, err := rf.progressive()
			if err != nil {
				return err
			}
			var passed *deploystate.GateRecord
			if gateReport != "" {
				var err error
				if passed, err = gateRecord(gateReport, rel); err != nil {
					return err
				}
			}
			run := startStage(cmd, g, &tf, "deploy", deps.State)
			run.rec.Model.Name, run.rec.Model.Version = rel.ModelName, rel.ModelVersion
			run.rec.Inputs["git_sha"], run.rec.Inputs["image"], run.rec.Inputs["branch"] = rel.GitSHA, rel.Image, branch
			run.rec.Inputs["strategy"] = rf.strategy
			run.announce(cmd)
			fmt.Fprintf(cmd.ErrOrStderr(), "deploying %s (%s@%s, git %s) to %s (%s)\n",
				rel.Image, rel.ModelName, rel.ModelVersion, short(rel.GitSHA), tf.env, deps.Target.Name())
			out, err := deploy.Deploy(cmd.Context(), deps, deploy.DeployRequest{Environment: tf.env, Branch: branch,
				PipelineRun: tf.pipelineRun, Release: rel, Evidence: run.pointer(), Gate: passed, Progressive: progressive})
			printSteps(cmd, out)
			printRollout(cmd, out)
			run.finish(cmd.Context(), cmd, out, err)
			if err != nil {
				return err
			}
			moveEnvironmentAlias(cmd, g, tf.env, tf.pipelineRun, out.Deployment)
			if g.jsonOutput {
				return writeJSON(cmd.OutOrStdout(), out.Deployment)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deployed %s to %s in %s; serving at %s\n", out.Deployment.Image, tf.env, out.Elapsed.Round(time.Millisecond), out.Result.URL)
			return nil
		}),
	}
	tf.register(cmd)
	rf.register(cmd)
	sf.register(cmd)
	bindRelease(cmd, &rel)
	f := cmd.Flags()
	f.BoolVar(&dryRun, "dry-run", false, "print the Kubernetes manifests the deploy would apply, and apply nothing")
	f.StringVar(&gateReport, "gate-report", "", "the quality-report.json of the gate this release passed; recorded with the deployment (promotions out of this environment require it)")
	f.StringVar(&archive, "image-archive", "", "load the image from this tarball into the engine first, tagged --image (no registry needed)")
	f.StringVar(&branch, "branch", firstEnv("MODELSHIP_BRANCH", "GITHUB_REF_NAME", "CI_COMMIT_BRANCH"), "branch of this run; only main deploys (GITHUB_REF_NAME, CI_COMMIT_BRANCH)")
	return cmd
}

func newRollbackCmd(g *globals) *cobra.Command {
	var tf targetFlags
	var reason, to string
	var maxAge time.Duration
	cmd := &cobra.Command{
		Use:   "rollback --reason WHY [--to current|previous]",
		Short: "Put the last good deployment back, within the rollback budget",
		Long: `Rollback reads and validates deploy_state.json and redeploys a recorded deployment, verified like
a deploy. --to current (the default) restores the deployment the state records as live: the
candidate failed its gate or rollout and production must be that again. --to previous goes back
past it to the one before. It runs the smoke inference recorded with that deployment (unless
--smoke-fixture or --no-smoke is given), else the image's own; its image is used from the host
when it is still there.
The third rollback within an hour is not performed: the environment is halted (exit 6) until a
person runs 'modelship state resume'.`,
		Example: `  modelship rollback --env production --reason "quality gate failed for $GIT_SHA"`,
		Args:    requireArgs(cobra.NoArgs),
		RunE: tf.run(g, func(cmd *cobra.Command, smoke smokeInput, deps deploy.Deps) error {
			req := deploy.RollbackRequest{Environment: tf.env, To: deploy.RollbackTo(to), Reason: reason, PipelineRun: tf.pipelineRun,
				MaxStateAge: maxAge, NoSmoke: smoke.none}
			switch {
			case smoke.none:
			case smoke.given:
				var err error
				if req.Smoke, err = smoke.required(); err != nil {
					return err
				}
			case smoke.err == nil:
				// The deployment's own recorded smoke inference comes first; the project's
				// fixture is for states written before those were recorded.
				req.DefaultSmoke = smoke.smoke
			}
			run := startStage(cmd, g, &tf, "rollback", deps.State)
			run.rec.Inputs["to"], run.rec.Inputs["reason"] = to, reason
			run.announce(cmd)
			req.Evidence = run.pointer()
			out, err := deploy.Rollback(cmd.Context(), deps, req)
			printSteps(cmd, out)
			if out != nil {
				run.rec.Model.Name, run.rec.Model.Version = out.Deployment.ModelName, out.Deployment.ModelVersion
				run.rec.Inputs["git_sha"] = out.Deployment.GitSHA
			}
			run.finish(cmd.Context(), cmd, out, err)
			if err != nil {
				return err
			}
			if g.jsonOutput {
				return writeJSON(cmd.OutOrStdout(), out.Deployment)
			}
			how := "redeployed"
			if out.Result.Reused {
				how = "redeployed from the image on the host, nothing pulled"
				if deps.Target.Name() == "kubernetes" {
					how = "restarted (a selector switch to the colour still running it)"
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "rolled %s back to %s (%s@%s, git %s), %s, serving in %s\n", tf.env, out.Deployment.Image,
				out.Deployment.ModelName, out.Deployment.ModelVersion, short(out.Deployment.GitSHA), how, out.Elapsed.Round(time.Millisecond))
			return nil
		}),
	}
	tf.register(cmd)
	cmd.Flags().StringVar(&reason, "reason", "", "why (required; recorded and notified)")
	cmd.Flags().StringVar(&to, "to", string(deploy.ToCurrent), "current or previous")
	cmd.Flags().DurationVar(&maxAge, "max-state-age", 0, "refuse a deploy_state.json older than this (e.g. 1h); 0 is off")
	_ = cmd.MarkFlagRequired("reason")
	return cmd
}

func newManifestsCmd() *cobra.Command {
	var rel deploy.Release
	var kube kubeFlags
	var env string
	cmd := &cobra.Command{
		Use:   "manifests --image REF --model-version V --git-sha SHA",
		Short: "Print the Kubernetes manifests of a first deploy, with no cluster (for review and scanners)",
		Long: `Print what 'deploy --target kubernetes' would apply on a first deploy, from the same flags with
the same defaults, with no cluster: for review and for misconfiguration scanners.`,
		Args: requireArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := kubernetes.RenderManifests(kube.config(env, 0), rel, cmd.OutOrStdout()); err != nil {
				return usageError{err}
			}
			return nil
		},
	}
	bindRelease(cmd, &rel)
	kube.register(cmd)
	cmd.Flags().StringVar(&env, "env", envOr("MODELSHIP_ENVIRONMENT", "production"), "environment (MODELSHIP_ENVIRONMENT)")
	return cmd
}
