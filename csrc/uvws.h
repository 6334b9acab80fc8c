/*
 * uvws.h: the C embedding API.
 *
 * A host program that owns its lua_State (a game, an editor, a tool with
 * its own frame loop) opens uvws in it, either on a libuv loop of uvws's
 * own or on one the host already has, and then drives it:
 *
 *     uvws_open(L, NULL);          // or uvws_open(L, my_loop)
 *     ...load scripts that call uvws.listen / uvws.connect / uvws.spawn...
 *     for (;;) {                   // the host's frame loop
 *       uvws_step(L, 0);           // never blocks
 *       render_frame();
 *     }
 *
 * With a loop of the host's own, the host may instead run that loop itself
 * (uv_run); uvws's callbacks then run Lua on the main thread of L.  A Lua
 * program using luv shares luv's loop automatically when it requires
 * "luv" before "uvws".
 *
 * The module itself is luaopen_uvws_core (uvws.core); the Lua API is the
 * module "uvws" (lua/uvws/init.lua), which must be on package.path.
 */
#ifndef UVWS_H
#define UVWS_H

#include <lua.h>
#include <uv.h>

/* The registry field where a host may leave a uv_loop_t * (light
 * userdata) before uvws.core is first required. */
#define UVWS_LOOP_KEY "uvws.uv_loop"

/* Opens uvws in L on `loop` (NULL: uvws makes its own) by requiring
 * "uvws".  Leaves the module table on the stack and returns LUA_OK, or
 * leaves an error message and returns the lua_pcall error code.  The loop
 * must outlive L. */
int uvws_open(lua_State *L, uv_loop_t *loop);

/* Runs one turn of the loop: handles the events that are ready, runs
 * timers and flushes output.  budget_ms = 0 never blocks; budget_ms > 0
 * waits at most that long for an event.  Returns non-zero while handles
 * are active, 0 when idle, -1 if called from inside the loop. */
int uvws_step(lua_State *L, int budget_ms);

int luaopen_uvws_core(lua_State *L);

#endif
