/* tests/test_room_random.c - room pages walked to the end, held against
 * PostgreSQL's own: a randomized differential test of shm_room_page.
 *
 * Each round builds a random history in a few rooms through libshm: puts
 * (single or batched) on a few dozen times, so that created_at ties are
 * common, with v7 ids or random ones (a later message may sort first in
 * a tie), replies in threads, edits, reactions, soft deletes, moves in
 * time or to another room, deleted messages put again after L1 dropped
 * them, handles reopened, and rows another host left in PostgreSQL
 * before the environment existed. shm-flusher --once drains it now and
 * then, and L1 drops the flushed messages: a small l1_max_entries evicts
 * them, or a TTL expires them; quiet rounds keep all and read nothing
 * back, so that only the room floor stands between L1 and the other
 * host's rows. Then L1 is shaken (reopened, read-through gets that fill
 * it) and more is written that stays unflushed, some of it on the time
 * of the newest message that left L1 (a tie at the watermark).
 * Random (room, bound, limit) walks, half of them with shm_room_page's
 * bare timestamp (the next page's before is the created_at of the last
 * message of the previous one: ties left off a page are skipped by the
 * next one, shm.h), half with shm_room_page_before's (created_at, id)
 * bound (the next page's is the last message's: nothing skipped), limit
 * 1 and SHM_MAX_PAGE always among them, are compared page by page,
 * message by message, with the same walk over PostgreSQL's rows with the
 * unflushed messages of L1 in place of theirs (room.c invariant 3); the
 * PostgreSQL rows of messages flushed are held against what L1 stored;
 * and once the flusher has drained the rest, each page seen is
 * PostgreSQL's own answer to the same query, walks again agree with it,
 * and a walk of each room with shm_room_page_before is PostgreSQL's whole
 * room, ORDER BY created_at DESC, id DESC, every row once.
 *
 * The seed is printed; SHM_TEST_SEED=<n> replays its operations (which
 * flushed entries L1 evicts follows access times, so a replay is close
 * but not always identical), SHM_TEST_ROUNDS=<n> sets the rounds
 * (default 8; round k of a seed is the same in any run of more than k).
 * Needs a real redis-server and PostgreSQL (SHM_TEST_REDIS, SHM_TEST_PG,
 * as tests/run.sh provides them); skips without them. Rows use room names
 * "rr<pid>-..." and are removed afterwards. */
#include <inttypes.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "flusher_test.h"
#include "random_test.h"
#include "pg_row.h"

#define ROOMS 3
#define MAX_KNOWN 1024
#define MS INT64_C(1000) /* µs */
/* L1's capacity per round: small ones evict most flushed messages */
static const uint64_t l1_entries[] = {12, 24, 48, 100000};

static char prefix[32]; /* "rr<pid>" */

typedef struct known {
	shm_msg *m;   /* as L1 stored it at its last write (or as the row
	               * another host put in PostgreSQL) */
	bool dirty;   /* written since the last flush */
} known;

/* A walk's bound: created_at < at (keyed false: shm_room_page's), or
 * (created_at, id) < (at, id) (shm_room_page_before's); at 0: none. */
typedef struct bound {
	int64_t at;
	shm_uuid id;
	bool keyed;
} bound;

/* One page a walk saw, to be held against PostgreSQL after the flush. */
typedef struct seen_page {
	int room;
	bound b;
	uint32_t limit;
	size_t n;
	shm_uuid *ids;
} seen_page;

typedef struct world {
	int round;
	char *dir;
	char room[ROOMS][64];
	shm_options o;
	shm_env *env;
	PGconn *db;
	known k[MAX_KNOWN];
	size_t n;
	uint64_t entries;  /* l1_max_entries */
	size_t dirty_max;  /* flushed before more: L1 never fills (EFULL) */
	int64_t pre, post; /* slot 0 before the environment, after it */
	unsigned slots;    /* times after it: post + 0..slots-1 ms */
	bool quiet;        /* L1 keeps all it wrote, reads nothing back */
	bool unflushed;    /* the writes not flushed before the walks */
	seen_page *seen;
	size_t n_seen, cap_seen;
	/* what the walks went through */
	unsigned walks, pages, pages_l3, pages_mixed, tie_cuts, keyed_walks,
		keyed_tie_cuts, deleted_seen, edited_seen, resurrected;
} world;

static world W;

/* ------------------------------------------------------------ helpers */

static shm_env *open_env(void)
{
	return tu_open(W.dir, &W.o);
}

static bool held(const shm_uuid *id)
{
	shm_rtxn *t;
	const shm_msg *v;
	bool in;

	assert_int_equal(shm_rtxn_begin(W.env, &t), 0);
	in = shm_msg_view(t, id, &v) == 0;
	shm_rtxn_end(t);
	return in;
}

/* A copy of m in one allocation (shm_msg_free), through its JSON. */
static shm_msg *msg_copy(const shm_msg *m)
{
	shm_msg *c;
	char *json;
	size_t len;

	assert_int_equal(shm_msg_to_json(m, &json, &len), 0);
	assert_int_equal(shm_msg_from_json(json, len, &c, NULL, 0), 0);
	free(json);
	c->content_hash = m->content_hash; /* the reader leaves it 0 */
	return c;
}

static known *find(const shm_uuid *id)
{
	for (size_t i = 0; i < W.n; i++)
		if (!memcmp(W.k[i].m->id.b, id->b, 16))
			return &W.k[i];
	return NULL;
}

static size_t n_dirty(void)
{
	size_t d = 0;
	for (size_t i = 0; i < W.n; i++)
		d += W.k[i].dirty;
	return d;
}

/* Records what L1 holds of id now, just written: dirty. */
static void remember(const shm_uuid *id)
{
	known *k = find(id);
	shm_msg *m;

	assert_true(held(id));
	assert_int_equal(shm_msg_get(W.env, id, &m), 0);
	if (!k) {
		assert_true(W.n < MAX_KNOWN);
		k = &W.k[W.n++];
	} else {
		shm_msg_free(k->m);
	}
	k->m = m;
	k->dirty = true;
}

static void flush(void)
{
	assert_int_equal(ft_flush_once(W.dir, NULL), 0);
	for (size_t i = 0; i < W.n; i++)
		W.k[i].dirty = false;
}

static void flush_if_needed(void)
{
	if (n_dirty() >= W.dirty_max)
		flush();
}

/* The newest created_at of the messages of room r that left L1 (0 if
 * none): where its watermark is (room.c invariant 2). */
static int64_t left_newest(int r)
{
	int64_t t = 0;
	for (size_t i = 0; i < W.n; i++)
		if (!strcmp(W.k[i].m->room_id, W.room[r]) &&
		    W.k[i].m->created_at > t && !held(&W.k[i].m->id))
			t = W.k[i].m->created_at;
	return t;
}

/* A time for a message of room r among a few dozen: 1 in 5 (quiet
 * rounds: 1 in 3) before the environment existed (L1 vouches for none of
 * them), else after it; 1 in 6 that of a message already known, and in
 * the unflushed part 1 in 4 the newest of those of r that left L1: ties,
 * at the watermark too. */
static int64_t some_time(int r)
{
	if (W.unflushed && below(4) == 0 && left_newest(r))
		return left_newest(r);
	if (W.n && below(6) == 0)
		return W.k[below((uint32_t)W.n)].m->created_at;
	if (below(W.quiet ? 3 : 5) == 0)
		return W.pre + below(20) * MS;
	return W.post + below(W.slots) * MS;
}

/* A known message of room r (-1: any room) not deleted, in a quiet round
 * one L1 holds; NULL if none. */
static known *pick(int r)
{
	if (!W.n)
		return NULL;
	for (int tries = 0; tries < 20; tries++) {
		known *k = &W.k[below((uint32_t)W.n)];
		if (k->m->type == SHM_MSG_DELETE)
			continue;
		if (W.quiet && !held(&k->m->id))
			continue;
		if (r >= 0 && strcmp(k->m->room_id, W.room[r]))
			continue;
		return k;
	}
	return NULL;
}

/* Makes sure L1 holds k's message (a read-through get when it left). */
static void bring_back(known *k)
{
	shm_msg *m;

	if (held(&k->m->id))
		return;
	if (shm_msg_get(W.env, &k->m->id, &m))
		fail_msg("seed %" PRIu64 ": get back: %s", seed, shm_errmsg());
	tu_assert_msg_equal(m, k->m);
	shm_msg_free(m);
	assert_true(held(&k->m->id));
}

/* ------------------------------------------------------------ writes */

/* A new message of room r at a time from some_time() (1 in 10: 0, which
 * the put fills in), as m with its content in buf. */
static shm_msg new_msg(int r, char *buf, size_t len)
{
	shm_msg m;

	snprintf(buf, len, "r%d msg %zu", W.round, W.n);
	m = tu_msg(W.room[r], (int32_t)below(5) + 1, buf);
	m.id = new_id();
	m.created_at = below(10) ? some_time(r) : 0;
	m.content_hash = XXH3_64bits(buf, m.content_len);
	return m;
}

/* One new message, 1 in 4 a reply in its thread to one of its room; or
 * (batch) 1 in 5 times 2..4 of one room in one shm_msg_put_many. */
static void op_put(bool batch)
{
	int r = (int)below(ROOMS);
	char content[4][64];
	shm_msg m[4];
	known *parent = below(4) == 0 ? pick(r) : NULL;
	size_t n = 1;

	if (batch && below(5) == 0) {
		n = 2 + below(3);
		parent = NULL;
	}
	for (size_t i = 0; i < n; i++) {
		m[i] = new_msg(r, content[i], sizeof content[i]);
		if (n > 1)
			snprintf(content[i] + strlen(content[i]),
			         sizeof content[i] - strlen(content[i]),
			         " of %zu", i);
		m[i].content_len = (uint32_t)strlen(content[i]);
		m[i].content_hash = XXH3_64bits(content[i], m[i].content_len);
	}
	if (parent) {
		/* the parent's count moves only if L1 holds it (shm.h) */
		if (below(2))
			bring_back(parent);
		m[0].has_parent = true;
		m[0].parent_id = parent->m->id;
		m[0].has_thread = true;
		m[0].thread_id = parent->m->has_thread ? parent->m->thread_id
		                                       : parent->m->id;
	}
	if (n == 1 ? shm_msg_put(W.env, &m[0])
	           : shm_msg_put_many(W.env, m, n, NULL))
		fail_msg("seed %" PRIu64 ": put: %s", seed, shm_errmsg());
	for (size_t i = 0; i < n; i++)
		remember(&m[i].id);
	if (parent && held(&parent->m->id))
		remember(&parent->m->id);
}

/* Rows another host left in PostgreSQL before this environment existed. */
static void pg_rows(int n)
{
	for (int i = 0; i < n; i++) {
		int r = (int)below(ROOMS);
		char content[64];
		shm_msg m;

		snprintf(content, sizeof content, "r%d other host %d", W.round,
		         i);
		m = tu_msg(W.room[r], 9, content);
		m.id = new_id();
		m.created_at = W.pre + below(20) * MS;
		m.updated_at = m.created_at;
		m.content_hash = XXH3_64bits(content, m.content_len);
		tu_pg_put((PGconn *)W.db, &m);
		/* known as its row reads back, flushed */
		assert_true(W.n < MAX_KNOWN);
		W.k[W.n].m = msg_copy(&m);
		W.k[W.n++].dirty = false;
	}
}

static void op_edit(void)
{
	known *k = pick(-1);
	char content[64];

	if (!k)
		return;
	bring_back(k);
	snprintf(content, sizeof content, "%s, edited",
	         k->m->content_len < 40 ? k->m->content : "long");
	assert_int_equal(shm_msg_edit(W.env, &k->m->id, content,
	                              strlen(content)), 0);
	remember(&k->m->id);
}

static void op_react(void)
{
	static const char *const emoji[] = {"ok", "\xf0\x9f\x8e\x89", "+1"};
	known *k = pick(-1);

	if (!k)
		return;
	bring_back(k);
	assert_int_equal(shm_msg_react(W.env, &k->m->id, (int32_t)below(4),
	                               emoji[below(3)], below(4) != 0), 0);
	remember(&k->m->id);
}

static void op_delete(void)
{
	known *k = pick(-1);

	if (!k)
		return;
	bring_back(k);
	assert_int_equal(shm_msg_delete(W.env, &k->m->id), 0);
	remember(&k->m->id);
}

/* A message put again at another time, half the time in another room,
 * whether L1 still holds it or not (then it is taken for new, and
 * PostgreSQL's row moves with the flush). Replies stay where their parent
 * is (shm.h), so only messages that are none move. */
static void op_move(void)
{
	known *k = pick(-1);
	shm_msg m;

	if (!k || k->m->has_parent)
		return;
	if (below(2))
		bring_back(k);
	int r = (int)below(ROOMS);
	m = *k->m;
	if (below(2))
		m.room_id = W.room[r];
	else
		for (r = 0; strcmp(W.room[r], m.room_id); r++)
			;
	m.created_at = some_time(r);
	if (shm_msg_put(W.env, &m))
		fail_msg("seed %" PRIu64 ": move: %s", seed, shm_errmsg());
	remember(&m.id);
}

/* A soft-deleted message L1 no longer holds, put again undeleted (and
 * maybe moved; not a reply, whose parent may have moved away since): L1
 * cannot tell, PostgreSQL keeps its delete (pg_sink.c invariant 6), and
 * the flusher puts PostgreSQL's row back into L1 (pg_deleted.c). Flushed
 * at once: from then on, L1 and PostgreSQL show the message as it was. */
static void op_resurrect(void)
{
	known *k = NULL;
	shm_msg m, *got;

	for (int tries = 0; tries < 20 && !k; tries++) {
		k = &W.k[below((uint32_t)W.n)];
		if (k->m->type != SHM_MSG_DELETE || k->dirty ||
		    k->m->has_parent || held(&k->m->id))
			k = NULL;
	}
	if (!k)
		return;
	m = *k->m;
	m.type = SHM_MSG_TEXT;
	m.content = "back from the dead";
	m.content_len = (uint32_t)strlen(m.content);
	m.content_hash = XXH3_64bits(m.content, m.content_len);
	if (below(2))
		m.created_at = W.post + below(W.slots) * MS;
	if (shm_msg_put(W.env, &m))
		fail_msg("seed %" PRIu64 ": resurrect: %s", seed, shm_errmsg());
	flush();
	assert_int_equal(shm_msg_get(W.env, &m.id, &got), 0);
	tu_assert_msg_equal(got, k->m);
	shm_msg_free(got);
	k->dirty = true; /* the row put back may wait for the next flush */
	W.resurrected++;
}

static void op_get(void)
{
	shm_msg *m;
	known *k;

	if (!W.n || W.quiet) /* quiet: L1 reads nothing back */
		return;
	k = &W.k[below((uint32_t)W.n)];
	if (shm_msg_get(W.env, &k->m->id, &m))
		fail_msg("seed %" PRIu64 ": get: %s", seed, shm_errmsg());
	tu_assert_msg_equal(m, k->m);
	shm_msg_free(m);
}

/* n random writes and reads; flush_every: 1 in that many ops flushes (0:
 * never, the writes stay unflushed). */
static void history(int n, unsigned flush_every)
{
	for (int i = 0; i < n; i++) {
		unsigned x = below(100);
		if (flush_every && below(flush_every) == 0)
			flush();
		else if (x < 45)
			op_put(flush_every != 0);
		else if (x < 60)
			op_edit();
		else if (x < 72)
			op_react();
		else if (x < 80)
			op_delete();
		else if (x < 86)
			op_move();
		else if (x < 88 && flush_every)
			op_resurrect();
		else if (x < 90 && flush_every) {
			shm_env_close(W.env); /* L1 stays; the handle is new */
			W.env = open_env();
		}
		else
			op_get();
		if (flush_every)
			flush_if_needed();
		else
			assert_true(n_dirty() < W.entries);
	}
}

/* ------------------------------------------------------------ the oracle */

static int newer_first(const void *a, const void *b)
{
	const shm_msg *x = *(shm_msg *const *)a, *y = *(shm_msg *const *)b;
	if (x->created_at != y->created_at)
		return x->created_at > y->created_at ? -1 : 1;
	return -memcmp(x->id.b, y->id.b, 16);
}

/* PostgreSQL's rows of room r, those of the messages L1 has not flushed
 * yet in place of theirs (or added), newest first; *out: copies owned by
 * the caller. Each message flushed has its row, and it is what L1
 * stored. */
static size_t oracle(int r, shm_msg ***out)
{
	const char *p[1] = {W.room[r]};
	PGresult *res = PQexecParams(W.db, "SELECT " SHM_PG_MSG_JSON
	                             " FROM messages WHERE room_id = $1", 1,
	                             NULL, p, NULL, NULL, 0);
	size_t nr, n = 0;
	shm_msg **all;

	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		fail_msg("oracle: %s", PQerrorMessage(W.db));
	nr = (size_t)PQntuples(res);
	all = calloc(nr + W.n + 1, sizeof *all);
	assert_non_null(all);
	for (size_t i = 0; i < nr; i++) {
		char err[200];
		shm_msg *m;
		known *k;

		if (shm_msg_from_json(PQgetvalue(res, (int)i, 0),
		                      (size_t)PQgetlength(res, (int)i, 0), &m,
		                      err, sizeof err))
			fail_msg("oracle: row %zu: %s", i, err);
		/* not a column: what a put makes of the content (rt_value.c) */
		m->content_hash = XXH3_64bits(m->content, m->content_len);
		k = find(&m->id);
		assert_non_null(k); /* every row is one the test made */
		if (k->dirty) {
			shm_msg_free(m);
			continue;
		}
		tu_assert_msg_equal(m, k->m);
		all[n++] = m;
	}
	PQclear(res);
	size_t flushed = n; /* a row each, none lost (same room: above) */
	for (size_t i = 0; i < W.n; i++) {
		if (strcmp(W.k[i].m->room_id, W.room[r]))
			continue;
		if (W.k[i].dirty)
			all[n++] = msg_copy(W.k[i].m);
		else
			assert_true(flushed-- > 0);
	}
	assert_int_equal(flushed, 0);
	qsort(all, n, sizeof *all, newer_first);
	*out = all;
	return n;
}

/* ------------------------------------------------------------ walks */

static void note_page(int r, const bound *b, uint32_t limit, shm_msg **page,
                      size_t n)
{
	seen_page *s;

	if (W.n_seen == W.cap_seen) {
		W.cap_seen = W.cap_seen ? 2 * W.cap_seen : 64;
		W.seen = realloc(W.seen, W.cap_seen * sizeof *W.seen);
		assert_non_null(W.seen);
	}
	s = &W.seen[W.n_seen++];
	*s = (seen_page){.room = r, .b = *b, .limit = limit, .n = n};
	s->ids = calloc(n + 1, sizeof *s->ids);
	assert_non_null(s->ids);
	for (size_t i = 0; i < n; i++)
		s->ids[i] = page[i]->id;
}

static void fail_page(int r, const bound *b, uint32_t limit, size_t i,
                      const shm_msg *got, const shm_msg *want,
                      const char *what)
{
	char a[37] = "-", c[37] = "-", bid[37] = "none";

	if (got)
		shm_uuid_format(&got->id, a);
	if (want)
		shm_uuid_format(&want->id, c);
	if (b->keyed)
		shm_uuid_format(&b->id, bid);
	fail_msg("seed %" PRIu64 " round %d: room %d before %" PRId64
	         " before_id %s limit %u: [%zu] %s: got %s (created_at %"
	         PRId64 "), want %s (created_at %" PRId64 ")",
	         seed, W.round, r, b->at, bid, limit, i, what, a,
	         got ? got->created_at : 0, c, want ? want->created_at : 0);
}

/* Whether m is below b (the oracle's side of room.c's below()). */
static bool is_below(const shm_msg *m, const bound *b)
{
	if (!b->at)
		return true;
	if (m->created_at != b->at)
		return m->created_at < b->at;
	return b->keyed && memcmp(m->id.b, b->id.b, 16) < 0;
}

static int page_at(int r, const bound *b, uint32_t limit, shm_msg ***page,
                   size_t *n)
{
	if (b->keyed)
		return shm_room_page_before(W.env, W.room[r], b->at,
		                            b->at ? &b->id : NULL, limit, page,
		                            n);
	return shm_room_page(W.env, W.room[r], b->at, limit, page, n);
}

/* Walks room r from b with limit to the end as a client does, each page
 * held against the oracle's (orc, no); a keyed walk, whose next bound is
 * its last message's place, goes through the oracle's rows below b,
 * each once. */
static void walk(int r, bound b, uint32_t limit, shm_msg **orc, size_t no)
{
	size_t pages = 0, first = SIZE_MAX, seen = 0;

	W.walks++;
	W.keyed_walks += b.keyed;
	for (;;) {
		shm_counters c0, c1;
		shm_msg **page;
		size_t np, start = 0, want;
		bool dirty = false, clean = false;

		/* the oracle's page: its rows below b, limit of them */
		while (start < no && !is_below(orc[start], &b))
			start++;
		if (first == SIZE_MAX)
			first = start;
		want = no - start < limit ? no - start : limit;
		shm_stats_local(W.env, &c0);
		if (page_at(r, &b, limit, &page, &np))
			fail_msg("seed %" PRIu64 ": page: %s", seed,
			         shm_errmsg());
		shm_stats_local(W.env, &c1);
		for (size_t i = 0; i < np && i < want; i++) {
			known *k = find(&page[i]->id);
			if (memcmp(page[i]->id.b, orc[start + i]->id.b, 16))
				fail_page(r, &b, limit, i, page[i],
				          orc[start + i], "not the oracle's");
			tu_assert_msg_equal(page[i], orc[start + i]);
			if (k && k->dirty)
				dirty = true;
			else
				clean = true;
			W.deleted_seen += page[i]->type == SHM_MSG_DELETE;
			W.edited_seen += page[i]->edited;
		}
		if (np != want)
			fail_page(r, &b, limit, np < want ? np : want,
			          np > want ? page[want] : NULL,
			          np < want ? orc[start + np] : NULL,
			          np < want ? "page short" : "page long");
		W.pages++;
		seen += np;
		if (c1.room_pages_l3 != c0.room_pages_l3) {
			W.pages_l3++;
			W.pages_mixed += dirty && clean;
		}
		/* a page cut inside a tie: the bare timestamp skips the rest
		 * of it (shm.h), the keyed bound goes on with it */
		if (np == limit && start + np < no &&
		    orc[start + np]->created_at == page[np - 1]->created_at) {
			W.tie_cuts += !b.keyed;
			W.keyed_tie_cuts += b.keyed;
		}
		note_page(r, &b, limit, page, np);
		if (np) {
			b.at = page[np - 1]->created_at;
			b.id = page[np - 1]->id;
		}
		shm_msgs_free(page, np);
		if (np < limit)
			break;
		assert_true(++pages <= no + 1);
	}
	/* pages follow one another: the keyed walk saw every row once */
	if (b.keyed && seen != no - first)
		fail_page(r, &b, limit, seen, NULL, NULL, "walk not whole");
}

static uint32_t some_limit(void)
{
	static const uint32_t lim[] = {1, 1, 2, 2, 3, 4, 5, 7, 10, 16};
	unsigned x = below(12);

	if (x < 10)
		return lim[x];
	return x == 10 ? 1 + below(40) : SHM_MAX_PAGE;
}

/* A bound for room r, half the time keyed: none, a created_at of the room
 * (a tie) or next to one, or just above the newest of the room's
 * messages that left L1; keyed on a created_at of the room, the id of a
 * message there (the place right below it). */
static bound some_bound(int r, shm_msg **orc, size_t no)
{
	unsigned x = below(7);
	bound b = {.keyed = below(2)};

	if (x == 6 && left_newest(r)) {
		b.at = left_newest(r) + 1;
		b.id = new_id();
		return b;
	}
	if (x < 2 || x == 6 || !no)
		return b;
	shm_msg *m = orc[below((uint32_t)no)];
	b.at = x == 2 ? m->created_at + 1 : x == 3 ? m->created_at - 1
	                                          : m->created_at;
	b.id = b.at == m->created_at ? m->id : new_id();
	return b;
}

static void walks(int n)
{
	shm_msg **orc[ROOMS];
	size_t no[ROOMS];

	for (int r = 0; r < ROOMS; r++)
		no[r] = oracle(r, &orc[r]);
	for (int i = 0; i < n; i++) {
		int r = (int)below(ROOMS);
		walk(r, some_bound(r, orc[r], no[r]), some_limit(), orc[r],
		     no[r]);
	}
	for (int r = 0; r < ROOMS; r++) { /* the edges, every time */
		walk(r, (bound){.keyed = false}, 1, orc[r], no[r]);
		walk(r, (bound){.keyed = true}, SHM_MAX_PAGE, orc[r], no[r]);
		shm_msgs_free(orc[r], no[r]);
	}
}

/* Each page seen is PostgreSQL's answer to the same query now that the
 * flusher has drained L1's writes. */
static void seen_pages_are_postgres(void)
{
	for (size_t s = 0; s < W.n_seen; s++) {
		seen_page *p = &W.seen[s];
		shm_uuid *want = calloc(p->limit, sizeof *want);
		size_t nw;

		assert_non_null(want);
		nw = tu_pg_page_before((PGconn *)W.db, W.room[p->room],
		                       p->b.at, p->b.keyed && p->b.at ?
		                       &p->b.id : NULL, p->limit, want);
		if (nw != p->n)
			fail_msg("seed %" PRIu64 " round %d: room %d before %"
			         PRId64 "%s limit %u: %zu messages, PostgreSQL "
			         "has %zu", seed, W.round, p->room, p->b.at,
			         p->b.keyed ? " (keyed)" : "", p->limit, p->n,
			         nw);
		for (size_t i = 0; i < nw; i++)
			if (memcmp(p->ids[i].b, want[i].b, 16))
				fail_msg("seed %" PRIu64 " round %d: room %d "
				         "before %" PRId64 "%s limit %u: [%zu] "
				         "differs from PostgreSQL's", seed,
				         W.round, p->room, p->b.at,
				         p->b.keyed ? " (keyed)" : "", p->limit,
				         i);
		free(want);
		free(p->ids);
	}
	W.n_seen = 0;
}

/* With nothing unflushed: each room walked from its newest with
 * shm_room_page_before and a small limit is PostgreSQL's whole room in
 * its own order, ORDER BY created_at DESC, id DESC, every row once. */
static void keyed_walks_are_postgres_rooms(void)
{
	for (int r = 0; r < ROOMS; r++) {
		shm_uuid *want = calloc(MAX_KNOWN + 1, sizeof *want);
		size_t nw, n = 0, np;
		uint32_t limit = 1 + below(7);
		bound b = {.keyed = true};
		shm_msg **page;

		assert_non_null(want);
		nw = tu_pg_page_before((PGconn *)W.db, W.room[r], 0, NULL,
		                       MAX_KNOWN + 1, want);
		assert_true(nw <= MAX_KNOWN);
		do {
			if (page_at(r, &b, limit, &page, &np))
				fail_msg("seed %" PRIu64 ": page: %s", seed,
				         shm_errmsg());
			for (size_t i = 0; i < np; i++, n++)
				if (n >= nw || memcmp(page[i]->id.b,
				                      want[n].b, 16))
					fail_page(r, &b, limit, i, page[i],
					          NULL, n >= nw ? "past "
					          "PostgreSQL's room" : "not "
					          "PostgreSQL's next row");
			if (np) {
				b.at = page[np - 1]->created_at;
				b.id = page[np - 1]->id;
			}
			shm_msgs_free(page, np);
		} while (np == limit);
		if (n != nw)
			fail_msg("seed %" PRIu64 " round %d: room %d: the walk "
			         "saw %zu messages, PostgreSQL has %zu", seed,
			         W.round, r, n, nw);
		free(want);
	}
}

/* ------------------------------------------------------------ the test */

static void cleanup(void)
{
	ft_pg_delete_rooms(prefix);
}

static void round_run(int round)
{
	W.round = round;
	W.n = 0;
	for (int r = 0; r < ROOMS; r++)
		snprintf(W.room[r], sizeof W.room[r], "%s-%d-%d", prefix,
		         round, r);
	W.dir = tu_tmpdir();
	shm_options_init(&W.o);
	W.o.redis_url = ft_redis_url;
	W.o.pg_conninfo = ft_pg;
	W.o.l2_timeout_ms = 2000;
	W.o.l3_timeout_ms = 5000;
	/* quiet rounds (round 2 always): what L1 vouches for rests on its
	 * floor alone (room.c invariant 2) */
	W.quiet = round == 2 || below(5) == 0;
	W.unflushed = false;
	W.entries = W.quiet ? 100000 : l1_entries[below(4)];
	W.dirty_max = W.entries * 2 / 3 < 32 ? W.entries * 2 / 3 : 32;
	W.slots = 60;
	W.o.l1_max_entries = W.entries;
	/* some rounds let the flushed entries expire (round 1 always) */
	bool expire = !W.quiet && (round == 1 || below(4) == 0);
	if (expire)
		W.o.l1_ttl_s = 1;
	W.db = ft_pg_connect();
	assert_non_null(W.db);

	W.pre = shm_now_us() - 200 * MS;
	pg_rows(W.quiet ? 24 : 12);
	W.env = open_env();
	W.post = shm_now_us() + 10 * MS;

	/* a history, flushed now and then, flushed entries evicted */
	history(160, 12);
	flush();
	if (expire) {
		uint64_t n = 0;
		tu_sleep_ms(1100);
		assert_int_equal(shm_l1_expire(W.env, &n), 0);
		assert_true(n > 0); /* all flushed, all older than the TTL */
		history((int)W.dirty_max / 2, 0);
		flush(); /* its expiry finds nothing more to drop yet */
	}
	/* shaken: reopened, some read back (fills), more written, unflushed */
	shm_env_close(W.env);
	W.env = open_env();
	for (int i = 0; i < 8; i++)
		op_get();
	/* the unflushed writes, half the rounds on newer times too */
	if (below(2))
		W.slots = 80;
	W.unflushed = true;
	history((int)W.dirty_max / 2, 0);
	walks(60);
	/* the rest flushed: every page seen is PostgreSQL's own */
	flush();
	seen_pages_are_postgres();
	/* and the same walks again, now with nothing unflushed */
	walks(10);
	seen_pages_are_postgres();
	keyed_walks_are_postgres_rooms();

	assert_int_equal(tu_verify(W.env), 0);
	shm_env_close(W.env);
	PQfinish(W.db);
	for (size_t i = 0; i < W.n; i++)
		shm_msg_free(W.k[i].m);
	ft_rmdir(W.dir);
	free(W.dir);
}

static void test_room_pages_walked_match_postgres(void **state)
{
	FT_NEED_SERVERS();
	const char *s = getenv("SHM_TEST_SEED"), *n = getenv("SHM_TEST_ROUNDS");
	int rounds = n && *n ? atoi(n) : 8;

	seed = s && *s ? strtoull(s, NULL, 10) : (uint64_t)shm_now_us();
	fprintf(stderr, "test_room_random: seed %" PRIu64 ", %d rounds "
	        "(SHM_TEST_SEED=%" PRIu64 " replays it)\n", seed, rounds, seed);
	rng = seed ? seed : 1;
	for (int i = 0; i < rounds; i++)
		round_run(i);
	fprintf(stderr, "test_room_random: %u walks (%u keyed), %u pages (%u "
	        "from PostgreSQL, %u of them mixing unflushed L1 messages "
	        "with its rows), %u cut inside a created_at tie (%u keyed), "
	        "%u deleted and %u edited messages shown; %u deleted messages "
	        "put again\n", W.walks, W.keyed_walks, W.pages, W.pages_l3,
	        W.pages_mixed, W.tie_cuts + W.keyed_tie_cuts, W.keyed_tie_cuts,
	        W.deleted_seen, W.edited_seen, W.resurrected);
	/* both sides of room.c were exercised, ties cut both ways */
	assert_true(W.pages_l3 > 0);
	assert_true(W.pages_l3 < W.pages);
	assert_true(W.tie_cuts > 0);
	assert_true(W.keyed_tie_cuts > 0);
	free(W.seen);
	cleanup();
}

static int group_setup(void **state)
{
	snprintf(prefix, sizeof prefix, "rr%ld", (long)getpid());
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
		cmocka_unit_test_teardown(test_room_pages_walked_match_postgres,
		                          ft_teardown),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
