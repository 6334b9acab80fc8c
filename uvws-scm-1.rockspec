rockspec_format = "3.0"
package = "uvws"
version = "scm-1"
source = {
  url = "git+https://example.invalid/uvws.git",
}
description = {
  summary = "WebSocket server and client for Lua 5.4 on libuv and OpenSSL",
  detailed = [[
uvws is a WebSocket (RFC 6455) server and client written in C on libuv,
with a coroutine API: handlers read like blocking code.  Authentication,
origin checks and message handling are Lua.
]],
  license = "MIT",
}
dependencies = {
  "lua >= 5.4, < 5.5",
}
external_dependencies = {
  LIBUV = { header = "uv.h", library = "uv" },
  OPENSSL = { header = "openssl/ssl.h", library = "ssl" },
  ZLIB = { header = "zlib.h", library = "z" },
}
build = {
  type = "builtin",
  modules = {
    ["uvws.core"] = {
      sources = {
        "csrc/ws_buf.c", "csrc/ws_http.c", "csrc/ws_handshake.c",
        "csrc/ws_frame.c", "csrc/ws_utf8.c", "csrc/ws_sha1.c", "csrc/ws_conn.c", "csrc/ws_deflate.c",
        "csrc/io_loop.c", "csrc/io_conn.c", "csrc/io_server.c", "csrc/io_client.c",
        "csrc/io_tls.c",
        "csrc/lua_core.c",
      },
      defines = { "_POSIX_C_SOURCE=200809L" },
      incdirs = { "csrc", "$(LIBUV_INCDIR)", "$(OPENSSL_INCDIR)", "$(ZLIB_INCDIR)" },
      libdirs = { "$(LIBUV_LIBDIR)", "$(OPENSSL_LIBDIR)", "$(ZLIB_LIBDIR)" },
      libraries = { "uv", "ssl", "crypto", "z" },
    },
    ["uvws"] = "lua/uvws/init.lua",
    ["uvws.sched"] = "lua/uvws/sched.lua",
    ["uvws.request"] = "lua/uvws/request.lua",
    ["uvws.url"] = "lua/uvws/url.lua",
    ["uvws.inspect"] = "lua/uvws/inspect.lua",
    ["uvws.cli"] = "lua/uvws/cli.lua",
    ["uvws.reconnecting"] = "lua/uvws/reconnecting.lua",
    ["uvws.redis"] = "lua/uvws/redis.lua",
  },
  install = {
    bin = { uvws = "bin/uvws" },
  },
}
