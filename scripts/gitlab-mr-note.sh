#!/usr/bin/env sh
# Posts the quality report as a merge-request note, updating the same note on every run (it is
# found by its first line). Runs in GitLab CI on merge-request pipelines; needs a project access
# token with the api scope in MODELSHIP_GITLAB_TOKEN (CI_JOB_TOKEN cannot write notes).
# Usage: scripts/gitlab-mr-note.sh reports/quality-report.md
set -eu
report=${1:-reports/quality-report.md}
marker='<!-- modelship:quality-report -->'
: "${MODELSHIP_GITLAB_TOKEN:?set MODELSHIP_GITLAB_TOKEN, a project access token with the api scope}"
: "${CI_API_V4_URL:?not in GitLab CI}" "${CI_PROJECT_ID:?}" "${CI_MERGE_REQUEST_IID:?not a merge-request pipeline}"
notes="$CI_API_V4_URL/projects/$CI_PROJECT_ID/merge_requests/$CI_MERGE_REQUEST_IID/notes"
if [ -f "$report" ]; then body=$(printf '%s\n%s' "$marker" "$(cat "$report")"); else body=$(printf '%s\nNo quality report: the gate could not run (see the job log).' "$marker"); fi
payload=$(jq -n --arg body "$body" '{body: $body}')
auth="PRIVATE-TOKEN: $MODELSHIP_GITLAB_TOKEN"
existing=$(curl -fsS -H "$auth" "$notes?per_page=100&sort=asc" | jq -r --arg m "$marker" '[.[] | select(.body | startswith($m))][0].id // empty')
if [ -n "$existing" ]; then
  curl -fsS -X PUT -H "$auth" -H 'Content-Type: application/json' -d "$payload" "$notes/$existing" >/dev/null
  echo "updated note $existing"
else
  curl -fsS -X POST -H "$auth" -H 'Content-Type: application/json' -d "$payload" "$notes" >/dev/null
  echo "posted a note"
fi
