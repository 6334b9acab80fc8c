-- Test helpers for the uvws specs: start a server script in a child
-- process, talk to it over a raw TCP socket, build and parse frames.
--
-- Loaded by busted as the `helper` of .busted and required by the specs as
-- `spec.helper`; both get the same table.  Every wait in here is bounded.

local socket = require "socket"

local M = {}

M.HOST = "127.0.0.1"
M.LUA = "lua5.4"
M.PYTHON = "/usr/bin/python3"
M.SAMPLE_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
M.SAMPLE_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

M.now = socket.gettime
M.sleep = socket.sleep

---------------------------------------------------------------------------
-- Paths and processes
---------------------------------------------------------------------------

-- The repository root is the parent of the folder holding this file; the
-- file name busted gives may be relative to the current directory.
local function find_root()
  local src = debug.getinfo(1, "S").source
  local dir = src:sub(1, 1) == "@" and src:sub(2):match("^(.*)/[^/]*$") or nil
  local cwd = os.getenv("PWD")
  local p = io.popen("pwd")
  if p then cwd = p:read("l") or cwd; p:close() end
  if not dir then return cwd end
  if dir:sub(1, 1) ~= "/" then dir = cwd .. "/" .. dir end
  local root = dir:gsub("/%./", "/"):gsub("/spec/?$", ""):gsub("/%.$", "")
  return root
end

M.root = find_root()

-- Quotes s for /bin/sh.
function M.q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end
M.read_file = read_file

local function write_file(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

-- State letter from /proc/PID/stat ("R", "S", "Z"...), or nil if the
-- process is gone.
local function proc_state(pid)
  local s = read_file("/proc/" .. pid .. "/stat")
  return s and s:match("^%d+ %(.*%) (%a)")
end

-- Is pid running (and not a zombie)?
function M.alive(pid)
  local st = proc_state(pid)
  return st ~= nil and st ~= "Z" and st ~= "X"
end

M.servers = {}

-- With setpriv (util-linux), a server gets SIGKILL if the test process
-- dies (killed by a timeout, say), so none is left behind.  setpriv execs
-- lua5.4 in place: the pid stays the one the shell printed.
local PDEATHSIG = ""
do
  local f = io.open("/usr/bin/setpriv", "rb")
  if f then
    f:close()
    PDEATHSIG = "/usr/bin/setpriv --pdeathsig KILL "
  end
end

-- Shell text that points lua5.4 at this tree's modules and core.
local function lua_env()
  return "export LUA_PATH='./lua/?.lua;./lua/?/init.lua;;'; " ..
         "export LUA_CPATH='" .. (os.getenv("UVWS_CPATH") or "./build/?.so") .. ";;'; "
end

--- The same as a command prefix (`env ... `), for M.run.
function M.lua_env()
  return "env LUA_PATH='./lua/?.lua;./lua/?/init.lua;;' LUA_CPATH='" ..
         (os.getenv("UVWS_CPATH") or "./build/?.so") .. ";;' "
end

-- Spawns `lua5.4 script args...` from the repository root and waits (at
-- most `timeout` seconds, default 10) for its line
-- "listening on ws://127.0.0.1:PORT/".  script defaults to the echo
-- example (with args {"0"}); with `source`, that Lua text is written to a
-- temporary file and run instead.  Returns srv = {port, pid, stop, alive,
-- stderr}; raises if the server does not come up.
-- `prefix`, if given, is shell text run before the server starts (such as
-- "ulimit -n 64;").
function M.start_server(script, args, source, timeout, prefix)
  local tmp = {}
  if source then
    -- os.tmpname() creates the file it names: remove it as well.
    local base = os.tmpname()
    script = base .. ".lua"
    write_file(script, source)
    tmp[#tmp + 1] = base
    tmp[#tmp + 1] = script
  elseif not script then
    script = "examples/echo_server.lua"
    args = args or { "0" }
  end
  local out, err = os.tmpname(), os.tmpname()
  tmp[#tmp + 1] = out
  tmp[#tmp + 1] = err
  local argv = {}
  for i, a in ipairs(args or {}) do argv[i] = M.q(a) end
  local cmd = "echo $$; cd " .. M.q(M.root) .. " && " .. lua_env() ..
              (prefix or "") .. " exec " .. PDEATHSIG .. M.LUA .. " " .. M.q(script) .. " " ..
              table.concat(argv, " ") ..
              " </dev/null >" .. M.q(out) .. " 2>" .. M.q(err)
  local ph = assert(io.popen(cmd, "r"))
  local pid = tonumber(ph:read("l"))
  assert(pid, "could not read the pid of the server process")

  local srv = { pid = pid, script = script, out = out, err = err }
  local stopped = false

  function srv.stderr() return read_file(err) or "" end
  function srv.stdout() return read_file(out) or "" end
  function srv.alive() return not stopped and M.alive(pid) end

  -- Kills the server (TERM, then KILL after 2 s) and reaps it.  Returns
  -- whether the process was still alive when stop was called.
  function srv.stop()
    if stopped then return srv.was_alive end
    stopped = true
    srv.was_alive = M.alive(pid)
    os.execute("kill -TERM " .. pid .. " 2>/dev/null")
    local deadline = M.now() + 2
    while M.alive(pid) and M.now() < deadline do M.sleep(0.01) end
    if M.alive(pid) then os.execute("kill -KILL " .. pid .. " 2>/dev/null") end
    ph:close() -- waits for the (now dead) child: reaps it
    for _, f in ipairs(tmp) do
      if f ~= err then os.remove(f) end
    end
    srv.final_stderr = read_file(err) or ""
    os.remove(err)
    for i, s in ipairs(M.servers) do
      if s == srv then table.remove(M.servers, i) break end
    end
    return srv.was_alive
  end

  M.servers[#M.servers + 1] = srv

  local deadline = M.now() + (timeout or 10)
  while true do
    local o = read_file(out) or ""
    local port = o:match("listening on ws://127%.0%.0%.1:(%d+)/")
    if port then
      srv.port = tonumber(port)
      return srv
    end
    if not M.alive(pid) or M.now() > deadline then
      local why = M.alive(pid) and "timed out" or "exited"
      srv.stop()
      error(("server %s %s before listening\nstdout: %s\nstderr: %s")
        :format(script, why, o, srv.final_stderr), 2)
    end
    M.sleep(0.01)
  end
end

-- Stops every server still running (for teardown / after_each).
function M.stop_all()
  while #M.servers > 0 do M.servers[#M.servers].stop() end
end

-- Source of a custom server: `opts` is Lua text for the fields of
-- uvws.listen besides host/port/handler (e.g. "max_message_size = 1024,"),
-- `handler` the text of the handler function (defaults to an echo).
function M.server_source(opts, handler)
  return ([[
local uvws = require "uvws"
local server = assert(uvws.listen{
  host = "127.0.0.1", port = 0,
  %s
  handler = %s,
})
print("listening on ws://127.0.0.1:" .. server.port .. "/")
io.stdout:flush()
uvws.run()
]]):format(opts or "", handler or
    "function(ws) for data, kind in ws:each() do ws:send(data, kind) end end")
end

-- Is the core built and the echo example present?
function M.core_ready()
  local f = io.open(M.root .. "/build/uvws/core.so", "rb")
  local g = io.open(M.root .. "/examples/echo_server.lua", "rb")
  if f then f:close() end
  if g then g:close() end
  return f ~= nil and g ~= nil
end

-- Runs a shell command from the repository root, killed after `secs`;
-- returns its stdout and its exit status.
function M.run(cmd, secs)
  local p = assert(io.popen("cd " .. M.q(M.root) .. " && timeout -k 1 " ..
                            (secs or 30) .. " " .. cmd, "r"))
  local o = p:read("a")
  local _, _, code = p:close()
  return o, code
end

---------------------------------------------------------------------------
-- SHA-1, base64, accept key
---------------------------------------------------------------------------

-- The pure-Lua SHA-1 of the inspector (itself checked against the RFC
-- 3174 vectors by the CLI specs): an implementation independent of the
-- OpenSSL one the server computes accept values with.
M.sha1 = require("uvws.inspect").sha1

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

function M.b64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = (a << 16) | ((b or 0) << 8) | (c or 0)
    local q = {}
    for j = 1, 4 do
      local v = (n >> (6 * (4 - j))) & 63
      q[j] = B64:sub(v + 1, v + 1)
    end
    if not b then q[3] = "=" end
    if not c then q[4] = "=" end
    out[#out + 1] = table.concat(q)
  end
  return table.concat(out)
end

function M.accept(key)
  return M.b64(M.sha1(key .. "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
end

function M.random_bytes(n)
  local t = {}
  for i = 1, n do t[i] = string.char(math.random(0, 255)) end
  return table.concat(t)
end

---------------------------------------------------------------------------
-- Frames
---------------------------------------------------------------------------

-- XORs data with the 4-byte key, eight bytes at a time.
function M.mask(data, key)
  local n = #data
  if n == 0 then return data end
  local k8 = string.unpack("<I8", key .. key)
  local out = {}
  local words = n // 8
  local i, BATCH = 1, 128
  local fmt = "<" .. string.rep("I8", BATCH)
  while words >= BATCH do
    local v = { string.unpack(fmt, data, i) }
    for j = 1, BATCH do v[j] = v[j] ~ k8 end
    out[#out + 1] = string.pack(fmt, table.unpack(v, 1, BATCH))
    i = i + 8 * BATCH
    words = words - BATCH
  end
  for _ = 1, words do
    out[#out + 1] = string.pack("<I8", string.unpack("<I8", data, i) ~ k8)
    i = i + 8
  end
  -- i - 1 is a multiple of 8, so the key phase restarts at key byte 1.
  local kb = { key:byte(1, 4) }
  local tail = {}
  for j = i, n do
    tail[#tail + 1] = string.char(data:byte(j) ~ kb[((j - 1) % 4) + 1])
  end
  out[#out + 1] = table.concat(tail)
  return table.concat(out)
end

-- Encodes one frame.  t = {fin = true, rsv = 0, opcode = 1, payload = "",
-- mask = true (random key) | false | "4-byte key", len_override = n}.
-- len_override changes only the length written in the header.
function M.frame(t)
  t = t or {}
  local fin = t.fin ~= false
  local rsv = t.rsv or 0
  local opcode = t.opcode or 1
  local payload = t.payload or ""
  local len = t.len_override or #payload
  local b1 = (fin and 0x80 or 0) | ((rsv & 7) << 4) | (opcode & 15)
  local key = t.mask
  if key == nil or key == true then key = M.random_bytes(4) end
  local mbit = key and 0x80 or 0
  local hdr
  if len < 126 then
    hdr = string.pack("BB", b1, mbit | len)
  elseif len < 65536 then
    hdr = string.pack(">BBI2", b1, mbit | 126, len)
  else
    hdr = string.pack(">BBI8", b1, mbit | 127, len)
  end
  if key then
    assert(#key == 4, "mask key must be 4 bytes")
    return hdr .. key .. M.mask(payload, key)
  end
  return hdr .. payload
end

function M.close_payload(code, reason)
  return string.pack(">I2", code) .. (reason or "")
end

-- Shorthands for common frames (all masked, FIN set unless told).
function M.text(s, fin) return M.frame{ opcode = 1, payload = s, fin = fin } end
function M.binary(s, fin) return M.frame{ opcode = 2, payload = s, fin = fin } end
function M.cont(s, fin) return M.frame{ opcode = 0, payload = s, fin = fin } end
function M.ping(s) return M.frame{ opcode = 9, payload = s or "" } end
function M.pong(s) return M.frame{ opcode = 10, payload = s or "" } end
function M.close(code, reason)
  return M.frame{ opcode = 8, payload = code and M.close_payload(code, reason) or "" }
end

---------------------------------------------------------------------------
-- Raw client connection
---------------------------------------------------------------------------

local Conn = {}
Conn.__index = Conn

-- Connects to 127.0.0.1:port.  Returns a connection or nil, err.
function M.raw(port, timeout, local_addr)
  local sock = socket.tcp()
  timeout = timeout or 3
  sock:settimeout(timeout)
  if local_addr then
    local ok, err = sock:bind(local_addr, 0)
    if not ok then sock:close() return nil, err end
  end
  local ok, err = sock:connect(M.HOST, port)
  if not ok then sock:close() return nil, err end
  sock:setoption("tcp-nodelay", true)
  return setmetatable({ sock = sock, port = port, timeout = timeout,
                        parts = {}, len = 0, eof = nil }, Conn)
end

function Conn:settimeout(t) self.timeout = t end

-- Sends all of bytes (blocking, bounded by the timeout).
function Conn:send(bytes)
  self.sock:settimeout(self.timeout)
  local i = 1
  while i <= #bytes do
    local last, err = self.sock:send(bytes, i)
    if not last then return nil, err end
    i = last + 1
  end
  return true
end

-- Sends bytes in pieces of `size` with a pause between them, so that the
-- server reads them separately.
function Conn:send_chunked(bytes, size, pause)
  for i = 1, #bytes, size do
    local ok, err = self:send(bytes:sub(i, i + size - 1))
    if not ok then return nil, err end
    M.sleep(pause or 0.002)
  end
  return true
end

-- Reads whatever is available, waiting until deadline.  Returns true, or
-- nil, "timeout" | "closed".
function Conn:_fill(deadline)
  if self.eof then return nil, "closed" end
  local remaining = deadline - M.now()
  if remaining <= 0 then return nil, "timeout" end
  local r = socket.select({ self.sock }, nil, remaining)
  if not r or #r == 0 then return nil, "timeout" end
  self.sock:settimeout(0)
  local data, err, partial = self.sock:receive(65536)
  data = data or partial
  if data and #data > 0 then
    self.parts[#self.parts + 1] = data
    self.len = self.len + #data
  end
  if err and err ~= "timeout" then
    self.eof = err -- "closed" or e.g. "connection reset by peer"
    if not data or #data == 0 then return nil, "closed" end
  end
  return true
end

function Conn:_take(n)
  local s = table.concat(self.parts)
  local r = s:sub(1, n)
  local rest = s:sub(n + 1)
  self.parts = #rest > 0 and { rest } or {}
  self.len = #rest
  return r
end

function Conn:_deadline(timeout)
  return M.now() + (timeout or self.timeout)
end

-- Reads exactly n bytes.  Returns them, or nil, "timeout" | "closed".
function Conn:recv_exact(n, timeout, deadline)
  deadline = deadline or self:_deadline(timeout)
  while self.len < n do
    local ok, err = self:_fill(deadline)
    if not ok then return nil, err end
  end
  return self:_take(n)
end

-- Reads an HTTP response head (and its body, when Content-Length says how
-- long).  Returns status, headers (lower-case names; repeated headers
-- joined with ", "), the raw head, body; or nil, err, partial bytes.
function Conn:read_http_head(timeout)
  local deadline = self:_deadline(timeout)
  local s
  while true do
    s = table.concat(self.parts)
    self.parts = { s }
    local e = s:find("\r\n\r\n", 1, true)
    if e then break end
    if #s > 65536 then return nil, "head too large", s end
    local ok, err = self:_fill(deadline)
    if not ok then return nil, err, s end
  end
  local e = s:find("\r\n\r\n", 1, true)
  local head = self:_take(e + 3)
  local status = tonumber(head:match("^HTTP/1%.1 (%d%d%d)"))
  if not status then return nil, "bad status line", head end
  local headers = {}
  for line in head:gmatch("\r\n([^\r\n]*)") do
    local name, value = line:match("^([^:]+):%s*(.-)%s*$")
    if name then
      name = name:lower()
      headers[name] = headers[name] and (headers[name] .. ", " .. value) or value
    end
  end
  local body
  local cl = tonumber(headers["content-length"] or "")
  if cl then
    body = self:recv_exact(cl, nil, deadline)
  end
  return status, headers, head, body
end

-- Builds a client handshake request.  extra: map of header name -> value
-- (false removes a default header) or a list of raw "Name: value" lines.
function M.request(port, path, extra, key)
  local defaults = {
    { "Host", M.HOST .. ":" .. tostring(port) },
    { "Upgrade", "websocket" },
    { "Connection", "Upgrade" },
    { "Sec-WebSocket-Key", key },
    { "Sec-WebSocket-Version", "13" },
  }
  extra = extra or {}
  local lines = { "GET " .. (path or "/") .. " HTTP/1.1" }
  local lower = {}
  for k, v in pairs(extra) do
    if type(k) == "string" then lower[k:lower()] = v end
  end
  for _, d in ipairs(defaults) do
    local o = lower[d[1]:lower()]
    if o == nil then lines[#lines + 1] = d[1] .. ": " .. d[2]
    elseif o ~= false then lines[#lines + 1] = d[1] .. ": " .. o end
  end
  local names = {}
  for k, v in pairs(extra) do
    if type(k) == "string" and v ~= false then
      local known = false
      for _, d in ipairs(defaults) do
        if d[1]:lower() == k:lower() then known = true end
      end
      if not known then names[#names + 1] = k end
    end
  end
  table.sort(names)
  for _, k in ipairs(names) do lines[#lines + 1] = k .. ": " .. extra[k] end
  for _, l in ipairs(extra) do lines[#lines + 1] = l end
  return table.concat(lines, "\r\n") .. "\r\n\r\n"
end

-- Performs an RFC 6455 client handshake and checks the 101 and the
-- Sec-WebSocket-Accept.  Returns true, headers, head; or nil, err,
-- status, headers, head.
function Conn:handshake(path, extra, timeout)
  local key = M.b64(M.random_bytes(16))
  local ok, err = self:send(M.request(self.port, path, extra, key))
  if not ok then return nil, "send: " .. tostring(err) end
  local status, headers, head = self:read_http_head(timeout)
  if not status then return nil, "no response: " .. tostring(headers), nil, nil, head end
  if status ~= 101 then
    return nil, "status " .. status, status, headers, head
  end
  if headers["sec-websocket-accept"] ~= M.accept(key) then
    return nil, "bad Sec-WebSocket-Accept", status, headers, head
  end
  return true, headers, head
end

-- Reads one frame.  Returns {fin, rsv, opcode, payload, masked, len_bits
-- (7, 16 or 64: how the length was encoded)}, or nil, "timeout"|"closed".
function Conn:read_frame(timeout)
  local deadline = self:_deadline(timeout)
  local h, err = self:recv_exact(2, nil, deadline)
  if not h then return nil, err end
  local b1, b2 = h:byte(1, 2)
  local f = {
    fin = b1 & 0x80 ~= 0,
    rsv = (b1 >> 4) & 7,
    opcode = b1 & 15,
    masked = b2 & 0x80 ~= 0,
  }
  local len = b2 & 0x7f
  f.len_bits = 7
  if len == 126 then
    local x; x, err = self:recv_exact(2, nil, deadline)
    if not x then return nil, err end
    len = string.unpack(">I2", x)
    f.len_bits = 16
  elseif len == 127 then
    local x; x, err = self:recv_exact(8, nil, deadline)
    if not x then return nil, err end
    len = string.unpack(">I8", x)
    f.len_bits = 64
  end
  f.length = len
  local key
  if f.masked then
    key, err = self:recv_exact(4, nil, deadline)
    if not key then return nil, err end
  end
  local p; p, err = self:recv_exact(len, nil, deadline)
  if not p then return nil, err end
  f.payload = key and M.mask(p, key) or p
  return f
end

-- Reads frames until a Close frame.  Returns code (nil for an empty
-- payload), reason, the close frame, and the list of frames read before
-- it; or nil, err, nil, frames.
function Conn:expect_close(timeout)
  local deadline = self:_deadline(timeout)
  local before = {}
  while true do
    local f, err = self:read_frame(math.max(0, deadline - M.now()))
    if not f then return nil, err, nil, before end
    if f.opcode == 8 then
      local code, reason
      if #f.payload >= 2 then
        code = string.unpack(">I2", f.payload)
        reason = f.payload:sub(3)
      end
      return code, reason, f, before
    end
    before[#before + 1] = f
  end
end

-- Waits (default 2 s) for the server to close the TCP connection,
-- discarding any data.  Returns true if it closed with a FIN (recv says
-- "closed"), false on timeout or a reset; second value: the bytes
-- discarded; third: "closed", "timeout" or the socket error (e.g.
-- "connection reset by peer").
function Conn:is_closed(timeout)
  local deadline = M.now() + (timeout or 2)
  while true do
    local ok, err = self:_fill(deadline)
    if not ok then
      local why = err == "closed" and self.eof or err
      return why == "closed", self:_take(self.len), why
    end
    if self.len > (1 << 20) then self:_take(self.len) end
  end
end

-- Asserts (with luassert) that the server closes the connection with a
-- FIN within timeout; returns the bytes that came before.
function Conn:assert_closed(timeout)
  local closed, rest, why = self:is_closed(timeout)
  require("luassert").is_true(closed,
    "TCP connection not closed cleanly: " .. tostring(why) ..
    (#rest > 0 and (" after " .. #rest .. " more bytes") or ""))
  return rest
end

function Conn:close()
  self.sock:close()
end

-- Opens a connection and completes a handshake; raises on failure.
function M.connect(port, path, extra)
  local c = assert(M.raw(port))
  local ok, err, status = c:handshake(path, extra)
  if not ok then
    c:close()
    error("handshake failed: " .. tostring(err) .. " " .. tostring(status), 2)
  end
  return c
end

-- Does the server at port complete a handshake and echo a text message?
function M.echo_works(port, msg)
  msg = msg or "still alive"
  local c = M.raw(port)
  if not c then return false, "connect failed" end
  local ok, err = c:handshake()
  if not ok then c:close() return false, err end
  c:send(M.text(msg))
  local f, ferr = c:read_frame()
  c:send(M.close(1000))
  c:close()
  if not f then return false, ferr end
  return f.opcode == 1 and f.payload == msg, f
end

---------------------------------------------------------------------------
-- In-process uvws and subprocess peers, shared by the client, proxy,
-- deflate and redis specs.
---------------------------------------------------------------------------

--- A temporary file name ending in `suffix`.  os.tmpname() creates the
-- file it names, so that one is removed at once.
function M.tmpname(suffix)
  local base = os.tmpname()
  os.remove(base)
  return base .. (suffix or "")
end

--- Runs fn inside a uvws coroutine and drives the loop until it returns or
-- `limit` seconds pass (default 10); re-raises fn's error (or the
-- timeout) here.
function M.run_uvws(fn, limit)
  local uvws = require "uvws"
  local sched = require "uvws.sched"
  limit = limit or 10
  local done, failure, running = false, nil, false
  local watchdog = sched.add_timer(limit, function()
    failure = failure or ("test did not finish within " .. limit .. " s")
    if running then uvws.stop() end
  end)
  uvws.spawn(function()
    local ok, err = xpcall(fn, debug.traceback)
    if not ok then failure = err end
    done = true
    if running then uvws.stop() end
  end)
  if not done and not failure then
    running = true
    uvws.run()
    running = false
  end
  sched.cancel(watchdog)
  if failure then error(failure, 0) end
end

--- Runs fn(srv, url) in a coroutine against an in-process server built
-- from opts (uvws.listen options; host and port are set here), stepping
-- the loop until fn returns; a watchdog bounds the whole test at 10 s.
function M.with_server(opts, fn)
  local uvws = require "uvws"
  opts.host, opts.port = "127.0.0.1", 0
  local srv = assert(uvws.listen(opts))
  local done, err = false, nil
  uvws.spawn(function()
    local ok, e = pcall(fn, srv, "ws://127.0.0.1:" .. srv.port .. "/")
    if not ok then err = e end
    done = true
    srv:close()
  end)
  local deadline = uvws.now() + 10
  while not done and uvws.now() < deadline do uvws.step(50) end
  if not done then srv:close() end
  for _ = 1, 20 do uvws.step(10) end
  assert(done, "the test did not finish within 10 s")
  if err then error(err, 0) end
end

--- Starts `cmd` from the repository root; ready(p) says when it is up
-- (polled for at most `timeout` seconds, default 10).  Returns
-- {pid, stdout(), stop()}; raises with its output if it does not come up.
function M.start_process(cmd, ready, timeout)
  local out, err = os.tmpname(), os.tmpname()
  local ph = assert(io.popen("echo $$; cd " .. M.q(M.root) .. " && exec " .. cmd ..
    " </dev/null >" .. M.q(out) .. " 2>" .. M.q(err), "r"))
  local pid = tonumber(ph:read("l"))
  local p, stopped = { pid = pid }, false
  function p.stdout() return M.read_file(out) or "" end
  function p.stop()
    if stopped then return end
    stopped = true
    os.execute("kill -TERM " .. pid .. " 2>/dev/null")
    local deadline = M.now() + 2
    while M.alive(pid) and M.now() < deadline do M.sleep(0.01) end
    if M.alive(pid) then os.execute("kill -KILL " .. pid .. " 2>/dev/null") end
    ph:close()
    os.remove(out)
    os.remove(err)
  end
  local deadline = M.now() + (timeout or 10)
  while not ready(p) do
    if not M.alive(pid) or M.now() > deadline then
      local e = (M.read_file(err) or "") .. p.stdout()
      p.stop()
      error("did not start: " .. cmd .. "\n" .. e, 3)
    end
    M.sleep(0.02)
  end
  return p
end

--- Starts a peer that prints "listening on ws://127.0.0.1:PORT/"; the
-- result also has port and url ("ws://127.0.0.1:PORT" .. suffix).
function M.start_peer(cmd, timeout, suffix)
  local p = M.start_process(cmd, function(q)
    local port = q.stdout():match("listening on ws://127%.0%.0%.1:(%d+)/")
    q.port = tonumber(port)
    return port ~= nil
  end, timeout)
  p.url = "ws://127.0.0.1:" .. p.port .. (suffix or "")
  return p
end

return M
