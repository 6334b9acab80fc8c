---------------------------------------------------------------------------
-- The client side: uvws.connect against servers no one here wrote (Python
-- websockets 10.4, node ws 8), against the uvws server (in this process),
-- against deliberately broken servers (spec/peers/client_raw_server.py),
-- and uvws.reconnecting against a uvws server that is stopped and started
-- again.
--
-- The client runs in this process: run(fn) drives the uvws loop until fn
-- (in a uvws coroutine) returns, bounded by a watchdog.  Peers run as
-- subprocesses that print "listening on ws://127.0.0.1:PORT/".

local h = require "spec.helper"
local json = require "dkjson"
local uvws = require "uvws"
local reconnecting = require "uvws.reconnecting"

---------------------------------------------------------------------------
-- Local helpers
---------------------------------------------------------------------------

-- Runs fn inside a uvws coroutine and drives the loop until it returns or
-- `limit` seconds pass; re-raises fn's error (or the timeout) here.
local run = h.run_uvws

-- Starts `cmd` (run from the repository root) and waits for its
-- "listening on ws://127.0.0.1:PORT/" line.  Returns {port, url, stop,
-- stdout}; raises with the output if it does not come up.
local function start_peer(cmd, timeout) return h.start_peer(cmd, timeout) end

-- Waits (bounded) for a line matching pattern in a peer's stdout.
local function wait_log(peer, pattern, timeout)
  local deadline = h.now() + (timeout or 3)
  while h.now() < deadline do
    local m = peer.stdout():match(pattern)
    if m then return m end
    h.sleep(0.02)
  end
  return nil, peer.stdout()
end

local function python_ok()
  local out = h.run(h.PYTHON .. " -c 'import websockets; print(websockets.__version__)' 2>/dev/null", 10)
  return out:match("^%d") ~= nil
end

-- Installs ws@8 into spec/peers/node/node_modules when missing.  Returns
-- true, or nil and why not.
local function node_ready()
  if not h.run("sh -c 'command -v node' 2>/dev/null", 5):match("node") then
    return nil, "node is not installed"
  end
  local have = h.read_file(h.root .. "/spec/peers/node/node_modules/ws/package.json")
  if have and have:match('"version": "8%.') then return true end
  if not h.run("sh -c 'command -v npm' 2>/dev/null", 5):match("npm") then
    return nil, "npm is not installed (needed to install ws@8)"
  end
  local out, code = h.run("npm install --prefix spec/peers/node --no-audit --no-fund " ..
    "--loglevel=error 2>&1", 120)
  have = h.read_file(h.root .. "/spec/peers/node/node_modules/ws/package.json")
  if not have then return nil, "npm install ws@8 failed (" .. tostring(code) .. "): " .. out end
  return true
end

---------------------------------------------------------------------------
-- Interop: the same scenarios against each foreign server
---------------------------------------------------------------------------

local PEERS = {
  { name = "python websockets 10.4 (compression=None)",
    cmd = h.PYTHON .. " spec/peers/client_python_server.py --no-compression",
    ready = function() return python_ok() or nil, "python3 websockets is not importable" end },
  { name = "python websockets 10.4 (default compression)",
    cmd = h.PYTHON .. " spec/peers/client_python_server.py",
    ready = function() return python_ok() or nil, "python3 websockets is not importable" end },
  { name = "node ws 8", cmd = "node spec/peers/node/server.js", ready = node_ready },
}

for _, def in ipairs(PEERS) do
  describe("uvws.connect against " .. def.name .. ":", function()
    local ok, why = def.ready()
    if not ok then
      it("is skipped", function() pending(def.name .. " unavailable: " .. why) end)
      return
    end
    local peer

    setup(function() peer = start_peer(def.cmd) end)
    teardown(function() if peer then peer.stop() end end)

    it("echoes text, binary, empty and 1 MiB messages", function()
      run(function()
        local ws = assert(uvws.connect(peer.url .. "/echo"))
        local big = string.rep("0123456789abcdef", 65536)
        local bigbin = string.rep("\0\255\1\254", 262144)
        for _, m in ipairs { { "hello", "text" }, { "κόσμε 😀", "text" },
                             { "\0\1\2\255", "binary" }, { "", "text" }, { "", "binary" },
                             { big, "text" }, { bigbin, "binary" } } do
          assert.is_true(ws:send(m[1], m[2]))
          local data, kind = ws:receive(5)
          assert.equal(m[2], kind)
          assert.equal(#m[1], #data)
          assert.is_true(data == m[1])
        end
        assert.is_true(ws:close(1000))
      end)
    end)

    it("reassembles the messages the server sends in fragments", function()
      run(function()
        local ws = assert(uvws.connect(peer.url .. "/fragments"))
        local data, kind = ws:receive(5)
        assert.equal("frag-mented", data)
        assert.equal("text", kind)
        data, kind = ws:receive(5)
        assert.equal("\1\2\3", data)
        assert.equal("binary", kind)
        ws:close()
      end)
    end)

    it("pings the server, and answers the server's ping", function()
      run(function()
        local ws = assert(uvws.connect(peer.url .. "/ping"))
        assert.equal("pong received", ws:receive(6))
        local rtt = ws:ping("client-ping", 3)
        assert.is_number(rtt)
        assert.is_true(rtt >= 0 and rtt < 3)
        ws:close()
      end)
    end)

    it("closes from the client: the server gets the code and reason", function()
      run(function()
        local ws = assert(uvws.connect(peer.url .. "/echo"))
        assert.is_true(ws:close(1000, "client bye"))
        assert.is_true(ws.closed)
        assert.equal(1000, ws.close_code)
        local data, msg, name = ws:receive(1)
        assert.is_nil(data)
        assert.equal("closed", name)
        assert.matches("1000", msg)
        local _, _, sname = ws:send("late")
        assert.equal("closed", sname)
      end)
      assert.truthy(wait_log(peer, "closed /echo 1000 client bye"))
    end)

    it("is closed by the server with a code and reason", function()
      run(function()
        local ws = assert(uvws.connect(peer.url .. "/close"))
        local data, msg, name = ws:receive(5)
        assert.is_nil(data)
        assert.equal("closed", name)
        assert.equal("connection closed (4001 server says bye)", msg)
        assert.equal(4001, ws.close_code)
        assert.equal("server says bye", ws.close_reason)
      end)
    end)

    it("reports an abnormal close (TCP dropped, no close frame) as 1006", function()
      run(function()
        local ws = assert(uvws.connect(peer.url .. "/abort"))
        local data, _, name = ws:receive(5)
        assert.is_nil(data)
        assert.equal("closed", name)
        assert.equal(1006, ws.close_code)
      end)
    end)

    it("negotiates a subprotocol, or none when none is spoken", function()
      run(function()
        local ws = assert(uvws.connect(peer.url .. "/protocol",
          { protocols = { "nope", "chat" } }))
        assert.equal("chat", ws.protocol)
        assert.equal("chat", ws:receive(5))
        assert.equal("chat", ws.response.headers["Sec-WebSocket-Protocol"])
        ws:close()
        ws = assert(uvws.connect(peer.url .. "/protocol", { protocols = { "nope" } }))
        assert.is_nil(ws.protocol)
        assert.equal("none", ws:receive(5))
        ws:close()
      end)
    end)

    it("sends custom headers and Origin, seen by the server", function()
      run(function()
        local ws = assert(uvws.connect(peer.url .. "/headers?x=1", {
          headers = { Authorization = "Bearer abc", ["X-Custom"] = "yes", Cookie = "a=1" },
          origin = "https://app.example",
        }))
        local got = json.decode((assert(ws:receive(5))))
        assert.equal("Bearer abc", got.headers.authorization)
        assert.equal("yes", got.headers["x-custom"])
        assert.equal("a=1", got.headers.cookie)
        assert.equal("https://app.example", got.headers.origin)
        assert.equal("127.0.0.1:" .. peer.port, got.headers.host)
        assert.equal("/headers?x=1", got.path)
        ws:close()
      end)
    end)
  end)
end

---------------------------------------------------------------------------
-- Against the uvws server, in this process
---------------------------------------------------------------------------

describe("uvws.connect against the uvws server:", function()
  local server, seen

  setup(function()
    seen = {}
    server = assert(uvws.listen {
      host = "127.0.0.1", port = 0, protocols = { "chat" },
      handler = function(ws)
        if ws.request.path == "/bye" then
          ws:send("bye")
          return ws:close(4000, "go away")
        end
        for data, kind in ws:each() do ws:send(data, kind) end
        seen[#seen + 1] = { ws.close_code, ws.close_reason }
      end,
    })
  end)
  teardown(function()
    server:close()
    run(function() uvws.sleep(0.05) end)
  end)

  local function url(path) return "ws://127.0.0.1:" .. server.port .. (path or "/") end

  it("connects, echoes, and exposes the response, heads and timings", function()
    run(function()
      local ws, err, name = uvws.connect(url("/chat?room=1"), { protocols = { "chat" } })
      assert.is_truthy(ws, tostring(err) .. " " .. tostring(name))
      assert.equal("chat", ws.protocol)
      local r = ws.response
      assert.equal(101, r.status)
      assert.equal("websocket", r.headers.upgrade)
      assert.equal("websocket", r.headers.UPGRADE)
      assert.matches("^HTTP/1%.1 101", r.raw)
      assert.matches("^GET /chat%?room=1 HTTP/1%.1\r\n", r.request_raw)
      assert.matches("Sec%-WebSocket%-Key: " .. r.key:gsub("%p", "%%%0"), r.request_raw)
      assert.equal(require("uvws.inspect").accept(r.key), r.headers["sec-websocket-accept"])
      for _, k in ipairs { "dns", "connect", "handshake" } do
        assert.is_number(r.timings[k])
        assert.is_true(r.timings[k] >= 0 and r.timings[k] < 5)
      end
      assert.is_true(ws:send("hi"))
      assert.same({ "hi", "text" }, { ws:receive(2) })
      assert.is_true(ws:close(1000, "done"))
      uvws.sleep(0.05)   -- let the server's handler see the end of each()
      assert.same({ 1000, "done" }, seen[#seen])
    end)
  end)

  it("times out a receive, then keeps working", function()
    run(function()
      local ws = assert(uvws.connect(url()))
      local t0 = uvws.now()
      local data, msg, name = ws:receive(0.1)
      assert.is_nil(data)
      assert.equal("timeout", msg)
      assert.equal("timeout", name)
      assert.is_true(uvws.now() - t0 >= 0.09)
      ws:send("still")
      assert.equal("still", ws:receive(2))
      ws:close()
    end)
  end)

  it("ends each() when the server closes, with its code and reason", function()
    run(function()
      local ws = assert(uvws.connect(url("/bye")))
      local got = {}
      for data in ws:each(5) do got[#got + 1] = data end
      assert.same({ "bye" }, got)
      assert.equal(4000, ws.close_code)
      assert.equal("go away", ws.close_reason)
    end)
  end)

  it("returns nil, message, name for unusable URLs and refused connections", function()
    run(function()
      local ws, msg, name = uvws.connect("http://127.0.0.1:1/")
      assert.is_nil(ws)
      assert.equal("EINVAL", name)
      assert.matches("not a WebSocket URL", msg)
      ws, msg, name = uvws.connect("ws://127.0.0.1:1/", { timeout = 2 })
      assert.is_nil(ws)
      assert.equal("ECONNREFUSED", name)
      assert.matches("refused", msg)
    end)
  end)

  it("raises on misuse", function()
    assert.has_error(function() uvws.connect(url()) end,
      "uvws: uvws.connect must be called inside a coroutine (start one with uvws.spawn)")
    run(function()
      assert.has_error(function() uvws.connect(url(), { protocols = "chat" }) end)
      assert.has_error(function() uvws.connect(url(), { protocols = { "bad proto" } }) end)
      assert.has_error(function() uvws.connect(url(), { headers = "X: y" }) end)
    end)
  end)
end)

---------------------------------------------------------------------------
-- Broken servers: each response-check failure has its own error name
---------------------------------------------------------------------------

describe("uvws.connect against broken servers:", function()
  local raw

  setup(function() raw = start_peer(h.PYTHON .. " spec/peers/client_raw_server.py") end)
  teardown(function() if raw then raw.stop() end end)

  local CASES = {
    { "/200", "ESTATUS", "status 200 instead of 101" },
    { "/426", "ESTATUS", "status 426" },
    { "/no-upgrade", "EUPGRADE", "lacks Upgrade" },
    { "/no-connection", "ECONNECTION", "lacks Connection" },
    { "/bad-accept", "EACCEPT", "wrong Sec%-WebSocket%-Accept" },
    { "/bad-protocol", "EPROTOCOL", "subprotocol that was not offered" },
    { "/bad-extension", "EEXTENSION", "extension that was not offered" },
  }
  for _, c in ipairs(CASES) do
    local path, want, pattern = c[1], c[2], c[3]
    it(path .. " fails with " .. want .. " and carries the response", function()
      run(function()
        local ws, msg, name, resp = uvws.connect(raw.url .. path, { protocols = { "chat" } })
        assert.is_nil(ws)
        assert.equal(want, name)
        assert.matches(pattern, msg)
        assert.is_table(resp)
        assert.is_string(resp.raw)
        assert.matches("^GET " .. path:gsub("%p", "%%%0") .. " HTTP/1%.1", resp.request_raw)
        if want == "ESTATUS" then
          assert.equal(tonumber(path:sub(2)), resp.status)
          assert.matches("^text/html", resp.headers["Content-Type"])
        else
          assert.equal(101, resp.status)
        end
      end)
    end)
  end

  it("a server that accepts TCP but never answers: ETIMEDOUT after the timeout", function()
    run(function()
      local t0 = uvws.now()
      local ws, msg, name = uvws.connect(raw.url .. "/silent", { timeout = 0.3 })
      local dt = uvws.now() - t0
      assert.is_nil(ws)
      assert.equal("ETIMEDOUT", name)
      assert.matches("timeout", msg)
      assert.is_true(dt >= 0.25 and dt < 2, "took " .. dt)
    end)
  end)

  it("a server that hangs up without answering: closed", function()
    run(function()
      local ws, _, name, resp = uvws.connect(raw.url .. "/hang-up", { timeout = 2 })
      assert.is_nil(ws)
      assert.equal("closed", name)
      assert.is_nil(resp)
    end)
  end)
end)

---------------------------------------------------------------------------
-- uvws.reconnecting
---------------------------------------------------------------------------

describe("uvws.reconnecting:", function()
  it("computes exponential backoff capped at max_delay, with jitter", function()
    local o = { min_delay = 0.5, max_delay = 4, factor = 2, jitter = 0.5 }
    local got = {}
    for n = 1, 6 do got[n] = reconnecting.delay(o, n) end
    assert.same({ 0.5, 1, 2, 4, 4, 4 }, got)
    assert.equal(0.25, reconnecting.delay(o, 1, function() return 1 end))
    assert.equal(2, reconnecting.delay(o, 4, function() return 1 end))
    assert.equal(4, reconnecting.delay(o, 4, function() return 0 end))
  end)

  it("checks its options", function()
    assert.has_error(function() reconnecting.new("ws://127.0.0.1:1/", { queue = "drop" }) end,
      'uvws.reconnecting: queue must be "wait" or "error"')
    assert.has_error(function() reconnecting.new("ws://127.0.0.1:1/", { jitter = 2 }) end)
    assert.has_error(function() reconnecting.new("ws://127.0.0.1:1/", { max_attempts = 0 }) end)
    assert.has_error(function() reconnecting.new("ws://127.0.0.1:1/", { on_connect = 1 }) end)
  end)

  it("reconnects after the server restarts, re-runs on_connect, and a waiting send goes through",
    function()
      local srv = h.start_server()
      local port = srv.port
      local url = "ws://127.0.0.1:" .. port .. "/"
      local auths, disconnects = 0, {}
      run(function()
        local rc = reconnecting.new(url, {
          min_delay = 0.05, max_delay = 0.2, queue = "wait",
          on_connect = function(ws)
            ws:send("auth")
            assert(ws:receive(2) == "auth")   -- the hook has the connection to itself
            auths = auths + 1
          end,
          on_disconnect = function(code) disconnects[#disconnects + 1] = code end,
        })
        assert.equal("connecting", rc.state)
        assert.is_true(rc:send("one"))
        assert.same({ "one", "text" }, { rc:receive(3) })
        assert.equal(1, auths)

        srv.stop()
        uvws.sleep(0.3)
        assert.are_not.equal("open", rc.state)
        assert.same({ 1006 }, disconnects)
        assert.is_true(rc.attempts >= 1)
        assert.equal("ECONNREFUSED", rc.last_error_name)

        local sent
        uvws.spawn(function() sent = { rc:send("two", "text", 8) } end)
        uvws.sleep(0.1)
        assert.is_nil(sent)                    -- waiting, not dropped

        srv = h.start_server("examples/echo_server.lua", { tostring(port) })
        assert.same({ "two", "text" }, { rc:receive(5) })
        assert.same({ true }, sent)
        assert.equal(2, auths)
        assert.equal(2, rc.connections)
        assert.equal(0, rc.attempts)

        rc:close()
        assert.equal("closed", rc.state)
        local ok, _, name = rc:send("after")
        assert.is_nil(ok)
        assert.equal("closed", name)
        local data
        data, _, name = rc:receive(1)
        assert.is_nil(data)
        assert.equal("closed", name)
      end, 20)
      srv.stop()
    end)

  it('queue = "error": send while disconnected returns nil, "not connected", "disconnected"',
    function()
      run(function()
        local rc = reconnecting.new("ws://127.0.0.1:1/", { queue = "error", min_delay = 0.05 })
        local ok, msg, name = rc:send("x")
        assert.is_nil(ok)
        assert.equal("not connected", msg)
        assert.equal("disconnected", name)
        assert.same({ nil, "not connected", "disconnected" }, { rc:ping() })
        rc:close()
      end)
    end)

  it('queue = "wait": a send times out when no connection comes', function()
    run(function()
      local rc = reconnecting.new("ws://127.0.0.1:1/", { min_delay = 0.05 })
      local t0 = uvws.now()
      local ok, msg, name = rc:send("x", "text", 0.2)
      assert.is_nil(ok)
      assert.equal("timeout", name)
      assert.matches("not connected", msg)
      assert.is_true(uvws.now() - t0 >= 0.19)
      rc:close()
    end)
  end)

  it("gives up after max_attempts with backoff between attempts", function()
    run(function()
      local t0 = uvws.now()
      local rc = reconnecting.new("ws://127.0.0.1:1/", {
        min_delay = 0.05, factor = 2, jitter = 0, max_attempts = 4 })
      local data, msg, name = rc:receive(5)
      local dt = uvws.now() - t0
      assert.is_nil(data)
      assert.equal("closed", name)
      assert.equal("gave up after 4 attempts: connect: connection refused (ECONNREFUSED)", msg)
      assert.equal(4, rc.attempts)
      assert.equal("closed", rc.state)
      -- Three pauses: 0.05 + 0.1 + 0.2 s.
      assert.is_true(dt >= 0.33 and dt < 2, "took " .. dt)
    end)
  end)

  describe("with a uvws server in this process:", function()
    local server, count

    setup(function()
      count = {}
      server = assert(uvws.listen {
        host = "127.0.0.1", port = 0,
        on_upgrade = function(req)
          if req.path == "/denied" then return uvws.reject(401, "no\n") end
        end,
        handler = function(ws)
          local p = ws.request.path
          count[p] = (count[p] or 0) + 1
          if p == "/normal" then
            ws:send("last")
            return ws:close(1000, "done")
          elseif p == "/restart" then
            ws:send("n" .. count[p])
            return ws:close(1012, "service restart")
          end
          for data, kind in ws:each() do ws:send(data, kind) end
        end,
      })
    end)
    teardown(function()
      server:close()
      run(function() uvws.sleep(0.05) end)
    end)

    local function url(p) return "ws://127.0.0.1:" .. server.port .. p end

    it("delivers messages across reconnections after 1012 closes", function()
      run(function()
        local rc = reconnecting.new(url("/restart"), { min_delay = 0.02, jitter = 0 })
        assert.equal("n1", rc:receive(3))
        assert.equal("n2", rc:receive(3))
        assert.equal("n3", rc:receive(3))
        assert.is_true(rc.connections >= 3)
        rc:close()
      end)
    end)

    it("stops when the server closes normally (1000)", function()
      run(function()
        local rc = reconnecting.new(url("/normal"), { min_delay = 0.02 })
        assert.equal("last", rc:receive(3))
        local data, msg, name = rc:receive(3)
        assert.is_nil(data)
        assert.equal("closed", name)
        assert.matches("closed by the server %(1000 done%)", msg)
        assert.equal(1, rc.connections)
      end)
    end)

    it("gives up at once on a 4xx answer (another attempt would not help)", function()
      run(function()
        local rc = reconnecting.new(url("/denied"), { min_delay = 0.02 })
        local ok, msg, name = rc:send("x", "text", 3)
        assert.is_nil(ok)
        assert.equal("closed", name)
        assert.matches("gave up: .*401.*ESTATUS", msg)
        assert.equal(1, rc.attempts)
      end)
    end)

    it("counts an on_connect failure as a failed attempt", function()
      run(function()
        local calls = 0
        local rc = reconnecting.new(url("/echo"), {
          min_delay = 0.02, max_attempts = 2,
          on_connect = function() calls = calls + 1; return nil, "token refused" end,
        })
        local data, msg = rc:receive(3)
        assert.is_nil(data)
        assert.equal("gave up after 2 attempts: on_connect failed: token refused (EHOOK)", msg)
        assert.equal(2, calls)
      end)
    end)

    it("close() during the backoff wakes a waiting send with closed", function()
      run(function()
        local rc = reconnecting.new("ws://127.0.0.1:1/", { min_delay = 5, jitter = 0 })
        local res
        uvws.spawn(function() res = { rc:send("x") } end)
        uvws.sleep(0.1)
        assert.equal("waiting", rc.state)
        rc:close()
        assert.is_nil(res[1])
        assert.equal("closed", res[3])
      end, 3)
    end)
  end)
end)
