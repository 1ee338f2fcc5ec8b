package main

import (
	"fmt"
	"io"
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
