package signing

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	cremote "github.com/sigstore/cosign/v2/pkg/cosign/remote"
	"github.com/sigstore/cosign/v2/pkg/oci"
	"github.com/sigstore/cosign/v2/pkg/oci/mutate"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"
	"github.com/sigstore/cosign/v2/pkg/oci/static"
	"github.com/sigstore/cosign/v2/pkg/types"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/dsse"
	sigpayload "github.com/sigstore/sigstore/pkg/signature/payload"

	"github.com/modelship/modelship/internal/signing/modelsig"
)

// Registry says how to reach the registry an image is in.
type Registry struct {
	// Insecure reaches it over plain HTTP (localhost and 127.0.0.1 always are).
	Insecure bool
	// Username and Password log in; without them the Docker config's credentials are used.
	Username, Password string
	// Via, host[:port], reaches the image's registry at another address (plain HTTP): a tunnel
	// such as a Dagger service binding. Signatures name the image by digest, so they hold
	// whatever address it is reached at.
	Via string
}

// parse reads ref as its own registry names it (own) and as it is reached (at): the same
// reference, or with Via in place of its registry.
func (r Registry) parse(ref string) (own, at name.Reference, err error) {
	var opts []name.Option
	if r.Insecure {
		opts = append(opts, name.Insecure)
	}
	own, err = name.ParseReference(ref, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("image reference %q: %w", ref, err)
	}
	if r.Via == "" {
		return own, own, nil
	}
	moved := r.Via + "/" + own.Context().RepositoryStr() + strings.TrimPrefix(own.String(), own.Context().Name())
	if at, err = name.ParseReference(moved, name.Insecure); err != nil {
		return nil, nil, fmt.Errorf("image reference %q through %s: %w", ref, r.Via, err)
	}
	return own, at, nil
}

func (r Registry) remoteOptions(ctx context.Context) []remote.Option {
	auth := remote.WithAuthFromKeychain(authn.DefaultKeychain)
	if r.Username != "" {
		auth = remote.WithAuth(&authn.Basic{Username: r.Username, Password: r.Password})
	}
	return []remote.Option{auth, remote.WithContext(ctx)}
}

func (r Registry) options(ctx context.Context) []ociremote.Option {
	return []ociremote.Option{ociremote.WithRemoteOptions(r.remoteOptions(ctx)...)}
}

// digestOf resolves ref (a tag or a digest) to the digest it names now: at is where it is
// reached (through Via), named is the same digest under ref's own registry, the name that
// signatures, statements and results carry.
func (r Registry) digestOf(ctx context.Context, ref string) (at, named name.Digest, err error) {
	own, via, err := r.parse(ref)
	if err != nil {
		return name.Digest{}, name.Digest{}, err
	}
	at, err = ociremote.ResolveDigest(via, r.options(ctx)...)
	if err != nil {
		return name.Digest{}, name.Digest{}, fmt.Errorf("resolve %s in its registry: %w", ref, err)
	}
	return at, own.Context().Digest(at.DigestStr()), nil
}

// Signed says what SignImage wrote.
type Signed struct {
	Digest      string   // the image signed, repository@sha256:...
	Attestation []string // the predicate types attested
}

// SignImage signs the image ref names (resolved to its digest) with cosign's signature, and
// attests each statement (in-toto JSON, e.g. from ProvenanceStatement) in a DSSE envelope, all
// stored in the image's repository under cosign's tags (sha256-<hex>.sig and .att). Signing
// again replaces an attestation of the same predicate type rather than adding one.
func SignImage(ctx context.Context, reg Registry, ref string, sv signature.SignerVerifier, statements ...[]byte) (*Signed, error) {
	digest, named, err := reg.digestOf(ctx, ref)
	if err != nil {
		return nil, err
	}
	opts := reg.options(ctx)
	dupes := cremote.NewDupeDetector(sv)
	payload, err := (&sigpayload.Cosign{Image: named}).MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("signature payload of %s: %w", digest, err)
	}
	raw, err := sv.SignMessage(bytes.NewReader(payload))
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", digest, err)
	}
	sig, err := static.NewSignature(payload, base64.StdEncoding.EncodeToString(raw))
	if err != nil {
		return nil, fmt.Errorf("signature of %s: %w", digest, err)
	}
	se, err := mutate.AttachSignatureToEntity(ociremote.SignedUnknown(digest, opts...), sig, mutate.WithDupeDetector(dupes))
	if err != nil {
		return nil, fmt.Errorf("attach the signature to %s: %w", digest, err)
	}
	out := &Signed{Digest: named.String()}
	for _, st := range statements {
		predicateType, err := predicateTypeOf(st)
		if err != nil {
			return nil, err
		}
		env, err := dsse.WrapSigner(sv, types.IntotoPayloadType).SignMessage(bytes.NewReader(st))
		if err != nil {
			return nil, fmt.Errorf("sign the %s attestation of %s: %w", predicateType, digest, err)
		}
		att, err := static.NewAttestation(env, static.WithLayerMediaType(types.DssePayloadType),
			static.WithAnnotations(map[string]string{"predicateType": predicateType}))
		if err != nil {
			return nil, fmt.Errorf("attestation of %s: %w", digest, err)
		}
		if se, err = mutate.AttachAttestationToEntity(se, att, mutate.WithDupeDetector(dupes),
			mutate.WithReplaceOp(cremote.NewReplaceOp(predicateType))); err != nil {
			return nil, fmt.Errorf("attach the %s attestation to %s: %w", predicateType, digest, err)
		}
		out.Attestation = append(out.Attestation, predicateType)
	}
	if err := ociremote.WriteSignatures(digest.Repository, se, opts...); err != nil {
		return nil, fmt.Errorf("push the signature of %s: %w", digest, err)
	}
	if len(statements) > 0 {
		if err := ociremote.WriteAttestations(digest.Repository, se, opts...); err != nil {
			return nil, fmt.Errorf("push the attestations of %s: %w", digest, err)
		}
	}
	return out, nil
}

func predicateTypeOf(statement []byte) (string, error) {
	var st struct {
		PredicateType string `json:"predicateType"`
	}
	if err := json.Unmarshal(statement, &st); err != nil || st.PredicateType == "" {
		return "", fmt.Errorf("not an in-toto statement with a predicateType: %v", err)
	}
	return st.PredicateType, nil
}

// Verified is what VerifyImage checked.
type Verified struct {
	// Digest is the image verified, repository@sha256:...: deploy exactly this.
	Digest     string
	Provenance *Provenance
	SBOM       bool // a signed CycloneDX SBOM is attached too
}

// Expect is what the image's provenance must name.
type Expect struct {
	GitSHA      string
	ModelSHA256 string // empty: not checked
}

// VerifyImage checks that the image ref names (resolved to its digest) carries a cosign
// signature and a SLSA v1 provenance attestation that verify with v, and that the provenance
// names the commit and model want says. Every refusal names what is missing or wrong.
func VerifyImage(ctx context.Context, reg Registry, ref string, v signature.Verifier, want Expect) (*Verified, error) {
	digest, named, err := reg.digestOf(ctx, ref)
	if err != nil {
		return nil, err
	}
	co := &cosign.CheckOpts{RegistryClientOpts: reg.options(ctx), SigVerifier: v, IgnoreTlog: true, IgnoreSCT: true,
		ClaimVerifier: cosign.SimpleClaimVerifier}
	if _, _, err := cosign.VerifyImageSignatures(ctx, digest, co); err != nil {
		return nil, reg.refusal(ctx, digest, "signature", ".sig", err)
	}
	co.ClaimVerifier = cosign.IntotoSubjectClaimVerifier
	atts, _, err := cosign.VerifyImageAttestations(ctx, digest, co)
	if err != nil {
		return nil, reg.refusal(ctx, digest, "attestation", ".att", err)
	}
	out := &Verified{Digest: named.String()}
	for _, att := range atts {
		st, predicateType, err := statementOf(att)
		if err != nil {
			return nil, fmt.Errorf("attestation of %s: %w", digest, err)
		}
		switch predicateType {
		case SBOMType:
			out.SBOM = true
		case ProvenanceType:
			if out.Provenance, err = parseProvenance(st); err != nil {
				return nil, fmt.Errorf("provenance of %s: %w", digest, err)
			}
		}
	}
	if out.Provenance == nil {
		return nil, fmt.Errorf("%w: %s has signed attestations but no SLSA provenance (%s): build it with build-image and with-signing --key",
			ErrUnsigned, digest, ProvenanceType)
	}
	p := out.Provenance
	if p.GitSHA != want.GitSHA {
		return nil, fmt.Errorf("%w: %s was built from commit %q, not %s, which is being deployed", ErrProvenanceMismatch, digest, p.GitSHA, want.GitSHA)
	}
	if want.ModelSHA256 != "" && p.ModelSHA256 != want.ModelSHA256 {
		return nil, fmt.Errorf("%w: %s holds model %s@%s with sha256 %s, not %s, which is being deployed",
			ErrProvenanceMismatch, digest, p.ModelName, p.ModelVersion, p.ModelSHA256, want.ModelSHA256)
	}
	return out, nil
}

// refusal turns cosign's verification errors into ours, saying where the signature should be:
// none there is ErrUnsigned, some there that fail is ErrBadSignature.
func (r Registry) refusal(ctx context.Context, digest name.Digest, what, suffix string, err error) error {
	tag := digest.Tag(strings.Replace(digest.DigestStr(), ":", "-", 1) + suffix)
	var none *cosign.ErrNoSignaturesFound
	var noMatch *cosign.ErrNoMatchingSignatures
	var noAtt *cosign.ErrNoMatchingAttestations
	switch {
	case errors.As(err, &none):
	case errors.As(err, &noMatch), errors.As(err, &noAtt):
		// cosign says the same for none there and none that verifies; the tag tells them apart.
		if _, herr := remote.Head(tag, r.remoteOptions(ctx)...); herr == nil {
			return fmt.Errorf("%w: no %s of %s verifies with the public key given (%v): it was signed with another key, or changed after signing",
				ErrBadSignature, what, digest, err)
		}
	default:
		return fmt.Errorf("verify the %s of %s: %w", what, digest, err)
	}
	return fmt.Errorf("%w: %s has no %s (looked for %s): sign it (build-image with with-signing --key, or modelship image sign), or deploy an image that was",
		ErrUnsigned, digest, what, tag)
}

// statementOf is the in-toto statement inside an attestation's (already verified) envelope.
func statementOf(att oci.Signature) ([]byte, string, error) {
	p, err := att.Payload()
	if err != nil {
		return nil, "", fmt.Errorf("read: %w", err)
	}
	st, err := modelsig.EnvelopePayload(p)
	if err != nil {
		return nil, "", err
	}
	pt, err := predicateTypeOf(st)
	return st, pt, err
}

// ResolveDigest is the digest reference (repository@sha256:...) ref names now.
func ResolveDigest(ctx context.Context, reg Registry, ref string) (string, error) {
	_, named, err := reg.digestOf(ctx, ref)
	if err != nil {
		return "", err
	}
	return named.String(), nil
}
