/*
 * libshm/room.c - the L1 room index and room pages.
 *
 * Keys of "room": room_id NUL be64(created_at) id(16), so a cursor walking
 * backwards from (room, before, before_id) yields a page newest first, ties
 * broken by id descending: the order of
 *   SELECT ... WHERE room_id = $1 AND (created_at, id) < ($2, $3)
 *   ORDER BY created_at DESC, id DESC LIMIT $4.
 *
 * Invariants
 *  1. Every message in "msg" has exactly one room key, and no room key
 *     exists without its message.
 *  2. "roomwm"[room] is the newest created_at of a message of room that left
 *     L1 (evicted/expired/invalidated), came into it by a read-through fill
 *     (a fill says nothing of its neighbours in PostgreSQL), or was written
 *     by another host (its invalidation named a message L1 does not hold).
 *     Meta SHM__ROOM_FLOOR raises every room's watermark at once: set to
 *     the time of the environment's creation (or of its first read-write
 *     open by a version that keeps one: env.c), since PostgreSQL may hold
 *     any older message; raised after a gap in the invalidation channel
 *     (invalidate.c). An environment without one (never opened read-write
 *     since) vouches for nothing. Messages written through L1 since are in
 *     L1, so a page that is full and strictly newer than the watermark is
 *     complete, whatever its bound: every message between its bound and
 *     its last one is at least as new as that one (a tie at the watermark
 *     is not newer); any other page asks PostgreSQL when it is configured.
 *  3. A page PostgreSQL answers is what PostgreSQL will return once L1 is
 *     flushed: a row whose id L1 holds gives way to L1's version, which
 *     is on the page only if its own room and created_at put it there,
 *     below the page's bound (a message moved in time or to another room
 *     leaves no old copy).
 *  4. A page is complete or an error: when it needs PostgreSQL and
 *     PostgreSQL fails, it is SHM_EL3 and nothing, never L1's part of it
 *     (a short page reads as the end of the room). Without L3 configured,
 *     L1's page is the answer: there is nothing else to ask.
 *  5. One order everywhere: (created_at, id), ids compared as memcmp of
 *     their 16 bytes. The room keys sort so (LMDB's default comparison is
 *     memcmp; a room holds no NUL and created_at is positive, so be64 sorts
 *     as the number), PostgreSQL's uuid does (uuid_cmp is memcmp), and so
 *     do newer_first and below here: a page's bound (shm__room_cursor)
 *     means the same in L1's walk, in the query and in the merge.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"

#define ROOM_KEY_MAX (SHM_MAX_ROOM + 1 + 8 + 16)

static size_t room_key(uint8_t *out, const char *room, int64_t created,
                       const shm_uuid *id)
{
	size_t n = strlen(room);
	memcpy(out, room, n);
	out[n++] = 0;
	for (int i = 0; i < 8; i++)
		out[n++] = (uint8_t)((uint64_t)created >> (56 - 8 * i));
	if (id) {
		memcpy(out + n, id->b, 16);
		n += 16;
	}
	return n;
}

int shm__room_add(shm__wtxn *w, const char *room, int64_t created_at,
                  const shm_uuid *id)
{
	uint8_t kb[ROOM_KEY_MAX];
	MDB_val k = {room_key(kb, room, created_at, id), kb}, v = {0, NULL};
	int rc = mdb_put(w->txn, w->env->room, &k, &v, 0);
	return rc ? shm__err_mdb(rc, "room index insert") : 0;
}

int shm__room_del(shm__wtxn *w, const char *room, int64_t created_at,
                  const shm_uuid *id)
{
	uint8_t kb[ROOM_KEY_MAX];
	MDB_val k = {room_key(kb, room, created_at, id), kb};
	int rc = mdb_del(w->txn, w->env->room, &k, NULL);
	return rc && rc != MDB_NOTFOUND ? shm__err_mdb(rc, "room index delete")
	                                : 0;
}

int shm__room_incomplete(shm__wtxn *w, const char *room, int64_t created_at)
{
	MDB_val k = {strlen(room), (void *)room}, v;
	int64_t wm = 0;
	int rc = mdb_get(w->txn, w->env->roomwm, &k, &v);

	if (rc == 0 && v.mv_size == 8)
		memcpy(&wm, v.mv_data, 8);
	else if (rc && rc != MDB_NOTFOUND)
		return shm__err_mdb(rc, "room watermark");
	if (created_at <= wm)
		return 0;
	v.mv_size = 8;
	v.mv_data = &created_at;
	rc = mdb_put(w->txn, w->env->roomwm, &k, &v, 0);
	return rc ? shm__err_mdb(rc, "room watermark") : 0;
}

uint64_t shm__room_count(MDB_txn *txn, shm_env *env)
{
	MDB_cursor *cur;
	MDB_val k, v;
	uint8_t next[SHM_MAX_ROOM + 2];
	uint64_t n = 0;
	int rc;

	if (mdb_cursor_open(txn, env->room, &cur))
		return 0;
	rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
	while (rc == 0) {
		const uint8_t *p = k.mv_data;
		size_t len = strnlen((const char *)p, k.mv_size);
		n++;
		if (len > SHM_MAX_ROOM)
			break;
		/* jump past every key of this room: room NUL is followed by
		 * 8+16 bytes; room \x01 sorts after all of them */
		memcpy(next, p, len);
		next[len] = 1;
		k.mv_size = len + 1;
		k.mv_data = next;
		rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	}
	mdb_cursor_close(cur);
	return n;
}

int64_t shm__room_floor(MDB_txn *txn, shm_env *env)
{
	uint64_t floor = 0;

	/* none (or unreadable): nothing is known to be in L1 (invariant 2) */
	if (shm__meta_get(txn, env, SHM__ROOM_FLOOR, &floor) || floor == 0 ||
	    floor > INT64_MAX)
		return INT64_MAX;
	return (int64_t)floor;
}

int64_t shm__room_watermark(MDB_txn *txn, shm_env *env, const char *room,
                            int64_t floor)
{
	MDB_val k = {strlen(room), (void *)room}, v;
	int64_t wm = 0;

	if (mdb_get(txn, env->roomwm, &k, &v) == 0 && v.mv_size == 8)
		memcpy(&wm, v.mv_data, 8);
	return wm > floor ? wm : floor;
}

/* L1 page; *complete tells whether PostgreSQL could hold more rows for it. */
static int l1_page(shm_env *env, const char *room,
                   const shm__room_cursor *before, uint32_t limit,
                   shm_msg **msgs, size_t *n, bool *complete)
{
	uint8_t kb[ROOM_KEY_MAX];
	size_t plen = strlen(room) + 1;
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, v;
	int64_t wm, oldest = INT64_MAX;
	int rc;

	*n = 0;
	*complete = false;
	if ((rc = shm__rtxn_get(env, &txn)))
		return rc;
	wm = shm__room_watermark(txn, env, room, shm__room_floor(txn, env));
	if ((rc = mdb_cursor_open(txn, env->room, &cur))) {
		shm__rtxn_put(env, txn);
		return shm__err_mdb(rc, "room cursor");
	}
	/* the first key at or after the bound; the one before it is the
	 * newest below it */
	k.mv_size = room_key(kb, room, before->at, &before->id);
	k.mv_data = kb;
	rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	rc = mdb_cursor_get(cur, &k, &v, rc == 0 ? MDB_PREV : MDB_LAST);
	while (rc == 0 && *n < limit) {
		MDB_val mk, mv;
		if (k.mv_size != plen + 24 || memcmp(k.mv_data, room, plen) != 0)
			break;
		mk.mv_size = 16;
		mk.mv_data = (uint8_t *)k.mv_data + plen + 8;
		if ((rc = mdb_get(txn, env->msg, &mk, &mv))) {
			rc = shm__err(SHM_ECORRUPT, "room index points to a "
			              "missing message");
			break;
		}
		if ((rc = shm__msg_decode(mv.mv_data, mv.mv_size, NULL,
		                          &msgs[*n])))
			break;
		oldest = msgs[*n]->created_at;
		shm__touch(env, SHM_KIND_MSG, mk.mv_data, 16);
		(*n)++;
		rc = mdb_cursor_get(cur, &k, &v, MDB_PREV);
	}
	mdb_cursor_close(cur);
	shm__rtxn_put(env, txn);
	if (rc == MDB_NOTFOUND)
		rc = 0;
	/* Complete only if the page is full and strictly newer than anything
	 * that left L1 or was filled into it (invariant 2). A short page never
	 * is: PostgreSQL may hold older rows L1 never saw (a room written
	 * before this environment existed, or by another one). */
	*complete = *n == limit && oldest > wm;
	return rc;
}

static int newer_first(const void *a, const void *b)
{
	const shm_msg *x = *(shm_msg *const *)a, *y = *(shm_msg *const *)b;
	if (x->created_at != y->created_at)
		return x->created_at > y->created_at ? -1 : 1;
	return -memcmp(x->id.b, y->id.b, 16);
}

/* Whether m is below the bound c: (created_at, id) < (c->at, c->id). */
static bool below(const shm_msg *m, const shm__room_cursor *c)
{
	return m->created_at < c->at ||
	       (m->created_at == c->at && memcmp(m->id.b, c->id.b, 16) < 0);
}

/* Invariant 3 on a page from PostgreSQL, in one read transaction: a row
 * whose id L1 holds is replaced by L1's version if that one belongs to the
 * page (same room, below the bound), else dropped. *kept counts the rows
 * L1 does not hold. On an error the array stays whole (*n3 rows) for the
 * caller to free. */
static int l3_own_versions(shm_env *env, const char *room,
                           const shm__room_cursor *before, shm_msg **l3,
                           size_t *n3, size_t *kept)
{
	MDB_txn *txn;
	size_t k = 0, j = 0;
	int rc;

	*kept = 0;
	if ((rc = shm__rtxn_get(env, &txn)))
		return rc;
	for (; j < *n3; j++) {
		MDB_val mk = {16, l3[j]->id.b}, mv;
		shm_msg *own;

		rc = mdb_get(txn, env->msg, &mk, &mv);
		if (rc == MDB_NOTFOUND) {
			l3[k++] = l3[j];
			(*kept)++;
			rc = 0;
			continue;
		}
		if (rc) {
			rc = shm__err_mdb(rc, "room page: read message");
			break;
		}
		if ((rc = shm__msg_decode(mv.mv_data, mv.mv_size, NULL, &own)))
			break;
		free(l3[j]);
		if (strcmp(own->room_id, room) == 0 && below(own, before))
			l3[k++] = own;
		else
			free(own);
	}
	shm__rtxn_put(env, txn);
	while (j < *n3) /* after an error: the rows not looked at yet */
		l3[k++] = l3[j++];
	*n3 = k;
	return rc;
}

static bool on_page(shm_msg *const *page, size_t n, const shm_uuid *id)
{
	for (size_t i = 0; i < n; i++)
		if (memcmp(page[i]->id.b, id->b, 16) == 0)
			return true;
	return false;
}

/* Whether PostgreSQL's rows after last (its page's oldest good row, in
 * page order: rows after it on the page were left off) cannot reach the
 * merged page: it already has limit messages at or before last in that
 * order, each id once. */
static bool l3_enough(shm_msg *const *l1, size_t n1, shm_msg *const *l3,
                      size_t n3, const shm_msg *last, uint32_t limit)
{
	size_t n = 0;

	for (size_t i = 0; i < n1; i++)
		n += newer_first(&l1[i], &last) <= 0;
	for (size_t j = 0; j < n3; j++)
		n += newer_first(&l3[j], &last) <= 0 &&
		     !on_page(l1, n1, &l3[j]->id);
	return n >= limit;
}

/* At most this many rows beyond limit are asked of PostgreSQL to make up
 * for rows that give way to L1's versions (invariant 3); past it the page
 * is best effort. */
#define L3_EXTRA_MAX 10000u

/* PostgreSQL's page for (room, before, limit) with invariant 3 applied,
 * complete enough to be merged with the L1 page l1: when rows gave way to
 * L1's versions, or were left off as bad data (rt_value.c invariant 4),
 * and PostgreSQL may hold more, it is asked again for twice as many rows.
 * Any query that fails fails the page: SHM_EL3 (or ENOMEM) with *out NULL,
 * never the rows of an earlier, shorter query. */
static int l3_page(shm_env *env, const char *room,
                   const shm__room_cursor *before, uint32_t limit,
                   shm_msg *const *l1, size_t n1, shm_msg ***out, size_t *n)
{
	shm_msg **l3;
	shm_msg last = {0}; /* the page order of PostgreSQL's last good row */
	size_t n3, raw, kept;
	bool any;
	uint32_t ask = limit;
	int rc;

	*out = NULL;
	*n = 0;
	for (;;) {
		rc = shm__rt_room_page(env, room, before, ask, &l3, &n3, &raw);
		shm_msgs_free(*out, *n);
		*out = NULL;
		*n = 0;
		if (rc)
			return rc;
		if ((any = n3 > 0)) {
			last.created_at = l3[n3 - 1]->created_at;
			last.id = l3[n3 - 1]->id;
		}
		if ((rc = l3_own_versions(env, room, before, l3, &n3, &kept))) {
			shm_msgs_free(l3, n3);
			return rc;
		}
		*out = l3;
		*n = n3;
		if (raw < ask || kept == raw || ask >= limit + L3_EXTRA_MAX ||
		    (any && l3_enough(l1, n1, l3, n3, &last, limit)))
			return 0;
		ask = ask > (limit + L3_EXTRA_MAX) / 2 ? limit + L3_EXTRA_MAX
		                                       : 2 * ask;
	}
}

/* L3's page plus L1's page (L1's copy wins for an id on both: L3's rows
 * already carry L1's versions, invariant 3, but L1's page was read before
 * them), newest first, cut at limit. Consumes both arrays. */
static int merge(shm_msg **l1, size_t n1, shm_msg **l3, size_t n3,
                 uint32_t limit, shm_msg ***out, size_t *n)
{
	shm_msg **all = calloc(n1 + n3 + 1, sizeof *all);
	size_t k = 0;

	if (!all) {
		shm_msgs_free(l1, n1);
		shm_msgs_free(l3, n3);
		return shm__err(ENOMEM, "room page");
	}
	for (size_t i = 0; i < n1; i++)
		all[k++] = l1[i];
	for (size_t j = 0; j < n3; j++) {
		if (on_page(l1, n1, &l3[j]->id))
			free(l3[j]);
		else
			all[k++] = l3[j];
	}
	free(l1);
	free(l3);
	qsort(all, k, sizeof *all, newer_first);
	while (k > limit)
		free(all[--k]);
	*out = all;
	*n = k;
	return 0;
}

/* SHM_EL3 for a page of room L1 could not answer alone, with the reason
 * PostgreSQL failed (the last error). */
static int l3_failed(const char *room)
{
	char cause[512], shown[SHM__SHOWN_MAX];

	shm__errcause(SHM_EL3, cause, sizeof cause);
	return shm__err(SHM_EL3, "room '%s': page not complete in L1, and %s",
	                shm__shown_str(room, shown), cause);
}

/* The checks and the page of shm_room_page and shm_room_page_before, fn
 * naming the one called in errors. */
static int room_page(const char *fn, shm_env *env, const char *room,
                     int64_t before, const shm_uuid *before_id,
                     uint32_t limit, shm_msg ***out, size_t *n)
{
	shm__room_cursor bound = {.at = before > 0 ? before : INT64_MAX};
	shm_msg **msgs;
	bool complete;
	int rc;

	if (out)
		*out = NULL;
	if (n)
		*n = 0;
	if (!env)
		return shm__null(fn, "env");
	if (!out)
		return shm__null(fn, "out");
	if (!n)
		return shm__null(fn, "n");
	if (!room)
		return shm__null(fn, "room");
	if ((rc = shm__check_text("room_id", room, strlen(room), SHM_MAX_ROOM,
	                          false)))
		return rc;
	if (before < 0)
		return shm__err(SHM_ETIME, "before: negative timestamp");
	if (before_id) {
		char s[37];
		shm_uuid_format(before_id, s);
		if (before == 0)
			return shm__err(SHM_EINVAL, "before_id %s given with "
			                "before 0 (no bound): a bound is the "
			                "created_at and id of one message", s);
		if (shm_uuid_is_nil(before_id))
			return shm__err(SHM_EINVAL, "before_id %s: the nil UUID, "
			                "which no message holds (NULL: no id)", s);
		bound.id = *before_id;
	}
	if (limit == 0 || limit > SHM_MAX_PAGE)
		return shm__err(SHM_EINVAL, "limit %u: must be 1..%d", limit,
		                SHM_MAX_PAGE);
	if (!(msgs = calloc(limit, sizeof *msgs)))
		return shm__err(ENOMEM, "room page of %u", limit);
	rc = l1_page(env, room, &bound, limit, msgs, n, &complete);
	if (rc) {
		shm_msgs_free(msgs, *n);
		*n = 0;
		return rc;
	}
	SHM__COUNT(env, room_pages, 1);
	if (!complete && shm__rt_has_l3(env)) {
		shm_msg **l3;
		size_t n3;
		rc = l3_page(env, room, &bound, limit, msgs, *n, &l3, &n3);
		if (rc == 0) {
			SHM__COUNT(env, room_pages_l3, 1);
			if ((rc = merge(msgs, *n, l3, n3, limit, out, n)))
				*n = 0;
			return rc;
		}
		/* invariant 4: L1's page alone could be short or stop early */
		shm_msgs_free(msgs, *n);
		*n = 0;
		return rc == SHM_EL3 ? l3_failed(room) : rc;
	}
	*out = msgs;
	return 0;
}

int shm_room_page(shm_env *env, const char *room, int64_t before,
                  uint32_t limit, shm_msg ***out, size_t *n)
{
	return room_page(__func__, env, room, before, NULL, limit, out, n);
}

int shm_room_page_before(shm_env *env, const char *room, int64_t before,
                         const shm_uuid *before_id, uint32_t limit,
                         shm_msg ***out, size_t *n)
{
	return room_page(__func__, env, room, before, before_id, limit, out,
	                 n);
}
