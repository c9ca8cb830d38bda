/* tests/test_l1.c - L1 capacity: entry and byte limits, eviction of flushed
 * entries only (least recently read first), SHM_EFULL when the flusher is
 * behind, TTL expiry, a full map, the limits stored in the environment. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"
#include "shm_log.h"
#include "testutil.h"

static char *dir;

static shm_env *open_small(uint64_t entries, uint64_t bytes, size_t map)
{
	shm_options o;
	shm_options_init(&o);
	o.l1_max_entries = entries;
	o.l1_max_bytes = bytes;
	if (map)
		o.map_size = map;
	dir = tu_tmpdir();
	return tu_open(dir, &o);
}

static void done(shm_env *env)
{
	shm_env_close(env);
	tu_rmdir(dir);
	free(dir);
}

static void test_unflushed_entries_are_never_evicted(void **state)
{
	shm_env *env = open_small(10, 1 << 20, 0);
	shm_msg m[10];
	shm_info in;

	for (int i = 0; i < 10; i++) {
		m[i] = tu_msg("r", i, "x");
		assert_int_equal(shm_msg_put(env, &m[i]), 0);
	}
	shm_msg extra = tu_msg("r", 99, "one too many");
	assert_int_equal(shm_msg_put(env, &extra), SHM_EFULL);
	assert_non_null(strstr(shm_errmsg(), "flusher behind"));
	assert_int_equal(shm_env_info(env, &in), 0);
	assert_int_equal(in.messages, 10);   /* all accepted ones kept */
	assert_int_equal(in.log_records, 10);
	assert_int_equal(tu_verify(env), 0);
	done(env);
}

static void test_flushed_entries_make_room_least_recently_read_first(void **state)
{
	shm_env *env = open_small(10, 1 << 20, 0);
	shm_msg m[10], *got;
	shm_counters c;
	shm_info in;

	for (int i = 0; i < 10; i++) {
		m[i] = tu_msg("r", i, "x");
		assert_int_equal(shm_msg_put(env, &m[i]), 0);
	}
	assert_int_equal(shm_log_trim(env, 10), 0); /* every sink has them */
	sleep(1); /* atime resolution is one second */
	assert_int_equal(shm_msg_get(env, &m[0].id, &got), 0); /* m[0] is hot */
	shm_msg_free(got);
	shm_msg n = tu_msg("r", 10, "new");
	assert_int_equal(shm_msg_put(env, &n), 0);
	assert_int_equal(shm_env_info(env, &in), 0);
	assert_int_equal(in.messages, 10);
	assert_int_equal(shm_msg_get(env, &m[0].id, &got), 0); /* kept */
	shm_msg_free(got);
	assert_int_equal(shm_msg_get(env, &m[1].id, &got), SHM_ENOTFOUND);
	shm_stats_local(env, &c);
	assert_int_equal(c.evictions, 1);
	assert_int_equal(tu_verify(env), 0);
	done(env);
}

static void test_byte_limit_evicts_flushed_entries(void **state)
{
	char big[4000];
	shm_env *env;
	shm_msg m[4];
	shm_info in;

	memset(big, 'b', sizeof big - 1);
	big[sizeof big - 1] = 0;
	env = open_small(1000, 10000, 0);
	for (int i = 0; i < 2; i++) {
		m[i] = tu_msg("big", i, big);
		assert_int_equal(shm_msg_put(env, &m[i]), 0);
	}
	m[2] = tu_msg("big", 2, big);
	assert_int_equal(shm_msg_put(env, &m[2]), SHM_EFULL);
	assert_int_equal(shm_log_trim(env, 2), 0);
	assert_int_equal(shm_msg_put(env, &m[2]), 0);
	assert_int_equal(shm_env_info(env, &in), 0);
	assert_true(in.l1_bytes <= 10000);
	assert_int_equal(in.messages, 2);
	assert_int_equal(tu_verify(env), 0);
	done(env);
}

/* An entry above l1_max_bytes could never fit: SHM_ETOOBIG saying so, not
 * SHM_EFULL's "flusher behind"; nothing written, nothing evicted. */
static void test_entry_larger_than_l1_max_bytes_is_too_big(void **state)
{
	char big[3000];
	shm_env *env = open_small(1000, 2000, 0);
	shm_msg small = tu_msg("r", 1, "fits"), m;
	shm_uuid site;
	shm_counters c;
	shm_info in;
	char size[32];

	memset(big, 'b', sizeof big - 1);
	big[sizeof big - 1] = 0;
	assert_int_equal(shm_msg_put(env, &small), 0);
	assert_int_equal(shm_log_trim(env, 1), 0); /* evictable, yet no help */
	m = tu_msg("r", 2, big);
	assert_int_equal(shm_msg_put(env, &m), SHM_ETOOBIG);
	assert_non_null(strstr(shm_errmsg(), "l1_max_bytes, 2000 (value "));
	/* the message's encoded size: 104 + room, username, content strs
	 * (4 + len + 1 each) + 3 empty lists (4 each) */
	snprintf(size, sizeof size, "%zu bytes", (size_t)104 + 6 + 10 +
	         (4 + sizeof big) + 12);
	if (!strstr(shm_errmsg(), size))
		fail_msg("'%s' does not say '%s'", shm_errmsg(), size);
	m = small; /* a replace that grows past the limit: the same */
	m.content = big;
	m.content_len = (uint32_t)strlen(big);
	assert_int_equal(shm_msg_put(env, &m), SHM_ETOOBIG);
	uint32_t x = 1; /* a static of noise: stored as is, not compressed */
	for (size_t i = 0; i < sizeof big; i++, x = x * 1103515245 + 12345)
		big[i] = (char)(x >> 24);
	shm_uuid_v7(&site);
	assert_int_equal(shm_static_put(env, &site, "Page/1", big, sizeof big,
	                                NULL), SHM_ETOOBIG);
	assert_int_equal(shm_env_info(env, &in), 0);
	assert_int_equal(in.messages, 1);
	assert_int_equal(in.statics, 0);
	assert_int_equal(in.next_seq, 2); /* no record since the first */
	shm_stats_local(env, &c);
	assert_int_equal(c.evictions + c.writes_failed_full, 0);
	shm_msg *got;
	assert_int_equal(shm_msg_get(env, &small.id, &got), 0);
	assert_string_equal(got->content, "fits");
	shm_msg_free(got);
	assert_int_equal(tu_verify(env), 0);
	done(env);
}

/* A write whose own entries exceed a limit could never fit, however far the
 * flusher gets: SHM_ETOOBIG saying to split it, not SHM_EFULL's "flusher
 * behind"; nothing written, nothing evicted. Unflushed entries of earlier
 * writes that leave room for this one's still mean "flusher behind". */
static void test_a_write_larger_than_l1_alone_says_to_split_it(void **state)
{
	char big[4000];
	shm_env *env = open_small(50, 1 << 20, 0);
	shm_msg m[60];
	shm_counters c;
	shm_info in;

	for (int i = 0; i < 50; i++) {
		m[i] = tu_msg("split", i, "old");
		assert_int_equal(shm_msg_put(env, &m[i]), 0);
	}
	assert_int_equal(shm_log_trim(env, 50), 0); /* the flusher caught up */
	for (int i = 0; i < 60; i++)
		m[i] = tu_msg("split", 100 + i, "imported");
	assert_int_equal(shm_msg_put_many(env, m, 60, NULL), SHM_ETOOBIG);
	if (!strstr(shm_errmsg(), "this write alone needs more than L1's "
	            "limits (l1_max_entries 50 / l1_max_bytes 1048576), its "
	            "first 51 entries") ||
	    !strstr(shm_errmsg(), "write fewer messages per transaction") ||
	    strstr(shm_errmsg(), "flusher"))
		fail_msg("'%s'", shm_errmsg());
	assert_int_equal(shm_env_info(env, &in), 0);
	assert_int_equal(in.messages, 50);
	assert_int_equal(in.next_seq, 51);
	shm_stats_local(env, &c);
	assert_int_equal(c.evictions + c.writes_failed_full, 0);

	/* 40 fit once flushed ones are evicted; 20 more would fit too, but
	 * for the 40 unflushed: the flusher is behind */
	for (int i = 0; i < 60; i++)
		m[i] = tu_msg("split", 200 + i, "imported");
	assert_int_equal(shm_msg_put_many(env, m, 40, NULL), 0);
	assert_int_equal(shm_msg_put_many(env, m + 40, 20, NULL), SHM_EFULL);
	assert_non_null(strstr(shm_errmsg(), "flusher behind"));
	assert_null(strstr(shm_errmsg(), "alone"));
	assert_int_equal(tu_verify(env), 0);
	done(env);

	/* the byte limit: 3 values of 4 KB in 10 KB */
	memset(big, 'b', sizeof big - 1);
	big[sizeof big - 1] = 0;
	env = open_small(1000, 10000, 0);
	for (int i = 0; i < 3; i++)
		m[i] = tu_msg("split", i, big);
	assert_int_equal(shm_msg_put_many(env, m, 3, NULL), SHM_ETOOBIG);
	if (!strstr(shm_errmsg(), "this write alone needs more than") ||
	    !strstr(shm_errmsg(), "l1_max_bytes 10000), its first 3 entries"))
		fail_msg("'%s'", shm_errmsg());
	assert_int_equal(shm_env_info(env, &in), 0);
	assert_int_equal(in.messages, 0);
	assert_int_equal(shm_msg_put_many(env, m, 2, NULL), 0);
	done(env);
}

static void test_eviction_keeps_room_pages_consistent(void **state)
{
	shm_env *env = open_small(5, 1 << 20, 0);
	shm_msg m[8], **page;
	size_t n;

	for (int i = 0; i < 5; i++) {
		m[i] = tu_msg("room", i, "x");
		m[i].created_at = 1000000 * (i + 1);
		assert_int_equal(shm_msg_put(env, &m[i]), 0);
	}
	assert_int_equal(shm_log_trim(env, 5), 0);
	for (int i = 5; i < 8; i++) {
		m[i] = tu_msg("room", i, "x");
		m[i].created_at = 1000000 * (i + 1);
		assert_int_equal(shm_msg_put(env, &m[i]), 0);
	}
	assert_int_equal(shm_room_page(env, "room", 0, 100, &page, &n), 0);
	assert_int_equal(n, 5);
	assert_int_equal(page[0]->created_at, 8000000);
	shm_msgs_free(page, n);
	assert_int_equal(tu_verify(env), 0);
	done(env);
}

static void test_ttl_expiry_drops_only_flushed_old_entries(void **state)
{
	shm_options o;
	shm_env *env;
	shm_msg a = tu_msg("t", 1, "old"), b = tu_msg("t", 1, "unflushed");
	uint64_t expired = 0;
	shm_info in;

	shm_options_init(&o);
	o.l1_ttl_s = 1;
	dir = tu_tmpdir();
	env = tu_open(dir, &o);
	assert_int_equal(shm_msg_put(env, &a), 0);
	assert_int_equal(shm_log_trim(env, 1), 0);
	assert_int_equal(shm_msg_put(env, &b), 0);
	sleep(2);
	assert_int_equal(shm_l1_expire(env, &expired), 0);
	assert_int_equal(expired, 1);
	assert_int_equal(shm_env_info(env, &in), 0);
	assert_int_equal(in.messages, 1);
	shm_msg *got;
	assert_int_equal(shm_msg_get(env, &b.id, &got), 0);
	shm_msg_free(got);
	assert_int_equal(tu_verify(env), 0);
	done(env);
}

/* The L1 policy is the environment's: a handle opened with the defaults
 * (a tool, the flusher) obeys the limits another opener set, and a change
 * made by another process applies from the handle's next write on. */
/* One call of shm__l1_drop_flushed in its own write transaction. */
struct drop_call {
	int64_t before;
	uint64_t max, max_kept, dropped;
	shm__lru_pos pos;
	bool more;
};

static int drop_body(shm__wtxn *w, void *ctx)
{
	struct drop_call *c = ctx;
	return shm__l1_drop_flushed(w, c->before, c->max, c->max_kept, &c->pos,
	                            &c->dropped, &c->more);
}

/* Calls until the walk ends; returns the number of transactions. */
static int drop_walk(shm_env *env, struct drop_call *c)
{
	int calls = 0;
	memset(&c->pos, 0, sizeof c->pos);
	c->dropped = 0;
	do {
		assert_int_equal(shm__write(env, drop_body, c), 0);
		calls++;
		assert_true(calls < 100);
	} while (c->more);
	return calls;
}

/* l1.c invariant 4: an expiry walk over a large L1 is split into
 * transactions that each pass over at most max_kept entries and drop at
 * most max, every entry reached once, the walk going on where it stopped. */
static void test_expiry_walk_is_split_into_bounded_transactions(void **state)
{
	shm_env *env = open_small(100, 1 << 20, 0);
	shm_msg m[7];
	shm_info in;

	for (int i = 0; i < 7; i++) {
		m[i] = tu_msg("walk", i, "x");
		assert_int_equal(shm_msg_put(env, &m[i]), 0);
	}
	assert_int_equal(shm_log_trim(env, 7), 0);

	/* nothing old enough: 7 entries passed over, 2 a transaction */
	struct drop_call keep = {.before = 0, .max = 1000, .max_kept = 2};
	assert_int_equal(drop_walk(env, &keep), 4);
	assert_int_equal(keep.dropped, 0);
	assert_int_equal(shm_env_info(env, &in), 0);
	assert_int_equal(in.messages, 7);

	/* an unflushed entry ends the walk: it is never passed over */
	shm_msg late = tu_msg("walk", 7, "unflushed");
	assert_int_equal(shm_msg_put(env, &late), 0);

	/* everything flushed is old enough: 3 drops a transaction */
	struct drop_call all = {.before = INT64_MAX, .max = 3, .max_kept = 1};
	assert_int_equal(drop_walk(env, &all), 3);
	assert_int_equal(all.dropped, 7);
	assert_int_equal(shm_env_info(env, &in), 0);
	assert_int_equal(in.messages, 1);
	shm_msg *got;
	for (int i = 0; i < 7; i++)
		assert_int_equal(shm_msg_get(env, &m[i].id, &got),
		                 SHM_ENOTFOUND);
	assert_int_equal(shm_msg_get(env, &late.id, &got), 0);
	shm_msg_free(got);
	assert_int_equal(tu_verify(env), 0);
	done(env);
}

static void test_limits_set_by_one_opener_bind_every_handle(void **state)
{
	shm_env *plain;
	shm_options o;

	shm_env_close(open_small(5, 1 << 20, 0)); /* sets dir */
	shm_options_init(&o);
	plain = tu_open(dir, &o);
	assert_int_equal(shm_env_options(plain)->l1_max_entries, 5);
	assert_int_equal(shm_env_options(plain)->l1_max_bytes, 1 << 20);
	for (int i = 0; i < 5; i++) {
		shm_msg m = tu_msg("p", i, "x");
		assert_int_equal(shm_msg_put(plain, &m), 0);
	}
	shm_msg extra = tu_msg("p", 9, "sixth");
	assert_int_equal(shm_msg_put(plain, &extra), SHM_EFULL);
	assert_non_null(strstr(shm_errmsg(), "limits 5 /"));

	/* another process raises the limit to 6 while plain stays open */
	pid_t pid = fork();
	if (pid == 0) {
		shm_options r;
		shm_env *e;
		shm_options_init(&r);
		r.l1_max_entries = 6;
		_exit(shm_env_open(dir, &r, &e) ? 1 : (shm_env_close(e), 0));
	}
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	assert_int_equal(shm_msg_put(plain, &extra), 0);
	shm_msg seventh = tu_msg("p", 10, "seventh");
	assert_int_equal(shm_msg_put(plain, &seventh), SHM_EFULL);
	assert_non_null(strstr(shm_errmsg(), "limits 6 /"));
	done(plain);
}

static void test_a_new_environment_without_limits_takes_the_defaults(void **state)
{
	shm_options o;
	shm_env *env;

	shm_options_init(&o);
	assert_int_equal(o.l1_max_entries, 0);
	dir = tu_tmpdir();
	env = tu_open(dir, &o);
	assert_int_equal(shm_env_options(env)->l1_max_entries, 100000);
	assert_int_equal(shm_env_options(env)->l1_max_bytes, 256u << 20);
	assert_int_equal(shm_env_options(env)->l1_ttl_s, 300);
	assert_int_equal(shm_env_options(env)->l2_ttl_s, 3600);
	assert_int_equal(shm_env_options(env)->compress_threshold, 1024);
	done(env);
}

/* shm_policy_get reads the stored policy now: a handle opened earlier sees
 * what another process set since (the flusher reads it per batch). */
static void test_policy_get_sees_another_openers_settings(void **state)
{
	shm_policy p;
	shm_env *env;
	int st;

	dir = tu_tmpdir();
	env = tu_open(dir, NULL);
	assert_int_equal(shm_policy_get(env, &p), 0);
	assert_int_equal(p.l2_ttl_s, 3600);
	assert_int_equal(p.compress_threshold, 1024);
	assert_int_equal(p.l1_ttl_s, 300);
	/* the other opener is another process (one open per process) */
	pid_t pid = fork();
	if (pid == 0) {
		shm_options o;
		shm_env *other;
		shm_options_init(&o);
		o.l2_ttl_s = 60;
		o.compress_threshold = 200;
		o.l1_max_entries = 7;
		if (shm_env_open(dir, &o, &other))
			_exit(1);
		st = shm_env_options(other)->l2_ttl_s == 60 ? 0 : 2;
		shm_env_close(other);
		_exit(st);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	assert_int_equal(shm_policy_get(env, &p), 0);
	assert_int_equal(p.l2_ttl_s, 60);
	assert_int_equal(p.compress_threshold, 200);
	assert_int_equal(p.l1_max_entries, 7);
	assert_int_equal(p.l1_ttl_s, 300);
	assert_int_equal(shm_policy_get(NULL, &p), SHM_EINVAL);
	done(env);
}

static void test_ttl_set_by_the_application_drives_anothers_expiry(void **state)
{
	shm_options o;
	shm_env *app, *flusher;
	shm_msg a = tu_msg("t", 1, "old");
	uint64_t expired = 0;

	shm_options_init(&o);
	o.l1_ttl_s = 1;
	dir = tu_tmpdir();
	app = tu_open(dir, &o);
	assert_int_equal(shm_msg_put(app, &a), 0);
	shm_env_close(app);
	shm_options_init(&o); /* what shm-flusher opens with */
	flusher = tu_open(dir, &o);
	assert_int_equal(shm_env_options(flusher)->l1_ttl_s, 1);
	assert_int_equal(shm_log_trim(flusher, 1), 0);
	sleep(2);
	assert_int_equal(shm_l1_expire(flusher, &expired), 0);
	assert_int_equal(expired, 1);
	done(flusher);
}

/* A write that evicts flushed entries and still does not fit rolls back:
 * the entries stay, and the counters say nothing was evicted. */
static void test_rolled_back_evictions_are_not_counted(void **state)
{
	shm_env *env = open_small(1000, 5000, 0);
	char big[3500], bigger[2000];
	shm_counters c;
	shm_info in;

	for (int i = 0; i < 3; i++) {
		shm_msg m = tu_msg("e", i, "small");
		assert_int_equal(shm_msg_put(env, &m), 0);
	}
	assert_int_equal(shm_log_trim(env, 3), 0);
	memset(big, 'b', sizeof big - 1);
	big[sizeof big - 1] = 0;
	memset(bigger, 'c', sizeof bigger - 1);
	bigger[sizeof bigger - 1] = 0;
	shm_msg b = tu_msg("e", 3, big), c2 = tu_msg("e", 4, bigger);
	assert_int_equal(shm_msg_put(env, &b), 0); /* unflushed, fits */
	assert_int_equal(shm_msg_put(env, &c2), SHM_EFULL);
	shm_stats_local(env, &c);
	assert_int_equal(c.evictions, 0);
	assert_int_equal(c.writes_failed_full, 1);
	assert_int_equal(shm_env_info(env, &in), 0);
	assert_int_equal(in.messages, 4);
	assert_int_equal(tu_verify(env), 0);
	done(env);
}

static void test_full_map_of_unflushed_work_fails_clearly_and_keeps_data(void **state)
{
	shm_env *env = open_small(1000000, 1ull << 40, 1 << 20); /* 1 MiB map */
	char content[2000], said[128];
	shm_info in;
	int rc = 0, ok = 0;

	memset(content, 'z', sizeof content - 1);
	content[sizeof content - 1] = 0;
	for (int i = 0; i < 2000 && rc == 0; i++) {
		shm_msg m = tu_msg("full", i, content);
		content[i % 1999] = 'a' + i % 26; /* defeat compression a bit */
		rc = shm_msg_put(env, &m);
		ok += rc == 0;
	}
	assert_int_equal(rc, SHM_EFULL);
	assert_non_null(strstr(shm_errmsg(), "full of unflushed work"));
	assert_non_null(strstr(shm_errmsg(), "is shm-flusher running?"));
	assert_null(strstr(shm_errmsg(), "holds a read snapshot"));
	assert_int_equal(shm_env_info(env, &in), 0);
	/* the whole log: while the map is full, the flusher may have applied
	 * more than it could record */
	snprintf(said, sizeof said, "the log holds %llu records, flushed "
	         "position %llu", (unsigned long long)in.log_records,
	         (unsigned long long)in.flushed);
	if (!strstr(shm_errmsg(), said))
		fail_msg("'%s' does not say '%s'", shm_errmsg(), said);
	assert_int_equal(in.messages, (uint64_t)ok);
	assert_int_equal(in.log_records, (uint64_t)ok);
	assert_int_equal(tu_verify(env), 0);
	/* once flushed, room is made and writes go on */
	assert_int_equal(shm_log_trim(env, in.log_last), 0);
	shm_msg m = tu_msg("full", 1, "after the flusher caught up");
	assert_int_equal(shm_msg_put(env, &m), 0);
	done(env);
}

/* A map filled with messages of 20,000 bytes that L1 keeps in overflow
 * pages (their log records, LZ4, are small), then flushed and trimmed, the
 * flusher idle (nothing else commits): the next such message fits once the
 * flushed entries are evicted. LMDB reuses the pages a transaction freed
 * only from the second transaction after it, and a failed write commits
 * nothing: the write after the eviction must not be the next one. */
static void test_full_map_takes_big_messages_again_once_flushed(void **state)
{
	shm_env *env = open_small(1000000, 1ull << 40, 1 << 20); /* 1 MiB map */
	static char content[20001];
	shm_info in;
	int rc = 0, i;

	for (i = 0; i < 1000 && rc == 0; i++) {
		for (size_t k = 0; k < sizeof content - 1; k++)
			content[k] = (char)('a' + (k * 7 + (size_t)i) % 26);
		shm_msg m = tu_msg("big", i, content);
		rc = shm_msg_put(env, &m);
	}
	assert_int_equal(rc, SHM_EFULL);
	assert_int_equal(shm_env_info(env, &in), 0);
	assert_int_equal(shm_log_trim(env, in.log_last), 0);
	for (int k = 0; k < 3; k++) {
		shm_msg m = tu_msg("big", i + k, content);
		if (shm_msg_put(env, &m))
			fail_msg("put %d after the trim: %s", k, shm_errmsg());
	}
	assert_int_equal(tu_verify(env), 0);
	done(env);
}

/* A writer fills a 1 MiB map to SHM_EFULL, the flusher (here: recording
 * its positions and trimming) catches up, again and again: each round
 * takes about as many messages as the first, the flushed ones making room.
 * Before, the map filled up with flushed entries that no eviction could
 * make room among: 380, 38, 7, 2, then 1 message a round. */
static void test_map_refilled_after_each_flush_takes_as_much_again(
	void **state)
{
	shm_env *env = open_small(1000000, 1ull << 40, 1 << 20); /* 1 MiB map */
	char content[901];
	int first = 0, i = 0;

	for (int round = 0; round < 8; round++) {
		int n = 0;
		shm_info in;
		for (;;) {
			for (size_t k = 0; k < sizeof content - 1; k++)
				content[k] = (char)('a' + (k * 13 + (size_t)i * 7) % 26);
			content[sizeof content - 1] = 0;
			shm_msg m = tu_msg("refill", i++, content);
			int rc = shm_msg_put(env, &m);
			if (rc == SHM_EFULL)
				break;
			assert_int_equal(rc, 0);
			n++;
		}
		if (round == 0)
			first = n;
		else if (n < first / 2)
			fail_msg("round %d took %d messages, the first %d", round,
			         n, first);
		assert_int_equal(shm_env_info(env, &in), 0);
		assert_int_equal(shm_meta_set(env, "sink.pg.applied",
		                              in.log_last), 0);
		assert_int_equal(shm_log_trim(env, in.log_last), 0);
	}
	assert_int_equal(tu_verify(env), 0);
	done(env);
}

/* A read snapshot held open (a stopped 'shmctl ... | less', a forgotten
 * shm_rtxn) keeps the pages freed since from reuse: the map fills though
 * every write is flushed, and SHM_EFULL names the reader and where to see
 * it, not the flusher. */
static void test_full_map_behind_an_old_snapshot_names_the_reader(void **state)
{
	shm_env *env = open_small(1000000, 1ull << 40, 1 << 20); /* 1 MiB map */
	shm_msg m = tu_msg("pinned", 0, "first");
	char content[2000], pid[32];
	shm_rtxn *t;
	shm_info in;
	int rc = 0, i;

	memset(content, 'z', sizeof content - 1);
	content[sizeof content - 1] = 0;
	assert_int_equal(shm_msg_put(env, &m), 0);
	assert_int_equal(shm_rtxn_begin(env, &t), 0);
	for (i = 0; i < 100000 && rc == 0; i++) {
		content[i % 1999] = 'a' + i % 26;
		rc = shm_msg_edit(env, &m.id, content, strlen(content));
		if (rc == 0 && (rc = shm_env_info(env, &in)) == 0)
			rc = shm_log_trim(env, in.log_last); /* a flusher keeps up */
	}
	fprintf(stderr, "edit %d: %s\n", i, shm_errmsg());
	assert_int_equal(rc, SHM_EFULL);
	snprintf(pid, sizeof pid, "pid %d ", (int)getpid());
	assert_non_null(strstr(shm_errmsg(), pid));
	assert_non_null(strstr(shm_errmsg(), "holds a read snapshot"));
	assert_non_null(strstr(shm_errmsg(), "'shmctl readers'"));
	assert_null(strstr(shm_errmsg(), "shm-flusher"));
	shm_rtxn_end(t);
	/* the snapshot released, the freed pages are reused */
	for (i = 0; i < 100; i++)
		assert_int_equal(shm_msg_edit(env, &m.id, content, 1000), 0);
	done(env);
}

/* Fills env's map with edits of one new message (its id in *id), each
 * flushed at once (a flusher keeping up), until a write fails: its code. */
static int fill_behind_snapshot(shm_env *env, shm_uuid *id)
{
	shm_msg m = tu_msg("pinned", 0, "first");
	char content[2000];
	shm_info in;
	int rc, i;

	memset(content, 'z', sizeof content - 1);
	content[sizeof content - 1] = 0;
	rc = shm_msg_put(env, &m);
	for (i = 0; i < 100000 && rc == 0; i++) {
		content[i % 1999] = 'a' + i % 26;
		rc = shm_msg_edit(env, &m.id, content, strlen(content));
		if (rc == 0 && (rc = shm_env_info(env, &in)) == 0)
			rc = shm_log_trim(env, in.log_last);
	}
	fprintf(stderr, "edit %d: %s\n", i, shm_errmsg());
	*id = m.id;
	return rc;
}

/* A snapshot whose process was killed stays in its reader slot: SHM_EFULL
 * says the process is gone and how to free the slot, not that it holds a
 * snapshot; once freed, writes go on. */
static void test_full_map_behind_a_dead_readers_snapshot_says_to_clear_it(void **state)
{
	char said[64];
	int fds[2], cleared = -1;
	shm_options o;
	shm_counters c;
	shm_env *env;
	shm_uuid id;
	pid_t pid;
	char x;

	shm_options_init(&o);
	o.map_size = 1 << 20;
	dir = tu_tmpdir();
	assert_int_equal(pipe(fds), 0);
	if ((pid = fork()) == 0) {
		shm_env *e;
		shm_rtxn *t;
		if (shm_env_open(dir, &o, &e) || shm_rtxn_begin(e, &t) ||
		    write(fds[1], "r", 1) != 1)
			_exit(1);
		pause(); /* holds its snapshot until killed */
		_exit(0);
	}
	assert_int_equal(read(fds[0], &x, 1), 1);
	close(fds[0]);
	close(fds[1]);
	env = tu_open(dir, &o); /* clears dead slots: none yet */
	kill(pid, SIGKILL);
	assert_int_equal(waitpid(pid, NULL, 0), pid);
	assert_int_equal(fill_behind_snapshot(env, &id), SHM_EFULL);
	snprintf(said, sizeof said, "pid %d is gone", (int)pid);
	if (!strstr(shm_errmsg(), said) ||
	    !strstr(shm_errmsg(), "'shmctl readers --clear-stale'") ||
	    strstr(shm_errmsg(), "holds a read snapshot") ||
	    strstr(shm_errmsg(), "shm-flusher"))
		fail_msg("'%s'", shm_errmsg());
	shm_stats_local(env, &c);
	assert_int_equal(c.writes_failed_full, 1); /* map full counts too */
	assert_int_equal(shm_env_reader_check(env, &cleared), 0);
	assert_int_equal(cleared, 1);
	for (int i = 0; i < 100; i++) /* the freed pages are reused */
		assert_int_equal(shm_msg_edit(env, &id, "slot freed", 10), 0);
	done(env);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_unflushed_entries_are_never_evicted),
		cmocka_unit_test(test_flushed_entries_make_room_least_recently_read_first),
		cmocka_unit_test(test_byte_limit_evicts_flushed_entries),
		cmocka_unit_test(test_entry_larger_than_l1_max_bytes_is_too_big),
		cmocka_unit_test(test_a_write_larger_than_l1_alone_says_to_split_it),
		cmocka_unit_test(test_eviction_keeps_room_pages_consistent),
		cmocka_unit_test(test_ttl_expiry_drops_only_flushed_old_entries),
		cmocka_unit_test(test_expiry_walk_is_split_into_bounded_transactions),
		cmocka_unit_test(test_limits_set_by_one_opener_bind_every_handle),
		cmocka_unit_test(test_a_new_environment_without_limits_takes_the_defaults),
		cmocka_unit_test(test_policy_get_sees_another_openers_settings),
		cmocka_unit_test(test_ttl_set_by_the_application_drives_anothers_expiry),
		cmocka_unit_test(test_rolled_back_evictions_are_not_counted),
		cmocka_unit_test(test_full_map_of_unflushed_work_fails_clearly_and_keeps_data),
		cmocka_unit_test(test_full_map_takes_big_messages_again_once_flushed),
		cmocka_unit_test(test_map_refilled_after_each_flush_takes_as_much_again),
		cmocka_unit_test(test_full_map_behind_an_old_snapshot_names_the_reader),
		cmocka_unit_test(test_full_map_behind_a_dead_readers_snapshot_says_to_clear_it),
	};
	return cmocka_run_group_tests_name("l1", tests, NULL, NULL);
}
