-- Profiling experiment: how many Lua and C function calls the echo server
-- makes per message.  A call hook (on the main thread and on every
-- coroutine) counts calls by function; after MSGS messages it prints the
-- counts per message to stderr and exits.  Run it under load, e.g.
--   lua5.4 bench/exp/callcount.lua PORT [MSGS]   (default 100000)
--   wsbench echo -p PORT -c 100 -s 16 -d 16 -t 60
local MSGS = tonumber(arg[2] or 100000)
local counts, names = {}, {}
local messages = 0
local getinfo = debug.getinfo

local function hook()
  local info = getinfo(2, "Sf")
  local f = info.func
  counts[f] = (counts[f] or 0) + 1
  if not names[f] then
    local n = getinfo(2, "n")
    names[f] = string.format("%-8s %s:%d %s", info.what, info.short_src,
                             info.linedefined, n and n.name or "?")
  end
end

local function report()
  local byname, total = {}, 0      -- closures of one definition add up
  for f, n in pairs(counts) do
    byname[names[f]] = (byname[names[f]] or 0) + n
    total = total + n
  end
  local list = {}
  for name, n in pairs(byname) do list[#list + 1] = { n = n, name = name } end
  table.sort(list, function(a, b) return a.n > b.n end)
  io.stderr:write(string.format("%d messages, %.1f calls per message\n", messages, total / messages))
  for i = 1, math.min(#list, 40) do
    io.stderr:write(string.format("%7.2f  %s\n", list[i].n / messages, list[i].name))
  end
end

-- Hook every coroutine uvws creates, and the main thread.
local create = coroutine.create
coroutine.create = function(fn)
  local co = create(fn)
  debug.sethook(co, hook, "c")
  return co
end

-- Count messages where they enter Lua: wrap the message handler or the
-- dispatcher given to core.set_dispatch.
local core = require "uvws.core"
local set_dispatch = core.set_dispatch
local function counted(fn, is_dispatch)
  return function(ev, ...)
    if not is_dispatch or ev == 2 then
      messages = messages + 1
      -- wsbench opens every connection before the first message: forget
      -- the handshakes' calls.
      if messages == 1 then counts = {} end
      if messages == MSGS + 1 then
        messages = MSGS
        debug.sethook()
        report()
        os.exit(0)
      end
    end
    return fn(ev, ...)
  end
end
core.set_dispatch = function(dispatch, on_message, ...)
  if on_message then return set_dispatch(dispatch, counted(on_message, false), ...) end
  return set_dispatch(counted(dispatch, true))
end
local uvws = require "uvws"
core.set_dispatch = set_dispatch
debug.sethook(hook, "c")

local server = assert(uvws.listen {
  host = "127.0.0.1", port = tonumber(arg[1] or 9001),
  max_message_size = 16 * 1024 * 1024,
  handler = function(ws)
    for data, kind in ws:each() do ws:send(data, kind) end
  end,
})
print(string.format("listening on ws://127.0.0.1:%d/", server.port))
io.stdout:flush()
uvws.run()
