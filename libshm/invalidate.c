/*
 * libshm/invalidate.c - dropping L1 entries that another host's write made
 * stale (multi-host deployments: each host its own environment and
 * flusher, Redis and PostgreSQL shared; the flushers tell each other which
 * keys they wrote through a Redis channel, flusher/invalidate.c).
 *
 * Rule: an entry is dropped only if it is flushed (its lru seq <= meta
 * "flushed": every sink has its last record). An entry with unflushed
 * local work is kept: this host's pending record reaches the sinks after
 * the other host's write. PostgreSQL keeps the newer of the two
 * (updated_at); when that is the other host's, this host's flusher puts
 * it back into L1 over the local value (flusher/pg_newer.c). Redis takes
 * the last one applied (README, "Several hosts"). Dropping it would also
 * break shm_log.h invariant 2 (unflushed data exists iff its record
 * does).
 *
 * An invalidation is not a write: no log record, nothing for the sinks. It
 * is counted in the "invalidations" counter.
 *
 * Invariants
 *  1. A dropped entry leaves L1 the way an evicted one does: value, room
 *     index key (and the room's completeness watermark), lru key, meta
 *     entries/bytes (l1.c invariant 1).
 *  2. Keys not in L1, and keys whose entry is unflushed, never take the
 *     write lock: a read transaction sorts them out first (but for a lead
 *     above the one recorded, invariant 5).
 *  3. A static's generator lease is dropped with it: content rendered before
 *     the invalidation is not cached afterwards (static.c invariant 2).
 *  4. A message named with its room that L1 does not hold is one L1's room
 *     pages lack: the room's watermark rises to its created_at (room.c
 *     invariant 2), in a write only when it is not that high already. So
 *     does one L1 held and drops: the drop raises the watermark where L1
 *     had it, but the peer may have moved it to another room or time,
 *     which L1's pages lack as well.
 *  5. Meta ROOM_LEAD is the most a peer's message has been dated ahead of
 *     this host's clock on arrival (whole seconds rounded up, at most
 *     LEAD_MAX): a reset raises the room floor to now + that lead, since a
 *     peer whose clock runs ahead dated its messages of the gap ahead too.
 *     The newest created_at seen before the gap would not do: the peer
 *     went on writing, later still, during the gap. A peer never heard of,
 *     or ahead by more than it ever was, can still leave a message of the
 *     gap above the floor, missed by pages L1 answers until its room's
 *     watermark passes it.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "internal.h"

#define SV_SEQ 8 /* static.c: u64 seq before the static value encoding */
#define ROOM_LEAD "room_lead" /* invariant 5 */
#define US_PER_S INT64_C(1000000)
/* A message dated further ahead is no clock's skew but a date chosen by
 * the application: it raises its own room's watermark (invariant 4), not
 * every room's floor after every gap. */
#define LEAD_MAX (3600 * US_PER_S)

static uint64_t le64(const void *p)
{
	const uint8_t *b = p;
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | b[i];
	return v;
}

int shm_inval_kind_of_op(int op)
{
	if (shm_op_is_msg(op))
		return SHM_INVAL_MSG;
	if (op == SHM_OP_STATIC_PUT || op == SHM_OP_STATIC_BUST)
		return SHM_INVAL_STATIC;
	return 0;
}

bool shm__inval_created_ok(int64_t created_at, bool room)
{
	return (created_at >= 1 && created_at <= SHM_TIME_MAX_US) ||
	       (created_at == 0 && !room);
}

/* keys[i] of shm_l1_invalidate_many; every refusal names keys[i]. */
static int check_key(const shm_inval_key *k, size_t i)
{
	char why[400];
	int rc;

	if (!k->key)
		return shm__err(SHM_EINVAL, "shm_l1_invalidate_many: NULL "
		                "keys[%zu].key", i);
	if (k->kind == SHM_INVAL_MSG) {
		if (k->klen != 16)
			return shm__err(SHM_EINVAL, "shm_l1_invalidate_many: "
			                "keys[%zu].klen %zu: a message key is 16 "
			                "bytes", i, k->klen);
		if (k->room && (rc = shm__check_text("room", k->room,
		                                     strlen(k->room),
		                                     SHM_MAX_ROOM, false))) {
			/* a bad key is SHM_EINVAL (shm_log.h): its text too */
			shm__errcause(rc, why, sizeof why);
			return shm__err(SHM_EINVAL, "shm_l1_invalidate_many: "
			                "keys[%zu].%s", i, why);
		}
		if (!shm__inval_created_ok(k->created_at, k->room))
			return shm__err(SHM_EINVAL, "shm_l1_invalidate_many: "
			                "keys[%zu].created_at %" PRId64 " us is no "
			                "message's (1 to %" PRId64 ": 1970 to 9999%s)",
			                i, k->created_at, SHM_TIME_MAX_US,
			                k->room ? "" : "; 0 without a room");
		return 0;
	}
	if (k->kind == SHM_INVAL_STATIC) {
		if (k->klen <= 16 || k->klen > SHM_OBJKEY_MAX)
			return shm__err(SHM_EINVAL, "shm_l1_invalidate_many: "
			                "keys[%zu].klen %zu: a static key is 17 to "
			                "%d bytes", i, k->klen, SHM_OBJKEY_MAX);
		return 0;
	}
	return shm__err(SHM_EINVAL, "shm_l1_invalidate_many: keys[%zu].kind "
	                "%d: neither SHM_INVAL_MSG nor SHM_INVAL_STATIC", i,
	                k->kind);
}

static MDB_dbi kind_dbi(shm_env *env, int kind)
{
	return kind == SHM_INVAL_MSG ? env->msg : env->stat;
}

/* The entry's lru seq from its stored value. */
static uint64_t value_seq(int kind, const MDB_val *v)
{
	if (kind == SHM_INVAL_MSG)
		return shm__msg_enc_seq(v->mv_data, v->mv_size);
	return v->mv_size >= SV_SEQ ? le64(v->mv_data) : 0;
}

/* Drops (kind, key) inside w if it is in L1 and flushed. *what: 0 absent,
 * 1 dropped, 2 kept (unflushed). */
static int drop_w(shm__wtxn *w, int kind, const void *key, size_t klen,
                  int *what)
{
	MDB_val k = {klen, (void *)key}, v;
	uint64_t seq;
	size_t bytes;
	int rc;

	*what = 0;
	rc = mdb_get(w->txn, kind_dbi(w->env, kind), &k, &v);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc)
		return shm__err_mdb(rc, "invalidate: read");
	seq = value_seq(kind, &v);
	bytes = v.mv_size;
	if (seq > w->flushed) {
		*what = 2;
		return 0;
	}
	if (kind == SHM_INVAL_MSG) {
		rc = shm__msg_drop(w, key, klen);
	} else {
		rc = shm__static_drop(w, key, klen);
		if (!rc) {
			int lr = mdb_del(w->txn, w->env->lease, &k, NULL);
			if (lr && lr != MDB_NOTFOUND)
				rc = lr == MDB_MAP_FULL
				             ? lr
				             : shm__err_mdb(lr, "invalidate: lease");
		}
	}
	if (rc && rc != MDB_NOTFOUND)
		return rc;
	if ((rc = shm__l1_untrack(w, (char)kind, key, klen, seq, bytes)))
		return rc;
	*what = 1;
	return 0;
}

/* cand[i]: what keys[i] needs under the write lock */
enum { C_NONE, C_DROP, C_ROOM };

struct many {
	const shm_inval_key *keys;
	const unsigned char *cand;
	size_t n;
	uint64_t lead; /* to record (invariant 5), 0 if not above meta's */
	uint64_t dropped, kept;
};

static int many_body(shm__wtxn *w, void *ctx)
{
	struct many *m = ctx;
	int rc, what;

	m->dropped = m->kept = 0; /* the body may run twice (map full) */
	for (size_t i = 0; i < m->n; i++) {
		const shm_inval_key *k = &m->keys[i];
		if (m->cand[i] == C_NONE)
			continue;
		if ((rc = drop_w(w, k->kind, k->key, k->klen, &what)))
			return rc;
		m->dropped += what == 1;
		m->kept += what == 2;
		/* invariant 4: the room and time the peer gave, whether L1
		 * lacked the message or dropped it from where it had it */
		if (k->kind == SHM_INVAL_MSG && k->room && what != 2 &&
		    (rc = shm__room_incomplete(w, k->room, k->created_at)))
			return rc;
	}
	if (m->lead) {
		uint64_t lead;
		if ((rc = shm__meta_get(w->txn, w->env, ROOM_LEAD, &lead)))
			return rc;
		if (lead < m->lead &&
		    (rc = shm__meta_put(w->txn, w->env, ROOM_LEAD, m->lead)))
			return rc;
	}
	return 0;
}

/* Invariant 5: how far ahead of now (µs) the messages of keys are dated,
 * rounded up to whole seconds and at most LEAD_MAX; 0 if none is. */
static uint64_t lead_of(const shm_inval_key *keys, size_t n, int64_t now)
{
	int64_t lead = 0;

	for (size_t i = 0; i < n; i++)
		if (keys[i].kind == SHM_INVAL_MSG &&
		    keys[i].created_at - now > lead)
			lead = keys[i].created_at - now;
	if (lead > LEAD_MAX)
		lead = LEAD_MAX;
	return (uint64_t)((lead + US_PER_S - 1) / US_PER_S * US_PER_S);
}

int shm_l1_invalidate_many(shm_env *env, const shm_inval_key *keys, size_t n,
                           uint64_t *dropped, uint64_t *kept)
{
	struct many m = {keys, NULL, n, 0, 0, 0};
	unsigned char *cand;
	size_t n_cand = 0;
	uint64_t flushed = 0, pre_kept = 0, lead = 0;
	MDB_txn *txn;
	int rc;

	if (dropped)
		*dropped = 0;
	if (kept)
		*kept = 0;
	if (!env)
		return shm__null(__func__, "env");
	if (!keys && n)
		return shm__null(__func__, "keys");
	if (env->opt.read_only)
		return shm__err(SHM_EREADONLY, "%s: opened read-only",
		                env->path_shown);
	for (size_t i = 0; i < n; i++)
		if ((rc = check_key(&keys[i], i)))
			return rc;
	if (!n)
		return 0;
	/* Counted before looking: a read-through racing with us sees the
	 * count move and does not fill what it fetched (readthrough.c). */
	SHM__COUNT(env, inval_received, n);
	if (!(cand = calloc(n, 1)))
		return shm__err(ENOMEM, "invalidate: %zu keys", n);
	/* invariant 2: most keys another host wrote are not in this L1 */
	if ((rc = shm__rtxn_get(env, &txn)))
		goto out;
	rc = shm__meta_get(txn, env, "flushed", &flushed);
	/* invariant 5: written only when it grows */
	m.lead = lead_of(keys, n, shm_now_us());
	if (!rc && m.lead && !(rc = shm__meta_get(txn, env, ROOM_LEAD, &lead)) &&
	    m.lead <= lead)
		m.lead = 0;
	int64_t floor = shm__room_floor(txn, env);
	for (size_t i = 0; i < n && !rc; i++) {
		MDB_val k = {keys[i].klen, (void *)keys[i].key}, v;
		int r = mdb_get(txn, kind_dbi(env, keys[i].kind), &k, &v);
		if (r == MDB_NOTFOUND) {
			if (keys[i].kind == SHM_INVAL_MSG && keys[i].room &&
			    shm__room_watermark(txn, env, keys[i].room,
			                        floor) < keys[i].created_at) {
				cand[i] = C_ROOM;
				n_cand++;
			}
			continue;
		}
		if (r) {
			rc = shm__err_mdb(r, "invalidate: read");
			break;
		}
		if (value_seq(keys[i].kind, &v) > flushed) {
			pre_kept++; /* local work pending when asked: kept */
			continue;
		}
		cand[i] = C_DROP;
		n_cand++;
	}
	shm__rtxn_put(env, txn);
	if (rc || (!n_cand && !m.lead))
		goto out;
	m.cand = cand;
	if ((rc = shm__write(env, many_body, &m)))
		goto out;
	if (m.dropped)
		SHM__COUNT(env, invalidations, m.dropped);
out:
	free(cand);
	if (!rc) {
		if (dropped)
			*dropped = m.dropped;
		if (kept)
			*kept = pre_kept + m.kept;
	}
	return rc;
}

static int drop_msg_body(shm__wtxn *w, void *ctx)
{
	int what, rc = drop_w(w, SHM_INVAL_MSG, ctx, 16, &what);

	if (!rc && what == 1)
		SHM__COUNT(w->env, invalidations, 1);
	return rc;
}

int shm__inval_drop_msg(shm_env *env, const shm_uuid *id)
{
	return shm__write(env, drop_msg_body, (void *)id->b);
}

int shm_l1_invalidate(shm_env *env, int kind, const void *key, size_t klen,
                      uint64_t *dropped)
{
	shm_inval_key k = {.kind = kind, .key = key, .klen = klen};

	if (dropped)
		*dropped = 0;
	if (!env)
		return shm__null(__func__, "env");
	if (!key)
		return shm__null(__func__, "key");
	return shm_l1_invalidate_many(env, &k, 1, dropped, NULL);
}

/* ---- dropping every flushed entry (after a gap in the channel) */

#define RESET_BATCH 1000

struct reset {
	uint64_t dropped;
	bool more;
	shm__lru_pos pos; /* where the reset goes on */
};

static int reset_body(shm__wtxn *w, void *ctx)
{
	struct reset *r = ctx;
	uint64_t n = 0, floor = 0, lead = 0;
	int rc = shm__l1_drop_flushed(w, INT64_MAX, RESET_BATCH, RESET_BATCH,
	                              &r->pos, &n, &r->more);

	r->dropped += n;
	if (n)
		SHM__COUNT(w->env, invalidations, n);
	/* every room may have messages from the gap that L1 never saw, dated
	 * up to now by this host's clock, later by a peer's (invariant 5) */
	if (!rc && !r->more &&
	    !(rc = shm__meta_get(w->txn, w->env, SHM__ROOM_FLOOR, &floor)) &&
	    !(rc = shm__meta_get(w->txn, w->env, ROOM_LEAD, &lead)) &&
	    floor < (uint64_t)w->now + lead)
		rc = shm__meta_put(w->txn, w->env, SHM__ROOM_FLOOR,
		                   (uint64_t)w->now + lead);
	return rc;
}

int shm_l1_invalidate_flushed(shm_env *env, uint64_t *dropped)
{
	struct reset r = {0, true, {0}};
	int rc = 0;

	if (dropped)
		*dropped = 0;
	if (!env)
		return shm__null(__func__, "env");
	if (env->opt.read_only)
		return shm__err(SHM_EREADONLY, "%s: opened read-only",
		                env->path_shown);
	while (r.more && rc == 0)
		rc = shm__write(env, reset_body, &r);
	if (dropped && !rc)
		*dropped = r.dropped;
	return rc;
}
