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
 * Redis keeps no position of its own: every command is idempotent and the
 * batch is replayed whole after a crash, so at-least-once yields the same
 * final state. Connection loss and timeouts are FL_TRANSIENT; an error reply
 * to a command is FL_REJECT naming its record, unless Redis says it is
 * temporary (LOADING, BUSY, OOM, READONLY, MASTERDOWN, TRYAGAIN...).
 */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fl.h"

typedef struct redis_sink {
	fl_sink base;
	redisContext *c;
	fl_redis_addr addr;
	char ttl[24];  /* EX argument, l2-ttl seconds */
	bool sha256;   /* static-sha = sha256 */
	fl_buf scratch; /* a message's JSON (shm_msg_json_append) */
} redis_sink;

/* One command of the pipeline, argv-style, with what it owns. */
typedef struct rcmd {
	size_t rec;          /* index in the batch */
	int argc;
	const char *argv[5];
	size_t argvlen[5];
	void *own[3];
} rcmd;

int fl_redis_addr_parse(const char *url, fl_redis_addr *a, char *err,
                        size_t errlen)
{
	memset(a, 0, sizeof *a);
	if (strncmp(url, "unix://", 7) == 0) {
		const char *p = url + 7, *q = strchr(p, '?');
		size_t len = q ? (size_t)(q - p) : strlen(p);
		if (!len || *p != '/' || len >= sizeof a->host) {
			snprintf(err, errlen, "redis URL '%s': expected "
			         "unix:///absolute/path[?db=N]", url);
			return -1;
		}
		memcpy(a->host, p, len);
		a->unix_socket = true;
		if (q) {
			char *end;
			if (strncmp(q, "?db=", 4) != 0 ||
			    (a->db = (int)strtol(q + 4, &end, 10), *end) ||
			    a->db < 0) {
				snprintf(err, errlen, "redis URL '%s': bad "
				         "?db=N", url);
				return -1;
			}
		}
		return 0;
	}
	if (strncmp(url, "redis://", 8) != 0) {
		snprintf(err, errlen, "redis URL '%s': expected redis://host"
		         "[:port][/db] or unix:///path", url);
		return -1;
	}
	const char *p = url + 8, *at = strchr(p, '@'), *slash;
	if (at) {
		const char *colon = memchr(p, ':', (size_t)(at - p));
		const char *pw = colon ? colon + 1 : p;
		size_t pl = (size_t)(at - pw);
		if (pl >= sizeof a->password) {
			snprintf(err, errlen, "redis URL: password too long");
			return -1;
		}
		memcpy(a->password, pw, pl);
		p = at + 1;
	}
	slash = strchr(p, '/');
	size_t hl = slash ? (size_t)(slash - p) : strlen(p);
	const char *colon = memchr(p, ':', hl);
	size_t hostl = colon ? (size_t)(colon - p) : hl;
	if (!hostl || hostl >= sizeof a->host) {
		snprintf(err, errlen, "redis URL '%s': no host", url);
		return -1;
	}
	memcpy(a->host, p, hostl);
	a->port = 6379;
	if (colon) {
		char *end;
		long port = strtol(colon + 1, &end, 10);
		if (end != p + hl || port <= 0 || port > 65535) {
			snprintf(err, errlen, "redis URL '%s': bad port", url);
			return -1;
		}
		a->port = (int)port;
	}
	if (slash && slash[1]) {
		char *end;
		long db = strtol(slash + 1, &end, 10);
		if (*end || db < 0 || db > 100000) {
			snprintf(err, errlen, "redis URL '%s': bad db", url);
			return -1;
		}
		a->db = (int)db;
	}
	return 0;
}

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
		fl_sink_seterr(&r->base, "%s: %s", what, r->c->errstr);
		return FL_TRANSIENT;
	}
	if (rep->type == REDIS_REPLY_ERROR) {
		fl_sink_seterr(&r->base, "%s: %s", what, rep->str);
		freeReplyObject(rep);
		return FL_TRANSIENT;
	}
	freeReplyObject(rep);
	return FL_OK;
}

static int r_connect(fl_sink *s)
{
	redis_sink *r = (redis_sink *)s;
	uint64_t ms = s->cfg->redis_timeout_ms;
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
	int rc;

	if (r->c && !r->c->err)
		return FL_OK;
	r_disconnect(s);
	r->c = r->addr.unix_socket
	               ? redisConnectUnixWithTimeout(r->addr.host, tv)
	               : redisConnectWithTimeout(r->addr.host, r->addr.port, tv);
	if (!r->c || r->c->err) {
		fl_sink_seterr(s, "connect %s: %s", s->cfg->redis_url,
		               r->c ? r->c->errstr : "out of memory");
		r_disconnect(s);
		return FL_TRANSIENT;
	}
	redisSetTimeout(r->c, tv);
	if (r->addr.password[0] &&
	    (rc = simple(r, "AUTH", "AUTH %s", r->addr.password)))
		goto fail;
	if (r->addr.db && (rc = simple(r, "SELECT", "SELECT %d", r->addr.db)))
		goto fail;
	if ((rc = simple(r, "PING", "PING")))
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

static void cmds_free(rcmd *cmds, size_t n)
{
	for (size_t i = 0; i < n; i++)
		for (int j = 0; j < 3; j++)
			free(cmds[i].own[j]);
	free(cmds);
}

static bool temporary_error(const char *e)
{
	static const char *const prefixes[] = {
		"LOADING", "BUSY", "OOM", "READONLY", "MASTERDOWN",
		"TRYAGAIN", "CLUSTERDOWN", "NOREPLICAS", "MISCONF", "NOAUTH",
		"NOPERM", "WRONGPASS", NULL};
	for (const char *const *p = prefixes; *p; p++)
		if (strncmp(e, *p, strlen(*p)) == 0)
			return true;
	return false;
}

/* Builds the commands for record i (0, 1 or 2 of them). */
static int build(redis_sink *r, fl_batch *b, size_t i, rcmd *cmds,
                 size_t *n)
{
	const fl_config *cfg = r->base.cfg;
	fl_rec *rec = &b->r[i];
	const char *ttl = r->ttl;
	int rc = 0;

	if (shm_op_is_msg(rec->op)) {
		shm_msg *m = NULL;
		char *json = NULL, id[37];
		size_t jlen;
		const void *val;
		size_t vlen;
		bool owned;
		rcmd *c = &cmds[(*n)];

		if ((rc = shm_msg_decode(rec->payload, rec->payload_len, &m))) {
			snprintf(b->reason, sizeof b->reason, "message payload "
			         "does not decode: %s", shm_errmsg());
			return FL_REJECT;
		}
		/* into the reused scratch buffer, then a copy the command
		 * owns */
		r->scratch.len = 0;
		rc = shm_msg_json_append(m, &r->scratch.p, &r->scratch.len,
		                         &r->scratch.cap, NULL, NULL);
		if (rc == 0) {
			json = malloc(r->scratch.len + 1);
			if (json)
				memcpy(json, r->scratch.p, r->scratch.len + 1);
			jlen = r->scratch.len;
		}
		if (rc == ENOMEM || (rc == 0 && !json)) {
			shm_msg_free(m);
			fl_sink_seterr(&r->base, "out of memory");
			return FL_TRANSIENT;
		}
		if (rc) {
			snprintf(b->reason, sizeof b->reason, "message to JSON: "
			         "%s", shm_errmsg());
			shm_msg_free(m);
			return FL_REJECT;
		}
		shm_uuid_format(&m->id, id);
		shm_msg_free(m);
		if (fl_lz4_maybe(json, jlen, cfg->compress_threshold, &val,
		                 &vlen, &owned)) {
			free(json);
			fl_sink_seterr(&r->base, "LZ4 compression failed");
			return FL_TRANSIENT;
		}
		memset(c, 0, sizeof *c);
		c->rec = i;
		c->own[0] = malloc(41);
		c->own[1] = json;
		c->own[2] = owned ? (void *)val : NULL;
		if (!c->own[0]) {
			free(json);
			free(c->own[2]);
			return FL_TRANSIENT;
		}
		snprintf(c->own[0], 41, "msg:%s", id);
		c->argc = 5;
		c->argv[0] = "SET"; c->argvlen[0] = 3;
		c->argv[1] = c->own[0]; c->argvlen[1] = strlen(c->own[0]);
		c->argv[2] = val; c->argvlen[2] = vlen;
		c->argv[3] = "EX"; c->argvlen[3] = 2;
		c->argv[4] = ttl; c->argvlen[4] = strlen(ttl);
		(*n)++;
		return FL_OK;
	}
	if (rec->op != SHM_OP_STATIC_PUT && rec->op != SHM_OP_STATIC_BUST)
		return FL_OK; /* graph, marks: PostgreSQL only */
	if (rec->key_len <= 16) {
		snprintf(b->reason, sizeof b->reason, "static key of %u bytes "
		         "has no object", rec->key_len);
		return FL_REJECT;
	}
	char web[37];
	shm_uuid wu;
	memcpy(wu.b, rec->key, 16);
	shm_uuid_format(&wu, web);
	size_t ol = rec->key_len - 16, kl = 36 + 1 + ol + 8;
	char *k1 = malloc(kl), *k2 = malloc(kl);
	if (!k1 || !k2) {
		free(k1);
		free(k2);
		return FL_TRANSIENT;
	}
	snprintf(k1, kl, "%s-%.*s-static", web, (int)ol,
	         (const char *)rec->key + 16);
	snprintf(k2, kl, "%s-%.*s-sha", web, (int)ol,
	         (const char *)rec->key + 16);
	rcmd *c1 = &cmds[*n], *c2 = &cmds[*n + 1];
	memset(c1, 0, sizeof *c1);
	memset(c2, 0, sizeof *c2);
	c1->rec = c2->rec = i;
	if (rec->op == SHM_OP_STATIC_BUST) {
		c1->own[0] = k1;
		c1->own[1] = k2;
		c1->argc = 3;
		c1->argv[0] = "DEL"; c1->argvlen[0] = 3;
		c1->argv[1] = k1; c1->argvlen[1] = strlen(k1);
		c1->argv[2] = k2; c1->argvlen[2] = strlen(k2);
		(*n)++;
		return FL_OK;
	}
	shm_static *st = NULL;
	if (shm_static_decode(rec->payload, rec->payload_len, &st)) {
		snprintf(b->reason, sizeof b->reason, "static payload does not "
		         "decode: %s", shm_errmsg());
		free(k1);
		free(k2);
		return FL_REJECT;
	}
	const void *val;
	size_t vlen;
	bool owned;
	if (fl_lz4_maybe(st->content, st->content_len, cfg->compress_threshold,
	                 &val, &vlen, &owned)) {
		shm_static_free(st);
		free(k1);
		free(k2);
		return FL_TRANSIENT;
	}
	if (!owned) { /* the content dies with st: copy it */
		void *cp = malloc(vlen ? vlen : 1);
		if (!cp) {
			shm_static_free(st);
			free(k1);
			free(k2);
			return FL_TRANSIENT;
		}
		memcpy(cp, val, vlen);
		val = cp;
	}
	char *sha = strdup(r->sha256 ? st->sha256 : st->sha1);
	shm_static_free(st);
	c1->own[0] = k1;
	c1->own[1] = (void *)val;
	c2->own[0] = k2;
	c2->own[1] = sha;
	if (!sha)
		return (*n) += 2, FL_TRANSIENT;
	c1->argc = c2->argc = 5;
	c1->argv[0] = c2->argv[0] = "SET";
	c1->argvlen[0] = c2->argvlen[0] = 3;
	c1->argv[1] = k1; c1->argvlen[1] = strlen(k1);
	c1->argv[2] = val; c1->argvlen[2] = vlen;
	c2->argv[1] = k2; c2->argvlen[1] = strlen(k2);
	c2->argv[2] = sha; c2->argvlen[2] = strlen(sha);
	c1->argv[3] = c2->argv[3] = "EX";
	c1->argvlen[3] = c2->argvlen[3] = 2;
	c1->argv[4] = c2->argv[4] = ttl;
	c1->argvlen[4] = c2->argvlen[4] = strlen(ttl);
	(*n) += 2;
	return FL_OK;
}

static int r_apply(fl_sink *s, fl_batch *b)
{
	redis_sink *r = (redis_sink *)s;
	rcmd *cmds;
	size_t n = 0, sent = 0;
	long bad = -1;
	bool temporary = false;
	int rc = FL_OK;

	b->reject = -1;
	b->reason[0] = 0;
	if (!r->c) {
		fl_sink_seterr(s, "not connected");
		return FL_TRANSIENT;
	}
	fl_batch_coalesce(b);
	if (!(cmds = calloc(b->n * 2 + 1, sizeof *cmds))) {
		fl_sink_seterr(s, "out of memory");
		return FL_TRANSIENT;
	}
	/* 1. every command built before anything is sent */
	for (size_t i = 0; i < b->n; i++) {
		if (b->r[i].superseded)
			continue;
		if ((rc = build(r, b, i, cmds, &n)) != FL_OK) {
			if (rc == FL_REJECT) {
				b->reject = (long)i;
				fl_sink_seterr(s, "seq %llu: %s",
				               (unsigned long long)b->r[i].seq,
				               b->reason);
			} else if (!s->errmsg[0]) {
				fl_sink_seterr(s, "out of memory");
			}
			goto out;
		}
	}
	if (!n)
		goto out;
	/* 2. the pipeline: every command appended, then every reply read */
	for (size_t k = 0; k < n; k++) {
		if (redisAppendCommandArgv(r->c, cmds[k].argc, cmds[k].argv,
		                           cmds[k].argvlen) != REDIS_OK) {
			fl_sink_seterr(s, "append: %s", r->c->errstr);
			rc = FL_TRANSIENT;
			goto out;
		}
	}
	for (sent = 0; sent < n; sent++) {
		redisReply *rep = NULL;
		if (redisGetReply(r->c, (void **)&rep) != REDIS_OK || !rep) {
			fl_sink_seterr(s, "pipeline of %zu commands: %s", n,
			               r->c->errstr[0] ? r->c->errstr
			                               : "connection lost");
			rc = FL_TRANSIENT;
			r_disconnect(s);
			goto out;
		}
		if (rep->type == REDIS_REPLY_ERROR && bad < 0) {
			bad = (long)cmds[sent].rec;
			temporary = temporary_error(rep->str);
			snprintf(b->reason, sizeof b->reason, "redis: %s",
			         rep->str);
			fl_sink_seterr(s, "seq %llu: %s",
			               (unsigned long long)b->r[bad].seq,
			               b->reason);
		}
		freeReplyObject(rep);
	}
	if (bad >= 0) {
		rc = temporary ? FL_TRANSIENT : FL_REJECT;
		if (!temporary)
			b->reject = bad;
	}
out:
	cmds_free(cmds, n);
	return rc;
}

static void r_destroy(fl_sink *s)
{
	r_disconnect(s);
	fl_buf_free(&((redis_sink *)s)->scratch);
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
	char err[256];

	if (!r)
		return NULL;
	r->base.ops = &redis_ops;
	r->base.cfg = cfg;
	r->base.env = env;
	if (fl_redis_addr_parse(cfg->redis_url, &r->addr, err, sizeof err)) {
		free(r);
		return NULL;
	}
	snprintf(r->ttl, sizeof r->ttl, "%llu",
	         (unsigned long long)cfg->l2_ttl_s);
	r->sha256 = strcmp(cfg->static_sha, "sha256") == 0;
	return &r->base;
}
