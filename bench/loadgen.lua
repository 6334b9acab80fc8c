-- bench/loadgen.lua: a closed-loop echo load generator on uvws's own client,
-- for what the shared C load generator (wsbench) cannot drive: wss:// and
-- permessage-deflate.  Prints ONE JSON line shaped like wsbench's.
--
--   lua5.4 bench/loadgen.lua url=ws://127.0.0.1:36001/ conns=100 size=1024 \
--       depth=1 secs=5 warm=1 deflate=on payload=json pid=SERVER_PID label=x
--
-- Arguments, `key=value` (a leading `--` is allowed; defaults in brackets):
--   url       ws:// or wss:// on a loopback address [ws://127.0.0.1:9001/]
--   conns     connections [100]
--   size      payload bytes per message [16]
--   depth     messages in flight per connection (closed loop: every echo
--             received triggers the next send) [1]
--   secs      measured seconds [5]
--   warm      warm-up seconds before the window opens [1]
--   deflate   on|off: off passes `deflate = false` to uvws.connect; on keeps
--             the client default, which offers permessage-deflate.  Whether
--             it was accepted is `negotiated_deflate` (ws.deflate) [off]
--   kind      binary|text (also the bare words `binary` / `text`) [binary]
--   payload   json|random [json].  json: JSON-like text records (ids,
--             user names, event names, timestamps, prices) cut to `size`
--             bytes, compressible like real API traffic; random: random bytes
--             (printable ASCII when kind=text), which deflate cannot shrink.
--             16 different payloads of each size are sent in turn, so the
--             compressor cannot just point back at the previous message.
--   pid       server pid: its CPU (utime+stime from /proc/PID/stat) over
--             the window gives server_cpu, in cores [none: -1]
--   clk_tck   clock ticks per second for /proc times [`getconf CLK_TCK`, or 100]
--   label     copied into the JSON [uvws]
--   insecure  on|off: for wss://, `tls = { insecure = true }` (self-signed
--             test certificates) [on]
--   setup     seconds allowed for connecting everything [15]
--
-- Output fields: mode, label, url, conns, size, depth, kind, payload,
-- seconds (the measured window), msgs (echoes completed in the window),
-- msgs_per_s, MB_per_s (payload, one direction), server_cpu and client_cpu
-- (CPU seconds per second of the server pid and of this process), foreign_cpu
-- (the same for every other user-space process, as wsbench counts it: other
-- jobs sharing the machine), core_busy (each core, softirq included),
-- other_cpu (the sum of core_busy minus server_cpu and client_cpu: foreign
-- processes, also those that start and end inside the window, kernel threads
-- and softirq, i.e. the loopback TCP work),
-- wire_ratio (bytes this process wrote to its sockets per payload byte sent,
-- from /proc/self/io wchar: frame headers, TLS records and compression
-- included), tls, deflate (asked), negotiated_deflate (true when every
-- connection's ws.deflate is), negotiated_conns, setup_s (connecting time),
-- errors (failed sends, unexpected closes or timeouts, wrong echo sizes during
-- warm-up and window) and first_error.
--
-- Bounds: loopback addresses only; a watchdog exits with status 3 after
-- setup + warm + secs + 15 s whatever happens.  Exit status 0 when errors is
-- 0, 1 on connect failures (a JSON line with "failed" is printed), 2 on
-- usage errors, 4 when errors > 0.
local uvws = require "uvws"

local function usage(msg)
  io.stderr:write("loadgen: ", msg, "\n(see the header of bench/loadgen.lua)\n")
  os.exit(2)
end

-- arguments ---------------------------------------------------------------------
local A = {
  url = "ws://127.0.0.1:9001/", conns = "100", size = "16", depth = "1", secs = "5",
  warm = "1", deflate = "off", kind = "binary", payload = "json", pid = nil,
  clk_tck = nil, label = "uvws", insecure = "on", setup = "15",
}
for _, a in ipairs(arg) do
  a = a:gsub("^%-%-", "")
  local k, v = a:match("^([%w_]+)=(.*)$")
  if a == "binary" or a == "text" then
    k, v = "kind", a
  end
  if not k then usage("bad argument " .. a) end
  if not (A[k] ~= nil or k == "pid" or k == "clk_tck") then usage("unknown argument " .. k) end
  A[k] = v
end

local function num(k, min)
  local n = tonumber(A[k])
  if not n or n < min then usage(k .. " must be a number >= " .. min) end
  return n
end
local function onoff(k)
  if A[k] == "on" or A[k] == "true" or A[k] == "1" then return true end
  if A[k] == "off" or A[k] == "false" or A[k] == "0" then return false end
  usage(k .. " must be on or off")
end

local URL = A.url
local CONNS = math.floor(num("conns", 1))
local SIZE = math.floor(num("size", 0))
local DEPTH = math.floor(num("depth", 1))
local SECS = num("secs", 0.1)
local WARM = num("warm", 0)
local SETUP = num("setup", 1)
local DEFLATE = onoff("deflate")
local INSECURE = onoff("insecure")
local KIND = A.kind
local PAYLOAD = A.payload
local PID = A.pid and math.floor(num("pid", 1)) or nil
if KIND ~= "binary" and KIND ~= "text" then usage("kind must be binary or text") end
if PAYLOAD ~= "json" and PAYLOAD ~= "random" then usage("payload must be json or random") end

local scheme, host = URL:match("^(wss?)://([^/]+)")
if not scheme then usage("url must be ws:// or wss://") end
host = host:gsub(":%d+$", ""):gsub("^%[(.*)%]$", "%1")
if not (host:match("^127%.%d+%.%d+%.%d+$") or host == "::1" or host == "localhost") then
  usage("loopback targets only (127.0.0.0/8, ::1, localhost), not " .. host)
end
local TLS = scheme == "wss"

local CLK = tonumber(A.clk_tck)
if not CLK then
  local p = io.popen("getconf CLK_TCK 2>/dev/null")
  if p then CLK = tonumber(p:read("l") or "") p:close() end
end
CLK = CLK or 100

-- payloads ------------------------------------------------------------------------
local NVARIANTS = 16
local USERS = { "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi",
  "ivan", "judy", "mallory", "niaj", "olivia", "peggy", "rupert", "sybil", "trent",
  "victor", "walter", "yolanda" }
local EVENTS = { "page_view", "click", "add_to_cart", "checkout", "login", "logout",
  "search", "purchase" }
local CURRENCIES = { "EUR", "USD", "GBP", "JPY" }

local function json_payload(size, rnd)
  local parts, len, id = {}, 1, rnd(1, 1e6)
  while len < size + 2 do
    id = id + rnd(1, 50)
    local rec = string.format(
      '{"id":%d,"user":"%s","event":"%s","ts":%d,"price":%.2f,"currency":"%s",' ..
      '"qty":%d,"ok":%s,"session":"%08x"}',
      id, USERS[rnd(#USERS)], EVENTS[rnd(#EVENTS)], 1700000000000 + rnd(0, 1e9),
      rnd(1, 100000) / 100, CURRENCIES[rnd(#CURRENCIES)], rnd(1, 20),
      rnd(2) == 1 and "true" or "false", rnd(0, 0x7fffffff))
    parts[#parts + 1] = rec
    len = len + #rec + 1
  end
  return ("[" .. table.concat(parts, ",") .. "]"):sub(1, size)
end

local function random_payload(size, rnd, text)
  local t = {}
  for i = 1, size do t[i] = text and rnd(32, 126) or rnd(0, 255) end
  local chunks = {}
  for i = 1, size, 4096 do
    chunks[#chunks + 1] = string.char(table.unpack(t, i, math.min(i + 4095, size)))
  end
  return table.concat(chunks)
end

math.randomseed(6455, SIZE)   -- the same payloads in every run of a size
local PAYLOADS = {}
for v = 1, NVARIANTS do
  PAYLOADS[v] = PAYLOAD == "json" and json_payload(SIZE, math.random)
                or random_payload(SIZE, math.random, KIND == "text")
  assert(#PAYLOADS[v] == SIZE)
end

-- /proc readings --------------------------------------------------------------------
local function slurp(path)
  local f = io.open(path, "r")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function proc_ticks(pid)   -- utime + stime of a process, in ticks
  local s = slurp("/proc/" .. pid .. "/stat")
  if not s then return nil end
  local rest = s:match("^.*%)%s+(.*)$")   -- the name may hold spaces and ')'
  local f = {}
  for w in rest:gmatch("%S+") do f[#f + 1] = w end
  return tonumber(f[12]) + tonumber(f[13])   -- fields 14 and 15 of stat(5)
end

local function stat_cpus()   -- {all = {busy =, total =}, [0] = ..., [1] = ...} in ticks
  local r = {}
  for line in (slurp("/proc/stat") or ""):gmatch("[^\n]+") do
    local id, rest = line:match("^cpu(%d*)%s+(.*)$")
    if id then
      local v = {}
      for w in rest:gmatch("%d+") do v[#v + 1] = tonumber(w) end
      -- user nice system idle iowait irq softirq steal
      local busy = v[1] + v[2] + v[3] + v[6] + v[7] + v[8]
      local entry = { busy = busy, total = busy + v[4] + v[5] }
      if id == "" then r.all = entry else r[tonumber(id)] = entry end
    end
  end
  return r
end

local SELF = tonumber((slurp("/proc/self/stat") or ""):match("^(%d+)"))

-- utime+stime of every user-space process but the server and us, as wsbench
-- counts foreign_cpu: pid -> ticks
local function foreign_snapshot()
  local r = {}
  local p = io.popen("ls /proc 2>/dev/null")
  if not p then return nil end
  local pids = {}
  for name in p:lines() do
    local pid = tonumber(name:match("^(%d+)$"))
    if pid and pid ~= SELF and pid ~= PID then pids[#pids + 1] = pid end
  end
  p:close()
  for _, pid in ipairs(pids) do
    local s = slurp("/proc/" .. pid .. "/stat")
    local rest = s and s:match("^.*%)%s+(.*)$")
    if rest then
      local f = {}
      for w in rest:gmatch("%S+") do f[#f + 1] = w end
      if (tonumber(f[7]) or 0) & 0x00200000 == 0 then   -- not PF_KTHREAD
        r[pid] = tonumber(f[12]) + tonumber(f[13])
      end
    end
  end
  return r
end

local function foreign_ticks(a, b)
  if not a or not b then return nil end
  local t = 0
  for pid, ticks in pairs(b) do
    local was = a[pid]
    t = t + ticks - ((was and was <= ticks) and was or 0)
  end
  return t
end

local function wchar()
  local s = slurp("/proc/self/io")
  return s and tonumber(s:match("wchar:%s*(%d+)")) or nil
end

-- the run -----------------------------------------------------------------------------
local count, errors, first_error = 0, 0, nil
local running = true
local finished = 0
local negotiated = 0

local function fail(what)
  errors = errors + 1
  first_error = first_error or what
end

local function worker(ws, idx)
  local v = idx % NVARIANTS
  local send = ws.send
  for _ = 1, DEPTH do
    v = v % NVARIANTS + 1
    local ok, err = send(ws, PAYLOADS[v], KIND)
    if not ok then fail("send: " .. tostring(err)) break end
  end
  while running do
    local data, err, name = ws:receive(10)
    if not data then
      if running then fail("receive: " .. tostring(err) .. " (" .. tostring(name) .. ")") end
      break
    end
    if #data ~= SIZE then fail("echo of " .. #data .. " bytes, expected " .. SIZE) end
    count = count + 1
    if running then
      v = v % NVARIANTS + 1
      local ok, serr = send(ws, PAYLOADS[v], KIND)
      if not ok then fail("send: " .. tostring(serr)) break end
    end
  end
  ws:close(1000)
  finished = finished + 1
end

local function json_num(x, fmt)
  if x == nil or x ~= x then return "null" end
  return string.format(fmt or "%.2f", x)
end
local function json_str(s)
  return '"' .. tostring(s):gsub('[%c"\\]', function(c) return string.format("\\u%04x", c:byte()) end) .. '"'
end

local function emit(fields)
  local out = {}
  for _, kv in ipairs(fields) do out[#out + 1] = json_str(kv[1]) .. ":" .. kv[2] end
  io.stdout:write("{", table.concat(out, ","), "}\n")
  io.stdout:flush()
end

local function base_fields()
  return {
    { "mode", '"echo"' }, { "label", json_str(A.label) }, { "url", json_str(URL) },
    { "conns", CONNS }, { "size", SIZE }, { "depth", DEPTH }, { "kind", json_str(KIND) },
    { "payload", json_str(PAYLOAD) },
  }
end

uvws.spawn(function()   -- watchdog: the run ends whatever happens
  uvws.sleep(SETUP + WARM + SECS + 15)
  io.stderr:write("loadgen: deadline reached, exiting\n")
  local f = base_fields()
  f[#f + 1] = { "failed", '"deadline"' }
  emit(f)
  os.exit(3)
end)

uvws.spawn(function()
  -- connect everything first
  local conns, pending, connect_err = {}, CONNS, nil
  local opts = { timeout = SETUP, proxy = false }
  if not DEFLATE then opts.deflate = false end
  if TLS and INSECURE then opts.tls = { insecure = true } end
  for i = 1, CONNS do
    uvws.spawn(function()
      local ws, err, name = uvws.connect(URL, opts)
      if ws then
        conns[i] = ws
        if ws.deflate then negotiated = negotiated + 1 end
      else
        connect_err = connect_err or (tostring(err) .. " (" .. tostring(name) .. ")")
      end
      pending = pending - 1
    end)
  end
  local t_setup = uvws.now()
  while pending > 0 and uvws.now() - t_setup < SETUP + 1 do uvws.sleep(0.01) end
  if connect_err or pending > 0 then
    io.stderr:write("loadgen: connect failed: ", connect_err or "setup timeout", "\n")
    local f = base_fields()
    f[#f + 1] = { "failed", json_str("connect: " .. (connect_err or "setup timeout")) }
    f[#f + 1] = { "connected", CONNS - pending - (connect_err and 1 or 0) }
    emit(f)
    os.exit(1)
  end
  local setup_s = uvws.now() - t_setup

  for i = 1, CONNS do uvws.spawn(worker, conns[i], i) end
  uvws.sleep(WARM)

  -- the measured window
  local f0 = foreign_snapshot()
  local c0, w0, s0, m0, n0, t0 = stat_cpus(), wchar(), PID and proc_ticks(PID),
    proc_ticks("self"), count, uvws.now()
  uvws.sleep(SECS)
  local n1, t1 = count, uvws.now()
  local s1, m1, c1, w1 = PID and proc_ticks(PID), proc_ticks("self"), stat_cpus(), wchar()
  local fticks = foreign_ticks(f0, foreign_snapshot())
  local errs = errors
  running = false

  local dt = t1 - t0
  local msgs = n1 - n0
  local server_cpu = (s0 and s1) and (s1 - s0) / CLK / dt or -1
  local client_cpu = (m1 - m0) / CLK / dt
  local foreign = fticks and fticks / CLK / dt
  local all_busy = 0   -- cores busy on the whole machine, softirq included
  local busy = {}
  for i = 0, 63 do
    if not c0[i] or not c1[i] then break end
    local tot = c1[i].total - c0[i].total
    local b = tot > 0 and (c1[i].busy - c0[i].busy) / tot or 0
    all_busy = all_busy + b
    busy[#busy + 1] = json_num(b)
  end
  local wire = (w0 and w1 and msgs > 0 and SIZE > 0) and (w1 - w0) / (msgs * SIZE) or nil

  local f = base_fields()
  for _, kv in ipairs {
    { "seconds", json_num(dt, "%.3f") }, { "msgs", msgs },
    { "msgs_per_s", json_num(msgs / dt, "%.1f") },
    { "MB_per_s", json_num(msgs / dt * SIZE / 1e6) },
    { "server_cpu", json_num(server_cpu) }, { "client_cpu", json_num(client_cpu) },
    { "foreign_cpu", json_num(foreign) }, { "core_busy", "[" .. table.concat(busy, ",") .. "]" },
    { "other_cpu", json_num(all_busy - client_cpu - math.max(server_cpu, 0)) },
    { "wire_ratio", json_num(wire, "%.4f") },
    { "tls", tostring(TLS) }, { "deflate", tostring(DEFLATE) },
    { "negotiated_deflate", tostring(negotiated == CONNS) },
    { "negotiated_conns", negotiated },
    { "setup_s", json_num(setup_s, "%.3f") },
    { "errors", errs },
  } do f[#f + 1] = kv end
  if first_error then f[#f + 1] = { "first_error", json_str(first_error) } end
  emit(f)

  -- close politely, bounded by close_timeout and a few seconds of our own
  local t_close = uvws.now()
  while finished < CONNS and uvws.now() - t_close < 8 do uvws.sleep(0.02) end
  os.exit(errs == 0 and 0 or 4)
end)

uvws.run()
