/*
 * tools/shmctl/stat.c - shmctl stat: counters and state, like
 * varnishstat -1, and the values shm-flusher publishes in meta.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "../close_stdout.h"
#include "internal.h"
#include "shm.h"
#include "shm_log.h"
#include "shmctl.h"

/* --json writes the object itself: jansson's integers are signed, and a
 * u64 above 2^63 came out negative. Everything goes to out, a memory
 * stream, printed only once the whole of it is written: a read failing
 * half-way prints nothing (its --json was an object never closed). */
typedef struct statout {
	FILE *out;
	bool json;
	bool oom;      /* a name or value could not be written */
	size_t n;      /* values written */
	uint64_t env_id[2]; /* meta flusher.env_id.hi and .lo */
	bool env_id_said;
	int running;   /* flusher_running's answer */
	bool no_lock;  /* no flusher.lock: none ever ran in this directory */
} statout;

/* JSON's name, then the value's text. */
static void stat_json(statout *o, const char *name, const char *value)
{
	json_t *k = json_string(name);
	char *ks = k ? json_dumps(k, JSON_ENCODE_ANY) : NULL;

	if (ks && value)
		fprintf(o->out, "%s%s:%s", o->n++ ? "," : "{", ks, value);
	else
		o->oom = true;
	free(ks);
	json_decref(k);
}

static void stat_u64(statout *o, const char *name, uint64_t v,
                     const char *desc)
{
	char num[24];

	if (o->json) {
		snprintf(num, sizeof num, "%" PRIu64, v);
		stat_json(o, name, num);
	} else {
		fprintf(o->out, "%-30s %20" PRIu64 "  %s\n", name, v, desc);
	}
}

/* stat_json of jansson's text of r (NULL: out of memory), r released. */
static void stat_jansson(statout *o, const char *name, json_t *r)
{
	char *text = r ? json_dumps(r, JSON_ENCODE_ANY) : NULL;

	stat_json(o, name, text);
	free(text);
	json_decref(r);
}

static void stat_str(statout *o, const char *name, const char *v,
                     const char *desc)
{
	if (o->json)
		stat_jansson(o, name, json_string(v));
	else
		fprintf(o->out, "%-30s %20s  %s\n", name, v, desc);
}

static void stat_real(statout *o, const char *name, double v,
                      const char *desc)
{
	if (o->json)
		stat_jansson(o, name, json_real(v));
	else
		fprintf(o->out, "%-30s %20.4f  %s\n", name, v, desc);
}

/* What the values shm-flusher publishes in meta mean, by the last part of
 * their name: flusher.<sink>.X, flusher.inval.X, cleanup.last.X and
 * cleanup.total.X; the others by their whole name. */
typedef struct {
	const char *name, *desc;
} meta_desc;

static const meta_desc sink_desc[] = { /* flusher/loop.c */
	{"batches", "batches applied"},
	{"rows", "log records applied"},
	{"retries", "batches retried"},
	{"errors", "failures (connection, timeout, server)"},
	{"dead", "records set aside as dead letters"},
	{"reconnects", "failed connection attempts"},
	{"superseded", "records applied as older than the sink's row, which "
	               "stays (PostgreSQL)"},
	{"lag_records", "records not yet applied"},
	{"lag_ms", "age of the oldest record not yet applied, ms"},
	{"rows_per_s", "records applied per second, last interval"},
	{"last_batch_ms", "the last batch's duration, ms"},
	{NULL, NULL}};
static const meta_desc inval_desc[] = { /* flusher/invalidate.c */
	{"subscribed", "1 while subscribed to other hosts' writes"},
	{"published", "messages published"},
	{"publish_errors", "messages not published"},
	{"received", "messages from other hosts"},
	{"keys", "keys those messages named"},
	{"dropped", "L1 entries dropped"},
	{"kept", "keys kept: unflushed work of this host"},
	{"resets", "drops of every flushed L1 entry (after a reconnect, "
	           "failed drops or a malformed message)"},
	{"errors", "messages or drops that failed"},
	{"peers_seen", "1 once another host was heard from"},
	{NULL, NULL}};
static const meta_desc cleanup_desc[] = { /* flusher/cleanup.c */
	{"websites", "websites with marks"},
	{"websites_failed", "websites whose task failed"},
	{"sources", "direct sources"},
	{"statements", "SQL statements"},
	{"dep_loads", "dependency loads"},
	{"deleted", "connections deleted"},
	{"inserted", "connections inserted"},
	{"marks_cleared", "marks cleared"},
	{"duration_ms", "duration, ms"},
	{"at", "end, Unix time (s)"},
	{NULL, NULL}};
static const meta_desc whole_desc[] = {
	{"flusher.heartbeat", "its last publication of these, Unix time (s): "
	                      "every stats-interval-ms while it runs"},
	{"flusher.started_at", "its start, Unix time (s)"},
	{"flusher.trimmed_to", "log trimmed up to this seq"},
	{"flusher.syncs", "mdb_env_sync calls (nosync mode)"},
	{"flusher.expired", "flushed L1 entries expired (l1_ttl_s)"},
	{"flusher.readers_cleared", "stale reader slots cleared"},
	{"cleanup.rounds", "connection cleanup rounds run"},
	{NULL, NULL}};

static const char *meta_desc_of(const meta_desc *t, const char *name)
{
	for (; t->name; t++)
		if (strcmp(t->name, name) == 0)
			return t->desc;
	return NULL;
}

/* The environment's UUID, kept by shm-flusher in two u64 halves: said
 * once, in its place among the flusher.* values, as the UUID its log
 * and shm_sink_positions show (flusher/loop.c's fl_env_uuid reads it so,
 * a missing half as 0). */
static void stat_env_id(statout *o)
{
	shm_uuid u;
	char s[37];

	if (o->env_id_said)
		return;
	o->env_id_said = true;
	memcpy(u.b, &o->env_id[0], 8);
	memcpy(u.b + 8, &o->env_id[1], 8);
	shm_uuid_format(&u, s);
	stat_str(o, "flusher.env_id", s, "this environment's UUID: the "
	         "flusher's default --env-id, shm_sink_positions.env_uuid");
}

static void stat_meta(const char *name, uint64_t value, void *user)
{
	const char *dot = strrchr(name, '.'), *what;
	const char *last = dot ? dot + 1 : name;
	char desc[128];
	size_t n = strlen(name);
	int sink = 0; /* flusher.<sink>.X: the sink's name's length */

	if (!strcmp(name, "flusher.env_id.hi") ||
	    !strcmp(name, "flusher.env_id.lo")) {
		stat_env_id(user);
		return;
	}
	if (strncmp(name, "flusher.", 8) == 0 && dot > name + 8 &&
	    !memchr(name + 8, '.', (size_t)(dot - (name + 8))))
		sink = (int)(dot - (name + 8));

	if (!strcmp(name, "flusher.pid"))
		snprintf(desc, sizeof desc, "pid of the flusher that published "
		         "these%s", ((statout *)user)->running == 0
		         ? ", which no longer runs (flusher.running)" : "");
	else if ((what = meta_desc_of(whole_desc, name)))
		snprintf(desc, sizeof desc, "%s", what);
	else if (strncmp(name, "sink.", 5) == 0 && n > 13 &&
	         strcmp(name + n - 8, ".applied") == 0)
		snprintf(desc, sizeof desc, "sink %.*s: log applied up to here",
		         (int)(n - 13), name + 5);
	else if (strcmp(name, SHM_META_PG_AWAITED) == 0)
		snprintf(desc, sizeof desc, "sink pg: the last record a "
		         "write-through write waited for (libshm)");
	else if (strncmp(name, "flusher.inval.", 14) == 0 &&
	         (what = meta_desc_of(inval_desc, last)))
		snprintf(desc, sizeof desc, "invalidation: %s", what);
	else if (sink && (what = meta_desc_of(sink_desc, last)))
		snprintf(desc, sizeof desc, "sink %.*s: %s", sink, name + 8,
		         what);
	else if (strncmp(name, "cleanup.last.", 13) == 0 &&
	         (what = meta_desc_of(cleanup_desc, last)))
		snprintf(desc, sizeof desc, "cleanup, last round: %s", what);
	else if (strncmp(name, "cleanup.total.", 14) == 0 &&
	         (what = meta_desc_of(cleanup_desc, last)))
		snprintf(desc, sizeof desc, "cleanup, all rounds: %s", what);
	else
		snprintf(desc, sizeof desc, "published by shm-flusher");
	stat_u64(user, name, value, desc);
}

/* Whether an shm-flusher runs on the environment now: 1, 0, or -1 (why
 * says) if flusher.lock cannot be opened or locked. A flusher flocks it
 * for its lifetime (flusher/loop.c invariant 1): a shared lock, taken
 * without waiting and dropped at once, is refused while one runs. The
 * file is never made here (none, *no_lock: no flusher ever ran here). */
static int flusher_running(char *why, size_t len, bool *no_lock)
{
	char path[4200], shown[SHM__SHOWN_LONG_MAX];
	int fd, rc, e;

	snprintf(path, sizeof path, "%s/flusher.lock", env_dir);
	if ((fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)) < 0) {
		if ((e = errno) == ENOENT) {
			*no_lock = true;
			return 0;
		}
	} else {
		rc = flock(fd, LOCK_SH | LOCK_NB);
		e = errno;
		close(fd); /* and the lock, if taken */
		if (rc == 0 || e == EWOULDBLOCK)
			return rc != 0;
	}
	snprintf(why, len, "cannot tell whether an shm-flusher runs: %s: %s",
	         shm__shown_long(path, strlen(path), shown), strerror(e));
	return -1;
}

/* flusher.running: o->running, and what it means for the flusher.*
 * values, which a flusher that ended leaves as they were. */
static void stat_running(statout *o, const char *why)
{
	if (o->running > 0)
		stat_u64(o, "flusher.running", 1, "an shm-flusher runs now (it "
		         "holds flusher.lock)");
	else if (o->running == 0 && o->no_lock)
		stat_u64(o, "flusher.running", 0, "no shm-flusher runs now, and "
		         "none has in this directory (no flusher.lock)");
	else if (o->running == 0)
		stat_u64(o, "flusher.running", 0, "no shm-flusher runs now: the "
		         "flusher.* values are the last one's, as of its last "
		         "publication (flusher.heartbeat)");
	else if (o->json)
		stat_json(o, "flusher.running", "null");
	else
		stat_str(o, "flusher.running", "unknown", why);
}

/* what: the calls timed (failed ones are not). */
static void stat_hist(statout *o, const char *name, const shm_hist *h,
                      const char *what)
{
	char n[64], d[96];

	snprintf(n, sizeof n, "%s.count", name);
	snprintf(d, sizeof d, "%s: samples (%s)", name, what);
	stat_u64(o, n, h->count, d);
	snprintf(n, sizeof n, "%s.p50_ns", name);
	snprintf(d, sizeof d, "%s: median, ns (bucket upper bound)", name);
	stat_u64(o, n, shm_hist_percentile(h, 50), d);
	snprintf(n, sizeof n, "%s.p99_ns", name);
	snprintf(d, sizeof d, "%s: 99th percentile, ns (bucket upper bound)",
	         name);
	stat_u64(o, n, shm_hist_percentile(h, 99), d);
}

int cmd_stat(int argc, char **argv)
{
	optdef opts[] = {{"json", false, NULL}, {NULL, false, NULL}};
	char **pos;
	int npos, ex, rc;
	shm_env *env;
	shm_info in;
	shm_counters c;
	statout o = {0};
	char *text = NULL, why[4400];
	size_t len = 0;

	if ((ex = scan(argc, argv, opts, &pos, &npos)))
		return ex;
	if ((ex = arity("stat [--json]", pos, npos, 0, 0)))
		return ex;
	if ((ex = open_env(false, &env)))
		return ex;
	if ((rc = shm_env_info(env, &in)) || (rc = shm_stats_shared(env, &c))) {
		ex = fail(rc);
		goto out;
	}
	if (!(o.out = open_memstream(&text, &len)))
		goto oom;
	o.json = optv(opts, "json");
	stat_u64(&o, "messages", in.messages, "messages in L1");
	stat_u64(&o, "statics", in.statics, "statics in L1");
	stat_u64(&o, "rooms", in.rooms, "rooms in the L1 room index");
	stat_u64(&o, "graph_objects", in.graph_objects,
	         "objects declared in the graph");
	stat_u64(&o, "marked_objects", in.marks,
	         "objects marked for the connection cleanup");
	stat_u64(&o, "l1_bytes", in.l1_bytes, "L1 value bytes (capacity)");
	stat_u64(&o, "l1_max_entries", shm_env_options(env)->l1_max_entries,
	         "L1 entry limit (the environment's)");
	stat_u64(&o, "l1_max_bytes", shm_env_options(env)->l1_max_bytes,
	         "L1 byte limit (the environment's)");
	stat_u64(&o, "l1_ttl_s", shm_env_options(env)->l1_ttl_s,
	         "flushed entries older than this expire (the environment's)");
	stat_u64(&o, "log_records", in.log_records, "records in the write log");
	stat_u64(&o, "log_first", in.log_first, "first record's seq (0: empty)");
	stat_u64(&o, "log_last", in.log_last, "last record's seq (0: empty)");
	stat_u64(&o, "next_seq", in.next_seq, "next record's seq");
	stat_u64(&o, "flushed", in.flushed,
	         "flushed position (every sink has applied up to here)");
	stat_u64(&o, "flusher_lag",
	         in.next_seq > in.flushed + 1 ? in.next_seq - 1 - in.flushed : 0,
	         "records written but not yet flushed");
	stat_u64(&o, "dead_letters", in.dead_letters,
	         "records set aside by a sink");
	stat_u64(&o, "map_size", in.map_size, "LMDB map size, bytes");
	stat_u64(&o, "map_used", in.map_used, "LMDB map used, bytes");
	stat_u64(&o, "readers_used", in.readers_used, "LMDB reader slots in use (this shmctl's and stale ones included)");
	stat_u64(&o, "readers_max", in.readers_max, "LMDB reader slots");
	stat_u64(&o, "format_version", in.format_version,
	         "environment format version");
#define SHM__STAT_CNT(name, desc) stat_u64(&o, #name, c.name, desc);
	SHM_COUNTERS(SHM__STAT_CNT)
#undef SHM__STAT_CNT
	stat_real(&o, "compression_ratio",
	          c.log_bytes_raw ? (double)c.log_bytes_stored /
	                                    (double)c.log_bytes_raw
	                          : 1.0,
	          "log payload bytes stored / raw");
	stat_hist(&o, "put_latency", &c.put_latency, "message writes committed");
	stat_hist(&o, "get_latency", &c.get_latency,
	          "message gets answered, not found included");
	o.running = flusher_running(why, sizeof why, &o.no_lock);
	if (o.running < 0 && o.json)
		fprintf(stderr, "%s: %s\n", prog, why);
	stat_running(&o, why);
	if ((rc = shm_meta_get(env, "flusher.env_id.hi", &o.env_id[0])) ||
	    (rc = shm_meta_get(env, "flusher.env_id.lo", &o.env_id[1])) ||
	    (rc = shm_meta_each(env, "sink.", stat_meta, &o)) ||
	    (rc = shm_meta_each(env, "flusher.", stat_meta, &o)) ||
	    (rc = shm_meta_each(env, "cleanup.", stat_meta, &o))) {
		ex = fail(rc);
		goto out;
	}
	if (o.json)
		fputs("}\n", o.out);
	rc = fclose(o.out);
	o.out = NULL;
	if (rc || o.oom)
		goto oom;
	ex = fwrite(text, 1, len, stdout) == len ? EX_OK
	                                         : tool_write_failed(prog, errno);
	goto out;
oom:
	fprintf(stderr, "%s: out of memory\n", prog);
	ex = EX_INTERNAL;
out:
	if (o.out)
		fclose(o.out);
	free(text);
	shm_env_close(env);
	return ex;
}
