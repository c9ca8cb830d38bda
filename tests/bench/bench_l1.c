/*
 * bench_l1.c - section "l1": the shared L1's hot path, with 1 and 2
 * processes (each worker opens its own shm_env, the fork rule):
 *   l1.get.copy     shm_msg_get (a malloc'd copy) + shm_msg_free
 *   l1.get.view     shm_rtxn_begin + shm_msg_view + shm_rtxn_end (zero copy)
 *   l1.view.in_txn  shm_msg_view alone, one read txn per 1000 views
 *   l1.get.copy.zipf  as l1.get.copy, keys drawn Zipf(0.99) (a few hot
 *                   messages, a long tail) instead of uniformly
 *   l1.put.nosync   shm_msg_put of a new message with its log record,
 *                   durability nosync (no flusher runs: the L1 capacity is
 *                   set above the number of puts, so nothing blocks)
 *   l1.put.nosync.full  the same into a full L1 (capacity = the data set,
 *                   preloaded, its log trimmed as a flusher would): each
 *                   put evicts one flushed entry, a filled cache's steady
 *                   state
 * Gets read random messages of the same data set the redis section SETs,
 * uniformly over all 100,000 (the conservative case: the set does not fit
 * in the CPU caches), except the .zipf measurement.
 * timer.overhead is an empty op: the clock_gettime pair in every sample.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "shm_log.h"

typedef struct l1_arg {
	const char *dir;
	const shm_options *opt;
	bench_dataset *ds;   /* gets: the preloaded set; puts: fresh messages */
	size_t per_proc;     /* warmup + ops per process */
	uint64_t seed;
	int mode;            /* L1_COPY, L1_VIEW, L1_IN_TXN, L1_PUT */
	const double *zipf_cdf; /* not NULL: draw gets from it (ranks) */
	const size_t *zipf_item; /* rank -> item index */
} l1_arg;

enum { L1_COPY, L1_VIEW, L1_IN_TXN, L1_PUT };

typedef struct l1_state {
	shm_env *env;
	const l1_arg *a;
	shm_uuid *ids;       /* gets: the id to read at op i, drawn at setup so
	                        that a sample times the get, not the bench's
	                        own look-up of a random data-set item */
	size_t first;        /* puts: this process's slice */
	shm_rtxn *txn;       /* L1_IN_TXN */
	volatile uint64_t sink;
} l1_state;

static int l1_setup(void *arg, int proc, void **out)
{
	l1_arg *a = arg;
	l1_state *st = calloc(1, sizeof *st);
	if (!st)
		return -1;
	st->a = a;
	int rc = shm_env_open(a->dir, a->opt, &st->env);
	if (rc) {
		fprintf(stderr, "shm-bench: shm_env_open %s: %s: %s\n", a->dir,
		        shm_strerror(rc), shm_errmsg());
		return -1;
	}
	if (a->mode != L1_PUT) {
		st->ids = malloc(a->per_proc * sizeof *st->ids);
		if (!st->ids)
			return -1;
		uint64_t s = a->seed * 104729 + (uint64_t)proc + 1;
		for (size_t i = 0; i < a->per_proc; i++) {
			s = s * 6364136223846793005ull + 1442695040888963407ull;
			if (!a->zipf_cdf) {
				st->ids[i] =
					a->ds->items[(s >> 33) % a->ds->n].m.id;
				continue;
			}
			double u = (double)(s >> 11) / 9007199254740992.0;
			size_t lo = 0, hi = a->ds->n - 1;
			while (lo < hi) {
				size_t mid = (lo + hi) / 2;
				if (a->zipf_cdf[mid] < u)
					lo = mid + 1;
				else
					hi = mid;
			}
			st->ids[i] = a->ds->items[a->zipf_item[lo]].m.id;
		}
	}
	st->first = (size_t)proc * a->per_proc;
	*out = st;
	return 0;
}

static void l1_teardown(void *state)
{
	l1_state *st = state;
	if (st->txn)
		shm_rtxn_end(st->txn);
	shm_env_close(st->env);
	free(st->ids);
	free(st);
}

static int fail(const char *what, int rc)
{
	fprintf(stderr, "shm-bench: %s: %s: %s\n", what, shm_strerror(rc),
	        shm_errmsg());
	return -1;
}

static int op_get_copy(void *state, size_t i)
{
	l1_state *st = state;
	shm_msg *m;
	int rc = shm_msg_get(st->env, &st->ids[i], &m);
	if (rc)
		return fail("shm_msg_get", rc);
	st->sink += m->content_len + (uint8_t)m->content[0];
	shm_msg_free(m);
	return 0;
}

static int op_get_view(void *state, size_t i)
{
	l1_state *st = state;
	shm_rtxn *t;
	const shm_msg *m;
	int rc = shm_rtxn_begin(st->env, &t);
	if (rc)
		return fail("shm_rtxn_begin", rc);
	rc = shm_msg_view(t, &st->ids[i], &m);
	if (rc) {
		shm_rtxn_end(t);
		return fail("shm_msg_view", rc);
	}
	st->sink += m->content_len + (uint8_t)m->content[0];
	shm_rtxn_end(t);
	return 0;
}

static int op_view_in_txn(void *state, size_t i)
{
	l1_state *st = state;
	int rc;
	if (i % 1000 == 0 || !st->txn) {
		if (st->txn)
			shm_rtxn_end(st->txn);
		st->txn = NULL;
		if ((rc = shm_rtxn_begin(st->env, &st->txn)))
			return fail("shm_rtxn_begin", rc);
	}
	const shm_msg *m;
	if ((rc = shm_msg_view(st->txn, &st->ids[i], &m)))
		return fail("shm_msg_view", rc);
	st->sink += m->content_len + (uint8_t)m->content[0];
	return 0;
}

static int op_put(void *state, size_t i)
{
	l1_state *st = state;
	/* The worker's copy of the data set (copy-on-write after fork). */
	shm_msg *m = &st->a->ds->items[st->first + i].m;
	int rc = shm_msg_put(st->env, m);
	return rc ? fail("shm_msg_put", rc) : 0;
}

static int op_nothing(void *state, size_t i)
{
	return 0;
}

static const bench_op_fn ops_by_mode[] = {op_get_copy, op_get_view,
                                          op_view_in_txn, op_put};

/* Puts the data set into the environment (not measured). */
static int preload(bench_ctx *ctx, const char *dir, const shm_options *opt,
                   bench_dataset *ds, uint64_t *messages)
{
	shm_env *env;
	int rc = shm_env_open(dir, opt, &env);
	if (rc)
		return fail("shm_env_open", rc);
	enum { BATCH = 500 };
	shm_msg *batch = malloc(BATCH * sizeof *batch);
	if (!batch) {
		shm_env_close(env);
		return -1;
	}
	for (size_t i = 0; i < ds->n && !rc; i += BATCH) {
		size_t k = ds->n - i < BATCH ? ds->n - i : BATCH, bad = 0;
		for (size_t j = 0; j < k; j++)
			batch[j] = ds->items[i + j].m;
		rc = shm_msg_put_many(env, batch, k, &bad);
		if (rc)
			fail("preload shm_msg_put_many", rc);
	}
	free(batch);
	shm_info info;
	if (!rc && (rc = shm_env_info(env, &info)) == 0) {
		*messages = info.messages;
		bench_log(ctx, "L1 preloaded: %llu messages, map %zu MiB used",
		          (unsigned long long)info.messages, info.map_used >> 20);
	}
	shm_env_close(env);
	return rc ? -1 : 0;
}

/* l1.put.nosync.full.1p: ops puts of fresh[first...] into an L1 of the
 * section's options whose capacity is hot's size, filled with hot and
 * flushed. */
static int put_full(bench_ctx *ctx, const shm_options *section,
                    bench_dataset *hot, bench_dataset *fresh, size_t first,
                    size_t ops, size_t warm)
{
	char dir[300], name[32];
	snprintf(name, sizeof name, "l1full-%d", ctx->round);
	bench_path(ctx, name, dir);
	shm_options opt = *section;
	opt.l1_max_entries = hot->n;
	uint64_t loaded = 0;
	shm_env *env;
	shm_info info;
	int rc = preload(ctx, dir, &opt, hot, &loaded);
	if (!rc && !(rc = shm_env_open(dir, &opt, &env))) {
		/* what a flusher does once every sink has the records */
		if (!(rc = shm_env_info(env, &info)))
			rc = shm_log_trim(env, info.log_last);
		if (rc)
			fail("shm_log_trim", rc);
		shm_env_close(env);
	}
	bench_dataset slice = *fresh;
	slice.items += first;
	slice.n -= first;
	l1_arg a = {dir, &opt, &slice, ops + warm, ctx->seed, L1_PUT, NULL,
	            NULL};
	bench_job j = {
		.name = "l1.put.nosync.full.1p", .procs = 1, .ops = ops,
		.warmup = warm, .setup = l1_setup, .op = op_put,
		.teardown = l1_teardown, .arg = &a,
		.ratio_vs = "redis.set.1p",
		.note = "shm_msg_put into a full L1: each evicts a flushed entry",
	};
	if (!rc && (rc = bench_measure(ctx, &j)) == 0 &&
	    !(rc = shm_env_open(dir, &opt, &env))) {
		/* Sanity: L1 stayed full, each put made room for itself. */
		shm_counters c;
		if (!(rc = shm_env_info(env, &info)) &&
		    !(rc = shm_stats_shared(env, &c))) {
			bench_log(ctx, "full L1 after puts: %llu messages (capacity "
			          "%zu), %llu evictions (puts %zu)",
			          (unsigned long long)info.messages, hot->n,
			          (unsigned long long)c.evictions, ops + warm);
			if (info.messages != hot->n || c.evictions != ops + warm) {
				bench_log(ctx, "full L1: count mismatch");
				rc = -1;
			}
		}
		shm_env_close(env);
	}
	if (!ctx->keep)
		bench_rm_rf(dir);
	return rc ? -1 : 0;
}

int bench_section_l1(bench_ctx *ctx)
{
	bench_dataset *hot = bench_data(ctx);
	if (!hot)
		return -1;
	size_t get_ops = bench_n(ctx, 500000, 50000);
	size_t put_ops = bench_n(ctx, 100000, 10000);
	size_t warm = bench_n(ctx, 5000, 1000);

	/* A new environment each round: every round measures the same tree. */
	char dir[300], name0[32];
	snprintf(name0, sizeof name0, "l1env-%d", ctx->round);
	bench_path(ctx, name0, dir);
	shm_options opt;
	shm_options_init(&opt);
	opt.durability = SHM_DURABILITY_NOSYNC;
	opt.map_size = (size_t)8 << 30;
	/* No flusher runs: room for every put, so nothing is evicted and no
	 * write waits for the flusher. */
	opt.l1_max_entries = 10u * 1000 * 1000;
	opt.l1_max_bytes = (uint64_t)6 << 30;
	opt.l1_ttl_s = 24 * 3600;

	bench_job tj = {
		.name = "timer.overhead", .procs = 1, .ops = 1000000,
		.op = op_nothing,
		.note = "empty op: the clock_gettime pair inside every sample",
	};
	if (bench_measure(ctx, &tj) != 0)
		return -1;
	uint64_t before = 0;
	if (preload(ctx, dir, &opt, hot, &before) != 0)
		return -1;

	/* puts: 1 process, then 2; fresh messages, each put once. */
	bench_dataset fresh;
	size_t put_per_proc = put_ops + warm;
	/* puts into a full L1: fewer than it holds, so that flushed entries
	 * are left to evict until the end */
	size_t full_ops = put_ops / 2;
	if (bench_dataset_make(&fresh, 3 * put_per_proc + full_ops + warm,
	                       ctx->seed + 200) != 0)
		return -1;
	/* The 2-process run puts the slices after the 1-process run's. */
	bench_dataset fresh2 = fresh;
	fresh2.items += put_per_proc;
	fresh2.n -= put_per_proc;

	static const struct {
		const char *name;
		int mode;
		const char *vs;
		const char *note;
	} gets[] = {
		{"l1.get.copy", L1_COPY, "redis.get", "shm_msg_get + shm_msg_free"},
		{"l1.get.view", L1_VIEW, "redis.get",
		 "rtxn_begin + shm_msg_view + rtxn_end"},
		{"l1.view.in_txn", L1_IN_TXN, "redis.get",
		 "shm_msg_view only, one rtxn per 1000 views"},
	};
	/* A failed measurement is reported; the others still run. */
	int rc = 0;
	for (int procs = 1; procs <= 2; procs++) {
		char name[64], vs[64];
		for (size_t g = 0; g < sizeof gets / sizeof gets[0]; g++) {
			snprintf(name, sizeof name, "%s.%dp", gets[g].name, procs);
			snprintf(vs, sizeof vs, "%s.%dp", gets[g].vs, procs);
			l1_arg a = {dir, &opt, hot, get_ops + warm, ctx->seed,
			            gets[g].mode, NULL, NULL};
			bench_job j = {
				.name = name, .procs = procs, .ops = get_ops,
				.warmup = warm, .setup = l1_setup,
				.op = ops_by_mode[gets[g].mode],
				.teardown = l1_teardown, .arg = &a, .ratio_vs = vs,
				.note = procs == 1 ? gets[g].note : NULL,
			};
			if (bench_measure(ctx, &j) != 0)
				rc = -1;
			if (gets[g].mode != L1_IN_TXN) {
				bench_target(name, BENCH_P50_MAX_NS, 1000,
				             "issue 2 §10");
				bench_target(name, BENCH_RATIO_MIN, 30, "issue 2 §10");
			}
		}
		snprintf(name, sizeof name, "l1.put.nosync.%dp", procs);
		snprintf(vs, sizeof vs, "redis.set.%dp", procs);
		l1_arg a = {dir,       &opt,      procs == 1 ? &fresh : &fresh2,
		            put_per_proc, ctx->seed, L1_PUT, NULL, NULL};
		bench_job j = {
			.name = name, .procs = procs, .ops = put_ops,
			.warmup = warm, .setup = l1_setup, .op = op_put,
			.teardown = l1_teardown, .arg = &a, .ratio_vs = vs,
			.note = procs == 1
			                ? "shm_msg_put: value + indexes + log record, "
			                  "one txn, nosync"
			                : NULL,
		};
		if (bench_measure(ctx, &j) != 0)
			rc = -1;
		bench_target(name, BENCH_P50_MAX_NS, 20000, "issue 2 §10");
		bench_target(name, BENCH_RATIO_ABOVE, 1, "issue 2 §10");
	}

	if (put_full(ctx, &opt, hot, &fresh, 3 * put_per_proc, full_ops,
	             warm) != 0)
		rc = -1;

	/* Skewed reads: Zipf(0.99) ranks, mapped to random messages. */
	double *cdf = malloc(hot->n * sizeof *cdf);
	size_t *item = malloc(hot->n * sizeof *item);
	if (cdf && item) {
		double sum = 0;
		for (size_t r = 0; r < hot->n; r++)
			sum += 1.0 / pow((double)(r + 1), 0.99);
		double acc = 0;
		uint64_t s = ctx->seed ^ 0x5eed;
		for (size_t r = 0; r < hot->n; r++) {
			acc += 1.0 / pow((double)(r + 1), 0.99) / sum;
			cdf[r] = acc;
			item[r] = r;
		}
		cdf[hot->n - 1] = 1.0;
		for (size_t r = hot->n - 1; r > 0; r--) {
			s = s * 6364136223846793005ull + 1442695040888963407ull;
			size_t k = (size_t)((s >> 33) % (r + 1));
			size_t t = item[r];
			item[r] = item[k];
			item[k] = t;
		}
		l1_arg a = {dir, &opt, hot, get_ops + warm, ctx->seed, L1_COPY,
		            cdf, item};
		bench_job j = {
			.name = "l1.get.copy.zipf.1p", .procs = 1, .ops = get_ops,
			.warmup = warm, .setup = l1_setup, .op = op_get_copy,
			.teardown = l1_teardown, .arg = &a,
			.ratio_vs = "redis.get.1p",
			.note = "shm_msg_get, keys Zipf(0.99) over the same set",
		};
		if (bench_measure(ctx, &j) != 0)
			rc = -1;
	} else {
		rc = -1;
	}
	free(cdf);
	free(item);

	if (!rc) {
		/* Sanity: every put is there (nothing silently refused). */
		shm_env *env;
		shm_info info;
		if (shm_env_open(dir, &opt, &env) == 0) {
			if (shm_env_info(env, &info) == 0) {
				uint64_t want = before + 3 * (uint64_t)put_per_proc;
				bench_log(ctx,
				          "L1 after puts: %llu messages (expected %llu), "
				          "%llu log records, map %zu MiB used",
				          (unsigned long long)info.messages,
				          (unsigned long long)want,
				          (unsigned long long)info.log_records,
				          info.map_used >> 20);
				if (info.messages != want) {
					bench_log(ctx, "message count mismatch");
					rc = -1;
				}
			}
			shm_env_close(env);
		}
	}
	bench_dataset_free(&fresh);
	if (!ctx->keep)
		bench_rm_rf(dir);
	return rc;
}
