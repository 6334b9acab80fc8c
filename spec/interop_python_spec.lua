-- Interoperability with the Python `websockets` 10.4 client
-- (/usr/bin/python3).  spec/peers/client.py runs one scenario and prints
-- a JSON result, checked here.  Protocol errors are not tried from Python
-- (websockets cannot easily send invalid frames); conformance_spec.lua
-- covers them with raw bytes.

local h = require "spec.helper"
local json = require "dkjson"

local function python_ok()
  local out = h.run(h.PYTHON .. " -c 'import websockets; print(websockets.__version__)' 2>/dev/null", 10)
  return out and out:match("^%d") ~= nil, out
end

local HAVE_PYTHON = python_ok()

-- Runs a scenario against url; returns the decoded JSON result.
local function peer(scenario, url, no_compression)
  local cmd = h.PYTHON .. " spec/peers/client.py " .. scenario .. " " .. h.q(url) ..
              (no_compression and " --no-compression" or "") .. " 2>&1"
  local out = h.run(cmd, 40)
  local last = out:match("([^\n]*)\n?$")
  local res = json.decode(last)
  assert.is_table(res, "peer printed no JSON:\n" .. out)
  return res
end

local function summary(res)
  return json.encode(res)
end

describe("interop with python websockets:", function()
  if not HAVE_PYTHON then
    it("is skipped: /usr/bin/python3 cannot import websockets", function()
      pending("python3 websockets is not importable; interop specs skipped")
    end)
    return
  end

  local srv, url

  setup(function()
    srv = h.start_server()
    url = "ws://127.0.0.1:" .. srv.port .. "/"
  end)

  teardown(function()
    h.stop_all()
  end)

  for _, mode in ipairs{ { "with permessage-deflate offered", false },
                         { "with compression=None", true } } do
    local name, nocomp = mode[1], mode[2]

    describe(name, function()
      it("echoes text, binary, empty, 125/126/65535/65536-byte and 1 MiB messages", function()
        local res = peer("echo", url, nocomp)
        assert.is_true(res.ok, summary(res))
        assert.equal(15, #res.results)
        if nocomp then
          assert.same({}, res.extensions)
        else
          -- The server may decline the offer or take it; either must work.
          assert.is_true(#res.extensions == 0 or
                         (#res.extensions == 1 and res.extensions[1] == "PerMessageDeflate"),
                         summary(res.extensions))
        end
        assert.equal(1000, res.close_code)
      end)

      it("echoes fragmented text and binary messages whole", function()
        local res = peer("fragmented", url, nocomp)
        assert.is_true(res.ok, summary(res))
        assert.equal(3, #res.results)
      end)
    end)
  end

  it("gets pongs for pings with and without payload", function()
    local res = peer("ping", url, true)
    assert.is_true(res.ok, summary(res))
    assert.equal("after ping", res.echo)
  end)

  it("sees its close code 1000 echoed when it closes", function()
    local res = peer("close_1000", url, true)
    assert.is_true(res.ok, summary(res))
    assert.equal(1000, res.close_code)
  end)

  it("sees its close code 4000 echoed when it closes with a reason", function()
    local res = peer("close_4000", url, true)
    assert.is_true(res.ok, summary(res))
    assert.equal(4000, res.close_code)
  end)

  it("receives code 4001 and reason 'bye' when the server closes", function()
    local s = h.start_server(nil, nil, h.server_source("",
      [[function(ws) ws:close(4001, "bye") end]]))
    finally(s.stop)
    local res = peer("server_close", "ws://127.0.0.1:" .. s.port .. "/", false)
    assert.is_true(res.ok, summary(res))
    assert.equal(4001, res.close_code)
    assert.equal("bye", res.close_reason)
  end)
end)
