#!/usr/bin/env bash
# Throughput of the model server against the least an HTTP server can do, in one run, side by
# side: scripts/hello-oip (reads the body, answers a canned OIP reply), the model server on the
# gonnx backend, and on ONNX Runtime when this build and machine have it. Each case runs on its
# own free loopback port; wrk (Debian package wrk) sends scripts/wrk-infer.lua's one-row request
# at concurrency 1, 32 and 64 (threads = min(c, 2)), the cases taking turns at each concurrency so
# that a change in the machine's load hits them alike. Prints a Markdown table and the two goals
# of issue #17:
#   req/s at c=32 >= 0.5 x hello-world, and p99 at c=1 <= 2 x hello-world's p99.
#   bash scripts/bench-serve.sh
# Environment: BENCH_DURATION (per measurement, default 8s), BENCH_WARMUP (per case, default 2s),
# BENCH_SERVER_ARGS (more model-server flags for both backends, e.g. "-batch-max-delay 0"; the
# table's caption states them),
# MODELSHIP_ORT_LIBRARY (libonnxruntime.so for the ONNX Runtime case: `source scripts/tools.sh;
# install_onnxruntime` sets it). Exit 1 when a goal of the gonnx case fails (or any request
# failed), 2 when the run could not be made.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

duration=${BENCH_DURATION:-8s}
warmup=${BENCH_WARMUP:-2s}
model=models/digits-reference.onnx
concurrencies=(1 32 64)
read -ra server_args <<<"${BENCH_SERVER_ARGS:-}"

if ! command -v wrk >/dev/null; then
  echo "bench-serve: wrk is missing: install the Debian package (sudo apt-get install -y wrk)" >&2
  exit 2
fi

work=$(mktemp -d)
pids=()
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

echo "building hello-oip and model-server into $work ..." >&2
CGO_ENABLED=0 go build -trimpath -o "$work/hello-oip" ./scripts/hello-oip
CGO_ENABLED=0 go build -trimpath -o "$work/model-server" ./serving/cmd/model-server

# free_port prints a loopback port nothing listens on (a server that loses the race to another
# process fails to start, and the run says so).
free_port() {
  local port
  while :; do
    port=$((20000 + RANDOM % 30000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return
    fi
  done
}

# start NAME CMD...: runs CMD (which takes -addr) on a free port and waits until it is ready.
declare -A url=()
start() {
  local name=$1 port pid
  shift
  port=$(free_port)
  "$@" -addr "127.0.0.1:$port" >"$work/$name.log" 2>&1 &
  pid=$!
  pids+=("$pid")
  for _ in $(seq 1 200); do
    if curl -fs "http://127.0.0.1:$port/v2/health/ready" >/dev/null; then
      url[$name]="http://127.0.0.1:$port/v2/models/digits/infer"
      return
    fi
    if ! kill -0 "$pid" 2>/dev/null; then break; fi
    sleep 0.05
  done
  echo "bench-serve: $name did not get ready on 127.0.0.1:$port; its log:" >&2
  cat "$work/$name.log" >&2
  exit 2
}

cases=(hello-world gonnx)
skipped=()
start hello-world "$work/hello-oip"
if "$work/model-server" -h 2>&1 | grep -q -- '-backend'; then
  start gonnx "$work/model-server" -model-path "$model" -log-level warn "${server_args[@]}" -backend gonnx
  if [[ -f ${MODELSHIP_ORT_LIBRARY:-} ]]; then
    # ONNX Runtime is reached through cgo, so this case has a binary of its own.
    CGO_ENABLED=1 go build -trimpath -o "$work/model-server-ort" ./serving/cmd/model-server
    start onnxruntime "$work/model-server-ort" -model-path "$model" -log-level warn "${server_args[@]}" \
      -backend onnxruntime -ort-library "$MODELSHIP_ORT_LIBRARY"
    cases+=(onnxruntime)
  else
    skipped+=("onnxruntime: MODELSHIP_ORT_LIBRARY does not name a file (source scripts/tools.sh; install_onnxruntime)")
  fi
else
  # Before the backends: gonnx is the only engine, and the server takes no -backend.
  start gonnx "$work/model-server" -model-path "$model" -log-level warn "${server_args[@]}"
  skipped+=("onnxruntime: this model-server has no -backend flag yet")
fi

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
for name in "${cases[@]}"; do
  echo "warming up $name ($warmup) ..." >&2
  wrk -t1 -c1 -d"$warmup" -s scripts/wrk-infer.lua "${url[$name]}" >/dev/null
done

# result[name,c,key] holds wrk-infer.lua's summary fields: requests errors rps p50_ms p95_ms p99_ms.
declare -A result=()
for c in "${concurrencies[@]}"; do
  for name in "${cases[@]}"; do
    echo "wrk: $name at c=$c for $duration ..." >&2
    line=$(wrk -t"$((c < 2 ? c : 2))" -c"$c" -d"$duration" -s scripts/wrk-infer.lua "${url[$name]}" | tail -1)
    read -ra kvs <<<"$line"
    for kv in "${kvs[@]}"; do result[$name,$c,${kv%%=*}]=${kv#*=}; done
    if [[ -z ${result[$name,$c,rps]:-} ]]; then
      echo "bench-serve: no summary from wrk for $name at c=$c: $line" >&2
      exit 2
    fi
  done
done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

settings=" (-max-in-flight $(("$(nproc)" * 2 > 4 ? "$(nproc)" * 2 : 4)), $("$work/model-server" -h 2>&1 |
  awk '$1 == "-batch-max-delay" { getline; if (match($0, /default [^)]+/)) d = substr($0, RSTART, RLENGTH) } END { print (d ? "-batch-max-delay " d : "no batching") }'))"
if ((${#server_args[@]})); then settings+=" and ${server_args[*]}"; fi
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
echo
echo "Loopback, $(nproc) cores, wrk -t min(c,2) -d $duration after a $warmup warm-up, one-row request" \
  "(scripts/wrk-infer.lua); model-server at its defaults$settings, -log-level warn, on $model;" \
  "load average $load_start at the start, $load_end at the end;" \
  "$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . 2>/dev/null || echo '+changes')."
echo
echo "| case | concurrency | req/s | p50 | p95 | p99 | ratio vs hello-world |"
echo "|---|---|---|---|---|---|---|"
errors=()
for name in "${cases[@]}"; do
  for c in "${concurrencies[@]}"; do
    vs="-"
    if [[ $name != hello-world ]]; then
      vs="$(ratio "${result[$name,$c,rps]}" "${result[hello-world,$c,rps]}")× req/s, $(ratio "${result[$name,$c,p99_ms]}" "${result[hello-world,$c,p99_ms]}")× p99"
    fi
    printf '| %s | %s | %s | %s ms | %s ms | %s ms | %s |\n' "$name" "$c" "${result[$name,$c,rps]}" \
      "${result[$name,$c,p50_ms]}" "${result[$name,$c,p95_ms]}" "${result[$name,$c,p99_ms]}" "$vs"
    if ((result[$name,$c,errors] > 0)); then errors+=("$name at c=$c: ${result[$name,$c,errors]} errors or non-2xx"); fi
  done
done
for s in "${skipped[@]}"; do echo; echo "Skipped $s."; done
for e in "${errors[@]}"; do echo; echo "Errors: $e."; done

echo
# goal NAME LABEL OK DETAIL prints one goal line; a gonnx goal that fails fails the run (the
# goals are set for the default backend; ONNX Runtime's lines are for comparison).
failed=0
goal() {
  local verdict=PASS
  if [[ $3 != 1 || ${#errors[@]} -gt 0 ]]; then
    verdict=FAIL
    if [[ $1 == gonnx ]]; then failed=1; fi
  fi
  echo "- goal ($1): $2: $4 — $verdict"
}
for name in "${cases[@]:1}"; do
  # The goals are judged on the measured values, not on the ratios as rounded for the table.
  a=${result[$name,32,rps]} b=${result[hello-world,32,rps]}
  goal "$name" "req/s at c=32 ≥ 0.5× hello-world" "$(awk -v a="$a" -v b="$b" 'BEGIN { print (a >= 0.5 * b) }')" \
    "$a vs $b = $(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.3f", a / b }')×"
  a=${result[$name,1,p99_ms]} b=${result[hello-world,1,p99_ms]}
  goal "$name" "p99 at c=1 ≤ 2× hello-world's" "$(awk -v a="$a" -v b="$b" 'BEGIN { print (a <= 2 * b) }')" \
    "$a ms vs $b ms = $(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.3f", a / b }')×"
done
exit "$failed"
