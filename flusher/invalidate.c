/*
 * flusher/invalidate.c - the invalidation channel between hosts: the
 * publisher (after each batch the Redis sink applied) and the subscriber
 * thread. Format, gap rule and stats: invalidate.h.
 *
 * Invariants
 *  1. The sinks never wait for the subscriber: it has its own thread and
 *     its own Redis connection, and polls it with wake_fd, which
 *     fl_inval_stop writes, so stop is prompt.
 *  2. A publish follows the batch it names: the worker calls the hook only
 *     after Redis acknowledged every command of the batch, so a host that
 *     drops a key and reads it back from Redis gets the new value.
 *  3. Dropping never touches unflushed local work (libshm's rule,
 *     shm_l1_invalidate_many).
 *  4. After a gap in the subscription (reconnect) with peers known, every
 *     flushed L1 entry is dropped before new messages are handled.
 *  5. The subscriber keeps up with the channel: a failed drop pauses it
 *     (backoff-min-ms, then one more try) only when the failure is new;
 *     while it lasts each message is tried once, without a pause, so
 *     messages do not queue up in Redis, and the cost is one attempt per
 *     message, as when drops work. Failures that repeat (drops, resets,
 *     peers' bad rooms, malformed messages) are said once, reminded,
 *     ended (fl_repeat).
 *  6. A failed drop is a gap too: its keys stay stale, so a reset (4) is
 *     owed from then on, tried after the messages at hand as soon as a
 *     drop works again, and otherwise by itself every backoff (min, then
 *     doubled up to max), so it is done even when no message comes and
 *     costs at most one walk of L1 per backoff while it fails; only a
 *     reset that works settles it (a reconnect's too). The failed keys are
 *     not kept for a retry: a failure can last for any number of messages,
 *     and the reset needs no memory, also covers the rooms' pages, and
 *     keeps unflushed local work as every drop does (3).
 *  7. A subscription that ends sooner than backoff-max-ms after it began
 *     belongs to the same outage (a Redis that drops its subscribers, its
 *     pubsub output limit hit): the reconnect backoff keeps doubling
 *     instead of starting again from backoff-min-ms, so a flapping
 *     connection costs at most one reconnect, one reset of L1 (4) and one
 *     line per backoff-max-ms, not ten a second; only a loss while the
 *     backoff is at its minimum (the first of an outage) is a WARN.
 *  8. A message that does not parse is a gap too: the keys it named are
 *     unknown, so a reset (4) is owed, whatever env id it shows (one that
 *     does not parse is not to be trusted, ours included), and it counts
 *     as a peer heard from. The first such reset is done after the
 *     messages at hand; while such messages keep coming, the next one
 *     waits backoff-min-ms after the last reset, doubled each time up to
 *     backoff-max-ms, so a flood costs a few walks of L1 and then one per
 *     backoff-max-ms, not one per message. Said once, reminded, and ended
 *     when none came for a remind-interval (fl_repeat). A line whose id
 *     parses but whose room part does not (a created_at no message has, a
 *     bad escape, a room libshm refuses) is no malformed message: its id
 *     is dropped without the room (fl_inval_parse), said as refused rooms
 *     are.
 */
#include <ctype.h>
#include <errno.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "codec.h" /* SHM_TIME_MAX_US, shm__inval_created_ok */
#include "invalidate.h"

#define HEADER "shm-inval 2 "
#define HEADER_V1 "shm-inval 1 "
#define PEERS_META "flusher.inval.peers_seen"

/* Counters, updated with atomics (publisher and subscriber threads):
 * subscribed is the state now, the others are totals since the
 * environment was made, each going on from what the last run wrote. */
#define INVAL_TOTALS(X)                                                        \
	X(published) X(publish_errors) X(received) X(keys) X(dropped) X(kept)  \
	X(resets) X(errors)
#define INVAL_STATS(X) X(subscribed) INVAL_TOTALS(X)

struct fl_inval {
	const fl_config *cfg;
	shm_env *env;
	char env_id[64];
	redisContext *pub; /* the Redis worker's thread only */
	fl_buf pbuf;
	fl_repeat pub_fail; /* the Redis worker's thread only */

	bool subscribe;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop; /* under lock */
	int wake_fd; /* eventfd written at stop, or -1 (poll's timeout then) */

	struct {
#define INVAL_FIELD(f) uint64_t f;
		INVAL_STATS(INVAL_FIELD)
#undef INVAL_FIELD
	} st, written;
	bool stats_once;     /* every counter written once */
	fl_repeat stats_fail; /* subscriber thread, then fl_inval_stop */
	fl_repeat drop_fail;  /* subscriber thread: dropping peers' keys */
	fl_repeat reset_fail; /* subscriber thread: resets after a gap */
	fl_repeat room_fail;  /* subscriber thread: peers' rooms refused */
	char room_peer[64];   /* subscriber thread: the last peer refused */
	fl_repeat bad_fail;   /* subscriber thread: messages that do not read */
	uint64_t bad_last;    /* subscriber thread: the last of them, mono ms */
	uint64_t bad_next;    /* subscriber thread: their next reset, not
	                       * before (mono ms, invariant 8) */
	uint64_t bad_backoff; /* subscriber thread: the pause after that one */
	uint64_t peers_seen; /* subscriber thread */
	bool reset_owed;     /* subscriber thread: a gap (inv. 6, 8) */
	const char *owed_why; /* subscriber thread: what owes it, for the log */
	uint64_t owed_next;  /* subscriber thread: its next try alone, mono ms */
	uint64_t owed_backoff; /* subscriber thread: the pause before it */
};

#define ADD(iv, f, n) __atomic_fetch_add(&(iv)->st.f, (uint64_t)(n), __ATOMIC_RELAXED)
#define GET(iv, f) __atomic_load_n(&(iv)->st.f, __ATOMIC_RELAXED)

/* ------------------------------------------------------------ format */

/* A room byte written as %XX: controls, space, '%' and DEL (the rest of
 * UTF-8 as is), so the room is one word of its line. */
static bool room_escaped(unsigned char c)
{
	return c <= ' ' || c == '%' || c == 0x7f;
}

static int add_room(fl_buf *o, const char *room, size_t len)
{
	size_t from = 0;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)room[i];
		if (!room_escaped(c))
			continue;
		char esc[3] = {'%', "0123456789ABCDEF"[c >> 4],
		               "0123456789ABCDEF"[c & 15]};
		if (fl_buf_add(o, room + from, i - from) ||
		    fl_buf_add(o, esc, sizeof esc))
			return ENOMEM;
		from = i + 1;
	}
	return fl_buf_add(o, room + from, len - from) ? ENOMEM : 0;
}

static int add_key(fl_buf *o, const fl_rec *r)
{
	char u[40], w[37];
	shm_uuid id;
	const char *room;
	size_t room_len;
	int64_t created;

	switch (shm_inval_kind_of_op(r->op)) {
	case SHM_INVAL_MSG:
		if (r->key_len != 16)
			return 1; /* malformed: nothing to name */
		memcpy(id.b, r->key, 16);
		u[0] = 'm';
		u[1] = ' ';
		shm_uuid_format(&id, u + 2);
		if (fl_buf_add(o, u, 38))
			return ENOMEM;
		/* its room, for the other hosts' room pages (invalidate.h) */
		if (shm_msg_payload_room(r->payload, r->payload_len, &room,
		                         &room_len, &created) == 0 &&
		    (fl_buf_add_int(o, " ", created, " ") ||
		     add_room(o, room, room_len)))
			return ENOMEM;
		return fl_buf_add(o, "\n", 1) ? ENOMEM : 0;
	case SHM_INVAL_STATIC:
		if (r->key_len <= 16 || r->key_len > 16 + SHM_MAX_OBJECT)
			return 1;
		for (uint32_t i = 16; i < r->key_len; i++)
			if (!isgraph(r->key[i]))
				return 1; /* not an object shm_object_check allows */
		memcpy(id.b, r->key, 16);
		shm_uuid_format(&id, w);
		if (fl_buf_addf(o, "s %s ", w) ||
		    fl_buf_add(o, r->key + 16, r->key_len - 16) ||
		    fl_buf_add(o, "\n", 1))
			return ENOMEM;
		return 0;
	default:
		return 1; /* graph, marks: no L1 entry elsewhere */
	}
}

int fl_inval_encode(const char *env_id, const fl_batch *b, fl_buf *out,
                    size_t *ends, size_t max_msgs, size_t *n_msgs)
{
	size_t start = out->len, keys = 0;
	const fl_rec *prev = NULL;
	int rc;

	*n_msgs = 0;
	for (size_t i = 0; i < b->n; i++) {
		const fl_rec *r = &b->r[i];
		if (r->superseded)
			continue;
		if (prev && shm_inval_kind_of_op(prev->op) ==
		                    shm_inval_kind_of_op(r->op) &&
		    prev->key_len == r->key_len &&
		    memcmp(prev->key, r->key, r->key_len) == 0)
			continue;
		/* the header once, before the message's first key (a record
		 * add_key skips writes nothing) */
		if (out->len == start && (fl_buf_adds(out, HEADER) ||
		                  fl_buf_adds(out, env_id) ||
		                  fl_buf_add(out, "\n", 1)))
			return ENOMEM;
		size_t before = out->len;
		if ((rc = add_key(out, r)) == 1)
			continue;
		if (rc)
			return rc;
		prev = r;
		keys++;
		if (out->len - start > FL_INVAL_MAX_MSG && keys > 1) {
			/* this key starts the next message */
			if (*n_msgs + 1 >= max_msgs)
				return ENOSPC;
			size_t klen = out->len - before;
			char *tmp = malloc(klen);
			if (!tmp)
				return ENOMEM;
			memcpy(tmp, out->p + before, klen);
			out->len = before;
			ends[(*n_msgs)++] = out->len;
			start = out->len;
			if (fl_buf_adds(out, HEADER) || fl_buf_adds(out, env_id) ||
			    fl_buf_add(out, "\n", 1) ||
			    fl_buf_add(out, tmp, klen)) {
				free(tmp);
				return ENOMEM;
			}
			free(tmp);
			keys = 1;
		}
	}
	if (keys) {
		if (*n_msgs >= max_msgs)
			return ENOSPC;
		ends[(*n_msgs)++] = out->len;
	}
	return 0;
}

static int grow(void **p, size_t *cap, size_t need, size_t size)
{
	if (need <= *cap)
		return 0;
	size_t n = *cap ? *cap : 64;
	while (n < need)
		n *= 2;
	void *q = realloc(*p, n * size);
	if (!q)
		return -1;
	*p = q;
	*cap = n;
	return 0;
}

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0'
	     : c >= 'A' && c <= 'F' ? c - 'A' + 10
	     : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* The room part "CREATED_US ROOM" of an m line (p..end, after the UUID
 * and its space): 0 and the room, still escaped (*room_len is its
 * unescaped length), or -1 with the reason in why. */
static int parse_room(const char *p, const char *end, int64_t *created,
                      const char **room, size_t *room_len, char *why,
                      size_t whylen)
{
	int64_t v = 0;
	const char *q = p;
	size_t n = 0;
	bool over = false;

	if (q >= end || *q < '0' || *q > '9') {
		snprintf(why, whylen, "no created_at after the UUID");
		return -1;
	}
	for (; q < end && *q >= '0' && *q <= '9'; q++) {
		if (over || v > (INT64_MAX - (*q - '0')) / 10)
			over = true; /* the digits read on, to be shown */
		else
			v = v * 10 + (*q - '0');
	}
	if (over) {
		int shown = q - p > 32 ? 32 : (int)(q - p);
		snprintf(why, whylen, "created_at %.*s%s is above 2^63 - 1 us",
		         shown, p, q - p > shown ? "..." : "");
		return -1;
	}
	if (q >= end || *q != ' ' || ++q >= end) {
		snprintf(why, whylen, "no room after created_at %" PRId64, v);
		return -1;
	}
	/* a message's created_at, as put stores it: a peer's later date
	 * would raise the room's watermark past every real message, its
	 * pages from PostgreSQL for good (libshm invalidate.c invariant 4);
	 * the rule shm_l1_invalidate_many keeps */
	if (!shm__inval_created_ok(v, true)) {
		snprintf(why, whylen, "created_at %" PRId64 " us is no message's "
		         "(1 to %" PRId64 ": 1970 to 9999)", v, SHM_TIME_MAX_US);
		return -1;
	}
	*room = q;
	for (const char *r = q; r < end; n++) {
		unsigned char c = (unsigned char)*r;
		if (c == '%') {
			if (end - r < 3 || hexval(r[1]) < 0 || hexval(r[2]) < 0 ||
			    (hexval(r[1]) << 4 | hexval(r[2])) == 0) {
				snprintf(why, whylen, "room: bad %%-escape at "
				         "byte %zu", (size_t)(r - q));
				return -1;
			}
			r += 3;
		} else if (room_escaped(c)) {
			snprintf(why, whylen, "room: byte %zu (0x%02x) is not "
			         "%%-escaped", (size_t)(r - q), c);
			return -1;
		} else {
			r++;
		}
	}
	if (n > SHM_MAX_ROOM) {
		snprintf(why, whylen, "room: longer than %d bytes", SHM_MAX_ROOM);
		return -1;
	}
	*created = v;
	*room_len = n;
	return 0;
}

/* Writes the room parse_room accepted, unescaped and NUL-terminated. */
static void unescape_room(const char *p, size_t len, char *out)
{
	for (size_t i = 0; i < len; i++) {
		if (*p == '%') {
			out[i] = (char)(hexval(p[1]) << 4 | hexval(p[2]));
			p += 3;
		} else {
			out[i] = *p++;
		}
	}
	out[len] = 0;
}

int fl_inval_parse(const char *msg, size_t len, fl_inval_msg *m, char *err,
                   size_t errlen)
{
	const char *p = msg, *end = msg + len, *nl;
	size_t hl = strlen(HEADER), line = 1;

	m->n = 0;
	m->kb_len = 0;
	m->env_id[0] = 0;
	m->rooms_refused = 0;
	m->room_why[0] = 0;
	nl = memchr(p, '\n', len);
	bool v2 = nl && (size_t)(nl - p) > hl && memcmp(p, HEADER, hl) == 0;
	if (!nl || (size_t)(nl - p) <= hl ||
	    (!v2 && memcmp(p, HEADER_V1, hl) != 0) ||
	    (size_t)(nl - p) - hl >= sizeof m->env_id) {
		snprintf(err, errlen, "not an shm-inval 1 or 2 message");
		return -1;
	}
	/* no sender writes a byte that is not printable ASCII, nor a space
	 * (fl_inval_start): cut at a NUL it could read as ours, and it is
	 * logged ("first invalidation from another host (%s)") */
	for (const char *q = p + hl; q < nl; q++) {
		unsigned char c = (unsigned char)*q;
		if (c == 0) {
			snprintf(err, errlen, "env id: NUL byte at offset %zu",
			         (size_t)(q - p) - hl);
			return -1;
		}
		if (!isgraph(c)) {
			snprintf(err, errlen, "env id: byte %zu (0x%02x) is not a "
			         "printable ASCII character other than space",
			         (size_t)(q - p) - hl, c);
			return -1;
		}
	}
	memcpy(m->env_id, p + hl, (size_t)(nl - p) - hl);
	m->env_id[(size_t)(nl - p) - hl] = 0;
	for (p = nl + 1; p < end; p = nl + 1) {
		char u[37];
		shm_uuid id;
		size_t off = m->kb_len, klen;
		int kind;

		line++;
		if (!(nl = memchr(p, '\n', (size_t)(end - p)))) {
			snprintf(err, errlen, "line %zu: no line end", line);
			return -1;
		}
		size_t ll = (size_t)(nl - p);
		if (ll < 2 + 36 || (p[0] != 'm' && p[0] != 's') || p[1] != ' ') {
			snprintf(err, errlen, "line %zu: expected 'm UUID' or "
			         "'s UUID OBJECT'", line);
			return -1;
		}
		memcpy(u, p + 2, 36);
		u[36] = 0;
		if (shm_uuid_parse(u, &id)) {
			snprintf(err, errlen, "line %zu: bad UUID", line);
			return -1;
		}
		const char *room = NULL;
		size_t room_len = 0;
		int64_t created = 0;
		if (p[0] == 'm') {
			if (ll != 2 + 36 && (!v2 || p[38] != ' ')) {
				snprintf(err, errlen, "line %zu: expected 'm UUID'"
				         "%s", line, v2 ? " or 'm UUID CREATED_US "
				                          "ROOM'" : "");
				return -1;
			}
			/* the id is read: a room part that is not loses
			 * itself, not the id (a peer's bug must not keep
			 * the key stale here) */
			char why[120];
			if (ll != 2 + 36 &&
			    parse_room(p + 39, p + ll, &created, &room,
			               &room_len, why, sizeof why)) {
				room = NULL;
				created = 0;
				if (m->rooms_refused++ == 0)
					snprintf(m->room_why, sizeof m->room_why,
					         "line %zu: %s", line, why);
			}
			kind = SHM_INVAL_MSG;
			klen = 16;
		} else {
			size_t ol = ll > 39 ? ll - 39 : 0;
			if (ll < 40 || p[38] != ' ' || ol > SHM_MAX_OBJECT) {
				snprintf(err, errlen, "line %zu: bad static key",
				         line);
				return -1;
			}
			kind = SHM_INVAL_STATIC;
			klen = 16 + ol;
		}
		/* the room, unescaped, after the key, NUL-terminated; kept
		 * only if UTF-8 (libshm refuses the others) */
		size_t need = klen + (room ? room_len + 1 : 0);
		if (grow((void **)&m->keybuf, &m->kb_cap, m->kb_len + need, 1) ||
		    grow((void **)&m->keys, &m->cap, m->n + 1, sizeof *m->keys)) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		memcpy(m->keybuf + off, id.b, 16);
		if (kind == SHM_INVAL_STATIC) {
			char *o = (char *)m->keybuf + off + 16;
			size_t tl;
			memcpy(o, p + 39, klen - 16);
			/* as libshm keys it: a peer older than the canonical
			 * form may name a UUID ID in upper case */
			if (fl_object_split(o, klen - 16, &tl))
				fl_object_id_canon(o + tl + 1, klen - 16 - tl - 1);
		}
		size_t room_off = 0; /* 0: none (a key comes first) */
		if (room) {
			char *r = (char *)m->keybuf + off + klen;
			unescape_room(room, room_len, r);
			size_t bad = shm__utf8_bad(r, room_len);
			if (bad == room_len)
				room_off = off + klen;
			else if (m->rooms_refused++ == 0)
				snprintf(m->room_why, sizeof m->room_why,
				         "line %zu: room not UTF-8 at byte %zu",
				         line, bad);
		}
		m->kb_len += room_off ? need : klen;
		/* pointers fixed below: keybuf may still move */
		m->keys[m->n] = (shm_inval_key){
			.kind = kind,
			.key = (const void *)(uintptr_t)off,
			.klen = klen,
			.room = (const char *)(uintptr_t)room_off,
			.created_at = created,
		};
		m->n++;
	}
	for (size_t i = 0; i < m->n; i++) {
		uintptr_t room_off = (uintptr_t)m->keys[i].room;
		m->keys[i].key = m->keybuf + (uintptr_t)m->keys[i].key;
		m->keys[i].room = room_off ? (const char *)m->keybuf + room_off
		                           : NULL;
	}
	return 0;
}

void fl_inval_msg_free(fl_inval_msg *m)
{
	free(m->keys);
	free(m->keybuf);
	memset(m, 0, sizeof *m);
}

/* ---------------------------------------------------------- publisher */

/* One PUBLISH on the publisher connection; reconnects once. */
static int publish_one(fl_inval *iv, const char *msg, size_t len)
{
	char err[512] = "", shown[SHM__SHOWN_LONG_MAX];
	char server[FL_REDIS_SERVER_MAX];

	for (int attempt = 0; attempt < 2; attempt++) {
		if (!iv->pub &&
		    !(iv->pub = fl_redis_connect(iv->cfg, err, sizeof err)))
			continue;
		redisReply *r = redisCommand(iv->pub, "PUBLISH %s %b",
		                             FL_INVAL_CHANNEL, msg, len);
		if (r && r->type == REDIS_REPLY_INTEGER) {
			freeReplyObject(r);
			fl_repeat_ok(&iv->pub_fail);
			return 0;
		}
		snprintf(err, sizeof err, "PUBLISH on %s: %s",
		         fl_redis_server(iv->cfg, iv->pub, server),
		         !r ? fl_redis_error(iv->pub->errstr)
		            : r->type == REDIS_REPLY_ERROR
		                  ? shm__shown_lines(r->str, shown)
		                  : "unexpected reply");
		if (r)
			freeReplyObject(r);
		redisFree(iv->pub);
		iv->pub = NULL;
	}
	fl_repeat_fail(&iv->pub_fail, FL_WARN, "%s: other hosts keep their "
	               "copies of these keys until their L1 TTL", err);
	return -1;
}

void fl_inval_published(void *user, const fl_batch *b)
{
	fl_inval *iv = user;
	size_t *ends, n = 0, from = 0;
	int rc;

	if (!iv || !b->n)
		return;
	iv->pbuf.len = 0;
	/* a message names one key at least, a key one record of b: b->n
	 * messages at most, however many FL_INVAL_MAX_MSG the keys take */
	if (!(ends = malloc(b->n * sizeof *ends)))
		rc = ENOMEM;
	else
		rc = fl_inval_encode(iv->env_id, b, &iv->pbuf, ends, b->n, &n);
	if (rc) {
		fl_log(FL_ERROR, "inval", "batch (%" PRIu64 "..%" PRIu64 "]: "
		       "cannot build the invalidation: %s", b->from, b->upto,
		       strerror(rc));
		ADD(iv, publish_errors, 1);
		free(ends);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		if (publish_one(iv, iv->pbuf.p + from, ends[i] - from))
			ADD(iv, publish_errors, 1);
		else
			ADD(iv, published, 1);
		from = ends[i];
	}
	free(ends);
	if (iv->pbuf.cap > 4 * FL_INVAL_MAX_MSG) {
		fl_buf_free(&iv->pbuf); /* do not keep a huge batch's buffer */
	}
}

/* --------------------------------------------------------- subscriber */

static bool stopping(fl_inval *iv)
{
	return fl_stopped(&iv->lock, &iv->stop);
}

static void nap(fl_inval *iv, uint64_t ms)
{
	fl_nap(&iv->lock, &iv->cond, &iv->stop, ms);
}

/* Writes the counters that changed into meta flusher.inval.*. */
static void stats_write(fl_inval *iv)
{
	const char *names[16];
	uint64_t values[16];
	size_t n = 0;
	__typeof__(iv->st) now;

#define INVAL_PUT(f)                                                           \
	now.f = GET(iv, f);                                                    \
	if (now.f != iv->written.f || !iv->stats_once) {                       \
		names[n] = "flusher.inval." #f;                                \
		values[n++] = now.f;                                           \
	}
	INVAL_STATS(INVAL_PUT)
#undef INVAL_PUT
	if (!n)
		return;
	if (shm_meta_set_many(iv->env, names, values, n)) {
		fl_repeat_fail(&iv->stats_fail, FL_WARN, "cannot write stats: %s",
		               shm_errmsg());
		return;
	}
	fl_repeat_ok(&iv->stats_fail);
	iv->written = now;
	iv->stats_once = true;
}

/* nap, the counters written every stats-interval-ms meanwhile: while the
 * subscriber is down the publisher's still move. */
static void nap_writing_stats(fl_inval *iv, uint64_t ms)
{
	uint64_t now = fl_mono_ms(), end = now + ms;

	for (; now < end && !stopping(iv); now = fl_mono_ms()) {
		stats_write(iv);
		nap(iv, end - now < iv->cfg->stats_interval_ms
		                ? end - now
		                : iv->cfg->stats_interval_ms);
	}
}

static void set_subscribed(fl_inval *iv, bool on)
{
	__atomic_store_n(&iv->st.subscribed, on ? 1 : 0, __ATOMIC_RELEASE);
	stats_write(iv);
}

/* Drops every flushed entry: invalidations may have been missed. Settles
 * an owed reset (invariants 6, 8) if it works. */
static void reset_l1(fl_inval *iv, const char *why)
{
	uint64_t n = 0;

	if (shm_l1_invalidate_flushed(iv->env, &n)) {
		fl_repeat_fail(&iv->reset_fail, FL_ERROR, "%s: cannot drop the "
		               "flushed L1 entries: %s", why, shm_errmsg());
		ADD(iv, errors, 1);
		return;
	}
	fl_repeat_ok(&iv->reset_fail);
	iv->reset_owed = false;
	if (iv->bad_fail.failing) {
		/* invariant 8: while malformed messages come, the next reset
		 * for one waits, longer each time */
		iv->bad_next = fl_mono_ms() + iv->bad_backoff;
		iv->bad_backoff = fl_backoff_next(iv->cfg, iv->bad_backoff);
	}
	ADD(iv, resets, 1);
	ADD(iv, dropped, n);
	fl_log(FL_INFO, "inval", "%s: dropped %" PRIu64 " flushed L1 entr%s "
	       "(invalidations may have been missed)", why, n,
	       n == 1 ? "y" : "ies");
}

/* Whether one key of m names a room. */
static bool has_rooms(const fl_inval_msg *m)
{
	for (size_t i = 0; i < m->n; i++)
		if (m->keys[i].room)
			return true;
	return false;
}

/* Invariants 6, 8: a reset is owed from now on, tried by itself at
 * mono ms at (then every backoff while it fails); one already owed keeps
 * its time. */
static void owe_reset(fl_inval *iv, const char *why, uint64_t at)
{
	if (iv->reset_owed)
		return;
	iv->reset_owed = true;
	iv->owed_why = why;
	iv->owed_backoff = iv->cfg->backoff_min_ms;
	iv->owed_next = at;
}

/* Another host was heard from (who: its env id, or what came): from now
 * on a gap in the subscription resets L1 (invariant 4). */
static void peer_heard(fl_inval *iv, const char *who)
{
	if (iv->peers_seen)
		return;
	iv->peers_seen = 1;
	if (shm_meta_set(iv->env, PEERS_META, 1))
		fl_log(FL_WARN, "inval", "cannot record %s: %s", PEERS_META,
		       shm_errmsg());
	fl_log(FL_INFO, "inval", "first invalidation from another host (%s)",
	       who);
}

/* Invariant 8: a message that does not read owes a reset, whoever it says
 * it is from. */
static void malformed(fl_inval *iv, size_t len, const char *err)
{
	uint64_t now = fl_mono_ms();

	if (!iv->bad_fail.failing)
		iv->bad_backoff = iv->cfg->backoff_min_ms;
	fl_repeat_fail(&iv->bad_fail, FL_WARN, "a malformed message (%zu "
	               "byte%s, its sender unknown): %s; the keys it named "
	               "are unknown: every flushed L1 entry will be dropped",
	               len, shm__plural(len), err);
	iv->bad_last = now;
	ADD(iv, errors, 1);
	peer_heard(iv, "a malformed message");
	owe_reset(iv, "after a malformed message",
	          now > iv->bad_next ? now : iv->bad_next);
}

/* Invariant 8: malformed messages end when none came for a
 * remind-interval. */
static void malformed_quiet(fl_inval *iv)
{
	if (iv->bad_fail.failing &&
	    fl_mono_ms() - iv->bad_last >= iv->cfg->remind_interval_s * 1000)
		fl_repeat_ok(&iv->bad_fail);
}

static void handle(fl_inval *iv, const char *msg, size_t len,
                   fl_inval_msg *m)
{
	char err[200];
	uint64_t dropped = 0, kept = 0;

	if (fl_inval_parse(msg, len, m, err, sizeof err)) {
		malformed(iv, len, err);
		return;
	}
	if (strcmp(m->env_id, iv->env_id) == 0)
		return; /* our own writes */
	ADD(iv, received, 1);
	ADD(iv, keys, m->n);
	peer_heard(iv, m->env_id);
	if (m->rooms_refused) {
		/* a room part refused (a peer's bug: a created_at no message
		 * has, a room not UTF-8, ...) does not keep its id stale: the
		 * id goes without it (invariant 8); a buggy peer's every
		 * message would be a line: said once, reminded */
		fl_repeat_fail(&iv->room_fail, FL_WARN, "from %s: %s, %zu in "
		               "all; those rooms ignored, their ids dropped",
		               m->env_id, m->room_why, m->rooms_refused);
		snprintf(iv->room_peer, sizeof iv->room_peer, "%s", m->env_id);
		ADD(iv, errors, 1);
	} else if (iv->room_fail.failing &&
	           strcmp(m->env_id, iv->room_peer) == 0 && has_rooms(m)) {
		fl_repeat_ok(&iv->room_fail); /* that peer's rooms are fine now */
	}
	int rc = shm_l1_invalidate_many(iv->env, m->keys, m->n, &dropped,
	                                &kept);
	if (rc) {
		/* a key stays stale. A new failure may pass (the trim freeing
		 * pages): one more try after a pause. One that lasts is tried
		 * once per message, without it (invariant 5). */
		if (!iv->drop_fail.failing) {
			nap(iv, iv->cfg->backoff_min_ms);
			rc = shm_l1_invalidate_many(iv->env, m->keys, m->n,
			                            &dropped, &kept);
		}
		if (rc) {
			fl_repeat_fail(&iv->drop_fail, FL_ERROR, "from %s: %zu "
			               "keys not invalidated: %s; every flushed "
			               "L1 entry will be dropped once drops work "
			               "again", m->env_id, m->n, shm_errmsg());
			ADD(iv, errors, 1);
			owe_reset(iv, "after failed drops",
			          fl_mono_ms() + iv->cfg->backoff_min_ms);
			return;
		}
	}
	if (iv->reset_owed && iv->drop_fail.failing)
		iv->owed_next = 0; /* invariant 6: drops work again, reset now */
	fl_repeat_ok(&iv->drop_fail);
	ADD(iv, dropped, dropped);
	ADD(iv, kept, kept);
	if (dropped || kept)
		fl_log(FL_DEBUG, "inval", "from %s: %zu keys, %" PRIu64
		       " dropped, %" PRIu64 " kept (unflushed here)", m->env_id,
		       m->n, dropped, kept);
}

/* Invariant 6: the owed reset, at most once per backoff (doubled up to
 * backoff-max-ms while it fails), at once when a drop worked again. */
static void retry_owed_reset(fl_inval *iv)
{
	uint64_t now = fl_mono_ms();

	if (!iv->reset_owed || now < iv->owed_next)
		return;
	reset_l1(iv, iv->owed_why);
	if (!iv->reset_owed)
		return;
	iv->owed_backoff = fl_backoff_next(iv->cfg, iv->owed_backoff);
	iv->owed_next = fl_mono_ms() + iv->owed_backoff;
}

/* Handles one reply of the subscribed connection. */
static void on_reply(fl_inval *iv, redisReply *r, fl_inval_msg *m)
{
	if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
	    r->element[0]->type == REDIS_REPLY_STRING &&
	    strcmp(r->element[0]->str, "message") == 0 &&
	    r->element[2]->type == REDIS_REPLY_STRING)
		handle(iv, r->element[2]->str, r->element[2]->len, m);
}

/* Subscribes c; 0 once Redis confirmed. */
static int subscribe(fl_inval *iv, redisContext *c, char *err, size_t errlen)
{
	redisReply *r = redisCommand(c, "SUBSCRIBE %s", FL_INVAL_CHANNEL);
	char shown[SHM__SHOWN_LONG_MAX], server[FL_REDIS_SERVER_MAX];
	int ok = r && r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
	         r->element[0]->type == REDIS_REPLY_STRING &&
	         strcmp(r->element[0]->str, "subscribe") == 0;

	if (!ok)
		snprintf(err, errlen, "SUBSCRIBE on %s: %s",
		         fl_redis_server(iv->cfg, c, server),
		         !r ? fl_redis_error(c->errstr)
		            : r->type == REDIS_REPLY_ERROR
		                  ? shm__shown_lines(r->str, shown)
		                  : "unexpected reply");
	if (r)
		freeReplyObject(r);
	return ok ? 0 : -1;
}

static void *sub_run(void *arg)
{
	fl_inval *iv = arg;
	fl_inval_msg m;
	uint64_t backoff = iv->cfg->backoff_min_ms, fails = 0;
	uint64_t next_stats = 0;
	char err[512];

	memset(&m, 0, sizeof m);
	shm_meta_get(iv->env, PEERS_META, &iv->peers_seen);
	while (!stopping(iv)) {
		redisContext *c = fl_redis_connect(iv->cfg, err, sizeof err);
		if (c && subscribe(iv, c, err, sizeof err)) {
			redisFree(c);
			c = NULL;
		}
		if (!c) {
			fails++;
			fl_log(fails == 1 ? FL_WARN : FL_INFO, "inval",
			       "subscriber: %s; retry %" PRIu64 " in %" PRIu64
			       " ms", err, fails, backoff);
			nap_writing_stats(iv, backoff);
			backoff = fl_backoff_next(iv->cfg, backoff);
			continue;
		}
		if (fails)
			fl_log(FL_INFO, "inval", "subscriber back after %" PRIu64
			       " failure%s", fails, fails == 1 ? "" : "s");
		else
			fl_log(FL_INFO, "inval", "subscribed to %s as %s",
			       FL_INVAL_CHANNEL, iv->env_id);
		fails = 0;
		uint64_t since = fl_mono_ms();
		/* invariant 4: messages sent meanwhile wait in the socket */
		if (iv->peers_seen)
			reset_l1(iv, "subscribed");
		set_subscribed(iv, true);

		/* read loop: wake_fd ends a poll at stop (invariant 1) */
		for (;;) {
			void *reply = NULL;
			bool broken = false;
			while (redisGetReplyFromReader(c, &reply) == REDIS_OK &&
			       reply) {
				on_reply(iv, reply, &m);
				freeReplyObject(reply);
				reply = NULL;
			}
			if (c->err) {
				snprintf(err, sizeof err, "%s",
				         fl_redis_error(c->errstr));
				broken = true;
			}
			if (!broken && fl_mono_ms() >= next_stats) {
				stats_write(iv);
				next_stats = fl_mono_ms() +
				             iv->cfg->stats_interval_ms;
			}
			if (broken || stopping(iv))
				break;
			retry_owed_reset(iv);
			malformed_quiet(iv);
			struct pollfd pfd[2] = {{c->fd, POLLIN, 0},
			                        {iv->wake_fd, POLLIN, 0}};
			int pr = poll(pfd, iv->wake_fd >= 0 ? 2 : 1, 200);
			if (pr < 0 && errno != EINTR) {
				snprintf(err, sizeof err, "poll: %s",
				         strerror(errno));
				broken = true;
			} else if (pr > 0 && pfd[0].revents &&
			           redisBufferRead(c) != REDIS_OK) {
				snprintf(err, sizeof err, "%s",
				         fl_redis_error(c->errstr));
				broken = true;
			}
			if (broken)
				break;
		}
		redisFree(c);
		set_subscribed(iv, false);
		if (stopping(iv))
			break;
		/* invariant 7 */
		bool flapping = fl_mono_ms() - since < iv->cfg->backoff_max_ms;
		if (!flapping)
			backoff = iv->cfg->backoff_min_ms;
		fl_log(backoff == iv->cfg->backoff_min_ms ? FL_WARN : FL_INFO,
		       "inval", "subscriber lost its connection: %s; "
		       "reconnecting in %" PRIu64 " ms", err, backoff);
		fails = 1;
		nap_writing_stats(iv, backoff);
		if (flapping)
			backoff = fl_backoff_next(iv->cfg, backoff);
	}
	fl_inval_msg_free(&m);
	return NULL;
}

/* ------------------------------------------------------------- public */

int fl_inval_start(fl_inval **out, const fl_config *cfg, shm_env *env,
                   const char *env_id, bool subscribe_too)
{
	fl_inval *iv;
	pthread_condattr_t ca;
	int rc;

	*out = NULL;
	if (!env_id || !*env_id || strlen(env_id) >= sizeof iv->env_id) {
		fl_log(FL_ERROR, "inval", "env id '%s' cannot be used on the "
		       "invalidation channel", env_id ? env_id : "");
		return EINVAL;
	}
	for (const char *p = env_id; *p; p++)
		if (!isgraph((unsigned char)*p)) {
			fl_log(FL_ERROR, "inval", "env id '%s': the invalidation "
			       "channel needs one without spaces or control "
			       "characters", env_id);
			return EINVAL;
		}
	if (!(iv = calloc(1, sizeof *iv)))
		return ENOMEM;
	iv->cfg = cfg;
	iv->env = env;
#define INVAL_LOAD(f) shm_meta_get(env, "flusher.inval." #f, &iv->st.f);
	INVAL_TOTALS(INVAL_LOAD)
#undef INVAL_LOAD
	fl_repeat_init(&iv->stats_fail, "inval", "writing flusher.inval.* stats",
	               cfg->remind_interval_s);
	fl_repeat_init(&iv->pub_fail, "inval", "publishing invalidations",
	               cfg->remind_interval_s);
	fl_repeat_init(&iv->drop_fail, "inval", "dropping keys other hosts "
	               "wrote", cfg->remind_interval_s);
	fl_repeat_init(&iv->reset_fail, "inval", "dropping the flushed L1 "
	               "entries after a gap, failed drops or a malformed "
	               "message", cfg->remind_interval_s);
	fl_repeat_init(&iv->room_fail, "inval", "rooms of other hosts' "
	               "messages", cfg->remind_interval_s);
	fl_repeat_init(&iv->bad_fail, "inval", "reading other hosts' messages",
	               cfg->remind_interval_s);
	snprintf(iv->env_id, sizeof iv->env_id, "%s", env_id);
	pthread_mutex_init(&iv->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&iv->cond, &ca);
	pthread_condattr_destroy(&ca);
	iv->subscribe = subscribe_too;
	iv->wake_fd = subscribe_too ? eventfd(0, EFD_CLOEXEC) : -1;
	if (subscribe_too &&
	    (rc = pthread_create(&iv->thread, NULL, sub_run, iv))) {
		fl_log(FL_ERROR, "inval", "cannot start the subscriber: %s",
		       strerror(rc));
		if (iv->wake_fd >= 0)
			close(iv->wake_fd);
		pthread_cond_destroy(&iv->cond);
		pthread_mutex_destroy(&iv->lock);
		free(iv);
		return rc;
	}
	*out = iv;
	return 0;
}

bool fl_inval_subscribed(fl_inval *iv)
{
	return iv && __atomic_load_n(&iv->st.subscribed, __ATOMIC_ACQUIRE);
}

void fl_inval_stop(fl_inval *iv)
{
	if (!iv)
		return;
	pthread_mutex_lock(&iv->lock);
	iv->stop = true;
	pthread_cond_broadcast(&iv->cond);
	pthread_mutex_unlock(&iv->lock);
	if (iv->wake_fd >= 0) {
		uint64_t one = 1;
		ssize_t n = write(iv->wake_fd, &one, sizeof one);
		(void)n; /* an eventfd takes it; poll's timeout would cover it */
	}
	if (iv->subscribe)
		pthread_join(iv->thread, NULL);
	if (iv->wake_fd >= 0)
		close(iv->wake_fd);
	stats_write(iv);
	if (iv->pub)
		redisFree(iv->pub);
	fl_buf_free(&iv->pbuf);
	pthread_cond_destroy(&iv->cond);
	pthread_mutex_destroy(&iv->lock);
	free(iv);
}
