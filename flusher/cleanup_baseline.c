/*
 * flusher/cleanup_baseline.c - the old way, one check per connection
 * (Osuny's Connection#obsolete?): the direct sources found by a recursive
 * SQL query, each connection reloading its source's dependencies in SQL.
 * shm-bench's baseline for the round (cleanup.c), and test_cleanup's second
 * implementation of the same rule.
 */
#include <stdlib.h>
#include <string.h>

#include "cleanup_internal.h"

/* "(website, type, id) is direct": a website object (any id: libshm's rule,
 * SHM_WEBSITE_TYPE), or one declared direct. */
#define IS_DIRECT(t, i)                                                        \
	"(" t " = '" SHM_WEBSITE_TYPE "' OR EXISTS (SELECT 1"                  \
	" FROM shm_objects o WHERE o.website_id = $1 AND o.object_type = " t   \
	" AND o.object_id = " i " AND o.direct))"

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

	if (!(conns = fl_cleanup__run(pg, st, conn_sql, 3, p, "connections",
	                              err, errlen)))
		return -1;
	st->sources++;
	for (int i = 0; i < PQntuples(conns); i++) {
		const char *ot = PQgetvalue(conns, i, 1);
		const char *oi = PQgetvalue(conns, i, 2);
		/* the connection loads its source's dependencies... */
		if (!(deps = fl_cleanup__run(pg, st, deps_sql, 3, p,
		                             "dependencies", err, errlen))) {
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
			if (fl_cleanup__run_cmd(
			            pg, st,
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

	if (fl_cleanup__run_cmd(pg, st, fl_cleanup__marks_tmp_sql, 0, NULL,
	                        "marks table", err, errlen) ||
	    fl_cleanup__run_cmd(pg, st, "BEGIN", 0, NULL, "begin", err,
	                        errlen) ||
	    fl_cleanup__run_cmd(pg, st, fl_cleanup__marks_snap_sql, 1, p1,
	                        "read marks", err, errlen) ||
	    !(res = fl_cleanup__run(pg, st, sources_sql, 1, p1,
	                            "direct sources", err, errlen)))
		goto out;
	for (int row = 0; row < PQntuples(res); row++) {
		old_ctx c = {pg, st, website, PQgetvalue(res, row, 0), err,
		             errlen};
		if (each_array_item(PQgetvalue(res, row, 1), old_source, &c))
			goto out;
	}
	if (fl_cleanup__run_cmd(pg, st, fl_cleanup__marks_clear_sql, 1, p1,
	                        "clear marks", err, errlen) ||
	    fl_cleanup__run_cmd(pg, st, "COMMIT", 0, NULL, "commit", err,
	                        errlen))
		goto out;
	rc = 0;
out:
	PQclear(res);
	if (rc) {
		fl_cleanup__rollback(pg, st);
		st->websites_failed++;
	}
	st->websites++;
	return rc;
}

int fl_cleanup_round_per_connection(PGconn *pg, fl_cleanup_stats *st,
                                    char *err, size_t errlen)
{
	uint64_t t0 = fl_cleanup__now_us();
	char **ws = NULL, werr[512];
	int n = 0;

	memset(st, 0, sizeof *st);
	if (fl_cleanup__marked_websites(pg, st, &ws, &n, err, errlen))
		return -1;
	for (int i = 0; i < n; i++)
		if (per_connection_website(pg, ws[i], st, werr, sizeof werr))
			fl_log(FL_ERROR, "cleanup", "website %s (per "
			       "connection): %s", ws[i], werr);
	free(ws);
	st->duration_us = fl_cleanup__now_us() - t0;
	return 0;
}
