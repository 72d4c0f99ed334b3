-- wrk script for bench/compare.sh: the same workload as `causalkv bench`, without causal sessions.
-- Environment: WRK_API=kvs|etcd, WRK_MIX=put|mixed|read (PUT share 100/50/5 %), WRK_KEYS,
-- WRK_VALUE_SIZE, WRK_TARGETS (comma-separated IP:PORT; thread i sends to target i mod n),
-- WRK_JSON (file the summary is written to as one JSON line).
-- Keys are `bench-N` as with `causalkv bench`, so a read mix finds the keys bench preloaded.
local api = os.getenv("WRK_API") or "kvs"
local mix = os.getenv("WRK_MIX") or "put"
local keys = tonumber(os.getenv("WRK_KEYS") or "10000")
local vsize = tonumber(os.getenv("WRK_VALUE_SIZE") or "100")
local put_pct = ({put = 100, mixed = 50, read = 5})[mix] or 100

local b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function b64(data)
  return ((data:gsub(".", function(x)
    local r, byte = "", x:byte()
    for i = 8, 1, -1 do r = r .. (byte % 2 ^ i - byte % 2 ^ (i - 1) > 0 and "1" or "0") end
    return r
  end) .. "0000"):gsub("%d%d%d?%d?%d?%d?", function(x)
    if #x < 6 then return "" end
    local c = 0
    for i = 1, 6 do c = c + (x:sub(i, i) == "1" and 2 ^ (6 - i) or 0) end
    return b64chars:sub(c + 1, c + 1)
  end) .. ({"", "==", "="})[#data % 3 + 1])
end

local threads = {}
local tcount = 0
function setup(thread)
  local targets = {}
  for t in string.gmatch(os.getenv("WRK_TARGETS") or "", "[^,]+") do table.insert(targets, t) end
  if #targets > 0 then
    local t = targets[(tcount % #targets) + 1]
    local host, port = t:match("^(.*):(%d+)$")
    thread.addr = wrk.lookup(host, port)[1]
  end
  thread:set("id", tcount)
  tcount = tcount + 1
  table.insert(threads, thread)
end

local counter = 0
local value
local hdrs = {["Content-Type"] = "application/json"}
function init(args)
  math.randomseed(1 + (id or 0))
  value = string.rep("x", vsize)
end

function request()
  counter = counter + 1
  local key = "bench-" .. math.random(0, keys - 1)
  local put = math.random(1, 100) <= put_pct
  if api == "etcd" then
    if put then
      return wrk.format("POST", "/v3/kv/put", hdrs,
        '{"key":"' .. b64(key) .. '","value":"' .. b64(value) .. '"}')
    end
    return wrk.format("POST", "/v3/kv/range", hdrs, '{"key":"' .. b64(key) .. '"}')
  end
  if put then
    return wrk.format("PUT", "/kvs/" .. key, hdrs,
      '{"value":"' .. value .. '","causal-metadata":null}')
  end
  return wrk.format("GET", "/kvs/" .. key, hdrs, '{"causal-metadata":null}')
end

function done(summary, latency, requests)
  local secs = summary.duration / 1e6
  local e = summary.errors
  local errors = e.connect + e.read + e.write + e.status + e.timeout
  local line = string.format(
    '{"generator":"wrk","ops":%d,"seconds":%.3f,"throughput":%.1f,"errors":%d,"non2xx":%d,' ..
    '"latency_ms":{"p50":%.3f,"p99":%.3f,"p999":%.3f,"max":%.3f,"mean":%.3f}}',
    summary.requests, secs, summary.requests / secs, errors, e.status,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency:percentile(99.9) / 1000,
    latency.max / 1000, latency.mean / 1000)
  io.write(line .. "\n")
  local out = os.getenv("WRK_JSON")
  if out and out ~= "" then
    local f = io.open(out, "w")
    f:write(line .. "\n")
    f:close()
  end
end
