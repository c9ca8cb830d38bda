/*
 * libshm/env.c - opening and closing an environment directory, its LMDB
 * databases, the format check, the pool of read transactions and what the
 * readers' snapshots keep from reuse.
 *
 * Invariants
 *  1. meta "format" equals SHM_FORMAT_VERSION in every environment this
 *     version opens; anything else is refused with SHM_EVERSION.
 *  2. Only an empty map (no key in LMDB's main database) is made an shm
 *     environment; any other LMDB environment without our format is
 *     refused before anything is written in it or next to it.
 *  3. A data file cut short (a bad copy or restore, a full disk) is
 *     refused with SHM_ECORRUPT at open, before LMDB reads a page that may
 *     be missing: one read through the map kills the process with SIGBUS.
 *     Caught: a file with fewer pages than its databases have in use
 *     (counted from the meta page before any other page is read, every
 *     database's once they are open), or one that ends before the root of
 *     LMDB's free list, of the main database or of one of ours, as the
 *     meta page of the snapshot checked names them (LMDB 0.9's format,
 *     drawn above shm__lmdb_meta_read; a file that does not look like it
 *     gets the counts alone). A commit writes a new root for each tree it
 *     changes, so roots are among the newest pages and a cut at the tail
 *     usually takes one. Not caught: a cut that spares every root and as
 *     many pages as are in use (LMDB's free pages are interspersed, the
 *     count cannot see which are gone); the process dies by SIGBUS at its
 *     first read of a lost interior page. Pages below the roots are not
 *     looked for: that would be a walk of every tree. A file that ends
 *     inside LMDB's two meta pages, or with one of them not written, LMDB
 *     itself refuses (MDB_INVALID); shm__not_lmdb says which, SHM_ECORRUPT.
 *  4. Pooled read transactions are reset (hold no snapshot, no reader slot
 *     pinned to an old page) while in the pool.
 *  5. An environment opened read-write has meta SHM__ROOM_FLOOR: set at its
 *     creation (or at its first read-write open by a version that keeps
 *     one) to that time, room.c invariant 2.
 *  6. The map is replaced only while no transaction of the handle is in
 *     progress. Another process may grow the map (a larger map_size, stored
 *     at its first commit); once pages past this process's map are in use,
 *     LMDB fails our next begin with MDB_MAP_RESIZED, and mdb_env_set_mapsize
 *     (0) maps the new size: it unmaps the old map, which a transaction of
 *     another thread may be reading (LMDB does not check). So every
 *     transaction is begun and ended inside the handle's gate (a count of
 *     those in progress, internal.h), and shm__map_adopt replaces the map
 *     when the count is 0, new transactions held back meanwhile: those of a
 *     thread that holds none wait from the moment an adoption is pending,
 *     those nested in one go on (their thread must reach the end of its
 *     transactions), every one once the map is being replaced. A reset
 *     transaction (the pool, invariant 4) reads nothing of the map and does
 *     not count. The thread that adopts may hold no transaction; if another
 *     thread's stays open longer than SHM_ADOPT_WAIT_MS, or the new map
 *     cannot be mapped, the call fails with MDB_MAP_RESIZED (the next one
 *     tries again) or, map lost, MDB_PANIC from then on. While opening, the
 *     handle is not shared yet: it adopts without the gate. A write that
 *     finds this map full adopts the same way the size stored in the
 *     environment, read from its newest meta page, if it is larger
 *     (shm__map_adopt_stored): LMDB says nothing until pages pass this map.
 *  7. A child of fork() owns none of the handle it inherited (shm.h's fork
 *     rule): its pooled read transactions hold the parent's reader slots,
 *     its server connections the parent's sessions, its counts not yet
 *     published the parent's reads. shm_env_close there frees the child's
 *     memory and mappings only: an abort of a pooled transaction would free
 *     the parent's slot, which another process may then take and the
 *     parent's next renewal fail on and free again, under that reader's
 *     snapshot; libpq's goodbye on a shared socket would end the parent's
 *     session. The pooled transactions are left (a few hundred bytes).
 *  8. A process has at most one handle open on an environment (lmdb.h's
 *     rule: LMDB's locks on lock.mdb are fcntl locks, the process's, which
 *     a close of any descriptor of that file drops, and mdb_env_close
 *     frees every reader slot of getpid() in the table; without those
 *     locks another process's stale-reader check frees this one's slots
 *     while it reads). A registry of the process's handles, under one
 *     mutex, names each by its directory's st_dev and st_ino (a symlink,
 *     "dir/." or another spelling is the same directory) and its opener's
 *     pid. shm_env_open enters the new handle before it opens or changes
 *     anything of the environment (the directory, if it makes it, is
 *     made first: no handle can be open on one that did not exist), and
 *     fails with SHM_EBUSY if a handle of this process is there;
 *     shm_env_close takes it out only after closing its LMDB handle, so
 *     an open meanwhile cannot take locks the close then drops. A child
 *     of fork() inherits the registry: the parent's entries are not its
 *     handles (another pid), so its own open goes on. Closing an
 *     inherited handle's LMDB handle in a child that has its own open
 *     would drop that one's locks and slots: it is kept, on the child's
 *     own handle, and closed after it. The mutex is held across fork()
 *     (pthread_atfork), so no child inherits it held. libshm's own
 *     files take flock() on a descriptor of their own (flock is the open
 *     file's, not the process's): shm.stats during open only, shm.wlock
 *     a shared one while the handle is open (wlock.c invariant 3); both
 *     are mapped: nothing of one handle there is lost when another
 *     closes.
 *  9. A refused open leaves no lock.mdb it made: when mdb_env_open finds
 *     that data.mdb is not an LMDB file (of this version) and the directory
 *     had no lock.mdb before the call, the one LMDB created is removed,
 *     unless a process has it open (every LMDB opener holds a lock on its
 *     first byte while open). Only then: no other process can open such a
 *     data.mdb either, so none is between opening lock.mdb and locking it
 *     (a failure of this process alone, EACCES or ENOMEM, keeps the file:
 *     removing it under such a process would give the next opener a
 *     second lock file). One that was there before the call is never
 *     removed: another process may use it.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stddef.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "conninfo.h"
#include "internal.h"

void shm_options_init(shm_options *o)
{
	memset(o, 0, sizeof *o); /* map_size 0: the environment's own */
	o->max_readers = SHM_DEFAULT_MAX_READERS;
	o->max_content = 64 * 1024;
	o->durability = SHM_DURABILITY_NOSYNC;
	o->write_mode = SHM_WRITE_BACK;
	o->write_through_timeout_ms = 5000;
	o->l2_timeout_ms = 50;
	o->l3_timeout_ms = 50;
	o->lease_ms = 10000;
	o->lease_wait_ms = 30000;
}

const shm_options *shm_env_options(const shm_env *env)
{
	return env ? &env->opt : NULL;
}

const char *shm_env_path(const shm_env *env)
{
	return env ? env->path : NULL;
}

/* The order of message ids: memcmp's (LMDB's default), inlined. On the
 * first probe of a page it starts loading the whole page, so that the
 * binary search's next probes do not wait for memory one after another.
 * The prefetch is only a hint: 4096 is LMDB's page on x86-64 Linux, and a
 * prefetch of a wrong address costs time, never correctness. */
static __thread uintptr_t cmp_last_page;

int shm__cmp_key16(const MDB_val *a, const MDB_val *b)
{
	uintptr_t page = (uintptr_t)b->mv_data & ~(uintptr_t)4095;
	if (page != cmp_last_page) {
		cmp_last_page = page;
		for (uintptr_t l = page; l < page + 4096; l += 64)
			__builtin_prefetch((const void *)l, 0, 0);
	}
	if (a->mv_size == 16 && b->mv_size == 16) {
		uint64_t x, y;
		memcpy(&x, a->mv_data, 8);
		memcpy(&y, b->mv_data, 8);
		if (x != y)
			return __builtin_bswap64(x) < __builtin_bswap64(y) ? -1 : 1;
		memcpy(&x, (const char *)a->mv_data + 8, 8);
		memcpy(&y, (const char *)b->mv_data + 8, 8);
		if (x != y)
			return __builtin_bswap64(x) < __builtin_bswap64(y) ? -1 : 1;
		return 0;
	}
	size_t n = a->mv_size < b->mv_size ? a->mv_size : b->mv_size;
	int c = memcmp(a->mv_data, b->mv_data, n);
	return c ? c : (a->mv_size > b->mv_size) - (a->mv_size < b->mv_size);
}

const struct shm__db shm__dbs[] = {
	{"meta", offsetof(shm_env, meta), 0},
	{"msg", offsetof(shm_env, msg), 0},
	{"room", offsetof(shm_env, room), 0},
	{"roomwm", offsetof(shm_env, roomwm), 0},
	{"lru", offsetof(shm_env, lru), 0},
	{"log", offsetof(shm_env, log), MDB_INTEGERKEY},
	{"dead", offsetof(shm_env, dead), MDB_INTEGERKEY},
	{"static", offsetof(shm_env, stat), 0},
	{"lease", offsetof(shm_env, lease), 0},
	{"obj", offsetof(shm_env, obj), 0},
	{"dep", offsetof(shm_env, dep), MDB_DUPSORT},
	{"ref", offsetof(shm_env, ref), MDB_DUPSORT},
	{"mark", offsetof(shm_env, mark), 0},
};

/* The policy stored in the environment's meta, one value per option: set by
 * any process that opens with the option non-zero, for every process. */
static const struct {
	const char *name;
	size_t off, size;   /* in shm_options */
	uint64_t dflt;      /* while no process has set it */
} policy[] = {
	{"l1_max_entries", offsetof(shm_options, l1_max_entries), 8,
	 SHM_DEFAULT_L1_MAX_ENTRIES},
	{"l1_max_bytes", offsetof(shm_options, l1_max_bytes), 8,
	 SHM_DEFAULT_L1_MAX_BYTES},
	{"l1_ttl_s", offsetof(shm_options, l1_ttl_s), 4, SHM_DEFAULT_L1_TTL_S},
	{"l2_ttl_s", offsetof(shm_options, l2_ttl_s), 4, SHM_DEFAULT_L2_TTL_S},
	{"compress_threshold", offsetof(shm_options, compress_threshold), 4,
	 SHM_DEFAULT_COMPRESS_THRESHOLD},
};
#define N_POLICY (sizeof policy / sizeof policy[0])

static uint64_t opt_get(const shm_options *o, size_t i)
{
	const char *field = (const char *)o + policy[i].off;
	uint64_t v64;
	uint32_t v32;

	if (policy[i].size == 8) {
		memcpy(&v64, field, 8);
		return v64;
	}
	memcpy(&v32, field, 4);
	return v32;
}

static void opt_set(shm_options *o, size_t i, uint64_t v)
{
	char *field = (char *)o + policy[i].off;
	uint32_t v32 = (uint32_t)v;

	if (policy[i].size == 8)
		memcpy(field, &v, 8);
	else
		memcpy(field, &v32, 4);
}

/* The policy as this handle sees it at open: an option set (non-zero) is
 * stored for every process; an option left at 0 takes the stored value, or
 * the default in an environment that has none. */
static int policy_open(MDB_txn *txn, shm_env *env)
{
	int rc;

	for (size_t i = 0; i < N_POLICY; i++) {
		uint64_t want = opt_get(&env->opt, i), stored;
		if ((rc = shm__meta_get(txn, env, policy[i].name, &stored)))
			return rc;
		if (want && want != stored && !env->opt.read_only &&
		    (rc = shm__meta_put(txn, env, policy[i].name, want)))
			return rc;
		opt_set(&env->opt, i, want ? want : stored ? stored : policy[i].dflt);
	}
	return 0;
}

int shm_policy_get(shm_env *env, shm_policy *out)
{
	shm_options o;
	MDB_txn *txn;
	uint64_t v = 0;
	int rc;

	if (out)
		memset(out, 0, sizeof *out);
	if (!env)
		return shm__null(__func__, "env");
	if (!out)
		return shm__null(__func__, "out");
	if ((rc = shm__rtxn_get(env, &txn)))
		return rc;
	for (size_t i = 0; i < N_POLICY && !rc; i++)
		if (!(rc = shm__meta_get(txn, env, policy[i].name, &v)))
			opt_set(&o, i, v ? v : policy[i].dflt);
	shm__rtxn_put(env, txn);
	if (rc)
		return rc;
	out->l1_max_entries = o.l1_max_entries;
	out->l1_max_bytes = o.l1_max_bytes;
	out->l1_ttl_s = o.l1_ttl_s;
	out->l2_ttl_s = o.l2_ttl_s;
	out->compress_threshold = o.compress_threshold;
	return 0;
}

int shm__policy_read(shm__wtxn *w)
{
	uint64_t v;
	int rc;

	if (w->policy_read)
		return 0;
	if ((rc = shm__meta_get(w->txn, w->env, "l1_max_entries", &v)))
		return rc;
	w->max_entries = v ? v : SHM_DEFAULT_L1_MAX_ENTRIES;
	if ((rc = shm__meta_get(w->txn, w->env, "l1_max_bytes", &v)))
		return rc;
	w->max_bytes = v ? v : SHM_DEFAULT_L1_MAX_BYTES;
	if ((rc = shm__meta_get(w->txn, w->env, "l1_ttl_s", &v)))
		return rc;
	w->ttl_s = v ? v : SHM_DEFAULT_L1_TTL_S;
	w->policy_read = true;
	return 0;
}

static uint64_t tree_pages(const MDB_stat *st)
{
	return st->ms_branch_pages + st->ms_leaf_pages + st->ms_overflow_pages;
}

/* The data file's size, read after the meta page it is compared with:
 * every page a meta page names was written before it and the file never
 * shrinks, so a commit of another process meanwhile cannot make a sound
 * file look short. */
static int data_file_size(shm_env *env, uint64_t *size)
{
	struct stat st;
	mdb_filehandle_t fd;
	int rc;

	if ((rc = mdb_env_get_fd(env->mdb, &fd)))
		return shm__err_mdb(rc, "data file");
	if (fstat(fd, &st) != 0)
		return shm__err(errno, "stat %s/data.mdb", env->path_shown);
	*size = (uint64_t)st.st_size;
	return 0;
}

/* Invariant 3, from a count of pages in use in one snapshot, counted
 * before the data file's size is read. The meta's last page number is no
 * bound: LMDB leaves pages unwritten that it freed in the transaction
 * that allocated them, and a sound file may end several pages before it.
 * Only LMDB knows where pages are, so a cut that spares as many pages as
 * are in use goes unnoticed here (check_root may see it). */
static int check_data_file(shm_env *env, uint64_t in_use, unsigned psize)
{
	uint64_t size;
	int rc;

	if ((rc = data_file_size(env, &size)) || size >= in_use * psize)
		return rc;
	return shm__err(SHM_ECORRUPT,
	                "%s/data.mdb: %llu bytes, shorter than the %llu bytes "
	                "of pages in use",
	                env->path_shown, (unsigned long long)size,
	                (unsigned long long)(in_use * psize));
}

/* LMDB 0.9's data file as invariant 3 reads it (lmdb.h does not draw it:
 * mdb.c's MDB_page, MDB_meta and MDB_db of a 64-bit build, data version
 * 1). Pages 0 and 1 are the meta pages; a commit overwrites the older one,
 * a transaction reads the snapshot of the one with the larger txnid.
 *
 *   byte  size  of a meta page
 *      0     8  pgno          its own number, 0 or 1
 *     10     2  flags         P_META 0x08
 *     16     4  magic         0xBEEFC0DE
 *     20     4  version       1
 *     24     8  address, 32: mapsize
 *     40    48  MDB_db        the free list; its pad (bytes 0-3): page size
 *     88    48  MDB_db        the main database
 *    136     8  last pgno     no bound on the file (check_data_file)
 *    144     8  txnid
 *
 *   MDB_db: u32 pad, u16 flags, u16 depth, u64 branch, leaf and overflow
 *   pages, entries, root (byte 40; ~0 in an empty database). A named
 *   database's MDB_db is its value in the main database (dbi 1). */
#define LMDB_META_FLAGS 10
#define LMDB_P_META 0x08u
#define LMDB_META_MAGIC 16
#define LMDB_MAGIC 0xBEEFC0DEu
#define LMDB_META_VERSION 20
#define LMDB_DATA_VERSION 1u
#define LMDB_META_MAPSIZE 32
#define LMDB_META_FREE 40
#define LMDB_META_MAIN 88
#define LMDB_META_TXNID 144
#define LMDB_META_END 152
#define LMDB_DB_SIZE 48
#define LMDB_DB_ROOT 40
#define LMDB_MAIN_DBI 1

static uint64_t get_u64(const unsigned char *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

/* pg, the first bytes of page n, is a meta page of LMDB 0.9's format. */
static bool is_meta(const unsigned char *pg, unsigned n, unsigned psize)
{
	uint32_t magic, version, pad;
	uint16_t flags;

	memcpy(&flags, pg + LMDB_META_FLAGS, 2);
	memcpy(&magic, pg + LMDB_META_MAGIC, 4);
	memcpy(&version, pg + LMDB_META_VERSION, 4);
	memcpy(&pad, pg + LMDB_META_FREE, 4);
	return get_u64(pg) == n && (flags & LMDB_P_META) &&
	       magic == LMDB_MAGIC && version == LMDB_DATA_VERSION &&
	       pad == psize;
}

int shm__lmdb_meta_read(shm_env *env, MDB_txn *txn, shm__lmdb_meta *out)
{
	unsigned char pg[LMDB_META_END] = {0};
	mdb_filehandle_t fd;
	MDB_stat st;
	int rc;

	memset(out, 0, sizeof *out);
	if (sizeof(size_t) != 8) /* another layout: pgno_t is a size_t */
		return 0;
	if ((rc = mdb_env_get_fd(env->mdb, &fd)) ||
	    (rc = mdb_env_stat(env->mdb, &st)))
		return shm__err_mdb(rc, "data file");
	for (unsigned n = 0; n < 2; n++) {
		ssize_t got = pread(fd, pg, sizeof pg, (off_t)n * st.ms_psize);
		if (got < 0)
			return shm__err(errno, "read meta page %u of %s/data.mdb",
			                n, env->path_shown);
		uint64_t txnid = get_u64(pg + LMDB_META_TXNID);
		if ((size_t)got < sizeof pg || !is_meta(pg, n, st.ms_psize) ||
		    (txn ? txnid != mdb_txn_id(txn)
		         : out->found && txnid < out->txnid))
			continue;
		out->found = true;
		out->psize = st.ms_psize;
		out->txnid = txnid;
		out->map_size = get_u64(pg + LMDB_META_MAPSIZE);
		out->free_root = get_u64(pg + LMDB_META_FREE + LMDB_DB_ROOT);
		out->main_root = get_u64(pg + LMDB_META_MAIN + LMDB_DB_ROOT);
	}
	return 0;
}

/* Invariant 3 for a root: page p (SHM__NO_PAGE: an empty tree) lies within
 * the file's size bytes. */
static int check_root(shm_env *env, uint64_t size, unsigned psize,
                      uint64_t p, const char *whose)
{
	if (p == SHM__NO_PAGE || p < size / psize)
		return 0;
	return shm__err(SHM_ECORRUPT,
	                "%s/data.mdb: %llu bytes, but page %llu (the root of "
	                "%s) lies beyond them",
	                env->path_shown, (unsigned long long)size,
	                (unsigned long long)p, whose);
}

/* Invariant 3 for the roots of our databases in txn's snapshot, read as
 * their values in the main database; a name that is not there, or not an
 * MDB_db, is open_db's to report. */
static int check_db_roots(shm_env *env, MDB_txn *txn, uint64_t size,
                          unsigned psize)
{
	char whose[64];
	int rc;

	for (size_t i = 0; i < sizeof shm__dbs / sizeof shm__dbs[0]; i++) {
		MDB_val k = {strlen(shm__dbs[i].name), (void *)shm__dbs[i].name},
		        v;
		if ((rc = mdb_get(txn, LMDB_MAIN_DBI, &k, &v)) == MDB_NOTFOUND ||
		    (!rc && v.mv_size != LMDB_DB_SIZE))
			continue;
		if (rc)
			return shm__err_mdb(rc, shm__dbs[i].name);
		snprintf(whose, sizeof whose, "database '%s'",
		         shm__dbs[i].name);
		if ((rc = check_root(env, size, psize,
		                     get_u64((const unsigned char *)v.mv_data +
		                             LMDB_DB_ROOT), whose)))
			return rc;
	}
	return 0;
}

static int map_replace(shm_env *env, size_t want);

/* mdb_txn_begin while opening, before the handle is shared (no
 * transaction of it in progress): a map another process grew meanwhile is
 * adopted at once (invariant 6). */
int shm__begin_at_open(shm_env *env, unsigned flags, MDB_txn **txn)
{
	int rc = mdb_txn_begin(env->mdb, NULL, flags, txn);

	if (rc == MDB_MAP_RESIZED && !(rc = map_replace(env, 0)))
		rc = mdb_txn_begin(env->mdb, NULL, flags, txn);
	return rc;
}

int shm__not_shm(shm_env *env, const char *why)
{
	return shm__err(SHM_EVERSION, "%s: not an shm environment: %s",
	                env->path_shown, why);
}

/* Right after mdb_env_open, before anything is created next to the map:
 * invariant 3 with the pages the meta page alone accounts for (both meta
 * pages and the main database's), then with the roots of a read
 * transaction's snapshot: the free list's and the main database's before
 * any other page is read, ours once the main database is known to hold
 * ours; and invariant 2 as far as an environment with keys in the main
 * database must have our 'meta' database (open_dbs checks the rest). */
int shm__check_env(shm_env *env)
{
	shm__lmdb_meta m;
	MDB_stat st;
	MDB_txn *txn;
	MDB_dbi dbi;
	uint64_t size;
	int rc;

	if ((rc = mdb_env_stat(env->mdb, &st)))
		return shm__err_mdb(rc, "environment stat");
	if ((rc = check_data_file(env, 2 + tree_pages(&st), st.ms_psize)))
		return rc;
	if ((rc = shm__begin_at_open(env, MDB_RDONLY, &txn)))
		return shm__err_mdb(rc, "begin read transaction");
	if ((rc = shm__lmdb_meta_read(env, txn, &m)) ||
	    (rc = data_file_size(env, &size)))
		goto out;
	if (m.found &&
	    ((rc = check_root(env, size, m.psize, m.free_root,
	                      "LMDB's free list")) ||
	     (rc = check_root(env, size, m.psize, m.main_root,
	                      "the main database"))))
		goto out;
	/* entries of the snapshot read, not of the newest meta page: LMDB
	 * writes that page before it publishes its transaction to readers,
	 * so a first write committing now shows entries that this snapshot,
	 * begun after, may not have yet */
	if ((rc = mdb_stat(txn, LMDB_MAIN_DBI, &st)))
		goto out_mdb;
	if (st.ms_entries == 0)
		goto out;
	rc = mdb_dbi_open(txn, "meta", 0, &dbi);
	if (rc == MDB_NOTFOUND || rc == MDB_INCOMPATIBLE)
		rc = shm__not_shm(env, "LMDB data without a 'meta' database");
	else if (rc)
		rc = shm__err_mdb(rc, "meta");
	else if (m.found)
		rc = check_db_roots(env, txn, size, m.psize);
out:
	mdb_txn_abort(txn);
	return rc;
out_mdb:
	mdb_txn_abort(txn);
	return shm__err_mdb(rc, "stat main database");
}

/* Invariant 3 again once our databases are open, with their pages too:
 * catches a cut that shm__check_env's count was too small to see. */
int shm__check_pages_in_use(shm_env *env, MDB_txn *txn, MDB_dbi main)
{
	MDB_stat st;
	uint64_t pages = 2;
	int rc;

	if ((rc = mdb_stat(txn, main, &st)))
		return shm__err_mdb(rc, "stat main database");
	pages += tree_pages(&st);
	for (size_t i = 0; i < sizeof shm__dbs / sizeof shm__dbs[0]; i++) {
		MDB_dbi dbi = *(MDB_dbi *)((char *)env + shm__dbs[i].off);
		if ((rc = mdb_stat(txn, dbi, &st)))
			return shm__err_mdb(rc, shm__dbs[i].name);
		pages += tree_pages(&st);
	}
	return check_data_file(env, pages, st.ms_psize);
}

static int open_db(MDB_txn *txn, shm_env *env, size_t i, bool create)
{
	MDB_dbi *dbi = (MDB_dbi *)((char *)env + shm__dbs[i].off);
	int rc = mdb_dbi_open(txn, shm__dbs[i].name,
	                      shm__dbs[i].flags | (create ? MDB_CREATE : 0),
	                      dbi);

	if (rc == MDB_NOTFOUND) {
		char why[64];
		snprintf(why, sizeof why, "no '%s' database", shm__dbs[i].name);
		return shm__not_shm(env, why);
	}
	if (rc == MDB_INCOMPATIBLE)
		return shm__err(SHM_EVERSION,
		                "%s: database '%s' has other flags than this "
		                "version uses", env->path_shown,
		                shm__dbs[i].name);
	return rc ? shm__err_mdb(rc, shm__dbs[i].name) : 0;
}

/* Invariant 5: the messages PostgreSQL may hold from before L1 saw its
 * first write are not L1's to vouch for (room.c invariant 2). Kept if set:
 * a floor only rises. */
static int room_floor_open(MDB_txn *txn, shm_env *env)
{
	uint64_t floor;
	int rc = shm__meta_get(txn, env, SHM__ROOM_FLOOR, &floor);

	if (rc || floor)
		return rc;
	rc = shm__meta_put(txn, env, SHM__ROOM_FLOOR, (uint64_t)shm_now_us());
	return rc == MDB_MAP_FULL ? shm__err_mdb(rc, SHM__ROOM_FLOOR) : rc;
}

/* Invariants 1 to 3 and 5 in one transaction, under the writers' lock in a
 * read-write open: a failure aborts it, so a refused environment is left
 * unchanged. */
static int open_dbs_in(MDB_txn *txn, shm_env *env)
{
	bool ro = env->opt.read_only;
	uint64_t format = 0;
	MDB_dbi main;
	MDB_stat st;
	int rc;

	if ((rc = mdb_dbi_open(txn, NULL, 0, &main)) ||
	    (rc = mdb_stat(txn, main, &st)))
		return shm__err_mdb(rc, "main database");
	/* Every database exists since format 1: only an empty map needs
	 * them created, so the pages counted otherwise are the snapshot's
	 * (none is dirty yet). */
	bool create = st.ms_entries == 0 && !ro;
	for (size_t i = 0; i < sizeof shm__dbs / sizeof shm__dbs[0]; i++)
		if ((rc = open_db(txn, env, i, create)))
			return rc;
	if (!create && (rc = shm__check_pages_in_use(env, txn, main)))
		return rc;
	if ((rc = mdb_set_compare(txn, env->msg, shm__cmp_key16)))
		return shm__err_mdb(rc, "msg compare");
	if ((rc = shm__meta_get(txn, env, "format", &format)))
		return rc;
	if (create) {
		if ((rc = shm__meta_put(txn, env, "format", SHM_FORMAT_VERSION)) ||
		    (rc = shm__meta_put(txn, env, "next_seq", 1)))
			return rc;
	} else if (format == 0) {
		return shm__not_shm(env, "no format version in its 'meta' "
		                    "database");
	} else if (format != SHM_FORMAT_VERSION) {
		return shm__err(SHM_EVERSION,
		                "%s: format version %llu, this build reads "
		                "version %u",
		                env->path_shown, (unsigned long long)format,
		                SHM_FORMAT_VERSION);
	}
	if (!ro && (rc = room_floor_open(txn, env)))
		return rc;
	return policy_open(txn, env);
}

static int open_dbs(shm_env *env)
{
	bool ro = env->opt.read_only;
	MDB_txn *txn;
	int rc;

	if (!ro && (rc = shm__wlock_acquire(env)))
		return rc;
	rc = shm__begin_at_open(env, ro ? MDB_RDONLY : 0, &txn);
	if (rc) {
		if (!ro)
			shm__wlock_release(env);
		return shm__err_mdb(rc, "begin transaction");
	}
	if ((rc = open_dbs_in(txn, env))) {
		mdb_txn_abort(txn);
	} else {
		/* Commit even a read-only transaction: aborting it would
		 * close the database handles it opened. */
		rc = mdb_txn_commit(txn);
		rc = rc ? shm__err_mdb(rc, "commit") : 0;
	}
	if (!ro)
		shm__wlock_release(env);
	return rc;
}

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

/* Right after mdb_env_open, before any transaction (mdb_env_set_mapsize's
 * rule): the map size in force into env->opt. A map_size of 0 asked for
 * the environment's own, and LMDB adopted the size stored in it; but a new
 * map (no page past the two meta pages) got LMDB's default of 1 MiB, and
 * takes libshm's instead. */
static int map_size_in_force(shm_env *env)
{
	MDB_envinfo ei;
	int rc;

	mdb_env_info(env->mdb, &ei);
	if (!env->opt.map_size && ei.me_last_pgno <= 1 &&
	    ei.me_mapsize < SHM_DEFAULT_MAP_SIZE) {
		if ((rc = mdb_env_set_mapsize(env->mdb, SHM_DEFAULT_MAP_SIZE)))
			return shm__err_mdb(rc, "map size of a new environment");
		mdb_env_info(env->mdb, &ei);
	}
	env->opt.map_size = ei.me_mapsize;
	return 0;
}

/* The fix open_denied names for a file (or the directory) this user may
 * not write: several users share an environment through one group. */
#define WRITE_ACCESS "give this user write access to it, e.g. one group " \
                     "for every user of the environment, a setgid " \
                     "directory, umask 0002"

/* mdb_env_open's EACCES names no file: the one this process may not use,
 * looked for in the order LMDB opens them (lock.mdb, which every opener
 * writes, readers too, or creates; then data.mdb), else the directory,
 * named as shown (dir shown printably), with the fix. */
static int open_denied(const char *dir, const char *shown, bool read_only)
{
	char lock[4200], data[4200];

	snprintf(lock, sizeof lock, "%s/lock.mdb", dir);
	snprintf(data, sizeof data, "%s/data.mdb", dir);
	if (faccessat(AT_FDCWD, lock, F_OK, AT_EACCESS) != 0 &&
	    faccessat(AT_FDCWD, dir, W_OK, AT_EACCESS) != 0)
		return shm__err(EACCES, "%s: no lock.mdb, and none can be made "
		                "in the directory: " WRITE_ACCESS, shown);
	if (faccessat(AT_FDCWD, lock, R_OK | W_OK, AT_EACCESS) != 0)
		return shm__err(EACCES, "%s/lock.mdb: every process that opens "
		                "the environment, a reader too, writes LMDB's "
		                "lock file: " WRITE_ACCESS, shown);
	if (faccessat(AT_FDCWD, data, R_OK, AT_EACCESS) != 0)
		return shm__err(EACCES, "%s/data.mdb: cannot be read", shown);
	if (!read_only && faccessat(AT_FDCWD, data, W_OK, AT_EACCESS) != 0)
		return shm__err(EACCES, "%s/data.mdb: a read-write open writes "
		                "it: " WRITE_ACCESS, shown);
	return shm__err_mdb(EACCES, shown);
}

/* mdb_env_open's MDB_INVALID ("File is not an LMDB file"): both meta pages
 * (drawn above is_meta) could not be read as LMDB's. Said as damage to the
 * file found at fault, which is named (it was reported as a format
 * version): a data.mdb that ends before their end (a torn or partial
 * copy), or with one that is not a meta page; with both sound, LMDB's
 * lock file, which it checks first. dir is named as shown. */
int shm__not_lmdb(const char *dir, const char *shown)
{
	char path[4200];
	unsigned char pg[LMDB_META_END];
	struct stat st;
	uint32_t psize;
	ssize_t got;
	int fd, rc;

	snprintf(path, sizeof path, "%s/data.mdb", dir);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0 || fstat(fd, &st) != 0) {
		rc = shm__err(errno, "%s/data.mdb: %s, and it cannot be read",
		              shown, mdb_strerror(MDB_INVALID));
		goto out;
	}
	if ((got = pread(fd, pg, sizeof pg, 0)) < (ssize_t)sizeof pg) {
		rc = got < 0 ? shm__err(errno, "read %s/data.mdb", shown)
		             : shm__err(SHM_ECORRUPT, "%s/data.mdb: %lld "
		                        "bytes, fewer than the %zu of LMDB's "
		                        "first meta page", shown,
		                        (long long)st.st_size, sizeof pg);
		goto out;
	}
	memcpy(&psize, pg + LMDB_META_FREE, 4);
	if (psize < sizeof pg || !is_meta(pg, 0, psize)) {
		rc = shm__err(SHM_ECORRUPT, "%s/data.mdb: page 0 is not an "
		              "LMDB meta page: overwritten, or not LMDB's data "
		              "file", shown);
		goto out;
	}
	if ((got = pread(fd, pg, sizeof pg, psize)) < (ssize_t)sizeof pg) {
		rc = got < 0 ? shm__err(errno, "read %s/data.mdb", shown)
		             : shm__err(SHM_ECORRUPT, "%s/data.mdb: %lld "
		                        "bytes, fewer than the %llu of LMDB's "
		                        "two meta pages", shown,
		                        (long long)st.st_size, 2ull * psize);
		goto out;
	}
	if (!is_meta(pg, 1, psize))
		rc = shm__err(SHM_ECORRUPT, "%s/data.mdb: page 1 is not an "
		              "LMDB meta page, page 0 is", shown);
	else
		rc = shm__err(SHM_ECORRUPT, "%s/lock.mdb: %s: not LMDB's lock "
		              "file, data.mdb's meta pages are sound", shown,
		              mdb_strerror(MDB_INVALID));
out:
	if (fd >= 0)
		close(fd);
	return rc;
}

/* Invariant 9: after a failed mdb_env_open that made DIR/lock.mdb (the
 * handle's LMDB part closed), removes it under a write lock on its first
 * byte, which fails while any process has the environment open (each
 * LMDB opener holds a read lock there). Best effort: a file that cannot
 * be removed stays, as LMDB left it. */
static void lock_file_drop(const char *dir)
{
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET,
	                   .l_start = 0, .l_len = 1};
	char path[4200];
	int fd;

	if ((size_t)snprintf(path, sizeof path, "%s/lock.mdb", dir) <
	        sizeof path &&
	    (fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW)) >= 0) {
		if (fcntl(fd, F_SETLK, &fl) == 0)
			unlink(path);
		close(fd); /* and its lock */
	}
}

/* Whether DIR/lock.mdb is there (or cannot be told: kept then). */
static bool lock_file_there(const char *dir)
{
	char path[4200];
	struct stat st;

	if ((size_t)snprintf(path, sizeof path, "%s/lock.mdb", dir) >=
	    sizeof path)
		return true;
	return lstat(path, &st) == 0 || errno != ENOENT;
}

/* For an open that must not create: dir (named as shown) holds an
 * environment. */
static int check_exists(const char *dir, const char *shown)
{
	char data[4200];
	struct stat st;

	if (stat(dir, &st) != 0) {
		if (errno == ENOENT)
			return shm__err(ENOENT, "%s: no shm environment here, no "
			                "such directory: an application's first "
			                "read-write open, or shmctl init, creates "
			                "one", shown);
		return shm__err(errno, "environment %s", shown);
	}
	if ((size_t)snprintf(data, sizeof data, "%s/data.mdb", dir) >=
	    sizeof data)
		return shm__err(SHM_EINVAL, "path too long: %s", shown);
	if (stat(data, &st) != 0 && errno == ENOENT)
		return shm__err(SHM_ENOTFOUND, "%s: no shm environment here, no "
		                "data.mdb: an application's first read-write "
		                "open, or shmctl init, creates one", shown);
	/* an open that creates one has made the file but not yet written it
	 * (or was killed there): LMDB would refuse it read-only with EBADF,
	 * and make it an environment read-write, which must_exist forbids */
	if (S_ISREG(st.st_mode) && st.st_size == 0)
		return shm__err(SHM_ENOTFOUND, "%s: no shm environment here, "
		                "data.mdb is empty: one being created, or whose "
		                "creation was cut short; shmctl init, or an "
		                "application's read-write open, makes it one",
		                shown);
	return 0;
}

/* ---- one handle per environment and process (invariant 8) */

/* An LMDB handle a child of fork() inherited, closed after the child's own
 * handle on the same environment. */
struct shm__inherited {
	MDB_env *mdb;
	struct shm__inherited *next;
};

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static shm_env *reg_head; /* this process's handles, and a parent's */
static pthread_once_t reg_once = PTHREAD_ONCE_INIT;

static void reg_fork_prepare(void)
{
	pthread_mutex_lock(&reg_lock);
}

static void reg_fork_after(void)
{
	pthread_mutex_unlock(&reg_lock);
}

static void reg_init(void)
{
	pthread_atfork(reg_fork_prepare, reg_fork_after, reg_fork_after);
}

/* Enters env, opened as dir, in the registry; SHM_EBUSY if this process
 * has a handle open on that directory. */
int shm__reg_add(shm_env *env, const char *dir)
{
	struct stat st;
	shm_env *e;
	int rc = 0;

	if (stat(dir, &st) != 0)
		return shm__err(errno, "environment %s", env->path_shown);
	pthread_once(&reg_once, reg_init);
	pthread_mutex_lock(&reg_lock);
	for (e = reg_head; e; e = e->reg_next)
		if (e->pid == env->pid && e->dev == st.st_dev &&
		    e->ino == st.st_ino)
			break;
	if (e) {
		rc = shm__err(SHM_EBUSY, "%s: already open in this process "
		              "(as %s): share the first handle between "
		              "threads; LMDB allows one open of an environment "
		              "per process, and closing a second handle would "
		              "drop the first one's locks", env->path_shown,
		              e->path_shown);
	} else {
		env->dev = st.st_dev;
		env->ino = st.st_ino;
		env->registered = true;
		env->reg_next = reg_head;
		reg_head = env;
	}
	pthread_mutex_unlock(&reg_lock);
	return rc;
}

bool shm__env_open_here(const char *dir)
{
	struct stat st;
	pid_t me = getpid();
	bool found = false;

	if (stat(dir, &st) != 0)
		return false;
	pthread_mutex_lock(&reg_lock);
	for (shm_env *e = reg_head; e && !found; e = e->reg_next)
		found = e->pid == me && e->dev == st.st_dev &&
		        e->ino == st.st_ino;
	pthread_mutex_unlock(&reg_lock);
	return found;
}

/* Under reg_lock: takes env out of the registry. */
static void reg_unlink(shm_env *env)
{
	for (shm_env **p = &reg_head; *p; p = &(*p)->reg_next)
		if (*p == env) {
			*p = env->reg_next;
			break;
		}
	env->registered = false;
}

static void inherited_close(struct shm__inherited *i)
{
	while (i) {
		struct shm__inherited *next = i->next;
		mdb_env_close(i->mdb);
		free(i);
		i = next;
	}
}

/* shm_env_close's LMDB part for a handle this process opened: after its
 * own LMDB handle, those of a parent it kept. */
void shm__reg_close(shm_env *env)
{
	if (env->mdb)
		mdb_env_close(env->mdb);
	if (!env->registered)
		return;
	pthread_mutex_lock(&reg_lock);
	inherited_close(env->inherited);
	env->inherited = NULL;
	reg_unlink(env);
	pthread_mutex_unlock(&reg_lock);
}

/* The same in a child of fork() for a handle it inherited: its LMDB
 * handle (and those its opener kept) go to the child's own handle on the
 * environment, if there is one, to be closed after it; else they are
 * closed now, under the lock, so that no open of the child's comes
 * between. Out of memory for the list, one is left open: a leak rather
 * than the child's locks lost. */
void shm__reg_close_inherited(shm_env *env)
{
	struct shm__inherited *kept = env->inherited, *n;
	pid_t me = getpid();
	shm_env *own = NULL;

	env->inherited = NULL;
	pthread_mutex_lock(&reg_lock);
	for (shm_env *e = reg_head; env->registered && e; e = e->reg_next)
		if (e->pid == me && e->dev == env->dev && e->ino == env->ino)
			own = e;
	if (env->registered)
		reg_unlink(env);
	if (own) {
		if (env->mdb && (n = malloc(sizeof *n))) {
			n->mdb = env->mdb;
			n->next = kept;
			kept = n;
		}
		n = kept;
		while (n && n->next)
			n = n->next;
		if (n) {
			n->next = own->inherited;
			own->inherited = kept;
		}
	} else {
		if (env->mdb)
			mdb_env_close(env->mdb);
		inherited_close(kept);
	}
	pthread_mutex_unlock(&reg_lock);
}

int shm_env_open(const char *dir, const shm_options *opt, shm_env **out)
{
	shm_env *env;
	unsigned flags = MDB_NOTLS | MDB_NORDAHEAD;
	char why[600], shown[SHM__SHOWN_LONG_MAX];
	int rc, dead = 0;

	if (out)
		*out = NULL;
	if (!dir)
		return shm__null(__func__, "dir");
	if (!out)
		return shm__null(__func__, "out");
	if (!*dir)
		return shm__err(SHM_EINVAL, "shm_env_open: empty dir");
	if (opt && (unsigned)opt->durability > SHM_DURABILITY_SYNC)
		return shm__err(SHM_EINVAL, "durability %d: not a shm_durability: "
		                "NOSYNC, NOMETASYNC or SYNC", (int)opt->durability);
	if (opt && (unsigned)opt->write_mode > SHM_WRITE_THROUGH)
		return shm__err(SHM_EINVAL, "write_mode %d: not a shm_write_mode: "
		                "WRITE_BACK or WRITE_THROUGH", (int)opt->write_mode);
	if (opt && opt->map_size && opt->map_size < SHM_MAP_SIZE_MIN)
		return shm__err(SHM_EINVAL, "map_size %zu: below the smallest "
		                "map, %d bytes: map_size is in bytes",
		                opt->map_size, SHM_MAP_SIZE_MIN);
	if (opt && opt->max_readers > SHM_MAX_READERS_MAX)
		return shm__err(SHM_EINVAL, "max_readers %u: above the most "
		                "reader slots, %u: one per thread that reads",
		                opt->max_readers, SHM_MAX_READERS_MAX);
	env = calloc(1, sizeof *env);
	if (!env)
		return shm__err(ENOMEM, "shm_env_open");
	env->pid = getpid();
	if (opt)
		env->opt = *opt;
	else
		shm_options_init(&env->opt);
	env->path = strdup(dir);
	env->path_shown = strdup(shm__shown_long(dir, strlen(dir), shown));
	env->redis_url = dup_or_null(env->opt.redis_url);
	env->pg_conninfo = dup_or_null(env->opt.pg_conninfo);
	env->opt.redis_url = env->redis_url;
	env->opt.pg_conninfo = env->pg_conninfo;
	if (!env->opt.max_readers)
		env->opt.max_readers = SHM_DEFAULT_MAX_READERS;
	if (!env->opt.lease_ms) /* over at once, but a lease for its taker */
		env->opt.lease_ms = 1;
	if (!env->path || !env->path_shown ||
	    (opt && opt->redis_url && !env->redis_url) ||
	    (opt && opt->pg_conninfo && !env->pg_conninfo)) {
		rc = shm__err(ENOMEM, "shm_env_open: copy of the options");
		goto fail;
	}
	if (env->redis_url && *env->redis_url &&
	    ((rc = shm_redis_url_parse(env->redis_url, &env->redis_addr)) ||
	     (rc = shm__redis_resolve(env->redis_url, &env->redis_addr,
	                              env->redis_ip, sizeof env->redis_ip))))
		goto fail;
	if (env->pg_conninfo && *env->pg_conninfo &&
	    (rc = shm__pg_check_conninfo(env->pg_conninfo, why,
	                                 sizeof why))) {
		rc = shm__err(rc, "pg_conninfo: %s", why); /* printable */
		goto fail;
	}
	if (env->pg_conninfo && *env->pg_conninfo &&
	    (rc = shm__pg_resolve(env->pg_conninfo, 0, &env->pg_hosts,
	                          &env->pg_hostaddr, why, sizeof why))) {
		rc = shm__err(rc, "pg_conninfo: %s", why); /* printable */
		goto fail;
	}

	if (env->opt.read_only || env->opt.must_exist) {
		if ((rc = check_exists(dir, env->path_shown)))
			goto fail;
		if (env->opt.read_only)
			flags |= MDB_RDONLY;
	} else if (mkdir(dir, 0775) != 0 && errno != EEXIST) {
		rc = shm__err(errno, "create environment directory %s",
		              env->path_shown);
		goto fail;
	}
	if ((rc = shm__reg_add(env, dir)))
		goto fail;
	if (env->opt.durability == SHM_DURABILITY_NOSYNC)
		flags |= MDB_NOSYNC;
	else if (env->opt.durability == SHM_DURABILITY_NOMETASYNC)
		flags |= MDB_NOMETASYNC;

	if ((rc = mdb_env_create(&env->mdb))) {
		rc = shm__err_mdb(rc, "mdb_env_create");
		goto fail;
	}
	mdb_env_set_maxdbs(env->mdb, 16);
	if ((rc = mdb_env_set_maxreaders(env->mdb, env->opt.max_readers))) {
		rc = shm__err_mdb(rc, "max_readers");
		goto fail;
	}
	/* 0: LMDB takes the size stored in the environment */
	if ((rc = mdb_env_set_mapsize(env->mdb, env->opt.map_size))) {
		rc = shm__err_mdb(rc, "map size");
		goto fail;
	}
	bool had_lock = lock_file_there(dir);
	if ((rc = mdb_env_open(env->mdb, dir, flags, 0664))) {
		bool not_lmdb_file = rc == MDB_INVALID ||
		                     rc == MDB_VERSION_MISMATCH;
		if (rc == MDB_VERSION_MISMATCH)
			rc = shm__err(SHM_EVERSION, "%s: %s", env->path_shown,
			              mdb_strerror(rc));
		else if (rc == MDB_INVALID)
			rc = shm__not_lmdb(dir, env->path_shown);
		else if (rc == ENOMEM && env->opt.map_size)
			rc = shm__err(rc, "%s: map_size %zu bytes: cannot map "
			              "that much", env->path_shown,
			              env->opt.map_size);
		else if (rc == EACCES)
			rc = open_denied(dir, env->path_shown,
			                 env->opt.read_only);
		else
			rc = shm__err_mdb(rc, env->path_shown);
		if (!had_lock && not_lmdb_file) { /* invariant 9 */
			mdb_env_close(env->mdb);
			env->mdb = NULL;
			lock_file_drop(dir);
		}
		goto fail;
	}
	/* the slots in force: LMDB's lock file only grows, and only the
	 * first process to open it (none has it open) can grow it */
	mdb_env_get_maxreaders(env->mdb, &env->opt.max_readers);
	/* a writer clears the slots of dead processes; a read-only open (the
	 * tools) leaves them for shmctl readers to show and clear */
	if (!env->opt.read_only)
		mdb_reader_check(env->mdb, &dead);
	if ((rc = map_size_in_force(env)) ||
	    (rc = shm__check_env(env)) ||
	    (rc = shm__shared_open(env)) ||
	    (!env->opt.read_only && (rc = shm__wlock_open(env))) ||
	    (rc = open_dbs(env)) ||
	    (rc = shm__rt_open(env)))
		goto fail;
	*out = env;
	return 0;
fail:
	shm_env_close(env);
	return rc;
}

void shm_env_close(shm_env *env)
{
	bool forked;

	if (!env)
		return;
	forked = env->pid != getpid(); /* invariant 7 */
	shm__rt_close(env, forked);
	shm__rtxn_spare_free(env);
	for (size_t i = 0; i < SHM_RPOOL && !forked; i++)
		if (env->rpool[i])
			mdb_txn_abort(env->rpool[i]);
	if (env->sw && !forked)
		shm__publish(env);
	if (forked)
		shm__reg_close_inherited(env);
	else
		shm__reg_close(env);
	shm__shared_close(env);
	shm__wlock_close(env);
	free(env->redis_url);
	free(env->pg_conninfo);
	free(env->pg_hosts);
	free(env->pg_hostaddr);
	free(env->path);
	free(env->path_shown);
	free(env);
}

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

/* ---- the gate (invariant 6) */

__thread unsigned shm__txn_depth;

/* How long an adoption waits for the transactions in progress to end. */
#define SHM_ADOPT_WAIT_MS 1000

static void nap_us(long us)
{
	struct timespec ts = {0, us * 1000};
	nanosleep(&ts, NULL);
}

static int map_lost(shm_env *env)
{
	return shm__err(MDB_PANIC, "%s: this handle lost its map when "
	                "another process grew it (mapping the new size "
	                "failed): close it and open the environment again",
	                env->path_shown);
}

int shm__gate_wait(shm_env *env)
{
	unsigned long v = __atomic_load_n(&env->gate, __ATOMIC_ACQUIRE);

	/* counted in v: go on only when no adoption holds this thread back */
	while ((v & SHM__GATE_SHUT) ||
	       ((v & SHM__GATE_PENDING) && shm__txn_depth == 0)) {
		__atomic_sub_fetch(&env->gate, 1, __ATOMIC_RELAXED);
		if (v & SHM__GATE_LOST)
			return map_lost(env);
		while ((v = __atomic_load_n(&env->gate, __ATOMIC_ACQUIRE)) &
		       SHM__GATE_FLAGS && !(v & SHM__GATE_LOST))
			nap_us(20);
		v = __atomic_add_fetch(&env->gate, 1, __ATOMIC_ACQUIRE);
	}
	shm__txn_depth++;
	return 0;
}

/* Under SHM__GATE_SHUT, or while opening: maps the size stored in the
 * environment, unless this map holds every page in use and is at least
 * want bytes already (a thread adopted it since). */
static int map_replace(shm_env *env, size_t want)
{
	MDB_envinfo ei;
	MDB_stat st;
	int rc;

	mdb_env_info(env->mdb, &ei);
	mdb_env_stat(env->mdb, &st);
	if ((ei.me_last_pgno + 1) * st.ms_psize <= ei.me_mapsize &&
	    ei.me_mapsize >= want)
		return 0;
	if ((rc = mdb_env_set_mapsize(env->mdb, 0)))
		return rc;
	mdb_env_info(env->mdb, &ei);
	__atomic_store_n(&env->opt.map_size, ei.me_mapsize, __ATOMIC_RELAXED);
	return 0;
}

/* shm__map_adopt, and shm__map_adopt_stored with the stored size (want:
 * a map at least that large, 0: one that holds every page in use). */
static int map_adopt(shm_env *env, const char *what, size_t want)
{
	size_t had = __atomic_load_n(&env->opt.map_size, __ATOMIC_RELAXED);
	unsigned long v = 0, shut = SHM__GATE_PENDING;
	uint64_t deadline;
	int rc;

	if (shm__txn_depth)
		return shm__err(MDB_MAP_RESIZED, "%s: another process grew the "
		                "map of %s past the %zu bytes this process maps; "
		                "this thread holds a transaction (an shm_rtxn, a "
		                "log iterator, of this or another environment) "
		                "and cannot adopt the new size until it ends it",
		                what, env->path_shown, had);
	/* one adoption at a time: after one under way, this thread's own
	 * (map_replace finds nothing to do if that one did it) */
	while (!__atomic_compare_exchange_n(&env->gate, &v,
	                                    v | SHM__GATE_PENDING, false,
	                                    __ATOMIC_ACQUIRE,
	                                    __ATOMIC_RELAXED)) {
		if (v & SHM__GATE_LOST)
			return map_lost(env);
		if (v & SHM__GATE_FLAGS) {
			nap_us(20);
			v &= ~SHM__GATE_FLAGS;
		}
	}
	deadline = shm__mono_ns() + SHM_ADOPT_WAIT_MS * 1000000ull;
	while (!__atomic_compare_exchange_n(&env->gate, &shut, SHM__GATE_SHUT,
	                                    false, __ATOMIC_ACQUIRE,
	                                    __ATOMIC_RELAXED)) {
		if (shm__mono_ns() > deadline) {
			__atomic_fetch_and(&env->gate, ~SHM__GATE_PENDING,
			                   __ATOMIC_RELEASE);
			return shm__err(MDB_MAP_RESIZED, "%s: another process "
			                "grew the map of %s past the %zu bytes "
			                "this process maps; adopting the new size "
			                "waits until no thread of this process is "
			                "in a transaction, and one stayed in one "
			                "for %d ms (an shm_rtxn or log iterator "
			                "held): end it, the next call adopts it",
			                what, env->path_shown, had,
			                SHM_ADOPT_WAIT_MS);
		}
		shut = SHM__GATE_PENDING;
		nap_us(20);
	}
	if ((rc = map_replace(env, want))) {
		__atomic_fetch_or(&env->gate, SHM__GATE_LOST, __ATOMIC_RELEASE);
		return shm__err(rc, "%s: another process grew the map of %s; "
		                "mapping its new size failed and this handle "
		                "has no map left: close it and open the "
		                "environment again", what, env->path_shown);
	}
	__atomic_fetch_and(&env->gate, ~SHM__GATE_SHUT, __ATOMIC_RELEASE);
	return 0;
}

int shm__map_adopt(shm_env *env, const char *what)
{
	return map_adopt(env, what, 0);
}

int shm__map_adopt_stored(shm_env *env, const char *what)
{
	shm__lmdb_meta m;

	/* the newest meta page's size (a process that opened with a larger
	 * map_size stores it at its first commit); none found: pages alone */
	if (shm__lmdb_meta_read(env, NULL, &m) || !m.found ||
	    m.map_size <= __atomic_load_n(&env->opt.map_size, __ATOMIC_RELAXED))
		return SHM_ENOTFOUND;
	return map_adopt(env, what, m.map_size);
}

int shm_env_sync(shm_env *env)
{
	int rc;

	if (!env)
		return shm__null(__func__, "env");
	rc = mdb_env_sync(env->mdb, 1);
	return rc ? shm__err_mdb(rc, "sync") : 0;
}

int shm_env_reader_check(shm_env *env, int *cleared)
{
	int dead = 0, rc;

	if (cleared)
		*cleared = 0;
	if (!env)
		return shm__null(__func__, "env");
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

static int count_reader(int pid, size_t thread, size_t txnid, void *ctx)
{
	++*(unsigned *)ctx;
	return 0;
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

static uint64_t entries_of(MDB_txn *txn, MDB_dbi dbi)
{
	MDB_stat st;
	return mdb_stat(txn, dbi, &st) == 0 ? st.ms_entries : 0;
}

int shm_env_info(shm_env *env, shm_info *out)
{
	MDB_txn *txn;
	MDB_envinfo ei;
	MDB_stat st;
	MDB_cursor *cur;
	MDB_val k, v;
	uint64_t f;
	size_t unused = 0;
	int rc;

	if (out)
		memset(out, 0, sizeof *out);
	if (!env)
		return shm__null(__func__, "env");
	if (!out)
		return shm__null(__func__, "out");
	if ((rc = shm__rtxn_get(env, &txn)))
		return rc;
	out->messages = entries_of(txn, env->msg);
	out->statics = entries_of(txn, env->stat);
	out->graph_objects = entries_of(txn, env->obj);
	out->marks = entries_of(txn, env->mark);
	out->log_records = entries_of(txn, env->log);
	out->dead_letters = entries_of(txn, env->dead);
	shm__meta_get(txn, env, "bytes", &out->l1_bytes);
	shm__meta_get(txn, env, "next_seq", &out->next_seq);
	shm__meta_get(txn, env, "flushed", &out->flushed);
	out->rooms = shm__room_count(txn, env);
	shm__meta_get(txn, env, "format", &f);
	out->format_version = (uint32_t)f;
	if (mdb_cursor_open(txn, env->log, &cur) == 0) {
		if (mdb_cursor_get(cur, &k, &v, MDB_FIRST) == 0)
			memcpy(&out->log_first, k.mv_data, 8);
		if (mdb_cursor_get(cur, &k, &v, MDB_LAST) == 0)
			memcpy(&out->log_last, k.mv_data, 8);
		mdb_cursor_close(cur);
	}
	mdb_env_info(env->mdb, &ei); /* in the transaction: they read the map */
	mdb_env_stat(env->mdb, &st);
	rc = shm__free_pages(txn, 0, &unused);
	shm__rtxn_put(env, txn);
	out->map_size = ei.me_mapsize;
	/* LMDB's last page is a high-water mark: the free list is reused */
	out->map_used = (size_t)(ei.me_last_pgno + 1 - unused) * st.ms_psize;
	out->readers_used = 0; /* me_numreaders is a high-water mark */
	shm__readers(env, count_reader, &out->readers_used);
	out->readers_max = ei.me_maxreaders;
	if (rc)
		memset(out, 0, sizeof *out);
	return rc;
}
