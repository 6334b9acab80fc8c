-- RFC 6455 conformance over a raw socket, case areas numbered like the
-- Autobahn testsuite's server cases.  Each spec writes exact bytes to
-- examples/echo_server.lua (or a small custom server) and checks the exact
-- reply.

local h = require "spec.helper"

local frame, text, binary, cont, ping, pong, close =
  h.frame, h.text, h.binary, h.cont, h.ping, h.pong, h.close

-- Bytes 0..255 repeated to length n.
local function bytes(n)
  local t = {}
  for i = 1, n do t[i] = string.char((i - 1) % 256) end
  return table.concat(t)
end

local function len_bits(n)
  return n < 126 and 7 or n < 65536 and 16 or 64
end

describe("conformance:", function()
  local srv
  local conns = {}

  setup(function()
    srv = h.start_server()
  end)

  teardown(function()
    h.stop_all()
  end)

  after_each(function()
    for _, c in ipairs(conns) do c:close() end
    conns = {}
  end)

  local function connect(port)
    local c = h.connect(port or srv.port)
    conns[#conns + 1] = c
    return c
  end

  local function raw(port)
    local c = assert(h.raw(port or srv.port))
    conns[#conns + 1] = c
    return c
  end

  -- Reads one frame and checks it is an unmasked, final, RSV-0 frame with
  -- this opcode and payload.
  local function expect_frame(c, opcode, payload)
    local f, err = c:read_frame()
    assert.is_table(f, "no frame: " .. tostring(err))
    assert.equal(opcode, f.opcode)
    assert.is_true(f.fin)
    assert.equal(0, f.rsv)
    assert.is_false(f.masked)
    if payload ~= nil then
      assert.equal(#payload, #f.payload)
      assert.is_true(payload == f.payload, "payload differs")
    end
    return f
  end

  -- Expects a Close frame with `code` (after any frames listed in
  -- `before`, as {opcode, payload} pairs) and then the end of the TCP
  -- connection.
  local function expect_fail(c, code, before)
    local got, reason, f, seen = c:expect_close()
    assert.is_table(f, "no close frame: " .. tostring(reason))
    before = before or {}
    assert.equal(#before, #seen, "frames before the close")
    for i, b in ipairs(before) do
      assert.equal(b[1], seen[i].opcode)
      assert.equal(b[2], seen[i].payload)
    end
    assert.equal(code, got)
    assert.is_false(f.masked)
    c:assert_closed()
    return reason
  end

  local function expect_clean_close(c)
    c:send(close(1000))
    local code, _, f = c:expect_close()
    assert.is_table(f, "no close reply")
    assert.equal(1000, code)
    c:assert_closed()
  end

  -------------------------------------------------------------------------
  describe("handshake", function()
    it("answers the RFC 6455 section 1.3 example with 101 and its accept key", function()
      local c = raw()
      c:send("GET /chat HTTP/1.1\r\n" ..
             "Host: server.example.com\r\n" ..
             "Upgrade: websocket\r\n" ..
             "Connection: Upgrade\r\n" ..
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" ..
             "Origin: http://example.com\r\n" ..
             "Sec-WebSocket-Protocol: chat, superchat\r\n" ..
             "Sec-WebSocket-Version: 13\r\n\r\n")
      local status, hd, head = c:read_http_head()
      assert.equal(101, status, head)
      assert.equal(h.SAMPLE_ACCEPT, hd["sec-websocket-accept"])
      assert.equal("websocket", hd["upgrade"]:lower())
      assert.truthy(hd["connection"]:lower():find("upgrade", 1, true))
      -- The echo server picks no subprotocol, so it must not name one.
      assert.is_nil(hd["sec-websocket-protocol"])
      -- No extension was offered, none may be returned.
      assert.is_nil(hd["sec-websocket-extensions"])
      c:send(text("after handshake"))
      expect_frame(c, 1, "after handshake")
    end)

    it("declines a permessage-deflate offer, or accepts it with valid parameters", function()
      local c = raw()
      local ok, hd = c:handshake("/", {
        ["Sec-WebSocket-Extensions"] = "permessage-deflate; client_max_window_bits",
      })
      assert.is_true(ok, tostring(hd))
      local ext = hd["sec-websocket-extensions"]
      c:send(text("plain"))
      local f = assert(c:read_frame())
      assert.equal(1, f.opcode)
      if ext == nil then
        assert.equal(0, f.rsv)
        assert.equal("plain", f.payload)
      else
        -- One permessage-deflate answer with only the RFC 7692 parameters.
        assert.truthy(ext:match("^permessage%-deflate"), ext)
        assert.is_nil(ext:find(",", 1, true), ext)
        for param in ext:gmatch(";%s*([^;]+)") do
          local name = param:match("^([%w_]+)")
          assert.truthy(name == "server_no_context_takeover" or
                        name == "client_no_context_takeover" or
                        name == "server_max_window_bits" or
                        name == "client_max_window_bits", param)
        end
        assert.is_true(f.rsv == 0 or f.rsv == 4)
      end
    end)

    local function expect_status(extra, want, path)
      local c = raw()
      local ok, err, status, hd, head = c:handshake(path, extra)
      assert.is_nil(ok, "handshake unexpectedly succeeded")
      assert.equal(want, status, tostring(err) .. "\n" .. tostring(head))
      return hd, c
    end

    it("rejects a request without Upgrade with 400", function()
      expect_status({ Upgrade = false }, 400)
    end)

    it("rejects a request without Connection: Upgrade with 400", function()
      expect_status({ Connection = false }, 400)
    end)

    it("rejects a request whose Connection lacks the upgrade token with 400", function()
      expect_status({ Connection = "keep-alive" }, 400)
    end)

    it("rejects a request without Sec-WebSocket-Key with 400", function()
      expect_status({ ["Sec-WebSocket-Key"] = false }, 400)
    end)

    it("rejects a Sec-WebSocket-Key that is not 16 bytes of base64 with 400", function()
      expect_status({ ["Sec-WebSocket-Key"] = "dGVzdA==" }, 400)
    end)

    it("rejects a request without Host with 400", function()
      expect_status({ Host = false }, 400)
    end)

    it("answers Sec-WebSocket-Version: 8 with 426 and Sec-WebSocket-Version: 13", function()
      local hd = expect_status({ ["Sec-WebSocket-Version"] = "8" }, 426)
      assert.equal("13", hd["sec-websocket-version"])
    end)

    it("answers an upgrade by POST with 405", function()
      local c = raw()
      local req = h.request(srv.port, "/", {}, h.SAMPLE_KEY):gsub("^GET", "POST")
      c:send(req)
      local status, _, head = c:read_http_head()
      assert.equal(405, status, head)
    end)

    it("answers a 10 KiB header with 431", function()
      local c = raw()
      local req = h.request(srv.port, "/", { ["X-Big"] = string.rep("a", 10240) },
                            h.SAMPLE_KEY)
      c:send(req)
      local status, _, head = c:read_http_head()
      assert.equal(431, status, head)
    end)

    it("answers a plain GET with 426 and Upgrade: websocket", function()
      local c = raw()
      c:send("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
      local status, hd, head = c:read_http_head()
      assert.equal(426, status, head)
      assert.equal("websocket", (hd["upgrade"] or ""):lower())
    end)

    it("answers a request with bare LF line endings with 400", function()
      local c = raw()
      local req = h.request(srv.port, "/", {}, h.SAMPLE_KEY):gsub("\r\n", "\n")
      c:send(req)
      local status, _, head = c:read_http_head()
      assert.equal(400, status, head)
    end)

    it("accepts a request head sent one byte at a time", function()
      local c = raw()
      c:send_chunked(h.request(srv.port, "/", {}, h.SAMPLE_KEY), 1, 0.001)
      local status, hd = c:read_http_head()
      assert.equal(101, status)
      assert.equal(h.SAMPLE_ACCEPT, hd["sec-websocket-accept"])
    end)

    it("accepts mixed-case Upgrade and a Connection list (keep-alive, Upgrade)", function()
      local c = raw()
      local ok, err = c:handshake("/", { Upgrade = "WebSocket", Connection = "keep-alive, Upgrade" })
      assert.is_true(ok, tostring(err))
      c:send(text("firefox style"))
      expect_frame(c, 1, "firefox style")
    end)

    it("processes a frame sent in the same write as the request head", function()
      local c = raw()
      local key = h.b64(h.random_bytes(16))
      c:send(h.request(srv.port, "/", {}, key) .. text("pipelined") .. ping("too"))
      local status, hd = c:read_http_head()
      assert.equal(101, status)
      assert.equal(h.accept(key), hd["sec-websocket-accept"])
      local got = {}
      for _ = 1, 2 do
        local f = assert(c:read_frame())
        got[f.opcode] = f.payload
      end
      assert.same({ [1] = "pipelined", [10] = "too" }, got)
    end)

    it("rejects two Sec-WebSocket-Key headers with 400", function()
      expect_status({ "Sec-WebSocket-Key: " .. h.SAMPLE_KEY }, 400)
    end)

    it("refuses an HTTP/1.0 upgrade request", function()
      local c = raw()
      local req = h.request(srv.port, "/", {}, h.SAMPLE_KEY):gsub("HTTP/1%.1", "HTTP/1.0", 1)
      c:send(req)
      local status, _, head = c:read_http_head()
      assert.is_number(status, tostring(head))
      assert.is_true(status >= 400 and status < 600, head)
    end)

    it("answers a request with 101 header fields with 431", function()
      local extra = {}
      for i = 1, 101 do extra[i] = "X-H" .. i .. ": v" end
      local _, c = expect_status(extra, 431)
      assert.is_table(c)
    end)

    describe("with on_upgrade", function()
      local up

      setup(function()
        up = h.start_server(nil, nil, h.server_source([[
          on_upgrade = function(req)
            if req.path == "/deny" or (req.target or ""):match("^/deny") then
              return uvws.reject(403, "go away", { ["X-Why"] = "test" })
            end
            return { protocol = "superchat", headers = { ["X-Hello"] = "world" } }
          end,]]))
      end)

      teardown(function()
        if up then up.stop() end
      end)

      it("answers with the subprotocol and headers it chose", function()
        local c = raw(up.port)
        local ok, hd = c:handshake("/", { ["Sec-WebSocket-Protocol"] = "chat, superchat" })
        assert.is_true(ok, tostring(hd))
        assert.equal("superchat", hd["sec-websocket-protocol"])
        assert.equal("world", hd["x-hello"])
        c:send(text("with protocol"))
        expect_frame(c, 1, "with protocol")
      end)

      it("sends the status, body and headers of uvws.reject", function()
        local c = raw(up.port)
        c:send(h.request(up.port, "/deny", {}, h.SAMPLE_KEY))
        local status, hd, head, body = c:read_http_head()
        assert.equal(403, status, head)
        assert.equal("test", hd["x-why"])
        assert.truthy((body or ""):find("go away", 1, true), head)
      end)
    end)

    it("closes the connection when the client sends an unmasked frame (1002)", function()
      local c = connect()
      c:send(frame{ opcode = 1, payload = "unmasked", mask = false })
      expect_fail(c, 1002)
    end)

    it("closes a connection whose head does not arrive within handshake_timeout", function()
      local s = h.start_server(nil, nil, h.server_source("handshake_timeout = 0.5,"))
      finally(s.stop)
      local c = raw(s.port)
      local t0 = h.now()
      c:send("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: webs")
      assert.is_true((c:is_closed(3)), "connection still open")
      local dt = h.now() - t0
      assert.is_true(dt >= 0.3 and dt <= 2.0, "closed after " .. dt .. " s")
      assert.is_true(h.echo_works(s.port))
    end)
  end)

  -------------------------------------------------------------------------
  describe("1.x framing", function()
    for _, n in ipairs{ 0, 125, 126, 127, 128, 65535, 65536 } do
      it(("echoes a %d-byte text message with a %d-bit length"):format(n, len_bits(n)), function()
        local c = connect()
        local p = string.rep("*", n)
        c:send(text(p))
        local f = expect_frame(c, 1, p)
        assert.equal(len_bits(n), f.len_bits)
      end)

      it(("echoes a %d-byte binary message with a %d-bit length"):format(n, len_bits(n)), function()
        local c = connect()
        local p = bytes(n)
        c:send(binary(p))
        local f = expect_frame(c, 2, p)
        assert.equal(len_bits(n), f.len_bits)
      end)
    end

    for _, n in ipairs{ 0, 125, 126 } do
      it(("echoes a %d-byte text message sent byte by byte"):format(n), function()
        local c = connect()
        local p = string.rep("*", n)
        c:send_chunked(text(p), 1, 0.0005)
        expect_frame(c, 1, p)
      end)
    end

    it("echoes a 65536-byte text message sent in chunks of 997 bytes", function()
      local c = connect()
      local p = string.rep("*", 65536)
      c:send_chunked(text(p), 997, 0.001)
      expect_frame(c, 1, p)
    end)

    it("echoes a 65536-byte binary message sent in chunks of 997 bytes", function()
      local c = connect()
      local p = bytes(65536)
      c:send_chunked(binary(p), 997, 0.001)
      expect_frame(c, 2, p)
    end)

    it("accepts a small payload with a needlessly long 16-bit length", function()
      -- RFC 6455 5.2 asks for the minimal length encoding, but servers are
      -- expected to accept others; a 3-byte payload coded on 16 bits.
      local c = connect()
      local key = "\1\2\3\4"
      c:send("\x81\xfe\0\3" .. key .. h.mask("abc", key))
      local f, err = c:read_frame()
      assert.is_table(f, err)
      if f.opcode == 8 then
        -- Failing the connection with 1002 is also acceptable.
        assert.equal(1002, string.unpack(">I2", f.payload))
      else
        assert.equal("abc", f.payload)
      end
    end)

    it("rejects a 64-bit length with the most significant bit set (1002)", function()
      local c = connect()
      c:send("\x82\xff" .. string.pack(">I8", 0x8000000000000000) .. "\1\2\3\4")
      local code, _, f = c:expect_close()
      assert.is_table(f, "no close frame")
      assert.truthy(code == 1002 or code == 1009, "code " .. tostring(code))
      c:assert_closed()
    end)
  end)

  -------------------------------------------------------------------------
  describe("2.x pings and pongs", function()
    it("answers an empty ping with an empty pong", function()
      local c = connect()
      c:send(ping(""))
      expect_frame(c, 10, "")
    end)

    it("answers a 125-byte text ping with an identical pong", function()
      local c = connect()
      local p = string.rep("P", 125)
      c:send(ping(p))
      expect_frame(c, 10, p)
    end)

    it("answers a binary ping with an identical pong", function()
      local c = connect()
      local p = "\0\255\254\253\252\251\250\249"
      c:send(ping(p))
      expect_frame(c, 10, p)
    end)

    it("answers a 125-byte ping sent byte by byte", function()
      local c = connect()
      local p = bytes(125)
      c:send_chunked(ping(p), 1, 0.0005)
      expect_frame(c, 10, p)
    end)

    it("fails a 126-byte ping with 1002", function()
      local c = connect()
      c:send(ping(string.rep("P", 126)))
      expect_fail(c, 1002)
    end)

    it("ignores an unsolicited empty pong, then still echoes", function()
      local c = connect()
      c:send(pong("") .. text("after pong"))
      expect_frame(c, 1, "after pong")
    end)

    it("ignores an unsolicited pong with payload, then answers a ping", function()
      local c = connect()
      c:send(pong("unsolicited") .. ping("solicited"))
      expect_frame(c, 10, "solicited")
    end)

    it("answers 10 pings in a row with 10 pongs in order", function()
      local c = connect()
      local all = {}
      for i = 1, 10 do all[i] = ping("ping " .. i) end
      c:send(table.concat(all))
      for i = 1, 10 do expect_frame(c, 10, "ping " .. i) end
    end)

    it("answers 10 pings sent frame by frame", function()
      local c = connect()
      for i = 1, 10 do
        c:send(ping("p" .. i))
        h.sleep(0.002)
      end
      for i = 1, 10 do expect_frame(c, 10, "p" .. i) end
    end)
  end)

  -------------------------------------------------------------------------
  describe("3.x reserved bits", function()
    for rsv = 1, 7 do
      it(("fails a text frame with RSV=%d (1002)"):format(rsv), function()
        local c = connect()
        c:send(frame{ opcode = 1, rsv = rsv, payload = "Hello" })
        expect_fail(c, 1002)
      end)
    end

    it("fails a binary frame with RSV=5 (1002)", function()
      local c = connect()
      c:send(frame{ opcode = 2, rsv = 5, payload = bytes(10) })
      expect_fail(c, 1002)
    end)

    it("fails a ping with RSV=6 and sends no pong (1002)", function()
      local c = connect()
      c:send(frame{ opcode = 9, rsv = 6, payload = "ping" })
      expect_fail(c, 1002)
    end)

    it("fails a close with RSV=7 (1002)", function()
      local c = connect()
      c:send(frame{ opcode = 8, rsv = 7, payload = h.close_payload(1000) })
      expect_fail(c, 1002)
    end)

    it("echoes a valid message, then fails a RSV=2 text frame; no pong for a later ping", function()
      local c = connect()
      c:send(text("Hello") .. frame{ opcode = 1, rsv = 2, payload = "Hello" } .. ping(""))
      expect_fail(c, 1002, { { 1, "Hello" } })
    end)

    it("same, with each frame in its own write", function()
      local c = connect()
      c:send(text("Hello")); h.sleep(0.01)
      c:send(frame{ opcode = 1, rsv = 3, payload = "Hello" }); h.sleep(0.01)
      c:send(ping(""))
      expect_fail(c, 1002, { { 1, "Hello" } })
    end)

    it("fails RSV=4 in a continuation frame (1002)", function()
      local c = connect()
      c:send(text("frag1", false) .. frame{ opcode = 0, rsv = 4, payload = "frag2" })
      expect_fail(c, 1002)
    end)
  end)

  -------------------------------------------------------------------------
  describe("4.x opcodes", function()
    for _, op in ipairs{ 3, 4, 5, 6, 7 } do
      it(("fails reserved non-control opcode %d (1002)"):format(op), function()
        local c = connect()
        c:send(frame{ opcode = op, payload = "" })
        expect_fail(c, 1002)
      end)

      it(("echoes a message, then fails opcode %d with payload; no pong after"):format(op), function()
        local c = connect()
        c:send(text("Hello") .. frame{ opcode = op, payload = "reserved" } .. ping(""))
        expect_fail(c, 1002, { { 1, "Hello" } })
      end)
    end

    for _, op in ipairs{ 11, 12, 13, 14, 15 } do
      it(("fails reserved control opcode %d (1002)"):format(op), function()
        local c = connect()
        c:send(frame{ opcode = op, payload = "" })
        expect_fail(c, 1002)
      end)

      it(("echoes a message, then fails opcode %d with payload; no pong after"):format(op), function()
        local c = connect()
        c:send(text("Hello") .. frame{ opcode = op, payload = "reserved" } .. ping(""))
        expect_fail(c, 1002, { { 1, "Hello" } })
      end)
    end
  end)

  -------------------------------------------------------------------------
  describe("5.x fragmentation", function()
    it("fails a fragmented ping (FIN=0 control frame, 1002)", function()
      local c = connect()
      c:send(frame{ opcode = 9, fin = false, payload = "frag1" } .. cont("frag2"))
      expect_fail(c, 1002)
    end)

    it("fails a fragmented pong (1002)", function()
      local c = connect()
      c:send(frame{ opcode = 10, fin = false, payload = "frag1" } .. cont("frag2"))
      expect_fail(c, 1002)
    end)

    it("fails a fragmented close (1002)", function()
      local c = connect()
      c:send(frame{ opcode = 8, fin = false, payload = h.close_payload(1000) })
      expect_fail(c, 1002)
    end)

    it("echoes a text message in 2 fragments as one message", function()
      local c = connect()
      c:send(text("fragment1", false) .. cont("fragment2"))
      expect_frame(c, 1, "fragment1fragment2")
    end)

    it("echoes a binary message in 2 fragments sent in separate writes", function()
      local c = connect()
      c:send(binary("\0\1\2", false)); h.sleep(0.01)
      c:send(cont("\3\4\5"))
      expect_frame(c, 2, "\0\1\2\3\4\5")
    end)

    it("echoes a text message in many 1-byte fragments", function()
      local c = connect()
      local msg = "Hello, fragmented world!"
      local parts = { text(msg:sub(1, 1), false) }
      for i = 2, #msg do parts[#parts + 1] = cont(msg:sub(i, i), i == #msg) end
      c:send(table.concat(parts))
      expect_frame(c, 1, msg)
    end)

    it("echoes a message of 1-byte fragments sent byte by byte", function()
      local c = connect()
      local msg = "abcdef"
      local parts = { text("a", false) }
      for i = 2, #msg do parts[#parts + 1] = cont(msg:sub(i, i), i == #msg) end
      c:send_chunked(table.concat(parts), 1, 0.0005)
      expect_frame(c, 1, msg)
    end)

    it("answers a ping between fragments before echoing the message", function()
      local c = connect()
      c:send(text("fragment1", false) .. ping("pongme!") .. cont("fragment2"))
      expect_frame(c, 10, "pongme!")
      expect_frame(c, 1, "fragment1fragment2")
    end)

    it("same, sent byte by byte", function()
      local c = connect()
      c:send_chunked(text("frag1", false) .. ping("pongme!") .. cont("frag2"), 1, 0.0005)
      expect_frame(c, 10, "pongme!")
      expect_frame(c, 1, "frag1frag2")
    end)

    it("answers several pings between fragments, each with a pause", function()
      local c = connect()
      local msg = {}
      for i = 1, 5 do
        c:send(i == 1 and text("f" .. i, false) or cont("f" .. i, false))
        c:send(ping("p" .. i))
        expect_frame(c, 10, "p" .. i)
        msg[#msg + 1] = "f" .. i
      end
      c:send(cont("end"))
      expect_frame(c, 1, table.concat(msg) .. "end")
    end)

    it("ignores a pong between fragments", function()
      local c = connect()
      c:send(text("fragment1", false) .. pong("unsolicited") .. cont("fragment2"))
      expect_frame(c, 1, "fragment1fragment2")
    end)

    it("fails a continuation frame without a message in progress (1002)", function()
      local c = connect()
      c:send(cont("non-continuation payload") .. text("Hello, world!"))
      expect_fail(c, 1002)
    end)

    it("fails a non-final continuation frame without a message in progress (1002)", function()
      local c = connect()
      c:send(cont("frag1", false) .. text("frag2", false) .. cont("frag3"))
      expect_fail(c, 1002)
    end)

    it("fails a continuation after a completed fragmented message (1002)", function()
      local c = connect()
      c:send(text("frag1", false) .. cont("frag2") .. cont("frag3", false) .. cont("frag4"))
      expect_fail(c, 1002, { { 1, "frag1frag2" } })
    end)

    it("fails a new text frame while a fragmented message is in progress (1002)", function()
      local c = connect()
      c:send(text("frag1", false) .. text("frag2"))
      expect_fail(c, 1002)
    end)

    it("fails a new binary start frame while a text message is in progress (1002)", function()
      local c = connect()
      c:send(text("frag1", false) .. binary("frag2", false) .. cont("frag3"))
      expect_fail(c, 1002)
    end)

    it("echoes a message made of empty fragments as an empty message", function()
      local c = connect()
      c:send(text("", false) .. cont("", false) .. cont(""))
      expect_frame(c, 1, "")
    end)

    it("echoes a message with empty first and last fragments", function()
      local c = connect()
      c:send(binary("", false) .. cont("middle", false) .. cont(""))
      expect_frame(c, 2, "middle")
    end)
  end)

  -------------------------------------------------------------------------
  describe("6.x UTF-8", function()
    local valid = {
      { "Greek kosme", "κόσμε" },
      { "Autobahn mixed", "Hello-µ@ßöäüàá-UTF-8!!" },
      { "4-byte emoji", "\u{1F600} smile \u{1F4A9}" },
      { "U+0000", "\0" },
      { "U+007F", "\u{7F}" },
      { "U+0080", "\u{80}" },
      { "U+07FF", "\u{7FF}" },
      { "U+0800", "\u{800}" },
      { "U+D7FF", "\u{D7FF}" },
      { "U+E000", "\u{E000}" },
      { "U+FFFD", "\u{FFFD}" },
      { "U+FFFF", "\u{FFFF}" },
      { "U+10000", "\u{10000}" },
      { "U+10FFFF", "\u{10FFFF}" },
    }
    for _, v in ipairs(valid) do
      it("echoes valid text: " .. v[1], function()
        local c = connect()
        c:send(text(v[2]))
        expect_frame(c, 1, v[2])
      end)
    end

    it("echoes valid multibyte text split into 1-byte fragments", function()
      local c = connect()
      local msg = "κόσμε\u{1F600}"
      local parts = { text(msg:sub(1, 1), false) }
      for i = 2, #msg do parts[#parts + 1] = cont(msg:sub(i, i), i == #msg) end
      c:send(table.concat(parts))
      expect_frame(c, 1, msg)
    end)

    it("echoes valid multibyte text sent byte by byte in one frame", function()
      local c = connect()
      local msg = "κόσμε \u{10FFFF}"
      c:send_chunked(text(msg), 1, 0.0005)
      expect_frame(c, 1, msg)
    end)

    local invalid = {
      { "overlong '/' (C0 AF)", "\xC0\xAF" },
      { "overlong C1 BF", "\xC1\xBF" },
      { "overlong 3-byte (E0 80 AF)", "\xE0\x80\xAF" },
      { "overlong 4-byte (F0 80 80 AF)", "\xF0\x80\x80\xAF" },
      { "overlong U+FFFF in 4 bytes (F0 8F BF BF)", "\xF0\x8F\xBF\xBF" },
      { "surrogate U+D800", "\xED\xA0\x80" },
      { "surrogate U+DFFF", "\xED\xBF\xBF" },
      { "surrogate pair", "\xED\xA0\x80\xED\xB0\x80" },
      { "U+110000 (F4 90 80 80)", "\xF4\x90\x80\x80" },
      { "F5 lead byte", "\xF5\x80\x80\x80" },
      { "5-byte sequence", "\xF8\x88\x80\x80\x80" },
      { "FE byte", "\xFE" },
      { "FF byte", "\xFF" },
      { "stray continuation", "a\x80b" },
      { "stray continuation after valid text", "κόσμε\xBF" },
      { "lead byte followed by ASCII", "\xCEa" },
      { "truncated 2-byte at end", "κόσμε\xCE" },
      { "truncated 3-byte at end", "abc\xE2\x82" },
      { "truncated 4-byte at end", "\xF0\x9F\x98" },
      { "Autobahn 6.3.1 sample", "\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5\xED\xA0\x80\x65\x64\x69\x74\x65\x64" },
    }
    for _, v in ipairs(invalid) do
      it("fails invalid text with 1007: " .. v[1], function()
        local c = connect()
        c:send(text(v[2]))
        expect_fail(c, 1007)
      end)
    end

    it("fails a surrogate split across two fragments (1007)", function()
      local c = connect()
      c:send(text("κόσμε\xED", false) .. cont("\xA0\x80edited"))
      expect_fail(c, 1007)
    end)

    it("fails a fragmented message that ends in a truncated sequence (1007)", function()
      local c = connect()
      c:send(text("abc", false) .. cont("def\xCE"))
      expect_fail(c, 1007)
    end)

    it("fails invalid text sent byte by byte (1007)", function()
      local c = connect()
      c:send_chunked(text("ab\xED\xA0\x80cd"), 1, 0.0005)
      expect_fail(c, 1007)
    end)

    it("fails fast: 1007 after a first fragment with an invalid byte, before the rest", function()
      local c = connect()
      c:send(text("Hello \xC0\xAF world", false))
      -- The remaining fragments are never sent.
      expect_fail(c, 1007)
    end)

    it("fails fast: 1007 after 10 bytes of an announced 1000-byte frame", function()
      local c = connect()
      local payload = "valid\xFFdata" .. string.rep("x", 990)
      assert.equal(1000, #payload)
      local whole = text(payload)
      -- 2 header bytes, 2 length bytes, 4 key bytes, then 10 payload bytes.
      c:send(whole:sub(1, 8 + 10))
      expect_fail(c, 1007)
    end)

    it("fails fast: 1007 in the first bytes of a continuation frame", function()
      local c = connect()
      c:send(text("abc", false))
      h.sleep(0.02)
      local whole = cont("ok\xED\xA0\x80" .. string.rep("y", 995))
      c:send(whole:sub(1, 8 + 10))
      expect_fail(c, 1007)
    end)

    it("does not fail a partial frame whose bytes so far are a valid prefix", function()
      local c = connect()
      local payload = "κόσμε" .. string.rep("x", 1000)
      local whole = text(payload)
      c:send(whole:sub(1, 8 + 2))          -- "κ" ends here...
      h.sleep(0.05)
      c:send(whole:sub(8 + 3, 8 + 3))      -- ...this is the second byte of "ό"
      h.sleep(0.05)
      c:send(whole:sub(8 + 4))
      expect_frame(c, 1, payload)
    end)
  end)

  -------------------------------------------------------------------------
  describe("7.x close", function()
    it("answers a close without payload and closes TCP", function()
      local c = connect()
      c:send(close())
      local code, _, f = c:expect_close()
      assert.is_table(f, "no close reply")
      assert.truthy(code == nil or code == 1000, "code " .. tostring(code))
      assert.is_false(f.masked)
      c:assert_closed()
    end)

    it("echoes close code 1000 with a reason", function()
      local c = connect()
      c:send(close(1000, "Normal close, with a reason"))
      local code, _, f = c:expect_close()
      assert.is_table(f, "no close reply")
      assert.equal(1000, code)
      c:assert_closed()
    end)

    it("echoes the prior message before the close reply", function()
      local c = connect()
      c:send(text("Hello World!") .. close(1000))
      local code, _, _, before = c:expect_close()
      assert.equal(1000, code)
      assert.equal(1, #before)
      assert.equal("Hello World!", before[1].payload)
      c:assert_closed()
    end)

    it("ignores a text frame and a ping after the close", function()
      local c = connect()
      c:send(close(1000) .. text("after close") .. ping("after close"))
      local code, _, f, before = c:expect_close()
      assert.is_table(f)
      assert.equal(1000, code)
      assert.equal(0, #before)
      assert.equal("", c:assert_closed())
    end)

    it("ignores a second close frame", function()
      local c = connect()
      c:send(close(1000) .. close(1001))
      local code = c:expect_close()
      assert.equal(1000, code)
      assert.equal("", c:assert_closed())
    end)

    it("answers a close frame sent byte by byte", function()
      local c = connect()
      c:send_chunked(close(1001, "going"), 1, 0.001)
      assert.equal(1001, (c:expect_close()))
      c:assert_closed()
    end)

    it("answers a close that arrives between fragments; the message is dropped", function()
      local c = connect()
      c:send(text("frag1", false) .. close(1000))
      local code, _, f, before = c:expect_close()
      assert.is_table(f, "no close reply")
      assert.equal(1000, code)
      assert.equal(0, #before)
      c:assert_closed()
    end)

    for _, code in ipairs{ 1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011,
                           1012, 1013, 1014, 3000, 3999, 4000, 4999 } do
      it(("echoes valid close code %d"):format(code), function()
        local c = connect()
        c:send(close(code))
        local got, _, f = c:expect_close()
        assert.is_table(f, "no close reply")
        assert.equal(code, got)
        c:assert_closed()
      end)
    end

    for _, code in ipairs{ 0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000,
                           2999, 5000, 65535 } do
      it(("fails invalid close code %d with 1002"):format(code), function()
        local c = connect()
        c:send(close(code))
        expect_fail(c, 1002)
      end)
    end

    it("fails a close with a 1-byte payload (1002)", function()
      local c = connect()
      c:send(frame{ opcode = 8, payload = "\3" })
      expect_fail(c, 1002)
    end)

    it("fails a close reason that is not valid UTF-8 (1007)", function()
      local c = connect()
      c:send(close(1000, "\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5\xED\xA0\x80\x65\x64\x69\x74\x65\x64"))
      expect_fail(c, 1007)
    end)

    it("accepts a 125-byte close payload (code and 123-byte reason)", function()
      local c = connect()
      c:send(close(1000, string.rep("*", 123)))
      local code, _, f = c:expect_close()
      assert.is_table(f)
      assert.equal(1000, code)
      c:assert_closed()
    end)

    it("fails a 126-byte close payload (1002)", function()
      local c = connect()
      c:send(close(1000, string.rep("*", 124)))
      expect_fail(c, 1002)
    end)
  end)

  -------------------------------------------------------------------------
  describe("9.x larger messages", function()
    local MiB = 1 << 20

    it("echoes a 1 MiB text message in one frame", function()
      local c = connect()
      local p = string.rep("0123456789abcdef", MiB // 16)
      c:send(text(p))
      local f = expect_frame(c, 1, p)
      assert.equal(64, f.len_bits)
    end)

    it("echoes a 1 MiB binary message in one frame", function()
      local c = connect()
      local p = bytes(MiB)
      c:send(binary(p))
      expect_frame(c, 2, p)
    end)

    it("echoes a 1 MiB text message in 64 KiB fragments", function()
      local c = connect()
      local p = string.rep("κόσμε!", MiB // 11) -- 11 bytes each
      local parts, n = {}, 65536
      for i = 1, #p, n do
        local piece = p:sub(i, i + n - 1)
        parts[#parts + 1] = frame{ opcode = i == 1 and 1 or 0, payload = piece,
                                   fin = i + n > #p }
      end
      c:send(table.concat(parts))
      expect_frame(c, 1, p)
    end)

    it("echoes a 1 MiB binary message in 64 KiB fragments", function()
      local c = connect()
      local p = bytes(MiB)
      local parts, n = {}, 65536
      for i = 1, #p, n do
        parts[#parts + 1] = frame{ opcode = i == 1 and 2 or 0,
                                   payload = p:sub(i, i + n - 1), fin = i + n > #p }
      end
      c:send(table.concat(parts))
      expect_frame(c, 2, p)
    end)

    it("echoes 1000 small frames sent in one write, in order", function()
      local c = connect()
      local parts = {}
      for i = 1, 1000 do
        parts[i] = i % 2 == 0 and text("msg " .. i) or binary("bin " .. i)
      end
      c:send(table.concat(parts))
      for i = 1, 1000 do
        if i % 2 == 0 then expect_frame(c, 1, "msg " .. i)
        else expect_frame(c, 2, "bin " .. i) end
      end
    end)

    it("fails a frame announcing 16 MiB + 1 bytes with 1009 before its payload", function()
      local c = connect()
      local key = "\0\0\0\0"
      c:send(string.pack(">BBI8", 0x82, 0xff, 16 * MiB + 1) .. key)
      expect_fail(c, 1009)
    end)

    describe("with max_message_size = 1024", function()
      local small

      setup(function()
        small = h.start_server(nil, nil, h.server_source(
          "max_message_size = 1024, close_timeout = 1,"))
      end)

      teardown(function()
        if small then small.stop() end
      end)

      it("echoes a 1024-byte message", function()
        local c = connect(small.port)
        local p = string.rep("a", 1024)
        c:send(text(p))
        expect_frame(c, 1, p)
      end)

      it("echoes a 1024-byte message in two fragments", function()
        local c = connect(small.port)
        c:send(binary(string.rep("a", 512), false) .. cont(string.rep("b", 512)))
        expect_frame(c, 2, string.rep("a", 512) .. string.rep("b", 512))
      end)

      it("fails a 1025-byte message with 1009", function()
        local c = connect(small.port)
        c:send(text(string.rep("a", 1025)))
        expect_fail(c, 1009)
      end)

      it("fails a 1025-byte message sent in two fragments with 1009", function()
        local c = connect(small.port)
        c:send(text(string.rep("a", 600), false) .. cont(string.rep("b", 425)))
        expect_fail(c, 1009)
      end)

      it("fails with 1009 after only the header of a 2000-byte frame", function()
        local c = connect(small.port)
        local whole = binary(string.rep("x", 2000))
        c:send(whole:sub(1, 8)) -- header, length, key; no payload
        expect_fail(c, 1009)
      end)

      it("fails with 1009 after only the header of a continuation that overflows", function()
        local c = connect(small.port)
        c:send(text(string.rep("a", 1000), false))
        h.sleep(0.02)
        local whole = cont(string.rep("b", 100))
        c:send(whole:sub(1, 6)) -- 2 header bytes, 4 key bytes
        expect_fail(c, 1009)
      end)
    end)
  end)

  -------------------------------------------------------------------------
  describe("frame size limit (max_frame_size = 100, max_message_size = 1000)", function()
    local fs

    setup(function()
      fs = h.start_server(nil, nil, h.server_source(
        "max_frame_size = 100, max_message_size = 1000, close_timeout = 1,"))
    end)

    teardown(function()
      if fs then fs.stop() end
    end)

    it("echoes a 300-byte message sent as three 100-byte fragments", function()
      local c = connect(fs.port)
      local p = string.rep("a", 100) .. string.rep("b", 100) .. string.rep("c", 100)
      c:send(text(p:sub(1, 100), false) .. cont(p:sub(101, 200), false) .. cont(p:sub(201)))
      expect_frame(c, 1, p)
    end)

    it("fails a 101-byte frame with 1009", function()
      local c = connect(fs.port)
      c:send(binary(string.rep("x", 101)))
      expect_fail(c, 1009)
    end)
  end)

  -------------------------------------------------------------------------
  describe("timers", function()
    it("sends pings every ping_interval and keeps a connection that answers", function()
      local s = h.start_server(nil, nil, h.server_source(
        "ping_interval = 0.2, pong_timeout = 0.5,"))
      finally(s.stop)
      local c = connect(s.port)
      local pings = 0
      local deadline = h.now() + 1.2
      while h.now() < deadline do
        local f, err = c:read_frame(deadline - h.now())
        if not f then
          assert.equal("timeout", err)
          break
        end
        assert.equal(9, f.opcode, "expected only pings")
        assert.is_false(f.masked)
        pings = pings + 1
        c:send(pong(f.payload))
      end
      assert.is_true(pings >= 2, "pings seen: " .. pings)
      c:send(text("still here"))
      local f
      repeat f = assert(c:read_frame()) until f.opcode ~= 9
      assert.equal(1, f.opcode)
      assert.equal("still here", f.payload)
    end)

    it("drops a connection that does not answer pings within pong_timeout", function()
      local s = h.start_server(nil, nil, h.server_source(
        "ping_interval = 0.2, pong_timeout = 0.3, close_timeout = 0.3,"))
      finally(s.stop)
      local c = connect(s.port)
      local t0 = h.now()
      local closed, _, why = c:is_closed(3)
      assert.is_true(closed or why ~= "timeout", "connection still open after 3 s")
      assert.is_true(h.now() - t0 < 2.5)
    end)

    it("closes an idle connection after idle_timeout", function()
      local s = h.start_server(nil, nil, h.server_source(
        "idle_timeout = 0.3, ping_interval = false, close_timeout = 0.3,"))
      finally(s.stop)
      local c = connect(s.port)
      -- Activity keeps it open...
      for i = 1, 5 do
        c:send(text("tick " .. i))
        expect_frame(c, 1, "tick " .. i)
        h.sleep(0.1)
      end
      -- ...silence ends it.
      local t0 = h.now()
      local closed, _, why = c:is_closed(3)
      assert.is_true(closed or why ~= "timeout", "connection still open after 3 s")
      local dt = h.now() - t0
      assert.is_true(dt >= 0.15 and dt < 2.5, "closed after " .. dt .. " s")
    end)

    it("closes TCP after close_timeout when the client never answers its close", function()
      local s = h.start_server(nil, nil, h.server_source("close_timeout = 0.5,",
        [[function(ws) ws:close(4001, "bye") end]]))
      finally(s.stop)
      local c = connect(s.port)
      local code, reason, f = c:expect_close()
      assert.is_table(f, "no close frame")
      assert.equal(4001, code)
      assert.equal("bye", reason)
      local t0 = h.now()
      c:assert_closed(3)
      assert.is_true(h.now() - t0 < 2.5)
    end)

    it("closes TCP at once when the client answers its close", function()
      local s = h.start_server(nil, nil, h.server_source("close_timeout = 5,",
        [[function(ws) ws:close(4001, "bye") end]]))
      finally(s.stop)
      local c = connect(s.port)
      assert.equal(4001, (c:expect_close()))
      c:send(close(4001))
      local t0 = h.now()
      c:assert_closed(3)
      assert.is_true(h.now() - t0 < 1, "server waited for its close_timeout")
    end)
  end)

  -------------------------------------------------------------------------
  describe("10.x", function()
    it("echoes a 64 KiB text message sent as 1300-byte fragments", function()
      local c = connect()
      local p = string.rep("abcdefghijklmnopqrstuvwxyz012345", 2048)
      assert.equal(65536, #p)
      local parts, n = {}, 1300
      for i = 1, #p, n do
        parts[#parts + 1] = frame{ opcode = i == 1 and 1 or 0,
                                   payload = p:sub(i, i + n - 1), fin = i + n > #p }
      end
      c:send(table.concat(parts))
      expect_frame(c, 1, p)
    end)
  end)

  -------------------------------------------------------------------------
  describe("clean close after a session", function()
    it("echoes, then completes the close handshake started by the client", function()
      local c = connect()
      c:send(text("one"))
      expect_frame(c, 1, "one")
      expect_clean_close(c)
    end)

    it("the echo server is still running after everything above", function()
      assert.is_true(srv.alive(), "echo server died: " .. srv.stderr())
      assert.is_true(h.echo_works(srv.port))
    end)
  end)
end)
