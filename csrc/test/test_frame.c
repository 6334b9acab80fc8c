/*
 * Tests of the frame header codec and masking: RFC 6455 §5.7 examples,
 * every length encoding and its boundaries, every incomplete prefix, the
 * protocol checks and the word-at-a-time masking at every alignment.
 */
#include <stdint.h>
#include <stdlib.h>

#include "test.h"
#include "ws_frame.h"

#define B(lit) (const uint8_t *)(lit), sizeof(lit) - 1

/* Parses a header from a heap copy of exactly n bytes (so that an
 * over-read is caught by ASan or valgrind) and checks that every prefix
 * shorter than the header asks for more.  Returns the parser's result, or
 * -100 if a prefix did not ask for more. */
static int parse_exact(const uint8_t *p, size_t n, ws_frame_header_t *h) {
  uint8_t *copy = malloc(n ? n : 1);
  size_t k;
  int r, prefix_ok = 1;
  memcpy(copy, p, n);
  r = ws_frame_parse_header(copy, n, h);
  free(copy);
  for (k = 0; r > 0 && k < (size_t)r; k++) {
    ws_frame_header_t tmp;
    uint8_t *part = malloc(k ? k : 1);
    memcpy(part, p, k);
    if (ws_frame_parse_header(part, k, &tmp) != 0) prefix_ok = 0;
    free(part);
  }
  return prefix_ok ? r : -100;
}

TEST(rfc_examples) {
  ws_frame_header_t h;
  uint8_t masked[] = "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58";

  /* A single-frame unmasked text message. */
  CHECK_EQ_INT(parse_exact(B("\x81\x05\x48\x65\x6c\x6c\x6f"), &h), 2);
  CHECK_EQ_INT(h.fin, 1);
  CHECK_EQ_INT(h.opcode, WS_OP_TEXT);
  CHECK_EQ_INT(h.masked, 0);
  CHECK_EQ_INT(h.rsv, 0);
  CHECK_EQ_INT(h.len, 5);

  /* A single-frame masked text message. */
  CHECK_EQ_INT(parse_exact(masked, 11, &h), 6);
  CHECK_EQ_INT(h.masked, 1);
  CHECK_EQ_INT(h.header_len, 6);
  CHECK_MEM(h.mask, "\x37\xfa\x21\x3d", 4);
  CHECK_EQ_INT(ws_mask(masked + 6, 5, h.mask, 0), 1);
  CHECK_MEM(masked + 6, "Hello", 5);

  /* A fragmented unmasked text message. */
  CHECK_EQ_INT(parse_exact(B("\x01\x03\x48\x65\x6c"), &h), 2);
  CHECK_EQ_INT(h.fin, 0);
  CHECK_EQ_INT(h.opcode, WS_OP_TEXT);
  CHECK_EQ_INT(h.len, 3);
  CHECK_EQ_INT(parse_exact(B("\x80\x02\x6c\x6f"), &h), 2);
  CHECK_EQ_INT(h.fin, 1);
  CHECK_EQ_INT(h.opcode, WS_OP_CONT);
  CHECK_EQ_INT(h.len, 2);

  /* Unmasked ping, masked pong. */
  CHECK_EQ_INT(parse_exact(B("\x89\x05Hello"), &h), 2);
  CHECK_EQ_INT(h.opcode, WS_OP_PING);
  CHECK_EQ_INT(parse_exact(B("\x8a\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"),
                           &h), 6);
  CHECK_EQ_INT(h.opcode, WS_OP_PONG);
  CHECK_EQ_INT(h.masked, 1);

  /* 256 bytes binary in a single unmasked frame. */
  CHECK_EQ_INT(parse_exact(B("\x82\x7e\x01\x00"), &h), 4);
  CHECK_EQ_INT(h.opcode, WS_OP_BINARY);
  CHECK_EQ_INT(h.len, 256);

  /* 64 KiB binary in a single unmasked frame. */
  CHECK_EQ_INT(parse_exact(B("\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00"), &h),
               10);
  CHECK_EQ_INT(h.len, 65536);
}

TEST(header_partial_prefixes) {
  ws_frame_header_t h;
  /* Masked with a 64-bit length: the longest header. */
  CHECK_EQ_INT(parse_exact(B("\x82\xff\x00\x00\x00\x00\x00\x01\x00\x00"
                             "\x01\x02\x03\x04"), &h), 14);
  CHECK_EQ_INT(h.len, 65536);
  CHECK_MEM(h.mask, "\x01\x02\x03\x04", 4);
  /* Masked with a 16-bit length. */
  CHECK_EQ_INT(parse_exact(B("\x82\xfe\x01\x00\xaa\xbb\xcc\xdd"), &h), 8);
  CHECK_EQ_INT(h.len, 256);
  CHECK_MEM(h.mask, "\xaa\xbb\xcc\xdd", 4);
  /* Extra bytes after the header are not the parser's business. */
  CHECK_EQ_INT(ws_frame_parse_header((const uint8_t *)"\x81\x00\x81\x00", 4,
                                     &h), 2);
  CHECK_EQ_INT(ws_frame_parse_header(NULL, 0, &h), 0);
}

TEST(header_fields) {
  ws_frame_header_t h;
  int op;
  for (op = 0; op < 16; op++) {
    uint8_t b[2];
    b[0] = (uint8_t)(0x70 | op);
    b[1] = 0x7d;
    CHECK_EQ_INT(ws_frame_parse_header(b, 2, &h), 2);
    CHECK_EQ_INT(h.opcode, op);
    CHECK_EQ_INT(h.rsv, 0x70);
    CHECK_EQ_INT(h.fin, 0);
    CHECK_EQ_INT(h.len, 125);
  }
  CHECK_EQ_INT(ws_frame_parse_header((const uint8_t *)"\xc1\x00", 2, &h), 2);
  CHECK_EQ_INT(h.rsv, WS_RSV1);
  CHECK_EQ_INT(h.fin, 1);
  /* The largest legal 64-bit length. */
  CHECK_EQ_INT(ws_frame_parse_header(
                   (const uint8_t *)"\x82\x7f\x7f\xff\xff\xff\xff\xff\xff\xff",
                   10, &h), 10);
  CHECK(h.len == UINT64_C(0x7fffffffffffffff));
}

TEST(msb_of_64bit_length) {
  ws_frame_header_t h;
  /* Refused as soon as the byte holding the bit arrives. */
  CHECK_EQ_INT(ws_frame_parse_header((const uint8_t *)"\x82\x7f\x80", 3, &h),
               WS_FRAME_ELEN);
  CHECK_EQ_INT(ws_frame_parse_header((const uint8_t *)"\x82\x7f", 2, &h), 0);
  CHECK_EQ_INT(ws_frame_parse_header(
                   (const uint8_t *)"\x82\xff\xff\x00\x00\x00\x00\x00\x00\x01"
                   "\x00\x00\x00\x00", 14, &h), WS_FRAME_ELEN);
  /* The 16-bit length has no such rule. */
  CHECK_EQ_INT(ws_frame_parse_header((const uint8_t *)"\x82\x7e\xff\xff", 4,
                                     &h), 4);
  CHECK_EQ_INT(h.len, 65535);
}

/* Write then parse every boundary length, with and without a mask, and
 * check the encoding is the minimal one. */
TEST(write_header_roundtrip) {
  static const uint64_t lens[] = {0, 1, 125, 126, 127, 65535, 65536,
                                  UINT64_C(0xffffffff),
                                  UINT64_C(0x100000000),
                                  UINT64_C(0x7fffffffffffffff)};
  static const uint8_t key[4] = {0xde, 0xad, 0xbe, 0xef};
  size_t i;
  int m;
  for (i = 0; i < sizeof lens / sizeof lens[0]; i++) {
    for (m = 0; m < 2; m++) {
      uint8_t out[WS_MAX_HEADER];
      ws_frame_header_t h;
      size_t want = (lens[i] < 126 ? 2 : lens[i] <= 0xffff ? 4 : 10) +
                    (m ? 4 : 0);
      size_t n = ws_frame_write_header(out, 1, WS_RSV1, WS_OP_BINARY,
                                       m ? key : NULL, lens[i]);
      CHECK_EQ_INT(n, want);
      CHECK_EQ_INT(parse_exact(out, n, &h), (int)n);
      CHECK(h.len == lens[i]);
      CHECK_EQ_INT(h.fin, 1);
      CHECK_EQ_INT(h.rsv, WS_RSV1);
      CHECK_EQ_INT(h.opcode, WS_OP_BINARY);
      CHECK_EQ_INT(h.masked, m);
      if (m) CHECK_MEM(h.mask, key, 4);
    }
  }
}

TEST(write_header_bytes) {
  uint8_t out[WS_MAX_HEADER];
  static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
  CHECK_EQ_INT(ws_frame_write_header(out, 1, 0, WS_OP_TEXT, NULL, 5), 2);
  CHECK_MEM(out, "\x81\x05", 2);
  CHECK_EQ_INT(ws_frame_write_header(out, 1, 0, WS_OP_TEXT, key, 5), 6);
  CHECK_MEM(out, "\x81\x85\x37\xfa\x21\x3d", 6);
  CHECK_EQ_INT(ws_frame_write_header(out, 0, 0, WS_OP_TEXT, NULL, 3), 2);
  CHECK_MEM(out, "\x01\x03", 2);
  CHECK_EQ_INT(ws_frame_write_header(out, 1, 0, WS_OP_CONT, NULL, 2), 2);
  CHECK_MEM(out, "\x80\x02", 2);
  CHECK_EQ_INT(ws_frame_write_header(out, 1, 0, WS_OP_BINARY, NULL, 256), 4);
  CHECK_MEM(out, "\x82\x7e\x01\x00", 4);
  CHECK_EQ_INT(ws_frame_write_header(out, 1, 0, WS_OP_BINARY, NULL, 65536),
               10);
  CHECK_MEM(out, "\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10);
  CHECK_EQ_INT(ws_frame_write_header(out, 1, WS_RSV1, WS_OP_TEXT, NULL, 0), 2);
  CHECK_MEM(out, "\xc1\x00", 2);
}

static int check(const char *hdr, size_t n, int masked_req, int unmasked_req,
                 uint8_t rsv_allowed, const char **reason) {
  ws_frame_header_t h;
  *reason = NULL;
  if (ws_frame_parse_header((const uint8_t *)hdr, n, &h) <= 0) return -1;
  return ws_frame_check(&h, masked_req, unmasked_req, rsv_allowed, reason);
}

#define M "\x01\x02\x03\x04"

TEST(check_rules) {
  const char *why;
  int op;

  /* Masking by role (§5.1). */
  CHECK_EQ_INT(check("\x81\x80" M, 6, 1, 0, 0, &why), 0);
  CHECK_EQ_INT(check("\x81\x00", 2, 1, 0, 0, &why), 1002);
  CHECK(why && strcmp(why, "unmasked frame from client") == 0);
  CHECK_EQ_INT(check("\x81\x00", 2, 0, 1, 0, &why), 0);
  CHECK_EQ_INT(check("\x81\x80" M, 6, 0, 1, 0, &why), 1002);
  CHECK(why && strcmp(why, "masked frame from server") == 0);
  CHECK_EQ_INT(check("\x81\x00", 2, 0, 0, 0, &why), 0);

  /* RSV bits (§5.2). */
  CHECK_EQ_INT(check("\xc1\x00", 2, 0, 0, 0, &why), 1002);
  CHECK(why && strcmp(why, "reserved bits set") == 0);
  CHECK_EQ_INT(check("\xa1\x00", 2, 0, 0, 0, &why), 1002);
  CHECK_EQ_INT(check("\x91\x00", 2, 0, 0, 0, &why), 1002);
  CHECK_EQ_INT(check("\xc1\x00", 2, 0, 0, WS_RSV1, &why), 0);
  CHECK_EQ_INT(check("\xe1\x00", 2, 0, 0, WS_RSV1, &why), 1002);
  CHECK_EQ_INT(check("\xf1\x00", 2, 0, 0, WS_RSV1 | WS_RSV2 | WS_RSV3, &why),
               0);

  /* Opcodes (§5.2). */
  for (op = 0; op < 16; op++) {
    char b[2];
    int reserved = (op >= 3 && op <= 7) || op >= 11;
    b[0] = (char)(0x80 | op);
    b[1] = 0;
    CHECK_EQ_INT(check(b, 2, 0, 0, 0, &why), reserved ? 1002 : 0);
    if (reserved) CHECK(why && strcmp(why, "reserved opcode") == 0);
  }

  /* Control frames (§5.5). */
  CHECK_EQ_INT(check("\x09\x00", 2, 0, 0, 0, &why), 1002);
  CHECK(why && strcmp(why, "fragmented control frame") == 0);
  CHECK_EQ_INT(check("\x08\x00", 2, 0, 0, 0, &why), 1002);
  CHECK_EQ_INT(check("\x0a\x00", 2, 0, 0, 0, &why), 1002);
  CHECK_EQ_INT(check("\x89\x7d", 2, 0, 0, 0, &why), 0);
  CHECK_EQ_INT(check("\x89\x7e\x00\x7e", 4, 0, 0, 0, &why), 1002);
  CHECK(why && strcmp(why, "control frame too long") == 0);
  /* A non-minimal encoding of a short length is still short. */
  CHECK_EQ_INT(check("\x8a\x7e\x00\x7d", 4, 0, 0, 0, &why), 0);
  CHECK_EQ_INT(check("\x88\x7f\x00\x00\x00\x00\x00\x00\x01\x00", 10, 0, 0, 0,
                     &why), 1002);
  /* Data frames may be long and fragmented. */
  CHECK_EQ_INT(check("\x02\x7e\x10\x00", 4, 0, 0, 0, &why), 0);
  CHECK_EQ_INT(check("\x00\x7e\x10\x00", 4, 0, 0, 0, &why), 0);
}

/* Reference: the plain byte loop. */
static void ref_mask(uint8_t *p, size_t n, const uint8_t mask[4], size_t pos) {
  size_t i;
  for (i = 0; i < n; i++) p[i] ^= mask[(pos + i) % 4];
}

TEST(mask_every_alignment) {
  static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
  uint8_t src[160], a[176], b[176], d[176];
  size_t i, n, off, pos;
  long bad = 0;
  for (i = 0; i < sizeof src; i++) src[i] = (uint8_t)(i * 7 + 3);
  for (off = 0; off < 16; off++) {
    for (n = 0; n <= sizeof src; n++) {
      for (pos = 0; pos < 4; pos++) {
        memcpy(a + off, src, n);
        memcpy(b + off, src, n);
        memset(d, 0x55, sizeof d);
        ref_mask(b + off, n, key, pos);
        if (ws_mask(a + off, n, key, pos) != (pos + n) % 4) bad++;
        if (memcmp(a + off, b + off, n) != 0) bad++;
        /* Copying: the source is left alone and nothing outside is
         * touched. */
        if (ws_mask_copy(d + off, src, n, key, pos) != (pos + n) % 4) bad++;
        if (memcmp(d + off, b + off, n) != 0) bad++;
        if (off && d[off - 1] != 0x55) bad++;
        if (off + n < sizeof d && d[off + n] != 0x55) bad++;
      }
    }
  }
  for (i = 0; i < sizeof src; i++)
    if (src[i] != (uint8_t)(i * 7 + 3)) bad++;
  CHECK_EQ_INT(bad, 0);
}

/* Masking in pieces, carrying the returned position, equals masking in one
 * go; and masking twice restores the data. */
TEST(mask_in_pieces) {
  static const uint8_t key[4] = {0x01, 0x80, 0xfe, 0x7f};
  uint8_t whole[300], part[300], orig[300];
  size_t i, cut1, cut2;
  long bad = 0;
  for (i = 0; i < sizeof orig; i++) orig[i] = (uint8_t)(i ^ 0xa5);
  memcpy(whole, orig, sizeof whole);
  ws_mask(whole, sizeof whole, key, 0);
  for (cut1 = 0; cut1 <= 40; cut1++) {
    for (cut2 = cut1; cut2 <= sizeof part; cut2 += 7) {
      size_t pos;
      memcpy(part, orig, sizeof part);
      pos = ws_mask(part, cut1, key, 0);
      pos = ws_mask(part + cut1, cut2 - cut1, key, pos);
      pos = ws_mask(part + cut2, sizeof part - cut2, key, pos);
      if (pos != sizeof part % 4) bad++;
      if (memcmp(part, whole, sizeof part) != 0) bad++;
    }
  }
  ws_mask(whole, sizeof whole, key, 0);
  if (memcmp(whole, orig, sizeof whole) != 0) bad++;
  /* A position past 3 is taken modulo 4. */
  memcpy(part, orig, 10);
  memcpy(whole, orig, 10);
  ws_mask(part, 10, key, 6);
  ws_mask(whole, 10, key, 2);
  if (memcmp(part, whole, 10) != 0) bad++;
  CHECK_EQ_INT(bad, 0);
}

TEST(close_codes) {
  int code, bad = 0;
  for (code = -1; code <= 70000; code++) {
    int want = (code >= 1000 && code <= 1003) ||
               (code >= 1007 && code <= 1014) ||
               (code >= 3000 && code <= 4999);
    if (ws_close_code_valid(code) != want) bad++;
  }
  CHECK_EQ_INT(bad, 0);
  CHECK(ws_close_code_valid(1000));
  CHECK(ws_close_code_valid(1011));
  CHECK(ws_close_code_valid(3000));
  CHECK(ws_close_code_valid(4999));
  CHECK(!ws_close_code_valid(0));
  CHECK(!ws_close_code_valid(999));
  CHECK(!ws_close_code_valid(1004));
  CHECK(!ws_close_code_valid(1005));
  CHECK(!ws_close_code_valid(1006));
  CHECK(!ws_close_code_valid(1015));
  CHECK(!ws_close_code_valid(1016));
  CHECK(!ws_close_code_valid(2999));
  CHECK(!ws_close_code_valid(5000));
  CHECK(!ws_close_code_valid(65535));
}

int main(void) {
  RUN(rfc_examples);
  RUN(header_partial_prefixes);
  RUN(header_fields);
  RUN(msb_of_64bit_length);
  RUN(write_header_roundtrip);
  RUN(write_header_bytes);
  RUN(check_rules);
  RUN(mask_every_alignment);
  RUN(mask_in_pieces);
  RUN(close_codes);
  return TEST_REPORT();
}
