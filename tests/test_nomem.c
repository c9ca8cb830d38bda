/* tests/test_nomem.c - allocation failures (tests/failalloc.h): each call
 * is run once per allocation it makes, that allocation failing; it must
 * fail with ENOMEM and a text saying so, change nothing, and work when
 * retried; the flusher's sinks must take it as a transient failure. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "failalloc.h"
#include "flusher_test.h"

static char *dir;
static shm_env *env;

static int setup(void **state)
{
	(void)state;
	fa_disarm(); /* a failed test's loop may have left it armed */
	dir = tu_tmpdir();
	env = tu_open(dir, NULL);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	shm_env_close(env);
	tu_rmdir(dir);
	free(dir);
	return 0;
}

/* What a failed call must leave as it was: the log's length and, as JSON,
 * every message of room L1 holds (malloc'd). */
static char *state_of(const char *room)
{
	shm_msg **page;
	size_t n, len = 0;
	char *s = NULL, *json;

	assert_int_equal(shm_room_page(env, room, 0, SHM_MAX_PAGE, &page, &n),
	                 0);
	assert_true(asprintf(&s, "log %" PRIu64 "\n", tu_log_count(env)) > 0);
	len = strlen(s);
	for (size_t i = 0; i < n; i++) {
		size_t jl;
		assert_int_equal(shm_msg_to_json(page[i], &json, &jl), 0);
		assert_non_null(s = realloc(s, len + jl + 2));
		memcpy(s + len, json, jl);
		len += jl;
		s[len++] = '\n';
		s[len] = 0;
		free(json);
	}
	shm_msgs_free(page, n);
	return s;
}

/* rc is a failure for want of memory, said so by shm_errmsg() */
static void assert_nomem(int rc, unsigned n)
{
	if (rc != ENOMEM)
		fprintf(stderr, "allocation %u failed: %d %s\n", n, rc,
		        shm_errmsg());
	assert_int_equal(rc, ENOMEM);
	assert_non_null(strstr(shm_errmsg(), strerror(ENOMEM)));
}

static uint32_t reply_count(const shm_uuid *id)
{
	shm_msg *m;
	assert_int_equal(shm_msg_get(env, id, &m), 0);
	uint32_t n = m->reply_count;
	shm_msg_free(m);
	return n;
}

/*
 * Runs call(ctx) failing its 1st, 2nd, ... allocation until a run makes no
 * more (prepare(ctx), if any, before each run, disarmed). A run that fails
 * must fail with ENOMEM and leave room and the log as they were; its retry,
 * disarmed, must work. A run that works although an allocation failed
 * (one the call can do without) is fine. Returns the number of runs: each
 * applied call once.
 */
static unsigned every_allocation(const char *room, int (*call)(void *ctx),
                                 void (*prepare)(void *ctx), void *ctx)
{
	for (unsigned n = 1;; n++) {
		if (prepare)
			prepare(ctx);
		char *before = state_of(room);
		fa_fail_nth(n);
		int rc = call(ctx);
		unsigned failed = fa_disarm();
		if (!failed) {
			assert_int_equal(rc, 0);
			free(before);
			fprintf(stderr, "%u allocations\n", n - 1);
			return n;
		}
		if (rc) {
			assert_nomem(rc, n);
			char *after = state_of(room);
			assert_string_equal(before, after);
			free(after);
			assert_int_equal(call(ctx), 0);
		}
		free(before);
	}
}

static shm_uuid put_parent(const char *room)
{
	shm_msg p = tu_msg(room, 1, "parent");
	assert_int_equal(shm_msg_put(env, &p), 0);
	return p.id;
}

typedef struct msg_case {
	shm_uuid parent, id;
	shm_msg m[3];
	int32_t user;
	shm_reaction reaction;
} msg_case;

static void new_reply(void *ctx)
{
	msg_case *c = ctx;
	c->m[0] = tu_msg("nm", 2, "a reply");
	c->m[0].has_parent = true;
	c->m[0].parent_id = c->parent;
}

static int put_reply(void *ctx)
{
	return shm_msg_put(env, &((msg_case *)ctx)->m[0]);
}

/* A reply put: a failure stores nothing and leaves the parent's
 * reply_count; its retry stores it once. */
static void test_put_without_memory_changes_nothing(void **state)
{
	msg_case c = {.parent = put_parent("nm")};

	unsigned runs = every_allocation("nm", put_reply, new_reply, &c);
	assert_int_equal(reply_count(&c.parent), runs);
	assert_int_equal(tu_verify(env), 0);
}

static void new_batch(void *ctx)
{
	msg_case *c = ctx;
	c->m[0] = tu_msg("nm", 2, "first reply");
	c->m[0].has_parent = true;
	c->m[0].parent_id = c->parent;
	c->m[1] = tu_msg("nm", 3, "no reply");
	c->m[1].reactions = &c->reaction;
	c->m[1].n_reactions = 1;
	c->m[2] = c->m[0];
	c->m[2].content = "second reply";
	c->m[2].content_len = 12;
}

static int put_batch(void *ctx)
{
	size_t bad = 99;
	int rc = shm_msg_put_many(env, ((msg_case *)ctx)->m, 3, &bad);
	assert_int_equal(bad, 3); /* no message to blame */
	return rc;
}

static void test_put_many_without_memory_changes_nothing(void **state)
{
	int32_t user = 4;
	msg_case c = {.parent = put_parent("nm"),
	              .reaction = {"ok", &user, 1}};

	unsigned runs = every_allocation("nm", put_batch, new_batch, &c);
	assert_int_equal(reply_count(&c.parent), 2 * runs);
	assert_int_equal(tu_verify(env), 0);
}

static int edit(void *ctx)
{
	return shm_msg_edit(env, &((msg_case *)ctx)->id, "edited", 6);
}

static void test_edit_without_memory_changes_nothing(void **state)
{
	msg_case c = {.id = put_parent("nm")};
	shm_msg *m;

	unsigned runs = every_allocation("nm", edit, NULL, &c);
	assert_int_equal(shm_msg_get(env, &c.id, &m), 0);
	assert_int_equal(m->edit_count, runs);
	shm_msg_free(m);
	assert_int_equal(tu_verify(env), 0);
}

static void next_user(void *ctx)
{
	((msg_case *)ctx)->user++;
}

static int react(void *ctx)
{
	msg_case *c = ctx;
	return shm_msg_react(env, &c->id, c->user, "\xf0\x9f\x91\x8d", true);
}

static void test_react_without_memory_changes_nothing(void **state)
{
	msg_case c = {.id = put_parent("nm")};
	shm_msg *m;

	unsigned runs = every_allocation("nm", react, next_user, &c);
	assert_int_equal(shm_msg_get(env, &c.id, &m), 0);
	assert_int_equal(m->n_reactions, 1);
	assert_int_equal(m->reactions[0].n_users, runs);
	shm_msg_free(m);
	assert_int_equal(tu_verify(env), 0);
}

static void new_message(void *ctx)
{
	msg_case *c = ctx;
	c->id = put_parent("nm");
	shm_msg_react(env, &c->id, 5, "x", true); /* a value to rewrite */
	new_reply(ctx);
	c->m[0].parent_id = c->id;
	assert_int_equal(shm_msg_put(env, &c->m[0]), 0);
}

static int delete(void *ctx)
{
	return shm_msg_delete(env, &((msg_case *)ctx)->id);
}

static void test_delete_without_memory_changes_nothing(void **state)
{
	msg_case c = {0};
	shm_msg **page;
	size_t n, deleted = 0;

	unsigned runs = every_allocation("nm", delete, new_message, &c);
	assert_int_equal(shm_room_page(env, "nm", 0, SHM_MAX_PAGE, &page, &n),
	                 0);
	for (size_t i = 0; i < n; i++)
		deleted += page[i]->type == SHM_MSG_DELETE;
	shm_msgs_free(page, n);
	assert_int_equal(deleted, runs);
	assert_int_equal(tu_verify(env), 0);
}

/* A message with something in every list, as JSON (malloc'd). */
static shm_msg full_message(void)
{
	static int32_t users[] = {3, 1, 2};
	static shm_reaction r[] = {{"b", users, 3}, {"a", users, 1}};
	static int32_t mentions[] = {7, 8};
	static shm_attachment a[] = {{.filename = "f.png",
	                              .content_type = "image/png",
	                              .size = 10, .url = "http://x/f.png"}};
	shm_msg m = tu_msg("nm", 1, "content \xc3\xa9");

	shm_uuid_v7(&m.id);
	shm_uuid_v7(&a[0].id);
	m.created_at = 1700000000000000;
	m.reactions = r;
	m.n_reactions = 2;
	m.mentions = mentions;
	m.n_mentions = 2;
	m.attachments = a;
	m.n_attachments = 1;
	return m;
}

/* Runs one call failing its 1st, 2nd, ... allocation: expect holds for
 * each run that failed; the last run (no failure) must work. */
#define EACH_ALLOCATION(n, call, expect)                                       \
	for (unsigned n = 1;; n++) {                                           \
		fa_fail_nth(n);                                                \
		int rc_ = (call);                                              \
		if (!fa_disarm()) {                                            \
			assert_int_equal(rc_, 0);                              \
			fprintf(stderr, "%s: %u allocations\n", #call, n - 1); \
			break;                                                 \
		}                                                              \
		if (rc_) {                                                     \
			assert_nomem(rc_, n);                                  \
			expect;                                                \
		}                                                              \
	}

/* shm_msg_from_json of json failing each allocation in turn: a run
 * gives the message of the run without failures, or an error and
 * nothing. */
static void read_every_allocation(const char *json, size_t len)
{
	shm_msg *back, *want;
	char err[256];

	assert_int_equal(shm_msg_from_json(json, len, &want, err, sizeof err),
	                 0);
	for (unsigned n = 1;; n++) {
		fa_fail_nth(n);
		int rc = shm_msg_from_json(json, len, &back, err, sizeof err);
		unsigned failed = fa_disarm();
		if (rc == 0) {
			tu_assert_msg_equal(back, want);
			shm_msg_free(back);
			if (!failed)
				break;
			continue;
		}
		assert_null(back);
		assert_true(err[0]);
		if (n == 1 || rc == ENOMEM)
			assert_non_null(strstr(err, "out of memory"));
	}
	shm_msg_free(want);
}

/* The JSON writer and reader: ENOMEM, nothing returned, nothing leaked
 * (under SANITIZER=address). jansson's first allocation (its lexer's
 * buffer) failing left its error empty, its code unset: the reader
 * returned SHM_EJSON ("malformed JSON:  at byte 0"), or whatever code
 * the stack held. A failed growth of that buffer jansson ignores, dropping
 * the character: the reader returned a message a character short (the
 * content below, 'e' gone at the 16th allocation); now ENOMEM. jansson
 * reports a failed copy of a string as a syntax error itself (SHM_EJSON):
 * not told apart. */
static void test_json_without_memory_returns_nothing(void **state)
{
	shm_msg m = full_message();
	char *json = NULL;
	size_t len = 1;

	EACH_ALLOCATION(n, shm_msg_to_json(&m, &json, &len),
	                assert_null(json); assert_int_equal(len, 0));
	read_every_allocation(json, len);
	free(json);
	const char *text = "{\"room_id\":\"r\",\"user_id\":-10,\"username\":"
	                   "\"u\",\"content\":\"0123456789abcdefghijklmnopqrs"
	                   "tuvwxyz\\u00e9\\ud83d\\ude00\\n\\u0041 ABCDEFGHIJ"
	                   "KLMNOPQRSTUVWXYZ0123456789\",\"message_type\":"
	                   "\"Text\",\"metadata\":{\"mentions\":[123456789,"
	                   "-0]}}";
	read_every_allocation(text, strlen(text));
	/* an integer the longest token yet: a digit lost */
	text = "{\"metadata\":{\"attachments\":[{\"size\":1234567890123456789,"
	       "\"id\":\"01890a5d-ac96-774b-bcce-b302099a8057\",\"filename\":"
	       "\"f\",\"content_type\":\"t\",\"url\":\"u\"}]},\"room_id\":"
	       "\"r\",\"user_id\":1,\"username\":\"u\",\"content\":\"c\","
	       "\"message_type\":\"Text\"}";
	read_every_allocation(text, strlen(text));
}

static void test_room_page_without_memory_returns_nothing(void **state)
{
	shm_msg **page = NULL;
	size_t n = 1;

	for (int i = 0; i < 5; i++) {
		shm_msg m = full_message();
		assert_int_equal(shm_msg_put(env, &m), 0);
	}
	EACH_ALLOCATION(k, shm_room_page(env, "nm", 0, 10, &page, &n),
	                assert_null(page); assert_int_equal(n, 0));
	assert_int_equal(n, 5);
	shm_msgs_free(page, n);
}

static int gen_runs;
static bool gen_nomem; /* the generator's own allocation failed */

static int gen(const shm_uuid *website, const char *object, void *user,
               void **content, size_t *len)
{
	gen_runs++;
	if ((gen_nomem = !(*content = strdup("<p>generated</p>"))))
		return -1;
	*len = strlen(*content);
	return 0;
}

/* static put, and get on a miss (the generator's run) and on a hit: a
 * failure leaves no lease behind (the retry does not wait for one) and
 * nothing stored. */
static void test_statics_without_memory_store_nothing(void **state)
{
	shm_uuid w;
	shm_static *st = NULL;
	char obj[32];

	shm_uuid_v7(&w);
	uint64_t log = tu_log_count(env);
	EACH_ALLOCATION(n, shm_static_put(env, &w, "Page/put", "<p>x</p>", 8,
	                                  &st),
	                assert_null(st);
	                assert_int_equal(tu_log_count(env), log);
	                assert_int_equal(shm_static_peek(env, &w, "Page/put",
	                                                 &st), SHM_ENOTFOUND));
	shm_static_free(st);
	for (unsigned n = 1;; n++) {
		log = tu_log_count(env);
		snprintf(obj, sizeof obj, "Page/%u", n);
		fa_fail_nth(n);
		int rc = shm_static_get(env, &w, obj, gen, NULL, &st);
		if (!fa_disarm()) {
			assert_int_equal(rc, 0);
			shm_static_free(st);
			fprintf(stderr, "static get (miss): %u allocations\n",
			        n - 1);
			break;
		}
		if (!rc) {
			shm_static_free(st);
			continue;
		}
		if (gen_nomem)
			assert_int_equal(rc, SHM_EGENERATOR);
		else
			assert_nomem(rc, n);
		assert_null(st);
		assert_int_equal(tu_log_count(env), log);
		assert_int_equal(shm_static_peek(env, &w, obj, &st),
		                 SHM_ENOTFOUND);
		uint64_t t0 = ft_ms();
		assert_int_equal(shm_static_get(env, &w, obj, gen, NULL, &st), 0);
		assert_true(ft_ms() - t0 < 500);
		shm_static_free(st);
	}
	int runs = gen_runs;
	EACH_ALLOCATION(n, shm_static_get(env, &w, "Page/1", gen, NULL, &st),
	                assert_null(st));
	assert_int_equal(gen_runs, runs); /* a hit each time */
	assert_int_equal(strlen(st->sha1), 40);
	shm_static_free(st);
	assert_int_equal(tu_verify(env), 0);
}

static void test_deps_set_without_memory_changes_nothing(void **state)
{
	const char *deps[] = {"Block/1", "Person/2", "Page/3"};
	shm_objlist *l;
	shm_uuid w;

	shm_uuid_v7(&w);
	assert_int_equal(shm_deps_set(env, &w, "Page/1", true, deps, 1), 0);
	uint64_t log = tu_log_count(env);
	EACH_ALLOCATION(n, shm_deps_set(env, &w, "Page/1", true, deps, 3),
	                assert_int_equal(tu_log_count(env), log);
	                assert_int_equal(shm_deps_get(env, &w, "Page/1", &l), 0);
	                assert_int_equal(l->n, 1); free(l));
	assert_int_equal(shm_deps_get(env, &w, "Page/1", &l), 0);
	assert_int_equal(l->n, 3);
	free(l);
	assert_int_equal(tu_verify(env), 0);
}

static void test_verify_without_memory_fails_cleanly(void **state)
{
	const char *deps[] = {"Block/1"};
	size_t problems = 1;
	shm_uuid w;

	shm_uuid_v7(&w);
	for (int i = 0; i < 3; i++) {
		shm_msg m = full_message();
		assert_int_equal(shm_msg_put(env, &m), 0);
	}
	assert_int_equal(shm_deps_set(env, &w, "Page/1", true, deps, 1), 0);
	assert_int_equal(shm_static_put(env, &w, "Page/1", "x", 1, NULL), 0);
	EACH_ALLOCATION(n, shm_verify(env, NULL, NULL, &problems),
	                assert_int_equal(problems, 0));
	assert_int_equal(problems, 0);
}

/* ------------------------------------------------- the flusher's sinks */

/* The log of env as one batch (from 0): three messages, one of them
 * edited (two records of one key: the batch must be coalesced), and a
 * static stored compressed. */
static void log_batch(fl_batch *b)
{
	static char big[4000];
	shm_log_iter *it;
	shm_log_rec rec;
	shm_uuid w;
	int rc;

	memset(big, 'a', sizeof big);
	shm_uuid_v7(&w);
	assert_int_equal(shm_static_put(env, &w, "Page/1", big, sizeof big,
	                                NULL), 0);

	for (int i = 0; i < 3; i++) {
		shm_msg m = full_message();
		assert_int_equal(shm_msg_put(env, &m), 0);
		if (i == 1)
			assert_int_equal(shm_msg_edit(env, &m.id, "edited", 6), 0);
	}
	fl_batch_init(b);
	assert_int_equal(shm_log_iter_open(env, 0, &it), 0);
	while ((rc = shm_log_iter_next(it, &rec)) == 0)
		assert_int_equal(fl_batch_add(b, &rec), 0);
	assert_int_equal(rc, SHM_ENOTFOUND);
	shm_log_iter_close(it);
	assert_int_equal(b->n, 5);
}

/* A batch that cannot be coalesced says so (ENOMEM), keeping every
 * record; the next try coalesces it. */
static void test_coalesce_without_memory_keeps_the_batch(void **state)
{
	fl_batch b;

	log_batch(&b);
	fa_fail_all();
	assert_int_equal(fl_batch_coalesce(&b), ENOMEM);
	assert_int_equal(fa_disarm(), 1);
	assert_int_equal(b.n, 5);
	for (size_t i = 0; i < b.n; i++)
		assert_false(b.r[i].superseded);
	assert_int_equal(fl_batch_coalesce(&b), 0);
	assert_int_equal(b.n, 5);
	assert_true(b.r[2].superseded); /* the put its edit replaces */
	fl_batch_free(&b);
}

/*
 * A sink's apply failing any of its allocations is FL_TRANSIENT (the
 * worker backs off and retries the batch), never FL_REJECT (a poison
 * record: a dead letter after poison-retries), and PostgreSQL gets
 * nothing of the batch; the retry, as the worker makes it (connect, the
 * sink's position, apply), applies each message once. libpq's and
 * hiredis's own allocations are not reached.
 */
static void apply_every_allocation(fl_sink *s, fl_batch *b)
{
	for (unsigned n = 1;; n++) {
		assert_int_equal(s->ops->connect(s), FL_OK);
		uint64_t pos = 0;
		assert_true(s->ops->position(s, &pos) >= 0);
		assert_int_equal(pos, 0);
		fa_fail_nth(n);
		int rc = s->ops->apply(s, b);
		if (!fa_disarm()) {
			assert_int_equal(rc, FL_OK);
			fprintf(stderr, "%s apply: %u allocations\n",
			        s->ops->name, n - 1);
			return;
		}
		if (rc == FL_OK)
			return; /* an allocation it could do without */
		if (rc != FL_TRANSIENT)
			fprintf(stderr, "allocation %u: %d %s\n", n, rc,
			        s->errmsg);
		assert_int_equal(rc, FL_TRANSIENT);
		assert_non_null(strstr(s->errmsg, "out of memory"));
		assert_int_equal(ft_sql_int("SELECT count(*) FROM messages"), 0);
	}
}

static void test_pg_sink_without_memory_is_transient(void **state)
{
	FT_NEED_SERVERS();
	char *argv[] = {"shm-flusher", "-e", dir, "--pg", (char *)ft_pg, NULL};
	char err[512];
	fl_config cfg;
	fl_batch b;

	ft_reset_servers();
	ft_install_apply_counter();
	assert_int_equal(fl_config_load(&cfg, 5, argv, err, sizeof err), 0);
	fl_sink *s = fl_pg_sink_new(&cfg, env, "nomem",
	                            "01890a5d-ac96-774b-bcce-b302099a8057");
	assert_non_null(s);
	log_batch(&b);
	apply_every_allocation(s, &b);
	assert_int_equal(ft_sql_int("SELECT count(*) FROM messages"), 3);
	assert_int_equal(ft_sql_int("SELECT max(n) FROM test_apply_count"), 1);
	assert_int_equal(ft_sql_int("SELECT count(*) FROM messages WHERE "
	                            "content = 'edited'"), 1);
	ft_remove_apply_counter();
	s->ops->disconnect(s);
	s->ops->destroy(s);
	fl_batch_free(&b);
	fl_config_free(&cfg);
}

static void test_redis_sink_without_memory_is_transient(void **state)
{
	FT_NEED_SERVERS();
	char *argv[] = {"shm-flusher", "-e", dir, "--redis",
	                (char *)ft_redis_url, NULL};
	char err[512];
	fl_config cfg;
	fl_batch b;

	ft_reset_servers();
	assert_int_equal(fl_config_load(&cfg, 5, argv, err, sizeof err), 0);
	fl_sink *s = fl_redis_sink_new(&cfg, env);
	assert_non_null(s);
	log_batch(&b);
	apply_every_allocation(s, &b);
	assert_int_equal(ft_redis_int("DBSIZE"), 5); /* a static is 2 keys */
	s->ops->disconnect(s);
	s->ops->destroy(s);
	fl_batch_free(&b);
	fl_config_free(&cfg);
}

/* A put of a message PostgreSQL holds soft-deleted is refused for good
 * (pg_deleted.c): the search for that culprit decodes the batch's records,
 * and one it had no memory to decode was skipped, so the refusal had no
 * culprit (FL_REJECT, the batch replayed in halves) instead of being
 * transient. Every allocation failing in turn: FL_TRANSIENT, or the
 * culprit named when only the best-effort put-back into L1 lacked memory;
 * PostgreSQL's row stays deleted. */
static void test_kept_delete_search_without_memory_is_transient(void **state)
{
	FT_NEED_SERVERS();
	char *argv[] = {"shm-flusher", "-e", dir, "--pg", (char *)ft_pg, NULL};
	char err[512], x[37], sql[600];
	fl_config cfg;
	fl_batch b;
	shm_log_iter *it;
	shm_log_rec rec;

	ft_reset_servers();
	shm_msg m = full_message();
	shm_uuid_format(&m.id, x);
	snprintf(sql, sizeof sql, "INSERT INTO messages (id, room_id, user_id, "
	         "username, content, message_type, created_at, updated_at, "
	         "content_hash) VALUES ('%s', 'r', 1, 'u', '%s', 'Delete', "
	         "now(), now(), '0')", x, SHM_DELETED_CONTENT);
	ft_sql(sql);
	assert_int_equal(shm_msg_put(env, &m), 0); /* L1 never saw the delete */
	fl_batch_init(&b);
	assert_int_equal(shm_log_iter_open(env, 0, &it), 0);
	while (shm_log_iter_next(it, &rec) == 0)
		assert_int_equal(fl_batch_add(&b, &rec), 0);
	shm_log_iter_close(it);
	assert_int_equal(b.n, 1);
	assert_int_equal(fl_config_load(&cfg, 5, argv, err, sizeof err), 0);
	fl_sink *s = fl_pg_sink_new(&cfg, env, "nomem",
	                            "01890a5d-ac96-774b-bcce-b302099a8057");
	assert_non_null(s);
	for (unsigned n = 1;; n++) {
		uint64_t pos = 0;
		assert_int_equal(s->ops->connect(s), FL_OK);
		assert_true(s->ops->position(s, &pos) >= 0);
		b.reject = -1;
		b.reject_final = false;
		fa_fail_nth(n);
		int rc = s->ops->apply(s, &b);
		unsigned failed = fa_disarm();
		snprintf(sql, sizeof sql, "SELECT count(*) FROM messages WHERE "
		         "id = '%s' AND message_type = 'Delete'", x);
		assert_int_equal(ft_sql_int(sql), 1);
		if (rc == FL_REJECT && b.reject_final) {
			assert_int_equal(b.reject, 0);
			assert_non_null(strstr(b.reason, x));
			if (!failed)
				break;
			continue; /* the put-back lacked memory: best effort */
		}
		if (rc != FL_TRANSIENT)
			fprintf(stderr, "allocation %u: %d %s\n", n, rc,
			        s->errmsg);
		assert_true(failed);
		assert_int_equal(rc, FL_TRANSIENT);
		assert_non_null(strstr(s->errmsg, "out of memory"));
	}
	s->ops->disconnect(s);
	s->ops->destroy(s);
	fl_batch_free(&b);
	fl_config_free(&cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_put_without_memory_changes_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_put_many_without_memory_changes_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_edit_without_memory_changes_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_react_without_memory_changes_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_delete_without_memory_changes_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_json_without_memory_returns_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_room_page_without_memory_returns_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_statics_without_memory_store_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_deps_set_without_memory_changes_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_verify_without_memory_fails_cleanly, setup, teardown),
		cmocka_unit_test_setup_teardown(test_coalesce_without_memory_keeps_the_batch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pg_sink_without_memory_is_transient, setup, teardown),
		cmocka_unit_test_setup_teardown(test_redis_sink_without_memory_is_transient, setup, teardown),
		cmocka_unit_test_setup_teardown(test_kept_delete_search_without_memory_is_transient, setup, teardown),
	};
	return cmocka_run_group_tests(tests, ft_group_setup, NULL);
}
