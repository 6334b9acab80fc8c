-- Profiling experiment (not an API): what an event-style handler
-- (on_message(ws, data, kind), no coroutine switch per message) would cost
-- with today's C binding.  It intercepts core.set_dispatch while uvws
-- loads: a message is echoed at once with conn:send; every other event
-- goes to uvws as usual.  Works with set_dispatch(dispatch) and with
-- set_dispatch(dispatch, on_message).
--   lua5.4 bench/exp/event.lua PORT [--gen]
local core = require "uvws.core"
local set_dispatch = core.set_dispatch
local EV_MESSAGE = 2
local function echo(ws, data, binary) ws._c:send(data, binary) end
core.set_dispatch = function(dispatch, on_message, ...)
  if on_message then return set_dispatch(dispatch, echo, ...) end
  return set_dispatch(function(ev, obj, a, b, ...)
    if ev == EV_MESSAGE then return echo(obj, a, b) end
    return dispatch(ev, obj, a, b, ...)
  end)
end
local uvws = require "uvws"
core.set_dispatch = set_dispatch
if arg[2] == "--gen" then collectgarbage("generational") end

local server = assert(uvws.listen {
  host = "127.0.0.1", port = tonumber(arg[1] or 9001),
  max_message_size = 16 * 1024 * 1024,
  handler = function(ws)
    for data, kind in ws:each() do ws:send(data, kind) end   -- never gets a message
  end,
})
print(string.format("listening on ws://127.0.0.1:%d/", server.port))
io.stdout:flush()
uvws.run()
