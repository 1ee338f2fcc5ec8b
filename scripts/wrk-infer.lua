-- wrk script: POST one 64-feature row to the infer endpoint, then print p50/p95/p99 and req/s.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"inputs":[{"name":"input","shape":[1,64],"datatype":"FP32","data":' ..
  '[0,0,9,13,14,15,13,0,0,0,16,13,12,12,5,0,0,4,16,0,0,0,0,0,0,8,16,16,11,1,0,0,' ..
  '0,1,7,8,16,12,0,0,0,0,0,0,9,13,0,0,0,0,12,8,12,10,0,0,0,0,10,16,13,3,0,0]}]}'

function done(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write +
    summary.errors.status + summary.errors.timeout
  io.write(string.format("requests=%d errors=%d rps=%.0f p50_ms=%.3f p95_ms=%.3f p99_ms=%.3f max_ms=%.3f\n",
    summary.requests, errors, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000))
end
