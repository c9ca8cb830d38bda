/* tests/flusher_test.h - helpers of the flusher's integration tests
 * (test_flusher.c, test_flusher_faults.c): servers from the environment,
 * forked writers and flushers, and checks against Redis and PostgreSQL.
 * Header-only (static functions) so each test binary stays self-contained. */
#ifndef SHM_FLUSHER_TEST_H
#define SHM_FLUSHER_TEST_H

#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <lz4frame.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"
#include "shm_log.h"
#include "../flusher/fl.h"

/* helpers a test binary may not use */
#define FT_FN static __attribute__((unused))

static const char *ft_redis_url, *ft_pg;

/* Skips every test of the group unless both servers are given. */
FT_FN int ft_group_setup(void **state)
{
	ft_redis_url = getenv("SHM_TEST_REDIS");
	ft_pg = getenv("SHM_TEST_PG");
	if (!ft_redis_url || !*ft_redis_url || !ft_pg || !*ft_pg) {
		fprintf(stderr, "SKIP: SHM_TEST_REDIS and SHM_TEST_PG are not "
		        "set (run through tests/run.sh or "
		        "tests/run_integration.sh, which start the servers)\n");
		ft_redis_url = ft_pg = NULL;
	}
	return 0;
}

#define FT_NEED_SERVERS()                                                      \
	do {                                                                   \
		if (!ft_redis_url) {                                           \
			skip();                                                \
			return;                                                \
		}                                                              \
	} while (0)

FT_FN uint64_t ft_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------ servers */

FT_FN PGconn *ft_pg_connect(void)
{
	PGconn *c = PQconnectdb(ft_pg);
	if (PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "pg: %s\n", PQerrorMessage(c));
		PQfinish(c);
		return NULL;
	}
	PQclear(PQexec(c, "SET client_min_messages = warning"));
	return c;
}

/* Deletes the rows of the rooms "<prefix>-..." (a test's own rooms, the
 * prefix holding its pid); nothing without servers. */
FT_FN void ft_pg_delete_rooms(const char *prefix)
{
	if (!ft_pg)
		return;
	PGconn *c = ft_pg_connect();
	char like[64];
	snprintf(like, sizeof like, "%s-%%", prefix);
	const char *p[1] = {like};
	assert_non_null(c);
	PQclear(PQexecParams(c, "DELETE FROM messages WHERE room_id LIKE $1",
	                     1, NULL, p, NULL, NULL, 0));
	PQfinish(c);
}

/* Runs sql; fails the test on error. */
FT_FN void ft_sql(const char *sql)
{
	PGconn *c = ft_pg_connect();
	assert_non_null(c);
	PGresult *r = PQexec(c, sql);
	if (PQresultStatus(r) != PGRES_COMMAND_OK &&
	    PQresultStatus(r) != PGRES_TUPLES_OK)
		fail_msg("%s: %s", sql, PQerrorMessage(c));
	PQclear(r);
	PQfinish(c);
}

/* The single integer a query returns (-1 on error). */
FT_FN long long ft_sql_int(const char *sql)
{
	PGconn *c = ft_pg_connect();
	long long v = -1;
	if (!c)
		return -1;
	PGresult *r = PQexec(c, sql);
	if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
	    !PQgetisnull(r, 0, 0))
		v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	else if (PQresultStatus(r) != PGRES_TUPLES_OK)
		fprintf(stderr, "%s: %s\n", sql, PQerrorMessage(c));
	PQclear(r);
	PQfinish(c);
	return v;
}

FT_FN redisContext *ft_redis(void)
{
	shm_redis_addr a;
	redisContext *c;

	if (shm_redis_url_parse(ft_redis_url, &a))
		fail_msg("%s", shm_errmsg());
	c = a.unix_socket ? redisConnectUnix(a.host)
	                  : redisConnect(a.host, a.port);
	if (!c || c->err) {
		if (c)
			redisFree(c);
		return NULL;
	}
	return c;
}

FT_FN void ft_redis_cmd(const char *cmd)
{
	redisContext *c = ft_redis();
	assert_non_null(c);
	redisReply *r = redisCommand(c, cmd);
	assert_non_null(r);
	freeReplyObject(r);
	redisFree(c);
}

/* GET key, LZ4 frames decoded. *out malloc'd (NULL if absent). */
FT_FN int ft_redis_get(redisContext *c, const char *key, char **out,
                        size_t *len)
{
	redisReply *r = redisCommand(c, "GET %s", key);
	*out = NULL;
	*len = 0;
	if (!r)
		return -1;
	if (r->type == REDIS_REPLY_STRING) {
		const unsigned char *p = (const unsigned char *)r->str;
		if (r->len >= 4 && p[0] == 0x04 && p[1] == 0x22 &&
		    p[2] == 0x4D && p[3] == 0x18) {
			LZ4F_dctx *dc;
			size_t cap = 1 << 20, srcl = r->len, dstl = cap;
			char *dst = malloc(cap);
			LZ4F_createDecompressionContext(&dc, LZ4F_VERSION);
			size_t rc = LZ4F_decompress(dc, dst, &dstl, r->str,
			                            &srcl, NULL);
			LZ4F_freeDecompressionContext(dc);
			if (LZ4F_isError(rc) || rc != 0) {
				free(dst);
				freeReplyObject(r);
				return -2;
			}
			dst[dstl] = 0;
			*out = dst;
			*len = dstl;
		} else {
			*out = malloc(r->len + 1);
			memcpy(*out, r->str, r->len);
			(*out)[r->len] = 0;
			*len = r->len;
		}
	}
	freeReplyObject(r);
	return 0;
}

/* Redis's value of message id (its "msg:" key, LZ4 decoded), malloc'd;
 * NULL if absent. */
FT_FN char *ft_redis_msg(const char *id)
{
	redisContext *c = ft_redis();
	char key[48], *js;
	size_t len;

	assert_non_null(c);
	snprintf(key, sizeof key, "msg:%s", id);
	assert_int_equal(ft_redis_get(c, key, &js, &len), 0);
	redisFree(c);
	return js;
}

/* Redis holds message id, its JSON containing needle: a macro, so that a
 * failure names the caller's line (and shows what Redis holds). */
#define ft_assert_redis_msg_has(id, needle)                                    \
	do {                                                                   \
		char *js_ = ft_redis_msg(id);                                  \
		if (!js_ || !strstr(js_, (needle)))                            \
			fail_msg("Redis msg:%s holds %s, without %s", (id),    \
			         js_ ? js_ : "nothing", (needle));             \
		free(js_);                                                     \
	} while (0)

FT_FN long long ft_redis_int(const char *cmd)
{
	redisContext *c = ft_redis();
	long long v = -1;
	if (!c)
		return -1;
	redisReply *r = redisCommand(c, cmd);
	if (r && r->type == REDIS_REPLY_INTEGER)
		v = r->integer;
	if (r)
		freeReplyObject(r);
	redisFree(c);
	return v;
}

/* Empties PostgreSQL's shm tables and Redis. */
FT_FN void ft_reset_servers(void)
{
	ft_sql("TRUNCATE messages, shm_sink_positions, shm_objects, "
	       "shm_edges, shm_marks");
	ft_redis_cmd("FLUSHALL");
}

/* Counts applications of each message row (an INSERT or an UPDATE): a
 * batch applied twice would show as a count of 2 for ids written once. */
FT_FN void ft_install_apply_counter(void)
{
	ft_sql("CREATE TABLE IF NOT EXISTS test_apply_count (id uuid PRIMARY "
	       "KEY, n integer NOT NULL);"
	       "TRUNCATE test_apply_count;"
	       "CREATE OR REPLACE FUNCTION test_count_apply() RETURNS trigger "
	       "LANGUAGE plpgsql AS $$ BEGIN INSERT INTO test_apply_count "
	       "VALUES (NEW.id, 1) ON CONFLICT (id) DO UPDATE SET n = "
	       "test_apply_count.n + 1; RETURN NEW; END $$;"
	       "DROP TRIGGER IF EXISTS test_count_apply ON messages;"
	       "CREATE TRIGGER test_count_apply AFTER INSERT OR UPDATE ON "
	       "messages FOR EACH ROW EXECUTE FUNCTION test_count_apply()");
}

FT_FN void ft_remove_apply_counter(void)
{
	ft_sql("DROP TRIGGER IF EXISTS test_count_apply ON messages");
}

/* n rows in messages, each applied once (the apply counter installed): a
 * macro, so that a failure names the caller's line. */
#define ft_assert_applied_once(n)                                              \
	do {                                                                   \
		assert_int_equal(ft_sql_int("SELECT count(*) FROM messages"),  \
		                 (n));                                         \
		assert_int_equal(                                              \
			ft_sql_int("SELECT count(*) FROM test_apply_count"),   \
			(n));                                                  \
		assert_int_equal(                                              \
			ft_sql_int("SELECT max(n) FROM test_apply_count"), 1); \
	} while (0)

/* ------------------------------------------------------------ writers */

/* Deterministic message ids: writer w, number i. */
FT_FN shm_uuid ft_id(int w, uint32_t i)
{
	shm_uuid u;
	memset(&u, 0, sizeof u);
	u.b[0] = 0x01;
	u.b[1] = 0x93;
	u.b[6] = 0x70;
	u.b[8] = 0x80;
	u.b[9] = (uint8_t)w;
	u.b[12] = (uint8_t)(i >> 24);
	u.b[13] = (uint8_t)(i >> 16);
	u.b[14] = (uint8_t)(i >> 8);
	u.b[15] = (uint8_t)i;
	return u;
}

typedef struct ft_plan {
	uint32_t n;          /* messages per writer */
	uint32_t edit_every; /* 0: no edits; else every k-th edited twice */
	uint32_t del_every;  /* 0: no deletes; else every k-th deleted */
	uint32_t long_every; /* every k-th message has 3 KB content (LZ4) */
	uint32_t react_every;
	uint32_t reply_every; /* 0: no replies; else (k >= 2) message i with
	                       * i % k == k - 1 replies to ft_reply_parent */
	uint32_t move_every;  /* with lag: 0, or every k-th reply to its own
	                       * writer's message is put again (first, with
	                       * its original content) under the other's */
	uint32_t lag;         /* 0: the edits, reactions and deletes after
	                       * all puts; else those of message i right
	                       * after the put of message i + lag */
} ft_plan;

FT_FN void ft_long_content(char *buf, size_t n, int w, uint32_t i)
{
	size_t off = (size_t)snprintf(buf, n, "long %d/%u:", w, i);
	while (off + 1 < n) {
		buf[off] = (char)('a' + (off * 7 + i) % 26);
		off++;
	}
	buf[n - 1] = 0;
}

/* Retries call while the map is full (the flusher behind), for 30 s. */
#define FT_RETRY_FULL(rc, call)                                                \
	for (int tries_ = 0; ((rc) = (call)) == SHM_EFULL && tries_ < 600;     \
	     tries_++)                                                         \
	tu_sleep_ms(50)

/* Whether plan p soft-deletes message i of its writers. */
FT_FN bool ft_deletes(const ft_plan *p, uint32_t i)
{
	return p->del_every && i % p->del_every == 0;
}

/* Whether plan p puts message i (a reply to its own writer's message)
 * again under the other writer's message (ft_reply_parent). */
FT_FN bool ft_reply_moves(const ft_plan *p, uint32_t i)
{
	uint32_t k = p->reply_every;

	return p->lag && p->move_every && k >= 2 && i % k == k - 1 &&
	       (i / k) % 2 == 0 && (i / k / 2) % p->move_every == 0;
}

/* Whether message i of plan p is a reply; if so, *pw and *pj get its
 * parent: message j (j % reply_every == 0, so no reply itself, and one the
 * plan never deletes) of writer w, or of writer w ^ 1 for every other
 * reply (that writer's message may not be in L1 yet: then it is not
 * counted, shm_msg_put) and, once moved (ft_reply_moves), for the moved
 * ones. The parent is in room j % 7, as the reply. */
FT_FN bool ft_reply_parent(const ft_plan *p, int w, uint32_t i, bool moved,
                           int *pw, uint32_t *pj)
{
	uint32_t k = p->reply_every, j;

	if (k < 2 || i % k != k - 1)
		return false;
	j = i - (k - 1);
	if (ft_deletes(p, j)) {
		if (j < k)
			return false;
		j -= k;
	}
	*pw = (i / k) % 2 || (moved && ft_reply_moves(p, i)) ? w ^ 1 : w;
	*pj = j;
	return true;
}

/* Message i of writer w as plan p first puts it (moved: as it puts it
 * again, ft_reply_moves), its strings in content (3100 bytes) and room
 * (32). */
FT_FN shm_msg ft_msg(const ft_plan *p, int w, uint32_t i, bool moved,
                     char *content, char *room)
{
	shm_msg m;
	int pw;
	uint32_t pj;

	memset(&m, 0, sizeof m);
	if (p->long_every && i % p->long_every == 0)
		ft_long_content(content, 3100, w, i);
	else
		snprintf(content, 3100, "writer %d says \"%u\"\ttab\\slash é",
		         w, i);
	snprintf(room, 32, "room-%u", i % 7);
	m.id = ft_id(w, i);
	m.room_id = room;
	m.user_id = 100 + w;
	m.username = w ? "bob" : "alice";
	m.content = content;
	m.content_len = (uint32_t)strlen(content);
	m.type = SHM_MSG_TEXT;
	if (ft_reply_parent(p, w, i, moved, &pw, &pj)) {
		snprintf(room, 32, "room-%u", pj % 7);
		m.has_parent = m.has_thread = true;
		m.parent_id = m.thread_id = ft_id(pw, pj);
	}
	return m;
}

/* Puts m, waiting out a full map; 0 or the writer's exit status. */
FT_FN int ft_put(shm_env *env, int w, uint32_t i, shm_msg *m)
{
	int rc;

	FT_RETRY_FULL(rc, shm_msg_put(env, m));
	if (rc) {
		fprintf(stderr, "writer %d: put %u: %s\n", w, i, shm_errmsg());
		return 11;
	}
	return 0;
}

/* Edits message i of writer w twice ("edit 1 of w/i", "edit 2 ..."). */
FT_FN int ft_edit_twice(shm_env *env, int w, uint32_t i)
{
	shm_uuid id = ft_id(w, i);
	char content[64];
	int rc;

	for (int k = 1; k <= 2; k++) {
		snprintf(content, sizeof content, "edit %d of %d/%u", k, w, i);
		FT_RETRY_FULL(rc, shm_msg_edit(env, &id, content,
		                               strlen(content)));
		if (rc) {
			fprintf(stderr, "edit: %s\n", shm_errmsg());
			return 12;
		}
	}
	return 0;
}

/* Users 7 and 8 react 👍 to message i of writer w. */
FT_FN int ft_react_twice(shm_env *env, int w, uint32_t i)
{
	shm_uuid id = ft_id(w, i);
	int rc;

	for (int32_t user = 7; user <= 8; user++) {
		FT_RETRY_FULL(rc, shm_msg_react(env, &id, user, "👍", true));
		if (rc)
			return 13;
	}
	return 0;
}

FT_FN int ft_delete(shm_env *env, int w, uint32_t i)
{
	shm_uuid id = ft_id(w, i);
	int rc;

	FT_RETRY_FULL(rc, shm_msg_delete(env, &id));
	if (rc) {
		fprintf(stderr, "delete: %s\n", shm_errmsg());
		return 14;
	}
	return 0;
}

/* What plan p does to message i of writer w after its put (p->lag). */
FT_FN int ft_after_put(shm_env *env, int w, uint32_t i, const ft_plan *p)
{
	char content[3100], room[32];
	int rc = 0;

	if (ft_reply_moves(p, i)) {
		shm_msg m = ft_msg(p, w, i, true, content, room);
		rc = ft_put(env, w, i, &m);
	}
	if (!rc && p->edit_every && i % p->edit_every == 0)
		rc = ft_edit_twice(env, w, i);
	if (!rc && p->react_every && i % p->react_every == 1)
		rc = ft_react_twice(env, w, i);
	if (!rc && ft_deletes(p, i))
		rc = ft_delete(env, w, i);
	return rc;
}

/* The body of a writer process: puts (replies among them), then edits,
 * reactions, deletes; with p->lag, those of each message (and its move)
 * follow its put at once. */
FT_FN int ft_write(const char *dir, int w, const ft_plan *p)
{
	shm_env *env = NULL;
	char content[3100], room[32];
	int rc;

	if ((rc = shm_env_open(dir, NULL, &env)))
		return 10;
	for (uint32_t i = 0; i < p->n; i++) {
		shm_msg m = ft_msg(p, w, i, false, content, room);
		if ((rc = ft_put(env, w, i, &m)))
			goto out;
		if (p->lag && i >= p->lag &&
		    (rc = ft_after_put(env, w, i - p->lag, p)))
			goto out;
	}
	for (uint32_t i = p->n > p->lag ? p->n - p->lag : 0; p->lag && i < p->n;
	     i++)
		if ((rc = ft_after_put(env, w, i, p)))
			goto out;
	for (uint32_t i = 0; !p->lag && p->edit_every && i < p->n;
	     i += p->edit_every)
		if ((rc = ft_edit_twice(env, w, i)))
			goto out;
	for (uint32_t i = 1; !p->lag && p->react_every && i < p->n;
	     i += p->react_every)
		if ((rc = ft_react_twice(env, w, i)))
			goto out;
	for (uint32_t i = 0; !p->lag && p->del_every && i < p->n;
	     i += p->del_every)
		if ((rc = ft_delete(env, w, i)))
			goto out;
out:
	shm_env_close(env);
	return rc;
}

FT_FN pid_t ft_spawn_writer(const char *dir, int w, const ft_plan *p)
{
	pid_t pid = fork();
	if (pid == 0)
		_exit(ft_write(dir, w, p));
	tu_child_add(pid);
	return pid;
}

FT_FN int ft_wait(pid_t pid)
{
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	tu_child_del(pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* ft_write in a child, waited for: its exit status. For a test that holds
 * a handle on dir, which ft_write's own open would be a second one of in
 * this process (shm.h: one open per process, SHM_EBUSY). */
FT_FN int ft_write_in_child(const char *dir, int w, const ft_plan *p)
{
	return ft_wait(ft_spawn_writer(dir, w, p));
}

#define FT_MIB ((size_t)1 << 20)
#define FT_GROWN_CONTENT 30000 /* bytes of a grower's message (no LZ4) */

/* The body of a process that grows the map of dir from had bytes (what
 * the other processes map): for each of the n sizes, opens dir with that
 * map_size and puts messages of FT_GROWN_CONTENT random letters (writer
 * 9's ids) until the pages in use pass the size before, so that every
 * other process's next transaction meets MDB_MAP_RESIZED; pause_ms after
 * each. A full map is waited out as ft_write does. Returns the exit status
 * for the child. */
FT_FN int ft_grow_map(const char *dir, size_t had, const size_t *sizes,
                      int n, unsigned pause_ms)
{
	static char text[FT_GROWN_CONTENT + 1];
	unsigned seed = 7919;
	uint32_t i = 0;

	for (int s = 0; s < n; s++) {
		shm_options o;
		shm_env *env;
		shm_info in;
		int rc;

		shm_options_init(&o);
		o.map_size = sizes[s];
		if (shm_env_open(dir, &o, &env))
			return 10;
		do {
			for (int k = 0; k < FT_GROWN_CONTENT; k++)
				text[k] = (char)('a' + rand_r(&seed) % 26);
			shm_msg m = tu_msg("grown", 9, text);
			m.id = ft_id(9, i++);
			for (int tries = 0;
			     (rc = shm_msg_put(env, &m)) == SHM_EFULL &&
			     tries < 600; tries++)
				tu_sleep_ms(50); /* flusher behind: wait for it */
			if (rc || (rc = shm_env_info(env, &in))) {
				fprintf(stderr, "grower: %s\n", shm_errmsg());
				shm_env_close(env);
				return 11;
			}
		} while (in.map_used <= had);
		fprintf(stderr, "grower: map of %zu MiB, %zu MiB in use after "
		        "%u messages\n", sizes[s] / FT_MIB, in.map_used / FT_MIB,
		        i);
		had = sizes[s];
		shm_env_close(env);
		tu_sleep_ms(pause_ms);
	}
	return 0;
}

/* Per-test teardown: kills and reaps the children a failure left. */
FT_FN int ft_teardown(void **state)
{
	tu_children_stop(NULL);
	return 0;
}

/* ------------------------------------------------------------ flusher */

/* Whether the option name is among the args (NULL-terminated; NULL: none). */
FT_FN bool ft_has_arg(const char *const *args, const char *name)
{
	for (int i = 0; args && args[i]; i++)
		if (!strcmp(args[i], name))
			return true;
	return false;
}

/* Runs fl_main in a child with the servers, dir and extra args (the
 * servers and --backoff-max-ms 500 unless extra gives its own: an option
 * given twice is an error); its log goes to dir.flusher.log. */
FT_FN pid_t ft_spawn_flusher(const char *dir, const char *const *extra)
{
	pid_t pid = fork();
	if (pid == 0) {
		char log[4096];
		const char *argv[40];
		const char *const defaults[][2] = {{"--redis", ft_redis_url},
		                                   {"--pg", ft_pg},
		                                   {"--backoff-max-ms", "500"}};
		int n = 0;
		snprintf(log, sizeof log, "%s.flusher.log", dir);
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd >= 0) {
			dup2(fd, 2);
			close(fd);
		}
		argv[n++] = "shm-flusher";
		argv[n++] = "-e";
		argv[n++] = dir;
		for (int i = 0; i < 3; i++)
			if (!ft_has_arg(extra, defaults[i][0])) {
				argv[n++] = defaults[i][0];
				argv[n++] = defaults[i][1];
			}
		for (int i = 0; extra && extra[i] && n < 38; i++)
			argv[n++] = extra[i];
		argv[n] = NULL;
		_exit(fl_main(n, (char **)argv));
	}
	tu_child_add(pid);
	return pid;
}

/* The number of lines of the flusher log of the environment in dir that
 * have s. */
FT_FN unsigned ft_log_count(const char *dir, const char *s)
{
	char path[4096];

	snprintf(path, sizeof path, "%s.flusher.log", dir);
	return tu_lines_with(path, s);
}

/* Whether the flusher log of the environment in dir has a line with s. */
FT_FN bool ft_log_mentions(const char *dir, const char *s)
{
	return ft_log_count(dir, s) > 0;
}

/* Waits until the flusher log of dir has a line with s (or timeout). */
FT_FN bool ft_log_waits_for(const char *dir, const char *s,
                            unsigned timeout_ms)
{
	uint64_t end = ft_ms() + timeout_ms;
	while (!ft_log_mentions(dir, s) && ft_ms() < end)
		tu_sleep_ms(50);
	return ft_log_mentions(dir, s);
}

/* How many lines of the --log-file at path are "<UTC time> " then line,
 * in fl_log's format ("2026-01-02T03:04:05.678Z INFO pg: ..."). */
FT_FN unsigned ft_log_file_lines(const char *path, const char *line)
{
	char buf[4096];
	unsigned n = 0;
	FILE *f = fopen(path, "r");

	while (f && fgets(buf, sizeof buf, f)) {
		size_t len = strcspn(buf, "\n");
		buf[len] = 0;
		n += len > 25 && buf[4] == '-' && buf[10] == 'T' &&
		     buf[19] == '.' && buf[23] == 'Z' && buf[24] == ' ' &&
		     !strcmp(buf + 25, line);
	}
	if (f)
		fclose(f);
	return n;
}

/* Fails the test if the flusher of dir wrote anything on its stderr
 * (dir.flusher.log, ft_spawn_flusher's), quoting it. */
FT_FN void ft_assert_no_stderr(const char *dir)
{
	char path[4096], buf[2048] = "";
	FILE *f;

	snprintf(path, sizeof path, "%s.flusher.log", dir);
	if ((f = fopen(path, "r"))) {
		size_t n = fread(buf, 1, sizeof buf - 1, f);
		buf[n] = 0;
		fclose(f);
	}
	if (*buf)
		fail_msg("the flusher wrote on its stderr: %s", buf);
}

/* Removes a test environment and its flusher log (kept when a test fails
 * before reaching this). */
FT_FN void ft_rmdir(const char *dir)
{
	char log[4096];
	snprintf(log, sizeof log, "%s.flusher.log", dir);
	unlink(log);
	tu_rmdir(dir);
}

/* Runs the flusher with --once (unless extra has it) to completion;
 * returns its exit code. */
FT_FN int ft_flush_once(const char *dir, const char *const *extra)
{
	const char *args[20] = {"--once"};
	int n = !ft_has_arg(extra, "--once");
	for (int i = 0; extra && extra[i] && n < 19; i++)
		args[n++] = extra[i];
	args[n] = NULL;
	return ft_wait(ft_spawn_flusher(dir, args));
}

FT_FN uint64_t ft_meta(shm_env *env, const char *name)
{
	uint64_t v = 0;
	shm_meta_get(env, name, &v);
	return v;
}

/* Waits until meta name >= target (or timeout); returns the value. */
FT_FN uint64_t ft_wait_meta(shm_env *env, const char *name, uint64_t target,
                             unsigned timeout_ms)
{
	uint64_t end = ft_ms() + timeout_ms, v;
	while ((v = ft_meta(env, name)) < target && ft_ms() < end)
		tu_sleep_ms(20);
	return v;
}

/* Checks every message of writers first..first+writers-1: Redis holds
 * exactly the JSON L1 gives, PostgreSQL the same content, type and metadata
 * (as jsonb). Returns the number of mismatches. */
FT_FN unsigned ft_check_messages(shm_env *env, int first, int writers,
                                 const ft_plan *p)
{
	redisContext *rc = ft_redis();
	PGconn *pg = ft_pg_connect();
	unsigned bad = 0;

	assert_non_null(rc);
	assert_non_null(pg);
	for (int w = first; w < first + writers; w++)
		for (uint32_t i = 0; i < p->n; i++) {
			shm_uuid id = ft_id(w, i);
			shm_msg *m = NULL;
			char ids[37], key[48], *json = NULL, *got = NULL;
			char *meta = NULL;
			size_t jl, gl, ml = 0, mcap = 0;
			shm_uuid_format(&id, ids);
			if (shm_msg_get(env, &id, &m)) {
				if (bad++ < 5)
					fprintf(stderr, "%s: not in L1\n", ids);
				continue;
			}
			assert_int_equal(shm_msg_to_json(m, &json, &jl), 0);
			snprintf(key, sizeof key, "msg:%s", ids);
			ft_redis_get(rc, key, &got, &gl);
			if (!got || gl != jl || memcmp(got, json, jl) != 0) {
				if (bad++ < 5)
					fprintf(stderr, "%s: redis has %s\n"
					        "  expected %s\n", key,
					        got ? got : "(nothing)", json);
			}
			free(got);
			assert_int_equal(shm_msg_metadata_json_append(
				m, &meta, &ml, &mcap), 0);
			const char *params[2] = {ids, meta};
			PGresult *r = PQexecParams(
				pg, "SELECT content, message_type, "
				"metadata = $2::jsonb, metadata::text FROM messages "
				"WHERE id = $1", 2, NULL, params, NULL, NULL, 0);
			if (PQresultStatus(r) != PGRES_TUPLES_OK ||
			    PQntuples(r) != 1 ||
			    strcmp(PQgetvalue(r, 0, 0), m->content) != 0 ||
			    strcmp(PQgetvalue(r, 0, 1),
			           shm_msg_type_name(m->type)) != 0 ||
			    strcmp(PQgetvalue(r, 0, 2), "t") != 0) {
				if (bad++ < 5)
					fprintf(stderr, "%s: postgres row differs "
					        "(%d rows; metadata %s, expected "
					        "%s)\n", ids, PQntuples(r),
					        PQntuples(r) ? PQgetvalue(r, 0, 3)
					                     : "-", meta);
			}
			PQclear(r);
			free(meta);
			free(json);
			shm_msg_free(m);
		}
	redisFree(rc);
	PQfinish(pg);
	return bad;
}

#endif
