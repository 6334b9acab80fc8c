-- Benchmark target: the echo server written with the event-style handler
-- (on_message in a pooled coroutine, no coroutine per connection).
--   lua5.4 bench/event_server.lua [port] [--no-request]
-- --no-request: keep_request = false (websockets do not keep the upgrade
-- request; the idle-memory figure for that setting).
-- Prints "listening on ws://127.0.0.1:PORT/" like examples/echo_server.lua.
local uvws = require "uvws"

local server = assert(uvws.listen {
  host = "127.0.0.1",
  port = tonumber(arg[1] or "9001"),
  max_message_size = 16 * 1024 * 1024,
  keep_request = arg[2] ~= "--no-request",
  on_message = function(ws, data, kind)
    ws:send(data, kind)
  end,
})

print(string.format("listening on ws://127.0.0.1:%d/", server.port))
io.stdout:flush()
uvws.run()
