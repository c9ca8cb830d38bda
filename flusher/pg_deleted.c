/*
 * flusher/pg_deleted.c - a soft delete stays final in PostgreSQL (pg_sink.c
 * invariant 6): the record whose state the upsert did not write over a
 * soft-deleted row, named, and PostgreSQL's row put back into L1.
 *
 * Invariants
 *  1. Called after the batch's transaction was rolled back: the rows read
 *     are what PostgreSQL holds, not what the batch would have made them.
 *  2. The record named is the batch's first, in log order, among those
 *     kept (not superseded) whose state is not Delete and whose row is
 *     Delete: the one the upsert refused. If none is (the row changed
 *     since, or a trigger skipped a row), the batch is refused without a
 *     culprit, which the worker then looks for as for any other refusal,
 *     so that the queue never stalls on it.
 *  3. The row put back into L1 is a write like any other: its record
 *     reaches Redis after the refused state (per-key order), and the other
 *     hosts' L1 through the invalidation channel. It is a put of a deleted
 *     message, which L1 takes whatever it holds, but another deleted state
 *     (then L1's own delete is on its way to both sinks) or nothing to
 *     write (the same state: this record named again after a restart).
 *  4. This file's put and pg_newer.c's are the flusher's only message
 *     writes, both on the pg worker's thread, one at a time: whether this
 *     one wrote is whether it moved the handle's puts counter
 *     (shm_stats_local), which a put of the state L1 already holds does
 *     not.
 */
#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fl.h"
#include "pg_row.h"

/* PostgreSQL's row (its JSON, len bytes) of the message of record r put
 * back into L1, and what came of it said in the log. */
static void put_back(fl_sink *s, const fl_rec *r, const char *id,
                     const char *json, size_t len)
{
	char why[256];
	shm_counters before, after;
	shm_msg *m;
	int rc = shm_msg_from_json(json, len, &m, why, sizeof why);

	if (rc == 0) {
		shm_stats_local(s->env, &before);
		rc = shm_msg_put(s->env, m);
		shm_stats_local(s->env, &after);
		shm_msg_free(m);
		snprintf(why, sizeof why, "%s", shm_errmsg());
	}
	if (rc == 0 && after.puts != before.puts) /* invariant 4 */
		fl_log(FL_INFO, "pg", "message %s: PostgreSQL's soft-deleted row "
		       "put back into L1, for Redis and the other hosts (seq %"
		       PRIu64 " would have undone its delete)", id, r->seq);
	else if (rc == 0)
		fl_log(FL_INFO, "pg", "message %s: L1 holds PostgreSQL's "
		       "soft-deleted row already, nothing to put back (seq %"
		       PRIu64 " would have undone its delete)", id, r->seq);
	else if (rc == SHM_EDELETED)
		fl_log(FL_INFO, "pg", "message %s: L1 holds it soft-deleted "
		       "already; its delete reaches Redis by its own record", id);
	else
		fl_log(FL_WARN, "pg", "message %s: PostgreSQL's soft-deleted row "
		       "cannot be put back into L1 (%s): L1 and Redis may show "
		       "it undeleted until its next write or their TTLs", id,
		       why);
}

/* The ids (a uuid[] literal into ids) of the messages b's records leave
 * in a state other than Delete, the records' indexes into *idx (malloc'd,
 * *n of them). ENOMEM or 0. */
static int candidates(const fl_batch *b, fl_buf *ids, size_t **idx,
                      size_t *n)
{
	*n = 0;
	if (!(*idx = malloc((b->n ? b->n : 1) * sizeof **idx)) ||
	    fl_buf_add(ids, "{", 1))
		return ENOMEM;
	for (size_t i = 0; i < b->n; i++) {
		const fl_rec *r = &b->r[i];
		shm_msg *m;
		char id[37];
		int rc;

		if (r->superseded || !shm_op_is_msg(r->op))
			continue;
		/* no memory to decode it may hide the culprit: transient */
		rc = shm_msg_decode(r->payload, r->payload_len, &m);
		if (rc == ENOMEM)
			return ENOMEM;
		if (rc)
			continue;
		bool deleted = m->type == SHM_MSG_DELETE;
		shm_uuid_format(&m->id, id);
		shm_msg_free(m);
		if (deleted)
			continue;
		if ((*n && fl_buf_add(ids, ",", 1)) || fl_buf_add(ids, id, 36))
			return ENOMEM;
		(*idx)[(*n)++] = i;
	}
	return fl_buf_add(ids, "}", 1) ? ENOMEM : 0;
}

int fl_pg_kept_deleted(fl_sink *s, struct pg_conn *c, fl_batch *b)
{
	static const char sql[] =
		"SELECT id, " SHM_PG_MSG_JSON " FROM messages"
		" WHERE id = ANY($1::uuid[]) AND message_type = 'Delete'";
	fl_buf ids = {0};
	size_t *idx = NULL, n;
	PGresult *res = NULL;
	int rc = FL_TRANSIENT;

	if (candidates(b, &ids, &idx, &n)) {
		fl_sink_seterr(s, "out of memory");
		goto out;
	}
	const char *param[1] = {ids.p};
	res = PQexecParams(c, sql, 1, NULL, param, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		fl_sink_seterr(s, "soft-deleted rows: %s", PQerrorMessage(c));
		goto out;
	}
	/* invariant 2: the first in log order */
	for (size_t k = 0; k < n; k++) {
		const fl_rec *r = &b->r[idx[k]];
		shm_uuid u;
		char id[37];

		memcpy(u.b, r->key, 16);
		shm_uuid_format(&u, id);
		for (int row = 0; row < PQntuples(res); row++) {
			if (strcmp(PQgetvalue(res, row, 0), id) != 0)
				continue;
			b->reject = (long)idx[k];
			b->reject_final = true;
			snprintf(b->reason, sizeof b->reason, "message %s is "
			         "soft-deleted in PostgreSQL, and a soft delete "
			         "is final: this %s would undo it", id,
			         shm_op_name(r->op));
			fl_sink_seterr(s, "seq %" PRIu64 ": %s", r->seq,
			               b->reason);
			put_back(s, r, id, PQgetvalue(res, row, 1),
			         (size_t)PQgetlength(res, row, 1));
			rc = FL_REJECT;
			goto out;
		}
	}
	/* invariant 2: culprit unknown (the worker replays the batch in
	 * halves) */
	fl_sink_seterr(s, "the upsert wrote fewer rows than staged, but none "
	               "of the batch's messages is soft-deleted in PostgreSQL "
	               "(a trigger skipping rows?)");
	rc = FL_REJECT;
out:
	PQclear(res);
	fl_buf_free(&ids);
	free(idx);
	return rc;
}
