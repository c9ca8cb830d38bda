/*
 * flusher/cleanup_internal.h - what the connection cleanup's files share,
 * beyond cleanup.h (its callers' header): fl_cleanup__ names, for those
 * files only. Each is described where it is defined.
 *
 *   cleanup.c           the round: a website's transaction, the marked
 *                       websites, connect and report, the scheduler; the
 *                       statement helpers and the marks' statements
 *   cleanup_graph.c     a website's graph in C, its walks, keep-lists
 *   cleanup_refresh.c   immediate upserts, for the pg sink
 *   cleanup_baseline.c  the old way, one check per connection
 */
#ifndef FL_CLEANUP_INTERNAL_H
#define FL_CLEANUP_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "cleanup.h"

/* A UUID, either case (with ~*), as an SQL literal */
#define UUID_RE "'^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'"

/* Direct sources per statement: bounds one statement's size, keeps the
 * statements proportional to the sources handled. */
#define CHUNK 200

/* -------------------------------------- statements, marks (cleanup.c) */

extern const char *const fl_cleanup__marks_tmp_sql;
extern const char *const fl_cleanup__marks_snap_sql;
extern const char *const fl_cleanup__marks_clear_sql;
extern const char *const fl_cleanup__university_sql;

uint64_t fl_cleanup__now_us(void);
PGresult *fl_cleanup__run(PGconn *pg, fl_cleanup_stats *st, const char *sql,
                          int n, const char *const *params, const char *what,
                          char *err, size_t errlen);
int fl_cleanup__run_cmd(PGconn *pg, fl_cleanup_stats *st, const char *sql,
                        int n, const char *const *params, const char *what,
                        char *err, size_t errlen);
void fl_cleanup__rollback(PGconn *pg, fl_cleanup_stats *st);
int fl_cleanup__marked_websites(PGconn *pg, fl_cleanup_stats *st,
                                char ***out, int *n, char *err,
                                size_t errlen);

/* --------------------------- a website's graph in C (cleanup_graph.c) */

/*
 * One website's graph, read with one indexed statement (shm_objects and
 * shm_edges by their primary keys' first column, website_id): every object
 * declared or met as an edge end or a mark, with its direct flag and its
 * edges both ways (CSR). Walks here have libshm/graph.c's semantics:
 * forward from a source, every object reached is included, indirect ones
 * are expanded, direct ones are not, each object once (cycles cut), the
 * start expanded and never included.
 */
typedef struct gnode {
	const char *type, *id; /* into the PGresult, or the marks' one */
	bool direct;
	bool source;           /* a direct source to handle */
	uint32_t seen;         /* walk epoch */
	uint32_t out, nout;    /* into g->out_e */
	uint32_t in, nin;      /* into g->in_e */
} gnode;

typedef struct graph {
	gnode *n;
	uint32_t nn, cap;
	uint32_t *slot;        /* hash table: node index + 1, 0 = free */
	uint32_t nslot;        /* a power of 2 */
	uint32_t *out_e, *in_e;
	uint32_t *queue;
	uint32_t epoch;
	PGresult *res;         /* the graph's rows (the strings above) */
} graph;

/* Keep arrays of one chunk. */
typedef struct keep_bufs {
	fl_buf src, ks, kst, kt, ki;
} keep_bufs;

void fl_cleanup__graph_free(graph *g);
uint32_t fl_cleanup__graph_node(graph *g, const char *type, const char *id,
                                bool add);
int fl_cleanup__graph_load(PGconn *pg, const char *website, graph *g,
                           fl_cleanup_stats *st, char *err, size_t errlen);
int fl_cleanup__graph_index(graph *g, char *err, size_t errlen);
void fl_cleanup__walk_back_to_sources(graph *g, uint32_t n);
uint32_t *fl_cleanup__sources_of(graph *g, uint32_t *n);
long fl_cleanup__keep_of(graph *g, uint32_t s, fl_buf *ks, fl_buf *kst,
                         fl_buf *kt, fl_buf *ki);
int fl_cleanup__arr_add(fl_buf *b, const char *s);
void fl_cleanup__keep_free(keep_bufs *k);
int fl_cleanup__keep_start(keep_bufs *k);
int fl_cleanup__keep_end(keep_bufs *k);

#endif /* FL_CLEANUP_INTERNAL_H */
