--- The uvws chat server: a page, a WebSocket endpoint and its Server-Sent
-- Events fallback, on one port.
--
--   lua5.4 examples/chat/server.lua [--port 8080] [--host 127.0.0.1]
--          [--origin URL]... [--token TOKEN=NICK]... [--rate N/SECONDS]
--          [--max-text CHARS] [--history N] [--ticket-ttl SECONDS]
--
-- HTTP routes (on_request):
--   GET  /, /app.js, /style.css   the page (static.lua)
--   POST /login {nick}            sets the session cookie
--   POST /logout, GET /me         ends the session, says who is logged in
--   POST /ticket                  a single-use ticket for /chat (needs the cookie)
--   GET  /events?room=R           the Server-Sent Events fallback
--   POST /send {sid, text}        a message from an event-stream client
--   GET  /chat (no upgrade)       says why an upgrade would fail: 401/403, or
--                                 426 when the credentials are fine (the
--                                 page then knows a proxy ate the upgrade)
-- WebSocket: GET /chat?room=R with a token, a ticket or the cookie (auth.lua).
local here = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path

local uvws = require "uvws"
local cjson = require "cjson"
local auth_mod = require "auth"
local rooms = require "rooms"
local static = require "static"
local parse_query = require("uvws.request").parse_query

------------------------------------------------------------------------------
-- Configuration
------------------------------------------------------------------------------

local USAGE = [[
usage: lua5.4 examples/chat/server.lua [options]
  --port N              port to listen on (default 8080; 0 picks a free one)
  --host ADDR           address to bind (default 127.0.0.1)
  --origin URL          also allow this page origin (repeatable; "*" allows any).
                        http://127.0.0.1:PORT, http://localhost:PORT and
                        http://[::1]:PORT are always allowed
  --token TOKEN=NICK    a bearer token for a bot or script (repeatable); without
                        one, a random token for the nick "bot" is printed
  --rate N/SECONDS      per-connection rate limit (default 10/10)
  --max-text CHARS      longest message (default 500)
  --history N           messages replayed on join (default 50)
  --ticket-ttl SECONDS  lifetime of a ticket from POST /ticket (default 30)
]]

local function usage(msg)
  io.stderr:write("chat: ", msg, "\n", USAGE)
  os.exit(2)
end

local function parse_args(argv)
  local cfg = { port = 8080, host = "127.0.0.1", origins = {}, tokens = {},
                rate = 10, per = 10, max_text = 500, history = 50, ticket_ttl = 30 }
  local i = 1
  local function value()
    i = i + 1
    local v = argv[i]
    if v == nil then usage(argv[i - 1] .. " needs a value") end
    return v
  end
  local function number(v, what)
    local n = tonumber(v)
    if not n or n < 0 then usage(what .. " must be a non-negative number") end
    return n
  end
  while i <= #argv do
    local a = argv[i]
    if a == "--port" then
      cfg.port = math.tointeger(number(value(), "--port")) or usage("--port must be an integer")
    elseif a == "--host" then cfg.host = value()
    elseif a == "--origin" then table.insert(cfg.origins, value())
    elseif a == "--token" then
      local t, nick = value():match("^([^=]+)=(.+)$")
      if not t or not auth_mod.valid_nick(nick) then usage("--token wants TOKEN=NICK") end
      cfg.tokens[t] = nick
    elseif a == "--rate" then
      local n, s = value():match("^(%d+)/([%d.]+)$")
      if not n or tonumber(n) < 1 or tonumber(s) <= 0 then usage("--rate wants N/SECONDS") end
      cfg.rate, cfg.per = tonumber(n), tonumber(s)
    elseif a == "--max-text" then cfg.max_text = math.max(1, number(value(), "--max-text") // 1)
    elseif a == "--history" then cfg.history = number(value(), "--history") // 1
    elseif a == "--ticket-ttl" then cfg.ticket_ttl = number(value(), "--ticket-ttl")
    elseif a == "-h" or a == "--help" then io.write(USAGE) os.exit(0)
    elseif a:match("^%d+$") then cfg.port = tonumber(a)   -- like the echo example
    else usage("unknown option " .. a) end
    i = i + 1
  end
  return cfg
end

local cfg = parse_args(arg or {})
local generated_token
if not next(cfg.tokens) then
  generated_token = auth_mod.random_id(12)
  cfg.tokens[generated_token] = "bot"
end

-- JSON: a private cjson instance, so this setting touches no other user.
local json = cjson.new()
json.decode_max_depth(8)                    -- chat messages are flat

local auth = auth_mod.new { tokens = cfg.tokens, ticket_ttl = cfg.ticket_ttl }
local hub = rooms.new { json = json, history = cfg.history, rate = cfg.rate, per = cfg.per,
                        max_text = cfg.max_text, now = uvws.now, new_id = auth_mod.random_id }
local files = static.new(here .. "/public")

------------------------------------------------------------------------------
-- Policy helpers
------------------------------------------------------------------------------

local origins = {}   -- filled once the port is known

-- Origin policy: browsers always send Origin on a WebSocket upgrade and on
-- a POST, so a present Origin must be on the allow-list; that stops another
-- site from using a visitor's cookie (cross-site WebSocket hijacking,
-- CSRF).  A request without Origin does not come from a page (a bot, curl)
-- and is judged by its credentials alone.
local function origin_failure(req)
  local o = req.headers.origin
  if o == nil or uvws.origin_allowed(o, origins) then return nil end
  return { status = 403, body = "origin not allowed: " .. o .. "\n",
           headers = { ["Cache-Control"] = "no-store" } }
end

local function room_of(req)
  local room = req.query.room or "lobby"
  if rooms.valid_room(room) then return room end
  return nil, { status = 400, body = "bad room name: 1 to 32 letters, digits, _ or -\n" }
end

-- Who may chat, and where: the one policy behind the upgrade, the event
-- stream and the probe.  Returns identity, room or nil, failure.
local function admit(req, peek)
  local fail = origin_failure(req)
  if fail then return nil, fail end
  local who; who, fail = auth:identify(req, peek)
  if not who then return nil, fail end
  local room; room, fail = room_of(req)
  if not room then return nil, fail end
  return who, room
end

local function answer(status, body, headers)
  headers = headers or {}
  headers["Content-Type"] = headers["Content-Type"] or "text/plain; charset=utf-8"
  return status, body, headers
end

local function reply_json(status, t, headers)
  headers = headers or {}
  headers["Content-Type"] = "application/json"
  headers["Cache-Control"] = "no-store"
  return status, json.encode(t), headers
end

local function fail_json(f, code)
  return reply_json(f.status, { error = code, message = (f.body:gsub("\n$", "")) }, f.headers)
end

-- The body of a POST as a table: JSON or a form.
local function body_of(req)
  local ctype = (req.headers["content-type"] or ""):lower()
  local body = req.body or ""
  if ctype:find("application/x-www-form-urlencoded", 1, true) then
    return (parse_query(body))
  end
  local ok, t = pcall(json.decode, body ~= "" and body or "{}")
  if ok and type(t) == "table" then return t end
  return nil
end

------------------------------------------------------------------------------
-- HTTP routes
------------------------------------------------------------------------------

local routes = {}

routes["POST /login"] = function(req)
  local b = body_of(req)
  local nick = b and b.nick
  if not auth_mod.valid_nick(nick) then
    return reply_json(400, { error = "bad_nick",
      message = "a nickname is 1 to 20 letters, digits, _, - or ." })
  end
  local id, s = auth:session(req)
  local owner = id and "session:" .. id
  if not (s and s.nick == nick) then
    if auth:reserved(nick) or hub:taken(nick, owner) then
      return reply_json(409, { error = "nick_taken", message = "the nickname " .. nick ..
        " is in use, choose another one" })
    end
    if id then auth:logout(req) end
    local cookie; id, cookie = auth:login(nick)
    if not id then return fail_json(cookie, "unavailable") end
    return reply_json(200, { nick = nick }, { ["Set-Cookie"] = cookie })
  end
  return reply_json(200, { nick = nick })
end

routes["POST /logout"] = function(req)
  return reply_json(200, { ok = true }, { ["Set-Cookie"] = auth:logout(req) })
end

routes["GET /me"] = function(req)
  local id, s = auth:session(req)
  if not id then return fail_json(auth_mod.unauthorized("not logged in"), "unauthorized") end
  return reply_json(200, { nick = s.nick })
end

routes["POST /ticket"] = function(req)
  local ticket, ttl = auth:issue_ticket(req)
  if not ticket then return fail_json(ttl, "unauthorized") end
  return reply_json(200, { ticket = ticket, expires_in = ttl })
end

-- The probe: a plain GET on the WebSocket URL runs the upgrade's policy
-- without using the ticket up.  Credentials that pass get 426, which tells
-- the page that something between it and us dropped the upgrade.
routes["GET /chat"] = function(req)
  local who, fail = admit(req, true)
  if not who then return answer(fail.status, fail.body, fail.headers) end
  return answer(426, "this is the WebSocket endpoint, but the request arrived without " ..
    "its Upgrade: websocket header (a proxy may have dropped it); use /events instead\n",
    { Upgrade = "websocket", ["Cache-Control"] = "no-store" })
end

routes["GET /events"] = function(req, res)
  local who, room = admit(req, false)
  if not who then return answer(room.status, room.body, room.headers) end
  res:start(200, {
    ["Content-Type"] = "text/event-stream; charset=utf-8",
    ["Cache-Control"] = "no-store",
    ["X-Accel-Buffering"] = "no",      -- nginx: pass events on at once
  })
  local c = hub:sse_client(res, who)
  res:write("retry: 2000\n\n")          -- EventSource reconnects after 2 s
  res.on_close = function() hub:drop(c) end
  local joined, e = hub:join(c, room)
  if not joined then                    -- no room for it: say so and end
    res:write("data: " .. hub:encode(e) .. "\n\n")
    res:finish()
    return hub:drop(c)
  end
  -- A comment every 15 s keeps proxies from timing the stream out and
  -- notices a vanished client.
  while not res.closed do
    uvws.sleep(15)
    if not res:write(": keepalive\n\n") then break end
  end
  hub:drop(c)
end

routes["POST /send"] = function(req)
  local b = body_of(req)
  if not b then
    return reply_json(400, { error = "bad_json", message = "send a JSON object {sid, text}" })
  end
  local c = hub:stream(b.sid)
  if not c then
    return reply_json(404, { error = "no_stream",
      message = "no open event stream with this sid: reconnect to /events" })
  end
  local msg, err = hub:post(c, b.text)
  if msg then return reply_json(200, { ok = true, id = msg.id }) end
  -- The error goes back in the answer, with the status that says it.
  local status = ({ too_long = 413, rate_limited = 429 })[err.code] or 400
  local headers = err.retry_after and { ["Retry-After"] = tostring(math.ceil(err.retry_after)) }
  return reply_json(status, { error = err.code, message = err.message, limit = err.limit,
                              retry_after = err.retry_after }, headers)
end

local ALLOW = {}
for key in pairs(routes) do
  local method, path = key:match("^(%S+) (.+)$")
  ALLOW[path] = ALLOW[path] and (ALLOW[path] .. ", " .. method) or method
end

local function on_request(req, res)
  local route = routes[req.method .. " " .. req.path]
  if route and req.method == "POST" then
    local fail = origin_failure(req)   -- no cross-site form posts with our cookie
    if fail then return fail_json(fail, "forbidden") end
  end
  if route then return route(req, res) end
  if ALLOW[req.path] then
    return answer(405, "method not allowed\n", { Allow = ALLOW[req.path] })
  end
  if req.method == "GET" or req.method == "HEAD" then
    local status, body, headers = files(req)
    if status then return status, body, headers end
  end
  return answer(404, "not found\n")
end

------------------------------------------------------------------------------
-- WebSocket
------------------------------------------------------------------------------

local function on_upgrade(req)
  if req.path ~= "/chat" then return uvws.reject(404, "no WebSocket endpoint here; try /chat\n") end
  local who, room = admit(req, false)
  if not who then return uvws.reject(room.status, room.body, room.headers) end
  return { data = { who = who, room = room } }
end

local function handler(ws)
  local c = hub:ws_client(ws, ws.data.who)
  hub:join(c, ws.data.room)
  for data, kind in ws:each() do
    if kind == "text" then
      hub:handle(c, data)
    else
      c:error("bad_message", "binary messages are not supported; send JSON text")
    end
  end
  hub:drop(c)
end

------------------------------------------------------------------------------
-- Main
------------------------------------------------------------------------------

local server, err = uvws.listen {
  host = cfg.host, port = cfg.port,
  on_upgrade = on_upgrade,
  on_request = on_request,
  handler = handler,
  -- The transport's hard limit; the chat's own, friendlier limit
  -- (max_text) is far below it.
  max_message_size = 64 * 1024,
  max_body_size = 64 * 1024,
  send_high_water = 256 * 1024,
}
if not server then
  io.stderr:write("chat: cannot listen on ", cfg.host, " port ", cfg.port, ": ", err, "\n")
  os.exit(1)
end
hub.server = server

local authority = (cfg.host:find(":", 1, true) and "[" .. cfg.host .. "]" or cfg.host) ..
                  ":" .. server.port
for _, h in ipairs { "127.0.0.1", "localhost", "[::1]" } do
  table.insert(origins, "http://" .. h .. ":" .. server.port)
end
table.insert(origins, "http://" .. authority)
for _, o in ipairs(cfg.origins) do table.insert(origins, o) end

print("uvws chat: open http://" .. authority .. "/ in a browser")
print("listening on ws://" .. authority .. "/chat")
if generated_token then
  print("bot token: ws://" .. authority .. "/chat?token=" .. generated_token .. "&room=lobby")
end
io.stdout:flush()

local function stop()
  uvws.spawn(function()
    server:shutdown(2)
    uvws.stop()
  end)
end
uvws.on_signal("SIGINT", stop)
uvws.on_signal("SIGTERM", stop)

uvws.run()
