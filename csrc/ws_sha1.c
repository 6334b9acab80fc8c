#include "ws_sha1.h"

#include <string.h>

static uint32_t rol(uint32_t x, int n) {
  return (x << n) | (x >> (32 - n));
}

static uint32_t load_be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
         (uint32_t)p[3];
}

/* FIPS 180-4 §6.1.2: one 512-bit block.  The schedule is expanded first;
 * the rounds go five at a time, each naming the working variables in
 * their rotated order instead of moving them, and each 20-round stage
 * has its own loop, so no round tests which stage it is in. */
#define R(a, b, c, d, e, f, k, i)                \
  do {                                           \
    e += rol(a, 5) + (f) + (k) + w[i];           \
    b = rol(b, 30);                              \
  } while (0)
#define F1(b, c, d) ((d) ^ ((b) & ((c) ^ (d))))
#define F2(b, c, d) ((b) ^ (c) ^ (d))
#define F3(b, c, d) (((b) & (c)) | ((d) & ((b) | (c))))
#define FIVE(F, k, t)                                 \
  do {                                                \
    R(a, b, c, d, e, F(b, c, d), k, (t));             \
    R(e, a, b, c, d, F(a, b, c), k, (t) + 1);         \
    R(d, e, a, b, c, F(e, a, b), k, (t) + 2);         \
    R(c, d, e, a, b, F(d, e, a), k, (t) + 3);         \
    R(b, c, d, e, a, F(c, d, e), k, (t) + 4);         \
  } while (0)

static void compress(uint32_t h[5], const uint8_t *block) {
  uint32_t w[80];
  int t;
  for (t = 0; t < 16; t++) w[t] = load_be32(block + 4 * t);
  for (; t < 80; t++) w[t] = rol(w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16], 1);
  uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
  for (t = 0; t < 20; t += 5) FIVE(F1, 0x5a827999u, t);
  for (; t < 40; t += 5) FIVE(F2, 0x6ed9eba1u, t);
  for (; t < 60; t += 5) FIVE(F3, 0x8f1bbcdcu, t);
  for (; t < 80; t += 5) FIVE(F2, 0xca62c1d6u, t);
  h[0] += a;
  h[1] += b;
  h[2] += c;
  h[3] += d;
  h[4] += e;
}

#undef FIVE
#undef F3
#undef F2
#undef F1
#undef R

void ws_sha1_init(ws_sha1_t *s) {
  s->h[0] = 0x67452301u;
  s->h[1] = 0xefcdab89u;
  s->h[2] = 0x98badcfeu;
  s->h[3] = 0x10325476u;
  s->h[4] = 0xc3d2e1f0u;
  s->len = 0;
}

void ws_sha1_update(ws_sha1_t *s, const void *data, size_t n) {
  const uint8_t *p = data;
  size_t used = (size_t)(s->len & 63);
  s->len += n;
  if (used) {
    size_t take = 64 - used < n ? 64 - used : n;
    memcpy(s->block + used, p, take);
    p += take;
    n -= take;
    if (used + take < 64) return;
    compress(s->h, s->block);
  }
  for (; n >= 64; p += 64, n -= 64) compress(s->h, p);
  if (n) memcpy(s->block, p, n);
}

/* §5.1.1: a 1 bit, zeros up to 56 mod 64, the length in bits. */
void ws_sha1_final(ws_sha1_t *s, uint8_t out[WS_SHA1_LEN]) {
  uint64_t bits = s->len * 8;
  size_t used = (size_t)(s->len & 63);
  s->block[used++] = 0x80;
  if (used > 56) {
    memset(s->block + used, 0, 64 - used);
    compress(s->h, s->block);
    used = 0;
  }
  memset(s->block + used, 0, 56 - used);
  for (int i = 0; i < 8; i++) s->block[56 + i] = (uint8_t)(bits >> (56 - 8 * i));
  compress(s->h, s->block);
  for (int i = 0; i < 5; i++) {
    out[4 * i] = (uint8_t)(s->h[i] >> 24);
    out[4 * i + 1] = (uint8_t)(s->h[i] >> 16);
    out[4 * i + 2] = (uint8_t)(s->h[i] >> 8);
    out[4 * i + 3] = (uint8_t)s->h[i];
  }
}
