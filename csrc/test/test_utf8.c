/*
 * Tests of the streaming UTF-8 validator against a slow reference written
 * independently: it decodes by bit patterns and checks the code point
 * range that the bytes so far can still reach, instead of using the byte
 * range table of the validator.
 */
#include <stdint.h>
#include <stdlib.h>

#include "test.h"
#include "ws_utf8.h"

/* Returns the index of the first byte at which p[0..n) stops being a prefix
 * of any valid UTF-8 string, or n if there is none; *complete says whether
 * p ends at a character boundary. */
static size_t ref_first_bad(const uint8_t *p, size_t n, int *complete) {
  static const uint32_t lo_of[5] = {0, 0, 0x80, 0x800, 0x10000};
  static const uint32_t hi_of[5] = {0, 0x7f, 0x7ff, 0xffff, 0x10ffff};
  size_t i = 0;

  *complete = 1;
  while (i < n) {
    uint8_t b = p[i];
    int len, k;
    uint32_t v;
    if (b < 0x80) { i++; continue; }
    if ((b & 0xe0) == 0xc0) { len = 2; v = b & 0x1f; }
    else if ((b & 0xf0) == 0xe0) { len = 3; v = b & 0x0f; }
    else if ((b & 0xf8) == 0xf0) { len = 4; v = b & 0x07; }
    else return i; /* a continuation byte or 11111xxx cannot start */
    for (k = 1;; k++) {
      /* k bytes of this character seen: the code points still reachable
       * are [v << r, (v << r) | (2^r - 1)] with r free bits left. */
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

static int ref_status(const uint8_t *p, size_t n) {
  int complete;
  if (ref_first_bad(p, n, &complete) < n) return WS_UTF8_INVALID;
  return complete ? WS_UTF8_OK : WS_UTF8_INCOMPLETE;
}

static int whole(const uint8_t *p, size_t n) {
  uint32_t s = WS_UTF8_INIT;
  return ws_utf8_validate(&s, p, n);
}

/* Feeds one byte at a time and returns the index of the byte whose call
 * first returned INVALID, or n. */
static size_t bytewise_fail_index(const uint8_t *p, size_t n) {
  uint32_t s = WS_UTF8_INIT;
  size_t i;
  for (i = 0; i < n; i++)
    if (ws_utf8_validate(&s, p + i, 1) == WS_UTF8_INVALID) return i;
  return n;
}

/* The status of p split at every point, and in one-byte calls, must equal
 * the status of the whole. */
static int split_agrees(const uint8_t *p, size_t n) {
  int want = whole(p, n);
  size_t k, i;
  for (k = 0; k <= n; k++) {
    uint32_t s = WS_UTF8_INIT;
    int r1 = ws_utf8_validate(&s, p, k);
    int r2 = ws_utf8_validate(&s, p + k, n - k);
    if (r1 == WS_UTF8_INVALID) r2 = r1;
    if (r2 != want) return 0;
  }
  {
    uint32_t s = WS_UTF8_INIT;
    int r = WS_UTF8_OK;
    for (i = 0; i < n && r != WS_UTF8_INVALID; i++)
      r = ws_utf8_validate(&s, p + i, 1);
    if (n && r != want) return 0;
  }
  return 1;
}

#define S(lit) lit, sizeof(lit) - 1

TEST(empty_input) {
  uint32_t s = WS_UTF8_INIT;
  CHECK_EQ_INT(ws_utf8_validate(&s, NULL, 0), WS_UTF8_OK);
  CHECK(ws_utf8_valid(NULL, 0));
  CHECK_EQ_INT(ws_utf8_validate(&s, (const uint8_t *)"\xe2", 1),
               WS_UTF8_INCOMPLETE);
  CHECK_EQ_INT(ws_utf8_validate(&s, NULL, 0), WS_UTF8_INCOMPLETE);
  CHECK_EQ_INT(ws_utf8_validate(&s, (const uint8_t *)"\x82\xac", 2),
               WS_UTF8_OK);
}

TEST(valid_samples) {
  static const struct { const char *s; size_t n; } v[] = {
    {S("")},
    {S("Hello, world")},
    {S("\x00")},
    {S("\x7f")},
    {S("\xc2\x80")},                 /* U+0080 */
    {S("\xdf\xbf")},                 /* U+07FF */
    {S("\xe0\xa0\x80")},             /* U+0800 */
    {S("\xed\x9f\xbf")},             /* U+D7FF */
    {S("\xee\x80\x80")},             /* U+E000 */
    {S("\xef\xbf\xbd")},             /* U+FFFD */
    {S("\xef\xbf\xbf")},             /* U+FFFF, a noncharacter but valid */
    {S("\xf0\x90\x80\x80")},         /* U+10000 */
    {S("\xf4\x8f\xbf\xbf")},         /* U+10FFFF */
    {S("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5")}, /* kosme */
    {S("Hello-\xc2\xb5@\xc3\x9f\xc3\xb6\xc3\xa4\xc3\xbc\xc3\xa0\xc3\xa1"
       "-UTF-8!!")},
    {S("\xf0\x9f\x98\x80 smile \xf0\x9f\x98\x80")},
  };
  size_t i;
  for (i = 0; i < sizeof v / sizeof v[0]; i++) {
    const uint8_t *p = (const uint8_t *)v[i].s;
    CHECK(ws_utf8_valid(p, v[i].n));
    CHECK_EQ_INT(whole(p, v[i].n), WS_UTF8_OK);
    CHECK_EQ_INT(ref_status(p, v[i].n), WS_UTF8_OK);
    CHECK(split_agrees(p, v[i].n));
  }
}

/* Each invalid class, with the index of the first byte that makes the
 * sequence impossible. */
static const struct {
  const char *s;
  size_t n;
  size_t bad;
} invalid[] = {
  {S("\x80"), 0},                    /* stray continuation */
  {S("\xbf"), 0},
  {S("a\x80"), 1},
  {S("\xc0\x80"), 0},                /* overlong 2-byte lead */
  {S("\xc1\xbf"), 0},
  {S("\xc0"), 0},
  {S("\xe0\x80\x80"), 1},            /* overlong 3-byte */
  {S("\xe0\x9f\xbf"), 1},
  {S("\xed\xa0\x80"), 1},            /* U+D800 */
  {S("\xed\xbf\xbf"), 1},            /* U+DFFF */
  {S("\xed\xa0"), 1},
  {S("\xf0\x80\x80\x80"), 1},        /* overlong 4-byte */
  {S("\xf0\x8f\xbf\xbf"), 1},
  {S("\xf4\x90\x80\x80"), 1},        /* U+110000 */
  {S("\xf4\x90"), 1},
  {S("\xf5\x80\x80\x80"), 0},        /* above U+10FFFF by the lead alone */
  {S("\xf7\xbf\xbf\xbf"), 0},
  {S("\xf8\x88\x80\x80\x80"), 0},    /* 5-byte form */
  {S("\xfc\x84\x80\x80\x80\x80"), 0},
  {S("\xfe"), 0},
  {S("\xff"), 0},
  {S("\xc2\x41"), 1},                /* lead followed by ASCII */
  {S("\xe2\x82\x41"), 2},
  {S("\xf0\x9f\x98\x41"), 3},
  {S("\xc2\xc2\x80"), 1},            /* lead followed by lead */
  {S("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64"
     "\x69\x74\x65\x64"), 12},       /* Autobahn 6.3.1 */
  {S("\xed\xa0\x80\xed\xb0\x80"), 1}, /* paired surrogates */
  {S("\xc0\xaf"), 0},                /* overlong '/' */
  {S("\xe0\x80\xaf"), 1},
  {S("\xf0\x80\x80\xaf"), 1},
  {S("0123456789abcdef0123456789\xff"), 26}, /* after the word path */
};

TEST(invalid_classes) {
  size_t i;
  for (i = 0; i < sizeof invalid / sizeof invalid[0]; i++) {
    const uint8_t *p = (const uint8_t *)invalid[i].s;
    size_t n = invalid[i].n;
    int complete;
    CHECK(!ws_utf8_valid(p, n));
    CHECK_EQ_INT(whole(p, n), WS_UTF8_INVALID);
    CHECK_EQ_INT(ref_first_bad(p, n, &complete), invalid[i].bad);
    CHECK(split_agrees(p, n));
  }
}

TEST(fails_at_first_impossible_byte) {
  size_t i;
  for (i = 0; i < sizeof invalid / sizeof invalid[0]; i++) {
    const uint8_t *p = (const uint8_t *)invalid[i].s;
    size_t n = invalid[i].n, bad = invalid[i].bad;
    uint32_t s = WS_UTF8_INIT;
    CHECK_EQ_INT(bytewise_fail_index(p, n), bad);
    /* The prefix before the bad byte is still fine. */
    CHECK(ws_utf8_validate(&s, p, bad) != WS_UTF8_INVALID);
    /* The prefix through the bad byte is not. */
    s = WS_UTF8_INIT;
    CHECK_EQ_INT(ws_utf8_validate(&s, p, bad + 1), WS_UTF8_INVALID);
  }
}

TEST(incomplete_at_end) {
  static const struct { const char *s; size_t n; } v[] = {
    {S("\xc2")}, {S("\xe2")}, {S("\xe2\x82")}, {S("\xf0")},
    {S("\xf0\x9f")}, {S("\xf0\x9f\x98")}, {S("\xf4\x8f\xbf")},
    {S("abc\xed\x9f")}, {S("\xe0\xa0")},
  };
  size_t i;
  for (i = 0; i < sizeof v / sizeof v[0]; i++) {
    const uint8_t *p = (const uint8_t *)v[i].s;
    CHECK_EQ_INT(whole(p, v[i].n), WS_UTF8_INCOMPLETE);
    CHECK_EQ_INT(ref_status(p, v[i].n), WS_UTF8_INCOMPLETE);
    CHECK(!ws_utf8_valid(p, v[i].n));
    CHECK(split_agrees(p, v[i].n));
  }
}

TEST(invalid_is_sticky) {
  uint32_t s = WS_UTF8_INIT;
  CHECK_EQ_INT(ws_utf8_validate(&s, (const uint8_t *)"\xff", 1),
               WS_UTF8_INVALID);
  CHECK_EQ_INT(ws_utf8_validate(&s, (const uint8_t *)"abc", 3),
               WS_UTF8_INVALID);
  CHECK_EQ_INT(ws_utf8_validate(&s, NULL, 0), WS_UTF8_INVALID);
  /* A state word the validator never produces is not trusted. */
  s = 0xdeadbeefu;
  CHECK_EQ_INT(ws_utf8_validate(&s, (const uint8_t *)"a", 1),
               WS_UTF8_INVALID);
}

/* Every sequence of one, two and three bytes against the reference, both
 * the status and the index of the failing byte. */
TEST(exhaustive_up_to_three_bytes) {
  uint8_t b[3];
  unsigned x;
  long mismatches = 0;
  for (x = 0; x < 256; x++) {
    int c;
    b[0] = (uint8_t)x;
    if (whole(b, 1) != ref_status(b, 1)) mismatches++;
    if (bytewise_fail_index(b, 1) != ref_first_bad(b, 1, &c)) mismatches++;
  }
  for (x = 0; x < 65536; x++) {
    int c;
    b[0] = (uint8_t)(x >> 8);
    b[1] = (uint8_t)x;
    if (whole(b, 2) != ref_status(b, 2)) mismatches++;
    if (bytewise_fail_index(b, 2) != ref_first_bad(b, 2, &c)) mismatches++;
  }
  for (x = 0; x < (1u << 24); x++) {
    int c;
    b[0] = (uint8_t)(x >> 16);
    b[1] = (uint8_t)(x >> 8);
    b[2] = (uint8_t)x;
    if (whole(b, 3) != ref_status(b, 3)) mismatches++;
    /* The one-byte walk is the costly part; it only matters where a
     * multi-byte lead is involved. */
    if (b[0] >= 0xc0 && bytewise_fail_index(b, 3) != ref_first_bad(b, 3, &c))
      mismatches++;
  }
  CHECK_EQ_INT(mismatches, 0);
}

/* Four-byte sequences: every lead that can start one (F0-F4), the first
 * ones that cannot (F5, F8, FF) and a three-byte lead, with every second
 * and third byte and the interesting fourth bytes. */
TEST(four_byte_sweep) {
  static const uint8_t fourth[] = {0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90,
                                   0xbf, 0xc0, 0xc2, 0xf0, 0xff};
  static const uint8_t leads[] = {0xe1, 0xf0, 0xf1, 0xf3, 0xf4,
                                  0xf5, 0xf8, 0xff};
  uint8_t b[4];
  unsigned li, x, k;
  long mismatches = 0, valid = 0;
  for (li = 0; li < sizeof leads; li++) {
    unsigned lead = leads[li];
    for (x = 0; x < 65536; x++) {
      for (k = 0; k < sizeof fourth; k++) {
        int c, w;
        b[0] = (uint8_t)lead;
        b[1] = (uint8_t)(x >> 8);
        b[2] = (uint8_t)x;
        b[3] = fourth[k];
        w = whole(b, 4);
        if (w != ref_status(b, 4)) mismatches++;
        if (bytewise_fail_index(b, 4) != ref_first_bad(b, 4, &c))
          mismatches++;
        if (w == WS_UTF8_OK) valid++;
      }
    }
  }
  CHECK_EQ_INT(mismatches, 0);
  CHECK(valid > 0);
}

/* Every code point encodes to bytes the validator accepts, and every
 * surrogate is refused. */
TEST(all_code_points) {
  uint32_t cp;
  long bad = 0;
  for (cp = 0; cp <= 0x10ffff; cp++) {
    uint8_t b[4];
    size_t n;
    if (cp < 0x80) { b[0] = (uint8_t)cp; n = 1; }
    else if (cp < 0x800) {
      b[0] = (uint8_t)(0xc0 | (cp >> 6));
      b[1] = (uint8_t)(0x80 | (cp & 0x3f));
      n = 2;
    } else if (cp < 0x10000) {
      b[0] = (uint8_t)(0xe0 | (cp >> 12));
      b[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
      b[2] = (uint8_t)(0x80 | (cp & 0x3f));
      n = 3;
    } else {
      b[0] = (uint8_t)(0xf0 | (cp >> 18));
      b[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
      b[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
      b[3] = (uint8_t)(0x80 | (cp & 0x3f));
      n = 4;
    }
    if (ws_utf8_valid(b, n) != !(cp >= 0xd800 && cp <= 0xdfff)) bad++;
  }
  CHECK_EQ_INT(bad, 0);
}

/* The word-at-a-time ASCII path: a non-ASCII byte at every position and
 * every alignment of a long buffer must still be seen. */
TEST(ascii_word_path) {
  uint8_t buf[96 + 16];
  size_t off, pos, len = 96;
  for (off = 0; off < 16; off++) {
    uint8_t *p = buf + off;
    memset(p, 'a', len);
    CHECK_EQ_INT(whole(p, len), WS_UTF8_OK);
    for (pos = 0; pos < len; pos++) {
      memset(p, 'a', len);
      p[pos] = 0x80;
      CHECK_EQ_INT(whole(p, len), WS_UTF8_INVALID);
      CHECK_EQ_INT(bytewise_fail_index(p, len), pos);
      p[pos] = 0xff;
      CHECK_EQ_INT(whole(p, len), WS_UTF8_INVALID);
      if (pos + 2 <= len) {
        /* A valid two-byte character in the middle of ASCII. */
        p[pos] = 0xc3;
        p[pos + 1] = 0xa9;
        CHECK_EQ_INT(whole(p, len), WS_UTF8_OK);
        /* The same, cut short by an ASCII byte. */
        p[pos + 1] = 'a';
        CHECK_EQ_INT(whole(p, len), WS_UTF8_INVALID);
      }
      /* A lead byte last: incomplete, not invalid. */
      memset(p, 'a', len);
      p[len - 1] = 0xe2;
      CHECK_EQ_INT(whole(p, len), WS_UTF8_INCOMPLETE);
    }
  }
}

/* Autobahn section 6: a sample of its cases, by expected status. */
TEST(autobahn_section6_samples) {
  static const struct { const char *s; size_t n; int ok; } v[] = {
    /* 6.5 and 6.6: kosme and its prefixes. */
    {S("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"), 1},
    {S("\xce\xba\xe1\xbd"), 0},
    /* 6.7 first possible sequence of each length. */
    {S("\x00"), 1}, {S("\xc2\x80"), 1}, {S("\xe0\xa0\x80"), 1},
    {S("\xf0\x90\x80\x80"), 1},
    /* 6.8 five and six byte forms. */
    {S("\xf8\x88\x80\x80\x80"), 0}, {S("\xfc\x84\x80\x80\x80\x80"), 0},
    /* 6.9 last possible sequences. */
    {S("\x7f"), 1}, {S("\xdf\xbf"), 1}, {S("\xef\xbf\xbf"), 1},
    {S("\xf4\x8f\xbf\xbf"), 1},
    /* 6.10 out of range. */
    {S("\xf4\x90\x80\x80"), 0}, {S("\xf7\xbf\xbf\xbf"), 0},
    {S("\xfb\xbf\xbf\xbf\xbf"), 0}, {S("\xfd\xbf\xbf\xbf\xbf\xbf"), 0},
    /* 6.11 other boundaries. */
    {S("\xed\x9f\xbf"), 1}, {S("\xee\x80\x80"), 1}, {S("\xef\xbf\xbd"), 1},
    {S("\xf4\x8f\xbf\xbf"), 1}, {S("\xf4\x90\x80\x80"), 0},
    /* 6.12 unexpected continuation bytes. */
    {S("\x80"), 0}, {S("\xbf"), 0}, {S("\x80\xbf"), 0},
    {S("\x80\xbf\x80\xbf"), 0},
    /* 6.13 lonely start characters. */
    {S("\xc0 "), 0}, {S("\xe0 "), 0}, {S("\xf0 "), 0}, {S("\xf8 "), 0},
    {S("\xfc "), 0},
    /* 6.14 last continuation byte missing (complete text). */
    {S("\xc0"), 0}, {S("\xe0\x80"), 0}, {S("\xdf"), 0}, {S("\xef\xbf"), 0},
    {S("\xf7\xbf\xbf"), 0},
    /* 6.15 concatenation of incomplete sequences. */
    {S("\xc0\xe0\x80\xf0\x80\x80\xf8\x80\x80\x80"), 0},
    /* 6.16 impossible bytes. */
    {S("\xfe"), 0}, {S("\xff"), 0}, {S("\xfe\xfe\xff\xff"), 0},
    /* 6.17 to 6.19 overlong forms. */
    {S("\xc0\xaf"), 0}, {S("\xe0\x80\xaf"), 0}, {S("\xf0\x80\x80\xaf"), 0},
    {S("\xc1\xbf"), 0}, {S("\xe0\x9f\xbf"), 0}, {S("\xf0\x8f\xbf\xbf"), 0},
    {S("\xc0\x80"), 0}, {S("\xe0\x80\x80"), 0}, {S("\xf0\x80\x80\x80"), 0},
    /* 6.20 and 6.21 surrogates. */
    {S("\xed\xa0\x80"), 0}, {S("\xed\xad\xbf"), 0}, {S("\xed\xae\x80"), 0},
    {S("\xed\xaf\xbf"), 0}, {S("\xed\xb0\x80"), 0}, {S("\xed\xbe\x80"), 0},
    {S("\xed\xbf\xbf"), 0}, {S("\xed\xa0\x80\xed\xb0\x80"), 0},
    /* 6.22 noncharacters are valid UTF-8. */
    {S("\xef\xbf\xbe"), 1}, {S("\xf0\x9f\xbf\xbe"), 1},
    {S("\xf4\x8f\xbf\xbe"), 1}, {S("\xef\xb7\x90"), 1},
    /* 6.23 the replacement character. */
    {S("\xef\xbf\xbd"), 1},
  };
  size_t i;
  for (i = 0; i < sizeof v / sizeof v[0]; i++) {
    const uint8_t *p = (const uint8_t *)v[i].s;
    CHECK_EQ_INT(ws_utf8_valid(p, v[i].n), v[i].ok);
    CHECK_EQ_INT(ref_status(p, v[i].n) == WS_UTF8_OK, v[i].ok);
    CHECK(split_agrees(p, v[i].n));
  }
}

static uint32_t rng_next(uint32_t *s) {
  /* xorshift32: deterministic, good enough to pick bytes. */
  uint32_t x = *s;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  return *s = x;
}

/* Random strings built mostly from valid characters with occasional noise:
 * whole, split and reference must agree. */
TEST(random_split_agreement) {
  static const char *pieces[] = {"a", "bc", "\xc3\xa9", "\xe2\x82\xac",
                                 "\xf0\x9f\x98\x80", "\xed\x9f\xbf",
                                 "\xf4\x8f\xbf\xbf", "0123456789"};
  uint32_t seed = 12345;
  uint8_t buf[64];
  int iter;
  long bad = 0;
  for (iter = 0; iter < 20000; iter++) {
    size_t n = 0, lim = rng_next(&seed) % sizeof buf;
    int complete;
    while (n < lim) {
      uint32_t r = rng_next(&seed);
      if (r % 10 == 0) {
        buf[n++] = (uint8_t)(r >> 8);
      } else {
        const char *pc = pieces[(r >> 8) % 8];
        size_t pl = strlen(pc);
        if (n + pl > sizeof buf) break;
        memcpy(buf + n, pc, pl);
        n += pl;
      }
    }
    if (whole(buf, n) != ref_status(buf, n)) bad++;
    if (bytewise_fail_index(buf, n) != ref_first_bad(buf, n, &complete))
      bad++;
    if (!split_agrees(buf, n)) bad++;
  }
  CHECK_EQ_INT(bad, 0);
}

int main(void) {
  RUN(empty_input);
  RUN(valid_samples);
  RUN(invalid_classes);
  RUN(fails_at_first_impossible_byte);
  RUN(incomplete_at_end);
  RUN(invalid_is_sticky);
  RUN(exhaustive_up_to_three_bytes);
  RUN(four_byte_sweep);
  RUN(all_code_points);
  RUN(ascii_word_path);
  RUN(autobahn_section6_samples);
  RUN(random_split_agreement);
  return TEST_REPORT();
}
