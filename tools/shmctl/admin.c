/*
 * tools/shmctl/admin.c - shmctl's checks and repairs of an environment:
 * verify, upgrade, dead drop, readers (LMDB's reader slots, read through
 * internal.h).
 */
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "shm.h"
#include "shm_log.h"
#include "shmctl.h"

/* Called after shm_verify's snapshot is released; counts the lines. */
static void report_problem(const char *problem, void *user)
{
	++*(size_t *)user;
	printf("%s\n", problem);
}

int cmd_verify(int argc, char **argv)
{
	optdef opts[] = {{NULL, false, NULL}};
	char **pos;
	int npos, ex, rc;
	shm_env *env;
	size_t problems = 0, shown = 0;

	if ((ex = scan(argc, argv, opts, &pos, &npos)))
		return ex;
	if ((ex = arity("verify", pos, npos, 0, 0)))
		return ex;
	if ((ex = open_env(false, &env)))
		return ex;
	rc = shm_verify(env, report_problem, &shown, &problems);
	if (rc) {
		ex = fail(rc);
	} else if (problems) {
		fprintf(stderr, "%s: verify: %zu problem%s", prog, problems,
		        problems == 1 ? "" : "s");
		if (shown < problems)
			fprintf(stderr, ", the first %zu shown", shown);
		fputc('\n', stderr);
		ex = EX_NOTFOUND;
	} else {
		shm_info in;
		if (shm_env_info(env, &in) == 0)
			printf("ok: %" PRIu64 " message%s, %" PRIu64
			       " static%s, %" PRIu64 " log record%s\n",
			       in.messages, in.messages == 1 ? "" : "s",
			       in.statics, in.statics == 1 ? "" : "s",
			       in.log_records, in.log_records == 1 ? "" : "s");
		else
			printf("ok\n");
		ex = EX_OK;
	}
	shm_env_close(env);
	return ex;
}

/* Rewrites what an older libshm stored in a form libshm no longer reads
 * (libshm/upgrade.c), in one transaction; says what it did. */
int cmd_upgrade(int argc, char **argv)
{
	optdef opts[] = {{NULL, false, NULL}};
	char **pos;
	int npos, ex, rc;
	shm_env *env;
	shm__upgraded u;

	if ((ex = scan(argc, argv, opts, &pos, &npos)))
		return ex;
	if ((ex = arity("upgrade", pos, npos, 0, 0)))
		return ex;
	if ((ex = open_env(true, &env)))
		return ex;
	if ((rc = shm__upgrade(env, &u)))
		ex = fail(rc);
	else if (!u.declared && !u.dropped && !u.statics && !u.marks)
		printf("nothing to upgrade\n");
	else
		printf("upgraded: %zu graph object%s declared again, %zu old "
		       "spelling%s dropped, %zu static%s busted, %zu mark%s "
		       "dropped\n", u.declared, u.declared == 1 ? "" : "s",
		       u.dropped, u.dropped == 1 ? "" : "s", u.statics,
		       u.statics == 1 ? "" : "s", u.marks,
		       u.marks == 1 ? "" : "s");
	shm_env_close(env);
	return ex;
}

/* dead drop SEQ...: drops those dead letters in one transaction, all or
 * nothing (a SEQ without a letter: exit 1, nothing dropped). */
int cmd_dead(int argc, char **argv)
{
	optdef opts[] = {{NULL, false, NULL}};
	const char *use = "dead drop SEQ [SEQ ...]";
	uint64_t seqs[256];
	char **pos, b[SHM__SHOWN_MAX];
	int npos, ex, rc;
	shm_env *env;

	if (argc < 1)
		return usage_err("dead needs drop; usage: shmctl %s", use);
	if (strcmp(argv[0], "drop") != 0)
		return usage_err("unknown command 'dead %s'",
		                 shm__shown_str(argv[0], b));
	if ((ex = scan(argc - 1, argv + 1, opts, &pos, &npos)) ||
	    (ex = arity(use, pos, npos, 1, -1)))
		return ex;
	for (int i = 0; i < npos; i++) {
		if (!parse_u64(pos[i], &seqs[i]) || !seqs[i])
			return usage_err("SEQ '%s': not a record's seq (an "
			                 "integer from 1, as shmctl log --dead "
			                 "shows it)", shm__shown_str(pos[i], b));
		for (int j = 0; j < i; j++)
			if (seqs[j] == seqs[i])
				return usage_err("SEQ %" PRIu64 " given twice",
				                 seqs[i]);
	}
	if ((ex = open_env(true, &env)))
		return ex;
	if ((rc = shm_dead_drop(env, seqs, (size_t)npos)))
		ex = fail(rc);
	else
		printf("dropped %d dead letter%s\n", npos, npos == 1 ? "" : "s");
	shm_env_close(env);
	return ex;
}

/* The reader slots, one line each: pid, thread, the txnid of the
 * snapshot ("-" for none) and its age: how many transactions were committed
 * since. The last txnid is read after the slot was, so the age is never
 * negative. --json: one object per slot with those names, the thread as
 * the same hex text, txnid and age null for none. */
typedef struct readers_out {
	MDB_env *mdb;
	bool json;
	int lfd;    /* DIR/lock.mdb, for reader_dead; -1: cannot tell */
	unsigned n; /* slots printed */
} readers_out;

/* Whether pid, which holds a reader slot, has died: 1, 0, or -1 if it
 * cannot be told. As LMDB's stale-reader check (--clear-stale) tells it:
 * a process with a reader slot holds an fcntl write lock on byte pid of
 * lock.mdb, which the kernel drops when it dies; F_GETLK sees another
 * process's, never this one's (alive). lfd must stay open until the
 * handle is closed: closing any descriptor of lock.mdb drops this
 * process's fcntl locks on it, LMDB's too. */
static int reader_dead(int lfd, int pid)
{
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET,
	                   .l_start = pid, .l_len = 1};

	if (pid == getpid())
		return 0;
	if (lfd < 0 || fcntl(lfd, F_GETLK, &fl) != 0)
		return -1;
	return fl.l_type == F_UNLCK;
}

static int reader_row(int pid, size_t thread, size_t txnid, void *ctx)
{
	readers_out *o = ctx;
	MDB_envinfo ei;
	char th[32], id[32] = "-", age[32] = "-";
	bool has_age = txnid && mdb_env_info(o->mdb, &ei) == 0;
	int dead = reader_dead(o->lfd, pid);

	snprintf(th, sizeof th, "%zx", thread);
	if (o->json) {
		json_t *j = json_object();
		json_object_set_new(j, "pid", json_integer(pid));
		json_object_set_new(j, "thread", json_string(th));
		json_object_set_new(j, "txnid", txnid ? json_integer(
		                    (json_int_t)txnid) : json_null());
		json_object_set_new(j, "age", has_age ? json_integer(
		                    (json_int_t)(ei.me_last_txnid - txnid))
		                    : json_null());
		json_object_set_new(j, "dead", dead < 0 ? json_null()
		                                        : json_boolean(dead));
		emit(stdout, j);
		o->n++;
		return ferror(stdout) ? -1 : 0;
	}
	if (o->n++ == 0 && printf("%10s %16s %12s %10s %4s\n", "pid",
	                          "thread", "txnid", "age", "dead") < 0)
		return -1;
	if (txnid)
		snprintf(id, sizeof id, "%zu", txnid);
	if (has_age)
		snprintf(age, sizeof age, "%zu",
		         (size_t)ei.me_last_txnid - txnid);
	return printf("%10d %16s %12s %10s %4s\n", pid, th, id, age,
	              dead < 0 ? "?" : dead ? "yes" : "no") < 0 ? -1 : 0;
}

int cmd_readers(int argc, char **argv)
{
	optdef opts[] = {{"clear-stale", false, NULL}, {"json", false, NULL},
	                 {NULL, false, NULL}};
	char **pos;
	int npos, ex, rc;
	shm_env *env;

	if ((ex = scan(argc, argv, opts, &pos, &npos)))
		return ex;
	if ((ex = arity("readers [--clear-stale] [--json]", pos, npos, 0, 0)))
		return ex;
	if ((ex = open_env(false, &env)))
		return ex;
	char lock[4200];
	snprintf(lock, sizeof lock, "%s/lock.mdb", env_dir);
	readers_out o = {env->mdb, optv(opts, "json") != NULL,
	                 open(lock, O_RDONLY | O_CLOEXEC), 0};
	if (optv(opts, "clear-stale")) {
		int cleared = 0;
		if ((rc = shm_env_reader_check(env, &cleared))) {
			ex = fail(rc);
			goto out;
		}
		/* with --json, stdout holds the slots' objects alone */
		fprintf(o.json ? stderr : stdout, "cleared %d stale reader "
		        "slot%s\n", cleared, cleared == 1 ? "" : "s");
	}
	shm__readers(env, reader_row, &o);
	if (!o.n && !o.json)
		printf("(no active readers)\n");
	ex = EX_OK;
out:
	shm_env_close(env);
	if (o.lfd >= 0) /* after the close: reader_dead */
		close(o.lfd);
	return ex;
}
