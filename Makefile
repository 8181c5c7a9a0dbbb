# orproxy - a local OpenAI-compatible gateway to OpenRouter.
#   make            build build/orproxy
#   make run        install missing packages, build, run with conf/orproxy.conf
#   make check      install missing packages, build, run every test (plain + ASan/UBSan)
#   make install    install (honours PREFIX and DESTDIR)

PREFIX  ?= /usr/local
DESTDIR ?=
BUILD   ?= build
SAN     ?=
CC      ?= cc

PKGS      := libmicrohttpd libcurl libcjson libconfig sqlite3 libsystemd
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CHECK_CFLAGS := $(shell pkg-config --cflags check 2>/dev/null)
CHECK_LIBS   := $(shell pkg-config --libs check 2>/dev/null)

WARN    := -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wno-format-nonliteral
CFLAGS  ?= -O2 -g
CFLAGS  += -std=c11 -D_GNU_SOURCE $(WARN) $(PKG_CFLAGS)
LDLIBS  += $(PKG_LIBS) -lpthread -lm
ifeq ($(SAN),1)
CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
endif

VERSION := $(shell git describe --always --dirty 2>/dev/null || echo 0.1)
CFLAGS  += -DORP_VERSION='"$(VERSION)"'

SRC      := $(wildcard src/*.c)
OBJ      := $(SRC:src/%.c=$(BUILD)/obj/%.o)
LIBOBJ   := $(filter-out $(BUILD)/obj/main.o,$(OBJ))
UNIT_SRC := $(wildcard tests/test_*.c)
UNITS    := $(UNIT_SRC:tests/%.c=$(BUILD)/tests/%)
E2E_SRC  := $(wildcard tests/e2e/test_*.c)
E2E      := $(E2E_SRC:tests/e2e/%.c=$(BUILD)/tests/%)
FAKE     := $(BUILD)/fake_openrouter

.PHONY: all deps deps-test run check check-build test-units test-e2e test-sdk check-san clean install uninstall format

all: $(BUILD)/orproxy

deps:
	@./scripts/deps.sh

deps-test:
	@./scripts/deps.sh --test

$(BUILD)/obj/%.o: src/%.c $(wildcard src/*.h) | $(BUILD)/obj
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/orproxy: $(OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/liborp.a: $(LIBOBJ)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/tests/%: tests/%.c $(BUILD)/liborp.a $(wildcard tests/*.h) | $(BUILD)/tests
	$(CC) $(CFLAGS) $(CHECK_CFLAGS) -Isrc -Itests $(LDFLAGS) -o $@ $< $(BUILD)/liborp.a $(CHECK_LIBS) $(LDLIBS)

$(BUILD)/tests/%: tests/e2e/%.c tests/e2e/harness.c tests/e2e/harness.h | $(BUILD)/tests
	$(CC) $(CFLAGS) $(CHECK_CFLAGS) -Isrc -Itests/e2e $(LDFLAGS) -o $@ $< tests/e2e/harness.c $(CHECK_LIBS) $(LDLIBS)

$(FAKE): tests/fake_openrouter.c | $(BUILD)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LDLIBS)

$(BUILD) $(BUILD)/obj $(BUILD)/tests:
	mkdir -p $@

run: deps $(BUILD)/orproxy
	mkdir -p state
	./$(BUILD)/orproxy -c conf/orproxy.conf

check-build: $(BUILD)/orproxy $(FAKE) $(UNITS) $(E2E)

test-units: $(UNITS)
	@set -e; for t in $(UNITS); do echo "== $$t"; $$t; done

test-e2e: $(BUILD)/orproxy $(FAKE) $(E2E)
	@set -e; for t in $(E2E); do echo "== $$t"; ORP_BIN=$(BUILD)/orproxy FAKE_BIN=$(FAKE) $$t; done

# The official OpenAI Node SDK against orproxy (npm registry package).
test-sdk: $(BUILD)/orproxy $(FAKE)
	tests/sdk/run.sh $(BUILD)/orproxy $(FAKE)

# Plain build and tests, then the same suite under AddressSanitizer + UBSan.
check: deps-test
	$(MAKE) test-units test-e2e test-sdk
	$(MAKE) check-san

check-san:
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  $(MAKE) BUILD=build-san SAN=1 test-units test-e2e

format:
	clang-format -i src/*.c src/*.h tests/*.c tests/e2e/*.c tests/e2e/*.h

clean:
	rm -rf build build-san

install: $(BUILD)/orproxy
	install -D -m 0755 $(BUILD)/orproxy $(DESTDIR)$(PREFIX)/bin/orproxy
	@if [ -e $(DESTDIR)/etc/orproxy/orproxy.conf ]; then \
	  echo "keeping existing $(DESTDIR)/etc/orproxy/orproxy.conf"; \
	else install -D -m 0640 conf/orproxy.conf $(DESTDIR)/etc/orproxy/orproxy.conf; fi

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/orproxy
