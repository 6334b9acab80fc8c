/*
 * Tests for ws_http.  As in picohttpparser's test.c, every input is copied
 * to the end of a readable mapping followed by an unreadable page, so a
 * read past `len` crashes the test; every strict prefix of a valid head
 * must be WS_HTTP_PARTIAL, and a malformed head must fail as soon as its
 * first bad byte is in the buffer, never before.
 */
#include "ws_http.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "test.h"

/* A mapping whose last readable byte is followed by a PROT_NONE page. */
typedef struct guard {
  char *map;
  size_t map_len;
  char *end; /* first unreadable byte */
} guard_t;

static void guard_init(guard_t *g, size_t capacity) {
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  size_t data = (capacity + page - 1) / page * page;
  if (data == 0) data = page;
  int fd = open("/dev/zero", O_RDWR);
  if (fd < 0) abort();
  g->map_len = data + page;
  void *m = mmap(NULL, g->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  close(fd);
  if (m == MAP_FAILED) abort();
  g->map = m;
  g->end = g->map + data;
  if (mprotect(g->end, page, PROT_NONE) != 0) abort();
}

/* Copies s[0..n) so that it ends right before the unreadable page. */
static const char *guard_put(guard_t *g, const char *s, size_t n) {
  memcpy(g->end - n, s, n);
  return g->end - n;
}

static void guard_free(guard_t *g) { munmap(g->map, g->map_len); }

static int parse(int response, const char *buf, size_t len, size_t max_head,
                 size_t max_headers) {
  ws_header_t headers[WS_HTTP_MAX_HEADERS + 1];
  if (max_headers > WS_HTTP_MAX_HEADERS + 1) abort();
  if (response) {
    ws_http_response_t res;
    return ws_http_parse_response(buf, len, max_head, &res, headers,
                                  max_headers);
  }
  ws_http_request_t req;
  return ws_http_parse_request(buf, len, max_head, &req, headers,
                               max_headers);
}

/* Every strict prefix of the head s[0..head) is PARTIAL; the whole input,
 * and every prefix of it at least `head` long, parses to `head`. */
static int prefixes_ok(int response, const char *s, size_t n, size_t head,
                       size_t max_head, size_t max_headers) {
  guard_t g;
  int ok = 1;
  guard_init(&g, n);
  for (size_t k = 0; k <= n; k++) {
    const char *p = guard_put(&g, s, k);
    int r = parse(response, p, k, max_head, max_headers);
    int want = k < head ? WS_HTTP_PARTIAL : (int)head;
    if (r != want) {
      fprintf(stderr, "  prefix %zu of %zu: got %d, want %d\n", k, n, r,
              want);
      ok = 0;
      break;
    }
  }
  guard_free(&g);
  return ok;
}

/* Parses all of s[0..n) at the end of a guarded mapping; the header array
 * holds exactly max_headers entries so an overflow is caught by ASan. */
static int parse_request_guarded(guard_t *g, const char *s, size_t n,
                                 ws_http_request_t *req, ws_header_t *headers,
                                 size_t max_headers) {
  guard_init(g, n);
  const char *p = guard_put(g, s, n);
  return ws_http_parse_request(p, n, WS_HTTP_MAX_HEAD, req, headers,
                               max_headers);
}

static int slice_is(ws_slice_t s, const char *want) {
  return s.n == strlen(want) && memcmp(s.p, want, s.n) == 0;
}

static int header_is(const ws_header_t *h, const char *name,
                     const char *value) {
  return slice_is(h->name, name) && slice_is(h->value, value);
}

#define S(lit) (lit), (sizeof(lit) - 1)

static const char rfc6455_request[] =
    "GET /chat HTTP/1.1\r\n"
    "Host: server.example.com\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Origin: http://example.com\r\n"
    "Sec-WebSocket-Protocol: chat, superchat\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "\r\n";

TEST(test_rfc6455_request) {
  size_t n = sizeof rfc6455_request - 1;
  CHECK(prefixes_ok(0, rfc6455_request, n, n, WS_HTTP_MAX_HEAD,
                    WS_HTTP_MAX_HEADERS));

  guard_t g;
  ws_http_request_t req;
  ws_header_t headers[7];
  int r = parse_request_guarded(&g, rfc6455_request, n, &req, headers, 7);
  CHECK_EQ_INT(r, n);
  CHECK(slice_is(req.method, "GET"));
  CHECK(slice_is(req.target, "/chat"));
  CHECK_EQ_INT(req.minor_version, 1);
  CHECK(req.headers == headers);
  CHECK_EQ_INT(req.num_headers, 7);
  CHECK(header_is(&headers[0], "Host", "server.example.com"));
  CHECK(header_is(&headers[1], "Upgrade", "websocket"));
  CHECK(header_is(&headers[2], "Connection", "Upgrade"));
  CHECK(header_is(&headers[3], "Sec-WebSocket-Key",
                  "dGhlIHNhbXBsZSBub25jZQ=="));
  CHECK(header_is(&headers[4], "Origin", "http://example.com"));
  CHECK(header_is(&headers[5], "Sec-WebSocket-Protocol", "chat, superchat"));
  CHECK(header_is(&headers[6], "Sec-WebSocket-Version", "13"));
  guard_free(&g);

  /* Exactly one header too few room. */
  r = parse_request_guarded(&g, rfc6455_request, n, &req, headers, 6);
  CHECK_EQ_INT(r, WS_HTTP_ETOOMANYHEADERS);
  CHECK_EQ_INT(req.num_headers, 0);
  guard_free(&g);
}

/* A request with `count` headers "X-Header-<i>: value <i>". */
static size_t many_headers(char *buf, size_t cap, size_t count) {
  size_t n = (size_t)snprintf(buf, cap, "GET /many HTTP/1.1\r\n");
  for (size_t i = 0; i < count; i++)
    n += (size_t)snprintf(buf + n, cap - n, "X-Header-%zu: value %zu\r\n",
                          i, i);
  n += (size_t)snprintf(buf + n, cap - n, "\r\n");
  return n;
}

TEST(test_many_headers) {
  static char buf[8192];
  size_t n = many_headers(buf, sizeof buf, WS_HTTP_MAX_HEADERS);
  CHECK(n < WS_HTTP_MAX_HEAD);
  CHECK(prefixes_ok(0, buf, n, n, WS_HTTP_MAX_HEAD, WS_HTTP_MAX_HEADERS));

  guard_t g;
  ws_http_request_t req;
  ws_header_t *headers = malloc(WS_HTTP_MAX_HEADERS * sizeof *headers);
  int r = parse_request_guarded(&g, buf, n, &req, headers,
                                WS_HTTP_MAX_HEADERS);
  CHECK_EQ_INT(r, n);
  CHECK_EQ_INT(req.num_headers, WS_HTTP_MAX_HEADERS);
  for (size_t i = 0; i < req.num_headers; i++) {
    char name[32], value[32];
    snprintf(name, sizeof name, "X-Header-%zu", i);
    snprintf(value, sizeof value, "value %zu", i);
    CHECK(header_is(&headers[i], name, value));
  }
  guard_free(&g);

  /* One more than the limit fails when the extra line starts. */
  n = many_headers(buf, sizeof buf, WS_HTTP_MAX_HEADERS + 1);
  r = parse_request_guarded(&g, buf, n, &req, headers, WS_HTTP_MAX_HEADERS);
  CHECK_EQ_INT(r, WS_HTTP_ETOOMANYHEADERS);
  guard_free(&g);
  const char *last = strstr(buf, "X-Header-100:");
  size_t at = (size_t)(last - buf);
  CHECK_EQ_INT(parse(0, buf, at, WS_HTTP_MAX_HEAD, WS_HTTP_MAX_HEADERS),
               WS_HTTP_PARTIAL);
  CHECK_EQ_INT(parse(0, buf, at + 1, WS_HTTP_MAX_HEAD, WS_HTTP_MAX_HEADERS),
               WS_HTTP_ETOOMANYHEADERS);
  free(headers);
}

TEST(test_small_header_limits) {
  const char three[] = "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
  const char four[] = "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n";
  const char none[] = "GET / HTTP/1.1\r\n\r\n";
  CHECK(prefixes_ok(0, S(three), sizeof three - 1, WS_HTTP_MAX_HEAD, 3));
  CHECK_EQ_INT(parse(0, S(four), WS_HTTP_MAX_HEAD, 3),
               WS_HTTP_ETOOMANYHEADERS);
  CHECK_EQ_INT(parse(0, S(four), WS_HTTP_MAX_HEAD, 4), sizeof four - 1);
  CHECK(prefixes_ok(0, S(none), sizeof none - 1, WS_HTTP_MAX_HEAD, 0));
  CHECK_EQ_INT(parse(0, S(three), WS_HTTP_MAX_HEAD, 0),
               WS_HTTP_ETOOMANYHEADERS);
  /* The header array may be NULL when no header is allowed. */
  ws_http_request_t req;
  CHECK_EQ_INT(ws_http_parse_request(S(none), 100, &req, NULL, 0),
               sizeof none - 1);
  CHECK_EQ_INT(req.num_headers, 0);
}

TEST(test_empty_values) {
  const char s[] = "GET / HTTP/1.0\r\n"
                   "X-Empty:\r\n"
                   "X-Blank:   \t \r\n"
                   "Host: a\r\n"
                   "X-Last:\r\n"
                   "\r\n";
  size_t n = sizeof s - 1;
  CHECK(prefixes_ok(0, s, n, n, WS_HTTP_MAX_HEAD, WS_HTTP_MAX_HEADERS));
  guard_t g;
  ws_http_request_t req;
  ws_header_t headers[4];
  CHECK_EQ_INT(parse_request_guarded(&g, s, n, &req, headers, 4), n);
  CHECK_EQ_INT(req.minor_version, 0);
  CHECK_EQ_INT(req.num_headers, 4);
  CHECK(header_is(&headers[0], "X-Empty", ""));
  CHECK(header_is(&headers[1], "X-Blank", ""));
  CHECK(header_is(&headers[2], "Host", "a"));
  CHECK(header_is(&headers[3], "X-Last", ""));
  guard_free(&g);
}

TEST(test_ows_values) {
  const char s[] = "POST /a/b?c=d%20e&f HTTP/1.1\r\n"
                   "Host:\t example.org \t\r\n"
                   "X-Inner:  a  b \r\n"
                   "X-Tab:\tx\ty\t\r\n"
                   "X-Obs-Text: caf\xc3\xa9\r\n"
                   "X-Chars: !\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~\r\n"
                   "\r\n";
  size_t n = sizeof s - 1;
  CHECK(prefixes_ok(0, s, n, n, WS_HTTP_MAX_HEAD, WS_HTTP_MAX_HEADERS));
  guard_t g;
  ws_http_request_t req;
  ws_header_t headers[5];
  CHECK_EQ_INT(parse_request_guarded(&g, s, n, &req, headers, 5), n);
  CHECK(slice_is(req.method, "POST"));
  CHECK(slice_is(req.target, "/a/b?c=d%20e&f"));
  CHECK_EQ_INT(req.num_headers, 5);
  CHECK(header_is(&headers[0], "Host", "example.org"));
  CHECK(header_is(&headers[1], "X-Inner", "a  b"));
  CHECK(header_is(&headers[2], "X-Tab", "x\ty"));
  CHECK(header_is(&headers[3], "X-Obs-Text", "caf\xc3\xa9"));
  CHECK(header_is(&headers[4], "X-Chars",
                  "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"));
  guard_free(&g);
}

TEST(test_odd_but_valid_requests) {
  /* Every tchar in a method and a header name; "*" and absolute targets;
   * HTTP/1.9; raw UTF-8 in the target. */
  const char tchars[] = "!#$%&'*+-.^_`|~09azAZ";
  char s[256];
  int n = snprintf(s, sizeof s, "%s * HTTP/1.9\r\n%s: v\r\n\r\n", tchars,
                   tchars);
  CHECK(prefixes_ok(0, s, (size_t)n, (size_t)n, WS_HTTP_MAX_HEAD, 1));
  guard_t g;
  ws_http_request_t req;
  ws_header_t headers[1];
  CHECK_EQ_INT(parse_request_guarded(&g, s, (size_t)n, &req, headers, 1), n);
  CHECK(slice_is(req.method, tchars));
  CHECK(slice_is(req.target, "*"));
  CHECK_EQ_INT(req.minor_version, 9);
  CHECK(header_is(&headers[0], tchars, "v"));
  guard_free(&g);

  const char abs[] = "OPTIONS http://h:80/x?y#z HTTP/1.1\r\n\r\n";
  CHECK(prefixes_ok(0, S(abs), sizeof abs - 1, WS_HTTP_MAX_HEAD, 0));
  const char utf8[] = "GET /caf\xc3\xa9 HTTP/1.1\r\n\r\n";
  CHECK(prefixes_ok(0, S(utf8), sizeof utf8 - 1, WS_HTTP_MAX_HEAD, 0));
}

TEST(test_body_after_head) {
  const char s[] = "POST /x HTTP/1.1\r\nContent-Length: 4\r\n\r\nbody";
  size_t head = sizeof s - 1 - 4;
  CHECK(prefixes_ok(0, S(s), head, WS_HTTP_MAX_HEAD, WS_HTTP_MAX_HEADERS));
  /* Bytes after the head are not looked at, even if they are garbage or
   * lie beyond max_head. */
  CHECK_EQ_INT(parse(0, S("GET / HTTP/1.1\r\n\r\n\n\n\0"), 18, 10), 18);
  CHECK_EQ_INT(parse(0, S("GET / HTTP/1.1\r\n\r\n\n\n\0"), 17, 10),
               WS_HTTP_EHEADTOOBIG);
}

static const char rfc6455_response[] =
    "HTTP/1.1 101 Switching Protocols\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
    "Sec-WebSocket-Protocol: chat\r\n"
    "\r\n";

TEST(test_responses) {
  size_t n = sizeof rfc6455_response - 1;
  CHECK(prefixes_ok(1, rfc6455_response, n, n, WS_HTTP_MAX_HEAD,
                    WS_HTTP_MAX_HEADERS));
  guard_t g;
  guard_init(&g, n);
  const char *p = guard_put(&g, rfc6455_response, n);
  ws_http_response_t res;
  ws_header_t headers[4];
  CHECK_EQ_INT(ws_http_parse_response(p, n, WS_HTTP_MAX_HEAD, &res, headers,
                                      4),
               n);
  CHECK_EQ_INT(res.minor_version, 1);
  CHECK_EQ_INT(res.status, 101);
  CHECK(slice_is(res.reason, "Switching Protocols"));
  CHECK(res.headers == headers);
  CHECK_EQ_INT(res.num_headers, 4);
  CHECK(header_is(&headers[0], "Upgrade", "websocket"));
  CHECK(header_is(&headers[1], "Connection", "Upgrade"));
  CHECK(header_is(&headers[2], "Sec-WebSocket-Accept",
                  "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
  CHECK(header_is(&headers[3], "Sec-WebSocket-Protocol", "chat"));
  CHECK_EQ_INT(ws_http_parse_response(p, n, WS_HTTP_MAX_HEAD, &res, headers,
                                      3),
               WS_HTTP_ETOOMANYHEADERS);
  guard_free(&g);

  /* No reason phrase, with and without the SP; reason with HTAB and
   * obs-text; the largest status. */
  struct {
    const char *s;
    int status;
    int minor;
    const char *reason;
  } cases[] = {
      {"HTTP/1.0 200\r\nContent-Length: 0\r\n\r\n", 200, 0, ""},
      {"HTTP/1.1 404 \r\n\r\n", 404, 1, ""},
      {"HTTP/1.1 999 a\tb \xff\r\n\r\n", 999, 1, "a\tb \xff"},
      {"HTTP/1.1 100 Continue\r\n\r\n", 100, 1, "Continue"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    size_t len = strlen(cases[i].s);
    CHECK(prefixes_ok(1, cases[i].s, len, len, WS_HTTP_MAX_HEAD, 1));
    guard_init(&g, len);
    p = guard_put(&g, cases[i].s, len);
    CHECK_EQ_INT(ws_http_parse_response(p, len, WS_HTTP_MAX_HEAD, &res,
                                        headers, 1),
                 len);
    CHECK_EQ_INT(res.status, cases[i].status);
    CHECK_EQ_INT(res.minor_version, cases[i].minor);
    CHECK(slice_is(res.reason, cases[i].reason));
    guard_free(&g);
  }
}

/* A malformed input: `good` is a valid prefix, and the first byte of
 * `rest` makes the head invalid. */
typedef struct bad_case {
  int response;
  const char *good;
  size_t good_n;
  const char *rest;
  size_t rest_n;
  int code;
  size_t max_headers;
} bad_case_t;

#define REQ(g, r, c) {0, S(g), S(r), c, WS_HTTP_MAX_HEADERS}
#define RES(g, r, c) {1, S(g), S(r), c, WS_HTTP_MAX_HEADERS}

static const bad_case_t bad_cases[] = {
    /* Bare LF anywhere. */
    REQ("GET / HTTP/1.1", "\nHost: a\r\n\r\n", WS_HTTP_EBARELF),
    REQ("GET / HTTP/1.1\r\nHost: a", "\n\r\n", WS_HTTP_EBARELF),
    REQ("GET / HTTP/1.1\r\nHost: a\r\n", "\n", WS_HTTP_EBARELF),
    REQ("GET / HTTP/1.1\r\n", "\n", WS_HTTP_EBARELF),
    REQ("GET", "\n", WS_HTTP_EBARELF),
    REQ("GET /", "\n", WS_HTTP_EBARELF),
    REQ("GET / HTTP/1.", "\n", WS_HTTP_EBARELF),
    REQ("GET / HTTP/1.1\r\nHost", "\n", WS_HTTP_EBARELF),
    REQ("GET / HTTP/1.1\r\nHost:", "\n", WS_HTTP_EBARELF),
    REQ("GET / HTTP/1.1\r\nHost:  ", "\n", WS_HTTP_EBARELF),
    REQ("", "\n", WS_HTTP_EBARELF),
    /* Bare CR. */
    REQ("GET / HTTP/1.1\r", "X\r\n\r\n", WS_HTTP_EREQLINE),
    REQ("GET / HTTP/1.1\r", "\r\n\r\n", WS_HTTP_EREQLINE),
    REQ("GET / HTTP/1.1\r\nHost: a\r", "b\r\n\r\n", WS_HTTP_EHEADER),
    REQ("GET / HTTP/1.1\r\nHost: a\r\n\r", "\r", WS_HTTP_EHEADER),
    REQ("GET / HTTP/1.1\r\nHost: a\r\n\r", "x", WS_HTTP_EHEADER),
    /* Obsolete line folding and whitespace after the start line. */
    REQ("GET / HTTP/1.1\r\nHost: a\r\n", " b\r\n\r\n", WS_HTTP_EOBSFOLD),
    REQ("GET / HTTP/1.1\r\nHost: a\r\n", "\tb\r\n\r\n", WS_HTTP_EOBSFOLD),
    REQ("GET / HTTP/1.1\r\n", " Host: a\r\n\r\n", WS_HTTP_EOBSFOLD),
    REQ("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n", " x\r\n\r\n",
        WS_HTTP_EOBSFOLD),
    /* Header names. */
    REQ("GET / HTTP/1.1\r\nHost", " : a\r\n\r\n", WS_HTTP_EHEADER),
    REQ("GET / HTTP/1.1\r\nHost", "\t: a\r\n\r\n", WS_HTTP_EHEADER),
    REQ("GET / HTTP/1.1\r\n", ": a\r\n\r\n", WS_HTTP_EHEADER),
    REQ("GET / HTTP/1.1\r\nHo", "(st: a\r\n\r\n", WS_HTTP_EHEADER),
    REQ("GET / HTTP/1.1\r\nX", "@Y: a\r\n\r\n", WS_HTTP_EHEADER),
    REQ("GET / HTTP/1.1\r\nX", "\"Y: a\r\n\r\n", WS_HTTP_EHEADER),
    REQ("GET / HTTP/1.1\r\nX", "/Y: a\r\n\r\n", WS_HTTP_EHEADER),
    REQ("GET / HTTP/1.1\r\nX", "\0Y: a\r\n\r\n", WS_HTTP_EHEADER),
    REQ("GET / HTTP/1.1\r\nX", "\x80Y: a\r\n\r\n", WS_HTTP_EHEADER),
    REQ("GET / HTTP/1.1\r\nHost", "\r\n\r\n", WS_HTTP_EHEADER),
    REQ("GET / HTTP/1.1\r\n", "\x7f: a\r\n\r\n", WS_HTTP_EHEADER),
    /* Header values. */
    REQ("GET / HTTP/1.1\r\nHost: a", "\x01z\r\n\r\n", WS_HTTP_EHEADER),
    REQ("GET / HTTP/1.1\r\nHost: a", "\0z\r\n\r\n", WS_HTTP_EHEADER),
    REQ("GET / HTTP/1.1\r\nHost: ", "\0\r\n\r\n", WS_HTTP_EHEADER),
    REQ("GET / HTTP/1.1\r\nHost: a", "\x7f\r\n\r\n", WS_HTTP_EHEADER),
    REQ("GET / HTTP/1.1\r\nHost: a", "\x1b[0m\r\n\r\n", WS_HTTP_EHEADER),
    REQ("GET / HTTP/1.1\r\nHost: a", "\x0b\r\n\r\n", WS_HTTP_EHEADER),
    REQ("GET / HTTP/1.1\r\nHost: a", "\x0c\r\n\r\n", WS_HTTP_EHEADER),
    /* Method. */
    REQ("", " / HTTP/1.1\r\n\r\n", WS_HTTP_EREQLINE),
    REQ("", "\r\nGET / HTTP/1.1\r\n\r\n", WS_HTTP_EREQLINE),
    REQ("GE", "(T / HTTP/1.1\r\n\r\n", WS_HTTP_EREQLINE),
    REQ("G", "\0ET / HTTP/1.1\r\n\r\n", WS_HTTP_EREQLINE),
    REQ("GET", "\t/ HTTP/1.1\r\n\r\n", WS_HTTP_EREQLINE),
    REQ("GET", "\r\n\r\n", WS_HTTP_EREQLINE),
    REQ("G", "\xc3\xa9T / HTTP/1.1\r\n\r\n", WS_HTTP_EREQLINE),
    REQ("", "\x16\x03\x01\x02\x00\x01", WS_HTTP_EREQLINE), /* TLS hello */
    /* "GE T / HTTP/1.1" is method GE and target T, then "/" where the
     * version must start. */
    REQ("GE T ", "/ HTTP/1.1\r\n\r\n", WS_HTTP_EREQLINE),
    /* Target. */
    REQ("GET ", " HTTP/1.1\r\n\r\n", WS_HTTP_EREQLINE),
    REQ("GET HTTP/1.1", "\r\n\r\n", WS_HTTP_EREQLINE),
    REQ("GET /a", "\x01 HTTP/1.1\r\n\r\n", WS_HTTP_EREQLINE),
    REQ("GET /a", "\0 HTTP/1.1\r\n\r\n", WS_HTTP_EREQLINE),
    REQ("GET /a", "\x7f HTTP/1.1\r\n\r\n", WS_HTTP_EREQLINE),
    REQ("GET /a", "\t HTTP/1.1\r\n\r\n", WS_HTTP_EREQLINE),
    REQ("GET /", "\r\n\r\n", WS_HTTP_EREQLINE),
    /* Version. */
    REQ("GET / HTTP/", "2.0\r\n\r\n", WS_HTTP_EVERSION),
    REQ("GET / HTTP/", "0.9\r\n\r\n", WS_HTTP_EVERSION),
    REQ("GET / HTTP/", "3\r\n\r\n", WS_HTTP_EVERSION),
    REQ("GET / HTT", "X/1.1\r\n\r\n", WS_HTTP_EREQLINE),
    REQ("GET / ", "http/1.1\r\n\r\n", WS_HTTP_EREQLINE),
    REQ("GET / H", "ttp/1.1\r\n\r\n", WS_HTTP_EREQLINE),
    REQ("GET / HTTP/1", "/1\r\n\r\n", WS_HTTP_EREQLINE),
    REQ("GET / HTTP/1.", "x\r\n\r\n", WS_HTTP_EREQLINE),
    REQ("GET / HTTP/1.1", "0\r\n\r\n", WS_HTTP_EREQLINE),
    REQ("GET / HTTP/1.1", " \r\n\r\n", WS_HTTP_EREQLINE),
    REQ("GET / HTTP/", "x.1\r\n\r\n", WS_HTTP_EREQLINE),
    REQ("GET / HTTP/1", "1.1\r\n\r\n", WS_HTTP_EREQLINE),
    REQ("GET / ", "\r\n\r\n", WS_HTTP_EREQLINE),
    REQ("GET / HTTP/1.1", "\0\r\n\r\n", WS_HTTP_EREQLINE),
    /* Too many headers: exactly the limit passes (test_small_header_limits)
     * and one more fails when its first byte arrives. */
    {0, S("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n"), S("D: 4\r\n\r\n"),
     WS_HTTP_ETOOMANYHEADERS, 3},
    {0, S("GET / HTTP/1.1\r\n"), S("A: 1\r\n\r\n"), WS_HTTP_ETOOMANYHEADERS,
     0},
    /* Responses. */
    RES("", "http/1.1 101 X\r\n\r\n", WS_HTTP_ESTATUSLINE),
    RES("HTT", "X/1.1 101 X\r\n\r\n", WS_HTTP_ESTATUSLINE),
    RES("HTTP/", "2.0 101 X\r\n\r\n", WS_HTTP_EVERSION),
    RES("HTTP/", "0.9 200 OK\r\n\r\n", WS_HTTP_EVERSION),
    RES("HTTP/1.1", "\r\n\r\n", WS_HTTP_ESTATUSLINE),
    RES("HTTP/1.1 ", " 101 X\r\n\r\n", WS_HTTP_ESTATUSLINE),
    RES("HTTP/1.1 ", "099 X\r\n\r\n", WS_HTTP_ESTATUSLINE),
    RES("HTTP/1.1 10", "\r\n\r\n", WS_HTTP_ESTATUSLINE),
    RES("HTTP/1.1 10", " X\r\n\r\n", WS_HTTP_ESTATUSLINE),
    RES("HTTP/1.1 101", "1 X\r\n\r\n", WS_HTTP_ESTATUSLINE),
    RES("HTTP/1.1 101", "X\r\n\r\n", WS_HTTP_ESTATUSLINE),
    RES("HTTP/1.1 1", "a1 X\r\n\r\n", WS_HTTP_ESTATUSLINE),
    RES("HTTP/1.1 101 Sw", "\x01\r\n\r\n", WS_HTTP_ESTATUSLINE),
    RES("HTTP/1.1 101 Sw", "\0\r\n\r\n", WS_HTTP_ESTATUSLINE),
    RES("HTTP/1.1 101 Sw", "\n\r\n", WS_HTTP_EBARELF),
    RES("HTTP/1.1 101", "\n\r\n", WS_HTTP_EBARELF),
    RES("HTTP/1.1 101 X\r", "X\r\n", WS_HTTP_ESTATUSLINE),
    RES("HTTP/1.1 101 X\r\nUpgrade: websocket\r\n", " x\r\n\r\n",
        WS_HTTP_EOBSFOLD),
    RES("HTTP/1.1 101 X\r\nUpgrade", " : websocket\r\n\r\n",
        WS_HTTP_EHEADER),
    RES("HTTP/1.1 101 X\r\nUpgrade: websocket", "\n\r\n", WS_HTTP_EBARELF),
    RES("HTTP/1.1 101 X\r\n", "\n", WS_HTTP_EBARELF),
};

TEST(test_malformed) {
  char buf[256];
  for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
    const bad_case_t *c = &bad_cases[i];
    size_t n = c->good_n + c->rest_n;
    memcpy(buf, c->good, c->good_n);
    memcpy(buf + c->good_n, c->rest, c->rest_n);
    guard_t g;
    guard_init(&g, n);
    for (size_t k = 0; k <= n; k++) {
      const char *p = guard_put(&g, buf, k);
      int r = parse(c->response, p, k, WS_HTTP_MAX_HEAD, c->max_headers);
      int want = k <= c->good_n ? WS_HTTP_PARTIAL : c->code;
      if (r != want) {
        fprintf(stderr, "  case %zu (\"%s\"), prefix %zu: got %d, want %d\n",
                i, c->good, k, r, want);
        CHECK(r == want);
        break;
      }
    }
    guard_free(&g);
  }
}

/* A head of exactly `size` bytes, padded with a long header value. */
static char *sized_head(size_t size) {
  const char start[] = "GET / HTTP/1.1\r\nX-Pad: ";
  const char end[] = "\r\n\r\n";
  char *s = malloc(size);
  memcpy(s, start, sizeof start - 1);
  memset(s + sizeof start - 1, 'p', size - (sizeof start - 1) - 4);
  memcpy(s + size - 4, end, 4);
  return s;
}

TEST(test_head_size_limit) {
  /* A head of exactly the default limit parses; one byte more fails as
   * soon as the buffer holds more than the limit. */
  char *s = sized_head(WS_HTTP_MAX_HEAD);
  CHECK(prefixes_ok(0, s, WS_HTTP_MAX_HEAD, WS_HTTP_MAX_HEAD,
                    WS_HTTP_MAX_HEAD, WS_HTTP_MAX_HEADERS));
  free(s);

  s = sized_head(WS_HTTP_MAX_HEAD + 1);
  guard_t g;
  guard_init(&g, WS_HTTP_MAX_HEAD + 1);
  for (size_t k = WS_HTTP_MAX_HEAD - 2; k <= WS_HTTP_MAX_HEAD + 1; k++) {
    const char *p = guard_put(&g, s, k);
    CHECK_EQ_INT(parse(0, p, k, WS_HTTP_MAX_HEAD, WS_HTTP_MAX_HEADERS),
                 k <= WS_HTTP_MAX_HEAD ? WS_HTTP_PARTIAL
                                       : WS_HTTP_EHEADTOOBIG);
  }
  guard_free(&g);
  /* With room for it, the same head parses. */
  CHECK_EQ_INT(parse(0, s, WS_HTTP_MAX_HEAD + 1, WS_HTTP_MAX_HEAD + 1,
                     WS_HTTP_MAX_HEADERS),
               WS_HTTP_MAX_HEAD + 1);
  free(s);

  /* Small limits, including a final CRLF that straddles the limit. */
  const char req[] = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
  size_t n = sizeof req - 1;
  CHECK_EQ_INT(parse(0, req, n, n, 1), n);
  CHECK_EQ_INT(parse(0, req, n, n - 1, 1), WS_HTTP_EHEADTOOBIG);
  CHECK_EQ_INT(parse(0, req, n - 1, n - 1, 1), WS_HTTP_PARTIAL);
  CHECK_EQ_INT(parse(0, req, n, 0, 1), WS_HTTP_EHEADTOOBIG);
  CHECK_EQ_INT(parse(0, req, 0, 0, 1), WS_HTTP_PARTIAL);
  CHECK_EQ_INT(parse(0, req, n, SIZE_MAX, 1), n);
  /* An error inside the limit is reported as such, one beyond it is not
   * looked at. */
  CHECK_EQ_INT(parse(0, S("GET / HTTP/1.1\r\nBad Header: x\r\n\r\n"), 20, 1),
               WS_HTTP_EHEADER);
  CHECK_EQ_INT(parse(0, S("GET / HTTP/1.1\r\nBad Header: x\r\n\r\n"), 19, 1),
               WS_HTTP_EHEADTOOBIG);

  const char res[] = "HTTP/1.1 101 Switching Protocols\r\n\r\n";
  n = sizeof res - 1;
  CHECK_EQ_INT(parse(1, res, n, n, 0), n);
  CHECK_EQ_INT(parse(1, res, n, n - 1, 0), WS_HTTP_EHEADTOOBIG);
}

/* Replaces each byte of valid heads by interesting bytes and checks the
 * parser's consistency: a result is the head length or an error code, and
 * every prefix gives PARTIAL or that same result. */
TEST(test_mutations) {
  static const unsigned char subst[] = {
      0,   '\t', '\n', '\r', ' ', '"', '(', ':', ',', '/', 'A',
      'a', '1',  '0',  '2',  '.', 'H', 'P', 0x7f, 0x80, 0xff};
  const char *inputs[] = {rfc6455_request, rfc6455_response};
  char buf[512];
  for (int response = 0; response <= 1; response++) {
    const char *in = inputs[response];
    size_t n = strlen(in);
    guard_t g;
    guard_init(&g, n);
    for (size_t pos = 0; pos < n; pos++) {
      for (size_t j = 0; j < sizeof subst; j++) {
        memcpy(buf, in, n);
        buf[pos] = (char)subst[j];
        const char *p = guard_put(&g, buf, n);
        int full = parse(response, p, n, WS_HTTP_MAX_HEAD, 8);
        int ok = full == WS_HTTP_PARTIAL ||
                 (full >= WS_HTTP_ESTATUSLINE && full <= WS_HTTP_EREQLINE &&
                  full != WS_HTTP_EHEADTOOBIG) ||
                 (full > 0 && (size_t)full <= n);
        for (size_t k = 0; ok && k < n; k++) {
          p = guard_put(&g, buf, k);
          int r = parse(response, p, k, WS_HTTP_MAX_HEAD, 8);
          if (full > 0)
            ok = r == ((size_t)full <= k ? full : WS_HTTP_PARTIAL);
          else
            ok = r == WS_HTTP_PARTIAL || r == full;
        }
        if (!ok) {
          fprintf(stderr, "  mutation %zu=0x%02x of input %d\n", pos,
                  subst[j], response);
          CHECK(ok);
        }
      }
    }
    guard_free(&g);
  }
}

TEST(test_error_status_and_strings) {
  CHECK_EQ_INT(ws_http_error_status(WS_HTTP_PARTIAL), 0);
  CHECK_EQ_INT(ws_http_error_status(WS_HTTP_EREQLINE), 400);
  CHECK_EQ_INT(ws_http_error_status(WS_HTTP_EVERSION), 505);
  CHECK_EQ_INT(ws_http_error_status(WS_HTTP_EHEADER), 400);
  CHECK_EQ_INT(ws_http_error_status(WS_HTTP_EOBSFOLD), 400);
  CHECK_EQ_INT(ws_http_error_status(WS_HTTP_EBARELF), 400);
  CHECK_EQ_INT(ws_http_error_status(WS_HTTP_EHEADTOOBIG), 431);
  CHECK_EQ_INT(ws_http_error_status(WS_HTTP_ETOOMANYHEADERS), 431);
  CHECK_EQ_INT(ws_http_error_status(WS_HTTP_ESTATUSLINE), 400);
  CHECK_EQ_INT(ws_http_error_status(42), 0);

  CHECK(strcmp(ws_http_strerror(WS_HTTP_EREQLINE),
               "malformed request line") == 0);
  for (int code = WS_HTTP_ESTATUSLINE; code <= WS_HTTP_PARTIAL; code++) {
    const char *s = ws_http_strerror(code);
    CHECK(s != NULL && strlen(s) > 0 && strcmp(s, "unknown error") != 0);
  }
  CHECK(strcmp(ws_http_strerror(-100), "unknown error") == 0);

  static const struct {
    int status;
    const char *phrase;
  } phrases[] = {
      {100, "Continue"},
      {101, "Switching Protocols"},
      {200, "OK"},
      {201, "Created"},
      {204, "No Content"},
      {206, "Partial Content"},
      {301, "Moved Permanently"},
      {302, "Found"},
      {303, "See Other"},
      {304, "Not Modified"},
      {307, "Temporary Redirect"},
      {308, "Permanent Redirect"},
      {400, "Bad Request"},
      {401, "Unauthorized"},
      {403, "Forbidden"},
      {404, "Not Found"},
      {405, "Method Not Allowed"},
      {406, "Not Acceptable"},
      {408, "Request Timeout"},
      {409, "Conflict"},
      {410, "Gone"},
      {411, "Length Required"},
      {413, "Content Too Large"},
      {414, "URI Too Long"},
      {415, "Unsupported Media Type"},
      {426, "Upgrade Required"},
      {429, "Too Many Requests"},
      {431, "Request Header Fields Too Large"},
      {500, "Internal Server Error"},
      {501, "Not Implemented"},
      {502, "Bad Gateway"},
      {503, "Service Unavailable"},
      {504, "Gateway Timeout"},
      {505, "HTTP Version Not Supported"},
      {299, "Unknown"},
      {0, "Unknown"},
  };
  for (size_t i = 0; i < sizeof phrases / sizeof phrases[0]; i++)
    CHECK(strcmp(ws_http_reason_phrase(phrases[i].status),
                 phrases[i].phrase) == 0);
}

static ws_slice_t sl(const char *s) {
  ws_slice_t r = {s, strlen(s)};
  return r;
}

TEST(test_header_helpers) {
  ws_header_t h[] = {
      {{S("Host")}, {S("a")}},
      {{S("connection")}, {S("keep-alive")}},
      {{S("X")}, {S("")}},
      {{S("CONNECTION")}, {S(" Upgrade ,foo")}},
      {{S("Upgrade")}, {S("h2c, WebSocket")}},
  };
  size_t n = sizeof h / sizeof h[0];
  CHECK_EQ_INT(ws_http_find_header(h, n, "host", 0), 0);
  CHECK_EQ_INT(ws_http_find_header(h, n, "HOST", 1), -1);
  CHECK_EQ_INT(ws_http_find_header(h, n, "Connection", 0), 1);
  CHECK_EQ_INT(ws_http_find_header(h, n, "Connection", 2), 3);
  CHECK_EQ_INT(ws_http_find_header(h, n, "Connection", 4), -1);
  CHECK_EQ_INT(ws_http_find_header(h, n, "Connection", 99), -1);
  CHECK_EQ_INT(ws_http_find_header(h, n, "Hos", 0), -1);
  CHECK_EQ_INT(ws_http_find_header(h, n, "Hostx", 0), -1);
  CHECK_EQ_INT(ws_http_find_header(h, 0, "Host", 0), -1);
  CHECK_EQ_INT(ws_http_count_header(h, n, "connection"), 2);
  CHECK_EQ_INT(ws_http_count_header(h, n, "x"), 1);
  CHECK_EQ_INT(ws_http_count_header(h, n, "y"), 0);

  CHECK(ws_http_header_has_token(h, n, "Connection", "upgrade"));
  CHECK(ws_http_header_has_token(h, n, "Connection", "KEEP-ALIVE"));
  CHECK(ws_http_header_has_token(h, n, "connection", "foo"));
  CHECK(!ws_http_header_has_token(h, n, "Connection", "close"));
  CHECK(ws_http_header_has_token(h, n, "Upgrade", "websocket"));
  CHECK(!ws_http_header_has_token(h, n, "Host", "upgrade"));
  CHECK(!ws_http_header_has_token(h, n, "Missing", "x"));

  CHECK(ws_http_list_has_token(sl("websocket"), "websocket"));
  CHECK(ws_http_list_has_token(sl("WebSocket"), "websocket"));
  CHECK(ws_http_list_has_token(sl(" , ,\tupgrade\t,"), "Upgrade"));
  CHECK(ws_http_list_has_token(sl("a,b,c"), "c"));
  CHECK(ws_http_list_has_token(sl("a,b,c"), "a"));
  CHECK(ws_http_list_has_token(sl("a , b"), "b"));
  CHECK(!ws_http_list_has_token(sl("websocket2"), "websocket"));
  CHECK(!ws_http_list_has_token(sl("web socket"), "websocket"));
  CHECK(!ws_http_list_has_token(sl("websocket/13"), "websocket"));
  CHECK(!ws_http_list_has_token(sl("xwebsocket"), "websocket"));
  CHECK(!ws_http_list_has_token(sl(""), "websocket"));
  CHECK(!ws_http_list_has_token(sl(",,"), ""));
  CHECK(!ws_http_list_has_token(sl(""), ""));
  ws_slice_t cut = {"upgraded", 7}; /* not NUL-terminated at 7 */
  CHECK(ws_http_list_has_token(cut, "upgrade"));

  CHECK(ws_slice_ieq(sl("Sec-WebSocket-Key"), "sec-websocket-key"));
  CHECK(!ws_slice_ieq(sl("Sec-WebSocket-Key"), "sec-websocket-ke"));
  CHECK(!ws_slice_ieq(sl("Sec-WebSocket-Ke"), "sec-websocket-key"));
  CHECK(ws_slice_ieq(sl(""), ""));
  /* Only ASCII letters fold. */
  CHECK(!ws_slice_ieq(sl("\xc3\xa9"), "\xc3\x89"));
  CHECK(!ws_slice_ieq(sl("["), "{"));
}

TEST(test_content_length) {
  unsigned long long v = 7;
  CHECK(ws_http_parse_content_length(sl("0"), &v) == 0 && v == 0);
  CHECK(ws_http_parse_content_length(sl("12345"), &v) == 0 && v == 12345);
  CHECK(ws_http_parse_content_length(sl("007"), &v) == 0 && v == 7);
  CHECK(ws_http_parse_content_length(sl("18446744073709551615"), &v) == 0 &&
        v == 18446744073709551615ULL);
  v = 3;
  CHECK_EQ_INT(ws_http_parse_content_length(sl("18446744073709551616"), &v),
               -1);
  CHECK_EQ_INT(ws_http_parse_content_length(sl("99999999999999999999"), &v),
               -1);
  CHECK_EQ_INT(ws_http_parse_content_length(sl(""), &v), -1);
  CHECK_EQ_INT(ws_http_parse_content_length(sl("+1"), &v), -1);
  CHECK_EQ_INT(ws_http_parse_content_length(sl("-1"), &v), -1);
  CHECK_EQ_INT(ws_http_parse_content_length(sl("1 "), &v), -1);
  CHECK_EQ_INT(ws_http_parse_content_length(sl("1,1"), &v), -1);
  CHECK_EQ_INT(ws_http_parse_content_length(sl("0x10"), &v), -1);
  CHECK_EQ_INT(v, 3);
}

/* ws_http_next_header walks the same fields the parser found, in order,
 * with the same trimmed values. */
TEST(test_next_header) {
  static const char head[] =
      "GET /p?q=1 HTTP/1.1\r\n"
      "Host: example.com\r\n"
      "X-Empty:\r\n"
      "X-Ows: \t  a b \t\r\n"
      "Cookie: a=1\r\n"
      "cookie:b=2\r\n"
      "\r\n";
  ws_header_t parsed[8], h;
  ws_http_request_t req;
  int len = ws_http_parse_request(head, sizeof head - 1, 8192, &req, parsed, 8);
  CHECK_EQ_INT(len, (int)(sizeof head - 1));
  size_t pos = 0, i = 0;
  while (ws_http_next_header(head, (size_t)len, &pos, &h)) {
    CHECK(i < req.num_headers);
    if (i >= req.num_headers) break;
    CHECK(h.name.p == parsed[i].name.p && h.name.n == parsed[i].name.n);
    CHECK(h.value.n == parsed[i].value.n);
    CHECK_MEM(h.value.p, parsed[i].value.p, h.value.n);
    i++;
  }
  CHECK_EQ_INT(i, 5);
  CHECK_EQ_INT(i, req.num_headers);
  CHECK(ws_http_next_header(head, (size_t)len, &pos, &h) == 0);
  /* A head with no header fields at all. */
  pos = 0;
  CHECK(ws_http_next_header("GET / HTTP/1.1\r\n\r\n", 18, &pos, &h) == 0);
}

int main(void) {
  RUN(test_rfc6455_request);
  RUN(test_many_headers);
  RUN(test_small_header_limits);
  RUN(test_empty_values);
  RUN(test_ows_values);
  RUN(test_odd_but_valid_requests);
  RUN(test_body_after_head);
  RUN(test_responses);
  RUN(test_malformed);
  RUN(test_head_size_limit);
  RUN(test_mutations);
  RUN(test_error_status_and_strings);
  RUN(test_header_helpers);
  RUN(test_content_length);
  RUN(test_next_header);
  return TEST_REPORT();
}
