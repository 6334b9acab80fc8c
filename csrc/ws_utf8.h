/*
 * ws_utf8: streaming UTF-8 validation (RFC 3629) for text messages.
 *
 * The state is one integer kept by the caller, so a sequence may be split
 * across any number of calls (frames, reads).  An invalid byte is reported
 * by the call that sees it: overlong forms, surrogates (U+D800..U+DFFF),
 * code points above U+10FFFF and stray continuation bytes are refused at
 * the first byte that makes the sequence impossible.  ASCII runs are
 * skipped a machine word at a time.
 */
#ifndef UVWS_WS_UTF8_H
#define UVWS_WS_UTF8_H

#include <stddef.h>
#include <stdint.h>

enum {
  WS_UTF8_OK = 0,         /* valid, and at a character boundary */
  WS_UTF8_INCOMPLETE = 1, /* valid so far, in the middle of a character */
  WS_UTF8_INVALID = 2     /* invalid; the state stays invalid */
};

/* Start state. */
#define WS_UTF8_INIT 0u

/* Validates p[0..n) continuing from *state; returns one of the values
 * above. */
int ws_utf8_validate(uint32_t *state, const uint8_t *p, size_t n);

/* Whole-string check: 1 if p[0..n) is complete valid UTF-8. */
int ws_utf8_valid(const uint8_t *p, size_t n);

#endif
