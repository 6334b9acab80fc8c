-- Echo server for the leak sessions of `make test-asan` and
-- `make test-valgrind` (tools/leak-session.sh): examples/echo_server.lua
-- plus a way to exit cleanly, so that LeakSanitizer and valgrind check the
-- heap after lua_close() instead of at a SIGTERM.
--
--   lua5.4 tools/session_server.lua [--deflate] [--tls CERT KEY]
--
-- Listens on 127.0.0.1 on a free port and prints
-- "listening on ws://127.0.0.1:PORT/".  A text message "__shutdown__" makes
-- it call server:shutdown(); uvws.run() must then return, the script ends
-- and lua5.4 closes the state (every __gc runs).
local uvws = require "uvws"

local tls, deflate = nil, false
local i = 1
while arg[i] do
  local a = arg[i]
  if a == "--tls" then
    tls = { cert = arg[i + 1], key = arg[i + 2] }
    i = i + 3
  elseif a == "--deflate" then
    deflate = true
    i = i + 1
  else
    error("usage: session_server.lua [--deflate] [--tls CERT KEY]")
  end
end

local server
server = assert(uvws.listen {
  host = "127.0.0.1",
  port = 0,
  tls = tls,
  deflate = deflate,
  max_message_size = 16 * 1024 * 1024,
  on_request = function(req, res)
    if req.path == "/health" then return 200, "ok\n" end
    return 404, "no such page\n"
  end,
  handler = function(ws)
    for data, kind in ws:each() do
      if data == "__shutdown__" then
        uvws.spawn(function() server:shutdown(2) end)
      else
        ws:send(data, kind)
      end
    end
  end,
})

print(string.format("listening on %s://127.0.0.1:%d/", tls and "wss" or "ws",
                    server.port))
io.stdout:flush()
uvws.run()
print("run returned")
io.stdout:flush()
