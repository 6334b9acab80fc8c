-- The chat example (examples/chat/server.lua) from the outside: static
-- files, the three authentication patterns and their rejections, rooms,
-- presence, history, the limits, the Server-Sent Events fallback, and a
-- Python websockets client.  Every wait is bounded.

local h = require "spec.helper"
local cjson = require "cjson"

local TOKEN, BOT = "s3cret-token", "robot"
local EXTRA_ORIGIN = "https://chat.example.com"

local cs = require "spec.chat_support"
local http, post_json, login, ticket, upgrade, send, wait_for, of_type, open_events =
  cs.http, cs.post_json, cs.login, cs.ticket, cs.upgrade, cs.send, cs.wait_for, cs.of_type,
  cs.open_events

local function join(port, room) return cs.join(port, room, TOKEN) end

---------------------------------------------------------------------------

describe("chat example:", function()
  local srv, port

  setup(function()
    srv = h.start_server("examples/chat/server.lua", {
      "--port", "0", "--token", TOKEN .. "=" .. BOT, "--rate", "60/10",
      "--ticket-ttl", "2", "--origin", EXTRA_ORIGIN })
    port = srv.port
  end)

  teardown(function()
    h.stop_all()
  end)

  describe("static files", function()
    it("serves the page at / with content types, ETag and Cache-Control", function()
      local status, hdrs, body = http(port, "GET", "/")
      assert.equal(200, status)
      assert.equal("text/html; charset=utf-8", hdrs["content-type"])
      assert.equal("no-cache", hdrs["cache-control"])
      assert.matches('^"%x+"$', hdrs["etag"])
      assert.truthy(hdrs["content-security-policy"])
      assert.truthy(body:find("<title>uvws chat</title>", 1, true))
      status, hdrs = http(port, "GET", "/app.js")
      assert.equal(200, status)
      assert.equal("text/javascript; charset=utf-8", hdrs["content-type"])
      status, hdrs = http(port, "GET", "/style.css")
      assert.equal(200, status)
      assert.equal("text/css; charset=utf-8", hdrs["content-type"])
      assert.equal("nosniff", hdrs["x-content-type-options"])
    end)

    it("answers 304 with no body to If-None-Match with the current ETag", function()
      local _, hdrs = http(port, "GET", "/app.js")
      local status, h2, body = http(port, "GET", "/app.js", { ["If-None-Match"] = hdrs.etag })
      assert.equal(304, status)
      assert.equal("", body)
      assert.equal(hdrs.etag, h2.etag)
      status = http(port, "GET", "/app.js", { ["If-None-Match"] = 'W/"0000", ' .. hdrs.etag })
      assert.equal(304, status)
      status = http(port, "GET", "/app.js", { ["If-None-Match"] = '"stale"' })
      assert.equal(200, status)
    end)

    it("serves nothing outside the public folder", function()
      assert.equal(404, (http(port, "GET", "/../server.lua")))
      assert.equal(404, (http(port, "GET", "/%2e%2e/server.lua")))
      assert.equal(404, (http(port, "GET", "/server.lua")))
      assert.equal(404, (http(port, "GET", "/nope.js")))
      local status, hdrs = http(port, "GET", "/login")
      assert.equal(405, status)
      assert.equal("POST", hdrs.allow)
    end)
  end)

  describe("authentication", function()
    it("refuses an upgrade without credentials: 401 with WWW-Authenticate", function()
      local c, status, hdrs, head = upgrade(port, "/chat?room=lobby")
      assert.is_nil(c)
      assert.equal(401, status, head)
      assert.equal('Bearer realm="uvws-chat"', hdrs["www-authenticate"])
    end)

    it("accepts a token in the query string and refuses a bad one", function()
      local c = assert(upgrade(port, "/chat?room=tok&token=" .. TOKEN))
      local w = wait_for(c, of_type("welcome"))
      assert.same({ BOT, "token", "tok", "websocket" }, { w.nick, w.via, w.room, w.transport })
      c:close()
      local _, status, hdrs, head = upgrade(port, "/chat?room=tok&token=nope")
      assert.equal(401, status, head)
      assert.matches('error="invalid_token"', hdrs["www-authenticate"], 1, true)
      assert.truthy(head:find("unknown token", 1, true))
    end)

    it("accepts the session cookie set by POST /login", function()
      local cookie = login(port, "cookie_user")
      local _, _, hdrs = post_json(port, "/login", { nick = "cookie_user2" })
      assert.matches("HttpOnly", hdrs["set-cookie"], 1, true)
      assert.matches("SameSite=Strict", hdrs["set-cookie"], 1, true)
      local c = assert(upgrade(port, "/chat?room=cookies", { Cookie = cookie }))
      local w = wait_for(c, of_type("welcome"))
      assert.same({ "cookie_user", "cookie" }, { w.nick, w.via })
      c:close()
      local _, status = upgrade(port, "/chat?room=cookies", { Cookie = "chat_session=forged" })
      assert.equal(401, status)
    end)

    it("rejects bad nicknames and nicknames in use", function()
      assert.equal(400, (post_json(port, "/login", { nick = "has space" })))
      assert.equal(400, (post_json(port, "/login", { nick = string.rep("x", 21) })))
      assert.equal(400, (post_json(port, "/login", {})))
      assert.equal(409, (post_json(port, "/login", { nick = BOT })))   -- a token's nick
      local cookie = login(port, "dup")
      local c = assert(upgrade(port, "/chat?room=nicks", { Cookie = cookie }))
      wait_for(c, of_type("history"))
      local status, body = post_json(port, "/login", { nick = "dup" })
      assert.equal(409, status)
      assert.equal("the nickname dup is in use, choose another one", body.message)
      -- The same browser logging in again keeps its session.
      assert.equal(200, (post_json(port, "/login", { nick = "dup" }, { Cookie = cookie })))
      c:close()
    end)

    it("accepts a ticket from POST /ticket once, and not after it expires", function()
      assert.equal(401, (post_json(port, "/ticket", {})))
      local cookie = login(port, "ticket_user")
      local t = ticket(port, cookie)
      assert.matches("^%x+$", t)
      local c = assert(upgrade(port, "/chat?room=tickets&ticket=" .. t))   -- no cookie needed
      local w = wait_for(c, of_type("welcome"))
      assert.same({ "ticket_user", "ticket" }, { w.nick, w.via })
      c:close()
      -- Single use.
      local _, status, hdrs, head = upgrade(port, "/chat?room=tickets&ticket=" .. t)
      assert.equal(401, status)
      assert.matches('error="invalid_token"', hdrs["www-authenticate"], 1, true)
      assert.truthy(head:find("ticket unknown, expired or already used", 1, true))
      -- A bad ticket is refused even with a valid cookie.
      _, status = upgrade(port, "/chat?room=tickets&ticket=bogus", { Cookie = cookie })
      assert.equal(401, status)
      -- Expired (the server runs with --ticket-ttl 2).
      local old = ticket(port, cookie)
      h.sleep(2.2)
      _, status = upgrade(port, "/chat?room=tickets&ticket=" .. old)
      assert.equal(401, status)
    end)

    it("refuses a foreign Origin with 403, even with good credentials", function()
      local _, status, _, head = upgrade(port, "/chat?room=o&token=" .. TOKEN,
        { Origin = "http://evil.example" })
      assert.equal(403, status, head)
      assert.truthy(head:find("origin not allowed", 1, true))
      local cookie = login(port, "origin_user")
      _, status = upgrade(port, "/chat?room=o", { Cookie = cookie, Origin = "http://evil.example" })
      assert.equal(403, status)
      -- POSTs check the Origin too.
      assert.equal(403, (post_json(port, "/ticket", {}, { Cookie = cookie, Origin = "http://evil.example" })))
    end)

    it("allows its own origins and the configured ones", function()
      for _, origin in ipairs { "http://127.0.0.1:" .. port, "http://localhost:" .. port, EXTRA_ORIGIN } do
        local c, status = upgrade(port, "/chat?room=o&token=" .. TOKEN, { Origin = origin })
        assert.equal(101, status, origin)
        c:close()
      end
    end)

    it("answers a plain GET on /chat with the upgrade's verdict (the page's probe)", function()
      local status, hdrs = http(port, "GET", "/chat?room=x")
      assert.equal(401, status)
      assert.truthy(hdrs["www-authenticate"])
      status, hdrs = http(port, "GET", "/chat?room=x&token=" .. TOKEN)
      assert.equal(426, status)
      assert.equal("websocket", hdrs.upgrade)
      -- The probe does not use a ticket up.
      local t = ticket(port, login(port, "probe_user"))
      assert.equal(426, (http(port, "GET", "/chat?room=x&ticket=" .. t)))
      local c, st = upgrade(port, "/chat?room=x&ticket=" .. t)
      assert.equal(101, st)
      c:close()
    end)

    it("refuses a bad room name with 400", function()
      local _, status = upgrade(port, "/chat?room=no%20spaces&token=" .. TOKEN)
      assert.equal(400, status)
    end)
  end)

  describe("rooms", function()
    it("announce presence, relay messages within the room and replay history", function()
      local a = join(port, "garden")
      local cookie = login(port, "bea")
      send(a, { type = "message", text = "first" })
      wait_for(a, of_type("message", "text", "first"))

      local b = assert(upgrade(port, "/chat?room=garden", { Cookie = cookie }))
      local w = wait_for(b, of_type("welcome"))
      assert.same({ "bea", BOT }, w.members)
      local hist = wait_for(b, of_type("history"))
      assert.equal(1, #hist.messages)
      assert.same({ BOT, "first", "garden" }, { hist.messages[1].nick, hist.messages[1].text, hist.messages[1].room })
      local p = wait_for(a, of_type("presence", "nick", "bea"))
      assert.equal("join", p.event)
      assert.same({ "bea", BOT }, p.members)

      local other = join(port, "elsewhere")
      send(b, { type = "message", text = "héllo from bea ✓" })
      local m = wait_for(a, of_type("message", "nick", "bea"))
      assert.equal("héllo from bea ✓", m.text)
      assert.is_number(m.id)
      assert.is_number(m.ts)
      send(a, { type = "message", text = "hi bea" })
      wait_for(b, of_type("message", "text", "hi bea"))
      -- Nothing leaked into the other room.
      send(other, { type = "message", text = "other room" })
      local _, before = wait_for(other, of_type("message", "text", "other room"))
      for _, x in ipairs(before) do assert.is_not.equal("message", x.type) end

      b:send(h.close(1000))
      b:close()
      p = wait_for(a, of_type("presence", "nick", "bea"))
      assert.equal("leave", p.event)
      assert.same({ BOT }, p.members)
      a:close()
      other:close()
    end)

    it("keeps the last 50 messages of a room", function()
      local a = join(port, "history")
      for i = 1, 55 do send(a, { type = "message", text = "m" .. i }) end
      wait_for(a, of_type("message", "text", "m55"))
      local b = assert(upgrade(port, "/chat?room=history&token=" .. TOKEN))
      local hist = wait_for(b, of_type("history"))
      assert.equal(50, #hist.messages)
      assert.equal("m6", hist.messages[1].text)
      assert.equal("m55", hist.messages[50].text)
      a:close()
      b:close()
    end)

    it("moves a connection to another room with a join message", function()
      local a = join(port, "from")
      send(a, { type = "join", room = "to" })
      local w = wait_for(a, of_type("welcome"))
      assert.equal("to", w.room)
      send(a, { type = "join", room = "bad room!" })
      local e = wait_for(a, of_type("error"))
      assert.equal("bad_room", e.code)
      a:close()
    end)
  end)

  describe("limits", function()
    it("answers too long a message with a clear error and keeps the connection", function()
      local a = join(port, "limits")
      send(a, { type = "message", text = string.rep("é", 501) })
      local e = wait_for(a, of_type("error"))
      assert.equal("too_long", e.code)
      assert.equal("message too long: 501 characters, the limit is 500", e.message)
      assert.equal(500, e.limit)
      send(a, { type = "message", text = string.rep("x", 20000) })   -- refused before decoding
      e = wait_for(a, of_type("error"))
      assert.equal("too_long", e.code)
      send(a, { type = "message", text = string.rep("é", 500) })
      wait_for(a, of_type("message"))
      a:close()
    end)

    it("answers bad JSON, unknown types and binary frames with errors", function()
      local a = join(port, "limits")
      a:send(h.text("{not json"))
      assert.equal("bad_json", wait_for(a, of_type("error")).code)
      send(a, { type = "shout", text = "x" })
      assert.matches("unknown message type", wait_for(a, of_type("error")).message, 1, true)
      send(a, { type = "message", text = "   " })
      assert.equal("bad_message", wait_for(a, of_type("error")).code)
      a:send(h.binary("\1\2"))
      assert.equal("bad_message", wait_for(a, of_type("error")).code)
      a:close()
    end)

    it("rate-limits each connection with a clear error", function()
      local a = join(port, "flood")
      -- 60 in a burst, then 6 more a second: 80 at once overflow it
      -- unless the machine stalls for seconds.
      for i = 1, 80 do send(a, { type = "message", text = "flood " .. i }) end
      local accepted, errors, first_error = 0, 0, nil
      local deadline = h.now() + 10
      while accepted + errors < 80 and h.now() < deadline do
        local m = wait_for(a, function(m) return m.type == "message" or m.type == "error" end)
        if m.type == "message" then accepted = accepted + 1
        else
          errors = errors + 1
          first_error = first_error or m
        end
      end
      assert.equal(80, accepted + errors)
      assert.is_true(accepted >= 60, "accepted " .. accepted)
      assert.is_true(errors >= 1, "errors " .. errors)
      assert.equal("rate_limited", first_error.code)
      assert.matches("^slow down: at most 60 messages per 10 seconds; try again in", first_error.message)
      assert.is_true(first_error.retry_after > 0)
      -- Another connection has its own budget.
      local b = join(port, "flood")
      send(b, { type = "message", text = "not limited" })
      wait_for(b, of_type("message", "text", "not limited"))
      a:close()
      b:close()
    end)
  end)

  describe("Server-Sent Events fallback", function()
    it("streams the room to an event-stream client and takes its messages by POST /send", function()
      local cookie = login(port, "sse_user")
      local ev = open_events(port, "/events?room=mixed", { Cookie = cookie })
      assert.equal(200, ev.status)
      assert.equal("text/event-stream; charset=utf-8", ev.headers["content-type"])
      assert.equal("chunked", ev.headers["transfer-encoding"])
      assert.equal("no", ev.headers["x-accel-buffering"])
      local w = ev:wait_for(of_type("welcome"))
      assert.same({ "sse_user", "sse", "mixed" }, { w.nick, w.transport, w.room })
      assert.matches("^%x+$", w.sid)
      ev:wait_for(of_type("history"))

      local a = join(port, "mixed")
      ev:wait_for(of_type("presence", "nick", BOT))
      send(a, { type = "message", text = "to the stream" })
      assert.equal(BOT, ev:wait_for(of_type("message", "text", "to the stream")).nick)

      local status, body = post_json(port, "/send", { sid = w.sid, text = "from the stream" })
      assert.equal(200, status, cjson.encode(body))
      assert.equal("sse_user", wait_for(a, of_type("message", "text", "from the stream")).nick)
      ev:wait_for(of_type("message", "text", "from the stream"))

      status, body = post_json(port, "/send", { sid = w.sid, text = string.rep("y", 600) })
      assert.equal(413, status)
      assert.equal("too_long", body.error)
      assert.equal("message too long: 600 characters, the limit is 500", body.message)
      assert.equal(404, (post_json(port, "/send", { sid = "0000", text = "x" })))
      assert.equal(403, (post_json(port, "/send", { sid = w.sid, text = "x" },
                                   { Origin = "http://evil.example" })))

      -- Leaving: closing the stream is a leave for the others.
      ev.c:close()
      local p = wait_for(a, of_type("presence", "nick", "sse_user"))
      assert.equal("leave", p.event)
      assert.equal(404, (post_json(port, "/send", { sid = w.sid, text = "x" })))
      a:close()
    end)

    it("rate-limits POST /send with 429 and Retry-After", function()
      local ev = open_events(port, "/events?room=ssef&token=" .. TOKEN)
      local w = ev:wait_for(of_type("welcome"))
      local got429, hdrs429, body429
      for i = 1, 200 do
        local status, body, hdrs = post_json(port, "/send", { sid = w.sid, text = "s" .. i })
        if status == 429 then got429, hdrs429, body429 = true, hdrs, body break end
      end
      assert.is_true(got429)
      assert.equal("rate_limited", body429.error)
      assert.matches("^%d+$", hdrs429["retry-after"])
      ev.c:close()
    end)

    it("applies the same policy as the upgrade: 401 and 403", function()
      local ev = open_events(port, "/events?room=x")
      assert.equal(401, ev.status)
      assert.truthy(ev.headers["www-authenticate"])
      ev.c:close()
      ev = open_events(port, "/events?room=x&token=" .. TOKEN, { Origin = "http://evil.example" })
      assert.equal(403, ev.status)
      ev.c:close()
    end)
  end)

  describe("Python websockets client", function()
    it("chats with a raw client, and gets 401 for a bad token", function()
      local script = h.tmpname(".py")
      local f = assert(io.open(script, "w"))
      f:write([[
import asyncio, json, sys, websockets
port, token = sys.argv[1], sys.argv[2]
async def main():
    try:
        await websockets.connect(f"ws://127.0.0.1:{port}/chat?token=wrong", open_timeout=5)
    except websockets.exceptions.InvalidStatusCode as e:
        print("rejected", e.status_code, e.headers.get("WWW-Authenticate"))
    async with websockets.connect(f"ws://127.0.0.1:{port}/chat?room=py&token={token}",
                                  open_timeout=5) as ws:
        async def until(pred):
            while True:
                m = json.loads(await asyncio.wait_for(ws.recv(), 5))
                if pred(m): return m
        w = await until(lambda m: m["type"] == "welcome")
        print("welcome", w["nick"], w["room"])
        m = await until(lambda m: m["type"] == "message" and m["nick"] != w["nick"])
        print("got", m["nick"], m["text"])
        await ws.send(json.dumps({"type": "message", "text": "pong from python"}))
        await until(lambda m: m["type"] == "message" and m["text"] == "pong from python")
asyncio.run(main())
]])
      f:close()
      local p = assert(io.popen("timeout 15 " .. h.PYTHON .. " " .. h.q(script) .. " " .. port ..
                                " " .. TOKEN .. " 2>&1"))
      local cookie = login(port, "lua_user")
      local a = assert(upgrade(port, "/chat?room=py", { Cookie = cookie }))
      wait_for(a, of_type("presence", "nick", BOT), 10)
      send(a, { type = "message", text = "ping from lua" })
      assert.equal(BOT, wait_for(a, of_type("message", "text", "pong from python"), 10).nick)
      local out = p:read("a")
      p:close()
      os.remove(script)
      a:close()
      assert.matches('rejected 401 Bearer realm="uvws-chat", error="invalid_token"', out, 1, true)
      assert.matches("welcome " .. BOT .. " py", out, 1, true)
      assert.matches("got lua_user ping from lua", out, 1, true)
    end)
  end)

  it("logs everything without errors on stderr", function()
    assert.is_true(srv.alive())
    assert.equal("", srv.stderr())
  end)
end)
