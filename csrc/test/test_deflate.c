/*
 * Tests for ws_deflate: RFC 7692 negotiation on both sides, the §7.2.3
 * example bytes, round trips for every window size and context takeover
 * mode, bounded inflate against a decompression bomb, any split of the
 * input, and corrupt data.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "test.h"
#include "ws_deflate.h"

/* ---------------------------------------------------------------------- */
/* Helpers                                                                */

/* A configuration that constrains nothing: windows 15, memLevel 8. */
static ws_deflate_config_t open_cfg(void) {
  ws_deflate_config_t c;
  ws_deflate_config_default(&c, 0);
  c.threshold = 0;
  return c;
}

/* Runs the server negotiation on one header value; returns its result and
 * leaves the response in resp. */
static int srv(const ws_deflate_config_t *cfg, const char *offer,
               char *resp, ws_deflate_params_t *p) {
  ws_deflate_params_t dummy;
  return ws_deflate_server_negotiate(cfg, offer, strlen(offer),
                                     p ? p : &dummy, resp);
}

/* Does the server accept `offer` with exactly `want` as the response? */
static int srv_answers(const ws_deflate_config_t *cfg, const char *offer,
                       const char *want) {
  char resp[WS_DEFLATE_HEADER_MAX];
  int r = srv(cfg, offer, resp, NULL);
  if (r != 1 || strcmp(resp, want) != 0) {
    fprintf(stderr, "  offer \"%s\": got %d \"%s\", want \"%s\"\n", offer, r,
            resp, want);
    return 0;
  }
  return 1;
}

/* Does the server decline `offer` (no extension, no error)? */
static int srv_declines(const ws_deflate_config_t *cfg, const char *offer) {
  char resp[WS_DEFLATE_HEADER_MAX];
  int r = srv(cfg, offer, resp, NULL);
  if (r != 0 || resp[0] != '\0') {
    fprintf(stderr, "  offer \"%s\": got %d \"%s\", want a decline\n", offer,
            r, resp);
    return 0;
  }
  return 1;
}

static int cli(const ws_deflate_config_t *cfg, const char *response,
               ws_deflate_params_t *p) {
  const char *reason = NULL;
  ws_deflate_params_t dummy;
  int r = ws_deflate_client_accept(cfg, response, strlen(response),
                                   p ? p : &dummy, &reason);
  if (r != 0 && (reason == NULL || reason[0] == '\0')) return 99;
  return r;
}

static int params_eq(const ws_deflate_params_t *a,
                     const ws_deflate_params_t *b) {
  return a->server_no_context_takeover == b->server_no_context_takeover &&
         a->client_no_context_takeover == b->client_no_context_takeover &&
         a->server_max_window_bits == b->server_max_window_bits &&
         a->client_max_window_bits == b->client_max_window_bits;
}

static ws_deflate_params_t mkparams(int snct, int cnct, int smwb, int cmwb) {
  ws_deflate_params_t p;
  p.server_no_context_takeover = (uint8_t)snct;
  p.client_no_context_takeover = (uint8_t)cnct;
  p.server_max_window_bits = (uint8_t)smwb;
  p.client_max_window_bits = (uint8_t)cmwb;
  return p;
}

/* A small PRNG with its state in the caller. */
static uint32_t rnd(uint32_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 17;
  *s ^= *s << 5;
  return *s;
}

/* Fills p with text-like data (words from a small vocabulary, so it
 * compresses) when `text`, else with random bytes. */
static void fill(uint8_t *p, size_t n, int text, uint32_t *seed) {
  static const char *const words[] = {"lorem ", "ipsum ", "\"id\": ",
                                      "websocket ", "deflate ", "{\"x\":",
                                      "42, ", "}\n", "frame ", "window "};
  size_t i = 0;
  if (!text) {
    for (i = 0; i < n; i++) p[i] = (uint8_t)rnd(seed);
    return;
  }
  while (i < n) {
    const char *w = words[rnd(seed) % 10];
    while (*w && i < n) p[i++] = (uint8_t)*w++;
  }
}

/* Inflates msg[0..n) into out in chunks whose sizes come from the PRNG
 * (1 when `bytewise`), fin on the last chunk or on an extra empty one.
 * Returns the first error or 0; *total_out sums ws_deflate_last_out(). */
static int inflate_chunked(ws_deflate_t *d, const uint8_t *msg, size_t n,
                           ws_buf_t *out, size_t limit, int bytewise,
                           uint32_t *seed, size_t *total_out) {
  size_t i = 0;
  int empty_fin = (int)(rnd(seed) & 1);
  *total_out = 0;
  while (i < n) {
    size_t k = bytewise ? 1 : 1 + rnd(seed) % 3000;
    int fin, r;
    if (k > n - i) k = n - i;
    fin = (i + k == n) && !empty_fin;
    r = ws_deflate_inflate(d, msg + i, k, fin, out, limit);
    *total_out += ws_deflate_last_out(d);
    if (r != 0) return r;
    i += k;
  }
  if (empty_fin || n == 0) {
    int r = ws_deflate_inflate(d, NULL, 0, 1, out, limit);
    *total_out += ws_deflate_last_out(d);
    return r;
  }
  return 0;
}

/* Inflates a whole payload given as bytes; 0 on success. */
static int inflate_all(ws_deflate_t *d, const uint8_t *p, size_t n,
                       ws_buf_t *out, size_t limit) {
  return ws_deflate_inflate(d, p, n, 1, out, limit);
}

static ws_deflate_t *mk(const ws_deflate_params_t *p, int is_server) {
  ws_deflate_config_t c = open_cfg();
  return ws_deflate_new(&c, p, is_server);
}

/* ---------------------------------------------------------------------- */
/* Server negotiation                                                     */

TEST(server_plain_offer) {
  ws_deflate_config_t c = open_cfg();
  ws_deflate_params_t p;
  char resp[WS_DEFLATE_HEADER_MAX];
  CHECK_EQ_INT(srv(&c, "permessage-deflate", resp, &p), 1);
  CHECK(strcmp(resp, "permessage-deflate") == 0);
  CHECK(params_eq(&p, &(ws_deflate_params_t){0, 0, 15, 15}));
  /* A browser's offer. */
  CHECK(srv_answers(&c, "permessage-deflate; client_max_window_bits",
                    "permessage-deflate"));
  CHECK_EQ_INT(srv(&c, "permessage-deflate; client_max_window_bits", resp,
                   &p), 1);
  CHECK(params_eq(&p, &(ws_deflate_params_t){0, 0, 15, 15}));
}

TEST(server_default_config) {
  /* The server defaults: windows 12 for both sides.  client_max_window_bits
   * is answered only when offered (RFC 7692 §7.1.2.2); server_max_window_bits
   * may be answered unasked (§7.1.2.1). */
  ws_deflate_config_t c;
  ws_deflate_params_t p;
  char resp[WS_DEFLATE_HEADER_MAX];
  ws_deflate_config_default(&c, 1);
  CHECK_EQ_INT(ws_deflate_config_check(&c), 0);
  CHECK_EQ_INT(srv(&c, "permessage-deflate", resp, &p), 1);
  CHECK(strcmp(resp, "permessage-deflate; server_max_window_bits=12") == 0);
  CHECK(params_eq(&p, &(ws_deflate_params_t){0, 0, 12, 15}));
  CHECK_EQ_INT(
      srv(&c, "permessage-deflate; client_max_window_bits", resp, &p), 1);
  CHECK(strcmp(resp, "permessage-deflate; server_max_window_bits=12; "
                     "client_max_window_bits=12") == 0);
  CHECK(params_eq(&p, &(ws_deflate_params_t){0, 0, 12, 12}));
}

TEST(server_offer_parameters) {
  ws_deflate_config_t c = open_cfg();
  ws_deflate_params_t p;
  char resp[WS_DEFLATE_HEADER_MAX];
  CHECK(srv_answers(&c,
                    "permessage-deflate; server_no_context_takeover; "
                    "client_no_context_takeover; server_max_window_bits=10; "
                    "client_max_window_bits=9",
                    "permessage-deflate; server_no_context_takeover; "
                    "client_no_context_takeover; server_max_window_bits=10; "
                    "client_max_window_bits=9"));
  CHECK_EQ_INT(srv(&c, "permessage-deflate; server_max_window_bits=8", resp,
                   &p), 1);
  CHECK(strcmp(resp, "permessage-deflate; server_max_window_bits=8") == 0);
  CHECK(params_eq(&p, &(ws_deflate_params_t){0, 0, 8, 15}));
  /* An offered 15 is answered (acceptance, §7.1.2.1). */
  CHECK(srv_answers(&c, "permessage-deflate; server_max_window_bits=15",
                    "permessage-deflate; server_max_window_bits=15"));
  /* client_max_window_bits=15 in the offer changes nothing. */
  CHECK(srv_answers(&c, "permessage-deflate; client_max_window_bits=15",
                    "permessage-deflate"));
  /* Only client_no_context_takeover offered. */
  CHECK(srv_answers(&c, "permessage-deflate; client_no_context_takeover",
                    "permessage-deflate; client_no_context_takeover"));
}

TEST(server_config_narrows) {
  ws_deflate_config_t c = open_cfg();
  ws_deflate_params_t p;
  char resp[WS_DEFLATE_HEADER_MAX];
  c.server_max_window_bits = 11;
  c.client_max_window_bits = 10;
  /* The smaller of the offer and the configuration. */
  CHECK(srv_answers(&c, "permessage-deflate; server_max_window_bits=13",
                    "permessage-deflate; server_max_window_bits=11"));
  CHECK(srv_answers(&c, "permessage-deflate; server_max_window_bits=9",
                    "permessage-deflate; server_max_window_bits=9"));
  CHECK(srv_answers(&c, "permessage-deflate; client_max_window_bits",
                    "permessage-deflate; server_max_window_bits=11; "
                    "client_max_window_bits=10"));
  CHECK(srv_answers(&c, "permessage-deflate; client_max_window_bits=9",
                    "permessage-deflate; server_max_window_bits=11; "
                    "client_max_window_bits=9"));
  CHECK(srv_answers(&c, "permessage-deflate; client_max_window_bits=12",
                    "permessage-deflate; server_max_window_bits=11; "
                    "client_max_window_bits=10"));
  /* Without client_max_window_bits in the offer it is not answered, and
   * the client may use 15. */
  CHECK_EQ_INT(srv(&c, "permessage-deflate", resp, &p), 1);
  CHECK(strcmp(resp, "permessage-deflate; server_max_window_bits=11") == 0);
  CHECK_EQ_INT(p.client_max_window_bits, 15);
  /* No context takeover configured: answered unasked (§7.1.1.1, 7.1.1.2). */
  c = open_cfg();
  c.server_no_context_takeover = 1;
  c.client_no_context_takeover = 1;
  CHECK_EQ_INT(srv(&c, "permessage-deflate", resp, &p), 1);
  CHECK(strcmp(resp, "permessage-deflate; server_no_context_takeover; "
                     "client_no_context_takeover") == 0);
  CHECK(params_eq(&p, &(ws_deflate_params_t){1, 1, 15, 15}));
}

TEST(server_quoted_and_case) {
  ws_deflate_config_t c = open_cfg();
  /* RFC 6455 §9.1: a quoted-string value, unescaped, is a token. */
  CHECK(srv_answers(&c, "permessage-deflate; server_max_window_bits=\"10\"",
                    "permessage-deflate; server_max_window_bits=10"));
  CHECK(srv_answers(&c, "permessage-deflate; server_max_window_bits=\"1\\0\"",
                    "permessage-deflate; server_max_window_bits=10"));
  CHECK(srv_answers(&c, "permessage-deflate; client_max_window_bits=\"9\"",
                    "permessage-deflate; client_max_window_bits=9"));
  CHECK(srv_answers(&c,
                    "  PerMessage-Deflate ;Server_Max_Window_Bits = 10\t; "
                    "CLIENT_NO_CONTEXT_TAKEOVER  ",
                    "permessage-deflate; client_no_context_takeover; "
                    "server_max_window_bits=10"));
}

TEST(server_declines_invalid) {
  ws_deflate_config_t c = open_cfg();
  static const char *const bad[] = {
      /* unknown parameters */
      "permessage-deflate; foo", "permessage-deflate; foo=1",
      "permessage-deflate; server_max_window_bit=10",
      /* repeated parameters */
      "permessage-deflate; server_no_context_takeover; "
      "server_no_context_takeover",
      "permessage-deflate; client_no_context_takeover; "
      "client_no_context_takeover",
      "permessage-deflate; server_max_window_bits=10; "
      "server_max_window_bits=10",
      "permessage-deflate; client_max_window_bits; client_max_window_bits",
      "permessage-deflate; client_max_window_bits=9; client_max_window_bits",
      /* values where none belongs */
      "permessage-deflate; server_no_context_takeover=x",
      "permessage-deflate; client_no_context_takeover=1",
      "permessage-deflate; client_no_context_takeover=\"\"",
      /* invalid window bits */
      "permessage-deflate; server_max_window_bits",
      "permessage-deflate; server_max_window_bits=7",
      "permessage-deflate; server_max_window_bits=16",
      "permessage-deflate; server_max_window_bits=0",
      "permessage-deflate; server_max_window_bits=abc",
      "permessage-deflate; server_max_window_bits=08",
      "permessage-deflate; server_max_window_bits=010",
      "permessage-deflate; server_max_window_bits=+9",
      "permessage-deflate; server_max_window_bits=9.0",
      "permessage-deflate; server_max_window_bits=\"\"",
      "permessage-deflate; server_max_window_bits=\"1 0\"",
      "permessage-deflate; server_max_window_bits=\"10000000000000000000\"",
      "permessage-deflate; server_max_window_bits=99999999999999999999",
      "permessage-deflate; client_max_window_bits=7",
      "permessage-deflate; client_max_window_bits=16",
      "permessage-deflate; client_max_window_bits=x",
      "permessage-deflate; client_max_window_bits=\"\"",
      /* other extensions only */
      "x-webkit-deflate-frame", "permessage-deflat", "permessage-deflate2",
      "foo; server_max_window_bits=10"};
  size_t i;
  for (i = 0; i < sizeof bad / sizeof bad[0]; i++) CHECK(srv_declines(&c, bad[i]));
}

TEST(server_chooses_first_acceptable) {
  ws_deflate_config_t c = open_cfg();
  ws_deflate_params_t p;
  char resp[WS_DEFLATE_HEADER_MAX];
  CHECK(srv_answers(&c,
                    "permessage-deflate; server_max_window_bits=7, "
                    "permessage-deflate; foo, "
                    "permessage-deflate; client_no_context_takeover, "
                    "permessage-deflate; server_max_window_bits=9",
                    "permessage-deflate; client_no_context_takeover"));
  CHECK(srv_answers(&c,
                    "x-webkit-deflate-frame; max_window_bits=10, "
                    "permessage-deflate; server_max_window_bits=10, "
                    "permessage-deflate",
                    "permessage-deflate; server_max_window_bits=10"));
  /* Empty list elements are skipped (RFC 9110 §5.6.1). */
  CHECK(srv_answers(&c, " , ,permessage-deflate,, ", "permessage-deflate"));
  CHECK(srv_declines(&c, ""));
  CHECK(srv_declines(&c, " , ,"));
  /* Several header lines, in order. */
  {
    ws_header_t h[4];
    const char *v[4] = {"foo, permessage-deflate; bad",
                        "permessage-deflate; server_max_window_bits=9",
                        "permessage-deflate", "permessage-deflate"};
    const char *names[4] = {"Sec-WebSocket-Extensions", "sec-websocket-extensions",
                            "X-Other", "Sec-WebSocket-Extensions"};
    int k;
    for (k = 0; k < 4; k++) {
      h[k].name.p = names[k];
      h[k].name.n = strlen(names[k]);
      h[k].value.p = v[k];
      h[k].value.n = strlen(v[k]);
    }
    CHECK_EQ_INT(
        ws_deflate_server_negotiate_headers(&c, h, 4, &p, resp), 1);
    CHECK(strcmp(resp, "permessage-deflate; server_max_window_bits=9") == 0);
    CHECK_EQ_INT(p.server_max_window_bits, 9);
    CHECK_EQ_INT(ws_deflate_server_negotiate_headers(&c, h, 1, &p, resp), 0);
    CHECK(resp[0] == '\0');
    CHECK_EQ_INT(ws_deflate_server_negotiate_headers(&c, h + 2, 1, &p, resp),
                 0);
    /* A malformed later header line is still an error. */
    v[3] = "permessage-deflate;";
    h[3].value.p = v[3];
    h[3].value.n = strlen(v[3]);
    CHECK_EQ_INT(ws_deflate_server_negotiate_headers(&c, h, 4, &p, resp),
                 WS_DEFLATE_ESYNTAX);
    CHECK(resp[0] == '\0');
  }
}

TEST(server_syntax_errors) {
  ws_deflate_config_t c = open_cfg();
  char resp[WS_DEFLATE_HEADER_MAX];
  static const char *const bad[] = {
      ";", "permessage-deflate;", "permessage-deflate; ;",
      "permessage-deflate; =1", "permessage-deflate; a=",
      "permessage-deflate; a= ;b", "permessage-deflate; a=\"unterminated",
      "permessage-deflate; a=\"x\\", "permessage-deflate x",
      "permessage deflate", "permessage-deflate; a=b c",
      "permessage-deflate; a=\"\x01\"", "perm@ssage-deflate",
      "permessage-deflate; a==b", "permessage-deflate, =",
      "\"permessage-deflate\"", "permessage-deflate; a=\"b\"c",
      /* a syntax error after an acceptable offer */
      "permessage-deflate, permessage-deflate; a=\"", "permessage-deflate, (x)"};
  size_t i;
  for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    int r = srv(&c, bad[i], resp, NULL);
    if (r != WS_DEFLATE_ESYNTAX)
      fprintf(stderr, "  \"%s\" -> %d\n", bad[i], r);
    CHECK_EQ_INT(r, WS_DEFLATE_ESYNTAX);
    CHECK(resp[0] == '\0');
  }
  /* A disabled configuration ignores the header entirely. */
  c.enabled = 0;
  CHECK_EQ_INT(srv(&c, ";", resp, NULL), 0);
  CHECK_EQ_INT(srv(&c, "permessage-deflate", resp, NULL), 0);
  CHECK(resp[0] == '\0');
}

/* ---------------------------------------------------------------------- */
/* Client negotiation                                                     */

TEST(client_offer_strings) {
  ws_deflate_config_t c;
  char buf[WS_DEFLATE_HEADER_MAX];
  size_t n;
  ws_deflate_config_default(&c, 0);
  n = ws_deflate_client_offer(&c, buf);
  CHECK(strcmp(buf, "permessage-deflate; client_max_window_bits") == 0);
  CHECK_EQ_INT(n, strlen(buf));
  c.server_no_context_takeover = 1;
  c.client_no_context_takeover = 1;
  c.server_max_window_bits = 10;
  c.client_max_window_bits = 9;
  n = ws_deflate_client_offer(&c, buf);
  CHECK(strcmp(buf, "permessage-deflate; server_no_context_takeover; "
                    "client_no_context_takeover; server_max_window_bits=10; "
                    "client_max_window_bits=9") == 0);
  CHECK_EQ_INT(n, strlen(buf));
  c.server_max_window_bits = 15;
  c.client_max_window_bits = 15;
  ws_deflate_client_offer(&c, buf);
  CHECK(strcmp(buf, "permessage-deflate; server_no_context_takeover; "
                    "client_no_context_takeover; client_max_window_bits") ==
        0);
}

TEST(client_accepts_valid) {
  ws_deflate_config_t c = open_cfg();
  ws_deflate_params_t p;
  CHECK_EQ_INT(cli(&c, "permessage-deflate", &p), 0);
  CHECK(params_eq(&p, &(ws_deflate_params_t){0, 0, 15, 15}));
  /* Unasked server_max_window_bits and server_no_context_takeover are
   * allowed (§7.1.2.1, §7.1.1.1); a client window from the server narrows
   * ours (§7.1.2.2, offered bare). */
  CHECK_EQ_INT(cli(&c,
                   "permessage-deflate; server_no_context_takeover; "
                   "server_max_window_bits=10; client_max_window_bits=8",
                   &p),
               0);
  CHECK(params_eq(&p, &(ws_deflate_params_t){1, 0, 10, 8}));
  CHECK_EQ_INT(cli(&c, "Permessage-Deflate ; client_no_context_takeover",
                   &p), 0);
  CHECK(params_eq(&p, &(ws_deflate_params_t){0, 1, 15, 15}));
  CHECK_EQ_INT(cli(&c, "permessage-deflate; server_max_window_bits=\"9\"",
                   &p), 0);
  CHECK_EQ_INT(p.server_max_window_bits, 9);
  /* Our own limits, honoured by the server. */
  c.server_no_context_takeover = 1;
  c.client_no_context_takeover = 1;
  c.server_max_window_bits = 10;
  c.client_max_window_bits = 11;
  CHECK_EQ_INT(cli(&c,
                   "permessage-deflate; server_no_context_takeover; "
                   "server_max_window_bits=10",
                   &p),
               0);
  /* client_no_context_takeover kept though not repeated; our window 11. */
  CHECK(params_eq(&p, &(ws_deflate_params_t){1, 1, 10, 11}));
  CHECK_EQ_INT(cli(&c,
                   "permessage-deflate; server_no_context_takeover; "
                   "server_max_window_bits=8; client_max_window_bits=9",
                   &p),
               0);
  CHECK(params_eq(&p, &(ws_deflate_params_t){1, 1, 8, 9}));
}

TEST(client_rejects_invalid) {
  ws_deflate_config_t c = open_cfg(), lim = open_cfg();
  lim.server_no_context_takeover = 1;
  lim.server_max_window_bits = 10;
  lim.client_max_window_bits = 10;
  CHECK_EQ_INT(cli(&c, "x-foo", NULL), WS_DEFLATE_EEXTENSION);
  CHECK_EQ_INT(cli(&c, "permessage-deflate, permessage-deflate", NULL),
               WS_DEFLATE_EEXTENSION);
  CHECK_EQ_INT(cli(&c, "permessage-deflate, x-foo", NULL),
               WS_DEFLATE_EEXTENSION);
  CHECK_EQ_INT(cli(&c, "x-foo, permessage-deflate", NULL),
               WS_DEFLATE_EEXTENSION);
  CHECK_EQ_INT(cli(&c, "permessage-deflate; foo", NULL), WS_DEFLATE_EPARAM);
  CHECK_EQ_INT(cli(&c,
                   "permessage-deflate; server_no_context_takeover; "
                   "server_no_context_takeover",
                   NULL),
               WS_DEFLATE_EPARAM);
  CHECK_EQ_INT(cli(&c,
                   "permessage-deflate; client_max_window_bits=9; "
                   "client_max_window_bits=9",
                   NULL),
               WS_DEFLATE_EPARAM);
  CHECK_EQ_INT(cli(&c, "permessage-deflate; server_no_context_takeover=1",
                   NULL),
               WS_DEFLATE_EPARAM);
  CHECK_EQ_INT(cli(&c, "permessage-deflate; server_max_window_bits=16",
                   NULL),
               WS_DEFLATE_EVALUE);
  CHECK_EQ_INT(cli(&c, "permessage-deflate; server_max_window_bits", NULL),
               WS_DEFLATE_EVALUE);
  CHECK_EQ_INT(cli(&c, "permessage-deflate; client_max_window_bits", NULL),
               WS_DEFLATE_EVALUE);
  CHECK_EQ_INT(cli(&c, "permessage-deflate; client_max_window_bits=7", NULL),
               WS_DEFLATE_EVALUE);
  CHECK_EQ_INT(cli(&c, "permessage-deflate; client_max_window_bits=x", NULL),
               WS_DEFLATE_EVALUE);
  /* Valid, but not an acceptance of our offer. */
  CHECK_EQ_INT(cli(&lim, "permessage-deflate; server_max_window_bits=10",
                   NULL),
               WS_DEFLATE_ENEGOTIATION); /* no server_no_context_takeover */
  CHECK_EQ_INT(cli(&lim, "permessage-deflate; server_no_context_takeover",
                   NULL),
               WS_DEFLATE_ENEGOTIATION); /* no server_max_window_bits */
  CHECK_EQ_INT(cli(&lim,
                   "permessage-deflate; server_no_context_takeover; "
                   "server_max_window_bits=11",
                   NULL),
               WS_DEFLATE_ENEGOTIATION);
  CHECK_EQ_INT(cli(&lim,
                   "permessage-deflate; server_no_context_takeover; "
                   "server_max_window_bits=10; client_max_window_bits=11",
                   NULL),
               WS_DEFLATE_ENEGOTIATION);
  /* Syntax. */
  CHECK_EQ_INT(cli(&c, "permessage-deflate;", NULL), WS_DEFLATE_ESYNTAX);
  CHECK_EQ_INT(cli(&c, "", NULL), WS_DEFLATE_ESYNTAX);
  CHECK_EQ_INT(cli(&c, " , ", NULL), WS_DEFLATE_ESYNTAX);
  /* Nothing was offered. */
  c.enabled = 0;
  CHECK_EQ_INT(cli(&c, "permessage-deflate", NULL), WS_DEFLATE_EEXTENSION);
}

TEST(client_accept_headers) {
  ws_deflate_config_t c = open_cfg();
  ws_deflate_params_t p;
  const char *reason = "unset";
  ws_header_t h[3];
  const char *names[3] = {"Upgrade", "Sec-WebSocket-Extensions",
                          "Sec-WebSocket-Extensions"};
  const char *vals[3] = {"websocket", "permessage-deflate; "
                                      "server_max_window_bits=9",
                         "permessage-deflate"};
  int k;
  for (k = 0; k < 3; k++) {
    h[k].name.p = names[k];
    h[k].name.n = strlen(names[k]);
    h[k].value.p = vals[k];
    h[k].value.n = strlen(vals[k]);
  }
  CHECK_EQ_INT(ws_deflate_client_accept_headers(&c, h, 1, &p, &reason), 0);
  CHECK_EQ_INT(ws_deflate_client_accept_headers(&c, h, 2, &p, &reason), 1);
  CHECK(reason == NULL);
  CHECK_EQ_INT(p.server_max_window_bits, 9);
  /* Two header lines, one extension each: more than one extension. */
  CHECK_EQ_INT(ws_deflate_client_accept_headers(&c, h, 3, &p, &reason),
               WS_DEFLATE_EEXTENSION);
  CHECK(reason != NULL && strstr(reason, "more than one") != NULL);
  c.enabled = 0;
  CHECK_EQ_INT(ws_deflate_client_accept_headers(&c, h, 1, &p, &reason), 0);
  CHECK_EQ_INT(ws_deflate_client_accept_headers(&c, h, 2, &p, &reason),
               WS_DEFLATE_EEXTENSION);
}

/* Every client configuration against several server configurations: the
 * server's answer is accepted by the client and both agree. */
TEST(negotiation_both_sides_agree) {
  ws_deflate_config_t srvs[4];
  int si, snct, cnct, sb, cb, count = 0;
  srvs[0] = open_cfg();
  ws_deflate_config_default(&srvs[1], 1);
  srvs[2] = open_cfg();
  srvs[2].server_no_context_takeover = 1;
  srvs[2].client_no_context_takeover = 1;
  srvs[2].server_max_window_bits = 8;
  srvs[2].client_max_window_bits = 8;
  srvs[3] = open_cfg();
  srvs[3].server_max_window_bits = 13;
  srvs[3].client_max_window_bits = 9;
  for (si = 0; si < 4; si++)
    for (snct = 0; snct < 2; snct++)
      for (cnct = 0; cnct < 2; cnct++)
        for (sb = 8; sb <= 15; sb++)
          for (cb = 8; cb <= 15; cb++) {
            ws_deflate_config_t c = open_cfg();
            ws_deflate_params_t ps, pc;
            char offer[WS_DEFLATE_HEADER_MAX], resp[WS_DEFLATE_HEADER_MAX];
            const char *reason = NULL;
            int r;
            c.server_no_context_takeover = (uint8_t)snct;
            c.client_no_context_takeover = (uint8_t)cnct;
            c.server_max_window_bits = (uint8_t)sb;
            c.client_max_window_bits = (uint8_t)cb;
            ws_deflate_client_offer(&c, offer);
            r = srv(&srvs[si], offer, resp, &ps);
            CHECK_EQ_INT(r, 1);
            r = ws_deflate_client_accept(&c, resp, strlen(resp), &pc,
                                         &reason);
            CHECK_EQ_INT(r, 0);
            if (r != 0 || !params_eq(&ps, &pc)) {
              fprintf(stderr, "  offer \"%s\" resp \"%s\" (%s)\n", offer,
                      resp, reason ? reason : "");
              CHECK(0);
              continue;
            }
            /* The agreement keeps every promise. */
            CHECK(pc.server_max_window_bits <= sb);
            CHECK(pc.client_max_window_bits <= cb);
            CHECK(pc.server_max_window_bits <=
                  srvs[si].server_max_window_bits);
            CHECK(!snct || pc.server_no_context_takeover);
            CHECK(!cnct || pc.client_no_context_takeover);
            count++;
          }
  CHECK_EQ_INT(count, 4 * 2 * 2 * 8 * 8);
}

TEST(params_format) {
  char buf[WS_DEFLATE_HEADER_MAX];
  ws_deflate_params_t p = mkparams(1, 1, 15, 15);
  ws_deflate_params_format(&p, buf);
  CHECK(strcmp(buf, "permessage-deflate; server_no_context_takeover; "
                    "client_no_context_takeover") == 0);
  p = mkparams(0, 0, 8, 15);
  CHECK_EQ_INT(ws_deflate_params_format(&p, buf),
               strlen("permessage-deflate; server_max_window_bits=8"));
  CHECK(strcmp(buf, "permessage-deflate; server_max_window_bits=8") == 0);
  p = mkparams(1, 1, 10, 14);
  CHECK_EQ_INT(ws_deflate_params_format(&p, buf), strlen(buf));
  CHECK(strlen(buf) < WS_DEFLATE_HEADER_MAX);
}

TEST(config_check) {
  ws_deflate_config_t c = open_cfg();
  ws_deflate_params_t p = mkparams(0, 0, 15, 15);
  ws_deflate_t *d;
  CHECK_EQ_INT(ws_deflate_config_check(&c), 0);
  c.server_max_window_bits = 7;
  CHECK_EQ_INT(ws_deflate_config_check(&c), -1);
  CHECK(ws_deflate_new(&c, &p, 1) == NULL);
  c = open_cfg();
  c.client_max_window_bits = 16;
  CHECK_EQ_INT(ws_deflate_config_check(&c), -1);
  c = open_cfg();
  c.mem_level = 0;
  CHECK_EQ_INT(ws_deflate_config_check(&c), -1);
  c.mem_level = 10;
  CHECK_EQ_INT(ws_deflate_config_check(&c), -1);
  c = open_cfg();
  c.level = 10;
  CHECK_EQ_INT(ws_deflate_config_check(&c), -1);
  c.level = -2;
  CHECK_EQ_INT(ws_deflate_config_check(&c), -1);
  c = open_cfg();
  p.client_max_window_bits = 7;
  CHECK(ws_deflate_new(&c, &p, 0) == NULL);
  /* A bad configuration negotiates nothing. */
  c.server_max_window_bits = 3;
  CHECK(srv_declines(&c, "permessage-deflate"));
  p = mkparams(0, 0, 15, 15);
  c = open_cfg();
  c.threshold = 100;
  d = ws_deflate_new(&c, &p, 1);
  CHECK(d != NULL);
  CHECK(!ws_deflate_should_compress(d, 0));
  CHECK(!ws_deflate_should_compress(d, 99));
  CHECK(ws_deflate_should_compress(d, 100));
  ws_deflate_free(d);
  ws_deflate_free(NULL);
}

TEST(strerror_all) {
  int code;
  for (code = 0; code >= WS_DEFLATE_ENOMEM; code--)
    CHECK(strcmp(ws_deflate_strerror(code), "unknown error") != 0);
  CHECK(strcmp(ws_deflate_strerror(-100), "unknown error") == 0);
}

/* ---------------------------------------------------------------------- */
/* RFC 7692 §7.2.3 examples                                               */

static const uint8_t HELLO_1[] = {0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00};
static const uint8_t HELLO_2[] = {0xf2, 0x00, 0x11, 0x00, 0x00};

TEST(rfc_compress_vectors) {
  ws_deflate_params_t p = mkparams(0, 0, 15, 15);
  ws_deflate_t *d = mk(&p, 1);
  ws_buf_t b = {0};
  /* §7.2.3.1: "Hello" in one compressed block. */
  CHECK_EQ_INT(ws_deflate_compress(d, "Hello", 5, &b), 0);
  CHECK_EQ_INT(WS_BUF_SIZE(&b), sizeof HELLO_1);
  CHECK_MEM(WS_BUF_PTR(&b), HELLO_1, sizeof HELLO_1);
  /* §7.2.3.2: the second "Hello" refers back into the shared window. */
  ws_buf_consume(&b, WS_BUF_SIZE(&b));
  CHECK_EQ_INT(ws_deflate_compress(d, "Hello", 5, &b), 0);
  CHECK_EQ_INT(WS_BUF_SIZE(&b), sizeof HELLO_2);
  CHECK_MEM(WS_BUF_PTR(&b), HELLO_2, sizeof HELLO_2);
  ws_deflate_free(d);
  /* Without context takeover both are the first form. */
  p.server_no_context_takeover = 1;
  d = mk(&p, 1);
  ws_buf_consume(&b, WS_BUF_SIZE(&b));
  CHECK_EQ_INT(ws_deflate_compress(d, "Hello", 5, &b), 0);
  CHECK_EQ_INT(ws_deflate_compress(d, "Hello", 5, &b), 0);
  CHECK_EQ_INT(WS_BUF_SIZE(&b), 2 * sizeof HELLO_1);
  CHECK_MEM(WS_BUF_PTR(&b), HELLO_1, sizeof HELLO_1);
  CHECK_MEM(WS_BUF_PTR(&b) + sizeof HELLO_1, HELLO_1, sizeof HELLO_1);
  /* §7.2.3.6: an empty message is one 0x00 byte. */
  ws_buf_consume(&b, WS_BUF_SIZE(&b));
  CHECK_EQ_INT(ws_deflate_compress(d, "", 0, &b), 0);
  CHECK_EQ_INT(WS_BUF_SIZE(&b), 1);
  CHECK_EQ_INT(WS_BUF_PTR(&b)[0], 0x00);
  ws_deflate_free(d);
  ws_buf_free(&b);
}

/* Inflates each payload in turn (one message each) and compares. */
static int inflates_to(ws_deflate_t *d, const uint8_t *p, size_t n,
                       const char *want) {
  ws_buf_t b = {0};
  int r = inflate_all(d, p, n, &b, 0);
  int ok = r == 0 && WS_BUF_SIZE(&b) == strlen(want) &&
           (!*want || memcmp(WS_BUF_PTR(&b), want, strlen(want)) == 0);
  if (!ok)
    fprintf(stderr, "  inflate: r=%d, %zu bytes\n", r, WS_BUF_SIZE(&b));
  ws_buf_free(&b);
  return ok;
}

TEST(rfc_inflate_vectors) {
  ws_deflate_params_t p = mkparams(0, 0, 15, 15);
  ws_deflate_t *d = mk(&p, 0);
  ws_buf_t b = {0};
  static const uint8_t stored[] = {0x00, 0x05, 0x00, 0xfa, 0xff, 0x48,
                                   0x65, 0x6c, 0x6c, 0x6f, 0x00};
  static const uint8_t bfinal[] = {0xf3, 0x48, 0xcd, 0xc9,
                                   0xc9, 0x07, 0x00, 0x00};
  static const uint8_t two_blocks[] = {0xf2, 0x48, 0x05, 0x00, 0x00,
                                       0x00, 0xff, 0xff, 0xca, 0xc9,
                                       0xc9, 0x07, 0x00};
  /* §7.2.3.1 and §7.2.3.2 with the shared window. */
  CHECK(inflates_to(d, HELLO_1, sizeof HELLO_1, "Hello"));
  CHECK(inflates_to(d, HELLO_2, sizeof HELLO_2, "Hello"));
  /* §7.2.3.1, fragmented: 0xf2 0x48 0xcd | 0xc9 0xc9 0x07 0x00. */
  CHECK_EQ_INT(ws_deflate_inflate(d, HELLO_1, 3, 0, &b, 0), 0);
  CHECK_EQ_INT(ws_deflate_inflate(d, HELLO_1 + 3, 4, 1, &b, 0), 0);
  CHECK_EQ_INT(WS_BUF_SIZE(&b), 5);
  CHECK_MEM(WS_BUF_PTR(&b), "Hello", 5);
  ws_buf_free(&b);
  /* §7.2.3.3: a stored block. */
  CHECK(inflates_to(d, stored, sizeof stored, "Hello"));
  /* §7.2.3.4: a block with BFINAL set, and the next message still refers
   * back into the window. */
  CHECK(inflates_to(d, bfinal, sizeof bfinal, "Hello"));
  CHECK(inflates_to(d, HELLO_2, sizeof HELLO_2, "Hello"));
  /* ... and also without the trailing 0x00 (a peer that used Z_FINISH). */
  CHECK(inflates_to(d, bfinal, sizeof bfinal - 1, "Hello"));
  CHECK(inflates_to(d, HELLO_2, sizeof HELLO_2, "Hello"));
  /* §7.2.3.5: two blocks in one message. */
  CHECK(inflates_to(d, two_blocks, sizeof two_blocks, "Hello"));
  /* §7.2.3.6: the empty message, and an empty payload. */
  CHECK(inflates_to(d, (const uint8_t *)"", 1, ""));
  CHECK(inflates_to(d, NULL, 0, ""));
  CHECK(inflates_to(d, HELLO_2, sizeof HELLO_2, "Hello"));
  ws_deflate_free(d);
  /* Without context takeover the second form has nothing to refer to. */
  p.server_no_context_takeover = 1;
  d = mk(&p, 0);
  CHECK(inflates_to(d, HELLO_1, sizeof HELLO_1, "Hello"));
  CHECK_EQ_INT(inflate_all(d, HELLO_2, sizeof HELLO_2, &b, 0),
               WS_DEFLATE_EDATA);
  ws_buf_free(&b);
  ws_deflate_free(d);
}

/* Raw deflate with zlib directly, for shapes ws_deflate never produces. */
static size_t zraw(const char *dict, const char *s, int flush, uint8_t *out,
                   size_t cap) {
  z_stream z;
  size_t n;
  memset(&z, 0, sizeof z);
  deflateInit2(&z, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY);
  if (dict) deflateSetDictionary(&z, (const Bytef *)dict, (uInt)strlen(dict));
  z.next_in = (Bytef *)(uintptr_t)s;
  z.avail_in = (uInt)strlen(s);
  z.next_out = out;
  z.avail_out = (uInt)cap;
  deflate(&z, flush);
  n = cap - z.avail_out;
  deflateEnd(&z);
  return n;
}

TEST(inflate_blocks_after_bfinal) {
  /* RFC 7692 §7.2.1: blocks may follow a block with BFINAL set in the same
   * message, and refer back past it. */
  ws_deflate_params_t p = mkparams(0, 0, 15, 15);
  ws_deflate_t *d = mk(&p, 1);
  uint8_t msg[256];
  size_t n = zraw(NULL, "Hello", Z_FINISH, msg, sizeof msg);
  size_t m = zraw("Hello", " world Hello", Z_SYNC_FLUSH, msg + n,
                  sizeof msg - n);
  CHECK(m > 4);
  CHECK(inflates_to(d, msg, n + m - 4, "Hello world Hello"));
  /* Split across chunks at every point, fresh streams each time. */
  {
    size_t cut;
    for (cut = 0; cut <= n + m - 4; cut++) {
      ws_deflate_t *e = mk(&p, 1);
      ws_buf_t b = {0};
      CHECK_EQ_INT(ws_deflate_inflate(e, msg, cut, 0, &b, 0), 0);
      CHECK_EQ_INT(ws_deflate_inflate(e, msg + cut, n + m - 4 - cut, 1, &b, 0),
                   0);
      CHECK(WS_BUF_SIZE(&b) == 17 &&
            memcmp(WS_BUF_PTR(&b), "Hello world Hello", 17) == 0);
      ws_buf_free(&b);
      ws_deflate_free(e);
    }
  }
  /* A full flush works like a sync flush. */
  n = zraw(NULL, "abcabcabc", Z_FULL_FLUSH, msg, sizeof msg);
  CHECK(inflates_to(d, msg, n - 4, "abcabcabc"));
  /* A peer that does not remove the 0x00 0x00 0xff 0xff (§7.2.1 step 3)
   * leaves the appended tail inside an unfinished stored block. */
  {
    ws_buf_t b = {0};
    CHECK_EQ_INT(inflate_all(d, msg, n, &b, 0), WS_DEFLATE_EDATA);
    ws_buf_free(&b);
  }
  ws_deflate_free(d);
}

/* ---------------------------------------------------------------------- */
/* Round trips                                                            */

static const size_t SIZES[] = {0,    1,     2,     15,    16,    100,
                               1000, 4095,  4096,  4097,  65535, 65536,
                               65537, 131072};

/* Sends every size, text and random, from tx to rx; checks the output, the
 * limit exactly at the size, last_out, and (when `probe_limit`) that one
 * byte less fails. */
static void run_sizes(ws_deflate_t *tx, ws_deflate_t *rx, uint32_t *seed,
                      int bytewise_small) {
  size_t si;
  uint8_t *msg = malloc(131072);
  CHECK(msg != NULL);
  for (si = 0; si < sizeof SIZES / sizeof SIZES[0]; si++) {
    int text;
    for (text = 1; text >= 0; text--) {
      size_t n = SIZES[si], got = 0;
      ws_buf_t z = {0}, out = {0};
      int r;
      fill(msg, n, text, seed);
      CHECK_EQ_INT(ws_deflate_compress(tx, msg, n, &z), 0);
      if (text && n >= 1000) CHECK(WS_BUF_SIZE(&z) < n / 2);
      r = inflate_chunked(rx, WS_BUF_PTR(&z), WS_BUF_SIZE(&z), &out, n,
                          bytewise_small && n <= 4097, seed, &got);
      CHECK_EQ_INT(r, 0);
      CHECK_EQ_INT(WS_BUF_SIZE(&out), n);
      CHECK_EQ_INT(got, n);
      if (r == 0 && WS_BUF_SIZE(&out) == n) CHECK_MEM(WS_BUF_PTR(&out), msg, n);
      ws_buf_free(&z);
      ws_buf_free(&out);
    }
  }
  free(msg);
}

TEST(roundtrip_all_windows_and_modes) {
  uint32_t seed = 12345;
  int w, nctx;
  for (w = 8; w <= 15; w++)
    for (nctx = 0; nctx < 4; nctx++) {
      /* nctx bit 0: server_no_context_takeover, bit 1: client_. */
      ws_deflate_params_t p = mkparams(nctx & 1, (nctx >> 1) & 1, w,
                                       w == 8 ? 15 : 23 - w);
      ws_deflate_t *s = mk(&p, 1), *c = mk(&p, 0);
      CHECK(s != NULL && c != NULL);
      if (!s || !c) return;
      run_sizes(s, c, &seed, w == 8 || w == 15);
      run_sizes(c, s, &seed, 0);
      /* Between messages, a direction without context takeover holds no
       * zlib memory. */
      if ((nctx & 3) == 3) {
        CHECK_EQ_INT(ws_deflate_memory(s), ws_deflate_memory(c));
        CHECK(ws_deflate_memory(s) < 200);
      }
      ws_deflate_free(s);
      ws_deflate_free(c);
    }
}

TEST(window_8_uses_distances_within_256) {
  /* The compressor runs zlib with window 9 for a negotiated 8; an inflater
   * with a 256-byte window must read all of it, including repeats at
   * distances 250..300 that a 512-byte window could reach. */
  ws_deflate_params_t p = mkparams(0, 0, 8, 8);
  ws_deflate_t *s = mk(&p, 1), *c = mk(&p, 0);
  uint8_t block[300], *msg = malloc(65536);
  uint32_t seed = 99;
  size_t i, got;
  int k;
  for (k = 0; k < 5; k++) {
    ws_buf_t z = {0}, out = {0};
    fill(block, sizeof block, 0, &seed);
    for (i = 0; i < 65536; i++) msg[i] = block[i % (250 + 10 * (size_t)k)];
    CHECK_EQ_INT(ws_deflate_compress(s, msg, 65536, &z), 0);
    CHECK_EQ_INT(inflate_chunked(c, WS_BUF_PTR(&z), WS_BUF_SIZE(&z), &out,
                                 65536, 0, &seed, &got),
                 0);
    CHECK(WS_BUF_SIZE(&out) == 65536 &&
          memcmp(WS_BUF_PTR(&out), msg, 65536) == 0);
    ws_buf_free(&z);
    ws_buf_free(&out);
  }
  free(msg);
  ws_deflate_free(s);
  ws_deflate_free(c);
}

TEST(window_larger_than_agreed_fails) {
  /* Data compressed with window 15 refers 20 000 bytes back; an inflater
   * that agreed to window 10 refuses it (the peer broke the agreement). */
  ws_deflate_params_t big = mkparams(0, 0, 15, 15);
  ws_deflate_params_t small = mkparams(0, 0, 10, 10);
  ws_deflate_t *s = mk(&big, 1), *c = mk(&small, 0);
  uint8_t *msg = malloc(40000);
  ws_buf_t z = {0}, out = {0};
  uint32_t seed = 5;
  size_t base;
  fill(msg, 20000, 0, &seed);
  memcpy(msg + 20000, msg, 20000);
  CHECK_EQ_INT(ws_deflate_compress(s, msg, 40000, &z), 0);
  CHECK(WS_BUF_SIZE(&z) < 30000);
  base = ws_deflate_memory(c);
  CHECK_EQ_INT(inflate_all(c, WS_BUF_PTR(&z), WS_BUF_SIZE(&z), &out, 0),
               WS_DEFLATE_EDATA);
  /* The decompressor was freed. */
  CHECK_EQ_INT(ws_deflate_memory(c), base);
  free(msg);
  ws_buf_free(&z);
  ws_buf_free(&out);
  ws_deflate_free(s);
  ws_deflate_free(c);
}

TEST(levels_and_memlevels) {
  int level, ml;
  uint32_t seed = 7;
  for (level = -1; level <= 9; level++)
    for (ml = 1; ml <= 9; ml += 4) {
      ws_deflate_config_t cfg = open_cfg();
      ws_deflate_params_t p = mkparams(0, 0, 11, 11);
      ws_deflate_t *s, *c;
      uint8_t msg[20000];
      ws_buf_t z = {0}, out = {0};
      cfg.level = (int8_t)level;
      cfg.mem_level = (uint8_t)ml;
      s = ws_deflate_new(&cfg, &p, 1);
      c = ws_deflate_new(&cfg, &p, 0);
      fill(msg, sizeof msg, 1, &seed);
      CHECK_EQ_INT(ws_deflate_compress(s, msg, sizeof msg, &z), 0);
      CHECK_EQ_INT(inflate_all(c, WS_BUF_PTR(&z), WS_BUF_SIZE(&z), &out,
                               sizeof msg),
                   0);
      CHECK(WS_BUF_SIZE(&out) == sizeof msg &&
            memcmp(WS_BUF_PTR(&out), msg, sizeof msg) == 0);
      if (level == 0) CHECK(WS_BUF_SIZE(&z) > sizeof msg);
      ws_buf_free(&z);
      ws_buf_free(&out);
      ws_deflate_free(s);
      ws_deflate_free(c);
    }
}

TEST(compress_appends) {
  /* Compressed bytes go after what the buffer holds, also with an offset
   * left by ws_buf_consume. */
  ws_deflate_params_t p = mkparams(0, 0, 15, 15);
  ws_deflate_t *s = mk(&p, 1);
  ws_buf_t b = {0};
  ws_buf_append(&b, "0123456789", 10, 0);
  ws_buf_consume(&b, 4);
  CHECK_EQ_INT(ws_deflate_compress(s, "Hello", 5, &b), 0);
  CHECK_EQ_INT(WS_BUF_SIZE(&b), 6 + sizeof HELLO_1);
  CHECK_MEM(WS_BUF_PTR(&b), "456789", 6);
  CHECK_MEM(WS_BUF_PTR(&b) + 6, HELLO_1, sizeof HELLO_1);
  ws_buf_free(&b);
  ws_deflate_free(s);
}

/* ---------------------------------------------------------------------- */
/* Limits and decompression bombs                                         */

TEST(limit_counts_what_the_buffer_holds) {
  ws_deflate_params_t p = mkparams(0, 0, 15, 15);
  ws_deflate_t *c = mk(&p, 0);
  ws_buf_t b = {0};
  /* The limit is on the whole message: 3 bytes already there + 5. */
  ws_buf_append(&b, "abc", 3, 0);
  CHECK_EQ_INT(inflate_all(c, HELLO_1, sizeof HELLO_1, &b, 8), 0);
  CHECK_EQ_INT(WS_BUF_SIZE(&b), 8);
  ws_buf_free(&b);
  ws_deflate_free(c);
  c = mk(&p, 0);
  ws_buf_append(&b, "abcd", 4, 0);
  CHECK_EQ_INT(inflate_all(c, HELLO_1, sizeof HELLO_1, &b, 8),
               WS_DEFLATE_ETOOBIG);
  CHECK(WS_BUF_SIZE(&b) <= 9);
  CHECK(ws_deflate_last_out(c) <= 5);
  ws_buf_free(&b);
  ws_deflate_free(c);
}

/* Compresses `n` zero bytes with zlib at level 9 (raw, sync flush, tail
 * removed); returns a malloc'd payload. */
static uint8_t *zeros_bomb(size_t n, size_t *len) {
  ws_deflate_config_t cfg = open_cfg();
  ws_deflate_params_t p = mkparams(0, 0, 15, 15);
  ws_deflate_t *s;
  uint8_t *zeros = calloc(1, n), *r;
  ws_buf_t z = {0};
  cfg.level = 9;
  s = ws_deflate_new(&cfg, &p, 1);
  ws_deflate_compress(s, zeros, n, &z);
  ws_deflate_free(s);
  free(zeros);
  *len = WS_BUF_SIZE(&z);
  r = malloc(*len);
  memcpy(r, WS_BUF_PTR(&z), *len);
  ws_buf_free(&z);
  return r;
}

TEST(bomb_stops_at_limit) {
  const size_t big = 10u << 20, limit = 1u << 20;
  size_t zlen, fed = 0, produced = 0;
  uint8_t *bomb = zeros_bomb(big, &zlen);
  ws_deflate_params_t p = mkparams(0, 0, 15, 15);
  ws_deflate_t *c = mk(&p, 0);
  ws_buf_t out = {0};
  int r = 0;
  CHECK(zlen < 12000);
  /* Fed 1 KiB at a time: the error comes with the second KiB (each
   * inflates to about 1 MiB), having inflated at most limit + 1 bytes. */
  while (fed < zlen) {
    size_t k = zlen - fed < 1024 ? zlen - fed : 1024;
    r = ws_deflate_inflate(c, bomb + fed, k, fed + k == zlen, &out, limit);
    produced += ws_deflate_last_out(c);
    CHECK(WS_BUF_SIZE(&out) <= limit + 1);
    CHECK(out.cap <= limit + 64 * 1024);
    fed += k;
    if (r != 0) break;
  }
  CHECK_EQ_INT(r, WS_DEFLATE_ETOOBIG);
  CHECK_EQ_INT(fed, 2048);
  CHECK(produced <= limit + 1);
  CHECK(out.cap <= limit + 1);
  /* After the error no zlib memory is held. */
  CHECK(ws_deflate_memory(c) < 200);
  ws_buf_free(&out);

  /* In one call it is the same. */
  r = ws_deflate_inflate(c, bomb, zlen, 1, &out, limit);
  CHECK_EQ_INT(r, WS_DEFLATE_ETOOBIG);
  CHECK(WS_BUF_SIZE(&out) <= limit + 1);
  CHECK(out.cap <= limit + 1);
  ws_buf_free(&out);

  /* The limit exactly at the size passes; one byte less fails. */
  r = ws_deflate_inflate(c, bomb, zlen, 1, &out, big);
  CHECK_EQ_INT(r, 0);
  CHECK_EQ_INT(WS_BUF_SIZE(&out), big);
  CHECK(out.cap <= big + 1);
  ws_buf_free(&out);
  ws_deflate_free(c);
  c = mk(&p, 0);
  r = ws_deflate_inflate(c, bomb, zlen, 1, &out, big - 1);
  CHECK_EQ_INT(r, WS_DEFLATE_ETOOBIG);
  CHECK_EQ_INT(WS_BUF_SIZE(&out), big);
  ws_buf_free(&out);
  ws_deflate_free(c);
  free(bomb);
}

TEST(small_limits) {
  ws_deflate_params_t p = mkparams(0, 0, 15, 15);
  size_t limit;
  for (limit = 1; limit <= 6; limit++) {
    ws_deflate_t *c = mk(&p, 0);
    ws_buf_t b = {0};
    int r = inflate_all(c, HELLO_1, sizeof HELLO_1, &b, limit);
    CHECK_EQ_INT(r, limit >= 5 ? 0 : WS_DEFLATE_ETOOBIG);
    CHECK(WS_BUF_SIZE(&b) <= limit + 1);
    ws_buf_free(&b);
    ws_deflate_free(c);
  }
}

/* ---------------------------------------------------------------------- */
/* Splits, corrupt data, memory                                           */

TEST(byte_by_byte_with_context) {
  ws_deflate_params_t p = mkparams(0, 0, 15, 15);
  ws_deflate_t *s = mk(&p, 1), *c = mk(&p, 0);
  uint8_t msg[10000];
  uint32_t seed = 3;
  int k;
  for (k = 0; k < 4; k++) {
    ws_buf_t z = {0}, out = {0};
    size_t i;
    fill(msg, sizeof msg, k != 2, &seed);
    CHECK_EQ_INT(ws_deflate_compress(s, msg, sizeof msg, &z), 0);
    for (i = 0; i < WS_BUF_SIZE(&z); i++) {
      /* fin on the last byte for even k, on an empty chunk after it for
       * odd k; empty non-final chunks in between. */
      int fin = (k % 2 == 0) && i + 1 == WS_BUF_SIZE(&z);
      CHECK_EQ_INT(ws_deflate_inflate(c, WS_BUF_PTR(&z) + i, 1, fin, &out,
                                      sizeof msg),
                   0);
      CHECK_EQ_INT(ws_deflate_inflate(c, NULL, 0, 0, &out, sizeof msg), 0);
      CHECK_EQ_INT(ws_deflate_last_out(c), 0);
    }
    if (k % 2) CHECK_EQ_INT(ws_deflate_inflate(c, NULL, 0, 1, &out, 0), 0);
    CHECK(WS_BUF_SIZE(&out) == sizeof msg &&
          memcmp(WS_BUF_PTR(&out), msg, sizeof msg) == 0);
    ws_buf_free(&z);
    ws_buf_free(&out);
  }
  ws_deflate_free(s);
  ws_deflate_free(c);
}

TEST(corrupt_input) {
  ws_deflate_params_t p = mkparams(0, 0, 15, 15);
  static const uint8_t reserved_btype[] = {0x07, 0x00};   /* BTYPE 11 */
  static const uint8_t bad_nlen[] = {0x00, 0x05, 0x00, 0x00, 0x00,
                                     'H',  'e',  'l',  'l',  'o'};
  uint8_t bad_dist[64]; /* refers back into a window that is empty */
  size_t bad_dist_n = zraw("abcdefgh", "abcdefghabcdefgh", Z_SYNC_FLUSH,
                           bad_dist, sizeof bad_dist) - 4;
  struct {
    const uint8_t *p;
    size_t n;
  } cases[] = {{reserved_btype, sizeof reserved_btype},
               {bad_nlen, sizeof bad_nlen},
               {bad_dist, bad_dist_n},
               {HELLO_1, 3}, /* truncated: stops inside the block */
               {HELLO_1, 6}};
  size_t i;
  uint32_t seed = 77;
  for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    ws_deflate_t *c = mk(&p, 0);
    ws_buf_t b = {0};
    int r = inflate_all(c, cases[i].p, cases[i].n, &b, 0);
    if (r != WS_DEFLATE_EDATA) fprintf(stderr, "  case %zu: %d\n", i, r);
    CHECK_EQ_INT(r, WS_DEFLATE_EDATA);
    CHECK(ws_deflate_memory(c) < 200);
    ws_buf_free(&b);
    ws_deflate_free(c);
  }
  /* Random garbage never crashes, and fails or inflates within bounds. */
  for (i = 0; i < 2000; i++) {
    ws_deflate_t *c = mk(&p, 0);
    ws_buf_t b = {0};
    uint8_t junk[64];
    size_t n = 1 + rnd(&seed) % sizeof junk, got;
    int r;
    fill(junk, n, 0, &seed);
    r = inflate_chunked(c, junk, n, &b, 4096, (int)(i & 1), &seed, &got);
    CHECK(r == 0 || r == WS_DEFLATE_EDATA || r == WS_DEFLATE_ETOOBIG);
    CHECK(WS_BUF_SIZE(&b) <= 4097);
    CHECK_EQ_INT(got, WS_BUF_SIZE(&b));
    ws_buf_free(&b);
    ws_deflate_free(c);
  }
}

TEST(memory_is_lazy_and_released) {
  ws_deflate_params_t p = mkparams(0, 0, 15, 15);
  ws_deflate_t *s = mk(&p, 1), *c;
  ws_buf_t z = {0}, out = {0};
  uint8_t msg[65536];
  uint32_t seed = 1;
  size_t idle = ws_deflate_memory(s);
  /* Nothing but the object itself until the first message. */
  CHECK(idle < 200);
  fill(msg, sizeof msg, 1, &seed);
  CHECK_EQ_INT(ws_deflate_compress(s, msg, sizeof msg, &z), 0);
  /* Context takeover keeps the compressor: 256 KiB and more at 15/8. */
  CHECK(ws_deflate_memory(s) > 256 * 1024);
  ws_deflate_free(s);

  /* With no context takeover both ways, nothing stays between messages. */
  p = mkparams(1, 1, 15, 15);
  s = mk(&p, 1);
  c = mk(&p, 0);
  ws_buf_consume(&z, WS_BUF_SIZE(&z));
  CHECK_EQ_INT(ws_deflate_compress(s, msg, sizeof msg, &z), 0);
  CHECK_EQ_INT(ws_deflate_memory(s), idle);
  CHECK_EQ_INT(inflate_all(c, WS_BUF_PTR(&z), WS_BUF_SIZE(&z), &out, 0), 0);
  CHECK_EQ_INT(ws_deflate_memory(c), idle);
  /* While a message is in progress the decompressor exists. */
  ws_buf_consume(&out, WS_BUF_SIZE(&out));
  CHECK_EQ_INT(ws_deflate_inflate(c, WS_BUF_PTR(&z), 100, 0, &out, 0), 0);
  CHECK(ws_deflate_memory(c) > 7000);
  CHECK_EQ_INT(ws_deflate_inflate(c, WS_BUF_PTR(&z) + 100,
                                  WS_BUF_SIZE(&z) - 100, 1, &out, 0),
               0);
  CHECK_EQ_INT(ws_deflate_memory(c), idle);
  CHECK(WS_BUF_SIZE(&out) == sizeof msg &&
        memcmp(WS_BUF_PTR(&out), msg, sizeof msg) == 0);
  ws_buf_free(&z);
  ws_buf_free(&out);
  ws_deflate_free(s);
  ws_deflate_free(c);
}

int main(void) {
  RUN(server_plain_offer);
  RUN(server_default_config);
  RUN(server_offer_parameters);
  RUN(server_config_narrows);
  RUN(server_quoted_and_case);
  RUN(server_declines_invalid);
  RUN(server_chooses_first_acceptable);
  RUN(server_syntax_errors);
  RUN(client_offer_strings);
  RUN(client_accepts_valid);
  RUN(client_rejects_invalid);
  RUN(client_accept_headers);
  RUN(negotiation_both_sides_agree);
  RUN(params_format);
  RUN(config_check);
  RUN(strerror_all);
  RUN(rfc_compress_vectors);
  RUN(rfc_inflate_vectors);
  RUN(inflate_blocks_after_bfinal);
  RUN(roundtrip_all_windows_and_modes);
  RUN(window_8_uses_distances_within_256);
  RUN(window_larger_than_agreed_fails);
  RUN(levels_and_memlevels);
  RUN(compress_appends);
  RUN(limit_counts_what_the_buffer_holds);
  RUN(bomb_stops_at_limit);
  RUN(small_limits);
  RUN(byte_by_byte_with_context);
  RUN(corrupt_input);
  RUN(memory_is_lazy_and_released);
  return TEST_REPORT();
}
