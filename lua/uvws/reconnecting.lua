--- uvws.reconnecting: a client connection that comes back by itself.
--
--   local reconnecting = require "uvws.reconnecting"
--   local rc = reconnecting.new("ws://127.0.0.1:9001/", {
--     on_connect = function(ws) ws:send("auth " .. token) end,
--   })
--   uvws.spawn(function()
--     rc:send("hello")                       -- waits while disconnected
--     for msg in rc:each() do print(msg) end -- across reconnections
--   end)
--
-- Design criteria:
--  * After an abnormal close (anything but a 1000 from the peer, including
--    a lost TCP connection) or a failed attempt, it reconnects after
--    min_delay * factor^(n-1) seconds, at most max_delay, multiplied by a
--    random factor in [1 - jitter, 1] so that clients of a restarted
--    server do not all come back at once.
--  * No message is dropped silently: while disconnected, send either waits
--    for the next connection (queue = "wait", bounded by a timeout) or
--    returns nil, "not connected", "disconnected" (queue = "error").  A
--    true result means the message was handed to an open connection; as
--    with any WebSocket, what is in flight when a connection drops is lost,
--    so an application that needs every message acknowledges them itself.
--  * on_connect(ws, rc) runs on every new connection before anyone else may
--    send or receive on it: the place to authenticate again.
--  * It never raises for a network failure; close() stops it for good.
local uvws = require "uvws"
local sched = require "uvws.sched"
local core = require "uvws.core"

local M = {}

local R = {}
R.__index = R
R.__name = "uvws.reconnecting"

-- Options of this module; everything else goes to uvws.connect.
local OWN = {
  min_delay = 0.5, max_delay = 30, factor = 2, jitter = 0.5,
  max_attempts = false, queue = "wait", send_timeout = false,
  on_connect = false, on_disconnect = false, should_retry = false,
}
M.defaults = OWN

-- Failures that another attempt will not fix.
local PERMANENT = {
  EINVAL = true, ENOTSUP = true, EREDIRECT = true, EUPGRADE = true,
  ECONNECTION = true, EACCEPT = true, EPROTOCOL = true, EEXTENSION = true,
}

--- The default retry policy: retry network failures, timeouts, 5xx and
-- 408/425/429 answers; give up on 4xx answers and broken 101s.
function M.should_retry(name, response)
  if PERMANENT[name] then return false end
  if name == "ESTATUS" and response then
    local s = response.status
    if s >= 400 and s < 500 and s ~= 408 and s ~= 425 and s ~= 429 then return false end
  end
  return true
end

--- The backoff delay for step n (1-based): min_delay * factor^(n-1), at
-- most max_delay; with `random` (a function returning [0, 1)), multiplied
-- by 1 - jitter * random().
function M.delay(opts, n, random)
  local d = opts.min_delay * opts.factor ^ (n - 1)
  if d > opts.max_delay then d = opts.max_delay end
  if random then d = d * (1 - opts.jitter * random()) end
  return d
end

local function check_opts(url, opts)
  if type(url) ~= "string" then error("uvws.reconnecting: url must be a string", 3) end
  if opts ~= nil and type(opts) ~= "table" then
    error("uvws.reconnecting: options must be a table", 3)
  end
  local o, copts = {}, {}
  for k, v in pairs(OWN) do o[k] = v end
  for k, v in pairs(opts or {}) do
    if OWN[k] ~= nil then o[k] = v else copts[k] = v end
  end
  for _, k in ipairs { "min_delay", "max_delay", "factor", "jitter" } do
    if type(o[k]) ~= "number" or o[k] < 0 then
      error("uvws.reconnecting: " .. k .. " must be a non-negative number", 3)
    end
  end
  if o.jitter > 1 then error("uvws.reconnecting: jitter must be between 0 and 1", 3) end
  if o.factor < 1 then error("uvws.reconnecting: factor must be at least 1", 3) end
  if o.max_attempts and (math.type(o.max_attempts) ~= "integer" or o.max_attempts < 1) then
    error("uvws.reconnecting: max_attempts must be a positive integer or false", 3)
  end
  if o.queue ~= "wait" and o.queue ~= "error" then
    error("uvws.reconnecting: queue must be \"wait\" or \"error\"", 3)
  end
  for _, k in ipairs { "on_connect", "on_disconnect", "should_retry" } do
    if o[k] and type(o[k]) ~= "function" then
      error("uvws.reconnecting: " .. k .. " must be a function", 3)
    end
  end
  return o, copts
end

--- Starts a reconnecting client; it connects at once in its own coroutine
-- (so new() may be called anywhere; uvws.run() must run the loop).
-- @param url "ws://..."
-- @param opts min_delay (0.5), max_delay (30), factor (2), jitter (0.5),
--   max_attempts (false: forever), queue ("wait" | "error"), send_timeout,
--   on_connect(ws, rc), on_disconnect(code, reason, rc), should_retry(name,
--   response); any other option goes to uvws.connect (headers may be a
--   function returning the headers, called before every attempt).
-- @return the client
function M.new(url, opts)
  local o, copts = check_opts(url, opts)
  local self = setmetatable({
    url = url,
    state = "connecting",      -- "connecting" | "open" | "waiting" | "closed"
    ws = nil,                  -- the open connection, if any
    attempts = 0,              -- failed attempts since the last success
    connections = 0,           -- successful connections so far
    last_error = nil, last_error_name = nil,
    _o = o, _copts = copts,
    _open_waiters = {},
    _stopped = false,
  }, R)
  self._co = uvws.spawn(function() self:_supervise() end)
  return self
end

function R:__tostring()
  return string.format("uvws.reconnecting (%s, %s)", self.url, self.state)
end

local function is_open(self)
  local ws = self.ws
  return self.state == "open" and ws ~= nil and not ws.closed
end

-- Wakes every coroutine waiting for a connection with the given values.
local function wake_waiters(self, ...)
  local list = self._open_waiters
  self._open_waiters = {}
  for i = 1, #list do sched.wake(list[i], ...) end
end

-- The error of a client that is closed for good.
local function final_error(self)
  return nil, self._final_message or "reconnecting client closed", "closed"
end

-- Waits (inside the supervisor) for `seconds` or until close().
local function pause(self, seconds)
  self._sleeping = sched.current("uvws.reconnecting")
  sched.wait(seconds)
  self._sleeping = nil
end

function R:_finish(message)
  self.state = "closed"
  self.ws = nil
  self._final_message = self._final_message or message
  wake_waiters(self, final_error(self))
end

function R:_attempt()
  local copts = self._copts
  if type(copts.headers) == "function" then
    local c = {}
    for k, v in pairs(copts) do c[k] = v end
    c.headers = copts.headers()
    copts = c
  end
  local ws, err, name, resp = uvws.connect(self.url, copts)
  if not ws then return nil, err, name, resp end
  if self._stopped then
    ws:close(1000)
    return nil, "closed", "closed"
  end
  local hook = self._o.on_connect
  if hook then
    self._pending = ws
    local ok, r1, r2 = pcall(hook, ws, self)
    self._pending = nil
    if not ok then
      io.stderr:write("uvws.reconnecting: on_connect raised: ", tostring(r1), "\n")
      if not ws.closed then ws:close(1011, "on_connect failed") end
      return nil, "on_connect raised: " .. tostring(r1), "EHOOK"
    elseif r1 == false or (r1 == nil and r2 ~= nil) then
      if not ws.closed then ws:close(1000) end
      return nil, "on_connect failed: " .. tostring(r2), "EHOOK"
    end
  end
  if ws.closed then
    return nil, "the connection closed during on_connect", "closed"
  end
  return ws
end

function R:_supervise()
  local o = self._o
  local step = 0   -- backoff step: 1 after a drop, +1 per failed attempt
  while not self._stopped do
    self.state = "connecting"
    local ws, err, name, resp = self:_attempt()
    if self._stopped then
      if ws and not ws.closed then ws:close(1000) end
      break
    end
    if ws then
      self.attempts = 0
      self.connections = self.connections + 1
      self.ws = ws
      self.state = "open"
      local me = sched.current("uvws.reconnecting")
      ws._on_closed = function() sched.wake(me) end
      wake_waiters(self, ws)
      if not ws.closed then sched.wait(nil) end
      self.ws = nil
      local code, reason = ws.close_code or 1006, ws.close_reason or ""
      if o.on_disconnect then
        local ok, herr = pcall(o.on_disconnect, code, reason, self)
        if not ok then
          io.stderr:write("uvws.reconnecting: on_disconnect raised: ", tostring(herr), "\n")
        end
      end
      if self._stopped then break end
      if code == 1000 then
        return self:_finish(string.format("connection closed by the server (1000%s)",
          reason ~= "" and (" " .. reason) or ""))
      end
      self.last_error = string.format("connection closed (%d%s)", code,
        reason ~= "" and (" " .. reason) or "")
      self.last_error_name = "closed"
      step = 1
    else
      self.last_error, self.last_error_name = err, name
      self.attempts = self.attempts + 1
      step = step + 1
      local retry = (o.should_retry or M.should_retry)(name, resp)
      if not retry then
        return self:_finish("gave up: " .. tostring(err) .. " (" .. tostring(name) .. ")")
      end
      if o.max_attempts and self.attempts >= o.max_attempts then
        return self:_finish(string.format("gave up after %d attempts: %s (%s)",
          self.attempts, tostring(err), tostring(name)))
      end
    end
    local d = M.delay(o, step, math.random)
    self.state = "waiting"
    self.next_attempt = uvws.now() + d
    pause(self, d)
  end
  self:_finish("closed by close()")
end

--- Waits until a connection is open (and on_connect has run).
-- @return ws  or  nil, message, name ("timeout", "closed")
function R:wait_connected(timeout)
  if is_open(self) then return self.ws end
  if self.state == "closed" then return final_error(self) end
  local co = sched.current("uvws.reconnecting: wait")
  local list = self._open_waiters
  list[#list + 1] = co
  return sched.wait(timeout, function()
    local l = self._open_waiters
    for i = 1, #l do
      if l[i] == co then table.remove(l, i) break end
    end
  end)
end

local function remaining(deadline)
  if not deadline then return nil end
  local r = deadline - uvws.now()
  return r > 0 and r or 0
end

--- Sends a message on the current connection.  While disconnected it
-- waits (queue = "wait", at most `timeout` or opts.send_timeout) or
-- returns nil, "not connected", "disconnected" (queue = "error").
-- @return true  or  nil, message, name ("disconnected", "timeout", "closed")
function R:send(data, kind, timeout)
  if type(data) ~= "string" then
    error("uvws.reconnecting: send expects a string, got " .. type(data), 2)
  end
  kind = kind or "text"
  if kind ~= "text" and kind ~= "binary" then
    error("uvws.reconnecting: message kind must be 'text' or 'binary'", 2)
  end
  if kind == "text" and not core.utf8_valid(data) then
    error("uvws.reconnecting: text message is not valid UTF-8 (send it as 'binary')", 2)
  end
  timeout = timeout or self._o.send_timeout or nil
  local deadline = timeout and uvws.now() + timeout
  while true do
    if self.state == "closed" then return final_error(self) end
    if is_open(self) then
      local ok, err, name = self.ws:send(data, kind)
      if ok then return true end
      -- A connection that is closing means: wait for the next one.  Any
      -- other failure (backpressure) is the caller's to know about.
      if name ~= "closed" then return nil, err, name end
    end
    if self._o.queue == "error" then return nil, "not connected", "disconnected" end
    if deadline and remaining(deadline) <= 0 then
      return nil, "not connected (timeout)", "timeout"
    end
    local ws, err, name = self:wait_connected(remaining(deadline))
    if not ws then
      if name == "timeout" then return nil, "not connected (timeout)", "timeout" end
      return nil, err, name
    end
  end
end

--- Waits for the next message, across reconnections.
-- @return data, kind  or  nil, message, name ("timeout", "closed")
function R:receive(timeout)
  local deadline = timeout and uvws.now() + timeout
  while true do
    if is_open(self) then
      local data, kind, name = self.ws:receive(remaining(deadline))
      if data then return data, kind end
      if name == "timeout" then return nil, kind, name end
      -- The connection closed (its messages were delivered first): wait
      -- for the next one.
    elseif self.state == "closed" then
      return final_error(self)
    else
      if deadline and remaining(deadline) <= 0 then return nil, "timeout", "timeout" end
      local ws, err, name = self:wait_connected(remaining(deadline))
      if not ws then return nil, err, name end
    end
  end
end

--- Iterates over messages until the client is closed for good.
function R:each(timeout)
  return function()
    local data, kind = self:receive(timeout)
    if data then return data, kind end
    return nil
  end
end

--- Pings on the current connection.
-- @return round-trip seconds  or  nil, message, name
function R:ping(data, timeout)
  if not is_open(self) then return nil, "not connected", "disconnected" end
  return self.ws:ping(data, timeout)
end

--- Stops reconnecting and closes the current connection (waiting for the
-- closing handshake when called inside a coroutine).
function R:close(code, reason)
  if self._stopped then return true end
  self._stopped = true
  self._final_message = "closed by close()"
  local ws = self.ws or self._pending
  if self._sleeping then sched.wake(self._sleeping) end
  self:_finish("closed by close()")
  if ws and not ws.closed then
    if coroutine.isyieldable() then
      ws:close(code or 1000, reason)
    else
      ws._c:close(code or 1000, reason or "")
    end
  end
  return true
end

return M
