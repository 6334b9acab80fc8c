#include "ws_http.h"

#include <limits.h>
#include <string.h>

/*
 * The parser reads the buffer once from the start.  It looks at no more
 * than min(len, max_head) bytes; when it runs out of those bytes it answers
 * WS_HTTP_PARTIAL, or WS_HTTP_EHEADTOOBIG when the caller already holds more
 * than max_head bytes.  A byte that cannot continue any valid head is
 * reported at once, so every strict prefix of a valid head is PARTIAL and
 * every longer input gives the same error as the shortest failing prefix.
 * An LF that does not follow a CR is always WS_HTTP_EBARELF.
 */

typedef struct scan {
  const unsigned char *p;
  size_t end;     /* bytes that may be read: min(len, max_head) */
  int incomplete; /* result when those bytes run out */
} scan_t;

static void scan_init(scan_t *s, const char *buf, size_t len,
                      size_t max_head) {
  /* The head length is returned as an int. */
  if (max_head > INT_MAX) max_head = INT_MAX;
  s->p = (const unsigned char *)buf;
  s->end = len < max_head ? len : max_head;
  s->incomplete = len > max_head ? WS_HTTP_EHEADTOOBIG : WS_HTTP_PARTIAL;
}

/* RFC 9110 §5.6.2: tchar. */
static int is_tchar(unsigned char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
      (c >= '0' && c <= '9'))
    return 1;
  return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

/* RFC 9110 §5.5: field-content allows HTAB, SP, VCHAR and obs-text. */
static int is_field_char(unsigned char c) {
  return c == '\t' || (c >= 0x20 && c != 0x7f);
}

/* The error for an unexpected byte: a bare LF wins over `err`. */
static int bad(unsigned char c, int err) {
  return c == '\n' ? WS_HTTP_EBARELF : err;
}

/* Consumes the CRLF at *pos.  A CR followed by anything else is `err`. */
static int parse_eol(const scan_t *s, size_t *pos, int err) {
  size_t i = *pos;
  if (i >= s->end) return s->incomplete;
  if (s->p[i] != '\r') return bad(s->p[i], err);
  if (i + 1 >= s->end) return s->incomplete;
  if (s->p[i + 1] != '\n') return err;
  *pos = i + 2;
  return 0;
}

/* RFC 9112 §2.3: HTTP-version = "HTTP/" DIGIT "." DIGIT, case-sensitive.
 * A well-formed version other than 1.x is WS_HTTP_EVERSION. */
static int parse_version(const scan_t *s, size_t *pos, int *minor, int err) {
  static const char name[] = "HTTP/";
  size_t i = *pos;
  for (size_t k = 0; k < sizeof name - 1; k++, i++) {
    if (i >= s->end) return s->incomplete;
    if (s->p[i] != (unsigned char)name[k]) return bad(s->p[i], err);
  }
  if (i >= s->end) return s->incomplete;
  if (!is_digit(s->p[i])) return bad(s->p[i], err);
  if (s->p[i] != '1') return WS_HTTP_EVERSION;
  i++;
  if (i >= s->end) return s->incomplete;
  if (s->p[i] != '.') return bad(s->p[i], err);
  i++;
  if (i >= s->end) return s->incomplete;
  if (!is_digit(s->p[i])) return bad(s->p[i], err);
  *minor = s->p[i] - '0';
  *pos = i + 1;
  return 0;
}

/* RFC 9112 §5: field lines up to and including the empty line. */
static int parse_headers(const scan_t *s, size_t *pos, ws_header_t *headers,
                         size_t max_headers, size_t *num_headers) {
  const unsigned char *p = s->p;
  size_t i = *pos, n = 0;
  for (;;) {
    if (i >= s->end) return s->incomplete;
    unsigned char c = p[i];
    if (c == '\r') {
      int r = parse_eol(s, &i, WS_HTTP_EHEADER);
      if (r != 0) return r;
      *pos = i;
      *num_headers = n;
      return 0;
    }
    if (c == '\n') return WS_HTTP_EBARELF;
    /* RFC 9112 §5.2 (obs-fold) and §2.2 (whitespace after the start
     * line). */
    if (c == ' ' || c == '\t') return WS_HTTP_EOBSFOLD;
    if (n == max_headers) return WS_HTTP_ETOOMANYHEADERS;

    size_t name_start = i;
    for (;;) {
      if (i >= s->end) return s->incomplete;
      c = p[i];
      if (!is_tchar(c)) break;
      i++;
    }
    /* RFC 9112 §5.1: no whitespace between the name and the colon. */
    if (c != ':' || i == name_start) return bad(c, WS_HTTP_EHEADER);
    size_t name_end = i++;

    for (;;) {
      if (i >= s->end) return s->incomplete;
      c = p[i];
      if (c != ' ' && c != '\t') break;
      i++;
    }
    size_t value_start = i, value_end = i;
    for (;;) {
      if (i >= s->end) return s->incomplete;
      c = p[i];
      if (c == '\r' || c == '\n') break;
      if (!is_field_char(c)) return WS_HTTP_EHEADER;
      i++;
      if (c != ' ' && c != '\t') value_end = i;
    }
    int r = parse_eol(s, &i, WS_HTTP_EHEADER);
    if (r != 0) return r;

    headers[n].name.p = (const char *)p + name_start;
    headers[n].name.n = name_end - name_start;
    headers[n].value.p = (const char *)p + value_start;
    headers[n].value.n = value_end - value_start;
    n++;
  }
}

/* RFC 9112 §3: request-line = method SP request-target SP HTTP-version. */
static int parse_request(const scan_t *s, ws_http_request_t *req,
                         ws_header_t *headers, size_t max_headers) {
  const unsigned char *p = s->p;
  size_t i = 0;
  unsigned char c;

  for (;;) {
    if (i >= s->end) return s->incomplete;
    c = p[i];
    if (!is_tchar(c)) break;
    i++;
  }
  if (c != ' ' || i == 0) return bad(c, WS_HTTP_EREQLINE);
  req->method.p = (const char *)p;
  req->method.n = i++;

  size_t target_start = i;
  for (;;) {
    if (i >= s->end) return s->incomplete;
    c = p[i];
    if (c <= ' ' || c == 0x7f) break;
    i++;
  }
  if (c != ' ' || i == target_start) return bad(c, WS_HTTP_EREQLINE);
  req->target.p = (const char *)p + target_start;
  req->target.n = i++ - target_start;

  int r = parse_version(s, &i, &req->minor_version, WS_HTTP_EREQLINE);
  if (r == 0) r = parse_eol(s, &i, WS_HTTP_EREQLINE);
  if (r == 0)
    r = parse_headers(s, &i, headers, max_headers, &req->num_headers);
  return r == 0 ? (int)i : r;
}

int ws_http_parse_request(const char *buf, size_t len, size_t max_head,
                          ws_http_request_t *req, ws_header_t *headers,
                          size_t max_headers) {
  scan_t s;
  scan_init(&s, buf, len, max_head);
  memset(req, 0, sizeof *req);
  req->headers = headers;
  int r = parse_request(&s, req, headers, max_headers);
  if (r < 0) req->num_headers = 0;
  return r;
}

/* RFC 9112 §4: status-line = HTTP-version SP status-code SP [reason-phrase].
 * A status line without the second SP ("HTTP/1.1 200") is accepted, as
 * most clients do. */
static int parse_response(const scan_t *s, ws_http_response_t *res,
                          ws_header_t *headers, size_t max_headers) {
  const unsigned char *p = s->p;
  size_t i = 0;
  int r = parse_version(s, &i, &res->minor_version, WS_HTTP_ESTATUSLINE);
  if (r != 0) return r;
  if (i >= s->end) return s->incomplete;
  if (p[i] != ' ') return bad(p[i], WS_HTTP_ESTATUSLINE);
  i++;

  int status = 0;
  for (int k = 0; k < 3; k++, i++) {
    if (i >= s->end) return s->incomplete;
    if (!is_digit(p[i]) || (k == 0 && p[i] == '0'))
      return bad(p[i], WS_HTTP_ESTATUSLINE);
    status = status * 10 + (p[i] - '0');
  }
  res->status = status;

  if (i >= s->end) return s->incomplete;
  if (p[i] == ' ') i++;
  else if (p[i] != '\r') return bad(p[i], WS_HTTP_ESTATUSLINE);
  size_t reason_start = i;
  for (;;) {
    if (i >= s->end) return s->incomplete;
    unsigned char c = p[i];
    if (c == '\r' || c == '\n') break;
    if (!is_field_char(c)) return WS_HTTP_ESTATUSLINE;
    i++;
  }
  res->reason.p = (const char *)p + reason_start;
  res->reason.n = i - reason_start;

  r = parse_eol(s, &i, WS_HTTP_ESTATUSLINE);
  if (r == 0)
    r = parse_headers(s, &i, headers, max_headers, &res->num_headers);
  return r == 0 ? (int)i : r;
}

int ws_http_parse_response(const char *buf, size_t len, size_t max_head,
                           ws_http_response_t *res, ws_header_t *headers,
                           size_t max_headers) {
  scan_t s;
  scan_init(&s, buf, len, max_head);
  memset(res, 0, sizeof *res);
  res->headers = headers;
  int r = parse_response(&s, res, headers, max_headers);
  if (r < 0) res->num_headers = 0;
  return r;
}

int ws_http_error_status(int code) {
  switch (code) {
  case WS_HTTP_EVERSION:
    return 505;
  case WS_HTTP_EHEADTOOBIG:
  case WS_HTTP_ETOOMANYHEADERS:
    return 431;
  case WS_HTTP_EREQLINE:
  case WS_HTTP_EHEADER:
  case WS_HTTP_EOBSFOLD:
  case WS_HTTP_EBARELF:
  case WS_HTTP_ESTATUSLINE:
    return 400;
  default:
    return code < WS_HTTP_PARTIAL ? 400 : 0;
  }
}

const char *ws_http_strerror(int code) {
  switch (code) {
  case WS_HTTP_PARTIAL:
    return "incomplete head";
  case WS_HTTP_EREQLINE:
    return "malformed request line";
  case WS_HTTP_EVERSION:
    return "unsupported HTTP version";
  case WS_HTTP_EHEADER:
    return "malformed header field";
  case WS_HTTP_EOBSFOLD:
    return "obsolete line folding";
  case WS_HTTP_EBARELF:
    return "line ending in LF without CR";
  case WS_HTTP_EHEADTOOBIG:
    return "head too big";
  case WS_HTTP_ETOOMANYHEADERS:
    return "too many header fields";
  case WS_HTTP_ESTATUSLINE:
    return "malformed status line";
  default:
    return code >= 0 ? "no error" : "unknown error";
  }
}

const char *ws_http_reason_phrase(int status) {
  switch (status) {
  case 100: return "Continue";
  case 101: return "Switching Protocols";
  case 200: return "OK";
  case 201: return "Created";
  case 202: return "Accepted";
  case 204: return "No Content";
  case 206: return "Partial Content";
  case 301: return "Moved Permanently";
  case 302: return "Found";
  case 303: return "See Other";
  case 304: return "Not Modified";
  case 307: return "Temporary Redirect";
  case 308: return "Permanent Redirect";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 406: return "Not Acceptable";
  case 408: return "Request Timeout";
  case 409: return "Conflict";
  case 410: return "Gone";
  case 411: return "Length Required";
  case 412: return "Precondition Failed";
  case 413: return "Content Too Large";
  case 414: return "URI Too Long";
  case 415: return "Unsupported Media Type";
  case 416: return "Range Not Satisfiable";
  case 417: return "Expectation Failed";
  case 421: return "Misdirected Request";
  case 422: return "Unprocessable Content";
  case 426: return "Upgrade Required";
  case 428: return "Precondition Required";
  case 429: return "Too Many Requests";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  case 501: return "Not Implemented";
  case 502: return "Bad Gateway";
  case 503: return "Service Unavailable";
  case 504: return "Gateway Timeout";
  case 505: return "HTTP Version Not Supported";
  default: return "Unknown";
  }
}

static unsigned char lower(unsigned char c) {
  return c >= 'A' && c <= 'Z' ? (unsigned char)(c + ('a' - 'A')) : c;
}

static int mem_ieq(const char *a, const char *b, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (lower((unsigned char)a[i]) != lower((unsigned char)b[i])) return 0;
  return 1;
}

int ws_slice_ieq(ws_slice_t s, const char *cstr) {
  size_t n = strlen(cstr);
  return s.n == n && mem_ieq(s.p, cstr, n);
}

int ws_http_find_header(const ws_header_t *headers, size_t n,
                        const char *name, size_t from) {
  for (size_t i = from; i < n && i <= INT_MAX; i++)
    if (ws_slice_ieq(headers[i].name, name)) return (int)i;
  return -1;
}

/* The index of the CRLF that ends the line at i, or len when there is
 * none. */
static size_t line_end(const char *head, size_t len, size_t i) {
  while (i + 1 < len && !(head[i] == '\r' && head[i + 1] == '\n')) i++;
  return i + 1 < len ? i : len;
}

int ws_http_next_header(const char *head, size_t len, size_t *pos,
                        ws_header_t *h) {
  size_t i = *pos;
  if (i == 0) i = line_end(head, len, 0) + 2; /* skip the request line */
  if (i + 1 >= len || (head[i] == '\r' && head[i + 1] == '\n')) {
    *pos = len;
    return 0;
  }
  size_t name = i;
  while (i < len && head[i] != ':') i++;
  if (i >= len) {
    *pos = len;
    return 0;
  }
  h->name.p = head + name;
  h->name.n = i - name;
  i++;
  while (i < len && (head[i] == ' ' || head[i] == '\t')) i++;
  size_t value = i;
  i = line_end(head, len, i);
  size_t end = i;
  while (end > value && (head[end - 1] == ' ' || head[end - 1] == '\t')) end--;
  h->value.p = head + value;
  h->value.n = end - value;
  *pos = i + 2;
  return 1;
}

size_t ws_http_count_header(const ws_header_t *headers, size_t n,
                            const char *name) {
  size_t count = 0;
  for (size_t i = 0; i < n; i++)
    if (ws_slice_ieq(headers[i].name, name)) count++;
  return count;
}

/* RFC 9110 §5.6.1: #element lists; empty elements are ignored, so an empty
 * token never matches. */
int ws_http_list_has_token(ws_slice_t value, const char *token) {
  size_t tn = strlen(token);
  if (tn == 0) return 0;
  size_t i = 0;
  while (i < value.n) {
    while (i < value.n && (value.p[i] == ' ' || value.p[i] == '\t')) i++;
    size_t start = i;
    while (i < value.n && value.p[i] != ',') i++;
    size_t end = i;
    while (end > start && (value.p[end - 1] == ' ' || value.p[end - 1] == '\t'))
      end--;
    if (end - start == tn && mem_ieq(value.p + start, token, tn)) return 1;
    i++; /* Skip the comma. */
  }
  return 0;
}

int ws_http_header_has_token(const ws_header_t *headers, size_t n,
                             const char *name, const char *token) {
  for (size_t i = 0; i < n; i++)
    if (ws_slice_ieq(headers[i].name, name) &&
        ws_http_list_has_token(headers[i].value, token))
      return 1;
  return 0;
}

int ws_http_parse_content_length(ws_slice_t value, unsigned long long *out) {
  unsigned long long v = 0;
  if (value.n == 0) return -1;
  for (size_t i = 0; i < value.n; i++) {
    unsigned char c = (unsigned char)value.p[i];
    if (!is_digit(c)) return -1;
    unsigned d = (unsigned)(c - '0');
    if (v > (ULLONG_MAX - d) / 10) return -1;
    v = v * 10 + d;
  }
  *out = v;
  return 0;
}
