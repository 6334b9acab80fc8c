# uvws — build the C core as a Lua 5.4 module and run the tests.
#
#   make            build build/uvws/core.so
#   make test       C unit tests, then the busted specs under Lua 5.4
#   make ctest      C unit tests only
#   make spec       busted specs only
#   make lint       luacheck
#   make run        the chat example (PORT=8080)
#   make DEBUG=1    -O0 -g3, assertions on
#   make SAN=1      AddressSanitizer and UBSan (use with clang or gcc)
#   make LUA_VERSION=5.3 test   build and test against Lua 5.3

LUA_VERSION ?= 5.4
LUA      ?= lua$(LUA_VERSION)
BUSTED   ?= busted --lua=$(LUA)
PORT     ?= 8080
PKGCONF  ?= pkg-config
LUA_CFLAGS  ?= $(shell $(PKGCONF) --cflags lua$(LUA_VERSION) 2>/dev/null || echo -I/usr/include/lua$(LUA_VERSION))
UV_CFLAGS   ?= $(shell $(PKGCONF) --cflags libuv 2>/dev/null)
UV_LIBS     ?= $(shell $(PKGCONF) --libs libuv 2>/dev/null || echo -luv)
SSL_LIBS    ?= -lssl -lcrypto
Z_LIBS      ?= -lz

WARN     = -std=c11 -Wall -Wextra -pedantic -Wshadow -Wstrict-prototypes \
           -Wmissing-prototypes -Wno-unused-parameter
ifeq ($(DEBUG),1)
OPT      = -O0 -g3
else
OPT      = -O2 -g -DNDEBUG
endif
ifeq ($(SAN),1)
OPT     += -fsanitize=address,undefined -fno-omit-frame-pointer
SANLD    = -fsanitize=address,undefined
endif
CFLAGS  ?= $(OPT)
ALL_CFLAGS = $(CFLAGS) $(WARN) -D_POSIX_C_SOURCE=200809L -fPIC \
             $(LUA_CFLAGS) $(UV_CFLAGS)

CORE_SRC = $(wildcard csrc/ws_*.c)
IO_SRC   = $(wildcard csrc/io_*.c)
LUA_SRC  = $(wildcard csrc/lua_*.c)
HDRS     = $(wildcard csrc/*.h)

BUILD    = build
CORE_SO  = $(BUILD)/uvws/core.so
CTESTS   = $(patsubst csrc/test/%.c,$(BUILD)/test/%,$(wildcard csrc/test/test_*.c))

.PHONY: all test ctest spec lint clean run

all: $(CORE_SO)

$(CORE_SO): $(CORE_SRC) $(IO_SRC) $(LUA_SRC) $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -shared -o $@ $(CORE_SRC) $(IO_SRC) $(LUA_SRC) \
	  $(UV_LIBS) $(SSL_LIBS) $(Z_LIBS) $(SANLD)

$(BUILD)/test/%: csrc/test/%.c $(CORE_SRC) $(HDRS) csrc/test/test.h
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Icsrc -o $@ $< $(CORE_SRC) $(SSL_LIBS) $(Z_LIBS) $(SANLD)

ctest: $(CTESTS)
	@rc=0; for t in $(CTESTS); do ./$$t || rc=1; done; exit $$rc

spec: $(CORE_SO)
	$(BUSTED)

# Both suites run even when the first fails; the exit status reports both.
test: $(CORE_SO) $(CTESTS)
	@rc=0; $(MAKE) -s ctest || rc=1; $(BUSTED) || rc=1; exit $$rc

run: $(CORE_SO)
	LUA_PATH="./lua/?.lua;./lua/?/init.lua;;" LUA_CPATH="./build/?.so;;" \
	  $(LUA) examples/chat/server.lua --port $(PORT)

lint:
	luacheck lua spec examples bin

clean:
	rm -rf $(BUILD)

# ===========================================================================
# Sanitizers, valgrind and fuzzing (csrc/fuzz/README.md explains them).
# Everything lands under build/ (fuzz/, asan/, valgrind/), never in
# build/uvws/core.so or build/test/.
#
#   make fuzz-build             build/fuzz/fuzz_<x> for every csrc/fuzz/fuzz_*.c
#   make fuzz [FUZZ_TIME=60]    build, then run each target FUZZ_TIME seconds
#                               (FUZZ_TARGETS="fuzz_http fuzz_conn" for some)
#   make test-asan              core + C tests with ASan/UBSan (gcc) in
#                               build/asan/, the C tests, the busted suite
#                               against that core, a clean-exit leak session
#   make test-valgrind          C tests under valgrind, the echo server under
#                               valgrind with a Python websockets session
#                               (VALGRIND_SPECS=1: also every busted spec
#                               with each server process under valgrind)
# ===========================================================================
FUZZ_CC      ?= clang
FUZZ_TIME    ?= 60
FUZZ_CFLAGS  ?= -g -O1 -fsanitize=fuzzer,address,undefined \
                -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_SRC      = $(wildcard csrc/fuzz/fuzz_*.c)
FUZZ_BINS     = $(patsubst csrc/fuzz/%.c,$(BUILD)/fuzz/%,$(FUZZ_SRC))
FUZZ_TARGETS ?= $(notdir $(FUZZ_BINS))

ASAN_CC      ?= gcc
ASAN_BUILD   ?= $(BUILD)/asan
ASAN_CFLAGS  ?= -O1 -g
VG_BUILD     ?= $(BUILD)/valgrind
VG_CFLAGS    ?= -O1 -g
VALGRIND_SPECS ?= 0

.PHONY: fuzz fuzz-build test-asan test-valgrind asan-build valgrind-build

fuzz-build: $(FUZZ_BINS)

$(BUILD)/fuzz/%: csrc/fuzz/%.c $(CORE_SRC) $(HDRS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -std=c11 -D_POSIX_C_SOURCE=200809L -Icsrc \
	  -o $@ $< $(CORE_SRC) $(SSL_LIBS) $(Z_LIBS)

fuzz: $(addprefix $(BUILD)/fuzz/,$(FUZZ_TARGETS))
	sh tools/run-fuzz.sh -t $(FUZZ_TIME) -w $(BUILD)/fuzz/work $^

# The regular rules, re-run with another BUILD dir and flags (SAN=1 adds
# -fsanitize=address,undefined to compiling and linking).
asan-build:
	@$(MAKE) --no-print-directory BUILD=$(ASAN_BUILD) CC=$(ASAN_CC) SAN=1 \
	  CFLAGS="$(ASAN_CFLAGS) -fsanitize=address,undefined -fno-omit-frame-pointer" \
	  $(ASAN_BUILD)/uvws/core.so \
	  $(patsubst csrc/test/%.c,$(ASAN_BUILD)/test/%,$(wildcard csrc/test/test_*.c))

test-asan: asan-build
	sh tools/test-asan.sh $(ASAN_BUILD)

valgrind-build:
	@$(MAKE) --no-print-directory BUILD=$(VG_BUILD) SAN=0 CFLAGS="$(VG_CFLAGS)" \
	  $(VG_BUILD)/uvws/core.so \
	  $(patsubst csrc/test/%.c,$(VG_BUILD)/test/%,$(wildcard csrc/test/test_*.c))

test-valgrind: valgrind-build
	VALGRIND_SPECS=$(VALGRIND_SPECS) sh tools/test-valgrind.sh $(VG_BUILD)

# ===========================================================================
# Benchmarks (issue 6): bench/run.sh drives ../shared/tools/wsbench against
# examples/echo_server.lua and, in the same run, the tcpecho ceiling, node ws
# and Python websockets; results in bench/runs/<UTC time>/ (results.jsonl,
# table.md), the plot in docs/bench.png.  bench/PROFILE.md: where time goes.
#
#   make bench                   REPS=3 runs of SECS=10 per cell (about 45 min)
#   make bench SECS=2 REPS=1     a quick run (a few minutes)
#   make bench WSBENCH=DIR       wsbench sources elsewhere than ../shared/tools/wsbench
# ===========================================================================
.PHONY: bench

bench: all
	bash bench/run.sh
