-- Echo client: sends each line of stdin as a text message and prints what
-- comes back.  Pair it with examples/echo_server.lua.
--
--   lua5.4 examples/echo_client.lua [url]      (default ws://127.0.0.1:9001/)
--
-- At the end of stdin it closes with 1000 and waits for the server's close,
-- so every echo still on its way is printed.
local uvws = require "uvws"
local cli = require "uvws.cli"   -- for read_stdin: stdin lines without blocking the loop

local url = arg[1] or "ws://127.0.0.1:9001/"
local status = 0

uvws.spawn(function()
  local ws, err, name = uvws.connect(url, { timeout = 5 })
  if not ws then
    io.stderr:write(("cannot connect to %s: %s (%s)\n"):format(url, err, name))
    status = 1
    return
  end
  io.stderr:write("connected to ", url, "\n")

  -- One coroutine sends the lines ...
  cli.read_stdin(function(line)
    ws:send(line)
  end, function()
    ws:close(1000, "bye")
  end)

  -- ... while this one prints every message until the connection closes.
  for data, kind in ws:each() do
    print(kind == "text" and data or ("<binary " .. #data .. " bytes>"))
  end
  io.stderr:write(("closed: %d %s\n"):format(ws.close_code or 1006, ws.close_reason or ""))
  if ws.close_code ~= 1000 then status = 1 end
  uvws.stop()
end)

uvws.run()
os.exit(status)
