# layerup - one Makefile.  `make` builds the libraries and the Lua module,
# `make run` does the main job, `make test` runs every test, `make check`
# runs them under ASan+UBSan, `make bench` measures, `make torture`
# kills, fails and races uploads, `make install` and
# `make uninstall` install and remove (PREFIX, DESTDIR, see below).
#
# BUILD selects the output directory (helpers and `make check` use their
# own).  LUA_INC / LUA picks the Lua 5.4 headers and interpreter.

BUILD    ?= build
CC       ?= cc
LUA      ?= lua5.4
LUA_INC  ?= -I/usr/include/lua5.4
# The same binding built for LuaJIT 2.1 (nginx's Lua module): $(BUILD)/luajit/
LUAJIT   ?= luajit
LUAJIT_INC ?= $(shell pkg-config --cflags luajit 2>/dev/null || echo -I/usr/include/luajit-2.1)
OPT      ?= -O2 -g
SAN      ?=
VERSION  := $(shell sed -n 's/^\#define LUP_VERSION_STRING "\(.*\)"/\1/p' include/layerup.h)
SOMAJOR  := $(firstword $(subst ., ,$(VERSION)))
SONAME   = liblayerup.so.$(SOMAJOR)
# Only LUP_API declarations (the public headers) leave liblayerup.so.
CFLAGS_ALL = -std=c11 -Wall -Wextra -Werror -D_GNU_SOURCE -fPIC -fvisibility=hidden \
	     -Iinclude -Isrc $(LUA_INC) $(OPT) $(SAN) $(CFLAGS)
LIBS     = -lssl -lcrypto -luuid -lpthread -lcurl

# src/ is arranged by layer: core (errors, buffers, hashing), drivers
# (the validating driver layer and the built-in drivers), store (layout,
# store, upload, finish, purge) and lua (the Lua binding).
LIB_SRC  = $(wildcard src/core/*.c src/drivers/*.c src/drivers/*/*.c src/store/*.c)
LUA_SRC  = $(wildcard src/lua/*.c)
LIB_OBJ  = $(LIB_SRC:src/%.c=$(BUILD)/obj/%.o)
LUA_OBJ  = $(LUA_SRC:src/%.c=$(BUILD)/obj/%.o)
LUAJIT_OBJ = $(LUA_SRC:src/%.c=$(BUILD)/luajit/obj/%.o)
HDRS     = $(wildcard include/*.h include/layerup/*.h include/layerup/*/*.h src/*/*.h src/*/*/*.h)

CTEST_SRC = $(wildcard spec/c/test_*.c)
CTEST_BIN = $(CTEST_SRC:spec/c/%.c=$(BUILD)/tests/%)
EXAMPLE_C = $(wildcard examples/*.c)
EXAMPLE_BIN = $(EXAMPLE_C:examples/%.c=$(BUILD)/examples/%)

.PHONY: all lib deps run test test-s3-swift test-s3-osd check bench clean ctest fuzz docs torture \
	install install-lib install-lua install-docs uninstall serve

LIBS_OUT = $(BUILD)/liblayerup.a $(BUILD)/liblayerup.so $(BUILD)/layerup/core.so

all: $(LIBS_OUT) $(BUILD)/luajit/layerup/core.so $(CTEST_BIN) $(EXAMPLE_BIN)

# The libraries and the Lua module only (what install needs).
lib: $(LIBS_OUT)

# Installs missing Debian packages when root, else names the command.
deps:
	@tools/bootstrap

$(BUILD)/obj/%.o: src/%.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

$(BUILD)/liblayerup.a: $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# liblayerup.so -> liblayerup.so.0 (the SONAME) -> liblayerup.so.0.1.0
$(BUILD)/liblayerup.so.$(VERSION): $(LIB_OBJ)
	$(CC) -shared $(SAN) $(LDFLAGS) -Wl,-soname,$(SONAME) -o $@ $^ $(LIBS)

$(BUILD)/liblayerup.so: $(BUILD)/liblayerup.so.$(VERSION)
	ln -sf liblayerup.so.$(VERSION) $(BUILD)/$(SONAME)
	ln -sf $(SONAME) $@

$(BUILD)/layerup/core.so: $(LIB_OBJ) $(LUA_OBJ) src/lua/core.map
	@mkdir -p $(dir $@)
	$(CC) -shared $(SAN) $(LDFLAGS) -Wl,--version-script=src/lua/core.map \
		-o $@ $(LIB_OBJ) $(LUA_OBJ) $(LIBS)

# Neither build links liblua/libluajit: the host (lua5.4, luajit, nginx)
# provides the symbols, and loading the wrong build fails cleanly.
$(BUILD)/luajit/obj/%.o: src/%.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(subst $(LUA_INC),$(LUAJIT_INC),$(CFLAGS_ALL)) -c $< -o $@

$(BUILD)/luajit/layerup/core.so: $(LIB_OBJ) $(LUAJIT_OBJ) src/lua/core.map
	@mkdir -p $(dir $@)
	$(CC) -shared $(SAN) $(LDFLAGS) -Wl,--version-script=src/lua/core.map \
		-o $@ $(LIB_OBJ) $(LUAJIT_OBJ) $(LIBS)

$(BUILD)/tests/%: spec/c/%.c $(wildcard spec/c/*.h) $(BUILD)/liblayerup.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -o $@ $< $(BUILD)/liblayerup.a $(LIBS)

$(BUILD)/examples/%: examples/%.c $(BUILD)/liblayerup.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -o $@ $< $(BUILD)/liblayerup.a $(LIBS)

run: deps
	@$(MAKE) --no-print-directory all
	@tools/run-demo

test: deps
	@$(MAKE) --no-print-directory all
	@BUILD=$(BUILD) LUA=$(LUA) spec/run

# The S3 suites (driver conformance, upload/store/purge specs, the S3
# spec) once more, on Swift's s3api instead of Ceph RGW (tools/s3-swift).
S3_SUITES = spec/driver_spec.lua spec/upload_spec.lua spec/store_spec.lua \
	    spec/purge_spec.lua spec/integration/s3_spec.lua \
	    spec/integration/s3_faults_spec.lua
test-s3-swift: deps
	@$(MAKE) --no-print-directory all
	@BUILD=$(BUILD) LUA=$(LUA) LUP_S3_SERVER=swift LUP_S3_REQUIRE=1 ONLY="$(S3_SUITES)" spec/run

# A Ceph RGW on three OSDs (size 3, min_size 2), one OSD killed by its pid
# in the middle of an upload (about 30 s to start the cluster).
test-s3-osd: deps
	@$(MAKE) --no-print-directory all
	@BUILD=$(BUILD) LUA=$(LUA) S3_RGW_OSDS=3 LUP_S3_REQUIRE=1 ONLY="spec/integration/s3_osd_spec.lua" spec/run

check: deps
	@$(MAKE) --no-print-directory BUILD=build-asan OPT="-O1 -g" \
		SAN="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer" all
	@BUILD=build-asan LUA=$(LUA) SANITIZE=1 spec/run

# The OCI registry API on ./var/registry through nginx (layerup serve).
serve: deps
	@$(MAKE) --no-print-directory all
	@BUILD=$(BUILD) bin/layerup serve ./var/registry --listen 127.0.0.1:5000

bench: deps
	@$(MAKE) --no-print-directory all
	@bench/run

fuzz: deps
	@tools/fuzz

# The man page (doc/layerup.1, help2man) and the bash completion script
# (contrib/layerup.bash), generated from the command line's help text and
# committed; spec/cli_docs_spec.lua fails when they are not current.
docs: deps
	@LUA_PATH="$(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;;" \
		LUA_CPATH="$(CURDIR)/$(BUILD)/?.so;;" LUA=$(LUA) tools/gen-docs

# Crash, I/O-error, race and hostile-tree torture at full size (README
# "Torture": 6-7 minutes on 2 cores); `make test` runs a short version.
torture: deps
	@$(MAKE) --no-print-directory all
	@BUILD=$(BUILD) LUA=$(LUA) tools/torture

# Install.  Directories follow GNU and LuaRocks naming; the defaults are
# where Debian's lua5.4 looks (package.path/cpath under /usr/local).
#   PREFIX      /usr/local
#   BINDIR      $(PREFIX)/bin                the layerup command
#   INCLUDEDIR  $(PREFIX)/include            layerup.h, layerup/*.h
#   CLIBDIR     $(PREFIX)/lib                liblayerup.so*, liblayerup.a
#   PKGCONFIGDIR $(CLIBDIR)/pkgconfig        layerup.pc
#   LUADIR      $(PREFIX)/share/lua/5.4      layerup/*.lua (LuaRocks' LUADIR)
#   LIBDIR      $(PREFIX)/lib/lua/5.4        layerup/core.so (LuaRocks' LIBDIR)
#   JITLIBDIR   $(PREFIX)/lib/lua/5.1        layerup/core.so built for LuaJIT
#                                            (default: LIBDIR's parent + /5.1)
#                                            (nginx: `layerup serve`)
#   MANDIR      $(PREFIX)/share/man          man1/layerup.1
#   BASHCOMPDIR $(PREFIX)/share/bash-completion/completions   layerup
# DESTDIR is prepended to every path (staged installs, packaging).
PREFIX       ?= /usr/local
BINDIR       ?= $(PREFIX)/bin
INCLUDEDIR   ?= $(PREFIX)/include
CLIBDIR      ?= $(PREFIX)/lib
PKGCONFIGDIR ?= $(CLIBDIR)/pkgconfig
LUADIR       ?= $(PREFIX)/share/lua/5.4
LIBDIR       ?= $(PREFIX)/lib/lua/5.4
# Next to LIBDIR (a LuaRocks-style LIBDIR=.../clua gives .../5.1).
JITLIBDIR    ?= $(patsubst %/,%,$(dir $(LIBDIR)))/5.1
MANDIR       ?= $(PREFIX)/share/man
BASHCOMPDIR  ?= $(PREFIX)/share/bash-completion/completions
INSTALL      ?= install

PUB_HDRS  = $(wildcard include/layerup/*.h)
SYS_HDRS  = $(wildcard include/layerup/sys/*.h)
LUA_MODS  = $(patsubst lua/%,%,$(shell find lua/layerup -name '*.lua' | sort))
# layerup.pc paths relative to ${prefix} where they are below it.
pcdir = $(patsubst $(PREFIX)/%,$${prefix}/%,$(1))

install: install-lib install-lua install-docs

# The man page and the bash completion script (generated by `make docs`).
install-docs:
	$(INSTALL) -D -m 644 doc/layerup.1 $(DESTDIR)$(MANDIR)/man1/layerup.1
	$(INSTALL) -D -m 644 contrib/layerup.bash $(DESTDIR)$(BASHCOMPDIR)/layerup

install-lib: lib
	$(INSTALL) -d $(DESTDIR)$(CLIBDIR) $(DESTDIR)$(PKGCONFIGDIR) \
		$(DESTDIR)$(INCLUDEDIR)/layerup/sys
	$(INSTALL) -m 644 $(BUILD)/liblayerup.a $(DESTDIR)$(CLIBDIR)/
	$(INSTALL) -m 755 $(BUILD)/liblayerup.so.$(VERSION) $(DESTDIR)$(CLIBDIR)/
	ln -sf liblayerup.so.$(VERSION) $(DESTDIR)$(CLIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(CLIBDIR)/liblayerup.so
	$(INSTALL) -m 644 include/layerup.h $(DESTDIR)$(INCLUDEDIR)/
	$(INSTALL) -m 644 $(PUB_HDRS) $(DESTDIR)$(INCLUDEDIR)/layerup/
	$(INSTALL) -m 644 $(SYS_HDRS) $(DESTDIR)$(INCLUDEDIR)/layerup/sys/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' \
	    -e 's|@CLIBDIR@|$(call pcdir,$(CLIBDIR))|' \
	    -e 's|@INCLUDEDIR@|$(call pcdir,$(INCLUDEDIR))|' \
	    layerup.pc.in >$(DESTDIR)$(PKGCONFIGDIR)/layerup.pc
	chmod 644 $(DESTDIR)$(PKGCONFIGDIR)/layerup.pc

# The Lua module, the policy modules and the command (also what the
# LuaRocks rockspec installs).  bin/layerup learns where its modules are.
# The LuaJIT build goes to JITLIBDIR: `layerup serve` points nginx there.
# Without LuaJIT's headers (a LuaRocks install for Lua 5.4 only) it is left
# out, and `layerup serve` says so.
HAVE_LUAJIT := $(shell pkg-config --exists luajit 2>/dev/null && echo 1 || \
		 { test -f /usr/include/luajit-2.1/lua.h && echo 1; })
install-lua: lib $(if $(HAVE_LUAJIT),$(BUILD)/luajit/layerup/core.so)
	$(INSTALL) -d $(DESTDIR)$(LIBDIR)/layerup $(DESTDIR)$(BINDIR)
	$(INSTALL) -m 755 $(BUILD)/layerup/core.so $(DESTDIR)$(LIBDIR)/layerup/
	$(if $(HAVE_LUAJIT),$(INSTALL) -D -m 755 $(BUILD)/luajit/layerup/core.so \
		$(DESTDIR)$(JITLIBDIR)/layerup/core.so,@echo "install-lua: no LuaJIT headers: the LuaJIT build (layerup serve) is not installed")
	for m in $(LUA_MODS); do \
		$(INSTALL) -D -m 644 lua/$$m $(DESTDIR)$(LUADIR)/$$m || exit 1; \
	done
	sed -e 's|^local INSTALLED_LUADIR, INSTALLED_LIBDIR = nil, nil$$|local INSTALLED_LUADIR, INSTALLED_LIBDIR = "$(LUADIR)", "$(LIBDIR)"|' \
	    -e 's|^local INSTALLED_JITLIBDIR = nil |local INSTALLED_JITLIBDIR = "$(JITLIBDIR)" |' \
	    bin/layerup >$(DESTDIR)$(BINDIR)/layerup
	chmod 755 $(DESTDIR)$(BINDIR)/layerup

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/layerup
	rm -f $(DESTDIR)$(MANDIR)/man1/layerup.1 $(DESTDIR)$(BASHCOMPDIR)/layerup
	rm -f $(DESTDIR)$(LIBDIR)/layerup/core.so $(DESTDIR)$(JITLIBDIR)/layerup/core.so
	for m in $(LUA_MODS); do rm -f $(DESTDIR)$(LUADIR)/$$m; done
	rm -f $(DESTDIR)$(CLIBDIR)/liblayerup.a \
	      $(DESTDIR)$(CLIBDIR)/liblayerup.so \
	      $(DESTDIR)$(CLIBDIR)/$(SONAME) \
	      $(DESTDIR)$(CLIBDIR)/liblayerup.so.$(VERSION) \
	      $(DESTDIR)$(PKGCONFIGDIR)/layerup.pc \
	      $(DESTDIR)$(INCLUDEDIR)/layerup.h
	rm -f $(addprefix $(DESTDIR)$(INCLUDEDIR)/,$(PUB_HDRS:include/%=%) $(SYS_HDRS:include/%=%))
	-rmdir $(DESTDIR)$(INCLUDEDIR)/layerup/sys $(DESTDIR)$(INCLUDEDIR)/layerup \
	       $(DESTDIR)$(LIBDIR)/layerup $(DESTDIR)$(JITLIBDIR)/layerup $(DESTDIR)$(LUADIR)/layerup/middleware \
	       $(DESTDIR)$(LUADIR)/layerup/cli/commands $(DESTDIR)$(LUADIR)/layerup/cli \
	       $(DESTDIR)$(LUADIR)/layerup/host \
	       $(DESTDIR)$(LUADIR)/layerup 2>/dev/null

clean:
	rm -rf build build-asan build-fuzz build-rock
