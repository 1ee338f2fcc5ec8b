#!/usr/bin/env bash
# The quality gate (test-quality stage): runs ./tests through gotestsum so that the report folder
# gets test-results.xml (JUnit) beside quality-report.json/.md and the charts, pass or fail.
# Exit code 1 when any floor is missed or the gate cannot evaluate. Configure with MODELSHIP_*
# variables (README "The quality gate").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
report_dir=${MODELSHIP_REPORT_DIR:-reports/quality}
mkdir -p "$report_dir"
export MODELSHIP_REPORT_DIR
MODELSHIP_REPORT_DIR=$(cd "$report_dir" && pwd)
if ! command -v gotestsum >/dev/null; then
  source scripts/tools.sh
  PINNED_TOOLS=("${PINNED_TOOLS[0]}")   # gotestsum only
  install_go_tools
fi
exec gotestsum --junitfile "$MODELSHIP_REPORT_DIR/test-results.xml" --format testname -- -count=1 ./tests
