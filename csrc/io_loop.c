/*
 * io_loop: the per-loop context shared by every connection: the read
 * buffer, the flush list and the scheduler timer.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "io_internal.h"


/* Flushes every dirty connection.  A flush may mark the connection dirty
 * again only through a later send, so the list is detached first. */
void io_loop_flush(io_loop_t *loop) {
  while (loop->dirty) {
    io_conn_t *list = loop->dirty;
    loop->dirty = NULL;
    while (list) {
      io_conn_t *c = list;
      list = c->next_dirty;
      c->next_dirty = NULL;
      c->is_dirty = 0;
      io__conn_flush(c);
    }
  }
}

/* Flushing in both the prepare phase (before the loop blocks in poll) and
 * the check phase (right after the I/O callbacks) means every byte queued
 * during a loop turn, from any callback, is written in that same turn. */
static void on_prepare(uv_prepare_t *h) {
  io_loop_t *loop = h->data;
  io_loop_flush(loop);
  /* A new turn: keep as many spare output buffers as the last one used. */
  loop->spare_limit = loop->spare_demand;
  loop->spare_demand = 0;
  while (loop->nspare > loop->spare_limit) {
    ws_buf_t *b = &loop->spare[--loop->nspare];
    loop->spare_bytes -= b->cap;
    ws_buf_free(b);
  }
}

static void on_check(uv_check_t *h) {
  io_loop_flush(h->data);
}

static void on_timer(uv_timer_t *h) {
  io_loop_t *loop = h->data;
  if (loop->cb.on_timer) loop->cb.on_timer(loop);
}

/* ---- connection deadlines ------------------------------------------------ */

/* Every connection with a deadline sits in a binary min-heap ordered by
 * it; one libuv timer is armed for the earliest.  A connection holds only
 * its deadline and its heap position, not a 152-byte uv_timer_t. */

static void heap_put(io_loop_t *loop, size_t i, io_conn_t *c) {
  loop->theap[i] = c;
  c->theap_pos = (uint32_t)(i + 1);
}

static void sift_up(io_loop_t *loop, size_t i) {
  io_conn_t *c = loop->theap[i];
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (loop->theap[parent]->due <= c->due) break;
    heap_put(loop, i, loop->theap[parent]);
    i = parent;
  }
  heap_put(loop, i, c);
}

static void sift_down(io_loop_t *loop, size_t i) {
  io_conn_t *c = loop->theap[i];
  size_t n = loop->theap_len;
  for (;;) {
    size_t k = 2 * i + 1;
    if (k >= n) break;
    if (k + 1 < n && loop->theap[k + 1]->due < loop->theap[k]->due) k++;
    if (c->due <= loop->theap[k]->due) break;
    heap_put(loop, i, loop->theap[k]);
    i = k;
  }
  heap_put(loop, i, c);
}

static void heap_remove(io_loop_t *loop, io_conn_t *c) {
  size_t i = c->theap_pos - 1;
  io_conn_t *last = loop->theap[--loop->theap_len];
  c->theap_pos = 0;
  if (last == c) return;
  heap_put(loop, i, last);
  sift_up(loop, i);
  sift_down(loop, last->theap_pos - 1);
}

static void on_deadline(uv_timer_t *h);

/* Arms the loop's deadline timer for the earliest deadline. */
static void sync_timer(io_loop_t *loop) {
  if (!loop->theap_len) {
    if (loop->tdue) uv_timer_stop(&loop->ctimer);
    loop->tdue = 0;
    return;
  }
  uint64_t due = loop->theap[0]->due;
  if (due == loop->tdue) return;
  uint64_t now = uv_now(loop->uv);
  loop->tdue = due;
  uv_timer_start(&loop->ctimer, on_deadline, due > now ? due - now : 0, 0);
}

int io__timer_set(io_conn_t *c, uint64_t due) {
  io_loop_t *loop = c->loop;
  if (!due) {
    if (c->theap_pos) heap_remove(loop, c);
  } else if (c->theap_pos) {
    size_t i = c->theap_pos - 1;
    c->due = due;
    sift_up(loop, i);
    sift_down(loop, c->theap_pos - 1);
  } else {
    if (loop->theap_len == loop->theap_cap) {
      size_t cap = loop->theap_cap ? 2 * loop->theap_cap : 64;
      io_conn_t **h = realloc(loop->theap, cap * sizeof *h);
      if (!h || cap > UINT32_MAX - 1) {
        if (h) loop->theap = h;
        return -1;
      }
      loop->theap = h;
      loop->theap_cap = cap;
    }
    c->due = due;
    loop->theap[loop->theap_len++] = c;
    sift_up(loop, loop->theap_len - 1);
  }
  sync_timer(loop);
  return 0;
}

/* Runs the deadline handler of every connection whose time has come.  A
 * handler re-arms its connection; one that is due again at once waits for
 * the next round, as a libuv timer started with 0 would. */
static void on_deadline(uv_timer_t *h) {
  io_loop_t *loop = h->data;
  uint64_t now = uv_now(loop->uv);
  size_t budget = loop->theap_len;
  loop->tdue = 0;
  while (budget-- > 0 && loop->theap_len && loop->theap[0]->due <= now) {
    io_conn_t *c = loop->theap[0];
    heap_remove(loop, c);
    io__conn_deadline(c);
  }
  sync_timer(loop);
}

/* libuv writes with write(2): a peer that resets the connection makes
 * the next write raise SIGPIPE, whose default action kills the process.
 * Ignore it (the write then fails with EPIPE and only that connection
 * ends), unless the host program installed a handler of its own. */
static void ignore_sigpipe(void) {
  struct sigaction sa;
  if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) {
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGPIPE, &sa, NULL);
  }
}

io_loop_t *io_loop_new(uv_loop_t *uv, const io_callbacks_t *cb) {
  io_loop_t *loop = calloc(1, sizeof *loop);
  if (!loop) return NULL;
  ignore_sigpipe();
  loop->rbuf = malloc(IO_READ_BUF_SIZE);
  if (!loop->rbuf) {
    free(loop);
    return NULL;
  }
  if (uv) {
    loop->uv = uv;
  } else {
    loop->uv = malloc(sizeof *loop->uv);
    if (!loop->uv || uv_loop_init(loop->uv) != 0) {
      free(loop->uv);
      free(loop->rbuf);
      free(loop);
      return NULL;
    }
    loop->own_uv = 1;
  }
  loop->cb = *cb;
  uv_prepare_init(loop->uv, &loop->prepare);
  uv_check_init(loop->uv, &loop->check);
  uv_timer_init(loop->uv, &loop->timer);
  uv_timer_init(loop->uv, &loop->ctimer);
  loop->prepare.data = loop->check.data = loop->timer.data = loop;
  loop->ctimer.data = loop;
  uv_prepare_start(&loop->prepare, on_prepare);
  uv_check_start(&loop->check, on_check);
  /* These handles must not keep uv_run alive on their own. */
  uv_unref((uv_handle_t *)&loop->prepare);
  uv_unref((uv_handle_t *)&loop->check);
  return loop;
}

void io_loop_timer(io_loop_t *loop, int64_t ms) {
  if (ms < 0) {
    uv_timer_stop(&loop->timer);
  } else {
    uv_timer_start(&loop->timer, on_timer, (uint64_t)ms, 0);
  }
}

void io_loop_free(io_loop_t *loop) {
  if (!loop) return;
  loop->closing = 1;
  for (io_conn_t *c = loop->conns; c; c = c->next)
    io_conn_abort(c, 1001, "shutting down");
  for (io_server_t *s = loop->servers; s; s = s->next) io_server_close(s, 0);
  uv_close((uv_handle_t *)&loop->prepare, NULL);
  uv_close((uv_handle_t *)&loop->check, NULL);
  uv_close((uv_handle_t *)&loop->timer, NULL);
  uv_close((uv_handle_t *)&loop->ctimer, NULL);
  /* Run the close callbacks, which free the connections and servers. */
  if (loop->own_uv) {
    uv_run(loop->uv, UV_RUN_DEFAULT);
    uv_loop_close(loop->uv);
    free(loop->uv);
  } else {
    while (loop->conns || loop->servers) uv_run(loop->uv, UV_RUN_ONCE);
    uv_run(loop->uv, UV_RUN_NOWAIT);
  }
  free(loop->rbuf);
  free(loop->tbuf);
  free(loop->theap);
  while (loop->nspare) ws_buf_free(&loop->spare[--loop->nspare]);
  free(loop->spare);
  free(loop);
}

uint64_t io__nofile_limit(io_loop_t *loop) {
  if (loop->nofile_checked) return loop->nofile;
  loop->nofile_checked = 1;
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 0;
  if (rl.rlim_cur < rl.rlim_max) {
    rlim_t cur = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) rl.rlim_cur = cur;
  }
  loop->nofile = rl.rlim_cur == RLIM_INFINITY ? 0 : (uint64_t)rl.rlim_cur;
  return loop->nofile;
}
