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
/* Sleeps ms milliseconds (through EINTR). */
void tu_sleep_ms(unsigned ms);
/* Asserts that every field of a equals b's (content_hash included). */
void tu_assert_msg_equal(const shm_msg *a, const shm_msg *b);
/* The map size stored in the environment in dir, as LMDB reads it (an
 * environment opened without a size adopts it). No handle of this process
 * may be open on dir (LMDB: one environment once per process; asserted). */
size_t tu_stored_map_size(const char *dir);
/* A new environment (the caller frees the string after tu_rmdir) after
 * many commits of messages, some deleted: LMDB's free pages interspersed
 * with those in use, some at the end of its data file. */
char *tu_env_after_many_commits(void);
/* Cuts dir's data.mdb short at its highest root page (of LMDB's free list,
 * its main database or a named one: the one the cut takes), a cut that
 * leaves at least as many pages as are in use; returns the new size.
 * Asserts that LMDB's meta page reads as datafile.c draws it (each root found
 * is a page whose header names it) and that the cut is such one. No
 * handle of this process may be open on dir. */
off_t tu_cut_at_highest_root(const char *dir);
/* The number of lines of file path that have s (0 if it cannot be read). */
unsigned tu_lines_with(const char *path, const char *s);
/* Runs shm_verify; returns the number of problems (prints them). */
size_t tu_verify(shm_env *env);

/* base (a Redis URL: redis:// or unix://) with user and password in it, in
 * out; asserts that base parses. */
void tu_redis_url_with_auth(const char *base, const char *user,
                            const char *password, char *out, size_t outlen);

/* A redis-server of the test's own, its files in dir: unix socket
 * dir/redis.sock (no TCP), no persistence, plus the config args given
 * (NULL-terminated, e.g. {"--requirepass", "pw", NULL}). Returns its pid
 * once it answers (a child: tu_children_stop ends it), its URL in url
 * (unix://dir/redis.sock). tu_redis_stop kills and reaps it. */
pid_t tu_redis_start(const char *dir, const char *const *args, char *url,
                     size_t urllen);
void tu_redis_stop(pid_t pid);
/* A loopback TCP port nobody listens on now (for a --port of a test
 * server). */
int tu_free_port(void);
/* Runs a function of tests/harness/servers.sh (shm_redis_stop, ...) on this
 * run's servers, which servers.sh described in the variables it exported
 * ($SHM_TOP: the tree); its exit status, as system() gives it. */
int tu_harness(const char *fn);

/* PostgreSQL rows for the read-path tests (tests/test_readthrough.c,
 * tests/test_room.c): a timestamp as SQL text, "YYYY-MM-DD HH:MM:SS.ffffff
 * +00" (out: 64 bytes; our own formatting, not libshm's); m written as a
 * row from its serde JSON the way the flusher does (every column on
 * conflict); and the ids of PostgreSQL's own room page, newest first
 * (before 0: no bound; before_id NULL: none), the query the read path must
 * agree with, its bound written as two comparisons (libshm's is a row
 * comparison). */
struct pg_conn;
void tu_pg_ts(int64_t us, char *out);
void tu_pg_put(struct pg_conn *c, const shm_msg *m);
size_t tu_pg_page(struct pg_conn *c, const char *room, int64_t before,
                  uint32_t limit, shm_uuid *ids);
size_t tu_pg_page_before(struct pg_conn *c, const char *room, int64_t before,
                         const shm_uuid *before_id, uint32_t limit,
                         shm_uuid *ids);

/* Children a test started: recorded so that a teardown can stop those a
 * failed assertion left running (stop, or SIGKILL + reap when NULL). */
void tu_child_add(pid_t pid);
void tu_child_del(pid_t pid);
void tu_children_stop(void (*stop)(pid_t pid));

#endif
