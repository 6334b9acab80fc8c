/*
 * io_conn: one TCP connection, from the request head to the closed socket.
 *
 * Reads land in the loop's shared buffer.  A request head is parsed in
 * place; only an incomplete head (or body) is copied into the connection.
 * After the upgrade, bytes go straight to the ws_conn parser, which
 * unmasks them in place, so a message that arrives whole is handed up
 * without ever being copied here.
 *
 * Nothing in this file calls the layer above synchronously from a function
 * the layer above called: input that waits for processing (bytes received
 * before the 101, a pipelined request) is handled at the next flush, from
 * the loop.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "io_internal.h"


#define HEADERS_ON_STACK 128
/* Output buffers are released once drained: an idle connection holds
 * none.  Those of at most SPARE_CAP bytes go to the loop's spares, up to
 * SPARE_BYTES in all, and the next connection to send takes one instead
 * of growing a buffer from nothing.  (With a hundred connections sending
 * a frame each per turn, malloc's thread cache cannot serve them all:
 * the churn cost ~360 instructions per message at depth 1.) */
#define SPARE_CAP 4096
#define SPARE_BYTES (1024 * 1024)
#define LINGER_MS 2000
/* Messages from this size on are written straight from the caller's
 * bytes when nothing is queued before them (send_direct).  Smaller ones
 * are copied into `out` and go out with the rest of the loop turn's
 * frames, in one write. */
#define DIRECT_SEND_MIN 16384

/* The loop's clock, refreshed: these functions are also called from Lua
 * code running outside the loop, where the cached time may be old. */
static uint64_t now_ms(io_conn_t *c) {
  uv_update_time(c->loop->uv);
  return uv_now(c->loop->uv);
}

void io__conn_mark_dirty(io_conn_t *c) {
  if (c->is_dirty || c->phase == IO_CLOSING) return;
  c->is_dirty = 1;
  c->next_dirty = c->loop->dirty;
  c->loop->dirty = c;
}

/* Releases a drained output buffer: to the loop's spares if it is the
 * WebSocket output and small, else to malloc. */
static void release_out(io_conn_t *c, ws_buf_t *b) {
  io_loop_t *loop = c->loop;
  size_t want = loop->spare_demand > loop->spare_limit ? loop->spare_demand
                                                      : loop->spare_limit;
  if (b == &c->ws.out && b->cap <= SPARE_CAP && loop->nspare < want &&
      loop->spare_bytes + b->cap <= SPARE_BYTES) {
    if (loop->nspare == loop->spare_cap) {
      size_t cap = loop->spare_cap ? 2 * loop->spare_cap : 64;
      ws_buf_t *a = realloc(loop->spare, cap * sizeof *a);
      if (!a) {
        ws_buf_free(b);
        return;
      }
      loop->spare = a;
      loop->spare_cap = cap;
    }
    b->off = b->len = 0;
    loop->spare_bytes += b->cap;
    loop->spare[loop->nspare++] = *b;
    memset(b, 0, sizeof *b);
  } else {
    ws_buf_free(b);
  }
}

/* Gives an empty output buffer one of the loop's spares (and counts the
 * demand for them). */
static void take_spare(io_conn_t *c) {
  io_loop_t *loop = c->loop;
  if (c->ws.out.data) return;
  loop->spare_demand++;
  if (loop->nspare) {
    c->ws.out = loop->spare[--loop->nspare];
    loop->spare_bytes -= c->ws.out.cap;
  }
}

static void upgrade_free(io_conn_t *c) {
  if (!c->up) return;
  free(c->up->ext_response);
  free(c->up);
  c->up = NULL;
}

static void set_close_info(io_conn_t *c, int code, const char *reason,
                           size_t len) {
  if (c->close_code) return; /* the first cause wins */
  c->close_code = code;
  if (len > 123) len = 123; /* a close reason's maximum */
  if (len && (c->close_reason = malloc(len)) != NULL) {
    memcpy(c->close_reason, reason, len);
    c->close_reason_len = (uint8_t)len;
  }
}

/* ---- closing ----------------------------------------------------------- */

void io__conn_closed(uv_handle_t *h) {
  io_conn_t *c = h->data;
  io_loop_t *loop = c->loop;
  io_server_t *s = c->server;

  if (c->handed_up && loop->cb.on_closed && !loop->closing) {
    int code = c->close_code ? c->close_code : 1006;
    loop->cb.on_closed(c, code, c->close_reason ? c->close_reason : "",
                       c->close_reason_len);
  }
  io__timer_set(c, 0); /* out of the deadline heap (it should be already) */
  if (c->prev) c->prev->next = c->next;
  else loop->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  io__client_free(c);
  io__tls_free(c);
  upgrade_free(c);
  free(c->close_reason);
  if (c->req) ws_buf_free(&c->req->wbuf);
  free(c->req);
  ws_conn_free(&c->ws);
  ws_buf_free(&c->in);
  free(c);
  if (s) {
    s->nconns--;
    io__server_free_if_done(s);
  }
}

static void conn_close_now(io_conn_t *c) {
  if (c->phase == IO_CLOSING) return;
  c->phase = IO_CLOSING;
  io__timer_set(c, 0);
  io__client_cancel(c);
  /* A client between two connect attempts has its handle closing
   * already; that close callback finishes the job. */
  if (!uv_is_closing((uv_handle_t *)&c->tcp))
    uv_close((uv_handle_t *)&c->tcp, io__conn_closed);
}

void io_conn_abort(io_conn_t *c, int code, const char *reason) {
  if (!c || c->phase == IO_CLOSING) return;
  set_close_info(c, code, reason ? reason : "", reason ? strlen(reason) : 0);
  conn_close_now(c);
}

static void arm_timer(io_conn_t *c);

/* All output is written and the connection is to end: send FIN. */
static void conn_finish(io_conn_t *c) {
  if (c->phase == IO_CLOSING || c->phase == IO_DRAIN) return;
  if (c->tls && io__tls_shutdown(c)) {
    /* Send the close_notify alert first; the flush comes back here. */
    io__conn_flush(c);
    return;
  }
  uint64_t linger = c->lim->close_timeout;
  if (!linger || linger > LINGER_MS) linger = LINGER_MS;
  /* Keep an earlier deadline (a graceful shutdown's). */
  uint64_t d = now_ms(c) + linger;
  if (!c->deadline_close || d < c->deadline_close) c->deadline_close = d;
  c->phase = IO_DRAIN;
  arm_timer(c);
  /* Nothing is queued in libuv (this runs only when every write is done),
   * so FIN goes out with shutdown(2) at once: uv_shutdown would wait for
   * POLLOUT and cost two more epoll_ctl calls per connection. */
  uv_os_fd_t fd;
  if (uv_fileno((uv_handle_t *)&c->tcp, &fd) != 0 || shutdown(fd, SHUT_WR) != 0 ||
      c->eof) {
    conn_close_now(c);
    return;
  }
  /* FIN is sent: wait a little for the peer's, reading and discarding,
   * so that unread input does not turn our close into a reset that could
   * destroy the answer we just sent. */
  c->paused = 0;
  io__conn_start(c);
}

/* ---- timers ------------------------------------------------------------- */

static void consider(uint64_t *best, uint64_t t) {
  if (t && (!*best || t < *best)) *best = t;
}

/* Arms the connection's one timer for its earliest deadline. */
static void arm_timer(io_conn_t *c) {
  if (c->phase == IO_CLOSING) return;
  const io_limits_t *lim = c->lim;
  uint64_t best = 0;
  consider(&best, c->deadline_close);
  if (c->phase < IO_WS) consider(&best, c->deadline_http);
  if (c->phase == IO_WS) {
    consider(&best, c->pong_deadline);
    if (!c->pong_deadline) consider(&best, c->next_ping);
    if (lim->idle_timeout && !c->ws.close_sent)
      consider(&best, c->last_recv + lim->idle_timeout);
  }
  if (best == c->due && c->theap_pos) return;
  if (io__timer_set(c, best) != 0) io_conn_abort(c, 1006, "out of memory");
}

void io__conn_arm(io_conn_t *c) { arm_timer(c); }

void io__conn_deadline(io_conn_t *c) {
  const io_limits_t *lim = c->lim;
  uint64_t now = now_ms(c);
  if (c->phase == IO_CLOSING) return;
  if (c->deadline_close && now >= c->deadline_close) {
    io_conn_abort(c, 1006, c->phase == IO_DRAIN ? "" : "close timeout");
    return;
  }
  if (c->phase < IO_WS && c->deadline_http && now >= c->deadline_http) {
    c->errname = "ETIMEDOUT";
    io_conn_abort(c, 1006, "handshake timeout");
    return;
  }
  if (c->phase == IO_WS) {
    if (c->pong_deadline && now >= c->pong_deadline) {
      io_conn_abort(c, 1006, "keepalive ping timeout");
      return;
    }
    if (lim->idle_timeout && !c->ws.close_sent &&
        now >= c->last_recv + lim->idle_timeout) {
      io_conn_close(c, 1001, "idle timeout", 12);
    } else if (!c->pong_deadline && c->next_ping && now >= c->next_ping &&
               !c->ws.close_sent) {
      uint8_t payload[8];
      for (int i = 0; i < 8; i++) payload[i] = (uint8_t)(now >> (8 * i));
      ws_conn_send(&c->ws, WS_OP_PING, payload, sizeof payload);
      io__conn_mark_dirty(c);
      c->pong_deadline = lim->pong_timeout ? now + lim->pong_timeout : 0;
      c->next_ping = now + lim->ping_interval;
    }
  }
  arm_timer(c);
}

/* ---- HTTP --------------------------------------------------------------- */

static void http_error(io_conn_t *c, int status, const char *reason) {
  ws_buf_free(&c->in);
  c->consume = 0;
  ws_handshake_write_error(&c->ws.out, status, reason, NULL, 0);
  c->phase = IO_HTTP_CLOSE;
  c->close_after_flush = 1;
  if (c->reading) {
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = 0;
  }
  io__conn_mark_dirty(c);
}

/* Parses what has arrived of a request.  `data` is either the shared read
 * buffer (when nothing was buffered before) or c->in. */
static void http_input(io_conn_t *c, const uint8_t *data, size_t n) {
  const io_limits_t *lim = c->lim;
  ws_header_t stack_headers[HEADERS_ON_STACK];
  ws_header_t *headers = stack_headers;
  size_t max_headers = lim->max_headers ? lim->max_headers : 100;
  io_request_t r;
  int in_place = data != WS_BUF_PTR(&c->in) || WS_BUF_SIZE(&c->in) == 0;

  if (max_headers > HEADERS_ON_STACK) {
    headers = malloc(max_headers * sizeof *headers);
    if (!headers) {
      io_conn_abort(c, 1006, "out of memory");
      return;
    }
  }
  memset(&r, 0, sizeof r);
  int len = ws_http_parse_request((const char *)data, n, lim->max_head_size,
                                  &r.req, headers, max_headers);
  if (len == WS_HTTP_PARTIAL) {
    if (in_place &&
        ws_buf_append(&c->in, data, n, lim->max_head_size + 1) != 0)
      http_error(c, 431, "request head too large");
    goto done;
  }
  if (len < 0) {
    http_error(c, ws_http_error_status(len), ws_http_strerror(len));
    goto done;
  }
  if (c->over_limit) {
    ws_buf_free(&c->in);
    ws_handshake_write_error(&c->ws.out, 503,
                             "the server is at its connection limit",
                             "Retry-After: 1\r\n", 16);
    c->phase = IO_HTTP_CLOSE;
    c->close_after_flush = 1;
    if (c->reading) {
      uv_read_stop((uv_stream_t *)&c->tcp);
      c->reading = 0;
    }
    io__conn_mark_dirty(c);
    goto done;
  }

  ws_handshake_check_request(&r.req, &r.hs);
  if (r.hs.is_upgrade && r.hs.status) {
    http_error(c, r.hs.status, r.hs.reason);
    goto done;
  }
  upgrade_free(c);
  if (r.hs.is_upgrade && !(c->up = calloc(1, sizeof *c->up))) {
    io_conn_abort(c, 1006, "out of memory");
    goto done;
  }
  if (r.hs.is_upgrade && lim->deflate.enabled) {
    char resp[WS_DEFLATE_HEADER_MAX];
    int d = ws_deflate_server_negotiate_headers(
        &lim->deflate, headers, r.req.num_headers, &c->up->ext_params, resp);
    if (d == WS_DEFLATE_ESYNTAX) {
      http_error(c, 400, "invalid Sec-WebSocket-Extensions header");
      goto done;
    }
    if (d == 1 && !(c->up->ext_response = strdup(resp))) {
      io_conn_abort(c, 1006, "out of memory");
      goto done;
    }
  }
  size_t need = (size_t)len;
  if (!r.hs.is_upgrade) {
    if (!c->server->want_requests) {
      http_error(c, 426, "this is a WebSocket endpoint: "
                         "send a WebSocket upgrade request");
      goto done;
    }
    if (ws_http_find_header(headers, r.req.num_headers,
                            "transfer-encoding", 0) >= 0) {
      http_error(c, 501, "chunked request bodies are not supported");
      goto done;
    }
    unsigned long long clen = 0;
    int ci = ws_http_find_header(headers, r.req.num_headers,
                                 "content-length", 0);
    if (ci >= 0) {
      if (ws_http_parse_content_length(headers[ci].value, &clen) != 0 ||
          ws_http_find_header(headers, r.req.num_headers, "content-length",
                              (size_t)ci + 1) >= 0) {
        http_error(c, 400, "invalid Content-Length");
        goto done;
      }
      if (clen > lim->max_body_size) {
        http_error(c, 413, "request body too large");
        goto done;
      }
    }
    need += (size_t)clen;
    if (n < need) {
      /* Wait for the body, keeping head and body in c->in. */
      if (in_place && ws_buf_append(&c->in, data, n, 0) != 0) {
        io_conn_abort(c, 1006, "out of memory");
        goto done;
      }
      c->phase = IO_HTTP_BODY;
      goto done;
    }
    r.body = data + len;
    r.body_len = (size_t)clen;
  }

  /* A complete request: keep what follows it, pause reading, hand it up. */
  if (in_place) {
    if (n > need && ws_buf_append(&c->in, data + need, n - need, 0) != 0) {
      io_conn_abort(c, 1006, "out of memory");
      goto done;
    }
    c->consume = 0;
  } else {
    c->consume = need;
  }
  /* Keep-alive matters only to plain requests (an upgrade that is refused
   * closes). */
  c->keepalive = !r.hs.is_upgrade && r.req.minor_version >= 1 &&
                 !ws_http_header_has_token(headers, r.req.num_headers,
                                           "connection", "close");
  if (c->up && r.hs.key.n < sizeof c->up->key) {
    memcpy(c->up->key, r.hs.key.p, r.hs.key.n);
    c->up->key[r.hs.key.n] = 0;
  }
  r.head = data;
  r.head_len = (size_t)len;
  c->phase = IO_HTTP_WAIT;
  c->handed_up = 1;
  c->loop->cb.on_request(c, &r);
  /* Reading pauses while the layer above decides -- unless it already
   * did, as it usually does, within the callback: stopping and restarting
   * would cost two more epoll_ctl calls per handshake. */
  if (c->reading && (c->phase == IO_HTTP_WAIT || c->phase == IO_HTTP_CLOSE)) {
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = 0;
  }

done:
  if (headers != stack_headers) free(headers);
}

/* Drops the bytes of the request the layer above was using. */
static void http_release(io_conn_t *c) {
  if (c->consume) {
    ws_buf_consume(&c->in, c->consume);
    c->consume = 0;
  }
  if (!WS_BUF_SIZE(&c->in)) ws_buf_free(&c->in);
}

int io_conn_write(io_conn_t *c, const void *data, size_t len) {
  if (!c || c->phase >= IO_DRAIN) return -1;
  if (ws_buf_append(&c->ws.out, data, len, 0) != 0) return -1;
  io__conn_mark_dirty(c);
  return 0;
}

void io_conn_http_stream(io_conn_t *c) {
  if (!c || c->phase != IO_HTTP_WAIT) return;
  c->phase = IO_HTTP_STREAM;
  c->deadline_http = 0;
  arm_timer(c);
  io__conn_start(c);
}

void io_conn_http_done(io_conn_t *c, int keepalive) {
  if (!c || (c->phase != IO_HTTP_WAIT && c->phase != IO_HTTP_STREAM)) return;
  if (c->phase == IO_HTTP_STREAM) {
    keepalive = 0; /* input was discarded: no second request */
    if (c->reading) {
      uv_read_stop((uv_stream_t *)&c->tcp);
      c->reading = 0;
    }
  }
  http_release(c);
  upgrade_free(c);
  if (keepalive && c->keepalive) {
    c->phase = IO_HTTP_HEAD;
    c->deadline_http = now_ms(c) + c->lim->handshake_timeout;
    if (!c->lim->handshake_timeout) c->deadline_http = 0;
    arm_timer(c);
    c->input_pending = 1; /* a pipelined request, or start reading */
  } else {
    c->phase = IO_HTTP_CLOSE;
    c->close_after_flush = 1;
  }
  io__conn_mark_dirty(c);
}

/* ---- WebSocket ------------------------------------------------------------ */

/* Starts the close timeout, unless an earlier deadline runs already. */
static void close_deadline(io_conn_t *c) {
  uint64_t t = c->lim->close_timeout;
  if (!t || c->deadline_close) return;
  c->deadline_close = now_ms(c) + t;
  arm_timer(c);
}

void io__on_ws_event(void *ud, const ws_event_t *ev) {
  io_conn_t *c = ud;
  io_loop_t *loop = c->loop;
  if (c->phase == IO_CLOSING) return;
  switch (ev->type) {
  case WS_EV_MARK:
    if (loop->cb.on_input_done && !loop->closing) loop->cb.on_input_done(c);
    break;
  case WS_EV_MESSAGE:
    if (loop->cb.on_message && !loop->closing)
      loop->cb.on_message(c, ev->opcode, ev->data, ev->len);
    break;
  case WS_EV_PING:
    io__conn_mark_dirty(c);
    break;
  case WS_EV_PONG:
    c->pong_deadline = 0;
    if (loop->cb.on_pong && !loop->closing)
      loop->cb.on_pong(c, ev->data, ev->len);
    break;
  case WS_EV_CLOSE:
    set_close_info(c, ev->code, (const char *)ev->data, ev->len);
    io__conn_mark_dirty(c);
    /* A client waits for the server to close the TCP connection; a server
     * closes it once `out` is flushed.  Either way the close timeout
     * bounds the wait, also for a peer that stops reading. */
    if (c->ws.role == WS_ROLE_SERVER) c->close_after_flush = 1;
    close_deadline(c);
    break;
  case WS_EV_FAIL:
    set_close_info(c, ev->code, ev->reason, strlen(ev->reason));
    c->close_after_flush = 1;
    io__conn_mark_dirty(c);
    close_deadline(c);
    break;
  default:
    break;
  }
}

void io__ws_init(io_conn_t *c, ws_role_t role) {
  ws_conn_init(&c->ws, role, io__on_ws_event, c);
  c->ws.marks = 1;
}

static void ws_input(io_conn_t *c, uint8_t *data, size_t n) {
  ws_conn_feed(&c->ws, data, n);
}

int io_conn_deflate_offered(const io_conn_t *c) {
  return c && c->up && c->up->ext_response != NULL;
}

int io_conn_deflate_on(const io_conn_t *c) {
  return c && c->ws.deflate != NULL;
}

int io_conn_accept(io_conn_t *c, const char *protocol, const char *extra,
                   size_t extra_len, int use_deflate) {
  if (!c || c->phase != IO_HTTP_WAIT || !c->up || !c->up->key[0]) return -1;
  struct io_upgrade *up = c->up;
  ws_slice_t key = {up->key, strlen(up->key)};
  ws_buf_t lines = {0};
  if (use_deflate && up->ext_response) {
    ws_deflate_t *d = ws_deflate_new(&c->lim->deflate, &up->ext_params, 1);
    static const char name[] = "Sec-WebSocket-Extensions: ";
    if (!d || ws_buf_append(&lines, name, sizeof name - 1, 0) ||
        ws_buf_append(&lines, up->ext_response, strlen(up->ext_response),
                      0) ||
        ws_buf_append(&lines, "\r\n", 2, 0) ||
        (extra_len && ws_buf_append(&lines, extra, extra_len, 0))) {
      ws_deflate_free(d);
      ws_buf_free(&lines);
      return -1;
    }
    ws_conn_set_deflate(&c->ws, d);
    extra = (const char *)WS_BUF_PTR(&lines);
    extra_len = WS_BUF_SIZE(&lines);
  }
  int w = ws_handshake_write_101(&c->ws.out, key, protocol, extra, extra_len);
  ws_buf_free(&lines);
  if (w) return -1;
  upgrade_free(c);
  http_release(c);
  const io_limits_t *lim = c->lim;
  c->phase = IO_WS;
  c->ws.lim = &lim->ws;
  uint64_t now = now_ms(c);
  c->last_recv = now;
  c->next_ping = lim->ping_interval ? now + lim->ping_interval : 0;
  c->pong_deadline = 0;
  c->deadline_http = 0;
  arm_timer(c);
  c->input_pending = 1;
  io__conn_mark_dirty(c);
  return 0;
}

void io_conn_end(io_conn_t *c) {
  if (!c || c->phase != IO_RAW) return;
  c->close_after_flush = 1;
  io__conn_mark_dirty(c);
}

int io_conn_send(io_conn_t *c, int opcode, const void *data, size_t len) {
  return io_conn_send_ex(c, opcode, data, len, 0);
}

/* Sends a large message without copying it: header and payload go to the
 * kernel at once, and only what it does not take is queued.  Returns a
 * WS_CONN_* code, or SEND_QUEUE when the message must take the usual way.
 * (Kept out of line: its stack frame stays off the small-message path.) */
#define SEND_QUEUE 1
#if defined(__GNUC__)
__attribute__((noinline))
#endif
static int send_direct(io_conn_t *c, int opcode, const void *data,
                       size_t len, int flags) {
  uint8_t hdr[WS_MAX_HEADER];
  size_t hl = ws_conn_direct_header(&c->ws, opcode, len, flags, hdr);
  if (!hl) return SEND_QUEUE;
  uv_buf_t b[2];
  b[0] = uv_buf_init((char *)hdr, (unsigned)hl);
  b[1] = uv_buf_init((char *)data, (unsigned)len);
  int r = uv_try_write((uv_stream_t *)&c->tcp, b, 2);
  if (r < 0 && r != UV_EAGAIN && r != UV_ENOSYS) {
    /* The connection is broken (writing again could raise SIGPIPE).  The
     * layer above hears of it from on_closed, from the loop. */
    io_conn_abort(c, 1006, uv_strerror(r));
    return WS_CONN_ECLOSED;
  }
  size_t done = r > 0 ? (size_t)r : 0;
  if (done == hl + len) return WS_CONN_OK;
  if ((done < hl && ws_buf_append(&c->ws.out, hdr + done, hl - done, 0)) ||
      ws_buf_append(&c->ws.out,
                    (const uint8_t *)data + (done > hl ? done - hl : 0),
                    len - (done > hl ? done - hl : 0), 0)) {
    if (done) {
      /* Part of the frame is on the wire: the stream cannot go on. */
      io_conn_abort(c, 1006, "out of memory");
    }
    return WS_CONN_ENOMEM;
  }
  io__conn_mark_dirty(c);
  return WS_CONN_OK;
}

int io_conn_send_ex(io_conn_t *c, int opcode, const void *data, size_t len,
                    int flags) {
  if (!c || c->phase != IO_WS) return WS_CONN_ECLOSED;
  if (len >= DIRECT_SEND_MIN && len <= UINT_MAX - WS_MAX_HEADER && data &&
      !c->tls && !c->writing && !WS_BUF_SIZE(&c->ws.out)) {
    int r = send_direct(c, opcode, data, len, flags);
    if (r != SEND_QUEUE) return r;
  }
  take_spare(c);
  int r = ws_conn_send_ex(&c->ws, opcode, data, len, flags);
  if (r == WS_CONN_OK) io__conn_mark_dirty(c);
  return r;
}

int io_conn_close(io_conn_t *c, int code, const char *reason, size_t len) {
  if (!c || c->phase != IO_WS) return WS_CONN_ECLOSED;
  int r = ws_conn_close(&c->ws, code, reason, len);
  if (r != WS_CONN_OK) return r;
  io__conn_mark_dirty(c);
  if (WS_CONN_DONE(&c->ws)) {
    c->close_after_flush = 1;
  } else {
    uint64_t t = c->lim->close_timeout;
    c->deadline_close = t ? now_ms(c) + t : 0;
    arm_timer(c);
  }
  return r;
}

/* ---- reading -------------------------------------------------------------- */

/* Replies the peer makes us queue (pongs, echoes) must not grow without
 * bound when it does not read them: past twice the high-water mark (at
 * least 64 KiB) reading stops until the kernel has taken the output. */
static size_t out_cap(const io_conn_t *c) {
  size_t cap = c->lim->send_high_water * 2;
  return cap < 65536 ? 65536 : cap;
}


/* A frame whose payload still has this many bytes to come is read
 * straight into the message buffer (ws_conn_recv_buf), not into the shared
 * buffer and then appended.  The slack lets one read also take the next
 * frame's header without filling the buffer, which would make libuv read
 * again at once. */
#define DIRECT_MIN 4096
#define DIRECT_SLACK 4096

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  io_conn_t *c = h->data;
  (void)suggested;
  if (c->phase == IO_WS && !c->tls && !c->input_pending) {
    size_t room;
    uint8_t *p = ws_conn_recv_buf(&c->ws, DIRECT_MIN, DIRECT_SLACK, &room);
    if (p) {
      buf->base = (char *)p;
      buf->len = room;
      return;
    }
  }
  buf->base = c->loop->rbuf;
  buf->len = IO_READ_BUF_SIZE;
}

/* Bytes read into the message buffer (see on_alloc): the payload is fed
 * from where it is; what lies beyond the frame moves to the shared buffer
 * first, since delivering the message frees the message buffer. */
static void direct_input(io_conn_t *c, uint8_t *p, size_t n) {
  size_t extra = 0;
  if (n > c->ws.remaining) {
    extra = n - (size_t)c->ws.remaining;
    n -= extra;
    memcpy(c->loop->rbuf, p + n, extra);
  }
  ws_conn_feed(&c->ws, p, n);
  if (extra && c->phase != IO_CLOSING)
    io__conn_plaintext(c, (uint8_t *)c->loop->rbuf, extra);
}

static void process(io_conn_t *c, uint8_t *data, size_t n) {
  switch (c->phase) {
  case IO_PROXY_HEAD:
  case IO_RESP_HEAD:
    io__client_input(c, data, n);
    break;
  case IO_HTTP_HEAD:
    http_input(c, data, n);
    break;
  case IO_HTTP_BODY: {
    if (data != WS_BUF_PTR(&c->in) &&
        ws_buf_append(&c->in, data, n, 0) != 0) {
      io_conn_abort(c, 1006, "out of memory");
      return;
    }
    c->phase = IO_HTTP_HEAD;
    http_input(c, WS_BUF_PTR(&c->in), WS_BUF_SIZE(&c->in));
    break;
  }
  case IO_WS:
    ws_input(c, data, n);
    break;
  case IO_RAW:
    if (c->loop->cb.on_message && !c->loop->closing)
      c->loop->cb.on_message(c, 0, data, n);
    break;
  default:
    break; /* IO_DRAIN and the rest: discard */
  }
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  io_conn_t *c = stream->data;
  if (nread == 0 || c->phase == IO_CLOSING) return;
  if (nread < 0) {
    c->eof = 1;
    if (c->phase == IO_DRAIN) {
      conn_close_now(c);
    } else {
      io_conn_abort(c, 1006, nread == UV_EOF ? "connection closed by peer"
                                             : uv_strerror((int)nread));
    }
    return;
  }
  c->last_recv = now_ms(c);
  if (buf->base != c->loop->rbuf)
    direct_input(c, (uint8_t *)buf->base, (size_t)nread);
  else if (c->tls)
    io__tls_input(c, buf->base, (size_t)nread);
  else io__conn_plaintext(c, (uint8_t *)buf->base, (size_t)nread);
  if (c->loop->cb.on_input_done) c->loop->cb.on_input_done(c);
  if (c->phase != IO_CLOSING && c->reading &&
      io_conn_buffered(c) >= out_cap(c)) {
    c->out_full = 1;
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = 0;
  }
}

void io__conn_plaintext(io_conn_t *c, uint8_t *data, size_t n) {
  if (c->phase == IO_HTTP_WAIT) {
    /* TLS can yield more plaintext after a request head was handed up:
     * keep it for when the layer above answers. */
    if (ws_buf_append(&c->in, data, n, 0) != 0)
      io_conn_abort(c, 1006, "out of memory");
    return;
  }
  if (c->input_pending && WS_BUF_SIZE(&c->in) > 0 &&
      (c->phase == IO_WS || c->phase == IO_RAW)) {
    /* Bytes that came with the handshake wait for the next flush: what
     * arrives now must queue behind them. */
    if (ws_buf_append(&c->in, data, n, 0) != 0)
      io_conn_abort(c, 1006, "out of memory");
    return;
  }
  if (c->phase <= IO_HTTP_HEAD && WS_BUF_SIZE(&c->in) > 0) {
    /* Append to the partial head and parse the whole of it. */
    size_t lim = c->lim->max_head_size + 1;
    if (ws_buf_append(&c->in, data, n, lim) != 0) {
      if (c->client) {
        c->errname = "EHANDSHAKE";
        io_conn_abort(c, 1006, "response head too large");
      } else {
        http_error(c, 431, "request head too large");
      }
      return;
    }
    if (c->client) io__client_input(c, WS_BUF_PTR(&c->in), WS_BUF_SIZE(&c->in));
    else http_input(c, WS_BUF_PTR(&c->in), WS_BUF_SIZE(&c->in));
    return;
  }
  process(c, data, n);
}

void io__conn_start(io_conn_t *c) {
  if (c->out_full && io_conn_buffered(c) < out_cap(c) / 2) c->out_full = 0;
  if (c->reading || c->paused || c->out_full || c->phase == IO_CLOSING ||
      c->phase == IO_CONNECTING ||
      c->phase == IO_HTTP_WAIT || c->phase == IO_HTTP_CLOSE)
    return;
  if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
    c->reading = 1;
}

void io_conn_pause(io_conn_t *c, int paused) {
  if (!c || c->phase == IO_CLOSING) return;
  c->paused = paused ? 1 : 0;
  if (paused && c->reading) {
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = 0;
  } else if (!paused) {
    /* The flush processes anything buffered, then restarts reading. */
    c->input_pending = 1;
    io__conn_mark_dirty(c);
  }
}

/* ---- writing -------------------------------------------------------------- */

static void check_drain(io_conn_t *c);

static void on_write(uv_write_t *req, int status) {
  io_conn_t *c = req->handle->data;
  c->writing = 0;
  ws_buf_free(&c->req->wbuf);
  free(c->req); /* the request was c->req */
  c->req = NULL;
  if (c->phase == IO_CLOSING) return;
  if (status < 0) {
    io_conn_abort(c, 1006, uv_strerror(status));
    return;
  }
  io__conn_flush(c);
  if (c->out_full && c->phase != IO_CLOSING) io__conn_start(c);
}

/* Tells the layer above that the queue fell below the high-water mark, if
 * it asked. */
static void check_drain(io_conn_t *c) {
  if (c->want_drain && c->phase != IO_CLOSING &&
      io_conn_buffered(c) < c->lim->send_high_water) {
    c->want_drain = 0;
    if (c->loop->cb.on_drain && !c->loop->closing) c->loop->cb.on_drain(c);
  }
}

void io_conn_want_drain(io_conn_t *c) {
  if (c && c->phase != IO_CLOSING) c->want_drain = 1;
}

void io__conn_flush(io_conn_t *c) {
  if (c->phase == IO_CLOSING) return;
  if (c->input_pending && !c->paused) {
    c->input_pending = 0;
    if (WS_BUF_SIZE(&c->in)) {
      /* Process buffered input from a private copy: the parser may stop
       * reading (pause) and a new read may then append to c->in. */
      ws_buf_t pending = c->in;
      memset(&c->in, 0, sizeof c->in);
      if (c->phase == IO_HTTP_HEAD) {
        c->in = pending;
        http_input(c, WS_BUF_PTR(&c->in), WS_BUF_SIZE(&c->in));
      } else if (c->phase == IO_RESP_HEAD || c->phase == IO_PROXY_HEAD) {
        c->in = pending;
        io__client_input(c, WS_BUF_PTR(&c->in), WS_BUF_SIZE(&c->in));
      } else {
        process(c, WS_BUF_PTR(&pending), WS_BUF_SIZE(&pending));
        ws_buf_free(&pending);
        if (c->loop->cb.on_input_done) c->loop->cb.on_input_done(c);
      }
      if (c->phase == IO_CLOSING) return;
    }
    io__conn_start(c);
  }
  if (c->writing || c->phase == IO_CONNECTING) return;
  ws_buf_t *net = &c->ws.out;
  if (c->tls && !(net = io__tls_output(c))) return;
  size_t n = WS_BUF_SIZE(net);
  if (n > 0) {
    uv_buf_t b = uv_buf_init((char *)WS_BUF_PTR(net), (unsigned)n);
    int r = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (r == UV_EAGAIN || r == UV_ENOSYS) r = 0;
    if (r < 0) {
      io_conn_abort(c, 1006, uv_strerror(r));
      return;
    }
    ws_buf_consume(net, (size_t)r);
    if ((size_t)r < n) {
      /* The rest goes with the request, and `out` starts afresh. */
      if (!c->req && !(c->req = calloc(1, sizeof *c->req))) {
        io_conn_abort(c, 1006, "out of memory");
        return;
      }
      ws_buf_free(&c->req->wbuf);
      c->req->wbuf = *net;
      memset(net, 0, sizeof *net);
      uv_buf_t w = uv_buf_init((char *)WS_BUF_PTR(&c->req->wbuf),
                               (unsigned)WS_BUF_SIZE(&c->req->wbuf));
      if (uv_write(&c->req->u.write, (uv_stream_t *)&c->tcp, &w, 1,
                   on_write)) {
        io_conn_abort(c, 1006, "write failed");
        return;
      }
      c->writing = 1;
      check_drain(c);
      return;
    }
    release_out(c, net);
  }
  check_drain(c);
  /* With TLS, plaintext waits in ws.out until the handshake is done. */
  if (c->close_after_flush && !WS_BUF_SIZE(&c->ws.out)) conn_finish(c);
}

size_t io_conn_buffered(const io_conn_t *c) {
  if (!c) return 0;
  return WS_BUF_SIZE(&c->ws.out) +
         (c->req ? WS_BUF_SIZE(&c->req->wbuf) : 0) +
         (c->tls ? io__tls_pending(c) : 0);
}

/* The dotted quad, as uv_ip4_name writes it, without the snprintf behind
 * it (about 1,800 instructions, every handshake). */
static int ip4_name(const struct sockaddr_in *a, char *out, size_t size) {
  const uint8_t *b = (const uint8_t *)&a->sin_addr.s_addr;
  char tmp[16], *p = tmp;
  for (int i = 0; i < 4; i++) {
    unsigned v = b[i];
    if (i) *p++ = '.';
    if (v >= 100) *p++ = (char)('0' + v / 100);
    if (v >= 10) *p++ = (char)('0' + v / 10 % 10);
    *p++ = (char)('0' + v % 10);
  }
  *p = '\0';
  if ((size_t)(p - tmp) + 1 > size) return UV_ENOSPC;
  memcpy(out, tmp, (size_t)(p - tmp) + 1);
  return 0;
}

int io_conn_peer(const io_conn_t *c, char *ip, size_t iplen, int *port) {
  struct sockaddr_storage ss;
  int len = sizeof ss;
  int r = uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len);
  if (r) return r;
  if (ss.ss_family == AF_INET6) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    *port = ntohs(a->sin6_port);
    return uv_ip6_name(a, ip, iplen);
  }
  struct sockaddr_in *a = (struct sockaddr_in *)&ss;
  *port = ntohs(a->sin_port);
  return ip4_name(a, ip, iplen);
}

/* ---- setup ---------------------------------------------------------------- */

void io__conn_list_add(io_conn_t *c) {
  io_loop_t *loop = c->loop;
  c->prev = NULL;
  c->next = loop->conns;
  if (loop->conns) loop->conns->prev = c;
  loop->conns = c;
}
