---------------------------------------------------------------------------
-- permessage-deflate (RFC 7692): negotiation at the wire level, compressed
-- frames over a raw socket, the decompression bomb with the server's RSS
-- measured, the threshold and the per-message opt-out, published messages,
-- the Autobahn 12.x/13.x areas (every 13.x parameter combination, payloads
-- from 16 B to 128 KiB) and interop in both directions with Python
-- websockets 10.4 and node ws 8.
--
-- Lua cannot call zlib, so compressed payloads are made and checked by
-- spec/peers/deflate/codec.py (Python's zlib), which inflates strictly: a
-- reply that refers further back than the negotiated window fails there.
-- Servers run as subprocesses; the uvws client runs in this process.
---------------------------------------------------------------------------

local h = require "spec.helper"
local json = require "dkjson"
local uvws = require "uvws"

local PEERS = "spec/peers/deflate/"

---------------------------------------------------------------------------
-- Local helpers
---------------------------------------------------------------------------

local function write_file(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

-- Runs codec.py over a list of {operation, data}; returns a list of
-- {ok = bool, data = bytes | error message}.
local function codec(ops)
  local parts = {}
  for i, o in ipairs(ops) do parts[i] = string.pack(">s2s4", o[1], o[2] or "") end
  local tmp = os.tmpname()
  write_file(tmp, table.concat(parts))
  local out = h.run(h.PYTHON .. " " .. PEERS .. "codec.py < " .. h.q(tmp), 60)
  os.remove(tmp)
  local res, pos = {}, 1
  while pos <= #out do
    local st, data
    st, data, pos = string.unpack(">Bs4", out, pos)
    res[#res + 1] = { ok = st == 0, data = data }
  end
  assert(#res == #ops, "codec.py answered " .. #res .. " of " .. #ops .. " operations")
  return res
end

local stream_id = 0
local function new_stream()
  stream_id = stream_id + 1
  return "s" .. stream_id
end

-- Compresses each message (with one compressor: context takeover, unless
-- `fresh`); returns the payloads.
local function compress(msgs, wbits, fresh)
  local id = new_stream()
  local ops = {}
  for i, m in ipairs(msgs) do
    ops[i] = { ("c %s %d"):format(fresh and new_stream() or id, wbits or 15), m }
  end
  local out = {}
  for i, r in ipairs(codec(ops)) do
    assert(r.ok, r.data)
    out[i] = r.data
  end
  return out
end

local function compress1(msg, wbits) return compress({ msg }, wbits)[1] end

-- Inflates each payload strictly with a window of `wbits` (one
-- decompressor unless `fresh`); returns a list of {ok, data}.
local function inflate(payloads, wbits, fresh)
  local id = new_stream()
  local ops = {}
  for i, p in ipairs(payloads) do
    ops[i] = { ("d %s %d"):format(fresh and new_stream() or id, wbits), p }
  end
  return codec(ops)
end

-- Random bytes from a seed (math.random is seeded per call).
local function noise(n, seed)
  math.randomseed(seed or 1)
  local t = {}
  for i = 1, n do t[i] = string.char(math.random(0, 255)) end
  return table.concat(t)
end

-- A random block of `period` bytes repeated to n bytes: compresses well,
-- but only with a window larger than the period.
local function periodic(n, period, seed)
  local block = noise(period, seed)
  return (block:rep(n // period + 1)):sub(1, n)
end

-- Text of about n bytes (at least n) made of words in a pseudo-random
-- order: compresses to about half, like prose.
local WORDS = { "permessage", "deflate", "window", "bits", "context", "takeover",
                "frame", "message", "κόσμε", "lua", "server", "client", "zlib",
                "inflate", "the", "a", "of", "to", "and", "bomb" }
local function words(n, seed)
  local x = seed or 12345
  local t, len = {}, 0
  while len < n do
    x = (x * 1103515245 + 12345) % 2147483648
    local w = WORDS[(x >> 16) % #WORDS + 1]
    if (x >> 8) % 5 == 0 then w = w .. tostring((x >> 4) % 1000) end
    t[#t + 1] = w
    len = len + #w + 1
  end
  return table.concat(t, " ")
end

-- Raw connections opened by a test, closed after it.
local conns = {}

local function track(c)
  conns[#conns + 1] = c
  return c
end

local function close_conns()
  for _, c in ipairs(conns) do pcall(c.close, c) end
  conns = {}
end

-- Handshake with `offer` as Sec-WebSocket-Extensions (a string, a list of
-- header values sent as separate headers, or nil for none).  Returns the
-- connection and the response's Sec-WebSocket-Extensions (or nil); raises
-- when the handshake fails.
local function offer(port, ext, path)
  local c = track(assert(h.raw(port)))
  local extra = {}
  if type(ext) == "table" then
    for _, v in ipairs(ext) do extra[#extra + 1] = "Sec-WebSocket-Extensions: " .. v end
  elseif ext then
    extra["Sec-WebSocket-Extensions"] = ext
  end
  local ok, hd, status, _, head = c:handshake(path or "/", extra)
  assert(ok, ("handshake failed: %s %s\n%s"):format(tostring(hd), tostring(status), tostring(head)))
  return c, hd["sec-websocket-extensions"]
end

-- The status a handshake with this offer gets.
local function offer_status(port, ext)
  local c = track(assert(h.raw(port)))
  local ok, err, status = c:handshake("/", { ["Sec-WebSocket-Extensions"] = ext })
  if ok then return 101 end
  return status, err
end

-- Reads one message (its frames until FIN; a control frame is returned
-- as it is).  Returns {opcode, rsv (of the first frame), payload, frames}.
local function read_msg(c, timeout)
  local frames = {}
  while true do
    local f, err = c:read_frame(timeout)
    assert(f, "no frame: " .. tostring(err))
    if f.opcode >= 8 then return f end
    frames[#frames + 1] = f
    if f.fin then break end
  end
  local parts = {}
  for i, f in ipairs(frames) do parts[i] = f.payload end
  return { opcode = frames[1].opcode, rsv = frames[1].rsv, payload = table.concat(parts),
           frames = frames }
end

-- Expects the server to fail the connection with `code`: a close frame
-- with that code (frames before it allowed), then the TCP close.
local function expect_fail(c, code, timeout)
  local got, reason = c:expect_close(timeout or 3)
  assert.equal(code, got, "close code (reason: " .. tostring(reason) .. ")")
  c:assert_closed(3)
end

-- Compressed data frame (masked).
local function zframe(opcode, payload, fin)
  return h.frame { opcode = opcode, rsv = 4, payload = payload, fin = fin }
end

-- VmRSS / VmHWM of a process, in bytes.
local function mem(pid)
  local s = assert(h.read_file("/proc/" .. pid .. "/status"))
  return tonumber(s:match("VmRSS:%s*(%d+)")) * 1024, tonumber(s:match("VmHWM:%s*(%d+)")) * 1024
end

-- Runs fn inside a uvws coroutine and drives the loop until it returns or
-- `limit` seconds pass; re-raises fn's error (or the timeout) here.
local run = h.run_uvws

-- Starts a foreign peer (`cmd` from the repository root) that prints
-- "listening on ws://127.0.0.1:PORT/".  Returns {port, url, stop, stdout}.
local function start_peer(cmd, timeout) return h.start_peer(cmd, timeout, "/") end

-- Waits (bounded) for a match of pattern in get(); returns it or nil.
local function wait_for(get, pattern, timeout)
  local deadline = h.now() + (timeout or 3)
  repeat
    local m = get():match(pattern)
    if m then return m end
    h.sleep(0.02)
  until h.now() > deadline
  return nil
end

local function python_ok()
  local out = h.run(h.PYTHON .. " -c 'import websockets; print(websockets.__version__)' 2>/dev/null", 10)
  if out:match("^%d") then return true end
  return nil, "python3 websockets is not importable"
end

-- Installs ws@8 into spec/peers/deflate/node_modules when missing.
local function node_ready()
  if not h.run("sh -c 'command -v node' 2>/dev/null", 5):match("node") then
    return nil, "node is not installed"
  end
  local pkg = h.root .. "/" .. PEERS .. "node_modules/ws/package.json"
  local have = h.read_file(pkg)
  if have and have:match('"version": "8%.') then return true end
  if not h.run("sh -c 'command -v npm' 2>/dev/null", 5):match("npm") then
    return nil, "npm is not installed (needed to install ws@8)"
  end
  local out, code = h.run("npm install --prefix " .. PEERS .. " --no-audit --no-fund " ..
    "--loglevel=error 2>&1", 120)
  if not h.read_file(pkg) then
    return nil, "npm install ws@8 failed (" .. tostring(code) .. "): " .. out
  end
  return true
end

local node_status
local function node_ok()
  if node_status == nil then node_status = { node_ready() } end
  return table.unpack(node_status)
end

-- Runs a peer client script; returns its JSON lines decoded.
local function run_client(cmd, secs)
  local out = h.run(cmd .. " 2>&1", secs or 60)
  local res = {}
  for line in out:gmatch("[^\n]+") do
    local obj = json.decode(line)
    assert(type(obj) == "table", "not a JSON line from " .. cmd .. ":\n" .. out)
    res[#res + 1] = obj
  end
  assert(#res > 0, "no output from " .. cmd .. ":\n" .. out)
  return res
end

-- A uvws server with a deflate table, for the threshold, opt-out,
-- on_upgrade and publish specs.  A path ending in "off" declines deflate
-- in on_upgrade; one starting with "/pub" subscribes to "news".  Text
-- commands: "info", "reply N", "nocompress N", "force N", "publish N"
-- (N "p"s), "publish-words N", "publish-noise N" (binary, random),
-- "publish-periodic N" (binary: 3000 bytes of random words, repeated);
-- anything else is echoed.
local TABLE_SERVER = h.server_source([[
  deflate = { threshold = 256, server_max_window_bits = 10, client_max_window_bits = 10,
              client_no_context_takeover = true },
  max_message_size = 4 * 1024 * 1024,
  max_inflated_size = 64 * 1024,
  on_upgrade = function(req)
    if req.path:match("off$") then return { deflate = false, data = { offered = req.deflate } } end
    return { data = { offered = req.deflate } }
  end,
]], [[function(ws)
    if ws.request.path:match("^/pub") then
      ws:subscribe("news")
      ws:send("subscribed")
    end
    for data, kind in ws:each() do
      local cmd, n = data:match("^(%a+) (%d+)$")
      n = tonumber(n)
      if data == "info" then
        ws:send(("deflate=%s offered=%s"):format(tostring(ws.deflate), tostring(ws.data.offered)))
      elseif cmd == "reply" then ws:send(string.rep("r", n))
      elseif cmd == "nocompress" then ws:send(string.rep("n", n), "text", { compress = false })
      elseif cmd == "force" then ws:send(string.rep("f", n), "text", { compress = true })
      elseif cmd == "publish" then ws.server:publish("news", string.rep("p", n))
      elseif data:match("^publish%-") then
        local what, m = data:match("^publish%-(%a+) (%d+)$")
        m = tonumber(m)
        local x, t = 7, {}
        for i = 1, m do
          x = (x * 1103515245 + 12345) % 2147483648
          t[i] = what == "periodic" and ({ "news ", "of ", "the ", "day ", "and ", "more " })[(x >> 16) % 6 + 1]
                 or string.char((x >> 16) & 255)
        end
        local rnd = table.concat(t)
        if what == "words" then
          ws.server:publish("news", string.rep("news of the day, ", m // 17 + 1):sub(1, m))
        elseif what == "noise" then ws.server:publish("news", rnd:sub(1, m), "binary")
        else ws.server:publish("news", rnd:sub(1, 3000):rep(m // 3000 + 1):sub(1, m), "binary") end
      else ws:send(data, kind) end
    end
  end]])

-- What examples/echo_server.lua --deflate answers (server windows 12/12).
local DEFAULT_ANSWER = "permessage-deflate; server_max_window_bits=12"
local DEFAULT_ANSWER_CMWB = "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"

---------------------------------------------------------------------------
-- Negotiation
---------------------------------------------------------------------------

describe("deflate negotiation:", function()
  local srv, tsrv, off

  setup(function()
    srv = h.start_server(nil, { "0", "--deflate" })
    tsrv = h.start_server(nil, nil, TABLE_SERVER)
    off = h.start_server()
  end)
  teardown(function()
    if srv then srv.stop() end
    if tsrv then tsrv.stop() end
    if off then off.stop() end
  end)
  after_each(close_conns)

  it("answers a plain offer exactly, and compresses its reply with that window", function()
    local c, ext = offer(srv.port, "permessage-deflate")
    assert.equal(DEFAULT_ANSWER, ext)
    local msg = periodic(20000, 3000, 11)
    c:send(h.binary(msg))
    local m = read_msg(c)
    assert.equal(2, m.opcode)
    assert.equal(4, m.rsv)
    assert.is_true(#m.payload < 10000, "reply of " .. #m.payload .. " bytes is not compressed")
    local r = inflate({ m.payload }, 12)[1]
    assert.is_true(r.ok, r.data)
    assert.is_true(r.data == msg)
    -- The control for the window spec below: a 4 KiB window reaches the
    -- 3000-byte period, and a strict 1 KiB inflate refuses the distance.
    local r10 = inflate({ m.payload }, 10)[1]
    assert.is_false(r10.ok, "a window-12 reply inflated with a 10-bit window")
    assert.matches("distance", r10.data)
  end)

  it("answers client_max_window_bits without a value with a value", function()
    local _, ext = offer(srv.port, "permessage-deflate; client_max_window_bits")
    assert.equal(DEFAULT_ANSWER_CMWB, ext)
    local _, ext2 = offer(srv.port, "permessage-deflate; client_max_window_bits=9")
    assert.equal("permessage-deflate; server_max_window_bits=12; client_max_window_bits=9", ext2)
  end)

  it("honours server_max_window_bits=10: the reply inflates with a 1 KiB window", function()
    local c, ext = offer(srv.port, "permessage-deflate; server_max_window_bits=10")
    assert.equal("permessage-deflate; server_max_window_bits=10", ext)
    local msgs = { periodic(20000, 3000, 12), periodic(30000, 500, 13), words(5000) }
    local payloads = {}
    for i, m in ipairs(msgs) do
      c:send(h.binary(m))
      local f = read_msg(c)
      assert.equal(4, f.rsv)
      payloads[i] = f.payload
    end
    for i, r in ipairs(inflate(payloads, 10)) do
      assert.is_true(r.ok, "message " .. i .. ": " .. tostring(r.data))
      assert.is_true(r.data == msgs[i], "message " .. i .. " differs")
    end
    -- The 500-byte period fits the window: it did compress.
    assert.is_true(#payloads[2] < 3000, #payloads[2] .. " bytes")
  end)

  it("echoes server_no_context_takeover and compresses each message alone", function()
    local c, ext = offer(srv.port, "permessage-deflate; server_no_context_takeover")
    assert.equal("permessage-deflate; server_no_context_takeover; server_max_window_bits=12", ext)
    local msg = words(2000)
    local payloads = {}
    for i = 1, 3 do
      c:send(h.text(msg))
      local f = read_msg(c)
      assert.equal(4, f.rsv)
      payloads[i] = f.payload
    end
    -- Each reply inflates with a fresh decompressor and has the same size.
    for i, r in ipairs(inflate(payloads, 12, true)) do
      assert.is_true(r.ok, "reply " .. i .. ": " .. tostring(r.data))
      assert.equal(msg, r.data)
    end
    assert.equal(#payloads[1], #payloads[3])
    -- The control: with context takeover, the second reply refers to the
    -- first and is much smaller.
    local c2 = offer(srv.port, "permessage-deflate")
    local sizes = {}
    for i = 1, 2 do
      c2:send(h.text(msg))
      sizes[i] = #read_msg(c2).payload
    end
    assert.is_true(sizes[2] < sizes[1] / 4, sizes[1] .. " then " .. sizes[2])
  end)

  it("echoes client_no_context_takeover and inflates each message alone", function()
    local c, ext = offer(srv.port, "permessage-deflate; client_no_context_takeover")
    assert.equal("permessage-deflate; client_no_context_takeover; server_max_window_bits=12", ext)
    local msg = words(300)
    local payloads = {}
    for i, p in ipairs(compress({ msg, msg, msg }, 15, true)) do
      c:send(zframe(1, p))
      local f = read_msg(c)
      assert.equal(1, f.opcode)
      assert.equal(4, f.rsv)
      payloads[i] = f.payload
    end
    -- The server keeps its own context: one decompressor for the replies.
    for i, r in ipairs(inflate(payloads, 12)) do
      assert.is_true(r.ok, r.data)
      assert.equal(msg, r.data, "message " .. i)
    end
  end)

  local FIRST_INVALID = {
    { "permessage-deflate; foo, permessage-deflate; client_max_window_bits=10",
      "permessage-deflate; server_max_window_bits=12; client_max_window_bits=10" },
    { "permessage-deflate; server_max_window_bits=7, permessage-deflate; server_max_window_bits=9",
      "permessage-deflate; server_max_window_bits=9" },
    { "permessage-deflate; server_max_window_bits=16, permessage-deflate; server_max_window_bits=11",
      "permessage-deflate; server_max_window_bits=11" },
    { "permessage-deflate; server_max_window_bits, permessage-deflate",
      DEFAULT_ANSWER },
    { "permessage-deflate; server_max_window_bits=010, permessage-deflate; server_max_window_bits=10",
      "permessage-deflate; server_max_window_bits=10" },
    { "permessage-deflate; client_max_window_bits=7, permessage-deflate; client_max_window_bits",
      DEFAULT_ANSWER_CMWB },
    { "permessage-deflate; server_no_context_takeover; server_no_context_takeover, permessage-deflate",
      DEFAULT_ANSWER },
    { "permessage-deflate; server_max_window_bits=9; server_max_window_bits=9, " ..
      "permessage-deflate; server_no_context_takeover",
      "permessage-deflate; server_no_context_takeover; server_max_window_bits=12" },
    { "permessage-deflate; client_no_context_takeover=1, permessage-deflate; client_no_context_takeover",
      "permessage-deflate; client_no_context_takeover; server_max_window_bits=12" },
    { "x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=11",
      "permessage-deflate; server_max_window_bits=11" },
    { 'permessage-deflate; server_max_window_bits="10"',
      "permessage-deflate; server_max_window_bits=10" },
    { "permessage-deflate; server_max_window_bits=9, permessage-deflate; server_max_window_bits=10",
      "permessage-deflate; server_max_window_bits=9" },
    -- Two header lines are one list: the second line's offer is chosen.
    { { "permessage-deflate; bogus=1", "permessage-deflate; server_max_window_bits=8" },
      "permessage-deflate; server_max_window_bits=8" },
  }

  it("declines invalid offers and chooses the first valid one", function()
    for _, case in ipairs(FIRST_INVALID) do
      local c, ext = offer(srv.port, case[1])
      local label = type(case[1]) == "table" and table.concat(case[1], " | ") or case[1]
      assert.equal(case[2], ext, label)
      -- The extension is on: a compressed message is understood.
      c:send(zframe(1, compress1("chosen", 9)))
      local f = read_msg(c)
      assert.equal("chosen", f.payload, label)
      c:close()
    end
  end)

  it("answers 101 without the extension when no offer is valid, then refuses RSV1", function()
    for _, ext in ipairs {
      "permessage-deflate; foo",
      "permessage-deflate; server_max_window_bits=16, permessage-deflate; client_max_window_bits=7",
      "permessage-deflate; client_no_context_takeover=1",
      "permessage-deflate; server_no_context_takeover=\"\"",
      "permessage-deflate; server_max_window_bits=8; server_max_window_bits=9",
      "x-webkit-deflate-frame; no_context_takeover",
    } do
      local c, answer = offer(srv.port, ext)
      assert.is_nil(answer, ext)
      c:send(h.text("plain"))
      local f = read_msg(c)
      assert.equal(0, f.rsv)
      assert.equal("plain", f.payload)
      c:send(zframe(1, compress1("x", 15)))
      expect_fail(c, 1002)
    end
  end)

  it("answers 400 to a Sec-WebSocket-Extensions that breaks the grammar", function()
    for _, ext in ipairs {
      "permessage-deflate;;",
      "permessage-deflate; x=\"a",
      "permessage-deflate; =10",
      "permessage-deflate server_no_context_takeover",
      "permessage-deflate; server_max_window_bits=10=11",
      "; permessage-deflate",
      "permessage-deflate; client_max_window_bits=",
    } do
      local status = offer_status(srv.port, ext)
      assert.equal(400, status, ext)
    end
    -- The server still works.
    assert.is_true(h.echo_works(srv.port))
  end)

  it("a server without deflate answers 101 without the extension (even to a malformed offer)", function()
    for _, ext in ipairs { "permessage-deflate", "permessage-deflate; client_max_window_bits",
                           "permessage-deflate;;" } do
      local c, answer = offer(off.port, ext)
      assert.is_nil(answer, ext)
      c:send(h.text("hello"))
      assert.equal("hello", read_msg(c).payload)
    end
    local c = offer(off.port, "permessage-deflate")
    c:send(zframe(1, compress1("hello", 15)))
    expect_fail(c, 1002)
  end)

  it("a server with a deflate table answers with its settings", function()
    local _, ext = offer(tsrv.port, "permessage-deflate")
    assert.equal("permessage-deflate; client_no_context_takeover; server_max_window_bits=10", ext)
    local _, ext2 = offer(tsrv.port, "permessage-deflate; server_max_window_bits=9; client_max_window_bits")
    assert.equal("permessage-deflate; client_no_context_takeover; server_max_window_bits=9; " ..
                 "client_max_window_bits=10", ext2)
    local _, ext3 = offer(tsrv.port, "permessage-deflate; client_max_window_bits=8; server_no_context_takeover")
    assert.equal("permessage-deflate; server_no_context_takeover; client_no_context_takeover; " ..
                 "server_max_window_bits=10; client_max_window_bits=8", ext3)
  end)

  it("on_upgrade sees req.deflate and { deflate = false } declines for that connection", function()
    local c, ext = offer(tsrv.port, "permessage-deflate", "/off")
    assert.is_nil(ext)
    c:send(h.text("info"))
    assert.equal("deflate=false offered=true", read_msg(c).payload)
    c:send(h.text("nocompress 1000"))
    local f = read_msg(c)
    assert.equal(0, f.rsv)
    c:send(zframe(1, compress1("info", 10)))
    expect_fail(c, 1002)

    local c2, ext2 = offer(tsrv.port, "permessage-deflate")
    assert.is_string(ext2)
    c2:send(h.text("info"))
    assert.equal("deflate=true offered=true", read_msg(c2).payload)

    local c3, ext3 = offer(tsrv.port, "permessage-deflate; foo")
    assert.is_nil(ext3)
    c3:send(h.text("info"))
    assert.equal("deflate=false offered=false", read_msg(c3).payload)
  end)
end)

---------------------------------------------------------------------------
-- Frames
---------------------------------------------------------------------------

describe("deflate frames:", function()
  local srv

  setup(function() srv = h.start_server(nil, { "0", "--deflate" }) end)
  teardown(function() if srv then srv.stop() end end)
  after_each(close_conns)

  -- A connection with the defaults: the server compresses with window
  -- 12, and this side with 12 too.
  local function zconn()
    local c, ext = offer(srv.port, "permessage-deflate; client_max_window_bits")
    assert.equal(DEFAULT_ANSWER_CMWB, ext)
    return c
  end

  -- Sends every message compressed (one compressor), reads the echoes
  -- and inflates the compressed ones (one decompressor).
  local function roundtrip(c, msgs, kinds)
    local payloads = compress(msgs, 12)
    local replies = {}
    for i, p in ipairs(payloads) do
      c:send(zframe(kinds and kinds[i] or 1, p))
      replies[i] = read_msg(c)
    end
    local z = {}
    for _, r in ipairs(replies) do if r.rsv == 4 then z[#z + 1] = r.payload end end
    local inflated = inflate(z, 12)
    local k = 0
    for i, r in ipairs(replies) do
      assert.equal(kinds and kinds[i] or 1, r.opcode)
      local got = r.payload
      if r.rsv == 4 then
        k = k + 1
        assert.is_true(inflated[k].ok, "reply " .. i .. ": " .. inflated[k].data)
        got = inflated[k].data
      else
        assert.equal(0, r.rsv)
      end
      assert.is_true(got == msgs[i], ("reply %d: %d bytes, want %d"):format(i, #got, #msgs[i]))
    end
    return replies
  end

  it("echoes compressed text and binary messages; the replies inflate", function()
    local c = zconn()
    local msgs = { "Hello", words(100), words(5000), "κόσμε 😀" .. words(2000),
                   noise(3000, 2), periodic(100000, 1000, 3), "", string.rep("\0", 70000) }
    local kinds = { 1, 1, 1, 1, 2, 2, 1, 2 }
    local replies = roundtrip(c, msgs, kinds)
    -- Below the default threshold (64 bytes) the reply is not compressed.
    assert.equal(0, replies[1].rsv)
    assert.equal(4, replies[3].rsv)
    assert.is_true(#replies[6].payload < 5000)
  end)

  it("keeps both contexts across messages (context takeover)", function()
    local c = zconn()
    local msgs = {}
    for i = 1, 10 do msgs[i] = words(1000) .. i end
    local replies = roundtrip(c, msgs)
    -- The later replies refer to the earlier ones.
    assert.is_true(#replies[5].payload < #replies[1].payload / 4,
      #replies[1].payload .. " then " .. #replies[5].payload)
  end)

  it("mixes compressed and uncompressed messages on one connection", function()
    local c = zconn()
    local z = compress({ words(800), words(900) }, 12)
    c:send(zframe(1, z[1]))
    c:send(h.text(words(700)))
    c:send(zframe(1, z[2]))
    c:send(h.binary(noise(100, 4)))
    local got = {}
    for i = 1, 4 do got[i] = read_msg(c) end
    local zs = {}
    for _, r in ipairs(got) do if r.rsv == 4 then zs[#zs + 1] = r.payload end end
    local inf = inflate(zs, 12)
    local want = { words(800), words(700), words(900), noise(100, 4) }
    local k = 0
    for i, r in ipairs(got) do
      local p = r.payload
      if r.rsv == 4 then k = k + 1; assert.is_true(inf[k].ok, inf[k].data); p = inf[k].data end
      assert.is_true(p == want[i], "message " .. i)
    end
  end)

  it("inflates a compressed message split across fragments (RSV1 on the first only)", function()
    local c = zconn()
    local msg = "κόσμε " .. words(20000)
    local p = compress1(msg, 12)
    -- Three fragments, with a ping between two of them.
    local a, b = #p // 3, 2 * #p // 3
    c:send(zframe(1, p:sub(1, a), false))
    c:send(h.cont(p:sub(a + 1, b), false))
    c:send(h.ping("between"))
    c:send(h.cont(p:sub(b + 1), true))
    local pong = read_msg(c)
    assert.equal(10, pong.opcode)
    assert.equal("between", pong.payload)
    local r1 = read_msg(c)
    assert.equal(4, r1.rsv)
    -- One byte per fragment, the last fragment empty.
    local small = words(200)
    local q = compress({ small }, 12, true)[1]
    local parts = { zframe(2, q:sub(1, 1), false) }
    for i = 2, #q do parts[#parts + 1] = h.cont(q:sub(i, i), false) end
    parts[#parts + 1] = h.cont("", true)
    c:send(table.concat(parts))
    local r2 = read_msg(c)
    assert.equal(2, r2.opcode)
    assert.equal(4, r2.rsv)
    local inf = inflate({ r1.payload, r2.payload }, 12)
    assert.equal(msg, inf[1].data)
    assert.equal(small, inf[2].data)
  end)

  it("inflates an empty compressed message (no payload, or the byte 0x00)", function()
    local c = zconn()
    c:send(zframe(1, ""))
    c:send(zframe(2, "\0"))
    c:send(zframe(1, compress1("", 12)))
    for _, op in ipairs { 1, 2, 1 } do
      local r = read_msg(c)
      assert.equal(op, r.opcode)
      assert.equal(0, r.rsv)
      assert.equal("", r.payload)
    end
  end)

  it("inflates messages ending in a BFINAL block, and later ones referring back to them", function()
    local c = zconn()
    local m1, m2, m3 = words(3000, 1), words(3000, 1), words(2000, 2)
    local r = codec {
      { "f 12", m1 },                       -- a whole stream: BFINAL set
      { "z 12 " .. #m1, m1 .. m2 },         -- refers back to m1
      { "f 12", m3 },
      { "c " .. new_stream() .. " 12", m1 },
    }
    for _, x in ipairs(r) do assert(x.ok, x.data) end
    assert.is_true(#r[2].data < 200, #r[2].data .. " bytes: no back-reference?")
    c:send(zframe(1, r[1].data))
    c:send(zframe(1, r[2].data))
    -- Two streams in one message: a BFINAL block, then more blocks.
    c:send(zframe(1, r[3].data .. r[4].data))
    local got = {}
    for i = 1, 3 do got[i] = read_msg(c).payload end
    local inf = inflate(got, 12)
    assert.equal(m1, inf[1].data)
    assert.equal(m2, inf[2].data)
    assert.equal(m3 .. m1, inf[3].data)
  end)

  it("fails RSV1 on a continuation frame with 1002", function()
    local c = zconn()
    local p = compress1(words(1000), 12)
    c:send(zframe(1, p:sub(1, 10), false))
    c:send(h.frame { opcode = 0, rsv = 4, payload = p:sub(11) })
    expect_fail(c, 1002)
    -- Also after an uncompressed first fragment.
    c = zconn()
    c:send(h.text("abc", false))
    c:send(h.frame { opcode = 0, rsv = 4, payload = compress1("def", 12) })
    expect_fail(c, 1002)
  end)

  it("fails RSV1 on control frames (ping, pong, close) with 1002", function()
    for _, op in ipairs { 9, 10, 8 } do
      local c = zconn()
      local payload = op == 8 and compress1(h.close_payload(1000), 12) or compress1("ping", 12)
      c:send(h.frame { opcode = op, rsv = 4, payload = payload })
      expect_fail(c, 1002)
    end
  end)

  it("fails RSV2 and RSV3 with 1002 even with the extension", function()
    for _, rsv in ipairs { 2, 1, 6 } do
      local c = zconn()
      c:send(h.frame { opcode = 1, rsv = rsv, payload = compress1("hello", 12) })
      expect_fail(c, 1002)
    end
  end)

  it("fails RSV1 without the extension with 1002", function()
    local c = offer(srv.port, nil)
    c:send(zframe(1, compress1("hello", 15)))
    expect_fail(c, 1002)
  end)

  it("fails corrupt compressed data with 1007", function()
    local good = compress1(words(5000), 12)
    for _, bad in ipairs {
      "\255\255\255\255",                 -- block type 3 (reserved)
      good:sub(1, #good // 2),            -- cut in the middle of a block
      "\1\5\0\251\255abcde",              -- stored block with a wrong NLEN
    } do
      local c = zconn()
      c:send(zframe(2, bad))
      expect_fail(c, 1007)
    end
  end)

  it("fails compressed text that inflates to invalid UTF-8 with 1007", function()
    for _, bad in ipairs { "abc\255def", words(3000) .. "\237\160\128", "\192\175" } do
      local c = zconn()
      c:send(zframe(1, compress1(bad, 12)))
      expect_fail(c, 1007)
    end
    -- A valid character split across fragments of the compressed data
    -- (and in the middle of the inflated text) is fine.
    local c = zconn()
    local msg = string.rep("€", 3000)
    local p = compress1(msg, 12)
    c:send(zframe(1, p:sub(1, 7), false))
    c:send(h.cont(p:sub(8), true))
    local r = read_msg(c)
    assert.equal(msg, assert(inflate({ r.payload }, 12)[1]).data)
  end)
end)

---------------------------------------------------------------------------
-- Limits: the decompression bomb
---------------------------------------------------------------------------

describe("deflate limits:", function()
  local srv, tsrv, bomb

  setup(function()
    srv = h.start_server(nil, nil, h.server_source("deflate = true, max_message_size = 1024 * 1024,"))
    tsrv = h.start_server(nil, nil, TABLE_SERVER)
    -- 100 MiB of zeros, compressed to about 100 KB (deflate's best ratio
    -- is about 1:1030, so a 20 KB frame cannot inflate to 100 MiB).
    local r = codec { { "zeros " .. 100 * 1024 * 1024 } }
    bomb = assert(r[1].ok and r[1].data, r[1].data)
  end)
  teardown(function()
    if srv then srv.stop() end
    if tsrv then tsrv.stop() end
  end)
  after_each(close_conns)

  it("closes a 100 MiB bomb with 1009 promptly, without the memory (RSS measured)", function()
    assert.is_true(#bomb < 110000, #bomb .. " bytes")
    local c = offer(srv.port, "permessage-deflate")
    c:send(h.text("warm up"))
    assert.equal("warm up", read_msg(c).payload)
    local rss0 = mem(srv.pid)
    local t0 = h.now()
    c:send(zframe(2, bomb))
    local code = c:expect_close(3)
    local elapsed = h.now() - t0
    assert.equal(1009, code)
    assert.is_true(elapsed < 1, ("1009 after %.2f s"):format(elapsed))
    local rss1, hwm = mem(srv.pid)
    local MiB = 1024 * 1024
    assert.is_true(rss1 < rss0 + 20 * MiB,
      ("RSS %.1f MiB after, %.1f MiB before"):format(rss1 / MiB, rss0 / MiB))
    -- The peak too: nothing near 100 MiB was ever allocated.
    assert.is_true(hwm < rss0 + 20 * MiB,
      ("peak RSS %.1f MiB, %.1f MiB before"):format(hwm / MiB, rss0 / MiB))
    c:assert_closed(3)
    -- The same bomb in 20 fragments, with the server still serving.
    local c2 = offer(srv.port, "permessage-deflate")
    local n = #bomb // 20 + 1
    c2:send(zframe(2, bomb:sub(1, n), false))
    for i = n + 1, #bomb, n do c2:send(h.cont(bomb:sub(i, i + n - 1), false)) end
    c2:send(h.cont("", true))
    expect_fail(c2, 1009)
    local _, hwm2 = mem(srv.pid)
    assert.is_true(hwm2 < rss0 + 20 * MiB, ("peak RSS %.1f MiB"):format(hwm2 / MiB))
    assert.is_true(h.echo_works(srv.port))
  end)

  it("accepts a compressed message just under max_message_size and fails one just over", function()
    local MiB = 1024 * 1024
    local p = compress({ string.rep("a", MiB), string.rep("b", MiB + 1) }, 15, true)
    local c = offer(srv.port, "permessage-deflate")
    c:send(zframe(2, p[1]))
    local r = read_msg(c)
    assert.equal(4, r.rsv)
    assert.equal(MiB, #assert(inflate({ r.payload }, 12)[1]).data)
    c:send(zframe(2, p[2]))
    expect_fail(c, 1009)
  end)

  it("max_inflated_size bounds compressed messages only", function()
    -- tsrv: max_message_size 4 MiB, max_inflated_size 64 KiB.
    local big = words(100000)
    local c = offer(tsrv.port, "permessage-deflate")
    c:send(h.text(big))                       -- uncompressed: fine
    local r1 = read_msg(c)
    c:send(zframe(1, compress({ words(60000) }, 10, true)[1]))
    local r2 = read_msg(c)
    local inf = inflate({ r1.payload, r2.payload }, 10)
    assert.equal(big, inf[1].data)
    assert.equal(words(60000), inf[2].data)
    c:send(zframe(1, compress({ big }, 10, true)[1]))
    expect_fail(c, 1009)
  end)
end)

---------------------------------------------------------------------------
-- Threshold, opt-out, publish
---------------------------------------------------------------------------

describe("deflate threshold and opt-out:", function()
  local tsrv

  setup(function() tsrv = h.start_server(nil, nil, TABLE_SERVER) end)
  teardown(function() if tsrv then tsrv.stop() end end)
  after_each(close_conns)

  -- Sends each command and returns the replies; compressed ones are
  -- inflated (window 10, one decompressor) and marked z = true.
  local function replies(c, cmds)
    local got, zs = {}, {}
    for i, cmd in ipairs(cmds) do
      c:send(h.text(cmd))
      got[i] = read_msg(c)
      if got[i].rsv == 4 then zs[#zs + 1] = got[i].payload end
    end
    local inf, k = inflate(zs, 10), 0
    for _, r in ipairs(got) do
      r.z = r.rsv == 4
      if r.z then
        k = k + 1
        assert.is_true(inf[k].ok, inf[k].data)
        r.data = inf[k].data
      else
        assert.equal(0, r.rsv)
        r.data = r.payload
      end
    end
    return got
  end

  it("sends messages under the threshold (256) uncompressed, from it on compressed", function()
    local c = offer(tsrv.port, "permessage-deflate")
    local got = replies(c, { "reply 100", "reply 1000", "reply 255", "reply 256", "reply 100" })
    local want = { { false, 100 }, { true, 1000 }, { false, 255 }, { true, 256 }, { false, 100 } }
    for i, w in ipairs(want) do
      assert.equal(w[1], got[i].z, "reply " .. i)
      assert.equal(string.rep("r", w[2]), got[i].data)
    end
    assert.is_true(#got[2].payload < 100)
  end)

  it("{ compress = false } sends RSV1 clear, { compress = true } sets it on a tiny message", function()
    local c = offer(tsrv.port, "permessage-deflate")
    local got = replies(c, { "nocompress 5000", "force 5", "reply 5000", "force 0", "nocompress 10" })
    local want = { { false, "n", 5000 }, { true, "f", 5 }, { true, "r", 5000 }, { true, "f", 0 },
                   { false, "n", 10 } }
    for i, w in ipairs(want) do
      assert.equal(w[1], got[i].z, "reply " .. i)
      assert.equal(string.rep(w[2], w[3]), got[i].data, "reply " .. i)
    end
    assert.equal(5000, #got[1].payload)
  end)

  it("publishes uncompressed frames to deflate connections, which then go on compressing", function()
    local a = offer(tsrv.port, "permessage-deflate", "/pub")
    local b = offer(tsrv.port, "permessage-deflate", "/pub")
    assert.equal("subscribed", read_msg(a).payload)
    assert.equal("subscribed", read_msg(b).payload)
    -- Before and after the published message, compressed replies share
    -- the connection's compressor: they must inflate in order.
    a:send(h.text("reply 3000"))
    local before = read_msg(a)
    a:send(h.text("publish 5000"))
    for _, c in ipairs { a, b } do
      local r = read_msg(c)
      assert.equal(0, r.rsv)
      assert.equal(1, r.opcode)
      assert.equal(string.rep("p", 5000), r.payload)
    end
    a:send(h.text("reply 4000"))
    local after = read_msg(a)
    assert.equal(4, before.rsv)
    assert.equal(4, after.rsv)
    local inf = inflate({ before.payload, after.payload }, 10)
    assert.equal(string.rep("r", 3000), inf[1].data)
    assert.equal(string.rep("r", 4000), inf[2].data)
  end)

  it("publishes one compressed frame to subscribers without server context takeover", function()
    local subs = {
      -- offer, path, compressed?, window
      { "permessage-deflate; server_no_context_takeover", "/pub", true, 10 },
      { "permessage-deflate; server_no_context_takeover; server_max_window_bits=8", "/pub", true, 8 },
      { "permessage-deflate; server_no_context_takeover; server_max_window_bits=9", "/pub", true, 9 },
      { "permessage-deflate", "/pub", false },
      { "permessage-deflate; server_no_context_takeover", "/pub-off", false },
      { nil, "/pub", false },
    }
    for _, s in ipairs(subs) do
      s.c = offer(tsrv.port, s[1], s[2])
      assert.equal("subscribed", read_msg(s.c).payload)
    end
    local function expect_all(cmd, want, opcode, small)
      subs[1].c:send(h.text(cmd))
      for i, s in ipairs(subs) do
        local r = read_msg(s.c)
        assert.equal(opcode, r.opcode)
        local label = ("%s to subscriber %d (%s %s)"):format(cmd, i, tostring(s[1]), s[2])
        if s[3] and not small then
          assert.equal(4, r.rsv, label)
          -- From a fresh context, within the subscriber's window.
          local inf = inflate({ r.payload }, s[4])[1]
          assert.is_true(inf.ok, label .. ": " .. inf.data)
          assert.is_true(inf.data == want, label)
        else
          assert.equal(0, r.rsv, label)
          assert.is_true(r.payload == want, label)
        end
      end
    end
    local words_msg = string.rep("news of the day, ", 5000 // 17 + 1):sub(1, 5000)
    expect_all("publish-words 5000", words_msg, 1)
    expect_all("publish 100", string.rep("p", 100), 1, true)   -- under the threshold
    -- Random words repeated every 3000 bytes: the 256..1024-byte windows
    -- must not reach back to the previous period (strict inflate).
    local function lcg(n, as_words)
      local x, t = 7, {}
      for i = 1, n do
        x = (x * 1103515245 + 12345) % 2147483648
        t[i] = as_words and ({ "news ", "of ", "the ", "day ", "and ", "more " })[(x >> 16) % 6 + 1]
               or string.char((x >> 16) & 255)
      end
      return table.concat(t)
    end
    expect_all("publish-periodic 20000", lcg(20000, true):sub(1, 3000):rep(7):sub(1, 20000), 2)
    -- Incompressible data: any frame is fine as long as it reads back
    -- (uvws sends it uncompressed when deflate would expand it).
    local rnd = lcg(20000)
    subs[1].c:send(h.text("publish-noise 20000"))
    for i, s in ipairs(subs) do
      local r = read_msg(s.c)
      local got = r.payload
      if r.rsv == 4 then got = assert(inflate({ r.payload }, s[4] or 10)[1]).data end
      assert.is_true(got == rnd, "noise to subscriber " .. i)
    end
    -- The connections' own compressed messages still work afterwards.
    for i, s in ipairs(subs) do
      s.c:send(h.text("reply 2000"))
      local r = read_msg(s.c)
      local got = r.payload
      if r.rsv == 4 then got = assert(inflate({ r.payload }, s[4] or 10)[1]).data end
      assert.equal(string.rep("r", 2000), got, "subscriber " .. i)
    end
  end)

  it("a Python websockets client accepts published frames on a deflate connection", function()
    local ok, why = python_ok()
    if not ok then return pending(why) end
    local res = run_client(h.PYTHON .. " " .. PEERS .. "py_client.py publish ws://127.0.0.1:" ..
                           tsrv.port .. "/pub 100000", 30)[1]
    assert.is_nil(res.error, res.error)
    assert.truthy(res.ext and res.ext:match("^permessage%-deflate"), tostring(res.ext))
    assert.is_true(res.ok, "published message: " .. tostring(res.len) .. " bytes")
    assert.is_true(res.wire_rx >= 100000, "published frame of " .. res.wire_rx .. " bytes: compressed?")
    assert.is_true(res.echo)
    -- Offering server_no_context_takeover, it gets a compressed frame.
    res = run_client(h.PYTHON .. " " .. PEERS .. "py_client.py publish ws://127.0.0.1:" ..
                     tsrv.port .. "/pub 100000 snct", 30)[1]
    assert.is_nil(res.error, res.error)
    assert.truthy(res.ext:match("server_no_context_takeover"), res.ext)
    assert.is_true(res.ok, "published message: " .. tostring(res.len) .. " bytes")
    assert.is_true(res.wire_rx < 10000, "published frame of " .. res.wire_rx .. " bytes: not compressed?")
    assert.is_true(res.echo)
  end)
end)

---------------------------------------------------------------------------
-- Autobahn 12.x / 13.x areas: every parameter combination of 13.x
---------------------------------------------------------------------------

describe("deflate Autobahn 12.x/13.x areas (Python websockets client, echo_server.lua --deflate):", function()
  local ok, why = python_ok()
  if not ok then
    it("is skipped", function() pending(why) end)
    return
  end

  local SIZES = { 16, 64, 256, 1024, 4096, 16384, 65536, 131072 }
  local WINDOWS = { { nil, true }, { 9, 9 }, { 15, 15 }, { 9, 15 }, { 15, 9 }, { nil, nil } }
  local combos = {}
  for _, snct in ipairs { false, true } do
    for _, cnct in ipairs { false, true } do
      for _, w in ipairs(WINDOWS) do
        combos[#combos + 1] = {
          name = ("snct=%s cnct=%s smwb=%s cmwb=%s"):format(snct, cnct, tostring(w[1]), tostring(w[2])),
          snct = snct, cnct = cnct, smwb = w[1], cmwb = w[2] or json.null,
          sizes = SIZES,
        }
      end
    end
  end

  -- The answer examples/echo_server.lua --deflate (windows 12/12) must give.
  local function expected(c)
    local s = "permessage-deflate"
    if c.snct then s = s .. "; server_no_context_takeover" end
    if c.cnct then s = s .. "; client_no_context_takeover" end
    s = s .. "; server_max_window_bits=" .. math.min(12, c.smwb or 15)
    if c.cmwb == true then s = s .. "; client_max_window_bits=12"
    elseif c.cmwb ~= json.null then s = s .. "; client_max_window_bits=" .. math.min(12, c.cmwb) end
    return s
  end

  local srv, results

  setup(function()
    srv = h.start_server(nil, { "0", "--deflate" })
    local out = run_client(h.PYTHON .. " " .. PEERS .. "py_client.py combos ws://127.0.0.1:" ..
                           srv.port .. "/ " .. h.q(json.encode(combos)), 60)
    results = {}
    for _, r in ipairs(out) do results[r.name] = r end
  end)
  teardown(function() if srv then srv.stop() end end)

  for _, c in ipairs(combos) do
    it(c.name .. ": " .. #SIZES * 4 .. " messages of 16 B..128 KiB echoed", function()
      local r = results[c.name]
      assert.is_table(r, "no result")
      assert.is_nil(r.error, r.error)
      assert.equal(expected(c), r.ext, "offer: " .. tostring(r.offer))
      assert.equal(r.sent, r.ok, table.concat(r.bad or {}, "; "))
      assert.equal(#SIZES * 4, r.sent)
      -- The server compressed its replies (a quarter of the payload is
      -- random and incompressible).
      assert.is_true(r.wire_rx < r.payload * 0.75,
        ("%d bytes read for %d bytes of messages"):format(r.wire_rx, r.payload))
      assert.truthy(srv.alive())
    end)
  end
end)

---------------------------------------------------------------------------
-- Interop: foreign clients against a uvws server
---------------------------------------------------------------------------

local INTEROP_SERVER = h.server_source([[
  deflate = true,
  max_message_size = 16 * 1024 * 1024,
]], [[function(ws)
    print("open deflate=" .. tostring(ws.deflate)); io.stdout:flush()
    for data, kind in ws:each() do
      if data == "close-me" then ws:close(4000, "server bye") break end
      ws:send(data, kind)
    end
    print("closed " .. tostring(ws.close_code) .. " " .. tostring(ws.close_reason)); io.stdout:flush()
  end]])

describe("deflate interop, foreign clients against a uvws server:", function()
  local srv

  setup(function() srv = h.start_server(nil, nil, INTEROP_SERVER) end)
  teardown(function() if srv then srv.stop() end end)

  it("Python websockets (compression on by default)", function()
    local ok, why = python_ok()
    if not ok then return pending(why) end
    local res = run_client(h.PYTHON .. " " .. PEERS .. "py_client.py interop ws://127.0.0.1:" ..
                           srv.port .. "/", 60)[1]
    assert.is_nil(res.error, res.error)
    assert.equal("permessage-deflate; client_max_window_bits", res.offer)
    assert.equal(DEFAULT_ANSWER_CMWB, res.ext)
    assert.equal(res.sent, res.ok, table.concat(res.bad or {}, "; "))
    assert.is_true(res.wire_rx < res.payload * 0.6,
      ("%d bytes read for %d bytes of messages"):format(res.wire_rx, res.payload))
    assert.same({ 4000, "server bye" }, res.server_close)
    assert.is_true(res.echo_after)
    -- The server answers with the same code (RFC 6455 §5.5.1) and saw the reason.
    assert.equal(4001, res.client_close[1])
    assert.truthy(wait_for(srv.stdout, "closed 4001 python bye"), srv.stdout())
    assert.truthy(srv.stdout():match("open deflate=true"))
  end)

  it("node ws (perMessageDeflate: true)", function()
    local ok, why = node_ok()
    if not ok then return pending(why) end
    local res = run_client("node " .. PEERS .. "node_client.js ws://127.0.0.1:" .. srv.port .. "/", 40)[1]
    assert.is_nil(res.error, res.error)
    assert.equal("permessage-deflate; client_max_window_bits", res.offer)
    assert.equal(DEFAULT_ANSWER_CMWB, res.ext)
    assert.equal(res.sent, res.ok, table.concat(res.bad or {}, "; "))
    assert.is_true(res.wireRx < res.payload * 0.6,
      ("%d bytes read for %d bytes of messages"):format(res.wireRx, res.payload))
    assert.same({ 4000, "server bye" }, res.serverClose)
    assert.equal(4005, res.clientClose[1])
    assert.truthy(wait_for(srv.stdout, "closed 4005 node client bye"), srv.stdout())
  end)
end)

---------------------------------------------------------------------------
-- Interop: the uvws client against foreign servers
---------------------------------------------------------------------------

-- Messages of several sizes, text and binary, compressible and not.
local function client_messages()
  local msgs = {}
  for _, n in ipairs { 0, 10, 100, 1000, 10000, 100000, 1000000 } do
    msgs[#msgs + 1] = { words(n):sub(1, n), "text" }
    msgs[#msgs + 1] = { periodic(n, 1500, n), "binary" }
    msgs[#msgs + 1] = { noise(n // 10, n + 1), "binary" }
  end
  local total = 0
  for _, m in ipairs(msgs) do total = total + #m[1] end
  return msgs, total
end

-- words(n):sub(1, n) may cut a multi-byte character; keep text valid.
local function valid_text(s)
  while #s > 0 and not utf8.len(s) do s = s:sub(1, -2) end
  return s
end

local function exercise_client(peer, close_code, close_reason)
  run(function()
    local ws = assert(uvws.connect(peer.url, { max_message_size = 16 * 1024 * 1024 }))
    assert.is_true(ws.deflate)
    local ext = ws.response.headers["sec-websocket-extensions"]
    assert.truthy(ext and ext:match("^permessage%-deflate"), tostring(ext))
    assert.truthy(ws.response.request_raw:match("Sec%-WebSocket%-Extensions: permessage%-deflate"),
      ws.response.request_raw)
    local msgs, total = client_messages()
    for _, m in ipairs(msgs) do
      if m[2] == "text" then m[1] = valid_text(m[1]) end
      assert.is_true(ws:send(m[1], m[2]))
      local data, kind = ws:receive(5)
      assert.equal(m[2], kind)
      assert.equal(#m[1], #data)
      assert.is_true(data == m[1])
    end
    -- The server read far fewer bytes than were sent: this side compressed.
    assert.is_true(ws:send("stats"))
    local stats = json.decode((ws:receive(5)))
    assert.is_true(stats.bytesRead < total * 0.6,
      ("the server read %d bytes for %d bytes of messages"):format(stats.bytesRead, total))
    assert.is_true(ws:send("close-me"))
    local data, _, name = ws:receive(5)
    assert.is_nil(data)
    assert.equal("closed", name)
    assert.equal(close_code, ws.close_code)
    assert.equal(close_reason, ws.close_reason)

    -- The client closes with a code of its own.
    local ws2 = assert(uvws.connect(peer.url))
    assert.is_true(ws2.deflate)
    assert.is_true(ws2:send(words(500)))
    assert.equal(words(500), (ws2:receive(5)))
    assert.is_true(ws2:close(4006, "uvws bye"))
    return ext
  end, 30)
  assert.truthy(wait_for(peer.stdout, "closed 4006 uvws bye"), peer.stdout())
end

describe("deflate interop, the uvws client against foreign servers:", function()
  local NODE_VARIANTS = {
    { "node ws (perMessageDeflate: true)", "", nil },
    { "node ws (serverNoContextTakeover)", " --no-context-takeover", "server_no_context_takeover" },
    { "node ws (serverMaxWindowBits: 10)", " --max-window-bits 10", "server_max_window_bits=10" },
  }

  describe("Python websockets server:", function()
    local ok, why = python_ok()
    local peer
    setup(function() if ok then peer = start_peer(h.PYTHON .. " " .. PEERS .. "py_server.py") end end)
    teardown(function() if peer then peer.stop() end end)

    it("compresses both ways, with close codes both ways", function()
      if not ok then return pending(why) end
      exercise_client(peer, 4003, "python bye")
      local answer = peer.stdout():match("open permessage%-deflate; client_max_window_bits => ([^\n]+)")
      assert.equal("permessage-deflate; server_max_window_bits=12; client_max_window_bits=12", answer)
    end)

    it("with deflate = false neither offers nor compresses", function()
      if not ok then return pending(why) end
      run(function()
        local ws = assert(uvws.connect(peer.url, { deflate = false }))
        assert.is_false(ws.deflate)
        assert.is_nil(ws.response.headers["sec-websocket-extensions"])
        assert.is_nil(ws.response.request_raw:lower():find("sec-websocket-extensions", 1, true))
        local big = words(100000)
        assert.is_true(ws:send(big))
        assert.equal(big, (ws:receive(5)))
        assert.is_true(ws:send("stats"))
        local stats = json.decode((ws:receive(5)))
        assert.is_true(stats.bytesRead > 100000, stats.bytesRead .. " bytes read")
        ws:close()
      end)
    end)

    it("a deflate table offers its settings, which the server accepts", function()
      if not ok then return pending(why) end
      run(function()
        local ws = assert(uvws.connect(peer.url, { deflate = {
          server_no_context_takeover = true, client_no_context_takeover = true,
          server_max_window_bits = 10, client_max_window_bits = 9 } }))
        assert.is_true(ws.deflate)
        assert.truthy(ws.response.request_raw:match(
          "Sec%-WebSocket%-Extensions: permessage%-deflate; server_no_context_takeover; " ..
          "client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=9\r\n"),
          ws.response.request_raw)
        local ext = ws.response.headers["sec-websocket-extensions"]
        assert.truthy(ext:match("server_no_context_takeover"), ext)
        assert.truthy(ext:match("server_max_window_bits=10"), ext)
        for _, n in ipairs { 10, 1000, 100000 } do
          local m = periodic(n, 700, n)
          assert.is_true(ws:send(m, "binary"))
          assert.is_true((ws:receive(5)) == m)
        end
        ws:close()
      end)
    end)
  end)

  for _, v in ipairs(NODE_VARIANTS) do
    describe(v[1] .. ":", function()
      local ok, why = node_ok()
      local peer
      setup(function() if ok then peer = start_peer("node " .. PEERS .. "node_server.js" .. v[2]) end end)
      teardown(function() if peer then peer.stop() end end)

      it("compresses both ways, with close codes both ways", function()
        if not ok then return pending(why) end
        local ext
        run(function()
          local ws = assert(uvws.connect(peer.url))
          ext = ws.response.headers["sec-websocket-extensions"]
          ws:close()
        end)
        exercise_client(peer, 4002, "node bye")
        -- What the client saw is what node answered.
        local answer = peer.stdout():match("open permessage%-deflate; client_max_window_bits => ([^\n]+)")
        assert.equal(answer, ext)
        if v[3] then assert.truthy(ext:find(v[3], 1, true), ext) end
      end)
    end)
  end
end)

---------------------------------------------------------------------------
-- The uvws client's side: answers and frames from a hand-written server
---------------------------------------------------------------------------

describe("deflate, the uvws client against a hand-written server:", function()
  local ok, why = python_ok()
  local peer
  setup(function() if ok then peer = start_peer(h.PYTHON .. " " .. PEERS .. "raw_server.py") end end)
  teardown(function() if peer then peer.stop() end end)

  local function enc(s)
    return (s:gsub("[^%w%-_.~]", function(ch) return ("%%%02X"):format(ch:byte()) end))
  end

  -- The URL that makes raw_server.py answer `ext` and then send `send`.
  local function url(ext, send, cw)
    local q = {}
    if ext then q[#q + 1] = "ext=" .. enc(ext) end
    if send then q[#q + 1] = "send=" .. send end
    if cw then q[#q + 1] = "cw=" .. cw end
    return peer.url .. "?" .. table.concat(q, "&")
  end

  -- How many "close CODE" lines the server has logged so far.
  local function closes()
    local n = 0
    for _ in peer.stdout():gmatch("close %S+") do n = n + 1 end
    return n
  end

  -- Waits for the next "close CODE" line after the first `seen`.
  local function next_close(seen)
    local deadline = h.now() + 3
    while h.now() < deadline do
      local i, code = 0, nil
      for c in peer.stdout():gmatch("close (%S+)") do
        i = i + 1
        if i == seen + 1 then code = c end
      end
      if code then return code end
      h.sleep(0.02)
    end
  end

  it("fails with EEXTENSION when the answer does not accept the offer", function()
    if not ok then return pending(why) end
    local cases = {
      { nil, "permessage-deflate; foo" },
      { nil, "permessage-deflate; server_max_window_bits=7" },
      { nil, "permessage-deflate; server_max_window_bits=16" },
      { nil, "permessage-deflate; server_max_window_bits" },
      { nil, "permessage-deflate; client_max_window_bits" },
      { nil, "permessage-deflate; client_max_window_bits=08" },
      { nil, "permessage-deflate, permessage-deflate" },
      { nil, "x-webkit-deflate-frame" },
      { nil, "permessage-deflate; server_no_context_takeover=1" },
      { nil, "permessage-deflate; client_no_context_takeover; client_no_context_takeover" },
      { nil, "permessage-deflate;;" },
      { { server_max_window_bits = 10 }, "permessage-deflate; server_max_window_bits=12" },
      { { server_max_window_bits = 10 }, "permessage-deflate" },
      { { server_no_context_takeover = true }, "permessage-deflate" },
      { { client_max_window_bits = 10 }, "permessage-deflate; client_max_window_bits=12" },
      { false, "permessage-deflate" },
    }
    run(function()
      for _, case in ipairs(cases) do
        local opts = {}
        if case[1] ~= nil then opts.deflate = case[1] end
        local ws, msg, name, resp = uvws.connect(url(case[2]), opts)
        local label = ("%s with deflate = %s"):format(case[2], type(case[1]) == "table" and
          json.encode(case[1]) or tostring(case[1]))
        assert.is_nil(ws, label .. ": accepted")
        assert.equal("EEXTENSION", name, label .. ": " .. tostring(msg))
        assert.equal(101, resp and resp.status, label)
        if case[1] ~= false then
          -- The check says why, in parentheses.
          assert.matches("%(.+%)$", msg, nil, false, label)
        end
      end
    end, 20)
  end)

  it("accepts valid answers and inflates what the server sends", function()
    if not ok then return pending(why) end
    run(function()
      for _, case in ipairs {
        { "permessage-deflate", "z" },
        { "permessage-deflate; server_max_window_bits=9", "z9" },
        { "permessage-deflate; server_no_context_takeover; client_no_context_takeover", "z" },
        { "permessage-deflate; client_max_window_bits=8", "z" },
        { "PerMessage-Deflate; Server_Max_Window_Bits=\"10\"", "z" },
      } do
        local ws, msg = uvws.connect(url(case[1], case[2]))
        assert.is_table(ws, case[1] .. ": " .. tostring(msg))
        assert.is_true(ws.deflate, case[1])
        assert.equal("hello compressed", (ws:receive(5)), case[1])
        ws:close()
      end
      -- No extension in the answer: no compression, and that is fine.
      local ws = assert(uvws.connect(url(nil, "plain")))
      assert.is_false(ws.deflate)
      assert.equal("hello plain", (ws:receive(5)))
      assert.is_true(ws:send(words(3000)))
      assert.equal(words(3000), (ws:receive(5)))
      ws:close()
    end, 20)
  end)

  it("compresses within the client_max_window_bits the server answered", function()
    if not ok then return pending(why) end
    -- 3000 bytes of text, repeated: a 15-bit window reaches back 3000
    -- bytes, a 9-bit one cannot.
    local msg = words(3000, 5):rep(8)
    local function errors()
      local n = 0
      for _ in peer.stdout():gmatch("inflate error") do n = n + 1 end
      return n
    end
    local errors0 = errors()
    run(function()
      for _, bits in ipairs { 9, 8, 10 } do
        local ws = assert(uvws.connect(url("permessage-deflate; client_max_window_bits=" .. bits,
                                           nil, bits)))
        assert.is_true(ws.deflate)
        assert.is_true(ws:send(msg))
        assert.is_true(ws:send(msg))     -- with context takeover
        assert.equal(msg, (ws:receive(5)), "window " .. bits)
        assert.equal(msg, (ws:receive(5)), "window " .. bits)
        ws:close()
      end
      -- The control: without the limit the client uses its 15-bit
      -- window, which the server's 9-bit inflate refuses (1007).
      local ws = assert(uvws.connect(url("permessage-deflate", nil, 9)))
      assert.is_true(ws:send(msg))
      local data = ws:receive(5)
      assert.is_nil(data)
      assert.equal(1007, ws.close_code)
    end, 20)
    -- Only the control failed to inflate.
    assert.equal(errors0 + 1, errors(), peer.stdout())
  end)

  it("reads a large message that came in the same write as the 101 response, in order", function()
    if not ok then return pending(why) end
    -- 300,000 bytes: more than one read, the first shared with the head.
    local t = {}
    for i = 0, 299999 do t[#t + 1] = string.char(i % 251) end
    local big = table.concat(t)
    run(function()
      for _, case in ipairs {
        { nil, "big", { deflate = false } },
        { "permessage-deflate", "big", {} },
        { "permessage-deflate", "zbig", {} },
      } do
        local label = tostring(case[1]) .. " " .. case[2]
        for _ = 1, 3 do
          local ws = assert(uvws.connect(url(case[1], case[2]), case[3]))
          local data, msg = ws:receive(5)
          assert.is_string(data, label .. ": " .. tostring(msg))
          assert.equal(#big, #data, label)
          assert.is_true(data == big, label)
          ws:close()
        end
      end
    end, 20)
  end)

  it("fails RSV1 without the extension with 1002, and corrupt data with 1007", function()
    if not ok then return pending(why) end
    for _, case in ipairs {
      { nil, "rsv1", 1002, { deflate = false } },
      { nil, "rsv1", 1002, {} },                      -- offered, not agreed
      { "permessage-deflate", "corrupt", 1007, {} },
    } do
      local seen = closes()
      run(function()
        local ws = assert(uvws.connect(url(case[1], case[2]), case[4]))
        local data, _, name = ws:receive(5)
        assert.is_nil(data)
        assert.equal("closed", name)
        assert.equal(case[3], ws.close_code)
      end)
      assert.equal(tostring(case[3]), next_close(seen), case[2])
    end
  end)

  it("bounds inflating on the client too: a 100 MiB bomb closes with 1009 (RSS measured)", function()
    if not ok then return pending(why) end
    local MiB = 1024 * 1024
    local seen = closes()
    local rss0, hwm0 = mem("self")
    local elapsed, rss1, hwm1
    run(function()
      -- The server sends the bomb once told to, after the handshake.
      local ws = assert(uvws.connect(url("permessage-deflate", "bomb") .. "&wait=1",
                                     { max_message_size = MiB }))
      local t0 = h.now()
      assert.is_true(ws:send("go"))
      local data, _, name = ws:receive(5)
      elapsed = h.now() - t0
      rss1, hwm1 = mem("self")
      assert.is_nil(data)
      assert.equal("closed", name)
      assert.equal(1009, ws.close_code, tostring(ws.close_reason))
    end)
    assert.equal("1009", next_close(seen))
    assert.is_true(elapsed < 1, ("1009 after %.2f s"):format(elapsed))
    assert.is_true(rss1 < rss0 + 20 * MiB, ("RSS %.1f MiB, %.1f before"):format(rss1 / MiB, rss0 / MiB))
    assert.is_true(hwm1 <= math.max(hwm0, rss0 + 20 * MiB),
      ("peak RSS %.1f MiB, %.1f before"):format(hwm1 / MiB, rss0 / MiB))
  end)
end)
