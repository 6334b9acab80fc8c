/* Tests for ws_handshake: RFC 6455 §4 on both sides. */
#include "ws_handshake.h"

#include <stdlib.h>

#include <openssl/evp.h>

#include "test.h"

#define MAXH 32

/* The request and response of RFC 6455 §1.3, line by line. */
#define GET "GET /chat HTTP/1.1\r\n"
#define HOST "Host: server.example.com\r\n"
#define UPGRADE "Upgrade: websocket\r\n"
#define CONNECTION "Connection: Upgrade\r\n"
#define KEY "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
#define VERSION "Sec-WebSocket-Version: 13\r\n"
#define ORIGIN "Origin: http://example.com\r\n"
#define RFC_KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define RFC_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
#define STATUS_101 "HTTP/1.1 101 Switching Protocols\r\n"
#define ACCEPT "Sec-WebSocket-Accept: " RFC_ACCEPT "\r\n"

static const char reason_bad_key[] =
    "Sec-WebSocket-Key must be 16 random bytes in base64";

/* Parses a request that must be well-formed and checks it. */
static int check_request(const char *s, ws_handshake_t *hs) {
  ws_http_request_t req;
  ws_header_t headers[MAXH];
  int r = ws_http_parse_request(s, strlen(s), WS_HTTP_MAX_HEAD, &req,
                                headers, MAXH);
  if (r != (int)strlen(s)) {
    fprintf(stderr, "  bad test request (%d): %s\n", r, s);
    abort();
  }
  return ws_handshake_check_request(&req, hs);
}

static int check_response(const char *s, const char *key,
                          const char *protocols, int extensions_ok,
                          ws_slice_t *protocol) {
  ws_http_response_t res;
  ws_header_t headers[MAXH];
  int r = ws_http_parse_response(s, strlen(s), WS_HTTP_MAX_HEAD, &res,
                                 headers, MAXH);
  if (r != (int)strlen(s)) {
    fprintf(stderr, "  bad test response (%d): %s\n", r, s);
    abort();
  }
  return ws_handshake_check_response(&res, key, protocols, extensions_ok,
                                     protocol);
}

static int slice_is(ws_slice_t s, const char *want) {
  return s.n == strlen(want) && memcmp(s.p, want, s.n) == 0;
}

static int buf_is(const ws_buf_t *b, const char *want) {
  return WS_BUF_SIZE(b) == strlen(want) &&
         memcmp(WS_BUF_PTR(b), want, strlen(want)) == 0;
}

TEST(test_accept_rfc_vector) {
  char out[WS_ACCEPT_LEN + 1];
  memset(out, 'x', sizeof out);
  CHECK_EQ_INT(ws_handshake_accept(RFC_KEY, strlen(RFC_KEY), out), 0);
  CHECK(strcmp(out, RFC_ACCEPT) == 0);
  /* The key is used as sent, not decoded or trimmed. */
  CHECK_EQ_INT(ws_handshake_accept(RFC_KEY "x", strlen(RFC_KEY), out), 0);
  CHECK(strcmp(out, RFC_ACCEPT) == 0);
  CHECK_EQ_INT(ws_handshake_accept("", 0, out), 0);
  CHECK_EQ_INT(strlen(out), WS_ACCEPT_LEN);
  CHECK(strcmp(out, RFC_ACCEPT) != 0);
}

TEST(test_valid_upgrades) {
  static const char *const valid[] = {
      GET HOST UPGRADE CONNECTION KEY ORIGIN
      "Sec-WebSocket-Protocol: chat, superchat\r\n" VERSION "\r\n",
      GET HOST UPGRADE CONNECTION KEY VERSION "\r\n",
      /* Header names and list tokens are case-insensitive. */
      GET "host: h\r\nUPGRADE: WebSocket\r\nconnection: UPGRADE\r\n"
      "sec-websocket-key: " RFC_KEY "\r\nSEC-WEBSOCKET-VERSION: 13\r\n\r\n",
      /* Lists, and a list spread over repeated headers. */
      GET HOST "Upgrade: h2c, websocket\r\n"
      "Connection: keep-alive, Upgrade\r\n" KEY VERSION "\r\n",
      GET HOST "Upgrade: foo\r\nUpgrade: websocket\r\n"
      "Connection: keep-alive\r\nConnection: ,upgrade,\r\n" KEY VERSION "\r\n",
      /* OWS around values is trimmed by the parser. */
      GET HOST UPGRADE CONNECTION "Sec-WebSocket-Key: \t" RFC_KEY " \r\n"
      "Sec-WebSocket-Version:  13 \r\n\r\n",
      /* Any HTTP/1.x with x >= 1. */
      "GET / HTTP/1.9\r\n" HOST UPGRADE CONNECTION KEY VERSION "\r\n",
      /* The largest and smallest base64 digits. */
      GET HOST UPGRADE CONNECTION
      "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n" VERSION "\r\n",
      GET HOST UPGRADE CONNECTION
      "Sec-WebSocket-Key: //////////////////////==\r\n" VERSION "\r\n",
      GET HOST UPGRADE CONNECTION
      "Sec-WebSocket-Key: +a+Z+0+9+/++++++++++++==\r\n" VERSION "\r\n",
  };
  for (size_t i = 0; i < sizeof valid / sizeof valid[0]; i++) {
    ws_handshake_t hs;
    memset(&hs, 0x55, sizeof hs);
    int status = check_request(valid[i], &hs);
    if (status != 0)
      fprintf(stderr, "  valid[%zu]: %d %s\n", i, status, hs.reason);
    CHECK_EQ_INT(status, 0);
    CHECK_EQ_INT(hs.status, 0);
    CHECK_EQ_INT(hs.is_upgrade, 1);
    CHECK(hs.reason == NULL);
    CHECK_EQ_INT(hs.key.n, WS_KEY_LEN);
  }
  ws_handshake_t hs;
  check_request(valid[0], &hs);
  CHECK(slice_is(hs.key, RFC_KEY));
  /* The key points into the request buffer. */
  CHECK(hs.key.p > valid[0] && hs.key.p < valid[0] + strlen(valid[0]));
}

TEST(test_plain_requests) {
  static const char *const plain[] = {
      "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
      "GET / HTTP/1.0\r\n\r\n",
      "POST /form HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
      /* An upgrade to something else is not ours to judge. */
      "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\n"
      "Connection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQ\r\n"
      "\r\n",
      "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket2\r\n"
      "Connection: upgrade\r\n\r\n",
      /* A similar-looking header is not a WebSocket header. */
      "GET / HTTP/1.1\r\nHost: a\r\nSec-WebSocket-Protocol: chat\r\n"
      "Sec-WebSocket-Keys: x\r\n\r\n",
  };
  for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++) {
    ws_handshake_t hs;
    memset(&hs, 0x55, sizeof hs);
    CHECK_EQ_INT(check_request(plain[i], &hs), 0);
    CHECK_EQ_INT(hs.is_upgrade, 0);
    CHECK_EQ_INT(hs.status, 0);
    CHECK(hs.reason == NULL);
    CHECK_EQ_INT(hs.key.n, 0);
  }
}

typedef struct bad_request {
  const char *request;
  int status;
  const char *reason;
} bad_request_t;

static const bad_request_t bad_requests[] = {
    /* Each rule alone. */
    {"POST /chat HTTP/1.1\r\n" HOST UPGRADE CONNECTION KEY VERSION "\r\n", 405,
     "WebSocket upgrade must use GET"},
    {"get /chat HTTP/1.1\r\n" HOST UPGRADE CONNECTION KEY VERSION "\r\n", 405,
     "WebSocket upgrade must use GET"},
    {"GET /chat HTTP/1.0\r\n" HOST UPGRADE CONNECTION KEY VERSION "\r\n", 400,
     "WebSocket upgrade requires HTTP/1.1"},
    {GET HOST CONNECTION KEY VERSION "\r\n", 400,
     "Upgrade header must contain the token websocket"},
    {GET HOST "Upgrade: h2c\r\n" CONNECTION KEY VERSION "\r\n", 400,
     "Upgrade header must contain the token websocket"},
    {GET HOST "Upgrade: websocket/13\r\n" CONNECTION KEY VERSION "\r\n", 400,
     "Upgrade header must contain the token websocket"},
    {GET HOST UPGRADE KEY VERSION "\r\n", 400,
     "Connection header must contain the token upgrade"},
    {GET HOST UPGRADE "Connection: keep-alive\r\n" KEY VERSION "\r\n", 400,
     "Connection header must contain the token upgrade"},
    {GET HOST UPGRADE "Connection: upgraded\r\n" KEY VERSION "\r\n", 400,
     "Connection header must contain the token upgrade"},
    {GET UPGRADE CONNECTION KEY VERSION "\r\n", 400, "missing Host header"},
    {GET HOST HOST UPGRADE CONNECTION KEY VERSION "\r\n", 400,
     "duplicate Host header"},
    {GET HOST UPGRADE CONNECTION KEY "\r\n", 400,
     "missing Sec-WebSocket-Version header"},
    {GET HOST UPGRADE CONNECTION KEY VERSION VERSION "\r\n", 400,
     "duplicate Sec-WebSocket-Version header"},
    {GET HOST UPGRADE CONNECTION KEY "Sec-WebSocket-Version: 8\r\n\r\n", 426,
     "unsupported Sec-WebSocket-Version (this server speaks 13)"},
    {GET HOST UPGRADE CONNECTION KEY "Sec-WebSocket-Version: 14\r\n\r\n",
     426, "unsupported Sec-WebSocket-Version (this server speaks 13)"},
    {GET HOST UPGRADE CONNECTION KEY "Sec-WebSocket-Version: 013\r\n\r\n",
     426, "unsupported Sec-WebSocket-Version (this server speaks 13)"},
    {GET HOST UPGRADE CONNECTION KEY "Sec-WebSocket-Version: 13, 8\r\n\r\n",
     426, "unsupported Sec-WebSocket-Version (this server speaks 13)"},
    {GET HOST UPGRADE CONNECTION KEY "Sec-WebSocket-Version:\r\n\r\n", 426,
     "unsupported Sec-WebSocket-Version (this server speaks 13)"},
    {GET HOST UPGRADE CONNECTION VERSION "\r\n", 400,
     "missing Sec-WebSocket-Key header"},
    {GET HOST UPGRADE CONNECTION KEY KEY VERSION "\r\n", 400,
     "duplicate Sec-WebSocket-Key header"},
    /* Bad keys. */
    {GET HOST UPGRADE CONNECTION "Sec-WebSocket-Key: dGVzdA==\r\n" VERSION
     "\r\n",
     400, "Sec-WebSocket-Key must be 16 random bytes in base64"},
    {GET HOST UPGRADE CONNECTION "Sec-WebSocket-Key:\r\n" VERSION "\r\n", 400,
     "Sec-WebSocket-Key must be 16 random bytes in base64"},
    /* 22 characters without the padding. */
    {GET HOST UPGRADE CONNECTION
     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ\r\n" VERSION "\r\n",
     400, "Sec-WebSocket-Key must be 16 random bytes in base64"},
    /* 24 characters of 18 bytes, no padding. */
    {GET HOST UPGRADE CONNECTION
     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZXMh\r\n" VERSION "\r\n",
     400, "Sec-WebSocket-Key must be 16 random bytes in base64"},
    /* 24 characters of 17 bytes. */
    {GET HOST UPGRADE CONNECTION
     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZXM=\r\n" VERSION "\r\n",
     400, "Sec-WebSocket-Key must be 16 random bytes in base64"},
    /* 21 bytes. */
    {GET HOST UPGRADE CONNECTION
     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZSBsb25n\r\n" VERSION "\r\n",
     400, "Sec-WebSocket-Key must be 16 random bytes in base64"},
    /* Characters outside the alphabet, padding in the wrong place. */
    {GET HOST UPGRADE CONNECTION
     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ-=\r\n" VERSION "\r\n",
     400, "Sec-WebSocket-Key must be 16 random bytes in base64"},
    {GET HOST UPGRADE CONNECTION
     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j_Q==\r\n" VERSION "\r\n",
     400, "Sec-WebSocket-Key must be 16 random bytes in base64"},
    {GET HOST UPGRADE CONNECTION
     "Sec-WebSocket-Key: dGhlIHNhbXBs ZSBub25jZQ==\r\n" VERSION "\r\n",
     400, "Sec-WebSocket-Key must be 16 random bytes in base64"},
    {GET HOST UPGRADE CONNECTION
     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j=Q==\r\n" VERSION "\r\n",
     400, "Sec-WebSocket-Key must be 16 random bytes in base64"},
    {GET HOST UPGRADE CONNECTION
     "Sec-WebSocket-Key: ========================\r\n" VERSION "\r\n",
     400, "Sec-WebSocket-Key must be 16 random bytes in base64"},
    {GET HOST UPGRADE CONNECTION
     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZ\xc3\xa9=\r\n" VERSION "\r\n",
     400, "Sec-WebSocket-Key must be 16 random bytes in base64"},
    /* A key or a version alone makes the request an upgrade. */
    {"GET / HTTP/1.1\r\n" HOST KEY "\r\n", 400,
     "Upgrade header must contain the token websocket"},
    {"GET / HTTP/1.1\r\n" HOST VERSION "\r\n", 400,
     "Upgrade header must contain the token websocket"},
    {"GET / HTTP/1.1\r\n" HOST UPGRADE "\r\n", 400,
     "Connection header must contain the token upgrade"},
    /* Precedence when several things are wrong. */
    {"POST / HTTP/1.0\r\n" UPGRADE "\r\n", 405,
     "WebSocket upgrade must use GET"},
    {"PUT / HTTP/1.1\r\nSec-WebSocket-Version: 8\r\n\r\n", 405,
     "WebSocket upgrade must use GET"},
    {"GET / HTTP/1.0\r\n" UPGRADE "\r\n", 400,
     "WebSocket upgrade requires HTTP/1.1"},
    {"GET / HTTP/1.0\r\n" KEY "\r\n", 400,
     "WebSocket upgrade requires HTTP/1.1"},
    {GET KEY "\r\n", 400, "Upgrade header must contain the token websocket"},
    {GET UPGRADE "Sec-WebSocket-Version: 8\r\n\r\n", 400,
     "Connection header must contain the token upgrade"},
    {GET UPGRADE CONNECTION "Sec-WebSocket-Version: 8\r\n"
                            "Sec-WebSocket-Key: x\r\n\r\n",
     400, "missing Host header"},
    {GET HOST UPGRADE CONNECTION "Sec-WebSocket-Version: 8\r\n"
                                 "Sec-WebSocket-Key: x\r\n\r\n",
     426, "unsupported Sec-WebSocket-Version (this server speaks 13)"},
    {GET HOST UPGRADE CONNECTION "Sec-WebSocket-Key: x\r\n\r\n", 400,
     "missing Sec-WebSocket-Version header"},
};

TEST(test_bad_requests) {
  for (size_t i = 0; i < sizeof bad_requests / sizeof bad_requests[0]; i++) {
    const bad_request_t *c = &bad_requests[i];
    ws_handshake_t hs;
    memset(&hs, 0x55, sizeof hs);
    int status = check_request(c->request, &hs);
    int ok = status == c->status && hs.status == c->status &&
             hs.is_upgrade == 1 && hs.reason != NULL &&
             strcmp(hs.reason, c->reason) == 0 && hs.key.n == 0;
    if (!ok)
      fprintf(stderr, "  case %zu: got %d \"%s\", want %d \"%s\"\n", i,
              status, hs.reason ? hs.reason : "(null)", c->status,
              c->reason);
    CHECK(ok);
  }
}

TEST(test_bad_key_reason) {
  ws_handshake_t hs;
  CHECK_EQ_INT(check_request(GET HOST UPGRADE CONNECTION
                             "Sec-WebSocket-Key: dGVzdA==\r\n" VERSION "\r\n",
                             &hs),
               400);
  CHECK(hs.reason != NULL && strcmp(hs.reason, reason_bad_key) == 0);
}

/* Every base64 key of 16 bytes passes; flipping the padding does not. */
TEST(test_keys_from_openssl) {
  for (int i = 0; i < 256; i++) {
    unsigned char raw[16];
    char key[WS_KEY_LEN + 1], req[256];
    for (int j = 0; j < 16; j++) raw[j] = (unsigned char)(i * 31 + j * i);
    EVP_EncodeBlock((unsigned char *)key, raw, 16);
    snprintf(req, sizeof req,
             GET HOST UPGRADE CONNECTION "Sec-WebSocket-Key: %s\r\n" VERSION
                                         "\r\n",
             key);
    ws_handshake_t hs;
    CHECK_EQ_INT(check_request(req, &hs), 0);
    char *pad = strstr(req, "==");
    pad[1] = 'A';
    CHECK_EQ_INT(check_request(req, &hs), 400);
  }
}

TEST(test_write_101) {
  ws_buf_t b = {0};
  ws_slice_t key = {RFC_KEY, strlen(RFC_KEY)};
  CHECK_EQ_INT(ws_handshake_write_101(&b, key, NULL, NULL, 0), 0);
  CHECK(buf_is(&b, STATUS_101 "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                              ACCEPT "\r\n"));
  ws_buf_free(&b);

  CHECK_EQ_INT(ws_handshake_write_101(&b, key, "chat", NULL, 0), 0);
  CHECK(buf_is(&b, STATUS_101 "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                              ACCEPT "Sec-WebSocket-Protocol: chat\r\n\r\n"));
  ws_buf_free(&b);

  const char extra[] = "X-A: 1\r\nSet-Cookie: s=2\r\nignored";
  CHECK_EQ_INT(ws_handshake_write_101(&b, key, "chat", extra, 25), 0);
  CHECK(buf_is(&b, STATUS_101 "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                              ACCEPT "Sec-WebSocket-Protocol: chat\r\n"
                              "X-A: 1\r\nSet-Cookie: s=2\r\n\r\n"));
  ws_buf_free(&b);

  /* An empty protocol is left out; the key slice need not end in NUL. */
  ws_slice_t cut = {RFC_KEY "trailing", strlen(RFC_KEY)};
  CHECK_EQ_INT(ws_handshake_write_101(&b, cut, "", NULL, 0), 0);
  CHECK(buf_is(&b, STATUS_101 "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                              ACCEPT "\r\n"));
  ws_buf_free(&b);

  /* Appends after what the buffer already holds, consumed or not. */
  ws_buf_append(&b, "xxold", 5, 0);
  ws_buf_consume(&b, 2);
  CHECK_EQ_INT(ws_handshake_write_101(&b, key, NULL, NULL, 0), 0);
  CHECK(buf_is(&b, "old" STATUS_101 "Upgrade: websocket\r\n"
                   "Connection: Upgrade\r\n" ACCEPT "\r\n"));
  ws_buf_free(&b);
}

/* Parses an error answer and checks its status, headers and body. */
static void check_error_answer(const ws_buf_t *b, int status,
                               const char *reason) {
  ws_http_response_t res;
  ws_header_t h[MAXH];
  const char *p = (const char *)WS_BUF_PTR(b);
  size_t n = WS_BUF_SIZE(b);
  int r = ws_http_parse_response(p, n, WS_HTTP_MAX_HEAD, &res, h, MAXH);
  CHECK(r > 0);
  if (r <= 0) return;
  CHECK_EQ_INT(res.status, status);
  CHECK(slice_is(res.reason, ws_http_reason_phrase(status)));
  int i = ws_http_find_header(h, res.num_headers, "Content-Length", 0);
  unsigned long long len = 0;
  CHECK(i >= 0 && ws_http_parse_content_length(h[i].value, &len) == 0);
  CHECK_EQ_INT(len, n - (size_t)r);
  CHECK_EQ_INT(len, strlen(reason) + 1);
  CHECK_MEM(p + r, reason, strlen(reason));
  CHECK_EQ_INT(p[n - 1], '\n');
  CHECK(ws_http_header_has_token(h, res.num_headers, "Connection", "close"));
  i = ws_http_find_header(h, res.num_headers, "Content-Type", 0);
  CHECK(i >= 0 && slice_is(h[i].value, "text/plain; charset=utf-8"));
}

TEST(test_write_error) {
  ws_buf_t b = {0};
  CHECK_EQ_INT(ws_handshake_write_error(&b, 400, "missing Host header", NULL,
                                        0),
               0);
  CHECK(buf_is(&b, "HTTP/1.1 400 Bad Request\r\n"
                   "Content-Type: text/plain; charset=utf-8\r\n"
                   "Content-Length: 20\r\n"
                   "Connection: close\r\n"
                   "\r\n"
                   "missing Host header\n"));
  check_error_answer(&b, 400, "missing Host header");
  ws_buf_free(&b);

  const char *r426 =
      "unsupported Sec-WebSocket-Version (this server speaks 13)";
  CHECK_EQ_INT(ws_handshake_write_error(&b, 426, r426, "X-A: 1\r\n", 8), 0);
  char want[512];
  snprintf(want, sizeof want,
           "HTTP/1.1 426 Upgrade Required\r\n"
           "Content-Type: text/plain; charset=utf-8\r\n"
           "Content-Length: %zu\r\n"
           "Connection: close\r\n"
           "Upgrade: websocket\r\n"
           "Sec-WebSocket-Version: 13\r\n"
           "X-A: 1\r\n"
           "\r\n"
           "%s\n",
           strlen(r426) + 1, r426);
  CHECK(buf_is(&b, want));
  check_error_answer(&b, 426, r426);
  ws_buf_free(&b);

  CHECK_EQ_INT(ws_handshake_write_error(&b, 405,
                                        "WebSocket upgrade must use GET",
                                        NULL, 0),
               0);
  CHECK(buf_is(&b, "HTTP/1.1 405 Method Not Allowed\r\n"
                   "Content-Type: text/plain; charset=utf-8\r\n"
                   "Content-Length: 31\r\n"
                   "Connection: close\r\n"
                   "Allow: GET\r\n"
                   "\r\n"
                   "WebSocket upgrade must use GET\n"));
  check_error_answer(&b, 405, "WebSocket upgrade must use GET");
  ws_buf_free(&b);

  /* 431 and 505 from the parser's codes; a NULL reason is the phrase. */
  CHECK_EQ_INT(ws_handshake_write_error(
                   &b, ws_http_error_status(WS_HTTP_EHEADTOOBIG),
                   ws_http_strerror(WS_HTTP_EHEADTOOBIG), NULL, 0),
               0);
  check_error_answer(&b, 431, "head too big");
  ws_buf_free(&b);
  CHECK_EQ_INT(ws_handshake_write_error(&b, 505, NULL, NULL, 0), 0);
  check_error_answer(&b, 505, "HTTP Version Not Supported");
  ws_buf_free(&b);
  CHECK_EQ_INT(ws_handshake_write_error(&b, 403, "", NULL, 0), 0);
  check_error_answer(&b, 403, "");
  ws_buf_free(&b);

  /* An impossible status writes nothing. */
  ws_buf_append(&b, "keep", 4, 0);
  CHECK_EQ_INT(ws_handshake_write_error(&b, 99, "x", NULL, 0), -1);
  CHECK_EQ_INT(ws_handshake_write_error(&b, 1000, "x", NULL, 0), -1);
  CHECK(buf_is(&b, "keep"));
  ws_buf_free(&b);
}

TEST(test_new_key) {
  char k1[WS_KEY_LEN + 1], k2[WS_KEY_LEN + 1];
  memset(k1, 'x', sizeof k1);
  CHECK_EQ_INT(ws_handshake_new_key(k1), 0);
  CHECK_EQ_INT(ws_handshake_new_key(k2), 0);
  CHECK_EQ_INT(strlen(k1), WS_KEY_LEN);
  CHECK(strcmp(k1, k2) != 0);
  unsigned char raw[WS_KEY_LEN];
  CHECK_EQ_INT(EVP_DecodeBlock(raw, (const unsigned char *)k1, WS_KEY_LEN),
               18);
  CHECK(k1[22] == '=' && k1[23] == '=');
}

TEST(test_write_request) {
  ws_buf_t b = {0};
  CHECK_EQ_INT(ws_handshake_write_request(&b, "server.example.com", "/chat",
                                          RFC_KEY, NULL, NULL, 0),
               0);
  CHECK(buf_is(&b, GET HOST UPGRADE CONNECTION KEY VERSION "\r\n"));
  ws_buf_free(&b);

  CHECK_EQ_INT(ws_handshake_write_request(
                   &b, "server.example.com:8080", "/chat?room=1", RFC_KEY,
                   "chat, superchat", ORIGIN "junk", strlen(ORIGIN)),
               0);
  CHECK(buf_is(&b, "GET /chat?room=1 HTTP/1.1\r\n"
                   "Host: server.example.com:8080\r\n" UPGRADE CONNECTION KEY
                       VERSION "Sec-WebSocket-Protocol: chat, superchat\r\n"
                   ORIGIN "\r\n"));
  ws_buf_free(&b);

  /* No target means "/"; an empty protocol list is left out. */
  CHECK_EQ_INT(ws_handshake_write_request(&b, "h", NULL, RFC_KEY, "", NULL, 0),
               0);
  CHECK(buf_is(&b, "GET / HTTP/1.1\r\nHost: h\r\n" UPGRADE CONNECTION KEY
                       VERSION "\r\n"));
  ws_buf_free(&b);
  CHECK_EQ_INT(ws_handshake_write_request(&b, NULL, "/", RFC_KEY, NULL, NULL,
                                          0),
               -1);
  CHECK_EQ_INT(ws_handshake_write_request(&b, "h", "/", NULL, NULL, NULL, 0),
               -1);
  CHECK_EQ_INT(WS_BUF_SIZE(&b), 0);
  ws_buf_free(&b);
}

/* The client's request, through the server's parser and check, the 101
 * and the client's check. */
TEST(test_round_trip) {
  char key[WS_KEY_LEN + 1];
  ws_buf_t req_buf = {0}, res_buf = {0};
  CHECK_EQ_INT(ws_handshake_new_key(key), 0);
  CHECK_EQ_INT(ws_handshake_write_request(&req_buf, "localhost:9001", "/ws",
                                          key, "v2.chat,v1.chat", NULL, 0),
               0);

  ws_http_request_t req;
  ws_header_t h[MAXH];
  int r = ws_http_parse_request((const char *)WS_BUF_PTR(&req_buf),
                                WS_BUF_SIZE(&req_buf), WS_HTTP_MAX_HEAD, &req,
                                h, MAXH);
  CHECK_EQ_INT(r, WS_BUF_SIZE(&req_buf));
  ws_handshake_t hs;
  CHECK_EQ_INT(ws_handshake_check_request(&req, &hs), 0);
  CHECK_EQ_INT(hs.is_upgrade, 1);
  CHECK(slice_is(hs.key, key));
  CHECK(ws_http_header_has_token(h, req.num_headers, "Sec-WebSocket-Protocol",
                                 "v1.chat"));

  CHECK_EQ_INT(ws_handshake_write_101(&res_buf, hs.key, "v1.chat", NULL, 0),
               0);
  ws_http_response_t res;
  ws_header_t rh[MAXH];
  r = ws_http_parse_response((const char *)WS_BUF_PTR(&res_buf),
                             WS_BUF_SIZE(&res_buf), WS_HTTP_MAX_HEAD, &res, rh,
                             MAXH);
  CHECK_EQ_INT(r, WS_BUF_SIZE(&res_buf));
  ws_slice_t proto = {"x", 1};
  CHECK_EQ_INT(ws_handshake_check_response(&res, key, "v2.chat,v1.chat", 0,
                                           &proto),
               WS_HS_OK);
  CHECK(slice_is(proto, "v1.chat"));
  /* Another key does not match. */
  CHECK_EQ_INT(ws_handshake_check_response(&res, RFC_KEY, "v2.chat,v1.chat",
                                           0, &proto),
               WS_HS_EACCEPT);
  ws_buf_free(&req_buf);
  ws_buf_free(&res_buf);
}

typedef struct bad_response {
  const char *response;
  const char *protocols;
  int extensions_ok;
  int code;
} bad_response_t;

static const bad_response_t responses[] = {
    {STATUS_101 UPGRADE CONNECTION ACCEPT "\r\n", NULL, 0, WS_HS_OK},
    {STATUS_101 "upgrade: WebSocket\r\nconnection: keep-alive, upgrade\r\n"
                "sec-websocket-accept: " RFC_ACCEPT "\r\n\r\n",
     NULL, 0, WS_HS_OK},
    {"HTTP/1.1 101 Whatever\r\n" UPGRADE CONNECTION ACCEPT "\r\n", NULL, 0,
     WS_HS_OK},
    {"HTTP/1.1 200 OK\r\n" UPGRADE CONNECTION ACCEPT "\r\n", NULL, 0,
     WS_HS_ESTATUS},
    {"HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\n\r\n",
     NULL, 0, WS_HS_ESTATUS},
    {"HTTP/1.1 100 Continue\r\n\r\n", NULL, 0, WS_HS_ESTATUS},
    {STATUS_101 CONNECTION ACCEPT "\r\n", NULL, 0, WS_HS_EUPGRADE},
    {STATUS_101 "Upgrade: h2c\r\n" CONNECTION ACCEPT "\r\n", NULL, 0,
     WS_HS_EUPGRADE},
    {STATUS_101 UPGRADE ACCEPT "\r\n", NULL, 0, WS_HS_ECONNECTION},
    {STATUS_101 UPGRADE "Connection: close\r\n" ACCEPT "\r\n", NULL, 0,
     WS_HS_ECONNECTION},
    {STATUS_101 UPGRADE CONNECTION "\r\n", NULL, 0, WS_HS_EACCEPT},
    {STATUS_101 UPGRADE CONNECTION ACCEPT ACCEPT "\r\n", NULL, 0,
     WS_HS_EACCEPT},
    {STATUS_101 UPGRADE CONNECTION
     "Sec-WebSocket-Accept: S3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
     NULL, 0, WS_HS_EACCEPT},
    {STATUS_101 UPGRADE CONNECTION
     "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo\r\n\r\n",
     NULL, 0, WS_HS_EACCEPT},
    {STATUS_101 UPGRADE CONNECTION
     "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo==\r\n\r\n",
     NULL, 0, WS_HS_EACCEPT},
    {STATUS_101 UPGRADE CONNECTION "Sec-WebSocket-Accept: " RFC_KEY "\r\n\r\n",
     NULL, 0, WS_HS_EACCEPT},
    /* Subprotocols. */
    {STATUS_101 UPGRADE CONNECTION ACCEPT "Sec-WebSocket-Protocol: chat\r\n\r\n",
     "chat, superchat", 0, WS_HS_OK},
    {STATUS_101 UPGRADE CONNECTION ACCEPT
     "Sec-WebSocket-Protocol: superchat\r\n\r\n",
     "chat,superchat", 0, WS_HS_OK},
    {STATUS_101 UPGRADE CONNECTION ACCEPT "\r\n", "chat, superchat", 0,
     WS_HS_OK},
    {STATUS_101 UPGRADE CONNECTION ACCEPT "Sec-WebSocket-Protocol: chat\r\n\r\n",
     NULL, 0, WS_HS_EPROTOCOL},
    {STATUS_101 UPGRADE CONNECTION ACCEPT "Sec-WebSocket-Protocol: chat\r\n\r\n",
     "", 0, WS_HS_EPROTOCOL},
    {STATUS_101 UPGRADE CONNECTION ACCEPT "Sec-WebSocket-Protocol: chat\r\n\r\n",
     "superchat", 0, WS_HS_EPROTOCOL},
    {STATUS_101 UPGRADE CONNECTION ACCEPT "Sec-WebSocket-Protocol: Chat\r\n\r\n",
     "chat", 0, WS_HS_EPROTOCOL},
    {STATUS_101 UPGRADE CONNECTION ACCEPT
     "Sec-WebSocket-Protocol: chat, superchat\r\n\r\n",
     "chat, superchat", 0, WS_HS_EPROTOCOL},
    {STATUS_101 UPGRADE CONNECTION ACCEPT
     "Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Protocol: chat\r\n\r\n",
     "chat", 0, WS_HS_EPROTOCOL},
    {STATUS_101 UPGRADE CONNECTION ACCEPT "Sec-WebSocket-Protocol:\r\n\r\n",
     "chat", 0, WS_HS_EPROTOCOL},
    {STATUS_101 UPGRADE CONNECTION ACCEPT "Sec-WebSocket-Protocol: ch\r\n\r\n",
     "chat", 0, WS_HS_EPROTOCOL},
    {STATUS_101 UPGRADE CONNECTION ACCEPT
     "Sec-WebSocket-Protocol: \"chat\"\r\n\r\n",
     "\"chat\"", 0, WS_HS_EPROTOCOL},
    /* Extensions. */
    {STATUS_101 UPGRADE CONNECTION ACCEPT
     "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
     NULL, 0, WS_HS_EEXTENSION},
    {STATUS_101 UPGRADE CONNECTION ACCEPT "Sec-WebSocket-Extensions:\r\n\r\n",
     NULL, 0, WS_HS_EEXTENSION},
    {STATUS_101 UPGRADE CONNECTION ACCEPT
     "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
     NULL, 1, WS_HS_OK},
    /* The first failing rule wins. */
    {"HTTP/1.1 400 Bad Request\r\n\r\n", NULL, 0, WS_HS_ESTATUS},
    {STATUS_101 "\r\n", NULL, 0, WS_HS_EUPGRADE},
    {STATUS_101 UPGRADE "Sec-WebSocket-Protocol: x\r\n\r\n", NULL, 0,
     WS_HS_ECONNECTION},
    {STATUS_101 UPGRADE CONNECTION "Sec-WebSocket-Protocol: x\r\n\r\n", NULL,
     0, WS_HS_EACCEPT},
    {STATUS_101 UPGRADE CONNECTION ACCEPT
     "Sec-WebSocket-Protocol: x\r\nSec-WebSocket-Extensions: y\r\n\r\n",
     NULL, 0, WS_HS_EPROTOCOL},
};

TEST(test_check_response) {
  for (size_t i = 0; i < sizeof responses / sizeof responses[0]; i++) {
    const bad_response_t *c = &responses[i];
    ws_slice_t proto = {"x", 1};
    int r = check_response(c->response, RFC_KEY, c->protocols,
                           c->extensions_ok, &proto);
    if (r != c->code)
      fprintf(stderr, "  case %zu: got %s, want %s\n", i,
              ws_handshake_errname(r), ws_handshake_errname(c->code));
    CHECK_EQ_INT(r, c->code);
    if (r != WS_HS_OK) CHECK(proto.p == NULL && proto.n == 0);
  }
  ws_slice_t proto;
  CHECK_EQ_INT(check_response(responses[17].response, RFC_KEY,
                              responses[17].protocols, 0, &proto),
               WS_HS_OK);
  CHECK(slice_is(proto, "superchat"));
  CHECK_EQ_INT(check_response(responses[0].response, RFC_KEY, "chat", 0,
                              &proto),
               WS_HS_OK);
  CHECK(proto.n == 0);
  /* The protocol out-parameter may be NULL; the key must be given. */
  CHECK_EQ_INT(check_response(responses[16].response, RFC_KEY, "chat", 0,
                              NULL),
               WS_HS_OK);
  CHECK_EQ_INT(check_response(responses[0].response, NULL, NULL, 0, NULL),
               WS_HS_EACCEPT);
}

TEST(test_error_names) {
  static const struct {
    int code;
    const char *name;
  } names[] = {
      {WS_HS_OK, "OK"},
      {WS_HS_ESTATUS, "ESTATUS"},
      {WS_HS_EUPGRADE, "EUPGRADE"},
      {WS_HS_ECONNECTION, "ECONNECTION"},
      {WS_HS_EACCEPT, "EACCEPT"},
      {WS_HS_EPROTOCOL, "EPROTOCOL"},
      {WS_HS_EEXTENSION, "EEXTENSION"},
  };
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    CHECK(strcmp(ws_handshake_errname(names[i].code), names[i].name) == 0);
    const char *s = ws_handshake_strerror(names[i].code);
    CHECK(s != NULL && strlen(s) > 0 &&
          strcmp(s, ws_handshake_strerror(-99)) != 0);
  }
  CHECK(strcmp(ws_handshake_errname(-99), "EUNKNOWN") == 0);
}

int main(void) {
  RUN(test_accept_rfc_vector);
  RUN(test_valid_upgrades);
  RUN(test_plain_requests);
  RUN(test_bad_requests);
  RUN(test_bad_key_reason);
  RUN(test_keys_from_openssl);
  RUN(test_write_101);
  RUN(test_write_error);
  RUN(test_new_key);
  RUN(test_write_request);
  RUN(test_round_trip);
  RUN(test_check_response);
  RUN(test_error_names);
  return TEST_REPORT();
}
