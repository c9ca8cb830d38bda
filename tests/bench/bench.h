/*
 * bench.h - shm-bench: what the sections share (registry, measurements,
 * targets, worker processes, throwaway servers, the message data set).
 *
 * A section is one file tests/bench/bench_<name>.c defining
 * `int bench_section_<name>(bench_ctx *ctx)` and one line in
 * BENCH_SECTIONS below; `--only a,b` selects sections by name. A section
 * records measurements with bench_measure()/bench_result_add() and
 * declares targets with bench_target(); main prints them all at the end,
 * computes ratios between measurements (even across sections) and checks
 * the targets. With --rounds N (default 3) every section runs N times in
 * turn; ctx->round says which. A section too slow or too stateful to repeat
 * returns 0 at once when ctx->round > 0 (its first round's results stand).
 *
 * Conventions
 *  1. Latencies are nanoseconds, from CLOCK_MONOTONIC around each op; every
 *     sample is kept, p50/p99 are nearest-rank percentiles of the sorted
 *     samples (not histogram buckets, not averages).
 *  2. With --rounds N every section runs N times in turn (redis, l1,
 *     redis, l1...) and the samples of a measurement are merged, so slow
 *     phases of a noisy machine hit both sides of a ratio alike.
 *  3. ratio = p50(ratio_vs) / p50(this): how many times faster this is than
 *     the measurement it is compared with (> 1: faster).
 *  4. Everything lives under one temp dir (ctx->tmpdir), removed at exit,
 *     on error and on SIGINT/SIGTERM/SIGHUP; servers and workers die with
 *     the bench (PR_SET_PDEATHSIG).
 */
#ifndef SHM_BENCH_H
#define SHM_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <libpq-fe.h>

#include "shm.h"

/* X(name, description): the section registry, in run order. */
#define BENCH_SECTIONS(X)                                                      \
	X(redis, "Redis GET/SET of the messages' JSON over a unix socket "     \
	         "(hiredis, one request at a time), 1 and 2 processes")        \
	X(l1, "L1 get (copy; zero-copy view) and put with its log record "     \
	      "(nosync), 1 and 2 processes")                                  \
	X(pg, "PostgreSQL SELECT of one message by id, 1 and 2 processes "    \
	      "(the read path's third level)")                                 \
	X(cleanup, "connection cleanup: grouped per website and direct "       \
	           "source vs one check per connection (PostgreSQL)")          \
	X(flusher, "shm-flusher draining 100,000 messages into Redis + "       \
	           "PostgreSQL vs the seed's way; L1 -> PostgreSQL lag")       \
	X(statics, "static hit vs regeneration vs Redis GET; reference "       \
	           "busting vs busting dependencies on an Osuny-like site")    \
	X(through, "write-through puts one at a time with shm-flusher's "      \
	           "default batches vs one PostgreSQL transaction")

typedef struct bench_ctx bench_ctx;

#define BENCH__SECTION_DECL(name, desc) int bench_section_##name(bench_ctx *ctx);
BENCH_SECTIONS(BENCH__SECTION_DECL)
#undef BENCH__SECTION_DECL

/* ------------------------------------------------------------ data set */

/* One message of the data set, its strings owned by the data set. */
typedef struct bench_item {
	shm_msg m;      /* id and created_at set: ready for put or JSON */
	char *json;     /* shm_msg_to_json(m), as the flusher writes to Redis */
	size_t json_len;
	char key[48];   /* "msg:<uuid>" */
} bench_item;

typedef struct bench_dataset {
	bench_item *items;
	size_t n;
	void *arena;    /* owns every string and array the items point to */
} bench_dataset;

/* Builds n chat-like messages (rooms, 20-400 byte contents with some
 * non-ASCII text, mentions, reactions, attachments, some replies to earlier
 * messages of the set, in their room and thread). Deterministic for a given seed, except the ids
 * (UUIDv7). Returns 0 or -1 (message on stderr). */
int bench_dataset_make(bench_dataset *ds, size_t n, uint64_t seed);
void bench_dataset_free(bench_dataset *ds);

/* ------------------------------------------------------------- context */

struct bench_ctx {
	bool quick;
	int rounds;             /* the sections run this many times, in turn */
	int round;              /* 0..rounds-1 */
	bool json;
	bool verbose;
	uint64_t seed;
	char tmpdir[256];       /* removed at exit unless keep */
	bool keep;
	bench_dataset ds;       /* shared read set (the "hot" messages) */
	bool ds_ready;
	pid_t redis_pid;        /* 0 until bench_redis() starts it */
	char redis_sock[300];
	bool redis_loaded;      /* the data set's JSON is SET in Redis */
};

/* Scales a full-run count down for --quick. */
size_t bench_n(const bench_ctx *ctx, size_t full, size_t quick);

/* The shared data set, built on first use (n depends on --quick). */
bench_dataset *bench_data(bench_ctx *ctx);

/* A path under the temp dir; out must hold 300 bytes. */
void bench_path(const bench_ctx *ctx, const char *name, char *out);

/* ---------------------------------------------------------- redis-server */

/* Starts redis-server (no persistence) on a unix socket under the temp dir on
 * first call, waits until it answers PING. Returns its socket path or NULL
 * (message on stderr). Stopped by bench_cleanup(). */
const char *bench_redis(bench_ctx *ctx);

/* ------------------------------------------------------------ PostgreSQL */
/* The bench's PostgreSQL (bench_pgserver.c): SHM_BENCH_PG, or a throwaway
 * cluster started on first call; sql/schema.sql applied. Returns a conninfo
 * or NULL (message on stderr). Stopped by bench_cleanup(). */
const char *bench_pg(bench_ctx *ctx);
void bench_pg_stop(void);

/* ------------------------------------------------------------ measuring */

uint64_t bench_now_ns(void);

/*
 * One timed op. state is what setup returned in this worker process; i is
 * the op index within this worker (0..ops-1). Returns 0, or non-zero to
 * abort the measurement (the worker prints why).
 */
typedef int (*bench_op_fn)(void *state, size_t i);

typedef struct bench_job {
	const char *name;       /* measurement name, e.g. "l1.get.copy.1p" */
	int procs;              /* worker processes, forked, run in parallel */
	size_t ops;             /* timed ops per worker */
	size_t warmup;          /* untimed ops per worker first (i continues) */
	/* In the worker, after fork: open its own handles. proc = 0..procs-1.
	 * Returns 0 and *state, or non-zero. */
	int (*setup)(void *arg, int proc, void **state);
	bench_op_fn op;
	void (*teardown)(void *state);
	void *arg;
	const char *ratio_vs;   /* compared measurement's name, or NULL */
	const char *note;       /* one line for the table, or NULL */
} bench_job;

/* A finished measurement. */
typedef struct bench_result {
	char name[64];
	int procs;
	uint64_t n;             /* samples */
	uint64_t p50, p99, max; /* ns */
	double ops_per_s;       /* all workers together, wall clock */
	char ratio_vs[64];      /* "" if none */
	double ratio;           /* filled by main at the end; 0 if unknown */
	char note[96];
	char section[24];
	int rounds;             /* runs merged into this result */
	double wall_s;          /* summed over rounds */
	uint64_t *samples;      /* every sample of every round, sorted */
} bench_result;

/*
 * Forks job->procs workers (each runs setup, warmup, then ops timed ops,
 * all starting together after a barrier), collects every sample through a
 * shared mapping, records the result. Returns 0 or -1 (message on stderr).
 */
int bench_measure(bench_ctx *ctx, const bench_job *job);

/* Records a result computed by a section itself. With --rounds, a name
 * seen before gets the new samples merged in (percentiles over all of
 * them, ops/s over the summed wall time). Returns the stored result. */
bench_result *bench_result_add(bench_ctx *ctx, const char *name, int procs,
                               uint64_t *samples, size_t n, double wall_s,
                               const char *ratio_vs, const char *note);

/* Kinds of targets checked at the end. */
typedef enum bench_target_kind {
	BENCH_P50_MAX_NS,   /* p50 <= value */
	BENCH_P99_MAX_NS,   /* p99 <= value */
	BENCH_RATIO_MIN,    /* ratio (vs its ratio_vs) >= value */
	BENCH_RATIO_ABOVE,  /* ratio > value */
	BENCH_OPS_MIN       /* ops_per_s >= value */
} bench_target_kind;

/* Declares a target on a measurement (checked after every section ran;
 * "n/a" if the measurement or its comparison is missing). */
void bench_target(const char *measurement, bench_target_kind kind,
                  double value, const char *source);

/* Progress and notes on stderr (never on stdout: stdout is the table or
 * the JSON lines). */
void bench_log(const bench_ctx *ctx, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Removes path and everything below it (environments between rounds). */
void bench_rm_rf(const char *path);
/* Runs sql on c; -1 (and the server's message on stderr) unless it
 * succeeded. */
int bench_pg_exec(PGconn *c, const char *sql);
/* sql/schema.sql from $SHM_TOP, the binary's ../.. (the tree), its
 * ../share/shm (installed) or the cwd; malloc'd, NULL if not found. */
char *bench_schema_sql(void);

/* Removes the temp dir and stops servers; safe to call twice. */
void bench_cleanup(bench_ctx *ctx);

#endif /* SHM_BENCH_H */
