/*
 * tests/test_shmctl_walk.c - shmctl dump, ls, verify and log --dead while
 * writers go on: a reader of their output that stops reading must not hold
 * the writers back (no LMDB snapshot pinned while the output waits, or freed
 * pages are never reused and the map fills), and a walk read in chunks lists
 * every entry once, in key order; shmctl readers shows how many
 * transactions old a snapshot held meanwhile is.
 *
 * The shmctl binary: $SHMCTL, else ../bin/shmctl next to this test binary
 * (BUILD/tests/ -> BUILD/bin/).
 */
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "testutil.h"

static char shmctl_bin[PATH_MAX];

#define N_MSG 2000     /* more output than a pipe and stdio buffer hold */
#define N_EDITS 20000  /* pages rewritten: many times the map's 4 MiB */
#define N_EACH 1100    /* over two chunks of each kind */

/* Starts shmctl -e dir cmd [opt [val]] with stdout into a pipe; *out: its
 * read end, not read until the caller does. */
static pid_t shmctl_start(const char *dir, const char *cmd, const char *opt,
                          const char *val, int *out)
{
	int p[2];
	pid_t pid;

	assert_int_equal(pipe(p), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(p[1], 1);
		close(p[0]);
		close(p[1]);
		execl(shmctl_bin, "shmctl", "-e", dir, cmd, opt, val,
		      (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	tu_child_add(pid);
	*out = p[0];
	return pid;
}

/* Waits (10 s at most) for the pipe to be full: shmctl blocked writing. */
static void wait_pipe_full(int fd)
{
	int cap = fcntl(fd, F_GETPIPE_SZ), queued = 0;

	assert_true(cap > 0);
	for (int i = 0; i < 1000 && queued < cap; i++) {
		tu_sleep_ms(10);
		assert_int_equal(ioctl(fd, FIONREAD, &queued), 0);
	}
	assert_int_equal(queued, cap);
}

/* Reads fd to its end: a NUL-terminated malloc'd string. */
static char *drain(int fd)
{
	size_t len = 0, cap = 1 << 16;
	char *buf = malloc(cap);
	ssize_t n;

	assert_non_null(buf);
	while ((n = read(fd, buf + len, cap - len - 1)) > 0) {
		len += (size_t)n;
		if (cap - len < 4096) {
			cap *= 2;
			assert_non_null(buf = realloc(buf, cap));
		}
	}
	assert_int_equal(n, 0);
	close(fd);
	buf[len] = 0;
	return buf;
}

/* Waits for shmctl; asserts its exit status. */
static void shmctl_wait(pid_t pid, int status)
{
	int st;

	assert_int_equal(waitpid(pid, &st, 0), pid);
	tu_child_del(pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), status);
}

static size_t count_lines(const char *s)
{
	size_t n = 0;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}

/* What the flusher would do: everything logged is applied, trim it. */
static void trim_all(shm_env *env)
{
	shm_info in;

	assert_int_equal(shm_env_info(env, &in), 0);
	assert_int_equal(shm_log_trim(env, in.log_last), 0);
}

/* N_MSG messages in a 4 MiB map, their log trimmed; ids gets theirs. */
static shm_env *fill_small_map(const char *dir, shm_uuid *ids)
{
	shm_options o;
	char content[120];

	shm_options_init(&o);
	o.map_size = 4 << 20;
	shm_env *env = tu_open(dir, &o);
	for (int i = 0; i < N_MSG; i++) {
		snprintf(content, sizeof content, "message %d, long enough to "
		         "make the listing bigger than a pipe holds", i);
		shm_msg m = tu_msg("walk", i, content);
		assert_int_equal(shm_msg_put(env, &m), 0);
		ids[i] = m.id;
	}
	trim_all(env);
	return env;
}

/* N_EDITS edits of ids while shmctl CMD is blocked on its full pipe (the
 * log trimmed as a flusher would): every edit succeeds. */
static void edit_behind(shm_env *env, const shm_uuid *ids, const char *cmd)
{
	char content[32];
	int rc = 0, i;

	for (i = 0; i < N_EDITS && rc == 0; i++) {
		snprintf(content, sizeof content, "edit %d", i);
		rc = shm_msg_edit(env, &ids[i % N_MSG], content, strlen(content));
		if (i % 100 == 99)
			trim_all(env);
	}
	if (rc)
		fprintf(stderr, "edit %d of %d behind a stopped shmctl %s: "
		        "%s: %s\n", i, N_EDITS, cmd, shm_strerror(rc),
		        shm_errmsg());
	assert_int_equal(rc, 0);
}

/* shmctl CMD [OPT [VAL]] listing N_MSG lines (the messages of a full small
 * map, or what add put in it) into a pipe that nobody reads, and edits
 * meanwhile: every edit succeeds, then the listing completes with every
 * line once. */
static void writers_go_on_behind_a_stopped_reader(const char *cmd,
                                                  const char *opt,
                                                  const char *val,
                                                  void (*add)(shm_env *))
{
	shm_uuid *ids = calloc(N_MSG, sizeof *ids);
	char *dir = tu_tmpdir(), *out;
	int fd;

	assert_non_null(ids);
	shm_env *env = fill_small_map(dir, ids);
	if (add)
		add(env);
	pid_t pid = shmctl_start(dir, cmd, opt, val, &fd);
	wait_pipe_full(fd);
	edit_behind(env, ids, cmd);
	out = drain(fd);
	shmctl_wait(pid, 0);
	assert_int_equal(count_lines(out), N_MSG);
	free(out);
	free(ids);
	shm_env_close(env);
	tu_rmdir(dir);
	free(dir);
}

static void test_dump_behind_a_stopped_reader_lets_writers_go_on(void **state)
{
	writers_go_on_behind_a_stopped_reader("dump", "--kind", "msg", NULL);
}

static void test_ls_behind_a_stopped_reader_lets_writers_go_on(void **state)
{
	writers_go_on_behind_a_stopped_reader("ls", "--kind", "msg", NULL);
}

/* verify checks one snapshot, but prints after it: N_MSG problems (the
 * log trimmed while "flushed" says 0, so no message has the record its
 * seq promises), the first SHM_VERIFY_REPORT_MAX printed into a pipe
 * nobody reads, and the edits go on. */
static void test_verify_behind_a_stopped_reader_lets_writers_go_on(void **state)
{
	shm_uuid *ids = calloc(N_MSG, sizeof *ids);
	char *dir = tu_tmpdir(), *out;
	int fd;

	assert_non_null(ids);
	shm_env *env = fill_small_map(dir, ids);
	/* behind libshm's back: shm_meta_set refuses its own names */
	MDB_txn *txn;
	assert_int_equal(mdb_txn_begin(env->mdb, NULL, 0, &txn), 0);
	assert_int_equal(shm__meta_put(txn, env, "flushed", 0), 0);
	assert_int_equal(mdb_txn_commit(txn), 0);
	pid_t pid = shmctl_start(dir, "verify", NULL, NULL, &fd);
	wait_pipe_full(fd);
	edit_behind(env, ids, "verify");
	out = drain(fd);
	shmctl_wait(pid, 1);
	assert_true(N_MSG > SHM_VERIFY_REPORT_MAX);
	assert_int_equal(count_lines(out), SHM_VERIFY_REPORT_MAX);
	assert_non_null(strstr(out, "but no such log record for it\n"));
	free(out);
	free(ids);
	shm_env_close(env);
	tu_rmdir(dir);
	free(dir);
}

/* N_MSG dead letters. */
static void add_dead_letters(shm_env *env)
{
	uint8_t raw[50];
	shm_log_rec rec;

	memset(&rec, 0, sizeof rec);
	memset(raw, 0xAB, sizeof raw);
	rec.raw = raw;
	rec.raw_size = sizeof raw;
	for (uint64_t i = 1; i <= N_MSG; i++) {
		rec.seq = i;
		assert_int_equal(shm_dead_add(env, &rec, "pg", "refused for "
		                              "the test"), 0);
	}
}

/* log --dead lists its letters after its read transaction, as dump and
 * ls do. */
static void test_log_dead_behind_a_stopped_reader_lets_writers_go_on(
	void **state)
{
	writers_go_on_behind_a_stopped_reader("log", "--dead", NULL,
	                                      add_dead_letters);
}

/* ------------------------------------------- every entry once, in order */

static const char website_s[] = "8c5e1ab0-6d0a-4c5c-9b61-2f6a0e1d5a11";

/* N_EACH of each kind: messages, statics (Post/NNNN), graph objects
 * (Page/NNNN direct on Block/NNNN) and marks (Person/NNNN saved; the log
 * is not trimmed, which would drop them). */
static shm_env *fill_every_kind(const char *dir, shm_info *in)
{
	shm_env *env = tu_open(dir, NULL);
	shm_uuid w;
	char obj[32], dep[32];

	assert_int_equal(shm_uuid_parse(website_s, &w), 0);
	for (int i = 0; i < N_EACH; i++) {
		shm_msg m = tu_msg("every", i, "x");
		assert_int_equal(shm_msg_put(env, &m), 0);
		snprintf(obj, sizeof obj, "Post/%04d", i);
		assert_int_equal(shm_static_put(env, &w, obj, obj, strlen(obj),
		                                NULL), 0);
		snprintf(obj, sizeof obj, "Page/%04d", i);
		snprintf(dep, sizeof dep, "Block/%04d", i);
		const char *deps[] = {dep};
		assert_int_equal(shm_deps_set(env, &w, obj, true, deps, 1), 0);
		snprintf(obj, sizeof obj, "Person/%04d", i);
		assert_int_equal(shm_object_save(env, &w, obj), 0);
	}
	assert_int_equal(shm_env_info(env, in), 0);
	assert_int_equal(in->messages, N_EACH);
	assert_int_equal(in->statics, N_EACH);
	assert_true(in->graph_objects >= N_EACH);
	assert_int_equal(in->marks, N_EACH);
	return env;
}

/* Per kind, in the order listed: its name, how many lines, and the last
 * key seen (the next one must be greater: key order, none twice). */
typedef struct kindseen {
	char name[8];
	uint64_t n;
	char last[600];
} kindseen;

/* Counts a line of kind with key; asserts kinds come one after another
 * and keys in increasing order within a kind. */
static void seen(kindseen *k, size_t *nk, const char *kind, const char *key)
{
	if (*nk == 0 || strcmp(k[*nk - 1].name, kind) != 0) {
		for (size_t i = 0; i < *nk; i++)
			assert_string_not_equal(k[i].name, kind);
		assert_true(*nk < 4);
		memset(&k[*nk], 0, sizeof *k);
		snprintf(k[*nk].name, sizeof k->name, "%s", kind);
		++*nk;
	}
	kindseen *c = &k[*nk - 1];
	if (c->n && strcmp(c->last, key) >= 0)
		fail_msg("%s: '%s' after '%s'", kind, key, c->last);
	snprintf(c->last, sizeof c->last, "%s", key);
	c->n++;
}

/* ls lines: "msg ID ...", or "KIND WEBSITE OBJECT ..." (one website). */
static size_t check_ls(char *out, kindseen *k)
{
	size_t nk = 0;
	char *save = NULL;

	for (char *l = strtok_r(out, "\n", &save); l;
	     l = strtok_r(NULL, "\n", &save)) {
		char kind[8], a[64], b[512];
		assert_int_equal(sscanf(l, "%7s %63s %511s", kind, a, b), 3);
		if (strcmp(kind, "msg") != 0)
			assert_string_equal(a, website_s);
		seen(k, &nk, kind, strcmp(kind, "msg") ? b : a);
	}
	return nk;
}

/* dump lines: messages (with "id"), then statics (with "object"). */
static size_t check_dump(char *out, kindseen *k)
{
	size_t nk = 0;
	char *save = NULL;

	for (char *l = strtok_r(out, "\n", &save); l;
	     l = strtok_r(NULL, "\n", &save)) {
		json_t *o = json_loads(l, 0, NULL);
		assert_non_null(o);
		const char *id = json_string_value(json_object_get(o, "id"));
		const char *obj = json_string_value(json_object_get(o, "object"));
		assert_true(!id != !obj);
		seen(k, &nk, id ? "msg" : "static", id ? id : obj);
		json_decref(o);
	}
	return nk;
}

static void test_ls_lists_every_entry_once_in_key_order(void **state)
{
	char *dir = tu_tmpdir(), *out;
	shm_info in;
	shm_env *env = fill_every_kind(dir, &in);
	kindseen k[4];
	int fd;

	pid_t pid = shmctl_start(dir, "ls", NULL, NULL, &fd);
	out = drain(fd);
	shmctl_wait(pid, 0);
	assert_int_equal(check_ls(out, k), 4);
	assert_string_equal(k[0].name, "msg");
	assert_int_equal(k[0].n, in.messages);
	assert_string_equal(k[1].name, "static");
	assert_int_equal(k[1].n, in.statics);
	assert_string_equal(k[2].name, "graph");
	assert_int_equal(k[2].n, in.graph_objects);
	assert_string_equal(k[3].name, "mark");
	assert_int_equal(k[3].n, in.marks);
	free(out);
	shm_env_close(env);
	tu_rmdir(dir);
	free(dir);
}

static void test_dump_lists_every_entry_once_in_key_order(void **state)
{
	char *dir = tu_tmpdir(), *out;
	shm_info in;
	shm_env *env = fill_every_kind(dir, &in);
	kindseen k[4];
	int fd;

	pid_t pid = shmctl_start(dir, "dump", NULL, NULL, &fd);
	out = drain(fd);
	shmctl_wait(pid, 0);
	assert_int_equal(check_dump(out, k), 2);
	assert_string_equal(k[0].name, "msg");
	assert_int_equal(k[0].n, in.messages);
	assert_string_equal(k[1].name, "static");
	assert_int_equal(k[1].n, in.statics);
	free(out);
	shm_env_close(env);
	tu_rmdir(dir);
	free(dir);
}

/* The "pid thread txnid age" line of shmctl readers for this process's
 * slot holding a snapshot: its txnid and age; fails if there is none. */
static void held_slot(const char *dir, uint64_t *txnid, uint64_t *age)
{
	char *out, *save = NULL, t[32], a[32];
	bool found = false;
	size_t tid;
	int fd, pid;

	pid_t sp = shmctl_start(dir, "readers", NULL, NULL, &fd);
	out = drain(fd);
	shmctl_wait(sp, 0);
	fprintf(stderr, "%s", out);
	char *l = strtok_r(out, "\n", &save);
	assert_non_null(l);
	assert_int_equal(sscanf(l, " pid thread txnid %31s", a), 1);
	assert_string_equal(a, "age");
	while ((l = strtok_r(NULL, "\n", &save))) {
		assert_int_equal(sscanf(l, "%d %zx %31s %31s", &pid, &tid, t, a),
		                 4);
		if (pid != getpid() || strcmp(t, "-") == 0)
			continue;
		assert_false(found);
		found = true;
		assert_int_equal(sscanf(t, "%" SCNu64, txnid), 1);
		assert_int_equal(sscanf(a, "%" SCNu64, age), 1);
	}
	assert_true(found);
	free(out);
}

/* A read snapshot held while N puts commit is at least N transactions old
 * in shmctl readers, next to its txnid, which does not change; N more
 * make it N older. */
static void test_readers_shows_how_old_a_held_snapshot_is(void **state)
{
	enum { N = 25 };
	char *dir = tu_tmpdir();
	shm_env *env = tu_open(dir, NULL);
	uint64_t txnid, age, txnid2, age2;
	shm_rtxn *t;

	shm_msg m = tu_msg("readers", 1, "before the snapshot");
	assert_int_equal(shm_msg_put(env, &m), 0);
	assert_int_equal(shm_rtxn_begin(env, &t), 0);
	for (int i = 0; i < N; i++) {
		m = tu_msg("readers", i, "after it");
		assert_int_equal(shm_msg_put(env, &m), 0);
	}
	held_slot(dir, &txnid, &age);
	if (age < N)
		fail_msg("snapshot %" PRIu64 " is %" PRIu64 " transactions "
		         "old after %d puts", txnid, age, N);
	for (int i = 0; i < N; i++) {
		m = tu_msg("readers", i, "later still");
		assert_int_equal(shm_msg_put(env, &m), 0);
	}
	held_slot(dir, &txnid2, &age2);
	assert_int_equal(txnid2, txnid);
	assert_true(age2 >= age + N);
	shm_rtxn_end(t);
	shm_env_close(env);
	tu_rmdir(dir);
	free(dir);
}

/* shmctl readers --json: one object per line, per slot, with the human
 * columns' names: pid, thread (the same hex text), txnid and age (numbers,
 * null for a slot holding no snapshot). The held snapshot's match what
 * the human form says; this process's idle slot (a read transaction kept
 * for reuse after a get) has nulls. */
static void test_readers_json_gives_one_object_per_slot(void **state)
{
	char *dir = tu_tmpdir(), *out, *save = NULL;
	shm_env *env = tu_open(dir, NULL);
	uint64_t txnid, age;
	bool held = false, idle = false;
	shm_msg m = tu_msg("readers", 1, "before the snapshot"), *got;
	shm_rtxn *t;
	int fd;

	assert_int_equal(shm_msg_put(env, &m), 0);
	assert_int_equal(shm_rtxn_begin(env, &t), 0);
	assert_int_equal(shm_msg_get(env, &m.id, &got), 0); /* another slot */
	shm_msg_free(got);
	for (int i = 0; i < 5; i++) {
		m = tu_msg("readers", i, "after it");
		assert_int_equal(shm_msg_put(env, &m), 0);
	}
	held_slot(dir, &txnid, &age);
	pid_t sp = shmctl_start(dir, "readers", "--json", NULL, &fd);
	out = drain(fd);
	shmctl_wait(sp, 0);
	fprintf(stderr, "%s", out);
	for (char *l = strtok_r(out, "\n", &save); l;
	     l = strtok_r(NULL, "\n", &save)) {
		json_error_t e;
		json_t *o = json_loads(l, 0, &e);
		if (!o)
			fail_msg("not JSON: '%s': %s", l, e.text);
		json_t *pid = json_object_get(o, "pid");
		json_t *th = json_object_get(o, "thread");
		json_t *tx = json_object_get(o, "txnid");
		json_t *ag = json_object_get(o, "age");
		json_t *dead = json_object_get(o, "dead");
		assert_int_equal(json_object_size(o), 5);
		assert_true(json_is_boolean(dead));
		assert_true(json_is_integer(pid));
		assert_true(json_is_string(th));
		const char *hex = json_string_value(th);
		assert_true(*hex && strspn(hex, "0123456789abcdef") ==
		                            strlen(hex));
		assert_true(json_is_integer(tx) == json_is_integer(ag));
		if (json_integer_value(pid) == getpid())
			assert_true(json_is_false(dead)); /* this process */
		if (json_integer_value(pid) == getpid() && json_is_integer(tx)) {
			assert_false(held);
			held = true;
			assert_int_equal(json_integer_value(tx), txnid);
			assert_int_equal(json_integer_value(ag), age);
		} else if (json_integer_value(pid) == getpid()) {
			assert_true(json_is_null(tx) && json_is_null(ag));
			idle = true;
		}
		json_decref(o);
	}
	assert_true(held);
	assert_true(idle);
	free(out);
	shm_rtxn_end(t);
	shm_env_close(env);
	tu_rmdir(dir);
	free(dir);
}

static int kill_children(void **state)
{
	tu_children_stop(NULL);
	return 0;
}

int main(void)
{
	const char *s = getenv("SHMCTL");
	char exe[PATH_MAX];
	ssize_t n;

	if (s && *s) {
		snprintf(shmctl_bin, sizeof shmctl_bin, "%s", s);
	} else if ((n = readlink("/proc/self/exe", exe, sizeof exe - 1)) > 0) {
		exe[n] = 0;
		snprintf(shmctl_bin, sizeof shmctl_bin, "%s/../bin/shmctl",
		         dirname(exe));
	}
	if (access(shmctl_bin, X_OK) != 0) {
		fprintf(stderr, "test_shmctl_walk: no shmctl at '%s' (set "
		        "SHMCTL)\n", shmctl_bin);
		return 1;
	}
#define T(f) cmocka_unit_test_teardown(f, kill_children)
	const struct CMUnitTest tests[] = {
		T(test_dump_behind_a_stopped_reader_lets_writers_go_on),
		T(test_ls_behind_a_stopped_reader_lets_writers_go_on),
		T(test_verify_behind_a_stopped_reader_lets_writers_go_on),
		T(test_log_dead_behind_a_stopped_reader_lets_writers_go_on),
		T(test_ls_lists_every_entry_once_in_key_order),
		T(test_dump_lists_every_entry_once_in_key_order),
		T(test_readers_shows_how_old_a_held_snapshot_is),
		T(test_readers_json_gives_one_object_per_slot),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
