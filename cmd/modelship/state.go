package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/modelship/modelship/internal/deploystate"
	"github.com/modelship/modelship/internal/deploystate/store"
)

func newStateCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "state", Short: "Read deploy_state.json and lift a halt"}
	cmd.AddCommand(newStateShowCmd(g), newStateResumeCmd(g))
	return cmd
}

func newStateShowCmd(g *globals) *cobra.Command {
	var env string
	var maxAge time.Duration
	cmd := &cobra.Command{
		Use:   "show --env ENV",
		Short: "Print an environment's deploy state (validated)",
		Args:  requireArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			states, err := g.stateStore()
			if err != nil {
				return err
			}
			st, err := states.Load(cmd.Context(), env, store.LoadOptions{MaxAge: maxAge})
			if err != nil {
				return err
			}
			if g.jsonOutput {
				return writeJSON(cmd.OutOrStdout(), st)
			}
			printState(cmd.OutOrStdout(), st, fmt.Sprintf("s3://%s/%s", states.Bucket(), states.Key(env)))
			return nil
		},
	}
	cmd.Flags().StringVar(&env, "env", envOr("MODELSHIP_ENVIRONMENT", "production"), "environment (MODELSHIP_ENVIRONMENT)")
	cmd.Flags().DurationVar(&maxAge, "max-state-age", 0, "refuse a state last written longer ago than this (e.g. 1h); 0 is off")
	return cmd
}

func printState(w io.Writer, st *deploystate.State, where string) {
	fmt.Fprintf(w, "environment %s (%s, updated %s)\n", st.Environment, where, st.UpdatedAt.Format(time.RFC3339))
	if st.Halt != nil {
		fmt.Fprintf(w, "HALTED since %s: %s\n", st.Halt.At.Format(time.RFC3339), st.Halt.Reason)
	}
	if st.Current == nil {
		fmt.Fprintln(w, "current: nothing deployed")
	} else {
		c := st.Current
		fmt.Fprintf(w, "current: %s@%s git %s image %s deployed %s\n", c.ModelName, c.ModelVersion, short(c.GitSHA), c.Image, c.DeployedAt.Format(time.RFC3339))
		if c.ImageID != "" {
			fmt.Fprintf(w, "  image id: %s\n", c.ImageID)
		}
		if c.Signature != nil {
			fmt.Fprintf(w, "  signature: verified %s at %s with key sha256:%.12s; provenance names git %s, model sha256:%.12s; SBOM attested: %v\n",
				c.Signature.Digest, c.Signature.At.Format(time.RFC3339), c.Signature.KeySHA256, short(c.Signature.GitSHA), c.Signature.ModelSHA256, c.Signature.SBOM)
		} else {
			fmt.Fprintf(w, "  signature: none checked (deployed without --public-key)\n")
		}
		if c.Gate != nil {
			fmt.Fprintf(w, "  gate: passed %s (%s; report sha256:%.12s)\n", c.Gate.At.Format(time.RFC3339), c.Gate.Summary, c.Gate.ReportSHA256)
		}
		if p := c.PromotedFrom; p != nil {
			fmt.Fprintf(w, "  promoted from %s, where it went live %s (evidence %s)\n", p.Environment, p.DeployedAt.Format(time.RFC3339), or(p.Evidence, "none recorded"))
		}
	}
	for i, d := range st.History {
		if i == 5 {
			fmt.Fprintf(w, "  ... %d more in history\n", len(st.History)-5)
			break
		}
		fmt.Fprintf(w, "  before: %s@%s git %s image %s deployed %s\n", d.ModelName, d.ModelVersion, short(d.GitSHA), d.Image, d.DeployedAt.Format(time.RFC3339))
	}
	hourAgo := time.Now().Add(-deploystate.RollbackWindow)
	fmt.Fprintf(w, "rollbacks: %d recorded, %d in the last hour (budget %d), %d failed attempts in the last hour (not counted)\n",
		len(st.Rollbacks), st.RollbacksSince(hourAgo), deploystate.RollbackBudget, st.FailedRollbacksSince(hourAgo))
	printRollouts(w, st.Rollouts)
}

// printRollouts shows the newest canary and shadow rollouts, each step with its analysis.
func printRollouts(w io.Writer, rollouts []deploystate.Rollout) {
	const shown = 3
	if len(rollouts) == 0 {
		return
	}
	fmt.Fprintf(w, "rollouts: %d recorded, newest last\n", len(rollouts))
	for _, r := range rollouts[max(0, len(rollouts)-shown):] {
		fmt.Fprintf(w, "  %s %s %s: %s@%s (%s) against %s, %s to %s\n", r.StartedAt.Format(time.RFC3339), r.Strategy, strings.ToUpper(r.Outcome),
			r.Candidate.ModelName, r.Candidate.ModelVersion, r.Candidate.Image, r.Stable, r.StartedAt.Format("15:04:05"), r.EndedAt.Format("15:04:05"))
		if r.Reason != "" {
			fmt.Fprintf(w, "    reason: %s\n", r.Reason)
		}
		for _, line := range rolloutLines(r) {
			fmt.Fprintf(w, "    %s\n", line)
		}
	}
}

// rolloutLines are a rollout's steps, one line each: the share of traffic, how long, the verdict
// and every check against its limit.
func rolloutLines(r deploystate.Rollout) []string {
	var lines []string
	for i, st := range r.Steps {
		share := fmt.Sprintf("%d%% asked, %.1f%% taken", st.Weight, 100*st.EffectiveWeight)
		if r.Strategy == deploystate.StrategyShadow {
			share = fmt.Sprintf("%.0f%% of live requests mirrored, none answered", 100*st.Mirrored)
		}
		verdict := "passed"
		switch {
		case st.Inconclusive:
			verdict = "INCONCLUSIVE"
		case !st.Passed:
			verdict = "FAILED"
		}
		var checks []string
		for _, c := range st.Checks {
			mark := "ok"
			switch {
			case c.Skipped:
				checks = append(checks, fmt.Sprintf("%s skipped (%s)", c.Name, c.Detail))
				continue
			case !c.Passed:
				mark = "FAILED"
			}
			checks = append(checks, fmt.Sprintf("%s %.4g%s %s %.4g%s %s", c.Name, c.Value, c.Unit, or(c.Op, "vs"), c.Limit, c.Unit, mark))
		}
		lines = append(lines, fmt.Sprintf("step %d: %s, %.0fs, %s: %s", i+1, share, st.Seconds, verdict, strings.Join(checks, "; ")))
	}
	return lines
}

func newStateResumeCmd(g *globals) *cobra.Command {
	var env, by, reason string
	cmd := &cobra.Command{
		Use:   "resume --env ENV --by NAME --reason WHY",
		Short: "Lift a halt so deploys and rollbacks run again (logged in the state)",
		Args:  requireArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			states, err := g.writableStateStore(cmd.Context())
			if err != nil {
				return err
			}
			st, err := states.Resume(cmd.Context(), env, by, reason)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "resumed %s: halt lifted by %s (%s)\n", st.Environment, by, reason)
			return nil
		},
	}
	cmd.Flags().StringVar(&env, "env", envOr("MODELSHIP_ENVIRONMENT", "production"), "environment (MODELSHIP_ENVIRONMENT)")
	cmd.Flags().StringVar(&by, "by", "", "who is resuming (required)")
	cmd.Flags().StringVar(&reason, "reason", "", "why it is safe to go on (required)")
	_ = cmd.MarkFlagRequired("by")
	_ = cmd.MarkFlagRequired("reason")
	return cmd
}

// or is value, or fallback when value is empty.
func or(value, fallback string) string {
	if value == "" {
		return fallback
	}
	return value
}
