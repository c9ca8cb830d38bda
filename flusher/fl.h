/*
 * flusher/fl.h - what the flusher's files share. Everything here except
 * main() is linked into the tests and shm-bench too, so nothing in it exits
 * the process or installs signal handlers behind the caller's back.
 *
 * Shape of the daemon (loop.c):
 *
 *   main thread   signals, the env lock, and the housekeeping tasks (trim,
 *                 sync, stale readers, L1 expiry, stats) on their intervals;
 *                 the hourly connection cleanup (issue 5) joins that table.
 *   one worker    per sink (worker.c), a thread with its own cursor: waits
 *   thread        for records, cuts a batch (N records or T ms), hands it to
 *                 the sink (redis_sink.c, pg_sink.c), retries with capped
 *                 exponential backoff, sets poison records aside as dead
 *                 letters, then advances "sink.<name>.applied".
 *
 * A sink never sees another sink's failures: Redis down holds back neither
 * PostgreSQL nor writers (until the log, which trimming keeps for the
 * slowest sink, fills the map).
 */
#ifndef FL_H
#define FL_H

#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "shm.h"
#include "shm_log.h"
#include "text.h"

/* ------------------------------------------------------------ logging */

enum fl_level { FL_DEBUG = 0, FL_INFO, FL_WARN, FL_ERROR };

/* Opens the log: path NULL or "" or "-" = stderr. Thread-safe afterwards. */
int fl_log_open(const char *path, int level);
/* Reopens the same path (SIGHUP, after logrotate). */
int fl_log_reopen(void);
void fl_log_close(void);
int fl_log_level_parse(const char *s);
const char *fl_log_level_name(int level);
/* One line: "<RFC 3339 UTC ms> <LEVEL> <component>: <message>", the
 * message shown printably (line breaks folded, other controls \xNN). */
void fl_log(int level, const char *comp, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* An error its starter must see (one that ends the program, a log file
 * that cannot be reopened), said once: an ERROR line; when the log is a
 * file, also "shm-flusher: ..." on stderr, shown as the line shows it. */
void fl_log_alert(const char *comp, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* A failure that repeats (a periodic task, a meta write at each batch):
 * its first occurrence is logged as it is; while it lasts, at most one
 * reminder every remind_ms ("<what>: still failing: N times in the last S
 * s; the last: ..."), and one INFO line when it ends ("<what> works again").
 * Used by one thread at a time. */
typedef struct fl_repeat {
	const char *comp;  /* log component */
	const char *what;  /* what fails, e.g. "trimming the log" */
	uint64_t remind_ms;
	bool failing;
	uint64_t first_ms; /* CLOCK_MONOTONIC: the first failure */
	uint64_t said_ms;  /* the last line about it */
	uint64_t unsaid;   /* failures since that line */
	uint64_t total;    /* failures since the first */
} fl_repeat;

/* comp and what must outlive r. */
void fl_repeat_init(fl_repeat *r, const char *comp, const char *what,
                    uint64_t remind_s);
void fl_repeat_fail(fl_repeat *r, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void fl_repeat_ok(fl_repeat *r);

/* ------------------------------------------------------------- config */

typedef struct fl_config {
	char *env_dir;
	char *redis_url;       /* NULL/"": no Redis sink */
	shm_redis_addr redis_addr; /* redis_url, parsed by fl_config_load */
	char *pg_conninfo;     /* NULL/"": no PostgreSQL sink */
	char *config_file;
	char *log_file;
	char *log_level;
	char *pg_schema;       /* applied at each PostgreSQL connect if set */
	char *env_id;          /* "" = the environment's own id */
	char *static_sha;      /* sha1 | sha256 */
	uint64_t batch_records;
	uint64_t batch_max_records; /* backlog: batches grow up to this */
	uint64_t batch_ms;
	uint64_t l2_ttl_s;
	uint64_t compress_threshold;
	uint64_t sync_interval_ms;
	uint64_t reader_check_ms;
	uint64_t expire_interval_ms;
	uint64_t trim_interval_ms;
	uint64_t stats_interval_ms;
	uint64_t remind_interval_s; /* a failure that lasts, again (fl_repeat) */
	uint64_t backoff_min_ms;
	uint64_t backoff_max_ms;
	uint64_t poison_retries;
	uint64_t once_retries;
	uint64_t redis_timeout_ms;
	uint64_t pg_timeout_ms;
	uint64_t map_size_mb;
	uint64_t cleanup_interval_s; /* connection cleanup (cleanup.c); 0 = off */
	bool cleanup_now;            /* --cleanup-now: one round, then exit */
	bool invalidation;           /* invalidate.h; needs redis_url */
	bool once;
	bool help;
	bool print_config;
	bool version;
} fl_config;

/* The capped exponential backoff of every retry: ms doubled, up to
 * backoff-max-ms. */
static inline uint64_t fl_backoff_next(const fl_config *c, uint64_t ms)
{
	return ms > c->backoff_max_ms / 2 ? c->backoff_max_ms : ms * 2;
}

/* Defaults, then the config file (--config), then the flags. On a bad option
 * or value returns non-zero and writes the reason into err. */
int fl_config_load(fl_config *c, int argc, char **argv, char *err,
                   size_t errlen);
void fl_config_help(FILE *f, const char *prog);
/* The sample config file: every option, its default and description. */
void fl_config_print(FILE *f, const fl_config *c);
void fl_config_free(fl_config *c);

/* -------------------------------------------------- redis connections */

struct redisContext;
/* A connection to cfg's redis-url with redis-timeout set for connect, reads
 * and writes, AUTHed when the URL has a password; NULL with the reason in
 * err (connect or AUTH, naming the server) otherwise. Free it with redisFree. */
struct redisContext *fl_redis_connect(const fl_config *cfg, char *err,
                                      size_t errlen);
/* The server c (NULL: none yet) is connected to, as the flusher's messages
 * name it: "unix:PATH", or HOST:PORT with the address a host name resolved
 * to ("cache:6379 (10.0.0.7)"); never the password. Returns buf. */
#define FL_REDIS_SERVER_MAX (SHM__SHOWN_LONG_MAX + 80)
const char *fl_redis_server(const fl_config *cfg, const struct redisContext *c,
                            char buf[FL_REDIS_SERVER_MAX]);
/* A hiredis context's error text (its errstr) for logs: a socket timeout,
 * which hiredis reports as EAGAIN's text, reads "timed out"; an empty text
 * "connection lost". */
const char *fl_redis_error(const char *errstr);

/* ----------------------------------------------- postgres connections */

struct pg_conn;
struct pg_result;
/* A connection to cfg's pg-conninfo (named app unless the conninfo's
 * application_name or PGAPPNAME names it), made within pg-timeout-ms;
 * NULL with the first line of the reason in err. What the server sends as
 * notices, from the start, is logged as comp's (a string that outlives the
 * connection), never printed on stderr. */
struct pg_conn *fl_pg_connect(const fl_config *cfg, const char *app,
                              const char *comp, char *err, size_t errlen);

/* ------------------------------------------------------------ batches */

/* One log record, copied out of the read transaction. */
typedef struct fl_rec {
	uint64_t seq;
	int64_t time;
	uint8_t op;
	bool superseded;         /* a later record in the batch has its key */
	uint8_t first_op;        /* op of the key's first record in the batch
	                            (fl_batch_coalesce; op itself if alone) */
	const uint8_t *key;
	uint32_t key_len;
	const uint8_t *payload;  /* decompressed */
	uint32_t payload_len;
	const uint8_t *raw;      /* the stored record (for dead letters) */
	uint32_t raw_size;
} fl_rec;

typedef struct fl_chunk fl_chunk;

typedef struct fl_batch {
	fl_rec *r;
	size_t n, cap;
	fl_chunk *mem;    /* the records' bytes, released by fl_batch_clear */
	fl_chunk *spare;  /* released chunks kept for the next batches */
	size_t spare_bytes;
	uint64_t from;    /* the sink's position before the batch */
	uint64_t upto;    /* the sink's position after it (>= every r[i].seq) */
	/* set by a sink's apply on FL_REJECT, when it knows the culprit */
	long reject;      /* index into r, or -1 */
	bool reject_final; /* retrying cannot change the refusal: a dead
	                      letter at once (the worker clears it before each
	                      apply) */
	char reason[200];
	/* set by a sink's apply on FL_OK (the worker clears it before each
	 * apply): records applied whose state the sink held a newer version
	 * of, so kept its own (pg_sink.c invariant 7) */
	size_t older;
} fl_batch;

void fl_batch_init(fl_batch *b);
/* Copies rec (key, payload, raw) into the batch. */
int fl_batch_add(fl_batch *b, const shm_log_rec *rec);
/* Removes r[i], keeping order (its bytes stay until fl_batch_clear). */
void fl_batch_remove(fl_batch *b, size_t i);
void fl_batch_clear(fl_batch *b);
void fl_batch_free(fl_batch *b);
/* Marks superseded every record followed, later in the batch, by one of the
 * same class and key (messages by id; statics, graph and marks by website +
 * object). Each MSG_* and STATIC_* payload is the full new state, so the
 * last one wins; order between different keys is kept. The record kept for
 * a key gets, in first_op, the op of that key's first record. ENOMEM or 0:
 * a batch not coalesced must not be applied (PostgreSQL's upsert refuses
 * two rows of one key in a statement). */
int fl_batch_coalesce(fl_batch *b);

/* Key class of an op for coalescing: 'M' msg, 'S' static, 'G' graph,
 * 'K' mark, 0 unknown. */
int fl_op_class(int op);

/* ------------------------------------------------------------- sinks */

enum fl_result {
	FL_OK = 0,
	FL_TRANSIENT, /* connection, timeout, server error: retry the batch */
	FL_REJECT     /* the data was refused: find the poison record */
};

typedef struct fl_sink fl_sink;
typedef struct fl_sink_ops {
	const char *name; /* "redis", "pg": meta "sink.<name>.applied" */
	/* The meta a write-through writer sets, in its write's transaction,
	 * to the last record it waits for this sink to apply (worker.c
	 * invariant 5); NULL: no writer waits for this sink. */
	const char *awaited;
	/* Connects if not connected. FL_OK or FL_TRANSIENT (errmsg says why). */
	int (*connect)(fl_sink *s);
	/* The sink's own durable position, if it keeps one (PostgreSQL):
	 * 1 and *pos, 0 if it keeps none, -1 on error (transient). */
	int (*position)(fl_sink *s, uint64_t *pos);
	/* The sink's position was found past the worker's, at from: does
	 * again, for the records (from, pos], what apply does after its
	 * COMMIT (the worker was killed in between, or the COMMIT's answer
	 * was lost). NULL: nothing follows a COMMIT. */
	void (*caught_up)(fl_sink *s, uint64_t from, uint64_t pos);
	/* Applies b->r[] and moves the sink's position from b->from to
	 * b->upto. FL_OK, FL_TRANSIENT, or FL_REJECT (b->reject and
	 * b->reason set if one record is known to be the culprit). */
	int (*apply)(fl_sink *s, fl_batch *b);
	void (*disconnect)(fl_sink *s);
	void (*destroy)(fl_sink *s);
} fl_sink_ops;

struct fl_sink {
	const fl_sink_ops *ops;
	const fl_config *cfg;
	shm_env *env;
	char env_id[64];
	/* the last error, for logs and dead letters: one line, shown
	 * printably (fl_sink_seterr) */
	char errmsg[SHM__SHOWN_LONG_MAX];
	/* errmsg as a dead letter keeps it (shm_dead's reason: 239 bytes),
	 * its most useful parts first, when the sink builds one (PostgreSQL's
	 * refusals); "": errmsg, cut. Cleared by fl_sink_seterr. */
	char dead_reason[sizeof ((shm_dead *)0)->reason];
	/* Called by the worker, on its thread, after each applied batch (NULL:
	 * none): the invalidation publisher on the Redis sink (invalidate.h). */
	void (*on_applied)(void *user, const fl_batch *b);
	void *on_applied_user;
};

/* Constructors; NULL on allocation failure. */
fl_sink *fl_redis_sink_new(const fl_config *cfg, shm_env *env);
fl_sink *fl_pg_sink_new(const fl_config *cfg, shm_env *env,
                        const char *env_id, const char *env_uuid);
/* The PostgreSQL sink's upsert kept a row soft-deleted (pg_deleted.c):
 * names the first message of b, in log order, whose state PostgreSQL holds
 * deleted, as a final reject (FL_REJECT, b->reject, b->reason, s->errmsg),
 * and puts PostgreSQL's row back into L1 (s->env); FL_REJECT without a
 * culprit if none is found, FL_TRANSIENT if the query fails. c: s's
 * connection, outside any transaction. */
int fl_pg_kept_deleted(fl_sink *s, struct pg_conn *c, fl_batch *b);
/* The PostgreSQL sink's upsert kept rows newer than b's records of them
 * (pg_newer.c): older, the upsert's result, names them (a row per id
 * with the record's updated_at and the row's; a row with a NULL id is none);
 * PostgreSQL's rows of them, read now, are put back into L1 (s->env),
 * each said at INFO. *n: how many the result names. 0, or -1 (errmsg
 * says why) if the rows could not be read: none was put back. c: s's
 * connection, after the batch's COMMIT. */
int fl_pg_newer(fl_sink *s, struct pg_conn *c, const fl_batch *b,
                const struct pg_result *older, size_t *n);
/* Records (from, upto] were committed without fl_pg_newer's follow-up
 * (pg_newer.c invariant 4): every message they write whose PostgreSQL row
 * is newer than the one L1 holds has that row put back into L1. c: s's
 * connection, outside any transaction. */
void fl_pg_newer_again(fl_sink *s, struct pg_conn *c, uint64_t from,
                       uint64_t upto);
/* A refusal's dead letter reason (pg_reason.c) into out (size bytes, NUL
 * included): what failed, then res's fields by usefulness; out unchanged
 * if res has no primary message. */
void fl_pg_refusal_reason(char *out, size_t size, const struct pg_result *res,
                          const char *what, const char *state);
/* s->errmsg: the text, which quotes servers' (a PostgreSQL error's lines, a
 * Redis error reply), on one line and shown printably (text.h). */
void fl_sink_seterr(fl_sink *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Value as written to Redis: JSON (or static content) as is, or an LZ4
 * frame when longer than threshold. *out is malloc'd (free) or points to
 * data itself when not compressed (*owned = false). */
int fl_lz4_maybe(const void *data, size_t len, size_t threshold,
                 const void **out, size_t *out_len, bool *owned);

/* PostgreSQL COPY text escaping: appends s (len bytes) to the buffer. */
/* A thread's stop flag read under its lock, and a sleep of ms that a
 * signal on cond (CLOCK_MONOTONIC) with *stop set cuts short (worker.c). */
bool fl_stopped(pthread_mutex_t *lock, const bool *stop);
/* CLOCK_MONOTONIC in milliseconds: deadlines, intervals, backoffs. */
uint64_t fl_mono_ms(void);
void fl_nap(pthread_mutex_t *lock, pthread_cond_t *cond, const bool *stop,
            uint64_t ms);

typedef struct fl_buf {
	char *p;
	size_t len, cap;
} fl_buf;
int fl_buf_reserve(fl_buf *b, size_t more);
int fl_buf_add(fl_buf *b, const void *s, size_t len);
int fl_buf_adds(fl_buf *b, const char *s);
/* v in decimal, between pre and post (without printf: for per-record use) */
int fl_buf_add_int(fl_buf *b, const char *pre, int64_t v, const char *post);
int fl_buf_addf(fl_buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
int fl_buf_copy_field(fl_buf *b, const char *s, size_t len); /* escaped */
void fl_buf_free(fl_buf *b);

/* Splits "TYPE/ID" at the last '/': *type_len bytes of type, then id. */
bool fl_object_split(const char *obj, size_t len, size_t *type_len);
/* An object id (len bytes) of the UUID form put in lower case, in place;
 * any other id is left as it is: libshm's canonical form (graph.c invariant
 * 5), for records and peers older than it. PostgreSQL gets ids this way:
 * Osuny's connections hold uuid columns, and a UUID has no case. */
void fl_object_id_canon(char *id, size_t len);

/* ------------------------------------------------------------ workers */

typedef struct fl_stats {
	uint64_t batches, rows, retries, errors, dead, reconnects;
	uint64_t superseded;    /* records the sink held newer (fl_batch) */
	uint64_t applied;       /* mirrors meta sink.<name>.applied */
	uint64_t last_batch_us; /* duration of the last batch */
} fl_stats;

typedef struct fl_worker fl_worker;

/* The signal a worker sends the thread given to fl_worker_start when it is
 * done; that thread keeps it blocked and takes it with sigtimedwait. */
#define FL_SIG_DONE SIGUSR1

/* Starts a worker thread for sink (the worker owns it from now on, even on
 * failure). once: apply up to once_upto, then stop. notify: a thread sent
 * FL_SIG_DONE when the worker is done, or NULL. */
int fl_worker_start(fl_worker **out, fl_sink *sink, shm_env *env,
                    const fl_config *cfg, bool once, uint64_t once_upto,
                    const pthread_t *notify);
/* Asks the worker to finish its batch in flight and stop. */
void fl_worker_stop(fl_worker *w);
bool fl_worker_done(fl_worker *w);
/* Joins; returns 0 if the worker reached its goal (--once) or was stopped,
 * non-zero if it gave up (--once, sink unreachable). Frees w and its sink. */
int fl_worker_join(fl_worker *w);
const char *fl_worker_name(const fl_worker *w);
/* The sink's applied position (atomic read). */
uint64_t fl_worker_applied(fl_worker *w);
void fl_worker_stats(fl_worker *w, fl_stats *out);

/* -------------------------------------------------------------- daemon */

/* Exit codes of shm-flusher (and fl_main). */
enum {
	FL_EXIT_OK = 0,
	FL_EXIT_ENV = 1,      /* environment cannot be opened or is locked */
	FL_EXIT_USAGE = 2,    /* bad option, value or config file (2, as
	                         every tool's usage error) */
	FL_EXIT_SINK = 3,     /* --once: a sink could not be drained */
	FL_EXIT_WRITE = 70    /* --help, --version, --print-config: stdout
	                       * not all written (tools/close_stdout.h's) */
};

/* The whole daemon: parse, lock, open, run until SIGTERM/SIGINT (or, with
 * --once, until drained). Installs its signal handling for SIGTERM, SIGINT
 * and SIGHUP. Returns an exit code. */
int fl_main(int argc, char **argv);

/* Takes DIR/flusher.lock (flock), in a DIR that exists: it makes no
 * directory. -1 with err set if another holds it, or DIR is not there. */
int fl_lock_env(const char *dir, int *fd, char *err, size_t errlen);

/* The environment's own UUID, kept in meta "flusher.env_id.hi/lo" and
 * created on first use: it tells environments apart in shm_sink_positions
 * even when an env-id is given. */
int fl_env_uuid(shm_env *env, char out[37]);
/* The id this environment uses in shm_sink_positions: env-id, or when that
 * is empty the environment's UUID. */
int fl_env_id(shm_env *env, const fl_config *cfg, char out[64]);

#endif /* FL_H */
