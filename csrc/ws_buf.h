/*
 * ws_buf: a growable byte buffer with a hard cap.
 *
 * The buffer owns its memory.  A zeroed ws_buf_t is a valid empty buffer
 * that holds no allocation, so idle connections cost nothing here.  Data is
 * consumed from the front with ws_buf_consume(), which only advances an
 * offset; the space is reclaimed when the buffer empties or when a later
 * append needs room.
 */
#ifndef UVWS_WS_BUF_H
#define UVWS_WS_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct ws_buf {
  uint8_t *data; /* allocation, or NULL */
  size_t off;    /* first unconsumed byte */
  size_t len;    /* end of valid bytes (data[off..len) is the content) */
  size_t cap;    /* size of the allocation */
} ws_buf_t;

/* Bytes of content. */
#define WS_BUF_SIZE(b) ((b)->len - (b)->off)
/* Pointer to the first byte of content (NULL for a buffer that never
 * held an allocation; no arithmetic on NULL). */
#define WS_BUF_PTR(b) ((b)->data ? (b)->data + (b)->off : (b)->data)

/* Makes room for at least `extra` more bytes without exceeding `limit`
 * bytes of content (0 means no limit).  Returns 0, or -1 when the limit
 * would be passed or memory is exhausted (the buffer is unchanged). */
int ws_buf_reserve(ws_buf_t *b, size_t extra, size_t limit);

/* Appends n bytes; same result as ws_buf_reserve. */
int ws_buf_append(ws_buf_t *b, const void *p, size_t n, size_t limit);

/* Drops n bytes from the front (n <= WS_BUF_SIZE). */
void ws_buf_consume(ws_buf_t *b, size_t n);

/* Empties the buffer and releases its memory. */
void ws_buf_free(ws_buf_t *b);

#endif
