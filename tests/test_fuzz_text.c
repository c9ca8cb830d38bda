/*
 * tests/test_fuzz_text.c - mutational fuzzing (tests/fuzz.h) of the text
 * decoders of what comes from outside the process: the flusher's
 * invalidation messages as the Redis channel delivers them
 * (fl_inval_parse), Redis URLs (shm_redis_url_parse), conninfos
 * (shm__pg_check_conninfo), UUIDs and RFC 3339 timestamps. Every input
 * refused gets its documented code and a printable text; every one taken
 * is written again and reads back the same (a timestamp's instant also
 * agrees with timegm's, a conninfo is one libpq parses).
 */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "codec.h"
#include "conninfo.h"
#include "internal.h"
#include "../flusher/invalidate.h"
#include "fuzz.h"
#include "testutil.h"

/* ------------------------------------------- invalidation messages */

/* k's room as the wire has it (invalidate.h): bytes up to space, '%' and
 * DEL as %XX. */
static void add_room(fl_buf *o, const char *room)
{
	for (const unsigned char *c = (const unsigned char *)room; *c; c++)
		assert_int_equal(*c <= ' ' || *c == '%' || *c == 0x7f
		                         ? fl_buf_addf(o, "%%%02X", *c)
		                         : fl_buf_add(o, c, 1),
		                 0);
}

/* m written again in format 2 (the test's own writer). */
static void inval_write(const fl_inval_msg *m, fl_buf *o)
{
	char u[37];

	o->len = 0;
	assert_int_equal(fl_buf_addf(o, "shm-inval 2 %s\n", m->env_id), 0);
	for (size_t i = 0; i < m->n; i++) {
		const shm_inval_key *k = &m->keys[i];
		shm_uuid id;
		memcpy(id.b, k->key, 16);
		shm_uuid_format(&id, u);
		assert_int_equal(fl_buf_addf(o, "%c %s", k->kind == SHM_INVAL_MSG
		                                            ? 'm' : 's', u), 0);
		if (k->kind == SHM_INVAL_STATIC)
			assert_int_equal(fl_buf_add(o, " ", 1) ||
			                 fl_buf_add(o, (const char *)k->key + 16,
			                            k->klen - 16), 0);
		else if (k->room) {
			assert_int_equal(fl_buf_add_int(o, " ", k->created_at,
			                                " "), 0);
			add_room(o, k->room);
		}
		assert_int_equal(fl_buf_add(o, "\n", 1), 0);
	}
}

/* What a parsed message holds, as shm_l1_invalidate_many takes it. */
static void assert_inval_keys(const fl_inval_msg *m)
{
	size_t n = strlen(m->env_id);

	assert_true(n > 0);
	for (size_t i = 0; i < n; i++)
		assert_true(m->env_id[i] > ' ' && m->env_id[i] < 0x7f);
	for (size_t i = 0; i < m->n; i++) {
		const shm_inval_key *k = &m->keys[i];
		if (k->kind == SHM_INVAL_STATIC) {
			assert_true(k->klen > 16 && k->klen <= SHM_OBJKEY_MAX);
			assert_null(k->room);
			continue;
		}
		assert_int_equal(k->kind, SHM_INVAL_MSG);
		assert_int_equal(k->klen, 16);
		/* a message's time, or none (version 1) */
		assert_true(k->created_at >= 0 &&
		            k->created_at <= SHM_TIME_MAX_US);
		if (!k->room)
			continue;
		assert_true(k->created_at >= 1);
		assert_int_equal(shm__check_text("room", k->room,
		                                 strlen(k->room), SHM_MAX_ROOM,
		                                 false), 0);
	}
}

static void assert_same_keys(const fl_inval_msg *a, const fl_inval_msg *b)
{
	assert_string_equal(a->env_id, b->env_id);
	assert_int_equal(a->n, b->n);
	for (size_t i = 0; i < a->n; i++) {
		const shm_inval_key *x = &a->keys[i], *y = &b->keys[i];
		assert_int_equal(x->kind, y->kind);
		assert_int_equal(x->klen, y->klen);
		assert_memory_equal(x->key, y->key, x->klen);
		assert_int_equal(x->room == NULL, y->room == NULL);
		if (x->room) {
			assert_string_equal(x->room, y->room);
			assert_int_equal(x->created_at, y->created_at);
		}
	}
}

/* The messages a flusher publishes for real writes (rooms that need
 * escaping, statics with UUID IDs in either case), and the same in format
 * 1 (ids alone), mutated, as the subscriber receives them: refused with a
 * printable reason, or keys shm_l1_invalidate_many takes (never a key
 * that would fail the drop, which makes the subscriber drop all of L1),
 * which the format writes again the same. */
static void test_invalidation_messages_take_any_mutation(void **state)
{
	static const char *const rooms[] = {"g\xc3\xa9n\xc3\xa9ral", "a b%c\nd",
	                                    "%", "r\x7f\t", "\xf0\x9f\x98\x80"};
	char *dir = tu_tmpdir();
	shm_env *env = tu_open(dir, NULL);
	fl_batch batch;
	fl_buf out = {0}, again = {0};
	fl_inval_msg m, m2;
	shm_log_iter *it;
	shm_log_rec r;
	shm_uuid w;
	size_t ends[8], nm;
	fz_seeds sd = {0};
	fz_input b = {0};
	uint64_t s = fz_seed(), dropped, kept;
	unsigned long n = fz_iters(100000), ok = 0;
	double t0 = fz_now();
	char err[200];

	memset(&m, 0, sizeof m);
	memset(&m2, 0, sizeof m2);
	for (int i = 0; i < FZ_SAMPLES; i++) {
		shm_msg x = fz_sample(i);
		x.room_id = rooms[i];
		assert_int_equal(shm_msg_put(env, &x), 0);
	}
	assert_int_equal(shm_uuid_parse(FZ_IDS[0], &w), 0);
	assert_int_equal(shm_static_put(env, &w, "Page/about-us", "<p>", 3,
	                                NULL), 0);
	assert_int_equal(shm_static_put(env, &w, "Person/7F3C0000-0000-4000-"
	                                "8000-00000000ABCD", "x", 1, NULL), 0);
	fl_batch_init(&batch);
	assert_int_equal(shm_log_iter_open(env, 0, &it), 0);
	while (shm_log_iter_next(it, &r) == 0)
		assert_int_equal(fl_batch_add(&batch, &r), 0);
	shm_log_iter_close(it);
	assert_int_equal(fl_inval_encode("hostA", &batch, &out, ends, 8, &nm),
	                 0);
	assert_int_equal(nm, 1);
	fz_seed_add(&sd, out.p, out.len);
	assert_int_equal(fl_inval_parse(out.p, out.len, &m, err, sizeof err), 0);
	assert_int_equal(m.n, FZ_SAMPLES + 2);
	/* format 1: a host not upgraded yet */
	again.len = 0;
	assert_int_equal(fl_buf_adds(&again, "shm-inval 1 hostB\n"), 0);
	for (size_t i = 0; i < m.n; i++) {
		char u[37];
		shm_uuid id;
		memcpy(id.b, m.keys[i].key, 16);
		shm_uuid_format(&id, u);
		if (m.keys[i].kind == SHM_INVAL_MSG)
			assert_int_equal(fl_buf_addf(&again, "m %s\n", u), 0);
	}
	fz_seed_add(&sd, again.p, again.len);
	for (unsigned long i = 0; i < n; i++) {
		uint8_t *x;
		int rc;
		fz_pick(&b, &sd, &s);
		x = fz_exact(&b, false);
		rc = fl_inval_parse((const char *)x, b.n, &m, err, sizeof err);
		free(x);
		if (rc) {
			fz_printable("fl_inval_parse", err);
			continue;
		}
		ok++;
		assert_inval_keys(&m);
		if (m.rooms_refused)
			fz_printable("fl_inval_parse's room", m.room_why);
		inval_write(&m, &again);
		if (fl_inval_parse(again.p, again.len, &m2, err, sizeof err))
			fail_msg("written again, refused: %s", err);
		assert_same_keys(&m, &m2);
		if (shm_l1_invalidate_many(env, m.keys, m.n, &dropped, &kept))
			fail_msg("a parsed message fails the drop: %s",
			         shm_errmsg());
	}
	fz_report("invalidation messages", n, ok, t0);
	assert_int_equal(tu_verify(env), 0);
	fl_inval_msg_free(&m);
	fl_inval_msg_free(&m2);
	fl_buf_free(&out);
	fl_buf_free(&again);
	fl_batch_free(&batch);
	fz_seeds_free(&sd);
	free(b.p);
	shm_env_close(env);
	tu_rmdir(dir);
	free(dir);
}

/* ------------------------------------------------------ Redis URLs */

/* a written as a URL again (the test's own writer). */
static void url_write(const shm_redis_addr *a, char *out, size_t len)
{
	char user[400] = "", db[24] = "";
	int n;

	if (a->password[0] || a->user[0])
		snprintf(user, sizeof user, "%s:%s@", a->user, a->password);
	if (a->unix_socket) {
		if (a->db)
			snprintf(db, sizeof db, "?db=%d", a->db);
		n = snprintf(out, len, "unix://%s%s%s", user, a->host, db);
	} else {
		n = snprintf(out, len, strchr(a->host, ':')
		                       ? "redis://%s[%s]:%d/%d"
		                       : "redis://%s%s:%d/%d",
		             user, a->host, a->port, a->db);
	}
	assert_true(n > 0 && (size_t)n < len);
}

static void test_redis_urls_take_any_mutation(void **state)
{
	static const char *const urls[] = {
		"redis://localhost", "redis://10.0.0.2:6380/3",
		"redis://app:p@ss:w/rd@cache:1/2", "redis://s3cret@cache/1",
		"redis://[fe80::1%eth0]:6380", "redis://:pw@[::ffff:10.0.0.2]/1",
		"unix:///run/redis.sock?db=5", "unix://app:pw@/tmp/a@b/r.sock",
		"unix://:pw@/r.sock?db=100000",
	};
	fz_seeds sd = {0};
	fz_input b = {0};
	uint64_t s = fz_seed();
	unsigned long n = fz_iters(100000), ok = 0;
	double t0 = fz_now();

	for (size_t i = 0; i < sizeof urls / sizeof *urls; i++)
		fz_seed_add(&sd, urls[i], strlen(urls[i]));
	for (unsigned long i = 0; i < n; i++) {
		shm_redis_addr a, a2;
		char url[1100];
		int rc;

		uint8_t *x;
		fz_pick(&b, &sd, &s);
		x = fz_exact(&b, true);
		rc = shm_redis_url_parse((const char *)x, &a);
		free(x);
		if (rc) {
			assert_int_equal(rc, SHM_EINVAL);
			fz_printable("shm_redis_url_parse", shm_errmsg());
			continue;
		}
		ok++;
		assert_true(a.host[0]);
		assert_true(a.unix_socket ? a.port == 0 && a.host[0] == '/'
		                          : a.port >= 1 && a.port <= 65535);
		assert_true(a.db >= 0 && a.db <= 100000);
		url_write(&a, url, sizeof url);
		if (shm_redis_url_parse(url, &a2))
			fail_msg("'%s' read from '%s' is refused: %s", url,
			         (const char *)b.p, shm_errmsg());
		assert_memory_equal(&a, &a2, sizeof a);
	}
	fz_report("Redis URLs", n, ok, t0);
	fz_seeds_free(&sd);
	free(b.p);
}

/* ------------------------------------------------------- conninfos */

/* libpq's environment is not the test's: its PG* variables, set by
 * whoever runs it, would change the verdicts. */
static void unset_pg_env(void)
{
	extern char **environ;
	char name[64];

	for (size_t i = 0; environ[i];) {
		size_t k = strcspn(environ[i], "=");
		if (strncmp(environ[i], "PG", 2) || k >= sizeof name) {
			i++;
			continue;
		}
		memcpy(name, environ[i], k);
		name[k] = 0;
		unsetenv(name);
	}
}

/* What libpq makes of conninfo given as a connect's dbname: NULL if it
 * cannot parse it; else its options (PQconninfoFree). */
static PQconninfoOption *libpq_parse(const char *conninfo)
{
	bool expands = !strncmp(conninfo, "postgresql://", 13) ||
	               !strncmp(conninfo, "postgres://", 11) ||
	               strchr(conninfo, '=');
	char *err = NULL;
	PQconninfoOption *o = PQconninfoParse(expands ? conninfo : "", &err);

	PQfreemem(err);
	return o;
}

/* Whether why shows the password of o (libpq's options), one no other
 * option's value holds (a port's, say, which is shown). */
static bool shows_password(const PQconninfoOption *o, const char *why)
{
	const char *pw = NULL;

	for (const PQconninfoOption *p = o; p && p->keyword; p++)
		if (!strcmp(p->keyword, "password") && p->val &&
		    strlen(p->val) >= 4)
			pw = p->val;
	if (!pw || !strstr(why, pw))
		return false;
	for (const PQconninfoOption *p = o; p->keyword; p++)
		if (p->val && p->val != pw && strstr(p->val, pw))
			return false;
	return true;
}

static void test_conninfos_take_any_mutation(void **state)
{
	static const char *const infos[] = {
		"host=/tmp port=5433 dbname=shm user=app password=s3cret "
		"connect_timeout=3",
		"host='/var/run/post gres' sslmode=disable keepalives=0 "
		"application_name='a \\' b'",
		"postgresql://app:s3cret@db.example:5432,[::1]:6543/shm?"
		"sslmode=prefer&connect_timeout=2&target_session_attrs=any",
		"postgres:///shm?host=/tmp&port=5432&options=-c%20TimeZone%3DUTC",
		"hostaddr=127.0.0.1,::1 host=a,b port=1,2 "
		"ssl_min_protocol_version=TLSv1.2 ssl_max_protocol_version=TLSv1.3",
		"shm",
	};
	fz_seeds sd = {0};
	fz_input b = {0};
	uint64_t s = fz_seed();
	unsigned long n = fz_iters(50000), ok = 0;
	double t0 = fz_now();

	unset_pg_env();
	for (size_t i = 0; i < sizeof infos / sizeof *infos; i++)
		fz_seed_add(&sd, infos[i], strlen(infos[i]));
	for (unsigned long i = 0; i < n; i++) {
		const char *c;
		char why[512] = "";
		PQconninfoOption *o;
		int rc;

		uint8_t *x;
		fz_pick(&b, &sd, &s);
		c = (const char *)b.p;
		x = fz_exact(&b, true);
		rc = shm__pg_check_conninfo((const char *)x, why, sizeof why);
		free(x);
		o = libpq_parse(c);
		if (rc == 0) {
			ok++;
			if (!o)
				fail_msg("'%s' is taken, libpq cannot parse it", c);
			PQconninfoFree(o);
			continue;
		}
		assert_int_equal(rc, SHM_EINVAL);
		fz_printable("shm__pg_check_conninfo", why);
		if (shows_password(o, why))
			fail_msg("'%s': the reason shows its password: %s", c,
			         why);
		PQconninfoFree(o);
	}
	fz_report("conninfos", n, ok, t0);
	fz_seeds_free(&sd);
	free(b.p);
}

/* --------------------------------------------- UUIDs and timestamps */

/* The instant of an RFC 3339 text shm_time_parse took, by another road:
 * its fields read with sscanf, the date through timegm (glibc's, any
 * year), the fraction's first 6 digits, the offset. */
static int64_t time_oracle(const char *x)
{
	struct tm tm = {0};
	int y, mo, d, h, mi, sec, used = 0, oh = 0, om = 0;
	char sep;
	int64_t frac = 0, off = 0;
	const char *p;

	assert_int_equal(sscanf(x, "%4d-%2d-%2d%c%2d:%2d:%2d%n", &y, &mo, &d,
	                        &sep, &h, &mi, &sec, &used), 7);
	p = x + used;
	if (*p == '.') {
		int n = 0;
		for (p++; *p >= '0' && *p <= '9'; p++, n++)
			if (n < 6)
				frac = frac * 10 + (*p - '0');
		for (; n < 6; n++)
			frac *= 10;
	}
	if (*p == '+' || *p == '-') {
		assert_int_equal(sscanf(p + 1, "%2d:%2d", &oh, &om), 2);
		off = (*p == '-' ? -1 : 1) * (oh * 3600 + om * 60);
	}
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	time_t t = timegm(&tm);
	/* timegm normalizes: a date that is none (Feb 30) comes back other */
	assert_int_equal(tm.tm_mday, d);
	assert_int_equal(tm.tm_mon, mo - 1);
	return ((int64_t)t - off) * 1000000 + frac;
}

static void test_uuids_and_timestamps_take_any_mutation(void **state)
{
	static const int64_t instants[] = {
		1, 999, 1000, INT64_C(1700000000000000),
		INT64_C(1700000000123456), INT64_C(951782400000000),
		SHM_TIME_MAX_US, INT64_C(-62167219200000000),
	};
	static const char *const written[] = {
		"2024-02-29T23:59:59.999999999+14:00",
		"1970-01-01 00:00:00.1-00:30", "2000-01-01t00:00:00z",
	};
	fz_seeds sd = {0};
	fz_input b = {0};
	uint64_t s = fz_seed();
	unsigned long n = fz_iters(200000), ok = 0;
	double t0 = fz_now();
	char t[40], u[37];

	for (size_t i = 0; i < sizeof instants / sizeof *instants; i++) {
		shm_time_format(instants[i], t);
		fz_seed_add(&sd, t, strlen(t));
	}
	for (size_t i = 0; i < sizeof written / sizeof *written; i++)
		fz_seed_add(&sd, written[i], strlen(written[i]));
	for (size_t i = 0; i < FZ_SAMPLES; i++)
		fz_seed_add(&sd, FZ_IDS[i], 36);
	fz_seed_add(&sd, "7F3C0000-0000-4000-8000-00000000ABCD", 36);
	for (unsigned long i = 0; i < n; i++) {
		const char *x;
		int64_t us, us2;
		shm_uuid id;
		int rc;

		fz_pick(&b, &sd, &s);
		x = (const char *)fz_exact(&b, true);
		if ((rc = shm_time_parse(x, &us))) {
			assert_int_equal(rc, SHM_ETIME);
			assert_int_equal(us, 0);
			fz_printable("shm_time_parse", shm_errmsg());
		} else {
			ok++;
			assert_true(us >= INT64_C(-62167219200000000) &&
			            us <= SHM_TIME_MAX_US);
			assert_int_equal(us, time_oracle(x));
			shm_time_format(us, t);
			assert_int_equal(shm_time_parse(t, &us2), 0);
			assert_int_equal(us, us2);
		}
		if ((rc = shm_uuid_parse(x, &id))) {
			assert_int_equal(rc, SHM_EUUID);
			fz_printable("shm_uuid_parse", shm_errmsg());
		} else {
			ok++;
			shm_uuid_format(&id, u);
			assert_int_equal(strlen(x), 36);
			assert_int_equal(strcasecmp(u, x), 0);
		}
		free((void *)x);
	}
	fz_report("UUIDs and timestamps", n, ok, t0);
	fz_seeds_free(&sd);
	free(b.p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_invalidation_messages_take_any_mutation),
		cmocka_unit_test(test_redis_urls_take_any_mutation),
		cmocka_unit_test(test_conninfos_take_any_mutation),
		cmocka_unit_test(test_uuids_and_timestamps_take_any_mutation),
	};

	fz_init();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
