/*
 * bench_cleanup.c - the grouped connection cleanup (flusher/cleanup.c) vs
 * the old way (flusher/cleanup_baseline.c: one check per connection, each
 * reloading its source's recursive dependencies), issue 5 §6, on
 * shm-dataset's Osuny-shaped sites: 100 websites x ~12,000 connections, 5%
 * obsolete, 10% of objects marked (--quick: 10 x 3,000).
 *
 * PostgreSQL: SHM_BENCH_PG or SHM_TEST_PG (a libpq conninfo), else the
 * bench's own cluster, started by bench_pg() as for the flusher section.
 * Everything happens in a schema of its own, shm_bench_cleanup, dropped at
 * the end. Each way runs in a child process on a fresh load of the same
 * data set (same seed); the parent reads the child's peak RSS (wait4) and
 * its stats through a pipe. The old way is slow by design: in a full run it
 * checks the first 10 websites only and its totals are extrapolated
 * (x websites / 10), which the note says.
 */
#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "../../flusher/fl.h"
#include "../../flusher/cleanup.h"

#define SCHEMA "shm_bench_cleanup"

/* The directory of this executable (where shm-dataset is). */
static void bin_dir(char *bindir)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	exe[n > 0 ? n : 0] = 0;
	char *slash = strrchr(exe, '/');
	if (slash)
		*slash = 0;
	snprintf(bindir, PATH_MAX, "%s", exe);
}

/* Drops and recreates the schema, then loads the data set into it. */
static int load(const bench_ctx *ctx, const char *conninfo, const char *bindir,
                const char *schema_sql, long websites, long conns)
{
	PGconn *pg = PQconnectdb(conninfo);
	int rc = -1;
	if (PQstatus(pg) != CONNECTION_OK) {
		fprintf(stderr, "bench cleanup: %s", PQerrorMessage(pg));
		goto out;
	}
	if (bench_pg_exec(pg, "SET client_min_messages = warning") ||
	    bench_pg_exec(pg, "DROP SCHEMA IF EXISTS " SCHEMA " CASCADE") ||
	    bench_pg_exec(pg, "CREATE SCHEMA " SCHEMA) ||
	    bench_pg_exec(pg, "SET search_path = " SCHEMA ", public") ||
	    bench_pg_exec(pg, schema_sql))
		goto out;
	char cmd[PATH_MAX * 2];
	snprintf(cmd, sizeof cmd,
	         "'%s/shm-dataset' --quiet --pg \"$SHM_BENCH_CLEANUP_PG\""
	         " --websites %ld --connections %ld --obsolete 0.05"
	         " --marked 0.10 --seed %llu",
	         bindir, websites, conns, (unsigned long long)ctx->seed);
	if (system(cmd) != 0) {
		fprintf(stderr, "bench cleanup: shm-dataset failed\n");
		goto out;
	}
	rc = bench_pg_exec(pg, "ANALYZE");
out:
	PQfinish(pg);
	return rc;
}

typedef struct outcome {
	fl_cleanup_stats st;
	long peak_kb;
	int ok;
} outcome;

/* Runs one way in a child; its stats and peak RSS in *o. */
static int run_child(const char *conninfo, bool grouped, outcome *o)
{
	int fd[2];
	if (pipe(fd))
		return -1;
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		fl_config cfg = {0};
		char err[512];
		outcome r = {0};
		cfg.pg_conninfo = (char *)conninfo;
		cfg.pg_timeout_ms = 600000;
		PGconn *pg = fl_cleanup_connect(&cfg, err, sizeof err);
		if (!pg)
			fprintf(stderr, "bench cleanup: %s\n", err);
		else if ((grouped ? fl_cleanup_round
		                  : fl_cleanup_round_per_connection)(
		                 pg, &r.st, err, sizeof err))
			fprintf(stderr, "bench cleanup: %s\n", err);
		else
			r.ok = 1;
		PQfinish(pg);
		if (write(fd[1], &r, sizeof r) != sizeof r)
			_exit(1);
		_exit(0);
	}
	close(fd[1]);
	memset(o, 0, sizeof *o);
	ssize_t n = read(fd[0], o, sizeof *o);
	close(fd[0]);
	int status;
	struct rusage ru;
	if (wait4(pid, &status, 0, &ru) < 0)
		return -1;
	o->peak_kb = ru.ru_maxrss;
	return n == sizeof *o && o->ok ? 0 : -1;
}

static long remaining(const char *conninfo)
{
	PGconn *pg = PQconnectdb(conninfo);
	long n = -1;
	PGresult *r = PQexec(pg, "SELECT count(*) FROM "
	                         "communication_website_connections");
	if (PQresultStatus(r) == PGRES_TUPLES_OK)
		n = atol(PQgetvalue(r, 0, 0));
	PQclear(r);
	PQfinish(pg);
	return n;
}

int bench_section_cleanup(bench_ctx *ctx)
{
	const char *base = getenv("SHM_BENCH_PG");
	if (!base || !*base)
		base = getenv("SHM_TEST_PG");
	/* neither: the bench's own cluster (SHM_BENCH_PG unset, so its
	 * conninfo is the plain one of that cluster, no search_path) */
	if ((!base || !*base) && !(base = bench_pg(ctx)))
		return -1;
	char bindir[PATH_MAX], conninfo[2048];
	bin_dir(bindir);
	char *schema_sql = bench_schema_sql();
	if (!schema_sql) {
		fprintf(stderr, "bench cleanup: cannot read sql/schema.sql "
		        "(set SHM_TOP)\n");
		return -1;
	}
	snprintf(conninfo, sizeof conninfo,
	         "%s options='-csearch_path=" SCHEMA ",public'", base);
	setenv("SHM_BENCH_CLEANUP_PG", conninfo, 1);
	long websites = (long)bench_n(ctx, 100, 10);
	long conns = (long)bench_n(ctx, 12000, 3000);
	long old_sites = ctx->quick ? websites : 10;
	outcome g, o;
	int rc = -1;
	fl_log_open(NULL, FL_WARN);

	bench_log(ctx, "cleanup: loading %ld websites x %ld connections",
	          websites, conns);
	if (load(ctx, conninfo, bindir, schema_sql, websites, conns))
		goto out;
	long before = remaining(conninfo);
	if (run_child(conninfo, true, &g))
		goto out;
	long after = remaining(conninfo);
	bench_log(ctx, "cleanup: grouped: %ld -> %ld connections", before,
	          after);

	/* the old way on the same data (first old_sites websites) */
	if (load(ctx, conninfo, bindir, schema_sql, old_sites, conns))
		goto out;
	if (run_child(conninfo, false, &o))
		goto out;
	long after_old = remaining(conninfo);
	double k = (double)websites / (double)old_sites;

	uint64_t gs = g.st.duration_us * 1000, os = (uint64_t)(o.st.duration_us * 1000 * k);
	char note[96];
	snprintf(note, sizeof note, "%" PRIu64 " stmts, %" PRIu64
	         " dep loads, %" PRIu64 " deleted, peak %ld KiB",
	         g.st.statements, g.st.dep_loads, g.st.deleted, g.peak_kb);
	bench_result_add(ctx, "cleanup.grouped", 1, &gs, 1,
	                 g.st.duration_us / 1e6, "cleanup.per_connection", note);
	snprintf(note, sizeof note, "%.0f stmts, %.0f dep loads, %.0f deleted,"
	         " peak %ld KiB%s", o.st.statements * k, o.st.dep_loads * k,
	         o.st.deleted * k, o.peak_kb, k > 1 ? " (x" : "");
	if (k > 1) {
		size_t l = strlen(note);
		snprintf(note + l, sizeof note - l, "%.0f of %ld sites)", k,
		         old_sites);
	}
	bench_result_add(ctx, "cleanup.per_connection", 1, &os, 1,
	                 o.st.duration_us * k / 1e6, NULL, note);
	bench_target("cleanup.grouped", BENCH_RATIO_MIN, 20,
	             "issue 5 §6: >= 20x one check per connection");
	bench_log(ctx, "cleanup: grouped %ld sites: %.2f s, %" PRIu64
	          " statements, %" PRIu64 " dependency loads, %" PRIu64
	          " deleted, %" PRIu64 " sources, peak RSS %ld KiB; "
	          "per connection %ld sites: %.2f s, %" PRIu64 " statements, %"
	          PRIu64 " dependency loads, %" PRIu64 " deleted (%ld left), "
	          "peak RSS %ld KiB", websites, g.st.duration_us / 1e6,
	          g.st.statements, g.st.dep_loads, g.st.deleted, g.st.sources,
	          g.peak_kb, old_sites, o.st.duration_us / 1e6,
	          o.st.statements, o.st.dep_loads, o.st.deleted, after_old,
	          o.peak_kb);
	rc = 0;
out:
	{
		PGconn *pg = PQconnectdb(base);
		if (PQstatus(pg) == CONNECTION_OK &&
		    !bench_pg_exec(pg, "SET client_min_messages = warning"))
			bench_pg_exec(pg, "DROP SCHEMA IF EXISTS " SCHEMA " CASCADE");
		PQfinish(pg);
	}
	free(schema_sql);
	return rc;
}
