/* tests/test_multiproc.c - several processes on one environment: 4 forked
 * writers x 10,000 messages read back by a fifth; writers killed with
 * SIGKILL mid-write while others write; a process that grows the map while
 * another one, and its threads, go on with the smaller map they opened; a
 * child refused the handle it inherited. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <lmdb.h>

#include "shm_log.h"
#include "testutil.h"

#define WRITERS 4
#define PER_WRITER 10000

/* Deterministic id of message i of writer w (a valid v7-shaped UUID). */
static shm_uuid id_of(int w, int i)
{
	shm_uuid u;
	memset(&u, 0, sizeof u);
	u.b[0] = 0x01;
	u.b[1] = (uint8_t)w;
	memcpy(u.b + 2, &i, 4);
	u.b[6] = 0x70;
	u.b[8] = 0x80;
	u.b[15] = 0x5a;
	return u;
}

static shm_options big_options(void)
{
	shm_options o;
	shm_options_init(&o);
	o.l1_max_entries = 1000000;
	return o;
}

/* Writes messages [from, to) of writer w; publishes progress in *done after
 * each commit. Returns the exit status for the child. */
static int write_range(const char *dir, int w, int from, int to,
                       volatile int *done)
{
	shm_options o = big_options();
	shm_env *env;
	char room[16], text[64];

	if (shm_env_open(dir, &o, &env))
		return 10;
	snprintf(room, sizeof room, "room-%d", w % 3);
	for (int i = from; i < to; i++) {
		shm_msg m = tu_msg(room, w, text);
		snprintf(text, sizeof text, "writer %d message %d", w, i);
		m.content = text;
		m.content_len = (uint32_t)strlen(text);
		m.id = id_of(w, i);
		if (shm_msg_put(env, &m)) {
			fprintf(stderr, "writer %d: %s\n", w, shm_errmsg());
			return 11;
		}
		if (done)
			*done = i + 1;
	}
	shm_env_close(env);
	return 0;
}

static void wait_ok(pid_t pid)
{
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static int read_all_back(const char *dir, const int *counts, int writers)
{
	shm_options o = big_options();
	shm_env *env;
	shm_rtxn *t;
	char want[64];

	o.read_only = true;
	if (shm_env_open(dir, &o, &env) || shm_rtxn_begin(env, &t))
		return 20;
	for (int w = 0; w < writers; w++) {
		for (int i = 0; i < counts[w]; i++) {
			shm_uuid id = id_of(w, i);
			const shm_msg *m;
			if (shm_msg_view(t, &id, &m)) {
				fprintf(stderr, "missing writer %d message %d\n", w, i);
				return 21;
			}
			snprintf(want, sizeof want, "writer %d message %d", w, i);
			if (strcmp(m->content, want) != 0)
				return 22;
		}
	}
	shm_rtxn_end(t);
	shm_env_close(env);
	return 0;
}

static void test_four_writers_then_a_reader_see_all_40000(void **state)
{
	char *dir = tu_tmpdir();
	pid_t pids[WRITERS], reader;
	int counts[WRITERS];
	shm_options o = big_options();
	shm_env *env = tu_open(dir, &o); /* creates the environment */
	shm_log_iter *it;
	shm_log_rec r;
	uint64_t n = 0, prev = 0;

	shm_env_close(env);
	for (int w = 0; w < WRITERS; w++) {
		counts[w] = PER_WRITER;
		if ((pids[w] = fork()) == 0)
			_exit(write_range(dir, w, 0, PER_WRITER, NULL));
	}
	for (int w = 0; w < WRITERS; w++)
		wait_ok(pids[w]);
	if ((reader = fork()) == 0)
		_exit(read_all_back(dir, counts, WRITERS));
	wait_ok(reader);

	env = tu_open(dir, &o);
	assert_int_equal(shm_log_iter_open(env, 0, &it), 0);
	while (shm_log_iter_next(it, &r) == 0) {
		assert_int_equal(r.seq, prev + 1); /* dense, in order */
		prev = r.seq;
		n++;
	}
	shm_log_iter_close(it);
	assert_int_equal(n, WRITERS * PER_WRITER);
	shm_info in;
	assert_int_equal(shm_env_info(env, &in), 0);
	assert_int_equal(in.messages, WRITERS * PER_WRITER);
	assert_int_equal(in.rooms, 3);
	assert_int_equal(tu_verify(env), 0);
	shm_env_close(env);
	tu_rmdir(dir);
	free(dir);
}

/* Victims write until killed; steady writers write a fixed range. Every
 * message a victim saw committed must be there, the store must verify. */
static void test_writers_killed_mid_write_leave_a_consistent_store(void **state)
{
	enum { VICTIMS = 2, STEADY = 2, ROUNDS = 12, STEADY_N = 3000 };
	char *dir = tu_tmpdir();
	shm_options o = big_options();
	shm_env *env = tu_open(dir, &o);
	int *done = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
	                 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	pid_t steady[STEADY];
	int counts[VICTIMS + STEADY];

	shm_env_close(env);
	assert_true(done != MAP_FAILED);
	srand((unsigned)time(NULL));
	for (int s = 0; s < STEADY; s++)
		if ((steady[s] = fork()) == 0)
			_exit(write_range(dir, VICTIMS + s, 0, STEADY_N, NULL));
	for (int round = 0; round < ROUNDS; round++) {
		pid_t v[VICTIMS];
		for (int k = 0; k < VICTIMS; k++) {
			int from = done[k];
			if ((v[k] = fork()) == 0)
				_exit(write_range(dir, k, from, 1 << 30, &done[k]));
		}
		struct timespec ts = {0, (rand() % 20 + 1) * 1000000L};
		nanosleep(&ts, NULL);
		for (int k = 0; k < VICTIMS; k++) {
			kill(v[k], SIGKILL);
			waitpid(v[k], NULL, 0);
		}
	}
	for (int s = 0; s < STEADY; s++)
		wait_ok(steady[s]);
	for (int k = 0; k < VICTIMS; k++)
		counts[k] = done[k];
	for (int s = 0; s < STEADY; s++)
		counts[VICTIMS + s] = STEADY_N;
	assert_true(counts[0] > 0 && counts[1] > 0);

	pid_t reader = fork();
	if (reader == 0)
		_exit(read_all_back(dir, counts, VICTIMS + STEADY));
	wait_ok(reader);
	env = tu_open(dir, &o);
	shm_info in;
	assert_int_equal(shm_env_info(env, &in), 0);
	/* a victim may have committed one more than it could publish */
	assert_true(in.messages >= (uint64_t)(counts[0] + counts[1] + 2 * STEADY_N));
	assert_true(in.messages <= (uint64_t)(counts[0] + counts[1] + 2 * STEADY_N +
	                                      VICTIMS));
	/* A victim killed between its commit and publishing it re-puts that
	 * message next round: one more record for the same id, never a loss. */
	assert_true(in.log_records >= in.messages);
	assert_true(in.log_records <= in.messages + VICTIMS * ROUNDS);
	assert_int_equal(in.next_seq, in.log_records + 1); /* no seq lost */
	assert_int_equal(tu_verify(env), 0);
	/* and the environment still takes writes */
	shm_msg m = tu_msg("after", 1, "still writable");
	assert_int_equal(shm_msg_put(env, &m), 0);
	shm_env_close(env);
	munmap(done, 4096);
	tu_rmdir(dir);
	free(dir);
}

#define MIB ((size_t)1 << 20)
#define BIG_CONTENT 60000 /* bytes of a message that lz4 leaves as big */

/* Messages [from, to) of writer w, BIG_CONTENT random letters each, put by
 * a process that opens dir with map_size (larger than the environment's:
 * it grows the map). Returns the exit status for the child. */
static int grow_map(const char *dir, size_t map_size, int w, int from, int to)
{
	shm_options o = big_options();
	static char text[BIG_CONTENT + 1];
	unsigned seed = (unsigned)(w * 7919 + from);
	shm_env *env;

	o.map_size = map_size;
	if (shm_env_open(dir, &o, &env))
		return 10;
	for (int i = from; i < to; i++) {
		for (int k = 0; k < BIG_CONTENT; k++)
			text[k] = (char)('a' + rand_r(&seed) % 26);
		shm_msg m = tu_msg("grown", w, text);
		m.id = id_of(w, i);
		if (shm_msg_put(env, &m)) {
			fprintf(stderr, "grower: %s\n", shm_errmsg());
			return 11;
		}
	}
	shm_env_close(env);
	return 0;
}

/* A child that grows the map when told to (grower_run). It is forked
 * before the test starts any thread: a child forked while other threads
 * allocate can inherit an allocator lock held for ever (ASan's is not reset
 * at fork as glibc's is). */
typedef struct grower {
	pid_t pid;
	int go; /* pipe to the child */
} grower;

static grower grower_start(const char *dir, size_t map_size, int from, int to)
{
	int fds[2];
	grower g;
	char c;

	assert_int_equal(pipe(fds), 0);
	g.pid = fork();
	assert_true(g.pid >= 0);
	if (g.pid == 0) {
		close(fds[1]);
		if (read(fds[0], &c, 1) != 1)
			_exit(3);
		_exit(grow_map(dir, map_size, 9, from, to));
	}
	close(fds[0]);
	g.go = fds[1];
	return g;
}

static void grower_run(grower *g)
{
	assert_int_equal(write(g->go, "g", 1), 1);
	close(g->go);
	wait_ok(g->pid);
}

static void grow_in_child(const char *dir, size_t map_size, int from, int to)
{
	grower g = grower_start(dir, map_size, from, to);

	grower_run(&g);
}

/* Reads message i of the grower (writer 9): 0, or the error of the get. */
static int get_grown(shm_env *env, int i)
{
	shm_uuid id = id_of(9, i);
	shm_msg *m;
	int rc = shm_msg_get(env, &id, &m);

	if (rc) {
		fprintf(stderr, "get: %s\n", shm_errmsg());
		return rc;
	}
	assert_int_equal(m->content_len, BIG_CONTENT);
	shm_msg_free(m);
	return 0;
}

/* A process that opened the environment with a 4 MiB map goes on when
 * another one grows it (16 MiB, data past 4 MiB): its next read adopts the
 * new size and sees the other's data, and so does its next write when the
 * map grows again (32 MiB, data past 16 MiB). */
static void test_a_map_grown_by_another_process_is_adopted(void **state)
{
	char *dir = tu_tmpdir();
	shm_options o = big_options();
	shm_info in;

	o.map_size = 4 * MIB;
	shm_env *env = tu_open(dir, &o);
	shm_msg m = tu_msg("small", 1, "before the map grew");
	assert_int_equal(shm_msg_put(env, &m), 0);
	assert_int_equal(shm_env_options(env)->map_size, 4 * MIB);

	grow_in_child(dir, 16 * MIB, 0, 60);
	assert_int_equal(get_grown(env, 59), 0); /* a read first */
	assert_int_equal(shm_env_options(env)->map_size, 16 * MIB);
	assert_int_equal(shm_env_info(env, &in), 0);
	assert_int_equal(in.map_size, 16 * MIB);
	assert_true(in.map_used > 4 * MIB);
	m = tu_msg("small", 1, "after the map grew");
	assert_int_equal(shm_msg_put(env, &m), 0);

	grow_in_child(dir, 32 * MIB, 60, 170);
	m = tu_msg("small", 1, "a write first");
	assert_int_equal(shm_msg_put(env, &m), 0);
	assert_int_equal(shm_env_options(env)->map_size, 32 * MIB);
	assert_int_equal(get_grown(env, 169), 0);
	assert_int_equal(get_grown(env, 0), 0);
	assert_int_equal(shm_env_info(env, &in), 0);
	assert_true(in.map_used > 16 * MIB);
	assert_int_equal(in.messages, 173);
	assert_int_equal(tu_verify(env), 0);
	shm_env_close(env);
	assert_int_equal(tu_stored_map_size(dir), 32 * MIB);
	tu_rmdir(dir);
	free(dir);
}

/* A process with a 4 MiB map, in an environment another process opened
 * with 16 MiB and wrote one message to (the size stored, no page past 4
 * MiB): its writes go on past 4 MiB in a map of the stored size, where
 * LMDB alone would have it fail with SHM_EFULL (wtxn.c invariant 4). */
static void test_a_full_map_adopts_the_size_another_process_stored(void **state)
{
	char *dir = tu_tmpdir();
	shm_options o = big_options();
	shm_info in;
	int i, rc = 0;

	o.map_size = 4 * MIB;
	shm_env *env = tu_open(dir, &o);
	shm_msg m = tu_msg("small", 1, "before");
	assert_int_equal(shm_msg_put(env, &m), 0);
	grow_in_child(dir, 16 * MIB, 0, 1);
	assert_int_equal(shm_env_options(env)->map_size, 4 * MIB);

	/* 120 messages of 60,000 random letters: ~7 MiB of unflushed work */
	static char text[BIG_CONTENT + 1];
	unsigned seed = 1;
	for (i = 0; i < 120 && rc == 0; i++) {
		for (int k = 0; k < BIG_CONTENT; k++)
			text[k] = (char)('a' + rand_r(&seed) % 26);
		m = tu_msg("big", 2, text);
		m.id = id_of(2, i);
		if ((rc = shm_msg_put(env, &m)))
			fprintf(stderr, "put %d: %s\n", i, shm_errmsg());
	}
	assert_int_equal(rc, 0);
	assert_int_equal(shm_env_options(env)->map_size, 16 * MIB);
	assert_int_equal(shm_env_info(env, &in), 0);
	assert_true(in.map_used > 4 * MIB);
	assert_int_equal(in.messages, 122);
	assert_int_equal(get_grown(env, 0), 0);
	assert_int_equal(tu_verify(env), 0);
	shm_env_close(env);
	assert_int_equal(tu_stored_map_size(dir), 16 * MIB);
	tu_rmdir(dir);
	free(dir);
}

struct reader_arg {
	shm_env *env;
	int stop; /* atomic */
	unsigned long reads, errors;
};

/* Reads the first message in a loop, by copy and through a view, until
 * told to stop. */
static void *reader_run(void *p)
{
	struct reader_arg *a = p;
	shm_uuid id = id_of(1, 0);

	while (!__atomic_load_n(&a->stop, __ATOMIC_RELAXED)) {
		shm_msg *m;
		shm_rtxn *t;
		const shm_msg *v;
		if (shm_msg_get(a->env, &id, &m) == 0)
			shm_msg_free(m);
		else
			a->errors++;
		if (shm_rtxn_begin(a->env, &t) == 0) {
			if (shm_msg_view(t, &id, &v) != 0 || v->content_len == 0)
				a->errors++;
			shm_rtxn_end(t);
		} else {
			a->errors++;
		}
		a->reads++;
	}
	return NULL;
}

/* Threads that read all the time in a process whose map another process
 * grows: none of their reads fails, and the map is adopted. */
static void test_threads_reading_while_the_map_grows_see_no_error(void **state)
{
	enum { THREADS = 3 };
	char *dir = tu_tmpdir();
	shm_options o = big_options();
	struct reader_arg a[THREADS];
	pthread_t th[THREADS];

	o.map_size = 4 * MIB;
	shm_env *env = tu_open(dir, &o);
	shm_msg m = tu_msg("small", 1, "read all the time");
	m.id = id_of(1, 0);
	assert_int_equal(shm_msg_put(env, &m), 0);
	grower g = grower_start(dir, 16 * MIB, 0, 60);
	for (int i = 0; i < THREADS; i++) {
		a[i] = (struct reader_arg){.env = env};
		assert_int_equal(pthread_create(&th[i], NULL, reader_run, &a[i]),
		                 0);
	}
	grower_run(&g);
	for (int i = 0; i < 20; i++) { /* 200 ms of reads after it */
		struct timespec ts = {0, 10 * 1000000L};
		nanosleep(&ts, NULL);
	}
	for (int i = 0; i < THREADS; i++)
		__atomic_store_n(&a[i].stop, 1, __ATOMIC_RELAXED);
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_join(th[i], NULL), 0);
	for (int i = 0; i < THREADS; i++) {
		fprintf(stderr, "reader %d: %lu reads, %lu errors\n", i,
		        a[i].reads, a[i].errors);
		assert_true(a[i].reads > 0);
		assert_int_equal(a[i].errors, 0);
	}
	assert_int_equal(shm_env_options(env)->map_size, 16 * MIB);
	assert_int_equal(get_grown(env, 59), 0);
	shm_env_close(env);
	tu_rmdir(dir);
	free(dir);
}

/* While a read transaction of this process stays open the new map cannot
 * be adopted (LMDB remaps it: the transaction's pages would go): a read
 * fails with MDB_MAP_RESIZED and says what to do; once the transaction
 * ended, the next read adopts it. */
static void test_a_held_read_transaction_defers_the_adoption(void **state)
{
	char *dir = tu_tmpdir();
	shm_options o = big_options();
	shm_rtxn *t;
	const shm_msg *v;

	o.map_size = 4 * MIB;
	shm_env *env = tu_open(dir, &o);
	shm_msg m = tu_msg("small", 1, "held");
	m.id = id_of(1, 0);
	assert_int_equal(shm_msg_put(env, &m), 0);
	assert_int_equal(shm_rtxn_begin(env, &t), 0);
	grow_in_child(dir, 16 * MIB, 0, 60);
	assert_int_equal(get_grown(env, 59), MDB_MAP_RESIZED);
	assert_non_null(strstr(shm_errmsg(), "read transaction"));
	assert_non_null(strstr(shm_errmsg(), "MDB_MAP_RESIZED"));
	assert_int_equal(shm_msg_view(t, &m.id, &v), 0); /* still good */
	assert_int_equal(v->content_len, 4);
	shm_rtxn_end(t);
	assert_int_equal(get_grown(env, 59), 0);
	assert_int_equal(shm_env_options(env)->map_size, 16 * MIB);
	shm_env_close(env);
	tu_rmdir(dir);
	free(dir);
}

struct holder_arg {
	shm_env *env;
	int begun[2], end[2]; /* pipes: "begun" to the test, "end" from it */
};

/* Holds a read transaction from its start until told to end it. */
static void *holder_run(void *p)
{
	struct holder_arg *a = p;
	shm_rtxn *t;
	char c = shm_rtxn_begin(a->env, &t) == 0 ? 'y' : 'n';

	if (write(a->begun[1], &c, 1) != 1 || read(a->end[0], &c, 1) != 1)
		abort();
	shm_rtxn_end(t);
	return NULL;
}

/* A read transaction another thread keeps open defers the adoption too:
 * the read that needs it waits a while, then fails with MDB_MAP_RESIZED
 * and says why; once that thread ended it, the next read adopts it. */
static void test_a_transaction_another_thread_holds_defers_it(void **state)
{
	char *dir = tu_tmpdir();
	shm_options o = big_options();
	struct holder_arg a;
	pthread_t th;
	char c = 0;

	o.map_size = 4 * MIB;
	shm_env *env = tu_open(dir, &o);
	shm_msg m = tu_msg("small", 1, "held elsewhere");
	assert_int_equal(shm_msg_put(env, &m), 0);
	a.env = env;
	assert_int_equal(pipe(a.begun), 0);
	assert_int_equal(pipe(a.end), 0);
	grower g = grower_start(dir, 16 * MIB, 0, 60);
	assert_int_equal(pthread_create(&th, NULL, holder_run, &a), 0);
	assert_int_equal(read(a.begun[0], &c, 1), 1);
	assert_int_equal(c, 'y');
	grower_run(&g);
	assert_int_equal(get_grown(env, 59), MDB_MAP_RESIZED);
	assert_non_null(strstr(shm_errmsg(), "stayed in one"));
	assert_int_equal(shm_env_options(env)->map_size, 4 * MIB);
	assert_int_equal(write(a.end[1], "x", 1), 1);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(get_grown(env, 59), 0);
	assert_int_equal(shm_env_options(env)->map_size, 16 * MIB);
	for (int i = 0; i < 2; i++) {
		close(a.begun[i]);
		close(a.end[i]);
	}
	shm_env_close(env);
	tu_rmdir(dir);
	free(dir);
}

/* The fork rule: a child must not use the handle it inherited. It used to
 * be able to, silently (a put or a read transaction returned 0, on LMDB's
 * handle of its parent); now every call that reads or writes through it
 * is SHM_EINVAL saying so, while the child's own handle and the parent's
 * work, and the parent sees nothing the child tried. */
static int child_on_inherited(shm_env *inherited, const char *dir)
{
	shm_msg m = tu_msg("forked", 1, "from the child");
	shm_msg **page;
	shm_rtxn *t;
	shm_env *own;
	size_t n;
	int rc;

	if (shm_msg_put(inherited, &m) != SHM_EINVAL ||
	    !strstr(shm_errmsg(), "must not be used across fork()"))
		return 10;
	if (shm_rtxn_begin(inherited, &t) != SHM_EINVAL)
		return 11;
	if (shm_room_page(inherited, "forked", 0, 10, &page, &n) != SHM_EINVAL)
		return 12;
	if (shm_env_open(dir, NULL, &own))
		return 13;
	rc = shm_msg_put(own, &m) ? 14 : 0;
	shm_env_close(own);
	shm_env_close(inherited);
	return rc;
}

static void test_a_child_cannot_use_the_handle_it_inherited(void **state)
{
	char *dir = tu_tmpdir();
	shm_env *env = tu_open(dir, NULL);
	shm_msg **page;
	size_t n;
	pid_t pid;

	if ((pid = fork()) == 0)
		_exit(child_on_inherited(env, dir));
	wait_ok(pid);
	/* the parent's handle works, and holds the child's own put only */
	shm_msg m = tu_msg("forked", 2, "from the parent");
	assert_int_equal(shm_msg_put(env, &m), 0);
	assert_int_equal(shm_room_page(env, "forked", 0, 10, &page, &n), 0);
	assert_int_equal(n, 2);
	shm_msgs_free(page, n);
	assert_int_equal(tu_verify(env), 0);
	shm_env_close(env);
	tu_rmdir(dir);
	free(dir);
}

/* Every call of shm.h and shm_log.h that reaches LMDB through a handle,
 * in or out of a transaction, refuses a child the handle it inherited the
 * same way (LMDB: an MDB_env used in a child of fork() is undefined).
 * shm_env_sync, shm_env_reader_check and shm_log_wait used to run (the
 * last one reading as a wait that timed out); the shared stats file is
 * left to the child, without publishing its parent's pending reads. */
#define REFUSED(call)                                                      \
	do {                                                               \
		if ((call) != SHM_EINVAL ||                                \
		    !strstr(shm_errmsg(), "must not be used across fork()")) { \
			fprintf(stderr, "child: %s: %s\n", #call,          \
			        shm_errmsg());                             \
			failed++;                                          \
		}                                                          \
	} while (0)

static void each_meta(const char *name, uint64_t value, void *user)
{
	(void)name; (void)value; (void)user;
}

static int each_dead(const shm_dead *d, void *user)
{
	(void)d; (void)user;
	return 0;
}

static int child_calls_refused(shm_env *e)
{
	shm_uuid id, web;
	shm_msg m = tu_msg("forked", 1, "from the child"), *got, **page;
	shm_static *s;
	shm_objlist *list;
	shm_log_iter *it;
	shm_info info;
	shm_policy pol;
	shm_log_rec rec = {.seq = 1};
	shm_counters c;
	const char *deps[] = {"Person/1"}, *names[] = {"test.x"};
	uint64_t u64 = 0, one = 1, seqs[] = {1};
	size_t n, bad;
	bool direct;
	int cleared, failed = 0;
	shm_inval_key key = {SHM_INVAL_MSG, id.b, 16, NULL, 0};

	shm_uuid_v7(&id);
	shm_uuid_v7(&web);
	REFUSED(shm_env_sync(e));
	REFUSED(shm_env_reader_check(e, &cleared));
	REFUSED(shm_env_info(e, &info));
	REFUSED(shm_msg_put(e, &m));
	REFUSED(shm_msg_put_many(e, &m, 1, &bad));
	REFUSED(shm_msg_put_newer(e, &m, NULL));
	REFUSED(shm_msg_get(e, &id, &got));
	REFUSED(shm_msg_edit(e, &id, "x", 1));
	REFUSED(shm_msg_delete(e, &id));
	REFUSED(shm_msg_react(e, &id, 1, "+1", true));
	REFUSED(shm_room_page(e, "forked", 0, 10, &page, &n));
	REFUSED(shm_static_get(e, &web, "Page/1", NULL, NULL, &s));
	REFUSED(shm_static_put(e, &web, "Page/1", "x", 1, NULL));
	REFUSED(shm_static_peek(e, &web, "Page/1", &s));
	REFUSED(shm_deps_set(e, &web, "Page/1", true, deps, 1));
	REFUSED(shm_deps_get(e, &web, "Page/1", &list));
	REFUSED(shm_deps_recursive(e, &web, "Page/1", &list));
	REFUSED(shm_deps_referrers(e, &web, "Page/1", &list));
	REFUSED(shm_object_is_direct(e, &web, "Page/1", &direct));
	REFUSED(shm_object_save(e, &web, "Page/1"));
	REFUSED(shm_object_destroy(e, &web, "Page/1"));
	REFUSED(shm_static_bust(e, &web, "Page/1"));
	REFUSED(shm_log_iter_open(e, 1, &it));
	REFUSED(shm_log_trim(e, 1));
	REFUSED(shm_meta_get(e, "test.x", &u64));
	REFUSED(shm_meta_set(e, "test.x", 1));
	REFUSED(shm_meta_set_many(e, names, &one, 1));
	REFUSED(shm_meta_each(e, "test.", each_meta, NULL));
	REFUSED(shm_policy_get(e, &pol));
	REFUSED(shm_dead_add(e, &rec, "pg", "refused"));
	REFUSED(shm_dead_each(e, each_dead, NULL));
	REFUSED(shm_dead_walk(e, each_dead, NULL, NULL));
	REFUSED(shm_dead_drop(e, seqs, 1));
	REFUSED(shm_log_wait(e, 1000000, 10));
	REFUSED(shm_l1_expire(e, &u64));
	REFUSED(shm_verify(e, NULL, NULL, &n));
	REFUSED(shm_l1_invalidate(e, SHM_INVAL_MSG, id.b, 16, &u64));
	REFUSED(shm_l1_invalidate_many(e, &key, 1, &u64, &u64));
	REFUSED(shm_l1_invalidate_flushed(e, &u64));
	/* the shared stats file is no LMDB: read, as the parent's are */
	shm_stats_local(e, &c);
	if (shm_stats_shared(e, &c) || shm_log_wake(e) || !shm_env_path(e) ||
	    !shm_env_options(e))
		failed++;
	shm_env_close(e);
	return failed;
}

static void test_a_child_is_refused_every_call_that_reaches_lmdb(void **state)
{
	char *dir = tu_tmpdir();
	shm_env *env = tu_open(dir, NULL);
	shm_msg m = tu_msg("forked", 2, "from the parent"), *got;
	shm_counters c;
	int cleared;
	size_t n;
	pid_t pid;

	assert_int_equal(shm_msg_put(env, &m), 0);
	/* three hits, not yet published to the shared file (stats.c) */
	for (int i = 0; i < 3; i++) {
		assert_int_equal(shm_msg_get(env, &m.id, &got), 0);
		shm_msg_free(got);
	}
	if ((pid = fork()) == 0)
		_exit(child_calls_refused(env));
	wait_ok(pid);
	/* the parent's handle works: the same calls, its own */
	assert_int_equal(shm_env_sync(env), 0);
	assert_int_equal(shm_env_reader_check(env, &cleared), 0);
	assert_int_equal(shm_log_wait(env, 1, 10), 0);
	assert_int_equal(shm_verify(env, NULL, NULL, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(tu_log_count(env), 1);
	/* the child's shm_stats_shared published none of the parent's hits */
	assert_int_equal(shm_stats_shared(env, &c), 0);
	assert_int_equal(c.l1_hits, 3);
	shm_env_close(env);
	tu_rmdir(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_four_writers_then_a_reader_see_all_40000),
		cmocka_unit_test(test_writers_killed_mid_write_leave_a_consistent_store),
		cmocka_unit_test(test_a_map_grown_by_another_process_is_adopted),
		cmocka_unit_test(test_a_full_map_adopts_the_size_another_process_stored),
		cmocka_unit_test(test_threads_reading_while_the_map_grows_see_no_error),
		cmocka_unit_test(test_a_held_read_transaction_defers_the_adoption),
		cmocka_unit_test(test_a_transaction_another_thread_holds_defers_it),
		cmocka_unit_test(test_a_child_cannot_use_the_handle_it_inherited),
		cmocka_unit_test(test_a_child_is_refused_every_call_that_reaches_lmdb),
	};
	return cmocka_run_group_tests_name("multiproc", tests, NULL, NULL);
}
