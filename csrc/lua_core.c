/*
 * lua_core: the uvws.core module, the only C that knows Lua.
 *
 * C never raises for a runtime failure: it returns nil, message, name and
 * leaves retrying and deadlines to lua/uvws/init.lua.  Events flow the
 * other way through one Lua function, the dispatcher, called with an
 * event number and its arguments -- except messages, the hot path: C
 * queues them per connection and resumes the coroutine waiting in
 * ws:receive() (a C function that yields) or runs the event-style
 * on_message handler on a pooled thread, with no Lua in between.
 *
 * Memory: a Lua userdata boxes a pointer to the io object, because libuv
 * memory must outlive the garbage collector until uv_close's callback.
 * While a connection is open a registry reference keeps its userdata
 * alive; the reference is dropped in on_closed, where the box is emptied.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include <lauxlib.h>
#include <lua.h>

#include "io.h"
#include "uvws.h"
#include "ws_utf8.h"

/* Lua 5.3: the four 5.4 calls this file uses, with one user value. */
#if LUA_VERSION_NUM < 504
#define lua_newuserdatauv(L, sz, n) lua_newuserdata(L, sz)
#define luaL_pushfail(L) lua_pushnil(L)
/* One user value: a table holding the numbered ones. */
static int lua_getiuservalue(lua_State *L, int idx, int n) {
  if (lua_getuservalue(L, idx) != LUA_TTABLE) return LUA_TNIL;
  int t = lua_rawgeti(L, -1, n);
  lua_remove(L, -2);
  return t;
}
static int lua_setiuservalue(lua_State *L, int idx, int n) {
  idx = lua_absindex(L, idx);
  if (lua_getuservalue(L, idx) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_createtable(L, 4, 0);
    lua_pushvalue(L, -1);
    lua_setuservalue(L, idx);
  }
  lua_insert(L, -2);
  lua_rawseti(L, -2, n);
  lua_pop(L, 1);
  return 1;
}
static int compat_resume(lua_State *co, lua_State *from, int nargs,
                         int *nres) {
  int st = lua_resume(co, from, nargs);
  *nres = lua_gettop(co);
  return st;
}
#define lua_resume(co, from, n, r) compat_resume(co, from, n, r)
#endif

#define CTX_KEY "uvws.ctx"
#define SERVER_MT "uvws.server"
#define CONN_MT "uvws.conn"
#define TLS_MT "uvws.tls"

/* Event numbers passed to the dispatcher. */
enum {
  EV_REQUEST = 1, /* conn, head, body, upgrade, server */
  EV_MESSAGE = 2, /* unused: messages are delivered by on_message */
  EV_PONG = 3,    /* obj, data */
  EV_CLOSED = 4,  /* obj, code, reason */
  EV_TIMER = 5,   /* */
  EV_DRAIN = 6,   /* obj */
  EV_RESPONSE = 7, /* obj, status, headers, error name or nil, protocol */
  EV_SIGNAL = 8,   /* signum */
  EV_ACCEPT_ERROR = 9 /* server obj, error name, message, limit or nil */
};

#define MAX_SIGNALS 8

typedef struct l_ctx {
  io_loop_t *loop;
  lua_State *L;     /* the thread events run on: the one in run/step, else
                       the main thread (a host driving the loop itself) */
  lua_State *main;
  int dispatch_ref;
  int finish_ref;    /* fn(co, ok, err): a coroutine resumed from C ended */
  int evt_error_ref; /* fn(obj, {err, trace}): an event handler failed */
  int ready_ref;     /* registry slot anchoring the ready thread */
  lua_State *ready;  /* a thread parked for the next event handler call */
  lua_State *ready_anchored; /* the thread ready_ref holds */
  lua_State *starting; /* the thread evt_start is resuming */
  lua_State *idle;   /* set by a thread that parked itself */
  int kind_ref[2];   /* the strings "text" and "binary" */
  const void *kind_ptr[2]; /* the same strings, for comparing by address
                              (short strings are unique, and these are
                              anchored by kind_ref) */
  int pool_n;
  int msgh;          /* stack index of the traceback handler on L during
                        run/step, or 0 */
  int running;
  int malloc_tuned;  /* run() tuned glibc's malloc (once) */
  uv_timer_t trim;   /* follows the Lua heap with glibc's trim threshold */
  int trim_init;
  size_t trim_set;   /* the threshold last set, bytes */
  uv_timer_t budget; /* bounds the wait of step(budget) */
  int budget_init;
  uv_signal_t sig[MAX_SIGNALS];
  int sig_num[MAX_SIGNALS];
  int nsig;
  /* Messages of the read being parsed, held for the thread of pend_box
   * (its coroutine waiting in receive, or its event-style handler; see
   * "Two resumes per read"): records of a pend_hdr_t and the bytes,
   * pend_pos..pend_len not yet taken. */
  struct l_conn *pend_box;
  struct l_conn *read_box; /* the first message of the read went to its
                              thread directly (compared, never read) */
  char *pend;
  size_t pend_len, pend_pos, pend_cap;
  /* The websocket table send() remembers, and its box (see send_conn):
   * set only for an open connection whose bound object it is, cleared
   * when that connection closes or its bound object changes
   * (send_forget), so the table is alive while it is here. */
  const void *send_tab;
  struct l_conn *send_box;
  struct l_conn *send_seen; /* the box send() resolved last (compared,
                               never read) */
} l_ctx_t;

typedef struct l_server {
  io_server_t *s;
  int ref; /* registry reference to the bound Lua object */
} l_server_t;

typedef struct l_tls {
  io_tls_ctx_t *ctx;
} l_tls_t;

/* User values of a connection's userdata. */
enum {
  UV_OBJ = 1,    /* the Lua object bound to it (websocket, stream, response) */
  UV_QUEUE = 2,  /* messages not yet received: data, kind pairs (lazy) */
  UV_WAITER = 3, /* the last coroutine that waited in receive: keeps
                    `waiter` alive */
  UV_EVT = 4,    /* the event-style message handler, or nil */
  NUV = 4
};

#define CONN_MAGIC 0x75767773u /* "uvws": ws_conn's cheap identity check */

/* Every idle connection has one: 64 bytes, packed (the userdata is 168
 * with its header and user values). */
typedef struct l_conn {
  uint32_t magic;
  int ref;            /* registry reference to this userdata while open */
  io_conn_t *c;
  lua_State *waiter;  /* the coroutine waiting in receive, or NULL */
  lua_State *anchored; /* the thread UV_WAITER holds (it stays there after
                          the wait, so a loop of receives sets it once) */
  lua_Integer qh, qt; /* queue: pairs at qh..qt (qh = 1, qt = 0: empty) */
  size_t hwm;         /* send high-water mark, 0 for none */
  int32_t max_queue;  /* pause reading at this many messages (0: never) */
  unsigned raw : 1;    /* a TCP stream: messages have no kind */
  unsigned evt : 1;    /* UV_EVT holds an on_message handler */
  unsigned busy : 1;   /* an event handler runs (later messages queue) */
  unsigned paused : 1; /* reading paused: the queue is full */
  unsigned bp : 1;     /* the send queue reached the high-water mark */
  unsigned closed : 1; /* on_closed has begun */
} l_conn_t;

static l_ctx_t *get_ctx(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, CTX_KEY);
  l_ctx_t *ctx = lua_touserdata(L, -1);
  lua_pop(L, 1);
  return ctx;
}

static int fail(lua_State *L, const char *msg, const char *name) {
  luaL_pushfail(L);
  lua_pushstring(L, msg);
  lua_pushstring(L, name);
  return 3;
}

static int uv_fail(lua_State *L, int err) {
  luaL_pushfail(L);
  lua_pushfstring(L, "%s: %s", uv_err_name(err), uv_strerror(err));
  lua_pushstring(L, uv_err_name(err));
  return 3;
}

/* ---- events into Lua ------------------------------------------------------ */

/* Pushes the dispatcher; returns the state to call it on, or NULL when no
 * Lua code may run (no dispatcher, or the state is closing). */
static lua_State *begin_event(io_loop_t *loop) {
  l_ctx_t *ctx = loop->data;
  lua_State *L = ctx->L;
  if (!L || ctx->dispatch_ref == LUA_NOREF) return NULL;
  lua_rawgeti(L, LUA_REGISTRYINDEX, ctx->dispatch_ref);
  return L;
}

static int msgh(lua_State *L) {
  luaL_traceback(L, L, lua_tostring(L, 1), 1);
  return 1;
}

static void end_event(l_ctx_t *ctx, lua_State *L, int nargs) {
  int r;
  if (ctx->msgh && L == ctx->L) {
    /* run/step left the handler on the stack: no insert/remove per
     * event. */
    r = lua_pcall(L, nargs, 0, ctx->msgh);
  } else {
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, msgh);
    lua_insert(L, base);
    r = lua_pcall(L, nargs, 0, base);
    lua_remove(L, base);
  }
  if (r != LUA_OK) {
    /* The dispatcher reports hook errors itself; this is a bug in it. */
    const char *msg = lua_tostring(L, -1);
    fprintf(stderr, "uvws: internal error in dispatcher: %s\n",
            msg ? msg : "(error object is not a string)");
    lua_pop(L, 1);
  }
}

static void push_headers(lua_State *L, const ws_header_t *h, size_t n);
static l_conn_t *new_conn_box(lua_State *L);

/* Called when box's bound object (UV_OBJ) changes or the connection ends:
 * send() must not remember that object any longer (send_conn). */
static void send_forget(l_ctx_t *ctx, struct l_conn *box) {
  if (ctx->send_box == box) ctx->send_tab = NULL, ctx->send_box = NULL;
}

/* Pushes the Lua object bound to a connection (or its userdata). */
static void push_conn_obj(lua_State *L, l_conn_t *box) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, box->ref);
  if (lua_getiuservalue(L, -1, 1) == LUA_TNIL) {
    lua_pop(L, 1);
  } else {
    lua_remove(L, -2);
  }
}

static void on_request(io_conn_t *c, const io_request_t *r) {
  l_server_t *sbox = c->server->data;
  lua_State *L;
  if (!sbox || sbox->ref == LUA_NOREF || !(L = begin_event(c->loop))) {
    io_conn_abort(c, 1011, "no Lua server");
    return;
  }
  l_conn_t *box = c->data;
  if (box) {
    /* Another request on a kept-alive connection: the same userdata,
     * unbound from the previous request's response object. */
    send_forget(c->loop->data, box);
    lua_rawgeti(L, LUA_REGISTRYINDEX, box->ref);
    lua_pushnil(L);
    lua_setiuservalue(L, -2, 1);
  } else {
    box = new_conn_box(L);
    lua_pushvalue(L, -1);
    box->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    box->c = c;
    c->data = box;
  }
  lua_pushinteger(L, EV_REQUEST);
  lua_insert(L, -2);
  /* The head goes up as one string, parsed again (parse_head) only if
   * Lua looks at the headers: one allocation instead of a table and two
   * strings per header, and what a websocket keeps of its request. */
  lua_pushlstring(L, (const char *)r->head, r->head_len);
  if (r->body) lua_pushlstring(L, (const char *)r->body, r->body_len);
  else lua_pushnil(L);
  lua_pushboolean(L, r->hs.is_upgrade);
  lua_rawgeti(L, LUA_REGISTRYINDEX, sbox->ref);
  end_event((l_ctx_t *)c->loop->data, L, 6);
}

/* head_header(head, name [, first]): the value of header `name` (any
 * case) in a head on_request handed up: the first one with `first`, else
 * every one joined with ", " ("; " for Cookie, RFC 6265 §5.4); nil when
 * absent.  A lookup without building the header tables. */
static int l_head_header(lua_State *L) {
  size_t len;
  const char *head = luaL_checklstring(L, 1, &len);
  const char *name = luaL_checkstring(L, 2);
  int first = lua_toboolean(L, 3);
  const char *sep = ws_slice_ieq((ws_slice_t){name, strlen(name)}, "cookie")
                        ? "; " : ", ";
  size_t pos = 0;
  ws_header_t h;
  int found = 0;
  luaL_Buffer b;
  while (ws_http_next_header(head, len, &pos, &h)) {
    if (!ws_slice_ieq(h.name, name)) continue;
    if (first) {
      lua_pushlstring(L, h.value.p, h.value.n);
      return 1;
    }
    if (!found) luaL_buffinit(L, &b);
    else luaL_addstring(&b, sep);
    luaL_addlstring(&b, h.value.p, h.value.n);
    found = 1;
  }
  if (!found) {
    lua_pushnil(L);
    return 1;
  }
  luaL_pushresult(&b);
  return 1;
}

/* parse_head(head) -> method, target, minor, {name, value, ...}: parses a
 * request head on_request handed up (or nil, message on a malformed
 * one). */
static int l_parse_head(lua_State *L) {
  size_t len;
  const char *head = luaL_checklstring(L, 1, &len);
  size_t max = 1; /* at most one header per line */
  for (size_t i = 0; i < len; i++) max += head[i] == '\n';
  ws_header_t *h = lua_newuserdatauv(L, max * sizeof *h, 0);
  ws_http_request_t req;
  int r = ws_http_parse_request(head, len, len, &req, h, max);
  if (r < 0) {
    luaL_pushfail(L);
    lua_pushstring(L, ws_http_strerror(r));
    return 2;
  }
  lua_pushlstring(L, req.method.p, req.method.n);
  lua_pushlstring(L, req.target.p, req.target.n);
  lua_pushinteger(L, req.minor_version);
  push_headers(L, req.headers, req.num_headers);
  return 4;
}

/* ---- messages: the per-connection queue, receive and event handlers ----- */

/* Creates the userdata of a connection (pushed). */
static l_conn_t *new_conn_box(lua_State *L) {
  l_conn_t *box = lua_newuserdatauv(L, sizeof *box, NUV);
  memset(box, 0, sizeof *box);
  box->magic = CONN_MAGIC;
  box->ref = LUA_NOREF;
  box->qh = 1;
  luaL_setmetatable(L, CONN_MT);
  return box;
}

static void set_paused(l_conn_t *box, int paused) {
  box->paused = paused != 0;
  if (box->c) io_conn_pause(box->c, paused);
}

/* Appends the data, kind pair on top of L to the queue of the connection
 * whose userdata is at `ud` (pops them); pauses reading when full. */
static void queue_push(lua_State *L, l_conn_t *box, int ud) {
  if (lua_getiuservalue(L, ud, UV_QUEUE) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_createtable(L, 8, 0);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, ud, UV_QUEUE);
  }
  lua_insert(L, -3);
  lua_rawseti(L, -3, box->qt + 2);
  lua_rawseti(L, -2, box->qt + 1);
  lua_pop(L, 1);
  box->qt += 2;
  if (box->max_queue > 0 && !box->paused &&
      (box->qt - box->qh + 1) / 2 >= box->max_queue)
    set_paused(box, 1);
}

/* Pushes the oldest queued data, kind pair (the queue is not empty). */
static void queue_pop(lua_State *L, l_conn_t *box, int ud) {
  lua_getiuservalue(L, ud, UV_QUEUE);
  lua_rawgeti(L, -1, box->qh);
  lua_rawgeti(L, -2, box->qh + 1);
  lua_pushnil(L);
  lua_rawseti(L, -4, box->qh);
  lua_pushnil(L);
  lua_rawseti(L, -4, box->qh + 1);
  lua_remove(L, -3);
  box->qh += 2;
  if (box->qh > box->qt) box->qh = 1, box->qt = 0;
  /* Reading resumes below half the limit. */
  if (box->paused && box->qt - box->qh + 1 < box->max_queue)
    set_paused(box, 0);
}

static void push_kind(l_ctx_t *ctx, lua_State *L, const l_conn_t *box,
                      int opcode) {
  if (box->raw) lua_pushnil(L);
  else lua_rawgeti(L, LUA_REGISTRYINDEX, ctx->kind_ref[opcode == WS_OP_BINARY]);
}

/* Reports an error that ended coroutine `co` (its message on top of co)
 * when no Lua hook takes it. */
static void report_co_error(lua_State *L, lua_State *co) {
  const char *msg = luaL_tolstring(co, -1, NULL);
  luaL_traceback(L, co, msg, 0);
  lua_pop(co, 2);
  fprintf(stderr, "uvws: error in a coroutine: %s\n", lua_tostring(L, -1));
  lua_pop(L, 1);
}

/* A coroutine resumed from C ended (st: LUA_OK, or an error with its
 * message on top of co): the Lua hook (set_dispatch's `finished`) gets
 * co, ok, err.  It reports errors and finishes a connection whose handler
 * this was. */
static void co_finished(l_ctx_t *ctx, lua_State *L, lua_State *co, int st) {
  if (ctx->finish_ref == LUA_NOREF || !lua_checkstack(co, 2) ||
      !lua_checkstack(L, 4)) {
    if (st != LUA_OK) report_co_error(L, co);
    return;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, ctx->finish_ref);
  lua_pushthread(co);
  lua_xmove(co, L, 1);
  lua_pushboolean(L, st == LUA_OK);
  if (st != LUA_OK) {
    lua_pushvalue(co, -1);
    lua_xmove(co, L, 1);
  } else {
    lua_pushnil(L);
  }
  if (lua_pcall(L, 3, 0, 0) != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    fprintf(stderr, "uvws: internal error in the coroutine hook: %s\n",
            msg ? msg : "(error object is not a string)");
    lua_pop(L, 1);
  }
}

/* Resumes `co` with the nargs values on its stack; an end goes to
 * co_finished. */
static void resume_co(l_ctx_t *ctx, lua_State *L, lua_State *co, int nargs) {
  int nres = 0;
  int st = lua_resume(co, L, nargs, &nres);
  if (st == LUA_YIELD) {
    if (nres) lua_pop(co, nres);
  }
  else co_finished(ctx, L, co, st);
}

/* Hands the values on top of L (n of them) to the coroutine waiting in
 * receive on the connection at `ud`; returns 0 (popping them) if none
 * waits. */
static int wake_waiter(l_ctx_t *ctx, lua_State *L, l_conn_t *box, int n) {
  lua_State *co = box->waiter;
  if (co && lua_status(co) != LUA_YIELD) co = box->waiter = NULL;
  if (!co) {
    lua_pop(L, n);
    return 0;
  }
  box->waiter = NULL; /* UV_WAITER still keeps co alive while it runs */
  lua_xmove(L, co, n);
  resume_co(ctx, L, co, n);
  return 1;
}

/* Two resumes per read.  The first message of a read goes to the
 * coroutine waiting in receive (or each()), or to the idle event-style
 * handler, at once, as it comes: a read of one message (depth 1, the
 * common case) costs nothing more.  The next ones of the same read are
 * copied into the loop's pending buffer instead of resuming a thread once
 * per message.  When the read is parsed (on_input_done), or before the
 * parser acts on a control frame or fails the connection (WS_EV_MARK: so
 * that replies keep the order of the input), the thread is resumed once,
 * with the first held message; the coroutine's next receives, or the
 * handler's next calls (evt_after), take the others from the buffer
 * without yielding.  What is left there (the thread went to wait on
 * something else) goes to the connection's queue, in order.  At depth 16
 * that saves 14 resumes and yields (each a setjmp and a longjmp) of every
 * 16 messages.  Only messages up to PEND_MAX bytes are copied; a longer
 * one, or one for another connection, is delivered as before. */
#define PEND_MAX 1024

typedef struct pend_hdr {
  uint32_t opcode, len;
} pend_hdr_t;

static int pend_append(l_ctx_t *ctx, int opcode, const uint8_t *data,
                       size_t len) {
  size_t need = ctx->pend_len + sizeof(pend_hdr_t) + len;
  if (need > ctx->pend_cap) {
    size_t cap = ctx->pend_cap ? ctx->pend_cap : 4096;
    while (cap < need) cap *= 2;
    char *p = realloc(ctx->pend, cap);
    if (!p) return -1;
    ctx->pend = p;
    ctx->pend_cap = cap;
  }
  pend_hdr_t h = {(uint32_t)opcode, (uint32_t)len};
  memcpy(ctx->pend + ctx->pend_len, &h, sizeof h);
  if (len) memcpy(ctx->pend + ctx->pend_len + sizeof h, data, len);
  ctx->pend_len = need;
  return 0;
}

/* Pushes the next pending message: data, kind. */
static void pend_pop(l_ctx_t *ctx, lua_State *L, const l_conn_t *box) {
  pend_hdr_t h;
  memcpy(&h, ctx->pend + ctx->pend_pos, sizeof h);
  lua_pushlstring(L, ctx->pend + ctx->pend_pos + sizeof h, h.len);
  push_kind(ctx, L, box, (int)h.opcode);
  ctx->pend_pos += sizeof h + h.len;
}

/* The loop's context when messages of the read being parsed are held for
 * box, else NULL. */
static l_ctx_t *held_for(const l_conn_t *box) {
  if (!box->c) return NULL;
  l_ctx_t *ctx = box->c->loop->data;
  return ctx->pend_box == box && ctx->pend_pos < ctx->pend_len ? ctx : NULL;
}

/* Pushes the next message of box (data, kind) for receive, each() or the
 * event handler: one held from the read being parsed, else the oldest
 * queued (its userdata at `ud`).  Returns 0, pushing nothing, when there
 * is none. */
static int next_message(lua_State *L, l_conn_t *box, int ud) {
  l_ctx_t *ctx = held_for(box);
  if (ctx) {
    pend_pop(ctx, L, box);
    return 1;
  }
  if (box->qh > box->qt) return 0;
  queue_pop(L, box, ud);
  return 1;
}

/* Whether next_message would find one. */
static int has_message(const l_conn_t *box) {
  return held_for(box) || box->qh <= box->qt;
}

/* Event handlers run on threads whose body is evt_body (upvalue: the
 * ctx): stack 1 userdata, 2 handler, 3 obj, 4 a, 5 b, 6 mode (EVT_*), 7
 * message handler.  For a message (or on_open) the messages queued while
 * it ran follow, in order, then the connection is no longer busy.  Then
 * the thread parks itself (yields at evt_idle, stack emptied) as the
 * loop's ready thread, and the next event resumes it with a new 1..6: one
 * resume per message, no thread created.  A handler that waits keeps its
 * thread; the next event gets a new one, and the waiting one becomes
 * ready (or ends) when its handler returns. */
enum {
  EVT_MESSAGE = 0, /* a message handler call: more messages may follow */
  EVT_OTHER = 1,   /* another event (on_close...): nothing follows */
  EVT_OPEN = 2     /* on_open: the messages queued meanwhile follow, to
                      the message handler (UV_EVT) */
};

static int evt_msgh(lua_State *L) {
  lua_createtable(L, 0, 2);
  lua_pushvalue(L, 1);
  lua_setfield(L, -2, "err");
  luaL_traceback(L, L, luaL_tolstring(L, 1, NULL), 1);
  lua_setfield(L, -3, "trace");
  lua_pop(L, 1);
  return 1;
}

#define EVT_CTX(L) ((l_ctx_t *)lua_touserdata(L, lua_upvalueindex(1)))

/* After one handler call: reports its error, then pushes the next call
 * (handler, obj, data, kind) with the next held or queued message; returns
 * 0, pushing nothing, when there is none. */
static int evt_after(lua_State *L, int st) {
  if (st != LUA_OK && st != LUA_YIELD) {
    l_ctx_t *ctx = EVT_CTX(L);
    if (ctx->evt_error_ref != LUA_NOREF) {
      lua_rawgeti(L, LUA_REGISTRYINDEX, ctx->evt_error_ref);
      lua_pushvalue(L, 3);
      lua_pushvalue(L, -3);
      if (lua_pcall(L, 2, 0, 0) != LUA_OK) lua_pop(L, 1);
    }
    lua_settop(L, 7);
  }
  l_conn_t *box = lua_touserdata(L, 1);
  lua_Integer mode = lua_tointeger(L, 6);
  if (mode == EVT_OTHER) return 0;
  if (!box->evt || !has_message(box)) {
    box->busy = 0;
    return 0;
  }
  if (mode == EVT_OPEN) { /* from now on, the message handler */
    lua_getiuservalue(L, 1, UV_EVT);
    lua_replace(L, 2);
    lua_pushinteger(L, EVT_MESSAGE);
    lua_replace(L, 6);
  }
  lua_pushvalue(L, 2);
  lua_pushvalue(L, 3);
  next_message(L, box, 1);
  return 1;
}

static int evt_resumed(lua_State *L, int st, lua_KContext k);

/* Parks the thread as the ready one, or ends it. */
static int evt_idle(lua_State *L) {
  l_ctx_t *ctx = EVT_CTX(L);
  if (ctx->starting == L) {
    ctx->idle = L; /* evt_run makes it the ready thread */
  } else if (!ctx->ready) {
    /* Resumed by Lua after a wait: park here, for the next event. */
    ctx->ready = L;
    lua_pushthread(L);
    lua_rawseti(L, LUA_REGISTRYINDEX, ctx->ready_ref);
    ctx->ready_anchored = L;
  } else {
    return 0;
  }
  lua_settop(L, 0);
  return lua_yieldk(L, 0, 0, evt_resumed);
}

/* After a handler call (st): the calls for each message evt_after pushes,
 * then the thread parks.  Also the continuation of a call that waited. */
static int evt_k(lua_State *L, int st, lua_KContext k) {
  (void)k;
  while (evt_after(L, st)) st = lua_pcallk(L, 3, 0, 7, 0, evt_k);
  return evt_idle(L);
}

/* Calls the handler for 4, 5, then goes on as evt_k. */
static int evt_loop(lua_State *L) {
  lua_pushvalue(L, 2);
  lua_pushvalue(L, 3);
  lua_pushvalue(L, 4);
  lua_pushvalue(L, 5);
  return evt_k(L, lua_pcallk(L, 3, 0, 7, 0, evt_k), 0);
}

/* Resumed with a new 1..6. */
static int evt_resumed(lua_State *L, int st, lua_KContext k) {
  (void)st;
  (void)k;
  l_ctx_t *ctx = EVT_CTX(L);
  if (ctx->starting != L || lua_gettop(L) != 6 || !lua_touserdata(L, 1)) {
    if (ctx->ready == L) ctx->ready = NULL; /* it ends here */
    return luaL_error(L, "uvws: a parked event-handler coroutine was "
                         "resumed from outside uvws");
  }
  lua_pushcfunction(L, evt_msgh);
  return evt_loop(L);
}

static int evt_body(lua_State *L) {
  return evt_resumed(L, LUA_OK, 0);
}

/* The thread for the next event handler call: the ready one, or a new one
 * (then *fresh is set and L keeps it alive until evt_run).  The caller
 * pushes userdata, handler, obj, a, b, mode on it and calls evt_run. */
static lua_State *evt_thread(l_ctx_t *ctx, lua_State *L, int *fresh) {
  lua_State *co = ctx->ready;
  if (co && lua_status(co) != LUA_YIELD) co = NULL; /* not parked: ended */
  *fresh = !co;
  if (!co) {
    co = lua_newthread(L);
    lua_pushlightuserdata(co, ctx);
    lua_pushcclosure(co, evt_body, 1);
  }
  ctx->ready = NULL; /* (ready_ref keeps it alive meanwhile) */
  return co;
}

static void evt_run(l_ctx_t *ctx, lua_State *L, lua_State *co, int fresh,
                    l_conn_t *box, int mode) {
  lua_State *prev = ctx->starting;
  ctx->starting = co;
  ctx->idle = NULL;
  int nres = 0;
  int st = lua_resume(co, L, 6, &nres);
  ctx->starting = prev;
  if (st == LUA_YIELD && ctx->idle == co) {
    ctx->idle = NULL;
    if (!ctx->ready) {
      ctx->ready = co;
      if (ctx->ready_anchored != co) {
        lua_pushthread(co);
        lua_xmove(co, L, 1);
        lua_rawseti(L, LUA_REGISTRYINDEX, ctx->ready_ref);
        ctx->ready_anchored = co;
      }
    }
  } else if (st == LUA_YIELD) {
    if (nres) lua_pop(co, nres); /* its handler waits: the wait holds it */
  } else if (st != LUA_OK) {
    /* Not a handler's error (evt_loop catches those): the thread itself
     * failed.  The connection must not stay busy for ever. */
    if (mode != EVT_OTHER) box->busy = 0;
    co_finished(ctx, L, co, st);
  }
  if (fresh) lua_pop(L, 1);
}

/* Runs the event-style handler of box for a message: data, or (NULL) the
 * next pending one.  The handler's thread takes the rest of the pending
 * messages, then the queued ones, one call each (evt_after). */
static inline void evt_message(l_ctx_t *ctx, lua_State *L, l_conn_t *box,
                               int opcode, const uint8_t *data, size_t len) {
  box->busy = 1;
  int fresh;
  lua_State *co = evt_thread(ctx, L, &fresh);
  lua_rawgeti(co, LUA_REGISTRYINDEX, box->ref);
  lua_getiuservalue(co, -1, UV_EVT);
  if (lua_getiuservalue(co, -2, UV_OBJ) == LUA_TTABLE && box->c) {
    /* The handler most likely answers on this websocket: send() finds
     * it remembered (send_conn; it is the open connection's bound
     * table), even when it sends once per call. */
    ctx->send_tab = lua_topointer(co, -1);
    ctx->send_box = box;
  }
  if (data) {
    lua_pushlstring(co, (const char *)data, len);
    push_kind(ctx, co, box, opcode);
  } else {
    pend_pop(ctx, co, box);
  }
  lua_pushinteger(co, EVT_MESSAGE);
  evt_run(ctx, L, co, fresh, box, EVT_MESSAGE);
}

/* The read is parsed: runs the coroutine waiting in receive, or the
 * event-style handler, with the pending messages, then queues what they
 * left. */
static void pend_deliver(l_ctx_t *ctx, lua_State *L) {
  l_conn_t *box = ctx->pend_box;
  if (!box) return;
  lua_State *co = box->waiter;
  if (box->evt) {
    if (!box->busy && box->qh > box->qt) evt_message(ctx, L, box, 0, NULL, 0);
  } else if (co && lua_status(co) == LUA_YIELD && box->qh > box->qt) {
    box->waiter = NULL;
    pend_pop(ctx, co, box);
    resume_co(ctx, L, co, 2);
  }
  if (ctx->pend_pos < ctx->pend_len && box->ref != LUA_NOREF) {
    int top = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, box->ref);
    while (ctx->pend_pos < ctx->pend_len) {
      pend_pop(ctx, L, box);
      queue_push(L, box, top + 1);
    }
    lua_settop(L, top);
  }
  ctx->pend_box = NULL;
  ctx->pend_len = ctx->pend_pos = 0;
  if (ctx->pend_cap > 65536) { /* a read of many small messages */
    free(ctx->pend);
    ctx->pend = NULL;
    ctx->pend_cap = 0;
  }
}

static void on_input_done(io_conn_t *c) {
  l_ctx_t *ctx = c->loop->data;
  ctx->read_box = NULL;
  if (ctx->pend_box && ctx->L) pend_deliver(ctx, ctx->L);
}

static void on_message(io_conn_t *c, int opcode, const uint8_t *data,
                       size_t len) {
  l_conn_t *box = c->data;
  l_ctx_t *ctx = c->loop->data;
  lua_State *L = ctx->L;
  if (!box || !L || ctx->dispatch_ref == LUA_NOREF) return;
  if (ctx->pend_box == box) {
    /* More of the same read: after the others. */
    if (pend_append(ctx, opcode, data, len) == 0) return;
    pend_deliver(ctx, L); /* out of memory: hand over what is there */
  }
  if (box->waiter && lua_status(box->waiter) != LUA_YIELD)
    box->waiter = NULL; /* closed (coroutine.close) while it waited */
  if (ctx->read_box == box && !ctx->pend_box && !box->raw &&
      len <= PEND_MAX && box->qh > box->qt &&
      (box->evt ? !box->busy : box->waiter != NULL)) {
    /* A second message in the read: it, and the rest of the read's, go
     * to the waiting coroutine or the event-style handler when the read
     * is parsed. */
    ctx->pend_box = box;
    if (pend_append(ctx, opcode, data, len) == 0) return;
    ctx->pend_box = NULL;
  }
  if (box->waiter && box->qh > box->qt && (!box->evt || box->busy)) {
    /* Straight to the coroutine waiting in receive: the first message of
     * a read (or one after held ones were handed over). */
    lua_State *co = box->waiter;
    box->waiter = NULL;
    ctx->read_box = box;
    lua_pushlstring(co, (const char *)data, len);
    push_kind(ctx, co, box, opcode);
    resume_co(ctx, L, co, 2);
    return;
  }
  if (box->evt && !box->busy) {
    ctx->read_box = box;
    evt_message(ctx, L, box, opcode, data, len);
    return;
  }
  int top = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, box->ref);
  int ud = top + 1;
  lua_pushlstring(L, (const char *)data, len);
  push_kind(ctx, L, box, opcode);
  queue_push(L, box, ud);
  lua_settop(L, top);
}

static void on_pong(io_conn_t *c, const uint8_t *data, size_t len) {
  l_conn_t *box = c->data;
  lua_State *L;
  if (!box || !(L = begin_event(c->loop))) return;
  lua_pushinteger(L, EV_PONG);
  push_conn_obj(L, box);
  lua_pushlstring(L, (const char *)data, len);
  end_event((l_ctx_t *)c->loop->data, L, 3);
}

static void on_drain(io_conn_t *c) {
  l_conn_t *box = c->data;
  lua_State *L;
  if (!box || !(L = begin_event(c->loop))) return;
  lua_pushinteger(L, EV_DRAIN);
  push_conn_obj(L, box);
  end_event((l_ctx_t *)c->loop->data, L, 2);
}

static void on_closed(io_conn_t *c, int code, const char *reason,
                      size_t reason_len) {
  l_conn_t *box = c->data;
  if (!box) return;
  l_ctx_t *ctx = c->loop->data;
  if (ctx->pend_box == box && ctx->L) pend_deliver(ctx, ctx->L);
  box->closed = 1; /* receive answers "closed" from now on */
  send_forget(ctx, box);
  lua_State *L = begin_event(c->loop);
  if (L) {
    lua_pushinteger(L, EV_CLOSED);
    push_conn_obj(L, box);
    lua_pushinteger(L, code);
    lua_pushlstring(L, reason, reason_len);
    const char *errname = io_conn_errname(c);
    if (errname) lua_pushstring(L, errname);
    else lua_pushnil(L);
    end_event((l_ctx_t *)c->loop->data, L, 5);
    L = ctx->L;
  }
  box->c = NULL;
  c->data = NULL;
  if (L && box->ref != LUA_NOREF) {
    /* The userdata has a finalizer, so the collector keeps it, and all it
     * refers to, for one more cycle after it becomes garbage (an old one,
     * in the generational mode, until a major collection).  Let the
     * object (a websocket with its request) go now: nothing reads it from
     * the userdata once the connection is closed. */
    lua_rawgeti(L, LUA_REGISTRYINDEX, box->ref);
    lua_pushnil(L);
    lua_setiuservalue(L, -2, UV_OBJ);
    lua_pop(L, 1);
    luaL_unref(L, LUA_REGISTRYINDEX, box->ref);
  }
  box->ref = LUA_NOREF;
}

static void push_headers(lua_State *L, const ws_header_t *h, size_t n) {
  lua_createtable(L, (int)n * 2, 0);
  for (size_t i = 0; i < n; i++) {
    lua_pushlstring(L, h[i].name.p, h[i].name.n);
    lua_rawseti(L, -2, (lua_Integer)(2 * i + 1));
    lua_pushlstring(L, h[i].value.p, h[i].value.n);
    lua_rawseti(L, -2, (lua_Integer)(2 * i + 2));
  }
}

static void on_response(io_conn_t *c, const ws_http_response_t *res,
                        int result, ws_slice_t protocol) {
  l_conn_t *box = c->data;
  lua_State *L;
  if (!box || !(L = begin_event(c->loop))) return;
  lua_pushinteger(L, EV_RESPONSE);
  push_conn_obj(L, box);
  lua_pushinteger(L, res ? res->status : 0);
  if (res) push_headers(L, res->headers, res->num_headers);
  else lua_newtable(L);
  if (result == WS_HS_OK) lua_pushnil(L);
  else if (result == IO_EPROXY) lua_pushliteral(L, "EPROXY");
  else lua_pushstring(L, ws_handshake_errname(result));
  if (protocol.n) lua_pushlstring(L, protocol.p, protocol.n);
  else lua_pushnil(L);
  const char *detail = io_client_errdetail(c);
  if (detail) lua_pushstring(L, detail);
  else lua_pushnil(L);
  end_event((l_ctx_t *)c->loop->data, L, 7);
}

static void on_timer(io_loop_t *loop) {
  lua_State *L = begin_event(loop);
  if (!L) return;
  lua_pushinteger(L, EV_TIMER);
  end_event((l_ctx_t *)loop->data, L, 1);
}

static void on_accept_error(io_server_t *s, int err, uint64_t nofile) {
  l_server_t *sbox = s->data;
  lua_State *L;
  if (!sbox || sbox->ref == LUA_NOREF || !(L = begin_event(s->loop))) return;
  lua_pushinteger(L, EV_ACCEPT_ERROR);
  lua_rawgeti(L, LUA_REGISTRYINDEX, sbox->ref);
  lua_pushstring(L, uv_err_name(err));
  lua_pushstring(L, uv_strerror(err));
  if (nofile) lua_pushinteger(L, (lua_Integer)nofile);
  else lua_pushnil(L);
  end_event((l_ctx_t *)s->loop->data, L, 5);
}

/* ---- module functions ------------------------------------------------------ */

/* set_dispatch(dispatch, finished, event_error): the event dispatcher;
 * the hook called when a coroutine resumed from C ends (gets the
 * coroutine, true or false, and the error value); the handler of
 * event-handler errors (gets the object and {err, trace}). */
static int l_set_dispatch(lua_State *L) {
  l_ctx_t *ctx = get_ctx(L);
  luaL_checktype(L, 1, LUA_TFUNCTION);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  luaL_checktype(L, 3, LUA_TFUNCTION);
  lua_settop(L, 3);
  int *refs[3] = {&ctx->dispatch_ref, &ctx->finish_ref, &ctx->evt_error_ref};
  for (int i = 2; i >= 0; i--) {
    if (*refs[i] != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, *refs[i]);
    *refs[i] = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  return 0;
}

static void on_budget(uv_timer_t *t) { (void)t; }

/* Runs the loop in `mode`.  With budget_ms > 0 (UV_RUN_ONCE), a timer
 * bounds how long the turn may wait for events. */
/* One run of the loop in `mode`, flushing output before and after.  With
 * budget_ms > 0 a timer (referenced while it runs, so the turn waits even
 * with nothing else active) bounds how long a UV_RUN_ONCE turn may wait.
 * The caller has set ctx->running. */
static int run_turns(l_ctx_t *ctx, uv_run_mode mode, int64_t budget_ms) {
  io_loop_flush(ctx->loop);
  if (budget_ms > 0) {
    if (!ctx->budget_init) {
      uv_timer_init(ctx->loop->uv, &ctx->budget);
      ctx->budget_init = 1;
    }
    uv_timer_start(&ctx->budget, on_budget, (uint64_t)budget_ms, 0);
  }
  int alive = uv_run(ctx->loop->uv, mode);
  if (budget_ms > 0) uv_timer_stop(&ctx->budget);
  io_loop_flush(ctx->loop);
  return alive;
}

static int run_loop(lua_State *L, l_ctx_t *ctx, uv_run_mode mode,
                    int64_t budget_ms) {
  if (ctx->running)
    return luaL_error(L, "uvws: the loop is already running "
                         "(run/step called from inside a handler)");
  ctx->running = 1;
  ctx->L = L;
  lua_pushcfunction(L, msgh);
  ctx->msgh = lua_gettop(L);
  int alive = run_turns(ctx, mode, budget_ms);
  ctx->running = 0;
  ctx->L = ctx->main;
  lua_settop(L, ctx->msgh - 1);
  ctx->msgh = 0;
  lua_pushboolean(L, alive);
  return 1;
}

/* uvws.run() owns the process's main loop, so it tunes glibc's malloc
 * for a server: by default glibc gives memory back to the kernel whenever
 * more than 128 KiB is free at the top of the heap, and a Lua heap of
 * large messages (a coroutine holds its last message until the next
 * arrives; the collector frees them in batches) then grows and shrinks
 * all the time: one page fault per 4 KiB, twice per 64 KiB message.
 * Keeping at least 32 MiB, and twice the Lua heap when that is more
 * (on_trim), and serving blocks below 32 MiB from the heap, as glibc's own
 * adaptive threshold ends up doing, stops that.  A user's own
 * setting in the environment wins; hosts that run their own loop (step,
 * uvws_step) are left alone. */
#define TRIM_MIN ((size_t)32 * 1024 * 1024)
#define TRIM_MAX ((size_t)1024 * 1024 * 1024)

/* Every second: the trim threshold follows the Lua heap.  The collector
 * lets garbage grow to about the live size before a cycle frees it in a
 * batch, so a threshold of twice the heap keeps a busy server from giving
 * memory back only to fault it in again (1000 connections echoing 64 KiB
 * to coroutine handlers hold 64 MB of last messages: 4 page faults per
 * message with a fixed 32 MiB), while a heap that shrinks after a burst
 * lowers it again, so the memory is returned. */
static void on_trim(uv_timer_t *t) {
#ifdef __GLIBC__
  l_ctx_t *ctx = t->data;
  lua_State *L = ctx->main;
  size_t heap = (size_t)lua_gc(L, LUA_GCCOUNT, 0) * 1024;
  size_t want = heap * 2;
  if (want < TRIM_MIN) want = TRIM_MIN;
  if (want > TRIM_MAX) want = TRIM_MAX;
  /* Only a change of a quarter or more is worth a mallopt. */
  if (want > ctx->trim_set + ctx->trim_set / 4 ||
      want < ctx->trim_set - ctx->trim_set / 4) {
    mallopt(M_TRIM_THRESHOLD, (int)want);
    ctx->trim_set = want;
  }
#else
  (void)t;
#endif
}

static void tune_malloc(l_ctx_t *ctx) {
#ifdef __GLIBC__
  if (getenv("GLIBC_TUNABLES") || getenv("MALLOC_TRIM_THRESHOLD_") ||
      getenv("MALLOC_MMAP_THRESHOLD_"))
    return;
  mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024);
  mallopt(M_TRIM_THRESHOLD, (int)TRIM_MIN);
  ctx->trim_set = TRIM_MIN;
  if (uv_timer_init(ctx->loop->uv, &ctx->trim) == 0) {
    ctx->trim.data = ctx;
    ctx->trim_init = 1;
    uv_timer_start(&ctx->trim, on_trim, 1000, 1000);
    uv_unref((uv_handle_t *)&ctx->trim);
  }
#else
  (void)ctx;
#endif
}

/* trim_threshold(): glibc's trim threshold as run() last set it, or nil
 * when run() left malloc alone (for tests). */
static int l_trim_threshold(lua_State *L) {
  l_ctx_t *ctx = get_ctx(L);
  if (!ctx->trim_set) return 0;
  lua_pushinteger(L, (lua_Integer)ctx->trim_set);
  return 1;
}

static int l_run(lua_State *L) {
  l_ctx_t *ctx = get_ctx(L);
  if (!ctx->malloc_tuned) {
    ctx->malloc_tuned = 1;
    tune_malloc(ctx);
  }
  return run_loop(L, ctx, UV_RUN_DEFAULT, 0);
}

static int l_run_once(lua_State *L) {
  return run_loop(L, get_ctx(L), UV_RUN_ONCE, 0);
}

/* step([budget_ms]): one turn; without a budget it never blocks, with one
 * it waits for events at most that long. */
static int l_step(lua_State *L) {
  lua_Number b = luaL_optnumber(L, 1, 0);
  int64_t ms = b > 0 ? (int64_t)b : 0;
  return run_loop(L, get_ctx(L), ms > 0 ? UV_RUN_ONCE : UV_RUN_NOWAIT, ms);
}

/* ---- processes: fork, signals, wait (for uvws.workers) --------------------- */

static void on_signal(uv_signal_t *h, int signum) {
  l_ctx_t *ctx = h->data;
  lua_State *L = begin_event(ctx->loop);
  if (!L) return;
  lua_pushinteger(L, EV_SIGNAL);
  lua_pushinteger(L, signum);
  end_event(ctx, L, 2);
}

/* signal(signum [, on]): deliver EV_SIGNAL events for signum (the handle
 * does not keep the loop alive); signal(signum, false) stops that. */
static int l_signal(lua_State *L) {
  l_ctx_t *ctx = get_ctx(L);
  int signum = (int)luaL_checkinteger(L, 1);
  int on = lua_isnoneornil(L, 2) || lua_toboolean(L, 2);
  uv_signal_t *h = NULL;
  int r;
  /* (libuv zeroes a stopped handle's signum: sig_num remembers it) */
  for (int i = 0; i < ctx->nsig; i++)
    if (ctx->sig_num[i] == signum) h = &ctx->sig[i];
  if (!on) {
    /* Stopping gives the signal back to its default action. */
    if (h) uv_signal_stop(h);
    lua_pushboolean(L, 1);
    return 1;
  }
  if (h) {
    if (!uv_is_active((uv_handle_t *)h) &&
        (r = uv_signal_start(h, on_signal, signum)) != 0)
      return uv_fail(L, r);
    lua_pushboolean(L, 1);
    return 1;
  }
  if (ctx->nsig == MAX_SIGNALS) return luaL_error(L, "uvws: too many signals");
  h = &ctx->sig[ctx->nsig];
  uv_signal_init(ctx->loop->uv, h);
  h->data = ctx;
  r = uv_signal_start(h, on_signal, signum);
  if (r) {
    uv_close((uv_handle_t *)h, NULL);
    return uv_fail(L, r);
  }
  uv_unref((uv_handle_t *)h);
  ctx->sig_num[ctx->nsig++] = signum;
  lua_pushboolean(L, 1);
  return 1;
}

/* fork() -> pid in the parent, 0 in the child (whose loop is reinitialised
 * with uv_loop_fork), or nil, message, name. */
static int l_fork(lua_State *L) {
  l_ctx_t *ctx = get_ctx(L);
  if (ctx->running)
    return luaL_error(L, "uvws: fork must be called outside the loop");
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) return uv_fail(L, uv_translate_sys_error(errno));
  if (pid == 0) {
    int r = uv_loop_fork(ctx->loop->uv);
    if (r) return uv_fail(L, r);
  }
  lua_pushinteger(L, pid);
  return 1;
}

/* wait() -> pid, exit code, signal  of a finished child, or nothing. */
static int l_wait(lua_State *L) {
  int status;
  pid_t pid = waitpid(-1, &status, WNOHANG);
  if (pid <= 0) return 0;
  lua_pushinteger(L, pid);
  lua_pushinteger(L, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  lua_pushinteger(L, WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  return 3;
}

static int l_kill(lua_State *L) {
  int r = uv_kill((int)luaL_checkinteger(L, 1), (int)luaL_optinteger(L, 2, SIGTERM));
  if (r) return uv_fail(L, r);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_exit(lua_State *L) {
  fflush(NULL);
  _exit((int)luaL_optinteger(L, 1, 0));
  return 0;
}

/* Stops a running loop; outside the loop it does nothing (uv_stop would
 * make the next run return at once). */
static int l_stop(lua_State *L) {
  l_ctx_t *ctx = get_ctx(L);
  if (ctx->running) uv_stop(ctx->loop->uv);
  return 0;
}

static int l_now(lua_State *L) {
  l_ctx_t *ctx = get_ctx(L);
  uv_update_time(ctx->loop->uv);
  lua_pushinteger(L, (lua_Integer)uv_now(ctx->loop->uv));
  return 1;
}

static int l_hrtime(lua_State *L) {
  lua_pushnumber(L, (lua_Number)uv_hrtime() / 1e9);
  return 1;
}

static int l_timer(lua_State *L) {
  io_loop_timer(get_ctx(L)->loop, (int64_t)luaL_checkinteger(L, 1));
  return 0;
}

static int l_utf8_valid(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  lua_pushboolean(L, ws_utf8_valid((const uint8_t *)s, n));
  return 1;
}

/* frame(data, is_binary [, window_bits]) -> an unmasked frame (server to
 * client).  With window_bits (8..15) the payload is compressed once from
 * a fresh context (permessage-deflate, RSV1), for connections whose
 * compressor keeps no context (see conn:deflate_shared_bits). */
static int l_frame(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  int op = lua_toboolean(L, 2) ? WS_OP_BINARY : WS_OP_TEXT;
  int bits = (int)luaL_optinteger(L, 3, 0);
  int rsv = 0;
  ws_buf_t z = {0};
  /* The Lua buffer is made first, large enough for any deflate output
   * (stored blocks cost 5 bytes per 16 KiB), so that nothing can raise
   * while zlib's output is held in malloc'd memory. */
  size_t room = WS_MAX_HEADER + n + (bits ? n / 8 + n / 64 + 64 : 0);
  luaL_Buffer b;
  char *p = luaL_buffinitsize(L, &b, room);
  if (bits) {
    ws_deflate_config_t cfg;
    ws_deflate_params_t prm = {1, 0, (uint8_t)bits, 15};
    ws_deflate_config_default(&cfg, 1);
    ws_deflate_t *d = ws_deflate_new(&cfg, &prm, 1);
    int r = d ? ws_deflate_compress(d, s, n, &z) : WS_DEFLATE_ENOMEM;
    ws_deflate_free(d);
    if (r != 0 || WS_BUF_SIZE(&z) + WS_MAX_HEADER > room) {
      ws_buf_free(&z);
      return fail(L, "cannot compress the message", "ENOMEM");
    }
    s = (const char *)WS_BUF_PTR(&z);
    n = WS_BUF_SIZE(&z);
    rsv = WS_RSV1;
  }
  uint8_t hdr[WS_MAX_HEADER];
  size_t hl = ws_frame_write_header(hdr, 1, rsv, op, NULL, n);
  memcpy(p, hdr, hl);
  if (n) memcpy(p + hl, s, n);
  ws_buf_free(&z);
  luaL_pushresultsize(&b, hl + n);
  return 1;
}

static int l_getpid(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)uv_os_getpid());
  return 1;
}

static uint64_t opt_ms(lua_State *L, int t, const char *k) {
  lua_getfield(L, t, k);
  lua_Number v = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : 0;
  lua_pop(L, 1);
  return v > 0 ? (uint64_t)(v * 1000 + 0.5) : 0;
}

static size_t opt_size(lua_State *L, int t, const char *k) {
  lua_getfield(L, t, k);
  lua_Integer v = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : 0;
  lua_pop(L, 1);
  return v > 0 ? (size_t)v : 0;
}

static void read_limits(lua_State *L, int t, io_limits_t *lim) {
  lim->ws.max_message_size = opt_size(L, t, "max_message_size");
  lim->ws.max_frame_size = opt_size(L, t, "max_frame_size");
  lim->max_head_size = opt_size(L, t, "max_head_size");
  lim->max_headers = opt_size(L, t, "max_headers");
  lim->max_body_size = opt_size(L, t, "max_body_size");
  lim->handshake_timeout = opt_ms(L, t, "handshake_timeout");
  lim->close_timeout = opt_ms(L, t, "close_timeout");
  lim->idle_timeout = opt_ms(L, t, "idle_timeout");
  lim->ping_interval = opt_ms(L, t, "ping_interval");
  lim->pong_timeout = opt_ms(L, t, "pong_timeout");
  lim->send_high_water = opt_size(L, t, "send_high_water");
  lim->ws.max_inflated_size = opt_size(L, t, "max_inflated_size");
  lim->max_connections = opt_size(L, t, "max_connections");
  if (!lim->max_head_size) lim->max_head_size = WS_HTTP_MAX_HEAD;
  if (!lim->max_headers) lim->max_headers = WS_HTTP_MAX_HEADERS;
}

/* Reads the permessage-deflate option (t.deflate: nil/false = off, true
 * = defaults, or a table of settings) into lim->deflate.  Raises on a bad
 * setting. */
static void read_deflate(lua_State *L, int t, io_limits_t *lim,
                         int is_server) {
  memset(&lim->deflate, 0, sizeof lim->deflate);
  lua_getfield(L, t, "deflate");
  if (!lua_toboolean(L, -1)) {
    lua_pop(L, 1);
    return;
  }
  ws_deflate_config_default(&lim->deflate, is_server);
  if (lua_istable(L, -1)) {
    int d = lua_gettop(L);
    static const char *const names[] = {
        "server_no_context_takeover", "client_no_context_takeover",
        "server_max_window_bits", "client_max_window_bits", "level",
        "mem_level", "threshold", NULL};
    for (int i = 0; names[i]; i++) {
      lua_getfield(L, d, names[i]);
      if (!lua_isnil(L, -1)) {
        lua_Integer v = lua_isboolean(L, -1) ? lua_toboolean(L, -1)
                                             : luaL_checkinteger(L, -1);
        switch (i) {
        case 0: lim->deflate.server_no_context_takeover = v != 0; break;
        case 1: lim->deflate.client_no_context_takeover = v != 0; break;
        case 2: lim->deflate.server_max_window_bits = (uint8_t)v; break;
        case 3: lim->deflate.client_max_window_bits = (uint8_t)v; break;
        case 4: lim->deflate.level = (int8_t)v; break;
        case 5: lim->deflate.mem_level = (uint8_t)v; break;
        default: lim->deflate.threshold = v > 0 ? (size_t)v : 0; break;
        }
      }
      lua_pop(L, 1);
    }
    if (ws_deflate_config_check(&lim->deflate) != 0)
      luaL_error(L, "uvws: invalid deflate settings (window bits 8..15, "
                    "mem_level 1..9, level -1..9)");
  }
  lua_pop(L, 1);
}

static const char *opt_str(lua_State *L, int t, const char *k, size_t *n) {
  lua_getfield(L, t, k);
  const char *s = lua_tolstring(L, -1, n);
  lua_pop(L, 1); /* the string stays referenced by the table */
  return s;
}

/* connect{host, port, host_header, target, protocols, headers, proxy_connect,
 * limits} -> conn */
static int l_connect(lua_State *L) {
  l_ctx_t *ctx = get_ctx(L);
  luaL_checktype(L, 1, LUA_TTABLE);
  io_client_opts_t o;
  io_limits_t lim;
  memset(&o, 0, sizeof o);
  o.host = opt_str(L, 1, "host", NULL);
  o.host_header = opt_str(L, 1, "host_header", NULL);
  o.target = opt_str(L, 1, "target", NULL);
  o.protocols = opt_str(L, 1, "protocols", NULL);
  o.extra = opt_str(L, 1, "headers", &o.extra_len);
  o.proxy_connect = opt_str(L, 1, "proxy_connect", &o.proxy_connect_len);
  lua_getfield(L, 1, "port");
  o.port = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  lua_getfield(L, 1, "raw");
  o.raw = lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (o.raw && !o.host_header) o.host_header = o.host;
  if (o.raw && !o.target) o.target = "/";
  if (!o.host || !o.host_header || !o.target)
    return luaL_error(L, "uvws.core.connect: host, host_header and target "
                         "are required");
  lua_getfield(L, 1, "limits");
  luaL_checktype(L, -1, LUA_TTABLE);
  read_limits(L, lua_gettop(L), &lim);
  read_deflate(L, lua_gettop(L), &lim, 0);
  lua_pop(L, 1);
  o.limits = &lim;
  lua_getfield(L, 1, "tls");
  if (!lua_isnil(L, -1)) o.tls = ((l_tls_t *)luaL_checkudata(L, -1, TLS_MT))->ctx;
  lua_pop(L, 1); /* the options table keeps the context alive */
  o.servername = opt_str(L, 1, "servername", NULL);


  l_conn_t *box = new_conn_box(L);
  int err = 0;
  io_conn_t *c = io_client_connect(ctx->loop, &o, &err);
  if (!c) return uv_fail(L, err);
  lua_pushvalue(L, -1);
  box->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  box->c = c;
  c->data = box;
  return 1;
}

static void tls_opts(lua_State *L, int t, io_tls_opts_t *o) {
  memset(o, 0, sizeof *o);
  o->cert = opt_str(L, t, "cert", NULL);
  o->key = opt_str(L, t, "key", NULL);
  o->ca = opt_str(L, t, "ca", NULL);
  lua_getfield(L, t, "verify_client");
  o->verify_peer = lua_toboolean(L, -1);
  lua_getfield(L, t, "insecure");
  o->insecure = lua_toboolean(L, -1);
  lua_pop(L, 2);
}

/* tls_context(is_server, opts) -> tls | nil, message, "ETLS".  opts: cert,
 * key, ca, verify_client, insecure, sni = {host = {cert=, key=}}. */
static int l_tls_context(lua_State *L) {
  int is_server = lua_toboolean(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  io_tls_opts_t o;
  char err[256];
  tls_opts(L, 2, &o);
  o.is_server = is_server;
  l_tls_t *box = lua_newuserdatauv(L, sizeof *box, 0);
  box->ctx = NULL;
  luaL_setmetatable(L, TLS_MT);
  box->ctx = io_tls_ctx_new(&o, err, sizeof err);
  if (!box->ctx) return fail(L, err, "ETLS");
  lua_getfield(L, 2, "sni");
  if (lua_istable(L, -1)) {
    int t = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, t)) {
      if (lua_type(L, -2) != LUA_TSTRING || !lua_istable(L, -1))
        return luaL_error(L, "uvws: tls.sni maps host names to {cert=, key=}");
      io_tls_opts_t so;
      tls_opts(L, lua_gettop(L), &so);
      so.is_server = 1;
      if (!so.cert || !so.key)
        return luaL_error(L, "uvws: tls.sni entries need cert and key");
      if (io_tls_ctx_add_sni(box->ctx, lua_tostring(L, -2), &so, err,
                             sizeof err) != 0)
        return fail(L, err, "ETLS");
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  return 1;
}

static int l_tls_gc(lua_State *L) {
  l_tls_t *box = luaL_checkudata(L, 1, TLS_MT);
  io_tls_ctx_unref(box->ctx);
  box->ctx = NULL;
  return 0;
}

/* listen(host, port, backlog, limits, want_requests, tls, reuseport)
 * -> server */
static int l_listen(lua_State *L) {
  l_ctx_t *ctx = get_ctx(L);
  const char *host = luaL_checkstring(L, 1);
  int port = (int)luaL_checkinteger(L, 2);
  int backlog = (int)luaL_optinteger(L, 3, 511);
  luaL_checktype(L, 4, LUA_TTABLE);
  io_limits_t lim;
  read_limits(L, 4, &lim);
  read_deflate(L, 4, &lim, 1);
  if (port < 0 || port > 65535) return luaL_argerror(L, 2, "invalid port");

  l_server_t *box = lua_newuserdatauv(L, sizeof *box, 0);
  box->s = NULL;
  box->ref = LUA_NOREF;
  luaL_setmetatable(L, SERVER_MT);
  int err = 0;
  io_tls_ctx_t *tls = NULL;
  if (!lua_isnoneornil(L, 6))
    tls = ((l_tls_t *)luaL_checkudata(L, 6, TLS_MT))->ctx;
  lim.reuseport = lua_toboolean(L, 7);
  io_server_t *s = io_server_listen(ctx->loop, host, port, backlog, &lim,
                                    tls, &err);
  if (!s) return uv_fail(L, err);
  s->want_requests = lua_toboolean(L, 5);
  s->data = box;
  box->s = s;
  return 1;
}

/* ---- server methods ------------------------------------------------------- */

static l_server_t *check_server(lua_State *L) {
  return luaL_checkudata(L, 1, SERVER_MT);
}

static int l_server_port(lua_State *L) {
  l_server_t *box = check_server(L);
  if (!box->s) return fail(L, "server is closed", "closed");
  lua_pushinteger(L, box->s->port);
  return 1;
}

static void server_release(lua_State *L, l_server_t *box, int code) {
  if (box->s) {
    box->s->data = NULL;
    io_server_close(box->s, code);
    box->s = NULL;
  }
  if (box->ref != LUA_NOREF) {
    luaL_unref(L, LUA_REGISTRYINDEX, box->ref);
    box->ref = LUA_NOREF;
  }
}

static int l_server_close(lua_State *L) {
  l_server_t *box = check_server(L);
  server_release(L, box, (int)luaL_optinteger(L, 2, 1001));
  return 0;
}

/* shutdown(code, timeout_seconds) */
static int l_server_shutdown(lua_State *L) {
  l_server_t *box = check_server(L);
  int code = (int)luaL_optinteger(L, 2, 1001);
  lua_Number t = luaL_optnumber(L, 3, 5);
  if (box->s) {
    io_server_t *s = box->s;
    box->s->data = NULL;
    box->s = NULL;
    io_server_shutdown(s, code, (uint64_t)(t * 1000));
  }
  if (box->ref != LUA_NOREF) {
    luaL_unref(L, LUA_REGISTRYINDEX, box->ref);
    box->ref = LUA_NOREF;
  }
  return 0;
}

/* bind(obj): the object passed with each request event.  The server is
 * kept alive through it until close. */
static int l_server_bind(lua_State *L) {
  l_server_t *box = check_server(L);
  luaL_checkany(L, 2);
  lua_settop(L, 2);
  if (box->ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, box->ref);
  box->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 0;
}

/* objects() -> {obj, ...}: the Lua objects bound to this server's open
 * connections (websockets, and the responses of plain requests), in no
 * particular order.  The loop's list of connections is the index, so a
 * server keeps no table of its connections. */
static int l_server_objects(lua_State *L) {
  l_server_t *box = check_server(L);
  lua_newtable(L);
  if (!box->s) return 1;
  lua_Integer n = 0;
  for (io_conn_t *c = box->s->loop->conns; c; c = c->next) {
    l_conn_t *cb = c->data;
    if (c->server != box->s || !cb || cb->ref == LUA_NOREF) continue;
    lua_rawgeti(L, LUA_REGISTRYINDEX, cb->ref);
    if (lua_getiuservalue(L, -1, UV_OBJ) == LUA_TTABLE) {
      lua_rawseti(L, -3, ++n);
      lua_pop(L, 1);
    } else {
      lua_pop(L, 2);
    }
  }
  return 1;
}

static int l_server_count(lua_State *L) {
  l_server_t *box = check_server(L);
  lua_pushinteger(L, box->s ? (lua_Integer)box->s->nconns : 0);
  return 1;
}

/* ---- connection methods --------------------------------------------------- */

/* The methods of "uvws.conn" get its metatable as upvalue 1, so the check
 * is a pointer comparison instead of luaL_checkudata's registry lookup by
 * name (this is on every send). */
static l_conn_t *check_conn(lua_State *L) {
  l_conn_t *box = lua_touserdata(L, 1);
  if (box && lua_getmetatable(L, 1)) {
    int same = lua_rawequal(L, -1, lua_upvalueindex(1));
    lua_pop(L, 1);
    if (same) return box;
  }
  return luaL_checkudata(L, 1, CONN_MT); /* raises the usual error */
}

static int closed_fail(lua_State *L) {
  return fail(L, "connection closed", "closed");
}

/* bind(obj [, hwm, max_queue, raw, on_message]): binds the Lua object
 * events are delivered to; for a websocket or stream also its send
 * high-water mark, queue limit, whether it is a raw stream, and the
 * event-style message handler. */
static int l_conn_bind(lua_State *L) {
  l_conn_t *box = check_conn(L);
  lua_settop(L, 6);
  box->hwm = (size_t)luaL_optinteger(L, 3, 0);
  lua_Integer mq = luaL_optinteger(L, 4, 0);
  box->max_queue = mq > INT32_MAX ? INT32_MAX : mq < 0 ? 0 : (int32_t)mq;
  box->raw = lua_toboolean(L, 5) != 0;
  box->evt = !lua_isnil(L, 6);
  send_forget(get_ctx(L), box);
  lua_setiuservalue(L, 1, UV_EVT);
  lua_pop(L, 3);
  lua_setiuservalue(L, 1, UV_OBJ);
  return 0;
}

/* wake(...): resumes the coroutine waiting in receive with the arguments
 * (none: the connection closed); true if there was one. */
static int l_conn_wake(lua_State *L) {
  l_conn_t *box = check_conn(L);
  int n = lua_gettop(L) - 1;
  lua_pushboolean(L, wake_waiter(get_ctx(L), L, box, n));
  return 1;
}

/* wake_if(co, ...): the same, only if co is the waiting coroutine. */
static int l_conn_wake_if(lua_State *L) {
  l_conn_t *box = check_conn(L);
  if (!box->waiter || lua_tothread(L, 2) != box->waiter) {
    lua_pushboolean(L, 0);
    return 1;
  }
  int n = lua_gettop(L) - 2;
  lua_pushboolean(L, wake_waiter(get_ctx(L), L, box, n));
  return 1;
}

/* run_event(fn, obj, a, b, is_open): runs fn(obj, a, b) on a pooled
 * thread now.  With is_open, messages queue until it returns (and are
 * then handed to the message handler). */
static int l_conn_run_event(lua_State *L) {
  l_conn_t *box = check_conn(L);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  int open = lua_toboolean(L, 6);
  lua_settop(L, 5);
  lua_pushinteger(L, open ? EVT_OPEN : EVT_OTHER);
  if (open) box->busy = 1;
  l_ctx_t *ctx = get_ctx(L);
  int fresh;
  lua_State *co = evt_thread(ctx, L, &fresh);
  if (fresh) lua_insert(L, 1);
  lua_xmove(L, co, 6); /* ud, fn, obj, a, b, mode */
  evt_run(ctx, L, co, fresh, box, open ? EVT_OPEN : EVT_OTHER);
  return 0;
}

/* bp([clear]): whether a send reached the high-water mark; clear(false)
 * resets it. */
static int l_conn_bp(lua_State *L) {
  l_conn_t *box = check_conn(L);
  lua_pushboolean(L, box->bp);
  if (lua_gettop(L) >= 3 && !lua_toboolean(L, 2)) box->bp = 0;
  return 1;
}

/* ---- websocket methods in C: send, receive and the each() iterator ------- */

/* Upvalues of the C websocket methods. */
enum {
  WU_CONN_MT = 1, /* the conn metatable */
  WU_CKEY,        /* "_c": the websocket's field holding its conn */
  WU_SEND_SLOW,   /* fn(ws, data, kind, timeout): the general send */
  WU_CLOSED,      /* fn(ws) -> nil, message, "closed" */
  WU_ARM,         /* fn(conn, co, timeout) -> timer entry */
  WU_CANCEL,      /* fn(entry): cancels a timer */
  WU_CTX,         /* the l_ctx_t (a light userdata) */
  WU_N = WU_CTX
};

/* The conn of the websocket table at index 1 (its userdata is left on top). */
static l_conn_t *ws_lookup(lua_State *L) {
  lua_pushvalue(L, lua_upvalueindex(WU_CKEY));
  lua_rawget(L, 1);
  l_conn_t *box = lua_touserdata(L, -1);
  /* A full userdata of our size with our mark: cheaper than comparing
   * metatables, and as safe (no other userdata can pass by accident). */
  if (box && lua_rawlen(L, -1) == sizeof *box && box->magic == CONN_MAGIC)
    return box;
  luaL_error(L, "uvws: not a websocket");
  return NULL;
}

static l_conn_t *ws_conn(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  return ws_lookup(L);
}

/* The conn of the websocket at index 1 for send(), whose stack above n is
 * free.  A handler often sends several messages in a row on one websocket
 * (at depth 16, sixteen per read), so the table is remembered with its box
 * when it is resolved twice in a row: then a hit costs a pointer
 * comparison instead of the lookup of ws._c (about 120 instructions), and
 * a handler that sends once per wake-up (depth 1) pays that comparison on
 * top of the lookup (the check below runs on a second lookup in a row
 * only); an event-style call sets it to its own websocket beforehand
 * (evt_message).  Only the table bound to an open connection is remembered:
 * the connection's registry reference keeps its userdata, and the
 * userdata keeps the table (UV_OBJ), alive until on_closed (or a new
 * bind), which forgets them; so no other table can take its address while
 * it is here. */
static l_conn_t *send_conn(lua_State *L, l_ctx_t *ctx, int n) {
  luaL_checktype(L, 1, LUA_TTABLE);
  const void *tab = lua_topointer(L, 1);
  if (tab == ctx->send_tab) return ctx->send_box;
  l_conn_t *box = ws_lookup(L); /* its userdata at n + 1 */
  if (box != ctx->send_seen) {
    ctx->send_seen = box; /* only compared */
  } else if (box->c && box->ref != LUA_NOREF &&
             lua_getiuservalue(L, n + 1, UV_OBJ) == LUA_TTABLE &&
             lua_rawequal(L, -1, 1)) {
    ctx->send_tab = tab;
    ctx->send_box = box;
  }
  return box;
}

/* send_remembers(t): whether send_conn has t as the table it remembers
 * (for the specs). */
static int l_send_remembers(lua_State *L) {
  l_ctx_t *ctx = get_ctx(L);
  lua_pushboolean(L, lua_type(L, 1) == LUA_TTABLE &&
                         lua_topointer(L, 1) == ctx->send_tab);
  return 1;
}

/* Makes L the coroutine waiting in receive on box (its userdata on top,
 * popped). */
static void set_waiter(lua_State *L, l_conn_t *box) {
  box->waiter = L;
  if (box->anchored != L) {
    lua_pushthread(L);
    lua_setiuservalue(L, -2, UV_WAITER);
    box->anchored = L;
  }
  lua_pop(L, 1);
}

static int raise_at_caller(lua_State *L, const char *msg) {
  luaL_where(L, 2);
  lua_pushstring(L, msg);
  lua_concat(L, 2);
  return lua_error(L);
}

static int ws_send_k(lua_State *L, int st, lua_KContext k) {
  (void)st;
  return lua_gettop(L) - (int)k;
}

/* send(ws, data [, kind [, timeout | opts]]): the common case in C; the
 * rest (errors, backpressure, options) in Lua's send_slow. */
static int l_ws_send(lua_State *L) {
  int n = lua_gettop(L);
  l_ctx_t *ctx = lua_touserdata(L, lua_upvalueindex(WU_CTX));
  l_conn_t *box = send_conn(L, ctx, n);
  if (box->c && !box->bp && n <= 3 && lua_type(L, 2) == LUA_TSTRING) {
    int op = WS_OP_TEXT;
    if (n == 3) {
      /* The kind: "text" and "binary" are short strings, so each is one
       * object in the Lua state, the one kind_ptr has.  Anything else
       * (but nil) goes the slow way, which checks it. */
      const void *kp = lua_topointer(L, 3);
      if (kp == ctx->kind_ptr[1]) op = WS_OP_BINARY;
      else if (kp != ctx->kind_ptr[0] && !lua_isnil(L, 3)) goto slow;
    }
    size_t len;
    const char *s = lua_tolstring(L, 2, &len);
    if (op == WS_OP_TEXT && !ws_utf8_valid((const uint8_t *)s, len))
      goto slow;
    if (io_conn_send_ex(box->c, op, s, len, 0) != WS_CONN_OK) goto slow;
    if (box->hwm && io_conn_buffered(box->c) >= box->hwm) box->bp = 1;
    lua_pushboolean(L, 1);
    return 1;
  }
slow:
  lua_settop(L, n);
  lua_pushvalue(L, lua_upvalueindex(WU_SEND_SLOW));
  lua_insert(L, 1);
  lua_callk(L, n, LUA_MULTRET, 0, ws_send_k);
  return lua_gettop(L);
}

/* Continuation of receive: stack 1 ws, 2 timeout, [3 timer entry], then
 * what the waker passed (data, kind or nil, message, name). */
/* The continuation context of a receive: the box pointer (aligned) with
 * the stack base in its low bits. */
#define WAIT_CTX(box, base) ((lua_KContext)(intptr_t)(box) | (base))
#define WAIT_BOX(k) ((l_conn_t *)(intptr_t)((k) & ~(lua_KContext)3))
#define WAIT_BASE(k) ((int)((k) & 3))

/* After a wait: normally on_message or wake cleared the waiter; if
 * something else resumed the coroutine, it is not waiting any more. */
static void wait_done(lua_State *L, lua_KContext k) {
  l_conn_t *box = WAIT_BOX(k);
  if (box->waiter == L) box->waiter = NULL;
}

static int ws_receive_k(lua_State *L, int st, lua_KContext k) {
  (void)st;
  wait_done(L, k);
  int base = WAIT_BASE(k);
  if (base == 3) {
    lua_pushvalue(L, lua_upvalueindex(WU_CANCEL));
    lua_pushvalue(L, 3);
    lua_call(L, 1, 0);
  }
  if (lua_gettop(L) == base) {
    /* Woken by the close with no values: the message is made only for a
     * receive that returns it (not for each()). */
    lua_pushvalue(L, lua_upvalueindex(WU_CLOSED));
    lua_pushvalue(L, 1);
    lua_call(L, 1, 3);
  }
  return lua_gettop(L) - base;
}

/* Raises unless L may wait for a message on box. */
static void check_can_wait(lua_State *L, l_conn_t *box) {
  if (box->waiter && box->waiter != L && lua_status(box->waiter) == LUA_YIELD)
    raise_at_caller(L, "uvws: two coroutines are receiving on the same "
                       "connection");
  if (!lua_isyieldable(L)) /* the main thread never is */
    raise_at_caller(L, "uvws: receive must be called inside a coroutine "
                       "(start one with uvws.spawn)");
}

/* receive(ws [, timeout]) -> data, kind | nil, message, name */
static int l_ws_receive(lua_State *L) {
  lua_settop(L, 2);
  l_conn_t *box = ws_conn(L); /* its userdata at 3 */
  if (next_message(L, box, 3)) return 2;
  if (box->closed || !box->c) {
    lua_pushvalue(L, lua_upvalueindex(WU_CLOSED));
    lua_pushvalue(L, 1);
    lua_call(L, 1, 3);
    return 3;
  }
  check_can_wait(L, box);
  int base = 2;
  if (!lua_isnil(L, 2)) {
    lua_Number t = lua_tonumber(L, 2);
    if (lua_type(L, 2) != LUA_TNUMBER || !(t >= 0))
      return raise_at_caller(
          L, "uvws: timeout must be a non-negative number of seconds");
    lua_pushvalue(L, lua_upvalueindex(WU_ARM));
    lua_pushvalue(L, 3);
    lua_pushthread(L);
    lua_pushvalue(L, 2);
    lua_call(L, 3, 1);
    lua_insert(L, 3); /* the entry below the userdata */
    base = 3;
  }
  set_waiter(L, box);
  return lua_yieldk(L, 0, WAIT_CTX(box, base), ws_receive_k);
}

/* The each() iterator: next(ws) -> data, kind, or nil at the end. */
static int ws_next_k(lua_State *L, int st, lua_KContext k) {
  (void)st;
  wait_done(L, k);
  int n = lua_gettop(L) - WAIT_BASE(k);
  if (n == 0 || lua_isnil(L, -n)) return 0;
  return n;
}

/* A message at least this long is released by the each() loop that
 * waits for the next one (release_control). */
#define RELEASE_MIN 4096

/* Called from an each() iterator about to wait: the iterator is the
 * function at `level` (0: the running C function), the `for` loop that
 * calls it is the one above, and the values at indices ival and istate of
 * L are the control value it passed (the previous message) and its state.
 * Lua's generic `for` keeps the control value in a hidden local of the
 * loop until the iterator returns, so a handler waiting for its next
 * message would hold the last one: with big messages, every waiting
 * connection pins one (1000 connections that last got 1 MiB each: 1 GiB),
 * and the collector paces itself on that live set.  The loop overwrites
 * that local with the iterator's first result before anything can read
 * it, so it is set to nil here.  Only a loop whose last active locals are
 * the `for`'s own (named "(for ...)", holding this iterator, state and
 * control) is touched; the cost (a scan of the caller's locals) is paid
 * for long messages only. */
static void release_control(lua_State *L, int level, int ival, int istate) {
  lua_Debug ar;
  if (!lua_checkstack(L, 3) || !lua_getstack(L, level, &ar) ||
      !lua_getinfo(L, "f", &ar))
    return;
  int ifn = lua_gettop(L); /* the iterator */
  int found = 0;
  if (lua_getstack(L, level + 1, &ar)) {
    const char *name;
    for (int n = 1; (name = lua_getlocal(L, &ar, n)) != NULL; n++) {
      if (strncmp(name, "(for ", 5) == 0 && lua_rawequal(L, -1, ival))
        found = n; /* the last one: the innermost loop */
      lua_pop(L, 1);
    }
  }
  if (found >= 3) {
    lua_getlocal(L, &ar, found - 1);
    int ok = lua_rawequal(L, -1, istate);
    lua_getlocal(L, &ar, found - 2);
    ok = ok && lua_rawequal(L, -1, ifn);
    lua_pop(L, 2);
    if (ok) {
      lua_pushnil(L);
      if (!lua_setlocal(L, &ar, found)) lua_pop(L, 1);
    }
  }
  lua_pop(L, 1); /* the iterator */
}

/* release_control(last): for the Lua iterator of each(timeout) (its
 * caller, at level 1), which passes the control value it got; its state
 * is nil. */
static int l_release_control(lua_State *L) {
  lua_settop(L, 1);
  if (lua_type(L, 1) != LUA_TSTRING || lua_rawlen(L, 1) < RELEASE_MIN)
    return 0;
  lua_pushnil(L); /* the state each(timeout) passes */
  release_control(L, 1, 1, 2);
  return 0;
}

static int l_ws_next(lua_State *L) {
  /* The state is the connection's userdata (what each() passes: no
   * lookup of ws._c per message) or the websocket itself.  The control
   * value (the previous message) is kept only when it is long enough to
   * be let go of (release_control). */
  int release = lua_type(L, 2) == LUA_TSTRING &&
                lua_rawlen(L, 2) >= RELEASE_MIN;
  lua_settop(L, 1 + release);
  int ud = 2 + release;
  l_conn_t *box = lua_touserdata(L, 1);
  if (box && lua_rawlen(L, 1) == sizeof *box && box->magic == CONN_MAGIC)
    lua_pushvalue(L, 1); /* its userdata at ud */
  else
    box = ws_conn(L);
  if (next_message(L, box, ud)) return 2;
  if (box->closed || !box->c) return 0;
  check_can_wait(L, box);
  if (release) {
    release_control(L, 0, 2, 1);
    lua_remove(L, 2);
  }
  set_waiter(L, box);
  return lua_yieldk(L, 0, WAIT_CTX(box, 1), ws_next_k);
}

/* ws_methods{send_slow=, closed_error=, arm_timeout=, cancel_timer=}
 * -> {send=, receive=, next=} */
static int l_ws_methods(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  static const char *const keys[] = {"send_slow", "closed_error",
                                     "arm_timeout", "cancel_timer"};
  static const struct { const char *name; lua_CFunction f; } fns[] = {
      {"send", l_ws_send}, {"receive", l_ws_receive}, {"next", l_ws_next}};
  lua_createtable(L, 0, 3);
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    luaL_getmetatable(L, CONN_MT);
    lua_pushliteral(L, "_c");
    for (int j = 0; j < 4; j++) {
      lua_getfield(L, 1, keys[j]);
      luaL_checktype(L, -1, LUA_TFUNCTION);
    }
    lua_pushlightuserdata(L, get_ctx(L));
    lua_pushcclosure(L, fns[i].f, WU_N);
    lua_setfield(L, -2, fns[i].name);
  }
  return 1;
}

static int l_conn_accept(lua_State *L) {
  l_conn_t *box = check_conn(L);
  const char *proto = luaL_optstring(L, 2, NULL);
  size_t elen = 0;
  const char *extra = luaL_optlstring(L, 3, NULL, &elen);
  int use_deflate = lua_isnoneornil(L, 4) ? 1 : lua_toboolean(L, 4);
  if (!box->c) return closed_fail(L);
  if (io_conn_accept(box->c, proto, extra, elen, use_deflate) != 0)
    return fail(L, "connection is not waiting for an upgrade answer",
                "EINVAL");
  lua_pushboolean(L, 1);
  return 1;
}

static int l_conn_write(lua_State *L) {
  l_conn_t *box = check_conn(L);
  size_t n;
  const char *s = luaL_checklstring(L, 2, &n);
  if (!box->c) return closed_fail(L);
  if (io_conn_write(box->c, s, n) != 0) return closed_fail(L);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_conn_http_done(lua_State *L) {
  l_conn_t *box = check_conn(L);
  if (box->c) io_conn_http_done(box->c, lua_toboolean(L, 2));
  return 0;
}

static int l_conn_http_stream(lua_State *L) {
  l_conn_t *box = check_conn(L);
  if (box->c) io_conn_http_stream(box->c);
  return 0;
}

static int send_result(lua_State *L, int r) {
  switch (r) {
  case WS_CONN_OK: lua_pushboolean(L, 1); return 1;
  case WS_CONN_ECLOSED: return closed_fail(L);
  case WS_CONN_EINVAL: return fail(L, "invalid argument", "EINVAL");
  default: return fail(L, "out of memory", "ENOMEM");
  }
}

/* send(data, is_binary [, flags]) -> bytes now queued | nil, msg, name.
 * Text is checked to be UTF-8 ("EUTF8"). */
static int l_conn_send(lua_State *L) {
  l_conn_t *box = check_conn(L);
  size_t n;
  const char *s = luaL_checklstring(L, 2, &n);
  int op = lua_toboolean(L, 3) ? WS_OP_BINARY : WS_OP_TEXT;
  int flags = (int)luaL_optinteger(L, 4, 0);
  if (op == WS_OP_TEXT && !ws_utf8_valid((const uint8_t *)s, n))
    return fail(L, "text message is not valid UTF-8", "EUTF8");
  if (!box->c) return closed_fail(L);
  int r = io_conn_send_ex(box->c, op, s, n, flags);
  if (r != WS_CONN_OK) return send_result(L, r);
  size_t queued = io_conn_buffered(box->c);
  if (box->hwm && queued >= box->hwm) box->bp = 1;
  lua_pushinteger(L, (lua_Integer)queued);
  return 1;
}

/* deflate() -> on, offered, shared_bits (see l_frame) */
static int l_conn_deflate(lua_State *L) {
  l_conn_t *box = check_conn(L);
  lua_pushboolean(L, io_conn_deflate_on(box->c));
  lua_pushboolean(L, io_conn_deflate_offered(box->c));
  lua_pushinteger(L, box->c ? ws_deflate_shared_bits(box->c->ws.deflate) : 0);
  return 3;
}

/* send_raw(frame): queues bytes framed once by core.frame (publish). */
static int l_conn_send_raw(lua_State *L) {
  l_conn_t *box = check_conn(L);
  size_t n;
  const char *s = luaL_checklstring(L, 2, &n);
  if (!box->c) return closed_fail(L);
  if (box->c->phase != IO_WS || box->c->ws.close_sent) return closed_fail(L);
  if (io_conn_write(box->c, s, n) != 0) return fail(L, "out of memory", "ENOMEM");
  lua_pushboolean(L, 1);
  return 1;
}

static int l_conn_ping(lua_State *L) {
  l_conn_t *box = check_conn(L);
  size_t n;
  const char *s = luaL_optlstring(L, 2, "", &n);
  int op = lua_toboolean(L, 3) ? WS_OP_PONG : WS_OP_PING;
  if (!box->c) return closed_fail(L);
  return send_result(L, io_conn_send(box->c, op, s, n));
}

static int l_conn_close(lua_State *L) {
  l_conn_t *box = check_conn(L);
  int code = (int)luaL_optinteger(L, 2, 1000);
  size_t n = 0;
  const char *reason = luaL_optlstring(L, 3, "", &n);
  if (!box->c) return closed_fail(L);
  return send_result(L, io_conn_close(box->c, code, reason, n));
}

static int l_conn_end(lua_State *L) {
  l_conn_t *box = check_conn(L);
  io_conn_end(box->c);
  return 0;
}

static int l_conn_abort(lua_State *L) {
  l_conn_t *box = check_conn(L);
  if (box->c)
    io_conn_abort(box->c, (int)luaL_optinteger(L, 2, 1006),
                  luaL_optstring(L, 3, "aborted"));
  return 0;
}

static int l_conn_want_drain(lua_State *L) {
  l_conn_t *box = check_conn(L);
  io_conn_want_drain(box->c);
  return 0;
}

static int l_conn_pause(lua_State *L) {
  l_conn_t *box = check_conn(L);
  if (box->c) io_conn_pause(box->c, lua_toboolean(L, 2));
  return 0;
}

static int l_conn_buffered(lua_State *L) {
  l_conn_t *box = check_conn(L);
  lua_pushinteger(L, (lua_Integer)io_conn_buffered(box->c));
  return 1;
}

static int l_conn_peer(lua_State *L) {
  l_conn_t *box = check_conn(L);
  char ip[64];
  int port = 0;
  if (!box->c) return closed_fail(L);
  int r = io_conn_peer(box->c, ip, sizeof ip, &port);
  if (r) return uv_fail(L, r);
  lua_pushstring(L, ip);
  lua_pushinteger(L, port);
  return 2;
}

/* client_info() -> {request=, response=, key=, dns=, connect=, handshake=} */
static int l_conn_client_info(lua_State *L) {
  l_conn_t *box = check_conn(L);
  io_client_info_t info;
  if (!box->c || io_client_info(box->c, &info) != 0)
    return fail(L, "not an open client connection", "EINVAL");
  lua_createtable(L, 0, 6);
  lua_pushlstring(L, info.request, info.request_len);
  lua_setfield(L, -2, "request");
  if (info.response) {
    lua_pushlstring(L, info.response, info.response_len);
    lua_setfield(L, -2, "response");
  }
  lua_pushstring(L, info.key);
  lua_setfield(L, -2, "key");
  if (info.dns_s >= 0) {
    lua_pushnumber(L, info.dns_s);
    lua_setfield(L, -2, "dns");
  }
  if (info.connect_s >= 0) {
    lua_pushnumber(L, info.connect_s);
    lua_setfield(L, -2, "connect");
  }
  if (info.handshake_s >= 0) {
    lua_pushnumber(L, info.handshake_s);
    lua_setfield(L, -2, "handshake");
  }
  return 1;
}

static int l_conn_tls_info(lua_State *L) {
  l_conn_t *box = check_conn(L);
  io_tls_info_t info;
  if (!box->c || io_tls_info(box->c, &info) != 0) return 0;
  lua_createtable(L, 0, 7);
  lua_pushstring(L, info.version);
  lua_setfield(L, -2, "version");
  lua_pushstring(L, info.cipher);
  lua_setfield(L, -2, "cipher");
  lua_pushstring(L, info.alpn);
  lua_setfield(L, -2, "alpn");
  lua_pushstring(L, info.subject);
  lua_setfield(L, -2, "subject");
  lua_pushstring(L, info.issuer);
  lua_setfield(L, -2, "issuer");
  lua_pushstring(L, info.not_after);
  lua_setfield(L, -2, "not_after");
  lua_pushboolean(L, info.verified);
  lua_setfield(L, -2, "verified");
  return 1;
}

static int l_conn_is_open(lua_State *L) {
  lua_pushboolean(L, check_conn(L)->c != NULL);
  return 1;
}

/* conn:forget(co): co, a coroutine that has ended, no longer needs the
 * anchor it got when it waited in receive.  Dropping it lets the
 * coroutine (about 1 KB) go with the first collection after the
 * connection's, instead of staying with the userdata, which its finalizer
 * keeps one cycle longer. */
static int l_conn_forget(lua_State *L) {
  l_conn_t *box = check_conn(L);
  lua_State *co = lua_tothread(L, 2);
  luaL_argcheck(L, co != NULL, 2, "coroutine expected");
  lua_Debug ar;
  int dead = lua_status(co) != LUA_YIELD &&
             (lua_status(co) != LUA_OK ||
              (lua_getstack(co, 0, &ar) == 0 && lua_gettop(co) == 0));
  if (dead && box->anchored == co) {
    if (box->waiter == co) box->waiter = NULL;
    box->anchored = NULL;
    lua_pushnil(L);
    lua_setiuservalue(L, 1, UV_WAITER);
  }
  return 0;
}

static int l_conn_gc(lua_State *L) {
  l_conn_t *box = luaL_checkudata(L, 1, CONN_MT);
  if (box->c) {
    box->c->data = NULL;
    io_conn_abort(box->c, 1001, "collected");
    box->c = NULL;
  }
  return 0;
}

static int l_server_gc(lua_State *L) {
  server_release(L, luaL_checkudata(L, 1, SERVER_MT), 1001);
  return 0;
}

static int l_ctx_gc(lua_State *L) {
  l_ctx_t *ctx = lua_touserdata(L, 1);
  if (ctx->loop) {
    ctx->L = NULL;
    /* The handles this context owns must be closed too, or uv_loop_close()
     * fails with UV_EBUSY: libuv's loop memory leaks and the signal
     * handles stay in libuv's global signal tree after this userdata is
     * freed.  io_loop_free's uv_run runs their close callbacks. */
    for (int i = 0; i < ctx->nsig; i++)
      uv_close((uv_handle_t *)&ctx->sig[i], NULL);
    ctx->nsig = 0;
    if (ctx->budget_init) {
      uv_close((uv_handle_t *)&ctx->budget, NULL);
      ctx->budget_init = 0;
    }
    if (ctx->trim_init) {
      uv_close((uv_handle_t *)&ctx->trim, NULL);
      ctx->trim_init = 0;
    }
    io_loop_free(ctx->loop);
    ctx->loop = NULL;
  }
  free(ctx->pend);
  ctx->pend = NULL;
  return 0;
}

static const luaL_Reg server_meth[] = {
  {"port", l_server_port},
  {"close", l_server_close},
  {"count", l_server_count},
  {"objects", l_server_objects},
  {"bind", l_server_bind},
  {"shutdown", l_server_shutdown},
  {NULL, NULL}
};

static const luaL_Reg conn_meth[] = {
  {"bind", l_conn_bind},
  {"wake", l_conn_wake},
  {"wake_if", l_conn_wake_if},
  {"run_event", l_conn_run_event},
  {"bp", l_conn_bp},
  {"accept", l_conn_accept},
  {"write", l_conn_write},
  {"http_done", l_conn_http_done},
  {"http_stream", l_conn_http_stream},
  {"send", l_conn_send},
  {"send_raw", l_conn_send_raw},
  {"deflate", l_conn_deflate},
  {"ping", l_conn_ping},
  {"close", l_conn_close},
  {"abort", l_conn_abort},
  {"end_stream", l_conn_end},
  {"pause", l_conn_pause},
  {"want_drain", l_conn_want_drain},
  {"buffered", l_conn_buffered},
  {"peer", l_conn_peer},
  {"is_open", l_conn_is_open},
  {"forget", l_conn_forget},
  {"client_info", l_conn_client_info},
  {"tls_info", l_conn_tls_info},
  {NULL, NULL}
};

static const luaL_Reg funcs[] = {
  {"set_dispatch", l_set_dispatch},
  {"ws_methods", l_ws_methods},
  {"release_control", l_release_control},
  {"listen", l_listen},
  {"connect", l_connect},
  {"tls_context", l_tls_context},
  {"run", l_run},
  {"signal", l_signal},
  {"fork", l_fork},
  {"wait", l_wait},
  {"kill", l_kill},
  {"exit", l_exit},
  {"run_once", l_run_once},
  {"step", l_step},
  {"stop", l_stop},
  {"now", l_now},
  {"hrtime", l_hrtime},
  {"timer", l_timer},
  {"utf8_valid", l_utf8_valid},
  {"getpid", l_getpid},
  {"frame", l_frame},
  {"trim_threshold", l_trim_threshold},
  {"parse_head", l_parse_head},
  {"head_header", l_head_header},
  {"send_remembers", l_send_remembers},
  {NULL, NULL}
};

static void new_class(lua_State *L, const char *name, const luaL_Reg *meth,
                      lua_CFunction gc) {
  luaL_newmetatable(L, name);
  lua_newtable(L);
  lua_pushvalue(L, -2);
  luaL_setfuncs(L, meth, 1); /* the metatable as upvalue 1 (check_conn) */
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, gc);
  lua_setfield(L, -2, "__close");
  lua_pop(L, 1);
}

/* The loop to run on: one a host handed over (uvws_open, or the registry
 * field "uvws.uv_loop"), luv's when luv was loaded first (luv keeps a
 * context whose first field is its loop under "luv_context"), or NULL for
 * a loop of our own. */
static uv_loop_t *host_loop(lua_State *L) {
  uv_loop_t *loop = NULL;
  lua_getfield(L, LUA_REGISTRYINDEX, UVWS_LOOP_KEY);
  if (lua_islightuserdata(L, -1)) loop = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (loop) return loop;
  lua_getfield(L, LUA_REGISTRYINDEX, "luv_context");
  if (lua_isuserdata(L, -1)) {
    uv_loop_t **first = lua_touserdata(L, -1);
    if (first) loop = *first;
  }
  lua_pop(L, 1);
  return loop;
}

int luaopen_uvws_core(lua_State *L);

int uvws_open(lua_State *L, uv_loop_t *loop) {
  if (loop) {
    lua_pushlightuserdata(L, loop);
    lua_setfield(L, LUA_REGISTRYINDEX, UVWS_LOOP_KEY);
  }
  lua_getglobal(L, "require");
  lua_pushliteral(L, "uvws");
  return lua_pcall(L, 1, 1, 0);
}

int uvws_step(lua_State *L, int budget_ms) {
  l_ctx_t *ctx = get_ctx(L);
  if (!ctx || !ctx->loop || ctx->running) return -1;
  ctx->running = 1;
  int alive = run_turns(ctx, budget_ms > 0 ? UV_RUN_ONCE : UV_RUN_NOWAIT,
                        budget_ms);
  ctx->running = 0;
  return alive;
}

int luaopen_uvws_core(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, CTX_KEY);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    l_ctx_t *ctx = lua_newuserdatauv(L, sizeof *ctx, 0);
    memset(ctx, 0, sizeof *ctx);
    ctx->dispatch_ref = LUA_NOREF;
    ctx->finish_ref = LUA_NOREF;
    ctx->evt_error_ref = LUA_NOREF;
    lua_pushboolean(L, 0);
    ctx->ready_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushliteral(L, "text");
    ctx->kind_ptr[0] = lua_topointer(L, -1);
    ctx->kind_ref[0] = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushliteral(L, "binary");
    ctx->kind_ptr[1] = lua_topointer(L, -1);
    ctx->kind_ref[1] = luaL_ref(L, LUA_REGISTRYINDEX);

    lua_newtable(L);
    lua_pushcfunction(L, l_ctx_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    io_callbacks_t cb = {on_request, on_message,  on_pong,
                         on_drain,   on_closed,   on_response,
                         on_timer,   on_accept_error, on_input_done};
    ctx->loop = io_loop_new(host_loop(L), &cb);
    if (!ctx->loop) return luaL_error(L, "uvws: cannot create the loop");
    ctx->loop->data = ctx;
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
    ctx->main = ctx->L = lua_tothread(L, -1);
    lua_pop(L, 1);
    /* Other C modules find the loop here. */
    lua_pushlightuserdata(L, ctx->loop->uv);
    lua_setfield(L, LUA_REGISTRYINDEX, UVWS_LOOP_KEY);
    lua_setfield(L, LUA_REGISTRYINDEX, CTX_KEY);
  } else {
    lua_pop(L, 1);
  }
  new_class(L, SERVER_MT, server_meth, l_server_gc);
  new_class(L, CONN_MT, conn_meth, l_conn_gc);
  luaL_newmetatable(L, TLS_MT);
  lua_pushcfunction(L, l_tls_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  luaL_newlib(L, funcs);
  lua_pushinteger(L, EV_REQUEST);
  lua_setfield(L, -2, "EV_REQUEST");
  lua_pushinteger(L, EV_MESSAGE);
  lua_setfield(L, -2, "EV_MESSAGE");
  lua_pushinteger(L, EV_PONG);
  lua_setfield(L, -2, "EV_PONG");
  lua_pushinteger(L, EV_CLOSED);
  lua_setfield(L, -2, "EV_CLOSED");
  lua_pushinteger(L, EV_TIMER);
  lua_setfield(L, -2, "EV_TIMER");
  lua_pushinteger(L, EV_DRAIN);
  lua_setfield(L, -2, "EV_DRAIN");
  lua_pushinteger(L, EV_RESPONSE);
  lua_setfield(L, -2, "EV_RESPONSE");
  lua_pushinteger(L, EV_SIGNAL);
  lua_setfield(L, -2, "EV_SIGNAL");
  lua_pushinteger(L, EV_ACCEPT_ERROR);
  lua_setfield(L, -2, "EV_ACCEPT_ERROR");
  lua_pushinteger(L, WS_SEND_NO_COMPRESS);
  lua_setfield(L, -2, "SEND_NO_COMPRESS");
  lua_pushinteger(L, WS_SEND_COMPRESS);
  lua_setfield(L, -2, "SEND_COMPRESS");
  lua_pushinteger(L, SIGTERM);
  lua_setfield(L, -2, "SIGTERM");
  lua_pushinteger(L, SIGINT);
  lua_setfield(L, -2, "SIGINT");
  lua_pushinteger(L, SIGCHLD);
  lua_setfield(L, -2, "SIGCHLD");
  lua_pushinteger(L, SIGKILL);
  lua_setfield(L, -2, "SIGKILL");
  return 1;
}
