/*
 * tests/test_fuzz_l1.c - mutational fuzzing (tests/fuzz.h) of L1 values
 * read back from data.mdb: the decoders of stored messages, statics and
 * dead letters on their own, then a damaged environment (one value of a
 * message, a static, a dead letter or a log record replaced by a mutation
 * at a time) read through get, view, room pages, peek, shm_verify and
 * shmctl verify. A value its decoder refuses is SHM_ECORRUPT, named by
 * verify in printable text, never served; one it takes encodes back to
 * the same bytes. Log records alone: test_log.c.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "codec.h"
#include "internal.h"
#include "fuzz.h"
#include "testutil.h"

/* ------------------------------------------------ stored L1 values */

#define WEBSITE "8c5e1ab0-6d0a-4c5c-9b61-2f6a0e1d5a11"
static const char *const OBJECTS[] = {"Page/small", "Page/big"};

/* An entry of data.mdb a damage is done to: its database, key, value as
 * stored, and what shm_verify names it by. */
typedef struct stored {
	char kind; /* 'M' message, 'S' static, 'D' dead letter, 'L' log */
	MDB_dbi dbi;
	fz_input key, val;
	char name[128], alt[128]; /* alt: another name, "" if none */
} stored;

/* The wall clock while stored_env writes: from 2023-11-14T22:13:20Z, one
 * microsecond more at each reading, so that the values written (their
 * times, the log's checksums) and the loops' inputs with them are the
 * same on every run; the kernel's clock else. */
static bool clock_frozen;
static int64_t frozen_us = INT64_C(1700000000000000);

int clock_gettime(clockid_t clk, struct timespec *ts)
{
	if (clock_frozen && clk == CLOCK_REALTIME) {
		int64_t us = frozen_us++;
		ts->tv_sec = (time_t)(us / 1000000);
		ts->tv_nsec = (long)(us % 1000000 * 1000);
		return 0;
	}
	return (int)syscall(SYS_clock_gettime, clk, ts);
}

/* An environment holding every kind of value: the samples, a static
 * below the compress threshold and one above (an LZ4 frame), a dead
 * letter; its entries in *out. */
static shm_env *stored_env(const char *dir, stored **out, size_t *n)
{
	shm_env *env;
	MDB_dbi dbis[4];
	const char kinds[] = "MSDL";
	shm_log_iter *it;
	shm_log_rec r;
	MDB_txn *txn;
	shm_uuid w;

	clock_frozen = true;
	env = tu_open(dir, NULL);
	dbis[0] = env->msg;
	dbis[1] = env->stat;
	dbis[2] = env->dead;
	dbis[3] = env->log;
	for (int i = 0; i < FZ_SAMPLES; i++) {
		shm_msg m = fz_sample(i);
		assert_int_equal(shm_msg_put(env, &m), 0);
	}
	assert_int_equal(shm_uuid_parse(WEBSITE, &w), 0);
	assert_int_equal(shm_static_put(env, &w, OBJECTS[0], "<p>", 3, NULL), 0);
	assert_int_equal(shm_static_put(env, &w, OBJECTS[1], fz_big_text,
	                                strlen(fz_big_text), NULL), 0);
	assert_int_equal(shm_log_iter_open(env, 0, &it), 0);
	assert_int_equal(shm_log_iter_next(it, &r), 0);
	assert_int_equal(shm_dead_add(env, &r, "pg", "refused \xc3\xa9"), 0);
	shm_log_iter_close(it);
	clock_frozen = false;
	assert_int_equal(tu_verify(env), 0);
	*out = NULL;
	*n = 0;
	assert_int_equal(mdb_txn_begin(env->mdb, NULL, MDB_RDONLY, &txn), 0);
	for (int d = 0; d < 4; d++) {
		MDB_cursor *cur;
		MDB_val k, v;
		int op = MDB_FIRST;
		assert_int_equal(mdb_cursor_open(txn, dbis[d], &cur), 0);
		for (; mdb_cursor_get(cur, &k, &v, op) == 0; op = MDB_NEXT) {
			stored *e;
			uint64_t seq = 0;
			char u[37];
			shm_uuid id;
			assert_non_null(*out = realloc(*out, (*n + 1) * sizeof **out));
			e = &(*out)[(*n)++];
			memset(e, 0, sizeof *e);
			e->kind = kinds[d];
			e->dbi = dbis[d];
			fz_set(&e->key, k.mv_data, k.mv_size);
			fz_set(&e->val, v.mv_data, v.mv_size);
			if (k.mv_size == 8)
				memcpy(&seq, k.mv_data, 8);
			if (k.mv_size >= 16) {
				memcpy(id.b, k.mv_data, 16);
				shm_uuid_format(&id, u);
			}
			if (e->kind == 'M')
				snprintf(e->name, sizeof e->name, "message %s", u);
			else if (e->kind == 'S')
				snprintf(e->name, sizeof e->name, "static %s/%.*s",
				         u, (int)k.mv_size - 16,
				         (const char *)k.mv_data + 16);
			else if (e->kind == 'D')
				snprintf(e->name, sizeof e->name, "dead letter %"
				         PRIu64, seq);
			else { /* by its key, or as the record says */
				snprintf(e->name, sizeof e->name, "log seq %" PRIu64
				         ":", seq);
				snprintf(e->alt, sizeof e->alt, "log record %"
				         PRIu64 ":", seq);
			}
		}
		mdb_cursor_close(cur);
	}
	mdb_txn_abort(txn);
	return env;
}

static void stored_free(stored *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].key.p);
		free(v[i].val.p);
	}
	free(v);
}

/* A dead letter d (decoded from p) as dead.c writes them: its sink field
 * names (1..15 printable ASCII characters, no space or comma) joined by
 * commas and NUL-padded, its reason UTF-8 without NUL, the byte after
 * its version 0. */
static void assert_dead_as_written(const shm_dead *d, const uint8_t *p)
{
	size_t rl = (size_t)(p[2] | p[3] << 8), sl = strlen(d->sink);

	assert_int_equal(p[1], 0);
	assert_true(sl > 0);
	for (size_t i = sl; i < 16; i++)
		assert_int_equal(p[16 + i], 0);
	for (size_t i = 0; i < sl; i++)
		assert_true(d->sink[i] > ' ' && d->sink[i] <= '~' &&
		            (d->sink[i] != ',' || (i && i + 1 < sl &&
		                                   d->sink[i - 1] != ',')));
	assert_int_equal(strlen(d->reason), rl);
	assert_int_equal(shm__utf8_bad(d->reason, rl), rl);
}

/* Whether e's decoder takes value p[0..n); if not, its code is
 * SHM_ECORRUPT with a printable text. */
static bool stored_decodes(const stored *e, const uint8_t *p, size_t n)
{
	MDB_val k = {e->key.n, e->key.p}, v = {n, (void *)p};
	uint8_t *buf = NULL;
	size_t cap = 0;
	shm_msg *m = NULL;
	shm_static *st = NULL;
	shm_dead d;
	shm_log_rec r;
	int rc;

	switch (e->kind) {
	case 'M':
		rc = shm_msg_decode(p, n, &m);
		break;
	case 'S':
		rc = n < 8 ? SHM_ECORRUPT : shm_static_decode(p + 8, n - 8, &st);
		break;
	case 'D':
		if (!(rc = shm__dead_decode(&k, &v, &d)))
			assert_dead_as_written(&d, p);
		break;
	default:
		rc = shm_log_decode(p, n, &r, &buf, &cap);
		break;
	}
	if (rc && (e->kind != 'S' || n >= 8)) {
		assert_int_equal(rc, SHM_ECORRUPT);
		fz_printable("a stored value's decoder", shm_errmsg());
	}
	free(m);
	shm_static_free(st);
	free(buf);
	return rc == 0;
}

/* Message value m (decoded from p[0..n)) encoded again: the same bytes
 * when its reactions are as put writes them (sorted, each with users),
 * else a value that decodes to the same message. */
static void assert_msg_value_round_trip(const shm_msg *m, const uint8_t *p,
                                        size_t n)
{
	size_t en = shm__msg_enc_size(m);
	uint8_t *e = malloc(en);
	bool as_put = true;
	shm__order o;
	shm_msg *m2;

	assert_non_null(e);
	for (uint32_t i = 0; i < m->n_reactions; i++)
		as_put = as_put && m->reactions[i].n_users &&
		         (!i || strcmp(m->reactions[i - 1].emoji,
		                       m->reactions[i].emoji) < 0);
	assert_int_equal(shm__order_make(m, &o), 0);
	shm__msg_encode(m, o.r, shm__msg_enc_seq(p, n), e);
	shm__order_free(&o);
	if (as_put) {
		assert_int_equal(en, n);
		assert_memory_equal(e, p, n);
	}
	assert_int_equal(shm_msg_decode(e, en, &m2), 0);
	assert_int_equal(m2->n_reactions, m->n_reactions);
	if (as_put)
		tu_assert_msg_equal(m, m2);
	free(m2);
	free(e);
}

/* The decoders of stored values (message, static, dead letter; a log
 * record's in test_log.c) on mutations of the values a real environment
 * holds: SHM_ECORRUPT with a printable text, or a value that encodes
 * back to the same bytes (a message; a static's content its SHAs and
 * lengths say); the copy and the view decoders agree. */
static void test_stored_values_take_any_mutation(void **state)
{
	char *dir = tu_tmpdir();
	stored *v;
	size_t nv;
	shm_env *env = stored_env(dir, &v, &nv);
	fz_input b = {0};
	uint64_t s = fz_seed();
	unsigned long n = fz_iters(200000), ok = 0;
	double t0 = fz_now();
	shm__arena arena = {0};

	shm_env_close(env);
	for (unsigned long i = 0; i < n; i++) {
		const stored *e = &v[fz_below(&s, nv)], *o = &v[fz_below(&s, nv)];
		shm_msg *m = NULL, *view = NULL;
		shm_static *st = NULL;

		fz_set(&b, e->val.p, e->val.n);
		if (fz_below(&s, 16))
			for (size_t k = 1 + fz_below(&s, 4); k > 0; k--)
				fz_mutate(&b, &o->val, &s);
		uint8_t *x = fz_exact(&b, false);
		if (!stored_decodes(e, x, b.n)) {
			free(x);
			continue;
		}
		ok++;
		if (e->kind == 'M') {
			assert_int_equal(shm_msg_decode(x, b.n, &m), 0);
			shm__arena_reset(&arena);
			assert_int_equal(shm__msg_decode(x, b.n, &arena, &view), 0);
			tu_assert_msg_equal(m, view);
			assert_msg_value_round_trip(m, x, b.n);
			free(m);
		} else if (e->kind == 'S') {
			assert_int_equal(shm_static_decode(x + 8, b.n - 8, &st), 0);
			assert_int_equal(strlen(st->sha1), 40);
			assert_int_equal(strlen(st->sha256), 64);
			assert_int_equal(((const uint8_t *)st->content)
			                         [st->content_len], 0);
			if (!(x[9] & 1)) /* stored as it is */
				assert_memory_equal(st->content, x + 8 + 72,
				                    st->content_len);
			shm_static_free(st);
		}
		free(x);
	}
	fz_report("stored values", n, ok, t0);
	shm__arena_free(&arena);
	stored_free(v, nv);
	free(b.p);
	tu_rmdir(dir);
	free(dir);
}

typedef struct found {
	size_t n;
	char text[16][600];
	char bad[600]; /* the first one not printable, "" if none */
} found;

static void collect(const char *problem, void *user)
{
	found *f = user;
	size_t n = strlen(problem);
	bool printable = shm__utf8_bad(problem, n) == n;

	for (size_t i = 0; i < n; i++)
		if ((unsigned char)problem[i] < 0x20 || problem[i] == 0x7f)
			printable = false;
	if (!printable && !f->bad[0]) {
		size_t k = 0;
		for (size_t i = 0; i < n && k + 5 < sizeof f->bad; i++)
			k += (size_t)snprintf(f->bad + k, sizeof f->bad - k,
			                      (unsigned char)problem[i] < 0x20 ||
			                      (unsigned char)problem[i] >= 0x7f
			                              ? "\\x%02x" : "%c",
			                      (unsigned char)problem[i]);
	}
	if (f->n < 16)
		snprintf(f->text[f->n++], sizeof f->text[0], "%s", problem);
}

/* Whether a problem names e. */
static bool names(const found *f, const stored *e)
{
	for (size_t i = 0; i < f->n; i++)
		if (strstr(f->text[i], e->name) ||
		    (e->alt[0] && strstr(f->text[i], e->alt)))
			return true;
	return false;
}

/* Whether value p[0..n) of e, which decodes, fails a check verify makes
 * of it (verify.c invariants 2 and 3): a message whose id is not its
 * key, which put would refuse (the content limit aside), or whose
 * content_hash is not its content's; a static whose SHAs are not its
 * content's. */
static bool checks_fail(shm_env *env, const stored *e, const uint8_t *p,
                        size_t n)
{
	shm_options any = *shm_env_options(env);
	shm_static *st;
	shm_msg *m;
	char hex[65];
	bool bad;

	any.max_content = UINT32_MAX;
	if (e->kind == 'M') {
		assert_int_equal(shm_msg_decode(p, n, &m), 0);
		bad = memcmp(m->id.b, e->key.p, 16) ||
		      shm__msg_validate(&any, m) ||
		      m->content_hash != XXH3_64bits(m->content, m->content_len);
		free(m);
		return bad;
	}
	if (e->kind != 'S')
		return false;
	assert_int_equal(shm_static_decode(p + 8, n - 8, &st), 0);
	shm_sha_hex(SHM_SHA1_GIT, st->content, st->content_len, hex);
	bad = strcmp(hex, st->sha1) != 0;
	shm_sha_hex(SHM_SHA256, st->content, st->content_len, hex);
	bad = bad || strcmp(hex, st->sha256) != 0;
	shm_static_free(st);
	return bad;
}

static void raw_put(shm_env *env, const stored *e, const void *p, size_t n)
{
	MDB_txn *txn;
	MDB_val k = {e->key.n, e->key.p}, v = {n, (void *)p};

	assert_int_equal(mdb_txn_begin(env->mdb, NULL, 0, &txn), 0);
	assert_int_equal(mdb_put(txn, e->dbi, &k, &v, 0), 0);
	assert_int_equal(mdb_txn_commit(txn), 0);
}

/* What the reads of libshm make of e's damaged value: a message or a
 * static is served if its decoder takes it, else SHM_ECORRUPT with a
 * printable text; a room page, SHM_ECORRUPT or a page. */
static void read_damaged(shm_env *env, const stored *e, bool decodes)
{
	shm_msg *m = NULL, **page = NULL;
	const shm_msg *view;
	shm_static *st = NULL;
	shm_rtxn *t;
	shm_uuid id, w;
	size_t n = 0;
	int rc;

	if (e->kind == 'M') {
		memcpy(id.b, e->key.p, 16);
		rc = shm_msg_get(env, &id, &m);
		assert_int_equal(rc, decodes ? 0 : SHM_ECORRUPT);
		if (rc)
			fz_printable("get of a damaged value", shm_errmsg());
		assert_int_equal(shm_rtxn_begin(env, &t), 0);
		rc = shm_msg_view(t, &id, &view);
		assert_int_equal(rc, decodes ? 0 : SHM_ECORRUPT);
		if (rc == 0)
			tu_assert_msg_equal(view, m);
		else
			fz_printable("view of a damaged value", shm_errmsg());
		shm_rtxn_end(t);
		free(m);
		for (int i = 0; i < 2; i++) {
			shm_msg x = fz_sample(i ? 0 : 1);
			rc = shm_room_page(env, x.room_id, 0, 50, &page, &n);
			if (rc) {
				assert_int_equal(rc, SHM_ECORRUPT);
				fz_printable("page of a damaged value",
				                 shm_errmsg());
			}
			shm_msgs_free(page, n);
			page = NULL;
			n = 0;
		}
	} else if (e->kind == 'S') {
		assert_int_equal(shm_uuid_parse(WEBSITE, &w), 0);
		char obj[SHM_MAX_OBJECT + 1];
		snprintf(obj, sizeof obj, "%.*s", (int)e->key.n - 16,
		         (const char *)e->key.p + 16);
		rc = shm_static_peek(env, &w, obj, &st);
		assert_int_equal(rc, decodes ? 0 : SHM_ECORRUPT);
		if (rc)
			fz_printable("peek of a damaged static", shm_errmsg());
		shm_static_free(st);
	}
}

/* shmctl verify DIR on the damaged environment: exit 1, e named. */
static void shmctl_verify(const char *dir, const stored *e)
{
	const char *shmctl = getenv("SHMCTL");
	char out[4200], cmd[8600], line[4096];
	bool named = false;
	FILE *f;
	int st;

	if (!shmctl)
		return;
	snprintf(out, sizeof out, "%s.out", dir);
	snprintf(cmd, sizeof cmd, "'%s' -e '%s' verify >'%s' 2>&1", shmctl, dir,
	         out);
	st = system(cmd);
	assert_non_null(f = fopen(out, "r"));
	while (fgets(line, sizeof line, f)) {
		named = named || strstr(line, e->name) ||
		        (e->alt[0] && strstr(line, e->alt));
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 1)
			fprintf(stderr, "shmctl verify: %s", line);
	}
	fclose(f);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 1);
	unlink(out);
	if (!named)
		fail_msg("shmctl verify does not name %s", e->name);
}

/* A damaged data.mdb read back: one value of every kind at a time (a
 * message, a static, a dead letter, a log record) replaced by a mutation
 * of itself or another's tail. A value its decoder refuses is named by
 * shm_verify (and shmctl verify, every 500th) in printable text; reads
 * serve it exactly when it decodes, else say SHM_ECORRUPT. Restored
 * after each: the environment verifies clean at the end. */
static void test_damaged_l1_values_are_named_never_served(void **state)
{
	char *dir = tu_tmpdir();
	stored *v;
	size_t nv;
	shm_env *env = stored_env(dir, &v, &nv);
	fz_input b = {0};
	uint64_t s = fz_seed();
	unsigned long n = fz_iters(10000), ok = 0, runs = 0;
	double t0 = fz_now();

	for (unsigned long i = 0; i < n; i++) {
		const stored *e = &v[fz_below(&s, nv)], *o = &v[fz_below(&s, nv)];
		found f = {0};
		size_t problems = 0;
		bool decodes;

		fz_set(&b, e->val.p, e->val.n);
		for (size_t k = 1 + fz_below(&s, 4); k > 0; k--)
			fz_mutate(&b, &o->val, &s);
		decodes = stored_decodes(e, b.p, b.n);
		ok += decodes;
		raw_put(env, e, b.p, b.n);
		assert_int_equal(shm_verify(env, collect, &f, &problems), 0);
		if (f.bad[0])
			fail_msg("verify: a problem not printable: %s", f.bad);
		if ((!decodes || checks_fail(env, e, b.p, b.n)) &&
		    (!problems || !names(&f, e)))
			fail_msg("verify does not name %s (%zu problems, first: "
			         "%s)", e->name, problems,
			         f.n ? f.text[0] : "none");
		read_damaged(env, e, decodes);
		if (!decodes && (i % 500 == 0 || i + 1 == n)) {
			shmctl_verify(dir, e);
			runs++;
		}
		raw_put(env, e, e->val.p, e->val.n);
	}
	fz_report("damaged data.mdb", n, ok, t0);
	fprintf(stderr, "  (shmctl verify run %lu times)\n", runs);
	assert_int_equal(tu_verify(env), 0);
	shm_env_close(env);
	stored_free(v, nv);
	free(b.p);
	tu_rmdir(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stored_values_take_any_mutation),
		cmocka_unit_test(test_damaged_l1_values_are_named_never_served),
	};

	fz_init();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
