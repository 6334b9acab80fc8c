/*
 * Preloaded after the ASan runtime by tools/test-asan.sh: removes
 * LD_PRELOAD from the environment once the dynamic loader has used it, so
 * that only the processes started through the build/asan/bin/lua5.4 wrapper
 * run with ASan, not the shells, curl (which hangs under a preloaded ASan)
 * and python3 that the specs start.
 */
#include <stdlib.h>

__attribute__((constructor)) static void uvws_unpreload(void) {
  unsetenv("LD_PRELOAD");
}
