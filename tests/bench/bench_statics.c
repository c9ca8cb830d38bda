/*
 * bench_statics.c - section "statics" (issue 4 §9).
 *
 * Part 1, one static (a ~4 KB Hugo page: front matter + blocks, templated
 * from the object's id and version), 1,000 pages of one website:
 *   statics.regenerate  what a miss costs the application: render the page
 *                       (snprintf templating), then its git blob SHA-1 and
 *                       SHA-256 (shm_sha_hex), nothing stored
 *   statics.miss        shm_static_get right after shm_static_bust (untimed):
 *                       the generator, both SHAs, the store and its log
 *                       record, i.e. a real miss through libshm
 *   statics.hit         shm_static_get on a hit (content + both SHAs, a
 *                       malloc'd copy) + shm_static_free
 *   statics.hit.vs_redis  the same samples as statics.hit, compared with:
 *   statics.redis_get   GET <website>-<TYPE/ID>-static over the unix socket
 *                       (hiredis, one request at a time), the value as the
 *                       flusher stores it (an LZ4 frame above 1,024 bytes:
 *                       the decoding and the second GET for -sha that a
 *                       client also needs are not counted)
 *
 * Part 2, busting on a synthetic Osuny-like site: the website, 150 pages,
 * 400 posts, 15 categories (direct); 250 people, 80 organisations and
 * ~1,300 blocks (indirect). Edges are what an output embeds: website -> menu
 * pages; page -> its blocks (5 "posts index" pages -> 10 posts); post -> its
 * blocks, its author, its categories; block -> nothing (text), people,
 * organisations, posts or pages; person -> organisations; some organisations
 * -> a person (cycles). A render is a deterministic function of the object's
 * version and the versions of its recursive dependencies (walked here, by
 * the bench, not by libshm): an object's output embeds what it reaches
 * through indirect objects, and a direct object it reaches only by its own
 * data (not expanded).
 * Stream (same seed for every rule): 50,000 events (--quick: 10,000) after
 * one untimed read of every static; 10% edits (blocks 40%, posts 20%,
 * people 15%, pages 10%, organisations 10%, categories 5%; a fifth of the
 * block edits also change which people the block shows: shm_deps_set), the
 * rest reads of a random non-block object through shm_static_get, each
 * checked against a fresh render: a hit with different content is a stale
 * read. Rules:
 *   statics.busting.references    shm_object_save (libshm: the object and
 *                                 its references)
 *   statics.busting.dependencies  the naive rule: shm_static_bust of the
 *                                 object and of each of its recursive
 *                                 dependencies (shm_deps_recursive)
 *   statics.busting.deps_refs     naive + references: the safe over-bust
 * Their samples are the read latencies; the counts are in the note (and in
 * a JSON line of their own with --json). A stale read with references
 * fails the section.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "bench.h"
#include "../../flusher/fl.h"

static uint64_t rnd(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* ------------------------------------------------- the page generator */

static const char *const lorem[] = {
	"université", "recherche", "formation", "étudiants", "laboratoire",
	"campus", "projet", "publication", "séminaire", "équipe", "innovation",
	"partenariat", "international", "doctorat", "master", "licence",
	"colloque", "conférence", "bibliothèque", "numérique", "société",
	"culture", "science", "avenir", "territoire", "open", "source",
	"the", "and", "of", "with", "for", "data", "design", "web",
};
#define N_LOREM (sizeof lorem / sizeof lorem[0])

typedef struct sbuf {
	char *p;
	size_t len, cap;
} sbuf;

static void sb_add(sbuf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void sb_add(sbuf *b, const char *fmt, ...)
{
	for (;;) {
		va_list ap;
		va_start(ap, fmt);
		int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
		if (n >= 0 && (size_t)n < b->cap - b->len) {
			b->len += (size_t)n;
			return;
		}
		size_t cap = b->cap * 2 + (size_t)(n > 0 ? n : 0) + 64;
		char *p = realloc(b->p, cap);
		if (!p)
			abort();
		b->p = p;
		b->cap = cap;
	}
}

static void sb_words(sbuf *b, uint64_t *s, int n)
{
	for (int i = 0; i < n; i++)
		sb_add(b, "%s%s", i ? " " : "", lorem[rnd(s) % N_LOREM]);
}

/* A Hugo page of about 4 KB for (object, version): the front matter, a
 * dozen blocks, a body. *out malloc'd. */
static void render_page(const char *object, uint64_t version, char **out,
                        size_t *len)
{
	sbuf b = {malloc(6144), 0, 6144};
	uint64_t s = version * 0x9e3779b97f4a7c15ull;
	for (const char *p = object; *p; p++)
		s = s * 131 + (unsigned char)*p;
	const char *id = strrchr(object, '/');
	id = id ? id + 1 : object;
	sb_add(&b, "---\ntitle: \"");
	sb_words(&b, &s, 5);
	sb_add(&b, "\"\nslug: \"page-%.8s\"\nurl: \"/fr/pages/page-%.8s/\"\n"
	       "date: \"2024-%02u-%02uT10:00:00+01:00\"\nlastmod: "
	       "\"version %" PRIu64 "\"\nweight: %u\nid: \"%s\"\n",
	       id, id, (unsigned)(1 + rnd(&s) % 12), (unsigned)(1 + rnd(&s) % 28),
	       version, (unsigned)(rnd(&s) % 100), id);
	sb_add(&b, "breadcrumbs:\n");
	for (int i = 0; i < 3; i++) {
		sb_add(&b, "  - title: \"");
		sb_words(&b, &s, 2);
		sb_add(&b, "\"\n    path: \"/fr/%08llx/\"\n",
		       (unsigned long long)(rnd(&s) & 0xffffffff));
	}
	sb_add(&b, "image:\n  id: \"%016llx\"\n  alt: \"",
	       (unsigned long long)rnd(&s));
	sb_words(&b, &s, 6);
	sb_add(&b, "\"\n  credit: \"© Osuny\"\n  width: 1920\n  height: 1080\n"
	       "description: >-\n  ");
	sb_words(&b, &s, 25);
	sb_add(&b, "\nblocks:\n");
	for (int k = 0; b.len < 3600; k++) {
		static const char *const tpl[] = {"chapter", "key_figures",
		                                  "persons", "testimonials",
		                                  "call_to_action", "posts"};
		sb_add(&b, "  - template: %s\n    position: %d\n    title: \"",
		       tpl[rnd(&s) % 6], k + 1);
		sb_words(&b, &s, 4);
		sb_add(&b, "\"\n    data:\n      layout: grid\n      text: >-\n"
		       "        <p>");
		sb_words(&b, &s, 30);
		sb_add(&b, "</p>\n");
	}
	sb_add(&b, "---\n\n");
	sb_words(&b, &s, 60);
	sb_add(&b, "\n");
	*out = b.p;
	*len = b.len;
}

typedef struct page_gen {
	uint64_t version;
	uint64_t calls;
} page_gen;

static int gen_page(const shm_uuid *website, const char *object, void *user,
                    void **content, size_t *len)
{
	page_gen *g = user;
	char *p;
	g->calls++;
	render_page(object, g->version, &p, len);
	*content = p;
	return 0;
}

/* --------------------------------------------------- part 1: one static */

static int part_hit(bench_ctx *ctx, const char *sock)
{
	char dir[300], name[64];
	snprintf(name, sizeof name, "statics-hit-%d", ctx->round);
	bench_path(ctx, name, dir);
	shm_env *env;
	if (shm_env_open(dir, NULL, &env)) {
		bench_log(ctx, "statics: open %s: %s", dir, shm_errmsg());
		return -1;
	}
	enum { NOBJ = 1000 };
	static char objs[NOBJ][80];
	shm_uuid ws;
	char wss[37];
	shm_uuid_v7(&ws);
	shm_uuid_format(&ws, wss);
	page_gen g = {1, 0};
	size_t total_len = 0;
	int rc = -1;
	uint64_t seed = ctx->seed;
	size_t n_hit = bench_n(ctx, 300000, 50000),
	       n_regen = bench_n(ctx, 50000, 10000),
	       n_miss = bench_n(ctx, 30000, 5000),
	       n_redis = bench_n(ctx, 100000, 20000);
	size_t nmax = n_hit;
	uint64_t *samples = malloc(nmax * sizeof *samples);
	redisContext *rc_ = NULL;
	if (!samples)
		goto out;
	for (int i = 0; i < NOBJ; i++) {
		shm_uuid u;
		char us[37];
		shm_uuid_v7(&u);
		shm_uuid_format(&u, us);
		snprintf(objs[i], sizeof objs[i], "Communication::Website::Page/%s",
		         us);
		shm_static *s;
		if (shm_static_get(env, &ws, objs[i], gen_page, &g, &s)) {
			bench_log(ctx, "statics: get: %s", shm_errmsg());
			goto out;
		}
		total_len += s->content_len;
		shm_static_free(s);
	}
	double avg = (double)total_len / NOBJ;
	char note[96];

	/* regenerate: render + both SHAs */
	uint64_t t0 = bench_now_ns();
	for (size_t i = 0; i < n_regen; i++) {
		const char *o = objs[rnd(&seed) % NOBJ];
		uint64_t t0 = bench_now_ns();
		char *p, h1[65], h2[65];
		size_t len;
		render_page(o, 1, &p, &len);
		shm_sha_hex(SHM_SHA1_GIT, p, len, h1);
		shm_sha_hex(SHM_SHA256, p, len, h2);
		free(p);
		samples[i] = bench_now_ns() - t0;
	}
	double wall = (bench_now_ns() - t0) / 1e9;
	snprintf(note, sizeof note, "render ~%.0f B (templated) + git SHA-1 + "
	         "SHA-256, not stored", avg);
	bench_result_add(ctx, "statics.regenerate", 1, samples, n_regen, wall,
	                 NULL, note);

	/* hits */
	uint64_t calls0 = g.calls;
	t0 = bench_now_ns();
	for (size_t i = 0; i < n_hit; i++) {
		const char *o = objs[rnd(&seed) % NOBJ];
		uint64_t a = bench_now_ns();
		shm_static *s;
		if (shm_static_get(env, &ws, o, gen_page, &g, &s)) {
			bench_log(ctx, "statics: get: %s", shm_errmsg());
			goto out;
		}
		shm_static_free(s);
		samples[i] = bench_now_ns() - a;
	}
	wall = (bench_now_ns() - t0) / 1e9;
	if (g.calls != calls0) {
		bench_log(ctx, "statics: %" PRIu64 " hits ran the generator",
		          g.calls - calls0);
		goto out;
	}
	bench_result_add(ctx, "statics.hit", 1, samples, n_hit, wall,
	                 "statics.regenerate",
	                 "shm_static_get hit: content + SHA-1 + SHA-256 copy");
	bench_result_add(ctx, "statics.hit.vs_redis", 1, samples, n_hit, wall,
	                 "statics.redis_get", "the samples of statics.hit");

	/* misses through libshm: bust (untimed), get */
	calls0 = g.calls;
	wall = 0;
	for (size_t i = 0; i < n_miss; i++) {
		const char *o = objs[rnd(&seed) % NOBJ];
		shm_static *s;
		if (shm_static_bust(env, &ws, o)) {
			bench_log(ctx, "statics: bust: %s", shm_errmsg());
			goto out;
		}
		uint64_t a = bench_now_ns();
		if (shm_static_get(env, &ws, o, gen_page, &g, &s)) {
			bench_log(ctx, "statics: get: %s", shm_errmsg());
			goto out;
		}
		shm_static_free(s);
		samples[i] = bench_now_ns() - a;
		wall += samples[i] / 1e9;
	}
	if (g.calls - calls0 != n_miss) {
		bench_log(ctx, "statics: %zu misses ran the generator %" PRIu64
		          " times", n_miss, g.calls - calls0);
		goto out;
	}
	bench_result_add(ctx, "statics.miss", 1, samples, n_miss, wall,
	                 "statics.regenerate", "shm_static_get after a bust: "
	                 "generate, hash, store + log record");

	/* Redis: the values as the flusher writes them */
	rc_ = redisConnectUnix(sock);
	if (!rc_ || rc_->err) {
		bench_log(ctx, "statics: redis %s: %s", sock,
		          rc_ ? rc_->errstr : "oom");
		goto out;
	}
	static char keys[NOBJ][160];
	size_t framed = 0, stored = 0;
	for (int i = 0; i < NOBJ; i++) {
		shm_static *s;
		if (shm_static_peek(env, &ws, objs[i], &s)) {
			bench_log(ctx, "statics: peek: %s", shm_errmsg());
			goto out;
		}
		const void *v;
		size_t vlen;
		bool owned;
		if (fl_lz4_maybe(s->content, s->content_len, 1024, &v, &vlen,
		                 &owned)) {
			shm_static_free(s);
			goto out;
		}
		framed += owned;
		stored += vlen;
		snprintf(keys[i], sizeof keys[i], "%s-%.79s-static", wss, objs[i]);
		redisAppendCommand(rc_, "SET %s %b EX 3600", keys[i], v, vlen);
		if (owned)
			free((void *)v);
		shm_static_free(s);
	}
	for (int i = 0; i < NOBJ; i++) {
		redisReply *r;
		if (redisGetReply(rc_, (void **)&r) != REDIS_OK)
			goto out;
		freeReplyObject(r);
	}
	t0 = bench_now_ns();
	for (size_t i = 0; i < n_redis; i++) {
		const char *k = keys[rnd(&seed) % NOBJ];
		uint64_t a = bench_now_ns();
		redisReply *r = redisCommand(rc_, "GET %s", k);
		bool ok = r && r->type == REDIS_REPLY_STRING;
		if (r)
			freeReplyObject(r);
		samples[i] = bench_now_ns() - a;
		if (!ok) {
			bench_log(ctx, "statics: GET %s failed", k);
			goto out;
		}
	}
	wall = (bench_now_ns() - t0) / 1e9;
	snprintf(note, sizeof note, "GET of the -static key, %zu of %d LZ4 "
	         "frames, ~%.0f B stored", framed, NOBJ, (double)stored / NOBJ);
	bench_result_add(ctx, "statics.redis_get", 1, samples, n_redis, wall,
	                 "statics.regenerate", note);
	for (int i = 0; i < NOBJ; i++)
		redisAppendCommand(rc_, "DEL %s", keys[i]);
	for (int i = 0; i < NOBJ; i++) {
		redisReply *r;
		if (redisGetReply(rc_, (void **)&r) == REDIS_OK)
			freeReplyObject(r);
	}
	rc = 0;
out:
	if (rc_)
		redisFree(rc_);
	free(samples);
	shm_env_close(env);
	bench_rm_rf(dir);
	return rc;
}

/* ----------------------------------------------------- part 2: busting */

enum { K_WEBSITE, K_PAGE, K_POST, K_CATEGORY, K_PERSON, K_ORG, K_BLOCK,
       K_COUNT };
static const char *const kind_type[K_COUNT] = {
	"Communication::Website", "Communication::Website::Page",
	"Communication::Website::Post",
	"Communication::Website::Post::Category", "University::Person",
	"University::Organization", "Communication::Block"};

typedef struct node {
	int kind;
	bool direct;
	char name[96];
	uint64_t version;
	int *deps;
	size_t n_deps, cap_deps;
} node;

typedef struct site {
	node *v;
	size_t n;
	size_t first[K_COUNT], count[K_COUNT];
	/* walk scratch */
	uint32_t *stamp;
	uint32_t epoch;
	int *queue, *out;
} site;

static void add_dep(node *a, int d)
{
	for (size_t i = 0; i < a->n_deps; i++)
		if (a->deps[i] == d)
			return;
	if (a->n_deps == a->cap_deps) {
		a->cap_deps = a->cap_deps ? a->cap_deps * 2 : 4;
		a->deps = realloc(a->deps, a->cap_deps * sizeof *a->deps);
		if (!a->deps)
			abort();
	}
	a->deps[a->n_deps++] = d;
}

static int pick(site *S, int kind, uint64_t *s)
{
	return (int)(S->first[kind] + rnd(s) % S->count[kind]);
}

static void site_free(site *S)
{
	for (size_t i = 0; i < S->n; i++)
		free(S->v[i].deps);
	free(S->v);
	free(S->stamp);
	free(S->queue);
	free(S->out);
	memset(S, 0, sizeof *S);
}

/* The same site for a given seed. */
static int site_make(site *S, uint64_t seed, const shm_uuid *ws)
{
	static const size_t want[K_COUNT] = {1, 150, 400, 15, 250, 80, 0};
	uint64_t s = seed;
	size_t cap = 4096;
	memset(S, 0, sizeof *S);
	S->v = calloc(cap, sizeof *S->v);
	if (!S->v)
		return -1;
	char wss[37];
	shm_uuid_format(ws, wss);
	for (int k = 0; k < K_BLOCK; k++) {
		S->first[k] = S->n;
		S->count[k] = want[k];
		for (size_t i = 0; i < want[k]; i++) {
			node *a = &S->v[S->n++];
			a->kind = k;
			a->direct = k <= K_CATEGORY;
			if (k == K_WEBSITE)
				snprintf(a->name, sizeof a->name, "%s/%s",
				         kind_type[k], wss);
			else
				snprintf(a->name, sizeof a->name, "%s/%016llx",
				         kind_type[k],
				         (unsigned long long)rnd(&s));
		}
	}
	S->first[K_BLOCK] = S->n;
	/* blocks of pages and posts */
	for (int k = K_PAGE; k <= K_POST; k++)
		for (size_t i = 0; i < S->count[k]; i++) {
			int owner = (int)(S->first[k] + i);
			int nb = k == K_PAGE ? 2 + (int)(rnd(&s) % 4)
			                     : 1 + (int)(rnd(&s) % 3);
			for (int j = 0; j < nb; j++) {
				if (S->n == cap)
					return -1;
				node *b = &S->v[S->n];
				b->kind = K_BLOCK;
				snprintf(b->name, sizeof b->name, "%s/%016llx",
				         kind_type[K_BLOCK],
				         (unsigned long long)rnd(&s));
				add_dep(&S->v[owner], (int)S->n);
				S->n++;
			}
		}
	S->count[K_BLOCK] = S->n - S->first[K_BLOCK];
	/* what blocks show */
	for (size_t i = 0; i < S->count[K_BLOCK]; i++) {
		node *b = &S->v[S->first[K_BLOCK] + i];
		unsigned r = (unsigned)(rnd(&s) % 10);
		int n = 1 + (int)(rnd(&s) % 4);
		int kind = r < 5 ? -1 : r < 7 ? K_PERSON : r < 8 ? K_ORG
		         : r < 9 ? K_POST : K_PAGE;
		for (int j = 0; kind >= 0 && j < (kind >= K_PERSON ? n : 2); j++)
			add_dep(b, pick(S, kind, &s));
	}
	node *w = &S->v[0];
	for (int j = 0; j < 8; j++)
		add_dep(w, pick(S, K_PAGE, &s));
	for (int j = 0; j < 5; j++) { /* posts index pages */
		node *p = &S->v[pick(S, K_PAGE, &s)];
		for (int q = 0; q < 10; q++)
			add_dep(p, pick(S, K_POST, &s));
	}
	for (size_t i = 0; i < S->count[K_POST]; i++) {
		node *p = &S->v[S->first[K_POST] + i];
		add_dep(p, pick(S, K_PERSON, &s));
		int nc = 1 + (int)(rnd(&s) % 2);
		for (int j = 0; j < nc; j++)
			add_dep(p, pick(S, K_CATEGORY, &s));
	}
	for (size_t i = 0; i < S->count[K_PERSON]; i++) {
		node *p = &S->v[S->first[K_PERSON] + i];
		int no = rnd(&s) % 10 < 4 ? 1 + (int)(rnd(&s) % 2) : 0;
		for (int j = 0; j < no; j++)
			add_dep(p, pick(S, K_ORG, &s));
	}
	for (size_t i = 0; i < S->count[K_ORG]; i++)
		if (rnd(&s) % 10 == 0)
			add_dep(&S->v[S->first[K_ORG] + i], pick(S, K_PERSON, &s));
	S->stamp = calloc(S->n, sizeof *S->stamp);
	S->queue = malloc(S->n * sizeof *S->queue);
	S->out = malloc(S->n * sizeof *S->out);
	return S->stamp && S->queue && S->out ? 0 : -1;
}

static int cmp_int(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;
	return x < y ? -1 : x > y;
}

/* The bench's own walk: recursive dependencies of i (sorted, i excluded). */
static size_t site_recdeps(site *S, int i)
{
	size_t qh = 0, qt = 0, n = 0;
	S->epoch++;
	S->stamp[i] = S->epoch;
	S->queue[qt++] = i;
	while (qh < qt) {
		node *a = &S->v[S->queue[qh++]];
		for (size_t k = 0; k < a->n_deps; k++) {
			int d = a->deps[k];
			if (S->stamp[d] == S->epoch)
				continue;
			S->stamp[d] = S->epoch;
			S->out[n++] = d;
			if (!S->v[d].direct)
				S->queue[qt++] = d;
		}
	}
	qsort(S->out, n, sizeof *S->out, cmp_int);
	return n;
}

static void site_render(site *S, int i, char **out, size_t *len)
{
	sbuf b = {malloc(1024), 0, 1024};
	size_t n = site_recdeps(S, i);
	sb_add(&b, "%s v%" PRIu64 "\n", S->v[i].name, S->v[i].version);
	for (size_t k = 0; k < n; k++)
		sb_add(&b, "  %s v%" PRIu64 "\n", S->v[S->out[k]].name,
		       S->v[S->out[k]].version);
	*out = b.p;
	*len = b.len;
}

typedef struct sim_gen {
	site *S;
	int cur;
	bool called;
} sim_gen;

static int gen_sim(const shm_uuid *website, const char *object, void *user,
                   void **content, size_t *len)
{
	sim_gen *g = user;
	char *p;
	if (strcmp(object, g->S->v[g->cur].name))
		return -1;
	g->called = true;
	site_render(g->S, g->cur, &p, len);
	*content = p;
	return 0;
}

enum { R_REFS, R_DEPS, R_DEPS_REFS, R_COUNT };
static const char *const rule_name[R_COUNT] = {
	"statics.busting.references", "statics.busting.dependencies",
	"statics.busting.deps_refs"};

typedef struct sim_out {
	uint64_t reads, hits, misses, stale, edits, busts, dep_changes;
	double wall;
} sim_out;

static int declare(shm_env *env, const shm_uuid *ws, site *S, int i)
{
	node *a = &S->v[i];
	const char *deps[64];
	size_t n = a->n_deps < 64 ? a->n_deps : 64;
	for (size_t k = 0; k < n; k++)
		deps[k] = S->v[a->deps[k]].name;
	return shm_deps_set(env, ws, a->name, a->direct, deps, n);
}

static int bust_list(shm_env *env, const shm_uuid *ws, shm_objlist *l)
{
	int rc = 0;
	for (size_t k = 0; k < l->n && !rc; k++)
		rc = shm_static_bust(env, ws, l->items[k]);
	return rc;
}

static int simulate(bench_ctx *ctx, int rule, size_t events, sim_out *o)
{
	char dir[300], name[64];
	snprintf(name, sizeof name, "statics-sim-%d-%d", rule, ctx->round);
	bench_path(ctx, name, dir);
	memset(o, 0, sizeof *o);
	shm_env *env = NULL;
	shm_options opt;
	shm_options_init(&opt);
	opt.l1_max_entries = 1000000;
	if (shm_env_open(dir, &opt, &env)) {
		bench_log(ctx, "statics: open %s: %s", dir, shm_errmsg());
		return -1;
	}
	shm_uuid ws;
	memset(&ws, 0x5a, sizeof ws);
	ws.b[6] = 0x70; /* a v7-looking fixed website */
	site S;
	int rc = -1;
	uint64_t *samples = malloc(events * sizeof *samples);
	if (!samples || site_make(&S, ctx->seed * 7919 + 17, &ws)) {
		bench_log(ctx, "statics: out of memory for the site");
		free(samples);
		shm_env_close(env);
		return -1;
	}
	for (size_t i = 0; i < S.n; i++)
		if (declare(env, &ws, &S, (int)i)) {
			bench_log(ctx, "statics: deps_set: %s", shm_errmsg());
			goto out;
		}
	sim_gen g = {&S, 0, false};
	size_t first_read = S.first[K_WEBSITE], n_read = S.first[K_BLOCK];
	/* warm: every static once (not counted) */
	for (size_t i = first_read; i < n_read; i++) {
		shm_static *st;
		g.cur = (int)i;
		if (shm_static_get(env, &ws, S.v[i].name, gen_sim, &g, &st)) {
			bench_log(ctx, "statics: get: %s", shm_errmsg());
			goto out;
		}
		shm_static_free(st);
	}
	shm_counters c0, c1;
	shm_stats_local(env, &c0);
	uint64_t s = ctx->seed * 104729 + 3, t0 = bench_now_ns();
	size_t ns = 0;
	for (size_t e = 0; e < events; e++) {
		if (rnd(&s) % 10 == 0) { /* an edit */
			unsigned r = (unsigned)(rnd(&s) % 100);
			int kind = r < 40 ? K_BLOCK : r < 60 ? K_POST
			         : r < 75 ? K_PERSON : r < 85 ? K_PAGE
			         : r < 95 ? K_ORG : K_CATEGORY;
			int i = pick(&S, kind, &s);
			node *a = &S.v[i];
			a->version++;
			o->edits++;
			if (kind == K_BLOCK && rnd(&s) % 5 == 0) {
				/* the block now shows other people */
				a->n_deps = 0;
				int np = 1 + (int)(rnd(&s) % 4);
				for (int j = 0; j < np; j++)
					add_dep(a, pick(&S, K_PERSON, &s));
				o->dep_changes++;
				if (declare(env, &ws, &S, i)) {
					bench_log(ctx, "statics: deps_set: %s",
					          shm_errmsg());
					goto out;
				}
			}
			int brc = 0;
			if (rule == R_REFS) {
				brc = shm_object_save(env, &ws, a->name);
			} else {
				shm_objlist *l = NULL;
				brc = shm_static_bust(env, &ws, a->name);
				if (!brc)
					brc = shm_deps_recursive(env, &ws, a->name, &l);
				if (!brc)
					brc = bust_list(env, &ws, l);
				free(l);
				l = NULL;
				if (!brc && rule == R_DEPS_REFS) {
					brc = shm_deps_referrers(env, &ws, a->name,
					                         &l);
					if (!brc)
						brc = bust_list(env, &ws, l);
					free(l);
				}
			}
			if (brc) {
				bench_log(ctx, "statics: bust %s: %s", a->name,
				          shm_errmsg());
				goto out;
			}
			continue;
		}
		int i = (int)(first_read + rnd(&s) % (n_read - first_read));
		shm_static *st;
		g.cur = i;
		g.called = false;
		uint64_t a = bench_now_ns();
		if (shm_static_get(env, &ws, S.v[i].name, gen_sim, &g, &st)) {
			bench_log(ctx, "statics: get: %s", shm_errmsg());
			goto out;
		}
		samples[ns++] = bench_now_ns() - a;
		o->reads++;
		if (g.called) {
			o->misses++;
		} else {
			char *fresh;
			size_t len;
			site_render(&S, i, &fresh, &len);
			if (len != st->content_len ||
			    memcmp(fresh, st->content, len))
				o->stale++;
			else
				o->hits++;
			free(fresh);
		}
		shm_static_free(st);
	}
	o->wall = (bench_now_ns() - t0) / 1e9;
	shm_stats_local(env, &c1);
	o->busts = c1.busts - c0.busts;
	char note[96];
	snprintf(note, sizeof note, "hits %.1f%%, %" PRIu64 " miss, %" PRIu64
	         " stale / %" PRIu64 " reads; %.1f busts/edit",
	         o->reads ? 100.0 * o->hits / o->reads : 0, o->misses, o->stale,
	         o->reads, o->edits ? (double)o->busts / o->edits : 0);
	bench_result_add(ctx, rule_name[rule], 1, samples, ns, o->wall, NULL,
	                 note);
	if (ctx->json)
		printf("{\"name\":\"%s.counts\",\"section\":\"statics\","
		       "\"unit\":\"reads\",\"round\":%d,\"objects\":%zu,"
		       "\"reads\":%" PRIu64 ",\"hits\":%" PRIu64 ",\"misses\":%"
		       PRIu64 ",\"stale\":%" PRIu64 ",\"edits\":%" PRIu64
		       ",\"dep_changes\":%" PRIu64 ",\"busts\":%" PRIu64 "}\n",
		       rule_name[rule], ctx->round + 1, S.n, o->reads, o->hits,
		       o->misses, o->stale, o->edits, o->dep_changes, o->busts);
	rc = 0;
out:
	free(samples);
	site_free(&S);
	shm_env_close(env);
	bench_rm_rf(dir);
	return rc;
}

int bench_section_statics(bench_ctx *ctx)
{
	const char *sock = bench_redis(ctx);
	if (!sock || part_hit(ctx, sock))
		return -1;
	bench_target("statics.hit", BENCH_RATIO_ABOVE, 1,
	             "issue 4 §9: a hit beats regenerating");
	bench_target("statics.hit.vs_redis", BENCH_RATIO_ABOVE, 1,
	             "issue 4 §9: a hit beats a Redis GET");

	size_t events = bench_n(ctx, 50000, 10000);
	sim_out o[R_COUNT];
	for (int r = 0; r < R_COUNT; r++)
		if (simulate(ctx, r, events, &o[r]))
			return -1;
	for (int r = 0; r < R_COUNT; r++)
		bench_log(ctx, "statics: %s: %" PRIu64 " reads: %" PRIu64
		          " hits (%.1f%%), %" PRIu64 " misses, %" PRIu64
		          " stale; %" PRIu64 " edits (%" PRIu64 " changed deps), "
		          "%" PRIu64 " statics busted (%.2f per edit)",
		          rule_name[r], o[r].reads, o[r].hits,
		          o[r].reads ? 100.0 * o[r].hits / o[r].reads : 0,
		          o[r].misses, o[r].stale, o[r].edits, o[r].dep_changes,
		          o[r].busts,
		          o[r].edits ? (double)o[r].busts / o[r].edits : 0);
	bool more = o[R_REFS].hits > o[R_DEPS].hits &&
	            o[R_REFS].hits > o[R_DEPS_REFS].hits;
	bench_log(ctx, "statics: reference busting: %s hits than both other "
	          "rules, %" PRIu64 " stale reads%s", more ? "more" : "NOT more",
	          o[R_REFS].stale,
	          o[R_REFS].stale ? " (FAIL: libshm busted too little)" : "");
	return o[R_REFS].stale ? -1 : 0;
}
