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

#include "cleanup_internal.h"

/* "(website, type, id) is direct": a website object (any id: libshm's rule,
 * SHM_WEBSITE_TYPE), or one declared direct. */
#define IS_DIRECT(t, i)                                                        \
	"(" t " = '" SHM_WEBSITE_TYPE "' OR EXISTS (SELECT 1"                  \
	" FROM shm_objects o WHERE o.website_id = $1 AND o.object_type = " t   \
	" AND o.object_id = " i " AND o.direct))"

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

/* The immediate upsert (fl_connections_refresh): ($1 website, $2
 * university, then per row: $3 source id, $4 source type, $5 object type,
 * $6 object id), each inserted unless already there. */
static const char *const refresh_sql =
	"INSERT INTO communication_website_connections (university_id,"
	"  website_id, indirect_object_type, indirect_object_id,"
	"  direct_source_type, direct_source_id)"
	" SELECT $2::uuid, $1::uuid, k.t, k.u, k.st, k.s FROM (SELECT DISTINCT"
	"  s, st, t, u FROM unnest($3::uuid[], $4::text[], $5::text[],"
	"  $6::uuid[]) AS k(s, st, t, u)) k"
	" WHERE NOT EXISTS (SELECT 1 FROM communication_website_connections c"
	"  WHERE c.direct_source_type = k.st AND c.direct_source_id = k.s"
	"  AND c.indirect_object_type = k.t AND c.indirect_object_id = k.u"
	"  AND c.website_id = $1::uuid)";

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

/* ------------------------------------------- a website's graph in C */

static const char *const graph_sql =
	"SELECT object_type, object_id, direct, NULL, NULL FROM shm_objects"
	" WHERE website_id = $1"
	" UNION ALL "
	"SELECT object_type, object_id, NULL, dep_type, dep_id FROM shm_edges"
	" WHERE website_id = $1";

static uint64_t hash2(const char *a, const char *b)
{
	uint64_t h = 1469598103934665603ULL;
	for (; *a; a++)
		h = (h ^ (uint8_t)*a) * 1099511628211ULL;
	h = (h ^ 0xff) * 1099511628211ULL;
	for (; *b; b++)
		h = (h ^ (uint8_t)*b) * 1099511628211ULL;
	return h ^ (h >> 29);
}

void fl_cleanup__graph_free(graph *g)
{
	free(g->n);
	free(g->slot);
	free(g->out_e);
	free(g->in_e);
	free(g->queue);
	PQclear(g->res);
	memset(g, 0, sizeof *g);
}

static int graph_grow(graph *g)
{
	uint32_t ns = g->nslot ? g->nslot * 2 : 1024;
	uint32_t *slot = calloc(ns, sizeof *slot);
	if (!slot)
		return -1;
	for (uint32_t i = 0; i < g->nn; i++) {
		uint64_t h = hash2(g->n[i].type, g->n[i].id);
		uint32_t s = (uint32_t)h & (ns - 1);
		while (slot[s])
			s = (s + 1) & (ns - 1);
		slot[s] = i + 1;
	}
	free(g->slot);
	g->slot = slot;
	g->nslot = ns;
	return 0;
}

/* The node of (type, id), created if add; UINT32_MAX if absent / no
 * memory (with add). */
uint32_t fl_cleanup__graph_node(graph *g, const char *type, const char *id,
                                bool add)
{
	if (!g->nslot || (add && (g->nn + 1) * 2 > g->nslot))
		if (graph_grow(g))
			return UINT32_MAX;
	uint32_t s = (uint32_t)hash2(type, id) & (g->nslot - 1);
	for (; g->slot[s]; s = (s + 1) & (g->nslot - 1)) {
		gnode *x = &g->n[g->slot[s] - 1];
		if (!strcmp(x->id, id) && !strcmp(x->type, type))
			return g->slot[s] - 1;
	}
	if (!add)
		return UINT32_MAX;
	if (g->nn == g->cap) {
		uint32_t cap = g->cap ? g->cap * 2 : 1024;
		gnode *n = realloc(g->n, cap * sizeof *n);
		if (!n)
			return UINT32_MAX;
		g->n = n;
		g->cap = cap;
	}
	/* a website is direct whatever its declaration (libshm's rule) */
	g->n[g->nn] = (gnode){.type = type, .id = id,
	                      .direct = !strcmp(type, SHM_WEBSITE_TYPE)};
	g->slot[s] = g->nn + 1;
	return g->nn++;
}

/* Reads website's graph (one statement) and interns every object in it.
 * Other (type, id) pairs (marks, sources) may be interned with
 * fl_cleanup__graph_node(.., true) afterwards, before
 * fl_cleanup__graph_index. */
int fl_cleanup__graph_load(PGconn *pg, const char *website, graph *g,
                           fl_cleanup_stats *st, char *err, size_t errlen)
{
	const char *p1[1] = {website};
	memset(g, 0, sizeof *g);
	if (!(g->res = fl_cleanup__run(pg, st, graph_sql, 1, p1, "load graph",
	                               err, errlen)))
		return -1;
	int rows = PQntuples(g->res);
	for (int r = 0; r < rows; r++) {
		uint32_t a = fl_cleanup__graph_node(g, PQgetvalue(g->res, r, 0),
		                                    PQgetvalue(g->res, r, 1),
		                                    true);
		if (a == UINT32_MAX)
			goto oom;
		if (!PQgetisnull(g->res, r, 2))
			g->n[a].direct |= PQgetvalue(g->res, r, 2)[0] == 't';
		else if (fl_cleanup__graph_node(g, PQgetvalue(g->res, r, 3),
		                                PQgetvalue(g->res, r, 4),
		                                true) == UINT32_MAX)
			goto oom;
	}
	return 0;
oom:
	snprintf(err, errlen, "out of memory (graph of %d rows)", rows);
	return -1;
}

/* Lays the edges out (both ways) once every node is interned. */
int fl_cleanup__graph_index(graph *g, char *err, size_t errlen)
{
	int rows = PQntuples(g->res);
	uint32_t *ea = malloc(((size_t)rows + 1) * 2 * sizeof *ea);
	size_t ne = 0;
	if (!ea)
		goto oom;
	for (int r = 0; r < rows; r++) {
		if (!PQgetisnull(g->res, r, 2))
			continue;
		uint32_t a = fl_cleanup__graph_node(g, PQgetvalue(g->res, r, 0),
		                                    PQgetvalue(g->res, r, 1),
		                                    false);
		uint32_t b = fl_cleanup__graph_node(g, PQgetvalue(g->res, r, 3),
		                                    PQgetvalue(g->res, r, 4),
		                                    false);
		ea[2 * ne] = a;
		ea[2 * ne + 1] = b;
		ne++;
		g->n[a].nout++;
		g->n[b].nin++;
	}
	g->out_e = malloc((ne + 1) * sizeof *g->out_e);
	g->in_e = malloc((ne + 1) * sizeof *g->in_e);
	g->queue = malloc(((size_t)g->nn + 1) * sizeof *g->queue);
	if (!g->out_e || !g->in_e || !g->queue)
		goto oom;
	uint32_t o = 0, i = 0;
	for (uint32_t k = 0; k < g->nn; k++) {
		g->n[k].out = o;
		o += g->n[k].nout;
		g->n[k].in = i;
		i += g->n[k].nin;
		g->n[k].nout = g->n[k].nin = 0;
	}
	for (size_t e = 0; e < ne; e++) {
		gnode *a = &g->n[ea[2 * e]], *b = &g->n[ea[2 * e + 1]];
		g->out_e[a->out + a->nout++] = ea[2 * e + 1];
		g->in_e[b->in + b->nin++] = ea[2 * e];
	}
	free(ea);
	return 0;
oom:
	free(ea);
	snprintf(err, errlen, "out of memory (graph of %d rows)", rows);
	return -1;
}

/* Forward walk from s: the objects reached are g->queue[0..return). */
static uint32_t walk_forward(graph *g, uint32_t s)
{
	uint32_t head = 0, tail = 0, x = s;
	uint32_t ep = ++g->epoch;
	g->n[s].seen = ep;
	for (;;) {
		gnode *nx = &g->n[x];
		for (uint32_t e = 0; e < nx->nout; e++) {
			uint32_t y = g->out_e[nx->out + e];
			if (g->n[y].seen != ep) {
				g->n[y].seen = ep;
				g->queue[tail++] = y;
			}
		}
		/* direct objects are included, not expanded */
		while (head < tail && g->n[g->queue[head]].direct)
			head++;
		if (head == tail)
			return tail;
		x = g->queue[head++];
	}
}

/* Backward walk from the nodes in g->queue[0..n) (distinct): every direct
 * object reached, the starts included, through indirect ones only, gets
 * source = true. */
void fl_cleanup__walk_back_to_sources(graph *g, uint32_t n)
{
	uint32_t ep = ++g->epoch, head = 0, tail = n;
	for (uint32_t k = 0; k < n; k++)
		g->n[g->queue[k]].seen = ep;
	while (head < tail) {
		gnode *x = &g->n[g->queue[head++]];
		if (x->direct) {
			x->source = true;
			continue;
		}
		for (uint32_t e = 0; e < x->nin; e++) {
			uint32_t y = g->in_e[x->in + e];
			if (g->n[y].seen != ep) {
				g->n[y].seen = ep;
				g->queue[tail++] = y;
			}
		}
	}
}

static bool is_uuid(const char *s)
{
	for (int i = 0; i < 36; i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;
		char c = s[i];
		if (dash ? c != '-'
		         : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
		             (c >= 'A' && c <= 'F')))
			return false;
	}
	return s[36] == 0;
}

/* Appends s as a quoted element of a PostgreSQL array literal. */
int fl_cleanup__arr_add(fl_buf *b, const char *s)
{
	if (b->len > 1 && fl_buf_add(b, ",", 1))
		return -1;
	if (fl_buf_add(b, "\"", 1))
		return -1;
	for (; *s; s++)
		if (((*s == '"' || *s == '\\') && fl_buf_add(b, "\\", 1)) ||
		    fl_buf_add(b, s, 1))
			return -1;
	return fl_buf_add(b, "\"", 1);
}

static int arr_start(fl_buf *b)
{
	b->len = 0;
	return fl_buf_add(b, "{", 1);
}

static int arr_end(fl_buf *b)
{
	return fl_buf_add(b, "}", 2); /* with the NUL */
}

/* Sources sorted by (type, id). */
static int cmp_source(const void *a, const void *b, void *u)
{
	const gnode *n = u;
	const gnode *x = &n[*(const uint32_t *)a], *y = &n[*(const uint32_t *)b];
	int c = strcmp(x->type, y->type);
	return c ? c : strcmp(x->id, y->id);
}

/* The nodes marked source with a UUID id, sorted (malloc'd). */
uint32_t *fl_cleanup__sources_of(graph *g, uint32_t *n)
{
	uint32_t *v = malloc(((size_t)g->nn + 1) * sizeof *v), k = 0;
	if (!v)
		return NULL;
	for (uint32_t i = 0; i < g->nn; i++)
		if (g->n[i].source && is_uuid(g->n[i].id))
			v[k++] = i;
	qsort_r(v, k, sizeof *v, cmp_source, g->n);
	*n = k;
	return v;
}

/* Appends source s's kept objects (indirect, UUID id) to the keep arrays
 * (ks: source ids, kt: object types, ki: object ids; kst: source types if
 * not NULL). Returns how many, or -1 (memory). Only a direct object is a
 * direct source: one declared indirect (or never declared) keeps nothing,
 * whatever its edges, so its connections go and none is added. */
long fl_cleanup__keep_of(graph *g, uint32_t s, fl_buf *ks, fl_buf *kst,
                         fl_buf *kt, fl_buf *ki)
{
	if (!g->n[s].direct)
		return 0;
	uint32_t n = walk_forward(g, s);
	long kept = 0;
	for (uint32_t k = 0; k < n; k++) {
		gnode *o = &g->n[g->queue[k]];
		if (o->direct || !is_uuid(o->id))
			continue;
		if (fl_cleanup__arr_add(ks, g->n[s].id) ||
		    (kst && fl_cleanup__arr_add(kst, g->n[s].type)) ||
		    fl_cleanup__arr_add(kt, o->type) ||
		    fl_cleanup__arr_add(ki, o->id))
			return -1;
		kept++;
	}
	return kept;
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

void fl_cleanup__keep_free(keep_bufs *k)
{
	fl_buf_free(&k->src);
	fl_buf_free(&k->ks);
	fl_buf_free(&k->kst);
	fl_buf_free(&k->kt);
	fl_buf_free(&k->ki);
}

int fl_cleanup__keep_start(keep_bufs *k)
{
	return arr_start(&k->src) || arr_start(&k->ks) ||
	       arr_start(&k->kst) || arr_start(&k->kt) || arr_start(&k->ki);
}

int fl_cleanup__keep_end(keep_bufs *k)
{
	return arr_end(&k->src) || arr_end(&k->ks) || arr_end(&k->kst) ||
	       arr_end(&k->kt) || arr_end(&k->ki);
}

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

/* --------------------------------------- immediate upserts (refresh) */

int fl_connections_refresh(PGconn *pg, const char *website,
                           const char *const *types, const char *const *ids,
                           size_t n, uint64_t *inserted, char *err,
                           size_t errlen)
{
	const char *p1[1] = {website};
	fl_cleanup_stats st = {0};
	PGresult *res = NULL;
	char *university = NULL;
	graph g = {0};
	keep_bufs k = {0};
	uint32_t *v = NULL, nv = 0;
	int rc = -1;
	char lock_sql[160];

	snprintf(lock_sql, sizeof lock_sql,
	         "SELECT pg_advisory_xact_lock(%d,"
	         " hashtext($1::uuid::text))",
	         FL_CLEANUP_LOCK);
	if (!(res = fl_cleanup__run(pg, &st, lock_sql, 1, p1, "advisory lock",
	                            err, errlen)))
		goto out;
	PQclear(res);
	if (!(res = fl_cleanup__run(pg, &st, fl_cleanup__university_sql, 1,
	                            p1, "university", err, errlen)))
		goto out;
	if (PQgetisnull(res, 0, 0)) { /* nowhere to take it from */
		fl_log(FL_DEBUG, "cleanup", "website %s: university unknown, "
		       "no connection added", website);
		rc = 0;
		goto out;
	}
	if (!(university = strdup(PQgetvalue(res, 0, 0))))
		goto oom;
	PQclear(res);
	res = NULL;
	if (fl_cleanup__graph_load(pg, website, &g, &st, err, errlen))
		goto out;
	for (size_t i = 0; i < n; i++)
		if (fl_cleanup__graph_node(&g, types[i], ids[i], true) ==
		    UINT32_MAX)
			goto oom;
	if (fl_cleanup__graph_index(&g, err, errlen))
		goto out;
	/* the changed objects' direct referrers (themselves if direct) */
	uint32_t ns = 0, ep = ++g.epoch;
	for (size_t i = 0; i < n; i++) {
		uint32_t x = fl_cleanup__graph_node(&g, types[i], ids[i],
		                                    false);
		if (g.n[x].seen != ep) {
			g.n[x].seen = ep;
			g.queue[ns++] = x;
		}
	}
	fl_cleanup__walk_back_to_sources(&g, ns);
	if (!(v = fl_cleanup__sources_of(&g, &nv)))
		goto oom;
	for (uint32_t i = 0; i < nv; i += CHUNK) {
		if (fl_cleanup__keep_start(&k))
			goto oom;
		for (uint32_t j = i; j < nv && j < i + CHUNK; j++)
			if (fl_cleanup__keep_of(&g, v[j], &k.ks, &k.kst, &k.kt,
			                        &k.ki) < 0)
				goto oom;
		if (fl_cleanup__keep_end(&k))
			goto oom;
		const char *params[6] = {website, university, k.ks.p, k.kst.p,
		                         k.kt.p, k.ki.p};
		if (!(res = fl_cleanup__run(pg, &st, refresh_sql, 6, params,
		                            "insert connections", err,
		                            errlen)))
			goto out;
		if (inserted)
			*inserted += strtoull(PQcmdTuples(res), NULL, 10);
		PQclear(res);
		res = NULL;
	}
	rc = 0;
	goto out;
oom:
	snprintf(err, errlen, "out of memory");
out:
	PQclear(res);
	free(university);
	free(v);
	fl_cleanup__keep_free(&k);
	fl_cleanup__graph_free(&g);
	return rc;
}

/* The changed objects of a batch (every GRAPH_SET it keeps), by website. */
struct fl_refresh {
	size_t n, cap;
	struct fl_refresh_obj {
		char website[37];
		char *type, *id; /* one allocation: type \0 id \0 */
	} *o;
};

static int cmp_refresh(const void *a, const void *b)
{
	return strcmp(((const struct fl_refresh_obj *)a)->website,
	              ((const struct fl_refresh_obj *)b)->website);
}

void fl_refresh_free(fl_refresh *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n; i++)
		free(r->o[i].type);
	free(r->o);
	free(r);
}

int fl_refresh_collect(const fl_batch *b, fl_refresh **out)
{
	fl_refresh *r = NULL;
	*out = NULL;
	for (size_t i = 0; i < b->n; i++) {
		const fl_rec *x = &b->r[i];
		size_t tl;
		if (x->superseded || x->op != SHM_OP_GRAPH_SET ||
		    x->key_len <= 16 + 2 ||
		    !fl_object_split((const char *)x->key + 16,
		                     x->key_len - 16, &tl))
			continue;
		if (!r && !(r = calloc(1, sizeof *r)))
			return -1;
		if (r->n == r->cap) {
			size_t cap = r->cap ? r->cap * 2 : 8;
			void *o = realloc(r->o, cap * sizeof *r->o);
			if (!o)
				goto oom;
			r->o = o;
			r->cap = cap;
		}
		struct fl_refresh_obj *o = &r->o[r->n];
		size_t ol = x->key_len - 16;
		shm_uuid u;
		memcpy(u.b, x->key, 16);
		shm_uuid_format(&u, o->website);
		if (!(o->type = malloc(ol + 1)))
			goto oom;
		memcpy(o->type, x->key + 16, ol);
		o->type[tl] = 0;
		o->type[ol] = 0;
		o->id = o->type + tl + 1; /* canonical: fl_batch_add made it so */
		r->n++;
	}
	if (r)
		qsort(r->o, r->n, sizeof *r->o, cmp_refresh);
	*out = r;
	return 0;
oom:
	fl_refresh_free(r);
	return -1;
}

int fl_refresh_lock_sql(const fl_refresh *r, fl_buf *sql)
{
	if (fl_buf_addf(sql, "SELECT pg_advisory_xact_lock(%d, h) FROM"
	                " (SELECT DISTINCT hashtext(w) AS h FROM unnest("
	                "ARRAY[", FL_CLEANUP_LOCK))
		return -1;
	for (size_t i = 0; i < r->n; i++)
		if (fl_buf_addf(sql, "%s'%s'", i ? "," : "", r->o[i].website))
			return -1;
	return fl_buf_adds(sql, "]::text[]) AS w ORDER BY 1) x;");
}

int fl_refresh_run(PGconn *pg, const fl_refresh *r, uint64_t *inserted,
                   char *err, size_t errlen)
{
	const char **types = malloc((r->n + 1) * 2 * sizeof *types);
	int rc = 0;
	if (!types) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	const char **ids = types + r->n + 1;
	for (size_t i = 0, j; i < r->n && !rc; i = j) {
		size_t n = 0;
		for (j = i; j < r->n && !strcmp(r->o[j].website,
		                                r->o[i].website); j++) {
			types[n] = r->o[j].type;
			ids[n++] = r->o[j].id;
		}
		rc = fl_connections_refresh(pg, r->o[i].website, types, ids, n,
		                            inserted, err, errlen);
	}
	free(types);
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
