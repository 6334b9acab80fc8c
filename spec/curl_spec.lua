-- The opening handshake as curl sends it: a hand-made upgrade request over
-- plain HTTP.

local h = require "spec.helper"

local function curl(port, key)
  local cmd = "curl -s -i -N --max-time 2" ..
              " -H 'Connection: Upgrade' -H 'Upgrade: websocket'" ..
              " -H 'Sec-WebSocket-Version: 13'" ..
              " -H " .. h.q("Sec-WebSocket-Key: " .. key) ..
              " http://127.0.0.1:" .. port .. "/"
  local out = h.run(cmd, 5)
  return out
end

describe("curl upgrade request:", function()
  local srv

  setup(function()
    srv = h.start_server()
  end)

  teardown(function()
    h.stop_all()
  end)

  it("gets 101 with the accept key of the RFC 6455 sample nonce", function()
    local out = curl(srv.port, h.SAMPLE_KEY)
    local status = out:match("^HTTP/1%.1 (%d%d%d)")
    assert.equal("101", status, out)
    assert.truthy(out:find("Sec-WebSocket-Accept: " .. h.SAMPLE_ACCEPT, 1, true), out)
  end)

  it("gets 400 naming the bad Sec-WebSocket-Key for a 4-byte key", function()
    local out = curl(srv.port, "dGVzdA==")
    local status = out:match("^HTTP/1%.1 (%d%d%d)")
    assert.equal("400", status, out)
    local body = out:match("\r\n\r\n(.*)$") or ""
    assert.truthy(body:find("Sec-WebSocket-Key must be 16 random bytes in base64", 1, true), out)
  end)

  it("leaves the server serving WebSocket clients", function()
    assert.is_true(h.echo_works(srv.port))
  end)
end)
