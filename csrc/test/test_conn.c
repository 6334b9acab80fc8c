/*
 * Tests of the message layer.  Every input is fed once whole and then in
 * every two-way split, in one-byte chunks, in scripted chunk patterns and,
 * for short inputs, in every three-way split; each chunk is a heap copy of
 * exactly its size, so reading past it is caught under ASan or valgrind.
 * The events, the bytes queued in `out` (unmasked for comparison) and the
 * final flags must be the same for every split.
 */
#include <stdint.h>
#include <stdlib.h>

#include "test.h"
#include "ws_conn.h"
#include "ws_utf8.h"

/* ---- Recording a run ---------------------------------------------------- */

typedef struct ev {
  int type, opcode, code;
  size_t len;
  uint8_t *data;      /* a copy */
  const char *reason; /* FAIL */
  int inplace;        /* data pointed into the chunk being fed */
  uint8_t msg_rsv;    /* c->msg_rsv during the callback */
} ev_t;

typedef struct cfg {
  ws_role_t role;
  uint8_t rsv_allowed;
  size_t max_msg, max_frame;
  int close_first; /* this side sends Close(1000, "bye") before feeding */
} cfg_t;

typedef struct run {
  ev_t *ev;
  size_t nev, cap;
  ws_conn_t *c;
  uintptr_t lo, hi; /* the chunk being fed */
  int ended;        /* a CLOSE or FAIL was delivered */
  int late;         /* events after that */
  int errors;       /* broken invariants */
  size_t consumed;
  int failed, close_sent, close_received;
  /* The frames queued in `out`, unmasked and with the mask bit cleared. */
  uint8_t *out;
  size_t out_len;
  size_t nframes, nclose;
  int close_code; /* of the last Close in out: 0 if empty, -1 if none */
  uint8_t close_reason[125];
  size_t close_reason_len;
} run_t;

static void on_event(void *ud, const ws_event_t *e) {
  run_t *r = ud;
  ev_t *v;
  uintptr_t d = (uintptr_t)e->data;

  if (r->ended) r->late++;
  if (e->type == WS_EV_CLOSE || e->type == WS_EV_FAIL) r->ended = 1;
  if (e->len && !e->data) r->errors++;
  if (e->type == WS_EV_FAIL && (!e->reason || !*e->reason)) r->errors++;
  if (r->nev == r->cap) {
    r->cap = r->cap ? 2 * r->cap : 8;
    r->ev = realloc(r->ev, r->cap * sizeof *r->ev);
  }
  v = &r->ev[r->nev++];
  memset(v, 0, sizeof *v);
  v->type = e->type;
  v->opcode = e->opcode;
  v->code = e->code;
  v->len = e->len;
  v->reason = e->reason;
  v->data = malloc(e->len + 1);
  if (e->len) memcpy(v->data, e->data, e->len);
  v->inplace = e->len && d >= r->lo && d + e->len <= r->hi;
  v->msg_rsv = r->c->msg_rsv;
}

static void run_free(run_t *r) {
  size_t i;
  for (i = 0; i < r->nev; i++) free(r->ev[i].data);
  free(r->ev);
  free(r->out);
  memset(r, 0, sizeof *r);
}

/* Parses the frames in c->out, checks the masking suits the role, and keeps
 * an unmasked copy for comparisons. */
static void take_out(run_t *r, ws_conn_t *c) {
  /* WS_BUF_PTR of an empty buffer may be NULL + 0. */
  const uint8_t *p = c->out.data ? WS_BUF_PTR(&c->out) : NULL;
  size_t n = WS_BUF_SIZE(&c->out), i = 0;

  r->out = malloc(n + 1);
  r->out_len = 0;
  r->close_code = -1;
  while (i < n) {
    ws_frame_header_t h;
    uint8_t hdr[WS_MAX_HEADER];
    int hl = ws_frame_parse_header(p + i, n - i, &h);
    size_t nh;
    if (hl <= 0 || h.len > n - i - (size_t)hl) {
      r->errors++;
      break;
    }
    if (h.masked != (c->role == WS_ROLE_CLIENT)) r->errors++;
    nh = ws_frame_write_header(hdr, h.fin, h.rsv, h.opcode, NULL, h.len);
    memcpy(r->out + r->out_len, hdr, nh);
    r->out_len += nh;
    memcpy(r->out + r->out_len, p + i + hl, (size_t)h.len);
    if (h.masked) ws_mask(r->out + r->out_len, (size_t)h.len, h.mask, 0);
    if (h.opcode == WS_OP_CLOSE) {
      const uint8_t *q = r->out + r->out_len;
      r->nclose++;
      r->close_code = h.len >= 2 ? (q[0] << 8) | q[1] : 0;
      r->close_reason_len = h.len >= 2 ? (size_t)h.len - 2 : 0;
      memcpy(r->close_reason, q + 2, r->close_reason_len);
    }
    r->out_len += (size_t)h.len;
    r->nframes++;
    i += (size_t)hl + (size_t)h.len;
  }
}

/* Feeds one piece from a heap copy of exactly its size and checks what
 * ws_conn_feed consumed. */
static void feed_piece(ws_conn_t *c, const uint8_t *p, size_t len,
                       run_t *r) {
  uint8_t *chunk = malloc(len ? len : 1);
  int was_ended = r->ended;
  size_t got;
  memcpy(chunk, p, len);
  r->lo = (uintptr_t)chunk;
  r->hi = (uintptr_t)chunk + len;
  got = ws_conn_feed(c, chunk, len);
  if (got > len) r->errors++;
  if (got < len && !(c->failed || c->close_received)) r->errors++;
  if (was_ended && got != 0) r->errors++;
  r->consumed += got;
  free(chunk);
}

/* Feeds a chunk as the transport does when it receives straight into the
 * message buffer (ws_conn_recv_buf): as much as the buffer takes lands
 * there; the payload part is fed in place and what lies beyond it is moved
 * out first and fed after.  A small slack makes that overflow common. */
static void feed_direct(ws_conn_t *c, const uint8_t *p, size_t len,
                        run_t *r) {
  do {
    size_t room = 0, k, pay, got;
    int was_ended = r->ended;
    uint8_t *dst = ws_conn_recv_buf(c, 1, 3, &room), *extra;
    if (!dst) {
      feed_piece(c, p, len, r);
      return;
    }
    if (room == 0 || room > c->remaining + 3) r->errors++;
    k = len < room ? len : room;
    memcpy(dst, p, k);
    pay = k < c->remaining ? k : (size_t)c->remaining;
    extra = malloc(k - pay + 1);
    memcpy(extra, dst + pay, k - pay);
    r->lo = (uintptr_t)dst;
    r->hi = (uintptr_t)dst + pay;
    got = ws_conn_feed(c, dst, pay);
    if (got > pay) r->errors++;
    if (got < pay && !(c->failed || c->close_received)) r->errors++;
    if (was_ended && got != 0) r->errors++;
    r->consumed += got;
    if (k > pay) feed_piece(c, extra, k - pay, r);
    free(extra);
    p += k;
    len -= k;
  } while (len > 0);
}

/* Feeds in[0..n) in chunks of the given lengths (one chunk if nl is 0),
 * each as feed_direct does when `direct` is set. */
static void run_feed_mode(const cfg_t *cfg, const uint8_t *in, size_t n,
                          const size_t *lens, size_t nl, run_t *r,
                          int direct) {
  ws_conn_t c;
  size_t off = 0, k = 0;

  memset(r, 0, sizeof *r);
  ws_conn_init(&c, cfg->role, on_event, r);
  c.rsv_allowed = cfg->rsv_allowed;
  ws_limits_t lim = {cfg->max_msg, cfg->max_frame, 0};
  c.lim = &lim;
  r->c = &c;
  if (cfg->close_first && ws_conn_close(&c, 1000, "bye", 3) != WS_CONN_OK)
    r->errors++;
  while (off < n || (nl && k < nl)) {
    size_t len = nl ? (k < nl ? lens[k] : n - off) : n - off;
    k++;
    if (len > n - off) len = n - off;
    if (direct) feed_direct(&c, in + off, len, r);
    else feed_piece(&c, in + off, len, r);
    off += len;
  }
  /* One more empty feed changes nothing. */
  if (ws_conn_feed(&c, (uint8_t *)"", 0) != 0) r->errors++;
  r->failed = c.failed;
  r->close_sent = c.close_sent;
  r->close_received = c.close_received;
  take_out(r, &c);
  if (r->failed != (r->nev && r->ev[r->nev - 1].type == WS_EV_FAIL))
    r->errors++;
  ws_conn_free(&c);
}

static void run_feed(const cfg_t *cfg, const uint8_t *in, size_t n,
                     const size_t *lens, size_t nl, run_t *r) {
  run_feed_mode(cfg, in, n, lens, nl, r, 0);
}

static int fail_seen(const run_t *r) {
  size_t i;
  for (i = 0; i < r->nev; i++)
    if (r->ev[i].type == WS_EV_FAIL) return 1;
  return 0;
}

/* Are two runs of the same input the same?  The consumed count after a
 * failure depends on the split (a payload failure consumes the chunk that
 * held the bad byte), so it is compared only for runs that did not fail. */
static int same_run(const run_t *a, const run_t *b) {
  size_t i;
  if (a->nev != b->nev || a->out_len != b->out_len ||
      a->failed != b->failed || a->close_sent != b->close_sent ||
      a->close_received != b->close_received || b->errors || b->late)
    return 0;
  if (!fail_seen(a) && a->consumed != b->consumed) return 0;
  if (a->out_len && memcmp(a->out, b->out, a->out_len) != 0) return 0;
  for (i = 0; i < a->nev; i++) {
    const ev_t *x = &a->ev[i], *y = &b->ev[i];
    if (x->type != y->type || x->opcode != y->opcode || x->code != y->code ||
        x->len != y->len || x->msg_rsv != y->msg_rsv ||
        (x->len && memcmp(x->data, y->data, x->len) != 0) ||
        (x->reason != y->reason &&
         (!x->reason || !y->reason || strcmp(x->reason, y->reason) != 0)))
      return 0;
  }
  return 1;
}

static int compare_split(const cfg_t *cfg, const uint8_t *in, size_t n,
                         const run_t *base, const size_t *lens, size_t nl,
                         const char *what) {
  run_t r;
  int bad = 0, direct;
  /* Each split is fed twice: from the chunks, and received into the
   * message buffer where the parser offers it. */
  for (direct = 0; direct < 2; direct++) {
    run_feed_mode(cfg, in, n, lens, nl, &r, direct);
    if (!same_run(base, &r)) {
      size_t i;
      fprintf(stderr, "    split mismatch (%s%s):", what,
              direct ? ", direct" : "");
      for (i = 0; i < nl && i < 12; i++) fprintf(stderr, " %zu", lens[i]);
      fprintf(stderr, "%s\n", nl > 12 ? " ..." : "");
      bad = 1;
    }
    run_free(&r);
  }
  return bad;
}

/* Feeds `in` whole into *base, then in every other split; returns the
 * number of splits whose result differs from the whole. */
static int split_all(const cfg_t *cfg, const uint8_t *in, size_t n,
                     run_t *base) {
  /* Chunk length patterns, repeated to the end of the input.  Zero-length
   * feeds are part of some. */
  static const struct {
    size_t n, v[11];
  } patterns[] = {
    {3, {1, 2, 3}}, {1, {2}}, {1, {3}}, {1, {5}}, {1, {7}}, {1, {13}},
    {1, {14}}, {1, {15}}, {1, {64}}, {1, {125}},
    {11, {3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5}}, {2, {13, 1}}, {2, {1, 13}},
    {2, {0, 1}}, {3, {6, 0, 9}},
  };
  size_t *lens = malloc((2 * n + 2) * sizeof *lens);
  size_t i, j, a, b;
  int bad = 0;

  run_feed(cfg, in, n, NULL, 0, base);
  if (base->errors || base->late) bad++;

  /* One byte at a time. */
  for (i = 0; i < n; i++) lens[i] = 1;
  bad += compare_split(cfg, in, n, base, lens, n, "bytes");

  /* Scripted patterns, repeated to the end. */
  for (j = 0; j < sizeof patterns / sizeof patterns[0]; j++) {
    size_t pos = 0, k = 0;
    while (pos < n) {
      size_t l = patterns[j].v[k % patterns[j].n];
      lens[k++] = l;
      pos += l;
    }
    bad += compare_split(cfg, in, n, base, lens, k, "pattern");
  }

  /* Every two-way split; for long inputs, the cuts near either end and a
   * sample in between. */
  for (a = 0; a <= n; a++) {
    if (n > 2048 && a > 300 && a + 300 < n && a % 997 != 0) continue;
    lens[0] = a;
    lens[1] = n - a;
    bad += compare_split(cfg, in, n, base, lens, 2, "two-way");
  }

  /* Every three-way split of short inputs. */
  if (n <= 96) {
    for (a = 0; a <= n; a++) {
      for (b = a; b <= n; b++) {
        lens[0] = a;
        lens[1] = b - a;
        lens[2] = n - b;
        bad += compare_split(cfg, in, n, base, lens, 3, "three-way");
      }
    }
  }
  free(lens);
  return bad;
}

/* ---- Building input ----------------------------------------------------- */

/* Appends a frame whose first byte is b0 (FIN, RSV and opcode as on the
 * wire), masked if `masked`.  The key varies with the stream's length so
 * that frames use different keys. */
static void put_frame(ws_buf_t *s, int b0, const void *payload, size_t len,
                      int masked) {
  uint8_t hdr[WS_MAX_HEADER], key[4];
  size_t hl, k;
  for (k = 0; k < 4; k++) key[k] = (uint8_t)(0x5a + 37 * (s->len + k));
  hl = ws_frame_write_header(hdr, (b0 >> 7) & 1, b0 & 0x70, b0 & 0x0f,
                             masked ? key : NULL, len);
  ws_buf_append(s, hdr, hl, 0);
  if (len) {
    ws_buf_reserve(s, len, 0);
    if (masked)
      ws_mask_copy(s->data + s->len, payload, len, key, 0);
    else
      memcpy(s->data + s->len, payload, len);
    s->len += len;
  }
}

static void put(ws_buf_t *s, const void *p, size_t n) {
  ws_buf_append(s, p, n, 0);
}

/* A Close frame payload: code and reason. */
static void put_close(ws_buf_t *s, int code, const char *reason, size_t n,
                      int masked) {
  uint8_t p[200];
  p[0] = (uint8_t)(code >> 8);
  p[1] = (uint8_t)code;
  memcpy(p + 2, reason, n);
  put_frame(s, 0x88, p, n + 2, masked);
}

/* ---- Checking results --------------------------------------------------- */

static int is_msg(const run_t *r, size_t i, int opcode, const void *data,
                  size_t len) {
  return i < r->nev && r->ev[i].type == WS_EV_MESSAGE &&
         r->ev[i].opcode == opcode && r->ev[i].len == len &&
         (len == 0 || memcmp(r->ev[i].data, data, len) == 0);
}

static int is_ev(const run_t *r, size_t i, int type, const void *data,
                 size_t len) {
  return i < r->nev && r->ev[i].type == type && r->ev[i].len == len &&
         (len == 0 || memcmp(r->ev[i].data, data, len) == 0);
}

static int is_close(const run_t *r, size_t i, int code, const char *reason,
                    size_t len) {
  return is_ev(r, i, WS_EV_CLOSE, reason, len) && r->ev[i].code == code;
}

/* Runs a failing input through every split and checks the failure: the
 * last event is FAIL with `code`, nothing follows it, and exactly one Close
 * frame with that code and the event's reason was queued. */
static int fail_case(const char *label, const cfg_t *cfg, const uint8_t *in,
                     size_t n, int code) {
  run_t r;
  int bad = split_all(cfg, in, n, &r);
  const ev_t *last = r.nev ? &r.ev[r.nev - 1] : NULL;

  if (!last || last->type != WS_EV_FAIL || last->code != code) bad++;
  if (!r.failed || !r.close_sent || r.close_received || r.late) bad++;
  if (r.nclose != 1) bad++;
  if (!cfg->close_first) {
    if (r.close_code != code) bad++;
    if (last && last->reason &&
        (r.close_reason_len != strlen(last->reason) ||
         memcmp(r.close_reason, last->reason, r.close_reason_len) != 0))
      bad++;
  }
  if (bad)
    fprintf(stderr, "    fail case \"%s\": %d problems (last event %d code %d,"
            " out close code %d)\n", label, bad, last ? last->type : 0,
            last ? last->code : 0, r.close_code);
  run_free(&r);
  return bad == 0;
}

static const cfg_t SERVER = {WS_ROLE_SERVER, 0, 0, 0, 0};
static const cfg_t CLIENT = {WS_ROLE_CLIENT, 0, 0, 0, 0};

#define BYTES(lit) (const uint8_t *)(lit), sizeof(lit) - 1

/* ---- RFC 6455 §5.7 examples --------------------------------------------- */

TEST(rfc_unmasked_hello) {
  run_t r;
  CHECK_EQ_INT(split_all(&CLIENT, BYTES("\x81\x05\x48\x65\x6c\x6c\x6f"), &r),
               0);
  CHECK_EQ_INT(r.nev, 1);
  CHECK(is_msg(&r, 0, WS_OP_TEXT, "Hello", 5));
  CHECK(r.ev[0].inplace);
  CHECK_EQ_INT(r.consumed, 7);
  CHECK_EQ_INT(r.out_len, 0);
  run_free(&r);
  /* A server refuses the same bytes: they are not masked. */
  CHECK(fail_case("unmasked hello to server", &SERVER,
                  BYTES("\x81\x05\x48\x65\x6c\x6c\x6f"), 1002));
}

TEST(rfc_masked_hello) {
  run_t r;
  static const uint8_t in[] = "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58";
  CHECK_EQ_INT(split_all(&SERVER, in, 11, &r), 0);
  CHECK_EQ_INT(r.nev, 1);
  CHECK(is_msg(&r, 0, WS_OP_TEXT, "Hello", 5));
  CHECK(r.ev[0].inplace);
  CHECK_EQ_INT(r.consumed, 11);
  run_free(&r);
  CHECK(fail_case("masked hello to client", &CLIENT, in, 11, 1002));
}

TEST(rfc_fragmented) {
  run_t r;
  CHECK_EQ_INT(split_all(&CLIENT,
                         BYTES("\x01\x03\x48\x65\x6c\x80\x02\x6c\x6f"), &r),
               0);
  CHECK_EQ_INT(r.nev, 1);
  CHECK(is_msg(&r, 0, WS_OP_TEXT, "Hello", 5));
  CHECK(!r.ev[0].inplace);
  run_free(&r);
}

TEST(rfc_ping_pong) {
  run_t r;
  ws_conn_t c;
  uint8_t in[] = "\x89\x05Hello";

  /* A client answers an unmasked ping with a masked pong. */
  CHECK_EQ_INT(split_all(&CLIENT, BYTES("\x89\x05Hello"), &r), 0);
  CHECK_EQ_INT(r.nev, 1);
  CHECK(is_ev(&r, 0, WS_EV_PING, "Hello", 5));
  CHECK_EQ_INT(r.out_len, 7);
  CHECK_MEM(r.out, "\x8a\x05Hello", 7);
  run_free(&r);

  /* The raw bytes: "\x8a\x85", a key, and the masked payload. */
  ws_conn_init(&c, WS_ROLE_CLIENT, NULL, NULL);
  CHECK_EQ_INT(ws_conn_feed(&c, in, 7), 7);
  CHECK_EQ_INT(WS_BUF_SIZE(&c.out), 11);
  if (WS_BUF_SIZE(&c.out) == 11) {
    uint8_t *o = WS_BUF_PTR(&c.out);
    CHECK_MEM(o, "\x8a\x85", 2);
    ws_mask(o + 6, 5, o + 2, 0);
    CHECK_MEM(o + 6, "Hello", 5);
  }
  ws_conn_free(&c);

  /* A server answers the masked ping with an unmasked pong. */
  CHECK_EQ_INT(split_all(&SERVER,
                         BYTES("\x89\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"),
                         &r), 0);
  CHECK(is_ev(&r, 0, WS_EV_PING, "Hello", 5));
  CHECK_EQ_INT(r.out_len, 7);
  CHECK_MEM(r.out, "\x8a\x05Hello", 7);
  run_free(&r);

  /* The RFC's masked pong, received by a server. */
  CHECK_EQ_INT(split_all(&SERVER,
                         BYTES("\x8a\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"),
                         &r), 0);
  CHECK_EQ_INT(r.nev, 1);
  CHECK(is_ev(&r, 0, WS_EV_PONG, "Hello", 5));
  CHECK_EQ_INT(r.out_len, 0);
  run_free(&r);
}

static void big_binary(size_t len, int masked) {
  ws_buf_t s = {0};
  uint8_t *payload = malloc(len);
  run_t r;
  size_t i;
  for (i = 0; i < len; i++) payload[i] = (uint8_t)(i * 31 + 7);
  put_frame(&s, 0x82, payload, len, masked);
  CHECK_EQ_INT(split_all(masked ? &SERVER : &CLIENT, WS_BUF_PTR(&s),
                         WS_BUF_SIZE(&s), &r), 0);
  CHECK_EQ_INT(r.nev, 1);
  CHECK(is_msg(&r, 0, WS_OP_BINARY, payload, len));
  CHECK(r.ev[0].inplace);
  CHECK_EQ_INT(r.consumed, WS_BUF_SIZE(&s));
  run_free(&r);
  free(payload);
  ws_buf_free(&s);
}

TEST(rfc_256_binary) {
  ws_buf_t s = {0};
  uint8_t payload[256];
  memset(payload, 0xab, sizeof payload);
  put_frame(&s, 0x82, payload, 256, 0);
  CHECK_MEM(WS_BUF_PTR(&s), "\x82\x7e\x01\x00", 4);
  ws_buf_free(&s);
  big_binary(256, 0);
  big_binary(256, 1);
}

TEST(rfc_64k_binary) {
  ws_buf_t s = {0};
  uint8_t *payload = calloc(65536, 1);
  put_frame(&s, 0x82, payload, 65536, 0);
  CHECK_MEM(WS_BUF_PTR(&s), "\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10);
  ws_buf_free(&s);
  free(payload);
  big_binary(65536, 0);
  big_binary(65536, 1);
  big_binary(65535, 1);
  big_binary(125, 1);
  big_binary(126, 1);
}

/* ---- Streams of frames -------------------------------------------------- */

TEST(many_frames_in_one_stream) {
  ws_buf_t s = {0};
  run_t r;
  put_frame(&s, 0x81, "one", 3, 1);
  put_frame(&s, 0x89, "p1", 2, 1);
  put_frame(&s, 0x02, "\x00\x01", 2, 1);
  put_frame(&s, 0x89, "", 0, 1);
  put_frame(&s, 0x00, "\x02", 1, 1);
  put_frame(&s, 0x8a, "q", 1, 1);
  put_frame(&s, 0x80, "\x03\x04\x05", 3, 1);
  put_frame(&s, 0x81, "", 0, 1);
  put_frame(&s, 0x81, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", 11, 1);
  put_close(&s, 1000, "done", 4, 1);
  CHECK_EQ_INT(split_all(&SERVER, WS_BUF_PTR(&s), WS_BUF_SIZE(&s), &r), 0);
  CHECK_EQ_INT(r.nev, 8);
  CHECK(is_msg(&r, 0, WS_OP_TEXT, "one", 3));
  CHECK(is_ev(&r, 1, WS_EV_PING, "p1", 2));
  CHECK(is_ev(&r, 2, WS_EV_PING, "", 0));
  CHECK(is_ev(&r, 3, WS_EV_PONG, "q", 1));
  CHECK(is_msg(&r, 4, WS_OP_BINARY, "\x00\x01\x02\x03\x04\x05", 6));
  CHECK(is_msg(&r, 5, WS_OP_TEXT, "", 0));
  CHECK(is_msg(&r, 6, WS_OP_TEXT,
               "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", 11));
  CHECK(is_close(&r, 7, 1000, "done", 4));
  CHECK_EQ_INT(r.consumed, WS_BUF_SIZE(&s));
  /* Two pongs and the close echo, without its reason. */
  CHECK_EQ_INT(r.out_len, 4 + 2 + 4);
  CHECK_MEM(r.out, "\x8a\x02p1\x8a\x00\x88\x02\x03\xe8", 10);
  CHECK(r.close_sent && r.close_received && !r.failed);
  run_free(&r);
  ws_buf_free(&s);
}

TEST(control_frames_between_fragments) {
  ws_buf_t s = {0};
  run_t r;
  put_frame(&s, 0x01, "Hel", 3, 0);
  put_frame(&s, 0x89, "ping", 4, 0);
  put_frame(&s, 0x00, "", 0, 0);
  put_frame(&s, 0x8a, "pong", 4, 0);
  put_frame(&s, 0x80, "lo", 2, 0);
  CHECK_EQ_INT(split_all(&CLIENT, WS_BUF_PTR(&s), WS_BUF_SIZE(&s), &r), 0);
  CHECK_EQ_INT(r.nev, 3);
  CHECK(is_ev(&r, 0, WS_EV_PING, "ping", 4));
  CHECK(is_ev(&r, 1, WS_EV_PONG, "pong", 4));
  CHECK(is_msg(&r, 2, WS_OP_TEXT, "Hello", 5));
  CHECK_EQ_INT(r.out_len, 6);
  CHECK_MEM(r.out, "\x8a\x04ping", 6);
  run_free(&r);
  ws_buf_free(&s);

  /* A Close between fragments ends everything; the message is dropped. */
  put_frame(&s, 0x02, "abc", 3, 1);
  put_close(&s, 1001, "", 0, 1);
  put_frame(&s, 0x80, "def", 3, 1);
  CHECK_EQ_INT(split_all(&SERVER, WS_BUF_PTR(&s), WS_BUF_SIZE(&s), &r), 0);
  CHECK_EQ_INT(r.nev, 1);
  CHECK(is_close(&r, 0, 1001, "", 0));
  CHECK_EQ_INT(r.consumed, WS_BUF_SIZE(&s) - 9);
  CHECK_EQ_INT(r.close_code, 1001);
  run_free(&r);
  ws_buf_free(&s);
}

TEST(empty_messages) {
  ws_buf_t s = {0};
  run_t r;
  put_frame(&s, 0x81, "", 0, 1);
  put_frame(&s, 0x82, "", 0, 1);
  put_frame(&s, 0x01, "", 0, 1);
  put_frame(&s, 0x80, "", 0, 1);
  put_frame(&s, 0x02, "", 0, 1);
  put_frame(&s, 0x00, "", 0, 1);
  put_frame(&s, 0x00, "", 0, 1);
  put_frame(&s, 0x80, "", 0, 1);
  put_frame(&s, 0x01, "", 0, 1);
  put_frame(&s, 0x00, "\xe2\x82", 2, 1);
  put_frame(&s, 0x80, "\xac", 1, 1);
  put_frame(&s, 0x81, "", 0, 1);
  CHECK_EQ_INT(split_all(&SERVER, WS_BUF_PTR(&s), WS_BUF_SIZE(&s), &r), 0);
  CHECK_EQ_INT(r.nev, 6);
  CHECK(is_msg(&r, 0, WS_OP_TEXT, "", 0));
  CHECK(is_msg(&r, 1, WS_OP_BINARY, "", 0));
  CHECK(is_msg(&r, 2, WS_OP_TEXT, "", 0));
  CHECK(is_msg(&r, 3, WS_OP_BINARY, "", 0));
  CHECK(is_msg(&r, 4, WS_OP_TEXT, "\xe2\x82\xac", 3));
  CHECK(is_msg(&r, 5, WS_OP_TEXT, "", 0));
  CHECK_EQ_INT(r.consumed, WS_BUF_SIZE(&s));
  CHECK(!r.failed);
  run_free(&r);
  ws_buf_free(&s);
}

/* ---- Control frame sizes ------------------------------------------------ */

TEST(control_frame_sizes) {
  uint8_t payload[126];
  ws_buf_t s = {0};
  run_t r;
  memset(payload, 'x', sizeof payload);
  put_frame(&s, 0x89, payload, 125, 1);
  CHECK_EQ_INT(split_all(&SERVER, WS_BUF_PTR(&s), WS_BUF_SIZE(&s), &r), 0);
  CHECK(is_ev(&r, 0, WS_EV_PING, payload, 125));
  CHECK_EQ_INT(r.out_len, 127);
  run_free(&r);
  ws_buf_free(&s);

  /* 126 bytes: refused from the header alone. */
  CHECK(fail_case("ping 126 header only", &CLIENT, BYTES("\x89\x7e\x00\x7e"),
                  1002));
  put_frame(&s, 0x89, payload, 126, 1);
  CHECK(fail_case("ping 126", &SERVER, WS_BUF_PTR(&s), WS_BUF_SIZE(&s), 1002));
  ws_buf_free(&s);
  put_frame(&s, 0x8a, payload, 126, 1);
  CHECK(fail_case("pong 126", &SERVER, WS_BUF_PTR(&s), WS_BUF_SIZE(&s), 1002));
  ws_buf_free(&s);
  put_frame(&s, 0x88, payload, 126, 1);
  CHECK(fail_case("close 126", &SERVER, WS_BUF_PTR(&s), WS_BUF_SIZE(&s),
                  1002));
  ws_buf_free(&s);
}

/* ---- Failures ----------------------------------------------------------- */

TEST(protocol_failures) {
  ws_buf_t s = {0};
  cfg_t rsv1 = SERVER;
  int op;
  rsv1.rsv_allowed = WS_RSV1;

#define FAIL_STREAM(label, cfg, code)                                      \
  do {                                                                     \
    CHECK(fail_case(label, cfg, WS_BUF_PTR(&s), WS_BUF_SIZE(&s), code));   \
    ws_buf_free(&s);                                                       \
  } while (0)

  put_frame(&s, 0x81, "Hello", 5, 0);
  FAIL_STREAM("unmasked frame from client", &SERVER, 1002);
  put_frame(&s, 0x89, "", 0, 0);
  FAIL_STREAM("unmasked ping from client", &SERVER, 1002);
  put_frame(&s, 0x81, "Hello", 5, 1);
  FAIL_STREAM("masked frame from server", &CLIENT, 1002);

  put_frame(&s, 0xc1, "Hello", 5, 1);
  FAIL_STREAM("rsv1 not negotiated", &SERVER, 1002);
  put_frame(&s, 0xa1, "Hello", 5, 1);
  FAIL_STREAM("rsv2", &SERVER, 1002);
  put_frame(&s, 0x91, "Hello", 5, 1);
  FAIL_STREAM("rsv3", &SERVER, 1002);
  put_frame(&s, 0xa1, "Hello", 5, 1);
  FAIL_STREAM("rsv2 with rsv1 negotiated", &rsv1, 1002);
  put_frame(&s, 0x41, "Hel", 3, 1);
  put_frame(&s, 0xc0, "lo", 2, 1);
  FAIL_STREAM("rsv1 on a continuation", &rsv1, 1002);
  put_frame(&s, 0xc9, "", 0, 1);
  FAIL_STREAM("rsv1 on a ping", &rsv1, 1002);
  put_frame(&s, 0xc8, "", 0, 1);
  FAIL_STREAM("rsv1 on a close", &rsv1, 1002);

  for (op = 0; op < 16; op++) {
    if (op <= 2 || (op >= 8 && op <= 10)) continue;
    put_frame(&s, 0x80 | op, "", 0, 1);
    FAIL_STREAM("reserved opcode", &SERVER, 1002);
    put_frame(&s, 0x80 | op, "abc", 3, 0);
    FAIL_STREAM("reserved opcode", &CLIENT, 1002);
    /* Between fragments too. */
    put_frame(&s, 0x01, "a", 1, 1);
    put_frame(&s, 0x80 | op, "", 0, 1);
    FAIL_STREAM("reserved opcode between fragments", &SERVER, 1002);
  }

  put_frame(&s, 0x09, "", 0, 1);
  FAIL_STREAM("fragmented ping", &SERVER, 1002);
  put_frame(&s, 0x0a, "x", 1, 1);
  FAIL_STREAM("fragmented pong", &SERVER, 1002);
  put_frame(&s, 0x08, "", 0, 1);
  FAIL_STREAM("fragmented close", &SERVER, 1002);

  put_frame(&s, 0x80, "abc", 3, 1);
  FAIL_STREAM("continuation without a message", &SERVER, 1002);
  put_frame(&s, 0x00, "abc", 3, 1);
  FAIL_STREAM("non-final continuation without a message", &SERVER, 1002);
  put_frame(&s, 0x81, "ab", 2, 1);
  put_frame(&s, 0x80, "c", 1, 1);
  FAIL_STREAM("continuation after a finished message", &SERVER, 1002);
  put_frame(&s, 0x01, "ab", 2, 1);
  put_frame(&s, 0x81, "c", 1, 1);
  FAIL_STREAM("text inside a fragmented message", &SERVER, 1002);
  put_frame(&s, 0x02, "ab", 2, 1);
  put_frame(&s, 0x89, "", 0, 1);
  put_frame(&s, 0x02, "c", 1, 1);
  FAIL_STREAM("binary inside a fragmented message", &SERVER, 1002);

  put(&s, "\x82\xff\x80\x00\x00\x00\x00\x00\x00\x01\x01\x02\x03\x04", 14);
  FAIL_STREAM("64-bit length with MSB set", &SERVER, 1002);
  put(&s, "\x82\x7f\xff", 3);
  FAIL_STREAM("64-bit length with MSB set, prefix", &CLIENT, 1002);
  put_frame(&s, 0x81, "ok", 2, 0);
  put(&s, "\x82\x7f\x80\x00\x00\x00\x00\x00\x00\x00", 10);
  FAIL_STREAM("64-bit length with MSB set after a message", &CLIENT, 1002);

  put_frame(&s, 0x88, "\x03", 1, 1);
  FAIL_STREAM("close frame with one byte", &SERVER, 1002);
#undef FAIL_STREAM
}

/* The first event of a failing run that also delivered messages before. */
TEST(failure_after_messages) {
  ws_buf_t s = {0};
  run_t r;
  put_frame(&s, 0x81, "a", 1, 1);
  put_frame(&s, 0x89, "b", 1, 1);
  put_frame(&s, 0x83, "", 0, 1);
  put_frame(&s, 0x81, "never", 5, 1);
  CHECK_EQ_INT(split_all(&SERVER, WS_BUF_PTR(&s), WS_BUF_SIZE(&s), &r), 0);
  CHECK_EQ_INT(r.nev, 3);
  CHECK(is_msg(&r, 0, WS_OP_TEXT, "a", 1));
  CHECK(is_ev(&r, 1, WS_EV_PING, "b", 1));
  CHECK_EQ_INT(r.ev[2].type, WS_EV_FAIL);
  CHECK_EQ_INT(r.ev[2].code, 1002);
  CHECK(r.ev[2].reason && strcmp(r.ev[2].reason, "reserved opcode") == 0);
  /* Consumed through the failing header, not the frame after it. */
  CHECK_EQ_INT(r.consumed, WS_BUF_SIZE(&s) - 11);
  /* The pong, then the Close. */
  CHECK_EQ_INT(r.nframes, 2);
  CHECK_MEM(r.out, "\x8a\x01" "b\x88", 4);
  CHECK_EQ_INT(r.close_code, 1002);
  run_free(&r);
  ws_buf_free(&s);
}

TEST(close_codes) {
  static const int valid[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009,
                              1010, 1011, 1012, 1013, 1014, 3000, 3999,
                              4000, 4999};
  static const int invalid[] = {0,    1,    999,  1004, 1005, 1006, 1015,
                                1016, 1100, 2000, 2999, 5000, 65535};
  size_t i;
  for (i = 0; i < sizeof valid / sizeof valid[0]; i++) {
    ws_buf_t s = {0};
    run_t r;
    put_close(&s, valid[i], "reason", 6, 1);
    CHECK_EQ_INT(split_all(&SERVER, WS_BUF_PTR(&s), WS_BUF_SIZE(&s), &r), 0);
    CHECK_EQ_INT(r.nev, 1);
    CHECK(is_close(&r, 0, valid[i], "reason", 6));
    /* The echo carries the code and no reason. */
    CHECK_EQ_INT(r.nclose, 1);
    CHECK_EQ_INT(r.close_code, valid[i]);
    CHECK_EQ_INT(r.close_reason_len, 0);
    CHECK(r.close_sent && r.close_received && !r.failed);
    run_free(&r);
    ws_buf_free(&s);
  }
  for (i = 0; i < sizeof invalid / sizeof invalid[0]; i++) {
    ws_buf_t s = {0};
    put_close(&s, invalid[i], "", 0, 1);
    CHECK(fail_case("invalid close code", &SERVER, WS_BUF_PTR(&s),
                    WS_BUF_SIZE(&s), 1002));
    ws_buf_free(&s);
    put_close(&s, invalid[i], "x", 1, 0);
    CHECK(fail_case("invalid close code", &CLIENT, WS_BUF_PTR(&s),
                    WS_BUF_SIZE(&s), 1002));
    ws_buf_free(&s);
  }
}

TEST(close_empty_and_reasons) {
  ws_buf_t s = {0};
  run_t r;
  uint8_t reason[123];

  /* An empty Close: code 1005 in the event, an empty echo. */
  put_frame(&s, 0x88, "", 0, 1);
  CHECK_EQ_INT(split_all(&SERVER, WS_BUF_PTR(&s), WS_BUF_SIZE(&s), &r), 0);
  CHECK(is_close(&r, 0, 1005, "", 0));
  CHECK_EQ_INT(r.out_len, 2);
  CHECK_MEM(r.out, "\x88\x00", 2);
  CHECK_EQ_INT(r.close_code, 0);
  run_free(&r);
  ws_buf_free(&s);

  /* The longest reason. */
  memset(reason, 'r', sizeof reason);
  put_close(&s, 1000, (const char *)reason, 123, 0);
  CHECK_EQ_INT(split_all(&CLIENT, WS_BUF_PTR(&s), WS_BUF_SIZE(&s), &r), 0);
  CHECK(is_close(&r, 0, 1000, (const char *)reason, 123));
  CHECK_EQ_INT(r.close_code, 1000);
  run_free(&r);
  ws_buf_free(&s);

  /* A UTF-8 reason. */
  put_close(&s, 1000, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", 11, 1);
  CHECK_EQ_INT(split_all(&SERVER, WS_BUF_PTR(&s), WS_BUF_SIZE(&s), &r), 0);
  CHECK(is_close(&r, 0, 1000, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5",
                 11));
  run_free(&r);
  ws_buf_free(&s);

  /* Invalid UTF-8 reasons: 1007. */
  put_close(&s, 1000, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0"
                      "\x80\x65\x64\x69\x74\x65\x64", 20, 1);
  CHECK(fail_case("close reason with a surrogate", &SERVER, WS_BUF_PTR(&s),
                  WS_BUF_SIZE(&s), 1007));
  ws_buf_free(&s);
  put_close(&s, 1000, "ab\xe2\x82", 4, 1);
  CHECK(fail_case("close reason cut short", &SERVER, WS_BUF_PTR(&s),
                  WS_BUF_SIZE(&s), 1007));
  ws_buf_free(&s);
}

/* Once the peer's Close or a failure is seen, nothing more is parsed. */
TEST(nothing_after_close) {
  ws_buf_t s = {0};
  run_t r;
  put_frame(&s, 0x81, "a", 1, 1);
  put_close(&s, 1000, "", 0, 1);
  put_frame(&s, 0x81, "b", 1, 1);
  put_frame(&s, 0x89, "c", 1, 1);
  put(&s, "\xff\xff\xff", 3); /* garbage that would fail if parsed */
  CHECK_EQ_INT(split_all(&SERVER, WS_BUF_PTR(&s), WS_BUF_SIZE(&s), &r), 0);
  CHECK_EQ_INT(r.nev, 2);
  CHECK(is_msg(&r, 0, WS_OP_TEXT, "a", 1));
  CHECK(is_close(&r, 1, 1000, "", 0));
  CHECK_EQ_INT(r.consumed, 7 + 8);
  CHECK_EQ_INT(r.nframes, 1);
  CHECK(!r.failed);
  run_free(&r);
  ws_buf_free(&s);
}

/* After this side's Close, data frames are still delivered, pings are not
 * answered, and the peer's Close is not echoed. */
TEST(data_after_close_sent) {
  ws_buf_t s = {0};
  run_t r;
  cfg_t cfg = SERVER;
  cfg.close_first = 1;
  put_frame(&s, 0x81, "late", 4, 1);
  put_frame(&s, 0x09 | 0x80, "p", 1, 1);
  put_frame(&s, 0x02, "x", 1, 1);
  put_frame(&s, 0x80, "y", 1, 1);
  put_close(&s, 1000, "ok", 2, 1);
  CHECK_EQ_INT(split_all(&cfg, WS_BUF_PTR(&s), WS_BUF_SIZE(&s), &r), 0);
  CHECK_EQ_INT(r.nev, 4);
  CHECK(is_msg(&r, 0, WS_OP_TEXT, "late", 4));
  CHECK(is_ev(&r, 1, WS_EV_PING, "p", 1));
  CHECK(is_msg(&r, 2, WS_OP_BINARY, "xy", 2));
  CHECK(is_close(&r, 3, 1000, "ok", 2));
  /* Only our own Close(1000, "bye"). */
  CHECK_EQ_INT(r.nframes, 1);
  CHECK_EQ_INT(r.close_code, 1000);
  CHECK_EQ_INT(r.close_reason_len, 3);
  run_free(&r);
  ws_buf_free(&s);

  /* A failure after our Close queues no second Close. */
  put_frame(&s, 0x81, "\xff", 1, 1);
  CHECK(fail_case("bad text after close sent", &cfg, WS_BUF_PTR(&s),
                  WS_BUF_SIZE(&s), 1007));
  ws_buf_free(&s);
}

/* ---- UTF-8 -------------------------------------------------------------- */

static const struct {
  const char *s;
  size_t n;
  int ok;
} texts[] = {
#define T(lit, ok) {lit, sizeof(lit) - 1, ok}
  T("Hello-\xc2\xb5@\xc3\x9f\xc3\xb6\xc3\xa4\xc3\xbc\xc3\xa0\xc3\xa1-UTF-8!!",
    1),                                                      /* 6.2 */
  T("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", 1),      /* 6.5 */
  T("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69"
    "\x74\x65\x64", 0),                                      /* 6.3 */
  T("\xf0\x90\x80\x80", 1), T("\xf4\x8f\xbf\xbf", 1),
  T("\xf4\x90\x80\x80", 0), T("\xf5\x80\x80\x80", 0),
  T("\xc0\xaf", 0), T("\xe0\x80\xaf", 0), T("\xf0\x80\x80\xaf", 0),
  T("\xc1\xbf", 0), T("\xe0\x9f\xbf", 0), T("\xf0\x8f\xbf\xbf", 0),
  T("\xed\xa0\x80", 0), T("\xed\xbf\xbf", 0), T("\xed\x9f\xbf", 1),
  T("\x80", 0), T("a\xbf" "b", 0), T("\xfe", 0), T("\xff", 0),
  T("\xc2", 0), T("\xe2\x82", 0), T("\xf0\x9f\x98", 0),      /* cut short */
  T("\xef\xbf\xbf", 1), T("\xef\xbf\xbd", 1),
#undef T
};

/* Each text sent whole and in two fragments split at every byte. */
TEST(text_utf8_in_fragments) {
  size_t i, k;
  for (i = 0; i < sizeof texts / sizeof texts[0]; i++) {
    const char *t = texts[i].s;
    size_t n = texts[i].n;
    for (k = 0; k <= n + 1; k++) {
      ws_buf_t s = {0};
      run_t r;
      if (k == n + 1) {
        put_frame(&s, 0x81, t, n, 1);
      } else {
        put_frame(&s, 0x01, t, k, 1);
        put_frame(&s, 0x89, "", 0, 1);
        put_frame(&s, 0x80, t + k, n - k, 1);
      }
      if (texts[i].ok) {
        CHECK_EQ_INT(split_all(&SERVER, WS_BUF_PTR(&s), WS_BUF_SIZE(&s), &r),
                     0);
        CHECK(is_msg(&r, r.nev - 1, WS_OP_TEXT, t, n));
        run_free(&r);
      } else {
        CHECK(fail_case("invalid text", &SERVER, WS_BUF_PTR(&s),
                        WS_BUF_SIZE(&s), 1007));
      }
      ws_buf_free(&s);
    }
    /* Binary messages are not checked. */
    {
      ws_buf_t s = {0};
      run_t r;
      put_frame(&s, 0x82, t, n, 1);
      CHECK_EQ_INT(split_all(&SERVER, WS_BUF_PTR(&s), WS_BUF_SIZE(&s), &r), 0);
      CHECK(is_msg(&r, 0, WS_OP_BINARY, t, n));
      run_free(&r);
      ws_buf_free(&s);
    }
  }
}

/* Feeds one byte at a time and returns the index of the byte after which
 * the FAIL event had arrived, or -1. */
static long fail_byte(const cfg_t *cfg, const uint8_t *in, size_t n) {
  run_t r;
  ws_conn_t c;
  size_t i;
  long at = -1;
  memset(&r, 0, sizeof r);
  ws_conn_init(&c, cfg->role, on_event, &r);
  r.c = &c;
  for (i = 0; i < n && at < 0; i++) {
    uint8_t b = in[i];
    ws_conn_feed(&c, &b, 1);
    if (c.failed) at = (long)i;
  }
  ws_conn_free(&c);
  run_free(&r);
  return at;
}

/* Autobahn 6.4: an invalid text fails as soon as the bad byte arrives,
 * before the rest of the frame or message. */
TEST(utf8_fails_fast) {
  ws_buf_t s = {0};
  ws_conn_t c;
  run_t r;
  uint8_t chunk[16];

  /* A single frame of 10 bytes; only the header and 4 bytes arrive. */
  memset(&r, 0, sizeof r);
  ws_conn_init(&c, WS_ROLE_CLIENT, on_event, &r);
  r.c = &c;
  memcpy(chunk, "\x81\x0a" "ab\xed\xa0", 6);
  CHECK_EQ_INT(ws_conn_feed(&c, chunk, 6), 6);
  CHECK_EQ_INT(r.nev, 1);
  CHECK(r.nev == 1 && r.ev[0].type == WS_EV_FAIL && r.ev[0].code == 1007);
  CHECK(c.failed);
  memcpy(chunk, "\x80" "cdef", 5);
  CHECK_EQ_INT(ws_conn_feed(&c, chunk, 5), 0);
  CHECK_EQ_INT(r.nev, 1);
  take_out(&r, &c);
  CHECK_EQ_INT(r.close_code, 1007);
  ws_conn_free(&c);
  run_free(&r);

  /* Fragmented: a valid first fragment, then F4 90 in the second. */
  put_frame(&s, 0x01, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", 11, 1);
  put_frame(&s, 0x80, "\xf4\x90\x80\x80" "edited", 10, 1);
  /* Header 6 + 11, header 6, then F4 at 23 and 90 at 24. */
  CHECK_EQ_INT(fail_byte(&SERVER, WS_BUF_PTR(&s), WS_BUF_SIZE(&s)), 24);
  ws_buf_free(&s);

  /* ED A0 fails at A0, the first invalid byte, mid-frame. */
  put_frame(&s, 0x81, "abc\xed\xa0\x80xyz", 9, 0);
  CHECK_EQ_INT(fail_byte(&CLIENT, WS_BUF_PTR(&s), WS_BUF_SIZE(&s)), 2 + 4);
  ws_buf_free(&s);

  /* A character cut by the end of the message fails at the last byte. */
  put_frame(&s, 0x01, "ab", 2, 0);
  put_frame(&s, 0x80, "\xe2\x82", 2, 0);
  CHECK_EQ_INT(fail_byte(&CLIENT, WS_BUF_PTR(&s), WS_BUF_SIZE(&s)), 7);
  ws_buf_free(&s);

  /* A character may span fragments. */
  put_frame(&s, 0x01, "\xe2", 1, 0);
  put_frame(&s, 0x00, "\x82", 1, 0);
  put_frame(&s, 0x80, "\xac", 1, 0);
  CHECK_EQ_INT(fail_byte(&CLIENT, WS_BUF_PTR(&s), WS_BUF_SIZE(&s)), -1);
  ws_buf_free(&s);
}

/* With RSV1 negotiated, a compressed text message is not validated here:
 * the inflating layer does it.  msg_rsv tells the callback. */
TEST(rsv1_message) {
  ws_buf_t s = {0};
  run_t r;
  cfg_t cfg = SERVER;
  cfg.rsv_allowed = WS_RSV1;
  put_frame(&s, 0xc1, "\xf2\x48\xcd\xc9\xc9\x07\x00", 7, 1);
  put_frame(&s, 0x41, "\xff", 1, 1);
  put_frame(&s, 0x89, "", 0, 1);
  put_frame(&s, 0x80, "\xfe", 1, 1);
  put_frame(&s, 0x81, "plain", 5, 1);
  CHECK_EQ_INT(split_all(&cfg, WS_BUF_PTR(&s), WS_BUF_SIZE(&s), &r), 0);
  CHECK_EQ_INT(r.nev, 4);
  CHECK(is_msg(&r, 0, WS_OP_TEXT, "\xf2\x48\xcd\xc9\xc9\x07\x00", 7));
  CHECK_EQ_INT(r.ev[0].msg_rsv, WS_RSV1);
  CHECK(is_ev(&r, 1, WS_EV_PING, "", 0));
  CHECK(is_msg(&r, 2, WS_OP_TEXT, "\xff\xfe", 2));
  CHECK_EQ_INT(r.ev[2].msg_rsv, WS_RSV1);
  CHECK(is_msg(&r, 3, WS_OP_TEXT, "plain", 5));
  CHECK_EQ_INT(r.ev[3].msg_rsv, 0);
  run_free(&r);
  ws_buf_free(&s);
}

/* ---- Limits ------------------------------------------------------------- */

TEST(limits) {
  ws_buf_t s = {0};
  cfg_t cfg = SERVER;
  run_t r;
  uint8_t payload[64];
  memset(payload, 'z', sizeof payload);

  /* Frame limit: a frame of the limit is fine, one more byte is not, and
   * the header alone is enough to fail. */
  cfg.max_frame = 10;
  put_frame(&s, 0x82, payload, 10, 1);
  put_frame(&s, 0x02, payload, 10, 1);
  put_frame(&s, 0x80, payload, 10, 1);
  put_frame(&s, 0x89, payload, 20, 1); /* control frames are not counted */
  CHECK_EQ_INT(split_all(&cfg, WS_BUF_PTR(&s), WS_BUF_SIZE(&s), &r), 0);
  CHECK_EQ_INT(r.nev, 3);
  CHECK(is_msg(&r, 1, WS_OP_BINARY, payload, 20));
  run_free(&r);
  ws_buf_free(&s);
  put(&s, "\x82\x8b\x01\x02\x03\x04", 6);
  CHECK(fail_case("frame over the limit, header only", &cfg, WS_BUF_PTR(&s),
                  WS_BUF_SIZE(&s), 1009));
  ws_buf_free(&s);
  put(&s, "\x81\xff\x00\x00\x00\x01\x00\x00\x00\x00\x01\x02\x03\x04", 14);
  CHECK(fail_case("4 GiB frame, header only", &cfg, WS_BUF_PTR(&s),
                  WS_BUF_SIZE(&s), 1009));
  ws_buf_free(&s);

  /* Message limit: counted over fragments, checked at each header. */
  cfg.max_frame = 0;
  cfg.max_msg = 10;
  put_frame(&s, 0x02, payload, 6, 1);
  put_frame(&s, 0x80, payload, 4, 1);
  put_frame(&s, 0x82, payload, 10, 1);
  CHECK_EQ_INT(split_all(&cfg, WS_BUF_PTR(&s), WS_BUF_SIZE(&s), &r), 0);
  CHECK_EQ_INT(r.nev, 2);
  CHECK(is_msg(&r, 0, WS_OP_BINARY, payload, 10));
  CHECK(is_msg(&r, 1, WS_OP_BINARY, payload, 10));
  run_free(&r);
  ws_buf_free(&s);
  put_frame(&s, 0x02, payload, 6, 1);
  put(&s, "\x80\x85\x01\x02\x03\x04", 6); /* 5 more: header only */
  CHECK(fail_case("message over the limit", &cfg, WS_BUF_PTR(&s),
                  WS_BUF_SIZE(&s), 1009));
  ws_buf_free(&s);
  put(&s, "\x81\xfe\x10\x00\x01\x02\x03\x04", 8);
  CHECK(fail_case("message over the limit in one frame", &cfg,
                  WS_BUF_PTR(&s), WS_BUF_SIZE(&s), 1009));
  ws_buf_free(&s);
  put(&s, "\x82\xff\x7f\xff\xff\xff\xff\xff\xff\xff\x01\x02\x03\x04", 14);
  CHECK(fail_case("largest length", &cfg, WS_BUF_PTR(&s), WS_BUF_SIZE(&s),
                  1009));
  ws_buf_free(&s);

  /* The failure comes with the header: nothing of the payload is needed. */
  {
    ws_conn_t c;
    memset(&r, 0, sizeof r);
    ws_conn_init(&c, WS_ROLE_SERVER, on_event, &r);
    r.c = &c;
    ws_limits_t lim = {1000, 0, 0};
    c.lim = &lim;
    CHECK_EQ_INT(ws_conn_feed(&c, (uint8_t[]){0x82, 0xfe, 0x03}, 3), 3);
    CHECK_EQ_INT(r.nev, 0);
    CHECK_EQ_INT(ws_conn_feed(&c, (uint8_t[]){0xe9}, 1), 1);
    CHECK_EQ_INT(r.nev, 0);
    CHECK_EQ_INT(ws_conn_feed(&c, (uint8_t[]){1, 2, 3}, 3), 3);
    CHECK_EQ_INT(r.nev, 0);
    CHECK_EQ_INT(ws_conn_feed(&c, (uint8_t[]){4, 5}, 2), 1);
    CHECK(r.nev == 1 && r.ev[0].type == WS_EV_FAIL && r.ev[0].code == 1009);
    ws_conn_free(&c);
    run_free(&r);
  }
}

/* ---- Memory ------------------------------------------------------------- */

TEST(zero_copy_and_buffers) {
  ws_buf_t s = {0};
  ws_conn_t c;
  run_t r;
  uint8_t *big = malloc(10000);
  memset(big, 'q', 10000);

  memset(&r, 0, sizeof r);
  ws_conn_init(&c, WS_ROLE_SERVER, on_event, &r);
  r.c = &c;

  /* Unfragmented and whole: delivered in place, nothing buffered. */
  put_frame(&s, 0x82, big, 10000, 1);
  r.lo = (uintptr_t)WS_BUF_PTR(&s);
  r.hi = r.lo + WS_BUF_SIZE(&s);
  CHECK_EQ_INT(ws_conn_feed(&c, WS_BUF_PTR(&s), WS_BUF_SIZE(&s)),
               WS_BUF_SIZE(&s));
  CHECK(r.nev == 1 && r.ev[0].inplace && r.ev[0].len == 10000);
  CHECK_EQ_INT(c.msg.cap, 0);
  ws_buf_free(&s);

  /* Fragmented and large: gathered, then the buffer is released. */
  put_frame(&s, 0x02, big, 5000, 1);
  put_frame(&s, 0x80, big, 5000, 1);
  r.lo = (uintptr_t)WS_BUF_PTR(&s);
  r.hi = r.lo + WS_BUF_SIZE(&s);
  CHECK_EQ_INT(ws_conn_feed(&c, WS_BUF_PTR(&s), WS_BUF_SIZE(&s)),
               WS_BUF_SIZE(&s));
  CHECK(r.nev == 2 && !r.ev[1].inplace && r.ev[1].len == 10000);
  CHECK_EQ_INT(c.msg.cap, 0);
  CHECK(c.msg.data == NULL);
  ws_buf_free(&s);

  /* Small: the buffer is kept for the next message. */
  put_frame(&s, 0x02, "ab", 2, 1);
  put_frame(&s, 0x80, "cd", 2, 1);
  CHECK_EQ_INT(ws_conn_feed(&c, WS_BUF_PTR(&s), WS_BUF_SIZE(&s)),
               WS_BUF_SIZE(&s));
  CHECK(r.nev == 3 && is_msg(&r, 2, WS_OP_BINARY, "abcd", 4));
  CHECK(c.msg.cap > 0 && c.msg.cap <= 4096);
  CHECK_EQ_INT(WS_BUF_SIZE(&c.msg), 0);
  ws_buf_free(&s);

  /* A frame split across feeds is gathered even when unfragmented. */
  put_frame(&s, 0x81, "split", 5, 1);
  CHECK_EQ_INT(ws_conn_feed(&c, WS_BUF_PTR(&s), 8), 8);
  CHECK_EQ_INT(ws_conn_feed(&c, WS_BUF_PTR(&s) + 8, WS_BUF_SIZE(&s) - 8),
               WS_BUF_SIZE(&s) - 8);
  CHECK(r.nev == 4 && is_msg(&r, 3, WS_OP_TEXT, "split", 5));
  ws_buf_free(&s);

  ws_conn_free(&c);
  CHECK(c.msg.data == NULL && c.out.data == NULL);
  /* The connection may be set up again. */
  ws_conn_init(&c, WS_ROLE_CLIENT, on_event, &r);
  CHECK_EQ_INT(ws_conn_feed(&c, (uint8_t[]){0x8a, 0x00}, 2), 2);
  CHECK(r.nev == 5 && r.ev[4].type == WS_EV_PONG);
  ws_conn_free(&c);
  run_free(&r);
  free(big);
}

/* ---- Sending ------------------------------------------------------------ */

/* Checks that out holds exactly one masked frame with this header byte and
 * payload; stores its key. */
static int one_masked_frame(ws_conn_t *c, int b0, const void *payload,
                            size_t len, uint8_t key[4]) {
  const uint8_t *p = WS_BUF_PTR(&c->out);
  ws_frame_header_t h;
  int hl = ws_frame_parse_header(p, WS_BUF_SIZE(&c->out), &h);
  uint8_t *copy;
  int ok;
  if (hl <= 0 || !h.masked || h.len != len ||
      (size_t)hl + len != WS_BUF_SIZE(&c->out) ||
      (h.fin << 7 | h.rsv | h.opcode) != b0)
    return 0;
  copy = malloc(len + 1);
  memcpy(copy, p + hl, len);
  ws_mask(copy, len, h.mask, 0);
  ok = len == 0 || memcmp(copy, payload, len) == 0;
  free(copy);
  memcpy(key, h.mask, 4);
  return ok;
}

TEST(client_sends_masked) {
  ws_conn_t c;
  uint8_t k1[4], k2[4], k3[4];
  static const uint8_t msg[] = "Hello";
  uint8_t *big = malloc(70000);
  size_t i;
  for (i = 0; i < 70000; i++) big[i] = (uint8_t)i;

  ws_conn_init(&c, WS_ROLE_CLIENT, NULL, NULL);
  CHECK_EQ_INT(ws_conn_send(&c, WS_OP_TEXT, msg, 5), WS_CONN_OK);
  CHECK(one_masked_frame(&c, 0x81, "Hello", 5, k1));
  CHECK_MEM(msg, "Hello", 5); /* the caller's bytes are untouched */
  ws_buf_consume(&c.out, WS_BUF_SIZE(&c.out));
  CHECK_EQ_INT(ws_conn_send(&c, WS_OP_TEXT, msg, 5), WS_CONN_OK);
  CHECK(one_masked_frame(&c, 0x81, "Hello", 5, k2));
  ws_buf_consume(&c.out, WS_BUF_SIZE(&c.out));
  /* A fresh key per frame (equal by chance once in 2^32). */
  CHECK(memcmp(k1, k2, 4) != 0);

  CHECK_EQ_INT(ws_conn_send(&c, WS_OP_BINARY, big, 70000), WS_CONN_OK);
  CHECK(one_masked_frame(&c, 0x82, big, 70000, k3));
  CHECK_EQ_INT(WS_BUF_SIZE(&c.out), 70000 + 14);
  for (i = 0; i < 70000; i++)
    if (big[i] != (uint8_t)i) break;
  CHECK_EQ_INT(i, 70000);
  ws_buf_consume(&c.out, WS_BUF_SIZE(&c.out));

  CHECK_EQ_INT(ws_conn_send(&c, WS_OP_PING, "", 0), WS_CONN_OK);
  CHECK(one_masked_frame(&c, 0x89, "", 0, k3));
  ws_buf_consume(&c.out, WS_BUF_SIZE(&c.out));
  CHECK_EQ_INT(ws_conn_send(&c, WS_OP_BINARY, NULL, 0), WS_CONN_OK);
  CHECK(one_masked_frame(&c, 0x82, "", 0, k3));
  ws_buf_consume(&c.out, WS_BUF_SIZE(&c.out));
  CHECK_EQ_INT(ws_conn_close(&c, 1000, "bye", 3), WS_CONN_OK);
  CHECK(one_masked_frame(&c, 0x88, "\x03\xe8" "bye", 5, k3));
  ws_conn_free(&c);
  free(big);
}

TEST(server_sends_unmasked) {
  ws_conn_t c;
  ws_conn_init(&c, WS_ROLE_SERVER, NULL, NULL);
  CHECK_EQ_INT(ws_conn_send(&c, WS_OP_TEXT, "Hello", 5), WS_CONN_OK);
  CHECK_EQ_INT(ws_conn_send(&c, WS_OP_PING, "Hello", 5), WS_CONN_OK);
  CHECK_EQ_INT(ws_conn_send(&c, WS_OP_PONG, "Hello", 5), WS_CONN_OK);
  CHECK_EQ_INT(ws_conn_send_frame(&c, 0, 0, WS_OP_TEXT, "Hel", 3),
               WS_CONN_OK);
  CHECK_EQ_INT(ws_conn_send_frame(&c, 1, 0, WS_OP_CONT, "lo", 2), WS_CONN_OK);
  CHECK_EQ_INT(ws_conn_send_frame(&c, 1, WS_RSV1, WS_OP_BINARY, "z", 1),
               WS_CONN_OK);
  CHECK_EQ_INT(ws_conn_close(&c, 0, NULL, 0), WS_CONN_OK);
  CHECK_EQ_INT(WS_BUF_SIZE(&c.out), 7 + 7 + 7 + 5 + 4 + 3 + 2);
  CHECK_MEM(WS_BUF_PTR(&c.out),
            "\x81\x05Hello\x89\x05Hello\x8a\x05Hello\x01\x03Hel\x80\x02lo"
            "\xc2\x01z\x88\x00", 35);
  CHECK(c.close_sent);
  ws_conn_free(&c);
}

TEST(send_errors) {
  ws_conn_t c;
  uint8_t big[200];
  memset(big, 'a', sizeof big);
  ws_conn_init(&c, WS_ROLE_SERVER, NULL, NULL);

  CHECK_EQ_INT(ws_conn_send(&c, WS_OP_PING, big, 125), WS_CONN_OK);
  CHECK_EQ_INT(ws_conn_send(&c, WS_OP_PING, big, 126), WS_CONN_EINVAL);
  CHECK_EQ_INT(ws_conn_send(&c, WS_OP_PONG, big, 126), WS_CONN_EINVAL);
  CHECK_EQ_INT(ws_conn_send(&c, WS_OP_CLOSE, big, 2), WS_CONN_EINVAL);
  CHECK_EQ_INT(ws_conn_send(&c, WS_OP_CONT, big, 2), WS_CONN_EINVAL);
  CHECK_EQ_INT(ws_conn_send(&c, 3, big, 2), WS_CONN_EINVAL);
  CHECK_EQ_INT(ws_conn_send(&c, 0xb, big, 2), WS_CONN_EINVAL);
  CHECK_EQ_INT(ws_conn_send(&c, 16, big, 2), WS_CONN_EINVAL);
  CHECK_EQ_INT(ws_conn_send(&c, -1, big, 2), WS_CONN_EINVAL);
  CHECK_EQ_INT(ws_conn_send(&c, WS_OP_TEXT, NULL, 3), WS_CONN_EINVAL);
  CHECK_EQ_INT(ws_conn_send_frame(&c, 0, 0, WS_OP_PING, "", 0),
               WS_CONN_EINVAL);
  CHECK_EQ_INT(ws_conn_send_frame(&c, 1, WS_RSV1, WS_OP_PING, "", 0),
               WS_CONN_EINVAL);
  CHECK_EQ_INT(ws_conn_send_frame(&c, 1, WS_RSV1, WS_OP_CONT, "", 0),
               WS_CONN_EINVAL);
  CHECK_EQ_INT(ws_conn_send_frame(&c, 1, 0x80, WS_OP_TEXT, "", 0),
               WS_CONN_EINVAL);
  CHECK_EQ_INT(ws_conn_send_frame(&c, 1, 0, WS_OP_CLOSE, "", 0),
               WS_CONN_EINVAL);

  /* Close: codes that may not be sent, reasons too long or not UTF-8. */
  CHECK_EQ_INT(ws_conn_close(&c, 999, NULL, 0), WS_CONN_EINVAL);
  CHECK_EQ_INT(ws_conn_close(&c, 1004, NULL, 0), WS_CONN_EINVAL);
  CHECK_EQ_INT(ws_conn_close(&c, 1005, NULL, 0), WS_CONN_EINVAL);
  CHECK_EQ_INT(ws_conn_close(&c, 1006, NULL, 0), WS_CONN_EINVAL);
  CHECK_EQ_INT(ws_conn_close(&c, 1015, NULL, 0), WS_CONN_EINVAL);
  CHECK_EQ_INT(ws_conn_close(&c, 5000, NULL, 0), WS_CONN_EINVAL);
  CHECK_EQ_INT(ws_conn_close(&c, -1, NULL, 0), WS_CONN_EINVAL);
  CHECK_EQ_INT(ws_conn_close(&c, 1000, (const char *)big, 124),
               WS_CONN_EINVAL);
  CHECK_EQ_INT(ws_conn_close(&c, 1000, "\xff", 1), WS_CONN_EINVAL);
  CHECK_EQ_INT(ws_conn_close(&c, 0, "x", 1), WS_CONN_EINVAL);
  CHECK(!c.close_sent);
  CHECK_EQ_INT(WS_BUF_SIZE(&c.out), 127); /* only the good ping */

  CHECK_EQ_INT(ws_conn_close(&c, 4999, (const char *)big, 123), WS_CONN_OK);
  CHECK(c.close_sent);
  CHECK_EQ_INT(WS_BUF_SIZE(&c.out), 127 + 2 + 125);
  CHECK_MEM(WS_BUF_PTR(&c.out) + 127, "\x88\x7d\x13\x87", 4);

  /* Everything after the Close. */
  CHECK_EQ_INT(ws_conn_send(&c, WS_OP_TEXT, "a", 1), WS_CONN_ECLOSED);
  CHECK_EQ_INT(ws_conn_send(&c, WS_OP_PING, "a", 1), WS_CONN_ECLOSED);
  CHECK_EQ_INT(ws_conn_send_frame(&c, 1, 0, WS_OP_CONT, "a", 1),
               WS_CONN_ECLOSED);
  CHECK_EQ_INT(ws_conn_close(&c, 1000, NULL, 0), WS_CONN_ECLOSED);
  CHECK_EQ_INT(ws_conn_close(&c, 0, NULL, 0), WS_CONN_ECLOSED);
  CHECK_EQ_INT(WS_BUF_SIZE(&c.out), 127 + 2 + 125);
  ws_conn_free(&c);

  /* After a failure, sends are refused too. */
  ws_conn_init(&c, WS_ROLE_SERVER, NULL, NULL);
  CHECK_EQ_INT(ws_conn_feed(&c, (uint8_t[]){0x81, 0x00}, 2), 2);
  CHECK(c.failed && WS_CONN_DONE(&c));
  CHECK_EQ_INT(ws_conn_send(&c, WS_OP_TEXT, "a", 1), WS_CONN_ECLOSED);
  ws_conn_free(&c);
}

/* The small-frame fast path (whole unfragmented frames of at most 125
 * bytes) against the general path: streams of frames around the 125/126
 * boundary, masked and unmasked, text and binary, fragmented, with control
 * frames, an RSV bit, limits and bad UTF-8.  split_all compares the whole
 * feed (fast path) with byte-by-byte and other splits (general path). */
TEST(small_frame_fast_path) {
  static const size_t sizes[] = {0, 1, 3, 7, 8, 9, 15, 16, 17, 64,
                                 120, 124, 125, 126, 127, 200};
  uint8_t payload[200];
  size_t i, k;
  int masked, op;
  for (i = 0; i < sizeof payload; i++)
    payload[i] = (uint8_t)('a' + i % 26);

  for (masked = 0; masked < 2; masked++) {
    const cfg_t *cfg = masked ? &SERVER : &CLIENT;
    for (op = 0x81; op <= 0x82; op++) {
      ws_buf_t s = {0};
      run_t r;
      for (k = 0; k < sizeof sizes / sizeof sizes[0]; k++)
        put_frame(&s, op, payload, sizes[k], masked);
      /* A fragmented message of short frames, a ping between. */
      put_frame(&s, op & 0x0f, payload, 5, masked);
      put_frame(&s, 0x89, "p", 1, masked);
      put_frame(&s, 0x80, payload + 5, 125, masked);
      put_frame(&s, op, payload, 2, masked);
      CHECK_EQ_INT(split_all(cfg, WS_BUF_PTR(&s), WS_BUF_SIZE(&s), &r), 0);
      CHECK_EQ_INT(r.nev, sizeof sizes / sizeof sizes[0] + 3);
      for (k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        CHECK(is_msg(&r, k, op & 0x0f, payload, sizes[k]));
        CHECK(sizes[k] == 0 || r.ev[k].inplace);
      }
      CHECK(is_ev(&r, k, WS_EV_PING, "p", 1));
      CHECK(is_msg(&r, k + 1, op & 0x0f, payload, 130));
      CHECK(is_msg(&r, k + 2, op & 0x0f, payload, 2));
      CHECK(!r.failed && r.consumed == WS_BUF_SIZE(&s));
      run_free(&r);
      ws_buf_free(&s);
    }
  }

  /* Frames the fast path must leave to the general one: wrong masking, an
   * RSV bit, a reserved opcode, over the limits, bad UTF-8 (at the start,
   * at the end, split characters). */
  {
    ws_buf_t s = {0};
    cfg_t lim = {WS_ROLE_SERVER, 0, 10, 0, 0};
    cfg_t flim = {WS_ROLE_SERVER, 0, 0, 10, 0};
    cfg_t rsv = {WS_ROLE_SERVER, WS_RSV1, 0, 0, 0};
    run_t r;

    put_frame(&s, 0x81, "ok", 2, 1);
    put_frame(&s, 0x82, payload, 10, 0);
    CHECK(fail_case("unmasked small", &SERVER, WS_BUF_PTR(&s),
                    WS_BUF_SIZE(&s), 1002));
    ws_buf_free(&s);
    put_frame(&s, 0x81, "ok", 2, 0);
    put_frame(&s, 0x82, payload, 10, 1);
    CHECK(fail_case("masked small to client", &CLIENT, WS_BUF_PTR(&s),
                    WS_BUF_SIZE(&s), 1002));
    ws_buf_free(&s);
    put_frame(&s, 0xc2, payload, 10, 1);
    CHECK(fail_case("rsv1 small", &SERVER, WS_BUF_PTR(&s), WS_BUF_SIZE(&s),
                    1002));
    ws_buf_free(&s);
    put_frame(&s, 0x83, payload, 10, 1);
    CHECK(fail_case("opcode 3", &SERVER, WS_BUF_PTR(&s), WS_BUF_SIZE(&s),
                    1002));
    ws_buf_free(&s);
    put_frame(&s, 0x82, payload, 10, 1);
    put_frame(&s, 0x82, payload, 11, 1);
    CHECK(fail_case("message limit", &lim, WS_BUF_PTR(&s), WS_BUF_SIZE(&s),
                    1009));
    CHECK(fail_case("frame limit", &flim, WS_BUF_PTR(&s), WS_BUF_SIZE(&s),
                    1009));
    ws_buf_free(&s);
    put_frame(&s, 0x81, "\xff" "abc", 4, 1);
    CHECK(fail_case("bad utf-8 first", &SERVER, WS_BUF_PTR(&s),
                    WS_BUF_SIZE(&s), 1007));
    ws_buf_free(&s);
    put_frame(&s, 0x81, "abcdefghij\xe2\x82", 12, 1);
    CHECK(fail_case("cut character", &SERVER, WS_BUF_PTR(&s),
                    WS_BUF_SIZE(&s), 1007));
    ws_buf_free(&s);
    /* Valid multi-byte text, and RSV1 where an extension allows it. */
    put_frame(&s, 0x81, "h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80", 15,
              1);
    put_frame(&s, 0xc2, payload, 3, 1);
    CHECK_EQ_INT(split_all(&rsv, WS_BUF_PTR(&s), WS_BUF_SIZE(&s), &r), 0);
    CHECK(r.nev == 2 && r.ev[0].len == 15 && r.ev[1].msg_rsv == WS_RSV1);
    run_free(&r);
    ws_buf_free(&s);
  }
}

/* Receiving straight into the message buffer (ws_conn_recv_buf). */
TEST(recv_buf_direct) {
  ws_buf_t s = {0};
  ws_conn_t c;
  run_t r;
  size_t n = 100000, hl, room = 0, off;
  uint8_t *big = malloc(n), *p, *first;
  for (off = 0; off < n; off++) big[off] = (uint8_t)(off * 7);

  memset(&r, 0, sizeof r);
  ws_conn_init(&c, WS_ROLE_SERVER, on_event, &r);
  r.c = &c;
  /* Nothing to offer outside a payload. */
  CHECK(ws_conn_recv_buf(&c, 1, 0, &room) == NULL);

  /* A 100000-byte binary frame: the header and 1000 bytes first. */
  put_frame(&s, 0x82, big, n, 1);
  hl = WS_BUF_SIZE(&s) - n;
  CHECK_EQ_INT(ws_conn_feed(&c, WS_BUF_PTR(&s), hl + 1000), hl + 1000);
  CHECK(ws_conn_recv_buf(&c, n, 0, &room) == NULL); /* under `min` */
  first = ws_conn_recv_buf(&c, 4096, 10, &room);
  CHECK(first != NULL && room == n - 1000 + 10);
  /* The rest in pieces, each where the parser asks for it. */
  off = hl + 1000;
  while (off < WS_BUF_SIZE(&s)) {
    size_t k;
    p = ws_conn_recv_buf(&c, 1, 0, &room);
    CHECK(p != NULL && room == WS_BUF_SIZE(&s) - off);
    /* Nothing was appended: the buffer never moved. */
    CHECK(p == first + (off - hl - 1000));
    if (!p) break;
    k = room < 30000 ? room : 30000;
    memcpy(p, WS_BUF_PTR(&s) + off, k);
    CHECK_EQ_INT(ws_conn_feed(&c, p, k), k);
    off += k;
  }
  CHECK(r.nev == 1 && is_msg(&r, 0, WS_OP_BINARY, big, n));
  CHECK(c.msg.data == NULL); /* released after delivery */
  CHECK(ws_conn_recv_buf(&c, 1, 0, &room) == NULL);
  ws_buf_free(&s);

  /* A header alone: room for at most 256 KiB ahead, not the whole
   * announced length. */
  {
    uint8_t hdr[WS_MAX_HEADER], key[4] = {1, 2, 3, 4};
    size_t h2 = ws_frame_write_header(hdr, 1, 0, WS_OP_BINARY, key,
                                      (uint64_t)1 << 30);
    CHECK_EQ_INT(ws_conn_feed(&c, hdr, h2), h2);
  }
  p = ws_conn_recv_buf(&c, 1, 0, &room);
  CHECK(p != NULL && room >= 4096 && room <= 256 * 1024);
  ws_conn_free(&c);
  run_free(&r);

  /* Control frames are never offered. */
  memset(&r, 0, sizeof r);
  ws_conn_init(&c, WS_ROLE_SERVER, on_event, &r);
  r.c = &c;
  put_frame(&s, 0x89, "0123456789", 10, 1);
  CHECK_EQ_INT(ws_conn_feed(&c, WS_BUF_PTR(&s), 8), 8);
  CHECK(ws_conn_recv_buf(&c, 1, 0, &room) == NULL);
  ws_conn_free(&c);
  run_free(&r);
  ws_buf_free(&s);
  free(big);
}

/* ws_conn_direct_header agrees with what ws_conn_send would queue. */
TEST(direct_header) {
  ws_conn_t c;
  uint8_t hdr[WS_MAX_HEADER];
  static const size_t lens[] = {0, 1, 125, 126, 127, 65535, 65536, 100000};
  size_t i;
  uint8_t *big = calloc(1, 100000);

  ws_conn_init(&c, WS_ROLE_SERVER, NULL, NULL);
  for (i = 0; i < sizeof lens / sizeof lens[0]; i++) {
    size_t hl = ws_conn_direct_header(&c, WS_OP_TEXT, lens[i], 0, hdr);
    CHECK_EQ_INT(ws_conn_send(&c, WS_OP_TEXT, big, lens[i]), WS_CONN_OK);
    CHECK(hl >= 2 && WS_BUF_SIZE(&c.out) == hl + lens[i]);
    CHECK_MEM(WS_BUF_PTR(&c.out), hdr, hl);
    ws_buf_consume(&c.out, WS_BUF_SIZE(&c.out));
  }
  CHECK(ws_conn_direct_header(&c, WS_OP_BINARY, 5, WS_SEND_NO_COMPRESS,
                              hdr) == 2 && hdr[0] == 0x82 && hdr[1] == 5);
  /* Control frames, continuations and bad flags go the usual way. */
  CHECK_EQ_INT(ws_conn_direct_header(&c, WS_OP_PING, 5, 0, hdr), 0);
  CHECK_EQ_INT(ws_conn_direct_header(&c, WS_OP_CONT, 5, 0, hdr), 0);
  CHECK_EQ_INT(ws_conn_direct_header(&c, WS_OP_TEXT, 5, 8, hdr), 0);
  CHECK_EQ_INT(ws_conn_close(&c, 1000, NULL, 0), WS_CONN_OK);
  CHECK_EQ_INT(ws_conn_direct_header(&c, WS_OP_TEXT, 5, 0, hdr), 0);
  ws_conn_free(&c);
  /* A client masks: never direct. */
  ws_conn_init(&c, WS_ROLE_CLIENT, NULL, NULL);
  CHECK_EQ_INT(ws_conn_direct_header(&c, WS_OP_TEXT, 5, 0, hdr), 0);
  ws_conn_free(&c);
  free(big);
}

/* Sending from inside the callback, as an echo server does, with the
 * message data as the payload. */
static void echo_cb(void *ud, const ws_event_t *e) {
  ws_conn_t *c = ud;
  if (e->type == WS_EV_MESSAGE) ws_conn_send(c, e->opcode, e->data, e->len);
}

TEST(echo_from_callback) {
  ws_buf_t s = {0};
  ws_conn_t c;
  ws_conn_init(&c, WS_ROLE_SERVER, echo_cb, &c);
  put_frame(&s, 0x81, "abc", 3, 1);
  put_frame(&s, 0x02, "de", 2, 1);
  put_frame(&s, 0x80, "f", 1, 1);
  CHECK_EQ_INT(ws_conn_feed(&c, WS_BUF_PTR(&s), WS_BUF_SIZE(&s)),
               WS_BUF_SIZE(&s));
  CHECK_EQ_INT(WS_BUF_SIZE(&c.out), 10);
  CHECK_MEM(WS_BUF_PTR(&c.out), "\x81\x03" "abc\x82\x03" "def", 10);
  CHECK(!WS_CONN_DONE(&c));
  ws_conn_free(&c);
  ws_buf_free(&s);
}

/* A transport that holds messages back, as uvws does to resume a
 * handler once per read: it keeps them on WS_EV_MESSAGE and echoes them
 * all on WS_EV_MARK (and when the feed is over).  `close_on_mark` makes it
 * send its own Close at the first mark instead. */
typedef struct hold {
  ws_conn_t *c;
  ws_buf_t held;   /* opcode byte, 4-byte length, data; in order */
  int marks, close_on_mark;
  int types[16];
  size_t ntypes;
} hold_t;

static void hold_release(hold_t *h) {
  size_t i = 0;
  while (i < WS_BUF_SIZE(&h->held)) {
    const uint8_t *p = WS_BUF_PTR(&h->held) + i;
    uint32_t n;
    memcpy(&n, p + 1, 4);
    ws_conn_send(h->c, p[0], p + 5, n);
    i += 5 + n;
  }
  h->held.off = h->held.len = 0;
}

static void hold_cb(void *ud, const ws_event_t *e) {
  hold_t *h = ud;
  if (h->ntypes < 16) h->types[h->ntypes++] = e->type;
  if (e->type == WS_EV_MESSAGE) {
    uint8_t op = (uint8_t)e->opcode;
    uint32_t n = (uint32_t)e->len;
    ws_buf_append(&h->held, &op, 1, 0);
    ws_buf_append(&h->held, &n, 4, 0);
    ws_buf_append(&h->held, e->data, e->len, 0);
  } else if (e->type == WS_EV_MARK) {
    h->marks++;
    if (h->close_on_mark && !h->c->close_sent)
      CHECK_EQ_INT(ws_conn_close(h->c, 1001, "bye", 3), WS_CONN_OK);
    else
      hold_release(h);
  }
}

/* Feeds a copy of s to a server connection with the holding transport;
 * returns the frames it queued, unmasked, in r. */
static void hold_run(const ws_buf_t *s, int marks, int close_on_mark,
                     hold_t *h, run_t *r) {
  ws_conn_t c;
  memset(h, 0, sizeof *h);
  memset(r, 0, sizeof *r);
  h->c = &c;
  h->close_on_mark = close_on_mark;
  ws_conn_init(&c, WS_ROLE_SERVER, hold_cb, h);
  c.marks = (uint8_t)marks;
  /* A copy: feeding unmasks in place. */
  uint8_t *in = malloc(WS_BUF_SIZE(s));
  memcpy(in, WS_BUF_PTR(s), WS_BUF_SIZE(s));
  ws_conn_feed(&c, in, WS_BUF_SIZE(s));
  free(in);
  if (!c.close_sent) hold_release(h); /* the end of the read */
  take_out(r, &c);
  ws_buf_free(&h->held);
  ws_conn_free(&c);
}

TEST(marks_before_control_frames) {
  ws_buf_t s = {0};
  hold_t h;
  run_t r;
  uint8_t want[64];
  size_t n = 0;

  /* Messages, a ping, a message, the peer's Close: with marks the answers
   * come out in the order of the input, as from a transport that handles
   * each message when it comes. */
  put_frame(&s, 0x81, "a", 1, 1);
  put_frame(&s, 0x82, "bc", 2, 1);
  put_frame(&s, 0x89, "p", 1, 1);
  put_frame(&s, 0x81, "d", 1, 1);
  put_close(&s, 1000, "", 0, 1);
  hold_run(&s, 1, 0, &h, &r);
  memcpy(want + n, "\x81\x01" "a", 3), n += 3;
  memcpy(want + n, "\x82\x02" "bc", 4), n += 4;
  memcpy(want + n, "\x8a\x01" "p", 3), n += 3;
  memcpy(want + n, "\x81\x01" "d", 3), n += 3;
  memcpy(want + n, "\x88\x02\x03\xe8", 4), n += 4;
  CHECK_EQ_INT(r.out_len, n);
  CHECK_MEM(r.out, want, n);
  CHECK_EQ_INT(h.marks, 2);
  CHECK_EQ_INT(h.ntypes, 7);
  CHECK(h.types[2] == WS_EV_MARK && h.types[3] == WS_EV_PING &&
        h.types[5] == WS_EV_MARK && h.types[6] == WS_EV_CLOSE);
  run_free(&r);

  /* Without marks (the default) there are none, and the held echoes come
   * after the pong and the Close: nothing goes out after a Close, so they
   * are lost.  That is what marks are for. */
  hold_run(&s, 0, 0, &h, &r);
  CHECK_EQ_INT(h.marks, 0);
  CHECK_EQ_INT(h.ntypes, 5);
  CHECK_EQ_INT(r.nframes, 2);
  CHECK_MEM(r.out, "\x8a\x01" "p" "\x88\x02\x03\xe8", 7);
  run_free(&r);

  /* A failure marks before its Close: the echo goes first. */
  s.off = s.len = 0;
  put_frame(&s, 0x81, "a", 1, 1);
  put_frame(&s, 0x83, "x", 1, 1); /* reserved opcode */
  hold_run(&s, 1, 0, &h, &r);
  CHECK_EQ_INT(r.nframes, 2);
  CHECK_MEM(r.out, "\x81\x01" "a", 3);
  CHECK_EQ_INT(r.close_code, 1002);
  CHECK(h.ntypes == 3 && h.types[1] == WS_EV_MARK &&
        h.types[2] == WS_EV_FAIL);
  run_free(&r);

  /* The transport may close at a mark: the ping then gets no pong, and the
   * peer's Close no echo (it answers ours). */
  s.off = s.len = 0;
  put_frame(&s, 0x89, "p", 1, 1);
  put_close(&s, 1000, "", 0, 1);
  hold_run(&s, 1, 1, &h, &r);
  CHECK_EQ_INT(r.nframes, 1);
  CHECK_EQ_INT(r.nclose, 1);
  CHECK_EQ_INT(r.close_code, 1001);
  CHECK(h.ntypes == 4 && h.types[1] == WS_EV_PING &&
        h.types[3] == WS_EV_CLOSE);
  run_free(&r);

  /* ... and a failure then queues no second Close. */
  s.off = s.len = 0;
  put_frame(&s, 0x83, "x", 1, 1);
  hold_run(&s, 1, 1, &h, &r);
  CHECK_EQ_INT(r.nclose, 1);
  CHECK_EQ_INT(r.close_code, 1001);
  CHECK(h.ntypes == 2 && h.types[1] == WS_EV_FAIL);
  run_free(&r);
  ws_buf_free(&s);
}

int main(void) {
  RUN(rfc_unmasked_hello);
  RUN(rfc_masked_hello);
  RUN(rfc_fragmented);
  RUN(rfc_ping_pong);
  RUN(rfc_256_binary);
  RUN(rfc_64k_binary);
  RUN(many_frames_in_one_stream);
  RUN(control_frames_between_fragments);
  RUN(empty_messages);
  RUN(control_frame_sizes);
  RUN(protocol_failures);
  RUN(failure_after_messages);
  RUN(close_codes);
  RUN(close_empty_and_reasons);
  RUN(nothing_after_close);
  RUN(data_after_close_sent);
  RUN(text_utf8_in_fragments);
  RUN(utf8_fails_fast);
  RUN(rsv1_message);
  RUN(limits);
  RUN(zero_copy_and_buffers);
  RUN(client_sends_masked);
  RUN(server_sends_unmasked);
  RUN(send_errors);
  RUN(echo_from_callback);
  RUN(small_frame_fast_path);
  RUN(recv_buf_direct);
  RUN(direct_header);
  RUN(marks_before_control_frames);
  return TEST_REPORT();
}
