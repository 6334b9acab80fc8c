-- Ctrl-C (SIGINT) stops uvws.run(): lua5.4 alone would only flag the
-- interrupt for a Lua instruction an idle server never runs.
local h = require "spec.helper"

describe("SIGINT", function()
  after_each(h.stop_all)

  local function wait_exit(srv, secs)
    local deadline = h.now() + secs
    while h.alive(srv.pid) and h.now() < deadline do h.sleep(0.02) end
    return not h.alive(srv.pid)
  end

  it("ends an idle server's uvws.run() with 'interrupted!'", function()
    local srv = h.start_server()
    assert.is_true(h.echo_works(srv.port, "before"))
    os.execute("kill -INT " .. srv.pid)
    assert.is_true(wait_exit(srv, 3), "the server is still running after one SIGINT")
    srv.stop()
    assert.matches("interrupted!", srv.final_stderr)
    assert.no.matches("internal error", srv.final_stderr)
  end)

  it("goes to the program's own handler when it has one, and the server keeps serving", function()
    local srv = h.start_server(nil, nil, [[
      local uvws = require "uvws"
      local server = assert(uvws.listen { port = 0, handler = function(ws)
        for data, kind in ws:each() do ws:send(data, kind) end
      end })
      uvws.on_signal("SIGINT", function(sig) io.stderr:write("got signal ", sig, "\n") end)
      print("listening on ws://127.0.0.1:" .. server.port .. "/")
      io.stdout:flush()
      uvws.run()
    ]])
    os.execute("kill -INT " .. srv.pid)
    local deadline = h.now() + 3
    while not srv.stderr():find("got signal", 1, true) and h.now() < deadline do h.sleep(0.02) end
    assert.matches("got signal 2", srv.stderr())
    assert.is_true(h.alive(srv.pid))
    assert.is_true(h.echo_works(srv.port, "after"))
  end)
end)
