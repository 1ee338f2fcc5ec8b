#!/usr/bin/env bash
# govulncheck over the root module. Without the vulnerability database (this project's CI has
# no internet but the module proxy) the result is "database unreachable": said plainly, never a
# pass. Exit 1 only when vulnerabilities are found or govulncheck itself fails otherwise.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
out=$(govulncheck ./... 2>&1)
code=$?
if [[ $code == 0 ]]; then
  echo "govulncheck: no known vulnerabilities in the code paths used"
  exit 0
fi
if grep -qE 'fetching vulnerabilities|vuln.go.dev|no such host|dial tcp' <<<"$out"; then
  echo "govulncheck: RESULT: vulnerability database unreachable; dependencies were NOT checked (not a pass)."
  echo "govulncheck: $(grep -m1 -E 'fetching vulnerabilities|vuln.go.dev' <<<"$out")"
  echo "govulncheck: the Dagger scan check runs it where the database can be reached."
  exit 0
fi
echo "$out"
echo "govulncheck: found vulnerabilities or failed (exit $code)" >&2
exit 1
