/*
 * io_tls: OpenSSL over memory BIOs.  See io_tls.h.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "io_internal.h"

#define TLS_CHUNK 16384

typedef struct sni_entry {
  char *host;
  SSL_CTX *ctx;
} sni_entry_t;

struct io_tls_ctx {
  int refs;
  int is_server;
  int insecure;
  SSL_CTX *ctx;
  sni_entry_t *sni;
  size_t nsni;
};

struct io_tls {
  SSL *ssl;
  BIO *in;           /* ciphertext from the network, read by SSL */
  BIO *out;          /* ciphertext written by SSL, sent by us */
  ws_buf_t cout;     /* ciphertext waiting for the socket */
  io_tls_ctx_t *ctx;
  uint8_t ready;     /* handshake complete */
  uint8_t shutdown;  /* close_notify queued */
  uint8_t is_server;
};

static void set_err(char *err, size_t n, const char *what) {
  unsigned long e = ERR_get_error();
  char buf[200];
  if (e) {
    ERR_error_string_n(e, buf, sizeof buf);
    snprintf(err, n, "%s: %s", what, buf);
  } else {
    snprintf(err, n, "%s", what);
  }
  ERR_clear_error();
}

static int is_pem(const char *s) { return strstr(s, "-----BEGIN") != NULL; }

static int load_cert_key(SSL_CTX *ctx, const char *cert, const char *key,
                         char *err, size_t n) {
  int ok;
  if (is_pem(cert)) {
    BIO *b = BIO_new_mem_buf(cert, -1);
    X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    ok = x && SSL_CTX_use_certificate(ctx, x) == 1;
    X509_free(x);
    /* The rest of the PEM text is the chain. */
    while (ok) {
      X509 *extra = PEM_read_bio_X509(b, NULL, NULL, NULL);
      if (!extra) break;
      if (SSL_CTX_add_extra_chain_cert(ctx, extra) != 1) {
        X509_free(extra);
        ok = 0;
      }
    }
    ERR_clear_error(); /* the end of the chain reads as an error */
    BIO_free(b);
  } else {
    ok = SSL_CTX_use_certificate_chain_file(ctx, cert) == 1;
  }
  if (!ok) {
    set_err(err, n, "cannot load the certificate");
    return -1;
  }
  if (is_pem(key)) {
    BIO *b = BIO_new_mem_buf(key, -1);
    EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
    ok = k && SSL_CTX_use_PrivateKey(ctx, k) == 1;
    EVP_PKEY_free(k);
    BIO_free(b);
  } else {
    ok = SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) == 1;
  }
  if (!ok) {
    set_err(err, n, "cannot load the private key");
    return -1;
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    set_err(err, n, "the private key does not match the certificate");
    return -1;
  }
  return 0;
}

static int load_ca(SSL_CTX *ctx, const char *ca, char *err, size_t n) {
  if (is_pem(ca)) {
    BIO *b = BIO_new_mem_buf(ca, -1);
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    int count = 0;
    X509 *x;
    while (b && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
      X509_STORE_add_cert(store, x);
      X509_free(x);
      count++;
    }
    ERR_clear_error();
    BIO_free(b);
    if (!count) {
      snprintf(err, n, "no certificate in the CA text");
      return -1;
    }
    return 0;
  }
  if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
    set_err(err, n, "cannot load the CA file");
    return -1;
  }
  return 0;
}

/* ALPN: this server speaks HTTP/1.1 (the WebSocket upgrade needs it).  A
 * client offering only other protocols gets no ALPN answer. */
static int on_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg) {
  static const unsigned char h11[] = "\x08http/1.1";
  (void)ssl;
  (void)arg;
  if (SSL_select_next_proto((unsigned char **)out, outlen, h11,
                            sizeof h11 - 1, in, inlen) ==
      OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_OK;
  return SSL_TLSEXT_ERR_NOACK;
}

static int on_servername(SSL *ssl, int *al, void *arg) {
  io_tls_ctx_t *t = arg;
  const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  (void)al;
  if (!name) return SSL_TLSEXT_ERR_OK;
  for (size_t i = 0; i < t->nsni; i++) {
    if (OPENSSL_strcasecmp(t->sni[i].host, name) == 0) {
      SSL_set_SSL_CTX(ssl, t->sni[i].ctx);
      return SSL_TLSEXT_ERR_OK;
    }
  }
  return SSL_TLSEXT_ERR_OK; /* the default certificate */
}

static SSL_CTX *new_ssl_ctx(int is_server) {
  SSL_CTX *ctx = SSL_CTX_new(is_server ? TLS_server_method()
                                       : TLS_client_method());
  if (!ctx) return NULL;
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  if (is_server) SSL_CTX_set_alpn_select_cb(ctx, on_alpn, NULL);
  return ctx;
}

io_tls_ctx_t *io_tls_ctx_new(const io_tls_opts_t *o, char *err,
                             size_t err_size) {
  io_tls_ctx_t *t = calloc(1, sizeof *t);
  if (!t) {
    snprintf(err, err_size, "out of memory");
    return NULL;
  }
  t->refs = 1;
  t->is_server = o->is_server;
  t->insecure = o->insecure;
  t->ctx = new_ssl_ctx(o->is_server);
  if (!t->ctx) {
    set_err(err, err_size, "cannot create a TLS context");
    goto fail;
  }
  if (o->is_server) {
    if (!o->cert || !o->key) {
      snprintf(err, err_size, "a TLS server needs cert and key");
      goto fail;
    }
    if (load_cert_key(t->ctx, o->cert, o->key, err, err_size)) goto fail;
    SSL_CTX_set_tlsext_servername_callback(t->ctx, on_servername);
    SSL_CTX_set_tlsext_servername_arg(t->ctx, t);
    if (o->ca && load_ca(t->ctx, o->ca, err, err_size)) goto fail;
    if (o->verify_peer)
      SSL_CTX_set_verify(t->ctx,
                         SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                         NULL);
  } else {
    if (o->insecure) {
      SSL_CTX_set_verify(t->ctx, SSL_VERIFY_NONE, NULL);
    } else {
      SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, NULL);
      if (o->ca) {
        if (load_ca(t->ctx, o->ca, err, err_size)) goto fail;
      } else if (SSL_CTX_set_default_verify_paths(t->ctx) != 1) {
        set_err(err, err_size, "cannot load the system CA store");
        goto fail;
      }
    }
    if (o->cert && o->key &&
        load_cert_key(t->ctx, o->cert, o->key, err, err_size))
      goto fail;
    static const unsigned char h11[] = "\x08http/1.1";
    SSL_CTX_set_alpn_protos(t->ctx, h11, sizeof h11 - 1);
  }
  return t;
fail:
  io_tls_ctx_unref(t);
  return NULL;
}

int io_tls_ctx_add_sni(io_tls_ctx_t *t, const char *host,
                       const io_tls_opts_t *o, char *err, size_t err_size) {
  SSL_CTX *ctx = new_ssl_ctx(1);
  if (!ctx) {
    set_err(err, err_size, "cannot create a TLS context");
    return -1;
  }
  if (load_cert_key(ctx, o->cert, o->key, err, err_size)) {
    SSL_CTX_free(ctx);
    return -1;
  }
  /* Client verification follows the default context. */
  SSL_CTX_set_verify(ctx, SSL_CTX_get_verify_mode(t->ctx), NULL);
  X509_STORE *store = SSL_CTX_get_cert_store(t->ctx);
  if (store) {
    X509_STORE_up_ref(store);
    SSL_CTX_set_cert_store(ctx, store);
  }
  sni_entry_t *n = realloc(t->sni, (t->nsni + 1) * sizeof *n);
  if (!n || !(n[t->nsni].host = strdup(host))) {
    if (n) t->sni = n;
    SSL_CTX_free(ctx);
    snprintf(err, err_size, "out of memory");
    return -1;
  }
  n[t->nsni].ctx = ctx;
  t->sni = n;
  t->nsni++;
  return 0;
}

void io_tls_ctx_ref(io_tls_ctx_t *t) { t->refs++; }

void io_tls_ctx_unref(io_tls_ctx_t *t) {
  if (!t || --t->refs > 0) return;
  for (size_t i = 0; i < t->nsni; i++) {
    free(t->sni[i].host);
    SSL_CTX_free(t->sni[i].ctx);
  }
  free(t->sni);
  SSL_CTX_free(t->ctx);
  free(t);
}

/* ---- per connection -------------------------------------------------------- */

static int is_ip(const char *host) {
  unsigned char buf[16];
  return uv_inet_pton(AF_INET, host, buf) == 0 ||
         uv_inet_pton(AF_INET6, host, buf) == 0;
}

int io__tls_start(io_conn_t *c, io_tls_ctx_t *ctx, const char *host) {
  io_tls_t *t = calloc(1, sizeof *t);
  if (!t) return -1;
  t->ssl = SSL_new(ctx->ctx);
  t->in = BIO_new(BIO_s_mem());
  t->out = BIO_new(BIO_s_mem());
  if (!t->ssl || !t->in || !t->out) {
    SSL_free(t->ssl);
    BIO_free(t->in);
    BIO_free(t->out);
    free(t);
    return -1;
  }
  BIO_set_mem_eof_return(t->in, -1);
  SSL_set_bio(t->ssl, t->in, t->out);
  t->ctx = ctx;
  io_tls_ctx_ref(ctx);
  t->is_server = (uint8_t)ctx->is_server;
  c->tls = t;
  if (ctx->is_server) {
    SSL_set_accept_state(t->ssl);
    return 0;
  }
  SSL_set_connect_state(t->ssl);
  if (host && *host) {
    if (is_ip(host)) {
      if (!ctx->insecure)
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), host);
    } else {
      SSL_set_tlsext_host_name(t->ssl, host);
      if (!ctx->insecure) SSL_set1_host(t->ssl, host);
    }
  }
  /* Produce the ClientHello. */
  SSL_do_handshake(t->ssl);
  ERR_clear_error();
  io__conn_mark_dirty(c);
  return 0;
}

void io__tls_free(io_conn_t *c) {
  io_tls_t *t = c->tls;
  if (!t) return;
  SSL_free(t->ssl); /* frees the BIOs */
  ws_buf_free(&t->cout);
  io_tls_ctx_unref(t->ctx);
  free(t);
  c->tls = NULL;
}

int io__tls_ready(const io_conn_t *c) { return c->tls && c->tls->ready; }

/* Aborts with a message naming why TLS failed. */
static void tls_fail(io_conn_t *c, int ret) {
  io_tls_t *t = c->tls;
  char msg[120];
  long v = SSL_get_verify_result(t->ssl);
  unsigned long e = ERR_peek_error();
  if (!t->is_server && v != X509_V_OK) {
    c->errname = "ECERT";
    snprintf(msg, sizeof msg, "certificate verify failed: %s",
             X509_verify_cert_error_string(v));
  } else if (e) {
    c->errname = "ETLS";
    char buf[100];
    ERR_error_string_n(e, buf, sizeof buf);
    snprintf(msg, sizeof msg, "TLS error: %s", buf);
  } else {
    c->errname = "ETLS";
    snprintf(msg, sizeof msg, "TLS error (%d)", SSL_get_error(t->ssl, ret));
  }
  ERR_clear_error();
  /* Send the alert OpenSSL queued (e.g. "certificate required") before
   * closing, so the peer learns why; best effort, without waiting. */
  char *p;
  long pending = BIO_get_mem_data(t->out, &p);
  if (pending > 0 && !c->writing) {
    uv_buf_t b = uv_buf_init(p, (unsigned)pending);
    uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
  }
  io_conn_abort(c, 1006, msg);
}

void io__tls_input(io_conn_t *c, const char *data, size_t n) {
  io_tls_t *t = c->tls;
  io_loop_t *loop = c->loop;
  if (BIO_write(t->in, data, (int)n) != (int)n) {
    io_conn_abort(c, 1006, "out of memory");
    return;
  }
  if (!t->ready) {
    int r = SSL_do_handshake(t->ssl);
    io__conn_mark_dirty(c); /* handshake records to send */
    if (r != 1) {
      int e = SSL_get_error(t->ssl, r);
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return;
      tls_fail(c, r);
      return;
    }
    t->ready = 1;
  }
  if (!loop->tbuf && !(loop->tbuf = malloc(IO_READ_BUF_SIZE))) {
    io_conn_abort(c, 1006, "out of memory");
    return;
  }
  for (;;) {
    if (c->phase == IO_CLOSING) return;
    int r = SSL_read(t->ssl, loop->tbuf, IO_READ_BUF_SIZE);
    if (r <= 0) {
      int e = SSL_get_error(t->ssl, r);
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) break;
      if (e == SSL_ERROR_ZERO_RETURN) {
        /* close_notify: the peer is done, like EOF. */
        c->eof = 1;
        ERR_clear_error();
        if (c->phase == IO_DRAIN) io_conn_abort(c, 1006, "");
        else io_conn_abort(c, 1006, "connection closed by peer");
        return;
      }
      tls_fail(c, r);
      return;
    }
    io__conn_plaintext(c, (uint8_t *)loop->tbuf, (size_t)r);
  }
  io__conn_mark_dirty(c); /* post-handshake records (tickets, key updates) */
}

ws_buf_t *io__tls_output(io_conn_t *c) {
  io_tls_t *t = c->tls;
  ws_buf_t *out = &c->ws.out;
  if (t->ready) {
    while (WS_BUF_SIZE(out) > 0) {
      size_t chunk = WS_BUF_SIZE(out);
      if (chunk > (size_t)1 << 30) chunk = (size_t)1 << 30;
      int r = SSL_write(t->ssl, WS_BUF_PTR(out), (int)chunk);
      if (r <= 0) {
        int e = SSL_get_error(t->ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) break;
        tls_fail(c, r);
        return NULL;
      }
      ws_buf_consume(out, (size_t)r);
    }
  }
  char *p;
  long pending = BIO_get_mem_data(t->out, &p);
  if (pending > 0) {
    if (ws_buf_append(&t->cout, p, (size_t)pending, 0) != 0) {
      io_conn_abort(c, 1006, "out of memory");
      return NULL;
    }
    (void)BIO_reset(t->out);
  }
  return &t->cout;
}

int io__tls_shutdown(io_conn_t *c) {
  io_tls_t *t = c->tls;
  if (!t || t->shutdown || !t->ready) return 0;
  t->shutdown = 1;
  SSL_shutdown(t->ssl);
  ERR_clear_error();
  return 1;
}

size_t io__tls_pending(const io_conn_t *c) {
  return c->tls ? WS_BUF_SIZE(&c->tls->cout) : 0;
}

int io_tls_info(const io_conn_t *c, io_tls_info_t *info) {
  io_tls_t *t = c ? c->tls : NULL;
  memset(info, 0, sizeof *info);
  if (!t || !t->ready) return -1;
  info->version = SSL_get_version(t->ssl);
  info->cipher = SSL_get_cipher_name(t->ssl);
  const unsigned char *alpn = NULL;
  unsigned int alen = 0;
  SSL_get0_alpn_selected(t->ssl, &alpn, &alen);
  if (alpn && alen < sizeof info->alpn) {
    memcpy(info->alpn, alpn, alen);
    info->alpn[alen] = 0;
  }
  X509 *peer = SSL_get1_peer_certificate(t->ssl);
  if (peer) {
    X509_NAME_oneline(X509_get_subject_name(peer), info->subject,
                      sizeof info->subject);
    X509_NAME_oneline(X509_get_issuer_name(peer), info->issuer,
                      sizeof info->issuer);
    BIO *b = BIO_new(BIO_s_mem());
    if (b) {
      ASN1_TIME_print(b, X509_get0_notAfter(peer));
      int n = BIO_read(b, info->not_after, sizeof info->not_after - 1);
      if (n > 0) info->not_after[n] = 0;
      BIO_free(b);
    }
    X509_free(peer);
  }
  info->verified = SSL_get_verify_result(t->ssl) == X509_V_OK &&
                   !t->ctx->insecure && peer != NULL;
  return 0;
}
