package signing_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelship/modelship/internal/signing"
	"github.com/modelship/modelship/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

const (
	gitSHA   = "0123456789abcdef0123456789abcdef01234567"
	modelSHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	password = "test-password"
)

// keyPair is a cosign key pair made for one test, in files as cosign's CLI wants them.
type keyPair struct {
	Signer            signature.SignerVerifier
	Verifier          signature.Verifier
	PrivPath, PubPath string
}

func newKeyPair(t *testing.T) keyPair {
	t.Helper()
	priv, pub, err := signing.GenerateKeyPair([]byte(password))
	require.NoError(t, err)
	sv, err := signing.LoadSigner(priv, []byte(password))
	require.NoError(t, err)
	v, err := signing.LoadVerifier(pub)
	require.NoError(t, err)
	dir := t.TempDir()
	kp := keyPair{Signer: sv, Verifier: v, PrivPath: filepath.Join(dir, "cosign.key"), PubPath: filepath.Join(dir, "cosign.pub")}
	require.NoError(t, os.WriteFile(kp.PrivPath, priv, 0o600))
	require.NoError(t, os.WriteFile(kp.PubPath, pub, 0o644))
	return kp
}

func build() signing.Build {
	return signing.Build{GitSHA: gitSHA, ModelName: "digits", ModelVersion: "1.0.0", ModelSHA256: modelSHA,
		Dockerfile: "serving/Dockerfile", DockerfileSHA256: strings.Repeat("ab", 32),
		BaseImages: map[string]string{"go": "golang:1.26@sha256:" + strings.Repeat("cd", 32)},
		Platforms:  []string{"linux/amd64"}, StartedOn: time.Now().Add(-time.Minute), FinishedOn: time.Now()}
}

const sbom = `{"bomFormat":"CycloneDX","specVersion":"1.6","components":[{"type":"library","name":"onnx","version":"1.0"}]}`

// signBuilt pushes a fresh image as repo:tag and signs it as build-image does: the signature,
// the provenance of b and the SBOM.
func signBuilt(t *testing.T, reg *testenv.OCIRegistry, repoTag string, kp keyPair, b signing.Build) string {
	t.Helper()
	ref := reg.PushRandomImage(t, repoTag)
	repo, digest, _ := strings.Cut(ref, "@")
	prov, err := signing.ProvenanceStatement(repo, digest, b)
	require.NoError(t, err)
	bom, err := signing.SBOMStatement(repo, digest, []byte(sbom))
	require.NoError(t, err)
	out, err := signing.SignImage(context.Background(), signing.Registry{}, ref, kp.Signer, prov, bom)
	require.NoError(t, err)
	assert.Equal(t, ref, out.Digest)
	assert.Equal(t, []string{signing.ProvenanceType, signing.SBOMType}, out.Attestation)
	return ref
}

// The signing cases in the order the issue gives them, each against a real registry with keys
// made here: signed and verified; tampered, unsigned and wrong-key images refused, each with an
// error that says which.
func TestImageSignatures(t *testing.T) {
	reg := testenv.SharedRegistry(t)
	ctx := context.Background()
	kp := newKeyPair(t)

	t.Run("sign then verify", func(t *testing.T) {
		ref := signBuilt(t, reg, "sig/good:"+gitSHA, kp, build())
		v, err := signing.VerifyImage(ctx, signing.Registry{}, ref, kp.Verifier, signing.Expect{GitSHA: gitSHA, ModelSHA256: modelSHA})
		require.NoError(t, err)
		assert.Equal(t, ref, v.Digest)
		assert.True(t, v.SBOM, "the SBOM attestation verifies too")
		assert.Equal(t, signing.Provenance{BuilderID: signing.BuilderID, GitSHA: gitSHA, ModelName: "digits", ModelVersion: "1.0.0", ModelSHA256: modelSHA}, *v.Provenance)

		// By tag, the verified digest is what the tag names now: the one to deploy.
		v, err = signing.VerifyImage(ctx, signing.Registry{}, reg.Addr+"/sig/good:"+gitSHA, kp.Verifier, signing.Expect{GitSHA: gitSHA})
		require.NoError(t, err)
		assert.Equal(t, ref, v.Digest)

		// Signing again adds no second provenance: the verifier still finds one of each.
		signBuilt(t, reg, "sig/again:"+gitSHA, kp, build())
		again := signBuilt(t, reg, "sig/again:"+gitSHA, kp, build())
		_, err = signing.VerifyImage(ctx, signing.Registry{}, again, kp.Verifier, signing.Expect{GitSHA: gitSHA})
		require.NoError(t, err)
	})

	t.Run("tampered image refused", func(t *testing.T) {
		signBuilt(t, reg, "sig/tampered:"+gitSHA, kp, build())
		// Someone pushes other bytes under the signed tag: the tag now names an image no one signed.
		swapped := reg.PushRandomImage(t, "sig/tampered:"+gitSHA)
		_, err := signing.VerifyImage(ctx, signing.Registry{}, reg.Addr+"/sig/tampered:"+gitSHA, kp.Verifier, signing.Expect{GitSHA: gitSHA})
		require.ErrorIs(t, err, signing.ErrUnsigned)
		assert.Contains(t, err.Error(), swapped, "names the image it looked at")
		assert.Contains(t, err.Error(), ".sig", "says where the signature should be")
	})

	t.Run("tampered provenance refused", func(t *testing.T) {
		// A signed image whose provenance names another commit or model is not the release.
		ref := signBuilt(t, reg, "sig/other:"+gitSHA, kp, build())
		_, err := signing.VerifyImage(ctx, signing.Registry{}, ref, kp.Verifier, signing.Expect{GitSHA: strings.Repeat("e", 40)})
		require.ErrorIs(t, err, signing.ErrProvenanceMismatch)
		assert.Contains(t, err.Error(), gitSHA)
		_, err = signing.VerifyImage(ctx, signing.Registry{}, ref, kp.Verifier, signing.Expect{GitSHA: gitSHA, ModelSHA256: strings.Repeat("f", 64)})
		require.ErrorIs(t, err, signing.ErrProvenanceMismatch)
		assert.Contains(t, err.Error(), "digits@1.0.0")
	})

	t.Run("unsigned image refused", func(t *testing.T) {
		ref := reg.PushRandomImage(t, "sig/unsigned:"+gitSHA)
		_, err := signing.VerifyImage(ctx, signing.Registry{}, ref, kp.Verifier, signing.Expect{GitSHA: gitSHA})
		require.ErrorIs(t, err, signing.ErrUnsigned)
		assert.Contains(t, err.Error(), "no signature")

		// Signed but without provenance: refused for what is missing.
		_, err = signing.SignImage(ctx, signing.Registry{}, ref, kp.Signer)
		require.NoError(t, err)
		_, err = signing.VerifyImage(ctx, signing.Registry{}, ref, kp.Verifier, signing.Expect{GitSHA: gitSHA})
		require.ErrorIs(t, err, signing.ErrUnsigned)
		assert.Contains(t, err.Error(), "no attestation")
	})

	t.Run("wrong key refused", func(t *testing.T) {
		ref := signBuilt(t, reg, "sig/wrongkey:"+gitSHA, kp, build())
		other := newKeyPair(t)
		_, err := signing.VerifyImage(ctx, signing.Registry{}, ref, other.Verifier, signing.Expect{GitSHA: gitSHA})
		require.ErrorIs(t, err, signing.ErrBadSignature)
		assert.Contains(t, err.Error(), "another key")
	})

	t.Run("unreachable registry", func(t *testing.T) {
		_, err := signing.VerifyImage(ctx, signing.Registry{}, testenv.FreeAddr(t)+"/sig/none:"+gitSHA, kp.Verifier, signing.Expect{GitSHA: gitSHA})
		require.Error(t, err)
		assert.NotErrorIs(t, err, signing.ErrUnsigned, "an outage is not a missing signature")
		assert.Contains(t, err.Error(), "resolve")
	})
}

// cosign's own CLI accepts what SignImage writes: the signature (`cosign verify`), the SLSA
// provenance and the SBOM (`cosign verify-attestation`), and refuses them with another key.
func TestCosignVerifiesOurSignatures(t *testing.T) {
	cosign, err := exec.LookPath("cosign")
	if err != nil {
		testenv.Missing(t, "cosign", "no cosign CLI on PATH; scripts/tools.sh builds it")
	}
	reg := testenv.SharedRegistry(t)
	kp := newKeyPair(t)
	ref := signBuilt(t, reg, "sig/cosign:"+gitSHA, kp, build())

	run := func(args ...string) (string, error) {
		cmd := exec.Command(cosign, args...)
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "TUF_ROOT="+t.TempDir(), "SIGSTORE_NO_CACHE=true")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run("verify", "--key", kp.PubPath, "--insecure-ignore-tlog", "--allow-http-registry", ref)
	require.NoError(t, err, out)
	var claims []struct {
		Critical struct {
			Image struct {
				Digest string `json:"docker-manifest-digest"`
			} `json:"image"`
		} `json:"critical"`
	}
	require.NoError(t, json.Unmarshal([]byte(lastLine(out)), &claims), out)
	require.Len(t, claims, 1)
	assert.Equal(t, ref[strings.Index(ref, "@")+1:], claims[0].Critical.Image.Digest)

	for _, typ := range []string{"slsaprovenance1", "cyclonedx"} {
		out, err := run("verify-attestation", "--key", kp.PubPath, "--insecure-ignore-tlog", "--allow-http-registry", "--type", typ, ref)
		require.NoError(t, err, "%s: %s", typ, out)
		assert.Contains(t, out, "Verification for "+ref, typ)
	}

	other := newKeyPair(t)
	out, err = run("verify", "--key", other.PubPath, "--insecure-ignore-tlog", "--allow-http-registry", ref)
	require.Error(t, err, "cosign refuses another key: %s", out)
	out, err = run("verify-attestation", "--key", other.PubPath, "--insecure-ignore-tlog", "--allow-http-registry", "--type", "slsaprovenance1", ref)
	require.Error(t, err, "cosign refuses another key: %s", out)
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// Through another address for the same registry (a tunnel, as the Dagger module binds one),
// signing and verifying work the same, and what they report and sign names the image under its
// own registry, never the tunnel's address.
func TestVerifyThroughAnotherAddress(t *testing.T) {
	reg := testenv.SharedRegistry(t)
	ctx := context.Background()
	kp := newKeyPair(t)
	_, port, _ := strings.Cut(reg.Addr, ":")
	via := signing.Registry{Via: "localhost:" + port}

	ref := signBuilt(t, reg, "sig/via:"+gitSHA, kp, build())
	_, digest, _ := strings.Cut(ref, "@")
	v, err := signing.VerifyImage(ctx, via, "registry.invalid:1/sig/via:"+gitSHA, kp.Verifier, signing.Expect{GitSHA: gitSHA})
	require.NoError(t, err)
	assert.Equal(t, "registry.invalid:1/sig/via@"+digest, v.Digest)

	pushed := reg.PushRandomImage(t, "sig/via-signed:"+gitSHA)
	_, digest, _ = strings.Cut(pushed, "@")
	named, err := signing.ResolveDigest(ctx, via, "registry.invalid:1/sig/via-signed:"+gitSHA)
	require.NoError(t, err)
	assert.Equal(t, "registry.invalid:1/sig/via-signed@"+digest, named)
	prov, err := signing.ProvenanceStatement("registry.invalid:1/sig/via-signed", digest, build())
	require.NoError(t, err)
	out, err := signing.SignImage(ctx, via, named, kp.Signer, prov)
	require.NoError(t, err)
	assert.Equal(t, named, out.Digest)
	// cosign's payload names the image as its users know it.
	sigTag, err := name.ParseReference(strings.Replace(pushed, "@"+digest, ":"+strings.Replace(digest, ":", "-", 1)+".sig", 1))
	require.NoError(t, err)
	sigs, err := ociremote.Signatures(sigTag)
	require.NoError(t, err)
	list, err := sigs.Get()
	require.NoError(t, err)
	require.Len(t, list, 1)
	payload, err := list[0].Payload()
	require.NoError(t, err)
	assert.Contains(t, string(payload), `"docker-reference":"registry.invalid:1/sig/via-signed"`)
	_, err = signing.VerifyImage(ctx, signing.Registry{}, pushed, kp.Verifier, signing.Expect{GitSHA: gitSHA})
	require.NoError(t, err, "signed through the tunnel, verified at the registry's own address")
}
