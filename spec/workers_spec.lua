---------------------------------------------------------------------------
-- Several processes on one port: listen{reuseport = true} and
-- uvws.workers(n, main) with supervision (a killed worker is restarted) and
-- graceful SIGTERM (open clients get close 1001, the supervisor exits).
-- Servers are spec/support/workers_server.lua in subprocesses; clients are
-- raw luasocket connections (spec/helper.lua).
---------------------------------------------------------------------------

local h = require "spec.helper"
local socket = require "socket"

local SCRIPT = "spec/support/workers_server.lua"
local PDEATHSIG = io.open("/usr/bin/setpriv", "rb") and "/usr/bin/setpriv --pdeathsig KILL " or ""

local procs = {}

local function free_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

-- Starts `lua5.4 SCRIPT args...`; returns {pid, stdout(), stderr(), stop(),
-- exited()}.  Worker pids read from its output are killed by stop() too
-- (workers do not inherit the parent-death signal).
local function start(args)
  local out, err = os.tmpname(), os.tmpname()
  local ph = assert(io.popen("echo $$; cd " .. h.q(h.root) ..
    " && export LUA_PATH='./lua/?.lua;./lua/?/init.lua;;' LUA_CPATH='" .. (os.getenv("UVWS_CPATH") or "./build/?.so") .. ";;' && exec " ..
    PDEATHSIG .. "lua5.4 " .. SCRIPT .. " " .. table.concat(args, " ") ..
    " </dev/null >" .. h.q(out) .. " 2>" .. h.q(err), "r"))
  local p = { pid = tonumber(ph:read("l")) }
  local reaped = false
  function p.stdout() return h.read_file(out) or "" end
  function p.stderr() return h.read_file(err) or "" end
  function p.workers()
    local list = {}
    for i, pid in p.stdout():gmatch("worker (%d+) pid (%d+) listening") do
      list[#list + 1] = { index = tonumber(i), pid = tonumber(pid) }
    end
    return list
  end
  function p.exited() return not h.alive(p.pid) end
  function p.stop()
    if reaped then return end
    reaped = true
    os.execute("kill -TERM " .. p.pid .. " 2>/dev/null")
    local deadline = h.now() + 5
    while h.alive(p.pid) and h.now() < deadline do h.sleep(0.02) end
    if h.alive(p.pid) then os.execute("kill -KILL " .. p.pid .. " 2>/dev/null") end
    for _, w in ipairs(p.workers()) do
      if h.alive(w.pid) then os.execute("kill -KILL " .. w.pid .. " 2>/dev/null") end
    end
    ph:close()
    os.remove(out)
    os.remove(err)
  end
  procs[#procs + 1] = p
  return p
end

-- Waits (bounded) until fn() is truthy; returns its value or nil.
local function wait_for(fn, secs)
  local deadline = h.now() + (secs or 5)
  while true do
    local v = fn()
    if v then return v end
    if h.now() > deadline then return nil end
    h.sleep(0.02)
  end
end

-- Sends one message on a fresh connection; returns the answering worker's
-- index and pid.
local function ask(port, msg)
  local c = h.connect(port)
  assert(c:send(h.text(msg or "hi")))
  local f = assert(c:read_frame(3))
  c:send(h.close(1000))
  c:close()
  local i, pid, echo = f.payload:match("^(%d+) (%d+) (.*)$")
  assert.equal(msg or "hi", echo)
  return tonumber(i), tonumber(pid)
end

-- Opens `n` connections one after another; returns the set of pids that
-- answered and how many each got.
local function spread(port, n)
  local pids, count = {}, 0
  for k = 1, n do
    local _, pid = ask(port, "m" .. k)
    if not pids[pid] then count = count + 1 end
    pids[pid] = (pids[pid] or 0) + 1
  end
  return pids, count
end

describe("several processes on one port", function()
  after_each(function()
    for _, p in ipairs(procs) do p.stop() end
    procs = {}
  end)

  it("reuseport: two processes listen on one port and both get connections", function()
    local port = free_port()
    local a = start { "single", port }
    assert.truthy(wait_for(function() return #a.workers() == 1 end), a.stderr())
    local b = start { "single", port }
    assert.truthy(wait_for(function() return #b.workers() == 1 end), b.stdout() .. b.stderr())
    local pids, count = spread(port, 40)
    assert.equal(2, count)
    assert.truthy(pids[a.pid])
    assert.truthy(pids[b.pid])
    -- Without reuseport, a third process cannot bind the port.
    local c = start { "plain", port }
    assert.truthy(wait_for(function() return c.stdout():match("cannot listen: (%S+)") end))
    assert.matches("EADDRINUSE", c.stdout())
  end)

  it("workers(2): connections spread over both, a killed worker is restarted, SIGTERM ends all gracefully",
     function()
    local port = free_port()
    local s = start { "workers", 2, port }
    local workers = wait_for(function() local w = s.workers() return #w == 2 and w end)
    assert.truthy(workers, s.stdout() .. s.stderr())
    local sup = tonumber(s.stdout():match("supervisor pid (%d+)"))
    assert.equal(s.pid, sup)
    local pids, count = spread(port, 40)
    assert.equal(2, count)
    for _, w in ipairs(workers) do assert.truthy(pids[w.pid], "worker " .. w.index .. " got nothing") end

    -- SIGKILL worker 1: the supervisor notices and starts a new worker 1.
    local victim = workers[1]
    os.execute("kill -KILL " .. victim.pid)
    local replacement = wait_for(function()
      local w = s.workers()
      return #w == 3 and w[3]
    end, 5)
    assert.truthy(replacement, s.stdout() .. s.stderr())
    assert.equal(victim.index, replacement.index)
    assert.are_not.equal(victim.pid, replacement.pid)
    assert.matches("worker " .. victim.index .. " %(pid " .. victim.pid .. "%) died %(signal 9%); restarting",
                   s.stderr())
    assert.is_false(h.alive(victim.pid))
    pids, count = spread(port, 40)
    assert.equal(2, count)
    assert.truthy(pids[replacement.pid])
    assert.is_nil(pids[victim.pid])

    -- SIGTERM to the supervisor: an open client gets 1001, every process ends.
    local c = h.connect(port)
    assert(c:send(h.text("still here")))
    local f = assert(c:read_frame(3))
    local _, wpid = f.payload:match("^(%d+) (%d+) ")
    wpid = tonumber(wpid)
    os.execute("kill -TERM " .. s.pid)
    local code, reason = c:expect_close(5)
    assert.equal(1001, code)
    assert.is_string(reason)
    c:send(h.close(1001))
    c:close()
    assert.truthy(wait_for(s.exited, 8), "the supervisor did not exit")
    assert.matches("supervisor exited", s.stdout())
    for _, w in ipairs(s.workers()) do
      assert.truthy(wait_for(function() return not h.alive(w.pid) end, 3), "worker " .. w.pid .. " still alive")
    end
    assert.is_false(h.alive(wpid))
    assert.is_nil(socket.connect("127.0.0.1", port))
  end)
end)
