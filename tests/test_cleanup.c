/* tests/test_cleanup.c - the grouped connection cleanup (flusher/cleanup.c,
 * cleanup_graph.c; its immediate upserts, cleanup_refresh.c; its old way,
 * cleanup_baseline.c) against the real PostgreSQL of the harness
 * (SHM_TEST_PG; every test skips without it). Graphs are written by hand
 * into shm_objects/shm_edges/shm_marks, as the flusher's pg sink mirrors
 * them, each test in websites of its own. */
#include <inttypes.h>
#include <libpq-fe.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"
#include "shm_log.h"
#include "flusher_test.h"
#include "../flusher/fl.h"
#include "../flusher/cleanup.h"

#define WEBSITE "Communication::Website"

static const char *pg_info;
static PGconn *pg;
static unsigned prefix; /* ids of this run: <prefix>-0000-4000-8000-<n> */
static uint64_t seq = 1000;

static int group_setup(void **state)
{
	ft_group_setup(state); /* the flusher tests need Redis too */
	pg_info = getenv("SHM_TEST_PG");
	if (!pg_info || !*pg_info) {
		fprintf(stderr, "SKIP: SHM_TEST_PG is not set (run through "
		        "tests/run.sh, which starts PostgreSQL)\n");
		pg_info = NULL;
		return 0;
	}
	pg = PQconnectdb(pg_info);
	if (PQstatus(pg) != CONNECTION_OK) {
		fprintf(stderr, "test_cleanup: %s", PQerrorMessage(pg));
		return -1;
	}
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	prefix = (unsigned)(ts.tv_nsec ^ (getpid() << 12));
	return 0;
}

static int group_teardown(void **state)
{
	PQfinish(pg);
	return 0;
}

#define NEED_PG()                                                              \
	do {                                                                   \
		if (!pg_info) {                                                \
			skip();                                                \
			return;                                                \
		}                                                              \
	} while (0)

static void sql(const char *fmt, ...)
{
	char q[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(q, sizeof q, fmt, ap);
	va_end(ap);
	PGresult *r = PQexec(pg, q);
	if (PQresultStatus(r) != PGRES_COMMAND_OK &&
	    PQresultStatus(r) != PGRES_TUPLES_OK)
		fail_msg("%s: %s", q, PQerrorMessage(pg));
	PQclear(r);
}

static long count(const char *fmt, ...)
{
	char q[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(q, sizeof q, fmt, ap);
	va_end(ap);
	PGresult *r = PQexec(pg, q);
	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		fail_msg("%s: %s", q, PQerrorMessage(pg));
	long n = atol(PQgetvalue(r, 0, 0));
	PQclear(r);
	return n;
}

/* The UUID of object number n, and of website number n. */
static const char *id(int n)
{
	static char buf[16][40];
	static int k;
	char *b = buf[k++ % 16];
	snprintf(b, 40, "%08x-0000-4000-8000-%012d", prefix, n);
	return b;
}

typedef struct site {
	char id[40];
	char univ[40];
} site;

static void site_init(site *s, int n)
{
	snprintf(s->id, sizeof s->id, "%08x-0000-4000-9000-%012d", prefix, n);
	snprintf(s->univ, sizeof s->univ, "%08x-0000-4000-a000-%012d", prefix,
	         n);
	sql("INSERT INTO shm_websites VALUES ('%s', '%s')", s->id, s->univ);
}

/* "Page:3" -> type "Page", id id(3); "Website" -> the site itself;
 * "Communication::Website:9" -> another website, id(9). */
static void split(const site *s, const char *o, char *type, char *oid)
{
	if (!strcmp(o, "Website")) {
		strcpy(type, WEBSITE);
		strcpy(oid, s->id);
		return;
	}
	const char *c = strrchr(o, ':');
	snprintf(type, 64, "%.*s", (int)(c - o), o);
	strcpy(oid, id(atoi(c + 1)));
}

static void direct(const site *s, const char *o)
{
	char t[64], i[40];
	split(s, o, t, i);
	sql("INSERT INTO shm_objects (website_id, object_type, object_id, "
	    "direct) VALUES ('%s', '%s', '%s', true)", s->id, t, i);
}

static void edge(const site *s, const char *from, const char *to)
{
	char t1[64], i1[40], t2[64], i2[40];
	split(s, from, t1, i1);
	split(s, to, t2, i2);
	sql("INSERT INTO shm_edges VALUES ('%s', '%s', '%s', '%s', '%s')",
	    s->id, t1, i1, t2, i2);
}

static void mark(const site *s, const char *o, int reason)
{
	char t[64], i[40];
	split(s, o, t, i);
	sql("INSERT INTO shm_marks VALUES ('%s', '%s', '%s', %d, now(), %"
	    PRIu64 ")", s->id, t, i, reason, seq++);
}

static void conn(const site *s, const char *src, const char *obj)
{
	char t1[64], i1[40], t2[64], i2[40];
	split(s, src, t1, i1);
	split(s, obj, t2, i2);
	sql("INSERT INTO communication_website_connections (university_id, "
	    "website_id, indirect_object_type, indirect_object_id, "
	    "direct_source_type, direct_source_id) VALUES ('%s', '%s', '%s', "
	    "'%s', '%s', '%s')", s->univ, s->id, t2, i2, t1, i1);
}

/* The site's connections as "Source>Object" sorted, ';'-separated, with
 * objects named back "Type:n" (the site itself "Website"); static buffer. */
static const char *conns(const site *s)
{
	static char out[8192];
	char q[512];
	snprintf(q, sizeof q,
	         "SELECT string_agg(x, ';' ORDER BY x) FROM (SELECT"
	         " CASE WHEN direct_source_type = '" WEBSITE "' AND"
	         " direct_source_id = website_id THEN 'Website'"
	         " ELSE direct_source_type || ':' ||"
	         " (right(direct_source_id::text, 12)::bigint)::text END || '>' ||"
	         " indirect_object_type || ':' ||"
	         " (right(indirect_object_id::text, 12)::bigint)::text AS x"
	         " FROM communication_website_connections"
	         " WHERE website_id = '%s') s", s->id);
	PGresult *r = PQexec(pg, q);
	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		fail_msg("%s", PQerrorMessage(pg));
	snprintf(out, sizeof out, "%s", PQgetvalue(r, 0, 0));
	PQclear(r);
	return out;
}

static long marks_of(const site *s)
{
	return count("SELECT count(*) FROM shm_marks WHERE website_id = '%s'",
	             s->id);
}

/* ------------------------------------------------------------- tests */

/*
 * One site with every case at once:
 *   Website -> School:1 (its about) -> Person:1
 *   Page:1 -> Block:1 -> Person:2 <-> Org:1 (cycle); Page:1 -> Page:2
 *     (direct: included, not expanded); Page:2 -> Block:2 -> Person:3
 *   Post:1 -> Block:3 -> Person:2 (shared); Post:1 -> Category:1 (direct
 *     and, in stale connections, indirect) -> Person:4
 *   Post:2 destroyed (no graph left); Person:5 destroyed (Page:3 -> Block:5
 *     lost its edge to it)
 *   Post:3 not concerned by any mark: its stale connection stays.
 */
static void test_cleanup_leaves_exactly_the_recursive_dependencies(void **st_)
{
	NEED_PG();
	site s, other;
	site_init(&s, 1);
	site_init(&other, 2);

	direct(&s, "Page:1");
	direct(&s, "Page:2");
	direct(&s, "Page:3");
	direct(&s, "Post:1");
	direct(&s, "Post:3");
	direct(&s, "Category:1");
	edge(&s, "Website", "School:1");
	edge(&s, "School:1", "Person:1");
	edge(&s, "Page:1", "Block:1");
	edge(&s, "Block:1", "Person:2");
	edge(&s, "Person:2", "Org:1");
	edge(&s, "Org:1", "Person:2");
	edge(&s, "Page:1", "Page:2");
	edge(&s, "Page:2", "Block:2");
	edge(&s, "Block:2", "Person:3");
	edge(&s, "Post:1", "Block:3");
	edge(&s, "Block:3", "Person:2");
	edge(&s, "Post:1", "Category:1");
	edge(&s, "Category:1", "Person:4");
	edge(&s, "Page:3", "Block:5");

	conn(&s, "Website", "School:1");
	conn(&s, "Website", "Person:1");
	conn(&s, "Website", "Person:7");     /* obsolete */
	conn(&s, "Page:1", "Block:1");
	conn(&s, "Page:1", "Block:1");       /* duplicate */
	conn(&s, "Page:1", "Person:2");
	conn(&s, "Page:1", "Block:2");       /* through direct Page:2 */
	conn(&s, "Page:1", "Block:9");       /* removed from Page:1 */
	conn(&s, "Page:2", "Block:2");
	conn(&s, "Page:2", "Person:3");
	conn(&s, "Page:2", "Person:8");      /* stale, but not concerned */
	conn(&s, "Post:1", "Block:3");
	conn(&s, "Post:1", "Person:2");
	conn(&s, "Post:1", "Org:1");
	conn(&s, "Post:1", "Category:1");    /* a direct object */
	conn(&s, "Post:1", "Person:4");      /* behind direct Category:1 */
	conn(&s, "Category:1", "Person:4");
	conn(&s, "Post:2", "Person:2");      /* Post:2 destroyed */
	conn(&s, "Post:2", "Block:7");
	conn(&s, "Page:3", "Block:5");
	conn(&s, "Page:3", "Person:5");      /* Person:5 destroyed */
	conn(&s, "Post:3", "Person:9");      /* stale, not concerned */
	/* the unmarked website: stale connections, no marks */
	edge(&other, "Page:1", "Block:1");
	direct(&other, "Page:1");
	conn(&other, "Page:1", "Block:1");
	conn(&other, "Page:1", "Block:2");
	const char *other_before = strdup(conns(&other));

	mark(&s, "School:1", 1);
	mark(&s, "Page:1", 1);
	mark(&s, "Post:1", 1);
	mark(&s, "Post:2", 2);
	mark(&s, "Person:5", 2);

	fl_cleanup_stats st = {0};
	char err[512] = "";
	assert_int_equal(fl_cleanup_website(pg, s.id, &st, err, sizeof err), 0);
	assert_string_equal(conns(&s),
	                    "Category:1>Person:4;"
	                    "Page:1>Block:1;Page:1>Org:1;Page:1>Person:2;"
	                    "Page:2>Block:2;Page:2>Person:3;Page:2>Person:8;"
	                    "Page:3>Block:5;"
	                    "Post:1>Block:3;Post:1>Org:1;Post:1>Person:2;"
	                    "Post:3>Person:9;"
	                    "Website>Person:1;Website>School:1");
	/* Website, Page:1, Post:1, Post:2, Page:3: one load each */
	assert_int_equal(st.sources, 5);
	assert_int_equal(st.dep_loads, 5);
	/* Website 1, Page:1 3 (dup, Block:2, Block:9), Post:1 2, Post:2 2,
	 * Page:3 1 */
	assert_int_equal(st.deleted, 9);
	assert_int_equal(st.inserted, 1); /* Page:1>Org:1 */
	assert_int_equal(st.marks_cleared, 5);
	assert_int_equal(st.websites_failed, 0);
	/* statements: BEGIN, lock, marks, university, sources, 5 sources,
	 * clear marks, COMMIT (+ the temp table, once per connection) */
	assert_true(st.statements <= 13);
	assert_int_equal(marks_of(&s), 0);
	assert_string_equal(conns(&other), other_before);

	/* the second round finds nothing to do for this site */
	mark(&s, "Page:1", 1);
	memset(&st, 0, sizeof st);
	assert_int_equal(fl_cleanup_website(pg, s.id, &st, err, sizeof err), 0);
	assert_int_equal(st.deleted, 0);
	assert_int_equal(st.inserted, 0);
	assert_int_equal(st.sources, 1);
	/* and a whole round with no marks left deletes nothing anywhere */
	assert_int_equal(fl_cleanup_round(pg, &st, err, sizeof err), 0);
	assert_int_equal(st.deleted, 0);
	assert_int_equal(st.inserted, 0);
	assert_string_equal(conns(&other), other_before);
	free((void *)other_before);
}

static void setup_stale_site(site *s, int n)
{
	site_init(s, n);
	direct(s, "Page:1");
	edge(s, "Page:1", "Block:1");
	conn(s, "Page:1", "Block:1");
	conn(s, "Page:1", "Block:2");
	mark(s, "Page:1", 1);
}

static void test_cleanup_failing_website_does_not_stop_the_others(void **st_)
{
	NEED_PG();
	site a, b, c;
	setup_stale_site(&a, 11);
	setup_stale_site(&b, 12);
	setup_stale_site(&c, 13);
	/* b's marks cannot be cleared: its transaction fails at the end */
	sql("CREATE OR REPLACE FUNCTION test_cleanup_fail() RETURNS trigger"
	    " LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'injected failure"
	    " for %%', OLD.website_id; END $$");
	sql("CREATE TRIGGER test_cleanup_fail BEFORE DELETE ON shm_marks"
	    " FOR EACH ROW WHEN (OLD.website_id = '%s')"
	    " EXECUTE FUNCTION test_cleanup_fail()", b.id);

	fl_cleanup_stats st = {0};
	char err[512] = "";
	assert_int_equal(fl_cleanup_round(pg, &st, err, sizeof err), 0);
	assert_true(st.websites >= 3);
	assert_int_equal(st.websites_failed, 1);
	assert_string_equal(conns(&a), "Page:1>Block:1");
	assert_string_equal(conns(&c), "Page:1>Block:1");
	/* b rolled back whole: its connection and its mark are still there */
	assert_string_equal(conns(&b), "Page:1>Block:1;Page:1>Block:2");
	assert_int_equal(marks_of(&a), 0);
	assert_int_equal(marks_of(&b), 1);

	/* fixed: the next round takes b, and only b */
	sql("DROP TRIGGER test_cleanup_fail ON shm_marks");
	assert_int_equal(fl_cleanup_round(pg, &st, err, sizeof err), 0);
	assert_int_equal(st.websites, 1);
	assert_int_equal(st.websites_failed, 0);
	assert_int_equal(st.deleted, 1);
	assert_string_equal(conns(&b), "Page:1>Block:1");
	assert_int_equal(marks_of(&b), 0);
}

/* A flusher environment for the tests that run shm-flusher. */
static char *flusher_env(void)
{
	char *dir = tu_tmpdir();
	shm_env_close(tu_open(dir, NULL));
	return dir;
}

/* shm-flusher --cleanup-now (with extra options): its exit code. */
static int cleanup_now(const char *dir, const char *pg_opt)
{
	const char *args[] = {"--cleanup-now", pg_opt ? "--pg" : NULL, pg_opt,
	                      NULL};
	return ft_wait(ft_spawn_flusher(dir, args));
}

/*
 * shm-flusher --cleanup-now runs one round and exits: 0 with the round's
 * work done and its report in meta; 3 when a website failed (the others
 * done, the failure said, its marks kept), when the round's connection is
 * lost partway (the websites left are said to wait for the next round),
 * or when PostgreSQL cannot be reached (said); 1 without --pg.
 */
static void test_cleanup_now_runs_one_round_and_says_how_it_went(void **st_)
{
	FT_NEED_SERVERS();
	NEED_PG();
	char *dir = flusher_env(), want[200];
	site a, b, c;

	setup_stale_site(&a, 61);
	assert_int_equal(cleanup_now(dir, NULL), FL_EXIT_OK);
	assert_string_equal(conns(&a), "Page:1>Block:1");
	assert_int_equal(marks_of(&a), 0);
	shm_env *env = tu_open(dir, NULL);
	assert_int_equal(ft_meta(env, "cleanup.rounds"), 1);
	assert_true(ft_meta(env, "cleanup.last.deleted") >= 1);
	shm_env_close(env);
	assert_true(ft_log_mentions(dir, "INFO cleanup: round: "));

	/* b fails (its marks cannot be cleared): a and c are done */
	setup_stale_site(&a, 62);
	setup_stale_site(&b, 63);
	setup_stale_site(&c, 64);
	sql("CREATE OR REPLACE FUNCTION test_cleanup_fail() RETURNS trigger"
	    " LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'injected failure"
	    " for %%', OLD.website_id; END $$");
	sql("CREATE TRIGGER test_cleanup_fail BEFORE DELETE ON shm_marks"
	    " FOR EACH ROW WHEN (OLD.website_id = '%s')"
	    " EXECUTE FUNCTION test_cleanup_fail()", b.id);
	assert_int_equal(cleanup_now(dir, NULL), FL_EXIT_SINK);
	sql("DROP TRIGGER test_cleanup_fail ON shm_marks");
	snprintf(want, sizeof want, "ERROR cleanup: website %s failed, left "
	         "marked for the next round: ", b.id);
	assert_true(ft_log_mentions(dir, want));
	assert_true(ft_log_mentions(dir, "injected failure for"));
	assert_true(ft_log_mentions(dir, "WARN cleanup: round: 3 websites "
	                                 "(1 failed)"));
	assert_string_equal(conns(&a), "Page:1>Block:1");
	assert_string_equal(conns(&b), "Page:1>Block:1;Page:1>Block:2");
	assert_string_equal(conns(&c), "Page:1>Block:1");
	assert_int_equal(marks_of(&b), 1);

	/* b's transaction loses the connection (its backend terminated): c
	 * is not tried, both wait for the next round, and the log says so */
	setup_stale_site(&c, 65);
	sql("CREATE OR REPLACE FUNCTION test_cleanup_kill() RETURNS trigger"
	    " LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_terminate_backend("
	    "pg_backend_pid()); RETURN OLD; END $$");
	sql("CREATE TRIGGER test_cleanup_kill BEFORE DELETE ON shm_marks"
	    " FOR EACH ROW WHEN (OLD.website_id = '%s')"
	    " EXECUTE FUNCTION test_cleanup_kill()", b.id);
	assert_int_equal(cleanup_now(dir, NULL), FL_EXIT_SINK);
	sql("DROP TRIGGER test_cleanup_kill ON shm_marks");
	assert_true(ft_log_mentions(dir, "server closed the connection "
	                                 "unexpectedly"));
	assert_true(ft_log_mentions(dir, "ERROR cleanup: connection lost: 1 "
	                                 "website left marked for the next "
	                                 "round"));
	assert_true(ft_log_mentions(dir, "WARN cleanup: round: 2 websites "
	                                 "(2 failed)"));
	assert_int_equal(marks_of(&b), 1);
	assert_int_equal(marks_of(&c), 1);
	assert_int_equal(cleanup_now(dir, NULL), FL_EXIT_OK);
	assert_string_equal(conns(&b), "Page:1>Block:1");
	assert_string_equal(conns(&c), "Page:1>Block:1");
	assert_int_equal(marks_of(&b) + marks_of(&c), 0);

	/* no PostgreSQL there, no --pg at all */
	assert_int_equal(cleanup_now(dir, "host=/nonexistent dbname=shm"),
	                 FL_EXIT_SINK);
	assert_true(ft_log_mentions(dir, "ERROR cleanup: connect"));
	assert_true(ft_log_mentions(dir, "/nonexistent"));
	assert_int_equal(cleanup_now(dir, ""), FL_EXIT_USAGE);
	assert_true(ft_log_mentions(dir, "ERROR cleanup: --cleanup-now needs "
	                                 "--pg"));
	env = tu_open(dir, NULL);
	assert_int_equal(ft_meta(env, "cleanup.rounds"), 4);
	shm_env_close(env);
	ft_rmdir(dir);
	free(dir);
}

/*
 * What PostgreSQL sends the cleanup's connection as notices (a trigger's
 * NOTICE, and a WARNING of two lines with a control character in it) is
 * one line each of the flusher's --log-file, in its format, at INFO and
 * WARN, the line break folded and the control character shown; nothing
 * reaches stderr. The cleanup's connection had no notice processor:
 * libpq printed them on stderr, raw.
 */
static void test_cleanup_server_notices_are_lines_of_the_log(void **st_)
{
	FT_NEED_SERVERS();
	NEED_PG();
	char *dir = flusher_env(), logf[4200];
	site a;

	setup_stale_site(&a, 81);
	sql("CREATE OR REPLACE FUNCTION test_cleanup_noisy() RETURNS trigger"
	    " LANGUAGE plpgsql AS $$ BEGIN RAISE NOTICE 'cleanup notice';"
	    " RAISE WARNING E'cleanup warning\\nsecond line \\x07bell';"
	    " RETURN OLD; END $$");
	sql("CREATE TRIGGER test_cleanup_noisy BEFORE DELETE ON shm_marks"
	    " FOR EACH ROW WHEN (OLD.website_id = '%s')"
	    " EXECUTE FUNCTION test_cleanup_noisy()", a.id);
	snprintf(logf, sizeof logf, "%s.log", dir);
	const char *args[] = {"--cleanup-now", "--log-file", logf, NULL};
	int rc = ft_wait(ft_spawn_flusher(dir, args));
	sql("DROP TRIGGER test_cleanup_noisy ON shm_marks");
	assert_int_equal(rc, FL_EXIT_OK);
	assert_int_equal(marks_of(&a), 0);
	assert_int_equal(ft_log_file_lines(logf, "INFO cleanup: server: "
	                                   "NOTICE:  cleanup notice"), 1);
	assert_int_equal(ft_log_file_lines(logf, "WARN cleanup: server: "
	                                   "WARNING:  cleanup warning second "
	                                   "line \\x07bell"), 1);
	ft_assert_no_stderr(dir);
	unlink(logf);
	ft_rmdir(dir);
	free(dir);
}

/* Waits up to 15 s for the site's connections to be want and its marks
 * gone. */
static bool cleaned_within(const site *s, const char *want)
{
	for (int i = 0; i < 300; i++) {
		if (!strcmp(conns(s), want) && marks_of(s) == 0)
			return true;
		tu_sleep_ms(50);
	}
	return false;
}

/*
 * The daemon's own rounds (--cleanup-interval 1: the first 1 s after the
 * start, then every second): a marked website is cleaned with no
 * --cleanup-now; with PostgreSQL stopped, rounds are skipped and say why,
 * the daemon goes on; PostgreSQL back, the next round does the work.
 * SIGTERM: exit 0, the rounds counted in meta.
 */
static void test_daemon_rounds_go_on_after_postgres_was_stopped(void **st_)
{
	FT_NEED_SERVERS();
	NEED_PG();
	if (!getenv("SHM_TEST_DIR") || !getenv("SHM_PGBIN")) {
		fprintf(stderr, "SKIP: stopping PostgreSQL needs the harness "
		        "(tests/run.sh)\n");
		skip();
	}
	char *dir = flusher_env();
	const char *args[] = {"--cleanup-interval", "1", NULL};
	site a, b;

	setup_stale_site(&a, 71);
	pid_t fl = ft_spawn_flusher(dir, args);
	assert_true(cleaned_within(&a, "Page:1>Block:1"));
	PQfinish(pg);
	assert_int_equal(tu_harness("shm_pg_stop fast"), 0);
	bool skipped = ft_log_waits_for(dir, "ERROR cleanup: round skipped: ",
	                                10000);
	assert_int_equal(tu_harness("shm_pg_start"), 0);
	pg = PQconnectdb(pg_info);
	assert_int_equal(PQstatus(pg), CONNECTION_OK);
	assert_true(skipped);
	setup_stale_site(&b, 72);
	assert_true(cleaned_within(&b, "Page:1>Block:1"));
	kill(fl, SIGTERM);
	assert_int_equal(ft_wait(fl), 0);
	shm_env *env = tu_open(dir, NULL);
	assert_true(ft_meta(env, "cleanup.rounds") >= 2);
	shm_env_close(env);
	ft_rmdir(dir);
	free(dir);
}

static void test_cleanup_adds_missing_connections_once(void **st_)
{
	NEED_PG();
	site s;
	site_init(&s, 21);
	direct(&s, "Post:1");
	edge(&s, "Post:1", "Block:1");
	edge(&s, "Block:1", "Person:1");
	edge(&s, "Block:1", "Page:9"); /* direct (declared below): excluded */
	direct(&s, "Page:9");
	edge(&s, "Person:1", "Person:1"); /* self-cycle */
	mark(&s, "Person:1", 1);  /* Post:1 reached backwards */

	fl_cleanup_stats st = {0};
	char err[512] = "";
	assert_int_equal(fl_cleanup_website(pg, s.id, &st, err, sizeof err), 0);
	assert_string_equal(conns(&s), "Post:1>Block:1;Post:1>Person:1");
	assert_int_equal(st.inserted, 2);
	/* the university comes from shm_websites */
	assert_int_equal(count("SELECT count(*) FROM "
	                       "communication_website_connections WHERE "
	                       "website_id = '%s' AND university_id = '%s'",
	                       s.id, s.univ), 2);
	/* again: nothing new, nothing doubled */
	mark(&s, "Post:1", 1);
	assert_int_equal(fl_cleanup_website(pg, s.id, &st, err, sizeof err), 0);
	assert_int_equal(st.inserted, 2);
	assert_string_equal(conns(&s), "Post:1>Block:1;Post:1>Person:1");
}

static void test_cleanup_mark_rewritten_during_a_round_survives(void **st_)
{
	NEED_PG();
	site s;
	site_init(&s, 31);
	direct(&s, "Page:1");
	conn(&s, "Page:1", "Block:1");
	mark(&s, "Page:1", 1);
	/* the object is saved again while the round runs (simulated: when
	 * the round deletes the connection, the mark gets a new seq) */
	sql("CREATE OR REPLACE FUNCTION test_cleanup_remark() RETURNS trigger"
	    " LANGUAGE plpgsql AS $$ BEGIN UPDATE shm_marks SET seq = seq +"
	    " 1000000 WHERE website_id = OLD.website_id; RETURN OLD; END $$");
	sql("CREATE TRIGGER test_cleanup_remark BEFORE DELETE ON"
	    " communication_website_connections FOR EACH ROW WHEN"
	    " (OLD.website_id = '%s') EXECUTE FUNCTION test_cleanup_remark()",
	    s.id);
	fl_cleanup_stats st = {0};
	char err[512] = "";
	assert_int_equal(fl_cleanup_website(pg, s.id, &st, err, sizeof err), 0);
	sql("DROP TRIGGER test_cleanup_remark ON"
	    " communication_website_connections");
	assert_int_equal(st.deleted, 1);
	assert_int_equal(st.marks_cleared, 0);
	assert_int_equal(marks_of(&s), 1); /* the newer mark is kept */
	memset(&st, 0, sizeof st);
	assert_int_equal(fl_cleanup_website(pg, s.id, &st, err, sizeof err), 0);
	assert_int_equal(st.marks_cleared, 1);
	assert_int_equal(st.deleted, 0);
	assert_int_equal(marks_of(&s), 0);
}

/* Object n of type t as libshm names it ("Page/<id(n)>"). */
static const char *obj(const char *t, int n)
{
	static char buf[8][80];
	static int k;
	char *b = buf[k++ % 8];
	snprintf(b, 80, "%s/%s", t, id(n));
	return b;
}

/* issue 5 §2: the flusher upserts a changed direct source's connections
 * as it applies the graph, without waiting for a cleanup round. */
static void test_flusher_upserts_connections_of_changed_sources(void **st_)
{
	NEED_PG();
	if (!ft_redis_url) {
		skip();
		return;
	}
	site s;
	shm_uuid w;
	site_init(&s, 41);
	assert_int_equal(shm_uuid_parse(s.id, &w), 0);
	char *dir = tu_tmpdir();
	shm_env *env = tu_open(dir, NULL);
	const char *block_deps[] = {obj("Person", 3)};
	const char *page_deps[] = {obj("Block", 2)};
	assert_int_equal(shm_deps_set(env, &w, obj("Block", 2), false,
	                              block_deps, 1), 0);
	assert_int_equal(shm_deps_set(env, &w, obj("Page", 1), true,
	                              page_deps, 1), 0);
	shm_env_close(env);
	assert_int_equal(ft_flush_once(dir, NULL), 0);
	assert_string_equal(conns(&s), "Page:1>Block:2;Page:1>Person:3");
	assert_int_equal(count("SELECT count(*) FROM "
	                       "communication_website_connections WHERE "
	                       "website_id = '%s' AND university_id = '%s'",
	                       s.id, s.univ), 2);

	/* applied again (the same deps set again): nothing doubled */
	env = tu_open(dir, NULL);
	assert_int_equal(shm_deps_set(env, &w, obj("Page", 1), true,
	                              page_deps, 1), 0);
	shm_env_close(env);
	assert_int_equal(ft_flush_once(dir, NULL), 0);
	assert_string_equal(conns(&s), "Page:1>Block:2;Page:1>Person:3");

	/* an indirect object's change reaches the direct sources above it:
	 * the block now shows a second person, in a batch of its own */
	env = tu_open(dir, NULL);
	const char *block_deps2[] = {obj("Person", 3), obj("Person", 4)};
	assert_int_equal(shm_deps_set(env, &w, obj("Block", 2), false,
	                              block_deps2, 2), 0);
	shm_env_close(env);
	assert_int_equal(ft_flush_once(dir, NULL), 0);
	assert_string_equal(conns(&s), "Page:1>Block:2;Page:1>Person:3;"
	                               "Page:1>Person:4");
	/* no marks were written (deps_set only): nothing for the cleanup */
	assert_int_equal(marks_of(&s), 0);
	ft_rmdir(dir);
	free(dir);
}

/* Only a direct object is a direct source: connections whose source is
 * declared indirect (re-declared so after being direct) all go, and its
 * edges add none. */
static void test_cleanup_an_indirect_source_keeps_nothing(void **st_)
{
	NEED_PG();
	site s;
	char t[64], i[40];
	site_init(&s, 51);
	split(&s, "Page:1", t, i);
	sql("INSERT INTO shm_objects (website_id, object_type, object_id, "
	    "direct) VALUES ('%s', '%s', '%s', false)", s.id, t, i);
	edge(&s, "Page:1", "Person:1");
	edge(&s, "Page:1", "Person:2");
	conn(&s, "Page:1", "Person:1");
	mark(&s, "Page:1", 1);

	fl_cleanup_stats st = {0};
	char err[512] = "";
	assert_int_equal(fl_cleanup_website(pg, s.id, &st, err, sizeof err), 0);
	assert_string_equal(conns(&s), "");
	assert_int_equal(st.inserted, 0);
	assert_int_equal(st.deleted, 1);
}

/* UUIDs are case-insensitive: object ids written in upper case in L1 reach
 * PostgreSQL in canonical lower case, so the cleanup matches them with
 * Osuny's uuid columns and keeps the valid connection (it used to delete
 * it, and the flusher to add it back). */
static void test_cleanup_matches_upper_case_uuid_ids(void **st_)
{
	NEED_PG();
	if (!ft_redis_url) {
		skip();
		return;
	}
	site s;
	shm_uuid w;
	char page[80], person[80];
	site_init(&s, 52);
	assert_int_equal(shm_uuid_parse(s.id, &w), 0);
	snprintf(page, sizeof page, "Page/%s", id(1));
	snprintf(person, sizeof person, "Person/%s", id(2));
	for (char *c = page + 5; *c; c++)
		*c = (char)(*c >= 'a' && *c <= 'f' ? *c - 32 : *c);
	for (char *c = person + 7; *c; c++)
		*c = (char)(*c >= 'a' && *c <= 'f' ? *c - 32 : *c);
	char *dir = tu_tmpdir();
	shm_env *env = tu_open(dir, NULL);
	const char *deps[] = {person};
	assert_int_equal(shm_deps_set(env, &w, page, true, deps, 1), 0);
	shm_env_close(env);
	assert_int_equal(ft_flush_once(dir, NULL), 0);
	assert_string_equal(conns(&s), "Page:1>Person:2");
	conn(&s, "Page:1", "Person:3"); /* obsolete */
	env = tu_open(dir, NULL);
	assert_int_equal(shm_object_save(env, &w, page), 0);
	shm_env_close(env);
	assert_int_equal(ft_flush_once(dir, NULL), 0);

	fl_cleanup_stats st = {0};
	char err[512] = "";
	assert_int_equal(fl_cleanup_website(pg, s.id, &st, err, sizeof err), 0);
	assert_string_equal(conns(&s), "Page:1>Person:2");
	assert_int_equal(st.deleted, 1);
	ft_rmdir(dir);
	free(dir);
}

/* A round works on the graph and marks PostgreSQL has: --cleanup-now right
 * after a save, its mark still in the log, cleans nothing and says why (a
 * WARN naming the records and --once --cleanup-now); --once --cleanup-now
 * drains the log, then runs the round. --once used to be ignored beside
 * --cleanup-now, and a round before the drain said only "0 deleted". */
static void test_cleanup_now_with_once_drains_the_log_first(void **st_)
{
	FT_NEED_SERVERS();
	NEED_PG();
	site s;
	shm_uuid w;
	char page[80], block[80];
	site_init(&s, 57);
	assert_int_equal(shm_uuid_parse(s.id, &w), 0);
	snprintf(page, sizeof page, "Page/%s", id(1));
	snprintf(block, sizeof block, "Block/%s", id(2));
	char *dir = flusher_env();
	shm_env *env = tu_open(dir, NULL);
	const char *deps[] = {block};
	assert_int_equal(shm_deps_set(env, &w, page, true, deps, 1), 0);
	shm_env_close(env);
	assert_int_equal(ft_flush_once(dir, NULL), 0);
	assert_string_equal(conns(&s), "Page:1>Block:2");
	conn(&s, "Page:1", "Block:3"); /* obsolete */
	env = tu_open(dir, NULL);
	assert_int_equal(shm_object_save(env, &w, page), 0);
	shm_env_close(env);

	assert_int_equal(cleanup_now(dir, NULL), FL_EXIT_OK);
	assert_string_equal(conns(&s), "Page:1>Block:2;Page:1>Block:3");
	assert_true(ft_log_mentions(dir, "WARN cleanup: the log holds records "
	                                 "PostgreSQL has not applied"));
	assert_true(ft_log_mentions(dir, "(--once --cleanup-now drains the "
	                                 "log first)"));

	const char *both[] = {"--once", "--cleanup-now", NULL};
	assert_int_equal(ft_wait(ft_spawn_flusher(dir, both)), FL_EXIT_OK);
	assert_string_equal(conns(&s), "Page:1>Block:2");
	assert_int_equal(marks_of(&s), 0);
	assert_int_equal(ft_log_count(dir, "WARN cleanup: the log holds"), 1);
	ft_rmdir(dir);
	free(dir);
}

/* The website given in upper case (its object, and the id of its objects'
 * UUIDs) and in lower case is one object in L1 as in PostgreSQL's uuid
 * columns: declared in both cases, the last declaration wins in both, and
 * one connection set results. L1 used to keep two objects, the upper-case
 * one still embedding Person:1, which PostgreSQL no longer had. */
static void test_website_in_either_case_is_one_object_in_l1_and_l3(void **st_)
{
	NEED_PG();
	if (!ft_redis_url) {
		skip();
		return;
	}
	site s;
	shm_uuid w;
	char up[80], lo[80], person[80];
	shm_objlist *l = NULL;
	site_init(&s, 53);
	assert_int_equal(shm_uuid_parse(s.id, &w), 0);
	snprintf(lo, sizeof lo, WEBSITE "/%s", s.id);
	snprintf(up, sizeof up, "%s", lo);
	for (char *c = up + sizeof WEBSITE; *c; c++)
		*c = (char)(*c >= 'a' && *c <= 'f' ? *c - 32 : *c);
	snprintf(person, sizeof person, "%s", obj("Person", 2));
	char *dir = tu_tmpdir();
	shm_env *env = tu_open(dir, NULL);
	const char *deps1[] = {obj("Person", 1)}, *deps2[] = {person};
	assert_int_equal(shm_deps_set(env, &w, up, true, deps1, 1), 0);
	assert_int_equal(shm_deps_set(env, &w, lo, true, deps2, 1), 0);
	assert_int_equal(shm_object_save(env, &w, up), 0);
	shm_env_close(env);
	assert_int_equal(ft_flush_once(dir, NULL), 0);
	fl_cleanup_stats st = {0};
	char err[512] = "";
	assert_int_equal(fl_cleanup_website(pg, s.id, &st, err, sizeof err), 0);
	assert_string_equal(conns(&s), "Website>Person:2");
	env = tu_open(dir, NULL);
	assert_int_equal(shm_deps_recursive(env, &w, up, &l), 0);
	assert_int_equal(l->n, 1);
	assert_string_equal(l->items[0], person);
	free(l);
	assert_int_equal(shm_deps_referrers(env, &w, obj("Person", 1), &l), 0);
	assert_int_equal(l->n, 0);
	free(l);
	shm_env_close(env);
	ft_rmdir(dir);
	free(dir);
}

/*
 * Another website embedded in a page is direct in L1 as in L3, declared or
 * not (every Communication::Website object is: SHM_WEBSITE_TYPE): the page's
 * recursive dependencies stop at it, so the page has no connection to what
 * that website shows, which is connected to the website instead, and a
 * website is no connection's indirect object. L1 used to take it as
 * indirect when declared so and walked through it to the person it shows,
 * while the flush's refresh and the cleanup stopped there.
 */
static void test_another_website_is_direct_in_l1_and_l3(void **st_)
{
	NEED_PG();
	if (!ft_redis_url) {
		skip();
		return;
	}
	site s;
	shm_uuid w;
	char other[80], page[80], person[80];
	shm_objlist *l = NULL;
	site_init(&s, 54);
	assert_int_equal(shm_uuid_parse(s.id, &w), 0);
	snprintf(other, sizeof other, WEBSITE "/%s", id(9));
	snprintf(page, sizeof page, "%s", obj("Page", 1));
	snprintf(person, sizeof person, "%s", obj("Person", 3));
	char *dir = tu_tmpdir();
	shm_env *env = tu_open(dir, NULL);
	const char *page_deps[] = {other}, *other_deps[] = {person};
	/* declared indirect: refused (it used to be taken) */
	assert_int_equal(shm_deps_set(env, &w, other, false, other_deps, 1),
	                 SHM_EINVAL);
	assert_int_equal(shm_deps_set(env, &w, page, true, page_deps, 1), 0);
	assert_int_equal(shm_deps_set(env, &w, other, true, other_deps, 1), 0);
	/* L1: the page's walk stops at the website, whose walk reaches the
	 * person */
	assert_int_equal(shm_deps_recursive(env, &w, page, &l), 0);
	assert_int_equal(l->n, 1);
	assert_string_equal(l->items[0], other);
	free(l);
	assert_int_equal(shm_deps_recursive(env, &w, other, &l), 0);
	assert_int_equal(l->n, 1);
	assert_string_equal(l->items[0], person);
	free(l);
	shm_env_close(env);
	/* L3, at flush time: the same */
	assert_int_equal(ft_flush_once(dir, NULL), 0);
	assert_string_equal(conns(&s), WEBSITE ":9>Person:3");

	/* the rows the other reading makes go at the next cleanup, the right
	 * one stays */
	conn(&s, "Page:1", "Person:3");
	conn(&s, "Page:1", WEBSITE ":9");
	env = tu_open(dir, NULL);
	assert_int_equal(shm_object_save(env, &w, page), 0);
	assert_int_equal(shm_object_save(env, &w, other), 0);
	shm_env_close(env);
	assert_int_equal(ft_flush_once(dir, NULL), 0);
	fl_cleanup_stats st = {0};
	char err[512] = "";
	assert_int_equal(fl_cleanup_website(pg, s.id, &st, err, sizeof err), 0);
	assert_string_equal(conns(&s), WEBSITE ":9>Person:3");
	assert_int_equal(st.deleted, 2);
	assert_int_equal(st.inserted, 0);
	ft_rmdir(dir);
	free(dir);
}

/* The cleanup takes every website object as direct: declared, undeclared,
 * or mirrored indirect (an older libshm let a website be declared so). */
static void test_cleanup_takes_every_website_as_direct(void **st_)
{
	NEED_PG();
	site s;
	char t[64], i[40];
	site_init(&s, 56);
	direct(&s, "Page:1");
	direct(&s, "Page:2");
	split(&s, WEBSITE ":9", t, i);
	sql("INSERT INTO shm_objects (website_id, object_type, object_id, "
	    "direct) VALUES ('%s', '%s', '%s', false)", s.id, t, i);
	edge(&s, "Website", "School:1");
	edge(&s, "Page:1", WEBSITE ":9");
	edge(&s, WEBSITE ":9", "Person:3");
	edge(&s, "Page:2", WEBSITE ":8"); /* undeclared */
	edge(&s, "Page:2", "Block:1");
	conn(&s, "Website", "School:1");
	conn(&s, "Page:1", "Person:3");         /* behind a website */
	conn(&s, "Page:1", WEBSITE ":9");       /* a website as object */
	conn(&s, "Page:2", WEBSITE ":8");       /* the same, undeclared */
	conn(&s, "Page:2", "Block:1");
	mark(&s, "Page:1", 1);
	mark(&s, "Page:2", 1);
	mark(&s, "Person:3", 1); /* reached back from the website 9 */

	fl_cleanup_stats st = {0};
	char err[512] = "";
	assert_int_equal(fl_cleanup_website(pg, s.id, &st, err, sizeof err), 0);
	assert_string_equal(conns(&s), WEBSITE ":9>Person:3;Page:2>Block:1;"
	                               "Website>School:1");
	assert_int_equal(st.sources, 3); /* Page:1, Page:2, the website 9 */
	assert_int_equal(st.deleted, 3);
	assert_int_equal(st.inserted, 1);
}

/* The website's advisory lock is taken under hashtext of the uuid's text
 * as PostgreSQL writes it (lower case), whatever the caller's spelling:
 * the flusher's refresh locks that text, so a cleanup given the id in upper
 * case used to lock another key and run beside it. Checked from inside the
 * cleanup's transaction, when it clears the mark. */
static void test_cleanup_locks_the_websites_canonical_text(void **st_)
{
	NEED_PG();
	site s;
	char up[40];
	setup_stale_site(&s, 55);
	snprintf(up, sizeof up, "%s", s.id);
	for (char *c = up; *c; c++)
		*c = (char)(*c >= 'a' && *c <= 'f' ? *c - 32 : *c);
	sql("CREATE OR REPLACE FUNCTION test_cleanup_lock() RETURNS trigger"
	    " LANGUAGE plpgsql AS $$ BEGIN IF NOT EXISTS (SELECT 1 FROM"
	    " pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
	    " AND classid::bigint = %d AND objsubid = 2 AND objid::bigint ="
	    " (hashtext(OLD.website_id::text)::bigint & 4294967295)) THEN"
	    " RAISE EXCEPTION 'not locked under hashtext(%%)',"
	    " OLD.website_id::text; END IF; RETURN OLD; END $$",
	    FL_CLEANUP_LOCK);
	sql("CREATE TRIGGER test_cleanup_lock BEFORE DELETE ON shm_marks"
	    " FOR EACH ROW WHEN (OLD.website_id = '%s')"
	    " EXECUTE FUNCTION test_cleanup_lock()", s.id);
	fl_cleanup_stats st = {0};
	char err[512] = "";
	int rc = fl_cleanup_website(pg, up, &st, err, sizeof err);
	sql("DROP TRIGGER test_cleanup_lock ON shm_marks");
	if (rc)
		fail_msg("%s", err);
	assert_int_equal(st.marks_cleared, 1);
	assert_string_equal(conns(&s), "Page:1>Block:1");
}

/* The schema of the two ways' test, its own: a round handles every marked
 * website of the schema it runs in. */
#define WAYS "test_cleanup_ways"

/* The file at path, malloc'd and NUL-terminated (asserts). */
static char *slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	char *b = NULL;
	size_t len = 0, cap = 0, n;
	do {
		if (len + 4096 + 1 > cap) {
			cap = (len + 4096 + 1) * 2;
			b = realloc(b, cap);
			assert_non_null(b);
		}
		n = fread(b + len, 1, cap - len - 1, f);
		len += n;
	} while (n > 0);
	fclose(f);
	b[len] = 0;
	return b;
}

/* One round in schema WAYS, the grouped one or the per-connection one. */
static void ways_round(const char *info, bool grouped, fl_cleanup_stats *st)
{
	char err[512];
	PGconn *c = PQconnectdb(info);

	assert_int_equal(PQstatus(c), CONNECTION_OK);
	int rc = (grouped ? fl_cleanup_round : fl_cleanup_round_per_connection)(
		c, st, err, sizeof err);
	if (rc)
		fail_msg("%s round: %s", grouped ? "grouped" : "per connection",
		         err);
	PQfinish(c);
}

/*
 * fl_cleanup_round_per_connection, shm-bench's baseline (Osuny's way: each
 * connection reloads its source's recursive dependencies, in SQL, and
 * deletes itself if obsolete), deletes exactly the connections the grouped
 * round deletes (its sources and dependencies walked in C), on
 * shm-dataset's Osuny-shaped websites: the bench compares the same work,
 * and each way checks the other.
 */
static void test_per_connection_way_deletes_what_the_round_deletes(void **st_)
{
	NEED_PG();
	char path[PATH_MAX + 64], exe[PATH_MAX], info[2048], cmd[PATH_MAX * 2];
	const char *top = getenv("SHM_TOP");
	fl_cleanup_stats g, o;

	snprintf(path, sizeof path, "%s/sql/schema.sql", top ? top : ".");
	char *schema = slurp(path);
	sql("SET client_min_messages = warning");
	sql("DROP SCHEMA IF EXISTS " WAYS " CASCADE");
	sql("CREATE SCHEMA " WAYS);
	sql("SET search_path = " WAYS ", public");
	PGresult *r = PQexec(pg, schema);
	if (PQresultStatus(r) != PGRES_COMMAND_OK)
		fail_msg("sql/schema.sql: %s", PQerrorMessage(pg));
	PQclear(r);
	free(schema);
	sql("SET search_path = public");

	/* shm-dataset, next to this test's directory: BUILD/bin */
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	assert_true(n > 0);
	exe[n] = 0;
	*strrchr(exe, '/') = 0;
	snprintf(info, sizeof info, "%s options='-csearch_path=" WAYS
	         ",public -cclient_min_messages=warning'", pg_info);
	assert_int_equal(setenv("TEST_CLEANUP_WAYS_PG", info, 1), 0);
	snprintf(cmd, sizeof cmd, "'%s/../bin/shm-dataset' --quiet --pg "
	         "\"$TEST_CLEANUP_WAYS_PG\" --websites 4 --connections 300 "
	         "--obsolete 0.2 --marked 0.1 --seed 5", exe);
	assert_int_equal(system(cmd), 0);
	sql("CREATE TABLE " WAYS ".before_conns AS SELECT * FROM " WAYS
	    ".communication_website_connections");
	sql("CREATE TABLE " WAYS ".before_marks AS SELECT * FROM " WAYS
	    ".shm_marks");
	assert_true(count("SELECT count(*) FROM " WAYS ".before_marks") > 0);

	ways_round(info, true, &g);
	sql("CREATE TABLE " WAYS ".grouped AS SELECT id FROM " WAYS
	    ".communication_website_connections");
	assert_int_equal(count("SELECT count(*) FROM " WAYS ".shm_marks"), 0);
	/* the same data again for the other way */
	sql("TRUNCATE " WAYS ".communication_website_connections, " WAYS
	    ".shm_marks");
	sql("INSERT INTO " WAYS ".communication_website_connections SELECT *"
	    " FROM " WAYS ".before_conns");
	sql("INSERT INTO " WAYS ".shm_marks SELECT * FROM " WAYS
	    ".before_marks");
	ways_round(info, false, &o);
	assert_int_equal(count("SELECT count(*) FROM " WAYS ".shm_marks"), 0);

	assert_int_equal(g.websites, 4);
	assert_int_equal(g.websites_failed, 0);
	assert_int_equal(o.websites, 4);
	assert_int_equal(o.websites_failed, 0);
	assert_int_equal(g.inserted, 0); /* shm-dataset misses none */
	long gone_g = count("SELECT count(*) FROM (SELECT id FROM " WAYS
	                    ".before_conns EXCEPT SELECT id FROM " WAYS
	                    ".grouped) d");
	long gone_o = count("SELECT count(*) FROM (SELECT id FROM " WAYS
	                    ".before_conns EXCEPT SELECT id FROM " WAYS
	                    ".communication_website_connections) d");
	assert_true(gone_g > 0);
	assert_int_equal(g.deleted, (uint64_t)gone_g);
	assert_int_equal(o.deleted, (uint64_t)gone_o);
	/* the same rows: what one deleted and the other kept, none */
	assert_int_equal(count("SELECT count(*) FROM ((SELECT id FROM " WAYS
	                       ".grouped EXCEPT SELECT id FROM " WAYS
	                       ".communication_website_connections) UNION ALL"
	                       " (SELECT id FROM " WAYS
	                       ".communication_website_connections EXCEPT"
	                       " SELECT id FROM " WAYS ".grouped)) d"), 0);
	sql("DROP SCHEMA " WAYS " CASCADE");
}

static void test_cleanup_report_goes_to_meta(void **st_)
{
	char *dir = tu_tmpdir();
	shm_env *env = tu_open(dir, NULL);
	fl_cleanup_stats st = {.websites = 2, .statements = 17, .dep_loads = 5,
	                       .deleted = 9, .duration_us = 12345};
	uint64_t v = 0;

	fl_cleanup_report(env, &st);
	fl_cleanup_report(env, &st);
	assert_int_equal(shm_meta_get(env, "cleanup.last.deleted", &v), 0);
	assert_int_equal(v, 9);
	assert_int_equal(shm_meta_get(env, "cleanup.total.deleted", &v), 0);
	assert_int_equal(v, 18);
	assert_int_equal(shm_meta_get(env, "cleanup.last.statements", &v), 0);
	assert_int_equal(v, 17);
	assert_int_equal(shm_meta_get(env, "cleanup.rounds", &v), 0);
	assert_int_equal(v, 2);
	assert_int_equal(shm_meta_get(env, "cleanup.last.duration_ms", &v), 0);
	assert_int_equal(v, 12);
	shm_env_close(env);
	tu_rmdir(dir);
	free(dir);
}

int main(void)
{
	fl_log_open(NULL, FL_WARN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(
			test_cleanup_leaves_exactly_the_recursive_dependencies),
		cmocka_unit_test(
			test_cleanup_failing_website_does_not_stop_the_others),
		cmocka_unit_test(test_cleanup_adds_missing_connections_once),
		cmocka_unit_test_teardown(
			test_cleanup_now_runs_one_round_and_says_how_it_went,
			ft_teardown),
		cmocka_unit_test_teardown(
			test_cleanup_server_notices_are_lines_of_the_log,
			ft_teardown),
		cmocka_unit_test_teardown(
			test_daemon_rounds_go_on_after_postgres_was_stopped,
			ft_teardown),
		cmocka_unit_test(
			test_cleanup_mark_rewritten_during_a_round_survives),
		cmocka_unit_test(test_cleanup_report_goes_to_meta),
		cmocka_unit_test(
			test_per_connection_way_deletes_what_the_round_deletes),
		cmocka_unit_test(
			test_cleanup_locks_the_websites_canonical_text),
		cmocka_unit_test(test_cleanup_takes_every_website_as_direct),
		cmocka_unit_test(test_cleanup_an_indirect_source_keeps_nothing),
		cmocka_unit_test_teardown(
			test_cleanup_matches_upper_case_uuid_ids, ft_teardown),
		cmocka_unit_test_teardown(
			test_cleanup_now_with_once_drains_the_log_first,
			ft_teardown),
		cmocka_unit_test_teardown(
			test_website_in_either_case_is_one_object_in_l1_and_l3,
			ft_teardown),
		cmocka_unit_test_teardown(
			test_another_website_is_direct_in_l1_and_l3,
			ft_teardown),
		cmocka_unit_test_teardown(
			test_flusher_upserts_connections_of_changed_sources,
			ft_teardown),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
