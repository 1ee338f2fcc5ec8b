// Package modelsig signs models and checks model signatures: a DSSE envelope over an in-toto
// statement naming the manifest and the artifact by digest. It is what the model server links
// to check its model at start, so it keeps to sigstore's signature packages and leaves out
// cosign's registry code.
package modelsig

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	intoto "github.com/in-toto/attestation/go/v1"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/dsse"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
)

// intotoPayloadType is a DSSE envelope's payload type for an in-toto statement.
const intotoPayloadType = "application/vnd.in-toto+json"

var (
	// ErrUnsigned: there is no signature where one must be.
	ErrUnsigned = errors.New("not signed")
	// ErrBadSignature: a signature is there but does not verify with the key given, or does
	// not cover what is in hand.
	ErrBadSignature = errors.New("signature does not verify")
	// ErrKey: a key could not be read.
	ErrKey = errors.New("unusable key")
	// ErrNotSignedModel: the signature verifies but covers other bytes than those in hand. It
	// reads, and is, ErrBadSignature; errors.Is tells it apart.
	ErrNotSignedModel = fmt.Errorf("%w", ErrBadSignature)
)

// ModelType is the predicate type of a model's signature statement.
const ModelType = "https://github.com/modelship/modelship/model/v1"

// Model is what a model signature covers: the version's manifest (its exact bytes, by digest)
// and the artifact the manifest names.
type Model struct {
	Name, Version, GitSHA string
	Filename              string
	SHA256                string // the artifact's
	ManifestSHA256        string // the manifest's bytes'
}

// ManifestDigest is the sha256 (hex) of a manifest's bytes.
func ManifestDigest(manifest []byte) string {
	sum := sha256.Sum256(manifest)
	return hex.EncodeToString(sum[:])
}

// SignModel is a DSSE envelope (JSON) over an in-toto statement whose subjects are the model's
// manifest and artifact, signed with sv.
func SignModel(m Model, sv signature.Signer) ([]byte, error) {
	predicate, err := structpb.NewStruct(map[string]any{"name": m.Name, "version": m.Version, "git_sha": m.GitSHA})
	if err != nil {
		return nil, fmt.Errorf("model signature predicate: %w", err)
	}
	st := &intoto.Statement{
		Type: intoto.StatementTypeUri,
		Subject: []*intoto.ResourceDescriptor{
			{Name: m.Filename, Digest: map[string]string{"sha256": m.SHA256}},
			{Name: "manifest.json", Digest: map[string]string{"sha256": m.ManifestSHA256}},
		},
		PredicateType: ModelType,
		Predicate:     predicate,
	}
	if err := st.Validate(); err != nil {
		return nil, fmt.Errorf("model signature statement: %w", err)
	}
	payload, err := protojson.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("encode the model signature statement: %w", err)
	}
	env, err := dsse.WrapSigner(sv, intotoPayloadType).SignMessage(bytes.NewReader(payload))
	if err != nil {
		return nil, fmt.Errorf("sign %s@%s: %w", m.Name, m.Version, err)
	}
	return env, nil
}

// EnvelopeError is a signature that is not a DSSE envelope at all (a wrong file), told apart
// from one that does not verify; it is ErrBadSignature too.
type EnvelopeError struct{ Err error }

func (e *EnvelopeError) Error() string   { return "not a DSSE envelope: " + e.Err.Error() }
func (e *EnvelopeError) Unwrap() []error { return []error{ErrBadSignature, e.Err} }

// EnvelopePayload is what a DSSE envelope (JSON) signs, decoded; the signature is not checked.
func EnvelopePayload(envelope []byte) ([]byte, error) {
	var env struct {
		Payload    string            `json:"payload"`
		Signatures []json.RawMessage `json:"signatures"`
	}
	if err := json.Unmarshal(envelope, &env); err != nil {
		return nil, &EnvelopeError{err}
	}
	if env.Payload == "" || len(env.Signatures) == 0 {
		return nil, &EnvelopeError{errors.New("it has no payload or no signatures")}
	}
	raw, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		return nil, &EnvelopeError{fmt.Errorf("payload: %w", err)}
	}
	return raw, nil
}

// VerifyModelEnvelope checks the envelope's signature with v and returns what it signed.
func VerifyModelEnvelope(envelope []byte, v signature.Verifier) (*Model, error) {
	raw, err := EnvelopePayload(envelope)
	if err != nil {
		return nil, fmt.Errorf("the model signature is %w", err)
	}
	if err := dsse.WrapVerifier(v).VerifySignature(bytes.NewReader(envelope), nil); err != nil {
		return nil, fmt.Errorf("%w: the model signature does not verify with the public key given (%v): another key signed it, or it was changed",
			ErrBadSignature, err)
	}
	var st intoto.Statement
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(raw, &st); err != nil {
		return nil, fmt.Errorf("the model signature's statement: %w", err)
	}
	if st.GetPredicateType() != ModelType || len(st.GetSubject()) != 2 {
		return nil, fmt.Errorf("%w: the signed statement is not a model signature (predicate %q)", ErrBadSignature, st.GetPredicateType())
	}
	p := st.GetPredicate().AsMap()
	str := func(k string) string { s, _ := p[k].(string); return s }
	artifact, manifest := st.GetSubject()[0], st.GetSubject()[1]
	return &Model{Name: str("name"), Version: str("version"), GitSHA: str("git_sha"), Filename: artifact.GetName(),
		SHA256: artifact.GetDigest()["sha256"], ManifestSHA256: manifest.GetDigest()["sha256"]}, nil
}

// VerifyModel checks the envelope with v and that it signs this manifest and an artifact of
// sha256 artifactSHA256.
func VerifyModel(envelope, manifest []byte, artifactSHA256 string, v signature.Verifier) (*Model, error) {
	m, err := VerifyModelEnvelope(envelope, v)
	if err != nil {
		return nil, err
	}
	if got := ManifestDigest(manifest); m.ManifestSHA256 != got {
		return nil, fmt.Errorf("%w: the signature covers a manifest with sha256 %s, the registry's has %s: the manifest was changed after signing",
			ErrNotSignedModel, m.ManifestSHA256, got)
	}
	if m.SHA256 != artifactSHA256 {
		return nil, fmt.Errorf("%w: the signature covers a model with sha256 %s, not %s", ErrNotSignedModel, m.SHA256, artifactSHA256)
	}
	return m, nil
}

// VerifyModelFile checks the envelope with v and that the model file's bytes are the signed
// ones: what a server checks before it loads a model.
func VerifyModelFile(envelope []byte, modelSHA256 string, v signature.Verifier) (*Model, error) {
	m, err := VerifyModelEnvelope(envelope, v)
	if err != nil {
		return nil, err
	}
	if m.SHA256 != modelSHA256 {
		return nil, fmt.Errorf("%w: the model file has sha256 %s but %s@%s was signed with sha256 %s: the file is not the signed model",
			ErrNotSignedModel, modelSHA256, m.Name, m.Version, m.SHA256)
	}
	return m, nil
}

// LoadVerifier reads a PEM public key (cosign.pub).
func LoadVerifier(pubPEM []byte) (signature.Verifier, error) {
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(pubPEM)
	if err != nil {
		return nil, fmt.Errorf("%w: read the public key: %v", ErrKey, err)
	}
	v, err := signature.LoadVerifier(pub, crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("%w: load the public key: %v", ErrKey, err)
	}
	return v, nil
}

// LoadVerifierFile is LoadVerifier of a file.
func LoadVerifierFile(path string) (signature.Verifier, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: read public key %s: %v", ErrKey, path, err)
	}
	v, err := LoadVerifier(b)
	if err != nil {
		return nil, fmt.Errorf("public key %s: %w", path, err)
	}
	return v, nil
}
