#!/usr/bin/env bash
# Checks what no unit test covers: the Dagger module builds and vets against its committed,
# engine-generated bindings, the GitHub workflow passes actionlint, and the GitLab file passes
# gitlab-ci-local's schema validation and lists the jobs it should. Run by scripts/test.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

echo "check-ci: go build and go vet of ci/ against its generated bindings" >&2
(cd ci && go build ./... && go vet ./...)

echo "check-ci: actionlint" >&2
actionlint .github/workflows/*.yml

echo "check-ci: gitlab-ci-local --list" >&2
list_jobs() { gitlab-ci-local --list "$@" 2>/dev/null | awk '/^name /{table=1; next} table {print $1}' | tr '\n' ' '; }
jobs=$(list_jobs)
for job in validate test-quality build-image deploy-staging rollback promote-production; do
  [[ " $jobs " == *" $job "* ]] || { echo "check-ci: .gitlab-ci.yml has no job $job (jobs: $jobs)" >&2; exit 1; }
done
branch_jobs=$(list_jobs --variable CI_COMMIT_BRANCH=feature-x --ignore-predefined-vars CI_COMMIT_BRANCH)
[[ " $branch_jobs " == *" test-quality "* ]] || { echo "check-ci: could not list the jobs of a feature branch" >&2; exit 1; }
for job in deploy-staging promote-production; do
  [[ " $branch_jobs " != *" $job "* ]] || { echo "check-ci: $job must not run on a feature branch" >&2; exit 1; }
done
gitlab-ci-local --list 2>/dev/null | awk '$1 == "promote-production"' | grep -qw manual ||
  { echo "check-ci: promote-production must wait for a person (when: manual)" >&2; exit 1; }
awk '/^  [a-z-]+:$/{job=$1} job == "promote-production:" && /^    environment: production$/{found=1} END{exit !found}' .github/workflows/deploy.yml ||
  { echo "check-ci: the GitHub promotion must be bound to the production environment" >&2; exit 1; }
# Signing: GitHub's build-image may ask for an OIDC token and signs keyless with it; the
# deploys and the promotion of both files verify with the public key before rolling out.
awk '/^  [a-z-]+:$/{job=$1} job == "build-image:" && /id-token: write/{found=1} END{exit !found}' .github/workflows/deploy.yml ||
  { echo "check-ci: the GitHub build-image job needs id-token: write for keyless signing" >&2; exit 1; }
grep -q 'cosign sign --yes' .github/workflows/deploy.yml ||
  { echo "check-ci: the GitHub build-image job must sign keyless (cosign sign --yes)" >&2; exit 1; }
for file in .github/workflows/deploy.yml .gitlab-ci.yml; do
  for verb in "deploy --git-sha" "promote --from"; do
    tr '\n' ' ' <"$file" | grep -Eq "VERIFYING( }})?[[:space:]]+$verb" ||
      { echo "check-ci: $file: $verb must verify the image's signature (with-signing --public-key)" >&2; exit 1; }
  done
done
schedule_jobs=$(list_jobs --variable CI_PIPELINE_SOURCE=schedule --ignore-predefined-vars CI_PIPELINE_SOURCE)
[[ "$schedule_jobs" == "evaluate-production " ]] || { echo "check-ci: a scheduled pipeline must run only evaluate-production (got: $schedule_jobs)" >&2; exit 1; }
mr_jobs=$(list_jobs --variable CI_PIPELINE_SOURCE=merge_request_event --ignore-predefined-vars CI_PIPELINE_SOURCE)
[[ " $mr_jobs " == *" report-note "* ]] || { echo "check-ci: a merge-request pipeline must post the report note (got: $mr_jobs)" >&2; exit 1; }
[[ " $jobs " != *" report-note "* ]] || { echo "check-ci: the report note is for merge requests only" >&2; exit 1; }
echo "check-ci: ok ($jobs; scheduled: $schedule_jobs)" >&2
