/* tests/test_hosts_random.c - two hosts, each its own L1 and shm-flusher
 * daemon, Redis and PostgreSQL shared: a seeded randomized differential
 * test of what each host serves once the invalidations went round.
 *
 * What the design promises across hosts (README "Several hosts"), and so
 * all this test checks: eventually, not at once. A write on host A reaches
 * the other host B only after A's flusher applied its batch to Redis and
 * PUBLISHed the batch's keys on shm:inval, and B's flusher dropped them
 * from B's L1 (flushed entries only: B's own unflushed work is kept) and
 * raised the watermark of the rooms the
 * keys name, so that B's room pages reaching back that far ask
 * PostgreSQL. Until then B may serve the old version, and its room pages
 * may lack A's new messages; nothing is checked meanwhile. Once both
 * flushers applied every record to both sinks, and each host's subscriber
 * handled every message the other published (the counts
 * flusher.inval.published of one equal flusher.inval.received of the
 * other), every read on either host is PostgreSQL's row: shm_msg_get of
 * every message, and every room page, held against PostgreSQL's own
 * keyset query (created_at DESC, id DESC, before, limit).
 *
 * Concurrent writes of one message on both hosts are left out:
 * PostgreSQL keeps the newer updated_at, Redis the last one applied, so
 * they may then end with different versions, which the design does not
 * rule out (README "Several hosts"). So in
 * a step a message is written on one host only (a reply counts as a
 * write of its parent); across steps, on either, once both sinks of both
 * hosts have every write of the step before (a write that follows the
 * other host's, having read it, wins in PostgreSQL even while that host's
 * PostgreSQL sink lags: test_lagging_pg_sink_keeps_the_newer_edit).
 *
 * Two cases the random test found or could only hit by chance have their
 * own tests first: a message another host moved (room or time) missing
 * from pages this host's L1 answered alone, and a read-through fill that
 * waited for the writers' lock while the invalidation of its key came.
 *
 * A round: two fresh environments (each L1 capacity drawn among small
 * ones that evict and a large one that keeps all: only then are room
 * pages answered by L1 alone), rows a third host left in PostgreSQL
 * before them, two daemons with distinct --env-id; then steps: random
 * operations on random hosts (puts, batched puts, replies, edits,
 * reactions, soft deletes, moves to another room or time, deleted
 * messages put again (PostgreSQL keeps the delete), gets on either host
 * that fill its L1 from Redis or PostgreSQL, before and after the other
 * host writes), with a reader thread on each host doing gets all along
 * (fills racing with the invalidations coming in); one host's newest
 * messages in every room (its L1 alone answers those pages, until the
 * other host's next writes); a wait for the condition above; the checks.
 * Some steps start with a gap: one host's flusher stopped while both
 * write, the other's newest messages among them, then started again;
 * that host must drop its flushed entries and raise its room floor (the
 * invalidations of the gap are lost), and writes around the other's gap
 * messages, so that only the floor keeps its L1 from answering those
 * pages alone. After a gap the counts compared leave out the messages
 * published during it.
 *
 * The seed is printed; SHM_TEST_SEED=<n> replays its operations (what L1
 * evicts, and when a fill races with an invalidation, follow timing: a
 * replay is close, not identical). SHM_TEST_ROUNDS=<n> (default 4),
 * SHM_TEST_STEPS=<n> (default 4). Needs a real redis-server and
 * PostgreSQL (tests/run.sh, tests/run_integration.sh); skips without them.
 * Rows use rooms "hr<pid>-..." and are removed afterwards. */
#include <inttypes.h>
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "flusher_test.h"
#include "random_test.h"
#include "internal.h" /* shm__write: a writer that holds the lock */
#include "pg_row.h"

#define HOSTS 2
#define ROOMS 3
#define MAX_KNOWN 2048
#define MS INT64_C(1000) /* µs */
/* L1 capacities: small ones evict (and fill back) most flushed messages;
 * only a large one answers pages alone, where another host's writes hide */
static const uint64_t l1_entries[] = {12, 48, 100000, 100000};

static char prefix[32]; /* "hr<pid>" */

typedef struct known {
	shm_msg *m; /* the last version written, or PostgreSQL's at the last
	             * check */
	int owner;  /* the host that wrote it in this step, or -1 */
} known;

typedef struct host {
	char *dir;
	char id[64];
	shm_options o;
	shm_env *env;
	pid_t flusher;
} host;

static struct {
	int round, step;
	host h[HOSTS];
	char room[ROOMS][64];
	PGconn *db;
	known k[MAX_KNOWN];
	size_t n;
	int64_t pre, post;
	unsigned slots;
	/* what the checks went through */
	unsigned retried, resurrected, gets, gets_l1, walks, pages, pages_l1,
		writes_other, moves, settles;
	uint64_t settle_ms_max;
	/* per host: messages the other published while its flusher was
	 * down (gap()), and the resets that made */
	uint64_t lost[HOSTS], resets[HOSTS];
	unsigned gaps;
	int down; /* the host whose flusher is stopped, or -1 */
	unsigned down_ops;
} W;

/* ------------------------------------------------------------ helpers */

static bool held(int h, const shm_uuid *id)
{
	shm_rtxn *t;
	const shm_msg *v;
	bool in;

	assert_int_equal(shm_rtxn_begin(W.h[h].env, &t), 0);
	in = shm_msg_view(t, id, &v) == 0;
	shm_rtxn_end(t);
	return in;
}

static char *json_of(const shm_msg *m)
{
	char *j;
	size_t len;

	assert_int_equal(shm_msg_to_json(m, &j, &len), 0);
	return j;
}

static known *find(const shm_uuid *id)
{
	for (size_t i = 0; i < W.n; i++)
		if (!memcmp(W.k[i].m->id.b, id->b, 16))
			return &W.k[i];
	return NULL;
}

/* SHM_TEST_TRACE=<start of an id>: what happens to that message. */
static void trace(int h, const shm_uuid *id, const char *what)
{
	const char *t = getenv("SHM_TEST_TRACE");
	char s[37];

	shm_uuid_format(id, s);
	if (!t || !*t || strncmp(s, t, strlen(t)))
		return;
	known *k = find(id);
	fprintf(stderr, "trace: round %d step %d host %d: %s %s: room %s at %"
	        PRId64 "; held on A %d, B %d\n", W.round, W.step, h, what, s,
	        k ? k->m->room_id : "?", k ? k->m->created_at : 0,
	        held(0, id), held(1, id));
}

/* Records what host h's L1 holds of id, just written there by h. id may
 * point into the known message it replaces: copied first. */
static void remember(int h, const shm_uuid *id_in)
{
	shm_uuid idc = *id_in;
	const shm_uuid *id = &idc;
	known *k = find(id);
	shm_msg *m;

	assert_true(held(h, id));
	assert_int_equal(shm_msg_get(W.h[h].env, id, &m), 0);
	if (!k) {
		assert_true(W.n < MAX_KNOWN);
		k = &W.k[W.n++];
	} else {
		shm_msg_free(k->m);
	}
	k->m = m;
	k->owner = h;
	trace(h, id, "written");
}

/* Whether host h may write k in this step (no other host did). */
static bool mine(int h, const known *k)
{
	return k->owner < 0 || k->owner == h;
}

static int64_t some_time(void)
{
	if (W.n && below(6) == 0)
		return W.k[below((uint32_t)W.n)].m->created_at; /* a tie */
	if (below(8) == 0)
		return W.pre + below(20) * MS;
	return W.post + below(W.slots) * MS;
}

/* A message host h may write, not deleted (r >= 0: of room r); NULL if
 * none found. */
static known *pick(int h, int r)
{
	for (int tries = 0; W.n && tries < 30; tries++) {
		known *k = &W.k[below((uint32_t)W.n)];
		if (k->m->type == SHM_MSG_DELETE || !mine(h, k))
			continue;
		if (r >= 0 && strcmp(k->m->room_id, W.room[r]))
			continue;
		return k;
	}
	return NULL;
}

/* A get of k on host h when its L1 does not hold k: a read-through
 * fill (which a racing invalidation, or eviction in a small L1, may
 * undo: callers try again). */
static void bring_back(int h, known *k)
{
	shm_msg *m;

	if (held(h, &k->m->id))
		return;
	if (shm_msg_get(W.h[h].env, &k->m->id, &m))
		fail_msg("seed %" PRIu64 ": host %d: get back: %s", seed, h,
		         shm_errmsg());
	shm_msg_free(m);
}

/* Retries a write while the map is full (its flusher behind). */
#define RETRY_FULL(rc, call)                                                   \
	for (int tries_ = 0; ((rc) = (call)) == SHM_EFULL && tries_ < 400;     \
	     tries_++)                                                         \
	tu_sleep_ms(25)

/* call, a write of k that needs it in host h's L1, tried again while L1
 * has lost it (SHM_ENOTFOUND: left as is after 20 tries) or is full. */
#define L1_RETRY(h, k, rc, call)                                               \
	for (int l1_ = 0; l1_ < 20; l1_++) {                                   \
		bring_back(h, k);                                              \
		RETRY_FULL(rc, call);                                          \
		if (rc != SHM_ENOTFOUND)                                       \
			break;                                                 \
		W.retried++;                                                   \
	}

/* ------------------------------------------------------------ writes */

static void note_write(int h, known *k)
{
	/* a message the other host holds now: what this test is for */
	if (k && held(1 - h, &k->m->id))
		W.writes_other++;
}

static void op_put(int h)
{
	int r = (int)below(ROOMS);
	char content[4][64];
	shm_msg m[4];
	known *parent = below(4) == 0 ? pick(h, r) : NULL;
	size_t n = 1;
	int rc;

	if (below(5) == 0) {
		n = 2 + below(3);
		parent = NULL;
	}
	for (size_t i = 0; i < n; i++) {
		snprintf(content[i], sizeof content[i], "r%d s%d h%d msg %zu/%zu",
		         W.round, W.step, h, W.n, i);
		m[i] = tu_msg(W.room[r], (int32_t)below(5) + 1, content[i]);
		m[i].id = new_id();
		m[i].created_at = below(10) ? some_time() : 0;
		m[i].content_hash = XXH3_64bits(content[i], m[i].content_len);
	}
	if (parent) {
		if (below(2))
			bring_back(h, parent);
		note_write(h, parent);
		m[0].has_parent = true;
		m[0].parent_id = parent->m->id;
		m[0].has_thread = true;
		m[0].thread_id = parent->m->has_thread ? parent->m->thread_id
		                                       : parent->m->id;
		parent->owner = h; /* its reply_count may move */
	}
	RETRY_FULL(rc, n == 1 ? shm_msg_put(W.h[h].env, &m[0])
	                      : shm_msg_put_many(W.h[h].env, m, n, NULL));
	if (rc)
		fail_msg("seed %" PRIu64 ": host %d: put: %s", seed, h,
		         shm_errmsg());
	for (size_t i = 0; i < n; i++)
		remember(h, &m[i].id);
	if (parent && held(h, &parent->m->id))
		remember(h, &parent->m->id);
}

/* Host h puts a message in room r at W.post + ms. */
static void put_at(int h, int r, unsigned ms, const char *what)
{
	char content[64];
	shm_msg m;
	int rc;

	snprintf(content, sizeof content, "r%d s%d h%d %s %zu", W.round,
	         W.step, h, what, W.n);
	m = tu_msg(W.room[r], 6, content);
	m.id = new_id();
	m.created_at = W.post + ms * MS;
	m.content_hash = XXH3_64bits(content, m.content_len);
	RETRY_FULL(rc, shm_msg_put(W.h[h].env, &m));
	if (rc)
		fail_msg("seed %" PRIu64 ": host %d: put %s: %s", seed, h, what,
		         shm_errmsg());
	remember(h, &m.id);
}

/* Host h puts the newest messages of each room, so that its L1 alone
 * answers their pages (until the other host reads or writes there). */
static void tail(int h)
{
	for (int r = 0; r < ROOMS; r++)
		for (uint32_t i = 0, n = 2 + below(4); i < n; i++)
			put_at(h, r, W.slots + i, "tail");
}

/* Rows a third host left in PostgreSQL before the environments existed. */
static void pg_rows(int n)
{
	for (int i = 0; i < n; i++) {
		char content[64];
		shm_msg m, *c;
		char *j;

		snprintf(content, sizeof content, "r%d third host %d", W.round,
		         i);
		m = tu_msg(W.room[below(ROOMS)], 9, content);
		m.id = new_id();
		m.created_at = W.pre + below(20) * MS;
		m.updated_at = m.created_at;
		m.content_hash = XXH3_64bits(content, m.content_len);
		tu_pg_put((PGconn *)W.db, &m);
		j = json_of(&m);
		assert_int_equal(shm_msg_from_json(j, strlen(j), &c, NULL, 0), 0);
		free(j);
		c->content_hash = m.content_hash;
		assert_true(W.n < MAX_KNOWN);
		W.k[W.n].m = c;
		W.k[W.n++].owner = -1;
	}
}

static void op_edit(int h)
{
	known *k = pick(h, -1);
	char content[80];
	int rc;

	if (!k)
		return;
	note_write(h, k);
	snprintf(content, sizeof content, "%s, edited on %d",
	         k->m->content_len < 40 ? k->m->content : "long", h);
	L1_RETRY(h, k, rc, shm_msg_edit(W.h[h].env, &k->m->id, content,
	                                strlen(content)));
	if (rc == SHM_ENOTFOUND)
		return; /* L1 kept losing it */
	if (rc)
		fail_msg("seed %" PRIu64 ": host %d: edit: %s", seed, h,
		         shm_errmsg());
	remember(h, &k->m->id);
}

static void op_react(int h)
{
	static const char *const emoji[] = {"ok", "\xf0\x9f\x8e\x89", "+1"};
	known *k = pick(h, -1);
	int rc;

	if (!k)
		return;
	note_write(h, k);
	int32_t user = (int32_t)below(4);
	const char *e = emoji[below(3)];
	bool add = below(4) != 0;
	L1_RETRY(h, k, rc, shm_msg_react(W.h[h].env, &k->m->id, user, e, add));
	if (rc == SHM_ENOTFOUND)
		return; /* L1 kept losing it */
	if (rc)
		fail_msg("seed %" PRIu64 ": host %d: react: %s", seed, h,
		         shm_errmsg());
	remember(h, &k->m->id);
}

static void op_delete(int h)
{
	known *k = pick(h, -1);
	int rc;

	if (!k)
		return;
	note_write(h, k);
	L1_RETRY(h, k, rc, shm_msg_delete(W.h[h].env, &k->m->id));
	if (rc == SHM_ENOTFOUND)
		return; /* L1 kept losing it */
	if (rc)
		fail_msg("seed %" PRIu64 ": host %d: delete: %s", seed, h,
		         shm_errmsg());
	remember(h, &k->m->id);
}

/* A message put again at another time, half the time in another room,
 * whether h's L1 holds it or not. Replies stay with their parent. */
static void op_move(int h)
{
	known *k = pick(h, -1);
	shm_msg m;
	int rc;

	if (!k || k->m->has_parent)
		return;
	if (below(2))
		bring_back(h, k);
	note_write(h, k);
	m = *k->m;
	if (below(2))
		m.room_id = W.room[below(ROOMS)];
	/* 1 in 3 past the newest messages (the last step's tail): where
	 * the other host's L1 may answer pages alone */
	m.created_at = below(3) ? some_time()
	                        : W.post + (W.slots + 6 + below(4)) * MS;
	RETRY_FULL(rc, shm_msg_put(W.h[h].env, &m));
	if (rc)
		fail_msg("seed %" PRIu64 ": host %d: move: %s", seed, h,
		         shm_errmsg());
	remember(h, &m.id);
	W.moves++;
}

/* A soft-deleted message host h's L1 does not hold, put again undeleted
 * there (maybe at another time; not a reply, whose parent may have moved
 * away): PostgreSQL keeps its delete, and h's flusher puts PostgreSQL's
 * row back into h's L1 (README "Soft delete is final"); both hosts read
 * it deleted once settled. */
static void op_resurrect(int h)
{
	known *k = NULL;
	shm_msg m;
	int rc;

	for (int tries = 0; W.n && tries < 30 && !k; tries++) {
		k = &W.k[below((uint32_t)W.n)];
		if (k->m->type != SHM_MSG_DELETE || k->owner >= 0 ||
		    k->m->has_parent || held(h, &k->m->id))
			k = NULL;
	}
	if (!k)
		return;
	note_write(h, k);
	m = *k->m;
	m.type = SHM_MSG_TEXT;
	m.content = "back from the dead";
	m.content_len = (uint32_t)strlen(m.content);
	m.content_hash = XXH3_64bits(m.content, m.content_len);
	if (below(2))
		m.created_at = some_time();
	RETRY_FULL(rc, shm_msg_put(W.h[h].env, &m));
	if (rc == SHM_EDELETED && held(h, &m.id))
		return; /* a reader filled it meanwhile: the put is refused */
	if (rc)
		fail_msg("seed %" PRIu64 ": host %d: resurrect: %s", seed, h,
		         shm_errmsg());
	/* known as deleted still: h's flusher puts the delete back into
	 * h's L1 at any moment (no edit, reaction or reply takes it then) */
	k->owner = h;
	trace(h, &m.id, "put again");
	W.resurrected++;
}

/* A get on host h, unchecked (the other host's writes may not have
 * reached it yet): it fills h's L1, before or after the other host
 * writes the message. */
static void op_get(int h)
{
	shm_msg *m = NULL;

	if (!W.n)
		return;
	known *k = &W.k[below((uint32_t)W.n)];
	int rc = shm_msg_get(W.h[h].env, &k->m->id, &m);
	/* new on the other host, maybe in no sink yet */
	if (rc == SHM_ENOTFOUND && k->owner == 1 - h)
		return;
	trace(h, &k->m->id, "get");
	if (rc)
		fail_msg("seed %" PRIu64 ": host %d: get: %s", seed, h,
		         shm_errmsg());
	shm_msg_free(m);
}

static void writes(int n)
{
	for (int i = 0; i < n; i++) {
		int h = (int)below(HOSTS);
		unsigned x = below(100);

		/* a host whose flusher is down (gap()) writes a few: its L1
		 * may be small, and none of them is flushed before the end */
		if (h == W.down && W.down_ops++ >= 4)
			h = 1 - h;

		if (x < 35)
			op_put(h);
		else if (x < 47)
			op_edit(h);
		else if (x < 57)
			op_react(h);
		else if (x < 63)
			op_delete(h);
		else if (x < 73)
			op_move(h);
		else if (x < 76)
			op_resurrect(h);
		else
			op_get(h);
	}
}

/* Readers on both hosts while the writes go on, one thread each (a handle
 * may be used from several threads): their gets fill L1 from Redis or
 * PostgreSQL at any moment, racing with the invalidations that come in.
 * What they read is not checked (nothing is promised yet); what they
 * leave in L1 is, by the checks after settle(). */
static struct readers {
	pthread_t t[HOSTS];
	shm_uuid *ids;
	size_t n;
	bool stop; /* atomics */
	int rc[HOSTS];
	unsigned gets;
} R;

static void *reader(void *arg)
{
	int h = (int)(intptr_t)arg;
	uint64_t x = seed + (uint64_t)h + 1;

	while (!__atomic_load_n(&R.stop, __ATOMIC_ACQUIRE)) {
		shm_msg *m;
		int rc;

		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		rc = shm_msg_get(W.h[h].env, &R.ids[x % R.n], &m);
		if (rc == 0)
			shm_msg_free(m);
		else if (rc != SHM_ENOTFOUND) { /* new on the other host */
			R.rc[h] = rc;
			break;
		}
		__atomic_fetch_add(&R.gets, 1, __ATOMIC_RELAXED);
		tu_sleep_ms(1);
	}
	return NULL;
}

static void readers_start(void)
{
	R.n = W.n;
	R.ids = calloc(R.n + 1, sizeof *R.ids);
	assert_non_null(R.ids);
	for (size_t i = 0; i < W.n; i++)
		R.ids[i] = W.k[i].m->id;
	R.stop = false;
	for (int h = 0; h < HOSTS && R.n; h++) {
		R.rc[h] = 0;
		assert_int_equal(pthread_create(&R.t[h], NULL, reader,
		                                (void *)(intptr_t)h), 0);
	}
}

static void readers_stop(void)
{
	__atomic_store_n(&R.stop, true, __ATOMIC_RELEASE);
	for (int h = 0; h < HOSTS && R.n; h++) {
		assert_int_equal(pthread_join(R.t[h], NULL), 0);
		if (R.rc[h])
			fail_msg("seed %" PRIu64 ": host %d: reader: get: %s",
			         seed, h, shm_strerror(R.rc[h]));
	}
	free(R.ids);
	R.ids = NULL;
}

/* ------------------------------------------------------------ flushers */

static void flusher_start(int h)
{
	const char *extra[] = {"--env-id", W.h[h].id, "--batch-ms", "5",
	                       "--trim-interval-ms", "10",
	                       "--stats-interval-ms", "10",
	                       "--backoff-min-ms", "50", NULL};

	W.h[h].flusher = ft_spawn_flusher(W.h[h].dir, extra);
}

static void flusher_stop(int h)
{
	if (W.h[h].flusher <= 0)
		return;
	kill(W.h[h].flusher, SIGTERM);
	assert_int_equal(ft_wait(W.h[h].flusher), 0);
	W.h[h].flusher = 0;
}

static void dump_logs(void)
{
	for (int h = 0; h < HOSTS; h++) {
		char cmd[4300];
		snprintf(cmd, sizeof cmd, "echo '--- host %d: %s.flusher.log' "
		         ">&2; tail -n 20 '%s.flusher.log' >&2", h, W.h[h].dir,
		         W.h[h].dir);
		if (system(cmd) != 0) {
			/* best effort */
		}
	}
}

static uint64_t meta(int h, const char *name)
{
	return ft_meta(W.h[h].env, name);
}

/* Waits until both flushers applied every record written so far to both
 * sinks, and each host's subscriber handled every message the other
 * published: the condition under which the design promises equal reads. */
static void settle(void)
{
	uint64_t t0 = ft_ms(), end = t0 + 20000, want[HOSTS], done = 0;

	for (int h = 0; h < HOSTS; h++) {
		shm_info in;
		assert_int_equal(shm_env_info(W.h[h].env, &in), 0);
		want[h] = in.next_seq ? in.next_seq - 1 : 0;
	}
	for (;;) {
		bool flushed = true, heard = true;

		for (int h = 0; h < HOSTS; h++) {
			shm_info in;
			assert_int_equal(shm_env_info(W.h[h].env, &in), 0);
			flushed = flushed && in.flushed >= want[h];
			heard = heard && meta(h, "flusher.inval.published") ==
			                         meta(1 - h, "flusher.inval."
			                                     "received") +
			                                 W.lost[1 - h];
		}
		/* a batch is published just after its position is recorded,
		 * and the subscriber thread writes the counts when it wakes
		 * (at most 200 ms apart): the counts are read once that
		 * passed since everything was flushed */
		if (flushed && !done)
			done = ft_ms();
		if (done && ft_ms() >= done + 300 && heard)
			break;
		if (ft_ms() > end) {
			dump_logs();
			fail_msg("seed %" PRIu64 " round %d step %d: not settled "
			         "after 20 s: flushed %d; published A %" PRIu64
			         " received B %" PRIu64 ", published B %" PRIu64
			         " received A %" PRIu64, seed, W.round, W.step,
			         flushed, meta(0, "flusher.inval.published"),
			         meta(1, "flusher.inval.received"),
			         meta(1, "flusher.inval.published"),
			         meta(0, "flusher.inval.received"));
		}
		tu_sleep_ms(10);
	}
	for (int h = 0; h < HOSTS; h++) {
		/* a reset would drop every flushed entry: the checks would
		 * pass, and prove little; only gaps make them */
		if (meta(h, "flusher.inval.publish_errors") ||
		    meta(h, "flusher.inval.errors") ||
		    meta(h, "flusher.inval.resets") != W.resets[h]) {
			dump_logs();
			fail_msg("seed %" PRIu64 ": host %d: publish errors %"
			         PRIu64 ", errors %" PRIu64 ", resets %" PRIu64,
			         seed, h, meta(h, "flusher.inval.publish_errors"),
			         meta(h, "flusher.inval.errors"),
			         meta(h, "flusher.inval.resets"));
		}
	}
	W.settles++;
	if (ft_ms() - t0 > W.settle_ms_max)
		W.settle_ms_max = ft_ms() - t0;
}

/* A gap in host v's subscription: its flusher stopped while both hosts
 * write (the other's invalidations of that time are lost to v), then
 * started again once the other host is flushed and quiet. v then drops
 * every flushed entry of its L1 and raises its room floor to now (README
 * "Several hosts"). Only after step 0, when every time the test gives is
 * past (a message of the gap dated ahead of the floor is a documented
 * limit: libshm/invalidate.c invariant 5). */
static void gap(int v)
{
	int o = 1 - v;
	bool peers = meta(v, "flusher.inval.peers_seen") != 0;
	shm_info in;
	uint64_t want, end;

	flusher_stop(v);
	W.down = v;
	W.down_ops = 0;
	writes(20);
	W.down = -1;
	/* the newest of every room, unknown to v, which then writes around
	 * them: only its floor keeps its L1 from answering those pages */
	for (int r = 0; r < ROOMS; r++)
		for (unsigned i = 0; i < 2; i++)
			put_at(o, r, W.slots + 20 + 2 * i, "gap");
	assert_int_equal(shm_env_info(W.h[o].env, &in), 0);
	want = in.next_seq ? in.next_seq - 1 : 0;
	end = ft_ms() + 20000;
	while (assert_int_equal(shm_env_info(W.h[o].env, &in), 0),
	       in.flushed < want && ft_ms() < end)
		tu_sleep_ms(10);
	assert_true(in.flushed >= want);
	tu_sleep_ms(300); /* its publishes done, counted (settle()) */
	uint64_t pub = meta(o, "flusher.inval.published");
	flusher_start(v);
	if (ft_wait_meta(W.h[v].env, "flusher.inval.subscribed", 1, 10000) !=
	    1) {
		dump_logs();
		fail_msg("host %d: the flusher did not subscribe again", v);
	}
	W.lost[v] = pub - meta(v, "flusher.inval.received");
	for (int r = 0; r < ROOMS; r++)
		for (unsigned i = 0; i < 3; i++)
			put_at(v, r, W.slots + 19 + 2 * i, "around the gap");
	W.resets[v] += peers;
	W.gaps++;
}

/* ------------------------------------------------------------ the oracle */

static shm_msg *row_msg(PGresult *res, int i)
{
	char err[200];
	shm_msg *m;

	if (shm_msg_from_json(PQgetvalue(res, i, 0),
	                      (size_t)PQgetlength(res, i, 0), &m, err,
	                      sizeof err))
		fail_msg("row %d: %s", i, err);
	/* not a column: what a put makes of the content */
	m->content_hash = XXH3_64bits(m->content, m->content_len);
	return m;
}

/* PostgreSQL's row of every message of the round, into the model; fails
 * if one is missing. */
static void rows_into_model(void)
{
	char like[80];
	const char *p[1] = {like};
	PGresult *res;
	size_t rows;

	snprintf(like, sizeof like, "%s-%d-%%", prefix, W.round);
	res = PQexecParams(W.db, "SELECT " SHM_PG_MSG_JSON " FROM messages "
	                   "WHERE room_id LIKE $1", 1, NULL, p, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		fail_msg("rows: %s", PQerrorMessage(W.db));
	rows = (size_t)PQntuples(res);
	for (int i = 0; i < (int)rows; i++) {
		shm_msg *m = row_msg(res, i);
		known *k = find(&m->id);
		if (!k)
			fail_msg("seed %" PRIu64 ": a row no host wrote", seed);
		shm_msg_free(k->m);
		k->m = m;
		k->owner = -2; /* seen */
	}
	PQclear(res);
	for (size_t i = 0; i < W.n; i++) {
		char id[37];
		if (W.k[i].owner == -2) {
			W.k[i].owner = -1;
			continue;
		}
		shm_uuid_format(&W.k[i].m->id, id);
		fail_msg("seed %" PRIu64 " round %d step %d: message %s: no "
		         "row in PostgreSQL once flushed", seed, W.round,
		         W.step, id);
	}
	assert_int_equal(rows, W.n);
}

/* Every message read on host h is PostgreSQL's row. */
static void gets_are_postgres(int h)
{
	for (size_t i = 0; i < W.n; i++) {
		const shm_msg *want = W.k[i].m;
		bool in = held(h, &want->id);
		shm_msg *got;
		char id[37], *a, *b;

		shm_uuid_format(&want->id, id);
		if (shm_msg_get(W.h[h].env, &want->id, &got))
			fail_msg("seed %" PRIu64 " round %d step %d: host %d: "
			         "get %s: %s", seed, W.round, W.step, h, id,
			         shm_errmsg());
		a = json_of(got);
		b = json_of(want);
		if (strcmp(a, b)) {
			dump_logs();
			fail_msg("seed %" PRIu64 " round %d step %d: host %d: "
			         "get %s (%s): got %s\nPostgreSQL has %s", seed,
			         W.round, W.step, h, id,
			         in ? "from its L1" : "read through", a, b);
		}
		free(a);
		free(b);
		shm_msg_free(got);
		W.gets++;
		W.gets_l1 += in;
	}
}

/* PostgreSQL's page (room r, before, limit): rows into out (limit). */
static size_t pg_page(int r, int64_t before, uint32_t limit, shm_msg **out)
{
	char b[64], l[16];
	const char *p[3] = {W.room[r], b, l};
	PGresult *res;
	size_t n;

	if (before)
		tu_pg_ts(before, b);
	else
		snprintf(b, sizeof b, "infinity");
	snprintf(l, sizeof l, "%u", limit);
	res = PQexecParams(W.db, "SELECT " SHM_PG_MSG_JSON " FROM messages "
	                   "WHERE room_id = $1 AND created_at < $2::timestamptz"
	                   " ORDER BY created_at DESC, id DESC LIMIT $3::int",
	                   3, NULL, p, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		fail_msg("page: %s", PQerrorMessage(W.db));
	n = (size_t)PQntuples(res);
	for (size_t i = 0; i < n; i++)
		out[i] = row_msg(res, (int)i);
	PQclear(res);
	return n;
}

/* Walks room r on host h from (before, limit) to its end, each page held
 * against PostgreSQL's. */
static void walk(int h, int r, int64_t before, uint32_t limit)
{
	shm_msg **want = calloc(limit, sizeof *want);

	assert_non_null(want);
	W.walks++;
	for (int pages = 0;; pages++) {
		shm_counters c0, c1;
		shm_msg **page;
		size_t np, nw = pg_page(r, before, limit, want);

		shm_stats_local(W.h[h].env, &c0);
		if (shm_room_page(W.h[h].env, W.room[r], before, limit, &page,
		                  &np))
			fail_msg("seed %" PRIu64 ": host %d: page: %s", seed, h,
			         shm_errmsg());
		shm_stats_local(W.h[h].env, &c1);
		bool from_l1 = c1.room_pages_l3 == c0.room_pages_l3;
		for (size_t i = 0; i < np || i < nw; i++) {
			char *a = i < np ? json_of(page[i]) : NULL;
			char *b = i < nw ? json_of(want[i]) : NULL;
			if (!a || !b || strcmp(a, b)) {
				dump_logs();
				fail_msg("seed %" PRIu64 " round %d step %d: host "
				         "%d: room %d before %" PRId64 " limit %u "
				         "(page %s, %zu messages; PostgreSQL's "
				         "%zu): [%zu] is %s\nPostgreSQL's is %s",
				         seed, W.round, W.step, h, r, before,
				         limit, from_l1 ? "from L1 alone"
				                        : "merged with PostgreSQL",
				         np, nw, i, a ? a : "(none)",
				         b ? b : "(none)");
			}
			free(a);
			free(b);
		}
		W.pages++;
		W.pages_l1 += from_l1;
		if (np)
			before = page[np - 1]->created_at;
		shm_msgs_free(page, np);
		for (size_t i = 0; i < nw; i++)
			shm_msg_free(want[i]);
		if (np < limit)
			break;
		assert_true(pages <= (int)W.n + 1);
	}
	free(want);
}

static uint32_t some_limit(void)
{
	static const uint32_t lim[] = {1, 2, 3, 3, 4, 5, 7, 10};
	unsigned x = below(10);

	if (x < 8)
		return lim[x];
	return x == 8 ? 1 + below(40) : SHM_MAX_PAGE;
}

static int64_t some_before(int r)
{
	unsigned x = below(5);
	known *k;

	if (x < 2 || !W.n)
		return 0;
	k = &W.k[below((uint32_t)W.n)];
	(void)r;
	return x == 2 ? k->m->created_at + 1 : k->m->created_at;
}

static void check(void)
{
	rows_into_model();
	for (int h = 0; h < HOSTS; h++) {
		/* pages first: the gets fill L1, which moves watermarks */
		for (int i = 0; i < 8; i++) {
			int r = (int)below(ROOMS);
			walk(h, r, some_before(r), some_limit());
		}
		for (int r = 0; r < ROOMS; r++)
			walk(h, r, 0, 3);
		gets_are_postgres(h);
		for (int r = 0; r < ROOMS; r++)
			walk(h, r, 0, 1 + below(5));
	}
}

/* ------------------------------------------------------------ the test */

static void cleanup(void)
{
	ft_pg_delete_rooms(prefix);
}

/* Round's rooms ("<prefix>-<round>-<r>") and PostgreSQL connection. */
static void round_begin(int round)
{
	W.round = round;
	W.n = 0;
	memset(W.lost, 0, sizeof W.lost);
	memset(W.resets, 0, sizeof W.resets);
	W.down = -1;
	for (int r = 0; r < ROOMS; r++)
		snprintf(W.room[r], sizeof W.room[r], "%s-%d-%d", prefix, round,
		         r);
	W.db = ft_pg_connect();
	assert_non_null(W.db);
	W.pre = shm_now_us() - 200 * MS;
}

/* Two fresh environments, L1s of entries[h] entries, their flushers
 * subscribed. */
static void hosts_up(const uint64_t entries[HOSTS])
{
	for (int h = 0; h < HOSTS; h++) {
		host *x = &W.h[h];
		x->dir = tu_tmpdir();
		snprintf(x->id, sizeof x->id, "%s-%d-%c", prefix, W.round,
		         'A' + h);
		shm_options_init(&x->o);
		x->o.redis_url = ft_redis_url;
		x->o.pg_conninfo = ft_pg;
		x->o.l2_timeout_ms = 2000;
		x->o.l3_timeout_ms = 5000;
		x->o.l1_max_entries = entries[h];
		x->env = tu_open(x->dir, &x->o);
	}
	for (int h = 0; h < HOSTS; h++)
		flusher_start(h);
	for (int h = 0; h < HOSTS; h++)
		if (ft_wait_meta(W.h[h].env, "flusher.inval.subscribed", 1,
		                 10000) != 1) {
			dump_logs();
			fail_msg("host %d: the flusher did not subscribe", h);
		}
	W.post = shm_now_us() + 10 * MS;
}

static void hosts_down(void)
{
	for (int h = 0; h < HOSTS; h++)
		flusher_stop(h);
	for (int h = 0; h < HOSTS; h++) {
		assert_int_equal(tu_verify(W.h[h].env), 0);
		shm_env_close(W.h[h].env);
		ft_rmdir(W.h[h].dir);
		free(W.h[h].dir);
	}
	PQfinish(W.db);
	for (size_t i = 0; i < W.n; i++)
		shm_msg_free(W.k[i].m);
	W.n = 0;
}

static void round_run(int round, int steps)
{
	uint64_t entries[HOSTS];

	round_begin(round);
	pg_rows(8);
	/* round 0: both keep all (pages from L1 alone) */
	for (int h = 0; h < HOSTS; h++)
		entries[h] = round == 0 ? 100000 : l1_entries[below(4)];
	hosts_up(entries);
	fprintf(stderr, "test_hosts_random: round %d: L1 of %" PRIu64 " and %"
	        PRIu64 " entries\n", round, entries[0], entries[1]);
	for (W.step = 0; W.step < steps; W.step++) {
		W.slots = 40 + 40 * (unsigned)W.step; /* newer times each step */
		if (W.step > 0 && below(3) == 0)
			gap((int)below(HOSTS));
		readers_start();
		writes(32);
		tail((int)below(HOSTS));
		readers_stop();
		settle();
		check();
	}
	hosts_down();
}

/* What the random test found first: B holds a message X (flushed) and
 * its L1 answers room 1's newest page alone; A moves X into room 1 as its
 * newest message. B drops its copy, and must not go on answering room 1's
 * page without X. */
static void test_move_on_a_joins_room_page_on_b(void **state)
{
	FT_NEED_SERVERS();
	const uint64_t entries[HOSTS] = {100000, 100000};
	shm_msg b[3], x, *g, **page;
	shm_counters c0, c1;
	int64_t t;
	size_t n;

	round_begin(90);
	hosts_up(entries);
	t = shm_now_us(); /* after the environments' room floor */
	x = tu_msg(W.room[0], 1, "X, written on B in room 0");
	x.created_at = t;
	assert_int_equal(shm_msg_put(W.h[1].env, &x), 0);
	for (int i = 0; i < 3; i++) {
		b[i] = tu_msg(W.room[1], 2, "written on B in room 1");
		b[i].created_at = t + (i + 1) * MS;
		assert_int_equal(shm_msg_put(W.h[1].env, &b[i]), 0);
	}
	settle();
	/* B answers room 1's newest page alone */
	shm_stats_local(W.h[1].env, &c0);
	assert_int_equal(shm_room_page(W.h[1].env, W.room[1], 0, 3, &page, &n),
	                 0);
	shm_stats_local(W.h[1].env, &c1);
	assert_int_equal(n, 3);
	assert_int_equal(c1.room_pages_l3, c0.room_pages_l3);
	shm_msgs_free(page, n);
	/* A moves X to room 1, newest */
	assert_int_equal(shm_msg_get(W.h[0].env, &x.id, &g), 0);
	shm_msg_free(g);
	x.room_id = W.room[1];
	x.created_at = t + 10 * MS;
	assert_int_equal(shm_msg_put(W.h[0].env, &x), 0);
	settle();
	assert_false(held(1, &x.id)); /* B dropped its copy */
	shm_stats_local(W.h[1].env, &c0);
	assert_int_equal(shm_room_page(W.h[1].env, W.room[1], 0, 3, &page, &n),
	                 0);
	shm_stats_local(W.h[1].env, &c1);
	assert_int_equal(n, 3);
	if (memcmp(page[0]->id.b, x.id.b, 16))
		fail_msg("B's page of room 1 (%s) lacks X, moved there by A",
		         c1.room_pages_l3 == c0.room_pages_l3 ? "from L1 alone"
		                                              : "merged");
	assert_memory_equal(page[1]->id.b, b[2].id.b, 16);
	shm_msgs_free(page, n);
	hosts_down();
}

/* A write transaction that holds host h's writers' lock, in a child
 * process (its own handle), until release_write_lock (or 10 s). */
static int hold_fd[2], release_fd[2];

static int hold_body(shm__wtxn *w, void *ctx)
{
	struct pollfd p = {release_fd[0], POLLIN, 0};

	(void)w;
	(void)ctx;
	if (write(hold_fd[1], "x", 1) != 1)
		return EIO;
	poll(&p, 1, 10000);
	return 0;
}

static pid_t hold_write_lock(int h)
{
	char c;
	pid_t pid;

	assert_int_equal(pipe(hold_fd), 0);
	assert_int_equal(pipe(release_fd), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		shm_env *env;
		if (shm_env_open(W.h[h].dir, NULL, &env))
			_exit(10);
		int rc = shm__write(env, hold_body, NULL);
		shm_env_close(env);
		_exit(rc ? 11 : 0);
	}
	tu_child_add(pid);
	assert_int_equal(read(hold_fd[0], &c, 1), 1);
	return pid;
}

static int release_write_lock(pid_t pid)
{
	assert_int_equal(write(release_fd[1], "x", 1), 1);
	int st = ft_wait(pid);
	close(hold_fd[0]);
	close(hold_fd[1]);
	close(release_fd[0]);
	close(release_fd[1]);
	return st;
}

struct get_arg {
	int h;
	shm_uuid id;
	shm_msg *m;
	int rc;
};

static void *get_thread(void *arg)
{
	struct get_arg *g = arg;

	g->rc = shm_msg_get(W.h[g->h].env, &g->id, &g->m);
	return NULL;
}

/* A read-through on B fetched X from Redis before A's edit reached it,
 * then waited for B's writers' lock to fill L1 (another writer held it).
 * Meanwhile A's edit was published and B's flusher handled it: X not in
 * B's L1 then, nothing to drop. The fill must not then store the old
 * version for good: it serves it (it was current when fetched) but L1
 * must not keep it past the invalidation. */
static void test_fill_waiting_for_the_lock_is_invalidated(void **state)
{
	FT_NEED_SERVERS();
	const uint64_t entries[HOSTS] = {100000, 100000};
	shm_msg x, *g;
	shm_counters c0, c1;
	struct get_arg ga;
	pthread_t t;
	pid_t holder;

	round_begin(92);
	hosts_up(entries);
	/* dated before B's environment: its room floor covers X, so the
	 * invalidation of X asks B for no write (libshm/invalidate.c) */
	x = tu_msg(W.room[0], 1, "v1 from A");
	x.created_at = W.pre;
	assert_int_equal(shm_msg_put(W.h[0].env, &x), 0);
	settle();
	holder = hold_write_lock(1);
	shm_stats_local(W.h[1].env, &c0);
	ga = (struct get_arg){.h = 1, .id = x.id};
	assert_int_equal(pthread_create(&t, NULL, get_thread, &ga), 0);
	/* B fetched v1 from Redis, and waits for the lock to fill it */
	for (uint64_t end = ft_ms() + 5000; ft_ms() < end; tu_sleep_ms(5)) {
		shm_stats_local(W.h[1].env, &c1);
		if (c1.l2_hits > c0.l2_hits)
			break;
	}
	assert_true(c1.l2_hits > c0.l2_hits);
	shm_stats_shared(W.h[1].env, &c0);
	assert_int_equal(shm_msg_edit(W.h[0].env, &x.id, "v2 from A", 9), 0);
	for (uint64_t end = ft_ms() + 5000; ft_ms() < end; tu_sleep_ms(10)) {
		shm_stats_shared(W.h[1].env, &c1);
		if (c1.inval_received > c0.inval_received)
			break;
	}
	assert_true(c1.inval_received > c0.inval_received);
	tu_sleep_ms(50); /* its look at B's L1 done: X not there */
	assert_int_equal(release_write_lock(holder), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(ga.rc, 0);
	assert_string_equal(ga.m->content, "v1 from A"); /* fetched before */
	shm_msg_free(ga.m);
	settle();
	assert_int_equal(shm_msg_get(W.h[1].env, &x.id, &g), 0);
	if (strcmp(g->content, "v2 from A"))
		fail_msg("B reads \"%s\" (%s), after A's \"v2 from A\" was "
		         "published and handled", g->content,
		         held(1, &x.id) ? "from its L1" : "read through");
	shm_msg_free(g);
	hosts_down();
}

/* The number of host h's dead letters. */
static uint64_t dead_count(int h)
{
	shm_info in;

	assert_int_equal(shm_env_info(W.h[h].env, &in), 0);
	return in.dead_letters;
}

/* A's PostgreSQL sink lags its Redis sink (held here by a lock on A's
 * shm_sink_positions row; in production a slow or unreachable PostgreSQL
 * from A). A edits X: Redis has it, A publishes, B drops its copy. B
 * reads A's version through Redis and edits it in turn: B's sinks apply
 * that at once, B publishes, and A keeps its own version, not flushed
 * yet. Then A's PostgreSQL sink comes to A's edit: older than B's
 * (updated_at, B's made from A's), it leaves B's row, counts it
 * superseded (no dead letter), and puts B's row back into A's L1, whose
 * record takes it to Redis. Every level ends with B's edit. Before,
 * PostgreSQL's upsert kept whatever came last: A and PostgreSQL had "v2
 * from A" for good, B and Redis "v3 from B". */
static void test_lagging_pg_sink_keeps_the_newer_edit(void **state)
{
	FT_NEED_SERVERS();
	const uint64_t entries[HOSTS] = {100000, 100000};
	shm_msg x, *g;
	PGconn *lock;
	PGresult *res;
	const char *p[1];
	int64_t t;

	round_begin(91);
	hosts_up(entries);
	t = shm_now_us();
	x = tu_msg(W.room[0], 1, "v1 from A");
	x.created_at = t;
	assert_int_equal(shm_msg_put(W.h[0].env, &x), 0);
	settle();
	assert_int_equal(shm_msg_get(W.h[1].env, &x.id, &g), 0); /* B fills */
	shm_msg_free(g);
	/* A's PostgreSQL sink stalls (its position row locked) */
	lock = ft_pg_connect();
	assert_non_null(lock);
	p[0] = W.h[0].id;
	PQclear(PQexec(lock, "BEGIN"));
	res = PQexecParams(lock, "SELECT applied FROM shm_sink_positions "
	                   "WHERE env_id = $1 FOR UPDATE", 1, NULL, p, NULL,
	                   NULL, 0);
	assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
	PQclear(res);
	assert_int_equal(shm_msg_edit(W.h[0].env, &x.id, "v2 from A", 9), 0);
	/* Redis has v2, B dropped v1 */
	for (uint64_t end = ft_ms() + 5000; held(1, &x.id) && ft_ms() < end;)
		tu_sleep_ms(10);
	assert_false(held(1, &x.id));
	assert_int_equal(shm_msg_get(W.h[1].env, &x.id, &g), 0);
	assert_string_equal(g->content, "v2 from A");
	shm_msg_free(g);
	assert_int_equal(shm_msg_edit(W.h[1].env, &x.id, "v3 from B", 9), 0);
	tu_sleep_ms(300); /* B's sinks apply v3 */
	PQclear(PQexec(lock, "COMMIT"));
	PQfinish(lock);
	settle();
	/* A's PostgreSQL sink refused v2: B's row back in A's L1, its
	 * record then flushed too */
	assert_true(ft_wait_meta(W.h[0].env, "flusher.pg.superseded", 1,
	                         5000) >= 1);
	settle();
	char id[37];
	shm_uuid_format(&x.id, id);
	p[0] = id;
	res = PQexecParams(W.db, "SELECT content FROM messages WHERE id = $1",
	                   1, NULL, p, NULL, NULL, 0);
	assert_int_equal(PQntuples(res), 1);
	assert_string_equal(PQgetvalue(res, 0, 0), "v3 from B");
	PQclear(res);
	ft_assert_redis_msg_has(id, "\"v3 from B\"");
	assert_true(held(0, &x.id)); /* A's L1 answers, not read-through */
	for (int h = 0; h < HOSTS; h++) {
		assert_int_equal(shm_msg_get(W.h[h].env, &x.id, &g), 0);
		if (strcmp(g->content, "v3 from B"))
			fail_msg("host %d reads \"%s\", PostgreSQL and Redis "
			         "have \"v3 from B\"", h, g->content);
		shm_msg_free(g);
		assert_int_equal(dead_count(h), 0);
	}
	assert_int_equal(meta(1, "flusher.pg.superseded"), 0);
	hosts_down();
}

static void test_two_hosts_read_what_postgres_has(void **state)
{
	FT_NEED_SERVERS();
	const char *s = getenv("SHM_TEST_SEED"), *n = getenv("SHM_TEST_ROUNDS");
	const char *st = getenv("SHM_TEST_STEPS");
	int rounds = n && *n ? atoi(n) : 4, steps = st && *st ? atoi(st) : 4;
	uint64_t t0 = ft_ms();

	seed = s && *s ? strtoull(s, NULL, 10) : (uint64_t)shm_now_us();
	fprintf(stderr, "test_hosts_random: seed %" PRIu64 ", %d rounds of %d "
	        "steps (SHM_TEST_SEED=%" PRIu64 " replays it)\n", seed, rounds,
	        steps, seed);
	rng = seed ? seed : 1;
	for (int i = 0; i < rounds; i++)
		round_run(i, steps);
	fprintf(stderr, "test_hosts_random: %u writes of a message the other "
	        "host held, %u moves, %u deleted messages put again, %u writes "
	        "tried again (L1 lost the message meanwhile); %u gets by the "
	        "readers; %u gets checked (%u from L1), %u walks, %u pages (%u from L1 alone); %u gaps; %u "
	        "settles, the longest %" PRIu64 " ms; %" PRIu64 " ms in all\n",
	        W.writes_other, W.moves, W.resurrected, W.retried, R.gets,
	        W.gets,
	        W.gets_l1, W.walks, W.pages, W.pages_l1, W.gaps, W.settles,
	        W.settle_ms_max, ft_ms() - t0);
	assert_true(W.writes_other > 0);
	assert_true(W.pages_l1 > 0);
	cleanup();
}

static int group_setup(void **state)
{
	snprintf(prefix, sizeof prefix, "hr%ld", (long)getpid());
	return ft_group_setup(state);
}

static int group_teardown(void **state)
{
	cleanup();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_move_on_a_joins_room_page_on_b,
		                          ft_teardown),
		cmocka_unit_test_teardown(
			test_fill_waiting_for_the_lock_is_invalidated,
			ft_teardown),
		cmocka_unit_test_teardown(test_two_hosts_read_what_postgres_has,
		                          ft_teardown),
		cmocka_unit_test_teardown(
			test_lagging_pg_sink_keeps_the_newer_edit, ft_teardown),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
