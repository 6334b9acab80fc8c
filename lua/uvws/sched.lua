--- uvws.sched: the coroutine scheduler under every waiting call.
--
-- One libuv timer (in the C core) serves a binary heap of deadlines kept
-- here.  A coroutine waits by registering itself somewhere (a connection's
-- receive slot, a timer) and yielding; whoever has what it waits for calls
-- wake(co, ...), which resumes it with those values.  A coroutine is only
-- ever woken from a wait it is in, so a late event cannot resume it in the
-- middle of something else.
local core = require "uvws.core"

local M = {}

local heap = {}          -- timer entries ordered by deadline (ms)
local armed_at = nil     -- the deadline the C timer is armed for
local waiting = setmetatable({}, { __mode = "k" })
local seq = 0
local dead = 0           -- cancelled entries still in the heap

local function less(a, b)
  if a.t ~= b.t then return a.t < b.t end
  return a.n < b.n
end

local function push(e)
  local i = #heap + 1
  heap[i] = e
  while i > 1 do
    local p = i // 2
    if less(heap[i], heap[p]) then
      heap[i], heap[p] = heap[p], heap[i]
      i = p
    else
      break
    end
  end
end

local function pop()
  local n = #heap
  local top = heap[1]
  if top.dead and top.cancelled then dead = dead - 1 end
  heap[1] = heap[n]
  heap[n] = nil
  n = n - 1
  local i = 1
  while true do
    local l, r, m = 2 * i, 2 * i + 1, i
    if l <= n and less(heap[l], heap[m]) then m = l end
    if r <= n and less(heap[r], heap[m]) then m = r end
    if m == i then break end
    heap[i], heap[m] = heap[m], heap[i]
    i = m
  end
  return top
end

local function rearm()
  while heap[1] and heap[1].dead do pop() end
  local top = heap[1]
  if not top then
    if armed_at then core.timer(-1) armed_at = nil end
    return
  end
  if armed_at ~= top.t then
    local d = top.t - core.now()
    core.timer(d > 0 and d or 0)
    armed_at = top.t
  end
end

--- Seconds since an arbitrary point, with millisecond resolution.
function M.now()
  return core.now() / 1000
end

local function check_seconds(s, who)
  if type(s) ~= "number" or s ~= s or s < 0 then
    error("uvws: " .. who .. " must be a non-negative number of seconds", 4)
  end
end

--- Calls fn after `seconds`; returns an entry for cancel().
function M.add_timer(seconds, fn)
  seq = seq + 1
  local e = { t = core.now() + math.ceil(seconds * 1000), n = seq, fn = fn }
  push(e)
  rearm()
  return e
end

-- Rebuilds the heap without its cancelled entries.
local function compact()
  local live = {}
  for i = 1, #heap do
    local e = heap[i]
    if not e.dead then live[#live + 1] = e end
  end
  heap = {}
  dead = 0
  for i = 1, #live do push(live[i]) end
end

--- Cancels a timer.  Its entry stays in the heap until it surfaces, but
-- drops what it refers to (the callback and, through it, a coroutine and
-- its connection); when cancelled entries pile up (a long timer ahead of
-- many short waits) the heap is rebuilt.
function M.cancel(e)
  if e.dead then return end
  e.dead = true
  e.cancelled = true
  e.fn = nil
  dead = dead + 1
  if heap[1] == e then
    rearm()
  elseif dead > 256 and dead * 2 > #heap then
    compact()
    rearm()
  end
end

--- Called by the dispatcher when the C timer fires.
function M.on_timer()
  armed_at = nil
  local now = core.now()
  while heap[1] and (heap[1].dead or heap[1].t <= now) do
    local e = pop()
    if not e.dead then
      e.dead = true
      e.fn()
    end
  end
  rearm()
end

local function report(err)
  io.stderr:write("uvws: error in a coroutine: ", tostring(err), "\n")
end
M.on_error = report

--- Called when a coroutine that uvws resumed ends: ok and the error
-- value as coroutine.resume gave them.  Reports errors (with a traceback)
-- through on_error; uvws.init replaces it to also finish the connection
-- of a handler coroutine, whose body is the handler itself.
function M.finished(co, ok, err)
  if not ok then M.on_error(debug.traceback(co, tostring(err))) end
end

--- Resumes `co` with the given values; when that ends it (an error or a
-- return), M.finished hears of it.
function M.resume(co, ...)
  local ok, err = coroutine.resume(co, ...)
  if not ok or coroutine.status(co) == "dead" then M.finished(co, ok, err) end
end
local resume = M.resume

--- Resumes `co` with the given values (at most four) if it is in a uvws
-- wait.  Fixed arity: this is on every message's path.
function M.wake(co, a, b, c, d)
  if waiting[co] then
    waiting[co] = nil
    resume(co, a, b, c, d)
  end
end

--- The running coroutine, or an error naming `what` when the caller is
-- not in a coroutine that can yield.
function M.current(what)
  local co, main = coroutine.running()
  if main or not coroutine.isyieldable() then
    error("uvws: " .. what .. " must be called inside a coroutine " ..
          "(start one with uvws.spawn)", 3)
  end
  return co
end


--- Suspends the running coroutine until wake() or the timeout, after
-- which it returns nil, "timeout", "timeout" (calling `cleanup` first so
-- the caller can withdraw its registration).
function M.wait(timeout, cleanup)
  local co = coroutine.running()
  local t
  if timeout ~= nil then
    check_seconds(timeout, "timeout")
    t = M.add_timer(timeout, function()
      if cleanup then cleanup() end
      M.wake(co, nil, "timeout", "timeout")
    end)
  end
  waiting[co] = true
  local a, b, c, d = coroutine.yield()
  if t then M.cancel(t) end
  return a, b, c, d
end

--- Suspends the running coroutine for `seconds`.
function M.sleep(seconds)
  check_seconds(seconds, "sleep")
  local co = M.current("uvws.sleep")
  M.add_timer(seconds, function() M.wake(co, true) end)
  waiting[co] = true
  return coroutine.yield()
end

--- Runs fn(...) in a new coroutine, at once, until its first wait.  An
-- error in it is reported on stderr (with a traceback).
function M.spawn(fn, ...)
  if type(fn) ~= "function" then
    error("uvws.spawn expects a function", 2)
  end
  local co = coroutine.create(function(...)
    local ok, err = xpcall(fn, debug.traceback, ...)
    if not ok then M.on_error(err) end
  end)
  resume(co, ...)
  return co
end

return M
