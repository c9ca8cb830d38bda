/* tests/test_readthrough_lost.c - read-through connections beyond their
 * answers: what PostgreSQL sends as notices (a function's NOTICE and
 * WARNING) never reaches the application's stderr.
 *
 * Needs the servers of tests/run.sh (SHM_TEST_REDIS, SHM_TEST_PG); the
 * tests skip without them. Rows use room names "rl<pid>-..." and are
 * removed afterwards. */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "testutil.h"

static const char *pg_info;
static char prefix[32]; /* "rl<pid>" */

#define NEED_SERVERS()                                                         \
	do {                                                                   \
		if (!pg_info) {                                                \
			skip();                                                \
			return;                                                \
		}                                                              \
	} while (0)

/* ------------------------------------------------------------ helpers */

static PGconn *pg(void)
{
	PGconn *c = PQconnectdb(pg_info);
	if (PQstatus(c) != CONNECTION_OK)
		fail_msg("pg connect: %s", PQerrorMessage(c));
	PQclear(PQexec(c, "SET client_min_messages = warning"));
	return c;
}

static void pg_exec(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	if (PQresultStatus(r) != PGRES_COMMAND_OK &&
	    PQresultStatus(r) != PGRES_TUPLES_OK)
		fail_msg("%s: %s", sql, PQerrorMessage(c));
	PQclear(r);
}

/* A message in room "<prefix>-what", in PostgreSQL only. */
static shm_msg pg_msg(PGconn *db, const char *what, char *room, size_t len)
{
	shm_msg m;

	snprintf(room, len, "%s-%s", prefix, what);
	m = tu_msg(room, 7, "only in PostgreSQL");
	shm_uuid_v7(&m.id);
	m.created_at = INT64_C(1700000000000000);
	m.content_hash = XXH3_64bits(m.content, m.content_len);
	tu_pg_put(db, &m);
	return m;
}

static char *dir;

static shm_env *open_rt(const char *redis, const char *pgc)
{
	shm_options o;

	shm_options_init(&o);
	o.redis_url = redis;
	o.pg_conninfo = pgc;
	o.l2_timeout_ms = 500;
	o.l3_timeout_ms = 2000; /* a loaded CI's first connection */
	dir = tu_tmpdir();
	return tu_open(dir, &o);
}

static void close_rt(shm_env *env)
{
	shm_env_close(env);
	tu_rmdir(dir);
	free(dir);
	dir = NULL;
}

/* fd 2 goes to a new file until stderr_end, which puts it back and
 * returns what was written there (malloc'd). */
static FILE *stderr_file;
static int stderr_saved = -1;

static void stderr_begin(void)
{
	fflush(stderr);
	assert_non_null(stderr_file = tmpfile());
	assert_true((stderr_saved = dup(2)) >= 0);
	assert_int_equal(dup2(fileno(stderr_file), 2), 2);
}

static char *stderr_end(void)
{
	char *out = calloc(1, 65536);

	fflush(stderr);
	assert_int_equal(dup2(stderr_saved, 2), 2);
	close(stderr_saved);
	stderr_saved = -1;
	rewind(stderr_file);
	assert_non_null(out);
	if (fread(out, 1, 65535, stderr_file) == 0)
		out[0] = 0;
	fclose(stderr_file);
	stderr_file = NULL;
	return out;
}

/* -------------------------------------------------------- PostgreSQL */

/* The messages table the handle's search_path finds first is a view
 * whose rows go through a function raising a NOTICE and a WARNING (with
 * client_min_messages at notice): the get is served, and nothing reaches
 * the application's stderr. Before, libpq printed "NOTICE:  ..." and
 * "WARNING:  ..." there. */
static void test_postgres_notices_reach_no_stderr(void **state)
{
	NEED_SERVERS();
	char room[64], conn[4400], schema[48], sql[512], *err;
	PGconn *db = pg();
	shm_msg m = pg_msg(db, "notice", room, sizeof room), *got = NULL;

	snprintf(schema, sizeof schema, "%s_noisy", prefix);
	snprintf(sql, sizeof sql, "DROP SCHEMA IF EXISTS %s CASCADE", schema);
	pg_exec(db, sql);
	snprintf(sql, sizeof sql, "CREATE SCHEMA %s", schema);
	pg_exec(db, sql);
	snprintf(sql, sizeof sql, "CREATE FUNCTION %s.noisy() RETURNS bool "
	         "LANGUAGE plpgsql AS $$BEGIN RAISE NOTICE 'a notice for the "
	         "client'; RAISE WARNING 'a warning for the client'; RETURN "
	         "true; END$$", schema);
	pg_exec(db, sql);
	snprintf(sql, sizeof sql, "CREATE VIEW %s.messages AS SELECT * FROM "
	         "public.messages WHERE %s.noisy()", schema, schema);
	pg_exec(db, sql);
	snprintf(conn, sizeof conn, "%s options='-c search_path=%s,public "
	         "-c client_min_messages=notice'", pg_info, schema);

	shm_env *env = open_rt(NULL, conn);
	stderr_begin();
	int rc = shm_msg_get(env, &m.id, &got);
	err = stderr_end();
	fprintf(stderr, "get through the noisy view: %d, stderr \"%s\"\n", rc,
	        err);
	assert_int_equal(rc, 0);
	tu_assert_msg_equal(got, &m);
	shm_msg_free(got);
	assert_string_equal(err, "");
	free(err);
	close_rt(env);
	snprintf(sql, sizeof sql, "DROP SCHEMA %s CASCADE", schema);
	pg_exec(db, sql);
	PQfinish(db);
}

/* ------------------------------------------------------------ fixture */

static int group_setup(void **state)
{
	pg_info = getenv("SHM_TEST_PG");
	if (!getenv("SHM_TEST_REDIS") || !pg_info || !*pg_info) {
		fprintf(stderr, "SKIP: SHM_TEST_REDIS and SHM_TEST_PG are not "
		        "set (run through tests/run.sh, which starts the "
		        "servers)\n");
		pg_info = NULL;
	}
	snprintf(prefix, sizeof prefix, "rl%ld", (long)getpid());
	return 0;
}

/* Rows of this run removed; stderr back if a failed assertion left it
 * redirected. */
static int teardown(void **state)
{
	char like[64], sql[128];

	if (stderr_saved >= 0) {
		dup2(stderr_saved, 2);
		close(stderr_saved);
		stderr_saved = -1;
	}
	if (!pg_info)
		return 0;
	PGconn *c = pg();
	snprintf(like, sizeof like, "%s-%%", prefix);
	const char *p[1] = {like};
	PQclear(PQexecParams(c, "DELETE FROM messages WHERE room_id LIKE $1",
	                     1, NULL, p, NULL, NULL, 0));
	snprintf(sql, sizeof sql, "DROP SCHEMA IF EXISTS %s_noisy CASCADE",
	         prefix);
	PQclear(PQexec(c, sql));
	PQfinish(c);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_postgres_notices_reach_no_stderr,
		                          teardown),
	};
	return cmocka_run_group_tests(tests, group_setup, NULL);
}
