/*
 * flusher/cleanup_graph.c - a website's graph in C, for the round
 * (cleanup.c) and the immediate upserts (cleanup_refresh.c): read with one
 * indexed statement, walked backwards from changed objects to the direct
 * sources reaching them and forwards from each source to what it keeps,
 * written as PostgreSQL array literals (keep-lists). The graph's layout and
 * the walks' semantics: cleanup_internal.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup_internal.h"

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
