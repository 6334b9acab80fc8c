/*
 * libFuzzer target for ws_conn (and through it ws_frame and ws_utf8).
 *
 * The first four input bytes configure the run:
 *   byte 0: bit 0 role (client if set), bit 1 RSV1 negotiated, bit 2 this
 *           side sends a Close before feeding, bits 3-4 frame limit (none,
 *           16, 200, 70000), bits 5-6 message limit (none, 16, 300, 70000);
 *           bit 7: the chunked run receives straight into the message
 *           buffer wherever ws_conn_recv_buf offers it, as the transport
 *           does for large payloads;
 *   bytes 1-3: chunk sizes, cycled (0 means "one byte"); the low bit of
 *           byte 1 also turns WS_EV_MARK events on, at each of which the
 *           callback sends a one-byte message (as a transport that holds
 *           messages back hands them over there).
 * The rest is fed as received bytes, once in those chunks and once whole.
 * Checked: the two runs give the same events and the same bytes to send
 * (after unmasking); no event follows CLOSE or FAIL and feeding then
 * consumes nothing; every event is well-formed (text is valid UTF-8,
 * lengths are within the limits, close codes are valid, failures use the
 * codes of §7.4.1); `out` holds well-formed frames with the role's masking
 * and at most one Close.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Icsrc \
 *     csrc/fuzz/fuzz_conn.c csrc/ws_conn.c csrc/ws_frame.c csrc/ws_utf8.c \
 *     csrc/ws_buf.c -lcrypto -o fuzz_conn
 *   ./fuzz_conn -dict=csrc/fuzz/frame.dict csrc/fuzz/corpus/conn
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ws_conn.h"
#include "ws_utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)       \
  do {                 \
    if (!(x)) abort(); \
  } while (0)

typedef struct rec {
  ws_conn_t *c;
  ws_buf_t log; /* the events, serialized */
  int ended;
  int failed_ev, closed_ev;
} rec_t;

static void log_bytes(rec_t *r, const void *p, size_t n) {
  CHECK(ws_buf_append(&r->log, p, n, 0) == 0);
}

static void on_event(void *ud, const ws_event_t *e) {
  rec_t *r = ud;
  const ws_conn_t *c = r->c;
  uint64_t len = e->len;
  int32_t head[3];

  /* Nothing after the end. */
  CHECK(!r->ended);
  CHECK(e->len == 0 || e->data != NULL);
  switch (e->type) {
  case WS_EV_MESSAGE:
    CHECK(e->opcode == WS_OP_TEXT || e->opcode == WS_OP_BINARY);
    if (e->opcode == WS_OP_TEXT && !(c->msg_rsv & WS_RSV1))
      CHECK(ws_utf8_valid(e->data, e->len));
    if (c->lim->max_message_size) CHECK(e->len <= c->lim->max_message_size);
    break;
  case WS_EV_PING:
  case WS_EV_PONG:
    CHECK(e->len <= WS_MAX_CONTROL);
    break;
  case WS_EV_CLOSE:
    CHECK(e->code == 1005 || ws_close_code_valid(e->code));
    CHECK(e->len <= WS_MAX_CONTROL - 2);
    CHECK(e->code != 1005 || e->len == 0);
    CHECK(ws_utf8_valid(e->data, e->len));
    CHECK(c->close_received && c->close_sent && !c->failed);
    r->ended = 1;
    r->closed_ev = 1;
    break;
  case WS_EV_FAIL:
    CHECK(e->code == 1002 || e->code == 1007 || e->code == 1009 ||
          e->code == 1011);
    CHECK(e->reason && e->reason[0]);
    CHECK(c->failed && c->close_sent);
    r->ended = 1;
    r->failed_ev = 1;
    break;
  case WS_EV_MARK:
    CHECK(c->marks && !c->failed);
    if (!c->close_sent)
      CHECK(ws_conn_send(r->c, WS_OP_BINARY, "m", 1) == WS_CONN_OK);
    break;
  default:
    CHECK(0);
  }
  head[0] = e->type;
  head[1] = e->opcode;
  head[2] = e->code;
  log_bytes(r, head, sizeof head);
  log_bytes(r, &len, sizeof len);
  if (e->len) log_bytes(r, e->data, e->len);
  if (e->reason) log_bytes(r, e->reason, strlen(e->reason));
}

/* Checks the frames in out and appends them, unmasked, to norm. */
static void check_out(const ws_conn_t *c, ws_buf_t *norm) {
  const uint8_t *p = c->out.data ? WS_BUF_PTR(&c->out) : NULL;
  size_t n = WS_BUF_SIZE(&c->out), i = 0;
  int closes = 0;
  while (i < n) {
    ws_frame_header_t h;
    uint8_t hdr[WS_MAX_HEADER];
    int hl = ws_frame_parse_header(p + i, n - i, &h);
    size_t nh, at;
    CHECK(hl > 0);
    CHECK(h.len <= n - i - (size_t)hl);
    CHECK(h.masked == (c->role == WS_ROLE_CLIENT));
    CHECK(h.fin && h.rsv == 0);
    CHECK(h.opcode == WS_OP_PONG || h.opcode == WS_OP_CLOSE ||
          (c->marks && h.opcode == WS_OP_BINARY && h.len == 1));
    CHECK(closes == 0); /* nothing after a Close */
    if (h.opcode == WS_OP_CLOSE) {
      closes++;
      CHECK(h.len != 1 && h.len <= WS_MAX_CONTROL);
    }
    nh = ws_frame_write_header(hdr, 1, 0, h.opcode, NULL, h.len);
    CHECK(ws_buf_append(norm, hdr, nh, 0) == 0);
    at = norm->len;
    CHECK(ws_buf_append(norm, p + i + hl, (size_t)h.len, 0) == 0);
    if (h.masked) ws_mask(norm->data + at, (size_t)h.len, h.mask, 0);
    if (h.opcode == WS_OP_CLOSE && h.len >= 2) {
      const uint8_t *q = norm->data + at;
      CHECK(ws_close_code_valid((q[0] << 8) | q[1]));
      CHECK(ws_utf8_valid(q + 2, (size_t)h.len - 2));
    }
    i += (size_t)hl + (size_t)h.len;
  }
  CHECK(closes == (c->close_sent ? 1 : 0));
}

static void setup(ws_conn_t *c, rec_t *r, uint8_t cfg, int marks) {
  /* Frame limit (bits 3-4) by message limit (bits 5-6). */
  static const ws_limits_t limits[16] = {
      {0, 0, 0},     {0, 16, 0},     {0, 200, 0},     {0, 70000, 0},
      {16, 0, 0},    {16, 16, 0},    {16, 200, 0},    {16, 70000, 0},
      {300, 0, 0},   {300, 16, 0},   {300, 200, 0},   {300, 70000, 0},
      {70000, 0, 0}, {70000, 16, 0}, {70000, 200, 0}, {70000, 70000, 0}};
  memset(r, 0, sizeof *r);
  ws_conn_init(c, (cfg & 1) ? WS_ROLE_CLIENT : WS_ROLE_SERVER, on_event, r);
  r->c = c;
  c->rsv_allowed = (cfg & 2) ? WS_RSV1 : 0;
  c->lim = &limits[(cfg >> 3) & 15];
  if (cfg & 4) CHECK(ws_conn_close(c, 1001, "going", 5) == WS_CONN_OK);
  c->marks = (uint8_t)marks;
}

/* Feeds in[0..n) in the given chunk sizes (one chunk if nsizes is 0) and
 * returns the bytes consumed. */
static size_t feed(ws_conn_t *c, rec_t *r, const uint8_t *in, size_t n,
                   const uint8_t *sizes, size_t nsizes, int direct) {
  size_t off = 0, k = 0, total = 0;
  while (off < n) {
    size_t len = nsizes ? sizes[k++ % nsizes] : n;
    uint8_t *chunk, *dst;
    size_t got, room;
    int ended = r->ended;
    if (len == 0) len = 1;
    if (len > n - off) len = n - off;
    if (direct && (dst = ws_conn_recv_buf(c, 1, 2, &room)) != NULL) {
      /* Receive into the message buffer; feed the payload part in place
       * and what lies beyond it from a copy, after. */
      size_t pay, extra;
      CHECK(room > 0 && room <= c->remaining + 2);
      if (len > room) len = room;
      memcpy(dst, in + off, len);
      pay = len < c->remaining ? len : (size_t)c->remaining;
      extra = len - pay;
      chunk = malloc(extra ? extra : 1);
      CHECK(chunk);
      memcpy(chunk, dst + pay, extra);
      got = ws_conn_feed(c, dst, pay);
      CHECK(got <= pay);
      if (got < pay) CHECK(c->failed || c->close_received);
      if (ended) CHECK(got == 0);
      total += got;
      if (extra) {
        ended = r->ended;
        got = ws_conn_feed(c, chunk, extra);
        CHECK(got <= extra);
        if (got < extra) CHECK(c->failed || c->close_received);
        if (ended) CHECK(got == 0);
        total += got;
      }
      free(chunk);
      off += len;
      continue;
    }
    /* A copy of exactly the chunk, so an over-read is caught. */
    chunk = malloc(len);
    CHECK(chunk);
    memcpy(chunk, in + off, len);
    got = ws_conn_feed(c, chunk, len);
    free(chunk);
    CHECK(got <= len);
    if (got < len) CHECK(c->failed || c->close_received);
    if (ended) CHECK(got == 0);
    total += got;
    off += len;
  }
  {
    uint8_t none[1] = {0};
    CHECK(ws_conn_feed(c, none, 0) == 0);
  }
  CHECK(c->failed == r->failed_ev);
  CHECK(c->close_received == r->closed_ev);
  CHECK(!(c->failed && c->close_received));
  return total;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  ws_conn_t c1, c2;
  rec_t r1, r2;
  ws_buf_t n1 = {0}, n2 = {0};
  size_t got1, got2;
  const uint8_t *in;
  size_t n;
  int send_r;

  if (size < 4) return 0;
  in = data + 4;
  n = size - 4;

  setup(&c1, &r1, data[0], data[1] & 1);
  got1 = feed(&c1, &r1, in, n, data + 1, 3, data[0] >> 7);
  setup(&c2, &r2, data[0], data[1] & 1);
  got2 = feed(&c2, &r2, in, n, NULL, 0, 0);

  /* The split does not matter, except for where a failure stops. */
  CHECK(WS_BUF_SIZE(&r1.log) == WS_BUF_SIZE(&r2.log));
  CHECK(WS_BUF_SIZE(&r1.log) == 0 ||
        memcmp(WS_BUF_PTR(&r1.log), WS_BUF_PTR(&r2.log),
               WS_BUF_SIZE(&r1.log)) == 0);
  if (!c1.failed) CHECK(got1 == got2);
  if (!c1.failed && !c1.close_received) CHECK(got1 == n);
  CHECK(c1.failed == c2.failed && c1.close_sent == c2.close_sent &&
        c1.close_received == c2.close_received);
  check_out(&c1, &n1);
  check_out(&c2, &n2);
  CHECK(WS_BUF_SIZE(&n1) == WS_BUF_SIZE(&n2));
  CHECK(WS_BUF_SIZE(&n1) == 0 ||
        memcmp(WS_BUF_PTR(&n1), WS_BUF_PTR(&n2), WS_BUF_SIZE(&n1)) == 0);

  /* Sending works until a Close was sent, then is refused. */
  send_r = ws_conn_send(&c1, WS_OP_BINARY, in, n);
  CHECK(send_r == (c1.close_sent ? WS_CONN_ECLOSED : WS_CONN_OK));
  send_r = ws_conn_send(&c1, WS_OP_PING, in, n);
  if (c1.close_sent)
    CHECK(send_r == WS_CONN_ECLOSED);
  else
    CHECK(send_r == (n <= WS_MAX_CONTROL ? WS_CONN_OK : WS_CONN_EINVAL));

  ws_conn_free(&c1);
  ws_conn_free(&c2);
  ws_buf_free(&r1.log);
  ws_buf_free(&r2.log);
  ws_buf_free(&n1);
  ws_buf_free(&n2);
  return 0;
}
