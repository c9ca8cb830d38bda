/*
 * libshm/gate.c - the transaction gate of a handle, and the adoption of
 * a map another process grew.
 *
 * Invariant (one of the environment's, numbered with env.c's)
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
 *     transaction (the pool, readers.c invariant 4) reads nothing of the
 *     map and does not count. The thread that adopts may hold no transaction; if another
 *     thread's stays open longer than SHM_ADOPT_WAIT_MS, or the new map
 *     cannot be mapped, the call fails with MDB_MAP_RESIZED (the next one
 *     tries again) or, map lost, MDB_PANIC from then on. While opening, the
 *     handle is not shared yet: it adopts without the gate. A write that
 *     finds this map full adopts the same way the size stored in the
 *     environment, read from its newest meta page, if it is larger
 *     (shm__map_adopt_stored): LMDB says nothing until pages pass this map.
 */
#include <time.h>
#include <unistd.h>

#include "internal.h"

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

int shm__forked(shm_env *env)
{
	if (!(__atomic_load_n(&env->gate, __ATOMIC_ACQUIRE) & SHM__GATE_FORKED))
		return 0;
	return shm__err(SHM_EINVAL, "%s: this handle was opened by process "
	                "%ld, and this is its child %ld: a handle must not be "
	                "used across fork() (LMDB's rule): the child opens its "
	                "own with shm_env_open, and may only shm_env_close "
	                "this one", env->path_shown, (long)env->pid,
	                (long)getpid());
}

int shm__gate_wait(shm_env *env)
{
	unsigned long v = __atomic_load_n(&env->gate, __ATOMIC_ACQUIRE);

	if (v & SHM__GATE_FORKED) {
		__atomic_sub_fetch(&env->gate, 1, __ATOMIC_RELAXED);
		return shm__forked(env);
	}

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
