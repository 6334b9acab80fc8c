-- The server Lua API as documented in README.md, end to end: server
-- scripts (spec/api/server.lua, behaviour chosen by the request path) run
-- in a lua5.4 subprocess on port 0; clients are raw luasocket connections
-- (spec/helper.lua) and, where a real client's automatic pong matters,
-- Python websockets (spec/peers/api_client.py).  A few cases that need no
-- client (option checking, origin_allowed, errors outside a coroutine) run
-- in this process, driving the loop with bounded uvws.step() calls.

local h = require "spec.helper"
local socket = require "socket"
local json = require "dkjson"
local uvws = require "uvws"

local SERVER = "spec/api/server.lua"

---------------------------------------------------------------------------
-- Local helpers
---------------------------------------------------------------------------

-- busted keeps only the last finally() of a test, so cleanups are
-- collected here and run (newest first) by after_each.
local deferred = {}
local function defer(fn) deferred[#deferred + 1] = fn end
local function run_deferred()
  local list = deferred
  deferred = {}
  for i = #list, 1, -1 do pcall(list[i]) end
end

local function start(args)
  return h.start_server(SERVER, args or {})
end

-- Waits (bounded) until the server's stdout matches pattern; returns the
-- captures, or nil and the whole stdout.
local function wait_log(srv, pattern, timeout)
  local deadline = h.now() + (timeout or 3)
  while true do
    local out = srv.stdout()
    local caps = table.pack(out:match(pattern))
    if caps[1] ~= nil then return table.unpack(caps, 1, caps.n) end
    if h.now() > deadline then return nil, out end
    h.sleep(0.02)
  end
end

-- Reads one frame and checks it is a text frame; returns its payload.
local function read_text(c, timeout)
  local f, err = c:read_frame(timeout or 3)
  assert(f, "no frame: " .. tostring(err))
  assert.equal(1, f.opcode, "expected a text frame, got opcode " .. f.opcode ..
               " payload " .. f.payload)
  return f.payload
end

-- Connects and completes a handshake; returns the connection and the
-- response headers, raising on failure.
local function connect(port, path, extra)
  local c = assert(h.raw(port))
  local ok, headers, status = c:handshake(path, extra)
  if not ok then
    c:close()
    error("handshake to " .. tostring(path) .. " failed: " .. tostring(headers) ..
          " " .. tostring(status), 2)
  end
  return c, headers
end

-- Sends a handshake that is expected to be refused; returns status,
-- headers, head, body (read with Content-Length) and the connection.
local function refused(port, path, extra)
  local c = assert(h.raw(port))
  local key = h.b64(h.random_bytes(16))
  assert(c:send(h.request(port, path, extra, key)))
  local status, headers, head, body = c:read_http_head(3)
  return status, headers, head, body, c
end

-- Closes a websocket politely (close frame, wait for the echo) and the socket.
local function bye(c, code)
  c:send(h.close(code or 1000))
  c:expect_close(1)
  c:close()
end

-- A plain HTTP request on a raw connection.
local function http(c, method, path, extra_lines, body)
  local lines = { method .. " " .. path .. " HTTP/1.1", "Host: 127.0.0.1" }
  for _, l in ipairs(extra_lines or {}) do lines[#lines + 1] = l end
  if body then lines[#lines + 1] = "Content-Length: " .. #body end
  assert(c:send(table.concat(lines, "\r\n") .. "\r\n\r\n" .. (body or "")))
  return c:read_http_head(3)
end

-- Runs the in-process loop until cond() is true (at most timeout seconds).
local function pump(cond, timeout)
  local deadline = h.now() + (timeout or 2)
  while h.now() < deadline do
    uvws.step()
    if cond() then return true end
    socket.sleep(0.002)
  end
  return false
end

local function python_ok()
  local out = h.run(h.PYTHON .. " -c 'import websockets; print(websockets.__version__)' 2>/dev/null", 10)
  return out and out:match("^%d") ~= nil
end

local HAVE_PYTHON = python_ok()

local function python(scenario, url)
  local out = h.run(h.PYTHON .. " spec/peers/api_client.py " .. scenario .. " " ..
                    h.q(url) .. " 2>&1", 30)
  local res = json.decode(out:match("([^\n]*)\n?$") or "")
  assert(type(res) == "table", "python peer printed no JSON:\n" .. out)
  return res
end

local function ipv6_available()
  local s = socket.tcp6 and socket.tcp6()
  if not s then return false end
  local ok = s:bind("::1", 0)
  s:close()
  return ok == 1 or ok == true
end

---------------------------------------------------------------------------
-- uvws.listen
---------------------------------------------------------------------------

describe("uvws.listen", function()
  after_each(run_deferred)

  it("with port = 0 picks a free port and reports it in server.port", function()
    local srv = assert(uvws.listen { host = "127.0.0.1", port = 0 })
    defer(function() srv:close() pump(function() return false end, 0.05) end)
    assert.equal("integer", math.type(srv.port))
    assert.is_true(srv.port > 0)
    -- The kernel completes the TCP handshake on the listening socket.
    local s = socket.tcp()
    s:settimeout(1)
    local ok, err = s:connect("127.0.0.1", srv.port)
    s:close()
    assert.truthy(ok, tostring(err))
  end)

  it("returns nil, message, \"EADDRINUSE\" when the port is taken", function()
    local srv = assert(uvws.listen { host = "127.0.0.1", port = 0 })
    defer(function() srv:close() pump(function() return false end, 0.05) end)
    local again, msg, name = uvws.listen { host = "127.0.0.1", port = srv.port }
    assert.is_nil(again)
    assert.is_string(msg)
    assert.equal("EADDRINUSE", name)
  end)

  it("raises on invalid option types", function()
    local cases = {
      { { port = "x" }, "port" },
      { { port = 1.5 }, "port" },
      { { port = 0, handler = 5 }, "handler" },
      { { port = 0, on_upgrade = "yes" }, "on_upgrade" },
      { { port = 0, on_request = {} }, "on_request" },
      { { port = 0, on_error = true }, "on_error" },
      { { port = 0, max_message_size = "big" }, "max_message_size" },
      { { port = 0, idle_timeout = "soon" }, "idle_timeout" },
    }
    for _, case in ipairs(cases) do
      local ok, err = pcall(uvws.listen, case[1])
      assert.is_false(ok, "no error for bad " .. case[2])
      assert.matches(case[2], tostring(err), 1, true)
    end
    assert.is_false((pcall(uvws.listen, "port=0")))
    assert.is_false((pcall(uvws.listen)))
  end)

  it("listens on IPv6 ::1 and sees the peer as ::1", function()
    if not ipv6_available() then
      pending("::1 is not available on this machine")
      return
    end
    local srv = start { "host=::1" }
    defer(srv.stop)
    local s = socket.tcp6()
    s:settimeout(3)
    assert(s:connect("::1", srv.port))
    defer(function() s:close() end)
    local key = h.b64(h.random_bytes(16))
    assert(s:send(h.request(srv.port, "/info", {}, key)))
    local status = s:receive("*l")
    assert.equal("HTTP/1.1 101 Switching Protocols", status)
    local accept
    repeat
      local line = assert(s:receive("*l"))
      local v = line:match("^[Ss]ec%-[Ww]eb[Ss]ocket%-[Aa]ccept:%s*(%S+)")
      accept = accept or v
    until line == ""
    assert.equal(h.accept(key), accept)
    -- first message: the request summary, unmasked text frame < 126 bytes
    -- is not guaranteed, so read the length properly
    local hdr = assert(s:receive(2))
    local len = hdr:byte(2) & 0x7f
    if len == 126 then len = string.unpack(">I2", assert(s:receive(2))) end
    local info = assert(s:receive(len))
    assert.matches("remote_addr=::1\n", info, 1, true)
  end)
end)

---------------------------------------------------------------------------
-- on_upgrade
---------------------------------------------------------------------------

describe("on_upgrade", function()
  after_each(run_deferred)

  local srv

  setup(function() srv = start() end)
  teardown(function() if srv then srv.stop() end end)

  -- Connects to /info with extra request headers and returns the summary
  -- of the request object the server sent as its first message.
  local function info(path, extra)
    local c = connect(srv.port, path, extra)
    local text = read_text(c)
    bye(c)
    local t = {}
    for k, v in text:gmatch("([^\n=]+)=([^\n]*)") do t[k] = v end
    return t, text
  end

  it("sees method, path, target, version, query and query_all", function()
    local t, text = info("/info?token=abc&x=1&x=2&sp=a%20b")
    assert.equal("GET", t.method, text)
    assert.equal("/info", t.path, text)
    assert.equal("/info?token=abc&x=1&x=2&sp=a%20b", t.target, text)
    assert.equal("token=abc&x=1&x=2&sp=a%20b", t.query_string, text)
    assert.equal("1.1", t.version, text)
    assert.equal("abc", t["query.token"], text)
    assert.equal("1", t["query.x"], text)
    assert.equal("1|2", t["query_all.x"], text)
  end)

  it("looks headers up in any case", function()
    local t, text = info("/info", { Origin = "http://Example.test" })
    assert.equal("http://Example.test", t["headers.Origin"], text)
    assert.equal("http://Example.test", t["headers.origin"], text)
    assert.equal("http://Example.test", t["headers.ORIGIN"], text)
  end)

  it("keeps repeated headers: header, header_values, joined value, header_list", function()
    local t, text = info("/info", { "X-Multi: one", "x-multi: two" })
    assert.equal("one", t["header(X-Multi)"], text)
    assert.equal("one|two", t["header_values(x-multi)"], text)
    assert.equal("one, two", t["headers.x-multi"], text)
    assert.equal("0", t["header_values(absent)"], text)
    -- 5 default handshake headers + 2
    assert.equal("7", t["header_list.n"], text)
    assert.equal("Host:127.0.0.1:" .. srv.port, t["header_list.1"], text)
  end)

  it("parses cookies, also across two Cookie headers", function()
    local t, text = info("/info", { 'Cookie: a=1; b="quoted"', "Cookie: c=3" })
    assert.equal("1", t["cookies.a"], text)
    assert.equal("quoted", t["cookies.b"], text)
    assert.equal("3", t["cookies.c"], text)
  end)

  it("lists the offered subprotocols in order in req.protocols", function()
    local c, headers = connect(srv.port, "/info",
      { "Sec-WebSocket-Protocol: p1, p2", "Sec-WebSocket-Protocol: p3" })
    local text = read_text(c)
    bye(c)
    assert.matches("\nprotocols=p1|p2|p3\n", text, 1, true)
    -- nobody selected one: the 101 must not name one
    assert.is_nil(headers["sec-websocket-protocol"])
  end)

  it("gives remote_addr 127.0.0.1 and an integer remote_port", function()
    local t, text = info("/info")
    assert.equal("127.0.0.1", t.remote_addr, text)
    assert.equal("integer", t.remote_port, text)
  end)

  it("formats every IPv4 peer address as a dotted quad", function()
    -- All of 127/8 is loopback on Linux: one, two and three digits, zeros.
    for _, addr in ipairs { "127.0.0.2", "127.10.200.5", "127.255.99.250", "127.1.0.10" } do
      local c = assert(h.raw(srv.port, 3, addr))
      local ok, err = c:handshake("/info")
      assert(ok, "handshake from " .. addr .. ": " .. tostring(err))
      local text = read_text(c)
      bye(c)
      assert.matches("\nremote_addr=" .. addr:gsub("%.", "%%.") .. "\n", text)
    end
  end)

  it("may yield (uvws.sleep) before accepting", function()
    local t0 = h.now()
    local c = connect(srv.port, "/slow")
    local took = h.now() - t0
    local msg = read_text(c)
    bye(c)
    local slept = tonumber(msg:match("^slept ([%d.]+)$"))
    assert.is_number(slept, msg)
    assert.is_true(slept >= 0.045, msg)
    assert.is_true(took >= 0.04, "101 came after " .. took .. " s")
  end)

  it("rejects with uvws.reject: exact status, header and body, no 101", function()
    local status, headers, head, body, c = refused(srv.port, "/auth?token=bad")
    assert.equal(401, status, head)
    assert.matches("^HTTP/1%.1 401 ", head)
    assert.equal('Bearer realm="chat"', headers["www-authenticate"], head)
    assert.equal("bad token\n", body)
    assert.is_nil(headers["sec-websocket-accept"])
    assert.not_matches("101", head:match("^[^\r\n]*"))
    -- the connection ends after the refusal; no frame ever arrives
    local closed, rest = c:is_closed(2)
    c:close()
    assert.is_true(closed)
    assert.equal("", rest)
  end)

  it("accepts when on_upgrade lets the token through", function()
    local c = connect(srv.port, "/auth?token=good")
    assert.equal("user=token-user", read_text(c))
    bye(c)
  end)

  it("accepts with a chosen protocol, extra headers and ws.data", function()
    local c, headers = connect(srv.port, "/proto",
      { ["Sec-WebSocket-Protocol"] = "chat.v2, chat.v1" })
    assert.equal("chat.v1", headers["sec-websocket-protocol"])
    assert.equal("seen=1; HttpOnly", headers["set-cookie"])
    assert.equal("user=alice protocol=chat.v1", read_text(c))
    bye(c)
  end)

  it("answers 500 and calls on_error when on_upgrade selects an unoffered protocol", function()
    local status, headers, head = refused(srv.port, "/badproto",
      { ["Sec-WebSocket-Protocol"] = "chat.v1" })
    assert.equal(500, status, head)
    assert.is_nil(headers["sec-websocket-protocol"])
    assert.is_nil(headers["sec-websocket-accept"])
    assert.truthy(wait_log(srv, "ON_ERROR [^\n]*(not%-offered)"),
                  "on_error was not called:\n" .. srv.stdout())
  end)

  it("answers 500 and calls on_error when on_upgrade raises", function()
    local status, _, head = refused(srv.port, "/uperror")
    assert.equal(500, status, head)
    assert.truthy(wait_log(srv, "ON_ERROR [^\n]*(boom in on_upgrade)"),
                  "on_error was not called:\n" .. srv.stdout())
  end)

  describe("with the protocols option", function()
    local psrv
    setup(function() psrv = start { "protocols=chat.v2,chat.v1" } end)
    teardown(function() if psrv then psrv.stop() end end)

    it("selects the first client-offered protocol the server speaks", function()
      local c, headers = connect(psrv.port, "/which",
        { ["Sec-WebSocket-Protocol"] = "foo, chat.v1, chat.v2" })
      assert.equal("chat.v1", headers["sec-websocket-protocol"])
      assert.equal("protocol=chat.v1", read_text(c))
      bye(c)
    end)

    it("selects none when the client offers none the server speaks", function()
      local c, headers = connect(psrv.port, "/which",
        { ["Sec-WebSocket-Protocol"] = "foo, bar" })
      assert.is_nil(headers["sec-websocket-protocol"])
      assert.equal("protocol=nil", read_text(c))
      bye(c)
    end)
  end)

  describe("with the origins option", function()
    local osrv
    setup(function() osrv = start { "origins=https://example.com,https://*.example.com" } end)
    teardown(function() if osrv then osrv.stop() end end)

    it("accepts an allowed Origin (exact and wildcard subdomain)", function()
      local c = connect(osrv.port, "/echo", { Origin = "https://example.com" })
      bye(c)
      c = connect(osrv.port, "/echo", { Origin = "https://chat.example.com" })
      c:send(h.text("hi"))
      assert.equal("hi", read_text(c))
      bye(c)
    end)

    it("answers 403 to a disallowed Origin", function()
      for _, origin in ipairs { "https://evil.com", "http://example.com",
                                "https://example.com.evil.com" } do
        local status, headers, head = refused(osrv.port, "/echo", { Origin = origin })
        assert.equal(403, status, origin .. ": " .. tostring(head))
        assert.is_nil(headers["sec-websocket-accept"])
      end
    end)

    it("answers 403 when Origin is missing", function()
      local status, _, head = refused(osrv.port, "/echo")
      assert.equal(403, status, head)
    end)

    it("checks the Origin before on_upgrade runs", function()
      local status, _, head = refused(osrv.port, "/uperror", { Origin = "https://evil.com" })
      assert.equal(403, status, head)
      h.sleep(0.1)
      assert.not_matches("ON_ERROR", osrv.stdout())
    end)
  end)
end)

describe("uvws.origin_allowed", function()
  after_each(run_deferred)

  local allowed = uvws.origin_allowed

  it("matches an exact origin, ignoring case", function()
    assert.is_true(allowed("https://example.com", { "https://example.com" }))
    assert.is_true(allowed("https://EXAMPLE.com", { "https://example.com" }))
    assert.is_true(allowed("http://localhost:8080", { "http://localhost:8080" }))
    assert.is_false(allowed("http://localhost:8081", { "http://localhost:8080" }))
  end)

  it("matches subdomains with scheme://*.domain but not the apex", function()
    local p = { "https://*.example.com" }
    assert.is_true(allowed("https://a.example.com", p))
    assert.is_true(allowed("https://a.b.example.com", p))
    assert.is_false(allowed("https://example.com", p))
    assert.is_false(allowed("https://badexample.com", p))
    assert.is_false(allowed("https://example.com.evil.org", p))
  end)

  it("rejects a scheme mismatch", function()
    assert.is_false(allowed("http://example.com", { "https://example.com" }))
    assert.is_false(allowed("http://a.example.com", { "https://*.example.com" }))
  end)

  it("matches a bare host pattern with any scheme", function()
    assert.is_true(allowed("http://a.example.com", { "*.example.com" }))
    assert.is_true(allowed("https://a.example.com", { "*.example.com" }))
    assert.is_false(allowed("https://example.com", { "*.example.com" }))
  end)

  it("matches anything with \"*\" but never a missing Origin", function()
    assert.is_true(allowed("https://whatever.test", { "*" }))
    assert.is_true(allowed("null", { "*" }))
    assert.is_false(allowed(nil, { "*" }))
    assert.is_false(allowed(nil, { "https://example.com" }))
    assert.is_false(allowed("https://example.com", {}))
  end)
end)

---------------------------------------------------------------------------
-- on_request
---------------------------------------------------------------------------

describe("on_request", function()
  after_each(run_deferred)

  local srv

  setup(function() srv = start() end)
  teardown(function() if srv then srv.stop() end end)

  local function with_conn(fn)
    local c = assert(h.raw(srv.port))
    local ok, err = pcall(fn, c)
    c:close()
    if not ok then error(err, 0) end
  end

  it("answers GET /health from the return values", function()
    with_conn(function(c)
      local status, headers, head, body = http(c, "GET", "/health")
      assert.equal(200, status, head)
      assert.equal("ok\n", body)
      assert.equal("text/plain", headers["content-type"])
      assert.equal("3", headers["content-length"])
    end)
  end)

  it("answers with res:send(status, body, headers)", function()
    with_conn(function(c)
      local status, headers, head, body = http(c, "GET", "/send")
      assert.equal(201, status, head)
      assert.equal("yes", headers["x-custom"])
      assert.equal("created\n", body)
    end)
  end)

  it("answers 404 when it returns nothing", function()
    with_conn(function(c)
      local status, _, head = http(c, "GET", "/no/such/page")
      assert.equal(404, status, head)
    end)
  end)

  it("may yield (uvws.sleep) before answering", function()
    with_conn(function(c)
      local status, _, head, body = http(c, "GET", "/slow")
      assert.equal(200, status, head)
      assert.equal("slow ok\n", body)
    end)
  end)

  it("keeps an HTTP/1.1 connection alive for a second request", function()
    with_conn(function(c)
      local s1, _, head1, b1 = http(c, "GET", "/health")
      assert.equal(200, s1, head1)
      assert.equal("ok\n", b1)
      local s2, h2, head2, b2 = http(c, "GET", "/send")
      assert.equal(201, s2, head2)
      assert.equal("created\n", b2)
      assert.equal("yes", h2["x-custom"])
    end)
  end)

  it("closes the connection after answering Connection: close", function()
    with_conn(function(c)
      local status, headers, head, body = http(c, "GET", "/health", { "Connection: close" })
      assert.equal(200, status, head)
      assert.equal("ok\n", body)
      assert.equal("close", (headers.connection or ""):lower())
      local closed, rest = c:is_closed(2)
      assert.is_true(closed, "connection still open")
      assert.equal("", rest)
    end)
  end)

  it("gives a Content-Length body as req.body", function()
    with_conn(function(c)
      local status, headers, head, body = http(c, "POST", "/echo", nil, "hello world")
      assert.equal(200, status, head)
      assert.equal("POST", headers["x-method"])
      assert.equal("hello world", body)
    end)
  end)

  it("answers 413 to a body over max_body_size", function()
    with_conn(function(c)
      -- the server script sets max_body_size = 1024
      local status, _, head = http(c, "POST", "/echo", nil, string.rep("b", 2000))
      assert.equal(413, status, head)
    end)
  end)

  it("answers HEAD with the headers only", function()
    with_conn(function(c)
      assert(c:send("HEAD /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"))
      local head = ""
      while not head:find("\r\n\r\n", 1, true) do
        local b, err = c:recv_exact(1, 3)
        assert(b, "HEAD answer incomplete: " .. tostring(err) .. " " .. head)
        head = head .. b
      end
      assert.matches("^HTTP/1%.1 200 ", head)
      assert.matches("\r\n[Cc]ontent%-[Ll]ength: 3\r\n", head)
      -- no body follows...
      local extra, err = c:recv_exact(1, 0.3)
      assert.is_nil(extra, "HEAD answer had a body")
      assert.equal("timeout", err)
      -- ...and the connection still serves a request cleanly
      local status, _, head2, body = http(c, "GET", "/health")
      assert.equal(200, status, head2)
      assert.equal("ok\n", body)
    end)
  end)

  it("answers 500 and calls on_error when on_request raises", function()
    with_conn(function(c)
      local status, _, head = http(c, "GET", "/error")
      assert.equal(500, status, head)
    end)
    assert.truthy(wait_log(srv, "ON_ERROR [^\n]*(boom in on_request)"),
                  "on_error was not called:\n" .. srv.stdout())
  end)

  it("without on_request answers a plain GET with 426 and Upgrade: websocket", function()
    local nsrv = start { "no_request=1" }
    defer(nsrv.stop)
    local c = assert(h.raw(nsrv.port))
    defer(function() c:close() end)
    local status, headers, head = http(c, "GET", "/health")
    assert.equal(426, status, head)
    assert.equal("websocket", (headers.upgrade or ""):lower(), head)
  end)
end)

---------------------------------------------------------------------------
-- handler and the websocket object
---------------------------------------------------------------------------

describe("handler", function()
  after_each(run_deferred)

  local srv

  setup(function() srv = start() end)
  teardown(function() if srv then srv.stop() end end)

  it("ws:receive() returns data and kind", function()
    local c = connect(srv.port, "/kinds")
    c:send(h.text("héllo"))
    assert.equal("text:6:héllo", read_text(c))
    c:send(h.binary("\0\1\255"))
    local f = assert(c:read_frame(2))
    assert.equal(2, f.opcode)
    assert.equal("binary:3:\0\1\255", f.payload)
    bye(c)
    assert.truthy(wait_log(srv, "KINDS_END [^\n]*(closed)\n"), srv.stdout())
  end)

  it("ws:receive(0.2) times out with nil, \"timeout\", \"timeout\" and the connection goes on", function()
    local c = connect(srv.port, "/timeout")
    local msg = read_text(c, 2)
    local a, b, cc, dt = msg:match("^(%S+) (%S+) (%S+) ([%d.]+)$")
    assert.equal("nil", a, msg)
    assert.equal("timeout", b, msg)
    assert.equal("timeout", cc, msg)
    assert.is_true(tonumber(dt) >= 0.18 and tonumber(dt) < 1, msg)
    c:send(h.text("after the timeout"))
    assert.equal("after the timeout", read_text(c))
    bye(c)
  end)

  it("ws:each() iterates over messages in order and ends at the close", function()
    local c = connect(srv.port, "/echo")
    for i = 1, 5 do c:send(h.text("m" .. i)) end
    for i = 1, 5 do assert.equal("m" .. i, read_text(c)) end
    c:send(h.close(1000))
    local code = c:expect_close(2)
    assert.equal(1000, code)
    assert.is_true(c:is_closed(2))
    c:close()
  end)

  it("ws:send(data, \"binary\") sends a binary frame", function()
    local c = connect(srv.port, "/binary")
    local f = assert(c:read_frame(2))
    assert.equal(2, f.opcode)
    assert.equal("\0\1\2\255", f.payload)
    assert.is_false(f.masked)
    assert.equal("text after binary", read_text(c))
    bye(c)
  end)

  it("a handler error closes with 1011, goes to on_error, and the server keeps serving", function()
    local c = connect(srv.port, "/error")
    c:send(h.text("trigger"))
    local code = c:expect_close(2)
    c:close()
    assert.equal(1011, code)
    assert.truthy(wait_log(srv, "ON_ERROR [^\n]*(handler boom)"), srv.stdout())
    local c2 = connect(srv.port, "/echo")
    c2:send(h.text("still serving"))
    assert.equal("still serving", read_text(c2))
    bye(c2)
  end)

  it("closes with 1000 when the handler returns", function()
    local c = connect(srv.port, "/return")
    assert.equal("returning", read_text(c))
    local code = c:expect_close(2)
    assert.equal(1000, code)
    c:send(h.close(1000))
    c:close()
  end)

  it("ws:close(4001, \"bye\") sends code and reason and returns after the handshake", function()
    local c = connect(srv.port, "/close4001")
    local code, reason = c:expect_close(2)
    assert.equal(4001, code)
    assert.equal("bye", reason)
    c:send(h.close(4001))
    assert.is_true(c:is_closed(2))
    c:close()
    local r, _, closed, cc = wait_log(srv, "CLOSE_RETURNED (%S+) (%S+) (%S+) (%S+)\n")
    assert.equal("true", r, srv.stdout())
    assert.equal("true", closed)
    assert.equal("4001", cc)
  end)

  it("sets ws.close_code/close_reason from the client's close; send then returns nil, msg, \"closed\"", function()
    local c = connect(srv.port, "/report?id=r1")
    c:send(h.text("one"))
    c:send(h.close(4000, "client reason"))
    local code = c:expect_close(2)
    assert.equal(4000, code)
    c:close()
    local recv_name = wait_log(srv, "RECEIVE_END r1 (%S+)\n")
    assert.equal("closed", recv_name, srv.stdout())
    local cc, creason, closed = wait_log(srv, "CLOSED r1 (%S+) ([^\n]*) (%S+)\n")
    assert.equal("4000", cc, srv.stdout())
    assert.equal("client reason", creason)
    assert.equal("true", closed)
    local ok, name = wait_log(srv, "SEND_AFTER r1 (%S+) (%S+)")
    assert.equal("nil", ok, srv.stdout())
    assert.equal("closed", name)
  end)

  it("reports close_code 1005 for a close frame without a code", function()
    local c = connect(srv.port, "/report?id=r2")
    c:send(h.close())
    c:expect_close(2)
    c:close()
    local cc = wait_log(srv, "CLOSED r2 (%S+) ")
    assert.equal("1005", cc, srv.stdout())
  end)

  it("ws:ping() returns the round-trip time (Python client answers the ping)", function()
    if not HAVE_PYTHON then pending("python3 websockets not importable") return end
    local res = python("rtt", "ws://127.0.0.1:" .. srv.port .. "/ping")
    assert.is_true(res.ok, json.encode(res))
    local kind, rtt, name = res.answer:match("^rtt go (%S+) (%S+) (%S+)$")
    assert.equal("float", kind, res.answer)
    assert.equal("nil", name, res.answer)
    assert.is_true(tonumber(rtt) >= 0 and tonumber(rtt) < 1, res.answer)
  end)

  it("sends from another coroutine while the handler waits in receive (broadcast)", function()
    local a = connect(srv.port, "/chat")
    local b = connect(srv.port, "/chat")
    a:send(h.text("from a"))
    assert.equal("from a", read_text(b))
    b:send(h.text("from b"))
    assert.equal("from b", read_text(a))
    -- the sender does not get its own message back
    local f, err = a:read_frame(0.2)
    assert.is_nil(f)
    assert.equal("timeout", err)
    bye(a)
    bye(b)
  end)

  it("delivers every message sent just before the close before receive reports \"closed\"", function()
    local c = connect(srv.port, "/linger?id=l1")
    local burst = {}
    for i = 1, 5 do burst[i] = h.text("m" .. i) end
    burst[6] = h.close(1000)
    c:send(table.concat(burst))
    local code = c:expect_close(2)
    assert.equal(1000, code)
    c:close()
    local msgs, last = wait_log(srv, "LINGER l1 (%S*) (%S+)\n")
    assert.equal("m1,m2,m3,m4,m5", msgs, srv.stdout())
    assert.equal("closed", last)
  end)

  it("ws:send of invalid UTF-8 as text raises; as binary it is sent", function()
    local c = connect(srv.port, "/badutf8")
    local msg = read_text(c)
    assert.matches("^pcall false ", msg)
    assert.matches("UTF%-8", msg)
    local f = assert(c:read_frame(2))
    assert.equal(2, f.opcode)
    assert.equal("bad \xff\xfe binary", f.payload)
    assert.equal("binary true", read_text(c))
    bye(c)
  end)

  it("buffers 1000 messages for a handler that is not receiving (max_queue) without loss", function()
    -- The handler's 1 s sleep starts at the upgrade: time from before it.
    local t0 = h.now()
    local c = connect(srv.port, "/drain")
    c:settimeout(5)
    local frames = {}
    for i = 1, 1000 do
      local prefix = i .. ":"
      frames[i] = h.text(prefix .. string.rep("x", 1024 - #prefix))
    end
    frames[#frames + 1] = h.text("END")
    assert(c:send(table.concat(frames)))
    local msg = read_text(c, 6)
    local took = h.now() - t0
    assert.equal("count 1000 ordered true", msg)
    assert.is_true(took >= 0.9, "answered after " .. took .. " s, before the 1 s sleep")
    c:send(h.text("and then"))
    assert.equal("and then", read_text(c))
    bye(c)
  end)
end)

describe("waiting calls outside a coroutine", function()
  after_each(run_deferred)

  it("uvws.sleep raises an error that mentions uvws.spawn", function()
    local ok, err = pcall(uvws.sleep, 0.01)
    assert.is_false(ok)
    assert.matches("uvws.spawn", tostring(err), 1, true)
  end)

  -- An in-process server with one raw client connected; returns the
  -- websocket (from the main thread, outside any coroutine).
  local function in_process_ws()
    local got
    local srv = assert(uvws.listen {
      host = "127.0.0.1", port = 0,
      -- the handler sleeps: it is not in receive, so the calls below are
      -- refused only because they run outside a coroutine
      handler = function(ws) got = ws; uvws.sleep(0.5) end,
    })
    local c = assert(h.raw(srv.port))
    defer(function()
      c:close()
      srv:close()
      pump(function() return #srv:connections() == 0 end, 2)
    end)
    assert(c:send(h.request(srv.port, "/", {}, h.b64(h.random_bytes(16)))))
    assert.is_true(pump(function() return got ~= nil end, 2), "no connection")
    return got, c
  end

  it("ws:receive and ws:ping raise an error that mentions uvws.spawn", function()
    local ws = in_process_ws()
    local ok, err = pcall(ws.receive, ws)
    assert.is_false(ok)
    assert.matches("uvws.spawn", tostring(err), 1, true)
    ok, err = pcall(ws.ping, ws, "x")
    assert.is_false(ok)
    assert.matches("uvws.spawn", tostring(err), 1, true)
  end)

  it("ws:close outside a coroutine starts closing and returns at once (README)", function()
    local ws, c = in_process_ws()
    local ok, res = pcall(ws.close, ws, 1000)
    assert.is_true(ok, "ws:close() outside a coroutine raised " .. tostring(res))
    assert.is_true(res)
    -- The close frame goes out on the next loop turn.
    pump(function() return false end, 0.1)
    c:settimeout(2)
    local status = c:read_http_head()
    assert.equal(101, status)
    local f = assert(c:read_frame())
    assert.equal(8, f.opcode)
    assert.equal(1000, string.unpack(">I2", f.payload))
  end)

  it("uvws.spawn runs a waiting call in a coroutine at once, until its first wait", function()
    local steps = {}
    uvws.spawn(function()
      steps[#steps + 1] = "started"
      uvws.sleep(0.02)
      steps[#steps + 1] = "woke"
    end)
    assert.same({ "started" }, steps)
    assert.is_true(pump(function() return #steps == 2 end, 2))
  end)
end)

---------------------------------------------------------------------------
-- Timeouts
---------------------------------------------------------------------------

describe("timeouts:", function()
  after_each(run_deferred)

  it("handshake_timeout disconnects a client that sends half a head", function()
    local srv = start { "handshake_timeout=0.3" }
    defer(srv.stop)
    local c = assert(h.raw(srv.port))
    defer(function() c:close() end)
    local t0 = h.now()
    assert(c:send("GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: web"))
    local closed = c:is_closed(1.5)
    local took = h.now() - t0
    assert.is_true(closed, "still connected after 1.5 s")
    assert.is_true(took >= 0.25, "closed after " .. took .. " s, before the timeout")
  end)

  it("idle_timeout closes a silent connection with 1001", function()
    local srv = start { "idle_timeout=0.3" }
    defer(srv.stop)
    local c = connect(srv.port, "/echo")
    defer(function() c:close() end)
    local t0 = h.now()
    local code = c:expect_close(1.5)
    local took = h.now() - t0
    assert.equal(1001, code)
    assert.is_true(took >= 0.2, "closed after " .. took .. " s")
  end)

  describe("ping_interval = 0.2, pong_timeout = 0.2", function()
    local srv
    setup(function() srv = start { "ping_interval=0.2", "pong_timeout=0.2" } end)
    teardown(function() if srv then srv.stop() end end)

    it("pings a client that never answers, then drops the TCP connection", function()
      local c = connect(srv.port, "/echo")
      defer(function() c:close() end)
      local f, err = c:read_frame(1)
      assert(f, "no ping within 1 s: " .. tostring(err))
      assert.equal(9, f.opcode)
      local t0 = h.now()
      local closed = c:is_closed(1.5)
      assert.is_true(closed, "still connected " .. (h.now() - t0) .. " s after the ping")
    end)

    it("keeps a client that answers pings (Python websockets) past 1 s", function()
      if not HAVE_PYTHON then pending("python3 websockets not importable") return end
      local res = python("keepalive", "ws://127.0.0.1:" .. srv.port .. "/echo")
      assert.is_true(res.ok, json.encode(res))
      assert.is_true(res.after >= 1.2)
    end)
  end)

  it("close_timeout: ws:close() to a peer that never answers drops TCP and returns", function()
    local srv = start { "close_timeout=0.3" }
    defer(srv.stop)
    local c = connect(srv.port, "/close4001")
    defer(function() c:close() end)
    local code, reason = c:expect_close(2)
    assert.equal(4001, code)
    assert.equal("bye", reason)
    local t0 = h.now()
    assert.is_true(c:is_closed(1.5), "TCP still open 1.5 s after the close frame")
    assert.is_true(h.now() - t0 >= 0.15)
    local r, took = wait_log(srv, "CLOSE_RETURNED (%S+) ([%d.]+) ")
    assert.equal("true", r, srv.stdout())
    assert.is_true(tonumber(took) >= 0.25 and tonumber(took) < 1.5, "close took " .. took)
  end)
end)

---------------------------------------------------------------------------
-- server:close()
---------------------------------------------------------------------------

describe("server:close()", function()
  after_each(run_deferred)

  it("sends close 1001 to every open connection and uvws.run() returns", function()
    local srv = start()
    defer(srv.stop)
    local a = connect(srv.port, "/echo")
    defer(function() a:close() end)
    local b = connect(srv.port, "/shutdown")
    defer(function() b:close() end)
    local ca = a:expect_close(2)
    local cb = b:expect_close(2)
    assert.equal(1001, ca)
    assert.equal(1001, cb)
    a:send(h.close(1001))
    b:send(h.close(1001))
    assert.equal("2", wait_log(srv, "SHUTDOWN (%d+)\n"), srv.stdout())
    assert.truthy(wait_log(srv, "(RUN_RETURNED)", 3), "uvws.run() did not return:\n" .. srv.stdout())
    local deadline = h.now() + 3
    while h.alive(srv.pid) and h.now() < deadline do h.sleep(0.02) end
    assert.is_false(h.alive(srv.pid), "server process still running")
    -- no longer listening
    local s = socket.tcp()
    s:settimeout(1)
    local ok = s:connect("127.0.0.1", srv.port)
    s:close()
    assert.falsy(ok)
  end)
end)
