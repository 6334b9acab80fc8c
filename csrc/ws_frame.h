/*
 * ws_frame: the RFC 6455 §5.2 frame header codec and masking.
 *
 * ws_frame_parse_header() is stateless: it reads a header (2 to 14 bytes)
 * from the bytes given, or says it needs more.  The caller (ws_conn) keeps
 * a partial header of at most 13 bytes between reads and streams payloads
 * itself, so any split of the input works.  Rules that depend on the role
 * or on negotiated extensions (masking required, RSV bits, opcodes, control
 * frame sizes) are checked by ws_frame_check().
 */
#ifndef UVWS_WS_FRAME_H
#define UVWS_WS_FRAME_H

#include <stddef.h>
#include <stdint.h>

enum {
  WS_OP_CONT = 0x0,
  WS_OP_TEXT = 0x1,
  WS_OP_BINARY = 0x2,
  WS_OP_CLOSE = 0x8,
  WS_OP_PING = 0x9,
  WS_OP_PONG = 0xA
};

#define WS_OP_IS_CONTROL(op) (((op) & 0x8) != 0)
#define WS_MAX_HEADER 14
#define WS_MAX_CONTROL 125

/* RSV bits as they sit in the first byte. */
#define WS_RSV1 0x40
#define WS_RSV2 0x20
#define WS_RSV3 0x10

typedef struct ws_frame_header {
  uint8_t fin;     /* 0 or 1 */
  uint8_t rsv;     /* first byte & 0x70 */
  uint8_t opcode;  /* 0..15 */
  uint8_t masked;  /* 0 or 1 */
  uint8_t mask[4]; /* valid when masked */
  uint8_t header_len;
  uint64_t len;    /* payload length */
} ws_frame_header_t;

/* Errors of ws_frame_parse_header. */
enum {
  WS_FRAME_ELEN = -1 /* 64-bit length with the most significant bit set */
};

/* Reads a header from p[0..n).  Returns its length (2..14) and fills *h,
 * 0 when more bytes are needed, or WS_FRAME_ELEN. */
int ws_frame_parse_header(const uint8_t *p, size_t n, ws_frame_header_t *h);

/* Checks a parsed header against the protocol rules for a receiver in the
 * given role: `must_be_masked` (a server's peer), `must_be_unmasked` (a
 * client's peer), `rsv_allowed` (bits an extension negotiated, e.g.
 * WS_RSV1; RSV1 is allowed only on the first frame of a data message, which
 * the caller checks), opcodes 0-2 and 8-10 only, control frames FIN and at
 * most 125 bytes.  Returns 0, or the close code to fail with (always 1002)
 * and sets *reason to a static one-line reason. */
int ws_frame_check(const ws_frame_header_t *h, int must_be_masked,
                   int must_be_unmasked, uint8_t rsv_allowed,
                   const char **reason);

/* Writes a header for a frame into out and returns its length.  `rsv` is
 * the RSV bits (e.g. WS_RSV1); `mask` is NULL for an unmasked frame, else 4
 * bytes.  Always uses the minimal length encoding. */
size_t ws_frame_write_header(uint8_t out[WS_MAX_HEADER], int fin, int rsv,
                             int opcode, const uint8_t *mask, uint64_t len);

/* XORs p[0..n) with mask in place, starting at mask byte `pos` (0..3),
 * a machine word at a time where possible.  Returns the mask position
 * after the last byte, (pos + n) % 4. */
size_t ws_mask(uint8_t *p, size_t n, const uint8_t mask[4], size_t pos);

/* Masks while copying: dst[i] = src[i] ^ mask[(pos + i) % 4]. dst and src
 * must not overlap unless equal. */
size_t ws_mask_copy(uint8_t *dst, const uint8_t *src, size_t n,
                    const uint8_t mask[4], size_t pos);

/* Is `code` a close code that may be sent on the wire and accepted from a
 * peer (RFC 6455 §7.4 and the IANA registry: 1000-1003, 1007-1014,
 * 3000-4999)? */
int ws_close_code_valid(int code);

#endif
