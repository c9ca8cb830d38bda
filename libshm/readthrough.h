/*
 * readthrough.h - what the read-through's files share: readthrough.c (the
 * gets and pages), rt_pool.c (its connection pools), rt_redis.c (Redis,
 * L2), rt_value.c (the values a level answers with), rt_pg.c (PostgreSQL,
 * L3). shm__rt_ names, not exported by the shared library. Not installed.
 */
#ifndef SHM_READTHROUGH_H
#define SHM_READTHROUGH_H

#include <libpq-fe.h>

#include "internal.h"

#define RT_BACKOFF_MS 1000
#define RT_POOL 8             /* connections per level */

/* A level's connections (rt_pool.c invariant 3). */
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

static inline uint64_t ms_ns(uint32_t ms)
{
	return (uint64_t)ms * 1000000ull;
}

/* ---- the levels configured (readthrough.c) */
bool shm__rt_has_l2(const shm_env *env);

/* ---- pools (rt_pool.c) */
/* Sets the server p's messages name (server; NULL leaves it). */
void shm__rt_pool_name(struct rt_pool *p, const char *server);
/*
 * A connection for one caller, waiting until deadline if all RT_POOL are
 * in use: 0 with *c an idle connection, or NULL and a slot the caller fills
 * by connecting; either goes back with shm__rt_pool_give or
 * shm__rt_pool_drop. EAGAIN when the level is skipped, ETIMEDOUT when
 * nothing came back in time.
 */
int shm__rt_pool_take(struct rt_pool *p, uint64_t deadline, void **c);
/* Gives back a connection in a known state (no reply pending). */
void shm__rt_pool_give(struct rt_pool *p, void *c);
/*
 * Closes the caller's connection c (NULL: the slot it could not fill). If
 * the level failed, it is skipped for RT_BACKOFF_MS and its idle
 * connections are closed too: they lead to the same server.
 */
void shm__rt_pool_drop(struct rt_pool *p, void *c, bool failed);
/* p's level's error for what did not finish within its timeout: what and
 * its preposition ("GET on", "connection to"), then server (NULL: none). */
int shm__rt_late(const struct rt_pool *p, const char *what,
                 const char *prep, const char *server);
/* p's level's error for shm__rt_pool_take's failure rc: the level is
 * skipped, or all its connections stayed busy for its timeout; the server
 * named as the level's other messages do, once known. */
int shm__rt_take_failed(struct rt_pool *p, int rc);
/* Waits for fd within deadline (mono ns); 0 ready, -1 timeout/error. */
int shm__rt_wait_fd(int fd, short ev, uint64_t deadline);

/* ---- Redis (rt_redis.c) */
/* The Redis server as its messages name it: the socket path, or host:port
 * and, for a host name, the address it resolved to at open; never the
 * password. */
void shm__rt_redis_server(const shm_env *env, char *buf, size_t len);
/* GET msg:<id> before deadline: 0, SHM_ENOTFOUND, or with the reason:
 * SHM_EL2 (skipped, unreachable, late, an error reply), SHM_ECORRUPT (a bad
 * value, or a key of another type: the flusher writes strings), ENOMEM. */
int shm__rt_l2_get(shm_env *env, const shm_uuid *id,
                   uint64_t deadline, shm_msg **out);
/* After an L3 hit, Redis gets the message too, with the L2 TTL: SET NX
 * unless this get found a bad value there (readthrough.c invariant 1).
 * Best effort (L3 stays the truth), before deadline: false when Redis
 * failed it or refused it (READONLY, OOM, NOPERM...; L2 is not skipped for
 * a refusal: its GETs may still answer), true when it took it, had the key
 * already (NX), or no fill was tried (no time left, no memory for the
 * value). */
bool shm__rt_l2_fill(shm_env *env, const shm_msg *m, bool replace,
                     uint64_t deadline);

/* ---- values (rt_value.c) */
/* The largest Redis value of a message: its JSON (json_max bytes at most,
 * rt_value.c), or an LZ4 frame of it, whose blocks (64 KiB at least) carry
 * at most 8 bytes each beyond their data, plus a header and an end mark of
 * at most 27 bytes. */
size_t shm__rt_redis_value_max(const shm_env *env);
/* Every message a level gives, as rt_value.c invariant 4 wants it: a
 * get's value for id, or (id NULL) a room page's row, whose id is the text
 * row. 0, SHM_ECORRUPT (bad data, the text says which and why) or ENOMEM. */
int shm__rt_level_msg(shm_env *env, const char *level,
                      const shm_uuid *id, const char *row,
                      const char *buf, size_t len, shm_msg **out);

/* ---- PostgreSQL (rt_pg.c) */
/* Runs one query on a pooled connection of the configured L3 within
 * l3_timeout_ms, waiting and connecting included: 0 and *res (its rows), or
 * SHM_EL3 with the reason: L3 is skipped, all its connections stay busy, or
 * it failed (then it is skipped for a while). A pooled connection the
 * server ended is replaced once (rt_pool.c invariant 3): libpq counts it
 * bad after a failure that was not our timeout (the server's FATAL error,
 * an end of file, a reset). */
int shm__rt_l3_query(shm_env *env, const char *sql, int n,
                     const char *const *params, PGresult **res);
int shm__rt_l3_get(shm_env *env, const shm_uuid *id, shm_msg **out);

#endif
