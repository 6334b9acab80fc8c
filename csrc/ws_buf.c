#include "ws_buf.h"

#include <stdlib.h>
#include <string.h>

int ws_buf_reserve(ws_buf_t *b, size_t extra, size_t limit) {
  size_t size = WS_BUF_SIZE(b);
  if (limit && (extra > limit || size > limit - extra)) return -1;
  if (b->len + extra <= b->cap) return 0;
  /* Slide the content to the front first if that is enough. */
  if (b->off > 0) {
    memmove(b->data, b->data + b->off, size);
    b->off = 0;
    b->len = size;
    if (size + extra <= b->cap) return 0;
  }
  size_t need = size + extra;
  /* Double (appends stay amortized O(1)), but a large first need gets
   * what it asks for, not the next power of two. */
  size_t ncap = b->cap ? (b->cap > SIZE_MAX / 2 ? need : b->cap * 2) : 256;
  if (ncap < need) ncap = need;
  uint8_t *p = realloc(b->data, ncap);
  if (!p) return -1;
  b->data = p;
  b->cap = ncap;
  return 0;
}

int ws_buf_append(ws_buf_t *b, const void *p, size_t n, size_t limit) {
  if (n == 0) return 0;
  if (ws_buf_reserve(b, n, limit) != 0) return -1;
  memcpy(b->data + b->len, p, n);
  b->len += n;
  return 0;
}

void ws_buf_consume(ws_buf_t *b, size_t n) {
  b->off += n;
  if (b->off >= b->len) b->off = b->len = 0;
}

void ws_buf_free(ws_buf_t *b) {
  free(b->data);
  b->data = NULL;
  b->off = b->len = b->cap = 0;
}
