/*
 * flusher/cleanup.h - the grouped connection cleanup (issue 5): Osuny's
 * communication_website_connections kept equal, for every direct source
 * touched by a mark, to the indirect objects among its recursive
 * dependencies.
 *
 * One round (fl_cleanup_round):
 *   SELECT DISTINCT website_id FROM shm_marks           -- one task each
 *   per website, in one transaction (a failure rolls back that website only,
 *   its marks stay for the next round, the other websites go on):
 *     pg_advisory_xact_lock(FL_CLEANUP_LOCK, hashtext(website::text))
 *     snapshot the marks (INSERT INTO a temp table ... RETURNING them)
 *     the university new connections take
 *     the sources of connections touching a marked object (as source or
 *       as indirect object), through the indexes of Osuny's table
 *     the website's graph, ONE indexed statement (shm_objects + shm_edges
 *       WHERE website_id = $1, their primary keys' first column), walked
 *       in C: backwards from the marks, every direct object reached
 *       through indirect ones (the marked direct ones included) is a
 *       source too. The website ("Communication::Website/<id>", whose edge
 *       is its about) is one like any other. Direct means libshm's rule:
 *       every website object (SHM_WEBSITE_TYPE, any id, whatever its
 *       shm_objects row says), and the objects declared direct.
 *     per chunk of CHUNK (200) sources of one type, ONE statement: each
 *       source's recursive dependencies are walked once in C (forward,
 *       through indirect objects, stopping at direct ones, cycles cut:
 *       libshm's shm_deps_recursive) and sent as arrays (keep-lists); the
 *       statement deletes each source's useless connections (object not
 *       kept, or a duplicate of a kept row) and inserts the missing ones
 *     DELETE the marks snapshotted (exact object, seq and time)
 *   COMMIT
 *
 * Uniqueness of (website, direct source, indirect object) without a unique
 * index on Osuny's table: every writer of connections for a website (this
 * module, and whoever follows the same rule) takes the transaction-scoped
 * advisory lock (FL_CLEANUP_LOCK, hashtext(website_id::text)) first; under
 * it, INSERT ... WHERE NOT EXISTS cannot race with another insert or with a
 * cleanup's DELETE of the same website, and the DELETE also removes any
 * duplicate it finds (keeping the smallest id), so the table converges even
 * if a writer that ignores the lock added one.
 *
 * Invariants
 *  1. A mark is cleared only in the transaction that handled it; a mark
 *     written (or re-written, with a higher seq) during a round survives it.
 *  2. After a successful round, for every direct source S handled:
 *     connections(S) = { (S, o) : o in recursive_deps(S), o indirect, o's id
 *     a UUID }, each once.
 *  3. A website with no marks is not read, locked nor written.
 */
#ifndef FL_CLEANUP_H
#define FL_CLEANUP_H

#include <stdbool.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "fl.h"

/* First key of the per-website advisory lock ("shmc"); the second is
 * hashtext(website_id::text). */
#define FL_CLEANUP_LOCK 0x73686d63

typedef struct fl_cleanup_stats {
	uint64_t websites;        /* websites with marks, attempted (or left
	                           * when the connection was lost) */
	uint64_t websites_failed; /* rolled back or left, still marked */
	uint64_t sources;         /* direct sources handled */
	uint64_t statements;      /* SQL statements sent (BEGIN/COMMIT too) */
	uint64_t dep_loads;       /* recursive dependency loads */
	uint64_t deleted;         /* useless connections deleted */
	uint64_t inserted;        /* missing connections inserted */
	uint64_t marks_cleared;
	uint64_t duration_us;
} fl_cleanup_stats;

/*
 * Runs one round on an open connection (session settings are the caller's).
 * Returns 0 if the round ran (st says how; st->websites_failed may be > 0),
 * -1 if it could not even list the marked websites (err says why).
 */
int fl_cleanup_round(PGconn *pg, fl_cleanup_stats *st, char *err,
                     size_t errlen);

/* One website (a UUID in text, either case: the lock takes its canonical
 * text) in its own transaction; 0 or -1 (err). Adds to st; on failure the
 * transaction is rolled back and marks stay. */
int fl_cleanup_website(PGconn *pg, const char *website, fl_cleanup_stats *st,
                       char *err, size_t errlen);

/*
 * The old way, for comparison (shm-bench) and as a second implementation
 * of the same rule (test_cleanup: on shm-dataset's websites it deletes
 * exactly what fl_cleanup_round deletes): every connection touching a
 * concerned direct source (found by a recursive SQL query, not by the
 * round's walk in C) checks itself, reloading its source's recursive
 * dependencies (in SQL), and deletes itself if obsolete; then the marks
 * are cleared. One transaction per website, no inserts.
 */
int fl_cleanup_round_per_connection(PGconn *pg, fl_cleanup_stats *st,
                                    char *err, size_t errlen);

/*
 * Immediate upserts (issue 5 §2): when objects of website change (GRAPH_SET
 * of types[i]/ids[i], i < n), every direct source among them or reaching
 * one of them through indirect objects gets a connection to each indirect
 * object (UUID id) among its recursive dependencies, inserted WHERE NOT
 * EXISTS under pg_advisory_xact_lock(FL_CLEANUP_LOCK,
 * hashtext(website::text)): call it inside a transaction. Reads the
 * website's graph once (one indexed statement), walks it in C, one INSERT
 * per CHUNK sources. Never deletes (useless connections are the
 * cleanup's, through the marks).
 * Without a university for the website (shm_websites, or an existing
 * connection) it adds nothing. *inserted (if not NULL) is added to.
 */
int fl_connections_refresh(PGconn *pg, const char *website,
                           const char *const *types, const char *const *ids,
                           size_t n, uint64_t *inserted, char *err,
                           size_t errlen);

/* The pg sink's hook: the objects a batch's GRAPH_SETs declare, by
 * website (*out NULL if none; -1: out of memory). In the batch's
 * transaction, fl_refresh_lock_sql's statement (the websites' advisory
 * locks, in hash order) goes before any shared row is written, so a
 * cleanup holding a website's lock never waits for the batch (no
 * deadlock), then fl_refresh_run after the graph rows, before COMMIT. */
typedef struct fl_refresh fl_refresh;
int fl_refresh_collect(const fl_batch *b, fl_refresh **out);
int fl_refresh_lock_sql(const fl_refresh *r, fl_buf *sql);
int fl_refresh_run(PGconn *pg, const fl_refresh *r, uint64_t *inserted,
                   char *err, size_t errlen);
void fl_refresh_free(fl_refresh *r);

/* Connects with cfg's conninfo and timeouts (named shm-flusher-cleanup
 * unless the user names it: fl_pg_connect); NULL with err set on failure. */
PGconn *fl_cleanup_connect(const fl_config *cfg, char *err, size_t errlen);

/* Logs st and stores it in meta as cleanup.* (last round, and cumulative
 * totals) for shmctl stat. */
void fl_cleanup_report(shm_env *env, const fl_cleanup_stats *st);

/* shm-flusher --cleanup-now (cfg has a --pg: loop.c checks): connect, one
 * round, report. Exit code:
 * FL_EXIT_OK, or FL_EXIT_SINK if PostgreSQL is unreachable or a website
 * failed. */
int fl_cleanup_now(const fl_config *cfg, shm_env *env);

/*
 * The daemon's scheduler, called from the main loop about every second:
 * starts a round in a thread of its own when cfg->cleanup_interval_s has
 * passed since the last one started (0 = never) and none is running.
 * fl_cleanup_shutdown asks a running round to stop after its current
 * website and joins it.
 */
void fl_cleanup_tick(const fl_config *cfg, shm_env *env);
void fl_cleanup_shutdown(void);

#endif /* FL_CLEANUP_H */
