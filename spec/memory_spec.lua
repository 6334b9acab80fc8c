-- What an idle connection costs the server's Lua heap, both handler
-- styles (README, Performance).  The server reports its own heap after a
-- full collection; the bounds catch a regression such as a handler
-- coroutine whose stack doubles (+640 B) or a request that keeps its
-- header tables.
local h = require "spec.helper"

local SERVER = [[
  local uvws = require "uvws"
  -- "heap": after two full collections; "heap1": after one, which frees
  -- only what no finalizer keeps for another cycle.
  local function heap(data)
    collectgarbage()
    if data ~= "heap1" then collectgarbage() end
    return string.format("%.0f", collectgarbage("count") * 1024)
  end
  local opts = { port = 0 }
  if arg[1] == "event" or arg[1] == "data" or arg[1] == "lean" then
    opts.on_message = function(ws, data)
      ws:send(data:match("^heap") and heap(data) or data)
    end
    -- "data": an on_upgrade hook that authenticates, as most do (the
    -- value is a shared string, so it adds nothing itself).
    if arg[1] == "data" then
      opts.on_upgrade = function() return { data = "user-1" } end
    end
    -- "lean": the websockets do not keep their request.
    if arg[1] == "lean" then opts.keep_request = false end
  elseif arg[1] == "timeout" then
    opts.handler = function(ws)
      for data in ws:each(60) do ws:send(data:match("^heap") and heap(data) or data) end
    end
  else
    opts.handler = function(ws)
      for data in ws:each() do ws:send(data:match("^heap") and heap(data) or data) end
    end
  end
  local server = assert(uvws.listen(opts))
  print("listening on ws://127.0.0.1:" .. server.port .. "/")
  io.stdout:flush()
  uvws.run()
]]

local N = 300

-- Starts SERVER in `style`; returns it and heap([cmd]), which asks it over
-- a probe connection for its heap ("heap" by default, or "heap1"), and
-- stop().
local function start(style)
  local srv = h.start_server(nil, { style }, SERVER)
  local probe = h.connect(srv.port)
  local function heap(cmd)
    probe:send(h.text(cmd or "heap"))
    return tonumber(assert(probe:read_frame(5)).payload)
  end
  local function stop()
    probe:close()
    srv.stop()
  end
  return srv, heap, stop
end

local function per_connection(style)
  local srv, heap, stop = start(style)
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
  stop()
  return (after - before) / N
end

-- The heap the server reports after `conn` got a message of `size` bytes
-- (echoed back) and its handler went back to waiting, minus the heap
-- before.
local function held_after(style, size)
  local srv, heap, stop = start(style)
  local conn = h.connect(srv.port)
  conn:send(h.text("warm"))
  assert(conn:read_frame(5))
  local before = heap()
  local big = string.rep("m", size)
  conn:send(h.text(big))
  local echo = assert(conn:read_frame(5))
  assert.equal(size, #echo.payload)
  local after = heap()
  conn:close()
  stop()
  return after - before
end

describe("idle connection memory (server Lua heap)", function()
  after_each(h.stop_all)

  it("event-style on_message: under 900 bytes per connection", function()
    local b = per_connection("event")
    print(("  on_message: %.0f bytes of Lua heap per idle connection"):format(b))
    assert.is_true(b < 900, ("%.0f bytes per connection"):format(b))
  end)

  it("data from on_upgrade costs no bigger websocket table", function()
    local plain, with_data = per_connection("event"), per_connection("data")
    print(("  on_message with on_upgrade data: %.0f bytes (without: %.0f)"):format(with_data, plain))
    -- A fifth field would double the table's hash part (+96 bytes).
    assert.is_true(with_data - plain < 48, ("%.0f against %.0f bytes"):format(with_data, plain))
  end)

  it("keep_request = false: the request and its head are not kept", function()
    local plain, lean = per_connection("event"), per_connection("lean")
    print(("  on_message, keep_request = false: %.0f bytes (kept: %.0f)"):format(lean, plain))
    -- The request table (4 slots) alone is 152 bytes, its head more.
    assert.is_true(plain - lean > 250, ("%.0f against %.0f bytes"):format(lean, plain))
    -- Without request and data the websocket table has two slots, not
    -- four (48 bytes less; it was 362 bytes in all).
    assert.is_true(lean < 340, ("%.0f bytes per connection"):format(lean))
  end)

  it("a closed connection's websocket goes in the first collection", function()
    -- The connection's userdata has a finalizer, so the collector keeps
    -- it (about 200 bytes) and what it refers to for one more cycle; it
    -- must not refer to the websocket (and its request) by then, which
    -- left about 800 bytes per connection.
    for _, style in ipairs { "event", "coroutine" } do
      local srv, heap, stop = start(style)
      local before = heap()
      local conns = {}
      for i = 1, N do conns[i] = h.connect(srv.port) end
      for i = 1, N do conns[i]:send(h.text("hi")) end
      for i = 1, N do assert(conns[i]:read_frame(5)) end
      for i = 1, N do
        conns[i]:send(h.close(1000))
        conns[i]:expect_close(2)
        conns[i]:close()
      end
      h.sleep(0.2)
      local kept = (heap("heap1") - before) / N
      stop()
      print(("  %s: %.0f bytes per closed connection left after one collection"):format(style, kept))
      assert.is_true(kept < 400, ("%s: %.0f bytes per connection"):format(style, kept))
    end
  end)

  it("a handler waiting in each() does not hold its last message", function()
    -- Lua's `for` keeps the last value in a hidden local until the
    -- iterator returns: each() clears it before waiting (for messages of
    -- 4 KiB and more).
    local held = held_after("coroutine", 512 * 1024)
    print(("  coroutine handler after a 512 KiB message: %+.0f bytes"):format(held))
    assert.is_true(held < 64 * 1024, ("%.0f bytes still held"):format(held))
    held = held_after("timeout", 512 * 1024)
    assert.is_true(held < 64 * 1024, ("each(timeout): %.0f bytes still held"):format(held))
    held = held_after("event", 512 * 1024)
    assert.is_true(held < 64 * 1024, ("on_message: %.0f bytes still held"):format(held))
  end)

  it("coroutine handler waiting in each(): under 2,000 bytes per connection", function()
    local b = per_connection("coroutine")
    print(("  coroutine handler: %.0f bytes of Lua heap per idle connection"):format(b))
    assert.is_true(b < 2000, ("%.0f bytes per connection"):format(b))
  end)
end)
