// Command modelship is the CLI the pipeline containers run, and people too: the model registry
// (push, pull, ls) and the deploy state (show, resume) on S3-compatible storage.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/modelship/modelship/internal/deploy"
	"github.com/modelship/modelship/internal/deploy/docker"
	"github.com/modelship/modelship/internal/deploy/imageref"
	"github.com/modelship/modelship/internal/deploy/kubernetes"
	"github.com/modelship/modelship/internal/deploystate"
	"github.com/modelship/modelship/internal/gate"
	"github.com/modelship/modelship/internal/ml/inference"
	"github.com/modelship/modelship/internal/plumbing/objstore"
	"github.com/modelship/modelship/internal/project"
	"github.com/modelship/modelship/internal/registry"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// Exit codes, documented in --help and the README.
const (
	exitOK          = 0
	exitFailure     = 1
	exitUsage       = 2
	exitNotFound    = 3
	exitIntegrity   = 4
	exitConflict    = 5
	exitHalted      = 6
	exitUnreachable = 7
	exitRefused     = 8
	exitUnverified  = 9
	exitAborted     = 10
	exitUntrusted   = 11
)

// exitMeanings is the one list of what each exit code means: --help renders it, and a test
// keeps the README's table equal to exitCodesMarkdown.
var exitMeanings = []struct {
	code    int
	meaning string
}{
	{exitOK, "success"},
	{exitFailure, "failure not covered below"},
	{exitUsage, "usage error: a bad flag, name, version, SHA, environment or project file"},
	{exitNotFound, "not found: no such model, version, alias, commit, image or deploy state"},
	{exitIntegrity, "integrity failure: sha256 mismatch, corrupt manifest, `aliases.json`, `deploy_state.json` or baseline, stale state"},
	{exitConflict, "conflict: the version exists with other bytes, or the state kept changing"},
	{exitHalted, "halted: a person must run `modelship state resume`"},
	{exitUnreachable, "unreachable: the S3 endpoint or the Docker engine did not answer"},
	{exitRefused, "refused: deploys run only for `main`; the release's model name or version disagrees with its image; nothing earlier to roll back to; the promotion's source is not live, gated, verified or old enough"},
	{exitUnverified, "verification failed: the new server never got ready or failed its smoke inference; the previous one keeps serving"},
	{exitAborted, "stopped by analysis: a canary aborted (the stable release has all the traffic again; it counts as a rollback) or a shadow candidate was refused"},
	{exitUntrusted, "untrusted: the image or model has no signature, one that does not verify with the public key, or provenance naming another commit or model; nothing was deployed or pulled"},
}

// exitCodesHelp is the list as --help shows it.
func exitCodesHelp() string {
	var b strings.Builder
	b.WriteString("Exit codes:")
	for _, e := range exitMeanings {
		fmt.Fprintf(&b, "\n  %d  %s", e.code, strings.ReplaceAll(e.meaning, "`", "'"))
	}
	return b.String()
}

// exitCodesMarkdown is the list as the README's table.
func exitCodesMarkdown() string {
	var b strings.Builder
	b.WriteString("| code | meaning |\n|---|---|\n")
	for _, e := range exitMeanings {
		fmt.Fprintf(&b, "| %d | %s |\n", e.code, e.meaning)
	}
	return b.String()
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string) int {
	root := newRootCmd()
	// Cobra checks arguments before the pre-run hook and required flags and flag groups after
	// it; the hook checks those early, so any error before the command's own work is a usage error.
	started := false
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		if err := cmd.ValidateRequiredFlags(); err != nil {
			return err
		}
		if err := cmd.ValidateFlagGroups(); err != nil {
			return err
		}
		started = true
		return nil
	}
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	if !started {
		err = usageError{err}
	}
	fmt.Fprintf(os.Stderr, "modelship: %v\n", err)
	return exitCode(err)
}

// usageError marks errors in how the command was called.
type usageError struct{ error }

func (u usageError) Unwrap() error { return u.error }

func exitCode(err error) int {
	var usage usageError
	switch {
	case errors.As(err, &usage), errors.Is(err, registry.ErrInvalidName), errors.Is(err, registry.ErrInvalidInput), errors.Is(err, deploystate.ErrInvalidInput),
		errors.Is(err, inference.ErrInvalidModel), errors.Is(err, deploy.ErrNoSmokeInput), errors.Is(err, kubernetes.ErrCannotSmoke),
		errors.Is(err, project.ErrInvalid), errors.Is(err, deploy.ErrInvalidRollout), errors.Is(err, deploy.ErrStrategyUnsupported),
		errors.Is(err, kubernetes.ErrCannotAnalyse) && !errors.Is(err, deploy.ErrRolloutAborted):
		return exitUsage
	case errors.Is(err, deploystate.ErrHalted):
		return exitHalted
	case isUntrusted(err):
		return exitUntrusted
	case errors.Is(err, deploy.ErrRolloutAborted), errors.Is(err, deploy.ErrShadowRefused):
		return exitAborted
	case errors.Is(err, deploy.ErrNotMain), errors.Is(err, deploy.ErrModelMismatch), errors.Is(err, deploystate.ErrNothingToRollBackTo),
		errors.Is(err, deploy.ErrPromotionRefused), errors.Is(err, docker.ErrNoLiveServer):
		return exitRefused
	case errors.Is(err, deploy.ErrVerification), errors.Is(err, kubernetes.ErrRolloutStuck):
		return exitUnverified
	case errors.Is(err, docker.ErrEngineUnreachable):
		return exitUnreachable
	case errors.Is(err, docker.ErrImageNotFound), errors.Is(err, imageref.ErrNotFound):
		return exitNotFound
	case errors.Is(err, registry.ErrIntegrity), errors.Is(err, deploystate.ErrInvalidState), errors.Is(err, deploystate.ErrStale),
		errors.Is(err, gate.ErrInvalidBaseline):
		return exitIntegrity
	case errors.Is(err, objstore.ErrNotFound), errors.Is(err, objstore.ErrNoSuchBucket), errors.Is(err, deploystate.ErrNoState):
		return exitNotFound
	case errors.Is(err, registry.ErrVersionExists), errors.Is(err, objstore.ErrConflict), errors.Is(err, registry.ErrAmbiguous):
		return exitConflict
	case errors.Is(err, objstore.ErrUnreachable):
		return exitUnreachable
	}
	return exitFailure
}

func newRootCmd() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "modelship",
		Short: "Ship AI models: registry and deploy state on S3-compatible storage",
		Long: `modelship keeps model artifacts and deploy state on S3-compatible storage.

S3 is configured the AWS way: AWS_ENDPOINT_URL_S3 (or AWS_ENDPOINT_URL), AWS_REGION,
AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY. Credentials are read from the environment only
and never printed. An http:// endpoint is plain HTTP; a bare host:port is HTTPS unless
--s3-plain-http is given.

` + exitCodesHelp(),
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	g.stderr = root.ErrOrStderr
	g.register(root)
	root.AddCommand(newModelCmd(g), newStateCmd(g), newBaselineCmd(g), newDeployCmd(g), newRollbackCmd(g), newPromoteCmd(g), newManifestsCmd(), newEvidenceCmd(), newImageCmd(g))
	for _, c := range root.Commands() {
		if c.HasSubCommands() {
			asGroup(c)
		}
	}
	return root
}

// asGroup makes a command that only holds subcommands (model, state, ...) answer a mistyped
// subcommand as one, with cobra's suggestions. Left alone, cobra parses `model pul --name x`
// as flags of `model` and says "unknown flag: --name", which points the wrong way.
func asGroup(c *cobra.Command) {
	c.Args = cobra.ArbitraryArgs
	c.SuggestionsMinimumDistance = 2
	c.FParseErrWhitelist.UnknownFlags = true
	c.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return cmd.Help()
		}
		msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
		if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
			msg += "; did you mean " + strings.Join(s, " or ") + "?"
		}
		return usageError{fmt.Errorf("%s (see %s --help)", msg, cmd.CommandPath())}
	}
}

// requireArgs wraps cobra's argument checks so a wrong count is a usage error.
func requireArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return usageError{err}
		}
		return nil
	}
}
