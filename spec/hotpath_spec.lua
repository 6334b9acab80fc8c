-- The message hot path in C (lua_core.c): receive/each/send as C functions,
-- messages resuming the waiting coroutine straight from C, and event-style
-- handlers on a parked thread.  In-process, with the uvws client.
local uvws = require "uvws"

local with_server = require("spec.helper").with_server

local function echo_handler(ws)
  for data, kind in ws:each() do ws:send(data, kind) end
end

describe("hot path", function()
  it("a receive with a timeout that gets a message leaves no timer behind", function()
    with_server({ handler = echo_handler }, function(_, url)
      local ws = assert(uvws.connect(url))
      -- Each receive arms a 0.15 s timer and gets its message first; a
      -- timer left armed would wake a later receive early with "timeout".
      for i = 1, 20 do
        assert(ws:send("m" .. i))
        assert.same({ "m" .. i, "text" }, { ws:receive(0.15) })
      end
      local t0 = uvws.now()
      local data, err, name = ws:receive(0.2)
      assert.is_nil(data)
      assert.same({ "timeout", "timeout" }, { err, name })
      assert.is_true(uvws.now() - t0 >= 0.19, "timed out early")
      -- The connection still works after a timeout.
      assert(ws:send("after"))
      assert.same({ "after", "text" }, { ws:receive(2) })
      ws:close()
    end)
  end)

  it("each(timeout) ends on the timeout; each() ends on the close", function()
    with_server({ handler = function(ws)
      for data in ws:each() do
        if data == "bye" then ws:close(4001, "asked") else ws:send(data) end
      end
    end }, function(_, url)
      local ws = assert(uvws.connect(url))
      ws:send("x")
      local got = {}
      for data in ws:each(0.3) do got[#got + 1] = data end
      assert.same({ "x" }, got)
      ws:send("y")
      ws:send("bye")
      got = {}
      for data in ws:each() do got[#got + 1] = data end
      assert.same({ "y" }, got)
      assert.equal(4001, ws.close_code)
      local data, _, name = ws:receive()
      assert.is_nil(data)
      assert.equal("closed", name)
    end)
  end)

  it("each() with long messages: the loop sees every one, however it is written", function()
    -- each() clears the `for` loop's hidden copy of the last message (4 KiB
    -- and more) before it waits; nothing the loop can see may change.
    local big = {}
    for i = 1, 6 do big[i] = string.rep(string.char(96 + i), 4096 + i * 1000) end
    with_server({ handler = function(ws)
      -- nested loops over the same connection, a kept reference, the
      -- iterator called by hand and a break
      local kept
      for data in ws:each() do
        kept = kept or data
        ws:send(#data .. ":" .. data:sub(1, 1))
        if data:sub(1, 1) == "b" then
          for inner, kind in ws:each() do
            ws:send("inner " .. #inner .. ":" .. inner:sub(1, 1) .. " " .. kind)
            if inner:sub(1, 1) == "c" then break end
          end
          local f, s = ws:each()
          local d = f(s, kept)  -- by hand: the control value is just an argument
          ws:send("hand " .. #d .. ":" .. d:sub(1, 1))
        end
      end
    end }, function(_, url)
      local ws = assert(uvws.connect(url))
      for i = 1, 6 do assert(ws:send(big[i])) end
      local got = {}
      for i = 1, 6 do got[i] = assert(ws:receive(3)) end
      assert.same({ #big[1] .. ":a", #big[2] .. ":b", "inner " .. #big[3] .. ":c text",
                    "hand " .. #big[4] .. ":d", #big[5] .. ":e", #big[6] .. ":f" }, got)
      ws:close()
    end)
  end)

  it("rejects a second receiver and a receive outside a coroutine", function()
    with_server({ handler = echo_handler }, function(_, url)
      local ws = assert(uvws.connect(url))
      local first = uvws.spawn(function() ws:receive(1) end)
      assert.equal("suspended", coroutine.status(first))
      local ok, err = pcall(ws.receive, ws)
      assert.is_false(ok)
      assert.matches("two coroutines are receiving", err)
      ok, err = pcall(function() for _ in ws:each() do end end)
      assert.is_false(ok)
      assert.matches("two coroutines are receiving", err)
      ws:send("for the first")
      uvws.sleep(0.2)
      assert.equal("dead", coroutine.status(first))
      ok, err = pcall(ws.receive, ws, -1)
      assert.is_false(ok)
      assert.matches("timeout must be a non%-negative number", err)
      -- Where the coroutine cannot yield (inside a C call), receive says so.
      ok, err = pcall(table.sort, { 2, 1 }, function() ws:receive() return true end)
      assert.is_false(ok)
      assert.matches("receive must be called inside a coroutine", err)
      ws:close()
    end)
  end)

  it("send checks its arguments in C and in Lua alike", function()
    with_server({ handler = echo_handler }, function(_, url)
      local ws = assert(uvws.connect(url))
      assert.has_error(function() ws:send("x", "bogus") end,
        "uvws: message kind must be 'text' or 'binary', got bogus")
      assert.has_error(function() ws:send({}) end, "uvws: send expects a string, got table")
      -- Kinds that are not strings: the C fast path compares strings by
      -- address and must hand these to the checks.
      for _, kind in ipairs { 5, true, {}, print } do
        assert.has_error(function() ws:send("x", kind) end)
      end
      assert.is_true(ws:send("t", ("tex"):rep(1) .. "t"))
      assert.same({ "t", "text" }, { ws:receive(2) })
      assert.is_true(ws:send("b", nil))
      assert.same({ "b", "text" }, { ws:receive(2) })
      local ok, err = pcall(ws.send, ws, "\255")
      assert.is_false(ok)
      assert.matches("not valid UTF%-8", err)
      assert.is_true(ws:send("\255", "binary"))
      assert.same({ "\255", "binary" }, { ws:receive(2) })
      -- The options table goes the Lua way and still sends.
      assert.is_true(ws:send("opts", "text", { compress = false, timeout = 1 }))
      assert.same({ "opts", "text" }, { ws:receive(2) })
      ws:close()
      local sent, _, name = ws:send("late")
      assert.is_nil(sent)
      assert.equal("closed", name)
    end)
  end)

  it("send finds each websocket's own connection, in runs, interleaved, through copies", function()
    -- send() remembers the table it resolved twice in a row (lua_core.c,
    -- send_conn); only a websocket's own table may be remembered.
    with_server({ handler = echo_handler }, function(_, url)
      local a = assert(uvws.connect(url))
      local b = assert(uvws.connect(url))
      local order = { a, a, a, b, b, a, b, a, a, b, b, b }
      for i, ws in ipairs(order) do assert.is_true(ws:send("m" .. i)) end
      for i, ws in ipairs(order) do
        assert.same({ "m" .. i, "text" }, { ws:receive(2) })
      end
      -- Two sends in a row on one table make send() remember it; a copy
      -- holding a's connection sends on it but is never remembered (once
      -- collected, its address could be a new table's).
      local core = require "uvws.core"
      assert.is_true(a:send("r1"))
      assert.is_true(a:send("r2"))
      assert.is_true(core.send_remembers(a))
      local copy = setmetatable({ _c = a._c }, getmetatable(a))
      for i = 1, 3 do assert.is_true(copy:send("c" .. i)) end
      assert.is_false(core.send_remembers(copy))
      assert.is_true(a:send("r3"))
      assert.is_true(a:send("r4"))
      assert.is_true(core.send_remembers(a))
      assert.has_error(function() a.send({}, "x") end, "uvws: not a websocket")
      for _, m in ipairs { "r1", "r2", "c1", "c2", "c3", "r3", "r4" } do
        assert.same({ m, "text" }, { a:receive(2) })
      end
      -- After a close, the closed websocket says so, and b still works.
      a:close()
      assert.is_false(core.send_remembers(a))
      assert.same({ nil, "closed" }, { select(1, a:send("late")), select(3, a:send("late")) })
      assert.is_true(b:send("b"))
      assert.is_true(b:send("b2"))
      assert.same({ "b", "text" }, { b:receive(2) })
      assert.same({ "b2", "text" }, { b:receive(2) })
      b:close()
    end)
  end)

  it("reports an error raised in a plain coroutine resumed from C and keeps serving", function()
    local reported
    local old = uvws.on_error
    with_server({ handler = echo_handler }, function(_, url)
      local ws = assert(uvws.connect(url))
      local sched = require "uvws.sched"
      local prev = sched.on_error
      sched.on_error = function(msg) reported = msg end
      -- A coroutine of the user's own, not uvws.spawn: nothing protects it.
      local co = coroutine.create(function()
        local data = ws:receive()
        error("bad message " .. data)
      end)
      assert(coroutine.resume(co))
      ws:send("zz")
      uvws.sleep(0.2)
      sched.on_error = prev
      assert.equal("dead", coroutine.status(co))
      assert.matches("bad message zz", reported)
      assert.matches("stack traceback", reported)
      -- The connection still delivers to the next receiver.
      ws:send("again")
      assert.same({ "again", "text" }, { ws:receive(2) })
      ws:close()
    end)
    assert.equal(old, uvws.on_error)
  end)

  it("event-style: reuses one parked thread while calls do not wait", function()
    local threads = {}
    with_server({ on_message = function(ws, data)
      threads[#threads + 1] = coroutine.running()
      ws:send(data)
    end }, function(_, url)
      local ws = assert(uvws.connect(url))
      for i = 1, 5 do
        ws:send("m" .. i)
        assert.same({ "m" .. i, "text" }, { ws:receive(2) })
      end
      ws:close()
    end)
    assert.equal(5, #threads)
    for i = 2, 5 do assert.equal(threads[1], threads[i]) end
    local _, main = coroutine.running()
    assert.is_false(threads[1] == coroutine.running() and main)
  end)

  it("event-style: a call that waits gets its own thread; later messages wait their turn", function()
    local order, threads = {}, {}
    with_server({ on_message = function(ws, data)
      threads[data] = coroutine.running()
      if data == "slow" then uvws.sleep(0.2) end
      order[#order + 1] = data
      ws:send(data)
    end }, function(_, url)
      local a = assert(uvws.connect(url))
      local b = assert(uvws.connect(url))
      a:send("slow")
      a:send("a2")
      uvws.sleep(0.05)   -- "slow" is waiting in its call now
      b:send("b1")       -- another connection is not held up
      assert.same({ "b1", "text" }, { b:receive(2) })
      assert.same({ "slow", "text" }, { a:receive(2) })
      assert.same({ "a2", "text" }, { a:receive(2) })
      a:close()
      b:close()
    end)
    assert.same({ "b1", "slow", "a2" }, order)
    assert.is_not.equal(threads.slow, threads.b1)
  end)

  it("event-style: max_queue pauses reading while a call waits, and nothing is lost", function()
    local got = {}
    with_server({ max_queue = 4, on_message = function(ws, data)
      if data == "1" then uvws.sleep(0.3) end
      got[#got + 1] = data
      ws:send(data)
    end }, function(_, url)
      local ws = assert(uvws.connect(url))
      for i = 1, 50 do ws:send(tostring(i)) end
      for i = 1, 50 do
        assert.same({ tostring(i), "text" }, { ws:receive(3) })
      end
      ws:close()
    end)
    assert.equal(50, #got)
    for i = 1, 50 do assert.equal(tostring(i), got[i]) end
  end)

  it("finishes a handler coroutine however it ends: at once, after a message, after a sleep", function()
    local errors = {}
    local function on_error(err, trace) errors[#errors + 1] = { err = err, trace = trace } end
    local handler = function(ws)
      local how = ws.request.path
      if how == "/raise-now" then error("raised at once") end
      if how == "/return-now" then return end
      local data = ws:receive()
      if how == "/raise-after-message" then error("raised after " .. data) end
      uvws.sleep(0.01)
      if how == "/raise-after-sleep" then error({ code = 42 }) end
      ws:send("done")
    end
    with_server({ handler = handler, on_error = on_error }, function(_, url)
      local cases = {
        { "/raise-now", 1011 }, { "/return-now", 1000 },
        { "/raise-after-message", 1011 }, { "/raise-after-sleep", 1011 },
        { "/return-after-sleep", 1000, "done" },
      }
      for _, case in ipairs(cases) do
        local ws = assert(uvws.connect(url:gsub("/$", "") .. case[1]))
        ws:send("m")
        if case[3] then assert.same({ case[3], "text" }, { ws:receive(2) }) end
        local data, _, name = ws:receive(2)
        assert.is_nil(data)
        assert.equal("closed", name, case[1])
        assert.equal(case[2], ws.close_code, case[1])
      end
    end)
    assert.equal(3, #errors)
    assert.matches("raised at once", errors[1].err)
    assert.matches("raised after m", errors[2].err)
    assert.same({ code = 42 }, errors[3].err)
    for _, e in ipairs(errors) do
      -- The traceback comes from the handler's own coroutine.
      assert.matches("stack traceback", e.trace)
      assert.matches("hotpath_spec.lua", e.trace)
    end
  end)

  it("ws.request after the upgrade: the head's fields again, and what on_upgrade set", function()
    local seen, seen_names
    with_server({
      on_upgrade = function(req)
        assert.equal("GET", req.method)
        req.tag = req.headers["x-custom"] .. "!"
      end,
      handler = function(ws)
        local r = ws.request
        local names = {}
        for k in pairs(r.headers) do names[#names + 1] = k end
        table.sort(names)
        seen_names = table.concat(names, " ")
        seen = { r.tag, r.method, r.path, r.query.a, r.query_string, r.version,
                 r.headers["X-Custom"], r:header("x-custom"), r.remote_addr,
                 math.type(r.remote_port), #r.header_list }
        ws:send("ok")
        for _ in ws:each() do end
      end,
    }, function(_, url)
      local ws = assert(uvws.connect(url .. "p?a=1&b=2", { headers = { ["X-Custom"] = "v" } }))
      assert.same({ "ok", "text" }, { ws:receive(2) })
      ws:close()
    end)
    assert.same({ "v!", "GET", "/p", "1", "a=1&b=2", "1.1", "v", "v", "127.0.0.1",
                  "integer", seen[11] }, seen)
    assert.is_true(seen[11] >= 5)
    -- pairs() sees every header, under lower-case names.
    assert.matches("^connection host sec%-websocket%-.* upgrade x%-custom$", seen_names)
    local core = require "uvws.core"
    local m, t, minor, flat = core.parse_head("GET /x HTTP/1.0\r\nA: 1\r\nB:  2 \r\n\r\n")
    assert.same({ "GET", "/x", 0, { "A", "1", "B", "2" } }, { m, t, minor, flat })
    assert.same({ nil, "malformed request line" }, { core.parse_head("BAD\r\n\r\n") })
  end)

  it("server:connections() and connection_count() follow the open websockets", function()
    with_server({ handler = echo_handler, on_request = function() return 200, "ok" end },
      function(srv, url)
        local a = assert(uvws.connect(url))
        local b = assert(uvws.connect(url))
        local c = assert(uvws.connect(url))
        assert.equal(3, srv:connection_count())
        local list = srv:connections()
        assert.equal(3, #list)
        for _, ws in ipairs(list) do
          assert.equal(srv, ws.server)
          assert.is_false(ws.closed)
        end
        b:close()
        local deadline = uvws.now() + 2
        while srv:connection_count() ~= 2 and uvws.now() < deadline do uvws.sleep(0.01) end
        assert.equal(2, srv:connection_count())
        assert.equal(2, #srv:connections())
        for _, ws in ipairs(srv:connections()) do assert.is_false(ws.closed) end
        a:close()
        c:close()
        deadline = uvws.now() + 2
        while srv:connection_count() ~= 0 and uvws.now() < deadline do uvws.sleep(0.01) end
        assert.same({}, srv:connections())
      end)
  end)

  it("leaves no threads or connections behind after 300 connections come and go", function()
    -- Heap after a full collection, in KiB.
    local function heap()
      collectgarbage()
      collectgarbage()
      return collectgarbage("count")
    end
    local function cycle(opts, n)
      with_server(opts, function(_, url)
        for i = 1, n do
          local ws = assert(uvws.connect(url))
          ws:send(i % 3 == 0 and "wait" or "x")
          assert.is_truthy(ws:receive(2))
          ws:close()
        end
      end)
    end
    local event = { on_message = function(ws, data)
      if data == "wait" then uvws.sleep(0.001) end
      ws:send(data)
    end }
    local coro = { handler = function(ws)
      for data in ws:each() do
        if data == "wait" then uvws.sleep(0.001) end
        ws:send(data)
      end
    end }
    cycle(event, 30)
    cycle(coro, 30)
    local base = heap()
    cycle(event, 150)
    cycle(coro, 150)
    local grown = heap() - base
    -- A leaked connection keeps its websocket, request and (for the
    -- coroutine handler) a coroutine: well over 1 KiB each.
    assert.is_true(grown < 100, ("the heap grew by %.0f KiB"):format(grown))
  end)

  it("survives coroutines resumed from outside uvws (no crash, a clear error)", function()
    local parked
    with_server({ on_message = function(ws, data)
      parked = coroutine.running()
      ws:send(data)
    end }, function(_, url)
      local ws = assert(uvws.connect(url))
      ws:send("a")
      assert.same({ "a", "text" }, { ws:receive(2) })
      -- The event handler's coroutine is parked for the next message.
      local ok, err = coroutine.resume(parked, "junk")
      assert.is_false(ok)
      assert.matches("resumed from outside uvws", err)
      -- The server goes on with a new coroutine.
      ws:send("b")
      assert.same({ "b", "text" }, { ws:receive(2) })
      -- A coroutine waiting in receive, resumed by hand: it gets the values,
      -- and is no longer the receiver.
      local got
      local co = coroutine.create(function() got = { ws:receive() } end)
      assert(coroutine.resume(co))
      assert(coroutine.resume(co, "by", "hand"))
      assert.same({ "by", "hand" }, got)
      ws:send("c")
      assert.same({ "c", "text" }, { ws:receive(2) })
      -- A coroutine closed while it waits in receive: the next message
      -- goes to the next receiver.
      co = coroutine.create(function() ws:receive() end)
      assert(coroutine.resume(co))
      assert(coroutine.close(co))
      uvws.spawn(function() uvws.sleep(0.1) ws:send("d") end)
      assert.same({ "d", "text" }, { ws:receive(2) })
      ws:close()
    end)
  end)
end)
