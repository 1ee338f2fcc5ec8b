// Package pipeline holds the few rules the Dagger module (ci/) and the CLI share: which branch
// deploys, how an image is named, how an image carries its smoke inference, and the reference
// model that seeds an empty registry. It depends on the standard library (and strictjson, which
// does too), so ci/ can import it without growing.
package pipeline

import (
	"fmt"
	"regexp"
	"strings"
)

// DeployBranch is the one branch whose pipelines deploy.
const DeployBranch = "main"

// The reference model as the repository ships it and model_baseline.json names it in
// production: what an empty, embedded registry is seeded with.
const (
	ReferenceModelName    = "digits"
	ReferenceModelFile    = "models/digits-reference.onnx"
	ReferenceModelVersion = "1.0.0"
	ReferenceGitSHA       = "ca08f38ff66cd48f483fdf4c2f2da9265f4fb98e"
)

var (
	shaRe  = regexp.MustCompile(`^([0-9a-f]{40}|[0-9a-f]{64})$`)
	repoRe = regexp.MustCompile(`^[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$`)
	hostRe = regexp.MustCompile(`^[A-Za-z0-9.-]+(:[0-9]+)?$`)
)

// IsGitSHA reports whether sha is a full commit SHA: 40 lower-case hex digits, or 64 for
// SHA-256 repositories.
func IsGitSHA(sha string) bool { return shaRe.MatchString(sha) }

// ValidateGitSHA checks a full commit SHA.
func ValidateGitSHA(sha string) error {
	if !IsGitSHA(sha) {
		return fmt.Errorf("git SHA %q: want the full commit SHA, 40 lower-case hex digits (git rev-parse HEAD)", sha)
	}
	return nil
}

// ImageRef is the image reference a build is pushed as: <registry>/<repository>:<git-sha>.
// Tags are always the commit, never a moving tag, so a push never overwrites another build.
func ImageRef(registry, repository, gitSHA string) (string, error) {
	registry = strings.TrimSuffix(registry, "/")
	if !hostRe.MatchString(registry) {
		return "", fmt.Errorf("registry %q: want host[:port], e.g. ghcr.io or 127.0.0.1:5000", registry)
	}
	if !repoRe.MatchString(repository) {
		return "", fmt.Errorf("image repository %q: lower-case letters, digits, '.', '_', '-' and '/' only", repository)
	}
	if err := ValidateGitSHA(gitSHA); err != nil {
		return "", err
	}
	return registry + "/" + repository + ":" + gitSHA, nil
}
