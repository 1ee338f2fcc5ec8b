package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/spf13/cobra"

	"github.com/modelship/modelship/internal/deploy"
	"github.com/modelship/modelship/internal/deploystate"
	"github.com/modelship/modelship/internal/registry"
	"github.com/modelship/modelship/internal/signing"
)

// imageRegistryFlags say how to reach an image's registry for its signatures. Credentials are
// secrets: environment only, never flags.
type imageRegistryFlags struct {
	insecure bool
	via      string
}

func (r *imageRegistryFlags) register(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&r.insecure, "registry-insecure", os.Getenv("MODELSHIP_REGISTRY_INSECURE") == "true",
		"reach the image's registry over plain HTTP (localhost always is) (MODELSHIP_REGISTRY_INSECURE=true); credentials come from MODELSHIP_REGISTRY_USERNAME and MODELSHIP_REGISTRY_PASSWORD, else the Docker config")
	cmd.Flags().StringVar(&r.via, "registry-via", os.Getenv("MODELSHIP_REGISTRY_VIA"), "reach the image's registry for its signatures at this host:port instead, over plain HTTP (a tunnel, as the Dagger module binds one) (MODELSHIP_REGISTRY_VIA)")
}

func (r *imageRegistryFlags) registry() signing.Registry {
	return signing.Registry{Insecure: r.insecure, Via: r.via, Username: os.Getenv("MODELSHIP_REGISTRY_USERNAME"), Password: os.Getenv("MODELSHIP_REGISTRY_PASSWORD")}
}

// signatureFlags are deploy's and promote's: the key an image's signature must verify with,
// and whether one is required.
type signatureFlags struct {
	imageRegistryFlags
	publicKey   string
	require     bool
	modelSHA256 string
}

func (s *signatureFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&s.publicKey, "public-key", os.Getenv("MODELSHIP_PUBLIC_KEY"), "cosign public key (cosign.pub) the image's signature and provenance must verify with before anything rolls out (MODELSHIP_PUBLIC_KEY)")
	f.BoolVar(&s.require, "require-signature", true, "refuse an image without a signature and provenance that verify with --public-key (MODELSHIP_REQUIRE_SIGNATURE); on by default for production only")
	f.StringVar(&s.modelSHA256, "model-sha256", "", "sha256 of the model the image's provenance must name (default: the registry's for --model-name@--model-version)")
	s.imageRegistryFlags.register(cmd)
}

// required is --require-signature as given, else MODELSHIP_REQUIRE_SIGNATURE, else whether env
// is production.
func (s *signatureFlags) required(cmd *cobra.Command, env string) (bool, error) {
	if cmd.Flags().Changed("require-signature") {
		return s.require, nil
	}
	switch v := os.Getenv("MODELSHIP_REQUIRE_SIGNATURE"); v {
	case "":
		return env == "production", nil
	case "true", "false":
		return v == "true", nil
	default:
		return false, usageError{fmt.Errorf("MODELSHIP_REQUIRE_SIGNATURE=%q: want true or false", v)}
	}
}

// verifier is the check deploy and promote run before anything rolls out: nil when no key is
// given and none is required, a refusal when one is required but no key was given.
func (s *signatureFlags) verifier(cmd *cobra.Command, g *globals, env, archive string) (deploy.ImageVerifier, error) {
	required, err := s.required(cmd, env)
	if err != nil {
		return nil, err
	}
	if s.publicKey == "" {
		if required {
			return nil, fmt.Errorf("%w: %s requires a signed image: give --public-key (MODELSHIP_PUBLIC_KEY), the cosign.pub of the key build-image signed with; or --require-signature=false to deploy an unsigned image", signing.ErrUnsigned, env)
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "warning: deploying to %s without checking the image's signature (no --public-key)\n", env)
		return nil, nil
	}
	if archive != "" {
		return nil, fmt.Errorf("%w: --image-archive loads an image no registry holds, so it has no signature to check: deploy the pushed image by its reference, or give --require-signature=false and no --public-key", signing.ErrUnsigned)
	}
	pem, err := os.ReadFile(s.publicKey)
	if err != nil {
		return nil, usageError{fmt.Errorf("--public-key: %w", err)}
	}
	v, err := signing.LoadVerifier(pem)
	if err != nil {
		return nil, usageError{fmt.Errorf("--public-key %s: %w", s.publicKey, err)}
	}
	sum := sha256.Sum256(pem)
	return &releaseVerifier{g: g, reg: s.registry(), v: v, keySHA: hex.EncodeToString(sum[:]), modelSHA: s.modelSHA256}, nil
}

// releaseVerifier checks a release's image against its signature and provenance.
type releaseVerifier struct {
	g        *globals
	reg      signing.Registry
	v        signature.Verifier
	keySHA   string
	modelSHA string
}

func (r *releaseVerifier) VerifyRelease(ctx context.Context, rel deploy.Release) (string, *deploystate.SignatureRecord, error) {
	modelSHA := r.modelSHA
	if modelSHA == "" {
		var err error
		if modelSHA, err = r.registryModelSHA(ctx, rel); err != nil {
			return "", nil, err
		}
	}
	ok, err := signing.VerifyImage(ctx, r.reg, rel.Image, r.v, signing.Expect{GitSHA: rel.GitSHA, ModelSHA256: modelSHA})
	if err != nil {
		return "", nil, err
	}
	_, digest, _ := strings.Cut(ok.Digest, "@")
	repoTag, _, _ := strings.Cut(rel.Image, "@")
	return repoTag + "@" + digest, &deploystate.SignatureRecord{Digest: ok.Digest, KeySHA256: r.keySHA, GitSHA: ok.Provenance.GitSHA,
		ModelSHA256: ok.Provenance.ModelSHA256, SBOM: ok.SBOM, At: time.Now().UTC()}, nil
}

// registryModelSHA is the digest the model registry records for the release's model: what the
// image's provenance must name.
func (r *releaseVerifier) registryModelSHA(ctx context.Context, rel deploy.Release) (string, error) {
	reg, err := r.g.registry()
	if err != nil {
		return "", err
	}
	m, _, err := reg.Lookup(ctx, registry.Ref{Name: rel.ModelName, Version: rel.ModelVersion})
	if err != nil {
		return "", fmt.Errorf("look up %s@%s, whose digest the image's provenance must name (or give --model-sha256): %w", rel.ModelName, rel.ModelVersion, err)
	}
	return m.SHA256, nil
}

func newImageCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "image", Short: "Sign and verify server images: cosign signatures, SLSA provenance and SBOM attestations"}
	cmd.AddCommand(newImageSignCmd(g), newImageVerifyCmd(g))
	return cmd
}

func newImageSignCmd(g *globals) *cobra.Command {
	var rf imageRegistryFlags
	var b signing.Build
	var image, key, sbomPath, started, provenanceOut string
	var bases []string
	cmd := &cobra.Command{
		Use:   "sign --image REF --signing-key cosign.key --git-sha SHA --model-name N --model-version V --model-sha256 D --dockerfile F",
		Short: "Sign an image and attach its SLSA provenance (and SBOM) as attestations, cosign-compatible",
		Long: `Sign resolves --image to its digest and writes, in the image's own repository under cosign's
tags (sha256-<digest>.sig, .att): a cosign signature, a SLSA v1 provenance attestation naming the
commit, the model digest, the base images and the Dockerfile, and, with --sbom, the CycloneDX SBOM
as a second attestation. The key is cosign's (cosign generate-key-pair), its password in
COSIGN_PASSWORD. 'cosign verify --key cosign.pub' and 'cosign verify-attestation --type
slsaprovenance1' accept the result. build-image runs this with the module's --signing-key.`,
		Example: `  COSIGN_PASSWORD=... modelship image sign --image ghcr.io/acme/digits:$SHA@sha256:... --signing-key cosign.key \
    --git-sha $SHA --model-name digits --model-version 1.0.0 --model-sha256 $MODEL_SHA \
    --dockerfile serving/Dockerfile --base-image go=golang:1.26@sha256:... --sbom sbom.cdx.json`,
		Args: requireArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			sv, err := signing.LoadSignerFile(key)
			if err != nil {
				return usageError{err}
			}
			df, err := os.ReadFile(b.Dockerfile)
			if err != nil {
				return usageError{fmt.Errorf("--dockerfile: %w", err)}
			}
			sum := sha256.Sum256(df)
			b.DockerfileSHA256 = hex.EncodeToString(sum[:])
			b.BaseImages = map[string]string{}
			for _, kv := range bases {
				role, ref, ok := strings.Cut(kv, "=")
				if !ok || role == "" {
					return usageError{fmt.Errorf("--base-image %q: want ROLE=NAME@sha256:DIGEST", kv)}
				}
				b.BaseImages[role] = ref
			}
			if started != "" {
				if b.StartedOn, err = time.Parse(time.RFC3339, started); err != nil {
					return usageError{fmt.Errorf("--started-on: %w", err)}
				}
			}
			b.FinishedOn = time.Now().UTC()
			if err := b.Validate(); err != nil {
				return usageError{err}
			}
			reg := rf.registry()
			digest, err := signing.ResolveDigest(cmd.Context(), reg, image)
			if err != nil {
				return err
			}
			repo, hash, _ := strings.Cut(digest, "@")
			prov, err := signing.ProvenanceStatement(repo, hash, b)
			if err != nil {
				return usageError{err}
			}
			statements := [][]byte{prov}
			if sbomPath != "" {
				raw, err := os.ReadFile(sbomPath)
				if err != nil {
					return usageError{fmt.Errorf("--sbom: %w", err)}
				}
				bom, err := signing.SBOMStatement(repo, hash, raw)
				if err != nil {
					return usageError{fmt.Errorf("--sbom %s: %w", sbomPath, err)}
				}
				statements = append(statements, bom)
			}
			out, err := signing.SignImage(cmd.Context(), reg, digest, sv, statements...)
			if err != nil {
				return err
			}
			if provenanceOut != "" {
				if err := writePredicate(provenanceOut, prov); err != nil {
					return err
				}
			}
			if g.jsonOutput {
				return writeJSON(cmd.OutOrStdout(), out)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "signed %s; attested %s\n", out.Digest, strings.Join(out.Attestation, ", "))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&image, "image", "", "image to sign; a tag is resolved to its digest first (required)")
	f.StringVar(&key, "signing-key", os.Getenv("MODELSHIP_SIGNING_KEY"), "cosign private key file; its password in COSIGN_PASSWORD (MODELSHIP_SIGNING_KEY)")
	f.StringVar(&b.GitSHA, "git-sha", "", "commit the image was built from (required)")
	f.StringVar(&b.Source, "source", firstEnv("MODELSHIP_SOURCE_URL"), "repository URL the commit is in, recorded in the provenance (MODELSHIP_SOURCE_URL)")
	f.StringVar(&b.ModelName, "model-name", envOr("MODELSHIP_MODEL_NAME", "digits"), "model baked in (MODELSHIP_MODEL_NAME)")
	f.StringVar(&b.ModelVersion, "model-version", "", "its version (required)")
	f.StringVar(&b.ModelSHA256, "model-sha256", "", "its sha256 (required)")
	f.StringVar(&b.Dockerfile, "dockerfile", "serving/Dockerfile", "Dockerfile the image was built from; its digest goes in the provenance")
	f.StringArrayVar(&bases, "base-image", nil, "ROLE=NAME@sha256:DIGEST of an image the build used (repeatable)")
	f.StringArrayVar(&b.Platforms, "platform", nil, "platform built (repeatable)")
	f.StringVar(&b.BuilderVersion, "builder-version", "", "version of the module that built it")
	f.StringVar(&b.InvocationID, "invocation-id", firstEnv("MODELSHIP_PIPELINE_RUN", "GITHUB_RUN_ID", "CI_PIPELINE_ID"), "the CI run that built it (GITHUB_RUN_ID, CI_PIPELINE_ID)")
	f.StringVar(&started, "started-on", "", "when the build started, RFC 3339")
	f.StringVar(&sbomPath, "sbom", "", "CycloneDX JSON SBOM of the image, attached as a second attestation")
	f.StringVar(&provenanceOut, "provenance-out", "", "also write the SLSA predicate attested here, for 'cosign attest --type slsaprovenance1 --predicate' (a keyless signature of the same provenance)")
	rf.register(cmd)
	for _, name := range []string{"image", "signing-key", "git-sha", "model-version", "model-sha256"} {
		_ = cmd.MarkFlagRequired(name)
	}
	return cmd
}

// writePredicate writes the predicate of an in-toto statement: what cosign attest takes.
func writePredicate(path string, statement []byte) error {
	var st struct {
		Predicate json.RawMessage `json:"predicate"`
	}
	if err := json.Unmarshal(statement, &st); err != nil || len(st.Predicate) == 0 {
		return fmt.Errorf("provenance statement has no predicate: %v", err)
	}
	if err := os.WriteFile(path, append(st.Predicate, '\n'), 0o644); err != nil {
		return fmt.Errorf("--provenance-out: %w", err)
	}
	return nil
}

func newImageVerifyCmd(g *globals) *cobra.Command {
	var rf imageRegistryFlags
	var image, key string
	var want signing.Expect
	cmd := &cobra.Command{
		Use:   "verify --image REF --public-key cosign.pub --git-sha SHA [--model-sha256 D]",
		Short: "Check an image's signature and that its provenance names the commit (and model)",
		Long: `Verify checks, as deploy does before a rollout, that the image --image names (resolved to its
digest) carries a cosign signature and a SLSA provenance attestation that verify with the public
key, and that the provenance names --git-sha and, given, --model-sha256. It prints the digest to
deploy. An unsigned image, a signature from another key, or provenance naming another commit or
model exits 11 and says which.`,
		Args: requireArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, err := signing.LoadVerifierFile(key)
			if err != nil {
				return usageError{err}
			}
			out, err := signing.VerifyImage(cmd.Context(), rf.registry(), image, v, want)
			if err != nil {
				return err
			}
			if g.jsonOutput {
				return writeJSON(cmd.OutOrStdout(), out)
			}
			p := out.Provenance
			fmt.Fprintf(cmd.OutOrStdout(), "verified %s: signed; provenance by %s names git %s and %s@%s (sha256:%s); SBOM attested: %v\n",
				out.Digest, p.BuilderID, short(p.GitSHA), p.ModelName, p.ModelVersion, p.ModelSHA256, out.SBOM)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&image, "image", "", "image to verify (required)")
	f.StringVar(&key, "public-key", os.Getenv("MODELSHIP_PUBLIC_KEY"), "cosign public key (MODELSHIP_PUBLIC_KEY)")
	f.StringVar(&want.GitSHA, "git-sha", "", "commit the provenance must name (required)")
	f.StringVar(&want.ModelSHA256, "model-sha256", "", "model digest the provenance must name")
	rf.register(cmd)
	for _, name := range []string{"image", "public-key", "git-sha"} {
		_ = cmd.MarkFlagRequired(name)
	}
	return cmd
}

// isUntrusted reports a signature refusal: exit 11.
func isUntrusted(err error) bool {
	return errors.Is(err, signing.ErrUnsigned) || errors.Is(err, signing.ErrBadSignature) || errors.Is(err, signing.ErrProvenanceMismatch)
}
