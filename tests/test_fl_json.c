/* tests/test_fl_json.c - the flusher's hot-path JSON writer (flusher/json.c)
 * gives the very bytes of shm_msg_to_json (jansson), or steps aside. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../flusher/fl.h"
#include "testutil.h"

/* The writer's output equals shm_msg_to_json's, or it falls back and
 * shm_msg_to_json is left to answer. Returns true if the fast path wrote. */
static bool same(const shm_msg *m)
{
	fl_buf b = {0}, md = {0};
	char *ref = NULL;
	size_t rlen = 0, moff = 0, mlen = 0;
	int rc_ref = shm_msg_to_json(m, &ref, &rlen);

	fl_buf_adds(&b, "prefix");
	int rc = fl_msg_json(&b, m, &moff, &mlen);
	if (rc == FL_JSON_FALLBACK) {
		assert_int_equal(b.len, 6); /* unchanged */
		assert_int_equal(fl_msg_metadata_json(&md, m) == 0 ||
		                 fl_msg_metadata_json(&md, m) == FL_JSON_FALLBACK,
		                 1);
		free(ref);
		fl_buf_free(&b);
		fl_buf_free(&md);
		return false;
	}
	assert_int_equal(rc, 0);
	assert_int_equal(rc_ref, 0);
	if (b.len - 6 != rlen || memcmp(b.p + 6, ref, rlen) != 0) {
		fprintf(stderr, "ref:  %s\nfast: %s\n", ref, b.p + 6);
		fail();
	}
	assert_int_equal(fl_msg_metadata_json(&md, m), 0);
	assert_int_equal(md.len, mlen);
	assert_memory_equal(md.p, b.p + moff, mlen);
	assert_true(md.p[0] == '{' && md.p[mlen - 1] == '}');
	free(ref);
	fl_buf_free(&b);
	fl_buf_free(&md);
	return true;
}

static void test_fixed_messages(void **state)
{
	static const int32_t u1[] = {7, 3}, u2[] = {-9};
	static const int32_t mentions[] = {3, -4, 2147483647};
	shm_reaction rx[2] = {{.emoji = "a", .user_ids = u2, .n_users = 1},
	                      {.emoji = "👍", .user_ids = u1, .n_users = 2}};
	shm_attachment at[2] = {
		{.filename = "cat \"1\".png", .content_type = "image/png",
		 .size = 123456789012ull, .url = "https://x.test/a/b?c=d"},
		{.filename = NULL, .content_type = "", .size = 0, .url = "\\"}};
	shm_msg m;

	memset(&m, 0, sizeof m);
	shm_uuid_parse("0190a4c4-1d2e-7abc-8def-0123456789ab", &m.id);
	m.room_id = "général";
	m.user_id = -2147483647 - 1;
	m.username = "zoë";
	m.content = "line1\nline2 \t\"q\" \\ / é 😀\b\f\r\x01\x1f\x7f";
	m.content_len = (uint32_t)strlen(m.content);
	m.type = SHM_MSG_REACTION;
	assert_true(same(&m)); /* created_at 0, every option empty */
	m.created_at = 1795428000123000;
	m.updated_at = 1795428001000001;
	m.edited = true;
	m.edit_count = 4000000000u;
	m.reactions = rx;
	m.n_reactions = 2;
	m.mentions = mentions;
	m.n_mentions = 3;
	m.attachments = at;
	m.n_attachments = 2;
	m.reply_count = 12;
	m.last_reply_at = 1795428002000000;
	m.content_hash = 0x00ab00cd00ef0012ull;
	m.has_parent = m.has_thread = true;
	shm_uuid_parse("0190a4c4-1d2e-7abc-8def-0123456789ac", &m.parent_id);
	shm_uuid_parse("0190a4c4-1d2e-7abc-8def-0123456789ad", &m.thread_id);
	assert_true(same(&m));
	/* content with NUL bytes (jansson: \u0000) */
	m.content = "a\0b";
	m.content_len = 3;
	assert_true(same(&m));
	for (int t = 0; t < 12; t++) {
		m.type = (shm_msg_type)t;
		same(&m); /* unknown types fall back */
	}
}

static void test_fallbacks(void **state)
{
	shm_reaction rx[2] = {{.emoji = "x"}, {.emoji = "x"}};
	shm_attachment at[1] = {{.size = (uint64_t)INT64_MAX + 1}};
	shm_msg m;

	memset(&m, 0, sizeof m);
	m.room_id = "r";
	m.username = "u";
	m.type = SHM_MSG_TEXT;
	m.content = "\xff";
	m.content_len = 1;
	assert_false(same(&m)); /* invalid UTF-8 */
	static const char *const bad[] = {
		"\xc0\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe2\x82",
		"\x80", "\xf8\x88\x80\x80\x80"};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		m.content = bad[i];
		m.content_len = (uint32_t)strlen(bad[i]);
		assert_false(same(&m));
	}
	m.content = "ok";
	m.content_len = 2;
	m.room_id = "\xe2\x82";
	assert_false(same(&m));
	m.room_id = "r";
	m.reactions = rx;
	m.n_reactions = 2;
	assert_false(same(&m)); /* one emoji twice */
	m.n_reactions = 0;
	m.attachments = at;
	m.n_attachments = 1;
	assert_false(same(&m)); /* size beyond int64 */
}

/* Random messages, random bytes in every text field (valid UTF-8 or not). */
static void test_random(void **state)
{
	unsigned seed = 12345;
	char room[64], user[64], content[256], em[3][16], fn[32], url[32];
	int32_t ids[8];
	size_t fast = 0;

	for (int iter = 0; iter < 20000; iter++) {
		shm_reaction rx[3];
		shm_attachment at[2];
		shm_msg m;
		char *fields[] = {room, user, content, em[0], em[1], em[2], fn, url};
		size_t caps[] = {sizeof room, sizeof user, sizeof content, 16, 16,
		                 16, sizeof fn, sizeof url};
		static const char *const pieces[] = {
			"a", "é", "😀", "\"", "\\", "/", "\n", "\t", "\x01",
			"\x1f", "\x7f", "\xc3", "\xff", "€", "\xed\xa0\x80", " "};

		for (size_t f = 0; f < 8; f++) {
			size_t n = 0, k = (size_t)(rand_r(&seed) % 10);
			fields[f][0] = 0;
			for (size_t i = 0; i < k; i++) {
				/* mostly valid text, sometimes a bad byte */
				int p = rand_r(&seed) % (iter % 7 ? 11 : 16);
				const char *s = pieces[p];
				if (n + strlen(s) + 1 >= caps[f])
					break;
				memcpy(fields[f] + n, s, strlen(s) + 1);
				n += strlen(s);
			}
		}
		for (int i = 0; i < 8; i++)
			ids[i] = rand_r(&seed) - RAND_MAX / 2;
		memset(&m, 0, sizeof m);
		for (int i = 0; i < 16; i++)
			m.id.b[i] = (uint8_t)rand_r(&seed);
		m.room_id = room;
		m.username = user;
		m.user_id = ids[0];
		m.content = content;
		m.content_len = (uint32_t)strlen(content);
		m.type = (shm_msg_type)(rand_r(&seed) % 6);
		m.created_at = (int64_t)rand_r(&seed) * 1000003;
		m.updated_at = rand_r(&seed) % 2 ? 0 : m.created_at + 17;
		m.edited = rand_r(&seed) % 2;
		m.edit_count = (uint32_t)rand_r(&seed);
		m.n_reactions = (uint32_t)(rand_r(&seed) % 4);
		for (uint32_t i = 0; i < m.n_reactions; i++)
			rx[i] = (shm_reaction){.emoji = em[i], .user_ids = ids,
			                       .n_users = (uint32_t)(rand_r(&seed) % 8)};
		m.reactions = rx;
		m.mentions = ids;
		m.n_mentions = (uint32_t)(rand_r(&seed) % 8);
		m.n_attachments = (uint32_t)(rand_r(&seed) % 3);
		for (uint32_t i = 0; i < m.n_attachments; i++)
			at[i] = (shm_attachment){.filename = fn,
			                         .content_type = i ? NULL : room,
			                         .size = (uint64_t)rand_r(&seed) << 20,
			                         .url = url};
		m.attachments = at;
		m.reply_count = (uint32_t)rand_r(&seed);
		m.last_reply_at = rand_r(&seed) % 2 ? 0 : m.created_at + 99;
		m.content_hash = (uint64_t)rand_r(&seed) << 33 ^ (uint64_t)rand_r(&seed);
		m.has_parent = rand_r(&seed) % 2;
		m.has_thread = rand_r(&seed) % 2;
		m.parent_id = m.id;
		m.thread_id = m.id;
		fast += same(&m);
	}
	assert_true(fast > 10000); /* most of them took the fast path */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fixed_messages),
		cmocka_unit_test(test_fallbacks),
		cmocka_unit_test(test_random),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
