/*
 * flusher/cleanup.c - the grouped connection cleanup: per marked website,
 * one transaction; per direct source concerned, one statement that loads its
 * recursive dependencies once, deletes its useless connections and inserts
 * its missing ones; the round's connection, report and scheduler. cleanup.h
 * draws the round and states the invariants. The website's graph is
 * cleanup_graph.c's, the immediate upserts cleanup_refresh.c's, the old
 * way (one check per connection) cleanup_baseline.c's.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cleanup_internal.h"

/* The marks a website's transaction handles: read once, cleared by exact
 * (object, seq, marked_at), so a mark re-written meanwhile (by this host or
 * another one, whose seqs are not comparable with ours) survives. */
const char *const fl_cleanup__marks_tmp_sql =
	"DO $$ BEGIN IF to_regclass('pg_temp.fl_cleanup_marks') IS NULL THEN"
	" CREATE TEMP TABLE fl_cleanup_marks (object_type text,"
	" object_id text, seq bigint, marked_at timestamptz)"
	" ON COMMIT DELETE ROWS; END IF; END $$";

const char *const fl_cleanup__marks_snap_sql =
	"INSERT INTO fl_cleanup_marks SELECT object_type, object_id, seq,"
	" marked_at FROM shm_marks WHERE website_id = $1";

const char *const fl_cleanup__marks_clear_sql =
	"DELETE FROM shm_marks s USING fl_cleanup_marks m"
	" WHERE s.website_id = $1 AND s.object_type = m.object_type"
	" AND s.object_id = m.object_id AND s.seq = m.seq"
	" AND s.marked_at = m.marked_at";

/* The university new connections belong to: shm_websites, else the one of
 * the website's existing connections. */
const char *const fl_cleanup__university_sql =
	"SELECT COALESCE((SELECT university_id FROM shm_websites"
	" WHERE website_id = $1), (SELECT university_id FROM"
	" communication_website_connections WHERE website_id = $1 LIMIT 1))";

/* The marks' rows, as the snapshot takes them (the backward walk's
 * starts). */
static const char *const marks_snap_ret_sql =
	"INSERT INTO fl_cleanup_marks SELECT object_type, object_id, seq,"
	" marked_at FROM shm_marks WHERE website_id = $1"
	" RETURNING object_type, object_id";

/* Sources of connections whose source or indirect object is marked (a
 * destroyed source is found here: it has no graph left), through the two
 * indexes of Osuny's table. The direct objects reaching a mark are found
 * by walking the graph in C. */
static const char *const conn_sources_sql =
	"WITH m AS (SELECT object_type, CASE WHEN object_id ~* " UUID_RE
	"  THEN object_id::uuid END AS u FROM fl_cleanup_marks)"
	" SELECT c.direct_source_type, c.direct_source_id::text"
	"  FROM m JOIN communication_website_connections c"
	"    ON c.direct_source_type = m.object_type"
	"   AND c.direct_source_id = m.u WHERE c.website_id = $1"
	" UNION "
	" SELECT c.direct_source_type, c.direct_source_id::text"
	"  FROM m JOIN communication_website_connections c"
	"    ON c.indirect_object_type = m.object_type"
	"   AND c.indirect_object_id = m.u WHERE c.website_id = $1"
	"   AND c.direct_source_type IS NOT NULL"
	"   AND c.direct_source_id IS NOT NULL";

/*
 * A chunk of direct sources of one type ($1 website, $2 type, $3 their ids
 * as uuid[], $4 university or NULL), with what each must keep, computed in
 * C from the website's graph: k = ($5 source, $6 object type, $7 object
 * id), the indirect objects with a UUID id among its recursive
 * dependencies. In one statement: delete each source's connections whose
 * object is not in k (gone), and the duplicates of kept ones, keeping the
 * smallest id; insert the ones of k missing (n). Data-modifying CTEs share
 * one snapshot and touch disjoint rows; the connections are read through
 * the (direct_source_type, direct_source_id) index.
 */
static const char *const keep_batch_sql =
	"WITH k AS MATERIALIZED ("
	"  SELECT DISTINCT s, t, u FROM unnest($5::uuid[], $6::text[],"
	"    $7::uuid[]) AS k(s, t, u)"
	"), c AS MATERIALIZED ("
	"  SELECT c.id, c.direct_source_id AS s, c.indirect_object_type AS t,"
	"    c.indirect_object_id AS u,"
	"    row_number() OVER (PARTITION BY c.direct_source_id,"
	"      c.indirect_object_type, c.indirect_object_id ORDER BY c.id) AS n"
	"    FROM communication_website_connections c"
	"   WHERE c.website_id = $1 AND c.direct_source_type = $2"
	"     AND c.direct_source_id = ANY ($3::uuid[])"
	"), gone AS ("
	"  SELECT c.id FROM c LEFT JOIN k ON k.s = c.s AND k.t = c.t"
	"   AND k.u = c.u WHERE k.s IS NULL OR c.n > 1"
	"), d AS ("
	"  DELETE FROM communication_website_connections x USING gone"
	"   WHERE x.id = gone.id RETURNING 1"
	"), n AS ("
	"  INSERT INTO communication_website_connections (university_id,"
	"    website_id, indirect_object_type, indirect_object_id,"
	"    direct_source_type, direct_source_id)"
	"  SELECT $4::uuid, $1, k.t, k.u, $2, k.s FROM k"
	"   LEFT JOIN c ON c.s = k.s AND c.t = k.t AND c.u = k.u"
	"   WHERE c.id IS NULL AND $4::uuid IS NOT NULL"
	"  RETURNING 1"
	") SELECT (SELECT count(*) FROM d), (SELECT count(*) FROM n)";

static atomic_bool stop_requested;

uint64_t fl_cleanup__now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* Runs one statement; the result if its status is ok, else NULL with err
 * set to what and the server's message (first line). */
PGresult *fl_cleanup__run(PGconn *pg, fl_cleanup_stats *st, const char *sql,
                          int n, const char *const *params, const char *what,
                          char *err, size_t errlen)
{
	PGresult *res = n ? PQexecParams(pg, sql, n, NULL, params, NULL, NULL, 0)
	                  : PQexec(pg, sql);
	st->statements++;
	if (res && (PQresultStatus(res) == PGRES_COMMAND_OK ||
	            PQresultStatus(res) == PGRES_TUPLES_OK))
		return res;
	const char *msg = res && *PQresultErrorMessage(res)
	                          ? PQresultErrorMessage(res)
	                          : PQerrorMessage(pg);
	char shown[SHM__SHOWN_LONG_MAX]; /* its first line, printably */
	snprintf(err, errlen, "%s: %s", what,
	         shm__shown_long(msg, strcspn(msg, "\n"), shown));
	PQclear(res);
	return NULL;
}

int fl_cleanup__run_cmd(PGconn *pg, fl_cleanup_stats *st, const char *sql,
                        int n, const char *const *params, const char *what,
                        char *err, size_t errlen)
{
	PGresult *res = fl_cleanup__run(pg, st, sql, n, params, what, err,
	                                errlen);
	if (!res)
		return -1;
	PQclear(res);
	return 0;
}

void fl_cleanup__rollback(PGconn *pg, fl_cleanup_stats *st)
{
	if (PQstatus(pg) == CONNECTION_OK &&
	    PQtransactionStatus(pg) != PQTRANS_IDLE) {
		PQclear(PQexec(pg, "ROLLBACK"));
		st->statements++;
	}
}

/* --------------------------------------- one website, one transaction */

/* Sources v[0..n) (of one type), one statement: delete the useless
 * connections, insert the missing ones. */
static int send_chunk(PGconn *pg, graph *g, const char *website,
                      const char *university, const uint32_t *v, uint32_t n,
                      keep_bufs *k, fl_cleanup_stats *st, char *err,
                      size_t errlen)
{
	if (fl_cleanup__keep_start(k))
		goto oom;
	for (uint32_t i = 0; i < n; i++) {
		if (fl_cleanup__arr_add(&k->src, g->n[v[i]].id) ||
		    fl_cleanup__keep_of(g, v[i], &k->ks, NULL, &k->kt,
		                        &k->ki) < 0)
			goto oom;
		st->dep_loads++; /* each source's, once, from memory */
	}
	if (fl_cleanup__keep_end(k))
		goto oom;
	const char *type = g->n[v[0]].type;
	const char *params[7] = {website, type, k->src.p, university,
	                         k->ks.p, k->kt.p, k->ki.p};
	char what[160];
	snprintf(what, sizeof what, "%u sources %.60s", n, type);
	PGresult *res = fl_cleanup__run(pg, st, keep_batch_sql, 7, params, what,
	                                err, errlen);
	if (!res)
		return -1;
	st->sources += n;
	st->deleted += strtoull(PQgetvalue(res, 0, 0), NULL, 10);
	st->inserted += strtoull(PQgetvalue(res, 0, 1), NULL, 10);
	PQclear(res);
	return 0;
oom:
	snprintf(err, errlen, "out of memory");
	return -1;
}

/* Interns the (type, id) rows of res (columns 0, 1); the nodes' indexes
 * go to g->queue if starts (g->queue must be sized: fl_cleanup__graph_index
 * first). */
static int intern_rows(graph *g, PGresult *res, bool source, char *err,
                       size_t errlen)
{
	for (int r = 0; r < PQntuples(res); r++) {
		uint32_t x = fl_cleanup__graph_node(g, PQgetvalue(res, r, 0),
		                                    PQgetvalue(res, r, 1),
		                                    true);
		if (x == UINT32_MAX) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		g->n[x].source |= source;
	}
	return 0;
}

/* The nodes of res's (type, id) rows, distinct, into g->queue; their
 * count. */
static uint32_t starts_of(graph *g, PGresult *res)
{
	uint32_t n = 0, ep = ++g->epoch;
	for (int r = 0; r < PQntuples(res); r++) {
		uint32_t x = fl_cleanup__graph_node(g, PQgetvalue(res, r, 0),
		                                    PQgetvalue(res, r, 1),
		                                    false);
		if (x != UINT32_MAX && g->n[x].seen != ep) {
			g->n[x].seen = ep;
			g->queue[n++] = x;
		}
	}
	return n;
}

/* Per run of sources of one type, chunks of CHUNK: send_chunk. */
static int send_sources(PGconn *pg, graph *g, const char *website,
                        const char *university, fl_cleanup_stats *st,
                        char *err, size_t errlen)
{
	uint32_t n = 0, *v = fl_cleanup__sources_of(g, &n);
	keep_bufs k = {0};
	int rc = 0;
	if (!v) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (uint32_t i = 0, j; i < n && !rc; i = j) {
		for (j = i + 1; j < n && j - i < CHUNK &&
		                !strcmp(g->n[v[j]].type, g->n[v[i]].type);
		     j++)
			;
		rc = send_chunk(pg, g, website, university, v + i, j - i, &k,
		                st, err, errlen);
	}
	fl_cleanup__keep_free(&k);
	free(v);
	return rc;
}

int fl_cleanup_website(PGconn *pg, const char *website, fl_cleanup_stats *st,
                       char *err, size_t errlen)
{
	const char *p1[1] = {website};
	PGresult *res = NULL, *marks = NULL, *csrc = NULL;
	char *university = NULL;
	fl_cleanup_stats my = {0};
	graph g = {0};
	uint64_t t0 = fl_cleanup__now_us();
	int rc = -1;

	if (fl_cleanup__run_cmd(pg, &my, fl_cleanup__marks_tmp_sql, 0, NULL,
	                        "marks table", err, errlen) ||
	    fl_cleanup__run_cmd(pg, &my, "BEGIN", 0, NULL, "begin", err,
	                        errlen))
		goto out;
	char lock_sql[160];
	snprintf(lock_sql, sizeof lock_sql,
	         "SELECT pg_try_advisory_xact_lock(%d,"
	         " hashtext($1::uuid::text))",
	         FL_CLEANUP_LOCK);
	if (!(res = fl_cleanup__run(pg, &my, lock_sql, 1, p1, "advisory lock",
	                            err, errlen)))
		goto out;
	if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
		/* a flusher batch refreshing this website's connections
		 * (milliseconds), or another host's cleanup: wait, bounded */
		PQclear(res);
		snprintf(lock_sql, sizeof lock_sql,
		         "SELECT pg_advisory_xact_lock(%d,"
		         " hashtext($1::uuid::text))",
		         FL_CLEANUP_LOCK);
		if (fl_cleanup__run_cmd(pg, &my,
		                        "SET LOCAL lock_timeout = '10s'", 0,
		                        NULL, "lock timeout", err, errlen) ||
		    !(res = fl_cleanup__run(pg, &my, lock_sql, 1, p1,
		                            "advisory lock", err, errlen))) {
			fl_log(FL_INFO, "cleanup", "website %s: locked by "
			       "another session, skipped: %s", website, err);
			err[0] = 0;
			rc = 0;
			goto out;
		}
	}
	PQclear(res);
	res = NULL;
	if (!(marks = fl_cleanup__run(pg, &my, marks_snap_ret_sql, 1, p1,
	                              "read marks", err, errlen)))
		goto out;
	if (PQntuples(marks) == 0) { /* cleared meanwhile */
		rc = fl_cleanup__run_cmd(pg, &my, "COMMIT", 0, NULL, "commit",
		                         err, errlen);
		goto out;
	}
	if (!(res = fl_cleanup__run(pg, &my, fl_cleanup__university_sql, 1,
	                            p1, "university", err, errlen)))
		goto out;
	if (!PQgetisnull(res, 0, 0) &&
	    !(university = strdup(PQgetvalue(res, 0, 0)))) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	PQclear(res);
	res = NULL;
	if (!university)
		fl_log(FL_WARN, "cleanup", "website %s: university unknown (no "
		       "shm_websites row, no connection): no connection can be "
		       "added", website);
	if (!(csrc = fl_cleanup__run(pg, &my, conn_sources_sql, 1, p1,
	                             "direct sources", err, errlen)))
		goto out;
	/* the website's graph, once; marks and connection sources join it
	 * as nodes (a destroyed object is a node without edges) */
	if (fl_cleanup__graph_load(pg, website, &g, &my, err, errlen) ||
	    intern_rows(&g, marks, false, err, errlen) ||
	    intern_rows(&g, csrc, true, err, errlen) ||
	    fl_cleanup__graph_index(&g, err, errlen))
		goto out;
	/* the direct objects marked or reaching a mark through indirect
	 * ones: their dependencies may have changed */
	fl_cleanup__walk_back_to_sources(&g, starts_of(&g, marks));
	if (send_sources(pg, &g, website, university, &my, err, errlen))
		goto out;
	if (!(res = fl_cleanup__run(pg, &my, fl_cleanup__marks_clear_sql, 1,
	                            p1, "clear marks", err, errlen)))
		goto out;
	uint64_t cleared = strtoull(PQcmdTuples(res), NULL, 10);
	PQclear(res);
	res = NULL;
	if (fl_cleanup__run_cmd(pg, &my, "COMMIT", 0, NULL, "commit", err,
	                        errlen))
		goto out;
	my.marks_cleared = cleared;
	rc = 0;
out:
	PQclear(res);
	PQclear(marks);
	PQclear(csrc);
	fl_cleanup__graph_free(&g);
	free(university);
	if (rc) {
		fl_cleanup__rollback(pg, &my);
		/* only what was sent counts when the transaction failed */
		my.sources = my.dep_loads = my.deleted = my.inserted = 0;
		my.websites_failed = 1;
	} else if (PQtransactionStatus(pg) != PQTRANS_IDLE) {
		/* skipped website: release the tx */
		fl_cleanup__rollback(pg, &my);
	}
	my.websites = 1;
	my.duration_us = fl_cleanup__now_us() - t0;
	st->websites += my.websites;
	st->websites_failed += my.websites_failed;
	st->sources += my.sources;
	st->statements += my.statements;
	st->dep_loads += my.dep_loads;
	st->deleted += my.deleted;
	st->inserted += my.inserted;
	st->marks_cleared += my.marks_cleared;
	return rc;
}

/* The marked websites, in text; *out is malloc'd with n strings after the
 * pointer array (free(*out)). */
int fl_cleanup__marked_websites(PGconn *pg, fl_cleanup_stats *st,
                                char ***out, int *n, char *err,
                                size_t errlen)
{
	PGresult *res = fl_cleanup__run(pg, st,
	                                "SELECT DISTINCT website_id::text"
	                                " FROM shm_marks ORDER BY 1",
	                                0, NULL, "marked websites", err,
	                                errlen);
	if (!res)
		return -1;
	int rows = PQntuples(res);
	char **v = malloc((size_t)(rows + 1) * (sizeof(char *) + 37));
	if (!v) {
		PQclear(res);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	char *s = (char *)(v + rows + 1);
	for (int i = 0; i < rows; i++, s += 37) {
		snprintf(s, 37, "%s", PQgetvalue(res, i, 0));
		v[i] = s;
	}
	v[rows] = NULL;
	PQclear(res);
	*out = v;
	*n = rows;
	return 0;
}

int fl_cleanup_round(PGconn *pg, fl_cleanup_stats *st, char *err,
                     size_t errlen)
{
	uint64_t t0 = fl_cleanup__now_us();
	char **ws = NULL, werr[512];
	int n = 0;

	memset(st, 0, sizeof *st);
	if (fl_cleanup__marked_websites(pg, st, &ws, &n, err, errlen)) {
		st->duration_us = fl_cleanup__now_us() - t0;
		return -1;
	}
	for (int i = 0; i < n && !atomic_load(&stop_requested); i++) {
		werr[0] = 0;
		if (fl_cleanup_website(pg, ws[i], st, werr, sizeof werr))
			fl_log(FL_ERROR, "cleanup", "website %s failed, left "
			       "marked for the next round: %s", ws[i], werr);
		if (PQstatus(pg) != CONNECTION_OK) {
			/* the others would fail the same way: left marked,
			 * counted and said as failed ones are */
			int left = n - i - 1;
			if (left)
				fl_log(FL_ERROR, "cleanup", "connection lost: %d "
				       "website%s left marked for the next "
				       "round", left, left == 1 ? "" : "s");
			st->websites += (uint64_t)left;
			st->websites_failed += (uint64_t)left;
			break;
		}
	}
	free(ws);
	st->duration_us = fl_cleanup__now_us() - t0;
	return 0;
}

/* ------------------------------------------------- connect and report */

PGconn *fl_cleanup_connect(const fl_config *cfg, char *err, size_t errlen)
{
	char sql[128];
	PGconn *pg = fl_pg_connect(cfg, "shm-flusher-cleanup", "cleanup", err,
	                           errlen);

	if (!pg)
		return NULL;
	/* one chunk's statement is bounded by pg-timeout-ms, not the round;
	 * no JIT: the recursive CTEs' estimates pass jit_above_cost and
	 * compiling (~200 ms) costs far more than running them (~ms) */
	snprintf(sql, sizeof sql, "SET jit = off; SET statement_timeout = %llu",
	         (unsigned long long)cfg->pg_timeout_ms);
	PGresult *res = PQexec(pg, sql);
	if (!res || PQresultStatus(res) != PGRES_COMMAND_OK) {
		const char *msg = PQerrorMessage(pg);
		char shown[SHM__SHOWN_LONG_MAX]; /* its first line, printably */
		snprintf(err, errlen, "session setup: %s",
		         shm__shown_long(msg, strcspn(msg, "\n"), shown));
		PQclear(res);
		PQfinish(pg);
		return NULL;
	}
	PQclear(res);
	return pg;
}

#define CLEANUP_STATS(X)                                                       \
	X(websites)                                                            \
	X(websites_failed)                                                     \
	X(sources)                                                             \
	X(statements)                                                          \
	X(dep_loads)                                                           \
	X(deleted)                                                             \
	X(inserted)                                                            \
	X(marks_cleared)

void fl_cleanup_report(shm_env *env, const fl_cleanup_stats *st)
{
	const char *names[32];
	uint64_t values[32];
	size_t n = 0;
	struct timespec ts;

	fl_log(st->websites_failed ? FL_WARN : FL_INFO, "cleanup",
	       "round: %" PRIu64 " website%s (%" PRIu64 " failed), %" PRIu64
	       " direct sources, %" PRIu64 " statements, %" PRIu64
	       " dependency loads, %" PRIu64 " deleted, %" PRIu64
	       " inserted, %" PRIu64 " marks cleared, %" PRIu64 " ms",
	       st->websites, st->websites == 1 ? "" : "s", st->websites_failed,
	       st->sources, st->statements, st->dep_loads, st->deleted,
	       st->inserted, st->marks_cleared, st->duration_us / 1000);
	if (!env)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
#define LAST(f)                                                                \
	names[n] = "cleanup.last." #f;                                         \
	values[n++] = st->f;
	CLEANUP_STATS(LAST)
#undef LAST
#define TOTAL(f)                                                               \
	names[n] = "cleanup.total." #f;                                        \
	shm_meta_get(env, names[n], &values[n]);                               \
	values[n++] += st->f;
	CLEANUP_STATS(TOTAL)
#undef TOTAL
	names[n] = "cleanup.last.duration_ms";
	values[n++] = st->duration_us / 1000;
	names[n] = "cleanup.last.at";
	values[n++] = (uint64_t)ts.tv_sec;
	names[n] = "cleanup.rounds";
	shm_meta_get(env, names[n], &values[n]);
	values[n++]++;
	if (shm_meta_set_many(env, names, values, n))
		fl_log(FL_WARN, "cleanup", "cannot write stats: %s",
		       shm_errmsg());
}

/* The round reads the graph and marks PostgreSQL has (shm_edges,
 * shm_marks): those still in the log are not in it. Said, or a round right
 * after shm-dataset --env or an application's saves cleans nothing, and
 * looks like a round that found nothing to clean. */
static void say_unapplied(shm_env *env)
{
	uint64_t applied = 0, next_seq = 0;
	shm_log_iter *it;
	shm_log_rec rec;

	shm_meta_get(env, "sink.pg.applied", &applied); /* none: 0 */
	if (shm_meta_get(env, "next_seq", &next_seq) || next_seq <= applied + 1)
		return;
	if (shm_log_iter_open(env, applied + 1, &it))
		return;
	memset(&rec, 0, sizeof rec);
	bool held = shm_log_iter_next(it, &rec) == 0; /* not trimmed yet */
	uint64_t first = rec.seq;
	shm_log_iter_close(it);
	if (held)
		fl_log(FL_WARN, "cleanup", "the log holds records PostgreSQL "
		       "has not applied (seq %" PRIu64 " to %" PRIu64 "; "
		       "sink.pg.applied = %" PRIu64 "): graph changes and "
		       "marks among them are not in this round (--once "
		       "--cleanup-now drains the log first)", first,
		       next_seq - 1, applied);
}

int fl_cleanup_now(const fl_config *cfg, shm_env *env)
{
	fl_cleanup_stats st = {0};
	char err[512];
	PGconn *pg;

	/* a one-shot round, the scheduler's stop (--once --cleanup-now:
	 * after the drain, fl_cleanup_shutdown ran) is not its */
	atomic_store(&stop_requested, false);
	say_unapplied(env);
	if (!(pg = fl_cleanup_connect(cfg, err, sizeof err))) {
		fl_log(FL_ERROR, "cleanup", "%s", err);
		return FL_EXIT_SINK;
	}
	int rc = fl_cleanup_round(pg, &st, err, sizeof err);
	PQfinish(pg);
	if (rc) {
		fl_log(FL_ERROR, "cleanup", "%s", err);
		return FL_EXIT_SINK;
	}
	fl_cleanup_report(env, &st);
	return st.websites_failed ? FL_EXIT_SINK : FL_EXIT_OK;
}

/* ---------------------------------------------------------- scheduler */

static struct {
	pthread_t th;
	bool started;         /* th exists and is not joined */
	atomic_bool done;     /* th finished its round */
	uint64_t next_us;     /* 0: not scheduled yet */
	const fl_config *cfg;
	shm_env *env;
} sched;

static void *round_thread(void *arg)
{
	fl_cleanup_stats st = {0};
	char err[512];
	PGconn *pg = fl_cleanup_connect(sched.cfg, err, sizeof err);

	if (!pg)
		fl_log(FL_ERROR, "cleanup", "round skipped: %s", err);
	else if (fl_cleanup_round(pg, &st, err, sizeof err))
		fl_log(FL_ERROR, "cleanup", "round failed: %s", err);
	else
		fl_cleanup_report(sched.env, &st);
	PQfinish(pg);
	atomic_store(&sched.done, true);
	return NULL;
}

void fl_cleanup_tick(const fl_config *cfg, shm_env *env)
{
	uint64_t now = fl_cleanup__now_us();

	if (sched.started && atomic_load(&sched.done)) {
		pthread_join(sched.th, NULL);
		sched.started = false;
	}
	if (!cfg->cleanup_interval_s || !cfg->pg_conninfo ||
	    !*cfg->pg_conninfo || sched.started ||
	    atomic_load(&stop_requested))
		return;
	uint64_t every = cfg->cleanup_interval_s * 1000000;
	if (!sched.next_us) {
		/* the first round soon after start (a flusher restarted more
		 * often than the interval would otherwise never clean) */
		sched.next_us = now + (every < 60000000 ? every : 60000000);
		return;
	}
	if (now < sched.next_us)
		return;
	sched.next_us = now + every;
	sched.cfg = cfg;
	sched.env = env;
	atomic_store(&sched.done, false);
	int rc = pthread_create(&sched.th, NULL, round_thread, NULL);
	if (rc)
		fl_log(FL_ERROR, "cleanup", "cannot start a round: %s",
		       strerror(rc));
	else
		sched.started = true;
}

void fl_cleanup_shutdown(void)
{
	atomic_store(&stop_requested, true);
	if (sched.started) {
		pthread_join(sched.th, NULL);
		sched.started = false;
	}
}
