/*
 * libshm/static.c - statics and their SHAs: lazy generation with one
 * generator per key across processes (a lease), explicit put, peek, bust.
 *
 * "static" database value (key = website(16) + object):
 *
 *   u64 seq (little-endian): the seq of the entry's last log record, which
 *       the L1 bookkeeping needs to move or drop the entry's lru key
 *   static value encoding (shm_log.h), exactly the STATIC_PUT payload:
 *       u8 version 1 | u8 flags (bit 0: LZ4 frame) | u16 0 |
 *       i64 generated_at | sha1[20] | sha256[32] | u32 raw_len |
 *       u32 stored_len | content (stored_len bytes)
 *
 * The L1 bytes of a static are the size of that whole value.
 *
 * "lease" database value (same key): i32 pid | i64 expiry (us, wall clock).
 *
 * Invariants
 *  1. At most one live, unexpired lease per key: taking it and checking it
 *     happen in one write transaction.
 *  2. A generated static is stored only by the process that still holds the
 *     lease it took (same pid and expiry): if the lease was taken over or
 *     removed by a bust meanwhile, the result is returned to its caller but
 *     not cached, so content rendered before a bust never outlives it.
 *  3. Nobody waits while holding a transaction: waiters poll with read
 *     transactions between sleeps.
 *  4. Hashing and compression run outside the write lock.
 *  5. A holder releases its lease however the generation ends (stored,
 *     generator or encoding failed, store failed), so nobody waits on a
 *     lease that will produce nothing; a dead holder's lease (no process,
 *     or a zombie) is stale at once.
 *  6. A generator may get other statics (a page's blocks), not the one it
 *     is generating, directly or through others: that get would wait for
 *     its own lease until lease_wait_ms. Each thread keeps the keys its
 *     generators are running for (a stack of frames in generate()); a get
 *     of one of them fails at once with SHM_EGENERATOR naming the cycle.
 */
#include <errno.h>
#include <fcntl.h>
#include <lz4frame.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define SV_HEADER 72 /* the static value encoding's header */
#define SV_SEQ 8     /* the seq before it in the database value */
#define LEASE_SIZE 12

static int mdberr(int rc, const char *what)
{
	return rc == MDB_MAP_FULL ? rc : shm__err_mdb(rc, what);
}

static void put_u32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static uint64_t get_u64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static int unhex(const char *h, uint8_t *out, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int v = 0;
		for (int j = 0; j < 2; j++) {
			char c = h[2 * i + j];
			v <<= 4;
			if (c >= '0' && c <= '9')
				v |= c - '0';
			else if (c >= 'a' && c <= 'f')
				v |= c - 'a' + 10;
			else
				return -1;
		}
		out[i] = (uint8_t)v;
	}
	return 0;
}

static void tohex(const uint8_t *b, size_t n, char *out)
{
	static const char d[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = d[b[i] >> 4];
		out[2 * i + 1] = d[b[i] & 0xf];
	}
	out[2 * n] = '\0';
}

/* A caller's copy: one allocation, content NUL-terminated after it. */
static shm_static *static_new(const void *content, size_t len,
                              const char *sha1, const char *sha256,
                              int64_t generated_at)
{
	shm_static *s = malloc(sizeof *s + len + 1);
	uint8_t *c;

	if (s == NULL)
		return NULL;
	c = (uint8_t *)(s + 1);
	if (len)
		memcpy(c, content, len);
	c[len] = '\0';
	s->content = c;
	s->content_len = len;
	memcpy(s->sha1, sha1, 41);
	memcpy(s->sha256, sha256, 65);
	s->generated_at = generated_at;
	return s;
}

void shm_static_free(shm_static *s)
{
	free(s);
}

int shm_static_decode(const void *buf, size_t len, shm_static **out)
{
	const uint8_t *p = buf;
	uint32_t raw_len, stored_len;
	char sha1[41], sha256[65];
	shm_static *s;

	if (out == NULL)
		return shm__null(__func__, "out");
	*out = NULL;
	if (buf == NULL && len)
		return shm__null(__func__, "buf");
	if (buf == NULL || len < SV_HEADER)
		return shm__err(SHM_ECORRUPT, "static value: %zu byte%s, header "
		                              "needs %d", len, shm__plural(len),
		                SV_HEADER);
	if (p[0] != 1)
		return shm__err(SHM_ECORRUPT, "static value: version %u, "
		                              "expected 1", p[0]);
	if ((p[1] & ~1u) || p[2] || p[3])
		return shm__err(SHM_ECORRUPT, "static value: unknown flags 0x%02x",
		                p[1]);
	raw_len = get_u32(p + 64);
	stored_len = get_u32(p + 68);
	if ((size_t)stored_len != len - SV_HEADER)
		return shm__err(SHM_ECORRUPT, "static value: stored_len %u but "
		                              "%zu content byte%s", stored_len,
		                len - SV_HEADER, shm__plural(len - SV_HEADER));
	if (!(p[1] & 1) && raw_len != stored_len)
		return shm__err(SHM_ECORRUPT, "static value: raw_len %u != "
		                              "stored_len %u", raw_len, stored_len);
	tohex(p + 12, 20, sha1);
	tohex(p + 32, 32, sha256);
	if (!(p[1] & 1)) {
		s = static_new(p + SV_HEADER, raw_len, sha1, sha256,
		               (int64_t)get_u64(p + 4));
		if (s == NULL)
			return shm__err(ENOMEM, "static value of %u bytes", raw_len);
		*out = s;
		return 0;
	}

	/* LZ4 frame: decode straight into the copy, once its raw_len is one
	 * it can give (at most 255 bytes per byte, as in log.c) */
	if (raw_len / 255 > stored_len)
		return shm__err(SHM_ECORRUPT, "static value: an LZ4 frame of %u "
		                "byte%s cannot give %u", stored_len,
		                shm__plural(stored_len), raw_len);
	LZ4F_dctx *dctx;
	size_t dst_done = 0, src_done = 0;
	bool ended = false; /* the frame's end mark read */
	if ((s = static_new(NULL, 0, sha1, sha256, (int64_t)get_u64(p + 4))) ==
	    NULL)
		return shm__err(ENOMEM, "static value of %u bytes", raw_len);
	shm_static *big = realloc(s, sizeof *s + (size_t)raw_len + 1);
	if (big == NULL) {
		free(s);
		return shm__err(ENOMEM, "static value of %u bytes", raw_len);
	}
	s = big;
	uint8_t *dst = (uint8_t *)(s + 1);
	s->content = dst;
	s->content_len = raw_len;
	if (LZ4F_isError(LZ4F_createDecompressionContext(&dctx, LZ4F_VERSION))) {
		free(s);
		return shm__err(ENOMEM, "static value: LZ4 context");
	}
	while (src_done < stored_len) {
		size_t dn = raw_len - dst_done, sn = stored_len - src_done;
		size_t r = LZ4F_decompress(dctx, dst + dst_done, &dn,
		                           p + SV_HEADER + src_done, &sn, NULL);
		if (LZ4F_isError(r)) {
			LZ4F_freeDecompressionContext(dctx);
			free(s);
			return shm__err(SHM_ECORRUPT, "static value: LZ4: %s",
			                LZ4F_getErrorName(r));
		}
		dst_done += dn;
		src_done += sn;
		if ((ended = r == 0) || (dn == 0 && sn == 0))
			break; /* the end, or no progress: cut short */
	}
	LZ4F_freeDecompressionContext(dctx);
	/* exactly one whole frame: stored_len bytes, end mark last */
	if (dst_done != raw_len || !ended || src_done != stored_len) {
		free(s);
		if (dst_done != raw_len)
			return shm__err(SHM_ECORRUPT, "static value: LZ4 frame "
			                "gives %zu byte%s, expected %u", dst_done,
			                shm__plural(dst_done), raw_len);
		if (!ended)
			return shm__err(SHM_ECORRUPT, "static value: LZ4 frame of "
			                "%u byte%s without its end mark",
			                stored_len, shm__plural(stored_len));
		return shm__err(SHM_ECORRUPT, "static value: %zu byte%s after "
		                "its LZ4 frame", stored_len - src_done,
		                shm__plural(stored_len - src_done));
	}
	dst[raw_len] = '\0';
	*out = s;
	return 0;
}

/* ----------------------------------------------------------- encoding */

/* An encoded database value (SV_SEQ + payload) and the SHAs in hex. */
typedef struct encoded {
	uint8_t *val;
	size_t vlen;
	char sha1[65], sha256[65]; /* shm_sha_hex writes into 65 bytes */
	int64_t generated_at;
} encoded;

static int encode(shm_env *env, const char *object, const void *content,
                  size_t len, encoded *e)
{
	uint8_t *v;
	size_t bound = 0, stored = len;
	bool lz4 = false;

	memset(e, 0, sizeof *e);
	if (len > env->opt.max_content)
		return shm__err(SHM_ETOOBIG, "static '%s': %zu bytes, at most %u "
		                             "allowed by max_content", object, len,
		                env->opt.max_content);
	if (len > 0 && content == NULL)
		return shm__err(SHM_EINVAL, "static '%s': content is NULL", object);
	shm_sha_hex(SHM_SHA1_GIT, content, len, e->sha1);
	shm_sha_hex(SHM_SHA256, content, len, e->sha256);
	if (!e->sha1[0] || !e->sha256[0])
		return shm__err(ENOMEM, "static '%s': hashing", object);
	e->generated_at = shm_now_us();
	if (len > env->opt.compress_threshold)
		bound = LZ4F_compressFrameBound(len, NULL);
	if ((v = malloc(SV_SEQ + SV_HEADER + (bound > len ? bound : len))) ==
	    NULL)
		return shm__err(ENOMEM, "static '%s': %zu bytes", object, len);
	if (bound) {
		size_t r = shm__lz4_frame(v + SV_SEQ + SV_HEADER, bound,
		                          content, len);
		if (!LZ4F_isError(r) && r < len) {
			stored = r;
			lz4 = true;
		}
	}
	if (!lz4 && len)
		memcpy(v + SV_SEQ + SV_HEADER, content, len);
	uint8_t *h = v + SV_SEQ;
	put_u64(v, 0);
	h[0] = 1;
	h[1] = lz4 ? 1 : 0;
	h[2] = h[3] = 0;
	put_u64(h + 4, (uint64_t)e->generated_at);
	unhex(e->sha1, h + 12, 20);
	unhex(e->sha256, h + 32, 32);
	put_u32(h + 64, (uint32_t)len);
	put_u32(h + 68, (uint32_t)stored);
	e->val = v;
	e->vlen = SV_SEQ + SV_HEADER + stored;
	return 0;
}

/* ------------------------------------------------------ store and drop */

/* Stores e under key with its STATIC_PUT record and L1 bookkeeping. */
static int store_w(shm__wtxn *w, const uint8_t *key, size_t klen, encoded *e)
{
	shm_env *env = w->env;
	MDB_val k = {klen, (void *)key}, d;
	uint64_t old_seq = 0, seq;
	size_t old_bytes = 0;
	int rc;

	rc = mdb_get(w->txn, env->stat, &k, &d);
	if (rc == 0 && d.mv_size >= SV_SEQ) {
		old_seq = get_u64(d.mv_data);
		old_bytes = d.mv_size;
	} else if (rc && rc != MDB_NOTFOUND) {
		return mdberr(rc, "static: read");
	}
	if ((rc = shm__log_append(w, SHM_OP_STATIC_PUT, key, klen,
	                          e->val + SV_SEQ, e->vlen - SV_SEQ, &seq)))
		return rc;
	put_u64(e->val, seq);
	d.mv_size = e->vlen;
	d.mv_data = e->val;
	if ((rc = mdb_put(w->txn, env->stat, &k, &d, 0)))
		return mdberr(rc, "static: store");
	return shm__l1_track(w, SHM_KIND_STATIC, key, klen, old_seq, old_bytes,
	                     seq, e->vlen);
}

int shm__static_drop(shm__wtxn *w, const void *key, size_t klen)
{
	MDB_val k = {klen, (void *)key};
	int rc = mdb_del(w->txn, w->env->stat, &k, NULL);
	return rc == 0 || rc == MDB_NOTFOUND ? 0 : mdberr(rc, "static: drop");
}

int shm__static_bust_w(shm__wtxn *w, const uint8_t *key, size_t klen,
                       bool *existed)
{
	shm_env *env = w->env;
	MDB_val k = {klen, (void *)key}, d;
	uint64_t seq;
	int rc;

	*existed = false;
	rc = mdb_get(w->txn, env->stat, &k, &d);
	if (rc == 0) {
		uint64_t old_seq = d.mv_size >= SV_SEQ ? get_u64(d.mv_data) : 0;
		size_t bytes = d.mv_size;
		*existed = true;
		if ((rc = mdb_del(w->txn, env->stat, &k, NULL)))
			return mdberr(rc, "static: bust");
		if ((rc = shm__l1_untrack(w, SHM_KIND_STATIC, key, klen,
		                          old_seq, bytes)))
			return rc;
	} else if (rc != MDB_NOTFOUND) {
		return mdberr(rc, "static: read");
	}
	/* a generator running now renders pre-bust content: invariant 2 */
	rc = mdb_del(w->txn, env->lease, &k, NULL);
	if (rc && rc != MDB_NOTFOUND)
		return mdberr(rc, "static: drop lease");
	return shm__log_append(w, SHM_OP_STATIC_BUST, key, klen, "", 0, &seq);
}

/* ---------------------------------------------------------------- put */

struct put {
	const uint8_t *key;
	size_t klen;
	encoded *e;
};

static int put_body(shm__wtxn *w, void *ctx)
{
	struct put *c = ctx;
	return store_w(w, c->key, c->klen, c->e);
}

int shm_static_put(shm_env *env, const shm_uuid *website, const char *object,
                   const void *content, size_t len, shm_static **out)
{
	uint8_t key[SHM_OBJKEY_MAX];
	size_t klen;
	shm_static *s = NULL;
	encoded e;
	int rc;

	if (out)
		*out = NULL;
	if (!env)
		return shm__null(__func__, "env");
	if (len && !content)
		return shm__null(__func__, "content");
	if ((rc = shm__objkey(__func__, website, object, key, &klen)) ||
	    (rc = encode(env, object, content, len, &e)))
		return rc;
	/* the caller's copy is made first: once stored, nothing can fail */
	if (out && !(s = static_new(content, len, e.sha1, e.sha256,
	                            e.generated_at))) {
		free(e.val);
		return shm__err(ENOMEM, "static '%s': copy", object);
	}
	struct put c = {key, klen, &e};
	if ((rc = shm__write(env, put_body, &c)) == 0 && out)
		*out = s;
	else
		shm_static_free(s);
	free(e.val);
	return rc;
}

/* --------------------------------------------------------------- peek */

/* 0 and *out, SHM_ENOTFOUND (no error text), or an error. */
static int peek_key(shm_env *env, const uint8_t *key, size_t klen,
                    shm_static **out)
{
	MDB_val k = {klen, (void *)key}, d;
	MDB_txn *txn;
	int rc;

	if ((rc = shm__rtxn_get(env, &txn)))
		return rc;
	rc = mdb_get(txn, env->stat, &k, &d);
	if (rc == 0) {
		if (d.mv_size < SV_SEQ)
			rc = shm__err(SHM_ECORRUPT, "static value: %zu byte%s",
			              d.mv_size, shm__plural(d.mv_size));
		else
			rc = shm_static_decode((const uint8_t *)d.mv_data + SV_SEQ,
			                       d.mv_size - SV_SEQ, out);
	} else if (rc == MDB_NOTFOUND) {
		rc = SHM_ENOTFOUND;
	} else {
		rc = shm__err_mdb(rc, "static: read");
	}
	shm__rtxn_put(env, txn);
	if (rc == 0)
		shm__touch(env, SHM_KIND_STATIC, key, klen);
	return rc;
}

int shm_static_peek(shm_env *env, const shm_uuid *website, const char *object,
                    shm_static **out)
{
	uint8_t key[SHM_OBJKEY_MAX];
	size_t klen;
	int rc;

	if (out == NULL)
		return shm__null(__func__, "out");
	*out = NULL;
	if (!env)
		return shm__null(__func__, "env");
	if ((rc = shm__objkey(__func__, website, object, key, &klen)))
		return rc;
	rc = peek_key(env, key, klen, out);
	if (rc == 0) {
		SHM__COUNT_READ(env, static_hits, 1);
	} else if (rc == SHM_ENOTFOUND) {
		SHM__COUNT(env, static_misses, 1);
		char id[37];
		shm_uuid_format(website, id);
		rc = shm__err(SHM_ENOTFOUND, "static %s '%s': not in L1", id,
		              object);
	}
	return rc;
}

/* ----------------------------------------------------- get and leases */

/* Whether pid is a zombie: dead, not yet reaped by its parent (Linux:
 * state Z or X in /proc/PID/stat, and one thread: a leader that called
 * pthread_exit is Z too while its other threads run). False when that
 * cannot be read. */
static bool pid_zombie(int32_t pid)
{
	char path[32], buf[512], state, *end;
	long threads;
	ssize_t n;
	int fd;

	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return false;
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	/* "pid (comm) state f4 ... f19 num_threads ...": comm (at most 15
	 * bytes) may hold ')', the fields after it are numbers */
	if ((end = strrchr(buf, ')')) == NULL ||
	    sscanf(end + 1, " %c%*s%*s%*s%*s%*s%*s%*s%*s%*s%*s%*s%*s%*s%*s%*s"
	                    "%*s%ld", &state, &threads) != 2)
		return false;
	return (state == 'Z' || state == 'X') && threads <= 1;
}

/* A lease holder is dead when kill(pid, 0) finds no process, or when it is
 * a zombie (which kill() still finds): waiters take over at once. */
static bool pid_dead(int32_t pid)
{
	if (pid <= 0 || (kill((pid_t)pid, 0) == -1 && errno == ESRCH))
		return true;
	return pid_zombie(pid);
}

static bool lease_stale(const uint8_t *v, size_t len, int64_t now)
{
	int32_t pid;
	int64_t expiry;

	if (len != LEASE_SIZE)
		return true;
	memcpy(&pid, v, 4);
	memcpy(&expiry, v + 4, 8);
	return expiry <= now || pid_dead(pid);
}

enum acq_state { ACQ_HELD, ACQ_TAKEN, ACQ_FOUND };

struct acquire {
	const uint8_t *key;
	size_t klen;
	uint32_t lease_ms;
	/* out, reset by each run of the body */
	enum acq_state state;
	bool took_over;
	uint8_t lease[LEASE_SIZE]; /* ours, when ACQ_TAKEN */
	shm_static *found;
};

static int acquire_body(shm__wtxn *w, void *ctx)
{
	struct acquire *c = ctx;
	shm_env *env = w->env;
	MDB_val k = {c->klen, (void *)c->key}, d;
	int rc;

	c->state = ACQ_HELD;
	c->took_over = false;
	shm_static_free(c->found);
	c->found = NULL;
	rc = mdb_get(w->txn, env->stat, &k, &d);
	if (rc == 0 && d.mv_size >= SV_SEQ) {
		/* generated since our miss */
		rc = shm_static_decode((const uint8_t *)d.mv_data + SV_SEQ,
		                       d.mv_size - SV_SEQ, &c->found);
		if (rc == 0)
			c->state = ACQ_FOUND;
		return rc;
	}
	if (rc && rc != MDB_NOTFOUND)
		return mdberr(rc, "static: read");
	rc = mdb_get(w->txn, env->lease, &k, &d);
	if (rc == 0) {
		if (!lease_stale(d.mv_data, d.mv_size, w->now))
			return 0; /* ACQ_HELD */
		c->took_over = true;
	} else if (rc != MDB_NOTFOUND) {
		return mdberr(rc, "static: read lease");
	}
	int32_t pid = (int32_t)getpid();
	int64_t expiry = w->now + (int64_t)c->lease_ms * 1000;
	memcpy(c->lease, &pid, 4);
	memcpy(c->lease + 4, &expiry, 8);
	d.mv_size = LEASE_SIZE;
	d.mv_data = c->lease;
	if ((rc = mdb_put(w->txn, env->lease, &k, &d, 0)))
		return mdberr(rc, "static: take lease");
	c->state = ACQ_TAKEN;
	return 0;
}

struct finish {
	const uint8_t *key;
	size_t klen;
	const uint8_t *lease; /* the lease we took */
	encoded *e;           /* NULL: only release the lease */
	bool stored;
};

/* Stores e if our lease is still there (invariant 2), and releases it. */
static int finish_body(shm__wtxn *w, void *ctx)
{
	struct finish *c = ctx;
	shm_env *env = w->env;
	MDB_val k = {c->klen, (void *)c->key}, d;
	int rc;

	c->stored = false;
	rc = mdb_get(w->txn, env->lease, &k, &d);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc)
		return mdberr(rc, "static: read lease");
	if (d.mv_size != LEASE_SIZE || memcmp(d.mv_data, c->lease, LEASE_SIZE))
		return 0; /* taken over: the new holder stores */
	if ((rc = mdb_del(w->txn, env->lease, &k, NULL)))
		return mdberr(rc, "static: release lease");
	if (c->e == NULL)
		return 0;
	if ((rc = store_w(w, c->key, c->klen, c->e)))
		return rc;
	c->stored = true;
	return 0;
}

/* Whether the lease of key is absent or stale (read transaction). */
static int lease_free(shm_env *env, const uint8_t *key, size_t klen,
                      bool *is_free)
{
	MDB_val k = {klen, (void *)key}, d;
	MDB_txn *txn;
	int rc;

	*is_free = false; /* set on every path, errors included */
	if ((rc = shm__rtxn_get(env, &txn)))
		return rc;
	rc = mdb_get(txn, env->lease, &k, &d);
	if (rc == MDB_NOTFOUND) {
		*is_free = true;
		rc = 0;
	} else if (rc == 0) {
		*is_free = lease_stale(d.mv_data, d.mv_size, shm_now_us());
	} else {
		rc = shm__err_mdb(rc, "static: read lease");
	}
	shm__rtxn_put(env, txn);
	return rc;
}

static void sleep_us(long us)
{
	struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

/* Releases our lease after a failure rc (best effort), keeping rc and
 * its text: the lease must not outlive a generation that stored nothing,
 * or every later get of the key would wait lease_ms. */
static int release_after(shm_env *env, struct finish *f, int rc)
{
	char msg[600];

	snprintf(msg, sizeof msg, "%s", shm_errmsg());
	f->e = NULL;
	shm__write(env, finish_body, f);
	return shm__err(rc, "%s", msg); /* no second suffix: errors.c */
}

/* Invariant 6: the statics this thread is generating, innermost first. */
struct genframe {
	const shm_env *env;
	const uint8_t *key;
	size_t klen;
	const char *object;
	const struct genframe *up;
};
static _Thread_local const struct genframe *generating;

/* SHM_EGENERATOR if this thread is generating (env, key) already, naming
 * the objects from that generation to this get ("A -> B -> A"). */
static int generator_cycle(const shm_env *env, const uint8_t *key,
                           size_t klen, const shm_uuid *website,
                           const char *object)
{
	const struct genframe *f;
	char path[400] = "", id[37];
	size_t depth = 0, n = 0;

	for (f = generating; f; f = f->up, depth++)
		if (f->env == env && f->klen == klen &&
		    memcmp(f->key, key, klen) == 0)
			break;
	if (!f)
		return 0;
	/* frames run innermost first: the one depth steps up, then inwards */
	for (size_t i = depth + 1; i-- > 0 && n < sizeof path;) {
		f = generating;
		for (size_t j = 0; j < i; j++)
			f = f->up;
		n += (size_t)snprintf(path + n, sizeof path - n, "%s -> ",
		                      f->object);
	}
	shm_uuid_format(website, id);
	return shm__err(SHM_EGENERATOR, "static %s '%s': asked for by its own "
	                "generator, which would wait for itself (a cycle: "
	                "%s%s)", id, object, path, object);
}

/* Runs the generator under our lease, then stores and releases it. */
static int generate(shm_env *env, const shm_uuid *website, const char *object,
                    shm_static_gen_fn gen, void *user, struct acquire *a,
                    shm_static **out)
{
	struct finish f = {a->key, a->klen, a->lease, NULL, false};
	shm_static *s = NULL;
	void *content = NULL;
	size_t len = 0;
	encoded e = {0};
	int rc, grc;

	struct genframe frame = {env, a->key, a->klen, object, generating};
	generating = &frame;
	grc = gen(website, object, user, &content, &len);
	generating = frame.up;
	if (grc != 0) {
		free(content);
		rc = shm__err(SHM_EGENERATOR, "static '%s': generator "
		                              "returned %d", object, grc);
		return release_after(env, &f, rc);
	}
	/* the caller's copy is made first: once stored, nothing can fail */
	if ((rc = encode(env, object, content, len, &e)) == 0 &&
	    !(s = static_new(content, len, e.sha1, e.sha256, e.generated_at)))
		rc = shm__err(ENOMEM, "static '%s': copy", object);
	free(content);
	if (rc) {
		free(e.val);
		return release_after(env, &f, rc);
	}
	f.e = &e;
	/* a failed store aborts the release with it: release on its own */
	if ((rc = shm__write(env, finish_body, &f))) {
		shm_static_free(s);
		rc = release_after(env, &f, rc);
	} else {
		SHM__COUNT(env, static_generated, 1);
		*out = s;
	}
	free(e.val);
	return rc;
}

int shm_static_get(shm_env *env, const shm_uuid *website, const char *object,
                   shm_static_gen_fn gen, void *user, shm_static **out)
{
	uint8_t key[SHM_OBJKEY_MAX];
	size_t klen;
	struct acquire a = {0};
	uint64_t deadline;
	bool waited = false;
	char id[37];
	int rc;

	if (out == NULL)
		return shm__null(__func__, "out");
	*out = NULL;
	if (!env)
		return shm__null(__func__, "env");
	if ((rc = shm__objkey(__func__, website, object, key, &klen)))
		return rc;
	rc = peek_key(env, key, klen, out);
	if (rc != SHM_ENOTFOUND) {
		if (rc == 0)
			SHM__COUNT_READ(env, static_hits, 1);
		return rc;
	}
	SHM__COUNT(env, static_misses, 1);
	if (gen == NULL)
		return shm__err(SHM_EINVAL, "shm_static_get: NULL gen, and '%s' "
		                "is a miss", object);
	if ((rc = generator_cycle(env, key, klen, website, object)))
		return rc;

	a.key = key;
	a.klen = klen;
	a.lease_ms = env->opt.lease_ms; /* at least 1 (shm_env_open) */
	deadline = shm__mono_ns() + (uint64_t)env->opt.lease_wait_ms * 1000000;
	for (;;) {
		if ((rc = shm__write(env, acquire_body, &a)))
			goto out;
		if (a.state == ACQ_FOUND) {
			*out = a.found;
			a.found = NULL;
			goto out;
		}
		if (a.state == ACQ_TAKEN) {
			if (a.took_over)
				SHM__COUNT(env, static_takeovers, 1);
			rc = generate(env, website, object, gen, user, &a, out);
			goto out;
		}
		/* ACQ_HELD: wait for the holder's result, no transaction held */
		if (!waited) {
			waited = true;
			SHM__COUNT(env, static_waits, 1);
		}
		for (long pause = 500;; pause = pause < 20000 ? pause * 2 : 20000) {
			bool is_free;
			if (shm__mono_ns() >= deadline) {
				shm_uuid_format(website, id);
				rc = shm__err(SHM_ETIMEDOUT,
				              "static %s '%s': another process "
				              "or thread has been generating it "
				              "for more "
				              "than the lease_wait_ms of %u ms",
				              id, object, env->opt.lease_wait_ms);
				goto out;
			}
			sleep_us(pause);
			rc = peek_key(env, key, klen, out);
			if (rc != SHM_ENOTFOUND)
				goto out; /* the holder's result, or an error */
			if ((rc = lease_free(env, key, klen, &is_free)))
				goto out;
			if (is_free)
				break; /* gone, dead or expired: try to take it */
		}
	}
out:
	shm_static_free(a.found);
	return rc;
}
