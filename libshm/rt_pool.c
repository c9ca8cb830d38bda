/*
 * libshm/rt_pool.c - the read-through's connections: a pool per level
 * (Redis, PostgreSQL), made at open and closed at close, and the waits
 * on them, each against a deadline (readthrough.c invariant 2).
 *
 * Invariant (numbered in readthrough.c's list)
 *  3. Each level has a pool of at most RT_POOL connections, made on demand;
 *     a connection is used by one caller at a time, outside any lock, so
 *     concurrent calls proceed side by side. A pooled connection the
 *     server ended while it was idle (its idle timeout, a kill, a
 *     restart: the exchange meets an end of file, a reset or EPIPE, never
 *     a timeout nor an error reply) is no failure of the level: the call
 *     is made once more on a new connection, within the same deadline;
 *     only if that one fails too is the level failed.
 */
#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "readthrough.h"

static void pool_init(struct rt_pool *p, void (*close)(void *),
                      int (*fd)(void *), int code, const char *level,
                      const char *timeout, uint32_t timeout_ms)
{
	pthread_condattr_t a;

	pthread_mutex_init(&p->lock, NULL);
	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC); /* shm__mono_ns's */
	pthread_cond_init(&p->back, &a);
	pthread_condattr_destroy(&a);
	p->close = close;
	p->fd = fd;
	p->code = code;
	p->level = level;
	p->timeout = timeout;
	p->timeout_ms = timeout_ms;
}

void shm__rt_pool_name(struct rt_pool *p, const char *server)
{
	if (!server)
		return;
	pthread_mutex_lock(&p->lock);
	snprintf(p->server, sizeof p->server, "%s", server);
	pthread_mutex_unlock(&p->lock);
}

/* At shm_env_close: no call is under way, every connection is idle. In
 * a child of fork() (forked), a connection's socket is shared with the
 * parent, whose session it carries: it is replaced by null (/dev/null,
 * -1 if it cannot be opened) before the close, so that the goodbye libpq
 * sends (and TLS's close_notify) reaches no server. Without null the
 * connection is left as it is. */
static void pool_destroy(struct rt_pool *p, bool forked, int null)
{
	for (int i = 0; i < p->n_idle; i++) {
		int fd = p->fd(p->idle[i]);
		if (!forked || fd < 0)
			p->close(p->idle[i]);
		else if (null >= 0 && dup2(null, fd) == fd)
			p->close(p->idle[i]);
	}
	pthread_cond_destroy(&p->back);
	pthread_mutex_destroy(&p->lock);
}

int shm__rt_pool_take(struct rt_pool *p, uint64_t deadline, void **c)
{
	struct timespec ts = {(time_t)(deadline / 1000000000u),
	                      (long)(deadline % 1000000000u)};
	int rc = ETIMEDOUT;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		if (shm__mono_ns() < p->down_until) {
			rc = EAGAIN;
			break;
		}
		if (p->n_idle) {
			*c = p->idle[--p->n_idle];
			rc = 0;
			break;
		}
		if (p->n_open < RT_POOL) {
			p->n_open++;
			*c = NULL;
			rc = 0;
			break;
		}
		if (pthread_cond_timedwait(&p->back, &p->lock, &ts) == ETIMEDOUT)
			break;
	}
	pthread_mutex_unlock(&p->lock);
	return rc;
}

void shm__rt_pool_give(struct rt_pool *p, void *c)
{
	pthread_mutex_lock(&p->lock);
	p->idle[p->n_idle++] = c;
	pthread_cond_signal(&p->back);
	pthread_mutex_unlock(&p->lock);
}

void shm__rt_pool_drop(struct rt_pool *p, void *c, bool failed)
{
	void *idle[RT_POOL];
	int n = 0;

	pthread_mutex_lock(&p->lock);
	p->n_open--;
	if (failed) {
		p->down_until = shm__mono_ns() + ms_ns(RT_BACKOFF_MS);
		n = p->n_idle;
		memcpy(idle, p->idle, (size_t)n * sizeof *idle);
		p->n_open -= n;
		p->n_idle = 0;
	}
	pthread_cond_broadcast(&p->back); /* a slot, or a skipped level */
	pthread_mutex_unlock(&p->lock);
	if (c)
		p->close(c);
	for (int i = 0; i < n; i++)
		p->close(idle[i]);
}

int shm__rt_late(const struct rt_pool *p, const char *what,
                 const char *prep, const char *server)
{
	return shm__err(p->code, "%s %s %s%s%s: no answer within the %s of %u ms",
	                p->level, what, prep, server ? " " : "",
	                server ? server : "", p->timeout, p->timeout_ms);
}

int shm__rt_take_failed(struct rt_pool *p, int rc)
{
	char server[sizeof p->server];

	pthread_mutex_lock(&p->lock);
	memcpy(server, p->server, sizeof server);
	pthread_mutex_unlock(&p->lock);
	if (rc == EAGAIN)
		return shm__err(p->code, "%s%s%s skipped: it failed less than "
		                "%d ms ago", p->level, *server ? " at " : "",
		                server, RT_BACKOFF_MS);
	return shm__err(p->code, "%s%s%s: all %d connections busy for the %s "
	                "of %u ms", p->level, *server ? " at " : "", server,
	                RT_POOL, p->timeout, p->timeout_ms);
}

static void redis_close(void *c)
{
	redisFree(c);
}

static void pg_close(void *c)
{
	PQfinish(c);
}

static int redis_fd(void *c)
{
	return ((redisContext *)c)->fd;
}

static int pg_fd(void *c)
{
	return PQsocket(c);
}

int shm__rt_open(shm_env *env)
{
	if (!env->redis_url && !env->pg_conninfo)
		return 0;
	if (!(env->rt = calloc(1, sizeof *env->rt)))
		return shm__err(ENOMEM, "read-through");
	pool_init(&env->rt->l2, redis_close, redis_fd, SHM_EL2, "Redis",
	          "l2_timeout_ms", env->opt.l2_timeout_ms);
	pool_init(&env->rt->l3, pg_close, pg_fd, SHM_EL3, "PostgreSQL",
	          "l3_timeout_ms", env->opt.l3_timeout_ms);
	if (shm__rt_has_l2(env)) /* known at open; L3's once libpq tried one */
		shm__rt_redis_server(env, env->rt->l2.server,
		                     sizeof env->rt->l2.server);
	return 0; /* connections are made on first use */
}

void shm__rt_close(shm_env *env, bool forked)
{
	int null = -1;

	if (!env->rt)
		return;
	if (forked)
		null = open("/dev/null", O_RDWR | O_CLOEXEC);
	pool_destroy(&env->rt->l2, forked, null);
	pool_destroy(&env->rt->l3, forked, null);
	if (null >= 0)
		close(null);
	free(env->rt);
	env->rt = NULL;
}

int shm__rt_wait_fd(int fd, short ev, uint64_t deadline)
{
	uint64_t now = shm__mono_ns();
	struct pollfd p = {fd, ev, 0};
	if (now >= deadline)
		return -1;
	int ms = (int)((deadline - now + 999999) / 1000000);
	return poll(&p, 1, ms) == 1 ? 0 : -1;
}
