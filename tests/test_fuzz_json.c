/*
 * tests/test_fuzz_json.c - mutational fuzzing (tests/fuzz.h) of message
 * JSON wherever it comes from outside the process: shm_msg_from_json,
 * shmctl import's lines, PostgreSQL's rows as read-through reads them,
 * and Redis values as a read-through get takes them (JSON or LZ4 frames,
 * any reply, from a Redis stand-in). Every input refused gets a JSON code
 * (a get SHM_EL2) and a printable text; every message accepted is one put
 * takes, round-trips through the writer and, from Redis, is what L1 was
 * filled with. Redis's statics (<website>-<object>-static) are written by
 * the flusher and read by no one: no decoder to fuzz.
 */
#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <lz4frame.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

#include "codec.h"
#include "pg_row.h"
#include "../flusher/fl.h"
#include "fuzz.h"
#include "testutil.h"

/* ------------------------------------------------------ message JSON */

static bool json_code(int rc)
{
	return rc == SHM_EJSON || rc == SHM_EUUID || rc == SHM_ETYPE ||
	       rc == SHM_ETIME || rc == SHM_EUTF8 || rc == SHM_ENUL ||
	       rc == SHM_ETOOBIG || rc == SHM_EINVAL;
}

/* m (read from JSON), given an id and a created_at where it has none, as
 * put would: written as JSON, read back, written again, it is the same. */
static void assert_json_round_trip(shm_msg *m)
{
	char *j1, *j2, err[512];
	size_t n1, n2;
	shm_msg *m2;

	if (shm_uuid_is_nil(&m->id))
		assert_int_equal(shm_uuid_parse(FZ_IDS[4], &m->id), 0);
	if (!m->created_at)
		m->created_at = 1;
	j1 = fz_to_json(m, &n1);
	if (shm_msg_from_json(j1, n1, &m2, err, sizeof err))
		fail_msg("the writer's JSON is refused: %s\n%.*s", err, (int)n1,
		         j1);
	m2->content_hash = m->content_hash; /* the reader ignores it */
	tu_assert_msg_equal(m, m2);
	j2 = fz_to_json(m2, &n2);
	assert_int_equal(n1, n2);
	assert_memory_equal(j1, j2, n1);
	free(j1);
	free(j2);
	free(m2);
}

/* One input of the JSON reader: 0 and *out, or a JSON code, a printable
 * reason and nothing returned. */
static int read_json(const uint8_t *p, size_t n, shm_msg **out)
{
	char err[512] = "x";
	int rc = shm_msg_from_json((const char *)p, n, out, err, sizeof err);

	if (rc == 0) {
		assert_string_equal(err, "");
		return 0;
	}
	assert_null(*out);
	if (!json_code(rc))
		fail_msg("shm_msg_from_json: code %d (%s) for %zu bytes: %.*s",
		         rc, err, n, (int)n, (const char *)p);
	fz_printable("shm_msg_from_json", err);
	assert_int_equal(strncmp(shm_errmsg(), err, strlen(err)), 0);
	return rc;
}

/* The reader on mutations of sd; a message it accepts round-trips, and
 * put's checks (what import and read-through add) judge it with a
 * printable text. */
static void fuzz_json(const char *target, const fz_seeds *sd, unsigned long n)
{
	shm_options opt;
	fz_input b = {0};
	uint64_t s = fz_seed();
	unsigned long ok = 0;
	double t0 = fz_now();

	shm_options_init(&opt);
	for (unsigned long i = 0; i < n; i++) {
		shm_msg *m;
		uint8_t *x;
		fz_pick(&b, sd, &s);
		x = fz_exact(&b, false);
		if (read_json(x, b.n, &m)) {
			free(x);
			continue;
		}
		free(x);
		ok++;
		if (shm__msg_validate(&opt, m))
			fz_printable("shm__msg_validate", shm_errmsg());
		assert_json_round_trip(m);
		free(m);
	}
	fz_report(target, n, ok, t0);
	free(b.p);
}

static void test_message_json_takes_any_mutation(void **state)
{
	fz_seeds sd = {0};

	for (int i = 0; i < FZ_SAMPLES; i++) {
		shm_msg m = fz_sample(i);
		size_t n;
		char *j = fz_to_json(&m, &n);
		fz_seed_add(&sd, j, n);
		free(j);
	}
	fuzz_json("message JSON", &sd, fz_iters(50000));
	fz_seeds_free(&sd);
}

/* ------------------------------------------------ shmctl import */

#define BOM "\xef\xbb\xbf"

/* Whether shmctl import takes line p[0..n) (line lineno, without its
 * '\n'), judged here as import says it judges: a blank line is no line, a
 * byte order mark starts line 1 only, then the reader and put's checks. */
static bool import_refuses(const uint8_t *p, size_t n, size_t lineno,
                           bool *blank)
{
	shm_options opt;
	shm_msg *m;
	bool bad;

	*blank = false;
	while (n && p[n - 1] == '\r')
		n--;
	if (n >= 3 && !memcmp(p, BOM, 3)) {
		if (lineno > 1)
			return true;
		p += 3;
		n -= 3;
	}
	size_t sp = 0;
	while (sp < n && (p[sp] == ' ' || p[sp] == '\t'))
		sp++;
	if (sp == n) {
		*blank = true;
		return false;
	}
	if (read_json(p, n, &m))
		return true;
	shm_options_init(&opt);
	bad = m->content_len > opt.max_content || shm__msg_validate(&opt, m);
	free(m);
	return bad;
}

/* A line whose id comes first (as the writer puts it) given a random one:
 * lines that are no repeat of another's id. */
static void new_id(fz_input *b, uint64_t *s)
{
	static const char pre[] = "{\"id\":\"";
	shm_uuid id;
	char u[37];

	if (b->n < sizeof pre - 1 + 36 || memcmp(b->p, pre, sizeof pre - 1))
		return;
	for (int i = 0; i < 16; i++)
		id.b[i] = (uint8_t)fz_rnd(s);
	shm_uuid_format(&id, u);
	memcpy(b->p + sizeof pre - 1, u, 36);
}

/* Whether a file (path) has a line starting "LINE: ", and every line is
 * printable. */
static bool names_line(const char *path, size_t lineno)
{
	char line[8192], pre[32];
	bool named = false;
	FILE *f = fopen(path, "r");

	assert_non_null(f);
	snprintf(pre, sizeof pre, "%zu: ", lineno);
	while (fgets(line, sizeof line, f)) {
		line[strcspn(line, "\n")] = 0;
		fz_printable("shmctl import's stderr", line);
		named = named || !strncmp(line, pre, strlen(pre));
	}
	fclose(f);
	return named;
}

/* shmctl import of files of mutated message lines (with blank lines, CR
 * line ends, a byte order mark): exit 0, every message imported, only if
 * every line is one put takes (as the reader and put's checks judge it
 * here), the environment then verifying clean; else 65 (a line refused,
 * or an id twice, a reply that cannot be one), each line refused here
 * named "LINE: reason" printably and nothing created. */
static void test_shmctl_import_takes_any_mutation(void **state)
{
	const char *shmctl = getenv("SHMCTL");
	char *dir = tu_tmpdir(), file[4200], env_dir[4200], out[4200],
	     err[4200], cmd[20000];
	unsigned long lines = fz_iters(500), ok = 0, imported = 0;
	uint64_t s = fz_seed();
	fz_seeds sd = {0};
	fz_input b = {0};
	double t0 = fz_now();

	if (!shmctl) {
		fprintf(stderr, "SKIP: SHMCTL is not set (run through "
		        "tests/run.sh)\n");
		tu_rmdir(dir);
		free(dir);
		skip();
	}
	for (int i = 0; i < FZ_SAMPLES; i++) {
		shm_msg m = fz_sample(i);
		size_t n;
		char *j = fz_to_json(&m, &n);
		fz_seed_add(&sd, j, n);
		free(j);
	}
	snprintf(file, sizeof file, "%s/in.jsonl", dir);
	snprintf(env_dir, sizeof env_dir, "%s/env", dir);
	snprintf(out, sizeof out, "%s/out", dir);
	snprintf(err, sizeof err, "%s/err", dir);
	snprintf(cmd, sizeof cmd, "'%s' -e '%s' import '%s' >'%s' 2>'%s'",
	         shmctl, env_dir, file, out, err);
	for (unsigned long done = 0; done < lines;) {
		size_t n = 1 + fz_below(&s, 20), messages = 0;
		bool bad[21] = {false}, any = false, blank;
		bool easy = fz_below(&s, 4) == 0; /* most lines left whole */
		FILE *f = fopen(file, "w");
		int st;

		assert_non_null(f);
		for (size_t l = 1; l <= n; l++, done++) {
			if (fz_below(&s, 16) == 0) {
				fz_set(&b, " \t", 2);
			} else {
				if (easy && fz_below(&s, 4)) {
					size_t a = fz_below(&s, sd.n);
					fz_set(&b, sd.v[a].p, sd.v[a].n);
				} else {
					fz_pick(&b, &sd, &s);
				}
				if (fz_below(&s, 4))
					new_id(&b, &s);
				for (size_t k = 0; k < b.n; k++)
					if (b.p[k] == '\n')
						b.p[k] = ' ';
				if (l == 1 && fz_below(&s, 8) == 0)
					fz_insert(&b, 0, BOM, 3);
				if (fz_below(&s, 8) == 0)
					fz_insert(&b, b.n, "\r", 1);
			}
			bad[l] = import_refuses(b.p, b.n, l, &blank);
			any = any || bad[l];
			messages += !bad[l] && !blank;
			ok += !bad[l];
			assert_int_equal(fwrite(b.p, 1, b.n, f), b.n);
			assert_int_equal(fputc('\n', f), '\n');
		}
		assert_int_equal(fclose(f), 0);
		st = system(cmd);
		assert_true(WIFEXITED(st));
		if (WEXITSTATUS(st) == 0) {
			char line[256], want[64];
			FILE *o = fopen(out, "r");
			if (any)
				fail_msg("import took a file with a line refused "
				         "here");
			assert_non_null(o);
			assert_non_null(fgets(line, sizeof line, o));
			fclose(o);
			snprintf(want, sizeof want, "imported %zu message%s\n",
			         messages, messages == 1 ? "" : "s");
			if (strcmp(line, want))
				fail_msg("'%s', not '%s'", line, want);
			shm_env *env = tu_open(env_dir, NULL);
			assert_int_equal(tu_verify(env), 0);
			shm_env_close(env);
			tu_rmdir(env_dir);
			imported++;
			continue;
		}
		if (WEXITSTATUS(st) != 65) {
			names_line(err, 0);
			fail_msg("import exited %d", WEXITSTATUS(st));
		}
		for (size_t l = 1; l <= n; l++)
			if (bad[l] && !names_line(err, l))
				fail_msg("import does not name line %zu", l);
		assert_int_equal(access(env_dir, F_OK), -1);
	}
	fz_report("shmctl import lines", lines, ok, t0);
	fprintf(stderr, "  (%lu files imported whole)\n", imported);
	fz_seeds_free(&sd);
	free(b.p);
	tu_rmdir(dir);
	free(dir);
}

/* ------------------------------------------------- PostgreSQL's rows */

static PGconn *pg_connect(void)
{
	const char *info = getenv("SHM_TEST_PG");
	PGconn *c;

	if (!info || !*info)
		return NULL;
	c = PQconnectdb(info);
	if (PQstatus(c) != CONNECTION_OK)
		fail_msg("PostgreSQL: %s", PQerrorMessage(c));
	return c;
}

/* m's row as read-through reads it (pg_row.h), built by PostgreSQL from
 * the columns the flusher writes: its own JSON spacing, key order and
 * timestamps; content without NUL (a text column holds none). */
static char *pg_row(PGconn *c, const shm_msg *m, size_t *len)
{
	char id[37], parent[37], thread[37], user[16], created[40],
	     updated[40], *meta = NULL, *row;
	size_t ml = 0, mcap = 0;
	const char *p[11];
	PGresult *r;

	shm_uuid_format(&m->id, id);
	shm_uuid_format(&m->parent_id, parent);
	shm_uuid_format(&m->thread_id, thread);
	snprintf(user, sizeof user, "%d", (int)m->user_id);
	shm_time_format(m->created_at, created);
	shm_time_format(m->updated_at, updated);
	assert_int_equal(shm_msg_metadata_json_append(m, &meta, &ml, &mcap), 0);
	p[0] = id;
	p[1] = m->room_id;
	p[2] = user;
	p[3] = m->username;
	p[4] = m->content;
	p[5] = shm_msg_type_name(m->type);
	p[6] = created;
	p[7] = m->updated_at ? updated : NULL;
	p[8] = meta;
	p[9] = m->has_parent ? parent : NULL;
	p[10] = m->has_thread ? thread : NULL;
	r = PQexecParams(c, "SELECT " SHM_PG_MSG_JSON " FROM (VALUES ($1::uuid, "
	                 "$2::text, $3::int, $4::text, $5::text, $6::text, "
	                 "$7::timestamptz, $8::timestamptz, $9::jsonb, "
	                 "$10::uuid, $11::uuid)) AS messages(id, room_id, "
	                 "user_id, username, content, message_type, created_at, "
	                 "updated_at, metadata, parent_id, thread_id)",
	                 11, NULL, p, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		fail_msg("PostgreSQL: %s", PQerrorMessage(c));
	*len = (size_t)PQgetlength(r, 0, 0);
	assert_non_null(row = malloc(*len + 1));
	memcpy(row, PQgetvalue(r, 0, 0), *len + 1);
	PQclear(r);
	free(meta);
	return row;
}

static void test_postgres_rows_take_any_mutation(void **state)
{
	PGconn *c = pg_connect();
	fz_seeds sd = {0};

	if (!c) {
		fprintf(stderr, "SKIP: SHM_TEST_PG is not set (run through "
		        "tests/run.sh, which starts PostgreSQL)\n");
		skip();
	}
	for (int i = 0; i < FZ_SAMPLES; i++) {
		shm_msg m = fz_sample(i);
		size_t n;
		char *row;
		if (memchr(m.content, 0, m.content_len))
			continue;
		row = pg_row(c, &m, &n);
		fz_seed_add(&sd, row, n);
		free(row);
	}
	PQfinish(c);
	fuzz_json("PostgreSQL rows", &sd, fz_iters(20000));
	fz_seeds_free(&sd);
}

/* ---------------------------------------- Redis values, through a get */

/* A Redis stand-in on a unix socket: every GET gets the reply the test
 * set (any bytes), anything else +OK. One thread serves every client. */
typedef struct fake {
	int lfd, stop[2];
	pthread_t thread;
	char path[108], url[128];
	pthread_mutex_t lock;
	uint8_t *reply;
	size_t len;
	unsigned long gets;
} fake;

static void fake_set(fake *f, const void *reply, size_t len)
{
	pthread_mutex_lock(&f->lock);
	free(f->reply);
	assert_non_null(f->reply = malloc(len ? len : 1));
	memcpy(f->reply, reply, len);
	f->len = len;
	pthread_mutex_unlock(&f->lock);
}

static bool send_all(int fd, const void *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w <= 0)
			return false;
		p = (const char *)p + w;
		n -= (size_t)w;
	}
	return true;
}

/* Answers the commands whole in r; false once the client is gone. */
static bool fake_answer(fake *f, int fd, redisReader *r)
{
	redisReply *cmd;
	bool ok = true;

	while (ok && redisReaderGetReply(r, (void **)&cmd) == REDIS_OK && cmd) {
		if (cmd->type == REDIS_REPLY_ARRAY && cmd->elements >= 1 &&
		    !strcasecmp(cmd->element[0]->str, "GET")) {
			pthread_mutex_lock(&f->lock);
			f->gets++;
			ok = send_all(fd, f->reply, f->len);
			pthread_mutex_unlock(&f->lock);
		} else {
			ok = send_all(fd, "+OK\r\n", 5);
		}
		freeReplyObject(cmd);
	}
	return ok;
}

static void *fake_serve(void *arg)
{
	enum { MAXC = 16 };
	fake *f = arg;
	struct pollfd pf[MAXC + 2];
	redisReader *rd[MAXC + 2];
	int n = 2;

	pf[0] = (struct pollfd){.fd = f->stop[0], .events = POLLIN};
	pf[1] = (struct pollfd){.fd = f->lfd, .events = POLLIN};
	for (;;) {
		if (poll(pf, (nfds_t)n, -1) < 0)
			continue;
		if (pf[0].revents)
			break;
		if (pf[1].revents && n < MAXC + 2) {
			int c = accept(f->lfd, NULL, NULL);
			if (c >= 0) {
				pf[n] = (struct pollfd){.fd = c, .events = POLLIN};
				rd[n++] = redisReaderCreate();
			}
		}
		for (int i = 2; i < n; i++) {
			char buf[65536];
			ssize_t got;
			if (!pf[i].revents)
				continue;
			got = recv(pf[i].fd, buf, sizeof buf, 0);
			if (got > 0 && redisReaderFeed(rd[i], buf, (size_t)got) ==
			                       REDIS_OK &&
			    fake_answer(f, pf[i].fd, rd[i]))
				continue;
			close(pf[i].fd);
			redisReaderFree(rd[i]);
			pf[i] = pf[--n];
			rd[i--] = rd[n];
		}
	}
	for (int i = 2; i < n; i++) {
		close(pf[i].fd);
		redisReaderFree(rd[i]);
	}
	return NULL;
}

static void fake_start(fake *f, const char *dir)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};

	memset(f, 0, sizeof *f);
	pthread_mutex_init(&f->lock, NULL);
	snprintf(f->path, sizeof f->path, "%s/fake.sock", dir);
	snprintf(a.sun_path, sizeof a.sun_path, "%s", f->path);
	snprintf(f->url, sizeof f->url, "unix://%s", f->path);
	assert_true((f->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) >=
	            0);
	assert_int_equal(bind(f->lfd, (struct sockaddr *)&a, sizeof a), 0);
	assert_int_equal(listen(f->lfd, 16), 0);
	assert_int_equal(pipe(f->stop), 0);
	fake_set(f, "$-1\r\n", 5);
	assert_int_equal(pthread_create(&f->thread, NULL, fake_serve, f), 0);
}

static void fake_stop(fake *f)
{
	assert_int_equal(write(f->stop[1], "x", 1), 1);
	pthread_join(f->thread, NULL);
	close(f->stop[0]);
	close(f->stop[1]);
	close(f->lfd);
	free(f->reply);
	pthread_mutex_destroy(&f->lock);
}

/* Bytes as a bulk string reply. */
static void fake_bulk(fake *f, const uint8_t *p, size_t n)
{
	char head[32];
	size_t hl = (size_t)snprintf(head, sizeof head, "$%zu\r\n", n);
	uint8_t *r = malloc(hl + n + 2);

	assert_non_null(r);
	memcpy(r, head, hl);
	memcpy(r + hl, p, n);
	memcpy(r + hl + n, "\r\n", 2);
	fake_set(f, r, hl + n + 2);
	free(r);
}

/* The replies that are no string, and what a get makes of them. */
static const struct {
	const char *reply;
	int rc;
} other_replies[] = {
	{"$-1\r\n", SHM_ENOTFOUND},
	{":1\r\n", SHM_EL2},
	{"*1\r\n$1\r\nx\r\n", SHM_EL2},
	{"+OK\r\n", SHM_EL2},
	{"-WRONGTYPE Operation against a key holding the wrong kind of "
	 "value\r\n", SHM_EL2},
	{"-ERR fuzz \x1b[2J\xff\r\n", SHM_EL2},
};

/* Whether L1 holds id (a read of L1 alone). */
static int l1_view(shm_env *env, const shm_uuid *id, shm_msg *copy_of)
{
	shm_rtxn *t;
	const shm_msg *v;
	int rc;

	assert_int_equal(shm_rtxn_begin(env, &t), 0);
	rc = shm_msg_view(t, id, &v);
	if (rc == 0 && copy_of)
		tu_assert_msg_equal(v, copy_of);
	shm_rtxn_end(t);
	return rc;
}

/* b as an LZ4 frame, with or without its content size and checksums. */
static void lz4_frame(fz_input *b, uint64_t *s)
{
	LZ4F_preferences_t prefs;
	size_t cap, n;
	void *dst;

	memset(&prefs, 0, sizeof prefs);
	if (fz_below(s, 2))
		prefs.frameInfo.contentSize = b->n;
	if (fz_below(s, 4) == 0)
		prefs.frameInfo.contentChecksumFlag = LZ4F_contentChecksumEnabled;
	if (fz_below(s, 4) == 0)
		prefs.frameInfo.blockChecksumFlag = LZ4F_blockChecksumEnabled;
	cap = LZ4F_compressFrameBound(b->n, &prefs);
	assert_non_null(dst = malloc(cap));
	n = LZ4F_compressFrame(dst, cap, b->p, b->n, &prefs);
	assert_false(LZ4F_isError(n));
	fz_set(b, dst, n);
	free(dst);
}

/* The values the flusher writes for sample messages (their JSON, an LZ4
 * frame above the threshold; every one framed as well), mutated, as the
 * only level of a get, and their JSON changed then framed or not: a
 * value that is not the message asked for as put
 * would take it is SHM_EL2 naming "Redis value" and leaves L1 as it was;
 * one accepted is served, filled into L1 as served, and round-trips. */
static void test_redis_values_take_any_mutation(void **state)
{
	char *dir = tu_tmpdir();
	shm_options o;
	shm_env *env;
	shm_uuid ids[FZ_SAMPLES];
	fz_seeds sd = {0}, js = {0};
	fz_input b = {0};
	fake f;
	uint64_t s = fz_seed();
	unsigned long n = fz_iters(20000), ok = 0, framed = 0;
	double t0 = fz_now();

	fake_start(&f, dir);
	shm_options_init(&o);
	o.redis_url = f.url;
	o.l2_timeout_ms = 10000;
	env = tu_open(dir, &o);
	for (int i = 0; i < FZ_SAMPLES; i++) {
		shm_msg m = fz_sample(i);
		char *j = NULL;
		size_t jl = 0, cap = 0, vl;
		const void *v;
		bool owned;
		ids[i] = m.id;
		assert_int_equal(shm_msg_json_append(&m, &j, &jl, &cap, NULL,
		                                     NULL), 0);
		fz_seed_add(&js, j, jl);
		for (size_t th = shm_env_options(env)->compress_threshold;;
		     th = 0) {
			assert_int_equal(fl_lz4_maybe(j, jl, th, &v, &vl, &owned),
			                 0);
			fz_seed_add(&sd, v, vl);
			if (owned)
				free((void *)v);
			if (!th)
				break;
		}
		free(j);
	}
	for (unsigned long i = 0; i < n; i++) {
		int want = 0, rc;
		shm_msg *m = NULL;
		size_t a;

		if (fz_below(&s, 2)) { /* the value, framed or not, changed */
			a = fz_pick(&b, &sd, &s) / 2;
		} else { /* the JSON changed, then framed or not */
			a = fz_pick(&b, &js, &s);
			if (fz_below(&s, 2))
				lz4_frame(&b, &s);
		}

		if (fz_below(&s, 64) == 0) {
			size_t k = fz_below(&s, sizeof other_replies /
			                             sizeof *other_replies);
			fake_set(&f, other_replies[k].reply,
			         strlen(other_replies[k].reply));
			want = other_replies[k].rc;
		} else {
			fake_bulk(&f, b.p, b.n);
			framed += b.n >= 4 && !memcmp(b.p, "\x04\x22\x4d\x18", 4);
		}
		rc = shm_msg_get(env, &ids[a], &m);
		if (rc) {
			assert_null(m);
			if (rc != (want ? want : SHM_EL2))
				fail_msg("get: %d, not %d: %s", rc, want,
				         shm_errmsg());
			fz_printable("get through Redis", shm_errmsg());
			if (!want && !strstr(shm_errmsg(), "Redis value"))
				fail_msg("a refused value is not named: %s",
				         shm_errmsg());
			assert_int_equal(l1_view(env, &ids[a], NULL),
			                 SHM_ENOTFOUND);
			continue;
		}
		assert_int_equal(want, 0);
		ok++;
		assert_memory_equal(m->id.b, ids[a].b, 16);
		assert_int_equal(m->content_hash,
		                 XXH3_64bits(m->content, m->content_len));
		assert_int_equal(shm__msg_validate(&o, m), 0);
		/* filled as served, then dropped: the next get asks Redis */
		assert_int_equal(l1_view(env, &ids[a], m), 0);
		uint64_t dropped = 0;
		assert_int_equal(shm_l1_invalidate(env, SHM_INVAL_MSG, ids[a].b,
		                                   16, &dropped), 0);
		assert_int_equal(dropped, 1);
		assert_json_round_trip(m);
		shm_msg_free(m);
	}
	fz_seeds_free(&js);
	fz_report("Redis values", n, ok, t0);
	fprintf(stderr, "  (%lu of them LZ4 frames, %lu gets answered)\n",
	        framed, f.gets);
	assert_int_equal(tu_verify(env), 0);
	shm_env_close(env);
	fake_stop(&f);
	fz_seeds_free(&sd);
	free(b.p);
	tu_rmdir(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_message_json_takes_any_mutation),
		cmocka_unit_test(test_shmctl_import_takes_any_mutation),
		cmocka_unit_test(test_postgres_rows_take_any_mutation),
		cmocka_unit_test(test_redis_values_take_any_mutation),
	};

	fz_init();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
