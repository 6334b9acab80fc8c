--- uvws: WebSocket server and client for Lua 5.4 on libuv.
--
-- Design criteria:
--  * Every waiting call is coroutine-friendly: it suspends the running
--    coroutine and the loop resumes it.  Handlers read like blocking code.
--  * The C core (uvws.core) never yields and never raises for a runtime
--    failure; this module waits, applies deadlines and turns failures into
--    `nil, message, name`.  Misuse (a wrong argument type, a waiting call
--    outside a coroutine) raises.
--  * Timeouts are the last argument of every waiting call, in seconds.
--  * An error in a hook or handler goes to the server's `on_error` and
--    never takes the process down.
local core = require "uvws.core"
local sched = require "uvws.sched"
local request = require "uvws.request"
local urlmod = require "uvws.url"

local M = { _VERSION = "uvws scm" }

M.spawn = sched.spawn
M.sleep = sched.sleep
M.now = sched.now
M.origin_allowed = request.origin_allowed

-- Messages do not go through the dispatcher (see lua_core.c on_message).
local EV_REQUEST, EV_PONG, EV_CLOSED, EV_TIMER, EV_DRAIN, EV_RESPONSE, EV_SIGNAL =
  core.EV_REQUEST, core.EV_PONG, core.EV_CLOSED,
  core.EV_TIMER, core.EV_DRAIN, core.EV_RESPONSE, core.EV_SIGNAL
local EV_ACCEPT_ERROR = core.EV_ACCEPT_ERROR

local signal_handlers = {}   -- signum -> function
local live_servers = setmetatable({}, { __mode = "k" })

-- Default limits, named the same for servers and clients.  Sizes are
-- bytes, times seconds; false or 0 disables.
local DEFAULTS = {
  max_message_size = 1024 * 1024,
  max_frame_size = false,
  max_head_size = 8192,
  max_headers = 100,
  max_body_size = 1024 * 1024,
  handshake_timeout = 10,
  close_timeout = 5,
  idle_timeout = false,
  ping_interval = 20,
  pong_timeout = 20,
  max_queue = 64,
  send_high_water = 1024 * 1024,
  max_connections = false,
  max_inflated_size = false,
}
local SEND_POLICIES = { wait = true, drop = true, close = true }
M.defaults = DEFAULTS

local function default_on_error(err, trace)
  io.stderr:write("uvws: ", tostring(trace or err), "\n")
end

-- Reject marker returned by uvws.reject().
local REJECT = setmetatable({}, { __name = "uvws.reject" })

--- Builds an answer for `on_upgrade` that refuses the upgrade.
-- @param status HTTP status (400-599)
-- @param body optional body text
-- @param headers optional table of extra response headers
function M.reject(status, body, headers)
  if math.type(status) ~= "integer" or status < 400 or status > 599 then
    error("uvws.reject: status must be an integer from 400 to 599", 2)
  end
  if body ~= nil and type(body) ~= "string" then
    error("uvws.reject: body must be a string", 2)
  end
  if headers ~= nil and type(headers) ~= "table" then
    error("uvws.reject: headers must be a table", 2)
  end
  return { [REJECT] = true, status = status, body = body, headers = headers }
end

------------------------------------------------------------------------------
-- The WebSocket object, the same on both sides.
------------------------------------------------------------------------------

local WS = {}
WS.__index = WS
WS.__name = "uvws.websocket"

function WS:__tostring()
  return string.format("uvws.websocket (%s)", self.closed and "closed" or "open")
end

local function closed_error(ws)
  local code, reason = ws.close_code or 1006, ws.close_reason or ""
  if reason ~= "" then
    return nil, string.format("connection closed (%d %s)", code, reason), "closed"
  end
  return nil, string.format("connection closed (%d)", code), "closed"
end

-- Defaults of the fields a websocket sets only when they differ: an idle
-- server-side websocket is a table of four slots (_c, request, server and
-- data, the one a hook that authenticates fills), whose options are its
-- server's; a client's has _c and _opts.
WS.closed = false
WS.deflate = false

local function new_ws(conn, opts, on_message, srv, req, data)
  -- Created on first use, so an idle connection costs little: _pings
  -- ({payload, co, sent}), _close_waiters, _drain_waiters.  Queued
  -- messages, the receiving coroutine and the backpressure flag live in C
  -- (the conn).
  -- The constructor sizes the table: four slots with the request, two
  -- (24 bytes each) without it and data (keep_request = false).
  local ws
  if req then
    ws = setmetatable({ _c = conn, request = req, server = srv, data = data }, WS)
  elseif data ~= nil then
    ws = setmetatable({ _c = conn, server = srv, data = data }, WS)
  elseif srv then
    ws = setmetatable({ _c = conn, server = srv }, WS)
  else
    ws = setmetatable({ _c = conn, _opts = opts }, WS)
  end
  conn:bind(ws, opts.send_high_water or nil, opts.max_queue or nil, false, on_message)
  return ws
end

local function opts_of(ws)
  return ws._opts or ws.server.opts
end

-- The timer of a receive with a timeout.
local function arm_timeout(conn, co, timeout)
  return sched.add_timer(timeout, function()
    conn:wake_if(co, nil, "timeout", "timeout")
  end)
end

local send_slow   -- below

-- receive, send and the each() iterator are C functions (lua_core.c): a
-- message goes from the socket to the waiting coroutine with no Lua frame
-- in between.
local cws = core.ws_methods {
  send_slow = function(...) return send_slow(...) end,
  closed_error = closed_error,
  arm_timeout = arm_timeout,
  cancel_timer = sched.cancel,
}
local ws_next = cws.next

--- Waits for the next message.
-- @param timeout seconds (optional)
-- @return data, "text"|"binary"  or  nil, message, name ("closed", "timeout")
WS.receive = cws.receive

--- Iterates over messages until the connection closes.
-- for data, kind in ws:each() do ... end
function WS:each(timeout)
  if timeout == nil then return ws_next, self._c end
  local receive = cws.receive
  local function iterate(_, last)
    -- the loop's copy of the last message (a long one) is let go, as
    -- ws_next does
    if last then core.release_control(last) end
    last = nil   -- luacheck: ignore (the argument's own reference)
    local data, kind = receive(self, timeout)
    if data then return data, kind end
    return nil
  end
  return iterate
end

local KINDS = { text = false, binary = true }

local function backpressure(ws, timeout)
  local opts = opts_of(ws)
  local hwm = opts.send_high_water
  if not hwm or ws._c:buffered() < hwm then return true end
  local policy = opts.send_policy
  if policy == "drop" then
    return nil, "send buffer full (" .. ws._c:buffered() .. " bytes queued)", "backpressure"
  elseif policy == "close" then
    ws._c:close(1008, "send buffer full")
    ws._c:bp(false)   -- later sends find the close frame sent: "closed"
    return nil, "send buffer full: connection closed", "backpressure"
  end
  -- "wait": only a coroutine can wait; elsewhere the message is queued.
  if not coroutine.isyieldable() then return true end
  while not ws.closed and ws._c:buffered() >= hwm do
    local ok, err, name = ws:drain(timeout)
    if not ok then return nil, err, name end
  end
  if ws.closed then return closed_error(ws) end
  return true
end

--- Waits until the send queue is below the high-water mark.
-- @return true  or  nil, message, name
function WS:drain(timeout)
  local hwm = opts_of(self).send_high_water
  if self.closed then return closed_error(self) end
  if not hwm or self._c:buffered() < hwm then return true end
  local co = sched.current("drain")
  local waiters = self._drain_waiters
  if not waiters then
    waiters = {}
    self._drain_waiters = waiters
  end
  waiters[#waiters + 1] = co
  self._c:want_drain()
  return sched.wait(timeout, function()
    for i = 1, #waiters do
      if waiters[i] == co then table.remove(waiters, i) break end
    end
  end)
end

--- Queues a message.  `kind` is "text" (the default) or "binary"; text
-- must be valid UTF-8.  Over the send high-water mark the send_policy
-- applies: "wait" (up to `timeout`), "drop" or "close".
-- @return true  or  nil, message, name
-- WS.send is C (lua_core.c) for the common case; this is the rest.
function send_slow(self, data, kind, timeout)
  local flags
  if timeout ~= nil and type(timeout) == "table" then
    local opts = timeout
    timeout = opts.timeout
    if opts.compress == false then flags = core.SEND_NO_COMPRESS
    elseif opts.compress == true then flags = core.SEND_COMPRESS end
  end
  local binary = KINDS[kind or "text"]
  if binary == nil then
    error("uvws: message kind must be 'text' or 'binary', got " .. tostring(kind), 3)
  end
  if self.closed then return closed_error(self) end
  local c = self._c
  if c:bp() then
    -- The queue was over the high-water mark after an earlier send.
    local bok, berr, bname = backpressure(self, timeout)
    if not bok then return nil, berr, bname end
    c:bp(false)
  end
  if type(data) ~= "string" then
    error("uvws: send expects a string, got " .. type(data), 3)
  end
  local queued, err, name = c:send(data, binary, flags)
  if not queued then
    if name == "EUTF8" then
      error("uvws: text message is not valid UTF-8 (send it as 'binary')", 3)
    end
    if name == "closed" then return nil, "connection is closing", "closed" end
    return nil, err, name
  end
  return true
end
WS.send = cws.send

--- Sends a ping and waits for its pong.
-- @return the round-trip time in seconds  or  nil, message, name
function WS:ping(data, timeout)
  data = data or ""
  if type(data) ~= "string" or #data > 125 then
    error("uvws: ping payload must be a string of at most 125 bytes", 2)
  end
  if self.closed then return closed_error(self) end
  local ok, err, name = self._c:ping(data)
  if not ok then return nil, err, name end
  local co = sched.current("ping")
  local entry = { data, co, core.hrtime() }
  local pings = self._pings
  if not pings then
    pings = {}
    self._pings = pings
  end
  pings[#pings + 1] = entry
  if timeout == nil then timeout = opts_of(self).pong_timeout or nil end
  return sched.wait(timeout, function()
    for i = 1, #pings do
      if pings[i] == entry then table.remove(pings, i) break end
    end
  end)
end

--- Sends an unsolicited pong (a unidirectional heartbeat).
function WS:pong(data)
  data = data or ""
  if type(data) ~= "string" or #data > 125 then
    error("uvws: pong payload must be a string of at most 125 bytes", 2)
  end
  if self.closed then return closed_error(self) end
  return self._c:ping(data, true)
end

--- Starts the closing handshake and waits until the connection is closed
-- (at most the close timeout).
-- @return true  or  nil, message, name
function WS:close(code, reason)
  code = code or 1000
  reason = reason or ""
  if math.type(code) ~= "integer" then
    error("uvws: close code must be an integer", 2)
  end
  if type(reason) ~= "string" or #reason > 123 then
    error("uvws: close reason must be a string of at most 123 bytes", 2)
  end
  if not core.utf8_valid(reason) then
    error("uvws: close reason must be valid UTF-8", 2)
  end
  if self.closed then return true end
  local ok, err, name = self._c:close(code, reason)
  if not ok and name == "EINVAL" then
    error("uvws: invalid close code " .. code, 2)
  end
  if not ok and name ~= "closed" then return nil, err, name end
  if not self.closed and coroutine.isyieldable() then
    local co = sched.current("close")
    local waiters = self._close_waiters
    if not waiters then
      waiters = {}
      self._close_waiters = waiters
    end
    waiters[#waiters + 1] = co
    sched.wait(nil)
  end
  return true
end

--- Subscribes to a topic of the server (see Server:publish).
function WS:subscribe(topic)
  if type(topic) ~= "string" then error("uvws: topic must be a string", 2) end
  local srv = self.server
  if not srv then error("uvws: subscribe is for server-side connections", 2) end
  if self.closed then return closed_error(self) end
  local subs = srv._topics[topic]
  if not subs then
    subs = { n = 0 }
    srv._topics[topic] = subs
  end
  if not subs[self] then
    subs[self] = true
    subs.n = subs.n + 1
    self._topics = self._topics or {}
    self._topics[topic] = true
  end
  return true
end

--- Unsubscribes from a topic.
function WS:unsubscribe(topic)
  local srv = self.server
  local subs = srv and srv._topics[topic]
  if subs and subs[self] then
    subs[self] = nil
    subs.n = subs.n - 1
    if subs.n == 0 then srv._topics[topic] = nil end
    self._topics[topic] = nil
    return true
  end
  return false
end

--- The topics this connection is subscribed to (a list).
function WS:topics()
  local list = {}
  for t in pairs(self._topics or {}) do list[#list + 1] = t end
  table.sort(list)
  return list
end

--- Publishes to every subscriber of a topic except this connection.
function WS:publish(topic, data, kind)
  return self.server:publish(topic, data, kind, self)
end

--- Bytes queued and not yet taken by the kernel.
function WS:buffered_amount()
  return self._c:buffered()
end

--- The peer's address and port.
function WS:remote_address()
  return self._c:peer()
end

-- Event handlers for a websocket --------------------------------------------

local ws_on_response
local Stream   -- defined with the client code below
local check_deflate

------------------------------------------------------------------------------
-- Event-style handlers: on_message(ws, data, kind) without a coroutine per
-- connection.  Each call runs in a coroutine from a pool, so it may wait
-- (sleep, send with backpressure, a client request); messages that arrive
-- meanwhile for the same connection wait their turn, in order.
------------------------------------------------------------------------------

-- The pooled threads and the per-connection queue are in C (lua_core.c:
-- evt_start); errors come here.
local function report_event_error(ws, e)
  if getmetatable(ws) ~= WS then   -- the upgrade (obj: the server) failed
    pcall(ws.on_error or default_on_error, e.err, e.trace)
    return
  end
  local srv = ws.server
  pcall(srv and srv.on_error or default_on_error, e.err, e.trace)
  if not ws.closed then ws._c:close(1011, "internal error") end
end

local function ws_on_pong(ws, data)
  local pings = ws._pings
  if not pings then return end
  for i = 1, #pings do
    if pings[i][1] == data then
      -- A pong answers its ping and every earlier one (RFC 6455 §5.5.3).
      local now = core.hrtime()
      for _ = 1, i do
        local e = table.remove(pings, 1)
        sched.wake(e[2], now - e[3])
      end
      return
    end
  end
end

local server_ws_closed   -- with the server code below

local function ws_on_closed(ws, code, reason, errname)
  ws.closed = true
  local connecting = ws._connecting
  if connecting then
    -- The connection failed before the upgrade completed.
    ws._connecting = nil
    local msg = reason ~= "" and reason or "connection closed during the handshake"
    sched.wake(connecting, nil, msg, errname or "closed")
    return
  end
  ws.close_code = ws.close_code or code
  ws.close_reason = ws.close_reason or reason
  ws._c:wake()   -- a receive makes its "closed" answer then
  local pings = ws._pings
  ws._pings = nil
  for i = 1, pings and #pings or 0 do sched.wake(pings[i][2], closed_error(ws)) end
  local waiters = ws._close_waiters
  ws._close_waiters = nil
  for i = 1, waiters and #waiters or 0 do sched.wake(waiters[i], true) end
  local drains = ws._drain_waiters
  ws._drain_waiters = nil
  for i = 1, drains and #drains or 0 do sched.wake(drains[i], closed_error(ws)) end
  if ws.server then server_ws_closed(ws) end
  if ws._on_closed then ws._on_closed(ws) end
end

------------------------------------------------------------------------------
-- Server
------------------------------------------------------------------------------

local Server = {}
Server.__index = Server
Server.__name = "uvws.server"

local function http_date()
  return os.date("!%a, %d %b %Y %H:%M:%S GMT")
end

local function check_header(name, value, who)
  if type(name) ~= "string" or not name:match("^[!#$%%&'*+%-.^_`|~%w]+$") then
    error(who .. ": invalid header name " .. tostring(name), 3)
  end
  value = tostring(value)
  if value:find("[%z\1-\8\10-\31\127]") then
    error(who .. ": invalid header value for " .. name, 3)
  end
  return value
end

-- Renders a headers table ({name = value} or {name = {v1, v2}} or a list
-- of {name, value} pairs) as header lines.
local function header_lines(headers, who, skip)
  if not headers then return "" end
  local out = {}
  local function add(name, value)
    if skip and skip[name:lower()] then return end
    if type(value) == "table" then
      for _, v in ipairs(value) do
        out[#out + 1] = name .. ": " .. check_header(name, v, who) .. "\r\n"
      end
    else
      out[#out + 1] = name .. ": " .. check_header(name, value, who) .. "\r\n"
    end
  end
  if headers[1] ~= nil then
    for _, pair in ipairs(headers) do add(pair[1], pair[2]) end
  else
    local names = {}
    for k in pairs(headers) do names[#names + 1] = k end
    table.sort(names)
    for _, k in ipairs(names) do add(k, headers[k]) end
  end
  return table.concat(out)
end
M._header_lines = header_lines

local REASONS = {
  [200] = "OK", [201] = "Created", [202] = "Accepted", [204] = "No Content",
  [206] = "Partial Content",
  [301] = "Moved Permanently", [302] = "Found", [303] = "See Other",
  [304] = "Not Modified", [307] = "Temporary Redirect",
  [308] = "Permanent Redirect", [400] = "Bad Request",
  [401] = "Unauthorized", [403] = "Forbidden", [404] = "Not Found",
  [405] = "Method Not Allowed", [406] = "Not Acceptable",
  [408] = "Request Timeout", [409] = "Conflict", [410] = "Gone",
  [411] = "Length Required", [413] = "Content Too Large",
  [415] = "Unsupported Media Type", [426] = "Upgrade Required",
  [429] = "Too Many Requests", [431] = "Request Header Fields Too Large",
  [500] = "Internal Server Error", [501] = "Not Implemented",
  [502] = "Bad Gateway", [503] = "Service Unavailable",
  [504] = "Gateway Timeout",
}

local MANAGED = { ["content-length"] = true, ["connection"] = true,
                  ["transfer-encoding"] = true, ["date"] = true }

-- Writes a complete HTTP answer on a connection.
local function write_response(conn, status, headers, body, keepalive, head_only)
  body = body or ""
  local lines = header_lines(headers, "uvws", MANAGED)
  -- 1xx, 204 and 304 answers carry no body and no Content-Length
  -- (RFC 9110 §8.6, §15.4.5).
  local bodiless = status < 200 or status == 204 or status == 304
  if bodiless then body = "" end
  local head = string.format(
    "HTTP/1.1 %d %s\r\nDate: %s\r\n%sConnection: %s\r\n%s\r\n",
    status, REASONS[status] or "Status", http_date(),
    bodiless and "" or ("Content-Length: " .. #body .. "\r\n"),
    keepalive and "keep-alive" or "close", lines)
  conn:write(head_only and head or head .. body)
end

-- The response object of on_request.
local Response = {}
Response.__index = Response
Response.__name = "uvws.response"

function Response:set_header(name, value)
  check_header(name, value, "uvws: set_header")
  self.headers[name] = value
  return self
end

--- Sends the whole answer: res:send(status, body [, headers]).
function Response:send(status, body, headers)
  if self.sent then error("uvws: response already sent", 2) end
  if math.type(status) ~= "integer" or status < 200 or status > 999 then
    error("uvws: status must be an integer from 200 to 999", 2)
  end
  if body ~= nil and type(body) ~= "string" then
    error("uvws: body must be a string", 2)
  end
  local all = {}
  for k, v in pairs(self.headers) do all[k] = v end
  for k, v in pairs(headers or {}) do all[k] = v end
  local keepalive = self._keepalive and not self._srv._closing
  write_response(self._conn, status, all, body, keepalive, self._head)
  self._conn:http_done(keepalive)
  self.sent = true
  return true
end

--- Starts a streaming answer (Server-Sent Events, long responses):
-- res:start(status, headers), then res:write(chunk)..., then res:finish().
-- HTTP/1.1 uses chunked transfer coding; HTTP/1.0 ends with the connection.
function Response:start(status, headers)
  if self.sent then error("uvws: response already sent", 2) end
  if math.type(status) ~= "integer" or status < 200 or status > 999 then
    error("uvws: status must be an integer from 200 to 999", 2)
  end
  local all = {}
  for k, v in pairs(self.headers) do all[k] = v end
  for k, v in pairs(headers or {}) do all[k] = v end
  self._chunked = self._keepalive ~= nil and self._version11
  local lines = header_lines(all, "uvws", MANAGED)
  local head = string.format("HTTP/1.1 %d %s\r\nDate: %s\r\n%s%s\r\n",
    status, REASONS[status] or "Status", http_date(),
    self._chunked and "Transfer-Encoding: chunked\r\n" or "Connection: close\r\n", lines)
  self.sent = true
  self._streaming = true
  self._conn:bind(self)
  self._conn:write(head)
  self._conn:http_stream()
  return true
end

--- Writes a chunk of a streaming answer.
-- @return true  or  nil, message, "closed" when the client went away
function Response:write(data)
  if not self._streaming then error("uvws: res:write needs res:start first", 2) end
  if type(data) ~= "string" then error("uvws: res:write expects a string", 2) end
  if self.closed or self._finished then return nil, "connection closed", "closed" end
  if data == "" then return true end
  local ok, err, name
  if self._chunked then
    ok, err, name = self._conn:write(string.format("%x\r\n", #data) .. data .. "\r\n")
  else
    ok, err, name = self._conn:write(data)
  end
  if not ok then return nil, err, name end
  return true
end

--- Ends a streaming answer.
function Response:finish()
  if not self._streaming or self._finished then return end
  self._finished = true
  if self.closed then return end
  if self._chunked then self._conn:write("0\r\n\r\n") end
  self._conn:http_done(false)
end

local function run_request(srv, conn, req)
  local res = setmetatable({ headers = {}, sent = false, _conn = conn,
    _srv = srv, _keepalive = req._keepalive, _head = req.method == "HEAD",
    _version11 = req.version ~= "1.0" },
    Response)
  sched.spawn(function()
    local ok, status, body, headers = xpcall(srv.on_request, function(e)
      return { err = e, trace = debug.traceback(tostring(e), 2) }
    end, req, res)
    if not ok then
      pcall(srv.on_error, status.err, status.trace)
      if not res.sent then
        res.sent = true
        write_response(conn, 500, { ["Content-Type"] = "text/plain" },
                       "internal server error\n", false, res._head)
        conn:http_done(false)
      end
      return
    end
    if not res.sent then
      if math.type(status) == "integer" then
        res:send(status, body, headers)
      else
        res:send(404, "not found\n", { ["Content-Type"] = "text/plain" })
      end
    end
  end)
end

local function reject_upgrade(conn, status, body, headers)
  body = body or ((REASONS[status] or "error") .. "\n")
  local h = { ["Content-Type"] = "text/plain; charset=utf-8" }
  for k, v in pairs(headers or {}) do h[k] = v end
  write_response(conn, status, h, body, false)
  conn:http_done(false)
end

-- Called when a server-side websocket closes (shared by all of them).
function server_ws_closed(w)
  local srv = w.server
  srv._nws = srv._nws - 1
  if srv.on_close and srv.on_message then
    w._c:run_event(srv.on_close, w, w.close_code, w.close_reason)
  end
  if w._topics then
    for topic in pairs(w._topics) do w:unsubscribe(topic) end
  end
  local waiters = srv._shutdown_waiters
  if waiters and srv._nws == 0 then
    srv._shutdown_waiters = nil
    for _, co in ipairs(waiters) do sched.wake(co, true) end
  end
end

local function traceback_err(e)
  return { err = e, trace = debug.traceback(tostring(e), 2) }
end

-- A connection's coroutine runs srv.handler itself, with no protected call
-- inside it: a C frame (pcall, xpcall) pins 20 stack slots, and with one
-- more under the C frame of a waiting receive a coroutine outgrows its
-- first stack (40 slots) and costs 640 bytes more for its whole life.  So
-- how a handler ends is seen where its coroutine is resumed
-- (sched.finished, called from C and from sched.wake): an error goes to
-- on_error and closes with 1011, a return closes with 1000.
local handler_ws = setmetatable({}, { __mode = "k" })   -- coroutine -> ws

local function handler_finished(co, ok, err)
  local ws = handler_ws[co]
  if not ws then return false end
  handler_ws[co] = nil
  ws._c:forget(co)
  if not ok then
    pcall(ws.server.on_error, err, debug.traceback(co, tostring(err)))
    if not ws.closed then ws._c:close(1011, "internal error") end
  elseif not ws.closed then
    ws._c:close(1000, "")
  end
  return true
end

local report_finished = sched.finished
function sched.finished(co, ok, err)
  if not handler_finished(co, ok, err) then report_finished(co, ok, err) end
end

local function start_coroutine(srv, ws)
  local co = coroutine.create(srv.handler)
  handler_ws[co] = ws
  sched.resume(co, ws)
end

local function start_handler(srv, conn, req, protocol, extra, data, use_deflate)
  local ok, err = conn:accept(protocol, extra, use_deflate)
  if not ok then return nil, err end
  -- The handshake is over: what was derived from the head is dropped.
  request.compact(req)
  local ws = new_ws(conn, srv.opts, srv.on_message, srv, srv.keep_request and req or nil, data)
  local on, _, zbits = conn:deflate()
  if on then ws.deflate = on end
  if zbits > 0 then ws._zbits = zbits end
  ws.protocol = protocol
  srv._nws = srv._nws + 1
  if srv.on_message and srv.on_open then
    conn:run_event(srv.on_open, ws, nil, nil, true)
  end
  return ws
end

-- Runs on_upgrade and answers the upgrade, on a pooled thread (it may
-- wait); then starts the handler in a coroutine of its own, whose stack
-- the upgrade did not grow.
-- Headers on_upgrade may not set (uvws writes them).
local UPGRADE_MANAGED = { ["sec-websocket-protocol"] = true, ["sec-websocket-accept"] = true,
  ["upgrade"] = true, ["connection"] = true }

local NO_RESULT = {}   -- on_upgrade returned nothing (read only)

local function upgrade_main(srv, conn, req)
  local result
  if srv.origins and not request.origin_allowed(req.headers.origin, srv.origins) then
    return reject_upgrade(conn, 403, "origin not allowed\n")
  end
  if srv.on_upgrade then
    local ok, r = xpcall(srv.on_upgrade, traceback_err, req)
    if not ok then
      pcall(srv.on_error, r.err, r.trace)
      return reject_upgrade(conn, 500, "internal server error\n")
    end
    result = r
  end
  if not conn:is_open() then return end
  if type(result) == "table" and result[REJECT] then
    return reject_upgrade(conn, result.status, result.body, result.headers)
  end
  if result ~= nil and type(result) ~= "table" then
    pcall(srv.on_error, "on_upgrade returned a " .. type(result) ..
      " (expected nothing, a table or uvws.reject(...))")
    return reject_upgrade(conn, 500, "internal server error\n")
  end
  result = result or NO_RESULT
  local protocol = result.protocol
  local offered = (protocol ~= nil or srv.protocols) and req.protocols
  if protocol == nil and srv.protocols then
    for _, want in ipairs(offered) do
      for _, have in ipairs(srv.protocols) do
        if want == have and protocol == nil then protocol = want end
      end
    end
  end
  if protocol ~= nil then
    local found = false
    for _, p in ipairs(offered) do if p == protocol then found = true end end
    if not found then
      pcall(srv.on_error, string.format(
        "on_upgrade selected the subprotocol %q, which the client did not offer",
        tostring(protocol)))
      return reject_upgrade(conn, 500, "internal server error\n")
    end
  end
  local okh, extra = true, nil
  if result.headers then
    okh, extra = pcall(header_lines, result.headers, "uvws: on_upgrade headers", UPGRADE_MANAGED)
  end
  if not okh then
    pcall(srv.on_error, extra)
    return reject_upgrade(conn, 500, "internal server error\n")
  end
  local ws = start_handler(srv, conn, req, protocol, extra ~= "" and extra or nil,
    result.data, result.deflate ~= false)
  if ws and srv.handler and not srv.on_message then return start_coroutine(srv, ws) end
end

local function on_request(conn, head, body, upgrade, srv)
  local req = request.new(head, body, conn)
  if upgrade then
    local _, offered = conn:deflate()
    req.deflate = offered
    conn:run_event(upgrade_main, srv, conn, req)
  else
    run_request(srv, conn, req)
  end
end

-- The server cannot accept connections: an accept failed, or (nofile
-- given) the last file descriptor was just taken, after which the kernel's
-- next connections are closed as soon as they come.  At most one report a
-- second.
local function on_accept_error(srv, name, message, nofile)
  local msg
  if nofile then
    msg = string.format("server on port %s: all %d file descriptors the process may open " ..
      "are in use (%s): new connections are closed until some end; raise the " ..
      "open-files limit (ulimit -n)", tostring(srv.port), nofile, name)
  else
    msg = string.format("server on port %s: cannot accept a connection: %s (%s)",
      tostring(srv.port), message, name)
  end
  pcall(srv.on_error, msg)
end

local function dispatch(ev, obj, a, b, c, d, e)
  if ev == EV_TIMER then
    sched.on_timer()
  elseif ev == EV_REQUEST then
    on_request(obj, a, b, c, d)
  elseif ev == EV_CLOSED then
    local mt = getmetatable(obj)
    if mt == WS or mt == Stream then
      ws_on_closed(obj, a, b, c)
    elseif mt == Response then
      obj.closed = true
      if obj.on_close then pcall(obj.on_close, obj) end
    end
  elseif ev == EV_RESPONSE then
    local mt = getmetatable(obj)
    if mt == WS then
      ws_on_response(obj, a, b, c, d, e)
    elseif mt == Stream then
      local co = obj._connecting
      obj._connecting = nil
      if co then sched.wake(co, obj) end
    end
  elseif ev == EV_PONG then
    if getmetatable(obj) == WS then ws_on_pong(obj, a) end
  elseif ev == EV_ACCEPT_ERROR then
    on_accept_error(obj, a, b, c)
  elseif ev == EV_SIGNAL then
    local h = signal_handlers[obj]
    if h then
      local ok, err = pcall(h, obj)
      if not ok then default_on_error(err) end
    end
  elseif ev == EV_DRAIN then
    if getmetatable(obj) == WS then
      local drains = obj._drain_waiters
      if drains and #drains > 0 then
        obj._drain_waiters = nil
        for i = 1, #drains do sched.wake(drains[i], true) end
      end
    end
  end
end
core.set_dispatch(dispatch, function(co, ok, err) sched.finished(co, ok, err) end,
  report_event_error)

local DEFLATE_KEYS = {
  server_no_context_takeover = "boolean", client_no_context_takeover = "boolean",
  server_max_window_bits = "number", client_max_window_bits = "number",
  level = "number", mem_level = "number", threshold = "number",
}

-- Validates the deflate option: nil/false (off), true (defaults) or a
-- table of settings.
function check_deflate(d, who)
  if d == nil or d == false then return false end
  if d == true then return true end
  if type(d) ~= "table" then error(who .. ": deflate must be true, false or a table", 3) end
  for k, v in pairs(d) do
    local want = DEFLATE_KEYS[k]
    if not want then error(who .. ": unknown deflate setting " .. tostring(k), 3) end
    if type(v) ~= want then error(who .. ": deflate." .. k .. " must be a " .. want, 3) end
  end
  return d
end

local function merge_opts(opts)
  local o = {}
  for k, v in pairs(DEFAULTS) do o[k] = v end
  for k, v in pairs(opts) do o[k] = v end
  o.send_policy = opts.send_policy or "wait"
  if not SEND_POLICIES[o.send_policy] then
    error("uvws: send_policy must be 'wait', 'drop' or 'close'", 3)
  end
  for k, v in pairs(DEFAULTS) do
    local x = o[k]
    if x ~= false and type(x) ~= "number" then
      error("uvws: option " .. k .. " must be a number or false", 3)
    end
    if v and x == 0 then o[k] = false end
  end
  return o
end

local function limits_table(o)
  local t = {}
  for k in pairs(DEFAULTS) do
    local v = o[k]
    if v then
      if k:match("size$") or k == "max_headers" or k == "send_high_water" or k == "max_connections" then
        t[k] = math.tointeger(v) or error("uvws: " .. k .. " must be an integer", 4)
      else
        t[k] = v
      end
    end
  end
  return t
end

------------------------------------------------------------------------------
-- Client
------------------------------------------------------------------------------

local HANDSHAKE_ERRORS = {
  ESTATUS = "the server answered with status %d instead of 101 Switching Protocols",
  EUPGRADE = "the 101 response lacks Upgrade: websocket",
  ECONNECTION = "the 101 response lacks Connection: Upgrade",
  EACCEPT = "the 101 response has a wrong Sec-WebSocket-Accept",
  EPROTOCOL = "the server selected a subprotocol that was not offered",
  EEXTENSION = "the server selected an extension that was not offered",
  EPROXY = "the proxy refused the CONNECT request with status %d",
}

local function response_table(status, flat)
  local headers, list = request.headers_of(flat)
  return { status = status, headers = headers, header_list = list }
end

function ws_on_response(ws, status, flat, errname, protocol, detail)
  local resp = response_table(status, flat)
  ws.deflate = ws._c:deflate()
  resp.tls = ws._c:tls_info()
  local info = ws._c:client_info()
  if info then
    -- Raw heads and timings, for uvws inspect and for debugging.
    resp.raw, resp.request_raw, resp.key = info.response, info.request, info.key
    resp.timings = { dns = info.dns, connect = info.connect, handshake = info.handshake }
  end
  ws.response = resp
  local co = ws._connecting
  if not errname then
    ws.protocol = protocol
    ws._connecting = nil
    if co then sched.wake(co, ws) end
    return
  end
  -- The connection is closed next; report the handshake failure then.
  ws._connecting = nil
  if co then
    local fmt = HANDSHAKE_ERRORS[errname] or ("handshake failed: " .. errname)
    local msg = fmt:format(status)
    if detail then msg = msg .. " (" .. detail .. ")" end
    sched.wake(co, nil, msg, errname, ws.response)
  end
end

local function client_headers(opts)
  local h = {}
  if opts.origin then h[#h + 1] = { "Origin", opts.origin } end
  if opts.headers then
    if opts.headers[1] ~= nil then
      for _, pair in ipairs(opts.headers) do h[#h + 1] = pair end
    else
      local names = {}
      for k in pairs(opts.headers) do names[#names + 1] = k end
      table.sort(names)
      for _, k in ipairs(names) do h[#h + 1] = { k, opts.headers[k] } end
    end
  end
  return header_lines(h, "uvws.connect", {
    ["host"] = true, ["upgrade"] = true, ["connection"] = true,
    ["sec-websocket-key"] = true, ["sec-websocket-version"] = true,
    ["sec-websocket-protocol"] = true })
end

local default_client_tls   -- verifying against the system store, built once

-- The client TLS context for the `tls` option: nil (verify with the system
-- store), or { ca =, cert =, key =, insecure = true }.
local function client_tls(t)
  if t == nil then
    if not default_client_tls then
      local ctx, err, name = core.tls_context(false, {})
      if not ctx then return nil, err, name end
      default_client_tls = ctx
    end
    return default_client_tls
  end
  if type(t) ~= "table" then error("uvws.connect: tls must be a table", 4) end
  if t.insecure ~= nil and t.insecure ~= true and t.insecure ~= false then
    error("uvws.connect: tls.insecure must be true or false", 4)
  end
  if (t.cert == nil) ~= (t.key == nil) then
    error("uvws.connect: tls.cert and tls.key go together", 4)
  end
  return core.tls_context(false, t)
end

local REDIRECTS = { [301] = true, [302] = true, [303] = true, [307] = true, [308] = true }

local function connect_once(u, o, opts)
  local protocols = opts.protocols and table.concat(opts.protocols, ", ") or nil
  local extra = client_headers(opts)
  local lim = limits_table(o)
  -- Clients offer permessage-deflate unless told not to.
  if opts.deflate == nil then lim.deflate = true
  else lim.deflate = check_deflate(opts.deflate, "uvws.connect") end
  local cargs = {
    host = u.host, port = u.port, host_header = u.host_header,
    target = u.target, protocols = protocols,
    headers = extra ~= "" and extra or nil, limits = lim,
  }
  local proxy = urlmod.proxy_for(u, opts.proxy)
  if proxy then
    local p, perr = urlmod.parse(proxy:match("^%a[%w+.-]*://") and proxy or "http://" .. proxy)
    if not p then return nil, "invalid proxy URL: " .. perr, "EINVAL" end
    local authority = (u.host:find(":", 1, true) and "[" .. u.host .. "]" or u.host) .. ":" .. u.port
    local auth = ""
    if p.userinfo then
      auth = "Proxy-Authorization: Basic " .. urlmod.base64(request.unescape(p.userinfo)) .. "\r\n"
    end
    cargs.host, cargs.port = p.host, p.port
    cargs.proxy_connect = "CONNECT " .. authority .. " HTTP/1.1\r\nHost: " .. authority ..
      "\r\n" .. auth .. "\r\n"
  end
  if u.secure then
    local tls, terr, tname = client_tls(opts.tls)
    if not tls then return nil, terr, tname end
    cargs.tls = tls
    cargs.servername = u.host
  end
  local conn, err, name = core.connect(cargs)
  if not conn then return nil, err, name end
  local ws = new_ws(conn, o)
  ws.url = u
  local co = sched.current("uvws.connect")
  ws._connecting = co
  local r1, r2, r3, r4 = sched.wait(nil)
  return r1, r2, r3, r4
end

------------------------------------------------------------------------------
-- Plain TCP (or TLS) streams, for protocols beside WebSocket (e.g. Redis)
------------------------------------------------------------------------------

Stream = {}
Stream.__index = Stream
Stream.__name = "uvws.stream"

function Stream:__tostring()
  return string.format("uvws.stream (%s)", self.closed and "closed" or "open")
end

--- Reads the next chunk of bytes: data, or nil, message, name.
Stream.read = cws.receive

--- Queues bytes to send.
function Stream:write(data)
  if type(data) ~= "string" then error("uvws: write expects a string", 2) end
  if self.closed then return nil, "connection closed", "closed" end
  return self._c:write(data)
end

--- Closes the stream once what was written is sent.
function Stream:close()
  if not self.closed then self._c:end_stream() end
  return true
end

--- Opens a TCP connection (inside a coroutine): host name or address,
-- port, and options `timeout` (seconds) and `tls` (as for uvws.connect,
-- or true for the defaults).
-- @return stream  or  nil, message, name
function M.tcp_connect(host, port, opts)
  if type(host) ~= "string" then error("uvws.tcp_connect: host must be a string", 2) end
  if math.type(port) ~= "integer" then error("uvws.tcp_connect: port must be an integer", 2) end
  opts = opts or {}
  local co = sched.current("uvws.tcp_connect")
  local o = merge_opts(opts)
  if opts.timeout ~= nil then o.handshake_timeout = opts.timeout end
  o.max_queue = opts.max_queue or 256
  local cargs = { host = host, port = port, raw = true, limits = limits_table(o) }
  if opts.tls then
    local tls, terr, tname = client_tls(opts.tls ~= true and opts.tls or nil)
    if not tls then return nil, terr, tname end
    cargs.tls, cargs.servername = tls, host
  end
  local conn, err, name = core.connect(cargs)
  if not conn then return nil, err, name end
  local st = setmetatable({ _c = conn, _opts = o, closed = false }, Stream)
  conn:bind(st, nil, o.max_queue, true)
  st._connecting = co
  return sched.wait(nil)
end

--- A client that reconnects after abnormal closes (see uvws.reconnecting
-- in README).  Loaded on first use.
function M.reconnecting(url, opts)
  return require("uvws.reconnecting").new(url, opts)
end

--- Opens a WebSocket connection (inside a coroutine).
-- @param url "ws://host[:port]/path?query"
-- @param opts protocols, headers, origin, timeout, follow_redirects,
--   proxy, and the limits
-- @return ws  or  nil, message, name [, response]
function M.connect(url, opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("uvws.connect: options must be a table", 2) end
  if opts.protocols ~= nil and type(opts.protocols) ~= "table" then
    error("uvws.connect: protocols must be a list of strings", 2)
  end
  for _, p in ipairs(opts.protocols or {}) do
    if type(p) ~= "string" or not p:match("^[!#$%%&'*+%-.^_`|~%w]+$") then
      error("uvws.connect: invalid subprotocol " .. tostring(p), 2)
    end
  end
  if opts.headers ~= nil and type(opts.headers) ~= "table" then
    error("uvws.connect: headers must be a table", 2)
  end
  sched.current("uvws.connect")
  local o = merge_opts(opts)
  if opts.timeout ~= nil then o.handshake_timeout = opts.timeout end
  local hops = opts.follow_redirects
  if hops == true then hops = 5 end
  hops = tonumber(hops) or 0
  local visited = 0
  while true do
    local u, perr = urlmod.parse(url)
    if not u then return nil, perr, "EINVAL" end
    if u.scheme ~= "ws" and u.scheme ~= "wss" then
      return nil, "not a WebSocket URL: " .. url, "EINVAL"
    end
    local ws, err, name, resp = connect_once(u, o, opts)
    if ws then return ws end
    if name == "ESTATUS" and resp and REDIRECTS[resp.status] and resp.headers.location then
      if visited >= hops then
        if hops == 0 then return nil, err, name, resp end
        return nil, "too many redirects (last to " .. resp.headers.location .. ")", "EREDIRECT", resp
      end
      visited = visited + 1
      local nexturl = urlmod.resolve(u, resp.headers.location)
      local nu = urlmod.parse(nexturl)
      if nu and u.secure and not nu.secure then
        return nil, "refusing a redirect from wss:// to ws:// (" .. nexturl .. ")", "EREDIRECT", resp
      end
      url = nexturl
    else
      return nil, err, name, resp
    end
  end
end

--- Starts a server.  See README for the options.
-- @return server  or  nil, message, name
function M.listen(opts)
  if type(opts) ~= "table" then error("uvws.listen expects a table", 2) end
  for _, k in ipairs { "on_upgrade", "on_request", "handler", "on_error",
                       "on_open", "on_message", "on_close" } do
    if opts[k] ~= nil and type(opts[k]) ~= "function" then
      error("uvws.listen: " .. k .. " must be a function", 2)
    end
  end
  if opts.port ~= nil and math.type(opts.port) ~= "integer" then
    error("uvws.listen: port must be an integer", 2)
  end
  if opts.keep_request ~= nil and type(opts.keep_request) ~= "boolean" then
    error("uvws.listen: keep_request must be a boolean", 2)
  end
  local o = merge_opts(opts)
  local host = opts.host or "127.0.0.1"
  if host == "localhost" then host = "127.0.0.1" end
  local tls
  if opts.tls ~= nil then
    if type(opts.tls) ~= "table" then error("uvws.listen: tls must be a table", 2) end
    local terr, tname
    tls, terr, tname = core.tls_context(true, opts.tls)
    if not tls then return nil, terr, tname end
  end
  local lim = limits_table(o)
  lim.deflate = check_deflate(opts.deflate, "uvws.listen")
  local cs, err, name = core.listen(host, opts.port or 8080, opts.backlog or 511,
    lim, opts.on_request ~= nil, tls, opts.reuseport and true or false)
  if not cs then return nil, err, name end
  local srv = setmetatable({
    _c = cs,
    opts = o,
    host = host,
    port = cs:port(),
    tls = tls ~= nil,
    on_upgrade = opts.on_upgrade,
    on_request = opts.on_request,
    handler = opts.handler,
    on_open = opts.on_open,
    on_message = opts.on_message,
    on_close = opts.on_close,
    on_error = opts.on_error or default_on_error,
    protocols = opts.protocols,
    origins = opts.origins,
    keep_request = opts.keep_request ~= false,
    opts_deflate = opts.deflate,
    _nws = 0,        -- open websockets (from the upgrade to EV_CLOSED)
    _topics = {},
  }, Server)
  cs:bind(srv)   -- the C server keeps srv alive until it is closed
  live_servers[srv] = true
  return srv
end

--- Publishes a message to every subscriber of `topic` (except `skip`).
-- The frame is built once and the same bytes are queued to each
-- subscriber.  A subscriber over its send high-water mark is handled by
-- its send_policy: "drop" skips it, "close" closes it, "wait" still queues
-- (publish never blocks) unless its queue passes 4 times the mark, which
-- closes it as a hopeless consumer.
-- @return the number of subscribers the message was queued to
function Server:publish(topic, data, kind, skip)
  if type(topic) ~= "string" then error("uvws: topic must be a string", 2) end
  if type(data) ~= "string" then error("uvws: publish expects a string", 2) end
  kind = kind or "text"
  local binary = KINDS[kind]
  if binary == nil then error("uvws: message kind must be 'text' or 'binary'", 2) end
  if not binary and not core.utf8_valid(data) then
    error("uvws: text message is not valid UTF-8 (publish it as 'binary')", 2)
  end
  local subs = self._topics[topic]
  if not subs then return 0 end
  local frame = core.frame(data, binary)
  -- Subscribers whose compressor keeps no context share one compressed
  -- frame per window size; the others get the plain frame.
  local zframes
  local dz = self.opts_deflate
  local compress = dz and #data >= (type(dz) == "table" and dz.threshold or 64)
  local o = self.opts
  local hwm, policy = o.send_high_water, o.send_policy
  local count = 0
  for ws in pairs(subs) do
    if ws ~= "n" and ws ~= skip and not ws.closed then
      local c = ws._c
      local over = hwm and c:buffered() >= hwm
      if over and (policy == "close" or c:buffered() >= 4 * hwm) then
        c:close(1008, "send buffer full")
      elseif not (over and policy == "drop") then
        local f = frame
        local bits = compress and ws._zbits
        if bits then
          zframes = zframes or {}
          f = zframes[bits]
          if not f then
            f = core.frame(data, binary, bits) or frame
            zframes[bits] = f
          end
        end
        if c:send_raw(f) then count = count + 1 end
      end
    end
  end
  return count
end

--- How many connections subscribe to `topic`.
function Server:subscribers(topic)
  local subs = self._topics[topic]
  return subs and subs.n or 0
end

--- The number of open WebSocket connections.
function Server:connection_count()
  return self._nws
end

--- The open WebSocket connections of this server (a list).
function Server:connections()
  -- The C loop's list of connections is the index: no table per server
  -- with an entry per connection.
  local list = {}
  for _, obj in ipairs(self._c:objects()) do
    if getmetatable(obj) == WS and not obj.closed then list[#list + 1] = obj end
  end
  return list
end

--- Stops listening and closes every connection with 1001 (going away).
function Server:close(code)
  if self._closing then return end
  self._closing = true
  self._c:close(code or 1001)
end

--- Graceful shutdown: stop accepting, close every connection with 1001
-- after what was already queued, wait for the peers' close frames up to
-- `timeout` seconds (default close_timeout), then cut what remains.  In a
-- coroutine it waits until every connection is closed.
-- @return true
function Server:shutdown(timeout)
  timeout = timeout or self.opts.close_timeout or 5
  if not self._closing then
    self._closing = true
    self._c:shutdown(1001, timeout)
  end
  if self._nws > 0 and coroutine.isyieldable() then
    local co = sched.current("shutdown")
    self._shutdown_waiters = self._shutdown_waiters or {}
    table.insert(self._shutdown_waiters, co)
    sched.wait(nil)
  end
  return true
end

function Server:__tostring()
  return string.format("uvws.server (%s port %d)", self.host, self.port)
end

------------------------------------------------------------------------------
-- Loop
------------------------------------------------------------------------------

--- Runs the loop until nothing is left to do (or uvws.stop()).
function M.run()
  -- Ctrl-C: lua5.4 only flags an interrupt for the next Lua instruction,
  -- which an idle server never runs (and a busy one runs inside a
  -- handler).  Unless the program handles SIGINT itself (uvws.on_signal),
  -- run() stops the loop and raises "interrupted!", as a Lua loop would.
  local interrupted, mine = false, nil
  if signal_handlers[core.SIGINT] == nil then
    mine = function()
      interrupted = true
      core.stop()
    end
    signal_handlers[core.SIGINT] = mine
    core.signal(core.SIGINT)
  end
  local ok, r = pcall(core.run)
  -- (unless the program set a handler of its own meanwhile)
  if mine and signal_handlers[core.SIGINT] == mine then
    signal_handlers[core.SIGINT] = nil
    core.signal(core.SIGINT, false)
  end
  if not ok then error(r, 0) end
  if interrupted then error("interrupted!", 2) end
  return r
end

--- Runs one turn of the loop, for a host with its own frame loop: with no
-- budget it never blocks; with budget_ms > 0 it waits at most that long
-- for an event.  Returns true while handles are active.
function M.step(budget_ms)
  if budget_ms ~= nil and (type(budget_ms) ~= "number" or budget_ms < 0) then
    error("uvws.step: budget must be a non-negative number of milliseconds", 2)
  end
  return core.step(budget_ms)
end

--- Calls fn(signum) on the loop when the process receives `signum` (a
-- number, or "SIGTERM", "SIGINT").  Pass nil to remove the handler.
function M.on_signal(signum, fn)
  if type(signum) == "string" then signum = core[signum] end
  if math.type(signum) ~= "integer" then error("uvws.on_signal: unknown signal", 2) end
  if fn ~= nil and type(fn) ~= "function" then error("uvws.on_signal: fn must be a function", 2) end
  signal_handlers[signum] = fn
  return core.signal(signum, fn ~= nil)
end

--- Gracefully shuts down every open server of this process.
function M.shutdown_all(timeout)
  local list = {}
  for srv in pairs(live_servers) do
    if not srv._closing then list[#list + 1] = srv end
  end
  for _, srv in ipairs(list) do
    if coroutine.isyieldable() then
      srv:shutdown(timeout)
    else
      srv._closing = true
      srv._c:shutdown(1001, timeout or srv.opts.close_timeout or 5)
    end
  end
end

--- Runs `n` worker processes, each calling main(i) in a fresh fork and then
-- running its loop; main should listen with reuseport = true so that every
-- worker accepts on the same port.  The calling process supervises: a
-- worker that exits abnormally is restarted (after `restart_delay`
-- seconds, default 1); on SIGTERM or SIGINT every worker gets SIGTERM,
-- shuts its servers down gracefully (within `grace` seconds, default 5),
-- and workers() returns once all have exited.  Call it outside any loop.
-- @return true  or  nil, message, name
function M.workers(n, main, opts)
  if math.type(n) ~= "integer" or n < 1 then error("uvws.workers: n must be a positive integer", 2) end
  if type(main) ~= "function" then error("uvws.workers: main must be a function", 2) end
  opts = opts or {}
  local grace = opts.grace or 5
  local restart_delay = opts.restart_delay or 1
  local children, count, stopping = {}, 0, false

  -- Forks happen only between loop turns, never inside a callback.
  local function start(i)
    local pid, err, name = core.fork()
    if not pid then return nil, err, name end
    if pid == 0 then
      -- The worker.
      M.worker_index = i
      signal_handlers = {}
      local function stop() M.shutdown_all(grace) end
      M.on_signal("SIGTERM", stop)
      M.on_signal("SIGINT", stop)
      local ok, e = xpcall(main, debug.traceback, i)
      if not ok then
        io.stderr:write("uvws worker ", i, ": ", tostring(e), "\n")
        core.exit(1)
      end
      core.run()
      core.exit(0)
    end
    children[pid] = i
    count = count + 1
    return pid
  end

  for i = 1, n do
    local ok, err, name = start(i)
    if not ok then
      for pid in pairs(children) do core.kill(pid, core.SIGTERM) end
      return nil, err, name
    end
  end
  local kill_at
  local function stop_all()
    if stopping then return end
    stopping = true
    for pid in pairs(children) do core.kill(pid, core.SIGTERM) end
    kill_at = sched.now() + grace + 2
  end
  M.on_signal("SIGTERM", stop_all)
  M.on_signal("SIGINT", stop_all)
  M.stop_workers = stop_all
  local restart_at = {}
  while count > 0 or (not stopping and next(restart_at)) do
    core.step(100)
    local pid, code, sig = core.wait()
    while pid do
      local i = children[pid]
      if i then
        children[pid] = nil
        count = count - 1
        if not stopping and (code ~= 0 or sig ~= 0) then
          io.stderr:write(string.format("uvws: worker %d (pid %d) died (%s); restarting\n",
            i, pid, sig ~= 0 and ("signal " .. sig) or ("exit " .. code)))
          restart_at[i] = sched.now() + restart_delay
        end
      end
      pid, code, sig = core.wait()
    end
    local now = sched.now()
    for i, t in pairs(restart_at) do
      if stopping then
        restart_at[i] = nil
      elseif now >= t then
        restart_at[i] = nil
        start(i)
      end
    end
    if kill_at and now >= kill_at then
      -- Workers that outlive the grace period are killed.
      for p in pairs(children) do core.kill(p, core.SIGKILL) end
      kill_at = nil
    end
  end
  M.on_signal("SIGTERM", nil)
  M.on_signal("SIGINT", nil)
  return true
end

--- Makes uvws.run() return after the current turn.
function M.stop()
  core.stop()
end

return M
