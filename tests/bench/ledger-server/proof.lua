-- SPDX-License-Identifier: Apache-2.0
-- wrk script for tests/bench/ledger-server/run: proofs at random positions.
--   wrk ... -s proof.lua URL -- inclusion SIZE    index uniform in [0, SIZE), size SIZE
--   wrk ... -s proof.lua URL -- consistency SIZE  old uniform in [1, SIZE], new SIZE
-- Every response's status is checked (2xx counted apart from the rest);
-- done() prints one JSON line as status.lua does, with wrk's latency
-- percentiles (p50, p90, p99, p99.9, max in ms).

local threads = {}
local counter = 0

function setup(thread)
   counter = counter + 1
   thread:set("id", counter)
   table.insert(threads, thread)
end

function init(args)
   kind = args[1]
   size = tonumber(args[2])
   ok = 0
   bad = 0
   statuses = {}
   math.randomseed(os.time() * 1000 + id)
end

function request()
   local path
   if kind == "inclusion" then
      path = string.format("/v1/ledger/proof/inclusion?index=%d&size=%d",
                           math.random(0, size - 1), size)
   else
      path = string.format("/v1/ledger/proof/consistency?old=%d&new=%d",
                           math.random(1, size), size)
   end
   return wrk.format("GET", path)
end

function response(status, headers, body)
   if status >= 200 and status < 300 then
      ok = ok + 1
   else
      bad = bad + 1
      statuses[status] = (statuses[status] or 0) + 1
   end
end

function done(summary, latency, requests)
   local ok_all, bad_all, by = 0, 0, {}
   for _, t in ipairs(threads) do
      ok_all = ok_all + t:get("ok")
      bad_all = bad_all + t:get("bad")
      for s, n in pairs(t:get("statuses")) do
         by[#by + 1] = string.format('"%d":%d', s, n)
      end
   end
   local e = summary.errors
   io.write(string.format(
      '{"requests":%d,"seconds":%.3f,"ok":%d,"non2xx":%d,"by_status":{%s},' ..
      '"socket_errors":%d,"latency_ms":{"p50":%.3f,"p90":%.3f,"p99":%.3f,"p999":%.3f,"max":%.3f}}\n',
      summary.requests, summary.duration / 1e6, ok_all, bad_all, table.concat(by, ","),
      e.connect + e.read + e.write + e.timeout + e.status,
      latency:percentile(50) / 1000, latency:percentile(90) / 1000,
      latency:percentile(99) / 1000, latency:percentile(99.9) / 1000, latency.max / 1000))
end
