/*
 * ws_http: a strict, stateless HTTP/1.1 head parser (RFC 9110, RFC 9112).
 *
 * The parser keeps no state and allocates nothing.  It is handed the whole
 * of what has been received so far and either finds a complete head, asks
 * for more bytes, or names the precise error.  Method, target, reason and
 * header slices point into the caller's buffer, so they are valid only as
 * long as that buffer is.
 *
 * Strictness: lines end in CRLF (a bare LF is an error), the method and
 * header names are tokens (RFC 9110 §5.6.2), there is no whitespace before
 * the colon, obsolete line folding (RFC 9112 §5.2) is refused, header values
 * hold no control characters except HTAB, and leading/trailing OWS of a value
 * is trimmed.  The request target has no whitespace or control characters.
 */
#ifndef UVWS_WS_HTTP_H
#define UVWS_WS_HTTP_H

#include <stddef.h>

/* Default limits. */
#define WS_HTTP_MAX_HEAD 8192
#define WS_HTTP_MAX_HEADERS 100

/* Results of the parse functions: > 0 is the length of the head, including
 * its final empty line. */
enum {
  WS_HTTP_PARTIAL = -1,         /* no complete head yet, all good so far */
  WS_HTTP_EREQLINE = -2,        /* malformed request line (400) */
  WS_HTTP_EVERSION = -3,        /* not HTTP/1.x (505) */
  WS_HTTP_EHEADER = -4,         /* malformed header field (400) */
  WS_HTTP_EOBSFOLD = -5,        /* obsolete line folding (400) */
  WS_HTTP_EBARELF = -6,         /* line ending in LF without CR (400) */
  WS_HTTP_EHEADTOOBIG = -7,     /* head longer than the limit (431) */
  WS_HTTP_ETOOMANYHEADERS = -8, /* more header fields than the limit (431) */
  WS_HTTP_ESTATUSLINE = -9      /* malformed status line (response) */
};

typedef struct ws_slice {
  const char *p;
  size_t n;
} ws_slice_t;

typedef struct ws_header {
  ws_slice_t name;  /* as sent; compare case-insensitively */
  ws_slice_t value; /* OWS trimmed */
} ws_header_t;

typedef struct ws_http_request {
  ws_slice_t method;
  ws_slice_t target;
  int minor_version;  /* 1 for HTTP/1.1, 0 for HTTP/1.0 */
  ws_header_t *headers; /* caller's array */
  size_t num_headers;   /* set by the parser */
} ws_http_request_t;

typedef struct ws_http_response {
  int minor_version;
  int status;         /* 100..999 */
  ws_slice_t reason;
  ws_header_t *headers;
  size_t num_headers;
} ws_http_response_t;

/* Parses a request head from buf[0..len).  `headers` has room for
 * `max_headers` entries.  A head longer than `max_head` bytes (the final
 * CRLF included) fails with WS_HTTP_EHEADTOOBIG as soon as `len` passes the
 * limit without a complete head, so a slow sender cannot make the caller
 * buffer more than `max_head` bytes.  Returns the head length, or one of
 * the negative codes above.  On success req->headers == headers. */
int ws_http_parse_request(const char *buf, size_t len, size_t max_head,
                          ws_http_request_t *req, ws_header_t *headers,
                          size_t max_headers);

/* The same for a response head ("HTTP/1.1 101 Switching Protocols"). */
int ws_http_parse_response(const char *buf, size_t len, size_t max_head,
                           ws_http_response_t *res, ws_header_t *headers,
                           size_t max_headers);

/* The HTTP status a server answers for a negative code (400, 431, 505),
 * or 0 for WS_HTTP_PARTIAL. */
int ws_http_error_status(int code);

/* A short English description of a negative code ("malformed request
 * line"). */
const char *ws_http_strerror(int code);

/* The standard reason phrase for a status ("Switching Protocols"), or
 * "Unknown". */
const char *ws_http_reason_phrase(int status);

/* Finds the first header called `name` (case-insensitive); returns its
 * index or -1.  Start searching at index `from`, so repeated headers can be
 * walked. */
int ws_http_find_header(const ws_header_t *headers, size_t n,
                        const char *name, size_t from);

/* Walks the header fields of a head that ws_http_parse_request accepted
 * (there is no validation here).  Start with *pos = 0; each call fills *h
 * with the next field (value OWS-trimmed) and returns 1, or returns 0 after
 * the last one. */
int ws_http_next_header(const char *head, size_t len, size_t *pos,
                        ws_header_t *h);

/* Counts the headers called `name`. */
size_t ws_http_count_header(const ws_header_t *headers, size_t n,
                            const char *name);

/* Is `token` one of the elements of the comma-separated list `value`
 * (case-insensitive, OWS around elements ignored, empty elements
 * allowed)?  Returns 1 or 0. */
int ws_http_list_has_token(ws_slice_t value, const char *token);

/* Does the header `name` (all its occurrences) contain the list element
 * `token`? */
int ws_http_header_has_token(const ws_header_t *headers, size_t n,
                             const char *name, const char *token);

/* Parses a Content-Length value: 1*DIGIT, no sign, no overflow.  Returns 0
 * and sets *out, or -1. */
int ws_http_parse_content_length(ws_slice_t value, unsigned long long *out);

/* Case-insensitive comparison of a slice with a C string: 1 if equal. */
int ws_slice_ieq(ws_slice_t s, const char *cstr);

#endif
