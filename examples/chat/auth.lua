--- Authentication policy of the chat example: who may open /chat (the
-- WebSocket) and /events (the Server-Sent Events fallback).
--
-- Three patterns, all plain Lua on top of the request object:
--  * a bearer token in the query string (`/chat?token=...`), for bots and
--    scripts that keep no cookies; tokens are configured on the command line;
--  * a session cookie (`chat_session`), set by `POST /login`;
--  * a single-use ticket (`/chat?ticket=...`) from `POST /ticket`, valid for a
--    few seconds.  The page asks for one (with its cookie) just before it
--    opens the WebSocket: no long-lived secret ends up in a URL, where
--    proxies log it, and the WebSocket may live on another origin than the
--    page, where the cookie would not be sent.
--
-- Credentials that were presented and fail are never silently replaced by
-- another kind: a bad ticket is a 401 even when a valid cookie came with it,
-- so a client learns that its ticket is wrong instead of chatting under
-- another identity.
--
-- Failures are tables { status, body, headers } that on_upgrade turns into
-- uvws.reject(...) and on_request into an HTTP answer: the same policy gives
-- the same answer on both paths.
local uvws = require "uvws"

local M = {}

M.COOKIE = "chat_session"
M.REALM = "uvws-chat"

local urandom = assert(io.open("/dev/urandom", "rb"))

--- A random identifier: `n` bytes (default 16) from the kernel, in hex.
function M.random_id(n)
  local bytes = urandom:read(n or 16)
  return (bytes:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

--- Is `nick` an acceptable nickname?  ASCII letters, digits, `_`, `-`, `.`;
-- 1 to 20 bytes.  Keeping names plain keeps them unambiguous on screen.
function M.valid_nick(nick)
  return type(nick) == "string" and #nick >= 1 and #nick <= 20 and
         nick:match("^[%w_.%-]+$") ~= nil
end

-- A 401 answer with the challenge RFC 9110 §11.6.1 requires.  When
-- credentials were presented, the RFC 6750 error attributes say what was
-- wrong with them.
local function unauthorized(message, err)
  local challenge = 'Bearer realm="' .. M.REALM .. '"'
  if err then
    challenge = challenge .. ', error="' .. err .. '", error_description="' .. message .. '"'
  end
  return { status = 401, body = message .. "\n",
           headers = { ["WWW-Authenticate"] = challenge, ["Cache-Control"] = "no-store" } }
end
M.unauthorized = unauthorized

local Auth = {}
Auth.__index = Auth

--- Creates the policy.
-- opts.tokens       { [token] = nick } for bots and scripts
-- opts.ticket_ttl   seconds a ticket stays valid (default 30)
-- opts.session_ttl  seconds a login lasts (default 12 hours)
-- opts.max_entries  bound on stored sessions and on stored tickets (default 10000)
function M.new(opts)
  opts = opts or {}
  return setmetatable({
    tokens = opts.tokens or {},
    ticket_ttl = opts.ticket_ttl or 30,
    session_ttl = opts.session_ttl or 12 * 3600,
    max_entries = opts.max_entries or 10000,
    sessions = {}, nsessions = 0,   -- id -> { nick, expires }
    tickets = {}, ntickets = 0,     -- ticket -> { nick, session, expires }
    swept = 0,
  }, Auth)
end

--- Is `nick` the name of a configured token (reserved for that bot)?
function Auth:reserved(nick)
  for _, n in pairs(self.tokens) do
    if n == nick then return true end
  end
  return false
end

-- Forgets expired sessions and tickets, at most once a second.
function Auth:sweep(force)
  local now = uvws.now()
  if not force and now - self.swept < 1 then return end
  self.swept = now
  for id, s in pairs(self.sessions) do
    if s.expires <= now then self.sessions[id] = nil; self.nsessions = self.nsessions - 1 end
  end
  for t, k in pairs(self.tickets) do
    if k.expires <= now then self.tickets[t] = nil; self.ntickets = self.ntickets - 1 end
  end
end

--- The live session of a request's cookie: id, session; or nil.
function Auth:session(req)
  local id = req.cookies[M.COOKIE]
  local s = id and self.sessions[id]
  if s and s.expires > uvws.now() then return id, s end
  return nil
end

--- Starts a session for `nick`.
-- @return id, Set-Cookie value  or  nil, failure
function Auth:login(nick)
  self:sweep(self.nsessions >= self.max_entries)
  if self.nsessions >= self.max_entries then
    return nil, { status = 503, body = "too many sessions, try again later\n",
                  headers = { ["Retry-After"] = "60" } }
  end
  local id = M.random_id()
  self.sessions[id] = { nick = nick, expires = uvws.now() + self.session_ttl }
  self.nsessions = self.nsessions + 1
  -- HttpOnly: scripts cannot read it; SameSite=Strict: other sites cannot
  -- make the browser send it (the Origin checks are the second line).
  return id, string.format("%s=%s; Path=/; Max-Age=%d; HttpOnly; SameSite=Strict",
                           M.COOKIE, id, self.session_ttl)
end

--- Ends the session of a request, if any; returns the Set-Cookie value that
-- clears the cookie.
function Auth:logout(req)
  local id = self:session(req)
  if id then
    self.sessions[id] = nil
    self.nsessions = self.nsessions - 1
  end
  return M.COOKIE .. "=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict"
end

--- Issues a single-use ticket for the session of `req`.
-- @return ticket, ttl  or  nil, failure
function Auth:issue_ticket(req)
  local id, s = self:session(req)
  if not id then return nil, unauthorized("log in first (POST /login)") end
  self:sweep(self.ntickets >= self.max_entries)
  if self.ntickets >= self.max_entries then
    return nil, { status = 503, body = "too many tickets, try again later\n",
                  headers = { ["Retry-After"] = "5" } }
  end
  local t = M.random_id()
  self.tickets[t] = { nick = s.nick, session = id, expires = uvws.now() + self.ticket_ttl }
  self.ntickets = self.ntickets + 1
  return t, self.ticket_ttl
end

--- Who is making this request?  `peek` checks a ticket without using it up
-- (the page's "why did my WebSocket fail?" probe).
-- @return identity { nick, via = "token"|"ticket"|"cookie", owner }  or  nil, failure
function Auth:identify(req, peek)
  local q = req.query
  if q.token then
    local nick = self.tokens[q.token]
    if not nick then return nil, unauthorized("unknown token", "invalid_token") end
    return { nick = nick, via = "token", owner = "token:" .. nick }
  end
  if q.ticket then
    local k = self.tickets[q.ticket]
    if not k or k.expires <= uvws.now() then
      return nil, unauthorized("ticket unknown, expired or already used", "invalid_token")
    end
    if not peek then
      self.tickets[q.ticket] = nil
      self.ntickets = self.ntickets - 1
    end
    return { nick = k.nick, via = "ticket", owner = "session:" .. k.session }
  end
  local id, s = self:session(req)
  if id then return { nick = s.nick, via = "cookie", owner = "session:" .. id } end
  if req.cookies[M.COOKIE] then
    return nil, unauthorized("session expired, log in again", "invalid_token")
  end
  return nil, unauthorized("authentication required: a token, a ticket or a session cookie")
end

return M
