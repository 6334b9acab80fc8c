-- Soak: connect / handshake / message / close cycles against the echo
-- server, watching the server's memory and file descriptors.
--
--   lua5.4 bench/soak.lua [--cycles N] [--workers W] [--every K]
--                         [--warmup N] [--out FILE] [--port P --pid PID]
--
-- Starts examples/echo_server.lua on a free port (or uses a running server
-- given with --port and --pid), then W coroutines of this process (a uvws
-- client) share N cycles (default 1,000,000); each cycle connects to
-- ws://127.0.0.1:PORT/, completes the handshake, sends a text message,
-- checks its echo and closes (close handshake, waiting for the TCP close).
-- Samples the server's VmRSS, VmHWM and open fds (from /proc/PID) at the
-- start, after a warm-up (default 1,000 cycles), every K cycles (default
-- 100,000) and at the end; workers are idle during a sample (the cycles
-- run in phases), so the fd count is not blurred by connections in
-- flight.  Prints each sample and, with --out (default bench/SOAK.md),
-- writes a Markdown report.  Run it from the repository root; it finds
-- lua/ and build/ by itself.  Bounded: every wait has a timeout and a
-- phase that makes no progress for 60 s stops the run.
local script_dir = (arg[0]:match("^(.*)/[^/]*$") or ".")
local root = script_dir .. "/.."
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
package.cpath = root .. "/build/?.so;" .. package.cpath

local uvws = require "uvws"

local opt = { cycles = 1000000, workers = 16, every = 100000, warmup = 1000,
              out = root .. "/bench/SOAK.md" }
do
  local i = 1
  while arg[i] do
    local k = arg[i]:match("^%-%-(%w+)$")
    if not k or arg[i + 1] == nil then error("bad argument " .. arg[i]) end
    opt[k] = tonumber(arg[i + 1]) or arg[i + 1]
    i = i + 2
  end
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function status(pid)
  local s = read_file("/proc/" .. pid .. "/status") or ""
  return tonumber(s:match("VmRSS:%s*(%d+)")) or -1, tonumber(s:match("VmHWM:%s*(%d+)")) or -1
end

local function fds(pid)
  local p = io.popen("ls /proc/" .. pid .. "/fd 2>/dev/null | wc -l")
  local n = tonumber(p:read("a"))
  p:close()
  return n or -1
end

local function sh(cmd)
  local p = io.popen(cmd)
  local s = p:read("a")
  p:close()
  return (s:gsub("%s+$", ""))
end

-- The server -------------------------------------------------------------

local server_pid, port, server_out, server_ph = opt.pid, opt.port, nil, nil
local own_server = not port
if own_server then
  server_out = os.tmpname()
  -- The shell prints its pid and execs the server in place (under
  -- setpriv --pdeathsig, when there is one, so that the server dies with
  -- this process).
  local pdeath = read_file("/usr/bin/setpriv") and "/usr/bin/setpriv --pdeathsig KILL " or ""
  local cmd = ("echo $$; cd %q && ulimit -n 4096 2>/dev/null; " ..
               "LUA_PATH='./lua/?.lua;./lua/?/init.lua;;' LUA_CPATH='./build/?.so;;' " ..
               "exec %slua5.4 examples/echo_server.lua 0 >%q 2>&1 </dev/null")
    :format(root, pdeath, server_out)
  server_ph = io.popen(cmd, "r")
  server_pid = tonumber(server_ph:read("l"))
  local t0 = os.time()
  while not port and os.time() - t0 < 10 do
    port = tonumber((read_file(server_out) or ""):match("127%.0%.0%.1:(%d+)/"))
    if not port then os.execute("sleep 0.05") end
  end
  assert(port, "the echo server did not start: " .. tostring(read_file(server_out)))
end
server_pid = assert(tonumber(server_pid), "no server pid")
local url = "ws://127.0.0.1:" .. port .. "/"

-- The cycles ---------------------------------------------------------------

local done, errors, err_names, first_errors = 0, 0, {}, {}
local function fail(what, err, name)
  errors = errors + 1
  local key = what .. ":" .. tostring(name or err)
  err_names[key] = (err_names[key] or 0) + 1
  if #first_errors < 5 then
    first_errors[#first_errors + 1] = what .. ": " .. tostring(err)
    io.stderr:write(("error at cycle ~%d: %s: %s (%s)\n"):format(done, what, tostring(err), tostring(name)))
  end
end

local function cycle(i)
  local ws, err, name = uvws.connect(url, { timeout = 10 })
  if not ws then
    fail("connect", err, name)
    uvws.sleep(0.01)
    return
  end
  local msg = "soak " .. i
  local ok, serr, sname = ws:send(msg)
  if not ok then fail("send", serr, sname) end
  local data, rerr, rname = ws:receive(10)
  if data ~= msg then fail("echo", rerr or data, rname) end
  ws:close(1000)
  done = done + 1
end

local next_i = 0
local function phase(upto)
  local running = opt.workers
  for _ = 1, opt.workers do
    uvws.spawn(function()
      while next_i < upto do
        next_i = next_i + 1
        cycle(next_i)
      end
      running = running - 1
    end)
  end
  local last, last_t = done, uvws.now()
  while running > 0 do
    uvws.sleep(0.05)
    if done ~= last then last, last_t = done, uvws.now()
    elseif uvws.now() - last_t > 60 then error("no progress for 60 s at cycle " .. done) end
  end
end

local samples = {}
local t_start
local function sample(label)
  uvws.sleep(0.5)   -- let the last closes finish
  local rss, hwm = status(server_pid)
  local s = { label = label, cycles = done, rss = rss, hwm = hwm, fds = fds(server_pid),
              errors = errors, secs = t_start and (uvws.now() - t_start) or 0,
              client_rss = (status("self")) }
  samples[#samples + 1] = s
  local kinds = {}
  for k, v in pairs(err_names) do kinds[#kinds + 1] = k .. "=" .. v end
  table.sort(kinds)
  print(("%-8s cycles=%-8d rss=%6d KiB hwm=%6d KiB fds=%-4d errors=%d t=%.1f s client_rss=%d KiB %s")
    :format(label, s.cycles, rss, hwm, s.fds, errors, s.secs, s.client_rss, table.concat(kinds, " ")))
  io.stdout:flush()
end

local function report()
  local first, warm, last = samples[1], samples[2], samples[#samples]
  local secs = last.secs
  local lines = {
    "# Soak: connect / handshake / message / close cycles",
    "",
    "Produced by `bench/soak.lua` (" .. os.date("!%Y-%m-%d %H:%M UTC") .. ", commit " ..
      sh("git -C " .. ("%q"):format(root) .. " rev-parse --short HEAD 2>/dev/null") .. ").",
    "",
    ("Each cycle: connect to `examples/echo_server.lua` on 127.0.0.1, complete the " ..
     "handshake, send a text message, check its echo, `ws:close(1000)` and wait for " ..
     "the TCP close. %d coroutines in one uvws client process share the cycles; " ..
     "the cycles run in phases and every sample is taken with the clients idle " ..
     "(0.5 s after the last close). Server figures come from `/proc/PID/status` " ..
     "(VmRSS, VmHWM) and `/proc/PID/fd`."):format(opt.workers),
    "",
    ("Machine: %s, %s cores; %s; the client and the server share it " ..
     "(run under `nice`)."):format(sh("uname -sr"), sh("nproc"), sh("lua5.4 -v 2>&1")),
    "",
    "| sample | cycles | server VmRSS (KiB) | server VmHWM (KiB) | server fds | errors | elapsed (s) |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
  }
  for _, s in ipairs(samples) do
    lines[#lines + 1] = ("| %s | %d | %d | %d | %d | %d | %.1f |")
      :format(s.label, s.cycles, s.rss, s.hwm, s.fds, s.errors, s.secs)
  end
  local ref = warm or first
  lines[#lines + 1] = ""
  lines[#lines + 1] = ("**Result:** %d cycles in %.0f s (%.0f cycles/s), %d errors. " ..
    "Server RSS %d KiB at the start, %d KiB after the %d-cycle warm-up, %d KiB at the " ..
    "end (%+d KiB since the warm-up); open fds %d at the start, %d at the end.")
    :format(last.cycles, secs, last.cycles / math.max(secs, 0.001), errors,
            first.rss, ref.rss, ref.cycles, last.rss, last.rss - ref.rss, first.fds, last.fds)
  if next(err_names) then
    lines[#lines + 1] = ""
    lines[#lines + 1] = "Errors by kind:"
    lines[#lines + 1] = ""
    for k, v in pairs(err_names) do lines[#lines + 1] = ("- `%s`: %d"):format(k, v) end
    for _, e in ipairs(first_errors) do lines[#lines + 1] = ("- first: %s"):format(e) end
  end
  lines[#lines + 1] = ""
  lines[#lines + 1] = ("Reproduce: `nice lua5.4 bench/soak.lua --cycles %d --workers %d --every %d` " ..
    "(from the repository root, after `make`; about %.0f minutes here)."):format(
    opt.cycles, opt.workers, opt.every, secs / 60)
  local f = assert(io.open(opt.out, "w"))
  f:write(table.concat(lines, "\n"), "\n")
  f:close()
  print("wrote " .. opt.out)
end

local ok_run, run_err
uvws.spawn(function()
  ok_run, run_err = pcall(function()
    t_start = uvws.now()
    sample("start")
    local warm = math.min(opt.warmup, opt.cycles)
    if warm > 0 then
      phase(warm)
      sample("warm-up")
    end
    -- Counted in attempts (next_i): a failed cycle is an error, not a
    -- cycle to redo, so this loop ends after cycles / every phases.
    local mark = opt.every
    while next_i < opt.cycles do
      local upto = math.min(mark, opt.cycles)
      if upto > next_i then phase(upto) end
      if next_i < opt.cycles then sample(("%dk"):format(upto // 1000)) end
      mark = mark + opt.every
    end
    sample("end")
  end)
  if samples[1] then report() end
  if own_server then
    os.execute("kill " .. server_pid .. " 2>/dev/null")
    server_ph:close()
    os.remove(server_out)
  end
end)
uvws.run()
if not ok_run then
  io.stderr:write("soak failed: ", tostring(run_err), "\n")
  os.exit(1)
end
