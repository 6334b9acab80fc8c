--- uvws.redis: Redis pub/sub scale-out for uvws topics, in pure Lua over
-- uvws.tcp_connect (RESP2).
--
--   local bus = require("uvws.redis").attach(server, {
--     host = "127.0.0.1", port = 6379, channel_prefix = "chat:",
--   })
--   server:publish("room:lobby", "hi")   -- local subscribers and every
--                                        -- process attached to the Redis
--
-- Design criteria:
--  * Two connections per bus: one for commands (PUBLISH, pipelined), one
--    in subscribe mode.  A topic is mirrored to a Redis channel
--    (channel_prefix .. topic) only while this server has a local
--    subscriber to it: SUBSCRIBE on the first, UNSUBSCRIBE after the last.
--    The hook is the server's topic table, so subscriptions made by any
--    path (ws:subscribe, unsubscribe, a closing connection) are seen.
--  * server:publish delivers to local subscribers at once (even while
--    Redis is away) and PUBLISHes a tagged copy: "uvws1 <bus id> <seq>
--    <t|b>\n" .. data.  Each bus skips its own echo, so a local subscriber
--    gets each message exactly once; messages from other buses are
--    delivered with the server's own publish.  Untagged payloads (from
--    redis-cli or another program) are delivered as text when they are
--    valid UTF-8, else as binary.
--  * No silent loss.  While the command link is down (or has max_inflight
--    PUBLISHes unanswered) messages wait in a queue bounded by max_queue
--    and max_queue_bytes; beyond it they are dropped and reported.  PUBLISHes
--    written but unanswered when the link drops are reported as
--    "unconfirmed".  The per-(bus, topic) sequence number lets a receiver
--    count messages that never reached it ("missed"), and every outage of
--    either link is reported with its length when the link is back.  The
--    counters are in bus.stats; the reports go to on_loss (default: a
--    line on stderr).
--  * Both links reconnect with exponential backoff and jitter, and the
--    subscribe link subscribes again to every mirrored topic.  A PING
--    heartbeat drops a link whose Redis stopped answering.
--  * Pub/sub through Redis is at most once: a message in flight when a
--    link drops may be lost (and is counted), never delivered twice.
local uvws = require "uvws"
local sched = require "uvws.sched"

local M = {}

local byte, find, sub, format, concat = string.byte, string.find, string.sub, string.format,
  table.concat
local tointeger = math.tointeger

------------------------------------------------------------------------------
-- RESP2: encoding and an incremental parser
------------------------------------------------------------------------------

--- The nil bulk string and nil array ($-1, *-1), distinct from "need more".
M.null = setmetatable({}, { __name = "uvws.redis.null", __tostring = function() return "null" end })

local ErrorReply = { __name = "uvws.redis.error" }
ErrorReply.__index = ErrorReply
function ErrorReply:__tostring() return self.message end

--- Is v an error reply (a "-ERR ..." line)?  Its text is v.message.
function M.is_error(v)
  return getmetatable(v) == ErrorReply
end

--- Encodes a command: M.encode("SET", "k", 42) -> "*3\r\n$3\r\nSET\r\n...".
-- Arguments are strings or numbers.
function M.encode(...)
  local n = select("#", ...)
  local parts = { "*" .. n .. "\r\n" }
  for i = 1, n do
    local a = select(i, ...)
    local ta = type(a)
    if ta == "number" then
      a = tostring(a)
    elseif ta ~= "string" then
      error("uvws.redis: command arguments must be strings or numbers (argument " .. i ..
            " is a " .. ta .. ")", 2)
    end
    parts[#parts + 1] = "$" .. #a .. "\r\n"
    parts[#parts + 1] = a
    parts[#parts + 1] = "\r\n"
  end
  return concat(parts)
end

local MAX_BULK = 512 * 1024 * 1024   -- Redis's own proto-max-bulk-len default

local function perr(msg, i)
  error({ redis_protocol = true, message = "protocol error at byte " .. i .. ": " .. msg }, 0)
end

local function int_line(line, i)
  local v = tointeger(tonumber(line))
  if not v or not find(line, "^%-?%d+$") then perr("bad integer " .. format("%q", line), i) end
  return v
end

-- Parses one value of s from index i.  Returns value, next index; or nil
-- and the length s must reach before it is worth trying again (or nil when
-- unknown).  Raises {redis_protocol = true, message} on bad input.
local function parse(s, i, max_bulk)
  local e = find(s, "\r\n", i, true)
  if not e then return nil end
  local t = byte(s, i)
  local line = sub(s, i + 1, e - 1)
  local n = e + 2
  if t == 43 then            -- "+"
    return line, n
  elseif t == 45 then        -- "-"
    return setmetatable({ message = line }, ErrorReply), n
  elseif t == 58 then        -- ":"
    return int_line(line, i), n
  elseif t == 36 then        -- "$"
    local len = int_line(line, i)
    if len == -1 then return M.null, n end
    if len < 0 or len > max_bulk then perr("bad bulk length " .. len, i) end
    local last = n + len - 1
    if #s < last + 2 then return nil, last + 2 end
    if byte(s, last + 1) ~= 13 or byte(s, last + 2) ~= 10 then perr("bulk string not ended by CRLF", last + 1) end
    return sub(s, n, last), last + 3
  elseif t == 42 then        -- "*"
    local count = int_line(line, i)
    if count == -1 then return M.null, n end
    if count < 0 or count > 1024 * 1024 then perr("bad array length " .. count, i) end
    local arr = {}
    for k = 1, count do
      local v, ni = parse(s, n, max_bulk)
      if v == nil then return nil, ni end
      arr[k] = v
      n = ni
    end
    return arr, n
  end
  perr("unexpected type byte " .. format("%q", string.char(t)), i)
end

local Parser = {}
Parser.__index = Parser
Parser.__name = "uvws.redis.parser"

--- A streaming parser: p:feed(bytes) any split of the input, then call
-- p:next() until it returns nil.  Values: strings (simple and bulk),
-- integers, tables (arrays), M.null, error replies (M.is_error).  A
-- protocol error raises a table {redis_protocol = true, message}.
function M.parser(max_bulk)
  return setmetatable({ buf = "", pos = 1, pending = {}, pending_len = 0, need = nil,
                        max_bulk = max_bulk or MAX_BULK }, Parser)
end

function Parser:feed(chunk)
  if #chunk > 0 then
    self.pending[#self.pending + 1] = chunk
    self.pending_len = self.pending_len + #chunk
  end
end

--- The next complete value, or nil when more bytes are needed.
function Parser:next()
  local have = #self.buf - self.pos + 1 + self.pending_len
  if have == 0 or (self.need and have < self.need) then return nil end
  if self.pending_len > 0 then
    self.pending[#self.pending + 1] = nil
    self.buf = sub(self.buf, self.pos) .. concat(self.pending)
    self.pos = 1
    self.pending, self.pending_len = {}, 0
  end
  local v, ni = parse(self.buf, self.pos, self.max_bulk)
  if v == nil then
    self.need = ni and (ni - self.pos) or nil
    return nil
  end
  self.need = nil
  if ni > #self.buf then
    self.buf, self.pos = "", 1
  else
    self.pos = ni
  end
  return v
end

--- Parses all of s at once: the list of values and the unparsed rest.
function M.decode_all(s)
  local p = M.parser()
  p:feed(s)
  local out = {}
  for v in Parser.next, p do out[#out + 1] = v end
  return out, sub(p.buf, p.pos)
end

------------------------------------------------------------------------------
-- A client: request/response with pipelining, and subscribe-mode pushes
------------------------------------------------------------------------------

local Client = {}
Client.__index = Client
Client.__name = "uvws.redis.client"

function Client:__tostring()
  return format("uvws.redis.client (%s:%d, %s)", self.host, self.port, self.closed and "closed" or "open")
end

local PUSH_KINDS = {
  message = true, pmessage = true, subscribe = true, unsubscribe = true,
  psubscribe = true, punsubscribe = true, smessage = true,
}

-- Fails every waiting reply and wakes the close waiters.
local function client_closed(c, msg, name)
  if c.closed then return end
  c.closed = true
  c.close_error, c.close_name = msg, name
  local q = c._cbs
  c._cbs, c._h, c._t = {}, 1, 0
  local fail = 0
  for i = 1, #q do
    local cb = q[i]
    if cb then
      fail = fail + 1
      cb(nil, msg, name)
    end
  end
  local ws = c._close_waiters
  c._close_waiters = {}
  for _, co in ipairs(ws) do sched.wake(co, true) end
  if c.on_close then c.on_close(c, msg, name, fail) end
end

local function reader(c)
  local st, p = c._s, c._p
  while true do
    local data, err, name = st:read()
    if not data then
      client_closed(c, err, name)
      return
    end
    p:feed(data)
    while true do
      local ok, v = pcall(p.next, p)
      if not ok then
        local msg = type(v) == "table" and v.message or tostring(v)
        client_closed(c, msg, "EPROTO")
        st:close()
        return
      end
      if v == nil then break end
      if c.on_push and type(v) == "table" and PUSH_KINDS[v[1]] then
        c.on_push(v, c)
      else
        local h = c._h
        local cb = c._cbs[h]
        if h > c._t then
          if c.on_push then
            c.on_push(v, c)        -- e.g. a pong in subscribe mode
          else
            client_closed(c, "unexpected reply from the server", "EPROTO")
            st:close()
            return
          end
        else
          c._cbs[h] = nil
          c._h = h + 1
          if cb then cb(v) end
        end
      end
    end
  end
end

--- Connects to Redis (inside a coroutine).
-- opts: timeout (seconds for connecting, default 5), password, username,
--   db (SELECT), on_push(value, client) (subscribe-mode pushes: arrays
--   whose first element is "message", "subscribe"...), on_close(client,
--   message, name, unanswered).
-- @return client  or  nil, message, name
function M.connect(host, port, opts)
  opts = opts or {}
  host = host or "127.0.0.1"
  port = port or 6379
  local st, err, name = uvws.tcp_connect(host, port, { timeout = opts.timeout or 5 })
  if not st then return nil, err, name end
  local c = setmetatable({
    host = host, port = port, _s = st, _p = M.parser(opts.max_bulk),
    _cbs = {}, _h = 1, _t = 0, _close_waiters = {},
    on_push = opts.on_push, on_close = opts.on_close, closed = false,
  }, Client)
  uvws.spawn(reader, c)
  if opts.password then
    local ok, aerr, aname
    if opts.username then
      ok, aerr, aname = c:call("AUTH", opts.username, opts.password)
    else
      ok, aerr, aname = c:call("AUTH", opts.password)
    end
    if not ok then c:close() return nil, "AUTH: " .. tostring(aerr), aname end
  end
  if opts.db then
    local ok, serr, sname = c:call("SELECT", opts.db)
    if not ok then c:close() return nil, "SELECT: " .. tostring(serr), sname end
  end
  return c
end

--- Sends a command without waiting; cb(value) gets the reply, or cb(nil,
-- message, name) if the connection closes first.  cb may be nil (the reply
-- is discarded).  Returns true, or nil, message, "closed".
function Client:send(cb, ...)
  if self.closed then return nil, "connection closed", "closed" end
  local ok, err, name = self._s:write(M.encode(...))
  if not ok then return nil, err, name end
  local t = self._t + 1
  self._t = t
  self._cbs[t] = cb or false
  return true
end

--- Writes a command whose answer comes as pushes (SUBSCRIBE, UNSUBSCRIBE
-- in subscribe mode): no reply is expected in order.
function Client:send_push(...)
  if self.closed then return nil, "connection closed", "closed" end
  return self._s:write(M.encode(...))
end

--- Sends a command and waits for its reply (inside a coroutine): the
-- value, or nil, message, name with name "EREDIS" for an error reply,
-- "closed" or "timeout".
function Client:command(args, timeout)
  local co = sched.current("uvws.redis call")
  local done, r1, r2, r3 = false, nil, nil, nil
  local waiting = false
  local ok, err, name = self:send(function(v, e, n)
    done, r1, r2, r3 = true, v, e, n
    if waiting then sched.wake(co) end
  end, table.unpack(args, 1, args.n or #args))
  if not ok then return nil, err, name end
  if not done then
    waiting = true
    local _, terr, tname = sched.wait(timeout)
    waiting = false
    if not done then return nil, terr, tname end
  end
  if M.is_error(r1) then return nil, r1.message, "EREDIS" end
  return r1, r2, r3
end

--- client:call("GET", "key"): command() without a timeout.
function Client:call(...)
  return self:command(table.pack(...))
end

--- Waits until the connection is closed (inside a coroutine).
function Client:wait_closed(timeout)
  if self.closed then return true end
  local co = sched.current("uvws.redis wait_closed")
  local list = self._close_waiters
  list[#list + 1] = co
  return sched.wait(timeout, function()
    for i = #list, 1, -1 do if list[i] == co then table.remove(list, i) end end
  end)
end

--- Commands sent and not yet answered.
function Client:pending()
  return self._t - self._h + 1
end

--- Drops the connection at once (a peer that stopped answering), failing
-- what waits for a reply.
function Client:abort(reason)
  local conn = self._s._c
  if conn and conn.abort and not self._s.closed then
    conn:abort(1006, reason or "aborted")
  else
    self:close()
  end
  return true
end

--- Closes the connection after what was written is sent.
function Client:close()
  if not self._s.closed then self._s:close() end
  return true
end

------------------------------------------------------------------------------
-- The bus: topics of one uvws server mirrored to Redis channels
------------------------------------------------------------------------------

local Bus = {}
Bus.__index = Bus
Bus.__name = "uvws.redis.bus"

M.defaults = {
  host = "127.0.0.1", port = 6379, channel_prefix = "uvws:",
  connect_timeout = 2, min_delay = 0.1, max_delay = 5, factor = 2, jitter = 0.2,
  max_queue = 10000, max_queue_bytes = 16 * 1024 * 1024, max_inflight = 1000,
  ping_interval = 15, ping_timeout = 5, watch_interval = 0.5,
}

local function random_id()
  local f = io.open("/dev/urandom", "rb")
  local bytes = f and f:read(8)
  if f then f:close() end
  if not bytes or #bytes ~= 8 then
    bytes = string.pack("<d<I4", os.clock() + os.time(), math.random(0, 0xffffffff)):sub(1, 8)
  end
  return (bytes:gsub(".", function(ch) return format("%02x", byte(ch)) end))
end

local function default_on_loss(info)
  local parts = {}
  for k, v in pairs(info) do
    if type(v) == "table" then v = "{" .. concat(v, ",") .. "}" end
    parts[#parts + 1] = k .. "=" .. tostring(v)
  end
  table.sort(parts)
  io.stderr:write("uvws.redis: loss: ", concat(parts, " "), "\n")
end

local function default_on_error(err, name, link)
  io.stderr:write("uvws.redis: ", link, " link: ", tostring(err), " (", tostring(name), ")\n")
end

function Bus:__tostring()
  return format("uvws.redis.bus (%s, %s:%d)", self.id, self.host, self.port)
end

function Bus:_loss(info)
  local ok, err = pcall(self.on_loss, info)
  if not ok then io.stderr:write("uvws.redis: error in on_loss: ", tostring(err), "\n") end
end

function Bus:_error(err, name, link)
  self.last_error = err
  local ok, e = pcall(self.on_error, err, name, link)
  if not ok then io.stderr:write("uvws.redis: error in on_error: ", tostring(e), "\n") end
end

-- Publishing ------------------------------------------------------------------

-- The reply to one PUBLISH (an integer: how many Redis subscribers got it).
local function publish_reply(bus)
  return function(v)
    bus._inflight = bus._inflight - 1
    if v == nil then
      -- The link closed first: counted once by the link's on_close.
      return
    end
    if M.is_error(v) then
      bus.stats.failed = bus.stats.failed + 1
      bus:_error("PUBLISH: " .. v.message, "EREDIS", "publish")
      bus:_loss({ what = "failed", count = 1, error = v.message })
    else
      bus.stats.acked = bus.stats.acked + 1
    end
    -- Room in the pipeline: send what waits.
    if bus._qh <= bus._qt then bus:_flush() end
  end
end

function Bus:_write(channel, payload)
  local ok = self._pub:send(self._on_reply, "PUBLISH", channel, payload)
  if ok then
    self._inflight = self._inflight + 1
    self.stats.sent = self.stats.sent + 1
  end
  return ok
end

-- Sends queued messages while the link is up and the pipeline has room.
function Bus:_flush()
  local c = self._pub
  if not c or c.closed or not self._pub_up then return end
  local q = self._q
  while self._qh <= self._qt and self._inflight < self.max_inflight do
    local h = self._qh
    local e = q[h]
    if not self:_write(e[1], e[2]) then return end
    q[h] = nil
    self._qh = h + 1
    self._qbytes = self._qbytes - #e[2]
  end
  self.stats.queued = self._qt - self._qh + 1
end

-- Queues (or drops, reporting it) a message the link cannot take now.
function Bus:_enqueue(topic, channel, payload)
  local n = self._qt - self._qh + 1
  if n >= self.max_queue or self._qbytes + #payload > self.max_queue_bytes then
    self.stats.dropped = self.stats.dropped + 1
    self._outage_dropped = self._outage_dropped + 1
    if self._outage_dropped == 1 then
      -- The first loss of this outage is reported at once; the total comes
      -- with the outage report.
      self:_loss({ what = "dropped", count = 1, topic = topic,
                   reason = self.closed and "closed" or "queue full" })
    end
    return false
  end
  local t = self._qt + 1
  self._q[t] = { channel, payload }
  self._qt = t
  self._qbytes = self._qbytes + #payload
  self.stats.queued = n + 1
  return true
end

--- Publishes to Redis only (local subscribers are served by the caller):
-- what the wrapped server:publish does after delivering locally.
function Bus:_send(topic, data, kind)
  local seq = (self._seq[topic] or 0) + 1
  self._seq[topic] = seq
  local payload = format("uvws1 %s %d %s\n", self.id, seq, kind == "binary" and "b" or "t") .. data
  local channel = self.prefix .. topic
  self.stats.published = self.stats.published + 1
  if self.closed then
    self.stats.dropped = self.stats.dropped + 1
    self:_loss({ what = "dropped", count = 1, topic = topic, reason = "closed" })
    return false
  end
  if self._pub_up and self._qh > self._qt and self._inflight < self.max_inflight then
    if self:_write(channel, payload) then return true end
  end
  return self:_enqueue(topic, channel, payload)
end

--- Publishes to local subscribers (except `skip`) and, through Redis, to
-- every other process: the same as server:publish once attached.
-- @return the number of local subscribers reached
function Bus:publish(topic, data, kind, skip)
  return self.server:publish(topic, data, kind, skip)
end

-- Subscriptions -------------------------------------------------------------------

function Bus:_want(topic)
  local ch = self.prefix .. topic
  if self._desired[ch] then return end
  self._desired[ch] = topic
  self._reset_on_confirm[ch] = true
  self._last[ch] = nil
  local c = self._sub
  if c and self._sub_up then
    self._pending[ch] = (self._pending[ch] or 0) + 1
    c:send_push("SUBSCRIBE", ch)
  end
end

function Bus:_unwant(topic)
  local ch = self.prefix .. topic
  if not self._desired[ch] then return end
  self._desired[ch] = nil
  self._confirmed[ch] = nil
  self._last[ch] = nil
  self._reset_on_confirm[ch] = nil
  local c = self._sub
  if c and self._sub_up then c:send_push("UNSUBSCRIBE", ch) end
end

local function parse_payload(payload)
  local origin, seq, k, start = payload:match("^uvws1 (%x+) (%d+) ([tb])\n()")
  if not origin then return nil end
  return origin, tointeger(tonumber(seq)), k == "b" and "binary" or "text", sub(payload, start)
end

function Bus:_on_push(v)
  if M.is_error(v) then
    -- SUBSCRIBE refused (NOAUTH, ACL...): the topics are not mirrored.
    self:_error("SUBSCRIBE: " .. v.message, "EREDIS", "subscribe")
    return
  end
  if v == "PONG" then
    self._pong = true   -- PING outside subscribe mode (nothing mirrored yet)
    return
  end
  if type(v) ~= "table" then return end
  local kind = v[1]
  local st = self.stats
  if kind == "message" then
    local ch, payload = v[2], v[3]
    local topic = self._desired[ch]
    if not topic or type(payload) ~= "string" then return end
    st.received = st.received + 1
    local origin, seq, mkind, data = parse_payload(payload)
    if origin == self.id then
      st.echoes = st.echoes + 1
      return
    end
    if origin then
      if (self._pending[ch] or 0) == 0 then
        local last = self._last[ch]
        if not last then
          last = {}
          self._last[ch] = last
        end
        local prev = last[origin]
        if prev and seq > prev + 1 then
          local n = seq - prev - 1
          st.missed = st.missed + n
          self:_loss({ what = "missed", count = n, topic = topic, origin = origin })
        end
        if not prev or seq > prev then last[origin] = seq end
      end
    else
      data = payload
      mkind = utf8.len(data) and "text" or "binary"
    end
    st.delivered = st.delivered + 1
    self._base_publish(self.server, topic, data, mkind)
    if self.on_message then
      local ok, err = pcall(self.on_message, topic, data, mkind, origin)
      if not ok then io.stderr:write("uvws.redis: error in on_message: ", tostring(err), "\n") end
    end
  elseif kind == "pong" then
    self._pong = true
  elseif kind == "subscribe" then
    local ch = v[2]
    local p = (self._pending[ch] or 1) - 1
    self._pending[ch] = p > 0 and p or nil
    if p <= 0 and self._desired[ch] then
      self._confirmed[ch] = true
      if self._reset_on_confirm[ch] then
        self._reset_on_confirm[ch] = nil
        self._last[ch] = {}
      end
    end
  end
end

-- Links -------------------------------------------------------------------------

-- Sleeps `delay` seconds unless the bus closes first.
function Bus:_pause(delay)
  local co = coroutine.running()
  self._sleepers[co] = true
  sched.wait(delay)
  self._sleepers[co] = nil
end

function Bus:_backoff(attempt)
  local d = math.min(self.max_delay, self.min_delay * self.factor ^ (attempt - 1))
  return d * (1 - self.jitter * math.random())
end

-- Runs one link for the life of the bus: connect, set up, wait for the
-- close, back off, again.
function Bus:_run_link(name, setup, down)
  local attempt = 0
  local link = self.links[name]
  while not self.closed do
    local c, err, ename = M.connect(self.host, self.port, {
      timeout = self.connect_timeout, password = self.password, username = self.username,
      db = name == "publish" and self.db or nil,
      on_push = name == "subscribe" and function(v) self:_on_push(v) end or nil,
    })
    if c and self.closed then c:close() break end
    if c then
      attempt = 0
      setup(c)
      if not c.closed then
        link.up = true
        link.connections = link.connections + 1
        if link.connections > 1 then self.stats.reconnects = self.stats.reconnects + 1 end
        c:wait_closed()
        link.up = false
        down(c)
        if not self.closed then
          self:_error(c.close_error or "connection closed", c.close_name or "closed", name)
        end
      end
    else
      self:_error(err, ename, name)
    end
    if self.closed then break end
    if not link.down_since then
      link.down_since = uvws.now()
      self.stats.outages = self.stats.outages + 1
    end
    attempt = attempt + 1
    self:_pause(self:_backoff(attempt))
  end
end

function Bus:_start_links()
  local pub = self.links.publish
  uvws.spawn(function()
    self:_run_link("publish", function(c)
      self._pub = c
      self._inflight = 0
      c.on_close = function(_, _, _, unanswered)
        self._pub_up = false
        if unanswered > 0 then
          self.stats.unconfirmed = self.stats.unconfirmed + unanswered
          self._outage_unconfirmed = self._outage_unconfirmed + unanswered
          self:_loss({ what = "unconfirmed", count = unanswered, link = "publish" })
        end
        self._inflight = 0
      end
      self._pub_up = true
      local waited = self._qt - self._qh + 1
      self:_flush()
      if pub.down_since then
        local info = {
          what = "outage", link = "publish", seconds = uvws.now() - pub.down_since,
          dropped = self._outage_dropped, unconfirmed = self._outage_unconfirmed,
          sent_late = waited,
        }
        pub.down_since = nil
        self._outage_dropped, self._outage_unconfirmed = 0, 0
        self:_loss(info)
      end
    end, function()
      self._pub_up = false
    end)
  end)
  local sublink = self.links.subscribe
  uvws.spawn(function()
    self:_run_link("subscribe", function(c)
      self._sub = c
      self._pending, self._confirmed = {}, {}
      self._sub_up = true
      local list = {}
      for ch in pairs(self._desired) do
        list[#list + 1] = ch
        self._pending[ch] = 1
      end
      table.sort(list)
      for i = 1, #list, 256 do
        c:send_push("SUBSCRIBE", table.unpack(list, i, math.min(#list, i + 255)))
      end
      if sublink.down_since then
        local topics = {}
        for _, ch in ipairs(list) do topics[#topics + 1] = self._desired[ch] end
        local info = { what = "outage", link = "subscribe",
                       seconds = uvws.now() - sublink.down_since, topics = topics }
        sublink.down_since = nil
        self:_loss(info)
      end
    end, function()
      self._sub_up = false
      self._pending, self._confirmed = {}, {}
    end)
  end)
end

-- Every ping_interval seconds both links must answer a PING within
-- ping_timeout; a link that does not (a hung Redis, a half-open TCP
-- connection) is dropped and reconnects.
function Bus:_heartbeat()
  uvws.spawn(function()
    while not self.closed do
      self:_pause(self.ping_interval)
      if self.closed then break end
      local pubc = self._pub_up and self._pub or nil
      local subc = self._sub_up and self._sub or nil
      local pub_ok = pubc == nil
      if pubc then pubc:send(function(v) if v ~= nil then pub_ok = true end end, "PING") end
      self._pong = subc == nil
      if subc then subc:send_push("PING") end
      local deadline = uvws.now() + self.ping_timeout
      while not self.closed and not (pub_ok and self._pong) and uvws.now() < deadline do
        self:_pause(math.min(0.05, self.ping_timeout))
      end
      if self.closed then break end
      if pubc and not pub_ok and not pubc.closed then
        self:_error("no answer to PING within " .. self.ping_timeout .. " s", "ETIMEDOUT", "publish")
        pubc:abort("no answer to PING")
      end
      if subc and not self._pong and not subc.closed then
        self:_error("no answer to PING within " .. self.ping_timeout .. " s", "ETIMEDOUT", "subscribe")
        subc:abort("no answer to PING")
      end
    end
  end)
end

-- Closes the bus when the server closes (its shutdown may come from a
-- signal, outside any coroutine, so it is watched rather than wrapped).
function Bus:_watch()
  uvws.spawn(function()
    while not self.closed do
      if self.server._closing then self:close() break end
      self:_pause(self.watch_interval)
    end
  end)
end

--- Mirrors `server`'s topics to Redis.  Returns the bus at once; the links
-- connect in the background (bus:wait_ready() waits for them).
-- opts: host, port, password, username, db, channel_prefix, connect_timeout,
--   min_delay, max_delay, factor, jitter (reconnection backoff),
--   max_queue, max_queue_bytes (messages kept while the publish link is
--   down), max_inflight (PUBLISHes awaiting their reply), ping_interval,
--   ping_timeout (heartbeat; 0 disables), on_loss(info),
--   on_error(message, name, link), on_message(topic, data, kind, origin)
--   (after each message from another process is delivered locally).
function M.attach(server, opts)
  if type(server) ~= "table" or type(server._topics) ~= "table" or type(server.publish) ~= "function" then
    error("uvws.redis.attach: expects a uvws server", 2)
  end
  if server._redis_bus then error("uvws.redis.attach: this server already has a bus", 2) end
  opts = opts or {}
  if type(opts) ~= "table" then error("uvws.redis.attach: options must be a table", 2) end
  for _, k in ipairs { "on_loss", "on_error", "on_message" } do
    if opts[k] ~= nil and type(opts[k]) ~= "function" then
      error("uvws.redis.attach: " .. k .. " must be a function", 2)
    end
  end
  local d = M.defaults
  local function opt(k) if opts[k] == nil then return d[k] end return opts[k] end
  local bus = setmetatable({
    server = server, id = random_id(),
    host = opt("host"), port = opt("port"), password = opts.password, username = opts.username,
    db = opts.db, prefix = opt("channel_prefix"), connect_timeout = opt("connect_timeout"),
    min_delay = opt("min_delay"), max_delay = opt("max_delay"), factor = opt("factor"),
    jitter = opt("jitter"), max_queue = opt("max_queue"), max_queue_bytes = opt("max_queue_bytes"),
    max_inflight = opt("max_inflight"), watch_interval = opt("watch_interval"),
    ping_interval = opt("ping_interval"), ping_timeout = opt("ping_timeout"),
    on_loss = opts.on_loss or default_on_loss, on_error = opts.on_error or default_on_error,
    on_message = opts.on_message,
    stats = {
      published = 0,    -- messages published here (each also went to local subscribers)
      sent = 0,         -- PUBLISH commands written to Redis
      acked = 0,        -- ... and answered
      queued = 0,       -- waiting for the publish link now
      dropped = 0,      -- not sent: the queue was full or the bus closed
      unconfirmed = 0,  -- written, then the link dropped before the answer
      failed = 0,       -- answered with an error
      received = 0,     -- messages from Redis on mirrored topics (echoes included)
      echoes = 0,       -- ... our own, skipped
      delivered = 0,    -- ... from elsewhere, delivered to local subscribers
      missed = 0,       -- gaps in another bus's sequence: published there, never received here
      outages = 0,      -- times a link went down (or could not come up)
      reconnects = 0,   -- times a link came back
    },
    links = { publish = { up = false, connections = 0 }, subscribe = { up = false, connections = 0 } },
    closed = false,
    _q = {}, _qh = 1, _qt = 0, _qbytes = 0, _inflight = 0,
    _outage_dropped = 0, _outage_unconfirmed = 0,
    _seq = {}, _desired = {}, _pending = {}, _confirmed = {}, _last = {}, _reset_on_confirm = {},
    _sleepers = {}, _pub_up = false, _sub_up = false,
  }, Bus)
  bus._on_reply = publish_reply(bus)

  -- Publishing: local delivery by the server's own publish, then Redis.
  local base = server.publish
  bus._base_publish = base
  bus._own_publish = rawget(server, "publish")
  server.publish = function(self, topic, data, kind, skip)
    local n = base(self, topic, data, kind, skip)   -- checks the arguments
    bus:_send(topic, data, kind or "text")
    return n
  end

  -- Subscriptions: the server's topic table, seen through a proxy whose
  -- writes (first subscriber in, last one out) are the hook.
  local raw = server._topics
  bus._raw_topics = raw
  server._topics = setmetatable({}, {
    __index = raw,
    __newindex = function(_, topic, subs)
      local had = raw[topic] ~= nil
      raw[topic] = subs
      if subs ~= nil and not had then
        bus:_want(topic)
      elseif subs == nil and had then
        bus:_unwant(topic)
      end
    end,
    __pairs = function() return next, raw, nil end,
  })
  server._redis_bus = bus
  for topic in pairs(raw) do bus:_want(topic) end

  bus:_start_links()
  bus:_watch()
  if bus.ping_interval and bus.ping_interval > 0 then bus:_heartbeat() end
  return bus
end

--- Are both links up and every mirrored topic subscribed in Redis?
function Bus:ready()
  if not (self._pub_up and self._sub_up) then return false end
  for ch in pairs(self._desired) do
    if not self._confirmed[ch] then return false end
  end
  return true
end

--- Waits (inside a coroutine, at most `timeout` seconds, default 5) until
-- ready(): true, or nil, "timeout", "timeout".
function Bus:wait_ready(timeout)
  local deadline = uvws.now() + (timeout or 5)
  while not self:ready() do
    if self.closed then return nil, "bus closed", "closed" end
    if uvws.now() >= deadline then return nil, "timeout", "timeout" end
    uvws.sleep(0.01)
  end
  return true
end

--- The topics mirrored to Redis now (a sorted list).
function Bus:topics()
  local list = {}
  for _, topic in pairs(self._desired) do list[#list + 1] = topic end
  table.sort(list)
  return list
end

--- Detaches from the server and closes both links.  What is queued is
-- written first when the publish link is up, else reported as dropped.
-- Inside a coroutine it waits (at most `timeout` seconds, default 1) for
-- Redis to answer what was written; what stays unanswered is reported as
-- unconfirmed.
function Bus:close(timeout)
  if self.closed then return true end
  self.closed = true
  local srv = self.server
  srv.publish = self._own_publish
  srv._topics = self._raw_topics
  srv._redis_bus = nil
  if self._pub_up then
    local q = self._q
    for i = self._qh, self._qt do self:_write(q[i][1], q[i][2]) end
  else
    local n = self._qt - self._qh + 1
    if n > 0 then
      self.stats.dropped = self.stats.dropped + n
      self:_loss({ what = "dropped", count = n, reason = "closed" })
    end
  end
  self._q, self._qh, self._qt, self._qbytes = {}, 1, 0, 0
  self.stats.queued = 0
  if self._pub_up and self._inflight > 0 and coroutine.isyieldable() then
    local deadline = uvws.now() + (timeout or 1)
    while self._pub_up and self._inflight > 0 and uvws.now() < deadline do uvws.sleep(0.005) end
  end
  if self._pub then self._pub:close() end
  if self._sub then self._sub:close() end
  for co in pairs(self._sleepers) do sched.wake(co, true) end
  return true
end

return M
