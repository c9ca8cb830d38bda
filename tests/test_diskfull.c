/* tests/test_diskfull.c - a full disk under the environment: writes that
 * need data.mdb to grow fail, naming the file and the cause, store nothing
 * and kill nothing; reads go on; opens that need room are refused, naming
 * the file; once there is room again everything works and every write
 * accepted before is there.
 *
 * A full disk is made in a child process two ways: a file size limit
 * (setrlimit RLIMIT_FSIZE with SIGXFSZ ignored: a write past it fails
 * with EFBIG, or comes back short, as on a full disk with ENOSPC), which
 * works everywhere; and a small tmpfs in a mount namespace of the child's
 * own (root only: skipped elsewhere, saying why), the only way to see
 * what a store into a hole of a mapped file does on a full disk. Checks
 * in a child are CK (a cmocka assert there would go on with the parent's
 * test list in the child): it says what failed and exits 1. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shm_log.h"
#include "testutil.h"

#define CK(c)                                                                  \
	do {                                                                   \
		if (!(c)) {                                                    \
			fprintf(stderr, "%s:%d: in the child: %s (last "      \
			        "error: %s)\n", __FILE__, __LINE__, #c,        \
			        shm_errmsg());                                 \
			_exit(1);                                              \
		}                                                              \
	} while (0)

static const char *WEB = "8c5e1ab0-6d0a-4c5c-9b61-2f6a0e1d5a11";
/* a content that takes pages past the file's end: letters at random,
 * which lz4 does not make much smaller */
static char big[60000];

static void fill_big(unsigned seed)
{
	uint32_t x = 2463534242u + seed;

	for (size_t i = 0; i < sizeof big - 1; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		big[i] = (char)('a' + x % 26);
	}
	big[sizeof big - 1] = 0;
}

static shm_msg big_msg(void)
{
	shm_msg m = tu_msg("room-full", 7, big);
	m.content_len = (uint32_t)strlen(big);
	return m;
}

static off_t size_of(const char *dir, const char *file)
{
	char path[4400];
	struct stat st;

	snprintf(path, sizeof path, "%s/%s", dir, file);
	return stat(path, &st) == 0 ? st.st_size : -1;
}

/* The first thing a child does: dies of the signals cmocka would catch
 * (and then run the parent's next tests in the child), SIGBUS above all,
 * so that child_ok sees them. */
static void child_start(void)
{
	signal(SIGBUS, SIG_DFL);
	signal(SIGSEGV, SIG_DFL);
	signal(SIGFPE, SIG_DFL);
	signal(SIGILL, SIG_DFL);
}

/* Whether dir/file has a block for every byte (no hole). */
static bool allocated(const char *dir, const char *file)
{
	char path[4400];
	struct stat st;

	snprintf(path, sizeof path, "%s/%s", dir, file);
	return stat(path, &st) == 0 && st.st_size > 0 &&
	       (off_t)st.st_blocks * 512 >= st.st_size;
}

/* In a child: writes past limit bytes fail (EFBIG) instead of killing. */
static void limit_file_size(rlim_t limit)
{
	struct rlimit rl;

	signal(SIGXFSZ, SIG_IGN);
	CK(getrlimit(RLIMIT_FSIZE, &rl) == 0);
	rl.rlim_cur = limit;
	CK(setrlimit(RLIMIT_FSIZE, &rl) == 0);
}

/* Waits for pid; asserts that it exited 0 (not killed: SIGBUS was how a
 * full disk ended an application that read). */
static void child_ok(pid_t pid)
{
	int status;

	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (WIFSIGNALED(status))
		fprintf(stderr, "child killed by signal %d (%s)\n",
		        WTERMSIG(status), strsignal(WTERMSIG(status)));
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static size_t problems(shm_env *env)
{
	size_t n = 99;
	CK(shm_verify(env, NULL, NULL, &n) == 0);
	return n;
}

/* The log and the data as they were: nothing of a failed write. */
static void ck_unchanged(shm_env *env, const shm_info *before)
{
	shm_info in;

	CK(shm_env_info(env, &in) == 0);
	CK(in.messages == before->messages);
	CK(in.statics == before->statics);
	CK(in.log_records == before->log_records);
	CK(in.next_seq == before->next_seq);
}

/* The error of a write that needed data.mdb to grow past the limit. */
static void ck_said_limit(int rc, const char *dir)
{
	const char *e = shm_errmsg();

	fprintf(stderr, "  said: %s\n", e);
	CK(rc == EFBIG);
	CK(strstr(e, dir) && strstr(e, "/data.mdb: commit not written"));
	CK(strstr(e, "nothing of it stored"));
	CK(strstr(e, "file size limit (ulimit -f)"));
}

/* Every kind of write that needs data.mdb to grow, past a file size limit
 * (a full disk): each fails with EFBIG, naming data.mdb, the limit and
 * that nothing was stored; nothing is (no message without its record, no
 * record without its message); the handle and the process go on (reads
 * work, a write that fits in the free pages too); shm_verify finds
 * nothing. Without the limit, in a new process, writes work again and
 * every write accepted before is there. The limit is not a multiple of
 * LMDB's page: the first write past it is cut short, which LMDB reports as
 * EIO (said "commit: Input/output error" before, no file, no cause), and
 * the next ones are refused whole (EFBIG: "commit: File too large"). */
static void test_writes_past_a_file_size_limit_fail_named_store_nothing(
	void **state)
{
	(void)state;
	char *dir = tu_tmpdir();
	shm_env *env = tu_open(dir, NULL);
	shm_uuid ws, kept[3];
	shm_msg m;

	assert_int_equal(shm_uuid_parse(WEB, &ws), 0);
	fill_big(0);
	for (int i = 0; i < 3; i++) {
		m = big_msg();
		assert_int_equal(shm_msg_put(env, &m), 0);
		kept[i] = m.id;
	}
	assert_int_equal(shm_static_put(env, &ws, "pages/one", "v1", 2, NULL),
	                 0);
	shm_env_close(env);
	off_t size = size_of(dir, "data.mdb");
	assert_true(size > 0);

	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		child_start();
		shm_info before;
		shm_msg many[3], *got;
		size_t bad = 99;
		int rc;

		limit_file_size((rlim_t)size + 5000);
		CK(shm_env_open(dir, NULL, &env) == 0);
		CK(shm_env_info(env, &before) == 0);
		fill_big(1);
		m = big_msg();
		ck_said_limit(shm_msg_put(env, &m), dir); /* cut short: EIO */
		ck_unchanged(env, &before);
		CK(shm_msg_get(env, &m.id, &got) == SHM_ENOTFOUND);
		for (int i = 0; i < 3; i++)
			many[i] = big_msg();
		rc = shm_msg_put_many(env, many, 3, &bad);
		ck_said_limit(rc, dir);
		ck_unchanged(env, &before);
		CK(shm_msg_edit(env, &kept[1], big, strlen(big)) == EFBIG);
		ck_said_limit(EFBIG, dir);
		ck_unchanged(env, &before);
		CK(shm_static_put(env, &ws, "pages/two", big, strlen(big),
		                  NULL) == EFBIG);
		ck_said_limit(EFBIG, dir);
		ck_unchanged(env, &before);
		/* reads go on, and the edit left the message as it was */
		CK(shm_msg_get(env, &kept[1], &got) == 0);
		CK(got->content_len == sizeof big - 1 && !got->edited);
		fill_big(0);
		CK(memcmp(got->content, big, got->content_len) == 0);
		shm_msg_free(got);
		CK(problems(env) == 0);
		/* a small write that fits in the pages freed is taken */
		m = tu_msg("room-full", 7, "small");
		CK(shm_msg_put(env, &m) == 0);
		CK(problems(env) == 0);
		shm_env_close(env);
		_exit(0);
	}
	child_ok(pid);

	/* room again: a new process without the limit */
	env = tu_open(dir, NULL);
	assert_int_equal(tu_verify(env), 0);
	shm_info in;
	assert_int_equal(shm_env_info(env, &in), 0);
	assert_int_equal(in.messages, 4); /* 3 + the small one */
	assert_int_equal(in.statics, 1);
	assert_int_equal(in.log_records, tu_log_count(env));
	fill_big(0);
	for (int i = 0; i < 3; i++) {
		shm_msg *got;
		assert_int_equal(shm_msg_get(env, &kept[i], &got), 0);
		assert_int_equal(got->content_len, sizeof big - 1);
		assert_memory_equal(got->content, big, got->content_len);
		shm_msg_free(got);
	}
	fill_big(2);
	m = big_msg();
	assert_int_equal(shm_msg_put(env, &m), 0);
	assert_int_equal(shm_msg_edit(env, &kept[0], "edited", 6), 0);
	assert_int_equal(shm_static_put(env, &ws, "pages/two", big,
	                                strlen(big), NULL), 0);
	assert_int_equal(tu_verify(env), 0);
	assert_true(size_of(dir, "data.mdb") > size + 5000);
	shm_env_close(env);
	tu_rmdir(dir);
	free(dir);
}

/* An open that must make or grow a file past a file size limit is
 * refused, naming the file and the limit, and kills nothing: lock.mdb
 * (a new environment), data.mdb (its two meta pages cut short, with
 * lock.mdb there already) and shm.stats (gone, made anew). A data.mdb cut
 * short is emptied, so that the next open, with room, makes the
 * environment: left cut short, LMDB took it for a file of another kind
 * and every open after was refused ("not an LMDB environment"). */
static void test_opens_past_a_file_size_limit_are_refused_named(void **state)
{
	(void)state;
	char *dir = tu_tmpdir(), env_dir[4200], path[4300];
	shm_env *env;

	snprintf(env_dir, sizeof env_dir, "%s/env", dir);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		child_start();
		limit_file_size(8000); /* lock.mdb is 16 KiB and more */
		CK(shm_env_open(env_dir, NULL, &env) == EFBIG && !env);
		fprintf(stderr, "  said: %s\n", shm_errmsg());
		CK(strstr(shm_errmsg(), "/env/lock.mdb: cannot be written: "
		          "this process's file size limit (ulimit -f) is "
		          "8000 bytes"));
		CK(size_of(env_dir, "data.mdb") == -1);
		_exit(0);
	}
	child_ok(pid);

	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) { /* lock.mdb whole now: data.mdb cut in its 2nd page */
		child_start();
		CK(shm_env_open(env_dir, NULL, &env) == 0);
		shm_env_close(env);
		snprintf(path, sizeof path, "%s/data.mdb", env_dir);
		CK(unlink(path) == 0);
		limit_file_size(4096 + 64);
		CK(shm_env_open(env_dir, NULL, &env) == EFBIG && !env);
		fprintf(stderr, "  said: %s\n", shm_errmsg());
		CK(strstr(shm_errmsg(), "/env/data.mdb: cannot be written: "
		          "this process's file size limit (ulimit -f) is "
		          "4160 bytes"));
		CK(size_of(env_dir, "data.mdb") == 0);
		/* again, on the empty one it left: emptied again */
		CK(shm_env_open(env_dir, NULL, &env) == EFBIG && !env);
		CK(size_of(env_dir, "data.mdb") == 0);
		_exit(0);
	}
	child_ok(pid);

	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) { /* an environment whose shm.stats is gone */
		child_start();
		CK(shm_env_open(env_dir, NULL, &env) == 0);
		shm_msg m = tu_msg("r", 1, "kept");
		CK(shm_msg_put(env, &m) == 0);
		shm_env_close(env);
		snprintf(path, sizeof path, "%s/shm.stats", env_dir);
		CK(unlink(path) == 0);
		limit_file_size((rlim_t)size_of(env_dir, "data.mdb") + 4096);
		CK(shm_env_open(env_dir, NULL, &env) == EFBIG && !env);
		fprintf(stderr, "  said: %s\n", shm_errmsg());
		CK(strstr(shm_errmsg(), "/env/shm.stats: cannot allocate its "));
		CK(strstr(shm_errmsg(), "file size limit (ulimit -f)"));
		CK(size_of(env_dir, "shm.stats") == 0); /* made anew next */
		_exit(0);
	}
	child_ok(pid);

	env = tu_open(env_dir, NULL); /* room again */
	shm_info in;
	assert_int_equal(shm_env_info(env, &in), 0);
	assert_int_equal(in.messages, 1);
	assert_int_equal(tu_verify(env), 0);
	shm_env_close(env);
	tu_rmdir(dir);
	free(dir);
}

/* A limit of 1 byte is said as one: "1 byte", not "1 bytes", at an open
 * that must make lock.mdb and at a commit that must grow data.mdb. */
static void test_a_limit_of_one_byte_is_said_in_the_singular(void **state)
{
	(void)state;
	char *dir = tu_tmpdir(), fresh[4200];
	shm_env *env = tu_open(dir, NULL), *none;

	shm_env_close(env);
	snprintf(fresh, sizeof fresh, "%s/fresh", dir);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		child_start();
		CK(shm_env_open(dir, NULL, &env) == 0);
		limit_file_size(1);
		CK(shm_env_open(fresh, NULL, &none) == EFBIG);
		fprintf(stderr, "  said: %s\n", shm_errmsg());
		CK(strstr(shm_errmsg(), "file size limit (ulimit -f) is 1 "
		          "byte ("));
		fill_big(1);
		shm_msg m = big_msg();
		ck_said_limit(shm_msg_put(env, &m), dir);
		CK(strstr(shm_errmsg(), "cannot grow past 1 byte, this "
		          "process's file size limit"));
		shm_env_close(env);
		_exit(0);
	}
	child_ok(pid);
	tu_rmdir(dir);
	free(dir);
}

/* In a child of its own mount namespace: a tmpfs of size bytes on dir.
 * false (and why in why) where that cannot be done (not root, no
 * namespaces). */
static bool small_tmpfs(const char *dir, size_t size, char *why, size_t len)
{
	char opts[64];

	snprintf(opts, sizeof opts, "size=%zu", size);
	if (unshare(CLONE_NEWNS) != 0) {
		snprintf(why, len, "unshare(CLONE_NEWNS): %s", strerror(errno));
		return false;
	}
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
	    mount("tmpfs", dir, "tmpfs", 0, opts) != 0) {
		snprintf(why, len, "mount tmpfs: %s", strerror(errno));
		return false;
	}
	return true;
}

/* A real full disk (a small tmpfs): puts fail, ENOSPC, naming data.mdb and
 * the full disk; reads go on; a new environment on it is refused, naming
 * lock.mdb, and leaves no file; with room again (a file removed) writes
 * work and every earlier one is there. Before, a read on the full disk
 * killed the application with SIGBUS (the atime table of shm.stats was
 * stored through the mapping into a hole no block could be found for),
 * and so did an open of a new environment (LMDB's header, in lock.mdb). */
static void test_a_full_tmpfs_fails_writes_kills_nothing(void **state)
{
	(void)state;
	char *dir = tu_tmpdir();
	int to_parent[2];

	assert_int_equal(pipe(to_parent), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		child_start();
		char why[256], env_dir[4200], other[4200], filler[4200];
		shm_uuid ids[400];
		size_t n = 0;
		shm_env *env;
		int rc = 0, fd;

		close(to_parent[0]);
		if (!small_tmpfs(dir, 3u << 19, why, sizeof why)) {
			if (write(to_parent[1], why, strlen(why)) < 0)
				_exit(2);
			_exit(0);
		}
		snprintf(env_dir, sizeof env_dir, "%s/env", dir);
		snprintf(other, sizeof other, "%s/other", dir);
		snprintf(filler, sizeof filler, "%s/filler", dir);
		/* room to give back later */
		CK((fd = open(filler, O_CREAT | O_WRONLY, 0600)) >= 0);
		CK(posix_fallocate(fd, 0, 512 * 1024) == 0);
		close(fd);
		CK(shm_env_open(env_dir, NULL, &env) == 0);
		fill_big(3);
		while (n < 400) {
			shm_msg m = big_msg();
			if ((rc = shm_msg_put(env, &m)))
				break;
			ids[n++] = m.id;
		}
		fprintf(stderr, "  %zu puts taken, then said: %s\n", n,
		        shm_errmsg());
		CK(n > 3 && n < 400);
		CK(rc == ENOSPC);
		CK(strstr(shm_errmsg(), "/env/data.mdb: commit not written, "
		          "nothing of it stored: the disk is full"));
		shm_info in;
		CK(shm_env_info(env, &in) == 0);
		CK(in.messages == n && in.log_records == n);
		/* reads on a full disk: every message, twice */
		for (int round = 0; round < 2; round++)
			for (size_t i = 0; i < n; i++) {
				shm_msg *got;
				CK(shm_msg_get(env, &ids[i], &got) == 0);
				CK(got->content_len == sizeof big - 1);
				shm_msg_free(got);
			}
		CK(problems(env) == 0);
		/* the files stored through a mapping have every block */
		CK(allocated(env_dir, "lock.mdb"));
		CK(allocated(env_dir, "shm.stats"));
		CK(allocated(env_dir, "shm.wlock"));
		/* a new environment on the full disk */
		shm_env *env2;
		CK(shm_env_open(other, NULL, &env2) == ENOSPC && !env2);
		fprintf(stderr, "  said: %s\n", shm_errmsg());
		CK(strstr(shm_errmsg(), "/other/lock.mdb: cannot allocate"));
		CK(strstr(shm_errmsg(), "the disk is full"));
		CK(size_of(other, "lock.mdb") == -1);
		/* room again */
		CK(unlink(filler) == 0);
		shm_msg m = big_msg();
		CK(shm_msg_put(env, &m) == 0);
		CK(shm_env_info(env, &in) == 0);
		CK(in.messages == n + 1 && in.log_records == n + 1);
		CK(problems(env) == 0);
		shm_env_close(env);
		CK(shm_env_open(env_dir, NULL, &env) == 0);
		for (size_t i = 0; i < n; i++) {
			shm_msg *got;
			CK(shm_msg_get(env, &ids[i], &got) == 0);
			shm_msg_free(got);
		}
		shm_env_close(env);
		CK(shm_env_open(other, NULL, &env2) == 0);
		shm_env_close(env2);
		_exit(0);
	}
	close(to_parent[1]);
	char why[256];
	ssize_t got = read(to_parent[0], why, sizeof why - 1);
	close(to_parent[0]);
	child_ok(pid);
	tu_rmdir(dir);
	free(dir);
	if (got > 0) {
		why[got] = 0;
		fprintf(stderr, "skipped: no small tmpfs can be mounted here "
		        "(%s): it takes root and mount namespaces; the file "
		        "size limit tests stand in\n", why);
		skip();
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(
			test_writes_past_a_file_size_limit_fail_named_store_nothing),
		cmocka_unit_test(
			test_opens_past_a_file_size_limit_are_refused_named),
		cmocka_unit_test(
			test_a_limit_of_one_byte_is_said_in_the_singular),
		cmocka_unit_test(test_a_full_tmpfs_fails_writes_kills_nothing),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
