--- Runs examples/chat/server.lua unchanged with its uvws server attached
-- to Redis (uvws.redis), so that several chat processes share their rooms:
--
--   lua5.4 spec/support/chat_redis.lua REDIS_PORT [chat options...]
--
-- The chat publishes every room message and presence change with
-- server:publish("room:<name>", ...), so WebSocket members on every
-- process get them.  (History and Server-Sent Events members stay per
-- process: the chat would feed them from the bus's on_message hook.)
local redis_port = math.tointeger(tonumber(table.remove(arg, 1) or ""))
if not redis_port then
  io.stderr:write("usage: lua5.4 spec/support/chat_redis.lua REDIS_PORT [chat options...]\n")
  os.exit(2)
end

local uvws = require "uvws"
local redis = require "uvws.redis"

local listen = uvws.listen
uvws.listen = function(opts)
  local server, err, name = listen(opts)
  if server then
    redis.attach(server, { port = redis_port, channel_prefix = "chat:" })
  end
  return server, err, name
end

local chat = "examples/chat/server.lua"
arg[0] = chat  -- luacheck: ignore 122 (the chat finds its modules beside arg[0])
dofile(chat)
