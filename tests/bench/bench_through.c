/*
 * bench_through.c - section "through": the latency of a write-through
 * write when writes are few, and the floor it is compared with.
 *
 *   through.put     200 (--quick: 50) messages put one after the other by
 *                   one process whose environment is opened with write_mode
 *                   SHM_WRITE_THROUGH: each shm_msg_put returns once
 *                   PostgreSQL has applied its record (sink.pg.applied),
 *                   so one record is in flight at a time. shm-flusher runs
 *                   beside it with its default batches (no --batch-records
 *                   nor --batch-ms given: 100 records / 100 ms) and both
 *                   sinks (fl_main in a child, as bench_flusher.c does). A
 *                   sample is one put: the L1 commit, the flusher seeing
 *                   the record, its batch, its PostgreSQL transaction, and
 *                   the writer seeing the new position. 5 puts first,
 *                   untimed (the flusher's connects).
 *   through.pg_txn  the floor: as many one-row INSERTs into a two-column
 *                   table, each its own transaction (autocommit), one
 *                   after the other over one connection to the same
 *                   server: what one PostgreSQL transaction costs here.
 *
 * through.put's ratio is p50(through.pg_txn) / p50(through.put): below 1,
 * the put costs 1/ratio PostgreSQL transactions.
 *
 * PostgreSQL: bench_pg() (bench_pgserver.c); messages and
 * shm_sink_positions are truncated before each round (every round has a
 * fresh environment, whose default env-id is new: an old position row
 * would be another environment's). Redis: bench_redis(), FLUSHDB'd after.
 */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "bench.h"
#include "../../flusher/fl.h"

#define WARMUP 5

/* fl_main in a child: the daemon with its default batches, both sinks. */
static pid_t flusher_start(const char *dir, const char *redis_url,
                           const char *conninfo)
{
	fflush(NULL);
	pid_t pid = fork();
	if (pid != 0)
		return pid;
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
	signal(SIGPIPE, SIG_IGN);
	char *argv[] = {"shm-flusher", "-e", (char *)dir, "--redis",
	                (char *)redis_url, "--pg", (char *)conninfo,
	                "--log-level", "warn", "--cleanup-interval", "0",
	                NULL};
	_exit(fl_main((int)(sizeof argv / sizeof *argv) - 1, argv));
}

static void flusher_stop(pid_t fl)
{
	int st;

	if (fl <= 0)
		return;
	kill(fl, SIGTERM);
	for (int i = 0; i < 1000 && waitpid(fl, &st, WNOHANG) == 0; i++)
		usleep(10000);
	if (kill(fl, 0) == 0) {
		kill(fl, SIGKILL);
		waitpid(fl, NULL, 0);
	}
}

static void redis_flush(const char *sock)
{
	redisContext *c = redisConnectUnix(sock);
	if (c && !c->err)
		freeReplyObject(redisCommand(c, "FLUSHDB"));
	if (c)
		redisFree(c);
}

/* through.put: n timed puts (after WARMUP untimed ones) of ds->items
 * [first, first + WARMUP + n). */
static int puts_through(bench_ctx *ctx, const char *sock,
                        const char *conninfo, const bench_dataset *ds,
                        size_t first, size_t n)
{
	char dir[300], name[64], url[320];
	uint64_t *samples = malloc(n * sizeof *samples);
	shm_env *env = NULL;
	shm_options o;
	pid_t fl = 0;
	int rc = -1;

	snprintf(name, sizeof name, "through-%d", ctx->round);
	bench_path(ctx, name, dir);
	snprintf(url, sizeof url, "unix://%s", sock);
	shm_options_init(&o);
	o.write_mode = SHM_WRITE_THROUGH;
	if (!samples)
		return -1;
	if (shm_env_open(dir, &o, &env)) {
		bench_log(ctx, "through: open %s: %s", dir, shm_errmsg());
		goto out;
	}
	if ((fl = flusher_start(dir, url, conninfo)) < 0)
		goto out;
	bench_log(ctx, "through: %zu write-through puts, one at a time, "
	          "shm-flusher with default batches...", n);
	uint64_t t0 = bench_now_ns();
	for (size_t i = 0; i < WARMUP + n; i++) {
		uint64_t a = bench_now_ns();
		if (shm_msg_put(env, &ds->items[first + i].m)) {
			bench_log(ctx, "through: put %zu: %s", i, shm_errmsg());
			goto out;
		}
		if (i >= WARMUP)
			samples[i - WARMUP] = bench_now_ns() - a;
		else
			t0 = bench_now_ns();
	}
	bench_result_add(ctx, "through.put", 1, samples, n,
	                 (double)(bench_now_ns() - t0) / 1e9, "through.pg_txn",
	                 "write-through, 1 in flight, default batches");
	rc = 0;
out:
	flusher_stop(fl);
	shm_env_close(env);
	free(samples);
	if (!rc)
		bench_rm_rf(dir);
	return rc;
}

/* through.pg_txn: n one-row INSERTs, each committed on its own. */
static int pg_txns(bench_ctx *ctx, PGconn *c, size_t n)
{
	uint64_t *samples = malloc(n * sizeof *samples);
	char id[24];
	int rc = -1;

	if (!samples)
		return -1;
	if (bench_pg_exec(c, "DROP TABLE IF EXISTS bench_through_txn") ||
	    bench_pg_exec(c, "CREATE TABLE bench_through_txn (id bigint "
	                     "PRIMARY KEY, v text NOT NULL)"))
		goto out;
	PGresult *r = PQprepare(c, "txn", "INSERT INTO bench_through_txn "
	                        "VALUES ($1, 'one row, one transaction')", 1,
	                        NULL);
	bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
	PQclear(r);
	if (!ok) {
		bench_log(ctx, "through: prepare: %s", PQerrorMessage(c));
		goto out;
	}
	uint64_t t0 = bench_now_ns();
	for (size_t i = 0; i < n; i++) {
		const char *v[1] = {id};
		snprintf(id, sizeof id, "%zu", i);
		uint64_t a = bench_now_ns();
		r = PQexecPrepared(c, "txn", 1, v, NULL, NULL, 0);
		samples[i] = bench_now_ns() - a;
		ok = PQresultStatus(r) == PGRES_COMMAND_OK;
		PQclear(r);
		if (!ok) {
			bench_log(ctx, "through: insert: %s", PQerrorMessage(c));
			goto out;
		}
	}
	bench_result_add(ctx, "through.pg_txn", 1, samples, n,
	                 (double)(bench_now_ns() - t0) / 1e9, NULL,
	                 "one-row INSERT, autocommit: the floor");
	rc = bench_pg_exec(c, "DROP TABLE bench_through_txn");
out:
	free(samples);
	return rc;
}

int bench_section_through(bench_ctx *ctx)
{
	size_t n = bench_n(ctx, 200, 50);
	bench_dataset *ds = bench_data(ctx);
	const char *sock = ds ? bench_redis(ctx) : NULL;
	const char *conninfo = sock ? bench_pg(ctx) : NULL;
	size_t first = (size_t)ctx->round * (WARMUP + n);
	int rc = -1;

	if (!conninfo)
		return -1;
	if (first + WARMUP + n > ds->n)
		first = 0;
	PGconn *c = PQconnectdb(conninfo);
	if (PQstatus(c) != CONNECTION_OK) {
		bench_log(ctx, "through: %s", PQerrorMessage(c));
		goto out;
	}
	bench_pg_exec(c, "SET client_min_messages = warning");
	fl_log_open(NULL, FL_WARN);
	ctx->redis_loaded = false; /* flushed: the redis section reloads */
	redis_flush(sock);
	if (bench_pg_exec(c, "TRUNCATE messages, shm_sink_positions") ||
	    pg_txns(ctx, c, n) ||
	    puts_through(ctx, sock, conninfo, ds, first, n))
		goto out;
	bench_target("through.put", BENCH_P50_MAX_NS, 25e6,
	             "write-through: about a PostgreSQL transaction, not "
	             "the 100 ms batch-ms");
	rc = 0;
out:
	PQfinish(c);
	redis_flush(sock);
	return rc;
}
