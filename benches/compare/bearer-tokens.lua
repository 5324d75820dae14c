-- wrk script for benches/bearer.sh (memory case): every request carries a different Bearer
-- token, PREFIX (56 hex digits, from the command line) followed by an 8-hex-digit counter.
-- After COUNT answers the thread stops and creates the file DONE (wrk itself runs until its
-- duration is over or it gets SIGINT: the script sends that when DONE appears). Tokens past
-- COUNT are the requests in flight at that point (at most one per connection). Prints a BENCH
-- line like report.lua, plus the number of tokens sent.
--   wrk -t1 ... -s bearer-tokens.lua URL -- PREFIX COUNT DONE
-- (-t1: every thread would count from 1 with the same prefix.)
local prefix, count, done_file
local threads = {}
-- Globals, so that done() can read them with thread:get(). wrk calls request() once on the
-- first thread's state to check the request before any connection is made: that call takes
-- counter 0, so the tokens sent are counters 1 .. sent.
sent, answered = -1, 0

setup = function(thread)
  table.insert(threads, thread)
end

init = function(args)
  prefix = args[1]
  count = tonumber(args[2])
  done_file = args[3]
  if prefix == nil or #prefix ~= 56 or count == nil or done_file == nil then
    error("usage: wrk ... -s bearer-tokens.lua URL -- <56 hex digits> <count> <done file>")
  end
end

request = function()
  sent = sent + 1
  return wrk.format(nil, nil,
    { ["Authorization"] = "Bearer " .. prefix .. string.format("%08x", sent) }, nil)
end

response = function(status, headers, body)
  answered = answered + 1
  if answered == count then
    local f = io.open(done_file, "w")
    if f then f:close() end
    wrk.thread:stop()
  end
end

done = function(summary, latency, requests)
  local e = summary.errors
  local tokens = 0
  for _, t in ipairs(threads) do tokens = tokens + t:get("sent") end
  io.write(string.format(
    "BENCH requests=%d duration_us=%d connect=%d read=%d write=%d status=%d timeout=%d p50_us=%d p99_us=%d tokens=%d\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), tokens))
end
