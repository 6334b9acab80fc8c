#include "ws_deflate.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* ---------------------------------------------------------------------- */
/* Configuration                                                          */

void ws_deflate_config_default(ws_deflate_config_t *cfg, int is_server) {
  memset(cfg, 0, sizeof *cfg);
  cfg->enabled = 1;
  cfg->level = -1;
  cfg->threshold = 64;
  if (is_server) {
    cfg->server_max_window_bits = 12;
    cfg->client_max_window_bits = 12;
    cfg->mem_level = 5;
  } else {
    cfg->server_max_window_bits = 15;
    cfg->client_max_window_bits = 15;
    cfg->mem_level = 8;
  }
}

static int bits_ok(int b) { return b >= 8 && b <= 15; }

int ws_deflate_config_check(const ws_deflate_config_t *cfg) {
  if (!bits_ok(cfg->server_max_window_bits) ||
      !bits_ok(cfg->client_max_window_bits))
    return -1;
  if (cfg->mem_level < 1 || cfg->mem_level > 9) return -1;
  if (cfg->level < -1 || cfg->level > 9) return -1;
  return 0;
}

static int params_ok(const ws_deflate_params_t *p) {
  return bits_ok(p->server_max_window_bits) &&
         bits_ok(p->client_max_window_bits);
}

/* ---------------------------------------------------------------------- */
/* Sec-WebSocket-Extensions parsing (RFC 6455 §9.1):                      */
/*                                                                        */
/*   extension-list = 1#extension                                         */
/*   extension      = extension-token *( ";" extension-param )            */
/*   extension-param = token [ "=" (token | quoted-string) ]              */
/*                                                                        */
/* with optional whitespace around the separators, and empty list         */
/* elements tolerated as RFC 9110 §5.6.1 asks of recipients.  Only the    */
/* parameters of permessage-deflate are interpreted.                      */

static const char EXT_NAME[] = "permessage-deflate";

/* Why a permessage-deflate element is unacceptable; 0 when it is fine. */
enum { BAD_NONE = 0, BAD_PARAM, BAD_VALUE };

typedef struct ext {
  ws_slice_t name;
  int is_deflate;
  int bad;            /* BAD_* */
  const char *reason; /* for bad */
  uint8_t snct, cnct; /* *_no_context_takeover present */
  uint8_t has_smwb, has_cmwb;
  uint8_t smwb;       /* server_max_window_bits value */
  uint8_t cmwb;       /* client_max_window_bits value, 0 when bare */
} ext_t;

static int is_tchar(unsigned char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
      (c >= '0' && c <= '9'))
    return 1;
  return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static void skip_ows(const char *s, size_t n, size_t *i) {
  while (*i < n && (s[*i] == ' ' || s[*i] == '\t')) (*i)++;
}

static ws_slice_t take_token(const char *s, size_t n, size_t *i) {
  ws_slice_t t;
  t.p = s + *i;
  t.n = 0;
  while (*i < n && is_tchar((unsigned char)s[*i])) {
    (*i)++;
    t.n++;
  }
  return t;
}

/* Reads a quoted-string starting at the DQUOTE at s[*i] (RFC 9110 §5.6.4),
 * unescaping quoted-pairs into buf (cap bytes); *len gets the unescaped
 * length, which may exceed cap (the excess is dropped).  Returns 0, or -1
 * for a malformed or unterminated string. */
static int take_quoted(const char *s, size_t n, size_t *i, char *buf,
                       size_t cap, size_t *len) {
  size_t k = *i + 1, out = 0;
  for (;;) {
    unsigned char c;
    if (k >= n) return -1;
    c = (unsigned char)s[k];
    if (c == '"') break;
    if (c == '\\') {
      if (++k >= n) return -1;
      c = (unsigned char)s[k];
      if (c != '\t' && (c < 0x20 || c == 0x7f)) return -1;
    } else if (c != '\t' && (c < 0x20 || c == 0x7f)) {
      return -1;
    }
    if (out < cap) buf[out] = (char)c;
    out++;
    k++;
  }
  *i = k + 1;
  *len = out;
  return 0;
}

/* A window bits value: a decimal integer 8..15 without leading zeros
 * (RFC 7692 §7.1.2.1, §7.1.2.2).  Returns it, or 0. */
static int parse_bits(const char *v, size_t n) {
  int b;
  if (n == 1 && v[0] >= '8' && v[0] <= '9') return v[0] - '0';
  if (n != 2 || v[0] != '1' || v[1] < '0' || v[1] > '5') return 0;
  b = 10 + (v[1] - '0');
  return b;
}

static void set_bad(ext_t *e, int kind, const char *reason) {
  if (e->bad == BAD_NONE) {
    e->bad = kind;
    e->reason = reason;
  }
}

/* Records one parameter of a permessage-deflate element.  `has_value`
 * says whether "=value" was present; v/vn is the (unescaped) value,
 * `value_long` when it did not fit. */
static void deflate_param(ext_t *e, ws_slice_t name, int has_value,
                          const char *v, size_t vn) {
  int b;
  if (ws_slice_ieq(name, "server_no_context_takeover") ||
      ws_slice_ieq(name, "client_no_context_takeover")) {
    /* §7.1.1.1, §7.1.1.2: these parameters have no value. */
    uint8_t *seen = (name.p[0] == 's' || name.p[0] == 'S') ? &e->snct
                                                           : &e->cnct;
    if (*seen)
      set_bad(e, BAD_PARAM, "a permessage-deflate parameter is repeated");
    else if (has_value)
      set_bad(e, BAD_PARAM,
              "a no_context_takeover parameter must not have a value");
    *seen = 1;
  } else if (ws_slice_ieq(name, "server_max_window_bits")) {
    if (e->has_smwb)
      set_bad(e, BAD_PARAM, "a permessage-deflate parameter is repeated");
    e->has_smwb = 1;
    /* §7.1.2.1: the value is required, in an offer and a response. */
    b = has_value ? parse_bits(v, vn) : 0;
    if (!b)
      set_bad(e, BAD_VALUE,
              "server_max_window_bits must be an integer from 8 to 15");
    e->smwb = (uint8_t)b;
  } else if (ws_slice_ieq(name, "client_max_window_bits")) {
    if (e->has_cmwb)
      set_bad(e, BAD_PARAM, "a permessage-deflate parameter is repeated");
    e->has_cmwb = 1;
    /* §7.1.2.2: in an offer the value is optional (the caller checks that
     * a response has one). */
    b = has_value ? parse_bits(v, vn) : 0;
    if (has_value && !b)
      set_bad(e, BAD_VALUE,
              "client_max_window_bits must be an integer from 8 to 15");
    e->cmwb = (uint8_t)b;
  } else {
    set_bad(e, BAD_PARAM, "unknown permessage-deflate parameter");
  }
}

/* Reads the next extension of the list s[0..n) from *i.  Returns 1 with *e
 * filled, 0 at the end of the list, or -1 for a syntax error. */
static int next_ext(const char *s, size_t n, size_t *i, ext_t *e) {
  for (;;) {
    skip_ows(s, n, i);
    if (*i >= n) return 0;
    if (s[*i] != ',') break;
    (*i)++; /* an empty element */
  }
  memset(e, 0, sizeof *e);
  e->name = take_token(s, n, i);
  if (e->name.n == 0) return -1;
  e->is_deflate = ws_slice_ieq(e->name, EXT_NAME);
  skip_ows(s, n, i);
  while (*i < n && s[*i] == ';') {
    ws_slice_t pname;
    char vbuf[8];
    const char *v = NULL;
    size_t vn = 0;
    int has_value = 0;
    (*i)++;
    skip_ows(s, n, i);
    pname = take_token(s, n, i);
    if (pname.n == 0) return -1;
    skip_ows(s, n, i);
    if (*i < n && s[*i] == '=') {
      (*i)++;
      skip_ows(s, n, i);
      has_value = 1;
      if (*i < n && s[*i] == '"') {
        if (take_quoted(s, n, i, vbuf, sizeof vbuf, &vn) != 0) return -1;
        v = vbuf;
        /* A truncated value has 8 characters: never valid window bits. */
        if (vn > sizeof vbuf) vn = sizeof vbuf;
      } else {
        ws_slice_t t = take_token(s, n, i);
        if (t.n == 0) return -1;
        v = t.p;
        vn = t.n;
      }
      skip_ows(s, n, i);
    }
    if (e->is_deflate) deflate_param(e, pname, has_value, v, vn);
  }
  if (*i < n) {
    if (s[*i] != ',') return -1;
    (*i)++;
  }
  return 1;
}

/* ---------------------------------------------------------------------- */
/* Negotiation                                                            */

static size_t put(char *out, size_t at, const char *s) {
  size_t n = strlen(s);
  if (at + n < WS_DEFLATE_HEADER_MAX) {
    memcpy(out + at, s, n);
    at += n;
  }
  out[at] = '\0';
  return at;
}

static size_t put_bits(char *out, size_t at, const char *name, int bits) {
  char num[4];
  at = put(out, at, "; ");
  at = put(out, at, name);
  num[0] = '=';
  num[1] = (char)(bits >= 10 ? '1' : '0' + bits);
  num[2] = (char)(bits >= 10 ? '0' + bits - 10 : '\0');
  num[3] = '\0';
  return put(out, at, num);
}

size_t ws_deflate_params_format(const ws_deflate_params_t *p,
                                char out[WS_DEFLATE_HEADER_MAX]) {
  size_t at = put(out, 0, EXT_NAME);
  if (p->server_no_context_takeover)
    at = put(out, at, "; server_no_context_takeover");
  if (p->client_no_context_takeover)
    at = put(out, at, "; client_no_context_takeover");
  if (p->server_max_window_bits < 15)
    at = put_bits(out, at, "server_max_window_bits",
                  p->server_max_window_bits);
  if (p->client_max_window_bits < 15)
    at = put_bits(out, at, "client_max_window_bits",
                  p->client_max_window_bits);
  return at;
}

/* Server: the answer to a valid offer e (RFC 7692 §7.1).  Every valid
 * offer is acceptable: this side compresses with any window 8..15 and
 * honours server_no_context_takeover. */
static void server_accept(const ws_deflate_config_t *cfg, const ext_t *e,
                          ws_deflate_params_t *agreed, char *response) {
  size_t at;
  int smwb, cmwb;

  /* §7.1.1.1: an offered server_no_context_takeover must be answered; the
   * server may also add it unasked.  §7.1.1.2: the server may always add
   * client_no_context_takeover; an offered one is echoed, since the client
   * resets anyway and this side can then free its decompressor. */
  agreed->server_no_context_takeover =
      (uint8_t)(e->snct || cfg->server_no_context_takeover);
  agreed->client_no_context_takeover =
      (uint8_t)(e->cnct || cfg->client_no_context_takeover);

  /* §7.1.2.1: answer with the same or a smaller value than offered; the
   * parameter may be answered even when it was not offered. */
  smwb = cfg->server_max_window_bits;
  if (e->has_smwb && e->smwb < smwb) smwb = e->smwb;
  agreed->server_max_window_bits = (uint8_t)smwb;

  /* §7.1.2.2: only when offered; a value in the offer is an upper bound
   * for the answer.  Without it the client may use up to 15. */
  cmwb = 15;
  if (e->has_cmwb) {
    cmwb = cfg->client_max_window_bits;
    if (e->cmwb && e->cmwb < cmwb) cmwb = e->cmwb;
  }
  agreed->client_max_window_bits = (uint8_t)cmwb;

  at = put(response, 0, EXT_NAME);
  if (agreed->server_no_context_takeover)
    at = put(response, at, "; server_no_context_takeover");
  if (agreed->client_no_context_takeover)
    at = put(response, at, "; client_no_context_takeover");
  if (e->has_smwb || smwb < 15)
    at = put_bits(response, at, "server_max_window_bits", smwb);
  if (e->has_cmwb && cmwb < 15)
    at = put_bits(response, at, "client_max_window_bits", cmwb);
  (void)at;
}

/* Scans one header value; accepts the first valid offer unless *done. */
static int server_scan(const ws_deflate_config_t *cfg, const char *value,
                       size_t len, int *done, ws_deflate_params_t *agreed,
                       char *response) {
  size_t i = 0;
  ext_t e;
  int r;
  while ((r = next_ext(value, len, &i, &e)) == 1) {
    /* RFC 7692 §7: decline an offer with an unknown or repeated
     * parameter or an invalid value, and consider the next one. */
    if (!*done && e.is_deflate && e.bad == BAD_NONE) {
      server_accept(cfg, &e, agreed, response);
      *done = 1;
    }
  }
  return r < 0 ? WS_DEFLATE_ESYNTAX : 0;
}

int ws_deflate_server_negotiate(const ws_deflate_config_t *cfg,
                                const char *value, size_t len,
                                ws_deflate_params_t *agreed,
                                char response[WS_DEFLATE_HEADER_MAX]) {
  int done = 0;
  response[0] = '\0';
  if (!cfg->enabled || ws_deflate_config_check(cfg) != 0) return 0;
  if (server_scan(cfg, value, len, &done, agreed, response) != 0) {
    response[0] = '\0';
    return WS_DEFLATE_ESYNTAX;
  }
  return done;
}

static const char EXT_HEADER[] = "Sec-WebSocket-Extensions";

int ws_deflate_server_negotiate_headers(const ws_deflate_config_t *cfg,
                                        const ws_header_t *headers,
                                        size_t n, ws_deflate_params_t *agreed,
                                        char response[WS_DEFLATE_HEADER_MAX]) {
  int done = 0, k = -1;
  response[0] = '\0';
  if (!cfg->enabled || ws_deflate_config_check(cfg) != 0) return 0;
  while ((k = ws_http_find_header(headers, n, EXT_HEADER, (size_t)(k + 1))) >=
         0) {
    const ws_slice_t *v = &headers[k].value;
    if (server_scan(cfg, v->p, v->n, &done, agreed, response) != 0) {
      response[0] = '\0';
      return WS_DEFLATE_ESYNTAX;
    }
  }
  return done;
}

size_t ws_deflate_client_offer(const ws_deflate_config_t *cfg,
                               char out[WS_DEFLATE_HEADER_MAX]) {
  size_t at = put(out, 0, EXT_NAME);
  if (cfg->server_no_context_takeover)
    at = put(out, at, "; server_no_context_takeover");
  if (cfg->client_no_context_takeover)
    at = put(out, at, "; client_no_context_takeover");
  if (cfg->server_max_window_bits < 15)
    at = put_bits(out, at, "server_max_window_bits",
                  cfg->server_max_window_bits);
  /* §7.1.2.2: offered bare, it lets the server narrow our window. */
  if (cfg->client_max_window_bits < 15)
    at = put_bits(out, at, "client_max_window_bits",
                  cfg->client_max_window_bits);
  else
    at = put(out, at, "; client_max_window_bits");
  return at;
}

static int fail(const char **reason, const char *why, int code) {
  if (reason) *reason = why;
  return code;
}

/* Client: the parsed response element e against the offer made from cfg
 * (RFC 7692 §7.1). */
static int client_check(const ws_deflate_config_t *cfg, const ext_t *e,
                        ws_deflate_params_t *agreed, const char **reason) {
  if (!e->is_deflate)
    return fail(reason, "server selected an extension that was not offered",
                WS_DEFLATE_EEXTENSION);
  if (e->bad)
    return fail(reason, e->reason,
                e->bad == BAD_VALUE ? WS_DEFLATE_EVALUE : WS_DEFLATE_EPARAM);
  if (e->has_cmwb && !e->cmwb)
    return fail(reason, "client_max_window_bits in a response needs a value",
                WS_DEFLATE_EVALUE);

  /* §7.1.1.1: the server accepts server_no_context_takeover by answering
   * it; it may also answer it unasked. */
  if (cfg->server_no_context_takeover && !e->snct)
    return fail(reason,
                "server did not accept the offered "
                "server_no_context_takeover",
                WS_DEFLATE_ENEGOTIATION);
  agreed->server_no_context_takeover = e->snct;
  /* §7.1.1.2: a client that offered client_no_context_takeover keeps to
   * it whatever the answer. */
  agreed->client_no_context_takeover =
      (uint8_t)(e->cnct || cfg->client_no_context_takeover);

  /* §7.1.2.1: an offered server_max_window_bits is accepted by answering
   * the same or a smaller value; unasked, any value 8..15 is allowed. */
  if (cfg->server_max_window_bits < 15) {
    if (!e->has_smwb)
      return fail(reason,
                  "server did not accept the offered server_max_window_bits",
                  WS_DEFLATE_ENEGOTIATION);
    if (e->smwb > cfg->server_max_window_bits)
      return fail(reason,
                  "server_max_window_bits is larger than the offered value",
                  WS_DEFLATE_ENEGOTIATION);
  }
  agreed->server_max_window_bits = e->has_smwb ? e->smwb : 15;

  /* §7.1.2.2: client_max_window_bits only when offered (this client
   * always offers it), and not larger than an offered value. */
  if (e->has_cmwb && e->cmwb > cfg->client_max_window_bits)
    return fail(reason,
                "client_max_window_bits is larger than the offered value",
                WS_DEFLATE_ENEGOTIATION);
  agreed->client_max_window_bits =
      e->has_cmwb ? e->cmwb : cfg->client_max_window_bits;
  return 0;
}

/* Scans one response header value, counting the elements in *count and
 * checking the first one. */
static int client_scan(const ws_deflate_config_t *cfg, const char *value,
                       size_t len, int *count, ws_deflate_params_t *agreed,
                       const char **reason) {
  size_t i = 0;
  ext_t e;
  int r;
  while ((r = next_ext(value, len, &i, &e)) == 1) {
    if (++*count > 1)
      return fail(reason, "server selected more than one extension",
                  WS_DEFLATE_EEXTENSION);
    r = client_check(cfg, &e, agreed, reason);
    if (r != 0) return r;
  }
  if (r < 0)
    return fail(reason, "malformed Sec-WebSocket-Extensions header",
                WS_DEFLATE_ESYNTAX);
  return 0;
}

int ws_deflate_client_accept(const ws_deflate_config_t *cfg,
                             const char *value, size_t len,
                             ws_deflate_params_t *agreed,
                             const char **reason) {
  int count = 0, r;
  if (!cfg->enabled || ws_deflate_config_check(cfg) != 0)
    return fail(reason, "server selected an extension that was not offered",
                WS_DEFLATE_EEXTENSION);
  r = client_scan(cfg, value, len, &count, agreed, reason);
  if (r != 0) return r;
  if (count == 0)
    return fail(reason, "empty Sec-WebSocket-Extensions header",
                WS_DEFLATE_ESYNTAX);
  if (reason) *reason = NULL;
  return 0;
}

int ws_deflate_client_accept_headers(const ws_deflate_config_t *cfg,
                                     const ws_header_t *headers, size_t n,
                                     ws_deflate_params_t *agreed,
                                     const char **reason) {
  int count = 0, k = -1, r, seen = 0;
  while ((k = ws_http_find_header(headers, n, EXT_HEADER, (size_t)(k + 1))) >=
         0) {
    const ws_slice_t *v = &headers[k].value;
    if (!seen && (!cfg->enabled || ws_deflate_config_check(cfg) != 0))
      return fail(reason,
                  "server selected an extension that was not offered",
                  WS_DEFLATE_EEXTENSION);
    seen = 1;
    r = client_scan(cfg, v->p, v->n, &count, agreed, reason);
    if (r != 0) return r;
  }
  if (!seen) return 0;
  if (count == 0)
    return fail(reason, "empty Sec-WebSocket-Extensions header",
                WS_DEFLATE_ESYNTAX);
  if (reason) *reason = NULL;
  return 1;
}

/* ---------------------------------------------------------------------- */
/* Streams                                                                */

struct ws_deflate {
  /* This side's view of the agreed parameters. */
  uint8_t tx_bits, rx_bits;         /* window bits, 8..15 */
  uint8_t tx_no_ctx, rx_no_ctx;     /* no context takeover */
  int8_t level;
  uint8_t mem_level;
  uint8_t rx_ended;  /* the inflater saw the end of a BFINAL block */
  uint8_t rx_msg;    /* payload bytes of the current message were fed */
  size_t threshold;
  z_stream *tx;      /* compressor, or NULL */
  z_stream *rx;      /* decompressor, or NULL */
  size_t last_out;
  size_t zmem;       /* bytes allocated through the hooks, z_streams too */
};

/* The counting allocator given to zlib (zalloc/zfree): each block is
 * preceded by a max_align_t header holding its size. */
typedef union zhead {
  max_align_t align;
  size_t size;
} zhead_t;

static void *count_alloc(ws_deflate_t *d, size_t n) {
  zhead_t *h;
  if (n > SIZE_MAX - sizeof *h) return NULL;
  h = malloc(sizeof *h + n);
  if (!h) return NULL;
  h->size = n;
  d->zmem += n;
  return h + 1;
}

static void count_free(ws_deflate_t *d, void *p) {
  zhead_t *h;
  if (!p) return;
  h = (zhead_t *)p - 1;
  d->zmem -= h->size;
  free(h);
}

static voidpf z_alloc(voidpf opaque, uInt items, uInt size) {
  if (size && items > SIZE_MAX / size) return Z_NULL;
  return count_alloc(opaque, (size_t)items * size);
}

static void z_free(voidpf opaque, voidpf p) { count_free(opaque, p); }

ws_deflate_t *ws_deflate_new(const ws_deflate_config_t *cfg,
                             const ws_deflate_params_t *agreed,
                             int is_server) {
  ws_deflate_t *d;
  if (ws_deflate_config_check(cfg) != 0 || !params_ok(agreed)) return NULL;
  d = calloc(1, sizeof *d);
  if (!d) return NULL;
  if (is_server) {
    d->tx_bits = agreed->server_max_window_bits;
    d->tx_no_ctx = agreed->server_no_context_takeover;
    d->rx_bits = agreed->client_max_window_bits;
    d->rx_no_ctx = agreed->client_no_context_takeover;
  } else {
    d->tx_bits = agreed->client_max_window_bits;
    d->tx_no_ctx = agreed->client_no_context_takeover;
    d->rx_bits = agreed->server_max_window_bits;
    d->rx_no_ctx = agreed->server_no_context_takeover;
  }
  d->level = cfg->level;
  d->mem_level = cfg->mem_level;
  d->threshold = cfg->threshold;
  return d;
}

static void tx_end(ws_deflate_t *d) {
  if (!d->tx) return;
  deflateEnd(d->tx);
  count_free(d, d->tx);
  d->tx = NULL;
}

static void rx_end(ws_deflate_t *d) {
  if (!d->rx) return;
  inflateEnd(d->rx);
  count_free(d, d->rx);
  d->rx = NULL;
  d->rx_ended = 0;
  d->rx_msg = 0;
}

void ws_deflate_free(ws_deflate_t *d) {
  if (!d) return;
  tx_end(d);
  rx_end(d);
  free(d);
}

int ws_deflate_shared_bits(const ws_deflate_t *d) {
  return d && d->tx_no_ctx ? d->tx_bits : 0;
}

int ws_deflate_should_compress(const ws_deflate_t *d, size_t len) {
  return len >= d->threshold;
}

size_t ws_deflate_last_out(const ws_deflate_t *d) { return d->last_out; }

size_t ws_deflate_memory(const ws_deflate_t *d) {
  return sizeof *d + d->zmem;
}

static z_stream *stream_new(ws_deflate_t *d) {
  z_stream *s = count_alloc(d, sizeof *s);
  if (!s) return NULL;
  memset(s, 0, sizeof *s);
  s->zalloc = z_alloc;
  s->zfree = z_free;
  s->opaque = d;
  return s;
}

static int tx_begin(ws_deflate_t *d) {
  z_stream *s;
  int bits = d->tx_bits;
  if (d->tx) return 0;
  s = stream_new(d);
  if (!s) return WS_DEFLATE_ENOMEM;
  /* zlib refuses raw deflate with a 256-byte window; 9 keeps distances
   * within 250 bytes (see the header), so the peer's window 8 suffices. */
  if (bits < 9) bits = 9;
  if (deflateInit2(s, d->level, Z_DEFLATED, -bits, d->mem_level,
                   Z_DEFAULT_STRATEGY) != Z_OK) {
    count_free(d, s);
    return WS_DEFLATE_ENOMEM;
  }
  d->tx = s;
  return 0;
}

/* Makes room for `want` more bytes in b, growing the allocation at most to
 * `maxcap` bytes of content (0: no cap) and at least by one byte.  Returns
 * the free space at the end (> 0), or 0 when out of memory. */
static size_t room(ws_buf_t *b, size_t want, size_t maxcap) {
  size_t size = WS_BUF_SIZE(b), ncap;
  uint8_t *p;
  if (b->cap - b->len >= want) return b->cap - b->len;
  if (b->off > 0) {
    memmove(b->data, b->data + b->off, size);
    b->off = 0;
    b->len = size;
    if (b->cap - b->len >= want) return b->cap - b->len;
  }
  ncap = b->cap < 1024 ? 1024 : b->cap;
  while (ncap - size < want && ncap <= SIZE_MAX / 2) ncap *= 2;
  if (ncap - size < want) ncap = size + want;
  if (maxcap && ncap > maxcap) ncap = maxcap > size ? maxcap : size + 1;
  if (ncap <= b->cap) return b->cap - b->len;
  p = realloc(b->data, ncap);
  if (!p) return b->cap - b->len;
  b->data = p;
  b->cap = ncap;
  return b->cap - b->len;
}

static const uint8_t TAIL[4] = {0x00, 0x00, 0xff, 0xff};

int ws_deflate_compress(ws_deflate_t *d, const void *data, size_t len,
                        ws_buf_t *out) {
  size_t start = WS_BUF_SIZE(out);
  z_stream *s;
  int r;

  if (len == 0) {
    /* §7.2.3.6: an empty stored block with its LEN/NLEN removed.  zlib
     * would emit nothing at all for a repeated sync flush. */
    static const uint8_t empty = 0x00;
    return ws_buf_append(out, &empty, 1, 0) == 0 ? 0 : WS_DEFLATE_ENOMEM;
  }
  if (tx_begin(d) != 0) return WS_DEFLATE_ENOMEM;
  s = d->tx;
  s->next_in = (Bytef *)(uintptr_t)data;
  for (;;) {
    size_t avail = room(out, len / 2 + 64, 0);
    size_t chunk = avail > UINT_MAX ? UINT_MAX : avail;
    size_t in_chunk = s->avail_in;
    if (avail == 0) goto nomem;
    /* Feed the input in pieces zlib's uInt can count. */
    if (in_chunk == 0 && len > 0) {
      in_chunk = len > UINT_MAX ? UINT_MAX : len;
      s->avail_in = (uInt)in_chunk;
      len -= in_chunk;
    }
    s->next_out = out->data + out->len;
    s->avail_out = (uInt)chunk;
    /* §7.2.1: flush with Z_SYNC_FLUSH so the message ends on a byte
     * boundary with an empty stored block. */
    r = deflate(s, len > 0 ? Z_NO_FLUSH : Z_SYNC_FLUSH);
    out->len += chunk - s->avail_out;
    if (r != Z_OK && r != Z_BUF_ERROR) goto nomem;
    if (len == 0 && s->avail_in == 0 && s->avail_out != 0) break;
  }
  /* Remove the 0x00 0x00 0xff 0xff of the empty stored block (§7.2.1). */
  if (WS_BUF_SIZE(out) - start < 4 ||
      memcmp(WS_BUF_PTR(out) + WS_BUF_SIZE(out) - 4, TAIL, 4) != 0)
    goto nomem; /* cannot happen with zlib */
  out->len -= 4;
  if (d->tx_no_ctx) tx_end(d);
  return 0;

nomem:
  out->len = out->off + start;
  tx_end(d);
  return WS_DEFLATE_ENOMEM;
}

static int rx_begin(ws_deflate_t *d) {
  z_stream *s;
  if (d->rx) return 0;
  s = stream_new(d);
  if (!s) return WS_DEFLATE_ENOMEM;
  if (inflateInit2(s, -(int)d->rx_bits) != Z_OK) {
    count_free(d, s);
    return WS_DEFLATE_ENOMEM;
  }
  d->rx = s;
  d->rx_ended = 0;
  return 0;
}

/* After a block with BFINAL set, zlib's raw stream is finished; more
 * blocks may follow in the same message (§7.2.3.4) or in the next one
 * with context takeover, and they may refer back into the window.  Start
 * a fresh stream primed with the old window. */
static int rx_restart(ws_deflate_t *d) {
  z_stream *s = d->rx;
  uInt n = 0;
  uint8_t *win = count_alloc(d, (size_t)1 << d->rx_bits);
  int r = Z_MEM_ERROR;
  if (win && inflateGetDictionary(s, win, &n) == Z_OK &&
      inflateReset(s) == Z_OK)
    r = n ? inflateSetDictionary(s, win, n) : Z_OK;
  count_free(d, win);
  d->rx_ended = 0;
  return r == Z_OK ? 0 : WS_DEFLATE_ENOMEM;
}

int ws_deflate_inflate(ws_deflate_t *d, const void *data, size_t len,
                       int fin, ws_buf_t *out, size_t limit) {
  size_t before = WS_BUF_SIZE(out);
  /* The buffer may hold limit + 1 bytes: the extra byte tells that the
   * message is too big without inflating further. */
  size_t maxcap = limit ? limit + 1 : 0;
  const uint8_t *in = data;
  int tail_fed = 0, full = 0, r, err = 0;
  z_stream *s;

  d->last_out = 0;
  if (len == 0 && (!fin || !d->rx_msg)) {
    /* Nothing to do; a message with an empty payload is the empty message
     * (as Python websockets and zlib-based peers read it), though the
     * tail alone would not be a complete block. */
    return 0;
  }
  d->rx_msg = (uint8_t)!fin;
  if (rx_begin(d) != 0) return WS_DEFLATE_ENOMEM;
  s = d->rx;

  for (;;) {
    size_t avail, give;
    if (s->avail_in == 0) {
      if (len > 0) {
        size_t k = len > UINT_MAX ? UINT_MAX : len;
        s->next_in = (Bytef *)(uintptr_t)in;
        s->avail_in = (uInt)k;
        in += k;
        len -= k;
      } else if (fin && !tail_fed) {
        tail_fed = 1;
        /* A message whose last block had BFINAL set and nothing after
         * it: the tail would start a block the message does not have. */
        if (d->rx_ended) break;
        s->next_in = (Bytef *)(uintptr_t)TAIL;
        s->avail_in = sizeof TAIL;
      } else if (!full) {
        break;
      }
    }
    if (d->rx_ended && s->avail_in > 0 && (err = rx_restart(d)) != 0) break;

    if (limit && WS_BUF_SIZE(out) > limit) {
      err = WS_DEFLATE_ETOOBIG;
      break;
    }
    avail = room(out, 16384, maxcap);
    if (avail == 0) {
      err = WS_DEFLATE_ENOMEM;
      break;
    }
    give = avail;
    if (limit && give > limit + 1 - WS_BUF_SIZE(out))
      give = limit + 1 - WS_BUF_SIZE(out);
    if (give > UINT_MAX) give = UINT_MAX;
    s->next_out = out->data + out->len;
    s->avail_out = (uInt)give;
    r = inflate(s, Z_SYNC_FLUSH);
    out->len += give - s->avail_out;
    full = s->avail_out == 0;
    if (limit && WS_BUF_SIZE(out) > limit) {
      err = WS_DEFLATE_ETOOBIG;
      break;
    }
    if (r == Z_STREAM_END) {
      d->rx_ended = 1;
    } else if (r == Z_MEM_ERROR) {
      err = WS_DEFLATE_ENOMEM;
      break;
    } else if (r != Z_OK && r != Z_BUF_ERROR) {
      err = WS_DEFLATE_EDATA; /* Z_DATA_ERROR, Z_NEED_DICT */
      break;
    }
  }

  /* §7.2.2: with the tail appended, a well-formed message ends on a block
   * boundary (zlib reports that as bit 128 of data_type), or right after a
   * block with BFINAL set. */
  if (!err && fin && !d->rx_ended && !(s->data_type & 128))
    err = WS_DEFLATE_EDATA;
  d->last_out = WS_BUF_SIZE(out) - before;
  if (err) {
    rx_end(d);
    return err;
  }
  if (fin && d->rx_no_ctx) rx_end(d);
  return 0;
}

const char *ws_deflate_strerror(int code) {
  switch (code) {
  case WS_DEFLATE_OK: return "success";
  case WS_DEFLATE_ESYNTAX: return "malformed Sec-WebSocket-Extensions header";
  case WS_DEFLATE_EEXTENSION:
    return "server selected an extension that was not offered";
  case WS_DEFLATE_EPARAM: return "invalid permessage-deflate parameter";
  case WS_DEFLATE_EVALUE: return "invalid permessage-deflate window bits";
  case WS_DEFLATE_ENEGOTIATION:
    return "permessage-deflate response does not match the offer";
  case WS_DEFLATE_ETOOBIG: return "inflated message too big";
  case WS_DEFLATE_EDATA: return "invalid compressed data";
  case WS_DEFLATE_ENOMEM: return "out of memory";
  default: return "unknown error";
  }
}
