/*
 * libFuzzer target for ws_utf8.  The first input byte picks a split point;
 * the rest is validated whole, in two parts split there, and one byte at a
 * time, and compared with a slow reference written independently of the
 * validator's table: it decodes by bit patterns and checks which code
 * points the bytes seen so far can still reach.  The one-byte walk must
 * report INVALID exactly at the reference's first impossible byte.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Icsrc \
 *     csrc/fuzz/fuzz_utf8.c csrc/ws_utf8.c -o fuzz_utf8
 *   ./fuzz_utf8
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ws_utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)       \
  do {                 \
    if (!(x)) abort(); \
  } while (0)

/* Returns the index of the first byte at which p[0..n) stops being a prefix
 * of valid UTF-8 (RFC 3629), or n; *complete says whether p ends at a
 * character boundary. */
static size_t ref_first_bad(const uint8_t *p, size_t n, int *complete) {
  static const uint32_t lo_of[5] = {0, 0, 0x80, 0x800, 0x10000};
  static const uint32_t hi_of[5] = {0, 0x7f, 0x7ff, 0xffff, 0x10ffff};
  size_t i = 0;

  *complete = 1;
  while (i < n) {
    uint8_t b = p[i];
    int len, k;
    uint32_t v;
    if (b < 0x80) {
      i++;
      continue;
    }
    if ((b & 0xe0) == 0xc0) {
      len = 2;
      v = b & 0x1f;
    } else if ((b & 0xf0) == 0xe0) {
      len = 3;
      v = b & 0x0f;
    } else if ((b & 0xf8) == 0xf0) {
      len = 4;
      v = b & 0x07;
    } else {
      return i;
    }
    for (k = 1;; k++) {
      /* The code points still reachable after k bytes of this character:
       * the free low bits may take any value. */
      int r = 6 * (len - k);
      uint32_t lo = v << r, hi = lo | ((UINT32_C(1) << r) - 1);
      uint32_t a = lo > lo_of[len] ? lo : lo_of[len];
      uint32_t z = hi < hi_of[len] ? hi : hi_of[len];
      if (a > z || (a >= 0xd800 && z <= 0xdfff)) return i + (size_t)k - 1;
      if (k == len) break;
      if (i + (size_t)k >= n) {
        *complete = 0;
        return n;
      }
      b = p[i + (size_t)k];
      if ((b & 0xc0) != 0x80) return i + (size_t)k;
      v = (v << 6) | (b & 0x3f);
    }
    i += (size_t)len;
  }
  return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const uint8_t *p;
  uint8_t *copy;
  size_t n, cut, i, bad;
  uint32_t s;
  int complete, want, got, r;

  if (size < 1) return 0;
  p = data + 1;
  n = size - 1;
  cut = n ? data[0] % (n + 1) : 0;
  /* A heap copy of exactly n bytes, so an over-read of the word loop is
   * caught. */
  copy = malloc(n ? n : 1);
  CHECK(copy);
  memcpy(copy, p, n);

  bad = ref_first_bad(copy, n, &complete);
  want = bad < n ? WS_UTF8_INVALID
                 : complete ? WS_UTF8_OK : WS_UTF8_INCOMPLETE;

  s = WS_UTF8_INIT;
  got = ws_utf8_validate(&s, copy, n);
  CHECK(got == want);
  CHECK(ws_utf8_valid(copy, n) == (want == WS_UTF8_OK));

  /* Split in two. */
  s = WS_UTF8_INIT;
  r = ws_utf8_validate(&s, copy, cut);
  if (bad < cut)
    CHECK(r == WS_UTF8_INVALID);
  else
    CHECK(r != WS_UTF8_INVALID);
  r = ws_utf8_validate(&s, copy + cut, n - cut);
  CHECK(r == want);

  /* One byte at a time: INVALID first at the reference's index. */
  s = WS_UTF8_INIT;
  r = WS_UTF8_OK;
  for (i = 0; i < n; i++) {
    r = ws_utf8_validate(&s, copy + i, 1);
    if (r == WS_UTF8_INVALID) break;
  }
  CHECK(i == bad);
  CHECK(r == want);

  free(copy);
  return 0;
}
