/*
 * A tiny test harness.  Each test file defines test functions with TEST(),
 * lists them in main() with RUN(), and returns TEST_REPORT().  A CHECK that
 * fails prints the file, line and expression and marks the current test as
 * failed; the test goes on so one run shows every broken check.  The last
 * line printed is "<file>: N passed, N failed", counted in tests.
 */
#ifndef UVWS_TEST_H
#define UVWS_TEST_H

#include <stdio.h>
#include <string.h>

static int test__passed, test__failed, test__cur_failed;

#define TEST(name) static void name(void)

#define CHECK(expr)                                                    \
  do {                                                                 \
    if (!(expr)) {                                                     \
      fprintf(stderr, "  %s:%d: CHECK failed: %s\n", __FILE__, __LINE__, \
              #expr);                                                  \
      test__cur_failed = 1;                                            \
    }                                                                  \
  } while (0)

#define CHECK_EQ_INT(a, b)                                               \
  do {                                                                   \
    long long test__a = (long long)(a), test__b = (long long)(b);        \
    if (test__a != test__b) {                                            \
      fprintf(stderr, "  %s:%d: %s == %s failed: %lld != %lld\n",        \
              __FILE__, __LINE__, #a, #b, test__a, test__b);             \
      test__cur_failed = 1;                                              \
    }                                                                    \
  } while (0)

#define CHECK_MEM(p, q, n) CHECK(memcmp((p), (q), (n)) == 0)

#define RUN(name)                                   \
  do {                                              \
    test__cur_failed = 0;                           \
    name();                                         \
    if (test__cur_failed) {                         \
      test__failed++;                               \
      printf("not ok - %s\n", #name);               \
    } else {                                        \
      test__passed++;                               \
      printf("ok - %s\n", #name);                   \
    }                                               \
  } while (0)

#define TEST_REPORT()                                                  \
  (printf("%s: %d passed, %d failed\n", __FILE__, test__passed,        \
          test__failed),                                               \
   test__failed ? 1 : 0)

#endif
