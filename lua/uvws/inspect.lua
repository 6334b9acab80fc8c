--- uvws.inspect: the opening-handshake inspector behind `uvws inspect`.
--
-- Design criteria:
--  * Show what went over the wire: the request and response heads as the
--    client sent and received them, hop by hop when there are redirects.
--  * Check the 101 independently of the client's own strict checks, so
--    that every problem of a response is reported, not only the first, and
--    explain what each failure usually means in practice.
--  * Pure Lua (SHA-1, base64, JSON included): OpenSSL is not exposed to
--    Lua, and the inspector must work wherever uvws does.
--
-- inspect.run(url, opts) must run inside a uvws coroutine; the rest are
-- plain functions.
local M = {}

------------------------------------------------------------------------------
-- SHA-1 (FIPS 180-4), base64 (RFC 4648) and the accept key (RFC 6455 §4.2.2)
------------------------------------------------------------------------------

local function rol(x, n)
  return ((x << n) | (x >> (32 - n))) & 0xffffffff
end

--- The 20-byte SHA-1 digest of a string.
function M.sha1(msg)
  local h0, h1, h2, h3, h4 =
    0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0
  local bits = #msg * 8
  msg = msg .. "\128" .. string.rep("\0", (55 - #msg) % 64) .. string.pack(">I8", bits)
  local w = {}
  for chunk = 1, #msg, 64 do
    for i = 0, 15 do w[i] = string.unpack(">I4", msg, chunk + i * 4) end
    for i = 16, 79 do w[i] = rol(w[i - 3] ~ w[i - 8] ~ w[i - 14] ~ w[i - 16], 1) end
    local a, b, c, d, e = h0, h1, h2, h3, h4
    for i = 0, 79 do
      local f, k
      if i < 20 then
        f, k = (b & c) | (~b & d), 0x5A827999
      elseif i < 40 then
        f, k = b ~ c ~ d, 0x6ED9EBA1
      elseif i < 60 then
        f, k = (b & c) | (b & d) | (c & d), 0x8F1BBCDC
      else
        f, k = b ~ c ~ d, 0xCA62C1D6
      end
      local t = (rol(a, 5) + (f & 0xffffffff) + e + k + w[i]) & 0xffffffff
      a, b, c, d, e = t, a, rol(b, 30), c, d
    end
    h0 = (h0 + a) & 0xffffffff
    h1 = (h1 + b) & 0xffffffff
    h2 = (h2 + c) & 0xffffffff
    h3 = (h3 + d) & 0xffffffff
    h4 = (h4 + e) & 0xffffffff
  end
  return string.pack(">I4I4I4I4I4", h0, h1, h2, h3, h4)
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

--- Standard base64 with padding.
function M.base64(s)
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

local GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

--- The Sec-WebSocket-Accept value a server must answer to `key`.
function M.accept(key)
  return M.base64(M.sha1(key .. GUID))
end

------------------------------------------------------------------------------
-- HTTP heads
------------------------------------------------------------------------------

--- Parses a raw request or response head.  Header names are lower-cased;
-- repeated headers are joined with ", ".
-- @return { start = first line, status = number|nil, reason, version,
--   headers = {name = value}, list = {{name, value}...} }
function M.parse_head(raw)
  local head = { headers = {}, list = {} }
  if type(raw) ~= "string" then return head end
  local first = raw:match("^([^\r\n]*)") or ""
  head.start = first
  local version, status, reason = first:match("^HTTP/(%d%.%d) (%d%d%d) ?(.*)$")
  if version then
    head.version, head.status, head.reason = version, tonumber(status), reason
  end
  for line in raw:gmatch("\n([^\r\n]+)") do
    local name, value = line:match("^([^:%s]+):[ \t]*(.-)[ \t]*$")
    if name then
      local lname = name:lower()
      head.list[#head.list + 1] = { name, value }
      local old = head.headers[lname]
      head.headers[lname] = old and (old .. ", " .. value) or value
    end
  end
  return head
end

-- The comma-separated tokens of a header value, lower-cased and trimmed.
local function tokens(value)
  local t = {}
  for item in (value or ""):gmatch("[^,]+") do
    item = item:match("^%s*(.-)%s*$")
    if item ~= "" then t[#t + 1] = item end
  end
  return t
end

local function has_token(value, want)
  for _, tk in ipairs(tokens(value)) do
    if tk:lower() == want then return true end
  end
  return false
end

-- Extension names of a Sec-WebSocket-Extensions value.
local function extension_names(value)
  local t = {}
  for _, item in ipairs(tokens(value)) do
    t[#t + 1] = item:match("^([^;%s]+)")
  end
  return t
end

------------------------------------------------------------------------------
-- Checks
------------------------------------------------------------------------------

-- What a status other than 101 usually means.
local STATUS_HINTS = {
  [200] = "The server answered like a plain HTTP server: it ignored the upgrade. " ..
    "Either the URL is a web page rather than a WebSocket endpoint, or a proxy or " ..
    "load balancer in front of the server dropped the Upgrade and Connection headers " ..
    "(nginx needs proxy_http_version 1.1 and proxy_set_header Upgrade/Connection).",
  [204] = "The server answered like a plain HTTP server (no content): it ignored the upgrade.",
  [400] = "The server rejected the handshake request as malformed or missing a header it " ..
    "requires (its body usually says which); some servers answer 400 to a path they " ..
    "do not serve.",
  [401] = "The server wants credentials: add an Authorization header (-H), a cookie or a " ..
    "token in the query string.",
  [403] = "Forbidden: usually an Origin check (try --origin) or missing credentials.",
  [404] = "There is no WebSocket endpoint at this path.",
  [405] = "The server does not accept GET here: not a WebSocket endpoint.",
  [426] = "Upgrade Required: the server wants another WebSocket version " ..
    "(see its Sec-WebSocket-Version), or the upgrade headers were lost on the way " ..
    "and the server saw a plain request.",
  [429] = "Too many requests: the server is rate-limiting connections.",
  [500] = "The server failed while handling the upgrade (a bug or a refused subprotocol).",
  [501] = "The server does not implement WebSocket upgrades here.",
  [502] = "A reverse proxy could not talk to its backend (backend down, or it does not " ..
    "forward upgrades).",
  [503] = "The service is unavailable (overloaded, starting or in maintenance).",
  [504] = "A reverse proxy timed out waiting for its backend.",
}

local REDIRECT = { [301] = true, [302] = true, [303] = true, [307] = true, [308] = true }

-- Server header values (first word, lower case) of common reverse proxies.
local PROXIES = { nginx = true, apache = true, haproxy = true, envoy = true, caddy = true,
                  traefik = true, openresty = true, cloudflare = true, squid = true }

local function status_hint(status)
  local h = STATUS_HINTS[status]
  if h then return h end
  if REDIRECT[status] then
    return "A redirect: browsers never follow redirects in a WebSocket handshake, " ..
      "and uvws.connect only with follow_redirects."
  end
  if status >= 200 and status < 300 then return STATUS_HINTS[200] end
  if status >= 400 and status < 500 then return "The server refused the upgrade request." end
  if status >= 500 then return "The server (or a proxy in front of it) failed." end
  return "Only 101 Switching Protocols completes a WebSocket handshake."
end

--- Checks a response head against the request that was sent.
-- @param request_raw the request head as sent
-- @param response_raw the response head as received
-- @param key the Sec-WebSocket-Key sent (read from the request if nil)
-- @return list of { level = "ok"|"warn"|"fail", name = error name or
--   nil, message, hint = optional explanation }, and the expected accept
function M.check(request_raw, response_raw, key)
  local req, resp = M.parse_head(request_raw), M.parse_head(response_raw)
  local h = resp.headers
  key = key or req.headers["sec-websocket-key"]
  local out = {}
  local function add(level, name, message, hint)
    out[#out + 1] = { level = level, name = name, message = message, hint = hint }
  end
  local status = resp.status
  if not status then
    add("fail", "EHTTP", "the response does not start with an HTTP status line: " ..
      string.format("%q", resp.start or ""),
      "Not an HTTP server, or a TLS port spoken to in plain text (use wss://).")
    return out
  end
  local expected = key and M.accept(key) or nil
  if status ~= 101 then
    if REDIRECT[status] then
      add("warn", "ESTATUS", string.format("status %d %s: a redirect to %s", status,
        resp.reason or "", h.location or "(no Location header)"), status_hint(status))
    else
      add("fail", "ESTATUS", string.format("status %d %s instead of 101 Switching Protocols",
        status, resp.reason or ""), status_hint(status))
      if h["sec-websocket-version"] then
        add("warn", nil, "the server supports Sec-WebSocket-Version: " ..
          h["sec-websocket-version"] .. " (uvws speaks 13)")
      end
      local server = (h.server or ""):match("^[%w%-]+")
      if h.via or (server and PROXIES[server:lower()]) then
        add("warn", nil, "the answer came through a reverse proxy (" ..
          (h.via and ("Via: " .. h.via) or ("Server: " .. h.server)) .. ")",
          "A proxy passes a WebSocket upgrade on only when configured to: Upgrade and " ..
          "Connection are hop-by-hop headers, dropped otherwise, and the server then sees " ..
          "a request with a Sec-WebSocket-Key but no upgrade (uvws answers 400, other " ..
          "servers 200, 404 or 426). nginx needs, in the location: proxy_http_version 1.1; " ..
          "proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection \"upgrade\";")
      end
    end
    return out, expected
  end
  add("ok", nil, "status 101 " .. (resp.reason ~= "" and resp.reason or "(no reason phrase)"))
  if resp.version ~= "1.1" then
    add("warn", nil, "the status line says HTTP/" .. tostring(resp.version) ..
      "; a WebSocket upgrade is an HTTP/1.1 exchange")
  end
  if not h.upgrade then
    add("fail", "EUPGRADE", "101 without an Upgrade header",
      "RFC 6455 §4.1: the client must fail the connection when Upgrade: websocket is " ..
      "missing; the server (or a proxy) switched protocols without saying to what.")
  elseif not has_token(h.upgrade, "websocket") then
    add("fail", "EUPGRADE", "Upgrade: " .. h.upgrade .. " (expected websocket)",
      "The server switched to another protocol than WebSocket.")
  else
    add("ok", nil, "Upgrade: " .. h.upgrade)
  end
  if not h.connection then
    add("fail", "ECONNECTION", "101 without a Connection header",
      "RFC 6455 §4.1: the response must carry Connection: Upgrade.")
  elseif not has_token(h.connection, "upgrade") then
    add("fail", "ECONNECTION", "Connection: " .. h.connection .. " (expected Upgrade)",
      "RFC 6455 §4.1: the response must carry Connection: Upgrade.")
  else
    add("ok", nil, "Connection: " .. h.connection)
  end
  local got = h["sec-websocket-accept"]
  if not got then
    add("fail", "EACCEPT", "101 without Sec-WebSocket-Accept (expected " ..
      tostring(expected) .. ")",
      "Without it the client cannot tell a WebSocket server from anything else that " ..
      "answered 101.")
  elseif got ~= expected then
    add("fail", "EACCEPT", "Sec-WebSocket-Accept: " .. got .. " is wrong; expected " ..
      tostring(expected) .. " for the key " .. tostring(key),
      "The accept value is base64(SHA-1(key .. \"" .. GUID .. "\")). A wrong value " ..
      "usually means the server hashed another key (trimmed, re-encoded, or a key " ..
      "rewritten by a proxy), used another GUID or encoded the digest in hex.")
  else
    add("ok", nil, "Sec-WebSocket-Accept matches the key (" .. got .. ")")
  end
  local offered = tokens(req.headers["sec-websocket-protocol"])
  local selected = h["sec-websocket-protocol"]
  if selected then
    local sel = tokens(selected)
    local found = false
    for _, p in ipairs(offered) do if p == selected then found = true end end
    if #sel > 1 then
      add("fail", "EPROTOCOL", "the server selected several subprotocols: " .. selected,
        "RFC 6455 §4.2.2: at most one of the offered subprotocols may be selected.")
    elseif not found then
      add("fail", "EPROTOCOL", "the server selected the subprotocol " .. selected ..
        (#offered > 0 and (", which was not offered (offered: " ..
          table.concat(offered, ", ") .. ")") or ", but none was offered"),
        "RFC 6455 §4.1: the client must fail the connection.")
    else
      add("ok", nil, "subprotocol " .. selected .. " (offered: " ..
        table.concat(offered, ", ") .. ")")
    end
  elseif #offered > 0 then
    add("warn", nil, "offered the subprotocols " .. table.concat(offered, ", ") ..
      " but the server selected none",
      "Allowed by RFC 6455, but the server may not speak what the client expects; " ..
      "browsers and most clients accept the connection anyway.")
  end
  local offered_ext = {}
  for _, name in ipairs(extension_names(req.headers["sec-websocket-extensions"])) do
    offered_ext[name:lower()] = true
  end
  local ext = h["sec-websocket-extensions"]
  if ext then
    local bad = {}
    for _, name in ipairs(extension_names(ext)) do
      if not offered_ext[name:lower()] then bad[#bad + 1] = name end
    end
    if #bad > 0 then
      add("fail", "EEXTENSION", "the server selected the extension " ..
        table.concat(bad, ", ") .. ", which was not offered",
        "RFC 6455 §9.1: the client must fail the connection; the server enables an " ..
        "extension whatever the client asked.")
    else
      add("ok", nil, "extensions: " .. ext)
    end
  end
  if h["content-length"] or h["transfer-encoding"] then
    add("warn", nil, "a 101 response with " ..
      (h["content-length"] and "Content-Length" or "Transfer-Encoding"),
      "RFC 9110 §8.6 forbids a body length in a 1xx response; some clients will wait " ..
      "for a body that never comes.")
  end
  return out, expected
end

------------------------------------------------------------------------------
-- Running an inspection
------------------------------------------------------------------------------

local CONNECT_HINTS = {
  ECONNREFUSED = "Nothing listens on that address and port.",
  ETIMEDOUT = "Nothing answered in time: the TCP connection or the upgrade request " ..
    "hung (a firewall dropping packets, a server that is not HTTP, or a TLS port " ..
    "that needs wss://).",
  EAI_NONAME = "The host name does not resolve.",
  EHOSTUNREACH = "No route to the host.",
  ENETUNREACH = "No route to the network.",
  closed = "The server closed the connection without answering: often a TLS port " ..
    "spoken to in plain text (try wss://), or a server that drops requests it dislikes.",
  ECONNRESET = "The server reset the connection without answering.",
  EPROXY = "The HTTP proxy refused to open a tunnel to the server (403: the port or " ..
    "host is not allowed; 407: the proxy wants credentials, as in " ..
    "http://user:password@proxy:port). --no-proxy bypasses $http_proxy.",
  ECERT = "The server's certificate did not verify. For a private CA pass it with " ..
    "--ca FILE; --insecure looks anyway without verifying anything.",
  ETLS = "The TLS handshake failed: often wss:// to a port that speaks plain HTTP " ..
    "(try ws://), or no TLS version or cipher in common.",
}

--- Performs the opening handshake against url (inside a uvws coroutine),
-- following up to opts.max_redirects (default 5) redirects, then pings and
-- closes.
-- @param opts headers, protocols, origin, proxy, timeout (default 10),
--   max_redirects
-- @return report: { url, ok, verdict, hops = { {url, request, response,
--   status, timings, checks} }, error = {message, name}, timings,
--   protocol, close_code }
function M.run(url, opts)
  local uvws = require "uvws"
  local urlmod = require "uvws.url"
  opts = opts or {}
  local timeout = opts.timeout or 10
  local max_redirects = opts.max_redirects or 5
  local report = { url = url, hops = {}, ok = false, timings = {} }
  local seen = {}
  local current = url
  while true do
    seen[current] = true
    local hop = { url = current }
    report.hops[#report.hops + 1] = hop
    local ws, err, name, resp = uvws.connect(current, {
      headers = opts.headers, protocols = opts.protocols, origin = opts.origin,
      proxy = opts.proxy, tls = opts.tls, timeout = timeout, follow_redirects = false,
      close_timeout = math.min(timeout, 2), pong_timeout = timeout,
    })
    resp = ws and ws.response or resp
    if resp and (name == "EPROXY" or not resp.raw or resp.raw == "") then
      -- No answer from the server itself (the proxy refused the tunnel,
      -- or the connection ended before a response head).
      hop.status = resp.status
      resp = nil
    end
    if resp then
      hop.request, hop.response, hop.key = resp.request_raw, resp.raw, resp.key
      hop.status = resp.status
      hop.timings = resp.timings
      hop.tls = resp.tls
      hop.checks, hop.expected_accept = M.check(resp.request_raw, resp.raw, resp.key)
    end
    if not ws then
      hop.error = { message = err, name = name }
      local location = resp and REDIRECT[resp.status] and resp.headers.location
      if not location then
        report.error = hop.error
        if not resp then
          hop.checks = { { level = "fail", name = name,
            message = tostring(err), hint = CONNECT_HINTS[name] } }
        elseif not hop.checks or #hop.checks == 0 then
          hop.checks = { { level = "fail", name = name, message = tostring(err) } }
        else
          -- Make sure the client's own verdict is among the failures.
          local listed = false
          for _, c in ipairs(hop.checks) do
            if c.level == "fail" then listed = true end
          end
          if not listed then
            table.insert(hop.checks, { level = "fail", name = name, message = tostring(err) })
          end
        end
        break
      end
      local base = urlmod.parse(current)
      local nexturl = urlmod.resolve(base, location)
      local nu = urlmod.parse(nexturl)
      hop.location = nexturl
      local stop
      if #report.hops > max_redirects then
        stop = { "EREDIRECT", max_redirects == 0 and "redirect not followed (max_redirects is 0)"
          or string.format("more than %d redirects", max_redirects) }
      elseif seen[nexturl] then
        stop = { "EREDIRECT", "redirect loop back to " .. nexturl }
      elseif not nu then
        stop = { "EREDIRECT", "the redirect target is not a valid URL: " .. nexturl }
      elseif base.secure and not nu.secure then
        stop = { "EREDIRECT", "refusing a redirect from wss:// to ws:// (" .. nexturl .. ")" }
      end
      if stop then
        report.error = { name = stop[1], message = stop[2] }
        hop.checks[#hop.checks + 1] = { level = "fail", name = stop[1], message = stop[2] }
        break
      end
      current = nexturl
    else
      report.protocol = ws.protocol
      local rtt, perr, pname = ws:ping("uvws inspect", timeout)
      if rtt then
        report.timings.ping = rtt
        hop.checks[#hop.checks + 1] = { level = "ok", message = string.format(
          "the server answered a ping in %.2f ms", rtt * 1000) }
      else
        hop.checks[#hop.checks + 1] = { level = "warn", name = pname, message =
          "no answer to a ping: " .. tostring(perr),
          hint = "RFC 6455 §5.5.2: an endpoint must answer a ping with a pong; " ..
            "without it keepalives will drop the connection." }
      end
      ws:close(1000, "uvws inspect done")
      report.close_code = ws.close_code
      break
    end
  end
  local last = report.hops[#report.hops]
  for k, v in pairs(last.timings or {}) do report.timings[k] = v end
  local failed, warned = {}, 0
  for _, hop in ipairs(report.hops) do
    for _, c in ipairs(hop.checks or {}) do
      if c.level == "fail" then failed[#failed + 1] = c end
      if c.level == "warn" then warned = warned + 1 end
    end
  end
  report.ok = #failed == 0 and report.error == nil
  local redirects = #report.hops - 1
  if report.ok then
    local extra = {}
    if report.protocol then extra[#extra + 1] = "subprotocol " .. report.protocol end
    if redirects > 0 then
      extra[#extra + 1] = string.format("after %d redirect%s, which browsers do not follow",
        redirects, redirects > 1 and "s" or "")
    end
    if warned > 0 then
      extra[#extra + 1] = string.format("%d warning%s", warned, warned > 1 and "s" or "")
    end
    report.verdict = "OK: the WebSocket upgrade is correct" ..
      (#extra > 0 and (" (" .. table.concat(extra, "; ") .. ")") or "")
  else
    local names = {}
    for _, c in ipairs(failed) do
      if c.name then names[#names + 1] = c.name end
    end
    report.verdict = "FAILED" .. (#names > 0 and (" (" .. table.concat(names, ", ") .. ")") or "") ..
      ": " .. (failed[1] and failed[1].message or report.error.message)
  end
  return report
end

------------------------------------------------------------------------------
-- Output
------------------------------------------------------------------------------

local function prefixed(raw, mark)
  local out = {}
  raw = raw:gsub("\r\n\r\n$", "\r\n")
  for line in raw:gmatch("([^\n]*)\n") do
    out[#out + 1] = mark .. " " .. line:gsub("\r$", "")
  end
  return table.concat(out, "\n")
end

local function ms(s)
  if not s then return "-" end
  return string.format("%.2f ms", s * 1000)
end

-- Wraps text at 76 columns with an indent.
local function wrap(text, indent)
  local out, line = {}, indent
  for word in text:gmatch("%S+") do
    if #line + #word + 1 > 78 and line ~= indent then
      out[#out + 1] = line
      line = indent
    end
    line = line .. (line == indent and "" or " ") .. word
  end
  if line ~= indent then out[#out + 1] = line end
  return table.concat(out, "\n")
end

local MARK = { ok = "  ok   ", warn = "  warn ", fail = "  FAIL " }

--- The report as text, the way `uvws inspect` prints it.
function M.render_text(report)
  local out = {}
  local function p(s) out[#out + 1] = s end
  for i, hop in ipairs(report.hops) do
    if #report.hops > 1 then
      p(string.format("== hop %d: %s", i, hop.url))
    else
      p("== " .. hop.url)
    end
    local tls = hop.tls
    if tls then
      p(string.format("TLS: %s %s, ALPN %s, certificate %s (issuer %s, expires %s), %s",
        tostring(tls.version), tostring(tls.cipher), tostring(tls.alpn or "none"),
        tostring(tls.subject), tostring(tls.issuer), tostring(tls.not_after),
        tls.verified and "verified" or "NOT verified"))
      p("")
    end
    if hop.request then p(prefixed(hop.request, ">")) p("") end
    if hop.response then p(prefixed(hop.response, "<")) p("") end
    if hop.checks and #hop.checks > 0 then
      for _, c in ipairs(hop.checks) do
        p(MARK[c.level] .. c.message)
        if c.hint and c.level ~= "ok" then p(wrap(c.hint, "         ")) end
      end
      p("")
    end
  end
  local t = report.timings
  if t.dns or t.connect or t.handshake or t.ping then
    p(string.format("Timings: DNS %s, TCP connect %s, handshake %s, ping round trip %s",
      ms(t.dns), ms(t.connect), ms(t.handshake), ms(t.ping)))
  end
  p("Verdict: " .. report.verdict)
  return table.concat(out, "\n") .. "\n"
end

-- JSON --------------------------------------------------------------------

local ESC = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
              ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }

local function json_string(s)
  if not utf8.len(s) then
    -- Not UTF-8: read the bytes as Latin-1 so the output stays valid JSON.
    s = s:gsub("[\128-\255]", function(c) return utf8.char(c:byte()) end)
  end
  s = s:gsub('[%c"\\]', function(c)
    return ESC[c] or string.format("\\u%04x", c:byte())
  end)
  return '"' .. s .. '"'
end

local function encode(v, out)
  local t = type(v)
  if t == "string" then
    out[#out + 1] = json_string(v)
  elseif t == "number" then
    if v ~= v or v == math.huge or v == -math.huge then
      out[#out + 1] = "null"
    elseif math.type(v) == "integer" then
      out[#out + 1] = string.format("%d", v)
    else
      out[#out + 1] = string.format("%.17g", v)
    end
  elseif t == "boolean" then
    out[#out + 1] = tostring(v)
  elseif t == "table" then
    if v[1] ~= nil then
      out[#out + 1] = "["
      for i = 1, #v do
        if i > 1 then out[#out + 1] = "," end
        encode(v[i], out)
      end
      out[#out + 1] = "]"
    else
      local keys = {}
      for k in pairs(v) do keys[#keys + 1] = tostring(k) end
      table.sort(keys)
      out[#out + 1] = "{"
      for i, k in ipairs(keys) do
        if i > 1 then out[#out + 1] = "," end
        out[#out + 1] = json_string(k)
        out[#out + 1] = ":"
        encode(v[k], out)
      end
      out[#out + 1] = "}"
    end
  else
    out[#out + 1] = "null"
  end
end

--- Encodes a Lua value as JSON: a table with [1] is an array, any other
-- an object with sorted keys (so an empty table is {}).
function M.json(v)
  local out = {}
  encode(v, out)
  return table.concat(out)
end

--- The report as one JSON object.
function M.render_json(report)
  return M.json(report) .. "\n"
end

return M
