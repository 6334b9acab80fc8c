--- The Lua side of examples/embed/host.c: a uvws server and clients to it,
-- in the host's own frame loop (the host calls uvws_step once per frame,
-- or runs the libuv loop itself).  Nothing here blocks: every wait is a
-- coroutine suspended until a later frame's network turn.
--
-- What flows while the host keeps its frame rate:
--  * an echo client keeps BATCH messages in flight (a small one, and every
--    tenth round a 64 KiB binary one) and checks every echo;
--  * a "spectator" client subscribes to the topic "frames", to which the
--    server publishes a short state update every frame (frame(n) below).
--
-- The host calls frame(n) every frame, finish() at the end and stats() for
-- its JSON summary.
local uvws = require "uvws"

local BATCH = 64
local BIG = string.rep("\1\2\3\4", 16384)

local M = {}
local st = { sent = 0, echoed = 0, published = 0, spectated = 0, errors = 0, bytes = 0,
             connected = 0 }
local stopping = false
local clients = {}

local server = assert(uvws.listen {
  host = "127.0.0.1", port = 0,
  handler = function(ws)
    if ws.request.path == "/spectate" then ws:subscribe("frames") end
    for data, kind in ws:each() do ws:send(data, kind) end
  end,
  on_error = function(err) st.errors = st.errors + 1 io.stderr:write("script: ", tostring(err), "\n") end,
})
local url = "ws://127.0.0.1:" .. server.port

local function fail(what, err)
  if stopping then return end   -- the server closing under a waiting client
  st.errors = st.errors + 1
  io.stderr:write("script: ", what, ": ", tostring(err), "\n")
end

-- The echo client: BATCH messages out, BATCH echoes back, checked.
uvws.spawn(function()
  local ws, err = uvws.connect(url .. "/echo")
  if not ws then return fail("connect", err) end
  clients[#clients + 1] = ws
  st.connected = st.connected + 1
  local round = 0
  while not stopping do
    round = round + 1
    local big = round % 10 == 0
    for i = 1, BATCH do
      if big and i == 1 then
        ws:send(BIG, "binary")
      else
        ws:send("round " .. round .. " message " .. i)
      end
      st.sent = st.sent + 1
    end
    for i = 1, BATCH do
      local data, kind = ws:receive(5)
      if not data then return fail("receive", kind) end
      local want = (big and i == 1) and BIG or ("round " .. round .. " message " .. i)
      if data ~= want then return fail("echo", "round " .. round .. " message " .. i .. " came back wrong") end
      st.echoed = st.echoed + 1
      st.bytes = st.bytes + #data
    end
  end
end)

-- The spectator: counts the per-frame updates.
uvws.spawn(function()
  local ws, err = uvws.connect(url .. "/spectate")
  if not ws then return fail("connect", err) end
  clients[#clients + 1] = ws
  st.connected = st.connected + 1
  for _ in ws:each() do st.spectated = st.spectated + 1 end
end)

--- The host's update, once per frame.
function M.frame(n)
  if server:subscribers("frames") > 0 then
    st.published = st.published + server:publish("frames", '{"frame":' .. n .. '}')
  end
end

--- The end: close the clients and the server.
function M.finish()
  stopping = true
  for _, ws in ipairs(clients) do ws:close(1000) end
  server:close()
end

function M.stats()
  st.messages = st.echoed + st.spectated
  return st
end

return M
