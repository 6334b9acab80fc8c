-- Echo server: echoes every message in kind.  The conformance and
-- benchmark target.
--
--   lua5.4 examples/echo_server.lua [port]      (127.0.0.1, default 9001)
local uvws = require "uvws"

local port = tonumber(arg[1] or "9001")

local server = assert(uvws.listen {
  host = "127.0.0.1",
  port = port,
  max_message_size = 16 * 1024 * 1024,
  handler = function(ws)
    for data, kind in ws:each() do
      ws:send(data, kind)
    end
  end,
})

print(string.format("listening on ws://127.0.0.1:%d/", server.port))
io.stdout:flush()
uvws.run()
