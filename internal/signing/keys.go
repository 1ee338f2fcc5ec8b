// Package signing signs and verifies what the pipeline ships: server images, with cosign's
// signature and attestation formats in the image's own registry, and models, with a DSSE
// envelope stored beside their manifest. Keys are cosign's: `cosign generate-key-pair` makes
// them, and `cosign verify` / `cosign verify-attestation` accept what this package writes.
package signing

import (
	"errors"
	"fmt"
	"os"

	"github.com/sigstore/cosign/v2/pkg/cosign"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/modelship/modelship/internal/signing/modelsig"
)

var (
	// ErrUnsigned: there is no signature (or no attestation) where one must be.
	ErrUnsigned = modelsig.ErrUnsigned
	// ErrBadSignature: a signature is there but none verifies with the key given: another key
	// signed it, or what it covers was changed after signing.
	ErrBadSignature = modelsig.ErrBadSignature
	// ErrProvenanceMismatch: the signed provenance names another commit or model than the one
	// being deployed.
	ErrProvenanceMismatch = errors.New("provenance does not match")
	// ErrKey: a key could not be read.
	ErrKey = modelsig.ErrKey
)

// PasswordEnv is where the password of an encrypted cosign private key is read from, as cosign
// itself does.
const PasswordEnv = "COSIGN_PASSWORD"

// GenerateKeyPair makes a cosign key pair (ECDSA P-256): the private key PEM encrypted with
// password, and the public key PEM.
func GenerateKeyPair(password []byte) (private, public []byte, err error) {
	keys, err := cosign.GenerateKeyPair(func(bool) ([]byte, error) { return password, nil })
	if err != nil {
		return nil, nil, fmt.Errorf("generate a key pair: %w", err)
	}
	return keys.PrivateBytes, keys.PublicBytes, nil
}

// LoadSigner reads a cosign private key (`cosign generate-key-pair`'s cosign.key) encrypted with
// password.
func LoadSigner(keyPEM, password []byte) (signature.SignerVerifier, error) {
	sv, err := cosign.LoadPrivateKey(keyPEM, password, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: read the cosign private key (is %s its password?): %v", ErrKey, PasswordEnv, err)
	}
	return sv, nil
}

// LoadSignerFile is LoadSigner of a key file, its password from COSIGN_PASSWORD.
func LoadSignerFile(path string) (signature.SignerVerifier, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: read signing key %s: %v", ErrKey, path, err)
	}
	sv, err := LoadSigner(b, []byte(os.Getenv(PasswordEnv)))
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	return sv, nil
}

// LoadVerifier reads a PEM public key (cosign.pub).
func LoadVerifier(pubPEM []byte) (signature.Verifier, error) { return modelsig.LoadVerifier(pubPEM) }

// LoadVerifierFile is LoadVerifier of a file.
func LoadVerifierFile(path string) (signature.Verifier, error) {
	return modelsig.LoadVerifierFile(path)
}
