-- wrk script for the soak run (scripts/load.sh soak): the same request as wrk-infer.lua, but
-- `done` prints one key=value line with each kind of error wrk counts, for load.sh to check.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "wrk-infer.lua")

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "requests=%d duration_s=%.1f rps=%.0f p50_ms=%.3f p99_ms=%.3f max_ms=%.3f " ..
    "connect=%d read=%d write=%d timeout=%d non2xx3xx=%d\n",
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    e.connect, e.read, e.write, e.timeout, e.status))
end
