/*
 * libshm/log.c - the append-only write log (format drawn in shm_log.h).
 *
 * Invariants
 *  1. A datum exists iff its log record does: records are only appended by
 *     shm__log_append inside the write transaction that changes the datum.
 *  2. Keys are appended in increasing seq order (MDB_APPEND), never reused.
 *  3. Trimming never goes past what the caller says every sink applied, and
 *     raises meta "flushed" (which makes older entries evictable).
 *  4. Waiting for records costs no CPU and misses no commit. The shared
 *     word log_wake (a futex, in shm.stats) counts commits that appended
 *     records in steps of 2; bit 0 says "someone sleeps on it". A commit
 *     stores next_seq_hint, then adds 2, and wakes the sleepers if the bit
 *     was set (clearing it). A waiter reads the word, then the hint; it
 *     sleeps only on the word it read with the bit set, so a commit after
 *     that read changes the word and ends (or prevents) the sleep. Each
 *     sleep is capped (WAKE_CAP_MS): a writer that does not wake (a build
 *     before this word) costs latency, never a lost record. A read-only
 *     handle cannot set the bit: it sleeps on the word at most 10 ms
 *     (RO_CAP_MS), woken sooner only when a read-write waiter (the
 *     flusher) has set it. The flusher
 *     wakes the word too (shm_log_wake) when it records a sink's position,
 *     for write-through writers (wtxn.c) sleeping on it the same way.
 */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <lz4frame.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "internal.h"

static const char *const op_names[] = {
	[SHM_OP_MSG_PUT] = "msg_put",         [SHM_OP_MSG_EDIT] = "msg_edit",
	[SHM_OP_MSG_DELETE] = "msg_delete",   [SHM_OP_MSG_REACT] = "msg_react",
	[SHM_OP_MSG_REPLY] = "msg_reply",     [SHM_OP_STATIC_PUT] = "static_put",
	[SHM_OP_STATIC_BUST] = "static_bust", [SHM_OP_GRAPH_SET] = "graph_set",
	[SHM_OP_GRAPH_DROP] = "graph_drop",   [SHM_OP_MARK] = "mark",
};

const char *shm_op_name(int op)
{
	if (op >= 0 && (size_t)op < sizeof op_names / sizeof op_names[0] &&
	    op_names[op])
		return op_names[op];
	return "unknown";
}

static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

static int grow(uint8_t **buf, size_t *cap, size_t need)
{
	if (*cap >= need)
		return 0;
	size_t n = need < 4096 ? 4096 : need + need / 2;
	uint8_t *p = realloc(*buf, n);
	if (!p)
		return shm__err(ENOMEM, "log buffer of %zu bytes", n);
	*buf = p;
	*cap = n;
	return 0;
}

size_t shm__lz4_frame(void *dst, size_t cap, const void *src, size_t n)
{
	/* independent blocks flushed at once: the context keeps no buffer */
	const LZ4F_preferences_t p = {
		.frameInfo = {.blockMode = LZ4F_blockIndependent,
		              .contentSize = n},
		.autoFlush = 1};
	uint8_t *d = dst;
	size_t r, len = 0;
	LZ4F_cctx *c;

	if (LZ4F_isError(r = LZ4F_createCompressionContext(&c, LZ4F_VERSION)))
		return r;
	r = LZ4F_compressBegin(c, d, cap, &p);
	if (!LZ4F_isError(r)) {
		len = r;
		r = LZ4F_compressUpdate(c, d + len, cap - len, src, n, NULL);
	}
	if (!LZ4F_isError(r)) {
		len += r;
		r = LZ4F_compressEnd(c, d + len, cap - len, NULL);
	}
	LZ4F_freeCompressionContext(c);
	return LZ4F_isError(r) ? r : len + r;
}

int shm__log_append(shm__wtxn *w, uint8_t op, const void *key, size_t klen,
                    const void *payload, size_t plen, uint64_t *seq)
{
	shm_env *env = w->env;
	uint64_t s = w->next_seq;
	const void *body = payload;
	size_t stored = plen;
	uint16_t flags = 0;
	MDB_val k = {8, &s}, v;
	uint8_t *rec;
	int rc;

	if (klen > 0xffff || plen > UINT32_MAX)
		return shm__err(SHM_ETOOBIG, "log record: key %zu / payload %zu "
		                "bytes", klen, plen);
	if (plen > env->opt.compress_threshold) {
		size_t bound = LZ4F_compressFrameBound(plen, NULL);
		if ((rc = grow(&w->buf, &w->buf_cap, bound)))
			return rc;
		size_t n = shm__lz4_frame(w->buf, bound, payload, plen);
		if (!LZ4F_isError(n) && n < plen) {
			body = w->buf;
			stored = n;
			flags |= SHM_LOG_LZ4;
		}
	}
	v.mv_size = SHM_LOG_HEADER + klen + stored;
	rc = mdb_put(w->txn, env->log, &k, &v, MDB_APPEND | MDB_RESERVE);
	if (rc)
		return shm__err_mdb(rc, "append log record");
	rec = v.mv_data;
	rec[0] = SHM_LOG_VERSION;
	rec[1] = op;
	memcpy(rec + 2, &flags, 2);
	put32(rec + 4, (uint32_t)klen);
	put64(rec + 8, s);
	put64(rec + 16, (uint64_t)w->now);
	put32(rec + 24, (uint32_t)stored);
	put32(rec + 28, (uint32_t)plen);
	put64(rec + 32, 0);
	if (klen)
		memcpy(rec + SHM_LOG_HEADER, key, klen);
	if (stored)
		memcpy(rec + SHM_LOG_HEADER + klen, body, stored);
	put64(rec + 32, XXH3_64bits(rec, v.mv_size));
	w->next_seq = s + 1;
	if (seq)
		*seq = s;
	SHM__COUNT(env, log_appends, 1);
	SHM__COUNT(env, log_bytes_raw, plen);
	SHM__COUNT(env, log_bytes_stored, stored);
	return 0;
}

/* shm_log_decode's work, into a zeroed *rec. */
static int decode(const void *raw, size_t size, shm_log_rec *rec,
                  uint8_t **buf, size_t *buf_cap)
{
	const uint8_t *p = raw;
	uint64_t sum, want;
	uint8_t *copy;
	int rc;

	if (size < 16)
		return shm__err(SHM_ECORRUPT, "log record: %zu byte%s, shorter "
		                "than its header", size, shm__plural(size));
	/* from here on the text names the record by its header's seq */
	rec->seq = get64(p + 8);
	if (size < SHM_LOG_HEADER)
		return shm__err(SHM_ECORRUPT, "log record %llu: %zu byte%s, "
		                "shorter than its header",
		                (unsigned long long)rec->seq, size,
		                shm__plural(size));
	rec->version = p[0];
	rec->op = p[1];
	memcpy(&rec->flags, p + 2, 2);
	rec->key_len = get32(p + 4);
	rec->time = (int64_t)get64(p + 16);
	rec->stored_len = get32(p + 24);
	rec->payload_len = get32(p + 28);
	rec->raw = p;
	rec->raw_size = (uint32_t)size;
	if (rec->version != SHM_LOG_VERSION)
		return shm__err(SHM_ECORRUPT, "log record %llu: version %u, "
		                "expected %u", (unsigned long long)rec->seq,
		                rec->version, SHM_LOG_VERSION);
	/* version 1's ops and flag (shm_log.h), nothing else */
	if (rec->op >= sizeof op_names / sizeof op_names[0] ||
	    !op_names[rec->op])
		return shm__err(SHM_ECORRUPT, "log record %llu: unknown op %u",
		                (unsigned long long)rec->seq, rec->op);
	if (rec->flags & ~SHM_LOG_LZ4)
		return shm__err(SHM_ECORRUPT, "log record %llu: unknown flags "
		                "0x%04x", (unsigned long long)rec->seq,
		                rec->flags);
	if ((uint64_t)SHM_LOG_HEADER + rec->key_len + rec->stored_len != size)
		return shm__err(SHM_ECORRUPT, "log record %llu: lengths do not add "
		                "up", (unsigned long long)rec->seq);
	/* Checksum over the record with its checksum field zeroed. */
	if ((rc = grow(buf, buf_cap, size)))
		return rc;
	copy = *buf;
	memcpy(copy, p, size);
	want = get64(p + 32);
	put64(copy + 32, 0);
	sum = XXH3_64bits(copy, size);
	if (sum != want)
		return shm__err(SHM_ECORRUPT, "log record %llu: checksum mismatch",
		                (unsigned long long)rec->seq);
	rec->key = p + SHM_LOG_HEADER;
	rec->payload = p + SHM_LOG_HEADER + rec->key_len;
	if (rec->flags & SHM_LOG_LZ4) {
		LZ4F_dctx *dctx;
		size_t dst = rec->payload_len, src = rec->stored_len, r;
		/* LZ4 gives at most 255 bytes per byte: a record claiming more
		 * lies, and must not cost a buffer of the size it claims */
		if (rec->payload_len / 255 > rec->stored_len)
			return shm__err(SHM_ECORRUPT, "log record %llu: an LZ4 "
			                "frame of %u byte%s cannot give %u",
			                (unsigned long long)rec->seq,
			                rec->stored_len,
			                shm__plural(rec->stored_len),
			                rec->payload_len);
		if ((rc = grow(buf, buf_cap, (size_t)rec->payload_len + 1)))
			return rc;
		if (LZ4F_isError(LZ4F_createDecompressionContext(&dctx, LZ4F_VERSION)))
			return shm__err(ENOMEM, "lz4 context");
		r = LZ4F_decompress(dctx, *buf, &dst, rec->payload, &src, NULL);
		LZ4F_freeDecompressionContext(dctx);
		if (LZ4F_isError(r) || r != 0 || dst != rec->payload_len ||
		    src != rec->stored_len)
			return shm__err(SHM_ECORRUPT, "log record %llu: bad LZ4 "
			                "frame", (unsigned long long)rec->seq);
		rec->payload = *buf;
	} else if (rec->stored_len != rec->payload_len) {
		return shm__err(SHM_ECORRUPT, "log record %llu: stored %u != raw "
		                "%u byte%s without compression",
		                (unsigned long long)rec->seq, rec->stored_len,
		                rec->payload_len,
		                shm__plural(rec->payload_len));
	}
	return 0;
}

/* rec after a failure rc (shm_log.h): a corrupt record keeps what its
 * header said, with no key or payload; any other failure leaves zeros. */
static void rec_failed(shm_log_rec *rec, int rc)
{
	if (rc != SHM_ECORRUPT) {
		memset(rec, 0, sizeof *rec);
		return;
	}
	rec->key = rec->payload = NULL;
}

int shm_log_decode(const void *raw, size_t size, shm_log_rec *rec,
                   uint8_t **buf, size_t *buf_cap)
{
	int rc;

	if (rec)
		memset(rec, 0, sizeof *rec);
	if (!raw && size)
		return shm__null(__func__, "raw");
	if (!rec)
		return shm__null(__func__, "rec");
	if (!buf)
		return shm__null(__func__, "buf");
	if (!buf_cap)
		return shm__null(__func__, "buf_cap");
	if ((rc = decode(raw, size, rec, buf, buf_cap)))
		rec_failed(rec, rc);
	return rc;
}

struct shm_log_iter {
	shm_env *env;
	MDB_txn *txn;
	MDB_cursor *cur;
	uint64_t from;
	bool started;
	uint8_t *buf;
	size_t buf_cap;
};

int shm_log_iter_open(shm_env *env, uint64_t from, shm_log_iter **out)
{
	shm_log_iter *it;
	int rc;

	if (out)
		*out = NULL;
	if (!env)
		return shm__null(__func__, "env");
	if (!out)
		return shm__null(__func__, "out");
	if (!(it = calloc(1, sizeof *it)))
		return shm__err(ENOMEM, "log iterator");
	it->env = env;
	it->from = from;
	if ((rc = shm__rtxn_get(env, &it->txn))) {
		free(it);
		return rc;
	}
	if ((rc = mdb_cursor_open(it->txn, env->log, &it->cur))) {
		shm__rtxn_put(env, it->txn);
		free(it);
		return shm__err_mdb(rc, "log cursor");
	}
	*out = it;
	return 0;
}

int shm_log_iter_next(shm_log_iter *it, shm_log_rec *rec)
{
	MDB_val k, v;
	int rc;

	if (rec)
		memset(rec, 0, sizeof *rec);
	if (!it)
		return shm__null(__func__, "it");
	if (!rec)
		return shm__null(__func__, "rec");
	k.mv_size = 8;
	k.mv_data = &it->from;
	rc = mdb_cursor_get(it->cur, &k, &v,
	                    it->started ? MDB_NEXT : MDB_SET_RANGE);
	it->started = true;
	if (rc == MDB_NOTFOUND)
		return SHM_ENOTFOUND;
	if (rc)
		return shm__err_mdb(rc, "log read");
	rc = shm_log_decode(v.mv_data, v.mv_size, rec, &it->buf, &it->buf_cap);
	uint64_t key_seq;
	memcpy(&key_seq, k.mv_data, 8); /* LMDB keys need not be aligned */
	if (rc == SHM_ECORRUPT && rec->seq != key_seq) {
		/* decode's text names the seq the header holds, or none: name
		 * the key too */
		char said[256];
		shm__errcause(rc, said, sizeof said);
		shm__err(rc, "log seq %llu: %s", (unsigned long long)key_seq,
		         said);
	}
	if (rc == SHM_ECORRUPT || (rc == 0 && rec->seq == 0))
		rec->seq = key_seq; /* the key is the truth */
	if (rc == 0 && rec->seq != key_seq) {
		uint64_t said = rec->seq;
		rec->seq = key_seq;
		rec_failed(rec, SHM_ECORRUPT);
		return shm__err(SHM_ECORRUPT, "log record under key %llu says "
		                "seq %llu", (unsigned long long)key_seq,
		                (unsigned long long)said);
	}
	return rc;
}

void shm_log_iter_close(shm_log_iter *it)
{
	if (!it)
		return;
	mdb_cursor_close(it->cur);
	shm__rtxn_put(it->env, it->txn);
	free(it->buf);
	free(it);
}

/* A MARK record every sink has: the L1 mark it wrote is dropped, unless a
 * later mark of the object replaced it (the mark's time is the record's).
 * The cleanup works from PostgreSQL's shm_marks; L1 keeps a mark only until
 * the sinks have it. */
static int drop_mirrored_mark(shm__wtxn *w, const MDB_val *raw)
{
	const uint8_t *p = raw->mv_data;
	MDB_val k, v;
	int64_t t;
	int rc;

	/* the header alone (shm_log.h): op, key length, time, key */
	if (raw->mv_size < SHM_LOG_HEADER || p[1] != SHM_OP_MARK ||
	    get32(p + 4) > raw->mv_size - SHM_LOG_HEADER)
		return 0;
	k.mv_size = get32(p + 4);
	k.mv_data = (void *)(p + SHM_LOG_HEADER);
	rc = mdb_get(w->txn, w->env->mark, &k, &v);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc)
		return shm__err_mdb(rc, "mark");
	if (v.mv_size < 8) /* mark value: time (8), reason (1) */
		return 0;
	memcpy(&t, v.mv_data, 8);
	if (t != (int64_t)get64(p + 16))
		return 0;
	if ((rc = mdb_del(w->txn, w->env->mark, &k, NULL)))
		return shm__err_mdb(rc, "drop mark");
	return 0;
}

static int trim_body(shm__wtxn *w, void *ctx)
{
	uint64_t upto = *(uint64_t *)ctx;
	MDB_cursor *cur;
	MDB_val k, v;
	int rc, mark_rc = 0;

	if (upto >= w->next_seq) /* invariant 3: no sink applied it */
		return shm__err(SHM_EINVAL, "shm_log_trim: upto %llu is past "
		                "the last record written, %llu",
		                (unsigned long long)upto,
		                (unsigned long long)(w->next_seq - 1));
	if ((rc = mdb_cursor_open(w->txn, w->env->log, &cur)))
		return shm__err_mdb(rc, "log cursor");
	while ((rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST)) == 0) {
		uint64_t s;
		memcpy(&s, k.mv_data, 8);
		if (s > upto)
			break;
		if ((mark_rc = drop_mirrored_mark(w, &v)) ||
		    (rc = mdb_cursor_del(cur, 0)))
			break;
	}
	mdb_cursor_close(cur);
	if (mark_rc)
		return mark_rc;
	if (rc && rc != MDB_NOTFOUND)
		return shm__err_mdb(rc, "trim log");
	if (upto > w->flushed)
		return shm__meta_put(w->txn, w->env, "flushed", upto);
	return 0;
}

int shm_log_trim(shm_env *env, uint64_t upto)
{
	if (!env)
		return shm__null(__func__, "env");
	return shm__write(env, trim_body, &upto);
}

/* Invariant 4: the longest sleep between two looks at the hint; a
 * read-only handle's, woken only when a read-write waiter set the bit. */
#define WAKE_CAP_MS 100
#define RO_CAP_MS 10

static long futex(uint32_t *word, int op, uint32_t val,
                  const struct timespec *timeout)
{
	return syscall(SYS_futex, word, op, val, timeout, NULL, 0);
}

void shm__log_wake(shm_env *env)
{
	uint32_t *word = &env->sw->log_wake;

	if (__atomic_fetch_add(word, 2, __ATOMIC_ACQ_REL) & 1) {
		__atomic_fetch_and(word, ~1u, __ATOMIC_RELEASE);
		futex(word, FUTEX_WAKE, INT_MAX, NULL);
	}
}

int shm_log_wake(shm_env *env)
{
	if (!env)
		return shm__null(__func__, "env");
	if (env->opt.read_only)
		return shm__err(SHM_EREADONLY, "shm_log_wake");
	shm__log_wake(env);
	return 0;
}

uint32_t shm__log_word(shm_env *env)
{
	return __atomic_load_n(&env->shared->log_wake, __ATOMIC_ACQUIRE);
}

bool shm__log_sleep(shm_env *env, uint32_t *seen, uint64_t ns)
{
	uint32_t *word = &env->shared->log_wake;

	if (ns > WAKE_CAP_MS * 1000000ull)
		ns = WAKE_CAP_MS * 1000000ull;
	struct timespec ts = {(time_t)(ns / 1000000000u),
	                      (long)(ns % 1000000000u)};
	if (env->opt.read_only) { /* cannot set the bit (invariant 4) */
		if (ns > RO_CAP_MS * 1000000ull)
			ts = (struct timespec){0, RO_CAP_MS * 1000000L};
		if (futex(word, FUTEX_WAIT, *seen, &ts) != 0 &&
		    errno != ETIMEDOUT && errno != EAGAIN && errno != EINTR)
			nanosleep(&ts, NULL); /* no futex here: a plain nap */
	} else {
		/* sleep only on the word read before the state (invariant 4) */
		if (!(*seen & 1) &&
		    !__atomic_compare_exchange_n(word, seen, *seen | 1, false,
		                                 __ATOMIC_ACQ_REL,
		                                 __ATOMIC_ACQUIRE))
			return true; /* a commit (or shm_log_wake) came */
		futex(word, FUTEX_WAIT, *seen | 1, &ts);
	}
	uint32_t now = __atomic_load_n(word, __ATOMIC_ACQUIRE);
	bool woken = (now | 1) != (*seen | 1);
	*seen = now;
	return woken;
}

int shm_log_wait(shm_env *env, uint64_t from, uint32_t timeout_ms)
{
	uint64_t deadline = shm__mono_ns() + (uint64_t)timeout_ms * 1000000ull;
	int rc;

	if (!env)
		return shm__null(__func__, "env");
	/* refused at once, not taken for a wait ending empty */
	if ((rc = shm__forked(env)))
		return rc;
	uint32_t seen = shm__log_word(env);
	for (;;) {
		uint64_t next = __atomic_load_n(&env->shared->next_seq_hint,
		                                __ATOMIC_ACQUIRE);
		if (next > from)
			return 0;
		if (next == 0) { /* no write since the stats file was made */
			uint64_t n = 0;
			if (shm_meta_get(env, "next_seq", &n) == 0 && n > from)
				return 0;
		}
		uint64_t now = shm__mono_ns();
		if (now >= deadline)
			return shm__err(SHM_ETIMEDOUT, "shm_log_wait: no record "
			                "%llu or later within %u ms",
			                (unsigned long long)from, timeout_ms);
		if (shm__log_sleep(env, &seen, deadline - now))
			return 0; /* may exist: the caller reads to know */
	}
}
