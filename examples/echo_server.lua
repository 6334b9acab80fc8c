-- Echo server: echoes every message in kind.  The conformance and
-- benchmark target.
--
--   lua5.4 examples/echo_server.lua [port] [--deflate] [--tls CERT KEY]
--
-- Listens on 127.0.0.1 (port 9001 by default, 0 for any free port) and
-- prints "listening on ws://127.0.0.1:PORT/" (wss:// with --tls).
local uvws = require "uvws"

local port, tls, deflate = 9001, nil, false
local i = 1
while arg[i] do
  local a = arg[i]
  if a == "--tls" then
    tls = { cert = arg[i + 1], key = arg[i + 2] }
    if not tls.cert or not tls.key then error("usage: --tls CERT KEY") end
    i = i + 3
  elseif a == "--deflate" then
    deflate = true
    i = i + 1
  elseif a:match("^%d+$") then
    port = tonumber(a)
    i = i + 1
  else
    error("unknown argument " .. a ..
          " (usage: echo_server.lua [port] [--deflate] [--tls CERT KEY])")
  end
end

local server = assert(uvws.listen {
  host = "127.0.0.1",
  port = port,
  tls = tls,
  deflate = deflate,
  max_message_size = 16 * 1024 * 1024,
  handler = function(ws)
    for data, kind in ws:each() do
      ws:send(data, kind)
    end
  end,
})

print(string.format("listening on %s://127.0.0.1:%d/", tls and "wss" or "ws", server.port))
io.stdout:flush()
uvws.run()
