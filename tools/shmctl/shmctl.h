/*
 * tools/shmctl/shmctl.h - what shmctl's files share: the exit codes, the
 * environment's directory, the argument scanner and the helpers of
 * common.c, and the commands main.c dispatches to, one file per group.
 */
#ifndef SHM_TOOLS_SHMCTL_H
#define SHM_TOOLS_SHMCTL_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "shm.h"

enum {
	EX_OK = 0,
	EX_NOTFOUND = 1, /* not found, or problems found (verify) */
	EX_USAGE_ = 2,
	EX_DATA = 65,    /* bad input data */
	EX_INTERNAL = 70
};

extern const char *prog;    /* "shmctl": errors start with it */
extern const char *env_dir; /* -e DIR, else $SHM_ENV (main.c) */

/* Records (log) or entries (dump, ls) per read transaction: printing (to a
 * pipe that may block) happens after the transaction, which must not pin an
 * LMDB snapshot meanwhile (writers could not reuse freed pages and the map
 * would fill). */
#define CHUNK 512

/* Simple argument scanner: options (--name [value]) anywhere after the
 * command word, "--" ends them; the rest are positional. An option given
 * twice is a usage error: which of its values was meant? Arguments quoted
 * in an error text are shown printably (text.h), as everywhere in shmctl. */
typedef struct optdef {
	const char *name;
	bool has_arg;
	const char *value; /* set when seen; "" for flags */
} optdef;

/* common.c */
__attribute__((format(printf, 1, 2))) int usage_err(const char *fmt, ...);
int exit_for(int rc);
int fail(int rc);
int open_env_as(bool write, bool create, shm_env **env);
int open_env(bool write, shm_env **env);
int parse_uuid_arg(const char *s, const char *what, shm_uuid *u);
bool parse_u64(const char *s, uint64_t *v);
int opt_u64(const char *name, const char *s, uint64_t lo, uint64_t hi,
            uint64_t *v);
int scan(int argc, char **argv, optdef *opts, char ***pos, int *npos);
const char *optv(const optdef *opts, const char *name);
int arity(const char *use, char **pos, int npos, int min, int max);
void emit(FILE *out, json_t *o);

/* The commands: each takes the arguments after its name and returns an
 * exit code. */
/* msg.c */
int cmd_init(int argc, char **argv);
int cmd_import(int argc, char **argv);
int cmd_get(int argc, char **argv);
int cmd_room(int argc, char **argv);
int cmd_edit(int argc, char **argv);
int cmd_delete(int argc, char **argv);
int cmd_react(int argc, char **argv);
/* statics.c */
int cmd_static(int argc, char **argv);
int cmd_deps(int argc, char **argv);
int cmd_touch(int argc, char **argv);
int cmd_destroy(int argc, char **argv);
int cmd_bust(int argc, char **argv);
/* stat.c */
int cmd_stat(int argc, char **argv);
/* log.c */
int cmd_log(int argc, char **argv);
/* dump.c */
int cmd_dump(int argc, char **argv);
int cmd_ls(int argc, char **argv);
/* admin.c */
int cmd_verify(int argc, char **argv);
int cmd_upgrade(int argc, char **argv);
int cmd_dead(int argc, char **argv);
int cmd_readers(int argc, char **argv);

#endif
