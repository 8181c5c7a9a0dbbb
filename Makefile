# orproxy - a local OpenAI-compatible gateway to OpenRouter.
#   make            build build/orproxy
#   make run        install missing packages, build, run with conf/orproxy.conf
#   make check      install missing packages, build, run every test (plain + ASan/UBSan)
#   make test-build the README's two commands on a machine without the packages (make check runs it)
#   make install    install (honours PREFIX and DESTDIR)
#   make fuzz       build the libFuzzer targets, run each FUZZ_SECONDS (300)

PREFIX  ?= /usr/local
DESTDIR ?=
BUILD   ?= build
SAN     ?=
CC      ?= cc

# libpq: the PostgreSQL ledger and shared budgets for several instances (issue 14;
# src/pgconn.c, pgledger.c, lease.c).
PKGS      := libmicrohttpd libcurl libcrypto libcjson libconfig sqlite3 libsystemd libpq
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CHECK_CFLAGS := $(shell pkg-config --cflags check 2>/dev/null)
CHECK_LIBS   := $(shell pkg-config --libs check 2>/dev/null)

WARN    := -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wno-format-nonliteral
CFLAGS  ?= -O2 -g
CFLAGS  += -std=c11 -D_GNU_SOURCE $(WARN) $(PKG_CFLAGS)
LDLIBS  += $(PKG_LIBS) -lpthread -lm
ifeq ($(SAN),1)
# ORP_STRICT_PHASES: a request phase change the table forbids aborts (src/request.c).
CFLAGS  += -DORP_STRICT_PHASES
CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
endif

VERSION := $(shell git describe --always --dirty 2>/dev/null || echo 0.1)
CFLAGS  += -DORP_VERSION='"$(VERSION)"'

SRC      := $(wildcard src/*.c)
# The console's files (ui/) are compiled in: tools/embed.c writes them into
# $(BUILD)/gen/ui_assets.c (src/ui.h), whose object joins the others.
UI_FILES := $(sort $(shell find ui -type f ! -name '.*' 2>/dev/null))
UI_OBJ   := $(BUILD)/obj/ui_assets.o
OBJ      := $(SRC:src/%.c=$(BUILD)/obj/%.o) $(UI_OBJ)
LIBOBJ   := $(filter-out $(BUILD)/obj/main.o,$(OBJ))
UNIT_SRC := $(wildcard tests/test_*.c)
UNITS    := $(UNIT_SRC:tests/%.c=$(BUILD)/tests/%)
E2E_SRC  := $(wildcard tests/e2e/test_*.c)
E2E      := $(E2E_SRC:tests/e2e/%.c=$(BUILD)/tests/%)
PG_SRC   := $(wildcard tests/pg/test_*.c)
PG_TESTS := $(PG_SRC:tests/pg/%.c=$(BUILD)/tests/pg/%)
FAKE     := $(BUILD)/fake_openrouter

.PHONY: all deps deps-test run check check-steps check-build test-build test-units test-e2e test-secrets test-sdk check-san soak soak-smoke soak-plain clean install uninstall format

all: $(BUILD)/orproxy

deps:
	@./scripts/deps.sh

deps-test:
	@./scripts/deps.sh --test

$(BUILD)/obj/%.o: src/%.c $(wildcard src/*.h) | $(BUILD)/obj
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/tools/embed: tools/embed.c | $(BUILD)/tools
	$(CC) -O2 -std=c11 $(WARN) -o $@ $<

$(BUILD)/gen/ui_assets.c: $(BUILD)/tools/embed $(UI_FILES) | $(BUILD)/gen
	$(BUILD)/tools/embed ui $(UI_FILES) >$@.tmp && mv $@.tmp $@

$(UI_OBJ): $(BUILD)/gen/ui_assets.c src/ui.h | $(BUILD)/obj
	$(CC) $(CFLAGS) -Isrc -c -o $@ $<

$(BUILD)/orproxy: $(OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/liborp.a: $(LIBOBJ)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/tests/%: tests/%.c $(BUILD)/liborp.a $(wildcard tests/*.h) | $(BUILD)/tests
	$(CC) $(CFLAGS) $(CHECK_CFLAGS) -Isrc -Itests $(LDFLAGS) -o $@ $< $(BUILD)/liborp.a $(CHECK_LIBS) $(LDLIBS)

$(BUILD)/tests/%: tests/e2e/%.c tests/e2e/harness.c tests/e2e/harness.h | $(BUILD)/tests
	$(CC) $(CFLAGS) $(CHECK_CFLAGS) -Isrc -Itests/e2e $(LDFLAGS) -o $@ $< tests/e2e/harness.c $(CHECK_LIBS) $(LDLIBS)

# The tests against a real PostgreSQL (tests/pg/): built by check-build, run by test-pg.
# They may also start orproxy instances and the fake upstream (tests/e2e/harness.c).
$(BUILD)/tests/pg/%: tests/pg/%.c tests/pg/pgtest.c tests/pg/pgtest.h tests/e2e/harness.c tests/e2e/harness.h $(BUILD)/liborp.a | $(BUILD)/tests/pg
	$(CC) $(CFLAGS) $(CHECK_CFLAGS) -Isrc -Itests -Itests/pg -Itests/e2e $(LDFLAGS) -o $@ $< tests/pg/pgtest.c tests/e2e/harness.c $(BUILD)/liborp.a $(CHECK_LIBS) $(LDLIBS)

$(FAKE): tests/fake_openrouter.c | $(BUILD)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LDLIBS)

$(BUILD) $(BUILD)/obj $(BUILD)/tests $(BUILD)/tests/pg $(BUILD)/tools $(BUILD)/gen:
	mkdir -p $@

# PKG_CFLAGS and PKG_LIBS were read from pkg-config when this make started, which on a
# fresh machine is before deps installed the packages: they are empty, and a link here
# would miss every library. So whatever deps makes possible is built by a new make,
# which reads this file (and asks pkg-config) again. The same holds for check and bench.
# tests/build/fresh_machine.sh checks the first run of `make run` and `make check`.
run: deps
	$(MAKE) $(BUILD)/orproxy
	mkdir -p state
	./$(BUILD)/orproxy -c conf/orproxy.conf

check-build: $(BUILD)/orproxy $(FAKE) $(UNITS) $(E2E) $(PG_TESTS)

test-units: $(UNITS)
	@set -e; for t in $(UNITS); do echo "== $$t"; $$t; done

# Each run starts a fresh capture in $(CAPTURE) (tests/e2e/harness.h): what clients, logs,
# ledgers and metrics showed, plus each test program's own output, for make test-secrets.
CAPTURE := $(BUILD)/capture

test-e2e: $(BUILD)/orproxy $(FAKE) $(E2E)
	@rm -rf $(CAPTURE) && mkdir -p $(CAPTURE)
	@set -e; for t in $(E2E); do echo "== $$t"; n=$$(basename $$t); \
	  { ORP_CAPTURE_DIR=$(abspath $(CAPTURE)) ORP_BIN=$(BUILD)/orproxy FAKE_BIN=$(FAKE) $$t 2>&1; \
	    echo $$? >$(CAPTURE)/$$n.rc; } | tee $(CAPTURE)/$$n.out; \
	  rc=$$(cat $(CAPTURE)/$$n.rc); rm -f $(CAPTURE)/$$n.rc; [ "$$rc" = 0 ] || exit $$rc; done

# PostgreSQL (issue 14 groundwork): a throwaway server on a loopback port, started as
# nobody when run as root, removed at the end (tests/pg/run.sh, pgserver.sh). Part of
# make check, plain (about 15 s, up to 30 s more when test_shared_limits starts late in a UTC
# minute and waits for the next) and in check-san (about 35 s); the postgresql package
# comes with deps-test.
.PHONY: test-pg
test-pg: $(BUILD)/orproxy $(FAKE) $(PG_TESTS)
	ORP_BIN=$(BUILD)/orproxy FAKE_BIN=$(FAKE) tests/pg/run.sh $(PG_TESTS)

# The canary upstream keys appear nowhere in the capture of the last test-e2e run.
test-secrets:
	tests/secrets/check_secrets.sh $(CAPTURE) tests/e2e/harness.h

# Soak: SOAK_SECONDS of mixed traffic (tests/soak/soak.c) against the ASan+UBSan build with
# SIGHUP reloads; then RSS, descriptors, exit status, sanitizer reports and ledger rows are
# checked (tests/soak/run.sh). soak-smoke is the one-minute version that make check runs.
# soak-plain runs the same against the optimised build, whose RSS is what users see (no ASan
# quarantine or shadow memory in it).
SOAK_SECONDS ?= 600

$(BUILD)/soak_load: tests/soak/soak.c | $(BUILD)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LDLIBS)

soak:
	$(MAKE) BUILD=build-san SAN=1 build-san/orproxy build-san/fake_openrouter build-san/soak_load
	tests/soak/run.sh build-san $(SOAK_SECONDS)

soak-smoke:
	$(MAKE) soak SOAK_SECONDS=60

soak-plain: $(BUILD)/orproxy $(BUILD)/fake_openrouter $(BUILD)/soak_load
	tests/soak/run.sh $(BUILD) $(SOAK_SECONDS)

# Benchmark (bench/): direct vs nginx vs orproxy on loopback, against a TLS upstream (the
# headline: both proxies verify it through a CA file) and a plaintext one; about 12 minutes;
# prints a table per upstream of every figure next to its target and writes
# $(BUILD)/bench/results.json. bench-smoke is the ~25-second run (both upstreams, toy sizes)
# make check does so the benchmark cannot rot.
# BENCH_BEFORE=path/to/an/older/orproxy adds that build as a column, measured in the same
# rounds (before/after comparisons of a change).
BENCH_TOOLS := $(BUILD)/bench/fakeup $(BUILD)/bench/streamload
BENCH_RUN = ulimit -n $$(ulimit -Hn) && python3 bench/run.py --orproxy $(BUILD)/orproxy \
	  --fakeup $(BUILD)/bench/fakeup --streamload $(BUILD)/bench/streamload --workdir $(BUILD)/bench \
	  $(if $(BENCH_BEFORE),--before $(BENCH_BEFORE))

$(BUILD)/bench/%: bench/%.c | $(BUILD)/bench
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $<

# The fake upstream and the stream client speak TLS too (the TLS upstream): OpenSSL.
$(BUILD)/bench/fakeup $(BUILD)/bench/streamload: $(BUILD)/bench/%: bench/%.c | $(BUILD)/bench
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< -lssl -lcrypto

$(BUILD)/bench:
	mkdir -p $@

# bench-locks: what each lock an API request takes costs, alone and contended (doc/DESIGN.md).
$(BUILD)/bench/locks: bench/locks.c $(BUILD)/liborp.a | $(BUILD)/bench
	$(CC) $(CFLAGS) $(LDFLAGS) -Isrc -o $@ $< $(BUILD)/liborp.a $(LDLIBS)

.PHONY: bench bench-smoke deps-bench bench-locks
bench-locks: $(BUILD)/bench/locks
	$(BUILD)/bench/locks

# bench-console: the console's queries over a generated ledger of ROWS rows (bench/bigledger.c,
# bench/README.md); several minutes at the default 10 million. Not a test.
ROWS ?= 10000000
.PHONY: bench-console
$(BUILD)/bench/bigledger: bench/bigledger.c $(BUILD)/liborp.a | $(BUILD)/bench
	$(CC) $(CFLAGS) $(LDFLAGS) -Isrc -o $@ $< $(BUILD)/liborp.a $(LDLIBS)

bench-console: $(BUILD)/bench/bigledger
	$(BUILD)/bench/bigledger --rows $(ROWS) --db $(BUILD)/bench/bigledger.db

deps-bench:
	@./scripts/deps.sh --bench

bench: deps-bench
	$(MAKE) $(BUILD)/orproxy $(BENCH_TOOLS)
	$(BENCH_RUN) --out $(BUILD)/bench/results.json

bench-smoke: $(BUILD)/orproxy $(BENCH_TOOLS)
	$(BENCH_RUN) --smoke --out $(BUILD)/bench/smoke.json

# bench-pg: two orproxy instances on one throwaway PostgreSQL (tests/pg/pgserver.sh) against
# two on SQLite, interleaved rounds: the PostgreSQL backend's added latency at c=1 and c=64 as
# ratios, and the database's queries per request (bench/pg.py, bench/README.md). About 2
# minutes; BENCH_PG_ARGS=--smoke is the few-second run that proves it works.
.PHONY: bench-pg
bench-pg: $(BUILD)/orproxy $(BUILD)/bench/fakeup
	python3 bench/pg.py --orproxy $(BUILD)/orproxy --fakeup $(BUILD)/bench/fakeup \
	  --workdir $(BUILD)/bench --out $(BUILD)/bench/pg.json $(BENCH_PG_ARGS)

# The official OpenAI Node SDK against orproxy (npm registry package).
test-sdk: $(BUILD)/orproxy $(FAKE)
	tests/sdk/run.sh $(BUILD)/orproxy $(FAKE)

# The operator console in Debian's chromium, headless, driven by puppeteer-core (npm,
# pinned in tests/ui/package-lock.json); screenshots in $(BUILD)/ui-screens.
.PHONY: test-ui
test-ui: $(BUILD)/orproxy $(FAKE)
	tests/ui/run.sh $(BUILD)/orproxy $(FAKE) $(BUILD)/ui-screens

# The service packaging: unit files (systemd-analyze verify/security), the
# Dockerfile against the binary's libraries, and make install/uninstall.
.PHONY: test-service
test-service: $(BUILD)/orproxy
	tests/service/check_units.sh $(BUILD)/orproxy
	tests/service/check_dockerfile.sh $(BUILD)/orproxy
	tests/service/check_install.sh $(BUILD)

# The console's chart library, vendored under ui/vendor/uplot/ (its ES module, stylesheet
# and licence) from the npm package at a pinned version: `make ui-vendor` refreshes it.
UPLOT_VERSION := 1.6.32
.PHONY: ui-vendor
ui-vendor:
	rm -rf $(BUILD)/uplot && mkdir -p $(BUILD)/uplot ui/vendor/uplot
	cd $(BUILD)/uplot && npm pack uplot@$(UPLOT_VERSION) --silent >/dev/null && tar xzf uplot-$(UPLOT_VERSION).tgz
	cp $(BUILD)/uplot/package/dist/uPlot.esm.js $(BUILD)/uplot/package/dist/uPlot.min.css \
	  $(BUILD)/uplot/package/LICENSE ui/vendor/uplot/
	printf 'uPlot %s, from the npm package uplot@%s (make ui-vendor)\n' $(UPLOT_VERSION) $(UPLOT_VERSION) \
	  >ui/vendor/uplot/VERSION
	rm -rf $(BUILD)/uplot

# The fresh-machine test (tests/build/fresh_machine.sh): in a copy of the tree, with a
# pkg-config that finds nothing until a stand-in deps has run, the first `make run`
# must link and serve and the first `make check` must link its build step.
test-build:
	tests/build/fresh_machine.sh

# The fresh-machine test, then plain build and tests, then the same suite under
# AddressSanitizer + UBSan, then the fuzz targets over their corpora and a short
# fuzzing run, then the one-minute soak.  The bench smoke runs with the plain suites.
# Everything after deps-test runs in new makes (see run). fresh_machine.sh sets
# CHECK_STEPS to a build step alone; otherwise it is check-steps.
CHECK_STEPS ?= check-steps
check: deps-test
	$(MAKE) $(CHECK_STEPS)

check-steps:
	$(MAKE) test-build
	$(MAKE) test-units test-e2e test-secrets test-sdk test-ui test-service bench-smoke
	$(MAKE) test-pg
	$(MAKE) check-san
	$(MAKE) fuzz-regress fuzz-smoke
	$(MAKE) soak-smoke

check-san:
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  $(MAKE) BUILD=build-san SAN=1 test-units test-e2e test-secrets test-pg

format:
	clang-format -i src/*.c src/*.h tests/*.c tests/e2e/*.c tests/e2e/*.h

clean:
	rm -rf build build-san build-fuzz

# libFuzzer targets (tests/fuzz/fuzz_<name>.c) built with clang against the
# project's objects, all with ASan + UBSan (LeakSanitizer on).  The committed
# corpora (tests/fuzz/corpus/<name>/) are copied to build-fuzz/corpus/<name>/,
# which libFuzzer grows (it writes new inputs to the first directory it is
# given) and which persists between runs; the crash reproducers
# (tests/fuzz/regress/<name>/) are only read; crashes go to
# build-fuzz/artifacts/<name>/.  A target
# with a tests/fuzz/<name>.dict gets it as its libFuzzer dictionary.
#   make fuzz [FUZZ_SECONDS=n]  fuzz every target n seconds (300)
#   make fuzz-smoke             the same, 30 s each (CI)
#   make fuzz-regress           run every corpus and reproducer file once, no fuzzing
FUZZ_BUILD   := build-fuzz
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 300
FUZZ_TARGETS := sse usage config retry pricing request spool managed time
FUZZ_SAN     := -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -g -O1
FUZZ_CFLAGS  := -std=c11 -D_GNU_SOURCE $(WARN) $(PKG_CFLAGS) -DORP_VERSION='"$(VERSION)"' \
                -fno-omit-frame-pointer $(FUZZ_SAN)
FUZZ_OBJ     := $(LIBOBJ:$(BUILD)/obj/%=$(FUZZ_BUILD)/obj/%)
FUZZ_BINS    := $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/fuzz_%)
FUZZ_ARGS    := -max_len=8192 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
FUZZ_ENV     := ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
                LSAN_OPTIONS=suppressions=$(CURDIR)/tests/fuzz/lsan.supp:print_suppressions=0 \
                UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
.PHONY: fuzz fuzz-build fuzz-smoke fuzz-regress
.SECONDARY: $(FUZZ_OBJ) $(FUZZ_BUILD)/obj/config-fuzz.o

$(FUZZ_BUILD)/obj/%.o: src/%.c $(wildcard src/*.h) | $(FUZZ_BUILD)/obj
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c -o $@ $<

$(FUZZ_BUILD)/obj/ui_assets.o: $(BUILD)/gen/ui_assets.c src/ui.h | $(FUZZ_BUILD)/obj
	$(FUZZ_CC) $(FUZZ_CFLAGS) -Isrc -c -o $@ $<

# The config target's copy of config.o opens files only through the
# target's fuzz_fopen, which lets it read the config file and nothing else.
$(FUZZ_BUILD)/obj/config-fuzz.o: $(FUZZ_BUILD)/obj/config.o
	objcopy --redefine-sym fopen=fuzz_fopen $< $@

$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz_scratch.c tests/fuzz/fuzz.h $(FUZZ_OBJ) \
                      $(FUZZ_BUILD)/obj/config-fuzz.o
	$(FUZZ_CC) $(FUZZ_CFLAGS) -Isrc -Itests/fuzz -o $@ $< tests/fuzz/fuzz_scratch.c \
	  $(if $(filter fuzz_config,$*),$(filter-out %/config.o,$(FUZZ_OBJ)) $(FUZZ_BUILD)/obj/config-fuzz.o,$(FUZZ_OBJ)) \
	  $(LDLIBS)

$(FUZZ_BUILD) $(FUZZ_BUILD)/obj:
	mkdir -p $@

fuzz-build: $(FUZZ_BINS)

fuzz: fuzz-build
	@set -e; for t in $(FUZZ_TARGETS); do \
	  echo "== fuzz_$$t $(FUZZ_SECONDS) s"; \
	  mkdir -p $(FUZZ_BUILD)/corpus/$$t $(FUZZ_BUILD)/artifacts/$$t; \
	  cp -R tests/fuzz/corpus/$$t/. $(FUZZ_BUILD)/corpus/$$t/; \
	  $(FUZZ_ENV) $(FUZZ_BUILD)/fuzz_$$t $(FUZZ_ARGS) -max_total_time=$(FUZZ_SECONDS) \
	    $$(test -f tests/fuzz/$$t.dict && echo -dict=tests/fuzz/$$t.dict) \
	    -artifact_prefix=$(FUZZ_BUILD)/artifacts/$$t/ $(FUZZ_BUILD)/corpus/$$t \
	    $$(test -d tests/fuzz/regress/$$t && echo tests/fuzz/regress/$$t) \
	    2>&1 | tee $(FUZZ_BUILD)/fuzz_$$t.log | grep -E '^(#[0-9]+[[:space:]]+(INITED|DONE)[[:space:]]|stat::|==[0-9]+==|SUMMARY|artifact_prefix|Test unit written)' || true; \
	  if grep -qE '^(==[0-9]+==ERROR|SUMMARY: |.*invariant broken)' $(FUZZ_BUILD)/fuzz_$$t.log; then \
	    echo "fuzz_$$t failed: see $(FUZZ_BUILD)/fuzz_$$t.log and $(FUZZ_BUILD)/artifacts/$$t/"; exit 1; fi; \
	done

fuzz-smoke:
	$(MAKE) fuzz FUZZ_SECONDS=30

fuzz-regress: fuzz-build
	@set -e; for t in $(FUZZ_TARGETS); do \
	  files=$$(find tests/fuzz/corpus/$$t tests/fuzz/regress/$$t -type f 2>/dev/null | sort); \
	  echo "== fuzz_$$t: $$(echo "$$files" | grep -c .) files"; \
	  [ -z "$$files" ] || $(FUZZ_ENV) $(FUZZ_BUILD)/fuzz_$$t $$files >$(FUZZ_BUILD)/regress_$$t.log 2>&1 \
	    || { tail -40 $(FUZZ_BUILD)/regress_$$t.log; exit 1; }; \
	done

# Installed layout. The binary and the man pages go under PREFIX. The units go
# where systemd looks for them: /lib/systemd/system when PREFIX=/usr (Debian's
# systemdsystemunitdir), otherwise $(PREFIX)/lib/systemd/system, which systemd
# searches for /usr/local; for any other PREFIX set UNITDIR (e.g.
# UNITDIR=/etc/systemd/system). The configuration is always in /etc/orproxy,
# the path the unit names; the state is created by systemd (StateDirectory=).
BINDIR  ?= $(PREFIX)/bin
MANDIR  ?= $(PREFIX)/share/man
UNITDIR ?= $(if $(filter /usr /usr/,$(PREFIX)),/lib/systemd/system,$(PREFIX)/lib/systemd/system)

# The unit names /usr/local/bin/orproxy; the installed copy names $(BINDIR).
# The example configuration keeps its state in the checkout for `make run`; the
# installed one points at /var/lib/orproxy, so `orproxy usage` run by hand finds
# the service's ledger. It is mode 0644, not 0640: the service runs as a dynamic
# user, which cannot read a root-only file, and the file holds no secret (the
# key is a separate root-only file that systemd passes as a credential). An
# existing configuration is never overwritten.
install: $(BUILD)/orproxy
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)/etc/orproxy
	install -m 0755 $(BUILD)/orproxy $(DESTDIR)$(BINDIR)/orproxy
	sed 's|/usr/local/bin/orproxy|$(BINDIR)/orproxy|g' systemd/orproxy.service >$(DESTDIR)$(UNITDIR)/orproxy.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/orproxy.service
	install -m 0644 systemd/orproxy.socket $(DESTDIR)$(UNITDIR)/orproxy.socket
	install -m 0644 doc/orproxy.8 $(DESTDIR)$(MANDIR)/man8/orproxy.8
	install -m 0644 doc/orproxy.conf.5 $(DESTDIR)$(MANDIR)/man5/orproxy.conf.5
	@if [ -e $(DESTDIR)/etc/orproxy/orproxy.conf ]; then \
	  echo "keeping existing $(DESTDIR)/etc/orproxy/orproxy.conf (compare with conf/orproxy.conf)"; \
	else \
	  echo "installing $(DESTDIR)/etc/orproxy/orproxy.conf"; \
	  sed 's|^state_dir = "state";|state_dir = "/var/lib/orproxy";|' conf/orproxy.conf \
	    >$(DESTDIR)/etc/orproxy/orproxy.conf.new && \
	  chmod 0644 $(DESTDIR)/etc/orproxy/orproxy.conf.new && \
	  mv $(DESTDIR)/etc/orproxy/orproxy.conf.new $(DESTDIR)/etc/orproxy/orproxy.conf; \
	fi
	@echo "next: put the OpenRouter key in /etc/orproxy/openrouter-api-key (mode 0600), then"
	@echo "      systemctl daemon-reload && systemctl enable --now orproxy.service   # see orproxy(8)"

# Removes what install added; the configuration, the key and the state stay.
uninstall:
	rm -f $(DESTDIR)$(BINDIR)/orproxy $(DESTDIR)$(UNITDIR)/orproxy.service \
	  $(DESTDIR)$(UNITDIR)/orproxy.socket $(DESTDIR)$(MANDIR)/man8/orproxy.8 \
	  $(DESTDIR)$(MANDIR)/man5/orproxy.conf.5
	@echo "kept $(DESTDIR)/etc/orproxy and /var/lib/orproxy (configuration, key, usage ledger)"
