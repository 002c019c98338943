# SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
#
# lazyerofs build. One plain GNU Makefile, no configure step.
#
#   make                 build build/lazyerofs
#   make SANITIZE=address,undefined   sanitizer build (into build-san/)
#   make V=1             show the commands
#   make check           install missing Debian packages, build, run every test
#   make demo            local registry + sample image mounted lazily
#   make fuzz FUZZ_SECONDS=60   run the libFuzzer targets (clang), corpora and ledger kept
#   make stress          long kill/fault/scale runs (minutes; not in make check)
#   make tsan            the daemon's integration tests under ThreadSanitizer (build-tsan/)
#   make install DESTDIR=... PREFIX=/usr/local   (binary, mount.erofs.lazy, man page)
#
# Modules and their dependencies (DESIGN.md "Architecture"). A unit test of a
# module links only that module and the ones below it, so a layering
# violation fails to link.

MODULES := util erofs oci cache fetch mount cli
DEPS_util  :=
DEPS_erofs := util
DEPS_oci   := util
DEPS_cache := util
DEPS_fetch := cache oci util
DEPS_mount := fetch cache oci erofs util
DEPS_cli   := mount fetch cache oci erofs util

VERSION := 0.1.0
PREFIX ?= /usr/local
SBINDIR ?= /sbin
MANDIR ?= $(PREFIX)/share/man

CC ?= cc
ifeq ($(SANITIZE),)
BUILD ?= build
else ifeq ($(SANITIZE),thread)
BUILD ?= build-tsan
else
BUILD ?= build-san
endif

PKGS := libcurl jansson libssl libcrypto liblz4 liblzma zlib libzstd
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
ifeq ($(PKG_LIBS),)
PKG_LIBS := -lcurl -ljansson -lssl -lcrypto -llz4 -llzma -lz -lzstd
endif

WARN := -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wstrict-prototypes -Wmissing-prototypes \
	-Wno-unused-parameter -Wvla -Wpointer-arith -Wundef
CFLAGS ?= -O2 -g
ALL_CFLAGS := -std=gnu11 $(WARN) $(CFLAGS) -D_GNU_SOURCE -DLAZYEROFS_VERSION='"$(VERSION)"' \
	-Isrc -MMD -MP $(PKG_CFLAGS) -fno-strict-aliasing
ALL_LDFLAGS := $(LDFLAGS) -pthread
ifneq ($(SANITIZE),)
ALL_CFLAGS += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
ALL_LDFLAGS += -fsanitize=$(SANITIZE)
endif

ifeq ($(V),1)
Q :=
else
Q := @
endif

# --- sources --------------------------------------------------------------
src_of = $(sort $(wildcard src/$(1)/*.c))
obj_of = $(patsubst src/%.c,$(BUILD)/obj/%.o,$(call src_of,$(1)))
lib_of = $(BUILD)/lib/lib$(1).a
libs_for = $(foreach m,$(1) $(DEPS_$(1)),$(call lib_of,$(m)))

LIB_MODULES := $(filter-out cli,$(MODULES))
CLI_OBJS := $(call obj_of,cli)
BIN := $(BUILD)/lazyerofs

# Unit tests: tests/unit/<module>/test_*.c, each a cmocka program.
UNIT_SRCS := $(sort $(foreach m,$(MODULES),$(wildcard tests/unit/$(m)/test_*.c)))
UNIT_BINS := $(patsubst tests/unit/%.c,$(BUILD)/tests/unit/%,$(UNIT_SRCS))
UNIT_HELPERS := $(sort $(wildcard tests/unit/*.c))

# Fuzz targets: tests/fuzz/fuzz_<module>_*.c, each defines LLVMFuzzerTestOneInput.
FUZZ_SRCS := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_NAMES := $(patsubst tests/fuzz/%.c,%,$(FUZZ_SRCS))
FUZZ_REPLAY_BINS := $(patsubst %,$(BUILD)/tests/fuzz/%,$(FUZZ_NAMES))
fuzz_module = $(word 2,$(subst _, ,$(1)))

all: $(BIN)

$(BUILD)/obj/%.o: src/%.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(ALL_CFLAGS) -c -o $@ $<

define module_lib
$(call lib_of,$(1)): $(call obj_of,$(1))
	@mkdir -p $$(dir $$@)
	@rm -f $$@
	$(Q)ar rcs $$@ $$^ $(if $(call obj_of,$(1)),,$$(BUILD)/obj/empty.o)
endef
$(foreach m,$(LIB_MODULES),$(eval $(call module_lib,$(m))))

# An empty object so that a module with no sources yet still makes an archive.
$(BUILD)/obj/empty.o:
	@mkdir -p $(dir $@)
	$(Q)echo 'extern int lazyerofs_empty_unit; int lazyerofs_empty_unit;' | \
		$(CC) $(ALL_CFLAGS) -x c -c -o $@ -
$(foreach m,$(LIB_MODULES),$(if $(call obj_of,$(m)),,$(eval $(call lib_of,$(m)): $(BUILD)/obj/empty.o)))

$(BIN): $(CLI_OBJS) $(call libs_for,mount)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(ALL_CFLAGS) -o $@ $(CLI_OBJS) $(call libs_for,mount) $(ALL_LDFLAGS) $(PKG_LIBS)

# --- unit tests -----------------------------------------------------------
UNIT_HELPER_OBJS := $(patsubst tests/unit/%.c,$(BUILD)/tests/unit/%.o,$(UNIT_HELPERS))
$(BUILD)/tests/unit/%.o: tests/unit/%.c
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(ALL_CFLAGS) -Itests/unit -c -o $@ $<

# cli has no archive: its tests link its objects (but main's) and the modules below it.
unit_libs = $(if $(filter cli,$(1)),$(filter-out $(BUILD)/obj/cli/main.o,$(CLI_OBJS)) \
	$(call libs_for,mount),$(call libs_for,$(1)))
define unit_test
$(BUILD)/tests/unit/$(1)/%: tests/unit/$(1)/%.c $(call unit_libs,$(1)) $(UNIT_HELPER_OBJS)
	@mkdir -p $$(dir $$@)
	@$$(if $$(Q),echo "  TEST    $$@")
	$$(Q)$$(CC) $$(ALL_CFLAGS) -Itests/unit -o $$@ $$< $(UNIT_HELPER_OBJS) \
		$(call unit_libs,$(1)) $$(ALL_LDFLAGS) $$(PKG_LIBS) -lcmocka
endef
$(foreach m,$(MODULES),$(eval $(call unit_test,$(m))))

unit-build: $(UNIT_BINS)

# --- fuzz targets -----------------------------------------------------------
# Replay build: the target plus a small driver that runs every corpus file.
$(BUILD)/tests/fuzz/%: tests/fuzz/%.c tests/fuzz/replay.c $(call libs_for,mount)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  FUZZ    $@")
	$(Q)$(CC) $(ALL_CFLAGS) -Itests/fuzz -o $@ $< tests/fuzz/replay.c \
		$(call libs_for,$(call fuzz_module,$*)) $(ALL_LDFLAGS) $(PKG_LIBS)

fuzz-build: $(FUZZ_REPLAY_BINS)

# --- test tools -------------------------------------------------------------
# tests/tools/<name>.c: small programs the integration tests drive (they may use any module).
TOOL_SRCS := $(sort $(wildcard tests/tools/*.c))
TOOL_BINS := $(patsubst tests/tools/%.c,$(BUILD)/tests/tools/%,$(TOOL_SRCS))
$(BUILD)/tests/tools/%: tests/tools/%.c $(call libs_for,mount)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  TOOL    $@")
	$(Q)$(CC) $(ALL_CFLAGS) -o $@ $< $(call libs_for,mount) $(ALL_LDFLAGS) $(PKG_LIBS)

tools-build: $(TOOL_BINS)

# Each run merges what it found into tests/fuzz/corpus/ and appends to tests/fuzz/ledger.tsv
# (commit both). FUZZ_TARGETS picks targets: make fuzz FUZZ_TARGETS="fuzz_oci_ref" FUZZ_SECONDS=600
FUZZ_SECONDS ?= 60
FUZZ_CC ?= clang
FUZZ_TARGETS ?= $(FUZZ_NAMES)
fuzz:
	$(Q)FUZZ_CC=$(FUZZ_CC) ./tests/fuzz/run-fuzzers $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# --- check / demo / bench -------------------------------------------------
deps:
	$(Q)./tests/install-deps

check: deps
	$(Q)./tests/run-check

demo: deps all
	$(Q)./demo/run-demo

bench: deps all
	$(Q)./bench/run-bench

# Long runs, not part of `make check`: kills of the daemon's processes under parallel readers
# and injected faults, kill -9 during fills, 100 images and 200 mounts at once.
STRESS_PYTEST := /usr/bin/python3 -m pytest -q -s -p no:cacheprovider
stress: deps all tools-build
	LAZYEROFS_BIN=$(CURDIR)/build/lazyerofs $(STRESS_PYTEST) tests/stress
	LAZYEROFS_BIN=$(CURDIR)/build/lazyerofs LAZYEROFS_KILLS=$${LAZYEROFS_KILLS:-100} \
		$(STRESS_PYTEST) tests/integration/test_trust_cache.py -k kill9

# The daemon under ThreadSanitizer: the integration tests marked `san` (mounts, reads,
# takeovers, umount) against the SANITIZE=thread build.
tsan: deps
	$(MAKE) SANITIZE=thread all tools-build
	LAZYEROFS_BIN=$(CURDIR)/build-tsan/lazyerofs /usr/bin/python3 -m pytest -q \
		-p no:cacheprovider -m san tests/integration

# The man page lazyerofs(8) (doc/lazyerofs.8, hand-written roff), and mount.erofs.lazy(8) as
# a .so link to it.
install: $(BIN)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(SBINDIR) $(DESTDIR)$(MANDIR)/man8
	install -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/lazyerofs
	ln -sf $(PREFIX)/bin/lazyerofs $(DESTDIR)$(SBINDIR)/mount.erofs.lazy
	install -m 0644 doc/lazyerofs.8 $(DESTDIR)$(MANDIR)/man8/lazyerofs.8
	echo '.so man8/lazyerofs.8' > $(DESTDIR)$(MANDIR)/man8/mount.erofs.lazy.8
	chmod 0644 $(DESTDIR)$(MANDIR)/man8/mount.erofs.lazy.8

clean:
	rm -rf build build-san build-tsan build-fuzz

.PHONY: all check demo bench stress tsan deps install clean fuzz fuzz-build unit-build \
	tools-build
.SECONDARY:

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
