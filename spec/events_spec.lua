-- Event-style handlers (on_open / on_message / on_close) and the pooled
-- coroutines they run in, tested in-process with the uvws client.
local uvws = require "uvws"

local with_server = require("spec.helper").with_server

describe("event-style handlers", function()
  it("calls on_open, on_message in order (even when a call waits) and on_close", function()
    local log = {}
    with_server({
      on_open = function(ws) log[#log + 1] = "open " .. ws.request.path end,
      on_message = function(ws, data, kind)
        if data == "slow" then uvws.sleep(0.1) end
        ws:send("echo:" .. data, kind)
      end,
      on_close = function(_, code) log[#log + 1] = "close " .. code end,
    }, function(_, url)
      local ws = assert(uvws.connect(url .. "x"))
      ws:send("slow")
      ws:send("a")
      ws:send("\1\2", "binary")
      assert.same({ "echo:slow", "text" }, { ws:receive(2) })
      assert.same({ "echo:a", "text" }, { ws:receive(2) })
      assert.same({ "echo:\1\2", "binary" }, { ws:receive(2) })
      ws:close(4000, "done")
      uvws.sleep(0.1)
    end)
    assert.same({ "open /x", "close 4000" }, log)
  end)

  it("messages that arrive while on_open waits go to on_message afterwards, in order", function()
    local opened = 0
    with_server({
      on_open = function(ws)
        opened = opened + 1
        uvws.sleep(0.2)
        ws:send("opened")
      end,
      on_message = function(ws, data, kind) ws:send("echo:" .. data, kind) end,
    }, function(_, url)
      local ws = assert(uvws.connect(url))
      for i = 1, 5 do ws:send("m" .. i) end
      assert.same({ "opened", "text" }, { ws:receive(2) })
      for i = 1, 5 do assert.same({ "echo:m" .. i, "text" }, { ws:receive(2) }) end
      -- and later ones, one at a time, still go to on_message
      ws:send("late")
      assert.same({ "echo:late", "text" }, { ws:receive(2) })
      ws:close()
    end)
    assert.equal(1, opened)
  end)

  it("a call's own websocket is what send() remembers; sends to others reach them", function()
    -- evt_message tells send() the websocket of the call (lua_core.c): a
    -- handler that answers on it and one that writes to other websockets
    -- must both reach the right connection.
    local core = require "uvws.core"
    local all, remembered = {}, {}
    with_server({
      on_open = function(ws) all[#all + 1] = ws end,
      on_message = function(ws, data)
        remembered[#remembered + 1] = core.send_remembers(ws)
        if data:sub(1, 3) == "to:" then
          for _, other in ipairs(all) do
            if other ~= ws then assert(other:send("from " .. ws.data .. ": " .. data:sub(4))) end
          end
        end
        ws:send("echo:" .. data)
      end,
      on_upgrade = function(req) return { data = req.path } end,
    }, function(_, url)
      local a = assert(uvws.connect(url .. "a"))
      local b = assert(uvws.connect(url .. "b"))
      a:send("x")
      assert.same({ "echo:x", "text" }, { a:receive(2) })
      b:send("to:hi")
      assert.same({ "from /b: hi", "text" }, { a:receive(2) })
      assert.same({ "echo:to:hi", "text" }, { b:receive(2) })
      a:send("to:yo")
      assert.same({ "from /a: yo", "text" }, { b:receive(2) })
      assert.same({ "echo:to:yo", "text" }, { a:receive(2) })
      a:close()
      b:close()
    end)
    assert.same({ true, true, true }, remembered)
  end)

  it("keep_request = false: the websocket does not keep the upgrade request", function()
    local seen = {}
    for _, keep in ipairs { false, true } do
      with_server({
        keep_request = keep,
        on_upgrade = function(req) return { data = req.path } end,
        on_open = function(ws) seen[#seen + 1] = { ws.request ~= nil, ws.data } end,
        on_message = function(ws, data)
          ws:send(tostring(ws.request and ws.request.path) .. " " .. ws.data .. " " .. data)
        end,
      }, function(_, url)
        local ws = assert(uvws.connect(url .. "room"))
        ws:send("hi")
        assert.equal((keep and "/room" or "nil") .. " /room hi", ws:receive(2))
        ws:close()
      end)
    end
    assert.same({ { false, "/room" }, { true, "/room" } }, seen)
    assert.has_error(function() uvws.listen { port = 0, keep_request = "no" } end,
                     "uvws.listen: keep_request must be a boolean")
  end)

  it("reports an error to on_error, closes that connection with 1011 and keeps serving", function()
    local errors = {}
    with_server({
      on_message = function(ws, data)
        if data == "boom" then error("kaboom") end
        ws:send(data)
      end,
      on_error = function(e) errors[#errors + 1] = tostring(e) end,
    }, function(_, url)
      local ws = assert(uvws.connect(url))
      ws:send("boom")
      local data, _, name = ws:receive(2)
      assert.is_nil(data)
      assert.equal("closed", name)
      assert.equal(1011, ws.close_code)
      local ws2 = assert(uvws.connect(url))
      ws2:send("still here")
      assert.equal("still here", ws2:receive(2))
      ws2:close()
    end)
    assert.equal(1, #errors)
    assert.matches("kaboom", errors[1])
  end)

  it("keeps the order of 500 messages sent in one burst while calls wait", function()
    local got = {}
    with_server({
      on_message = function(ws, data)
        if tonumber(data) % 50 == 0 then uvws.sleep(0.01) end
        got[#got + 1] = tonumber(data)
        if #got == 500 then ws:send("all") end
      end,
    }, function(_, url)
      local ws = assert(uvws.connect(url))
      for i = 1, 500 do ws:send(tostring(i)) end
      assert.equal("all", ws:receive(5))
      ws:close()
    end)
    assert.equal(500, #got)
    for i = 1, 500 do assert.equal(i, got[i]) end
  end)
end)
