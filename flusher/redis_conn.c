/*
 * flusher/redis_conn.c - Redis connections as the flusher opens them, for
 * the Redis sink and the invalidation channel: redis-url's address, its
 * host name resolved anew at each connect (a Redis that moved is found
 * again), the redis-timeout on resolve and connect together and on every
 * later read and write (SO_RCVTIMEO / SO_SNDTIMEO), AUTH with the URL's
 * user and password. Errors read as words (fl_redis_error), name the server
 * (fl_redis_server) and never show the password.
 */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "fl.h"
#include "resolve.h"

const char *fl_redis_error(const char *errstr)
{
	if (!errstr || !errstr[0])
		return "connection lost";
	if (strcmp(errstr, strerror(EAGAIN)) == 0)
		return "timed out";
	return errstr;
}

/* fl_redis_server's text, the address known (ip: what a host name resolved
 * to; NULL: not known, or a socket). */
static const char *server_name(const shm_redis_addr *a, const char *ip,
                               char buf[FL_REDIS_SERVER_MAX])
{
	char host[SHM__SHOWN_LONG_MAX];

	shm__shown_long(a->host, strlen(a->host), host);
	if (a->unix_socket)
		snprintf(buf, FL_REDIS_SERVER_MAX, "unix:%s", host);
	else if (!ip || strcmp(a->host, ip) == 0)
		snprintf(buf, FL_REDIS_SERVER_MAX, "%s:%d", host, a->port);
	else
		snprintf(buf, FL_REDIS_SERVER_MAX, "%s:%d (%s)", host, a->port,
		         ip);
	return buf;
}

const char *fl_redis_server(const fl_config *cfg, const redisContext *c,
                            char buf[FL_REDIS_SERVER_MAX])
{
	return server_name(&cfg->redis_addr,
	                   c && c->connection_type == REDIS_CONN_TCP
	                           ? c->tcp.host
	                           : NULL,
	                   buf);
}

redisContext *fl_redis_connect(const fl_config *cfg, char *err,
                               size_t errlen)
{
	const shm_redis_addr *a = &cfg->redis_addr;
	uint64_t ms = cfg->redis_timeout_ms, t0 = fl_mono_ms(), spent, left;
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
	char ip[64], why[300];
	char server[FL_REDIS_SERVER_MAX]; /* never the password */
	char shown[SHM__SHOWN_LONG_MAX]; /* an AUTH error reply */
	redisContext *c;

	if (a->unix_socket) {
		c = redisConnectUnixWithTimeout(a->host, tv);
		server_name(a, NULL, server);
	} else {
		/* hiredis would resolve a name with no deadline: it is given
		 * the address, resolved within the same timeout */
		if (shm__resolve(a->host, ip, sizeof ip, ms, why, sizeof why)) {
			snprintf(err, errlen, "connect %s: %s",
			         server_name(a, NULL, server), why);
			return NULL;
		}
		spent = fl_mono_ms() - t0;
		left = spent < ms ? ms - spent : 1;
		struct timeval ctv = {(time_t)(left / 1000),
		                      (suseconds_t)(left % 1000) * 1000};
		c = redisConnectWithTimeout(ip, a->port, ctv);
		server_name(a, ip, server);
	}
	if (!c || c->err) {
		snprintf(err, errlen, "connect %s: %s", server,
		         c ? fl_redis_error(c->errstr) : "out of memory");
		goto fail;
	}
	redisSetTimeout(c, tv);
	if (!a->password[0])
		return c;
	redisReply *r = a->user[0]
	                        ? redisCommand(c, "AUTH %s %s", a->user,
	                                       a->password)
	                        : redisCommand(c, "AUTH %s", a->password);
	bool ok = r && r->type != REDIS_REPLY_ERROR;
	if (!ok)
		snprintf(err, errlen, "AUTH on %s: %s", server,
		         r ? shm__shown_lines(r->str, shown)
		           : fl_redis_error(c->errstr));
	if (r)
		freeReplyObject(r);
	if (!ok)
		goto fail;
	return c;
fail:
	if (c)
		redisFree(c);
	return NULL;
}
