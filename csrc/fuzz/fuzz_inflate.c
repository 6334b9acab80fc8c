/*
 * libFuzzer target for ws_deflate's bounded inflate (RFC 7692 §7.2.2), and
 * on one bit a compress/inflate round trip.
 *
 * Input: byte 0 picks the window bits (bits 0-2, plus 8), no context
 * takeover (bit 3), one byte at a time (bit 4) and round-trip mode (bit 5);
 * byte 1 the output limit (0: none, else byte * 257); byte 2 where the rest
 * is cut into two messages and the seed of the chunk sizes.
 *
 * Inflate mode: the two messages go to two decompressors, one fed each
 * message in a single call and one in chunks.  Neither gives more than
 * limit + 1 bytes, ws_deflate_last_out() adds up, no zlib memory is left
 * after an error, and the bytes agree up to where either stopped.  With
 * window 15 the results must be identical; with a smaller window, data that
 * refers further back than the window may fail in chunks and pass in one
 * call (zlib checks a distance only against what it still holds, which in
 * one call includes the whole output), so only valid data (round-trip
 * mode) must agree there.
 * Round-trip mode: the two messages are compressed and must inflate back.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Icsrc \
 *     csrc/fuzz/fuzz_inflate.c csrc/ws_deflate.c csrc/ws_buf.c \
 *     csrc/ws_http.c -lz -o fuzz_inflate
 *   ./fuzz_inflate csrc/fuzz/corpus/inflate
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ws_deflate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)       \
  do {                 \
    if (!(x)) abort(); \
  } while (0)

static uint32_t next(uint32_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 17;
  *s ^= *s << 5;
  return *s;
}

/* Feeds p[0..n) in chunks (1 byte each when bytewise), sometimes with
 * empty chunks and an empty final one.  Returns the result. */
static int feed_chunked(ws_deflate_t *d, const uint8_t *p, size_t n,
                        ws_buf_t *out, size_t limit, int bytewise,
                        uint32_t *seed) {
  size_t i = 0, sum = 0, before = WS_BUF_SIZE(out);
  int empty_fin = (int)(next(seed) & 1), r = 0;
  while (i < n) {
    size_t k = bytewise ? 1 : 1 + next(seed) % 64;
    int fin;
    if (k > n - i) k = n - i;
    fin = i + k == n && !empty_fin;
    r = ws_deflate_inflate(d, p + i, k, fin, out, limit);
    sum += ws_deflate_last_out(d);
    if (r != 0) break;
    if ((next(seed) & 7) == 0) {
      r = ws_deflate_inflate(d, NULL, 0, 0, out, limit);
      CHECK(r == 0 && ws_deflate_last_out(d) == 0);
    }
    i += k;
  }
  if (r == 0 && (empty_fin || n == 0)) {
    r = ws_deflate_inflate(d, NULL, 0, 1, out, limit);
    sum += ws_deflate_last_out(d);
  }
  CHECK(sum == WS_BUF_SIZE(out) - before);
  return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  ws_deflate_config_t cfg;
  ws_deflate_params_t p;
  ws_deflate_t *one, *chunked;
  size_t limit, n, cut, base;
  const uint8_t *rest;
  uint32_t seed;
  int bits, no_ctx, bytewise, roundtrip, m;

  if (size < 3) return 0;
  bits = 8 + (data[0] & 7);
  no_ctx = (data[0] >> 3) & 1;
  bytewise = (data[0] >> 4) & 1;
  roundtrip = (data[0] >> 5) & 1;
  limit = (size_t)data[1] * 257;
  rest = data + 3;
  n = size - 3;
  cut = n * data[2] / 256;
  seed = 0x9e3779b9u ^ data[2] ^ ((uint32_t)size << 8);

  ws_deflate_config_default(&cfg, 1);
  cfg.threshold = 0;
  p.server_no_context_takeover = (uint8_t)no_ctx;
  p.client_no_context_takeover = (uint8_t)no_ctx;
  p.server_max_window_bits = (uint8_t)bits;
  p.client_max_window_bits = (uint8_t)bits;
  one = ws_deflate_new(&cfg, &p, 1);      /* inflates with bits */
  chunked = ws_deflate_new(&cfg, &p, 0);  /* inflates with bits too */
  CHECK(one && chunked);
  base = ws_deflate_memory(one);

  for (m = 0; m < 2; m++) {
    const uint8_t *msg = m == 0 ? rest : rest + cut;
    size_t len = m == 0 ? cut : n - cut;
    ws_buf_t a = {0}, b = {0};
    int ra, rb;

    if (roundtrip) {
      /* The server side compresses, the client side inflates. */
      ws_buf_t z = {0};
      CHECK(ws_deflate_compress(one, msg, len, &z) == 0);
      rb = feed_chunked(chunked, WS_BUF_PTR(&z), WS_BUF_SIZE(&z), &b, 0,
                        bytewise, &seed);
      CHECK(rb == 0);
      CHECK(WS_BUF_SIZE(&b) == len);
      CHECK(len == 0 || memcmp(WS_BUF_PTR(&b), msg, len) == 0);
      ws_buf_free(&z);
      ws_buf_free(&b);
      continue;
    }

    ra = ws_deflate_inflate(one, msg, len, 1, &a, limit);
    CHECK(ws_deflate_last_out(one) == WS_BUF_SIZE(&a));
    rb = feed_chunked(chunked, msg, len, &b, limit, bytewise, &seed);
    CHECK(ra == 0 || ra == WS_DEFLATE_EDATA || ra == WS_DEFLATE_ETOOBIG);
    CHECK(rb == 0 || rb == WS_DEFLATE_EDATA || rb == WS_DEFLATE_ETOOBIG);
    if (bits == 15) CHECK(ra == rb);
    if (limit) {
      CHECK(WS_BUF_SIZE(&a) <= limit + 1);
      CHECK(WS_BUF_SIZE(&b) <= limit + 1);
      CHECK(a.cap <= limit + 1 && b.cap <= limit + 1);
      if (ra == 0) CHECK(WS_BUF_SIZE(&a) <= limit);
    }
    if (ra == 0 && rb == 0) {
      CHECK(WS_BUF_SIZE(&a) == WS_BUF_SIZE(&b));
      CHECK(WS_BUF_SIZE(&a) == 0 ||
            memcmp(WS_BUF_PTR(&a), WS_BUF_PTR(&b), WS_BUF_SIZE(&a)) == 0);
    } else {
      /* The same bytes came out before the error, give or take what the
       * last call had produced when it stopped. */
      size_t k = WS_BUF_SIZE(&a) < WS_BUF_SIZE(&b) ? WS_BUF_SIZE(&a)
                                                   : WS_BUF_SIZE(&b);
      CHECK(k == 0 || memcmp(WS_BUF_PTR(&a), WS_BUF_PTR(&b), k) == 0);
      if (ra != 0) CHECK(ws_deflate_memory(one) == base);
      if (rb != 0) CHECK(ws_deflate_memory(chunked) == base);
    }
    if (no_ctx) CHECK(ws_deflate_memory(one) == base);
    ws_buf_free(&a);
    ws_buf_free(&b);
    if (ra != 0 || rb != 0) break; /* the connection would be failed */
  }
  ws_deflate_free(one);
  ws_deflate_free(chunked);
  return 0;
}
