/*
 * ws_conn: the RFC 6455 message layer, sans I/O.
 *
 * Design criteria:
 * - Any split of the input works, down to one byte: the only state carried
 *   between feeds is a partial header (at most 13 bytes), the position in
 *   the current payload, the UTF-8 state, the fragments of a message and a
 *   partial control frame.
 * - Failures are detected at the earliest byte that makes them certain:
 *   size limits when the header is complete (before any payload), invalid
 *   UTF-8 on the chunk that holds the bad byte.
 * - No copy for the common case: an unfragmented frame whose whole payload
 *   is in the bytes fed is unmasked in place and delivered from there.  A
 *   control frame likewise.  Only fragments and frames split across feeds
 *   are gathered.
 * - An idle connection holds no large buffer: the reassembly buffer is
 *   released after a message unless it is small.
 * - permessage-deflate (RFC 7692) is a detour of the data path: compressed
 *   payload chunks are inflated into the reassembly buffer as they arrive,
 *   so the size limit and UTF-8 validation apply to the inflated bytes at
 *   the earliest point, and the compressed bytes are never gathered.
 */
#include "ws_conn.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "ws_utf8.h"

/* Reassembly buffers up to this capacity are kept for the next message;
 * bigger ones are freed so an idle connection costs little. */
#define MSG_KEEP_CAP 4096

/* ws_conn_recv_buf() allocates at most this much ahead of the bytes a
 * message has received (or as much as it holds, when that is more). */
#define RECV_AHEAD (256 * 1024)

/* Data pointer for empty payloads, so events never carry NULL. */
static const uint8_t empty[1] = {0};

static void emit(ws_conn_t *c, const ws_event_t *ev) {
  if (c->on_event) c->on_event(c->ud, ev);
}

/* WS_EV_MARK, if asked for: before acting on a control frame or failing. */
static void mark(ws_conn_t *c) {
  ws_event_t ev;
  if (!c->marks) return;
  memset(&ev, 0, sizeof ev);
  ev.type = WS_EV_MARK;
  ev.data = empty;
  emit(c, &ev);
}

static void reset_message(ws_conn_t *c) {
  c->msg_opcode = 0;
  c->msg_rsv = 0;
  c->msg_wire = 0;
  c->utf8 = WS_UTF8_INIT;
  if (c->msg.cap > MSG_KEEP_CAP)
    ws_buf_free(&c->msg);
  else
    c->msg.off = c->msg.len = 0;
}

/* Fails the connection: queues a Close frame with code and reason (unless
 * one was sent), marks it failed and delivers WS_EV_FAIL.  close_sent is
 * set even if queueing ran out of memory: nothing more may be sent either
 * way, and the transport closes the connection. */
static void fail(ws_conn_t *c, int code, const char *reason) {
  ws_event_t ev;

  if (!c->close_sent) mark(c); /* (which may close) */
  if (!c->close_sent) {
    (void)ws_conn_close(c, code, reason, strlen(reason));
    c->close_sent = 1;
  }
  c->failed = 1;
  c->in_payload = 0;
  reset_message(c);
  ws_buf_free(&c->msg);
  memset(&ev, 0, sizeof ev);
  ev.type = WS_EV_FAIL;
  ev.code = code;
  ev.reason = reason;
  ev.data = empty;
  emit(c, &ev);
}

/* Does text validation apply to the message in progress?  With RSV1 set
 * (permessage-deflate, RFC 7692) the payload is compressed; the layer that
 * inflates it validates the result. */
static int text_checked(const ws_conn_t *c) {
  return c->msg_opcode == WS_OP_TEXT && !(c->msg_rsv & WS_RSV1);
}

/* Is the message in progress compressed and inflated here?  RSV1 without
 * a ws_deflate_t (rsv_allowed set by hand) leaves the payload as it came,
 * for a layer above to handle. */
static int inflating(const ws_conn_t *c) {
  return (c->msg_rsv & WS_RSV1) && c->deflate != NULL;
}

/* Applies the rules that need the connection's state to a parsed header
 * and sets up the payload.  Returns 0, or -1 after failing. */
static int begin_frame(ws_conn_t *c, const ws_frame_header_t *h) {
  const char *reason = NULL;
  int code = ws_frame_check(h, c->role == WS_ROLE_SERVER,
                            c->role == WS_ROLE_CLIENT, c->rsv_allowed,
                            &reason);

  if (code) {
    fail(c, code, reason);
    return -1;
  }
  if (WS_OP_IS_CONTROL(h->opcode)) {
    /* RFC 7692 §6.1 and §5.2: extension bits mark a message, so they may
     * appear only on the first frame of a data message. */
    if (h->rsv) {
      fail(c, 1002, "reserved bits set");
      return -1;
    }
    c->ctl_len = 0;
  } else {
    uint64_t so_far = 0;
    if (h->opcode == WS_OP_CONT) {
      if (!c->msg_opcode) {
        /* §5.4: a continuation belongs to a message in progress. */
        fail(c, 1002, "continuation frame without a message");
        return -1;
      }
      if (h->rsv) {
        fail(c, 1002, "reserved bits set");
        return -1;
      }
      so_far = WS_BUF_SIZE(&c->msg);
    } else if (c->msg_opcode) {
      /* §5.4: fragments of one message may not be interleaved with
       * another message. */
      fail(c, 1002, "new message before the previous one ended");
      return -1;
    }
    if (h->opcode != WS_OP_CONT) {
      c->msg_opcode = h->opcode;
      c->msg_rsv = h->rsv;
      c->utf8 = WS_UTF8_INIT;
      c->msg_wire = 0;
    }
    /* §7.4.1, 1009: the limits are enforced from the header, before any
     * of the payload is received. */
    if (c->lim->max_frame_size && h->len > c->lim->max_frame_size) {
      fail(c, 1009, "frame too big");
      return -1;
    }
    if (c->lim->max_message_size) {
      uint64_t max = c->lim->max_message_size;
      if (inflating(c)) {
        /* A compressed message: the inflated size is checked as it is
         * produced; here its compressed bytes, which deflate's framing
         * may make slightly more than the inflated ones. */
        so_far = c->msg_wire;
        if (max < UINT64_MAX / 2) max += max / 32 + 1024;
      }
      if (so_far > max || h->len > max - so_far) {
        fail(c, 1009, "message too big");
        return -1;
      }
    }
    c->msg_wire += h->len;
  }
  c->fh = *h;
  c->remaining = h->len;
  c->mask_pos = 0;
  c->in_payload = 1;
  return 0;
}

/* Handles a complete Close frame (§5.5.1, §7.1.5).  Returns 0, or -1 after
 * failing. */
static int on_close(ws_conn_t *c, const uint8_t *p, size_t n) {
  ws_event_t ev;
  int code = 1005;

  if (n == 1) {
    fail(c, 1002, "close frame with one byte payload");
    return -1;
  }
  if (n >= 2) {
    code = (p[0] << 8) | p[1];
    if (!ws_close_code_valid(code)) {
      fail(c, 1002, "invalid close code");
      return -1;
    }
    if (!ws_utf8_valid(p + 2, n - 2)) {
      fail(c, 1007, "invalid UTF-8 in close reason");
      return -1;
    }
  }
  c->close_received = 1;
  if (!c->close_sent) {
    /* §5.5.1: echo the status code; an empty Close is echoed empty. */
    if (ws_conn_close(c, n >= 2 ? code : 0, NULL, 0) != WS_CONN_OK) {
      fail(c, 1011, "out of memory");
      return -1;
    }
  }
  reset_message(c);
  ws_buf_free(&c->msg);
  memset(&ev, 0, sizeof ev);
  ev.type = WS_EV_CLOSE;
  ev.code = code;
  ev.data = n >= 2 ? p + 2 : empty;
  ev.len = n >= 2 ? n - 2 : 0;
  emit(c, &ev);
  return -1;
}

/* Handles a complete control frame.  Returns 0 to go on parsing, -1 to
 * stop (close or failure). */
static int on_control(ws_conn_t *c, const uint8_t *p, size_t n) {
  ws_event_t ev;

  mark(c);
  if (c->fh.opcode == WS_OP_CLOSE) return on_close(c, p, n);
  memset(&ev, 0, sizeof ev);
  ev.data = n ? p : empty;
  ev.len = n;
  if (c->fh.opcode == WS_OP_PING) {
    /* §5.5.2: answer with a Pong carrying the same data, unless this side
     * has already sent its Close (§5.5.1: nothing may follow it). */
    if (!c->close_sent &&
        ws_conn_send(c, WS_OP_PONG, p, n) == WS_CONN_ENOMEM) {
      fail(c, 1011, "out of memory");
      return -1;
    }
    ev.type = WS_EV_PING;
  } else {
    ev.type = WS_EV_PONG;
  }
  emit(c, &ev);
  return 0;
}

/* Ends a data frame whose payload has been validated and stored (or, with
 * `inplace`, is p[0..n)).  Delivers the message on the last fragment.
 * Returns 0, or -1 after failing. */
static int end_data_frame(ws_conn_t *c, const uint8_t *p, size_t n,
                          int inplace) {
  ws_event_t ev;

  if (!c->fh.fin) return 0;
  /* A text message must end at a character boundary (§8.1). */
  if ((text_checked(c) || (inflating(c) && c->msg_opcode == WS_OP_TEXT)) &&
      c->utf8 != WS_UTF8_INIT) {
    fail(c, 1007, "invalid UTF-8 in text message");
    return -1;
  }
  memset(&ev, 0, sizeof ev);
  ev.type = WS_EV_MESSAGE;
  ev.opcode = c->msg_opcode;
  if (inplace) {
    ev.data = n ? p : empty;
    ev.len = n;
  } else {
    ev.len = WS_BUF_SIZE(&c->msg);
    ev.data = ev.len ? WS_BUF_PTR(&c->msg) : empty;
  }
  /* msg_rsv still holds the first frame's RSV bits during the callback, so
   * an extension layer can tell a compressed message. */
  emit(c, &ev);
  reset_message(c);
  return 0;
}

/* Inflates the next n payload bytes of a compressed message into the
 * reassembly buffer (RFC 7692 §7.2.2), validating inflated text as it comes
 * out.  Returns n, and sets *stop when parsing must end. */
static size_t inflate_payload(ws_conn_t *c, const uint8_t *p, size_t n,
                              int *stop) {
  size_t before = WS_BUF_SIZE(&c->msg), got;
  size_t limit = c->lim->max_inflated_size ? c->lim->max_inflated_size
                                           : c->lim->max_message_size;
  int fin = c->fh.fin && c->remaining == 0;
  int r = ws_deflate_inflate(c->deflate, p, n, fin, &c->msg, limit);

  got = ws_deflate_last_out(c->deflate);
  if (got && c->msg_opcode == WS_OP_TEXT &&
      ws_utf8_validate(&c->utf8, WS_BUF_PTR(&c->msg) + before, got) ==
          WS_UTF8_INVALID) {
    fail(c, 1007, "invalid UTF-8 in text message");
    *stop = 1;
    return n;
  }
  if (r != 0) {
    /* §7.4.1: 1009 for a message too big to process, 1007 for data that
     * is not consistent with the message type (it does not inflate). */
    if (r == WS_DEFLATE_ETOOBIG)
      fail(c, 1009, "message too big");
    else if (r == WS_DEFLATE_EDATA)
      fail(c, 1007, "invalid compressed data");
    else
      fail(c, 1011, "out of memory");
    *stop = 1;
    return n;
  }
  if (c->remaining == 0) {
    c->in_payload = 0;
    *stop = end_data_frame(c, NULL, 0, 0) != 0;
  }
  return n;
}

/* Processes the next payload bytes of the current frame from p[0..avail).
 * Returns the number of bytes used, and sets *stop when parsing must end
 * (close or failure). */
static size_t payload(ws_conn_t *c, uint8_t *p, size_t avail, int *stop) {
  size_t n = c->remaining < avail ? (size_t)c->remaining : avail;
  int whole = c->remaining == c->fh.len && n == c->remaining;
  int control = WS_OP_IS_CONTROL(c->fh.opcode);

  if (c->fh.masked)
    c->mask_pos = (uint8_t)ws_mask(p, n, c->fh.mask, c->mask_pos);
  c->remaining -= n;
  *stop = 0;

  if (control) {
    if (whole) {
      /* The whole control frame is here: no copy. */
      c->in_payload = 0;
      *stop = on_control(c, p, n) != 0;
      return n;
    }
    if (!c->ctl && !(c->ctl = malloc(WS_MAX_CONTROL))) {
      fail(c, 1011, "out of memory");
      *stop = 1;
      return n;
    }
    memcpy(c->ctl + c->ctl_len, p, n);
    c->ctl_len = (uint8_t)(c->ctl_len + n);
    if (c->remaining == 0) {
      uint8_t *ctl = c->ctl;
      c->in_payload = 0;
      c->ctl = NULL;
      *stop = on_control(c, ctl, c->ctl_len) != 0;
      free(ctl);
    }
    return n;
  }

  if (inflating(c)) return inflate_payload(c, p, n, stop);

  /* Data: validate text as soon as the bytes are unmasked, so a bad byte
   * fails the connection before the rest of the frame arrives (§8.1). */
  if (text_checked(c) &&
      ws_utf8_validate(&c->utf8, p, n) == WS_UTF8_INVALID) {
    fail(c, 1007, "invalid UTF-8 in text message");
    *stop = 1;
    return n;
  }
  if (whole && c->fh.fin && c->fh.opcode != WS_OP_CONT) {
    /* An unfragmented message entirely in the caller's bytes. */
    c->in_payload = 0;
    *stop = end_data_frame(c, p, n, 1) != 0;
    return n;
  }
  if (c->msg.data && p == c->msg.data + c->msg.len) {
    /* Received straight into the reassembly buffer (ws_conn_recv_buf):
     * already in place. */
    c->msg.len += n;
  } else if (ws_buf_append(&c->msg, p, n, 0) != 0) {
    fail(c, 1011, "out of memory");
    *stop = 1;
    return n;
  }
  if (c->remaining == 0) {
    c->in_payload = 0;
    *stop = end_data_frame(c, NULL, 0, 0) != 0;
  }
  return n;
}

uint8_t *ws_conn_recv_buf(ws_conn_t *c, size_t min, size_t slack,
                          size_t *room) {
  size_t want, have, ahead;

  if (c->failed || c->close_received || !c->in_payload ||
      WS_OP_IS_CONTROL(c->fh.opcode) || inflating(c) || c->remaining < min ||
      c->remaining > SIZE_MAX / 4)
    return NULL;
  /* Room for the rest of the frame, but never more than RECV_AHEAD beyond
   * what the message holds already: a header alone must not make an idle
   * peer cost us up to the message size limit. */
  have = WS_BUF_SIZE(&c->msg);
  ahead = have > RECV_AHEAD ? have : RECV_AHEAD;
  want = (size_t)c->remaining < ahead ? (size_t)c->remaining : ahead;
  if (ws_buf_reserve(&c->msg, want + slack, 0) != 0) return NULL;
  have = c->msg.cap - c->msg.len;
  *room = have < (size_t)c->remaining + slack ? have
                                             : (size_t)c->remaining + slack;
  return c->msg.data + c->msg.len;
}

void ws_conn_init(ws_conn_t *c, ws_role_t role, ws_conn_event_fn fn,
                  void *ud) {
  static const ws_limits_t no_limits = {0, 0, 0};
  memset(c, 0, sizeof *c);
  c->lim = &no_limits;
  c->role = (uint8_t)role;
  c->on_event = fn;
  c->ud = ud;
  c->utf8 = WS_UTF8_INIT;
}

void ws_conn_free(ws_conn_t *c) {
  free(c->ctl);
  c->ctl = NULL;
  ws_buf_free(&c->msg);
  ws_buf_free(&c->out);
  ws_deflate_free(c->deflate);
  c->deflate = NULL;
}

void ws_conn_set_deflate(ws_conn_t *c, ws_deflate_t *d) {
  if (!d) return;
  ws_deflate_free(c->deflate);
  c->deflate = d;
  /* RFC 7692 §6: the extension owns RSV1, the "Per-Message Compressed"
   * bit. */
  c->rsv_allowed |= WS_RSV1;
}

/* XORs a short payload (at most 125 bytes) with the key, eight bytes at
 * a time. */
static void unmask_short(uint8_t *p, size_t n, const uint8_t key[4]) {
  uint64_t m, w;
  uint32_t k;
  size_t i = 0;
  memcpy(&k, key, 4);
  m = ((uint64_t)k << 32) | k;
  for (; n - i >= 8; i += 8) {
    memcpy(&w, p + i, 8);
    w ^= m;
    memcpy(p + i, &w, 8);
  }
  for (; i < n; i++) p[i] ^= key[i & 3];
}

/* The small-frame fast path: a whole unfragmented text or binary frame of
 * at most 125 bytes, with no extension bits, no message in progress and
 * within the limits, at p[0..avail).  Delivers it in place and returns its
 * length on the wire; returns 0 for anything else, which then takes the
 * general path (so every failure is reported there, as usual). */
static size_t small_frame(ws_conn_t *c, uint8_t *p, size_t avail) {
  uint8_t b0 = p[0], b1 = p[1];
  size_t n = b1 & 0x7f, hl;
  int masked = (b1 & 0x80) != 0;
  ws_event_t ev;

  /* FIN, RSV 0, opcode 1 or 2; length 0..125; masked as the role wants. */
  if ((b0 != 0x81 && b0 != 0x82) || n > WS_MAX_CONTROL ||
      masked != (c->role == WS_ROLE_SERVER) || c->msg_opcode)
    return 0;
  hl = masked ? 6 : 2;
  const ws_limits_t *lim = c->lim;
  if (avail < hl + n || (lim->max_frame_size && n > lim->max_frame_size) ||
      (lim->max_message_size && n > lim->max_message_size))
    return 0;
  if (masked) unmask_short(p + hl, n, p + 2);
  c->msg_opcode = b0 & 0x0f;
  if (c->msg_opcode == WS_OP_TEXT && !ws_utf8_valid(p + hl, n)) {
    fail(c, 1007, "invalid UTF-8 in text message");
    return hl + n;
  }
  memset(&ev, 0, sizeof ev);
  ev.type = WS_EV_MESSAGE;
  ev.opcode = c->msg_opcode;
  ev.data = n ? p + hl : empty;
  ev.len = n;
  emit(c, &ev);
  c->msg_opcode = 0;
  return hl + n;
}

size_t ws_conn_feed(ws_conn_t *c, uint8_t *data, size_t len) {
  size_t i = 0;

  if (c->failed || c->close_received) return 0;
  while (i < len) {
    ws_frame_header_t h;
    size_t old, take, avail;
    const uint8_t *src;
    int r, stop;

    if (c->in_payload) {
      i += payload(c, data + i, len - i, &stop);
      if (stop) return i;
      continue;
    }
    if (c->hdr_len == 0 && len - i >= 2) {
      size_t k = small_frame(c, data + i, len - i);
      if (k) {
        i += k;
        if (c->failed) return i;
        continue;
      }
    }

    /* Header: parse straight from the input unless part of it came in an
     * earlier feed, in which case complete the saved part. */
    old = c->hdr_len;
    if (old == 0) {
      src = data + i;
      avail = len - i;
      take = 0;
    } else {
      take = WS_MAX_HEADER - old;
      if (take > len - i) take = len - i;
      memcpy(c->hdr + old, data + i, take);
      src = c->hdr;
      avail = old + take;
    }
    r = ws_frame_parse_header(src, avail, &h);
    if (r == 0) {
      /* Incomplete: at most 13 bytes, which the saved header holds. */
      if (old == 0) memcpy(c->hdr, data + i, avail);
      c->hdr_len = (uint8_t)avail;
      return len;
    }
    c->hdr_len = 0;
    if (r < 0) {
      /* The length's first byte (header byte 3) decided it; an earlier
       * feed could not have held it, or it would have failed then. */
      i += old < 3 ? 3 - old : 0;
      fail(c, 1002, "64-bit length with MSB set");
      return i;
    }
    i += (size_t)r - old;
    if (begin_frame(c, &h) != 0) return i;
    if (h.len == 0) {
      /* An empty payload completes the frame now, even at the end of the
       * input. */
      i += payload(c, data + i, 0, &stop);
      if (stop) return i;
    }
  }
  return i;
}

/* Appends one frame to `out`, masked with a fresh key in the client role
 * (§5.3: the key must be unpredictable, from a strong source of entropy).
 * Checks nothing but memory. */
static int append_frame(ws_conn_t *c, int fin, int rsv, int opcode,
                        const uint8_t *p, size_t n) {
  uint8_t hdr[WS_MAX_HEADER], key[4];
  const uint8_t *mask = NULL;
  size_t hl;

  if (c->role == WS_ROLE_CLIENT) {
    if (RAND_bytes(key, sizeof key) != 1) return WS_CONN_ENOMEM;
    mask = key;
  }
  hl = ws_frame_write_header(hdr, fin, rsv, opcode, mask, n);
  if (n > SIZE_MAX - hl || ws_buf_reserve(&c->out, hl + n, 0) != 0)
    return WS_CONN_ENOMEM;
  memcpy(c->out.data + c->out.len, hdr, hl);
  c->out.len += hl;
  if (n) {
    if (mask)
      ws_mask_copy(c->out.data + c->out.len, p, n, mask, 0);
    else
      memcpy(c->out.data + c->out.len, p, n);
    c->out.len += n;
  }
  return WS_CONN_OK;
}

/* Appends a compressed message (RFC 7692 §7.2.1) as one frame with RSV1.
 * The payload is compressed straight into `out` after room for the longest
 * header, then moved up against the header once its length is known. */
static int append_compressed(ws_conn_t *c, int opcode, const void *p,
                             size_t n) {
  uint8_t hdr[WS_MAX_HEADER], key[4], *dst;
  const uint8_t *mask = NULL;
  size_t start = WS_BUF_SIZE(&c->out), zlen, hl;

  if (c->role == WS_ROLE_CLIENT) {
    if (RAND_bytes(key, sizeof key) != 1) return WS_CONN_ENOMEM;
    mask = key;
  }
  if (ws_buf_reserve(&c->out, WS_MAX_HEADER, 0) != 0) return WS_CONN_ENOMEM;
  c->out.len += WS_MAX_HEADER;
  if (ws_deflate_compress(c->deflate, p, n, &c->out) != 0) {
    /* `out` is back to the gap, which goes too. */
    c->out.len -= WS_MAX_HEADER;
    return WS_CONN_ENOMEM;
  }
  zlen = WS_BUF_SIZE(&c->out) - start - WS_MAX_HEADER;
  hl = ws_frame_write_header(hdr, 1, WS_RSV1, opcode, mask, zlen);
  dst = WS_BUF_PTR(&c->out) + start;
  if (hl < WS_MAX_HEADER) memmove(dst + hl, dst + WS_MAX_HEADER, zlen);
  memcpy(dst, hdr, hl);
  c->out.len -= WS_MAX_HEADER - hl;
  if (mask) ws_mask(dst + hl, zlen, mask, 0);
  return WS_CONN_OK;
}

int ws_conn_send_frame(ws_conn_t *c, int fin, int rsv, int opcode,
                       const void *data, size_t len) {
  if (c->close_sent) return WS_CONN_ECLOSED;
  if (rsv & ~0x70) return WS_CONN_EINVAL;
  switch (opcode) {
  case WS_OP_TEXT:
  case WS_OP_BINARY:
    break;
  case WS_OP_CONT:
    /* Extension bits belong on the first frame only (RFC 7692 §6.1). */
    if (rsv) return WS_CONN_EINVAL;
    break;
  case WS_OP_PING:
  case WS_OP_PONG:
    /* §5.5: control frames are short, unfragmented and carry no extension
     * bits. */
    if (!fin || rsv || len > WS_MAX_CONTROL) return WS_CONN_EINVAL;
    break;
  default:
    /* Close goes through ws_conn_close; the rest are reserved. */
    return WS_CONN_EINVAL;
  }
  if (len && !data) return WS_CONN_EINVAL;
  return append_frame(c, fin ? 1 : 0, rsv, opcode, data, len);
}

int ws_conn_send_ex(ws_conn_t *c, int opcode, const void *data, size_t len,
                    int flags) {
  /* Fast path: a short unmasked text or binary frame, reserved once. */
  if (len <= WS_MAX_CONTROL && c->role == WS_ROLE_SERVER && !c->close_sent &&
      !flags && !c->deflate && (opcode == WS_OP_TEXT ||
                                opcode == WS_OP_BINARY) && (data || !len)) {
    uint8_t *q;
    if (ws_buf_reserve(&c->out, 2 + len, 0) != 0) return WS_CONN_ENOMEM;
    q = c->out.data + c->out.len;
    q[0] = (uint8_t)(0x80 | opcode);
    q[1] = (uint8_t)len;
    if (len) memcpy(q + 2, data, len);
    c->out.len += 2 + len;
    return WS_CONN_OK;
  }
  if (opcode == WS_OP_CONT) return WS_CONN_EINVAL;
  if (flags & ~(WS_SEND_NO_COMPRESS | WS_SEND_COMPRESS)) return WS_CONN_EINVAL;
  if (c->deflate && (opcode == WS_OP_TEXT || opcode == WS_OP_BINARY) &&
      !(flags & WS_SEND_NO_COMPRESS) &&
      ((flags & WS_SEND_COMPRESS) ||
       ws_deflate_should_compress(c->deflate, len))) {
    if (c->close_sent) return WS_CONN_ECLOSED;
    if (len && !data) return WS_CONN_EINVAL;
    return append_compressed(c, opcode, data, len);
  }
  return ws_conn_send_frame(c, 1, 0, opcode, data, len);
}

size_t ws_conn_direct_header(const ws_conn_t *c, int opcode, size_t len,
                             int flags, uint8_t hdr[WS_MAX_HEADER]) {
  if (c->role != WS_ROLE_SERVER || c->close_sent ||
      (opcode != WS_OP_TEXT && opcode != WS_OP_BINARY) ||
      (flags & ~(WS_SEND_NO_COMPRESS | WS_SEND_COMPRESS)))
    return 0;
  /* The same choice as ws_conn_send_ex(). */
  if (c->deflate && !(flags & WS_SEND_NO_COMPRESS) &&
      ((flags & WS_SEND_COMPRESS) ||
       ws_deflate_should_compress(c->deflate, len)))
    return 0;
  return ws_frame_write_header(hdr, 1, 0, opcode, NULL, len);
}

int ws_conn_send(ws_conn_t *c, int opcode, const void *data, size_t len) {
  return ws_conn_send_ex(c, opcode, data, len, 0);
}

int ws_conn_close(ws_conn_t *c, int code, const char *reason, size_t len) {
  uint8_t p[WS_MAX_CONTROL];
  int r;

  if (c->close_sent) return WS_CONN_ECLOSED;
  if (code == 0) {
    if (len) return WS_CONN_EINVAL;
    r = append_frame(c, 1, 0, WS_OP_CLOSE, NULL, 0);
  } else {
    /* §5.5.1: a two-byte code, then a UTF-8 reason; 125 bytes in all. */
    if (!ws_close_code_valid(code) || len > WS_MAX_CONTROL - 2 ||
        (len && !reason) || !ws_utf8_valid((const uint8_t *)reason, len))
      return WS_CONN_EINVAL;
    p[0] = (uint8_t)(code >> 8);
    p[1] = (uint8_t)code;
    if (len) memcpy(p + 2, reason, len);
    r = append_frame(c, 1, 0, WS_OP_CLOSE, p, len + 2);
  }
  if (r == WS_CONN_OK) c->close_sent = 1;
  return r;
}
