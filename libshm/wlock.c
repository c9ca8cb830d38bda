/*
 * libshm/wlock.c - the writers' own lock, taken before LMDB's write lock.
 *
 * LMDB's write mutex is a robust process-shared pthread mutex that it locks
 * without a timeout. We saw (about once in 150 runs of test_multiproc's
 * kill test) a writer sleep forever on it while it was free: a wake-up lost
 * when another writer was SIGKILLed around its unlock. libshm writers
 * therefore queue on a mutex of their own in DIR/shm.wlock, with a timed
 * wait: a lost wake-up costs at most SHM_WLOCK_POLL_MS, never a hang, and
 * LMDB's mutex, taken only by the holder of this one, has no waiters.
 *
 * Invariants
 *  1. A handle holds the lock exactly while it has an LMDB write txn open
 *     (shm__wlock_acquire before mdb_txn_begin, release after commit or
 *     abort).
 *  2. The lock guards nothing by itself (LMDB's transaction does): a
 *     holder's death (EOWNERDEAD) just makes it consistent again.
 *  3. Every read-write handle holds a shared flock() on shm.wlock while
 *     it is open. An opener that gets it exclusive is the only one: it
 *     initialises the mutex afresh, whatever the file says. The file
 *     outlives the processes (a host crash, a copy of a live environment)
 *     and may say "held" by a thread no process of this host has, which
 *     the kernel never frees (it frees a dead owner's robust mutexes from
 *     that owner's own list) and every writer would wait for for ever.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#ifdef __SANITIZE_THREAD__
#include <sanitizer/tsan_interface.h>
#endif

#include "internal.h"

#define SHM_WLOCK_MAGIC 0x53484d574c4f434bull /* "SHMWLOCK" */
#define SHM_WLOCK_POLL_MS 20

struct shm__wlock {
	uint64_t magic;
	pthread_mutex_t mutex;
};

int shm__wlock_open(shm_env *env)
{
	char path[PATH_MAX];
	/* path as error texts name it */
	char name[SHM__SHOWN_LONG_MAX + sizeof "/shm.wlock"];
	struct stat st;
	void *map = MAP_FAILED;
	int fd, rc = 0;

	/* a cut name would open another file */
	int n = snprintf(path, sizeof path, "%s/shm.wlock", env->path);
	snprintf(name, sizeof name, "%s/shm.wlock", env->path_shown);
	if (n < 0 || (size_t)n >= sizeof path)
		return shm__err(SHM_EINVAL, "path too long (%d bytes, at most "
		                "%d): %s", n, PATH_MAX - 1, name);
	if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0664)) < 0)
		return shm__err(errno, "open %s", name);
	/* Invariant 3. The others wait on flock until the only opener has
	 * sized the file and initialised the mutex. */
	bool alone = flock(fd, LOCK_EX | LOCK_NB) == 0;
	if ((!alone && (errno != EWOULDBLOCK || flock(fd, LOCK_SH) != 0)) ||
	    fstat(fd, &st) != 0) {
		rc = shm__err(errno, "lock %s", name);
		goto out;
	}
	/* its block allocated: the mutex is stored through the mapping, and
	 * a store into a hole on a full disk is SIGBUS (stats.c invariant 3) */
	if ((rc = shm__allocate(fd, sizeof(struct shm__wlock), name)))
		goto out;
	map = mmap(NULL, sizeof(struct shm__wlock), PROT_READ | PROT_WRITE,
	           MAP_SHARED, fd, 0);
	if (map == MAP_FAILED) {
		rc = shm__err(errno, "mmap %s", name);
		goto out;
	}
	struct shm__wlock *l = map;
	if (alone || l->magic != SHM_WLOCK_MAGIC) {
		pthread_mutexattr_t a;
		pthread_mutexattr_init(&a);
		pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
		pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
		/* a write started inside another write fails (EDEADLK) */
		pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK);
		rc = pthread_mutex_init(&l->mutex, &a);
		pthread_mutexattr_destroy(&a);
		if (rc) {
			rc = shm__err(rc, "init %s", name);
			goto out;
		}
		__atomic_store_n(&l->magic, SHM_WLOCK_MAGIC, __ATOMIC_RELEASE);
	}
	if (alone && flock(fd, LOCK_SH) != 0) {
		rc = shm__err(errno, "lock %s", name);
		goto out;
	}
	env->wlock = l;
	env->wlock_fd = fd;
	return 0;
out:
	if (map != MAP_FAILED)
		munmap(map, sizeof(struct shm__wlock));
	close(fd);
	return rc;
}

void shm__wlock_close(shm_env *env)
{
	if (env->wlock) {
		munmap(env->wlock, sizeof(struct shm__wlock));
		close(env->wlock_fd); /* its shared flock with it */
	}
	env->wlock = NULL;
}

/* A lock taken over from a dead holder is ours (POSIX; the release's
 * pthread_mutex_unlock returns 0, where this errorcheck mutex gives EPERM
 * to a thread that does not hold it). ThreadSanitizer's interceptor of
 * pthread_mutex_timedlock takes note of the lock only when it returns 0
 * (those of lock and trylock do on EOWNERDEAD too) and then calls the
 * release an "unlock of an unlocked mutex": it is told here. */
static void owner_dead_taken(pthread_mutex_t *m)
{
#ifdef __SANITIZE_THREAD__
	__tsan_mutex_pre_lock(m, __tsan_mutex_try_lock);
	__tsan_mutex_post_lock(m, __tsan_mutex_try_lock, 0);
#else
	(void)m;
#endif
}

int shm__wlock_acquire(shm_env *env)
{
	for (;;) {
		struct timespec t;
		clock_gettime(CLOCK_REALTIME, &t);
		t.tv_nsec += SHM_WLOCK_POLL_MS * 1000000L;
		if (t.tv_nsec >= 1000000000L) {
			t.tv_sec++;
			t.tv_nsec -= 1000000000L;
		}
		int rc = pthread_mutex_timedlock(&env->wlock->mutex, &t);
		if (rc == 0)
			return 0;
		if (rc == EOWNERDEAD) { /* invariant 2 */
			owner_dead_taken(&env->wlock->mutex);
			return pthread_mutex_consistent(&env->wlock->mutex)
			               ? shm__err(EINVAL, "writers' lock")
			               : 0;
		}
		if (rc != ETIMEDOUT)
			return shm__err(rc, "writers' lock");
	}
}

void shm__wlock_release(shm_env *env)
{
	pthread_mutex_unlock(&env->wlock->mutex);
}
