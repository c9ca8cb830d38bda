/*
 * tools/shm-dataset.c - Osuny-shaped websites for the connection cleanup
 * (issue 5 §4): pages, posts, categories, events with their blocks, people
 * and organisations, the website's about (a school), their connections in
 * the proportions of a real Osuny site, a chosen fraction made obsolete, and
 * marks that explain them plus a chosen fraction of random ones.
 *
 * The real site: 12,507 connections before cleanup, 6,342 after: 1,148 from
 * the website, 2,689 from pages, 2,881 from posts, 364 from categories, 65
 * from events (those five sum to 7,147, not 6,342: the note's breakdown is
 * used as proportions). --connections * (1 - --obsolete) connections are
 * kept, split in those proportions (rounded for each source type, at least
 * one each), and met exactly: every source's recursive dependencies hold
 * exactly its kept connections' objects (blocks it owns, and people and
 * organisations its blocks show, shared between sources).
 *
 * Every obsolete connection has a mark that makes the cleanup look at it
 * (its source re-saved, the block that dropped the object re-saved, or the
 * object saved or destroyed), as when Osuny objects are edited: after one
 * round exactly the kept connections remain (printed as "kept").
 *
 * Loads PostgreSQL with COPY (connections, shm_websites, and the graph and
 * marks unless --graph env) and/or the L1 graph of an environment with
 * shm_deps_set and shm_object_save/destroy (--env; the flusher then mirrors
 * the graph and marks into PostgreSQL). A --graph that names a place not
 * given (--graph pg or both without --pg, env or both without --env), or
 * --env with --graph pg (the environment would get nothing), is a usage
 * error, not a load that silently leaves a part out.
 *
 * Exit codes (DS_EX_*): 0 done, 1 PostgreSQL or environment error, 2 usage
 * (a --pg that libpq would refuse before asking a server included), as
 * every tool's, 70 out of memory, or output that could not all be written
 * (a full disk).
 */
#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shm.h"
#include "close_stdout.h"
#include "conninfo.h" /* --pg checked as libpq would */
#include "text.h" /* arguments and PostgreSQL's texts shown printably */

#define DS_EX_FAILED 1           /* PostgreSQL or the environment */
#define DS_EX_USAGE 2            /* as every tool's usage error */
#define DS_EX_NOMEM TOOL_EX_WRITE /* 70, with output not all written */

#define T_WEBSITE "Communication::Website"
#define T_PAGE "Communication::Website::Page"
#define T_POST "Communication::Website::Post"
#define T_CAT "Communication::Website::Post::Category"
#define T_EVENT "Communication::Website::Agenda::Event"
#define T_BLOCK "Communication::Block"
#define T_PERSON "University::Person"
#define T_ORG "University::Organization"
#define T_SCHOOL "Education::School"

/* The real site's kept connections per direct source type, and how many
 * sources of each type share them. */
static const struct group {
	const char *type;
	int kept;
	int sources;
} groups[] = {
	{T_WEBSITE, 1148, 1}, {T_PAGE, 2689, 300}, {T_POST, 2881, 600},
	{T_CAT, 364, 60},     {T_EVENT, 65, 20},
};
#define N_GROUPS 5
#define REAL_KEPT 7147 /* the breakdown's sum */
/* A site is built whole in memory before it is loaded, about 410 bytes a
 * connection (its COPY text, objects, edges): 1,000,000 take 410 MB, and
 * their graph half of a new environment's 1 GiB map. 100,000,000 needed
 * 41 GB and were killed by the OOM killer. Sites are built one at a time:
 * --websites costs time, not memory. */
#define MAX_CONNECTIONS 1000000

typedef struct opts {
	long websites, connections;
	double obsolete, marked;
	uint64_t seed;
	const char *pg, *env, *graph;
	bool quiet;
} opts;

/* ------------------------------------------------------------ random */

static uint64_t rng;
static uint64_t rnd(void)
{
	uint64_t z = (rng += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}
static size_t rnd_n(size_t n) { return n ? (size_t)(rnd() % n) : 0; }
static double rnd_unit(void) { return (double)(rnd() >> 11) / 9007199254740992.0; }

typedef struct { char s[37]; } uuid_s;
static uuid_s new_uuid(void)
{
	uint8_t b[16];
	uint64_t a = rnd(), c = rnd();
	uuid_s u;
	memcpy(b, &a, 8);
	memcpy(b + 8, &c, 8);
	b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
	b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
	snprintf(u.s, sizeof u.s,
	         "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
	         "%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3], b[4],
	         b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
	         b[14], b[15]);
	return u;
}

/* ------------------------------------------------------------ buffers */

typedef struct buf {
	char *p;
	size_t len, cap;
} buf;

static void addf(buf *b, const char *fmt, ...)
{
	va_list ap;
	for (;;) {
		size_t room = b->cap - b->len;
		va_start(ap, fmt);
		int n = vsnprintf(b->p ? b->p + b->len : NULL, room, fmt, ap);
		va_end(ap);
		if (n >= 0 && (size_t)n < room) {
			b->len += (size_t)n;
			return;
		}
		size_t cap = b->cap ? b->cap * 2 : 1 << 16;
		while (cap - b->len <= (size_t)n)
			cap *= 2;
		char *p = realloc(b->p, cap);
		if (!p) {
			fprintf(stderr, "shm-dataset: out of memory\n");
			exit(DS_EX_NOMEM);
		}
		b->p = p;
		b->cap = cap;
	}
}

/* ------------------------------------------------------------ objects */

typedef struct obj {
	const char *type;
	uuid_s id;
	bool direct, marked, destroyed;
	int *deps; /* indexes into the site's objects */
	int n_deps, cap_deps;
} obj;

typedef struct site {
	uuid_s id, univ;
	obj *o;
	int n, cap;
	buf conns, objs, edges, marks;
	long kept, obsolete, marks_n, by_group[N_GROUPS];
} site;

static int add_obj(site *s, const char *type, bool direct)
{
	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 4096;
		s->o = realloc(s->o, (size_t)s->cap * sizeof *s->o);
		if (!s->o) {
			fprintf(stderr, "shm-dataset: out of memory\n");
			exit(DS_EX_NOMEM);
		}
	}
	obj *o = &s->o[s->n];
	memset(o, 0, sizeof *o);
	o->type = type;
	o->id = new_uuid();
	o->direct = direct;
	return s->n++;
}

static void add_dep(site *s, int from, int to)
{
	obj *o = &s->o[from];
	if (o->n_deps == o->cap_deps) {
		o->cap_deps = o->cap_deps ? o->cap_deps * 2 : 4;
		o->deps = realloc(o->deps, (size_t)o->cap_deps * sizeof(int));
		if (!o->deps) {
			fprintf(stderr, "shm-dataset: out of memory\n");
			exit(DS_EX_NOMEM);
		}
	}
	o->deps[o->n_deps++] = to;
}

static void conn(site *s, int src, const char *type, const char *id)
{
	uuid_s cid = new_uuid();
	addf(&s->conns, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", cid.s, s->univ.s,
	     s->id.s, type, id, s->o[src].type,
	     src == 0 ? s->id.s : s->o[src].id.s);
}

static void mark(site *s, int i, int reason)
{
	if (s->o[i].marked)
		return;
	s->o[i].marked = true;
	s->o[i].destroyed = reason == 2;
	s->marks_n++;
}

/*
 * Builds one site. Object 0 is the website itself (its id is the site's).
 */
static void build_site(site *s, const opts *op)
{
	double x = op->obsolete;
	long kept_total = (long)((double)op->connections * (1 - x) + 0.5);
	double scale = (double)kept_total / REAL_KEPT;
	int n_person = (int)(1200 * scale) + 50, n_org = (int)(400 * scale) + 20;

	memset(s, 0, sizeof *s);
	s->id = new_uuid();
	s->univ = new_uuid();
	add_obj(s, T_WEBSITE, true);
	s->o[0].id = s->id;
	int school = add_obj(s, T_SCHOOL, false);
	add_dep(s, 0, school);
	int pool0 = s->n;
	for (int i = 0; i < n_person; i++)
		add_obj(s, T_PERSON, false);
	for (int i = 0; i < n_org; i++)
		add_obj(s, T_ORG, false);
	int pool_n = n_person + n_org;
	uint32_t *seen = calloc((size_t)pool_n, sizeof *seen); /* stamp */
	uint32_t stamp = 0;
	int *posts = NULL, n_posts = 0;

	for (int g = 0; g < N_GROUPS; g++) {
		long total = (long)(groups[g].kept * scale + 0.5);
		int ns = g == 0 ? 1 : (int)(groups[g].sources * scale + 0.5);
		if (ns < 1)
			ns = 1;
		if (total < ns)
			total = ns;
		s->by_group[g] = total;
		/* each source's share: random weights */
		double *w = malloc((size_t)ns * sizeof *w), sum = 0;
		for (int i = 0; i < ns; i++)
			sum += (w[i] = 0.3 + rnd_unit());
		long given = 0;
		for (int i = 0; i < ns; i++) {
			long k = i == ns - 1 ? total - given
			                     : (long)(total * w[i] / sum);
			if (k < 1)
				k = 1;
			if (given + k > total && i < ns - 1)
				k = 0;
			given += k;
			int src = g == 0 ? 0 : add_obj(s, groups[g].type, true);
			int owner = g == 0 ? school : src;
			if (g == 2) {
				posts = realloc(posts, (size_t)(n_posts + 1) *
				                           sizeof *posts);
				posts[n_posts++] = src;
			}
			if (k == 0)
				continue;
			/* the website's about counts as one of its own */
			long rest = g == 0 ? k - 1 : k;
			if (g == 0)
				conn(s, 0, T_SCHOOL, s->o[school].id.s);
			long b = rest / 5 + (rest > 0);
			if (rest - b > pool_n)
				b = rest - pool_n;
			int first_block = s->n;
			for (long j = 0; j < b; j++) {
				int bl = add_obj(s, T_BLOCK, false);
				add_dep(s, owner, bl);
				conn(s, src, T_BLOCK, s->o[bl].id.s);
			}
			if (b > 2) /* a cycle between its blocks */
				add_dep(s, s->n - 1, first_block);
			stamp++;
			for (long j = 0; j < rest - b; j++) {
				int p;
				do
					p = (int)rnd_n((size_t)pool_n);
				while (seen[p] == stamp);
				seen[p] = stamp;
				add_dep(s, first_block + (int)(j % b), pool0 + p);
				conn(s, src, s->o[pool0 + p].type,
				     s->o[pool0 + p].id.s);
			}
			s->kept += k;
			/* obsolete ones, in proportion */
			long ob = (long)((double)k * x / (1 - x) + rnd_unit());
			for (long j = 0; j < ob; j++) {
				int cause = (int)rnd_n(3);
				if (rnd_n(5) == 0) { /* a block since destroyed */
					int bl = add_obj(s, T_BLOCK, false);
					conn(s, src, T_BLOCK, s->o[bl].id.s);
					mark(s, cause ? bl : src, cause ? 2 : 1);
				} else {
					int p;
					do
						p = (int)rnd_n((size_t)pool_n);
					while (seen[p] == stamp);
					conn(s, src, s->o[pool0 + p].type,
					     s->o[pool0 + p].id.s);
					if (cause == 0)
						mark(s, src, 1);
					else if (cause == 1)
						mark(s, first_block +
						        (int)rnd_n((size_t)b), 1);
					else
						mark(s, pool0 + p, 1);
				}
				s->obsolete++;
			}
		}
		free(w);
	}
	/* direct -> direct: pages and categories list posts (included in
	 * their dependencies, not expanded, never connected) */
	for (int i = 0; i < s->n && n_posts; i++) {
		const char *t = s->o[i].type;
		int lists = !strcmp(t, T_PAGE) ? 2 : !strcmp(t, T_CAT) ? 3 : 0;
		size_t start = rnd_n((size_t)n_posts);
		for (int j = 0; j < lists && j < n_posts; j++)
			add_dep(s, i, posts[(start + (size_t)j) % (size_t)n_posts]);
	}
	/* random marks up to the fraction asked */
	long want = (long)(op->marked * s->n + 0.5);
	for (long tries = 0; s->marks_n < want && tries < 10L * s->n; tries++) {
		int i = 1 + (int)rnd_n((size_t)s->n - 1);
		if (!s->o[i].destroyed)
			mark(s, i, 1);
	}
	free(seen);
	free(posts);
}

/* The COPY text of the graph: objects declared (sources, blocks with deps,
 * the school), edges, marks. Destroyed objects have no graph. */
static void site_graph_text(site *s, uint64_t *seq)
{
	for (int i = 0; i < s->n; i++) {
		obj *o = &s->o[i];
		if (o->destroyed)
			goto marks;
		if (o->direct || o->n_deps)
			addf(&s->objs, "%s\t%s\t%s\t%s\n", s->id.s, o->type,
			     o->id.s, o->direct ? "t" : "f");
		for (int j = 0; j < o->n_deps; j++) {
			obj *d = &s->o[o->deps[j]];
			addf(&s->edges, "%s\t%s\t%s\t%s\t%s\n", s->id.s,
			     o->type, o->id.s, d->type, d->id.s);
		}
	marks:
		if (o->marked)
			addf(&s->marks, "%s\t%s\t%s\t%d\tnow\t%" PRIu64 "\n",
			     s->id.s, o->type, o->id.s, o->destroyed ? 2 : 1,
			     (*seq)++);
	}
}

/* ----------------------------------------------------------- loaders */

/* PostgreSQL's last error text on one line, shown printably: it quotes
 * names and values it was given. */
static const char *pg_said(PGconn *pg, char shown[SHM__SHOWN_LONG_MAX])
{
	return shm__shown_lines(PQerrorMessage(pg), shown);
}

static int copy(PGconn *pg, const char *sql, const buf *b)
{
	char shown[SHM__SHOWN_LONG_MAX];
	PGresult *r = PQexec(pg, sql);
	if (PQresultStatus(r) != PGRES_COPY_IN) {
		const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
		fprintf(stderr, "shm-dataset: %s: %s\n", sql, pg_said(pg, shown));
		if (state && strcmp(state, "42P01") == 0) /* undefined_table */
			fprintf(stderr, "shm-dataset: apply sql/schema.sql to "
			        "that database first (psql -f sql/schema.sql)\n");
		PQclear(r);
		return -1;
	}
	PQclear(r);
	if ((b->len && PQputCopyData(pg, b->p, (int)b->len) != 1) ||
	    PQputCopyEnd(pg, NULL) != 1) {
		fprintf(stderr, "shm-dataset: COPY: %s\n", pg_said(pg, shown));
		return -1;
	}
	r = PQgetResult(pg);
	int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
	if (!ok)
		fprintf(stderr, "shm-dataset: %s: %s\n", sql, pg_said(pg, shown));
	PQclear(r);
	while ((r = PQgetResult(pg)))
		PQclear(r);
	return ok ? 0 : -1;
}

static int load_pg(PGconn *pg, site *s, bool graph)
{
	buf w = {0};
	char shown[SHM__SHOWN_LONG_MAX];
	addf(&w, "%s\t%s\n", s->id.s, s->univ.s);
	PQclear(PQexec(pg, "BEGIN")); /* one site at a time, all or nothing */
	int rc = copy(pg, "COPY shm_websites FROM STDIN", &w) ||
	         copy(pg, "COPY communication_website_connections (id,"
	                  " university_id, website_id, indirect_object_type,"
	                  " indirect_object_id, direct_source_type,"
	                  " direct_source_id) FROM STDIN", &s->conns);
	if (!rc && graph)
		rc = copy(pg, "COPY shm_objects (website_id, object_type,"
		              " object_id, direct) FROM STDIN", &s->objs) ||
		     copy(pg, "COPY shm_edges FROM STDIN", &s->edges) ||
		     copy(pg, "COPY shm_marks (website_id, object_type,"
		              " object_id, reason, marked_at, seq) FROM STDIN",
		          &s->marks);
	free(w.p);
	PGresult *r = PQexec(pg, rc ? "ROLLBACK" : "COMMIT");
	if (!rc && PQresultStatus(r) != PGRES_COMMAND_OK) {
		fprintf(stderr, "shm-dataset: COMMIT: %s\n", pg_said(pg, shown));
		rc = -1;
	}
	PQclear(r);
	return rc ? -1 : 0;
}

static int load_env(shm_env *env, site *s)
{
	shm_uuid ws;
	char name[SHM_MAX_OBJECT + 1];
	char **deps = NULL;
	size_t cap = 0;
	int rc = 0;

	shm_uuid_parse(s->id.s, &ws);
	for (int i = 0; i < s->n && !rc; i++) {
		obj *o = &s->o[i];
		if (o->destroyed || (!o->direct && !o->n_deps))
			continue;
		if ((size_t)o->n_deps > cap) {
			char **more = realloc(deps, (size_t)o->n_deps *
			                      sizeof *deps);
			if (!more) {
				rc = ENOMEM;
				break;
			}
			deps = more;
			while (cap < (size_t)o->n_deps) /* the kept ones stay */
				deps[cap++] = NULL;
		}
		for (int j = 0; j < o->n_deps && !rc; j++) {
			obj *d = &s->o[o->deps[j]];
			char *p = realloc(deps[j], strlen(d->type) + 38);
			if (!p) {
				rc = ENOMEM;
				break;
			}
			sprintf(p, "%s/%s", d->type, d->id.s);
			deps[j] = p;
		}
		if (rc)
			break;
		snprintf(name, sizeof name, "%s/%s", o->type, o->id.s);
		rc = shm_deps_set(env, &ws, name, o->direct,
		                  (const char *const *)deps, (size_t)o->n_deps);
	}
	for (int i = 0; i < s->n && !rc; i++) {
		obj *o = &s->o[i];
		if (!o->marked)
			continue;
		snprintf(name, sizeof name, "%s/%s", o->type, o->id.s);
		rc = o->destroyed ? shm_object_destroy(env, &ws, name)
		                  : shm_object_save(env, &ws, name);
	}
	for (size_t j = 0; j < cap; j++)
		free(deps[j]);
	free(deps);
	if (rc)
		fprintf(stderr, "shm-dataset: environment: %s\n",
		        rc == ENOMEM ? "out of memory" : shm_errmsg());
	return rc;
}

static void site_free(site *s)
{
	for (int i = 0; i < s->n; i++)
		free(s->o[i].deps);
	free(s->o);
	free(s->conns.p);
	free(s->objs.p);
	free(s->edges.p);
	free(s->marks.p);
}

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: shm-dataset [--pg CONNINFO] [--env DIR] [options]\n"
	        "Generates Osuny-shaped websites and their connections for the\n"
	        "connection cleanup, and loads them.\n"
	        "  --websites N       websites, 1..1000000 (default 1), built\n"
	        "                     and loaded one at a time\n"
	        "  --connections N    connections per website before cleanup,\n"
	        "                     10..1000000 (default 12507, the real\n"
	        "                     site's; a site is built in memory, about\n"
	        "                     410 bytes a connection: 1000000 take\n"
	        "                     410 MB), from five source types: N x\n"
	        "                     (1 - F) kept, rounded for each type and\n"
	        "                     at least one each (a small N keeps\n"
	        "                     more), and F / (1 - F) of those\n"
	        "                     obsolete, give or take a few (drawn at\n"
	        "                     random)\n"
	        "  --obsolete F       fraction of them obsolete, 0 <= F < 0.95\n"
	        "                     (default 0.493: 12,507 -> 6,342)\n"
	        "  --marked F         fraction of objects marked, 0..1 (default\n"
	        "                     0.1); every obsolete connection has its\n"
	        "                     mark\n"
	        "  --seed N           random seed (default 1)\n"
	        "  --pg CONNINFO      COPY connections and shm_websites (and\n"
	        "                     the graph and marks, see --graph)\n"
	        "  --env DIR          shm_deps_set the graph into the L1\n"
	        "                     environment DIR (created if missing),\n"
	        "                     then save/destroy the marked objects\n"
	        "                     (the flusher mirrors them)\n"
	        "  --graph pg|env|both  where the graph and marks go (default:\n"
	        "                     env if --env is given, else pg); pg needs\n"
	        "                     --pg, env --env, both the two, and --env\n"
	        "                     with --graph pg is refused (it would load\n"
	        "                     nothing into the environment)\n"
	        "  --quiet            no summary\n"
	        "  -h, --help         this help\n"
	        "  -V, --version      print \"shm-dataset VERSION\" and exit\n"
	        "Prints: websites, connections, kept (what one cleanup round\n"
	        "leaves), obsolete, per source type, objects, edges, marks.\n"
	        "Without --pg and --env it loads nothing: the counts alone.\n"
	        "--pg needs sql/schema.sql applied to its database.\n"
	        "Exit: 0 ok, 1 PostgreSQL or environment error, 2 usage (an\n"
	        "option given twice, or a --pg that libpq would refuse before\n"
	        "asking a server, included), 70 out of memory, or output that\n"
	        "could not all be written (a full disk).\n");
}

/* The integer v of option opt in lo..hi: digits only (strtoull alone takes
 * spaces, '+' and '-'); false, and said (with why hi, if not NULL), else. */
static bool arg_int(const char *opt, const char *v, uint64_t lo, uint64_t hi,
                    const char *why, uint64_t *out)
{
	char *end, shown[SHM__SHOWN_MAX];

	errno = 0;
	*out = strtoull(v, &end, 10);
	if (*v < '0' || *v > '9' || *end || errno || *out < lo || *out > hi) {
		fprintf(stderr, "shm-dataset: %s '%s': must be an integer in "
		        "%" PRIu64 "..%" PRIu64 "%s%s\n", opt,
		        shm__shown_str(v, shown), lo, hi, why ? " " : "",
		        why ? why : "");
		return false;
	}
	return true;
}

/* The fraction v of option opt, written DIGITS[.DIGITS] (strtod alone
 * takes spaces, signs, exponents, hex, inf and nan), in lo..hi (below hi
 * when !hi_in); false, and said, else. */
static bool arg_fraction(const char *opt, const char *v, double lo, double hi,
                         bool hi_in, double *out)
{
	size_t n = strspn(v, "0123456789");
	char shown[SHM__SHOWN_MAX];

	if (v[n] == '.' && n)
		n += 1 + strspn(v + n + 1, "0123456789");
	*out = strtod(v, NULL);
	if (!n || v[n] || v[n - 1] == '.' || *out < lo ||
	    (hi_in ? *out > hi : *out >= hi)) {
		fprintf(stderr, "shm-dataset: %s '%s': must be a decimal number "
		        "in [%g, %g%c\n", opt, shm__shown_str(v, shown), lo, hi,
		        hi_in ? ']' : ')');
		return false;
	}
	return true;
}

static int run(int argc, char **argv)
{
	opts op = {1, 12507, 1 - 6342.0 / 12507, 0.1, 1, NULL,
	           NULL, NULL, false};
	const char *given[16]; /* each option once: fewer than 16 */
	char names[16][32];    /* the name of each --name=VALUE given */
	int n_given = 0;
	char shown[SHM__SHOWN_LONG_MAX];
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		const char *no_value = NULL; /* an option ARG knows, last */
		uint64_t n;
		bool ok = true, inline_v = false;
		/* --name=VALUE, as GNU tools (and shm-flusher, shmctl) take it */
		const char *eq = strncmp(a, "--", 2) ? NULL : strchr(a, '=');
		if (eq && (size_t)(eq - a) < sizeof names[0]) {
			memcpy(names[n_given], a, (size_t)(eq - a));
			names[n_given][eq - a] = '\0';
			a = names[n_given];
			v = eq + 1;
			inline_v = true;
		}
#define ARG(name) (!strcmp(a, name) && \
                   (v ? (inline_v || (i++, 1)) : (no_value = a, 0)))
		/* websites x connections stays within a long; the objects of
		 * a site within an int */
		if (ARG("--websites")) {
			ok = arg_int(a, v, 1, 1000000, NULL, &n);
			op.websites = (long)n;
		} else if (ARG("--connections")) {
			ok = arg_int(a, v, 10, MAX_CONNECTIONS, "(a site is "
			             "built in memory, about 410 bytes a "
			             "connection)", &n);
			op.connections = (long)n;
		} else if (ARG("--obsolete")) {
			ok = arg_fraction(a, v, 0, 0.95, false, &op.obsolete);
		} else if (ARG("--marked")) {
			ok = arg_fraction(a, v, 0, 1, true, &op.marked);
		} else if (ARG("--seed")) {
			ok = arg_int(a, v, 0, UINT64_MAX, NULL, &op.seed);
		} else if (ARG("--pg")) {
			op.pg = v;
		} else if (ARG("--env")) {
			op.env = v;
		} else if (ARG("--graph")) {
			op.graph = v;
		} else if (inline_v && (!strcmp(a, "--quiet") ||
		                        !strcmp(a, "--help") ||
		                        !strcmp(a, "--version"))) {
			fprintf(stderr, "shm-dataset: option '%s' takes no "
			        "value\n(see shm-dataset --help)\n", a);
			return DS_EX_USAGE;
		} else if (!strcmp(a, "--quiet")) {
			op.quiet = true;
		} else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage(stdout);
			return 0;
		} else if (!strcmp(a, "--version") || !strcmp(a, "-V")) {
			printf("shm-dataset %s\n", SHM_VERSION);
			return 0;
		} else {
			fprintf(stderr, no_value ? "shm-dataset: option '%s' "
			        "needs a value\n" : a[0] == '-' ? "shm-dataset: "
			        "unknown option '%s'\n" : "shm-dataset: "
			        "unexpected argument '%s'\n",
			        shm__shown_str(a, shown));
			fputs("(see shm-dataset --help)\n", stderr);
			return DS_EX_USAGE;
		}
		if (!ok)
			return DS_EX_USAGE;
		/* which of two values was meant is not for us to guess */
		for (int j = 0; j < n_given; j++)
			if (!strcmp(given[j], a)) {
				fprintf(stderr, "shm-dataset: option '%s' given "
				        "twice\n", a);
				return DS_EX_USAGE;
			}
		given[n_given++] = a;
	}
	bool graph_given = op.graph != NULL;
	if (!op.graph)
		op.graph = op.env ? "env" : "pg";
	bool graph_pg = !strcmp(op.graph, "pg") || !strcmp(op.graph, "both");
	bool graph_env = !strcmp(op.graph, "env") || !strcmp(op.graph, "both");
	if (!graph_pg && !graph_env) {
		fprintf(stderr, "shm-dataset: --graph '%s': must be pg, env or "
		        "both\n", shm__shown_str(op.graph, shown));
		return DS_EX_USAGE;
	}
	/* a place asked for the graph that gets nothing, or that is not
	 * there: not what the command line says (the default, pg without
	 * --pg, is the counts alone) */
	if (graph_env && !op.env) {
		fprintf(stderr, "shm-dataset: --graph %s needs --env\n",
		        op.graph);
		return DS_EX_USAGE;
	}
	if (op.env && !graph_env) {
		fprintf(stderr, "shm-dataset: --env with --graph %s: the graph "
		        "is all --env loads, and it would go to --pg alone "
		        "(--graph env or both, or no --env)\n", op.graph);
		return DS_EX_USAGE;
	}
	if (graph_given && graph_pg && !op.pg) {
		fprintf(stderr, "shm-dataset: --graph %s needs --pg\n",
		        op.graph);
		return DS_EX_USAGE;
	}
	/* what libpq refuses without a server, said here without a
	 * password (libpq's own text may quote one) */
	char pg_why[600];
	int pg_rc = op.pg ? shm__pg_check_conninfo(op.pg, pg_why,
	                                           sizeof pg_why) : 0;
	if (pg_rc) {
		fprintf(stderr, "shm-dataset: --pg: %s\n", pg_why);
		return pg_rc == SHM_EINVAL ? DS_EX_USAGE : DS_EX_FAILED;
	}
	rng = op.seed * 0x2545f4914f6cdd1dULL + 1;

	PGconn *pg = NULL;
	shm_env *env = NULL;
	int code = 0;
	if (op.pg) {
		/* UTF-8 whatever PGCLIENTENCODING says (after the conninfo:
		 * it wins over the conninfo's own) */
		const char *kw[] = {"dbname", "client_encoding", NULL};
		const char *val[] = {op.pg, "UTF8", NULL};
		pg = PQconnectdbParams(kw, val, 1);
		if (PQstatus(pg) != CONNECTION_OK) {
			fprintf(stderr, "shm-dataset: %s\n", pg_said(pg, shown));
			code = DS_EX_FAILED;
			goto out;
		}
	}
	if (op.env && graph_env) {
		shm_options o;
		shm_options_init(&o); /* map_size 0: the environment's own */
		if (shm_env_open(op.env, &o, &env)) { /* the message names it */
			fprintf(stderr, "shm-dataset: --env: %s\n", shm_errmsg());
			code = DS_EX_FAILED;
			goto out;
		}
	}
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t seq = (uint64_t)ts.tv_sec * 1000; /* distinct across runs */
	long tot_conn = 0, tot_kept = 0, tot_obs = 0, tot_obj = 0, tot_edges = 0,
	     tot_marks = 0, by_group[N_GROUPS] = {0};
	for (long w = 0; w < op.websites; w++) {
		site s;
		build_site(&s, &op);
		site_graph_text(&s, &seq);
		for (const char *p = s.edges.p; p && p < s.edges.p + s.edges.len;
		     p = strchr(p, '\n') + 1)
			tot_edges++;
		if (pg && load_pg(pg, &s, graph_pg)) {
			code = DS_EX_FAILED;
			site_free(&s);
			goto out;
		}
		if (env && load_env(env, &s)) {
			code = DS_EX_FAILED;
			site_free(&s);
			goto out;
		}
		tot_conn += s.kept + s.obsolete;
		tot_kept += s.kept;
		tot_obs += s.obsolete;
		tot_obj += s.n;
		tot_marks += s.marks_n;
		for (int g = 0; g < N_GROUPS; g++)
			by_group[g] += s.by_group[g];
		site_free(&s);
	}
	if (!pg && !env)
		fprintf(stderr, "shm-dataset: no --pg or --env: generated, "
		        "loaded nowhere\n");
	if (!op.quiet) {
		printf("websites %ld\nconnections %ld\nkept %ld\nobsolete %ld\n",
		       op.websites, tot_conn, tot_kept, tot_obs);
		for (int g = 0; g < N_GROUPS; g++)
			printf("kept_from %s %ld\n", groups[g].type,
			       by_group[g]);
		printf("objects %ld\nedges %ld\nmarks %ld\n", tot_obj,
		       tot_edges, tot_marks);
	}
out:
	if (env)
		shm_env_close(env);
	PQfinish(pg);
	return code;
}

int main(int argc, char **argv)
{
	return tool_close_stdout("shm-dataset", run(argc, argv));
}
