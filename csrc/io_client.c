/*
 * io_client: outgoing connections.  Resolves the host with libuv's
 * resolver, tries each address in turn (IPv6 and IPv4), optionally sends a
 * CONNECT request to an HTTP proxy first, sends the upgrade request, and
 * checks the response head (RFC 6455 §4.1) before the connection becomes a
 * client-role WebSocket.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "io_internal.h"

typedef struct io_client {
  io_limits_t lim;
  uv_getaddrinfo_t gai;
  uv_connect_t creq;
  struct addrinfo *ai_head, *ai_next;
  char *host;
  char *protocols;
  char *servername;
  io_tls_ctx_t *tls;
  ws_buf_t request;      /* the upgrade request, sent after any CONNECT */
  ws_buf_t proxy;        /* the CONNECT request, or empty */
  char key[WS_KEY_LEN + 1];
  int last_err;
  uint64_t t_start, t_resolved, t_connected, t_response; /* uv_hrtime */
  char *response_head;   /* a copy of the raw response head */
  size_t response_len;
  const char *errdetail; /* why the response check failed, static */
  uint8_t resolving;
  uint8_t connecting;
  uint8_t raw;
} io_client_t;

static void client_free(io_client_t *cl) {
  if (!cl) return;
  if (cl->ai_head) uv_freeaddrinfo(cl->ai_head);
  free(cl->host);
  free(cl->protocols);
  free(cl->servername);
  io_tls_ctx_unref(cl->tls);
  free(cl->response_head);
  ws_buf_free(&cl->request);
  ws_buf_free(&cl->proxy);
  free(cl);
}

const char *io_client_errdetail(const io_conn_t *c) {
  return c->client ? c->client->errdetail : NULL;
}

void io__client_free(io_conn_t *c) {
  io_client_t *cl = c->client;
  c->client = NULL;
  if (cl && cl->resolving) {
    /* uv_cancel() cannot stop a getaddrinfo() already running on a worker
     * thread: cl->gai stays in use until on_resolved, which frees cl. */
    cl->gai.data = NULL;
    return;
  }
  client_free(cl);
}

const char *io_conn_errname(const io_conn_t *c) {
  return c ? c->errname : NULL;
}

static void fail(io_conn_t *c, int err, const char *what) {
  char msg[120];
  c->errname = uv_err_name(err);
  snprintf(msg, sizeof msg, "%s: %s", what, uv_strerror(err));
  io_conn_abort(c, 1006, msg);
}

static void try_next(io_conn_t *c);

/* The handle of a failed connect attempt is closed; reopen it and try the
 * next address, unless the connection was closed meanwhile. */
static void on_retry_closed(uv_handle_t *h) {
  io_conn_t *c = h->data;
  if (c->phase == IO_CLOSING) {
    io__conn_closed(h);
    return;
  }
  uv_tcp_init(c->loop->uv, &c->tcp);
  c->tcp.data = c;
  try_next(c);
}

static void on_connect(uv_connect_t *req, int status) {
  io_conn_t *c = req->data;
  io_client_t *cl = c->client;
  cl->connecting = 0;
  if (c->phase == IO_CLOSING) return;
  if (status < 0) {
    cl->last_err = status;
    if (cl->ai_next) {
      /* A failed connect leaves the handle unusable: start over on a
       * fresh one.  The deadline and the rest of the connection stay. */
      uv_close((uv_handle_t *)&c->tcp, on_retry_closed);
      return;
    }
    fail(c, status, "connect");
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  cl->t_connected = uv_hrtime();
  if (cl->raw) {
    c->phase = IO_RAW;
    c->deadline_http = 0;
    io__conn_arm(c);
    if (cl->tls && io__tls_start(c, cl->tls, cl->servername) != 0) {
      io_conn_abort(c, 1006, "cannot start TLS");
      return;
    }
    ws_slice_t none = {NULL, 0};
    if (c->loop->cb.on_response && !c->loop->closing)
      c->loop->cb.on_response(c, NULL, WS_HS_OK, none);
    if (c->phase == IO_CLOSING) return;
    io__conn_start(c);
    return;
  }
  if (WS_BUF_SIZE(&cl->proxy)) {
    c->phase = IO_PROXY_HEAD;
    io_conn_write(c, WS_BUF_PTR(&cl->proxy), WS_BUF_SIZE(&cl->proxy));
  } else {
    c->phase = IO_RESP_HEAD;
    if (cl->tls && io__tls_start(c, cl->tls, cl->servername) != 0) {
      io_conn_abort(c, 1006, "cannot start TLS");
      return;
    }
    io_conn_write(c, WS_BUF_PTR(&cl->request), WS_BUF_SIZE(&cl->request));
  }
  io__conn_start(c);
}

static void try_next(io_conn_t *c) {
  io_client_t *cl = c->client;
  struct addrinfo *ai = cl->ai_next;
  while (ai && ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
    ai = ai->ai_next;
  if (!ai) {
    fail(c, cl->last_err ? cl->last_err : UV_EADDRNOTAVAIL, "connect");
    return;
  }
  cl->ai_next = ai->ai_next;
  cl->creq.data = c;
  int r = uv_tcp_connect(&cl->creq, &c->tcp, ai->ai_addr, on_connect);
  if (r) {
    cl->last_err = r;
    if (cl->ai_next) {
      try_next(c);
      return;
    }
    fail(c, r, "connect");
    return;
  }
  cl->connecting = 1;
}

static void on_resolved(uv_getaddrinfo_t *req, int status,
                        struct addrinfo *res) {
  io_conn_t *c = req->data;
  io_client_t *cl =
      (io_client_t *)((char *)req - offsetof(io_client_t, gai));
  cl->resolving = 0;
  if (!c) { /* the connection was freed while resolving */
    if (res) uv_freeaddrinfo(res);
    client_free(cl);
    return;
  }
  if (status == UV_ECANCELED || c->phase == IO_CLOSING) {
    if (res) uv_freeaddrinfo(res);
    return;
  }
  if (status < 0) {
    fail(c, status, "resolve");
    return;
  }
  cl->ai_head = cl->ai_next = res;
  cl->t_resolved = uv_hrtime();
  try_next(c);
}

/* Cancels a resolution or connection in progress (the connection is being
 * closed). */
void io__client_cancel(io_conn_t *c) {
  if (c->client && c->client->resolving)
    uv_cancel((uv_req_t *)&c->client->gai);
}

io_conn_t *io_client_connect(io_loop_t *loop, const io_client_opts_t *o,
                             int *err) {
  io_conn_t *c = calloc(1, sizeof *c);
  io_client_t *cl = calloc(1, sizeof *cl);
  char port[16];
  (void)io__nofile_limit(loop);
  if (!c || !cl) goto nomem;
  cl->lim = *o->limits;
  cl->raw = o->raw ? 1 : 0;
  if (!cl->lim.max_head_size) cl->lim.max_head_size = WS_HTTP_MAX_HEAD;
  if (!cl->lim.max_headers) cl->lim.max_headers = WS_HTTP_MAX_HEADERS;
  cl->host = strdup(o->host);
  cl->protocols = o->protocols && *o->protocols ? strdup(o->protocols) : NULL;
  if (!cl->host || (o->protocols && *o->protocols && !cl->protocols))
    goto nomem;
  if (ws_handshake_new_key(cl->key) != 0) goto nomem;
  {
    /* Offer permessage-deflate when configured. */
    ws_buf_t extra = {0};
    if (!o->raw && cl->lim.deflate.enabled) {
      char offer[WS_DEFLATE_HEADER_MAX];
      size_t n = ws_deflate_client_offer(&cl->lim.deflate, offer);
      static const char name[] = "Sec-WebSocket-Extensions: ";
      if (ws_buf_append(&extra, name, sizeof name - 1, 0) ||
          ws_buf_append(&extra, offer, n, 0) ||
          ws_buf_append(&extra, "\r\n", 2, 0)) {
        ws_buf_free(&extra);
        goto nomem;
      }
    }
    if (o->extra_len && ws_buf_append(&extra, o->extra, o->extra_len, 0)) {
      ws_buf_free(&extra);
      goto nomem;
    }
    int w = ws_handshake_write_request(
        &cl->request, o->host_header, o->target, cl->key, cl->protocols,
        WS_BUF_SIZE(&extra) ? (const char *)WS_BUF_PTR(&extra) : NULL,
        WS_BUF_SIZE(&extra));
    ws_buf_free(&extra);
    if (w != 0) goto nomem;
  }
  if (o->tls) {
    cl->tls = o->tls;
    io_tls_ctx_ref(o->tls);
    cl->servername = strdup(o->servername ? o->servername : o->host);
    if (!cl->servername) goto nomem;
  }
  if (o->proxy_connect_len &&
      ws_buf_append(&cl->proxy, o->proxy_connect, o->proxy_connect_len, 0))
    goto nomem;

  c->loop = loop;
  c->client = cl;
  c->lim = &cl->lim;
  uv_tcp_init(loop->uv, &c->tcp);
  c->tcp.data = c;
  io__ws_init(c, WS_ROLE_CLIENT);
  io__conn_list_add(c);
  c->phase = IO_CONNECTING;
  c->handed_up = 1; /* the layer above holds it from the start */
  uv_update_time(loop->uv); /* we may be called outside the loop */
  c->last_recv = uv_now(loop->uv);
  if (cl->lim.handshake_timeout)
    c->deadline_http = c->last_recv + cl->lim.handshake_timeout;
  io__conn_arm(c);

  struct addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_ADDRCONFIG;
  snprintf(port, sizeof port, "%d", o->port);
  cl->gai.data = c;
  cl->t_start = uv_hrtime();
  int r = uv_getaddrinfo(loop->uv, &cl->gai, on_resolved, cl->host, port,
                         &hints);
  if (r) {
    /* Report through the usual close path so the caller sees one way. */
    fail(c, r, "resolve");
    return c;
  }
  cl->resolving = 1;
  return c;

nomem:
  client_free(cl);
  free(c);
  *err = UV_ENOMEM;
  return NULL;
}

/* Parses the proxy's answer or the upgrade response.  `data` is the read
 * buffer or c->in. */
void io__client_input(io_conn_t *c, const uint8_t *data, size_t n) {
  io_client_t *cl = c->client;
  ws_header_t headers[WS_HTTP_MAX_HEADERS];
  ws_http_response_t res;
  size_t maxh = c->lim->max_headers;
  if (maxh > WS_HTTP_MAX_HEADERS) maxh = WS_HTTP_MAX_HEADERS;
  int in_place = data != WS_BUF_PTR(&c->in) || WS_BUF_SIZE(&c->in) == 0;
  int len = ws_http_parse_response((const char *)data, n,
                                   c->lim->max_head_size, &res, headers, maxh);
  if (len == WS_HTTP_PARTIAL) {
    if (in_place && ws_buf_append(&c->in, data, n, 0) != 0)
      io_conn_abort(c, 1006, "out of memory");
    return;
  }
  if (len < 0) {
    c->errname = "EHANDSHAKE";
    char msg[100];
    snprintf(msg, sizeof msg, "invalid response head: %s",
             ws_http_strerror(len));
    io_conn_abort(c, 1006, msg);
    return;
  }
  ws_slice_t proto = {NULL, 0};
  if (c->phase == IO_PROXY_HEAD) {
    if (res.status / 100 != 2) {
      if (c->loop->cb.on_response && !c->loop->closing)
        c->loop->cb.on_response(c, &res, IO_EPROXY, proto);
      c->errname = "EPROXY";
      io_conn_abort(c, 1006, "the proxy refused the CONNECT request");
      return;
    }
    /* The tunnel is open: what follows belongs to the server. */
    if (in_place) {
      ws_buf_free(&c->in);
      if (n > (size_t)len) ws_buf_append(&c->in, data + len, n - len, 0);
    } else {
      ws_buf_consume(&c->in, (size_t)len);
    }
    c->phase = IO_RESP_HEAD;
    if (cl->tls && io__tls_start(c, cl->tls, cl->servername) != 0) {
      io_conn_abort(c, 1006, "cannot start TLS");
      return;
    }
    io_conn_write(c, WS_BUF_PTR(&cl->request), WS_BUF_SIZE(&cl->request));
    if (WS_BUF_SIZE(&c->in)) {
      /* Bytes after the proxy's answer already belong to the tunnel. */
      ws_buf_t rest = c->in;
      memset(&c->in, 0, sizeof c->in);
      if (c->tls) io__tls_input(c, (const char *)WS_BUF_PTR(&rest), WS_BUF_SIZE(&rest));
      else io__conn_plaintext(c, WS_BUF_PTR(&rest), WS_BUF_SIZE(&rest));
      ws_buf_free(&rest);
    }
    return;
  }
  cl->t_response = uv_hrtime();
  free(cl->response_head);
  cl->response_head = malloc((size_t)len);
  if (cl->response_head) {
    memcpy(cl->response_head, data, (size_t)len);
    cl->response_len = (size_t)len;
  }
  int result = ws_handshake_check_response(&res, cl->key, cl->protocols,
                                           cl->lim.deflate.enabled, &proto);
  ws_deflate_params_t agreed;
  const char *ext_reason = NULL;
  int ext = 0;
  if (result == WS_HS_OK && cl->lim.deflate.enabled) {
    ext = ws_deflate_client_accept_headers(&cl->lim.deflate, res.headers,
                                           res.num_headers, &agreed,
                                           &ext_reason);
    if (ext < 0) {
      result = WS_HS_EEXTENSION;
      cl->errdetail = ext_reason;
    }
  }
  if (result == WS_HS_OK) {
    /* Keep what followed the head (frames the server sent at once) for
     * the WebSocket parser, then switch. */
    if (in_place) {
      ws_buf_free(&c->in);
      if (n > (size_t)len &&
          ws_buf_append(&c->in, data + len, n - len, 0) != 0) {
        io_conn_abort(c, 1006, "out of memory");
        return;
      }
    }
    c->consume = in_place ? 0 : (size_t)len;
    c->phase = IO_WS;
    c->ws.lim = &c->lim->ws;
    if (ext == 1) {
      ws_deflate_t *d = ws_deflate_new(&cl->lim.deflate, &agreed, 0);
      if (!d) {
        io_conn_abort(c, 1006, "out of memory");
        return;
      }
      ws_conn_set_deflate(&c->ws, d);
    }
    uint64_t now = uv_now(c->loop->uv);
    c->last_recv = now;
    c->next_ping = c->lim->ping_interval ? now + c->lim->ping_interval : 0;
    c->deadline_http = 0;
  }
  if (c->loop->cb.on_response && !c->loop->closing)
    c->loop->cb.on_response(c, &res, result, proto);
  if (c->phase == IO_CLOSING) return;
  if (result != WS_HS_OK) {
    c->errname = ws_handshake_errname(result);
    char msg[120];
    snprintf(msg, sizeof msg, "handshake failed: %s%s%s",
             ws_handshake_strerror(result), ext_reason ? ": " : "",
             ext_reason ? ext_reason : "");
    io_conn_abort(c, 1006, msg);
    return;
  }
  if (c->consume) {
    ws_buf_consume(&c->in, c->consume);
    c->consume = 0;
  }
  io__conn_arm(c);
  if (WS_BUF_SIZE(&c->in)) c->input_pending = 1;
  io__conn_mark_dirty(c);
}

int io_client_info(const io_conn_t *c, io_client_info_t *info) {
  const io_client_t *cl = c ? c->client : NULL;
  if (!cl) return -1;
  info->request = (const char *)WS_BUF_PTR(&cl->request);
  info->request_len = WS_BUF_SIZE(&cl->request);
  info->response = cl->response_head;
  info->response_len = cl->response_head ? cl->response_len : 0;
  info->key = cl->key;
  info->dns_s = cl->t_resolved ? (double)(cl->t_resolved - cl->t_start) / 1e9 : -1;
  info->connect_s = cl->t_connected && cl->t_resolved
                        ? (double)(cl->t_connected - cl->t_resolved) / 1e9 : -1;
  info->handshake_s = cl->t_response && cl->t_connected
                          ? (double)(cl->t_response - cl->t_connected) / 1e9 : -1;
  return 0;
}
