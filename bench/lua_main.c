/* A minimal Lua 5.4 interpreter for profiling: Debian's /usr/bin/lua5.4 is
 * stripped, so perf and callgrind cannot name the VM's functions.  Linked
 * against liblua5.4.a (liblua5.4-dev), whose symbol table is intact:
 *
 *   cc -O2 -g -o build/bench/lua5.4-prof bench/lua_main.c \
 *      -I/usr/include/lua5.4 -Wl,-E -l:liblua5.4.a -lm -ldl
 *
 *   build/bench/lua5.4-prof script.lua [args...]   (sets `arg` like lua5.4)
 *
 * -Wl,-E exports the lua_* API so C modules (build/uvws/core.so) link to it.
 * Like lua5.4 (lua.c), it runs the collector in generational mode: profiles
 * taken in the C API's default, incremental mode showed another GC. */
#include <stdio.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

static int traceback(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  luaL_traceback(L, L, msg ? msg : "(error object is not a string)", 1);
  return 1;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s script.lua [args...]\n", argv[0]);
    return 2;
  }
  lua_State *L = luaL_newstate();
  if (!L) return 1;
  luaL_openlibs(L);
  lua_gc(L, LUA_GCGEN, 0, 0);               /* as lua.c does */
  lua_createtable(L, argc - 2, 2);          /* arg[0] = script, arg[1..] = args */
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - 1);
  }
  lua_setglobal(L, "arg");
  lua_pushcfunction(L, traceback);
  int status = luaL_loadfile(L, argv[1]);
  if (status == LUA_OK) {
    for (int i = 2; i < argc; i++) lua_pushstring(L, argv[i]);
    status = lua_pcall(L, argc - 2, 0, 1);
  }
  if (status != LUA_OK) fprintf(stderr, "%s: %s\n", argv[0], lua_tostring(L, -1));
  lua_close(L);
  return status == LUA_OK ? 0 : 1;
}
