#include "ws_handshake.h"
#include "ws_sha1.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

/* RFC 6455 §1.3. */
static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

static const char reason_bad_key[] =
    "Sec-WebSocket-Key must be 16 random bytes in base64";

static int is_base64_char(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
         (c >= '0' && c <= '9') || c == '+' || c == '/';
}

/* RFC 6455 §4.2.1 item 5: the key is the base64 of 16 bytes, which is 22
 * characters of the alphabet and "==". */
static int key_is_valid(ws_slice_t key) {
  unsigned char in[WS_KEY_LEN], out[WS_KEY_LEN];
  if (key.n != WS_KEY_LEN) return 0;
  memcpy(in, key.p, WS_KEY_LEN);
  for (size_t i = 0; i < WS_KEY_LEN - 2; i++)
    if (!is_base64_char(in[i])) return 0;
  if (in[WS_KEY_LEN - 2] != '=' || in[WS_KEY_LEN - 1] != '=') return 0;
  /* EVP_DecodeBlock counts each '=' as a decoded zero byte. */
  return EVP_DecodeBlock(out, in, WS_KEY_LEN) - 2 == 16;
}

static int fail(ws_handshake_t *hs, int status, const char *reason) {
  hs->status = status;
  hs->reason = reason;
  hs->key.p = NULL;
  hs->key.n = 0;
  return status;
}

int ws_handshake_check_request(const ws_http_request_t *req,
                               ws_handshake_t *hs) {
  const ws_header_t *h = req->headers;
  size_t n = req->num_headers;
  size_t nkey = 0, nversion = 0, nhost = 0;
  int ik = -1, iv = -1, upgrade_ws = 0, connection_upgrade = 0;

  /* One pass over the fields, each name compared at most once (by its
   * length first) instead of one pass per header of interest. */
  for (size_t i = 0; i < n && i <= INT_MAX; i++) {
    ws_slice_t name = h[i].name;
    switch (name.n) {
    case 4:
      if (ws_slice_ieq(name, "Host")) nhost++;
      break;
    case 7:
      if (!upgrade_ws && ws_slice_ieq(name, "Upgrade"))
        upgrade_ws = ws_http_list_has_token(h[i].value, "websocket");
      break;
    case 10:
      if (!connection_upgrade && ws_slice_ieq(name, "Connection"))
        connection_upgrade = ws_http_list_has_token(h[i].value, "upgrade");
      break;
    case 17:
      if (ws_slice_ieq(name, "Sec-WebSocket-Key") && nkey++ == 0) ik = (int)i;
      break;
    case 21:
      if (ws_slice_ieq(name, "Sec-WebSocket-Version") && nversion++ == 0)
        iv = (int)i;
      break;
    default:
      break;
    }
  }

  memset(hs, 0, sizeof *hs);
  hs->is_upgrade = upgrade_ws || nkey > 0 || nversion > 0;
  if (!hs->is_upgrade) return 0;

  /* RFC 6455 §4.2.1 items 1 to 6, in the order the status codes are
   * chosen: method, version, Upgrade/Connection, Host, then the
   * WebSocket headers. */
  if (req->method.n != 3 || memcmp(req->method.p, "GET", 3) != 0)
    return fail(hs, 405, "WebSocket upgrade must use GET");
  if (req->minor_version < 1)
    return fail(hs, 400, "WebSocket upgrade requires HTTP/1.1");
  if (!upgrade_ws)
    return fail(hs, 400, "Upgrade header must contain the token websocket");
  if (!connection_upgrade)
    return fail(hs, 400, "Connection header must contain the token upgrade");
  if (nhost == 0) return fail(hs, 400, "missing Host header");
  if (nhost > 1) return fail(hs, 400, "duplicate Host header");
  if (nversion == 0)
    return fail(hs, 400, "missing Sec-WebSocket-Version header");
  if (nversion > 1)
    return fail(hs, 400, "duplicate Sec-WebSocket-Version header");
  ws_slice_t version = h[iv].value;
  if (version.n != 2 || memcmp(version.p, "13", 2) != 0)
    return fail(hs, 426,
                "unsupported Sec-WebSocket-Version (this server speaks 13)");
  if (nkey == 0) return fail(hs, 400, "missing Sec-WebSocket-Key header");
  if (nkey > 1) return fail(hs, 400, "duplicate Sec-WebSocket-Key header");
  if (!key_is_valid(h[ik].value)) return fail(hs, 400, reason_bad_key);
  hs->key = h[ik].value;
  return 0;
}

int ws_handshake_accept(const char *key, size_t key_len,
                        char out[WS_ACCEPT_LEN + 1]) {
  uint8_t md[WS_SHA1_LEN];
  ws_sha1_t sha;
  ws_sha1_init(&sha);
  ws_sha1_update(&sha, key, key_len);
  ws_sha1_update(&sha, ws_guid, sizeof ws_guid - 1);
  ws_sha1_final(&sha, md);
  if (EVP_EncodeBlock((unsigned char *)out, md, WS_SHA1_LEN) != WS_ACCEPT_LEN)
    return -1;
  return 0;
}

/* The writers append piece by piece and, if any append fails, cut the
 * buffer back to what it held before, so a failure leaves it unchanged. */
typedef struct writer {
  ws_buf_t *out;
  size_t orig;
  int failed;
} writer_t;

static void writer_init(writer_t *w, ws_buf_t *out) {
  w->out = out;
  w->orig = WS_BUF_SIZE(out);
  w->failed = 0;
}

static void put(writer_t *w, const char *p, size_t n) {
  if (!w->failed && ws_buf_append(w->out, p, n, 0) != 0) w->failed = 1;
}

static void put_str(writer_t *w, const char *s) { put(w, s, strlen(s)); }

static int writer_end(writer_t *w) {
  if (!w->failed) return 0;
  w->out->len = w->out->off + w->orig;
  if (w->out->len == w->out->off) w->out->off = w->out->len = 0;
  return -1;
}

int ws_handshake_write_101(ws_buf_t *out, ws_slice_t key,
                           const char *protocol, const char *extra,
                           size_t extra_len) {
  char accept[WS_ACCEPT_LEN + 1];
  if (ws_handshake_accept(key.p, key.n, accept) != 0) return -1;
  writer_t w;
  writer_init(&w, out);
  put_str(&w, "HTTP/1.1 101 Switching Protocols\r\n"
              "Upgrade: websocket\r\n"
              "Connection: Upgrade\r\n"
              "Sec-WebSocket-Accept: ");
  put(&w, accept, WS_ACCEPT_LEN);
  put_str(&w, "\r\n");
  /* An empty Sec-WebSocket-Protocol would be refused by every client. */
  if (protocol != NULL && protocol[0] != '\0') {
    put_str(&w, "Sec-WebSocket-Protocol: ");
    put_str(&w, protocol);
    put_str(&w, "\r\n");
  }
  if (extra != NULL) put(&w, extra, extra_len);
  put_str(&w, "\r\n");
  return writer_end(&w);
}

int ws_handshake_write_error(ws_buf_t *out, int status, const char *reason,
                             const char *extra, size_t extra_len) {
  char line[128];
  if (status < 100 || status > 999) return -1;
  if (reason == NULL) reason = ws_http_reason_phrase(status);
  size_t reason_len = strlen(reason);
  writer_t w;
  writer_init(&w, out);
  snprintf(line, sizeof line,
           "HTTP/1.1 %d %s\r\n"
           "Content-Type: text/plain; charset=utf-8\r\n",
           status, ws_http_reason_phrase(status));
  put_str(&w, line);
  snprintf(line, sizeof line, "Content-Length: %zu\r\n", reason_len + 1);
  put_str(&w, line);
  put_str(&w, "Connection: close\r\n");
  /* RFC 6455 §4.2.2: a 426 names the versions the server speaks. */
  if (status == 426)
    put_str(&w, "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n");
  /* RFC 9110 §15.5.6: a 405 carries Allow. */
  if (status == 405) put_str(&w, "Allow: GET\r\n");
  if (extra != NULL) put(&w, extra, extra_len);
  put_str(&w, "\r\n");
  put(&w, reason, reason_len);
  put_str(&w, "\n");
  return writer_end(&w);
}

int ws_handshake_new_key(char out[WS_KEY_LEN + 1]) {
  unsigned char raw[16];
  if (RAND_bytes(raw, sizeof raw) != 1) return -1;
  if (EVP_EncodeBlock((unsigned char *)out, raw, sizeof raw) != WS_KEY_LEN)
    return -1;
  return 0;
}

int ws_handshake_write_request(ws_buf_t *out, const char *host,
                               const char *target, const char *key,
                               const char *protocols, const char *extra,
                               size_t extra_len) {
  if (host == NULL || key == NULL) return -1;
  if (target == NULL || target[0] == '\0') target = "/";
  writer_t w;
  writer_init(&w, out);
  put_str(&w, "GET ");
  put_str(&w, target);
  put_str(&w, " HTTP/1.1\r\nHost: ");
  put_str(&w, host);
  put_str(&w, "\r\nUpgrade: websocket\r\n"
              "Connection: Upgrade\r\n"
              "Sec-WebSocket-Key: ");
  put_str(&w, key);
  put_str(&w, "\r\nSec-WebSocket-Version: 13\r\n");
  if (protocols != NULL && protocols[0] != '\0') {
    put_str(&w, "Sec-WebSocket-Protocol: ");
    put_str(&w, protocols);
    put_str(&w, "\r\n");
  }
  if (extra != NULL) put(&w, extra, extra_len);
  put_str(&w, "\r\n");
  return writer_end(&w);
}

static int is_token(ws_slice_t s) {
  if (s.n == 0) return 0;
  for (size_t i = 0; i < s.n; i++) {
    unsigned char c = (unsigned char)s.p[i];
    int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
             (c >= '0' && c <= '9') ||
             (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
    if (!ok) return 0;
  }
  return 1;
}

/* Is `s` an element of the comma list `list`?  Subprotocol names are
 * compared exactly (RFC 6455 §4.1 asks for one that "was present in the
 * client's handshake"). */
static int offered(const char *list, ws_slice_t s) {
  const char *p = list;
  while (*p != '\0') {
    while (*p == ' ' || *p == '\t') p++;
    const char *start = p;
    while (*p != '\0' && *p != ',') p++;
    const char *end = p;
    while (end > start && (end[-1] == ' ' || end[-1] == '\t')) end--;
    if ((size_t)(end - start) == s.n && memcmp(start, s.p, s.n) == 0)
      return 1;
    if (*p == ',') p++;
  }
  return 0;
}

int ws_handshake_check_response(const ws_http_response_t *res,
                                const char *key, const char *protocols,
                                int extensions_ok, ws_slice_t *protocol) {
  const ws_header_t *h = res->headers;
  size_t n = res->num_headers;
  char expected[WS_ACCEPT_LEN + 1];

  if (protocol != NULL) {
    protocol->p = NULL;
    protocol->n = 0;
  }
  if (res->status != 101) return WS_HS_ESTATUS;
  if (!ws_http_header_has_token(h, n, "Upgrade", "websocket"))
    return WS_HS_EUPGRADE;
  if (!ws_http_header_has_token(h, n, "Connection", "upgrade"))
    return WS_HS_ECONNECTION;

  if (key == NULL ||
      ws_http_count_header(h, n, "Sec-WebSocket-Accept") != 1 ||
      ws_handshake_accept(key, strlen(key), expected) != 0)
    return WS_HS_EACCEPT;
  ws_slice_t accept =
      h[ws_http_find_header(h, n, "Sec-WebSocket-Accept", 0)].value;
  if (accept.n != WS_ACCEPT_LEN ||
      memcmp(accept.p, expected, WS_ACCEPT_LEN) != 0)
    return WS_HS_EACCEPT;

  size_t nproto = ws_http_count_header(h, n, "Sec-WebSocket-Protocol");
  ws_slice_t selected = {NULL, 0};
  if (nproto > 1) return WS_HS_EPROTOCOL;
  if (nproto == 1) {
    selected = h[ws_http_find_header(h, n, "Sec-WebSocket-Protocol", 0)].value;
    if (protocols == NULL || !is_token(selected) ||
        !offered(protocols, selected))
      return WS_HS_EPROTOCOL;
  }

  if (!extensions_ok &&
      ws_http_find_header(h, n, "Sec-WebSocket-Extensions", 0) >= 0)
    return WS_HS_EEXTENSION;

  if (protocol != NULL) *protocol = selected;
  return WS_HS_OK;
}

const char *ws_handshake_errname(int code) {
  switch (code) {
  case WS_HS_OK: return "OK";
  case WS_HS_ESTATUS: return "ESTATUS";
  case WS_HS_EUPGRADE: return "EUPGRADE";
  case WS_HS_ECONNECTION: return "ECONNECTION";
  case WS_HS_EACCEPT: return "EACCEPT";
  case WS_HS_EPROTOCOL: return "EPROTOCOL";
  case WS_HS_EEXTENSION: return "EEXTENSION";
  default: return "EUNKNOWN";
  }
}

const char *ws_handshake_strerror(int code) {
  switch (code) {
  case WS_HS_OK:
    return "handshake complete";
  case WS_HS_ESTATUS:
    return "server did not answer 101 Switching Protocols";
  case WS_HS_EUPGRADE:
    return "Upgrade header missing or not websocket";
  case WS_HS_ECONNECTION:
    return "Connection header missing or without upgrade";
  case WS_HS_EACCEPT:
    return "Sec-WebSocket-Accept missing or wrong";
  case WS_HS_EPROTOCOL:
    return "server selected a subprotocol that was not offered";
  case WS_HS_EEXTENSION:
    return "server selected an extension that was not offered";
  default:
    return "unknown handshake error";
  }
}
