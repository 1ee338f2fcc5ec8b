package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"

	"github.com/minio/minio-go/v7"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/modelship/modelship/internal/plumbing/objstore"
	"github.com/modelship/modelship/internal/signing/modelsig"
)

// signatureKey is where a version's signature lives: beside its manifest, a DSSE envelope over
// the manifest's and the artifact's digests.
func signatureKey(name, version string) string {
	return path.Join(name, "versions", version, "signature.dsse.json")
}

// Sign signs name@version: its manifest, exactly as stored, and the artifact it names. Signing
// again (another key, a retried push) replaces the signature in one write.
func (r *Registry) Sign(ctx context.Context, name, version string, s signature.Signer) error {
	m, raw, err := r.manifestRaw(ctx, name, version)
	if err != nil {
		return err
	}
	env, err := modelsig.SignModel(modelsig.Model{Name: m.Name, Version: m.Version, GitSHA: m.GitSHA, Filename: m.Filename,
		SHA256: m.SHA256, ManifestSHA256: modelsig.ManifestDigest(raw)}, s)
	if err != nil {
		return err
	}
	key := signatureKey(name, version)
	if _, err := r.client.PutObject(ctx, r.bucket, key, bytes.NewReader(env), int64(len(env)),
		minio.PutObjectOptions{ContentType: "application/json"}); err != nil {
		return fmt.Errorf("write the signature of %s@%s to s3://%s/%s: %w", name, version, r.bucket, key, objstore.Classify(err))
	}
	return nil
}

// Verified is a version whose signature checked out.
type Verified struct {
	Manifest Manifest
	Model    *modelsig.Model
	Envelope []byte // the signature, for a server to check its copy of the model against
}

// Verify checks that name@version is signed by v's key: the signature covers the manifest as
// stored now and the artifact it names. An unsigned version is modelsig.ErrUnsigned, a bad or
// mismatched signature modelsig.ErrBadSignature.
func (r *Registry) Verify(ctx context.Context, name, version string, v signature.Verifier) (*Verified, error) {
	m, raw, err := r.manifestRaw(ctx, name, version)
	if err != nil {
		return nil, err
	}
	key := signatureKey(name, version)
	env, err := r.readSmall(ctx, key)
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("%w: %s@%s has no signature at s3://%s/%s: push it with --signing-key (or `modelship model sign`), or pull without --public-key",
			modelsig.ErrUnsigned, name, version, r.bucket, key)
	}
	if err != nil {
		return nil, err
	}
	signed, err := modelsig.VerifyModel(env, raw, m.SHA256, v)
	if err != nil {
		return nil, fmt.Errorf("%s@%s: %w", name, version, err)
	}
	return &Verified{Manifest: *m, Model: signed, Envelope: env}, nil
}

func (r *Registry) readSmall(ctx context.Context, key string) ([]byte, error) {
	obj, err := r.client.GetObject(ctx, r.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, fmt.Errorf("read s3://%s/%s: %w", r.bucket, key, objstore.Classify(err))
	}
	defer obj.Close()
	b, err := io.ReadAll(io.LimitReader(obj, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("read s3://%s/%s: %w", r.bucket, key, objstore.Classify(err))
	}
	return b, nil
}

// PullVerified is Pull of a version whose signature verifies with v first; the bytes pulled are
// the ones the signature covers, or nothing is written.
func (r *Registry) PullVerified(ctx context.Context, ref Ref, dest string, v signature.Verifier) (*PullResult, *Verified, error) {
	m, how, err := r.Lookup(ctx, ref)
	if err != nil {
		return nil, nil, err
	}
	signed, err := r.Verify(ctx, m.Name, m.Version, v)
	if err != nil {
		return nil, nil, err
	}
	// Pull by the version verified: an alias or SHA lookup could move in between.
	res, err := r.Pull(ctx, Ref{Name: m.Name, Version: m.Version}, dest)
	if err != nil {
		return nil, nil, err
	}
	if res.Manifest.SHA256 != signed.Model.SHA256 {
		return nil, nil, fmt.Errorf("%w: %s@%s changed while it was pulled (sha256 %s, signed %s); pull again",
			modelsig.ErrBadSignature, m.Name, m.Version, res.Manifest.SHA256, signed.Model.SHA256)
	}
	res.ResolvedBy = how
	return res, signed, nil
}
