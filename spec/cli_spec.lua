---------------------------------------------------------------------------
-- The command-line tool bin/uvws (lua/uvws/cli.lua) and the handshake
-- inspector (lua/uvws/inspect.lua): their pure functions in this process,
-- and the tool itself as a subprocess against the uvws echo server, a
-- Python websockets client and the broken servers of
-- spec/peers/client_raw_server.py.

local h = require "spec.helper"
local json = require "dkjson"
local inspect = require "uvws.inspect"
local cli = require "uvws.cli"

local function hex(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

-- Runs a shell pipeline from the repository root (bounded); returns
-- stdout, exit status, stderr.
local function sh(pipeline, secs)
  local errf = os.tmpname()
  local out, code = h.run("sh -c " .. h.q(pipeline .. " 2>" .. h.q(errf)), secs or 20)
  local err = h.read_file(errf) or ""
  os.remove(errf)
  return out, code, err
end

local UVWS = "lua5.4 bin/uvws"

-- Starts a non-Lua peer (see spec/client_spec.lua) and waits for its
-- "listening on" line.
local function start_peer(cmd, timeout)
  local out, err = os.tmpname(), os.tmpname()
  local ph = assert(io.popen("echo $$; cd " .. h.q(h.root) .. " && exec " .. cmd ..
    " </dev/null >" .. h.q(out) .. " 2>" .. h.q(err), "r"))
  local pid = tonumber(ph:read("l"))
  local p, stopped = {}, false
  function p.stop()
    if stopped then return end
    stopped = true
    os.execute("kill -TERM " .. pid .. " 2>/dev/null")
    local deadline = h.now() + 2
    while h.alive(pid) and h.now() < deadline do h.sleep(0.01) end
    if h.alive(pid) then os.execute("kill -KILL " .. pid .. " 2>/dev/null") end
    ph:close()
    os.remove(out)
    os.remove(err)
  end
  local deadline = h.now() + (timeout or 10)
  while true do
    local port = (h.read_file(out) or ""):match("listening on ws://127%.0%.0%.1:(%d+)/")
    if port then
      p.port, p.url = tonumber(port), "ws://127.0.0.1:" .. port
      return p
    end
    if not h.alive(pid) or h.now() > deadline then
      local e = h.read_file(err) or ""
      p.stop()
      error("peer did not start: " .. cmd .. "\n" .. e, 2)
    end
    h.sleep(0.02)
  end
end

---------------------------------------------------------------------------
-- Pure functions
---------------------------------------------------------------------------

describe("uvws.inspect functions:", function()
  it("computes SHA-1 (FIPS 180 / RFC 3174 vectors and block boundaries)", function()
    assert.equal("da39a3ee5e6b4b0d3255bfef95601890afd80709", hex(inspect.sha1("")))
    assert.equal("a9993e364706816aba3e25717850c26c9cd0d89d", hex(inspect.sha1("abc")))
    assert.equal("84983e441c3bd26ebaae4aa1f95129e5e54670f1",
      hex(inspect.sha1("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")))
    -- Padding edges and a long input, against sha1sum.
    local tmp = os.tmpname()
    for _, n in ipairs { 55, 56, 63, 64, 65, 119, 1000 } do
      local s = h.random_bytes(n)
      local f = assert(io.open(tmp, "wb"))
      f:write(s)
      f:close()
      local out = h.run("sha1sum " .. h.q(tmp), 5)
      assert.equal(out:match("^(%x+)"), hex(inspect.sha1(s)), "length " .. n)
    end
    os.remove(tmp)
  end)

  it("encodes base64 (RFC 4648 vectors) and the accept key (RFC 6455 §1.3)", function()
    local v = { [""] = "", f = "Zg==", fo = "Zm8=", foo = "Zm9v", foob = "Zm9vYg==",
                fooba = "Zm9vYmE=", foobar = "Zm9vYmFy" }
    for k, want in pairs(v) do assert.equal(want, inspect.base64(k)) end
    assert.equal("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", inspect.accept("dGhlIHNhbXBsZSBub25jZQ=="))
  end)

  local REQ = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" ..
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" ..
    "Sec-WebSocket-Protocol: chat, superchat\r\n\r\n"

  local function levels(checks)
    local r = {}
    for _, c in ipairs(checks) do
      if c.level ~= "ok" then r[#r + 1] = c.level .. " " .. tostring(c.name) end
    end
    return r
  end

  it("checks a 101 completely: every problem, not only the first", function()
    local resp = "HTTP/1.1 101 Switching Protocols\r\nConnection: keep-alive\r\n" ..
      "Sec-WebSocket-Accept: AAAA\r\nSec-WebSocket-Protocol: chat, superchat\r\n" ..
      "Content-Length: 0\r\n\r\n"
    local checks, expected = inspect.check(REQ, resp)
    assert.equal("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", expected)
    assert.same({ "fail EUPGRADE", "fail ECONNECTION", "fail EACCEPT", "fail EPROTOCOL",
                  "warn nil" }, levels(checks))
    assert.matches("expected s3pPLMBiTxaQ9kYGzzhZRbK%+xOo=", checks[4].message)
  end)

  it("passes a correct 101 and warns when no offered subprotocol was selected", function()
    local resp = "HTTP/1.1 101 Switching Protocols\r\nupgrade: WebSocket\r\n" ..
      "connection: keep-alive, Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
    local checks = inspect.check(REQ, resp)
    assert.same({ "warn nil" }, levels(checks))
    assert.matches("selected none", checks[#checks].message)
    resp = resp:gsub("\r\n\r\n$", "\r\nSec-WebSocket-Protocol: superchat\r\n\r\n")
    assert.same({}, levels(inspect.check(REQ, resp)))
  end)

  it("explains statuses other than 101", function()
    local checks = inspect.check(REQ, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n")
    assert.same({ "fail ESTATUS" }, levels(checks))
    assert.matches("plain HTTP server", checks[1].hint)
    checks = inspect.check(REQ, "HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 8\r\n\r\n")
    assert.same({ "fail ESTATUS", "warn nil" }, levels(checks))
    assert.matches("Sec%-WebSocket%-Version: 8", checks[2].message)
    checks = inspect.check(REQ, "HTTP/1.1 302 Found\r\nLocation: /x\r\n\r\n")
    assert.same({ "warn ESTATUS" }, levels(checks))
    checks = inspect.check(REQ, "SSH-2.0-OpenSSH\r\n\r\n")
    assert.same({ "fail EHTTP" }, levels(checks))
  end)

  it("writes JSON that a JSON parser reads back, whatever the bytes", function()
    local v = { s = "quote\" backslash\\ newline\n tab\t nul\0 é", bad = "\255\254x",
                list = { 1, 2.5, true, false }, nested = { a = { b = "c" } } }
    local back = json.decode(inspect.json(v))
    assert.equal(v.s, back.s)
    assert.equal("ÿþx", back.bad)
    assert.same(v.list, back.list)
    assert.same(v.nested, back.nested)
  end)
end)

describe("uvws.cli functions:", function()
  it("maps close codes to exit statuses", function()
    local want = { [1000] = 0, [1001] = 0, [1005] = 0, [1002] = 12, [1006] = 16,
                   [1008] = 18, [1011] = 21, [3000] = 100, [4002] = 102, [4999] = 199 }
    for code, status in pairs(want) do assert.equal(status, cli.exit_status(code), code) end
    assert.equal(16, cli.exit_status(nil))
  end)

  it("formats messages: text as is, binary as a summary", function()
    assert.equal("héllo", cli.format_message("héllo", "text"))
    assert.equal("<binary 5 bytes: 0001020304>", cli.format_message("\0\1\2\3\4", "binary"))
    assert.equal("<binary 1 byte: ff>", cli.format_message("\255", "binary"))
    assert.equal("<binary 0 bytes>", cli.format_message("", "binary"))
    assert.equal("<binary 40 bytes: " .. string.rep("61", 32) .. "...>",
      cli.format_message(string.rep("a", 40), "binary"))
  end)

  it("parses arguments", function()
    local o = assert(cli.parse_args("connect", { "-H", "X-A: 1", "ws://h/", "--header=X-B:2",
      "-s", "chat", "-ssuper", "--timeout", "2.5", "--no-proxy" }))
    assert.same({ "ws://h/" }, o.args)
    assert.same({ { "X-A", "1" }, { "X-B", "2" } }, o.headers)
    assert.same({ "chat", "super" }, o.protocols)
    assert.equal(2.5, o.timeout)
    assert.is_false(o.proxy)
    local _, err = cli.parse_args("connect", { "-H", "no colon" })
    assert.matches("invalid header", err)
    _, err = cli.parse_args("connect", { "--json" })
    assert.matches("unknown option %-%-json for connect", err)
    _, err = cli.parse_args("serve", { "--port", "x" })
    assert.matches("%-%-port must be a number", err)
    _, err = cli.parse_args("inspect", { "-H" })
    assert.matches("needs a value", err)
  end)
end)

---------------------------------------------------------------------------
-- The tool as a subprocess
---------------------------------------------------------------------------

describe("bin/uvws:", function()
  it("prints its usage and fails on bad usage with status 2", function()
    local out, code = sh(UVWS .. " --help")
    assert.equal(0, code)
    assert.matches("usage: uvws connect URL", out)
    assert.matches("exit status:", out)
    local err
    out, code, err = sh(UVWS .. " frobnicate")
    assert.equal(2, code)
    assert.equal("", out)
    assert.matches("unknown command frobnicate", err)
    out, code, err = sh(UVWS .. " connect ws://127.0.0.1:1/ --bogus")
    assert.equal(2, code)
    assert.equal("", out)
    assert.matches("unknown option %-%-bogus", err)
    out, code = sh(UVWS)
    assert.equal(2, code)
    assert.matches("^usage: uvws", out)
  end)

  it("finds the in-tree modules from any directory without LUA_PATH", function()
    local out, code = sh("cd /tmp && env -u LUA_PATH -u LUA_CPATH lua5.4 " ..
      h.q(h.root .. "/bin/uvws") .. " --version")
    assert.equal(0, code)
    assert.equal("uvws scm\n", out)
    out, code = sh("env -u LUA_PATH -u LUA_CPATH ./bin/uvws --version")
    assert.equal(0, code, "bin/uvws must be executable (#!/usr/bin/env lua5.4)")
    assert.equal("uvws scm\n", out)
  end)

  describe("serve --echo", function()
    it("is answered by a Python websockets client, with a subprotocol", function()
      local srv = h.start_server("bin/uvws", { "serve", "--port", "0", "--echo", "-s", "chat" })
      local out = h.run(h.PYTHON .. " spec/peers/client_echo_check.py " ..
        h.q("ws://127.0.0.1:" .. srv.port .. "/") .. " chat 2>&1", 20)
      local res = json.decode(out:match("([^\n]*)\n?$"))
      assert.is_table(res, out)
      assert.is_true(res.ok, out)
      assert.equal("chat", res.subprotocol)
      -- A second server on the same port fails with status 1.
      local _, code, err = sh(UVWS .. " serve --echo --port " .. srv.port)
      assert.equal(1, code)
      assert.matches("EADDRINUSE", err)
      srv.stop()
      assert.matches("%[1%] connected from 127%.0%.0%.1", srv.final_stderr)
      assert.matches("%[1%] closed: 1000 done", srv.final_stderr)
    end)
  end)

  describe("connect", function()
    local echo, special

    setup(function()
      echo = h.start_server()
      special = h.start_server(nil, nil, h.server_source([[
  protocols = { "chat" },
  on_upgrade = function(req)
    if req.path == "/deny" then return uvws.reject(403, "no\n") end
  end,]], [[
function(ws)
  local p = ws.request.path
  if p == "/binary" then
    ws:send("\0\1\2\3\4", "binary")
    ws:send("then text")
    return ws:close(4002, "done")
  elseif p == "/boom" then
    error("boom")
  end
  ws:send(tostring(ws.request.headers["x-token"]) .. " " .. tostring(ws.protocol))
  for data, kind in ws:each() do ws:send(data, kind) end
end]]))
    end)
    teardown(function() h.stop_all() end)

    it("sends stdin lines and prints the echoes; exits 0 after a 1000 close", function()
      local out, code, err = sh("printf 'one\\ntwo\\n\\nthree' | " .. UVWS .. " connect " ..
        h.q("ws://127.0.0.1:" .. echo.port .. "/"))
      assert.equal("one\ntwo\n\nthree\n", out)
      assert.equal(0, code)
      assert.matches("connected to ws://127%.0%.0%.1:%d+/", err)
      assert.matches("closed: 1000", err)
    end)

    it("examples/echo_client.lua sends stdin lines and prints the echoes", function()
      local out, code, err = sh("printf 'first\\nsecond\\n' | LUA_PATH='./lua/?.lua;./lua/?/init.lua;;' " ..
        "LUA_CPATH='" .. (os.getenv("UVWS_CPATH") or "./build/?.so") .. ";;' lua5.4 examples/echo_client.lua ws://127.0.0.1:" .. echo.port .. "/")
      assert.equal("first\nsecond\n", out, err)
      assert.equal(0, code)
      assert.matches("closed: 1000", err)
    end)

    it("sends -H headers and offers -s subprotocols", function()
      local out, code, err = sh(UVWS .. " connect -H 'X-Token: t0k3n' -s nope -s chat -q " ..
        h.q("ws://127.0.0.1:" .. special.port .. "/") .. " </dev/null")
      assert.equal("t0k3n chat\n", out)
      assert.equal(0, code)
      assert.equal("", err)
    end)

    it("prints binary messages as a summary and exits with the close code mapped", function()
      local out, code, err = sh("sleep 1 | " .. UVWS .. " connect " ..
        h.q("ws://127.0.0.1:" .. special.port .. "/binary"))
      assert.equal("<binary 5 bytes: 0001020304>\nthen text\n", out)
      assert.equal(102, code)
      assert.matches("closed: 4002 done", err)
      out, code, err = sh("sleep 1 | " .. UVWS .. " connect " ..
        h.q("ws://127.0.0.1:" .. special.port .. "/boom"))
      assert.equal("", out)
      assert.equal(21, code)
      assert.matches("closed: 1011", err)
    end)

    it("exits 1 when it cannot connect, printing the error and the response", function()
      local out, code, err = sh(UVWS .. " connect ws://127.0.0.1:1/ </dev/null")
      assert.equal("", out)
      assert.equal(1, code)
      assert.matches("cannot connect to ws://127%.0%.0%.1:1/: .*ECONNREFUSED", err)
      out, code, err = sh(UVWS .. " connect ws://127.0.0.1:" .. special.port .. "/deny </dev/null")
      assert.equal("", out)
      assert.equal(1, code)
      assert.matches("status 403 instead of 101 Switching Protocols %(ESTATUS%)", err)
      assert.matches("\nHTTP/1%.1 403 Forbidden\r\n", err)
    end)
  end)

  describe("inspect", function()
    local echo, raw

    setup(function()
      echo = h.start_server()
      raw = start_peer(h.PYTHON .. " spec/peers/client_raw_server.py")
    end)
    teardown(function()
      raw.stop()
      h.stop_all()
    end)

    local function inspect_cmd(url, extra)
      return sh(UVWS .. " inspect " .. h.q(url) .. " " .. (extra or ""), 20)
    end

    it("passes a correct server: heads, checks, timings, exit 0", function()
      local out, code = inspect_cmd("ws://127.0.0.1:" .. echo.port .. "/path?q=1")
      assert.equal(0, code, out)
      assert.matches("> GET /path%?q=1 HTTP/1%.1\n", out)
      assert.matches("> Sec%-WebSocket%-Version: 13\n", out)
      assert.matches("< HTTP/1%.1 101 Switching Protocols\n", out)
      local key = out:match("> Sec%-WebSocket%-Key: (%S+)")
      assert.matches("ok   Sec%-WebSocket%-Accept matches the key %(" ..
        inspect.accept(key):gsub("%p", "%%%0") .. "%)", out)
      assert.matches("ok   the server answered a ping in [%d.]+ ms", out)
      assert.matches("Timings: DNS [%d.]+ ms, TCP connect [%d.]+ ms, handshake [%d.]+ ms, " ..
        "ping round trip [%d.]+ ms", out)
      assert.matches("\nVerdict: OK: the WebSocket upgrade is correct\n$", out)
    end)

    local BROKEN = {
      { "/200", "FAIL status 200 OK instead of 101 Switching Protocols", "plain HTTP server",
        "ESTATUS" },
      { "/426", "FAIL status 426 Upgrade Required", "Sec%-WebSocket%-Version: 13", "ESTATUS" },
      { "/no-upgrade", "FAIL 101 without an Upgrade header", "RFC 6455 §4%.1", "EUPGRADE" },
      { "/no-connection", "FAIL 101 without a Connection header", "Connection: Upgrade",
        "ECONNECTION" },
      { "/bad-protocol", "FAIL the server selected the subprotocol unoffered, which was not " ..
        "offered %(offered: chat%)", "must fail the connection", "EPROTOCOL" },
      { "/bad-extension", "FAIL the server selected the extension x%-unoffered%-ext, which " ..
        "was not offered", "RFC 6455 §9%.1", "EEXTENSION" },
    }
    for _, b in ipairs(BROKEN) do
      it(b[1] .. ": exit 1 with the warning " .. b[4], function()
        local out, code = inspect_cmd(raw.url .. b[1], "-s chat")
        assert.equal(1, code, out)
        assert.matches("< HTTP/1%.1 %d%d%d", out)
        assert.matches(b[2], out)
        assert.matches(b[3], out)
        assert.matches("\nVerdict: FAILED %(" .. b[4] .. "%)", out)
      end)
    end

    it("/bad-accept: shows the value expected for the key sent", function()
      local out, code = inspect_cmd(raw.url .. "/bad-accept")
      assert.equal(1, code, out)
      local key = out:match("> Sec%-WebSocket%-Key: (%S+)")
      local want = inspect.accept(key)
      assert.matches("FAIL Sec%-WebSocket%-Accept: s3pPLMBiTxaQ9kYGzzhZRbK%+xOo= is wrong; " ..
        "expected " .. want:gsub("%p", "%%%0"), out)
      assert.matches("Verdict: FAILED %(EACCEPT%)", out)
    end)

    it("follows redirects, reporting each hop", function()
      local target = "ws://127.0.0.1:" .. echo.port .. "/"
      local out, code = inspect_cmd(raw.url .. "/redirect?n=1&to=" .. target)
      assert.equal(0, code, out)
      assert.matches("== hop 1: " .. raw.url:gsub("%p", "%%%0") .. "/redirect", out)
      assert.matches("== hop 3: " .. target:gsub("%p", "%%%0"), out)
      assert.matches("warn status 302 Found: a redirect to ws://127%.0%.0%.1:%d+/", out)
      assert.matches("Verdict: OK: the WebSocket upgrade is correct %(after 2 redirects", out)
      out, code = inspect_cmd(raw.url .. "/redirect?n=3&to=" .. target, "--max-redirects 2")
      assert.equal(1, code, out)
      assert.matches("Verdict: FAILED %(EREDIRECT%): more than 2 redirects", out)
    end)

    it("explains connection failures: refused, timeout", function()
      local out, code = inspect_cmd("ws://127.0.0.1:1/")
      assert.equal(1, code)
      assert.matches("FAIL connect: connection refused", out)
      assert.matches("Nothing listens", out)
      assert.matches("Verdict: FAILED %(ECONNREFUSED%)", out)
      out, code = inspect_cmd(raw.url .. "/silent", "--timeout 0.3")
      assert.equal(1, code)
      assert.matches("Verdict: FAILED %(ETIMEDOUT%)", out)
      assert.matches("hung", out)
    end)

    it("--json prints one object that JSON parsers read", function()
      local out, code = inspect_cmd("ws://127.0.0.1:" .. echo.port .. "/", "--json")
      assert.equal(0, code)
      local r = json.decode(out)
      assert.is_table(r, out)
      assert.is_true(r.ok)
      assert.equal(101, r.hops[1].status)
      assert.is_number(r.timings.ping)
      assert.is_number(r.timings.handshake)
      assert.matches("^OK", r.verdict)

      out, code = inspect_cmd(raw.url .. "/bad-accept", "--json")
      assert.equal(1, code)
      r = json.decode(out)
      assert.is_false(r.ok)
      assert.equal("EACCEPT", r.error.name)
      assert.equal(inspect.accept(r.hops[1].key), r.hops[1].expected_accept)
      local names = {}
      for _, c in ipairs(r.hops[1].checks) do
        if c.level == "fail" then names[#names + 1] = c.name end
      end
      assert.same({ "EACCEPT" }, names)
      -- Python's json module agrees.
      local py = sh(UVWS .. " inspect --json " .. h.q(raw.url .. "/200") .. " | " .. h.PYTHON ..
        " -c 'import json,sys; r=json.load(sys.stdin); print(r[\"ok\"], r[\"hops\"][0][\"status\"])'")
      assert.equal("False 200\n", py)
    end)
  end)
end)
