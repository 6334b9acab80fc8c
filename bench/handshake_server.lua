-- Handshake benchmark target: an echo server whose upgrade goes through a
-- Lua `on_upgrade` hook that reads request headers, so the handshake rate
-- includes the hook's coroutine, the request object and a header lookup,
-- plus the per-connection handler coroutine.
--
--   lua5.4 bench/handshake_server.lua [port]
--
-- Prints "listening on ws://127.0.0.1:PORT/" like examples/echo_server.lua.
local uvws = require "uvws"

local port = tonumber(arg[1] or "9001")
local upgrades = 0

local server = assert(uvws.listen {
  host = "127.0.0.1",
  port = port,
  backlog = 4096,
  on_upgrade = function(req)
    -- A typical policy check: look a header up and refuse what is missing.
    local host = req.headers.host
    if not host or host == "" then
      return uvws.reject(400, "missing Host\n")
    end
    upgrades = upgrades + 1
    return { data = { host = host, n = upgrades } }
  end,
  handler = function(ws)
    for data, kind in ws:each() do
      ws:send(data, kind)
    end
  end,
})

print(string.format("listening on ws://127.0.0.1:%d/", server.port))
io.stdout:flush()
uvws.run()
