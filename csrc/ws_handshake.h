/*
 * ws_handshake: the opening handshake of RFC 6455 §4, both sides.
 *
 * Server: ws_handshake_check_request() decides whether a parsed request is
 * a WebSocket upgrade, and if it is, whether it is valid (§4.2.1); the
 * writers produce the 101 answer and the error answers.  Client:
 * ws_handshake_new_key(), ws_handshake_write_request() and
 * ws_handshake_check_response() (§4.1).  SHA-1, base64 and random bytes come
 * from OpenSSL.
 */
#ifndef UVWS_WS_HANDSHAKE_H
#define UVWS_WS_HANDSHAKE_H

#include "ws_buf.h"
#include "ws_http.h"

/* The accept value is 28 base64 characters; the key 24. */
#define WS_ACCEPT_LEN 28
#define WS_KEY_LEN 24

typedef struct ws_handshake {
  /* 1 when the request asks for a WebSocket upgrade: an Upgrade header
   * with the token "websocket", or any Sec-WebSocket-Key or
   * Sec-WebSocket-Version header.  0 for a plain HTTP request. */
  int is_upgrade;
  /* 0 when the upgrade is valid, else the status to answer: 400 malformed
   * or incomplete, 405 not GET, 426 another Sec-WebSocket-Version. */
  int status;
  /* For an error, one line saying what is wrong, e.g. "Sec-WebSocket-Key
   * must be 16 random bytes in base64"; static storage. */
  const char *reason;
  /* The Sec-WebSocket-Key value (valid upgrade only). */
  ws_slice_t key;
} ws_handshake_t;

/* Checks a request per RFC 6455 §4.2.1: method GET (else 405), HTTP/1.1
 * or later, exactly one Host, Upgrade containing the token "websocket",
 * Connection containing the token "upgrade" (both comma lists,
 * case-insensitive), exactly one Sec-WebSocket-Key decoding to 16 bytes,
 * Sec-WebSocket-Version 13 (missing: 400; another value: 426).  Fills *hs
 * and returns hs->status. */
int ws_handshake_check_request(const ws_http_request_t *req,
                               ws_handshake_t *hs);

/* Computes base64(SHA-1(key + GUID)) into out (WS_ACCEPT_LEN characters
 * and a NUL).  Returns 0, or -1 if OpenSSL fails. */
int ws_handshake_accept(const char *key, size_t key_len,
                        char out[WS_ACCEPT_LEN + 1]);

/* Appends the 101 answer: Upgrade: websocket, Connection: Upgrade,
 * Sec-WebSocket-Accept for `key`, Sec-WebSocket-Protocol when `protocol`
 * is not NULL, then `extra` (extra_len bytes of complete "Name: value\r\n"
 * lines, may be NULL), then the empty line.  Returns 0 or -1 (memory). */
int ws_handshake_write_101(ws_buf_t *out, ws_slice_t key,
                           const char *protocol, const char *extra,
                           size_t extra_len);

/* Appends a complete error answer with `Connection: close`, a text/plain
 * body of `reason` plus a newline and the matching Content-Length.  A 426
 * also carries `Upgrade: websocket` and `Sec-WebSocket-Version: 13`; a 405
 * carries `Allow: GET`.  `extra` as above.  Returns 0 or -1. */
int ws_handshake_write_error(ws_buf_t *out, int status, const char *reason,
                             const char *extra, size_t extra_len);

/* Client: fills out with a fresh key, base64 of 16 bytes from RAND_bytes
 * (WS_KEY_LEN characters and a NUL).  Returns 0 or -1. */
int ws_handshake_new_key(char out[WS_KEY_LEN + 1]);

/* Client: appends "GET target HTTP/1.1", Host, Upgrade, Connection,
 * Sec-WebSocket-Key, Sec-WebSocket-Version: 13, Sec-WebSocket-Protocol
 * (when `protocols`, a comma list, is not NULL/empty), then `extra` lines
 * as above, then the empty line.  Returns 0 or -1. */
int ws_handshake_write_request(ws_buf_t *out, const char *host,
                               const char *target, const char *key,
                               const char *protocols, const char *extra,
                               size_t extra_len);

/* Client response check results (RFC 6455 §4.1, last part). */
enum {
  WS_HS_OK = 0,
  WS_HS_ESTATUS = -1,     /* status is not 101 */
  WS_HS_EUPGRADE = -2,    /* Upgrade missing or not "websocket" */
  WS_HS_ECONNECTION = -3, /* Connection missing or without "upgrade" */
  WS_HS_EACCEPT = -4,     /* Sec-WebSocket-Accept missing or wrong */
  WS_HS_EPROTOCOL = -5,   /* a subprotocol that was not offered */
  WS_HS_EEXTENSION = -6   /* an extension that was not offered */
};

/* Client: checks a parsed response against the key sent and the comma
 * list of protocols offered (NULL for none).  Any Sec-WebSocket-Extensions
 * header is an error unless `extensions_ok` is 1 (the caller then
 * validates it).  On WS_HS_OK, *protocol is the selected subprotocol (n ==
 * 0 for none). */
int ws_handshake_check_response(const ws_http_response_t *res,
                                const char *key, const char *protocols,
                                int extensions_ok, ws_slice_t *protocol);

/* A short name for a result ("EACCEPT") and a description. */
const char *ws_handshake_errname(int code);
const char *ws_handshake_strerror(int code);

#endif
