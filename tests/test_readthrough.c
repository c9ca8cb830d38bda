/* tests/test_readthrough.c - read-through on an L1 miss: Redis (L2) then
 * PostgreSQL (L3), fills without log records nor overwrites of newer Redis
 * values, per-level timeouts against a dead, mute or trickling Redis, bad
 * values (too large, LZ4 bombs, refused by put) as the level's errors, the
 * last level configured as the record (its failure is the get's error,
 * SHM_EL3 or SHM_EL2, never SHM_ENOTFOUND; a room page it cannot complete
 * is SHM_EL3 and nothing), the reason each failed level leaves in
 * shm_errmsg(), a Redis key of another
 * type replaced by the fill, concurrent gets side by side, room pages from
 * PostgreSQL merged with L1 (rows put would refuse left off), timestamps
 * that round-trip to the
 * microsecond whatever the time zone, and Redis's and PostgreSQL's host
 * names resolved at open, never on the read path.
 *
 * Needs a real redis-server and PostgreSQL (SHM_TEST_REDIS, SHM_TEST_PG, as
 * tests/run.sh provides them); the tests that use them skip without them. A
 * fake Redis in this file stands in for what a real one cannot do on
 * demand (answer slowly, a few bytes at a time). Rows and keys
 * use room names "rt<pid>-..." and fresh UUIDs, and are removed afterwards. */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <limits.h>
#include <lz4frame.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "shm_log.h"
#include "testutil.h"
#include "text.h"

static const char *redis_url, *pg_info;
static char prefix[32];       /* "rt<pid>" */
static shm_uuid keys[512];    /* Redis keys msg:<uuid> to delete */
static size_t n_keys;

/* ------------------------------------------------------------ helpers */

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

#define NEED_SERVERS()                                                         \
	do {                                                                   \
		if (!redis_url) {                                              \
			skip();                                                \
			return;                                                \
		}                                                              \
	} while (0)

static PGconn *pg(void)
{
	PGconn *c = PQconnectdb(pg_info);
	if (PQstatus(c) != CONNECTION_OK)
		fail_msg("pg connect: %s", PQerrorMessage(c));
	PQclear(PQexec(c, "SET client_min_messages = warning"));
	return c;
}

static void pg_exec(PGconn *c, const char *sql, int n, const char *const *p)
{
	PGresult *r = PQexecParams(c, sql, n, NULL, p, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_COMMAND_OK &&
	    PQresultStatus(r) != PGRES_TUPLES_OK)
		fail_msg("%s: %s", sql, PQerrorMessage(c));
	PQclear(r);
}

static redisContext *rds(void)
{
	shm_redis_addr a;
	redisContext *c;
	if (shm_redis_url_parse(redis_url, &a))
		fail_msg("%s", shm_errmsg());
	c = a.unix_socket ? redisConnectUnix(a.host)
	                  : redisConnect(a.host, a.port);
	if (!c || c->err)
		fail_msg("redis connect %s: %s", redis_url,
		         c ? c->errstr : "out of memory");
	return c;
}

static void track(const shm_uuid *id)
{
	if (n_keys < sizeof keys / sizeof keys[0])
		keys[n_keys++] = *id;
}

/* SET msg:<id> value (raw bytes). */
static void redis_set(const shm_uuid *id, const void *val, size_t len)
{
	char s[37];
	redisContext *c = rds();
	shm_uuid_format(id, s);
	track(id);
	redisReply *r = redisCommand(c, "SET msg:%s %b EX 600", s, val, len);
	assert_non_null(r);
	assert_int_equal(r->type, REDIS_REPLY_STATUS);
	freeReplyObject(r);
	redisFree(c);
}

/* GET msg:<id>: malloc'd raw value (NULL if absent), *ttl its TTL. */
static char *redis_get(const shm_uuid *id, size_t *len, long long *ttl)
{
	char s[37], *out = NULL;
	redisContext *c = rds();
	shm_uuid_format(id, s);
	redisReply *r = redisCommand(c, "GET msg:%s", s);
	assert_non_null(r);
	if (r->type == REDIS_REPLY_STRING) {
		out = malloc(r->len + 1);
		memcpy(out, r->str, r->len);
		out[r->len] = 0;
		*len = r->len;
	}
	freeReplyObject(r);
	r = redisCommand(c, "TTL msg:%s", s);
	assert_non_null(r);
	*ttl = r->integer;
	freeReplyObject(r);
	redisFree(c);
	return out;
}

static bool is_lz4(const void *v, size_t len)
{
	static const uint8_t magic[4] = {0x04, 0x22, 0x4d, 0x18};
	return len >= 4 && memcmp(v, magic, 4) == 0;
}

static void *lz4(const char *src, size_t len, size_t *out_len)
{
	size_t bound = LZ4F_compressFrameBound(len, NULL);
	void *z = malloc(bound);
	size_t n = LZ4F_compressFrame(z, bound, src, len, NULL);
	assert_false(LZ4F_isError(n));
	*out_len = n;
	return z;
}

static char *unlz4(const void *src, size_t len, size_t *out_len)
{
	LZ4F_dctx *d;
	size_t cap = 1 << 20, dst = cap, sl = len;
	char *out = malloc(cap + 1);
	assert_false(LZ4F_isError(LZ4F_createDecompressionContext(&d, LZ4F_VERSION)));
	size_t r = LZ4F_decompress(d, out, &dst, src, &sl, NULL);
	assert_int_equal(r, 0);
	LZ4F_freeDecompressionContext(d);
	out[dst] = 0;
	*out_len = dst;
	return out;
}

/* m as a row (tu_pg_put), its Redis key tracked for cleanup. */
static void pg_put(PGconn *c, const shm_msg *m)
{
	tu_pg_put(c, m);
	track(&m->id);
}

/* The page of env equals PostgreSQL's for the same query, id for id. */
static void assert_page_is_pg(shm_env *env, PGconn *c, const char *room,
                              int64_t before, uint32_t limit)
{
	shm_uuid want[256];
	shm_msg **page;
	size_t n, nw = tu_pg_page(c, room, before, limit, want);
	char a[37], b[37];

	assert_int_equal(shm_room_page(env, room, before, limit, &page, &n), 0);
	if (n != nw)
		fail_msg("room %s before %" PRId64 " limit %u: %zu messages, "
		         "PostgreSQL has %zu", room, before, limit, n, nw);
	for (size_t i = 0; i < n; i++) {
		shm_uuid_format(&page[i]->id, a);
		shm_uuid_format(&want[i], b);
		if (strcmp(a, b))
			fail_msg("room %s before %" PRId64 " limit %u: [%zu] is "
			         "%s, PostgreSQL says %s", room, before, limit,
			         i, a, b);
	}
	shm_msgs_free(page, n);
}

static void cleanup(void)
{
	if (!redis_url)
		return;
	PGconn *c = pg();
	char like[64];
	snprintf(like, sizeof like, "%s-%%", prefix);
	const char *p[1] = {like};
	pg_exec(c, "DELETE FROM messages WHERE room_id LIKE $1", 1, p);
	PQfinish(c);
	redisContext *r = rds();
	for (size_t i = 0; i < n_keys; i++) {
		char s[37];
		shm_uuid_format(&keys[i], s);
		freeReplyObject(redisCommand(r, "DEL msg:%s", s));
	}
	redisFree(r);
	n_keys = 0;
}

static void room_name(char *out, size_t len, const char *what)
{
	snprintf(out, len, "%s-%s", prefix, what);
}

/* A message with every field set. Strings must outlive it: static data. */
static const int32_t rx_ok[] = {7, 3}, rx_heart[] = {9}, rx_party[] = {1, 2, 5};
static const shm_reaction rx[] = {
	{"ok", rx_ok, 2}, {"\xe2\x9d\xa4\xef\xb8\x8f", rx_heart, 1},
	{"\xf0\x9f\x8e\x89", rx_party, 3}};
static const int32_t mentions[] = {42, 7};
static shm_attachment att_pool[64]; /* one per full_msg */
static size_t att_next;

static shm_msg full_msg(const char *room, int64_t created, const char *content)
{
	shm_msg m;
	memset(&m, 0, sizeof m);
	shm_uuid_v7(&m.id);
	m.room_id = room;
	m.user_id = 1234;
	m.username = "Ad\xc3\xa1 \"L\" \\ love";
	m.content = content;
	m.content_len = (uint32_t)strlen(content);
	m.type = SHM_MSG_IMAGE;
	m.created_at = created;
	m.updated_at = created + 1234567;
	m.edited = true;
	m.edit_count = 2;
	m.reactions = rx;
	m.n_reactions = 3;
	m.mentions = mentions;
	m.n_mentions = 2;
	shm_attachment *att = &att_pool[att_next++ % 64];
	shm_uuid_v7(&att[0].id);
	att[0].filename = "photo \xc3\xa9t\xc3\xa9.jpg";
	att[0].content_type = "image/jpeg";
	att[0].size = 123456789012ull;
	att[0].url = "https://example.org/a?b=c&d=e";
	m.attachments = att;
	m.n_attachments = 1;
	m.reply_count = 3;
	m.last_reply_at = created + 99;
	m.content_hash = XXH3_64bits(content, m.content_len);
	m.has_parent = true;
	shm_uuid_v7(&m.parent_id);
	m.has_thread = true;
	shm_uuid_v7(&m.thread_id);
	return m;
}

/* A plain Text message at a given time (for pages). */
static shm_msg plain_msg(const char *room, int64_t created, const char *content)
{
	shm_msg m = tu_msg(room, 5, content);
	shm_uuid_v7(&m.id);
	m.created_at = created;
	m.content_hash = XXH3_64bits(content, m.content_len);
	return m;
}

static char *dir;

static shm_env *open_rt(const char *redis, const char *pgc, uint32_t l2_ms,
                        uint64_t max_entries)
{
	shm_options o;
	shm_options_init(&o);
	o.redis_url = redis;
	o.pg_conninfo = pgc;
	o.l2_timeout_ms = l2_ms;
	/* generous: a first connection to a loaded CI's PostgreSQL may take
	 * more than the 50 ms default */
	o.l3_timeout_ms = 2000;
	if (max_entries)
		o.l1_max_entries = max_entries;
	dir = tu_tmpdir();
	return tu_open(dir, &o);
}

static void close_rt(shm_env *env)
{
	assert_int_equal(tu_verify(env), 0);
	shm_env_close(env);
	tu_rmdir(dir);
	free(dir);
	dir = NULL;
}

static uint64_t log_records(shm_env *env)
{
	shm_info in;
	assert_int_equal(shm_env_info(env, &in), 0);
	return in.log_records;
}

static char *big_content(size_t n)
{
	char *s = malloc(n + 1);
	for (size_t i = 0; i < n; i++)
		s[i] = "lorem ipsum dolor sit amet, "[i % 28];
	s[n] = 0;
	return s;
}

/* -------------------------------------------------------------- tests */

static void test_message_only_in_redis(void **state)
{
	NEED_SERVERS();
	char room[64], *json, *big = big_content(5000);
	size_t len, zlen;
	shm_msg m[2], *got;
	shm_counters c;

	room_name(room, sizeof room, "l2");
	m[0] = full_msg(room, INT64_C(1700000000123456), "h\xc3\xa9llo \"w\"\n");
	m[1] = full_msg(room, INT64_C(1700000001000001), big);
	assert_int_equal(shm_msg_to_json(&m[0], &json, &len), 0);
	redis_set(&m[0].id, json, len);
	free(json);
	assert_int_equal(shm_msg_to_json(&m[1], &json, &len), 0);
	void *z = lz4(json, len, &zlen);
	assert_true(zlen < len);
	redis_set(&m[1].id, z, zlen); /* as the flusher stores it: LZ4 frame */
	free(z);
	free(json);

	shm_env *env = open_rt(redis_url, pg_info, 50, 0);
	uint64_t recs = log_records(env);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(shm_msg_get(env, &m[i].id, &got), 0);
		tu_assert_msg_equal(got, &m[i]);
		shm_msg_free(got);
	}
	shm_stats_local(env, &c);
	assert_int_equal(c.l1_misses, 2);
	assert_int_equal(c.l2_hits, 2);
	assert_int_equal(c.l3_hits + c.l3_misses + c.l2_misses, 0);
	assert_int_equal(c.fills, 2);
	/* filled into L1: the second get is an L1 hit, even without Redis */
	redisContext *r = rds();
	for (int i = 0; i < 2; i++) {
		char s[37];
		shm_uuid_format(&m[i].id, s);
		freeReplyObject(redisCommand(r, "DEL msg:%s", s));
	}
	redisFree(r);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(shm_msg_get(env, &m[i].id, &got), 0);
		tu_assert_msg_equal(got, &m[i]);
		shm_msg_free(got);
	}
	shm_stats_local(env, &c);
	assert_int_equal(c.l1_hits, 2);
	assert_int_equal(c.l2_hits, 2);
	/* a fill is not a write: no log record, nothing for the flusher */
	assert_int_equal(log_records(env), recs);
	assert_int_equal(tu_log_count(env), 0);
	close_rt(env);
	free(big);
	cleanup();
}

/* redis_url with an ACL user and password: read-through AUTHs; a wrong
 * password is a Redis error, not a hit, and the get goes on without it. */
static void test_redis_user_and_password_in_the_url(void **state)
{
	NEED_SERVERS();
	char room[64], user[48], url[1200], *json;
	size_t len;
	shm_msg m, *got;
	shm_counters c;

	room_name(room, sizeof room, "acl");
	m = full_msg(room, INT64_C(1700000002000000), "behind a password");
	assert_int_equal(shm_msg_to_json(&m, &json, &len), 0);
	redis_set(&m.id, json, len);
	free(json);
	snprintf(user, sizeof user, "%s-reader", prefix);
	redisContext *r = rds();
	redisReply *rep = redisCommand(r, "ACL SETUSER %s on >s3cr@t ~msg:* "
	                                  "+get +select", user);
	assert_non_null(rep);
	assert_int_equal(rep->type, REDIS_REPLY_STATUS);
	freeReplyObject(rep);

	for (int wrong = 0; wrong <= 1; wrong++) {
		tu_redis_url_with_auth(redis_url, user,
		                       wrong ? "nope" : "s3cr@t", url,
		                       sizeof url);
		shm_env *env = open_rt(url, NULL, 200, 0);
		int rc = shm_msg_get(env, &m.id, &got);
		shm_stats_local(env, &c);
		if (!wrong) {
			assert_int_equal(rc, 0);
			tu_assert_msg_equal(got, &m);
			shm_msg_free(got);
			assert_int_equal(c.l2_hits, 1);
		} else { /* Redis is the record: it could not say */
			assert_int_equal(rc, SHM_EL2);
			assert_int_equal(c.l2_hits, 0);
			assert_true(c.l2_errors >= 1);
		}
		close_rt(env);
	}
	freeReplyObject(redisCommand(r, "ACL DELUSER %s", user));
	redisFree(r);
	cleanup();
}

static void test_message_only_in_postgres_fills_l1_and_redis(void **state)
{
	NEED_SERVERS();
	char room[64], *big = big_content(3000);
	shm_msg m[2], *got;
	shm_counters c;
	PGconn *db = pg();

	room_name(room, sizeof room, "l3");
	m[0] = full_msg(room, INT64_C(1700000002000007), "only in \xf0\x9f\x90\x98");
	m[1] = full_msg(room, INT64_C(1700000003999999), big);
	m[1].has_parent = m[1].has_thread = false;
	m[1].updated_at = m[1].last_reply_at = 0;
	m[1].n_attachments = m[1].n_reactions = m[1].n_mentions = 0;
	m[1].edited = false;
	m[1].edit_count = m[1].reply_count = 0;
	for (int i = 0; i < 2; i++)
		pg_put(db, &m[i]);

	shm_env *env = open_rt(redis_url, pg_info, 50, 0);
	uint64_t recs = log_records(env);
	for (int i = 0; i < 2; i++) {
		size_t len;
		long long ttl;
		char *v = redis_get(&m[i].id, &len, &ttl);
		assert_null(v); /* not in Redis before */
		assert_int_equal(shm_msg_get(env, &m[i].id, &got), 0);
		tu_assert_msg_equal(got, &m[i]);
		shm_msg_free(got);
	}
	shm_stats_local(env, &c);
	assert_int_equal(c.l2_misses, 2);
	assert_int_equal(c.l3_hits, 2);
	assert_int_equal(c.fills, 2);
	assert_int_equal(c.l2_errors + c.l3_errors, 0);

	/* Redis now holds the seed's JSON, LZ4 above the threshold, with the
	 * L2 TTL: exactly what the flusher would have written */
	for (int i = 0; i < 2; i++) {
		size_t len, jlen;
		long long ttl;
		char *v = redis_get(&m[i].id, &len, &ttl), *want;
		assert_non_null(v);
		assert_true(ttl > 3500 && ttl <= 3600);
		assert_int_equal(is_lz4(v, len), i == 1);
		if (is_lz4(v, len)) {
			char *d = unlz4(v, len, &len);
			free(v);
			v = d;
		}
		assert_int_equal(shm_msg_to_json(&m[i], &want, &jlen), 0);
		assert_string_equal(v, want);
		free(want);
		free(v);
	}

	/* L1 answers now, PostgreSQL is not asked again */
	for (int i = 0; i < 2; i++) {
		assert_int_equal(shm_msg_get(env, &m[i].id, &got), 0);
		tu_assert_msg_equal(got, &m[i]);
		shm_msg_free(got);
	}
	shm_stats_local(env, &c);
	assert_int_equal(c.l1_hits, 2);
	assert_int_equal(c.l3_hits, 2);
	assert_int_equal(log_records(env), recs);
	assert_int_equal(tu_log_count(env), 0);
	PQfinish(db);
	close_rt(env);
	free(big);
	cleanup();
}

/* The application_name of the PostgreSQL connection a handle on conninfo
 * makes to get m: in pg_stat_activity, the one client backend that began
 * after the handle was opened. malloc'd. */
static char *read_through_app_name(const char *conninfo, const shm_msg *m)
{
	PGconn *db = pg();
	PGresult *r = PQexec(db, "SELECT clock_timestamp()");
	char since[64], *name;
	shm_msg *got = NULL;

	assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
	snprintf(since, sizeof since, "%s", PQgetvalue(r, 0, 0));
	PQclear(r);
	shm_env *env = open_rt(NULL, conninfo, 50, 0);
	assert_int_equal(shm_msg_get(env, &m->id, &got), 0);
	shm_msg_free(got);
	const char *p[1] = {since};
	r = PQexecParams(db, "SELECT application_name FROM pg_stat_activity "
	                 "WHERE backend_type = 'client backend' AND "
	                 "backend_start > $1 AND pid <> pg_backend_pid()", 1,
	                 NULL, p, NULL, NULL, 0);
	assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
	assert_int_equal(PQntuples(r), 1);
	name = strdup(PQgetvalue(r, 0, 0));
	PQclear(r);
	close_rt(env);
	PQfinish(db);
	return name;
}

/* The read-through's PostgreSQL connections say what they are in
 * pg_stat_activity: "shm-readthrough" (libpq's
 * fallback_application_name); the conninfo's own application_name, or
 * else PGAPPNAME, wins over it. Before, they had none (''). */
static void test_postgres_connections_are_named_shm_readthrough(void **state)
{
	NEED_SERVERS();
	char room[64], own[64], conn[4400], *name;
	PGconn *db = pg();

	room_name(room, sizeof room, "appname");
	shm_msg m = plain_msg(room, INT64_C(1700000002000000), "named");
	pg_put(db, &m);
	PQfinish(db);

	name = read_through_app_name(pg_info, &m);
	assert_string_equal(name, "shm-readthrough");
	free(name);

	snprintf(own, sizeof own, "%s-conninfo", prefix);
	snprintf(conn, sizeof conn, "%s application_name=%s", pg_info, own);
	name = read_through_app_name(conn, &m);
	assert_string_equal(name, own);
	free(name);

	snprintf(own, sizeof own, "%s-pgappname", prefix);
	setenv("PGAPPNAME", own, 1);
	name = read_through_app_name(pg_info, &m);
	unsetenv("PGAPPNAME");
	assert_string_equal(name, own);
	free(name);
	cleanup();
}

/* A command (hiredis's format) on the redis-server at url
 * (tu_redis_start's unix://): its reply, for the caller to free. */
static redisReply *own_vcmd(const char *url, const char *fmt, va_list ap)
{
	redisContext *c = redisConnectUnix(url + strlen("unix://"));
	redisReply *r;

	if (!c || c->err)
		fail_msg("redis connect %s: %s", url,
		         c ? c->errstr : "out of memory");
	assert_non_null(r = redisvCommand(c, fmt, ap));
	redisFree(c);
	return r;
}

static redisReply *own_cmd(const char *url, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	redisReply *r = own_vcmd(url, fmt, ap);
	va_end(ap);
	return r;
}

/* own_cmd of a command whose reply is a status (OK). */
static void own_ok(const char *url, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	redisReply *r = own_vcmd(url, fmt, ap);
	va_end(ap);
	if (r->type != REDIS_REPLY_STATUS)
		fail_msg("%s: %s", fmt, r->type == REDIS_REPLY_ERROR
		                                ? r->str : "not a status reply");
	freeReplyObject(r);
}

/* Whether the Redis at url holds msg:<id>. */
static bool own_has(const char *url, const shm_uuid *id)
{
	char s[37];

	shm_uuid_format(id, s);
	redisReply *r = own_cmd(url, "EXISTS msg:%s", s);
	bool has = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
	freeReplyObject(r);
	return has;
}

/*
 * After a PostgreSQL hit, a fill Redis refuses is counted in l2_errors: a
 * replica's READONLY (REPLICAOF a second redis-server), a full Redis's
 * OOM (maxmemory 1, noeviction). The get is served from PostgreSQL all
 * the same, and fills L1; Redis is not skipped for it; a fill Redis takes
 * counts nothing. Before, a refused fill was dropped unseen: l2_errors
 * stayed 0 while Redis never got a copy.
 */
static void test_fill_redis_refuses_is_counted_in_l2_errors(void **state)
{
	NEED_SERVERS();
	char room[64], *pdir = tu_tmpdir(), *rdir = tu_tmpdir();
	char purl[4200], url[4200], port[16];
	PGconn *db = pg();
	shm_msg m[3], *got;
	shm_counters c;

	snprintf(port, sizeof port, "%d", tu_free_port());
	const char *const pargs[] = {"--port", port, "--bind", "127.0.0.1",
	                             NULL};
	pid_t primary = tu_redis_start(pdir, pargs, purl, sizeof purl);
	pid_t replica = tu_redis_start(rdir, NULL, url, sizeof url);
	own_ok(url, "REPLICAOF 127.0.0.1 %s", port);
	for (int i = 0;; i++) { /* synced: a loading replica answers LOADING */
		redisReply *r = own_cmd(url, "INFO replication");
		bool up = r->type == REDIS_REPLY_STRING &&
		          strstr(r->str, "master_link_status:up");
		freeReplyObject(r);
		if (up)
			break;
		if (i == 200)
			fail_msg("the replica did not sync with its primary");
		tu_sleep_ms(50);
	}
	room_name(room, sizeof room, "fill-refused");
	for (int i = 0; i < 3; i++) {
		m[i] = plain_msg(room, INT64_C(1700000004000000) + i, "fill");
		pg_put(db, &m[i]);
	}
	PQfinish(db);
	shm_env *env = open_rt(url, pg_info, 500, 0);

	/* READONLY You can't write against a read only replica. */
	assert_int_equal(shm_msg_get(env, &m[0].id, &got), 0);
	tu_assert_msg_equal(got, &m[0]);
	shm_msg_free(got);
	shm_stats_local(env, &c);
	assert_int_equal(c.l2_misses, 1);
	assert_int_equal(c.l3_hits, 1);
	assert_int_equal(c.fills, 1);
	assert_int_equal(c.l2_errors, 1);
	assert_false(own_has(url, &m[0].id));

	/* a primary again, full: OOM command not allowed when used memory >
	 * 'maxmemory'. */
	own_ok(url, "REPLICAOF NO ONE");
	own_ok(url, "CONFIG SET maxmemory-policy noeviction");
	own_ok(url, "CONFIG SET maxmemory 1");
	assert_int_equal(shm_msg_get(env, &m[1].id, &got), 0);
	tu_assert_msg_equal(got, &m[1]);
	shm_msg_free(got);
	shm_stats_local(env, &c);
	assert_int_equal(c.l2_misses, 2); /* Redis was asked: not skipped */
	assert_int_equal(c.l3_hits, 2);
	assert_int_equal(c.fills, 2);
	assert_int_equal(c.l2_errors, 2);
	assert_false(own_has(url, &m[1].id));

	/* room again: the fill is taken, nothing counted */
	own_ok(url, "CONFIG SET maxmemory 0");
	assert_int_equal(shm_msg_get(env, &m[2].id, &got), 0);
	tu_assert_msg_equal(got, &m[2]);
	shm_msg_free(got);
	shm_stats_local(env, &c);
	assert_int_equal(c.l3_hits, 3);
	assert_int_equal(c.l2_errors, 2);
	assert_true(own_has(url, &m[2].id));

	close_rt(env);
	tu_redis_stop(replica);
	tu_redis_stop(primary);
	tu_rmdir(rdir);
	tu_rmdir(pdir);
	free(rdir);
	free(pdir);
	cleanup();
}

static void test_message_nowhere(void **state)
{
	NEED_SERVERS();
	shm_uuid id;
	shm_msg *got = (shm_msg *)1;
	shm_counters c;

	shm_uuid_v7(&id);
	shm_env *env = open_rt(redis_url, pg_info, 50, 0);
	assert_int_equal(shm_msg_get(env, &id, &got), SHM_ENOTFOUND);
	shm_stats_local(env, &c);
	assert_int_equal(c.l1_misses, 1);
	assert_int_equal(c.l2_misses, 1);
	assert_int_equal(c.l3_misses, 1);
	assert_int_equal(c.l2_hits + c.l3_hits + c.fills, 0);
	assert_int_equal(c.l2_errors + c.l3_errors, 0);
	assert_int_equal(log_records(env), 0);
	close_rt(env);
}

/* The fork rule: a child that closes the handle it inherited closes its
 * own copies of the connections, without a word to the servers: libpq's
 * goodbye on the socket it shares with the parent ended the parent's
 * PostgreSQL session ("server closed the connection unexpectedly"). */
static void test_close_in_a_forked_child_keeps_the_parents_connections(
	void **state)
{
	NEED_SERVERS();
	shm_uuid id;
	shm_msg *got;
	shm_counters c;
	int status;
	pid_t pid;

	shm_env *env = open_rt(redis_url, pg_info, 2000, 0);
	shm_uuid_v7(&id);
	assert_int_equal(shm_msg_get(env, &id, &got), SHM_ENOTFOUND);
	if ((pid = fork()) == 0) {
		shm_env_close(env);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	shm_uuid_v7(&id);
	assert_int_equal(shm_msg_get(env, &id, &got), SHM_ENOTFOUND);
	shm_stats_local(env, &c);
	if (c.l2_errors + c.l3_errors)
		fail_msg("%s", shm_errmsg());
	assert_int_equal(c.l3_misses, 2);
	close_rt(env);
}

/* Redis msg:A holding B's JSON is bad data: counted as an L2 error, never
 * served nor filled into L1; PostgreSQL is asked (and fixes the key). */
static void test_redis_value_of_another_message_is_a_miss(void **state)
{
	NEED_SERVERS();
	char room[64], *json;
	size_t len;
	shm_msg a, b, c, *got = NULL;
	shm_counters k;
	const shm_msg *v;
	shm_rtxn *t;
	PGconn *db = pg();

	room_name(room, sizeof room, "wrongid");
	a = full_msg(room, INT64_C(1700000005000000), "I am A");
	b = full_msg(room, INT64_C(1700000006000000), "I am B");
	c = full_msg(room, INT64_C(1700000007000000), "I am C");
	assert_int_equal(shm_msg_to_json(&b, &json, &len), 0);
	redis_set(&a.id, json, len); /* A's key, B's value: A is in L3 */
	redis_set(&c.id, json, len); /* C's key, B's value: C is nowhere */
	free(json);
	pg_put(db, &a);

	shm_env *env = open_rt(redis_url, pg_info, 50, 0);
	assert_int_equal(shm_msg_get(env, &a.id, &got), 0);
	tu_assert_msg_equal(got, &a);
	shm_msg_free(got);
	assert_int_equal(shm_msg_get(env, &c.id, &got), SHM_ENOTFOUND);
	shm_stats_local(env, &k);
	assert_int_equal(k.l2_errors, 2);
	assert_int_equal(k.l2_hits, 0);
	assert_int_equal(k.l3_hits, 1);
	assert_int_equal(k.l3_misses, 1);
	assert_int_equal(k.fills, 1); /* A alone */
	assert_int_equal(shm_rtxn_begin(env, &t), 0);
	assert_int_equal(shm_msg_view(t, &b.id, &v), SHM_ENOTFOUND);
	assert_int_equal(shm_msg_view(t, &c.id, &v), SHM_ENOTFOUND);
	assert_int_equal(shm_msg_view(t, &a.id, &v), 0);
	tu_assert_msg_equal(v, &a);
	shm_rtxn_end(t);
	/* the L3 hit wrote A's own JSON over msg:A */
	long long ttl;
	char *val = redis_get(&a.id, &len, &ttl), *want;
	assert_int_equal(shm_msg_to_json(&a, &want, NULL), 0);
	assert_string_equal(val, want);
	free(want);
	free(val);
	PQfinish(db);
	close_rt(env);
	cleanup();
}

/* msg:<id> holding a list fails GET (WRONGTYPE): an L2 error, PostgreSQL
 * answers, and its fill replaces the key, which cannot be a newer value
 * (the flusher writes strings): the next get from a fresh L1 is Redis's. */
static void test_redis_key_of_another_type_is_replaced(void **state)
{
	NEED_SERVERS();
	char room[64], s[37], *val, *want;
	size_t len;
	long long ttl;
	shm_msg m, *got;
	shm_counters c;
	PGconn *db = pg();
	redisContext *r = rds();
	redisReply *rep;

	room_name(room, sizeof room, "wrongtype");
	m = full_msg(room, INT64_C(1700000008000000), "under a list");
	pg_put(db, &m);
	shm_uuid_format(&m.id, s);
	rep = redisCommand(r, "LPUSH msg:%s x", s);
	assert_non_null(rep);
	assert_int_equal(rep->type, REDIS_REPLY_INTEGER);
	freeReplyObject(rep);

	shm_env *env = open_rt(redis_url, pg_info, 50, 0);
	assert_int_equal(shm_msg_get(env, &m.id, &got), 0);
	tu_assert_msg_equal(got, &m);
	shm_msg_free(got);
	shm_stats_local(env, &c);
	assert_int_equal(c.l2_errors, 1);
	assert_int_equal(c.l3_hits, 1);
	close_rt(env);

	rep = redisCommand(r, "TYPE msg:%s", s);
	assert_non_null(rep);
	assert_string_equal(rep->str, "string");
	freeReplyObject(rep);
	val = redis_get(&m.id, &len, &ttl);
	assert_non_null(val);
	assert_true(ttl > 3500 && ttl <= 3600);
	assert_int_equal(shm_msg_to_json(&m, &want, NULL), 0);
	assert_string_equal(val, want);
	free(want);
	free(val);

	env = open_rt(redis_url, pg_info, 50, 0);
	assert_int_equal(shm_msg_get(env, &m.id, &got), 0);
	tu_assert_msg_equal(got, &m);
	shm_msg_free(got);
	shm_stats_local(env, &c);
	assert_int_equal(c.l2_hits, 1);
	assert_int_equal(c.l2_errors, 0);
	assert_int_equal(c.l3_hits + c.l3_misses + c.l3_errors, 0);
	close_rt(env);
	redisFree(r);
	PQfinish(db);
	cleanup();
}

/* A unix socket that listens and never accepts: connect succeeds (the
 * kernel queues it), every command waits for a reply forever. */
static int mute_socket(const char *path)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
	assert_int_equal(listen(fd, 16), 0);
	return fd;
}

/* Time of one get of a PostgreSQL-only message through a fresh env. */
static uint64_t timed_l3_get(const char *redis, uint32_t l2_ms,
                             const shm_msg *m, shm_counters *c)
{
	shm_msg *got;
	shm_env *env = open_rt(redis, pg_info, l2_ms, 0);
	uint64_t t0 = now_ms();
	assert_int_equal(shm_msg_get(env, &m->id, &got), 0);
	uint64_t dt = now_ms() - t0;
	tu_assert_msg_equal(got, m);
	shm_msg_free(got);
	shm_stats_local(env, c);
	close_rt(env);
	return dt;
}

/* ------------------------------------------------- a fake Redis server */

/* A Redis stand-in on a unix socket, for the faults a real server cannot
 * show on demand: every command is answered after delay_ms, GET with value
 * (NULL: nil), anything else with +OK; the answer goes out chunk bytes at a
 * time, chunk_ms apart (chunk 0: at once). One thread per connection; a
 * connection ends when the client closes it, or once it answered
 * close_after commands (0: never), as a restarted Redis or its idle
 * timeout ends one, or with hang_up at its first command, unanswered. */
typedef struct fake_redis fake_redis;
struct fake_conn {
	fake_redis *f;
	int fd;
	pthread_t t;
};
struct fake_redis {
	uint32_t delay_ms, chunk_ms, close_after;
	bool hang_up;
	size_t chunk;
	const char *value;
	int fd;
	pthread_t acceptor;
	struct fake_conn conns[32];
	int n_conns;
	char url[4200];
};

static bool send_paced(const fake_redis *f, int fd, const char *p, size_t n)
{
	while (n) {
		size_t k = f->chunk && f->chunk < n ? f->chunk : n;
		ssize_t w = send(fd, p, k, MSG_NOSIGNAL);
		if (w <= 0)
			return false;
		p += w;
		n -= (size_t)w;
		if (n && f->chunk_ms)
			tu_sleep_ms(f->chunk_ms);
	}
	return true;
}

static bool is_get(const redisReply *cmd)
{
	return cmd->type == REDIS_REPLY_ARRAY && cmd->elements &&
	       cmd->element[0]->type == REDIS_REPLY_STRING &&
	       strcasecmp(cmd->element[0]->str, "GET") == 0;
}

/* One answer per command: the reader cuts the byte stream into them. */
static void *fake_serve(void *arg)
{
	struct fake_conn *c = arg;
	const fake_redis *f = c->f;
	redisReader *r = redisReaderCreate();
	char buf[4096], head[32];
	uint32_t answered = 0;
	void *cmd;
	ssize_t n;

	while ((n = recv(c->fd, buf, sizeof buf, 0)) > 0) {
		redisReaderFeed(r, buf, (size_t)n);
		while (redisReaderGetReply(r, &cmd) == REDIS_OK && cmd) {
			bool get = is_get(cmd);
			freeReplyObject(cmd);
			if (f->hang_up)
				goto out;
			tu_sleep_ms(f->delay_ms);
			if (!get || !f->value) {
				if (!send_paced(f, c->fd, get ? "$-1\r\n" : "+OK\r\n",
				                5))
					goto out;
			} else {
				snprintf(head, sizeof head, "$%zu\r\n",
				         strlen(f->value));
				if (!send_paced(f, c->fd, head, strlen(head)) ||
				    !send_paced(f, c->fd, f->value,
				                strlen(f->value)) ||
				    !send_paced(f, c->fd, "\r\n", 2))
					goto out;
			}
			if (++answered == f->close_after)
				goto out;
		}
	}
out:
	redisReaderFree(r);
	close(c->fd);
	return NULL;
}

static void *fake_accept(void *arg)
{
	fake_redis *f = arg;
	int fd;

	while (f->n_conns < 32 && (fd = accept(f->fd, NULL, NULL)) >= 0) {
		struct fake_conn *c = &f->conns[f->n_conns++];
		c->f = f;
		c->fd = fd;
		assert_int_equal(pthread_create(&c->t, NULL, fake_serve, c), 0);
	}
	return NULL;
}

/* Listens at dir/fake.sock; f->url is its redis URL. */
static void fake_start(fake_redis *f, const char *dir)
{
	char sock[4096];
	snprintf(sock, sizeof sock, "%s/fake.sock", dir);
	snprintf(f->url, sizeof f->url, "unix://%s", sock);
	f->fd = mute_socket(sock);
	assert_int_equal(pthread_create(&f->acceptor, NULL, fake_accept, f), 0);
}

/* Listens on a loopback TCP port; f->url is redis://host:port (host must
 * resolve to 127.0.0.1). */
static void fake_start_tcp(fake_redis *f, const char *host)
{
	struct sockaddr_in a = {.sin_family = AF_INET,
	                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof a;

	f->fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(f->fd >= 0);
	assert_int_equal(bind(f->fd, (struct sockaddr *)&a, sizeof a), 0);
	assert_int_equal(getsockname(f->fd, (struct sockaddr *)&a, &len), 0);
	assert_int_equal(listen(f->fd, 16), 0);
	snprintf(f->url, sizeof f->url, "redis://%s:%d", host,
	         ntohs(a.sin_port));
	assert_int_equal(pthread_create(&f->acceptor, NULL, fake_accept, f), 0);
}

/* After the clients closed their connections (shm_env_close). */
static void fake_stop(fake_redis *f)
{
	shutdown(f->fd, SHUT_RDWR); /* accept() fails: the acceptor ends */
	pthread_join(f->acceptor, NULL);
	close(f->fd);
	for (int i = 0; i < f->n_conns; i++)
		pthread_join(f->conns[i].t, NULL);
}

/* A Redis that ended a pooled connection (a restart, its idle timeout)
 * raises no SIGPIPE at the next get on it: hiredis writes with write(),
 * and the signal ended the application, which libshm does not ask to
 * ignore it (a soak's writers died at a Redis restart). The get meets
 * EPIPE and asks again on a new connection, the fake's second, which
 * answers. The gets run in a child with SIGPIPE's default action, as an
 * application has it; the parent reads how it ended. */
static void test_redis_ending_a_pooled_connection_raises_no_sigpipe(
	void **state)
{
	char *sdir = tu_tmpdir();
	fake_redis f = {.close_after = 1};
	int status;
	pid_t pid;

	fake_start(&f, sdir);
	if ((pid = fork()) == 0) {
		shm_uuid a, b;
		shm_msg *got;

		signal(SIGPIPE, SIG_DFL);
		shm_env *env = open_rt(f.url, NULL, 2000, 0);
		shm_uuid_v7(&a);
		shm_uuid_v7(&b);
		if (shm_msg_get(env, &a, &got) != SHM_ENOTFOUND)
			_exit(2);
		tu_sleep_ms(100); /* the fake has closed the connection */
		if (shm_msg_get(env, &b, &got) != SHM_ENOTFOUND)
			_exit(3);
		shm_env_close(env);
		tu_rmdir(dir);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (WIFSIGNALED(status))
		fail_msg("the get died of signal %d", WTERMSIG(status));
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	fake_stop(&f);
	assert_int_equal(f.n_conns, 2);
	tu_rmdir(sdir);
	free(sdir);
}

static void test_dead_or_mute_redis_costs_at_most_the_timeout(void **state)
{
	NEED_SERVERS();
	const uint32_t l2_ms = 150;
	char room[64], url[4200], sock[4096];
	shm_msg m[3];
	shm_counters c;
	PGconn *db = pg();
	char *sdir = tu_tmpdir();

	room_name(room, sizeof room, "dead");
	for (int i = 0; i < 3; i++) {
		m[i] = full_msg(room, INT64_C(1700000010000000) + i, "from PG");
		pg_put(db, &m[i]);
	}
	/* baseline: live Redis (miss), PostgreSQL answers */
	uint64_t base = timed_l3_get(redis_url, l2_ms, &m[0], &c);
	assert_int_equal(c.l2_misses, 1);
	assert_int_equal(c.l3_hits, 1);

	/* nothing listening at the path: refused at once */
	snprintf(sock, sizeof sock, "%s/nobody.sock", sdir);
	snprintf(url, sizeof url, "unix://%s", sock);
	uint64_t dead = timed_l3_get(url, l2_ms, &m[1], &c);
	assert_int_equal(c.l2_errors, 1);
	assert_int_equal(c.l3_hits, 1);
	assert_int_equal(c.fills, 1);
	if (dead > base + l2_ms + 200)
		fail_msg("dead Redis: %" PRIu64 " ms, baseline %" PRIu64 " ms",
		         dead, base);

	/* accepts, never answers: the L2 timeout has to bite */
	snprintf(sock, sizeof sock, "%s/mute.sock", sdir);
	snprintf(url, sizeof url, "unix://%s", sock);
	int fd = mute_socket(sock);
	uint64_t mute = timed_l3_get(url, l2_ms, &m[2], &c);
	close(fd);
	assert_int_equal(c.l2_errors, 1);
	assert_int_equal(c.l3_hits, 1);
	assert_int_equal(c.fills, 1);
	fprintf(stderr, "get from PostgreSQL: %" PRIu64 " ms with Redis, %"
	        PRIu64 " ms with a dead one, %" PRIu64 " ms with a mute one "
	        "(l2_timeout %u ms)\n", base, dead, mute, l2_ms);
	assert_true(mute >= l2_ms - 10); /* it did wait for Redis */
	if (mute > base + l2_ms + 200)
		fail_msg("mute Redis: %" PRIu64 " ms, baseline %" PRIu64 " ms",
		         mute, base);

	PQfinish(db);
	tu_rmdir(sdir);
	free(sdir);
	cleanup();
}

static void test_mute_redis_is_skipped_after_a_timeout(void **state)
{
	NEED_SERVERS();
	const uint32_t l2_ms = 150;
	char room[64], url[4200], sock[4096];
	shm_msg m[2], *got;
	shm_counters c;
	PGconn *db = pg();
	char *sdir = tu_tmpdir();

	room_name(room, sizeof room, "skip");
	for (int i = 0; i < 2; i++) {
		m[i] = full_msg(room, INT64_C(1700000020000000) + i, "x");
		pg_put(db, &m[i]);
	}
	snprintf(sock, sizeof sock, "%s/mute.sock", sdir);
	snprintf(url, sizeof url, "unix://%s", sock);
	int fd = mute_socket(sock);
	shm_env *env = open_rt(url, pg_info, l2_ms, 0);
	assert_int_equal(shm_msg_get(env, &m[0].id, &got), 0);
	shm_msg_free(got);
	uint64_t t0 = now_ms();
	assert_int_equal(shm_msg_get(env, &m[1].id, &got), 0);
	uint64_t dt = now_ms() - t0;
	tu_assert_msg_equal(got, &m[1]);
	shm_msg_free(got);
	shm_stats_local(env, &c);
	assert_int_equal(c.l3_hits, 2);
	assert_int_equal(c.l2_hits + c.l2_misses, 0);
	if (dt >= l2_ms)
		fail_msg("second get took %" PRIu64 " ms: Redis asked again", dt);
	close(fd);
	close_rt(env);
	PQfinish(db);
	tu_rmdir(sdir);
	free(sdir);
	cleanup();
}

/* A get of id through env serves nothing: rc, and shm_errmsg() is exactly
 * "message <id>: <want> (<rc's description>)". */
static void assert_errmsg(shm_env *env, const shm_uuid *id, int rc,
                          const char *want)
{
	char ids[37], full[4400];
	shm_msg *got;

	shm_uuid_format(id, ids);
	assert_int_equal(shm_msg_get(env, id, &got), rc);
	snprintf(full, sizeof full, "message %s: %s (%s)", ids, want,
	         shm_strerror(rc));
	fprintf(stderr, "%s\n", shm_errmsg());
	if (strcmp(shm_errmsg(), full) != 0)
		fail_msg("get of %s: \"%s\", want \"%s\"", ids, shm_errmsg(),
		         full);
}

/* A PostgreSQL that does not answer in time (a query stuck behind a lock)
 * costs l3_timeout_ms: the get says SHM_EL3, not SHM_ENOTFOUND (the message
 * is there; the text says why it was not read), L3 is skipped for a second
 * (SHM_EL3 again, at once), then asked again. */
static void test_slow_postgres_costs_at_most_the_timeout(void **state)
{
	NEED_SERVERS();
	const uint32_t l3_ms = 200;
	char room[64];
	shm_msg m, *got;
	shm_counters c;
	PGconn *db = pg(), *locker = pg();

	room_name(room, sizeof room, "slowpg");
	m = full_msg(room, INT64_C(1700000030000000), "behind a lock");
	pg_put(db, &m);
	shm_options o;
	shm_options_init(&o);
	o.redis_url = redis_url;
	o.pg_conninfo = pg_info;
	o.l3_timeout_ms = l3_ms;
	dir = tu_tmpdir();
	shm_env *env = tu_open(dir, &o);

	/* both gets run while the lock is held, the asserts once it is
	 * released: a failing one must not leave every later query of the
	 * suite waiting on it */
	pg_exec(locker, "BEGIN", 0, NULL);
	pg_exec(locker, "LOCK TABLE messages IN ACCESS EXCLUSIVE MODE", 0, NULL);
	uint64_t t0 = now_ms();
	int rc = shm_msg_get(env, &m.id, &got);
	uint64_t dt = now_ms() - t0;
	char *e = strdup(shm_errmsg());
	shm_stats_local(env, &c);
	/* right after: L3 is skipped, no waiting at all */
	t0 = now_ms();
	int rc2 = shm_msg_get(env, &m.id, &got);
	uint64_t dt2 = now_ms() - t0;
	pg_exec(locker, "COMMIT", 0, NULL);

	assert_non_null(e);
	assert_int_equal(rc, SHM_EL3);
	char want[600]; /* the server named as libpq knows it */
	snprintf(want, sizeof want, "PostgreSQL query on %s port %s: no answer "
	         "within the l3_timeout_ms of 200 ms", PQhost(db), PQport(db));
	if (!strstr(e, want))
		fail_msg("no \"%s\" in \"%s\"", want, e);
	free(e);
	fprintf(stderr, "get with PostgreSQL stuck: %" PRIu64 " ms (l3_timeout "
	        "%u ms)\n", dt, l3_ms);
	assert_true(dt >= l3_ms - 10);
	if (dt > l3_ms + 300)
		fail_msg("stuck PostgreSQL cost %" PRIu64 " ms", dt);
	assert_int_equal(c.l2_misses, 1);
	assert_int_equal(c.l3_errors, 1);
	assert_int_equal(c.l3_hits + c.l3_misses + c.fills, 0);
	assert_int_equal(rc2, SHM_EL3);
	assert_true(dt2 < l3_ms / 2);

	/* a second later it is asked again, on a new connection */
	struct timespec ts = {1, 100 * 1000000L};
	nanosleep(&ts, NULL);
	assert_int_equal(shm_msg_get(env, &m.id, &got), 0);
	tu_assert_msg_equal(got, &m);
	shm_msg_free(got);
	shm_stats_local(env, &c);
	assert_int_equal(c.l3_hits, 1);
	assert_int_equal(log_records(env), 0);
	close_rt(env);
	PQfinish(locker);
	PQfinish(db);
	cleanup();
}

/* A PostgreSQL query that fails (here no messages table on the session's
 * search_path) leaves the server's reason: the get says SHM_EL3 (the record
 * could not answer), and shm_errmsg() names the message, PostgreSQL, its
 * server (host and port, as a connection error and a timeout do; before,
 * the query's error named none) and the server's message with its
 * SQLSTATE. Right after, L3 is skipped, and the text says so. */
static void test_failed_postgres_query_leaves_its_reason(void **state)
{
	NEED_SERVERS();
	char conn[4096], ids[37], server[500], want[600];
	const char *e;
	shm_uuid id;
	shm_msg *got;
	shm_counters c;
	PGconn *db = pg();

	/* the server as libpq knows it */
	snprintf(server, sizeof server, "%s port %s", PQhost(db), PQport(db));
	PQfinish(db);
	snprintf(conn, sizeof conn, "%s options='-c search_path=nowhere'",
	         pg_info);
	shm_uuid_v7(&id);
	shm_uuid_format(&id, ids);
	shm_env *env = open_rt(redis_url, conn, 50, 0);
	assert_int_equal(shm_msg_get(env, &id, &got), SHM_EL3);
	e = shm_errmsg();
	fprintf(stderr, "L3 query failed: %s\n", e);
	assert_non_null(strstr(e, ids));
	snprintf(want, sizeof want, "PostgreSQL query on %s (SQLSTATE 42P01): "
	         "relation \"messages\" does not exist", server);
	assert_non_null(strstr(e, want));
	shm_stats_local(env, &c);
	assert_int_equal(c.l2_misses, 1);
	assert_int_equal(c.l3_errors, 1);
	assert_int_equal(c.l3_hits + c.l3_misses, 0);

	/* skipped, the server named */
	snprintf(want, sizeof want, "not in Redis; PostgreSQL at %s skipped: "
	         "it failed less than 1000 ms ago", server);
	assert_errmsg(env, &id, SHM_EL3, want);
	close_rt(env);
}

/* A put of a reply L1 cannot judge (its id and an old created_at given:
 * maybe one L1 dropped) asks PostgreSQL for its row (msg.c invariant 9).
 * Here the session's search_path reaches a messages table whose parent_id
 * is text, holding what is no UUID: that answer is PostgreSQL's error,
 * SHM_EL3, counted in l3_errors, nothing written, not a parent taken from
 * a malformed value. */
static void test_malformed_parent_from_postgres_writes_nothing(void **state)
{
	NEED_SERVERS();
	char conn[4200], schema[64], sql[512], ids[37];
	shm_msg p, r;
	shm_counters c;
	PGconn *db = pg();

	snprintf(schema, sizeof schema, "%s_odd", prefix);
	snprintf(sql, sizeof sql, "DROP SCHEMA IF EXISTS %s CASCADE", schema);
	pg_exec(db, sql, 0, NULL);
	snprintf(sql, sizeof sql, "CREATE SCHEMA %s", schema);
	pg_exec(db, sql, 0, NULL);
	snprintf(sql, sizeof sql, "CREATE TABLE %s.messages (id uuid PRIMARY "
	         "KEY, parent_id text)", schema);
	pg_exec(db, sql, 0, NULL);
	p = tu_msg("odd", 1, "parent");
	r = tu_msg("odd", 2, "reply");
	shm_uuid_v7(&r.id);
	r.created_at = 1000000; /* 1970: before the room's watermark */
	shm_uuid_format(&r.id, ids);
	snprintf(sql, sizeof sql, "INSERT INTO %s.messages VALUES ($1, "
	         "'not a uuid')", schema);
	const char *params[1] = {ids};
	pg_exec(db, sql, 1, params);
	snprintf(conn, sizeof conn, "%s options='-c search_path=%s'", pg_info,
	         schema);
	shm_env *env = open_rt(NULL, conn, 50, 0);
	assert_int_equal(shm_msg_put(env, &p), 0);
	r.has_parent = r.has_thread = true;
	r.parent_id = r.thread_id = p.id;
	uint64_t before = tu_log_count(env);
	assert_int_equal(shm_msg_put(env, &r), SHM_EL3);
	fprintf(stderr, "%s\n", shm_errmsg());
	assert_non_null(strstr(shm_errmsg(), ids));
	assert_non_null(strstr(shm_errmsg(), "PostgreSQL answer: a malformed "
	                                      "parent_id"));
	assert_non_null(strstr(shm_errmsg(), "nothing was written"));
	assert_int_equal(tu_log_count(env), before);
	shm_stats_local(env, &c);
	assert_int_equal(c.l3_errors, 1);
	close_rt(env);
	snprintf(sql, sizeof sql, "DROP SCHEMA %s CASCADE", schema);
	pg_exec(db, sql, 0, NULL);
	PQfinish(db);
}

/* A get of id through env serves nothing: rc, and shm_errmsg() names the
 * message and has want in it. */
static void assert_reason(shm_env *env, const shm_uuid *id, int rc,
                          const char *want)
{
	char ids[37];
	shm_msg *got;
	const char *e;

	shm_uuid_format(id, ids);
	assert_int_equal(shm_msg_get(env, id, &got), rc);
	e = shm_errmsg();
	fprintf(stderr, "%s\n", e);
	if (!strstr(e, ids) || !strstr(e, want))
		fail_msg("get of %s: \"%s\", want \"%s\" in it", ids, e, want);
}

/* A password alone in redis_url and a db (unix://:PASSWORD@/path?db=5),
 * against a redis-server of the test's own with requirepass: the get AUTHs
 * and SELECTs, then hits; a wrong password, or a db past the server's 16,
 * is the server's refusal, named with it (never the password) as
 * shm_errmsg's reason, SHM_EL2 (Redis is the record here). */
static void test_redis_password_and_db_in_the_url(void **state)
{
	NEED_SERVERS();
	char room[64], url[4400], base[4200], want[4400], *json;
	char *sdir = tu_tmpdir();
	const char *const args[] = {"--requirepass", "s3cr@t", NULL};
	size_t len;
	shm_msg m, *got;
	shm_counters c;

	pid_t srv = tu_redis_start(sdir, args, base, sizeof base);
	const char *sock = base + strlen("unix://");
	room_name(room, sizeof room, "pwdb");
	m = full_msg(room, INT64_C(1700000002500000), "in db 5");
	assert_int_equal(shm_msg_to_json(&m, &json, &len), 0);
	redisContext *r = redisConnectUnix(sock);
	assert_non_null(r);
	char ids[37];
	shm_uuid_format(&m.id, ids);
	freeReplyObject(redisCommand(r, "AUTH s3cr@t"));
	freeReplyObject(redisCommand(r, "SELECT 5"));
	redisReply *rep = redisCommand(r, "SET msg:%s %b", ids, json, len);
	assert_non_null(rep);
	assert_int_equal(rep->type, REDIS_REPLY_STATUS);
	freeReplyObject(rep);
	free(json);
	redisFree(r);

	snprintf(url, sizeof url, "unix://:s3cr@t@%s?db=5", sock);
	shm_env *env = open_rt(url, NULL, 500, 0);
	assert_int_equal(shm_msg_get(env, &m.id, &got), 0);
	tu_assert_msg_equal(got, &m);
	shm_msg_free(got);
	shm_stats_local(env, &c);
	assert_int_equal(c.l2_hits, 1);
	close_rt(env);

	snprintf(url, sizeof url, "unix://:wr0ng-pw@%s?db=5", sock);
	env = open_rt(url, NULL, 500, 0);
	snprintf(want, sizeof want, "Redis AUTH on %s: WRONGPASS", sock);
	assert_reason(env, &m.id, SHM_EL2, want);
	assert_null(strstr(shm_errmsg(), "wr0ng-pw"));
	close_rt(env);

	snprintf(url, sizeof url, "unix://:s3cr@t@%s?db=20", sock);
	env = open_rt(url, NULL, 500, 0);
	snprintf(want, sizeof want, "Redis SELECT 20 on %s: ERR DB index is "
	         "out of range", sock);
	assert_reason(env, &m.id, SHM_EL2, want);
	assert_null(strstr(shm_errmsg(), "s3cr@t"));
	close_rt(env);
	tu_redis_stop(srv);
	tu_rmdir(sdir);
	free(sdir);
}

/* A loopback TCP port bound by fd and not listening: connect is refused. */
static int refusing_port(int *fd)
{
	struct sockaddr_in a = {.sin_family = AF_INET,
	                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof a;

	*fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(*fd >= 0);
	assert_int_equal(bind(*fd, (struct sockaddr *)&a, sizeof a), 0);
	assert_int_equal(getsockname(*fd, (struct sockaddr *)&a, &len), 0);
	return ntohs(a.sin_port);
}

/* With Redis the only level, a get Redis could not answer is SHM_EL2 and
 * says why: a socket path or a port where nothing listens, a mute server
 * (the L2 timeout), the level skipped after that, a server that closes
 * the connection on the GET, a wrong password, error replies to GET
 * (NOPERM, WRONGTYPE), a value that is not a message. Each failure of the
 * server names it (before, GET's error replies and I/O errors did not:
 * "Redis GET: NOPERM ..."). */
static void test_failed_redis_read_leaves_its_reason(void **state)
{
	NEED_SERVERS();
	char sock[4096], url[4200], user[48], want[4300], ids[37];
	shm_env *env;
	shm_uuid id;
	shm_counters c;
	char *sdir = tu_tmpdir();
	fake_redis f = {.hang_up = true};
	int fd, port;

	shm_uuid_v7(&id);
	snprintf(sock, sizeof sock, "%s/nobody.sock", sdir);
	snprintf(url, sizeof url, "unix://%s", sock);
	env = open_rt(url, NULL, 150, 0);
	snprintf(want, sizeof want, "Redis connection to %s: No such file or "
	         "directory", sock);
	assert_reason(env, &id, SHM_EL2, want);
	/* right after a failure: skipped, and said so, the server named */
	snprintf(want, sizeof want, "Redis at %s skipped: it failed less than "
	         "1000 ms ago", sock);
	assert_errmsg(env, &id, SHM_EL2, want);
	shm_stats_local(env, &c);
	assert_int_equal(c.l2_errors, 2);
	close_rt(env);

	port = refusing_port(&fd);
	snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
	env = open_rt(url, NULL, 150, 0);
	snprintf(want, sizeof want, "Redis connection to 127.0.0.1:%d: "
	         "Connection refused", port);
	assert_reason(env, &id, SHM_EL2, want);
	snprintf(want, sizeof want, "Redis at 127.0.0.1:%d skipped: it failed "
	         "less than 1000 ms ago", port);
	assert_errmsg(env, &id, SHM_EL2, want);
	close_rt(env);
	close(fd);

	snprintf(sock, sizeof sock, "%s/mute.sock", sdir);
	snprintf(url, sizeof url, "unix://%s", sock);
	fd = mute_socket(sock);
	env = open_rt(url, NULL, 150, 0);
	snprintf(want, sizeof want, "Redis GET on %s: no answer within "
	         "the l2_timeout_ms of 150 ms", sock);
	assert_errmsg(env, &id, SHM_EL2, want);
	close_rt(env);
	close(fd);

	/* the same over TCP: a mute server at a loopback port */
	port = refusing_port(&fd);
	assert_int_equal(listen(fd, 16), 0);
	snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
	env = open_rt(url, NULL, 150, 0);
	snprintf(want, sizeof want, "Redis GET on 127.0.0.1:%d: no answer "
	         "within the l2_timeout_ms of 150 ms", port);
	assert_errmsg(env, &id, SHM_EL2, want);
	close_rt(env);
	close(fd);

	/* a server that closes a new connection on its GET */
	fake_start(&f, sdir);
	env = open_rt(f.url, NULL, 150, 0);
	snprintf(want, sizeof want, "Redis GET on %s: Server closed the "
	         "connection", f.url + strlen("unix://"));
	assert_errmsg(env, &id, SHM_EL2, want);
	close_rt(env);
	fake_stop(&f);

	/* a real server's error replies: to AUTH, then to GET (no +get) */
	snprintf(user, sizeof user, "%s-noget", prefix);
	redisContext *r = rds();
	redisReply *rep = redisCommand(r, "ACL SETUSER %s on >s3cr@t ~msg:* "
	                                  "+select", user);
	assert_non_null(rep);
	assert_int_equal(rep->type, REDIS_REPLY_STATUS);
	freeReplyObject(rep);
	tu_redis_url_with_auth(redis_url, user, "nope", url, sizeof url);
	env = open_rt(url, NULL, 200, 0);
	snprintf(want, sizeof want, "Redis AUTH on %s: WRONGPASS",
	         redis_url + strlen("unix://"));
	assert_reason(env, &id, SHM_EL2, want);
	assert_null(strstr(shm_errmsg(), "nope")); /* no password shown */
	close_rt(env);
	tu_redis_url_with_auth(redis_url, user, "s3cr@t", url, sizeof url);
	env = open_rt(url, NULL, 200, 0);
	snprintf(want, sizeof want, "Redis GET on %s: NOPERM",
	         redis_url + strlen("unix://"));
	assert_reason(env, &id, SHM_EL2, want);
	close_rt(env);
	freeReplyObject(redisCommand(r, "ACL DELUSER %s", user));

	/* msg:<id> a list */
	shm_uuid_format(&id, ids);
	track(&id);
	rep = redisCommand(r, "LPUSH msg:%s x", ids);
	assert_non_null(rep);
	assert_int_equal(rep->type, REDIS_REPLY_INTEGER);
	freeReplyObject(rep);
	redisFree(r);
	env = open_rt(redis_url, NULL, 200, 0);
	snprintf(want, sizeof want, "Redis GET on %s: WRONGTYPE Operation "
	         "against a key holding the wrong kind of value",
	         redis_url + strlen("unix://"));
	assert_reason(env, &id, SHM_EL2, want);
	close_rt(env);

	/* a value that is no message's JSON */
	redis_set(&id, "{\"id\":", 6);
	env = open_rt(redis_url, NULL, 200, 0);
	assert_reason(env, &id, SHM_EL2, "Redis value: malformed JSON");
	close_rt(env);
	tu_rmdir(sdir);
	free(sdir);
	cleanup();
}

/* With PostgreSQL too, Redis's reason stays beside PostgreSQL's answer: no
 * row (SHM_ENOTFOUND: PostgreSQL is the record, whatever Redis did), or its
 * own failure (SHM_EL3). */
static void test_redis_reason_stays_beside_postgres_answer(void **state)
{
	NEED_SERVERS();
	char sock[4096], url[4200], conn[4096], want[4600];
	shm_options o;
	shm_uuid id;
	shm_env *env;
	char *sdir = tu_tmpdir();
	PGconn *db = pg();

	shm_uuid_v7(&id);
	snprintf(sock, sizeof sock, "%s/nobody.sock", sdir);
	snprintf(url, sizeof url, "unix://%s", sock);
	env = open_rt(url, pg_info, 150, 0);
	assert_reason(env, &id, SHM_ENOTFOUND, "No such file or directory; not "
	              "in PostgreSQL (not found)");
	close_rt(env);

	redis_set(&id, "[]", 2);
	env = open_rt(redis_url, pg_info, 150, 0);
	assert_reason(env, &id, SHM_ENOTFOUND, "Redis value: expected a JSON "
	              "object, got array; not in PostgreSQL (not found)");
	close_rt(env);

	snprintf(conn, sizeof conn, "%s options='-c search_path=nowhere'",
	         pg_info);
	shm_options_init(&o);
	o.redis_url = url;
	o.pg_conninfo = conn;
	o.l3_timeout_ms = 2000;
	dir = tu_tmpdir();
	env = tu_open(dir, &o);
	snprintf(want, sizeof want, "No such file or directory; PostgreSQL "
	         "query on %s port %s (SQLSTATE 42P01): relation \"messages\" "
	         "does not exist (PostgreSQL L3 error)", PQhost(db), PQport(db));
	assert_reason(env, &id, SHM_EL3, want);
	close_rt(env);
	PQfinish(db);
	tu_rmdir(sdir);
	free(sdir);
	cleanup();
}

/* Both levels' connect errors name the server printably: a Redis socket
 * path, and a PostgreSQL socket directory that libpq's message quotes,
 * holding an escape sequence. Before, its bytes reached shm_errmsg() raw.
 * No server needed: neither socket is there. */
static void test_connect_errors_show_the_servers_printably(void **state)
{
	char *sdir = tu_tmpdir(), url[4200], conn[4200], want[4400];
	shm_msg *got = NULL;
	shm_uuid id;
	shm_env *env;
	const char *e;

	shm_uuid_v7(&id);
	snprintf(url, sizeof url, "unix://%s/r\x1b[31m.sock", sdir);
	snprintf(conn, sizeof conn, "host=%s/p\x1b[31m dbname=x", sdir);
	env = open_rt(url, conn, 150, 0);
	assert_int_equal(shm_msg_get(env, &id, &got), SHM_EL3);
	assert_null(got);
	e = shm_errmsg();
	fprintf(stderr, "%s\n", e);
	for (const char *p = e; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			fail_msg("byte %02x at %zu", (unsigned)*p, (size_t)(p - e));
	snprintf(want, sizeof want, "Redis connection to %s/r\\x1b[31m.sock",
	         sdir);
	assert_non_null(strstr(e, want));
	snprintf(want, sizeof want, "socket \"%s/p\\x1b[31m/.s.PGSQL.", sdir);
	assert_non_null(strstr(e, want));
	close_rt(env);
	tu_rmdir(sdir);
	free(sdir);
}

/* A server's name shown printably grows up to 4 times (\xNN): a socket
 * path of control bytes then 2-byte characters, shown past the length
 * the pool kept of it (400 bytes), used to be cut inside a character,
 * and shm_errmsg() was no longer UTF-8. Each control-byte count moves
 * where the characters fall. */
static void test_long_server_name_stays_utf8(void **state)
{
	char *sdir = tu_tmpdir(), url[600], path[300];
	shm_msg *got = NULL;
	shm_uuid id;

	shm_uuid_v7(&id);
	for (int k = 80; k < 96; k++) {
		size_t n = (size_t)snprintf(path, sizeof path, "%s/", sdir);
		memset(path + n, 1, (size_t)k);
		n += (size_t)k;
		for (int i = 0; i < 40; i++)
			n += (size_t)snprintf(path + n, sizeof path - n, "\xc3\xa9");
		snprintf(url, sizeof url, "unix://%s", path);
		shm_env *env = open_rt(url, NULL, 150, 0);
		assert_int_equal(shm_msg_get(env, &id, &got), SHM_EL2);
		const char *e = shm_errmsg();
		if (shm__utf8_bad(e, strlen(e)) != strlen(e))
			fail_msg("%d control bytes: not UTF-8 at byte %zu", k,
			         shm__utf8_bad(e, strlen(e)));
		assert_non_null(strstr(e, "Redis"));
		close_rt(env);
	}
	tu_rmdir(sdir);
	free(sdir);
}

/* The last level configured is the record (readthrough.c invariant 5): a
 * get it could not answer is its error, never SHM_ENOTFOUND, which is said
 * only when the record has no such message. A message only in PostgreSQL,
 * PostgreSQL unreachable (a refused port, as a stopped server is), Redis
 * live or dead: SHM_EL3, naming each level, nothing filled; the same env
 * said "not found" of it before. Redis dead, PostgreSQL answering: its
 * answer, "not found" included. Redis alone and dead: SHM_EL2; alone and
 * live: SHM_ENOTFOUND. */
static void test_get_the_record_cannot_answer_is_its_error(void **state)
{
	NEED_SERVERS();
	char room[64], sock[4096], url[4200], conn[200], want[4600], ids[37];
	char *sdir = tu_tmpdir();
	shm_msg m, *got = NULL;
	shm_uuid absent;
	shm_counters c;
	shm_env *env;
	shm_rtxn *t;
	const shm_msg *v;
	int fd, port;
	PGconn *db = pg();

	room_name(room, sizeof room, "record");
	m = full_msg(room, INT64_C(1700000060000000), "only in PostgreSQL");
	pg_put(db, &m);
	PQfinish(db);
	shm_uuid_format(&m.id, ids);
	shm_uuid_v7(&absent);
	snprintf(sock, sizeof sock, "%s/nobody.sock", sdir);
	snprintf(url, sizeof url, "unix://%s", sock);
	port = refusing_port(&fd);
	snprintf(conn, sizeof conn, "host=127.0.0.1 port=%d dbname=shm "
	         "user=nobody", port);

	/* PostgreSQL unreachable, Redis live (a miss) */
	env = open_rt(redis_url, conn, 150, 0);
	assert_int_equal(shm_msg_get(env, &m.id, &got), SHM_EL3);
	assert_null(got);
	fprintf(stderr, "PostgreSQL down: %s\n", shm_errmsg());
	snprintf(want, sizeof want, "message %s: not in Redis; PostgreSQL "
	         "connection", ids);
	assert_int_equal(strncmp(shm_errmsg(), want, strlen(want)), 0);
	assert_non_null(strstr(shm_errmsg(), "Connection refused"));
	assert_non_null(strstr(shm_errmsg(), "(PostgreSQL L3 error)"));
	/* skipped right after: still the record's error */
	snprintf(want, sizeof want, "not in Redis; PostgreSQL at 127.0.0.1 "
	         "port %d skipped: it failed less than 1000 ms ago", port);
	assert_errmsg(env, &m.id, SHM_EL3, want);
	shm_stats_local(env, &c);
	assert_int_equal(c.l2_misses, 2);
	assert_int_equal(c.l3_errors, 2);
	assert_int_equal(c.l3_hits + c.l3_misses + c.fills, 0);
	assert_int_equal(shm_rtxn_begin(env, &t), 0);
	assert_int_equal(shm_msg_view(t, &m.id, &v), SHM_ENOTFOUND);
	shm_rtxn_end(t);
	close_rt(env);

	/* both dead: PostgreSQL's error, Redis's reason beside it */
	env = open_rt(url, conn, 150, 0);
	assert_reason(env, &m.id, SHM_EL3, "No such file or directory; "
	              "PostgreSQL connection");
	close_rt(env);
	close(fd);

	/* Redis dead, PostgreSQL live: the record answers, "not there"
	 * included */
	env = open_rt(url, pg_info, 150, 0);
	assert_int_equal(shm_msg_get(env, &m.id, &got), 0);
	tu_assert_msg_equal(got, &m);
	shm_msg_free(got);
	assert_reason(env, &absent, SHM_ENOTFOUND, "skipped: it failed less "
	              "than 1000 ms ago; not in PostgreSQL (not found)");
	close_rt(env);

	/* Redis alone: dead, then live */
	env = open_rt(url, NULL, 150, 0);
	assert_reason(env, &m.id, SHM_EL2, "No such file or directory (Redis "
	              "L2 error)");
	close_rt(env);
	env = open_rt(redis_url, NULL, 150, 0);
	assert_int_equal(shm_msg_get(env, &m.id, &got), SHM_ENOTFOUND);
	snprintf(want, sizeof want, "message %s not found", ids);
	assert_string_equal(shm_errmsg(), want);
	close_rt(env);
	tu_rmdir(sdir);
	free(sdir);
	cleanup();
}

/* A room page L1 cannot answer alone, with PostgreSQL unreachable: SHM_EL3
 * and nothing (*out NULL, *n 0), never L1's part of it, which reads as a
 * complete page or the end of the room. Before, it was rc 0 with L1's two
 * messages. Without PostgreSQL configured, L1's page is the answer. */
static void test_room_page_postgres_cannot_answer_is_an_error(void **state)
{
	NEED_SERVERS();
	char room[64], conn[200], want[300];
	shm_msg m[2], **page = (shm_msg **)1;
	size_t n = 99;
	shm_counters c;
	shm_env *env;
	int fd, port;

	room_name(room, sizeof room, "pagedown");
	port = refusing_port(&fd);
	snprintf(conn, sizeof conn, "host=127.0.0.1 port=%d dbname=shm "
	         "user=nobody", port);
	for (int pass = 0; pass < 2; pass++) {
		env = open_rt(redis_url, pass ? NULL : conn, 150, 0);
		/* older than the environment: PostgreSQL may hold more of
		 * the room (room.c invariant 2) */
		for (int i = 0; i < 2; i++) {
			m[i] = plain_msg(room, INT64_C(1700000070000000) + i,
			                 "in L1");
			assert_int_equal(shm_msg_put(env, &m[i]), 0);
		}
		int rc = shm_room_page(env, room, 0, 5, &page, &n);
		fprintf(stderr, "page, PostgreSQL %s: rc %d, %zu: %s\n",
		        pass ? "not configured" : "down", rc, n, shm_errmsg());
		if (pass == 0) {
			assert_int_equal(rc, SHM_EL3);
			assert_null(page);
			assert_int_equal(n, 0);
			snprintf(want, sizeof want, "room '%s': page not complete "
			         "in L1, and PostgreSQL connection", room);
			assert_int_equal(strncmp(shm_errmsg(), want,
			                         strlen(want)), 0);
			assert_non_null(strstr(shm_errmsg(),
			                       "(PostgreSQL L3 error)"));
			shm_stats_local(env, &c);
			assert_int_equal(c.room_pages_l3, 0);
			assert_int_equal(c.l3_errors, 1);
			/* skipped right after: the same */
			page = (shm_msg **)1;
			assert_int_equal(shm_room_page(env, room, 0, 5, &page,
			                               &n), SHM_EL3);
			assert_null(page);
			assert_int_equal(n, 0);
			assert_non_null(strstr(shm_errmsg(), "skipped"));
		} else {
			assert_int_equal(rc, 0);
			assert_int_equal(n, 2);
			assert_memory_equal(page[0]->id.b, m[1].id.b, 16);
			shm_msgs_free(page, n);
		}
		close_rt(env);
	}
	close(fd);
}

/* A get no level answered says each level's cause once and ends with its
 * own code's description alone ("(Redis L2 error)", Redis being the
 * record): not with the failed level's code's description too, nor with
 * that of the check that refused its value (errors.c's rule). No
 * server needed: a socket path where nothing listens, and the fake Redis
 * serving a message put would refuse (content over max_content). */
static void test_failed_get_names_each_cause_once(void **state)
{
	char sock[4096], url[4200], want[4600], ids[37];
	char *sdir = tu_tmpdir(), *json;
	fake_redis f = {0};
	shm_options o;
	shm_msg *got, m = plain_msg("r", INT64_C(1700000047000000),
	                            "longer than the 20 bytes allowed");
	shm_env *env;

	shm_uuid_format(&m.id, ids);
	snprintf(sock, sizeof sock, "%s/nobody.sock", sdir);
	snprintf(url, sizeof url, "unix://%s", sock);
	env = open_rt(url, NULL, 150, 0);
	assert_int_equal(shm_msg_get(env, &m.id, &got), SHM_EL2);
	snprintf(want, sizeof want, "message %s: Redis connection to %s: No "
	         "such file or directory (Redis L2 error)", ids, sock);
	assert_string_equal(shm_errmsg(), want);
	close_rt(env);

	assert_int_equal(shm_msg_to_json(&m, &json, NULL), 0);
	f.value = json;
	fake_start(&f, sdir);
	shm_options_init(&o);
	o.redis_url = f.url;
	o.max_content = 20;
	dir = tu_tmpdir();
	env = tu_open(dir, &o);
	assert_int_equal(shm_msg_get(env, &m.id, &got), SHM_EL2);
	snprintf(want, sizeof want, "message %s: Redis value: content: %u "
	         "bytes, at most 20 allowed (Redis L2 error)", ids,
	         m.content_len);
	assert_string_equal(shm_errmsg(), want);
	close_rt(env);
	fake_stop(&f);
	free(json);
	tu_rmdir(sdir);
	free(sdir);
}

/* ------------------------------------------ a resolver the test controls */

/* This binary's getaddrinfo comes before libc's for libshm and hiredis
 * alike: SLOW_HOST resolves to 127.0.0.1 after SLOW_DNS_MS, as through a
 * slow DNS server, and is counted in slow_lookups; NO_HOST does not
 * resolve; any other name is libc's. */
#define SLOW_HOST "slow-dns.shm.test"
#define NO_HOST "no-such-host.shm.test"
#define SLOW_DNS_MS 1000
static int slow_lookups;

int getaddrinfo(const char *node, const char *service,
                const struct addrinfo *hints, struct addrinfo **res)
{
	int (*libc)(const char *, const char *, const struct addrinfo *,
	            struct addrinfo **);

	*(void **)&libc = dlsym(RTLD_NEXT, "getaddrinfo");
	if (node && strcmp(node, NO_HOST) == 0)
		return EAI_NONAME;
	if (node && strcmp(node, SLOW_HOST) == 0) {
		__atomic_add_fetch(&slow_lookups, 1, __ATOMIC_RELAXED);
		tu_sleep_ms(SLOW_DNS_MS);
		node = "127.0.0.1";
	}
	return libc(node, service, hints, res);
}

/* One get of an absent message through env: its return code; fails if it
 * asked the resolver for SLOW_HOST or took more than max_ms (what names
 * the case in the messages). */
static int get_resolves_nothing(shm_env *env, const char *what,
                                uint64_t max_ms)
{
	int lookups = __atomic_load_n(&slow_lookups, __ATOMIC_RELAXED);
	shm_msg *got;
	shm_uuid id;

	shm_uuid_v7(&id);
	uint64_t t0 = now_ms();
	int rc = shm_msg_get(env, &id, &got);
	uint64_t dt = now_ms() - t0;
	lookups = __atomic_load_n(&slow_lookups, __ATOMIC_RELAXED) - lookups;
	fprintf(stderr, "%s: get %" PRIu64 " ms, %d slow lookup(s): %s\n", what,
	        dt, lookups, shm_errmsg());
	if (lookups || dt > max_ms)
		fail_msg("%s: a get through a host name took %" PRIu64 " ms (at "
		         "most %" PRIu64 " expected) and asked the resolver %d "
		         "time(s)", what, dt, max_ms, lookups);
	return rc;
}

/* Through env, which must find Redis and no message there, within l2_ms. */
static void assert_get_resolves_nothing(shm_env *env, uint32_t l2_ms)
{
	shm_counters c;

	assert_int_equal(get_resolves_nothing(env, "Redis", l2_ms),
	                 SHM_ENOTFOUND);
	shm_stats_local(env, &c);
	assert_int_equal(c.l2_errors, 0);
	assert_int_equal(c.l2_misses, 1);
}

/* A Redis host name is resolved at open, where blocking is allowed, never
 * on the read path: with a resolver that takes SLOW_DNS_MS per lookup, a get
 * through the name costs at most l2_timeout_ms and asks it nothing.
 * "localhost" is reached as before; a name that does not resolve fails the
 * open with SHM_EINVAL naming it, and creates nothing. No server needed. */
static void test_redis_host_name_is_resolved_at_open_not_on_gets(void **state)
{
	const uint32_t l2_ms = 150;
	fake_redis f = {0};
	shm_options o;
	shm_env *env;
	shm_uuid id;
	char url[64], want[200];
	int fd, port;

	fake_start_tcp(&f, SLOW_HOST);
	env = open_rt(f.url, NULL, l2_ms, 0);
	assert_get_resolves_nothing(env, l2_ms);
	close_rt(env);
	fake_stop(&f);

	memset(&f, 0, sizeof f);
	fake_start_tcp(&f, "localhost");
	env = open_rt(f.url, NULL, l2_ms, 0);
	assert_get_resolves_nothing(env, l2_ms);
	close_rt(env);
	fake_stop(&f);

	/* a failed connection names the host and the address it resolved to */
	port = refusing_port(&fd);
	snprintf(url, sizeof url, "redis://localhost:%d", port);
	env = open_rt(url, NULL, l2_ms, 0);
	shm_uuid_v7(&id);
	snprintf(want, sizeof want, "Redis connection to localhost:%d "
	         "(127.0.0.1): Connection refused (Redis L2 error)", port);
	assert_reason(env, &id, SHM_EL2, want);
	close_rt(env);
	close(fd);

	shm_options_init(&o);
	o.redis_url = "redis://:pw@" NO_HOST ":6390/2";
	dir = tu_tmpdir();
	char sub[PATH_MAX];
	snprintf(sub, sizeof sub, "%s/new", dir);
	assert_int_equal(shm_env_open(sub, &o, &env), SHM_EINVAL);
	snprintf(want, sizeof want, "redis URL 'redis://:***@%s:6390/2': "
	         "host %s does not resolve: %s (invalid argument)", NO_HOST,
	         NO_HOST, gai_strerror(EAI_NONAME));
	assert_string_equal(shm_errmsg(), want);
	assert_int_equal(access(sub, F_OK), -1);
	tu_rmdir(dir);
	free(dir);
	dir = NULL;
}

/* Opens a new environment whose only level is PostgreSQL, at conninfo. */
static shm_env *open_l3(const char *conninfo, uint32_t l3_ms)
{
	shm_options o;

	shm_options_init(&o);
	o.pg_conninfo = conninfo;
	o.l3_timeout_ms = l3_ms;
	dir = tu_tmpdir();
	return tu_open(dir, &o);
}

/* Through a real PostgreSQL over TCP: the get finds no message there. */
static void assert_l3_reached(const char *conninfo, const char *what)
{
	shm_env *env = open_l3(conninfo, 900);
	shm_counters c;

	assert_int_equal(get_resolves_nothing(env, what, 900),
	                 SHM_ENOTFOUND);
	shm_stats_local(env, &c);
	assert_int_equal(c.l3_errors, 0);
	assert_int_equal(c.l3_misses, 1);
	close_rt(env);
}

/* shm_env_open with conninfo fails with SHM_EINVAL saying host does not
 * resolve, and creates nothing. */
static void assert_open_unresolved(const char *conninfo, const char *host)
{
	char want[300], sub[PATH_MAX];
	shm_options o;
	shm_env *env;

	shm_options_init(&o);
	o.pg_conninfo = conninfo;
	dir = tu_tmpdir();
	snprintf(sub, sizeof sub, "%s/new", dir);
	assert_int_equal(shm_env_open(sub, &o, &env), SHM_EINVAL);
	snprintf(want, sizeof want, "pg_conninfo: host %s does not resolve: %s "
	         "(invalid argument)", host, gai_strerror(EAI_NONAME));
	assert_string_equal(shm_errmsg(), want);
	assert_int_equal(access(sub, F_OK), -1);
	tu_rmdir(dir);
	free(dir);
	dir = NULL;
}

/* PostgreSQL's host names are resolved at open too, and the read path
 * gives libpq the addresses as hostaddr (the names kept for
 * authentication, SSL and messages): with a resolver that takes SLOW_DNS_MS
 * per lookup, a get through a name costs at most l3_timeout_ms and asks it
 * nothing. A mute server through a name needs no server; with the test
 * PostgreSQL over TCP: a name, a URI, a list of hosts (a socket directory
 * that fails, then the name), localhost, a conninfo with its own hostaddr
 * (used as given), a host from PGHOST; a refused connection names the host
 * and its address. A name that does not resolve, alone or in a list of
 * which no host is left, fails the open with SHM_EINVAL naming it, and
 * creates nothing; in a list with other hosts it is left to libpq, which
 * goes on to the next. */
static void test_postgres_host_name_is_resolved_at_open_not_on_gets(void **state)
{
	const uint32_t l3_ms = 150;
	const char *port = getenv("SHM_TEST_PG_PORT");
	const char *user = getenv("SHM_TEST_PG_USER");
	char info[300];
	shm_env *env;
	int fd, p;

	/* a server that accepts and never answers, through the slow name */
	p = refusing_port(&fd);
	assert_int_equal(listen(fd, 16), 0);
	snprintf(info, sizeof info, "host=%s port=%d dbname=shm user=nobody",
	         SLOW_HOST, p);
	env = open_l3(info, l3_ms);
	assert_int_equal(get_resolves_nothing(env, "mute server",
	                                              l3_ms + 100),
	                 SHM_EL3);
	snprintf(info, sizeof info, "PostgreSQL connection to %s port %d: no "
	         "answer within the l3_timeout_ms of 150 ms", SLOW_HOST, p);
	if (!strstr(shm_errmsg(), info))
		fail_msg("no %s in %s", info, shm_errmsg());
	close_rt(env);
	close(fd);

	/* a refused connection names the host and the address libpq was
	 * given */
	p = refusing_port(&fd);
	snprintf(info, sizeof info, "host=%s port=%d dbname=shm user=nobody",
	         SLOW_HOST, p);
	env = open_l3(info, l3_ms);
	assert_int_equal(get_resolves_nothing(env, "refused", l3_ms),
	                 SHM_EL3);
	snprintf(info, sizeof info, "PostgreSQL connection to %s: connection "
	         "to server at \"127.0.0.1\", port %d failed: Connection "
	         "refused", SLOW_HOST, p);
	if (!strstr(shm_errmsg(), info))
		fail_msg("no %s in %s", info, shm_errmsg());
	close_rt(env);
	close(fd);

	assert_open_unresolved("host=" NO_HOST " dbname=shm", NO_HOST);
	/* in a list, only when no host is left */
	assert_open_unresolved("host=" NO_HOST "," NO_HOST " port=1,2", NO_HOST);
	assert_open_unresolved("postgresql://u@" NO_HOST ":5/shm", NO_HOST);

	if (!redis_url || !port || !user)
		return; /* no test PostgreSQL */
	snprintf(info, sizeof info, "host=%s port=%s dbname=shm user=%s",
	         SLOW_HOST, port, user);
	assert_l3_reached(info, "a name");
	snprintf(info, sizeof info, "postgresql://%s@%s:%s/shm", user,
	         SLOW_HOST, port);
	assert_l3_reached(info, "a URI");
	snprintf(info, sizeof info, "host=/nonexistent.shm.test,%s port=%s "
	         "dbname=shm user=%s", SLOW_HOST, port, user);
	assert_l3_reached(info, "a list of hosts");
	/* a standby whose name is gone: libpq tries it, then the next */
	snprintf(info, sizeof info, "host=%s,%s port=%s,%s dbname=shm user=%s",
	         NO_HOST, SLOW_HOST, port, port, user);
	assert_l3_reached(info, "a list with a name that does not resolve");
	snprintf(info, sizeof info, "host=localhost port=%s dbname=shm "
	         "user=%s", port, user);
	assert_l3_reached(info, "localhost");
	snprintf(info, sizeof info, "host=%s hostaddr=127.0.0.1 port=%s "
	         "dbname=shm user=%s", SLOW_HOST, port, user);
	assert_l3_reached(info, "its own hostaddr");
	setenv("PGHOST", SLOW_HOST, 1);
	snprintf(info, sizeof info, "port=%s dbname=shm user=%s", port, user);
	assert_l3_reached(info, "PGHOST");
	unsetenv("PGHOST");
}

/* A read from PostgreSQL that times out names the server it waited for,
 * as a failed connection does: a mute server (accepts, never answers) by
 * its address, with its port, then the test PostgreSQL over TCP while a
 * session holds messages locked (the query waits). */
static void test_l3_timeout_names_the_host(void **state)
{
	const char *port = getenv("SHM_TEST_PG_PORT");
	const char *user = getenv("SHM_TEST_PG_USER");
	char info[300], want[400];
	shm_uuid id;
	shm_env *env;
	int fd, p;

	shm_uuid_v7(&id);
	p = refusing_port(&fd);
	assert_int_equal(listen(fd, 16), 0);
	snprintf(info, sizeof info, "host=127.0.0.1 port=%d dbname=shm "
	         "user=nobody", p);
	env = open_l3(info, 150);
	snprintf(want, sizeof want, "PostgreSQL connection to 127.0.0.1 port "
	         "%d: no answer within the l3_timeout_ms of 150 ms", p);
	assert_reason(env, &id, SHM_EL3, want);
	close_rt(env);
	close(fd);

	if (!redis_url || !port || !user)
		return; /* no test PostgreSQL */
	PGconn *db = pg();
	pg_exec(db, "BEGIN", 0, NULL);
	pg_exec(db, "LOCK TABLE messages IN ACCESS EXCLUSIVE MODE", 0, NULL);
	snprintf(info, sizeof info, "host=127.0.0.1 port=%s dbname=shm "
	         "user=%s", port, user);
	env = open_l3(info, 1000); /* time to connect on a loaded machine */
	shm_msg *got;
	int rc = shm_msg_get(env, &id, &got);
	char *e = strdup(shm_errmsg());
	pg_exec(db, "ROLLBACK", 0, NULL); /* before any assert: the lock */
	PQfinish(db);
	fprintf(stderr, "%s\n", e);
	assert_int_equal(rc, SHM_EL3);
	snprintf(want, sizeof want, "PostgreSQL query on 127.0.0.1 port %s: "
	         "no answer within the l3_timeout_ms of 1000 ms", port);
	if (!strstr(e, want))
		fail_msg("\"%s\", want \"%s\" in it", e, want);
	free(e);
	close_rt(env);
}

/* 25 rows only in PostgreSQL, with ties on created_at. */
static void seed_room(PGconn *db, const char *room, shm_msg *m, int n,
                      int64_t t0)
{
	for (int i = 0; i < n; i++) {
		/* every third message shares its predecessor's time */
		int64_t t = t0 + (int64_t)(i - i / 3) * 1000001;
		m[i] = plain_msg(room, t, "pg row");
		pg_put(db, &m[i]);
	}
}

static void test_room_page_from_postgres_matches_postgres(void **state)
{
	NEED_SERVERS();
	char room[64];
	shm_msg m[25], *got, **page;
	shm_counters c;
	PGconn *db = pg();
	const int64_t t0 = INT64_C(1700000100000000);

	room_name(room, sizeof room, "pgroom");
	seed_room(db, room, m, 25, t0);
	shm_env *env = open_rt(redis_url, pg_info, 50, 0);

	/* L1 knows nothing of the room: every page is PostgreSQL's */
	assert_page_is_pg(env, db, room, 0, 10);
	assert_page_is_pg(env, db, room, 0, 100);
	assert_page_is_pg(env, db, room, m[13].created_at, 5); /* on a tie */
	assert_page_is_pg(env, db, room, m[13].created_at + 1, 5);
	assert_page_is_pg(env, db, room, m[0].created_at, 5);  /* empty */
	assert_page_is_pg(env, db, room, m[0].created_at + 1, 5);
	shm_stats_local(env, &c);
	assert_int_equal(c.room_pages_l3, 6);

	/* a few messages filled into L1 by gets do not make L1 "complete" */
	int picks[] = {24, 20, 9};
	for (int i = 0; i < 3; i++) {
		assert_int_equal(shm_msg_get(env, &m[picks[i]].id, &got), 0);
		shm_msg_free(got);
	}
	assert_page_is_pg(env, db, room, 0, 1);
	assert_page_is_pg(env, db, room, 0, 2);
	assert_page_is_pg(env, db, room, 0, 3);
	assert_page_is_pg(env, db, room, m[20].created_at + 1, 3);
	assert_page_is_pg(env, db, room, 0, 30);

	/* unflushed L1 messages are merged in: new ones (one on a tie with a
	 * PostgreSQL row, one newest) and an edit of a filled one (L1's state
	 * wins) */
	shm_msg l1[2] = {plain_msg(room, m[16].created_at, "in L1 only, tie"),
	                 plain_msg(room, m[24].created_at + 5, "in L1, newest")};
	for (int i = 0; i < 2; i++)
		assert_int_equal(shm_msg_put(env, &l1[i]), 0);
	assert_int_equal(shm_msg_edit(env, &m[20].id, "edited in L1", 12), 0);
	shm_msg *pages[4][64];
	size_t np[4];
	struct {
		int64_t before;
		uint32_t limit;
	} q[4] = {{0, 3}, {0, 40}, {m[18].created_at, 6}, {m[16].created_at + 1, 4}};
	for (int k = 0; k < 4; k++) {
		assert_int_equal(shm_room_page(env, room, q[k].before, q[k].limit,
		                               &page, &np[k]), 0);
		memcpy(pages[k], page, np[k] * sizeof *page);
		free(page);
	}
	bool seen_edit = false;
	for (size_t i = 0; i < np[1]; i++)
		if (!memcmp(pages[1][i]->id.b, m[20].id.b, 16)) {
			assert_int_equal(pages[1][i]->content_len, 12);
			assert_memory_equal(pages[1][i]->content, "edited in L1", 12);
			seen_edit = true;
		}
	assert_true(seen_edit);
	/* what PostgreSQL alone returns once the flusher has caught up */
	for (int i = 0; i < 2; i++)
		pg_put(db, &l1[i]);
	assert_int_equal(shm_msg_get(env, &m[20].id, &got), 0);
	pg_put(db, got);
	shm_msg_free(got);
	for (int k = 0; k < 4; k++) {
		shm_uuid want[64];
		size_t nw = tu_pg_page(db, room, q[k].before, q[k].limit, want);
		assert_int_equal(np[k], nw);
		for (size_t i = 0; i < nw; i++)
			assert_memory_equal(pages[k][i]->id.b, want[i].b, 16);
		for (size_t i = 0; i < np[k]; i++) /* the array was copied */
			shm_msg_free(pages[k][i]);
	}
	for (int k = 0; k < 4; k++)
		assert_page_is_pg(env, db, room, q[k].before, q[k].limit);
	PQfinish(db);
	close_rt(env);
	cleanup();
}

static void test_room_page_with_evictions(void **state)
{
	NEED_SERVERS();
	char room[64];
	shm_msg m[14], **page;
	shm_counters c, c2;
	size_t n;
	PGconn *db = pg();

	room_name(room, sizeof room, "evict");
	shm_env *env = open_rt(redis_url, pg_info, 50, 8);
	/* after the environment's creation: L1 vouches for nothing older */
	const int64_t t0 = shm_now_us();
	/* 8 messages written through L1, mirrored to PostgreSQL and marked
	 * flushed (what the flusher does), then 6 more: 6 of the first ones are
	 * evicted to make room */
	for (int i = 0; i < 8; i++) {
		m[i] = plain_msg(room, t0 + i * 1000, "flushed");
		assert_int_equal(shm_msg_put(env, &m[i]), 0);
		pg_put(db, &m[i]);
	}
	shm_info in;
	assert_int_equal(shm_env_info(env, &in), 0);
	assert_int_equal(shm_log_trim(env, in.log_last), 0);
	for (int i = 8; i < 14; i++) {
		m[i] = plain_msg(room, t0 + i * 1000, "unflushed");
		assert_int_equal(shm_msg_put(env, &m[i]), 0);
	}
	shm_stats_local(env, &c);
	assert_int_equal(c.evictions, 6);

	/* the newest 6 are all in L1, newer than anything evicted: L1 answers
	 * alone, PostgreSQL is not asked */
	assert_int_equal(shm_room_page(env, room, 0, 6, &page, &n), 0);
	assert_int_equal(n, 6);
	for (size_t i = 0; i < n; i++)
		assert_memory_equal(page[i]->id.b, m[13 - i].id.b, 16);
	shm_msgs_free(page, n);
	assert_int_equal(shm_room_page(env, room, m[12].created_at, 3, &page, &n), 0);
	assert_int_equal(n, 3);
	shm_msgs_free(page, n);
	shm_stats_local(env, &c2);
	assert_int_equal(c2.room_pages - c.room_pages, 2);
	assert_int_equal(c2.room_pages_l3, c.room_pages_l3);

	/* which of the first 8 are still in L1 */
	bool in_l1[14];
	shm_rtxn *t;
	assert_int_equal(shm_rtxn_begin(env, &t), 0);
	for (int i = 0; i < 14; i++) {
		const shm_msg *v;
		in_l1[i] = shm_msg_view(t, &m[i].id, &v) == 0;
	}
	shm_rtxn_end(t);
	for (int i = 8; i < 14; i++)
		assert_true(in_l1[i]);

	/* pages reaching below the evictions (or short ones) come from
	 * PostgreSQL merged with L1's unflushed messages */
	int64_t bef[] = {0, 0, m[10].created_at, m[9].created_at + 1,
	                 m[3].created_at, m[7].created_at};
	uint32_t lim[] = {9, 20, 6, 5, 2, 3};
	shm_msg **pages[6];
	size_t np[6];
	uint64_t l3[6];
	for (int k = 0; k < 6; k++) {
		shm_stats_local(env, &c);
		assert_int_equal(shm_room_page(env, room, bef[k], lim[k],
		                               &pages[k], &np[k]), 0);
		shm_stats_local(env, &c2);
		l3[k] = c2.room_pages_l3 - c.room_pages_l3;
	}
	for (int i = 8; i < 14; i++)
		pg_put(db, &m[i]); /* the flusher catches up */
	for (int k = 0; k < 6; k++) {
		shm_uuid want[64];
		size_t nw = tu_pg_page(db, room, bef[k], lim[k], want);
		bool evicted = nw < lim[k];
		assert_int_equal(np[k], nw);
		for (size_t i = 0; i < nw; i++) {
			assert_memory_equal(pages[k][i]->id.b, want[i].b, 16);
			for (int j = 0; j < 14; j++)
				if (!memcmp(want[i].b, m[j].id.b, 16) && !in_l1[j])
					evicted = true;
		}
		if (evicted)
			assert_int_equal(l3[k], 1);
		shm_msgs_free(pages[k], np[k]);
	}
	PQfinish(db);
	close_rt(env);
	cleanup();
}

/* created_at/updated_at come back to the microsecond whatever the session
 * time zone of the writer, of the libpq environment (PGTZ) or of the
 * conninfo's own options, with a keyword or a URI conninfo, down to the
 * first microsecond after the epoch, the earliest a message holds (rows
 * before it: test_room_page_leaves_off_rows_put_would_refuse). */
static void test_timestamps_round_trip_whatever_the_time_zone(void **state)
{
	NEED_SERVERS();
	char room[64], uri[4096], kw[4096];
	shm_msg *got, **page;
	size_t n;
	PGconn *db = pg();
	shm_uuid id[3];
	char ids[3][37];

	room_name(room, sizeof room, "tz");
	pg_exec(db, "SET TimeZone = 'Asia/Kathmandu'", 0, NULL); /* +05:45 */
	for (int i = 0; i < 3; i++) {
		shm_uuid_v7(&id[i]);
		shm_uuid_format(&id[i], ids[i]);
		track(&id[i]);
	}
	/* 2021-03-27T20:45:00.000001Z, written in a +05:45 session; updated_at
	 * with a -03:30 offset; an explicit +02 offset; 1 us after the epoch */
	const char *p[2] = {ids[0], room};
	pg_exec(db,
	        "INSERT INTO messages (id, room_id, user_id, username, content,"
	        " message_type, created_at, updated_at, metadata, content_hash)"
	        " VALUES ($1, $2, 1, 'u', 'tz', 'Text',"
	        " '2021-03-28 02:30:00.000001', '2021-03-27 17:15:00.999999-03:30',"
	        " '{}', '0')", 2, p);
	p[0] = ids[1];
	pg_exec(db,
	        "INSERT INTO messages (id, room_id, user_id, username, content,"
	        " message_type, created_at, metadata, content_hash)"
	        " VALUES ($1, $2, 1, 'u', 'tz', 'Text',"
	        " '2024-03-31 02:30:00.5+02', '{}', '0')", 2, p);
	p[0] = ids[2];
	pg_exec(db,
	        "INSERT INTO messages (id, room_id, user_id, username, content,"
	        " message_type, created_at, metadata, content_hash)"
	        " VALUES ($1, $2, 1, 'u', 'tz', 'Text',"
	        " '1970-01-01 00:00:00.000001Z', '{}', '0')", 2, p);
	/* date -u -d 2021-03-27T20:45:00Z +%s -> 1616877900 */
	const int64_t want_c[3] = {INT64_C(1616877900000001),
	                           INT64_C(1711845000500000), /* 00:30:00.5Z */
	                           INT64_C(1)};
	const int64_t want_u0 = INT64_C(1616877900999999);

	snprintf(kw, sizeof kw, "%s options='-c TimeZone=America/St_Johns'",
	         pg_info);
	/* the same server as a URI: host is a socket dir in SHM_TEST_PG */
	const char *h = strstr(pg_info, "host="), *pt = strstr(pg_info, "port="),
	           *u = strstr(pg_info, "user=");
	assert_non_null(h);
	snprintf(uri, sizeof uri, "postgresql:///shm?host=%.*s&port=%.*s%s%.*s"
	         "&options=-c%%20TimeZone%%3DPacific/Chatham",
	         (int)strcspn(h + 5, " "), h + 5,
	         pt ? (int)strcspn(pt + 5, " ") : 4, pt ? pt + 5 : "5432",
	         u ? "&user=" : "", u ? (int)strcspn(u + 5, " ") : 0,
	         u ? u + 5 : "");
	const char *conns[3] = {pg_info, kw, uri};
	setenv("PGTZ", "Australia/Eucla", 1); /* +08:45 */
	for (int k = 0; k < 3; k++) {
		shm_options o;
		shm_options_init(&o);
		o.pg_conninfo = conns[k];
		o.l3_timeout_ms = 2000;
		dir = tu_tmpdir();
		shm_env *env = tu_open(dir, &o);
		for (int i = 0; i < 3; i++) {
			if (shm_msg_get(env, &id[i], &got))
				fail_msg("conninfo %s: get: %s", conns[k],
				         shm_errmsg());
			assert_int_equal(got->created_at, want_c[i]);
			assert_int_equal(got->updated_at, i == 0 ? want_u0 : 0);
			shm_msg_free(got);
		}
		/* the page bound is exact too: strictly before, to the µs */
		assert_int_equal(shm_room_page(env, room, want_c[0], 10, &page,
		                               &n), 0);
		assert_int_equal(n, 1);
		assert_int_equal(page[0]->created_at, 1);
		shm_msgs_free(page, n);
		assert_int_equal(shm_room_page(env, room, want_c[0] + 1, 10,
		                               &page, &n), 0);
		assert_int_equal(n, 2);
		shm_msgs_free(page, n);
		close_rt(env);
	}
	PQfinish(db);
	cleanup();
}

/* PGTZ, which libpq sends after the conninfo's options, changes nothing:
 * a message only in PostgreSQL comes back with its times to the
 * microsecond, on a room page and by get. Tokyo (+09:00) writes the last
 * hours of 9999 in year 10000; Monrovia's offset until 1972 has seconds
 * (-00:44:30). */
static void test_pgtz_changes_no_time_read_from_postgres(void **state)
{
	NEED_SERVERS();
	static const struct {
		const char *tz;
		int64_t created;
	} cases[] = {
		{"Asia/Tokyo", INT64_C(253402286400000001)}, /* 9999-12-31T20Z */
		{"Africa/Monrovia", INT64_C(44625600123456)}, /* 1971-06-01T12Z */
	};
	char room[64];
	shm_msg m, *got, **page;
	shm_counters c;
	size_t n;
	PGconn *db = pg();

	for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
		snprintf(room, sizeof room, "%s-pgtz%zu", prefix, k);
		m = full_msg(room, cases[k].created, "zoned");
		pg_put(db, &m);
		setenv("PGTZ", cases[k].tz, 1); /* read by libpq as it connects */
		shm_env *env = open_rt(redis_url, pg_info, 50, 0);

		/* L1 knows nothing of the room: the page is PostgreSQL's */
		assert_int_equal(shm_room_page(env, room, 0, 10, &page, &n), 0);
		if (n != 1)
			fail_msg("PGTZ=%s: page of %zu messages, want 1: %s",
			         cases[k].tz, n, shm_errmsg());
		tu_assert_msg_equal(page[0], &m);
		shm_msgs_free(page, n);

		if (shm_msg_get(env, &m.id, &got))
			fail_msg("PGTZ=%s: get: %s", cases[k].tz, shm_errmsg());
		assert_int_equal(got->created_at, m.created_at);
		assert_int_equal(got->updated_at, m.updated_at);
		assert_int_equal(got->last_reply_at, m.last_reply_at);
		tu_assert_msg_equal(got, &m);
		shm_msg_free(got);
		shm_stats_local(env, &c);
		assert_int_equal(c.room_pages_l3, 1);
		assert_int_equal(c.l3_hits, 1);
		assert_int_equal(c.l3_errors, 0);
		close_rt(env);
	}
	PQfinish(db);
	cleanup();
}

/* PGCLIENTENCODING, which libpq sends unless the conninfo names one,
 * changes nothing: text comes back in UTF-8. In LATIN1 'é' came back as
 * one byte (not UTF-8: refused) and a row with an emoji failed the query. */
static void test_pgclientencoding_changes_no_text_read_from_postgres(void **state)
{
	NEED_SERVERS();
	char room[64], kw[4096];
	shm_msg m, *got, **page;
	size_t n;
	shm_counters c;
	PGconn *db = pg();

	room_name(room, sizeof room, "latin1");
	m = full_msg(room, INT64_C(1700000009000000), "caf\xc3\xa9 \xf0\x9f\x90\x98");
	pg_put(db, &m);
	PQfinish(db);
	setenv("PGCLIENTENCODING", "LATIN1", 1);
	/* the conninfo's own client_encoding is overridden too */
	snprintf(kw, sizeof kw, "%s client_encoding=LATIN1", pg_info);
	const char *conns[2] = {pg_info, kw};
	for (int k = 0; k < 2; k++) {
		shm_env *env = open_rt(NULL, conns[k], 50, 0);
		assert_int_equal(shm_room_page(env, room, 0, 10, &page, &n), 0);
		if (n != 1)
			fail_msg("conninfo %s: page of %zu messages, want 1: %s",
			         conns[k], n, shm_errmsg());
		tu_assert_msg_equal(page[0], &m);
		shm_msgs_free(page, n);
		if (shm_msg_get(env, &m.id, &got))
			fail_msg("conninfo %s: get: %s", conns[k], shm_errmsg());
		tu_assert_msg_equal(got, &m);
		shm_msg_free(got);
		shm_stats_local(env, &c);
		assert_int_equal(c.room_pages_l3, 1);
		assert_int_equal(c.l3_hits, 1);
		assert_int_equal(c.l3_errors, 0);
		close_rt(env);
	}
	cleanup();
}

/* ---------------------------------------------- values, races, bounds */

struct getter {
	shm_env *env;
	shm_uuid id;
	shm_msg *got;
	int rc;
	uint64_t ms;
};

static void *getter_run(void *arg)
{
	struct getter *g = arg;
	uint64_t t0 = now_ms();
	g->rc = shm_msg_get(g->env, &g->id, &g->got);
	g->ms = now_ms() - t0;
	return NULL;
}

/* Waits until the read-through's SELECT waits for a lock. */
static void wait_for_blocked_select(PGconn *c)
{
	for (int i = 0; i < 500; i++) {
		PGresult *r = PQexec(c, "SELECT count(*) FROM pg_stat_activity "
		                        "WHERE wait_event_type = 'Lock' AND "
		                        "query LIKE 'SELECT json_build_object%'");
		bool blocked = PQresultStatus(r) == PGRES_TUPLES_OK &&
		               atoi(PQgetvalue(r, 0, 0)) > 0;
		PQclear(r);
		if (blocked)
			return;
		tu_sleep_ms(10);
	}
	fail_msg("the read-through's SELECT never waited for the lock");
}

static shm_msg with_content(shm_msg m, const char *content)
{
	m.content = content;
	m.content_len = (uint32_t)strlen(content);
	m.content_hash = XXH3_64bits(content, m.content_len);
	return m;
}

/* A fill does not write over what the flusher wrote meanwhile: a get finds
 * nothing in Redis, v1 in PostgreSQL; before its fill the flusher SETs v2.
 * Redis keeps v2 (the fill is SET NX; only a bad value is written over, see
 * test_redis_value_of_another_message_is_a_miss). */
static void test_fill_does_not_overwrite_a_newer_redis_value(void **state)
{
	NEED_SERVERS();
	char room[64], *json, *val;
	size_t len;
	long long ttl;
	shm_msg v1, v2;
	pthread_t t;
	PGconn *db = pg(), *locker = pg();

	room_name(room, sizeof room, "fillnx");
	v1 = full_msg(room, INT64_C(1700000040000000), "v1");
	v2 = with_content(v1, "v2, written by the flusher");
	pg_put(db, &v1);
	shm_env *env = open_rt(redis_url, pg_info, 50, 0);
	struct getter g = {.env = env, .id = v1.id};

	pg_exec(locker, "BEGIN", 0, NULL);
	pg_exec(locker, "LOCK TABLE messages IN ACCESS EXCLUSIVE MODE", 0, NULL);
	assert_int_equal(pthread_create(&t, NULL, getter_run, &g), 0);
	wait_for_blocked_select(db); /* Redis said nil before that */
	assert_int_equal(shm_msg_to_json(&v2, &json, &len), 0);
	redis_set(&v2.id, json, len); /* the flusher's SET, EX 600 */
	pg_exec(locker, "COMMIT", 0, NULL);
	pthread_join(t, NULL);
	assert_int_equal(g.rc, 0);
	tu_assert_msg_equal(g.got, &v1); /* what PostgreSQL had */
	shm_msg_free(g.got);
	val = redis_get(&v1.id, &len, &ttl);
	assert_non_null(val);
	assert_string_equal(val, json);
	assert_true(ttl > 0 && ttl <= 600);
	free(val);
	free(json);
	close_rt(env);
	PQfinish(locker);
	PQfinish(db);
	cleanup();
}

/* A Redis sending its answer 2 bytes every 30 ms: each read is quick, the
 * whole exchange is not; it costs l2_timeout_ms, then PostgreSQL answers. */
static void test_trickling_redis_costs_at_most_the_timeout(void **state)
{
	NEED_SERVERS();
	const uint32_t l2_ms = 50;
	char room[64], *json;
	shm_msg m, *got;
	shm_counters c;
	fake_redis f = {.chunk = 2, .chunk_ms = 30};
	char *sdir = tu_tmpdir();
	PGconn *db = pg();

	room_name(room, sizeof room, "trickle");
	m = full_msg(room, INT64_C(1700000041000000), "two bytes at a time");
	pg_put(db, &m);
	assert_int_equal(shm_msg_to_json(&m, &json, NULL), 0);
	f.value = json;
	fake_start(&f, sdir);
	shm_env *env = open_rt(f.url, pg_info, l2_ms, 0);
	uint64_t t0 = now_ms();
	assert_int_equal(shm_msg_get(env, &m.id, &got), 0);
	uint64_t dt = now_ms() - t0;
	tu_assert_msg_equal(got, &m);
	shm_msg_free(got);
	fprintf(stderr, "get with a trickling Redis: %" PRIu64 " ms "
	        "(l2_timeout %u ms)\n", dt, l2_ms);
	shm_stats_local(env, &c);
	assert_int_equal(c.l2_errors, 1);
	assert_int_equal(c.l2_hits, 0);
	assert_int_equal(c.l3_hits, 1);
	if (dt > l2_ms + 200)
		fail_msg("trickling Redis: %" PRIu64 " ms", dt);
	close_rt(env);
	fake_stop(&f);
	free(json);
	PQfinish(db);
	tu_rmdir(sdir);
	free(sdir);
	cleanup();
}

/* m's JSON then pad spaces: valid JSON, larger than any message's. */
static char *padded_json(const shm_msg *m, size_t pad, size_t *len)
{
	char *json, *s;
	size_t n;
	assert_int_equal(shm_msg_to_json(m, &json, &n), 0);
	s = malloc(n + pad + 1);
	assert_non_null(s);
	memcpy(s, json, n);
	memset(s + n, ' ', pad);
	s[n + pad] = 0;
	free(json);
	*len = n + pad;
	return s;
}

/* msg:<id> holds the message followed by 64 MiB of spaces: refused as it
 * comes in (not read whole, within a generous timeout), an L2 error;
 * PostgreSQL answers and its fill replaces the bad value. */
static void test_redis_value_larger_than_any_message_is_refused(void **state)
{
	NEED_SERVERS();
	char room[64], *big, *val, *want;
	size_t len;
	long long ttl;
	shm_msg m, r, *got;
	shm_counters c;
	PGconn *db = pg();

	room_name(room, sizeof room, "bigval");
	m = full_msg(room, INT64_C(1700000042000000), "from PostgreSQL");
	r = with_content(m, "from Redis");
	pg_put(db, &m);
	big = padded_json(&r, (size_t)64 << 20, &len);
	redis_set(&m.id, big, len);
	free(big);
	shm_env *env = open_rt(redis_url, pg_info, 5000, 0);
	uint64_t t0 = now_ms();
	assert_int_equal(shm_msg_get(env, &m.id, &got), 0);
	uint64_t dt = now_ms() - t0;
	tu_assert_msg_equal(got, &m);
	shm_msg_free(got);
	fprintf(stderr, "get past a 64 MiB Redis value: %" PRIu64 " ms\n", dt);
	shm_stats_local(env, &c);
	assert_int_equal(c.l2_errors, 1);
	assert_int_equal(c.l2_hits, 0);
	assert_int_equal(c.l3_hits, 1);
	if (dt > 500)
		fail_msg("64 MiB value: %" PRIu64 " ms (read whole?)", dt);
	val = redis_get(&m.id, &len, &ttl);
	assert_int_equal(shm_msg_to_json(&m, &want, NULL), 0);
	assert_string_equal(val, want);
	free(want);
	free(val);
	close_rt(env);
	PQfinish(db);
	cleanup();
}

/* An LZ4 frame of json then pad spaces (a multiple of 1 MiB), compressed a
 * MiB at a time: a few hundred KiB that decompress to pad bytes. */
static void *lz4_padded(const char *json, size_t len, size_t pad,
                        size_t *zlen)
{
	static char spaces[1 << 20];
	size_t cap = (size_t)16 << 20, off, n;
	LZ4F_cctx *c;
	char *z = malloc(cap);

	memset(spaces, ' ', sizeof spaces);
	assert_false(LZ4F_isError(LZ4F_createCompressionContext(&c, LZ4F_VERSION)));
	off = LZ4F_compressBegin(c, z, cap, NULL);
	assert_false(LZ4F_isError(off));
	n = LZ4F_compressUpdate(c, z + off, cap - off, json, len, NULL);
	assert_false(LZ4F_isError(n));
	off += n;
	for (size_t done = 0; done < pad; done += sizeof spaces) {
		assert_true(cap - off > LZ4F_compressBound(sizeof spaces, NULL));
		n = LZ4F_compressUpdate(c, z + off, cap - off, spaces,
		                        sizeof spaces, NULL);
		assert_false(LZ4F_isError(n));
		off += n;
	}
	n = LZ4F_compressEnd(c, z + off, cap - off, NULL);
	assert_false(LZ4F_isError(n));
	LZ4F_freeCompressionContext(c);
	*zlen = off + n;
	return z;
}

/* A small LZ4 value decompressing to 256 MiB (a message and spaces): the
 * decompression stops at the largest JSON a message can have, an L2
 * error; PostgreSQL answers. */
static void test_lz4_value_inflating_beyond_any_message_is_refused(void **state)
{
	NEED_SERVERS();
	char room[64], *json;
	size_t len, zlen;
	shm_msg m, r, *got;
	shm_counters c;
	PGconn *db = pg();

	room_name(room, sizeof room, "bomb");
	m = full_msg(room, INT64_C(1700000043000000), "from PostgreSQL");
	r = with_content(m, "from Redis");
	pg_put(db, &m);
	assert_int_equal(shm_msg_to_json(&r, &json, &len), 0);
	void *z = lz4_padded(json, len, (size_t)256 << 20, &zlen);
	free(json);
	assert_true(zlen < (2u << 20));
	redis_set(&m.id, z, zlen);
	free(z);
	shm_env *env = open_rt(redis_url, pg_info, 5000, 0);
	uint64_t t0 = now_ms();
	assert_int_equal(shm_msg_get(env, &m.id, &got), 0);
	uint64_t dt = now_ms() - t0;
	tu_assert_msg_equal(got, &m);
	shm_msg_free(got);
	fprintf(stderr, "get past a %zu-byte LZ4 bomb: %" PRIu64 " ms\n", zlen,
	        dt);
	shm_stats_local(env, &c);
	assert_int_equal(c.l2_errors, 1);
	assert_int_equal(c.l2_hits, 0);
	assert_int_equal(c.l3_hits, 1);
	close_rt(env);
	PQfinish(db);
	cleanup();
}

/* A Redis value that is not exactly one whole LZ4 frame is damaged, an
 * L2 error: bytes after a complete frame (a second frame included), a
 * frame without its end mark. Only in Redis: the get says why; in
 * PostgreSQL too: PostgreSQL answers. */
static void test_lz4_value_not_one_whole_frame_is_refused(void **state)
{
	NEED_SERVERS();
	char room[64], *json, val[8192];
	size_t len, zlen;
	shm_msg m, r, *got;
	shm_counters c;
	PGconn *db = pg();

	room_name(room, sizeof room, "frames");
	m = full_msg(room, INT64_C(1700000043500000), "from PostgreSQL");
	r = with_content(m, "from Redis");
	assert_int_equal(shm_msg_to_json(&r, &json, &len), 0);
	void *z = lz4(json, len, &zlen);
	free(json);
	assert_true(2 * zlen + 1 <= sizeof val);
	static const struct {
		int shape; /* 0: one byte after, 1: the frame twice, 2: cut */
		const char *why;
	} cases[] = {
		{0, "Redis value: 1 byte after its LZ4 frame; not in "
		    "PostgreSQL"},
		{1, "bytes after its LZ4 frame; not in PostgreSQL"},
		{2, "Redis value: not a whole LZ4 frame; not in PostgreSQL"},
	};
	shm_env *env = open_rt(redis_url, pg_info, 5000, 0);
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		size_t n = zlen;
		memcpy(val, z, zlen);
		if (cases[i].shape == 0) {
			val[n++] = 0;
		} else if (cases[i].shape == 1) {
			memcpy(val + zlen, z, zlen);
			n += zlen;
		} else {
			n -= 4; /* the end mark */
		}
		redis_set(&m.id, val, n);
		assert_reason(env, &m.id, SHM_ENOTFOUND, cases[i].why);
	}
	/* the whole frame alone is served */
	redis_set(&m.id, z, zlen);
	assert_int_equal(shm_msg_get(env, &m.id, &got), 0);
	tu_assert_msg_equal(got, &r);
	shm_msg_free(got);
	close_rt(env);
	/* in PostgreSQL too: PostgreSQL answers, Redis counted as an error */
	pg_put(db, &m);
	memcpy(val, z, zlen);
	val[zlen] = 0;
	redis_set(&m.id, val, zlen + 1);
	env = open_rt(redis_url, pg_info, 5000, 0);
	assert_int_equal(shm_msg_get(env, &m.id, &got), 0);
	tu_assert_msg_equal(got, &m);
	shm_msg_free(got);
	shm_stats_local(env, &c);
	assert_int_equal(c.l2_errors, 1);
	assert_int_equal(c.l2_hits, 0);
	assert_int_equal(c.l3_hits, 1);
	close_rt(env);
	free(z);
	PQfinish(db);
	cleanup();
}

/* A value that put would refuse is that level's error: neither served nor
 * filled, and the next level is asked; in the last level, the get is its
 * error (SHM_EL3: the message is there, not "not found"). In Redis: JSON
 * without created_at (every stored message has one: put sets it) and
 * content over max_content; in PostgreSQL: content over max_content. */
static void test_values_put_would_refuse_are_the_levels_error(void **state)
{
	NEED_SERVERS();
	char room[64], ids[37], nocreated[1024], *json, big[201], *val;
	size_t len;
	long long ttl;
	shm_msg a, b, cc, *got;
	shm_counters k;
	shm_options o;
	shm_rtxn *t;
	const shm_msg *v;
	PGconn *db = pg();

	memset(big, 'x', 200);
	big[200] = 0;
	room_name(room, sizeof room, "invalid");
	a = full_msg(room, INT64_C(1700000044000000), "A from PostgreSQL");
	b = full_msg(room, INT64_C(1700000045000000), "B from PostgreSQL");
	cc = full_msg(room, INT64_C(1700000046000000), big);
	pg_put(db, &a);
	pg_put(db, &b);
	pg_put(db, &cc);
	shm_uuid_format(&a.id, ids);
	snprintf(nocreated, sizeof nocreated,
	         "{\"id\":\"%s\",\"room_id\":\"%s\",\"user_id\":1,"
	         "\"username\":\"u\",\"content\":\"A from Redis\","
	         "\"message_type\":\"Text\",\"updated_at\":null,"
	         "\"parent_id\":null,\"thread_id\":null}", ids, room);
	redis_set(&a.id, nocreated, strlen(nocreated));
	shm_msg rb = with_content(b, big);
	assert_int_equal(shm_msg_to_json(&rb, &json, &len), 0);
	redis_set(&b.id, json, len);
	free(json);

	shm_options_init(&o);
	o.redis_url = redis_url;
	o.pg_conninfo = pg_info;
	o.l3_timeout_ms = 2000;
	o.max_content = 100;
	dir = tu_tmpdir();
	shm_env *env = tu_open(dir, &o);
	assert_int_equal(shm_msg_get(env, &a.id, &got), 0);
	tu_assert_msg_equal(got, &a);
	shm_msg_free(got);
	assert_int_equal(shm_msg_get(env, &b.id, &got), 0);
	tu_assert_msg_equal(got, &b);
	shm_msg_free(got);
	/* PostgreSQL, the record, holds it but cannot serve it: its error */
	assert_int_equal(shm_msg_get(env, &cc.id, &got), SHM_EL3);
	fprintf(stderr, "refused: %s\n", shm_errmsg());
	assert_non_null(strstr(shm_errmsg(), "PostgreSQL value: content: 200 "
	                                     "bytes, at most 100 allowed"));
	shm_stats_local(env, &k);
	assert_int_equal(k.l2_errors, 2);
	assert_int_equal(k.l2_hits, 0);
	assert_int_equal(k.l2_misses, 1);
	assert_int_equal(k.l3_hits, 2);
	assert_int_equal(k.l3_errors, 1);
	assert_int_equal(k.fills, 2);
	assert_int_equal(shm_rtxn_begin(env, &t), 0);
	assert_int_equal(shm_msg_view(t, &cc.id, &v), SHM_ENOTFOUND);
	shm_rtxn_end(t);
	/* the fills wrote the good values over the bad ones */
	for (int i = 0; i < 2; i++) {
		const shm_msg *m = i ? &b : &a;
		val = redis_get(&m->id, &len, &ttl);
		assert_int_equal(shm_msg_to_json(m, &json, NULL), 0);
		assert_string_equal(val, json);
		free(json);
		free(val);
	}
	close_rt(env);
	PQfinish(db);
	cleanup();
}

/* Fills are not writes: a message PostgreSQL holds soft-deleted fills L1
 * as it is, and is final there (a put bringing it back is SHM_EDELETED, as
 * for one deleted in L1). A row of type Delete with other content than a
 * soft delete leaves is one put would refuse: PostgreSQL's bad data, as
 * test_values_put_would_refuse_are_the_levels_error. */
static void test_deleted_message_fills_l1_as_it_is(void **state)
{
	NEED_SERVERS();
	char room[64];
	shm_msg d, bad, *got;

	room_name(room, sizeof room, "deleted");
	d = full_msg(room, INT64_C(1700000050000000), SHM_DELETED_CONTENT);
	d.type = SHM_MSG_DELETE;
	bad = full_msg(room, INT64_C(1700000051000000), "deleted, yet readable");
	bad.type = SHM_MSG_DELETE;
	PGconn *db = pg();
	pg_put(db, &d);
	pg_put(db, &bad);
	PQfinish(db);

	shm_env *env = open_rt(redis_url, pg_info, 50, 0);
	assert_int_equal(shm_msg_get(env, &d.id, &got), 0);
	tu_assert_msg_equal(got, &d);
	shm_msg_free(got);
	shm_rtxn *t;
	const shm_msg *v;
	assert_int_equal(shm_rtxn_begin(env, &t), 0);
	assert_int_equal(shm_msg_view(t, &d.id, &v), 0); /* filled */
	shm_rtxn_end(t);
	shm_msg back = with_content(d, "back");
	back.type = SHM_MSG_TEXT;
	assert_int_equal(shm_msg_put(env, &back), SHM_EDELETED);
	assert_int_equal(shm_msg_get(env, &bad.id, &got), SHM_EL3);
	assert_non_null(strstr(shm_errmsg(), "PostgreSQL value: message_type "
	                                     "Delete: content must be"));
	close_rt(env);
	cleanup();
}

/* An edit, a reaction or a soft delete of a message L1 does not hold (it
 * dropped it once flushed: l1_ttl_s is 5 minutes) reads it through, as a
 * get would, and changes it: it was SHM_ENOTFOUND ("not in L1"), so a chat
 * could not edit or delete any message older than the L1 TTL. One that no
 * level has is still SHM_ENOTFOUND, and one PostgreSQL cannot say about
 * SHM_EL3. */
static void test_edit_react_delete_of_a_message_only_in_postgres(void **state)
{
	NEED_SERVERS();
	char room[64];
	shm_msg m[3], *got;
	shm_uuid nowhere;

	room_name(room, sizeof room, "change");
	for (int i = 0; i < 3; i++) {
		m[i] = plain_msg(room, INT64_C(1700000060000000) + i, "old");
		m[i].user_id = 7;
	}
	PGconn *db = pg();
	for (int i = 0; i < 3; i++)
		pg_put(db, &m[i]);
	PQfinish(db);

	shm_env *env = open_rt(redis_url, pg_info, 50, 0);
	uint64_t recs = log_records(env);
	assert_int_equal(shm_msg_edit(env, &m[0].id, "new", 3), 0);
	assert_int_equal(shm_msg_react(env, &m[1].id, 9, "ok", true), 0);
	assert_int_equal(shm_msg_delete(env, &m[2].id), 0);
	assert_int_equal(log_records(env), recs + 3);
	assert_int_equal(shm_msg_get(env, &m[0].id, &got), 0);
	assert_memory_equal(got->content, "new", 3);
	assert_int_equal(got->content_len, 3);
	assert_true(got->edited);
	assert_int_equal(got->edit_count, 1);
	shm_msg_free(got);
	assert_int_equal(shm_msg_get(env, &m[1].id, &got), 0);
	assert_int_equal(got->n_reactions, 1);
	assert_string_equal(got->reactions[0].emoji, "ok");
	shm_msg_free(got);
	assert_int_equal(shm_msg_get(env, &m[2].id, &got), 0);
	assert_int_equal(got->type, SHM_MSG_DELETE);
	shm_msg_free(got);

	shm_uuid_v7(&nowhere);
	assert_int_equal(shm_msg_edit(env, &nowhere, "x", 1), SHM_ENOTFOUND);
	assert_int_equal(shm_msg_delete(env, &nowhere), SHM_ENOTFOUND);
	assert_int_equal(log_records(env), recs + 3);
	close_rt(env);

	/* PostgreSQL cannot say: its error, nothing written */
	env = open_rt(NULL, "host=127.0.0.1 port=1 connect_timeout=1", 50,
	              0);
	assert_int_equal(shm_msg_edit(env, &m[0].id, "x", 1), SHM_EL3);
	assert_int_equal(log_records(env), 0);
	close_rt(env);
	cleanup();
}

/* A room page's rows from PostgreSQL pass the checks a get's values pass
 * (test_values_put_would_refuse_are_the_levels_error): a row put would
 * refuse is L3's error, counted, and left off the page, which is
 * PostgreSQL's page of the other rows, as full as they make it. Before, a
 * row the JSON reader refused dropped all of PostgreSQL's rows from the
 * page without a word (it was L1's alone, and L1 had none), and a row only
 * put's checks refuse (content over max_content, a Delete still saying
 * something, a reply to itself...) was served. Rows written by SQL, as
 * another tool would; Redis holds nothing of them. */
static const struct bad_row {
	const char *sql; /* on the row $1 */
	const char *why; /* in the get's text */
} bad_rows[] = {
	{"UPDATE messages SET content = repeat('x', 200) WHERE id = $1",
	 "content: 200 bytes, at most 100 allowed"},
	{"UPDATE messages SET message_type = 'Shout' WHERE id = $1",
	 "message_type"},
	{"UPDATE messages SET metadata = '{\"edited\":\"yes\"}' WHERE id = $1",
	 "metadata.edited"},
	{"UPDATE messages SET message_type = 'Delete' WHERE id = $1",
	 "message_type Delete: content must be"},
	{"UPDATE messages SET parent_id = id WHERE id = $1",
	 "a message is no reply to itself"},
	{"UPDATE messages SET metadata = '{\"reactions\":{\"ok\":[4,4]}}' "
	 "WHERE id = $1", "duplicate user id 4"},
	{"UPDATE messages SET updated_at = '1969-12-31 23:59:59Z' WHERE id = $1",
	 "updated_at"},
	{"UPDATE messages SET created_at = '10000-01-01 00:00:00Z' WHERE id = $1",
	 "created_at"},
	{"UPDATE messages SET created_at = '1969-06-01 00:00:00Z' WHERE id = $1",
	 "created_at"},
	{"UPDATE messages SET created_at = '1970-01-01 00:00:00Z' WHERE id = $1",
	 "created_at"},
	{"UPDATE messages SET id = '00000000-0000-0000-0000-000000000000' "
	 "WHERE id = $1", "the nil UUID"}, /* last: gets ask for nil */
};
#define N_BAD (sizeof bad_rows / sizeof bad_rows[0])
#define N_GOOD 12

/* Pages of env from (before, limit) on, each older than the last, until
 * one is short: their ids in want's order, n of them. */
static void assert_pages_walk(shm_env *env, const char *room, int64_t before,
                              uint32_t limit, const shm_msg *want, size_t n)
{
	size_t seen = 0;
	shm_msg **page;
	size_t np;

	for (;;) {
		if (shm_room_page(env, room, before, limit, &page, &np))
			fail_msg("page before %" PRId64 ": %s", before,
			         shm_errmsg());
		for (size_t i = 0; i < np; i++, seen++) {
			if (seen >= n)
				fail_msg("page before %" PRId64 " limit %u: "
				         "more than the %zu good rows", before,
				         limit, n);
			if (memcmp(page[i]->id.b, want[seen].id.b, 16))
				fail_msg("page before %" PRId64 " limit %u: "
				         "row %zu is not good row %zu", before,
				         limit, i, seen);
			tu_assert_msg_equal(page[i], &want[seen]);
		}
		if (np)
			before = page[np - 1]->created_at;
		shm_msgs_free(page, np);
		if (np < limit)
			break;
	}
	assert_int_equal(seen, n);
}

static void test_room_page_leaves_off_rows_put_would_refuse(void **state)
{
	NEED_SERVERS();
	char room[64], ids[37];
	shm_msg good[N_GOOD], bad[N_BAD], *got;
	shm_counters c;
	shm_options o;
	PGconn *db = pg();
	const int64_t t0 = INT64_C(1700000200000000);

	room_name(room, sizeof room, "badrows");
	/* newest first: good rows at t0 + 100 s - 4 s * i; bad row j 1 s
	 * older than good row j (unless its SQL moves it) */
	for (int i = 0; i < N_GOOD; i++) {
		good[i] = plain_msg(room, t0 + 100000000 - 4000000 * i, "good");
		pg_put(db, &good[i]);
	}
	for (size_t j = 0; j < N_BAD; j++) {
		bad[j] = plain_msg(room, good[j].created_at - 1000000, "bad");
		pg_put(db, &bad[j]);
		shm_uuid_format(&bad[j].id, ids);
		const char *p[1] = {ids};
		pg_exec(db, bad_rows[j].sql, 1, p);
	}
	/* Redis holds the bad rows too, as PostgreSQL's JSON of them */
	const char *rp[1] = {room};
	PGresult *res = PQexecParams(db, "SELECT id::text, row_to_json(m)::text "
	                             "FROM messages m WHERE room_id = $1 AND "
	                             "content <> 'good'", 1, NULL, rp, NULL,
	                             NULL, 0);
	assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
	assert_int_equal(PQntuples(res), N_BAD);
	for (int i = 0; i < PQntuples(res); i++) {
		shm_uuid id;
		assert_int_equal(shm_uuid_parse(PQgetvalue(res, i, 0), &id), 0);
		redis_set(&id, PQgetvalue(res, i, 1),
		          (size_t)PQgetlength(res, i, 1));
	}
	PQclear(res);

	shm_options_init(&o);
	o.redis_url = redis_url;
	o.pg_conninfo = pg_info;
	o.l3_timeout_ms = 2000;
	o.max_content = 100;
	dir = tu_tmpdir();
	shm_env *env = tu_open(dir, &o);

	/* a whole page, then walks of pages small and large: the good rows
	 * in PostgreSQL's order, each page as full as they make it */
	assert_pages_walk(env, room, 0, 100, good, N_GOOD);
	shm_stats_local(env, &c);
	assert_int_equal(c.l3_errors, N_BAD); /* one query: each row once */
	assert_int_equal(c.room_pages_l3, 1);
	assert_pages_walk(env, room, 0, 1, good, N_GOOD);
	assert_pages_walk(env, room, 0, 3, good, N_GOOD);
	assert_pages_walk(env, room, good[2].created_at, 4, good + 3,
	                  N_GOOD - 3);
	shm_stats_local(env, &c);
	assert_int_equal(c.fills, 0);
	assert_int_equal(log_records(env), 0); /* nothing goes back */

	/* a get of a bad row is L3's error (it is there, unservable) and says
	 * why, naming each level */
	memset(&bad[N_BAD - 1].id, 0, sizeof bad[N_BAD - 1].id);
	for (size_t j = 0; j < N_BAD; j++) {
		if (shm_msg_get(env, &bad[j].id, &got) != SHM_EL3)
			fail_msg("bad row %zu (%s): served, or said not found",
			         j, bad_rows[j].why);
		fprintf(stderr, "bad row %zu: %s\n", j, shm_errmsg());
		if (!strstr(shm_errmsg(), "Redis value: ") ||
		    !strstr(shm_errmsg(), "PostgreSQL value: ") ||
		    !strstr(shm_errmsg(), bad_rows[j].why))
			fail_msg("bad row %zu: want '%s'", j, bad_rows[j].why);
	}
	shm_stats_local(env, &c);
	assert_int_equal(c.l2_errors, N_BAD);
	assert_int_equal(c.fills, 0);
	assert_int_equal(log_records(env), 0);

	/* a put of a bad row's id (as it was before the SQL) is L1's version:
	 * on the page in the row's place (room.c invariant 3) */
	shm_msg merged[N_GOOD + 1];
	assert_int_equal(shm_msg_put(env, &bad[3]), 0);
	memcpy(merged, good, 4 * sizeof *good);
	merged[4] = bad[3];
	memcpy(merged + 5, good + 4, (N_GOOD - 4) * sizeof *good);
	assert_pages_walk(env, room, 0, 100, merged, N_GOOD + 1);
	assert_pages_walk(env, room, 0, 2, merged, N_GOOD + 1);
	close_rt(env);
	PQfinish(db);
	cleanup();
}

/* Read-through does not check a message against the others L1 holds: put
 * leaves a reply in its room when its parent moves to another one (msg.c
 * invariant 8), so PostgreSQL holds such pairs that put wrote. The reply is
 * served, filled and on its room's pages beside its parent L1 holds in
 * the other room. */
static void test_reply_left_behind_by_a_moved_parent_is_served(void **state)
{
	NEED_SERVERS();
	char ra[64], rb[64];
	shm_msg p, r, *got, **page;
	size_t n;
	shm_counters c;
	PGconn *db = pg();

	room_name(ra, sizeof ra, "moved-a");
	room_name(rb, sizeof rb, "moved-b");
	p = plain_msg(rb, INT64_C(1700000400000000), "parent");
	r = plain_msg(rb, INT64_C(1700000401000000), "reply");
	r.has_parent = true;
	r.parent_id = p.id;
	dir = tu_tmpdir();
	shm_env *w = tu_open(dir, NULL); /* L1 alone: what put accepts */
	assert_int_equal(shm_msg_put(w, &p), 0);
	assert_int_equal(shm_msg_put(w, &r), 0);
	p.room_id = ra;
	assert_int_equal(shm_msg_put(w, &p), 0); /* the parent moves */
	for (int i = 0; i < 2; i++) { /* as the flusher mirrors them */
		assert_int_equal(shm_msg_get(w, i ? &r.id : &p.id, &got), 0);
		pg_put(db, got);
		shm_msg_free(got);
	}
	close_rt(w);

	shm_env *env = open_rt(redis_url, pg_info, 50, 0);
	assert_int_equal(shm_msg_get(env, &p.id, &got), 0); /* L1 holds it */
	assert_string_equal(got->room_id, ra);
	shm_msg_free(got);
	assert_int_equal(shm_msg_get(env, &r.id, &got), 0);
	assert_string_equal(got->room_id, rb);
	shm_msg_free(got);
	assert_int_equal(shm_room_page(env, rb, 0, 10, &page, &n), 0);
	assert_int_equal(n, 1);
	assert_memory_equal(page[0]->id.b, r.id.b, 16);
	shm_msgs_free(page, n);
	shm_stats_local(env, &c);
	assert_int_equal(c.fills, 2);
	assert_int_equal(c.l3_errors, 0);
	assert_int_equal(log_records(env), 0);
	close_rt(env);
	PQfinish(db);
	cleanup();
}

/* The seed's thread_id is independent of parent_id: a PostgreSQL row of a
 * root naming its own id as thread_id, or in a thread without a parent, is
 * served and fills L1 (put's checks had made them that level's bad data). */
static void test_rows_with_the_seeds_thread_ids_are_served(void **state)
{
	NEED_SERVERS();
	char room[64];
	shm_msg root, loose, *got;
	shm_uuid other;

	room_name(room, sizeof room, "threads");
	root = full_msg(room, INT64_C(1700000052000000), "a root");
	root.has_parent = false;
	root.has_thread = true;
	root.thread_id = root.id;
	loose = full_msg(room, INT64_C(1700000053000000), "in a thread");
	loose.has_parent = false;
	shm_uuid_v7(&other);
	loose.has_thread = true;
	loose.thread_id = other;
	PGconn *db = pg();
	pg_put(db, &root);
	pg_put(db, &loose);
	PQfinish(db);

	shm_env *env = open_rt(redis_url, pg_info, 50, 0);
	assert_int_equal(shm_msg_get(env, &root.id, &got), 0);
	tu_assert_msg_equal(got, &root);
	shm_msg_free(got);
	assert_int_equal(shm_msg_get(env, &loose.id, &got), 0);
	tu_assert_msg_equal(got, &loose);
	shm_msg_free(got);
	close_rt(env);
	cleanup();
}

/* A page without a bound has none: a message of the last second of year
 * 9999 is on it. */
static void test_unbounded_room_page_reaches_the_end_of_9999(void **state)
{
	NEED_SERVERS();
	char room[64];
	shm_msg m[2], **page;
	size_t n;
	PGconn *db = pg();

	room_name(room, sizeof room, "y9999");
	m[0] = plain_msg(room, INT64_C(1700000047000000), "early");
	m[1] = plain_msg(room, INT64_C(253402300799500000), "last second");
	for (int i = 0; i < 2; i++)
		pg_put(db, &m[i]);
	shm_env *env = open_rt(redis_url, pg_info, 50, 0);
	assert_int_equal(shm_room_page(env, room, 0, 10, &page, &n), 0);
	assert_int_equal(n, 2);
	assert_memory_equal(page[0]->id.b, m[1].id.b, 16);
	assert_int_equal(page[0]->created_at, m[1].created_at);
	shm_msgs_free(page, n);
	assert_page_is_pg(env, db, room, 0, 10);
	close_rt(env);
	PQfinish(db);
	cleanup();
}

/* 8 threads of one handle against a Redis answering in 40 ms: they are
 * answered side by side (about 40 ms each), not one after another. */
static void test_concurrent_gets_ask_redis_side_by_side(void **state)
{
	const uint32_t l2_ms = 100;
	fake_redis f = {.delay_ms = 40};
	struct getter g[8];
	pthread_t t[8];
	shm_counters c;
	uint64_t max = 0;
	char *sdir = tu_tmpdir();

	fake_start(&f, sdir);
	shm_env *env = open_rt(f.url, NULL, l2_ms, 0);
	for (int i = 0; i < 8; i++) {
		g[i] = (struct getter){.env = env};
		shm_uuid_v7(&g[i].id);
		assert_int_equal(pthread_create(&t[i], NULL, getter_run, &g[i]),
		                 0);
	}
	for (int i = 0; i < 8; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(g[i].rc, SHM_ENOTFOUND);
		if (g[i].ms > max)
			max = g[i].ms;
	}
	fprintf(stderr, "8 concurrent gets, Redis answering in 40 ms: the "
	        "slowest took %" PRIu64 " ms\n", max);
	shm_stats_local(env, &c);
	assert_int_equal(c.l2_misses, 8);
	assert_int_equal(c.l2_errors, 0);
	if (max >= l2_ms)
		fail_msg("slowest get %" PRIu64 " ms: the gets queued", max);
	close_rt(env);
	fake_stop(&f);
	tu_rmdir(sdir);
	free(sdir);
}

/* Ends the redis-server a failed test left (tu_redis_start). */
static int stop_children(void **state)
{
	tu_children_stop(NULL);
	return 0;
}

/* A getter released with the others by a barrier, keeping its reason. */
struct racer {
	shm_env *env;
	pthread_barrier_t *go;
	int rc;
	char why[4400];
};

static void *racer_run(void *arg)
{
	struct racer *g = arg;
	shm_uuid id;
	shm_msg *got = NULL;

	shm_uuid_v7(&id);
	pthread_barrier_wait(g->go);
	g->rc = shm_msg_get(g->env, &id, &got);
	snprintf(g->why, sizeof g->why, "%s", shm_errmsg());
	shm_msg_free(got);
	return NULL;
}

/* 16 threads of one handle get at once from a hung Redis (a real one,
 * SIGSTOPped after start: it accepts connections and answers nothing).
 * The handle opens 8 connections, never a ninth: 8 gets wait for their
 * GET's answer for l2_timeout_ms and say so; the 8 others wait for a
 * connection and say that all 8 were busy (their timeout ran out first)
 * or that Redis was skipped (the 8 failed first). Every get is SHM_EL2,
 * its reason naming the socket, and counted in l2_errors. */
static void test_more_gets_than_connections_on_a_hung_redis(void **state)
{
	enum { N = 16 };
	char *sdir = tu_tmpdir(), url[4200], late[4400], busy[4400];
	char skipped[4400];
	struct racer g[N];
	pthread_t t[N];
	pthread_barrier_t go;
	shm_counters c;
	int n_late = 0, n_busy = 0, n_skipped = 0;

	pid_t srv = tu_redis_start(sdir, NULL, url, sizeof url);
	const char *sock = url + strlen("unix://");
	snprintf(late, sizeof late, "Redis GET on %s: no answer within the "
	         "l2_timeout_ms of 300 ms", sock);
	snprintf(busy, sizeof busy, "Redis at %s: all 8 connections busy for "
	         "the l2_timeout_ms of 300 ms", sock);
	snprintf(skipped, sizeof skipped, "Redis at %s skipped: it failed "
	         "less than 1000 ms ago", sock);
	shm_env *env = open_rt(url, NULL, 300, 0);
	assert_int_equal(kill(srv, SIGSTOP), 0);
	pthread_barrier_init(&go, NULL, N);
	for (int i = 0; i < N; i++) {
		g[i] = (struct racer){.env = env, .go = &go};
		assert_int_equal(pthread_create(&t[i], NULL, racer_run, &g[i]),
		                 0);
	}
	for (int i = 0; i < N; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(g[i].rc, SHM_EL2);
		n_late += strstr(g[i].why, late) != NULL;
		n_busy += strstr(g[i].why, busy) != NULL;
		n_skipped += strstr(g[i].why, skipped) != NULL;
	}
	pthread_barrier_destroy(&go);
	assert_int_equal(kill(srv, SIGCONT), 0);
	fprintf(stderr, "%d gets on a hung Redis: %d timed out in their GET, "
	        "%d found all 8 connections busy, %d found Redis skipped\n",
	        N, n_late, n_busy, n_skipped);
	assert_int_equal(n_late, 8);
	assert_int_equal(n_busy + n_skipped, N - 8);
	shm_stats_local(env, &c);
	assert_int_equal(c.l2_errors, N);
	close_rt(env);
	tu_redis_stop(srv);
	tu_rmdir(sdir);
	free(sdir);
}

static int group_setup(void **state)
{
	redis_url = getenv("SHM_TEST_REDIS");
	pg_info = getenv("SHM_TEST_PG");
	if (!redis_url || !*redis_url || !pg_info || !*pg_info) {
		fprintf(stderr, "SKIP: SHM_TEST_REDIS and SHM_TEST_PG are not "
		        "set (run through tests/run.sh, which starts the "
		        "servers)\n");
		redis_url = pg_info = NULL;
	}
	snprintf(prefix, sizeof prefix, "rt%ld", (long)getpid());
	return 0;
}

static int group_teardown(void **state)
{
	cleanup();
	return 0;
}

/* A failed assertion leaves a test before it can unset libpq's
 * environment. */
static int unset_pgenv(void **state)
{
	unsetenv("PGTZ");
	unsetenv("PGCLIENTENCODING");
	unsetenv("PGHOST");
	unsetenv("PGAPPNAME");
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_message_only_in_redis),
		cmocka_unit_test(test_redis_user_and_password_in_the_url),
		cmocka_unit_test_teardown(test_redis_password_and_db_in_the_url,
		                          stop_children),
		cmocka_unit_test_teardown(
			test_more_gets_than_connections_on_a_hung_redis,
			stop_children),
		cmocka_unit_test(test_message_only_in_postgres_fills_l1_and_redis),
		cmocka_unit_test_teardown(
			test_postgres_connections_are_named_shm_readthrough,
			unset_pgenv),
		cmocka_unit_test_teardown(
			test_fill_redis_refuses_is_counted_in_l2_errors,
			stop_children),
		cmocka_unit_test(test_message_nowhere),
		cmocka_unit_test(test_connect_errors_show_the_servers_printably),
		cmocka_unit_test(test_long_server_name_stays_utf8),
		cmocka_unit_test(test_close_in_a_forked_child_keeps_the_parents_connections),
		cmocka_unit_test(test_redis_value_of_another_message_is_a_miss),
		cmocka_unit_test(test_redis_key_of_another_type_is_replaced),
		cmocka_unit_test(test_redis_ending_a_pooled_connection_raises_no_sigpipe),
		cmocka_unit_test(test_dead_or_mute_redis_costs_at_most_the_timeout),
		cmocka_unit_test(test_mute_redis_is_skipped_after_a_timeout),
		cmocka_unit_test(test_slow_postgres_costs_at_most_the_timeout),
		cmocka_unit_test(test_failed_postgres_query_leaves_its_reason),
		cmocka_unit_test(test_malformed_parent_from_postgres_writes_nothing),
		cmocka_unit_test(test_failed_redis_read_leaves_its_reason),
		cmocka_unit_test(test_l3_timeout_names_the_host),
		cmocka_unit_test(test_redis_reason_stays_beside_postgres_answer),
		cmocka_unit_test(test_get_the_record_cannot_answer_is_its_error),
		cmocka_unit_test(test_room_page_postgres_cannot_answer_is_an_error),
		cmocka_unit_test(test_failed_get_names_each_cause_once),
		cmocka_unit_test(test_redis_host_name_is_resolved_at_open_not_on_gets),
		cmocka_unit_test_teardown(
			test_postgres_host_name_is_resolved_at_open_not_on_gets,
			unset_pgenv),
		cmocka_unit_test(test_room_page_from_postgres_matches_postgres),
		cmocka_unit_test(test_room_page_with_evictions),
		cmocka_unit_test_teardown(
			test_timestamps_round_trip_whatever_the_time_zone,
			unset_pgenv),
		cmocka_unit_test_teardown(
			test_pgtz_changes_no_time_read_from_postgres, unset_pgenv),
		cmocka_unit_test_teardown(
			test_pgclientencoding_changes_no_text_read_from_postgres,
			unset_pgenv),
		cmocka_unit_test(test_fill_does_not_overwrite_a_newer_redis_value),
		cmocka_unit_test(test_trickling_redis_costs_at_most_the_timeout),
		cmocka_unit_test(test_redis_value_larger_than_any_message_is_refused),
		cmocka_unit_test(test_lz4_value_inflating_beyond_any_message_is_refused),
		cmocka_unit_test(test_lz4_value_not_one_whole_frame_is_refused),
		cmocka_unit_test(test_values_put_would_refuse_are_the_levels_error),
		cmocka_unit_test(test_deleted_message_fills_l1_as_it_is),
		cmocka_unit_test(test_edit_react_delete_of_a_message_only_in_postgres),
		cmocka_unit_test(test_room_page_leaves_off_rows_put_would_refuse),
		cmocka_unit_test(test_reply_left_behind_by_a_moved_parent_is_served),
		cmocka_unit_test(test_rows_with_the_seeds_thread_ids_are_served),
		cmocka_unit_test(test_unbounded_room_page_reaches_the_end_of_9999),
		cmocka_unit_test(test_concurrent_gets_ask_redis_side_by_side),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
