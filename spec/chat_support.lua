-- Helpers for the specs of the chat example (spec/chat_spec.lua,
-- spec/nginx_spec.lua, spec/browser_spec.lua): HTTP requests, upgrades and
-- JSON messages over raw sockets (spec.helper), an event-stream reader, and
-- nginx as a reverse proxy.  Every wait is bounded.

local h = require "spec.helper"
local cjson = require "cjson"
local assert = require "luassert"
local socket = require "socket"

local M = {}

-- One HTTP request on a fresh connection.  Returns status, headers (lower
-- case), body, raw head.
function M.http(port, method, path, headers, body)
  local c = assert(h.raw(port))
  local lines = { method .. " " .. path .. " HTTP/1.1", "Host: 127.0.0.1:" .. port,
                  "Connection: close" }
  for k, v in pairs(headers or {}) do lines[#lines + 1] = k .. ": " .. v end
  if body then lines[#lines + 1] = "Content-Length: " .. #body end
  assert(c:send(table.concat(lines, "\r\n") .. "\r\n\r\n" .. (body or "")))
  local status, hdrs, head, b = c:read_http_head()
  c:close()
  assert(status, "no HTTP answer: " .. tostring(hdrs))
  return status, hdrs, b or "", head
end

function M.post_json(port, path, t, headers)
  headers = headers or {}
  headers["Content-Type"] = "application/json"
  local status, hdrs, body = M.http(port, "POST", path, headers, cjson.encode(t or {}))
  local ok, decoded = pcall(cjson.decode, body)
  return status, ok and decoded or body, hdrs
end

-- Logs in; returns the Cookie header value.
function M.login(port, nick)
  local status, body, hdrs = M.post_json(port, "/login", { nick = nick })
  assert.equal(200, status, cjson.encode(body))
  local cookie = assert(hdrs["set-cookie"], "no Set-Cookie"):match("^([^;]+)")
  return cookie
end

function M.ticket(port, cookie)
  local status, body = M.post_json(port, "/ticket", {}, { Cookie = cookie })
  assert.equal(200, status)
  return body.ticket
end

-- Attempts an upgrade; returns the connection (or nil), status, headers,
-- body of a refusal.
function M.upgrade(port, path, extra)
  local c = assert(h.raw(port))
  local key = h.b64(h.random_bytes(16))
  assert(c:send(h.request(port, path, extra, key)))
  local status, hdrs, _, body = c:read_http_head()
  assert(status, "no answer to the upgrade: " .. tostring(hdrs))
  if status == 101 then
    assert.equal(h.accept(key), hdrs["sec-websocket-accept"])
    return c, 101, hdrs
  end
  c:close()
  return nil, status, hdrs, body
end

function M.send(c, t) assert(c:send(h.text(cjson.encode(t)))) end

-- Reads JSON messages until pred(msg) holds; returns it and the ones before.
function M.wait_for(c, pred, timeout)
  local deadline = h.now() + (timeout or 5)
  local seen = {}
  while true do
    local f, err = c:read_frame(math.max(0.01, deadline - h.now()))
    assert(f, "no matching message (" .. tostring(err) .. ") after " .. cjson.encode(seen))
    if f.opcode == 1 then
      local m = cjson.decode(f.payload)
      if pred(m) then return m, seen end
      seen[#seen + 1] = m
    elseif f.opcode == 8 then
      error("connection closed: " .. f.payload:sub(3))
    end
  end
end

function M.of_type(ty, field, value)
  return function(m) return m.type == ty and (field == nil or m[field] == value) end
end

-- Joins `room` with a token; returns the connection after its history.
function M.join(port, room, token)
  local c = assert(M.upgrade(port, "/chat?token=" .. token .. "&room=" .. room))
  M.wait_for(c, M.of_type("history"))
  return c
end

function M.has(list, x)
  for _, v in ipairs(list) do if v == x then return true end end
  return false
end

---------------------------------------------------------------------------
-- Server-Sent Events over a raw socket (chunked transfer coding)
---------------------------------------------------------------------------

M.SSE = {}
local SSE = M.SSE
SSE.__index = SSE

function M.open_events(port, path, headers)
  local c = assert(h.raw(port))
  local lines = { "GET " .. path .. " HTTP/1.1", "Host: 127.0.0.1:" .. port, "Accept: text/event-stream" }
  for k, v in pairs(headers or {}) do lines[#lines + 1] = k .. ": " .. v end
  assert(c:send(table.concat(lines, "\r\n") .. "\r\n\r\n"))
  local status, hdrs, _, body = c:read_http_head()
  return setmetatable({ c = c, buf = "", status = status, headers = hdrs, body = body }, SSE)
end

function SSE:line(deadline)
  local t = {}
  while true do
    local ch, err = self.c:recv_exact(1, nil, deadline)
    if not ch then return nil, err end
    if ch == "\n" then return (table.concat(t):gsub("\r$", "")) end
    t[#t + 1] = ch
  end
end

-- The next `data:` event, decoded; nil, err on timeout or end of stream.
function SSE:event(timeout)
  local deadline = h.now() + (timeout or 5)
  while true do
    local e = self.buf:find("\n\n", 1, true)
    if e then
      local block = self.buf:sub(1, e - 1)
      self.buf = self.buf:sub(e + 2)
      local data = block:match("^data: (.*)$") or block:match("\ndata: (.*)$")
      if data then return cjson.decode(data) end
    else
      local size_line, err = self:line(deadline)
      if not size_line then return nil, err end
      local n = tonumber(size_line, 16)
      if not n or n == 0 then return nil, "end of stream" end
      local chunk; chunk, err = self.c:recv_exact(n + 2, nil, deadline)
      if not chunk then return nil, err end
      self.buf = self.buf .. chunk:sub(1, n)
    end
  end
end

function SSE:wait_for(pred, timeout)
  local deadline = h.now() + (timeout or 5)
  while true do
    local m, err = self:event(math.max(0.01, deadline - h.now()))
    assert(m, "no matching event: " .. tostring(err))
    if pred(m) then return m end
  end
end

---------------------------------------------------------------------------
-- nginx in front of the chat server (spec/nginx/chat.conf.in)
---------------------------------------------------------------------------

M.NGINX = "/usr/sbin/nginx"

-- What the template's UPGRADE placeholder becomes: the upgrade headers
-- forwarded, or not.
M.NGINX_UPGRADE = [[
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";]]
M.NGINX_NO_UPGRADE = "            # (Upgrade and Connection are not forwarded)"

-- A free loopback port (closed again: the caller binds it a moment later).
function M.free_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

local function user_line()
  local p = io.popen("id -u; id -un")
  local uid, name = p:read("l"), p:read("l")
  p:close()
  -- Only root can switch users; workers then run as root too.
  if uid == "0" then return "user " .. name .. ";" end
  return ""
end

-- Writes a config from the template into a temporary folder and starts
-- nginx on it (daemon off, killed by pid).  `upgrade` is M.NGINX_UPGRADE or
-- M.NGINX_NO_UPGRADE; `port` defaults to a free one.  Returns { port, pid,
-- dir, stop, log }; raises when nginx does not come up.
function M.start_nginx(upstream_port, upgrade, port)
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. h.q(dir)))
  port = port or M.free_port()
  local tmpl = assert(h.read_file(h.root .. "/spec/nginx/chat.conf.in"))
  local conf = tmpl:gsub("@(%u+)@", {
    DIR = dir, USER = user_line(), PORT = tostring(port),
    UPSTREAM = "127.0.0.1:" .. upstream_port, UPGRADE = upgrade,
  })
  local f = assert(io.open(dir .. "/nginx.conf", "w"))
  f:write(conf)
  f:close()
  local ph = assert(io.popen("echo $$; exec /usr/bin/setpriv --pdeathsig KILL " .. M.NGINX ..
    " -p " .. h.q(dir) .. " -e " .. h.q(dir .. "/error.log") ..
    " -c " .. h.q(dir .. "/nginx.conf") .. " </dev/null >/dev/null 2>&1", "r"))
  local pid = tonumber(ph:read("l"))
  local n = { port = port, pid = pid, dir = dir }
  function n.log() return h.read_file(dir .. "/error.log") or "" end
  function n.stop()
    if n.stopped then return end
    n.stopped = true
    os.execute("kill -TERM " .. pid .. " 2>/dev/null")
    local deadline = h.now() + 3
    while h.alive(pid) and h.now() < deadline do h.sleep(0.02) end
    if h.alive(pid) then os.execute("kill -KILL " .. pid .. " 2>/dev/null") end
    ph:close()
    os.execute("rm -rf " .. h.q(dir))
  end
  local deadline = h.now() + 10
  while true do
    local c = h.raw(port, 0.5)
    if c then c:close() return n end
    if not h.alive(pid) or h.now() > deadline then
      local log = n.log()
      n.stop()
      error("nginx did not start:\n" .. log, 2)
    end
    h.sleep(0.05)
  end
end

return M
