--- Rooms of the chat example: membership, presence, history and the
-- per-connection limits.
--
-- A client is one connection: a WebSocket, or a Server-Sent Events stream
-- plus the `POST /send` requests that come with it.  Both kinds meet in the
-- same rooms.  WebSocket members subscribe to the topic "room:<name>", so a
-- message is framed once by `server:publish` and the same bytes go to every
-- one of them; the event-stream members get the same JSON text as an event.
--
-- Messages on the wire are JSON objects with a "type":
--   client -> server   {type="message", text}   {type="join", room}
--   server -> client   welcome, history, message, presence, error
-- (the README's chat section lists their fields).
local M = {}

--- Is `name` an acceptable room name?  1 to 32 of [A-Za-z0-9_-].
function M.valid_room(name)
  return type(name) == "string" and #name >= 1 and #name <= 32 and
         name:match("^[%w_%-]+$") ~= nil
end

local Hub = {}
Hub.__index = Hub

--- Creates the hub.
-- opts.json         a cjson instance
-- opts.history      messages kept and replayed per room (default 50)
-- opts.rate         messages a client may send in a burst (default 10) ...
-- opts.per          ... refilled over this many seconds (default 10)
-- opts.max_text     longest message text, in characters (default 500)
-- opts.max_rooms    bound on the number of rooms (default 1000)
-- opts.now          clock in seconds (uvws.now)
-- opts.new_id       makes an unguessable identifier (auth.random_id)
-- Set hub.server to the uvws server before the first join.
function M.new(opts)
  return setmetatable({
    json = opts.json,
    history = opts.history or 50,
    rate = opts.rate or 10,
    per = opts.per or 10,
    max_text = opts.max_text or 500,
    max_rooms = opts.max_rooms or 1000,
    now = opts.now,
    new_id = opts.new_id,
    rooms = {}, nrooms = 0,
    online = {},      -- nick -> { [owner] = connection count }
    streams = {},     -- sid -> event-stream client
    seq = 0,
  }, Hub)
end

--- Encodes a message.  cjson cannot tell an empty list from an empty
-- object and writes {}; the only list that can be empty is "members"
-- (and "messages", which join writes by hand).  A `"members":{}` outside a
-- string is that list: quotes inside strings are escaped.
function Hub:encode(msg)
  return (self.json.encode(msg):gsub('"members":{}', '"members":[]'))
end

------------------------------------------------------------------------------
-- Clients
------------------------------------------------------------------------------

local Client = {}
Client.__index = Client

function Client:send(msg)
  return self:send_text(self.hub:encode(msg))
end

-- Tells the client what was wrong with what it sent.  An event-stream
-- client sent it with POST /send, whose answer carries the error instead.
function Client:error(code, message, extra)
  local e = { type = "error", code = code, message = message }
  for k, v in pairs(extra or {}) do e[k] = v end
  if self.ws then self:send(e) end
  return nil, e
end

local function new_client(hub, identity, kind)
  return setmetatable({ hub = hub, nick = identity.nick, owner = identity.owner,
    via = identity.via, kind = kind, tokens = hub.rate, refilled = hub.now() }, Client)
end

--- A client for an accepted WebSocket (identity from on_upgrade).
function Hub:ws_client(ws, identity)
  local c = new_client(self, identity, "websocket")
  c.ws = ws
  function c.send_text(_, s) return ws:send(s) end
  return c
end

--- A client for an event stream: `res` after res:start.  Its `sid` is the
-- capability that `POST /send` presents.
function Hub:sse_client(res, identity)
  local c = new_client(self, identity, "sse")
  c.res = res
  c.sid = self.new_id()
  function c.send_text(_, s) return res:write("data: " .. s .. "\n\n") end
  self.streams[c.sid] = c
  return c
end

--- The event-stream client that `sid` names, if it is still connected.
function Hub:stream(sid)
  local c = type(sid) == "string" and self.streams[sid]
  if c and not c.res.closed then return c end
  return nil
end

--- Is `nick` connected under another owner than `owner`?
function Hub:taken(nick, owner)
  for o in pairs(self.online[nick] or {}) do
    if o ~= owner then return true end
  end
  return false
end

------------------------------------------------------------------------------
-- Rooms
------------------------------------------------------------------------------

local function sorted_keys(t)
  local list = {}
  for k in pairs(t) do list[#list + 1] = k end
  table.sort(list)
  return list
end

function Hub:room(name)
  local r = self.rooms[name]
  if r then return r end
  if self.nrooms >= self.max_rooms then
    -- Forget an empty room (its history goes with it) to make space.
    for n, old in pairs(self.rooms) do
      if not next(old.nicks) then self.rooms[n] = nil; self.nrooms = self.nrooms - 1; break end
    end
    if self.nrooms >= self.max_rooms then return nil end
  end
  r = { name = name, topic = "room:" .. name, nicks = {}, sse = {}, log = {} }
  self.rooms[name] = r
  self.nrooms = self.nrooms + 1
  return r
end

-- Sends msg to every member of room r: WebSocket members through the
-- topic (one frame for all), event-stream members one by one.
function Hub:broadcast(r, msg)
  local s = self:encode(msg)
  self.server:publish(r.topic, s)
  for c in pairs(r.sse) do c:send_text(s) end
end

--- Puts a client in a room: welcome and history to it, presence to all.
-- @return true  or  nil, error (sent to the client too)
function Hub:join(c, name)
  if not M.valid_room(name) then
    return c:error("bad_room", "a room name is 1 to 32 letters, digits, _ or -")
  end
  if c.room and c.room.name == name then return true end
  local r = self:room(name)
  if not r then return c:error("too_many_rooms", "too many rooms, try an existing one") end
  self:leave(c)
  c.room = r
  local first = (r.nicks[c.nick] or 0) == 0
  r.nicks[c.nick] = (r.nicks[c.nick] or 0) + 1
  local on = self.online[c.nick] or {}
  self.online[c.nick] = on
  on[c.owner] = (on[c.owner] or 0) + 1
  if c.ws then c.ws:subscribe(r.topic) else r.sse[c] = true end
  c:send { type = "welcome", nick = c.nick, room = name, via = c.via,
           transport = c.kind, sid = c.sid, members = sorted_keys(r.nicks),
           limits = { rate = self.rate, per = self.per, max_text = self.max_text } }
  -- cjson would write an empty list as {}: send history as a list always.
  c:send_text('{"type":"history","room":' .. self.json.encode(name) .. ',"messages":[' ..
              table.concat(r.log, ",") .. ']}')
  if first then
    self:broadcast(r, { type = "presence", event = "join", nick = c.nick, room = name,
                        members = sorted_keys(r.nicks) })
  end
  return true
end

--- Takes a client out of its room (idempotent).
function Hub:leave(c)
  local r = c.room
  if not r then return end
  c.room = nil
  if c.ws then
    if not c.ws.closed then c.ws:unsubscribe(r.topic) end
  else
    r.sse[c] = nil
  end
  local on = self.online[c.nick]
  if on then
    on[c.owner] = (on[c.owner] or 1) - 1
    if on[c.owner] <= 0 then on[c.owner] = nil end
    if not next(on) then self.online[c.nick] = nil end
  end
  local n = (r.nicks[c.nick] or 1) - 1
  r.nicks[c.nick] = n > 0 and n or nil
  if n <= 0 then
    self:broadcast(r, { type = "presence", event = "leave", nick = c.nick, room = r.name,
                        members = sorted_keys(r.nicks) })
  end
end

--- Forgets a client whose connection ended.
function Hub:drop(c)
  self:leave(c)
  if c.sid then self.streams[c.sid] = nil end
end

------------------------------------------------------------------------------
-- Messages
------------------------------------------------------------------------------

-- Token bucket: `rate` messages in a burst, refilled over `per` seconds.
-- @return true  or  false, seconds until the next message is allowed
function Hub:take_token(c)
  local now = self.now()
  local refill = self.rate / self.per
  c.tokens = math.min(self.rate, c.tokens + (now - c.refilled) * refill)
  c.refilled = now
  if c.tokens >= 1 then
    c.tokens = c.tokens - 1
    return true
  end
  return false, (1 - c.tokens) / refill
end

--- Posts `text` from client c to its room, after the size and rate limits.
-- @return the message  or  nil, error table (also sent to c)
function Hub:post(c, text)
  if not c.room then return c:error("no_room", "join a room first") end
  if type(text) ~= "string" or text:match("^%s*$") then
    return c:error("bad_message", "a message needs a non-empty \"text\" string")
  end
  local chars = utf8.len(text)
  if not chars then return c:error("bad_message", "the text is not valid UTF-8") end
  if chars > self.max_text then
    return c:error("too_long", string.format(
      "message too long: %d characters, the limit is %d", chars, self.max_text),
      { limit = self.max_text })
  end
  local ok, wait = self:take_token(c)
  if not ok then
    return c:error("rate_limited", string.format(
      "slow down: at most %d messages per %g seconds; try again in %.1f s",
      self.rate, self.per, wait), { retry_after = math.ceil(wait * 10) / 10 })
  end
  self.seq = self.seq + 1
  local msg = { type = "message", id = self.seq, room = c.room.name, nick = c.nick,
                text = text, ts = os.time() }
  local r = c.room
  r.log[#r.log + 1] = self.json.encode(msg)
  if #r.log > self.history then table.remove(r.log, 1) end
  self:broadcast(r, msg)
  return msg
end

--- Handles one text message from a WebSocket client.
function Hub:handle(c, data)
  -- Refuse a huge message before decoding it: the text limit is in
  -- characters, and a character is at most 4 bytes (12 as a JSON escape).
  if #data > 12 * self.max_text + 256 then
    return c:error("too_long", string.format(
      "message too long: %d bytes, the limit is %d characters", #data, self.max_text),
      { limit = self.max_text })
  end
  local ok, msg = pcall(self.json.decode, data)
  if not ok or type(msg) ~= "table" then
    return c:error("bad_json", "messages are JSON objects such as {\"type\":\"message\",\"text\":\"hi\"}")
  end
  if msg.type == "message" then
    return self:post(c, msg.text)
  elseif msg.type == "join" then
    return self:join(c, msg.room)
  end
  return c:error("bad_message", "unknown message type " .. self.json.encode(msg.type or "") ..
                 " (expected \"message\" or \"join\")")
end

return M
