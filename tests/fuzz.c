/* tests/fuzz.c - the mutational fuzzing of tests/test_fuzz_*.c (fuzz.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "fuzz.h"
#include "text.h"

static uint64_t seed0 = 0x2545f4914f6cdd1du;
static unsigned long iters_asked; /* SHM_FUZZ_ITERS; 0: the default */

unsigned long fz_iters(unsigned long dflt)
{
	return iters_asked ? iters_asked : dflt;
}

uint64_t fz_seed(void)
{
	return seed0;
}

uint64_t fz_rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

size_t fz_below(uint64_t *s, size_t n)
{
	return n ? (size_t)(fz_rnd(s) % n) : 0;
}

double fz_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void fz_report(const char *target, unsigned long n, unsigned long ok,
               double t0)
{
	fprintf(stderr, "fuzz %s: %lu inputs, %lu accepted, %.1f s\n", target,
	        n, ok, fz_now() - t0);
}

static void in_room(fz_input *b, size_t more)
{
	if (b->n + more + 1 <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < b->n + more + 1)
		cap *= 2;
	assert_non_null(b->p = realloc(b->p, cap));
	b->cap = cap;
}

void fz_set(fz_input *b, const void *p, size_t n)
{
	b->n = 0;
	in_room(b, n);
	if (n)
		memcpy(b->p, p, n);
	b->n = n;
	b->p[n] = 0;
}

void fz_insert(fz_input *b, size_t at, const void *p, size_t n)
{
	in_room(b, n);
	memmove(b->p + at + n, b->p + at, b->n - at);
	memcpy(b->p + at, p, n);
	b->n += n;
	b->p[b->n] = 0;
}

void fz_seed_add(fz_seeds *s, const void *p, size_t n)
{
	assert_non_null(s->v = realloc(s->v, (s->n + 1) * sizeof *s->v));
	s->v[s->n] = (fz_input){0};
	fz_set(&s->v[s->n++], p, n);
}

void fz_seeds_free(fz_seeds *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i].p);
	free(s->v);
	s->v = NULL;
	s->n = 0;
}

#define TOK(s) {s, sizeof s - 1}
/* What a fuzzer inserts: huge numbers, invalid UTF-8 (overlong forms,
 * surrogates, beyond U+10FFFF, cut sequences), JSON escapes, structure,
 * the separators of URLs, conninfos, invalidation lines and timestamps. */
static const struct {
	const char *s;
	size_t n;
} tokens[] = {
	TOK("99999999999999999999"), TOK("-9223372036854775809"),
	TOK("9223372036854775807"), TOK("4294967296"), TOK("2147483648"),
	TOK("-2147483649"), TOK("1e999"), TOK("-0"), TOK("0.5"), TOK("1E+2"),
	TOK("\xc0\x80"), TOK("\xc1\xbf"), TOK("\xe0\x80\xaf"),
	TOK("\xed\xa0\x80"), TOK("\xf4\x90\x80\x80"), TOK("\xf8\x88\x80\x80"),
	TOK("\xc3"), TOK("\xe2\x82"), TOK("\xff"), TOK("\x80"), TOK("\xef\xbb\xbf"),
	TOK("\\u0000"), TOK("\\ud800"), TOK("\\udc00"), TOK("\\ud800\\udc00"),
	TOK("\\uDBFF\\uDFFF"), TOK("\\u00e9"), TOK("\\x"), TOK("\\"),
	TOK("\""), TOK("{"), TOK("}"), TOK("["), TOK("]"), TOK(":"), TOK(","),
	TOK("null"), TOK("true"), TOK("\"\":"), TOK("{}"), TOK("[]"),
	TOK("\n"), TOK("\r\n"), TOK(" "), TOK("\t"), TOK("%"), TOK("%00"),
	TOK("%ff"), TOK("%C3%A9"), TOK("@"), TOK("/"), TOK("?"), TOK("="),
	TOK("'"), TOK("[::1]"), TOK(":0"), TOK(":65536"), TOK("?db="),
	TOK("&"), TOK("T"), TOK("Z"), TOK("+14:00"), TOK("-23:59"), TOK("60"),
	TOK("9999-12-31"), TOK("0000"), TOK("24:00:00"), TOK(".1234567890"),
	TOK("00000000-0000-0000-0000-000000000000"), TOK("-"), TOK("g"),
	TOK("\x1b[2J"), TOK("\0"),
};

/* JSON values for the structure-aware changes: every type, numbers at
 * the edges of the ranges fields take, strings at the edges of the
 * lengths and times they take, bad escapes (json_fixed); strings of each
 * of json_lens 'a's and 3000 '[' (values_init). */
static const char *const json_fixed[] = {
	"0", "-1", "1", "255", "256", "2147483647", "2147483648",
	"-2147483648", "-2147483649", "4294967295", "4294967296",
	"9223372036854775807", "9223372036854775808",
	"-9223372036854775808", "1.5", "1e308", "-0.0", "true", "false",
	"null", "\"\"", "\"x\"", "\"\\u0000\"", "\"\\ud800\"",
	"\"\\udfff\\ud800\"", "\"\xc0\x80\"", "[]", "{}", "[1,1]",
	"[-2147483648,2147483647]", "{\"\":[]}", "{\"x\":[1]}",
	"\"0000-01-01T00:00:00Z\"", "\"1970-01-01T00:00:00Z\"",
	"\"1970-01-01T00:00:00.000001Z\"",
	"\"1969-12-31T23:59:59.999999Z\"",
	"\"9999-12-31T23:59:59.999999Z\"",
	"\"9999-12-31T23:59:59.999999-00:01\"",
	"\"2024-02-30T00:00:00Z\"", "\"2024-01-01 00:00:60Z\"",
	"\"00000000-0000-0000-0000-000000000000\"",
	"\"0190C1C2-0000-7000-8000-00000000000A\"",
	"\"{0190c1c2-0000-7000-8000-00000000000a}\"",
	"\"Text\"", "\"Delete\"", "\"text\"",
	"\"" SHM_DELETED_CONTENT "\"",
	"[{\"id\":\"0190c1c2-0000-7000-8000-00000000000a\","
	"\"filename\":\"f\",\"content_type\":\"t\",\"size\":1,"
	"\"url\":\"u\"}]",
};
static const size_t json_lens[] = {63, 64, 65, 255, 256, 1024, 1025};
#define N_FIXED (sizeof json_fixed / sizeof *json_fixed)
#define N_LENS (sizeof json_lens / sizeof *json_lens)
static const char *json_values[N_FIXED + N_LENS + 1];
static size_t n_json_values;
static const char *const json_keys[] = {
	"id", "room_id", "user_id", "username", "content", "message_type",
	"created_at", "updated_at", "metadata", "content_hash",
	"compressed_content", "parent_id", "thread_id", "edited", "edit_count",
	"reactions", "mentions", "attachments", "reply_count", "last_reply_at",
	"filename", "content_type", "size", "url", "", "x",
	"\\u0069d", "\\ud83d\\ude00",
};

static char *repeat(const char *pre, char c, size_t n, const char *post)
{
	size_t pl = strlen(pre), ql = strlen(post);
	char *v = malloc(pl + n + ql + 1);

	assert_non_null(v);
	memcpy(v, pre, pl);
	memset(v + pl, c, n);
	memcpy(v + pl + n, post, ql + 1);
	return v;
}

static void values_init(void)
{
	if (n_json_values)
		return;
	for (size_t i = 0; i < N_FIXED; i++)
		json_values[n_json_values++] = json_fixed[i];
	for (size_t i = 0; i < N_LENS; i++)
		json_values[n_json_values++] = repeat("\"", 'a', json_lens[i],
		                                      "\"");
	json_values[n_json_values++] = repeat("", '[', 3000, "");
}

/* The end of the JSON value starting at p (b->p's bytes up to end): a
 * string, an object or array (brackets counted outside strings), or a
 * bare token up to ',', '}', ']' or a space. */
static size_t json_value_end(const uint8_t *p, size_t at, size_t end)
{
	size_t i = at, depth = 0;
	bool str = false;

	for (; i < end; i++) {
		uint8_t c = p[i];
		if (str) {
			if (c == '\\')
				i++;
			else if (c == '"')
				str = false;
			if (!str && !depth)
				return i + 1;
			continue;
		}
		if (c == '"')
			str = true;
		else if (c == '{' || c == '[')
			depth++;
		else if (c == '}' || c == ']') {
			if (!depth)
				return i;
			if (!--depth)
				return i + 1;
		} else if (!depth && (c == ',' || c == ' '))
			return i;
	}
	return end;
}

/* A value after a ':' or in an array replaced by one of json_values. */
static void json_value_replace(fz_input *b, uint64_t *s)
{
	size_t tries = 8, at;

	while (tries-- && b->n) {
		at = fz_below(s, b->n);
		if (b->p[at] != ':' && b->p[at] != '[' && b->p[at] != ',')
			continue;
		at++;
		size_t end = json_value_end(b->p, at, b->n);
		const char *v = json_values[fz_below(s, n_json_values)];
		size_t vl = strlen(v);
		memmove(b->p + at, b->p + end, b->n - end);
		b->n -= end - at;
		fz_insert(b, at, v, vl);
		return;
	}
}

/* A member "KEY":VALUE, inserted after a '{': unknown keys, keys twice,
 * a known key at another level. */
static void json_member_insert(fz_input *b, uint64_t *s)
{
	size_t tries = 8, at;
	char m[4200];

	while (tries-- && b->n) {
		at = fz_below(s, b->n);
		if (b->p[at] != '{')
			continue;
		int n = snprintf(m, sizeof m, "\"%s\":%s,",
		                 json_keys[fz_below(s, sizeof json_keys /
		                                          sizeof *json_keys)],
		                 json_values[fz_below(s, n_json_values)]);
		fz_insert(b, at + 1, m, (size_t)n < sizeof m ? (size_t)n
		                                             : sizeof m - 1);
		return;
	}
}

void fz_mutate(fz_input *b, const fz_input *o, uint64_t *s)
{
	static const uint8_t special[] = {0x00, 0xff, 0x80, '"', '\\', 0x7f,
	                                  ' ', '\n', '0', '9'};
	static const uint32_t extreme[] = {0, 1, 0x7f, 0xff, 0x10000,
	                                   0x7fffffff, 0x80000000, 0xfffffff0,
	                                   0xffffffff};
	static const char *const nest[] = {"[", "{\"a\":", "{\"metadata\":"};
	size_t at = fz_below(s, b->n + 1), k;
	uint32_t v;

	switch (fz_rnd(s) % 13) {
	case 0:
		if (at < b->n)
			b->p[at] ^= (uint8_t)(1u << (fz_rnd(s) % 8));
		break;
	case 1:
		if (at < b->n)
			b->p[at] = special[fz_below(s, sizeof special)];
		break;
	case 2: /* an extreme, or what is left after it, give or take */
		v = fz_below(s, 2) ? extreme[fz_below(s, sizeof extreme /
		                                          sizeof *extreme)]
		                : (uint32_t)(b->n - at - 4 + fz_below(s, 5)) - 2;
		if (at + 4 <= b->n)
			memcpy(b->p + at, &v, 4);
		break;
	case 3:
		b->n = at;
		break;
	case 4: {
		size_t from = fz_below(s, o->n + 1);
		b->n = at;
		fz_insert(b, at, o->p + from, o->n - from);
		break;
	}
	case 5:
		k = fz_below(s, sizeof tokens / sizeof *tokens);
		fz_insert(b, at, tokens[k].s, tokens[k].n);
		break;
	case 6:
		k = fz_below(s, sizeof tokens / sizeof *tokens);
		if (at + tokens[k].n <= b->n)
			memcpy(b->p + at, tokens[k].s, tokens[k].n);
		break;
	case 7: {
		size_t len = 1 + fz_below(s, 32);
		if (len > b->n - at)
			len = b->n - at;
		memmove(b->p + at, b->p + at + len, b->n - at - len);
		b->n -= len;
		break;
	}
	case 8: {
		size_t len = 1 + fz_below(s, 64), from = fz_below(s, b->n + 1);
		uint8_t tmp[64];
		if (len > b->n - from)
			len = b->n - from;
		memcpy(tmp, b->p + from, len);
		fz_insert(b, at, tmp, len);
		break;
	}
	case 9: {
		static const size_t depth[] = {2, 64, 1000, 3000};
		const char *t = nest[fz_below(s, 3)];
		size_t d = depth[fz_below(s, 4)], tl = strlen(t);
		char *deep = malloc(d * tl);
		assert_non_null(deep);
		for (size_t i = 0; i < d; i++)
			memcpy(deep + i * tl, t, tl);
		fz_insert(b, at, deep, d * tl);
		free(deep);
		break;
	}
	case 10:
		fz_insert(b, at, "", 1);
		break;
	case 11:
		json_value_replace(b, s);
		break;
	default:
		json_member_insert(b, s);
		break;
	}
	b->p[b->n] = 0;
}

size_t fz_pick(fz_input *b, const fz_seeds *sd, uint64_t *s)
{
	size_t a = fz_below(s, sd->n);

	fz_set(b, sd->v[a].p, sd->v[a].n);
	if (fz_below(s, 16))
		for (size_t k = 1 + fz_below(s, 4); k > 0; k--)
			fz_mutate(b, &sd->v[fz_below(s, sd->n)], s);
	return a;
}

uint8_t *fz_exact(const fz_input *b, bool cstr)
{
	size_t size = b->n + cstr;
	uint8_t *x = malloc(size ? size : 1);

	assert_non_null(x);
	if (b->n)
		memcpy(x, b->p, b->n);
	if (cstr)
		x[b->n] = 0;
	return x;
}

void fz_printable(const char *where, const char *t)
{
	size_t n = strlen(t);

	if (!n)
		fail_msg("%s: empty error text", where);
	if (shm__utf8_bad(t, n) != n)
		fail_msg("%s: error text not UTF-8 at byte %zu: %s", where,
		         shm__utf8_bad(t, n), t);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)t[i] < 0x20 || t[i] == 0x7f)
			fail_msg("%s: control byte 0x%02x in the error text: %s",
			         where, (unsigned char)t[i], t);
}

void fz_init(void)
{
	const char *e;

	if ((e = getenv("SHM_FUZZ_ITERS")) && *e)
		iters_asked = strtoul(e, NULL, 10);
	if ((e = getenv("SHM_FUZZ_SEED")) && *e)
		seed0 = strtoull(e, NULL, 0) | 1; /* xorshift: never 0 */
	if ((e = getenv("SHM_FUZZ_ONLY")) && *e)
		cmocka_set_test_filter(e);
	values_init();
}

/* ---------------------------------------------------- sample messages */

const char *const FZ_IDS[FZ_SAMPLES] = {
	"0190c1c2-0000-7000-8000-00000000000a",
	"0190c1c2-0000-7000-8000-00000000000b",
	"0190c1c2-0000-7000-8000-00000000000c",
	"0190c1c2-0000-7000-8000-00000000000d",
	"0190c1c2-0000-7000-8000-00000000000e",
};
char fz_big_text[3000];
static const char ctl_text[] = "before\x01" "after\x7f\x1b[0m";
static int32_t users_a[] = {7, 3, -2147483647 - 1}, users_b[] = {2147483647};
static int32_t mentions[] = {42, 0, -1};
static shm_reaction reactions[] = {
	{"\xf0\x9f\x91\x8d", users_a, 3}, {"ok", users_b, 1}, {"\"q\\", users_b, 1},
};
static shm_attachment attachments[2] = {
	{.filename = "a b.png", .content_type = "image/png", .size = 0,
	 .url = "https://x.example/a?b=c&d=%20"},
	{.filename = "", .content_type = "", .size = INT64_MAX, .url = ""},
};

shm_msg fz_sample(int i)
{
	shm_msg m;

	memset(&m, 0, sizeof m);
	assert_int_equal(shm_uuid_parse(FZ_IDS[i], &m.id), 0);
	m.created_at = INT64_C(1700000000123456) + i;
	m.type = SHM_MSG_TEXT;
	m.room_id = "room";
	m.username = "alice";
	m.user_id = 1;
	m.content = "hi";
	m.content_len = 2;
	switch (i) {
	case 0:
		m.room_id = "g\xc3\xa9n\xc3\xa9ral \"x\"\\";
		m.username = "b\xc3\xb6\x62 \xf0\x9f\x98\x80\t";
		m.content = "line\nquote\" back\\ tab\t \x01\x1f \xe2\x82\xac";
		m.content_len = (uint32_t)strlen(m.content);
		m.user_id = -5;
		m.type = SHM_MSG_IMAGE;
		m.updated_at = INT64_C(1700000001000000);
		m.edited = true;
		m.edit_count = 4294967295u;
		m.reactions = reactions;
		m.n_reactions = 3;
		m.mentions = mentions;
		m.n_mentions = 3;
		assert_int_equal(shm_uuid_parse(FZ_IDS[4], &attachments[0].id), 0);
		assert_int_equal(shm_uuid_parse(FZ_IDS[3], &attachments[1].id), 0);
		m.attachments = attachments;
		m.n_attachments = 2;
		m.reply_count = 3;
		m.last_reply_at = INT64_C(253402300799999999);
		m.has_parent = m.has_thread = true;
		assert_int_equal(shm_uuid_parse(FZ_IDS[1], &m.parent_id), 0);
		assert_int_equal(shm_uuid_parse(FZ_IDS[2], &m.thread_id), 0);
		break;
	case 1:
		m.content = ctl_text;
		m.content_len = sizeof ctl_text - 1;
		m.type = SHM_MSG_SYSTEM;
		m.username = "";
		m.created_at = 1;
		break;
	case 2:
		for (size_t k = 0; k + 1 < sizeof fz_big_text; k++)
			fz_big_text[k] = "shm fuzz \xc3\xa9"[k % 11];
		m.content = fz_big_text; /* whole characters, a C string too */
		m.content_len = (uint32_t)(sizeof fz_big_text - 1 -
		                           (sizeof fz_big_text - 1) % 11);
		fz_big_text[m.content_len] = 0;
		m.type = SHM_MSG_FILE;
		break;
	case 3:
		m.type = SHM_MSG_DELETE;
		m.content = SHM_DELETED_CONTENT;
		m.content_len = (uint32_t)strlen(SHM_DELETED_CONTENT);
		m.has_thread = true;
		assert_int_equal(shm_uuid_parse(FZ_IDS[0], &m.thread_id), 0);
		break;
	default:
		m.type = SHM_MSG_REACTION;
		m.content = "";
		m.content_len = 0;
		break;
	}
	return m;
}

char *fz_to_json(const shm_msg *m, size_t *n)
{
	char *j;
	int rc = shm_msg_to_json(m, &j, n);
	if (rc)
		fail_msg("shm_msg_to_json: %s", shm_errmsg());
	return j;
}
