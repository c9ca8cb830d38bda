/*
 * libshm/l1.c - L1 capacity: entry and byte limits, approximate-LRU
 * eviction and TTL expiry of flushed entries.
 *
 * Invariants
 *  1. Every L1 entry has exactly one key in "lru": be64(seq) kind key, where
 *     seq is its last log record's seq (a read-through fill: the flushed
 *     position when filled). Its value holds the entry's bytes and time.
 *  2. Only entries with seq <= meta "flushed" are evicted or expired: their
 *     log records are in every sink, so nothing accepted is lost.
 *  3. Reads never write here: recency comes from the shared atime table.
 *  4. A walk that drops flushed entries (expiry, an invalidation reset)
 *     does bounded work per transaction and goes on from the key where it
 *     stopped: writers never wait for a walk of the whole L1. Entries
 *     written behind it meanwhile wait for the next pass.
 */
#include <string.h>

#include "internal.h"

#define LRU_SAMPLE 16
#define LRU_KEY_MAX (9 + SHM_OBJKEY_MAX)

typedef struct lru_val {
	uint32_t bytes;
	int64_t time;
} __attribute__((packed)) lru_val;

static void be64(uint8_t out[8], uint64_t v)
{
	for (int i = 0; i < 8; i++)
		out[i] = (uint8_t)(v >> (56 - 8 * i));
}

static size_t lru_key(uint8_t *out, uint64_t seq, char kind, const void *key,
                      size_t klen)
{
	be64(out, seq);
	out[8] = (uint8_t)kind;
	memcpy(out + 9, key, klen);
	return 9 + klen;
}

static uint64_t lru_seq(const MDB_val *k)
{
	const uint8_t *p = k->mv_data;
	uint64_t s = 0;
	for (int i = 0; i < 8; i++)
		s = s << 8 | p[i];
	return s;
}

/* Removes one entry found in lru (cursor key k, value v). */
static int drop_entry(shm__wtxn *w, const MDB_val *k, const MDB_val *v)
{
	const uint8_t *p = k->mv_data;
	char kind = (char)p[8];
	lru_val lv = {0};
	uint8_t copy[LRU_KEY_MAX];
	MDB_val kc = {k->mv_size, copy};
	int rc;

	if (k->mv_size > sizeof copy || k->mv_size < 9)
		return shm__err(SHM_ECORRUPT, "lru key of %zu byte%s", k->mv_size,
		                shm__plural(k->mv_size));
	memcpy(copy, k->mv_data, k->mv_size); /* k dies with the next write */
	if (v->mv_size == sizeof lv)
		memcpy(&lv, v->mv_data, sizeof lv);
	rc = kind == SHM_KIND_MSG ? shm__msg_drop(w, copy + 9, kc.mv_size - 9)
	                          : shm__static_drop(w, copy + 9, kc.mv_size - 9);
	if (rc && rc != MDB_NOTFOUND)
		return rc;
	if ((rc = mdb_del(w->txn, w->env->lru, &kc, NULL)))
		return shm__err_mdb(rc, "lru delete");
	w->entries -= w->entries ? 1 : 0;
	w->bytes -= w->bytes >= lv.bytes ? lv.bytes : w->bytes;
	w->counts_dirty = true;
	return 0;
}

/* Evicts one flushed entry: among the LRU_SAMPLE oldest-written flushed
 * entries, the one least recently read. MDB_NOTFOUND if none. */
static int evict_one(shm__wtxn *w)
{
	MDB_cursor *cur;
	MDB_val k, v, best_k = {0, NULL}, best_v;
	uint8_t best[LRU_KEY_MAX];
	uint8_t best_val[sizeof(lru_val)];
	uint32_t best_at = UINT32_MAX;
	int rc, n = 0;

	if ((rc = mdb_cursor_open(w->txn, w->env->lru, &cur)))
		return shm__err_mdb(rc, "lru cursor");
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
	     rc == 0 && n < LRU_SAMPLE;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT), n++) {
		if (lru_seq(&k) > w->flushed || k.mv_size < 9 ||
		    k.mv_size > sizeof best)
			break; /* everything after is unflushed */
		const uint8_t *p = k.mv_data;
		uint32_t at = shm__atime(w->env, (char)p[8], p + 9, k.mv_size - 9);
		if (at < best_at || !best_k.mv_data) {
			best_at = at;
			memcpy(best, k.mv_data, k.mv_size);
			best_k.mv_size = k.mv_size;
			best_k.mv_data = best;
			memcpy(best_val, v.mv_data,
			       v.mv_size < sizeof best_val ? v.mv_size
			                                   : sizeof best_val);
			best_v.mv_size = v.mv_size;
			best_v.mv_data = best_val;
		}
	}
	mdb_cursor_close(cur);
	if (rc && rc != MDB_NOTFOUND)
		return shm__err_mdb(rc, "lru scan");
	if (!best_k.mv_data)
		return MDB_NOTFOUND;
	return drop_entry(w, &best_k, &best_v);
}

int shm__l1_evict(shm__wtxn *w, uint64_t max, uint64_t *evicted)
{
	uint64_t n = 0;
	int rc = 0;

	while (n < max && (rc = evict_one(w)) == 0)
		n++;
	if (evicted)
		*evicted += n;
	w->evicted += n;
	return rc == MDB_NOTFOUND ? 0 : rc;
}

/* The entries this transaction wrote (lru seq from its first record on) and
 * their bytes, in *entries and *bytes. */
static int own_usage(shm__wtxn *w, uint64_t *entries, uint64_t *bytes)
{
	uint8_t from[8];
	MDB_cursor *cur;
	MDB_val k = {sizeof from, from}, v;
	int rc;

	*entries = *bytes = 0;
	be64(from, w->begin_seq); /* sorts before every key of that seq */
	if ((rc = mdb_cursor_open(w->txn, w->env->lru, &cur)))
		return shm__err_mdb(rc, "lru cursor");
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		lru_val lv = {0};
		if (v.mv_size == sizeof lv)
			memcpy(&lv, v.mv_data, sizeof lv);
		++*entries;
		*bytes += lv.bytes;
	}
	mdb_cursor_close(cur);
	return rc == MDB_NOTFOUND ? 0 : shm__err_mdb(rc, "lru scan");
}

/* L1 has no flushed entry left to evict for add_entries/add_bytes more: if
 * this transaction's own entries leave no room, no flusher can make any
 * (SHM_ETOOBIG); else the entries of earlier writes wait for it. */
static int l1_full(shm__wtxn *w, uint64_t add_entries, uint64_t add_bytes)
{
	uint64_t own, own_bytes;
	int rc = own_usage(w, &own, &own_bytes);

	if (rc)
		return rc;
	own += add_entries;
	own_bytes += add_bytes;
	if (own > w->max_entries || own_bytes > w->max_bytes)
		return shm__err(SHM_ETOOBIG,
		                "this write alone needs more than L1's limits "
		                "(l1_max_entries %llu / l1_max_bytes %llu), its "
		                "first %llu entries taking %llu bytes: write "
		                "fewer messages per transaction, or split the "
		                "import",
		                (unsigned long long)w->max_entries,
		                (unsigned long long)w->max_bytes,
		                (unsigned long long)own,
		                (unsigned long long)own_bytes);
	SHM__COUNT(w->env, writes_failed_full, 1);
	return shm__err(SHM_EFULL,
	                "L1 holds %llu entries / %llu bytes (limits %llu / "
	                "%llu) and none is flushed yet, the flushed position "
	                "being %llu",
	                (unsigned long long)w->entries,
	                (unsigned long long)w->bytes,
	                (unsigned long long)w->max_entries,
	                (unsigned long long)w->max_bytes,
	                (unsigned long long)w->flushed);
}

static int make_room(shm__wtxn *w, uint64_t add_entries, uint64_t add_bytes)
{
	uint64_t n = 0;
	int rc;

	if ((rc = shm__policy_read(w)))
		return rc;
	/* No eviction could ever make room for it: not "flusher behind". */
	if (add_bytes > w->max_bytes)
		return shm__err(SHM_ETOOBIG,
		                "L1 entry of %llu bytes is larger than "
		                "l1_max_bytes, %llu",
		                (unsigned long long)add_bytes,
		                (unsigned long long)w->max_bytes);
	while (w->entries + add_entries > w->max_entries ||
	       w->bytes + add_bytes > w->max_bytes) {
		rc = evict_one(w);
		if (rc == MDB_NOTFOUND) /* the write rolls back: none */
			return l1_full(w, add_entries, add_bytes);
		if (rc)
			return rc;
		n++;
	}
	w->evicted += n;
	return 0;
}

int shm__l1_track(shm__wtxn *w, char kind, const void *key, size_t klen,
                  uint64_t old_seq, size_t old_bytes, uint64_t new_seq,
                  size_t new_bytes)
{
	uint8_t kb[LRU_KEY_MAX];
	lru_val lv = {(uint32_t)new_bytes, w->now};
	MDB_val k, v = {sizeof lv, &lv};
	int rc;

	if (klen > SHM_OBJKEY_MAX)
		return shm__err(SHM_EINVAL, "L1 key of %zu bytes", klen);
	if (old_bytes) {
		k.mv_size = lru_key(kb, old_seq, kind, key, klen);
		k.mv_data = kb;
		rc = mdb_del(w->txn, w->env->lru, &k, NULL);
		if (rc && rc != MDB_NOTFOUND)
			return shm__err_mdb(rc, "lru delete");
		w->entries--;
		w->bytes -= w->bytes >= old_bytes ? old_bytes : w->bytes;
	}
	if ((rc = make_room(w, 1, new_bytes)))
		return rc;
	k.mv_size = lru_key(kb, new_seq, kind, key, klen);
	k.mv_data = kb;
	if ((rc = mdb_put(w->txn, w->env->lru, &k, &v, 0)))
		return shm__err_mdb(rc, "lru insert");
	w->entries++;
	w->bytes += new_bytes;
	w->counts_dirty = true;
	return 0;
}

int shm__l1_untrack(shm__wtxn *w, char kind, const void *key, size_t klen,
                    uint64_t seq, size_t bytes)
{
	uint8_t kb[LRU_KEY_MAX];
	MDB_val k;
	int rc;

	if (klen > SHM_OBJKEY_MAX)
		return shm__err(SHM_EINVAL, "L1 key of %zu bytes", klen);
	k.mv_size = lru_key(kb, seq, kind, key, klen);
	k.mv_data = kb;
	rc = mdb_del(w->txn, w->env->lru, &k, NULL);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc)
		return shm__err_mdb(rc, "lru delete");
	w->entries -= w->entries ? 1 : 0;
	w->bytes -= w->bytes >= bytes ? bytes : w->bytes;
	w->counts_dirty = true;
	return 0;
}

/* Copies cursor key k to pos: where the next call starts (the entry at k
 * is not handled yet). */
static int keep_pos(shm__lru_pos *pos, const MDB_val *k)
{
	if (k->mv_size > sizeof pos->key || k->mv_size < 9)
		return shm__err(SHM_ECORRUPT, "lru key of %zu byte%s", k->mv_size,
		                shm__plural(k->mv_size));
	memcpy(pos->key, k->mv_data, k->mv_size);
	pos->len = k->mv_size;
	return 0;
}

int shm__l1_drop_flushed(shm__wtxn *w, int64_t before, uint64_t max,
                         uint64_t max_kept, shm__lru_pos *pos,
                         uint64_t *dropped, bool *more)
{
	MDB_cursor *cur;
	MDB_val k = {pos->len, pos->key}, v;
	uint64_t n = 0, kept = 0;
	int rc;

	*more = false;
	if ((rc = mdb_cursor_open(w->txn, w->env->lru, &cur)))
		return shm__err_mdb(rc, "lru cursor");
	rc = mdb_cursor_get(cur, &k, &v, pos->len ? MDB_SET_RANGE : MDB_FIRST);
	while (rc == 0 && lru_seq(&k) <= w->flushed) {
		lru_val lv = {0};
		if (v.mv_size == sizeof lv)
			memcpy(&lv, v.mv_data, sizeof lv);
		bool drop = lv.time < before;
		if (drop ? n == max : kept == max_kept) {
			if (!(rc = keep_pos(pos, &k)))
				*more = true;
			break;
		}
		if (!drop) {
			kept++;
			rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
			continue;
		}
		/* drop_entry deletes under the cursor: copy the key, re-seek */
		if ((rc = keep_pos(pos, &k)) || (rc = drop_entry(w, &k, &v)))
			break;
		n++;
		k.mv_size = pos->len;
		k.mv_data = pos->key;
		rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	}
	mdb_cursor_close(cur);
	*dropped += n;
	return rc && rc != MDB_NOTFOUND ? rc : 0;
}

/* Entries an expiry transaction passes over at most: a pass over a full
 * L1 is split into transactions of ~0.3 ms each, so writers wait for
 * one of them, not the whole walk (8-12 ms over 400,000 entries). */
#define EXPIRE_KEPT_MAX 16384

struct expire_ctx {
	uint64_t expired;
	bool more;
	shm__lru_pos pos; /* where the pass goes on */
};

static int expire_body(shm__wtxn *w, void *ctx)
{
	struct expire_ctx *e = ctx;
	uint64_t n = 0;
	int rc = shm__policy_read(w);

	if (rc)
		return rc;
	int64_t cutoff = w->now - (int64_t)w->ttl_s * 1000000;
	rc = shm__l1_drop_flushed(w, cutoff, 1000, EXPIRE_KEPT_MAX, &e->pos, &n,
	                          &e->more);

	e->expired += n;
	w->expired += n;
	return rc;
}

int shm_l1_expire(shm_env *env, uint64_t *expired)
{
	struct expire_ctx e = {0, true, {0}};
	int rc = 0;

	if (expired)
		*expired = 0;
	if (!env)
		return shm__null(__func__, "env");
	while (e.more && rc == 0)
		rc = shm__write(env, expire_body, &e);
	if (expired && !rc)
		*expired = e.expired;
	return rc;
}
