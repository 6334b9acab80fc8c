-- Profiling experiment: examples/echo_server.lua (plain ws, same handler)
-- under Lua 5.4's generational collector.  Self-contained rather than a
-- dofile wrapper, so the main chunk stays at the same call depth (callgrind
-- dumps are taken with it on the stack).
--   lua5.4 bench/exp/gc_generational.lua PORT
collectgarbage("generational")
local uvws = require "uvws"
local server = assert(uvws.listen {
  host = "127.0.0.1", port = tonumber(arg[1] or 9001),
  max_message_size = 16 * 1024 * 1024,
  handler = function(ws)
    for data, kind in ws:each() do ws:send(data, kind) end
  end,
})
print(string.format("listening on ws://127.0.0.1:%d/", server.port))
io.stdout:flush()
uvws.run()
