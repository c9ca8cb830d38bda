/*
 * libshm/registry.c - the registry of this process's environment handles:
 * one per environment and process.
 *
 * Invariant (one of the environment's, numbered with env.c's)
 *  8. A process has at most one handle open on an environment (lmdb.h's
 *     rule: LMDB's locks on lock.mdb are fcntl locks, the process's, which
 *     a close of any descriptor of that file drops, and mdb_env_close
 *     frees every reader slot of getpid() in the table; without those
 *     locks another process's stale-reader check frees this one's slots
 *     while it reads). A registry of the process's handles, under one
 *     mutex, names each by its directory's st_dev and st_ino (a symlink,
 *     "dir/." or another spelling is the same directory) and its opener's
 *     pid. shm_env_open enters the new handle before it opens or changes
 *     anything of the environment (the directory, if it makes it, is
 *     made first: no handle can be open on one that did not exist), and
 *     fails with SHM_EBUSY if a handle of this process is there;
 *     shm_env_close takes it out only after closing its LMDB handle, so
 *     an open meanwhile cannot take locks the close then drops. A child
 *     of fork() inherits the registry: the parent's entries are not its
 *     handles (another pid), so its own open goes on. Closing an
 *     inherited handle's LMDB handle in a child that has its own open
 *     would drop that one's locks and slots: it is kept, on the child's
 *     own handle, and closed after it. The mutex is held across fork()
 *     (pthread_atfork), so no child inherits it held. libshm's own
 *     files take flock() on a descriptor of their own (flock is the open
 *     file's, not the process's): shm.stats during open only, shm.wlock
 *     a shared one while the handle is open (wlock.c invariant 3); both
 *     are mapped: nothing of one handle there is lost when another
 *     closes.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

/* An LMDB handle a child of fork() inherited, closed after the child's own
 * handle on the same environment. */
struct shm__inherited {
	MDB_env *mdb;
	struct shm__inherited *next;
};

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static shm_env *reg_head; /* this process's handles, and a parent's */
static pthread_once_t reg_once = PTHREAD_ONCE_INIT;

static void reg_fork_prepare(void)
{
	pthread_mutex_lock(&reg_lock);
}

static void reg_fork_after(void)
{
	pthread_mutex_unlock(&reg_lock);
}

/* In the child: every handle there is its parent's (or an older
 * ancestor's), which it must not use (the fork rule): its transactions
 * are refused from now on (gate.c), saying why, rather than run on
 * LMDB's handle of another process. */
static void reg_fork_child(void)
{
	for (shm_env *e = reg_head; e; e = e->reg_next)
		__atomic_fetch_or(&e->gate, SHM__GATE_FORKED, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&reg_lock);
}

static void reg_init(void)
{
	pthread_atfork(reg_fork_prepare, reg_fork_after, reg_fork_child);
}

/* Enters env, opened as dir, in the registry; SHM_EBUSY if this process
 * has a handle open on that directory. */
int shm__reg_add(shm_env *env, const char *dir)
{
	struct stat st;
	shm_env *e;
	int rc = 0;

	if (stat(dir, &st) != 0)
		return shm__err(errno, "environment %s", env->path_shown);
	pthread_once(&reg_once, reg_init);
	pthread_mutex_lock(&reg_lock);
	for (e = reg_head; e; e = e->reg_next)
		if (e->pid == env->pid && e->dev == st.st_dev &&
		    e->ino == st.st_ino)
			break;
	if (e) {
		rc = shm__err(SHM_EBUSY, "%s: already open in this process "
		              "(as %s): share the first handle between "
		              "threads; LMDB allows one open of an environment "
		              "per process, and closing a second handle would "
		              "drop the first one's locks", env->path_shown,
		              e->path_shown);
	} else {
		env->dev = st.st_dev;
		env->ino = st.st_ino;
		env->registered = true;
		env->reg_next = reg_head;
		reg_head = env;
	}
	pthread_mutex_unlock(&reg_lock);
	return rc;
}

bool shm__env_open_here(const char *dir)
{
	struct stat st;
	pid_t me = getpid();
	bool found = false;

	if (stat(dir, &st) != 0)
		return false;
	pthread_mutex_lock(&reg_lock);
	for (shm_env *e = reg_head; e && !found; e = e->reg_next)
		found = e->pid == me && e->dev == st.st_dev &&
		        e->ino == st.st_ino;
	pthread_mutex_unlock(&reg_lock);
	return found;
}

/* Under reg_lock: takes env out of the registry. */
static void reg_unlink(shm_env *env)
{
	for (shm_env **p = &reg_head; *p; p = &(*p)->reg_next)
		if (*p == env) {
			*p = env->reg_next;
			break;
		}
	env->registered = false;
}

static void inherited_close(struct shm__inherited *i)
{
	while (i) {
		struct shm__inherited *next = i->next;
		mdb_env_close(i->mdb);
		free(i);
		i = next;
	}
}

/* shm_env_close's LMDB part for a handle this process opened: after its
 * own LMDB handle, those of a parent it kept. */
void shm__reg_close(shm_env *env)
{
	if (env->mdb)
		mdb_env_close(env->mdb);
	if (!env->registered)
		return;
	pthread_mutex_lock(&reg_lock);
	inherited_close(env->inherited);
	env->inherited = NULL;
	reg_unlink(env);
	pthread_mutex_unlock(&reg_lock);
}

/* The same in a child of fork() for a handle it inherited: its LMDB
 * handle (and those its opener kept) go to the child's own handle on the
 * environment, if there is one, to be closed after it; else they are
 * closed now, under the lock, so that no open of the child's comes
 * between. Out of memory for the list, one is left open: a leak rather
 * than the child's locks lost. */
void shm__reg_close_inherited(shm_env *env)
{
	struct shm__inherited *kept = env->inherited, *n;
	pid_t me = getpid();
	shm_env *own = NULL;

	env->inherited = NULL;
	pthread_mutex_lock(&reg_lock);
	for (shm_env *e = reg_head; env->registered && e; e = e->reg_next)
		if (e->pid == me && e->dev == env->dev && e->ino == env->ino)
			own = e;
	if (env->registered)
		reg_unlink(env);
	if (own) {
		if (env->mdb && (n = malloc(sizeof *n))) {
			n->mdb = env->mdb;
			n->next = kept;
			kept = n;
		}
		n = kept;
		while (n && n->next)
			n = n->next;
		if (n) {
			n->next = own->inherited;
			own->inherited = kept;
		}
	} else {
		if (env->mdb)
			mdb_env_close(env->mdb);
		inherited_close(kept);
	}
	pthread_mutex_unlock(&reg_lock);
}
