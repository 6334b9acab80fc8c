/*
 * ws_deflate: the permessage-deflate extension (RFC 7692), sans I/O.
 *
 * Two halves:
 *
 *  - Negotiation (RFC 7692 §5, §7.1) on the Sec-WebSocket-Extensions header
 *    (RFC 6455 §9.1 grammar, quoted-string values allowed).  A server picks
 *    the first acceptable permessage-deflate offer and writes its response;
 *    a client writes its offer and checks the server's response.  Both give
 *    the agreed parameters, a ws_deflate_params_t.
 *
 *  - Streams (RFC 7692 §7.2): a ws_deflate_t per connection compresses
 *    outgoing messages whole and inflates incoming ones chunk by chunk,
 *    bounded by the message size limit so that a decompression bomb costs at
 *    most the limit plus one byte of output.  Each zlib stream is allocated
 *    on first use; a direction without context takeover frees its stream
 *    after every message, so an idle connection then holds no zlib memory.
 *
 * Window bits 8.  zlib refuses raw deflate with windowBits 8, so a
 * compressor that negotiated 8 uses 9.  That is still correct: zlib never
 * emits a distance greater than the window size minus MIN_LOOKAHEAD (262
 * bytes), so with a 512-byte window its distances stay at or below 250 and
 * fit the peer's 256-byte window.  Inflate accepts windowBits 8 and uses
 * exactly the negotiated size: data from a peer that honours its window
 * always inflates.  Data that refers further back than agreed fails with
 * WS_DEFLATE_EDATA (a 1007 close) when the bytes referred to are no longer
 * in the window; zlib checks a distance only against what it holds, which
 * includes the output of the current call, so such a violation may also go
 * unnoticed, depending on how the input was split.
 *
 * Memory held per connection, in bytes (zlib 1.2.13, x86-64), measured by
 * bench/deflate_mem.c through the counting zalloc/zfree hooks
 * (what ws_deflate_memory() reports: the z_stream and the 48-byte
 * ws_deflate_t included):
 *
 *   compressor (deflate), after a message, context takeover on
 *     window   memLevel 8   memLevel 5
 *       15       268 256      153 568
 *       14       202 720       88 032
 *       13       169 952       55 264
 *       12       153 568       38 880
 *       11       145 376       30 688
 *       10       141 280       26 592
 *     9, 8       139 232       24 544
 *   compressor, window 12, memLevel 1..9: 23 520, 24 544, 26 592, 30 688,
 *     38 880, 55 264, 88 032, 153 568, 284 640 (window 15: 138 208 at
 *     memLevel 1 up to 399 328 at memLevel 9).  In short, about
 *     6 KiB + (4 << window) + (2 << (memLevel + 8)).
 *   decompressor (inflate), after a message, context takeover on
 *     window 15: 40 088   14: 23 704   13: 15 512   12: 11 416
 *            11:  9 368   10:  8 344    9:  7 832    8:  7 576
 *     (about 7.3 KiB + (1 << window)).
 *   No context takeover in a direction: 0 bytes between messages, the
 *   amounts above while a message is being compressed or inflated.
 *
 *   Both directions with context takeover: 301 KiB per connection with
 *   zlib's defaults (15/8, as node ws), 49 KiB with the server defaults
 *   below (12/5).  On 1000 chat-like JSON messages of about 100 bytes the
 *   compressed size is 12.6% of the input at 15/8, 13.5% at 12/5, 13.6% at
 *   12/1 and 25% at window 9.
 */
#ifndef UVWS_WS_DEFLATE_H
#define UVWS_WS_DEFLATE_H

#include <stddef.h>
#include <stdint.h>

#include "ws_buf.h"
#include "ws_http.h"

/* What this side is willing to do.  The same structure serves a server and
 * a client; the meaning of each field for either role is given below. */
typedef struct ws_deflate_config {
  /* 0: never offer (client) or accept (server) the extension. */
  uint8_t enabled;
  /* Server: always answer with server_no_context_takeover, i.e. reset the
   * compressor after each message (RFC 7692 §7.1.1.1).  Client: offer it,
   * and require the server to accept it. */
  uint8_t server_no_context_takeover;
  /* Server: always answer with client_no_context_takeover, so the client
   * resets its compressor and this side can free its decompressor after
   * each message (§7.1.1.2); it is also answered whenever the client
   * offered it.  Client: offer it, and reset the compressor after each
   * message even if the server does not repeat it. */
  uint8_t client_no_context_takeover;
  /* 8..15.  Server: the largest window this side compresses with; it is
   * answered as server_max_window_bits when smaller than 15 or than the
   * client's offer (§7.1.2.1).  Client: when smaller than 15, offered as
   * server_max_window_bits, which the server must then honour. */
  uint8_t server_max_window_bits;
  /* 8..15.  Server: when the client's offer has client_max_window_bits,
   * answer with the smaller of this and the offered value (§7.1.2.2);
   * without it in the offer the client may use 15, and the offer is
   * accepted all the same.  Client: the largest window this side
   * compresses with; client_max_window_bits is always offered, with this
   * value when it is smaller than 15. */
  uint8_t client_max_window_bits;
  /* zlib compression level 0..9, or -1 for zlib's default (6). */
  int8_t level;
  /* zlib memLevel 1..9: the hash table and the pending buffer of the
   * compressor; see the memory table above. */
  uint8_t mem_level;
  /* Messages shorter than this many bytes are sent uncompressed (RSV1
   * clear), which RFC 7692 §6 allows message by message. */
  size_t threshold;
} ws_deflate_config_t;

/* The agreed parameters (RFC 7692 §7.1), as named on the wire. */
typedef struct ws_deflate_params {
  uint8_t server_no_context_takeover;
  uint8_t client_no_context_takeover;
  uint8_t server_max_window_bits; /* 8..15; 15 when absent */
  uint8_t client_max_window_bits; /* 8..15; 15 when absent */
} ws_deflate_params_t;

/* The longest header value ws_deflate writes (offer or response), with its
 * NUL. */
#define WS_DEFLATE_HEADER_MAX 160

/* Result codes.  Negotiation errors are the client's (the server declines
 * bad offers instead), except WS_DEFLATE_ESYNTAX. */
enum {
  WS_DEFLATE_OK = 0,
  WS_DEFLATE_ESYNTAX = -1,      /* the header is not a valid extension list */
  WS_DEFLATE_EEXTENSION = -2,   /* response: an extension not offered, or
                                   more than one */
  WS_DEFLATE_EPARAM = -3,       /* response: unknown or repeated parameter,
                                   or a value where none belongs */
  WS_DEFLATE_EVALUE = -4,       /* response: a window bits value that is not
                                   an integer 8..15 without leading zeros */
  WS_DEFLATE_ENEGOTIATION = -5, /* response: valid, but not an acceptance of
                                   the offer (e.g. a larger window) */
  WS_DEFLATE_ETOOBIG = -6,      /* inflate: the message passed the limit */
  WS_DEFLATE_EDATA = -7,        /* inflate: corrupt compressed data */
  WS_DEFLATE_ENOMEM = -8        /* out of memory */
};

/* Fills cfg with the defaults for a server (is_server = 1) or a client:
 * enabled; context takeover on in both directions; level -1 (zlib's 6);
 * threshold 64 bytes.
 *
 * Server: server_max_window_bits 12, client_max_window_bits 12 (answered
 * when the client offers client_max_window_bits, as browsers, node ws and
 * Python websockets do), memLevel 5.  With context takeover a server keeps
 * a compressor and a decompressor for each connection's lifetime, so the
 * window and memLevel decide what thousands of connections cost: 12/5
 * holds 49 KiB per connection against 301 KiB for zlib's 15/8, while
 * WebSocket messages are mostly much smaller than the 4 KiB window and
 * compress nearly as well (see the table above; Python websockets chose
 * the same values).  Context takeover stays on because it is what makes
 * small, similar messages compress at all: a lone 100-byte JSON message
 * barely shrinks.
 *
 * Client: both windows 15 and memLevel 8 (zlib's defaults), so the offer
 * is "permessage-deflate; client_max_window_bits", which constrains no
 * server: a client has few connections, and the server may still narrow
 * the client's window by answering client_max_window_bits. */
void ws_deflate_config_default(ws_deflate_config_t *cfg, int is_server);

/* Is cfg usable (window bits 8..15, memLevel 1..9, level -1..9)?  Returns
 * 0 or -1. */
int ws_deflate_config_check(const ws_deflate_config_t *cfg);

/* Server: considers every permessage-deflate offer in `value` (one
 * Sec-WebSocket-Extensions header value) in order, declines the invalid
 * ones (RFC 7692 §7: an unknown parameter, a repeated one, a value that is
 * invalid or present on a parameter that takes none), and accepts the first
 * valid one.  Offers of other extensions are skipped.  Returns 1 and fills
 * *agreed and `response` (the header value to answer, NUL-terminated, e.g.
 * "permessage-deflate; client_max_window_bits=12") when an offer was
 * accepted; 0 when none was (or cfg->enabled is 0, or cfg fails
 * ws_deflate_config_check: then the header is not even parsed); WS_DEFLATE_ESYNTAX when the header does not follow the
 * extension-list grammar (node ws and Python websockets answer 400). */
int ws_deflate_server_negotiate(const ws_deflate_config_t *cfg,
                                const char *value, size_t len,
                                ws_deflate_params_t *agreed,
                                char response[WS_DEFLATE_HEADER_MAX]);

/* The same over every Sec-WebSocket-Extensions header of a request, in
 * order, as if they were one comma-separated list (RFC 9110 §5.3). */
int ws_deflate_server_negotiate_headers(const ws_deflate_config_t *cfg,
                                        const ws_header_t *headers,
                                        size_t n, ws_deflate_params_t *agreed,
                                        char response[WS_DEFLATE_HEADER_MAX]);

/* Client: writes the offer header value for cfg (NUL-terminated) and
 * returns its length, e.g. "permessage-deflate; client_max_window_bits".
 * client_max_window_bits is always offered (RFC 7692 §7.1.2.2), so a
 * server may narrow the client's window. */
size_t ws_deflate_client_offer(const ws_deflate_config_t *cfg,
                               char out[WS_DEFLATE_HEADER_MAX]);

/* Client: checks the server's response `value` against the offer that
 * ws_deflate_client_offer(cfg) produced (RFC 7692 §5, §7.1): exactly one
 * extension, permessage-deflate; only the four parameters, each at most
 * once, the no_context_takeover ones without a value, the window bits ones
 * with a value 8..15; server_no_context_takeover present if it was offered;
 * server_max_window_bits present and not larger if it was offered;
 * client_max_window_bits not larger than the offered value.  Returns 0 and
 * fills *agreed, or a negative WS_DEFLATE_E* code and, when reason is not
 * NULL, sets *reason to a static one-line explanation. */
int ws_deflate_client_accept(const ws_deflate_config_t *cfg,
                             const char *value, size_t len,
                             ws_deflate_params_t *agreed,
                             const char **reason);

/* The same over the response's Sec-WebSocket-Extensions headers, taken as
 * one list.  Returns 1 with *agreed filled when the extension was agreed,
 * 0 when the response has no such header (no compression), or a negative
 * code (also when the header is present but cfg->enabled is 0). */
int ws_deflate_client_accept_headers(const ws_deflate_config_t *cfg,
                                     const ws_header_t *headers, size_t n,
                                     ws_deflate_params_t *agreed,
                                     const char **reason);

/* Writes the canonical header value for *p (parameters at their default
 * omitted) and returns its length.  For logs and tests. */
size_t ws_deflate_params_format(const ws_deflate_params_t *p,
                                char out[WS_DEFLATE_HEADER_MAX]);

/* The per-connection streams; opaque. */
typedef struct ws_deflate ws_deflate_t;

/* Creates the streams for one connection from the agreed parameters, seen
 * from `is_server`'s side (the server compresses with the server_ window
 * and context setting, the client with the client_ ones).  Level, memLevel
 * and threshold come from cfg.  No zlib memory is allocated yet.  Returns
 * NULL when out of memory or when cfg or *agreed is invalid. */
ws_deflate_t *ws_deflate_new(const ws_deflate_config_t *cfg,
                             const ws_deflate_params_t *agreed,
                             int is_server);

/* Frees d and its streams; NULL is allowed. */
void ws_deflate_free(ws_deflate_t *d);

/* Can a message compressed once, from a fresh context, be sent on this
 * connection (this side compresses without context takeover)?  Returns
 * the window bits to compress such a message with, or 0 when the
 * connection keeps its compression context (a shared message would break
 * the peer's history). */
int ws_deflate_shared_bits(const ws_deflate_t *d);

/* Should a message of len bytes be compressed (len >= threshold)? */
int ws_deflate_should_compress(const ws_deflate_t *d, size_t len);

/* Compresses a whole message (RFC 7692 §7.2.1): deflate with Z_SYNC_FLUSH,
 * then remove the trailing 0x00 0x00 0xff 0xff.  An empty message is the
 * single byte 0x00 (an empty stored block header; §7.2.3.6).  Appends the
 * payload to `out` (its bytes before are untouched).  Without context
 * takeover for this side the compressor is freed afterwards.  Returns 0 or
 * WS_DEFLATE_ENOMEM (out is then back to its previous size and the
 * compressor is reset; with context takeover the peer would no longer be
 * able to follow, so the connection must be failed). */
int ws_deflate_compress(ws_deflate_t *d, const void *data, size_t len,
                        ws_buf_t *out);

/* Inflates the next chunk of a compressed message (RFC 7692 §7.2.2): any
 * split of the payload, down to one byte and including empty chunks; `fin`
 * marks the last chunk (which may be empty), after which the 0x00 0x00
 * 0xff 0xff tail is inflated too and the message must end on a block
 * boundary.  The output is appended to `out`; WS_BUF_SIZE(out) must not
 * pass `limit` (0: no limit): as soon as it would, WS_DEFLATE_ETOOBIG is
 * returned, having inflated at most limit + 1 bytes in all, and without
 * ever growing out's allocation beyond limit + 1 bytes for the message.
 * Returns 0, WS_DEFLATE_ETOOBIG, WS_DEFLATE_EDATA or WS_DEFLATE_ENOMEM.
 * After an error the decompressor is freed and the message is abandoned;
 * the connection must be failed (a later message cannot be inflated
 * without the lost window).  Without context takeover for the peer's side,
 * the decompressor is freed after the fin chunk.
 *
 * A deflate block with BFINAL set does not end the message (§7.2.3.4):
 * inflation goes on after it with the same window.  A message that stops
 * inside a block (the tail does not complete it) is WS_DEFLATE_EDATA; a
 * message with an empty payload is the empty message. */
int ws_deflate_inflate(ws_deflate_t *d, const void *data, size_t len,
                       int fin, ws_buf_t *out, size_t limit);

/* Bytes appended to `out` by the last ws_deflate_inflate() call, also
 * after an error (for incremental UTF-8 validation of text). */
size_t ws_deflate_last_out(const ws_deflate_t *d);

/* Bytes of heap this object holds now: itself, its z_streams and what zlib
 * allocated through the counting hooks. */
size_t ws_deflate_memory(const ws_deflate_t *d);

/* A short description of a WS_DEFLATE_* code. */
const char *ws_deflate_strerror(int code);

#endif
