/*
 * libshm/readthrough.c - L1 misses asked of Redis (L2) then PostgreSQL (L3),
 * each within its timeout; hits fill L1 (and Redis after an L3 hit).
 *
 * Invariants
 *  1. A fill is not a write: it appends no log record (L2/L3 already have
 *     the message), so nothing is sent back to PostgreSQL.
 *  2. A level costs at most its timeout per call. After a failure the level
 *     is skipped for RT_BACKOFF_MS, so a dead server costs nothing more.
 *  3. Connections belong to the handle and are used under rt->lock.
 *  4. A level answers only with the message asked for: a value holding
 *     another id is bad data, counted as that level's error like a
 *     malformed one, never served nor filled; the next level is asked.
 */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <lz4frame.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "codec.h"

#define RT_BACKOFF_MS 1000

/* The seed's SELECT, shaped as its serde JSON by PostgreSQL itself. */
#define RT_COLUMNS                                                             \
	"json_build_object('id',id,'room_id',room_id,'user_id',user_id,"       \
	"'username',username,'content',content,'message_type',message_type,"   \
	"'created_at',created_at,'updated_at',updated_at,'metadata',metadata," \
	"'parent_id',parent_id,'thread_id',thread_id)::text"

struct shm__rt {
	pthread_mutex_t lock;
	redisContext *redis;
	PGconn *pg;
	uint64_t redis_down_until, pg_down_until; /* mono ns */
};

bool shm__rt_has_l3(const shm_env *env)
{
	return env->pg_conninfo && *env->pg_conninfo;
}

static bool has_l2(const shm_env *env)
{
	return env->redis_url && *env->redis_url;
}

int shm__rt_open(shm_env *env)
{
	if (!env->redis_url && !env->pg_conninfo)
		return 0;
	if (!(env->rt = calloc(1, sizeof *env->rt)))
		return shm__err(ENOMEM, "read-through");
	pthread_mutex_init(&env->rt->lock, NULL);
	return 0; /* connections are made on first use */
}

void shm__rt_close(shm_env *env)
{
	if (!env->rt)
		return;
	if (env->rt->redis)
		redisFree(env->rt->redis);
	if (env->rt->pg)
		PQfinish(env->rt->pg);
	pthread_mutex_destroy(&env->rt->lock);
	free(env->rt);
	env->rt = NULL;
}

static struct timeval ms_tv(uint32_t ms)
{
	return (struct timeval){ms / 1000, (ms % 1000) * 1000};
}

/* Frees r; true if it was a status reply (+OK). */
static bool redis_ok(void *reply)
{
	redisReply *r = reply;
	bool ok = r && r->type == REDIS_REPLY_STATUS;
	freeReplyObject(r);
	return ok;
}

/* Connects to the address shm_env_open parsed, AUTH and SELECT included. */
static redisContext *redis_connect(const shm_redis_addr *a, uint32_t ms)
{
	struct timeval tv = ms_tv(ms);
	redisContext *c = a->unix_socket
	                          ? redisConnectUnixWithTimeout(a->host, tv)
	                          : redisConnectWithTimeout(a->host, a->port, tv);

	if (!c || c->err) {
		if (c)
			redisFree(c);
		return NULL;
	}
	redisSetTimeout(c, tv);
	if (a->password[0] &&
	    !redis_ok(a->user[0]
	                      ? redisCommand(c, "AUTH %s %s", a->user, a->password)
	                      : redisCommand(c, "AUTH %s", a->password))) {
		redisFree(c);
		return NULL;
	}
	if (a->db && !redis_ok(redisCommand(c, "SELECT %d", a->db))) {
		redisFree(c);
		return NULL;
	}
	return c;
}

/* Decodes a mirrored value: JSON, or an LZ4 frame of JSON. */
static int value_to_msg(const char *buf, size_t len, shm_msg **out)
{
	static const uint8_t magic[4] = {0x04, 0x22, 0x4d, 0x18};
	char *json = NULL;
	int rc;

	if (len >= 4 && memcmp(buf, magic, 4) == 0) {
		LZ4F_dctx *d;
		size_t cap = len * 8 + 1024, used = 0, src_off = 0;
		if (LZ4F_isError(LZ4F_createDecompressionContext(&d, LZ4F_VERSION)))
			return ENOMEM;
		json = malloc(cap);
		for (;;) {
			size_t dst = cap - used, src = len - src_off;
			if (!json) {
				LZ4F_freeDecompressionContext(d);
				return ENOMEM;
			}
			size_t r = LZ4F_decompress(d, json + used, &dst,
			                           buf + src_off, &src, NULL);
			if (LZ4F_isError(r)) {
				LZ4F_freeDecompressionContext(d);
				free(json);
				return SHM_ECORRUPT;
			}
			used += dst;
			src_off += src;
			if (r == 0)
				break;
			if (src_off >= len && dst == 0) {
				LZ4F_freeDecompressionContext(d);
				free(json);
				return SHM_ECORRUPT;
			}
			if (used == cap) {
				char *n = realloc(json, cap *= 2);
				if (!n)
					free(json);
				json = n;
			}
		}
		LZ4F_freeDecompressionContext(d);
		rc = shm_msg_from_json(json, used, out, NULL, 0);
		free(json);
	} else {
		rc = shm_msg_from_json(buf, len, out, NULL, 0);
	}
	/* The JSON's content_hash is ignored (PostgreSQL's rows are built
	 * without it): computed here, before the message is used anywhere,
	 * Redis included. */
	if (rc == 0)
		(*out)->content_hash =
			XXH3_64bits((*out)->content, (*out)->content_len);
	return rc;
}

/* A level's value for id: decoded, and the message it holds must be id's
 * (a key holding another message is bad data, never served or filled). */
static int value_for_id(const char *level, const shm_uuid *id,
                        const char *buf, size_t len, shm_msg **out)
{
	char want[37], got[37];
	int rc = value_to_msg(buf, len, out);

	if (rc || memcmp((*out)->id.b, id->b, 16) == 0)
		return rc;
	shm_uuid_format(id, want);
	shm_uuid_format(&(*out)->id, got);
	shm_msg_free(*out);
	*out = NULL;
	return shm__err(SHM_ECORRUPT, "%s value for message %s holds message %s",
	                level, want, got);
}

/* GET msg:<id> within the L2 timeout. */
static int l2_get(shm_env *env, const shm_uuid *id, shm_msg **out)
{
	struct shm__rt *rt = env->rt;
	char s[37];
	redisReply *r;
	int rc;

	if (!has_l2(env) || shm__mono_ns() < rt->redis_down_until)
		return SHM_EL2;
	if (!rt->redis &&
	    !(rt->redis = redis_connect(&env->redis_addr,
	                                 env->opt.l2_timeout_ms)))
		goto down;
	shm_uuid_format(id, s);
	r = redisCommand(rt->redis, "GET msg:%s", s);
	if (!r) {
		redisFree(rt->redis);
		rt->redis = NULL;
		goto down;
	}
	if (r->type == REDIS_REPLY_STRING)
		rc = value_for_id("Redis", id, r->str, r->len, out);
	else
		rc = r->type == REDIS_REPLY_NIL ? SHM_ENOTFOUND : SHM_EL2;
	freeReplyObject(r);
	return rc;
down:
	rt->redis_down_until = shm__mono_ns() + RT_BACKOFF_MS * 1000000ull;
	return SHM_EL2;
}

/* Waits for fd within deadline (mono ns); 0 ready, -1 timeout/error. */
static int wait_fd(int fd, short ev, uint64_t deadline)
{
	uint64_t now = shm__mono_ns();
	struct pollfd p = {fd, ev, 0};
	if (now >= deadline)
		return -1;
	int ms = (int)((deadline - now + 999999) / 1000000);
	return poll(&p, 1, ms) == 1 ? 0 : -1;
}

/*
 * Starts a connection with the session time zone set to UTC, added to the
 * conninfo's own options (keyword/value or URI form alike). Timestamps come
 * back with their offset and are exact whatever the zone; UTC keeps every
 * offset to hours and minutes.
 */
static PGconn *pg_start(const char *conninfo)
{
	static const char tz[] = "-c TimeZone=UTC";
	PQconninfoOption *opts = PQconninfoParse(conninfo, NULL), *o;
	const char *keys[64], *vals[64];
	char *options = NULL;
	int n = 0;
	PGconn *c = NULL;

	if (!opts)
		return NULL;
	for (o = opts; o->keyword && n < 62; o++) {
		if (!o->val || !*o->val)
			continue;
		if (strcmp(o->keyword, "options") == 0) {
			if (!(options = malloc(strlen(o->val) + sizeof tz + 1)))
				goto out;
			sprintf(options, "%s %s", o->val, tz);
			continue;
		}
		keys[n] = o->keyword;
		vals[n++] = o->val;
	}
	keys[n] = "options";
	vals[n++] = options ? options : tz;
	keys[n] = vals[n] = NULL;
	c = PQconnectStartParams(keys, vals, 0);
out:
	free(options);
	PQconninfoFree(opts);
	return c;
}

static PGconn *pg_connect(shm_env *env, uint64_t deadline)
{
	PGconn *c = pg_start(env->pg_conninfo);

	if (!c || PQstatus(c) == CONNECTION_BAD)
		goto fail;
	for (;;) {
		PostgresPollingStatusType st = PQconnectPoll(c);
		if (st == PGRES_POLLING_OK)
			return c;
		if (st == PGRES_POLLING_FAILED)
			goto fail;
		if (wait_fd(PQsocket(c), st == PGRES_POLLING_READING ? POLLIN
		                                                      : POLLOUT,
		            deadline))
			goto fail;
	}
fail:
	if (c)
		PQfinish(c);
	return NULL;
}

/* Runs one query with params within deadline; NULL on error/timeout. */
static PGresult *pg_query(PGconn *c, const char *sql, int n,
                          const char *const *params, uint64_t deadline)
{
	PGresult *res = NULL, *last = NULL;

	if (!PQsendQueryParams(c, sql, n, NULL, params, NULL, NULL, 0))
		return NULL;
	for (;;) {
		while (!PQisBusy(c)) {
			res = PQgetResult(c);
			if (!res)
				return last;
			PQclear(last);
			last = res;
		}
		if (wait_fd(PQsocket(c), POLLIN, deadline) || !PQconsumeInput(c)) {
			/* No PQcancel: it connects and waits for the server
			 * with no timeout, so a stopped server would hang the
			 * caller. The caller drops the connection instead. */
			PQclear(last);
			return NULL;
		}
	}
}

static PGresult *l3_query(shm_env *env, const char *sql, int n,
                          const char *const *params)
{
	struct shm__rt *rt = env->rt;
	uint64_t deadline =
		shm__mono_ns() + (uint64_t)env->opt.l3_timeout_ms * 1000000ull;
	PGresult *res;

	if (!shm__rt_has_l3(env) || shm__mono_ns() < rt->pg_down_until)
		return NULL;
	if (!rt->pg && !(rt->pg = pg_connect(env, deadline)))
		goto down;
	res = pg_query(rt->pg, sql, n, params, deadline);
	if (res && PQresultStatus(res) == PGRES_TUPLES_OK)
		return res;
	PQclear(res);
	PQfinish(rt->pg); /* unknown state after a timeout: reconnect later */
	rt->pg = NULL;
down:
	rt->pg_down_until = shm__mono_ns() + RT_BACKOFF_MS * 1000000ull;
	return NULL;
}

static int l3_get(shm_env *env, const shm_uuid *id, shm_msg **out)
{
	char s[37];
	const char *params[1] = {s};
	PGresult *res;
	int rc;

	shm_uuid_format(id, s);
	res = l3_query(env, "SELECT " RT_COLUMNS " FROM messages WHERE id = $1",
	               1, params);
	if (!res)
		return SHM_EL3;
	if (PQntuples(res) == 0)
		rc = SHM_ENOTFOUND;
	else
		rc = value_for_id("PostgreSQL", id, PQgetvalue(res, 0, 0),
		                  (size_t)PQgetlength(res, 0, 0), out);
	PQclear(res);
	return rc;
}

/* After an L3 hit, Redis gets the message too (JSON, LZ4 above the
 * threshold), with the L2 TTL. Best effort: L3 stays the truth. */
static void l2_set(shm_env *env, const shm_msg *m)
{
	struct shm__rt *rt = env->rt;
	char s[37], *json = NULL;
	size_t len;
	void *val;
	size_t vlen;
	uint8_t *z = NULL;
	redisReply *r;

	if (!has_l2(env) || !rt->redis || shm_msg_to_json(m, &json, &len))
		return;
	val = json;
	vlen = len;
	if (len > env->opt.compress_threshold) {
		size_t bound = LZ4F_compressFrameBound(len, NULL);
		if ((z = malloc(bound))) {
			size_t n = LZ4F_compressFrame(z, bound, json, len, NULL);
			if (!LZ4F_isError(n)) {
				val = z;
				vlen = n;
			}
		}
	}
	shm_uuid_format(&m->id, s);
	r = redisCommand(rt->redis, "SET msg:%s %b EX %u", s, val, vlen,
	                 env->opt.l2_ttl_s);
	if (!r) {
		redisFree(rt->redis);
		rt->redis = NULL;
	}
	freeReplyObject(r);
	free(z);
	free(json);
}

int shm__rt_get(shm_env *env, const shm_uuid *id, shm_msg **out)
{
	struct shm__rt *rt = env->rt;
	shm_msg *m = NULL;
	uint64_t inval;
	int rc;

	if (!rt)
		return SHM_ENOTFOUND;
	/* An invalidation arriving while we fetch may concern this key: then
	 * the value is served but not cached (it may be the old version). */
	inval = __atomic_load_n(&env->shared->c.inval_received, __ATOMIC_ACQUIRE);
	pthread_mutex_lock(&rt->lock);
	rc = l2_get(env, id, &m);
	if (rc == 0) {
		SHM__COUNT(env, l2_hits, 1);
	} else {
		if (rc == SHM_ENOTFOUND)
			SHM__COUNT(env, l2_misses, 1);
		else if (has_l2(env))
			SHM__COUNT(env, l2_errors, 1);
		rc = l3_get(env, id, &m);
		if (rc == 0) {
			SHM__COUNT(env, l3_hits, 1);
			l2_set(env, m);
		} else if (rc == SHM_ENOTFOUND) {
			SHM__COUNT(env, l3_misses, 1);
		} else if (shm__rt_has_l3(env)) {
			SHM__COUNT(env, l3_errors, 1);
		}
	}
	pthread_mutex_unlock(&rt->lock);
	if (rc == SHM_EL2 || rc == SHM_EL3)
		rc = SHM_ENOTFOUND; /* no level could answer */
	if (rc)
		return rc;
	if (__atomic_load_n(&env->shared->c.inval_received, __ATOMIC_ACQUIRE) ==
	    inval)
		shm__msg_fill(env, m); /* L1 full of unflushed work: serve anyway */
	*out = m;
	return 0;
}

int shm__rt_room_page(shm_env *env, const char *room, int64_t before,
                      uint32_t limit, shm_msg ***out, size_t *n)
{
	char lim[16], bef[40];
	const char *params[3] = {room, lim, bef};
	shm_msg **msgs;
	PGresult *res;
	int rc = 0, rows;

	snprintf(lim, sizeof lim, "%u", limit);
	shm_time_format(before > 0 ? before : INT64_C(253402300799000000), bef);
	pthread_mutex_lock(&env->rt->lock);
	res = l3_query(env,
	               "SELECT " RT_COLUMNS " FROM messages WHERE room_id = $1 "
	               "AND created_at < $3::timestamptz "
	               "ORDER BY created_at DESC, id DESC LIMIT $2::int",
	               3, params);
	pthread_mutex_unlock(&env->rt->lock);
	if (!res) {
		SHM__COUNT(env, l3_errors, 1);
		return SHM_EL3;
	}
	rows = PQntuples(res);
	if (!(msgs = calloc((size_t)rows + 1, sizeof *msgs))) {
		PQclear(res);
		return shm__err(ENOMEM, "room page");
	}
	for (int i = 0; i < rows && !rc; i++)
		rc = value_to_msg(PQgetvalue(res, i, 0),
		                  (size_t)PQgetlength(res, i, 0), &msgs[i]);
	PQclear(res);
	if (rc) {
		shm_msgs_free(msgs, (size_t)rows);
		return shm__err(SHM_EL3, "room page from PostgreSQL: bad row");
	}
	*out = msgs;
	*n = (size_t)rows;
	return 0;
}
