/*
 * tests/test_static.c - statics and their SHAs: git blob SHA-1, SHA-256,
 * put/peek/get, one generator across processes, leases taken over from
 * dead or overrunning generators, log records and their decoding.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "shm.h"
#include "shm_log.h"
#include "testutil.h"

#define OBJ "Communication::Website::Page/0b8e7c52-aaaa-4bbb-8ccc-dddddddddddd"

typedef struct fixture {
	char *dir;
	char scratch[128]; /* a file the generators write to */
	shm_env *env;
	shm_uuid ws;
} fixture;

static int open_env(const char *dir, uint32_t lease_ms, uint32_t wait_ms,
                    shm_env **env)
{
	shm_options o;
	shm_options_init(&o);
	if (lease_ms)
		o.lease_ms = lease_ms;
	if (wait_ms)
		o.lease_wait_ms = wait_ms;
	int rc = shm_env_open(dir, &o, env);
	if (rc)
		fprintf(stderr, "open %s: %s\n", dir, shm_errmsg());
	return rc;
}

/* The fixture's handle replaced by one opened with o: a process opens an
 * environment once (shm.h), so a test that wants options of its own
 * closes the fixture's first. The teardown closes the new one. */
static shm_env *reopen_with(fixture *f, const shm_options *o)
{
	shm_env_close(f->env);
	f->env = NULL;
	if (shm_env_open(f->dir, o, &f->env))
		fprintf(stderr, "open %s: %s\n", f->dir, shm_errmsg());
	assert_non_null(f->env);
	return f->env;
}

/* The same with open_env's lease settings. */
static shm_env *reopen_env(fixture *f, uint32_t lease_ms, uint32_t wait_ms)
{
	shm_env_close(f->env);
	f->env = NULL;
	assert_int_equal(open_env(f->dir, lease_ms, wait_ms, &f->env), 0);
	return f->env;
}

static int setup(void **state)
{
	fixture *f = calloc(1, sizeof *f);

	f->dir = tu_tmpdir();
	snprintf(f->scratch, sizeof f->scratch, "%s.gen", f->dir);
	unlink(f->scratch);
	if (open_env(f->dir, 0, 0, &f->env))
		return -1;
	shm_uuid_parse("0b8e7c52-1111-4222-8333-444455556666", &f->ws);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;
	shm_env_close(f->env);
	tu_rmdir(f->dir);
	free(f->dir);
	unlink(f->scratch);
	free(f);
	return 0;
}

static uint64_t ms_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static long file_size(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

/* ---------------------------------------------------------------- SHA */

/* `git hash-object --stdin` of buf, through a temp file on stdin. */
static void git_hash(const void *buf, size_t len, char out[41])
{
	char path[] = "/tmp/shm-test-blob-XXXXXX", cmd[128];
	int fd = mkstemp(path);
	FILE *p;

	assert_true(fd >= 0);
	assert_int_equal(write(fd, buf, len), (ssize_t)len);
	close(fd);
	snprintf(cmd, sizeof cmd, "git hash-object --stdin < %s", path);
	p = popen(cmd, "r");
	assert_non_null(p);
	assert_non_null(fgets(out, 41, p));
	pclose(p);
	unlink(path);
	assert_int_equal(strlen(out), 40);
}

static void test_sha1_equals_git_hash_object(void **state)
{
	(void)state;
	char want[41], got[65];
	size_t big = 3 * 1024 * 1024 / 2; /* 1.5 MiB */
	unsigned char *buf = malloc(big);
	unsigned seed = 42;

	for (size_t i = 0; i < big; i++) {
		seed = seed * 1103515245u + 12345u;
		buf[i] = (unsigned char)(seed >> 16);
	}
	buf[0] = 0; /* binary, NUL bytes included */
	buf[17] = 0;
	size_t sizes[] = {0, 1, 64, 4096, big};
	for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
		git_hash(buf, sizes[i], want);
		shm_sha_hex(SHM_SHA1_GIT, buf, sizes[i], got);
		assert_string_equal(got, want);
	}
	shm_sha_hex(SHM_SHA1_GIT, "", 0, got);
	assert_string_equal(got, "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391");
	free(buf);
}

static void test_sha256_is_of_the_content_alone(void **state)
{
	(void)state;
	char got[65];
	shm_sha_hex(SHM_SHA256, "", 0, got);
	assert_string_equal(got, "e3b0c44298fc1c149afbf4c8996fb924"
	                         "27ae41e4649b934ca495991b7852b855");
	shm_sha_hex(SHM_SHA256, "abc", 3, got);
	assert_string_equal(got, "ba7816bf8f01cfea414140de5dae2223"
	                         "b00361a396177a9cb410ff61f20015ad");
}

/* ----------------------------------------------------------- put/peek */

static void test_put_then_peek_returns_content_and_both_shas(void **state)
{
	fixture *f = *state;
	shm_static *s = NULL, *p = NULL;
	char sha1[65], sha256[65];
	const char content[] = "---\ntitle: About\n---\n\0binary\xff";
	size_t len = sizeof content - 1;

	assert_int_equal(shm_static_peek(f->env, &f->ws, OBJ, &p), SHM_ENOTFOUND);
	assert_null(p);
	assert_int_equal(shm_static_put(f->env, &f->ws, OBJ, content, len, &s), 0);
	assert_int_equal(shm_static_peek(f->env, &f->ws, OBJ, &p), 0);
	shm_sha_hex(SHM_SHA1_GIT, content, len, sha1);
	shm_sha_hex(SHM_SHA256, content, len, sha256);
	for (int i = 0; i < 2; i++) {
		shm_static *x = i ? p : s;
		assert_int_equal(x->content_len, len);
		assert_memory_equal(x->content, content, len);
		assert_string_equal(x->sha1, sha1);
		assert_string_equal(x->sha256, sha256);
		assert_true(x->generated_at > 0);
	}
	assert_int_equal(p->generated_at, s->generated_at);
	shm_static_free(s);
	shm_static_free(p);
	/* another website does not see it */
	shm_uuid other;
	shm_uuid_parse("99999999-1111-4222-8333-444455556666", &other);
	assert_int_equal(shm_static_peek(f->env, &other, OBJ, &p), SHM_ENOTFOUND);
}

static void test_large_static_is_stored_compressed_and_read_back(void **state)
{
	fixture *f = *state;
	size_t len = 60000;
	char *content = malloc(len);
	shm_static *p = NULL;
	shm_info in;

	for (size_t i = 0; i < len; i++)
		content[i] = "<p>Lorem ipsum dolor sit amet</p>\n"[i % 34];
	assert_int_equal(shm_static_put(f->env, &f->ws, OBJ, content, len, NULL),
	                 0);
	assert_int_equal(shm_static_peek(f->env, &f->ws, OBJ, &p), 0);
	assert_int_equal(p->content_len, len);
	assert_memory_equal(p->content, content, len);
	assert_int_equal(shm_env_info(f->env, &in), 0);
	assert_int_equal(in.statics, 1);
	assert_true(in.l1_bytes < len / 4); /* the LZ4 frame is what counts */
	shm_static_free(p);
	free(content);
}

static void test_replacing_and_busting_keep_l1_accounting_exact(void **state)
{
	fixture *f = *state;
	shm_info a, b, c;

	assert_int_equal(shm_env_info(f->env, &a), 0);
	assert_int_equal(shm_static_put(f->env, &f->ws, OBJ, "one", 3, NULL), 0);
	assert_int_equal(shm_env_info(f->env, &b), 0);
	assert_int_equal(b.statics, a.statics + 1);
	assert_int_equal(shm_static_put(f->env, &f->ws, OBJ, "twenty", 6, NULL),
	                 0);
	assert_int_equal(shm_env_info(f->env, &c), 0);
	assert_int_equal(c.statics, b.statics);
	assert_int_equal(c.l1_bytes, b.l1_bytes + 3);
	assert_int_equal(shm_static_bust(f->env, &f->ws, OBJ), 0);
	assert_int_equal(shm_env_info(f->env, &c), 0);
	assert_int_equal(c.statics, a.statics);
	assert_int_equal(c.l1_bytes, a.l1_bytes);
}

static void test_oversized_static_is_refused_and_changes_nothing(void **state)
{
	fixture *f = *state;
	size_t len = shm_env_options(f->env)->max_content + 1;
	char *content = calloc(1, len);
	shm_info a, b;

	assert_int_equal(shm_env_info(f->env, &a), 0);
	assert_int_equal(shm_static_put(f->env, &f->ws, OBJ, content, len, NULL),
	                 SHM_ETOOBIG);
	assert_non_null(strstr(shm_errmsg(), OBJ));
	assert_int_equal(shm_env_info(f->env, &b), 0);
	assert_int_equal(b.next_seq, a.next_seq);
	assert_int_equal(b.statics, a.statics);
	free(content);
}

static void test_static_put_appends_a_decodable_record(void **state)
{
	fixture *f = *state;
	shm_info in;
	shm_log_iter *it;
	shm_log_rec r;
	shm_static *d = NULL;
	size_t len = 5000;
	char *content = malloc(len);
	int n = 0;

	memset(content, 'z', len);
	assert_int_equal(shm_env_info(f->env, &in), 0);
	assert_int_equal(shm_static_put(f->env, &f->ws, OBJ, content, len, NULL),
	                 0);
	assert_int_equal(shm_log_iter_open(f->env, in.next_seq, &it), 0);
	while (shm_log_iter_next(it, &r) == 0) {
		n++;
		assert_int_equal(r.op, SHM_OP_STATIC_PUT);
		assert_int_equal(r.key_len, 16 + strlen(OBJ));
		assert_memory_equal(r.key, f->ws.b, 16);
		assert_memory_equal(r.key + 16, OBJ, strlen(OBJ));
		assert_int_equal(shm_static_decode(r.payload, r.payload_len, &d),
		                 0);
		assert_int_equal(d->content_len, len);
		assert_memory_equal(d->content, content, len);
		char sha[65];
		shm_sha_hex(SHM_SHA1_GIT, content, len, sha);
		assert_string_equal(d->sha1, sha);
		shm_static_free(d);
	}
	shm_log_iter_close(it);
	assert_int_equal(n, 1);
	free(content);
}

static void test_static_decode_refuses_corrupt_values(void **state)
{
	fixture *f = *state;
	shm_info in;
	shm_log_iter *it;
	shm_log_rec r;
	shm_static *d = NULL;
	uint8_t buf[256];

	assert_int_equal(shm_env_info(f->env, &in), 0);
	assert_int_equal(shm_static_put(f->env, &f->ws, OBJ, "hello", 5, NULL), 0);
	assert_int_equal(shm_log_iter_open(f->env, in.next_seq, &it), 0);
	assert_int_equal(shm_log_iter_next(it, &r), 0);
	assert_true(r.payload_len < sizeof buf);
	memcpy(buf, r.payload, r.payload_len);
	size_t len = r.payload_len;
	shm_log_iter_close(it);

	assert_int_equal(shm_static_decode(buf, len, &d), 0);
	shm_static_free(d);
	assert_int_equal(shm_static_decode(buf, len - 1, &d), SHM_ECORRUPT);
	assert_null(d);
	assert_int_equal(shm_static_decode(buf, 10, &d), SHM_ECORRUPT);
	buf[0] = 2;
	assert_int_equal(shm_static_decode(buf, len, &d), SHM_ECORRUPT);
	buf[0] = 1;
	buf[1] = 1; /* claims LZ4 but is not a frame */
	assert_int_equal(shm_static_decode(buf, len, &d), SHM_ECORRUPT);
	assert_null(d);
}

/* A value whose LZ4 frame claims a raw length of gigabytes is corrupt at
 * once, with no buffer of that size asked for (which could fail as ENOMEM,
 * an error a flusher retries rather than a record it sets aside). */
static void test_static_decode_refuses_a_frame_claiming_too_much(void **state)
{
	fixture *f = *state;
	static char content[20000];
	shm_info in;
	shm_log_iter *it;
	shm_log_rec r;
	shm_static *d = NULL;
	uint8_t buf[4096];
	uint32_t lie = UINT32_MAX;

	memset(content, 'x', sizeof content);
	assert_int_equal(shm_env_info(f->env, &in), 0);
	assert_int_equal(shm_static_put(f->env, &f->ws, OBJ, content,
	                                sizeof content, NULL), 0);
	assert_int_equal(shm_log_iter_open(f->env, in.next_seq, &it), 0);
	assert_int_equal(shm_log_iter_next(it, &r), 0);
	assert_true(r.payload_len < sizeof buf);
	memcpy(buf, r.payload, r.payload_len);
	size_t len = r.payload_len;
	shm_log_iter_close(it);
	assert_int_equal(buf[1], 1); /* an LZ4 frame */
	memcpy(buf + 64, &lie, 4);   /* raw_len */
	assert_int_equal(shm_static_decode(buf, len, &d), SHM_ECORRUPT);
	assert_non_null(strstr(shm_errmsg(), "cannot give 4294967295"));
	assert_null(d);
}

/* A compressed value is exactly one whole LZ4 frame: without its end mark
 * (all its content there), with bytes after it, or followed by a second
 * frame, it is damaged. Exact inputs: a real record's value, stored_len
 * and length made to match each. */
static void test_static_decode_takes_exactly_one_whole_frame(void **state)
{
	fixture *f = *state;
	static char content[20000];
	static const uint8_t end_mark[4] = {0, 0, 0, 0};
	shm_info in;
	shm_log_iter *it;
	shm_log_rec r;
	shm_static *d = NULL;
	uint8_t good[4096], buf[8192];
	enum { HDR = 72 }; /* shm_log.h: the static value's fixed part */

	memset(content, 'x', sizeof content);
	assert_int_equal(shm_env_info(f->env, &in), 0);
	assert_int_equal(shm_static_put(f->env, &f->ws, OBJ, content,
	                                sizeof content, NULL), 0);
	assert_int_equal(shm_log_iter_open(f->env, in.next_seq, &it), 0);
	assert_int_equal(shm_log_iter_next(it, &r), 0);
	assert_true(r.payload_len < sizeof good);
	memcpy(good, r.payload, r.payload_len);
	size_t len = r.payload_len, fl = len - HDR;
	shm_log_iter_close(it);
	assert_int_equal(good[1], 1); /* an LZ4 frame */
	assert_memory_equal(good + len - 4, end_mark, 4);

	static const struct {
		long extra; /* bytes added after the frame (<0: cut) */
		bool twice; /* the frame twice over */
		const char *why;
	} cases[] = {
		{-4, false, "LZ4 frame of %zu bytes without its end mark"},
		{1, false, "1 byte after its LZ4 frame"},
		{0, true, "%zu bytes after its LZ4 frame"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		size_t n = len, stored;
		char want[128];
		memcpy(buf, good, len);
		if (cases[i].twice) {
			memcpy(buf + len, good + HDR, fl);
			n += fl;
		} else if (cases[i].extra > 0) {
			memset(buf + len, 0, (size_t)cases[i].extra);
			n += (size_t)cases[i].extra;
		} else {
			n -= (size_t)-cases[i].extra;
		}
		stored = n - HDR;
		uint32_t s32 = (uint32_t)stored;
		memcpy(buf + 68, &s32, 4); /* stored_len */
		d = (shm_static *)1;
		assert_int_equal(shm_static_decode(buf, n, &d), SHM_ECORRUPT);
		assert_null(d);
		snprintf(want, sizeof want, cases[i].why,
		         cases[i].twice ? fl : stored);
		if (!strstr(shm_errmsg(), want))
			fail_msg("case %zu: '%s' lacks '%s'", i, shm_errmsg(),
			         want);
	}
	/* the value as it was decodes */
	assert_int_equal(shm_static_decode(good, len, &d), 0);
	assert_int_equal(d->content_len, sizeof content);
	assert_memory_equal(d->content, content, sizeof content);
	shm_static_free(d);
}

/* -------------------------------------------------------- get, 1 proc */

typedef struct gen_ctx {
	int calls;
	int fail;
	const char *scratch; /* if set: append one byte per call */
	long sleep_ms;
	shm_env *env;        /* if set: save the object mid-generation */
	const shm_uuid *ws;
} gen_ctx;

static int gen(const shm_uuid *website, const char *object, void *user,
               void **content, size_t *len)
{
	gen_ctx *g = user;
	char id[37], *c = malloc(256);

	g->calls++;
	if (g->scratch) {
		int fd = open(g->scratch, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd >= 0) {
			if (write(fd, "g", 1) != 1)
				abort();
			close(fd);
		}
	}
	if (g->sleep_ms)
		tu_sleep_ms(g->sleep_ms);
	if (g->env)
		shm_object_save(g->env, g->ws, object);
	if (g->fail) {
		free(c);
		return g->fail;
	}
	shm_uuid_format(website, id);
	*len = (size_t)snprintf(c, 256, "<h1>%s</h1><p>%s</p>", object, id);
	*content = c;
	return 0;
}

static void test_get_runs_the_generator_only_on_a_miss(void **state)
{
	fixture *f = *state;
	gen_ctx g = {0};
	shm_static *a = NULL, *b = NULL;
	shm_counters c;

	assert_int_equal(shm_static_get(f->env, &f->ws, OBJ, gen, &g, &a), 0);
	assert_int_equal(shm_static_get(f->env, &f->ws, OBJ, gen, &g, &b), 0);
	assert_int_equal(g.calls, 1);
	assert_int_equal(a->content_len, b->content_len);
	assert_memory_equal(a->content, b->content, a->content_len);
	assert_string_equal(a->sha1, b->sha1);
	assert_string_equal(a->sha256, b->sha256);
	assert_non_null(strstr(a->content, OBJ));
	shm_stats_local(f->env, &c);
	assert_int_equal(c.static_misses, 1);
	assert_int_equal(c.static_hits, 1);
	assert_int_equal(c.static_generated, 1);
	assert_int_equal(c.static_waits, 0);
	shm_static_free(a);
	shm_static_free(b);
	/* after a bust it is generated again */
	assert_int_equal(shm_static_bust(f->env, &f->ws, OBJ), 0);
	assert_int_equal(shm_static_get(f->env, &f->ws, OBJ, gen, &g, &a), 0);
	assert_int_equal(g.calls, 2);
	shm_static_free(a);
}

static void test_generator_failure_is_reported_and_frees_the_lease(void **state)
{
	fixture *f = *state;
	gen_ctx g = {.fail = 7};
	shm_static *s = NULL;
	uint64_t t0;

	assert_int_equal(shm_static_get(f->env, &f->ws, OBJ, gen, &g, &s),
	                 SHM_EGENERATOR);
	assert_null(s);
	assert_non_null(strstr(shm_errmsg(), OBJ));
	assert_int_equal(shm_static_peek(f->env, &f->ws, OBJ, &s), SHM_ENOTFOUND);
	g.fail = 0;
	t0 = ms_now();
	assert_int_equal(shm_static_get(f->env, &f->ws, OBJ, gen, &g, &s), 0);
	assert_true(ms_now() - t0 < 1000); /* no wait on a leftover lease */
	shm_static_free(s);
	assert_int_equal(shm_static_get(f->env, &f->ws, OBJ, NULL, NULL, &s),
	                 0); /* a hit needs no generator */
	shm_static_free(s);
	assert_int_equal(shm_static_get(f->env, &f->ws, "Page/x", NULL, NULL, &s),
	                 SHM_EINVAL);
}

static void test_content_rendered_before_a_bust_is_not_cached(void **state)
{
	fixture *f = *state;
	gen_ctx g = {.env = f->env, .ws = &f->ws};
	shm_static *s = NULL;

	/* the generator saves the object while rendering it: its result is
	 * returned to the caller, but the next get must render again */
	assert_int_equal(shm_static_get(f->env, &f->ws, OBJ, gen, &g, &s), 0);
	assert_non_null(s);
	shm_static_free(s);
	assert_int_equal(shm_static_peek(f->env, &f->ws, OBJ, &s), SHM_ENOTFOUND);
	g.env = NULL;
	assert_int_equal(shm_static_get(f->env, &f->ws, OBJ, gen, &g, &s), 0);
	assert_int_equal(g.calls, 2);
	shm_static_free(s);
	assert_int_equal(shm_static_peek(f->env, &f->ws, OBJ, &s), 0);
	shm_static_free(s);
}

/* Occurrences of needle in hay. */
static int count_of(const char *hay, const char *needle)
{
	int n = 0;
	for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
		n++;
	return n;
}

static void test_static_that_cannot_be_stored_frees_its_lease(void **state)
{
	fixture *f = *state;
	shm_options o;
	shm_env *env;
	shm_static *s = NULL;
	gen_ctx g = {0};
	uint64_t t0;

	/* an L1 of 3 entries, all unflushed: no room for a generated one */
	shm_options_init(&o);
	o.l1_max_entries = 3;
	o.lease_ms = 60000;
	o.lease_wait_ms = 2000;
	env = reopen_with(f, &o);
	assert_int_equal(shm_static_put(env, &f->ws, "Page/1", "x", 1, NULL), 0);
	assert_int_equal(shm_static_put(env, &f->ws, "Page/2", "x", 1, NULL), 0);
	assert_int_equal(shm_static_put(env, &f->ws, "Page/3", "x", 1, NULL), 0);
	assert_int_equal(shm_static_get(env, &f->ws, OBJ, gen, &g, &s),
	                 SHM_EFULL);
	assert_null(s);
	assert_non_null(strstr(shm_errmsg(), "L1 holds"));
	assert_int_equal(count_of(shm_errmsg(), shm_strerror(SHM_EFULL)), 1);
	/* the failed store left no lease: the next get runs at once */
	assert_int_equal(shm_static_bust(env, &f->ws, "Page/1"), 0);
	t0 = ms_now();
	assert_int_equal(shm_static_get(env, &f->ws, OBJ, gen, &g, &s), 0);
	assert_true(ms_now() - t0 < 1000);
	assert_int_equal(g.calls, 2);
	shm_static_free(s);
}

static void test_too_big_generated_static_names_its_error_once(void **state)
{
	fixture *f = *state;
	gen_ctx g = {0};
	shm_static *s = NULL;
	shm_options o;
	shm_env *env;

	shm_options_init(&o);
	o.max_content = 8; /* the generator's page is longer */
	env = reopen_with(f, &o);
	assert_int_equal(shm_static_get(env, &f->ws, OBJ, gen, &g, &s),
	                 SHM_ETOOBIG);
	assert_non_null(strstr(shm_errmsg(), "max_content"));
	assert_int_equal(count_of(shm_errmsg(), shm_strerror(SHM_ETOOBIG)), 1);
}

/* ---------------------------------------------------- get, N processes */

/* Child: opens its own handle, waits for the start signal, gets OBJ.
 * Exit 0 if it got the expected content, 1 otherwise; 2 on timeout. */
static void child_get(fixture *f, int start_fd, uint32_t lease_ms,
                      uint32_t wait_ms, long gen_sleep_ms)
{
	shm_env *env;
	shm_static *s = NULL;
	gen_ctx g = {.scratch = f->scratch, .sleep_ms = gen_sleep_ms};
	char c, want[256], id[37];
	int rc;

	alarm(60); /* a hung child fails the test instead of blocking it */
	if (start_fd >= 0 && read(start_fd, &c, 1) < 0)
		_exit(3);
	if (open_env(f->dir, lease_ms, wait_ms, &env))
		_exit(3);
	rc = shm_static_get(env, &f->ws, OBJ, gen, &g, &s);
	if (rc) {
		fprintf(stderr, "child %d: %s\n", (int)getpid(), shm_errmsg());
		_exit(rc == SHM_ETIMEDOUT ? 2 : 1);
	}
	shm_uuid_format(&f->ws, id);
	snprintf(want, sizeof want, "<h1>%s</h1><p>%s</p>", OBJ, id);
	rc = s->content_len == strlen(want) &&
	     memcmp(s->content, want, s->content_len) == 0;
	shm_static_free(s);
	shm_env_close(env);
	_exit(rc ? 0 : 1);
}

static int wait_exit(pid_t pid)
{
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void test_four_processes_missing_at_once_generate_once(void **state)
{
	fixture *f = *state;
	pid_t pids[4];
	int fds[2];
	shm_counters c0, c1;

	assert_int_equal(shm_stats_shared(f->env, &c0), 0);
	assert_int_equal(pipe(fds), 0);
	for (int i = 0; i < 4; i++) {
		pids[i] = fork();
		assert_true(pids[i] >= 0);
		if (pids[i] == 0) {
			close(fds[1]);
			child_get(f, fds[0], 0, 10000, 300);
		}
	}
	close(fds[0]);
	tu_sleep_ms(100); /* every child blocked on the pipe */
	close(fds[1]); /* go */
	for (int i = 0; i < 4; i++)
		assert_int_equal(wait_exit(pids[i]), 0);
	assert_int_equal(file_size(f->scratch), 1); /* one generator run */
	assert_int_equal(shm_stats_shared(f->env, &c1), 0);
	assert_int_equal(c1.static_generated - c0.static_generated, 1);
	assert_int_equal(c1.static_misses - c0.static_misses, 4);
	assert_true(c1.static_waits - c0.static_waits >= 1);
	assert_int_equal(c1.static_takeovers - c0.static_takeovers, 0);
}

/* Starts a child whose generator marks the scratch file then sleeps for
 * hold_ms; returns once it is inside the generator (it holds the lease). */
static pid_t start_holder(fixture *f, uint32_t lease_ms, long hold_ms)
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		child_get(f, -1, lease_ms, 1000, hold_ms);
	for (int i = 0; i < 500 && file_size(f->scratch) < 1; i++)
		tu_sleep_ms(10);
	assert_int_equal(file_size(f->scratch), 1);
	return pid;
}

static void test_generator_killed_mid_way_is_taken_over_by_a_waiter(void **state)
{
	fixture *f = *state;
	shm_counters c0, c1;
	pid_t holder, waiter;

	assert_int_equal(shm_stats_shared(f->env, &c0), 0);
	holder = start_holder(f, 60000, 60000);
	waiter = fork();
	assert_true(waiter >= 0);
	if (waiter == 0)
		child_get(f, -1, 60000, 20000, 0);
	tu_sleep_ms(300); /* the waiter is polling */
	assert_int_equal(kill(holder, SIGKILL), 0);
	assert_int_equal(wait_exit(holder), 128 + SIGKILL);
	/* long before the 60 s lease ends: the holder is known dead */
	uint64_t t0 = ms_now();
	assert_int_equal(wait_exit(waiter), 0);
	assert_true(ms_now() - t0 < 5000);
	assert_int_equal(file_size(f->scratch), 2); /* killed run + waiter's */
	assert_int_equal(shm_stats_shared(f->env, &c1), 0);
	assert_int_equal(c1.static_takeovers - c0.static_takeovers, 1);
	assert_int_equal(c1.static_generated - c0.static_generated, 1);
	assert_int_equal(c1.static_waits - c0.static_waits, 1);
}

static void test_dead_unreaped_generator_is_taken_over_at_once(void **state)
{
	fixture *f = *state;
	shm_env *env;
	shm_static *s = NULL;
	gen_ctx g = {0};
	siginfo_t si;
	pid_t holder;
	uint64_t t0;

	/* killed, but a zombie until its parent (this test) reaps it */
	holder = start_holder(f, 60000, 60000);
	assert_int_equal(kill(holder, SIGKILL), 0);
	assert_int_equal(waitid(P_PID, (id_t)holder, &si, WEXITED | WNOWAIT), 0);
	env = reopen_env(f, 60000, 3000);
	t0 = ms_now();
	assert_int_equal(shm_static_get(env, &f->ws, OBJ, gen, &g, &s), 0);
	assert_true(ms_now() - t0 < 1000);
	assert_int_equal(g.calls, 1);
	shm_static_free(s);
	shm_counters c;
	shm_stats_local(env, &c);
	assert_int_equal(c.static_takeovers, 1);
	assert_int_equal(wait_exit(holder), 128 + SIGKILL);
}

static void test_overrunning_generator_is_taken_over_after_its_lease(void **state)
{
	fixture *f = *state;
	shm_env *env;
	shm_static *s = NULL;
	gen_ctx g = {0};
	pid_t holder;
	uint64_t t0;

	/* alive but stuck (stopped): only the lease's expiry frees the key */
	holder = start_holder(f, 400, 60000);
	assert_int_equal(kill(holder, SIGSTOP), 0);
	env = reopen_env(f, 400, 5000);
	t0 = ms_now();
	assert_int_equal(shm_static_get(env, &f->ws, OBJ, gen, &g, &s), 0);
	uint64_t took = ms_now() - t0;
	assert_true(took >= 200);  /* waited for the lease ... */
	assert_true(took < 3000);  /* ... not for the wait bound */
	assert_int_equal(g.calls, 1);
	shm_static_free(s);
	shm_counters c;
	shm_stats_local(env, &c);
	assert_int_equal(c.static_takeovers, 1);
	assert_int_equal(c.static_waits, 1);
	kill(holder, SIGKILL);
	kill(holder, SIGCONT);
	wait_exit(holder);
}

static void test_waiting_is_bounded_by_lease_wait_ms(void **state)
{
	fixture *f = *state;
	shm_env *env;
	shm_static *s = NULL;
	gen_ctx g = {0};
	pid_t holder;
	uint64_t t0;

	holder = start_holder(f, 60000, 60000);
	env = reopen_env(f, 60000, 300);
	t0 = ms_now();
	assert_int_equal(shm_static_get(env, &f->ws, OBJ, gen, &g, &s),
	                 SHM_ETIMEDOUT);
	uint64_t took = ms_now() - t0;
	assert_true(took >= 250 && took < 3000);
	assert_null(s);
	assert_int_equal(g.calls, 0);
	assert_non_null(strstr(shm_errmsg(), OBJ));
	/* the waiter held no transaction: writes went on meanwhile */
	assert_int_equal(shm_static_put(env, &f->ws, "Page/other", "x", 1, NULL),
	                 0);
	kill(holder, SIGKILL);
	wait_exit(holder);
}

/* A page embedding a block that embeds the page: each generator gets the
 * static it embeds. */
struct embed {
	shm_env *env;
	const shm_uuid *ws;
	int rc_inner;  /* what the innermost get of the page returned */
	char err[512]; /* and its text */
	int calls;
};

static int gen_embedding(const shm_uuid *website, const char *object,
                         void *user, void **content, size_t *len)
{
	struct embed *e = user;
	const char *inner = strcmp(object, "Page/a") == 0 ? "Block/b" : "Page/a";
	shm_static *s = NULL;
	int rc;

	if (++e->calls > 4)
		return 99; /* a runaway recursion */
	rc = shm_static_get(e->env, website, inner, gen_embedding, e, &s);
	if (rc) {
		if (strcmp(inner, "Page/a") == 0) {
			e->rc_inner = rc;
			snprintf(e->err, sizeof e->err, "%s", shm_errmsg());
		}
		return 1;
	}
	*len = s->content_len;
	*content = malloc(s->content_len + 1);
	memcpy(*content, s->content, s->content_len);
	shm_static_free(s);
	return 0;
}

/* A generator that asks, through another, for the static it is generating
 * would wait for its own lease (lease_wait_ms, 30 s by default) and then
 * blame "another process": it fails at once, naming the cycle, and leaves
 * no lease behind. */
static void test_generator_asking_for_its_own_static_fails_at_once(
	void **state)
{
	fixture *f = *state;
	shm_env *env;
	struct embed e = {0};
	shm_static *s = NULL;
	gen_ctx g = {0};
	uint64_t t0;

	env = reopen_env(f, 0, 3000);
	e.env = env;
	e.ws = &f->ws;
	t0 = ms_now();
	assert_int_equal(shm_static_get(env, &f->ws, "Page/a", gen_embedding,
	                                &e, &s), SHM_EGENERATOR);
	assert_true(ms_now() - t0 < 1000);
	assert_null(s);
	assert_int_equal(e.calls, 2);
	assert_int_equal(e.rc_inner, SHM_EGENERATOR);
	assert_non_null(strstr(e.err, "Page/a -> Block/b -> Page/a"));
	/* both leases released: a plain generator runs at once */
	t0 = ms_now();
	assert_int_equal(shm_static_get(env, &f->ws, "Page/a", gen, &g, &s), 0);
	shm_static_free(s);
	assert_int_equal(shm_static_get(env, &f->ws, "Block/b", gen, &g, &s), 0);
	shm_static_free(s);
	assert_true(ms_now() - t0 < 1000);
	assert_int_equal(g.calls, 2);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sha1_equals_git_hash_object),
		cmocka_unit_test(test_sha256_is_of_the_content_alone),
		T(test_put_then_peek_returns_content_and_both_shas),
		T(test_large_static_is_stored_compressed_and_read_back),
		T(test_replacing_and_busting_keep_l1_accounting_exact),
		T(test_oversized_static_is_refused_and_changes_nothing),
		T(test_static_put_appends_a_decodable_record),
		T(test_static_decode_refuses_corrupt_values),
		T(test_static_decode_refuses_a_frame_claiming_too_much),
		T(test_static_decode_takes_exactly_one_whole_frame),
		T(test_get_runs_the_generator_only_on_a_miss),
		T(test_generator_failure_is_reported_and_frees_the_lease),
		T(test_content_rendered_before_a_bust_is_not_cached),
		T(test_static_that_cannot_be_stored_frees_its_lease),
		T(test_too_big_generated_static_names_its_error_once),
		T(test_four_processes_missing_at_once_generate_once),
		T(test_generator_killed_mid_way_is_taken_over_by_a_waiter),
		T(test_dead_unreaped_generator_is_taken_over_at_once),
		T(test_overrunning_generator_is_taken_over_after_its_lease),
		T(test_waiting_is_bounded_by_lease_wait_ms),
		T(test_generator_asking_for_its_own_static_fails_at_once),
	};
	alarm(300); /* a hang (e.g. a lock never released) fails the run */
	return cmocka_run_group_tests(tests, NULL, NULL);
}
