/*
 * bench_pgserver.c - the bench's PostgreSQL, shared by the sections that
 * need one (pg, flusher; cleanup when neither SHM_BENCH_PG nor SHM_TEST_PG
 * is set): SHM_BENCH_PG (a libpq conninfo) if set, in a
 * schema of its own (shm_bench, dropped at the end); otherwise a throwaway
 * cluster under the bench's temp dir (initdb + postgres on a unix socket,
 * fsync off and synchronous_commit off as tests/harness/servers.sh does,
 * WAL segments pre-made and recycled as on a running server; as
 * root it runs as the unprivileged user shmtest), stopped by bench_cleanup,
 * at exit, and with the bench (PR_SET_PDEATHSIG). sql/schema.sql is applied
 * once.
 */
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <grp.h>
#include <libpq-fe.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

#define SCHEMA "shm_bench"
#define PG_USER "shmtest"


static struct {
	pid_t pid;              /* our postmaster, 0 if none */
	char dir[300];          /* cluster dir (socket dir too) */
	char conninfo[1200];    /* what the section and the flusher use */
	char base[1024];        /* SHM_BENCH_PG, or "" */
	bool ready, failed, atexit_set;
} pg;

static void pg_stop(void)
{
	if (pg.pid <= 0)
		return;
	kill(pg.pid, SIGINT); /* fast shutdown */
	for (int i = 0; i < 1000; i++) { /* 10 s */
		if (waitpid(pg.pid, NULL, WNOHANG) != 0) {
			pg.pid = 0;
			return;
		}
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	kill(pg.pid, SIGKILL);
	waitpid(pg.pid, NULL, 0);
	pg.pid = 0;
}

static void pg_atexit(void)
{
	pg_stop();
}

/* As root: the cluster owner, created as tests/harness/servers.sh does
 * when missing (a fresh machine where no test has run yet). */
static struct passwd *owner_user(bench_ctx *ctx)
{
	struct passwd *pw = getpwnam(PG_USER);
	if (pw)
		return pw;
	bench_log(ctx, "pg: creating system user %s", PG_USER);
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		execlp("useradd", "useradd", "--system", "--no-create-home",
		       "--shell", "/usr/sbin/nologin", PG_USER, (char *)NULL);
		fprintf(stderr, "shm-bench: pg: useradd: %s\n", strerror(errno));
		_exit(127);
	}
	int st;
	if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) ||
	    WEXITSTATUS(st) != 0)
		return NULL;
	return getpwnam(PG_USER);
}

/* Forks argv as the cluster owner (shmtest when root); returns the pid. */
static pid_t spawn_owner(char *const argv[], const char *log)
{
	struct passwd *pw = NULL;
	if (geteuid() == 0 && !(pw = getpwnam(PG_USER))) {
		fprintf(stderr, "shm-bench: pg: no user %s to run "
		        "PostgreSQL as (useradd --system %s)\n", PG_USER, PG_USER);
		return -1;
	}
	fflush(NULL);
	pid_t pid = fork();
	if (pid != 0)
		return pid;
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
	signal(SIGQUIT, SIG_DFL);
	if (pw && (setgroups(0, NULL) || setgid(pw->pw_gid) ||
	           setuid(pw->pw_uid)))
		_exit(126);
	/* after the uid change, which clears it */
	prctl(PR_SET_PDEATHSIG, SIGQUIT);
	int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
	if (fd >= 0) {
		dup2(fd, 1);
		dup2(fd, 2);
		close(fd);
	}
	execv(argv[0], argv);
	fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
	_exit(127);
}

static void show_log(const char *log)
{
	FILE *f = fopen(log, "r");
	char line[512];
	if (!f)
		return;
	while (fgets(line, sizeof line, f))
		fprintf(stderr, "  %s", line);
	fclose(f);
}

/*
 * A fresh cluster has no WAL segments to recycle: the first measurement's
 * backend would create and zero-fill each 16 MB segment it fills (15% of its
 * CPU in a drain), where later ones reuse the segments the checkpoint before
 * them recycled (bench_flusher.c's sinks_reset). Switching through WAL_WARM_UP
 * segments and checkpointing leaves them recycled (min_wal_size keeps them),
 * as on a server that has been running.
 */
#define WAL_WARM_UP 24
static int wal_warm_up(PGconn *c)
{
	for (int i = 0; i < WAL_WARM_UP; i++)
		if (bench_pg_exec(c, "SELECT pg_logical_emit_message(false, "
		                  "'shm-bench', 'wal warm-up'), pg_switch_wal()"))
			return -1;
	return bench_pg_exec(c, "CHECKPOINT");
}

/* Starts our own cluster; fills pg.conninfo. */
static int pg_own(bench_ctx *ctx)
{
	glob_t g;
	char bin[PATH_MAX] = "";
	if (glob("/usr/lib/postgresql/*/bin/initdb", 0, NULL, &g) == 0 &&
	    g.gl_pathc > 0) {
		snprintf(bin, sizeof bin, "%s", g.gl_pathv[g.gl_pathc - 1]);
		*strrchr(bin, '/') = 0;
	}
	globfree(&g);
	if (!bin[0]) {
		fprintf(stderr, "shm-bench: pg: PostgreSQL binaries not "
		        "found (make deps), or set SHM_BENCH_PG\n");
		return -1;
	}
	bench_path(ctx, "pg", pg.dir);
	char data[400], log[400], initdb[PATH_MAX + 16], postgres[PATH_MAX + 16];
	snprintf(data, sizeof data, "%s/data", pg.dir);
	snprintf(log, sizeof log, "%s/pg.log", pg.dir);
	snprintf(initdb, sizeof initdb, "%s/initdb", bin);
	snprintf(postgres, sizeof postgres, "%s/postgres", bin);
	if (mkdir(pg.dir, 0700) != 0) {
		fprintf(stderr, "shm-bench: pg: mkdir %s: %s\n", pg.dir,
		        strerror(errno));
		return -1;
	}
	const char *user = PG_USER;
	if (geteuid() == 0) {
		struct passwd *pw = owner_user(ctx);
		/* the temp dir is 0700 root: let the owner traverse it */
		if (!pw || chmod(ctx->tmpdir, 0711) ||
		    chown(pg.dir, pw->pw_uid, pw->pw_gid)) {
			fprintf(stderr, "shm-bench: pg: cannot hand %s to "
			        "%s: %s\n", pg.dir, PG_USER,
			        pw ? strerror(errno) : "no such user, and useradd failed");
			return -1;
		}
	} else {
		struct passwd *pw = getpwuid(geteuid());
		user = pw ? pw->pw_name : "postgres";
	}
	char userarg[300];
	snprintf(userarg, sizeof userarg, "%s", user);
	char *iargv[] = {initdb, "-D", data, "-U", userarg, "-A", "trust",
	                 "-E", "UTF8", "--locale=C.UTF-8", "--no-sync", NULL};
	bench_log(ctx, "pg: initdb in %s", data);
	pid_t pid = spawn_owner(iargv, log);
	int st;
	if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) ||
	    WEXITSTATUS(st) != 0) {
		fprintf(stderr, "shm-bench: pg: initdb failed:\n");
		show_log(log);
		return -1;
	}
	char sockopt[400];
	snprintf(sockopt, sizeof sockopt, "unix_socket_directories=%s", pg.dir);
	char *pargv[] = {postgres, "-D", data, "-c", "listen_addresses=",
	                 "-c", sockopt, "-c", "fsync=off",
	                 "-c", "synchronous_commit=off",
	                 "-c", "full_page_writes=off",
	                 "-c", "min_wal_size=512MB",
	                 "-c", "shared_buffers=128MB",
	                 "-c", "max_connections=50",
	                 "-c", "log_min_messages=warning", NULL};
	pg.pid = spawn_owner(pargv, log);
	if (pg.pid < 0) {
		pg.pid = 0;
		return -1;
	}
	if (!pg.atexit_set) {
		atexit(pg_atexit);
		pg.atexit_set = true;
	}
	char admin[800];
	snprintf(admin, sizeof admin,
	         "host=%s port=5432 user=%s dbname=postgres connect_timeout=2",
	         pg.dir, user);
	PGconn *c = NULL;
	for (int i = 0; i < 3000; i++) { /* 30 s */
		if (waitpid(pg.pid, &st, WNOHANG) == pg.pid) {
			pg.pid = 0;
			fprintf(stderr, "shm-bench: pg: postgres exited:\n");
			show_log(log);
			return -1;
		}
		c = PQconnectdb(admin);
		if (PQstatus(c) == CONNECTION_OK)
			break;
		PQfinish(c);
		c = NULL;
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	if (!c) {
		fprintf(stderr, "shm-bench: pg: postgres did not accept "
		        "connections within 30 s:\n");
		show_log(log);
		return -1;
	}
	int rc = bench_pg_exec(c, "CREATE DATABASE shm_bench") || wal_warm_up(c);
	PQfinish(c);
	snprintf(pg.conninfo, sizeof pg.conninfo,
	         "host=%s port=5432 user=%s dbname=shm_bench", pg.dir, user);
	return rc;
}

const char *bench_pg(bench_ctx *ctx)
{
	if (pg.ready)
		return pg.conninfo;
	if (pg.failed)
		return NULL;
	pg.failed = true;
	const char *base = getenv("SHM_BENCH_PG");
	if (base && *base) {
		snprintf(pg.base, sizeof pg.base, "%s", base);
		snprintf(pg.conninfo, sizeof pg.conninfo,
		         "%s options='-csearch_path=" SCHEMA ",public'", base);
	} else if (pg_own(ctx) != 0) {
		pg_stop();
		return NULL;
	}
	char *sql = bench_schema_sql();
	if (!sql) {
		fprintf(stderr, "shm-bench: pg: cannot read "
		        "sql/schema.sql (set SHM_TOP)\n");
		return NULL;
	}
	PGconn *c = PQconnectdb(pg.base[0] ? pg.base : pg.conninfo);
	int rc = PQstatus(c) == CONNECTION_OK ? 0 : -1;
	if (rc)
		fprintf(stderr, "shm-bench: pg: %s", PQerrorMessage(c));
	if (!rc && pg.base[0])
		rc = bench_pg_exec(c, "SET client_min_messages = warning") ||
		     bench_pg_exec(c, "DROP SCHEMA IF EXISTS " SCHEMA " CASCADE") ||
		     bench_pg_exec(c, "CREATE SCHEMA " SCHEMA) ||
		     bench_pg_exec(c, "SET search_path = " SCHEMA ", public");
	if (!rc)
		rc = bench_pg_exec(c, sql);
	PQfinish(c);
	free(sql);
	if (rc)
		return NULL;
	pg.failed = false;
	pg.ready = true;
	bench_log(ctx, "pg: PostgreSQL: %s", pg.conninfo);
	return pg.conninfo;
}

void bench_pg_stop(void)
{
	if (pg.base[0] && pg.ready) {
		PGconn *c = PQconnectdb(pg.base);
		if (PQstatus(c) == CONNECTION_OK)
			bench_pg_exec(c, "DROP SCHEMA IF EXISTS " SCHEMA " CASCADE");
		PQfinish(c);
	}
	pg_stop();
	pg.ready = false;
}
