---------------------------------------------------------------------------
-- uvws.redis: the RESP2 codec (pure, no server), the client and the pub/sub
-- bus against a real redis-server that the tests start on a free loopback
-- port (temporary dir, no persistence) and kill by pid; buses and their
-- uvws servers run in this process, driven by run(fn); the multi-process
-- case runs server scripts as subprocesses.
---------------------------------------------------------------------------

local h = require "spec.helper"
local socket = require "socket"
local uvws = require "uvws"
local redis = require "uvws.redis"

---------------------------------------------------------------------------
-- Local helpers
---------------------------------------------------------------------------

-- Runs fn inside a uvws coroutine and drives the loop until it returns or
-- `limit` seconds pass; re-raises fn's error (or the timeout) here.
local function run(fn, limit) return h.run_uvws(fn, limit or 15) end

local function free_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

local function have_redis()
  return h.run("sh -c 'command -v redis-server' 2>/dev/null", 5):match("redis%-server") ~= nil
end

local PDEATHSIG = io.open("/usr/bin/setpriv", "rb") and "/usr/bin/setpriv --pdeathsig KILL " or ""

-- Starts redis-server on 127.0.0.1:port (a free one by default) with a
-- temporary dir and no persistence; waits until it answers PING.
-- Returns {port, pid, kill(sig), stop(), stopped()}.
local function start_redis(port)
  port = port or free_port()
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. h.q(dir)))
  local log = dir .. "/redis.log"
  local ph = assert(io.popen("echo $$; exec " .. PDEATHSIG .. "redis-server --port " .. port ..
    " --bind 127.0.0.1 --save '' --appendonly no --dir " .. h.q(dir) ..
    " --daemonize no --logfile " .. h.q(log) .. " </dev/null >/dev/null 2>&1", "r"))
  local pid = tonumber(ph:read("l"))
  local r = { port = port, pid = pid, dir = dir }
  local reaped = false
  function r.kill(sig)
    os.execute("kill -" .. (sig or "KILL") .. " " .. pid .. " 2>/dev/null")
  end
  function r.stop()
    if reaped then return end
    r.kill("TERM")
    local deadline = h.now() + 3
    while h.alive(pid) and h.now() < deadline do h.sleep(0.01) end
    if h.alive(pid) then r.kill("KILL") end
    ph:close()
    reaped = true
    os.execute("rm -rf " .. h.q(dir))
  end
  -- Kills it at once (SIGKILL), as a crash would, and reaps it.
  function r.crash()
    if reaped then return end
    r.kill("KILL")
    local deadline = h.now() + 3
    while h.alive(pid) and h.now() < deadline do h.sleep(0.01) end
    ph:close()
    reaped = true
    r.dead = true
    os.execute("rm -rf " .. h.q(dir))
  end
  local deadline = h.now() + 5
  while true do
    local c = socket.tcp()
    c:settimeout(0.2)
    if c:connect("127.0.0.1", port) then
      c:send("PING\r\n")
      local line = c:receive("*l")
      c:close()
      if line == "+PONG" then return r end
    else
      c:close()
    end
    if not h.alive(pid) or h.now() > deadline then
      local why = h.read_file(log) or ""
      r.stop()
      error("redis-server did not start on port " .. port .. ":\n" .. why, 2)
    end
    h.sleep(0.02)
  end
end

-- A uvws server whose handler subscribes its connection to the topic named
-- by the path ("/room" -> "room") and publishes what it receives there.
local function topic_server()
  return assert(uvws.listen {
    host = "127.0.0.1", port = 0,
    handler = function(ws)
      local topic = ws.request.path:sub(2)
      ws:subscribe(topic)
      for data, kind in ws:each() do ws:publish(topic, data, kind) end
    end,
  })
end

local function client(srv, topic)
  local ws = assert(uvws.connect("ws://127.0.0.1:" .. srv.port .. "/" .. topic))
  -- The subscription happens in the server's handler: let it run.
  local deadline = uvws.now() + 2
  while srv:subscribers(topic) == 0 and uvws.now() < deadline do uvws.sleep(0.005) end
  return ws
end

-- Asserts that nothing more arrives on ws within `secs`.
local function assert_quiet(ws, secs)
  local data, _, name = ws:receive(secs or 0.2)
  assert.is_nil(data, "unexpected extra message: " .. tostring(data))
  assert.equal("timeout", name)
end

local function numsub(r, ch)
  local v = assert(r:call("PUBSUB", "NUMSUB", ch))
  return v[2]
end

local function wait_for(cond, secs)
  local deadline = uvws.now() + (secs or 3)
  while not cond() do
    if uvws.now() > deadline then return false end
    uvws.sleep(0.01)
  end
  return true
end

---------------------------------------------------------------------------
-- RESP2 codec
---------------------------------------------------------------------------

describe("uvws.redis RESP2 codec", function()
  it("encodes commands as arrays of bulk strings", function()
    assert.equal("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n42\r\n", redis.encode("SET", "k", 42))
    assert.equal("*2\r\n$4\r\nECHO\r\n$0\r\n\r\n", redis.encode("ECHO", ""))
    assert.equal("*2\r\n$4\r\nECHO\r\n$4\r\na\r\nb\r\n", redis.encode("ECHO", "a\r\nb"))
    assert.has_error(function() redis.encode("SET", {}) end)
  end)

  local STREAM = table.concat {
    "+OK\r\n", "-ERR unknown command 'FOO'\r\n", ":0\r\n", ":-17\r\n", ":9007199254740993\r\n",
    "$5\r\nhello\r\n", "$0\r\n\r\n", "$-1\r\n", "$6\r\na\r\n\0\255z\r\n", "*-1\r\n", "*0\r\n",
    "*3\r\n$7\r\nmessage\r\n$4\r\nroom\r\n$2\r\nhi\r\n",
    "*2\r\n*2\r\n:1\r\n$-1\r\n+x\r\n",
  }

  local function check(values)
    assert.equal(13, #values)
    assert.equal("OK", values[1])
    assert.is_true(redis.is_error(values[2]))
    assert.equal("ERR unknown command 'FOO'", values[2].message)
    assert.equal(0, values[3])
    assert.equal(-17, values[4])
    assert.equal(math.tointeger(9007199254740993), values[5])
    assert.equal("hello", values[6])
    assert.equal("", values[7])
    assert.equal(redis.null, values[8])
    assert.equal("a\r\n\0\255z", values[9])
    assert.equal(redis.null, values[10])
    assert.same({}, values[11])
    assert.same({ "message", "room", "hi" }, values[12])
    assert.equal(1, values[13][1][1])
    assert.equal(redis.null, values[13][1][2])
    assert.equal("x", values[13][2])
  end

  it("decodes every reply type", function()
    local values, rest = redis.decode_all(STREAM)
    check(values)
    assert.equal("", rest)
  end)

  it("decodes the same stream split at every byte, and fed one byte at a time", function()
    for cut = 1, #STREAM - 1 do
      local p = redis.parser()
      local out = {}
      p:feed(STREAM:sub(1, cut))
      for v in function() return p:next() end do out[#out + 1] = v end
      p:feed(STREAM:sub(cut + 1))
      for v in function() return p:next() end do out[#out + 1] = v end
      check(out)
    end
    local p = redis.parser()
    local out = {}
    for i = 1, #STREAM do
      p:feed(STREAM:sub(i, i))
      for v in function() return p:next() end do out[#out + 1] = v end
    end
    check(out)
  end)

  it("reassembles a 1 MiB bulk string from 4 KiB chunks", function()
    local big = string.rep("0123456789abcdef", 65536)
    local s = "$" .. #big .. "\r\n" .. big .. "\r\n+after\r\n"
    local p = redis.parser()
    local out = {}
    for i = 1, #s, 4096 do
      p:feed(s:sub(i, i + 4095))
      for v in function() return p:next() end do out[#out + 1] = v end
    end
    assert.equal(2, #out)
    assert.is_true(out[1] == big)
    assert.equal("after", out[2])
  end)

  it("raises a protocol error on bad input", function()
    for _, bad in ipairs { "?x\r\n", ":12a\r\n", "$3\r\nabcde\r\n", "$-5\r\n", "*-3\r\n", "$x\r\n" } do
      local p = redis.parser()
      p:feed(bad)
      local ok, err = pcall(p.next, p)
      assert.is_false(ok, bad)
      assert.is_true(err.redis_protocol, bad)
      assert.matches("protocol error", err.message)
    end
  end)
end)

---------------------------------------------------------------------------
-- Against a real redis-server
---------------------------------------------------------------------------

describe("uvws.redis with redis-server", function()
  if not have_redis() then
    it("is skipped", function() pending("redis-server is not installed (apt-get install redis-server)") end)
    return
  end

  local R

  setup(function() R = start_redis() end)
  teardown(function() if R then R.stop() end end)

  describe("client", function()
    it("calls commands, pipelines them and reports error replies", function()
      run(function()
        local r = assert(redis.connect("127.0.0.1", R.port))
        assert.equal("PONG", r:call("PING"))
        assert.equal("OK", r:call("SET", "k", "v\0\r\n"))
        assert.equal("v\0\r\n", r:call("GET", "k"))
        assert.equal(redis.null, r:call("GET", "missing"))
        local got = {}
        for i = 1, 100 do
          assert.is_true(r:send(function(v) got[#got + 1] = v end, "INCR", "n"), i)
        end
        assert.equal(101, r:call("INCR", "n"))
        assert.equal(100, #got)
        for i = 1, 100 do assert.equal(i, got[i]) end
        local v, err, name = r:call("NOSUCHCOMMAND")
        assert.is_nil(v)
        assert.equal("EREDIS", name)
        assert.matches("unknown command", err)
        r:close()
        assert.is_true(r:wait_closed(2))
        local _, _, cname = r:call("PING")
        assert.equal("closed", cname)
      end)
    end)

    it("fails to connect with ECONNREFUSED where nothing listens", function()
      run(function()
        local c, err, name = redis.connect("127.0.0.1", free_port(), { timeout = 2 })
        assert.is_nil(c)
        assert.equal("ECONNREFUSED", name, err)
      end)
    end)
  end)

  describe("bus", function()
    local servers, buses

    before_each(function()
      servers, buses = {}, {}
      -- A test that failed between a crash and the restart left no Redis.
      if R.dead then R = start_redis(R.port) end
    end)
    after_each(function()
      -- Close what a failed test left open, and let the loop settle.
      run(function()
        for _, b in ipairs(buses) do b:close() end
        for _, s in ipairs(servers) do s:close() end
        uvws.sleep(0.05)
      end)
    end)

    local function attach(srv, opts)
      opts = opts or {}
      opts.port = opts.port or R.port
      local b = redis.attach(srv, opts)
      buses[#buses + 1] = b
      return b
    end
    local function server()
      local s = topic_server()
      servers[#servers + 1] = s
      return s
    end

    it("delivers each message exactly once to subscribers on both servers", function()
      run(function()
        local s1, s2 = server(), server()
        local b1, b2 = attach(s1), attach(s2)
        local a = client(s1, "room")
        local b = client(s2, "room")
        local c = client(s2, "room")
        assert(b1:wait_ready(3))
        assert(b2:wait_ready(3))
        -- b publishes on s2: a (other process) and c (same process) get it once.
        b:send("from b")
        assert.same({ "from b", "text" }, { a:receive(2) })
        assert.same({ "from b", "text" }, { c:receive(2) })
        a:send("\0\1\2", "binary")
        assert.same({ "\0\1\2", "binary" }, { b:receive(2) })
        assert.same({ "\0\1\2", "binary" }, { c:receive(2) })
        -- server:publish reaches every subscriber, its own echo is skipped.
        assert.equal(1, s1:publish("room", "from server 1"))
        for _, ws in ipairs { a, b, c } do assert.equal("from server 1", ws:receive(2)) end
        for _, ws in ipairs { a, b, c } do assert_quiet(ws, 0.1) end
        assert.equal(2, b1.stats.echoes)
        assert.equal(1, b2.stats.echoes)
        assert.equal(1, b1.stats.delivered)
        assert.equal(2, b2.stats.delivered)
        assert.equal(3, b1.stats.published + b2.stats.published)
        for _, ws in ipairs { a, b, c } do ws:close() end
      end)
    end)

    it("keeps at most max_inflight PUBLISHes unanswered and sends the rest in order", function()
      run(function()
        local s1, s2 = server(), server()
        local b1 = attach(s1, { max_inflight = 3 })
        local b2 = attach(s2)
        local b = client(s2, "burst")
        assert(b1:wait_ready(3))
        assert(b2:wait_ready(3))
        local peak = 0
        for i = 1, 200 do
          s1:publish("burst", "n" .. i)
          peak = math.max(peak, b1._inflight)
        end
        assert.equal(3, peak)
        assert.is_true(b1.stats.queued > 0)
        for i = 1, 200 do assert.equal("n" .. i, b:receive(3)) end
        assert.is_true(wait_for(function() return b1.stats.acked == 200 end))
        assert.equal(0, b1.stats.queued)
        assert.equal(0, b1.stats.dropped)
        b:close()
      end)
    end)

    it("mirrors a topic to Redis only while a local subscriber exists", function()
      run(function()
        local r = assert(redis.connect("127.0.0.1", R.port))
        local s1 = server()
        local b1 = attach(s1, { channel_prefix = "mirror:" })
        assert(b1:wait_ready(3))
        assert.same({}, r:call("PUBSUB", "CHANNELS", "mirror:*"))
        local a1 = client(s1, "lobby")
        local a2 = client(s1, "lobby")
        assert.is_true(wait_for(function() return b1:ready() end))
        assert.equal(1, numsub(r, "mirror:lobby"))     -- two local subscribers, one Redis subscription
        assert.same({ "lobby" }, b1:topics())
        a1:close()
        uvws.sleep(0.05)
        assert.equal(1, numsub(r, "mirror:lobby"))
        a2:close()
        assert.is_true(wait_for(function() return numsub(r, "mirror:lobby") == 0 end))
        assert.same({}, b1:topics())
        -- ws:subscribe / ws:unsubscribe by hand, and a subscriber that was there before attach.
        local s2 = assert(uvws.listen { port = 0, handler = function(ws)
          ws:subscribe("x")
          ws:subscribe("y")
          ws:unsubscribe("x")
          for _ in ws:each() do end
        end })
        servers[#servers + 1] = s2
        local w = client(s2, "y")
        local b2 = attach(s2, { channel_prefix = "mirror:" })
        assert(b2:wait_ready(3))
        assert.same({ "mirror:y" }, r:call("PUBSUB", "CHANNELS", "mirror:*"))
        w:close()
        assert.is_true(wait_for(function() return #r:call("PUBSUB", "CHANNELS", "mirror:*") == 0 end))
        r:close()
      end)
    end)

    it("delivers payloads published by other programs: text when UTF-8, else binary", function()
      run(function()
        local r = assert(redis.connect("127.0.0.1", R.port))
        local got = {}
        local s1 = server()
        local b1 = attach(s1, { on_message = function(topic, data, kind, origin)
          got[#got + 1] = { topic, data, kind, origin or "none" }
        end })
        local a = client(s1, "feed")
        assert(b1:wait_ready(3))
        assert.equal(1, r:call("PUBLISH", "uvws:feed", "κόσμε"))
        assert.equal(1, r:call("PUBLISH", "uvws:feed", "\255\0"))
        assert.same({ "κόσμε", "text" }, { a:receive(2) })
        assert.same({ "\255\0", "binary" }, { a:receive(2) })
        assert.same({ { "feed", "κόσμε", "text", "none" }, { "feed", "\255\0", "binary", "none" } }, got)
        -- The bus's own messages are not given to on_message.
        s1:publish("feed", "mine")
        assert.equal("mine", a:receive(2))
        uvws.sleep(0.1)
        assert.equal(2, #got)
        a:close()
        r:close()
      end)
    end)

    it("counts messages that another bus published while this one was not subscribed", function()
      run(function()
        local r = assert(redis.connect("127.0.0.1", R.port))
        local losses = {}
        local s1, s2 = server(), server()
        local b1 = attach(s1, { on_loss = function() end, on_error = function() end })
        local b2 = attach(s2, { on_loss = function(i) losses[#losses + 1] = i end, on_error = function() end })
        local a = client(s1, "news")
        local b = client(s2, "news")
        assert(b1:wait_ready(3))
        assert(b2:wait_ready(3))
        s1:publish("news", "1")
        assert.equal("1", b:receive(2))
        -- Redis drops every subscribe-mode connection; what s1 publishes
        -- before b2 has subscribed again reaches no one in Redis.
        assert.is_number(r:call("CLIENT", "KILL", "TYPE", "pubsub"))
        for i = 2, 4 do s1:publish("news", tostring(i)) end
        for i = 1, 4 do assert.equal(tostring(i), a:receive(2)) end   -- local delivery is not affected
        assert.is_true(wait_for(function() return b2.stats.reconnects >= 1 and b2:ready() end))
        assert.is_true(wait_for(function() return b1:ready() end))
        s1:publish("news", "5")
        assert.equal("5", b:receive(2))
        assert_quiet(b, 0.1)
        assert.equal(3, b2.stats.missed)
        local missed, outage
        for _, l in ipairs(losses) do
          if l.what == "missed" then missed = l end
          if l.what == "outage" then outage = l end
        end
        assert.same({ what = "missed", count = 3, topic = "news", origin = b1.id }, missed)
        assert.equal("subscribe", outage.link)
        assert.same({ "news" }, outage.topics)
        assert.is_true(outage.seconds >= 0 and outage.seconds < 3)
        a:close()
        b:close()
        r:close()
      end)
    end)

    it("queues what is published while Redis is down, reports drops and outages, and reconnects", function()
      local port = R.port
      run(function()
        local losses = {}
        local s1, s2 = server(), server()
        -- The receiver reconnects faster than the publisher, so it has
        -- subscribed again when the publisher sends its queue.
        local b1 = attach(s1, { max_queue = 2, min_delay = 0.4, max_delay = 0.4, jitter = 0,
                                on_loss = function(i) losses[#losses + 1] = i end, on_error = function() end })
        local b2 = attach(s2, { min_delay = 0.05, max_delay = 0.1,
                                on_loss = function() end, on_error = function() end })
        local a = client(s1, "t")
        local b = client(s2, "t")
        assert(b1:wait_ready(3))
        assert(b2:wait_ready(3))
        R.crash()
        assert.is_true(wait_for(function() return not b1.links.publish.up end))
        for i = 1, 3 do assert.equal(1, s1:publish("t", "m" .. i)) end
        for i = 1, 3 do assert.equal("m" .. i, a:receive(2)) end
        assert.equal(1, b1.stats.dropped)
        assert.equal(2, b1.stats.queued)
        assert.same({ what = "dropped", count = 1, topic = "t", reason = "queue full" }, losses[#losses])
        R = start_redis(port)
        assert.is_true(wait_for(function() return b1:ready() and b2:ready() end, 5))
        assert.equal("m1", b:receive(2))
        assert.equal("m2", b:receive(2))
        assert_quiet(b, 0.1)
        local outage
        for _, l in ipairs(losses) do
          if l.what == "outage" and l.link == "publish" then outage = l end
        end
        assert.equal(1, outage.dropped)
        assert.equal(2, outage.sent_late)
        assert.equal(0, outage.unconfirmed)
        assert.is_true(outage.seconds > 0)
        assert.is_true(b1.stats.reconnects >= 2)
        assert.equal(0, b1.stats.queued)
        a:close()
        b:close()
      end, 20)
    end)

    it("reports PUBLISHes written but unanswered when Redis dies as unconfirmed", function()
      local port = R.port
      run(function()
        local losses = {}
        local s1 = server()
        local b1 = attach(s1, { on_loss = function(i) losses[#losses + 1] = i end, on_error = function() end })
        assert(b1:wait_ready(3))
        R.kill("STOP")
        for i = 1, 5 do s1:publish("t", "u" .. i) end
        uvws.sleep(0.05)
        assert.equal(5, b1.stats.sent)
        R.crash()   -- SIGKILL also ends a stopped process
        assert.is_true(wait_for(function() return b1.stats.unconfirmed > 0 end))
        assert.equal(5, b1.stats.unconfirmed)
        assert.same({ what = "unconfirmed", count = 5, link = "publish" }, losses[1])
        R = start_redis(port)
        assert.is_true(wait_for(function() return b1:ready() end, 8))
      end, 20)
    end)

    it("drops and reconnects the links of a Redis that stops answering (PING heartbeat)", function()
      run(function()
        local errors = {}
        local s1, s2 = server(), server()
        local opts = { ping_interval = 0.2, ping_timeout = 0.3, min_delay = 0.05, max_delay = 0.2,
                       on_loss = function() end,
                       on_error = function(msg, name, link) errors[#errors + 1] = { msg, name, link } end }
        local b1, b2 = attach(s1, opts), attach(s2, opts)
        local b = client(s2, "hb")
        assert(b1:wait_ready(3))
        assert(b2:wait_ready(3))
        R.kill("STOP")
        assert.is_true(wait_for(function() return b1.stats.outages >= 2 and b2.stats.outages >= 2 end, 4))
        local timeouts = {}
        for _, e in ipairs(errors) do
          if e[2] == "ETIMEDOUT" then timeouts[e[3]] = true end
        end
        assert.same({ publish = true, subscribe = true }, timeouts)
        R.kill("CONT")
        assert.is_true(wait_for(function() return b1:ready() and b2:ready() end, 5))
        s1:publish("hb", "after")
        assert.equal("after", b:receive(3))
        b:close()
      end, 20)
    end)

    it("closes with its server, reporting what it could not send", function()
      run(function()
        local losses = {}
        local s1 = server()
        local b1 = attach(s1, { port = free_port(), on_error = function() end,
                                on_loss = function(i) losses[#losses + 1] = i end })
        local a = client(s1, "q")
        s1:publish("q", "x")
        assert.equal("x", a:receive(2))
        assert.equal(1, b1.stats.queued)
        s1:close()
        assert.is_true(wait_for(function() return b1.closed end, 2))
        assert.same({ what = "dropped", count = 1, reason = "closed" }, losses[#losses])
        assert.is_nil(rawget(s1, "publish"))   -- detached: the server's own publish again
      end)
    end)
  end)

  describe("the chat example in two processes sharing Redis", function()
    local json = require "dkjson"
    local chats = {}

    after_each(function()
      for _, c in ipairs(chats) do c.stop() end
      chats = {}
    end)

    local function start_chat(tokens)
      local args = { tostring(R.port), "--port", "0" }
      for _, t in ipairs(tokens) do
        args[#args + 1] = "--token"
        args[#args + 1] = t
      end
      local c = h.start_server("spec/support/chat_redis.lua", args)
      chats[#chats + 1] = c
      return c
    end

    -- Receives JSON messages until one of type `kind` arrives.
    local function next_of(ws, kind)
      while true do
        local data, err = ws:receive(3)
        assert(data, "no " .. kind .. " message: " .. tostring(err))
        local m = json.decode(data)
        if m.type == kind then return m end
      end
    end

    it("lets users on different processes chat with each other", function()
      local A = start_chat { "ta=alice" }
      local B = start_chat { "tb=bob", "tc=carol" }
      run(function()
        local r = assert(redis.connect("127.0.0.1", R.port))
        local alice = assert(uvws.connect("ws://127.0.0.1:" .. A.port .. "/chat?token=ta&room=lobby"))
        local bob = assert(uvws.connect("ws://127.0.0.1:" .. B.port .. "/chat?token=tb&room=lobby"))
        assert.equal("alice", next_of(alice, "welcome").nick)
        assert.equal("bob", next_of(bob, "welcome").nick)
        -- Both processes mirror the room to Redis once they have a member.
        assert.is_true(wait_for(function() return numsub(r, "chat:room:lobby") == 2 end))
        alice:send(json.encode { type = "message", text = "hi bob" })
        local m = next_of(bob, "message")
        assert.equal("alice", m.nick)
        assert.equal("hi bob", m.text)
        assert.equal("hi bob", next_of(alice, "message").text)
        bob:send(json.encode { type = "message", text = "hello alice" })
        m = next_of(alice, "message")
        assert.equal("bob", m.nick)
        assert.equal("hello alice", m.text)
        assert.equal("hello alice", next_of(bob, "message").text)
        -- A second member on B: one Redis subscription per process, and
        -- each member gets each message once.
        local carol = assert(uvws.connect("ws://127.0.0.1:" .. B.port .. "/chat?token=tc&room=lobby"))
        next_of(carol, "welcome")
        assert.equal(2, numsub(r, "chat:room:lobby"))
        local presence = next_of(alice, "presence")   -- carol's join crossed over too
        assert.equal("carol", presence.nick)
        alice:send(json.encode { type = "message", text = "hi both" })
        assert.equal("hi both", next_of(bob, "message").text)
        assert.equal("hi both", next_of(carol, "message").text)
        for _, ws in ipairs { bob, carol } do
          local data = ws:receive(0.3)
          assert.is_nil(data, "a duplicate: " .. tostring(data))
        end
        alice:close()
        assert.is_true(wait_for(function() return numsub(r, "chat:room:lobby") == 1 end))
        bob:close()
        carol:close()
        assert.is_true(wait_for(function() return numsub(r, "chat:room:lobby") == 0 end))
        r:close()
      end, 20)
    end)
  end)
end)
