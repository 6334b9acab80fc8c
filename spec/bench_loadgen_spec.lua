-- bench/loadgen.lua, the load generator of bench/tls_deflate.sh, keeps
-- working: short runs against examples/echo_server.lua (plain, --deflate,
-- --tls with a throwaway certificate) must print one JSON line with
-- messages counted, no errors and the extension negotiated when asked.
-- About 5 s in all; loadgen runs under `timeout`, the servers are stopped
-- in teardown.

local h = require "spec.helper"
local json = require "dkjson"

local HAVE_OPENSSL = os.execute("openssl version >/dev/null 2>&1") == true
local ENV = "env LUA_PATH='./lua/?.lua;./lua/?/init.lua;;' LUA_CPATH='./build/?.so;;' "

-- Runs loadgen with `args`; returns the decoded JSON line (or nil), its
-- raw output and the exit status.
local function loadgen(args)
  local out, code = h.run(ENV .. h.LUA .. " bench/loadgen.lua " .. args .. " 2>&1", 30)
  local line = out:match("({[^\n]*})")
  return line and json.decode(line), out, code
end

local function start_echo(args)
  return h.start_process(ENV .. h.LUA .. " examples/echo_server.lua 0 " .. args, function(p)
    local port = p.stdout():match("listening on wss?://127%.0%.0%.1:(%d+)/")
    p.port = tonumber(port)
    return port ~= nil
  end)
end

describe("bench/loadgen.lua", function()
  if not h.core_ready() then
    it("is skipped: build/uvws/core.so is missing", function() pending("run make first") end)
    return
  end

  local plain, deflate, tls, certdir
  setup(function()
    plain = start_echo("")
    deflate = start_echo("--deflate")
    if HAVE_OPENSSL then
      os.execute("mkdir -p /tmp/tlsbench")
      local p = assert(io.popen("mktemp -d /tmp/tlsbench/spec.XXXXXX"))
      certdir = p:read("l")
      p:close()
      assert(os.execute("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost" ..
        " -keyout " .. h.q(certdir .. "/key.pem") .. " -out " .. h.q(certdir .. "/cert.pem") ..
        " >/dev/null 2>&1"))
      tls = start_echo("--tls " .. h.q(certdir .. "/cert.pem") .. " " .. h.q(certdir .. "/key.pem") ..
                       " --deflate")
    end
  end)
  teardown(function()
    for _, s in ipairs { plain, deflate, tls } do if s then s.stop() end end
    if certdir then os.execute("rm -rf " .. h.q(certdir)) end
  end)

  local function check(r, out, code)
    assert.is_table(r, out)
    assert.equal(0, code, out)
    assert.equal("echo", r.mode)
    assert.is_true(r.msgs_per_s > 0, out)
    assert.is_true(r.msgs > 0, out)
    assert.equal(0, r.errors, out)
    assert.is_true(r.seconds > 0.5 and r.seconds < 2, out)
    assert.is_number(r.client_cpu)
    assert.is_number(r.server_cpu)
    assert.is_true(r.server_cpu >= 0, out)
  end

  it("echoes over ws:// without deflate and reads the server's CPU", function()
    local r, out, code = loadgen("url=ws://127.0.0.1:" .. plain.port .. "/ conns=4 size=1024 depth=2" ..
      " secs=1 warm=0.2 deflate=off pid=" .. plain.pid .. " label=spec")
    check(r, out, code)
    assert.equal("spec", r.label)
    assert.equal(4, r.conns)
    assert.equal(1024, r.size)
    assert.equal(2, r.depth)
    assert.is_false(r.tls)
    assert.is_false(r.deflate)
    assert.is_false(r.negotiated_deflate)
    assert.is_true(r.wire_ratio >= 1, out)   -- frame headers, nothing compressed
  end)

  it("negotiates permessage-deflate when asked, and the JSON payload shrinks", function()
    local r, out, code = loadgen("url=ws://127.0.0.1:" .. deflate.port .. "/ conns=4 size=1024" ..
      " secs=1 warm=0.2 deflate=on payload=json text pid=" .. deflate.pid)
    check(r, out, code)
    assert.is_true(r.deflate)
    assert.is_true(r.negotiated_deflate, out)
    assert.equal("text", r.kind)
    assert.is_true(r.wire_ratio < 0.6, out)
  end)

  it("echoes over wss:// (self-signed certificate) with deflate", function()
    if not tls then pending("openssl CLI missing") return end
    local r, out, code = loadgen("url=wss://127.0.0.1:" .. tls.port .. "/ conns=4 size=256 depth=4" ..
      " secs=1 warm=0.2 deflate=on payload=random pid=" .. tls.pid)
    check(r, out, code)
    assert.is_true(r.tls)
    assert.is_true(r.negotiated_deflate, out)
    assert.is_true(r.wire_ratio > 1, out)    -- random bytes do not compress
  end)

  it("exits 1 with a failed JSON line when it cannot connect, 2 on a remote target", function()
    local r, out, code = loadgen("url=ws://127.0.0.1:1/ conns=2 secs=1 setup=2")
    assert.equal(1, code, out)
    assert.is_table(r, out)
    assert.matches("^connect:", r.failed)
    local _, out2, code2 = loadgen("url=ws://192.0.2.1:80/ secs=1")
    assert.equal(2, code2, out2)
    assert.matches("loopback", out2)
  end)
end)
