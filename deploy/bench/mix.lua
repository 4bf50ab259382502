-- wrk script of `make bench` (sidecar/bench/wrk_load.py): rotates through the request mix.
--
--   wrk -t2 -c64 -d10s -s deploy/bench/mix.lua http://127.0.0.1:PORT -- REQUESTS_FILE
--
-- REQUESTS_FILE has one request per line, fields separated by tabs:
--   METHOD  PATH  BODY-IN-HEX (may be empty)  NAME  VALUE  NAME  VALUE ...
-- Every request is formatted once, in init(). Each thread starts at its own offset in the
-- rotation. response() counts answers by "STATUS REASON" (REASON is the x-assets-authz-reason
-- header, "ok" when absent); done() prints one line "BENCH-JSON {...}" with the counts, the
-- socket errors and the latency percentiles in microseconds, including p99.9.

local threads = {}

function setup(thread)
  thread:set("thread_number", #threads)
  table.insert(threads, thread)
end

local mix = {}
local size = 0
local position = 1
tally = {}

local function unhex(text)
  return (text:gsub("..", function(pair) return string.char(tonumber(pair, 16)) end))
end

local function fields(line)
  local out = {}
  for field in (line .. "\t"):gmatch("([^\t]*)\t") do
    table.insert(out, field)
  end
  return out
end

function init(args)
  local file = assert(io.open(args[1], "r"), "cannot open the requests file")
  for line in file:lines() do
    if line ~= "" then
      local f = fields(line)
      local headers = {}
      for i = 4, #f - 1, 2 do
        headers[f[i]] = f[i + 1]
      end
      local body = nil
      if f[3] ~= "" then
        body = unhex(f[3])
      end
      table.insert(mix, wrk.format(f[1], f[2], headers, body))
    end
  end
  file:close()
  size = #mix
  assert(size > 0, "the requests file holds no request")
  position = (thread_number * 7) % size + 1
end

function request()
  local r = mix[position]
  position = position % size + 1
  return r
end

function response(status, headers, body)
  local key = status .. " " .. (headers["x-assets-authz-reason"] or "ok")
  tally[key] = (tally[key] or 0) + 1
end

local function quote(text)
  return '"' .. text:gsub('[%c"\\]', "") .. '"'
end

function done(summary, latency, requests)
  local merged = {}
  for _, thread in ipairs(threads) do
    for key, count in pairs(thread:get("tally")) do
      merged[key] = (merged[key] or 0) + count
    end
  end
  local parts = {}
  for key, count in pairs(merged) do
    table.insert(parts, quote(key) .. ":" .. count)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH-JSON {"requests":%d,"duration_us":%d,"errors":{"connect":%d,"read":%d,'
      .. '"write":%d,"status":%d,"timeout":%d},"latency_us":{"p50":%d,"p99":%d,"p999":%d,'
      .. '"max":%d},"tally":{%s}}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max,
    table.concat(parts, ",")))
end
