/*
 * libshm/env.c - opening and closing an environment directory, its LMDB
 * databases, the format check, the L1 policy stored in the environment,
 * shm_env_info.
 *
 * Invariants (the environment's; 3, 4, 6 and 8 are with the code they are
 * about: datafile.c a data file cut short, readers.c the pooled read
 * transactions, gate.c the map replaced, registry.c one handle per
 * environment and process)
 *  1. meta "format" equals SHM_FORMAT_VERSION in every environment this
 *     version opens; anything else is refused with SHM_EVERSION.
 *  2. Only an empty map (no key in LMDB's main database) is made an shm
 *     environment; any other LMDB environment without our format is
 *     refused before anything is written in it or next to it.
 *  5. An environment opened read-write has meta SHM__ROOM_FLOOR: set at its
 *     creation (or at its first read-write open by a version that keeps
 *     one) to that time, room.c invariant 2.
 *  7. A child of fork() owns none of the handle it inherited (shm.h's fork
 *     rule): its pooled read transactions hold the parent's reader slots,
 *     its server connections the parent's sessions, its counts not yet
 *     published the parent's reads. shm_env_close there frees the child's
 *     memory and mappings only: an abort of a pooled transaction would free
 *     the parent's slot, which another process may then take and the
 *     parent's next renewal fail on and free again, under that reader's
 *     snapshot; libpq's goodbye on a shared socket would end the parent's
 *     session. The pooled transactions are left (a few hundred bytes).
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
 * 10. A full disk (or a file size limit) refuses an open, naming the file,
 *     and kills no process: a store into a hole of a mapped file on a
 *     full disk is SIGBUS (stats.c invariant 3 for shm.stats). lock.mdb's
 *     first page (LMDB's header, which the first opener stores through
 *     its mapping) is allocated before mdb_env_open, the rest of it (the
 *     reader slots, stored the same way by every reader) before the open
 *     returns, through LMDB's own descriptor (invariant 8: closing
 *     another drops this process's locks). A data.mdb this open made but
 *     could not write whole (an environment being created) is cut back to
 *     empty: cut short, LMDB took it for a file of another kind, refused
 *     ever after; empty, the next open makes it anew.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stddef.h>
#include <sys/resource.h>
#include <sys/stat.h>
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

int shm__not_shm(shm_env *env, const char *why)
{
	return shm__err(SHM_EVERSION, "%s: not an shm environment: %s",
	                env->path_shown, why);
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

/* Invariants 1, 2 and 5, and datafile.c's 3, in one transaction, under
 * the writers' lock in a read-write open: a failure aborts it, so a
 * refused environment is left unchanged. */
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

int shm__allocate(int fd, off_t len, const char *name)
{
	/* Linux's fallocate, not posix_fallocate: where the file system
	 * cannot allocate ahead, glibc's stand-in writes a zero into every
	 * block it reads as zero, over what another process may store
	 * there meanwhile (a reader slot, a counter) */
	int rc = fallocate(fd, 0, 0, len) == 0 ? 0 : errno;
	struct rlimit rl;

	if (rc == EINTR)
		rc = fallocate(fd, 0, 0, len) == 0 ? 0 : errno;
	if (rc == 0 || rc == EOPNOTSUPP || rc == ENOSYS || rc == EINVAL)
		return 0; /* done, or a file system that allocates on write */
	if (rc == EFBIG && getrlimit(RLIMIT_FSIZE, &rl) == 0 &&
	    rl.rlim_cur != RLIM_INFINITY)
		return shm__err(rc, "%s: cannot allocate its %lld bytes: this "
		                "process's file size limit (ulimit -f) is %llu "
		                "byte%s", name, (long long)len,
		                (unsigned long long)rl.rlim_cur,
		                shm__plural(rl.rlim_cur));
	if (rc == ENOSPC)
		return shm__err(rc, "%s: cannot allocate its %lld bytes: the "
		                "disk is full; free some space, then open again",
		                name, (long long)len);
	return shm__err(rc, "%s: cannot allocate its %lld bytes", name,
	                (long long)len);
}

/* LMDB's header in lock.mdb: its first page, written by the first opener
 * through its mapping (invariant 10). */
#define LOCK_HEAD 4096

/* Invariant 10, before mdb_env_open: DIR/lock.mdb (made if missing, as
 * LMDB would, with its mode) with blocks for its first LOCK_HEAD bytes. A
 * descriptor of its own is safe here, and here only: this process holds
 * no lock on the file yet (registry.c invariant 8: a second handle is
 * refused before, and fork() passes no fcntl lock on). A lock file this
 * process cannot open is left to mdb_env_open, which says why
 * (open_denied). */
static int lock_head_allocate(const char *dir, const char *shown)
{
	char path[4200], name[SHM__SHOWN_LONG_MAX + sizeof "/lock.mdb"];
	struct stat st;
	int fd, rc = 0;

	if ((size_t)snprintf(path, sizeof path, "%s/lock.mdb", dir) >=
	    sizeof path)
		return 0;
	snprintf(name, sizeof name, "%s/lock.mdb", shown);
	if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0664)) < 0)
		return 0;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size < LOCK_HEAD)
		rc = shm__allocate(fd, LOCK_HEAD, name);
	close(fd);
	return rc;
}

/* Invariant 10, after mdb_env_open: every block of DIR/lock.mdb, through
 * LMDB's own descriptor of it (lmdb.h gives none: found among this
 * process's open ones by device and inode). Opening and closing one of
 * its own would drop the fcntl locks LMDB holds for this process, and
 * another process's stale-reader check would then free this one's reader
 * slots (registry.c invariant 8). Not found (no /proc): left as it is. */
static int lock_file_allocate(const char *dir, const char *shown)
{
	char path[4200], name[SHM__SHOWN_LONG_MAX + sizeof "/lock.mdb"];
	struct stat want, st;
	struct dirent *e;
	int fd = -1, rc = 0;
	DIR *d;

	if ((size_t)snprintf(path, sizeof path, "%s/lock.mdb", dir) >=
	        sizeof path ||
	    stat(path, &want) != 0 || !(d = opendir("/proc/self/fd")))
		return 0;
	while (fd < 0 && (e = readdir(d))) {
		char *end;
		long n = strtol(e->d_name, &end, 10);
		if (end != e->d_name && !*end && n != dirfd(d) &&
		    fstat((int)n, &st) == 0 && st.st_dev == want.st_dev &&
		    st.st_ino == want.st_ino)
			fd = (int)n;
	}
	closedir(d);
	snprintf(name, sizeof name, "%s/lock.mdb", shown);
	if (fd >= 0 && st.st_size > 0)
		rc = shm__allocate(fd, st.st_size, name);
	return rc;
}

/* The size of DIR/data.mdb, -1 if it is not there (or cannot be told). */
static off_t data_file_size(const char *dir)
{
	char path[4200];
	struct stat st;

	if ((size_t)snprintf(path, sizeof path, "%s/data.mdb", dir) >=
	    sizeof path || stat(path, &st) != 0)
		return -1;
	return st.st_size;
}

/* mdb_env_open's ENOSPC, EFBIG or EDQUOT names no file: data.mdb when it
 * is shorter than LMDB's two meta pages (a new environment's, which this
 * open made if data_before, its size before, is -1 or 0: emptied,
 * invariant 10), else lock.mdb
 * (which LMDB sizes first); with the cause. */
static int open_no_space(int rc, const char *dir, const char *shown,
                         off_t data_before)
{
	char path[4200];
	off_t now = data_file_size(dir);
	bool data = now >= 0 && now < 2 * LOCK_HEAD;
	struct rlimit rl;
	/* LMDB says ENOSPC for its meta pages written short, whatever the
	 * cause: a data.mdb that reached the limit reached the limit */
	bool limit = getrlimit(RLIMIT_FSIZE, &rl) == 0 &&
	             rl.rlim_cur != RLIM_INFINITY &&
	             (rc == EFBIG || (data && (rlim_t)now >= rl.rlim_cur));

	if (data && data_before <= 0 &&
	    (size_t)snprintf(path, sizeof path, "%s/data.mdb", dir) <
	        sizeof path)
		(void)!truncate(path, 0); /* else as it was */
	if (limit)
		return shm__err(EFBIG, "%s/%s: cannot be written: this "
		                "process's file size limit (ulimit -f) is %llu "
		                "byte%s",
		                shown, data ? "data.mdb" : "lock.mdb",
		                (unsigned long long)rl.rlim_cur,
		                shm__plural(rl.rlim_cur));
	if (rc == ENOSPC)
		return shm__err(rc, "%s/%s: cannot be written: the disk is "
		                "full; free some space, then open again", shown,
		                data ? "data.mdb" : "lock.mdb");
	return shm__err(rc, "%s/%s: cannot be written", shown,
	                data ? "data.mdb" : "lock.mdb");
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
	off_t data_before = data_file_size(dir);
	if ((rc = lock_head_allocate(dir, env->path_shown))) {
		if (!had_lock) /* the empty one it made */
			lock_file_drop(dir);
		goto fail;
	}
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
		else if (rc == ENOSPC || rc == EFBIG || rc == EDQUOT)
			rc = open_no_space(rc, dir, env->path_shown,
			                   data_before);
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
	if ((rc = lock_file_allocate(dir, env->path_shown)))
		goto fail; /* invariant 10: before any reader takes a slot */
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

int shm_env_sync(shm_env *env)
{
	int rc;

	if (!env)
		return shm__null(__func__, "env");
	if ((rc = shm__forked(env)))
		return rc;
	rc = mdb_env_sync(env->mdb, 1);
	return rc ? shm__err_mdb(rc, "sync") : 0;
}

static int count_reader(int pid, size_t thread, size_t txnid, void *ctx)
{
	++*(unsigned *)ctx;
	return 0;
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
