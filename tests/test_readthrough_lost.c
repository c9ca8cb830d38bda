/* tests/test_readthrough_lost.c - read-through connections the servers
 * ended while they sat in the pool: Redis's idle `timeout` (over its unix
 * socket and over TCP) and CLIENT KILL; PostgreSQL's pg_terminate_backend
 * of the pooled backend, its idle_session_timeout, and restarts (fast,
 * and immediate, whose WARNING reaches the client). The next get is served
 * through a new connection within the same timeout and the level is not
 * skipped; a server that is gone fails the level as before. And what
 * PostgreSQL sends as notices (a function's NOTICE and WARNING, a
 * shutdown's WARNING) never reaches the application's stderr.
 *
 * Needs the servers of tests/run.sh (SHM_TEST_REDIS, SHM_TEST_PG, and for
 * restarts SHM_TEST_DIR and SHM_PGBIN); the tests skip without them. Rows
 * use room names "rl<pid>-..." and are removed afterwards. */
#include <hiredis/hiredis.h>
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

/* A get of id through env: rc, and for SHM_ENOTFOUND the text of a level
 * that was asked and said so ("message <id> not found"), not skipped. */
static void assert_get(shm_env *env, const shm_uuid *id, int rc,
                       const shm_msg *want)
{
	char ids[37], text[64];
	shm_msg *got = NULL;
	int r = shm_msg_get(env, id, &got);

	shm_uuid_format(id, ids);
	if (r != rc)
		fail_msg("get of %s: %d, want %d: %s", ids, r, rc, shm_errmsg());
	if (rc == 0) {
		tu_assert_msg_equal(got, want);
		shm_msg_free(got);
	} else if (rc == SHM_ENOTFOUND) {
		snprintf(text, sizeof text, "message %s not found", ids);
		assert_string_equal(shm_errmsg(), text);
	}
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

/* ------------------------------------------------------------- Redis */

/* A connection to the Redis at url (unix:// or redis://127.0.0.1:P). */
static redisContext *rds(const char *url)
{
	redisContext *c = NULL;
	int port;

	if (strncmp(url, "unix://", 7) == 0)
		c = redisConnectUnix(url + 7);
	else if (sscanf(url, "redis://127.0.0.1:%d", &port) == 1)
		c = redisConnect("127.0.0.1", port);
	if (!c || c->err)
		fail_msg("redis %s: %s", url, c ? c->errstr : "out of memory");
	return c;
}

/* The number of clients connected to the Redis at url, this one's
 * included. */
static int redis_clients(const char *url)
{
	redisContext *c = rds(url);
	redisReply *r = redisCommand(c, "CLIENT LIST");
	int n = 0;

	assert_non_null(r);
	assert_int_equal(r->type, REDIS_REPLY_STRING);
	for (const char *p = r->str; (p = strchr(p, '\n')); p++)
		n++;
	freeReplyObject(r);
	redisFree(c);
	return n;
}

/* How a test Redis ends the pooled connection. */
enum redis_end { IDLE_TIMEOUT_UNIX, IDLE_TIMEOUT_TCP, CLIENT_KILL };

/* A message only in Redis (Redis the only level, the record), through a
 * handle whose one pooled connection the server ended: its idle timeout
 * (`--timeout 1`: Redis closes a client idle for more than 1 s), over its
 * unix socket (the next send meets EPIPE) and over TCP (the send goes out,
 * the read meets the end of the connection), or CLIENT KILL TYPE normal.
 * The get is served through a new connection; the next one asks Redis
 * again (not skipped), and no get counts an L2 error. Before, the first
 * get failed, SHM_EL2 ("Redis GET: Broken pipe", "Server closed the
 * connection"), and Redis was skipped for a second. */
static void test_redis_connection_ended_while_idle_is_replaced(void **state)
{
	NEED_SERVERS();
	static const char *const how[] = {"idle timeout, unix socket",
	                                  "idle timeout, TCP", "CLIENT KILL"};

	for (int e = IDLE_TIMEOUT_UNIX; e <= CLIENT_KILL; e++) {
		char *sdir = tu_tmpdir(), url[4200], port[16], s[37], *json;
		const char *unix_args[] = {"--timeout", "1", NULL};
		const char *tcp_args[] = {"--port", port, "--bind", "127.0.0.1",
		                          "--timeout", "1", NULL};
		shm_msg m = tu_msg("r", 7, "only in Redis");
		shm_uuid absent;
		shm_counters c;
		redisContext *r;
		redisReply *rep;

		snprintf(port, sizeof port, "%d", tu_free_port());
		pid_t srv = tu_redis_start(sdir, e == IDLE_TIMEOUT_TCP ? tcp_args
		                           : e == IDLE_TIMEOUT_UNIX ? unix_args
		                                                    : NULL,
		                           url, sizeof url);
		if (e == IDLE_TIMEOUT_TCP)
			snprintf(url, sizeof url, "redis://127.0.0.1:%s", port);
		shm_uuid_v7(&m.id);
		m.created_at = INT64_C(1700000000000000);
		m.content_hash = XXH3_64bits(m.content, m.content_len);
		shm_uuid_format(&m.id, s);
		assert_int_equal(shm_msg_to_json(&m, &json, NULL), 0);
		r = rds(url);
		rep = redisCommand(r, "SET msg:%s %s", s, json);
		assert_non_null(rep);
		freeReplyObject(rep);
		redisFree(r);
		free(json);
		shm_uuid_v7(&absent);

		shm_env *env = open_rt(url, NULL);
		assert_get(env, &absent, SHM_ENOTFOUND, NULL); /* pools one */
		assert_int_equal(redis_clients(url), 2);
		if (e == CLIENT_KILL) {
			r = rds(url);
			rep = redisCommand(r, "CLIENT KILL TYPE normal");
			assert_non_null(rep);
			assert_int_equal(rep->type, REDIS_REPLY_INTEGER);
			assert_int_equal(rep->integer, 1); /* libshm's */
			freeReplyObject(rep);
			redisFree(r);
		} else {
			tu_sleep_ms(2500);
		}
		assert_int_equal(redis_clients(url), 1); /* it is gone */
		assert_get(env, &m.id, 0, &m);
		assert_get(env, &absent, SHM_ENOTFOUND, NULL);
		shm_stats_local(env, &c);
		fprintf(stderr, "%s: l2 hits %llu, misses %llu, errors %llu\n",
		        how[e], (unsigned long long)c.l2_hits,
		        (unsigned long long)c.l2_misses,
		        (unsigned long long)c.l2_errors);
		assert_int_equal(c.l2_hits, 1);
		assert_int_equal(c.l2_misses, 2);
		assert_int_equal(c.l2_errors, 0);
		close_rt(env);
		tu_redis_stop(srv);
		tu_rmdir(sdir);
		free(sdir);
	}
}

/* A Redis that is gone (stopped) while its connection sat in the pool: the
 * get tries one new connection, whose failure is the level's (named with
 * the server), and Redis is skipped right after. */
static void test_redis_gone_fails_the_level_after_one_new_connection(
	void **state)
{
	NEED_SERVERS();
	char *sdir = tu_tmpdir(), url[4200], want[4400];
	shm_uuid absent;
	shm_counters c;
	shm_msg *got;

	pid_t srv = tu_redis_start(sdir, NULL, url, sizeof url);
	shm_uuid_v7(&absent);
	shm_env *env = open_rt(url, NULL);
	assert_get(env, &absent, SHM_ENOTFOUND, NULL);
	tu_redis_stop(srv);
	assert_int_equal(shm_msg_get(env, &absent, &got), SHM_EL2);
	fprintf(stderr, "Redis stopped: %s\n", shm_errmsg());
	snprintf(want, sizeof want, "Redis connection to %s: ",
	         url + strlen("unix://"));
	assert_non_null(strstr(shm_errmsg(), want));
	assert_int_equal(shm_msg_get(env, &absent, &got), SHM_EL2);
	snprintf(want, sizeof want, "Redis at %s skipped: it failed less "
	         "than 1000 ms ago", url + strlen("unix://"));
	assert_non_null(strstr(shm_errmsg(), want));
	shm_stats_local(env, &c);
	assert_int_equal(c.l2_misses, 1);
	assert_int_equal(c.l2_errors, 2);
	close_rt(env);
	tu_rmdir(sdir);
	free(sdir);
}

/* -------------------------------------------------------- PostgreSQL */

/* PostgreSQL only (the record), the pooled backend terminated while idle
 * (pg_terminate_backend, found by the application_name of the handle's
 * conninfo): a get of a message only in PostgreSQL is served through a
 * new connection, the next one asks PostgreSQL again (not skipped), and a
 * room page after another termination is PostgreSQL's; no L3 error is
 * counted. Before, the get failed, SHM_EL3 ("terminating connection due to
 * administrator command"), and PostgreSQL was skipped for a second. */
static void test_postgres_backend_terminated_while_idle_is_replaced(
	void **state)
{
	NEED_SERVERS();
	char room[64], conn[4400], app[48], sql[256];
	PGconn *db = pg();
	shm_msg m = pg_msg(db, "terminated", room, sizeof room);
	shm_uuid absent;
	shm_counters c;
	shm_msg **page;
	size_t n;

	snprintf(app, sizeof app, "%s-pool", prefix);
	snprintf(conn, sizeof conn, "%s application_name=%s", pg_info, app);
	snprintf(sql, sizeof sql, "SELECT count(pg_terminate_backend(pid, "
	         "5000)) FROM pg_stat_activity WHERE application_name = '%s'",
	         app);
	shm_uuid_v7(&absent);
	shm_env *env = open_rt(NULL, conn);
	assert_get(env, &absent, SHM_ENOTFOUND, NULL);
	for (int pass = 0; pass < 2; pass++) {
		PGresult *r = PQexec(db, sql);
		assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
		assert_string_equal(PQgetvalue(r, 0, 0), "1");
		PQclear(r);
		if (pass == 0) {
			assert_get(env, &m.id, 0, &m);
			assert_get(env, &absent, SHM_ENOTFOUND, NULL);
		} else {
			assert_int_equal(shm_room_page(env, room, 0, 10, &page,
			                               &n), 0);
			assert_int_equal(n, 1);
			assert_memory_equal(page[0]->id.b, m.id.b, 16);
			shm_msgs_free(page, n);
		}
	}
	shm_stats_local(env, &c);
	assert_int_equal(c.l3_hits, 1);
	assert_int_equal(c.l3_misses, 2);
	assert_int_equal(c.l3_errors, 0);
	close_rt(env);
	PQfinish(db);
}

/* PostgreSQL's own idle timeout (the session's idle_session_timeout of
 * 500 ms, from the conninfo's options) ends the pooled connection: its
 * backend's FATAL ("terminating connection due to idle-session timeout")
 * waits in the socket. The get after is served through a new connection,
 * and no L3 error is counted. */
static void test_postgres_idle_session_timeout_is_met_with_a_new_connection(
	void **state)
{
	NEED_SERVERS();
	char room[64], conn[4400];
	PGconn *db = pg();
	shm_msg m = pg_msg(db, "idle", room, sizeof room);
	shm_uuid absent;
	shm_counters c;

	PQfinish(db);
	snprintf(conn, sizeof conn, "%s options='-c idle_session_timeout=500'",
	         pg_info);
	shm_uuid_v7(&absent);
	shm_env *env = open_rt(NULL, conn);
	assert_get(env, &absent, SHM_ENOTFOUND, NULL);
	tu_sleep_ms(1000);
	assert_get(env, &m.id, 0, &m);
	shm_stats_local(env, &c);
	assert_int_equal(c.l3_hits, 1);
	assert_int_equal(c.l3_misses, 1);
	assert_int_equal(c.l3_errors, 0);
	close_rt(env);
}

/* PostgreSQL restarted while a connection sat in the pool, fast (its
 * backends end with a FATAL error) and immediate (their last word is a
 * WARNING, "terminating connection due to immediate shutdown command",
 * which libpq's default notice processor printed on stderr): the get
 * after is served through a new connection, the next one asks PostgreSQL
 * again, no L3 error is counted, and nothing reaches stderr. */
static void test_postgres_restart_is_met_with_a_new_connection(void **state)
{
	NEED_SERVERS();
	if (!getenv("SHM_TEST_DIR") || !getenv("SHM_PGBIN")) {
		fprintf(stderr, "SKIP: restarts need the harness (tests/run.sh)\n");
		skip();
	}
	static const char *const mode[] = {"immediate", "fast"};
	char room[64], cmd[64], *err;
	PGconn *db = pg();
	shm_msg m = pg_msg(db, "restart", room, sizeof room);
	shm_uuid absent;
	shm_counters c;

	PQfinish(db);
	shm_uuid_v7(&absent);
	for (int i = 0; i < 2; i++) {
		shm_env *env = open_rt(NULL, pg_info);
		assert_get(env, &absent, SHM_ENOTFOUND, NULL);
		snprintf(cmd, sizeof cmd, "shm_pg_restart %s", mode[i]);
		assert_int_equal(tu_harness(cmd), 0);
		stderr_begin();
		shm_msg *got = NULL;
		int rc = shm_msg_get(env, &m.id, &got);
		err = stderr_end();
		fprintf(stderr, "restart %s: get %d (%s), stderr \"%s\"\n",
		        mode[i], rc, rc ? shm_errmsg() : "served", err);
		assert_int_equal(rc, 0);
		tu_assert_msg_equal(got, &m);
		shm_msg_free(got);
		assert_string_equal(err, "");
		free(err);
		assert_get(env, &absent, SHM_ENOTFOUND, NULL);
		shm_stats_local(env, &c);
		assert_int_equal(c.l3_hits, 1);
		assert_int_equal(c.l3_misses, 2);
		assert_int_equal(c.l3_errors, 0);
		close_rt(env);
	}
}

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

/* Rows of this run removed; stderr back, Redis servers stopped if a
 * failed assertion left them so. */
static int teardown(void **state)
{
	char like[64], sql[128];

	if (stderr_saved >= 0) {
		dup2(stderr_saved, 2);
		close(stderr_saved);
		stderr_saved = -1;
	}
	tu_children_stop(NULL);
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
		cmocka_unit_test_teardown(
			test_redis_connection_ended_while_idle_is_replaced,
			teardown),
		cmocka_unit_test_teardown(
			test_redis_gone_fails_the_level_after_one_new_connection,
			teardown),
		cmocka_unit_test_teardown(
			test_postgres_backend_terminated_while_idle_is_replaced,
			teardown),
		cmocka_unit_test_teardown(
			test_postgres_idle_session_timeout_is_met_with_a_new_connection,
			teardown),
		cmocka_unit_test_teardown(
			test_postgres_restart_is_met_with_a_new_connection,
			teardown),
		cmocka_unit_test_teardown(test_postgres_notices_reach_no_stderr,
		                          teardown),
	};
	return cmocka_run_group_tests(tests, group_setup, NULL);
}
