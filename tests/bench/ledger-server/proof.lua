-- SPDX-License-Identifier: Apache-2.0
-- wrk script for tests/bench/ledger-server/run: proofs at random positions.
--   wrk ... -s proof.lua URL -- inclusion SIZE    index uniform in [0, SIZE), size SIZE
--   wrk ... -s proof.lua URL -- consistency SIZE  old uniform in [1, SIZE], new SIZE
-- status.lua (loaded from this script's directory) checks every response's
-- status and prints the JSON line; this adds the requests.

dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "status.lua")

local status_init = init

function init(args)
   status_init(args)
   kind = args[1]
   size = tonumber(args[2])
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
