/*
 * io: the libuv transport under the protocol core.
 *
 * An io_loop_t is one libuv loop with what every connection on it shares:
 * one 256 KiB read buffer, a list of connections with bytes to flush, the
 * prepare/check handles that flush them once per loop turn, and one timer
 * for every connection's deadlines (handshake, idle, ping, close).  An
 * io_server_t listens and accepts; each accepted io_conn_t reads its HTTP
 * request head, hands it up, and after the upgrade feeds bytes to its
 * ws_conn_t.  The layer above (the Lua binding) sees only the callbacks in
 * io_callbacks_t and the functions below; this layer knows nothing of Lua.
 *
 * Memory: a connection is freed only in uv_close's callback, after
 * on_closed has been called; the layer above must drop its pointer then.
 */
#ifndef UVWS_IO_H
#define UVWS_IO_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "ws_buf.h"
#include "ws_conn.h"
#include "ws_deflate.h"
#include "ws_handshake.h"
#include "ws_http.h"
#include "io_tls.h"

#define IO_READ_BUF_SIZE (256 * 1024)

typedef struct io_loop io_loop_t;
typedef struct io_server io_server_t;
typedef struct io_conn io_conn_t;

/* Limits of a server's connections.  Sizes are bytes and times are
 * milliseconds; 0 disables a size limit or a timer. */
typedef struct io_limits {
  ws_limits_t ws;           /* message and frame sizes, shared */
  size_t max_head_size;
  size_t max_headers;
  size_t max_body_size;
  uint64_t handshake_timeout;
  uint64_t close_timeout;
  uint64_t idle_timeout;
  uint64_t ping_interval;
  uint64_t pong_timeout;
  size_t send_high_water;   /* on_drain fires when the queue falls below */
  size_t max_connections;   /* beyond it, requests get 503 */
  int reuseport;            /* listen with SO_REUSEPORT */
  ws_deflate_config_t deflate; /* permessage-deflate (enabled = 0: off) */
} io_limits_t;

/* A parsed request handed up.  Slices point into connection memory that
 * stays valid until the callback returns. */
typedef struct io_request {
  ws_http_request_t req;
  ws_handshake_t hs;        /* hs.is_upgrade: a valid upgrade */
  const uint8_t *head;      /* the whole head, request line to the empty
                               line after the headers */
  size_t head_len;
  const uint8_t *body;      /* plain requests: Content-Length body */
  size_t body_len;
} io_request_t;

/* Events for the layer above.  Each is called from inside the loop. */
typedef struct io_callbacks {
  /* A request head (and body) arrived.  For a valid upgrade the layer
   * above answers with io_conn_accept() or io_conn_write() +
   * io_conn_http_done(); for a plain request with io_conn_write() and
   * io_conn_http_done().  Reading is paused until then.  Invalid upgrades
   * and plain requests on a server without `want_requests` are answered
   * here and never reach the layer above. */
  void (*on_request)(io_conn_t *c, const io_request_t *r);
  /* A complete message: opcode WS_OP_TEXT or WS_OP_BINARY. */
  void (*on_message)(io_conn_t *c, int opcode, const uint8_t *data,
                     size_t len);
  /* A pong arrived. */
  void (*on_pong)(io_conn_t *c, const uint8_t *data, size_t len);
  /* The send queue fell below the high-water mark again (only after
   * io_conn_want_drain). */
  void (*on_drain)(io_conn_t *c);
  /* The connection is closed for good: the close code (the peer's, ours
   * for a failure, 1006 when the connection was lost without a close
   * frame) and reason.  Called once, for every connection that reached
   * on_request; `c` is freed after this returns. */
  void (*on_closed)(io_conn_t *c, int code, const char *reason,
                    size_t reason_len);
  /* Client: the response head to our upgrade request arrived.  `result`
   * is WS_HS_OK (the connection is now a WebSocket, with `protocol`
   * selected, n == 0 for none) or a WS_HS_E* code, in which case the
   * connection is closed next.  A proxy that refused the CONNECT gives
   * result IO_EPROXY and its response. */
  void (*on_response)(io_conn_t *c, const ws_http_response_t *res,
                      int result, ws_slice_t protocol);
  /* A non-connection event: the scheduler timer fired. */
  void (*on_timer)(io_loop_t *loop);
  /* A server cannot accept connections: err is the libuv error of a
   * failed accept, or UV_EMFILE with `nofile` (the process's open-files
   * limit) when a connection just took the last file descriptor.  libuv
   * accepts and closes at once the connections that come when none is
   * left, without telling; this is the warning.  At most one report a
   * second per server.  May be NULL. */
  void (*on_accept_error)(io_server_t *s, int err, uint64_t nofile);
  /* The bytes of a read (or of input held back, at a flush) have all been
   * parsed, or the parser is about to act on a control frame or fail the
   * connection (WS_EV_MARK): a layer above that held messages back hands
   * them over now.  May be NULL. */
  void (*on_input_done)(io_conn_t *c);
} io_callbacks_t;

struct io_loop {
  uv_loop_t *uv;
  int own_uv;               /* uv was created by io_loop_new */
  void *data;               /* for the layer above */
  io_callbacks_t cb;
  char *rbuf;               /* the shared read buffer */
  char *tbuf;               /* the shared TLS plaintext buffer (lazy) */
  int rbuf_busy;            /* rbuf is lent to a read in progress */
  io_conn_t *dirty;         /* connections with bytes to flush */
  io_conn_t *conns;         /* every connection on this loop */
  io_server_t *servers;     /* every server on this loop */
  uv_prepare_t prepare;
  uv_check_t check;
  uv_timer_t timer;         /* the scheduler timer of the layer above */
  int closing;
  int nofile_checked;       /* io__nofile_limit ran */
  uint64_t nofile;          /* the open-files limit then, 0: none */
  /* Connection deadlines: a min-heap by io_conn_t.due, and one timer for
   * its top (io_loop.c). */
  io_conn_t **theap;
  size_t theap_len, theap_cap;
  uv_timer_t ctimer;
  uint64_t tdue;            /* when ctimer fires, 0 when stopped */
  /* Drained small output buffers, kept for the next connection that
   * sends: a busy loop then does not malloc and free one per connection
   * per turn, while idle connections hold none (io_conn.c).  The pool
   * holds at most as many as the last loop turn's sends started (demand),
   * so it empties when the traffic stops. */
  ws_buf_t *spare;
  size_t nspare, spare_cap, spare_bytes;
  size_t spare_demand;      /* output buffers started this turn */
  size_t spare_limit;       /* ... in the previous turn */
};

struct io_server {
  uv_tcp_t tcp;
  io_loop_t *loop;
  io_limits_t limits;
  int want_requests;        /* hand plain requests up (else 426) */
  io_tls_ctx_t *tls;        /* TLS context (a reference), or NULL */
  int port;
  int closed;               /* io_server_close was called */
  int listener_closed;      /* the listener's close callback ran */
  void *data;               /* for the layer above */
  io_server_t *next, *prev; /* in loop->servers */
  size_t nconns;            /* open connections of this server */
  uint64_t nofile;          /* the open-files limit at listen, 0: none */
  uint64_t accept_report_after; /* loop time of the next on_accept_error */
};

/* Connection phases. */
enum {
  IO_CONNECTING = 0,  /* client: resolving and connecting */
  IO_PROXY_HEAD,      /* client: reading the proxy's CONNECT answer */
  IO_RESP_HEAD,       /* client: reading the upgrade response head */
  IO_HTTP_HEAD,       /* reading a request head */
  IO_HTTP_BODY,       /* reading a Content-Length body */
  IO_HTTP_WAIT,       /* the head is with the layer above */
  IO_HTTP_STREAM,     /* a streaming answer: input is discarded, EOF ends */
  IO_HTTP_CLOSE,      /* an HTTP answer is being flushed, then close */
  IO_WS,              /* upgraded */
  IO_RAW,             /* client: a plain TCP stream, bytes handed up as is */
  IO_DRAIN,           /* all sent and FIN sent: discard input until EOF */
  IO_CLOSING          /* uv_close called */
};

/* What an upgrade request waiting for the layer above's answer needs,
 * allocated only then. */
struct io_upgrade {
  char key[WS_KEY_LEN + 1];  /* Sec-WebSocket-Key */
  ws_deflate_params_t ext_params;
  char *ext_response;       /* the agreed permessage-deflate answer, or
                               NULL */
};

/* A uv_write in flight, with the bytes being written. */
struct io_req {
  union {
    uv_write_t write;
  } u;
  ws_buf_t wbuf;            /* bytes handed to uv_write */
};

struct io_conn {
  uv_tcp_t tcp;
  io_loop_t *loop;
  io_server_t *server;      /* NULL for a client connection */
  const io_limits_t *lim;   /* the server's, or the client's own */
  struct io_client *client; /* client state, or NULL */
  io_tls_t *tls;            /* TLS state, or NULL */
  io_conn_t *next, *prev;   /* in loop->conns */
  io_conn_t *next_dirty;
  void *data;               /* for the layer above */
  ws_conn_t ws;             /* ws.out is also the HTTP output */
  ws_buf_t in;              /* a partial head or body */
  /* The request of a uv_write in flight, allocated only then: idle
   * connections hold none. */
  struct io_req *req;
  size_t consume;           /* bytes of `in` still used by the layer above */
  uint64_t due;             /* the earliest deadline below, in loop->theap */
  uint64_t deadline_http;   /* handshake deadline */
  uint64_t deadline_close;  /* close handshake deadline */
  uint64_t last_recv;       /* time of the last byte received */
  uint64_t next_ping;
  uint64_t pong_deadline;
  uint8_t phase;
  uint8_t close_reason_len;
  /* Flags, one bit each: every idle connection has them. */
  unsigned reading : 1;
  unsigned writing : 1;          /* a uv_write is in flight */
  unsigned is_dirty : 1;
  unsigned handed_up : 1;        /* on_request was called: owe on_closed */
  unsigned eof : 1;              /* the peer closed its side */
  unsigned paused : 1;           /* the layer above paused reading */
  unsigned keepalive : 1;        /* the HTTP request allows another one */
  unsigned close_after_flush : 1;/* end the connection once `out` is sent */
  unsigned want_drain : 1;       /* the layer above waits for on_drain */
  unsigned out_full : 1;         /* reading stopped: too much output queued */
  unsigned over_limit : 1;       /* accepted beyond max_connections: 503 */
  unsigned input_pending : 1;    /* `in` holds bytes to process at the flush */
  uint32_t theap_pos;       /* index in loop->theap + 1; 0: not there */
  int close_code;
  struct io_upgrade *up;    /* a waiting upgrade request, or NULL */
  const char *errname;      /* libuv error name of a failure, static */
  char *close_reason;       /* allocated when the connection ends */
};

/* Creates a loop context on `uv` (or on a new loop when NULL).  Returns
 * NULL on allocation failure. */
io_loop_t *io_loop_new(uv_loop_t *uv, const io_callbacks_t *cb);

/* Closes every handle, runs the loop until they are closed and frees the
 * context (and the loop if it was created here). */
void io_loop_free(io_loop_t *loop);

/* Arms the scheduler timer to fire after `ms` milliseconds (replacing an
 * earlier arming), or stops it when ms < 0. */
void io_loop_timer(io_loop_t *loop, int64_t ms);

/* Writes every connection's pending output now. */
void io_loop_flush(io_loop_t *loop);

/* Creates a server listening on host:port (an IPv4 or IPv6 literal).
 * Returns it, or NULL with *err set to a libuv error code. */
io_server_t *io_server_listen(io_loop_t *loop, const char *host, int port,
                              int backlog, const io_limits_t *limits,
                              io_tls_ctx_t *tls, int *err);

/* Stops listening and starts the close handshake on every connection with
 * `code` (e.g. 1001 going away); each one then ends by the usual rules
 * (close timeout).  The server's memory is freed once the listener and
 * every connection are closed; the layer above must not use `s` after
 * this call. */
void io_server_close(io_server_t *s, int code);

/* A client connection to be made. */
typedef struct io_client_opts {
  const char *host;       /* name or address to resolve and connect to */
  int port;
  const char *host_header; /* the Host header value */
  const char *target;     /* request target, e.g. "/chat?x=1" */
  const char *protocols;  /* comma list offered, or NULL */
  const char *extra;      /* extra request header lines, or NULL */
  size_t extra_len;
  const char *proxy_connect; /* a complete CONNECT request head to send
                                first (the host/port are the proxy's) */
  size_t proxy_connect_len;
  const io_limits_t *limits; /* handshake_timeout covers DNS, connect,
                                proxy, TLS and the upgrade */
  io_tls_ctx_t *tls;      /* wss: a client TLS context, or NULL */
  const char *servername; /* the name to verify and send as SNI */
  int raw;                /* no HTTP, no WebSocket: a TCP (or TLS)
                             stream; on_response(c, NULL, WS_HS_OK, ...)
                             says it is connected, on_message (opcode 0)
                             delivers the bytes */
} io_client_opts_t;

#define IO_EPROXY (-100)

/* Starts a client connection.  Returns the connection (whose events then
 * arrive through on_response and on_closed, even for a failure to
 * resolve or connect), or NULL with *err set to a libuv error code. */
io_conn_t *io_client_connect(io_loop_t *loop, const io_client_opts_t *o,
                             int *err);

/* What a client connection sent and received, for inspection.  Times are
 * seconds, -1 when the step did not happen. */
typedef struct io_client_info {
  const char *request;      /* the upgrade request head as sent */
  size_t request_len;
  const char *response;     /* the response head as received, or NULL */
  size_t response_len;
  const char *key;          /* Sec-WebSocket-Key sent */
  double dns_s, connect_s, handshake_s;
} io_client_info_t;

/* Fills *info for a client connection; returns 0, or -1 for a server
 * connection. */
int io_client_info(const io_conn_t *c, io_client_info_t *info);

/* Client: why the upgrade response failed its checks (static text), or
 * NULL. */
const char *io_client_errdetail(const io_conn_t *c);

/* The libuv error name of a failed connection (e.g. "ECONNREFUSED"), or
 * NULL. */
const char *io_conn_errname(const io_conn_t *c);

/* Accepts an upgrade: writes the 101 (with the protocol and extra header
 * lines, and permessage-deflate when it was agreed and use_deflate is
 * set), switches to WebSocket and feeds any bytes already received.
 * Returns 0 or a negative error (the connection is gone or not waiting). */
int io_conn_accept(io_conn_t *c, const char *protocol, const char *extra,
                   size_t extra_len, int use_deflate);

/* A waiting upgrade: was permessage-deflate offered acceptably? */
int io_conn_deflate_offered(const io_conn_t *c);

/* Is permessage-deflate on for this connection? */
int io_conn_deflate_on(const io_conn_t *c);

/* io_conn_send with WS_SEND_* flags (e.g. WS_SEND_NO_COMPRESS). */
int io_conn_send_ex(io_conn_t *c, int opcode, const void *data, size_t len,
                    int flags);

/* Queues raw bytes (an HTTP answer).  Returns 0 or -1. */
int io_conn_write(io_conn_t *c, const void *data, size_t len);

/* Switches a waiting request to a streaming answer (e.g. Server-Sent
 * Events): the handshake timeout stops, input is read and discarded so
 * that the peer's disconnection is noticed (on_closed). */
void io_conn_http_stream(io_conn_t *c);

/* Ends an HTTP answer: with keepalive, reads the next request; otherwise
 * closes once the answer is flushed. */
void io_conn_http_done(io_conn_t *c, int keepalive);

/* Queues a message or a ping/pong: returns a WS_CONN_* code. */
int io_conn_send(io_conn_t *c, int opcode, const void *data, size_t len);

/* Starts the close handshake (close_timeout applies).  Returns a WS_CONN_*
 * code. */
int io_conn_close(io_conn_t *c, int code, const char *reason, size_t len);

/* Closes the TCP connection at once. */
void io_conn_abort(io_conn_t *c, int code, const char *reason);

/* Asks for one on_drain call once the queue is below the high-water
 * mark. */
void io_conn_want_drain(io_conn_t *c);

/* Graceful shutdown: stop accepting, send a close frame with `code` to
 * every WebSocket (after what is already queued), answer connections still
 * in HTTP with nothing more, and give every peer `timeout_ms` to close
 * before its connection is cut. */
void io_server_shutdown(io_server_t *s, int code, uint64_t timeout_ms);

/* Raw streams: closes once everything queued is written. */
void io_conn_end(io_conn_t *c);

/* Stops or restarts reading from the socket (receive backpressure). */
void io_conn_pause(io_conn_t *c, int paused);

/* Bytes queued and not yet taken by the kernel. */
size_t io_conn_buffered(const io_conn_t *c);

/* The peer's address as text and its port.  Returns 0 or a libuv error. */
int io_conn_peer(const io_conn_t *c, char *ip, size_t iplen, int *port);

#endif
