-- The chat page in a real browser: Debian's chromium, headless, driven by
-- playwright-core (spec/browser/chat.test.js) against examples/chat.
--
-- playwright-core is installed from npm into spec/browser/node_modules on
-- first use.  The spec is skipped (pending) only when chromium is missing
-- and cannot be installed; anything else that goes wrong is a failure.
--
-- When nginx is installed, the page is also loaded through an nginx that
-- does not forward the upgrade headers (spec/nginx/chat.conf.in), to see
-- the page fall back to Server-Sent Events there.
--
-- The screenshot goes to build/chat.png; run with
-- UVWS_SCREENSHOT=docs/chat.png to refresh the README's picture.

local h = require "spec.helper"
local cs = require "spec.chat_support"

local CHROMIUM = "/usr/bin/chromium"
local DIR = "spec/browser"

local function executable(path)
  return os.execute("test -x " .. h.q(path)) == true
end

local function exists(path)
  local f = io.open(h.root .. "/" .. path, "rb")
  if f then f:close() end
  return f ~= nil
end

-- Installs chromium with apt-get when it is missing and we are root.
-- Returns nil, or why the browser test cannot run.
local function chromium_missing()
  if executable(CHROMIUM) then return nil end
  local uid = h.run("id -u", 5):match("%d+")
  if uid == "0" then
    h.run("env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1", 600)
    if executable(CHROMIUM) then return nil end
  end
  return "chromium is not installed and could not be installed (apt-get install chromium)"
end

describe("chat page in chromium:", function()
  local skip = chromium_missing()
  if skip then
    pending(skip)
    return
  end

  local srv, proxy

  setup(function()
    if not exists(DIR .. "/node_modules/playwright-core/package.json") then
      local out, code = h.run("sh -c " .. h.q("cd " .. DIR ..
        " && npm install --no-audit --no-fund --loglevel=error 2>&1"), 300)
      assert(code == 0 and exists(DIR .. "/node_modules/playwright-core/package.json"),
        "npm could not install playwright-core:\n" .. out)
    end
    local args = { "--port", "0" }
    local proxy_port
    if executable(cs.NGINX) then
      proxy_port = cs.free_port()
      -- The page behind the proxy has the proxy's origin.
      args[#args + 1] = "--origin"
      args[#args + 1] = "http://127.0.0.1:" .. proxy_port
    end
    srv = h.start_server("examples/chat/server.lua", args)
    if proxy_port then proxy = cs.start_nginx(srv.port, cs.NGINX_NO_UPGRADE, proxy_port) end
  end)

  teardown(function()
    if proxy then proxy.stop() end
    h.stop_all()
  end)

  it("chats over WebSocket and SSE, shows presence, history and a rejected ticket", function()
    local shot = os.getenv("UVWS_SCREENSHOT") or "build/chat.png"
    local started = h.now()
    local out, code = h.run("env CHAT_URL=" .. h.q("http://127.0.0.1:" .. srv.port) ..
      " CHAT_ROOM=garden SCREENSHOT=" .. h.q(shot) .. " CHROMIUM=" .. CHROMIUM ..
      (proxy and " BROKEN_PROXY_URL=http://127.0.0.1:" .. proxy.port or "") ..
      " node " .. DIR .. "/chat.test.js 2>&1", 90)
    local elapsed = h.now() - started
    local report = out .. "\nserver stderr:\n" .. srv.stderr()
    assert.equal(0, code, report)
    assert.is_nil(out:match("not ok"), report)
    assert.matches("browser: %d+ checks passed", out, nil, false, report)
    if proxy then assert.matches("erin (proxy drops the upgrade) falls back to SSE", out, 1, true) end
    local path = shot:sub(1, 1) == "/" and shot or h.root .. "/" .. shot
    assert.truthy(h.read_file(path), "no screenshot at " .. shot)
    assert.is_true(elapsed < 60, ("the browser test took %.1f s"):format(elapsed))
    assert.equal("", srv.stderr())
  end)
end)
