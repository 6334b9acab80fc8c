-- Echo server in N worker processes on one port (uvws.workers, reuseport):
-- the target of bench/workers.sh.
--
--   lua5.4 bench/workers_echo.lua N PORT
--
-- Prints "worker I pid P listening on PORT" per worker; SIGTERM to this
-- (the supervisor) process stops them all.
local uvws = require "uvws"
local core = require "uvws.core"

local n = math.tointeger(tonumber(arg[1] or "")) or error("usage: workers_echo.lua N PORT")
local port = math.tointeger(tonumber(arg[2] or "")) or error("usage: workers_echo.lua N PORT")

assert(uvws.workers(n, function(i)
  assert(uvws.listen {
    host = "127.0.0.1", port = port, reuseport = true,
    max_message_size = 16 * 1024 * 1024,
    handler = function(ws)
      for data, kind in ws:each() do ws:send(data, kind) end
    end,
  })
  print(string.format("worker %d pid %d listening on %d", i, core.getpid(), port))
  io.stdout:flush()
end))
