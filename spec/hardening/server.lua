-- Server used by spec/hardening_spec.lua: one uvws server whose behaviour
-- is chosen by the request path (echo by default).
--
--   lua5.4 spec/hardening/server.lua [key=value ...]
--
-- Every key=value becomes a uvws.listen option (numbers and `false`;
-- `send_policy=drop` etc. stay strings), except these keys, which are
-- the script's own:
--   shutdown_after=M   once M connections are open, queue shutdown_n
--                      messages of shutdown_size bytes to each and call
--                      server:shutdown(shutdown_timeout) at once
--   shutdown_n=N, shutdown_size=S, shutdown_timeout=T
-- Events go to stdout, one line each, flushed (see the handlers).  The
-- first line is "listening on ws://127.0.0.1:PORT/".
local uvws = require "uvws"

local function log(...)
  local parts = table.pack(...)
  for i = 1, parts.n do parts[i] = tostring(parts[i]):gsub("\n", " | ") end
  io.stdout:write(table.concat(parts, " ", 1, parts.n), "\n")
  io.stdout:flush()
end

local OWN = { shutdown_after = true, shutdown_n = true, shutdown_size = true,
              shutdown_timeout = true }
local opts = { host = "127.0.0.1", port = 0 }
local own = {}
for _, a in ipairs(arg) do
  local k, v = a:match("^([%w_]+)=(.*)$")
  assert(k, "bad argument " .. a)
  local val
  if v == "false" then val = false
  elseif tonumber(v) then val = math.tointeger(tonumber(v)) or tonumber(v)
  else val = v end
  if OWN[k] then own[k] = val else opts[k] = val end
end

opts.on_error = function(err) log("ON_ERROR", err) end

local function rss_kib()
  local f = io.open("/proc/self/status", "r")
  if not f then return -1 end
  local s = f:read("a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)")) or -1
end

local handlers = {}

function handlers.echo(ws)
  for data, kind in ws:each() do ws:send(data, kind) end
end

-- Sends binary messages of `size` bytes (default 64 KiB) until `total`
-- bytes (default 200 MiB) have been attempted, or, with `timeouts=K`,
-- until K sends timed out (each send waits at most `t` seconds).  Counts
-- what send answered; yields to the loop every 16 sends so that output
-- can flow.  Then, with resume=1, sends "end" with a 10 s timeout
-- (succeeds once the peer reads).  Then waits for the close.
handlers["/push"] = function(ws)
  local q = ws.request.query
  local size = tonumber(q.size) or 65536
  local total = tonumber(q.total) or 200 * 1024 * 1024
  local t = tonumber(q.t) or 0.3
  local max_timeouts = tonumber(q.timeouts)
  local payload = string.rep("\x5a", size)
  local count = { ok = 0, backpressure = 0, timeout = 0, closed = 0, other = 0 }
  local max_buffered, attempted, i = 0, 0, 0
  local first_fail
  local t0 = uvws.now()
  while attempted < total do
    i = i + 1
    local ok, _, name = ws:send(payload, "binary", t)
    attempted = attempted + size
    if ok then count.ok = count.ok + 1
    else
      if count[name] then count[name] = count[name] + 1
      else count.other = count.other + 1 end
      first_fail = first_fail or name
    end
    local b = ws:buffered_amount()
    if b > max_buffered then max_buffered = b end
    if max_timeouts and count.timeout >= max_timeouts then break end
    if name == "closed" and count.closed >= 16 then break end
    if i % 16 == 0 then uvws.sleep(0) end
  end
  log("PUSH", "ok=" .. count.ok, "backpressure=" .. count.backpressure,
      "timeout=" .. count.timeout, "closed=" .. count.closed,
      "other=" .. count.other, "first_fail=" .. tostring(first_fail),
      "attempted=" .. attempted, "max_buffered=" .. max_buffered,
      "closed_flag=" .. tostring(ws.closed), "code=" .. tostring(ws.close_code),
      ("secs=%.3f"):format(uvws.now() - t0))
  if q.resume then
    local t1 = uvws.now()
    local ok, err, name = ws:send("end", "text", 10)
    log("RESUMED", tostring(ok), tostring(name), tostring(err),
        ("%.3f"):format(uvws.now() - t1))
  end
  while true do
    local data = ws:receive()
    if not data then break end
  end
  log("PUSH_CLOSED", tostring(ws.close_code))
end

-- Does not receive until a connection to /go arrives, then receives
-- everything, counting messages and bytes, until the close.
local go = false
handlers["/noread"] = function(ws)
  log("NOREAD_START")
  for _ = 1, 1200 do            -- at most 60 s
    if go then break end
    uvws.sleep(0.05)
  end
  local n, bytes = 0, 0
  while true do
    local data = ws:receive()
    if not data then break end
    n = n + 1
    bytes = bytes + #data
  end
  log("NOREAD", "messages=" .. n, "bytes=" .. bytes, "code=" .. tostring(ws.close_code))
end

handlers["/go"] = function(ws)
  go = true
  ws:send("going")
  handlers.echo(ws)
end

-- Closes at once with 1000 "bye" and reports how long close() took.
handlers["/close"] = function(ws)
  local t0 = uvws.now()
  local r = ws:close(1000, "bye")
  log("CLOSE_RETURNED", tostring(r), ("%.3f"):format(uvws.now() - t0),
      tostring(ws.closed), tostring(ws.close_code))
end

-- Echoes, and reports the close code and reason when the connection ends.
handlers["/report"] = function(ws)
  local id = ws.request.query.id or "?"
  local t0 = uvws.now()
  for data, kind in ws:each() do ws:send(data, kind) end
  log("CLOSED", id, tostring(ws.close_code), tostring(ws.close_reason),
      ("%.3f"):format(uvws.now() - t0))
end

-- Receives messages "<n>:..." and checks they come 1, 2, 3...; reports
-- the count, the order and the close code when the connection ends.
handlers["/count"] = function(ws)
  local n, inorder, bytes = 0, true, 0
  while true do
    local data = ws:receive()
    if not data then break end
    n = n + 1
    bytes = bytes + #data
    if tonumber(data:match("^(%d+):")) ~= n then inorder = false end
  end
  log("COUNT", "n=" .. n, "inorder=" .. tostring(inorder), "bytes=" .. bytes,
      "code=" .. tostring(ws.close_code), "reason=" .. tostring(ws.close_reason))
end

-- One message with the server's state after a full garbage collection:
-- "lua_kb=<n> conns=<n> rss_kib=<n>".
handlers["/stats"] = function(ws)
  collectgarbage("collect")
  collectgarbage("collect")
  ws:send(("lua_kb=%d conns=%d rss_kib=%d"):format(
    math.floor(collectgarbage("count")), ws.server:connection_count(), rss_kib()))
  handlers.echo(ws)
end

local server
local shutdown_started = false

local function maybe_shutdown()
  if not own.shutdown_after or shutdown_started then return end
  if server:connection_count() < own.shutdown_after then return end
  shutdown_started = true
  uvws.spawn(function()
    local n = own.shutdown_n or 200
    local size = own.shutdown_size or 1024
    local queued, failed = 0, 0
    for _, ws in ipairs(server:connections()) do
      for i = 1, n do
        local head = i .. ":"
        local ok = ws:send(head .. string.rep("m", size - #head))
        if ok then queued = queued + 1 else failed = failed + 1 end
      end
    end
    log("QUEUED", queued, failed)
    local t0 = uvws.now()
    server:shutdown(own.shutdown_timeout or 2)
    log("SHUTDOWN_RETURNED", ("%.3f"):format(uvws.now() - t0),
        server:connection_count())
  end)
end

opts.handler = function(ws)
  if own.shutdown_after then
    maybe_shutdown()
    local n = 0
    for _ in ws:each() do n = n + 1 end
    log("SHUTDOWN_CONN_CLOSED", tostring(ws.close_code))
    return
  end
  local h = handlers[ws.request.path] or handlers.echo
  return h(ws)
end

local err, name
server, err, name = uvws.listen(opts)
if not server then
  log("LISTEN_FAILED", err, name)
  os.exit(1)
end
print("listening on ws://127.0.0.1:" .. server.port .. "/")
io.stdout:flush()
uvws.run()
log("RUN_RETURNED")
