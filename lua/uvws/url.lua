--- uvws.url: WebSocket URL parsing and proxy selection from the
-- environment (http_proxy, https_proxy, no_proxy, as curl reads them).
local M = {}

local DEFAULT_PORT = { ws = 80, wss = 443, http = 80, https = 443 }

--- Parses "ws://host[:port]/path?query" (also wss, http, https).
-- @return { scheme, host, port, target, host_header }  or  nil, message
function M.parse(url)
  if type(url) ~= "string" then return nil, "URL must be a string" end
  local scheme, rest = url:match("^(%a[%w+.-]*)://(.*)$")
  if not scheme then return nil, "invalid URL (no scheme): " .. url end
  scheme = scheme:lower()
  if not DEFAULT_PORT[scheme] then
    return nil, "unsupported URL scheme: " .. scheme
  end
  local authority, target = rest:match("^([^/?#]*)(.*)$")
  target = target:gsub("#.*$", "")
  if target == "" then target = "/" end
  if target:sub(1, 1) == "?" then target = "/" .. target end
  if target:find("[%s%c]") then return nil, "invalid characters in URL path" end
  local userinfo
  local at = authority:find("@[^@]*$")
  if at then
    userinfo = authority:sub(1, at - 1)
    authority = authority:sub(at + 1)
  end
  local host, port
  if authority:sub(1, 1) == "[" then
    host, port = authority:match("^%[([%x:.]+)%]:?(%d*)$")
  else
    host, port = authority:match("^([^:]+):?(%d*)$")
  end
  if not host or host == "" then return nil, "invalid host in URL: " .. url end
  local default = DEFAULT_PORT[scheme]
  port = port ~= "" and tonumber(port) or default
  if port < 1 or port > 65535 then return nil, "invalid port in URL: " .. url end
  local hh = host:find(":", 1, true) and ("[" .. host .. "]") or host
  if port ~= default then hh = hh .. ":" .. port end
  return {
    scheme = scheme, host = host, port = port, target = target,
    host_header = hh, userinfo = userinfo,
    secure = scheme == "wss" or scheme == "https",
  }
end

--- Resolves a Location header against the URL it came from.
function M.resolve(base, location)
  if location:match("^%a[%w+.-]*://") then return location end
  local prefix = base.scheme .. "://" .. base.host_header
  if location:sub(1, 2) == "//" then return base.scheme .. ":" .. location end
  if location:sub(1, 1) == "/" then return prefix .. location end
  local dir = base.target:match("^([^?]*/)") or "/"
  return prefix .. dir .. location
end

local function getenv(name)
  local v = os.getenv(name)
  if v == nil or v == "" then v = os.getenv(name:upper()) end
  if v == "" then v = nil end
  return v
end

--- Does no_proxy (a comma list of hosts, domain suffixes, or "*") cover
-- host?
function M.no_proxy_match(host, list)
  if not list then return false end
  host = host:lower()
  for entry in list:gmatch("[^,%s]+") do
    entry = entry:lower():gsub(":%d+$", "")
    if entry == "*" then return true end
    entry = entry:gsub("^%*", ""):gsub("^%.", "")
    if host == entry or host:sub(-(#entry + 1)) == "." .. entry then
      return true
    end
  end
  return false
end

--- The proxy URL to use for a parsed target, from `opt` (a URL string, or
-- false for none) or from the environment.
function M.proxy_for(u, opt)
  if opt == false then return nil end
  if type(opt) == "string" then return opt end
  local env = u.secure and (getenv("https_proxy") or getenv("all_proxy"))
    or (getenv("http_proxy") or getenv("all_proxy"))
  if not env then return nil end
  if M.no_proxy_match(u.host, getenv("no_proxy")) then return nil end
  return env
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

function M.base64(s)
  return (s:gsub("..?.?", function(c)
    local a, b, d = c:byte(1, 3)
    local n = a * 65536 + (b or 0) * 256 + (d or 0)
    local out = {}
    for i = 1, 4 do
      local k = (n >> (6 * (4 - i))) & 63
      out[i] = B64:sub(k + 1, k + 1)
    end
    if not b then out[3], out[4] = "=", "=" elseif not d then out[4] = "=" end
    return table.concat(out)
  end))
end

return M
