#!/usr/bin/env bash
# Load run of the model server on loopback with wrk (Debian): one-row inference requests at
# concurrency 1 and 32, reporting p50/p95/p99 latency and requests/s. Numbers go in README.md.
#   bash scripts/load.sh [duration]     (default 20s per run)
# Soak (reliability) run: the same request for 60 s at concurrency 64 (2 threads); prints requests,
# req/s, p50/p99, wrk's socket errors and non-2xx/3xx responses, and the server's peak (VmHWM) and
# final (VmRSS) resident memory. Exits 1 on any error, any non-2xx/3xx, a server that died, or a
# peak RSS not under the bound (SOAK_RSS_BOUND_MIB, default 160, the bound the tests assert).
#   bash scripts/load.sh soak [duration]     (default 60s)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mode=load
if [[ ${1:-} == soak ]]; then mode=soak; shift; fi
if [[ $mode == soak ]]; then duration=${1:-60s}; else duration=${1:-20s}; fi
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
if [[ $mode == load ]]; then
  for c in 1 32; do
    threads=1
    printf 'concurrency=%-3s ' "$c"
    wrk -t"$threads" -c"$c" -d"$duration" -s scripts/wrk-infer.lua "$url" | tail -1
  done
  exit 0
fi

# soak
bound_mib=${SOAK_RSS_BOUND_MIB:-160}
echo "soak: $duration at c=64, 2 threads; nproc=$(nproc), load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
out=$(wrk -t2 -c64 -d"$duration" -s scripts/wrk-soak.lua "$url")
printf '%s\n' "$out"
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
declare -A r=()
read -ra kvs <<<"$(tail -1 <<<"$out")"
for kv in "${kvs[@]}"; do r[${kv%%=*}]=${kv#*=}; done
for k in requests rps p50_ms p99_ms connect read write timeout non2xx3xx; do
  [[ -n ${r[$k]:-} ]] || { echo "FAIL: no $k in wrk's summary line" >&2; exit 1; }
done
kib() { awk -v k="$1" '$1 == k":" { print $2 }' "/proc/$pid/status"; }
if ! kill -0 "$pid" 2>/dev/null; then echo "FAIL: the server is no longer running" >&2; exit 1; fi
hwm_kib=$(kib VmHWM)
rss_kib=$(kib VmRSS)
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
errors=$((r[connect] + r[read] + r[write] + r[timeout]))
printf 'requests=%s  req/s=%s  p50=%s ms  p99=%s ms\n' "${r[requests]}" "${r[rps]}" "${r[p50_ms]}" "${r[p99_ms]}"
printf 'socket errors: connect=%s read=%s write=%s timeout=%s  non-2xx/3xx=%s\n' \
  "${r[connect]}" "${r[read]}" "${r[write]}" "${r[timeout]}" "${r[non2xx3xx]}"
printf 'server RSS: peak (VmHWM) %s MiB, at end (VmRSS) %s MiB; bound %s MiB\n' \
  "$(mib "$hwm_kib")" "$(mib "$rss_kib")" "$bound_mib"
fail=()
((errors == 0)) || fail+=("$errors socket errors")
((r[non2xx3xx] == 0)) || fail+=("${r[non2xx3xx]} non-2xx/3xx responses")
((hwm_kib < bound_mib * 1024)) || fail+=("peak RSS $(mib "$hwm_kib") MiB not under $bound_mib MiB")
if ((${#fail[@]})); then
  printf 'FAIL: %s\n' "${fail[@]}" >&2
  exit 1
fi
echo "PASS: 0 errors, 0 non-2xx/3xx, peak RSS under $bound_mib MiB"
