/*
 * flusher/pg_newer.c - the newer version wins in PostgreSQL (pg_sink.c
 * invariant 7): the records whose state the upsert did not write over a
 * newer row, said, and PostgreSQL's row put back into L1.
 *
 * Invariants
 *  1. Called after the batch's COMMIT: the rows read are PostgreSQL's as
 *     they are now, at least as new as those the upsert kept.
 *  2. A row is put back only over an older version in L1 (updated_at
 *     below the row's): one L1 holds as new or newer is later local work,
 *     whose own record takes it to the sinks; one L1 does not hold is
 *     served by no one from L1 (its unflushed record was this one, so an
 *     entry gone is one replaced or dropped since). The put judges that
 *     in its own write (shm_msg_put_newer), so a local write of the
 *     message just before it is never replaced (a plain put would replace
 *     it, made newer still by msg.c invariant 10, and so lose it
 *     everywhere).
 *  3. The row put back is a write like any other (as pg_deleted.c's): its
 *     record reaches Redis after the refused one, and the other hosts' L1
 *     through the invalidation channel.
 *  4. The put-back follows the COMMIT, which moves the position past the
 *     refused record: a flusher killed in between, or whose COMMIT's
 *     answer was lost, never reads that record again. So a worker that
 *     finds the sink's position past its own (worker.c resync: the range
 *     was committed without its follow-up) has every message of that
 *     range whose PostgreSQL row is newer than L1's put back
 *     (fl_pg_newer_again): at least once, and idempotent by invariant 2
 *     (a row put back already is as new as L1's). The range is in the log
 *     still: it is trimmed only up to the worker's own meta position. A
 *     committed batch whose rows cannot be read (a connection lost after
 *     the COMMIT) is a transient failure after a new connection for that
 *     reason: the worker reads the position again, past its own.
 */
#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <string.h>

#include "fl.h"
#include "pg_row.h"

/* MSG_SQL's result (pg_sink.c): a check, id, the record's updated_at and
 * the row's, as RFC 3339 text (NULL: none). */
enum { OLD_ID = 1, OLD_OURS, OLD_THEIRS };

static const char *or_none(const PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col) ? "none" : PQgetvalue(r, row, col);
}

/* The seq of b's record that left id's state (its last: the one kept). */
static uint64_t seq_of(const fl_batch *b, const shm_uuid *id)
{
	for (size_t i = 0; i < b->n; i++)
		if (!b->r[i].superseded && shm_op_is_msg(b->r[i].op) &&
		    b->r[i].key_len == 16 && !memcmp(b->r[i].key, id->b, 16))
			return b->r[i].seq;
	return 0;
}

/* PostgreSQL's rows (id, updated_at, JSON) of the ids of a uuid[] literal */
static const char rows_sql[] =
	"SELECT id, " SHM_PG_UTC("updated_at") ", " SHM_PG_MSG_JSON
	" FROM messages WHERE id = ANY($1::uuid[])";

/* PostgreSQL's row of id (its JSON, len bytes), newer than the record's
 * state (ours, theirs: their updated_at), put back into L1. */
static void put_back(fl_sink *s, uint64_t seq, const char *id,
                     const char *ours, const char *theirs, const char *json,
                     size_t len)
{
	char why[256];
	shm_msg *m;
	bool wrote;
	int rc = shm_msg_from_json(json, len, &m, why, sizeof why);

	if (rc) {
		fl_log(FL_WARN, "pg", "message %s: PostgreSQL kept its newer "
		       "row (updated_at %s) over seq %" PRIu64 " (updated_at "
		       "%s), which cannot be put back into L1 (%s): L1 and "
		       "Redis may show the older one until its next write or "
		       "their TTLs", id, theirs, seq, ours, why);
		return;
	}
	rc = shm_msg_put_newer(s->env, m, &wrote);
	snprintf(why, sizeof why, "%s", rc ? shm_errmsg() : "");
	shm_msg_free(m);
	if (rc == 0 && wrote)
		fl_log(FL_INFO, "pg", "message %s: PostgreSQL kept its newer "
		       "row (updated_at %s) over seq %" PRIu64 " (updated_at "
		       "%s), and it is put back into L1, for Redis and the other "
		       "hosts", id, theirs, seq, ours);
	else if (rc == 0)
		fl_log(FL_INFO, "pg", "message %s: PostgreSQL kept its newer "
		       "row (updated_at %s) over seq %" PRIu64 " (updated_at "
		       "%s); L1 holds one as new (later local work, which its "
		       "own record takes to the sinks) or does not hold it: "
		       "nothing put back", id, theirs, seq, ours);
	else if (rc == SHM_EDELETED)
		fl_log(FL_INFO, "pg", "message %s: PostgreSQL kept its newer "
		       "row (updated_at %s) over seq %" PRIu64 " (updated_at "
		       "%s); L1 holds it soft-deleted, and its delete reaches "
		       "PostgreSQL by its own record", id, theirs, seq, ours);
	else
		fl_log(FL_WARN, "pg", "message %s: PostgreSQL kept its newer "
		       "row (updated_at %s) over seq %" PRIu64 " (updated_at "
		       "%s), which cannot be put back into L1 (%s): L1 and "
		       "Redis may show the older one until its next write or "
		       "their TTLs", id, theirs, seq, ours, why);
}

int fl_pg_newer(fl_sink *s, struct pg_conn *c, const fl_batch *b,
                const struct pg_result *older, size_t *n)
{
	const PGresult *o = older;
	PGresult *res = NULL;
	fl_buf ids = {0};
	bool oom = false;
	int rc = 0;

	*n = 0;
	for (int i = 0; i < PQntuples(o); i++) {
		if (PQgetisnull(o, i, OLD_ID))
			continue;
		oom = oom || fl_buf_add(&ids, *n ? "," : "{", 1) ||
		      fl_buf_adds(&ids, PQgetvalue(o, i, OLD_ID));
		(*n)++;
	}
	if (!*n)
		goto out;
	rc = -1; /* invariant 4: done again once the position is read */
	if (oom || fl_buf_add(&ids, "}", 1)) {
		fl_sink_seterr(s, "batch committed, but out of memory to put "
		               "back into L1 the newer rows PostgreSQL kept of "
		               "%zu message%s", *n, shm__plural(*n));
		goto out;
	}
	const char *param[1] = {ids.p};
	res = PQexecParams(c, rows_sql, 1, NULL, param, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		fl_sink_seterr(s, "batch committed, but the newer rows "
		               "PostgreSQL kept of %zu message%s cannot be read "
		               "to put them back into L1: %s", *n,
		               shm__plural(*n), PQerrorMessage(c));
		goto out;
	}
	rc = 0;
	for (int i = 0; i < PQntuples(o); i++) {
		const char *id = PQgetvalue(o, i, OLD_ID);
		shm_uuid u;
		int row;

		if (PQgetisnull(o, i, OLD_ID) || shm_uuid_parse(id, &u))
			continue;
		for (row = 0; row < PQntuples(res); row++)
			if (!strcmp(PQgetvalue(res, row, 0), id))
				break;
		if (row == PQntuples(res)) {
			fl_log(FL_WARN, "pg", "message %s: PostgreSQL kept its "
			       "newer row (updated_at %s) over seq %" PRIu64
			       " (updated_at %s), and no longer has it (deleted "
			       "by hand?): nothing put back", id,
			       or_none(o, i, OLD_THEIRS), seq_of(b, &u),
			       or_none(o, i, OLD_OURS));
			continue;
		}
		put_back(s, seq_of(b, &u), id, or_none(o, i, OLD_OURS),
		         or_none(res, row, 1), PQgetvalue(res, row, 2),
		         (size_t)PQgetlength(res, row, 2));
	}
out:
	PQclear(res);
	fl_buf_free(&ids);
	return rc;
}

/* The ids (a uuid[] literal into ids) of the messages records (from, upto]
 * of the log write; *n of them. ENOMEM, 0, or an error of the log. */
static int range_ids(shm_env *env, uint64_t from, uint64_t upto, fl_buf *ids,
                     size_t *n)
{
	shm_log_iter *it;
	shm_log_rec rec;
	char id[37];
	int rc;

	*n = 0;
	if (fl_buf_add(ids, "{", 1))
		return ENOMEM;
	if ((rc = shm_log_iter_open(env, from + 1, &it)))
		return rc;
	while ((rc = shm_log_iter_next(it, &rec)) != SHM_ENOTFOUND &&
	       (rc == SHM_ECORRUPT || (rc == 0 && rec.seq <= upto))) {
		shm_uuid u;
		if (rc || !shm_op_is_msg(rec.op) || rec.key_len != 16)
			continue; /* a corrupt one is the worker's dead letter */
		memcpy(u.b, rec.key, 16);
		shm_uuid_format(&u, id);
		if ((*n && fl_buf_add(ids, ",", 1)) || fl_buf_add(ids, id, 36)) {
			rc = ENOMEM;
			break;
		}
		(*n)++;
	}
	shm_log_iter_close(it); /* before any put (worker.c invariant 4) */
	if (rc == SHM_ENOTFOUND || rc == 0)
		rc = fl_buf_add(ids, "}", 1) ? ENOMEM : 0;
	return rc;
}

void fl_pg_newer_again(fl_sink *s, struct pg_conn *c, uint64_t from,
                       uint64_t upto)
{
	PGresult *res = NULL;
	fl_buf ids = {0};
	size_t n, put = 0;
	int rc = range_ids(s->env, from, upto, &ids, &n);

	if (rc || !n) {
		if (rc)
			fl_log(FL_WARN, "pg", "records (%" PRIu64 "..%" PRIu64
			       "], applied without this flusher's follow-up, "
			       "cannot be read (%s): L1 and Redis may show older "
			       "versions of their messages than PostgreSQL until "
			       "their next write or their TTLs", from, upto,
			       rc == ENOMEM ? "out of memory" : shm_errmsg());
		goto out;
	}
	const char *param[1] = {ids.p};
	res = PQexecParams(c, rows_sql, 1, NULL, param, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		fl_log(FL_WARN, "pg", "records (%" PRIu64 "..%" PRIu64 "], "
		       "applied without this flusher's follow-up: their "
		       "messages' rows cannot be read (%s): L1 and Redis may "
		       "show older versions than PostgreSQL until their next "
		       "write or their TTLs", from, upto, PQerrorMessage(c));
		goto out;
	}
	for (int row = 0; row < PQntuples(res); row++) {
		char why[256];
		shm_msg *m;
		bool wrote;

		if (shm_msg_from_json(PQgetvalue(res, row, 2),
		                      (size_t)PQgetlength(res, row, 2), &m, why,
		                      sizeof why))
			continue;
		if ((rc = shm_msg_put_newer(s->env, m, &wrote)) || wrote) {
			put += wrote;
			fl_log(rc && rc != SHM_EDELETED ? FL_WARN : FL_INFO, "pg",
			       "message %s: PostgreSQL's row (updated_at %s) is "
			       "newer than L1's after records (%" PRIu64 "..%"
			       PRIu64 "] were applied without this flusher's "
			       "follow-up: %s%s", PQgetvalue(res, row, 0),
			       PQgetvalue(res, row, 1), from, upto,
			       rc == 0 ? "put back into L1, for Redis and the "
			       "other hosts" : rc == SHM_EDELETED ? "L1 holds it "
			       "soft-deleted, its delete reaches PostgreSQL by "
			       "its own record" : "it cannot be put back: ",
			       rc && rc != SHM_EDELETED ? shm_errmsg() : "");
		}
		shm_msg_free(m);
	}
	size_t rows = (size_t)PQntuples(res);
	fl_log(FL_INFO, "pg", "records (%" PRIu64 "..%" PRIu64 "] were "
	       "applied without this flusher's follow-up: %zu of their %zu "
	       "message%s put back from PostgreSQL into L1", from, upto, put,
	       rows, shm__plural(rows));
out:
	PQclear(res);
	fl_buf_free(&ids);
}
