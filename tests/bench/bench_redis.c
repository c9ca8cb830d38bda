/*
 * bench_redis.c - section "redis": what an application pays today for a
 * cache hit and a cache write: Redis GET and SET of the messages' JSON (the
 * value the flusher writes, `msg:<uuid>`), over a unix socket to a local
 * redis-server, one blocking request at a time with hiredis, 1 and 2
 * processes. The L1 section compares itself with these.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "bench.h"

typedef struct redis_arg {
	const char *sock;
	bench_dataset *hot;   /* GET: keys loaded in Redis */
	bench_dataset *fresh; /* SET: new keys, sliced per process */
	size_t per_proc;      /* warmup + ops per process */
	uint64_t seed;
} redis_arg;

typedef struct redis_state {
	redisContext *c;
	const redis_arg *a;
	size_t *order; /* GET: random key per op */
	size_t first;  /* SET: this process's slice of fresh */
} redis_state;

static int rs_setup(void *arg, int proc, void **out)
{
	redis_arg *a = arg;
	redis_state *st = calloc(1, sizeof *st);
	if (!st)
		return -1;
	st->a = a;
	st->c = redisConnectUnix(a->sock);
	if (!st->c || st->c->err) {
		fprintf(stderr, "shm-bench: connect %s: %s\n", a->sock,
		        st->c ? st->c->errstr : "out of memory");
		return -1;
	}
	if (a->hot) {
		st->order = malloc(a->per_proc * sizeof *st->order);
		if (!st->order)
			return -1;
		uint64_t s = a->seed * 7919 + (uint64_t)proc + 1;
		for (size_t i = 0; i < a->per_proc; i++) {
			s = s * 6364136223846793005ull + 1442695040888963407ull;
			st->order[i] = (size_t)((s >> 33) % a->hot->n);
		}
	}
	st->first = (size_t)proc * a->per_proc;
	*out = st;
	return 0;
}

static void rs_teardown(void *state)
{
	redis_state *st = state;
	redisFree(st->c);
	free(st->order);
	free(st);
}

static int rs_get(void *state, size_t i)
{
	redis_state *st = state;
	const bench_item *it = &st->a->hot->items[st->order[i]];
	redisReply *r = redisCommand(st->c, "GET %s", it->key);
	if (!r || r->type != REDIS_REPLY_STRING || r->len != it->json_len) {
		fprintf(stderr, "shm-bench: GET %s: %s\n", it->key,
		        r ? (r->type == REDIS_REPLY_NIL ? "nil" : "bad reply")
		          : st->c->errstr);
		if (r)
			freeReplyObject(r);
		return -1;
	}
	freeReplyObject(r);
	return 0;
}

static int rs_set(void *state, size_t i)
{
	redis_state *st = state;
	const bench_item *it = &st->a->fresh->items[st->first + i];
	redisReply *r = redisCommand(st->c, "SET %s %b EX 3600", it->key,
	                             it->json, it->json_len);
	if (!r || r->type != REDIS_REPLY_STATUS) {
		fprintf(stderr, "shm-bench: SET %s: %s\n", it->key,
		        r ? "bad reply" : st->c->errstr);
		if (r)
			freeReplyObject(r);
		return -1;
	}
	freeReplyObject(r);
	return 0;
}

/* SETs the hot set's JSON, pipelined (not measured). */
static int load_hot(bench_ctx *ctx, const char *sock, bench_dataset *ds)
{
	if (ctx->redis_loaded)
		return 0;
	redisContext *c = redisConnectUnix(sock);
	if (!c || c->err) {
		bench_log(ctx, "connect %s: %s", sock, c ? c->errstr : "oom");
		if (c)
			redisFree(c);
		return -1;
	}
	int rc = 0;
	for (size_t i = 0; i < ds->n && !rc; i += 1000) {
		size_t end = i + 1000 < ds->n ? i + 1000 : ds->n;
		for (size_t k = i; k < end; k++)
			redisAppendCommand(c, "SET %s %b EX 3600", ds->items[k].key,
			                   ds->items[k].json, ds->items[k].json_len);
		for (size_t k = i; k < end; k++) {
			redisReply *r;
			if (redisGetReply(c, (void **)&r) != REDIS_OK) {
				bench_log(ctx, "loading Redis: %s", c->errstr);
				rc = -1;
				break;
			}
			freeReplyObject(r);
		}
	}
	redisFree(c);
	if (!rc)
		ctx->redis_loaded = true;
	return rc;
}

int bench_section_redis(bench_ctx *ctx)
{
	bench_dataset *hot = bench_data(ctx);
	const char *sock = hot ? bench_redis(ctx) : NULL;
	if (!sock || load_hot(ctx, sock, hot) != 0)
		return -1;

	size_t get_ops = bench_n(ctx, 100000, 15000);
	size_t set_ops = bench_n(ctx, 60000, 10000);
	size_t warm = bench_n(ctx, 2000, 500);
	bench_dataset fresh;
	if (bench_dataset_make(&fresh, 2 * (set_ops + warm), ctx->seed + 100) != 0)
		return -1;

	double avg = 0;
	for (size_t i = 0; i < hot->n; i++)
		avg += (double)hot->items[i].json_len;
	avg /= (double)hot->n;
	char note[96];
	snprintf(note, sizeof note, "values: the messages' JSON, %.0f B on average",
	         avg);

	int rc = 0;
	for (int procs = 1; procs <= 2; procs++) {
		char gname[64], sname[64];
		snprintf(gname, sizeof gname, "redis.get.%dp", procs);
		snprintf(sname, sizeof sname, "redis.set.%dp", procs);
		redis_arg ga = {sock, hot, NULL, get_ops + warm, ctx->seed};
		bench_job g = {
			.name = gname, .procs = procs, .ops = get_ops,
			.warmup = warm, .setup = rs_setup, .op = rs_get,
			.teardown = rs_teardown, .arg = &ga,
			.note = procs == 1 ? note : NULL,
		};
		if (bench_measure(ctx, &g) != 0)
			rc = -1;
		redis_arg sa = {sock, NULL, &fresh, set_ops + warm, ctx->seed};
		bench_job s = {
			.name = sname, .procs = procs, .ops = set_ops,
			.warmup = warm, .setup = rs_setup, .op = rs_set,
			.teardown = rs_teardown, .arg = &sa,
			.note = procs == 1 ? "SET key json EX 3600, as the flusher does"
			                   : NULL,
		};
		if (bench_measure(ctx, &s) != 0)
			rc = -1;
	}
	bench_dataset_free(&fresh);
	return rc;
}
