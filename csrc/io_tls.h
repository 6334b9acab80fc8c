/*
 * io_tls: TLS for io connections, with OpenSSL driven through memory BIOs
 * over the libuv stream: no blocking sockets, no second thread.
 *
 * Ciphertext read from the socket is written into the SSL's input BIO and
 * the plaintext that SSL_read yields is processed as a plain connection
 * would process its bytes.  Plaintext queued in the connection's output
 * is encrypted with SSL_write at flush time and the ciphertext the output
 * BIO collects is what gets written to the socket.
 */
#ifndef UVWS_IO_TLS_H
#define UVWS_IO_TLS_H

#include <stddef.h>

#include "ws_buf.h"

typedef struct io_conn io_conn_t;
typedef struct io_tls_ctx io_tls_ctx_t;
typedef struct io_tls io_tls_t;

/* Where a certificate, key or CA comes from: PEM text (it contains
 * "-----BEGIN") or a file name. */
typedef struct io_tls_opts {
  const char *cert;
  const char *key;
  const char *ca;          /* CA to verify the peer with (server: client
                              certificates; client: instead of the
                              system store) */
  int verify_peer;         /* server: require a client certificate */
  int insecure;            /* client: verify nothing */
  int is_server;
} io_tls_opts_t;

/* Creates a context.  Returns it with one reference, or NULL and a message
 * in err (err_size bytes). */
io_tls_ctx_t *io_tls_ctx_new(const io_tls_opts_t *o, char *err,
                             size_t err_size);

/* Adds a certificate for an SNI host name (server).  Returns 0 or -1 with
 * a message. */
int io_tls_ctx_add_sni(io_tls_ctx_t *ctx, const char *host,
                       const io_tls_opts_t *o, char *err, size_t err_size);

void io_tls_ctx_ref(io_tls_ctx_t *ctx);
void io_tls_ctx_unref(io_tls_ctx_t *ctx);

/* Starts TLS on a connection: server side, or client side for `host`
 * (verified as a DNS name or an IP address, and sent as SNI when a name).
 * Returns 0 or -1. */
int io__tls_start(io_conn_t *c, io_tls_ctx_t *ctx, const char *host);

/* Feeds ciphertext received; processes the plaintext it yields. */
void io__tls_input(io_conn_t *c, const char *data, size_t n);

/* Encrypts what the connection has queued; returns the buffer of
 * ciphertext to write (or NULL on a fatal error, the connection being
 * aborted). */
ws_buf_t *io__tls_output(io_conn_t *c);

/* Queues a close_notify alert; returns 1 if it was queued now, 0 if it
 * was before or the handshake never completed. */
int io__tls_shutdown(io_conn_t *c);

/* Ciphertext bytes waiting to be written. */
size_t io__tls_pending(const io_conn_t *c);

/* Is the handshake complete? */
int io__tls_ready(const io_conn_t *c);

void io__tls_free(io_conn_t *c);

/* Facts about an established session, for inspection.  Strings are valid
 * until the connection is freed.  Returns 0 or -1 (no TLS). */
typedef struct io_tls_info {
  const char *version;     /* "TLSv1.3" */
  const char *cipher;
  char alpn[32];
  char subject[256];       /* peer certificate subject, one line */
  char issuer[256];
  char not_after[64];      /* expiry, as OpenSSL prints it */
  int verified;            /* the chain and name were verified */
} io_tls_info_t;
int io_tls_info(const io_conn_t *c, io_tls_info_t *info);

#endif
