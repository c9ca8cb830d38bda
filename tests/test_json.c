/* tests/test_json.c - messages to/from the seed's serde JSON, RFC 3339 time
 * formatting and parsing (libshm/json_write.c, json_read.c, time.c). */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codec.h" /* shm__msg_validate: put's checks */
#include "shm.h"
#include "shm_log.h"
#include "testutil.h"

static const char *ID = "0190a4c4-1d2e-7abc-8def-0123456789ab";
static const char *ID2 = "0190a4c4-1d2e-7abc-8def-0123456789ac";

/* A message using every field. Pointers are static storage. */
static shm_msg full_msg(void)
{
	static const int32_t u1[] = {7, 3}, u2[] = {9};
	static shm_reaction rx[2];
	static const int32_t mentions[] = {3, -4};
	static shm_attachment at[1];
	shm_msg m;

	memset(&m, 0, sizeof m);
	rx[0] = (shm_reaction){.emoji = "a", .user_ids = u2, .n_users = 1};
	rx[1] = (shm_reaction){.emoji = "👍", .user_ids = u1, .n_users = 2};
	at[0] = (shm_attachment){.filename = "cat \"1\".png",
	                         .content_type = "image/png",
	                         .size = 123456789012ull,
	                         .url = "https://x.test/a/b?c=d"};
	shm_uuid_parse(ID2, &at[0].id);
	shm_uuid_parse(ID, &m.id);
	m.room_id = "général";
	m.user_id = -2147483647 - 1;
	m.username = "zoë";
	m.content = "line1\nline2 \t\"q\" \\ / é 😀";
	m.content_len = (uint32_t)strlen(m.content);
	m.type = SHM_MSG_REACTION;
	m.created_at = 1795428000123000; /* 2026-11-23T10:00:00.123Z */
	m.updated_at = 1795428001000001;
	m.edited = true;
	m.edit_count = 4294967295u;
	m.reactions = rx;
	m.n_reactions = 2;
	m.mentions = mentions;
	m.n_mentions = 2;
	m.attachments = at;
	m.n_attachments = 1;
	m.reply_count = 2;
	m.last_reply_at = 1795428002000000;
	m.content_hash = 0x00ab00cd00ef0012ull;
	m.has_parent = true;
	shm_uuid_parse(ID2, &m.parent_id);
	m.has_thread = true;
	shm_uuid_parse(ID, &m.thread_id);
	return m;
}

static const char FULL_JSON[] =
	"{\"id\":\"0190a4c4-1d2e-7abc-8def-0123456789ab\","
	"\"room_id\":\"général\",\"user_id\":-2147483648,\"username\":\"zoë\","
	"\"content\":\"line1\\nline2 \\t\\\"q\\\" \\\\ / é 😀\","
	"\"message_type\":\"Reaction\","
	"\"created_at\":\"2026-11-23T10:00:00.123Z\","
	"\"updated_at\":\"2026-11-23T10:00:01.000001Z\","
	"\"metadata\":{\"edited\":true,\"edit_count\":4294967295,"
	"\"reactions\":{\"a\":[9],\"👍\":[7,3]},\"mentions\":[3,-4],"
	"\"attachments\":[{\"id\":\"0190a4c4-1d2e-7abc-8def-0123456789ac\","
	"\"filename\":\"cat \\\"1\\\".png\",\"content_type\":\"image/png\","
	"\"size\":123456789012,\"url\":\"https://x.test/a/b?c=d\"}],"
	"\"reply_count\":2,\"last_reply_at\":\"2026-11-23T10:00:02Z\"},"
	"\"content_hash\":\"00ab00cd00ef0012\",\"compressed_content\":null,"
	"\"parent_id\":\"0190a4c4-1d2e-7abc-8def-0123456789ac\","
	"\"thread_id\":\"0190a4c4-1d2e-7abc-8def-0123456789ab\"}";

static shm_msg *parse_ok(const char *json)
{
	shm_msg *m = NULL;
	char err[256] = "";
	int rc = shm_msg_from_json(json, strlen(json), &m, err, sizeof err);

	if (rc)
		fprintf(stderr, "unexpected error %d: %s\n", rc, err);
	assert_int_equal(rc, 0);
	assert_non_null(m);
	return m;
}

/* Every pointer of m lies inside its one malloc'd block. */
static void assert_one_block(const shm_msg *m)
{
	const char *lo = (const char *)m;
	const char *hi = lo + malloc_usable_size((void *)m);
#define IN(p) assert_true((const char *)(p) >= lo && (const char *)(p) < hi)
	IN(m->room_id);
	IN(m->username);
	IN(m->content);
	for (uint32_t i = 0; i < m->n_reactions; i++) {
		IN(&m->reactions[i]);
		IN(m->reactions[i].emoji);
		if (m->reactions[i].n_users)
			IN(m->reactions[i].user_ids);
	}
	if (m->n_mentions)
		IN(m->mentions);
	for (uint32_t i = 0; i < m->n_attachments; i++) {
		IN(&m->attachments[i]);
		IN(m->attachments[i].filename);
		IN(m->attachments[i].content_type);
		IN(m->attachments[i].url);
	}
#undef IN
}

/* ------------------------------------------------------------- to/from */

static void test_to_json_writes_the_seed_shape_in_key_order(void **state)
{
	shm_msg m = full_msg();
	char *js = NULL;
	size_t len = 0;

	(void)state;
	assert_int_equal(shm_msg_to_json(&m, &js, &len), 0);
	assert_string_equal(js, FULL_JSON);
	assert_int_equal(len, strlen(FULL_JSON));
	free(js);
}

static void test_to_json_writes_null_for_absent_options(void **state)
{
	shm_msg m;
	char *js;

	(void)state;
	memset(&m, 0, sizeof m);
	shm_uuid_parse(ID, &m.id);
	m.room_id = "r";
	m.username = "";
	m.content = "";
	m.created_at = 1795428000000000;
	assert_int_equal(shm_msg_to_json(&m, &js, NULL), 0);
	assert_string_equal(
		js, "{\"id\":\"0190a4c4-1d2e-7abc-8def-0123456789ab\","
		    "\"room_id\":\"r\",\"user_id\":0,\"username\":\"\","
		    "\"content\":\"\",\"message_type\":\"Text\","
		    "\"created_at\":\"2026-11-23T10:00:00Z\",\"updated_at\":null,"
		    "\"metadata\":{\"edited\":false,\"edit_count\":0,"
		    "\"reactions\":{},\"mentions\":[],\"attachments\":[],"
		    "\"reply_count\":0,\"last_reply_at\":null},"
		    "\"content_hash\":\"0000000000000000\","
		    "\"compressed_content\":null,\"parent_id\":null,"
		    "\"thread_id\":null}");
	free(js);
}

static void test_round_trip_keeps_every_field(void **state)
{
	shm_msg m = full_msg(), *back;
	char *js, *js2;

	(void)state;
	assert_int_equal(shm_msg_to_json(&m, &js, NULL), 0);
	back = parse_ok(js);
	/* content_hash is not read back: put recomputes it. */
	assert_int_equal(back->content_hash, 0);
	back->content_hash = m.content_hash;
	tu_assert_msg_equal(&m, back);
	assert_one_block(back);
	assert_int_equal(shm_msg_to_json(back, &js2, NULL), 0);
	assert_string_equal(js, js2);
	free(js);
	free(js2);
	shm_msg_free(back);
}

static void test_from_json_minimal_leaves_defaults_zero(void **state)
{
	shm_msg *m = parse_ok("{\"room_id\":\"r\",\"user_id\":5,\"username\":\"bob\","
	                      "\"content\":\"hi\",\"message_type\":\"Text\"}");

	(void)state;
	assert_true(shm_uuid_is_nil(&m->id));
	assert_string_equal(m->room_id, "r");
	assert_int_equal(m->user_id, 5);
	assert_int_equal(m->content_len, 2);
	assert_int_equal(m->created_at, 0);
	assert_int_equal(m->updated_at, 0);
	assert_int_equal(m->content_hash, 0);
	assert_int_equal(m->n_reactions + m->n_mentions + m->n_attachments, 0);
	assert_false(m->edited);
	assert_false(m->has_parent);
	assert_false(m->has_thread);
	assert_one_block(m);
	shm_msg_free(m);
}

static void test_from_json_sorts_reactions_and_accepts_partial_metadata(
	void **state)
{
	shm_msg *m = parse_ok(
		"{\"room_id\":\"r\",\"user_id\":5,\"username\":\"bob\","
		"\"content\":\"hi\",\"message_type\":\"Image\",\"metadata\":"
		"{\"reactions\":{\"z\":[1],\"b\":[2,3],\"m\":[]},"
		"\"mentions\":[8]},\"parent_id\":null,"
		"\"compressed_content\":[1,2,255],\"content_hash\":\"ff\"}");

	(void)state;
	assert_int_equal(m->type, SHM_MSG_IMAGE);
	assert_int_equal(m->n_reactions, 2); /* "m":[] is no reaction */
	assert_string_equal(m->reactions[0].emoji, "b");
	assert_int_equal(m->reactions[0].n_users, 2);
	assert_int_equal(m->reactions[0].user_ids[1], 3);
	assert_string_equal(m->reactions[1].emoji, "z");
	assert_int_equal(m->n_mentions, 1);
	assert_int_equal(m->mentions[0], 8);
	assert_int_equal(m->content_hash, 0); /* ignored */
	assert_one_block(m);
	shm_msg_free(m);
}

static void test_from_json_accepts_every_message_type(void **state)
{
	(void)state;
	for (int t = 0; t < SHM_MSG_TYPE_COUNT; t++) {
		char js[256];
		snprintf(js, sizeof js,
		         "{\"room_id\":\"r\",\"user_id\":1,\"username\":\"u\","
		         "\"content\":\"c\",\"message_type\":\"%s\"}",
		         shm_msg_type_name((shm_msg_type)t));
		shm_msg *m = parse_ok(js);
		assert_int_equal(m->type, t);
		shm_msg_free(m);
	}
}

/* Each bad input: its code and a reason naming the problem. */
static const struct bad_case {
	const char *json;
	int rc;
	const char *reason;
} bad_cases[] = {
#define BASE "\"room_id\":\"r\",\"user_id\":1,\"username\":\"u\",\"content\":\"c\",\"message_type\":\"Text\""
	{"", SHM_EJSON, "malformed JSON"},
	{"{", SHM_EJSON, "malformed JSON"},
	{"[1]", SHM_EJSON, "expected a JSON object, got array"},
	{"{" BASE "} {}", SHM_EJSON, "malformed JSON"},
	{"{" BASE ",\"extra\":1}", SHM_EJSON, "unknown field 'extra'"},
	{"{" BASE ",\"metadata\":{\"foo\":1}}", SHM_EJSON,
	 "unknown field 'metadata.foo'"},
	{"{" BASE ",\"metadata\":{\"attachments\":[{\"id\":\"0190a4c4-1d2e-7abc-8def-0123456789ab\",\"filename\":\"f\",\"content_type\":\"t\",\"size\":1,\"url\":\"u\",\"x\":2}]}}",
	 SHM_EJSON, "unknown field 'metadata.attachments[0].x'"},
	{"{" BASE ",\"room_id\":\"q\"}", SHM_EJSON, "duplicate object key"},
	{"{\"user_id\":1,\"username\":\"u\",\"content\":\"c\",\"message_type\":\"Text\"}",
	 SHM_EJSON, "field 'room_id': missing"},
	{"{\"room_id\":\"r\",\"user_id\":1,\"username\":\"u\",\"message_type\":\"Text\"}",
	 SHM_EJSON, "field 'content': missing"},
	{"{\"room_id\":\"r\",\"user_id\":2147483648,\"username\":\"u\",\"content\":\"c\",\"message_type\":\"Text\"}",
	 SHM_EJSON, "field 'user_id': expected integer in int32 range"},
	{"{\"room_id\":\"r\",\"user_id\":\"1\",\"username\":\"u\",\"content\":\"c\",\"message_type\":\"Text\"}",
	 SHM_EJSON, "field 'user_id': expected integer in int32 range, got string"},
	{"{\"room_id\":\"r\",\"user_id\":1.5,\"username\":\"u\",\"content\":\"c\",\"message_type\":\"Text\"}",
	 SHM_EJSON, "got number"},
	{"{\"room_id\":1,\"user_id\":1,\"username\":\"u\",\"content\":\"c\",\"message_type\":\"Text\"}",
	 SHM_EJSON, "field 'room_id': expected string, got integer"},
	{"{\"room_id\":\"\",\"user_id\":1,\"username\":\"u\",\"content\":\"c\",\"message_type\":\"Text\"}",
	 SHM_EINVAL, "field 'room_id': must not be empty"},
	{"{\"room_id\":\"r\",\"user_id\":1,\"username\":\"u\",\"content\":\"c\",\"message_type\":\"Foo\"}",
	 SHM_ETYPE, "unknown message_type 'Foo'"},
	{"{\"room_id\":\"r\",\"user_id\":1,\"username\":\"u\",\"content\":\"c\",\"message_type\":\"text\"}",
	 SHM_ETYPE, "unknown message_type 'text': not one of Text, Image, "
	 "File, Audio, Video, System, Edit, Delete, Reaction"},
	{"{\"id\":\"xyz\"," BASE "}", SHM_EUUID, "field 'id': malformed UUID 'xyz'"},
	{"{\"id\":\"0190a4c4-1d2e-7abc-8def-0123456789a\"," BASE "}", SHM_EUUID,
	 "field 'id': malformed UUID"},
	/* nil is "none" in shm_msg: put would store it under a new id */
	{"{\"id\":\"00000000-0000-0000-0000-000000000000\"," BASE "}",
	 SHM_EUUID, "field 'id': the nil UUID, which a message cannot hold"},
	{"{" BASE ",\"parent_id\":\"0190a4c4x1d2e-7abc-8def-0123456789ab\"}",
	 SHM_EUUID, "field 'parent_id': malformed UUID"},
	/* put refuses them: null is none */
	{"{" BASE ",\"parent_id\":\"00000000-0000-0000-0000-000000000000\"}",
	 SHM_EUUID, "field 'parent_id': the nil UUID, which names no message "
	 "(null for none)"},
	{"{" BASE ",\"thread_id\":\"00000000-0000-0000-0000-000000000000\"}",
	 SHM_EUUID, "field 'thread_id': the nil UUID, which names no message"},
	{"{" BASE ",\"thread_id\":5}", SHM_EJSON,
	 "field 'thread_id': expected UUID string, got integer"},
	{"{" BASE ",\"created_at\":\"2026-11-23\"}", SHM_ETIME,
	 "field 'created_at': timestamp '2026-11-23'"},
	{"{" BASE ",\"created_at\":null}", SHM_EJSON,
	 "field 'created_at': expected RFC 3339 string, got null"},
	{"{" BASE ",\"updated_at\":\"2026-02-30T00:00:00Z\"}", SHM_ETIME,
	 "day out of range"},
	{"{" BASE ",\"metadata\":{\"last_reply_at\":1}}", SHM_EJSON,
	 "field 'metadata.last_reply_at': expected RFC 3339 string or null"},
	{"{" BASE ",\"metadata\":[]}", SHM_EJSON,
	 "field 'metadata': expected object, got array"},
	{"{" BASE ",\"metadata\":{\"edited\":1}}", SHM_EJSON,
	 "field 'metadata.edited': expected boolean, got integer"},
	{"{" BASE ",\"metadata\":{\"edit_count\":-1}}", SHM_EJSON,
	 "field 'metadata.edit_count': expected integer in uint32 range"},
	{"{" BASE ",\"metadata\":{\"reply_count\":4294967296}}", SHM_EJSON,
	 "field 'metadata.reply_count': expected integer in uint32 range"},
	{"{" BASE ",\"metadata\":{\"mentions\":[1,\"2\"]}}", SHM_EJSON,
	 "field 'metadata.mentions[1]': expected integer in int32 range"},
	{"{" BASE ",\"metadata\":{\"reactions\":{\"x\":[1,1]}}}", SHM_EJSON,
	 "field 'metadata.reactions.x': duplicate user id 1"},
	{"{" BASE ",\"metadata\":{\"reactions\":{\"\":[1]}}}", SHM_EINVAL,
	 "field 'metadata.reactions': an emoji must not be empty"},
	{"{" BASE ",\"metadata\":{\"reactions\":{\"x\":{}}}}", SHM_EJSON,
	 "field 'metadata.reactions.x': expected array, got object"},
	{"{" BASE ",\"metadata\":{\"attachments\":[{\"id\":\"0190a4c4-1d2e-7abc-8def-0123456789ab\",\"filename\":\"f\",\"content_type\":\"t\",\"size\":-1,\"url\":\"u\"}]}}",
	 SHM_EJSON, "field 'metadata.attachments[0].size': expected unsigned integer"},
	{"{" BASE ",\"metadata\":{\"attachments\":[{\"filename\":\"f\",\"content_type\":\"t\",\"size\":1,\"url\":\"u\"}]}}",
	 SHM_EJSON, "field 'metadata.attachments[0].id': missing"},
	{"{" BASE ",\"metadata\":{\"attachments\":[7]}}", SHM_EJSON,
	 "field 'metadata.attachments[0]': expected object, got integer"},
	{"{" BASE ",\"content_hash\":12}", SHM_EJSON,
	 "field 'content_hash': expected string, got integer"},
	{"{" BASE ",\"compressed_content\":[256]}", SHM_EJSON,
	 "field 'compressed_content[0]': expected byte (0..255)"},
	{"{\"room_id\":\"r\",\"user_id\":1,\"username\":\"u\",\"content\":\"a\\u0000b\",\"message_type\":\"Text\"}",
	 SHM_ENUL, "field 'content': NUL byte at offset 1"},
	{"{\"room_id\":\"r\\u0000\",\"user_id\":1,\"username\":\"u\",\"content\":\"c\",\"message_type\":\"Text\"}",
	 SHM_ENUL, "field 'room_id': NUL byte"},
	{"{" BASE ",\"metadata\":{\"reactions\":{\"a\\u0000\":[1]}}}", SHM_ENUL,
	 "NUL byte in a key"},
	/* named as a NUL, not as an unknown 'Text' */
	{"{\"room_id\":\"r\",\"user_id\":1,\"username\":\"u\",\"content\":\"c\",\"message_type\":\"Text\\u0000\"}",
	 SHM_ENUL, "field 'message_type': NUL byte at offset 4"},
	{"{\"room_id\":\"r\xff\",\"user_id\":1,\"username\":\"u\",\"content\":\"c\",\"message_type\":\"Text\"}",
	 SHM_EUTF8, "invalid UTF-8 at byte 13"},
	{"{\"room_id\":\"r\",\"user_id\":1,\"username\":\"u\",\"content\":\"\xc0\xaf\",\"message_type\":\"Text\"}",
	 SHM_EUTF8, "invalid UTF-8"},
	{"{\"room_id\":\"r\",\"user_id\":1,\"username\":\"u\",\"content\":\"\\ud800\",\"message_type\":\"Text\"}",
	 SHM_EUTF8, "invalid Unicode"},
#undef BASE
};

static void test_from_json_rejects_bad_input_with_a_precise_reason(
	void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof bad_cases / sizeof *bad_cases; i++) {
		const struct bad_case *b = &bad_cases[i];
		shm_msg *m = (shm_msg *)1;
		char err[256] = "";
		int rc = shm_msg_from_json(b->json, strlen(b->json), &m, err,
		                           sizeof err);
		if (rc != b->rc || !strstr(err, b->reason)) {
			fprintf(stderr,
			        "case %zu: %s\n  got %d '%s'\n  want %d '%s'\n", i,
			        b->json, rc, err, b->rc, b->reason);
			fail();
		}
		assert_null(m);
		/* The thread's error text carries the same reason. */
		assert_non_null(strstr(shm_errmsg(), b->reason));
	}
}

static void test_from_json_checks_static_limits(void **state)
{
	static char big[4096 + 200];
	char *p;
	shm_msg *m;
	char err[256];

	(void)state;
	/* room_id of 256 bytes */
	p = big + sprintf(big, "{\"room_id\":\"");
	memset(p, 'r', 256);
	p += 256;
	sprintf(p, "\",\"user_id\":1,\"username\":\"u\",\"content\":\"c\","
	           "\"message_type\":\"Text\"}");
	assert_int_equal(shm_msg_from_json(big, strlen(big), &m, err, sizeof err),
	                 SHM_ETOOBIG);
	assert_non_null(strstr(err, "field 'room_id': 256 bytes, at most 255"));
	/* 255 is fine */
	memmove(big + 12, big + 13, strlen(big + 13) + 1);
	assert_int_equal(shm_msg_from_json(big, strlen(big), &m, err, sizeof err),
	                 0);
	shm_msg_free(m);
}

static void test_from_json_reads_only_len_bytes_and_handles_no_err(
	void **state)
{
	const char js[] = "{\"room_id\":\"r\",\"user_id\":1,\"username\":\"u\","
	                  "\"content\":\"c\",\"message_type\":\"Text\"}GARBAGE";
	shm_msg *m;

	(void)state;
	assert_int_equal(shm_msg_from_json(js, strlen(js) - 7, &m, NULL, 0), 0);
	shm_msg_free(m);
	assert_int_equal(shm_msg_from_json(js, strlen(js), &m, NULL, 0),
	                 SHM_EJSON);
	/* A tiny err buffer is truncated, never overflowed. */
	char err[8];
	assert_int_equal(shm_msg_from_json("[", 1, &m, err, sizeof err),
	                 SHM_EJSON);
	assert_int_equal(strlen(err), 7);
}

/* A raw NUL byte, which no JSON text holds (a string writes \u0000), is
 * named as such wherever it is, not taken for the end of the input. */
static void test_from_json_names_a_raw_nul_byte(void **state)
{
	static const struct {
		const char *json;
		size_t len;
		const char *reason;
	} cases[] = {
		{"{\"room_id\":\"r\0\"}", 16, "NUL byte at offset 13"},
		{"{\"room_id\"\0:\"r\"}", 16, "NUL byte at offset 10"},
		{"\0{}", 3, "NUL byte at offset 0"},
		{"{}\0junk", 7, "NUL byte at offset 2"},
	};
	shm_msg *m = (shm_msg *)1;
	char err[256];

	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		int rc = shm_msg_from_json(cases[i].json, cases[i].len, &m, err,
		                           sizeof err);
		if (rc != SHM_ENUL || !strstr(err, cases[i].reason))
			fail_msg("case %zu: got %d '%s', want '%s'", i, rc, err,
			         cases[i].reason);
		assert_null(m);
		assert_null(strstr(err, "end of file"));
	}
}

/* Whether s is printable ASCII: input quoted in an error text is, its
 * invalid bytes and control characters written \xNN. */
static bool printable_ascii(const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p < 0x20 || *p >= 0x7f)
			return false;
	return true;
}

/* Input the UUID, time and type parsers (and the JSON reader) quote in
 * shm_errmsg() is shown printably: they echoed its raw bytes, so the text
 * itself could be invalid UTF-8 or hold control characters (a terminal
 * escape, a newline that forges a line of a log). */
static void test_error_texts_quote_input_printably(void **state)
{
	static const struct {
		const char *json, *want;
	} cases[] = {
#define BASE "\"room_id\":\"r\",\"user_id\":1,\"username\":\"u\",\"content\":\"c\",\"message_type\":\"Text\""
		{"{\"id\":\"\\u001b[2J\"," BASE "}",
		 "field 'id': malformed UUID '\\x1b[2J'"},
		{"{\"room_id\":\"r\",\"user_id\":1,\"username\":\"u\",\"content\":"
		 "\"c\",\"message_type\":\"Te\\u0001xt\"}",
		 "unknown message_type 'Te\\x01xt'"},
		{"{" BASE ",\"created_at\":\"2026\\n\"}",
		 "field 'created_at': timestamp '2026\\x0a'"},
		{"{" BASE ",\"a\\nb\":1}", "unknown field 'a\\x0ab'"},
		/* an emoji in a field's name */
		{"{" BASE ",\"metadata\":{\"reactions\":{\"x\\ny\":[1,1]}}}",
		 "field 'metadata.reactions.x\\x0ay': duplicate user id 1"},
		{"{" BASE ",\"metadata\":{\"reactions\":{\"\\u001b\":[\"1\"]}}}",
		 "field 'metadata.reactions.\\x1b[0]': expected integer"},
		/* jansson's syntax errors quote the input */
		{"{\"room_id\":\x1b[2J}",
		 "malformed JSON: invalid token near '\\x1b' at byte 12"},
		{"\x01", "malformed JSON: '[' or '{' expected near '\\x01' at "
		         "byte 1"},
#undef BASE
	};
	static const int32_t twice[] = {7, 7};
	shm_reaction r[2] = {{.emoji = "x\x01", .user_ids = twice, .n_users = 1},
	                     {.emoji = "x\x01", .user_ids = twice, .n_users = 1}};
	shm_msg dup = {.id.b[15] = 1, .room_id = "r", .reactions = r,
	               .n_reactions = 2, .created_at = 1};
	char err[512], big[200], *js;
	shm_options o;
	shm_uuid u;
	int64_t us;
	shm_msg_type t;
	shm_msg *m;

	(void)state;
	/* a reaction's emoji, twice in a message, or with a user twice */
	shm_options_init(&o);
	assert_int_equal(shm_msg_to_json(&dup, &js, NULL), SHM_EINVAL);
	assert_non_null(strstr(shm_errmsg(), "emoji 'x\\x01' in reactions[0] "
	                                     "and [1]"));
	assert_int_equal(shm__msg_validate(&o, &dup), SHM_EINVAL);
	assert_non_null(strstr(shm_errmsg(), "reaction 'x\\x01' listed twice"));
	dup.n_reactions = 1;
	r[0].n_users = 2;
	assert_int_equal(shm__msg_validate(&o, &dup), SHM_EINVAL);
	assert_non_null(strstr(shm_errmsg(), "metadata.reactions 'x\\x01': "
	                                     "user id 7 listed twice"));
	assert_int_equal(shm_uuid_parse("ab\x01\xff\ncd", &u), SHM_EUUID);
	assert_string_equal(shm_errmsg(), "uuid 'ab\\x01\\xff\\x0acd': expected "
	                                  "8-4-4-4-12 hex digits (malformed "
	                                  "UUID)");
	assert_int_equal(shm_time_parse("2026\x1b[31m\xc3", &us), SHM_ETIME);
	assert_non_null(strstr(shm_errmsg(), "timestamp '2026\\x1b[31m\\xc3': "));
	assert_true(printable_ascii(shm_errmsg()));
	assert_int_equal(shm_msg_type_parse("Te\x7fxt\xe9", &t), SHM_ETYPE);
	assert_non_null(strstr(shm_errmsg(), "message_type 'Te\\x7fxt\\xe9': "
	                                     "not one of"));
	/* valid UTF-8 that prints stays as it is */
	assert_int_equal(shm_msg_type_parse("Texté", &t), SHM_ETYPE);
	assert_non_null(strstr(shm_errmsg(), "message_type 'Texté': "));
	/* a long one is cut, and says so */
	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = 0;
	assert_int_equal(shm_uuid_parse(big, &u), SHM_EUUID);
	assert_non_null(strstr(shm_errmsg(), "xxx...': expected 8-4-4-4-12"));
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		int rc = shm_msg_from_json(cases[i].json, strlen(cases[i].json),
		                           &m, err, sizeof err);
		if (rc == 0 || !strstr(err, cases[i].want) ||
		    !printable_ascii(err) ||
		    !strstr(shm_errmsg(), cases[i].want) ||
		    !printable_ascii(shm_errmsg()))
			fail_msg("case %zu: %d '%s', want '%s'", i, rc, err,
			         cases[i].want);
	}
	/* an emoji too long, shown as far as it shows, never cut inside a
	 * character: the name was cut at its 64th byte, half an 'é' */
	char json[512], want[256];
	int n = snprintf(json, sizeof json, "{\"room_id\":\"r\",\"user_id\":1,"
	                 "\"username\":\"u\",\"content\":\"c\",\"message_type"
	                 "\":\"Text\",\"metadata\":{\"reactions\":{\"a");
	int w = snprintf(want, sizeof want, "field 'metadata.reactions.a");
	for (int i = 0; i < 40; i++) {
		n += snprintf(json + n, sizeof json - (size_t)n, "é");
		if (i < 39)
			w += snprintf(want + w, sizeof want - (size_t)w, "é");
	}
	snprintf(json + n, sizeof json - (size_t)n, "\":[1]}}}");
	snprintf(want + w, sizeof want - (size_t)w, "\\xc3...': 81 bytes, "
	         "at most 64 allowed");
	assert_int_equal(shm_msg_from_json(json, strlen(json), &m, err,
	                                   sizeof err), SHM_ETOOBIG);
	if (!strstr(err, want))
		fail_msg("'%s', want '%s'", err, want);
}

static void test_to_json_refuses_invalid_utf8_and_bad_types(void **state)
{
	shm_msg m = full_msg();
	char *js = (char *)1;

	(void)state;
	m.content = "a\xff";
	m.content_len = 2;
	assert_int_equal(shm_msg_to_json(&m, &js, NULL), SHM_EUTF8);
	assert_null(js);
	m = full_msg();
	m.type = SHM_MSG_TYPE_COUNT;
	assert_int_equal(shm_msg_to_json(&m, &js, NULL), SHM_ETYPE);
}

/* Hostile text, byte for byte: control characters (NUL in content too),
 * quotes, backslashes, '/', DEL, non-ASCII and 4-byte UTF-8. */
static void test_to_json_escapes_hostile_strings_exactly(void **state)
{
	static const int32_t ids[] = {2147483647, -2147483647 - 1};
	shm_reaction rx[1] = {
		{.emoji = "\"\\\t😀", .user_ids = ids, .n_users = 2}};
	shm_attachment at[2] = {
		{.filename = "a\x01\x1f\x7f.png", .content_type = NULL,
		 .size = (uint64_t)INT64_MAX, .url = "\\\\srv/\"x\""},
		{.filename = "", .content_type = "ü", .size = 0, .url = "/"}};
	static const char content[] = "q\"b\\s/\b\f\n\r\t\x01\x1f\x7f"
	                              "é€😀\xf4\x8f\xbf\xbf\0z";
	shm_msg m;
	char *js;
	size_t len;

	(void)state;
	memset(&m, 0, sizeof m);
	shm_uuid_parse(ID, &m.id);
	m.room_id = "\x1b[0m";
	m.username = NULL; /* written as "" */
	m.content = content;
	m.content_len = sizeof content - 1;
	m.type = SHM_MSG_TEXT;
	m.created_at = 1;
	m.reactions = rx;
	m.n_reactions = 1;
	m.attachments = at;
	m.n_attachments = 2;
	m.content_hash = UINT64_MAX;
	assert_int_equal(shm_msg_to_json(&m, &js, &len), 0);
	static const char want[] =
		"{\"id\":\"0190a4c4-1d2e-7abc-8def-0123456789ab\","
		"\"room_id\":\"\\u001B[0m\",\"user_id\":0,\"username\":\"\","
		"\"content\":\"q\\\"b\\\\s/\\b\\f\\n\\r\\t\\u0001\\u001F\x7f"
		"é€😀\xf4\x8f\xbf\xbf\\u0000z\","
		"\"message_type\":\"Text\","
		"\"created_at\":\"1970-01-01T00:00:00.000001Z\","
		"\"updated_at\":null,\"metadata\":{\"edited\":false,"
		"\"edit_count\":0,\"reactions\":{\"\\\"\\\\\\t😀\":"
		"[2147483647,-2147483648]},\"mentions\":[],\"attachments\":["
		"{\"id\":\"00000000-0000-0000-0000-000000000000\","
		"\"filename\":\"a\\u0001\\u001F\x7f.png\",\"content_type\":\"\","
		"\"size\":9223372036854775807,\"url\":\"\\\\\\\\srv/\\\"x\\\"\"},"
		"{\"id\":\"00000000-0000-0000-0000-000000000000\","
		"\"filename\":\"\",\"content_type\":\"ü\",\"size\":0,\"url\":\"/\"}"
		"],\"reply_count\":0,\"last_reply_at\":null},"
		"\"content_hash\":\"ffffffffffffffff\",\"compressed_content\":null,"
		"\"parent_id\":null,\"thread_id\":null}";
	assert_int_equal(len, strlen(js));
	assert_string_equal(js, want);
	/* A NUL in content is written, but shm_msg_from_json refuses it. */
	shm_msg *back = (shm_msg *)1;
	assert_int_equal(shm_msg_from_json(js, len, &back, NULL, 0), SHM_ENUL);
	free(js);

	/* Without the NUL everything reads back as it was. */
	m.content_len -= 2;
	m.username = "";
	assert_int_equal(shm_msg_to_json(&m, &js, &len), 0);
	back = parse_ok(js);
	back->content_hash = m.content_hash;
	at[0].content_type = "";
	tu_assert_msg_equal(&m, back);
	char *js2;
	assert_int_equal(shm_msg_to_json(back, &js2, NULL), 0);
	assert_string_equal(js, js2);
	free(js);
	free(js2);
	shm_msg_free(back);
}

/* Every refusal names its field; the output is NULL. */
/* The writer takes what put takes: a NULL array with a count (which it
 * read through: a crash) or content with a length, and a reaction with
 * users but no emoji (a JSON key "" the reader refuses) are SHM_EINVAL,
 * naming the field, nothing appended. */
static void test_to_json_refuses_null_arrays_and_empty_emojis(void **state)
{
	static const int32_t u[] = {1};
	shm_reaction noemoji = {.emoji = NULL, .user_ids = u, .n_users = 1};
	shm_reaction empty = {.emoji = "", .user_ids = u, .n_users = 1};
	shm_reaction nousers = {.emoji = "x", .user_ids = NULL, .n_users = 2};
	static const struct {
		const char *field;
		shm_msg m;
	} bad[] = {
		{"'content': NULL with length 3", {.content_len = 3}},
		{"'metadata.reactions': NULL with 2", {.n_reactions = 2}},
		{"'metadata.mentions': NULL with 2", {.n_mentions = 2}},
		{"'metadata.attachments': NULL with 2", {.n_attachments = 2}},
	};
	char *js, *buf = NULL;
	size_t len = 0, cap = 0;
	shm_msg m;

	(void)state;
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		m = bad[i].m;
		m.room_id = "r";
		js = (char *)1;
		assert_int_equal(shm_msg_to_json(&m, &js, NULL), SHM_EINVAL);
		assert_null(js);
		if (!strstr(shm_errmsg(), bad[i].field))
			fail_msg("'%s' does not name %s", shm_errmsg(),
			         bad[i].field);
		assert_int_equal(shm_msg_metadata_json_append(&m, &buf, &len,
		                                              &cap), SHM_EINVAL);
		assert_int_equal(len, 0);
	}
	memset(&m, 0, sizeof m);
	m.room_id = "r";
	m.n_reactions = 1;
	m.reactions = &nousers;
	assert_int_equal(shm_msg_to_json(&m, &js, NULL), SHM_EINVAL);
	assert_non_null(strstr(shm_errmsg(), "'metadata.reactions[0]': NULL "
	                                     "user_ids with 2 users"));
	m.reactions = &noemoji;
	assert_int_equal(shm_msg_to_json(&m, &js, NULL), SHM_EINVAL);
	assert_non_null(strstr(shm_errmsg(), "'metadata.reactions[0]': no "
	                                     "emoji"));
	m.reactions = &empty;
	assert_int_equal(shm_msg_json_append(&m, &buf, &len, &cap, NULL, NULL),
	                 SHM_EINVAL);
	assert_int_equal(len, 0);
	free(buf);
}

static void test_to_json_refusals_name_the_field(void **state)
{
	static const char *const bad[] = {
		"\xff", "\x80", "\xc3", "\xc0\x80", "\xc1\xbf", "\xe0\x9f\xbf",
		"\xed\xa0\x80", "\xed\xbf\xbf", "\xe2\x82", "\xf0\x8f\xbf\xbf",
		"\xf4\x90\x80\x80", "\xf5\x80\x80\x80", "\xf8\x88\x80\x80\x80",
		"ok\xe2\x82\xac\xe2\x82"};
	static const int32_t u[] = {1};
	shm_reaction rx[2] = {{.emoji = "x", .user_ids = u, .n_users = 1},
	                      {.emoji = "y", .user_ids = u, .n_users = 1}};
	shm_attachment at[2] = {{.filename = "f", .url = "u"},
	                        {.filename = "f", .url = "u"}};
	shm_msg m;
	char *js;

	(void)state;
	memset(&m, 0, sizeof m);
	m.room_id = "r";
	m.username = "u";
	m.type = SHM_MSG_TEXT;
	m.created_at = 1;
	shm_uuid_v7(&m.id);
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		m.content = bad[i];
		m.content_len = (uint32_t)strlen(bad[i]);
		js = (char *)1;
		assert_int_equal(shm_msg_to_json(&m, &js, NULL), SHM_EUTF8);
		assert_null(js);
		assert_non_null(strstr(shm_errmsg(), "field 'content': invalid "
		                                     "UTF-8 at byte offset"));
	}
	assert_non_null(strstr(shm_errmsg(), "offset 5"));
	m.content = "ok";
	m.content_len = 2;
	m.room_id = "\xe2\x82";
	assert_int_equal(shm_msg_to_json(&m, &js, NULL), SHM_EUTF8);
	assert_non_null(strstr(shm_errmsg(), "field 'room_id'"));
	m.room_id = "r";
	m.username = "\xff";
	assert_int_equal(shm_msg_to_json(&m, &js, NULL), SHM_EUTF8);
	assert_non_null(strstr(shm_errmsg(), "field 'username'"));
	m.username = "u";
	m.reactions = rx;
	m.n_reactions = 2;
	rx[1].emoji = "\xc3";
	assert_int_equal(shm_msg_to_json(&m, &js, NULL), SHM_EUTF8);
	assert_non_null(strstr(shm_errmsg(), "'metadata.reactions[1] (emoji)'"));
	rx[1].emoji = "x";
	assert_int_equal(shm_msg_to_json(&m, &js, NULL), SHM_EINVAL);
	assert_non_null(strstr(shm_errmsg(), "emoji 'x' in reactions[0] and [1]"));
	rx[0].emoji = NULL; /* NULL is "", like an empty emoji */
	rx[1].emoji = "";
	assert_int_equal(shm_msg_to_json(&m, &js, NULL), SHM_EINVAL);
	m.n_reactions = 0;
	m.attachments = at;
	m.n_attachments = 2;
	at[1].url = "\xed\xa0\x80";
	assert_int_equal(shm_msg_to_json(&m, &js, NULL), SHM_EUTF8);
	assert_non_null(strstr(shm_errmsg(), "'metadata.attachments[1].url'"));
	at[1].url = "u";
	at[0].size = (uint64_t)INT64_MAX + 1;
	assert_int_equal(shm_msg_to_json(&m, &js, NULL), SHM_EINVAL);
	assert_non_null(strstr(shm_errmsg(), "'metadata.attachments[0].size'"));
	at[0].size = (uint64_t)INT64_MAX;
	assert_int_equal(shm_msg_to_json(&m, &js, NULL), 0);
	free(js);
	for (int t = -1; t < SHM_MSG_TYPE_COUNT + 3; t++) {
		m.type = (shm_msg_type)t;
		int rc = shm_msg_to_json(&m, &js, NULL);
		if (t >= 0 && t < SHM_MSG_TYPE_COUNT) {
			assert_int_equal(rc, 0);
			free(js);
		} else {
			assert_int_equal(rc, SHM_ETYPE);
			assert_null(js);
		}
	}
	assert_int_equal(shm_msg_to_json(NULL, &js, NULL), SHM_EINVAL);
	assert_int_equal(shm_msg_to_json(&m, NULL, NULL), SHM_EINVAL);
}

/* The appending form: the same bytes after what the buffer held, the
 * metadata object located, nothing appended on failure. */
static void test_json_append_appends_and_locates_metadata(void **state)
{
	shm_msg m = full_msg();
	char *buf = NULL, *js;
	size_t len = 0, cap = 0, moff = 0, mlen = 0, jlen;
	static const char meta[] =
		"{\"edited\":true,\"edit_count\":4294967295,"
		"\"reactions\":{\"a\":[9],\"👍\":[7,3]},\"mentions\":[3,-4],"
		"\"attachments\":[{\"id\":\"0190a4c4-1d2e-7abc-8def-0123456789ac\","
		"\"filename\":\"cat \\\"1\\\".png\",\"content_type\":\"image/png\","
		"\"size\":123456789012,\"url\":\"https://x.test/a/b?c=d\"}],"
		"\"reply_count\":2,\"last_reply_at\":\"2026-11-23T10:00:02Z\"}";

	(void)state;
	/* from an empty buffer */
	assert_int_equal(shm_msg_json_append(&m, &buf, &len, &cap, &moff, &mlen),
	                 0);
	assert_int_equal(len, strlen(FULL_JSON));
	assert_string_equal(buf, FULL_JSON);
	assert_true(cap > len);
	assert_int_equal(mlen, strlen(meta));
	assert_memory_equal(buf + moff, meta, mlen);
	/* after other bytes, several times: the buffer grows */
	for (int i = 0; i < 100; i++) {
		size_t before = len;
		assert_int_equal(shm_msg_json_append(&m, &buf, &len, &cap, &moff,
		                                     &mlen), 0);
		assert_int_equal(len - before, strlen(FULL_JSON));
		assert_memory_equal(buf + before, FULL_JSON, len - before);
		assert_int_equal(buf[len], '\0');
		assert_int_equal(moff, before + (strlen(FULL_JSON) - strlen(meta) -
		                                 (sizeof ",\"content_hash\":"
		                                         "\"00ab00cd00ef0012\","
		                                         "\"compressed_content\":"
		                                         "null,\"parent_id\":"
		                                         "\"0190a4c4-1d2e-7abc-8def-"
		                                         "0123456789ac\","
		                                         "\"thread_id\":\"0190a4c4-"
		                                         "1d2e-7abc-8def-"
		                                         "0123456789ab\"}" - 1)));
		assert_memory_equal(buf + moff, meta, mlen);
	}
	/* meta pointers may be NULL */
	size_t before = len;
	assert_int_equal(shm_msg_json_append(&m, &buf, &len, &cap, NULL, NULL),
	                 0);
	assert_string_equal(buf + before, FULL_JSON);
	/* failure: nothing appended, still NUL-terminated */
	before = len;
	m.content = "bad \xff";
	m.content_len = 5;
	moff = mlen = 77;
	assert_int_equal(shm_msg_json_append(&m, &buf, &len, &cap, &moff, &mlen),
	                 SHM_EUTF8);
	assert_int_equal(len, before);
	assert_int_equal(buf[len], '\0');
	assert_int_equal(moff, 0); /* out-parameters: 0 after a failure */
	assert_int_equal(mlen, 0);
	m = full_msg();
	m.attachments = NULL; /* reactions and mentions written, then refused */
	m.n_attachments = 0;
	shm_reaction rx2[2];
	memcpy(rx2, m.reactions, sizeof rx2);
	m.reactions = rx2;
	rx2[1].emoji = "\xff";
	assert_int_equal(shm_msg_json_append(&m, &buf, &len, &cap, NULL, NULL),
	                 SHM_EUTF8);
	assert_int_equal(len, before);
	assert_int_equal(buf[len], '\0');
	m = full_msg();
	/* a long content makes it grow past its capacity */
	size_t big = 3 * cap;
	char *c = malloc(big);
	memset(c, '\n', big);
	m.content = c;
	m.content_len = (uint32_t)big;
	assert_int_equal(shm_msg_json_append(&m, &buf, &len, &cap, &moff, &mlen),
	                 0);
	assert_int_equal(shm_msg_to_json(&m, &js, &jlen), 0);
	assert_int_equal(len - before, jlen);
	assert_memory_equal(buf + before, js, jlen);
	assert_memory_equal(buf + moff, meta, mlen);
	assert_true(jlen > 2 * big);
	free(js);
	free(c);
	free(buf);
	/* bad arguments */
	buf = NULL;
	len = 1;
	cap = 0;
	assert_int_equal(shm_msg_json_append(&m, &buf, &len, &cap, NULL, NULL),
	                 SHM_EINVAL);
	assert_int_equal(shm_msg_json_append(NULL, &buf, &len, &cap, NULL, NULL),
	                 SHM_EINVAL);
}

/* The metadata object alone: the bytes the whole JSON holds at meta_off,
 * appended and taken back the same way. */
static void test_metadata_json_append_is_the_whole_jsons_object(void **state)
{
	shm_msg m = full_msg();
	char *buf = NULL, *meta = NULL;
	size_t len = 0, cap = 0, mlen = 0, mcap = 0, moff = 0, mol = 0;

	(void)state;
	assert_int_equal(shm_msg_json_append(&m, &buf, &len, &cap, &moff, &mol),
	                 0);
	assert_int_equal(shm_msg_metadata_json_append(&m, &meta, &mlen, &mcap),
	                 0);
	assert_int_equal(mlen, mol);
	assert_memory_equal(meta, buf + moff, mol);
	assert_int_equal(shm_msg_metadata_json_append(&m, &meta, &mlen, &mcap),
	                 0);
	assert_int_equal(mlen, 2 * mol);
	assert_memory_equal(meta + mol, buf + moff, mol);
	/* content is not part of it; metadata's strings are checked */
	m.content = "bad \xff";
	m.content_len = 5;
	assert_int_equal(shm_msg_metadata_json_append(&m, &meta, &mlen, &mcap),
	                 0);
	m = full_msg();
	shm_reaction rx2[2];
	memcpy(rx2, m.reactions, sizeof rx2);
	m.reactions = rx2;
	rx2[1].emoji = "\xff";
	mlen = mol;
	assert_int_equal(shm_msg_metadata_json_append(&m, &meta, &mlen, &mcap),
	                 SHM_EUTF8);
	assert_int_equal(mlen, mol);
	assert_int_equal(meta[mlen], '\0');
	assert_int_equal(shm_msg_metadata_json_append(NULL, &meta, &mlen, &mcap),
	                 SHM_EINVAL);
	free(buf);
	free(meta);
}

/* The writer puts reactions in emoji byte order whatever the struct's
 * order, as put stores them: one message, one JSON. A refusal still names
 * the caller's index. */
static void test_to_json_writes_reactions_sorted_by_emoji(void **state)
{
	shm_msg m = full_msg();
	shm_reaction rev[2] = {m.reactions[1], m.reactions[0]};
	char *js, *meta = NULL;
	size_t mlen = 0, mcap = 0;

	(void)state;
	m.reactions = rev;
	assert_int_equal(shm_msg_to_json(&m, &js, NULL), 0);
	assert_string_equal(js, FULL_JSON);
	free(js);
	assert_int_equal(shm_msg_metadata_json_append(&m, &meta, &mlen, &mcap),
	                 0);
	assert_non_null(strstr(meta, "\"reactions\":{\"a\":[9],"
	                             "\"👍\":[7,3]}"));
	free(meta);
	assert_string_equal(rev[0].emoji, "👍"); /* the caller's order kept */
	rev[0].emoji = "\xff";
	assert_int_equal(shm_msg_to_json(&m, &js, NULL), SHM_EUTF8);
	assert_non_null(strstr(shm_errmsg(), "'metadata.reactions[0] (emoji)'"));
	rev[0].emoji = "a";
	assert_int_equal(shm_msg_to_json(&m, &js, NULL), SHM_EINVAL);
	assert_non_null(strstr(shm_errmsg(), "emoji 'a' in reactions[0] and [1]"));

	/* more reactions than the writer orders on its stack */
	static const int32_t one[] = {1};
	shm_reaction many[40];
	char em[40][4], *at, *prev;
	for (int i = 0; i < 40; i++) {
		snprintf(em[i], sizeof em[i], "%02d", 39 - i);
		many[i] = (shm_reaction){.emoji = em[i], .user_ids = one,
		                         .n_users = 1};
	}
	m.reactions = many;
	m.n_reactions = 40;
	assert_int_equal(shm_msg_to_json(&m, &js, NULL), 0);
	prev = js;
	for (int i = 0; i < 40; i++) {
		char key[12];
		snprintf(key, sizeof key, "\"%02d\":[1]", i);
		assert_non_null(at = strstr(js, key));
		assert_true(at > prev);
		prev = at;
	}
	free(js);
	many[0].emoji = em[39];
	assert_int_equal(shm_msg_to_json(&m, &js, NULL), SHM_EINVAL);
	assert_non_null(strstr(shm_errmsg(), "emoji '00' in reactions[0] and [39]"));
}

/* A reaction without users is no reaction: the reader drops it, the
 * writer skips it, so "no reaction x" has one JSON. */
static void test_a_reaction_without_users_is_no_reaction(void **state)
{
	static const int32_t u[] = {4};
	shm_reaction rx[3] = {{.emoji = "x"}, {.emoji = "y", .user_ids = u,
	                                       .n_users = 1}, {.emoji = "z"}};
	shm_msg m = full_msg(), *back;
	char *js, *meta = NULL;
	size_t mlen = 0, mcap = 0;

	(void)state;
	m.reactions = rx;
	m.n_reactions = 3;
	assert_int_equal(shm_msg_to_json(&m, &js, NULL), 0);
	assert_non_null(strstr(js, "\"reactions\":{\"y\":[4]},"));
	back = parse_ok(js);
	assert_int_equal(back->n_reactions, 1);
	shm_msg_free(back);
	free(js);
	assert_int_equal(shm_msg_metadata_json_append(&m, &meta, &mlen, &mcap),
	                 0);
	assert_non_null(strstr(meta, "\"reactions\":{\"y\":[4]},"));
	free(meta);
	m.n_reactions = 1; /* x alone */
	assert_int_equal(shm_msg_to_json(&m, &js, NULL), 0);
	assert_non_null(strstr(js, "\"reactions\":{},"));
	free(js);
	back = parse_ok("{\"room_id\":\"r\",\"user_id\":1,\"username\":\"u\","
	                "\"content\":\"c\",\"message_type\":\"Text\","
	                "\"metadata\":{\"reactions\":{\"x\":[],\"w\":[]}}}");
	assert_int_equal(back->n_reactions, 0);
	assert_one_block(back);
	shm_msg_free(back);
}

/* JSON string escaping, written independently of libshm/json_write.c. */
static size_t ref_escape(char *d, const char *s, size_t len)
{
	char *p = d;

	*p++ = '"';
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		const char *e = c == '"' ? "\\\"" : c == '\\' ? "\\\\"
		              : c == '\b' ? "\\b" : c == '\f' ? "\\f"
		              : c == '\n' ? "\\n" : c == '\r' ? "\\r"
		              : c == '\t' ? "\\t" : NULL;
		if (e)
			p += sprintf(p, "%s", e);
		else if (c < 0x20)
			p += sprintf(p, "\\u%04X", c);
		else
			*p++ = (char)c;
	}
	*p++ = '"';
	*p = '\0';
	return (size_t)(p - d);
}

/* Random messages with hostile (valid) text in every field: the text
 * fields are escaped as the reference says, and the JSON reads back into
 * the same message and is written again into the same bytes. */
static void test_to_json_random_round_trips(void **state)
{
	static const char *const pieces[] = {
		"a", "é", "😀", "\"", "\\", "/", "\n", "\t", "\x01", "\x1f",
		"\x7f", "€", " ", "\b", "\f", "\r", "\xf4\x8f\xbf\xbf", "Z"};
	const size_t np = sizeof pieces / sizeof *pieces;
	unsigned seed = 12345;
	char room[64], user[64], content[256], em[3][24], fn[32], url[32];
	char want[2048], *js, *js2;
	size_t len;

	(void)state;
	for (int iter = 0; iter < 20000; iter++) {
		char *fields[] = {room, user, content, em[0], em[1], em[2], fn, url};
		size_t caps[] = {sizeof room, sizeof user, sizeof content,
		                 sizeof em[0], sizeof em[0], sizeof em[0],
		                 sizeof fn, sizeof url};
		int32_t ids[8], mentions[8];
		shm_reaction rx[3];
		shm_attachment at[2];
		shm_msg m;

		for (size_t f = 0; f < 8; f++) {
			size_t n = 0, k = (size_t)(rand_r(&seed) % 10);
			/* room_id and emojis must not be empty; emojis are
			 * distinct and sorted, as shm_msg_from_json gives them */
			if (f == 0 || (f >= 3 && f <= 5)) {
				fields[f][0] = (char)(f == 0 ? 'r' : '0' + (char)f);
				fields[f][1] = 0;
				n = 1;
			} else {
				fields[f][0] = 0;
			}
			for (size_t i = 0; i < k; i++) {
				const char *s = pieces[rand_r(&seed) % np];
				if (n + strlen(s) + 1 >= caps[f])
					break;
				memcpy(fields[f] + n, s, strlen(s) + 1);
				n += strlen(s);
			}
		}
		for (int i = 0; i < 8; i++) {
			ids[i] = (int32_t)(rand_r(&seed) % 1000) * 8 + i;
			if (rand_r(&seed) % 2)
				ids[i] = -ids[i] - 1;
			mentions[i] = rand_r(&seed) - RAND_MAX / 2;
		}
		memset(&m, 0, sizeof m);
		for (int i = 0; i < 16; i++)
			m.id.b[i] = (uint8_t)rand_r(&seed);
		m.room_id = room;
		m.username = user;
		m.user_id = ids[0];
		m.content = content;
		m.content_len = (uint32_t)strlen(content);
		m.type = (shm_msg_type)(rand_r(&seed) % SHM_MSG_TYPE_COUNT);
		m.created_at = 1 + (int64_t)rand_r(&seed) * 1000003;
		m.updated_at = rand_r(&seed) % 2 ? 0 : m.created_at + 17;
		m.edited = rand_r(&seed) % 2;
		m.edit_count = (uint32_t)rand_r(&seed) * 3;
		m.n_reactions = (uint32_t)(rand_r(&seed) % 4);
		for (uint32_t i = 0; i < m.n_reactions; i++)
			rx[i] = (shm_reaction){
				.emoji = em[i], .user_ids = ids, /* 1..8 users:
				   one with none is no reaction (below) */
				.n_users = 1 + (uint32_t)(rand_r(&seed) % 8)};
		m.reactions = rx;
		m.mentions = mentions;
		m.n_mentions = (uint32_t)(rand_r(&seed) % 9);
		m.n_attachments = (uint32_t)(rand_r(&seed) % 3);
		for (uint32_t i = 0; i < m.n_attachments; i++) {
			at[i] = (shm_attachment){
				.filename = fn, .content_type = i ? user : room,
				.size = (uint64_t)rand_r(&seed) << (iter % 33),
				.url = url};
			for (int k = 0; k < 16; k++)
				at[i].id.b[k] = (uint8_t)rand_r(&seed);
		}
		m.attachments = at;
		m.reply_count = (uint32_t)rand_r(&seed);
		m.last_reply_at = rand_r(&seed) % 2 ? 0 : m.created_at + 99;
		m.content_hash = (uint64_t)rand_r(&seed) << 33 ^
		                 (uint64_t)rand_r(&seed);
		m.has_parent = rand_r(&seed) % 2;
		m.has_thread = rand_r(&seed) % 2;
		for (int k = 0; k < 16; k++) {
			m.parent_id.b[k] = (uint8_t)rand_r(&seed);
			m.thread_id.b[k] = (uint8_t)rand_r(&seed);
		}

		assert_int_equal(shm_msg_to_json(&m, &js, &len), 0);
		assert_int_equal(len, strlen(js));
		/* each text field as the reference escapes it, in place */
		char *w = want + sprintf(want, ",\"room_id\":");
		w += ref_escape(w, room, strlen(room));
		w += sprintf(w, ",\"user_id\":%d,\"username\":", (int)m.user_id);
		w += ref_escape(w, user, strlen(user));
		w += sprintf(w, ",\"content\":");
		w += ref_escape(w, content, m.content_len);
		sprintf(w, ",\"message_type\":\"%s\"",
		        shm_msg_type_name(m.type));
		if (!strstr(js, want)) {
			fprintf(stderr, "iter %d: want %s\nin %s\n", iter, want, js);
			fail();
		}
		for (uint32_t i = 0; i < m.n_attachments; i++) {
			w = want + sprintf(want, ",\"filename\":");
			w += ref_escape(w, fn, strlen(fn));
			w += sprintf(w, ",\"content_type\":");
			w += ref_escape(w, at[i].content_type,
			                strlen(at[i].content_type));
			w += sprintf(w, ",\"size\":%llu,\"url\":",
			             (unsigned long long)at[i].size);
			w += ref_escape(w, url, strlen(url));
			assert_non_null(strstr(js, want));
		}
		for (uint32_t i = 0; i < m.n_reactions; i++) {
			w = want;
			w += ref_escape(w, em[i], strlen(em[i]));
			sprintf(w, ":[");
			assert_non_null(strstr(js, want));
		}
		/* reads back into the same message, written the same again */
		shm_msg *back = parse_ok(js);
		back->content_hash = m.content_hash;
		tu_assert_msg_equal(&m, back);
		assert_int_equal(shm_msg_to_json(back, &js2, NULL), 0);
		assert_string_equal(js, js2);
		free(js);
		free(js2);
		shm_msg_free(back);
	}
}

static void test_json_survives_put_and_get(void **state)
{
	char *dir = tu_tmpdir();
	shm_env *env = tu_open(dir, NULL);
	shm_msg *in = parse_ok(FULL_JSON), *out;
	char *js;

	(void)state;
	/* the JSON sample's parent is not in L1: keep it simple (its
	 * thread_id, its own id, is the seed's to have) */
	in->has_parent = false;
	assert_int_equal(shm_msg_put(env, in), 0);
	assert_int_equal(shm_msg_get(env, &in->id, &out), 0);
	tu_assert_msg_equal(in, out);
	assert_int_not_equal(out->content_hash, 0);
	assert_int_equal(shm_msg_to_json(out, &js, NULL), 0);
	shm_msg *again = parse_ok(js);
	again->content_hash = out->content_hash;
	tu_assert_msg_equal(out, again);
	free(js);
	shm_msg_free(again);
	shm_msg_free(out);
	shm_msg_free(in);
	assert_int_equal(tu_verify(env), 0);
	shm_env_close(env);
	tu_rmdir(dir);
	free(dir);
}

/* shmctl import's path: parse a line, then put it. */
static int import_line(shm_env *env, const char *line)
{
	shm_msg *m;
	int rc = shm_msg_from_json(line, strlen(line), &m, NULL, 0);

	if (rc == 0) {
		rc = shm_msg_put(env, m);
		shm_msg_free(m);
	}
	return rc;
}

#define LINE "{\"room_id\":\"r\",\"user_id\":1,\"username\":\"u\"," \
             "\"content\":\"c\",\"message_type\":\"Text\""
#define LINE_AT(created) LINE ",\"created_at\":\"" created "\"}"
#define LINE_MD(md) LINE ",\"metadata\":{" md "}}"
#define ATT(size)                                                              \
	"\"attachments\":[{\"id\":\"0190a4c4-1d2e-7abc-8def-0123456789ab\","   \
	"\"filename\":\"f\",\"content_type\":\"t\",\"size\":" size            \
	",\"url\":\"u\"}]"

/* Put and import accept and refuse the same messages: what put stores,
 * JSON carries back (get, dump, the flusher's Redis and PostgreSQL). */
static void test_put_and_import_refuse_what_json_cannot_carry(void **state)
{
	char *dir = tu_tmpdir();
	shm_env *env = tu_open(dir, NULL);
	int32_t dup[] = {4, 4};
	shm_reaction re = {"x", dup, 2};
	shm_attachment at = {.filename = "f", .content_type = "t", .url = "u",
	                     .size = (uint64_t)INT64_MAX + 1};
	shm_msg m;

	(void)state;
	/* 10000-01-01T13:59:59Z in UTC */
	assert_int_equal(import_line(env, LINE_AT("9999-12-31T23:59:59-14:00")),
	                 SHM_ETIME);
	m = tu_msg("r", 1, "c");
	m.created_at = 253402351199000000;
	assert_int_equal(shm_msg_put(env, &m), SHM_ETIME);
	assert_int_equal(import_line(env, LINE_MD("\"reactions\":{\"x\":[4,4]}")),
	                 SHM_EJSON);
	m = tu_msg("r", 1, "c");
	m.reactions = &re;
	m.n_reactions = 1;
	assert_int_equal(shm_msg_put(env, &m), SHM_EINVAL);
	assert_int_equal(import_line(env, LINE_MD(ATT("9223372036854775808"))),
	                 SHM_EJSON);
	m = tu_msg("r", 1, "c");
	m.attachments = &at;
	m.n_attachments = 1;
	assert_int_equal(shm_msg_put(env, &m), SHM_EINVAL);
	assert_int_equal(tu_log_count(env), 0);

	/* the limits go through both ways and come back unchanged */
	static const char *const ok[] = {
		LINE_AT("9999-12-31T23:59:59.999999Z"),
		LINE_AT("9999-12-31T09:59:59.999999-14:00"),
		LINE_MD("\"last_reply_at\":\"9999-12-31T23:59:59.999999Z\"," ATT(
			"9223372036854775807") ",\"reactions\":{\"x\":[4,9]}"),
	};
	for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
		shm_msg *in = parse_ok(ok[i]), *out, *back;
		char *js;
		assert_int_equal(shm_msg_put(env, in), 0);
		assert_int_equal(shm_msg_get(env, &in->id, &out), 0);
		assert_int_equal(shm_msg_to_json(out, &js, NULL), 0);
		back = parse_ok(js);
		back->content_hash = out->content_hash;
		tu_assert_msg_equal(out, back);
		free(js);
		shm_msg_free(back);
		shm_msg_free(out);
		shm_msg_free(in);
	}
	assert_int_equal(tu_verify(env), 0);
	shm_env_close(env);
	tu_rmdir(dir);
	free(dir);
}

/* Writer, reader and put take one range of times, 1970 (the epoch itself
 * is none) to 9999 in UTC: a time one refuses, the others refuse too,
 * naming the field and the value, and a time one takes comes back
 * through the others unchanged. The reader used to take times before
 * 1970, which put refused, and the writer to write times before 1970 and
 * after 9999 (as "+10000-..."), which the reader refused. */
static void test_writer_reader_and_put_agree_on_the_range_of_times(
	void **state)
{
	static const struct {
		int64_t us;
		bool ok;
		const char *why; /* a piece of the refusal's text */
	} cases[] = {
		{INT64_MIN, false, "is before 1970"},
		{-62167219200000000, false, "(0000-01-01T00:00:00Z) is before"},
		{-1, false, "-1 us (1969-12-31T23:59:59.999999Z) is before 1970"},
		{1, true, NULL},
		{1795428000000000, true, NULL},
		{253402300799999999, true, NULL},
		{253402300800000000, false, "(+10000-01-01T00:00:00Z) is after"},
		{INT64_MAX, false, "is after 9999"},
	};
	static const char *const fields[] = {"created_at", "updated_at",
	                                     "metadata.last_reply_at"};
	char *dir = tu_tmpdir();
	shm_env *env = tu_open(dir, NULL);
	char ts[40], json[512], err[256], *js, *buf = NULL;
	size_t len = 0, cap = 0;

	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		for (int f = 0; f < 3; f++) {
			shm_msg m = tu_msg("r", 1, "c"), *back;
			int64_t *t = f == 0 ? &m.created_at
			           : f == 1 ? &m.updated_at : &m.last_reply_at;
			m.created_at = 1795428000000000;
			*t = cases[i].us;
			shm_uuid_v7(&m.id);
			/* the writer */
			int rc = shm_msg_to_json(&m, &js, NULL);
			if (cases[i].ok) {
				assert_int_equal(rc, 0);
				/* the reader takes back what it wrote */
				back = parse_ok(js);
				assert_int_equal(f == 0 ? back->created_at
				                 : f == 1 ? back->updated_at
				                          : back->last_reply_at,
				                 cases[i].us);
				/* and put stores it */
				assert_int_equal(shm_msg_put(env, back), 0);
				shm_msg_free(back);
				free(js);
				continue;
			}
			assert_int_equal(rc, SHM_ETIME);
			assert_null(js);
			char want[64];
			snprintf(want, sizeof want, "shm_msg_to_json: field '%s': ",
			         fields[f]);
			if (!strstr(shm_errmsg(), want) ||
			    !strstr(shm_errmsg(), cases[i].why))
				fail_msg("writer: '%s' names neither %s nor %s",
				         shm_errmsg(), fields[f], cases[i].why);
			if (f == 2) {
				rc = shm_msg_metadata_json_append(&m, &buf, &len,
				                                  &cap);
				assert_int_equal(rc, SHM_ETIME);
				assert_int_equal(len, 0);
				assert_non_null(strstr(shm_errmsg(), fields[f]));
			}
			/* put */
			assert_int_equal(shm_msg_put(env, &m), SHM_ETIME);
			assert_non_null(strstr(shm_errmsg(), fields[f]));
			assert_non_null(strstr(shm_errmsg(), cases[i].why));
			/* the reader, given the time as RFC 3339 */
			shm_time_format(cases[i].us, ts);
			snprintf(json, sizeof json, f == 2 ? LINE_MD(
			         "\"last_reply_at\":\"%s\"") : f == 0 ?
			         LINE ",\"created_at\":\"%s\"}" :
			         LINE ",\"updated_at\":\"%s\"}", ts);
			back = (shm_msg *)1;
			rc = shm_msg_from_json(json, strlen(json), &back, err,
			                       sizeof err);
			assert_int_equal(rc, SHM_ETIME);
			assert_null(back);
			snprintf(want, sizeof want, "field '%s': ", fields[f]);
			if (!strstr(err, want) || !strstr(err, ts + (ts[0] == '+' ||
			                                            ts[0] == '-')))
				fail_msg("reader: '%s' names neither %s nor %s", err,
				         fields[f], ts);
		}
	}
	/* created_at 0 is none: put fills it in, JSON cannot carry it */
	static const char epoch[] = LINE_AT("1970-01-01T00:00:00Z");
	shm_msg m = tu_msg("r", 1, "c"), *none;
	assert_int_equal(shm_msg_to_json(&m, &js, NULL), SHM_ETIME);
	assert_non_null(strstr(shm_errmsg(), "field 'created_at': 0 is no time"));
	/* the appending form too (shm_log.h), appending nothing */
	len = 0;
	assert_int_equal(shm_msg_json_append(&m, &buf, &len, &cap, NULL, NULL),
	                 SHM_ETIME);
	assert_int_equal(len, 0);
	assert_non_null(strstr(shm_errmsg(), "field 'created_at': 0 is no time"));
	assert_int_equal(shm_msg_from_json(epoch, strlen(epoch), &none, NULL, 0),
	                 SHM_ETIME);
	free(buf);
	assert_int_equal(tu_verify(env), 0);
	shm_env_close(env);
	tu_rmdir(dir);
	free(dir);
}

/* A nil id is none to the reader (put makes a new one), so the writer does
 * not write it: what one writes the other takes back. */
static void test_writer_refuses_the_nil_id_the_reader_refuses(void **state)
{
	static const char nil_line[] =
		"{\"id\":\"00000000-0000-0000-0000-000000000000\","
		"\"room_id\":\"r\",\"user_id\":1,\"username\":\"u\","
		"\"content\":\"c\",\"message_type\":\"Text\"}";
	shm_msg m = tu_msg("r", 1, "c"), *back = (shm_msg *)1;
	char *js = (char *)1, *buf = NULL, err[256];
	size_t len = 0, cap = 0;

	(void)state;
	m.created_at = 1795428000000000;
	assert_int_equal(shm_msg_to_json(&m, &js, NULL), SHM_EUUID);
	assert_null(js);
	assert_non_null(strstr(shm_errmsg(), "shm_msg_to_json: field 'id': "
	                                     "the nil UUID"));
	/* the appending form too (shm_log.h), appending nothing */
	assert_int_equal(shm_msg_json_append(&m, &buf, &len, &cap, NULL, NULL),
	                 SHM_EUUID);
	assert_int_equal(len, 0);
	assert_non_null(strstr(shm_errmsg(), "field 'id': the nil UUID"));
	/* the metadata alone has no id: written */
	assert_int_equal(shm_msg_metadata_json_append(&m, &buf, &len, &cap), 0);
	assert_true(len > 0);
	free(buf);
	/* the reader refuses what the writer would have written */
	assert_int_equal(shm_msg_from_json(nil_line, strlen(nil_line), &back,
	                                   err, sizeof err),
	                 SHM_EUUID);
	assert_null(back);
	assert_non_null(strstr(err, "field 'id': the nil UUID"));
	/* any other id goes both ways */
	shm_uuid_v7(&m.id);
	assert_int_equal(shm_msg_to_json(&m, &js, NULL), 0);
	back = parse_ok(js);
	assert_memory_equal(&back->id, &m.id, sizeof m.id);
	shm_msg_free(back);
	free(js);
}

/* A nil parent_id or thread_id names no message: the reader refuses it,
 * so the writer does not write it, appending nothing; a real link goes
 * both ways. */
static void test_writer_refuses_a_nil_link_the_reader_refuses(void **state)
{
	static const char *const field[] = {"parent_id", "thread_id"};
	shm_msg m = tu_msg("r", 1, "c"), *back;
	char *js, *buf = NULL, err[256], line[512];
	size_t len, before, cap = 0;

	(void)state;
	m.created_at = 1795428000000000;
	shm_uuid_v7(&m.id);
	for (size_t i = 0; i < 2; i++) {
		char want[64];
		m.has_parent = i == 0;
		m.has_thread = i == 1;
		memset(&m.parent_id, 0, sizeof m.parent_id);
		memset(&m.thread_id, 0, sizeof m.thread_id);
		snprintf(want, sizeof want, "field '%s': the nil UUID",
		         field[i]);
		js = (char *)1;
		assert_int_equal(shm_msg_to_json(&m, &js, NULL), SHM_EUUID);
		assert_null(js);
		assert_non_null(strstr(shm_errmsg(), "shm_msg_to_json: "));
		assert_non_null(strstr(shm_errmsg(), want));
		/* the appending form appends nothing after what was there */
		len = 0;
		m.has_parent = m.has_thread = false;
		assert_int_equal(shm_msg_json_append(&m, &buf, &len, &cap,
		                                     NULL, NULL), 0);
		before = len;
		m.has_parent = i == 0;
		m.has_thread = i == 1;
		assert_int_equal(shm_msg_json_append(&m, &buf, &len, &cap,
		                                     NULL, NULL), SHM_EUUID);
		assert_int_equal(len, before);
		assert_non_null(strstr(shm_errmsg(), want));
		/* the reader refuses what the writer would have written */
		snprintf(line, sizeof line,
		         "{\"room_id\":\"r\",\"user_id\":1,\"username\":\"u\","
		         "\"content\":\"c\",\"message_type\":\"Text\","
		         "\"%s\":\"00000000-0000-0000-0000-000000000000\"}",
		         field[i]);
		back = (shm_msg *)1;
		assert_int_equal(shm_msg_from_json(line, strlen(line), &back,
		                                   err, sizeof err),
		                 SHM_EUUID);
		assert_null(back);
		assert_non_null(strstr(err, want));
		/* any other link goes both ways */
		shm_uuid_v7(i == 0 ? &m.parent_id : &m.thread_id);
		assert_int_equal(shm_msg_to_json(&m, &js, NULL), 0);
		back = parse_ok(js);
		assert_true(i == 0 ? back->has_parent : back->has_thread);
		assert_memory_equal(i == 0 ? &back->parent_id : &back->thread_id,
		                    i == 0 ? &m.parent_id : &m.thread_id, 16);
		shm_msg_free(back);
		free(js);
	}
	free(buf);
}

/* shmctl import of serde JSON (a HashMap: any key order) puts reactions
 * sorted; get, and the JSON of get, have them in that order. */
static void test_import_of_reactions_in_any_order_reads_back_sorted(
	void **state)
{
	char *dir = tu_tmpdir();
	shm_env *env = tu_open(dir, NULL);
	shm_msg *in = parse_ok(LINE_MD("\"reactions\":{\"👍\":[7,3],"
	                               "\"🎉\":[4],\"a\":[9,1]}")),
		*out;
	char *js;

	(void)state;
	assert_int_equal(shm_msg_put(env, in), 0);
	assert_int_equal(shm_msg_get(env, &in->id, &out), 0);
	assert_int_equal(out->n_reactions, 3);
	assert_string_equal(out->reactions[0].emoji, "a");
	assert_string_equal(out->reactions[1].emoji, "🎉");
	assert_string_equal(out->reactions[2].emoji, "👍");
	assert_int_equal(shm_msg_to_json(out, &js, NULL), 0);
	assert_non_null(strstr(js, "\"reactions\":{\"a\":[9,1],\"🎉\":[4],"
	                           "\"👍\":[7,3]}"));
	free(js);
	shm_msg_free(out);
	shm_msg_free(in);
	shm_env_close(env);
	tu_rmdir(dir);
	free(dir);
}

/* ---------------------------------------------------------------- time */

static void test_time_format_uses_chrono_auto_si(void **state)
{
	static const struct {
		int64_t us;
		const char *s;
	} cases[] = {
		{0, "1970-01-01T00:00:00Z"},
		{1, "1970-01-01T00:00:00.000001Z"},
		{1000, "1970-01-01T00:00:00.001Z"},
		{1500, "1970-01-01T00:00:00.001500Z"},
		{999999, "1970-01-01T00:00:00.999999Z"},
		{-1, "1969-12-31T23:59:59.999999Z"},
		{-1000000, "1969-12-31T23:59:59Z"},
		{1795428000000000, "2026-11-23T10:00:00Z"},
		{1795428000123000, "2026-11-23T10:00:00.123Z"},
		{1795428000123456, "2026-11-23T10:00:00.123456Z"},
		{951782400000000, "2000-02-29T00:00:00Z"},
		{-62135596800000000, "0001-01-01T00:00:00Z"},
		{-62167219200000000, "0000-01-01T00:00:00Z"},
		{253402300799999999, "9999-12-31T23:59:59.999999Z"},
		{253402300800000000, "+10000-01-01T00:00:00Z"},
		{-62167219200000001, "-0001-12-31T23:59:59.999999Z"},
	};
	char buf[40];

	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		shm_time_format(cases[i].us, buf);
		assert_string_equal(buf, cases[i].s);
	}
	shm_time_format(INT64_MAX, buf);
	assert_true(strlen(buf) < 40);
	shm_time_format(INT64_MIN, buf);
	assert_true(strlen(buf) < 40);
}

static void test_time_parse_accepts_rfc3339_offsets_and_fractions(
	void **state)
{
	static const struct {
		const char *s;
		int64_t us;
	} cases[] = {
		{"2026-11-23T10:00:00Z", 1795428000000000},
		{"2026-11-23t10:00:00z", 1795428000000000},
		{"2026-11-23 10:00:00Z", 1795428000000000},
		{"2026-11-23T11:00:00+01:00", 1795428000000000},
		{"2026-11-23T04:30:00-05:30", 1795428000000000},
		{"2026-11-23T10:00:00+00:00", 1795428000000000},
		{"2026-11-23T10:00:00-00:00", 1795428000000000},
		{"2026-11-23T10:00:00.1Z", 1795428000100000},
		{"2026-11-23T10:00:00.123Z", 1795428000123000},
		{"2026-11-23T10:00:00.123456Z", 1795428000123456},
		{"2026-11-23T10:00:00.1234567Z", 1795428000123456},
		{"2026-11-23T10:00:00.123456999Z", 1795428000123456},
		{"2026-11-23T10:00:00.000000001Z", 1795428000000000},
		{"1970-01-01T00:00:00Z", 0},
		{"1969-12-31T23:59:59.999999Z", -1},
		{"2000-02-29T00:00:00Z", 951782400000000},
		{"0000-01-01T00:00:00Z", -62167219200000000},
		{"9999-12-31T23:59:59.999999Z", 253402300799999999},
		{"9999-12-31T09:59:59.999999-14:00", 253402300799999999},
		{"0000-01-01T00:00:00-00:01", -62167219200000000 + 60000000},
		{"2026-12-31T23:59:59+23:59", 1798761599000000 - 86340000000},
	};

	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		int64_t us = 42;
		int rc = shm_time_parse(cases[i].s, &us);
		if (rc)
			fprintf(stderr, "%s: %s\n", cases[i].s, shm_errmsg());
		assert_int_equal(rc, 0);
		assert_int_equal(us, cases[i].us);
	}
}

static void test_time_parse_rejects_malformed_with_the_input_named(
	void **state)
{
	static const struct {
		const char *s, *why;
	} cases[] = {
		{"", "expected RFC 3339 date"},
		{"nope", "expected RFC 3339 date"},
		{"2026-11-23", "expected 'T'"},
		{"2026-11-23T10:00Z", "expected time HH:MM:SS"},
		{"2026-11-23T10:00:00", "expected 'Z' or an offset"},
		{"26-11-23T10:00:00Z", "expected RFC 3339 date"},
		{"2026-1-23T10:00:00Z", "expected RFC 3339 date"},
		{"2026-00-23T10:00:00Z", "month out of range"},
		{"2026-13-23T10:00:00Z", "month out of range"},
		{"2026-11-00T10:00:00Z", "day out of range"},
		{"2026-11-31T10:00:00Z", "day out of range"},
		{"2026-02-29T10:00:00Z", "day out of range"},
		{"1900-02-29T10:00:00Z", "day out of range"},
		{"2026-11-23T24:00:00Z", "hour out of range"},
		{"2026-11-23T10:60:00Z", "minute out of range"},
		{"2026-11-23T10:00:60Z", "leap seconds"},
		{"2026-11-23T10:00:61Z", "second out of range"},
		{"2026-11-23T10:00:00.Z", "no digit after '.'"},
		{"2026-11-23T10:00:00.1234567890Z", "more than 9 fraction digits"},
		{"2026-11-23T10:00:00+0100", "expected offset"},
		{"2026-11-23T10:00:00+24:00", "offset out of range"},
		{"2026-11-23T10:00:00+01:60", "offset out of range"},
		{"2026-11-23T10:00:00ZZ", "trailing characters"},
		{"2026-11-23T10:00:00Z ", "trailing characters"},
		{" 2026-11-23T10:00:00Z", "expected RFC 3339 date"},
		{"+2026-11-23T10:00:00Z", "expected RFC 3339 date"},
		{"2026-11-23X10:00:00Z", "expected 'T'"},
		/* formatted back, these would need a five-digit or signed year */
		{"9999-12-31T23:59:59-14:00", "after 9999-12-31T23:59:59.999999Z"},
		{"9999-12-31T23:59:59.999999-00:01", "after 9999-12-31"},
		{"0000-01-01T00:00:00+00:01", "before 0000-01-01T00:00:00Z"},
	};

	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		int64_t us = 0;
		assert_int_equal(shm_time_parse(cases[i].s, &us), SHM_ETIME);
		const char *msg = shm_errmsg();
		char quoted[80];
		snprintf(quoted, sizeof quoted, "'%s'", cases[i].s);
		if (!strstr(msg, cases[i].why) || !strstr(msg, quoted)) {
			fprintf(stderr, "%s: %s\n", cases[i].s, msg);
			fail();
		}
	}
	assert_int_equal(shm_time_parse(NULL, NULL), SHM_EINVAL);
}

static void test_time_format_parse_round_trip(void **state)
{
	uint64_t x = 0x9e3779b97f4a7c15ull;
	char buf[40];

	(void)state;
	for (int i = 0; i < 100000; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		/* years 0000..9999 */
		int64_t us = (int64_t)(x % 315537897600000000ull) -
		             62167219200000000;
		if (i % 3 == 0)
			us -= us % 1000000;
		else if (i % 3 == 1)
			us -= us % 1000;
		int64_t back = 0;
		shm_time_format(us, buf);
		assert_int_equal(shm_time_parse(buf, &back), 0);
		assert_int_equal(back, us);
	}
}

static void test_now_is_close_to_time(void **state)
{
	int64_t a = (int64_t)time(NULL) * 1000000;
	int64_t n = shm_now_us();

	(void)state;
	assert_true(n >= a - 2000000 && n <= a + 2000000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_to_json_writes_the_seed_shape_in_key_order),
		cmocka_unit_test(test_to_json_writes_null_for_absent_options),
		cmocka_unit_test(test_round_trip_keeps_every_field),
		cmocka_unit_test(test_from_json_minimal_leaves_defaults_zero),
		cmocka_unit_test(
			test_from_json_sorts_reactions_and_accepts_partial_metadata),
		cmocka_unit_test(test_from_json_accepts_every_message_type),
		cmocka_unit_test(
			test_from_json_rejects_bad_input_with_a_precise_reason),
		cmocka_unit_test(test_from_json_checks_static_limits),
		cmocka_unit_test(
			test_from_json_reads_only_len_bytes_and_handles_no_err),
		cmocka_unit_test(test_from_json_names_a_raw_nul_byte),
		cmocka_unit_test(test_to_json_refuses_invalid_utf8_and_bad_types),
		cmocka_unit_test(test_to_json_escapes_hostile_strings_exactly),
		cmocka_unit_test(test_to_json_refusals_name_the_field),
		cmocka_unit_test(test_error_texts_quote_input_printably),
		cmocka_unit_test(test_to_json_refuses_null_arrays_and_empty_emojis),
		cmocka_unit_test(test_json_append_appends_and_locates_metadata),
		cmocka_unit_test(test_metadata_json_append_is_the_whole_jsons_object),
		cmocka_unit_test(test_to_json_writes_reactions_sorted_by_emoji),
		cmocka_unit_test(test_a_reaction_without_users_is_no_reaction),
		cmocka_unit_test(test_to_json_random_round_trips),
		cmocka_unit_test(test_json_survives_put_and_get),
		cmocka_unit_test(
			test_put_and_import_refuse_what_json_cannot_carry),
		cmocka_unit_test(
			test_writer_reader_and_put_agree_on_the_range_of_times),
		cmocka_unit_test(
			test_writer_refuses_the_nil_id_the_reader_refuses),
		cmocka_unit_test(
			test_writer_refuses_a_nil_link_the_reader_refuses),
		cmocka_unit_test(
			test_import_of_reactions_in_any_order_reads_back_sorted),
		cmocka_unit_test(test_time_format_uses_chrono_auto_si),
		cmocka_unit_test(
			test_time_parse_accepts_rfc3339_offsets_and_fractions),
		cmocka_unit_test(
			test_time_parse_rejects_malformed_with_the_input_named),
		cmocka_unit_test(test_time_format_parse_round_trip),
		cmocka_unit_test(test_now_is_close_to_time),
	};
	return cmocka_run_group_tests_name("json", tests, NULL, NULL);
}
