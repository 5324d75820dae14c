-- wrk script for benches/compare.sh (large-body cases): every request is a POST of SIZE bytes
-- (1 MiB unless given), then the BENCH line of report.lua.
--   wrk ... -s upload.lua URL [-- SIZE]
local size = 1048576

init = function(args)
  if args[1] ~= nil then size = tonumber(args[1]) end
  wrk.method = "POST"
  wrk.body = string.rep("x", size)
  wrk.headers["Content-Type"] = "application/octet-stream"
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d connect=%d read=%d write=%d status=%d timeout=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
