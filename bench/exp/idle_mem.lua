-- Profiling experiment: where an idle connection's memory goes.  The echo
-- server, plus a timer that prints every second the Lua heap
-- (collectgarbage "count", after a full collection) and VmRSS, so a
-- `wsbench idle` run splits RSS per connection into Lua heap and the rest
-- (C state, libuv, malloc overhead).
--   lua5.4 bench/exp/idle_mem.lua PORT
local uvws = require "uvws"

local function rss_kib()
  local f = io.open("/proc/self/status")
  local s = f:read("a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)"))
end

local server = assert(uvws.listen {
  host = "127.0.0.1", port = tonumber(arg[1] or 9001),
  max_message_size = 16 * 1024 * 1024,
  handler = function(ws)
    for data, kind in ws:each() do ws:send(data, kind) end
  end,
})
print(string.format("listening on ws://127.0.0.1:%d/", server.port))
io.stdout:flush()
uvws.spawn(function()
  while true do
    uvws.sleep(1)
    collectgarbage("collect")
    io.stderr:write(string.format("conns %d lua_heap_kib %.0f rss_kib %d\n",
      server:connection_count(), collectgarbage("count"), rss_kib()))
  end
end)
uvws.run()
