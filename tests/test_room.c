/* tests/test_room.c - room pages (libshm/room.c) against PostgreSQL: what
 * L1 may answer alone (the room floor of a new environment, of one made by
 * an older version, after a gap in the invalidation channel with a peer
 * whose clock runs ahead), PostgreSQL's rows giving way to L1's
 * versions of the same messages, and the second query such a page needs
 * failing (a fault this binary's PQsendQueryParams injects into a real
 * server: its backend stopped or terminated), and walks through
 * created_at ties with shm_room_page_before's (created_at, id) bound, in
 * L1 and across L1 and PostgreSQL. Every page is checked against
 * PostgreSQL's own once the flusher has caught up.
 *
 * Needs a real redis-server and PostgreSQL (SHM_TEST_REDIS, SHM_TEST_PG, as
 * tests/run.sh provides them); every test but the one of bad input skips
 * without them. Rows use
 * room names "rm<pid>-..." and are removed afterwards. */
#include <dlfcn.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "flusher_test.h"
#include "internal.h"

#define S INT64_C(1000000) /* µs */

static char prefix[32]; /* "rm<pid>" */

/* ------------------------------------------------------------ helpers */

static void room_name(char *out, size_t len, const char *what)
{
	snprintf(out, len, "%s-%s", prefix, what);
}

static PGconn *pg(void)
{
	PGconn *c = ft_pg_connect();
	if (!c)
		fail_msg("pg connect");
	return c;
}

/* One page of env: its ids, its last message's created_at, and whether it
 * asked PostgreSQL. */
typedef struct page {
	shm_uuid id[64];
	size_t n;
	int64_t last_at;
	bool l3;
} page;

static page page_before(shm_env *env, const char *room, int64_t before,
                        const shm_uuid *before_id, uint32_t limit)
{
	shm_counters c0, c1;
	shm_msg **msgs;
	page p = {.n = 0};

	shm_stats_local(env, &c0);
	if (shm_room_page_before(env, room, before, before_id, limit, &msgs,
	                         &p.n))
		fail_msg("room %s: page: %s", room, shm_errmsg());
	shm_stats_local(env, &c1);
	p.l3 = c1.room_pages_l3 != c0.room_pages_l3;
	assert_true(p.n <= 64);
	for (size_t i = 0; i < p.n; i++)
		p.id[i] = msgs[i]->id;
	if (p.n)
		p.last_at = msgs[p.n - 1]->created_at;
	shm_msgs_free(msgs, p.n);
	return p;
}

static page page_of(shm_env *env, const char *room, int64_t before,
                    uint32_t limit)
{
	return page_before(env, room, before, NULL, limit);
}

/* Page p equals PostgreSQL's page for the same query, id for id. */
static void assert_page_before_is_pg(const page *p, PGconn *c,
                                     const char *room, int64_t before,
                                     const shm_uuid *before_id,
                                     uint32_t limit)
{
	shm_uuid want[64];
	size_t nw = tu_pg_page_before(c, room, before, before_id, limit, want);
	char a[37], b[37];

	if (p->n != nw)
		fail_msg("room %s before %" PRId64 " limit %u: %zu messages, "
		         "PostgreSQL has %zu", room, before, limit, p->n, nw);
	for (size_t i = 0; i < nw; i++) {
		shm_uuid_format(&p->id[i], a);
		shm_uuid_format(&want[i], b);
		if (strcmp(a, b))
			fail_msg("room %s before %" PRId64 " limit %u: [%zu] is "
			         "%s, PostgreSQL says %s", room, before, limit,
			         i, a, b);
	}
}

static void assert_page_is_pg(const page *p, PGconn *c, const char *room,
                              int64_t before, uint32_t limit)
{
	assert_page_before_is_pg(p, c, room, before, NULL, limit);
}

static shm_env *open_pg(const char *dir)
{
	shm_options o;
	shm_options_init(&o);
	o.pg_conninfo = ft_pg;
	o.l3_timeout_ms = 5000;
	return tu_open(dir, &o);
}

static shm_msg msg_at(const char *room, int64_t created, const char *content)
{
	shm_msg m = tu_msg(room, 1, content);
	shm_uuid_v7(&m.id);
	m.created_at = created;
	return m;
}

/* Runs the flusher once over dir; L1's unflushed messages reach
 * PostgreSQL. */
static void flush(const char *dir)
{
	const char *extra[] = {"--no-invalidation", NULL};
	assert_int_equal(ft_flush_once(dir, extra), 0);
}

static void cleanup(void)
{
	ft_pg_delete_rooms(prefix);
}

/* ------------------------------------------------------------ tests */

/* A new environment's own messages, dated before the newest rows other
 * hosts left in PostgreSQL, are not the room's newest: its pages ask
 * PostgreSQL, before and after its flush. */
static void test_new_environment_pages_include_older_hosts_rows(void **state)
{
	FT_NEED_SERVERS();
	char room[64], *dir = tu_tmpdir();
	PGconn *db = pg();
	const int64_t now = shm_now_us();
	shm_msg m;

	room_name(room, sizeof room, "new");
	for (int i = 0; i < 20; i++) { /* other hosts, up to 1 s ago */
		m = msg_at(room, now - (20 - i) * S, "other host");
		tu_pg_put(db, &m);
	}
	shm_env *env = open_pg(dir);
	for (int i = 0; i < 5; i++) { /* dated before PostgreSQL's newest */
		m = msg_at(room, now - 30 * S + i * 1000, "this host");
		assert_int_equal(shm_msg_put(env, &m), 0);
	}
	const int64_t bef[] = {0, now - 5 * S, now - 30 * S + 3000, 0};
	const uint32_t lim[] = {5, 5, 5, 30};
	page before_flush[4];
	for (int k = 0; k < 4; k++) {
		before_flush[k] = page_of(env, room, bef[k], lim[k]);
		assert_true(before_flush[k].l3);
	}
	flush(dir);
	for (int k = 0; k < 4; k++) {
		page p = page_of(env, room, bef[k], lim[k]);
		assert_true(p.l3);
		assert_page_is_pg(&before_flush[k], db, room, bef[k], lim[k]);
		assert_page_is_pg(&p, db, room, bef[k], lim[k]);
	}
	assert_int_equal(tu_verify(env), 0);
	shm_env_close(env);
	PQfinish(db);
	ft_rmdir(dir);
	free(dir);
	cleanup();
}

/* What L1 can vouch for stays L1's alone: a full page of messages written
 * through it, dated after its creation and newer than anything that left
 * it. A page reaching below them asks PostgreSQL. */
static void test_pages_newer_than_the_floor_stay_l1s(void **state)
{
	FT_NEED_SERVERS();
	char room[64], *dir = tu_tmpdir();
	PGconn *db = pg();
	shm_msg m;

	room_name(room, sizeof room, "own");
	m = msg_at(room, shm_now_us() - 10 * S, "other host");
	tu_pg_put(db, &m);
	shm_env *env = open_pg(dir);
	const int64_t t = shm_now_us() + 1000;
	for (int i = 0; i < 5; i++) {
		m = msg_at(room, t + i * 1000, "this host");
		assert_int_equal(shm_msg_put(env, &m), 0);
	}
	for (int pass = 0; pass < 2; pass++) {
		page p = page_of(env, room, 0, 5);
		assert_false(p.l3);
		assert_int_equal(p.n, 5);
		p = page_of(env, room, t + 4000, 3);
		assert_false(p.l3);
		assert_int_equal(p.n, 3);
		p = page_of(env, room, 0, 6); /* reaches the other host's row */
		assert_true(p.l3);
		assert_int_equal(p.n, 6);
		if (pass == 1)
			assert_page_is_pg(&p, db, room, 0, 6);
		else
			flush(dir);
	}
	shm_env_close(env);
	PQfinish(db);
	ft_rmdir(dir);
	free(dir);
	cleanup();
}

/* Deletes meta room_floor, as in an environment an older version made. */
static void forget_floor(shm_env *env)
{
	MDB_txn *txn;
	MDB_val k = {strlen(SHM__ROOM_FLOOR), SHM__ROOM_FLOOR};
	assert_int_equal(mdb_txn_begin(env->mdb, NULL, 0, &txn), 0);
	assert_int_equal(mdb_del(txn, env->meta, &k, NULL), 0);
	assert_int_equal(mdb_txn_commit(txn), 0);
}

/* An environment without a floor vouches for nothing while only read;
 * its first read-write open sets the floor to that moment. */
static void test_environment_without_a_floor_gets_one_at_open(void **state)
{
	FT_NEED_SERVERS();
	char room[64], *dir = tu_tmpdir();
	shm_options o;
	uint64_t floor = 0;
	shm_msg m[4];

	room_name(room, sizeof room, "old");
	shm_env *env = open_pg(dir);
	assert_int_equal(shm_meta_get(env, SHM__ROOM_FLOOR, &floor), 0);
	assert_true(floor > 0); /* the creation's */
	for (int i = 0; i < 2; i++) {
		m[i] = msg_at(room, (int64_t)floor + 1 + i, "before the floor");
		assert_int_equal(shm_msg_put(env, &m[i]), 0);
	}
	assert_false(page_of(env, room, 0, 2).l3);
	forget_floor(env);
	shm_env_close(env);

	shm_options_init(&o);
	o.pg_conninfo = ft_pg;
	o.l3_timeout_ms = 5000;
	o.read_only = true;
	env = tu_open(dir, &o);
	page p = page_of(env, room, 0, 2);
	assert_true(p.l3);
	assert_int_equal(p.n, 2); /* L1's: PostgreSQL has none of them */
	assert_int_equal(shm_meta_get(env, SHM__ROOM_FLOOR, &floor), 0);
	assert_int_equal(floor, 0);
	shm_env_close(env);

	const int64_t t_open = shm_now_us();
	env = open_pg(dir);
	assert_int_equal(shm_meta_get(env, SHM__ROOM_FLOOR, &floor), 0);
	assert_true((int64_t)floor >= t_open);
	assert_true(page_of(env, room, 0, 2).l3);
	for (int i = 2; i < 4; i++) {
		m[i] = msg_at(room, shm_now_us() + 1000, "after the floor");
		assert_int_equal(shm_msg_put(env, &m[i]), 0);
	}
	p = page_of(env, room, 0, 2);
	assert_false(p.l3);
	assert_memory_equal(p.id[0].b, m[3].id.b, 16);
	assert_true(page_of(env, room, 0, 3).l3);
	shm_env_close(env);
	ft_rmdir(dir);
	free(dir);
}

/* A message L1 filled from PostgreSQL, then moved in time (or to another
 * room) by a put not yet flushed: PostgreSQL's old copy is on no page, and
 * pages the move emptied a place in are still full. */
static void test_moved_message_leaves_no_old_copy(void **state)
{
	FT_NEED_SERVERS();
	char room[64], room2[64], *dir = tu_tmpdir();
	PGconn *db = pg();
	const int64_t t = shm_now_us() - 100 * S;
	shm_msg row[6], *got;

	room_name(room, sizeof room, "mv");
	room_name(room2, sizeof room2, "mv2");
	for (int i = 0; i < 6; i++) { /* t+1 s .. t+6 s, another host's */
		row[i] = msg_at(room, t + (i + 1) * S, "other host");
		tu_pg_put(db, &row[i]);
	}
	shm_env *env = open_pg(dir);
	/* row[4] moves forward past row[5], row[2] to another room */
	for (int i = 2; i <= 4; i += 2) {
		assert_int_equal(shm_msg_get(env, &row[i].id, &got), 0);
		assert_int_equal(got->created_at, row[i].created_at);
		shm_msg moved = *got;
		moved.content = "moved";
		moved.content_len = 5;
		if (i == 4)
			moved.created_at = t + 7 * S;
		else
			moved.room_id = room2;
		assert_int_equal(shm_msg_put(env, &moved), 0);
		shm_msg_free(got);
	}
	const int64_t bef[] = {t + 6 * S, t + 6 * S, 0, 0, t + 5 * S + 1};
	const uint32_t lim[] = {2, 10, 2, 10, 3};
	page before_flush[5];
	for (int k = 0; k < 5; k++)
		before_flush[k] = page_of(env, room, bef[k], lim[k]);
	/* before t+6 s, 2: row[3] and row[1], not row[4]'s old copy nor
	 * row[2] */
	assert_int_equal(before_flush[0].n, 2);
	assert_memory_equal(before_flush[0].id[0].b, row[3].id.b, 16);
	assert_memory_equal(before_flush[0].id[1].b, row[1].id.b, 16);
	assert_int_equal(before_flush[1].n, 3);
	assert_memory_equal(before_flush[2].id[0].b, row[4].id.b, 16);
	assert_int_equal(page_of(env, room2, 0, 10).n, 1);

	flush(dir);
	for (int k = 0; k < 5; k++) {
		assert_page_is_pg(&before_flush[k], db, room, bef[k], lim[k]);
		page p = page_of(env, room, bef[k], lim[k]);
		assert_page_is_pg(&p, db, room, bef[k], lim[k]);
	}
	assert_int_equal(tu_verify(env), 0);
	shm_env_close(env);
	PQfinish(db);
	ft_rmdir(dir);
	free(dir);
	cleanup();
}

/* After a gap in the invalidation channel, a peer whose clock runs 60 s
 * ahead (its earlier messages said so) has left a message dated 60 s
 * ahead of this host's clock: pages of this host's messages written after
 * the reset do not claim to be complete without it. */
static void test_reset_floor_covers_a_peer_clock_ahead(void **state)
{
	FT_NEED_SERVERS();
	char room[64], room2[64], *dir = tu_tmpdir();
	PGconn *db = pg();
	uint64_t floor = 0, dropped;
	shm_uuid foreign;
	shm_msg m[3];

	room_name(room, sizeof room, "skew");
	room_name(room2, sizeof room2, "skew2");
	shm_env *env = open_pg(dir);
	/* before the gap: the peer's message, dated 60 s ahead */
	shm_uuid_v7(&foreign);
	shm_inval_key k = {.kind = SHM_INVAL_MSG, .key = foreign.b, .klen = 16,
	                   .room = room, .created_at = shm_now_us() + 60 * S};
	assert_int_equal(shm_l1_invalidate_many(env, &k, 1, &dropped, NULL), 0);
	/* during it: another one, in a room L1 heard nothing of */
	shm_msg gap = msg_at(room2, shm_now_us() + 60 * S, "peer, in the gap");
	tu_pg_put(db, &gap);
	const int64_t t_reset = shm_now_us();
	assert_int_equal(shm_l1_invalidate_flushed(env, &dropped), 0);
	assert_int_equal(shm_meta_get(env, SHM__ROOM_FLOOR, &floor), 0);
	assert_true((int64_t)floor >= t_reset + 60 * S);
	for (int i = 0; i < 3; i++) {
		m[i] = msg_at(room2, shm_now_us() + 1000 * (i + 1), "this host");
		assert_int_equal(shm_msg_put(env, &m[i]), 0);
	}
	page p = page_of(env, room2, 0, 3);
	assert_true(p.l3);
	assert_int_equal(p.n, 3);
	assert_memory_equal(p.id[0].b, gap.id.b, 16);
	assert_memory_equal(p.id[1].b, m[2].id.b, 16);
	flush(dir);
	assert_page_is_pg(&p, db, room2, 0, 3);

	/* the lead only grows */
	uint64_t lead = 0;
	assert_int_equal(shm_meta_get(env, "room_lead", &lead), 0);
	assert_int_equal(lead, 60 * S);
	k.created_at = shm_now_us() + 10 * S;
	shm_uuid_v7(&foreign);
	k.room = NULL;
	assert_int_equal(shm_l1_invalidate_many(env, &k, 1, NULL, NULL), 0);
	assert_int_equal(shm_meta_get(env, "room_lead", &lead), 0);
	assert_int_equal(lead, 60 * S);
	shm_env_close(env);
	PQfinish(db);
	ft_rmdir(dir);
	free(dir);
	cleanup();
}

/* ------------------------------------- paging through created_at ties */

/* An id whose first byte is b, the rest from i, with v4's version bits:
 * ids on both sides of 0x80, where a signed byte order would differ. */
static shm_uuid id_of(uint8_t b, unsigned i)
{
	shm_uuid u;

	for (int k = 0; k < 16; k++)
		u.b[k] = (uint8_t)(i * 131 + k * 29 + 11);
	u.b[0] = b;
	u.b[6] = (uint8_t)(0x40 | (u.b[6] & 0x0f));
	u.b[8] = (uint8_t)(0x80 | (u.b[8] & 0x3f));
	return u;
}

static int newer_first(const void *a, const void *b)
{
	const shm_msg *x = a, *y = b;
	if (x->created_at != y->created_at)
		return x->created_at > y->created_at ? -1 : 1;
	return -memcmp(x->id.b, y->id.b, 16);
}

/* Walks room from its newest message with shm_room_page_before, limit
 * (<= 64) at a time, each page's bound the created_at and id of the last
 * message of the page before, into ids (max of them); with db, each page
 * is held against PostgreSQL's for the same bound. *l3 gets the pages
 * PostgreSQL answered, *pages all of them. Returns the messages seen. */
static size_t walk_before(shm_env *env, PGconn *db, const char *room,
                          uint32_t limit, shm_uuid *ids, size_t max,
                          unsigned *l3, unsigned *pages)
{
	int64_t before = 0;
	shm_uuid last;
	size_t n = 0;
	page p;

	*l3 = *pages = 0;
	do {
		p = page_before(env, room, before, before ? &last : NULL, limit);
		if (db)
			assert_page_before_is_pg(&p, db, room, before,
			                         before ? &last : NULL, limit);
		*l3 += p.l3;
		++*pages;
		if (n + p.n > max)
			fail_msg("room %s, limit %u: more than %zu messages "
			         "walked: some seen twice", room, limit, max);
		memcpy(ids + n, p.id, p.n * sizeof *ids);
		n += p.n;
		if (p.n) {
			before = p.last_at;
			last = p.id[p.n - 1];
		}
	} while (p.n == limit);
	return n;
}

/* got (ng ids) is want (nw), in order: every message once. */
static void assert_ids(const shm_uuid *got, size_t ng, const shm_uuid *want,
                       size_t nw, const char *what, uint32_t limit)
{
	char a[37], b[37];

	if (ng != nw)
		fail_msg("%s, limit %u: %zu messages, want %zu", what, limit, ng,
		         nw);
	for (size_t i = 0; i < nw; i++)
		if (memcmp(got[i].b, want[i].b, 16)) {
			shm_uuid_format(&got[i], a);
			shm_uuid_format(&want[i], b);
			fail_msg("%s, limit %u: [%zu] is %s, want %s", what,
			         limit, i, a, b);
		}
}

/* PostgreSQL's whole room, ORDER BY created_at DESC, id DESC, into ids. */
static size_t pg_room(PGconn *db, const char *room, shm_uuid *ids,
                      uint32_t max)
{
	size_t n = tu_pg_page_before(db, room, 0, NULL, max, ids);
	assert_true(n < max);
	return n;
}

/* Many messages of one room on one created_at (a caller's time, as an
 * import gives), written through L1: walked with shm_room_page_before
 * and small limits, each comes once, in (created_at, id) DESC order, and
 * the full pages are L1's alone; after the flush, each page is
 * PostgreSQL's, and so is the walk. The bare timestamp skips the rest of
 * the tie (shm_room_page, as documented). */
static void test_tie_walked_with_before_id_skips_none(void **state)
{
	FT_NEED_SERVERS();
	enum { N = 40 };
	static const uint32_t lims[] = {1, 3, 7, 64};
	char room[64], *dir = tu_tmpdir();
	PGconn *db = pg();
	const int64_t t = shm_now_us() + 2 * S; /* after the room floor */
	shm_msg m[N];
	shm_uuid want[N], got[N + 1];
	unsigned l3, pages;

	room_name(room, sizeof room, "tie");
	shm_env *env = open_pg(dir);
	for (int i = 0; i < N; i++) {
		m[i] = msg_at(room, t, "tied");
		m[i].id = id_of((uint8_t)(i * 97), (unsigned)i);
		assert_int_equal(shm_msg_put(env, &m[i]), 0);
	}
	qsort(m, N, sizeof *m, newer_first);
	for (int i = 0; i < N; i++)
		want[i] = m[i].id;
	for (size_t k = 0; k < sizeof lims / sizeof *lims; k++) {
		size_t n = walk_before(env, NULL, room, lims[k], got, N + 1,
		                       &l3, &pages);
		assert_ids(got, n, want, N, "tie in L1", lims[k]);
		/* full pages newer than the floor: L1's; the short last one
		 * asks PostgreSQL (invariant 2) */
		assert_int_equal(l3, 1);
	}
	/* a bare timestamp: the next page skips the rest of the tie */
	page p = page_of(env, room, 0, 3);
	assert_int_equal(p.n, 3);
	assert_int_equal(page_of(env, room, p.last_at, 3).n, 0);

	flush(dir);
	assert_ids(want, N, got, pg_room(db, room, got, N + 1),
	           "PostgreSQL's order is memcmp's", 0);
	for (size_t k = 0; k < sizeof lims / sizeof *lims; k++) {
		size_t n = walk_before(env, db, room, lims[k], got, N + 1, &l3,
		                       &pages);
		assert_ids(got, n, want, N, "tie, flushed", lims[k]);
	}
	assert_int_equal(tu_verify(env), 0);
	shm_env_close(env);
	PQfinish(db);
	ft_rmdir(dir);
	free(dir);
	cleanup();
}

/* Ties whose messages are spread over L1 and PostgreSQL: on t0, before
 * the environment existed, rows only PostgreSQL has, messages flushed
 * and expired from L1, and unflushed ones only L1 has; on t2, after it,
 * expired and unflushed ones (the watermark is t2: a tie at it), and one
 * moved there from an older time (PostgreSQL's row gives way to L1's
 * version, which is above a bound inside the tie: invariant 3); on t3,
 * unflushed ones only. Walks with every limit see each message once, in
 * order, pages from L1 alone and from PostgreSQL merged with L1 alike;
 * after the flush every page is PostgreSQL's. */
static void test_ties_across_l1_and_postgres_walked_once(void **state)
{
	FT_NEED_SERVERS();
	enum { MAX = 64 };
	static const uint32_t lims[] = {1, 2, 5, 64};
	char room[64], *dir = tu_tmpdir();
	PGconn *db = pg();
	const int64_t t0 = shm_now_us() - 100 * S;
	const int64_t t2 = shm_now_us() + 2 * S, t3 = t2 + S;
	shm_msg all[MAX];
	shm_uuid want[MAX], got[MAX + 1];
	size_t n = 0;
	unsigned l3, pages;
	uint64_t expired = 0;
	shm_options o;

	room_name(room, sizeof room, "mixed");
	for (int i = 0; i < 6; i++) { /* another host's rows */
		all[n] = msg_at(room, t0, "other host");
		all[n].id = id_of((uint8_t)(n * 53), (unsigned)n);
		tu_pg_put(db, &all[n++]);
	}
	shm_options_init(&o);
	o.pg_conninfo = ft_pg;
	o.l3_timeout_ms = 5000;
	o.l1_ttl_s = 1;
	shm_env *env = tu_open(dir, &o);
	for (int i = 0; i < 12; i++) { /* flushed, then expired */
		all[n] = msg_at(room, i < 6 ? t0 : t2, "expired");
		all[n].id = id_of((uint8_t)(n * 53), (unsigned)n);
		assert_int_equal(shm_msg_put(env, &all[n++]), 0);
	}
	flush(dir);
	tu_sleep_ms(1100);
	assert_int_equal(shm_l1_expire(env, &expired), 0);
	assert_int_equal(expired, 12);
	/* flushed at t1 (between the ties), held, then moved to t2: its row
	 * in PostgreSQL is older than the bounds inside the t2 tie, and its
	 * L1 version is above them */
	all[n] = msg_at(room, t2 - S / 2, "moved");
	all[n].id = id_of(0xf0, (unsigned)n);
	assert_int_equal(shm_msg_put(env, &all[n]), 0);
	flush(dir);
	all[n].created_at = t2;
	assert_int_equal(shm_msg_put(env, &all[n++]), 0);
	for (int i = 0; i < 25; i++) { /* only in L1 */
		all[n] = msg_at(room, i < 5 ? t0 : i < 11 ? t2 : t3, "unflushed");
		all[n].id = id_of((uint8_t)(n * 53), (unsigned)n);
		assert_int_equal(shm_msg_put(env, &all[n++]), 0);
	}
	all[n] = msg_at(room, t2 + 1, "between"); /* neighbours of the ties */
	assert_int_equal(shm_msg_put(env, &all[n++]), 0);
	all[n] = msg_at(room, t0 - 1, "oldest");
	assert_int_equal(shm_msg_put(env, &all[n++]), 0);
	qsort(all, n, sizeof *all, newer_first);
	for (size_t i = 0; i < n; i++)
		want[i] = all[i].id;

	for (size_t k = 0; k < sizeof lims / sizeof *lims; k++) {
		size_t ng = walk_before(env, NULL, room, lims[k], got, MAX + 1,
		                        &l3, &pages);
		assert_ids(got, ng, want, n, "ties in L1 and PostgreSQL",
		           lims[k]);
		assert_true(l3 > 0);
		if (lims[k] < 64) /* t3's full pages: L1's alone */
			assert_true(l3 < pages);
	}
	flush(dir);
	assert_ids(want, n, got, pg_room(db, room, got, MAX + 1),
	           "PostgreSQL's order is memcmp's", 0);
	for (size_t k = 0; k < sizeof lims / sizeof *lims; k++) {
		size_t ng = walk_before(env, db, room, lims[k], got, MAX + 1,
		                        &l3, &pages);
		assert_ids(got, ng, want, n, "flushed", lims[k]);
	}
	assert_int_equal(tu_verify(env), 0);
	shm_env_close(env);
	PQfinish(db);
	ft_rmdir(dir);
	free(dir);
	cleanup();
}

/* Each bad argument: its code, a text naming it, *out NULL and *n 0, no
 * page counted. */
static void expect_bad_bound(shm_env *env, int code, const char *text,
                             const char *room, int64_t before,
                             const shm_uuid *before_id, uint32_t limit,
                             bool null_out)
{
	shm_msg *junk, **msgs = &junk; /* must be set to NULL */
	size_t n = 99;
	shm_counters c0, c1;

	shm_stats_local(env, &c0);
	assert_int_equal(shm_room_page_before(env, room, before, before_id,
	                                      limit, null_out ? NULL : &msgs,
	                                      &n), code);
	if (!strstr(shm_errmsg(), text))
		fail_msg("'%s' does not say '%s'", shm_errmsg(), text);
	if (!null_out)
		assert_null(msgs);
	assert_int_equal(n, 0);
	shm_stats_local(env, &c1);
	assert_int_equal(c1.room_pages, c0.room_pages);
}

/* Bad bounds are refused, naming what was wrong; a good one next to them
 * pages through the tie. No server needed. */
static void test_room_page_before_refuses_bad_input(void **state)
{
	char *dir = tu_tmpdir(), long_room[SHM_MAX_ROOM + 2], text[128];
	shm_env *env = tu_open(dir, NULL);
	shm_uuid nil = {{0}};
	shm_msg m[3], **msgs;
	size_t n;
	char s[37];

	for (int i = 0; i < 3; i++) {
		m[i] = msg_at("bad", 42 * S, "tied");
		m[i].id = id_of((uint8_t)(0x40 * (i + 1)), (unsigned)i);
		assert_int_equal(shm_msg_put(env, &m[i]), 0);
	}
	shm_uuid_format(&m[1].id, s);
	snprintf(text, sizeof text, "before_id %s given with before 0 (no "
	         "bound)", s);
	expect_bad_bound(env, SHM_EINVAL, text, "bad", 0, &m[1].id, 10, false);
	expect_bad_bound(env, SHM_EINVAL, "before_id 00000000-0000-0000-0000-"
	                 "000000000000: the nil UUID, which no message holds",
	                 "bad", 42 * S, &nil, 10, false);
	memset(long_room, 'r', SHM_MAX_ROOM + 1);
	long_room[SHM_MAX_ROOM + 1] = 0;
	expect_bad_bound(env, SHM_ETOOBIG, "room_id: 256 bytes, at most 255",
	                 long_room, 42 * S, &m[1].id, 10, false);
	expect_bad_bound(env, SHM_EINVAL, "limit 0: must be 1..10000", "bad",
	                 42 * S, &m[1].id, 0, false);
	expect_bad_bound(env, SHM_EINVAL, "limit 10001: must be 1..10000",
	                 "bad", 42 * S, &m[1].id, SHM_MAX_PAGE + 1, false);
	expect_bad_bound(env, SHM_ETIME, "before: negative timestamp", "bad",
	                 -1, &m[1].id, 10, false);
	expect_bad_bound(env, SHM_EINVAL, "shm_room_page_before: NULL room",
	                 NULL, 42 * S, &m[1].id, 10, false);
	expect_bad_bound(env, SHM_EINVAL, "shm_room_page_before: NULL out",
	                 "bad", 42 * S, &m[1].id, 10, true);
	assert_int_equal(shm_room_page_before(NULL, "bad", 42 * S, &m[1].id,
	                                      10, &msgs, &n), SHM_EINVAL);
	assert_non_null(strstr(shm_errmsg(), "shm_room_page_before: NULL env"));

	/* the good bound: below m[1] in the tie, m[0] alone (0x40 < 0x80) */
	assert_int_equal(shm_room_page_before(env, "bad", 42 * S, &m[1].id,
	                                      10, &msgs, &n), 0);
	assert_int_equal(n, 1);
	assert_memory_equal(msgs[0]->id.b, m[0].id.b, 16);
	shm_msgs_free(msgs, n);
	/* below the newest of the tie: the two others, newest first */
	assert_int_equal(shm_room_page_before(env, "bad", 42 * S, &m[2].id,
	                                      10, &msgs, &n), 0);
	assert_int_equal(n, 2);
	assert_memory_equal(msgs[0]->id.b, m[1].id.b, 16);
	shm_msgs_free(msgs, n);
	/* a bound after the tie's time takes all of it */
	assert_int_equal(shm_room_page_before(env, "bad", 42 * S + 1, &m[0].id,
	                                      10, &msgs, &n), 0);
	assert_int_equal(n, 3);
	shm_msgs_free(msgs, n);
	shm_env_close(env);
	ft_rmdir(dir);
	free(dir);
}

/* ------------------------------ PostgreSQL failing between two queries */

/* What happens to the server of the n-th room page query from now on, just
 * before libshm sends it (n 0: nothing): its backend stopped (SIGSTOP, as
 * a hung server), or terminated (as a restart would), and with again the
 * next query's too (libshm's second try, on a new connection). */
static struct {
	int n;
	bool terminate, again;
	pid_t backend; /* the one stopped or terminated */
} fault;

/* This binary's PQsendQueryParams comes before libpq's for libshm's code:
 * it does what fault says, then sends. */
int PQsendQueryParams(PGconn *c, const char *command, int n,
                      const Oid *types, const char *const *values,
                      const int *lengths, const int *formats, int format)
{
	static int (*real)(PGconn *, const char *, int, const Oid *,
	                   const char *const *, const int *, const int *, int);

	if (!real)
		*(void **)&real = dlsym(RTLD_NEXT, "PQsendQueryParams");
	if (fault.n > 0 && strstr(command, "WHERE room_id = $1") &&
	    --fault.n == 0) {
		fault.backend = PQbackendPID(c);
		if (!fault.terminate) {
			kill(fault.backend, SIGSTOP);
		} else {
			char sql[80];
			PGconn *other = pg();
			snprintf(sql, sizeof sql, "SELECT pg_terminate_backend(%d, "
			         "5000)", (int)fault.backend);
			PGresult *r = PQexec(other, sql);
			if (PQresultStatus(r) != PGRES_TUPLES_OK ||
			    strcmp(PQgetvalue(r, 0, 0), "t"))
				fail_msg("terminate backend %d: %s",
				         (int)fault.backend, PQerrorMessage(other));
			PQclear(r);
			PQfinish(other);
		}
		if (fault.again) {
			fault.again = false;
			fault.n = 1;
		}
	}
	return real(c, command, n, types, values, lengths, formats, format);
}

/* A page whose first PostgreSQL query succeeds, but whose rows gave way to
 * L1's versions so that a second, longer one is needed (room.c l3_page),
 * and that second query meets a stopped server (the L3 timeout) or a
 * terminated connection, and so does its second try on a new connection
 * (a connection ended once is replaced: rt_pool.c invariant 3):
 * SHM_EL3 and nothing (invariant 4), never the rows of the first query;
 * the reason names the room, the server (host and port; before, a
 * terminated connection's text named none) and PostgreSQL's failure; L1
 * and its log are as before. Once PostgreSQL answers again
 * (after the 1 s it is skipped), the same page is PostgreSQL's. */
static void test_page_whose_second_query_fails_is_an_error(void **state)
{
	FT_NEED_SERVERS();
	char room[64], want[4400], *dir = tu_tmpdir();
	PGconn *db = pg();
	const int64_t t = shm_now_us() - 100 * S;
	shm_msg row[6], *got, **msgs = NULL;
	shm_counters c0, c1;
	shm_options o;
	shm_info in0, in1;
	size_t n;

	room_name(room, sizeof room, "second");
	for (int i = 0; i < 6; i++) { /* t+1 s .. t+6 s, another host's */
		row[i] = msg_at(room, t + (i + 1) * S, "other host");
		tu_pg_put(db, &row[i]);
	}
	shm_options_init(&o);
	o.pg_conninfo = ft_pg;
	o.l3_timeout_ms = 300;
	shm_env *env = tu_open(dir, &o);
	/* row[4] moves past row[5]: PostgreSQL's first 2 rows before t+6 s
	 * are row[4], which gives way, and row[3]: one short, asked again */
	assert_int_equal(shm_msg_get(env, &row[4].id, &got), 0);
	shm_msg moved = *got;
	moved.created_at = t + 7 * S;
	assert_int_equal(shm_msg_put(env, &moved), 0);
	shm_msg_free(got);
	page ok = page_of(env, room, t + 6 * S, 2);
	assert_true(ok.l3);
	assert_int_equal(ok.n, 2);

	for (int pass = 0; pass < 2; pass++) {
		tu_sleep_ms(1100); /* past the skip of the pass before */
		assert_int_equal(shm_env_info(env, &in0), 0);
		shm_stats_local(env, &c0);
		fault.n = 2;
		fault.terminate = fault.again = pass == 1;
		n = 99;
		int rc = shm_room_page(env, room, t + 6 * S, 2, &msgs, &n);
		if (!fault.terminate)
			kill(fault.backend, SIGCONT);
		fprintf(stderr, "second query, backend %s: rc %d: %s\n",
		        pass ? "terminated" : "stopped", rc, shm_errmsg());
		assert_int_equal(fault.n, 0); /* the second query did meet it */
		assert_int_equal(rc, SHM_EL3);
		assert_null(msgs);
		assert_int_equal(n, 0);
		snprintf(want, sizeof want, "room '%s': page not complete in L1, "
		         "and PostgreSQL query on %s port %s: ", room, PQhost(db),
		         PQport(db));
		assert_int_equal(strncmp(shm_errmsg(), want, strlen(want)), 0);
		assert_non_null(strstr(shm_errmsg(),
		                       pass ? "terminating connection due to "
		                              "administrator command"
		                            : "no answer within the l3_timeout_ms "
		                              "of 300 ms"));
		shm_stats_local(env, &c1);
		assert_int_equal(c1.room_pages_l3, c0.room_pages_l3);
		assert_int_equal(c1.l3_errors - c0.l3_errors, 1);
		assert_int_equal(shm_env_info(env, &in1), 0);
		assert_int_equal(in1.next_seq, in0.next_seq);
		assert_int_equal(in1.messages, in0.messages);
		assert_int_equal(in1.l1_bytes, in0.l1_bytes);
		assert_int_equal(tu_verify(env), 0);
	}
	fault.n = 0;
	tu_sleep_ms(1100);
	page p = page_of(env, room, t + 6 * S, 2);
	assert_true(p.l3);
	assert_int_equal(p.n, ok.n);
	assert_memory_equal(p.id, ok.id, ok.n * sizeof *ok.id);
	flush(dir);
	assert_page_is_pg(&p, db, room, t + 6 * S, 2);
	shm_env_close(env);
	PQfinish(db);
	ft_rmdir(dir);
	free(dir);
	cleanup();
}

static int group_setup(void **state)
{
	snprintf(prefix, sizeof prefix, "rm%ld", (long)getpid());
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
		cmocka_unit_test_teardown(
			test_new_environment_pages_include_older_hosts_rows,
			ft_teardown),
		cmocka_unit_test_teardown(test_pages_newer_than_the_floor_stay_l1s,
		                          ft_teardown),
		cmocka_unit_test_teardown(
			test_environment_without_a_floor_gets_one_at_open,
			ft_teardown),
		cmocka_unit_test_teardown(test_moved_message_leaves_no_old_copy,
		                          ft_teardown),
		cmocka_unit_test_teardown(
			test_reset_floor_covers_a_peer_clock_ahead, ft_teardown),
		cmocka_unit_test_teardown(
			test_page_whose_second_query_fails_is_an_error,
			ft_teardown),
		cmocka_unit_test_teardown(
			test_tie_walked_with_before_id_skips_none, ft_teardown),
		cmocka_unit_test_teardown(
			test_ties_across_l1_and_postgres_walked_once,
			ft_teardown),
		cmocka_unit_test_teardown(
			test_room_page_before_refuses_bad_input, ft_teardown),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
