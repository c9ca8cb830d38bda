/*
 * flusher/redis_conn.c - Redis connections as the flusher opens them, for
 * the Redis sink and the invalidation channel: redis-url's address, the
 * redis-timeout on connect and on every later read and write (SO_RCVTIMEO /
 * SO_SNDTIMEO), AUTH with the URL's user and password. Errors read as words
 * (fl_redis_error) and never show the password.
 */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <string.h>

#include "fl.h"

const char *fl_redis_error(const char *errstr)
{
	if (!errstr || !errstr[0])
		return "connection lost";
	if (strcmp(errstr, strerror(EAGAIN)) == 0)
		return "timed out";
	return errstr;
}

redisContext *fl_redis_connect(const fl_config *cfg, char *err,
                               size_t errlen)
{
	const shm_redis_addr *a = &cfg->redis_addr;
	uint64_t ms = cfg->redis_timeout_ms;
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
	redisContext *c;

	c = a->unix_socket ? redisConnectUnixWithTimeout(a->host, tv)
	                   : redisConnectWithTimeout(a->host, a->port, tv);
	if (!c || c->err) {
		/* the address, not redis-url: that may hold a password */
		if (a->unix_socket)
			snprintf(err, errlen, "connect unix:%s: %s", a->host,
			         c ? fl_redis_error(c->errstr) : "out of memory");
		else
			snprintf(err, errlen, "connect %s:%d: %s", a->host,
			         a->port,
			         c ? fl_redis_error(c->errstr) : "out of memory");
		if (c)
			redisFree(c);
		return NULL;
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
		snprintf(err, errlen, "AUTH: %s",
		         r ? r->str : fl_redis_error(c->errstr));
	if (r)
		freeReplyObject(r);
	if (!ok) {
		redisFree(c);
		return NULL;
	}
	return c;
}
