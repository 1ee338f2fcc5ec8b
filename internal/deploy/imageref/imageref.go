// Package imageref pins an image reference to the digest its registry serves for it, so what a
// deploy records, and what a rollback brings back, are the same bytes even if the tag moves.
package imageref

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// ErrNotFound marks a reference its registry does not have.
var ErrNotFound = errors.New("image not found in its registry")

// Pinned is an image reference resolved to a digest.
type Pinned struct {
	Ref    string // the reference as given, with the digest added: repo:tag@sha256:...
	Digest string // repo@sha256:..., what deploy_state.json records
}

// HasDigest says ref already names its bytes (…@sha256:…).
func HasDigest(ref string) bool { return strings.Contains(ref, "@sha256:") }

// Resolve asks ref's registry which digest it serves for it, with the credentials `docker
// login` stored (~/.docker/config.json). Loopback and private-network registries are reached
// over plain HTTP, as Docker does for them. A reference that already has a digest is kept.
func Resolve(ctx context.Context, ref string) (Pinned, error) {
	parsed, err := name.ParseReference(ref)
	if err != nil {
		return Pinned{}, fmt.Errorf("image reference %q: %w", ref, err)
	}
	if d, ok := parsed.(name.Digest); ok {
		return Pinned{Ref: ref, Digest: d.Context().Name() + "@" + d.DigestStr()}, nil
	}
	desc, err := remote.Head(parsed, remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain))
	if err != nil {
		return Pinned{}, registryError(ref, "resolve "+ref+" to a digest at its registry", err)
	}
	return Pinned{Ref: ref + "@" + desc.Digest.String(), Digest: parsed.Context().Name() + "@" + desc.Digest.String()}, nil
}

// Same says a and b name the same image: equal references, or the same repository and digest.
func Same(a, b string) bool {
	if a == b {
		return true
	}
	da, errA := name.NewDigest(stripTag(a))
	db, errB := name.NewDigest(stripTag(b))
	return errA == nil && errB == nil && da.Context().Name() == db.Context().Name() && da.DigestStr() == db.DigestStr()
}

// stripTag turns repo:tag@sha256:… into repo@sha256:…; anything else is returned as it is.
func stripTag(ref string) string {
	repoTag, digest, ok := strings.Cut(ref, "@")
	if !ok {
		return ref
	}
	if i := strings.LastIndex(repoTag, ":"); i > strings.LastIndex(repoTag, "/") {
		repoTag = repoTag[:i]
	}
	return repoTag + "@" + digest
}

// Labels are the labels of ref's image config, read from its registry without pulling a layer:
// what build-image baked in (the model's name, version and smoke inference).
func Labels(ctx context.Context, ref string) (map[string]string, error) {
	parsed, err := name.ParseReference(ref)
	if err != nil {
		return nil, fmt.Errorf("image reference %q: %w", ref, err)
	}
	img, err := remote.Image(parsed, remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain))
	if err != nil {
		return nil, registryError(ref, "read the image config of "+ref+" at its registry", err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("read the image config of %s at its registry: %w", ref, err)
	}
	return cfg.Config.Labels, nil
}

// registryError is ErrNotFound, with what to check, when the registry does not have ref; else
// err, saying what failed.
func registryError(ref, what string, err error) error {
	var terr *transport.Error
	if errors.As(err, &terr) && terr.StatusCode == 404 {
		return fmt.Errorf("%w: %s: check the registry, repository and tag (build-image prints the reference it pushed)", ErrNotFound, ref)
	}
	return fmt.Errorf("%s: %w", what, err)
}
