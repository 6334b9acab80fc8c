---------------------------------------------------------------------------
-- Embedding: the C host of examples/embed (uvws_open + uvws_step in a
-- fixed-timestep 60 Hz frame loop, or uvws on the host's own libuv loop)
-- keeps its frame rate while a uvws server and clients exchange messages;
-- and uvws inside a luv program (uv.run() drives it).
--
-- Frame timing is wall-clock time on a shared machine: where the test
-- process may use SCHED_FIFO (root), the host runs under `chrt -f` so that
-- other jobs on the machine do not decide the result; otherwise only what
-- uvws itself costs per frame (CPU time in uvws_step) is checked.
---------------------------------------------------------------------------

local h = require "spec.helper"
local json = require "dkjson"

local HOST = "build/embed/host"
local ENV = "env LUA_PATH='./lua/?.lua;./lua/?/init.lua;;' LUA_CPATH='" .. (os.getenv("UVWS_CPATH") or "./build/?.so") .. ";;' "

local built, build_log
local function build()
  if built == nil then
    local out, code = h.run("make -s -C examples/embed all shared 2>&1", 240)
    built, build_log = code == 0, out
  end
  assert(built, "examples/embed did not build:\n" .. tostring(build_log))
end

local realtime = h.run("chrt -f 5 true 2>&1; echo rc=$?", 5):match("rc=0") ~= nil

-- Runs the host; returns its JSON summary (a table) and its stderr.
local function host(mode, seconds, binary)
  local err = os.tmpname()
  local cmd = ENV .. (realtime and "chrt -f 5 " or "") .. (binary or HOST) ..
    " --mode " .. mode .. " --seconds " .. seconds .. " examples/embed/script.lua 2>" .. h.q(err)
  local out, code = h.run(cmd, seconds + 30)
  local stderr = h.read_file(err) or ""
  os.remove(err)
  local r = json.decode(out:match("{.*}") or "")
  assert(r, "no JSON from the host (exit " .. tostring(code) .. "):\n" .. out .. "\n" .. stderr)
  assert.equal(0, code, stderr)
  return r, stderr
end

local function check_traffic(r, secs)
  local s = r.script
  assert.equal(0, r.lua_errors)
  assert.equal(0, s.errors)
  assert.equal(2, s.connected)
  assert.equal(secs * 60, r.frames)
  assert.is_true(s.spectated >= r.frames - 5, "spectator got " .. s.spectated .. " of " .. r.frames)
  assert.is_true(s.echoed > 1000, "only " .. s.echoed .. " echoes")
end

-- The issue's budget: 95 % of frames start within 2 ms of the 16.7 ms
-- schedule and none is more than 50 ms late or long.
local function check_timing(r)
  local summary = json.encode(r)
  if realtime then
    assert.is_true(r.within_2ms >= 0.95, summary)
    assert.is_true(r.late_ms_max < 50, summary)
    assert.is_true(r.frame_ms_max < 50, summary)
  end
end

describe("examples/embed: a C host with a 60 Hz frame loop", function()
  if not realtime then
    it("checks wall-clock frame timing", function()
      pending("chrt -f is not permitted here: only uvws's CPU time per frame is checked")
    end)
  end

  it("builds (uvws compiled in, and linked to build/uvws/core.so)", function()
    build()
  end)

  it("keeps its frame rate with uvws_step(L, 0) once per frame while messages flow", function()
    build()
    local r = host("sleep", 3)
    check_traffic(r, 3)
    check_timing(r)
    -- uvws's own share of a frame (CPU time, whoever else runs).
    assert.is_true(r.step_cpu_ms_p99 < 2, json.encode(r))
    assert.is_true(r.step_cpu_ms_max < 16, json.encode(r))
  end)

  it("keeps its frame rate when uvws waits for events in the idle time (uvws_step(L, ms))", function()
    build()
    local r = host("budget", 3)
    check_traffic(r, 3)
    check_timing(r)
    -- Serviced between frames rather than once per frame: far more
    -- messages (uvws uses the idle time: step CPU time is most of it).
    assert.is_true(r.script.echoed > 20000, json.encode(r.script))
  end)

  it("runs on the host's own libuv loop (uvws_open(L, loop), frames from a uv_timer)", function()
    build()
    local r, stderr = host("uvloop", 2)
    check_traffic(r, 2)
    -- The frame timer shares the loop with the traffic: frames start when
    -- the callback before them returns (and an always-busy SCHED_FIFO
    -- process is throttled by the kernel), so only the median is checked.
    assert.is_true(r.late_ms_p50 < 2, json.encode(r))
    assert.is_nil(stderr:match("uv_loop_close"), stderr)   -- every uvws handle left the host's loop
  end)

  it("works the same linked to the module's shared object", function()
    build()
    local r = host("sleep", 1, "build/embed/host-shared")
    check_traffic(r, 1)
  end)
end)

describe("uvws inside a luv program", function()
  local out = h.run("lua5.4 -e 'require \"luv\"' 2>&1; echo rc=$?", 5)
  if not out:match("rc=0") then
    it("is skipped", function() pending("luv for Lua 5.4 is not installed (apt-get install lua-luv)") end)
    return
  end

  it("shares luv's loop: uv.run() drives a uvws server, a uvws client and luv handles", function()
    local res, code = h.run(ENV .. "lua5.4 spec/support/luv_drive.lua 2>&1", 20)
    assert.equal(0, code, res)
    local r = assert(json.decode(res:match("{.*}") or ""), res)
    assert.equal(100, r.echoed)
    assert.equal("426", r.status)      -- a luv TCP client got uvws's HTTP answer
    assert.equal(0, r.errors)
    assert.is_true(r.ticks >= 1)
    assert.is_true(r.ms < 5000)
  end)
end)
