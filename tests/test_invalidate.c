/*
 * tests/test_invalidate.c - invalidation between hosts: libshm's
 * shm_l1_invalidate* (unit), the channel's message format (unit), and two
 * "hosts" (two environments, two shm-flusher processes with different
 * --env-id) against the real Redis and PostgreSQL given in SHM_TEST_REDIS
 * and SHM_TEST_PG (tests/run.sh starts them; the server tests skip
 * without them).
 *
 * The flusher binary: $SHM_FLUSHER, else ../bin/shm-flusher next to this
 * test binary (BUILD/tests/ -> BUILD/bin/).
 */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "codec.h"
#include "testutil.h"
#include "shm_log.h"
#include "../flusher/fl.h"
#include "../flusher/invalidate.h"

static const char *redis_url, *pg_info;
static char flusher_bin[PATH_MAX];

/* ------------------------------------------------------------ helpers */

static uint64_t ms_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t meta(shm_env *env, const char *name)
{
	uint64_t v = 0;
	assert_int_equal(shm_meta_get(env, name, &v), 0);
	return v;
}

/* Waits up to ms for meta name >= want. */
static bool wait_meta(shm_env *env, const char *name, uint64_t want,
                      unsigned ms)
{
	uint64_t end = ms_now() + ms;
	do {
		if (meta(env, name) >= want)
			return true;
		tu_sleep_ms(20);
	} while (ms_now() < end);
	return meta(env, name) >= want;
}

/* Waits until every sink applied everything written so far. */
static bool wait_flushed(shm_env *env, unsigned ms)
{
	shm_info in;
	uint64_t end = ms_now() + ms;
	assert_int_equal(shm_env_info(env, &in), 0);
	uint64_t want = in.next_seq ? in.next_seq - 1 : 0;
	do {
		assert_int_equal(shm_env_info(env, &in), 0);
		if (in.flushed >= want)
			return true;
		tu_sleep_ms(20);
	} while (ms_now() < end);
	return false;
}

/* Whether L1 alone (no read-through) holds id; copies its content. */
static bool l1_has(shm_env *env, const shm_uuid *id, char *content,
                   size_t cap)
{
	shm_rtxn *t;
	const shm_msg *m;
	assert_int_equal(shm_rtxn_begin(env, &t), 0);
	int rc = shm_msg_view(t, id, &m);
	if (rc == 0 && content)
		snprintf(content, cap, "%.*s", (int)m->content_len, m->content);
	shm_rtxn_end(t);
	assert_true(rc == 0 || rc == SHM_ENOTFOUND);
	return rc == 0;
}

/* Waits up to 5 s until L1 of env no longer holds id; whether it did. */
static bool l1_loses(shm_env *env, const shm_uuid *id)
{
	uint64_t end = ms_now() + 5000;

	while (l1_has(env, id, NULL, 0) && ms_now() < end)
		tu_sleep_ms(10);
	return !l1_has(env, id, NULL, 0);
}

/* Publishes msg as it is; a subscriber at least gets it. */
static void publish_raw(redisContext *c, const char *msg)
{
	redisReply *r = redisCommand(c, "PUBLISH %s %s", FL_INVAL_CHANNEL, msg);
	assert_non_null(r);
	assert_int_equal(r->type, REDIS_REPLY_INTEGER);
	assert_true(r->integer >= 1);
	freeReplyObject(r);
}

static char *get_content(shm_env *env, const shm_uuid *id)
{
	shm_msg *m = NULL;
	int rc = shm_msg_get(env, id, &m);
	if (rc) {
		fprintf(stderr, "get: %s\n", shm_errmsg());
		return NULL;
	}
	char *s = strndup(m->content, m->content_len);
	shm_msg_free(m);
	return s;
}

/* A flusher child process for dir with --redis redis. pg may be a dead
 * conninfo. */
static pid_t flusher_start_on(const char *dir, const char *redis,
                              const char *env_id, const char *pg,
                              const char *extra)
{
	char log[4200];
	snprintf(log, sizeof log, "%s/flusher.log", dir);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		const char *argv[32];
		int n = 0;
		argv[n++] = flusher_bin;
		argv[n++] = "-e";
		argv[n++] = dir;
		argv[n++] = "--redis";
		argv[n++] = redis;
		argv[n++] = "--pg";
		argv[n++] = pg;
		argv[n++] = "--env-id";
		argv[n++] = env_id;
		argv[n++] = "--batch-ms";
		argv[n++] = "5";
		argv[n++] = "--trim-interval-ms";
		argv[n++] = "10";
		argv[n++] = "--stats-interval-ms";
		argv[n++] = "50";
		argv[n++] = "--backoff-min-ms";
		argv[n++] = "50";
		argv[n++] = "--backoff-max-ms";
		argv[n++] = "500";
		argv[n++] = "--log-level";
		argv[n++] = "debug";
		argv[n++] = "--log-file";
		argv[n++] = log;
		if (extra)
			argv[n++] = extra;
		argv[n] = NULL;
		execv(flusher_bin, (char *const *)argv);
		_exit(127);
	}
	tu_child_add(pid);
	return pid;
}

/* The same with the servers' Redis. */
static pid_t flusher_start(const char *dir, const char *env_id,
                           const char *pg, const char *extra)
{
	return flusher_start_on(dir, redis_url, env_id, pg, extra);
}

static void flusher_stop(pid_t pid)
{
	int st;
	if (pid <= 0)
		return;
	tu_child_del(pid);
	kill(pid, SIGTERM);
	for (int i = 0; i < 500; i++) {
		if (waitpid(pid, &st, WNOHANG) == pid)
			return;
		tu_sleep_ms(10);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
}

static int kill_children(void **state)
{
	tu_children_stop(flusher_stop);
	return 0;
}

static void dump_log(const char *dir)
{
	char cmd[4200];
	snprintf(cmd, sizeof cmd, "echo '--- %s/flusher.log'; tail -n 30 "
	         "'%s/flusher.log' >&2", dir, dir);
	if (system(cmd) != 0) {
		/* best effort */
	}
}

/* Two hosts: A writes, B reads through Redis/PostgreSQL. */
typedef struct hosts {
	char *dir_a, *dir_b;
	shm_env *a, *b;
	pid_t fa, fb;
	char id_a[64], id_b[64];
	char room[64];
} hosts;

static void hosts_open(hosts *h, const char *b_pg)
{
	shm_options ob;
	shm_uuid u;
	char s[37];

	memset(h, 0, sizeof *h);
	h->dir_a = tu_tmpdir();
	h->dir_b = tu_tmpdir();
	shm_uuid_v7(&u);
	shm_uuid_format(&u, s);
	snprintf(h->id_a, sizeof h->id_a, "hostA-%.8s", s + 28);
	snprintf(h->id_b, sizeof h->id_b, "hostB-%.8s", s + 28);
	snprintf(h->room, sizeof h->room, "inval-%s", s);
	h->a = tu_open(h->dir_a, NULL);
	shm_options_init(&ob);
	ob.redis_url = redis_url;
	ob.pg_conninfo = pg_info;
	ob.l2_timeout_ms = 2000;
	ob.l3_timeout_ms = 2000;
	h->b = tu_open(h->dir_b, &ob);
	h->fa = flusher_start(h->dir_a, h->id_a, pg_info, NULL);
	h->fb = flusher_start(h->dir_b, h->id_b, b_pg, NULL);
	bool ok = wait_meta(h->a, "flusher.inval.subscribed", 1, 10000) &&
	          wait_meta(h->b, "flusher.inval.subscribed", 1, 10000);
	if (!ok) {
		dump_log(h->dir_a);
		dump_log(h->dir_b);
	}
	assert_true(ok);
}

static void hosts_close(hosts *h)
{
	flusher_stop(h->fa);
	flusher_stop(h->fb);
	if (h->a)
		shm_env_close(h->a);
	if (h->b)
		shm_env_close(h->b);
	tu_rmdir(h->dir_a);
	tu_rmdir(h->dir_b);
	free(h->dir_a);
	free(h->dir_b);
}

#define NEED_SERVERS()                                                         \
	do {                                                                   \
		if (!redis_url || !pg_info || !flusher_bin[0]) {               \
			skip();                                                \
			return;                                                \
		}                                                              \
	} while (0)

/* ----------------------------------------------------- libshm (unit) */

static void static_key(const shm_uuid *w, const char *obj, uint8_t *key,
                       size_t *klen)
{
	memcpy(key, w->b, 16);
	memcpy(key + 16, obj, strlen(obj));
	*klen = 16 + strlen(obj);
}

static void test_unflushed_kept_flushed_dropped(void **state)
{
	char *dir = tu_tmpdir();
	shm_env *env = tu_open(dir, NULL);
	shm_msg m = tu_msg("r", 1, "hello");
	shm_uuid w;
	uint8_t sk[64];
	size_t sklen;
	uint64_t dropped = 9, kept = 9;
	shm_info in;
	shm_static *st = NULL;

	assert_int_equal(shm_msg_put(env, &m), 0);
	shm_uuid_v7(&w);
	assert_int_equal(shm_static_put(env, &w, "Page/1", "abc", 3, NULL), 0);
	static_key(&w, "Page/1", sk, &sklen);
	shm_inval_key keys[2] = {
		{.kind = SHM_INVAL_MSG, .key = m.id.b, .klen = 16},
		{.kind = SHM_INVAL_STATIC, .key = sk, .klen = sklen}};
	uint64_t records = tu_log_count(env);

	/* unflushed local work: kept */
	assert_int_equal(shm_l1_invalidate_many(env, keys, 2, &dropped, &kept), 0);
	assert_int_equal(dropped, 0);
	assert_int_equal(kept, 2);
	assert_true(l1_has(env, &m.id, NULL, 0));

	/* flushed (every sink has it): dropped, with no log record */
	assert_int_equal(shm_env_info(env, &in), 0);
	assert_int_equal(shm_log_trim(env, in.log_last), 0);
	assert_int_equal(shm_l1_invalidate(env, SHM_INVAL_MSG, m.id.b, 16,
	                                   &dropped), 0);
	assert_int_equal(dropped, 1);
	assert_int_equal(shm_l1_invalidate(env, SHM_INVAL_STATIC, sk, sklen,
	                                   &dropped), 0);
	assert_int_equal(dropped, 1);
	assert_false(l1_has(env, &m.id, NULL, 0));
	assert_int_equal(shm_static_peek(env, &w, "Page/1", &st), SHM_ENOTFOUND);
	assert_int_equal(shm_env_info(env, &in), 0);
	assert_int_equal(in.messages, 0);
	assert_int_equal(in.statics, 0);
	assert_int_equal(in.l1_bytes, 0);
	assert_int_equal(in.log_records, 0);
	assert_int_equal(in.next_seq - 1, records); /* nothing appended */
	/* absent now: nothing to do */
	assert_int_equal(shm_l1_invalidate(env, SHM_INVAL_MSG, m.id.b, 16,
	                                   &dropped), 0);
	assert_int_equal(dropped, 0);
	shm_counters c;
	shm_stats_shared(env, &c);
	assert_int_equal(c.invalidations, 2);
	assert_int_equal(tu_verify(env), 0);
	shm_env_close(env);
	tu_rmdir(dir);
	free(dir);
}

static void test_bad_keys_change_nothing(void **state)
{
	char *dir = tu_tmpdir();
	shm_env *env = tu_open(dir, NULL);
	shm_msg m = tu_msg("r", 1, "hello");
	shm_info in;
	uint8_t big[600] = {0};

	assert_int_equal(shm_msg_put(env, &m), 0);
	assert_int_equal(shm_env_info(env, &in), 0);
	assert_int_equal(shm_log_trim(env, in.log_last), 0);
	shm_inval_key keys[3] = {
		{.kind = SHM_INVAL_MSG, .key = m.id.b, .klen = 16},
		{.kind = SHM_INVAL_MSG, .key = m.id.b, .klen = 15},
		{.kind = SHM_INVAL_MSG, .key = m.id.b, .klen = 16,
		 .room = "bad\xff", .created_at = 1}};
	/* every refusal names the key by its index, as created_at's below */
	assert_int_equal(shm_l1_invalidate_many(env, keys, 2, NULL, NULL),
	                 SHM_EINVAL);
	assert_string_equal(shm_errmsg(), "shm_l1_invalidate_many: keys[1].klen "
	                    "15: a message key is 16 bytes (invalid argument)");
	assert_true(l1_has(env, &m.id, NULL, 0)); /* first key untouched */
	keys[1].klen = 16;
	assert_int_equal(shm_l1_invalidate_many(env, keys + 1, 2, NULL, NULL),
	                 SHM_EINVAL); /* a room that is not UTF-8 */
	assert_string_equal(shm_errmsg(), "shm_l1_invalidate_many: keys[1].room: "
	                    "invalid UTF-8 at byte offset 3 (invalid argument)");
	assert_true(l1_has(env, &m.id, NULL, 0));
	keys[1].kind = 'X';
	assert_int_equal(shm_l1_invalidate_many(env, keys, 2, NULL, NULL),
	                 SHM_EINVAL);
	assert_string_equal(shm_errmsg(), "shm_l1_invalidate_many: keys[1].kind "
	                    "88: neither SHM_INVAL_MSG nor SHM_INVAL_STATIC "
	                    "(invalid argument)");
	assert_int_equal(shm_l1_invalidate(env, SHM_INVAL_STATIC, big, 16, NULL),
	                 SHM_EINVAL);
	assert_string_equal(shm_errmsg(), "shm_l1_invalidate_many: keys[0].klen "
	                    "16: a static key is 17 to 502 bytes (invalid "
	                    "argument)");
	assert_int_equal(shm_l1_invalidate(env, SHM_INVAL_STATIC, big,
	                                   sizeof big, NULL), SHM_EINVAL);
	assert_non_null(strstr(shm_errmsg(), "keys[0].klen 600: "));
	assert_int_equal(shm_l1_invalidate(env, SHM_INVAL_MSG, NULL, 16, NULL),
	                 SHM_EINVAL);
	assert_true(l1_has(env, &m.id, NULL, 0));
	/* a created_at put does not store (0 only without a room): refused,
	 * named by index and value, and the good keys before it not applied
	 * (their room's watermark and the lead stay); the flusher's parser
	 * refuses the same (test_encode_parse) */
	shm_uuid foreign;
	shm_uuid_v7(&foreign);
	const int64_t late = shm_now_us() + 60 * INT64_C(1000000);
	static const struct {
		int64_t created;
		bool room;
		const char *why; /* NULL: taken */
	} times[] = {
		{0, true, "shm_l1_invalidate_many: keys[1].created_at 0 us is no "
		          "message's (1 to 253402300799999999: 1970 to 9999) "
		          "(invalid argument)"},
		{-1, true, "shm_l1_invalidate_many: keys[1].created_at -1 us"},
		{SHM_TIME_MAX_US + 1, true, "shm_l1_invalidate_many: keys[1]."
		 "created_at 253402300800000000 us is no message's"},
		{INT64_MAX, false, "shm_l1_invalidate_many: keys[1].created_at "
		 "9223372036854775807 us is no message's (1 to "
		 "253402300799999999: 1970 to 9999; 0 without a room) (invalid "
		 "argument)"},
		{-1, false, "shm_l1_invalidate_many: keys[1].created_at -1 us"},
		{0, false, NULL},
		{SHM_TIME_MAX_US, true, NULL},
	};
	for (size_t i = 0; i < sizeof times / sizeof *times; i++) {
		shm_inval_key two[2] = {
			{.kind = SHM_INVAL_MSG, .key = foreign.b, .klen = 16,
			 .room = "r", .created_at = late},
			{.kind = SHM_INVAL_MSG, .key = foreign.b, .klen = 16,
			 .room = times[i].room ? "r" : NULL,
			 .created_at = times[i].created}};
		uint64_t lead = 1;
		MDB_txn *txn;
		int rc = shm_l1_invalidate_many(env, two, 2, NULL, NULL);
		assert_int_equal(shm_meta_get(env, "room_lead", &lead), 0);
		assert_int_equal(shm__rtxn_get(env, &txn), 0);
		int64_t wm = shm__room_watermark(txn, env, "r",
		                                 shm__room_floor(txn, env));
		shm__rtxn_put(env, txn);
		if (!times[i].why) {
			assert_int_equal(rc, 0);
			assert_true(wm >= late);
			assert_int_not_equal(lead, 0);
			continue;
		}
		assert_int_equal(rc, SHM_EINVAL);
		if (strncmp(shm_errmsg(), times[i].why, strlen(times[i].why)))
			fail_msg("'%s' is not '%s...'", shm_errmsg(),
			         times[i].why);
		assert_true(wm < late);
		assert_int_equal(lead, 0);
	}
	assert_int_equal(shm_inval_kind_of_op(SHM_OP_MSG_EDIT), SHM_INVAL_MSG);
	assert_int_equal(shm_inval_kind_of_op(SHM_OP_STATIC_BUST),
	                 SHM_INVAL_STATIC);
	assert_int_equal(shm_inval_kind_of_op(SHM_OP_MARK), 0);
	shm_env_close(env);
	tu_rmdir(dir);
	free(dir);
}

static void test_invalidate_flushed(void **state)
{
	char *dir = tu_tmpdir();
	shm_env *env = tu_open(dir, NULL);
	shm_uuid w;
	shm_info in;
	uint64_t dropped = 0;

	shm_uuid_v7(&w);
	for (int i = 0; i < 2500; i++) {
		shm_msg m = tu_msg(i % 2 ? "r1" : "r2", i, "x");
		assert_int_equal(shm_msg_put(env, &m), 0);
	}
	assert_int_equal(shm_static_put(env, &w, "Page/1", "abc", 3, NULL), 0);
	for (int i = 0; i < 3; i++) {
		shm_msg m = tu_msg("r1", i, "late");
		assert_int_equal(shm_msg_put(env, &m), 0);
	}
	assert_int_equal(shm_env_info(env, &in), 0);
	assert_int_equal(shm_log_trim(env, in.log_last - 3), 0);
	assert_int_equal(shm_l1_invalidate_flushed(env, &dropped), 0);
	assert_int_equal(dropped, 2501); /* in several transactions */
	assert_int_equal(shm_env_info(env, &in), 0);
	assert_int_equal(in.messages, 3); /* the unflushed ones */
	assert_int_equal(in.statics, 0);
	assert_int_equal(tu_verify(env), 0);
	/* the room page now asks L3 (none here) or says what L1 has */
	shm_env_close(env);
	tu_rmdir(dir);
	free(dir);
}

/* Room pages served by env with room_pages_l3 counted: *l3 gets how many
 * of the calls asked PostgreSQL. */
static size_t page_of(shm_env *env, const char *room, uint32_t limit,
                      shm_msg ***page, uint64_t *l3)
{
	shm_counters c0, c1;
	size_t n = 0;

	shm_stats_local(env, &c0);
	assert_int_equal(shm_room_page(env, room, 0, limit, page, &n), 0);
	shm_stats_local(env, &c1);
	*l3 = c1.room_pages_l3 - c0.room_pages_l3;
	return n;
}

/* A message another host wrote, named with its room, makes this L1's pages
 * of that room that reach back to it ask PostgreSQL; one older than the
 * page does not. After a gap, every room's pages up to now do. */
static void test_foreign_message_room_pages(void **state)
{
	NEED_SERVERS();
	char *dir = tu_tmpdir();
	shm_options o;
	shm_options_init(&o);
	o.pg_conninfo = pg_info;
	o.l3_timeout_ms = 2000;
	shm_env *env = tu_open(dir, &o);
	char room[64], room2[64], s[37];
	shm_uuid u, foreign;
	shm_msg m[3], **page;
	shm_info in;
	uint64_t l3, dropped;
	/* after the environment's creation: L1 vouches for nothing older */
	const int64_t t0 = shm_now_us();

	shm_uuid_v7(&u);
	shm_uuid_format(&u, s);
	snprintf(room, sizeof room, "wm-%s", s);
	snprintf(room2, sizeof room2, "wm2-%s", s);
	for (int i = 0; i < 3; i++) {
		m[i] = tu_msg(room, i, "local");
		m[i].created_at = t0 + (i + 1) * 1000;
		assert_int_equal(shm_msg_put(env, &m[i]), 0);
	}
	assert_int_equal(shm_env_info(env, &in), 0);
	assert_int_equal(shm_log_trim(env, in.log_last), 0); /* flushed */
	assert_int_equal(page_of(env, room, 3, &page, &l3), 3);
	shm_msgs_free(page, 3);
	assert_int_equal(l3, 0); /* L1 wrote them all: complete */

	/* older than the page's oldest: the page stays complete */
	shm_uuid_v7(&foreign);
	shm_inval_key k = {.kind = SHM_INVAL_MSG, .key = foreign.b, .klen = 16,
	                   .room = room, .created_at = t0 + 500};
	assert_int_equal(shm_l1_invalidate_many(env, &k, 1, &dropped, NULL), 0);
	assert_int_equal(dropped, 0);
	assert_int_equal(page_of(env, room, 3, &page, &l3), 3);
	shm_msgs_free(page, 3);
	assert_int_equal(l3, 0);
	/* within it: PostgreSQL is asked (it may hold that message) */
	k.created_at = t0 + 2500;
	assert_int_equal(shm_l1_invalidate_many(env, &k, 1, &dropped, NULL), 0);
	assert_int_equal(page_of(env, room, 3, &page, &l3), 3);
	shm_msgs_free(page, 3);
	assert_int_equal(l3, 1);
	assert_int_equal(page_of(env, room, 1, &page, &l3), 1);
	assert_memory_equal(page[0]->id.b, m[2].id.b, 16);
	shm_msgs_free(page, 1);
	assert_int_equal(l3, 0); /* the newest alone is still L1's */
	/* without a room: the room is not touched */
	k.room = NULL;
	k.created_at = 0;
	assert_int_equal(shm_l1_invalidate_many(env, &k, 1, NULL, NULL), 0);

	/* a gap: every room, even one L1 never saw a foreign message in */
	shm_msg r2 = tu_msg(room2, 1, "unflushed");
	r2.created_at = shm_now_us();
	assert_int_equal(shm_msg_put(env, &r2), 0);
	assert_int_equal(page_of(env, room2, 1, &page, &l3), 1);
	shm_msgs_free(page, 1);
	assert_int_equal(l3, 0);
	assert_int_equal(shm_l1_invalidate_flushed(env, &dropped), 0);
	assert_int_equal(dropped, 3); /* room's; room2's is unflushed */
	assert_int_equal(page_of(env, room2, 1, &page, &l3), 1);
	shm_msgs_free(page, 1);
	assert_int_equal(l3, 1);
	/* what is written after the gap is L1's again */
	shm_msg r3 = tu_msg(room2, 1, "after the gap");
	r3.created_at = shm_now_us() + 1000000;
	assert_int_equal(shm_msg_put(env, &r3), 0);
	assert_int_equal(page_of(env, room2, 1, &page, &l3), 1);
	assert_memory_equal(page[0]->id.b, r3.id.b, 16);
	shm_msgs_free(page, 1);
	assert_int_equal(l3, 0);
	assert_int_equal(tu_verify(env), 0);
	shm_env_close(env);
	tu_rmdir(dir);
	free(dir);
}

/* --------------------------------------------- message format (unit) */

static void add_rec_payload(fl_batch *b, uint64_t seq, int op,
                            const void *key, size_t klen, const void *payload,
                            size_t plen)
{
	shm_log_rec r;
	memset(&r, 0, sizeof r);
	r.seq = seq;
	r.op = (uint8_t)op;
	r.key = key;
	r.key_len = (uint32_t)klen;
	r.payload = payload;
	r.payload_len = (uint32_t)plen;
	assert_int_equal(fl_batch_add(b, &r), 0);
}

static void add_rec(fl_batch *b, uint64_t seq, int op, const void *key,
                    size_t klen)
{
	add_rec_payload(b, seq, op, key, klen, NULL, 0);
}

/* A MSG_PUT record of m, with its encoded value as payload. */
static void add_msg_rec(fl_batch *b, uint64_t seq, const shm_msg *m)
{
	size_t n = shm__msg_enc_size(m);
	uint8_t *buf = malloc(n);
	shm__order ord;
	assert_non_null(buf);
	assert_int_equal(shm__order_make(m, &ord), 0);
	shm__msg_encode(m, ord.r, seq, buf);
	shm__order_free(&ord);
	add_rec_payload(b, seq, SHM_OP_MSG_PUT, m->id.b, 16, buf, n);
	free(buf); /* the batch keeps its own copy */
}

static void test_encode_parse(void **state)
{
	fl_batch b;
	fl_buf out = {0};
	fl_inval_msg m;
	size_t ends[8], n;
	shm_uuid id1, id2, w;
	uint8_t sk[64];
	size_t sklen;
	char err[200];

	memset(&m, 0, sizeof m);
	shm_uuid_v7(&id1);
	shm_uuid_v7(&id2);
	shm_uuid_v7(&w);
	static_key(&w, "Page/about-us", sk, &sklen);
	fl_batch_init(&b);
	add_rec(&b, 1, SHM_OP_MSG_PUT, id1.b, 16);
	add_rec(&b, 2, SHM_OP_MSG_EDIT, id1.b, 16);   /* same key in a row */
	add_rec(&b, 3, SHM_OP_GRAPH_SET, sk, sklen);  /* not an L1 entry */
	add_rec(&b, 4, SHM_OP_STATIC_PUT, sk, sklen);
	add_rec(&b, 5, SHM_OP_MSG_REACT, id2.b, 16);
	add_rec(&b, 6, SHM_OP_MARK, sk, sklen);
	add_rec(&b, 7, SHM_OP_MSG_PUT, id2.b, 16);
	b.r[4].superseded = true; /* coalesced by the sink */
	assert_int_equal(fl_inval_encode("hostA", &b, &out, ends, 8, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(ends[0], out.len);
	assert_int_equal(fl_inval_parse(out.p, out.len, &m, err, sizeof err), 0);
	assert_string_equal(m.env_id, "hostA");
	assert_int_equal(m.n, 3);
	assert_int_equal(m.keys[0].kind, SHM_INVAL_MSG);
	assert_memory_equal(m.keys[0].key, id1.b, 16);
	assert_int_equal(m.keys[1].kind, SHM_INVAL_STATIC);
	assert_int_equal(m.keys[1].klen, sklen);
	assert_memory_equal(m.keys[1].key, sk, sklen);
	assert_int_equal(m.keys[2].kind, SHM_INVAL_MSG);
	assert_memory_equal(m.keys[2].key, id2.b, 16);
	for (int i = 0; i < 3; i++) /* no payload: no room to tell */
		assert_null(m.keys[i].room);

	/* a message's room and created_at travel with its id, the room
	 * escaped on the wire (one word) and whole after parsing */
	static const char *const rooms[] = {"général", "a b%c\nd", "%",
	                                    "r\x7f\t"};
	fl_batch_clear(&b);
	out.len = 0;
	shm_msg rm[4];
	for (int i = 0; i < 4; i++) {
		rm[i] = tu_msg(rooms[i], i, "hello");
		shm_uuid_v7(&rm[i].id);
		rm[i].created_at = INT64_C(1700000000000000) + i;
		add_msg_rec(&b, 20 + (uint64_t)i, &rm[i]);
	}
	assert_int_equal(fl_inval_encode("hostA", &b, &out, ends, 8, &n), 0);
	assert_int_equal(n, 1);
	assert_non_null(memmem(out.p, out.len, " a%20b%25c%0Ad\n", 15));
	assert_int_equal(fl_inval_parse(out.p, out.len, &m, err, sizeof err), 0);
	assert_int_equal(m.n, 4);
	for (int i = 0; i < 4; i++) {
		assert_memory_equal(m.keys[i].key, rm[i].id.b, 16);
		assert_non_null(m.keys[i].room);
		assert_string_equal(m.keys[i].room, rooms[i]);
		assert_int_equal(m.keys[i].created_at, rm[i].created_at);
	}

	/* a batch of nothing L1 holds: no message */
	fl_batch_clear(&b);
	out.len = 0;
	add_rec(&b, 8, SHM_OP_MARK, sk, sklen);
	assert_int_equal(fl_inval_encode("hostA", &b, &out, ends, 8, &n), 0);
	assert_int_equal(n, 0);

	/* a batch that begins with records L1 does not hold (a graph change,
	 * a mark) and then names a message: one header, parsed by the other
	 * hosts (the header was written again after each skipped record, and
	 * every host refused the message: line 2 expected 'm UUID') */
	fl_batch_clear(&b);
	out.len = 0;
	add_rec(&b, 9, SHM_OP_GRAPH_SET, sk, sklen);
	add_rec(&b, 10, SHM_OP_MARK, sk, sklen);
	add_rec(&b, 11, SHM_OP_MSG_PUT, id1.b, 16);
	assert_int_equal(fl_inval_encode("hostA", &b, &out, ends, 8, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(fl_inval_parse(out.p, out.len, &m, err, sizeof err), 0);
	assert_int_equal(m.n, 1);
	assert_memory_equal(m.keys[0].key, id1.b, 16);

	/* a big batch is split; every key arrives once */
	fl_batch_clear(&b);
	out.len = 0;
	for (int i = 0; i < 12000; i++) {
		shm_uuid u;
		shm_uuid_v7(&u);
		add_rec(&b, 10 + (uint64_t)i, SHM_OP_MSG_PUT, u.b, 16);
	}
	assert_int_equal(fl_inval_encode("hostA", &b, &out, ends, 8, &n), 0);
	assert_true(n >= 2);
	size_t total = 0, from = 0;
	for (size_t i = 0; i < n; i++) {
		assert_true(ends[i] - from <= FL_INVAL_MAX_MSG + 64);
		assert_int_equal(fl_inval_parse(out.p + from, ends[i] - from, &m,
		                                err, sizeof err), 0);
		assert_memory_equal(m.keys[0].key,
		                    b.r[total].key, 16);
		total += m.n;
		from = ends[i];
	}
	assert_int_equal(total, 12000);

	/* malformed messages are refused */
	static const char *const bad[] = {
		"",
		"hello\n",
		"shm-inval 3 x\n",
		"shm-inval 1 hostA\nm 123\n",
		/* a room only in version 2, one escaped word, not empty */
		"shm-inval 1 hostA\nm 0190c1c2-0000-7000-8000-000000000000 1 r\n",
		/* an id that does not read: the line's key is unknown */
		"shm-inval 2 hostA\nm 0190c1c2-0000-7000-8000-0000000000001 1 r\n",
		"shm-inval 2 hostA\nm 0190c1c2-0000-7000-8000-00000000000g 1 r\n",
		"shm-inval 2 hostA\nm 0190c1c2-0000-7000-8000-000000000000 1 r\n"
		"m 123\n",
		"shm-inval 1 hostA\nm 0190c1c2-0000-7000-8000-00000000000g\n",
		"shm-inval 1 hostA\nm 0190c1c2-0000-7000-8000-000000000000 x\n",
		"shm-inval 1 hostA\ns 0190c1c2-0000-7000-8000-000000000000\n",
		"shm-inval 1 hostA\nm 0190c1c2-0000-7000-8000-000000000000",
		"shm-inval 1 hostA\nx 0190c1c2-0000-7000-8000-000000000000\n",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		assert_int_equal(fl_inval_parse(bad[i], strlen(bad[i]), &m, err,
		                                sizeof err), -1);
	/* an env id no sender writes (a C string): read as "hostA", it
	 * would be taken for hostA's own message, and ignored there */
	static const char nul_id[] = "shm-inval 2 hostA\0B\n";
	assert_int_equal(fl_inval_parse(nul_id, sizeof nul_id - 1, &m, err,
	                                sizeof err), -1);
	assert_string_equal(err, "env id: NUL byte at offset 5");
	/* nor one with a control byte or invalid UTF-8: it was taken, and
	 * logged raw ("first invalidation from another host (...)"), a
	 * terminal escape included */
	static const char *const ctl_ids[] = {
		"shm-inval 2 host\x1b[2JA\n", "shm-inval 2 host\xff" "A\n",
		"shm-inval 2 host A\n", "shm-inval 2 hostA\r\n",
	};
	static const char *const ctl_why[] = {
		"env id: byte 4 (0x1b) is not a printable ASCII character "
		"other than space",
		"env id: byte 4 (0xff) is not a printable ASCII character "
		"other than space",
		"env id: byte 4 (0x20) is not a printable ASCII character "
		"other than space",
		"env id: byte 5 (0x0d) is not a printable ASCII character "
		"other than space",
	};
	for (size_t i = 0; i < sizeof ctl_ids / sizeof ctl_ids[0]; i++) {
		assert_int_equal(fl_inval_parse(ctl_ids[i], strlen(ctl_ids[i]),
		                                &m, err, sizeof err), -1);
		assert_string_equal(err, ctl_why[i]);
	}
	const char *ok = "shm-inval 1 hostA\n";
	assert_int_equal(fl_inval_parse(ok, strlen(ok), &m, err, sizeof err), 0);
	assert_int_equal(m.n, 0);
	/* version 1 (a host not upgraded yet): ids without rooms */
	ok = "shm-inval 1 hostA\nm 0190c1c2-0000-7000-8000-000000000000\n";
	assert_int_equal(fl_inval_parse(ok, strlen(ok), &m, err, sizeof err), 0);
	assert_int_equal(m.n, 1);
	assert_null(m.keys[0].room);
	ok = "shm-inval 2 hostA\nm 0190c1c2-0000-7000-8000-000000000000 42 "
	     "r%C3%A9\n";
	assert_int_equal(fl_inval_parse(ok, strlen(ok), &m, err, sizeof err), 0);
	assert_string_equal(m.keys[0].room, "ré");
	assert_int_equal(m.keys[0].created_at, 42);
	assert_int_equal(m.rooms_refused, 0);
	/* a room that is not UTF-8 (a peer's bug) is refused here, where
	 * libshm would refuse the whole drop: its id kept without it, the
	 * other rooms kept, the first one named */
	ok = "shm-inval 2 hostA\n"
	     "m 0190c1c2-0000-7000-8000-000000000001 1 ok\n"
	     "m 0190c1c2-0000-7000-8000-000000000002 2 ba%FFd\n"
	     "m 0190c1c2-0000-7000-8000-000000000003 3 %C3\n"
	     "m 0190c1c2-0000-7000-8000-000000000004 4 r%C3%A9\n";
	assert_int_equal(fl_inval_parse(ok, strlen(ok), &m, err, sizeof err), 0);
	assert_int_equal(m.n, 4);
	assert_string_equal(m.keys[0].room, "ok");
	assert_null(m.keys[1].room);
	assert_int_equal(m.keys[1].created_at, 2);
	assert_int_equal(((const uint8_t *)m.keys[1].key)[15], 2);
	assert_null(m.keys[2].room);
	assert_string_equal(m.keys[3].room, "ré");
	assert_int_equal(((const uint8_t *)m.keys[3].key)[15], 4);
	assert_int_equal(m.rooms_refused, 2);
	assert_string_equal(m.room_why, "line 3: room not UTF-8 at byte 2");
	/* a created_at is a time put stores (1 us to 9999's last): a later
	 * one would raise the room's watermark for good, so the room is
	 * refused, named by line and value; its id is still dropped (no
	 * created_at then: 0), and so is the next line's, with its room */
	static const struct {
		const char *part; /* after "m UUID" */
		const char *why;  /* NULL: taken */
	} times[] = {
		{" 0 r", "line 2: created_at 0 us is no message's (1 to "
		         "253402300799999999: 1970 to 9999)"},
		{" 1 r", NULL},
		{" 253402300799999999 r", NULL},
		{" 253402300800000000 r", "line 2: created_at 253402300800000000"
		                          " us is no message's (1 to "},
		{" 9223372036854775807 r", "line 2: created_at "
		                           "9223372036854775807 us is no "},
		{" 99999999999999999999 r", "line 2: created_at "
		                            "99999999999999999999 is above 2^63 "
		                            "- 1 us"},
		/* nor a room part that does not read */
		{" ", "line 2: no created_at after the UUID"},
		{" x r", "line 2: no created_at after the UUID"},
		{" 1", "line 2: no room after created_at 1"},
		{" 1 ", "line 2: no room after created_at 1"},
		{" 1x r", "line 2: no room after created_at 1"},
		{" 1 a b", "line 2: room: byte 1 (0x20) is not %-escaped"},
		{" 1 a%2", "line 2: room: bad %-escape at byte 1"},
		{" 1 a%zz", "line 2: room: bad %-escape at byte 1"},
		{" 1 %00", "line 2: room: bad %-escape at byte 0"},
	};
	for (size_t i = 0; i < sizeof times / sizeof *times; i++) {
		char line[200];
		snprintf(line, sizeof line, "shm-inval 2 hostA\nm 0190c1c2-0000-"
		         "7000-8000-000000000001%s\nm 0190c1c2-0000-7000-8000-"
		         "000000000002 5 good\n", times[i].part);
		assert_int_equal(fl_inval_parse(line, strlen(line), &m, err,
		                                sizeof err), 0);
		assert_int_equal(m.n, 2);
		assert_int_equal(((const uint8_t *)m.keys[0].key)[15], 1);
		assert_int_equal(((const uint8_t *)m.keys[1].key)[15], 2);
		assert_string_equal(m.keys[1].room, "good");
		assert_int_equal(m.keys[1].created_at, 5);
		if (!times[i].why) {
			assert_int_equal(m.rooms_refused, 0);
			assert_string_equal(m.keys[0].room, "r");
			assert_int_equal(m.keys[0].created_at,
			                 strtoll(times[i].part, NULL, 10));
			continue;
		}
		assert_int_equal(m.rooms_refused, 1);
		assert_null(m.keys[0].room);
		assert_int_equal(m.keys[0].created_at, 0);
		if (strncmp(m.room_why, times[i].why, strlen(times[i].why)))
			fail_msg("'%s' is not '%s...'", m.room_why, times[i].why);
	}
	/* a room longer than a room can be: refused too */
	char longer[SHM_MAX_ROOM + 200];
	snprintf(longer, sizeof longer, "shm-inval 2 hostA\nm 0190c1c2-0000-"
	         "7000-8000-000000000001 1 %0*d\n", SHM_MAX_ROOM + 1, 0);
	assert_int_equal(fl_inval_parse(longer, strlen(longer), &m, err,
	                                sizeof err), 0);
	assert_int_equal(m.n, 1);
	assert_null(m.keys[0].room);
	if (strncmp(m.room_why, "line 2: room: longer than ", 26))
		fail_msg("'%s' is not 'line 2: room: longer than ...'", m.room_why);
	/* the next message starts with none refused */
	ok = "shm-inval 2 hostA\nm 0190c1c2-0000-7000-8000-000000000001 1 a\n";
	assert_int_equal(fl_inval_parse(ok, strlen(ok), &m, err, sizeof err), 0);
	assert_int_equal(m.rooms_refused, 0);
	assert_string_equal(m.room_why, "");
	fl_inval_msg_free(&m);
	fl_buf_free(&out);
	fl_batch_free(&b);
}

/* A peer names a static with its website and a UUID ID in upper case (a
 * host older than libshm's canonical form, which keys it in lower case):
 * it is this L1's lower-case entry, dropped. */
static void test_peer_static_key_in_upper_case_drops_our_copy(void **state)
{
	char *dir = tu_tmpdir();
	shm_env *env = tu_open(dir, NULL);
	shm_uuid w;
	shm_info in;
	shm_static *st = NULL;
	fl_inval_msg m;
	uint64_t dropped = 9, kept = 9;
	char err[200], msg[200];

	memset(&m, 0, sizeof m);
	assert_int_equal(shm_uuid_parse("0b8e7c52-1111-4222-8333-44445555abcd",
	                                &w), 0);
	assert_int_equal(shm_static_put(env, &w, "Page/c0ffee00-0000-4000-"
	                                "8000-0000000000ab", "abc", 3, NULL), 0);
	assert_int_equal(shm_env_info(env, &in), 0);
	assert_int_equal(shm_log_trim(env, in.log_last), 0); /* flushed */
	snprintf(msg, sizeof msg, "shm-inval 2 hostB\ns 0B8E7C52-1111-4222-"
	         "8333-44445555ABCD Page/C0FFEE00-0000-4000-8000-0000000000AB\n");
	assert_int_equal(fl_inval_parse(msg, strlen(msg), &m, err, sizeof err),
	                 0);
	assert_int_equal(m.n, 1);
	assert_int_equal(shm_l1_invalidate_many(env, m.keys, m.n, &dropped,
	                                        &kept), 0);
	assert_int_equal(dropped, 1);
	assert_int_equal(kept, 0);
	assert_int_equal(shm_static_peek(env, &w, "Page/C0FFEE00-0000-4000-"
	                                 "8000-0000000000AB", &st),
	                 SHM_ENOTFOUND);
	fl_inval_msg_free(&m);
	shm_env_close(env);
	tu_rmdir(dir);
	free(dir);
}

/* ---------------------------------------------- two hosts (servers) */

/* A message read into B's L1 (read-through fill, then its own copy), edited
 * on A: once A's flusher published, B's L1 no longer serves the old
 * version and B's get returns the new one through Redis. Statics too. */
static void test_write_on_a_drops_copy_on_b(void **state)
{
	NEED_SERVERS();
	hosts h;
	shm_msg m;
	char content[64];
	char *got;
	shm_counters c0, c1;
	shm_uuid w;
	shm_static *st = NULL;

	hosts_open(&h, pg_info);
	m = tu_msg(h.room, 7, "version 1");
	assert_int_equal(shm_msg_put(h.a, &m), 0);
	assert_true(wait_flushed(h.a, 10000));

	/* B: a miss fills L1 from Redis; the next get is an L1 hit */
	assert_false(l1_has(h.b, &m.id, NULL, 0));
	got = get_content(h.b, &m.id);
	assert_non_null(got);
	assert_string_equal(got, "version 1");
	free(got);
	assert_true(l1_has(h.b, &m.id, content, sizeof content));
	assert_string_equal(content, "version 1");

	/* B generates a static of its own; its flusher flushes it (and its
	 * own message on the channel must not drop B's copy) */
	shm_uuid_v7(&w);
	assert_int_equal(shm_static_put(h.b, &w, "Page/1", "B's render", 10,
	                                NULL), 0);
	assert_true(wait_flushed(h.b, 10000));
	assert_true(wait_meta(h.b, "flusher.inval.published", 1, 5000));
	tu_sleep_ms(200);
	assert_int_equal(shm_static_peek(h.b, &w, "Page/1", &st), 0);
	shm_static_free(st);
	assert_int_equal(meta(h.b, "flusher.inval.dropped"), 0);

	/* A edits the message and renders the static anew */
	shm_stats_shared(h.b, &c0);
	assert_int_equal(shm_msg_edit(h.a, &m.id, "version 2", 9), 0);
	assert_int_equal(shm_static_put(h.a, &w, "Page/1", "A's render", 10,
	                                NULL), 0);
	assert_true(wait_flushed(h.a, 10000));

	/* B's copies go away */
	uint64_t end = ms_now() + 5000;
	while (ms_now() < end && l1_has(h.b, &m.id, NULL, 0))
		tu_sleep_ms(10);
	if (l1_has(h.b, &m.id, NULL, 0)) {
		dump_log(h.dir_a);
		dump_log(h.dir_b);
	}
	assert_false(l1_has(h.b, &m.id, NULL, 0));
	while (ms_now() < end &&
	       shm_static_peek(h.b, &w, "Page/1", &st) == 0)
		shm_static_free(st), tu_sleep_ms(10);
	assert_int_equal(shm_static_peek(h.b, &w, "Page/1", &st),
	                 SHM_ENOTFOUND);
	shm_stats_shared(h.b, &c1);
	assert_true(c1.invalidations >= c0.invalidations + 2);

	/* B reads the new version through Redis, and keeps it in L1 */
	got = get_content(h.b, &m.id);
	assert_non_null(got);
	assert_string_equal(got, "version 2");
	free(got);
	assert_true(l1_has(h.b, &m.id, content, sizeof content));
	assert_string_equal(content, "version 2");
	/* A's own copy was not touched by its own message */
	assert_true(l1_has(h.a, &m.id, content, sizeof content));
	assert_string_equal(content, "version 2");
	assert_true(wait_meta(h.b, "flusher.inval.received", 1, 2000));
	assert_int_equal(tu_verify(h.a), 0);
	assert_int_equal(tu_verify(h.b), 0);
	hosts_close(&h);
}

/* A new message written on A joins B's room page: B's L1 holds the room's
 * newest messages (its own), so only the invalidation's room tells B that
 * the page is no longer complete without PostgreSQL. */
static void test_write_on_a_joins_room_page_on_b(void **state)
{
	NEED_SERVERS();
	hosts h;
	shm_msg mb[3], ma, **page;
	uint64_t l3;
	size_t n = 0;

	hosts_open(&h, pg_info);
	for (int i = 0; i < 3; i++) {
		mb[i] = tu_msg(h.room, 10 + i, "written on B");
		mb[i].created_at = shm_now_us() - (3 - i) * 1000;
		assert_int_equal(shm_msg_put(h.b, &mb[i]), 0);
	}
	assert_true(wait_flushed(h.b, 10000));
	assert_int_equal(page_of(h.b, h.room, 3, &page, &l3), 3);
	assert_memory_equal(page[0]->id.b, mb[2].id.b, 16);
	shm_msgs_free(page, 3);
	assert_int_equal(l3, 0);

	ma = tu_msg(h.room, 7, "written on A");
	ma.created_at = shm_now_us();
	assert_int_equal(shm_msg_put(h.a, &ma), 0);
	assert_true(wait_flushed(h.a, 10000));
	bool seen = false;
	for (uint64_t end = ms_now() + 5000; !seen && ms_now() < end;) {
		n = page_of(h.b, h.room, 3, &page, &l3);
		seen = n == 3 && !memcmp(page[0]->id.b, ma.id.b, 16);
		if (seen) {
			assert_int_equal(l3, 1);
			assert_string_equal(page[0]->content, "written on A");
			assert_memory_equal(page[1]->id.b, mb[2].id.b, 16);
			assert_memory_equal(page[2]->id.b, mb[1].id.b, 16);
		}
		shm_msgs_free(page, n);
		if (!seen)
			tu_sleep_ms(20);
	}
	if (!seen) {
		dump_log(h.dir_a);
		dump_log(h.dir_b);
	}
	assert_true(seen);
	assert_int_equal(tu_verify(h.b), 0);
	hosts_close(&h);
}

/* A peer's message whose room libshm refuses (not UTF-8) still drops the
 * ids it names: the rooms are ignored, the error counted. */
static void test_bad_room_from_a_peer_still_drops(void **state)
{
	NEED_SERVERS();
	hosts h;
	shm_msg m;
	char ids[37], msg[256];

	assert_int_equal(strncmp(redis_url, "unix://", 7), 0);
	hosts_open(&h, pg_info);
	m = tu_msg(h.room, 7, "on B");
	assert_int_equal(shm_msg_put(h.b, &m), 0);
	assert_true(wait_flushed(h.b, 10000));
	assert_true(l1_has(h.b, &m.id, NULL, 0));
	uint64_t errors = meta(h.b, "flusher.inval.errors");

	shm_uuid_format(&m.id, ids);
	snprintf(msg, sizeof msg, "shm-inval 2 hostZ\nm %s 1 bad%%FFroom\n",
	         ids);
	redisContext *c = redisConnectUnix(redis_url + 7);
	assert_non_null(c);
	assert_int_equal(c->err, 0);
	redisReply *r = redisCommand(c, "PUBLISH %s %s", FL_INVAL_CHANNEL, msg);
	assert_non_null(r);
	assert_int_equal(r->type, REDIS_REPLY_INTEGER);
	assert_true(r->integer >= 1); /* B's subscriber at least */
	freeReplyObject(r);
	redisFree(c);

	uint64_t end = ms_now() + 5000;
	while (ms_now() < end && l1_has(h.b, &m.id, NULL, 0))
		tu_sleep_ms(10);
	assert_false(l1_has(h.b, &m.id, NULL, 0));
	assert_true(wait_meta(h.b, "flusher.inval.errors", errors + 1, 5000));
	hosts_close(&h);
}

/* A peer's line with a created_at no message has (a bug there) loses its
 * room, not its id: B drops that message from L1, and the message's other
 * line is applied whole, its room's pages on B asking PostgreSQL. */
static void test_bad_created_at_from_a_peer_still_drops(void **state)
{
	NEED_SERVERS();
	hosts h;
	shm_msg mb[3], mo, **page;
	shm_uuid foreign;
	uint64_t l3;
	char room2[80], ido[37], idf[37], msg[512];

	assert_int_equal(strncmp(redis_url, "unix://", 7), 0);
	hosts_open(&h, pg_info);
	for (int i = 0; i < 3; i++) {
		mb[i] = tu_msg(h.room, 10 + i, "on B");
		mb[i].created_at = shm_now_us() - (3 - i) * 1000;
		assert_int_equal(shm_msg_put(h.b, &mb[i]), 0);
	}
	snprintf(room2, sizeof room2, "%s-2", h.room);
	mo = tu_msg(room2, 1, "on B, another room");
	assert_int_equal(shm_msg_put(h.b, &mo), 0);
	assert_true(wait_flushed(h.b, 10000));
	assert_true(l1_has(h.b, &mo.id, NULL, 0));
	assert_int_equal(page_of(h.b, h.room, 3, &page, &l3), 3);
	shm_msgs_free(page, 3);
	assert_int_equal(l3, 0);
	uint64_t errors = meta(h.b, "flusher.inval.errors");
	uint64_t keys = meta(h.b, "flusher.inval.keys");

	/* line 2: mo with a created_at of 0; line 3: a message B lacks,
	 * newer than B's page of h.room */
	shm_uuid_format(&mo.id, ido);
	shm_uuid_v7(&foreign);
	shm_uuid_format(&foreign, idf);
	snprintf(msg, sizeof msg, "shm-inval 2 hostZ\nm %s 0 %s\nm %s %" PRId64
	         " %s\n", ido, room2, idf, shm_now_us(), h.room);
	redisContext *c = redisConnectUnix(redis_url + 7);
	assert_non_null(c);
	assert_int_equal(c->err, 0);
	publish_raw(c, msg);
	redisFree(c);

	if (!l1_loses(h.b, &mo.id)) {
		dump_log(h.dir_b);
		fail_msg("a line with a bad created_at kept its id in B's L1");
	}
	assert_true(wait_meta(h.b, "flusher.inval.keys", keys + 2, 5000));
	assert_true(wait_meta(h.b, "flusher.inval.errors", errors + 1, 5000));
	assert_int_equal(page_of(h.b, h.room, 3, &page, &l3), 3);
	assert_memory_equal(page[0]->id.b, mb[2].id.b, 16);
	shm_msgs_free(page, 3);
	assert_int_equal(l3, 1); /* line 3's room: B's page is incomplete */
	assert_int_equal(tu_verify(h.b), 0);
	hosts_close(&h);
}

/* Publishes a peer's message naming one new message of room (a write that
 * raises the room's watermark here). */
static void publish_new_message(redisContext *c, const char *room)
{
	char id[37], msg[256];
	shm_uuid u;

	shm_uuid_v7(&u);
	shm_uuid_format(&u, id);
	snprintf(msg, sizeof msg, "shm-inval 2 hostZ\nm %s %" PRId64 " %s\n",
	         id, shm_now_us(), room);
	redisReply *r = redisCommand(c, "PUBLISH %s %s", FL_INVAL_CHANNEL, msg);
	assert_non_null(r);
	assert_int_equal(r->type, REDIS_REPLY_INTEGER);
	assert_true(r->integer >= 1); /* our subscriber at least */
	freeReplyObject(r);
}

/* A subscriber run in this process (fl_inval_start, remind-interval 1 s,
 * backoff-min-ms as given, its log in log) on a 1 MiB environment; with
 * full, the map is full of unflushed edits and a read snapshot (snap)
 * keeps the freed pages: every write fails, drops included, until
 * full_sub_release. c publishes. A test's own, on the heap (*state,
 * full_sub_setup), closed by its teardown whatever the test did: a failed
 * assertion leaves nothing open (a subscriber thread reading a dead stack,
 * a snapshot, a log) for the next test. */
typedef struct full_sub {
	char *dir, log[4200];
	fl_config cfg;
	shm_env *env;
	shm_rtxn *snap;
	fl_inval *iv;
	redisContext *c;
} full_sub;

/* Fills the map of f with unflushed edits and holds a read snapshot
 * (snap) that keeps its free pages: every write fails, drops included,
 * until full_sub_release. */
static void full_sub_fill(full_sub *f)
{
	char content[2000];
	int rc = 0, i;
	shm_msg m = tu_msg("full", 0, "first");

	assert_int_equal(shm_msg_put(f->env, &m), 0);
	assert_int_equal(shm_rtxn_begin(f->env, &f->snap), 0);
	memset(content, 'z', sizeof content - 1);
	content[sizeof content - 1] = 0;
	for (i = 0; i < 100000 && rc == 0; i++) {
		content[i % 1999] = (char)('a' + i % 26);
		rc = shm_msg_edit(f->env, &m.id, content, strlen(content));
	}
	assert_int_equal(rc, SHM_EFULL);
}

static void full_sub_open(full_sub *f, const char *backoff_min_ms,
                          const char *backoff_max_ms, bool full)
{
	char err[512];

	f->dir = tu_tmpdir();
	char *argv[] = {"shm-flusher", "-e", f->dir, "--redis",
	                (char *)redis_url, "--remind-interval", "1",
	                "--backoff-min-ms", (char *)backoff_min_ms,
	                "--backoff-max-ms", (char *)backoff_max_ms, NULL};
	shm_options o;

	assert_int_equal(strncmp(redis_url, "unix://", 7), 0);
	shm_options_init(&o);
	o.map_size = 1 << 20;
	f->env = tu_open(f->dir, &o);
	snprintf(f->log, sizeof f->log, "%s/inval.log", f->dir);
	assert_int_equal(fl_config_load(&f->cfg, 11, argv, err, sizeof err), 0);
	assert_int_equal(fl_log_open(f->log, FL_INFO), 0);

	if (full)
		full_sub_fill(f);

	assert_int_equal(fl_inval_start(&f->iv, &f->cfg, f->env, "hostY", true),
	                 0);
	uint64_t end = ms_now() + 10000;
	while (!fl_inval_subscribed(f->iv) && ms_now() < end)
		tu_sleep_ms(10);
	assert_true(fl_inval_subscribed(f->iv));
	f->c = redisConnectUnix(redis_url + 7);
	assert_non_null(f->c);
	assert_int_equal(f->c->err, 0);
}

/* The held snapshot ends: the freed pages can be used again. */
static void full_sub_release(full_sub *f)
{
	if (f->snap)
		shm_rtxn_end(f->snap);
	f->snap = NULL;
}

static int full_sub_setup(void **state)
{
	*state = calloc(1, sizeof(full_sub));
	return *state ? 0 : -1;
}

/* Closes what the test left open (all of it, or what it opened before an
 * assertion failed), then frees f. */
static int full_sub_teardown(void **state)
{
	full_sub *f = *state;

	full_sub_release(f);
	redisFree(f->c);
	fl_inval_stop(f->iv);
	fl_log_close();
	fl_config_free(&f->cfg);
	shm_env_close(f->env);
	if (f->dir)
		tu_rmdir(f->dir);
	free(f->dir);
	free(f);
	return kill_children(state);
}

/* Waits until the log of f has n lines with s (10 s at most); the time
 * waited. */
static uint64_t full_sub_waits_for(full_sub *f, const char *s, unsigned n)
{
	uint64_t t0 = ms_now(), end = t0 + 10000;

	while (tu_lines_with(f->log, s) < n && ms_now() < end)
		tu_sleep_ms(5);
	assert_true(tu_lines_with(f->log, s) >= n);
	return ms_now() - t0;
}

/* Publishes something no host sends: the subscriber says it cannot read
 * it (MALFORMED), after every message published before it. */
#define MALFORMED "a malformed message ("
static void publish_malformed(redisContext *c)
{
	publish_raw(c, "not an invalidation");
}

/* Drops that fail at every message (a full map: a read snapshot keeps the
 * freed pages) are logged once, reminded every remind-interval (1 s here)
 * with a count, and said to work again when they do: not one ERROR per
 * message. */
static void test_failed_drops_are_said_once_then_reminded(void **state)
{
	NEED_SERVERS();
	const char *failed = "keys not invalidated";
	full_sub *f = *state;
	int i;

	full_sub_open(f, "10", "10000", true);
	uint64_t t0 = ms_now();
	for (i = 0; i < 40; i++) {
		publish_new_message(f->c, "r");
		tu_sleep_ms(75);
	}
	uint64_t end = ms_now() + 5000;
	while (tu_lines_with(f->log, "from hostZ") < 1 && ms_now() < end)
		tu_sleep_ms(10);
	tu_sleep_ms(300); /* the last messages handled */
	unsigned said = tu_lines_with(f->log, failed);
	uint64_t most = 2 + (ms_now() - t0) / 1000;
	fprintf(stderr, "%u lines about %d failed drops in %" PRIu64 " ms\n",
	        said, i, ms_now() - t0);
	assert_true(said >= 1);
	assert_true(said <= most);
	assert_true(tu_lines_with(f->log, "still failing: ") >= 1);

	full_sub_release(f);
	publish_new_message(f->c, "r");
	end = ms_now() + 5000;
	while (tu_lines_with(f->log, "works again") < 1 && ms_now() < end)
		tu_sleep_ms(10);
	assert_int_equal(tu_lines_with(f->log, "dropping keys other hosts "
	                               "wrote works again"), 1);
}

/* While drops keep failing, the subscriber keeps up with the channel: the
 * pause before a second try (backoff-min-ms, 200 ms here) is for a failure
 * that is new, not for every message. A burst of 15 messages once the
 * failure is known is read in well under 15 pauses (3 s). */
static void test_failing_drops_keep_up_with_the_channel(void **state)
{
	NEED_SERVERS();
	const unsigned n = 15, pause_ms = 200;
	full_sub *f = *state;

	full_sub_open(f, "200", "10000", true);
	publish_new_message(f->c, "r");
	full_sub_waits_for(f, "keys not invalidated", 1);
	uint64_t t0 = ms_now();
	for (unsigned i = 0; i < n; i++)
		publish_new_message(f->c, "r");
	publish_malformed(f->c);
	full_sub_waits_for(f, MALFORMED, 1);
	uint64_t dt = ms_now() - t0;
	fprintf(stderr, "%u messages read in %" PRIu64 " ms while drops fail "
	        "(backoff-min-ms %u)\n", n, dt, pause_ms);
	if (dt >= n * pause_ms / 3)
		fail_msg("%u messages took %" PRIu64 " ms to read while drops "
		         "fail: a pause of %u ms at each", n, dt, pause_ms);
	assert_int_equal(tu_lines_with(f->log, "keys not invalidated"), 1);
}

/* Publishes a peer's message naming message id (no room). */
static void publish_id(redisContext *c, const shm_uuid *id)
{
	char u[37], msg[128];

	shm_uuid_format(id, u);
	snprintf(msg, sizeof msg, "shm-inval 2 hostZ\nm %s\n", u);
	redisReply *r = redisCommand(c, "PUBLISH %s %s", FL_INVAL_CHANNEL, msg);
	assert_non_null(r);
	assert_int_equal(r->type, REDIS_REPLY_INTEGER);
	assert_true(r->integer >= 1);
	freeReplyObject(r);
}

/* A peer's message names a flushed entry of this L1 while drops fail (the
 * map full): once drops work again, that entry is gone from L1, whether
 * other peers' messages come after the failure (more) or none do. */
static void stale_key_dropped_after_failure(full_sub *f, bool more)
{
	shm_info in;
	shm_msg *got = NULL;

	full_sub_open(f, "10", "10000", false);
	shm_msg k = tu_msg("stale", 1, "old");
	assert_int_equal(shm_msg_put(f->env, &k), 0);
	assert_int_equal(shm_env_info(f->env, &in), 0);
	assert_int_equal(shm_log_trim(f->env, in.log_last), 0); /* flushed */
	full_sub_fill(f);

	publish_id(f->c, &k.id); /* the peer wrote k: this copy is stale */
	full_sub_waits_for(f, "keys not invalidated", 1);
	assert_true(l1_has(f->env, &k.id, NULL, 0)); /* the drop failed */

	full_sub_release(f); /* the failure ends */
	if (more) {
		publish_new_message(f->c, "r");
		full_sub_waits_for(f, "dropping keys other hosts wrote works "
		                   "again", 1);
	}
	uint64_t end = ms_now() + 10000;
	while (l1_has(f->env, &k.id, NULL, 0) && ms_now() < end)
		tu_sleep_ms(10);
	int rc = shm_msg_get(f->env, &k.id, &got);
	if (rc == 0) {
		bool stale = got->content_len == 3 &&
		             memcmp(got->content, "old", 3) == 0;
		shm_msg_free(got);
		if (stale)
			fail_msg("the failure ended %s 10 s ago and L1 still "
			         "serves the value a peer's message named",
			         more ? "(and a peer's message was dropped)"
			              : "");
	}
	assert_int_equal(rc, SHM_ENOTFOUND); /* no read-through here */
	assert_int_equal(tu_verify(f->env), 0);
}

static void test_stale_key_dropped_when_drops_work_again(void **state)
{
	NEED_SERVERS();
	stale_key_dropped_after_failure(*state, true);
}

static void test_stale_key_dropped_after_failure_without_messages(void **state)
{
	NEED_SERVERS();
	stale_key_dropped_after_failure(*state, false);
}

/* Kills the subscriber's connection and waits until it is subscribed
 * again (its reset of L1 tried): lost is the count of "lost its
 * connection" lines expected after it. */
static void resubscribe(full_sub *f, unsigned lost)
{
	redisReply *r = redisCommand(f->c, "CLIENT KILL TYPE pubsub");
	assert_non_null(r);
	assert_int_equal(r->type, REDIS_REPLY_INTEGER);
	assert_true(r->integer >= 1);
	freeReplyObject(r);
	full_sub_waits_for(f, "subscriber lost its connection", lost);
	uint64_t end = ms_now() + 10000;
	while (!fl_inval_subscribed(f->iv) && ms_now() < end)
		tu_sleep_ms(5);
	assert_true(fl_inval_subscribed(f->iv));
}

/* A reset of L1 after a gap in the subscription (peers known) that fails
 * at every reconnect is said once, reminded every remind-interval, and
 * said to work again when it does: not one ERROR per reconnect. */
static void test_failed_resets_are_said_once_then_reminded(void **state)
{
	NEED_SERVERS();
	const char *failed = "cannot drop the flushed L1 entries";
	const unsigned n = 10;
	full_sub *f = *state;

	/* backoff-max-ms 40: the quick reconnects below are a flapping
	 * connection (invariant 7), kept to 40 ms apart */
	full_sub_open(f, "10", "40", true);
	publish_new_message(f->c, "r"); /* a peer is known from now on */
	full_sub_waits_for(f, "first invalidation from another host", 1);
	uint64_t t0 = ms_now();
	for (unsigned i = 1; i <= n; i++)
		resubscribe(f, i);
	unsigned said = tu_lines_with(f->log, failed);
	uint64_t most = 2 + (ms_now() - t0) / 1000;
	fprintf(stderr, "%u lines about %u failed resets in %" PRIu64 " ms\n",
	        said, n, ms_now() - t0);
	assert_true(said >= 1);
	if (said > most)
		fail_msg("%u lines about %u failed resets (at most %" PRIu64
		         " expected)", said, n, most);

	full_sub_release(f);
	resubscribe(f, n + 1);
	full_sub_waits_for(f, "subscribed: dropped ", 1);
	assert_int_equal(tu_lines_with(f->log, "dropping the flushed L1 "
	                               "entries after a gap, failed drops or "
	                               "a malformed message works again"), 1);
}

/* A Redis that drops its subscribers again and again (CLIENT KILL every
 * 5 ms for 2 s, as a pubsub output limit hit at every burst would): the
 * reconnects back off as in an outage (invariant 7), 10, 20, 40 ... ms,
 * so about 8 losses in 2 s, one WARN, not a reconnect and a reset of L1
 * every 10 ms; the subscription comes back once the kills stop. */
static void test_flapping_subscription_backs_off(void **state)
{
	NEED_SERVERS();
	const char *lost = "subscriber lost its connection";
	full_sub *f = *state;

	full_sub_open(f, "10", "10000", false);
	publish_new_message(f->c, "r"); /* a peer: each reconnect resets L1 */
	full_sub_waits_for(f, "first invalidation from another host", 1);
	uint64_t t0 = ms_now();
	while (ms_now() - t0 < 2000) {
		redisReply *r = redisCommand(f->c, "CLIENT KILL TYPE pubsub");
		assert_non_null(r);
		assert_int_equal(r->type, REDIS_REPLY_INTEGER);
		freeReplyObject(r);
		tu_sleep_ms(5);
	}
	unsigned n = tu_lines_with(f->log, lost);
	unsigned resets = tu_lines_with(f->log, "subscribed: dropped ");
	fprintf(stderr, "%u connections lost, %u resets of L1 in 2 s of "
	        "kills\n", n, resets);
	assert_true(n >= 3);
	if (n > 10 || resets > 10)
		fail_msg("%u connections lost, %u resets of L1 in 2 s (at most "
		         "10 expected)", n, resets);
	assert_int_equal(tu_lines_with(f->log, "WARN inval: subscriber lost"),
	                 1);
	uint64_t end = ms_now() + 10000;
	while (!fl_inval_subscribed(f->iv) && ms_now() < end)
		tu_sleep_ms(5);
	assert_true(fl_inval_subscribed(f->iv));
}

/* A buggy peer whose every message has a room libshm refuses (not UTF-8):
 * "rooms ignored" is said once (reminded every remind-interval), not per
 * message, and said to work again when that peer's rooms do. */
static void test_bad_rooms_are_said_once_then_reminded(void **state)
{
	NEED_SERVERS();
	const unsigned n = 10;
	char id[37], msg[256];
	full_sub *f = *state;
	shm_uuid u;

	full_sub_open(f, "10", "10000", false);
	uint64_t t0 = ms_now();
	for (unsigned i = 0; i < n; i++) {
		shm_uuid_v7(&u);
		shm_uuid_format(&u, id);
		snprintf(msg, sizeof msg, "shm-inval 2 hostZ\nm %s 1 "
		         "bad%%FFroom\n", id);
		freeReplyObject(redisCommand(f->c, "PUBLISH %s %s",
		                             FL_INVAL_CHANNEL, msg));
	}
	publish_malformed(f->c);
	full_sub_waits_for(f, MALFORMED, 1);
	unsigned said = tu_lines_with(f->log, "rooms ignored");
	uint64_t most = 1 + (ms_now() - t0) / 1000;
	fprintf(stderr, "%u lines about %u messages with a bad room in %"
	        PRIu64 " ms\n", said, n, ms_now() - t0);
	assert_true(said >= 1);
	if (said > most)
		fail_msg("%u lines about %u bad rooms (at most %" PRIu64
		         " expected)", said, n, most);

	publish_new_message(f->c, "good");
	full_sub_waits_for(f, "rooms of other hosts' messages works again", 1);
	tu_sleep_ms(100);
	assert_int_equal(tu_lines_with(f->log, "rooms of other hosts' "
	                               "messages works again"), 1);
}

/* A flushed message of f's environment (every sink "has" it). */
static shm_msg put_flushed(full_sub *f, const char *content)
{
	shm_msg k = tu_msg("flushed", 1, content);
	shm_info in;

	assert_int_equal(shm_msg_put(f->env, &k), 0);
	assert_int_equal(shm_env_info(f->env, &in), 0);
	assert_int_equal(shm_log_trim(f->env, in.log_last), 0);
	return k;
}

/* A message that does not read named keys this host cannot know, so they
 * would stay stale: every flushed L1 entry is dropped (unflushed local work
 * kept), said and counted. One that says it is this host's own is no more
 * to be trusted than its lines: the same. */
static void test_malformed_message_resets_l1(void **state)
{
	NEED_SERVERS();
	full_sub *f = *state;

	full_sub_open(f, "10", "10000", false);
	shm_msg k = put_flushed(f, "stale here");
	shm_msg u = tu_msg("local", 2, "unflushed");
	assert_int_equal(shm_msg_put(f->env, &u), 0);

	const char *bad = "shm-inval 2 hostZ\nm 0190c1c2-0000-7000-8000-"
	                  "00000000000g\n";
	char said[200];
	snprintf(said, sizeof said, "WARN inval: a malformed message (%zu "
	         "bytes, its sender unknown): line 2: bad UUID; the keys it "
	         "named are unknown: every flushed L1 entry will be dropped",
	         strlen(bad));
	publish_raw(f->c, bad);
	full_sub_waits_for(f, MALFORMED, 1);
	if (!l1_loses(f->env, &k.id))
		fail_msg("a peer's malformed message left a flushed entry in L1");
	assert_true(l1_has(f->env, &u.id, NULL, 0));
	full_sub_waits_for(f, "after a malformed message: dropped 1 flushed "
	                   "L1 entry", 1);
	assert_int_equal(tu_lines_with(f->log, said), 1);
	assert_true(wait_meta(f->env, "flusher.inval.resets", 1, 5000));
	assert_true(wait_meta(f->env, "flusher.inval.errors", 1, 5000));
	assert_int_equal(meta(f->env, "flusher.inval.received"), 0);

	/* "from hostY", this host: its lines do not read, nor does its name */
	shm_msg k2 = put_flushed(f, "stale too"); /* u with it */
	shm_msg u2 = tu_msg("local", 3, "unflushed too");
	assert_int_equal(shm_msg_put(f->env, &u2), 0);
	publish_raw(f->c, "shm-inval 2 hostY\nm 0190c1c2\n");
	if (!l1_loses(f->env, &k2.id))
		fail_msg("a malformed message naming this host left a flushed "
		         "entry in L1");
	assert_true(l1_has(f->env, &u2.id, NULL, 0));
	assert_true(wait_meta(f->env, "flusher.inval.resets", 2, 5000));
	assert_int_equal(tu_verify(f->env), 0);
}

/* A flood of malformed messages (40 in 1 s) does not walk L1 once per
 * message: while they keep coming, the resets they owe are backoff-min-ms
 * apart (10 ms here), doubled each time; it is said once (reminded every
 * second here), and said to end once none came for a remind-interval.
 * Every message of the flood is covered: a flushed entry written during
 * it is gone at the end. */
static void test_malformed_flood_costs_few_resets(void **state)
{
	NEED_SERVERS();
	const unsigned n = 40;
	const char *reset = "after a malformed message: dropped ";
	full_sub *f = *state;

	full_sub_open(f, "10", "10000", false);
	uint64_t t0 = ms_now();
	shm_msg k = {0};
	for (unsigned i = 0; i < n; i++) {
		if (i == n - 5)
			k = put_flushed(f, "written during the flood");
		publish_malformed(f->c);
		tu_sleep_ms(25);
	}
	full_sub_waits_for(f, "reading other hosts' messages works again", 1);
	unsigned resets = tu_lines_with(f->log, reset);
	unsigned said = tu_lines_with(f->log, MALFORMED);
	uint64_t most = 2 + (ms_now() - t0) / 1000;
	fprintf(stderr, "%u resets of L1, %u lines for %u malformed messages "
	        "in %" PRIu64 " ms\n", resets, said, n, ms_now() - t0);
	assert_true(resets >= 1);
	if (resets > 12)
		fail_msg("%u resets of L1 for %u malformed messages in a second "
		         "(at most 12 expected)", resets, n);
	if (said > most)
		fail_msg("%u lines about %u malformed messages (at most %" PRIu64
		         " expected)", said, n, most);
	if (!l1_loses(f->env, &k.id))
		fail_msg("an entry flushed during a flood of malformed messages "
		         "is still in L1");
}

/* B has unflushed local work on a key (its PostgreSQL sink cannot reach
 * its server, so nothing of B's gets flushed); A writes the same key: B
 * keeps its version, which its sinks will apply after A's. */
static void test_unflushed_on_b_is_kept(void **state)
{
	NEED_SERVERS();
	hosts h;
	shm_msg m;
	char content[64];

	/* B's PostgreSQL: nothing listens there */
	hosts_open(&h, "host=/nonexistent-shm-test dbname=x connect_timeout=1");
	m = tu_msg(h.room, 7, "from B");
	assert_int_equal(shm_msg_put(h.b, &m), 0);   /* unflushed on B */
	shm_msg ma = tu_msg(h.room, 8, "from A");
	ma.id = m.id;
	assert_int_equal(shm_msg_put(h.a, &ma), 0);
	assert_true(wait_flushed(h.a, 10000));
	if (!wait_meta(h.b, "flusher.inval.kept", 1, 5000)) {
		dump_log(h.dir_a);
		dump_log(h.dir_b);
		fail_msg("B never received A's invalidation");
	}
	assert_true(l1_has(h.b, &m.id, content, sizeof content));
	assert_string_equal(content, "from B");
	assert_int_equal(meta(h.b, "flusher.inval.dropped"), 0);
	assert_int_equal(tu_verify(h.b), 0);
	hosts_close(&h);
}

/* After a gap in B's subscription (its flusher restarted), once peers are
 * known, B drops every flushed entry: it may have missed invalidations. */
static void test_gap_drops_flushed_entries(void **state)
{
	NEED_SERVERS();
	hosts h;
	shm_msg m;
	char *got;

	hosts_open(&h, pg_info);
	m = tu_msg(h.room, 7, "one");
	assert_int_equal(shm_msg_put(h.a, &m), 0);
	assert_true(wait_flushed(h.a, 10000));
	assert_true(wait_meta(h.b, "flusher.inval.received", 1, 5000));
	assert_int_equal(meta(h.b, "flusher.inval.peers_seen"), 1);

	flusher_stop(h.fb);
	h.fb = 0;
	got = get_content(h.b, &m.id); /* filled while B's channel is down */
	assert_non_null(got);
	free(got);
	assert_true(l1_has(h.b, &m.id, NULL, 0));
	uint64_t resets = meta(h.b, "flusher.inval.resets");
	h.fb = flusher_start(h.dir_b, h.id_b, pg_info, NULL);
	assert_true(wait_meta(h.b, "flusher.inval.resets", resets + 1, 10000));
	assert_false(l1_has(h.b, &m.id, NULL, 0));
	assert_int_equal(tu_verify(h.b), 0);
	hosts_close(&h);
}

/* invalidation = no: nothing published, nothing subscribed. */
static void test_invalidation_off(void **state)
{
	NEED_SERVERS();
	char *dir = tu_tmpdir();
	shm_env *env = tu_open(dir, NULL);
	shm_msg m = tu_msg("inval-off", 7, "x");
	assert_int_equal(shm_msg_put(env, &m), 0);
	char id[64]; /* a run's own: the position row knows its environment */
	snprintf(id, sizeof id, "hostOff-%s", strrchr(dir, '/') + 1);
	pid_t f = flusher_start(dir, id, pg_info, "--invalidation=no");
	assert_true(wait_flushed(env, 10000));
	tu_sleep_ms(200);
	assert_int_equal(meta(env, "flusher.inval.published"), 0);
	assert_int_equal(meta(env, "flusher.inval.subscribed"), 0);
	flusher_stop(f);
	shm_env_close(env);
	tu_rmdir(dir);
	free(dir);
}

/* A backlog drained in one batch whose keys take more than 64 channel
 * messages of FL_INVAL_MAX_MSG (16 MiB): 25,000 messages of a 255-byte
 * room written %XX on the wire (822 bytes a line: 20 MB), drained by A's
 * flusher with --batch-max-records 30000, an allowed setting. Every key
 * reaches B's subscriber, no publish error. Before, the batch's
 * invalidation was not built at all ("cannot build the invalidation: No
 * space left on device"): other hosts kept their stale copies. */
static void test_backlog_of_long_keys_is_published_whole(void **state)
{
	NEED_SERVERS();
	char *dir_a = tu_tmpdir(), *dir_b = tu_tmpdir(), id_a[64], id_b[64];
	char room[SHM_MAX_ROOM + 1];
	static shm_msg m[1000];
	const size_t total = 25000;
	size_t bad;

	snprintf(id_a, sizeof id_a, "bigA-%s", strrchr(dir_a, '/') + 1);
	snprintf(id_b, sizeof id_b, "bigB-%s", strrchr(dir_b, '/') + 1);
	memset(room, '%', SHM_MAX_ROOM);
	room[SHM_MAX_ROOM] = 0;
	shm_env *a = tu_open(dir_a, NULL), *b = tu_open(dir_b, NULL);
	pid_t fb = flusher_start(dir_b, id_b, pg_info, NULL);
	assert_true(wait_meta(b, "flusher.inval.subscribed", 1, 10000));
	for (size_t done = 0; done < total; done += 1000) {
		for (size_t i = 0; i < 1000; i++)
			m[i] = tu_msg(room, 1, "x");
		assert_int_equal(shm_msg_put_many(a, m, 1000, &bad), 0);
	}
	pid_t fa = flusher_start(dir_a, id_a, pg_info,
	                         "--batch-max-records=30000");
	assert_true(wait_flushed(a, 60000));
	bool all = wait_meta(b, "flusher.inval.keys", total, 10000);
	flusher_stop(fa);
	flusher_stop(fb);
	if (!all)
		dump_log(dir_a);
	assert_int_equal(meta(a, "flusher.inval.publish_errors"), 0);
	assert_true(meta(a, "flusher.inval.published") > 64);
	assert_int_equal(meta(b, "flusher.inval.keys"), total);
	shm_env_close(a);
	shm_env_close(b);
	tu_rmdir(dir_a);
	tu_rmdir(dir_b);
	free(dir_a);
	free(dir_b);
}

static redisContext *redis_connect(void)
{
	redisContext *c = redisConnectUnix(redis_url + strlen("unix://"));
	assert_non_null(c);
	assert_int_equal(c->err, 0);
	return c;
}

/* An ACL user of the servers' Redis with the rights given (after "on
 * >s3cr3t ~* &* +@all"), and its URL in url. */
static void acl_user(const char *name, const char *less, char *url,
                     size_t urllen)
{
	redisContext *c = redis_connect();
	redisReply *r = redisCommand(c, "ACL SETUSER %s reset on >s3cr3t ~* &* "
	                             "+@all %s", name, less);
	assert_non_null(r);
	assert_int_equal(r->type, REDIS_REPLY_STATUS);
	freeReplyObject(r);
	redisFree(c);
	tu_redis_url_with_auth(redis_url, name, "s3cr3t", url, urllen);
}

static void acl_deluser(const char *name)
{
	redisContext *c = redis_connect();
	freeReplyObject(redisCommand(c, "ACL DELUSER %s", name));
	redisFree(c);
}

/* The servers' Redis socket as the flusher names it: "unix:PATH". */
static void redis_named(char *out, size_t len)
{
	snprintf(out, len, "unix:%s", redis_url + strlen("unix://"));
}

/* A Redis user that may not PUBLISH (ACL -publish): the Redis sink goes on
 * (its SETs are allowed), each batch's PUBLISH fails without a retry
 * beyond one reconnect, is counted in flusher.inval.publish_errors and
 * said once, naming the refusal and the server; nothing is set aside, the
 * subscriber is unaffected. */
static void test_publish_refused_is_counted_and_said_once(void **state)
{
	NEED_SERVERS();
	char *dir = tu_tmpdir(), user[64], url[1200], id[64], want[1300];
	shm_env *env = tu_open(dir, NULL);
	shm_info in;

	snprintf(user, sizeof user, "inval-nopub-%d", (int)getpid());
	snprintf(id, sizeof id, "nopub-%s", strrchr(dir, '/') + 1);
	acl_user(user, "-publish", url, sizeof url);
	pid_t f = flusher_start_on(dir, url, id, pg_info, NULL);
	assert_true(wait_meta(env, "flusher.inval.subscribed", 1, 10000));
	for (int i = 0; i < 3; i++) {
		shm_msg m = tu_msg("inval-nopub", 7, "x");
		assert_int_equal(shm_msg_put(env, &m), 0);
		assert_true(wait_flushed(env, 10000));
		assert_true(wait_meta(env, "flusher.inval.publish_errors",
		                      (uint64_t)i + 1, 5000));
	}
	flusher_stop(f);
	assert_int_equal(meta(env, "flusher.inval.published"), 0);
	assert_int_equal(meta(env, "flusher.inval.publish_errors"), 3);
	assert_int_equal(shm_env_info(env, &in), 0);
	assert_int_equal(in.dead_letters, 0);
	char log[4200];
	snprintf(log, sizeof log, "%s/flusher.log", dir);
	redis_named(want, sizeof want);
	char pub[1400];
	snprintf(pub, sizeof pub, "PUBLISH on %s: NOPERM", want);
	if (tu_lines_with(log, pub) != 1)
		dump_log(dir);
	assert_int_equal(tu_lines_with(log, pub), 1);
	assert_int_equal(tu_lines_with(log, "other hosts keep their copies"),
	                 1);
	assert_int_equal(tu_lines_with(log, "s3cr3t"), 0);
	acl_deluser(user);
	shm_env_close(env);
	tu_rmdir(dir);
	free(dir);
}

/* A Redis user that may not SUBSCRIBE (ACL -subscribe): the subscriber says
 * so, naming the refusal and the server, and retries with backoff; the
 * sinks and the publishing go on, and the publisher's counters still reach
 * shmctl stat (they were written only while subscribed). The right given,
 * it subscribes and says it is back. */
static void test_subscribe_refused_is_retried(void **state)
{
	NEED_SERVERS();
	char *dir = tu_tmpdir(), user[64], url[1200], id[64], want[1300];
	char log[4200], sub[1400];
	shm_env *env = tu_open(dir, NULL);

	snprintf(user, sizeof user, "inval-nosub-%d", (int)getpid());
	snprintf(id, sizeof id, "nosub-%s", strrchr(dir, '/') + 1);
	snprintf(log, sizeof log, "%s/flusher.log", dir);
	redis_named(want, sizeof want);
	snprintf(sub, sizeof sub, "subscriber: SUBSCRIBE on %s: NOPERM", want);
	acl_user(user, "-subscribe", url, sizeof url);
	pid_t f = flusher_start_on(dir, url, id, pg_info, NULL);
	shm_msg m = tu_msg("inval-nosub", 7, "x");
	assert_int_equal(shm_msg_put(env, &m), 0);
	assert_true(wait_flushed(env, 10000));
	/* the publisher's counters reach shmctl stat meanwhile */
	bool published = wait_meta(env, "flusher.inval.published", 1, 5000);
	if (!published)
		dump_log(dir);
	assert_true(published);
	uint64_t end = ms_now() + 5000;
	while (tu_lines_with(log, sub) < 3 && ms_now() < end)
		tu_sleep_ms(20);
	if (tu_lines_with(log, sub) < 3)
		dump_log(dir);
	assert_true(tu_lines_with(log, sub) >= 3); /* retried */
	assert_int_equal(meta(env, "flusher.inval.subscribed"), 0);

	redisContext *c = redis_connect();
	freeReplyObject(redisCommand(c, "ACL SETUSER %s +subscribe", user));
	redisFree(c);
	assert_true(wait_meta(env, "flusher.inval.subscribed", 1, 5000));
	flusher_stop(f);
	assert_int_equal(tu_lines_with(log, "subscriber back after"), 1);
	assert_int_equal(tu_lines_with(log, "s3cr3t"), 0);
	acl_deluser(user);
	shm_env_close(env);
	tu_rmdir(dir);
	free(dir);
}

static int group_setup(void **state)
{
	const char *f = getenv("SHM_FLUSHER");
	char exe[PATH_MAX];
	ssize_t n;

	redis_url = getenv("SHM_TEST_REDIS");
	pg_info = getenv("SHM_TEST_PG");
	if (!redis_url || !*redis_url || !pg_info || !*pg_info) {
		fprintf(stderr, "SKIP (server tests): SHM_TEST_REDIS and "
		        "SHM_TEST_PG are not set (run through tests/run.sh, "
		        "which starts the servers)\n");
		redis_url = pg_info = NULL;
	}
	if (f && *f) {
		snprintf(flusher_bin, sizeof flusher_bin, "%s", f);
	} else if ((n = readlink("/proc/self/exe", exe, sizeof exe - 1)) > 0) {
		exe[n] = 0;
		snprintf(flusher_bin, sizeof flusher_bin,
		         "%s/../bin/shm-flusher", dirname(exe));
	}
	if (redis_url && access(flusher_bin, X_OK) != 0) {
		fprintf(stderr, "SKIP (server tests): no flusher at %s (set "
		        "SHM_FLUSHER)\n", flusher_bin);
		flusher_bin[0] = 0;
	}
	return 0;
}

int main(void)
{
#define T(f) cmocka_unit_test_teardown(f, kill_children)
#define TF(f) cmocka_unit_test_setup_teardown(f, full_sub_setup, \
                                              full_sub_teardown)
	const struct CMUnitTest tests[] = {
		T(test_unflushed_kept_flushed_dropped),
		T(test_bad_keys_change_nothing),
		T(test_invalidate_flushed),
		T(test_foreign_message_room_pages),
		T(test_encode_parse),
		T(test_peer_static_key_in_upper_case_drops_our_copy),
		T(test_write_on_a_drops_copy_on_b),
		T(test_write_on_a_joins_room_page_on_b),
		T(test_bad_room_from_a_peer_still_drops),
		T(test_bad_created_at_from_a_peer_still_drops),
		TF(test_failed_drops_are_said_once_then_reminded),
		TF(test_failing_drops_keep_up_with_the_channel),
		TF(test_stale_key_dropped_when_drops_work_again),
		TF(test_stale_key_dropped_after_failure_without_messages),
		TF(test_failed_resets_are_said_once_then_reminded),
		TF(test_flapping_subscription_backs_off),
		TF(test_bad_rooms_are_said_once_then_reminded),
		TF(test_malformed_message_resets_l1),
		TF(test_malformed_flood_costs_few_resets),
		T(test_unflushed_on_b_is_kept),
		T(test_gap_drops_flushed_entries),
		T(test_invalidation_off),
		T(test_backlog_of_long_keys_is_published_whole),
		T(test_publish_refused_is_counted_and_said_once),
		T(test_subscribe_refused_is_retried),
	};
	return cmocka_run_group_tests(tests, group_setup, NULL);
}
