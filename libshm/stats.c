/*
 * libshm/stats.c - counters and latency histograms shared by every process
 * (the file DIR/shm.stats, mapped MAP_SHARED) plus each handle's own.
 *
 * Invariants
 *  1. Shared counters only grow, by relaxed atomic adds: readers may see a
 *     slightly old value, never a torn one. Read-path counts (L1 and
 *     static hits, get latency) are added in batches (internal.h), so
 *     another process sees a live handle's reads up to 63 counts late.
 *  2. The atime table is a hint for eviction (last access, seconds, hashed
 *     slot): losing or colliding an update only makes eviction less exact.
 *  3. Every block of the file is allocated before a read-write handle maps
 *     it (shm__allocate): the counters and the atime table are stored
 *     through the mapping, and a store into a hole of a file on a full
 *     disk is SIGBUS, which killed an application that merely read. An
 *     open that cannot allocate them is refused, naming the file.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "internal.h"

#define SHM_STATS_MAGIC 0x53484d5354415453ull /* "SHMSTATS" */
#define SHM_STATS_VERSION 1u

uint64_t shm__mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static unsigned bucket_of(uint64_t ns)
{
	unsigned b = ns ? 63u - (unsigned)__builtin_clzll(ns) : 0;
	return b < SHM_HIST_BUCKETS ? b : SHM_HIST_BUCKETS - 1;
}

void shm__hist_add(shm_env *env, int which, uint64_t ns)
{
	shm_hist *l = which ? &env->local.get_latency : &env->local.put_latency;
	unsigned b = bucket_of(ns);
	__atomic_fetch_add(&l->count, 1, __ATOMIC_RELAXED);
	__atomic_fetch_add(&l->bucket[b], 1, __ATOMIC_RELAXED);
	if (!which) {
		shm_hist *s = &env->sw->c.put_latency;
		__atomic_fetch_add(&s->count, 1, __ATOMIC_RELAXED);
		__atomic_fetch_add(&s->bucket[b], 1, __ATOMIC_RELAXED);
		return;
	}
	shm_hist *p = &env->pending.get_latency;
	__atomic_fetch_add(&p->count, 1, __ATOMIC_RELAXED);
	__atomic_fetch_add(&p->bucket[b], 1, __ATOMIC_RELAXED);
	shm__count_tick(env);
}

void shm__count_tick(shm_env *env)
{
	if (__atomic_add_fetch(&env->unpublished, 1, __ATOMIC_RELAXED) >=
	    SHM_PUBLISH_EVERY)
		shm__publish(env);
}

void shm__publish(shm_env *env)
{
	uint64_t *p = (uint64_t *)&env->pending;
	uint64_t *s = (uint64_t *)&env->sw->c;

	__atomic_store_n(&env->unpublished, 0, __ATOMIC_RELAXED);
	for (size_t i = 0; i < sizeof env->pending / sizeof(uint64_t); i++)
		if (__atomic_load_n(&p[i], __ATOMIC_RELAXED)) {
			uint64_t n = __atomic_exchange_n(&p[i], 0,
			                                 __ATOMIC_RELAXED);
			__atomic_fetch_add(&s[i], n, __ATOMIC_RELAXED);
		}
}

uint64_t shm_hist_percentile(const shm_hist *h, double p)
{
	uint64_t want, seen = 0;

	if (!h->count || !(p > 0)) /* NaN too: no integer to cast it to */
		return 0;
	want = (uint64_t)((double)h->count * (p > 100 ? 100 : p) / 100.0 + 0.999999);
	for (unsigned i = 0; i < SHM_HIST_BUCKETS; i++) {
		seen += h->bucket[i];
		if (seen >= want)
			return (2ull << i) - 1;
	}
	return UINT64_MAX;
}

static uint32_t slot_of(char kind, const void *key, size_t klen)
{
	/* A message id is a UUID whose last bytes are random already: use
	 * them rather than hashing on the get path. */
	if (kind == SHM_KIND_MSG && klen == 16) {
		uint32_t v;
		memcpy(&v, (const uint8_t *)key + 12, 4);
		return v & (SHM_ATIME_SLOTS - 1);
	}
	return (uint32_t)(XXH3_64bits_withSeed(key, klen, (uint64_t)kind) &
	                  (SHM_ATIME_SLOTS - 1));
}

void shm__touch(shm_env *env, char kind, const void *key, size_t klen)
{
	uint32_t now = (uint32_t)time(NULL);
	uint32_t *slot = &env->sw->atime[slot_of(kind, key, klen)];

	/* Skip the store when the slot already says "this second": keeps the
	 * cache line shared between processes on hot keys. */
	if (__atomic_load_n(slot, __ATOMIC_RELAXED) != now)
		__atomic_store_n(slot, now, __ATOMIC_RELAXED);
}

void shm__touch_prefetch(shm_env *env, char kind, const void *key,
                         size_t klen)
{
	__builtin_prefetch(&env->sw->atime[slot_of(kind, key, klen)], 1, 0);
}

uint32_t shm__atime(shm_env *env, char kind, const void *key, size_t klen)
{
	return __atomic_load_n(&env->shared->atime[slot_of(kind, key, klen)],
	                       __ATOMIC_RELAXED);
}

int shm__shared_open(shm_env *env)
{
	char path[PATH_MAX];
	/* path as error texts name it */
	char name[SHM__SHOWN_LONG_MAX + sizeof "/shm.stats"];
	struct stat st;
	int fd, rc = 0;
	void *map;

	/* a cut name would open another file */
	int n = snprintf(path, sizeof path, "%s/shm.stats", env->path);
	snprintf(name, sizeof name, "%s/shm.stats", env->path_shown);
	if (n < 0 || (size_t)n >= sizeof path)
		return shm__err(SHM_EINVAL, "path too long (%d bytes, at most "
		                "%d): %s", n, PATH_MAX - 1, name);
	fd = open(path, env->opt.read_only ? O_RDONLY : O_RDWR | O_CREAT, 0664);
	if (fd < 0 && env->opt.read_only && errno == ENOENT)
		return shm__err(ENOENT, "open %s: environment has no stats "
		                "file (data.mdb copied alone, as mdb_copy does? "
		                "a read-write open makes it: shmctl -e %s init)",
		                name, env->path_shown);
	if (fd < 0)
		return shm__err(errno, "open %s", name);
	/* First opener sizes and stamps the file; others wait on the lock. */
	if (!env->opt.read_only) {
		if (flock(fd, LOCK_EX) != 0) {
			rc = shm__err(errno, "lock %s", name);
			goto out;
		}
	}
	if (fstat(fd, &st) != 0) {
		rc = shm__err(errno, "stat %s", name);
		goto out;
	}
	if (st.st_size == 0 && !env->opt.read_only) {
		shm__shared hdr = {.magic = SHM_STATS_MAGIC,
		                   .version = SHM_STATS_VERSION};
		if ((rc = shm__allocate(fd, sizeof(shm__shared), name))) {
			/* empty again: a file system that grew it part way
			 * would leave it the wrong size, refused ever after */
			(void)!ftruncate(fd, 0);
			goto out;
		}
		if (pwrite(fd, &hdr, offsetof(shm__shared, next_seq_hint), 0) < 0) {
			rc = shm__err(errno, "initialise %s", name);
			goto out;
		}
	} else if ((size_t)st.st_size != sizeof(shm__shared)) {
		rc = shm__err(SHM_EVERSION, "%s: %lld byte%s, this version uses %zu",
		              name, (long long)st.st_size,
		              shm__plural(st.st_size), sizeof(shm__shared));
		goto out;
	} else if (!env->opt.read_only &&
	           (rc = shm__allocate(fd, sizeof(shm__shared), name))) {
		goto out; /* one made sparse (ftruncate) by an older version */
	}
	map = mmap(NULL, sizeof(shm__shared),
	           env->opt.read_only ? PROT_READ : PROT_READ | PROT_WRITE,
	           MAP_SHARED, fd, 0);
	if (map == MAP_FAILED) {
		rc = shm__err(errno, "mmap %s", name);
		goto out;
	}
	env->shared = map;
	env->shared_size = sizeof(shm__shared);
	if (env->shared->magic != SHM_STATS_MAGIC ||
	    env->shared->version != SHM_STATS_VERSION) {
		rc = shm__err(SHM_EVERSION, "%s: unknown stats format version %u",
		              name, env->shared->version);
		munmap(map, sizeof(shm__shared));
		env->shared = NULL;
		goto out;
	}
	env->sw = env->shared;
	if (env->opt.read_only) {
		env->sw = calloc(1, sizeof(shm__shared));
		if (!env->sw) {
			rc = shm__err(ENOMEM, "stats scratch");
			shm__shared_close(env);
		}
	}
out:
	/* The mapping keeps the open file alive: unlock explicitly. */
	if (!env->opt.read_only)
		flock(fd, LOCK_UN);
	close(fd);
	return rc;
}

void shm__shared_close(shm_env *env)
{
	if (env->sw && env->sw != env->shared)
		free(env->sw);
	if (env->shared)
		munmap(env->shared, env->shared_size);
	env->shared = env->sw = NULL;
}

int shm_stats_shared(shm_env *env, shm_counters *out)
{
	const uint64_t *src;
	uint64_t *dst = (uint64_t *)out;

	if (out)
		memset(out, 0, sizeof *out);
	if (!env)
		return shm__null(__func__, "env");
	if (!out)
		return shm__null(__func__, "out");
	/* a child of fork() holds its parent's pending counts: the parent
	 * publishes them (env.c invariant 7) */
	if (env->pid == getpid())
		shm__publish(env);
	src = (const uint64_t *)&env->shared->c;

	for (size_t i = 0; i < sizeof *out / sizeof(uint64_t); i++)
		dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
	return 0;
}

void shm_stats_local(shm_env *env, shm_counters *out)
{
	const uint64_t *src;
	uint64_t *dst = (uint64_t *)out;

	if (!env || !out) { /* shm.h: zeros for a NULL env, a NULL out no-op */
		if (out)
			memset(out, 0, sizeof *out);
		return;
	}
	src = (const uint64_t *)&env->local;
	for (size_t i = 0; i < sizeof *out / sizeof(uint64_t); i++)
		dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
}
