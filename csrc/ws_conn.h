/*
 * ws_conn: the RFC 6455 message layer, sans I/O.  Bytes in, events out;
 * send calls in, bytes out.
 *
 * ws_conn_feed() takes whatever bytes arrived, in any split down to one
 * byte, parses frames (keeping at most a 13-byte partial header between
 * calls), unmasks payloads in place, validates text incrementally (an
 * invalid byte fails the connection with 1007 as soon as it is seen, not
 * at the end of the message), reassembles fragmented messages with control
 * frames allowed between fragments, enforces the message and frame size
 * limits before the payload is received (1009), answers pings, and runs the
 * close handshake.  Events are delivered synchronously through the
 * callback; their data pointers are valid only during the callback.  An
 * unfragmented message whose whole payload is in the bytes fed is delivered
 * in place, without a copy.
 *
 * Everything this side must send (pongs, the close echo, the close frame of
 * a failure, and the caller's messages) is appended to `out`, which the
 * transport drains: write WS_BUF_PTR(&c->out), WS_BUF_SIZE(&c->out) bytes,
 * then ws_buf_consume() what was written.
 *
 * permessage-deflate (RFC 7692): after the handshake agreed on it, the
 * transport hands the connection a ws_deflate_t with ws_conn_set_deflate().
 * From then on RSV1 on the first frame of a data message marks it
 * compressed (§6.1; on a continuation or control frame it fails with
 * 1002).  Compressed payloads are inflated as they arrive, bounded by the
 * inflated size limit (1009 as soon as the output would pass it, before
 * the memory is spent), corrupt data fails with 1007, and inflated text is
 * validated as it comes out (1007 at the first bad byte).  Messages are
 * delivered inflated.  ws_conn_send() compresses text and binary messages
 * from the ws_deflate threshold up and sets RSV1; ws_conn_send_ex() can
 * opt a message out (or in).
 */
#ifndef UVWS_WS_CONN_H
#define UVWS_WS_CONN_H

#include <stddef.h>
#include <stdint.h>

#include "ws_buf.h"
#include "ws_deflate.h"
#include "ws_frame.h"

typedef enum { WS_ROLE_SERVER = 0, WS_ROLE_CLIENT = 1 } ws_role_t;

enum {
  /* A complete text or binary message (opcode, data, len).  Text has been
   * validated as UTF-8. */
  WS_EV_MESSAGE = 1,
  /* A ping (data, len); its pong has already been queued in `out`, unless
   * a close frame was sent before. */
  WS_EV_PING = 2,
  /* A pong (data, len). */
  WS_EV_PONG = 3,
  /* The peer's Close frame: code (1005 when the frame had no payload) and
   * reason (data, len; valid UTF-8).  If this side had not sent a Close,
   * the echo (same code, no reason; an empty Close for an empty one) has
   * been queued.  The close handshake is complete: a server now flushes
   * `out` and closes the TCP connection; a client waits for the server to
   * close it.  Nothing after this frame is parsed. */
  WS_EV_CLOSE = 4,
  /* The peer broke the protocol or a limit: code (1002, 1007, 1009, 1011)
   * and a static one-line reason.  A Close frame with that code and reason
   * has been queued unless one was sent before.  The transport flushes
   * `out` and closes the connection; nothing more is parsed. */
  WS_EV_FAIL = 5,
  /* Only with `marks` set: this side is about to act on a control frame
   * (answer a ping, echo a Close, deliver a pong) or to fail the
   * connection, which queues a Close.  A transport that holds messages
   * back (to hand a batch over at once) hands them over now, so that what
   * they make the layer above send goes out before the control frame's
   * answer, as if each had been handled when it came.  It may send (and
   * close) from here. */
  WS_EV_MARK = 6
};

typedef struct ws_event {
  int type;            /* WS_EV_* */
  int opcode;          /* WS_EV_MESSAGE: WS_OP_TEXT or WS_OP_BINARY */
  const uint8_t *data; /* payload (MESSAGE, PING, PONG) or reason (CLOSE) */
  size_t len;
  int code;            /* CLOSE, FAIL */
  const char *reason;  /* FAIL: static NUL-terminated reason */
} ws_event_t;

typedef void (*ws_conn_event_fn)(void *ud, const ws_event_t *ev);

/* Results of the send functions. */
enum {
  WS_CONN_OK = 0,
  WS_CONN_ECLOSED = -1, /* a Close frame was already sent */
  WS_CONN_EINVAL = -2,  /* control payload over 125 bytes, bad close code,
                           reason over 123 bytes, bad opcode */
  WS_CONN_ENOMEM = -3
};

/* Flags of ws_conn_send_ex(). */
enum {
  /* Send this message uncompressed even if permessage-deflate is on and it
   * is above the threshold (RFC 7692 §6: compression is per message). */
  WS_SEND_NO_COMPRESS = 1,
  /* Compress it even below the threshold (no effect without
   * permessage-deflate). */
  WS_SEND_COMPRESS = 2
};

/* Size limits; 0: none.  Connections point to theirs (ws_conn_t.lim), so
 * that all the connections of a server share one. */
typedef struct ws_limits {
  size_t max_message_size;
  size_t max_frame_size;
  /* Limit on the inflated size of a compressed message; 0: the same as
   * max_message_size.  With permessage-deflate, max_message_size also
   * bounds the compressed bytes of a message (plus 1/32 and 1 KiB of
   * slack for deflate's framing), as node ws does. */
  size_t max_inflated_size;
} ws_limits_t;

typedef struct ws_conn {
  /* Configuration: set by ws_conn_init, may be changed before feeding. */
  uint8_t role;             /* ws_role_t */
  uint8_t rsv_allowed;      /* RSV bits an extension negotiated */

  /* Message reassembly (the small fields; the rest is below). */
  uint8_t msg_opcode;       /* opcode of the message in progress, or 0 */
  uint8_t msg_rsv;          /* RSV bits of its first frame */
  uint32_t utf8;            /* ws_utf8 state of a text message */

  /* The limits, not owned: they must outlive the connection.
   * ws_conn_init points this at limits of 0 (none). */
  const ws_limits_t *lim;
  /* permessage-deflate streams, owned; NULL without the extension.  Set
   * with ws_conn_set_deflate(). */
  ws_deflate_t *deflate;
  ws_conn_event_fn on_event;
  void *ud;

  /* Close handshake. */
  uint8_t close_sent;       /* a Close frame is in `out` or was written */
  uint8_t close_received;   /* the peer's Close frame arrived */
  uint8_t failed;           /* a WS_EV_FAIL was delivered */

  /* Frame parser. */
  uint8_t hdr_len;          /* bytes of a partial header in hdr */
  uint8_t in_payload;       /* fh is parsed, payload follows */
  uint8_t mask_pos;
  /* Bytes of a control frame split across reads, in ctl. */
  uint8_t ctl_len;
  uint8_t marks;            /* deliver WS_EV_MARK events (default 0) */
  uint8_t hdr[WS_MAX_HEADER];
  ws_frame_header_t fh;
  uint64_t remaining;       /* payload bytes of fh not yet seen */

  /* Message reassembly. */
  uint64_t msg_wire;        /* compressed payload bytes of the message */
  ws_buf_t msg;             /* fragments so far; freed after delivery */

  /* A control frame split across reads, gathered in WS_MAX_CONTROL bytes
   * allocated only then (a whole one is handled in place). */
  uint8_t *ctl;

  /* Bytes to send. */
  ws_buf_t out;
} ws_conn_t;

/* Sets up c (no allocation).  Limits start at 0 (none): c->lim points to
 * constant zero limits until the caller sets it. */
void ws_conn_init(ws_conn_t *c, ws_role_t role, ws_conn_event_fn fn,
                  void *ud);

/* Frees the buffers and the ws_deflate_t; c may be initialized again. */
void ws_conn_free(ws_conn_t *c);

/* Feeds received bytes, which may be modified in place (unmasking).
 * Returns the number of bytes consumed: all of them, except after a
 * WS_EV_CLOSE or WS_EV_FAIL, which end parsing (later calls consume
 * nothing and deliver nothing). */
size_t ws_conn_feed(ws_conn_t *c, uint8_t *data, size_t len);

/* Zero-copy receive of large payloads.  While the parser is inside the
 * payload of an uncompressed data frame with at least `min` bytes to go,
 * returns the end of the reassembly buffer, grown so that the next
 * received bytes can land there, and sets *room to the bytes free (at most
 * the payload bytes still expected, c->remaining, plus `slack`).  Returns
 * NULL otherwise (or when out of memory): receive anywhere and feed as
 * usual.  After receiving k bytes there, feed the first
 * min(k, c->remaining) of them from that very place with ws_conn_feed(),
 * which then appends nothing; the bytes beyond belong to the next frames
 * and must be moved elsewhere before that call (delivering the message
 * frees the buffer) and fed after it.  Nothing else may be fed in
 * between. */
uint8_t *ws_conn_recv_buf(ws_conn_t *c, size_t min, size_t slack,
                          size_t *room);

/* Turns permessage-deflate on with the streams d (from ws_deflate_new()
 * with the agreed parameters and this side's role), before any frame is
 * fed or sent.  The connection owns d from then on and frees it in
 * ws_conn_free(); RSV1 is added to rsv_allowed.  A NULL d does nothing. */
void ws_conn_set_deflate(ws_conn_t *c, ws_deflate_t *d);

/* Appends a whole message or control frame (unfragmented).  A client masks
 * it with a fresh key from RAND_bytes.  opcode is WS_OP_TEXT, WS_OP_BINARY,
 * WS_OP_PING or WS_OP_PONG.  With permessage-deflate, text and binary
 * messages of at least the threshold are compressed (RSV1 set).  Returns a
 * WS_CONN_* code. */
int ws_conn_send(ws_conn_t *c, int opcode, const void *data, size_t len);

/* ws_conn_send() with WS_SEND_* flags: WS_SEND_NO_COMPRESS sends the
 * message as is, WS_SEND_COMPRESS compresses it whatever its size.
 * Control frames are never compressed (RFC 7692 §6.1). */
int ws_conn_send_ex(ws_conn_t *c, int opcode, const void *data, size_t len,
                    int flags);

/* Zero-copy send.  When ws_conn_send_ex(c, opcode, data, len, flags)
 * would append exactly one unmasked, uncompressed frame, writes that
 * frame's header into hdr and returns its length: the caller may then
 * write the header and the payload to the network itself instead, as long
 * as `out` is empty (nothing may overtake what is queued), and append to
 * `out` whatever the network did not take.  Returns 0 when the message
 * must go through ws_conn_send_ex(): in the client role (frames are
 * masked), for a message to compress, after a Close was sent, and for
 * invalid arguments (which ws_conn_send_ex() reports). */
size_t ws_conn_direct_header(const ws_conn_t *c, int opcode, size_t len,
                             int flags, uint8_t hdr[WS_MAX_HEADER]);

/* Appends one frame of a fragmented message: the first with WS_OP_TEXT or
 * WS_OP_BINARY, the rest with WS_OP_CONT, the last with fin = 1.  `rsv`
 * as in ws_frame_write_header.  Never compresses: a caller that sets RSV1
 * supplies compressed payloads itself. */
int ws_conn_send_frame(ws_conn_t *c, int fin, int rsv, int opcode,
                       const void *data, size_t len);

/* Appends a Close frame: code 0 sends an empty payload, else code (which
 * must be valid to send) and reason (at most 123 bytes).  Marks
 * close_sent; later sends return WS_CONN_ECLOSED. */
int ws_conn_close(ws_conn_t *c, int code, const char *reason, size_t len);

/* Has the close handshake completed or the connection failed, so that the
 * transport should be closed once `out` is flushed? */
#define WS_CONN_DONE(c) \
  ((c)->failed || ((c)->close_sent && (c)->close_received))

#endif
