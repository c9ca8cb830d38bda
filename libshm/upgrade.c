/*
 * libshm/upgrade.c - rewrites what an older libshm stored in a form libshm
 * no longer reads (shmctl upgrade), in one write transaction.
 *
 * An older libshm stored an object under its application's spelling, a
 * UUID ID in upper case included, where libshm now keys the lower-case
 * object (graph.c invariant 5), and let a website be declared indirect.
 * Each such entry, as verify.c step 8 finds it, becomes:
 *   graph object or edge  its object declared again (shm__deps_set_w: a
 *                         GRAPH_SET record) in lower case, with its
 *                         dependencies in lower case and its direct flag;
 *                         unless the lower-case object is declared already
 *                         (the application declared it again since): that
 *                         declaration stands. The upper-case one and its
 *                         edges are dropped.
 *   website stored indirect   declared again, direct.
 *   static                busted (a STATIC_BUST record of its own key: the
 *                         flusher deletes the Redis keys an older flusher
 *                         wrote under it).
 *   mark                  dropped: the sinks take marks from the log, where
 *                         the flusher lowers an older libshm's records.
 *
 * Invariants
 *  1. An upper-case entry is dropped without a record: no reader reads it
 *     and no sink keys it (flusher/batch.c canon_key lowers such records),
 *     and a GRAPH_DROP of its key would reach the lower-case object there.
 *  2. A second run finds nothing to do.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Keys read before any is changed (a cursor does not survive the writes). */
typedef struct keylist {
	MDB_val *v;
	size_t n, cap;
} keylist;

static int keylist_add(keylist *l, const void *key, size_t len)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		MDB_val *v = realloc(l->v, cap * sizeof *v);
		if (!v)
			return ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	if (!(l->v[l->n].mv_data = malloc(len ? len : 1)))
		return ENOMEM;
	memcpy(l->v[l->n].mv_data, key, len);
	l->v[l->n++].mv_size = len;
	return 0;
}

static void keylist_free(keylist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].mv_data);
	free(l->v);
	memset(l, 0, sizeof *l);
}

static int val_cmp(const void *a, const void *b)
{
	const MDB_val *x = a, *y = b;

	if (x->mv_size != y->mv_size)
		return x->mv_size < y->mv_size ? -1 : 1;
	return memcmp(x->mv_data, y->mv_data, x->mv_size);
}

/* Sorts l and drops its repeated keys. */
static void keylist_unique(keylist *l)
{
	size_t n = 0;

	if (l->n)
		qsort(l->v, l->n, sizeof *l->v, val_cmp);
	for (size_t i = 0; i < l->n; i++) {
		if (n && val_cmp(&l->v[n - 1], &l->v[i]) == 0)
			free(l->v[i].mv_data);
		else
			l->v[n++] = l->v[i];
	}
	l->n = n;
}

/* Whether key (website + object) is an upper-case spelling. */
static bool key_upper(const MDB_val *k)
{
	char canon[SHM_MAX_OBJECT + 1];

	return k->mv_size > 16 &&
	       shm__object_canon_of((const uint8_t *)k->mv_data + 16,
	                            k->mv_size - 16, canon);
}

/* Keys of dbi to rewrite: upper-case ones; in obj, websites stored
 * indirect too; in dep, those with an upper-case dependency too. */
static int collect(shm__wtxn *w, MDB_dbi dbi, keylist *out)
{
	shm_env *env = w->env;
	char canon[SHM_MAX_OBJECT + 1];
	MDB_cursor *cur;
	MDB_val k, v;
	int rc, op = MDB_FIRST;

	if ((rc = mdb_cursor_open(w->txn, dbi, &cur)))
		return shm__err_mdb(rc, "upgrade: cursor");
	while ((rc = mdb_cursor_get(cur, &k, &v, op)) == 0) {
		bool take = key_upper(&k);
		op = MDB_NEXT;
		if (dbi == env->obj && k.mv_size > 16 &&
		    shm__object_is_website((const char *)k.mv_data + 16,
		                           k.mv_size - 16))
			take |= v.mv_size < 1 || !((uint8_t *)v.mv_data)[0];
		if (dbi == env->dep)
			take |= shm__object_canon_of(v.mv_data, v.mv_size, canon);
		if (!take)
			continue;
		if ((rc = keylist_add(out, k.mv_data, k.mv_size))) {
			mdb_cursor_close(cur);
			return shm__err(rc, "upgrade: key list");
		}
	}
	mdb_cursor_close(cur);
	return rc == MDB_NOTFOUND ? 0 : shm__err_mdb(rc, "upgrade: read");
}

/* Declares key's object again in canonical form (see the top), or drops
 * it if that object is declared already. */
static int redeclare(shm__wtxn *w, const MDB_val *key, shm__upgraded *out)
{
	shm_env *env = w->env;
	uint8_t lk[SHM_OBJKEY_MAX];
	char canon[SHM_MAX_OBJECT + 1];
	keylist deps = {0};
	MDB_cursor *cur = NULL;
	MDB_val k = *key, v;
	bool direct = false;
	int rc;

	if (key->mv_size <= 16 || key->mv_size > SHM_OBJKEY_MAX)
		return 0; /* not an object key: verify says it */
	shm__object_canon_of((const uint8_t *)key->mv_data + 16,
	                     key->mv_size - 16, canon);
	memcpy(lk, key->mv_data, 16);
	memcpy(lk + 16, canon, key->mv_size - 16);
	MDB_val lkv = {key->mv_size, lk};
	bool same = memcmp(lk, key->mv_data, key->mv_size) == 0;

	if (!same) {
		rc = mdb_get(w->txn, env->obj, &lkv, &v);
		if (rc == 0) { /* declared since: it stands */
			out->dropped++;
			return shm__object_forget_w(w, key->mv_data,
			                            key->mv_size);
		}
		if (rc != MDB_NOTFOUND)
			return shm__err_mdb(rc, "upgrade: read obj");
	}
	rc = mdb_get(w->txn, env->obj, &k, &v);
	if (rc == 0)
		direct = v.mv_size >= 1 && ((uint8_t *)v.mv_data)[0];
	else if (rc != MDB_NOTFOUND)
		return shm__err_mdb(rc, "upgrade: read obj");
	direct |= shm__object_is_website(canon, key->mv_size - 16);
	if ((rc = mdb_cursor_open(w->txn, env->dep, &cur)))
		return shm__err_mdb(rc, "upgrade: cursor");
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_KEY); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT_DUP)) {
		char d[SHM_MAX_OBJECT + 1];
		shm__object_canon_of(v.mv_data, v.mv_size, d);
		if (strcmp(d, canon) == 0) /* graph.c invariant 4 */
			continue;
		if ((rc = keylist_add(&deps, d, strlen(d) + 1)))
			break;
	}
	mdb_cursor_close(cur);
	if (rc == ENOMEM) {
		rc = shm__err(rc, "upgrade: dependency list");
		goto out;
	}
	if (rc != MDB_NOTFOUND) {
		rc = shm__err_mdb(rc, "upgrade: read dep");
		goto out;
	}
	char **names = malloc((deps.n ? deps.n : 1) * sizeof *names);
	if (!names) {
		rc = shm__err(ENOMEM, "upgrade: dependency list");
		goto out;
	}
	for (size_t i = 0; i < deps.n; i++)
		names[i] = deps.v[i].mv_data;
	if ((same || (rc = shm__object_forget_w(w, key->mv_data,
	                                        key->mv_size)) == 0) &&
	    (rc = shm__deps_set_w(w, lk, key->mv_size, direct, names,
	                          deps.n)) == 0)
		out->declared++;
	free(names);
out:
	keylist_free(&deps);
	return rc;
}

static int upgrade_body(shm__wtxn *w, void *ctx)
{
	shm__upgraded *out = ctx;
	shm_env *env = w->env;
	keylist graph = {0}, statics = {0}, marks = {0};
	int rc;

	memset(out, 0, sizeof *out);
	if ((rc = collect(w, env->obj, &graph)) ||
	    (rc = collect(w, env->dep, &graph)) ||
	    (rc = collect(w, env->stat, &statics)) ||
	    (rc = collect(w, env->mark, &marks)))
		goto out;
	keylist_unique(&graph); /* a key of obj and dep: done once */
	for (size_t i = 0; i < graph.n && !rc; i++)
		rc = redeclare(w, &graph.v[i], out);
	for (size_t i = 0; i < statics.n && !rc; i++) {
		bool existed;
		rc = shm__static_bust_w(w, statics.v[i].mv_data,
		                        statics.v[i].mv_size, &existed);
		out->statics++;
	}
	for (size_t i = 0; i < marks.n && !rc; i++) {
		rc = mdb_del(w->txn, env->mark, &marks.v[i], NULL);
		rc = rc ? shm__err_mdb(rc, "upgrade: drop mark") : 0;
		out->marks++;
	}
out:
	keylist_free(&graph);
	keylist_free(&statics);
	keylist_free(&marks);
	return rc;
}

int shm__upgrade(shm_env *env, shm__upgraded *out)
{
	return shm__write(env, upgrade_body, out);
}
