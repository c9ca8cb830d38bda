/*
 * libshm/wtxn.c - the one way libshm writes: a body run inside an LMDB write
 * transaction that also carries the log's next sequence number; and the
 * named values of the meta database.
 *
 * Invariants
 *  1. meta "next_seq" is read at begin and written back at commit in the
 *     same transaction, so sequence numbers are unique and increasing
 *     across processes (LMDB serialises writers).
 *  2. A body that fails leaves nothing behind: the transaction is aborted.
 *  3. When the map is full, flushed entries are evicted to make room, in
 *     transactions of their own (fewer at a time when even the eviction
 *     finds no page), until the write fits or none is left; unflushed
 *     work is never touched, the write then fails with SHM_EFULL. LMDB
 *     reuses the pages a transaction frees only from the second
 *     transaction after it, and a failed write commits nothing: one more
 *     commit (settle_body) comes between each eviction and the retry.
 *  4. Before that, a map smaller than the size stored in the environment
 *     (another process opened it with a larger map_size, and no page is
 *     past this map yet, so LMDB says nothing) is replaced by one of the
 *     stored size (gate.c invariant 6) and the write tried again: a full
 *     map of this process is not a full environment.
 *  5. A transaction that filled in created_at times (msg.c invariant 4)
 *     keeps the writers' lock until the clock has passed the last of
 *     them, so the next writer's clock reading, taken under the lock,
 *     comes after every time filled in before it.
 *  6. A write that will wait for PostgreSQL (shm__write_seqs in
 *     write-through mode) sets meta "sink.pg.awaited" to its last record's
 *     seq in its own transaction, so the mark exists iff the records do,
 *     and whoever reads those records sees it too. The flusher's pg
 *     worker closes a batch at once when it holds that seq (flusher/
 *     worker.c invariant 5). The value only grows (seqs do, and writers
 *     are serialised): it is the highest seq ever awaited, not a count of
 *     waiters, so nothing is left to undo when a waiter dies. A mark whose
 *     waiter is gone or done lies at or below the sink's position once
 *     its record is applied, and then closes nothing.
 *  7. A write that adds (appends a log record, or leaves L1 more entries
 *     than it found) commits only while the map, as the last commit left
 *     it, has its reserve free (shm__map_has_reserve: the pages this
 *     transaction took are not counted, so one commit may eat into the
 *     reserve by its own size; the next adding write is refused); else it
 *     fails as a full map does (invariant 3). The reserve is the
 *     housekeeping's: trims, evictions, the flusher's
 *     positions and dead letters. Every commit needs a few new pages,
 *     LMDB reuses those a commit frees only from the second transaction
 *     after it, and a map that writers filled to its last page left no
 *     room to record what the flusher applied, trim the log or evict: no
 *     commit fitted again, for good.
 *  8. A commit that LMDB cannot write into data.mdb (a full disk, a file
 *     size limit) stores nothing: LMDB writes the meta page, which makes a
 *     commit, only after every page of it; the pages written past the old
 *     end lie beyond the last page the meta page names, and are written
 *     over by the next commit that grows the file. The write fails,
 *     naming the file and the cause (commit_unwritten); the handle and
 *     the environment stay usable, and writes work again once there is
 *     room.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "internal.h"

int shm__meta_get(MDB_txn *txn, shm_env *env, const char *name, uint64_t *v)
{
	MDB_val k = {strlen(name), (void *)name}, d;
	int rc = mdb_get(txn, env->meta, &k, &d);

	if (rc == MDB_NOTFOUND) {
		*v = 0;
		return 0;
	}
	if (rc)
		return shm__err_mdb(rc, name);
	if (d.mv_size != 8)
		return shm__err(SHM_ECORRUPT, "meta '%s': %zu byte%s, expected 8",
		                name, d.mv_size, shm__plural(d.mv_size));
	memcpy(v, d.mv_data, 8);
	return 0;
}

int shm__meta_put(MDB_txn *txn, shm_env *env, const char *name, uint64_t v)
{
	MDB_val k = {strlen(name), (void *)name}, d = {8, &v};
	int rc = mdb_put(txn, env->meta, &k, &d, 0);
	return rc == MDB_MAP_FULL ? rc : rc ? shm__err_mdb(rc, name) : 0;
}

/* The gate (gate.c invariant 6), then the writers' lock, then LMDB's
 * transaction; wtxn_end undoes the first two. An error is said. */
static int wtxn_open(shm_env *env, MDB_txn **txn)
{
	int rc;

	if ((rc = shm__gate_enter(env)))
		return rc;
	if ((rc = shm__wlock_acquire(env))) {
		shm__gate_leave(env);
		return rc;
	}
	if ((rc = mdb_txn_begin(env->mdb, NULL, 0, txn))) {
		shm__wlock_release(env);
		shm__gate_leave(env);
		return shm__err_mdb(rc, "begin write transaction");
	}
	return 0;
}

static void wtxn_end(shm_env *env)
{
	shm__wlock_release(env);
	shm__gate_leave(env);
}

static int wtxn_begin(shm_env *env, shm__wtxn *w)
{
	int rc;

	memset(w, 0, sizeof *w);
	w->env = env;
	if (env->opt.read_only)
		return shm__err(SHM_EREADONLY, "%s: opened read-only",
		                env->path_shown);
	/* another process grew the map: adopted with no lock held */
	if ((rc = wtxn_open(env, &w->txn)) == MDB_MAP_RESIZED &&
	    !(rc = shm__map_adopt(env, "begin write transaction")))
		rc = wtxn_open(env, &w->txn);
	if (rc)
		return rc;
	w->now = shm_now_us();
	if ((rc = shm__meta_get(w->txn, env, "next_seq", &w->next_seq)) ||
	    (rc = shm__meta_get(w->txn, env, "flushed", &w->flushed)) ||
	    (rc = shm__meta_get(w->txn, env, "entries", &w->entries)) ||
	    (rc = shm__meta_get(w->txn, env, "bytes", &w->bytes))) {
		mdb_txn_abort(w->txn);
		wtxn_end(env);
		return rc;
	}
	w->begin_seq = w->next_seq;
	w->begin_entries = w->entries;
	return 0;
}

/* Invariant 5: waits, the lock held, until the clock reads later than
 * w->filled_until. A write takes more than a microsecond per message, so
 * this is almost always passed already; a clock stepped back waits no
 * longer than the microseconds the transaction filled in. */
static void clock_pass(const shm__wtxn *w)
{
	uint64_t until = shm__mono_ns() +
	                 (uint64_t)(w->filled_until - w->now + 1) * 1000;

	while (shm_now_us() <= w->filled_until && shm__mono_ns() < until)
		;
}

/* A commit LMDB could not write into data.mdb (invariant 8): said naming
 * the file and the cause, where it can be told: a full disk (ENOSPC; a
 * write that filled it came back short, which LMDB reports as EIO), this
 * process's file size limit (EFBIG, or EIO at the limit), a quota. */
static int commit_unwritten(shm_env *env, int rc)
{
	char data[4200];
	struct rlimit rl;
	struct statvfs fs;
	struct stat st;
	bool limit;

	if (rc != ENOSPC && rc != EFBIG && rc != EDQUOT && rc != EIO)
		return shm__err_mdb(rc, "commit");
	snprintf(data, sizeof data, "%s/data.mdb", env->path);
	limit = getrlimit(RLIMIT_FSIZE, &rl) == 0 &&
	        rl.rlim_cur != RLIM_INFINITY && stat(data, &st) == 0 &&
	        (uint64_t)st.st_size >= rl.rlim_cur;
	if (rc == EFBIG || (rc == EIO && limit))
		return shm__err(EFBIG, "%s/data.mdb: commit not written, "
		                "nothing of it stored: the file cannot grow past "
		                "%llu byte%s, this process's file size limit "
		                "(ulimit -f)", env->path_shown,
		                (unsigned long long)rl.rlim_cur,
		                shm__plural(rl.rlim_cur));
	if (rc == EDQUOT)
		return shm__err(rc, "%s/data.mdb: commit not written, nothing "
		                "of it stored: the disk quota of this user is "
		                "used up", env->path_shown);
	unsigned long long avail = 0;
	bool have = statvfs(env->path, &fs) == 0;
	if (have) /* root may use the blocks reserved for it */
		avail = (unsigned long long)(geteuid() == 0 ? fs.f_bfree
		                                            : fs.f_bavail) *
		        fs.f_frsize;
	if (rc == ENOSPC || (have && avail < (1u << 20)))
		return shm__err(ENOSPC, "%s/data.mdb: commit not written, "
		                "nothing of it stored: the disk is full (%llu "
		                "byte%s free on its file system); free some "
		                "space, then write again", env->path_shown,
		                avail, shm__plural(avail));
	return shm__err(rc, "%s/data.mdb: commit not written, nothing of it "
	                "stored", env->path_shown);
}

/* Invariant 7: the reserve, in pages (an eighth of a smaller map). */
#define RESERVE_PAGES 64

static int wtxn_commit(shm__wtxn *w)
{
	int rc = 0;

	if ((w->next_seq != w->begin_seq || w->entries > w->begin_entries) &&
	    !shm__map_has_reserve(w->env, RESERVE_PAGES))
		rc = MDB_MAP_FULL; /* invariant 7 */
	if (!rc && w->next_seq != w->begin_seq)
		rc = shm__meta_put(w->txn, w->env, "next_seq", w->next_seq);
	if (!rc && w->awaited && w->next_seq != w->begin_seq) /* invariant 6 */
		rc = shm__meta_put(w->txn, w->env, SHM_META_PG_AWAITED,
		                   w->next_seq - 1);
	if (!rc && w->counts_dirty &&
	    !(rc = shm__meta_put(w->txn, w->env, "entries", w->entries)))
		rc = shm__meta_put(w->txn, w->env, "bytes", w->bytes);
	if (rc) {
		mdb_txn_abort(w->txn);
		return rc;
	}
	rc = mdb_txn_commit(w->txn);
	if (rc)
		return rc == MDB_MAP_FULL ? rc : commit_unwritten(w->env, rc);
	if (w->filled_until)
		clock_pass(w);
	if (w->next_seq != w->begin_seq) {
		__atomic_store_n(&w->env->sw->next_seq_hint, w->next_seq,
		                 __ATOMIC_RELEASE);
		shm__log_wake(w->env);
	}
	if (w->evicted)
		SHM__COUNT(w->env, evictions, w->evicted);
	if (w->expired)
		SHM__COUNT(w->env, expirations, w->expired);
	shm__publish(w->env);
	return 0;
}

/* Runs fn in one transaction; *seqs gets the records it appended,
 * [first, next) (first == next: none). awaited: they will be waited for
 * (invariant 6). */
static int run_once(shm_env *env, shm__write_fn fn, void *ctx,
                    uint64_t seqs[2], bool awaited)
{
	shm__wtxn w;
	int rc;

	if ((rc = wtxn_begin(env, &w)))
		return rc;
	w.awaited = awaited;
	rc = fn(&w, ctx);
	if (rc)
		mdb_txn_abort(w.txn);
	else
		rc = wtxn_commit(&w);
	seqs[0] = w.begin_seq;
	seqs[1] = w.next_seq;
	wtxn_end(env);
	free(w.buf);
	return rc;
}

#define EVICT_MAX 1024 /* entries evicted in one transaction at most */

struct evict {
	uint64_t max;     /* entries evicted in the next one at most */
	uint64_t evicted; /* by the last one */
};

static int evict_body(shm__wtxn *w, void *ctx)
{
	struct evict *e = ctx;

	e->evicted = 0;
	return shm__l1_evict(w, e->max, &e->evicted);
}

/* Invariant 3: a commit that changes nothing but makes LMDB's next
 * transaction the second one after the commit before it. */
static int settle_body(shm__wtxn *w, void *ctx)
{
	(void)ctx;
	return shm__meta_put(w->txn, w->env, "entries", w->entries);
}

/* Invariant 3: evicts flushed entries in a transaction of its own, fewer
 * at a time when even the eviction finds no page (and once, after a
 * settling commit, for the pages the last commit freed), then settles so
 * that the next transaction may take the pages freed. 0 once some are
 * evicted; MDB_MAP_FULL if none is flushed or none can be evicted. */
static int evict_some(shm_env *env, struct evict *e)
{
	uint64_t none[2];
	bool settled = false;
	int rc;

	for (;;) {
		rc = run_once(env, evict_body, e, none, false);
		if (rc != MDB_MAP_FULL)
			break;
		if (e->max > 1) {
			e->max /= 2;
		} else if (!settled) {
			settled = true;
			if ((rc = run_once(env, settle_body, NULL, none, false)))
				return rc;
		} else {
			return rc;
		}
	}
	if (rc)
		return rc;
	if (e->evicted == 0)
		return MDB_MAP_FULL;
	if (e->max < EVICT_MAX)
		e->max *= 2; /* it fitted: more at once next time */
	return run_once(env, settle_body, NULL, none, false);
}

/* SHM_EFULL for a full map, naming its cause: a read snapshot that keeps a
 * quarter of the map or more from reuse, held by a live process or left in
 * the slot of a dead one, else the unflushed log. The log's record count is
 * all it holds: with the map full the flusher may have applied more than it
 * could record. */
static int map_full(shm_env *env)
{
	shm__snapshot o;
	shm_info in;

	shm_env_info(env, &in);
	if (shm__oldest_snapshot(env, &o) || !o.pid ||
	    o.pinned < in.map_size / 4)
		return shm__err(SHM_EFULL,
		                "map of %zu bytes is full of unflushed work: the "
		                "log holds %llu records, flushed position %llu; "
		                "is shm-flusher running?",
		                in.map_size, (unsigned long long)in.log_records,
		                (unsigned long long)in.flushed);
	bool gone = kill(o.pid, 0) == -1 && errno == ESRCH;
	return shm__err(SHM_EFULL,
	                "map of %zu bytes is full: pid %d %s snapshot %zu "
	                "transactions old, and the %zu bytes of pages freed "
	                "since cannot be reused until it ends (%s); the log "
	                "holds %llu records, flushed position %llu",
	                in.map_size, o.pid,
	                gone ? "is gone but its reader slot keeps a"
	                     : "holds a read",
	                o.age, o.pinned,
	                gone ? "'shmctl readers --clear-stale', or any "
	                       "read-write open, frees dead processes' slots"
	                     : "a stopped 'shmctl ... | less'? 'shmctl "
	                       "readers' lists readers",
	                (unsigned long long)in.log_records,
	                (unsigned long long)in.flushed);
}

static int write_seqs(shm_env *env, shm__write_fn fn, void *ctx,
                      uint64_t seqs[2], bool awaited)
{
	struct evict e = {.max = EVICT_MAX};
	int rc = run_once(env, fn, ctx, seqs, awaited);

	if (rc != MDB_MAP_FULL)
		return rc;
	/* invariant 4: the environment's own size before any eviction; an
	 * adoption that cannot be done now (this thread holds a transaction)
	 * leaves the eviction to make room */
	if (shm__map_adopt_stored(env, "write") == 0 &&
	    (rc = run_once(env, fn, ctx, seqs, awaited)) != MDB_MAP_FULL)
		return rc;
	/* invariant 3: until the write fits or no flushed entry is left */
	while ((rc = evict_some(env, &e)) == 0 &&
	       (rc = run_once(env, fn, ctx, seqs, awaited)) == MDB_MAP_FULL)
		;
	if (rc == MDB_MAP_FULL) {
		SHM__COUNT(env, writes_failed_full, 1);
		return map_full(env);
	}
	return rc;
}

int shm__write(shm_env *env, shm__write_fn fn, void *ctx)
{
	uint64_t seqs[2];
	return write_seqs(env, fn, ctx, seqs, false);
}

int shm__write_seqs(shm_env *env, shm__write_fn fn, void *ctx,
                    uint64_t seqs[2])
{
	return write_seqs(env, fn, ctx, seqs,
	                  env->opt.write_mode == SHM_WRITE_THROUGH);
}

/* A meta name shm_meta_get and shm_meta_set take: 1..200 bytes. */
static int meta_name_check(const char *name)
{
	char shown[SHM__SHOWN_MAX];

	if (!*name || strlen(name) > 200)
		return shm__err(SHM_EINVAL, "meta name '%s': not 1..200 bytes",
		                shm__shown_str(name, shown));
	return 0;
}

int shm_meta_get(shm_env *env, const char *name, uint64_t *value)
{
	MDB_txn *txn;
	int rc;

	if (value)
		*value = 0;
	if (!env)
		return shm__null(__func__, "env");
	if (!name)
		return shm__null(__func__, "name");
	if (!value)
		return shm__null(__func__, "value");
	if ((rc = meta_name_check(name)))
		return rc;
	if ((rc = shm__rtxn_get(env, &txn)))
		return rc;
	rc = shm__meta_get(txn, env, name, value);
	shm__rtxn_put(env, txn);
	return rc;
}

struct meta_set {
	const char *const *names;
	const uint64_t *values;
	size_t n;
};

static int meta_set_body(shm__wtxn *w, void *ctx)
{
	struct meta_set *m = ctx;
	char shown[SHM__SHOWN_MAX];
	int rc = 0;

	for (size_t i = 0; i < m->n && !rc; i++) {
		if ((rc = meta_name_check(m->names[i])))
			return rc;
		if (!strchr(m->names[i], '.')) /* shm_log.h */
			return shm__err(SHM_EINVAL, "meta name '%s': libshm's "
			                "own (a name without a dot: format, "
			                "next_seq, flushed...), not set by "
			                "shm_meta_set",
			                shm__shown_str(m->names[i], shown));
		rc = shm__meta_put(w->txn, w->env, m->names[i], m->values[i]);
	}
	return rc;
}

int shm_meta_set_many(shm_env *env, const char *const *names,
                      const uint64_t *values, size_t n)
{
	struct meta_set m = {names, values, n};

	if (!env)
		return shm__null(__func__, "env");
	if (!names && n)
		return shm__null(__func__, "names");
	if (!values && n)
		return shm__null(__func__, "values");
	for (size_t i = 0; i < n; i++)
		if (!names[i])
			return shm__err(SHM_EINVAL, "%s: NULL names[%zu]",
			                __func__, i);
	return shm__write(env, meta_set_body, &m);
}

int shm_meta_set(shm_env *env, const char *name, uint64_t value)
{
	if (!env)
		return shm__null(__func__, "env");
	if (!name)
		return shm__null(__func__, "name");
	return shm_meta_set_many(env, &name, &value, 1);
}

int shm_meta_each(shm_env *env, const char *prefix,
                  void (*fn)(const char *name, uint64_t value, void *user),
                  void *user)
{
	size_t plen = prefix ? strlen(prefix) : 0;
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k = {plen, (void *)prefix}, d;
	char name[256];
	int rc;

	if (!env)
		return shm__null(__func__, "env");
	if (!prefix)
		return shm__null(__func__, "prefix");
	if (!fn)
		return shm__null(__func__, "fn");
	if ((rc = shm__rtxn_get(env, &txn)))
		return rc;
	if ((rc = mdb_cursor_open(txn, env->meta, &cur))) {
		shm__rtxn_put(env, txn);
		return shm__err_mdb(rc, "meta cursor");
	}
	for (rc = mdb_cursor_get(cur, &k, &d, plen ? MDB_SET_RANGE : MDB_FIRST);
	     rc == 0; rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT)) {
		uint64_t v;
		if (k.mv_size < plen || memcmp(k.mv_data, prefix, plen) != 0)
			break;
		if (k.mv_size >= sizeof name || d.mv_size != 8)
			continue;
		memcpy(name, k.mv_data, k.mv_size);
		name[k.mv_size] = '\0';
		memcpy(&v, d.mv_data, 8);
		fn(name, v, user);
	}
	mdb_cursor_close(cur);
	shm__rtxn_put(env, txn);
	return rc == MDB_NOTFOUND ? 0 : shm__err_mdb(rc, "meta scan");
}

int shm__wait_through(shm_env *env, const uint64_t seqs[2])
{
	uint64_t deadline, applied = 0, last = seqs[1] - 1, bad[2];
	char also[160] = "";
	shm_dead d;
	int rc;

	if (env->opt.write_mode != SHM_WRITE_THROUGH || seqs[1] <= seqs[0])
		return 0;
	deadline = shm__mono_ns() +
	           (uint64_t)env->opt.write_through_timeout_ms * 1000000ull;
	/* the flusher wakes the log's word when it records its position */
	uint32_t seen = shm__log_word(env);
	for (;;) {
		if ((rc = shm_meta_get(env, SHM_META_PG_APPLIED, &applied)))
			return rc;
		if (applied >= last)
			break;
		uint64_t now = shm__mono_ns();
		if (now >= deadline)
			return shm__err(SHM_ETIMEDOUT,
			                "write-through: record %llu is in L1 but "
			                "PostgreSQL applied only up to %llu after "
			                "%u ms: is shm-flusher running with --pg?",
			                (unsigned long long)last,
			                (unsigned long long)applied,
			                env->opt.write_through_timeout_ms);
		shm__log_sleep(env, &seen, deadline - now);
	}
	/* past it, but a record PostgreSQL refused is a dead letter, not a
	 * row: the flusher sets it aside before it moves its position; one
	 * that does not decode may be such a refusal (dead.c invariant 3) */
	rc = shm__dead_of_sink(env, seqs[0], last, "pg", &d, bad);
	if (rc && rc != SHM_ENOTFOUND)
		return rc;
	if (bad[0] == 1)
		snprintf(also, sizeof also, "the dead letter of record %llu does "
		         "not decode", (unsigned long long)bad[1]);
	else if (bad[0])
		snprintf(also, sizeof also, "%llu dead letters of this write, "
		         "the first of record %llu, do not decode",
		         (unsigned long long)bad[0], (unsigned long long)bad[1]);
	if (rc == 0)
		return shm__err(SHM_EL3, "write-through: PostgreSQL refused "
		                "record %llu, set aside as a dead letter (shmctl "
		                "log --dead): %s%s%s", (unsigned long long)d.seq,
		                d.reason, bad[0] ? "; and " : "", also);
	if (bad[0])
		return shm__err(SHM_ECORRUPT, "write-through: PostgreSQL is past "
		                "record %llu, but %s: whether it refused it is "
		                "unknown (shmctl log --dead)",
		                (unsigned long long)last, also);
	return 0;
}
