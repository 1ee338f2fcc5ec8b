package registry

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/modelship/modelship/internal/registry/manifest"
)

// The naming rules are package manifest's; these names keep the registry's API in one place.
var (
	ErrInvalidName  = manifest.ErrInvalidName
	ValidateName    = manifest.ValidateName
	ValidateVersion = manifest.ValidateVersion
	ValidateGitSHA  = manifest.ValidateGitSHA
	ValidateAlias   = manifest.ValidateAlias
)

// Latest is the version selector that resolves to the newest pushed version.
const Latest = manifest.Latest

var shaPrefix = regexp.MustCompile(`^[0-9a-f]{7,64}$`)

// validateSHAPrefix checks a SHA given to look a version up: at least 7 hex digits.
func validateSHAPrefix(sha string) error {
	if !shaPrefix.MatchString(strings.ToLower(sha)) || sha != strings.ToLower(sha) {
		return fmt.Errorf("%w: git SHA %q: want 7 to 64 lower-case hex digits", ErrInvalidName, sha)
	}
	return nil
}
