/*
 * libshm/readthrough.c - L1 misses asked of Redis (L2) then PostgreSQL (L3),
 * each within its timeout; hits fill L1 (and Redis after an L3 hit). And
 * PostgreSQL's rows of the replies a put may count (shm__rt_parents).
 *
 * Invariants
 *  1. A fill is not a write: it appends no log record (L2/L3 already have
 *     the message), so nothing is sent back to PostgreSQL. Its Redis copy
 *     is a SET NX: a value the flusher wrote meanwhile is newer and stays;
 *     only a bad value this get found under the key is written over, or a
 *     key of another type (the flusher writes strings only). It is tried
 *     only when Redis answered the get's GET; one Redis fails or refuses
 *     is counted as L2's error, and the get is served all the same.
 *  2. A level costs at most its timeout per call: waiting for a connection,
 *     connecting and every exchange (Redis's GET and fill share one budget)
 *     run against deadlines, never per-read timeouts; nothing blocks
 *     outside them (host names were resolved at open, resolve.c). After a
 *     failure the level is skipped for RT_BACKOFF_MS, so a dead server costs
 *     nothing more.
 *  3. Each level has a pool of at most RT_POOL connections, made on demand;
 *     a connection is used by one caller at a time, outside any lock, so
 *     concurrent calls proceed side by side. A pooled connection the
 *     server ended while it was idle (its idle timeout, a kill, a
 *     restart: the exchange meets an end of file, a reset or EPIPE, never
 *     a timeout nor an error reply) is no failure of the level: the call
 *     is made once more on a new connection, within the same deadline;
 *     only if that one fails too is the level failed.
 *  4. A level answers only with the message asked for, as put would accept
 *     it: a value holding another id, malformed, larger than any message's
 *     JSON (json_max), without created_at or refused by put's validation
 *     is bad data, counted as that level's error, never served nor filled;
 *     the next level is asked. A room page's rows pass the same checks
 *     (shm__rt_level_msg) but the id's: a bad row is counted as L3's
 *     error and left off the page, as a get of its id serves no message.
 *  5. The last level configured (L3, else L2) is the record: a get it did
 *     not serve is SHM_ENOTFOUND only when it had no such message; when it
 *     failed (an error, a timeout, skipped, bad data) the get is its code,
 *     SHM_EL3 or SHM_EL2: "not found" is never said of what could not be
 *     checked. A failed L2 before L3 only costs its time. Either way the
 *     text names the message and, when a level failed, each level's
 *     outcome in order: its reason (the server's reply, the connection's
 *     error, the timeout, the refused value...) or "not in <level>". A
 *     failure of a server names it (l2_err, l3_err, shm__rt_late,
 *     shm__rt_take_failed: Redis's host:port or socket, never the
 *     password; PostgreSQL's host and port as libpq has them); bad data
 *     names the level alone.
 *  6. Nothing is written on the application's stderr: the notices and
 *     warnings PostgreSQL sends are dropped (pg_notice).
 */
#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <lz4frame.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "codec.h"
#include "pg_row.h"

#define RT_BACKOFF_MS 1000
#define RT_POOL 8             /* connections per level */
#define RT_SMALL_REPLY 4096   /* bytes of a reply to AUTH, SELECT, SET */

/* A level's connections (invariant 3). */
struct rt_pool {
	pthread_mutex_t lock;
	pthread_cond_t back;     /* a connection or a slot came back */
	void *idle[RT_POOL];
	int n_idle, n_open;      /* n_open: idle, in use or being made */
	uint64_t down_until;     /* mono ns: the level is skipped until then */
	char server[SHM__SHOWN_LONG_MAX]; /* the server its connections
	                            lead to, as its messages name it, shown
	                            printably, never cut; "" until known.
	                            L2's is set at open, then only read;
	                            L3's once libpq tried one (lock) */
	void (*close)(void *);
	int (*fd)(void *);       /* a connection's socket */
	int code;                /* its errors': SHM_EL2, SHM_EL3 */
	const char *level;       /* its name in messages: "Redis"... */
	const char *timeout;     /* its timeout option, named in messages */
	uint32_t timeout_ms;     /* and that option's value */
};

struct shm__rt {
	struct rt_pool l2, l3;
};

bool shm__rt_has_l3(const shm_env *env)
{
	return env->pg_conninfo && *env->pg_conninfo;
}

static bool shm__rt_has_l2(const shm_env *env)
{
	return env->redis_url && *env->redis_url;
}

/* The Redis server as its messages name it: the socket path, or host:port
 * and, for a host name, the address it resolved to at open; never the
 * password. */
static void shm__rt_redis_server(const shm_env *env, char *buf, size_t len)
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

static uint64_t ms_ns(uint32_t ms)
{
	return (uint64_t)ms * 1000000ull;
}

/*
 * The largest JSON of a message put accepts. Its encoding is at most
 * 2 * max_content + 64 KiB (shm__msg_validate), and no encoded byte takes
 * more than 6 in JSON, our writer's or PostgreSQL's: a control character
 * is written \u00XX; an int32 (4 bytes) at most "-2147483648, "; an id (16)
 * 36 characters and quotes. 4 KiB more for the keys and punctuation. With
 * the default 64 KiB max_content: 1.13 MiB.
 */
static size_t json_max(const shm_env *env)
{
	return 6 * (2 * (size_t)env->opt.max_content + 65536) + 4096;
}

/* A Redis value: that JSON, or an LZ4 frame of it, whose blocks (64 KiB
 * at least) carry at most 8 bytes each beyond their data, plus a header
 * and an end mark of at most 27 bytes. */
static size_t shm__rt_redis_value_max(const shm_env *env)
{
	return json_max(env) + json_max(env) / 4096 + 64;
}

/* ---- pools (invariant 3) */

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

/* Sets the server p's messages name (server; NULL leaves it). */
static void shm__rt_pool_name(struct rt_pool *p, const char *server)
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

/*
 * A connection for one caller, waiting until deadline if all RT_POOL are
 * in use: 0 with *c an idle connection, or NULL and a slot the caller fills
 * by connecting; either goes back with shm__rt_pool_give or
 * shm__rt_pool_drop. EAGAIN when the level is skipped, ETIMEDOUT when
 * nothing came back in time.
 */
static int shm__rt_pool_take(struct rt_pool *p, uint64_t deadline, void **c)
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

/* Gives back a connection in a known state (no reply pending). */
static void shm__rt_pool_give(struct rt_pool *p, void *c)
{
	pthread_mutex_lock(&p->lock);
	p->idle[p->n_idle++] = c;
	pthread_cond_signal(&p->back);
	pthread_mutex_unlock(&p->lock);
}

/*
 * Closes the caller's connection c (NULL: the slot it could not fill). If
 * the level failed, it is skipped for RT_BACKOFF_MS and its idle
 * connections are closed too: they lead to the same server.
 */
static void shm__rt_pool_drop(struct rt_pool *p, void *c, bool failed)
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

/* p's level's error for what did not finish within its timeout: what and
 * its preposition ("GET on", "connection to"), then server (NULL: none). */
static int shm__rt_late(const struct rt_pool *p, const char *what,
                        const char *prep, const char *server)
{
	return shm__err(p->code, "%s %s %s%s%s: no answer within the %s of %u ms",
	                p->level, what, prep, server ? " " : "",
	                server ? server : "", p->timeout, p->timeout_ms);
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

/* Waits for fd within deadline (mono ns); 0 ready, -1 timeout/error. */
static int shm__rt_wait_fd(int fd, short ev, uint64_t deadline)
{
	uint64_t now = shm__mono_ns();
	struct pollfd p = {fd, ev, 0};
	if (now >= deadline)
		return -1;
	int ms = (int)((deadline - now + 999999) / 1000000);
	return poll(&p, 1, ms) == 1 ? 0 : -1;
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

/* p's level's error for shm__rt_pool_take's failure rc: the level is
 * skipped, or all its connections stayed busy for its timeout; the server
 * named as the level's other messages do, once known. */
static int shm__rt_take_failed(struct rt_pool *p, int rc)
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
 * replaced once (invariant 3). Else the connection is dropped and the code
 * is SHM_ECORRUPT, no text set, for a reply over max (bad data: the
 * caller says); SHM_EL2 with the reason, L2 skipped for a while, for a
 * failure; ENOMEM.
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

/* ---- values (invariant 4) */

/* Grows a decompression buffer: 8 times the frame first, then doubling,
 * never past max; SHM_ETOOBIG once it is max already. */
static int grow(char **buf, size_t *cap, size_t frame, size_t max)
{
	size_t n = *cap ? *cap * 2 : frame * 8 + 1024;
	char *p;

	if (*cap >= max)
		return SHM_ETOOBIG;
	if (n > max)
		n = max;
	if (!(p = realloc(*buf, n)))
		return ENOMEM;
	*buf = p;
	*cap = n;
	return 0;
}

/* Decompresses the LZ4 frame buf into *out (malloc'd, *used bytes), at
 * most max bytes of it; buf is that one whole frame, nothing after it.
 * SHM_ECORRUPT (why says why) or ENOMEM. */
static int unlz4(const char *buf, size_t len, size_t max, char **out,
                 size_t *used, char *why, size_t whylen)
{
	size_t cap = 0, off = 0, r, dst, src;
	char *json = NULL;
	LZ4F_dctx *d;
	int rc = 0;

	if (LZ4F_isError(LZ4F_createDecompressionContext(&d, LZ4F_VERSION)))
		return ENOMEM;
	*used = 0;
	for (;;) {
		if (*used == cap && (rc = grow(&json, &cap, len, max)))
			break;
		dst = cap - *used;
		src = len - off;
		r = LZ4F_decompress(d, json + *used, &dst, buf + off, &src, NULL);
		*used += dst;
		off += src;
		if (LZ4F_isError(r) || (r && off >= len && dst == 0))
			rc = SHM_ECORRUPT;
		if (rc || r == 0)
			break;
	}
	LZ4F_freeDecompressionContext(d);
	if (rc == 0 && off < len) {
		free(json);
		snprintf(why, whylen, "%zu byte%s after its LZ4 frame", len - off,
		         len - off == 1 ? "" : "s");
		return SHM_ECORRUPT;
	}
	if (rc == 0) {
		*out = json;
		return 0;
	}
	free(json);
	if (rc == ENOMEM)
		return rc;
	if (rc == SHM_ETOOBIG)
		snprintf(why, whylen, "LZ4 frame inflating past %zu bytes, "
		         "more than any message's JSON", max);
	else
		snprintf(why, whylen, "not a whole LZ4 frame");
	return SHM_ECORRUPT;
}

/* Decodes a level's value: JSON, or an LZ4 frame of JSON, of at most
 * json_max bytes. SHM_ECORRUPT (why says why) or ENOMEM. */
static int value_to_msg(shm_env *env, const char *buf, size_t len,
                        shm_msg **out, char *why, size_t whylen)
{
	static const uint8_t magic[4] = {0x04, 0x22, 0x4d, 0x18};
	size_t max = json_max(env);
	char *json = NULL;
	int rc;

	if (len >= 4 && memcmp(buf, magic, 4) == 0) {
		if ((rc = unlz4(buf, len, max, &json, &len, why, whylen)))
			return rc;
		buf = json;
	}
	if (len > max) {
		snprintf(why, whylen, "%zu bytes of JSON, more than any "
		         "message's (%zu)", len, max);
		rc = SHM_ECORRUPT;
	} else if ((rc = shm_msg_from_json(buf, len, out, why, whylen)) &&
	           rc != ENOMEM) {
		rc = SHM_ECORRUPT;
	}
	free(json);
	/* The JSON's content_hash is ignored (PostgreSQL's rows are built
	 * without it): computed here, before the message is used anywhere,
	 * Redis included. */
	if (rc == 0)
		(*out)->content_hash =
			XXH3_64bits((*out)->content, (*out)->content_len);
	return rc;
}

/* m is id's message (id NULL: any) as put would store it: created_at is
 * never 0 there (put gives a message without one the time of the put). */
static int check_msg(shm_env *env, const shm_uuid *id, const shm_msg *m,
                     char *why, size_t whylen)
{
	char got[37];
	int rc;

	if (id && memcmp(m->id.b, id->b, 16) != 0) {
		shm_uuid_format(&m->id, got);
		snprintf(why, whylen, "holds message %s", got);
		return SHM_ECORRUPT;
	}
	if (m->created_at == 0) {
		snprintf(why, whylen, "no created_at");
		return SHM_ECORRUPT;
	}
	if ((rc = shm__msg_validate(&env->opt, m))) {
		shm__errcause(rc, why, whylen);
		return SHM_ECORRUPT;
	}
	return 0;
}

/* Every message a level gives, as invariant 4 wants it: a get's value for
 * id, or (id NULL) a room page's row, whose id is the text row. 0,
 * SHM_ECORRUPT (bad data, the text says which and why) or ENOMEM. */
static int shm__rt_level_msg(shm_env *env, const char *level,
                             const shm_uuid *id, const char *row,
                             const char *buf, size_t len, shm_msg **out)
{
	char why[256] = "";
	int rc = value_to_msg(env, buf, len, out, why, sizeof why);

	if (rc == 0 && (rc = check_msg(env, id, *out, why, sizeof why))) {
		shm_msg_free(*out);
		*out = NULL;
	}
	if (rc == 0)
		return 0;
	if (row)
		return shm__err(rc, "%s row %s: %s", level, row, why);
	return shm__err(rc, "%s value: %s", level, why);
}

/* ---- L2 */

/* A WRONGTYPE error reply: the key holds another type than a string. */
static bool wrong_type(const redisReply *r)
{
	return r->type == REDIS_REPLY_ERROR && r->len >= 9 &&
	       memcmp(r->str, "WRONGTYPE", 9) == 0;
}

/* GET msg:<id> before deadline: 0, SHM_ENOTFOUND, or with the reason:
 * SHM_EL2 (skipped, unreachable, late, an error reply), SHM_ECORRUPT (a bad
 * value, or a key of another type: the flusher writes strings), ENOMEM. */
static int shm__rt_l2_get(shm_env *env, const shm_uuid *id,
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

/* After an L3 hit, Redis gets the message too, with the L2 TTL: SET NX
 * unless this get found a bad value there (invariant 1). Best effort (L3
 * stays the truth), before deadline: false when Redis failed it or
 * refused it (READONLY, OOM, NOPERM...; L2 is not skipped for a refusal:
 * its GETs may still answer), true when it took it, had the key already
 * (NX), or no fill was tried (no time left, no memory for the value). */
static bool shm__rt_l2_fill(shm_env *env, const shm_msg *m, bool replace,
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

/* ---- L3 */

/* SHM_EL3: what failed, on server (pg_server's; NULL: none named), with
 * the first line of libpq's or the server's text (NULL: none) and the
 * SQLSTATE if there is one. */
static int l3_err(const char *what, const char *server, const char *text,
                  const char *state)
{
	char shown[SHM__SHOWN_LONG_MAX];

	if (!text || !*text)
		text = "no reason given";
	return shm__err(SHM_EL3, "PostgreSQL %s%s%s%s%s%s: %s", what,
	                server ? " on " : "", server ? server : "",
	                state ? " (SQLSTATE " : "", state ? state : "",
	                state ? ")" : "",
	                shm__shown_long(text, strcspn(text, "\n"), shown));
}

/* The server libpq is connecting or connected to on c, into buf: its host
 * as the conninfo gave it (a name, not the address it resolved to; of a
 * list, the one tried) and its port, shown printably. NULL if libpq names
 * no host. */
static const char *pg_server(const PGconn *c, char *buf, size_t len)
{
	const char *host = PQhost(c), *port = PQport(c);
	char raw[400], shown[SHM__SHOWN_LONG_MAX];

	if (!host || !*host)
		return NULL;
	snprintf(raw, sizeof raw, "%s%s%s", host, port && *port ? " port " : "",
	         port ? port : "");
	snprintf(buf, len, "%s", shm__shown_long(raw, strlen(raw), shown));
	return buf;
}

/* libpq's default notice processor prints what the server sends as
 * notices (a NOTICE or WARNING a function raises, the WARNING of an
 * immediate shutdown) on stderr, the application's: a library keeps off
 * it. They are dropped: a failure that matters comes as an error, and the
 * text of that error is what a get reports. */
static void pg_notice(void *arg, const char *msg)
{
}

/* Connects before deadline, in UTF-8 whatever PGCLIENTENCODING or the
 * conninfo says (later keywords win over the conninfo expanded from
 * dbname): values are UTF-8, and a character another encoding lacks would
 * fail the whole query. Named "shm-readthrough" in pg_stat_activity
 * unless the conninfo or PGAPPNAME gives an application_name. To the
 * addresses the hosts resolved to at open (hostaddr: libpq resolves
 * nothing, the names stay its host). NULL with the reason (SHM_EL3) on
 * failure. Either way L3's pool names the server tried from then on. */
static PGconn *pg_connect(shm_env *env, uint64_t deadline)
{
	const char *kw[] = {"fallback_application_name", "dbname",
	                    "client_encoding",
	                    env->pg_hostaddr ? "hostaddr" : NULL, NULL};
	const char *val[] = {"shm-readthrough", env->pg_conninfo, "UTF8",
	                     env->pg_hostaddr, NULL};
	PGconn *c = PQconnectStartParams(kw, val, 1);
	char server[SHM__SHOWN_LONG_MAX];

	if (!c) {
		l3_err("connection", NULL, "out of memory", NULL);
		return NULL;
	}
	PQsetNoticeProcessor(c, pg_notice, NULL); /* before any exchange */
	if (PQstatus(c) == CONNECTION_BAD)
		goto fail;
	for (;;) {
		PostgresPollingStatusType st = PQconnectPoll(c);
		if (st == PGRES_POLLING_OK) {
			shm__rt_pool_name(&env->rt->l3,
			                  pg_server(c, server, sizeof server));
			return c;
		}
		if (st == PGRES_POLLING_FAILED)
			goto fail;
		if (shm__rt_wait_fd(PQsocket(c),
		                    st == PGRES_POLLING_READING ? POLLIN
		                                                : POLLOUT,
		                    deadline)) {
			const char *at = pg_server(c, server, sizeof server);

			shm__rt_late(&env->rt->l3, "connection", "to", at);
			shm__rt_pool_name(&env->rt->l3, at);
			PQfinish(c);
			return NULL;
		}
	}
fail:
	/* libpq names the address it was given: the hosts say which server */
	if (env->pg_hosts) {
		char what[SHM__SHOWN_LONG_MAX + 20], shown[SHM__SHOWN_LONG_MAX];
		snprintf(what, sizeof what, "connection to %s",
		         shm__shown_long(env->pg_hosts, strlen(env->pg_hosts),
		                         shown));
		l3_err(what, NULL, PQerrorMessage(c), NULL);
	} else {
		l3_err("connection", NULL, PQerrorMessage(c), NULL);
	}
	shm__rt_pool_name(&env->rt->l3, pg_server(c, server, sizeof server));
	PQfinish(c);
	return NULL;
}

/* Runs one query with params within deadline: 0 and *out (the last
 * result, of any status, NULL if none); ETIMEDOUT; SHM_EL3 (the reason set,
 * the server named) when libpq could not send or read. */
static int pg_query(PGconn *c, const char *sql, int n,
                    const char *const *params, uint64_t deadline,
                    PGresult **out)
{
	char server[SHM__SHOWN_LONG_MAX];
	PGresult *res, *last = NULL;
	int rc = 0;

	if (!PQsendQueryParams(c, sql, n, NULL, params, NULL, NULL, 0))
		return l3_err("query", pg_server(c, server, sizeof server),
		              PQerrorMessage(c), NULL);
	for (;;) {
		while (!PQisBusy(c)) {
			if (!(res = PQgetResult(c))) {
				*out = last;
				return 0;
			}
			PQclear(last);
			last = res;
		}
		/* No PQcancel on a timeout: it connects and waits for the
		 * server with no timeout, so a stopped server would hang the
		 * caller. The caller drops the connection instead. */
		if (shm__rt_wait_fd(PQsocket(c), POLLIN, deadline))
			rc = ETIMEDOUT;
		else if (!PQconsumeInput(c))
			rc = l3_err("query", pg_server(c, server, sizeof server),
			            PQerrorMessage(c), NULL);
		if (rc) {
			PQclear(last);
			return rc;
		}
	}
}

/* SHM_EL3 naming the server of c and its reason for res (not
 * PGRES_TUPLES_OK). */
static int l3_refused(const PGconn *c, const PGresult *res)
{
	const char *text = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	char server[SHM__SHOWN_LONG_MAX];

	return l3_err("query", pg_server(c, server, sizeof server),
	              text ? text : PQresStatus(PQresultStatus(res)),
	              PQresultErrorField(res, PG_DIAG_SQLSTATE));
}

/* A new PostgreSQL connection in the caller's slot of L3's pool before
 * deadline, or NULL with the reason (SHM_EL3), the slot given back and L3
 * skipped for a while. */
static PGconn *l3_connect(shm_env *env, uint64_t deadline)
{
	PGconn *c = pg_connect(env, deadline);

	if (!c)
		shm__rt_pool_drop(&env->rt->l3, NULL, true);
	return c;
}

/* Runs one query on a pooled connection of the configured L3 within
 * l3_timeout_ms, waiting and connecting included: 0 and *res (its rows), or
 * SHM_EL3 with the reason: L3 is skipped, all its connections stay busy, or
 * it failed (then it is skipped for a while). A pooled connection the
 * server ended is replaced once (invariant 3): libpq counts it bad after a
 * failure that was not our timeout (the server's FATAL error, an end of
 * file, a reset). */
static int shm__rt_l3_query(shm_env *env, const char *sql, int n,
                            const char *const *params, PGresult **res)
{
	struct rt_pool *p = &env->rt->l3;
	uint64_t deadline = shm__mono_ns() + ms_ns(env->opt.l3_timeout_ms);
	char server[SHM__SHOWN_LONG_MAX];
	bool reused, ended;
	void *c;
	int rc;

	if ((rc = shm__rt_pool_take(p, deadline, &c)))
		return shm__rt_take_failed(p, rc);
	if (!(reused = c != NULL) && !(c = l3_connect(env, deadline)))
		return SHM_EL3;
	for (;;) {
		*res = NULL;
		rc = pg_query(c, sql, n, params, deadline, res);
		ended = rc != ETIMEDOUT && PQstatus(c) == CONNECTION_BAD;
		if (rc == ETIMEDOUT)
			rc = shm__rt_late(p, "query", "on",
			                  pg_server(c, server, sizeof server));
		else if (rc == 0 && PQresultStatus(*res) != PGRES_TUPLES_OK)
			rc = l3_refused(c, *res);
		if (rc == 0) {
			shm__rt_pool_give(p, c);
			return 0;
		}
		PQclear(*res);
		*res = NULL;
		if (!reused || !ended)
			break;
		PQfinish(c); /* its slot stays this caller's */
		reused = false;
		if (!(c = l3_connect(env, deadline)))
			return SHM_EL3;
	}
	shm__rt_pool_drop(p, c, true); /* unknown state after a timeout */
	return rc;
}

static int shm__rt_l3_get(shm_env *env, const shm_uuid *id, shm_msg **out)
{
	char s[37];
	const char *params[1] = {s};
	PGresult *res;
	int rc;

	shm_uuid_format(id, s);
	if ((rc = shm__rt_l3_query(env,
	                           "SELECT " SHM_PG_MSG_JSON " FROM messages "
	                           "WHERE id = $1", 1, params, &res)))
		return rc;
	if (PQntuples(res) == 0)
		rc = SHM_ENOTFOUND;
	else
		rc = shm__rt_level_msg(env, "PostgreSQL", id, NULL,
		                       PQgetvalue(res, 0, 0),
		                       (size_t)PQgetlength(res, 0, 0), out);
	PQclear(res);
	return rc;
}

/* ---- gets and pages */

static void count_l2(shm_env *env, int rc)
{
	if (rc == 0)
		SHM__COUNT(env, l2_hits, 1);
	else if (rc == SHM_ENOTFOUND)
		SHM__COUNT(env, l2_misses, 1);
	else
		SHM__COUNT(env, l2_errors, 1);
}

static void count_l3(shm_env *env, int rc)
{
	if (rc == 0)
		SHM__COUNT(env, l3_hits, 1);
	else if (rc == SHM_ENOTFOUND)
		SHM__COUNT(env, l3_misses, 1);
	else
		SHM__COUNT(env, l3_errors, 1);
}

/* A level's outcome in unserved's text: "" if it was not asked (rc 0),
 * miss ("not in <level>") if it had no such message, else cause (rc's error
 * text without rc's description: unserved's text ends with its own). */
static const char *outcome(int rc, const char *miss, const char *cause)
{
	return rc == 0 ? "" : rc == SHM_ENOTFOUND ? miss : cause;
}

/* The get of id no level served, after L2 and L3 answered l2 and l3 (0:
 * not asked; L1 alone when both are 0), l2_cause holding L2's failure's
 * cause (the last error is L3's): invariant 5's code, SHM_ENOTFOUND or the
 * last level's. Unless every level asked had no such message, the text
 * gives each one's outcome: nothing is formatted for a get a level
 * answers. */
static int unserved(const shm_uuid *id, int l2, const char *l2_cause, int l3)
{
	int last = l3 ? l3 : l2; /* the record's answer */
	char s[37], l3_cause[512];
	int rc;

	shm_uuid_format(id, s);
	if ((l2 == 0 || l2 == SHM_ENOTFOUND) && (l3 == 0 || l3 == SHM_ENOTFOUND))
		return shm__err(SHM_ENOTFOUND, "message %s not found", s);
	if (last == SHM_ENOTFOUND)
		rc = SHM_ENOTFOUND;
	else
		rc = l3 ? SHM_EL3 : SHM_EL2;
	if (l3 && l3 != SHM_ENOTFOUND)
		shm__errcause(l3, l3_cause, sizeof l3_cause);
	return shm__err(rc, "message %s: %s%s%s", s,
	                outcome(l2, "not in Redis", l2_cause),
	                l2 && l3 ? "; " : "", outcome(l3, "not in PostgreSQL", l3_cause));
}

/* Asks L2, then L3 if L2 has no good answer, each if configured, and fills
 * Redis after an L3 hit with what is left of the L2 budget (invariant 2)
 * when Redis answered this get's GET (not found, or a bad value), a fill
 * that fails counted as an L2 error. 0; unserved's code when no level
 * served it; ENOMEM when the last level asked ran out of memory. */
static int ask_levels(shm_env *env, const shm_uuid *id, shm_msg **m)
{
	uint64_t budget = ms_ns(env->opt.l2_timeout_ms), t0 = shm__mono_ns();
	int l2 = 0, l3 = 0; /* 0: not asked */
	char l2_cause[512]; /* kept from L2's failure: L3's error replaces it */
	uint64_t spent;

	if (shm__rt_has_l2(env)) {
		l2 = shm__rt_l2_get(env, id, t0 + budget, m);
		count_l2(env, l2);
		if (l2 == 0)
			return 0;
		if (l2 != SHM_ENOTFOUND)
			shm__errcause(l2, l2_cause, sizeof l2_cause);
	}
	spent = shm__mono_ns() - t0;
	if (shm__rt_has_l3(env)) {
		l3 = shm__rt_l3_get(env, id, m);
		count_l3(env, l3);
		if (l3 == 0) {
			if ((l2 == SHM_ENOTFOUND || l2 == SHM_ECORRUPT) &&
			    spent < budget &&
			    !shm__rt_l2_fill(env, *m, l2 == SHM_ECORRUPT,
			                     shm__mono_ns() + (budget - spent)))
				SHM__COUNT(env, l2_errors, 1);
			return 0;
		}
	}
	if ((l3 ? l3 : l2) == ENOMEM)
		return ENOMEM;
	return unserved(id, l2, l2_cause, l3);
}

int shm__rt_get(shm_env *env, const shm_uuid *id, shm_msg **out)
{
	shm_msg *m = NULL;
	uint64_t inval;
	int rc;

	if (!env->rt)
		return unserved(id, 0, NULL, 0);
	/* An invalidation arriving while we fetch may concern this key: then
	 * the value is served but not cached (it may be the old version). */
	inval = __atomic_load_n(&env->shared->c.inval_received, __ATOMIC_ACQUIRE);
	if ((rc = ask_levels(env, id, &m)))
		return rc;
	/* m passed invariant 4: a fill can fail only for L1's own reasons
	 * (full of unflushed work...), and m is served anyway */
	if (__atomic_load_n(&env->shared->c.inval_received, __ATOMIC_ACQUIRE) ==
	    inval)
		shm__msg_fill(env, m);
	*out = m;
	return 0;
}

int shm__rt_room_page(shm_env *env, const char *room, int64_t before,
                      uint32_t limit, shm_msg ***out, size_t *n,
                      size_t *rows)
{
	char lim[16], bef[40];
	const char *params[3] = {room, lim, bef};
	shm_msg **msgs;
	PGresult *res;
	size_t k = 0;
	int rc = 0, nr;

	snprintf(lim, sizeof lim, "%u", limit);
	/* before 0: no bound at all ('infinity' is after every timestamp) */
	if (before > 0)
		shm_time_format(before, bef);
	else
		snprintf(bef, sizeof bef, "infinity");
	if ((rc = shm__rt_l3_query(env,
	                           "SELECT id::text, " SHM_PG_MSG_JSON
	                           " FROM messages WHERE room_id = $1 AND "
	                           "created_at < $3::timestamptz ORDER BY "
	                           "created_at DESC, id DESC LIMIT $2::int",
	                           3, params, &res))) {
		SHM__COUNT(env, l3_errors, 1);
		return rc;
	}
	nr = PQntuples(res);
	if (!(msgs = calloc((size_t)nr + 1, sizeof *msgs))) {
		PQclear(res);
		return shm__err(ENOMEM, "room page");
	}
	for (int i = 0; i < nr && rc != ENOMEM; i++) {
		rc = shm__rt_level_msg(env, "PostgreSQL", NULL,
		                       PQgetvalue(res, i, 0),
		                       PQgetvalue(res, i, 1),
		                       (size_t)PQgetlength(res, i, 1),
		                       &msgs[k]);
		if (rc == 0)
			k++;
		else if (rc == SHM_ECORRUPT) /* invariant 4: left off */
			SHM__COUNT(env, l3_errors, 1);
	}
	PQclear(res);
	if (rc == ENOMEM) {
		shm_msgs_free(msgs, k);
		return shm__err(ENOMEM, "room page of %d rows", nr);
	}
	*out = msgs;
	*n = k;
	*rows = (size_t)nr;
	return 0;
}

/* ---- whether PostgreSQL holds messages (put's reply counting, msg.c) */

int shm__rt_parents(shm_env *env, const shm_uuid *ids, size_t n,
                    shm__l3_row *out)
{
	char *list = malloc(n * 37 + 3), *p = list;
	const char *params[1] = {list};
	PGresult *res;
	int rc;

	if (!list)
		return shm__err(ENOMEM, "a query of %zu ids", n);
	*p++ = '{';
	for (size_t i = 0; i < n; i++) {
		if (i)
			*p++ = ',';
		shm_uuid_format(&ids[i], p);
		p += 36;
		out[i] = (shm__l3_row){0};
	}
	memcpy(p, "}", 2);
	rc = shm__rt_l3_query(env, "SELECT id::text, parent_id::text FROM "
	                      "messages WHERE id = ANY($1::uuid[])", 1, params,
	                      &res);
	free(list);
	if (rc) {
		SHM__COUNT(env, l3_errors, 1);
		return rc;
	}
	for (int r = 0; rc == 0 && r < PQntuples(res); r++) {
		shm_uuid id;
		const shm_uuid *at;
		shm__l3_row *row;

		if (shm_uuid_parse(PQgetvalue(res, r, 0), &id) ||
		    !(at = bsearch(&id, ids, n, sizeof *ids, shm__uuid_cmp))) {
			rc = l3_err("answer", NULL, "a row of an id not asked for",
			            NULL);
			break;
		}
		row = &out[at - ids];
		row->has_parent = !PQgetisnull(res, r, 1);
		if (row->has_parent &&
		    shm_uuid_parse(PQgetvalue(res, r, 1), &row->parent))
			rc = l3_err("answer", NULL, "a malformed parent_id", NULL);
	}
	PQclear(res);
	if (rc)
		SHM__COUNT(env, l3_errors, 1);
	return rc;
}
