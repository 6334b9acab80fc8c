/*
 * libFuzzer target for ws_http.  The first two input bytes choose the
 * limits, and the whole input is parsed as a request and as a response.
 * Every success is checked: the head lies within the input and the limits,
 * every slice lies within the head, and the result does not depend on
 * bytes after the head.  Every failure must be a known code, and every
 * prefix of the input must give PARTIAL or the same result.  A parsed
 * request's fields are walked again with ws_http_next_header, which must
 * find the same slices.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Icsrc \
 *     csrc/fuzz/fuzz_http.c csrc/ws_http.c -o fuzz_http
 *   ./fuzz_http -dict=csrc/fuzz/http.dict csrc/fuzz/corpus/http
 */
#include <stdint.h>
#include <stdlib.h>

#include "ws_http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x) \
  do {           \
    if (!(x)) abort(); \
  } while (0)

static int in_range(ws_slice_t s, const char *start, size_t n) {
  return s.p != NULL && s.p >= start && s.n <= n &&
         (size_t)(s.p - start) <= n - s.n;
}

static int is_error(int r) {
  return r <= WS_HTTP_EREQLINE && r >= WS_HTTP_ESTATUSLINE;
}

static void check_headers(const ws_header_t *h, size_t count,
                          size_t max_headers, const char *buf, size_t head) {
  CHECK(count <= max_headers);
  for (size_t i = 0; i < count; i++) {
    CHECK(in_range(h[i].name, buf, head) && h[i].name.n > 0);
    CHECK(in_range(h[i].value, buf, head));
    for (size_t j = 0; j < h[i].value.n; j++)
      CHECK(h[i].value.p[j] != '\r' && h[i].value.p[j] != '\n');
    if (h[i].value.n > 0) {
      CHECK(h[i].value.p[0] != ' ' && h[i].value.p[0] != '\t');
      CHECK(h[i].value.p[h[i].value.n - 1] != ' ' &&
            h[i].value.p[h[i].value.n - 1] != '\t');
    }
  }
}

/* Parses buf[0..len) as a request (response = 0) or a response. */
static int parse(int response, const char *buf, size_t len, size_t max_head,
                 ws_header_t *headers, size_t max_headers) {
  if (response) {
    ws_http_response_t res;
    int r = ws_http_parse_response(buf, len, max_head, &res, headers,
                                   max_headers);
    CHECK(res.headers == headers);
    if (r > 0) {
      check_headers(headers, res.num_headers, max_headers, buf, (size_t)r);
      CHECK(res.status >= 100 && res.status <= 999);
      CHECK(res.minor_version >= 0 && res.minor_version <= 9);
      CHECK(in_range(res.reason, buf, (size_t)r));
    }
    return r;
  }
  ws_http_request_t req;
  int r = ws_http_parse_request(buf, len, max_head, &req, headers,
                                max_headers);
  CHECK(req.headers == headers);
  if (r > 0) {
    check_headers(headers, req.num_headers, max_headers, buf, (size_t)r);
    CHECK(in_range(req.method, buf, (size_t)r) && req.method.n > 0);
    CHECK(in_range(req.target, buf, (size_t)r) && req.target.n > 0);
    CHECK(req.method.p == buf);
    CHECK(req.minor_version >= 0 && req.minor_version <= 9);
    /* ws_http_next_header walks exactly the fields the parser found. */
    size_t pos = 0, i = 0;
    ws_header_t h;
    while (ws_http_next_header(buf, (size_t)r, &pos, &h)) {
      CHECK(i < req.num_headers);
      CHECK(h.name.p == headers[i].name.p && h.name.n == headers[i].name.n);
      CHECK(h.value.p == headers[i].value.p || h.value.n == 0);
      CHECK(h.value.n == headers[i].value.n);
      i++;
    }
    CHECK(i == req.num_headers);
  }
  return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *buf = (const char *)data;
  uint8_t b0 = size > 0 ? data[0] : 0, b1 = size > 1 ? data[1] : 0;
  size_t max_head, max_headers;
  switch (b0 & 3) {
  case 0: max_head = b1; break;
  case 1: max_head = (size_t)b1 * 16; break;
  case 2: max_head = WS_HTTP_MAX_HEAD; break;
  default: max_head = SIZE_MAX; break;
  }
  max_headers = (b1 & 3) == 0 ? (size_t)(b0 >> 4) : WS_HTTP_MAX_HEADERS;
  /* Exactly max_headers entries, so ASan sees any write past them. */
  ws_header_t *headers = malloc((max_headers ? max_headers : 1) *
                                sizeof *headers);
  CHECK(headers != NULL);

  for (int response = 0; response <= 1; response++) {
    int r = parse(response, buf, size, max_head, headers, max_headers);
    if (r > 0) {
      CHECK((size_t)r <= size && (size_t)r <= max_head);
      CHECK(r >= 4 && buf[r - 1] == '\n' && buf[r - 2] == '\r' &&
            buf[r - 3] == '\n' && buf[r - 4] == '\r');
      /* The head alone parses the same; one byte less is PARTIAL. */
      CHECK(parse(response, buf, (size_t)r, max_head, headers,
                  max_headers) == r);
      CHECK(parse(response, buf, (size_t)r - 1, max_head, headers,
                  max_headers) == WS_HTTP_PARTIAL);
    } else if (r == WS_HTTP_PARTIAL) {
      CHECK(size <= max_head);
    } else {
      CHECK(is_error(r));
      CHECK(ws_http_error_status(r) >= 400);
      if (r == WS_HTTP_EHEADTOOBIG) CHECK(size > max_head);
    }
    /* A prefix gives PARTIAL or the same answer, except that a shorter
     * input may fit under max_head. */
    if (size > 0 && size <= 4096) {
      size_t k = size / 2;
      int rk = parse(response, buf, k, max_head, headers, max_headers);
      if (r > 0)
        CHECK(rk == ((size_t)r <= k ? r : WS_HTTP_PARTIAL));
      else if (r != WS_HTTP_EHEADTOOBIG)
        CHECK(rk == WS_HTTP_PARTIAL || rk == r);
    }
  }
  free(headers);
  return 0;
}
