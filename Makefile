# layerup - one Makefile.  `make` builds the libraries and the Lua module,
# `make run` does the main job, `make test` runs every test, `make check`
# runs them under ASan+UBSan, `make bench` measures.
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
CFLAGS_ALL = -std=c11 -Wall -Wextra -Werror -D_GNU_SOURCE -fPIC \
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
HDRS     = $(wildcard include/*.h include/layerup/*.h include/layerup/*/*.h src/*/*.h)

CTEST_SRC = $(wildcard spec/c/test_*.c)
CTEST_BIN = $(CTEST_SRC:spec/c/%.c=$(BUILD)/tests/%)
EXAMPLE_C = $(wildcard examples/*.c)
EXAMPLE_BIN = $(EXAMPLE_C:examples/%.c=$(BUILD)/examples/%)

.PHONY: all deps run test check bench clean ctest fuzz serve

all: $(BUILD)/liblayerup.a $(BUILD)/liblayerup.so $(BUILD)/layerup/core.so \
     $(BUILD)/luajit/layerup/core.so $(CTEST_BIN) $(EXAMPLE_BIN)

# Installs missing Debian packages when root, else names the command.
deps:
	@tools/bootstrap

$(BUILD)/obj/%.o: src/%.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

$(BUILD)/liblayerup.a: $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/liblayerup.so: $(LIB_OBJ)
	$(CC) -shared $(SAN) -o $@ $^ $(LIBS)

$(BUILD)/layerup/core.so: $(LIB_OBJ) $(LUA_OBJ)
	@mkdir -p $(dir $@)
	$(CC) -shared $(SAN) -o $@ $^ $(LIBS)

# Neither build links liblua/libluajit: the host (lua5.4, luajit, nginx)
# provides the symbols, and loading the wrong build fails cleanly.
$(BUILD)/luajit/obj/%.o: src/%.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(subst $(LUA_INC),$(LUAJIT_INC),$(CFLAGS_ALL)) -c $< -o $@

$(BUILD)/luajit/layerup/core.so: $(LIB_OBJ) $(LUAJIT_OBJ)
	@mkdir -p $(dir $@)
	$(CC) -shared $(SAN) -o $@ $^ $(LIBS)

$(BUILD)/tests/%: spec/c/%.c spec/c/test.h $(BUILD)/liblayerup.a
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

clean:
	rm -rf build build-asan build-fuzz
