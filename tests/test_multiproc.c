/* tests/test_multiproc.c - several processes on one environment: 4 forked
 * writers x 10,000 messages read back by a fifth; writers killed with
 * SIGKILL mid-write while others write. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_four_writers_then_a_reader_see_all_40000),
		cmocka_unit_test(test_writers_killed_mid_write_leave_a_consistent_store),
	};
	return cmocka_run_group_tests_name("multiproc", tests, NULL, NULL);
}
