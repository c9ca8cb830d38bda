/*
 * libshm/readthrough.c - L1 misses asked of Redis (L2) then PostgreSQL (L3),
 * each within its timeout; hits fill L1 (and Redis after an L3 hit): the
 * gets and pages. Its parts (readthrough.h): rt_pool.c the levels'
 * connection pools, rt_redis.c Redis, rt_value.c the checks of what a
 * level answers, rt_pg.c PostgreSQL.
 *
 * Invariants, numbered across those files (3 is rt_pool.c's, 4
 * rt_value.c's, 6 rt_pg.c's)
 *  1. A fill is not a write: it appends no log record (L2/L3 already have
 *     the message), so nothing is sent back to PostgreSQL. Its Redis copy
 *     is a SET NX: a value the flusher wrote meanwhile is newer and stays;
 *     only a bad value this get found under the key is written over, or a
 *     key of another type (the flusher writes strings only). It is tried
 *     only when Redis answered the get's GET; one Redis fails or refuses
 *     is counted as L2's error, and the get is served all the same.
 *  2. A level costs at most its timeout per call: waiting for a connection,
 *     connecting and every exchange (Redis's GET and fill share one budget)
 *     run against deadlines, never per-read timeouts; nothing blocks
 *     outside them (host names were resolved at open, resolve.c). After a
 *     failure the level is skipped for RT_BACKOFF_MS, so a dead server costs
 *     nothing more.
 *  5. The last level configured (L3, else L2) is the record: a get it did
 *     not serve is SHM_ENOTFOUND only when it had no such message; when it
 *     failed (an error, a timeout, skipped, bad data) the get is its code,
 *     SHM_EL3 or SHM_EL2: "not found" is never said of what could not be
 *     checked. A failed L2 before L3 only costs its time. Either way the
 *     text names the message and, when a level failed, each level's
 *     outcome in order: its reason (the server's reply, the connection's
 *     error, the timeout, the refused value...) or "not in <level>". A
 *     failure of a server names it (l2_err, l3_err, shm__rt_late,
 *     shm__rt_take_failed: Redis's host:port or socket, never the
 *     password; PostgreSQL's host and port as libpq has them); bad data
 *     names the level alone.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "pg_row.h"
#include "readthrough.h"

bool shm__rt_has_l3(const shm_env *env)
{
	return env->pg_conninfo && *env->pg_conninfo;
}

bool shm__rt_has_l2(const shm_env *env)
{
	return env->redis_url && *env->redis_url;
}

/* ---- gets and pages */

static void count_l2(shm_env *env, int rc)
{
	if (rc == 0)
		SHM__COUNT(env, l2_hits, 1);
	else if (rc == SHM_ENOTFOUND)
		SHM__COUNT(env, l2_misses, 1);
	else
		SHM__COUNT(env, l2_errors, 1);
}

static void count_l3(shm_env *env, int rc)
{
	if (rc == 0)
		SHM__COUNT(env, l3_hits, 1);
	else if (rc == SHM_ENOTFOUND)
		SHM__COUNT(env, l3_misses, 1);
	else
		SHM__COUNT(env, l3_errors, 1);
}

/* A level's outcome in unserved's text: "" if it was not asked (rc 0),
 * miss ("not in <level>") if it had no such message, else cause (rc's error
 * text without rc's description: unserved's text ends with its own). */
static const char *outcome(int rc, const char *miss, const char *cause)
{
	return rc == 0 ? "" : rc == SHM_ENOTFOUND ? miss : cause;
}

/* The get of id no level served, after L2 and L3 answered l2 and l3 (0:
 * not asked; L1 alone when both are 0), l2_cause holding L2's failure's
 * cause (the last error is L3's): invariant 5's code, SHM_ENOTFOUND or the
 * last level's. Unless every level asked had no such message, the text
 * gives each one's outcome: nothing is formatted for a get a level
 * answers. */
static int unserved(const shm_uuid *id, int l2, const char *l2_cause, int l3)
{
	int last = l3 ? l3 : l2; /* the record's answer */
	char s[37], l3_cause[512];
	int rc;

	shm_uuid_format(id, s);
	if ((l2 == 0 || l2 == SHM_ENOTFOUND) && (l3 == 0 || l3 == SHM_ENOTFOUND))
		return shm__err(SHM_ENOTFOUND, "message %s not found", s);
	if (last == SHM_ENOTFOUND)
		rc = SHM_ENOTFOUND;
	else
		rc = l3 ? SHM_EL3 : SHM_EL2;
	if (l3 && l3 != SHM_ENOTFOUND)
		shm__errcause(l3, l3_cause, sizeof l3_cause);
	return shm__err(rc, "message %s: %s%s%s", s,
	                outcome(l2, "not in Redis", l2_cause),
	                l2 && l3 ? "; " : "", outcome(l3, "not in PostgreSQL", l3_cause));
}

/* Asks L2, then L3 if L2 has no good answer, each if configured, and fills
 * Redis after an L3 hit with what is left of the L2 budget (invariant 2)
 * when Redis answered this get's GET (not found, or a bad value), a fill
 * that fails counted as an L2 error. 0; unserved's code when no level
 * served it; ENOMEM when the last level asked ran out of memory. */
static int ask_levels(shm_env *env, const shm_uuid *id, shm_msg **m)
{
	uint64_t budget = ms_ns(env->opt.l2_timeout_ms), t0 = shm__mono_ns();
	int l2 = 0, l3 = 0; /* 0: not asked */
	char l2_cause[512]; /* kept from L2's failure: L3's error replaces it */
	uint64_t spent;

	if (shm__rt_has_l2(env)) {
		l2 = shm__rt_l2_get(env, id, t0 + budget, m);
		count_l2(env, l2);
		if (l2 == 0)
			return 0;
		if (l2 != SHM_ENOTFOUND)
			shm__errcause(l2, l2_cause, sizeof l2_cause);
	}
	spent = shm__mono_ns() - t0;
	if (shm__rt_has_l3(env)) {
		l3 = shm__rt_l3_get(env, id, m);
		count_l3(env, l3);
		if (l3 == 0) {
			if ((l2 == SHM_ENOTFOUND || l2 == SHM_ECORRUPT) &&
			    spent < budget &&
			    !shm__rt_l2_fill(env, *m, l2 == SHM_ECORRUPT,
			                     shm__mono_ns() + (budget - spent)))
				SHM__COUNT(env, l2_errors, 1);
			return 0;
		}
	}
	if ((l3 ? l3 : l2) == ENOMEM)
		return ENOMEM;
	return unserved(id, l2, l2_cause, l3);
}

int shm__rt_get(shm_env *env, const shm_uuid *id, shm_msg **out)
{
	shm_msg *m = NULL;
	uint64_t inval;
	int rc;

	if (!env->rt)
		return unserved(id, 0, NULL, 0);
	/* An invalidation arriving while we fetch may concern this key: then
	 * the value is served but not cached (it may be the old version). */
	inval = __atomic_load_n(&env->shared->c.inval_received, __ATOMIC_ACQUIRE);
	if ((rc = ask_levels(env, id, &m)))
		return rc;
	/* m passed rt_value.c invariant 4: a fill can fail only for L1's own
	 * reasons (full of unflushed work...), and m is served anyway */
	if (__atomic_load_n(&env->shared->c.inval_received, __ATOMIC_ACQUIRE) ==
	    inval) {
		shm__msg_fill(env, m);
		/* One counted since, while the fill waited for the writers'
		 * lock, looked at L1 before the fill was in it: it dropped
		 * nothing, so the fill is undone. One counted after this
		 * look finds the fill in L1 and drops it itself. */
		if (__atomic_load_n(&env->shared->c.inval_received,
		                    __ATOMIC_ACQUIRE) != inval)
			shm__inval_drop_msg(env, id);
	}
	*out = m;
	return 0;
}

int shm__rt_room_page(shm_env *env, const char *room,
                      const shm__room_cursor *before, uint32_t limit,
                      shm_msg ***out, size_t *n, size_t *rows)
{
	char lim[16], bef[40], id[37];
	const char *params[4] = {room, lim, bef, id};
	shm_msg **msgs;
	PGresult *res;
	size_t k = 0;
	int rc = 0, nr;

	snprintf(lim, sizeof lim, "%u", limit);
	/* no bound: 'infinity' is after every timestamp */
	if (before->at == INT64_MAX)
		snprintf(bef, sizeof bef, "infinity");
	else
		shm_time_format(before->at, bef);
	shm_uuid_format(&before->id, id);
	/* The bound as a row comparison, in the order of the index
	 * messages_room_created_idx (room.c invariant 5): EXPLAIN shows an
	 * Index Scan on it, Index Cond (room_id = $1) AND (ROW(created_at,
	 * id) < ROW($3, $4)), no sort, the LIMIT ending it (the same bound
	 * as an OR of two comparisons is a Filter over the whole room).
	 * ORDER BY names messages.id: a bare id is the output column id::text,
	 * which needs a sort after the scan. */
	if ((rc = shm__rt_l3_query(env,
	                           "SELECT id::text, " SHM_PG_MSG_JSON
	                           " FROM messages WHERE room_id = $1 AND "
	                           "(created_at, id) < ($3::timestamptz, "
	                           "$4::uuid) ORDER BY created_at DESC, "
	                           "messages.id DESC LIMIT $2::int",
	                           4, params, &res))) {
		SHM__COUNT(env, l3_errors, 1);
		return rc;
	}
	nr = PQntuples(res);
	if (!(msgs = calloc((size_t)nr + 1, sizeof *msgs))) {
		PQclear(res);
		return shm__err(ENOMEM, "room page");
	}
	for (int i = 0; i < nr && rc != ENOMEM; i++) {
		rc = shm__rt_level_msg(env, "PostgreSQL", NULL,
		                       PQgetvalue(res, i, 0),
		                       PQgetvalue(res, i, 1),
		                       (size_t)PQgetlength(res, i, 1),
		                       &msgs[k]);
		if (rc == 0)
			k++;
		else if (rc == SHM_ECORRUPT) /* rt_value.c inv. 4: left off */
			SHM__COUNT(env, l3_errors, 1);
	}
	PQclear(res);
	if (rc == ENOMEM) {
		shm_msgs_free(msgs, k);
		return shm__err(ENOMEM, "room page of %d rows", nr);
	}
	*out = msgs;
	*n = k;
	*rows = (size_t)nr;
	return 0;
}
