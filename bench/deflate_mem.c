/*
 * Measures the memory ws_deflate holds per connection, through its counting
 * zalloc/zfree hooks (ws_deflate_memory), and the compression ratio on a
 * stream of small JSON-like messages, for each window size and memLevel.
 * The table in csrc/ws_deflate.h comes from this program.
 *
 *   cc -O2 -Icsrc -o /tmp/deflate_mem bench/deflate_mem.c csrc/ws_deflate.c \
 *     csrc/ws_buf.c csrc/ws_http.c -lz && /tmp/deflate_mem
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ws_deflate.h"

/* A 64 KiB text message. */
static void fill_text(unsigned char *p, size_t n) {
  static const char *const w[] = {"alpha ", "beta ", "\"gamma\": ", "42, ",
                                  "delta ", "{\"eps\":", "}\n", "zeta "};
  unsigned s = 1;
  size_t i = 0;
  while (i < n) {
    const char *x;
    s = s * 1103515245u + 12345u;
    x = w[(s >> 16) % 8];
    while (*x && i < n) p[i++] = (unsigned char)*x++;
  }
}

/* Compressed bytes for 1000 chat-like JSON messages (about 120 bytes each)
 * with context takeover. */
static size_t chat_ratio(int bits, int ml, size_t *raw) {
  ws_deflate_config_t c;
  ws_deflate_params_t p = {0, 0, 15, 15};
  ws_deflate_t *d;
  ws_buf_t b = {0};
  char msg[256];
  size_t total = 0;
  unsigned s = 7;
  int i;
  static const char *const users[] = {"alice", "bob", "carol", "dave"};
  static const char *const words[] = {"hello", "any news?", "ok",
                                      "see you at the meeting", "lol",
                                      "deploying now", "thanks!"};
  ws_deflate_config_default(&c, 1);
  c.mem_level = (uint8_t)ml;
  p.server_max_window_bits = (uint8_t)bits;
  d = ws_deflate_new(&c, &p, 1);
  *raw = 0;
  for (i = 0; i < 1000; i++) {
    int n;
    s = s * 1103515245u + 12345u;
    n = snprintf(msg, sizeof msg,
                 "{\"type\":\"message\",\"room\":\"general\",\"user\":\"%s\","
                 "\"id\":%d,\"ts\":%u,\"text\":\"%s\"}",
                 users[(s >> 16) % 4], 100000 + i, 1700000000u + s % 1000,
                 words[(s >> 8) % 7]);
    *raw += (size_t)n;
    ws_deflate_compress(d, msg, (size_t)n, &b);
    total += WS_BUF_SIZE(&b);
    ws_buf_consume(&b, WS_BUF_SIZE(&b));
  }
  ws_buf_free(&b);
  ws_deflate_free(d);
  return total;
}

static size_t deflate_mem(int bits, int ml, const unsigned char *msg,
                          size_t n) {
  ws_deflate_config_t c;
  ws_deflate_params_t p = {0, 0, 15, 15};
  ws_deflate_t *d;
  ws_buf_t b = {0};
  size_t m;
  ws_deflate_config_default(&c, 1);
  c.mem_level = (uint8_t)ml;
  p.server_max_window_bits = (uint8_t)bits;
  d = ws_deflate_new(&c, &p, 1);
  ws_deflate_compress(d, msg, n, &b);
  m = ws_deflate_memory(d);
  ws_buf_free(&b);
  ws_deflate_free(d);
  return m;
}

static size_t inflate_mem(int bits, const unsigned char *msg, size_t n) {
  ws_deflate_config_t c;
  ws_deflate_params_t p = {0, 0, 15, 15};
  ws_deflate_t *s, *d;
  ws_buf_t b = {0}, out = {0};
  size_t m;
  ws_deflate_config_default(&c, 1);
  p.server_max_window_bits = (uint8_t)bits;
  s = ws_deflate_new(&c, &p, 1);
  d = ws_deflate_new(&c, &p, 0);
  ws_deflate_compress(s, msg, n, &b);
  ws_deflate_inflate(d, WS_BUF_PTR(&b), WS_BUF_SIZE(&b), 1, &out, 0);
  m = ws_deflate_memory(d);
  ws_buf_free(&b);
  ws_buf_free(&out);
  ws_deflate_free(s);
  ws_deflate_free(d);
  return m;
}

int main(void) {
  size_t n = 65536, raw = 0, base;
  unsigned char *msg = malloc(n);
  int bits, ml;
  ws_deflate_config_t c;
  ws_deflate_params_t p = {1, 1, 15, 15};
  ws_deflate_t *idle;

  fill_text(msg, n);
  ws_deflate_config_default(&c, 1);
  idle = ws_deflate_new(&c, &p, 1);
  base = ws_deflate_memory(idle);
  ws_deflate_free(idle);
  printf("idle ws_deflate_t: %zu bytes\n\n", base);

  printf("compressor (deflate), held after a 64 KiB message, bytes\n");
  printf("window  memLevel 8  memLevel 5\n");
  for (bits = 8; bits <= 15; bits++)
    printf("%6d  %10zu  %10zu\n", bits, deflate_mem(bits, 8, msg, n),
           deflate_mem(bits, 5, msg, n));
  printf("\ncompressor, window 12 and 15, by memLevel, bytes\n");
  for (ml = 1; ml <= 9; ml++)
    printf("memLevel %d  w12 %7zu  w15 %7zu\n", ml,
           deflate_mem(12, ml, msg, n), deflate_mem(15, ml, msg, n));
  printf("\ndecompressor (inflate), held after a 64 KiB message, bytes\n");
  for (bits = 8; bits <= 15; bits++)
    printf("window %2d  %7zu\n", bits, inflate_mem(bits, msg, n));
  printf("\n1000 chat messages with context takeover: compressed/raw\n");
  for (bits = 9; bits <= 15; bits += 3)
    for (ml = 1; ml <= 9; ml += ml < 5 ? 4 : 3) {
      size_t z = chat_ratio(bits, ml, &raw);
      printf("window %2d memLevel %d  %6zu / %zu = %.3f\n", bits, ml, z, raw,
             (double)z / (double)raw);
    }
  free(msg);
  return 0;
}
