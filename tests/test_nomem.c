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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_put_without_memory_changes_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_put_many_without_memory_changes_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_edit_without_memory_changes_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_react_without_memory_changes_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_delete_without_memory_changes_nothing, setup, teardown),
	};
	return cmocka_run_group_tests(tests, ft_group_setup, NULL);
}
