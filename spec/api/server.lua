-- Server used by spec/api_spec.lua: one uvws server whose behaviour is
-- chosen by the request path, so one process covers many API cases.
--
--   lua5.4 spec/api/server.lua [key=value ...]
--
-- Every key=value becomes a uvws.listen option (numbers, false, and
-- comma-separated lists for `protocols` and `origins`); the special keys
-- `no_request=1` and `no_upgrade=1` leave out on_request / on_upgrade.
-- Events the spec checks are printed on stdout, one per line, flushed:
--   ON_ERROR <message>          on_error was called
--   CLOSED <id> <code> <reason> <closed>   a /report connection closed
--   ...
-- The first line is "listening on ws://127.0.0.1:PORT/" (also for "::1",
-- so spec/helper.lua's start_server can read the port).
local uvws = require "uvws"

local function log(...)
  local parts = table.pack(...)
  for i = 1, parts.n do parts[i] = tostring(parts[i]):gsub("\n", " | ") end
  io.stdout:write(table.concat(parts, " ", 1, parts.n), "\n")
  io.stdout:flush()
end

local opts = { host = "127.0.0.1", port = 0, max_body_size = 1024 }
local flags = {}
for _, a in ipairs(arg) do
  local k, v = a:match("^([%w_]+)=(.*)$")
  assert(k, "bad argument " .. a)
  if k == "no_request" or k == "no_upgrade" then
    flags[k] = true
  elseif k == "protocols" or k == "origins" then
    local list = {}
    for item in v:gmatch("[^,]+") do list[#list + 1] = item end
    opts[k] = list
  elseif v == "false" then
    opts[k] = false
  elseif tonumber(v) then
    opts[k] = math.tointeger(tonumber(v)) or tonumber(v)
  else
    opts[k] = v
  end
end

local function join(list, sep)
  local out = {}
  for i, v in ipairs(list or {}) do out[i] = tostring(v) end
  return table.concat(out, sep or "|")
end

-- A text summary of the request object, sent to the client by /info.
local function describe(req)
  local lines = {
    "method=" .. tostring(req.method),
    "path=" .. tostring(req.path),
    "target=" .. tostring(req.target),
    "query_string=" .. tostring(req.query_string),
    "version=" .. tostring(req.version),
    "query.token=" .. tostring(req.query.token),
    "query.x=" .. tostring(req.query.x),
    "query_all.x=" .. join(req.query_all.x),
    "headers.Origin=" .. tostring(req.headers.Origin),
    "headers.origin=" .. tostring(req.headers.origin),
    "headers.ORIGIN=" .. tostring(req.headers.ORIGIN),
    "headers.x-multi=" .. tostring(req.headers["x-multi"]),
    "header(X-Multi)=" .. tostring(req:header("X-Multi")),
    "header_values(x-multi)=" .. join(req:header_values("x-multi")),
    "header_values(absent)=" .. #req:header_values("x-absent"),
    "cookies.a=" .. tostring(req.cookies.a),
    "cookies.b=" .. tostring(req.cookies.b),
    "cookies.c=" .. tostring(req.cookies.c),
    "protocols=" .. join(req.protocols),
    "remote_addr=" .. tostring(req.remote_addr),
    "remote_port=" .. math.type(req.remote_port),
    "header_list.n=" .. #req.header_list,
    "header_list.1=" .. join(req.header_list[1] or {}, ":"),
  }
  return table.concat(lines, "\n")
end

opts.on_error = function(err)
  log("ON_ERROR", err)
end

if not flags.no_upgrade then
  opts.on_upgrade = function(req)
    local p = req.path
    if p == "/info" then
      return { data = { info = describe(req) } }
    elseif p == "/slow" then
      local t0 = uvws.now()
      uvws.sleep(0.05)
      return { data = { slept = uvws.now() - t0 } }
    elseif p == "/auth" then
      if req.query.token ~= "good" then
        return uvws.reject(401, "bad token\n",
          { ["WWW-Authenticate"] = 'Bearer realm="chat"' })
      end
      return { data = { user = "token-user" } }
    elseif p == "/proto" then
      return {
        protocol = "chat.v1",
        headers = { ["Set-Cookie"] = "seen=1; HttpOnly" },
        data = { user = "alice" },
      }
    elseif p == "/badproto" then
      return { protocol = "not-offered" }
    elseif p == "/uperror" then
      error("boom in on_upgrade")
    end
    -- anything else: accept (the server's `protocols` option may choose)
  end
end

if not flags.no_request then
  opts.on_request = function(req, res)
    local p = req.path
    if p == "/health" then
      return 200, "ok\n", { ["Content-Type"] = "text/plain" }
    elseif p == "/send" then
      res:send(201, "created\n", { ["X-Custom"] = "yes", ["Content-Type"] = "text/plain" })
      return
    elseif p == "/echo" then
      return 200, req.body or "", { ["X-Method"] = req.method }
    elseif p == "/slow" then
      uvws.sleep(0.05)
      return 200, "slow ok\n"
    elseif p == "/error" then
      error("boom in on_request")
    end
    -- nothing returned: 404
  end
end

local chat = {}

local handlers = {}

-- Default: echo with ws:each().
function handlers.echo(ws)
  for data, kind in ws:each() do ws:send(data, kind) end
end

-- Sends the request summary built in on_upgrade (ws.data), then echoes.
handlers["/info"] = function(ws)
  ws:send(ws.data.info)
  handlers.echo(ws)
end

handlers["/slow"] = function(ws)
  ws:send(string.format("slept %.3f", ws.data.slept))
  handlers.echo(ws)
end

handlers["/auth"] = function(ws)
  ws:send("user=" .. tostring(ws.data.user))
  handlers.echo(ws)
end

handlers["/proto"] = function(ws)
  ws:send("user=" .. tostring(ws.data and ws.data.user) ..
          " protocol=" .. tostring(ws.protocol))
  handlers.echo(ws)
end

-- Reports the selected protocol (server `protocols` option).
handlers["/which"] = function(ws)
  ws:send("protocol=" .. tostring(ws.protocol))
  handlers.echo(ws)
end

-- Answers every message with "<kind>:<length>:<data>" from ws:receive().
handlers["/kinds"] = function(ws)
  while true do
    local data, kind, name = ws:receive()
    if not data then
      log("KINDS_END", kind, name)
      return
    end
    ws:send(kind .. ":" .. #data .. ":" .. data, kind)
  end
end

-- receive(0.2) with nothing coming: reports what it returned, then echoes.
handlers["/timeout"] = function(ws)
  local t0 = uvws.now()
  local a, b, c = ws:receive(0.2)
  ws:send(string.format("%s %s %s %.3f", tostring(a), tostring(b), tostring(c),
                        uvws.now() - t0))
  handlers.echo(ws)
end

handlers["/binary"] = function(ws)
  ws:send("\0\1\2\255", "binary")
  ws:send("text after binary")
  handlers.echo(ws)
end

handlers["/error"] = function(ws)
  ws:receive()
  error("handler boom")
end

handlers["/return"] = function(ws)
  ws:send("returning")
end

handlers["/close4001"] = function(ws)
  local t0 = uvws.now()
  local r = ws:close(4001, "bye")
  log("CLOSE_RETURNED", tostring(r), string.format("%.3f", uvws.now() - t0),
      tostring(ws.closed), tostring(ws.close_code))
end

-- Waits for the close, then reports close_code / close_reason and what
-- send answers on a closed connection.
handlers["/report"] = function(ws)
  local id = ws.request.query.id or "?"
  local n = 0
  while true do
    local data, _, name = ws:receive()
    if not data then
      log("RECEIVE_END", id, name)
      break
    end
    n = n + 1
  end
  log("CLOSED", id, tostring(ws.close_code), tostring(ws.close_reason), tostring(ws.closed))
  local ok, msg, name = ws:send("too late")
  log("SEND_AFTER", id, tostring(ok), tostring(name), tostring(msg))
end

-- Sleeps first so that the client's messages and close frame all arrive
-- before the first receive; reports every message and the final result.
handlers["/linger"] = function(ws)
  local id = ws.request.query.id or "?"
  uvws.sleep(0.3)
  local got = {}
  local last
  for _ = 1, 100 do
    local data, _, name = ws:receive(2)
    if not data then last = name break end
    got[#got + 1] = data
  end
  log("LINGER", id, table.concat(got, ","), tostring(last))
end

-- On any message, pings the client and reports the round-trip time.
handlers["/ping"] = function(ws)
  for data in ws:each() do
    local rtt, _, name = ws:ping("rtt-probe", 2)
    ws:send(string.format("rtt %s %s %s %s", data, math.type(rtt) or type(rtt),
                          tostring(rtt), tostring(name)))
  end
end

-- Broadcast: each message goes to every other /chat client, sent from
-- this handler's coroutine while the others wait in receive.
handlers["/chat"] = function(ws)
  chat[ws] = true
  for msg in ws:each() do
    for other in pairs(chat) do
      if other ~= ws then other:send(msg) end
    end
  end
  chat[ws] = nil
end

-- Does not receive for 1 s, then counts the messages (each "<n>:...")
-- until "END", checking their order.
handlers["/drain"] = function(ws)
  uvws.sleep(1)
  local n, ordered = 0, true
  while true do
    local data, msg, name = ws:receive(3)
    if not data then log("DRAIN_END", n, msg, name) break end
    if data == "END" then break end
    n = n + 1
    local i = tonumber(data:match("^(%d+):"))
    if i ~= n or #data ~= 1024 then ordered = false end
  end
  ws:send(string.format("count %d ordered %s", n, tostring(ordered)))
  handlers.echo(ws)
end

-- send() of invalid UTF-8 as text must raise.
handlers["/badutf8"] = function(ws)
  local ok, err = pcall(ws.send, ws, "bad \xff\xfe text")
  ws:send("pcall " .. tostring(ok) .. " " .. tostring(err))
  local ok2 = ws:send("bad \xff\xfe binary", "binary")
  ws:send("binary " .. tostring(ok2))
  handlers.echo(ws)
end

-- Stops the whole server.
handlers["/shutdown"] = function(ws)
  log("SHUTDOWN", #ws.server:connections())
  ws.server:close()
  for _ in ws:each() do end
end

opts.handler = function(ws)
  local h = handlers[ws.request.path] or handlers.echo
  return h(ws)
end

local server, err, name = uvws.listen(opts)
if not server then
  log("LISTEN_FAILED", err, name)
  os.exit(1)
end
print("listening on ws://127.0.0.1:" .. server.port .. "/")
io.stdout:flush()
uvws.run()
log("RUN_RETURNED")
