package registry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path"
	"path/filepath"
	"testing"

	"github.com/minio/minio-go/v7"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelship/modelship/internal/registry"
	"github.com/modelship/modelship/internal/signing"
	"github.com/modelship/modelship/internal/signing/modelsig"
)

func keyPair(t *testing.T) (signature.SignerVerifier, signature.Verifier) {
	t.Helper()
	priv, pub, err := signing.GenerateKeyPair([]byte("pw"))
	require.NoError(t, err)
	sv, err := signing.LoadSigner(priv, []byte("pw"))
	require.NoError(t, err)
	v, err := signing.LoadVerifier(pub)
	require.NoError(t, err)
	return sv, v
}

// A model pushed with a key pulls with its public key; unsigned, signed with another key, or
// changed in the bucket after signing (artifact and manifest rewritten to match, as someone
// with bucket access could), it is refused and nothing is written.
func TestSignedModels(t *testing.T) {
	ctx := context.Background()
	sv, v := keyPair(t)
	ref := registry.Ref{Name: "digits", Version: "1.0.0"}

	t.Run("signed at push, verified at pull", func(t *testing.T) {
		f := newRegistry(t)
		content := randomBytes(t, 4096)
		res, err := f.reg.Push(ctx, f.file(t, "model.onnx", content), registry.PushOptions{Name: "digits", Version: "1.0.0", GitSHA: sha1, Signer: sv})
		require.NoError(t, err)
		assert.True(t, res.Signed)
		dest := filepath.Join(f.dir, "pulled.onnx")
		pulled, signed, err := f.reg.PullVerified(ctx, registry.Ref{Name: "digits", GitSHA: sha1}, dest, v)
		require.NoError(t, err)
		got, err := os.ReadFile(dest)
		require.NoError(t, err)
		assert.Equal(t, content, got)
		assert.Equal(t, res.Manifest.SHA256, signed.Model.SHA256)
		assert.Equal(t, modelsig.Model{Name: "digits", Version: "1.0.0", GitSHA: sha1, Filename: "model.onnx", SHA256: res.Manifest.SHA256,
			ManifestSHA256: signed.Model.ManifestSHA256}, *signed.Model)
		assert.Contains(t, pulled.ResolvedBy, "sha")

		// The envelope a pull hands on is what a server checks its copy of the model against.
		_, err = modelsig.VerifyModelFile(signed.Envelope, res.Manifest.SHA256, v)
		require.NoError(t, err)
	})

	t.Run("unsigned refused", func(t *testing.T) {
		f := newRegistry(t)
		_, err := f.reg.Push(ctx, f.file(t, "model.onnx", randomBytes(t, 512)), registry.PushOptions{Name: "digits", Version: "1.0.0", GitSHA: sha1})
		require.NoError(t, err)
		dest := filepath.Join(f.dir, "pulled.onnx")
		_, _, err = f.reg.PullVerified(ctx, ref, dest, v)
		require.ErrorIs(t, err, modelsig.ErrUnsigned)
		assert.ErrorContains(t, err, "--signing-key")
		assertNotWritten(t, dest)

		// Signing the stored version afterwards makes it pullable.
		require.NoError(t, f.reg.Sign(ctx, "digits", "1.0.0", sv))
		_, _, err = f.reg.PullVerified(ctx, ref, dest, v)
		require.NoError(t, err)
	})

	t.Run("wrong key refused", func(t *testing.T) {
		f := newRegistry(t)
		other, _ := keyPair(t)
		_, err := f.reg.Push(ctx, f.file(t, "model.onnx", randomBytes(t, 512)), registry.PushOptions{Name: "digits", Version: "1.0.0", GitSHA: sha1, Signer: other})
		require.NoError(t, err)
		dest := filepath.Join(f.dir, "pulled.onnx")
		_, _, err = f.reg.PullVerified(ctx, ref, dest, v)
		require.ErrorIs(t, err, modelsig.ErrBadSignature)
		assert.ErrorContains(t, err, "public key")
		assertNotWritten(t, dest)
	})

	t.Run("tampered model refused", func(t *testing.T) {
		f := newRegistry(t)
		res, err := f.reg.Push(ctx, f.file(t, "model.onnx", randomBytes(t, 512)), registry.PushOptions{Name: "digits", Version: "1.0.0", GitSHA: sha1, Signer: sv})
		require.NoError(t, err)
		// Someone with bucket access pushes other weights as a blob and points the manifest at
		// them, digest and all: the registry's own checks pass, the signature's do not.
		evil := f.file(t, "evil.onnx", randomBytes(t, 512))
		staged := newRegistryIn(t, f)
		out, err := staged.Push(ctx, evil, registry.PushOptions{Name: "digits", Version: "9.9.9", GitSHA: sha2})
		require.NoError(t, err)
		m := res.Manifest
		m.SHA256, m.Size, m.StoredSize, m.Blob = out.Manifest.SHA256, out.Manifest.Size, out.Manifest.StoredSize, out.Manifest.Blob
		body, err := json.MarshalIndent(m, "", "  ")
		require.NoError(t, err)
		_, err = f.client.PutObject(ctx, f.bucket, path.Join("digits", "versions", "1.0.0", "manifest.json"), bytes.NewReader(body), int64(len(body)), minio.PutObjectOptions{})
		require.NoError(t, err)

		dest := filepath.Join(f.dir, "pulled.onnx")
		_, err = f.reg.Pull(ctx, ref, dest)
		require.NoError(t, err, "without the key, the swapped model passes the registry's own digest check")
		require.NoError(t, os.Remove(dest))
		_, _, err = f.reg.PullVerified(ctx, ref, dest, v)
		require.ErrorIs(t, err, modelsig.ErrBadSignature)
		assert.ErrorContains(t, err, "manifest was changed after signing")
		assertNotWritten(t, dest)

		// A signature edited by hand no longer verifies at all.
		key := path.Join("digits", "versions", "1.0.0", "signature.dsse.json")
		obj, err := f.client.GetObject(ctx, f.bucket, key, minio.GetObjectOptions{})
		require.NoError(t, err)
		var env map[string]any
		require.NoError(t, json.NewDecoder(obj).Decode(&env))
		env["payload"] = "e30=" // {}
		edited, _ := json.Marshal(env)
		_, err = f.client.PutObject(ctx, f.bucket, key, bytes.NewReader(edited), int64(len(edited)), minio.PutObjectOptions{})
		require.NoError(t, err)
		_, err = f.reg.Verify(ctx, "digits", "1.0.0", v)
		require.ErrorIs(t, err, modelsig.ErrBadSignature)
	})
}

// newRegistryIn is another registry over f's bucket, as a second writer.
func newRegistryIn(t *testing.T, f *fixture) *registry.Registry {
	t.Helper()
	reg, err := registry.New(f.client, registry.Options{Bucket: f.bucket, CacheDir: filepath.Join(t.TempDir(), "cache")})
	require.NoError(t, err)
	return reg
}

func assertNotWritten(t *testing.T, dest string) {
	t.Helper()
	_, err := os.Stat(dest)
	assert.True(t, os.IsNotExist(err), "nothing is written for a refused model")
}
