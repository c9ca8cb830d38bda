# shm - shared L1 cache on LMDB with a sidecar flusher.
# make [all] | test | demo | bench | deps | install | clean
# make SANITIZER=address|undefined|thread ; CI=true adds -Werror.

PREFIX  ?= /usr/local
DESTDIR ?=
CC      ?= cc
BUILD   := build

CFLAGS  ?= -O2 -g
# libpq's headers live in a subdirectory; pkg-config says which
PQ_CFLAGS := $(shell pkg-config --cflags libpq 2>/dev/null || echo -I/usr/include/postgresql)
# override: a CFLAGS given on the command line keeps what the build needs
override CFLAGS += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter \
           -fPIC -Ilibshm $(PQ_CFLAGS) -pthread
ifneq ($(CI),)
override CFLAGS += -Werror
endif
ifneq ($(SANITIZER),)
override CFLAGS += -fsanitize=$(SANITIZER) -fno-omit-frame-pointer
override LDFLAGS += -fsanitize=$(SANITIZER)
endif

comma   := ,
LIBS    := -llmdb -llz4 -lxxhash -ljansson -lcrypto -lhiredis -lpq -pthread
# the same libraries as pkg-config modules: shm.pc's Requires.private, for
# programs that link libshm.a
PC_REQUIRES := lmdb liblz4 libxxhash jansson libcrypto hiredis libpq

# The version is SHM_VERSION in libshm/shm.h (what the tools print). The
# SONAME carries its major, 0 while shm is 0.x: a program linked against one
# 0.x release loads any other, so a release that breaks the ABI must be 1.0.
VERSION := $(shell sed -n 's/^.define SHM_VERSION "\(.*\)"$$/\1/p' libshm/shm.h)
MAJOR   := $(firstword $(subst ., ,$(VERSION)))
SONAME  := libshm.so.$(MAJOR)

LIB_SRC := $(wildcard libshm/*.c)
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
FL_SRC  := $(wildcard flusher/*.c)
FL_OBJ  := $(FL_SRC:%.c=$(BUILD)/obj/%.o)
BENCH_SRC := $(wildcard tests/bench/*.c)
BENCH_OBJ := $(BENCH_SRC:%.c=$(BUILD)/obj/%.o)
# shmctl is tools/shmctl/, a file per command group; tools/*.c, a program each
CTL_SRC := $(wildcard tools/shmctl/*.c)
CTL_OBJ := $(CTL_SRC:%.c=$(BUILD)/obj/%.o)
TEST_SRC := $(wildcard tests/test_*.c)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
TEST_HELPERS := $(filter-out $(TEST_SRC),$(wildcard tests/*.c))
TEST_HELPER_OBJ := $(TEST_HELPERS:%.c=$(BUILD)/obj/%.o)

STATIC  := $(BUILD)/lib/libshm.a
SHARED  := $(BUILD)/lib/libshm.so.$(VERSION)
# what the dynamic linker (SONAME) and the link editor (-lshm) look for
SHARED_LINKS := $(BUILD)/lib/$(SONAME) $(BUILD)/lib/libshm.so
PC      := $(BUILD)/shm.pc
BINS    := $(BUILD)/bin/shmctl $(if $(FL_SRC),$(BUILD)/bin/shm-flusher) \
           $(if $(BENCH_SRC),$(BUILD)/bin/shm-bench) \
           $(patsubst tools/%.c,$(BUILD)/bin/%,$(wildcard tools/*.c))

# Everything built depends on the flags it was built with: a build dir
# switched to another SANITIZER or CFLAGS is rebuilt, never mixed.
FLAGS_STAMP := $(BUILD)/flags
FLAGS_NOW := $(CC) $(CFLAGS) $(LDFLAGS)
$(shell mkdir -p $(BUILD) && [ "$$(cat $(FLAGS_STAMP) 2>/dev/null)" = '$(FLAGS_NOW)' ] || printf '%s\n' '$(FLAGS_NOW)' > $(FLAGS_STAMP))
# shm.pc names PREFIX: it is remade when PREFIX changes, the same way
PREFIX_STAMP := $(BUILD)/prefix
$(shell [ "$$(cat $(PREFIX_STAMP) 2>/dev/null)" = '$(PREFIX)' ] || printf '%s\n' '$(PREFIX)' > $(PREFIX_STAMP))

.PHONY: all tests test demo bench deps install clean
# Keep object files (no "rm" after the test summary, faster rebuilds).
.SECONDARY:
all: $(STATIC) $(SHARED) $(SHARED_LINKS) $(PC) $(BINS)

$(BUILD)/obj/%.o: %.c $(FLAGS_STAMP) $(wildcard libshm/*.h) $(wildcard flusher/*.h) $(wildcard tools/*.h) $(wildcard tools/shmctl/*.h) $(wildcard tests/*.h) $(wildcard tests/bench/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(STATIC): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# The shared library exports the public API alone, the shm_* functions of
# shm.h and shm_log.h: the glob's [a-z] leaves the shm__ internals local
# (tests/test_install.sh checks both ways).
SHARED_MAP := $(BUILD)/libshm.map
$(SHARED_MAP): Makefile
	@mkdir -p $(dir $@)
	printf '{\n\tglobal: shm_[a-z]*;\n\tlocal: *;\n};\n' > $@

# one recipe for the library and its links (a link alone would be a
# .SECONDARY's dependent: not remade when the library is missing)
$(SHARED) $(SHARED_LINKS) &: $(LIB_OBJ) $(SHARED_MAP)
	@mkdir -p $(dir $(SHARED))
	$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--version-script,$(SHARED_MAP) \
		$(LDFLAGS) -o $(SHARED) $(LIB_OBJ) $(LIBS)
	for l in $(SHARED_LINKS); do ln -sf $(notdir $(SHARED)) $$l || exit 1; done

$(PC): libshm/shm.pc.in libshm/shm.h $(PREFIX_STAMP)
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' \
	    -e 's|@REQUIRES@|$(PC_REQUIRES)|' $< > $@

$(BUILD)/bin/shmctl: $(CTL_OBJ) $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/bin/%: $(BUILD)/obj/tools/%.o $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/bin/shm-flusher: $(FL_OBJ) $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/bin/shm-bench: $(BENCH_OBJ) $(filter-out $(BUILD)/obj/flusher/main.o,$(FL_OBJ)) $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS) -lm

# The allocators tests/failalloc.c can make fail (see failalloc.h): calls
# to them from the objects linked into a test binary go through it.
FAILALLOC_WRAP := $(patsubst %,-Wl$(comma)--wrap=%,malloc calloc realloc \
	strdup strndup LZ4F_createCompressionContext \
	LZ4F_createDecompressionContext EVP_MD_CTX_new)

$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(TEST_HELPER_OBJ) $(filter-out $(BUILD)/obj/flusher/main.o,$(FL_OBJ)) $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $(FAILALLOC_WRAP) -o $@ $^ $(LIBS) -lcmocka -lm

tests: $(TEST_BIN)

# Runs every test: unit, multi-process, crash, and integration tests against
# real redis-server and PostgreSQL started in a temp dir.
test: all $(TEST_BIN)
	SHM_BIN=$(BUILD)/bin sh tests/run.sh $(TEST_BIN)

demo: all
	SHM_BIN=$(BUILD)/bin sh tools/demo.sh

bench: all
	$(BUILD)/bin/shm-bench

deps:
	sh tools/deps.sh

install: all
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/shm
	install -m 644 $(STATIC) $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(SHARED) $(DESTDIR)$(PREFIX)/lib/
	for l in $(notdir $(SHARED_LINKS)); do ln -sf $(notdir $(SHARED)) $(DESTDIR)$(PREFIX)/lib/$$l || exit 1; done
	install -d $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 644 $(PC) $(DESTDIR)$(PREFIX)/lib/pkgconfig/
	install -m 644 libshm/shm.h libshm/shm_log.h $(DESTDIR)$(PREFIX)/include/
	install -m 755 $(BINS) $(DESTDIR)$(PREFIX)/bin/
	install -m 644 sql/schema.sql $(DESTDIR)$(PREFIX)/share/shm/
	install -d $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 644 man/shmctl.1 $(DESTDIR)$(PREFIX)/share/man/man1/

clean:
	rm -rf $(BUILD)
