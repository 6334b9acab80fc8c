-- The open-files limit (README, "Limits and timeouts"): a server or a
-- client raises the soft limit to the hard one, and a server says so on
-- on_error when every file descriptor is in use (libuv then closes the
-- next connections unseen).
local h = require "spec.helper"

-- The soft and hard "Max open files" of a process.
local function nofile(pid)
  local f = assert(io.open("/proc/" .. pid .. "/limits"))
  local text = f:read("a")
  f:close()
  local soft, hard = text:match("Max open files%s+(%S+)%s+(%S+)")
  return tonumber(soft), tonumber(hard)
end

-- Opens n connections that complete the handshake; returns them and how
-- many failed (the server closed them at once).
local function connect_many(port, n)
  local conns, failed = {}, 0
  for _ = 1, n do
    local c = h.raw(port, 2)
    local ok = c and c:handshake()
    if ok then conns[#conns + 1] = c
    else
      failed = failed + 1
      if c then c:close() end
    end
  end
  return conns, failed
end

local function echoes(c, text)
  c:send(h.text(text))
  local f = c:read_frame(3)
  return f ~= nil and f.payload == text
end

describe("the open-files limit", function()
  after_each(h.stop_all)

  it("a listening server raises its soft limit to the hard one", function()
    local srv = h.start_server(nil, { "0" }, nil, nil, "ulimit -S -n 48;")
    local soft, hard = nofile(srv.pid)
    assert.is_true(hard > 48, "the hard limit of this machine is too low for the test")
    assert.equal(hard, soft)
    -- More connections than the old soft limit allowed, all served.
    local conns, failed = connect_many(srv.port, 80)
    assert.equal(0, failed)
    assert.is_true(echoes(conns[80], "last"))
    for _, c in ipairs(conns) do c:close() end
  end)

  it("a client raises its soft limit too: 80 connections under a limit of 48", function()
    local srv = h.start_server()
    local client = h.tmpname(".lua")
    local f = assert(io.open(client, "w"))
    f:write([[
      local uvws = require "uvws"
      local port = tonumber(arg[1])
      uvws.spawn(function()
        local conns, failed = {}, nil
        for i = 1, 80 do
          local ws, err = uvws.connect("ws://127.0.0.1:" .. port .. "/", { timeout = 5 })
          if not ws then failed = err break end
          conns[i] = ws
        end
        local ok = #conns == 80 and conns[80]:send("last") and conns[80]:receive(5) == "last"
        print(#conns, ok and "echoed" or tostring(failed))
        for _, ws in ipairs(conns) do ws:close() end
      end)
      uvws.run()
    ]])
    f:close()
    local out = h.run("sh -c " .. h.q("ulimit -S -n 48; exec " .. h.lua_env() .. h.LUA ..
      " " .. h.q(client) .. " " .. srv.port), 30)
    os.remove(client)
    assert.equal("80\techoed\n", out)
  end)

  it("says on on_error when every descriptor is in use, and recovers", function()
    local srv = h.start_server(nil, { "0" }, nil, nil, "ulimit -n 40;")
    assert.equal(40, (nofile(srv.pid)))
    local conns, failed = connect_many(srv.port, 60)
    assert.is_true(#conns > 10 and #conns < 40, #conns .. " connections open")
    assert.is_true(failed > 0)
    -- The ones that got in are served.
    assert.is_true(echoes(conns[1], "first"))
    assert.is_true(echoes(conns[#conns], "last in"))
    local err = srv.stderr()
    assert.truthy(err:find("all 40 file descriptors the process may open are in use (EMFILE)",
      1, true), err)
    assert.truthy(err:find("ulimit -n", 1, true))
    -- Once some close, new connections come in again.
    for i = 1, 5 do conns[i]:close() end
    h.sleep(0.2)
    local more = connect_many(srv.port, 3)
    assert.equal(3, #more)
    assert.is_true(echoes(more[3], "again"))
    for _, c in ipairs(more) do c:close() end
    for i = 6, #conns do conns[i]:close() end
    assert.is_true(srv.alive())
  end)
end)
