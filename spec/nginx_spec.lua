-- The chat example behind Debian's nginx as a reverse proxy on loopback.
--
-- Two nginx instances are generated from spec/nginx/chat.conf.in into a
-- temporary folder (pid, logs and temp paths there; `daemon off`, started
-- and killed by pid): "good" forwards the upgrade as the usual recipe says
-- (proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade;
-- proxy_set_header Connection "upgrade"), "broken" does not.  Through the
-- good one the chat works; through the broken one `uvws inspect` fails and
-- says why, and the page's fallback (Server-Sent Events plus POST /send)
-- still works.

local h = require "spec.helper"
local cs = require "spec.chat_support"

local TOKEN, BOT = "nginx-token", "robot"
local NGINX = cs.NGINX

local UPGRADE_LINES, NO_UPGRADE = cs.NGINX_UPGRADE, cs.NGINX_NO_UPGRADE
local start_nginx = cs.start_nginx

local function executable(path)
  return os.execute("test -x " .. h.q(path)) == true
end

local have_nginx = executable(NGINX)

describe("chat behind nginx:", function()
  local srv, good, broken

  setup(function()
    if not have_nginx then return end
    srv = h.start_server("examples/chat/server.lua", { "--port", "0", "--token", TOKEN .. "=" .. BOT })
    good = start_nginx(srv.port, UPGRADE_LINES)
    broken = start_nginx(srv.port, NO_UPGRADE)
  end)

  teardown(function()
    if good then good.stop() end
    if broken then broken.stop() end
    h.stop_all()
  end)

  if not have_nginx then
    pending("nginx is not installed (" .. NGINX .. "): apt-get install nginx")
    return
  end

  it("serves the page through the proxy", function()
    local status, hdrs, body = cs.http(good.port, "GET", "/")
    assert.equal(200, status)
    assert.equal("text/html; charset=utf-8", hdrs["content-type"])
    assert.truthy(body:find("<title>uvws chat</title>", 1, true))
  end)

  it("chats through the proxy: a Python client via nginx and a direct client", function()
    local script = h.tmpname(".py")
    local f = assert(io.open(script, "w"))
    f:write([[
import asyncio, json, sys, websockets
url = sys.argv[1]
async def main():
    async with websockets.connect(url, open_timeout=5) as ws:
        async def until(pred):
            while True:
                m = json.loads(await asyncio.wait_for(ws.recv(), 5))
                if pred(m): return m
        w = await until(lambda m: m["type"] == "welcome")
        print("welcome", w["nick"], w["room"], w["members"])
        m = await until(lambda m: m["type"] == "message" and m["nick"] != w["nick"])
        print("got", m["nick"], m["text"])
        await ws.send(json.dumps({"type": "message", "text": "hello through nginx"}))
        await until(lambda m: m["type"] == "message" and m["text"] == "hello through nginx")
asyncio.run(main())
]])
    f:close()
    local url = "ws://127.0.0.1:" .. good.port .. "/chat?room=proxied&token=" .. TOKEN
    local p = assert(io.popen("timeout 15 " .. h.PYTHON .. " " .. h.q(script) .. " " .. h.q(url) .. " 2>&1"))
    local cookie = cs.login(srv.port, "direct")
    local a = assert(cs.upgrade(srv.port, "/chat?room=proxied", { Cookie = cookie }))
    cs.wait_for(a, cs.of_type("presence", "nick", BOT), 10)
    cs.send(a, { type = "message", text = "hello from a direct client" })
    local m = cs.wait_for(a, cs.of_type("message", "text", "hello through nginx"), 10)
    assert.equal(BOT, m.nick)
    local out = p:read("a")
    p:close()
    os.remove(script)
    a:close()
    assert.matches("welcome " .. BOT .. " proxied", out, 1, true)
    assert.matches("got direct hello from a direct client", out, 1, true)
  end)

  it("logs in, gets a ticket and upgrades with it, all through the proxy", function()
    local cookie = cs.login(good.port, "via_proxy")
    local t = cs.ticket(good.port, cookie)
    local c, status = cs.upgrade(good.port, "/chat?room=proxied&ticket=" .. t)
    assert.equal(101, status)
    local w = cs.wait_for(c, cs.of_type("welcome"))
    assert.same({ "via_proxy", "ticket" }, { w.nick, w.via })
    c:close()
    -- Rejections come through as they are.
    local _, st, hdrs = cs.upgrade(good.port, "/chat?room=proxied&ticket=" .. t)
    assert.equal(401, st)
    assert.matches("Bearer", hdrs["www-authenticate"], 1, true)
  end)

  -- `uvws inspect` through each proxy: status, exit code, report.
  local function inspect(n)
    local url = "ws://127.0.0.1:" .. n.port .. "/chat?room=x&token=" .. TOKEN
    return h.run("lua5.4 bin/uvws inspect " .. h.q(url) .. " 2>&1", 20)
  end

  it("makes `uvws inspect` succeed through the proxy that forwards the upgrade", function()
    local out, code = inspect(good)
    assert.equal(0, code, out)
    assert.matches("< HTTP/1.1 101 Switching Protocols", out, 1, true)
  end)

  it("makes `uvws inspect` fail with the status when the proxy drops the upgrade headers", function()
    local out, code = inspect(broken)
    assert.is_not.equal(0, code, out)
    -- The request left with its upgrade headers and reached the server
    -- without them: uvws answers such a request 400 (RFC 6455 §4.2.1).
    assert.matches("> Upgrade: websocket", out, 1, true)
    assert.matches("< HTTP/1.1 400 Bad Request", out, 1, true)
    assert.matches("FAIL status 400 Bad Request instead of 101 Switching Protocols", out, 1, true)
    assert.matches("Verdict: FAILED", out, 1, true)
  end)

  it("makes `uvws inspect` explain that the proxy dropped the upgrade headers", function()
    local out = inspect(broken)
    -- The verdict and hints, not the heads, with the line wrapping undone.
    local report = (out:match("\n%s*FAIL.*$") or ""):gsub("%s+", " ")
    if not report:find("proxy", 1, true) then
      -- uvws inspect neither shows the server's reason (the body "Upgrade
      -- header must contain the token websocket") nor mentions proxies for
      -- a 400: that needs a change in lua/uvws/inspect.lua (reported).
      pending("uvws inspect does not explain a 400 from behind a proxy yet")
      return
    end
    assert.matches("Upgrade", report, 1, true)
    assert.matches("proxy_set_header Upgrade", report, 1, true)
  end)

  it("still chats through the broken proxy with the page's fallback (SSE + POST /send)", function()
    local cookie = cs.login(broken.port, "fallback")
    -- The page's probe: credentials fine, upgrade lost.
    assert.equal(426, (cs.http(broken.port, "GET", "/chat?room=degraded", { Cookie = cookie })))
    local ev = cs.open_events(broken.port, "/events?room=degraded", { Cookie = cookie })
    assert.equal(200, ev.status)
    assert.matches("^text/event%-stream", ev.headers["content-type"])
    local w = ev:wait_for(cs.of_type("welcome"))
    assert.equal("sse", w.transport)
    local a = assert(cs.upgrade(good.port, "/chat?room=degraded&token=" .. TOKEN))
    ev:wait_for(cs.of_type("presence", "nick", BOT))
    cs.send(a, { type = "message", text = "over the good proxy" })
    ev:wait_for(cs.of_type("message", "text", "over the good proxy"))
    local status = cs.post_json(broken.port, "/send", { sid = w.sid, text = "over the broken one" })
    assert.equal(200, status)
    assert.equal("fallback", cs.wait_for(a, cs.of_type("message", "text", "over the broken one")).nick)
    ev.c:close()
    a:close()
  end)

  it("leaves nginx and the server healthy", function()
    assert.is_true(h.alive(good.pid))
    assert.is_true(h.alive(broken.pid))
    assert.is_true(srv.alive())
    assert.equal("", srv.stderr())
    assert.is_nil(good.log():match("%[emerg%]"))
  end)
end)
