-- Several frames in one TCP write.  A coroutine waiting in receive gets
-- the first message of a read at once and the others of the same read
-- together, in one more resume (lua_core.c, "Two resumes per read"); what
-- it sends must still go out as if each message had been handled when it
-- came: before the pong of a later ping, before the echo of a later
-- Close, before the Close of a later protocol error, and in order with
-- messages the batch does not take (long ones) or that wait (a handler
-- that sleeps in the middle).  The same for an event-style handler
-- (on_message), whose pooled thread takes a read's messages the same way.
local h = require "spec.helper"

local SERVER = [[
  local uvws = require "uvws"
  local n = 0
  local function answer(ws, data, kind)
    n = n + 1
    if data == "sleep" then
      uvws.sleep(0.05)
      ws:send("slept")
    elseif data == "close" then
      ws:close(4000, "asked")
    elseif data == "count" then
      ws:send(tostring(n))
    else
      ws:send(data, kind)
    end
  end
  local opts = { port = 0 }
  if arg[1] == "event" then
    opts.on_message = answer
  else
    opts.handler = function(ws)
      for data, kind in ws:each() do answer(ws, data, kind) end
    end
  end
  local server = assert(uvws.listen(opts))
  print("listening on ws://127.0.0.1:" .. server.port .. "/")
  io.stdout:flush()
  uvws.run()
]]

-- The payloads (or "<opcode>:payload" for control frames) of the frames
-- read until the Close, and the Close's code.
local function replies(c)
  local code, _, _, before = c:expect_close(5)
  local got = {}
  for i, f in ipairs(before) do
    got[i] = (f.opcode == 1 or f.opcode == 2) and f.payload or (f.opcode .. ":" .. f.payload)
  end
  return got, code
end

for _, style in ipairs { "coroutine", "event" } do
  describe("messages that come in one read (" .. style .. " handler)", function()
    local srv
    before_each(function() srv = h.start_server(nil, { style }, SERVER) end)
    after_each(h.stop_all)

    it("are answered in order, before the pong of a later ping and the echo of a later Close", function()
      local c = h.connect(srv.port)
      c:send(h.text("a") .. h.binary("bc") .. h.ping("p") .. h.text("d") .. h.close(1000))
      local got, code = replies(c)
      assert.same({ "a", "bc", "10:p", "d" }, got)
      assert.equal(1000, code)
      c:close()
    end)

    it("are answered before the Close of a protocol error later in the read", function()
      local c = h.connect(srv.port)
      c:send(h.text("a") .. h.text("b") .. h.frame { opcode = 3, payload = "x" })
      local got, code = replies(c)
      assert.same({ "a", "b" }, got)
      assert.equal(1002, code)
      c:close()
    end)

    it("keep their order around a long message and a handler that waits", function()
      local c = h.connect(srv.port)
      local big = string.rep("L", 5000)
      c:send(h.text("s1") .. h.text(big) .. h.text("s2") .. h.text("sleep") ..
             h.text("s3") .. h.text("s4") .. h.text("count"))
      local got = {}
      for i = 1, 7 do got[i] = assert(c:read_frame(5)).payload end
      assert.same({ "s1", big, "s2", "slept", "s3", "s4", "7" }, got)
      c:send(h.close(1000))
      assert.equal(1000, (c:expect_close(5)))
      c:close()
    end)

    it("all get there, 500 in one write", function()
      local c = h.connect(srv.port)
      local parts, want = {}, {}
      for i = 1, 500 do
        parts[i] = h.binary("m" .. i)
        want[i] = "m" .. i
      end
      c:send(table.concat(parts) .. h.close(1000))
      local got, code = replies(c)
      assert.same(want, got)
      assert.equal(1000, code)
      c:close()
    end)

    it("a handler that closes in the middle of a read: what came before is answered", function()
      local c = h.connect(srv.port)
      c:send(h.text("m1") .. h.text("close") .. h.text("m2"))
      local got, code = replies(c)
      assert.same({ "m1" }, got)
      assert.equal(4000, code)
      c:send(h.close(4000))
      c:close()
      -- The server is still serving.
      assert.is_true(h.echo_works(srv.port, "after"))
    end)
  end)
end
