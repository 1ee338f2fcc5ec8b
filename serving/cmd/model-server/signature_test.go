package main_test

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelship/modelship/internal/plumbing/projectpath"
	"github.com/modelship/modelship/internal/signing"
	"github.com/modelship/modelship/internal/signing/modelsig"
	"github.com/modelship/modelship/internal/testenv"
)

// TestMain removes the binaries the tests build when they are done.
func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// signed is a model file, its signature and the public key of the key that made it, as files.
type signed struct {
	model, signature, publicKey string
	sha256                      string
}

// signModel signs the model file at path as digits@1.0.0 with a key made for the test.
func signModel(t *testing.T, path string) signed {
	t.Helper()
	dir := t.TempDir()
	priv, pub, err := signing.GenerateKeyPair([]byte("pw"))
	require.NoError(t, err)
	sv, err := signing.LoadSigner(priv, []byte("pw"))
	require.NoError(t, err)
	sum := fileSHA256(t, path)
	env, err := modelsig.SignModel(modelsig.Model{Name: "digits", Version: "1.0.0", Filename: filepath.Base(path),
		SHA256: sum, ManifestSHA256: modelsig.ManifestDigest([]byte(`{"name":"digits","version":"1.0.0"}`))}, sv)
	require.NoError(t, err)
	s := signed{model: path, signature: filepath.Join(dir, "signature.dsse.json"), publicKey: filepath.Join(dir, "cosign.pub"), sha256: sum}
	require.NoError(t, os.WriteFile(s.signature, env, 0o644))
	require.NoError(t, os.WriteFile(s.publicKey, pub, 0o644))
	return s
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// exitCode waits for the process to exit on its own and returns its exit code; a server that
// loads the model or keeps running (it went on with what it should have refused) fails the test.
func exitCode(t *testing.T, p *testenv.Process) int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !p.Exited() {
		if strings.Contains(p.Output(), `"msg":"model loaded"`) || time.Now().After(deadline) {
			t.Fatalf("the server went on to serve; it should have refused to start:\n%s", p.Output())
		}
		time.Sleep(10 * time.Millisecond)
	}
	err := p.Wait()
	if err == nil {
		return 0
	}
	var exitErr interface{ ExitCode() int }
	require.ErrorAs(t, err, &exitErr)
	return exitErr.ExitCode()
}

// A model whose file is the signed one starts, says so, and answers ready; the environment's
// variables do what the flags do.
func TestBinaryServesASignedModel(t *testing.T) {
	bin := testenv.Binary(t, "./serving/cmd/model-server")
	s := signModel(t, projectpath.Join(t, "models/digits-reference.onnx"))
	cases := map[string]struct{ args, env []string }{
		"flags":       {[]string{"-public-key", s.publicKey, "-model-signature", s.signature}, nil},
		"environment": {nil, []string{"MODELSHIP_PUBLIC_KEY=" + s.publicKey, "MODELSHIP_MODEL_SIGNATURE=" + s.signature}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			addr := testenv.FreeAddr(t)
			args := append([]string{"-addr", addr, "-model-path", s.model, "-model-name", "digits"}, tc.args...)
			p := testenv.Start(t, bin, args, tc.env)
			testenv.WaitHTTP(t, p, "http://"+addr+"/v2/health/ready", http.StatusOK)
			out := p.Output()
			assert.Contains(t, out, "the model's sha256 matches the signature of digits@1.0.0")
			assert.Contains(t, out, `"sha256":"`+s.sha256+`"`)
			// The check comes before the model is loaded.
			assert.Less(t, strings.Index(out, "matches the signature"), strings.Index(out, `"msg":"model loaded"`))
		})
	}
}

// A model file that is not the signed one, a key that did not sign it, a signature or key that
// cannot be read, or one of the two settings without the other: the server does not start.
func TestBinaryRefusesAModelItsSignatureDoesNotCover(t *testing.T) {
	bin := testenv.Binary(t, "./serving/cmd/model-server")
	reference := projectpath.Join(t, "models/digits-reference.onnx")
	s := signModel(t, reference)
	other := signModel(t, reference) // another key's signature of the same file
	dir := t.TempDir()

	// The signed model with a byte changed and bytes added, and another model that serves
	// perfectly well unchecked.
	raw, err := os.ReadFile(reference)
	require.NoError(t, err)
	tampered := filepath.Join(dir, "digits-reference.onnx")
	changed := append([]byte(nil), raw...)
	changed[len(changed)/2] ^= 0xff
	require.NoError(t, os.WriteFile(tampered, append(changed, "extra"...), 0o644))
	weak := projectpath.Join(t, "models/digits-weak.onnx")
	garbage := filepath.Join(dir, "garbage.json")
	require.NoError(t, os.WriteFile(garbage, []byte("not an envelope"), 0o644))
	empty := filepath.Join(dir, "empty.json")
	require.NoError(t, os.WriteFile(empty, []byte(`{"payloadType":"application/vnd.in-toto+json"}`), 0o644))

	const notSigned = "the file is not the signed model"
	cases := map[string]struct {
		model    string
		args     []string
		env      []string
		exitCode int
		want     []string
	}{
		"tampered model": {tampered, []string{"-public-key", s.publicKey, "-model-signature", s.signature}, nil, 1,
			[]string{notSigned, "model file has sha256 " + fileSHA256(t, tampered), "digits@1.0.0 was signed with sha256 " + s.sha256, "pull the model and its signature again"}},
		"another model": {weak, []string{"-public-key", s.publicKey, "-model-signature", s.signature}, nil, 1,
			[]string{notSigned, "model file has sha256 " + fileSHA256(t, weak)}},
		"tampered model, environment": {tampered, nil, []string{"MODELSHIP_PUBLIC_KEY=" + s.publicKey, "MODELSHIP_MODEL_SIGNATURE=" + s.signature}, 1,
			[]string{notSigned}},
		"wrong public key": {reference, []string{"-public-key", other.publicKey, "-model-signature", s.signature}, nil, 1,
			[]string{"does not verify with the public key given", "set -public-key (MODELSHIP_PUBLIC_KEY) to the public key of the key that signed the model"}},
		"signature not an envelope": {reference, []string{"-public-key", s.publicKey, "-model-signature", garbage}, nil, 1,
			[]string{garbage + " is not a DSSE envelope", "set -model-signature or MODELSHIP_MODEL_SIGNATURE"}},
		"signature of nothing": {reference, []string{"-public-key", s.publicKey, "-model-signature", empty}, nil, 1,
			[]string{empty + " is not a DSSE envelope: it has no payload or no signatures"}},
		"no signature file": {reference, []string{"-public-key", s.publicKey, "-model-signature", dir + "/absent.json"}, nil, 1,
			[]string{"read the signature", "absent.json: no such file", "set -model-signature or MODELSHIP_MODEL_SIGNATURE"}},
		"key not PEM": {reference, []string{"-public-key", s.signature, "-model-signature", s.signature}, nil, 1,
			[]string{"unusable key", "set -public-key or MODELSHIP_PUBLIC_KEY to the PEM public key file"}},
		"no model file": {dir + "/absent.onnx", []string{"-public-key", s.publicKey, "-model-signature", s.signature}, nil, 1,
			[]string{"check the model's signature: read model file", "absent.onnx: no such file", "set -model-path or MODELSHIP_MODEL_PATH to the signed ONNX file"}},
		"public key alone": {reference, []string{"-public-key", s.publicKey}, nil, 2,
			[]string{"-public-key (MODELSHIP_PUBLIC_KEY) is set but -model-signature is not: set -model-signature or MODELSHIP_MODEL_SIGNATURE"}},
		"signature alone": {reference, []string{"-model-signature", s.signature}, nil, 2,
			[]string{"-model-signature (MODELSHIP_MODEL_SIGNATURE) is set but -public-key is not: set -public-key or MODELSHIP_PUBLIC_KEY"}},
		"public key alone, environment": {reference, nil, []string{"MODELSHIP_PUBLIC_KEY=" + s.publicKey}, 2,
			[]string{"-model-signature is not"}},
		"signature alone, environment": {reference, nil, []string{"MODELSHIP_MODEL_SIGNATURE=" + s.signature}, 2,
			[]string{"-public-key is not"}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			addr := testenv.FreeAddr(t)
			args := append([]string{"-addr", addr, "-model-path", tc.model}, tc.args...)
			p := testenv.Start(t, bin, args, tc.env)
			assert.Equal(t, tc.exitCode, exitCode(t, p))
			out := p.Output()
			for _, want := range tc.want {
				assert.Contains(t, out, want)
			}
			assert.NotContains(t, out, "model loaded", "the server refuses before it loads the model")
			assert.NotContains(t, out, `"msg":"listening"`, "the server refuses before it listens")
		})
	}
}
