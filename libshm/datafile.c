/*
 * libshm/datafile.c - the checks at open of an environment's data file cut
 * short, made before LMDB reads a page that may be missing.
 *
 * Invariant (one of the environment's, numbered with env.c's)
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
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

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
	                "%s/data.mdb: %llu byte%s, shorter than the %llu bytes "
	                "of pages in use",
	                env->path_shown, (unsigned long long)size,
	                shm__plural(size),
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
	                "%s/data.mdb: %llu byte%s, but page %llu (the root of "
	                "%s) lies beyond them",
	                env->path_shown, (unsigned long long)size,
	                shm__plural(size),
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

/* Right after mdb_env_open, before anything is created next to the map:
 * invariant 3 with the pages the meta page alone accounts for (both meta
 * pages and the main database's), then with the roots of a read
 * transaction's snapshot: the free list's and the main database's before
 * any other page is read, ours once the main database is known to hold
 * ours; and env.c invariant 2 as far as an environment with keys in the
 * main database must have our 'meta' database (open_dbs checks the
 * rest). */
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
		                        "byte%s, fewer than the %zu of LMDB's "
		                        "first meta page", shown,
		                        (long long)st.st_size,
		                        shm__plural(st.st_size), sizeof pg);
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
		                        "byte%s, fewer than the %llu of LMDB's "
		                        "two meta pages", shown,
		                        (long long)st.st_size,
		                        shm__plural(st.st_size), 2ull * psize);
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
