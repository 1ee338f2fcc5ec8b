package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/modelship/modelship/internal/pipeline"
)

// exitUnverified is modelship deploy's exit code for a release that failed verification: the
// one deploy failure that calls for a rollback (see cmd/modelship).
const exitUnverified = 9

// Ship is the whole run: the quality gate; when it fails, a rollback (on main) and fail; when it
// could not evaluate (no model, no store), fail and touch nothing; else build the image, and on
// main deploy and verify it, rolling back and failing if it is unhealthy. Runs on every call.
//
// +cache="never"
func (m *Modelship) Ship(
	ctx context.Context,
	// Commit being shipped.
	gitSha string,
	// Branch of this run; only main deploys.
	//
	// +optional
	// +default="main"
	branch string,
	// Model version (default: the one pushed from --git-sha, else the one modelship.json pins).
	//
	// +optional
	modelVersion string,
	// Whether the image must be signed (see deploy): true or false; default required for
	// production only.
	//
	// +optional
	requireSignature string,
) (string, error) {
	if err := pipeline.ValidateGitSHA(gitSha); err != nil {
		return "", err
	}
	var log strings.Builder
	_, err := m.TestQuality(ctx, modelVersion, gitSha, "")
	var gf *gateFailed
	switch {
	case errors.As(err, &gf):
		fmt.Fprintf(&log, "test-quality: FAILED\n%v\n", err)
		if branch == pipeline.DeployBranch {
			m.rollbackInto(ctx, &log, "quality gate failed for "+gitSha)
		}
		return "", errors.New(log.String())
	case err != nil:
		fmt.Fprintf(&log, "test-quality: COULD NOT EVALUATE\n%v\nrollback: not run: nothing was judged, so production is left as it is\n", err)
		return "", errors.New(log.String())
	}
	log.WriteString("test-quality: passed\n")
	if branch != pipeline.DeployBranch {
		built, err := m.BuildImage(ctx, gitSha, modelVersion)
		if err != nil {
			return "", fmt.Errorf("%sbuild-image: %w", log.String(), err)
		}
		fmt.Fprintf(&log, "build-image: %s\ndeploy: skipped (branch %s; only %s deploys)\n", built.Output, branch, pipeline.DeployBranch)
		return log.String(), nil
	}
	out, err := m.Deploy(ctx, gitSha, branch, modelVersion, deployStrategyDirect, "", "", "", "", "", "", "", requireSignature, "")
	if err != nil {
		fmt.Fprintf(&log, "deploy: FAILED\n%v\n", err)
		if exitCode(err) == exitUnverified {
			m.rollbackInto(ctx, &log, "deploy of "+gitSha+" failed verification")
		} else {
			log.WriteString("rollback: not run: the release never took traffic\n")
		}
		return "", errors.New(log.String())
	}
	fmt.Fprintf(&log, "deploy: %s", out.Output)
	return log.String(), nil
}

// rollbackInto rolls back to what the state records as live and logs how that went.
func (m *Modelship) rollbackInto(ctx context.Context, log *strings.Builder, reason string) {
	rb, err := m.Rollback(ctx, reason, "current")
	if err != nil {
		fmt.Fprintf(log, "rollback: FAILED\n%v\n", err)
		return
	}
	fmt.Fprintf(log, "rollback: %s", rb.Output)
}
