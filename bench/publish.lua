-- Publish cost: CPU time per server:publish to N subscribers, including
-- the writes of the loop turn that flushes it.
--
--   lua5.4 bench/publish.lua PORT N [MESSAGES] [SIZE]
--
-- Start it, then connect N clients (e.g. wsbench idle -p PORT -c N -t 60
-- --pid PID); every connection subscribes to one topic.  Once N are in,
-- it publishes MESSAGES messages (default 200) of SIZE bytes (default 16)
-- one loop turn apart and prints one JSON line.
local uvws = require "uvws"

local port = assert(tonumber(arg[1]), "usage: publish.lua PORT N [MESSAGES] [SIZE]")
local n = assert(tonumber(arg[2]))
local count = tonumber(arg[3] or "200")
local size = tonumber(arg[4] or "16")

local srv = assert(uvws.listen {
  host = "127.0.0.1", port = port, max_connections = n + 10,
  send_policy = "drop",
  on_open = function(ws) ws:subscribe("t") end,
  on_message = function() end,
})
print(string.format("listening on ws://127.0.0.1:%d/", srv.port))
io.stdout:flush()

uvws.spawn(function()
  while srv:subscribers("t") < n do uvws.sleep(0.05) end
  uvws.sleep(0.5)
  local msg = string.rep("x", size)
  local reached, cpu_call, cpu_total = 0, 0, 0
  for _ = 1, count do
    local t0 = os.clock()
    reached = reached + srv:publish("t", msg, "binary")
    local t1 = os.clock()
    uvws.sleep(0.001)      -- a later loop turn: the writes happen in between
    cpu_call = cpu_call + (t1 - t0)
    cpu_total = cpu_total + (os.clock() - t0)
  end
  print(string.format(
    '{"subscribers":%d,"messages":%d,"size":%d,"delivered":%d,' ..
    '"publish_call_us":%.1f,"publish_with_writes_us":%.1f,"per_subscriber_ns":%.0f}',
    n, count, size, reached, cpu_call / count * 1e6, cpu_total / count * 1e6,
    cpu_total / count / n * 1e9))
  io.stdout:flush()
  srv:close()
end)
uvws.run()
