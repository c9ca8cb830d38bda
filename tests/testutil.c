/* tests/testutil.c - helpers shared by the cmocka tests. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shm_log.h"
#include "testutil.h"

char *tu_tmpdir(void)
{
	const char *base = getenv("TMPDIR");
	char *p;
	if (asprintf(&p, "%s/shmtest.XXXXXX", base && *base ? base : "/tmp") < 0)
		abort();
	if (!mkdtemp(p))
		abort();
	return p;
}

void tu_rmdir(const char *dir)
{
	char cmd[4200];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "warning: could not remove %s\n", dir);
}

shm_env *tu_open(const char *dir, const shm_options *opt)
{
	shm_env *env = NULL;
	int rc = shm_env_open(dir, opt, &env);
	if (rc)
		fprintf(stderr, "shm_env_open(%s): %s\n", dir, shm_errmsg());
	assert_int_equal(rc, 0);
	assert_non_null(env);
	return env;
}

shm_msg tu_msg(const char *room, int32_t user, const char *content)
{
	shm_msg m;
	memset(&m, 0, sizeof m);
	m.room_id = room;
	m.user_id = user;
	m.username = "alice";
	m.content = content;
	m.content_len = (uint32_t)strlen(content);
	m.type = SHM_MSG_TEXT;
	return m;
}

uint64_t tu_log_count(shm_env *env)
{
	shm_log_iter *it;
	shm_log_rec rec;
	uint64_t n = 0;
	int rc;

	assert_int_equal(shm_log_iter_open(env, 0, &it), 0);
	while ((rc = shm_log_iter_next(it, &rec)) == 0)
		n++;
	assert_int_equal(rc, SHM_ENOTFOUND);
	shm_log_iter_close(it);
	return n;
}

static void print_problem(const char *problem, void *user)
{
	(void)user;
	fprintf(stderr, "verify: %s\n", problem);
}

size_t tu_verify(shm_env *env)
{
	size_t problems = 0;
	assert_int_equal(shm_verify(env, print_problem, NULL, &problems), 0);
	return problems;
}
