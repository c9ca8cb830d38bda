/*
 * flusher/pg_sink.c - the PostgreSQL (L3) sink: one transaction per batch,
 * exactly once.
 *
 * A batch, coalesced (the last state of each key wins, in log order):
 *
 *   BEGIN;
 *   UPDATE shm_sink_positions SET applied = <upto>
 *     WHERE env_id = <env> AND sink = 'pg' AND applied = <from>;  -- 1 row
 *   COPY shm_stage_msg / _obj / _edge / _mark FROM STDIN;  -- those in use
 *   COPY messages FROM STDIN;  -- the new messages, streamed as built
 *   (messages in COPY's binary format: no escaping, no text parsing of
 *   uuids, timestamps and integers in the backend)
 *   graph: (with GRAPH_SETs: the websites' connection advisory locks
 *          first) drop the edges of every object touched, and the incoming
 *          edges of dropped objects; upsert objects; insert the new edges
 *   INSERT INTO shm_marks ... ON CONFLICT DO UPDATE;
 *   INSERT INTO messages SELECT ... FROM shm_stage_msg ORDER BY seq
 *     ON CONFLICT (id) DO UPDATE SET <every column> WHERE <not a soft
 *     delete undone> AND <not older> (invariants 6, 7);
 *   with GRAPH_SETs: the changed direct sources' connections upserted
 *     (fl_refresh_run, cleanup.h: one graph read per website);
 *   COMMIT;
 *
 * Invariants
 *  1. The position row moves in the same transaction as the rows, and only
 *     from the position the flusher believes in: a batch commits at most
 *     once, and a flusher that lost track (killed after COMMIT, connection
 *     lost during COMMIT, a second flusher) sees 0 rows updated, rolls back
 *     and re-reads the position (ops->position) before going on.
 *  2. A message's columns hold what the JSON Redis receives says, and
 *     metadata is written by the same code as that JSON's own object
 *     (shm_msg_metadata_json_append), so L2 and L3 agree.
 *  3. An edge Y -> X set earlier in a batch than a GRAPH_DROP of X is not
 *     inserted (the drop removed it in L1); edges set after the drop are.
 *  4. A message whose first record in the batch is MSG_PUT is presumed new
 *     and COPYed straight into messages (no staging table, no ON CONFLICT:
 *     half the backend's work). If one is not (23505 on the primary key),
 *     the whole transaction is rolled back and the batch applied again with
 *     every message upserted, as are the next DIRECT_PAUSE batches. Each
 *     key has one row in a batch (coalesced), so rows of different keys
 *     commute and the two ways leave the same table.
 *  5. Of those, a message whose metadata JSON is the writer's JSON of
 *     default metadata is COPYed without the metadata column, the others in
 *     a second COPY with it: PostgreSQL fills in the column's default, a
 *     jsonb it parsed once, instead of parsing the same text on every row
 *     (COPY of 100,000 such rows: 0.42 -> 0.30 s). Only while that default is the
 *     same jsonb: the transaction locks messages (no ALTER until COMMIT) and
 *     then checks it, before the first row; if it differs (a table without
 *     sql/schema.sql's default) the batch is rolled back and applied again
 *     with every column, as is every batch until the next connection.
 *
 *  6. A soft delete is final in PostgreSQL too: the upsert writes a row it
 *     holds soft-deleted (message_type Delete) only with another deleted
 *     state (its metadata may change). A put of a deleted id that L1 did
 *     not hold (evicted, another host's L1), or a later edit or reaction
 *     of that put, is not written; MSG_SQL then aborts the transaction,
 *     and the first such record is set aside as a dead letter at once
 *     (pg_deleted.c: retrying cannot change it; a row missing for another
 *     reason is a refusal without a culprit), the batch applied again
 *     without it: the rest of the batch commits once, the position moves
 *     past it. PostgreSQL's row is put back into L1, whose log carries it
 *     to Redis and to the other hosts' L1 like any write, so that they
 *     too stop showing the message as it was before its delete. The
 *     direct COPY never meets such a row: an existing id is 23505, and
 *     the batch goes by the upsert (invariant 4).
 *  7. The newer version wins (updated_at, the message's version: libshm
 *     msg.c invariant 10; NULL is the oldest): the upsert writes a state
 *     only over a row whose updated_at is not later (equal applies: a
 *     replay is idempotent), but a delete, which is final (6) whatever
 *     its time. An older one is no error: the batch commits, its record
 *     counts as applied (the position moves past it, once), counted in
 *     b->older; the same statement returns the ids so refused, and after
 *     COMMIT PostgreSQL's rows of them are put back into L1 (pg_newer.c),
 *     whose log takes them to Redis and the other hosts, as invariant 6
 *     does. A row refused both ways (kept deleted) goes by invariant 6.
 *     The direct COPY never meets an existing row (4). Batches without an
 *     older version take no extra round trip. A COMMIT whose put-back
 *     never came (killed, answer lost) has it done when the position is
 *     next read (ops->caught_up, pg_newer.c invariant 4).
 *
 * Errors: SQLSTATE classes 22 (data exception), 23 (integrity) and 54
 * (program limit) are FL_REJECT (the worker then isolates the record by
 * replaying the batch in halves down to one record); everything else, a lost
 * connection included, is FL_TRANSIENT. A refusal's dead letter keeps its
 * most useful fields first (pg_reason.c): the letter holds 239 bytes.
 */
#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fl.h"
#include "cleanup.h"
#include "pg_row.h"

/* staging table groups (stage_ddl) */
enum { ST_GRAPH, ST_MARK, ST_MSG, ST_N };

/* Invariant 4: batches upserted after a direct COPY met an existing row. */
#define DIRECT_PAUSE 8
/* The direct COPY's rows go to the server in pieces of about this size
 * while the next ones are built, so the backend parses as we format. */
#define STREAM_CHUNK (64 * 1024)
/* p_apply's internal results: the direct COPY met an existing row
 * (invariant 4); messages.metadata's default is not the expected one
 * (invariant 5); the upsert kept a row soft-deleted (invariant 6). */
enum { FL_CONFLICT = FL_REJECT + 1, FL_NO_DEFAULT, FL_KEPT_DELETED };

typedef struct pg_sink {
	fl_sink base;
	PGconn *c;
	char *env_lit;           /* env_id as an SQL literal */
	char env_uuid[37];       /* the environment's own id (fl_env_uuid) */
	bool no_uuid_column;     /* shm_sink_positions predates env_uuid */
	fl_buf msg, obj, edge, mark, sql, prefix;
	fl_buf direct;           /* rows of COPY messages, a chunk at a time */
	fl_buf full;             /* rows with their metadata (invariant 5) */
	fl_buf scratch;          /* a message's metadata JSON */
	char *meta_default;      /* the writer's JSON of default metadata */
	size_t meta_default_len;
	char *default_check;     /* LOCK and check of it (invariant 5) */
	bool omit_default;       /* this connection's default is the same */
	size_t n_msg, n_obj, n_edge, n_mark;
	unsigned direct_pause;   /* batches left to upsert (invariant 4) */
	PGresult *newer;         /* MSG_SQL's older versions (invariant 7) */
	bool staged[ST_N];       /* staging tables of this session */
} pg_sink;

static const char *const setup_sql =
	"SET statement_timeout = %llu;"
	"SET client_min_messages = warning;";

/*
 * Staging tables, created in a session when a batch first needs them (in
 * that batch's transaction, so they count only once it commits): at every
 * commit PostgreSQL empties each ON COMMIT DELETE ROWS table of the session,
 * and a messages-only flusher should pay for one, not four.
 */
static const char *const stage_ddl[ST_N] = {
	"CREATE TEMP TABLE IF NOT EXISTS shm_stage_obj (website_id uuid,"
	" object_type text, object_id text, direct boolean, dropped boolean,"
	" drop_incoming boolean) ON COMMIT DELETE ROWS;"
	"CREATE TEMP TABLE IF NOT EXISTS shm_stage_edge (website_id uuid,"
	" object_type text, object_id text, dep_type text, dep_id text)"
	" ON COMMIT DELETE ROWS;",
	"CREATE TEMP TABLE IF NOT EXISTS shm_stage_mark (website_id uuid,"
	" object_type text, object_id text, reason smallint,"
	" marked_at timestamptz, seq bigint) ON COMMIT DELETE ROWS;",
	"CREATE TEMP TABLE IF NOT EXISTS shm_stage_msg (seq bigint, id uuid,"
	" room_id text, user_id integer, username text, content text,"
	" message_type text, created_at timestamptz, updated_at timestamptz,"
	" metadata jsonb, content_hash text, parent_id uuid, thread_id uuid)"
	" ON COMMIT DELETE ROWS;",
};

static const char *const graph_sql =
	"DELETE FROM shm_edges e USING shm_stage_obj s"
	" WHERE e.website_id = s.website_id AND e.object_type = s.object_type"
	" AND e.object_id = s.object_id;"
	"DELETE FROM shm_edges e USING shm_stage_obj s"
	" WHERE s.drop_incoming AND e.website_id = s.website_id"
	" AND e.dep_type = s.object_type AND e.dep_id = s.object_id;"
	"DELETE FROM shm_objects o USING shm_stage_obj s"
	" WHERE s.dropped AND o.website_id = s.website_id"
	" AND o.object_type = s.object_type AND o.object_id = s.object_id;"
	"INSERT INTO shm_objects (website_id, object_type, object_id, direct,"
	" updated_at) SELECT website_id, object_type, object_id, direct, now()"
	" FROM shm_stage_obj WHERE NOT dropped"
	" ON CONFLICT (website_id, object_type, object_id) DO UPDATE"
	" SET direct = EXCLUDED.direct, updated_at = EXCLUDED.updated_at;"
	"INSERT INTO shm_edges (website_id, object_type, object_id, dep_type,"
	" dep_id) SELECT DISTINCT website_id, object_type, object_id, dep_type,"
	" dep_id FROM shm_stage_edge ON CONFLICT DO NOTHING;";

static const char *const mark_sql =
	"INSERT INTO shm_marks (website_id, object_type, object_id, reason,"
	" marked_at, seq) SELECT website_id, object_type, object_id, reason,"
	" marked_at, seq FROM shm_stage_mark"
	" ON CONFLICT (website_id, object_type, object_id) DO UPDATE"
	" SET reason = EXCLUDED.reason, marked_at = EXCLUDED.marked_at,"
	" seq = EXCLUDED.seq;";

static const char *const msg_cols =
	"seq, id, room_id, user_id, username, content, message_type,"
	" created_at, updated_at, metadata, content_hash, parent_id, thread_id";
#define MSG_COLS_DIRECT 5 /* msg_cols without "seq, " */
/* messages' columns but metadata (invariant 5) */
static const char *const msg_cols_bare =
	"id, room_id, user_id, username, content, message_type, created_at,"
	" updated_at, content_hash, parent_id, thread_id";

/* The staged messages' upsert (invariants 6 and 7): a row PostgreSQL holds
 * soft-deleted ('Delete': shm_msg_type_name) takes only another deleted
 * state, and a row takes no state older than its own (updated_at; NULL is
 * the oldest) but a delete. The rows it did not write are judged against
 * messages as it was before the statement (which a CTE's outer SELECT
 * reads, and only for those: a subquery each, no join of the table): one
 * whose row there is newer and was not kept deleted is an older version,
 * returned (msg_newer, its id and both updated_at); for any other the
 * SELECT divides by zero (SQLSTATE 22012), which aborts the transaction,
 * its COMMIT included. A row with a NULL id is no older version. */
#define MSG_SQL                                                              \
	"WITH up AS (INSERT INTO messages (id, room_id, user_id, username,"  \
	" content, message_type, created_at, updated_at, metadata,"          \
	" content_hash, parent_id, thread_id)"                               \
	" SELECT id, room_id, user_id, username, content, message_type,"     \
	" created_at, updated_at, metadata, content_hash, parent_id,"        \
	" thread_id FROM shm_stage_msg ORDER BY seq"                         \
	" ON CONFLICT (id) DO UPDATE SET room_id = EXCLUDED.room_id,"        \
	" user_id = EXCLUDED.user_id, username = EXCLUDED.username,"         \
	" content = EXCLUDED.content, message_type = EXCLUDED.message_type," \
	" created_at = EXCLUDED.created_at,"                                 \
	" updated_at = EXCLUDED.updated_at, metadata = EXCLUDED.metadata,"   \
	" content_hash = EXCLUDED.content_hash,"                             \
	" parent_id = EXCLUDED.parent_id, thread_id = EXCLUDED.thread_id"    \
	" WHERE (messages.message_type <> 'Delete'"                          \
	" OR EXCLUDED.message_type = 'Delete')"                              \
	" AND ((EXCLUDED.message_type = 'Delete'"                            \
	" AND messages.message_type <> 'Delete')"                            \
	" OR COALESCE(EXCLUDED.updated_at, '-infinity')"                     \
	" >= COALESCE(messages.updated_at, '-infinity')) RETURNING id),"     \
	" refused AS (SELECT s.id, s.message_type AS our_type,"              \
	" s.updated_at AS our_at,"                                           \
	" (SELECT m.message_type FROM messages m WHERE m.id = s.id)"         \
	" AS row_type,"                                                      \
	" (SELECT m.updated_at FROM messages m WHERE m.id = s.id) AS row_at" \
	" FROM shm_stage_msg s"                                              \
	" WHERE NOT EXISTS (SELECT 1 FROM up WHERE up.id = s.id)),"          \
	" judged AS (SELECT *, row_type IS NOT NULL"                         \
	" AND NOT (row_type = 'Delete' AND our_type <> 'Delete')"            \
	" AND COALESCE(row_at, '-infinity')"                                 \
	" > COALESCE(our_at, '-infinity') AS older FROM refused),"           \
	" checked AS (SELECT 1 / (count(*) FILTER (WHERE NOT older) = 0)::int"\
	" AS msg_newer FROM judged)"                                         \
	" SELECT c.msg_newer, j.id, " SHM_PG_UTC("j.our_at") ","             \
	" " SHM_PG_UTC("j.row_at") " FROM checked c"                         \
	" LEFT JOIN judged j ON j.older;"
/* MSG_SQL's division: a row was kept soft-deleted, or not written for
 * another reason than an older version */
#define KEPT_DELETED "22012"

static void p_disconnect(fl_sink *s)
{
	pg_sink *p = (pg_sink *)s;

	if (p->c)
		PQfinish(p->c);
	p->c = NULL;
	if (p->env_lit)
		PQfreemem(p->env_lit);
	p->env_lit = NULL;
	free(p->default_check);
	p->default_check = NULL;
	memset(p->staged, 0, sizeof p->staged);
}

static bool conn_lost(pg_sink *p)
{
	return !p->c || PQstatus(p->c) != CONNECTION_OK;
}

/* A table missing (undefined_table): the schema was never applied here. */
#define NO_TABLE "42P01"
#define NO_TABLE_HINT "apply sql/schema.sql (psql -f) or pass --pg-schema FILE"

/* Classifies a failed result and records the error text. */
static int failure(pg_sink *p, PGresult *res, const char *what)
{
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE)
	                        : NULL;
	const char *msg = res && *PQresultErrorMessage(res)
	                          ? PQresultErrorMessage(res)
	                          : PQerrorMessage(p->c);
	const char *primary = res ? PQresultErrorField(res,
	                                               PG_DIAG_MESSAGE_PRIMARY)
	                          : NULL;
	int rc = FL_TRANSIENT;

	if (state && primary && !strcmp(state, NO_TABLE))
		fl_sink_seterr(&p->base, "%s: %s %s; %s", what, state, primary,
		               NO_TABLE_HINT);
	else
		fl_sink_seterr(&p->base, "%s: %s%s%s", what, state ? state : "",
		               state ? " " : "", msg);
	if (state && !conn_lost(p) &&
	    (!strncmp(state, "22", 2) || !strncmp(state, "23", 2) ||
	     !strncmp(state, "54", 2))) {
		rc = FL_REJECT;
		fl_pg_refusal_reason(p->base.dead_reason,
		                     sizeof p->base.dead_reason, res, what,
		                     state);
	}
	if (res)
		PQclear(res);
	if (conn_lost(p))
		p_disconnect(&p->base);
	return rc;
}

/* Runs sql (one or several statements) expecting no rows. */
static int exec(pg_sink *p, const char *sql, const char *what)
{
	PGresult *res = PQexec(p->c, sql);

	if (!res || (PQresultStatus(res) != PGRES_COMMAND_OK &&
	             PQresultStatus(res) != PGRES_TUPLES_OK))
		return failure(p, res, what);
	PQclear(res);
	return FL_OK;
}

static void rollback(pg_sink *p)
{
	if (!conn_lost(p) && PQtransactionStatus(p->c) != PQTRANS_IDLE) {
		PGresult *res = PQexec(p->c, "ROLLBACK");
		PQclear(res);
	}
}

/* The --pg-schema file, read at each connect: config.c's checks at start
 * hold no longer (the file may have been replaced since). NULL with why. */
static char *read_file(const char *path, char *why, size_t whylen)
{
	FILE *f = fopen(path, "r");
	char *buf = NULL;
	struct stat st;
	long n;

	if (!f) {
		snprintf(why, whylen, "%s", strerror(errno));
		return NULL;
	}
	if (fstat(fileno(f), &st) == 0 && !S_ISREG(st.st_mode)) {
		snprintf(why, whylen, "not a regular file");
		fclose(f);
		return NULL;
	}
	if (fseek(f, 0, SEEK_END) || (n = ftell(f)) < 0 ||
	    fseek(f, 0, SEEK_SET) || !(buf = malloc((size_t)n + 1)) ||
	    fread(buf, 1, (size_t)n, f) != (size_t)n) {
		snprintf(why, whylen, "cannot read");
		free(buf);
		fclose(f);
		return NULL;
	}
	buf[n] = 0;
	fclose(f);
	return buf;
}

/* Applies the --pg-schema file at a connect. A file that cannot be read,
 * or that PostgreSQL refuses, is the user's to fix, and the message says
 * so before the server's text (which may be cut); a connection lost on
 * the way is an outage like any other. */
static int apply_schema_file(pg_sink *p)
{
	const char *path = p->base.cfg->pg_schema;
	char why[256], shown[SHM__SHOWN_MAX], what[SHM__SHOWN_MAX + 96];
	char *schema = read_file(path, why, sizeof why);

	shm__shown_str(path, shown); /* as config.c names it */
	if (!schema) {
		fl_sink_seterr(&p->base, "--pg-schema %s: cannot read it (put "
		               "the file back: it is read at each connect): %s",
		               shown, why);
		return FL_TRANSIENT;
	}
	PGresult *res = PQexec(p->c, schema);
	free(schema);
	if (res && (PQresultStatus(res) == PGRES_COMMAND_OK ||
	            PQresultStatus(res) == PGRES_TUPLES_OK)) {
		PQclear(res);
		return FL_OK;
	}
	bool refused = res && PQresultErrorField(res, PG_DIAG_SQLSTATE) &&
	               !conn_lost(p);
	snprintf(what, sizeof what, refused
	         ? "--pg-schema %s: PostgreSQL refused it (fix the file: it is "
	           "applied at each connect)"
	         : "--pg-schema %s", shown);
	return failure(p, res, what);
}

/* Invariant 5's check, sent before the first row without metadata: the
 * lock keeps the default as checked until COMMIT. One row 't' if
 * messages.metadata's default is the jsonb of lit (an SQL literal). */
static char *default_check_sql(const char *lit)
{
	static const char *const part[] = {
		"LOCK TABLE messages IN ROW EXCLUSIVE MODE;"
		" SELECT pg_get_expr(d.adbin, d.adrelid) = format('%L::jsonb', ",
		"::jsonb::text) FROM pg_attrdef d JOIN pg_attribute a"
		" ON a.attrelid = d.adrelid AND a.attnum = d.adnum"
		" WHERE d.adrelid = 'messages'::regclass"
		" AND a.attname = 'metadata';"};
	size_t n = strlen(part[0]) + strlen(lit) + strlen(part[1]) + 1;
	char *sql = malloc(n);

	if (sql)
		snprintf(sql, n, "%s%s%s", part[0], lit, part[1]);
	return sql;
}

static int p_connect(fl_sink *s)
{
	pg_sink *p = (pg_sink *)s;
	const fl_config *cfg = s->cfg;
	char sql[1024], err[512];
	int rc;

	if (!conn_lost(p))
		return FL_OK;
	p_disconnect(s);
	if (!(p->c = fl_pg_connect(cfg, "shm-flusher", "pg", err,
	                           sizeof err))) {
		fl_sink_seterr(s, "%s", err);
		return FL_TRANSIENT;
	}
	if (!(p->env_lit = PQescapeLiteral(p->c, s->env_id, strlen(s->env_id)))) {
		fl_sink_seterr(s, "escape env id: %s", PQerrorMessage(p->c));
		p_disconnect(s);
		return FL_TRANSIENT;
	}
	char *lit = PQescapeLiteral(p->c, p->meta_default, p->meta_default_len);
	p->default_check = lit ? default_check_sql(lit) : NULL;
	PQfreemem(lit);
	if (!p->default_check) {
		fl_sink_seterr(s, "out of memory");
		p_disconnect(s);
		return FL_TRANSIENT;
	}
	p->omit_default = true; /* until this connection's check says no */
	snprintf(sql, sizeof sql, setup_sql,
	         (unsigned long long)cfg->pg_timeout_ms);
	if ((rc = exec(p, sql, "session setup")))
		goto fail;
	if (cfg->pg_schema && *cfg->pg_schema && (rc = apply_schema_file(p)))
		goto fail;
	return FL_OK;
fail:
	if (rc == FL_REJECT)
		rc = FL_TRANSIENT; /* a setup failure is never a poison record */
	p_disconnect(s);
	return rc;
}

/* The position row of this env-id, created at what meta says was applied
 * if missing (first run of this environment against this database, or a
 * table emptied by hand). Columns: applied, created (t/f), env_uuid. */
static PGresult *position_row(pg_sink *p, uint64_t meta_pos)
{
	char sql[1024], owner[48] = "";
	const char *col = p->no_uuid_column ? "" : ", env_uuid";

	if (!p->no_uuid_column)
		snprintf(owner, sizeof owner, ", '%s'", p->env_uuid);
	snprintf(sql, sizeof sql,
	         "WITH ins AS (INSERT INTO shm_sink_positions (env_id, sink,"
	         " applied%s) VALUES (%s, 'pg', %llu%s) ON CONFLICT DO NOTHING"
	         " RETURNING applied%s) SELECT applied, true%s FROM ins UNION ALL"
	         " SELECT applied, false%s FROM shm_sink_positions WHERE"
	         " env_id = %s AND sink = 'pg'",
	         col, p->env_lit, (unsigned long long)meta_pos, owner, col, col,
	         col, p->env_lit);
	return PQexec(p->c, sql);
}

/* Whether the row belongs to this environment: a row of another one (two
 * environments under one env-id, or this one recreated) is refused, else
 * its position would skip or replay records. A row without an owner (made
 * before env_uuid existed) is claimed. */
static int check_owner(pg_sink *p, PGresult *res)
{
	char sql[512];
	const char *owner = PQgetvalue(res, 0, 2);

	if (PQgetisnull(res, 0, 2)) {
		snprintf(sql, sizeof sql, "UPDATE shm_sink_positions SET "
		         "env_uuid = '%s' WHERE env_id = %s AND sink = 'pg' AND "
		         "env_uuid IS NULL", p->env_uuid, p->env_lit);
		return exec(p, sql, "claim position row") ? -1 : 0;
	}
	if (strcmp(owner, p->env_uuid) == 0)
		return 0;
	fl_sink_seterr(&p->base, "env-id '%s' belongs to environment %s in "
	               "shm_sink_positions; this one is %s (two environments "
	               "under one env-id, or this one recreated): nothing is "
	               "applied until each has its own --env-id, or the row "
	               "is deleted to start this one at its own position",
	               p->base.env_id, owner, p->env_uuid);
	fl_log(FL_ERROR, "pg", "%s", p->base.errmsg);
	return -1;
}

/* PostgreSQL's applied position, the truth (invariant 1). */
static int p_position(fl_sink *s, uint64_t *pos)
{
	pg_sink *p = (pg_sink *)s;
	uint64_t meta_pos = 0;
	PGresult *res;

	if (conn_lost(p))
		return -1;
	shm_meta_get(s->env, "sink.pg.applied", &meta_pos);
	res = position_row(p, meta_pos);
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE)
	                        : NULL;
	if (!p->no_uuid_column && state && strcmp(state, "42703") == 0) {
		fl_log(FL_WARN, "pg", "shm_sink_positions has no env_uuid column "
		       "(apply sql/schema.sql): environments sharing an env-id "
		       "cannot be told apart");
		p->no_uuid_column = true;
		PQclear(res);
		res = position_row(p, meta_pos);
	}
	if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
		failure(p, res, "read position");
		return -1;
	}
	if (PQntuples(res) != 1) {
		fl_sink_seterr(s, "%d shm_sink_positions rows for env %s",
		               PQntuples(res), s->env_id);
		PQclear(res);
		return -1;
	}
	if (!p->no_uuid_column && check_owner(p, res)) {
		PQclear(res);
		return -1;
	}
	*pos = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
	if (PQgetvalue(res, 0, 1)[0] == 't' && meta_pos)
		fl_log(FL_WARN, "pg", "no shm_sink_positions row for env %s: "
		       "created at %llu (meta)", s->env_id,
		       (unsigned long long)meta_pos);
	PQclear(res);
	return 1;
}

/* ------------------------------------------------- batch -> COPY rows */

static int add_uuid(fl_buf *b, const uint8_t *u16)
{
	shm_uuid u;
	char s[37];

	memcpy(u.b, u16, 16);
	shm_uuid_format(&u, s);
	return fl_buf_add(b, s, 36);
}

/* An object's id as PostgreSQL keeps it (fl_object_id_canon). */
static int add_object_id(fl_buf *b, const char *id, size_t len)
{
	char s[36];

	if (len != 36)
		return fl_buf_copy_field(b, id, len);
	memcpy(s, id, 36);
	fl_object_id_canon(s, 36);
	return fl_buf_copy_field(b, s, 36);
}

/* type \t id, from "TYPE/ID" (len bytes, checked by fl_object_split). */
static int add_type_id(fl_buf *b, const char *obj, size_t len, size_t tl)
{
	if (fl_buf_copy_field(b, obj, tl) || fl_buf_add(b, "\t", 1) ||
	    add_object_id(b, obj + tl + 1, len - tl - 1))
		return ENOMEM;
	return 0;
}

/* website \t type \t id, from a key website(16) + "TYPE/ID". */
static int add_object(fl_buf *b, const uint8_t *key, size_t klen)
{
	const char *obj = (const char *)key + 16;
	size_t olen = klen - 16, tl;

	if (!fl_object_split(obj, olen, &tl))
		return EINVAL;
	if (add_uuid(b, key) || fl_buf_add(b, "\t", 1) ||
	    add_type_id(b, obj, olen, tl))
		return ENOMEM;
	return 0;
}

static bool same_key(const fl_rec *a, const uint8_t *key, size_t klen)
{
	return a->key_len == klen && memcmp(a->key, key, klen) == 0;
}

/* Is object (website of key, dep bytes) dropped in b after seq? */
static bool dropped_after(const fl_batch *b, const uint8_t *website,
                          const char *dep, size_t dlen, uint64_t seq)
{
	for (size_t i = 0; i < b->n; i++) {
		const fl_rec *r = &b->r[i];
		if (r->op == SHM_OP_GRAPH_DROP && r->seq > seq &&
		    r->key_len == 16 + dlen && !memcmp(r->key, website, 16) &&
		    !memcmp(r->key + 16, dep, dlen))
			return true;
	}
	return false;
}

static bool dropped_in_batch(const fl_batch *b, const fl_rec *x)
{
	for (size_t i = 0; i < b->n; i++)
		if (b->r[i].op == SHM_OP_GRAPH_DROP &&
		    same_key(&b->r[i], x->key, x->key_len))
			return true;
	return false;
}

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

/* ----------------------------------------- messages: binary COPY rows */

/* COPY ... (FORMAT binary): a header, then per row a field count and each
 * field as a 32-bit length (-1: NULL) and the type's binary form, all
 * big-endian; a count of -1 ends the data. */
static const uint8_t bin_header[19] = {'P', 'G', 'C', 'O', 'P', 'Y', '\n',
                                       0xff, '\r', '\n', 0};
static const uint8_t bin_trailer[2] = {0xff, 0xff};

/* PostgreSQL's largest field (1 GB): longer ones are refused up front,
 * never sent with a length that would wrap. */
#define PG_FIELD_MAX (1u << 30)

/* Microseconds from the Unix epoch to PostgreSQL's (2000-01-01 UTC). */
#define PG_EPOCH_US INT64_C(946684800000000)

static int bin_be(fl_buf *b, uint64_t v, int bytes)
{
	uint8_t s[8];

	for (int k = bytes - 1; k >= 0; k--, v >>= 8)
		s[k] = (uint8_t)v;
	return fl_buf_add(b, s, (size_t)bytes);
}

/* n below PG_FIELD_MAX (checked by stage_msg) */
static int bin_field(fl_buf *b, const void *p, size_t n)
{
	return bin_be(b, n, 4) || fl_buf_add(b, p, n) ? ENOMEM : 0;
}

static int bin_null(fl_buf *b)
{
	return bin_be(b, UINT32_MAX, 4);
}

static int bin_uuid_or_null(fl_buf *b, bool has, const shm_uuid *u)
{
	return has ? bin_field(b, u->b, 16) : bin_null(b);
}

static int bin_text(fl_buf *b, const char *s, size_t n)
{
	return bin_field(b, s ? s : "", s ? n : 0);
}

/* timestamptz: 0 (unset) is NULL */
static int bin_time_or_null(fl_buf *b, int64_t us)
{
	if (!us)
		return bin_null(b);
	return bin_be(b, 8, 4) || bin_be(b, (uint64_t)(us - PG_EPOCH_US), 8);
}

/* jsonb: version 1, then the text */
static int bin_jsonb(fl_buf *b, const char *json, size_t n)
{
	return bin_be(b, n + 1, 4) || fl_buf_add(b, "\1", 1) ||
	       fl_buf_add(b, json, n) ? ENOMEM : 0;
}

/* One row of shm_stage_msg (with its seq) or of messages, appended to o;
 * with bare, a row whose metadata is the default goes to bare instead,
 * without that column (invariant 5). The columns hold what the JSON Redis
 * receives says (metadata is that JSON's own object, from the same
 * writer). */
static int stage_msg(pg_sink *p, fl_batch *b, const fl_rec *r,
                     const shm_msg *m, fl_buf *o, fl_buf *bare, bool seq)
{
	const char *type = shm_msg_type_name(m->type);
	size_t len0;
	char hash[16];
	uint64_t h = m->content_hash;
	int rc;

	if (!type) {
		snprintf(b->reason, sizeof b->reason, "message JSON has an "
		         "unknown type");
		return FL_REJECT;
	}
	/* metadata as in the Redis JSON, by the same writer */
	p->scratch.len = 0;
	rc = shm_msg_metadata_json_append(m, &p->scratch.p, &p->scratch.len,
	                                  &p->scratch.cap);
	if (rc == ENOMEM) {
		fl_sink_seterr(&p->base, "out of memory");
		return FL_TRANSIENT;
	}
	if (rc) {
		snprintf(b->reason, sizeof b->reason, "message to JSON: %s",
		         shm_errmsg());
		return FL_REJECT;
	}
	if (m->content_len >= PG_FIELD_MAX || p->scratch.len >= PG_FIELD_MAX) {
		snprintf(b->reason, sizeof b->reason, "content or metadata "
		         "longer than PostgreSQL's 1 GB field limit");
		return FL_REJECT;
	}
	for (int k = 15; k >= 0; k--, h >>= 4)
		hash[k] = "0123456789abcdef"[h & 15];
	bool dflt = bare && p->scratch.len == p->meta_default_len &&
	            !memcmp(p->scratch.p, p->meta_default, p->meta_default_len);
	if (dflt)
		o = bare;
	len0 = o->len;
	rc = bin_be(o, (seq ? 13u : 12u) - dflt, 2) ||
	     (seq && (bin_be(o, 8, 4) || bin_be(o, r->seq, 8))) ||
	     bin_uuid_or_null(o, true, &m->id) ||
	     bin_text(o, m->room_id, strlen(m->room_id)) ||
	     bin_be(o, 4, 4) || bin_be(o, (uint32_t)m->user_id, 4) ||
	     bin_text(o, m->username, strlen(m->username)) ||
	     bin_text(o, m->content, m->content_len) ||
	     bin_text(o, type, strlen(type)) ||
	     bin_time_or_null(o, m->created_at) ||
	     bin_time_or_null(o, m->updated_at) ||
	     (!dflt && bin_jsonb(o, p->scratch.p, p->scratch.len)) ||
	     bin_field(o, hash, 16) ||
	     bin_uuid_or_null(o, m->has_parent, &m->parent_id) ||
	     bin_uuid_or_null(o, m->has_thread, &m->thread_id);
	if (rc) {
		o->len = len0;
		fl_sink_seterr(&p->base, "out of memory");
		return FL_TRANSIENT;
	}
	return FL_OK;
}

/* A message record's row, into o or bare (stage_msg; seq: with the seq
 * column). */
static int msg_row(pg_sink *p, fl_batch *b, const fl_rec *r, fl_buf *o,
                   fl_buf *bare, bool seq)
{
	shm_msg *m = NULL;
	int rc;

	if ((rc = shm_msg_decode(r->payload, r->payload_len, &m))) {
		if (rc == ENOMEM) { /* not the record's fault */
			fl_sink_seterr(&p->base, "out of memory (decoding seq "
			               "%" PRIu64 ")", r->seq);
			return FL_TRANSIENT;
		}
		snprintf(b->reason, sizeof b->reason, "message payload does not "
		         "decode: %s", shm_errmsg());
		return FL_REJECT;
	}
	rc = stage_msg(p, b, r, m, o, bare, seq);
	shm_msg_free(m);
	return rc;
}

/* Turns record i into COPY rows. FL_REJECT with b->reason for bad data. */
static int stage(pg_sink *p, fl_batch *b, size_t i)
{
	fl_rec *r = &b->r[i];
	int rc;

	if (shm_op_is_msg(r->op)) {
		if (!p->n_msg && fl_buf_add(&p->msg, bin_header,
		                            sizeof bin_header))
			return FL_TRANSIENT;
		if ((rc = msg_row(p, b, r, &p->msg, NULL, true)) == FL_OK)
			p->n_msg++;
		return rc;
	}
	if (r->op != SHM_OP_GRAPH_SET && r->op != SHM_OP_GRAPH_DROP &&
	    r->op != SHM_OP_MARK)
		return FL_OK; /* statics: Redis only */
	if (r->key_len <= 16 + 2) {
		snprintf(b->reason, sizeof b->reason, "%s key of %u byte%s has no "
		         "object", shm_op_name(r->op), r->key_len,
		         shm__plural(r->key_len));
		return FL_REJECT;
	}
	size_t mark = p->mark.len, obj = p->obj.len, edge = p->edge.len;
	if (r->op == SHM_OP_MARK) {
		char ts[40];
		if (r->payload_len != 1 || (r->payload[0] != 1 &&
		                            r->payload[0] != 2)) {
			snprintf(b->reason, sizeof b->reason, "mark payload of "
			         "%u byte%s is not a reason 1 or 2",
			         r->payload_len, shm__plural(r->payload_len));
			return FL_REJECT;
		}
		shm_time_format(r->time, ts);
		if ((rc = add_object(&p->mark, r->key, r->key_len)))
			goto bad_object;
		if (fl_buf_addf(&p->mark, "\t%u\t%s\t%" PRIu64 "\n",
		                r->payload[0], ts, r->seq))
			return FL_TRANSIENT;
		p->n_mark++;
		return FL_OK;
	}
	/* GRAPH_SET / GRAPH_DROP: the object's final state */
	bool drop = r->op == SHM_OP_GRAPH_DROP, direct = false;
	const uint8_t *pl = r->payload, *end = r->payload + r->payload_len;
	uint32_t n = 0;
	if (!drop) {
		if (r->payload_len < 5 || pl[0] > 1) {
			snprintf(b->reason, sizeof b->reason, "graph payload of "
			         "%u byte%s is malformed", r->payload_len,
			         shm__plural(r->payload_len));
			return FL_REJECT;
		}
		direct = pl[0];
		n = rd32(pl + 1);
		pl += 5;
	}
	if ((rc = add_object(&p->obj, r->key, r->key_len)))
		goto bad_object;
	if (fl_buf_addf(&p->obj, "\t%s\t%s\t%s\n", direct ? "t" : "f",
	                drop ? "t" : "f",
	                dropped_in_batch(b, r) ? "t" : "f"))
		return FL_TRANSIENT;
	p->n_obj++;
	for (uint32_t k = 0; k < n; k++) {
		if (end - pl < 2) {
			snprintf(b->reason, sizeof b->reason, "graph payload "
			         "truncated at dependency %u of %u", k, n);
			p->obj.len = obj;
			p->edge.len = edge;
			return FL_REJECT;
		}
		size_t dl = (size_t)pl[0] | (size_t)pl[1] << 8, tl;
		pl += 2;
		if ((size_t)(end - pl) < dl ||
		    !fl_object_split((const char *)pl, dl, &tl)) {
			snprintf(b->reason, sizeof b->reason, "graph payload: "
			         "dependency %u of %u is malformed", k, n);
			p->obj.len = obj;
			p->edge.len = edge;
			return FL_REJECT;
		}
		if (!dropped_after(b, r->key, (const char *)pl, dl, r->seq)) {
			if (add_object(&p->edge, r->key, r->key_len) ||
			    fl_buf_add(&p->edge, "\t", 1) ||
			    add_type_id(&p->edge, (const char *)pl, dl, tl) ||
			    fl_buf_add(&p->edge, "\n", 1))
				return FL_TRANSIENT;
			p->n_edge++;
		}
		pl += dl;
	}
	return FL_OK;
bad_object:
	p->mark.len = mark;
	p->obj.len = obj;
	p->edge.len = edge;
	if (rc == ENOMEM)
		return FL_TRANSIENT;
	snprintf(b->reason, sizeof b->reason, "%s: object is not TYPE/ID",
	         shm_op_name(r->op));
	return FL_REJECT;
}

/* Sends prefix (statements ending in ';', or "") with COPY table FROM
 * STDIN and waits for the server to take the rows. An UPDATE in the prefix
 * must report one row (the position guard), else the COPY is abandoned and
 * the batch is retried after re-reading the position. A SELECT in it is
 * the default check (invariant 5): anything but 't' abandons the COPY with
 * FL_NO_DEFAULT. */
static int copy_begin(pg_sink *p, const char *prefix, const char *table,
                      const char *cols, bool binary)
{
	PGresult *res;
	bool moved = false, no_default = false;

	p->sql.len = 0;
	if (fl_buf_addf(&p->sql, "%sCOPY %s (%s) FROM STDIN%s", prefix, table,
	                cols, binary ? " (FORMAT binary)" : "")) {
		fl_sink_seterr(&p->base, "out of memory");
		return FL_TRANSIENT;
	}
	if (!PQsendQuery(p->c, p->sql.p))
		return failure(p, NULL, "COPY");
	for (;;) {
		res = PQgetResult(p->c);
		if (!res)
			return failure(p, NULL, table); /* ended before COPY */
		ExecStatusType st = PQresultStatus(res);
		if (st == PGRES_COPY_IN)
			break;
		if (st == PGRES_TUPLES_OK) {
			no_default |= PQntuples(res) != 1 ||
			              strcmp(PQgetvalue(res, 0, 0), "t") != 0;
			PQclear(res);
			continue;
		}
		if (st != PGRES_COMMAND_OK) {
			int rc = failure(p, res, table);
			while (p->c && (res = PQgetResult(p->c)))
				PQclear(res);
			return rc;
		}
		if (!strncmp(PQcmdStatus(res), "UPDATE", 6) &&
		    strcmp(PQcmdTuples(res), "1") != 0)
			moved = true;
		PQclear(res);
	}
	PQclear(res);
	if (moved || no_default) {
		PQputCopyEnd(p->c, "not applied: see the flusher's log");
		while ((res = PQgetResult(p->c)))
			PQclear(res);
	}
	if (moved) {
		fl_sink_seterr(&p->base, "position in shm_sink_positions is not "
		               "the one expected (applied elsewhere?): "
		               "re-reading it");
		return FL_TRANSIENT;
	}
	if (no_default)
		return FL_NO_DEFAULT;
	return FL_OK;
}

static int copy_put(pg_sink *p, fl_buf *data, const char *table)
{
	if (data->len && PQputCopyData(p->c, data->p, (int)data->len) != 1)
		return failure(p, NULL, table);
	data->len = 0;
	return FL_OK;
}

/* Ends the COPY: abort (a reason) or not (NULL). conflict: a unique
 * violation is FL_CONFLICT instead of FL_REJECT. */
static int copy_end(pg_sink *p, const char *table, const char *abort,
                    bool conflict)
{
	PGresult *res;
	int rc = FL_OK;

	if (PQputCopyEnd(p->c, abort) != 1)
		return failure(p, NULL, table);
	res = PQgetResult(p->c);
	if (abort) {
		PQclear(res);
	} else if (!res || PQresultStatus(res) != PGRES_COMMAND_OK) {
		const char *st = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE)
		                     : NULL;
		bool dup = conflict && st && !strcmp(st, "23505");
		rc = failure(p, res, table);
		if (dup && rc == FL_REJECT)
			rc = FL_CONFLICT;
	} else {
		PQclear(res);
	}
	while (p->c && (res = PQgetResult(p->c)))
		PQclear(res);
	return rc;
}

/* Ends a binary COPY of rows in data (header included): the trailer,
 * the rest of the rows, the end (a unique violation is FL_CONFLICT). */
static int copy_finish(pg_sink *p, fl_buf *data)
{
	int rc;

	if (fl_buf_add(data, bin_trailer, sizeof bin_trailer)) {
		copy_end(p, "messages", "out of memory", false);
		fl_sink_seterr(&p->base, "out of memory");
		return FL_TRANSIENT;
	}
	if ((rc = copy_put(p, data, "messages")))
		return rc;
	return copy_end(p, "messages", NULL, true);
}

/* Rows of the messages presumed new (invariant 4), streamed: built and sent
 * a chunk at a time, so the backend parses them as they are formatted.
 * With omit_default, the rows with default metadata are this COPY's,
 * without the column, and the others wait for a second one (invariant 5). */
static int copy_direct(pg_sink *p, fl_batch *b, const char *prefix)
{
	bool omit = p->omit_default;
	int rc;

	p->prefix.len = 0;
	if (fl_buf_adds(&p->prefix, prefix) ||
	    (omit && fl_buf_adds(&p->prefix, p->default_check))) {
		fl_sink_seterr(&p->base, "out of memory");
		return FL_TRANSIENT;
	}
	if ((rc = copy_begin(p, p->prefix.p, "messages", omit ? msg_cols_bare
	                     : msg_cols + MSG_COLS_DIRECT, true)))
		return rc;
	p->direct.len = p->full.len = 0;
	if (fl_buf_add(&p->direct, bin_header, sizeof bin_header) ||
	    fl_buf_add(&p->full, bin_header, sizeof bin_header)) {
		copy_end(p, "messages", "out of memory", false);
		fl_sink_seterr(&p->base, "out of memory");
		return FL_TRANSIENT;
	}
	for (size_t i = 0; i < b->n; i++) {
		fl_rec *r = &b->r[i];
		if (r->superseded || !shm_op_is_msg(r->op) ||
		    r->first_op != SHM_OP_MSG_PUT)
			continue;
		rc = omit ? msg_row(p, b, r, &p->full, &p->direct, false)
		          : msg_row(p, b, r, &p->direct, NULL, false);
		if (rc) {
			if (rc == FL_REJECT) {
				b->reject = (long)i;
				fl_sink_seterr(&p->base, "seq %" PRIu64 ": %s",
				               r->seq, b->reason);
			}
			copy_end(p, "messages", "row not built", false);
			return rc;
		}
		if (p->direct.len >= STREAM_CHUNK &&
		    (rc = copy_put(p, &p->direct, "messages")))
			return rc;
	}
	if ((rc = copy_finish(p, &p->direct)) ||
	    p->full.len == sizeof bin_header)
		return rc;
	if ((rc = copy_begin(p, "", "messages", msg_cols + MSG_COLS_DIRECT,
	                     true)))
		return rc;
	return copy_finish(p, &p->full);
}

/* Immediate connection upserts (issue 5 §2, cleanup_refresh.c) for the
 * batch's GRAPH_SETs, in its transaction (they commit with the rows and the
 * position, or not at all), then COMMIT. Frees rf. */
static int refresh_commit(pg_sink *p, fl_refresh *rf)
{
	char err[512];
	uint64_t added = 0;
	int rc = fl_refresh_run(p->c, rf, &added, err, sizeof err);

	fl_refresh_free(rf);
	if (rc) {
		fl_sink_seterr(&p->base, "connections: %s", err);
		return FL_TRANSIENT;
	}
	if (added)
		fl_log(FL_DEBUG, "pg", "%" PRIu64 " connections added", added);
	PGresult *res = PQexec(p->c, "COMMIT");
	if (!res || PQresultStatus(res) != PGRES_COMMAND_OK)
		return failure(p, res, "commit");
	PQclear(res);
	return FL_OK;
}

/* Runs the batch's statements (sql), keeping MSG_SQL's result in p->newer
 * (invariant 7); the first that fails is the batch's failure. */
static int run_apply(pg_sink *p, const char *sql)
{
	PGresult *res, *bad = NULL;

	if (!PQsendQuery(p->c, sql))
		return failure(p, NULL, "apply");
	while ((res = PQgetResult(p->c))) {
		ExecStatusType st = PQresultStatus(res);
		if (st == PGRES_TUPLES_OK && PQnfields(res) == 4 &&
		    !strcmp(PQfname(res, 0), "msg_newer")) {
			PQclear(p->newer);
			p->newer = res;
		} else if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK &&
		           !bad) {
			bad = res;
		} else {
			PQclear(res);
		}
	}
	if (!bad)
		return FL_OK;
	const char *st = PQresultErrorField(bad, PG_DIAG_SQLSTATE);
	if (p->n_msg && st && !strcmp(st, KEPT_DELETED) && !conn_lost(p)) {
		PQclear(bad);
		return FL_KEPT_DELETED;
	}
	return failure(p, bad, "apply");
}

/* One try at the batch; direct: new messages by COPY (invariant 4). */
static int apply_once(pg_sink *p, fl_batch *b, bool direct)
{
	fl_sink *s = &p->base;
	PGresult *res;
	size_t n_direct = 0;
	int rc;

	p->msg.len = p->obj.len = p->edge.len = p->mark.len = p->sql.len = 0;
	p->n_msg = p->n_obj = p->n_edge = p->n_mark = 0;
	PQclear(p->newer);
	p->newer = NULL;
	/* 1. the staged rows built before the transaction begins */
	for (size_t i = 0; i < b->n; i++) {
		fl_rec *r = &b->r[i];
		if (r->superseded)
			continue;
		if (direct && shm_op_is_msg(r->op) &&
		    r->first_op == SHM_OP_MSG_PUT) {
			n_direct++;
			continue;
		}
		if ((rc = stage(p, b, i)) != FL_OK) {
			if (rc == FL_REJECT) {
				b->reject = (long)i;
				fl_sink_seterr(s, "seq %" PRIu64 ": %s", r->seq,
				               b->reason);
			} else {
				fl_sink_seterr(s, "out of memory");
			}
			return rc;
		}
	}
	/* 2. the transaction, the position first (it also serialises two
	 * flushers that would share an env id), sent with the first COPY */
	char begin[512];
	snprintf(begin, sizeof begin, "BEGIN; UPDATE shm_sink_positions SET "
	         "applied = %" PRIu64 ", updated_at = now() WHERE env_id = %s "
	         "AND sink = 'pg' AND applied = %" PRIu64 ";", b->upto,
	         p->env_lit, b->from);
	if (p->n_msg && fl_buf_add(&p->msg, bin_trailer, sizeof bin_trailer)) {
		fl_sink_seterr(s, "out of memory");
		return FL_TRANSIENT;
	}
	struct {
		size_t n;
		int ddl;
		const char *table, *cols;
		fl_buf *data;
		bool binary;
	} copies[] = {
		{p->n_obj, ST_GRAPH, "shm_stage_obj", "website_id, object_type,"
		 " object_id, direct, dropped, drop_incoming", &p->obj, false},
		{p->n_edge, -1, "shm_stage_edge", "website_id, object_type, "
		 "object_id, dep_type, dep_id", &p->edge, false},
		{p->n_mark, ST_MARK, "shm_stage_mark", "website_id, object_type, "
		 "object_id, reason, marked_at, seq", &p->mark, false},
		{p->n_msg, ST_MSG, "shm_stage_msg", msg_cols, &p->msg, true},
	};
	const char *prefix = begin;
	for (size_t k = 0; k < sizeof copies / sizeof copies[0]; k++) {
		if (!copies[k].n)
			continue;
		p->prefix.len = 0;
		if (fl_buf_adds(&p->prefix, prefix) ||
		    (copies[k].ddl >= 0 && !p->staged[copies[k].ddl] &&
		     fl_buf_adds(&p->prefix, stage_ddl[copies[k].ddl]))) {
			fl_sink_seterr(s, "out of memory");
			return FL_TRANSIENT;
		}
		if ((rc = copy_begin(p, p->prefix.p, copies[k].table,
		                     copies[k].cols, copies[k].binary)) ||
		    (rc = copy_put(p, copies[k].data, copies[k].table)) ||
		    (rc = copy_end(p, copies[k].table, NULL, false)))
			return rc;
		prefix = "";
	}
	if (n_direct) {
		if ((rc = copy_direct(p, b, prefix)))
			return rc;
		prefix = "";
	}
	if (prefix == begin) { /* nothing to copy: position only */
		res = PQexec(p->c, begin);
		if (!res || PQresultStatus(res) != PGRES_COMMAND_OK)
			return failure(p, res, "begin");
		if (strcmp(PQcmdTuples(res), "1") != 0) {
			PQclear(res);
			fl_sink_seterr(s, "position in shm_sink_positions is "
			               "not %" PRIu64 " (applied elsewhere?): "
			               "re-reading it", b->from);
			return FL_TRANSIENT;
		}
		PQclear(res);
	}
	/* graph changes: the websites' connection locks first (cleanup.h) */
	fl_refresh *rf = NULL;
	p->sql.len = 0;
	if ((p->n_obj && fl_refresh_collect(b, &rf)) ||
	    (rf && fl_refresh_lock_sql(rf, &p->sql)) ||
	    (p->n_obj && fl_buf_adds(&p->sql, graph_sql)) ||
	    (p->n_mark && fl_buf_adds(&p->sql, mark_sql)) ||
	    (p->n_msg && fl_buf_adds(&p->sql, MSG_SQL)) ||
	    (!rf && fl_buf_adds(&p->sql, "COMMIT"))) {
		fl_refresh_free(rf);
		fl_sink_seterr(s, "out of memory");
		return FL_TRANSIENT;
	}
	if ((rc = run_apply(p, p->sql.p))) {
		fl_refresh_free(rf);
		return rc;
	}
	if (rf && (rc = refresh_commit(p, rf)))
		return rc;
	/* a COMMIT of an aborted transaction reports ROLLBACK */
	if (PQtransactionStatus(p->c) != PQTRANS_IDLE) {
		fl_sink_seterr(s, "COMMIT did not commit");
		return FL_TRANSIENT;
	}
	p->staged[ST_GRAPH] |= p->n_obj > 0;
	p->staged[ST_MARK] |= p->n_mark > 0;
	p->staged[ST_MSG] |= p->n_msg > 0;
	return FL_OK;
}

/* Invariant 5's check failed: where, what it costs, how to fix it (the
 * default's JSON has no strings, so no quote to escape). */
static void warn_no_default(pg_sink *p)
{
	fl_log(FL_WARN, "pg", "messages.metadata's default in database %s on "
	       "%s port %s is not sql/schema.sql's: every new row is sent with "
	       "its metadata (correct, slower) until a connection finds it "
	       "fixed; re-apply sql/schema.sql (psql -f) or run ALTER TABLE "
	       "messages ALTER COLUMN metadata SET DEFAULT '%.*s'::jsonb",
	       PQdb(p->c), PQhost(p->c), PQport(p->c),
	       (int)p->meta_default_len, p->meta_default);
}

static int p_apply(fl_sink *s, fl_batch *b)
{
	pg_sink *p = (pg_sink *)s;
	int rc;

	b->reject = -1;
	b->reason[0] = 0;
	if (conn_lost(p)) {
		fl_sink_seterr(s, "not connected");
		return FL_TRANSIENT;
	}
	if (fl_batch_coalesce(b)) {
		fl_sink_seterr(s, "out of memory (coalescing the batch)");
		return FL_TRANSIENT;
	}
	rc = apply_once(p, b, p->direct_pause == 0);
	if (p->direct_pause)
		p->direct_pause--;
	if (rc == FL_NO_DEFAULT) {
		warn_no_default(p);
		rollback(p);
		p->omit_default = false;
		rc = apply_once(p, b, true);
	}
	if (rc == FL_CONFLICT) {
		fl_log(FL_DEBUG, "pg", "batch (%" PRIu64 "..%" PRIu64 "]: %s; "
		       "upserting it", b->from, b->upto, s->errmsg);
		rollback(p);
		p->direct_pause = DIRECT_PAUSE;
		s->errmsg[0] = 0;
		rc = apply_once(p, b, false);
	}
	if (rc == FL_KEPT_DELETED) {
		rollback(p);
		rc = fl_pg_kept_deleted(s, p->c, b);
	}
	if (rc != FL_OK)
		rollback(p);
	if (rc == FL_REJECT && b->n == 1)
		b->reject = 0;
	/* committed: invariant 7; rows not read are put back once a new
	 * connection finds the position past the worker's (caught_up) */
	if (rc == FL_OK && p->newer &&
	    fl_pg_newer(s, p->c, b, p->newer, &b->older)) {
		p_disconnect(s);
		rc = FL_TRANSIENT;
	}
	PQclear(p->newer);
	p->newer = NULL;
	return rc;
}

static void p_caught_up(fl_sink *s, uint64_t from, uint64_t pos)
{
	fl_pg_newer_again(s, ((pg_sink *)s)->c, from, pos);
}

static void p_destroy(fl_sink *s)
{
	pg_sink *p = (pg_sink *)s;

	p_disconnect(s);
	fl_buf_free(&p->msg);
	fl_buf_free(&p->obj);
	fl_buf_free(&p->edge);
	fl_buf_free(&p->mark);
	fl_buf_free(&p->sql);
	fl_buf_free(&p->prefix);
	fl_buf_free(&p->direct);
	fl_buf_free(&p->full);
	fl_buf_free(&p->scratch);
	free(p->meta_default);
	free(p);
}

static const fl_sink_ops pg_ops = {
	.name = "pg",
	.awaited = SHM_META_PG_AWAITED,
	.connect = p_connect,
	.position = p_position,
	.caught_up = p_caught_up,
	.apply = p_apply,
	.disconnect = p_disconnect,
	.destroy = p_destroy,
};

fl_sink *fl_pg_sink_new(const fl_config *cfg, shm_env *env,
                        const char *env_id, const char *env_uuid)
{
	pg_sink *p = calloc(1, sizeof *p);
	/* metadata all default: the writer's JSON of it (invariant 5) */
	const shm_msg dflt = {.type = SHM_MSG_TEXT};
	size_t cap = 0;

	if (!p)
		return NULL;
	if (shm_msg_metadata_json_append(&dflt, &p->meta_default,
	                                 &p->meta_default_len, &cap)) {
		free(p);
		return NULL;
	}
	p->base.ops = &pg_ops;
	p->base.cfg = cfg;
	p->base.env = env;
	snprintf(p->base.env_id, sizeof p->base.env_id, "%s", env_id);
	snprintf(p->env_uuid, sizeof p->env_uuid, "%s", env_uuid);
	return &p->base;
}
