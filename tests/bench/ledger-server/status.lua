-- SPDX-License-Identifier: Apache-2.0
-- wrk script for tests/bench/ledger-server/run: the same request over and
-- over (wrk's URL and -H headers), with every response's status checked
-- here. done() prints one JSON line: requests, the 2xx answers, the others
-- (by status), socket errors, and wrk's latency p50/p90/p99/p99.9/max in ms.
-- proof.lua builds on it (dofile).

local threads = {}
local counter = 0

function setup(thread)
   counter = counter + 1
   thread:set("id", counter)
   table.insert(threads, thread)
end

function init(args)
   ok = 0
   bad = 0
   statuses = {}
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
      '"socket_errors":%d,"latency_ms":{"p50":%.3f,"p90":%.3f,"p99":%.3f,"p999":%.3f,' ..
      '"max":%.3f}}\n',
      summary.requests, summary.duration / 1e6, ok_all, bad_all, table.concat(by, ","),
      e.connect + e.read + e.write + e.timeout + e.status,
      latency:percentile(50) / 1000, latency:percentile(90) / 1000,
      latency:percentile(99) / 1000, latency:percentile(99.9) / 1000, latency.max / 1000))
end
