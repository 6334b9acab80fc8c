/*
 * Tests of permessage-deflate (RFC 7692) in the message layer: RSV1 rules,
 * the §7.2.3 example frames in both roles and in every split of the input,
 * control frames between compressed fragments, the inflated size limit
 * (1009 before the memory is spent), corrupt data and invalid inflated
 * UTF-8 (1007, fail-fast), compressed sends with the threshold and the
 * per-message opt-out, and two connections talking to each other with
 * every window size and context takeover mode.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "ws_conn.h"
#include "ws_deflate.h"

/* ---- Recording events -------------------------------------------------- */

typedef struct rec {
  int type[64], opcode[64], code[64];
  uint8_t rsv[64];
  size_t len[64];
  uint8_t *data[64];
  const char *reason[64];
  size_t n;
  ws_conn_t *c;
} rec_t;

static void on_event(void *ud, const ws_event_t *e) {
  rec_t *r = ud;
  size_t i = r->n;
  if (i >= 64) return;
  r->type[i] = e->type;
  r->opcode[i] = e->opcode;
  r->code[i] = e->code;
  r->len[i] = e->len;
  r->reason[i] = e->reason;
  r->rsv[i] = r->c ? r->c->msg_rsv : 0;
  r->data[i] = malloc(e->len + 1);
  if (e->len) memcpy(r->data[i], e->data, e->len);
  r->n++;
}

static void rec_free(rec_t *r) {
  size_t i;
  for (i = 0; i < r->n && i < 64; i++) free(r->data[i]);
  memset(r, 0, sizeof *r);
}

/* A deflate-enabled connection with the given agreed parameters. */
static void conn_new(ws_conn_t *c, rec_t *r, ws_role_t role,
                     const ws_deflate_params_t *p, size_t threshold) {
  ws_deflate_config_t cfg;
  memset(r, 0, sizeof *r);
  ws_deflate_config_default(&cfg, role == WS_ROLE_SERVER);
  cfg.threshold = threshold;
  ws_conn_init(c, role, on_event, r);
  r->c = c;
  ws_conn_set_deflate(c, ws_deflate_new(&cfg, p, role == WS_ROLE_SERVER));
}

static const ws_deflate_params_t P15 = {0, 0, 15, 15};

/* Feeds in[0..n) to c in chunks of `chunk` bytes (0: whole), each a heap
 * copy of exactly its size.  Returns the bytes consumed. */
static size_t feed(ws_conn_t *c, const uint8_t *in, size_t n, size_t chunk) {
  size_t off = 0, used = 0;
  if (!chunk) chunk = n ? n : 1;
  while (off < n) {
    size_t k = n - off < chunk ? n - off : chunk, got;
    uint8_t *copy = malloc(k);
    memcpy(copy, in + off, k);
    got = ws_conn_feed(c, copy, k);
    free(copy);
    used += got;
    if (got < k) break;
    off += k;
  }
  return used;
}

/* Builds a frame into out (masked with a fixed key when `masked`). */
static size_t frame(uint8_t *out, int fin, int rsv, int opcode, int masked,
                    const void *p, size_t n) {
  static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
  size_t hl = ws_frame_write_header(out, fin, rsv, opcode,
                                    masked ? key : NULL, n);
  if (n) memcpy(out + hl, p, n);
  if (masked) ws_mask(out + hl, n, key, 0);
  return hl + n;
}

/* The close code of the last Close frame in c->out, or -1. */
static int out_close_code(ws_conn_t *c) {
  const uint8_t *p = WS_BUF_PTR(&c->out);
  size_t n = WS_BUF_SIZE(&c->out), i = 0;
  int code = -1;
  while (i < n) {
    ws_frame_header_t h;
    int hl = ws_frame_parse_header(p + i, n - i, &h);
    if (hl <= 0) return -2;
    if (h.opcode == WS_OP_CLOSE && h.len >= 2) {
      uint8_t b[2];
      memcpy(b, p + i + hl, 2);
      if (h.masked) ws_mask(b, 2, h.mask, 0);
      code = (b[0] << 8) | b[1];
    }
    i += (size_t)hl + (size_t)h.len;
  }
  return code;
}

static const uint8_t HELLO_1[] = {0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00};
static const uint8_t HELLO_2[] = {0xf2, 0x00, 0x11, 0x00, 0x00};

/* ---- Setup ---------------------------------------------------------------- */

TEST(set_deflate) {
  ws_conn_t c;
  rec_t r;
  conn_new(&c, &r, WS_ROLE_SERVER, &P15, 0);
  CHECK(c.deflate != NULL);
  CHECK(c.rsv_allowed & WS_RSV1);
  ws_conn_set_deflate(&c, NULL);
  CHECK(c.deflate != NULL);
  ws_conn_free(&c);
  CHECK(c.deflate == NULL);
  rec_free(&r);
}

/* ---- Receiving -------------------------------------------------------------- */

/* RFC 7692 §7.2.3.1 and §7.2.3.2 as frames: one unfragmented, one in two
 * fragments, one referring back into the shared window. */
static size_t rfc_stream(uint8_t *buf, int masked) {
  size_t n = 0;
  n += frame(buf + n, 1, WS_RSV1, WS_OP_TEXT, masked, HELLO_1, 7);
  n += frame(buf + n, 0, WS_RSV1, WS_OP_TEXT, masked, HELLO_1, 3);
  n += frame(buf + n, 1, 0, WS_OP_CONT, masked, HELLO_1 + 3, 4);
  n += frame(buf + n, 1, WS_RSV1, WS_OP_TEXT, masked, HELLO_2, 5);
  return n;
}

TEST(rfc_frames_exact_bytes) {
  /* The frame of §7.2.3.1 byte for byte, as a server receives it
   * unmasked... from a client it would be masked, so use the client role. */
  static const uint8_t f1[] = {0xc1, 0x07, 0xf2, 0x48, 0xcd,
                               0xc9, 0xc9, 0x07, 0x00};
  static const uint8_t f2a[] = {0x41, 0x03, 0xf2, 0x48, 0xcd};
  static const uint8_t f2b[] = {0x80, 0x04, 0xc9, 0xc9, 0x07, 0x00};
  static const uint8_t f3[] = {0xc1, 0x05, 0xf2, 0x00, 0x11, 0x00, 0x00};
  uint8_t buf[64];
  ws_conn_t c;
  rec_t r;
  size_t n = 0;
  memcpy(buf + n, f1, sizeof f1), n += sizeof f1;
  memcpy(buf + n, f2a, sizeof f2a), n += sizeof f2a;
  memcpy(buf + n, f2b, sizeof f2b), n += sizeof f2b;
  memcpy(buf + n, f3, sizeof f3), n += sizeof f3;
  CHECK_EQ_INT(n, rfc_stream(buf + 32, 0));
  CHECK_MEM(buf, buf + 32, n);
  conn_new(&c, &r, WS_ROLE_CLIENT, &P15, 0);
  CHECK_EQ_INT(feed(&c, buf, n, 0), n);
  CHECK_EQ_INT(r.n, 3);
  for (n = 0; n < 3 && n < r.n; n++) {
    CHECK_EQ_INT(r.type[n], WS_EV_MESSAGE);
    CHECK_EQ_INT(r.opcode[n], WS_OP_TEXT);
    CHECK_EQ_INT(r.len[n], 5);
    CHECK_MEM(r.data[n], "Hello", 5);
    CHECK_EQ_INT(r.rsv[n], WS_RSV1);
  }
  CHECK_EQ_INT(WS_BUF_SIZE(&c.out), 0);
  ws_conn_free(&c);
  rec_free(&r);
}

TEST(rfc_frames_every_split) {
  uint8_t buf[64];
  int masked;
  for (masked = 0; masked < 2; masked++) {
    size_t n = rfc_stream(buf, masked), cut, chunk;
    ws_role_t role = masked ? WS_ROLE_SERVER : WS_ROLE_CLIENT;
    for (cut = 0; cut <= n; cut++) {
      ws_conn_t c;
      rec_t r;
      size_t k;
      conn_new(&c, &r, role, &P15, 0);
      CHECK_EQ_INT(feed(&c, buf, cut, 0), cut);
      CHECK_EQ_INT(feed(&c, buf + cut, n - cut, 0), n - cut);
      CHECK_EQ_INT(r.n, 3);
      for (k = 0; k < r.n; k++)
        CHECK(r.type[k] == WS_EV_MESSAGE && r.len[k] == 5 &&
              memcmp(r.data[k], "Hello", 5) == 0);
      ws_conn_free(&c);
      rec_free(&r);
    }
    for (chunk = 1; chunk <= 4; chunk++) {
      ws_conn_t c;
      rec_t r;
      conn_new(&c, &r, role, &P15, 0);
      CHECK_EQ_INT(feed(&c, buf, n, chunk), n);
      CHECK_EQ_INT(r.n, 3);
      ws_conn_free(&c);
      rec_free(&r);
    }
  }
}

TEST(control_frames_between_compressed_fragments) {
  uint8_t buf[128];
  size_t n = 0;
  ws_conn_t c;
  rec_t r;
  n += frame(buf + n, 0, WS_RSV1, WS_OP_BINARY, 1, HELLO_1, 2);
  n += frame(buf + n, 1, 0, WS_OP_PING, 1, "p", 1);
  n += frame(buf + n, 0, 0, WS_OP_CONT, 1, HELLO_1 + 2, 3);
  n += frame(buf + n, 1, 0, WS_OP_PONG, 1, "q", 1);
  n += frame(buf + n, 1, 0, WS_OP_CONT, 1, HELLO_1 + 5, 2);
  conn_new(&c, &r, WS_ROLE_SERVER, &P15, 0);
  CHECK_EQ_INT(feed(&c, buf, n, 1), n);
  CHECK_EQ_INT(r.n, 3);
  CHECK_EQ_INT(r.type[0], WS_EV_PING);
  CHECK_EQ_INT(r.type[1], WS_EV_PONG);
  CHECK_EQ_INT(r.type[2], WS_EV_MESSAGE);
  CHECK_EQ_INT(r.opcode[2], WS_OP_BINARY);
  CHECK(r.len[2] == 5 && memcmp(r.data[2], "Hello", 5) == 0);
  ws_conn_free(&c);
  rec_free(&r);
}

TEST(uncompressed_and_empty_messages) {
  /* RSV1 clear: delivered as is, validated as text; RSV1 with "0x00" or
   * an empty payload: the empty message. */
  uint8_t buf[128];
  size_t n = 0;
  ws_conn_t c;
  rec_t r;
  n += frame(buf + n, 1, 0, WS_OP_TEXT, 0, "plain", 5);
  n += frame(buf + n, 1, WS_RSV1, WS_OP_TEXT, 0, "", 1);
  n += frame(buf + n, 1, WS_RSV1, WS_OP_BINARY, 0, NULL, 0);
  n += frame(buf + n, 0, WS_RSV1, WS_OP_TEXT, 0, NULL, 0);
  n += frame(buf + n, 1, 0, WS_OP_CONT, 0, NULL, 0);
  n += frame(buf + n, 1, WS_RSV1, WS_OP_TEXT, 0, HELLO_1, 7);
  conn_new(&c, &r, WS_ROLE_CLIENT, &P15, 0);
  CHECK_EQ_INT(feed(&c, buf, n, 0), n);
  CHECK_EQ_INT(r.n, 5);
  CHECK(r.len[0] == 5 && memcmp(r.data[0], "plain", 5) == 0);
  CHECK_EQ_INT(r.rsv[0], 0);
  CHECK_EQ_INT(r.len[1], 0);
  CHECK_EQ_INT(r.len[2], 0);
  CHECK_EQ_INT(r.opcode[2], WS_OP_BINARY);
  CHECK_EQ_INT(r.len[3], 0);
  CHECK(r.len[4] == 5 && memcmp(r.data[4], "Hello", 5) == 0);
  ws_conn_free(&c);
  rec_free(&r);
}

/* Feeds one frame to a fresh client connection and expects a failure. */
static void expect_fail(const uint8_t *buf, size_t n, int code,
                        const ws_deflate_params_t *p, int with_deflate) {
  ws_conn_t c;
  rec_t r;
  if (with_deflate) {
    conn_new(&c, &r, WS_ROLE_CLIENT, p, 0);
  } else {
    memset(&r, 0, sizeof r);
    ws_conn_init(&c, WS_ROLE_CLIENT, on_event, &r);
  }
  feed(&c, buf, n, 0);
  CHECK(r.n >= 1);
  if (r.n >= 1) {
    CHECK_EQ_INT(r.type[r.n - 1], WS_EV_FAIL);
    CHECK_EQ_INT(r.code[r.n - 1], code);
  }
  CHECK(c.failed);
  CHECK_EQ_INT(out_close_code(&c), code);
  ws_conn_free(&c);
  rec_free(&r);
}

TEST(rsv1_rules) {
  uint8_t buf[64];
  size_t n;
  /* RFC 7692 §6.1: RSV1 on a continuation frame ... */
  n = frame(buf, 0, WS_RSV1, WS_OP_TEXT, 0, HELLO_1, 3);
  n += frame(buf + n, 1, WS_RSV1, WS_OP_CONT, 0, HELLO_1 + 3, 4);
  expect_fail(buf, n, 1002, &P15, 1);
  /* ... and on control frames is an error. */
  n = frame(buf, 1, WS_RSV1, WS_OP_PING, 0, "", 0);
  expect_fail(buf, n, 1002, &P15, 1);
  n = frame(buf, 1, WS_RSV1, WS_OP_CLOSE, 0, "\x03\xe8", 2);
  expect_fail(buf, n, 1002, &P15, 1);
  n = frame(buf, 1, WS_RSV1, WS_OP_PONG, 0, "", 0);
  expect_fail(buf, n, 1002, &P15, 1);
  /* RSV2/RSV3 stay reserved. */
  n = frame(buf, 1, WS_RSV2, WS_OP_TEXT, 0, "a", 1);
  expect_fail(buf, n, 1002, &P15, 1);
  /* Without the extension RSV1 is an error. */
  n = frame(buf, 1, WS_RSV1, WS_OP_TEXT, 0, HELLO_1, 7);
  expect_fail(buf, n, 1002, &P15, 0);
}

TEST(corrupt_data_fails_1007) {
  static const uint8_t junk[] = {0x07, 0x00, 0x01};
  uint8_t buf[64];
  size_t n = frame(buf, 1, WS_RSV1, WS_OP_BINARY, 0, junk, sizeof junk);
  expect_fail(buf, n, 1007, &P15, 1);
  /* Stops inside a block. */
  n = frame(buf, 1, WS_RSV1, WS_OP_BINARY, 0, HELLO_1, 4);
  expect_fail(buf, n, 1007, &P15, 1);
  /* Refers back into an empty window (the §7.2.3.2 second message, on its
   * own). */
  n = frame(buf, 1, WS_RSV1, WS_OP_BINARY, 0, HELLO_2, 5);
  expect_fail(buf, n, 1007, &P15, 1);
  /* Without context takeover it has nothing to refer to either. */
  {
    ws_deflate_params_t p = {1, 0, 15, 15};
    n = frame(buf, 1, WS_RSV1, WS_OP_TEXT, 0, HELLO_1, 7);
    n += frame(buf + n, 1, WS_RSV1, WS_OP_TEXT, 0, HELLO_2, 5);
    expect_fail(buf, n, 1007, &p, 1);
  }
}

/* Compresses msg with a fresh peer compressor (window 15). */
static void compress_with(const ws_deflate_params_t *p, int is_server,
                          const void *msg, size_t n, ws_buf_t *z) {
  ws_deflate_config_t cfg;
  ws_deflate_t *d;
  ws_deflate_config_default(&cfg, is_server);
  d = ws_deflate_new(&cfg, p, is_server);
  CHECK(ws_deflate_compress(d, msg, n, z) == 0);
  ws_deflate_free(d);
}

TEST(invalid_inflated_utf8_fails_fast) {
  /* 60 KiB of text with a bad byte at 1000: the connection fails with 1007
   * long before the frame has all arrived. */
  size_t n = 60000, fn, used;
  uint8_t *msg = malloc(n), *buf = malloc(n + 64);
  ws_buf_t z = {0};
  ws_conn_t c;
  rec_t r;
  uint32_t s = 1;
  size_t i;
  for (i = 0; i < n; i++) {
    s = s * 1103515245u + 12345u;
    msg[i] = (uint8_t)('a' + (s >> 16) % 26);
  }
  msg[1000] = 0xff;
  compress_with(&P15, 1, msg, n, &z);
  fn = frame(buf, 1, WS_RSV1, WS_OP_TEXT, 0, WS_BUF_PTR(&z), WS_BUF_SIZE(&z));
  conn_new(&c, &r, WS_ROLE_CLIENT, &P15, 0);
  used = feed(&c, buf, fn, 256);
  CHECK(used < fn / 4);
  CHECK_EQ_INT(r.n, 1);
  CHECK_EQ_INT(r.type[0], WS_EV_FAIL);
  CHECK_EQ_INT(r.code[0], 1007);
  ws_conn_free(&c);
  rec_free(&r);
  ws_buf_free(&z);

  /* Valid text that ends inside a character: 1007 at the end. */
  compress_with(&P15, 1, "caf\xc3", 4, &z);
  fn = frame(buf, 1, WS_RSV1, WS_OP_TEXT, 0, WS_BUF_PTR(&z), WS_BUF_SIZE(&z));
  expect_fail(buf, fn, 1007, &P15, 1);
  /* The same bytes as binary are fine. */
  conn_new(&c, &r, WS_ROLE_CLIENT, &P15, 0);
  fn = frame(buf, 1, WS_RSV1, WS_OP_BINARY, 0, WS_BUF_PTR(&z),
             WS_BUF_SIZE(&z));
  CHECK_EQ_INT(feed(&c, buf, fn, 0), fn);
  CHECK(r.n == 1 && r.type[0] == WS_EV_MESSAGE && r.len[0] == 4);
  ws_conn_free(&c);
  rec_free(&r);
  /* Split UTF-8 across fragments of a compressed message is fine. */
  ws_buf_consume(&z, WS_BUF_SIZE(&z));
  compress_with(&P15, 1, "caf\xc3\xa9", 5, &z);
  conn_new(&c, &r, WS_ROLE_CLIENT, &P15, 0);
  fn = frame(buf, 0, WS_RSV1, WS_OP_TEXT, 0, WS_BUF_PTR(&z), 4);
  fn += frame(buf + fn, 1, 0, WS_OP_CONT, 0, WS_BUF_PTR(&z) + 4,
              WS_BUF_SIZE(&z) - 4);
  CHECK_EQ_INT(feed(&c, buf, fn, 1), fn);
  CHECK(r.n == 1 && r.type[0] == WS_EV_MESSAGE && r.len[0] == 5);
  ws_conn_free(&c);
  rec_free(&r);
  ws_buf_free(&z);
  free(msg);
  free(buf);
}

TEST(bomb_fails_1009_early) {
  /* 10 MiB of zeros is a 10 KB frame; the limit is 64 KiB.  Fed 1 KiB at a
   * time, the connection fails on the first KiB, and the reassembly buffer
   * never holds more than the limit + 1. */
  size_t big = 10u << 20, fn, used;
  uint8_t *zeros = calloc(1, big), *buf;
  ws_buf_t z = {0};
  ws_conn_t c;
  ws_limits_t lim;
  rec_t r;
  compress_with(&P15, 1, zeros, big, &z);
  free(zeros);
  buf = malloc(WS_BUF_SIZE(&z) + 16);
  fn = frame(buf, 1, WS_RSV1, WS_OP_BINARY, 0, WS_BUF_PTR(&z),
             WS_BUF_SIZE(&z));
  conn_new(&c, &r, WS_ROLE_CLIENT, &P15, 0);
  lim = (ws_limits_t){65536, 0, 0};
  c.lim = &lim;
  used = feed(&c, buf, fn, 1024);
  CHECK(used <= 1024);
  CHECK_EQ_INT(r.n, 1);
  CHECK_EQ_INT(r.type[0], WS_EV_FAIL);
  CHECK_EQ_INT(r.code[0], 1009);
  CHECK_EQ_INT(out_close_code(&c), 1009);
  CHECK(c.msg.cap <= 65537);
  ws_conn_free(&c);
  rec_free(&r);

  /* max_inflated_size alone bounds it too. */
  conn_new(&c, &r, WS_ROLE_CLIENT, &P15, 0);
  lim = (ws_limits_t){0, 0, 100000};
  c.lim = &lim;
  used = feed(&c, buf, fn, 0);
  CHECK(r.n == 1 && r.type[0] == WS_EV_FAIL && r.code[0] == 1009);
  ws_conn_free(&c);
  rec_free(&r);

  /* With a limit of 10 MiB it is delivered. */
  conn_new(&c, &r, WS_ROLE_CLIENT, &P15, 0);
  lim = (ws_limits_t){big, 0, 0};
  c.lim = &lim;
  CHECK_EQ_INT(feed(&c, buf, fn, 4096), fn);
  CHECK(r.n == 1 && r.type[0] == WS_EV_MESSAGE && r.len[0] == big);
  ws_conn_free(&c);
  rec_free(&r);
  ws_buf_free(&z);
  free(buf);
}

TEST(compressed_wire_bytes_limited) {
  /* max_message_size bounds the compressed bytes too (plus 1/32 + 1 KiB):
   * a frame header announcing more fails at once. */
  uint8_t hdr[WS_MAX_HEADER];
  size_t hl = ws_frame_write_header(hdr, 1, WS_RSV1, WS_OP_BINARY, NULL,
                                    1000 + 31 + 1024 + 1);
  ws_conn_t c;
  ws_limits_t lim;
  rec_t r;
  conn_new(&c, &r, WS_ROLE_CLIENT, &P15, 0);
  lim = (ws_limits_t){1000, 0, 0};
  c.lim = &lim;
  CHECK_EQ_INT(feed(&c, hdr, hl, 0), hl);
  CHECK(r.n == 1 && r.type[0] == WS_EV_FAIL && r.code[0] == 1009);
  ws_conn_free(&c);
  rec_free(&r);
  /* Exactly at the bound the header passes. */
  hl = ws_frame_write_header(hdr, 1, WS_RSV1, WS_OP_BINARY, NULL,
                             1000 + 31 + 1024);
  conn_new(&c, &r, WS_ROLE_CLIENT, &P15, 0);
  lim = (ws_limits_t){1000, 0, 0};
  c.lim = &lim;
  CHECK_EQ_INT(feed(&c, hdr, hl, 0), hl);
  CHECK_EQ_INT(r.n, 0);
  ws_conn_free(&c);
  rec_free(&r);
}

TEST(incompressible_message_at_the_limit) {
  /* Random data at exactly max_message_size compresses to a little more;
   * it is accepted, and one byte more is not. */
  size_t n = 200000, fn;
  uint8_t *msg = malloc(n + 1), *buf = malloc(n + 4096);
  ws_buf_t z = {0};
  ws_conn_t c;
  ws_limits_t lim;
  rec_t r;
  uint32_t s = 9;
  size_t i;
  for (i = 0; i <= n; i++) {
    s ^= s << 13, s ^= s >> 17, s ^= s << 5;
    msg[i] = (uint8_t)s;
  }
  compress_with(&P15, 0, msg, n, &z);
  CHECK(WS_BUF_SIZE(&z) > n);
  fn = frame(buf, 1, WS_RSV1, WS_OP_BINARY, 1, WS_BUF_PTR(&z),
             WS_BUF_SIZE(&z));
  conn_new(&c, &r, WS_ROLE_SERVER, &P15, 0);
  lim = (ws_limits_t){n, 0, 0};
  c.lim = &lim;
  CHECK_EQ_INT(feed(&c, buf, fn, 7000), fn);
  CHECK(r.n == 1 && r.type[0] == WS_EV_MESSAGE && r.len[0] == n);
  CHECK(r.n == 1 && memcmp(r.data[0], msg, n) == 0);
  ws_conn_free(&c);
  rec_free(&r);
  ws_buf_free(&z);
  compress_with(&P15, 0, msg, n + 1, &z);
  fn = frame(buf, 1, WS_RSV1, WS_OP_BINARY, 1, WS_BUF_PTR(&z),
             WS_BUF_SIZE(&z));
  conn_new(&c, &r, WS_ROLE_SERVER, &P15, 0);
  lim = (ws_limits_t){n, 0, 0};
  c.lim = &lim;
  feed(&c, buf, fn, 7000);
  CHECK(r.n == 1 && r.type[0] == WS_EV_FAIL && r.code[0] == 1009);
  ws_conn_free(&c);
  rec_free(&r);
  ws_buf_free(&z);
  free(msg);
  free(buf);
}

/* ---- Sending ------------------------------------------------------------------ */

/* Parses the single frame in c->out: header into *h, unmasked payload
 * into *payload (malloc'd). */
static int take_frame(ws_conn_t *c, ws_frame_header_t *h, uint8_t **payload) {
  const uint8_t *p = WS_BUF_PTR(&c->out);
  size_t n = WS_BUF_SIZE(&c->out);
  int hl = ws_frame_parse_header(p, n, h);
  if (hl <= 0 || (size_t)hl + h->len != n) return -1;
  *payload = malloc((size_t)h->len + 1);
  memcpy(*payload, p + hl, (size_t)h->len);
  if (h->masked) ws_mask(*payload, (size_t)h->len, h->mask, 0);
  ws_buf_consume(&c->out, n);
  return 0;
}

TEST(send_threshold_and_flags) {
  ws_conn_t c;
  rec_t r;
  ws_frame_header_t h;
  uint8_t *pl = NULL;
  ws_deflate_config_t cfg;
  ws_deflate_t *peer;
  ws_buf_t out = {0};
  char text[300];
  memset(text, 'x', sizeof text);
  ws_deflate_config_default(&cfg, 0);
  peer = ws_deflate_new(&cfg, &P15, 0);
  conn_new(&c, &r, WS_ROLE_SERVER, &P15, 100);

  /* Below the threshold: as is. */
  CHECK_EQ_INT(ws_conn_send(&c, WS_OP_TEXT, text, 99), WS_CONN_OK);
  CHECK_EQ_INT(take_frame(&c, &h, &pl), 0);
  CHECK(h.rsv == 0 && h.len == 99 && h.opcode == WS_OP_TEXT && !h.masked);
  free(pl);
  /* At the threshold: compressed. */
  CHECK_EQ_INT(ws_conn_send(&c, WS_OP_TEXT, text, 100), WS_CONN_OK);
  CHECK_EQ_INT(take_frame(&c, &h, &pl), 0);
  CHECK(h.rsv == WS_RSV1 && h.len < 20 && h.opcode == WS_OP_TEXT && h.fin);
  CHECK_EQ_INT(ws_deflate_inflate(peer, pl, (size_t)h.len, 1, &out, 0), 0);
  CHECK(WS_BUF_SIZE(&out) == 100 && memcmp(WS_BUF_PTR(&out), text, 100) == 0);
  ws_buf_consume(&out, WS_BUF_SIZE(&out));
  free(pl);
  /* The opt-out. */
  CHECK_EQ_INT(ws_conn_send_ex(&c, WS_OP_BINARY, text, 300,
                               WS_SEND_NO_COMPRESS),
               WS_CONN_OK);
  CHECK_EQ_INT(take_frame(&c, &h, &pl), 0);
  CHECK(h.rsv == 0 && h.len == 300 && h.opcode == WS_OP_BINARY);
  free(pl);
  /* The opt-in below the threshold, and an empty message. */
  CHECK_EQ_INT(ws_conn_send_ex(&c, WS_OP_BINARY, "", 0, WS_SEND_COMPRESS),
               WS_CONN_OK);
  CHECK_EQ_INT(take_frame(&c, &h, &pl), 0);
  CHECK(h.rsv == WS_RSV1 && h.len == 1 && pl[0] == 0x00);
  CHECK_EQ_INT(ws_deflate_inflate(peer, pl, 1, 1, &out, 0), 0);
  CHECK_EQ_INT(WS_BUF_SIZE(&out), 0);
  free(pl);
  /* Control frames are never compressed (§6.1). */
  CHECK_EQ_INT(ws_conn_send_ex(&c, WS_OP_PING, text, 100, WS_SEND_COMPRESS),
               WS_CONN_OK);
  CHECK_EQ_INT(take_frame(&c, &h, &pl), 0);
  CHECK(h.rsv == 0 && h.len == 100 && h.opcode == WS_OP_PING);
  free(pl);
  /* Bad flags and opcodes. */
  CHECK_EQ_INT(ws_conn_send_ex(&c, WS_OP_TEXT, "a", 1, 4), WS_CONN_EINVAL);
  CHECK_EQ_INT(ws_conn_send_ex(&c, WS_OP_CONT, "a", 1, 0), WS_CONN_EINVAL);
  CHECK_EQ_INT(ws_conn_send_ex(&c, WS_OP_TEXT, NULL, 200, 0), WS_CONN_EINVAL);
  CHECK_EQ_INT(WS_BUF_SIZE(&c.out), 0);
  /* After Close. */
  CHECK_EQ_INT(ws_conn_close(&c, 1000, NULL, 0), WS_CONN_OK);
  CHECK_EQ_INT(ws_conn_send(&c, WS_OP_TEXT, text, 200), WS_CONN_ECLOSED);
  CHECK_EQ_INT(ws_conn_send_ex(&c, WS_OP_TEXT, text, 200, WS_SEND_COMPRESS),
               WS_CONN_ECLOSED);
  ws_conn_free(&c);
  rec_free(&r);
  ws_deflate_free(peer);
  ws_buf_free(&out);
}

TEST(send_header_sizes_and_masking) {
  /* Compressed lengths below 126, up to 65535 and above, client (masked)
   * and server; the frame follows what was already queued. */
  static const size_t sizes[] = {10, 1000, 60000, 300000};
  int role;
  for (role = 0; role < 2; role++) {
    size_t si;
    for (si = 0; si < 4; si++) {
      size_t n = sizes[si], i;
      uint8_t *msg = malloc(n), *pl = NULL;
      uint32_t s = 4242;
      ws_conn_t c;
      rec_t r;
      ws_frame_header_t h;
      ws_deflate_config_t cfg;
      ws_deflate_t *peer;
      ws_buf_t out = {0};
      for (i = 0; i < n; i++) {
        s ^= s << 13, s ^= s >> 17, s ^= s << 5;
        msg[i] = (uint8_t)(s % 4 ? s : 'a');
      }
      conn_new(&c, &r, (ws_role_t)role, &P15, 0);
      CHECK_EQ_INT(ws_conn_send(&c, WS_OP_PONG, "x", 1), WS_CONN_OK);
      ws_buf_consume(&c.out, 3 + (role ? 4 : 0));
      CHECK_EQ_INT(ws_conn_send(&c, WS_OP_BINARY, msg, n), WS_CONN_OK);
      CHECK_EQ_INT(take_frame(&c, &h, &pl), 0);
      CHECK(h.rsv == WS_RSV1 && h.masked == (role == WS_ROLE_CLIENT));
      ws_deflate_config_default(&cfg, role != WS_ROLE_CLIENT);
      peer = ws_deflate_new(&cfg, &P15, role == WS_ROLE_CLIENT);
      CHECK_EQ_INT(ws_deflate_inflate(peer, pl, (size_t)h.len, 1, &out, n),
                   0);
      CHECK(WS_BUF_SIZE(&out) == n && memcmp(WS_BUF_PTR(&out), msg, n) == 0);
      free(pl);
      free(msg);
      ws_buf_free(&out);
      ws_deflate_free(peer);
      ws_conn_free(&c);
      rec_free(&r);
    }
  }
}

/* ---- Two connections ------------------------------------------------------- */

/* Moves everything queued by `from` into `to`, in chunks from the PRNG. */
static void pump(ws_conn_t *from, ws_conn_t *to, uint32_t *seed) {
  size_t n = WS_BUF_SIZE(&from->out), off = 0;
  uint8_t *copy = malloc(n ? n : 1);
  memcpy(copy, WS_BUF_PTR(&from->out), n);
  ws_buf_consume(&from->out, n);
  while (off < n) {
    size_t k;
    *seed ^= *seed << 13, *seed ^= *seed >> 17, *seed ^= *seed << 5;
    k = 1 + *seed % 5000;
    if (k > n - off) k = n - off;
    CHECK_EQ_INT(ws_conn_feed(to, copy + off, k), k);
    off += k;
  }
  free(copy);
}

TEST(two_connections_every_mode) {
  static const size_t sizes[] = {0, 1, 16, 100, 1000, 16384, 65536, 131072};
  uint8_t *msg = malloc(131072);
  const ws_limits_t lim = {131072, 0, 0};
  uint32_t seed = 2024;
  int w, mode;
  for (w = 8; w <= 15; w++)
    for (mode = 0; mode < 4; mode++) {
      ws_deflate_params_t p;
      ws_conn_t s, c;
      rec_t rs, rc;
      size_t si;
      p.server_no_context_takeover = (uint8_t)(mode & 1);
      p.client_no_context_takeover = (uint8_t)(mode >> 1);
      p.server_max_window_bits = (uint8_t)w;
      p.client_max_window_bits = (uint8_t)(23 - w);
      conn_new(&s, &rs, WS_ROLE_SERVER, &p, 16);
      conn_new(&c, &rc, WS_ROLE_CLIENT, &p, 16);
      s.lim = c.lim = &lim;
      for (si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        size_t n = sizes[si], i;
        int op = si % 2 ? WS_OP_BINARY : WS_OP_TEXT;
        for (i = 0; i < n; i++) {
          seed ^= seed << 13, seed ^= seed >> 17, seed ^= seed << 5;
          msg[i] = (uint8_t)(op == WS_OP_TEXT ? 'a' + seed % 4 : seed % 7);
        }
        CHECK_EQ_INT(ws_conn_send(&s, op, msg, n), WS_CONN_OK);
        CHECK_EQ_INT(ws_conn_send(&c, op, msg, n), WS_CONN_OK);
        pump(&s, &c, &seed);
        pump(&c, &s, &seed);
        CHECK(rc.n == si + 1 && rs.n == si + 1);
        if (rc.n != si + 1 || rs.n != si + 1) break;
        CHECK(rc.type[si] == WS_EV_MESSAGE && rc.len[si] == n &&
              rc.opcode[si] == op);
        CHECK(rs.type[si] == WS_EV_MESSAGE && rs.len[si] == n &&
              rs.opcode[si] == op);
        CHECK(n == 0 || (memcmp(rc.data[si], msg, n) == 0 &&
                         memcmp(rs.data[si], msg, n) == 0));
        CHECK_EQ_INT(rc.rsv[si], n >= 16 ? WS_RSV1 : 0);
      }
      /* With no context takeover both ways, idle connections hold no zlib
       * memory. */
      if (mode == 3) {
        CHECK(ws_deflate_memory(s.deflate) < 100);
        CHECK(ws_deflate_memory(c.deflate) < 100);
      }
      ws_conn_free(&s);
      ws_conn_free(&c);
      rec_free(&rs);
      rec_free(&rc);
    }
  free(msg);
}

int main(void) {
  RUN(set_deflate);
  RUN(rfc_frames_exact_bytes);
  RUN(rfc_frames_every_split);
  RUN(control_frames_between_compressed_fragments);
  RUN(uncompressed_and_empty_messages);
  RUN(rsv1_rules);
  RUN(corrupt_data_fails_1007);
  RUN(invalid_inflated_utf8_fails_fast);
  RUN(bomb_fails_1009_early);
  RUN(compressed_wire_bytes_limited);
  RUN(incompressible_message_at_the_limit);
  RUN(send_threshold_and_flags);
  RUN(send_header_sizes_and_masking);
  RUN(two_connections_every_mode);
  return TEST_REPORT();
}
