/* tests/testutil.h - helpers shared by the cmocka tests: temp environments
 * and message builders. */
#ifndef SHM_TESTUTIL_H
#define SHM_TESTUTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <sys/types.h>
#include <cmocka.h>

#include "shm.h"

/* A fresh directory under $TMPDIR (or /tmp); the caller frees the string
 * after tu_rmdir. */
char *tu_tmpdir(void);
/* rm -rf dir */
void tu_rmdir(const char *dir);
/* Opens dir with defaults adjusted by opt (NULL: defaults); asserts. */
shm_env *tu_open(const char *dir, const shm_options *opt);
/* A Text message in room from user with content (copied into static
 * per-call storage is not needed: pointers must outlive the put). */
shm_msg tu_msg(const char *room, int32_t user, const char *content);
/* Number of records in the log (iterating from 0). */
uint64_t tu_log_count(shm_env *env);
/* Asserts that every field of a equals b's (content_hash included). */
void tu_assert_msg_equal(const shm_msg *a, const shm_msg *b);
/* Runs shm_verify; returns the number of problems (prints them). */
size_t tu_verify(shm_env *env);

/* base (a Redis URL: redis:// or unix://) with user and password in it, in
 * out; asserts that base parses. */
void tu_redis_url_with_auth(const char *base, const char *user,
                            const char *password, char *out, size_t outlen);

/* Children a test started: recorded so that a teardown can stop those a
 * failed assertion left running (stop, or SIGKILL + reap when NULL). */
void tu_child_add(pid_t pid);
void tu_child_del(pid_t pid);
void tu_children_stop(void (*stop)(pid_t pid));

#endif
