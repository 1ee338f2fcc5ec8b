#!/usr/bin/env bash
# Push and pull a SIZE_MIB (default 256) MiB random artifact with the modelship CLI against a
# MinIO on loopback, next to a plain cp of the same file, with wall time and peak RSS
# (/usr/bin/time). Numbers go in README.md.
#   bash scripts/bench-registry.sh [SIZE_MIB]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/tools.sh
install_go_tools
size=${1:-256}
work=$(mktemp -d)
trap 'kill $minio_pid 2>/dev/null || true; wait 2>/dev/null; rm -rf "$work"' EXIT
go build -o "$work/modelship" ./cmd/modelship
port=19123
MINIO_ROOT_USER=bench MINIO_ROOT_PASSWORD=bench-secret MINIO_BROWSER=off \
  minio server "$work/minio" --address "127.0.0.1:$port" --console-address 127.0.0.1:0 --quiet >/dev/null 2>&1 &
minio_pid=$!
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/minio/health/ready" && break; sleep 0.1; done
export AWS_ENDPOINT_URL_S3=http://127.0.0.1:$port AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret \
  MODELSHIP_CACHE_DIR="$work/cache"
head -c $((size << 20)) /dev/urandom >"$work/artifact.bin"
sha=0123456789abcdef0123456789abcdef01234567
measure() { # label, command...
  local label=$1; shift
  /usr/bin/time -f "$label: %e s, peak RSS %M KiB" "$@" >/dev/null
}
measure "cp              " cp "$work/artifact.bin" "$work/copy.bin"
measure "push            " "$work/modelship" model push "$work/artifact.bin" --name bench --version 1 --git-sha $sha --skip-load-check
measure "push --gzip     " "$work/modelship" model push "$work/artifact.bin" --name bench --version 2 --git-sha $sha --gzip --skip-load-check
rm -rf "$work/cache"
measure "pull (cold)     " "$work/modelship" model pull --name bench --version 1 -o "$work/pulled.bin"
measure "pull (cache hit)" "$work/modelship" model pull --name bench --version 1 -o "$work/pulled2.bin"
rm -rf "$work/cache"
measure "pull gzip (cold)" "$work/modelship" model pull --name bench --version 2 -o "$work/pulled3.bin"
cmp "$work/artifact.bin" "$work/pulled.bin" && cmp "$work/artifact.bin" "$work/pulled3.bin" && echo "pulled bytes identical"
