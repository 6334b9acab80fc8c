/*
 * ws_frame: RFC 6455 §5.2 frame headers and §5.3 masking.
 *
 *    0                   1                   2                   3
 *    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *   +-+-+-+-+-------+-+-------------+-------------------------------+
 *   |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
 *   |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
 *   |N|V|V|V|       |S|             |   (if payload len==126/127)   |
 *   | |1|2|3|       |K|             |                               |
 *   +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
 *   |     Extended payload length continued, if payload len == 127  |
 *   + - - - - - - - - - - - - - - - +-------------------------------+
 *   |                               |Masking-key, if MASK set to 1  |
 *   +-------------------------------+-------------------------------+
 */
#include "ws_frame.h"

#include <string.h>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

int ws_frame_parse_header(const uint8_t *p, size_t n, ws_frame_header_t *h) {
  size_t need, lenbytes, i;
  uint8_t len7;

  if (n < 2) return 0;
  len7 = p[1] & 0x7f;
  lenbytes = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
  /* §5.2: "the most significant bit MUST be 0" for the 64-bit length.  It
   * is refused as soon as its byte arrives, not after the whole header. */
  if (lenbytes == 8 && n >= 3 && (p[2] & 0x80)) return WS_FRAME_ELEN;
  need = 2 + lenbytes + ((p[1] & 0x80) ? 4 : 0);
  if (n < need) return 0;

  h->fin = (p[0] & 0x80) ? 1 : 0;
  h->rsv = p[0] & 0x70;
  h->opcode = p[0] & 0x0f;
  h->masked = (p[1] & 0x80) ? 1 : 0;
  h->header_len = (uint8_t)need;
  if (lenbytes == 0) {
    h->len = len7;
  } else {
    /* The length is in network byte order (§5.2).  Non-minimal encodings
     * are accepted, as most implementations do. */
    h->len = 0;
    for (i = 0; i < lenbytes; i++) h->len = (h->len << 8) | p[2 + i];
  }
  if (h->masked)
    memcpy(h->mask, p + 2 + lenbytes, 4);
  else
    memset(h->mask, 0, 4);
  return (int)need;
}

int ws_frame_check(const ws_frame_header_t *h, int must_be_masked,
                   int must_be_unmasked, uint8_t rsv_allowed,
                   const char **reason) {
  const char *why = NULL;
  uint8_t op = h->opcode;

  if (h->rsv & ~(rsv_allowed & 0x70)) {
    /* §5.2: nonzero RSV bits without a negotiated meaning fail. */
    why = "reserved bits set";
  } else if ((op >= 0x3 && op <= 0x7) || op >= 0xB) {
    why = "reserved opcode";
  } else if (WS_OP_IS_CONTROL(op) && !h->fin) {
    /* §5.5: "Control frames themselves MUST NOT be fragmented." */
    why = "fragmented control frame";
  } else if (WS_OP_IS_CONTROL(op) && h->len > WS_MAX_CONTROL) {
    /* §5.5: "payload length of 125 bytes or less". */
    why = "control frame too long";
  } else if (must_be_masked && !h->masked) {
    /* §5.1: a server MUST close on an unmasked frame. */
    why = "unmasked frame from client";
  } else if (must_be_unmasked && h->masked) {
    /* §5.1: a client MUST close on a masked frame. */
    why = "masked frame from server";
  }
  if (!why) return 0;
  if (reason) *reason = why;
  return 1002;
}

size_t ws_frame_write_header(uint8_t out[WS_MAX_HEADER], int fin, int rsv,
                             int opcode, const uint8_t *mask, uint64_t len) {
  size_t n;
  uint8_t mbit = mask ? 0x80 : 0;

  out[0] = (uint8_t)((fin ? 0x80 : 0) | (rsv & 0x70) | (opcode & 0x0f));
  if (len < 126) {
    out[1] = (uint8_t)(mbit | len);
    n = 2;
  } else if (len <= 0xffff) {
    out[1] = (uint8_t)(mbit | 126);
    out[2] = (uint8_t)(len >> 8);
    out[3] = (uint8_t)len;
    n = 4;
  } else {
    int i;
    out[1] = (uint8_t)(mbit | 127);
    for (i = 0; i < 8; i++) out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
    n = 10;
  }
  if (mask) {
    memcpy(out + n, mask, 4);
    n += 4;
  }
  return n;
}

size_t ws_mask_copy(uint8_t *dst, const uint8_t *src, size_t n,
                    const uint8_t mask[4], size_t pos) {
  size_t i = 0;

  pos &= 3;
  if (n >= 8) {
    /* Rotate the key so that its first byte lines up with src[0], and
     * repeat it twice: the pattern then fits every 8-byte step, since 8 is
     * a multiple of 4.  The words go through memcpy, which is legal at any
     * alignment and is a plain load or store on every current compiler;
     * building the pattern from bytes makes it independent of endianness. */
    uint8_t pat[8];
    uint64_t m, w, w2;
    int k;
    for (k = 0; k < 8; k++) pat[k] = mask[(pos + (size_t)k) & 3];
    memcpy(&m, pat, 8);
#ifdef __SSE2__
    /* 64 bytes a step in four 16-byte vectors (SSE2 is part of x86-64);
     * unaligned loads and stores, the same repeated pattern. */
    if (n >= 64) {
      __m128i v = _mm_set1_epi64x((long long)m);
      for (; n - i >= 64; i += 64) {
        __m128i a = _mm_loadu_si128((const __m128i *)(const void *)(src + i));
        __m128i b =
            _mm_loadu_si128((const __m128i *)(const void *)(src + i + 16));
        __m128i c =
            _mm_loadu_si128((const __m128i *)(const void *)(src + i + 32));
        __m128i d =
            _mm_loadu_si128((const __m128i *)(const void *)(src + i + 48));
        _mm_storeu_si128((__m128i *)(void *)(dst + i), _mm_xor_si128(a, v));
        _mm_storeu_si128((__m128i *)(void *)(dst + i + 16),
                         _mm_xor_si128(b, v));
        _mm_storeu_si128((__m128i *)(void *)(dst + i + 32),
                         _mm_xor_si128(c, v));
        _mm_storeu_si128((__m128i *)(void *)(dst + i + 48),
                         _mm_xor_si128(d, v));
      }
    }
#endif
    for (; n - i >= 16; i += 16) {
      memcpy(&w, src + i, 8);
      memcpy(&w2, src + i + 8, 8);
      w ^= m;
      w2 ^= m;
      memcpy(dst + i, &w, 8);
      memcpy(dst + i + 8, &w2, 8);
    }
    for (; n - i >= 8; i += 8) {
      memcpy(&w, src + i, 8);
      w ^= m;
      memcpy(dst + i, &w, 8);
    }
  }
  /* i is a multiple of 8 here, so the key position is unchanged. */
  for (; i < n; i++) dst[i] = src[i] ^ mask[(pos + i) & 3];
  return (pos + n) & 3;
}

size_t ws_mask(uint8_t *p, size_t n, const uint8_t mask[4], size_t pos) {
  return ws_mask_copy(p, p, n, mask, pos);
}

int ws_close_code_valid(int code) {
  /* §7.4.1 and §7.4.2: 1004 is reserved, 1005 and 1006 must never be sent,
   * 1015 is TLS-only; 1012-1014 are registered with IANA since.  3000-3999
   * are registered by libraries, 4000-4999 private. */
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
         (code >= 3000 && code <= 4999);
}
