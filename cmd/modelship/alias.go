package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/modelship/modelship/internal/registry"
)

func newModelAliasCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "alias",
		Short: "Name versions by role (champion, production): set, rm, ls",
		Long: `An alias names the role a version plays, so pipelines and people ask for the role:
'modelship model pull --name digits --alias production'. Every change is logged with who and why,
and written with a compare-and-swap, so two people moving aliases at once lose nothing.`,
	}
	cmd.AddCommand(newModelAliasSetCmd(g), newModelAliasRmCmd(g), newModelAliasLsCmd(g))
	// newRootCmd makes the top-level groups answer a mistyped subcommand; this one is a level down.
	asGroup(cmd)
	return cmd
}

// aliasChangeOptions are what every alias change names: the model, the alias, who and why.
type aliasChangeOptions struct {
	name, alias, by, reason string
}

func (o *aliasChangeOptions) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&o.name, "name", "", "model name (required)")
	f.StringVar(&o.alias, "alias", "", "alias, e.g. production or champion (required)")
	f.StringVar(&o.by, "by", "", "who is making the change (required)")
	f.StringVar(&o.reason, "reason", "", "why (required; kept in the alias log)")
	for _, name := range []string{"name", "alias", "by", "reason"} {
		_ = cmd.MarkFlagRequired(name)
	}
}

func newModelAliasSetCmd(g *globals) *cobra.Command {
	var opts aliasChangeOptions
	var version string
	cmd := &cobra.Command{
		Use:   "set --name NAME --alias ALIAS --version VERSION --by NAME --reason WHY",
		Short: "Point an alias at an existing version (logged)",
		Long: `Point ALIAS at NAME@VERSION, creating the alias or moving it. The version must exist (exit 3
otherwise). The change is logged with who (--by), why (--reason) and the version the alias left.`,
		Example: `  modelship model alias set --name digits --alias production --version 1.2.0 --by alice --reason "won the A/B test"`,
		Args:    requireArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			reg, err := g.registry()
			if err != nil {
				return err
			}
			c, err := reg.SetAlias(cmd.Context(), opts.name, opts.alias, version, opts.by, opts.reason)
			if err != nil {
				return err
			}
			if g.jsonOutput {
				return writeJSON(cmd.OutOrStdout(), c)
			}
			from := "new"
			if c.From != "" {
				from = "was " + c.From
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s alias %s → %s (%s), set by %s: %s\n", opts.name, c.Alias, c.To, from, c.By, c.Reason)
			return nil
		},
	}
	opts.register(cmd)
	cmd.Flags().StringVar(&version, "version", "", "version the alias points at (required; must exist)")
	_ = cmd.MarkFlagRequired("version")
	return cmd
}

func newModelAliasRmCmd(g *globals) *cobra.Command {
	var opts aliasChangeOptions
	cmd := &cobra.Command{
		Use:     "rm --name NAME --alias ALIAS --by NAME --reason WHY",
		Short:   "Remove an alias (logged); its version stays",
		Example: `  modelship model alias rm --name digits --alias challenger --by bob --reason "experiment over"`,
		Args:    requireArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			reg, err := g.registry()
			if err != nil {
				return err
			}
			c, err := reg.RemoveAlias(cmd.Context(), opts.name, opts.alias, opts.by, opts.reason)
			if err != nil {
				return err
			}
			if g.jsonOutput {
				return writeJSON(cmd.OutOrStdout(), c)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s alias %s removed (was %s), by %s: %s\n", opts.name, c.Alias, c.From, c.By, c.Reason)
			return nil
		},
	}
	opts.register(cmd)
	return cmd
}

func newModelAliasLsCmd(g *globals) *cobra.Command {
	var name string
	var history bool
	cmd := &cobra.Command{
		Use:   "ls --name NAME [--history]",
		Short: "List a model's aliases; --history adds the log of changes",
		Args:  requireArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			reg, err := g.registry()
			if err != nil {
				return err
			}
			set, err := reg.Aliases(cmd.Context(), name)
			if err != nil {
				return err
			}
			if !history {
				set.Log = nil
			}
			if g.jsonOutput {
				return writeJSON(cmd.OutOrStdout(), set)
			}
			return printAliases(cmd.OutOrStdout(), set, reg.Bucket())
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "model name (required)")
	cmd.Flags().BoolVar(&history, "history", false, "also print the log of changes, oldest first (the newest "+fmt.Sprint(registry.AliasLogLimit)+" are kept)")
	_ = cmd.MarkFlagRequired("name")
	return cmd
}

// printAliases writes the aliases as a table, by name, then the log if it was kept.
func printAliases(w io.Writer, set *registry.AliasSet, bucket string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if len(set.Aliases) == 0 {
		fmt.Fprintf(tw, "model %s has no aliases in s3://%s\n", set.Model, bucket)
	} else {
		names := make([]string, 0, len(set.Aliases))
		for a := range set.Aliases {
			names = append(names, a)
		}
		sort.Strings(names)
		fmt.Fprintln(tw, "ALIAS\tVERSION\tSET BY\tSET AT")
		for _, a := range names {
			t := set.Aliases[a]
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", a, t.Version, t.SetBy, t.SetAt.Format(time.RFC3339))
		}
	}
	if len(set.Log) > 0 {
		fmt.Fprintln(tw, "\nAT\tACTION\tALIAS\tFROM\tTO\tBY\tREASON")
		for _, c := range set.Log {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.At.Format(time.RFC3339), c.Action, c.Alias, dash(c.From), dash(c.To), oneLine(c.By), oneLine(c.Reason))
		}
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// oneLine keeps a free-text field to one table row: a reason may hold tabs and newlines.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
