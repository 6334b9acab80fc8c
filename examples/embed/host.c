/*
 * host.c: a small C program that embeds Lua and uvws the way a game does.
 *
 * It owns its lua_State and a fixed-timestep frame loop (60 Hz by
 * default).  Every frame it gives uvws one non-blocking turn
 * (uvws_step(L, 0)), calls the script's frame(n) function (the "update"),
 * pretends to render for a few milliseconds, and sleeps until the next
 * frame is due.  The script (script.lua beside this file) runs a uvws
 * server and clients that exchange messages the whole time.  At the end
 * the host prints one JSON line: how many frames, how late they started
 * against the fixed schedule, how long uvws_step took, and how many
 * messages went through.
 *
 *   host [--seconds S] [--hz N] [--work-ms W] [--mode sleep|budget|uvloop] script.lua
 *
 * Modes:
 *   sleep   uvws_step(L, 0) once per frame, then clock_nanosleep to the
 *           next frame (the network is serviced once per frame).
 *   budget  after the frame's work, uvws_step(L, ms) until the next frame
 *           is due: uvws waits for events in the idle time, so replies are
 *           handled as they come instead of once per frame.
 *   uvloop  the host has a libuv loop of its own, hands it to uvws with
 *           uvws_open(L, &loop), and drives its frames from a uv_timer on
 *           that loop; uv_run runs the frames and uvws together.
 *
 * uvws is compiled into this program (the Makefile beside it compiles
 * ../../csrc); "uvws.core" is registered in package.preload, and the Lua
 * half (the modules in lua/uvws/) comes from LUA_PATH.  Linking build/uvws/core.so
 * instead works the same way (see the Makefile).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <uv.h>

#include "uvws.h"

#define MAX_FRAMES 100000

typedef struct host {
  lua_State *L;
  int script_ref;       /* the table script.lua returned */
  double hz, seconds, work_ms;
  const char *mode;
  int nframes, target;
  double t0;            /* when frame 0 was due */
  double *late_ms;      /* per frame: start - scheduled start */
  double *frame_ms;     /* per frame: start to end of the frame's work */
  double *step_ms;      /* per frame: time in uvws_step */
  double *step_cpu_ms;  /* per frame: CPU time of this thread in uvws_step */
  double *update_ms;    /* per frame: time in the script's frame(n) */
  int lua_errors;
  uv_timer_t tick;      /* uvloop mode */
  uv_loop_t *loop;
  int finishing;
} host_t;

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* CPU time of this thread: what the host itself spent, whoever else runs. */
static double cpu_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void sleep_until_ms(double t) {
  struct timespec ts;
  ts.tv_sec = (time_t)(t / 1e3);
  ts.tv_nsec = (long)((t - ts.tv_sec * 1e3) * 1e6);
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {}
}

/* The "render": a busy wait, like a frame's CPU work. */
static void fake_work(double ms) {
  double end = now_ms() + ms;
  while (now_ms() < end) {}
}

/* Calls script[name](arg); reports (and counts) a Lua error. */
static void call_script(host_t *h, const char *name, lua_Integer arg) {
  lua_State *L = h->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->script_ref);
  if (lua_getfield(L, -1, name) != LUA_TFUNCTION) {
    lua_pop(L, 2);
    return;
  }
  lua_pushinteger(L, arg);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    if (h->lua_errors++ < 5) fprintf(stderr, "host: %s: %s\n", name, lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

/* One frame's own work after the network turn: update, then render. */
static void frame_body(host_t *h, int n) {
  double a = now_ms();
  call_script(h, "frame", n);
  h->update_ms[n] = now_ms() - a;
  fake_work(h->work_ms);
}

/* One uvws turn; adds its wall and CPU time to frame n's counters. */
static void step_timed(host_t *h, int n, int budget_ms) {
  double a = now_ms(), c = cpu_ms();
  uvws_step(h->L, budget_ms);
  h->step_cpu_ms[n] += cpu_ms() - c;
  h->step_ms[n] += now_ms() - a;
}

static void run_sleep_or_budget(host_t *h, int budget) {
  double period = 1e3 / h->hz;
  h->t0 = now_ms() + period;
  for (int n = 0; n < h->target; n++) {
    double due = h->t0 + n * period;
    if (budget) {
      /* Give uvws the idle time before the frame, in whole milliseconds
       * (the loop's timer resolution), then sleep the rest. */
      for (;;) {
        int left = (int)(due - now_ms()) - 1;
        if (left < 1) break;
        step_timed(h, n, left);
      }
    }
    sleep_until_ms(due);
    double start = now_ms();
    h->late_ms[n] = start - due;
    step_timed(h, n, 0);
    frame_body(h, n);
    h->frame_ms[n] = now_ms() - start;
    h->nframes = n + 1;
  }
}

static void on_tick(uv_timer_t *t) {
  host_t *h = t->data;
  int n = h->nframes;
  double period = 1e3 / h->hz;
  double due = h->t0 + n * period;
  double start = now_ms();
  h->late_ms[n] = start - due;
  /* uvws runs in this same uv_run: no step needed. */
  frame_body(h, n);
  h->frame_ms[n] = now_ms() - start;
  h->nframes = n + 1;
  if (h->nframes >= h->target) {
    uv_timer_stop(t);
    uv_close((uv_handle_t *)t, NULL);
    return;
  }
  /* Re-arm for the next due time: a repeating timer would drift. */
  double next = h->t0 + h->nframes * period - now_ms();
  uv_update_time(h->loop);
  uv_timer_start(t, on_tick, next > 0 ? (uint64_t)(next + 0.999) : 0, 0);
}

static void run_uvloop(host_t *h) {
  double period = 1e3 / h->hz;
  uv_timer_init(h->loop, &h->tick);
  h->tick.data = h;
  h->t0 = now_ms() + period;
  uv_update_time(h->loop);
  uv_timer_start(&h->tick, on_tick, (uint64_t)(period + 0.999), 0);
  while (h->nframes < h->target) uv_run(h->loop, UV_RUN_ONCE);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double percentile(const double *v, int n, double p) {
  if (n == 0) return 0;
  double *s = malloc(sizeof *s * (size_t)n);
  memcpy(s, v, sizeof *s * (size_t)n);
  qsort(s, (size_t)n, sizeof *s, cmp_double);
  int i = (int)(p * (n - 1) + 0.5);
  double r = s[i];
  free(s);
  return r;
}

static double maximum(const double *v, int n) {
  double m = 0;
  for (int i = 0; i < n; i++) if (v[i] > m) m = v[i];
  return m;
}

/* Reads script.stats() into the JSON line: a flat table of numbers. */
static void print_script_stats(host_t *h) {
  lua_State *L = h->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->script_ref);
  printf("\"script\":{");
  if (lua_getfield(L, -1, "stats") == LUA_TFUNCTION && lua_pcall(L, 0, 1, 0) == LUA_OK &&
      lua_istable(L, -1)) {
    int first = 1;
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TNUMBER) {
        printf("%s\"%s\":%.17g", first ? "" : ",", lua_tostring(L, -2), lua_tonumber(L, -1));
        first = 0;
      }
      lua_pop(L, 1);
    }
  }
  printf("}");
  lua_settop(L, 0);
}

static void usage(void) {
  fprintf(stderr, "usage: host [--seconds S] [--hz N] [--work-ms W] "
                  "[--mode sleep|budget|uvloop] script.lua\n");
  exit(2);
}

int main(int argc, char **argv) {
  host_t h = {0};
  h.hz = 60;
  h.seconds = 3;
  h.work_ms = 2;
  h.mode = "sleep";
  const char *script = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--seconds") && i + 1 < argc) h.seconds = atof(argv[++i]);
    else if (!strcmp(argv[i], "--hz") && i + 1 < argc) h.hz = atof(argv[++i]);
    else if (!strcmp(argv[i], "--work-ms") && i + 1 < argc) h.work_ms = atof(argv[++i]);
    else if (!strcmp(argv[i], "--mode") && i + 1 < argc) h.mode = argv[++i];
    else if (argv[i][0] == '-') usage();
    else script = argv[i];
  }
  int mode_budget = !strcmp(h.mode, "budget"), mode_uvloop = !strcmp(h.mode, "uvloop");
  if (!script || h.hz <= 0 || h.seconds <= 0 || h.work_ms < 0 ||
      !(mode_budget || mode_uvloop || !strcmp(h.mode, "sleep")))
    usage();
  h.target = (int)(h.seconds * h.hz);
  if (h.target < 1 || h.target > MAX_FRAMES) usage();
  h.late_ms = calloc((size_t)h.target, sizeof(double));
  h.frame_ms = calloc((size_t)h.target, sizeof(double));
  h.step_ms = calloc((size_t)h.target, sizeof(double));
  h.step_cpu_ms = calloc((size_t)h.target, sizeof(double));
  h.update_ms = calloc((size_t)h.target, sizeof(double));

  /* The host's own loop (uvloop mode), or none: uvws makes one. */
  uv_loop_t own;
  if (mode_uvloop) {
    uv_loop_init(&own);
    h.loop = &own;
  }

  lua_State *L = h.L = luaL_newstate();
  luaL_openlibs(L);
  /* uvws.core is compiled in: require finds it in package.preload. */
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_uvws_core);
  lua_setfield(L, -2, "uvws.core");
  lua_pop(L, 1);

  if (uvws_open(L, h.loop) != LUA_OK) {
    fprintf(stderr, "host: cannot open uvws: %s\n", lua_tostring(L, -1));
    return 1;
  }
  lua_pop(L, 1);
  if (luaL_loadfile(L, script) != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK) {
    fprintf(stderr, "host: %s\n", lua_tostring(L, -1));
    return 1;
  }
  if (!lua_istable(L, -1)) {
    fprintf(stderr, "host: %s must return a table\n", script);
    return 1;
  }
  h.script_ref = luaL_ref(L, LUA_REGISTRYINDEX);

  if (mode_uvloop) run_uvloop(&h);
  else run_sleep_or_budget(&h, mode_budget);

  /* Let the script close its connections, then a few more turns. */
  call_script(&h, "finish", h.nframes);
  for (int i = 0; i < 50; i++) {
    if (mode_uvloop) uv_run(h.loop, UV_RUN_NOWAIT);
    else uvws_step(L, 0);
    sleep_until_ms(now_ms() + 2);
  }

  int n = h.nframes, within = 0, over_period = 0;
  double period = 1e3 / h.hz;
  for (int i = 0; i < n; i++) {
    if (h.late_ms[i] <= 2.0) within++;
    if (h.late_ms[i] + h.frame_ms[i] > period) over_period++;
  }
  printf("{\"mode\":\"%s\",\"hz\":%g,\"period_ms\":%.3f,\"work_ms\":%g,\"frames\":%d,"
         "\"late_ms_p50\":%.3f,\"late_ms_p95\":%.3f,\"late_ms_max\":%.3f,"
         "\"within_2ms\":%.4f,\"frames_over_period\":%d,"
         "\"frame_ms_max\":%.3f,\"step_ms_p99\":%.3f,\"step_ms_max\":%.3f,"
         "\"step_cpu_ms_p99\":%.3f,\"step_cpu_ms_max\":%.3f,\"update_ms_max\":%.3f,\"lua_errors\":%d,",
         h.mode, h.hz, period, h.work_ms, n,
         percentile(h.late_ms, n, 0.5), percentile(h.late_ms, n, 0.95), maximum(h.late_ms, n),
         n ? (double)within / n : 0, over_period,
         maximum(h.frame_ms, n), percentile(h.step_ms, n, 0.99), maximum(h.step_ms, n),
         percentile(h.step_cpu_ms, n, 0.99), maximum(h.step_cpu_ms, n), maximum(h.update_ms, n), h.lua_errors);
  print_script_stats(&h);
  printf("}\n");
  fflush(stdout);

  luaL_unref(L, LUA_REGISTRYINDEX, h.script_ref);
  lua_close(L);
  if (mode_uvloop) {
    uv_run(&own, UV_RUN_NOWAIT);
    int r = uv_loop_close(&own);
    if (r) fprintf(stderr, "host: uv_loop_close: %s\n", uv_strerror(r));
  }
  free(h.late_ms);
  free(h.frame_ms);
  free(h.step_ms);
  free(h.step_cpu_ms);
  free(h.update_ms);
  return h.lua_errors ? 1 : 0;
}
