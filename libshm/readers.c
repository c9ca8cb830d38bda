/*
 * libshm/readers.c - read transactions: their pool, LMDB's reader slots,
 * the snapshots they hold and what those keep from reuse (free pages, the
 * map's reserve).
 *
 * Invariant (one of the environment's, numbered with env.c's)
 *  4. Pooled read transactions are reset (hold no snapshot, no reader slot
 *     pinned to an old page) while in the pool.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* A pooled transaction renewed, or a new one; inside the gate. */
static int rtxn_begin(shm_env *env, MDB_txn **txn)
{
	MDB_txn *t = NULL;
	int rc;

	for (size_t i = 0; !t && i < SHM_RPOOL; i++)
		t = __atomic_exchange_n(&env->rpool[i], NULL, __ATOMIC_ACQUIRE);
	if (t) {
		if ((rc = mdb_txn_renew(t)) == 0) {
			*txn = t;
			return 0;
		}
		mdb_txn_abort(t);
	}
	return mdb_txn_begin(env->mdb, NULL, MDB_RDONLY, txn);
}

int shm__rtxn_get(shm_env *env, MDB_txn **txn)
{
	int rc;

	if ((rc = shm__gate_enter(env)))
		return rc;
	if ((rc = rtxn_begin(env, txn)) == MDB_MAP_RESIZED) {
		shm__gate_leave(env);
		if ((rc = shm__map_adopt(env, "begin read transaction")) ||
		    (rc = shm__gate_enter(env)))
			return rc;
		rc = rtxn_begin(env, txn);
	}
	if (rc) {
		shm__gate_leave(env);
		return shm__err_mdb(rc, "begin read transaction");
	}
	return 0;
}

void shm__rtxn_put(shm_env *env, MDB_txn *txn)
{
	mdb_txn_reset(txn);
	shm__gate_leave(env); /* a reset transaction reads no page */
	for (size_t i = 0; i < SHM_RPOOL; i++) {
		MDB_txn *empty = NULL;
		if (__atomic_compare_exchange_n(&env->rpool[i], &empty, txn, false,
		                                __ATOMIC_RELEASE,
		                                __ATOMIC_RELAXED))
			return;
	}
	mdb_txn_abort(txn);
}

int shm_env_reader_check(shm_env *env, int *cleared)
{
	int dead = 0, rc;

	if (cleared)
		*cleared = 0;
	if (!env)
		return shm__null(__func__, "env");
	if ((rc = shm__forked(env)))
		return rc;
	if ((rc = mdb_reader_check(env->mdb, &dead)))
		return shm__err_mdb(rc, "reader check");
	if (cleared)
		*cleared = dead;
	return 0;
}

struct readers_walk {
	shm__reader_fn *fn;
	void *user;
};

/* mdb_reader_list's lines: a header, then one per slot in use, "pid thread
 * txnid" (txnid "-" for none), or "(no active readers)". */
static int reader_line(const char *line, void *ctx)
{
	struct readers_walk *r = ctx;
	char txnid[32];
	size_t tid;
	int pid;

	if (sscanf(line, "%d %zx %31s", &pid, &tid, txnid) != 3)
		return 0;
	return r->fn(pid, tid, strtoull(txnid, NULL, 10), r->user);
}

int shm__readers(shm_env *env, shm__reader_fn *fn, void *user)
{
	struct readers_walk r = {fn, user};

	return mdb_reader_list(env->mdb, reader_line, &r);
}

static int oldest_reader(int pid, size_t thread, size_t txnid, void *ctx)
{
	shm__snapshot *o = ctx;

	if (txnid && (!o->pid || txnid < o->txnid)) {
		o->pid = pid;
		o->txnid = txnid;
	}
	return 0;
}

/* *pages: the pages on LMDB's free list in txn's snapshot that transaction
 * from or a later one freed. The free list is dbi 0 (read as mdb_stat -f
 * does): key the id of the transaction that freed the pages, value their
 * count then their numbers. */
int shm__free_pages(MDB_txn *txn, size_t from, size_t *pages)
{
	MDB_cursor *cur;
	MDB_val k = {sizeof from, &from}, v;
	size_t n;
	int rc;

	*pages = 0;
	if ((rc = mdb_cursor_open(txn, 0, &cur)))
		return shm__err_mdb(rc, "read LMDB's free list");
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (v.mv_size < sizeof n)
			continue;
		memcpy(&n, v.mv_data, sizeof n);
		*pages += n;
	}
	mdb_cursor_close(cur);
	if (rc == MDB_NOTFOUND)
		return 0;
	return shm__err_mdb(rc, "read LMDB's free list");
}

bool shm__map_has_reserve(shm_env *env, size_t most)
{
	MDB_envinfo ei;
	MDB_stat st;
	MDB_cursor *cur;
	MDB_txn *txn;
	MDB_val k, v;
	size_t n;

	mdb_env_info(env->mdb, &ei);
	mdb_env_stat(env->mdb, &st);
	size_t pages = ei.me_mapsize / st.ms_psize;
	size_t want = pages / 8 < most ? pages / 8 : most;
	/* pages never used yet, then those on the free list */
	size_t room = pages - (ei.me_last_pgno + 1);
	if (room >= want)
		return true;
	/* LMDB reads its free list in a read transaction only */
	if (shm__rtxn_get(env, &txn))
		return true; /* cannot tell: nothing refused for that */
	if (mdb_cursor_open(txn, 0, &cur)) {
		shm__rtxn_put(env, txn);
		return true;
	}
	for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
	     rc == 0 && room < want;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		size_t id;
		memcpy(&id, k.mv_data, sizeof id);
		if (id >= ei.me_last_txnid || v.mv_size < sizeof n)
			break; /* the last commit's: not reused yet */
		memcpy(&n, v.mv_data, sizeof n);
		room += n;
	}
	mdb_cursor_close(cur);
	shm__rtxn_put(env, txn);
	return room >= want;
}

int shm__oldest_snapshot(shm_env *env, shm__snapshot *out)
{
	MDB_envinfo ei;
	MDB_stat st;
	MDB_txn *txn;
	size_t pages;
	int rc;

	memset(out, 0, sizeof *out);
	shm__readers(env, oldest_reader, out);
	if (!out->pid)
		return 0;
	if ((rc = shm__rtxn_get(env, &txn)))
		return rc;
	/* read in the gate: they read LMDB's meta page, in the map */
	mdb_env_info(env->mdb, &ei);
	mdb_env_stat(env->mdb, &st);
	out->age = ei.me_last_txnid - out->txnid;
	/* those freed from the snapshot's own transaction on wait for it */
	rc = shm__free_pages(txn, out->txnid, &pages);
	shm__rtxn_put(env, txn);
	out->pinned = pages * st.ms_psize;
	return rc;
}
