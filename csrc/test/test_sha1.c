/* ws_sha1 against the FIPS 180 examples and against OpenSSL's SHA-1 for
 * every length up to three blocks, fed in pieces of every size. */
#include "ws_sha1.h"

#include <stdio.h>
#include <string.h>

#include <openssl/sha.h>

#include "test.h"

static void hex(const uint8_t *md, char out[2 * WS_SHA1_LEN + 1]) {
  for (int i = 0; i < WS_SHA1_LEN; i++) sprintf(out + 2 * i, "%02x", md[i]);
}

static int sha1_is(const char *msg, size_t n, const char *want) {
  ws_sha1_t s;
  uint8_t md[WS_SHA1_LEN];
  char h[2 * WS_SHA1_LEN + 1];
  ws_sha1_init(&s);
  ws_sha1_update(&s, msg, n);
  ws_sha1_final(&s, md);
  hex(md, h);
  if (strcmp(h, want) != 0) fprintf(stderr, "  sha1 gave %s, want %s\n", h, want);
  return strcmp(h, want) == 0;
}

TEST(test_fips_vectors) {
  CHECK(sha1_is("", 0, "da39a3ee5e6b4b0d3255bfef95601890afd80709"));
  CHECK(sha1_is("abc", 3, "a9993e364706816aba3e25717850c26c9cd0d89d"));
  const char *m448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  CHECK(sha1_is(m448, strlen(m448), "84983e441c3bd26ebaae4aa1f95129e5e54670f1"));
  const char *m896 =
      "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnop"
      "jklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
  CHECK(sha1_is(m896, strlen(m896), "a49b2446a02c645bf419f995b67091253a04a259"));
}

TEST(test_million_a) {
  static char a[1000];
  memset(a, 'a', sizeof a);
  ws_sha1_t s;
  uint8_t md[WS_SHA1_LEN];
  char h[2 * WS_SHA1_LEN + 1];
  ws_sha1_init(&s);
  for (int i = 0; i < 1000; i++) ws_sha1_update(&s, a, sizeof a);
  ws_sha1_final(&s, md);
  hex(md, h);
  CHECK(strcmp(h, "34aa973cd4c4daa4f61eeb2bdbad27316534016f") == 0);
}

/* Lengths 0..192 cover the padding's edge cases (55, 56, 63, 64 bytes in
 * the last block); each is fed whole and in pieces of 1..70 bytes. */
TEST(test_against_openssl) {
  uint8_t msg[192];
  for (size_t i = 0; i < sizeof msg; i++) msg[i] = (uint8_t)(i * 131 + 7);
  int bad = 0;
  for (size_t n = 0; n <= sizeof msg; n++) {
    uint8_t want[SHA_DIGEST_LENGTH];
    SHA1(msg, n, want);
    for (size_t piece = 1; piece <= 70; piece++) {
      ws_sha1_t s;
      uint8_t md[WS_SHA1_LEN];
      ws_sha1_init(&s);
      for (size_t off = 0; off < n; off += piece)
        ws_sha1_update(&s, msg + off, n - off < piece ? n - off : piece);
      ws_sha1_final(&s, md);
      if (memcmp(md, want, sizeof md) != 0) bad++;
    }
  }
  CHECK_EQ_INT(bad, 0);
}

int main(void) {
  RUN(test_fips_vectors);
  RUN(test_million_a);
  RUN(test_against_openssl);
  return TEST_REPORT();
}
