-- TLS (wss://): uvws server and client over OpenSSL memory BIOs.
--
-- A throwaway PKI is generated at test time (spec/support/pki.lua).  Two
-- styles of test:
--   * in process: uvws servers and uvws clients in one loop; `in_loop`
--     runs a test body in a coroutine and always ends uvws.run() (the body
--     calls uvws.stop() when it finishes, a watchdog after a few seconds);
--     assertions are made after run() returns.
--   * subprocess: a uvws TLS server in a child lua5.4 (or the Python
--     websockets server), driven by blocking peers: Python websockets
--     (spec/peers/tls_*.py), `openssl s_client`, raw luasocket.

local h = require "spec.helper"
local pki = require "spec.support.pki"
local json = require "dkjson"
local socket = require "socket"
local uvws = require "uvws"

local HAVE_OPENSSL = os.execute("openssl version >/dev/null 2>&1") == true
local HAVE_PYTHON = (h.run(h.PYTHON .. " -c 'import websockets, ssl; print(1)' 2>/dev/null", 10) or "")
  :match("^1") ~= nil

---------------------------------------------------------------------------
-- In-process loop
---------------------------------------------------------------------------

local current_run      -- token of the in_loop whose watchdog may stop the loop
local running = false  -- inside uvws.run() (a uvws.stop() outside it would stick)
local opened = {}      -- servers opened by the running in_loop body

local function listen(opts)
  opts.host = opts.host or "127.0.0.1"
  opts.port = opts.port or 0
  opts.on_error = opts.on_error or function(err) io.stderr:write("server error: ", tostring(err), "\n") end
  local srv, err, name = uvws.listen(opts)
  if srv then opened[#opened + 1] = srv end
  return srv, err, name
end

local function echo_handler(ws)
  for data, kind in ws:each(10) do
    local code = kind == "text" and data:match("^close:(%d+)$")
    if code then
      ws:close(tonumber(code), "lua bye")
      return
    end
    ws:send(data, kind)
  end
end

-- Runs body() in a uvws coroutine; uvws.run() returns when it finishes or
-- after `secs` (then the test fails).  Servers opened with listen() are
-- closed afterwards.  Errors in the body are re-raised after the loop.
local function in_loop(secs, body)
  -- uvws.now() refreshes the loop's cached clock.  Without it, a connect
  -- started before uvws.run() computes its handshake deadline from the
  -- time the loop last ran, and after seconds of blocking child-process
  -- tests fails at once with "handshake timeout" (a transport bug: see
  -- the test "...after the process blocked..." below).
  uvws.now()
  local token = {}
  current_run = token
  local done, failure = false, nil
  uvws.spawn(function()
    local ok, err = xpcall(body, debug.traceback)
    if not ok then failure = err end
    done = true
    if running and current_run == token then uvws.stop() end
  end)
  if not done then
    -- The watchdog polls, so that it ends soon after this run (a long
    -- pending sleep would keep a later uvws.run() of another spec alive).
    uvws.spawn(function()
      local deadline = uvws.now() + secs
      while current_run == token and uvws.now() < deadline do uvws.sleep(0.02) end
      if running and current_run == token then uvws.stop() end
    end)
    running = true
    uvws.run()
    running = false
  end
  -- Close what the body left open, let the closes go out and the
  -- watchdog end.
  local t2 = {}
  current_run = t2
  local left = opened
  opened = {}
  for _, s in ipairs(left) do s:close() end
  uvws.spawn(function()
    uvws.sleep(0.06)
    if running and current_run == t2 then uvws.stop() end
  end)
  running = true
  uvws.run()
  running = false
  current_run = nil
  assert(done, "the test body did not finish within " .. secs .. " s")
  if failure then error(failure, 0) end
end

-- One echo round trip over wss with the test CA: true or nil, err, name.
local function probe(port, host, tls)
  local ws, err, name = uvws.connect(("wss://%s:%d/"):format(host or "127.0.0.1", port),
                                     { tls = tls, timeout = 3 })
  if not ws then return nil, err, name end
  ws:send("probe")
  local data, rerr = ws:receive(3)
  ws:close(1000)
  if data ~= "probe" then return nil, "no echo: " .. tostring(rerr) end
  return true
end

---------------------------------------------------------------------------
-- Child processes
---------------------------------------------------------------------------

local children = {}

-- Starts `cmd` (a shell command run from the repository root with the
-- uvws Lua paths) and waits for a stdout line matching
-- "listening on wss://127.0.0.1:(%d+)/".
local function start(cmd, timeout)
  local out, err = os.tmpname(), os.tmpname()
  local ph = assert(io.popen("echo $$; cd " .. h.q(h.root) ..
    " && export LUA_PATH='./lua/?.lua;./lua/?/init.lua;;' LUA_CPATH='" .. (os.getenv("UVWS_CPATH") or "./build/?.so") .. ";;'" ..
    " && exec " .. cmd .. " </dev/null >" .. h.q(out) .. " 2>" .. h.q(err), "r"))
  local pid = assert(tonumber(ph:read("l")), "no pid")
  local c = { pid = pid }
  local stopped = false
  function c.stdout() return h.read_file(out) or "" end
  function c.stderr() return h.read_file(err) or "" end
  function c.alive() return not stopped and h.alive(pid) end
  function c.stop()
    if stopped then return end
    stopped = true
    os.execute("kill -TERM " .. pid .. " 2>/dev/null")
    local deadline = h.now() + 2
    while h.alive(pid) and h.now() < deadline do h.sleep(0.01) end
    if h.alive(pid) then os.execute("kill -KILL " .. pid .. " 2>/dev/null") end
    ph:close()
    c.final_stdout, c.final_stderr = c.stdout(), c.stderr()
    os.remove(out)
    os.remove(err)
    for i, x in ipairs(children) do
      if x == c then table.remove(children, i) break end
    end
  end
  children[#children + 1] = c
  local deadline = h.now() + (timeout or 10)
  while true do
    local port = c.stdout():match("listening on wss://127%.0%.0%.1:(%d+)/")
    if port then
      c.port = tonumber(port)
      return c
    end
    if not h.alive(pid) or h.now() > deadline then
      local o, e = c.stdout(), c.stderr()
      c.stop()
      error(("%s did not start listening\nstdout: %s\nstderr: %s"):format(cmd, o, e), 2)
    end
    h.sleep(0.01)
  end
end

local function stop_children()
  while #children > 0 do children[#children].stop() end
end

local function lua_literal(v)
  if type(v) == "string" then return ("%q"):format(v) end
  if type(v) ~= "table" then return tostring(v) end
  local parts = {}
  for k, x in pairs(v) do
    parts[#parts + 1] = "[" .. lua_literal(k) .. "] = " .. lua_literal(x)
  end
  return "{" .. table.concat(parts, ", ") .. "}"
end

-- A uvws TLS echo server in a child process ("close:CODE" makes it close
-- with CODE).  extra: Lua text for more listen options.
local function start_lua_server(tls, extra)
  local src = ([[
local uvws = require "uvws"
local server = assert(uvws.listen {
  host = "127.0.0.1", port = 0, tls = %s,
  max_message_size = 16 * 1024 * 1024,
  %s
  handler = function(ws)
    for data, kind in ws:each() do
      local code = kind == "text" and data:match("^close:(%%d+)$")
      if code then ws:close(tonumber(code), "lua bye") return end
      ws:send(data, kind)
    end
  end,
})
print("listening on wss://127.0.0.1:" .. server.port .. "/")
io.stdout:flush()
uvws.run()
]]):format(lua_literal(tls), extra or "")
  local path = h.tmpname(".lua")
  local f = assert(io.open(path, "wb"))
  f:write(src)
  f:close()
  local c = start(h.LUA .. " " .. h.q(path))
  local stop = c.stop
  function c.stop() stop(); os.remove(path) end
  return c
end

-- Runs spec/peers/tls_client.py; returns its JSON result.
local function py_client(url, scenario, args)
  local cmd = h.PYTHON .. " spec/peers/tls_client.py " .. h.q(url) .. " " .. scenario
  for _, a in ipairs(args or {}) do cmd = cmd .. " " .. h.q(a) end
  local out = h.run(cmd .. " 2>&1", 30)
  local res = json.decode(out:match("([^\n]*)\n?$") or "")
  assert.is_table(res, "python client printed no JSON:\n" .. out)
  return res
end

-- `openssl s_client` against 127.0.0.1:port; returns its output.
local function s_client(port, servername, extra)
  local sni = servername and ("-servername " .. h.q(servername)) or "-noservername"
  return h.run("openssl s_client -connect 127.0.0.1:" .. port .. " " .. sni ..
               " " .. (extra or "") .. " </dev/null 2>&1", 10)
end

-- Raw TCP: sends `bytes` (may be empty) and waits for the server to close.
-- Returns what the server sent, how the read ended ("closed"/"timeout")
-- and the seconds it took.
local function raw_until_closed(port, bytes, limit)
  local s = socket.tcp()
  s:settimeout(3)
  assert(s:connect("127.0.0.1", port))
  if bytes and #bytes > 0 then assert(s:send(bytes)) end
  local t0 = h.now()
  local got = {}
  local how
  while true do
    local remaining = limit - (h.now() - t0)
    if remaining <= 0 then how = "timeout" break end
    s:settimeout(remaining)
    local data, err, partial = s:receive(4096)
    data = data or partial
    if data and #data > 0 then got[#got + 1] = data end
    if err == "closed" then how = "closed" break end
    if err == "timeout" then how = "timeout" break end
  end
  local elapsed = h.now() - t0
  s:close()
  return table.concat(got), how, elapsed
end

---------------------------------------------------------------------------

describe("TLS", function()
  if not HAVE_OPENSSL or not h.core_ready() then
    it("is skipped: the openssl command or build/uvws/core.so is missing", function()
      pending("openssl CLI or the built core missing")
    end)
    return
  end

  local P

  setup(function()
    P = pki.get()
  end)

  teardown(function()
    stop_children()
    pki.cleanup()
  end)

  describe("uvws server and uvws client in one process", function()
    it("echoes text, binary and 1 MiB messages and reports the TLS session", function()
      local results, info = {}, nil
      in_loop(10, function()
        local srv = assert(listen { tls = { cert = P.server_cert, key = P.server_key },
                                    handler = echo_handler })
        local ws = assert(uvws.connect("wss://127.0.0.1:" .. srv.port .. "/",
                                       { tls = { ca = P.ca }, timeout = 5 }))
        info = ws.response.tls
        local big = string.rep("\1\2\3\4\5\6\7\8", 1024 * 1024 // 8)
        for _, m in ipairs { { "hello wss ✓", "text" }, { "\0\255\0bin", "binary" },
                             { "", "text" }, { big, "binary" } } do
          assert(ws:send(m[1], m[2]))
          local data, kind = ws:receive(5)
          results[#results + 1] = { ok = data == m[1] and kind == m[2], len = #m[1], kind = kind }
        end
        ws:close(1000)
        srv:close()
      end)
      assert.equal(4, #results)
      for _, r in ipairs(results) do assert.is_true(r.ok, "echo of " .. r.len .. " bytes") end
      assert.is_table(info)
      assert.is_truthy(info.version == "TLSv1.3" or info.version == "TLSv1.2", info.version)
      assert.equal("http/1.1", info.alpn)
      assert.is_string(info.cipher)
      assert.is_truthy(#info.cipher > 0)
      assert.matches("CN%s*=%s*localhost", info.subject)
      assert.matches("uvws test CA", info.issuer)
      assert.matches("GMT", info.not_after)
      assert.is_true(info.verified)
    end)

    it("verifies DNS names (localhost) and IPv6 addresses ([::1]) against the SAN", function()
      local ok, err, ok6, err6, info6
      in_loop(10, function()
        local srv = assert(listen { tls = { cert = P.server_cert, key = P.server_key },
                                    handler = echo_handler })
        ok, err = probe(srv.port, "localhost", { ca = P.ca })
        local srv6 = listen { host = "::1", tls = { cert = P.server_cert, key = P.server_key },
                              handler = echo_handler }
        if srv6 then
          ok6, err6 = probe(srv6.port, "[::1]", { ca = P.ca })
          local ws = uvws.connect("wss://[::1]:" .. srv6.port .. "/", { tls = { ca = P.ca }, timeout = 3 })
          info6 = ws and ws.response.tls
          if ws then ws:close() end
          srv6:close()
        else
          ok6 = "no ipv6"
        end
        srv:close()
      end)
      assert.is_true(ok, err)
      if ok6 ~= "no ipv6" then
        assert.is_true(ok6, err6)
        assert.is_true(info6.verified)
      end
    end)

    describe("client verification failures name the reason with ECERT", function()
      local cases = {
        { "unknown CA (system store)", "server", nil, "127.0.0.1",
          "unable to get local issuer certificate" },
        { "an expired certificate", "expired", "ca", "127.0.0.1", "certificate has expired" },
        { "a self-signed certificate", "self", "ca", "127.0.0.1", "self%-signed certificate" },
        { "an IP address not in the SAN", "alt", "ca", "127.0.0.1", "IP address mismatch" },
        { "a host name not in the SAN", "alt", "ca", "localhost", "[Hh]ostname mismatch" },
        { "a server certificate from another CA", "server", "client_ca", "127.0.0.1",
          "unable to get local issuer certificate" },
      }
      for _, c in ipairs(cases) do
        local what, certname, caname, host, reason = c[1], c[2], c[3], c[4], c[5]
        it(what, function()
          local r, served
          in_loop(10, function()
            local srv = assert(listen { tls = { cert = P[certname .. "_cert"],
                                                key = P[certname .. "_key"] },
                                        handler = echo_handler })
            local url = ("wss://%s:%d/"):format(host, srv.port)
            local t0 = uvws.now()
            r = table.pack(uvws.connect(url, { tls = caname and { ca = P[caname] } or nil,
                                               timeout = 5 }))
            r.elapsed = uvws.now() - t0
            -- The server survives the aborted handshake.
            served = table.pack(probe(srv.port, host, { insecure = true }))
            srv:close()
          end)
          assert.is_nil(r[1])
          assert.equal("ECERT", r[3])
          assert.matches("^certificate verify failed: ", r[2])
          assert.matches(reason, r[2])
          assert.is_true(r.elapsed < 2, "failure took " .. r.elapsed .. " s")
          assert.is_true(served[1], tostring(served[2]))
        end)
      end
    end)

    it("insecure = true connects to a self-signed server and reports verified = false", function()
      local info, echoed, info2
      in_loop(10, function()
        local srv = assert(listen { tls = { cert = P.self_cert, key = P.self_key },
                                    handler = echo_handler })
        local ws = assert(uvws.connect("wss://127.0.0.1:" .. srv.port .. "/",
                                       { tls = { insecure = true }, timeout = 5 }))
        info = ws.response.tls
        ws:send("x")
        echoed = ws:receive(5)
        ws:close()
        -- insecure also skips the host name check
        local alt = assert(listen { tls = { cert = P.alt_cert, key = P.alt_key },
                                    handler = echo_handler })
        local ws2 = assert(uvws.connect("wss://127.0.0.1:" .. alt.port .. "/",
                                        { tls = { insecure = true }, timeout = 5 }))
        info2 = ws2.response.tls
        ws2:close()
        srv:close()
        alt:close()
      end)
      assert.equal("x", echoed)
      assert.is_false(info.verified)
      assert.matches("CN%s*=%s*localhost", info.subject)
      assert.is_false(info2.verified)
      assert.matches("alt%.test", info2.subject)
    end)

    it("a wss connect made after the process blocked longer than its timeout still connects", function()
      local r
      in_loop(10, function()
        local srv = assert(listen { tls = { cert = P.server_cert, key = P.server_key },
                                    handler = echo_handler })
        h.sleep(0.8)   -- blocking work in the host program; the loop is not running
        r = table.pack(uvws.connect("wss://127.0.0.1:" .. srv.port .. "/",
                                    { tls = { ca = P.ca }, timeout = 0.5 }))
        if r[1] then r[1]:close() end
        srv:close()
      end)
      assert.is_truthy(r[1], tostring(r[2]) .. " " .. tostring(r[3]))
    end)

    it("rejects a tls.insecure that is not a boolean", function()
      local ok, err
      in_loop(5, function()
        ok, err = pcall(uvws.connect, "wss://127.0.0.1:1/", { tls = { insecure = "yes" } })
      end)
      assert.is_false(ok)
      assert.matches("insecure", err)
    end)

    it("accepts PEM text instead of file names for cert, key and ca", function()
      local ok, err, info
      in_loop(10, function()
        local srv = assert(listen { tls = { cert = pki.read(P.server_cert),
                                            key = pki.read(P.server_key) },
                                    handler = echo_handler })
        ok, err = probe(srv.port, "127.0.0.1", { ca = pki.read(P.ca) })
        local ws = uvws.connect("wss://localhost:" .. srv.port .. "/",
                                { tls = { ca = pki.read(P.ca) }, timeout = 5 })
        info = ws and ws.response.tls
        if ws then ws:close() end
        srv:close()
      end)
      assert.is_true(ok, err)
      assert.is_true(info.verified)
    end)

    it("reports unusable cert/key/ca as ETLS at listen and connect time", function()
      local r = {}
      in_loop(5, function()
        r.nokey = table.pack(listen { tls = { cert = P.server_cert }, handler = echo_handler })
        r.missing = table.pack(listen { tls = { cert = "/nonexistent.pem", key = P.server_key },
                                        handler = echo_handler })
        r.mismatch = table.pack(listen { tls = { cert = P.server_cert, key = P.alt_key },
                                         handler = echo_handler })
        r.badpem = table.pack(listen { tls = { cert = "-----BEGIN CERTIFICATE-----\nxx\n",
                                               key = P.server_key }, handler = echo_handler })
        r.badca = table.pack(uvws.connect("wss://127.0.0.1:1/", { tls = { ca = "/nonexistent-ca.pem" } }))
      end)
      for k, v in pairs(r) do
        assert.is_nil(v[1], k)
        assert.equal("ETLS", v[3], k)
        assert.is_string(v[2], k)
      end
      assert.matches("private key", r.mismatch[2])
    end)

    it("serves plain and TLS listeners in one process at once", function()
      local plain_ok, tls_ok, plain_info, wrong1, wrong2
      in_loop(15, function()
        local tsrv = assert(listen { tls = { cert = P.server_cert, key = P.server_key },
                                     handler = echo_handler })
        local psrv = assert(listen { handler = echo_handler })
        assert(tsrv.tls and not psrv.tls)
        -- Interleaved: both connections open at the same time.
        local w1 = assert(uvws.connect("ws://127.0.0.1:" .. psrv.port .. "/", { timeout = 5 }))
        local w2 = assert(uvws.connect("wss://127.0.0.1:" .. tsrv.port .. "/",
                                       { tls = { ca = P.ca }, timeout = 5 }))
        plain_info = w1.response.tls
        w1:send("plain"); w2:send("secure")
        plain_ok = w1:receive(5) == "plain"
        tls_ok = w2:receive(5) == "secure"
        w1:close(); w2:close()
        -- The wrong scheme fails cleanly in both directions.
        wrong1 = table.pack(uvws.connect("wss://127.0.0.1:" .. psrv.port .. "/",
                                         { tls = { ca = P.ca }, timeout = 3 }))
        wrong2 = table.pack(uvws.connect("ws://127.0.0.1:" .. tsrv.port .. "/", { timeout = 3 }))
        tsrv:close(); psrv:close()
      end)
      assert.is_true(plain_ok)
      assert.is_true(tls_ok)
      assert.is_nil(plain_info)
      assert.is_nil(wrong1[1])
      assert.equal("ETLS", wrong1[3], tostring(wrong1[2]))
      assert.is_nil(wrong2[1])
      assert.is_string(wrong2[2])
      assert.is_not.equal("timeout", wrong2[3], "a ws:// client on the TLS port should fail fast")
    end)

    describe("client certificates (verify_client)", function()
      it("accepts a client with a certificate from the client CA, refuses others, keeps serving", function()
        local good, none, rogue, after
        in_loop(15, function()
          local srv = assert(listen {
            tls = { cert = P.server_cert, key = P.server_key, ca = P.client_ca, verify_client = true },
            handler = echo_handler })
          local url = "wss://127.0.0.1:" .. srv.port .. "/"
          good = table.pack(probe(srv.port, "127.0.0.1",
                                  { ca = P.ca, cert = P.client_cert, key = P.client_key }))
          none = table.pack(uvws.connect(url, { tls = { ca = P.ca }, timeout = 3 }))
          if none[1] then
            -- TLS 1.3: the refusal may come after the client's handshake;
            -- then the connection must not be usable.
            none.recv = table.pack(none[1]:receive(3))
          end
          rogue = table.pack(uvws.connect(url, { tls = { ca = P.ca, cert = P.rogue_cert,
                                                         key = P.rogue_key }, timeout = 3 }))
          if rogue[1] then rogue.recv = table.pack(rogue[1]:receive(3)) end
          after = table.pack(probe(srv.port, "127.0.0.1",
                                   { ca = P.ca, cert = P.client_cert, key = P.client_key }))
          srv:close()
        end)
        assert.is_true(good[1], tostring(good[2]))
        for name, r in pairs { none = none, rogue = rogue } do
          if r[1] then
            assert.is_nil(r.recv[1], name .. " client could receive")
          else
            assert.is_truthy(r[3] == "ETLS" or r[3] == "closed" or r[3] == "ECONNRESET",
                             name .. ": " .. tostring(r[2]) .. " " .. tostring(r[3]))
            assert.is_not.equal("timeout", r[3])
          end
        end
        assert.is_true(after[1], tostring(after[2]))
      end)
    end)
  end)

  describe("against a uvws TLS server process", function()
    it("works with TLS 1.2 and TLS 1.3 clients (python ssl)", function()
      if not HAVE_PYTHON then pending("python3 websockets missing") return end
      local srv = start_lua_server { cert = P.server_cert, key = P.server_key }
      local url = "wss://127.0.0.1:" .. srv.port .. "/"
      local r12 = py_client(url, "echo", { "--ca", P.ca, "--tls", "1.2" })
      local r13 = py_client(url, "echo", { "--ca", P.ca, "--tls", "1.3" })
      srv.stop()
      assert.is_true(r12.ok, json.encode(r12))
      assert.equal("TLSv1.2", r12.version)
      assert.equal("http/1.1", r12.alpn)
      assert.is_true(r13.ok, json.encode(r13))
      assert.equal("TLSv1.3", r13.version)
      assert.equal("http/1.1", r13.alpn)
    end)

    it("interoperates with python websockets: messages both ways and close codes", function()
      if not HAVE_PYTHON then pending("python3 websockets missing") return end
      local srv = start_lua_server { cert = P.server_cert, key = P.server_key }
      local url = "wss://localhost:" .. srv.port .. "/"
      local echo = py_client(url, "echo", { "--ca", P.ca })
      local sclose = py_client(url, "server-close", { "--ca", P.ca })
      local alive = srv.alive()
      srv.stop()
      assert.is_true(echo.ok, json.encode(echo))
      assert.equal(5, #echo.results)
      assert.equal("localhost", echo.peer_subject)
      assert.equal(4001, echo.close_code)      -- the server echoes the client's code
      assert.is_nil(sclose.error, json.encode(sclose))
      assert.equal(4002, sclose.close_code)
      assert.equal("lua bye", sclose.close_reason)
      assert.is_true(alive)
    end)

    it("selects the certificate by SNI (openssl s_client and python)", function()
      local srv = start_lua_server { cert = P.server_cert, key = P.server_key,
                                     sni = { ["alt.test"] = { cert = P.alt_cert, key = P.alt_key } } }
      local with_alt = s_client(srv.port, "alt.test", "-alpn http/1.1 -CAfile " .. h.q(P.ca))
      local with_upper = s_client(srv.port, "ALT.TEST")
      local without = s_client(srv.port, nil)
      local with_local = s_client(srv.port, "localhost", "-CAfile " .. h.q(P.ca))
      local with_other = s_client(srv.port, "other.test")
      local py
      if HAVE_PYTHON then
        py = py_client("wss://127.0.0.1:" .. srv.port .. "/", "echo",
                       { "--ca", P.ca, "--server-hostname", "alt.test" })
      end
      srv.stop()
      assert.matches("subject=CN%s*=%s*alt%.test", with_alt)
      assert.matches("Verify return code: 0 %(ok%)", with_alt)
      assert.matches("ALPN protocol: http/1%.1", with_alt)
      assert.matches("subject=CN%s*=%s*alt%.test", with_upper)
      assert.matches("subject=CN%s*=%s*localhost", without)
      assert.matches("subject=CN%s*=%s*localhost", with_local)
      assert.matches("Verify return code: 0 %(ok%)", with_local)
      assert.matches("subject=CN%s*=%s*localhost", with_other)
      if py then
        assert.is_true(py.ok, json.encode(py))
        assert.equal("alt.test", py.peer_subject)
      end
    end)

    it("sends a TLS alert (not a bare TCP close) when a required client certificate is missing", function()
      local srv = start_lua_server { cert = P.server_cert, key = P.server_key,
                                     ca = P.client_ca, verify_client = true }
      -- s_client keeps stdin open a moment so it reads the server's answer.
      local out12 = h.run("sh -c 'sleep 1' | openssl s_client -tls1_2 -connect 127.0.0.1:" ..
                          srv.port .. " -noservername -CAfile " .. h.q(P.ca) .. " 2>&1", 10)
      local out13 = h.run("sh -c 'sleep 1' | openssl s_client -tls1_3 -connect 127.0.0.1:" ..
                          srv.port .. " -noservername -CAfile " .. h.q(P.ca) .. " 2>&1", 10)
      srv.stop()
      -- OpenSSL generates "handshake failure" (1.2) / "certificate required"
      -- (1.3); the peer must receive it before the connection ends.
      assert.matches("alert", out12)
      assert.matches("alert certificate required", out13)
    end)

    it("client certificates with python: refused without, accepted with", function()
      if not HAVE_PYTHON then pending("python3 websockets missing") return end
      local srv = start_lua_server { cert = P.server_cert, key = P.server_key,
                                     ca = P.client_ca, verify_client = true }
      local url = "wss://127.0.0.1:" .. srv.port .. "/"
      local without = py_client(url, "connect", { "--ca", P.ca })
      local with = py_client(url, "echo", { "--ca", P.ca, "--cert", P.client_cert,
                                            "--key", P.client_key })
      local alive = srv.alive()
      srv.stop()
      assert.is_false(without.ok)
      assert.is_string(without.error)
      assert.is_true(with.ok, json.encode(with))
      assert.is_true(alive)
    end)

    it("counts the TLS handshake against handshake_timeout (silent and half-ClientHello clients)", function()
      local srv = start_lua_server({ cert = P.server_cert, key = P.server_key },
                                   "handshake_timeout = 0.5,")
      local _, how1, t1 = raw_until_closed(srv.port, "", 3)
      -- A TLS record header announcing 512 bytes of ClientHello, then 9 of them.
      local half = "\22\3\1\2\0" .. "\1\0\1\252\3\3" .. "\0\0\0"
      local _, how2, t2 = raw_until_closed(srv.port, half, 3)
      local alive = srv.alive()
      local ok = s_client(srv.port, "localhost", "-CAfile " .. h.q(P.ca))
      srv.stop()
      assert.equal("closed", how1)
      assert.is_true(t1 >= 0.3 and t1 < 2, "silent client closed after " .. t1 .. " s")
      assert.equal("closed", how2)
      assert.is_true(t2 >= 0.3 and t2 < 2, "half ClientHello closed after " .. t2 .. " s")
      assert.is_true(alive)
      assert.matches("Verify return code: 0 %(ok%)", ok)
    end)

    it("closes a connection that speaks plain HTTP to the TLS port and keeps serving", function()
      local srv = start_lua_server { cert = P.server_cert, key = P.server_key }
      local got, how, t = raw_until_closed(srv.port,
        "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\r\n", 3)
      local got2, how2 = raw_until_closed(srv.port, string.rep("\0", 64), 3)
      local curl = h.run("curl -s -o /dev/null -w '%{http_code}' --max-time 5 http://127.0.0.1:" ..
                         srv.port .. "/ 2>&1", 10)
      local alive = srv.alive()
      local after = s_client(srv.port, "localhost", "-CAfile " .. h.q(P.ca))
      srv.stop()
      assert.equal("closed", how)
      assert.is_true(t < 2)
      assert.is_nil(got:match("^HTTP/"), "answered plain HTTP on the TLS port")
      assert.equal("closed", how2)
      assert.is_nil(got2:match("^HTTP/"))
      assert.equal("000", curl)
      assert.is_true(alive)
      assert.matches("subject=CN%s*=%s*localhost", after)
    end)

    it("examples/echo_server.lua --tls serves wss", function()
      if not HAVE_PYTHON then pending("python3 websockets missing") return end
      local srv = start(h.LUA .. " examples/echo_server.lua 0 --tls " .. h.q(P.server_cert) ..
                        " " .. h.q(P.server_key))
      local line = srv.stdout()
      local res = py_client("wss://127.0.0.1:" .. srv.port .. "/", "echo", { "--ca", P.ca })
      srv.stop()
      assert.matches("^listening on wss://127%.0%.0%.1:%d+/\n", line)
      assert.is_true(res.ok, json.encode(res))
      assert.equal(4001, res.close_code)
    end)
  end)

  describe("uvws client against the python websockets wss server", function()
    it("exchanges messages both ways and close codes", function()
      if not HAVE_PYTHON then pending("python3 websockets missing") return end
      local py = start(h.PYTHON .. " spec/peers/tls_server.py " .. h.q(P.server_cert) ..
                       " " .. h.q(P.server_key))
      local r = {}
      in_loop(15, function()
        local url = "wss://localhost:" .. py.port .. "/"
        local ws = assert(uvws.connect(url, { tls = { ca = P.ca }, timeout = 5 }))
        r.info = ws.response.tls
        r.hello = ws:receive(5)
        ws:send("text ✓")
        r.text = table.pack(ws:receive(5))
        ws:send("\0\1\2\255", "binary")
        r.bin = table.pack(ws:receive(5))
        local big = string.rep("abcdefgh", 1024 * 1024 // 8 - 1)
        ws:send(big, "binary")
        r.big = ws:receive(5) == big
        ws:close(4004, "uvws bye")
        r.closed = ws.closed
        -- The python server closes with the code asked for.
        local ws2 = assert(uvws.connect(url, { tls = { ca = P.ca }, timeout = 5 }))
        ws2:receive(5) -- hello
        ws2:send("close:4003")
        r.end2 = table.pack(ws2:receive(5))
        r.code2, r.reason2 = ws2.close_code, ws2.close_reason
        -- Verification applies to a foreign server too.
        r.noca = table.pack(uvws.connect(url, { timeout = 5 }))
      end)
      local deadline = h.now() + 3
      while not py.stdout():match("closed 4004") and h.now() < deadline do h.sleep(0.02) end
      local out = py.stdout()
      py.stop()
      assert.equal("hello from python", r.hello)
      assert.equal("text ✓", r.text[1])
      assert.equal("text", r.text[2])
      assert.equal("\0\1\2\255", r.bin[1])
      assert.equal("binary", r.bin[2])
      assert.is_true(r.big)
      assert.is_true(r.info.verified)
      assert.is_truthy(r.info.version == "TLSv1.3" or r.info.version == "TLSv1.2")
      assert.truthy(r.closed)
      assert.matches("closed 4004 uvws bye", out)
      assert.is_nil(r.end2[1])
      assert.equal("closed", r.end2[3])
      assert.equal(4003, r.code2)
      assert.equal("py server bye", r.reason2)
      assert.is_nil(r.noca[1])
      assert.equal("ECERT", r.noca[3])
    end)
  end)
end)
