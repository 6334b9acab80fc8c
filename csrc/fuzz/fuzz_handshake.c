/*
 * libFuzzer target for ws_handshake.  The input is parsed as a request and
 * checked per RFC 6455 §4.2.1; a valid upgrade is answered with a 101
 * that must parse and pass the client's check with the same key, and an
 * invalid one with an error answer that must parse with the same status.
 * The input is also parsed as a response and checked as a client would.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Icsrc \
 *     csrc/fuzz/fuzz_handshake.c csrc/ws_http.c csrc/ws_handshake.c \
 *     csrc/ws_buf.c -lcrypto -o fuzz_handshake
 *   ./fuzz_handshake -dict=csrc/fuzz/http.dict csrc/fuzz/corpus/http
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ws_handshake.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x) \
  do {           \
    if (!(x)) abort(); \
  } while (0)

#define MAXH 64

static void check_upgrade(const ws_http_request_t *req) {
  ws_handshake_t hs;
  int status = ws_handshake_check_request(req, &hs);
  CHECK(status == hs.status);
  if (!hs.is_upgrade) {
    CHECK(status == 0);
    return;
  }
  if (status != 0) {
    CHECK(status == 400 || status == 405 || status == 426);
    CHECK(hs.reason != NULL && hs.reason[0] != '\0');
    ws_buf_t out = {0};
    CHECK(ws_handshake_write_error(&out, status, hs.reason, NULL, 0) == 0);
    ws_http_response_t res;
    ws_header_t h[MAXH];
    int r = ws_http_parse_response((const char *)WS_BUF_PTR(&out),
                                   WS_BUF_SIZE(&out), WS_HTTP_MAX_HEAD, &res,
                                   h, MAXH);
    CHECK(r > 0 && res.status == status);
    CHECK(WS_BUF_SIZE(&out) - (size_t)r == strlen(hs.reason) + 1);
    ws_buf_free(&out);
    return;
  }

  CHECK(hs.key.n == WS_KEY_LEN);
  char key[WS_KEY_LEN + 1];
  memcpy(key, hs.key.p, WS_KEY_LEN);
  key[WS_KEY_LEN] = '\0';

  ws_buf_t out = {0};
  CHECK(ws_handshake_write_101(&out, hs.key, "chat", NULL, 0) == 0);
  ws_http_response_t res;
  ws_header_t h[MAXH];
  int r = ws_http_parse_response((const char *)WS_BUF_PTR(&out),
                                 WS_BUF_SIZE(&out), WS_HTTP_MAX_HEAD, &res, h,
                                 MAXH);
  CHECK(r > 0 && (size_t)r == WS_BUF_SIZE(&out) && res.status == 101);

  char accept[WS_ACCEPT_LEN + 1];
  CHECK(ws_handshake_accept(key, WS_KEY_LEN, accept) == 0);
  int i = ws_http_find_header(h, res.num_headers, "Sec-WebSocket-Accept", 0);
  CHECK(i >= 0 && h[i].value.n == WS_ACCEPT_LEN &&
        memcmp(h[i].value.p, accept, WS_ACCEPT_LEN) == 0);

  ws_slice_t proto;
  CHECK(ws_handshake_check_response(&res, key, "chat", 0, &proto) ==
        WS_HS_OK);
  CHECK(proto.n == 4 && memcmp(proto.p, "chat", 4) == 0);
  CHECK(ws_handshake_check_response(&res, key, NULL, 0, &proto) ==
        WS_HS_EPROTOCOL);
  ws_buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *buf = (const char *)data;
  ws_header_t h[MAXH];

  ws_http_request_t req;
  if (ws_http_parse_request(buf, size, WS_HTTP_MAX_HEAD, &req, h, MAXH) > 0)
    check_upgrade(&req);

  ws_http_response_t res;
  if (ws_http_parse_response(buf, size, WS_HTTP_MAX_HEAD, &res, h, MAXH) > 0) {
    ws_slice_t proto;
    int r = ws_handshake_check_response(&res, "dGhlIHNhbXBsZSBub25jZQ==",
                                        "chat, superchat", size & 1, &proto);
    CHECK(r <= WS_HS_OK && r >= WS_HS_EEXTENSION);
    if (r == WS_HS_OK) CHECK(proto.n == 0 || proto.p != NULL);
  }
  return 0;
}
