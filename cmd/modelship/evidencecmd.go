package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/modelship/modelship/internal/evidence"
)

// newEvidenceCmd writes the evidence of a stage that runs outside this binary (the Dagger
// module's build-image), with the same versions, redaction and format as the others.
func newEvidenceCmd() *cobra.Command {
	var stage, errText, out string
	var model evidence.Model
	var inputs, outputs, config []string
	cmd := &cobra.Command{
		Use:   "evidence --stage NAME [--input K=V]... [--output K=V]... --out FILE",
		Short: "Write a stage's evidence.json (for stages run by the Dagger module)",
		Args:  requireArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			rec := evidence.New(stage, version, os.Args)
			rec.Model = model
			for _, kv := range []struct {
				pairs []string
				into  map[string]string
			}{{inputs, rec.Inputs}, {config, rec.Config}} {
				for _, p := range kv.pairs {
					k, v, ok := strings.Cut(p, "=")
					if !ok {
						return usageError{fmt.Errorf("%q: want KEY=VALUE", p)}
					}
					kv.into[k] = v
				}
			}
			for _, p := range outputs {
				k, v, ok := strings.Cut(p, "=")
				if !ok {
					return usageError{fmt.Errorf("%q: want KEY=VALUE", p)}
				}
				rec.Outputs[k] = v
			}
			var err error
			if errText != "" {
				err = errors.New(errText)
			}
			rec.Finish(err)
			if out == "" {
				out = filepath.Join(envOr("MODELSHIP_EVIDENCE_DIR", "."), evidence.FileName)
			}
			fmt.Fprintln(cmd.ErrOrStderr(), rec.Banner())
			return rec.Write(out, evidence.SecretsFromEnv())
		},
	}
	f := cmd.Flags()
	f.StringVar(&stage, "stage", "", "stage name, e.g. build-image (required)")
	f.StringVar(&model.Name, "model-name", "", "model name")
	f.StringVar(&model.Version, "model-version", "", "model version")
	f.StringVar(&model.SHA256, "model-sha256", "", "model sha256")
	f.StringArrayVar(&inputs, "input", nil, "KEY=VALUE input (repeatable)")
	f.StringArrayVar(&outputs, "output", nil, "KEY=VALUE output (repeatable)")
	f.StringArrayVar(&config, "config", nil, "KEY=VALUE setting and its source (repeatable)")
	f.StringVar(&errText, "error", "", "the stage's error; empty means it succeeded")
	f.StringVar(&out, "out", "", "file to write (default: $MODELSHIP_EVIDENCE_DIR/evidence.json)")
	_ = cmd.MarkFlagRequired("stage")
	return cmd
}
