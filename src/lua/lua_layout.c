/*
 * lua_layout.c - layerup.layout: the storage layout's paths and grammars
 * as src/store/layout.c builds them, so that Lua tools (the command line,
 * the verifier, scripts) never assemble a registry path by hand.
 *
 *   layout.root                       "/docker/registry/v2"
 *   layout.repositories               "/docker/registry/v2/repositories"
 *   layout.blobs                      "/docker/registry/v2/blobs"
 *   layout.repo_dir(repo)             .../repositories/<repo>
 *   layout.upload_dir(repo, uuid)     .../<repo>/_uploads/<uuid>
 *   layout.upload_file(repo, uuid, leaf)  .../_uploads/<uuid>/<leaf>  (data, startedat)
 *   layout.hashstate_dir(repo, uuid)  .../_uploads/<uuid>/hashstates/sha256
 *   layout.hashstate(repo, uuid, offset)
 *   layout.blob_data(digest)          .../blobs/<alg>/<hex[0:2]>/<hex>/data
 *   layout.link(repo, digest)         .../<repo>/_layers/<alg>/<hex>/link
 *   layout.valid_digest(s)            -> bool (the core's digest grammar)
 *
 * Paths are relative to a driver's root.  A name outside its grammar
 * returns nil, err (NAME_INVALID, BLOB_UPLOAD_UNKNOWN, DIGEST_INVALID), as
 * the store answers; a leaf with a '/' or a negative offset raises.
 *
 * Also here: layerup.core.forward_signals(), which lets SIGTERM and SIGHUP
 * take the interpreter's SIGINT action, so a tool that handles Ctrl-C (the
 * `lua` interpreter raises "interrupted!" at the next Lua instruction)
 * handles a kill or a hang-up the same way.
 */
#include <signal.h>
#include <string.h>

#include "store/layout.h"
#include "lua/lua_util.h"

static int push_path(lua_State *L, int rc, const char *buf)
{
	lup_error err;

	if (rc != 0) {
		lup_error_set(&err, rc, NULL, "path too long");
		return lup_lua_fail(L, &err);
	}
	lua_pushstring(L, buf);
	return 1;
}

static int bad(lua_State *L, int code, const char *what, const char *s)
{
	lup_error err;

	lup_error_set(&err, code, NULL, "invalid %s: %.200s", what, s);
	return lup_lua_fail(L, &err);
}

#define NEED_REPO(L, i, repo)                                                  \
	const char *repo = lup_lua_checkname((L), (i));                        \
	if (!lup_repo_valid(repo))                                             \
	return bad((L), LUP_ENAME_INVALID, "repository name", repo)

#define NEED_UUID(L, i, uuid)                                                  \
	const char *uuid = lup_lua_checkname((L), (i));                        \
	if (!lup_uuid_valid(uuid))                                             \
	return bad((L), LUP_EBLOB_UPLOAD_UNKNOWN, "upload id", uuid)

static int l_repo_dir(lua_State *L)
{
	char buf[LUP_PATH_BUF];
	NEED_REPO(L, 1, repo);
	return push_path(L, lup_path_repo_dir(buf, repo), buf);
}

static int l_upload_dir(lua_State *L)
{
	char buf[LUP_PATH_BUF];
	NEED_REPO(L, 1, repo);
	NEED_UUID(L, 2, uuid);
	return push_path(L, lup_path_upload_dir(buf, repo, uuid), buf);
}

static int l_upload_file(lua_State *L)
{
	char buf[LUP_PATH_BUF];
	NEED_REPO(L, 1, repo);
	NEED_UUID(L, 2, uuid);
	const char *leaf = luaL_checkstring(L, 3);

	luaL_argcheck(L, *leaf && !strchr(leaf, '/') && strcmp(leaf, ".") &&
				 strcmp(leaf, ".."),
		      3, "a file name without '/'");
	return push_path(L, lup_path_upload_file(buf, repo, uuid, leaf), buf);
}

static int l_hashstate_dir(lua_State *L)
{
	char buf[LUP_PATH_BUF];
	NEED_REPO(L, 1, repo);
	NEED_UUID(L, 2, uuid);
	return push_path(L, lup_path_hashstate_dir(buf, repo, uuid), buf);
}

static int l_hashstate(lua_State *L)
{
	char buf[LUP_PATH_BUF];
	NEED_REPO(L, 1, repo);
	NEED_UUID(L, 2, uuid);
	lua_Integer off = luaL_checkinteger(L, 3);

	luaL_argcheck(L, off >= 0, 3, "offset must not be negative");
	return push_path(L, lup_path_hashstate(buf, repo, uuid, (int64_t)off),
			 buf);
}

static int check_digest(lua_State *L, int idx, lup_digest *d)
{
	const char *s = lup_lua_checkname(L, idx);
	lup_error err;

	if (lup_digest_parse(s, d, &err) != 0)
		return lup_lua_fail(L, &err);
	return 0;
}

static int l_blob_data(lua_State *L)
{
	char buf[LUP_PATH_BUF];
	lup_digest d;
	int n = check_digest(L, 1, &d);

	if (n)
		return n;
	return push_path(L, lup_path_blob_data(buf, &d), buf);
}

static int l_link(lua_State *L)
{
	char buf[LUP_PATH_BUF];
	lup_digest d;
	NEED_REPO(L, 1, repo);
	int n = check_digest(L, 2, &d);

	if (n)
		return n;
	return push_path(L, lup_path_layer_link(buf, repo, &d), buf);
}

static int l_valid_digest(lua_State *L)
{
	lup_digest d;
	lup_error err;

	lua_pushboolean(L, lua_type(L, 1) == LUA_TSTRING &&
				   lup_digest_parse(lup_lua_checkname(L, 1),
						    &d, &err) == 0);
	return 1;
}

/* forward_signals() -> true when SIGTERM and SIGHUP now take the SIGINT
 * action, false when SIGINT has no handler to share (then nothing
 * changes).  No state of ours: the handler is the interpreter's. */
static int l_forward_signals(lua_State *L)
{
	struct sigaction sa;

	if (sigaction(SIGINT, NULL, &sa) != 0 || sa.sa_handler == SIG_DFL ||
	    sa.sa_handler == SIG_IGN) {
		lua_pushboolean(L, 0);
		return 1;
	}
	if (sigaction(SIGTERM, &sa, NULL) != 0 ||
	    sigaction(SIGHUP, &sa, NULL) != 0) {
		lua_pushboolean(L, 0);
		return 1;
	}
	lua_pushboolean(L, 1);
	return 1;
}

void lup_lua_open_layout(lua_State *L)
{
	static const luaL_Reg fns[] = {
		{ "repo_dir", l_repo_dir },
		{ "upload_dir", l_upload_dir },
		{ "upload_file", l_upload_file },
		{ "hashstate_dir", l_hashstate_dir },
		{ "hashstate", l_hashstate },
		{ "blob_data", l_blob_data },
		{ "link", l_link },
		{ "valid_digest", l_valid_digest },
		{ NULL, NULL },
	};

	luaL_newlib(L, fns);
	lua_pushliteral(L, LUP_V2_ROOT);
	lua_setfield(L, -2, "root");
	lua_pushliteral(L, LUP_REPOS_ROOT);
	lua_setfield(L, -2, "repositories");
	lua_pushliteral(L, LUP_V2_ROOT "/blobs");
	lua_setfield(L, -2, "blobs");
	lua_setfield(L, -2, "layout");

	lua_pushcfunction(L, l_forward_signals);
	lua_setfield(L, -2, "forward_signals");
}
