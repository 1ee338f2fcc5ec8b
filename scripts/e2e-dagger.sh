#!/usr/bin/env bash
# End to end on a real Dagger engine: whatever engine the `dagger` CLI on PATH reaches. Runs the
# README's quick start verbatim and every function of the module, asserts each outcome, and ends
# with a table of calls, results and timings. Exits non-zero on any miss.
#
# Needs: dagger (v0.21.x), docker (the engine behind E2E_DOCKER_SOCKET), curl, jq, git, tar.
# Settings (environment):
#   E2E_DOCKER_SOCKET  Docker engine the deploys go to          (/var/run/docker.sock)
#   E2E_REGISTRY       an external registry the engine and Docker reach over plain HTTP on
#                      localhost, for build-image --registry     (localhost:5000)
#   E2E_REGISTRY_API   the same registry's API base URL, for the checks (http://127.0.0.1:5000)
#   MODELSHIP_GO_IMAGE, MODELSHIP_RUNTIME_IMAGE, MODELSHIP_MINIO_IMAGE, MODELSHIP_REGISTRY_IMAGE,
#   MODELSHIP_TRIVY_IMAGE  base images for a mirror (passed to with-base-images when set)
#   E2E_SKIP_SCAN=1    leave out the scan check (trivy and govulncheck are slow)
#   E2E_ORT_LIBRARY    a .tgz holding libonnxruntime for linux/amd64 and linux/arm64 (the npm
#                      package onnxruntime-node-1.24.3.tgz) for the ONNX Runtime image (else the
#                      build downloads that package)
#   E2E_S3_ENDPOINT    an S3 store the engine reaches, for with-storage (left out when unset), with
#                      its keys in E2E_S3_ACCESS_KEY and E2E_S3_SECRET_KEY
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1

SOCKET=${E2E_DOCKER_SOCKET:-/var/run/docker.sock}
EXT_REGISTRY=${E2E_REGISTRY:-localhost:5000}
EXT_API=${E2E_REGISTRY_API:-http://127.0.0.1:5000}
RUN=$(date +%s)
WORK=$(mktemp -d /tmp/modelship-e2e.XXXXXX)
HEAD=$(git rev-parse HEAD)
WEAK_SHA=0000000000000000000000000000000000e2e0a1
ROWS=()
MISSES=0

images=(with-base-images)
[[ -n "${MODELSHIP_GO_IMAGE:-}" ]] && images+=("--go-image=$MODELSHIP_GO_IMAGE")
[[ -n "${MODELSHIP_RUNTIME_IMAGE:-}" ]] && images+=("--runtime-image=$MODELSHIP_RUNTIME_IMAGE")
[[ -n "${MODELSHIP_MINIO_IMAGE:-}" ]] && images+=("--minio-image=$MODELSHIP_MINIO_IMAGE")
[[ -n "${MODELSHIP_REGISTRY_IMAGE:-}" ]] && images+=("--registry-image=$MODELSHIP_REGISTRY_IMAGE")
[[ -n "${MODELSHIP_TRIVY_IMAGE:-}" ]] && images+=("--trivy-image=$MODELSHIP_TRIVY_IMAGE")

# record NAME RESULT SECONDS DETAIL: one row of the closing table; RESULT ok or MISS.
record() {
  ROWS+=("$(printf '%-44s %-5s %8s  %s' "$1" "$2" "$3" "$4")")
  [[ $2 == ok ]] || MISSES=$((MISSES + 1))
  printf '%s %s (%ss) %s\n' "$2" "$1" "$3" "$4" >&2
}

# chain ARGS...: the call's arguments with with-base-images after the constructor's (the leading
# --flags), where a setting goes; in $CHAIN.
CHAIN=()
chain() {
  CHAIN=()
  while [[ $# -gt 0 && $1 == --* ]]; do
    CHAIN+=("$1")
    shift
  done
  CHAIN+=("${images[@]}" "$@")
}

# call NAME WANT ARGS...: runs `dagger call ARGS...` (with the image settings), WANT pass or
# fail; leaves stdout+stderr in $OUT and the seconds taken in $SECS, and records the row.
# VERB=check makes it `dagger check ARGS...`; IN=DIR runs it from DIR.
OUT=""
SECS=0
call() {
  local name=$1 want=$2 start code log
  shift 2
  log="$WORK/$(echo "$name" | tr -c 'a-zA-Z0-9\n' '-').log"
  start=$(date +%s.%N)
  if [[ ${VERB:-call} == check ]]; then
    dagger --progress=plain check "$@" >"$log" 2>&1
  else
    chain "$@"
    (cd "${IN:-.}" && dagger --progress=plain call "${CHAIN[@]}") >"$log" 2>&1
  fi
  code=$?
  SECS=$(echo "$(date +%s.%N) - $start" | bc | xargs printf '%.1f')
  OUT=$(cat "$log")
  if [[ ($want == pass && $code == 0) || ($want == fail && $code != 0) ]]; then
    record "$name" ok "$SECS" "exit $code"
  else
    record "$name" MISS "$SECS" "exit $code, wanted $want; log: $log"
    tail -25 "$log" >&2
  fi
}

# check NAME CONDITION...: a row for an assertion (the command's status decides).
check() {
  local name=$1
  shift
  if "$@" >/dev/null 2>&1; then record "$name" ok - ""; else record "$name" MISS - "failed: $*"; fi
}

has() { grep -q -- "$2" <<<"$1"; }
not() { ! "$@"; }
serving_version() { curl -sf "http://$1/v2/models/digits" | jq -r .versions[0]; }
within() { [[ $(echo "$1 <= $2" | bc) == 1 ]]; }

# The scenarios publish on fixed ports (8010, 8020) under environments named for the run: the
# containers of earlier runs' e2e environments go first, and this run's when it ends.
remove_e2e_containers() {
  DOCKER_HOST="unix://$SOCKET" docker ps -a --format '{{.ID}} {{.Label "dev.modelship.environment"}}' |
    awk '$2 ~ /^e2e-/ {print $1}' | xargs -r env DOCKER_HOST="unix://$SOCKET" docker rm -f >/dev/null
}
remove_e2e_containers
trap remove_e2e_containers EXIT

echo "e2e: dagger $(dagger version 2>/dev/null | head -1); work folder $WORK" >&2
ENGINE=$(dagger version 2>/dev/null | head -1)

# --- The quick start, verbatim (README "Quick start with Dagger") -----------------------------
call "quick start: ship HEAD, main, Docker" pass \
  --docker-socket=/var/run/docker.sock --publish=127.0.0.1:8000 ship --git-sha="$(git rev-parse HEAD)" --require-signature=false
check "quick start: ship gated, built, deployed" has "$OUT" "deploy: deployed"
check "quick start: curl answers (digits@1.0.0)" test "$(serving_version 127.0.0.1:8000)" = 1.0.0
call "warm ship of an already-built commit" pass \
  --docker-socket="$SOCKET" --publish=127.0.0.1:8000 ship --git-sha="$HEAD" --require-signature=false
check "warm ship <= 10 s ($SECS s)" within "$SECS" 10

# --- Every function -----------------------------------------------------------------------------
call "functions listed" pass --help
check "ship is callable (not hidden)" has "$OUT" "ship"
call "with-registry: a password needs a user name" fail \
  with-registry --address="$EXT_REGISTRY" --password=env://HOME build-image --git-sha="$HEAD" output
check "says what is missing" has "$OUT" "with-registry --password needs --username"
if [[ -n "${E2E_S3_ENDPOINT:-}" ]]; then
  export E2E_S3_ACCESS_KEY E2E_S3_SECRET_KEY
  bucket="e2e-$RUN"
  storage=(with-storage --endpoint="$E2E_S3_ENDPOINT" --access-key=env://E2E_S3_ACCESS_KEY
    --secret-key=env://E2E_S3_SECRET_KEY --models-bucket="$bucket-models" --state-bucket="$bucket-state")
  call "with-storage: push the reference model to an outside S3" pass "${storage[@]}" \
    push-model --file=models/digits-reference.onnx --version=1.0.0 --git-sha="$HEAD"
  call "with-storage: test-quality against it" pass "${storage[@]}" test-quality --git-sha="$HEAD"
  call "with-storage: state of an empty state bucket" fail "${storage[@]}" state
  check "with-storage: says nothing was deployed" has "$OUT" "does not exist yet"
fi
call "test-quality (HEAD, pinned model)" pass test-quality --git-sha="$HEAD"
call "quality-reports export" pass quality-reports --git-sha="$HEAD" export --path="$WORK/reports"
for f in test-results.xml quality-report.json quality-report.md; do
  check "quality-reports holds $f" test -s "$WORK/reports/$f"
done
check "quality-report.json says passed" test "$(jq -r .passed "$WORK/reports/quality-report.json")" = true
check "test-results.xml is JUnit with tests" grep -q '<testcase' "$WORK/reports/test-results.xml"
call "build-image to the embedded registry" pass build-image --git-sha="$HEAD" output
check "embedded registry reference with digest" has "$OUT" "localhost:5000/modelship/digits:$HEAD@sha256:"
call "build-image evidence export" pass build-image --git-sha="$HEAD" evidence export --path="$WORK/evidence-build.json"
check "evidence names the stage and the model" test "$(jq -r '.stage + " " + .model.version' "$WORK/evidence-build.json")" = "build-image 1.0.0"
call "build-image sbom export" pass build-image --git-sha="$HEAD" sbom export --path="$WORK/sbom.cdx.json"
check "SBOM is CycloneDX" test "$(jq -r .bomFormat "$WORK/sbom.cdx.json")" = CycloneDX
call "sbom function" pass sbom --git-sha="$HEAD" export --path="$WORK/sbom2.cdx.json"
call "build-image to an external registry" pass with-registry --address="$EXT_REGISTRY" build-image --git-sha="$HEAD" output
check "external registry lists the SHA tag" has "$(curl -sf "$EXT_API/v2/modelship/digits/tags/list")" "$HEAD"
accept='Accept: application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json'
# manifest REF [ARCH [REPO]]: the image manifest of a tag or digest of REPO (modelship/digits);
# through an index, ARCH's (amd64).
manifest() {
  local m repo=${3:-modelship/digits}
  m=$(curl -sf -H "$accept" "$EXT_API/v2/$repo/manifests/$1")
  if jq -e '.manifests' <<<"$m" >/dev/null; then
    m=$(curl -sf -H "$accept" "$EXT_API/v2/$repo/manifests/$(jq -r --arg a "${2:-amd64}" '.manifests[] | select(.platform.architecture == $a) | .digest' <<<"$m")")
  fi
  printf '%s' "$m"
}
# elf_machine REPO BLOB FILE: the ELF e_machine bytes of FILE in a layer (3e00 x86-64, b700 AArch64).
elf_machine() { curl -sf "$EXT_API/v2/$1/blobs/$2" | tar -xzO "$3" | head -c 20 | od -An -tx1 | tr -d ' \n' | tail -c 4; }
index=$(curl -sf -H "$accept" "$EXT_API/v2/modelship/digits/manifests/$HEAD")
check "multi-arch: one index, linux/amd64 and linux/arm64" test "$(jq -r '[.manifests[].platform | "\(.os)/\(.architecture)"] | sort | join(",")' <<<"$index")" = linux/amd64,linux/arm64
check "multi-arch: both platforms share the model layer" test "$(manifest "$HEAD" amd64 | jq -r '.layers[-2].digest')" = "$(manifest "$HEAD" arm64 | jq -r '.layers[-2].digest')"
check "multi-arch: the arm64 server is an AArch64 ELF" test "$(elf_machine modelship/digits "$(manifest "$HEAD" arm64 | jq -r '.layers[-1].digest')" model-server)" = b700
config_digest=$(manifest "$HEAD" | jq -r .config.digest)
smoke_label=$(curl -sfL "$EXT_API/v2/modelship/digits/blobs/$config_digest" | jq -r '.config.Labels["dev.modelship.smoke"] // empty')
check "the image carries its smoke inference (label)" test "$(jq -r '.input | length' <<<"${smoke_label:-null}" 2>/dev/null)" = 64
call "deploy refused off main" fail --docker-socket="$SOCKET" --publish=127.0.0.1:8000 deploy --git-sha="$HEAD" --branch=feature-x
check "refusal names the branch rule" has "$OUT" "deploys run only for main"
call "deploy to a tcp:// engine without TLS is refused" fail --docker-host=tcp://127.0.0.1:2375 deploy --git-sha="$HEAD" --branch=main
check "refusal names with-docker-tls" has "$OUT" "with-docker-tls"
export E2E_NOT_A_PEM="not a certificate"
call "with-docker-tls hands the CLI its files" fail --docker-host=tcp://127.0.0.1:2376 \
  with-docker-tls --ca=env://E2E_NOT_A_PEM --cert=env://E2E_NOT_A_PEM --key=env://E2E_NOT_A_PEM deploy --git-sha="$HEAD" --branch=main
check "the CLI read them (and refused these)" has "$OUT" "tls"
call "deploy to an ssh:// engine without a pinned host key is refused" fail --docker-host=ssh://deploy@127.0.0.1:1 deploy --git-sha="$HEAD" --branch=main
check "refusal names with-docker-ssh" has "$OUT" "with-docker-ssh"
call "with-docker-ssh hands the CLI its key" fail --docker-host=ssh://deploy@127.0.0.1:1 \
  with-docker-ssh --key=env://E2E_NOT_A_PEM --known-hosts="[127.0.0.1]:1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl" deploy --git-sha="$HEAD" --branch=main
check "the CLI read it (and refused this one)" has "$OUT" "not a private key OpenSSH reads"
call "deploy HEAD to production unsigned is refused" fail --docker-socket="$SOCKET" --publish=127.0.0.1:8000 deploy --git-sha="$HEAD" --branch=main output
check "says what is missing" has "$OUT" "production requires a signed image"
call "deploy HEAD" pass --docker-socket="$SOCKET" --publish=127.0.0.1:8000 deploy --git-sha="$HEAD" --branch=main --require-signature=false output

deploy_time=$(grep -o 'in [0-9.]*m\?s;' <<<"$OUT" | head -1)
check "deploy <= 2 s ($deploy_time)" within "$(sed -E 's/in ([0-9.]+)(m?)s;/\1 \2/' <<<"$deploy_time" | awk '{print ($2=="m") ? $1/1000 : $1}')" 2
call "state" pass state
check "state names the deployed commit" has "$OUT" "git ${HEAD:0:12}"

# --- Signed releases: build-image signs, cosign verifies, deploy checks before rollout ----------
if command -v cosign >/dev/null; then
  SIGN_DIR=$WORK/keys
  mkdir -p "$SIGN_DIR/other"
  (cd "$SIGN_DIR" && COSIGN_PASSWORD=e2e-pw cosign generate-key-pair >/dev/null 2>&1)
  (cd "$SIGN_DIR/other" && COSIGN_PASSWORD=other cosign generate-key-pair >/dev/null 2>&1)
  export E2E_COSIGN_KEY E2E_COSIGN_PASSWORD=e2e-pw
  E2E_COSIGN_KEY=$(cat "$SIGN_DIR/cosign.key")
  signing=(with-signing --key=env://E2E_COSIGN_KEY --password=env://E2E_COSIGN_PASSWORD --public-key="$SIGN_DIR/cosign.pub")
  call "signing: build-image signs and attests (embedded registry)" pass "${signing[@]}" build-image --git-sha="$HEAD" evidence contents
  check "evidence records the signature" has "$OUT" "SLSA v1 provenance"
  call "signing: a key without its password is refused" fail with-signing --key=env://E2E_COSIGN_KEY build-image --git-sha="$HEAD" output
  check "says what is missing" has "$OUT" "with-signing --key needs --password"
  call "signing: localhost registry without a tunnel is refused" fail \
    with-registry --address=localhost:5999 "${signing[@]}" build-image --git-sha="$HEAD" output
  check "says to tunnel it with --service" has "$OUT" "with-registry --service=tcp://localhost:5999"
  # The external registry on the caller's localhost, tunnelled to the signing container.
  ext=(with-registry --address="$EXT_REGISTRY" --service="tcp://${EXT_API#http://}")
  call "signing: build-image signs on the external registry" pass "${ext[@]}" "${signing[@]}" build-image --git-sha="$HEAD" output
  signed_ref=$(grep -o "$EXT_REGISTRY/modelship/digits:$HEAD@sha256:[0-9a-f]*" <<<"$OUT" | tail -1)
  digest=${signed_ref#*@}
  api_ref="${EXT_API#http://}/modelship/digits@$digest"
  cosign_key=(--key "$SIGN_DIR/cosign.pub" --insecure-ignore-tlog --allow-insecure-registry)
  check "cosign verify accepts build-image's signature" cosign verify "${cosign_key[@]}" "$api_ref"
  check "cosign verify-attestation accepts its SLSA provenance" cosign verify-attestation "${cosign_key[@]}" --type slsaprovenance1 "$api_ref"
  check "cosign verify-attestation accepts its CycloneDX SBOM" cosign verify-attestation "${cosign_key[@]}" --type cyclonedx "$api_ref"
  check "cosign verify refuses another key" not cosign verify --key "$SIGN_DIR/other/cosign.pub" --insecure-ignore-tlog --allow-insecure-registry "$api_ref"
  call "signing: provenance export (for a keyless attestation)" pass "${ext[@]}" "${signing[@]}" build-image --git-sha="$HEAD" provenance export --path="$WORK/provenance.json"
  check "the provenance names HEAD" test "$(jq -r .buildDefinition.externalParameters.git_sha "$WORK/provenance.json")" = "$HEAD"
  signed_env=(--environment="e2e-signed-$RUN" --docker-socket="$SOCKET" --publish=127.0.0.1:8090)
  call "signed: deploy build-image's output, signature required" pass "${signed_env[@]}" "${ext[@]}" \
    with-signing --public-key="$SIGN_DIR/cosign.pub" deploy --git-sha="$HEAD" --branch=main --require-signature=true --image="$signed_ref" output
  check "signed: 1.0.0 serves on 8090" test "$(serving_version 127.0.0.1:8090)" = 1.0.0
  call "signed: state records the verified signature" pass "${signed_env[@]}" state
  check "signed: state names the signed digest" has "$OUT" "signature: verified .*@$digest"
  call "signed: another key is refused" fail "${signed_env[@]}" "${ext[@]}" \
    with-signing --public-key="$SIGN_DIR/other/cosign.pub" deploy --git-sha="$HEAD" --branch=main --image="$signed_ref" output
  check "says it was signed with another key" has "$OUT" "signed with another key"
  # Tampered: the signed index with one annotation more, pushed by digest beside it.
  index_type=application/vnd.oci.image.index.v1+json
  curl -sf -H "Accept: $index_type" "$EXT_API/v2/modelship/digits/manifests/$digest" |
    jq -c --arg r "$RUN" '.annotations["dev.modelship.e2e.tampered"] = $r' >"$WORK/tampered.json"
  tampered="sha256:$(sha256sum "$WORK/tampered.json" | cut -d' ' -f1)"
  curl -sf -X PUT -H "Content-Type: $index_type" --data-binary @"$WORK/tampered.json" "$EXT_API/v2/modelship/digits/manifests/$tampered" >/dev/null
  call "signed: a tampered image is refused" fail "${signed_env[@]}" "${ext[@]}" \
    with-signing --public-key="$SIGN_DIR/cosign.pub" deploy --git-sha="$HEAD" --branch=main --image="${signed_ref%@*}@$tampered" output
  check "says it has no signature" has "$OUT" "has no signature"
  check "signed: no container ever ran the tampered digest" test -z "$(DOCKER_HOST="unix://$SOCKET" docker ps -a \
    --filter label=dev.modelship.environment="e2e-signed-$RUN" --format '{{.Image}}' | grep -F "$tampered")"
  check "signed: the signed release still serves" test "$(serving_version 127.0.0.1:8090)" = 1.0.0
  call "signed: --image from another commit is refused" fail "${signed_env[@]}" "${ext[@]}" \
    deploy --git-sha="$WEAK_SHA" --branch=main --image="$signed_ref" output
  check "says which image it wants" has "$OUT" "want build-image's output for this commit"
else
  record "signing: cosign CLI on PATH" MISS 0 "scripts/tools.sh builds cosign"
fi
call "cli: model ls" pass cli with-exec --args=modelship,model,ls,--name,digits stdout
check "the embedded store holds 1.0.0" has "$OUT" "1.0.0"
call "tools" pass tools entries
check "tools holds the CLI and the server" has "$OUT" "model-server"
call "evaluate-production export" pass evaluate-production export --path="$WORK/eval"
check "evaluation report written" test -s "$WORK/eval/quality-report.json"
VERB=check call "dagger check lint unit-test (as the validate job)" pass lint unit-test
call "unit-test" pass unit-test export --path="$WORK/unit-tests.xml"
check "unit-test JUnit has tests" grep -q '<testcase' "$WORK/unit-tests.xml"
if [[ -z "${E2E_SKIP_SCAN:-}" ]]; then
  call "scan" pass scan
  if [[ ${ROWS[-1]} == *MISS* ]] && has "$OUT" "vulnerability database unreachable"; then
    ROWS[-1]="${ROWS[-1]/MISS/ok  }"
    ROWS[-1]+=" (trivy passed; govulncheck: database unreachable from here, fails as designed)"
    MISSES=$((MISSES - 1))
  fi
fi
serve_log="$WORK/serve.log"
chain serve --git-sha="$HEAD"
dagger call "${CHAIN[@]}" up --ports 8001:8000 >"$serve_log" 2>&1 &
serve_pid=$!
served=""
for _ in $(seq 1 120); do
  served=$(serving_version 127.0.0.1:8001 2>/dev/null) && break
  sleep 1
done
kill "$serve_pid" 2>/dev/null
wait "$serve_pid" 2>/dev/null
check "serve: the candidate answers on 8001" test "$served" = 1.0.0

# --- Could not evaluate is not a failed gate --------------------------------------------------
call "ship with a missing model: could not evaluate" fail \
  --docker-socket="$SOCKET" --publish=127.0.0.1:8000 ship --git-sha="$HEAD" --model-version=7.7.7
check "says could not evaluate" has "$OUT" "COULD NOT EVALUATE"
check "says no rollback ran" has "$OUT" "rollback: not run"
check "the error carries the CLI's stderr" has "$OUT" "version 7.7.7 is not in"

# --- The weak model: the gate fails, a rollback follows, the old version keeps serving ---------
weak=(--environment="e2e-weak-$RUN" --docker-socket="$SOCKET" --publish=127.0.0.1:8010)
call "weak: push the weak model from a commit" pass \
  push-model --file=models/digits-weak.onnx --version=0.9.0-weak --git-sha="$WEAK_SHA"
call "weak: ship a good release first" pass "${weak[@]}" ship --git-sha="$HEAD"
call "weak: ship the weak model" fail "${weak[@]}" ship --git-sha="$WEAK_SHA"
check "weak: the gate failed" has "$OUT" "test-quality: FAILED"
check "weak: a rollback followed" has "$OUT" "rollback: rolled e2e-weak-$RUN back"
rollback_time=$(grep -o 'serving in [0-9.]*m\?s' <<<"$OUT" | head -1)
check "weak: 1.0.0 still serves" test "$(serving_version 127.0.0.1:8010)" = 1.0.0
call "weak: rollback evidence export (as the rollback job)" pass "${weak[@]}" rollback --reason="e2e weak" evidence export --path="$WORK/evidence-rollback.json"
check "rollback evidence names the stage" test "$(jq -r .stage "$WORK/evidence-rollback.json")" = rollback

# --- The rollback budget: two rollbacks, the third halts, resume; identical calls all run -------
budget=(--environment="e2e-budget-$RUN" --docker-socket="$SOCKET" --publish=127.0.0.1:8020)
call "budget: deploy (evidence export, as the deploy job)" pass "${budget[@]}" deploy --git-sha="$HEAD" --branch=main evidence export --path="$WORK/evidence-deploy.json"
check "deploy evidence names the stage" test "$(jq -r .stage "$WORK/evidence-deploy.json")" = deploy
call "budget: deploy the same SHA again (runs again)" pass "${budget[@]}" deploy --git-sha="$HEAD" --branch=main output
call "budget: state" pass "${budget[@]}" state
check "budget: both deploys recorded" has "$OUT" "before: digits@1.0.0"
call "budget: rollback 1" pass "${budget[@]}" rollback --reason=e2e output
rb1=$(grep -o 'serving in [0-9.]*m\?s' <<<"$OUT" | head -1)
call "budget: rollback 2 (identical call)" pass "${budget[@]}" rollback --reason=e2e output
call "budget: state after two" pass "${budget[@]}" state
check "budget: two rollbacks recorded, not one" has "$OUT" "rollbacks: 2 recorded"
call "budget: rollback 3 halts" fail "${budget[@]}" rollback --reason=e2e output
check "budget: halted" has "$OUT" "halted"
call "budget: deploy while halted" fail "${budget[@]}" deploy --git-sha="$HEAD" --branch=main output
call "budget: resume" pass "${budget[@]}" resume --by=e2e --reason="checked by the e2e script"
call "budget: deploy after resume" pass "${budget[@]}" deploy --git-sha="$HEAD" --branch=main output
check "rollback back to serving <= 1 s (${rb1:-?})" within "$(sed -E 's/serving in ([0-9.]+)(m?)s/\1 \2/' <<<"${rb1:-serving in 99s}" | awk '{print ($2=="m") ? $1/1000 : $1}')" 1

# --- Shadow on Docker: the candidate sees mirrored requests and answers none, then is judged -----
shadow=(--environment="e2e-shadow-$RUN" --docker-socket="$SOCKET" --publish=127.0.0.1:8070)
call "shadow: deploy HEAD directly" pass "${shadow[@]}" deploy --git-sha="$HEAD" --branch=main output
# Clients: one request every 20 ms, each answer's version counted, until the file stop exists.
row=$(jq -c '.samples[0].features' tests/fixtures/digits_validation.json)
input=$(curl -sf http://127.0.0.1:8070/v2/models/digits | jq -r '.inputs[0].name')
body=$(jq -nc --arg in "$input" --argjson row "$row" '{inputs: [{name: $in, shape: [1, 64], datatype: "FP32", data: $row}]}')
clients() {
  while [[ ! -e "$WORK/shadow-stop" ]]; do
    curl -sf -m 5 -H 'Content-Type: application/json' -d "$body" http://127.0.0.1:8070/v2/models/digits/infer | jq -r .model_version >>"$WORK/shadow-answers" 2>/dev/null || echo failed >>"$WORK/shadow-answers"
    sleep 0.02
  done
}
clients &
clients_pid=$!
call "shadow: a candidate slower than --max-p99 is refused" fail "${shadow[@]}" deploy --git-sha="$HEAD" --branch=main \
  --strategy=shadow --duration=5s --max-p99=1us output
check "shadow: refused by its analysis (p99)" has "$OUT" "shadow candidate refused"
check "shadow: the refusal names the check" has "$OUT" "p99"
call "shadow: an agreeing candidate is promoted" pass "${shadow[@]}" deploy --git-sha="$HEAD" --branch=main \
  --strategy=shadow --duration=5s --min-agreement=0.99 output
touch "$WORK/shadow-stop"
wait "$clients_pid"
call "shadow: state" pass "${shadow[@]}" state
check "shadow: state shows the refused and the promoted rollout" has "$OUT" "shadow PROMOTED"
check "shadow: state shows each step's agreement" has "$OUT" "agreement 1"
check "shadow: 1.0.0 serves" test "$(serving_version 127.0.0.1:8070)" = 1.0.0
answered=$(grep -c . "$WORK/shadow-answers")
failed=$(grep -c failed "$WORK/shadow-answers" || true)
record "shadow: client requests during both rollouts" ok - "$answered sent, $failed not answered (the port swaps in and out of the shadow)"
check "shadow: clients were answered by 1.0.0 only" test "$(grep -v failed "$WORK/shadow-answers" | sort -u)" = 1.0.0

# --- A code-only change pushes no model bytes -------------------------------------------------
code_only="$WORK/code-only"
git worktree add -q --detach "$code_only" HEAD
cat >"$code_only/serving/e2e_marker.go" <<EOF
package serving

import "os"

// A code-only change for the e2e script: it changes the server binary, not the model.
func init() { _ = os.Getenv("MODELSHIP_E2E_$RUN") }
EOF
git -C "$code_only" add serving/e2e_marker.go
git -C "$code_only" -c user.name=e2e -c user.email=e2e@localhost commit -qm "e2e: a code-only change"
CODE_SHA=$(git -C "$code_only" rev-parse HEAD)
call "code-only: build-image of the changed source" pass --mod="$code_only" --source="$code_only" with-registry --address="$EXT_REGISTRY" build-image --git-sha="$CODE_SHA" output
layers() { manifest "$1" | jq -r '.layers[] | "\(.digest) \(.size)"'; }
layers "$HEAD" >"$WORK/layers-a"
layers "$CODE_SHA" >"$WORK/layers-b"
model_layer=""
while read -r digest _; do
  if curl -sf "$EXT_API/v2/modelship/digits/blobs/$digest" | tar -tz 2>/dev/null | grep -qx 'model.onnx'; then
    model_layer=$digest
  fi
done <"$WORK/layers-a"
new_bytes=$(grep -v -F -f <(cut -d' ' -f1 "$WORK/layers-a") "$WORK/layers-b" | awk '{s += $2} END {print s + 0}')
check "code-only: the model layer is found" test -n "$model_layer"
check "code-only: 0 model bytes pushed (model layer shared)" grep -q -F "$model_layer" "$WORK/layers-b"
record "code-only: bytes of new layers pushed" ok - "$new_bytes bytes (the binary's layer)"
git worktree remove --force "$code_only"

# --- Any team's model: the examples, and a repository that is only a config, data and a model ---
REPO=$(pwd)
EX_SHA=0000000000000000000000000000000000e2e0b1
wine=(--source=examples/wine-classifier)
call "wine example: push-model" pass "${wine[@]}" push-model --file=examples/wine-classifier/model/wine.onnx --version=1.0.0 --git-sha="$EX_SHA"
call "wine example: test-quality" pass "${wine[@]}" test-quality --git-sha="$EX_SHA" entries
diabetes=(--source=examples/diabetes-regression)
call "diabetes example: push-model" pass "${diabetes[@]}" push-model --file=examples/diabetes-regression/model/diabetes.onnx --version=1.0.0 --git-sha="$EX_SHA"
call "diabetes example: gate through its own Dockerfile" pass "${diabetes[@]}" quality-reports --git-sha="$EX_SHA" export --path="$WORK/diabetes-reports"
check "diabetes: passed on MAE, RMSE and R²" jq -e '.passed and .metrics.r2 > 0.3 and ([.checks[].name] | index("rmse") != null)' "$WORK/diabetes-reports/quality-report.json"
check "diabetes: gated on its own server (port 8080)" test "$(jq -r .model.source "$WORK/diabetes-reports/quality-report.json")" = http://candidate:8080

outside="$WORK/outside"
mkdir -p "$outside/fixtures" "$outside/model"
cp examples/wine-classifier/modelship.json examples/wine-classifier/model_baseline.json "$outside/"
cp examples/wine-classifier/fixtures/validation.json "$outside/fixtures/"
cp examples/wine-classifier/model/wine.onnx "$outside/model/"
jq '.max_regression.accuracy = 0.05' examples/wine-classifier/model_baseline.json >"$outside/model_baseline.json"
go run ./cmd/train-examples -wine-epochs 5 -out "$WORK/retrained" >"$WORK/retrained.log" 2>&1
OUT_SHA0=0000000000000000000000000000000000e2e0c0
OUT_SHA1=0000000000000000000000000000000000e2e0c1
outside_deploy=(--environment="e2e-outside-$RUN" --docker-socket="$SOCKET" --publish=127.0.0.1:8030)
IN=$outside call "outside repo: push-model 1.0.0 (-m modelship)" pass --mod="$REPO" --source=. push-model --file=model/wine.onnx --version=1.0.0 --git-sha="$OUT_SHA0"
IN=$outside call "outside repo: promote-baseline 1.0.0" pass --mod="$REPO" --source=. promote-baseline --git-sha="$OUT_SHA0" --by=e2e export --path=model_baseline.json
check "outside repo: production 1.0.0 recorded" test "$(jq -r .production.version "$outside/model_baseline.json")" = 1.0.0
IN=$outside call "outside repo: push the retrained 1.1.0" pass --mod="$REPO" --source=. push-model --file="$WORK/retrained/wine-classifier/model/wine.onnx" --version=1.1.0 --git-sha="$OUT_SHA1"
IN=$outside call "outside repo: ship 1.1.0 (gate, build, deploy)" pass --mod="$REPO" --source=. "${outside_deploy[@]}" ship --git-sha="$OUT_SHA1"
check "outside repo: wine@1.1.0 serves" test "$(curl -sf http://127.0.0.1:8030/v2/models/wine | jq -r '.versions[0]')" = 1.1.0
IN=$outside call "outside repo: quality-reports of 1.1.0" pass --mod="$REPO" --source=. quality-reports --git-sha="$OUT_SHA1" export --path="$WORK/outside-reports"
check "outside repo: the report diffs against production" grep -q "Against production" "$WORK/outside-reports/quality-report.md"
check "outside repo: and lists the flips" jq -e '.diff.production.version == "1.0.0" and .diff.flips > 0' "$WORK/outside-reports/quality-report.json"
cp "$WORK/outside-reports/quality-report.md" "$WORK/outside-report.md"

# --- Build once, promote everywhere: staging to production, the identical image -----------------
staging_env="e2e-staging-$RUN"
promo_stage=(--environment="$staging_env" --docker-socket="$SOCKET" --publish=127.0.0.1:8050)
promo_prod=(--environment="e2e-prod-$RUN" --docker-socket="$SOCKET" --publish=127.0.0.1:8060)
call "promote: an empty staging is refused" fail "${promo_prod[@]}" promote --from="$staging_env" --min-age=0s output
check "promote: says nothing was deployed there" has "$OUT" "nothing was ever deployed to $staging_env"
call "promote: deploy HEAD to staging (with its gate)" pass "${promo_stage[@]}" deploy --git-sha="$HEAD" --branch=main output
call "promote: refused before --min-age=1h" fail "${promo_prod[@]}" promote --from="$staging_env" --min-age=1h output
check "promote: says how long is left" has "$OUT" "promotions need 1h0m0s"
call "promote: staging to production" pass "${promo_prod[@]}" promote --from="$staging_env" --min-age=0s output
check "promote: production serves it" test "$(serving_version 127.0.0.1:8060)" = 1.0.0
current_image() { grep -E '^current:|^  image id:' <<<"$1" | sed -E 's/.* image ([^ ]+) deployed.*/\1/; s/^  image id: //' | tr '\n' ' '; }
call "promote: state of staging" pass "${promo_stage[@]}" state
staging_image=$(current_image "$OUT")
call "promote: state of production" pass "${promo_prod[@]}" state
check "promote: production links staging" has "$OUT" "promoted from $staging_env"
check "promote: the identical image in both ($staging_image)" test "$staging_image" = "$(current_image "$OUT")"
call "alias: promote moved production's alias; gate by it" pass quality-reports --alias="e2e-prod-$RUN" export --path="$WORK/alias-reports"
check "alias: the gate ran the version it points at (1.0.0)" test "$(jq -r .model.version "$WORK/alias-reports/quality-report.json")" = 1.0.0
call "alias: an alias nobody set is refused" fail test-quality --alias="e2e-none-$RUN"
check "alias: says it is not found" has "$OUT" "e2e-none-$RUN"

# --- A model only ONNX Runtime serves: opset 17 with LayerNormalization ------------------------
# build-image picks serving/onnxruntime.Dockerfile for it, for both platforms. Its library comes
# from E2E_ORT_LIBRARY (a file, put in the project with its sha256) when set, else from the
# default URL (the npm package onnxruntime-node), which the engine must then reach.
ORT_SHA=0000000000000000000000000000000000e2e0c1
ort="$WORK/onnxruntime"
mkdir -p "$ort/tests/fixtures" "$ort/models"
cp tests/fixtures/digits_validation.json "$ort/tests/fixtures/"
cp models/digits-layernorm-opset17.onnx "$ort/models/"
jq '.model.name = "digits-ort" | del(."$schema")' modelship.json >"$ort/modelship.json"
jq '.model = "digits-ort" | del(.production)' model_baseline.json >"$ort/model_baseline.json"
if [[ -n "${E2E_ORT_LIBRARY:-}" ]]; then
  mkdir -p "$ort/lib" && cp "$E2E_ORT_LIBRARY" "$ort/lib/"
  jq --arg lib "lib/$(basename "$E2E_ORT_LIBRARY")" --arg sum "$(sha256sum "$E2E_ORT_LIBRARY" | cut -d' ' -f1)" \
    '.serving.onnxruntime = {library: $lib, sha256: $sum}' "$ort/modelship.json" >"$ort/modelship.json.new"
  mv "$ort/modelship.json.new" "$ort/modelship.json"
fi
ort_deploy=(--environment="e2e-ort-$RUN" --docker-socket="$SOCKET" --publish=127.0.0.1:8040)
IN=$ort call "onnxruntime: push-model (opset 17)" pass --mod="$REPO" --source=. push-model --file=models/digits-layernorm-opset17.onnx --version=1.0.0 --git-sha="$ORT_SHA"
IN=$ort call "onnxruntime: build-image picks the ORT image" pass --mod="$REPO" --source=. with-registry --address="$EXT_REGISTRY" build-image --git-sha="$ORT_SHA" evidence export --path="$WORK/evidence-ort.json"
check "onnxruntime: evidence names the backend" test "$(jq -r .inputs.backend "$WORK/evidence-ort.json")" = onnxruntime
ort_arm=$(manifest "$ORT_SHA" arm64 modelship/digits-ort)
check "onnxruntime: an arm64 image too, cross-compiled (cgo)" test "$(elf_machine modelship/digits-ort "$(jq -r '.layers[-1].digest' <<<"$ort_arm")" model-server)" = b700
check "onnxruntime: with the arm64 library" test "$(elf_machine modelship/digits-ort "$(jq -r '.layers[-3].digest' <<<"$ort_arm")" libonnxruntime.so)" = b700
IN=$ort call "onnxruntime: ship (gate, build, deploy)" pass --mod="$REPO" --source=. "${ort_deploy[@]}" ship --git-sha="$ORT_SHA"
check "onnxruntime: deployed and verified" has "$OUT" "deploy: deployed"
check "onnxruntime: served by ONNX Runtime, opset 17" test "$(curl -sf http://127.0.0.1:8040/v2/models/digits-ort | jq -r '.parameters.backend + " " + .parameters.opset')" = "onnxruntime 17"
IN=$ort call "onnxruntime: quality-reports" pass --mod="$REPO" --source=. quality-reports --git-sha="$ORT_SHA" export --path="$WORK/ort-reports"
check "onnxruntime: the reference's accuracy" jq -e '.passed and .metrics.accuracy > 0.97' "$WORK/ort-reports/quality-report.json"

# --- The table ------------------------------------------------------------------------------
printf '\nmodelship e2e on %s, %s\n' "$ENGINE" "$(date -u +%Y-%m-%dT%H:%MZ)"
printf '%-44s %-5s %8s  %s\n' "call / check" "" "seconds" "detail"
printf '%s\n' "${ROWS[@]}"
printf '\nrollback in the weak scenario: %s; first budget rollback: %s; deploy: %s\n' "${rollback_time:-?}" "${rb1:-?}" "${deploy_time:-?}"
passed=$(( ${#ROWS[@]} - MISSES ))
printf '%d passed, %d failed\n' "$passed" "$MISSES"
[[ $MISSES == 0 ]]
