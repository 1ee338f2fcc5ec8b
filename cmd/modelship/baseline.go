package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/modelship/modelship/internal/gate"
	"github.com/modelship/modelship/internal/ml/dataset"
)

func newBaselineCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "baseline", Short: "Manage model_baseline.json, the quality gate's floors and production metrics"}
	cmd.AddCommand(newBaselinePromoteCmd(g))
	return cmd
}

func newBaselinePromoteCmd(g *globals) *cobra.Command {
	var reportPath, baselinePath, by string
	cmd := &cobra.Command{
		Use:   "promote --report reports/quality/quality-report.json --by NAME",
		Short: "Make a passing candidate's metrics the production baseline",
		Long: `Copy the model identity and metrics of a passing quality report into the "production" part of
model_baseline.json, so later candidates are compared with it. Floors and allowed regressions are
not touched. A failed report is refused. Commit the changed file to make it take effect.`,
		Args: requireArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			report, err := gate.ReadReport(reportPath)
			if err != nil {
				return err
			}
			b, err := gate.LoadBaseline(baselinePath)
			if err != nil {
				return err
			}
			old := b.Production
			if err := b.Promote(report, by, time.Now()); err != nil {
				return err
			}
			if err := b.Save(baselinePath); err != nil {
				return err
			}
			if g.jsonOutput {
				return writeJSON(cmd.OutOrStdout(), b)
			}
			if old != nil {
				fmt.Fprintf(cmd.OutOrStdout(), "production was %s\n", summarize(b.TaskOf(), old))
			}
			fmt.Fprintf(cmd.OutOrStdout(), "production is now %s (written to %s; commit it)\n", summarize(b.TaskOf(), b.Production), baselinePath)
			return nil
		},
	}
	cmd.Flags().StringVar(&reportPath, "report", "reports/quality/quality-report.json", "quality-report.json of a passing gate run")
	cmd.Flags().StringVar(&baselinePath, "baseline", "model_baseline.json", "the baseline file to update")
	cmd.Flags().StringVar(&by, "by", "", "who promotes (required; recorded)")
	_ = cmd.MarkFlagRequired("by")
	return cmd
}

// summarize names a production record and the metrics its task is judged by.
func summarize(task string, p *gate.Production) string {
	if task == dataset.TaskRegression {
		return fmt.Sprintf("%s: MAE %.4f, RMSE %.4f, R² %.4f, p95 %.3f ms", p.Version, p.MAE, p.RMSE, p.R2, p.P95LatencyMS)
	}
	return fmt.Sprintf("%s: accuracy %.4f, p95 %.3f ms", p.Version, p.Accuracy, p.P95LatencyMS)
}
