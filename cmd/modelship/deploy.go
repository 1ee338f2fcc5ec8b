package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/docker/docker/client"
	"github.com/spf13/cobra"

	"github.com/modelship/modelship/internal/deploy"
	"github.com/modelship/modelship/internal/notify"
)

// targetFlags are the deploy target settings shared by deploy and rollback.
type targetFlags struct {
	env          string
	target       string
	dockerHost   string
	publish      string
	readyTimeout time.Duration
	checkHost    string
	smokeFixture string
	pipelineRun  string
}

func (f *targetFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.env, "env", envOr("MODELSHIP_ENVIRONMENT", "production"), "environment (MODELSHIP_ENVIRONMENT)")
	fl.StringVar(&f.target, "target", envOr("MODELSHIP_TARGET", "docker"), "deploy target: docker (MODELSHIP_TARGET)")
	fl.StringVar(&f.dockerHost, "docker-host", os.Getenv("DOCKER_HOST"), "Docker engine: unix:///path or tcp://host:port (DOCKER_HOST)")
	fl.StringVar(&f.publish, "publish", envOr("MODELSHIP_PUBLISH", "127.0.0.1:8000"), "host address the live server is published on (MODELSHIP_PUBLISH)")
	fl.StringVar(&f.checkHost, "check-host", os.Getenv("MODELSHIP_CHECK_HOST"), "where to reach new servers to verify them: a host, or 'container' for their Docker network address (MODELSHIP_CHECK_HOST; default: the engine's host)")
	fl.DurationVar(&f.readyTimeout, "ready-timeout", 60*time.Second, "how long a new server may take to become ready")
	fl.StringVar(&f.smokeFixture, "smoke-fixture", envOr("MODELSHIP_SMOKE_FIXTURE", "tests/fixtures/digits_validation.json"), "fixture whose first sample is the smoke inference (MODELSHIP_SMOKE_FIXTURE)")
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
func (f *targetFlags) deps(g *globals, stderr io.Writer) (deploy.Deps, *client.Client, error) {
	if f.target != "docker" {
		return deploy.Deps{}, nil, usageError{fmt.Errorf("--target %q: this modelship deploys to docker", f.target)}
	}
	opts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if f.dockerHost != "" {
		opts = append(opts, client.WithHost(f.dockerHost))
	}
	cli, err := client.NewClientWithOpts(opts...)
	if err != nil {
		return deploy.Deps{}, nil, usageError{fmt.Errorf("docker client for %q: %w", f.dockerHost, err)}
	}
	target, err := deploy.NewDocker(deploy.DockerConfig{Client: cli, Environment: f.env, Publish: f.publish, ReadyTimeout: f.readyTimeout, CheckHost: f.checkHost})
	if err != nil {
		cli.Close()
		return deploy.Deps{}, nil, usageError{err}
	}
	store, err := g.stateStore()
	if err != nil {
		cli.Close()
		return deploy.Deps{}, nil, err
	}
	n, err := notify.NewWebhook(os.Getenv("MODELSHIP_WEBHOOK_URL"), slog.New(slog.NewTextHandler(stderr, nil)))
	if err != nil {
		cli.Close()
		return deploy.Deps{}, nil, usageError{err}
	}
	return deploy.Deps{Target: target, State: store, Notifier: n}, cli, nil
}

func newDeployCmd(g *globals) *cobra.Command {
	var tf targetFlags
	var rel deploy.Release
	var branch, archive string
	cmd := &cobra.Command{
		Use:   "deploy --image REF --model-version V --git-sha SHA --branch main",
		Short: "Roll a model server image out, verify it, and record it in deploy_state.json",
		Long: `Deploy runs only for the main branch and only while the environment is not halted. The new
server starts beside the live one, must answer ready and get the smoke inference right, and only
then takes the published port; if anything fails the previous server keeps (or gets back) the
traffic and the command exits 9. On success deploy_state.json records the commit, the image with
its digest, the model version and the time.`,
		Example: `  modelship deploy --image registry.example.com/digits:$GIT_SHA --model-name digits \
    --model-version 1.0.0 --git-sha $GIT_SHA --branch main --env production --publish 0.0.0.0:8000`,
		Args: requireArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			smoke, err := deploy.SmokeFromFixture(tf.smokeFixture)
			if err != nil {
				return usageError{err}
			}
			rel.Smoke = smoke
			deps, cli, err := tf.deps(g, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer cli.Close()
			if archive != "" && branch == deploy.DeployBranch {
				if err := deploy.LoadImageArchive(cmd.Context(), cli, archive, rel.Image); err != nil {
					return err
				}
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "deploying %s (%s@%s, git %s) to %s on %s, publish %s\n",
				rel.Image, rel.ModelName, rel.ModelVersion, short(rel.GitSHA), tf.env, cli.DaemonHost(), tf.publish)
			out, err := deploy.Deploy(cmd.Context(), deps, deploy.DeployRequest{Environment: tf.env, Branch: branch, PipelineRun: tf.pipelineRun, Release: rel})
			if out != nil && out.Result != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "steps: %s\n", out.Result.Steps)
			}
			if err != nil {
				return err
			}
			if g.jsonOutput {
				return writeJSON(cmd.OutOrStdout(), out.Deployment)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deployed %s to %s in %s; serving at %s\n", out.Deployment.Image, tf.env, out.Elapsed.Round(time.Millisecond), out.Result.URL)
			return nil
		},
	}
	tf.register(cmd)
	f := cmd.Flags()
	f.StringVar(&rel.Image, "image", "", "image reference to deploy, <registry>/<name>:<git-sha> (required)")
	f.StringVar(&rel.ModelName, "model-name", envOr("MODELSHIP_MODEL_NAME", "digits"), "model name the server serves (MODELSHIP_MODEL_NAME)")
	f.StringVar(&rel.ModelVersion, "model-version", "", "model version in the image (required)")
	f.StringVar(&rel.GitSHA, "git-sha", "", "commit the image was built from (required)")
	f.StringVar(&archive, "image-archive", "", "load the image from this tarball into the engine first, tagged --image (no registry needed)")
	f.StringVar(&branch, "branch", firstEnv("MODELSHIP_BRANCH", "GITHUB_REF_NAME", "CI_COMMIT_BRANCH"), "branch of this run; only main deploys (GITHUB_REF_NAME, CI_COMMIT_BRANCH)")
	for _, name := range []string{"image", "model-version", "git-sha"} {
		_ = cmd.MarkFlagRequired(name)
	}
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
past it to the one before. A stopped container of that image is started again instead of pulled.
The third rollback within an hour is not performed: the environment is halted (exit 6) until a
person runs 'modelship state resume'.`,
		Example: `  modelship rollback --env production --reason "quality gate failed for $GIT_SHA"`,
		Args:    requireArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			smoke, err := deploy.SmokeFromFixture(tf.smokeFixture)
			if err != nil {
				return usageError{err}
			}
			deps, cli, err := tf.deps(g, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer cli.Close()
			out, err := deploy.Rollback(cmd.Context(), deps, deploy.RollbackRequest{Environment: tf.env, To: deploy.RollbackTo(to),
				Reason: reason, PipelineRun: tf.pipelineRun, Smoke: smoke, MaxStateAge: maxAge})
			if out != nil && out.Result != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "steps: %s\n", out.Result.Steps)
			}
			if err != nil {
				return err
			}
			if g.jsonOutput {
				return writeJSON(cmd.OutOrStdout(), out.Deployment)
			}
			how := "pulled and started"
			if out.Result.Reused {
				how = "restarted"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "rolled %s back to %s (%s@%s, git %s), %s, serving in %s\n", tf.env, out.Deployment.Image,
				out.Deployment.ModelName, out.Deployment.ModelVersion, short(out.Deployment.GitSHA), how, out.Elapsed.Round(time.Millisecond))
			return nil
		},
	}
	tf.register(cmd)
	cmd.Flags().StringVar(&reason, "reason", "", "why (required; recorded and notified)")
	cmd.Flags().StringVar(&to, "to", string(deploy.ToCurrent), "current or previous")
	cmd.Flags().DurationVar(&maxAge, "max-state-age", 0, "refuse a deploy_state.json older than this (e.g. 1h); 0 is off")
	_ = cmd.MarkFlagRequired("reason")
	return cmd
}
