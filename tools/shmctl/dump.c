/*
 * tools/shmctl/dump.c - shmctl dump and ls: every entry of the databases,
 * a chunk per read transaction. It includes internal.h to walk them, and
 * only reads.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "shm.h"
#include "shmctl.h"

static char *base64(const uint8_t *p, size_t n)
{
	static const char a[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char *out = malloc((n + 2) / 3 * 4 + 1), *o = out;

	if (!out)
		return NULL;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)p[i + 1] << 8;
		if (i + 2 < n)
			v |= p[i + 2];
		*o++ = a[v >> 18 & 63];
		*o++ = a[v >> 12 & 63];
		*o++ = i + 1 < n ? a[v >> 6 & 63] : '=';
		*o++ = i + 2 < n ? a[v & 63] : '=';
	}
	*o = '\0';
	return out;
}

typedef struct lsctx {
	bool json;
	bool dump;
	size_t bad;
	shm_env *env;
	MDB_txn *txn; /* the chunk's: graph's dependency counts */
	FILE *out;    /* the chunk's output, printed after its transaction */
} lsctx;

typedef void walkfn(const MDB_val *k, const MDB_val *v, lsctx *c);

/* Output held in memory by a chunk at most (statics are large): a chunk
 * ends at CHUNK entries or once past this. */
#define CHUNK_BYTES (1 << 20)

/* Where a walk resumes: a copy of the last key read (keys are valid only
 * inside their transaction); NULL before the first chunk. */
typedef struct walkpos {
	void *key;
	size_t len, cap;
} walkpos;

static int walkpos_keep(walkpos *pos, const MDB_val *k)
{
	if (k->mv_size > pos->cap) {
		void *p = realloc(pos->key, k->mv_size);
		if (!p)
			return shm__err_mdb(ENOMEM, "walk: copy a key");
		pos->key = p;
		pos->cap = k->mv_size;
	}
	memcpy(pos->key, k->mv_data, k->mv_size);
	pos->len = k->mv_size;
	return 0;
}

/* Puts cur on the first entry after pos (the first of all before the first
 * chunk). None of the databases walked is MDB_DUPSORT: a key is an entry. */
static int walk_seek(MDB_txn *txn, MDB_dbi dbi, MDB_cursor *cur,
                     const walkpos *pos, MDB_val *k, MDB_val *v)
{
	MDB_val last = {pos->len, pos->key};
	int rc;

	if (!pos->key)
		return mdb_cursor_get(cur, k, v, MDB_FIRST);
	*k = last;
	rc = mdb_cursor_get(cur, k, v, MDB_SET_RANGE);
	if (rc == 0 && mdb_cmp(txn, dbi, k, &last) == 0)
		rc = mdb_cursor_get(cur, k, v, MDB_NEXT);
	return rc;
}

/* Reads the entries of dbi after pos, CHUNK at most, in one read
 * transaction, formats them into memory with fn, and prints them once the
 * transaction has ended (see CHUNK). *more: the walk goes on. */
static int walk_chunk(shm_env *env, MDB_dbi dbi, walkfn *fn, lsctx *c,
                      walkpos *pos, bool *more)
{
	char *buf = NULL;
	size_t len = 0, n = 0;
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, v, last = {0, NULL}; /* the last entry formatted: none yet */
	int rc;

	*more = false;
	if (!(c->out = open_memstream(&buf, &len)))
		return shm__err_mdb(errno, "walk: output buffer");
	if ((rc = shm__rtxn_get(env, &txn)))
		goto out;
	if ((rc = mdb_cursor_open(txn, dbi, &cur))) {
		shm__rtxn_put(env, txn);
		rc = shm__err_mdb(rc, "open cursor");
		goto out;
	}
	c->txn = txn;
	rc = walk_seek(txn, dbi, cur, pos, &k, &v);
	for (; rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (n == CHUNK || ftell(c->out) >= CHUNK_BYTES) {
			*more = true;
			break;
		}
		fn(&k, &v, c);
		last = k;
		n++;
	}
	if (rc && rc != MDB_NOTFOUND)
		rc = shm__err_mdb(rc, "walk");
	else
		rc = last.mv_data ? walkpos_keep(pos, &last) : 0;
	mdb_cursor_close(cur);
	shm__rtxn_put(env, txn); /* before printing: see CHUNK */
	c->txn = NULL;
out:
	fclose(c->out);
	c->out = NULL;
	if (!rc && len && fwrite(buf, 1, len, stdout) != len)
		rc = shm__err_mdb(errno, "write the output");
	free(buf);
	return rc;
}

/* Walks every entry of dbi in key order, a chunk per read transaction: each
 * chunk is its own snapshot, so an entry present for the whole walk is
 * printed once, one written or deleted during it may or may not be. */
static int walk(shm_env *env, MDB_dbi dbi, walkfn *fn, lsctx *c)
{
	walkpos pos = {0};
	bool more = true;
	int rc = 0;

	while (more && !rc)
		rc = walk_chunk(env, dbi, fn, c, &pos, &more);
	free(pos.key);
	return rc;
}

static void each_msg(const MDB_val *k, const MDB_val *v, lsctx *c)
{
	shm_msg *m;
	char id[37], t[40];

	if (shm_msg_decode(v->mv_data, v->mv_size, &m) != 0) {
		fprintf(stderr, "%s: message value does not decode: %s\n", prog,
		        shm_errmsg());
		c->bad++;
		return;
	}
	if (c->dump) {
		char *js;
		size_t len;
		if (shm_msg_to_json(m, &js, &len) == 0) {
			fwrite(js, 1, len, c->out);
			fputc('\n', c->out);
			free(js);
		} else {
			shm_uuid_format(&m->id, id);
			fprintf(stderr, "%s: message %s not dumped: %s\n", prog,
			        id, shm_errmsg());
			c->bad++;
		}
	} else {
		shm_uuid_format(&m->id, id);
		shm_time_format(m->created_at, t);
		if (c->json) {
			json_t *o = json_object();
			json_object_set_new(o, "kind", json_string("msg"));
			json_object_set_new(o, "id", json_string(id));
			json_object_set_new(o, "room_id", json_string(m->room_id));
			json_object_set_new(o, "created_at", json_string(t));
			json_object_set_new(o, "message_type",
			                    json_string(shm_msg_type_name(m->type)));
			json_object_set_new(o, "size",
			                    json_integer((json_int_t)v->mv_size));
			emit(c->out, o);
		} else {
			/* room last: it is the one field that may hold spaces */
			fprintf(c->out, "msg %s %s %s %zu %s\n", id, t,
			        shm_msg_type_name(m->type), v->mv_size,
			        m->room_id);
		}
	}
	free(m);
}

static void obj_split(const MDB_val *k, char id[37], const char **obj,
                      int *olen)
{
	shm_uuid u;

	memcpy(u.b, k->mv_data, 16);
	shm_uuid_format(&u, id);
	*obj = (const char *)k->mv_data + 16;
	*olen = (int)(k->mv_size - 16);
}

static void each_static(const MDB_val *k, const MDB_val *v, lsctx *c)
{
	shm_static *s;
	char id[37], t[40];
	const char *obj;
	int olen;

	if (k->mv_size < 16)
		return;
	obj_split(k, id, &obj, &olen);
	/* The "static" value is u64 seq + the static encoding (static.c). */
	if (v->mv_size < 8 ||
	    shm_static_decode((const uint8_t *)v->mv_data + 8, v->mv_size - 8,
	                      &s) != 0) {
		fprintf(stderr, "%s: static %s/%.*s does not decode: %s\n", prog,
		        id, olen, obj, shm_errmsg());
		c->bad++;
		return;
	}
	shm_time_format(s->generated_at, t);
	if (c->json || c->dump) {
		json_t *o = json_object();
		if (!c->dump)
			json_object_set_new(o, "kind", json_string("static"));
		json_object_set_new(o, "website", json_string(id));
		json_object_set_new(o, "object", json_stringn(obj, (size_t)olen));
		json_object_set_new(o, "size",
		                    json_integer((json_int_t)s->content_len));
		json_object_set_new(o, "sha1", json_string(s->sha1));
		json_object_set_new(o, "sha256", json_string(s->sha256));
		json_object_set_new(o, "generated_at", json_string(t));
		if (c->dump) {
			json_t *txt = json_stringn(s->content, s->content_len);
			if (txt && !memchr(s->content, 0, s->content_len)) {
				json_object_set_new(o, "content", txt);
			} else {
				char *b = base64(s->content, s->content_len);
				json_decref(txt);
				json_object_set_new(o, "content_base64",
				                    json_string(b ? b : ""));
				free(b);
			}
		}
		emit(c->out, o);
	} else {
		fprintf(c->out, "static %s %.*s %zu %s %s\n", id, olen, obj,
		        s->content_len, s->sha1, t);
	}
	shm_static_free(s);
}

static void each_graph(const MDB_val *k, const MDB_val *v, lsctx *c)
{
	char id[37];
	const char *obj;
	int olen;
	bool stored = v->mv_size >= 1 && ((const uint8_t *)v->mv_data)[0];
	size_t ndeps = 0;
	MDB_cursor *cur;

	if (k->mv_size < 16)
		return;
	obj_split(k, id, &obj, &olen);
	/* what every reader takes: a website is direct, whatever is stored */
	bool direct = stored || shm__object_is_website(obj, (size_t)olen);
	if (mdb_cursor_open(c->txn, c->env->dep, &cur) == 0) {
		MDB_val kk = *k, vv;
		if (mdb_cursor_get(cur, &kk, &vv, MDB_SET) == 0)
			mdb_cursor_count(cur, &ndeps);
		mdb_cursor_close(cur);
	}
	if (c->json) {
		json_t *o = json_object();
		json_object_set_new(o, "kind", json_string("graph"));
		json_object_set_new(o, "website", json_string(id));
		json_object_set_new(o, "object", json_stringn(obj, (size_t)olen));
		json_object_set_new(o, "direct", json_boolean(direct));
		json_object_set_new(o, "deps", json_integer((json_int_t)ndeps));
		if (stored != direct)
			json_object_set_new(o, "stored_direct", json_false());
		emit(c->out, o);
	} else {
		fprintf(c->out, "graph %s %.*s %s %zu%s\n", id, olen, obj,
		        direct ? "direct" : "indirect", ndeps,
		        stored != direct ? " stored-indirect" : "");
	}
}

static void each_mark(const MDB_val *k, const MDB_val *v, lsctx *c)
{
	char id[37], t[40] = "-";
	const char *obj, *why = "?";
	int olen;
	int64_t when = 0;

	if (k->mv_size < 16)
		return;
	obj_split(k, id, &obj, &olen);
	if (v->mv_size >= 9) {
		memcpy(&when, v->mv_data, 8);
		uint8_t r = ((const uint8_t *)v->mv_data)[8];
		why = r == 1 ? "save" : r == 2 ? "destroy" : "?";
		shm_time_format(when, t);
	}
	if (c->json) {
		json_t *o = json_object();
		json_object_set_new(o, "kind", json_string("mark"));
		json_object_set_new(o, "website", json_string(id));
		json_object_set_new(o, "object", json_stringn(obj, (size_t)olen));
		json_object_set_new(o, "time", json_string(t));
		json_object_set_new(o, "reason", json_string(why));
		emit(c->out, o);
	} else {
		fprintf(c->out, "mark %s %.*s %s %s\n", id, olen, obj, t, why);
	}
}

static int cmd_ls_dump(int argc, char **argv, bool dump)
{
	optdef ls_opts[] = {{"kind", true, NULL}, {"json", false, NULL},
	                    {NULL, false, NULL}};
	optdef dump_opts[] = {{"kind", true, NULL}, {NULL, false, NULL}};
	optdef *opts = dump ? dump_opts : ls_opts;
	const char *use = dump ? "dump [--kind msg|static|all]"
	                       : "ls [--kind msg|static|graph|mark] [--json]";
	char **pos;
	int npos, ex, rc = 0;
	shm_env *env;
	lsctx c = {.dump = dump};
	char b[SHM__SHOWN_MAX];

	if ((ex = scan(argc, argv, opts, &pos, &npos)))
		return ex;
	if ((ex = arity(use, pos, npos, 0, 0)))
		return ex;
	const char *kind = optv(opts, "kind");
	if (!kind)
		kind = "all";
	bool all = strcmp(kind, "all") == 0;
	if (!all && strcmp(kind, "msg") && strcmp(kind, "static") &&
	    (dump || (strcmp(kind, "graph") && strcmp(kind, "mark"))))
		return usage_err("unknown kind '%s'; usage: shmctl %s",
		                 shm__shown_str(kind, b), use);
	c.json = !dump && optv(opts, "json");
	if ((ex = open_env(false, &env)))
		return ex;
	c.env = env;
	if (all || !strcmp(kind, "msg"))
		rc = walk(env, env->msg, each_msg, &c);
	if (!rc && (all || !strcmp(kind, "static")))
		rc = walk(env, env->stat, each_static, &c);
	if (!rc && !dump && (all || !strcmp(kind, "graph")))
		rc = walk(env, env->obj, each_graph, &c);
	if (!rc && !dump && (all || !strcmp(kind, "mark")))
		rc = walk(env, env->mark, each_mark, &c);
	ex = rc ? fail(rc) : c.bad ? EX_NOTFOUND : EX_OK;
	shm_env_close(env);
	return ex;
}

int cmd_ls(int argc, char **argv)
{
	return cmd_ls_dump(argc, argv, false);
}
int cmd_dump(int argc, char **argv)
{
	return cmd_ls_dump(argc, argv, true);
}
