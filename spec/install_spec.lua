-- The rock: `luarocks --lua-version=5.4 make` of uvws-scm-1.rockspec into
-- a private tree, then `require "uvws"` from another directory with
-- LUA_PATH/LUA_CPATH pointing only at that tree.
--
-- The builtin build type leaves object files next to the sources
-- (csrc/*.o) and the module in ./uvws/core.so of the directory it runs in,
-- so the build runs in a copy of the checkout (csrc/, lua/ and the
-- rockspec, as they are in the working tree) instead of the checkout
-- itself: a stray ./uvws/core.so at the repository root would shadow
-- build/uvws/core.so for anything using `./?.so` in LUA_CPATH.

local h = require "spec.helper"

local function sh(cmd, secs)
  local p = assert(io.popen("timeout -k 2 " .. (secs or 30) .. " sh -c " .. h.q(cmd) .. " 2>&1", "r"))
  local out = p:read("a")
  local ok, _, code = p:close()
  return out, ok and 0 or code
end

local function have_luarocks()
  local _, code = sh("command -v luarocks >/dev/null")
  return code == 0
end

describe("the luarocks install", function()
  if not have_luarocks() then
    it("is skipped: luarocks is not installed", function()
      pending("luarocks not found")
    end)
    return
  end

  local base, tree, env
  local build_out, build_code

  setup(function()
    base = assert(sh("mktemp -d /tmp/uvws-rock.XXXXXX")):match("^(%S+)")
    tree = base .. "/tree"
    local src = base .. "/src"
    local copied = sh("mkdir -p " .. h.q(src) .. " && cp -r " ..
      h.q(h.root .. "/csrc") .. " " .. h.q(h.root .. "/lua") .. " " .. h.q(h.root .. "/bin") .. " " ..
      h.q(h.root .. "/uvws-scm-1.rockspec") .. " " .. h.q(src) .. "/ && echo copied")
    assert(copied:match("copied"), copied)
    build_out, build_code = sh("cd " .. h.q(src) .. " && luarocks --lua-version=5.4 make --tree " ..
                               h.q(tree) .. " uvws-scm-1.rockspec", 240)
    -- Paths from `luarocks path`, keeping only the entries inside the tree.
    local path_out = sh("luarocks --lua-version=5.4 --tree " .. h.q(tree) .. " path", 30)
    local function only_tree(var)
      local value = path_out:match("export " .. var .. "='([^']*)'") or ""
      local keep = {}
      for entry in value:gmatch("[^;]+") do
        if entry:sub(1, #tree) == tree then keep[#keep + 1] = entry end
      end
      return table.concat(keep, ";")
    end
    env = "LUA_PATH=" .. h.q(only_tree("LUA_PATH")) .. " LUA_CPATH=" .. h.q(only_tree("LUA_CPATH"))
  end)

  teardown(function()
    if base and base:match("^/tmp/uvws%-rock%.") then sh("rm -rf " .. h.q(base)) end
  end)

  -- Runs Lua code with lua5.4 from /tmp, seeing only the tree.
  local function lua_in_tmp(code, secs)
    return sh("cd /tmp && env -u LUA_INIT -u LUA_INIT_5_4 " .. env ..
              " lua5.4 -e " .. h.q(code), secs or 20)
  end

  it("builds and installs with luarocks make", function()
    assert.equal(0, build_code, build_out)
    assert.matches("uvws scm%-1 is now installed", build_out)
  end)

  it("puts uvws, uvws.sched, uvws.request and uvws.core in the tree only", function()
    assert.matches(tree .. "/share/lua/5.4/?.lua", env, 1, true)
    assert.matches(tree .. "/lib/lua/5.4/?.so", env, 1, true)
    local out, code = lua_in_tmp([[
      for _, m in ipairs { "uvws", "uvws.sched", "uvws.request" } do
        print(m, package.searchpath(m, package.path))
      end
      print("uvws.core", package.searchpath("uvws.core", package.cpath))
      print("build", package.searchpath("uvws.core", "./build/?.so"))
    ]])
    assert.equal(0, code, out)
    for _, m in ipairs { "uvws", "uvws.sched", "uvws.request", "uvws.core" } do
      local where = out:match("\n?" .. m:gsub("%.", "%%.") .. "\t(%S+)")
      assert.truthy(where, m .. " not found:\n" .. out)
      assert.equal(tree, where:sub(1, #tree), m .. " found outside the tree: " .. where)
    end
    assert.matches("build\tnil", out, 1, true)
  end)

  it("is required from another directory: require \"uvws\" prints ok", function()
    local out, code = lua_in_tmp('require "uvws"; print("ok")')
    assert.equal(0, code, out)
    assert.equal("ok\n", out)
  end)

  it("works once installed: _VERSION, listen on port 0, run returns after close", function()
    local out, code = lua_in_tmp([[
      local uvws = require "uvws"
      print(uvws._VERSION)
      local srv = assert(uvws.listen { host = "127.0.0.1", port = 0 })
      print("port", srv.port > 0)
      uvws.spawn(function() uvws.sleep(0.05); srv:close() end)
      uvws.run()
      print("run returned")
    ]], 10)
    assert.equal(0, code, out)
    assert.matches("^uvws", out)
    assert.matches("port\ttrue\n", out, 1, true)
    assert.matches("run returned\n", out, 1, true)
  end)
end)
