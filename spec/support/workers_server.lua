--- A server for spec/workers_spec.lua.
--
--   lua5.4 spec/support/workers_server.lua workers N PORT   uvws.workers(N, ...) on PORT
--   lua5.4 spec/support/workers_server.lua single PORT      one process, reuseport = true
--   lua5.4 spec/support/workers_server.lua plain PORT       one process, no reuseport
--
-- Every listening process prints "worker I pid P listening on PORT"; the
-- supervisor prints "supervisor pid P" first and "supervisor exited" when
-- uvws.workers returns.  Each message is answered with "I PID MESSAGE".
local uvws = require "uvws"
local core = require "uvws.core"

local mode, a, b = arg[1], arg[2], arg[3]

local function serve(i, port, reuseport)
  local pid = core.getpid()
  local server, err = uvws.listen { host = "127.0.0.1", port = port, reuseport = reuseport,
    handler = function(ws)
      for msg in ws:each() do ws:send(i .. " " .. pid .. " " .. msg) end
    end }
  if not server then
    print("worker " .. i .. " pid " .. pid .. " cannot listen: " .. tostring(err))
    io.stdout:flush()
    os.exit(3)
  end
  print("worker " .. i .. " pid " .. pid .. " listening on " .. server.port)
  io.stdout:flush()
end

if mode == "workers" then
  local n, port = math.tointeger(tonumber(a)), math.tointeger(tonumber(b))
  print("supervisor pid " .. core.getpid())
  io.stdout:flush()
  assert(uvws.workers(n, function(i) serve(i, port, true) end, { restart_delay = 0.2, grace = 3 }))
  print("supervisor exited")
  io.stdout:flush()
else
  serve(1, math.tointeger(tonumber(a)), mode == "single")
  uvws.run()
end
