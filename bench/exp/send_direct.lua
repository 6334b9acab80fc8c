-- Profiling experiment (not an API): the echo handler calling the C
-- connection's send directly (conn:send(data, is_binary)) instead of the
-- Lua WS:send wrapper (argument checks, kind lookup, backpressure flag).
-- Measures what the wrapper costs per message.
--   lua5.4 bench/exp/send_direct.lua PORT
local uvws = require "uvws"
local server = assert(uvws.listen {
  host = "127.0.0.1", port = tonumber(arg[1] or 9001),
  max_message_size = 16 * 1024 * 1024,
  handler = function(ws)
    local conn = ws._c
    for data, kind in ws:each() do conn:send(data, kind == "binary") end
  end,
})
print(string.format("listening on ws://127.0.0.1:%d/", server.port))
io.stdout:flush()
uvws.run()
