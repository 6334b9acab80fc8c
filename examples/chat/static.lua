--- Static files of the chat example: the page, its script and its style,
-- served from one folder with a content type, an ETag and revalidation.
--
-- Files are read on each request, so an edited file is served at once.
-- The answer carries `Cache-Control: no-cache` (a browser may keep the file
-- but must ask before using it) and an ETag; a request whose If-None-Match
-- names the current ETag gets `304 Not Modified` with no body.  Only plain
-- file names in the folder are served: no sub-folders, no `..`.
local M = {}

M.TYPES = {
  html = "text/html; charset=utf-8",
  css = "text/css; charset=utf-8",
  js = "text/javascript; charset=utf-8",
  json = "application/json",
  svg = "image/svg+xml",
  png = "image/png",
  ico = "image/x-icon",
  txt = "text/plain; charset=utf-8",
}

-- The page may load only its own script and style and talk only to its own
-- server (CSP 3: 'self' covers ws:// and wss:// to the same host and port).
M.CSP = "default-src 'self'; img-src 'self' data:; connect-src 'self'; " ..
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

-- 64-bit FNV-1a of s, in hex: enough to tell two versions of a file apart.
local function fnv1a(s)
  local h = 0xcbf29ce484222325
  for i = 1, #s do
    h = ((h ~ s:byte(i)) * 0x100000001b3) & 0xffffffffffffffff
  end
  return string.format("%016x", h)
end

-- Does an If-None-Match value name etag?  A list of entity tags, weak ones
-- compared weakly (RFC 9110 §13.1.2), or "*".
local function matches(header, etag)
  if not header then return false end
  if header:match("^%s*%*%s*$") then return true end
  for tag in header:gmatch('"[^"]*"') do
    if tag == etag then return true end
  end
  return false
end

--- A request handler for the files in `dir`: returns status, body, headers
-- for a file, or nil when the path names no file (the caller answers).
function M.new(dir)
  local cache = {}   -- path -> { body, etag }
  return function(req)
    local name = req.path == "/" and "index.html" or req.path:match("^/([%w_%-]+%.%w+)$")
    local ext = name and name:match("%.(%w+)$")
    local ctype = ext and M.TYPES[ext]
    if not ctype then return nil end
    local f = io.open(dir .. "/" .. name, "rb")
    if not f then return nil end
    local body = f:read("a")
    f:close()
    local c = cache[name]
    if not c or c.body ~= body then
      c = { body = body, etag = '"' .. fnv1a(body) .. '"' }
      cache[name] = c
    end
    local headers = {
      ["Content-Type"] = ctype,
      ["Cache-Control"] = "no-cache",
      ["ETag"] = c.etag,
      ["X-Content-Type-Options"] = "nosniff",
    }
    if ext == "html" then headers["Content-Security-Policy"] = M.CSP end
    if matches(req.headers["if-none-match"], c.etag) then
      return 304, "", headers
    end
    return 200, body, headers
  end
end

return M
