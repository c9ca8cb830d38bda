/*
 * flusher/loop.c - the daemon: lock, environment, one worker per sink, and
 * the main thread's housekeeping tasks.
 *
 * The main thread never talks to a sink. It waits for signals (sigtimedwait,
 * so SIGTERM/SIGINT/SIGHUP are handled synchronously, outside any handler)
 * and runs each task of the table below when its interval is due:
 *
 *   trim     shm_log_trim to the minimum of the sinks' applied positions
 *            (a sink not configured does not count)
 *   sync     shm_env_sync when the log moved (nosync mode's everysec)
 *   readers  shm_env_reader_check: reader slots of dead processes
 *   expire   shm_l1_expire: flushed L1 entries past their TTL
 *   stats    flusher.* counters into meta for shmctl stat
 *   cleanup  the connection cleanup (cleanup.c): checked at the stats
 *            interval, it starts a round on its own thread when
 *            cleanup-interval is due
 *
 * A task that fails at each round (a full map fails every write) is logged
 * once, reminded every remind-interval and ended (fl_repeat), not at every
 * round. A task that may run for seconds hands its work to a thread of its
 * own (as the sinks and the cleanup do) so trim and sync keep their pace.
 *
 * Invariants
 *  1. One flusher per environment: DIR/flusher.lock is flock'ed for the
 *     daemon's lifetime (released by the kernel if it dies). shmctl stat
 *     tells whether one runs (flusher.running) by a shared flock it drops
 *     at once, which a starting flusher waits out (LOCK_PROBE_MS).
 *  2. The log is trimmed only to positions every configured sink reached.
 *  3. SIGTERM/SIGINT: each worker finishes the batch in flight, then the
 *     log is trimmed, the environment synced and stats written; exit 0.
 *  4. The counters in meta are totals since the environment was made
 *     (the sinks', syncs, expired, readers_cleared, invalidate.c's): a
 *     run goes on from what the last one wrote. Positions, lags, rates,
 *     pid and heartbeat are this run's values now.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "fl.h"
#include "cleanup.h"
#include "invalidate.h"

#define MAX_SINKS 2

typedef struct fl_daemon fl_daemon;

typedef struct fl_task {
	const char *name;
	const uint64_t *interval_ms; /* into the config; 0 = disabled */
	void (*run)(fl_daemon *d);
	uint64_t next_ms;
} fl_task;

/* Counters kept in meta as flusher.<sink>.<name>, cumulative across runs. */
typedef struct sink_stats {
	fl_stats base;       /* read from meta at start */
	uint64_t last_rows;  /* for rows_per_s */
	uint64_t last_ms;
} sink_stats;

struct fl_daemon {
	fl_config cfg;
	shm_env *env;
	char env_id[64];
	char env_uuid[37];  /* the environment's own id (fl_env_uuid) */
	fl_worker *w[MAX_SINKS];
	sink_stats ss[MAX_SINKS];
	int n;
	uint64_t trimmed;     /* last trim position */
	uint64_t synced_seq;  /* next_seq at the last sync */
	uint64_t synced_trim; /* trimmed at the last sync */
	uint64_t syncs, expired, readers_cleared; /* totals (invariant 4) */
	uint64_t trims;
	int64_t started_us;
	fl_inval *inval;      /* invalidation channel (invalidate.h) or NULL */
	fl_repeat trim_fail, sync_fail, readers_fail, expire_fail, stats_fail;
};

static uint64_t next_seq(fl_daemon *d)
{
	uint64_t v = 0;
	shm_meta_get(d->env, "next_seq", &v);
	return v;
}

/* ------------------------------------------------------------- tasks */

static void task_trim(fl_daemon *d)
{
	uint64_t min = UINT64_MAX;
	int rc;

	for (int i = 0; i < d->n; i++) {
		uint64_t a = fl_worker_applied(d->w[i]);
		if (a < min)
			min = a;
	}
	if (min == UINT64_MAX || min <= d->trimmed)
		return;
	if ((rc = shm_log_trim(d->env, min))) {
		fl_repeat_fail(&d->trim_fail, FL_ERROR, "trim to %" PRIu64
		               ": %s", min, shm_errmsg());
		return;
	}
	fl_repeat_ok(&d->trim_fail);
	d->trimmed = min;
	d->trims++;
}

static void task_sync(fl_daemon *d)
{
	uint64_t ns = next_seq(d);
	int rc;

	if (ns == d->synced_seq && d->trimmed == d->synced_trim)
		return;
	if ((rc = shm_env_sync(d->env))) {
		fl_repeat_fail(&d->sync_fail, FL_ERROR, "%s", shm_errmsg());
		return;
	}
	fl_repeat_ok(&d->sync_fail);
	d->synced_seq = ns;
	d->synced_trim = d->trimmed;
	d->syncs++;
}

static void task_readers(fl_daemon *d)
{
	int cleared = 0;

	if (shm_env_reader_check(d->env, &cleared)) {
		fl_repeat_fail(&d->readers_fail, FL_ERROR, "%s", shm_errmsg());
		return;
	}
	fl_repeat_ok(&d->readers_fail);
	if (cleared > 0) {
		fl_log(FL_INFO, "readers", "cleared %d stale reader slot%s",
		       cleared, cleared == 1 ? "" : "s");
		d->readers_cleared += (uint64_t)cleared;
	}
}

static void task_expire(fl_daemon *d)
{
	uint64_t n = 0;

	if (shm_l1_expire(d->env, &n)) {
		fl_repeat_fail(&d->expire_fail, FL_ERROR, "%s", shm_errmsg());
		return;
	}
	fl_repeat_ok(&d->expire_fail);
	if (n)
		fl_log(FL_DEBUG, "expire", "expired %" PRIu64 " L1 entries", n);
	d->expired += n;
}

/* Age of the oldest record a sink has not applied, in ms (0 if none). */
static uint64_t lag_ms(fl_daemon *d, uint64_t applied)
{
	shm_log_iter *it;
	shm_log_rec rec;
	uint64_t ms = 0;

	if (shm_log_iter_open(d->env, applied + 1, &it))
		return 0;
	memset(&rec, 0, sizeof rec);
	if (shm_log_iter_next(it, &rec) == 0) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		int64_t age = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000 -
		              rec.time;
		ms = age > 0 ? (uint64_t)age / 1000 : 0;
	}
	shm_log_iter_close(it);
	return ms;
}

#define SINK_STATS(X)                                                          \
	X(batches, "batches applied")                                          \
	X(rows, "log records applied")                                         \
	X(retries, "batches retried")                                          \
	X(errors, "failures (connection, timeout, server)")                    \
	X(dead, "records set aside as dead letters")                           \
	X(reconnects, "failed connection attempts")                            \
	X(superseded, "records applied as older than the sink's row, which "  \
	              "stays (PostgreSQL)")

/* The hourly connection cleanup (cleanup.c) schedules itself. */
static void task_cleanup(fl_daemon *d)
{
	fl_cleanup_tick(&d->cfg, d->env);
}

static void task_stats(fl_daemon *d)
{
	const char *names[64];
	uint64_t values[64];
	char bufs[64][64];
	size_t n = 0;
	uint64_t ns = next_seq(d), now = fl_mono_ms();
	struct timespec ts;

#define PUT(v, ...)                                                            \
	do {                                                                   \
		snprintf(bufs[n], sizeof bufs[n], __VA_ARGS__);                \
		names[n] = bufs[n];                                            \
		values[n] = (v);                                               \
		n++;                                                           \
	} while (0)

	for (int i = 0; i < d->n; i++) {
		const char *s = fl_worker_name(d->w[i]);
		sink_stats *ss = &d->ss[i];
		fl_stats st;
		fl_worker_stats(d->w[i], &st);
#define PUT_STAT(f, desc) PUT(ss->base.f + st.f, "flusher.%s." #f, s);
		SINK_STATS(PUT_STAT)
#undef PUT_STAT
		uint64_t last = ns ? ns - 1 : 0;
		PUT(last > st.applied ? last - st.applied : 0,
		    "flusher.%s.lag_records", s);
		PUT(last > st.applied ? lag_ms(d, st.applied) : 0,
		    "flusher.%s.lag_ms", s);
		uint64_t dt = now - ss->last_ms;
		PUT(dt && ss->last_ms ? (st.rows - ss->last_rows) * 1000 / dt : 0,
		    "flusher.%s.rows_per_s", s);
		PUT(st.last_batch_us / 1000, "flusher.%s.last_batch_ms", s);
		ss->last_rows = st.rows;
		ss->last_ms = now;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	PUT((uint64_t)getpid(), "flusher.pid");
	PUT((uint64_t)ts.tv_sec, "flusher.heartbeat");
	PUT((uint64_t)(d->started_us / 1000000), "flusher.started_at");
	PUT(d->trimmed, "flusher.trimmed_to");
	PUT(d->syncs, "flusher.syncs");
	PUT(d->expired, "flusher.expired");
	PUT(d->readers_cleared, "flusher.readers_cleared");
#undef PUT
	if (shm_meta_set_many(d->env, names, values, n))
		fl_repeat_fail(&d->stats_fail, FL_WARN, "cannot write stats: %s",
		               shm_errmsg());
	else
		fl_repeat_ok(&d->stats_fail);
}

static void repeats_init(fl_daemon *d)
{
	uint64_t s = d->cfg.remind_interval_s;

	fl_repeat_init(&d->trim_fail, "trim", "trimming the log", s);
	fl_repeat_init(&d->sync_fail, "sync", "syncing the environment", s);
	fl_repeat_init(&d->readers_fail, "readers", "checking reader slots", s);
	fl_repeat_init(&d->expire_fail, "expire", "expiring L1 entries", s);
	fl_repeat_init(&d->stats_fail, "stats", "writing flusher.* stats", s);
}

/* The daemon's totals of earlier runs (invariant 4). */
static void totals_load(fl_daemon *d)
{
	shm_meta_get(d->env, "flusher.syncs", &d->syncs);
	shm_meta_get(d->env, "flusher.expired", &d->expired);
	shm_meta_get(d->env, "flusher.readers_cleared", &d->readers_cleared);
}

/* Sink i's totals of earlier runs (invariant 4). */
static void stats_load(fl_daemon *d, int i)
{
	const char *s = fl_worker_name(d->w[i]);
	char name[96];

#define GET_STAT(f, desc)                                                      \
	snprintf(name, sizeof name, "flusher.%s." #f, s);                      \
	shm_meta_get(d->env, name, &d->ss[i].base.f);
	SINK_STATS(GET_STAT)
#undef GET_STAT
}

/* ------------------------------------------------------------ helpers */

/* shmctl stat tells whether a flusher runs by a shared lock on
 * flusher.lock that it drops at once: a lock still held after this long
 * is another flusher's, not a probe's. */
#define LOCK_PROBE_MS 200

/* flock(f, LOCK_EX | LOCK_NB), tried again while a shmctl probe may hold
 * it: 0, or -1 with errno. */
static int lock_taken(int f)
{
	uint64_t end = fl_mono_ms() + LOCK_PROBE_MS;
	struct timespec nap = {0, 5000000};

	while (flock(f, LOCK_EX | LOCK_NB) != 0) {
		int e = errno;
		if (e != EWOULDBLOCK || fl_mono_ms() >= end) {
			errno = e;
			return -1;
		}
		nanosleep(&nap, NULL);
	}
	return 0;
}

int fl_lock_env(const char *dir, int *fd, char *err, size_t errlen)
{
	char path[4096], pid[32] = "", shown[SHM__SHOWN_LONG_MAX];
	char pid_shown[SHM__SHOWN_MAX];
	int f;

	shm__shown_long(dir, strlen(dir), shown); /* dir as err names it */
	/* dir holds the environment the flusher opened: made by no one here
	 * (a directory gone meanwhile is an error, not a new empty one) */
	snprintf(path, sizeof path, "%s/flusher.lock", dir);
	/* group-writable unless the umask says otherwise, as libshm makes its
	 * files: the next flusher may run as another user of the group (the
	 * service after an operator's --once) */
	if ((f = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0664)) < 0) {
		int e = errno;
		snprintf(err, errlen, "%s/flusher.lock: %s%s", shown, strerror(e),
		         e == EACCES ? ": every shm-flusher of the environment "
		         "takes this lock: give this user write access to it, "
		         "e.g. one group for every user of the environment, a "
		         "setgid directory, umask 0002" : "");
		return -1;
	}
	if (lock_taken(f) != 0) {
		int e = errno;
		ssize_t r = pread(f, pid, sizeof pid - 1, 0);
		pid[r > 0 ? r : 0] = 0;
		pid[strcspn(pid, "\n")] = 0;
		if (e == EWOULDBLOCK)
			snprintf(err, errlen, "another shm-flusher%s%s%s already "
			         "runs on %s (%s/flusher.lock is locked)",
			         *pid ? " (pid " : "",
			         shm__shown_str(pid, pid_shown),
			         *pid ? ")" : "", shown, shown);
		else
			snprintf(err, errlen, "%s/flusher.lock: flock: %s",
			         shown, strerror(e));
		close(f);
		return -1;
	}
	snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
	if (ftruncate(f, 0) == 0 && pwrite(f, pid, strlen(pid), 0) < 0) {
		/* the pid is informative only */
	}
	*fd = f;
	return 0;
}

int fl_env_uuid(shm_env *env, char out[37])
{
	static const char *const names[2] = {"flusher.env_id.hi",
	                                     "flusher.env_id.lo"};
	uint64_t v[2] = {0, 0};
	shm_uuid u;
	int rc;

	if ((rc = shm_meta_get(env, names[0], &v[0])) ||
	    (rc = shm_meta_get(env, names[1], &v[1])))
		return rc;
	if (!v[0] && !v[1]) {
		shm_uuid_v7(&u);
		memcpy(&v[0], u.b, 8);
		memcpy(&v[1], u.b + 8, 8);
		if ((rc = shm_meta_set_many(env, names, v, 2)))
			return rc;
	}
	memcpy(u.b, &v[0], 8);
	memcpy(u.b + 8, &v[1], 8);
	shm_uuid_format(&u, out);
	return 0;
}

int fl_env_id(shm_env *env, const fl_config *cfg, char out[64])
{
	char uuid[37];
	int rc;

	if (cfg->env_id && *cfg->env_id) {
		snprintf(out, 64, "%s", cfg->env_id);
		return 0;
	}
	if ((rc = fl_env_uuid(env, uuid)))
		return rc;
	snprintf(out, 64, "%s", uuid);
	return 0;
}

/* --------------------------------------------------------------- main */

/* Waits up to ms for SIGTERM/SIGINT: true if one came. */
static bool stop_signal_within(unsigned ms)
{
	sigset_t set, old;
	struct timespec to = {ms / 1000, (long)(ms % 1000) * 1000000L};
	int sig;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, &old);
	sig = sigtimedwait(&set, NULL, &to);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return sig == SIGTERM || sig == SIGINT;
}

/* An environment not made yet (no directory, or no data.mdb in it). */
#define NO_ENV "no shm environment in %s yet (run shmctl init or start an " \
               "application)"

/* The environment, which the flusher never creates (a mistyped -e must not
 * tail a new, empty log). A daemon started before the first application
 * waits for it, saying so once (SIGTERM/SIGINT end the wait: exit 0);
 * --once and --cleanup-now do not wait (exit 1). */
static int open_env(fl_daemon *d, int *code)
{
	const char *dir = d->cfg.env_dir;
	char shown[SHM__SHOWN_LONG_MAX];
	shm_options o;
	bool said = false;
	int rc;

	shm__shown_long(dir, strlen(dir), shown); /* dir as the log names it */

	shm_options_init(&o);
	o.must_exist = true;
	/* 0: the map the applications gave the environment (a size given
	 * that is larger is stored for every process) */
	o.map_size = (size_t)d->cfg.map_size_mb << 20;
	while ((rc = shm_env_open(dir, &o, &d->env))) {
		bool absent = rc == SHM_ENOTFOUND || rc == ENOENT;
		if (absent && (d->cfg.once || d->cfg.cleanup_now)) {
			fl_log_alert("main", NO_ENV, shown);
			*code = FL_EXIT_ENV;
			return -1;
		}
		if (!absent) {
			/* libshm's message names the directory */
			fl_log_alert("main", "open: %s", shm_errmsg());
			*code = FL_EXIT_ENV;
			return -1;
		}
		if (!said)
			fl_log(FL_WARN, "main", NO_ENV "; waiting for it",
			       shown);
		said = true;
		if (stop_signal_within(500)) {
			fl_log(FL_INFO, "main", "stopped while waiting");
			*code = FL_EXIT_OK;
			return -1;
		}
	}
	if (said)
		fl_log(FL_INFO, "main", "%s: the environment is there", shown);
	return 0;
}

static void run_tasks(fl_daemon *d, fl_task *tasks, size_t n, bool all)
{
	uint64_t now = fl_mono_ms();

	for (size_t i = 0; i < n; i++) {
		if (!*tasks[i].interval_ms)
			continue;
		if (all || now >= tasks[i].next_ms) {
			tasks[i].run(d);
			tasks[i].next_ms = now + *tasks[i].interval_ms;
		}
	}
}

static uint64_t next_due(fl_task *tasks, size_t n)
{
	uint64_t now = fl_mono_ms(), wait = 100;

	for (size_t i = 0; i < n; i++) {
		if (!*tasks[i].interval_ms)
			continue;
		uint64_t left = tasks[i].next_ms > now ? tasks[i].next_ms - now : 0;
		if (left < wait)
			wait = left;
	}
	return wait;
}

/* code, if what was printed (--help, --version, --print-config) reached
 * stdout: a config file cut short by a full disk is no success (said, and
 * 70 as the other tools exit: tools/close_stdout.h). */
static int printed(int code)
{
	if (fflush(stdout) == 0 && !ferror(stdout))
		return code;
	/* errno: the failed write's (the caller zeroed it before printing) */
	fprintf(stderr, "shm-flusher: write the output: %s\n",
	        errno ? strerror(errno) : "write error");
	clearerr(stdout);
	return FL_EXIT_WRITE;
}

int fl_main(int argc, char **argv)
{
	fl_daemon d;
	char err[1024], shown[SHM__SHOWN_LONG_MAX];
	char log_shown[SHM__SHOWN_LONG_MAX]; /* --log-file as messages name it */
	int code = FL_EXIT_OK, lock_fd = -1, rc;
	sigset_t set, done_set, old;
	pthread_t self = pthread_self();
	bool stopping = false;

	memset(&d, 0, sizeof d);
	if (fl_config_load(&d.cfg, argc, argv, err, sizeof err)) {
		fprintf(stderr, "shm-flusher: %s\n", err);
		fl_config_free(&d.cfg);
		return FL_EXIT_USAGE;
	}
	if (d.cfg.help || d.cfg.version) {
		errno = 0;
		if (d.cfg.help)
			fl_config_help(stdout, "shm-flusher");
		else
			printf("shm-flusher %s\n", SHM_VERSION);
		fl_config_free(&d.cfg);
		return printed(FL_EXIT_OK);
	}
	shm__shown_long(d.cfg.log_file, strlen(d.cfg.log_file), log_shown);
	if ((rc = fl_log_open(d.cfg.log_file,
	                      fl_log_level_parse(d.cfg.log_level)))) {
		fprintf(stderr, "shm-flusher: log-file %s: %s\n", log_shown,
		        strerror(rc));
		fl_config_free(&d.cfg);
		return FL_EXIT_USAGE;
	}
	if (d.cfg.print_config) { /* it passed every config check of a start */
		errno = 0;
		fl_config_print(stdout, &d.cfg);
		fl_log_close();
		fl_config_free(&d.cfg);
		return printed(FL_EXIT_OK);
	}
	repeats_init(&d);
	if (open_env(&d, &code))
		goto out;
	if (fl_lock_env(d.cfg.env_dir, &lock_fd, err, sizeof err)) {
		fl_log_alert("main", "%s", err);
		code = FL_EXIT_ENV;
		goto out;
	}
	if ((rc = fl_env_uuid(d.env, d.env_uuid)) ||
	    (rc = fl_env_id(d.env, &d.cfg, d.env_id))) {
		fl_log_alert("main", "environment id: %s", shm_errmsg());
		code = FL_EXIT_ENV;
		goto out;
	}
	/* the one check of it: fl_cleanup_now, here or after --once's
	 * drain, is called with a --pg */
	if (d.cfg.cleanup_now && !*d.cfg.pg_conninfo) {
		fl_log(FL_ERROR, "cleanup", "--cleanup-now needs --pg");
		code = FL_EXIT_USAGE;
		goto out;
	}
	if (d.cfg.cleanup_now && !d.cfg.once) {
		code = fl_cleanup_now(&d.cfg, d.env);
		goto out;
	}
	totals_load(&d);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	d.started_us = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;

	/* a write to a Redis that went away must be an error, not death */
	signal(SIGPIPE, SIG_IGN);
	/* signals: taken synchronously by this thread; the workers inherit
	 * the blocked mask. FL_SIG_DONE: a worker is done (--once ends at
	 * once, not at the next tick). */
	sigemptyset(&done_set);
	sigaddset(&done_set, FL_SIG_DONE);
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, FL_SIG_DONE);
	pthread_sigmask(SIG_BLOCK, &set, &old);

	uint64_t ns = next_seq(&d), target = ns ? ns - 1 : 0;
	fl_log(FL_INFO, "main", "shm-flusher %s on %s (env id %s), pid %ld%s",
	       SHM_VERSION,
	       shm__shown_long(d.cfg.env_dir, strlen(d.cfg.env_dir), shown),
	       d.env_id, (long)getpid(),
	       d.cfg.once ? ", --once" : "");
	if (*d.cfg.pg_conninfo) {
		fl_sink *s = fl_pg_sink_new(&d.cfg, d.env, d.env_id,
		                            d.env_uuid);
		if (!s || fl_worker_start(&d.w[d.n], s, d.env, &d.cfg,
		                          d.cfg.once, target, &self)) {
			fl_log_alert("main", "cannot start the pg sink");
			code = FL_EXIT_ENV;
			goto stop;
		}
		stats_load(&d, d.n++);
	}
	if (*d.cfg.redis_url) {
		fl_sink *s = fl_redis_sink_new(&d.cfg, d.env);
		if (s && d.cfg.invalidation &&
		    fl_inval_start(&d.inval, &d.cfg, d.env, d.env_id,
		                   !d.cfg.once) == 0) {
			s->on_applied = fl_inval_published;
			s->on_applied_user = d.inval;
		}
		if (!s || fl_worker_start(&d.w[d.n], s, d.env, &d.cfg,
		                          d.cfg.once, target, &self)) {
			fl_log_alert("main", "cannot start the redis sink");
			code = FL_EXIT_ENV;
			goto stop;
		}
		stats_load(&d, d.n++);
	}

	fl_task tasks[] = {
		{"trim", &d.cfg.trim_interval_ms, task_trim, 0},
		{"sync", &d.cfg.sync_interval_ms, task_sync, 0},
		{"readers", &d.cfg.reader_check_ms, task_readers, 0},
		{"expire", &d.cfg.expire_interval_ms, task_expire, 0},
		{"stats", &d.cfg.stats_interval_ms, task_stats, 0},
		{"cleanup", &d.cfg.stats_interval_ms, task_cleanup, 0},
	};
	size_t n_tasks = sizeof tasks / sizeof tasks[0];

	for (;;) {
		uint64_t wait = next_due(tasks, n_tasks);
		struct timespec to = {(time_t)(wait / 1000),
		                      (long)(wait % 1000) * 1000000L};
		siginfo_t si;
		int sig = sigtimedwait(&set, &si, &to);
		if (sig == SIGTERM || sig == SIGINT) {
			if (!stopping)
				fl_log(FL_INFO, "main", "%s: finishing the "
				       "batches in flight",
				       sig == SIGTERM ? "SIGTERM" : "SIGINT");
			stopping = true;
			for (int i = 0; i < d.n; i++)
				fl_worker_stop(d.w[i]);
		} else if (sig == SIGHUP) {
			if ((rc = fl_log_reopen())) /* the old file kept */
				fl_log_alert("main", "reopen %s: %s", log_shown,
				             strerror(rc));
			else
				fl_log(FL_INFO, "main", "log reopened");
		}
		run_tasks(&d, tasks, n_tasks, false);
		bool all_done = true;
		for (int i = 0; i < d.n; i++)
			all_done &= fl_worker_done(d.w[i]);
		if (all_done)
			break;
	}
stop:
	fl_cleanup_shutdown();
	for (int i = 0; i < d.n; i++)
		fl_worker_stop(d.w[i]);
	/* workers are done (or stopping): a last round of bookkeeping with
	 * their final positions, then join */
	for (int i = 0; i < d.n; i++)
		while (!fl_worker_done(d.w[i])) {
			struct timespec nap = {0, 10000000};
			sigtimedwait(&done_set, NULL, &nap);
		}
	if (d.n) {
		task_trim(&d);
		task_stats(&d);
		if (d.cfg.sync_interval_ms)
			task_sync(&d);
	}
	for (int i = 0; i < d.n; i++) {
		if (fl_worker_join(d.w[i]) != 0 && code == FL_EXIT_OK)
			code = FL_EXIT_SINK;
		d.w[i] = NULL;
	}
	fl_inval_stop(d.inval); /* after the joins: the publisher is theirs */
	/* --once --cleanup-now: the round once the drain put the log's graph
	 * changes and marks into PostgreSQL (not after a failed or stopped
	 * drain: exit 3, the round not run) */
	if (d.cfg.cleanup_now && code == FL_EXIT_OK && !stopping)
		code = fl_cleanup_now(&d.cfg, d.env);
	/* the joined workers' FL_SIG_DONE, if still pending, dies here */
	struct timespec now = {0, 0};
	while (sigtimedwait(&done_set, NULL, &now) == FL_SIG_DONE)
		;
	fl_log(FL_INFO, "main", "exiting (%d), log trimmed to %" PRIu64, code,
	       d.trimmed);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
out:
	if (d.env)
		shm_env_close(d.env);
	if (lock_fd >= 0)
		close(lock_fd);
	fl_config_free(&d.cfg);
	return code;
}
