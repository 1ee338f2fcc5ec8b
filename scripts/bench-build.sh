#!/usr/bin/env bash
# Build speed, side by side in one run: a warm `dagger call build-image` after a code-only change
# against a plain `docker build` of the same serving/Dockerfile after the same change (the legacy
# builder, as most CI runners without buildx have it; no push), and what each change pushes,
# read off the registry by layer digest. Then a model-only change. The table goes in README.md.
#
#   E2E_REGISTRY=localhost:5001 E2E_REGISTRY_API=http://127.0.0.1:5001 bash scripts/bench-build.sh
#
# Needs the dagger CLI (and its engine), a docker CLI and engine for the peer, git, jq, curl.
#   E2E_REGISTRY, E2E_REGISTRY_API  the registry build-image pushes to, as the engine and as this
#                                   machine reach it (default localhost:5000, http://127.0.0.1:5000)
#   BENCH_GO_IMAGE, BENCH_RUNTIME_IMAGE  the peer's base images (default: the Dockerfile's)
#   BENCH_ROUNDS                    code-only changes measured (default 3)
#   BENCH_LARGE_GIB                 also build with a generated model of this many GiB (random
#                                   bytes, pushed --gzip --skip-load-check to E2E_S3_ENDPOINT with
#                                   E2E_S3_ACCESS_KEY/E2E_S3_SECRET_KEY), then make a code-only
#                                   change with it; the engine's memory is sampled meanwhile
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REG=${E2E_REGISTRY:-localhost:5000}
API=${E2E_REGISTRY_API:-http://127.0.0.1:5000}
GO_IMAGE=${BENCH_GO_IMAGE:-golang:1.26}
RUNTIME_IMAGE=${BENCH_RUNTIME_IMAGE:-gcr.io/distroless/static-debian12:nonroot}
ROUNDS=${BENCH_ROUNDS:-3}
RUN=$(date +%s)
WORK=$(mktemp -d /tmp/modelship-bench.XXXXXX)
tree="$WORK/tree"
git worktree add -q --detach "$tree" HEAD
trap 'git worktree remove --force "$tree"' EXIT

commit() {
  git -C "$tree" -c user.name=bench -c user.email=bench@localhost commit -qam "$1"
  git -C "$tree" rev-parse HEAD
}
build_image() { dagger call --mod="$tree" --source="$tree" with-registry --address="$REG" build-image --git-sha="$1" ${2:+--model-version="$2"} output; }
# The peer builds what a user of the legacy builder builds: the Dockerfile without its cache
# mounts, as its own comment says.
peer() {
  # shellcheck disable=SC2016 # a literal $BUILDPLATFORM, dropped
  (cd "$tree" && sed -E 's/--mount=[^ ]+ //g; s/--platform=\$BUILDPLATFORM //' serving/Dockerfile |
    DOCKER_BUILDKIT=0 docker build -q -f - --build-arg GO_IMAGE="$GO_IMAGE" --build-arg RUNTIME_IMAGE="$RUNTIME_IMAGE" \
      --build-arg MODEL_FILE="${2:-models/digits-reference.onnx}" -t "modelship-bench-peer:$1" .)
}
# secs runs a command and prints its wall time in seconds; its output goes to the log.
secs() {
  local start=$EPOCHREALTIME
  "$@" >>"$WORK/bench.log" 2>&1 || { tail -30 "$WORK/bench.log" >&2; return 1; }
  awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'
}
# layers lists the linux/amd64 image's layers of a tag, through the multi-platform index
# build-image pushes (and plain manifests too).
layers() {
  local accept='Accept: application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json'
  local ref=$1 m
  m=$(curl -sf -H "$accept" "$API/v2/modelship/digits/manifests/$ref")
  if jq -e '.manifests' <<<"$m" >/dev/null; then
    ref=$(jq -r '.manifests[] | select(.platform.architecture == "amd64") | .digest' <<<"$m")
    m=$(curl -sf -H "$accept" "$API/v2/modelship/digits/manifests/$ref")
  fi
  jq -r '.layers[] | "\(.digest) \(.size)"' <<<"$m"
}
# pushed is what a build added to the registry: the bytes of its layers the previous image lacks.
pushed() { { grep -v -F -f <(cut -d' ' -f1 "$1") "$2" || true; } | awk '{ n++; s += $2 } END { printf "%d layer(s), %.0f bytes", n, s }'; }
model_layer() {
  local digest
  while read -r digest _; do
    if curl -sf "$API/v2/modelship/digits/blobs/$digest" | tar -tz 2>/dev/null | grep -qx 'model.onnx'; then
      echo "$digest"
    fi
  done <"$1"
}

ROWS=()
row() { ROWS+=("$(printf '| %s | %s | %s | %s | %s |' "$@")"); }

echo "bench: $(dagger version 2>/dev/null | head -1); docker $(docker version --format '{{.Server.Version}}'); $(nproc) cores; log $WORK/bench.log" >&2
base=$(git -C "$tree" rev-parse HEAD)
echo "warming up: build-image and docker build of $base" >&2
secs build_image "$base" >/dev/null
secs peer warm >/dev/null
layers "$base" >"$WORK/layers-0"
prev="$WORK/layers-0"
model=$(model_layer "$prev")
[[ -n $model ]] || { echo "bench: no layer of $base holds model.onnx" >&2; exit 1; }

sha=$base
for i in $(seq 1 "$ROUNDS"); do
  # The issue's change: a log string in serving/server.go.
  sed -i "s/\"listening\"/\"listening (bench $RUN-$i)\"/; s/\"listening (bench [0-9-]*)\"/\"listening (bench $RUN-$i)\"/" "$tree/serving/server.go"
  sha=$(commit "bench: code-only change $i")
  t_dagger=$(secs build_image "$sha")
  t_peer=$(secs peer "$i")
  layers "$sha" >"$WORK/layers-$i"
  grep -q -F "$model" "$WORK/layers-$i" && shared="model layer shared" || shared="MODEL LAYER PUSHED AGAIN"
  row "code-only change $i" "$t_dagger" "$t_peer" "$(awk -v a="$t_dagger" -v b="$t_peer" 'BEGIN { printf "%.2f", a / b }')" "$(pushed "$prev" "$WORK/layers-$i"); $shared"
  prev="$WORK/layers-$i"
done

# A model-only change: another model version (the weak model, pushed to the store the module
# uses), the same code.
version="1.0.1-bench$RUN"
dagger call --mod="$tree" --source="$tree" push-model --file="$tree/models/digits-weak.onnx" --version="$version" --git-sha="$sha" >>"$WORK/bench.log" 2>&1
t_dagger=$(secs build_image "$sha" "$version")
t_peer=$(secs peer model models/digits-weak.onnx)
layers "$sha" >"$WORK/layers-model"
new_model=$(model_layer "$WORK/layers-model")
new_layers=$(grep -c -v -F -f <(cut -d' ' -f1 "$prev") "$WORK/layers-model" || true)
row "model-only change" "$t_dagger" "$t_peer" "$(awk -v a="$t_dagger" -v b="$t_peer" 'BEGIN { printf "%.2f", a / b }')" \
  "$(pushed "$prev" "$WORK/layers-model"); $([[ $new_layers == 1 && -n $new_model && $new_model != "$model" ]] && echo "only the model layer is new" || echo "NOT ONLY THE MODEL LAYER")"

# A large model: build-image streams it (the engine's memory is sampled each second, cgroup
# usage without page cache, as docker stats reports it), and a code-only change still pushes
# none of it.
large() {
  local gib=$1 bin="$WORK/modelship" big="$WORK/large.onnx" version="9.0.0-large$RUN" engine sampler peak
  go build -o "$bin" ./cmd/modelship
  head -c "$((gib << 30))" /dev/urandom >"$big"
  export AWS_ENDPOINT_URL_S3=$E2E_S3_ENDPOINT AWS_ACCESS_KEY_ID=$E2E_S3_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$E2E_S3_SECRET_KEY AWS_REGION=us-east-1
  export MODELSHIP_MODELS_BUCKET="bench-$RUN-models" MODELSHIP_CACHE_DIR="$WORK/cache"
  local t_push
  t_push=$(secs "$bin" model push "$big" --name digits --version "$version" --git-sha "$sha" --gzip --skip-load-check)
  rm -f "$big"
  local storage=(with-storage --endpoint="$E2E_S3_ENDPOINT" --access-key=env://AWS_ACCESS_KEY_ID --secret-key=env://AWS_SECRET_ACCESS_KEY
    --models-bucket="$MODELSHIP_MODELS_BUCKET" --state-bucket="bench-$RUN-state")
  engine=$(docker inspect -f '{{.Id}}' "$(docker ps --filter name=dagger-engine --format '{{.ID}}' | head -1)")
  # The engine's resident memory, without the page cache that writing a large file fills: the
  # cgroup's rss (v1) or anon (v2), in MiB.
  local stat
  for stat in /sys/fs/cgroup/memory/docker/"$engine"/memory.stat /sys/fs/cgroup/docker/"$engine"/memory.stat \
    /sys/fs/cgroup/system.slice/docker-"$engine".scope/memory.stat ""; do
    [[ -f $stat ]] && break
  done
  [[ -n $stat ]] || { echo "bench: no memory.stat for the engine container $engine" >&2; return 1; }
  sample() { while :; do awk '$1 == "total_rss" || $1 == "anon" { printf "%.0f\n", $2 / 1048576 }' "$stat"; sleep 0.5; done >"$WORK/mem-$1"; }
  sample idle & sampler=$!; sleep 5; kill "$sampler"
  sample build & sampler=$!
  local t1 t2
  t1=$(secs dagger call --mod="$tree" --source="$tree" "${storage[@]}" with-registry --address="$REG" build-image --git-sha="$sha" --model-version="$version" output)
  kill "$sampler"
  layers "$sha" >"$WORK/layers-large-1"
  sed -i "s/\"listening (bench [0-9-]*)\"/\"listening (bench $RUN-large)\"/" "$tree/serving/server.go"
  local sha2
  sha2=$(commit "bench: code-only change with the large model")
  t2=$(secs dagger call --mod="$tree" --source="$tree" "${storage[@]}" with-registry --address="$REG" build-image --git-sha="$sha2" --model-version="$version" output)
  layers "$sha2" >"$WORK/layers-large-2"
  peak=$(sort -n "$WORK/mem-build" | tail -1)
  row "large model ($gib GiB) first build" "$t1" "-" "-" "$(pushed "$prev" "$WORK/layers-large-1"); model push from the host $t_push s; engine resident memory $(sort -n "$WORK/mem-idle" | tail -1) MiB idle, $peak MiB at most while building"
  row "code-only change, large model" "$t2" "-" "-" "$(pushed "$WORK/layers-large-1" "$WORK/layers-large-2")"
}
[[ -n ${BENCH_LARGE_GIB:-} ]] && large "$BENCH_LARGE_GIB"

printf '\nbuild speed on %s, %s (warm caches; seconds, wall time)\n\n' "$(dagger version 2>/dev/null | cut -d' ' -f1-2)" "$(date -u +%Y-%m-%dT%H:%MZ)"
echo "| change | build-image (s) | plain docker build (s) | ratio | build-image pushed |"
echo "|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
