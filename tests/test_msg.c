/* tests/test_msg.c - messages: put, get, views, edit, delete, reactions,
 * replies, room pages, and every validation error. */
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h" /* a raw write of a value that does not decode */
#include "shm_log.h"
#include "testutil.h"

static char *dir;
static shm_env *env;

static int setup(void **state)
{
	(void)state;
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

static void test_put_fills_id_created_at_and_hash(void **state)
{
	shm_msg m = tu_msg("general", 7, "hello");
	shm_msg *got;

	assert_int_equal(shm_msg_put(env, &m), 0);
	assert_false(shm_uuid_is_nil(&m.id));
	assert_int_equal(m.id.b[6] >> 4, 7); /* UUIDv7 */
	assert_true(m.created_at > 0);
	assert_true(m.content_hash != 0);
	assert_int_equal(shm_msg_get(env, &m.id, &got), 0);
	assert_string_equal(got->room_id, "general");
	assert_string_equal(got->content, "hello");
	assert_string_equal(got->username, "alice");
	assert_int_equal(got->user_id, 7);
	assert_int_equal(got->created_at, m.created_at);
	assert_int_equal(got->content_hash, m.content_hash);
	assert_int_equal(got->updated_at, 0);
	shm_msg_free(got);
}

static void test_put_keeps_every_field(void **state)
{
	int32_t mentions[] = {3, 4};
	int32_t users[] = {1, 2};
	shm_reaction re[] = {{"👍", users, 2}};
	shm_attachment at = {.filename = "a.png", .content_type = "image/png",
	                     .size = 1234, .url = "https://x/a.png"};
	shm_msg m = tu_msg("r1", 1, "with metadata");
	shm_msg *got;

	shm_uuid_v7(&at.id);
	m.type = SHM_MSG_IMAGE;
	m.mentions = mentions;
	m.n_mentions = 2;
	m.reactions = re;
	m.n_reactions = 1;
	m.attachments = &at;
	m.n_attachments = 1;
	m.has_parent = m.has_thread = true; /* a parent L1 does not hold */
	shm_uuid_v7(&m.parent_id);
	shm_uuid_v7(&m.thread_id);
	m.created_at = 1700000000123456;
	assert_int_equal(shm_msg_put(env, &m), 0);
	assert_int_equal(shm_msg_get(env, &m.id, &got), 0);
	assert_int_equal(got->type, SHM_MSG_IMAGE);
	assert_int_equal(got->created_at, 1700000000123456);
	assert_int_equal(got->n_mentions, 2);
	assert_int_equal(got->mentions[1], 4);
	assert_int_equal(got->n_reactions, 1);
	assert_string_equal(got->reactions[0].emoji, "👍");
	assert_int_equal(got->reactions[0].n_users, 2);
	assert_int_equal(got->n_attachments, 1);
	assert_string_equal(got->attachments[0].url, "https://x/a.png");
	assert_int_equal(got->attachments[0].size, 1234);
	assert_memory_equal(got->attachments[0].id.b, at.id.b, 16);
	assert_true(got->has_thread);
	assert_true(got->has_parent);
	assert_memory_equal(got->parent_id.b, m.parent_id.b, 16);
	assert_memory_equal(got->thread_id.b, m.thread_id.b, 16);
	shm_msg_free(got);
}

static void test_view_points_into_the_map_until_rtxn_end(void **state)
{
	shm_msg m = tu_msg("v", 1, "zero copy");
	shm_rtxn *t;
	const shm_msg *v1, *v2;

	assert_int_equal(shm_msg_put(env, &m), 0);
	assert_int_equal(shm_rtxn_begin(env, &t), 0);
	assert_int_equal(shm_msg_view(t, &m.id, &v1), 0);
	assert_int_equal(shm_msg_view(t, &m.id, &v2), 0);
	assert_string_equal(v1->content, "zero copy");
	assert_ptr_equal(v1->content, v2->content); /* same map bytes */
	assert_int_equal(v1->content_len, 9);
	shm_rtxn_end(t);
}

static void test_get_of_unknown_id_is_not_found(void **state)
{
	shm_uuid id;
	shm_msg *got = NULL;

	shm_uuid_v7(&id);
	assert_int_equal(shm_msg_get(env, &id, &got), SHM_ENOTFOUND);
	assert_null(got);
	assert_non_null(strstr(shm_errmsg(), "not found"));
	assert_null(strstr(shm_errmsg(), "not found (not found)"));
}

static void test_edit_sets_content_updated_at_and_counts(void **state)
{
	shm_msg m = tu_msg("e", 1, "first");
	shm_msg *got;

	assert_int_equal(shm_msg_put(env, &m), 0);
	assert_int_equal(shm_msg_edit(env, &m.id, "second", 6), 0);
	assert_int_equal(shm_msg_edit(env, &m.id, "third", 5), 0);
	assert_int_equal(shm_msg_get(env, &m.id, &got), 0);
	assert_string_equal(got->content, "third");
	assert_true(got->edited);
	assert_int_equal(got->edit_count, 2);
	assert_true(got->updated_at >= got->created_at);
	assert_int_not_equal(got->content_hash, m.content_hash);
	shm_msg_free(got);
}

static void test_delete_is_soft_as_in_the_seed(void **state)
{
	shm_msg m = tu_msg("d", 1, "secret");
	shm_msg *got;

	assert_int_equal(shm_msg_put(env, &m), 0);
	assert_int_equal(shm_msg_delete(env, &m.id), 0);
	assert_int_equal(shm_msg_get(env, &m.id, &got), 0);
	assert_int_equal(got->type, SHM_MSG_DELETE);
	assert_string_equal(got->content, SHM_DELETED_CONTENT);
	assert_true(got->updated_at > 0);
	shm_msg_free(got);
}

/* A soft delete is final: an edit used to bring the content back under
 * type Delete, and a reaction to land on it; a second delete wrote a new
 * version. Each is refused (or a no-op) and writes nothing, the refusal
 * saying why. */
static void test_deleted_message_takes_no_edit_reaction_or_second_delete(
        void **state)
{
	shm_msg m = tu_msg("dd", 1, "secret");
	shm_msg *got;
	char id[37];

	assert_int_equal(shm_msg_put(env, &m), 0);
	assert_int_equal(shm_msg_delete(env, &m.id), 0);
	assert_int_equal(shm_msg_get(env, &m.id, &got), 0);
	int64_t deleted_at = got->updated_at;
	shm_msg_free(got);
	uint64_t before = tu_log_count(env);

	assert_int_equal(shm_msg_edit(env, &m.id, "back", 4), SHM_EDELETED);
	shm_uuid_format(&m.id, id);
	assert_non_null(strstr(shm_errmsg(), "shm_msg_edit: message "));
	assert_non_null(strstr(shm_errmsg(), id));
	assert_non_null(strstr(shm_errmsg(), "(message deleted)"));
	/* and why: the delete is final (before, only "message X") */
	assert_non_null(strstr(shm_errmsg(), " is soft-deleted, and a soft "
	                       "delete is final: no edit or reaction changes "
	                       "it (message deleted)"));
	assert_int_equal(shm_msg_react(env, &m.id, 5, "👍", true),
	                 SHM_EDELETED);
	assert_non_null(strstr(shm_errmsg(), "shm_msg_react: message "));
	assert_int_equal(shm_msg_delete(env, &m.id), 0);
	assert_int_equal(tu_log_count(env), before); /* nothing written */

	assert_int_equal(shm_msg_get(env, &m.id, &got), 0);
	assert_int_equal(got->type, SHM_MSG_DELETE);
	assert_string_equal(got->content, SHM_DELETED_CONTENT);
	assert_false(got->edited);
	assert_int_equal(got->n_reactions, 0);
	assert_int_equal(got->updated_at, deleted_at);
	shm_msg_free(got);
}

static void test_react_adds_and_removes_idempotently(void **state)
{
	shm_msg m = tu_msg("re", 1, "react to me");
	shm_msg *got;
	uint64_t before;

	assert_int_equal(shm_msg_put(env, &m), 0);
	assert_int_equal(shm_msg_react(env, &m.id, 5, "🎉", true), 0);
	assert_int_equal(shm_msg_react(env, &m.id, 6, "🎉", true), 0);
	assert_int_equal(shm_msg_react(env, &m.id, 5, "👍", true), 0);
	before = tu_log_count(env);
	assert_int_equal(shm_msg_react(env, &m.id, 5, "🎉", true), 0);
	assert_int_equal(tu_log_count(env), before); /* no change, no record */
	assert_int_equal(shm_msg_get(env, &m.id, &got), 0);
	assert_int_equal(got->n_reactions, 2);
	assert_string_equal(got->reactions[0].emoji, "🎉"); /* byte order */
	assert_int_equal(got->reactions[0].n_users, 2);
	assert_string_equal(got->reactions[1].emoji, "👍");
	shm_msg_free(got);
	assert_int_equal(shm_msg_react(env, &m.id, 5, "👍", false), 0);
	assert_int_equal(shm_msg_react(env, &m.id, 5, "🎉", false), 0);
	assert_int_equal(shm_msg_get(env, &m.id, &got), 0);
	assert_int_equal(got->n_reactions, 1);
	assert_int_equal(got->reactions[0].n_users, 1);
	assert_int_equal(got->reactions[0].user_ids[0], 6);
	shm_msg_free(got);
}

/* A react or delete that changes nothing writes nothing and is counted
 * nowhere: "reacts" counts reactions added or removed, "deletes" messages
 * soft-deleted. */
static void test_changes_that_change_nothing_count_nothing(void **state)
{
	shm_msg m = tu_msg("noop", 1, "x");
	shm_counters before, after;

	assert_int_equal(shm_msg_put(env, &m), 0);
	assert_int_equal(shm_msg_react(env, &m.id, 5, "🎉", true), 0);
	assert_int_equal(shm_msg_delete(env, &m.id), 0);
	assert_int_equal(shm_msg_delete(env, &m.id), 0); /* deleted already */
	shm_msg n = tu_msg("noop", 1, "y");
	assert_int_equal(shm_msg_put(env, &n), 0);
	shm_stats_local(env, &before);
	uint64_t records = tu_log_count(env);
	assert_int_equal(shm_msg_react(env, &n.id, 5, "🎉", false), 0);
	assert_int_equal(shm_msg_react(env, &n.id, 5, "👍", true), 0);
	assert_int_equal(shm_msg_react(env, &n.id, 5, "👍", true), 0);
	assert_int_equal(shm_msg_react(env, &n.id, 6, "👍", false), 0);
	assert_int_equal(shm_msg_delete(env, &n.id), 0);
	assert_int_equal(shm_msg_delete(env, &n.id), 0);
	shm_stats_local(env, &after);
	assert_int_equal(tu_log_count(env), records + 2);
	assert_int_equal(after.reacts, before.reacts + 1);
	assert_int_equal(after.deletes, before.deletes + 1);
	shm_stats_shared(env, &after);
	assert_int_equal(after.reacts, 2);
	assert_int_equal(after.deletes, 2);
}

/* The payload of the log's last record, copied into out (cap bytes). */
static size_t last_payload(uint8_t *out, size_t cap)
{
	shm_log_iter *it;
	shm_log_rec r;
	size_t n = 0;

	assert_int_equal(shm_log_iter_open(env, 0, &it), 0);
	while (shm_log_iter_next(it, &r) == 0) {
		assert_true(r.payload_len <= cap);
		memcpy(out, r.payload, r.payload_len);
		n = r.payload_len;
	}
	shm_log_iter_close(it);
	return n;
}

/* What an edit or a reaction stores, a put takes back (dump | import): a
 * change that would grow a message past the size put accepts (twice
 * max_content, and 64 KiB) is refused and changes nothing; one that does
 * not grow it is not, even past the limit of a process with a smaller
 * max_content. */
static void test_edit_and_react_cannot_grow_a_message_past_what_put_takes(
	void **state)
{
	static uint8_t payload[70000];
	static char name[1025];
	static int32_t mentions[SHM_MAX_LIST];
	shm_attachment at[21];
	shm_options o;
	shm_msg m = tu_msg("big", 1, ""), *got;
	const size_t max = 1000 * 2 + 65536;
	uint64_t records;

	shm_options_init(&o);
	o.max_content = 1000;
	shm_env_close(env);
	env = tu_open(dir, &o);
	memset(name, 'n', sizeof name - 1);
	for (int i = 0; i < 21; i++)
		at[i] = (shm_attachment){.filename = name, .content_type = name,
		                         .url = name};
	m.attachments = at;
	m.n_attachments = 21;
	assert_int_equal(shm_msg_put(env, &m), 0);
	size_t size = last_payload(payload, sizeof payload);
	assert_true(size < max && max - size < 4 * SHM_MAX_LIST);
	/* mentions fill it up to the limit, less 3 bytes at most */
	m.mentions = mentions;
	m.n_mentions = (uint32_t)((max - size) / 4);
	assert_int_equal(shm_msg_put(env, &m), 0);
	assert_true(max - last_payload(payload, sizeof payload) < 4);
	records = tu_log_count(env);

	assert_int_equal(shm_msg_react(env, &m.id, 7, "👍", true), SHM_ETOOBIG);
	assert_non_null(strstr(shm_errmsg(), "shm_msg_react: message "));
	assert_non_null(strstr(shm_errmsg(), "encoded metadata too large"));
	assert_int_equal(shm_msg_edit(env, &m.id, name, 1000), SHM_ETOOBIG);
	assert_non_null(strstr(shm_errmsg(), "shm_msg_edit: message "));
	assert_int_equal(tu_log_count(env), records);
	assert_int_equal(shm_msg_edit(env, &m.id, "", 0), 0); /* no growth */
	assert_int_equal(shm_msg_get(env, &m.id, &got), 0);
	shm_uuid_v7(&got->id); /* a copy, as import would put it */
	assert_int_equal(shm_msg_put(env, got), 0);
	shm_msg_free(got);

	/* a process whose max_content is smaller may still shrink it */
	o.max_content = 500;
	shm_env_close(env);
	env = tu_open(dir, &o);
	assert_int_equal(shm_msg_edit(env, &m.id, "", 0), 0);
	assert_int_equal(shm_msg_react(env, &m.id, 7, "👍", true), SHM_ETOOBIG);
	assert_int_equal(shm_msg_delete(env, &m.id), 0);
}

/* The counts react keeps within what put takes, SHM_MAX_LIST each: the
 * users of one reaction and the reactions of one message. One more is
 * SHM_ETOOBIG saying which limit and changes nothing (no log record, the
 * message as it was); a react that adds nothing still succeeds. */
static void test_react_past_the_counts_put_takes_is_refused(void **state)
{
	static int32_t users[SHM_MAX_LIST];
	static shm_reaction many[SHM_MAX_LIST];
	static char names[SHM_MAX_LIST][8];
	shm_reaction thumbs = {"👍", users, SHM_MAX_LIST};
	shm_msg a = tu_msg("lim", 1, "users"), b = tu_msg("lim", 1, "emojis");
	shm_msg *got;
	char want[64];
	uint64_t records;

	for (int i = 0; i < SHM_MAX_LIST; i++) {
		users[i] = i + 1;
		snprintf(names[i], sizeof names[i], "r%04d", i);
		many[i] = (shm_reaction){names[i], users, 1};
	}
	a.reactions = &thumbs;
	a.n_reactions = 1;
	assert_int_equal(shm_msg_put(env, &a), 0);
	b.reactions = many;
	b.n_reactions = SHM_MAX_LIST;
	assert_int_equal(shm_msg_put(env, &b), 0);
	records = tu_log_count(env);

	assert_int_equal(shm_msg_react(env, &a.id, SHM_MAX_LIST + 1, "👍",
	                               true), SHM_ETOOBIG);
	snprintf(want, sizeof want, "reaction '👍': %d users already",
	         SHM_MAX_LIST);
	assert_non_null(strstr(shm_errmsg(), want));
	assert_int_equal(shm_msg_react(env, &a.id, 1, "👍", true), 0);
	assert_int_equal(shm_msg_react(env, &b.id, 1, "new", true),
	                 SHM_ETOOBIG);
	snprintf(want, sizeof want, "more than %d reactions", SHM_MAX_LIST);
	assert_non_null(strstr(shm_errmsg(), want));
	assert_int_equal(shm_msg_react(env, &b.id, 1, "r0007", true), 0);
	assert_int_equal(tu_log_count(env), records);

	assert_int_equal(shm_msg_get(env, &a.id, &got), 0);
	assert_int_equal(got->n_reactions, 1);
	assert_int_equal(got->reactions[0].n_users, SHM_MAX_LIST);
	shm_msg_free(got);
	assert_int_equal(shm_msg_get(env, &b.id, &got), 0);
	assert_int_equal(got->n_reactions, SHM_MAX_LIST);
	assert_string_equal(got->reactions[SHM_MAX_LIST - 1].emoji, "r4095");
	shm_msg_free(got);
	/* removing one makes room for another */
	assert_int_equal(shm_msg_react(env, &b.id, 1, "r0007", false), 0);
	assert_int_equal(shm_msg_react(env, &b.id, 1, "new", true), 0);
}

/* A reaction without users is no reaction: put drops it (the caller's array
 * left as it was), so the value is the one removing the last user leaves,
 * byte for byte, and no edit or reply brings it back. */
static void test_put_drops_a_reaction_without_users(void **state)
{
	static const int32_t u[] = {4};
	shm_reaction rx[3] = {{"x", NULL, 0}, {"y", u, 1}, {"z", NULL, 0}};
	shm_msg m = tu_msg("re", 1, "canonical"), *got;
	uint8_t a[512], b[512];
	size_t na, nb;

	m.reactions = rx;
	m.n_reactions = 3;
	assert_int_equal(shm_msg_put(env, &m), 0);
	assert_string_equal(rx[0].emoji, "x");
	assert_int_equal(shm_msg_get(env, &m.id, &got), 0);
	assert_int_equal(got->n_reactions, 1);
	assert_string_equal(got->reactions[0].emoji, "y");
	shm_msg_free(got);
	na = last_payload(a, sizeof a);
	assert_int_equal(shm_msg_react(env, &m.id, 5, "x", true), 0);
	assert_int_equal(shm_msg_react(env, &m.id, 5, "x", false), 0);
	nb = last_payload(b, sizeof b);
	assert_int_equal(na, nb);
	/* the seq (bytes 4..11) and updated_at (44..51: two changes made
	 * since) differ, the rest is the same */
	assert_memory_equal(a, b, 4);
	assert_memory_equal(a + 12, b + 12, 44 - 12);
	assert_memory_equal(a + 52, b + 52, na - 52);
	assert_int_equal(tu_verify(env), 0);
}

/* put stores reactions sorted by emoji (bytes) whatever the caller's order,
 * each user list as given, and leaves the caller's array as it was: one
 * message, one encoding (get, JSON, the log payload the flusher mirrors). */
static void test_put_stores_reactions_sorted_by_emoji(void **state)
{
	int32_t thumbs[] = {9, 3}, party[] = {4}, a[] = {7, 1, 5};
	shm_reaction rev[] = {{"👍", thumbs, 2}, {"🎉", party, 1}, {"a", a, 3}};
	shm_reaction sorted[] = {rev[2], rev[1], rev[0]};
	shm_msg m = tu_msg("order", 1, "reacted");
	uint8_t p1[512], p2[512];
	size_t n1, n2;
	shm_msg *got;
	char *js1, *js2;

	m.created_at = 1700000000000000;
	m.reactions = rev;
	m.n_reactions = 3;
	assert_int_equal(shm_msg_put(env, &m), 0);
	assert_ptr_equal(m.reactions, rev);
	assert_string_equal(rev[0].emoji, "👍");
	assert_string_equal(rev[2].emoji, "a");
	n1 = last_payload(p1, sizeof p1);
	assert_int_equal(shm_msg_get(env, &m.id, &got), 0);
	assert_int_equal(got->n_reactions, 3);
	assert_string_equal(got->reactions[0].emoji, "a");
	assert_string_equal(got->reactions[1].emoji, "🎉");
	assert_string_equal(got->reactions[2].emoji, "👍");
	assert_int_equal(got->reactions[0].n_users, 3);
	assert_int_equal(got->reactions[0].user_ids[0], 7);
	assert_int_equal(got->reactions[0].user_ids[1], 1);
	assert_int_equal(got->reactions[0].user_ids[2], 5);
	assert_int_equal(got->reactions[2].user_ids[0], 9);
	assert_int_equal(got->reactions[2].user_ids[1], 3);
	assert_int_equal(shm_msg_to_json(got, &js1, NULL), 0);
	shm_msg_free(got);

	m.reactions = sorted; /* the same message again, in order */
	assert_int_equal(shm_msg_put(env, &m), 0);
	n2 = last_payload(p2, sizeof p2);
	assert_int_equal(shm_msg_get(env, &m.id, &got), 0);
	assert_int_equal(shm_msg_to_json(got, &js2, NULL), 0);
	assert_string_equal(js1, js2);
	assert_non_null(strstr(js1, "\"reactions\":{\"a\":[7,1,5],"
	                            "\"🎉\":[4],\"👍\":[9,3]}"));
	/* the same bytes but the seq (offset 4, 8 bytes) */
	assert_int_equal(n1, n2);
	assert_memory_equal(p1, p2, 4);
	assert_memory_equal(p1 + 12, p2 + 12, n1 - 12);
	free(js1);
	free(js2);
	shm_msg_free(got);
}

/* A new emoji goes in its place, even on a message put out of order. */
static void test_react_keeps_reactions_sorted(void **state)
{
	int32_t u[] = {1};
	shm_reaction rev[] = {{"z", u, 1}, {"b", u, 1}};
	static const char *const want[] = {"a", "b", "m", "z", "zz"};
	shm_msg m = tu_msg("order", 1, "reacted");
	shm_msg *got;

	m.reactions = rev;
	m.n_reactions = 2;
	assert_int_equal(shm_msg_put(env, &m), 0);
	assert_int_equal(shm_msg_react(env, &m.id, 2, "m", true), 0);
	assert_int_equal(shm_msg_react(env, &m.id, 2, "a", true), 0);
	assert_int_equal(shm_msg_react(env, &m.id, 2, "zz", true), 0);
	assert_int_equal(shm_msg_get(env, &m.id, &got), 0);
	assert_int_equal(got->n_reactions, 5);
	for (uint32_t i = 0; i < 5; i++)
		assert_string_equal(got->reactions[i].emoji, want[i]);
	shm_msg_free(got);
}

/* The stack a put may count on: thread pools give their threads 64 KiB or
 * less, musl's default is 128 KiB; put takes a few KiB whatever the
 * message (its order of the reactions once took 32 KiB, LZ4's compression
 * of its log record 16 KiB), or the system's least if that is more. */
#define SMALL_STACK (20 * 1024)

struct put_arg {
	shm_msg m;
	int rc;
};

static void *put_thread(void *arg)
{
	struct put_arg *p = arg;
	p->rc = shm_msg_put(env, &p->m);
	return NULL;
}

/* A put of the most reactions (in reverse emoji order, each with users)
 * from a thread with a small stack: stored, sorted, each user list as
 * given. A guard region as large as the stack: a frame too large cannot
 * jump past it into other memory. */
static void test_put_of_the_most_reactions_fits_a_small_stack(void **state)
{
	static char emoji[SHM_MAX_LIST][16]; /* room for "e" and any int */
	static shm_reaction re[SHM_MAX_LIST];
	static int32_t users[SHM_MAX_LIST][3];
	struct put_arg p = {tu_msg("stack", 1, "the most reactions"), -1};
	size_t stack = SMALL_STACK < PTHREAD_STACK_MIN ? PTHREAD_STACK_MIN
	                                               : SMALL_STACK;
	pthread_attr_t a;
	pthread_t t;
	shm_msg *got;
	char want[8];

	for (int i = 0; i < SHM_MAX_LIST; i++) {
		snprintf(emoji[i], sizeof emoji[i], "e%04d", SHM_MAX_LIST - 1 - i);
		for (int j = 0; j < 3; j++)
			users[i][j] = 3 * i + 2 - j;
		re[i] = (shm_reaction){emoji[i], users[i], 3};
	}
	p.m.reactions = re;
	p.m.n_reactions = SHM_MAX_LIST;
	assert_int_equal(pthread_attr_init(&a), 0);
	assert_int_equal(pthread_attr_setstacksize(&a, stack), 0);
	assert_int_equal(pthread_attr_setguardsize(&a, stack), 0);
	assert_int_equal(pthread_create(&t, &a, put_thread, &p), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	pthread_attr_destroy(&a);
	if (p.rc)
		fail_msg("put: %s", shm_errmsg());
	assert_int_equal(shm_msg_get(env, &p.m.id, &got), 0);
	assert_int_equal(got->n_reactions, SHM_MAX_LIST);
	for (int i = 0; i < SHM_MAX_LIST; i++) {
		const shm_reaction *r = &got->reactions[i];
		const int32_t *u = users[SHM_MAX_LIST - 1 - i];
		snprintf(want, sizeof want, "e%04d", i);
		assert_string_equal(r->emoji, want);
		assert_int_equal(r->n_users, 3);
		assert_memory_equal(r->user_ids, u, 3 * sizeof *u);
	}
	shm_msg_free(got);
}

static void test_reply_bumps_parent_reply_count(void **state)
{
	shm_msg p = tu_msg("t", 1, "parent");
	shm_msg c = tu_msg("t", 2, "child");
	shm_msg *got;

	assert_int_equal(shm_msg_put(env, &p), 0);
	c.has_parent = true;
	c.parent_id = p.id;
	c.has_thread = true;
	c.thread_id = p.id;
	assert_int_equal(shm_msg_put(env, &c), 0);
	assert_int_equal(shm_msg_get(env, &p.id, &got), 0);
	assert_int_equal(got->reply_count, 1);
	assert_int_equal(got->last_reply_at, c.created_at);
	shm_msg_free(got);
}

/* The counts are uint32 (the seed's u32): at UINT32_MAX they stay there
 * rather than wrap to 0, which would say "never edited", "no replies". */
static void test_edit_and_reply_counts_stop_at_their_maximum(void **state)
{
	shm_msg p = tu_msg("max", 1, "parent"), c = tu_msg("max", 2, "reply");
	shm_msg *got;

	p.edited = true;
	p.edit_count = UINT32_MAX;
	p.reply_count = UINT32_MAX;
	assert_int_equal(shm_msg_put(env, &p), 0);
	assert_int_equal(shm_msg_edit(env, &p.id, "edited", 6), 0);
	c.has_parent = true;
	c.parent_id = p.id;
	assert_int_equal(shm_msg_put(env, &c), 0);
	assert_int_equal(shm_msg_get(env, &p.id, &got), 0);
	assert_int_equal(got->edit_count, UINT32_MAX);
	assert_int_equal(got->reply_count, UINT32_MAX);
	assert_int_equal(got->last_reply_at, c.created_at);
	assert_string_equal(got->content, "edited");
	shm_msg_free(got);
}

/* reply_count and last_reply_at of id, as L1 holds them. */
static uint32_t replies_of(const shm_uuid *id, int64_t *last)
{
	shm_msg *got;
	uint32_t n;

	assert_int_equal(shm_msg_get(env, id, &got), 0);
	n = got->reply_count;
	if (last)
		*last = got->last_reply_at;
	shm_msg_free(got);
	return n;
}

static shm_msg reply_to(const shm_msg *parent, const char *content)
{
	shm_msg c = tu_msg("t", 2, content);
	c.has_parent = true;
	c.parent_id = parent->id;
	return c;
}

static void test_replacing_a_reply_keeps_its_parents_reply_count(void **state)
{
	shm_msg p = tu_msg("t", 1, "parent"), c;
	int64_t last;

	assert_int_equal(shm_msg_put(env, &p), 0);
	c = reply_to(&p, "child");
	assert_int_equal(shm_msg_put(env, &c), 0);
	assert_int_equal(replies_of(&p.id, &last), 1);
	uint64_t before = tu_log_count(env);
	c.content = "child, again";
	c.content_len = (uint32_t)strlen(c.content);
	assert_int_equal(shm_msg_put(env, &c), 0); /* same id: a replace */
	assert_int_equal(shm_msg_put_many(env, &c, 1, NULL), 0);
	assert_int_equal(replies_of(&p.id, NULL), 1);
	assert_int_equal(tu_log_count(env), before + 2); /* no reply record */
	/* a brand-new reply still counts */
	shm_msg d = reply_to(&p, "second child");
	assert_int_equal(shm_msg_put(env, &d), 0);
	assert_int_equal(replies_of(&p.id, &last), 2);
	assert_int_equal(last, d.created_at);
	assert_int_equal(tu_verify(env), 0);
}

/* L1 cannot tell a reply it no longer holds (evicted, expired, dropped by
 * another host's write) from a new one: PostgreSQL can. A put of a reply
 * L1 does not hold used to bump its parent as if new, counting it twice
 * when it was a reply L1 had dropped. Now a reply whose id the put makes,
 * or whose created_at is after its room's watermark, is new without
 * asking; any other is asked of PostgreSQL, and when PostgreSQL cannot
 * answer, the put is SHM_EL3 and writes nothing. */
static void test_a_reply_l1_cannot_judge_waits_for_postgres(void **state)
{
	shm_msg p = tu_msg("t", 1, "parent"), made, given, old, many[2];
	shm_counters c;
	shm_options o;
	shm_rtxn *t;
	const shm_msg *v;
	char s[37];
	size_t bad;

	shm_env_close(env);
	shm_options_init(&o);
	o.pg_conninfo = "host=127.0.0.1 port=1"; /* nothing listens */
	o.l3_timeout_ms = 500;
	env = tu_open(dir, &o);
	assert_int_equal(shm_msg_put(env, &p), 0);
	made = reply_to(&p, "its id made by the put");
	assert_int_equal(shm_msg_put(env, &made), 0);
	given = reply_to(&p, "its id and a time after the watermark given");
	shm_uuid_v7(&given.id);
	given.created_at = shm_now_us();
	assert_int_equal(shm_msg_put(env, &given), 0);
	assert_int_equal(replies_of(&p.id, NULL), 2);
	shm_stats_local(env, &c);
	assert_int_equal(c.l3_errors, 0); /* PostgreSQL was not asked */

	uint64_t before = tu_log_count(env);
	old = reply_to(&p, "older than the watermark: maybe one L1 dropped");
	shm_uuid_v7(&old.id);
	shm_uuid_format(&old.id, s);
	old.created_at = 1000000;
	assert_int_equal(shm_msg_put(env, &old), SHM_EL3);
	assert_non_null(strstr(shm_errmsg(), s));
	assert_non_null(strstr(shm_errmsg(), "shm_msg_put: reply"));
	assert_non_null(strstr(shm_errmsg(), "nothing was written"));
	many[0] = reply_to(&p, "new");
	many[1] = old;
	assert_int_equal(shm_msg_put_many(env, many, 2, &bad), SHM_EL3);
	assert_int_equal(bad, 2); /* no message's fault */
	assert_non_null(strstr(shm_errmsg(), "shm_msg_put_many: reply"));
	assert_int_equal(tu_log_count(env), before);
	assert_int_equal(replies_of(&p.id, NULL), 2);
	assert_int_equal(shm_rtxn_begin(env, &t), 0);
	assert_int_equal(shm_msg_view(t, &old.id, &v), SHM_ENOTFOUND);
	shm_rtxn_end(t);
	shm_stats_local(env, &c);
	assert_true(c.l3_errors >= 1);
	/* the caller's id and created_at 0: the write's time, after the
	 * watermark, is new without asking (as a nil id's) */
	shm_stats_local(env, &c);
	uint64_t l3_errors = c.l3_errors;
	shm_msg now = reply_to(&p, "its id given, its time the write's");
	shm_uuid_v7(&now.id);
	now.created_at = 0;
	assert_int_equal(shm_msg_put(env, &now), 0);
	assert_int_equal(replies_of(&p.id, NULL), 3);
	/* a parent L1 does not hold is not counted: nothing to ask */
	shm_uuid_v7(&old.parent_id);
	old.created_at = 1000000;
	assert_int_equal(shm_msg_put(env, &old), 0);
	shm_stats_local(env, &c);
	assert_int_equal(c.l3_errors, l3_errors);
	assert_int_equal(tu_verify(env), 0);
}

/* A room's watermark can be ahead of this host's clock: a peer whose clock
 * runs ahead wrote in the room (or a gap raised the floor by the peers'
 * lead). A reply dated now (created_at 0) with the caller's id is still new
 * without asking: it used to be judged by that watermark, so it was asked
 * of PostgreSQL, and was SHM_EL3 while PostgreSQL was down. */
static void test_a_reply_dated_now_is_new_under_a_watermark_ahead(
	void **state)
{
	shm_msg p = tu_msg("t", 1, "parent"), r;
	shm_uuid peer;
	shm_counters c;
	shm_options o;

	shm_env_close(env);
	shm_options_init(&o);
	o.pg_conninfo = "host=127.0.0.1 port=1"; /* nothing listens */
	o.l3_timeout_ms = 500;
	env = tu_open(dir, &o);
	assert_int_equal(shm_msg_put(env, &p), 0);
	shm_uuid_v7(&peer);
	shm_inval_key k = {SHM_INVAL_MSG, peer.b, 16, "t",
	                   shm_now_us() + 60 * INT64_C(1000000)};
	assert_int_equal(shm_l1_invalidate_many(env, &k, 1, NULL, NULL), 0);
	r = reply_to(&p, "its id given, its time the write's");
	shm_uuid_v7(&r.id);
	r.created_at = 0;
	assert_int_equal(shm_msg_put(env, &r), 0);
	assert_int_equal(replies_of(&p.id, NULL), 1);
	shm_stats_local(env, &c);
	assert_int_equal(c.l3_errors, 0); /* PostgreSQL was not asked */
	/* a time given as old as that watermark is still asked */
	r = reply_to(&p, "its id and time given");
	shm_uuid_v7(&r.id);
	r.created_at = shm_now_us();
	assert_int_equal(shm_msg_put(env, &r), SHM_EL3);
	assert_int_equal(replies_of(&p.id, NULL), 1);
	assert_int_equal(tu_verify(env), 0);
}

/* A batch that carries the parent with its count (dump | import of a
 * thread) bumps nothing, so its replies L1 does not hold are not asked of
 * PostgreSQL: the batch is stored while PostgreSQL is down. Carried with
 * 0, the parent counts its replies, and an old one is asked. */
static void test_put_many_carrying_the_parent_asks_nothing(void **state)
{
	shm_msg b[2];
	shm_counters c;
	shm_options o;
	size_t bad;

	shm_env_close(env);
	shm_options_init(&o);
	o.pg_conninfo = "host=127.0.0.1 port=1"; /* nothing listens */
	o.l3_timeout_ms = 500;
	env = tu_open(dir, &o);
	b[0] = tu_msg("t", 1, "parent, with its count");
	shm_uuid_v7(&b[0].id);
	b[0].created_at = 1000000;
	b[0].reply_count = 1;
	b[1] = reply_to(&b[0], "its reply, dated long ago");
	shm_uuid_v7(&b[1].id);
	b[1].created_at = 1000001;
	assert_int_equal(shm_msg_put_many(env, b, 2, &bad), 0);
	assert_int_equal(replies_of(&b[0].id, NULL), 1);
	shm_stats_local(env, &c);
	assert_int_equal(c.l3_errors, 0);

	shm_uuid_v7(&b[0].id);
	b[0].reply_count = 0;
	b[1].parent_id = b[0].id;
	shm_uuid_v7(&b[1].id);
	assert_int_equal(shm_msg_put_many(env, b, 2, &bad), SHM_EL3);
	assert_int_equal(bad, 2);
	assert_int_equal(tu_verify(env), 0);
}

/* m's updated_at as L1 holds it. */
static int64_t updated_at_of(const shm_uuid *id)
{
	shm_msg *got;
	int64_t at;

	assert_int_equal(shm_msg_get(env, id, &got), 0);
	at = got->updated_at;
	shm_msg_free(got);
	return at;
}

/* updated_at is the message's version: every change makes it newer than
 * the one L1 held, by the clock or, when that one is ahead of the clock
 * (written by a host whose clock runs ahead), by 1 µs; a change that
 * changes nothing keeps it. Before, an edit or a delete set it to the
 * clock, behind the version it was made from, and reactions and replies
 * left it as it was. */
static void test_every_change_makes_a_newer_updated_at(void **state)
{
	const int64_t ahead = shm_now_us() + INT64_C(3600000000);
	shm_msg m = tu_msg("t", 1, "v1"), r; /* reply_to's room */
	int64_t t0;

	m.updated_at = ahead;
	assert_int_equal(shm_msg_put(env, &m), 0);
	assert_int_equal(updated_at_of(&m.id), ahead); /* a put keeps it */
	assert_int_equal(shm_msg_edit(env, &m.id, "v2", 2), 0);
	assert_int_equal(updated_at_of(&m.id), ahead + 1);
	assert_int_equal(shm_msg_react(env, &m.id, 7, "ok", true), 0);
	assert_int_equal(updated_at_of(&m.id), ahead + 2);
	assert_int_equal(shm_msg_react(env, &m.id, 7, "ok", true), 0);
	assert_int_equal(updated_at_of(&m.id), ahead + 2); /* no change */
	assert_int_equal(shm_msg_react(env, &m.id, 7, "ok", false), 0);
	assert_int_equal(updated_at_of(&m.id), ahead + 3);
	/* a reply changes its parent's count: a new version of it */
	r = reply_to(&m, "a reply");
	assert_int_equal(shm_msg_put(env, &r), 0);
	assert_int_equal(updated_at_of(&m.id), ahead + 4);
	assert_int_equal(updated_at_of(&r.id), 0);
	r.has_parent = r.has_thread = false; /* moved away: the count too */
	assert_int_equal(shm_msg_put(env, &r), 0);
	assert_int_equal(updated_at_of(&m.id), ahead + 5);
	assert_int_equal(shm_msg_delete(env, &m.id), 0);
	assert_int_equal(updated_at_of(&m.id), ahead + 6);

	/* one behind the clock (or none): the clock's time */
	shm_msg o = tu_msg("ver", 1, "old");
	o.updated_at = 1;
	assert_int_equal(shm_msg_put(env, &o), 0);
	t0 = shm_now_us();
	assert_int_equal(shm_msg_edit(env, &o.id, "new", 3), 0);
	assert_true(updated_at_of(&o.id) >= t0);
	assert_true(updated_at_of(&o.id) <= shm_now_us());
	shm_msg n = tu_msg("ver", 1, "none");
	assert_int_equal(shm_msg_put(env, &n), 0);
	t0 = shm_now_us();
	assert_int_equal(shm_msg_react(env, &n.id, 1, "ok", true), 0);
	assert_true(updated_at_of(&n.id) >= t0);

	/* at the end of the time range it stays there (the JSON side and
	 * put take no later time) */
	shm_msg e = tu_msg("ver", 1, "end");
	e.updated_at = INT64_C(253402300799999999);
	assert_int_equal(shm_msg_put(env, &e), 0);
	assert_int_equal(shm_msg_edit(env, &e.id, "end 2", 5), 0);
	assert_int_equal(updated_at_of(&e.id), e.updated_at);
	assert_int_equal(tu_verify(env), 0);
}

/* A put that replaces a message with an older updated_at (0 included) is
 * a change too: it stores a newer one than it replaces (msg.c invariant
 * 10), so PostgreSQL, which keeps the newer, keeps the put; the caller's
 * struct keeps what it gave. A newer or the same updated_at is stored as
 * given. */
static void test_put_replacing_with_an_older_updated_at_stores_a_newer_one(
	void **state)
{
	const int64_t ahead = shm_now_us() + INT64_C(3600000000);
	shm_msg m = tu_msg("ver", 1, "v1");
	shm_msg *g;
	int64_t t0;

	m.updated_at = ahead;
	assert_int_equal(shm_msg_put(env, &m), 0);
	m.content = "v2 with none";
	m.content_len = strlen(m.content);
	m.updated_at = 0;
	assert_int_equal(shm_msg_put(env, &m), 0);
	assert_int_equal(m.updated_at, 0);
	assert_int_equal(updated_at_of(&m.id), ahead + 1);
	assert_int_equal(shm_msg_get(env, &m.id, &g), 0);
	assert_string_equal(g->content, "v2 with none");
	shm_msg_free(g);
	m.updated_at = ahead - 5; /* older, given */
	assert_int_equal(shm_msg_put(env, &m), 0);
	assert_int_equal(updated_at_of(&m.id), ahead + 2);
	m.updated_at = ahead + 2; /* the same: stored as given */
	assert_int_equal(shm_msg_put(env, &m), 0);
	assert_int_equal(updated_at_of(&m.id), ahead + 2);
	m.updated_at = ahead + 100; /* newer: stored as given */
	assert_int_equal(shm_msg_put(env, &m), 0);
	assert_int_equal(updated_at_of(&m.id), ahead + 100);

	/* held behind the clock: the write's time */
	shm_msg o = tu_msg("ver", 1, "old");
	o.updated_at = 1;
	assert_int_equal(shm_msg_put(env, &o), 0);
	o.updated_at = 0;
	t0 = shm_now_us();
	assert_int_equal(shm_msg_put(env, &o), 0);
	assert_true(updated_at_of(&o.id) >= t0);
	assert_true(updated_at_of(&o.id) <= shm_now_us());
	/* none held, none given: none stored */
	shm_msg n = tu_msg("ver", 1, "none");
	assert_int_equal(shm_msg_put(env, &n), 0);
	assert_int_equal(shm_msg_put(env, &n), 0);
	assert_int_equal(updated_at_of(&n.id), 0);
	assert_int_equal(tu_verify(env), 0);
}

/* shm_msg_put_newer, the flusher's put-back of PostgreSQL's newer row
 * (flusher/pg_newer.c): stored only over an older version, the look and
 * the put in one write. The flusher looked (L1 held v1, older than
 * PostgreSQL's row), then the application edited the message (newer than
 * the row: now): the put-back writes nothing, and the edit stays. Before,
 * the flusher's look and its shm_msg_put were two transactions: the put
 * replaced the edit, made newer still (invariant 10), and the edit was
 * lost in L1 and then in PostgreSQL. */
static void test_put_newer_writes_only_over_an_older_version(void **state)
{
	const int64_t now = shm_now_us();
	const int64_t t1 = now - INT64_C(10000000), t3 = now - INT64_C(5000000);
	shm_msg m = tu_msg("newer", 1, "v1"), row, *g;
	shm_counters c0, c1;
	bool wrote = true;

	m.updated_at = t1;
	assert_int_equal(shm_msg_put(env, &m), 0);
	row = m;
	row.content = "row";
	row.content_len = 3;
	row.updated_at = t3;
	/* an edit between the flusher's look and its put */
	assert_int_equal(shm_msg_edit(env, &m.id, "edit", 4), 0);
	int64_t edited = updated_at_of(&m.id);
	assert_true(edited > t3);
	shm_stats_local(env, &c0);
	assert_int_equal(shm_msg_put_newer(env, &row, &wrote), 0);
	assert_false(wrote);
	shm_stats_local(env, &c1);
	assert_int_equal(c1.puts, c0.puts);
	assert_int_equal(shm_msg_get(env, &m.id, &g), 0);
	assert_string_equal(g->content, "edit");
	assert_int_equal(g->updated_at, edited);
	shm_msg_free(g);
	/* the same updated_at: nothing either */
	row.updated_at = edited;
	assert_int_equal(shm_msg_put_newer(env, &row, &wrote), 0);
	assert_false(wrote);
	/* newer than L1's: stored as given */
	row.updated_at = edited + 7;
	assert_int_equal(shm_msg_put_newer(env, &row, &wrote), 0);
	assert_true(wrote);
	assert_int_equal(shm_msg_get(env, &m.id, &g), 0);
	assert_string_equal(g->content, "row");
	assert_int_equal(g->updated_at, edited + 7);
	shm_msg_free(g);
	/* not held: nothing stored */
	shm_msg n = tu_msg("newer", 1, "not held");
	assert_int_equal(shm_uuid_parse("0190a000-0000-7000-8000-00000000beef",
	                                &n.id), 0);
	n.updated_at = now;
	assert_int_equal(shm_msg_put_newer(env, &n, &wrote), 0);
	assert_false(wrote);
	assert_int_equal(shm_msg_get(env, &n.id, &g), SHM_ENOTFOUND);
	/* a reply not stored moves no count: not held, or held as new under
	 * another parent (its parent written again, and logged, before) */
	shm_msg p1 = tu_msg("t", 1, "parent 1");
	shm_msg p2 = tu_msg("t", 1, "parent 2");
	assert_int_equal(shm_msg_put(env, &p1), 0);
	assert_int_equal(shm_msg_put(env, &p2), 0);
	shm_msg r = reply_to(&p1, "a reply L1 does not hold");
	assert_int_equal(shm_uuid_parse("0190a000-0000-7000-8000-00000000cafe",
	                                &r.id), 0);
	int64_t p1_at = updated_at_of(&p1.id);
	assert_int_equal(shm_msg_put_newer(env, &r, &wrote), 0);
	assert_false(wrote);
	assert_int_equal(replies_of(&p1.id, NULL), 0);
	assert_int_equal(updated_at_of(&p1.id), p1_at);
	shm_msg h = reply_to(&p1, "a reply L1 holds");
	assert_int_equal(shm_msg_put(env, &h), 0);
	assert_int_equal(replies_of(&p1.id, NULL), 1);
	h.parent_id = p2.id;
	assert_int_equal(shm_msg_put_newer(env, &h, &wrote), 0);
	assert_false(wrote);
	assert_int_equal(replies_of(&p1.id, NULL), 1);
	assert_int_equal(replies_of(&p2.id, NULL), 0);
	/* soft-deleted: refused, as a put */
	assert_int_equal(shm_msg_delete(env, &m.id), 0);
	row.updated_at = now + INT64_C(60000000);
	assert_int_equal(shm_msg_put_newer(env, &row, &wrote), SHM_EDELETED);
	assert_false(wrote);
	assert_int_equal(shm_msg_put_newer(NULL, &row, NULL), SHM_EINVAL);
	assert_int_equal(tu_verify(env), 0);
}

static void test_moving_a_reply_moves_its_count_never_below_zero(void **state)
{
	shm_msg a = tu_msg("t", 1, "a"), b = tu_msg("t", 1, "b");
	shm_msg c;

	assert_int_equal(shm_msg_put(env, &a), 0);
	assert_int_equal(shm_msg_put(env, &b), 0);
	c = reply_to(&a, "to a");
	assert_int_equal(shm_msg_put(env, &c), 0);
	assert_int_equal(replies_of(&a.id, NULL), 1);
	c.parent_id = b.id; /* the same reply, now under b */
	assert_int_equal(shm_msg_put(env, &c), 0);
	assert_int_equal(replies_of(&a.id, NULL), 0);
	assert_int_equal(replies_of(&b.id, NULL), 1);
	c.has_parent = false; /* no longer a reply */
	assert_int_equal(shm_msg_put(env, &c), 0);
	assert_int_equal(replies_of(&b.id, NULL), 0);
	/* b put again with a count of 0 while c replies to it: moving c
	 * away leaves 0, not UINT32_MAX */
	c.has_parent = true;
	assert_int_equal(shm_msg_put(env, &c), 0);
	b.reply_count = 0;
	assert_int_equal(shm_msg_put(env, &b), 0);
	c.parent_id = a.id;
	assert_int_equal(shm_msg_put(env, &c), 0);
	assert_int_equal(replies_of(&b.id, NULL), 0);
	assert_int_equal(replies_of(&a.id, NULL), 1);
	assert_int_equal(tu_verify(env), 0);
}

/* dump | import: a parent in the batch with a count already counts its
 * replies; one without (no metadata) gets them counted. */
static void test_put_many_carrying_the_parent_keeps_its_counts(void **state)
{
	shm_msg m[3];
	int64_t last;

	m[0] = tu_msg("t", 1, "parent");
	shm_uuid_v7(&m[0].id);
	m[1] = reply_to(&m[0], "one");
	m[2] = reply_to(&m[0], "two");
	m[1].created_at = 1700000001000000;
	m[2].created_at = 1700000002000000;
	m[0].created_at = 1700000000000000;
	m[0].reply_count = 2;
	m[0].last_reply_at = m[2].created_at;
	for (int copy = 0; copy < 2; copy++) { /* a copy, then a re-import */
		assert_int_equal(shm_msg_put_many(env, m, 3, NULL), 0);
		assert_int_equal(replies_of(&m[0].id, &last), 2);
		assert_int_equal(last, m[2].created_at);
	}
	/* replies first, then their parent: the same */
	shm_msg r[3] = {m[2], m[1], m[0]};
	assert_int_equal(shm_msg_put_many(env, r, 3, NULL), 0);
	assert_int_equal(replies_of(&m[0].id, NULL), 2);
	/* a batch without the parent bumps it as one put does */
	shm_msg n[2] = {reply_to(&m[0], "three"), tu_msg("t", 3, "other")};
	assert_int_equal(shm_msg_put_many(env, n, 2, NULL), 0);
	assert_int_equal(replies_of(&m[0].id, NULL), 3);
	/* a parent without a count (import without metadata) counts them */
	shm_msg f[3] = {tu_msg("t", 1, "fresh parent")};
	shm_uuid_v7(&f[0].id);
	f[1] = reply_to(&f[0], "one");
	f[2] = reply_to(&f[0], "two");
	assert_int_equal(shm_msg_put_many(env, f, 3, NULL), 0);
	assert_int_equal(replies_of(&f[0].id, &last), 2);
	assert_int_equal(last, f[2].created_at);
	assert_int_equal(tu_verify(env), 0);
}

/* Puts m[order[0]], m[order[1]], ... as one batch. */
static void put_in_order(const shm_msg *m, const int *order, size_t n)
{
	shm_msg b[4];

	for (size_t i = 0; i < n; i++)
		b[i] = m[order[i]];
	assert_int_equal(shm_msg_put_many(env, b, n, NULL), 0);
}

/* One batch, one result: a parent carried with 0 counts the batch's
 * replies, one carried with a count keeps it, in any order of the batch
 * (a chain, a -> b -> c, too). */
static void test_put_many_counts_replies_whatever_the_order(void **state)
{
	static const int orders[6][3] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2},
	                                 {1, 2, 0}, {2, 0, 1}, {2, 1, 0}};
	int64_t last;

	for (int o = 0; o < 6; o++) {
		shm_msg m[3] = {tu_msg("t", 1, "a")};
		shm_uuid_v7(&m[0].id);
		m[1] = reply_to(&m[0], "b");
		shm_uuid_v7(&m[1].id);
		m[2] = reply_to(&m[1], "c");
		shm_uuid_v7(&m[2].id);
		m[0].created_at = 1700000000000000;
		m[1].created_at = 1700000001000000;
		m[2].created_at = 1700000002000000;
		put_in_order(m, orders[o], 3);
		assert_int_equal(replies_of(&m[0].id, &last), 1);
		assert_int_equal(last, m[1].created_at);
		assert_int_equal(replies_of(&m[1].id, &last), 1);
		assert_int_equal(last, m[2].created_at);
		assert_int_equal(replies_of(&m[2].id, &last), 0);
		assert_int_equal(last, 0);
		/* a parent carried with a count keeps it, either way */
		shm_msg k[2] = {tu_msg("t", 1, "kept")};
		shm_uuid_v7(&k[0].id);
		k[0].reply_count = 7;
		k[0].last_reply_at = 1700000005000000;
		k[1] = reply_to(&k[0], "one of the seven");
		put_in_order(k, orders[o][0] < orders[o][1] ? (int[]){0, 1}
		                                            : (int[]){1, 0}, 2);
		assert_int_equal(replies_of(&k[0].id, &last), 7);
		assert_int_equal(last, 1700000005000000);
	}
	assert_int_equal(tu_verify(env), 0);
}

/* A batch moving a reply away from a parent and adding another reply to
 * it: un-counts first, then counts, whatever the batch's order. */
static void test_put_many_moving_and_adding_replies_whatever_the_order(
	void **state)
{
	for (int o = 0; o < 2; o++) {
		shm_msg a = tu_msg("t", 1, "a"), b = tu_msg("t", 1, "b");
		shm_msg m[2];
		assert_int_equal(shm_msg_put(env, &a), 0);
		assert_int_equal(shm_msg_put(env, &b), 0);
		m[0] = reply_to(&a, "moves to b");
		assert_int_equal(shm_msg_put(env, &m[0]), 0);
		a.reply_count = 0; /* a put again without counting it */
		assert_int_equal(shm_msg_put(env, &a), 0);
		m[0].parent_id = b.id;
		m[1] = reply_to(&a, "new under a");
		put_in_order(m, o ? (int[]){1, 0} : (int[]){0, 1}, 2);
		assert_int_equal(replies_of(&a.id, NULL), 1);
		assert_int_equal(replies_of(&b.id, NULL), 1);
	}
	assert_int_equal(tu_verify(env), 0);
}

/* An id twice in a batch: its last copy is stored, and counted once. */
static void test_put_many_counts_an_id_put_twice_once(void **state)
{
	shm_msg a = tu_msg("t", 1, "a"), b = tu_msg("t", 1, "b");
	shm_msg m[3];

	assert_int_equal(shm_msg_put(env, &a), 0);
	assert_int_equal(shm_msg_put(env, &b), 0);
	m[0] = reply_to(&a, "first under a");
	shm_uuid_v7(&m[0].id);
	m[1] = m[0];
	m[1].parent_id = b.id; /* then under b */
	m[2] = m[1];           /* and again */
	assert_int_equal(shm_msg_put_many(env, m, 3, NULL), 0);
	assert_int_equal(replies_of(&a.id, NULL), 0);
	assert_int_equal(replies_of(&b.id, NULL), 1);
	m[0] = m[2];
	m[2].parent_id = a.id; /* back under a, as the last copy */
	assert_int_equal(shm_msg_put_many(env, m, 3, NULL), 0);
	assert_int_equal(replies_of(&a.id, NULL), 1);
	assert_int_equal(replies_of(&b.id, NULL), 0);
	assert_int_equal(tu_verify(env), 0);
}

static void test_room_page_newest_first_with_before_and_limit(void **state)
{
	shm_msg m[5];
	shm_msg **page;
	size_t n;

	for (int i = 0; i < 5; i++) {
		m[i] = tu_msg("page", i, "x");
		m[i].created_at = 1000000 * (i + 1);
		assert_int_equal(shm_msg_put(env, &m[i]), 0);
	}
	assert_int_equal(shm_room_page(env, "page", 0, 3, &page, &n), 0);
	assert_int_equal(n, 3);
	assert_int_equal(page[0]->created_at, 5000000);
	assert_int_equal(page[2]->created_at, 3000000);
	shm_msgs_free(page, n);
	assert_int_equal(shm_room_page(env, "page", 3000000, 10, &page, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(page[0]->created_at, 2000000);
	assert_int_equal(page[1]->created_at, 1000000);
	shm_msgs_free(page, n);
	/* another room is not mixed in, an unknown room is empty */
	assert_int_equal(shm_room_page(env, "pag", 0, 10, &page, &n), 0);
	assert_int_equal(n, 0);
	shm_msgs_free(page, n);
}

/* Walks room with `before` = the created_at of each page's last message,
 * as an application pages back; returns how many it saw, asserting each
 * id once (ids: the n it must see). */
static size_t walk_room(const char *room, uint32_t limit, const shm_uuid *ids,
                        size_t n)
{
	unsigned char *seen = calloc(n ? n : 1, 1);
	int64_t before = 0;
	size_t total = 0, got;
	shm_msg **page;

	assert_non_null(seen);
	do {
		assert_int_equal(shm_room_page(env, room, before, limit, &page,
		                               &got), 0);
		for (size_t i = 0; i < got; i++)
			for (size_t j = 0; j < n; j++)
				if (memcmp(page[i]->id.b, ids[j].b, 16) == 0) {
					assert_int_equal(seen[j]++, 0);
					total++;
				}
		if (got)
			before = page[got - 1]->created_at;
		shm_msgs_free(page, got);
	} while (got == limit);
	free(seen);
	return total;
}

/* Paging with `before` (a bare timestamp, exclusive) skips every message
 * that shares its created_at with the last of the page before: libshm
 * fills in times that no other message has, one microsecond apart in a
 * batch, in the batch's order, and before the next write's. */
static void test_filled_created_at_are_unique_so_paging_misses_none(
	void **state)
{
	enum { N = 150, PROCS = 2, BATCHES = 8, PER = 25 };
	shm_msg m[N], one = tu_msg("walk", 1, "after"), own;
	shm_uuid ids[N + 1], all[PROCS * BATCHES * PER];
	int fds[2], status;

	for (int i = 0; i < N; i++)
		m[i] = tu_msg("walk", 1, "batch");
	m[7].created_at = 42000000; /* a time of its own stays as given */
	assert_int_equal(shm_msg_put_many(env, m, N, NULL), 0);
	assert_int_equal(m[7].created_at, 42000000);
	for (int i = 1; i < N; i++)
		if (i != 7 && i - 1 != 7)
			assert_int_equal(m[i].created_at, m[i - 1].created_at + 1);
	assert_int_equal(shm_msg_put(env, &one), 0);
	assert_true(one.created_at > m[N - 1].created_at);
	for (int i = 0; i < N; i++)
		ids[i] = m[i].id;
	ids[N] = one.id;
	assert_int_equal(walk_room("walk", 60, ids, N + 1), N + 1);

	/* batches of two processes at once, in one room */
	assert_int_equal(pipe(fds), 0);
	for (int p = 0; p < PROCS; p++) {
		pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid > 0)
			continue;
		shm_env *e;
		shm_msg b[PER];
		if (shm_env_open(dir, NULL, &e))
			_exit(1);
		for (int k = 0; k < BATCHES; k++) {
			for (int i = 0; i < PER; i++)
				b[i] = tu_msg("walk2", p, "concurrent");
			if (shm_msg_put_many(e, b, PER, NULL))
				_exit(2);
			for (int i = 0; i < PER; i++)
				if (write(fds[1], &b[i].id, 16) != 16)
					_exit(3);
		}
		shm_env_close(e);
		_exit(0);
	}
	close(fds[1]);
	for (size_t i = 0; i < PROCS * BATCHES * PER; i++)
		assert_int_equal(read(fds[0], &all[i], 16), 16);
	close(fds[0]);
	while (wait(&status) > 0)
		assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_int_equal(walk_room("walk2", 32, all, PROCS * BATCHES * PER),
	                 PROCS * BATCHES * PER);

	/* a caller's own times may tie: its pages are by (created_at, id) */
	own = tu_msg("walk", 1, "own time");
	own.created_at = 42000000;
	assert_int_equal(shm_msg_put(env, &own), 0);
}

static void test_room_page_ties_ordered_by_id_desc(void **state)
{
	shm_msg a = tu_msg("tie", 1, "a"), b = tu_msg("tie", 1, "b");
	shm_msg **page;
	size_t n;

	a.created_at = b.created_at = 42000000;
	assert_int_equal(shm_msg_put(env, &a), 0);
	assert_int_equal(shm_msg_put(env, &b), 0); /* later v7 id: larger */
	assert_int_equal(shm_room_page(env, "tie", 0, 10, &page, &n), 0);
	assert_int_equal(n, 2);
	assert_memory_equal(page[0]->id.b, b.id.b, 16);
	shm_msgs_free(page, n);
}

/* Bad input: its own code, a message naming the field, nothing written. */
static void expect_refused(shm_msg *m, int code, const char *word)
{
	uint64_t before = tu_log_count(env);
	int rc = shm_msg_put(env, m);
	assert_int_equal(rc, code);
	if (!strstr(shm_errmsg(), word))
		fail_msg("error '%s' does not name '%s'", shm_errmsg(), word);
	assert_int_equal(tu_log_count(env), before);
}

static void test_bad_input_is_refused_and_changes_nothing(void **state)
{
	char big[70000];
	shm_msg m;

	m = tu_msg("r", 1, "bad \xff utf8");
	expect_refused(&m, SHM_EUTF8, "content");
	m = tu_msg("r", 1, "overlong \xc0\xaf");
	expect_refused(&m, SHM_EUTF8, "content");
	m = tu_msg("r", 1, "nul");
	m.content = "a\0b";
	m.content_len = 3;
	expect_refused(&m, SHM_ENUL, "content");
	memset(big, 'a', sizeof big - 1);
	big[sizeof big - 1] = 0;
	m = tu_msg("r", 1, big);
	expect_refused(&m, SHM_ETOOBIG, "content");
	m = tu_msg("", 1, "x");
	expect_refused(&m, SHM_EINVAL, "room_id");
	m = tu_msg("r", 1, "x");
	m.type = (shm_msg_type)42;
	expect_refused(&m, SHM_ETYPE, "message_type");
	m = tu_msg("r", 1, "x");
	m.username = "\xe2\x82";
	expect_refused(&m, SHM_EUTF8, "username");
	m = tu_msg("r", 1, "x");
	shm_reaction r = {"", NULL, 0};
	m.reactions = &r;
	m.n_reactions = 1;
	expect_refused(&m, SHM_EINVAL, "emoji");
	m = tu_msg("r", 1, "x");
	shm_reaction twice[] = {{"x", NULL, 0}, {"y", NULL, 0}, {"x", NULL, 0}};
	m.reactions = twice;
	m.n_reactions = 3;
	expect_refused(&m, SHM_EINVAL, "reaction 'x' listed twice");
	/* a user list over SHM_MAX_LIST is too big, as the other lists are */
	static int32_t users[SHM_MAX_LIST + 1];
	shm_reaction many = {"x", users, SHM_MAX_LIST + 1};
	m.reactions = &many;
	m.n_reactions = 1;
	expect_refused(&m, SHM_ETOOBIG, "reaction 'x': 4097 users, at most "
	                                "4096");
	many = (shm_reaction){"x", NULL, 2};
	expect_refused(&m, SHM_EINVAL, "reaction 'x': NULL user_ids with 2 "
	                               "users");
}

/* A soft delete is final for put too: a put of a deleted id used to
 * replace it, bringing the message back. It is SHM_EDELETED, naming the
 * id and the call (shm_msg_put_many's said shm_msg_put), and writes
 * nothing, in a batch too (bad_index names it); a put of
 * the deleted message exactly as stored (a re-import of a dump) is a
 * no-op, as a second delete is, and is not counted. */
static void test_put_cannot_bring_a_deleted_message_back(void **state)
{
	shm_msg m = tu_msg("undel", 1, "secret"), *got;
	shm_counters before, after;
	size_t bad = 99;
	char id[37];

	assert_int_equal(shm_msg_put(env, &m), 0);
	assert_int_equal(shm_msg_delete(env, &m.id), 0);
	uint64_t records = tu_log_count(env);
	shm_uuid_format(&m.id, id);

	assert_int_equal(shm_msg_put(env, &m), SHM_EDELETED);
	assert_non_null(strstr(shm_errmsg(), id));
	assert_non_null(strstr(shm_errmsg(), "soft-deleted"));
	assert_true(strncmp(shm_errmsg(), "shm_msg_put: ", 13) == 0);
	shm_msg b[2] = {tu_msg("undel", 2, "new"), m};
	assert_int_equal(shm_msg_put_many(env, b, 2, &bad), SHM_EDELETED);
	assert_int_equal(bad, 1);
	/* the text names the call made */
	assert_true(strncmp(shm_errmsg(), "shm_msg_put_many: ", 18) == 0);
	assert_int_equal(tu_log_count(env), records);
	assert_int_equal(shm_msg_get(env, &b[0].id, &got), SHM_ENOTFOUND);

	/* the deleted state itself, as stored: nothing to write */
	assert_int_equal(shm_msg_get(env, &m.id, &got), 0);
	shm_stats_local(env, &before);
	assert_int_equal(shm_msg_put(env, got), 0);
	assert_int_equal(shm_msg_put_many(env, got, 1, NULL), 0);
	shm_stats_local(env, &after);
	assert_int_equal(after.puts, before.puts);
	assert_int_equal(tu_log_count(env), records);
	/* ... but not another version of it, deleted or not */
	got->username = "mallory";
	assert_int_equal(shm_msg_put(env, got), SHM_EDELETED);
	assert_int_equal(tu_log_count(env), records);
	shm_msg_free(got);
	assert_int_equal(shm_msg_get(env, &m.id, &got), 0);
	assert_int_equal(got->type, SHM_MSG_DELETE);
	assert_string_equal(got->content, SHM_DELETED_CONTENT);
	assert_string_equal(got->username, "alice");
	shm_msg_free(got);
	assert_int_equal(tu_verify(env), 0);
}

/* Type Delete is a soft-deleted message, final (edit, react and put say
 * SHM_EDELETED): a put of one carries the content a soft delete leaves,
 * SHM_DELETED_CONTENT, as dump | import does; any other content was
 * stored under a type that refuses every change. */
static void test_put_of_type_delete_carries_the_deleted_content(void **state)
{
	shm_msg m = tu_msg("deltype", 1, "still readable");
	shm_msg *got;

	m.type = SHM_MSG_DELETE;
	expect_refused(&m, SHM_EINVAL, "message_type Delete");
	assert_non_null(strstr(shm_errmsg(), SHM_DELETED_CONTENT));
	m.content = NULL;
	m.content_len = 0;
	expect_refused(&m, SHM_EINVAL, "message_type Delete");
	m.content = SHM_DELETED_CONTENT;
	m.content_len = (uint32_t)strlen(SHM_DELETED_CONTENT);
	assert_int_equal(shm_msg_put(env, &m), 0);
	assert_int_equal(shm_msg_edit(env, &m.id, "x", 1), SHM_EDELETED);
	assert_int_equal(shm_msg_get(env, &m.id, &got), 0);
	assert_int_equal(got->type, SHM_MSG_DELETE);
	shm_msg_free(got);
}

/* parent_id names another message: not the nil UUID, not the message
 * itself; thread_id is not the nil UUID. */
static void test_put_refuses_a_parent_or_thread_that_names_no_other(
	void **state)
{
	shm_msg m;
	shm_uuid other;

	shm_uuid_v7(&other);
	m = tu_msg("links", 1, "x");
	m.has_parent = true; /* parent_id left nil */
	expect_refused(&m, SHM_EINVAL, "parent_id");
	assert_non_null(strstr(shm_errmsg(), "nil"));
	m = tu_msg("links", 1, "x");
	m.has_parent = m.has_thread = true;
	m.parent_id = other; /* thread_id left nil */
	expect_refused(&m, SHM_EINVAL, "thread_id");
	assert_non_null(strstr(shm_errmsg(), "nil"));
	m = tu_msg("links", 1, "x");
	shm_uuid_v7(&m.id);
	m.has_parent = true;
	m.parent_id = m.id;
	expect_refused(&m, SHM_EINVAL, "parent_id");
	assert_non_null(strstr(shm_errmsg(), "own id"));
	assert_int_equal(tu_log_count(env), 0);

	/* the seed's fields are independent: a root naming its own thread,
	 * a thread_id without parent_id are taken */
	m = tu_msg("links", 1, "root");
	shm_uuid_v7(&m.id);
	m.has_thread = true;
	m.thread_id = m.id;
	assert_int_equal(shm_msg_put(env, &m), 0);
	m = tu_msg("links", 2, "in a thread, no parent");
	m.has_thread = true;
	m.thread_id = other;
	assert_int_equal(shm_msg_put(env, &m), 0);
}

/* A reply is in its parent's room and thread (thread_id: the parent's,
 * or the parent's id when the parent is a root), checked against the
 * parent L1 holds; a parent L1 does not hold is not checked. */
static void test_put_keeps_a_reply_in_its_parents_room_and_thread(
	void **state)
{
	shm_msg root = tu_msg("t", 1, "root"), r1, r2, lone;
	uint64_t records;
	size_t bad = 99;
	char rid[37];

	assert_int_equal(shm_msg_put(env, &root), 0);
	shm_uuid_format(&root.id, rid);
	r1 = reply_to(&root, "r1");
	r1.room_id = "elsewhere";
	records = tu_log_count(env);
	expect_refused(&r1, SHM_EINVAL, rid);
	assert_non_null(strstr(shm_errmsg(), "'t'"));
	assert_non_null(strstr(shm_errmsg(), "'elsewhere'"));
	r1.room_id = "else\nwhere"; /* shown printably */
	expect_refused(&r1, SHM_EINVAL, "room_id 'else\\x0awhere'");
	r1.room_id = "t";
	r1.has_thread = true;
	shm_uuid_v7(&r1.thread_id); /* not root's */
	expect_refused(&r1, SHM_EINVAL, "thread_id");
	assert_non_null(strstr(shm_errmsg(), rid));
	assert_int_equal(replies_of(&root.id, NULL), 0);
	assert_int_equal(tu_log_count(env), records);
	r1.thread_id = root.id;
	assert_int_equal(shm_msg_put(env, &r1), 0);
	/* a reply to a reply: the thread of the root */
	r2 = reply_to(&r1, "r2");
	r2.has_thread = true;
	r2.thread_id = r1.id;
	expect_refused(&r2, SHM_EINVAL, "thread_id");
	r2.thread_id = root.id;
	assert_int_equal(shm_msg_put(env, &r2), 0);
	/* thread_id is optional; a parent without one (but with a parent)
	 * says nothing of its thread */
	shm_msg r3 = reply_to(&root, "r3"), r4;
	assert_int_equal(shm_msg_put(env, &r3), 0);
	r4 = reply_to(&r3, "r4");
	r4.has_thread = true;
	r4.thread_id = root.id;
	assert_int_equal(shm_msg_put(env, &r4), 0);
	/* a parent L1 does not hold is not checked */
	lone = tu_msg("far", 1, "to an absent parent");
	lone.has_parent = lone.has_thread = true;
	shm_uuid_v7(&lone.parent_id);
	shm_uuid_v7(&lone.thread_id);
	assert_int_equal(shm_msg_put(env, &lone), 0);
	/* in a batch: against the parent as the batch leaves it, the
	 * message to blame named */
	shm_msg mv[3] = {r1, root, tu_msg("other", 1, "x")};
	mv[1].room_id = "moved"; /* root moves, r1 does not */
	records = tu_log_count(env);
	assert_int_equal(shm_msg_put_many(env, mv, 3, &bad), SHM_EINVAL);
	assert_int_equal(bad, 0);
	assert_non_null(strstr(shm_errmsg(), "'moved'"));
	assert_int_equal(tu_log_count(env), records);
	/* the whole thread moves */
	shm_msg all[5] = {r2, root, r4, r1, r3};
	for (int i = 0; i < 5; i++)
		all[i].room_id = "moved";
	assert_int_equal(shm_msg_put_many(env, all, 5, &bad), 0);
	assert_int_equal(tu_verify(env), 0);
}

/* A soft-deleted message takes no new reply (its reply_count used to be
 * bumped: a write to a deleted message, which edit and react refuse);
 * its replies from before stay replies, and may be put again. */
static void test_put_gives_a_deleted_parent_no_new_reply(void **state)
{
	shm_msg p = tu_msg("t", 1, "parent"), old, c;
	char pid[37];

	assert_int_equal(shm_msg_put(env, &p), 0);
	old = reply_to(&p, "before the delete");
	assert_int_equal(shm_msg_put(env, &old), 0);
	assert_int_equal(shm_msg_delete(env, &p.id), 0);
	shm_uuid_format(&p.id, pid);
	c = reply_to(&p, "after the delete");
	expect_refused(&c, SHM_EDELETED, pid);
	assert_int_equal(replies_of(&p.id, NULL), 1);
	/* moved to it, too */
	shm_msg q = tu_msg("t", 1, "q"), mv;
	assert_int_equal(shm_msg_put(env, &q), 0);
	mv = reply_to(&q, "moves");
	assert_int_equal(shm_msg_put(env, &mv), 0);
	mv.parent_id = p.id;
	expect_refused(&mv, SHM_EDELETED, pid);
	assert_int_equal(replies_of(&p.id, NULL), 1);
	/* the reply from before: a replace under the same parent */
	old.content = "edited by a put";
	old.content_len = (uint32_t)strlen(old.content);
	assert_int_equal(shm_msg_put(env, &old), 0);
	assert_int_equal(replies_of(&p.id, NULL), 1);
	assert_int_equal(tu_verify(env), 0);
}

/* A reply from before the delete that L1 no longer holds (flushed, then
 * dropped, as eviction does) is new to L1: a put of it again is refused,
 * as that of any new reply to the deleted parent. */
static void test_put_of_an_old_reply_l1_dropped_is_refused(void **state)
{
	shm_msg p = tu_msg("t", 1, "parent"), old;
	shm_inval_key k = {.kind = SHM_INVAL_MSG, .klen = 16};
	uint64_t dropped = 0, next = 0;
	char pid[37];

	assert_int_equal(shm_msg_put(env, &p), 0);
	old = reply_to(&p, "before the delete");
	assert_int_equal(shm_msg_put(env, &old), 0);
	assert_int_equal(shm_msg_delete(env, &p.id), 0);
	assert_int_equal(shm_meta_get(env, "next_seq", &next), 0);
	assert_int_equal(shm_log_trim(env, next - 1), 0);
	k.key = old.id.b;
	assert_int_equal(shm_l1_invalidate_many(env, &k, 1, &dropped, NULL), 0);
	assert_int_equal(dropped, 1);
	shm_uuid_format(&p.id, pid);
	expect_refused(&old, SHM_EDELETED, pid);
	assert_int_equal(tu_verify(env), 0);
}

/* dump | import of a thread whose parent was deleted after its replies:
 * the batch carries the deleted parent (with its count) and the replies,
 * into a new environment and again over itself. */
static void test_put_many_copies_a_thread_under_a_deleted_parent(
	void **state)
{
	shm_msg p = tu_msg("t", 1, "parent"), r, *got;

	assert_int_equal(shm_msg_put(env, &p), 0);
	r = reply_to(&p, "reply");
	assert_int_equal(shm_msg_put(env, &r), 0);
	assert_int_equal(shm_msg_delete(env, &p.id), 0);
	assert_int_equal(shm_msg_get(env, &p.id, &got), 0);
	shm_msg b[2] = {r, *got};
	char *dir2 = tu_tmpdir();
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) { /* one environment per process: a child for the copy */
		shm_env *e2 = tu_open(dir2, NULL);
		int rc = shm_msg_put_many(e2, b, 2, NULL);
		rc = rc ? rc : shm_msg_put_many(e2, b, 2, NULL);
		shm_msg *c = NULL;
		rc = rc ? rc : shm_msg_get(e2, &p.id, &c);
		rc = rc ? rc : c->reply_count != 1 || c->type != SHM_MSG_DELETE;
		shm_msg_free(c);
		shm_env_close(e2);
		_exit(rc ? 1 : 0);
	}
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	/* and over the environment it came from */
	assert_int_equal(shm_msg_put_many(env, b, 2, NULL), 0);
	assert_int_equal(replies_of(&p.id, NULL), 1);
	shm_msg_free(got);
	tu_rmdir(dir2);
	free(dir2);
}

/* A reply cannot be its own ancestor: a message put as the reply of its
 * own reply (or further down) made a cycle no walk up a thread ends. */
static void test_put_refuses_a_reply_to_its_own_descendant(void **state)
{
	shm_msg a = tu_msg("t", 1, "a"), b, c;
	size_t bad = 99;
	char cid[37];

	assert_int_equal(shm_msg_put(env, &a), 0);
	b = reply_to(&a, "b");
	assert_int_equal(shm_msg_put(env, &b), 0);
	c = reply_to(&b, "c");
	assert_int_equal(shm_msg_put(env, &c), 0);
	shm_uuid_format(&c.id, cid);
	a.has_parent = true;
	a.parent_id = c.id;
	expect_refused(&a, SHM_EINVAL, cid);
	assert_non_null(strstr(shm_errmsg(), "own"));
	/* a reply put before its parent, whose put closes the loop */
	shm_msg x = tu_msg("t", 1, "x"), y;
	shm_uuid_v7(&x.id);
	y = reply_to(&x, "y, before x");
	assert_int_equal(shm_msg_put(env, &y), 0);
	x.has_parent = true;
	x.parent_id = y.id;
	expect_refused(&x, SHM_EINVAL, "parent_id");
	/* in one batch */
	shm_msg u = tu_msg("t", 1, "u"), v;
	shm_uuid_v7(&u.id);
	v = reply_to(&u, "v");
	shm_uuid_v7(&v.id);
	u.has_parent = true;
	u.parent_id = v.id;
	shm_msg uv[3] = {tu_msg("t", 1, "fine"), u, v};
	assert_int_equal(shm_msg_put_many(env, uv, 3, &bad), SHM_EINVAL);
	assert_true(bad == 1 || bad == 2);
	assert_int_equal(replies_of(&c.id, NULL), 0);
	assert_int_equal(tu_verify(env), 0);
}

/* What JSON cannot carry back is refused by put (json_write.c writes and
 * json_read.c reads years 0000..9999, int64 sizes, each reacting user once
 * per emoji). */
static void test_put_refuses_what_json_cannot_carry(void **state)
{
	int32_t twice[] = {4, 9, 4};
	shm_reaction re = {"x", twice, 3};
	shm_attachment at = {.filename = "f", .content_type = "t", .url = "u"};
	shm_msg m;

	m = tu_msg("r", 1, "x");
	m.created_at = INT64_MAX;
	expect_refused(&m, SHM_ETIME, "created_at");
	m = tu_msg("r", 1, "x");
	m.created_at = 253402300800000000; /* 10000-01-01T00:00:00Z */
	expect_refused(&m, SHM_ETIME, "created_at");
	m = tu_msg("r", 1, "x");
	m.updated_at = 253402300800000000;
	expect_refused(&m, SHM_ETIME, "updated_at");
	m = tu_msg("r", 1, "x");
	m.last_reply_at = INT64_MAX;
	expect_refused(&m, SHM_ETIME, "last_reply_at");
	m = tu_msg("r", 1, "x");
	m.last_reply_at = -1;
	expect_refused(&m, SHM_ETIME, "last_reply_at");
	m = tu_msg("r", 1, "x");
	at.size = (uint64_t)INT64_MAX + 1;
	m.attachments = &at;
	m.n_attachments = 1;
	expect_refused(&m, SHM_EINVAL, "attachments[0].size");
	m = tu_msg("r", 1, "x");
	m.reactions = &re;
	m.n_reactions = 1;
	expect_refused(&m, SHM_EINVAL, "user id 4 listed twice");
	assert_int_equal(tu_log_count(env), 0);

	/* the limits themselves are accepted */
	m = tu_msg("r", 1, "x");
	m.created_at = 253402300799999999; /* 9999-12-31T23:59:59.999999Z */
	m.last_reply_at = m.updated_at = m.created_at;
	at.size = (uint64_t)INT64_MAX;
	m.attachments = &at;
	m.n_attachments = 1;
	re.n_users = 2;
	m.reactions = &re;
	m.n_reactions = 1;
	assert_int_equal(shm_msg_put(env, &m), 0);
}

static void test_edit_and_react_validate_and_need_an_existing_id(void **state)
{
	shm_msg m = tu_msg("x", 1, "x");
	shm_uuid unknown;

	assert_int_equal(shm_msg_put(env, &m), 0);
	assert_int_equal(shm_msg_edit(env, &m.id, "\xff", 1), SHM_EUTF8);
	assert_int_equal(shm_msg_react(env, &m.id, 1, "", true), SHM_EINVAL);
	shm_uuid_v7(&unknown);
	assert_int_equal(shm_msg_edit(env, &unknown, "y", 1), SHM_ENOTFOUND);
	assert_int_equal(shm_msg_delete(env, &unknown), SHM_ENOTFOUND);
	assert_int_equal(shm_room_page(env, "x", 0, 0, NULL, NULL), SHM_EINVAL);
}

static void test_edit_to_null_and_0_empties_the_content_as_put_does(
	void **state)
{
	shm_msg m = tu_msg("x", 1, "x"), *got;

	m.content = NULL; /* put: NULL with length 0 is empty content */
	m.content_len = 0;
	assert_int_equal(shm_msg_put(env, &m), 0);
	assert_int_equal(shm_msg_edit(env, &m.id, "full", 4), 0);
	assert_int_equal(shm_msg_edit(env, &m.id, NULL, 0), 0);
	assert_int_equal(shm_msg_get(env, &m.id, &got), 0);
	assert_int_equal(got->content_len, 0);
	assert_string_equal(got->content, "");
	assert_int_equal(got->edit_count, 2);
	shm_msg_free(got);
	assert_int_equal(shm_msg_edit(env, &m.id, NULL, 1), SHM_EINVAL);
	assert_non_null(strstr(shm_errmsg(), "shm_msg_edit: NULL content"));
}

static void test_put_many_is_all_or_nothing(void **state)
{
	shm_msg m[3] = {tu_msg("pm", 1, "ok"), tu_msg("pm", 1, "\xff"),
	                tu_msg("pm", 1, "ok")};
	shm_msg **page;
	size_t n, bad = 99;

	assert_int_equal(shm_msg_put_many(env, m, 3, &bad), SHM_EUTF8);
	assert_int_equal(bad, 1);
	assert_int_equal(shm_room_page(env, "pm", 0, 10, &page, &n), 0);
	assert_int_equal(n, 0);
	shm_msgs_free(page, n);
	m[1] = tu_msg("pm", 1, "fine");
	assert_int_equal(shm_msg_put_many(env, m, 3, &bad), 0);
	assert_int_equal(shm_room_page(env, "pm", 0, 10, &page, &n), 0);
	assert_int_equal(n, 3);
	shm_msgs_free(page, n);
}

/* A put that stores nothing (here L1 full of unflushed work) gives back
 * the created_at it filled in: 0 again, so that its retry gets a new,
 * unique time, not one taken for the caller's (which may tie); it kept
 * the filled one, later than the retry's own time. The id filled in stays,
 * and the retry stores the message under it. A time the caller gave is
 * left as given. A write-through put whose write was stored but whose
 * wait failed keeps what was stored. */
static void test_failed_put_gives_back_created_at_and_keeps_the_id(void **state)
{
	char *d = tu_tmpdir();
	shm_options o;
	shm_env *e;
	shm_msg a = tu_msg("retry", 1, "a"), m = tu_msg("retry", 1, "m"), *got;
	shm_msg b[2] = {tu_msg("retry", 1, "b0"), tu_msg("retry", 1, "b1")};
	shm_uuid id;

	shm_options_init(&o);
	o.l1_max_entries = 1;
	e = tu_open(d, &o);
	assert_int_equal(shm_msg_put(e, &a), 0);
	assert_int_equal(shm_msg_put(e, &m), SHM_EFULL);
	assert_int_equal(m.created_at, 0);
	assert_false(shm_uuid_is_nil(&m.id));
	id = m.id;
	b[1].created_at = 1700000000000000; /* the caller's */
	assert_int_not_equal(shm_msg_put_many(e, b, 2, NULL), 0);
	assert_int_equal(b[0].created_at, 0);
	assert_int_equal(b[1].created_at, 1700000000000000);
	assert_false(shm_uuid_is_nil(&b[0].id));
	assert_int_equal(tu_log_count(e), 1); /* nothing stored */

	assert_int_equal(shm_log_trim(e, 1), 0); /* a is flushed: room */
	assert_int_equal(shm_msg_put(e, &m), 0);
	assert_memory_equal(m.id.b, id.b, 16);
	assert_true(m.created_at > a.created_at);
	assert_int_equal(shm_msg_get(e, &id, &got), 0);
	assert_int_equal(got->created_at, m.created_at);
	shm_msg_free(got);
	shm_env_close(e);
	tu_rmdir(d);

	shm_options_init(&o); /* stored, then write-through's wait fails */
	o.write_mode = SHM_WRITE_THROUGH;
	o.write_through_timeout_ms = 0;
	e = tu_open(d, &o);
	m = tu_msg("retry", 1, "through");
	assert_int_equal(shm_msg_put(e, &m), SHM_ETIMEDOUT);
	assert_true(m.created_at > 0);
	assert_int_equal(shm_msg_get(e, &m.id, &got), 0);
	assert_int_equal(got->created_at, m.created_at);
	shm_msg_free(got);
	shm_env_close(e);
	tu_rmdir(d);
	free(d);
}

static void test_uuid_parse_and_format_round_trip(void **state)
{
	shm_uuid u;
	char s[37];

	assert_int_equal(shm_uuid_parse("0B8E7C52-1C3D-4E5F-8A9B-0C1D2E3F4A5B",
	                                &u), 0);
	shm_uuid_format(&u, s);
	assert_string_equal(s, "0b8e7c52-1c3d-4e5f-8a9b-0c1d2e3f4a5b");
	assert_int_equal(shm_uuid_parse("0b8e7c52-1c3d-4e5f-8a9b-0c1d2e3f4a5", &u),
	                 SHM_EUUID);
	assert_int_equal(shm_uuid_parse("0b8e7c52x1c3d-4e5f-8a9b-0c1d2e3f4a5b", &u),
	                 SHM_EUUID);
	assert_int_equal(shm_uuid_parse("zb8e7c52-1c3d-4e5f-8a9b-0c1d2e3f4a5b", &u),
	                 SHM_EUUID);
}

static void test_uuid_v7_is_time_ordered(void **state)
{
	shm_uuid a, b;
	shm_uuid_v7(&a);
	for (int i = 0; i < 10000; i++) {
		shm_uuid_v7(&b);
		assert_true(memcmp(a.b, b.b, 16) < 0);
		a = b;
	}
}

static void test_stats_count_hits_misses_and_latency(void **state)
{
	shm_msg m = tu_msg("s", 1, "x");
	shm_counters c;
	shm_uuid unknown;
	shm_msg *got;

	shm_stats_local(env, &c);
	uint64_t hits = c.l1_hits, misses = c.l1_misses, puts = c.puts;
	assert_int_equal(shm_msg_put(env, &m), 0);
	assert_int_equal(shm_msg_get(env, &m.id, &got), 0);
	shm_msg_free(got);
	shm_uuid_v7(&unknown);
	assert_int_equal(shm_msg_get(env, &unknown, &got), SHM_ENOTFOUND);
	shm_stats_local(env, &c);
	assert_int_equal(c.l1_hits, hits + 1);
	assert_int_equal(c.l1_misses, misses + 1);
	assert_int_equal(c.puts, puts + 1);
	assert_true(c.put_latency.count > 0);
	assert_true(shm_hist_percentile(&c.get_latency, 50) > 0);
	/* p out of (0, 100]: 0 below (and NaN, which cast to an integer was
	 * undefined: UINT64_MAX here), 100 above */
	assert_int_equal(shm_hist_percentile(&c.get_latency, 0), 0);
	assert_int_equal(shm_hist_percentile(&c.get_latency, NAN), 0);
	assert_int_equal(shm_hist_percentile(&c.get_latency, 1e300),
	                 shm_hist_percentile(&c.get_latency, 100));
	assert_int_equal(shm_stats_shared(env, &c), 0);
	assert_true(c.l1_hits >= hits + 1);
}

/* The latency histograms time the calls that did their job: a write
 * that returned 0, a get that answered (the message, or SHM_ENOTFOUND:
 * nowhere). A failed one (an edit of a message that is not there, a value
 * that does not decode) was timed too, its quick failure pulling the
 * percentiles down. */
static void test_latency_times_only_calls_that_succeed(void **state)
{
	shm_msg m = tu_msg("lat", 1, "x"), *got;
	shm_counters a, b;
	shm_uuid unknown;
	MDB_txn *txn;
	MDB_val k, v = {3, "bad"};

	shm_uuid_v7(&unknown);
	assert_int_equal(shm_msg_put(env, &m), 0);
	shm_stats_local(env, &a);
	assert_int_equal(shm_msg_edit(env, &unknown, "y", 1), SHM_ENOTFOUND);
	assert_int_equal(shm_msg_react(env, &unknown, 1, "👍", true),
	                 SHM_ENOTFOUND);
	shm_stats_local(env, &b);
	assert_int_equal(b.put_latency.count, a.put_latency.count);
	assert_int_equal(shm_msg_edit(env, &m.id, "y", 1), 0);
	shm_stats_local(env, &b);
	assert_int_equal(b.put_latency.count, a.put_latency.count + 1);

	assert_int_equal(shm_msg_get(env, &m.id, &got), 0);
	shm_msg_free(got);
	assert_int_equal(shm_msg_get(env, &unknown, &got), SHM_ENOTFOUND);
	shm_stats_local(env, &b);
	assert_int_equal(b.get_latency.count, a.get_latency.count + 2);
	k = (MDB_val){16, m.id.b};
	assert_int_equal(mdb_txn_begin(env->mdb, NULL, 0, &txn), 0);
	assert_int_equal(mdb_put(txn, env->msg, &k, &v, 0), 0);
	assert_int_equal(mdb_txn_commit(txn), 0);
	assert_int_equal(shm_msg_get(env, &m.id, &got), SHM_ECORRUPT);
	shm_stats_local(env, &a);
	assert_int_equal(a.get_latency.count, b.get_latency.count);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_put_fills_id_created_at_and_hash, setup, teardown),
		cmocka_unit_test_setup_teardown(test_put_keeps_every_field, setup, teardown),
		cmocka_unit_test_setup_teardown(test_view_points_into_the_map_until_rtxn_end, setup, teardown),
		cmocka_unit_test_setup_teardown(test_get_of_unknown_id_is_not_found, setup, teardown),
		cmocka_unit_test_setup_teardown(test_edit_sets_content_updated_at_and_counts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_delete_is_soft_as_in_the_seed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_deleted_message_takes_no_edit_reaction_or_second_delete, setup, teardown),
		cmocka_unit_test_setup_teardown(test_react_adds_and_removes_idempotently, setup, teardown),
		cmocka_unit_test_setup_teardown(test_changes_that_change_nothing_count_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_put_stores_reactions_sorted_by_emoji, setup, teardown),
		cmocka_unit_test_setup_teardown(test_put_drops_a_reaction_without_users, setup, teardown),
		cmocka_unit_test_setup_teardown(test_react_past_the_counts_put_takes_is_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_edit_and_react_cannot_grow_a_message_past_what_put_takes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_react_keeps_reactions_sorted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_put_of_the_most_reactions_fits_a_small_stack, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reply_bumps_parent_reply_count, setup, teardown),
		cmocka_unit_test_setup_teardown(test_every_change_makes_a_newer_updated_at, setup, teardown),
		cmocka_unit_test_setup_teardown(test_put_replacing_with_an_older_updated_at_stores_a_newer_one, setup, teardown),
		cmocka_unit_test_setup_teardown(test_put_newer_writes_only_over_an_older_version, setup, teardown),
		cmocka_unit_test_setup_teardown(test_edit_and_reply_counts_stop_at_their_maximum, setup, teardown),
		cmocka_unit_test_setup_teardown(test_replacing_a_reply_keeps_its_parents_reply_count, setup, teardown),
		cmocka_unit_test_setup_teardown(test_a_reply_l1_cannot_judge_waits_for_postgres, setup, teardown),
		cmocka_unit_test_setup_teardown(test_a_reply_dated_now_is_new_under_a_watermark_ahead, setup, teardown),
		cmocka_unit_test_setup_teardown(test_put_many_carrying_the_parent_asks_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_moving_a_reply_moves_its_count_never_below_zero, setup, teardown),
		cmocka_unit_test_setup_teardown(test_put_many_carrying_the_parent_keeps_its_counts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_put_many_counts_replies_whatever_the_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_put_many_moving_and_adding_replies_whatever_the_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_put_many_counts_an_id_put_twice_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_room_page_newest_first_with_before_and_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_room_page_ties_ordered_by_id_desc, setup, teardown),
		cmocka_unit_test_setup_teardown(test_filled_created_at_are_unique_so_paging_misses_none, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_input_is_refused_and_changes_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_put_refuses_what_json_cannot_carry, setup, teardown),
		cmocka_unit_test_setup_teardown(test_put_cannot_bring_a_deleted_message_back, setup, teardown),
		cmocka_unit_test_setup_teardown(test_put_of_type_delete_carries_the_deleted_content, setup, teardown),
		cmocka_unit_test_setup_teardown(test_put_refuses_a_parent_or_thread_that_names_no_other, setup, teardown),
		cmocka_unit_test_setup_teardown(test_put_keeps_a_reply_in_its_parents_room_and_thread, setup, teardown),
		cmocka_unit_test_setup_teardown(test_put_gives_a_deleted_parent_no_new_reply, setup, teardown),
		cmocka_unit_test_setup_teardown(test_put_of_an_old_reply_l1_dropped_is_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_put_many_copies_a_thread_under_a_deleted_parent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_put_refuses_a_reply_to_its_own_descendant, setup, teardown),
		cmocka_unit_test_setup_teardown(test_edit_and_react_validate_and_need_an_existing_id, setup, teardown),
		cmocka_unit_test_setup_teardown(test_edit_to_null_and_0_empties_the_content_as_put_does, setup, teardown),
		cmocka_unit_test_setup_teardown(test_put_many_is_all_or_nothing, setup, teardown),
		cmocka_unit_test(test_failed_put_gives_back_created_at_and_keeps_the_id),
		cmocka_unit_test(test_uuid_parse_and_format_round_trip),
		cmocka_unit_test(test_uuid_v7_is_time_ordered),
		cmocka_unit_test_setup_teardown(test_stats_count_hits_misses_and_latency, setup, teardown),
		cmocka_unit_test_setup_teardown(test_latency_times_only_calls_that_succeed, setup, teardown),
	};
	return cmocka_run_group_tests_name("msg", tests, NULL, NULL);
}
