/* tests/test_env.c - opening environments: several handles, read-only,
 * format version checks, stale readers, errors. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <limits.h>
#include <lmdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "conninfo.h"
#include "internal.h"
#include "testutil.h"

static void test_another_process_sees_the_writes_at_once(void **state)
{
	char *dir = tu_tmpdir();
	shm_env *a = tu_open(dir, NULL);
	shm_msg m = tu_msg("r", 1, "shared");
	int status;
	pid_t pid;

	assert_int_equal(shm_msg_put(a, &m), 0);
	pid = fork();
	if (pid == 0) { /* the fork rule: the child opens its own handle */
		shm_env *b;
		shm_msg *got;
		if (shm_env_open(dir, NULL, &b) || shm_msg_get(b, &m.id, &got))
			_exit(1);
		_exit(strcmp(got->content, "shared") == 0 ? 0 : 2);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	shm_env_close(a);
	tu_rmdir(dir);
	free(dir);
}

struct slot_of {
	pid_t pid;
	int slots, snapshots;
};

static int count_slots_of(int pid, size_t thread, size_t txnid, void *user)
{
	struct slot_of *s = user;

	if (pid == s->pid) {
		s->slots++;
		s->snapshots += txnid != 0;
	}
	return 0;
}

/* The fork rule: a child that closes the handle it inherited releases its
 * own copy only. Its pooled read transactions are the parent's reader
 * slots: freed by the child, one went to another reader, whose slot the
 * parent's next read then found taken and freed, snapshot and all. */
static void test_close_in_a_forked_child_leaves_the_parent_alone(
	void **state)
{
	char *dir = tu_tmpdir();
	shm_env *env = tu_open(dir, NULL);
	shm_msg m = tu_msg("r", 1, "x"), *got;
	struct slot_of parent = {getpid(), 0, 0}, reader;
	shm_counters before, after;
	int fds[2], status;
	char c;
	pid_t pid;

	assert_int_equal(shm_msg_put(env, &m), 0);
	assert_int_equal(shm_msg_get(env, &m.id, &got), 0); /* pools a txn */
	shm_msg_free(got);
	assert_int_equal(shm_stats_shared(env, &before), 0);
	assert_int_equal(shm_msg_get(env, &m.id, &got), 0); /* not published */
	shm_msg_free(got);
	if ((pid = fork()) == 0) {
		shm_env_close(env);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_int_equal(shm__readers(env, count_slots_of, &parent), 0);
	assert_int_equal(parent.slots, 1);

	assert_int_equal(pipe(fds), 0);
	if ((pid = fork()) == 0) { /* a reader holding a snapshot */
		shm_env *e;
		shm_rtxn *t;
		if (shm_env_open(dir, NULL, &e) || shm_rtxn_begin(e, &t) ||
		    write(fds[1], "r", 1) != 1)
			_exit(1);
		pause();
		_exit(0);
	}
	tu_child_add(pid);
	assert_int_equal(read(fds[0], &c, 1), 1);
	assert_int_equal(shm_msg_get(env, &m.id, &got), 0);
	shm_msg_free(got);
	reader = (struct slot_of){pid, 0, 0};
	assert_int_equal(shm__readers(env, count_slots_of, &reader), 0);
	assert_int_equal(reader.snapshots, 1);
	/* the child's copy of the parent's unpublished count stayed unsaid */
	assert_int_equal(shm_stats_shared(env, &after), 0);
	assert_int_equal(after.l1_hits, before.l1_hits + 2);
	kill(pid, SIGKILL);
	assert_int_equal(waitpid(pid, NULL, 0), pid);
	tu_child_del(pid);
	close(fds[0]);
	close(fds[1]);
	shm_env_close(env);
	tu_rmdir(dir);
	free(dir);
}

/* A refused second open of dir: SHM_EBUSY, *out untouched, a text naming
 * the path given, the first handle's and what to do. */
static void assert_open_refused(const char *dir, const shm_options *o,
                                const char *first)
{
	shm_env *other = NULL;
	int rc = shm_env_open(dir, o, &other);

	if (rc == 0) /* as the old code allowed: its close dropped our locks */
		shm_env_close(other);
	assert_int_equal(rc, SHM_EBUSY);
	assert_null(other);
	assert_non_null(strstr(shm_errmsg(), dir));
	assert_non_null(strstr(shm_errmsg(), first));
	assert_non_null(strstr(shm_errmsg(), "already open in this process"));
	assert_non_null(strstr(shm_errmsg(),
	                       "share the first handle between threads"));
}

/* lmdb.h: an environment must not be open twice in one process; closing
 * the second handle drops the process's locks on lock.mdb, and another
 * process's stale-reader check then frees the first handle's reader
 * slots under its reads. A second open, by the same path, another
 * spelling, a symlink or read-only, fails with SHM_EBUSY and changes
 * nothing: the first handle's slots survive a check by another process,
 * and the policy the second would have stored is not. */
static void test_second_open_in_one_process_is_refused(void **state)
{
	char *dir = tu_tmpdir(), dot[PATH_MAX], link[PATH_MAX];
	shm_env *env = tu_open(dir, NULL);
	shm_msg m = tu_msg("r", 1, "x"), *got;
	struct slot_of me = {getpid(), 0, 0};
	shm_options o;
	shm_policy p;
	int status, cleared = -1;
	pid_t pid;

	assert_int_equal(shm_msg_put(env, &m), 0);
	assert_int_equal(shm_msg_get(env, &m.id, &got), 0); /* pools a slot */
	shm_msg_free(got);
	shm_options_init(&o);
	o.l2_ttl_s = 60;
	assert_open_refused(dir, &o, dir);
	snprintf(dot, sizeof dot, "%s/.", dir);
	assert_open_refused(dot, NULL, dir);
	snprintf(link, sizeof link, "%s.link", dir);
	assert_int_equal(symlink(dir, link), 0);
	assert_open_refused(link, NULL, dir);
	o.read_only = true;
	assert_open_refused(link, &o, dir);
	assert_int_equal(shm_policy_get(env, &p), 0);
	assert_int_equal(p.l2_ttl_s, 3600);

	/* another process's stale-reader check finds this one alive */
	if ((pid = fork()) == 0) {
		shm_env *e;
		if (shm_env_open(dir, NULL, &e) ||
		    shm_env_reader_check(e, &cleared))
			_exit(1);
		_exit(cleared == 0 ? 0 : 2);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(shm__readers(env, count_slots_of, &me), 0);
	assert_int_equal(me.slots, 1);
	assert_int_equal(shm_msg_get(env, &m.id, &got), 0);
	shm_msg_free(got);
	shm_env_close(env);
	unlink(link);
	tu_rmdir(dir);
	free(dir);
}

/* Closing the handle takes it out of the registry: the directory opens
 * again, by any name. */
static void test_open_after_close_works(void **state)
{
	char *dir = tu_tmpdir(), link[PATH_MAX];
	shm_env *env;

	snprintf(link, sizeof link, "%s.link", dir);
	for (int i = 0; i < 3; i++) {
		env = tu_open(i == 1 ? link : dir, NULL);
		if (i == 0)
			assert_int_equal(symlink(dir, link), 0);
		assert_open_refused(i == 1 ? dir : link, NULL,
		                    i == 1 ? link : dir);
		shm_env_close(env);
	}
	unlink(link);
	tu_rmdir(dir);
	free(dir);
}

#define OPENERS 8

struct opener {
	const char *dir;
	pthread_barrier_t *go;
	shm_env *env;
	int rc;
};

static void *open_at_once(void *arg)
{
	struct opener *o = arg;

	pthread_barrier_wait(o->go);
	o->rc = shm_env_open(o->dir, NULL, &o->env);
	return NULL;
}

/* Threads opening one directory at once, one that does not exist yet and
 * then one that does: one of them gets the handle, every other one
 * SHM_EBUSY. */
static void test_threads_opening_at_once_get_one_handle(void **state)
{
	char *dir = tu_tmpdir(), sub[PATH_MAX];
	struct opener o[OPENERS];
	pthread_t t[OPENERS];
	pthread_barrier_t go;

	snprintf(sub, sizeof sub, "%s/env", dir);
	for (int round = 0; round < 10; round++) {
		int opened = 0, busy = 0;
		assert_int_equal(pthread_barrier_init(&go, NULL, OPENERS), 0);
		for (int i = 0; i < OPENERS; i++) {
			o[i] = (struct opener){sub, &go, NULL, -1};
			assert_int_equal(pthread_create(&t[i], NULL,
			                                open_at_once, &o[i]), 0);
		}
		for (int i = 0; i < OPENERS; i++) {
			assert_int_equal(pthread_join(t[i], NULL), 0);
			opened += o[i].rc == 0;
			busy += o[i].rc == SHM_EBUSY;
		}
		pthread_barrier_destroy(&go);
		assert_int_equal(opened, 1);
		assert_int_equal(busy, OPENERS - 1);
		for (int i = 0; i < OPENERS; i++)
			shm_env_close(o[i].env);
	}
	tu_rmdir(dir);
	free(dir);
}

/* The fork rule: a child's own open works beside the handle it inherited
 * (that one is the parent's), a second one of its own does not. Closing
 * the inherited handle after its own open would drop the child's locks
 * on lock.mdb and free its reader slots (LMDB frees those of getpid()):
 * its own handle's reader keeps its slot, a stale-reader check by the
 * parent clears nothing, and the child reads on. */
static void test_child_of_fork_opens_its_own_handle(void **state)
{
	char *dir = tu_tmpdir();
	shm_env *env = tu_open(dir, NULL);
	shm_msg m = tu_msg("r", 1, "x");
	int to_parent[2], to_child[2], status, cleared = -1;
	struct slot_of child;
	char c;
	pid_t pid;

	assert_int_equal(shm_msg_put(env, &m), 0);
	assert_int_equal(pipe(to_parent), 0);
	assert_int_equal(pipe(to_child), 0);
	if ((pid = fork()) == 0) {
		shm_env *own, *again = NULL;
		shm_rtxn *t;
		shm_msg *got;
		if (shm_env_open(dir, NULL, &own))
			_exit(1);
		if (shm_env_open(dir, NULL, &again) != SHM_EBUSY || again)
			_exit(2);
		if (shm_msg_get(own, &m.id, &got)) /* pools a slot */
			_exit(3);
		shm_msg_free(got);
		shm_env_close(env); /* the inherited one */
		if (shm_rtxn_begin(own, &t) || write(to_parent[1], "r", 1) != 1 ||
		    read(to_child[0], &c, 1) != 1)
			_exit(4);
		shm_rtxn_end(t);
		if (shm_msg_get(own, &m.id, &got))
			_exit(5);
		shm_msg_free(got);
		shm_env_close(own);
		_exit(0);
	}
	tu_child_add(pid);
	close(to_parent[1]); /* a child that fails ends the read below */
	close(to_child[0]);
	assert_int_equal(read(to_parent[0], &c, 1), 1);
	assert_int_equal(shm_env_reader_check(env, &cleared), 0);
	assert_int_equal(cleared, 0);
	child = (struct slot_of){pid, 0, 0};
	assert_int_equal(shm__readers(env, count_slots_of, &child), 0);
	assert_int_equal(child.slots, 1);
	assert_int_equal(child.snapshots, 1);
	assert_int_equal(write(to_child[1], "g", 1), 1);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	tu_child_del(pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	close(to_parent[0]);
	close(to_child[1]);
	shm_env_close(env);
	tu_rmdir(dir);
	free(dir);
}

static void test_read_only_open_refuses_writes(void **state)
{
	char *dir = tu_tmpdir();
	shm_env *rw = tu_open(dir, NULL), *ro;
	shm_options o;
	shm_msg m = tu_msg("r", 1, "x");
	shm_msg *got;

	assert_int_equal(shm_msg_put(rw, &m), 0);
	shm_env_close(rw);
	shm_options_init(&o);
	o.read_only = true;
	ro = tu_open(dir, &o);
	assert_int_equal(shm_msg_get(ro, &m.id, &got), 0);
	shm_msg_free(got);
	shm_msg n = tu_msg("r", 1, "y");
	assert_int_equal(shm_msg_put(ro, &n), SHM_EREADONLY);
	shm_env_close(ro);
	tu_rmdir(dir);
	free(dir);
}

static void test_read_only_open_of_missing_dir_fails_clearly(void **state)
{
	shm_options o;
	shm_env *env = NULL;

	shm_options_init(&o);
	o.read_only = true;
	assert_int_not_equal(shm_env_open("/nonexistent/shm-env", &o, &env), 0);
	assert_null(env);
	assert_non_null(strstr(shm_errmsg(), "/nonexistent/shm-env"));
}

/* Whether text holds no control byte and is valid UTF-8. */
static bool printable(const char *text)
{
	size_t n = strlen(text);

	for (size_t i = 0; i < n; i++)
		if ((unsigned char)text[i] < 0x20 || text[i] == 0x7f)
			return false;
	return shm__utf8_bad(text, n) == n;
}

/* A directory name with an escape sequence and invalid UTF-8 reaches the
 * error text printably (\xNN), still named: a missing one, and one open
 * already (both names of it). Before, the bytes went into it raw. */
static void test_open_error_shows_the_path_printably(void **state)
{
	char *tmp = tu_tmpdir(), dir[PATH_MAX], want[PATH_MAX];
	shm_options o;
	shm_env *env = NULL, *again = NULL;

	snprintf(dir, sizeof dir, "%s/gone\x1b]0;x\x07\xff", tmp);
	shm_options_init(&o);
	o.read_only = true;
	assert_int_equal(shm_env_open(dir, &o, &env), ENOENT);
	assert_null(env);
	snprintf(want, sizeof want, "%s/gone\\x1b]0;x\\x07\\xff: no shm "
	         "environment here", tmp);
	if (!printable(shm_errmsg()) || !strstr(shm_errmsg(), want))
		fail_msg("%s", shm_errmsg());

	snprintf(dir, sizeof dir, "%s/\x1b[31mred\xc3", tmp);
	env = tu_open(dir, NULL);
	assert_int_equal(shm_env_open(dir, NULL, &again), SHM_EBUSY);
	snprintf(want, sizeof want, "%s/\\x1b[31mred\\xc3: already open in "
	         "this process (as %s/\\x1b[31mred\\xc3)", tmp, tmp);
	if (!printable(shm_errmsg()) || !strstr(shm_errmsg(), want))
		fail_msg("%s", shm_errmsg());
	shm_env_close(env);
	tu_rmdir(tmp);
	free(tmp);
}

/* An error text too long for the thread's buffer is cut between two
 * characters, marked "...", and still ends with its description: whatever
 * the cut's offset within a 4-byte character, shm_errmsg() is UTF-8. */
static void test_long_error_text_is_cut_between_characters(void **state)
{
	const char *face = "\xf0\x9f\x98\x80"; /* U+1F600 */
	char dir[1024], want[128];

	snprintf(want, sizeof want, "... (%s)", strerror(ENOENT));
	for (size_t shift = 0; shift < 4; shift++) {
		shm_options o;
		shm_env *env = NULL;
		size_t len = (size_t)sprintf(dir, "/nonexistent%.*s", (int)shift,
		                             "xxx");

		for (int i = 0; i < 200; i++) /* 50 characters a component */
			len += (size_t)sprintf(dir + len, i % 50 ? "%s" : "/%s",
			                       face);
		shm_options_init(&o);
		o.read_only = true;
		assert_int_equal(shm_env_open(dir, &o, &env), ENOENT);
		assert_null(env);

		const char *e = shm_errmsg();
		size_t n = strlen(e);
		if (shm__utf8_bad(e, n) != n || n < strlen(want) ||
		    strcmp(e + n - strlen(want), want) != 0)
			fail_msg("shift %zu: '%s'", shift, e);
		assert_int_equal(strncmp(e, dir, 40), 0);
	}
}

/* What open_denied says a user who may not write needs. */
#define WRITE_ACCESS "give this user write access to it, e.g. one group " \
                     "for every user of the environment, a setgid " \
                     "directory, umask 0002"

/* In a child that may not bypass file modes (root becomes nobody): opens
 * dir (read_only or not), wants EACCES with want in the text; its exit
 * status says whether it got them. */
static int open_denied_in_child(const char *dir, bool read_only,
                                const char *want)
{
	pid_t pid = fork();
	int st;

	assert_true(pid >= 0);
	if (pid == 0) {
		shm_options o;
		shm_env *env = NULL;
		int rc;

		if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
			_exit(3);
		shm_options_init(&o);
		o.read_only = read_only;
		o.must_exist = true;
		rc = shm_env_open(dir, &o, &env);
		if (rc == EACCES && strstr(shm_errmsg(), want))
			_exit(0);
		fprintf(stderr, "open %s: rc %d, '%s', want EACCES and '%s'\n",
		        read_only ? "read-only" : "read-write", rc,
		        shm_errmsg(), want);
		_exit(1);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* A file of the environment this user may not use is named: LMDB's
 * EACCES said "DIR: Permission denied", which names none, though the
 * usual one is lock.mdb, which every opener writes, readers too. Where
 * the user needs write access, the text says so and how users share an
 * environment (before, it named the file but not the fix). */
static void test_open_denied_names_the_file(void **state)
{
	char *dir = tu_tmpdir(), lock[PATH_MAX], data[PATH_MAX];
	char want[PATH_MAX + 256], nolock[PATH_MAX + 256];
	shm_env *env = tu_open(dir, NULL);

	shm_env_close(env);
	snprintf(lock, sizeof lock, "%s/lock.mdb", dir);
	snprintf(data, sizeof data, "%s/data.mdb", dir);
	/* written before chmod(dir): gcc's -fsanitize=undefined checks its
	 * nonnull argument, and on the path after that check -Wformat-truncation
	 * took dir for NULL (CI=true SANITIZER=undefined failed to build) */
	snprintf(nolock, sizeof nolock, "%s: no lock.mdb, and none can be "
	         "made in the directory: " WRITE_ACCESS " (Permission denied)",
	         dir);
	assert_int_equal(chmod(dir, 0755), 0);
	/* lock.mdb not writable: a reader cannot open either */
	assert_int_equal(chmod(lock, 0444), 0);
	snprintf(want, sizeof want, "%s: every process that opens the "
	         "environment, a reader too, writes LMDB's lock file: "
	         WRITE_ACCESS " (Permission denied)", lock);
	assert_int_equal(open_denied_in_child(dir, true, want), 0);
	assert_int_equal(open_denied_in_child(dir, false, want), 0);
	/* data.mdb not writable: a read-write open */
	assert_int_equal(chmod(lock, 0666), 0);
	assert_int_equal(chmod(data, 0444), 0);
	snprintf(want, sizeof want, "%s: a read-write open writes it: "
	         WRITE_ACCESS " (Permission denied)", data);
	assert_int_equal(open_denied_in_child(dir, false, want), 0);
	/* nor readable: any open */
	assert_int_equal(chmod(data, 0), 0);
	snprintf(want, sizeof want, "%s: cannot be read (Permission denied)",
	         data);
	assert_int_equal(open_denied_in_child(dir, true, want), 0);
	/* no lock.mdb, and the directory not writable: none can be made */
	assert_int_equal(chmod(data, 0644), 0);
	assert_int_equal(unlink(lock), 0);
	assert_int_equal(chmod(dir, 0555), 0);
	assert_int_equal(open_denied_in_child(dir, true, nolock), 0);
	assert_int_equal(chmod(dir, 0755), 0);
	tu_rmdir(dir);
	free(dir);
}

/* Out-of-range options are refused before anything is created: enums,
 * and a map_size too small for any environment (bytes taken for MiB:
 * LMDB's MDB_MAP_FULL at the first commit left an empty environment that
 * the tools call "not an shm one"). */
static void test_out_of_range_options_are_refused(void **state)
{
	char *base = tu_tmpdir(), dir[4200];
	shm_options o;
	shm_env *env = NULL;
	struct stat st;

	snprintf(dir, sizeof dir, "%s/env", base);
	shm_options_init(&o);
	o.durability = (shm_durability)99;
	assert_int_equal(shm_env_open(dir, &o, &env), SHM_EINVAL);
	assert_non_null(strstr(shm_errmsg(), "durability 99"));
	shm_options_init(&o);
	o.write_mode = (shm_write_mode)7;
	assert_int_equal(shm_env_open(dir, &o, &env), SHM_EINVAL);
	assert_non_null(strstr(shm_errmsg(), "write_mode 7"));
	shm_options_init(&o);
	o.map_size = 1024;
	assert_int_equal(shm_env_open(dir, &o, &env), SHM_EINVAL);
	assert_non_null(strstr(shm_errmsg(), "map_size 1024: below"));
	assert_null(env);
	assert_int_not_equal(stat(dir, &st), 0);
	/* a map no address space holds: LMDB's ENOMEM, naming map_size */
	shm_options_init(&o);
	o.map_size = (size_t)1 << 62;
	assert_int_equal(shm_env_open(dir, &o, &env), ENOMEM);
	assert_non_null(strstr(shm_errmsg(), "map_size 4611686018427387904 "
	                                     "bytes: cannot map"));
	assert_null(env);
	/* a refusal of this process's own keeps the lock.mdb it made: another
	 * may be opening the environment (env.c invariant 9) */
	char lock[4300];
	snprintf(lock, sizeof lock, "%s/lock.mdb", dir);
	assert_int_equal(stat(lock, &st), 0);
	o.map_size = 1 << 20; /* the smallest */
	env = tu_open(dir, &o);
	shm_env_close(env);
	tu_rmdir(base);
	free(base);
}

/* A pg_conninfo libpq would refuse is refused at open, as a bad redis_url
 * is, naming the option and what is wrong, printably, nothing created: one
 * libpq cannot parse, and one it refuses before asking a server (a port
 * 'abc' opened, and every get's L3 failed on it). A password is not shown:
 * libpq quoted the word after an unquoted one with a space ("missing "="
 * after "s3cret""); an unknown option's name is, its value is not. A plain
 * word is a database name (libpq's rule). */
static void test_unparseable_pg_conninfo_is_refused_at_open(void **state)
{
	static const struct {
		const char *conninfo, *reason;
	} bad[] = {
		{"host=x 'oops", "after option 'host', a word without '='"},
		{"host='x", "option 'host': its quoted value has no closing "
		 "quote"},
		{"host=x password=pass s3cret", "after option 'password', a "
		 "word without '=' (a value with spaces goes in single quotes)"},
		{"host=x hots=s3cret", "unknown connection option 'hots'"},
		{"postgresql://ada:s3cret%zz@db/shm", "invalid percent-encoded"},
		{"postgresql://ada:s3cret@db/shm?hots=s3cret",
		 "unknown connection option 'hots'"},
		{"host=/tmp port=abc dbname=x", "port 'abc': not a port number "
		 "(an integer from 1 to 65535, or empty for the default)"},
		{"host=/tmp sslmode=bogus dbname=x", "sslmode 'bogus': not one of "
		 "disable, allow, prefer, require, verify-ca, verify-full"},
		/* libpq would fail every connect to it, each get's L3 too */
		{"hostaddr=db.example dbname=shm",
		 "hostaddr 'db.example': not a numeric address"},
		/* shown printably: libpq's text, and ours */
		{"host=x hots\x1b[2J=y",
		 "unknown connection option 'hots\\x1b[2J'"},
		{"hostaddr=1.2.3\x1b dbname=shm",
		 "hostaddr '1.2.3\\x1b': not a numeric address"},
		{"host=/tmp port=5\x1b dbname=x", "port '5\\x1b': not a port"},
	};
	char *base = tu_tmpdir(), dir[4200];
	shm_options o;
	shm_env *env = NULL;
	struct stat st;

	snprintf(dir, sizeof dir, "%s/env", base);
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		shm_options_init(&o);
		o.pg_conninfo = bad[i].conninfo;
		assert_int_equal(shm_env_open(dir, &o, &env), SHM_EINVAL);
		assert_null(env);
		if (strncmp(shm_errmsg(), "pg_conninfo: ", 13) != 0 ||
		    !strstr(shm_errmsg(), bad[i].reason) ||
		    !printable(shm_errmsg()) ||
		    strstr(shm_errmsg(), "s3cret"))
			fail_msg("%s: '%s'", bad[i].conninfo, shm_errmsg());
		assert_int_not_equal(stat(dir, &st), 0);
	}
	shm_options_init(&o);
	o.pg_conninfo = "shm"; /* a database name */
	env = tu_open(dir, &o);
	shm_env_close(env);
	o.pg_conninfo = "postgresql:///shm?connect_timeout=1";
	env = tu_open(dir, &o);
	shm_env_close(env);
	o.pg_conninfo = "hostaddr=127.0.0.1,,::1 host=a,b,c dbname=shm";
	env = tu_open(dir, &o);
	shm_env_close(env);
	tu_rmdir(base);
	free(base);
}

/* libpq's verdict on conninfo, connecting as libshm, the flusher and
 * shm-dataset do (as the dbname it expands), with env (NAME=VALUE) set,
 * against shm__pg_check_conninfo's: libpq says libpq_says, and the check
 * SHM_EINVAL and ours; or, both NULL, libpq gets as far as the server (a
 * socket in a directory that does not exist, 127.0.0.1 port 1 where
 * nothing listens) and the check takes it. */
static void agree(const char *env, const char *conninfo,
                  const char *libpq_says, const char *ours)
{
	const char *kw[] = {"dbname", NULL}, *val[] = {conninfo, NULL};
	const char *eq = env ? strchr(env, '=') : NULL;
	char why[600] = "", name[64] = "", *old = NULL;
	PGconn *c;
	const char *said;
	bool reached;
	int rc;

	if (env) {
		snprintf(name, sizeof name, "%.*s", (int)(eq - env), env);
		if (getenv(name))
			old = strdup(getenv(name));
		setenv(name, eq + 1, 1);
	}
	c = PQconnectdbParams(kw, val, 1);
	said = PQerrorMessage(c);
	reached = strstr(said, "No such file or directory") ||
	          strstr(said, "Connection refused");
	rc = shm__pg_check_conninfo(conninfo, why, sizeof why);
	if (libpq_says ? !strstr(said, libpq_says) || rc != SHM_EINVAL ||
	                 !strstr(why, ours) || !printable(why)
	               : !reached || rc)
		fail_msg("%s%s%s: libpq '%s', check %d '%s'", env ? env : "",
		         env ? " " : "", conninfo, said, rc, why);
	PQfinish(c);
	if (old)
		setenv(name, old, 1);
	else if (env)
		unsetenv(name);
	free(old);
}

/* What shm__pg_check_conninfo refuses, libpq refuses when connecting
 * before it asks a server, and what it takes libpq takes that far: ports
 * (libpq's integers, 1 to 65535, or empty), integer options, enumerated
 * values, TLS versions and their range, lists of hosts, addresses and
 * ports, socket paths, unknown options, text it cannot parse; values from
 * PG* variables, and from a service file, which the check does not read
 * (so it takes the variables' values it may override). */
static void test_pg_conninfo_check_agrees_with_libpq(void **state)
{
#define SOCK "host=/nonexistent "
#define TCP "host=127.0.0.1 port=1 "
	static const struct {
		const char *env, *conninfo, *libpq, *ours;
	} cases[] = {
		{NULL, SOCK "port=' 5432 '", NULL, NULL},
		{NULL, SOCK "port=+5432", NULL, NULL},
		{NULL, SOCK "port=''", NULL, NULL},
		{NULL, "host=/nonexistent,/nonexistent port=5433,", NULL, NULL},
		{NULL, SOCK "sslmode=verify-full gssencmode=disable "
		 "channel_binding=require target_session_attrs=prefer-standby",
		 NULL, NULL},
		{NULL, SOCK "ssl_min_protocol_version=tlsv1 "
		 "ssl_max_protocol_version=TLSv1", NULL, NULL},
		{NULL, SOCK "ssl_min_protocol_version='' "
		 "ssl_max_protocol_version=TLSv1", NULL, NULL},
		{NULL, SOCK "ssl_max_protocol_version=''", NULL, NULL},
		{NULL, SOCK "requiressl=1", NULL, NULL},
		{NULL, "postgresql:///x?host=/nonexistent&ssl=true", NULL, NULL},
		{NULL, TCP "keepalives=-1 keepalives_idle=' 30 ' "
		 "keepalives_interval=32767 keepalives_count=127 "
		 "tcp_user_timeout=-1", NULL, NULL},
		/* read on TCP sockets only, with keepalives on */
		{NULL, SOCK "keepalives=x keepalives_count=0", NULL, NULL},
		{NULL, TCP "keepalives=' 0 ' keepalives_idle=x "
		 "tcp_user_timeout=x", NULL, NULL},
		{"PGPORT=5433", SOCK, NULL, NULL},
		{NULL, SOCK "port=abc", "invalid integer value \"abc\" for "
		 "connection option \"port\"", "port 'abc': not a port number"},
		{NULL, SOCK "port=0", "invalid port number: \"0\"", "port '0'"},
		{NULL, SOCK "port=65536", "invalid port number: \"65536\"",
		 "port '65536'"},
		{NULL, SOCK "port=-1", "invalid port number: \"-1\"",
		 "port '-1'"},
		{NULL, SOCK "port=' '", "invalid integer value \" \"",
		 "port ' '"},
		{NULL, SOCK "port=2147483648", "invalid integer value "
		 "\"2147483648\"", "port '2147483648'"},
		{NULL, "host=/nonexistent,/nonexistent port=abc,5432",
		 "invalid integer value \"abc\"", "port 'abc'"},
		{NULL, "host=/a,/b,/c port=1,2", "could not match 2 port numbers "
		 "to 3 hosts", "port: 2 ports for 3 hosts (one for all, or one "
		 "each)"},
		{NULL, SOCK "hostaddr=127.0.0.1,127.0.0.2", "could not match 1 "
		 "host names to 2 hostaddr values", "hostaddr: 2 addresses for "
		 "1 host (one each)"},
		{NULL, SOCK "sslmode=REQUIRE", "invalid sslmode value: "
		 "\"REQUIRE\"", "sslmode 'REQUIRE': not one of disable, allow, "
		 "prefer, require, verify-ca, verify-full"},
		{NULL, SOCK "sslmode=''", "invalid sslmode value: \"\"",
		 "sslmode '': not one of"},
		{NULL, SOCK "gssencmode=x", "invalid gssencmode value",
		 "gssencmode 'x': not one of disable, prefer, require"},
		{NULL, SOCK "channel_binding=x", "invalid channel_binding value",
		 "channel_binding 'x': not one of disable, prefer, require"},
		{NULL, SOCK "target_session_attrs=x", "invalid "
		 "target_session_attrs value", "target_session_attrs 'x': not "
		 "one of any, read-write, read-only, primary, standby, "
		 "prefer-standby"},
		{NULL, SOCK "ssl_min_protocol_version=TLSv1.4", "invalid "
		 "ssl_min_protocol_version value", "ssl_min_protocol_version "
		 "'TLSv1.4': not one of TLSv1, TLSv1.1, TLSv1.2, TLSv1.3"},
		{NULL, SOCK "ssl_max_protocol_version=TLSv1", "invalid SSL "
		 "protocol version range", "ssl_max_protocol_version 'TLSv1' is "
		 "below ssl_min_protocol_version 'TLSv1.2' (libpq's default)"},
		{NULL, SOCK "ssl_min_protocol_version=TLSv1.3 "
		 "ssl_max_protocol_version=tlsv1.2", "invalid SSL protocol "
		 "version range", "ssl_max_protocol_version 'tlsv1.2' is below "
		 "ssl_min_protocol_version 'TLSv1.3'"},
		{NULL, SOCK "hostx=1", "invalid connection option \"hostx\"",
		 "unknown connection option 'hostx'"},
		{NULL, "postgresql:///x?hostx=1", "invalid URI query parameter: "
		 "\"hostx\"", "unknown connection option 'hostx'"},
		{NULL, "postgresql:///x?ssl=false", "invalid URI query "
		 "parameter: \"ssl\"", "unknown connection option 'ssl'"},
		/* a fault before the query is libpq's first, said as libpq
		 * says it; a '?' in brackets starts no query */
		{NULL, "postgresql://u:s3cret%zz@h/x?hostx=1", "invalid "
		 "percent-encoded token: \"s3cret%zz\"", "libpq cannot parse "
		 "it: invalid percent-encoded token: \"...\""},
		{NULL, "postgresql://[?]x?hostx=1", "unexpected character",
		 "libpq cannot parse it: unexpected character \"...\""},
		{NULL, SOCK "'oops", "missing \"=\" after \"'oops\"",
		 "after option 'host', a word without '='"},
		{NULL, "host='/nonexistent", "unterminated quoted string",
		 "option 'host': its quoted value has no closing quote"},
		{NULL, TCP "keepalives=x", "invalid integer value \"x\" for "
		 "connection option \"keepalives\"", "keepalives 'x': not an "
		 "integer"},
		{NULL, TCP "keepalives_idle=''", "option \"keepalives_idle\"",
		 "keepalives_idle '': not an integer from 1 to 32767"},
		{NULL, TCP "keepalives_interval=1.5", "option "
		 "\"keepalives_interval\"", "keepalives_interval '1.5'"},
		{NULL, TCP "keepalives_count=99999999999", "option "
		 "\"keepalives_count\"", "keepalives_count '99999999999'"},
		/* beyond the kernel's bounds: setsockopt fails */
		{NULL, TCP "keepalives_idle=0", "setsockopt(TCP_KEEPIDLE) "
		 "failed", "keepalives_idle '0': not an integer from 1 to "
		 "32767"},
		{NULL, TCP "keepalives_interval=32768", "setsockopt(TCP_KEEPINTVL) "
		 "failed", "keepalives_interval '32768'"},
		{NULL, TCP "keepalives_count=-1", "setsockopt(TCP_KEEPCNT) "
		 "failed", "keepalives_count '-1': not an integer from 1 to 127"},
		{NULL, "host=/nonexistent,127.0.0.1 port=1 keepalives_count=128",
		 "setsockopt(TCP_KEEPCNT) failed", "keepalives_count '128'"},
		{NULL, TCP "tcp_user_timeout=x", "option \"tcp_user_timeout\"",
		 "tcp_user_timeout 'x': not an integer"},
		{"PGPORT=abc", SOCK, "invalid integer value \"abc\"",
		 "PGPORT 'abc': not a port number"},
		/* '@host' forgotten: the password is read as the port, and
		 * is not shown; with '@', a port is (user:password is not) */
		{NULL, "postgresql://app:s3cret/x", "invalid integer value "
		 "\"s3cret\"", "the URI's port (after the host's ':') is not a "
		 "port number (an integer from 1 to 65535), not shown: a "
		 "password goes in user:password@host"},
		{NULL, "postgresql://app:s3cret@h:abc/x", "invalid integer "
		 "value \"abc\"", "port 'abc': not a port number"},
		{"PGSSLMODE=x", SOCK, "invalid sslmode value: \"x\"",
		 "PGSSLMODE 'x': not one of"},
	};
	char *dir = tu_tmpdir(), a[200], conninfo[300], file[4200];
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t sl = sizeof sa;
	int fd;
	FILE *f;

	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
		agree(cases[i].env, cases[i].conninfo, cases[i].libpq,
		      cases[i].ours);
	/* a socket path of 107 bytes and no more (the port's digits
	 * count), an abstract one's too */
	memset(a, 'a', sizeof a);
	snprintf(conninfo, sizeof conninfo, "host=/%.92s", a);
	agree(NULL, conninfo, NULL, NULL);
	snprintf(conninfo, sizeof conninfo, "host=/%.93s", a);
	agree(NULL, conninfo, "is too long (maximum 107 bytes)", "its socket "
	      "path is 108 bytes with port 5432, at most 107");
	snprintf(conninfo, sizeof conninfo, "host=@%.93s", a);
	agree(NULL, conninfo, "is too long", "108 bytes");
	snprintf(conninfo, sizeof conninfo, "host=/%.92s port=54321", a);
	agree(NULL, conninfo, "is too long", "108 bytes with port 54321");
	/* a service file's port and minimum TLS version win over PGPORT and
	 * libpq's default */
	snprintf(file, sizeof file, "%s/pg_service.conf", dir);
	assert_non_null(f = fopen(file, "w"));
	fputs("[svc]\nport=5433\nssl_min_protocol_version=TLSv1\n", f);
	assert_int_equal(fclose(f), 0);
	setenv("PGSERVICEFILE", file, 1);
	agree("PGPORT=abc", SOCK "service=svc", NULL, NULL);
	agree(NULL, SOCK "service=svc ssl_max_protocol_version=TLSv1", NULL,
	      NULL);
	unsetenv("PGSERVICEFILE");
	/* connect_timeout, read by a blocking connect once the server
	 * answered the TCP handshake (here a socket that listens) */
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_true((fd = socket(AF_INET, SOCK_STREAM, 0)) >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	assert_int_equal(listen(fd, 4), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	snprintf(conninfo, sizeof conninfo, "host=127.0.0.1 port=%d "
	         "connect_timeout=abc", ntohs(sa.sin_port));
	agree(NULL, conninfo, "invalid integer value \"abc\" for connection "
	      "option \"connect_timeout\"", "connect_timeout 'abc': not an "
	      "integer");
	close(fd);
	tu_rmdir(dir);
	free(dir);
#undef SOCK
#undef TCP
}

/* A reader killed with its read transaction open leaves a stale slot: a
 * read-only open (shmctl) leaves it to be seen and cleared; a read-write
 * open clears it. readers_used counts slots in use, not LMDB's high-water
 * mark. */
static void test_stale_reader_slot_is_shown_then_cleared(void **state)
{
	char *dir = tu_tmpdir();
	int fds[2], cleared = -1;
	char c;
	shm_options ro;
	shm_info before, after;
	shm_env *env = tu_open(dir, NULL);
	pid_t pid[2];

	shm_env_close(env);
	assert_int_equal(pipe(fds), 0);
	/* the first keeps the environment open (the last process to leave
	 * lets LMDB reset the reader table), the second dies reading */
	for (int i = 0; i < 2; i++) {
		if ((pid[i] = fork()) == 0) {
			shm_env *e;
			shm_rtxn *t;
			if (shm_env_open(dir, NULL, &e) || shm_rtxn_begin(e, &t))
				_exit(1);
			if (write(fds[1], "r", 1) != 1)
				_exit(1);
			pause();
			_exit(0);
		}
		assert_int_equal(read(fds[0], &c, 1), 1);
	}
	kill(pid[1], SIGKILL);
	assert_int_equal(waitpid(pid[1], NULL, 0), pid[1]);
	close(fds[0]);
	close(fds[1]);

	shm_options_init(&ro);
	ro.read_only = true;
	env = tu_open(dir, &ro);
	assert_int_equal(shm_env_info(env, &before), 0);
	assert_int_equal(shm_env_reader_check(env, &cleared), 0);
	assert_int_equal(cleared, 1);
	assert_int_equal(shm_env_info(env, &after), 0);
	assert_int_equal(after.readers_used, before.readers_used - 1);
	shm_env_close(env);
	kill(pid[0], SIGKILL);
	assert_int_equal(waitpid(pid[0], NULL, 0), pid[0]);
	tu_rmdir(dir);
	free(dir);
}

static void test_other_format_version_is_refused(void **state)
{
	char *dir = tu_tmpdir();
	shm_env *env = tu_open(dir, NULL);
	MDB_txn *txn;
	uint64_t v = 99;
	MDB_val k = {6, "format"}, d = {8, &v};

	assert_int_equal(mdb_txn_begin(env->mdb, NULL, 0, &txn), 0);
	assert_int_equal(mdb_put(txn, env->meta, &k, &d, 0), 0);
	assert_int_equal(mdb_txn_commit(txn), 0);
	shm_env_close(env);
	env = NULL;
	assert_int_equal(shm_env_open(dir, NULL, &env), SHM_EVERSION);
	assert_null(env);
	assert_non_null(strstr(shm_errmsg(), "format version 99"));
	tu_rmdir(dir);
	free(dir);
}

/* Opens dir (read_only or not): the code, *env NULL on a failure. */
static int open_ro(const char *dir, bool read_only, shm_env **env)
{
	shm_options o;

	shm_options_init(&o);
	o.read_only = read_only;
	*env = NULL;
	return shm_env_open(dir, &o, env);
}

/* shm.stats (the shared counters and the log's wake-up word) of another
 * size or format version, as another libshm version would leave it, is
 * refused at open (SHM_EVERSION), read-write or read-only, naming the file
 * and what differs; a read-only open of an environment without one says
 * so (ENOENT), a read-write open makes it. The data is untouched. */
static void test_stats_file_of_another_version_is_refused(void **state)
{
	char *dir = tu_tmpdir(), path[PATH_MAX], want[PATH_MAX + 100];
	shm_env *env = tu_open(dir, NULL);
	shm_msg m = tu_msg("st", 1, "kept"), *got;
	struct stat st;
	uint32_t version = 2;
	int fd;

	assert_int_equal(shm_msg_put(env, &m), 0);
	shm_env_close(env);
	snprintf(path, sizeof path, "%s/shm.stats", dir);
	assert_int_equal(stat(path, &st), 0);

	assert_int_equal(truncate(path, 100), 0);
	snprintf(want, sizeof want, "%s: 100 bytes, this version uses %lld "
	         "(environment has an incompatible format version)", path,
	         (long long)st.st_size);
	for (int ro = 0; ro < 2; ro++) {
		assert_int_equal(open_ro(dir, ro, &env), SHM_EVERSION);
		assert_null(env);
		assert_string_equal(shm_errmsg(), want);
	}
	assert_int_equal(truncate(path, st.st_size), 0);

	assert_true((fd = open(path, O_WRONLY)) >= 0);
	assert_int_equal(pwrite(fd, &version, 4, 8), 4);
	snprintf(want, sizeof want, "%s: unknown stats format version 2 "
	         "(environment has an incompatible format version)", path);
	for (int ro = 0; ro < 2; ro++) {
		assert_int_equal(open_ro(dir, ro, &env), SHM_EVERSION);
		assert_null(env);
		assert_string_equal(shm_errmsg(), want);
	}
	version = 1;
	assert_int_equal(pwrite(fd, &version, 4, 8), 4);
	close(fd);

	assert_int_equal(unlink(path), 0);
	assert_int_equal(open_ro(dir, true, &env), ENOENT);
	assert_null(env);
	snprintf(want, sizeof want, "open %s: environment has no stats file",
	         path);
	assert_non_null(strstr(shm_errmsg(), want));
	assert_int_equal(open_ro(dir, false, &env), 0);
	assert_int_equal(shm_msg_get(env, &m.id, &got), 0);
	assert_string_equal(got->content, "kept");
	shm_msg_free(got);
	assert_int_equal(tu_verify(env), 0);
	shm_env_close(env);
	tu_rmdir(dir);
	free(dir);
}

/* An LMDB environment in dir that is not an shm one: key foo in the main
 * database, or in a database named db when db is not NULL. */
static void make_foreign_env(const char *dir, const char *db)
{
	MDB_env *m;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_val k = {3, "foo"}, d = {3, "bar"};

	assert_false(shm__env_open_here(dir)); /* LMDB: once per process */
	assert_int_equal(mdb_env_create(&m), 0);
	assert_int_equal(mdb_env_set_maxdbs(m, 4), 0);
	assert_int_equal(mdb_env_open(m, dir, 0, 0664), 0);
	assert_int_equal(mdb_txn_begin(m, NULL, 0, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, db, MDB_CREATE, &dbi), 0);
	assert_int_equal(mdb_put(txn, dbi, &k, &d, 0), 0);
	assert_int_equal(mdb_txn_commit(txn), 0);
	mdb_env_close(m);
}

/* Keys in dir's LMDB main database (named databases are keys there). */
static size_t main_db_keys(const char *dir)
{
	MDB_env *m;
	MDB_stat st;

	assert_false(shm__env_open_here(dir)); /* LMDB: once per process */
	assert_int_equal(mdb_env_create(&m), 0);
	assert_int_equal(mdb_env_open(m, dir, MDB_RDONLY, 0664), 0);
	assert_int_equal(mdb_env_stat(m, &st), 0);
	mdb_env_close(m);
	return st.ms_entries;
}

static bool file_exists(const char *dir, const char *name)
{
	char path[PATH_MAX];
	int n = snprintf(path, sizeof path, "%s/%s", dir, name);
	assert_true(n > 0 && (size_t)n < sizeof path);
	return access(path, F_OK) == 0;
}

static void test_non_shm_lmdb_environment_is_refused(void **state)
{
	char *dir = tu_tmpdir();
	shm_options o;
	shm_env *env = NULL;

	make_foreign_env(dir, NULL);
	shm_options_init(&o);
	o.read_only = true;
	assert_int_equal(shm_env_open(dir, &o, &env), SHM_EVERSION);
	assert_null(env);
	assert_non_null(strstr(shm_errmsg(), "not an shm environment"));
	tu_rmdir(dir);
	free(dir);
}

/* A write open adopts only an empty map: data in LMDB's main database or
 * a foreign named database makes it fail, and nothing is added, neither
 * to the map nor next to it. */
static void test_write_open_of_a_non_shm_lmdb_environment_changes_nothing(
	void **state)
{
	const char *named[] = {NULL, "other"};

	for (size_t i = 0; i < 2; i++) {
		char *dir = tu_tmpdir();
		shm_env *env = NULL;

		make_foreign_env(dir, named[i]);
		assert_int_equal(shm_env_open(dir, NULL, &env), SHM_EVERSION);
		assert_null(env);
		assert_non_null(strstr(shm_errmsg(), dir));
		assert_non_null(strstr(shm_errmsg(), "not an shm environment"));
		assert_int_equal(main_db_keys(dir), 1);
		assert_false(file_exists(dir, "shm.stats"));
		assert_false(file_exists(dir, "shm.wlock"));
		tu_rmdir(dir);
		free(dir);
	}
}

/* dir's environment is refused at open with SHM_ECORRUPT, read-only or
 * not, with each of wants (NULL-terminated) in the message. */
static void refused_at_open(const char *dir, const char *const *wants)
{
	shm_options ro;

	shm_options_init(&ro);
	ro.read_only = true;
	const shm_options *opts[] = {&ro, NULL};
	for (size_t i = 0; i < 2; i++) {
		shm_env *env = NULL;
		assert_int_equal(shm_env_open(dir, opts[i], &env), SHM_ECORRUPT);
		assert_null(env);
		for (const char *const *w = wants; *w; w++)
			if (!strstr(shm_errmsg(), *w))
				fail_msg("'%s' not in '%s'", *w, shm_errmsg());
	}
}

/* A data file cut short (a partial copy) is refused at open, read-only
 * or not, instead of killing the process with SIGBUS on a missing page. */
static void test_truncated_data_file_is_refused_at_open(void **state)
{
	char *dir = tu_tmpdir();
	shm_env *env = tu_open(dir, NULL);
	char path[PATH_MAX];

	for (int i = 0; i < 50; i++) {
		shm_msg m = tu_msg("t", i, "some content to fill a few pages");
		assert_int_equal(shm_msg_put(env, &m), 0);
	}
	shm_env_close(env);
	snprintf(path, sizeof path, "%s/data.mdb", dir);
	assert_int_equal(truncate(path, 8192), 0);
	refused_at_open(dir, (const char *[]){path, "8192 bytes", NULL});
	tu_rmdir(dir);
	free(dir);
}

/* A torn copy, data.mdb ending inside LMDB's meta pages or with one of
 * them not written (zeros), is refused at open, read-only or not, as the
 * damage it is (SHM_ECORRUPT naming the file and what is wrong), not as
 * an incompatible format version (LMDB's MDB_INVALID became SHM_EVERSION
 * before); the copy is left as it was. */
static void test_torn_copy_is_refused_as_damaged_not_a_version(void **state)
{
	char *src = tu_tmpdir(), path[PATH_MAX], want[128];
	shm_env *env = tu_open(src, NULL);
	long psize = sysconf(_SC_PAGESIZE);
	struct stat st;
	size_t len;
	char *data;
	FILE *f;

	for (int i = 0; i < 20; i++) {
		shm_msg m = tu_msg("t", i, "a message in the original");
		assert_int_equal(shm_msg_put(env, &m), 0);
	}
	shm_env_close(env);
	snprintf(path, sizeof path, "%s/data.mdb", src);
	assert_non_null(f = fopen(path, "rb"));
	assert_int_equal(fstat(fileno(f), &st), 0);
	len = (size_t)st.st_size;
	assert_true(len > 2 * (size_t)psize);
	assert_non_null(data = malloc(len));
	assert_int_equal(fread(data, 1, len, f), len);
	fclose(f);
	for (int c = 0; c < 4; c++) {
		char *dir = tu_tmpdir();
		size_t keep = c == 0 ? 100 : c == 1 ? (size_t)psize : len;
		if (c == 2) /* page 0 not written */
			memset(data, 0, (size_t)psize);
		if (c == 3) { /* page 1 not written, page 0 back */
			snprintf(path, sizeof path, "%s/data.mdb", src);
			assert_non_null(f = fopen(path, "rb"));
			assert_int_equal(fread(data, 1, len, f), len);
			fclose(f);
			memset(data + psize, 0, (size_t)psize);
		}
		snprintf(path, sizeof path, "%s/data.mdb", dir);
		assert_non_null(f = fopen(path, "wb"));
		assert_int_equal(fwrite(data, 1, keep, f), keep);
		assert_int_equal(fclose(f), 0);
		if (c == 0)
			snprintf(want, sizeof want, ": 100 bytes, fewer than the "
			         "152 of LMDB's first meta page");
		else if (c == 1)
			snprintf(want, sizeof want, ": %ld bytes, fewer than the "
			         "%ld of LMDB's two meta pages", psize, 2 * psize);
		else
			snprintf(want, sizeof want, ": page %d is not an LMDB "
			         "meta page", c - 2);
		refused_at_open(dir, (const char *[]){path, want, NULL});
		assert_null(strstr(shm_errmsg(), "format version"));
		assert_int_equal(stat(path, &st), 0);
		assert_int_equal(st.st_size, (off_t)keep);
		tu_rmdir(dir);
		free(dir);
	}
	free(data);
	tu_rmdir(src);
	free(src);
}

/* The entries of dir, as " name" each, sorted (a static buffer). */
static const char *dir_entries(const char *dir)
{
	static char out[512];
	struct dirent **ents;
	int n = scandir(dir, &ents, NULL, alphasort);
	size_t len = 0;

	assert_true(n >= 0);
	out[0] = 0;
	for (int i = 0; i < n; i++) {
		if (strcmp(ents[i]->d_name, ".") && strcmp(ents[i]->d_name, ".."))
			len += (size_t)snprintf(out + len, sizeof out - len, " %s",
			                        ents[i]->d_name);
		free(ents[i]);
	}
	free(ents);
	return out;
}

/* A data.mdb that is not LMDB's (garbage) is refused, read-only or not,
 * and the open leaves nothing behind: the lock.mdb LMDB made for it is
 * removed (it was left there). One that was there before the open stays
 * (another process may use it). */
static void test_refused_open_removes_only_the_lock_file_it_made(void **state)
{
	char *dir = tu_tmpdir(), data[PATH_MAX], lock[PATH_MAX], garbage[8192];
	shm_options ro;
	struct stat before, after;
	FILE *f;

	snprintf(data, sizeof data, "%s/data.mdb", dir);
	snprintf(lock, sizeof lock, "%s/lock.mdb", dir);
	memset(garbage, 'x', sizeof garbage);
	assert_non_null(f = fopen(data, "wb"));
	assert_int_equal(fwrite(garbage, 1, sizeof garbage, f), sizeof garbage);
	assert_int_equal(fclose(f), 0);
	shm_options_init(&ro);
	ro.read_only = true;
	const shm_options *opts[] = {&ro, NULL};
	for (size_t i = 0; i < 2; i++) {
		shm_env *env = NULL;
		assert_int_equal(shm_env_open(dir, opts[i], &env), SHM_ECORRUPT);
		assert_null(env);
		assert_non_null(strstr(shm_errmsg(), "page 0 is not an LMDB "
		                                     "meta page"));
		assert_string_equal(dir_entries(dir), " data.mdb");
	}

	assert_non_null(f = fopen(lock, "wb"));
	assert_int_equal(fclose(f), 0);
	assert_int_equal(stat(lock, &before), 0);
	for (size_t i = 0; i < 2; i++) {
		shm_env *env = NULL;
		assert_int_equal(shm_env_open(dir, opts[i], &env), SHM_ECORRUPT);
		assert_null(env);
		assert_string_equal(dir_entries(dir), " data.mdb lock.mdb");
		assert_int_equal(stat(lock, &after), 0);
		assert_int_equal(after.st_ino, before.st_ino);
	}
	tu_rmdir(dir);
	free(dir);
}

/* A tail cut that spares as many pages as are in use (invariant 3's count
 * misses it) but takes a database's root is refused at open, read-only or
 * not, instead of killing the process with SIGBUS; nothing is created. */
static void test_tail_cut_taking_a_root_is_refused_at_open(void **state)
{
	char *dir = tu_env_after_many_commits(), path[PATH_MAX], size[32];
	off_t cut = tu_cut_at_highest_root(dir);

	snprintf(path, sizeof path, "%s/data.mdb", dir);
	snprintf(size, sizeof size, ": %lld bytes, but page ", (long long)cut);
	refused_at_open(dir, (const char *[]){path, size, "lies beyond them",
	                                     NULL});
	tu_rmdir(dir);
	free(dir);
}

/* Whether dir's data file ends before the last page LMDB's meta counts. */
static bool data_file_ends_before_last_page(shm_env *env, const char *dir)
{
	MDB_envinfo ei;
	MDB_stat st;
	struct stat fs;
	char path[PATH_MAX];

	snprintf(path, sizeof path, "%s/data.mdb", dir);
	assert_int_equal(mdb_env_info(env->mdb, &ei), 0);
	assert_int_equal(mdb_env_stat(env->mdb, &st), 0);
	assert_int_equal(stat(path, &fs), 0);
	return (uint64_t)fs.st_size < (ei.me_last_pgno + 1) * (uint64_t)st.ms_psize;
}

/* A sound data file may end before the meta's last page: LMDB does not
 * write pages it freed in the transaction that allocated them (here the
 * overflow pages of a value put and deleted at once). It still opens. */
static void test_sound_data_file_ending_before_its_last_page_opens(
	void **state)
{
	static char big[40000];
	char *dir = tu_tmpdir();
	shm_env *env = tu_open(dir, NULL);
	shm_options ro;
	MDB_txn *txn;
	MDB_val k = {7, "scratch"}, v = {sizeof big, big};

	for (int i = 0; i < 3; i++) { /* leaves free pages to reuse */
		shm_msg m = tu_msg("s", i, "content");
		assert_int_equal(shm_msg_put(env, &m), 0);
	}
	assert_int_equal(mdb_txn_begin(env->mdb, NULL, 0, &txn), 0);
	assert_int_equal(mdb_put(txn, env->meta, &k, &v, 0), 0);
	assert_int_equal(mdb_del(txn, env->meta, &k, NULL), 0);
	assert_int_equal(mdb_txn_commit(txn), 0);
	assert_true(data_file_ends_before_last_page(env, dir));
	shm_env_close(env);
	shm_options_init(&ro);
	ro.read_only = true;
	env = tu_open(dir, &ro);
	assert_int_equal(tu_verify(env), 0);
	shm_env_close(env);
	env = tu_open(dir, NULL);
	assert_int_equal(tu_verify(env), 0);
	shm_env_close(env);
	tu_rmdir(dir);
	free(dir);
}

/* Whether page p of env's data file is on LMDB's free list (dbi 0: key
 * a txnid, value a count then that many page numbers). */
static bool page_is_free(shm_env *env, uint64_t p)
{
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, v;
	bool found = false;

	assert_int_equal(mdb_txn_begin(env->mdb, NULL, MDB_RDONLY, &txn), 0);
	assert_int_equal(mdb_cursor_open(txn, 0, &cur), 0);
	while (!found && mdb_cursor_get(cur, &k, &v, MDB_NEXT) == 0) {
		size_t n, pg;
		memcpy(&n, v.mv_data, sizeof n);
		for (size_t i = 1; i <= n && !found; i++) {
			memcpy(&pg, (char *)v.mv_data + i * sizeof pg, sizeof pg);
			found = pg == p;
		}
	}
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	return found;
}

/* No false alarm: a sound file after many commits, free pages at its end
 * and its meta's last page beyond it, opens; its roots, as the open reads
 * them from the meta page, lie in the file. */
static void test_sound_data_file_after_many_commits_opens(void **state)
{
	static char big[40000];
	char *dir = tu_env_after_many_commits(), path[PATH_MAX];
	MDB_val k = {7, "scratch"}, v = {sizeof big, big};
	shm_env *env = tu_open(dir, NULL);
	shm__lmdb_meta m;
	shm_options ro;
	struct stat fs;
	MDB_stat st;
	MDB_txn *txn;

	snprintf(path, sizeof path, "%s/data.mdb", dir);
	assert_int_equal(mdb_txn_begin(env->mdb, NULL, 0, &txn), 0);
	assert_int_equal(mdb_put(txn, env->meta, &k, &v, 0), 0);
	assert_int_equal(mdb_del(txn, env->meta, &k, NULL), 0);
	assert_int_equal(mdb_txn_commit(txn), 0);
	assert_true(data_file_ends_before_last_page(env, dir));
	assert_int_equal(stat(path, &fs), 0);
	assert_int_equal(mdb_env_stat(env->mdb, &st), 0);
	assert_true(page_is_free(env, (uint64_t)fs.st_size / st.ms_psize - 1));
	shm_env_close(env);
	shm_options_init(&ro);
	ro.read_only = true;
	const shm_options *opts[] = {&ro, NULL};
	for (size_t i = 0; i < 2; i++) {
		env = tu_open(dir, opts[i]);
		assert_int_equal(mdb_txn_begin(env->mdb, NULL, MDB_RDONLY, &txn), 0);
		assert_int_equal(shm__lmdb_meta_read(env, txn, &m), 0);
		mdb_txn_abort(txn);
		assert_true(m.found);
		assert_true(m.free_root < (uint64_t)fs.st_size / m.psize);
		assert_true(m.main_root < (uint64_t)fs.st_size / m.psize);
		assert_int_equal(tu_verify(env), 0);
		shm_env_close(env);
	}
	tu_rmdir(dir);
	free(dir);
}

/* A directory whose DIR/shm.stats does not fit in PATH_MAX (while
 * DIR/data.mdb does) is refused: a cut name would open another file. */
static void test_path_too_long_for_the_stats_file_is_refused(void **state)
{
	char *base = tu_tmpdir();
	char dir[PATH_MAX];
	size_t len = strlen(base), want = PATH_MAX - strlen("/shm.stats");
	shm_env *env = NULL;

	memcpy(dir, base, len + 1);
	while (want - len > 202) {
		dir[len++] = '/';
		memset(dir + len, 'd', 200);
		dir[len += 200] = '\0';
		assert_int_equal(mkdir(dir, 0775), 0);
	}
	dir[len++] = '/';
	memset(dir + len, 'e', want - len);
	dir[want] = '\0';
	assert_int_equal(shm_env_open(dir, NULL, &env), SHM_EINVAL);
	assert_null(env);
	assert_non_null(strstr(shm_errmsg(), "path too long"));
	assert_false(file_exists(dir, "shm.stat"));
	tu_rmdir(base);
	free(base);
}

static void test_stale_reader_of_killed_process_is_cleared_at_open(void **state)
{
	char *dir = tu_tmpdir();
	shm_env *env = tu_open(dir, NULL);
	int fds[2];
	pid_t pid;
	char c;

	shm_env_close(env);
	assert_int_equal(pipe(fds), 0);
	pid = fork();
	if (pid == 0) {
		shm_env *e;
		shm_rtxn *t;
		if (shm_env_open(dir, NULL, &e) || shm_rtxn_begin(e, &t))
			_exit(1);
		if (write(fds[1], "x", 1) != 1)
			_exit(1);
		pause(); /* holds a reader slot until killed */
		_exit(0);
	}
	assert_int_equal(read(fds[0], &c, 1), 1);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	env = tu_open(dir, NULL); /* clears the dead slot */
	int cleared = -1;
	assert_int_equal(shm_env_reader_check(env, &cleared), 0);
	assert_int_equal(cleared, 0);
	shm_env_close(env);
	close(fds[0]);
	close(fds[1]);
	tu_rmdir(dir);
	free(dir);
}

/* Forks a process that opens dir, takes the writers' lock and returns once
 * it holds it. hold_ms < 0: it keeps it until killed; else it sets
 * *released, releases it after hold_ms and exits 0. */
static pid_t lock_holder(const char *dir, int hold_ms, volatile int *released)
{
	int ready[2];
	char c;

	assert_int_equal(pipe(ready), 0);
	pid_t pid = fork();
	if (pid == 0) {
		shm_env *e = tu_open(dir, NULL);
		if (shm__wlock_acquire(e) != 0 || write(ready[1], "x", 1) != 1)
			_exit(1);
		if (hold_ms < 0)
			for (;;)
				pause();
		struct timespec ts = {hold_ms / 1000,
		                      (long)(hold_ms % 1000) * 1000000};
		nanosleep(&ts, NULL);
		*released = 1;
		shm__wlock_release(e);
		_exit(0);
	}
	assert_int_equal(read(ready[0], &c, 1), 1);
	close(ready[0]);
	close(ready[1]);
	return pid;
}

/* A process killed while it holds the writers' lock (wlock.c) does not
 * block the others: the next writer takes the lock over at once. */
static void test_writer_killed_holding_the_writers_lock_blocks_no_one(void **state)
{
	char *dir = tu_tmpdir();
	shm_env *env = tu_open(dir, NULL);
	pid_t pid = lock_holder(dir, -1, NULL);

	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	shm_msg m = tu_msg("wl", 1, "after the holder died");
	assert_int_equal(shm_msg_put(env, &m), 0);
	assert_int_equal(shm_msg_put(env, &m), 0); /* and again: released */
	assert_int_equal(tu_verify(env), 0);
	shm_env_close(env);
	tu_rmdir(dir);
	free(dir);
}

/* The environment's files copied while a writer held the writers' lock
 * (cp -a of a live environment; the same bytes a host crash leaves on
 * disk): the copy's lock says "held by a thread" that no process of the
 * copy has, and the kernel never frees it. The copy's first opener starts
 * it afresh: a write there goes through, holder alive or dead. */
static void test_a_copy_made_while_the_writers_lock_was_held_takes_writes(
	void **state)
{
	char *dir = tu_tmpdir(), *copy = tu_tmpdir(), cmd[8192];
	shm_env *env = tu_open(dir, NULL);
	int st;

	shm_env_close(env);
	pid_t holder = lock_holder(dir, -1, NULL);
	snprintf(cmd, sizeof cmd, "cp -a '%s/.' '%s/'", dir, copy);
	assert_int_equal(system(cmd), 0);
	for (int round = 0; round < 2; round++) {
		if (round == 1) { /* the holder gone, as after a crash */
			kill(holder, SIGKILL);
			waitpid(holder, NULL, 0);
		}
		pid_t w = fork();
		if (w == 0) {
			alarm(5); /* a hang is a failure, not a stuck test */
			shm_env *e = tu_open(copy, NULL);
			shm_msg m = tu_msg("copy", round, "written in the copy");
			_exit(shm_msg_put(e, &m) != 0);
		}
		assert_int_equal(waitpid(w, &st, 0), w);
		if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
			continue;
		kill(holder, SIGKILL);
		waitpid(holder, NULL, 0);
		fail_msg("round %d: the writer of the copy %s %d", round,
		         WIFSIGNALED(st) ? "hung, killed by signal" : "exited",
		         WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
	}
	env = tu_open(copy, NULL);
	shm_info in;
	assert_int_equal(shm_env_info(env, &in), 0);
	assert_int_equal(in.messages, 2);
	assert_int_equal(tu_verify(env), 0);
	shm_env_close(env);
	tu_rmdir(copy);
	tu_rmdir(dir);
	free(copy);
	free(dir);
}

/* While one handle holds the writers' lock, another's write waits for it
 * and goes through once it is released: it neither fails nor overlaps. */
static void test_a_write_waits_for_the_writers_lock(void **state)
{
	char *dir = tu_tmpdir();
	shm_env *env = tu_open(dir, NULL);
	volatile int *released = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
	                              MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	int st;

	assert_true(released != MAP_FAILED);
	/* held longer than one timed wait of the writer below */
	pid_t pid = lock_holder(dir, 100, released);
	shm_msg m = tu_msg("wl", 3, "second");
	assert_int_equal(shm_msg_put(env, &m), 0);
	assert_int_equal(*released, 1);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	munmap((void *)released, 4096);
	shm_env_close(env);
	tu_rmdir(dir);
	free(dir);
}

/* A write begun while the same thread holds the writers' lock fails with
 * EDEADLK instead of waiting for itself forever. */
static void test_a_write_inside_a_write_fails_instead_of_hanging(void **state)
{
	char *dir = tu_tmpdir();
	shm_env *env = tu_open(dir, NULL);
	shm_msg m = tu_msg("wl", 4, "nested");

	assert_int_equal(shm__wlock_acquire(env), 0);
	assert_int_equal(shm_msg_put(env, &m), EDEADLK);
	assert_non_null(strstr(shm_errmsg(), "writers' lock"));
	shm__wlock_release(env);
	assert_int_equal(shm_msg_put(env, &m), 0);
	shm_env_close(env);
	tu_rmdir(dir);
	free(dir);
}

static void test_info_reports_entries_map_and_readers(void **state)
{
	char *dir = tu_tmpdir();
	shm_env *env = tu_open(dir, NULL);
	shm_msg m[3] = {tu_msg("a", 1, "x"), tu_msg("b", 1, "y"),
	                tu_msg("b", 1, "z")};
	shm_info in;

	assert_int_equal(shm_msg_put_many(env, m, 3, NULL), 0);
	assert_int_equal(shm_env_info(env, &in), 0);
	assert_int_equal(in.messages, 3);
	assert_int_equal(in.rooms, 2);
	assert_int_equal(in.log_records, 3);
	assert_int_equal(in.log_first, 1);
	assert_int_equal(in.log_last, 3);
	assert_int_equal(in.format_version, SHM_FORMAT_VERSION);
	assert_true(in.map_used > 0 && in.map_used <= in.map_size);
	assert_int_equal(in.readers_max, 256);
	assert_true(in.l1_bytes > 0);
	shm_env_close(env);
	tu_rmdir(dir);
	free(dir);
}

/* map_used is what the data uses now: pages LMDB freed (and will reuse)
 * are not counted, though the map's high-water mark stays. */
static void test_info_map_used_leaves_out_freed_pages(void **state)
{
	char *dir = tu_tmpdir();
	shm_env *env = tu_open(dir, NULL);
	static char noise[300][3000]; /* incompressible log payloads */
	uint32_t x = 1;
	shm_info full, trimmed;

	for (int i = 0; i < 300; i++) {
		for (size_t j = 0; j < sizeof noise[i] - 1; j++) {
			x = x * 1103515245 + 12345;
			noise[i][j] = (char)('a' + (x >> 16) % 26);
		}
		shm_msg m = tu_msg("big", i, noise[i]);
		assert_int_equal(shm_msg_put(env, &m), 0);
	}
	assert_int_equal(shm_env_info(env, &full), 0);
	assert_int_equal(shm_log_trim(env, full.log_last), 0);
	assert_int_equal(shm_env_info(env, &trimmed), 0);
	assert_int_equal(trimmed.log_records, 0);
	/* the log's 300 records of 3000 bytes are free pages now */
	if (trimmed.map_used + 300 * 3000 / 2 > full.map_used)
		fail_msg("map_used %zu, then %zu after the log's trim",
		         full.map_used, trimmed.map_used);
	assert_true(trimmed.map_used > 0);
	shm_env_close(env);
	tu_rmdir(dir);
	free(dir);
}

/* An application that opens with shm_options_init's defaults takes the
 * environment's own size: a 64 MiB environment it writes to stays 64 MiB
 * (no 1 GiB stored at its first commit, for the other processes to adopt);
 * a new environment gets libshm's default, 1 GiB. */
static void test_default_options_keep_the_environments_map_size(void **state)
{
	char *dir = tu_tmpdir(), *fresh = tu_tmpdir();
	shm_options o;
	shm_info in;
	shm_msg m = tu_msg("a", 1, "x");

	shm_options_init(&o);
	o.map_size = (size_t)64 << 20;
	shm_env *env = tu_open(dir, &o);
	assert_int_equal(shm_msg_put(env, &m), 0);
	shm_env_close(env);
	assert_int_equal(tu_stored_map_size(dir), (size_t)64 << 20);

	shm_options_init(&o); /* what an application does */
	env = tu_open(dir, &o);
	m = tu_msg("a", 1, "y");
	assert_int_equal(shm_msg_put(env, &m), 0);
	size_t in_force = shm_env_options(env)->map_size;
	assert_int_equal(shm_env_info(env, &in), 0);
	shm_env_close(env);
	if (tu_stored_map_size(dir) != (size_t)64 << 20)
		fail_msg("an application with shm_options_init's defaults "
		         "stored %zu MiB in a 64 MiB environment",
		         tu_stored_map_size(dir) >> 20);
	assert_int_equal(in_force, (size_t)64 << 20);
	assert_int_equal(in.map_size, (size_t)64 << 20);

	tu_rmdir(fresh); /* no environment there yet */
	env = tu_open(fresh, &o);
	assert_int_equal(shm_env_options(env)->map_size, (size_t)1 << 30);
	assert_int_equal(shm_msg_put(env, &m), 0);
	shm_env_close(env);
	assert_int_equal(tu_stored_map_size(fresh), (size_t)1 << 30);
	tu_rmdir(dir);
	tu_rmdir(fresh);
	free(dir);
	free(fresh);
}

/* map_size 0 opens an environment at its own size: the one stored in an
 * existing environment (64 MiB here, not grown), libshm's default 1 GiB
 * in a new one (not LMDB's 1 MiB); shm_env_options shows the size in
 * force. */
/* max_readers 0 is the default, 256, as map_size's 0 is; and what
 * shm_env_options says is what LMDB gives: the reader table is made by the
 * first process to open the environment, at least as large as it asks,
 * and never shrinks; a process opening it while another has it open gets
 * the table as it is. (0 was shown as 0 while LMDB gave its own 126
 * slots; a smaller or larger table than the one in force was shown as
 * asked.) A lease_ms of 0, held 1 ms, is shown as 1. */
static void test_options_show_the_reader_slots_and_lease_in_force(void **state)
{
	char *dir = tu_tmpdir();
	shm_options o;
	shm_info in;
	shm_env *env;
	int status;
	pid_t pid;

	shm_options_init(&o);
	assert_int_equal(o.max_readers, 256);
	o.max_readers = 0;
	o.lease_ms = 0;
	env = tu_open(dir, &o);
	assert_int_equal(shm_env_options(env)->max_readers, 256);
	assert_int_equal(shm_env_info(env, &in), 0);
	assert_int_equal(in.readers_max, 256);
	assert_int_equal(shm_env_options(env)->lease_ms, 1);
	shm_env_close(env);

	o.max_readers = 300; /* the first to open it: grows the table */
	env = tu_open(dir, &o);
	assert_int_equal(shm_env_options(env)->max_readers, 300);
	pid = fork();
	if (pid == 0) { /* opens it while the parent has it open */
		shm_options c;
		shm_env *e;
		shm_options_init(&c);
		c.max_readers = 1000;
		if (shm_env_open(dir, &c, &e))
			_exit(1);
		_exit(shm_env_options(e)->max_readers == 300 &&
		      shm_env_info(e, &in) == 0 && in.readers_max == 300 ? 0
		                                                       : 2);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	shm_env_close(env);

	o.max_readers = 8; /* the first again: the table never shrinks */
	env = tu_open(dir, &o);
	assert_int_equal(shm_env_options(env)->max_readers, 300);
	assert_int_equal(shm_env_info(env, &in), 0);
	assert_int_equal(in.readers_max, 300);
	shm_env_close(env);

	/* A table past the bound is refused before lock.mdb is touched (an
	 * unsigned -1 made a 256 GiB lock file that never shrinks). */
	struct stat before, after;
	char lock[PATH_MAX];
	snprintf(lock, sizeof lock, "%s/lock.mdb", dir);
	assert_int_equal(stat(lock, &before), 0);
	o.max_readers = SHM_MAX_READERS_MAX + 1;
	assert_int_equal(shm_env_open(dir, &o, &env), SHM_EINVAL);
	assert_null(env);
	assert_non_null(strstr(shm_errmsg(), "max_readers 65537"));
	o.max_readers = (unsigned)-1;
	assert_int_equal(shm_env_open(dir, &o, &env), SHM_EINVAL);
	assert_int_equal(stat(lock, &after), 0);
	assert_int_equal(after.st_size, before.st_size);
	o.max_readers = SHM_MAX_READERS_MAX; /* the bound itself is fine */
	char *big = tu_tmpdir();
	env = tu_open(big, &o);
	assert_int_equal(shm_env_options(env)->max_readers, SHM_MAX_READERS_MAX);
	shm_env_close(env);
	tu_rmdir(big);
	free(big);
	tu_rmdir(dir);
	free(dir);
}

static void test_map_size_0_keeps_the_environments_own(void **state)
{
	char *dir = tu_tmpdir(), *fresh = tu_tmpdir();
	shm_options o;
	shm_info in;

	shm_options_init(&o);
	assert_int_equal(o.map_size, 0); /* the default */
	o.map_size = (size_t)64 << 20;
	shm_env *env = tu_open(dir, &o);
	shm_msg m = tu_msg("a", 1, "x");
	assert_int_equal(shm_msg_put(env, &m), 0);
	shm_env_close(env);

	o.map_size = 0;
	env = tu_open(dir, &o);
	assert_int_equal(shm_env_info(env, &in), 0);
	assert_int_equal(in.map_size, (size_t)64 << 20);
	assert_int_equal(shm_env_options(env)->map_size, (size_t)64 << 20);
	m = tu_msg("a", 1, "y");
	assert_int_equal(shm_msg_put(env, &m), 0);
	shm_env_close(env);

	tu_rmdir(fresh); /* a directory that holds no environment yet */
	env = tu_open(fresh, &o);
	assert_int_equal(shm_env_info(env, &in), 0);
	assert_int_equal(in.map_size, (size_t)1 << 30);
	assert_int_equal(shm_env_options(env)->map_size, (size_t)1 << 30);
	assert_int_equal(shm_msg_put(env, &m), 0);
	shm_env_close(env);

	o.read_only = true; /* and once more: the size it was created with */
	env = tu_open(fresh, &o);
	assert_int_equal(shm_env_info(env, &in), 0);
	assert_int_equal(in.map_size, (size_t)1 << 30);
	shm_env_close(env);
	tu_rmdir(dir);
	tu_rmdir(fresh);
	free(dir);
	free(fresh);
}

static void test_strerror_names_every_code(void **state)
{
	assert_string_equal(shm_strerror(0), "success");
	assert_string_equal(shm_strerror(SHM_EFULL),
	                    "L1 or map full: flusher behind, or an old read "
	                    "snapshot held");
	/* a text ends with " (description)": one without parentheses reads
	 * "... (a)", not "... (a (b))" */
	assert_string_equal(shm_strerror(SHM_ECORRUPT),
	                    "corrupted or truncated data");
	for (int rc = SHM_EINVAL; rc >= SHM_EDELETED; rc--)
		if (strpbrk(shm_strerror(rc), "()"))
			fail_msg("%d: '%s'", rc, shm_strerror(rc));
	assert_non_null(strstr(shm_strerror(MDB_MAP_FULL), "MDB_MAP_FULL"));
	assert_string_equal(shm_strerror(ENOENT), strerror(ENOENT));
}

static void null_meta_fn(const char *name, uint64_t value, void *user)
{
}

static int null_dead_fn(const shm_dead *d, void *user)
{
	return 0;
}

/* call returns SHM_EINVAL and shm_errmsg() starts with "fn: NULL arg",
 * followed by the description (" (invalid argument)") or more words */
#define assert_null_refused(fn, arg, call)                                    \
	do {                                                                   \
		const char *want_ = fn ": NULL " arg, *e_;                     \
		assert_int_equal((call), SHM_EINVAL);                          \
		e_ = shm_errmsg();                                             \
		if (strncmp(e_, want_, strlen(want_)) ||                       \
		    !strchr(" ,", e_[strlen(want_)]))                          \
			fail_msg("'%s', want '%s'", e_, want_);                \
	} while (0)

/* Covers EVERY function of shm.h and shm_log.h returning int: a function
 * added there is added here too. A NULL handle (shm_env, shm_rtxn,
 * shm_log_iter) or a NULL pointer it needs is SHM_EINVAL naming the
 * function and the argument ("shm_msg_get: NULL id"), changing nothing;
 * the other functions give the harmless result shm.h's Conventions give. */
static void test_null_handle_is_refused_by_every_function(void **state)
{
	char *dir = tu_tmpdir();
	shm_env *env = tu_open(dir, NULL), *other;
	shm_uuid id, w;
	shm_msg m = tu_msg("r", 1, "x"), *got;
	const shm_msg *view;
	shm_msg **page;
	shm_static *st;
	shm_objlist *list;
	shm_counters c;
	shm_info info;
	shm_policy pol;
	shm_rtxn *t;
	shm_log_iter *it;
	shm_log_rec rec = {.seq = 1};
	shm_inval_key key = {.kind = SHM_INVAL_MSG, .key = id.b, .klen = 16};
	shm_inval_key nokey = {.kind = SHM_INVAL_MSG, .klen = 16};
	shm_redis_addr addr;
	shm_msg_type type;
	const char *name = "x", *noname = NULL, *room, *deps[] = {"Block/1",
	                                                         NULL};
	char *json, *buf = NULL;
	uint8_t *dbuf = NULL;
	uint64_t u = 1;
	int64_t when;
	size_t n, len = 0, cap = 0;
	bool direct;
	int cleared;

	shm_uuid_v7(&id);
	shm_uuid_v7(&w);
	shm_env_close(NULL);
	assert_null(shm_env_options(NULL));
	assert_null(shm_env_path(NULL));
	assert_null_refused("shm_env_open", "dir",
	                    shm_env_open(NULL, NULL, &other));
	assert_null_refused("shm_env_open", "out",
	                    shm_env_open(dir, NULL, NULL));
	assert_null_refused("shm_redis_url_parse", "url",
	                    shm_redis_url_parse(NULL, &addr));
	assert_null_refused("shm_redis_url_parse", "out",
	                    shm_redis_url_parse("redis://h", NULL));
	assert_null_refused("shm_env_sync", "env", shm_env_sync(NULL));
	assert_null_refused("shm_env_reader_check", "env",
	                    shm_env_reader_check(NULL, &cleared));
	assert_null_refused("shm_uuid_parse", "s", shm_uuid_parse(NULL, &id));
	assert_null_refused("shm_uuid_parse", "out",
	                    shm_uuid_parse("0190a4c4-1d2e-7abc-8def-0123456789ab",
	                                   NULL));
	assert_null_refused("shm_time_parse", "s", shm_time_parse(NULL, &when));
	assert_null_refused("shm_time_parse", "us",
	                    shm_time_parse("2026-01-01T00:00:00Z", NULL));
	assert_null_refused("shm_msg_type_parse", "s",
	                    shm_msg_type_parse(NULL, &type));
	assert_null_refused("shm_msg_type_parse", "out",
	                    shm_msg_type_parse("Text", NULL));
	/* messages */
	assert_null_refused("shm_msg_put", "env", shm_msg_put(NULL, &m));
	assert_null_refused("shm_msg_put", "m", shm_msg_put(env, NULL));
	assert_null_refused("shm_msg_put_many", "env",
	                    shm_msg_put_many(NULL, &m, 1, NULL));
	assert_null_refused("shm_msg_put_many", "msgs",
	                    shm_msg_put_many(env, NULL, 1, NULL));
	assert_null_refused("shm_msg_get", "env", shm_msg_get(NULL, &id, &got));
	assert_null_refused("shm_msg_get", "id", shm_msg_get(env, NULL, &got));
	assert_null_refused("shm_msg_get", "out", shm_msg_get(env, &id, NULL));
	assert_null_refused("shm_rtxn_begin", "env", shm_rtxn_begin(NULL, &t));
	assert_null_refused("shm_rtxn_begin", "out", shm_rtxn_begin(env, NULL));
	shm_rtxn_end(NULL);
	assert_null_refused("shm_msg_view", "t", shm_msg_view(NULL, &id, &view));
	assert_int_equal(shm_rtxn_begin(env, &t), 0);
	assert_null_refused("shm_msg_view", "id", shm_msg_view(t, NULL, &view));
	assert_null_refused("shm_msg_view", "out", shm_msg_view(t, &id, NULL));
	shm_rtxn_end(t);
	assert_null_refused("shm_msg_edit", "env",
	                    shm_msg_edit(NULL, &id, "y", 1));
	assert_null_refused("shm_msg_edit", "id", shm_msg_edit(env, NULL, "y", 1));
	assert_null_refused("shm_msg_edit", "content",
	                    shm_msg_edit(env, &id, NULL, 1));
	assert_null_refused("shm_msg_delete", "env", shm_msg_delete(NULL, &id));
	assert_null_refused("shm_msg_delete", "id", shm_msg_delete(env, NULL));
	assert_null_refused("shm_msg_react", "env",
	                    shm_msg_react(NULL, &id, 1, "+1", true));
	assert_null_refused("shm_msg_react", "id",
	                    shm_msg_react(env, NULL, 1, "+1", true));
	assert_null_refused("shm_msg_react", "emoji",
	                    shm_msg_react(env, &id, 1, NULL, true));
	assert_null_refused("shm_room_page", "env",
	                    shm_room_page(NULL, "r", 0, 10, &page, &n));
	assert_null_refused("shm_room_page", "room",
	                    shm_room_page(env, NULL, 0, 10, &page, &n));
	assert_null_refused("shm_room_page", "out",
	                    shm_room_page(env, "r", 0, 10, NULL, &n));
	assert_null_refused("shm_room_page", "n",
	                    shm_room_page(env, "r", 0, 10, &page, NULL));
	assert_null_refused("shm_msg_to_json", "m",
	                    shm_msg_to_json(NULL, &json, &n));
	assert_null_refused("shm_msg_to_json", "json",
	                    shm_msg_to_json(&m, NULL, &n));
	assert_null_refused("shm_msg_from_json", "json",
	                    shm_msg_from_json(NULL, 0, &got, NULL, 0));
	assert_null_refused("shm_msg_from_json", "out",
	                    shm_msg_from_json("{}", 2, NULL, NULL, 0));
	/* statics and the graph */
	assert_null_refused("shm_object_check", "object",
	                    shm_object_check(NULL));
	assert_null_refused("shm_static_get", "env",
	                    shm_static_get(NULL, &w, "page/1", NULL, NULL, &st));
	assert_null_refused("shm_static_get", "website",
	                    shm_static_get(env, NULL, "page/1", NULL, NULL, &st));
	assert_null_refused("shm_static_get", "object",
	                    shm_static_get(env, &w, NULL, NULL, NULL, &st));
	assert_null_refused("shm_static_get", "out",
	                    shm_static_get(env, &w, "page/1", NULL, NULL, NULL));
	assert_null_refused("shm_static_get", "gen",
	                    shm_static_get(env, &w, "page/1", NULL, NULL, &st));
	assert_null_refused("shm_static_put", "env",
	                    shm_static_put(NULL, &w, "page/1", "x", 1, &st));
	assert_null_refused("shm_static_put", "website",
	                    shm_static_put(env, NULL, "page/1", "x", 1, &st));
	assert_null_refused("shm_static_put", "object",
	                    shm_static_put(env, &w, NULL, "x", 1, &st));
	assert_null_refused("shm_static_put", "content",
	                    shm_static_put(env, &w, "page/1", NULL, 1, &st));
	assert_null_refused("shm_static_peek", "env",
	                    shm_static_peek(NULL, &w, "page/1", &st));
	assert_null_refused("shm_static_peek", "website",
	                    shm_static_peek(env, NULL, "page/1", &st));
	assert_null_refused("shm_static_peek", "object",
	                    shm_static_peek(env, &w, NULL, &st));
	assert_null_refused("shm_static_peek", "out",
	                    shm_static_peek(env, &w, "page/1", NULL));
	assert_null_refused("shm_deps_set", "env",
	                    shm_deps_set(NULL, &w, "page/1", true, NULL, 0));
	assert_null_refused("shm_deps_set", "website",
	                    shm_deps_set(env, NULL, "page/1", true, NULL, 0));
	assert_null_refused("shm_deps_set", "object",
	                    shm_deps_set(env, &w, NULL, true, NULL, 0));
	assert_null_refused("shm_deps_set", "deps",
	                    shm_deps_set(env, &w, "page/1", true, NULL, 1));
	assert_null_refused("shm_deps_set", "deps[1]",
	                    shm_deps_set(env, &w, "page/1", true, deps, 2));
	assert_null_refused("shm_deps_get", "env",
	                    shm_deps_get(NULL, &w, "page/1", &list));
	assert_null_refused("shm_deps_get", "website",
	                    shm_deps_get(env, NULL, "page/1", &list));
	assert_null_refused("shm_deps_get", "object",
	                    shm_deps_get(env, &w, NULL, &list));
	assert_null_refused("shm_deps_get", "out",
	                    shm_deps_get(env, &w, "page/1", NULL));
	assert_null_refused("shm_deps_recursive", "env",
	                    shm_deps_recursive(NULL, &w, "page/1", &list));
	assert_null_refused("shm_deps_recursive", "object",
	                    shm_deps_recursive(env, &w, NULL, &list));
	assert_null_refused("shm_deps_referrers", "env",
	                    shm_deps_referrers(NULL, &w, "page/1", &list));
	assert_null_refused("shm_deps_referrers", "website",
	                    shm_deps_referrers(env, NULL, "page/1", &list));
	assert_null_refused("shm_object_is_direct", "env",
	                    shm_object_is_direct(NULL, &w, "page/1", &direct));
	assert_null_refused("shm_object_is_direct", "website",
	                    shm_object_is_direct(env, NULL, "page/1", &direct));
	assert_null_refused("shm_object_is_direct", "direct",
	                    shm_object_is_direct(env, &w, "page/1", NULL));
	assert_null_refused("shm_object_save", "env",
	                    shm_object_save(NULL, &w, "page/1"));
	assert_null_refused("shm_object_save", "website",
	                    shm_object_save(env, NULL, "page/1"));
	assert_null_refused("shm_object_destroy", "env",
	                    shm_object_destroy(NULL, &w, "page/1"));
	assert_null_refused("shm_object_destroy", "object",
	                    shm_object_destroy(env, &w, NULL));
	assert_null_refused("shm_static_bust", "env",
	                    shm_static_bust(NULL, &w, "page/1"));
	assert_null_refused("shm_static_bust", "object",
	                    shm_static_bust(env, &w, NULL));
	/* stats */
	assert_null_refused("shm_stats_shared", "env",
	                    shm_stats_shared(NULL, &c));
	assert_null_refused("shm_stats_shared", "out",
	                    shm_stats_shared(env, NULL));
	memset(&c, 0xff, sizeof c);
	shm_stats_local(NULL, &c);
	assert_int_equal(c.puts, 0);
	assert_int_equal(c.get_latency.count, 0);
	shm_stats_local(env, NULL);
	assert_null_refused("shm_env_info", "env", shm_env_info(NULL, &info));
	assert_null_refused("shm_env_info", "out", shm_env_info(env, NULL));
	/* shm_log.h */
	assert_null_refused("shm_log_iter_open", "env",
	                    shm_log_iter_open(NULL, 0, &it));
	assert_null_refused("shm_log_iter_open", "out",
	                    shm_log_iter_open(env, 0, NULL));
	assert_null_refused("shm_log_iter_next", "it",
	                    shm_log_iter_next(NULL, &rec));
	assert_int_equal(shm_log_iter_open(env, 0, &it), 0);
	assert_null_refused("shm_log_iter_next", "rec",
	                    shm_log_iter_next(it, NULL));
	shm_log_iter_close(it);
	shm_log_iter_close(NULL);
	assert_null_refused("shm_log_decode", "raw",
	                    shm_log_decode(NULL, 40, &rec, &dbuf, &n));
	assert_null_refused("shm_log_decode", "rec",
	                    shm_log_decode("x", 1, NULL, &dbuf, &n));
	assert_null_refused("shm_log_decode", "buf",
	                    shm_log_decode("x", 1, &rec, NULL, &n));
	assert_null_refused("shm_log_decode", "buf_cap",
	                    shm_log_decode("x", 1, &rec, &dbuf, NULL));
	assert_null_refused("shm_log_trim", "env", shm_log_trim(NULL, 0));
	assert_null_refused("shm_meta_get", "env", shm_meta_get(NULL, "x", &u));
	assert_null_refused("shm_meta_get", "name", shm_meta_get(env, NULL, &u));
	assert_null_refused("shm_meta_get", "value",
	                    shm_meta_get(env, "x", NULL));
	assert_null_refused("shm_meta_set", "env", shm_meta_set(NULL, "x", 1));
	assert_null_refused("shm_meta_set", "name", shm_meta_set(env, NULL, 1));
	assert_null_refused("shm_meta_set_many", "env",
	                    shm_meta_set_many(NULL, &name, &u, 1));
	assert_null_refused("shm_meta_set_many", "names",
	                    shm_meta_set_many(env, NULL, &u, 1));
	assert_null_refused("shm_meta_set_many", "values",
	                    shm_meta_set_many(env, &name, NULL, 1));
	assert_null_refused("shm_meta_set_many", "names[0]",
	                    shm_meta_set_many(env, &noname, &u, 1));
	assert_null_refused("shm_meta_each", "env",
	                    shm_meta_each(NULL, "", null_meta_fn, NULL));
	assert_null_refused("shm_meta_each", "prefix",
	                    shm_meta_each(env, NULL, null_meta_fn, NULL));
	assert_null_refused("shm_meta_each", "fn",
	                    shm_meta_each(env, "", NULL, NULL));
	assert_null_refused("shm_policy_get", "env", shm_policy_get(NULL, &pol));
	assert_null_refused("shm_policy_get", "out", shm_policy_get(env, NULL));
	assert_null_refused("shm_dead_add", "env",
	                    shm_dead_add(NULL, &rec, "pg", "why"));
	assert_null_refused("shm_dead_add", "rec",
	                    shm_dead_add(env, NULL, "pg", "why"));
	assert_null_refused("shm_dead_add", "sink",
	                    shm_dead_add(env, &rec, NULL, "why"));
	assert_null_refused("shm_dead_add", "reason",
	                    shm_dead_add(env, &rec, "pg", NULL));
	assert_null_refused("shm_dead_each", "env",
	                    shm_dead_each(NULL, null_dead_fn, NULL));
	assert_null_refused("shm_dead_each", "fn", shm_dead_each(env, NULL, NULL));
	assert_null_refused("shm_dead_walk", "env",
	                    shm_dead_walk(NULL, null_dead_fn, NULL, NULL));
	assert_null_refused("shm_dead_walk", "fn",
	                    shm_dead_walk(env, NULL, NULL, NULL));
	assert_null_refused("shm_log_wait", "env", shm_log_wait(NULL, 0, 1));
	assert_null_refused("shm_msg_decode", "buf",
	                    shm_msg_decode(NULL, 1, &got));
	assert_null_refused("shm_msg_decode", "out",
	                    shm_msg_decode("x", 1, NULL));
	assert_null_refused("shm_static_decode", "buf",
	                    shm_static_decode(NULL, 1, &st));
	assert_null_refused("shm_static_decode", "out",
	                    shm_static_decode("x", 1, NULL));
	assert_null_refused("shm_msg_payload_room", "buf",
	                    shm_msg_payload_room(NULL, 1, &room, &n, &when));
	assert_null_refused("shm_msg_payload_room", "room",
	                    shm_msg_payload_room("x", 1, NULL, &n, &when));
	assert_null_refused("shm_msg_payload_room", "room_len",
	                    shm_msg_payload_room("x", 1, &room, NULL, &when));
	assert_null_refused("shm_msg_payload_room", "created_at",
	                    shm_msg_payload_room("x", 1, &room, &n, NULL));
	assert_null_refused("shm_msg_json_append", "m",
	                    shm_msg_json_append(NULL, &buf, &len, &cap, NULL,
	                                        NULL));
	assert_null_refused("shm_msg_json_append", "buf",
	                    shm_msg_json_append(&m, NULL, &len, &cap, NULL,
	                                        NULL));
	assert_null_refused("shm_msg_json_append", "len",
	                    shm_msg_json_append(&m, &buf, NULL, &cap, NULL,
	                                        NULL));
	assert_null_refused("shm_msg_json_append", "cap",
	                    shm_msg_json_append(&m, &buf, &len, NULL, NULL,
	                                        NULL));
	assert_null_refused("shm_msg_metadata_json_append", "m",
	                    shm_msg_metadata_json_append(NULL, &buf, &len,
	                                                 &cap));
	assert_null_refused("shm_msg_metadata_json_append", "cap",
	                    shm_msg_metadata_json_append(&m, &buf, &len, NULL));
	assert_null_refused("shm_l1_expire", "env", shm_l1_expire(NULL, &u));
	assert_null_refused("shm_verify", "env", shm_verify(NULL, NULL, NULL, &n));
	assert_null_refused("shm_l1_invalidate", "env",
	                    shm_l1_invalidate(NULL, SHM_INVAL_MSG, id.b, 16,
	                                      &u));
	assert_null_refused("shm_l1_invalidate", "key",
	                    shm_l1_invalidate(env, SHM_INVAL_MSG, NULL, 16,
	                                      &u));
	assert_null_refused("shm_l1_invalidate_many", "env",
	                    shm_l1_invalidate_many(NULL, &key, 1, &u, &u));
	assert_null_refused("shm_l1_invalidate_many", "keys",
	                    shm_l1_invalidate_many(env, NULL, 1, &u, &u));
	assert_null_refused("shm_l1_invalidate_many", "keys[0].key",
	                    shm_l1_invalidate_many(env, &nokey, 1, &u, &u));
	assert_null_refused("shm_l1_invalidate_flushed", "env",
	                    shm_l1_invalidate_flushed(NULL, &u));
	/* nothing was written */
	assert_int_equal(tu_log_count(env), 0);
	shm_env_close(env);
	tu_rmdir(dir);
	free(dir);
}

/* x's bytes, all 0: NULL, 0, false, a nil UUID, a zeroed struct */
static bool all_zero(const void *x, size_t size)
{
	const unsigned char *p = x;

	for (size_t i = 0; i < size; i++)
		if (p[i])
			return false;
	return true;
}

/* Garbage in x, as in a caller's uninitialised variable. */
#define JUNK(x) memset(&(x), 0xa5, sizeof(x))
#define assert_zeroed(x)                                                       \
	do {                                                                   \
		if (!all_zero(&(x), sizeof(x)))                                \
			fail_msg("%s is not NULL/0 after a failure", #x);      \
	} while (0)
/* call fails (any code but 0) */
#define assert_fails(call) assert_int_not_equal((call), 0)

/* Covers EVERY function of shm.h and shm_log.h with out-parameters: a
 * function added there is added here too. Each fails, its out-parameters
 * holding garbage first, and leaves every one NULL/0 (shm.h's
 * Conventions), so that a caller's cleanup path may free them whatever the
 * result: with a NULL handle or argument, and with a failure of its own.
 * The exceptions shm.h names hold what they say. */
static void test_failing_calls_leave_out_parameters_null_or_zero(void **state)
{
	char *dir = tu_tmpdir(), err[200], *json, *buf = NULL;
	shm_env *env = tu_open(dir, NULL), *other;
	shm_options bad_opt;
	shm_redis_addr addr;
	shm_uuid id, w, unknown;
	shm_msg bad_msg = tu_msg("r", 1, "x"), *got;
	shm_msg batch[3] = {tu_msg("r", 1, "a"), tu_msg("r", 1, "\xff"),
	                    tu_msg("r", 1, "c")};
	const shm_msg *view;
	shm_msg **page;
	shm_msg_type type;
	shm_static *st;
	shm_objlist *list;
	shm_counters c;
	shm_info info;
	shm_policy pol;
	shm_rtxn *t;
	shm_log_iter *it;
	shm_log_rec rec;
	shm_inval_key badkey = {.kind = 'X', .key = "k", .klen = 1};
	uint8_t raw[SHM_LOG_HEADER] = {SHM_LOG_VERSION, SHM_OP_MSG_PUT, 0, 0,
	                               0, 0, 0, 0, 7}; /* seq 7, no checksum */
	uint8_t *dbuf = NULL;
	const char *room;
	uint64_t u, u2;
	int64_t when;
	size_t n, bad, len = 0, cap = 0, moff, mlen;
	bool direct;
	int cleared;

	shm_uuid_v7(&w);
	shm_uuid_v7(&unknown);
	bad_msg.username = "\xff"; /* not UTF-8 */
	/* environment */
	shm_options_init(&bad_opt);
	bad_opt.durability = (shm_durability)99;
	JUNK(other);
	assert_fails(shm_env_open(NULL, NULL, &other));
	assert_zeroed(other);
	JUNK(other);
	assert_fails(shm_env_open(dir, &bad_opt, &other));
	assert_zeroed(other);
	JUNK(addr);
	assert_fails(shm_redis_url_parse(NULL, &addr));
	assert_zeroed(addr);
	JUNK(addr); /* the host is read before the port fails */
	assert_fails(shm_redis_url_parse("redis://host:0", &addr));
	assert_zeroed(addr);
	JUNK(cleared);
	assert_fails(shm_env_reader_check(NULL, &cleared));
	assert_zeroed(cleared);
	JUNK(id);
	assert_fails(shm_uuid_parse("0190a4c4-1d2e-7abc-8def-0123456789zz",
	                            &id));
	assert_zeroed(id);
	JUNK(when);
	assert_fails(shm_time_parse("2026-01-01T25:00:00Z", &when));
	assert_zeroed(when);
	JUNK(type);
	assert_fails(shm_msg_type_parse("Nope", &type));
	assert_zeroed(type);
	/* messages */
	JUNK(bad); /* the exception: the bad message's index, else n */
	assert_fails(shm_msg_put_many(env, batch, 3, &bad));
	assert_int_equal(bad, 1);
	JUNK(bad);
	assert_fails(shm_msg_put_many(NULL, batch, 3, &bad));
	assert_int_equal(bad, 3);
	JUNK(got);
	assert_fails(shm_msg_get(NULL, &unknown, &got));
	assert_zeroed(got);
	JUNK(got);
	assert_fails(shm_msg_get(env, &unknown, &got));
	assert_zeroed(got);
	JUNK(t);
	assert_fails(shm_rtxn_begin(NULL, &t));
	assert_zeroed(t);
	assert_int_equal(shm_rtxn_begin(env, &t), 0);
	JUNK(view);
	assert_fails(shm_msg_view(t, &unknown, &view));
	assert_zeroed(view);
	shm_rtxn_end(t);
	JUNK(page);
	JUNK(n);
	assert_fails(shm_room_page(NULL, "r", 0, 10, &page, &n));
	assert_zeroed(page);
	assert_zeroed(n);
	JUNK(page);
	JUNK(n);
	assert_fails(shm_room_page(env, "r", 0, 0, &page, &n));
	assert_zeroed(page);
	assert_zeroed(n);
	JUNK(json);
	JUNK(n);
	assert_fails(shm_msg_to_json(NULL, &json, &n));
	assert_zeroed(json);
	assert_zeroed(n);
	JUNK(json);
	JUNK(n);
	assert_fails(shm_msg_to_json(&bad_msg, &json, &n));
	assert_zeroed(json);
	assert_zeroed(n);
	JUNK(got);
	assert_fails(shm_msg_from_json(NULL, 0, &got, err, sizeof err));
	assert_zeroed(got);
	JUNK(got);
	assert_fails(shm_msg_from_json("{", 1, &got, err, sizeof err));
	assert_zeroed(got);
	/* statics and the graph */
	JUNK(st);
	assert_fails(shm_static_get(NULL, &w, "page/1", NULL, NULL, &st));
	assert_zeroed(st);
	JUNK(st);
	assert_fails(shm_static_get(env, &w, "page/1", NULL, NULL, &st));
	assert_zeroed(st);
	JUNK(st);
	assert_fails(shm_static_put(NULL, &w, "page/1", "x", 1, &st));
	assert_zeroed(st);
	JUNK(st);
	assert_fails(shm_static_put(env, &w, "nope", "x", 1, &st));
	assert_zeroed(st);
	JUNK(st);
	assert_fails(shm_static_peek(NULL, &w, "page/1", &st));
	assert_zeroed(st);
	JUNK(st);
	assert_fails(shm_static_peek(env, &w, "page/1", &st));
	assert_zeroed(st);
	JUNK(list);
	assert_fails(shm_deps_get(NULL, &w, "page/1", &list));
	assert_zeroed(list);
	JUNK(list);
	assert_fails(shm_deps_get(env, &w, "nope", &list));
	assert_zeroed(list);
	JUNK(list);
	assert_fails(shm_deps_recursive(env, &w, "nope", &list));
	assert_zeroed(list);
	JUNK(list);
	assert_fails(shm_deps_referrers(env, &w, "nope", &list));
	assert_zeroed(list);
	JUNK(direct);
	assert_fails(shm_object_is_direct(NULL, &w, "page/1", &direct));
	assert_zeroed(direct);
	JUNK(direct);
	assert_fails(shm_object_is_direct(env, &w, "nope", &direct));
	assert_zeroed(direct);
	/* stats */
	JUNK(c);
	assert_fails(shm_stats_shared(NULL, &c));
	assert_zeroed(c);
	JUNK(info);
	assert_fails(shm_env_info(NULL, &info));
	assert_zeroed(info);
	/* shm_log.h */
	JUNK(it);
	assert_fails(shm_log_iter_open(NULL, 0, &it));
	assert_zeroed(it);
	assert_int_equal(shm_log_iter_open(env, 0, &it), 0);
	JUNK(rec); /* the end: nothing was written */
	assert_int_equal(shm_log_iter_next(it, &rec), SHM_ENOTFOUND);
	assert_zeroed(rec);
	shm_log_iter_close(it);
	JUNK(rec);
	assert_fails(shm_log_decode(NULL, 1, &rec, &dbuf, &cap));
	assert_zeroed(rec);
	JUNK(rec); /* the exception: SHM_ECORRUPT says what could be read */
	assert_int_equal(shm_log_decode(raw, sizeof raw, &rec, &dbuf, &cap),
	                 SHM_ECORRUPT);
	assert_int_equal(rec.seq, 7);
	assert_int_equal(rec.op, SHM_OP_MSG_PUT);
	assert_ptr_equal(rec.raw, raw);
	assert_int_equal(rec.raw_size, sizeof raw);
	assert_null(rec.key);
	assert_null(rec.payload);
	free(dbuf);
	cap = 0;
	JUNK(u);
	assert_fails(shm_meta_get(NULL, "x", &u));
	assert_zeroed(u);
	JUNK(pol);
	assert_fails(shm_policy_get(NULL, &pol));
	assert_zeroed(pol);
	JUNK(got);
	assert_fails(shm_msg_decode("x", 1, &got));
	assert_zeroed(got);
	JUNK(st);
	assert_fails(shm_static_decode("x", 1, &st));
	assert_zeroed(st);
	JUNK(room);
	JUNK(n);
	JUNK(when);
	assert_fails(shm_msg_payload_room("x", 1, &room, &n, &when));
	assert_zeroed(room);
	assert_zeroed(n);
	assert_zeroed(when);
	JUNK(moff);
	JUNK(mlen);
	assert_fails(shm_msg_json_append(NULL, &buf, &len, &cap, &moff, &mlen));
	assert_zeroed(moff);
	assert_zeroed(mlen);
	JUNK(moff);
	JUNK(mlen);
	assert_fails(shm_msg_json_append(&bad_msg, &buf, &len, &cap, &moff,
	                                 &mlen));
	assert_zeroed(moff);
	assert_zeroed(mlen);
	assert_int_equal(len, 0); /* in and out: as it was */
	free(buf);
	JUNK(u);
	assert_fails(shm_l1_expire(NULL, &u));
	assert_zeroed(u);
	JUNK(n);
	assert_fails(shm_verify(NULL, NULL, NULL, &n));
	assert_zeroed(n);
	JUNK(u);
	assert_fails(shm_l1_invalidate(env, 'X', "k", 1, &u));
	assert_zeroed(u);
	JUNK(u);
	JUNK(u2);
	assert_fails(shm_l1_invalidate_many(env, &badkey, 1, &u, &u2));
	assert_zeroed(u);
	assert_zeroed(u2);
	JUNK(u);
	assert_fails(shm_l1_invalidate_flushed(NULL, &u));
	assert_zeroed(u);
	/* nothing was written */
	assert_int_equal(tu_log_count(env), 0);
	shm_env_close(env);
	tu_rmdir(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_another_process_sees_the_writes_at_once),
		cmocka_unit_test(test_close_in_a_forked_child_leaves_the_parent_alone),
		cmocka_unit_test(test_second_open_in_one_process_is_refused),
		cmocka_unit_test(test_open_after_close_works),
		cmocka_unit_test(test_threads_opening_at_once_get_one_handle),
		cmocka_unit_test(test_child_of_fork_opens_its_own_handle),
		cmocka_unit_test(test_read_only_open_refuses_writes),
		cmocka_unit_test(test_read_only_open_of_missing_dir_fails_clearly),
		cmocka_unit_test(test_open_error_shows_the_path_printably),
		cmocka_unit_test(test_long_error_text_is_cut_between_characters),
		cmocka_unit_test(test_open_denied_names_the_file),
		cmocka_unit_test(test_stats_file_of_another_version_is_refused),
		cmocka_unit_test(test_other_format_version_is_refused),
		cmocka_unit_test(test_non_shm_lmdb_environment_is_refused),
		cmocka_unit_test(
			test_write_open_of_a_non_shm_lmdb_environment_changes_nothing),
		cmocka_unit_test(test_truncated_data_file_is_refused_at_open),
		cmocka_unit_test(test_torn_copy_is_refused_as_damaged_not_a_version),
		cmocka_unit_test(test_refused_open_removes_only_the_lock_file_it_made),
		cmocka_unit_test(test_tail_cut_taking_a_root_is_refused_at_open),
		cmocka_unit_test(
			test_sound_data_file_ending_before_its_last_page_opens),
		cmocka_unit_test(test_sound_data_file_after_many_commits_opens),
		cmocka_unit_test(test_path_too_long_for_the_stats_file_is_refused),
		cmocka_unit_test(test_stale_reader_of_killed_process_is_cleared_at_open),
		cmocka_unit_test(test_writer_killed_holding_the_writers_lock_blocks_no_one),
		cmocka_unit_test(test_a_copy_made_while_the_writers_lock_was_held_takes_writes),
		cmocka_unit_test(test_a_write_waits_for_the_writers_lock),
		cmocka_unit_test(test_a_write_inside_a_write_fails_instead_of_hanging),
		cmocka_unit_test(test_info_reports_entries_map_and_readers),
		cmocka_unit_test(test_info_map_used_leaves_out_freed_pages),
		cmocka_unit_test(test_strerror_names_every_code),
		cmocka_unit_test(test_null_handle_is_refused_by_every_function),
		cmocka_unit_test(
			test_failing_calls_leave_out_parameters_null_or_zero),
		cmocka_unit_test(test_out_of_range_options_are_refused),
		cmocka_unit_test(test_map_size_0_keeps_the_environments_own),
		cmocka_unit_test(
			test_options_show_the_reader_slots_and_lease_in_force),
		cmocka_unit_test(test_default_options_keep_the_environments_map_size),
		cmocka_unit_test(test_unparseable_pg_conninfo_is_refused_at_open),
		cmocka_unit_test(test_pg_conninfo_check_agrees_with_libpq),
		cmocka_unit_test(test_stale_reader_slot_is_shown_then_cleared),
	};
	return cmocka_run_group_tests_name("env", tests, NULL, NULL);
}
