package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/modelship/modelship/internal/deploy"
	"github.com/modelship/modelship/internal/deploystate"
	"github.com/modelship/modelship/internal/gate"
	"github.com/modelship/modelship/internal/registry"
)

// gateRecord reads the quality report a deploy is given and checks it is a pass for the model
// being deployed: a deploy records the gate only when it is this release's.
func gateRecord(path string, rel deploy.Release) (*deploystate.GateRecord, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, usageError{fmt.Errorf("--gate-report: %w", err)}
	}
	r, err := gate.ReadReport(path)
	if err != nil {
		return nil, usageError{fmt.Errorf("--gate-report %s: %w", path, err)}
	}
	switch {
	case !r.Passed:
		return nil, usageError{fmt.Errorf("--gate-report %s records a failed gate (%s); a failed candidate is not deployed", path, r.FailureSummary())}
	case r.Model.Version != rel.ModelVersion || (r.Model.Name != "" && rel.ModelName != "" && r.Model.Name != rel.ModelName):
		return nil, usageError{fmt.Errorf("--gate-report %s gated %s@%s, not the %s@%s being deployed", path, r.Model.Name, r.Model.Version, rel.ModelName, rel.ModelVersion)}
	}
	sum := sha256.Sum256(raw)
	return &deploystate.GateRecord{Passed: true, Summary: checkSummary(r.Checks), ReportSHA256: hex.EncodeToString(sum[:]), At: r.StartedAt}, nil
}

// checkSummary is the gate's checks on one line: "accuracy 0.9733 >= 0.85, ...".
func checkSummary(checks []gate.Check) string {
	parts := make([]string, 0, len(checks))
	for _, c := range checks {
		parts = append(parts, fmt.Sprintf("%s %.4g %s %.4g", c.Name, c.Value, c.Op, c.Threshold))
	}
	return strings.Join(parts, ", ")
}

// moveEnvironmentAlias points the model's alias named for the environment (production, staging)
// at what now serves there, so `--alias production` pulls and gates what production runs. The
// deploy is live and recorded whatever happens here; a failure is reported, not fatal.
func moveEnvironmentAlias(cmd *cobra.Command, g *globals, env, run string, d deploystate.Deployment) {
	warn := func(err error) {
		fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s@%s serves in %s, but the model alias %q was not moved: %v\n", d.ModelName, d.ModelVersion, env, env, err)
	}
	if err := registry.ValidateAlias(env); err != nil {
		warn(err)
		return
	}
	reg, err := g.registry()
	if err != nil {
		warn(err)
		return
	}
	by := or(firstEnv("GITHUB_ACTOR", "GITLAB_USER_LOGIN", "USER"), "modelship")
	reason := fmt.Sprintf("%s of git %s went live in %s (pipeline run %s)", cmd.Name(), short(d.GitSHA), env, or(run, "none"))
	if _, err := reg.SetAlias(cmd.Context(), d.ModelName, env, d.ModelVersion, by, reason); err != nil {
		warn(err)
		return
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "model alias %s of %s now points at %s\n", env, d.ModelName, d.ModelVersion)
}

func newPromoteCmd(g *globals) *cobra.Command {
	var tf targetFlags
	var sf signatureFlags
	var from string
	var minAge time.Duration
	cmd := &cobra.Command{
		Use:   "promote --from staging --to production",
		Short: "Deploy to one environment exactly what another runs, verified, rebuilding nothing",
		Long: `Promote deploys to --to the image (by digest) and model version that --from's deploy_state.json
records as live, with the smoke inference it passed there, and records the promotion with a link
to the source deployment and its evidence. Nothing is rebuilt or pulled from the model registry.
Refused (exit 8) unless the source deployment passed its quality gate (deployed by ship, or by
deploy --gate-report) and its verification with a smoke inference, and has been live at least
--min-age; refused (exit 6) while either environment is halted. The target is given as for
deploy (--target, --docker-host, --kubeconfig, --publish, ...).`,
		Example: `  modelship promote --from staging --to production --min-age 30m --docker-host ssh://deploy@prod-1`,
		Args:    requireArgs(cobra.NoArgs),
		RunE: tf.run(g, func(cmd *cobra.Command, _ smokeInput, deps deploy.Deps) error {
			var err error
			if deps.Verifier, err = sf.verifier(cmd, g, tf.env, ""); err != nil {
				return err
			}
			run := startStage(cmd, g, &tf, "promote", deps.State)
			run.rec.Inputs["from"], run.rec.Inputs["min_age"] = from, minAge.String()
			run.announce(cmd)
			fmt.Fprintf(cmd.ErrOrStderr(), "promoting what %s runs to %s (%s)\n", from, tf.env, deps.Target.Name())
			out, err := deploy.Promote(cmd.Context(), deps, deploy.PromoteRequest{From: from, To: tf.env, MinAge: minAge,
				PipelineRun: tf.pipelineRun, Evidence: run.pointer()})
			if out != nil {
				run.rec.Model.Name, run.rec.Model.Version = out.Deployment.ModelName, out.Deployment.ModelVersion
				run.rec.Inputs["image"], run.rec.Inputs["git_sha"] = out.Deployment.Image, out.Deployment.GitSHA
			}
			printSteps(cmd, out)
			run.finish(cmd.Context(), cmd, out, err)
			if err != nil {
				return err
			}
			moveEnvironmentAlias(cmd, g, tf.env, tf.pipelineRun, out.Deployment)
			if g.jsonOutput {
				return writeJSON(cmd.OutOrStdout(), out.Deployment)
			}
			d := out.Deployment
			fmt.Fprintf(cmd.OutOrStdout(), "promoted %s (%s@%s, git %s) from %s to %s in %s; serving at %s\n",
				d.Image, d.ModelName, d.ModelVersion, short(d.GitSHA), from, tf.env, out.Elapsed.Round(time.Millisecond), out.Result.URL)
			return nil
		}),
	}
	tf.register(cmd)
	sf.register(cmd)
	f := cmd.Flags()
	f.StringVar(&from, "from", "", "environment whose live, verified deployment is promoted (e.g. staging)")
	f.DurationVar(&minAge, "min-age", 15*time.Minute, "how long the source deployment must have been live")
	// --to is the target environment: --env under the name a promotion reads best with.
	f.Lookup("env").Hidden = true
	f.StringVar(&tf.env, "to", envOr("MODELSHIP_ENVIRONMENT", "production"), "environment to promote to (MODELSHIP_ENVIRONMENT)")
	_ = cmd.MarkFlagRequired("from")
	return cmd
}
