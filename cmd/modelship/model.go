package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/modelship/modelship/internal/ml/inference"
	"github.com/modelship/modelship/internal/plumbing/atomicfile"
	"github.com/modelship/modelship/internal/project"
	"github.com/modelship/modelship/internal/registry"
	"github.com/modelship/modelship/internal/registry/manifest"
	"github.com/modelship/modelship/internal/signing"
)

func newModelCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "model", Short: "Push, pull and list model versions in the registry"}
	cmd.AddCommand(newModelPushCmd(g), newModelPullCmd(g), newModelResolveCmd(g), newModelLsCmd(g), newModelInspectCmd(g), newModelAliasCmd(g), newModelSignCmd(g))
	return cmd
}

func newModelPushCmd(g *globals) *cobra.Command {
	var opts registry.PushOptions
	var meta []string
	var skipLoadCheck bool
	var key string
	cmd := &cobra.Command{
		Use:   "push FILE --name NAME --version VERSION --git-sha SHA",
		Short: "Store a model file as an immutable version",
		Long: `Store a model file as NAME@VERSION, tagged with the git SHA it was built from.
A version is written once: pushing the same bytes again does nothing, other bytes fail (exit 5).
The file must pass the model server's own ONNX checks (exit 2 otherwise), so no version is
ever a file the server cannot serve; --skip-load-check stores other artifacts. A model gonnx
cannot run (an opset other than 13, or an operator it lacks) is stored too: ONNX Runtime
serves it ('modelship model inspect' says which backend will).`,
		Example: `  modelship model push models/digits-reference.onnx --name digits --version 1.0.0 \
    --git-sha $(git rev-parse HEAD) --metadata accuracy=0.9733 --metadata framework=onnx --gzip`,
		Args: requireArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			md, err := parseMetadata(meta)
			if err != nil {
				return err
			}
			opts.Metadata = md
			if !skipLoadCheck {
				if _, err := inspectFile(args[0]); err != nil {
					return fmt.Errorf("%w; nothing was pushed (the server could not serve it; --skip-load-check stores an artifact that is not ONNX)", err)
				}
			}
			if key != "" {
				if opts.Signer, err = signing.LoadSignerFile(key); err != nil {
					return usageError{err}
				}
			}
			reg, err := g.registry()
			if err != nil {
				return err
			}
			if err := reg.EnsureBucket(cmd.Context()); err != nil {
				return err
			}
			start := time.Now()
			res, err := reg.Push(cmd.Context(), args[0], opts)
			if err != nil {
				return err
			}
			if g.jsonOutput {
				return writeJSON(cmd.OutOrStdout(), res)
			}
			m := res.Manifest
			if res.Signed {
				defer fmt.Fprintf(cmd.OutOrStdout(), "signed %s@%s\n", m.Name, m.Version)
			}
			if res.AlreadyExisted {
				fmt.Fprintf(cmd.OutOrStdout(), "%s@%s already holds these bytes (sha256:%s); nothing uploaded\n", m.Name, m.Version, m.SHA256)
				return nil
			}
			stored := "uncompressed"
			if m.Compression == "gzip" {
				stored = fmt.Sprintf("gzip'd to %d bytes", m.StoredSize)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "pushed %s@%s (git %s) sha256:%s, %d bytes stored %s, %d bytes uploaded in %s\n",
				m.Name, m.Version, short(m.GitSHA), m.SHA256, m.Size, stored, res.BytesUploaded, time.Since(start).Round(time.Millisecond))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Name, "name", "", "model name (required)")
	f.StringVar(&opts.Version, "version", "", "version to create (required; immutable)")
	f.StringVar(&opts.GitSHA, "git-sha", "", "full commit SHA the model comes from (required)")
	f.StringArrayVar(&meta, "metadata", nil, "KEY=VALUE to record with the version (repeatable)")
	f.BoolVar(&opts.Gzip, "gzip", false, "store gzip-compressed (pull decompresses)")
	f.BoolVar(&skipLoadCheck, "skip-load-check", false, "store the file even if the server's ONNX loader cannot load it (artifacts that are not ONNX)")
	f.StringVar(&key, "signing-key", os.Getenv("MODELSHIP_SIGNING_KEY"), "cosign private key to sign the version with, its password in COSIGN_PASSWORD; pulls with --public-key then accept it (MODELSHIP_SIGNING_KEY)")
	for _, name := range []string{"name", "version", "git-sha"} {
		_ = cmd.MarkFlagRequired(name)
	}
	return cmd
}

func parseMetadata(pairs []string) (map[string]string, error) {
	if len(pairs) == 0 {
		return nil, nil
	}
	md := map[string]string{}
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return nil, usageError{fmt.Errorf("--metadata %q: want KEY=VALUE", p)}
		}
		md[k] = v
	}
	return md, nil
}

func newModelPullCmd(g *globals) *cobra.Command {
	var opts refOptions
	var out, publicKey, sigOut string
	cmd := &cobra.Command{
		Use:   "pull --name NAME [--version VERSION | --alias ALIAS | --git-sha SHA [--pinned-from modelship.json]] [-o FILE]",
		Short: "Fetch a model version, verified by sha256, through the local cache",
		Long: `Fetch NAME@VERSION (default: latest), the version an alias points at (--alias production), or
the newest version pushed from a git SHA (7+ digits). With --pinned-from, a commit that pushed
no model gets the version that file pins (model.version), so a code-only commit ships the
pinned model.
Every byte is checked against the sha256 recorded at push; a mismatch fails (exit 4) and writes
nothing. A second pull of the same digest is served from the cache and transfers nothing.`,
		Example: `  modelship model pull --name digits --git-sha $(git rev-parse HEAD) --pinned-from modelship.json -o build/model.onnx`,
		Args:    requireArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ref, reg, err := opts.open(g)
			if err != nil {
				return err
			}
			start := time.Now()
			res, err := pull(cmd.Context(), reg, ref, out, publicKey, sigOut)
			if err != nil {
				return err
			}
			if g.jsonOutput {
				return writeJSON(cmd.OutOrStdout(), res)
			}
			source := fmt.Sprintf("downloaded, %d bytes transferred", res.BytesDownloaded)
			if res.CacheHit {
				source = "cache hit, 0 bytes transferred"
			}
			m := res.Manifest
			fmt.Fprintf(cmd.OutOrStdout(), "pulled %s@%s (git %s) sha256:%s to %s: %s in %s\n",
				m.Name, m.Version, short(m.GitSHA), m.SHA256, res.Path, source, time.Since(start).Round(time.Millisecond))
			if res.ResolvedBy == manifest.ResolvedByPin {
				fmt.Fprintf(cmd.OutOrStdout(), "no version was pushed from git %s: %s pins %s\n", short(ref.GitSHA), opts.pinnedFrom, m.Version)
			}
			if ref.Alias != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "chosen by %s\n", res.ResolvedBy)
			}
			return nil
		},
	}
	opts.register(cmd)
	cmd.Flags().StringVarP(&out, "output", "o", "", "where to write the model (default: print the cache path)")
	cmd.Flags().StringVar(&publicKey, "public-key", os.Getenv("MODELSHIP_PUBLIC_KEY"), "cosign public key the version's signature must verify with; unsigned, wrong-key or changed versions are refused (exit 11) and nothing is written (MODELSHIP_PUBLIC_KEY)")
	cmd.Flags().StringVar(&sigOut, "signature-out", "", "write the verified signature here (needs --public-key), for the model server's -model-signature")
	return cmd
}

// pull is a pull, verified against publicKey when one is given, the signature then written to
// sigOut for the server to check its copy against.
func pull(ctx context.Context, reg *registry.Registry, ref registry.Ref, out, publicKey, sigOut string) (*registry.PullResult, error) {
	if publicKey == "" {
		if sigOut != "" {
			return nil, usageError{errors.New("--signature-out writes a verified signature: give --public-key too")}
		}
		return reg.Pull(ctx, ref, out)
	}
	v, err := signing.LoadVerifierFile(publicKey)
	if err != nil {
		return nil, usageError{err}
	}
	res, signed, err := reg.PullVerified(ctx, ref, out, v)
	if err != nil {
		return nil, err
	}
	if sigOut != "" {
		if err := atomicfile.Write(sigOut, signed.Envelope); err != nil {
			return nil, fmt.Errorf("write the signature of %s@%s: %w", res.Manifest.Name, res.Manifest.Version, err)
		}
	}
	return res, nil
}

func newModelSignCmd(g *globals) *cobra.Command {
	var name, version, key string
	cmd := &cobra.Command{
		Use:   "sign --name NAME --version VERSION --signing-key cosign.key",
		Short: "Sign a stored version (one pushed without --signing-key, or to sign with a new key)",
		Args:  requireArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			sv, err := signing.LoadSignerFile(key)
			if err != nil {
				return usageError{err}
			}
			reg, err := g.registry()
			if err != nil {
				return err
			}
			if err := reg.Sign(cmd.Context(), name, version, sv); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "signed %s@%s\n", name, version)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&name, "name", "", "model name (required)")
	f.StringVar(&version, "version", "", "version (required)")
	f.StringVar(&key, "signing-key", os.Getenv("MODELSHIP_SIGNING_KEY"), "cosign private key, its password in COSIGN_PASSWORD (MODELSHIP_SIGNING_KEY)")
	for _, n := range []string{"name", "version", "signing-key"} {
		_ = cmd.MarkFlagRequired(n)
	}
	return cmd
}

// refOptions select a model version on pull and resolve: by version, "latest", alias, or git
// SHA with the project file's pin as the fallback.
type refOptions struct {
	ref        registry.Ref
	pinnedFrom string
}

func (o *refOptions) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&o.ref.Name, "name", "", "model name (required)")
	f.StringVar(&o.ref.Version, "version", "", "version, or 'latest' (the default)")
	f.StringVar(&o.ref.GitSHA, "git-sha", "", "commit SHA the version was pushed from (7+ hex digits)")
	f.StringVar(&o.ref.Alias, "alias", "", "alias whose version to take (production, champion, ...; 'model alias ls' lists them)")
	f.StringVar(&o.pinnedFrom, "pinned-from", "", "project file whose model.version a --git-sha that pushed no model falls back to (modelship.json)")
	_ = cmd.MarkFlagRequired("name")
	cmd.MarkFlagsMutuallyExclusive("version", "git-sha")
	cmd.MarkFlagsMutuallyExclusive("version", "pinned-from")
	cmd.MarkFlagsMutuallyExclusive("alias", "version")
	cmd.MarkFlagsMutuallyExclusive("alias", "git-sha")
	cmd.MarkFlagsMutuallyExclusive("alias", "pinned-from")
}

// resolved is the Ref to look up: the pin read, and "latest" when nothing else was asked for.
func (o *refOptions) resolved() (registry.Ref, error) {
	ref := o.ref
	if o.pinnedFrom != "" {
		pinned, err := pinnedVersion(o.pinnedFrom, ref.Name)
		if err != nil {
			return ref, err
		}
		ref.Pinned = pinned
	}
	if ref.Version == "" && ref.GitSHA == "" && ref.Alias == "" {
		ref.Version = registry.Latest
	}
	return ref, nil
}

// open is the Ref to look up and the registry to look it up in.
func (o *refOptions) open(g *globals) (registry.Ref, *registry.Registry, error) {
	ref, err := o.resolved()
	if err != nil {
		return ref, nil, err
	}
	reg, err := g.registry()
	return ref, reg, err
}

// pinnedVersion reads the version a project file pins for model name. A missing file pins
// nothing: a repository need not pin, and then a commit must push its own model.
func pinnedVersion(path, name string) (string, error) {
	cfg, err := project.Load(path)
	if errors.Is(err, project.ErrNoFile) {
		return "", nil
	}
	if err != nil {
		return "", usageError{err}
	}
	v, err := cfg.PinnedVersion(name)
	if err != nil {
		return "", usageError{err}
	}
	return v, nil
}

func newModelResolveCmd(g *globals) *cobra.Command {
	var opts refOptions
	cmd := &cobra.Command{
		Use:   "resolve --name NAME [--version VERSION | --alias ALIAS | --git-sha SHA [--pinned-from modelship.json]]",
		Short: "Say which version a pull would fetch, downloading nothing",
		Long: `Resolve NAME@VERSION, "latest", an alias, or a git SHA (with --pinned-from, falling back to the
version the project file pins) to one immutable version, and print its manifest. Pipelines resolve afresh
on every run and then pull that exact version, which they may cache.`,
		Args: requireArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ref, reg, err := opts.open(g)
			if err != nil {
				return err
			}
			m, how, err := reg.Lookup(cmd.Context(), ref)
			if err != nil {
				return err
			}
			if g.jsonOutput {
				return writeJSON(cmd.OutOrStdout(), manifest.Resolution{Manifest: *m, ResolvedBy: how})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s@%s (git %s) sha256:%s, chosen by %s\n", m.Name, m.Version, short(m.GitSHA), m.SHA256, how)
			return nil
		},
	}
	opts.register(cmd)
	return cmd
}

func newModelLsCmd(g *globals) *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "ls --name NAME",
		Short: "List a model's versions, newest first",
		Args:  requireArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			reg, err := g.registry()
			if err != nil {
				return err
			}
			list, err := reg.List(cmd.Context(), name)
			if err != nil {
				return err
			}
			if g.jsonOutput {
				return writeJSON(cmd.OutOrStdout(), list)
			}
			if len(list) == 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "no versions of %s in s3://%s\n", name, reg.Bucket())
				return nil
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "VERSION\tGIT SHA\tSHA256\tSIZE\tSTORED\tCREATED")
			for _, m := range list {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", m.Version, short(m.GitSHA), m.SHA256[:12], m.Size, m.Compression, m.CreatedAt.Format(time.RFC3339))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "model name (required)")
	_ = cmd.MarkFlagRequired("name")
	return cmd
}

func short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newModelInspectCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "inspect FILE",
		Short: "Say what a model file is and which backend serves it, running nothing",
		Long: `Check an ONNX file as the model server does and print its opset, operators, input, outputs,
and the backend the server picks: gonnx (static image) when gonnx runs it, else onnxruntime
(the image from serving/onnxruntime.Dockerfile). build-image picks its image the same way.`,
		Example: `  modelship --json model inspect models/digits-layernorm-opset17.onnx`,
		Args:    requireArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			info, err := inspectFile(args[0])
			if err != nil {
				return err
			}
			if g.jsonOutput {
				return writeJSON(cmd.OutOrStdout(), info)
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "%s: opset %d, operators %s, input %s %v, sha256:%s\n", args[0], info.Opset, strings.Join(info.Operators, ","), info.Input.Name, info.Input.Shape, info.SHA256)
			if info.GonnxCannot != "" {
				fmt.Fprintf(out, "backend: %s (%s)\n", info.Backend, info.GonnxCannot)
			} else {
				fmt.Fprintf(out, "backend: %s\n", info.Backend)
			}
			return nil
		},
	}
}

// inspectFile reads and inspects a model file.
func inspectFile(path string) (*inference.Info, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read model file %s: %w", path, err)
	}
	info, err := inference.Inspect(raw)
	if err != nil {
		return nil, fmt.Errorf("model file %s: %w", path, err)
	}
	return info, nil
}
