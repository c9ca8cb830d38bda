/*
 * flusher/cleanup.c - the grouped connection cleanup: per marked website,
 * one transaction; per direct source concerned, one statement that loads its
 * recursive dependencies once, deletes its useless connections and inserts
 * its missing ones. cleanup.h draws the round and states the invariants.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cleanup.h"

#define WEBSITE_TYPE "Communication::Website"
#define UUID_RE "'^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'"

/* "(website, type, id) is declared direct"; the website object always is. */
#define IS_DIRECT(t, i)                                                        \
	"(" t " = '" WEBSITE_TYPE "' OR EXISTS (SELECT 1 FROM shm_objects o"   \
	" WHERE o.website_id = $1 AND o.object_type = " t                      \
	" AND o.object_id = " i " AND o.direct))"

/* The marks a website's transaction handles: read once, cleared by exact
 * (object, seq, marked_at), so a mark re-written meanwhile (by this host or
 * another one, whose seqs are not comparable with ours) survives. */
static const char *const marks_tmp_sql =
	"DO $$ BEGIN IF to_regclass('pg_temp.fl_cleanup_marks') IS NULL THEN"
	" CREATE TEMP TABLE fl_cleanup_marks (object_type text,"
	" object_id text, seq bigint, marked_at timestamptz)"
	" ON COMMIT DELETE ROWS; END IF; END $$";

static const char *const marks_snap_sql =
	"INSERT INTO fl_cleanup_marks SELECT object_type, object_id, seq,"
	" marked_at FROM shm_marks WHERE website_id = $1";

static const char *const marks_clear_sql =
	"DELETE FROM shm_marks s USING fl_cleanup_marks m"
	" WHERE s.website_id = $1 AND s.object_type = m.object_type"
	" AND s.object_id = m.object_id AND s.seq = m.seq"
	" AND s.marked_at = m.marked_at";

/* The university new connections belong to: shm_websites, else the one of
 * the website's existing connections. */
static const char *const university_sql =
	"SELECT COALESCE((SELECT university_id FROM shm_websites"
	" WHERE website_id = $1), (SELECT university_id FROM"
	" communication_website_connections WHERE website_id = $1 LIMIT 1))";

/*
 * The direct sources concerned, grouped by type (Osuny's
 * direct_source_ids_per_type_through_connections, restricted to the marks):
 *  - sources of connections whose source or indirect object is marked
 *    (a destroyed source is found here: it has no graph left);
 *  - direct objects marked, or reaching a marked object through indirect
 *    ones (backward walk): their dependencies may have grown.
 */
static const char *const sources_sql =
	"WITH RECURSIVE b(t, i) AS ("
	"  SELECT object_type, object_id FROM fl_cleanup_marks"
	"  UNION"
	"  SELECT e.object_type, e.object_id FROM b JOIN shm_edges e"
	"    ON e.website_id = $1 AND e.dep_type = b.t AND e.dep_id = b.i"
	"  WHERE NOT " IS_DIRECT("b.t", "b.i")
	"), s(t, i) AS ("
	"  SELECT b.t, b.i FROM b WHERE " IS_DIRECT("b.t", "b.i")
	"  UNION"
	"  SELECT c.direct_source_type, c.direct_source_id::text"
	"    FROM communication_website_connections c JOIN fl_cleanup_marks m"
	"    ON m.object_type = c.direct_source_type"
	"   AND m.object_id = c.direct_source_id::text"
	"   WHERE c.website_id = $1"
	"  UNION"
	"  SELECT c.direct_source_type, c.direct_source_id::text"
	"    FROM communication_website_connections c JOIN fl_cleanup_marks m"
	"    ON m.object_type = c.indirect_object_type"
	"   AND m.object_id = c.indirect_object_id::text"
	"   WHERE c.website_id = $1 AND c.direct_source_type IS NOT NULL"
	"     AND c.direct_source_id IS NOT NULL"
	") SELECT t, array_agg(DISTINCT i ORDER BY i) FROM s"
	"  WHERE i ~* " UUID_RE " GROUP BY t ORDER BY t";

/* Recursive dependencies of ($2, $3) in website $1: forward, every object
 * reached, expanding indirect ones only, cycles cut by UNION. (The old
 * way's per-connection load.) */
#define RECURSIVE_CTE                                                          \
	"r(t, i) AS ("                                                         \
	"  SELECT e.dep_type, e.dep_id FROM shm_edges e"                       \
	"   WHERE e.website_id = $1 AND e.object_type = $2"                    \
	"     AND e.object_id = $3"                                            \
	"  UNION"                                                              \
	"  SELECT e.dep_type, e.dep_id FROM r JOIN shm_edges e"                \
	"    ON e.website_id = $1 AND e.object_type = r.t"                     \
	"   AND e.object_id = r.i"                                             \
	"  WHERE NOT " IS_DIRECT("r.t", "r.i") ")"

/*
 * A chunk of direct sources of one type ($1 website, $2 type, $3 their ids
 * as text[], $4 university or NULL), each one's dependencies loaded once:
 * r = (source, object) for every object in the source's recursive
 * dependencies (the walk above, carrying its source; UNION cuts cycles per
 * source); k = the indirect ones with a UUID id (the only ones Osuny's table
 * can hold). Then, in the same statement: delete each source's connections
 * whose object is not in k (d), and the duplicates of kept ones, keeping
 * the smallest id (x: disjoint from d); insert the ones of k missing (n).
 * Data-modifying CTEs share one snapshot and touch disjoint rows.
 */
static const char *const sources_batch_sql =
	"WITH RECURSIVE r(s, t, i) AS ("
	"  SELECT e.object_id, e.dep_type, e.dep_id"
	"    FROM unnest($3::text[]) AS src(id) JOIN shm_edges e"
	"      ON e.website_id = $1 AND e.object_type = $2"
	"     AND e.object_id = src.id"
	"  UNION"
	"  SELECT r.s, e.dep_type, e.dep_id FROM r JOIN shm_edges e"
	"    ON e.website_id = $1 AND e.object_type = r.t"
	"   AND e.object_id = r.i"
	"  WHERE NOT " IS_DIRECT("r.t", "r.i")
	"), k AS MATERIALIZED ("
	"  SELECT DISTINCT r.s::uuid AS s, r.t, r.i::uuid AS u FROM r"
	"   WHERE r.i ~* " UUID_RE " AND NOT (r.t = $2 AND r.i = r.s)"
	"     AND NOT " IS_DIRECT("r.t", "r.i")
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

/* Direct sources per statement: bounds one statement's size, keeps the
 * statements proportional to the sources handled. */
#define CHUNK 200

static atomic_bool stop_requested;

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* Runs one statement; the result if its status is ok, else NULL with err
 * set to what and the server's message (first line). */
static PGresult *run(PGconn *pg, fl_cleanup_stats *st, const char *sql,
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
	snprintf(err, errlen, "%s: %.*s", what, (int)strcspn(msg, "\n"), msg);
	PQclear(res);
	return NULL;
}

static int run_cmd(PGconn *pg, fl_cleanup_stats *st, const char *sql, int n,
                   const char *const *params, const char *what, char *err,
                   size_t errlen)
{
	PGresult *res = run(pg, st, sql, n, params, what, err, errlen);
	if (!res)
		return -1;
	PQclear(res);
	return 0;
}

static void rollback(PGconn *pg, fl_cleanup_stats *st)
{
	if (PQstatus(pg) == CONNECTION_OK &&
	    PQtransactionStatus(pg) != PQTRANS_IDLE) {
		PQclear(PQexec(pg, "ROLLBACK"));
		st->statements++;
	}
}

/*
 * Splits a PostgreSQL text array of UUIDs ("{a,b,c}": UUIDs need no
 * quoting) in place; calls fn for each element.
 */
static int each_array_item(char *arr, int (*fn)(const char *id, void *u),
                           void *u)
{
	size_t len = strlen(arr);
	if (len < 2 || arr[0] != '{' || arr[len - 1] != '}')
		return -1;
	arr[len - 1] = 0;
	for (char *p = arr + 1, *next; p && *p; p = next) {
		next = strchr(p, ',');
		if (next)
			*next++ = 0;
		int rc = fn(p, u);
		if (rc)
			return rc;
	}
	return 0;
}

typedef struct source_ctx {
	PGconn *pg;
	fl_cleanup_stats *st;
	const char *website, *type, *university;
	char *err;
	size_t errlen;
	char *ids;     /* "{a,b,...}" being built */
	size_t len, n; /* its length, ids in it */
} source_ctx;

static int flush_chunk(source_ctx *c)
{
	if (!c->n)
		return 0;
	c->ids[c->len] = '}';
	c->ids[c->len + 1] = 0;
	const char *params[4] = {c->website, c->type, c->ids, c->university};
	char what[160];
	snprintf(what, sizeof what, "%zu sources %.60s", c->n, c->type);
	PGresult *res = run(c->pg, c->st, sources_batch_sql, 4, params, what,
	                    c->err, c->errlen);
	if (!res)
		return -1;
	c->st->sources += c->n;
	c->st->dep_loads += c->n; /* each source's, once */
	c->st->deleted += strtoull(PQgetvalue(res, 0, 0), NULL, 10);
	c->st->inserted += strtoull(PQgetvalue(res, 0, 1), NULL, 10);
	PQclear(res);
	c->ids[0] = '{';
	c->len = 1;
	c->n = 0;
	return 0;
}

static int one_source(const char *id, void *u)
{
	source_ctx *c = u;
	size_t l = strlen(id);
	if (l > 36)
		return -1;
	if (c->n)
		c->ids[c->len++] = ',';
	memcpy(c->ids + c->len, id, l);
	c->len += l;
	return ++c->n == CHUNK ? flush_chunk(c) : 0;
}

int fl_cleanup_website(PGconn *pg, const char *website, fl_cleanup_stats *st,
                       char *err, size_t errlen)
{
	const char *p1[1] = {website};
	PGresult *res = NULL;
	char *university = NULL;
	fl_cleanup_stats my = {0};
	uint64_t t0 = now_us();
	int rc = -1;

	if (run_cmd(pg, &my, marks_tmp_sql, 0, NULL, "marks table", err,
	            errlen) ||
	    run_cmd(pg, &my, "BEGIN", 0, NULL, "begin", err, errlen))
		goto out;
	char lock_sql[160];
	snprintf(lock_sql, sizeof lock_sql,
	         "SELECT pg_try_advisory_xact_lock(%d, hashtext($1::text))",
	         FL_CLEANUP_LOCK);
	if (!(res = run(pg, &my, lock_sql, 1, p1, "advisory lock", err, errlen)))
		goto out;
	if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
		/* another flusher (another host) is on it: its marks are
		 * its job this round */
		fl_log(FL_INFO, "cleanup", "website %s: locked by another "
		       "session, skipped", website);
		rc = 0;
		goto out;
	}
	PQclear(res);
	if (!(res = run(pg, &my, marks_snap_sql, 1, p1, "read marks", err,
	                errlen)))
		goto out;
	uint64_t marks = strtoull(PQcmdTuples(res), NULL, 10);
	PQclear(res);
	res = NULL;
	if (marks == 0) { /* cleared meanwhile */
		rc = run_cmd(pg, &my, "COMMIT", 0, NULL, "commit", err, errlen);
		goto out;
	}
	if (!(res = run(pg, &my, university_sql, 1, p1, "university", err,
	                errlen)))
		goto out;
	if (!PQgetisnull(res, 0, 0) &&
	    !(university = strdup(PQgetvalue(res, 0, 0)))) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	PQclear(res);
	if (!university)
		fl_log(FL_WARN, "cleanup", "website %s: university unknown (no "
		       "shm_websites row, no connection): no connection can be "
		       "added", website);
	if (!(res = run(pg, &my, sources_sql, 1, p1, "direct sources", err,
	                errlen)))
		goto out;
	char chunk[CHUNK * 37 + 4];
	for (int row = 0; row < PQntuples(res); row++) {
		source_ctx c = {pg, &my, website, PQgetvalue(res, row, 0),
		                university, err, errlen, chunk, 1, 0};
		chunk[0] = '{';
		char *ids = PQgetvalue(res, row, 1);
		if (each_array_item(ids, one_source, &c) || flush_chunk(&c)) {
			if (!*err)
				snprintf(err, errlen, "malformed id array");
			goto out;
		}
	}
	PQclear(res);
	if (!(res = run(pg, &my, marks_clear_sql, 1, p1, "clear marks", err,
	                errlen)))
		goto out;
	uint64_t cleared = strtoull(PQcmdTuples(res), NULL, 10);
	PQclear(res);
	res = NULL;
	if (run_cmd(pg, &my, "COMMIT", 0, NULL, "commit", err, errlen))
		goto out;
	my.marks_cleared = cleared;
	rc = 0;
out:
	PQclear(res);
	free(university);
	if (rc) {
		rollback(pg, &my);
		/* only what was sent counts when the transaction failed */
		my.sources = my.dep_loads = my.deleted = my.inserted = 0;
		my.websites_failed = 1;
	} else if (PQtransactionStatus(pg) != PQTRANS_IDLE) {
		rollback(pg, &my); /* skipped website: release the tx */
	}
	my.websites = 1;
	my.duration_us = now_us() - t0;
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
static int marked_websites(PGconn *pg, fl_cleanup_stats *st, char ***out,
                           int *n, char *err, size_t errlen)
{
	PGresult *res = run(pg, st,
	                    "SELECT DISTINCT website_id::text FROM shm_marks"
	                    " ORDER BY 1",
	                    0, NULL, "marked websites", err, errlen);
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
	uint64_t t0 = now_us();
	char **ws = NULL, werr[512];
	int n = 0;

	memset(st, 0, sizeof *st);
	if (marked_websites(pg, st, &ws, &n, err, errlen)) {
		st->duration_us = now_us() - t0;
		return -1;
	}
	for (int i = 0; i < n && !atomic_load(&stop_requested); i++) {
		werr[0] = 0;
		if (fl_cleanup_website(pg, ws[i], st, werr, sizeof werr))
			fl_log(FL_ERROR, "cleanup", "website %s failed, left "
			       "marked for the next round: %s", ws[i], werr);
		if (PQstatus(pg) != CONNECTION_OK) {
			/* the others would fail the same way */
			snprintf(err, errlen, "connection lost: %s", werr);
			st->websites_failed += (uint64_t)(n - i - 1);
			break;
		}
	}
	free(ws);
	st->duration_us = now_us() - t0;
	return 0;
}

/* ------------------------------------------------------ the old way */

/* Checks each connection of one source, reloading the source's
 * dependencies every time (Osuny's Connection#obsolete? per connection). */
static int per_connection_source(PGconn *pg, const char *website,
                                 const char *type, const char *id,
                                 fl_cleanup_stats *st, char *err,
                                 size_t errlen)
{
	static const char *const conn_sql =
		"SELECT id::text, indirect_object_type,"
		" indirect_object_id::text FROM communication_website_connections"
		" WHERE website_id = $1 AND direct_source_type = $2"
		" AND direct_source_id = $3::uuid";
	static const char *const deps_sql =
		"WITH RECURSIVE " RECURSIVE_CTE " SELECT t, i FROM r";
	const char *p[3] = {website, type, id};
	PGresult *conns, *deps;

	if (!(conns = run(pg, st, conn_sql, 3, p, "connections", err, errlen)))
		return -1;
	st->sources++;
	for (int i = 0; i < PQntuples(conns); i++) {
		const char *ot = PQgetvalue(conns, i, 1);
		const char *oi = PQgetvalue(conns, i, 2);
		/* the connection loads its source's dependencies... */
		if (!(deps = run(pg, st, deps_sql, 3, p, "dependencies", err,
		                 errlen))) {
			PQclear(conns);
			return -1;
		}
		st->dep_loads++;
		bool found = false;
		for (int j = 0; j < PQntuples(deps) && !found; j++)
			found = !strcmp(PQgetvalue(deps, j, 0), ot) &&
			        !strcmp(PQgetvalue(deps, j, 1), oi);
		PQclear(deps);
		/* ...and deletes itself if it is not among them */
		if (!found) {
			const char *pid[1] = {PQgetvalue(conns, i, 0)};
			if (run_cmd(pg, st,
			            "DELETE FROM communication_website_connections"
			            " WHERE id = $1::uuid",
			            1, pid, "delete", err, errlen)) {
				PQclear(conns);
				return -1;
			}
			st->deleted++;
		}
	}
	PQclear(conns);
	return 0;
}

typedef struct old_ctx {
	PGconn *pg;
	fl_cleanup_stats *st;
	const char *website, *type;
	char *err;
	size_t errlen;
} old_ctx;

static int old_source(const char *id, void *u)
{
	old_ctx *c = u;
	return per_connection_source(c->pg, c->website, c->type, id, c->st,
	                             c->err, c->errlen);
}

static int per_connection_website(PGconn *pg, const char *website,
                                  fl_cleanup_stats *st, char *err,
                                  size_t errlen)
{
	const char *p1[1] = {website};
	PGresult *res = NULL;
	int rc = -1;

	if (run_cmd(pg, st, marks_tmp_sql, 0, NULL, "marks table", err,
	            errlen) ||
	    run_cmd(pg, st, "BEGIN", 0, NULL, "begin", err, errlen) ||
	    run_cmd(pg, st, marks_snap_sql, 1, p1, "read marks", err, errlen) ||
	    !(res = run(pg, st, sources_sql, 1, p1, "direct sources", err,
	                errlen)))
		goto out;
	for (int row = 0; row < PQntuples(res); row++) {
		old_ctx c = {pg, st, website, PQgetvalue(res, row, 0), err,
		             errlen};
		if (each_array_item(PQgetvalue(res, row, 1), old_source, &c))
			goto out;
	}
	if (run_cmd(pg, st, marks_clear_sql, 1, p1, "clear marks", err,
	            errlen) ||
	    run_cmd(pg, st, "COMMIT", 0, NULL, "commit", err, errlen))
		goto out;
	rc = 0;
out:
	PQclear(res);
	if (rc) {
		rollback(pg, st);
		st->websites_failed++;
	}
	st->websites++;
	return rc;
}

int fl_cleanup_round_per_connection(PGconn *pg, fl_cleanup_stats *st,
                                    char *err, size_t errlen)
{
	uint64_t t0 = now_us();
	char **ws = NULL, werr[512];
	int n = 0;

	memset(st, 0, sizeof *st);
	if (marked_websites(pg, st, &ws, &n, err, errlen))
		return -1;
	for (int i = 0; i < n; i++)
		if (per_connection_website(pg, ws[i], st, werr, sizeof werr))
			fl_log(FL_ERROR, "cleanup", "website %s (per "
			       "connection): %s", ws[i], werr);
	free(ws);
	st->duration_us = now_us() - t0;
	return 0;
}

/* ------------------------------------------------- connect and report */

PGconn *fl_cleanup_connect(const fl_config *cfg, char *err, size_t errlen)
{
	char timeout[24], sql[128];
	PGconn *pg;

	snprintf(timeout, sizeof timeout, "%llu",
	         (unsigned long long)(cfg->pg_timeout_ms + 999) / 1000);
	const char *kw[] = {"connect_timeout", "application_name", "dbname",
	                    NULL};
	const char *val[] = {timeout, "shm-flusher-cleanup",
	                     cfg->pg_conninfo ? cfg->pg_conninfo : "", NULL};
	pg = PQconnectdbParams(kw, val, 1);
	if (!pg || PQstatus(pg) != CONNECTION_OK) {
		snprintf(err, errlen, "connect: %.*s",
		         pg ? (int)strcspn(PQerrorMessage(pg), "\n") : 13,
		         pg ? PQerrorMessage(pg) : "out of memory");
		PQfinish(pg);
		return NULL;
	}
	/* one chunk's statement is bounded by pg-timeout-ms, not the round;
	 * no JIT: the recursive CTEs' estimates pass jit_above_cost and
	 * compiling (~200 ms) costs far more than running them (~ms) */
	snprintf(sql, sizeof sql, "SET jit = off; SET statement_timeout = %llu",
	         (unsigned long long)cfg->pg_timeout_ms);
	PGresult *res = PQexec(pg, sql);
	if (!res || PQresultStatus(res) != PGRES_COMMAND_OK) {
		snprintf(err, errlen, "session setup: %.*s",
		         (int)strcspn(PQerrorMessage(pg), "\n"),
		         PQerrorMessage(pg));
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

int fl_cleanup_now(const fl_config *cfg, shm_env *env)
{
	fl_cleanup_stats st = {0};
	char err[512];
	PGconn *pg;

	if (!cfg->pg_conninfo || !*cfg->pg_conninfo) {
		fl_log(FL_ERROR, "cleanup", "--cleanup-now needs --pg");
		return FL_EXIT_USAGE;
	}
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
	uint64_t now = now_us();

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
