/*
 * bench_pg.c - section "pg": the third level of the read path, measured
 * like the other two (MISSION.md: L1 get vs Redis GET vs PostgreSQL SELECT).
 *
 *   pg.select.Np  SELECT of one message by id (the seed's columns, a
 *                 prepared statement, text results), uniformly random over
 *                 the same 100,000 messages the redis and l1 sections read,
 *                 one request at a time per process over the unix socket;
 *                 1 and 2 processes. Compared with redis.get.Np (a ratio
 *                 below 1: PostgreSQL is that many times slower).
 *
 * The messages are loaded into the bench's PostgreSQL (bench_pg) at the
 * start of every round (the flusher section empties the table), in one
 * transaction of prepared INSERTs, then ANALYZEd; every id is formatted
 * before the clock starts.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "shm_log.h"

static const char *const select_sql =
	"SELECT id, room_id, user_id, username, content, message_type,"
	" created_at, updated_at, metadata, content_hash, parent_id, thread_id"
	" FROM messages WHERE id = $1";

static const char *const insert_sql =
	"INSERT INTO messages (id, room_id, user_id, username, content,"
	" message_type, created_at, updated_at, metadata, content_hash,"
	" parent_id, thread_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9,"
	" $10, $11, $12)";

typedef struct pg_arg {
	const char *conninfo;
	const bench_dataset *ds;
	size_t per_proc;
	uint64_t seed;
} pg_arg;

typedef struct pg_state {
	PGconn *c;
	char (*ids)[37];   /* the id to read at op i */
} pg_state;

static int load(bench_ctx *ctx, PGconn *c, const bench_dataset *ds)
{
	char *meta = NULL;
	size_t len = 0, cap = 0;
	int rc = -1;

	if (bench_pg_exec(c, "TRUNCATE messages") ||
	    bench_pg_exec(c, "BEGIN"))
		return -1;
	PGresult *r = PQprepare(c, "ins", insert_sql, 12, NULL);
	if (PQresultStatus(r) != PGRES_COMMAND_OK) {
		bench_log(ctx, "pg: prepare: %s", PQerrorMessage(c));
		PQclear(r);
		return -1;
	}
	PQclear(r);
	for (size_t i = 0; i < ds->n; i++) {
		const shm_msg *m = &ds->items[i].m;
		char id[37], user[16], created[40], updated[40], hash[17],
			parent[37], thread[37];
		len = 0;
		if (shm_msg_metadata_json_append(m, &meta, &len, &cap)) {
			bench_log(ctx, "pg: metadata: %s", shm_errmsg());
			goto out;
		}
		shm_uuid_format(&m->id, id);
		snprintf(user, sizeof user, "%d", (int)m->user_id);
		shm_time_format(m->created_at, created);
		if (m->updated_at)
			shm_time_format(m->updated_at, updated);
		snprintf(hash, sizeof hash, "%016llx",
		         (unsigned long long)m->content_hash);
		if (m->has_parent)
			shm_uuid_format(&m->parent_id, parent);
		if (m->has_thread)
			shm_uuid_format(&m->thread_id, thread);
		/* content is NUL-terminated in the data set */
		const char *v[12] = {
			id, m->room_id, user, m->username, m->content,
			shm_msg_type_name(m->type), created,
			m->updated_at ? updated : NULL, meta, hash,
			m->has_parent ? parent : NULL,
			m->has_thread ? thread : NULL,
		};
		int lens[12] = {0};
		lens[8] = (int)len; /* metadata is not NUL-terminated */
		int fmts[12] = {0};
		r = PQexecPrepared(c, "ins", 12, v, lens, fmts, 0);
		if (PQresultStatus(r) != PGRES_COMMAND_OK) {
			bench_log(ctx, "pg: insert: %s", PQerrorMessage(c));
			PQclear(r);
			goto out;
		}
		PQclear(r);
	}
	rc = bench_pg_exec(c, "COMMIT") || bench_pg_exec(c, "ANALYZE messages");
out:
	if (rc)
		bench_pg_exec(c, "ROLLBACK");
	free(meta);
	return rc;
}

static int pg_setup(void *arg, int proc, void **out)
{
	pg_arg *a = arg;
	pg_state *st = calloc(1, sizeof *st);
	if (!st)
		return -1;
	st->c = PQconnectdb(a->conninfo);
	if (PQstatus(st->c) != CONNECTION_OK) {
		fprintf(stderr, "shm-bench: pg: %s", PQerrorMessage(st->c));
		return -1;
	}
	PGresult *r = PQprepare(st->c, "sel", select_sql, 1, NULL);
	int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
	PQclear(r);
	if (!ok || !(st->ids = malloc(a->per_proc * sizeof *st->ids))) {
		fprintf(stderr, "shm-bench: pg: prepare: %s",
		        PQerrorMessage(st->c));
		return -1;
	}
	uint64_t s = a->seed * 7919 + (uint64_t)proc + 1;
	for (size_t i = 0; i < a->per_proc; i++) {
		s = s * 6364136223846793005ull + 1442695040888963407ull;
		shm_uuid_format(&a->ds->items[(s >> 33) % a->ds->n].m.id,
		                st->ids[i]);
	}
	*out = st;
	return 0;
}

static int op_select(void *state, size_t i)
{
	pg_state *st = state;
	const char *v[1] = {st->ids[i]};
	PGresult *r = PQexecPrepared(st->c, "sel", 1, v, NULL, NULL, 0);
	int rc = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1
	                 ? 0
	                 : -1;
	if (rc)
		fprintf(stderr, "shm-bench: pg: select %s: %s\n", st->ids[i],
		        PQresultStatus(r) == PGRES_TUPLES_OK ? "no row"
		                                             : PQerrorMessage(st->c));
	PQclear(r);
	return rc;
}

static void pg_teardown(void *state)
{
	pg_state *st = state;
	PQfinish(st->c);
	free(st->ids);
	free(st);
}

int bench_section_pg(bench_ctx *ctx)
{
	bench_dataset *ds = bench_data(ctx);
	const char *conninfo = ds ? bench_pg(ctx) : NULL;
	if (!conninfo)
		return -1;
	size_t ops = bench_n(ctx, 50000, 5000), warm = bench_n(ctx, 2000, 500);

	/* every round: the flusher section empties messages */
	{
		PGconn *c = PQconnectdb(conninfo);
		int rc = PQstatus(c) == CONNECTION_OK ? 0 : -1;
		if (rc)
			bench_log(ctx, "pg: %s", PQerrorMessage(c));
		else
			bench_pg_exec(c, "SET client_min_messages = warning");
		bench_log(ctx, "pg: loading %zu messages", ds->n);
		if (!rc)
			rc = load(ctx, c, ds);
		PQfinish(c);
		if (rc)
			return -1;
	}
	int rc = 0;
	for (int procs = 1; procs <= 2; procs++) {
		char name[32], vs[32];
		snprintf(name, sizeof name, "pg.select.%dp", procs);
		snprintf(vs, sizeof vs, "redis.get.%dp", procs);
		pg_arg a = {conninfo, ds, ops + warm, ctx->seed};
		bench_job j = {
			.name = name, .procs = procs, .ops = ops, .warmup = warm,
			.setup = pg_setup, .op = op_select,
			.teardown = pg_teardown, .arg = &a, .ratio_vs = vs,
			.note = procs == 1 ? "SELECT ... WHERE id = $1, prepared,"
			                     " one message" : NULL,
		};
		if (bench_measure(ctx, &j) != 0)
			rc = -1;
	}
	return rc;
}
