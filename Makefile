# shmlua: the host (shmlua) and the loadable module (shm.so) from one set of
# sources.  `make deps` installs what a fresh Debian 12 machine lacks.

PREFIX     ?= /usr/local
LUA_CFLAGS  = $(shell pkg-config --cflags lua5.4 2>/dev/null)
LUA_LIBDIR  = $(shell pkg-config --variable=libdir lua5.4 2>/dev/null)
LUA        ?= lua5.4
CC         ?= gcc
CFLAGS     ?= -O2 -g
WARN        = -std=c99 -Wall -Wextra -Werror -Wshadow -Wmissing-prototypes \
              -Wstrict-prototypes
ALL_CFLAGS  = $(WARN) -D_GNU_SOURCE -fPIC -fvisibility=hidden $(LUA_CFLAGS) \
              -Isrc $(CFLAGS) $(XCFLAGS)
B          ?= build

MOD_SRC  := $(filter-out src/main.c,$(wildcard src/*.c))
LUA_SRC  := $(wildcard lua/shm/*.lua)
MOD_OBJ  := $(patsubst src/%.c,$(B)/%.o,$(MOD_SRC)) $(B)/luasrc.o
HDRS     := $(wildcard src/*.h)

.PHONY: all deps test demo asan bench install uninstall clean fuzz
all: $(B)/shmlua $(B)/shm.so $(B)/peers

$(B)/%.o: src/%.c $(HDRS) | $(B)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(B)/luasrc.c: tools/embed.lua $(LUA_SRC) | $(B)
	$(LUA) tools/embed.lua $@ $(LUA_SRC)

$(B)/luasrc.o: $(B)/luasrc.c src/shm.h
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

# The host links Debian's static liblua5.4 (no extra shared library to load
# at start-up) and exports the Lua API (-Wl,-E) for C modules it requires.
$(B)/shmlua: $(B)/main.o $(MOD_OBJ)
	$(CC) $(CFLAGS) $(XCFLAGS) -Wl,-E -o $@ $^ $(LUA_LIBDIR)/liblua5.4.a -lm -ldl $(XLDFLAGS)

# The module links no Lua: it takes the API from the interpreter loading it.
$(B)/shm.so: $(MOD_OBJ)
	$(CC) $(CFLAGS) $(XCFLAGS) -shared -o $@ $^ $(XLDFLAGS)

# C peers and test programs (tests/c/*.c, scripts/*.c): plain C, no Lua.
PEER_SRC := $(wildcard tests/c/*.c scripts/*.c)
PEERS    := $(patsubst %.c,$(B)/peers/%,$(notdir $(PEER_SRC)))
$(B)/peers: $(PEERS)
	@mkdir -p $@
$(B)/peers/%: tests/c/%.c $(HDRS) | $(B)/peers/.dir
	$(CC) -std=gnu11 -O2 -g -Wall -Wextra -Werror -Isrc $(XCFLAGS) -o $@ $< -lpthread $(XLDFLAGS)
$(B)/peers/%: scripts/%.c | $(B)/peers/.dir
	$(CC) -std=gnu11 -O2 -g -Wall -Wextra -Werror $(XCFLAGS) -o $@ $< -lpthread $(XLDFLAGS)
$(B)/peers/.dir:
	mkdir -p $(B)/peers && touch $@

# Benchmark baselines (bench/*.c): plain C programs.
BENCH_SRC := $(wildcard bench/*.c)
$(B)/bench/%: bench/%.c | $(B)/peers/.dir
	@mkdir -p $(B)/bench
	$(CC) -std=gnu11 -O2 -g -Wall -Wextra -Isrc -o $@ $< -lpthread

$(B):
	mkdir -p $(B)

deps:
	sh tools/deps.sh

# test, demo, asan and bench first install what is missing (tools/deps.sh
# is a quick no-op when everything is there), then build.
test: deps
	$(MAKE) all
	sh tests/run.sh $(B)

demo: deps
	$(MAKE) all
	$(B)/shmlua scripts/head.lua

# Same suite, ASan + UBSan, in its own build directory.
asan: deps
	$(MAKE) B=build-asan CC=clang CFLAGS="-O1 -g -fno-omit-frame-pointer" \
	  XCFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined" \
	  XLDFLAGS="-fsanitize=address,undefined" all
	SHMLUA_ASAN=1 sh tests/run.sh build-asan

bench: deps
	$(MAKE) all
	sh bench/run.sh $(B)

install: $(B)/shmlua $(B)/shm.so
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/lua/5.4
	install -m 755 $(B)/shmlua $(DESTDIR)$(PREFIX)/bin/shmlua
	install -m 755 $(B)/shm.so $(DESTDIR)$(PREFIX)/lib/lua/5.4/shm.so

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/shmlua $(DESTDIR)$(PREFIX)/lib/lua/5.4/shm.so

# libFuzzer on the C declaration parser and layout engine (pure C, no Lua),
# for FUZZ_SECONDS, from the seed corpus fuzz/corpus/; findings land in
# build-fuzz/ (crash-*, leak-*, timeout-*).
FUZZ_SECONDS ?= 60
fuzz:
	mkdir -p build-fuzz/corpus
	clang -std=gnu11 -g -O1 -Isrc -fsanitize=fuzzer,address,undefined \
	  -fno-sanitize-recover=undefined -o build-fuzz/parse_fuzz \
	  fuzz/parse_fuzz.c src/layout.c src/cparse.c
	cp fuzz/corpus/* build-fuzz/corpus/
	build-fuzz/parse_fuzz -max_total_time=$(FUZZ_SECONDS) -dict=fuzz/c.dict \
	  -max_len=4096 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
	  -artifact_prefix=build-fuzz/ build-fuzz/corpus

clean:
	rm -rf build build-asan build-fuzz
