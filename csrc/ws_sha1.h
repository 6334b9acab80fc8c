/*
 * ws_sha1: SHA-1 (FIPS 180-4) for the Sec-WebSocket-Accept value.
 *
 * RFC 6455 hashes the client's key with a fixed GUID: 60 bytes, two
 * compression blocks.  OpenSSL 3's EVP interface fetches the algorithm
 * from its provider on every context and allocates one, which cost more
 * than the hash itself; this is the plain algorithm on the stack, with
 * no allocation.  Not for anything that needs collision resistance: the
 * handshake uses SHA-1 only to prove the server read the key.
 */
#ifndef UVWS_WS_SHA1_H
#define UVWS_WS_SHA1_H

#include <stddef.h>
#include <stdint.h>

#define WS_SHA1_LEN 20

typedef struct ws_sha1 {
  uint32_t h[5];
  uint64_t len;           /* bytes hashed so far */
  uint8_t block[64];      /* a partial block */
} ws_sha1_t;

void ws_sha1_init(ws_sha1_t *s);
void ws_sha1_update(ws_sha1_t *s, const void *data, size_t n);
void ws_sha1_final(ws_sha1_t *s, uint8_t out[WS_SHA1_LEN]);

#endif
