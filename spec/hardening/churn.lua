-- Churn client for spec/hardening_spec.lua:
--
--   lua5.4 spec/hardening/churn.lua PORT PID WARMUP CYCLES [WORKERS]
--
-- WORKERS (default 8) coroutines share the cycles; each cycle connects
-- to ws://127.0.0.1:PORT/, completes the handshake, sends a message,
-- checks its echo and closes (waiting for the close handshake).  First
-- WARMUP cycles, then CYCLES more.  After each phase (all workers idle)
-- it waits 0.3 s and samples the server process PID: prints
--   SAMPLE <label> <cycles done> <VmRSS KiB> <open fds> <lua_kb> <conns>
-- (lua_kb and conns come from the server's /stats after a full GC), and
-- at the end
--   DONE <cycles> <errors> <seconds> [first error]
local uvws = require "uvws"

local port = assert(tonumber(arg[1]), "usage: churn.lua PORT PID WARMUP CYCLES [WORKERS]")
local pid = assert(tonumber(arg[2]))
local warmup = assert(tonumber(arg[3]))
local cycles = assert(tonumber(arg[4]))
local workers = tonumber(arg[5]) or 8
local url = "ws://127.0.0.1:" .. port .. "/"

local function rss(p)
  local f = io.open("/proc/" .. p .. "/status", "r")
  if not f then return -1 end
  local s = f:read("a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)")) or -1
end

local function fds(p)
  local h = io.popen("ls /proc/" .. p .. "/fd 2>/dev/null | wc -l")
  local n = tonumber(h:read("a"))
  h:close()
  return n or -1
end

local done, errors, first_error = 0, 0, nil

local function fail(msg)
  errors = errors + 1
  first_error = first_error or msg
end

local function cycle(i)
  local ws, err = uvws.connect(url, { timeout = 5 })
  if not ws then return fail("connect: " .. tostring(err)) end
  local msg = "cycle " .. i
  local ok, serr = ws:send(msg)
  if not ok then fail("send: " .. tostring(serr)) end
  local data, rerr = ws:receive(5)
  if data ~= msg then fail("echo: " .. tostring(data) .. " " .. tostring(rerr)) end
  ws:close(1000)
  done = done + 1
end

-- Runs n cycles on `workers` coroutines; returns when all are done.
local function phase(n)
  local next_i, running = 0, workers
  for _ = 1, workers do
    uvws.spawn(function()
      while next_i < n do
        next_i = next_i + 1
        cycle(next_i)
      end
      running = running - 1
    end)
  end
  -- Polls (bounded by the cycle timeouts) until every worker is idle.
  while running > 0 do uvws.sleep(0.01) end
end

local function stats()
  local ws = uvws.connect("ws://127.0.0.1:" .. port .. "/stats", { timeout = 5 })
  if not ws then return -1, -1 end
  local s = ws:receive(5) or ""
  ws:close(1000)
  return tonumber(s:match("lua_kb=(%d+)")) or -1, tonumber(s:match("conns=(%d+)")) or -1
end

local function sample(label)
  uvws.sleep(0.3)
  local kb, conns = stats()
  uvws.sleep(0.1)
  print(("SAMPLE %s %d %d %d %d %d"):format(label, done, rss(pid), fds(pid), kb, conns))
  io.stdout:flush()
end

uvws.spawn(function()
  local t0 = uvws.now()
  sample("start")
  phase(warmup)
  sample("warm")
  phase(cycles)
  sample("end")
  print(("DONE %d %d %.3f %s"):format(done, errors, uvws.now() - t0, first_error or ""))
  io.stdout:flush()
end)
uvws.run()
