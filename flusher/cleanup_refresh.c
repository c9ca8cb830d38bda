/*
 * flusher/cleanup_refresh.c - immediate upserts (issue 5 §2): the
 * connections that objects changed by a batch's GRAPH_SETs call for,
 * inserted in the pg sink's transaction (pg_sink.c) under the websites'
 * advisory locks, never deleted (that is the round's, cleanup.c).
 * cleanup.h says in which order the sink calls them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup_internal.h"

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
