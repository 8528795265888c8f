# clayer: a Lua 5.4 host with a C runtime for persistent container layers.
# `make help` lists the targets.

CC      ?= cc
BUILD   ?= build
PREFIX  ?= /usr/local
PKGS    := lua5.4 libcurl libarchive libcrypto jansson libzstd
CFLAGS  ?= -O2 -g
XCFLAGS  = $(CFLAGS) -std=gnu11 -Wall -Wextra -Werror -Iinclude \
           -D_GNU_SOURCE $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LUALIB   = $(shell pkg-config --variable=libdir lua5.4 2>/dev/null)
LDLIBS   = -Wl,-E $(LUALIB)/liblua5.4.a \
           $(shell pkg-config --libs libcurl libarchive libcrypto jansson \
                     libzstd 2>/dev/null) -lpthread -lm -ldl

SRC     := $(wildcard src/*.c)
OBJ     := $(SRC:src/%.c=$(BUILD)/%.o)
LUA     := $(shell find lua -name '*.lua' | LC_ALL=C sort)
BIN     := $(BUILD)/clayer-lua

.PHONY: all deps test demo bench asan fuzz install clean help

all: $(BIN) $(BUILD)/clayer

# When a package is missing, install it as root; otherwise say which.
$(BUILD)/.deps: vendor/debian-packages.txt vendor/install-deps
	@mkdir -p $(BUILD)
	@sh vendor/install-deps
	@touch $@

deps:
	@sh vendor/install-deps

$(BUILD)/%.o: src/%.c include/clayer.h $(wildcard src/*.h) | $(BUILD)/.deps
	$(CC) $(XCFLAGS) -c -o $@ $<

$(BUILD)/embed: src/tools/embed.c | $(BUILD)/.deps
	$(CC) -O1 -o $@ $<

$(BUILD)/embedded.c: $(BUILD)/embed $(LUA)
	$(BUILD)/embed lua/ $(LUA) > $@.tmp && mv $@.tmp $@

$(BUILD)/embedded.o: $(BUILD)/embedded.c
	$(CC) -O1 -c -o $@ $<

$(BIN): $(OBJ) $(BUILD)/embedded.o
	$(CC) $(XCFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/clayer: $(BIN)
	ln -sf clayer-lua $@

test: all
	@tests/run $(BUILD)

demo: all
	@examples/demo.sh $(BUILD)

bench: all
	@bench/run $(BUILD)

# The whole suite under AddressSanitizer and UndefinedBehaviorSanitizer.
# Tests capture their subprocesses' stderr, so every process writes its
# ASan report (leaks included) to build-asan/reports/ instead, and any
# report fails the target; a leak report does not change the exit status
# a test sees.  UBSan in gcc's combined runtime ignores log_path: a UBSan
# error stops the process with status 86, which no test expects.
ASAN_REPORTS = $(CURDIR)/build-asan/reports
UBSAN_OPTS   = halt_on_error=1:print_stacktrace=1:exitcode=86
asan:
	$(MAKE) BUILD=build-asan \
	  CFLAGS="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined" \
	  LDFLAGS="-fsanitize=address,undefined" all
	@rm -rf $(ASAN_REPORTS) && mkdir -p $(ASAN_REPORTS)
	@ASAN_OPTIONS=detect_leaks=1:log_path=$(ASAN_REPORTS)/asan \
	  LSAN_OPTIONS=exitcode=0 \
	  UBSAN_OPTIONS=$(UBSAN_OPTS) \
	  tests/run build-asan; s=$$?; \
	  if [ -n "$$(ls -A $(ASAN_REPORTS))" ]; then \
	    cat $(ASAN_REPORTS)/*; echo "asan: reports in $(ASAN_REPORTS)"; \
	    exit 1; fi; exit $$s

# libFuzzer targets (clang, outside CI): FUZZ_SECONDS each (default 600).
fuzz:
	@tests/fuzz/run

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/clayer
	install -m 755 $(BIN) $(DESTDIR)$(PREFIX)/bin/clayer-lua
	ln -sf clayer-lua $(DESTDIR)$(PREFIX)/bin/clayer
	install -m 644 share/clayer/* $(DESTDIR)$(PREFIX)/share/clayer/

clean:
	rm -rf build build-asan

help:
	@echo "make          build $(BIN) and its 'clayer' link"
	@echo "make test     run every suite; ends with 'N passed, N failed'"
	@echo "make demo     build a layer, then restore it in a fresh container"
	@echo "make bench    benchmarks against tar, curl and find"
	@echo "make asan     the whole suite under ASan and UBSan"
	@echo "make fuzz     libFuzzer targets (outside CI)"
	@echo "make install  install to PREFIX=$(PREFIX)"
	@echo "make deps     install the Debian packages in vendor/ (root)"
	@echo "make clean    remove build output"
