package manifest

import (
	"errors"
	"fmt"
	"regexp"

	"github.com/modelship/modelship/internal/pipeline"
)

// The naming rules live here rather than in package registry so that what only reads names
// (modelship.json in the Dagger module) does not link the storage client.

// ErrInvalidName marks a model name, version or git SHA that cannot become part of an object key.
var ErrInvalidName = errors.New("invalid name")

var (
	nameRe    = regexp.MustCompile(`^[a-z0-9]([a-z0-9_-]|\.[a-z0-9_-]){0,62}$`)
	versionRe = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9_+-]|\.[A-Za-z0-9_+-]){0,127}$`)
	aliasRe   = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)
	// versionLike is what people write as a version ("v2", "v1-rc1"); an alias spelled so would
	// read as a version in every log and command line it appears in.
	versionLike = regexp.MustCompile(`^v[0-9]`)
)

// Latest is the version selector that resolves to the newest pushed version.
const Latest = "latest"

// ValidateName checks a model name: 1-63 lower-case letters, digits, '-', '_' and single dots.
func ValidateName(name string) error {
	if !nameRe.MatchString(name) {
		return fmt.Errorf("%w: model name %q: use 1-63 lower-case letters, digits, '-', '_' or '.', starting with a letter or digit (no slashes, no '..')", ErrInvalidName, name)
	}
	return nil
}

// ValidateVersion checks a version: 1-128 letters, digits, '-', '_', '+' and single dots; not "latest".
func ValidateVersion(version string) error {
	if version == Latest {
		return fmt.Errorf("%w: version %q is reserved for the newest version; pick another", ErrInvalidName, version)
	}
	if !versionRe.MatchString(version) {
		return fmt.Errorf("%w: version %q: use 1-128 letters, digits, '-', '_', '+' or '.', starting with a letter or digit (no slashes, no '..')", ErrInvalidName, version)
	}
	return nil
}

// ValidateAlias checks a model alias (champion, production, ...): 1-63 lower-case letters,
// digits, '-' and '_', starting with a letter. It refuses what could be taken for a version:
// no dots, no leading digit, not "v" and a digit, not "latest".
func ValidateAlias(alias string) error {
	switch {
	case alias == Latest:
		return fmt.Errorf("%w: alias %q is the selector of the newest version; pick another", ErrInvalidName, alias)
	case !aliasRe.MatchString(alias):
		return fmt.Errorf("%w: alias %q: use 1-63 lower-case letters, digits, '-' or '_', starting with a letter (e.g. champion, production)", ErrInvalidName, alias)
	case versionLike.MatchString(alias):
		return fmt.Errorf("%w: alias %q reads as a version; aliases name a role (champion, production), not a version", ErrInvalidName, alias)
	}
	return nil
}

// ValidateGitSHA checks a full commit SHA (40 hex digits, or 64 for SHA-256 repositories).
func ValidateGitSHA(sha string) error {
	if !pipeline.IsGitSHA(sha) {
		return fmt.Errorf("%w: git SHA %q: want the full commit SHA, 40 lower-case hex digits (git rev-parse HEAD)", ErrInvalidName, sha)
	}
	return nil
}
