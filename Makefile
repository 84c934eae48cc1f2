# Thin wrapper around meson + ninja. Every target installs the Debian
# packages it needs first (scripts/deps.sh).
BUILD ?= build
MESON_OPTS ?=

PREFIX ?= /usr/local
DESTDIR ?=

.PHONY: all deps fleet-deps fleet-demo check check-valgrind asan fuzz demo guest desktop desktop-layer bench clean install deb

all: deps
	@test -f $(BUILD)/build.ninja || meson setup $(BUILD) $(MESON_OPTS) >/dev/null
	ninja -C $(BUILD)

deps:
	@scripts/deps.sh build

fleet-deps:
	@scripts/deps.sh fleet

# the fleet's and the tests' packages before the build: librados-dev turns
# on the RADOS backend, libcmocka-dev the unit tests (a build directory
# configured without it is configured again)
check: fleet-deps
	@scripts/deps.sh check web deb && { scripts/web-deps.sh || true; }
	@if [ -f $(BUILD)/build.ninja ] && ! ls $(BUILD)/tests/unit/test-* >/dev/null 2>&1; then \
		meson setup --reconfigure $(BUILD) $(MESON_OPTS) >/dev/null; fi
	@$(MAKE) --no-print-directory all
	tests/run.sh

check-valgrind: all
	@scripts/deps.sh check
	tests/run.sh --valgrind

# AddressSanitizer + UndefinedBehaviorSanitizer build and test run
asan: deps
	@scripts/deps.sh check
	@test -f build-asan/build.ninja || meson setup build-asan -Db_sanitize=address,undefined -Db_lundef=false >/dev/null
	ninja -C build-asan
	BUILD_DIR=$(CURDIR)/build-asan tests/run.sh

# libFuzzer targets (clang); FUZZ_SECONDS per target
FUZZ_SECONDS ?= 60
fuzz: deps
	@scripts/deps.sh fuzz
	@test -f build-fuzz/build.ninja || CC=clang meson setup build-fuzz -Dfuzz=true -Dwerror_dev=false >/dev/null
	ninja -C build-fuzz
	@for t in build-fuzz/tests/fuzz/fuzz-*-libfuzzer; do \
		n=$$(basename $$t -libfuzzer); n=$${n#fuzz-}; \
		echo "fuzzing $$n for $(FUZZ_SECONDS)s"; \
		mkdir -p build-fuzz/corpus/$$n; \
		$$t -max_total_time=$(FUZZ_SECONDS) -max_len=65536 build-fuzz/corpus/$$n tests/fuzz/corpus/$$n || exit 1; \
	done

guest: all
	@scripts/deps.sh guest
	bash scripts/build-guest.sh $(BUILD)/guest

# the desktop guest (Debian bookworm + Xfce, built by mmdebstrap; cached)
desktop:
	bash scripts/build-desktop.sh $(BUILD)/desktop

# the terminal-server layer over it (CRIU, Xvnc, roam-desk; cached)
desktop-layer:
	bash scripts/build-desk-layer.sh $(BUILD)/desk-layer $(BUILD)/desktop

demo: all
	@scripts/deps.sh check
	bash scripts/demo.sh

# the fleet's story: etcd + Ceph, three servers, placement, a move, a drain, a death (root)
fleet-demo: fleet-deps all
	@scripts/deps.sh check
	bash scripts/fleet-demo.sh

# each benchmark prints a table and rewrites its section of docs/benchmarks.md
bench: all
	@scripts/deps.sh bench
	bash bench/store.sh
	bash bench/sync.sh
	bash bench/session.sh
	bash bench/handoff.sh
	@scripts/deps.sh fleet
	bash bench/fleet.sh

# the binary, man pages, bash and zsh completion, systemd units under
# $(DESTDIR)$(PREFIX) (dist/meson.build)
install: all
	meson configure $(BUILD) --prefix $(PREFIX) >/dev/null
	meson install -C $(BUILD) --no-rebuild --quiet $(if $(DESTDIR),--destdir $(abspath $(DESTDIR)))

# a Debian package (debian/, dpkg-buildpackage) checked by lintian, in build-deb/
deb: deps
	@scripts/deps.sh deb
	bash scripts/deb.sh build-deb

clean:
	rm -rf $(BUILD) build-asan build-fuzz build-deb
