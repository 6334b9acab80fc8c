--- uvws.cli: the `uvws` command-line tool (bin/uvws is a thin wrapper).
--
--   uvws connect URL [options]   stdin lines become text messages; received
--                                messages are printed on stdout
--   uvws serve [options]         a server: --echo echoes, otherwise it prints
--                                what it receives and broadcasts stdin lines
--   uvws inspect URL [options]   the opening handshake, checked and explained
--
-- Design criteria:
--  * stdout carries only messages (connect, serve) or the report (inspect),
--    so the tool composes in pipes; progress and errors go to stderr.
--  * The exit status tells what happened (see M.exit_status) without parsing.
--  * stdin is read without blocking the loop when LuaSocket is installed
--    (its select() polls file descriptor 0); otherwise lines are read
--    between loop turns, and messages received meanwhile wait for the next line.
local uvws = require "uvws"
local inspect = require "uvws.inspect"

local M = {}

M.USAGE = [[
usage: uvws connect URL [-H 'Name: value']... [-s subprotocol]... [options]
       uvws serve [--host HOST] [--port N] [--echo] [-s subprotocol]...
       uvws inspect URL [--json] [-H 'Name: value']... [-s subprotocol]... [options]

connect   Opens a WebSocket. Each line of stdin is sent as a text message;
          each message received is printed on stdout (binary ones as
          <binary N bytes: hex>). At the end of stdin the connection is closed
          with 1000. Progress and the close code go to stderr.
serve     Listens (default 127.0.0.1:9001; --port 0 picks a free port) and
          prints "listening on ws://HOST:PORT/". With --echo every message is
          echoed; without, messages are printed and stdin lines are sent to
          every client.
inspect   Performs the opening handshake and prints the request and response
          heads, the checks of the 101 with what a failure usually means, and
          timings (DNS, TCP connect, handshake, ping round trip). Redirects
          are followed and each hop reported. --json prints one JSON object.

options:  -H, --header 'Name: value'   extra request header (repeatable)
          -s, --subprotocol NAME       offer a subprotocol (repeatable)
          --origin ORIGIN              send an Origin header
          --timeout SECONDS            connect + handshake timeout (default 10)
          --proxy URL | --no-proxy     HTTP CONNECT proxy (default: $http_proxy)
          --ca FILE                    wss: trust this CA (PEM) instead of the system store
          --insecure                   wss: do not verify the certificate
          --max-redirects N            inspect: redirects to follow (default 5)
          -q, --quiet                  connect: no progress on stderr

exit status:
  connect  0 when the peer closed with 1000, 1001 or 1005 (no code);
           1 when the connection could not be opened;
           2 for a usage error;
           10 + (code - 1000) for other 10xx codes (1006 connection lost: 16,
           1011 server error: 21); 100 + (code % 100) for codes 3000-4999.
  inspect  0 only when the upgrade is correct; 1 otherwise; 2 usage.
  serve    runs until interrupted; 1 when it cannot listen.
]]

--- The exit status for a close code (see the usage text).
function M.exit_status(code)
  code = code or 1006
  if code == 1000 or code == 1001 or code == 1005 then return 0 end
  if code >= 1002 and code <= 1099 then return 10 + (code - 1000) end
  if code >= 3000 and code <= 4999 then return 100 + code % 100 end
  return 99
end

--- A received message as one printable line (text as is).
function M.format_message(data, kind)
  if kind == "text" then return data end
  local n = #data
  local shown = data:sub(1, 32):gsub(".", function(c)
    return string.format("%02x", c:byte())
  end)
  return string.format("<binary %d byte%s%s%s>", n, n == 1 and "" or "s",
    n > 0 and (": " .. shown) or "", n > 32 and "..." or "")
end

------------------------------------------------------------------------------
-- Arguments
------------------------------------------------------------------------------

-- Option table: long name -> { key, takes value, repeatable }.
local OPTIONS = {
  header = { "headers", true, true }, subprotocol = { "protocols", true, true },
  origin = { "origin", true }, timeout = { "timeout", true },
  proxy = { "proxy", true }, ["no-proxy"] = { "no_proxy" },
  ["max-redirects"] = { "max_redirects", true }, json = { "json" },
  quiet = { "quiet" }, port = { "port", true }, host = { "host", true },
  echo = { "echo" }, help = { "help" }, ca = { "ca", true }, insecure = { "insecure" },
}
local SHORT = { H = "header", s = "subprotocol", q = "quiet", p = "port", h = "help" }

local ALLOWED = {
  connect = { header = true, subprotocol = true, origin = true, timeout = true,
              proxy = true, ["no-proxy"] = true, quiet = true, help = true,
              ca = true, insecure = true },
  inspect = { header = true, subprotocol = true, origin = true, timeout = true,
              proxy = true, ["no-proxy"] = true, ["max-redirects"] = true,
              json = true, help = true, ca = true, insecure = true },
  serve = { port = true, host = true, echo = true, subprotocol = true, help = true },
}

--- Parses the arguments after the command name.
-- @return options table (positional arguments in opts.args)  or  nil, message
function M.parse_args(cmd, argv)
  local allowed = ALLOWED[cmd]
  if not allowed then return nil, "unknown command " .. tostring(cmd) end
  local opts = { args = {}, headers = {}, protocols = {} }
  local i = 1
  while i <= #argv do
    local a = argv[i]
    local name, value
    if a:match("^%-%-[%w-]+=") then
      name, value = a:match("^%-%-([%w-]+)=(.*)$")
    elseif a:match("^%-%-[%w-]+$") then
      name = a:sub(3)
    elseif a:match("^%-%a") then
      name = SHORT[a:sub(2, 2)]
      if not name then return nil, "unknown option " .. a end
      if #a > 2 then value = a:sub(3) end
    else
      opts.args[#opts.args + 1] = a
      name = nil
    end
    if name then
      local spec = OPTIONS[name]
      if not spec or not allowed[name] then
        return nil, "unknown option " .. a .. " for " .. cmd
      end
      if spec[2] then
        if value == nil then
          i = i + 1
          value = argv[i]
          if value == nil then return nil, "option --" .. name .. " needs a value" end
        end
        if spec[3] then
          local list = opts[spec[1]]
          list[#list + 1] = value
        else
          opts[spec[1]] = value
        end
      else
        if value ~= nil then return nil, "option --" .. name .. " takes no value" end
        opts[spec[1]] = true
      end
    end
    i = i + 1
  end
  -- Headers: "Name: value" strings become {name, value} pairs, in order.
  local pairs_ = {}
  for _, h in ipairs(opts.headers) do
    local n, v = h:match("^([!#$%%&'*+%-.^_`|~%w]+):%s*(.-)%s*$")
    if not n then return nil, "invalid header (expected 'Name: value'): " .. h end
    pairs_[#pairs_ + 1] = { n, v }
  end
  opts.headers = pairs_
  for _, k in ipairs { "timeout", "port", "max_redirects" } do
    if opts[k] ~= nil then
      local n = tonumber(opts[k])
      if not n or n < 0 then return nil, "--" .. k:gsub("_", "-") .. " must be a number" end
      opts[k] = n
    end
  end
  if opts.port and not math.tointeger(opts.port) then return nil, "--port must be an integer" end
  opts.port = opts.port and math.tointeger(opts.port)
  opts.max_redirects = opts.max_redirects and math.tointeger(opts.max_redirects)
  if opts.no_proxy then opts.proxy = false end
  return opts
end

------------------------------------------------------------------------------
-- stdin
------------------------------------------------------------------------------

--- Reads stdin line by line in a uvws coroutine: on_line(line) for each
-- line (without its end of line), then on_eof().
function M.read_stdin(on_line, on_eof)
  io.stdin:setvbuf("no")  -- so that no line waits in a C buffer unseen by select
  local ok, socket = pcall(require, "socket")
  local fd0 = { getfd = function() return 0 end, dirty = function() return false end }
  uvws.spawn(function()
    while true do
      local ready = true
      if ok then
        local r = socket.select({ fd0 }, nil, 0)
        ready = r ~= nil and r[1] ~= nil
      end
      if ready then
        local line = io.stdin:read("L")
        if not line then return on_eof() end
        on_line((line:gsub("\r?\n$", "")))
        uvws.sleep(0)
      else
        uvws.sleep(0.02)
      end
    end
  end)
end

local function say(quiet, ...)
  if quiet then return end
  io.stderr:write("uvws: ", string.format(...), "\n")
  io.stderr:flush()
end

local function connect_opts(o)
  return {
    headers = #o.headers > 0 and o.headers or nil,
    protocols = #o.protocols > 0 and o.protocols or nil,
    origin = o.origin, timeout = o.timeout, proxy = o.proxy,
    tls = (o.ca or o.insecure) and { ca = o.ca, insecure = o.insecure or nil } or nil,
  }
end

------------------------------------------------------------------------------
-- Commands
------------------------------------------------------------------------------

local function cmd_connect(o)
  local url = o.args[1]
  if not url or #o.args > 1 then return nil, "connect needs exactly one URL" end
  local status = 1
  uvws.spawn(function()
    local ws, err, name, resp = uvws.connect(url, connect_opts(o))
    if not ws then
      io.stderr:write(string.format("uvws: cannot connect to %s: %s (%s)\n", url,
        tostring(err), tostring(name)))
      if resp and resp.raw then io.stderr:write(resp.raw) end
      status = 1
      return uvws.stop()
    end
    say(o.quiet, "connected to %s%s", url,
      ws.protocol and (" (subprotocol " .. ws.protocol .. ")") or "")
    M.read_stdin(function(line)
      if ws.closed then return end
      local ok, serr = ws:send(line)
      if not ok then say(o.quiet, "send failed: %s", tostring(serr)) end
    end, function()
      if not ws.closed then ws:close(1000) end
    end)
    for data, kind in ws:each() do
      io.stdout:write(M.format_message(data, kind), "\n")
      io.stdout:flush()
    end
    local reason = ws.close_reason or ""
    say(o.quiet, "closed: %d%s", ws.close_code or 1006, reason ~= "" and (" " .. reason) or "")
    status = M.exit_status(ws.close_code)
    uvws.stop()
  end)
  uvws.run()
  return status
end

local function cmd_serve(o)
  if #o.args > 0 then return nil, "serve takes no URL" end
  local host = o.host or "127.0.0.1"
  local clients, n = {}, 0
  local server, err, name = uvws.listen {
    host = host, port = o.port or 9001,
    protocols = #o.protocols > 0 and o.protocols or nil,
    max_message_size = 16 * 1024 * 1024,
    handler = function(ws)
      n = n + 1
      local id = n
      local addr, port = ws:remote_address()
      say(false, "[%d] connected from %s:%s%s", id, tostring(addr), tostring(port),
        ws.protocol and (" (subprotocol " .. ws.protocol .. ")") or "")
      clients[ws] = id
      for data, kind in ws:each() do
        if o.echo then
          ws:send(data, kind)
        else
          io.stdout:write(M.format_message(data, kind), "\n")
          io.stdout:flush()
        end
      end
      clients[ws] = nil
      say(false, "[%d] closed: %d %s", id, ws.close_code or 1006, ws.close_reason or "")
    end,
  }
  if not server then
    io.stderr:write(string.format("uvws: cannot listen on %s port %s: %s (%s)\n",
      host, tostring(o.port or 9001), tostring(err), tostring(name)))
    return 1
  end
  local shown = host:find(":", 1, true) and ("[" .. host .. "]") or host
  io.stdout:write(string.format("listening on ws://%s:%d/\n", shown, server.port))
  io.stdout:flush()
  if not o.echo then
    M.read_stdin(function(line)
      for ws in pairs(clients) do ws:send(line) end
    end, function() end)
  end
  uvws.run()
  return 0
end

local function cmd_inspect(o)
  local url = o.args[1]
  if not url or #o.args > 1 then return nil, "inspect needs exactly one URL" end
  local report
  uvws.spawn(function()
    local copts = connect_opts(o)
    copts.max_redirects = o.max_redirects
    report = inspect.run(url, copts)
    uvws.stop()
  end)
  if not report then uvws.run() end
  if not report then
    io.stderr:write("uvws: inspect did not finish\n")
    return 1
  end
  io.stdout:write(o.json and inspect.render_json(report) or inspect.render_text(report))
  io.stdout:flush()
  return report.ok and 0 or 1
end

local COMMANDS = { connect = cmd_connect, serve = cmd_serve, inspect = cmd_inspect }

--- Runs the tool with the arguments after the program name.
-- @return the exit status
function M.main(argv)
  local cmd = argv[1]
  if cmd == nil or cmd == "help" or cmd == "--help" or cmd == "-h" then
    io.stdout:write(M.USAGE)
    return cmd == nil and 2 or 0
  end
  if cmd == "--version" then
    io.stdout:write(uvws._VERSION, "\n")
    return 0
  end
  local fn = COMMANDS[cmd]
  if not fn then
    io.stderr:write("uvws: unknown command ", cmd, "\n", M.USAGE)
    return 2
  end
  local rest = table.move(argv, 2, #argv, 1, {})
  local o, err = M.parse_args(cmd, rest)
  if o and o.help then
    io.stdout:write(M.USAGE)
    return 0
  end
  local status
  if o then status, err = fn(o) end
  if not status then
    io.stderr:write("uvws: ", err, "\n", M.USAGE)
    return 2
  end
  return status
end

return M
