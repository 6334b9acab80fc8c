/*
 * ws_utf8: a streaming UTF-8 validator built as a deterministic automaton.
 *
 * The automaton is read off the syntax of RFC 3629 §4:
 *
 *   UTF8-char   = UTF8-1 / UTF8-2 / UTF8-3 / UTF8-4
 *   UTF8-1      = %x00-7F
 *   UTF8-2      = %xC2-DF UTF8-tail
 *   UTF8-3      = %xE0 %xA0-BF UTF8-tail / %xE1-EC 2( UTF8-tail ) /
 *                 %xED %x80-9F UTF8-tail / %xEE-EF 2( UTF8-tail )
 *   UTF8-4      = %xF0 %x90-BF 2( UTF8-tail ) / %xF1-F3 3( UTF8-tail ) /
 *                 %xF4 %x80-8F 2( UTF8-tail )
 *   UTF8-tail   = %x80-BF
 *
 * Each byte falls into one of twelve classes (the ranges that appear in the
 * grammar), and each state names what the grammar still expects.  Because
 * the second-byte ranges after E0, ED, F0 and F4 are states of their own,
 * an overlong form, a surrogate or a code point above U+10FFFF is refused
 * at the first byte that rules it out (the A0 of "ED A0", the 90 of
 * "F4 90"), never later.
 *
 * The caller's state word holds the automaton state.  WS_UTF8_INIT (0) is
 * the accepting state, so "state == 0" means "at a character boundary".
 */
#include "ws_utf8.h"

#include <string.h>

/* Automaton states. */
enum {
  S_ACCEPT = 0, /* at a character boundary */
  S_TAIL1 = 1,  /* one more UTF8-tail expected */
  S_TAIL2 = 2,  /* two more UTF8-tail expected */
  S_TAIL3 = 3,  /* three more UTF8-tail expected */
  S_E0 = 4,     /* after E0: A0-BF, then one tail */
  S_ED = 5,     /* after ED: 80-9F, then one tail (no surrogates) */
  S_F0 = 6,     /* after F0: 90-BF, then two tails */
  S_F4 = 7,     /* after F4: 80-8F, then two tails (at most U+10FFFF) */
  S_REJECT = 8, /* invalid; sticky */
  S_COUNT = 9
};

/* Byte classes. */
enum {
  C_ASCII = 0, /* 00-7F */
  C_T80 = 1,   /* 80-8F: a tail; after F0 it would be overlong */
  C_T90 = 2,   /* 90-9F: a tail; after E0 overlong, after F4 > U+10FFFF */
  C_TA0 = 3,   /* A0-BF: a tail; after ED a surrogate */
  C_BAD = 4,   /* C0, C1, F5-FF: never valid */
  C_L2 = 5,    /* C2-DF */
  C_E0 = 6,    /* E0 */
  C_L3 = 7,    /* E1-EC, EE, EF */
  C_ED = 8,    /* ED */
  C_F0 = 9,    /* F0 */
  C_L4 = 10,   /* F1-F3 */
  C_F4 = 11,   /* F4 */
  C_COUNT = 12
};

static const uint8_t utf8_class[256] = {
  /* 00-7F */
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  /* 80-8F */
  1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
  /* 90-9F */
  2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
  /* A0-BF */
  3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,
  3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,
  /* C0-C1 never valid, C2-DF two-byte leads */
  4, 4, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5,
  5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5,
  /* E0, E1-EC, ED, EE-EF */
  6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 7,
  /* F0, F1-F3, F4, F5-FF never valid */
  9, 10, 10, 10, 11, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4
};

#define R S_REJECT
static const uint8_t utf8_next[S_COUNT][C_COUNT] = {
  /* Columns: ASCII, 80-8F, 90-9F, A0-BF, bad, C2-DF, E0, E1-EC/EE-EF, ED,
   * F0, F1-F3, F4. */
  [S_ACCEPT] = {S_ACCEPT, R, R, R, R, S_TAIL1, S_E0, S_TAIL2, S_ED, S_F0,
                S_TAIL3, S_F4},
  [S_TAIL1] = {R, S_ACCEPT, S_ACCEPT, S_ACCEPT, R, R, R, R, R, R, R, R},
  [S_TAIL2] = {R, S_TAIL1, S_TAIL1, S_TAIL1, R, R, R, R, R, R, R, R},
  [S_TAIL3] = {R, S_TAIL2, S_TAIL2, S_TAIL2, R, R, R, R, R, R, R, R},
  [S_E0] = {R, R, R, S_TAIL1, R, R, R, R, R, R, R, R},
  [S_ED] = {R, S_TAIL1, S_TAIL1, R, R, R, R, R, R, R, R, R},
  [S_F0] = {R, R, S_TAIL2, S_TAIL2, R, R, R, R, R, R, R, R},
  [S_F4] = {R, S_TAIL2, R, R, R, R, R, R, R, R, R, R},
  [S_REJECT] = {R, R, R, R, R, R, R, R, R, R, R, R},
};
#undef R

/* Every byte of an all-ASCII 64-bit word has its top bit clear. */
#define HIGH_BITS UINT64_C(0x8080808080808080)

int ws_utf8_validate(uint32_t *state, const uint8_t *p, size_t n) {
  uint32_t s = *state;
  size_t i = 0;

  /* A state word that is not one of ours is treated as invalid. */
  if (s >= S_REJECT) {
    *state = S_REJECT;
    return WS_UTF8_INVALID;
  }
  while (i < n) {
    if (s == S_ACCEPT) {
      /* At a boundary, skip ASCII sixteen, then eight bytes at a time.
       * memcpy keeps the loads legal at any alignment and compiles to
       * single moves. */
      while (n - i >= 16) {
        uint64_t w, w2;
        memcpy(&w, p + i, 8);
        memcpy(&w2, p + i + 8, 8);
        if ((w | w2) & HIGH_BITS) break;
        i += 16;
      }
      while (n - i >= 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        if (w & HIGH_BITS) break;
        i += 8;
      }
      while (i < n && p[i] < 0x80) i++;
      if (i == n) break;
    }
    s = utf8_next[s][utf8_class[p[i]]];
    i++;
    if (s == S_REJECT) {
      *state = S_REJECT;
      return WS_UTF8_INVALID;
    }
  }
  *state = s;
  return s == S_ACCEPT ? WS_UTF8_OK : WS_UTF8_INCOMPLETE;
}

int ws_utf8_valid(const uint8_t *p, size_t n) {
  uint32_t s = WS_UTF8_INIT;
  return ws_utf8_validate(&s, p, n) == WS_UTF8_OK;
}
