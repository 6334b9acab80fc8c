-- What an idle connection costs the server's Lua heap, both handler
-- styles (README, Performance).  The server reports its own heap after a
-- full collection; the bounds catch a regression such as a handler
-- coroutine whose stack doubles (+640 B) or a request that keeps its
-- header tables.
local h = require "spec.helper"

local SERVER = [[
  local uvws = require "uvws"
  local function heap()
    collectgarbage()
    collectgarbage()
    return string.format("%.0f", collectgarbage("count") * 1024)
  end
  local opts = { port = 0 }
  if arg[1] == "event" then
    opts.on_message = function(ws, data)
      ws:send(data == "heap" and heap() or data)
    end
  else
    opts.handler = function(ws)
      for data in ws:each() do ws:send(data == "heap" and heap() or data) end
    end
  end
  local server = assert(uvws.listen(opts))
  print("listening on ws://127.0.0.1:" .. server.port .. "/")
  io.stdout:flush()
  uvws.run()
]]

local N = 300

local function per_connection(style)
  local srv = h.start_server(nil, { style }, SERVER)
  local probe = h.connect(srv.port)
  local function heap()
    probe:send(h.text("heap"))
    local f = assert(probe:read_frame(5))
    return tonumber(f.payload)
  end
  -- A first batch warms up what is created once (pools, interned strings).
  local conns = {}
  for i = 1, 20 do conns[i] = h.connect(srv.port) end
  local before = heap()
  for i = 21, 20 + N do conns[i] = h.connect(srv.port) end
  -- Every connection has had a message, as a chat client would.
  for i = 21, 20 + N do conns[i]:send(h.text("hi")) end
  for i = 21, 20 + N do assert(conns[i]:read_frame(5)) end
  local after = heap()
  for _, c in ipairs(conns) do c:close() end
  probe:close()
  srv.stop()
  return (after - before) / N
end

describe("idle connection memory (server Lua heap)", function()
  after_each(h.stop_all)

  it("event-style on_message: under 900 bytes per connection", function()
    local b = per_connection("event")
    print(("  on_message: %.0f bytes of Lua heap per idle connection"):format(b))
    assert.is_true(b < 900, ("%.0f bytes per connection"):format(b))
  end)

  it("coroutine handler waiting in each(): under 2,000 bytes per connection", function()
    local b = per_connection("coroutine")
    print(("  coroutine handler: %.0f bytes of Lua heap per idle connection"):format(b))
    assert.is_true(b < 2000, ("%.0f bytes per connection"):format(b))
  end)
end)
