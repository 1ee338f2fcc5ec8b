#!/usr/bin/env bash
# Load run of the model server on loopback with wrk (Debian): one-row inference requests at
# concurrency 1 and 32, reporting p50/p95/p99 latency and requests/s. Numbers go in README.md.
#   bash scripts/load.sh [duration]     (default 20s per run)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
duration=${1:-20s}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
bin=$(mktemp -d)/model-server
CGO_ENABLED=0 go build -trimpath -o "$bin" ./serving/cmd/model-server
port=18765
GOGC=${GOGC:-100} "$bin" -addr "127.0.0.1:$port" -model-path models/digits-reference.onnx -log-level warn &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/v2/health/ready" >/dev/null && break; sleep 0.1; done
url="http://127.0.0.1:$port/v2/models/digits/infer"
wrk -t1 -c1 -d5s -s scripts/wrk-infer.lua "$url" >/dev/null   # warm-up
for c in 1 32; do
  threads=1
  printf 'concurrency=%-3s ' "$c"
  wrk -t"$threads" -c"$c" -d"$duration" -s scripts/wrk-infer.lua "$url" | tail -1
done
