/*
 * flusher/redis_sink.c - the Redis (L2) sink: one pipeline per batch.
 *
 *   MSG_*        SET msg:<uuid> <json> EX <l2-ttl>
 *   STATIC_PUT   SET <website>-<TYPE/ID>-static <content> EX <l2-ttl>
 *                SET <website>-<TYPE/ID>-sha <hex sha1|sha256> EX <l2-ttl>
 *   STATIC_BUST  DEL <website>-<TYPE/ID>-static <website>-<TYPE/ID>-sha
 *   GRAPH_*, MARK  nothing (PostgreSQL only)
 *
 * JSON is shm_msg_to_json (the seed's serde shape); JSON and static content
 * longer than compress-threshold are stored as LZ4 frames (magic 04 22 4D 18,
 * content size in the frame header), which readers tell from JSON by the
 * first byte. Repeated writes of one key in a batch are coalesced (the last
 * state wins), so a batch sends each key once, in log order.
 *
 * The pipeline is written in RESP straight into one buffer (no argv, no
 * allocation per command) and written to the socket from there; hiredis
 * reads the replies.
 *
 * Redis keeps no position of its own: every command is idempotent and the
 * batch is replayed whole after a crash, so at-least-once yields the same
 * final state. Connection loss and timeouts are FL_TRANSIENT; an error reply
 * to a command is FL_REJECT naming its record, unless Redis says it is
 * temporary (LOADING, BUSY, OOM, NOREPLICAS...), refuses any record alike
 * (NOPERM, an unknown command), or is no standalone primary (below). A
 * value longer than proto-max-bulk-len is its record's: Redis replies
 * "ERR Protocol error: invalid bulk length" and closes the connection,
 * often while the pipeline is still written; the replies sent before the
 * close are read all the same, and name it.
 *
 * The sink writes to a standalone primary only: a Cluster node refuses
 * keys of other nodes' slots (MOVED) and a bust's DEL of two keys of two
 * slots (CROSSSLOT), a replica every write (READONLY). The connect asks
 * INFO (redis_mode, role); a server that answers it otherwise (an ACL, a
 * renamed INFO) or changes role later (a failover) is told by its replies.
 * Either way it is FL_TRANSIENT, named as a setup error: no record is set
 * aside for it.
 */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "fl.h"

typedef struct redis_sink {
	fl_sink base;
	redisContext *c;
	char server[FL_REDIS_SERVER_MAX]; /* c's, for the setup's errors */
	char ttl[24];  /* EX argument: l2-ttl, or the environment's l2_ttl_s */
	uint32_t compress_threshold; /* likewise, for this batch */
	bool sha256;   /* static-sha = sha256 */
	fl_buf scratch; /* a message's JSON (shm_msg_json_append) */
	fl_buf out;     /* the batch's pipeline, in RESP */
	struct cmd {
		size_t rec;  /* its record's index in the batch */
		size_t size; /* bytes of its longest argument */
	} *cmd;         /* each command of out */
	size_t n_cmd, cap_cmd;
} redis_sink;

static void r_disconnect(fl_sink *s)
{
	redis_sink *r = (redis_sink *)s;

	if (r->c)
		redisFree(r->c);
	r->c = NULL;
}

static int simple(redis_sink *r, const char *what, const char *fmt, ...)
{
	va_list ap;
	redisReply *rep;

	va_start(ap, fmt);
	rep = redisvCommand(r->c, fmt, ap);
	va_end(ap);
	if (!rep) {
		fl_sink_seterr(&r->base, "%s on %s: %s", what, r->server,
		               fl_redis_error(r->c->errstr));
		return FL_TRANSIENT;
	}
	if (rep->type == REDIS_REPLY_ERROR) {
		char shown[SHM__SHOWN_LONG_MAX];
		fl_sink_seterr(&r->base, "%s on %s: %s", what, r->server,
		               shm__shown_lines(rep->str, shown));
		freeReplyObject(rep);
		return FL_TRANSIENT;
	}
	freeReplyObject(rep);
	return FL_OK;
}

/* s->errmsg: the server r is connected to is what (a Cluster node, a
 * replica...), as why (INFO's field, a reply) shows. */
static void not_primary(redis_sink *r, const char *what, const char *why)
{
	fl_sink_seterr(&r->base, "--redis %s: the server is %s (%s); "
	               "shm-flusher needs a standalone primary", r->server,
	               what, why);
}

/* The value of field name in an INFO text, into buf ("" if absent). */
static const char *info_field(const char *info, const char *name, char *buf,
                              size_t len)
{
	size_t n = strlen(name);

	for (const char *p = info; p; p = strchr(p, '\n')) {
		if (*p == '\n')
			p++;
		if (strncmp(p, name, n) == 0 && p[n] == ':') {
			snprintf(buf, len, "%.*s", (int)strcspn(p + n + 1, "\r\n"),
			         p + n + 1);
			return buf;
		}
	}
	buf[0] = 0;
	return buf;
}

/* FL_OK unless INFO says the server is no standalone primary (a reply
 * other than INFO's text proves nothing: the replies will tell). */
static int standalone_primary(redis_sink *r)
{
	redisReply *rep = redisCommand(r->c, "INFO");
	char mode[32], role[32], host[256], port[16], what[300];
	int rc = FL_OK;

	if (!rep) {
		fl_sink_seterr(&r->base, "INFO on %s: %s", r->server,
		               fl_redis_error(r->c->errstr));
		return FL_TRANSIENT;
	}
	if (rep->type != REDIS_REPLY_STRING)
		goto out;
	info_field(rep->str, "redis_mode", mode, sizeof mode);
	info_field(rep->str, "role", role, sizeof role);
	rc = FL_TRANSIENT;
	if (strcmp(mode, "cluster") == 0) {
		not_primary(r, "a Redis Cluster node", "redis_mode:cluster");
	} else if (strcmp(mode, "sentinel") == 0) {
		not_primary(r, "a Redis Sentinel", "redis_mode:sentinel");
	} else if (strcmp(role, "slave") == 0) {
		snprintf(what, sizeof what, "a replica of %s:%s",
		         info_field(rep->str, "master_host", host, sizeof host),
		         info_field(rep->str, "master_port", port, sizeof port));
		not_primary(r, what, "role:slave");
	} else {
		rc = FL_OK;
	}
out:
	freeReplyObject(rep);
	return rc;
}

static int r_connect(fl_sink *s)
{
	redis_sink *r = (redis_sink *)s;
	char err[512], select[24];
	int db = s->cfg->redis_addr.db, rc;

	if (r->c && !r->c->err)
		return FL_OK;
	r_disconnect(s);
	if (!(r->c = fl_redis_connect(s->cfg, err, sizeof err))) {
		fl_sink_seterr(s, "%s", err);
		return FL_TRANSIENT;
	}
	fl_redis_server(s->cfg, r->c, r->server);
	snprintf(select, sizeof select, "SELECT %d", db);
	if (db && (rc = simple(r, select, "SELECT %d", db)))
		goto fail;
	if ((rc = simple(r, "PING", "PING")) || (rc = standalone_primary(r)))
		goto fail;
	return FL_OK;
fail:
	r_disconnect(s);
	return rc;
}

static int r_position(fl_sink *s, uint64_t *pos)
{
	return 0; /* Redis keeps none: meta's sink.redis.applied is the truth */
}

/* An error reply that says nothing of the record: Redis cannot take this
 * write now, or refuses it whatever the record (its ACL, a command it does
 * not know: renamed or disabled). */
static bool temporary_error(const char *e)
{
	static const char *const prefixes[] = {
		"LOADING", "BUSY", "OOM", "NOREPLICAS", "MISCONF", "NOAUTH",
		"NOPERM", "WRONGPASS", "ERR unknown command", NULL};
	for (const char *const *p = prefixes; *p; p++)
		if (strncmp(e, *p, strlen(*p)) == 0)
			return true;
	return false;
}

/* What an error reply says the server is when it is no standalone primary
 * (NULL: it says nothing of that). */
static const char *misplaced(const char *e)
{
	static const struct {
		const char *prefix, *server_is;
	} t[] = {
		{"MOVED ", "a Redis Cluster node"},
		{"ASK ", "a Redis Cluster node"},
		{"CROSSSLOT ", "a Redis Cluster node"},
		{"CLUSTERDOWN ", "a Redis Cluster node"},
		{"TRYAGAIN ", "a Redis Cluster node"},
		{"READONLY ", "a read-only replica"},
		{"MASTERDOWN ", "a replica"},
	};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
		if (strncmp(e, t[i].prefix, strlen(t[i].prefix)) == 0)
			return t[i].server_is;
	return NULL;
}

/* Redis's refusal of an argument longer than its proto-max-bulk-len;
 * it closes the connection after it. */
static bool too_long(const char *e)
{
	static const char text[] = "ERR Protocol error: invalid bulk length";

	return strncmp(e, text, sizeof text - 1) == 0;
}

/* The first error reply e of a pipeline, to command c: s->errmsg and
 * b->reason say it; true if it says nothing of c's record (an outage, a
 * setup error: the batch is retried as it is). */
static bool refused(redis_sink *r, fl_batch *b, const struct cmd *c,
                    const char *e)
{
	const char *server_is = misplaced(e);
	unsigned long long seq = b->r[c->rec].seq;

	if (server_is)
		not_primary(r, server_is, e);
	else if (too_long(e))
		fl_sink_seterr(&r->base, "seq %llu: --redis %s refused a value "
		               "of %zu bytes (%s): more than its "
		               "proto-max-bulk-len", seq, r->server, c->size, e);
	else
		fl_sink_seterr(&r->base, "seq %llu: redis: %s", seq, e);
	snprintf(b->reason, sizeof b->reason, "%.*s",
	         (int)sizeof b->reason - 1, r->base.errmsg);
	return server_is || temporary_error(e);
}

/* *<argc>, for the 1 to 9 arguments our commands have. */
static int resp_argc(fl_buf *o, int argc)
{
	char s[4] = {'*', (char)('0' + argc), '\r', '\n'};

	if (argc < 1 || argc > 9)
		return EINVAL;
	return fl_buf_add(o, s, sizeof s);
}

static int resp_arg(fl_buf *o, const void *p, size_t n)
{
	if (fl_buf_add_int(o, "$", (int64_t)n, "\r\n") || fl_buf_add(o, p, n))
		return ENOMEM;
	return fl_buf_add(o, "\r\n", 2);
}

#define RESP_LIT(o, s) resp_arg((o), "" s, sizeof(s) - 1)

/* Room for one more command in r->cmd. */
static int cmd_room(redis_sink *r)
{
	if (r->n_cmd < r->cap_cmd)
		return 0;
	size_t cap = r->cap_cmd ? r->cap_cmd * 2 : 256;
	struct cmd *cmd = realloc(r->cmd, cap * sizeof *cmd);
	if (!cmd)
		return ENOMEM;
	r->cmd = cmd;
	r->cap_cmd = cap;
	return 0;
}

/* The command just written to r->out: record i's, its longest argument
 * size bytes. */
static void cmd_add(redis_sink *r, size_t i, size_t size)
{
	r->cmd[r->n_cmd++] = (struct cmd){.rec = i, .size = size};
}

/* SET key val EX <l2-ttl>, for record i. */
static int resp_set(redis_sink *r, size_t i, const void *key, size_t klen,
                    const void *val, size_t vlen)
{
	if (cmd_room(r) || resp_argc(&r->out, 5) ||
	    RESP_LIT(&r->out, "SET") || resp_arg(&r->out, key, klen) ||
	    resp_arg(&r->out, val, vlen) || RESP_LIT(&r->out, "EX") ||
	    resp_arg(&r->out, r->ttl, strlen(r->ttl)))
		return ENOMEM;
	cmd_add(r, i, vlen > klen ? vlen : klen);
	return 0;
}

/* A value, LZ4-framed above compress-threshold, as SET key val. */
static int set_value(redis_sink *r, size_t i, const char *key, size_t klen,
                     const void *data, size_t len)
{
	const void *val;
	size_t vlen;
	bool owned;
	int rc;

	if (fl_lz4_maybe(data, len, r->compress_threshold, &val,
	                 &vlen, &owned))
		return EINVAL;
	rc = resp_set(r, i, key, klen, val, vlen);
	if (owned)
		free((void *)val);
	return rc;
}

/* Appends the commands of record i (0, 1 or 2 of them) to r->out. */
static int build(redis_sink *r, fl_batch *b, size_t i)
{
	fl_rec *rec = &b->r[i];
	int rc;

	if (shm_op_is_msg(rec->op)) {
		shm_msg *m = NULL;
		char key[48];

		if ((rc = shm_msg_decode(rec->payload, rec->payload_len, &m))) {
			if (rc == ENOMEM) { /* not the record's fault */
				fl_sink_seterr(&r->base, "out of memory "
				               "(decoding seq %" PRIu64 ")",
				               rec->seq);
				return FL_TRANSIENT;
			}
			snprintf(b->reason, sizeof b->reason, "message payload "
			         "does not decode: %s", shm_errmsg());
			return FL_REJECT;
		}
		r->scratch.len = 0;
		rc = shm_msg_json_append(m, &r->scratch.p, &r->scratch.len,
		                         &r->scratch.cap, NULL, NULL);
		if (rc && rc != ENOMEM)
			snprintf(b->reason, sizeof b->reason, "message to JSON: "
			         "%s", shm_errmsg());
		memcpy(key, "msg:", 4);
		shm_uuid_format(&m->id, key + 4);
		shm_msg_free(m);
		if (rc)
			return rc == ENOMEM ? FL_TRANSIENT : FL_REJECT;
		if ((rc = set_value(r, i, key, 40, r->scratch.p,
		                    r->scratch.len)) == EINVAL)
			fl_sink_seterr(&r->base, "LZ4 compression failed");
		return rc ? FL_TRANSIENT : FL_OK;
	}
	if (rec->op != SHM_OP_STATIC_PUT && rec->op != SHM_OP_STATIC_BUST)
		return FL_OK; /* graph, marks: PostgreSQL only */
	if (rec->key_len <= 16) {
		snprintf(b->reason, sizeof b->reason, "static key of %u byte%s "
		         "has no object", rec->key_len,
		         shm__plural(rec->key_len));
		return FL_REJECT;
	}
	/* <website>-<TYPE/ID>-static and -sha */
	char web[37];
	shm_uuid wu;
	memcpy(wu.b, rec->key, 16);
	shm_uuid_format(&wu, web);
	size_t ol = rec->key_len - 16, kl = 36 + 1 + ol + 8;
	char *k1 = malloc(kl), *k2 = malloc(kl);
	shm_static *st = NULL;
	rc = FL_TRANSIENT;
	if (!k1 || !k2)
		goto out;
	int l1 = snprintf(k1, kl, "%s-%.*s-static", web, (int)ol,
	                  (const char *)rec->key + 16);
	int l2 = snprintf(k2, kl, "%s-%.*s-sha", web, (int)ol,
	                  (const char *)rec->key + 16);
	if (rec->op == SHM_OP_STATIC_BUST) {
		if (cmd_room(r) || resp_argc(&r->out, 3) ||
		    RESP_LIT(&r->out, "DEL") ||
		    resp_arg(&r->out, k1, (size_t)l1) ||
		    resp_arg(&r->out, k2, (size_t)l2))
			goto out;
		cmd_add(r, i, (size_t)l1); /* -static: the longer key */
		rc = FL_OK;
		goto out;
	}
	int drc = shm_static_decode(rec->payload, rec->payload_len, &st);
	if (drc == ENOMEM) { /* not the record's fault: rc is FL_TRANSIENT */
		fl_sink_seterr(&r->base, "out of memory (decoding seq %" PRIu64
		               ")", rec->seq);
		goto out;
	}
	if (drc) {
		snprintf(b->reason, sizeof b->reason, "static payload does not "
		         "decode: %s", shm_errmsg());
		rc = FL_REJECT;
		goto out;
	}
	const char *sha = r->sha256 ? st->sha256 : st->sha1;
	if (set_value(r, i, k1, (size_t)l1, st->content, st->content_len) ||
	    resp_set(r, i, k2, (size_t)l2, sha, strlen(sha)))
		goto out;
	rc = FL_OK;
out:
	shm_static_free(st);
	free(k1);
	free(k2);
	return rc;
}

/*
 * Writes r->out to the socket itself: handing it to hiredis would copy the
 * whole pipeline (megabytes under a backlog) into hiredis' output buffer,
 * freed again after each batch, and move what is left after each partial
 * write. hiredis' output buffer stays empty, so redisGetReply only reads.
 * A write that makes no progress within redis-timeout (SO_SNDTIMEO, set by
 * redisSetTimeout) fails. Returns 0, or the failed write's errno (ENODATA:
 * nothing written), s->errmsg saying it; the caller drops the connection
 * (half a command may have been sent).
 */
static int send_pipeline(redis_sink *r)
{
	const char *p = r->out.p;
	size_t left = r->out.len;

	while (left) {
		ssize_t n = write(r->c->fd, p, left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int err = n < 0 ? errno : ENODATA;
			fl_sink_seterr(&r->base, "pipeline of %zu commands: "
			               "write: %s", r->n_cmd,
			               err == EAGAIN || err == EWOULDBLOCK
			                       ? "timed out"
			                       : n < 0 ? strerror(err)
			                               : "nothing written");
			return err;
		}
		p += n;
		left -= (size_t)n;
	}
	return 0;
}

/* The TTL and compression threshold of this batch: the flags, or where they
 * are 0 the environment's policy as the applications set it now. */
static int batch_policy(redis_sink *r)
{
	const fl_config *cfg = r->base.cfg;
	shm_policy p = {0};

	if ((!cfg->l2_ttl_s || !cfg->compress_threshold) &&
	    shm_policy_get(r->base.env, &p))
		return -1;
	snprintf(r->ttl, sizeof r->ttl, "%lu", (unsigned long)
	         (cfg->l2_ttl_s ? cfg->l2_ttl_s : p.l2_ttl_s));
	r->compress_threshold = cfg->compress_threshold ?
	                        (uint32_t)cfg->compress_threshold :
	                        p.compress_threshold;
	return 0;
}

static int r_apply(fl_sink *s, fl_batch *b)
{
	redis_sink *r = (redis_sink *)s;
	long bad = -1;
	bool temporary = false;
	int rc = FL_OK;

	b->reject = -1;
	b->reason[0] = 0;
	if (!r->c) {
		fl_sink_seterr(s, "not connected");
		return FL_TRANSIENT;
	}
	if (batch_policy(r)) {
		fl_sink_seterr(s, "read the environment's policy: %s",
		               shm_errmsg());
		return FL_TRANSIENT;
	}
	if (fl_batch_coalesce(b)) {
		fl_sink_seterr(s, "out of memory (coalescing the batch)");
		return FL_TRANSIENT;
	}
	r->out.len = 0;
	r->n_cmd = 0;
	/* 1. every command written before anything is sent */
	for (size_t i = 0; i < b->n; i++) {
		if (b->r[i].superseded)
			continue;
		if ((rc = build(r, b, i)) != FL_OK) {
			if (rc == FL_REJECT) {
				b->reject = (long)i;
				fl_sink_seterr(s, "seq %llu: %s",
				               (unsigned long long)b->r[i].seq,
				               b->reason);
			} else if (!s->errmsg[0]) {
				fl_sink_seterr(s, "out of memory");
			}
			return rc;
		}
	}
	if (!r->n_cmd)
		return FL_OK;
	/* 2. the pipeline: sent whole, then every reply read. A server that
	 * closed the connection while it was written (EPIPE, ECONNRESET) may
	 * have answered its start: those replies are read, up to its end. */
	int werr = send_pipeline(r);
	if (werr && werr != EPIPE && werr != ECONNRESET) {
		r_disconnect(s);
		return FL_TRANSIENT;
	}
	for (size_t k = 0; k < r->n_cmd && r->c; k++) {
		redisReply *rep = NULL;
		if (redisGetReply(r->c, (void **)&rep) != REDIS_OK || !rep) {
			if (!werr)
				fl_sink_seterr(s, "pipeline of %zu commands: %s",
				               r->n_cmd,
				               fl_redis_error(r->c->errstr));
			r_disconnect(s);
			return FL_TRANSIENT;
		}
		if (rep->type != REDIS_REPLY_ERROR) {
			freeReplyObject(rep);
			continue;
		}
		if (bad < 0) {
			bad = (long)r->cmd[k].rec;
			temporary = refused(r, b, &r->cmd[k], rep->str);
		}
		if (too_long(rep->str))
			r_disconnect(s); /* the server closes it: read no more */
		freeReplyObject(rep);
	}
	if (bad >= 0) {
		rc = temporary ? FL_TRANSIENT : FL_REJECT;
		if (!temporary)
			b->reject = bad;
	}
	if (r->out.cap > (64u << 20))
		fl_buf_free(&r->out); /* do not keep a huge batch's buffer */
	return rc;
}

static void r_destroy(fl_sink *s)
{
	redis_sink *r = (redis_sink *)s;

	r_disconnect(s);
	fl_buf_free(&r->scratch);
	fl_buf_free(&r->out);
	free(r->cmd);
	free(s);
}

static const fl_sink_ops redis_ops = {
	.name = "redis",
	.connect = r_connect,
	.position = r_position,
	.apply = r_apply,
	.disconnect = r_disconnect,
	.destroy = r_destroy,
};

fl_sink *fl_redis_sink_new(const fl_config *cfg, shm_env *env)
{
	redis_sink *r = calloc(1, sizeof *r);

	if (!r)
		return NULL;
	r->base.ops = &redis_ops;
	r->base.cfg = cfg;
	r->base.env = env;
	r->sha256 = strcmp(cfg->static_sha, "sha256") == 0;
	return &r->base;
}
