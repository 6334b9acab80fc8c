--- uvws.request: the request object handed to on_upgrade and on_request,
-- and the Origin allow-list helper.
local M = {}

local function unescape(s)
  s = s:gsub("+", " ")
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end
M.unescape = unescape

--- Parses a query string into a table: each key maps to its first value;
-- `all[key]` lists every value.
function M.parse_query(qs)
  local q, all = {}, {}
  for pair in qs:gmatch("[^&;]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    k, v = unescape(k), unescape(v)
    if q[k] == nil then q[k] = v end
    all[k] = all[k] or {}
    table.insert(all[k], v)
  end
  return q, all
end

--- Parses a Cookie header value into a table.
function M.parse_cookies(value)
  local c = {}
  if not value then return c end
  for pair in value:gmatch("[^;]+") do
    local k, v = pair:match("^%s*([^=]-)%s*=%s*(.-)%s*$")
    if k and k ~= "" and c[k] == nil then
      if v:sub(1, 1) == '"' and v:sub(-1) == '"' and #v >= 2 then v = v:sub(2, -2) end
      c[k] = v
    end
  end
  return c
end

-- Headers are stored by lower-case name; lookups with any case work.
local HeadersMT = {
  __index = function(t, k)
    if type(k) == "string" then
      local lk = k:lower()
      if lk ~= k then return rawget(t, lk) end
    end
    return nil
  end,
}

local core = require "uvws.core"
local head_header = core.head_header

local Request = {}
Request.__name = "uvws.request"

-- A request keeps its head as one string (_head) and the peer's address;
-- everything else is derived on first use and cached beside it, in
-- `derived`, not in the request, so the table a websocket keeps for its
-- whole life stays at four slots and compact() can drop the rest.
local derived = setmetatable({}, { __mode = "k" })   -- req -> { field = value }

local lazy = {}

local function parsed(req, c)
  local head = rawget(req, "_head")
  local method, target, minor, flat
  if head then
    method, target, minor, flat = core.parse_head(head)
    if not method then error("uvws: request head does not parse: " .. tostring(target), 3) end
  else
    method, target, minor, flat = "GET", "/", 1, {}
  end
  c.method, c.target, c._minor, c._flat = method, target, minor, flat
end
for _, k in ipairs { "method", "target", "_minor", "_flat" } do
  lazy[k] = function(req, c)
    parsed(req, c)
    return c[k]
  end
end

Request.__index = function(req, k)
  local m = Request[k]
  if m then return m end
  local f = lazy[k]
  if not f then return nil end
  local c = derived[req]
  if not c then
    c = {}
    derived[req] = c
  end
  local v = c[k]
  if v == nil then
    v = f(req, c)
    c[k] = v
  end
  return v
end

lazy.query = function(req, c)
  local q, all = M.parse_query(req.query_string)
  c.query_all = all
  return q
end
lazy.query_all = function(req)
  local _, all = M.parse_query(req.query_string)
  return all
end
lazy.cookies = function(req)
  return M.parse_cookies(req.headers.cookie)
end

--- The first value of a header (any case), or nil.
function Request:header(name)
  local head = rawget(self, "_head")
  if head then return head_header(head, name, true) end
  local list = self._hv[name:lower()]
  return list and list[1]
end

--- Every value of a header, in order (an empty list if absent).
function Request:header_values(name)
  local list = self._hv[name:lower()]
  local out = {}
  if list then for i, v in ipairs(list) do out[i] = v end end
  return out
end

local function split_tokens(value, out)
  for tok in value:gmatch("[^,]+") do
    tok = tok:match("^%s*(.-)%s*$")
    if tok ~= "" then out[#out + 1] = tok end
  end
  return out
end

local function headers_from(flat)
  local headers = setmetatable({}, HeadersMT)
  for i = 1, #flat, 2 do
    local lname, value = flat[i]:lower(), flat[i + 1]
    local prev = headers[lname]
    if prev then
      headers[lname] = prev .. (lname == "cookie" and "; " or ", ") .. value
    else
      headers[lname] = value
    end
  end
  return headers
end

-- req.headers of a request with a head: a table that looks each name up
-- in the head (core.head_header: no parse, no table of every header) the
-- first time and keeps the answer under its lower-case name.  A hook that
-- reads one or two headers, the common case, costs a few strings instead
-- of two tables of all of them.  pairs() walks every header.
local proxy_head = setmetatable({}, { __mode = "k" })   -- proxy -> head
local ProxyMT = {
  __index = function(t, k)
    if type(k) ~= "string" then return nil end
    local lk = k:lower()
    if lk ~= k then
      local v = rawget(t, lk)
      if v ~= nil then return v end
    end
    local v = head_header(proxy_head[t], lk)
    if v ~= nil then rawset(t, lk, v) end
    return v
  end,
  __pairs = function(t)
    local _, _, _, flat = core.parse_head(proxy_head[t])
    local all = headers_from(flat)
    for k, v in next, t do
      if all[k] == nil then all[k] = v end   -- what the user added
    end
    return next, all, nil
  end,
}

-- The header tables are built on first use, each on its own, from the
-- head or from the flat list of a response.
local function build_headers(req)
  local head = rawget(req, "_head")
  if head then
    local t = setmetatable({}, ProxyMT)
    proxy_head[t] = head
    return t
  end
  return headers_from(req._flat)
end

local function build_list(req)
  local flat, list = req._flat, {}
  for i = 1, #flat, 2 do list[#list + 1] = { flat[i], flat[i + 1] } end
  return list
end

local function build_values(req)
  local flat, hv = req._flat, {}
  for i = 1, #flat, 2 do
    local lname = flat[i]:lower()
    local vs = hv[lname]
    if vs then vs[#vs + 1] = flat[i + 1] else hv[lname] = { flat[i + 1] } end
  end
  return hv
end

local function tokens_of(req, name)
  local out = {}
  local head = rawget(req, "_head")
  if head then
    local v = head_header(head, name)
    return v and split_tokens(v, out) or out
  end
  for _, v in ipairs(req._hv[name] or {}) do split_tokens(v, out) end
  return out
end

lazy.headers = build_headers
lazy.header_list = build_list
lazy._hv = build_values
lazy.protocols = function(req) return tokens_of(req, "sec-websocket-protocol") end
lazy.extensions = function(req) return tokens_of(req, "sec-websocket-extensions") end
lazy.path = function(req, c)
  local path, qs = req.target:match("^([^?#]*)%??([^#]*)")
  c.query_string = qs or ""
  return path or req.target
end
lazy.query_string = function(req, c)
  local _ = req.path
  return c.query_string
end
lazy.version = function(req) return "1." .. req._minor end
-- Keep-alive (plain HTTP requests only) needs the Connection header.
lazy._keepalive = function(req)
  if req._minor < 1 then return false end
  local flat = req._flat
  for i = 1, #flat, 2 do
    local name = flat[i]
    if #name == 10 and name:lower() == "connection" and flat[i + 1]:lower():find("close", 1, true) then
      return false
    end
  end
  return true
end

--- Drops what was derived from the head (it is built again on first use):
-- a websocket keeps its request for its whole life.
function M.compact(req)
  derived[req] = nil
end

--- A request from the head on_request handed up (a string), the body of a
-- plain request and the connection (for the peer's address).
function M.new(head, body, conn)
  local ip, port
  if conn then ip, port = conn:peer() end
  -- One constructor: the table is sized once, for these four slots.
  return setmetatable({ _head = head, body = body, remote_addr = ip, remote_port = port }, Request)
end

--- A header table built from a flat list {name, value, ...} (a response's
-- headers), as req.headers and req.header_list give them.
function M.headers_of(flat)
  local req = setmetatable({}, Request)
  derived[req] = { _flat = flat }
  return req.headers, req.header_list
end

--- Is `origin` (an Origin header value) allowed by `patterns`?  A pattern
-- is an exact origin ("https://example.com", "http://localhost:8080"), a
-- wildcard for subdomains ("https://*.example.com", which does not match
-- example.com itself), a host pattern for any scheme ("*.example.com",
-- "example.com"), or "*" for any origin.  Comparison ignores case.
function M.origin_allowed(origin, patterns)
  if type(patterns) ~= "table" then
    error("uvws.origin_allowed: patterns must be a list", 2)
  end
  if type(origin) ~= "string" then return false end
  origin = origin:lower()
  local scheme, host = origin:match("^(%a[%w+.-]*)://([^/]+)$")
  for _, p in ipairs(patterns) do
    p = p:lower()
    if p == "*" or p == origin then return true end
    if host then
      local ps, ph = p:match("^(%a[%w+.-]*)://(.+)$")
      if not ps then ph = p end
      if not ps or ps == scheme then
        if ph == host then return true end
        local suffix = ph:match("^%*(%..+)$")
        if suffix and #host > #suffix and host:sub(-#suffix) == suffix then
          return true
        end
      end
    end
  end
  return false
end

return M
