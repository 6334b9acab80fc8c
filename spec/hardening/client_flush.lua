-- Client side of "a client's close() flushes what it queued", for
-- spec/hardening_spec.lua:
--
--   lua5.4 spec/hardening/client_flush.lua PORT [N [SIZE]]
--
-- Connects to ws://127.0.0.1:PORT/count, queues N (default 100) messages
-- "<i>:..." of SIZE (default 16384) bytes without waiting (a high-water
-- mark above the total), then calls ws:close(1000, "done") at once.
-- Prints "QUEUED <n> <buffered_amount>" and "CLOSED <ok> <close_code>
-- <seconds>", or "FAILED <message>".
local uvws = require "uvws"

local port = assert(tonumber(arg[1]), "usage: client_flush.lua PORT [N [SIZE]]")
local n = tonumber(arg[2]) or 100
local size = tonumber(arg[3]) or 16384

uvws.spawn(function()
  local ws, err = uvws.connect("ws://127.0.0.1:" .. port .. "/count",
    { send_high_water = 2 * n * size + 1024 * 1024, timeout = 5, close_timeout = 5 })
  if not ws then
    print("FAILED " .. tostring(err))
    return
  end
  local queued = 0
  for i = 1, n do
    local head = i .. ":"
    if ws:send(head .. string.rep("c", size - #head)) then queued = queued + 1 end
  end
  print(("QUEUED %d %d"):format(queued, ws:buffered_amount()))
  local t0 = uvws.now()
  local ok = ws:close(1000, "done")
  print(("CLOSED %s %s %.3f"):format(tostring(ok), tostring(ws.close_code), uvws.now() - t0))
  io.stdout:flush()
end)
uvws.run()
