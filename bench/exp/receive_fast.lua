-- Profiling experiment (not an API): the echo server with WS:receive
-- patched so that a receive without timeout creates no cleanup closure and
-- skips sched.current().  Measures what the closure-per-wait costs.
--   lua5.4 bench/exp/receive_fast.lua PORT
local uvws = require "uvws"
local sched = require "uvws.sched"

local patched = false
local function patch(ws)
  patched = true
  local WS = getmetatable(ws)
  local orig = WS.receive
  WS.receive = function(self, timeout)
    if timeout ~= nil or self._qh <= self._qt or self.closed or self._waiter then
      return orig(self, timeout)
    end
    local co = coroutine.running()
    self._waiter = co
    local data, kind, name = sched.wait(nil, nil)
    if data ~= nil then return data, kind end
    return nil, kind, name
  end
end

local server = assert(uvws.listen {
  host = "127.0.0.1", port = tonumber(arg[1] or 9001),
  max_message_size = 16 * 1024 * 1024,
  handler = function(ws)
    if not patched then patch(ws) end
    while true do
      local data, kind = ws:receive()
      if not data then break end
      ws:send(data, kind)
    end
  end,
})
print(string.format("listening on ws://127.0.0.1:%d/", server.port))
io.stdout:flush()
uvws.run()
