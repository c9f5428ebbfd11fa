-- POSTs the JSON body in the file $BENCH_BODY_FILE on every request; at the end prints one line
-- "BENCH_RESULT {json}" with exact counts (wrk's status errors are answers with status > 399).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
-- More headers, one "Name: value" per line (the V2 binary body's Inference-Header-Content-Length).
for name, value in string.gmatch(os.getenv("BENCH_HEADERS") or "", "([^:\n]+): ([^\n]*)") do
  wrk.headers[name] = value
end
local file = assert(io.open(os.getenv("BENCH_BODY_FILE"), "rb"))
wrk.body = file:read("*a")
file:close()
-- A paced load (loadtests/bench/shadow.py): each connection waits $BENCH_DELAY_MS between requests.
local pause = tonumber(os.getenv("BENCH_DELAY_MS") or "")
if pause then
  function delay()
    return pause
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests": %d, "duration_us": %d, "status": %d, "connect": %d, "read": %d, ' ..
    '"write": %d, "timeout": %d, "p50_us": %.1f, "p99_us": %.1f}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
