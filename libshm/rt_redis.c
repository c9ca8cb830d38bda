/*
 * libshm/rt_redis.c - the read-through's Redis (L2): non-blocking
 * connections whose every exchange runs against a deadline, the GET of a
 * message, and the fill after an L3 hit.
 */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <lz4frame.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "readthrough.h"

#define RT_SMALL_REPLY 4096   /* bytes of a reply to AUTH, SELECT, SET */

void shm__rt_redis_server(const shm_env *env, char *buf, size_t len)
{
	const shm_redis_addr *a = &env->redis_addr;
	char shown[SHM__SHOWN_LONG_MAX];

	if (a->unix_socket) /* a path; a host name is checked at open */
		snprintf(buf, len, "%s",
		         shm__shown_long(a->host, strlen(a->host), shown));
	else if (strcmp(a->host, env->redis_ip) == 0)
		snprintf(buf, len, "%s:%d", a->host, a->port);
	else
		snprintf(buf, len, "%s:%d (%s)", a->host, a->port,
		         env->redis_ip);
}

/* ---- Redis: non-blocking connections, each exchange against a deadline */

/*
 * Sends cmd (len bytes) on c before deadline with send(MSG_NOSIGNAL): a
 * connection the server ended (a restart, its idle timeout) is EPIPE, an
 * error, where hiredis' own write() raised SIGPIPE, which ends an
 * application that did not ask to ignore it. 0; ECONNRESET when the
 * server ended the connection (EPIPE, a reset), SHM_EL2 on another I/O
 * error, c->errstr saying which as hiredis would; ETIMEDOUT at the
 * deadline.
 */
static int redis_send(redisContext *c, const char *cmd, size_t len,
                      uint64_t deadline)
{
	while (len) {
		ssize_t n = send(c->fd, cmd, len, MSG_NOSIGNAL);
		if (n > 0) {
			cmd += n;
			len -= (size_t)n;
		} else if (errno == EAGAIN || errno == EWOULDBLOCK) {
			if (shm__rt_wait_fd(c->fd, POLLOUT, deadline))
				return ETIMEDOUT;
		} else if (errno != EINTR) {
			int err = errno;
			c->err = REDIS_ERR_IO;
			snprintf(c->errstr, sizeof c->errstr, "%s",
			         strerror(err));
			return err == EPIPE || err == ECONNRESET ? ECONNRESET
			                                         : SHM_EL2;
		}
	}
	return 0;
}

/*
 * Reads one reply from c before deadline: 0 and *out; ECONNRESET when the
 * server ended the connection (its end of file, a reset), SHM_EL2 on
 * another error (c->errstr says which); ETIMEDOUT at the deadline;
 * SHM_ECORRUPT as soon as the reply pending passes max bytes (a bulk
 * string is parsed only once whole: the reader's unparsed bytes are the
 * reply so far). c is unusable after an error.
 */
static int redis_reply(redisContext *c, uint64_t deadline, size_t max,
                       redisReply **out)
{
	void *r = NULL;

	for (;;) {
		if (redisGetReplyFromReader(c, &r) != REDIS_OK)
			return SHM_EL2;
		if (r) {
			*out = r;
			return 0;
		}
		if (c->reader->len - c->reader->pos > max)
			return SHM_ECORRUPT;
		if (shm__rt_wait_fd(c->fd, POLLIN, deadline))
			return ETIMEDOUT;
		if (redisBufferRead(c) != REDIS_OK) /* errno: read()'s */
			return c->err == REDIS_ERR_EOF ||
			               (c->err == REDIS_ERR_IO &&
			                errno == ECONNRESET)
			       ? ECONNRESET
			       : SHM_EL2;
	}
}

/* cmd (len bytes, hiredis's format) sent on c, and its reply:
 * redis_send's and redis_reply's codes. */
static int redis_exchange(redisContext *c, const char *cmd, size_t len,
                          uint64_t deadline, size_t max, redisReply **out)
{
	int rc = redis_send(c, cmd, len, deadline);
	return rc ? rc : redis_reply(c, deadline, max, out);
}

/* One command (hiredis's format) and its reply: redis_send's and
 * redis_reply's codes. */
static int redis_call(redisContext *c, uint64_t deadline, size_t max,
                      redisReply **out, const char *fmt, ...)
{
	va_list ap;
	char *cmd;
	int len, rc;

	va_start(ap, fmt);
	len = redisvFormatCommand(&cmd, fmt, ap);
	va_end(ap);
	if (len < 0) {
		c->err = REDIS_ERR_OOM;
		snprintf(c->errstr, sizeof c->errstr, "Out of memory");
		return SHM_EL2;
	}
	rc = redis_exchange(c, cmd, (size_t)len, deadline, max, out);
	redisFreeCommand(cmd);
	return rc;
}

/* code: what failed (a connection "to", a command "on": prep) and the
 * Redis server, never its password, with the first line of hiredis's or
 * the server's text (NULL: none). */
static int l2_err(const shm_env *env, int code, const char *what,
                  const char *prep, const char *text)
{
	char shown[SHM__SHOWN_LONG_MAX];

	if (!text || !*text)
		text = "no reason given";
	return shm__err(code, "Redis %s %s %s: %s", what, prep,
	                env->rt->l2.server,
	                shm__shown_long(text, strcspn(text, "\r\n"), shown));
}

/* SHM_EL2 for a redis_exchange's failure rc (not SHM_ECORRUPT) on c. */
static int l2_failed(const shm_env *env, const char *what,
                     const redisContext *c, int rc)
{
	if (rc == ETIMEDOUT)
		return shm__rt_late(&env->rt->l2, what, "on",
		                    env->rt->l2.server);
	return l2_err(env, SHM_EL2, what, "on", c->errstr);
}

/* 0 if a redis_call of the connection's setup came back in time with +OK,
 * else SHM_EL2 naming what failed and the server (a reply too big is one);
 * frees the reply. */
static int redis_status(const shm_env *env, const char *what,
                        const redisContext *c, int rc, redisReply *r)
{
	if (rc == SHM_ECORRUPT)
		return l2_err(env, SHM_EL2, what, "on", "reply too long");
	if (rc)
		return l2_failed(env, what, c, rc);
	if (r->type == REDIS_REPLY_STATUS)
		rc = 0;
	else if (r->type == REDIS_REPLY_ERROR)
		rc = l2_err(env, SHM_EL2, what, "on", r->str);
	else
		rc = l2_err(env, SHM_EL2, what, "on", "not a status reply");
	freeReplyObject(r);
	return rc;
}

/* The error of a non-blocking connect once fd is writable: 0 if none. */
static int connect_error(int fd)
{
	int err = 0;
	socklen_t len = sizeof err;
	return getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) ? errno : err;
}

/* SHM_EL2 naming the address env->redis_addr could not be reached at (a
 * host name with the address it resolved to at open). */
static int connect_failed(const shm_env *env, const char *why)
{
	return l2_err(env, SHM_EL2, "connection", "to", why);
}

/* Connects to the address shm_env_open parsed and resolved (hiredis is
 * given it numeric: no DNS), AUTH and SELECT included, before deadline: 0
 * and *out, or SHM_EL2 with the reason. */
static int redis_connect(const shm_env *env, uint64_t deadline,
                         redisContext **out)
{
	const shm_redis_addr *a = &env->redis_addr;
	redisContext *c = a->unix_socket
	                          ? redisConnectUnixNonBlock(a->host)
	                          : redisConnectNonBlock(env->redis_ip, a->port);
	redisReply *r = NULL;
	int rc, err;

	if (!c)
		return connect_failed(env, "out of memory");
	if (c->err)
		rc = connect_failed(env, c->errstr);
	else if (shm__rt_wait_fd(c->fd, POLLOUT, deadline))
		rc = shm__rt_late(&env->rt->l2, "connection", "to",
		                  env->rt->l2.server);
	else if ((err = connect_error(c->fd)))
		rc = connect_failed(env, strerror(err));
	else
		rc = 0;
	if (rc == 0 && a->password[0]) {
		rc = a->user[0] ? redis_call(c, deadline, RT_SMALL_REPLY, &r,
		                             "AUTH %s %s", a->user, a->password)
		                : redis_call(c, deadline, RT_SMALL_REPLY, &r,
		                             "AUTH %s", a->password);
		rc = redis_status(env, "AUTH", c, rc, r);
	}
	if (rc == 0 && a->db) {
		char select[24];
		snprintf(select, sizeof select, "SELECT %d", a->db);
		rc = redis_call(c, deadline, RT_SMALL_REPLY, &r, "SELECT %d",
		                a->db);
		rc = redis_status(env, select, c, rc, r);
	}
	if (rc == 0)
		*out = c;
	else
		redisFree(c);
	return rc;
}

/* A new Redis connection in the caller's slot of L2's pool before
 * deadline: 0 and *c, or SHM_EL2 with the reason, the slot given back and
 * L2 skipped for a while. */
static int l2_connect(shm_env *env, uint64_t deadline, redisContext **c)
{
	int rc = redis_connect(env, deadline, c);

	if (rc)
		shm__rt_pool_drop(&env->rt->l2, NULL, true);
	return rc;
}

/* A Redis connection for this caller before deadline: 0 and *c, *reused
 * saying whether it comes from the pool; or SHM_EL2 with the reason: L2
 * is skipped, all its connections stay busy, or it cannot be reached
 * (then it is skipped for a while). */
static int l2_take(shm_env *env, uint64_t deadline, redisContext **c,
                   bool *reused)
{
	void *v;
	int rc;

	if ((rc = shm__rt_pool_take(&env->rt->l2, deadline, &v)))
		return shm__rt_take_failed(&env->rt->l2, rc);
	if ((*reused = v != NULL)) {
		*c = v;
		return 0;
	}
	return l2_connect(env, deadline, c);
}

/*
 * A command (hiredis's format, what naming it in messages) on a connection
 * of L2's pool before deadline: 0 and *r, its reply of at most max bytes,
 * the connection given back. A pooled connection the server ended is
 * replaced once (rt_pool.c invariant 3). Else the connection is dropped
 * and the code is SHM_ECORRUPT, no text set, for a reply over max (bad
 * data: the caller says); SHM_EL2 with the reason, L2 skipped for a while,
 * for a failure; ENOMEM.
 */
static int l2_call(shm_env *env, uint64_t deadline, size_t max,
                   redisReply **r, const char *what, const char *fmt, ...)
{
	struct rt_pool *p = &env->rt->l2;
	redisContext *c = NULL;
	bool reused = false;
	va_list ap;
	char *cmd;
	int len, rc;

	va_start(ap, fmt);
	len = redisvFormatCommand(&cmd, fmt, ap);
	va_end(ap);
	if (len < 0)
		return shm__err(ENOMEM, "Redis %s", what);
	if ((rc = l2_take(env, deadline, &c, &reused)))
		goto out;
	for (;;) {
		rc = redis_exchange(c, cmd, (size_t)len, deadline, max, r);
		if (rc != ECONNRESET || !reused)
			break;
		redisFree(c); /* its slot stays this caller's */
		reused = false;
		if ((rc = l2_connect(env, deadline, &c)))
			goto out;
	}
	if (rc == 0) {
		shm__rt_pool_give(p, c);
	} else {
		if (rc != SHM_ECORRUPT)
			rc = l2_failed(env, what, c, rc);
		shm__rt_pool_drop(p, c, rc != SHM_ECORRUPT);
	}
out:
	redisFreeCommand(cmd);
	return rc;
}

/* ---- L2 */

/* A WRONGTYPE error reply: the key holds another type than a string. */
static bool wrong_type(const redisReply *r)
{
	return r->type == REDIS_REPLY_ERROR && r->len >= 9 &&
	       memcmp(r->str, "WRONGTYPE", 9) == 0;
}

int shm__rt_l2_get(shm_env *env, const shm_uuid *id,
                   uint64_t deadline, shm_msg **out)
{
	size_t max = shm__rt_redis_value_max(env);
	redisReply *r;
	char s[37];
	int rc;

	shm_uuid_format(id, s);
	if ((rc = l2_call(env, deadline, max, &r, "GET", "GET msg:%s", s)))
		/* a reply too big is bad data, not a failed server */
		return rc == SHM_ECORRUPT
		               ? shm__err(rc, "Redis value: over %zu bytes, "
		                          "larger than any message's", max)
		               : rc;
	if (r->type == REDIS_REPLY_STRING)
		rc = shm__rt_level_msg(env, "Redis", id, NULL, r->str, r->len,
		                       out);
	else if (r->type == REDIS_REPLY_NIL)
		rc = SHM_ENOTFOUND;
	else if (r->type != REDIS_REPLY_ERROR)
		rc = l2_err(env, SHM_EL2, "GET", "on", "not a string reply");
	else
		rc = l2_err(env, wrong_type(r) ? SHM_ECORRUPT : SHM_EL2, "GET",
		            "on", r->str);
	freeReplyObject(r);
	return rc;
}

/* m as the flusher mirrors it: its JSON, an LZ4 frame of it above the
 * threshold; malloc'd, NULL on error. */
static void *mirror_value(const shm_env *env, const shm_msg *m, size_t *len)
{
	char *json;
	size_t n, bound, zn;
	void *z;

	if (shm_msg_to_json(m, &json, &n))
		return NULL;
	*len = n;
	if (n <= env->opt.compress_threshold)
		return json;
	bound = LZ4F_compressFrameBound(n, NULL);
	if (!(z = malloc(bound)))
		return json;
	zn = shm__lz4_frame(z, bound, json, n);
	if (LZ4F_isError(zn)) {
		free(z);
		return json;
	}
	free(json);
	*len = zn;
	return z;
}

bool shm__rt_l2_fill(shm_env *env, const shm_msg *m, bool replace,
                     uint64_t deadline)
{
	redisReply *r;
	char s[37];
	size_t len;
	void *val;
	bool ok;

	if (shm__mono_ns() >= deadline || !(val = mirror_value(env, m, &len)))
		return true;
	shm_uuid_format(&m->id, s);
	ok = l2_call(env, deadline, RT_SMALL_REPLY, &r, "SET",
	             replace ? "SET msg:%s %b EX %u" : "SET msg:%s %b EX %u NX",
	             s, val, len, env->opt.l2_ttl_s) == 0;
	if (ok) {
		/* OK, or nil when the key was there */
		ok = r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_NIL;
		freeReplyObject(r);
	}
	free(val);
	return ok;
}
