---------------------------------------------------------------------------
-- The client through a real HTTP CONNECT proxy (Debian's tinyproxy, on
-- loopback, with a generated configuration), proxy selection from the
-- environment (http_proxy, no_proxy) in a subprocess, and redirect chains
-- (spec/peers/client_raw_server.py answering 302s).

local h = require "spec.helper"
local socket = require "socket"
local uvws = require "uvws"

-- Runs fn inside a uvws coroutine, driving the loop until it returns
-- (bounded); re-raises its error here.
local run = h.run_uvws

-- Starts a subprocess from the repository root; `ready(p)` says when it is
-- up (polled for at most 10 s).  Returns {stop, stdout, pid}.
local function start_process(cmd, ready) return h.start_process(cmd, ready) end

local function start_raw()
  local p = start_process(h.PYTHON .. " spec/peers/client_raw_server.py", function(p)
    local port = p.stdout():match("listening on ws://127%.0%.0%.1:(%d+)/")
    p.port = tonumber(port)
    return port ~= nil
  end)
  p.url = "ws://127.0.0.1:" .. p.port
  return p
end

-- A loopback port that is free right now.
local function free_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

-- Runs a shell pipeline (bounded); returns stdout, exit status, stderr.
local function sh(pipeline, secs)
  local errf = os.tmpname()
  local out, code = h.run("sh -c " .. h.q(pipeline .. " 2>" .. h.q(errf)), secs or 20)
  local err = h.read_file(errf) or ""
  os.remove(errf)
  return out, code, err
end

-- Is tinyproxy there?  As root, try to install it once.
local function tinyproxy_ready()
  local function found() return sh("command -v tinyproxy"):match("tinyproxy") ~= nil end
  if found() then return true end
  if sh("id -u"):match("^0") then
    sh("DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tinyproxy >/dev/null 2>&1 || " ..
       "(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tinyproxy)" ..
       " >/dev/null 2>&1", 240)
    if found() then return true end
    return nil, "apt-get install tinyproxy failed"
  end
  return nil, "tinyproxy is not installed (apt-get install tinyproxy)"
end

-- Starts tinyproxy on a free loopback port, allowing CONNECT only to
-- `ports`; `auth` = "user password" turns on Basic authentication.
local function start_tinyproxy(ports, auth)
  local port = free_port()
  local conf, log = os.tmpname(), os.tmpname()
  local lines = {
    "Port " .. port, "Listen 127.0.0.1", "Timeout 30", "MaxClients 32",
    "Allow 127.0.0.1", "LogLevel Connect", 'LogFile "' .. log .. '"',
  }
  for _, p in ipairs(ports) do lines[#lines + 1] = "ConnectPort " .. p end
  if auth then lines[#lines + 1] = "BasicAuth " .. auth end
  local f = assert(io.open(conf, "w"))
  f:write(table.concat(lines, "\n"), "\n")
  f:close()
  local p = start_process("tinyproxy -d -c " .. h.q(conf), function()
    local c = socket.connect("127.0.0.1", port)
    if c then c:close() end
    return c ~= nil
  end)
  local stop = p.stop
  function p.stop()
    stop()
    os.remove(conf)
    os.remove(log)
  end
  function p.log() return h.read_file(log) or "" end
  -- The number of CONNECT requests to `target` ("127.0.0.1:PORT") so far.
  function p.connects(target)
    local n = 0
    for _ in p.log():gmatch("Request %(file descriptor %d+%): CONNECT " ..
      target:gsub("%p", "%%%0")) do n = n + 1 end
    return n
  end
  p.port = port
  p.url = "http://127.0.0.1:" .. port
  return p
end

---------------------------------------------------------------------------

describe("through an HTTP CONNECT proxy (tinyproxy):", function()
  local ok, why = tinyproxy_ready()
  if not ok then
    it("is skipped", function() pending("proxy specs skipped: " .. why) end)
    return
  end

  local echo, raw, proxy, authproxy, target

  setup(function()
    echo = h.start_server()
    raw = start_raw()
    target = "127.0.0.1:" .. echo.port
    proxy = start_tinyproxy({ echo.port })
    authproxy = start_tinyproxy({ echo.port }, "user s3cret")
  end)
  teardown(function()
    if proxy then proxy.stop() end
    if authproxy then authproxy.stop() end
    if raw then raw.stop() end
    h.stop_all()
  end)

  it("opts.proxy tunnels the WebSocket through CONNECT", function()
    local before = proxy.connects(target)
    run(function()
      local ws, err, name = uvws.connect("ws://" .. target .. "/via-proxy",
        { proxy = proxy.url, timeout = 5 })
      assert.is_truthy(ws, tostring(err) .. " " .. tostring(name))
      assert.matches("^GET /via%-proxy HTTP/1%.1\r\nHost: " .. target:gsub("%p", "%%%0"),
        ws.response.request_raw)
      assert.is_true(ws:send("through the tunnel"))
      assert.equal("through the tunnel", ws:receive(3))
      assert.is_number(ws:ping("p", 3))
      ws:close()
    end)
    assert.equal(before + 1, proxy.connects(target))
  end)

  it("a proxy that refuses the CONNECT gives EPROXY with its status", function()
    run(function()
      -- The raw server's port is not a ConnectPort of this proxy.
      local ws, msg, name, resp = uvws.connect(raw.url .. "/ok", { proxy = proxy.url })
      assert.is_nil(ws)
      assert.equal("EPROXY", name)
      assert.equal("the proxy refused the CONNECT request with status 403", msg)
      assert.equal(403, resp.status)
    end)
  end)

  it("sends proxy credentials from the proxy URL (Basic)", function()
    run(function()
      local url = "http://user:s3cret@127.0.0.1:" .. authproxy.port
      local ws, err, name = uvws.connect("ws://" .. target .. "/", { proxy = url })
      assert.is_truthy(ws, tostring(err) .. " " .. tostring(name))
      ws:send("authorized")
      assert.equal("authorized", ws:receive(3))
      ws:close()
      local ws2, _, name2, resp = uvws.connect("ws://" .. target .. "/", { proxy = authproxy.url })
      assert.is_nil(ws2)
      assert.equal("EPROXY", name2)
      assert.equal(407, resp.status)
      ws2, _, name2, resp = uvws.connect("ws://" .. target .. "/",
        { proxy = "http://user:wrong@127.0.0.1:" .. authproxy.port })
      assert.is_nil(ws2)
      assert.equal("EPROXY", name2)
      -- tinyproxy 1.11 answers wrong credentials with 401 rather than 407.
      assert.is_true(resp.status == 401 or resp.status == 407, tostring(resp.status))
    end)
  end)

  it("takes the proxy from http_proxy in the environment (a subprocess)", function()
    local before = proxy.connects(target)
    local out, code, err = sh("printf 'via env\\n' | http_proxy=" .. proxy.url ..
      " no_proxy= lua5.4 bin/uvws connect -q ws://" .. target .. "/")
    assert.equal("via env\n", out, err)
    assert.equal(0, code)
    assert.equal(before + 1, proxy.connects(target))
  end)

  it("uvws inspect works through the proxy and explains a refused tunnel", function()
    local out, code = sh("lua5.4 bin/uvws inspect --proxy " .. proxy.url .. " ws://" .. target .. "/")
    assert.equal(0, code, out)
    assert.matches("< HTTP/1%.1 101 Switching Protocols", out)
    assert.matches("Verdict: OK", out)
    out, code = sh("lua5.4 bin/uvws inspect --proxy " .. proxy.url .. " " .. raw.url .. "/ok")
    assert.equal(1, code, out)
    assert.matches("FAIL the proxy refused the CONNECT request with status 403", out)
    assert.matches("Verdict: FAILED %(EPROXY%)", out)
  end)

  it("no_proxy and --no-proxy bypass it", function()
    local dead = "http://127.0.0.1:" .. free_port()
    -- With a dead proxy and no bypass, the connection fails ...
    local out, code, err = sh("http_proxy=" .. dead .. " no_proxy= lua5.4 bin/uvws connect " ..
      "ws://" .. target .. "/ </dev/null")
    assert.equal(1, code, out)
    assert.matches("ECONNREFUSED", err)
    -- ... and each bypass goes straight to the server.
    for _, env in ipairs { "no_proxy=127.0.0.1", "no_proxy=example.com,127.0.0.1:9",
                           "NO_PROXY='*'" } do
      out, code, err = sh("printf 'direct\\n' | env -u no_proxy http_proxy=" .. dead .. " " ..
        env .. " lua5.4 bin/uvws connect -q ws://" .. target .. "/")
      assert.equal("direct\n", out, env .. ": " .. err)
      assert.equal(0, code)
    end
    out, code = sh("printf 'flag\\n' | http_proxy=" .. dead .. " no_proxy= lua5.4 bin/uvws " ..
      "connect -q --no-proxy ws://" .. target .. "/")
    assert.equal("flag\n", out)
    assert.equal(0, code)
  end)
end)

describe("redirects:", function()
  local echo, raw, final

  setup(function()
    echo = h.start_server()
    raw = start_raw()
    final = "ws://127.0.0.1:" .. echo.port .. "/end"
  end)
  teardown(function()
    if raw then raw.stop() end
    h.stop_all()
  end)

  -- A chain of n + 1 redirects (relative ones, then an absolute one) that
  -- ends at the echo server.
  local function chain(n) return raw.url .. "/redirect?n=" .. n .. "&to=" .. final end

  it("follow_redirects = 3 follows a chain of 2 to the real server", function()
    run(function()
      local ws, err, name = uvws.connect(chain(1), { follow_redirects = 3 })
      assert.is_truthy(ws, tostring(err) .. " " .. tostring(name))
      assert.equal(echo.port, ws.url.port)
      assert.equal("/end", ws.url.target)
      assert.matches("^GET /end HTTP/1%.1", ws.response.request_raw)
      ws:send("arrived")
      assert.equal("arrived", ws:receive(3))
      ws:close()
    end)
  end)

  it("by default a redirect fails with ESTATUS and the 302 response", function()
    run(function()
      local ws, msg, name, resp = uvws.connect(chain(1))
      assert.is_nil(ws)
      assert.equal("ESTATUS", name)
      assert.matches("status 302", msg)
      assert.equal(302, resp.status)
      assert.matches("^/redirect%?n=0&to=", resp.headers.location)
    end)
  end)

  it("more hops than follow_redirects allows: EREDIRECT", function()
    run(function()
      local ws, msg, name, resp = uvws.connect(chain(3), { follow_redirects = 3 })
      assert.is_nil(ws)
      assert.equal("EREDIRECT", name)
      assert.matches("too many redirects", msg)
      assert.equal(302, resp.status)
    end)
  end)
end)
