--- uvws inside a luv program: luv is required first, so uvws runs on luv's
-- loop and uv.run() (never uvws.run) drives a uvws server, a uvws client
-- and a luv timer together.  Prints one JSON line.
local uv = require "luv"
local uvws = require "uvws"

local echoed, ticks, errors = 0, 0, {}
local server = assert(uvws.listen { port = 0, handler = function(ws)
  for data, kind in ws:each() do ws:send(data, kind) end
end })

-- A luv TCP client beside the uvws ones: luv and uvws handles on one loop.
local raw_reply
local tcp = uv.new_tcp()
tcp:connect("127.0.0.1", server.port, function(err)
  if err then errors[#errors + 1] = err return end
  tcp:write("GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
  tcp:read_start(function(rerr, chunk)
    if chunk then raw_reply = (raw_reply or "") .. chunk else tcp:close() end
    if rerr then errors[#errors + 1] = rerr end
  end)
end)

uvws.spawn(function()
  local ws, err = uvws.connect("ws://127.0.0.1:" .. server.port .. "/")
  if not ws then errors[#errors + 1] = err return end
  for i = 1, 100 do
    ws:send("m" .. i)
    local data = ws:receive(2)
    if data == "m" .. i then echoed = echoed + 1 end
    uvws.sleep(0.001)
  end
  ws:close()
  server:close()
end)

local timer = uv.new_timer()
timer:start(5, 5, function()
  ticks = ticks + 1
  if ticks >= 2000 or (echoed == 100 and raw_reply) then timer:close() end
end)

local t0 = uv.now()
uv.run()
print(string.format('{"echoed":%d,"ticks":%d,"ms":%d,"status":%q,"errors":%d}',
  echoed, ticks, uv.now() - t0, raw_reply and raw_reply:match("^HTTP/1%.1 (%d+)") or "none", #errors))
