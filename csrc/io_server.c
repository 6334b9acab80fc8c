/*
 * io_server: listening sockets and accepting connections.
 */
#define _DEFAULT_SOURCE 1 /* SO_REUSEPORT */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "io_internal.h"



void io__server_free_if_done(io_server_t *s) {
  if (!(s->closed && s->listener_closed && s->nconns == 0)) return;
  io_loop_t *loop = s->loop;
  if (s->prev) s->prev->next = s->next;
  else loop->servers = s->next;
  if (s->next) s->next->prev = s->prev;
  io_tls_ctx_unref(s->tls);
  free(s);
}

static void on_failed_close(uv_handle_t *h) {
  io_server_t *s = h->data;
  io_tls_ctx_unref(s->tls);
  free(s);
}

/* Reports what keeps the server from accepting, at most once a second. */
static void accept_failed(io_server_t *s, int err, uint64_t nofile) {
  io_loop_t *loop = s->loop;
  uint64_t now = uv_now(loop->uv);
  if (s->accept_report_after && now < s->accept_report_after) return;
  s->accept_report_after = now + 1000;
  if (loop->cb.on_accept_error) loop->cb.on_accept_error(s, err, nofile);
}

static void on_connection(uv_stream_t *server, int status) {
  io_server_t *s = server->data;
  io_loop_t *loop = s->loop;
  if (s->closed) return;
  if (status < 0) {
    accept_failed(s, status, 0);
    return;
  }
  io_conn_t *c = calloc(1, sizeof *c);
  if (!c) return;
  if (uv_tcp_init(loop->uv, &c->tcp) != 0) {
    free(c);
    return;
  }
  c->tcp.data = c;
  c->loop = loop;
  c->server = s;
  c->lim = &s->limits;
  io__ws_init(c, WS_ROLE_SERVER);
  io__conn_list_add(c);
  s->nconns++;
  if (s->limits.max_connections && s->nconns > s->limits.max_connections)
    c->over_limit = 1;
  int r = uv_accept(server, (uv_stream_t *)&c->tcp);
  if (r != 0) {
    io_conn_abort(c, 1006, "accept failed");
    accept_failed(s, r, 0);
    return;
  }
  /* Descriptors are handed out lowest first: the highest one means that
   * none is left, and libuv drops the next connections unseen. */
  uv_os_fd_t fd;
  if (s->nofile && uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0 &&
      (uint64_t)fd + 1 >= s->nofile)
    accept_failed(s, UV_EMFILE, s->nofile);
#ifndef __linux__
  /* Linux copies TCP_NODELAY from the listener (set below) to every
   * accepted socket: one setsockopt less per connection there. */
  uv_tcp_nodelay(&c->tcp, 1);
#endif
  c->phase = IO_HTTP_HEAD;
  c->last_recv = uv_now(loop->uv);
  if (s->limits.handshake_timeout)
    c->deadline_http = c->last_recv + s->limits.handshake_timeout;
  if (s->tls && io__tls_start(c, s->tls, NULL) != 0) {
    io_conn_abort(c, 1006, "cannot start TLS");
    return;
  }
  io__conn_arm(c);
  io__conn_start(c);
}

io_server_t *io_server_listen(io_loop_t *loop, const char *host, int port,
                              int backlog, const io_limits_t *limits,
                              io_tls_ctx_t *tls, int *err) {
  struct sockaddr_storage addr;
  int r;
  if (strchr(host, ':'))
    r = uv_ip6_addr(host, port, (struct sockaddr_in6 *)&addr);
  else
    r = uv_ip4_addr(host, port, (struct sockaddr_in *)&addr);
  if (r) {
    *err = r;
    return NULL;
  }
  io_server_t *s = calloc(1, sizeof *s);
  if (!s) {
    *err = UV_ENOMEM;
    return NULL;
  }
  s->nofile = io__nofile_limit(loop);
  s->loop = loop;
  s->limits = *limits;
  s->tls = tls;
  if (tls) io_tls_ctx_ref(tls);
  uv_tcp_init(loop->uv, &s->tcp);
  s->tcp.data = s;
  if (limits->reuseport) {
    /* libuv of Debian 12 has no UV_TCP_REUSEPORT: make the socket here,
     * so several processes can each listen on the port. */
    int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0) {
      r = uv_translate_sys_error(errno);
    } else if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) ||
               setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one)) {
      r = uv_translate_sys_error(errno);
      close(fd);
    } else if ((r = uv_tcp_open(&s->tcp, fd)) != 0) {
      close(fd);
    }
    if (!r) r = uv_tcp_bind(&s->tcp, (const struct sockaddr *)&addr, 0);
  } else {
    r = uv_tcp_bind(&s->tcp, (const struct sockaddr *)&addr, 0);
  }
  if (!r) r = uv_tcp_nodelay(&s->tcp, 1);
  if (!r) r = uv_listen((uv_stream_t *)&s->tcp, backlog, on_connection);
  if (r) {
    *err = r;
    uv_close((uv_handle_t *)&s->tcp, on_failed_close);
    return NULL;
  }
  struct sockaddr_storage bound;
  int blen = sizeof bound;
  uv_tcp_getsockname(&s->tcp, (struct sockaddr *)&bound, &blen);
  if (bound.ss_family == AF_INET6)
    s->port = ntohs(((struct sockaddr_in6 *)&bound)->sin6_port);
  else
    s->port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
  s->next = loop->servers;
  if (loop->servers) loop->servers->prev = s;
  loop->servers = s;
  return s;
}

static void on_listener_closed(uv_handle_t *h) {
  io_server_t *s = h->data;
  s->listener_closed = 1;
  io__server_free_if_done(s);
}

void io_server_close(io_server_t *s, int code) {
  if (!s) return;
  if (!s->closed) {
    s->closed = 1;
    uv_close((uv_handle_t *)&s->tcp, on_listener_closed);
  }
  for (io_conn_t *c = s->loop->conns; c; c = c->next) {
    if (c->server != s) continue;
    if (c->phase == IO_WS && code) {
      io_conn_close(c, code, "server closing", 14);
    } else if (c->phase < IO_WS) {
      io_conn_abort(c, 1001, "server closing");
    }
  }
}

void io_server_shutdown(io_server_t *s, int code, uint64_t timeout_ms) {
  if (!s) return;
  uint64_t now = uv_now(s->loop->uv);
  if (!s->closed) {
    s->closed = 1;
    uv_close((uv_handle_t *)&s->tcp, on_listener_closed);
  }
  for (io_conn_t *c = s->loop->conns; c; c = c->next) {
    if (c->server != s || c->phase == IO_CLOSING) continue;
    if (c->phase == IO_WS) {
      io_conn_close(c, code, "server shutting down", 20);
      c->deadline_close = now + timeout_ms;
      io__conn_arm(c);
    } else if (c->phase == IO_HTTP_HEAD || c->phase == IO_HTTP_BODY) {
      io_conn_abort(c, 1001, "server shutting down");
    } else {
      /* An answer in progress (HTTP_WAIT: the layer above will answer
       * and see its keep-alive refused; HTTP_CLOSE, DRAIN: ending). */
      c->keepalive = 0;
      if (!c->deadline_close || c->deadline_close > now + timeout_ms) {
        c->deadline_close = now + timeout_ms;
        io__conn_arm(c);
      }
    }
  }
}
