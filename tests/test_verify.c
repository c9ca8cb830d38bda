/* tests/test_verify.c - shm_verify (libshm/verify.c): clean after every kind
 * of write, trim and eviction; each broken invariant is found and named,
 * and reported once the snapshot is released.
 * The damage is done with raw LMDB writes through internal.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "codec.h"
#include "internal.h"
#include "testutil.h"

static const char *WEB = "8c5e1ab0-6d0a-4c5c-9b61-2f6a0e1d5a11";

typedef struct fixture {
	char *dir;
	shm_env *env;
	shm_uuid id; /* a message put by setup */
	char found[8][512];
	size_t n_found;
} fixture;

static void collect(const char *problem, void *user)
{
	fixture *f = user;
	if (f->n_found < 8)
		snprintf(f->found[f->n_found++], sizeof f->found[0], "%s",
		         problem);
}

/* Runs verify; returns the problem count, keeps the first texts. */
static size_t run_verify(fixture *f)
{
	size_t n = 99;
	f->n_found = 0;
	assert_int_equal(shm_verify(f->env, collect, f, &n), 0);
	for (size_t i = 0; i < f->n_found; i++)
		fprintf(stderr, "  verify: %s\n", f->found[i]);
	return n;
}

static bool found(const fixture *f, const char *needle)
{
	for (size_t i = 0; i < f->n_found; i++)
		if (strstr(f->found[i], needle))
			return true;
	return false;
}

static int setup(void **state)
{
	fixture *f = calloc(1, sizeof *f);
	shm_msg m = tu_msg("room1", 1, "hello");

	f->dir = tu_tmpdir();
	f->env = tu_open(f->dir, NULL);
	assert_int_equal(shm_msg_put(f->env, &m), 0);
	f->id = m.id;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;
	shm_env_close(f->env);
	tu_rmdir(f->dir);
	free(f->dir);
	free(f);
	return 0;
}

/* Raw write transaction for the damage. */
static MDB_txn *wbegin(fixture *f)
{
	MDB_txn *txn;
	assert_int_equal(mdb_txn_begin(f->env->mdb, NULL, 0, &txn), 0);
	return txn;
}

static void wcommit(MDB_txn *txn)
{
	assert_int_equal(mdb_txn_commit(txn), 0);
}

/* The room index key of message f->id (room1, created_at). */
static size_t room_key(fixture *f, uint8_t *key)
{
	shm_msg *m;
	assert_int_equal(shm_msg_get(f->env, &f->id, &m), 0);
	size_t rl = strlen(m->room_id);
	memcpy(key, m->room_id, rl);
	key[rl] = 0;
	for (int i = 0; i < 8; i++)
		key[rl + 1 + i] = (uint8_t)((uint64_t)m->created_at >> (56 - 8 * i));
	memcpy(key + rl + 9, f->id.b, 16);
	shm_msg_free(m);
	return rl + 9 + 16;
}

/* Finds the lru key of (kind, key); copies it into out. */
static size_t lru_key_of(MDB_txn *txn, fixture *f, char kind,
                         const void *key, size_t klen, uint8_t *out)
{
	MDB_cursor *cur;
	MDB_val k, v;
	size_t n = 0;
	int op = MDB_FIRST;

	assert_int_equal(mdb_cursor_open(txn, f->env->lru, &cur), 0);
	while (mdb_cursor_get(cur, &k, &v, op) == 0) {
		op = MDB_NEXT;
		const uint8_t *p = k.mv_data;
		if (k.mv_size == 9 + klen && p[8] == (uint8_t)kind &&
		    memcmp(p + 9, key, klen) == 0) {
			memcpy(out, p, k.mv_size);
			n = k.mv_size;
			break;
		}
	}
	mdb_cursor_close(cur);
	assert_int_not_equal(n, 0);
	return n;
}

static void test_verify_is_clean_after_every_kind_of_write(void **state)
{
	fixture *f = *state;
	shm_options o;
	shm_uuid w;
	shm_static *s;
	const char *deps[] = {"Block/1"};

	/* A small L1 so that eviction happens once the log is trimmed. */
	shm_env_close(f->env);
	shm_options_init(&o);
	o.l1_max_entries = 40;
	f->env = tu_open(f->dir, &o);
	assert_int_equal(shm_uuid_parse(WEB, &w), 0);
	for (int i = 0; i < 200; i++) {
		char c[32], obj[32];
		snprintf(c, sizeof c, "message %d", i);
		shm_msg m = tu_msg(i % 2 ? "a" : "b", i, c);
		if (i % 7 == 6) { /* a reply, in its parent's room */
			m.room_id = "room1";
			m.has_parent = true;
			m.parent_id = f->id;
		}
		assert_int_equal(shm_msg_put(f->env, &m), 0);
		if (i % 5 == 0)
			assert_int_equal(shm_msg_edit(f->env, &m.id, "edited", 6), 0);
		if (i % 9 == 0)
			assert_int_equal(shm_msg_react(f->env, &m.id, 3, "👍", true), 0);
		if (i % 11 == 0)
			assert_int_equal(shm_msg_delete(f->env, &m.id), 0);
		if (i % 3 == 0) {
			snprintf(obj, sizeof obj, "Page/%d", i);
			assert_int_equal(shm_static_put(f->env, &w, obj, c,
			                                strlen(c), &s), 0);
			shm_static_free(s);
			assert_int_equal(shm_deps_set(f->env, &w, obj, true, deps,
			                              1), 0);
		}
		if (i % 20 == 19) {
			shm_info in;
			assert_int_equal(shm_env_info(f->env, &in), 0);
			/* a flusher that is 5 records behind */
			assert_int_equal(shm_log_trim(f->env, in.next_seq - 6), 0);
		}
		if (i % 50 == 49)
			assert_int_equal(shm_object_save(f->env, &w, "Block/1"), 0);
	}
	assert_int_equal(run_verify(f), 0);
	shm_counters c;
	assert_int_equal(shm_stats_shared(f->env, &c), 0);
	assert_true(c.evictions > 0);
}

static void test_verify_finds_a_message_missing_from_the_room_index(void **state)
{
	fixture *f = *state;
	uint8_t key[300];
	MDB_val k = {room_key(f, key), key};
	MDB_txn *txn = wbegin(f);

	assert_int_equal(mdb_del(txn, f->env->room, &k, NULL), 0);
	wcommit(txn);
	assert_int_equal(run_verify(f), 1);
	assert_true(found(f, "no room index key (room 'room1')"));
}

/* Whether every problem kept is printable: UTF-8 without a control byte
 * (verify's texts quote stored bytes through shm__shown). */
static bool all_printable(const fixture *f)
{
	for (size_t i = 0; i < f->n_found; i++) {
		size_t n = strlen(f->found[i]);
		if (shm__utf8_bad(f->found[i], n) != n)
			return false;
		for (size_t j = 0; j < n; j++)
			if ((unsigned char)f->found[i][j] < 0x20 ||
			    f->found[i][j] == 0x7f)
				return false;
	}
	return true;
}

/* The room of a message without its room index key is quoted printably:
 * a damaged one (a byte of "général" set to 0x80, as the fuzzing of
 * tests/test_fuzz.c found it) was printed raw, and a long valid one was
 * cut at byte 64, inside a character. */
static void test_verify_quotes_the_room_of_a_message_printably(void **state)
{
	fixture *f = *state;
	static char long_room[82] = "a";
	shm_msg m = tu_msg("g\xc3\xa9n\xc3\xa9ral", 1, "hi"),
	        m2 = tu_msg(long_room, 1, "hi");
	MDB_val k = {16, m.id.b}, v;
	MDB_txn *txn;
	uint8_t *val, key[300];
	size_t rl;

	for (int i = 0; i < 40; i++)
		memcpy(long_room + 1 + 2 * i, "\xc3\xa9", 2);
	assert_int_equal(shm_msg_put(f->env, &m), 0);
	assert_int_equal(shm_msg_put(f->env, &m2), 0);
	txn = wbegin(f);
	assert_int_equal(mdb_get(txn, f->env->msg, &k, &v), 0);
	assert_non_null(val = malloc(v.mv_size));
	memcpy(val, v.mv_data, v.mv_size);
	val[SHM_MSG_FIXED + 4 + 6] = 0x80; /* the 'r' */
	v.mv_data = val;
	assert_int_equal(mdb_put(txn, f->env->msg, &k, &v, 0), 0);
	rl = strlen(long_room);
	memcpy(key, long_room, rl + 1);
	for (int i = 0; i < 8; i++)
		key[rl + 1 + i] = (uint8_t)((uint64_t)m2.created_at >> (56 - 8 * i));
	memcpy(key + rl + 9, m2.id.b, 16);
	k = (MDB_val){rl + 9 + 16, key};
	assert_int_equal(mdb_del(txn, f->env->room, &k, NULL), 0);
	wcommit(txn);
	free(val);
	assert_true(run_verify(f) >= 2);
	assert_true(found(f, "no room index key (room 'g\xc3\xa9n\xc3\xa9\\x80al')"));
	assert_true(found(f, "no room index key (room 'a\xc3\xa9\xc3\xa9"));
	assert_true(all_printable(f));
}

static void test_verify_finds_a_room_key_without_its_message(void **state)
{
	fixture *f = *state;
	uint8_t key[300];
	size_t n = room_key(f, key);
	MDB_txn *txn = wbegin(f);
	MDB_val k = {n, key}, v = {0, ""};

	key[n - 1] ^= 1; /* another id */
	assert_int_equal(mdb_put(txn, f->env->room, &k, &v, 0), 0);
	wcommit(txn);
	assert_int_equal(run_verify(f), 1);
	assert_true(found(f, "room index 'room1': message"));
	assert_true(found(f, "absent"));
}

static void test_verify_finds_lru_and_meta_count_mismatches(void **state)
{
	fixture *f = *state;
	uint8_t key[600];
	MDB_txn *txn = wbegin(f);
	MDB_val k = {lru_key_of(txn, f, SHM_KIND_MSG, f->id.b, 16, key), key};

	assert_int_equal(mdb_del(txn, f->env->lru, &k, NULL), 0);
	wcommit(txn);
	assert_true(run_verify(f) >= 3);
	assert_true(found(f, "no lru key"));
	assert_true(found(f, "meta: entries 1 but 0 lru keys"));
	assert_true(found(f, "meta: bytes"));
}

/* Puts key -> val into dbi, wants verify to report want, then puts back
 * what was there (or deletes the key): verify is clean again. */
static void damage(fixture *f, MDB_dbi dbi, const void *key, size_t klen,
                   const void *val, size_t vlen, const char *want)
{
	static uint8_t old[4096];
	MDB_val k = {klen, (void *)key}, v = {vlen, (void *)val}, o;
	MDB_txn *txn = wbegin(f);
	size_t olen = 0;
	bool had = mdb_get(txn, dbi, &k, &o) == 0;

	if (had) {
		assert_true(o.mv_size <= sizeof old);
		memcpy(old, o.mv_data, olen = o.mv_size);
	}
	assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
	wcommit(txn);
	assert_true(run_verify(f) >= 1);
	if (!found(f, want))
		fail_msg("verify does not say '%s'", want);
	txn = wbegin(f);
	v = (MDB_val){olen, old};
	assert_int_equal(had ? mdb_put(txn, dbi, &k, &v, 0)
	                     : mdb_del(txn, dbi, &k, NULL), 0);
	wcommit(txn);
	assert_int_equal(run_verify(f), 0);
}

/* Entries of "msg", "lru" and "stat" that no libshm writes, each named by
 * verify: a message key that is not a UUID, a message value under
 * another id or not decoding, lru keys too short, of an unknown kind, of
 * a message that does not exist, a second lru key of a message, an lru
 * value too short, a static value too short. */
static void test_verify_names_each_damaged_entry(void **state)
{
	fixture *f = *state;
	shm_env *e = f->env;
	uint8_t lru[600], lk[9 + 16], sk[64], tiny[2] = {1, 2};
	shm_uuid other, w;
	MDB_val v;

	shm_uuid_v7(&other);
	MDB_txn *txn = wbegin(f);
	size_t ll = lru_key_of(txn, f, SHM_KIND_MSG, f->id.b, 16, lru);
	MDB_val mk = {16, f->id.b};
	assert_int_equal(mdb_get(txn, e->msg, &mk, &v), 0);
	static uint8_t value[4096];
	assert_true(v.mv_size <= sizeof value);
	memcpy(value, v.mv_data, v.mv_size);
	size_t vlen = v.mv_size;
	mdb_txn_abort(txn);

	damage(f, e->msg, "short", 5, value, vlen,
	       "message (5-byte key): key is not a UUID");
	damage(f, e->msg, other.b, 16, value, vlen, "value holds another id");
	damage(f, e->msg, other.b, 16, "bad", 3, "value does not decode");
	damage(f, e->lru, "abc", 3, tiny, 2, "lru: key of 3 bytes");
	memcpy(lk, lru, 8);
	lk[8] = 'z';
	memcpy(lk + 9, other.b, 16);
	damage(f, e->lru, lk, sizeof lk, "\0\0\0\0", 4,
	       "lru: unknown kind 0x7a");
	lk[8] = SHM_KIND_MSG;
	damage(f, e->lru, lk, sizeof lk, "\0\0\0\0", 4, "no such message");
	memcpy(lk + 9, f->id.b, 16);
	lk[7] ^= 1; /* another seq */
	damage(f, e->lru, lk, sizeof lk, "\0\0\0\0", 4, "several keys");
	damage(f, e->lru, lru, ll, tiny, 2, "value of 2 bytes");
	assert_int_equal(shm_uuid_parse(WEB, &w), 0);
	memcpy(sk, w.b, 16);
	memcpy(sk + 16, "Page/1", 6);
	damage(f, e->stat, sk, 22, "abc", 3, "value of 3 bytes");
}

static void test_verify_finds_a_record_with_a_bad_checksum(void **state)
{
	fixture *f = *state;
	MDB_txn *txn = wbegin(f);
	uint64_t seq = 1;
	MDB_val k = {8, &seq}, v;
	uint8_t buf[4096];

	assert_int_equal(mdb_get(txn, f->env->log, &k, &v), 0);
	assert_true(v.mv_size <= sizeof buf);
	memcpy(buf, v.mv_data, v.mv_size);
	buf[v.mv_size - 1] ^= 0x20; /* a payload byte */
	v.mv_data = buf;
	assert_int_equal(mdb_put(txn, f->env->log, &k, &v, 0), 0);
	wcommit(txn);
	/* one line, naming the record once: not "log seq 1: log record 1:",
	 * nor the message's "no such log record" for one that exists */
	assert_int_equal(run_verify(f), 1);
	assert_string_equal(f->found[0], "log record 1: checksum mismatch "
	                                 "(corrupted or truncated data)");
}

/* A record cut short of its header, its seq still there (bytes 8..15):
 * the line names the record, as for one whose seq is gone. */
static void test_verify_names_a_record_cut_short_of_its_header(void **state)
{
	fixture *f = *state;
	MDB_txn *txn = wbegin(f);
	uint64_t seq = 1;
	MDB_val k = {8, &seq}, v;
	uint8_t buf[20];

	assert_int_equal(mdb_get(txn, f->env->log, &k, &v), 0);
	memcpy(buf, v.mv_data, sizeof buf);
	v.mv_data = buf;
	v.mv_size = sizeof buf;
	assert_int_equal(mdb_put(txn, f->env->log, &k, &v, 0), 0);
	wcommit(txn);
	assert_int_equal(run_verify(f), 1);
	assert_string_equal(f->found[0], "log record 1: 20 bytes, shorter "
	                                 "than its header (corrupted or "
	                                 "truncated data)");
}

/* A record whose header names another seq than its key, checksum right:
 * one line, the message's record is there (under key 1). */
static void test_verify_names_a_record_under_another_seq_once(void **state)
{
	fixture *f = *state;
	MDB_txn *txn = wbegin(f);
	uint64_t seq = 1, seven = 7, sum;
	MDB_val k = {8, &seq}, v;
	uint8_t buf[4096];

	assert_int_equal(mdb_get(txn, f->env->log, &k, &v), 0);
	assert_true(v.mv_size <= sizeof buf);
	memcpy(buf, v.mv_data, v.mv_size);
	memcpy(buf + 8, &seven, 8);
	memset(buf + 32, 0, 8);
	sum = XXH3_64bits(buf, v.mv_size);
	memcpy(buf + 32, &sum, 8);
	v.mv_data = buf;
	assert_int_equal(mdb_put(txn, f->env->log, &k, &v, 0), 0);
	wcommit(txn);
	assert_int_equal(run_verify(f), 1);
	assert_string_equal(f->found[0], "log seq 1: record says seq 7");
}

/* Replaces the first old (same length as new) in every value of dbi that
 * holds it, with a raw write: damage a checksum-less value would hide. */
static void replace_in_values(fixture *f, MDB_dbi dbi, const char *old,
                              const char *new)
{
	MDB_txn *txn = wbegin(f);
	MDB_cursor *cur;
	MDB_val k, v;
	size_t ol = strlen(old), n = 0;
	int op = MDB_FIRST;

	assert_int_equal(strlen(new), ol);
	assert_int_equal(mdb_cursor_open(txn, dbi, &cur), 0);
	while (mdb_cursor_get(cur, &k, &v, op) == 0) {
		uint8_t buf[4096];

		op = MDB_NEXT;
		assert_true(v.mv_size <= sizeof buf);
		memcpy(buf, v.mv_data, v.mv_size);
		for (size_t i = 0; i + ol <= v.mv_size; i++)
			if (memcmp(buf + i, old, ol) == 0) {
				memcpy(buf + i, new, ol);
				v.mv_data = buf;
				assert_int_equal(mdb_cursor_put(cur, &k, &v,
				                                MDB_CURRENT), 0);
				n++;
				break;
			}
	}
	mdb_cursor_close(cur);
	wcommit(txn);
	assert_int_not_equal(n, 0);
}

/* A message value has no checksum of its own, but its content_hash is
 * its content's: once the log record is trimmed, it alone says the
 * content changed. */
static void test_verify_finds_a_message_whose_content_changed(void **state)
{
	fixture *f = *state;
	char id[37], want[128];

	assert_int_equal(shm_log_trim(f->env, 1), 0);
	assert_int_equal(run_verify(f), 0);
	replace_in_values(f, f->env->msg, "hello", "jello");
	assert_int_equal(run_verify(f), 1);
	shm_uuid_format(&f->id, id);
	snprintf(want, sizeof want, "message %s: content_hash ", id);
	assert_true(found(f, want));
	assert_true(found(f, "but its content hashes to "));
}

/* Text that is not UTF-8 cannot be dumped or mirrored as JSON: verify
 * says so before dump or the flusher meets it. */
static void test_verify_finds_a_message_whose_text_is_not_utf8(void **state)
{
	fixture *f = *state;

	assert_int_equal(shm_log_trim(f->env, 1), 0);
	replace_in_values(f, f->env->msg, "alice", "al\xff" "ce");
	assert_int_equal(run_verify(f), 1);
	assert_true(found(f, "username: invalid UTF-8 at byte offset 2"));
}

/* Type Delete with content other than a soft delete leaves (stored by a
 * put before put refused it) is named: import would refuse its dump. */
static void test_verify_finds_a_deleted_message_that_still_says_something(
	void **state)
{
	fixture *f = *state;
	MDB_txn *txn = wbegin(f);
	MDB_val k = {16, f->id.b}, v;
	uint8_t buf[4096];

	assert_int_equal(mdb_get(txn, f->env->msg, &k, &v), 0);
	assert_true(v.mv_size <= sizeof buf);
	memcpy(buf, v.mv_data, v.mv_size);
	buf[1] = SHM_MSG_DELETE; /* the encoding's type byte (codec.h) */
	v.mv_data = buf;
	assert_int_equal(mdb_put(txn, f->env->msg, &k, &v, 0), 0);
	wcommit(txn);
	assert_int_equal(shm_log_trim(f->env, 1), 0);
	assert_int_equal(run_verify(f), 1);
	assert_true(found(f, "message_type Delete: content must be"));
}

/* A static's SHAs are what GitHub and GitLab compare: content that no
 * longer matches them is found, both named. */
static void test_verify_finds_a_static_whose_content_changed(void **state)
{
	fixture *f = *state;
	shm_uuid w;
	shm_static *s;

	assert_int_equal(shm_uuid_parse(WEB, &w), 0);
	assert_int_equal(shm_static_put(f->env, &w, "Page/1", "STATIC-BODY", 11,
	                                &s), 0);
	shm_static_free(s);
	assert_int_equal(shm_log_trim(f->env, 2), 0);
	assert_int_equal(run_verify(f), 0);
	replace_in_values(f, f->env->stat, "STATIC-BODY", "STATIC-BADY");
	assert_int_equal(run_verify(f), 2);
	assert_true(found(f, "static 8c5e1ab0-6d0a-4c5c-9b61-2f6a0e1d5a11/Page/1: "
	                     "sha1 "));
	assert_true(found(f, ": sha256 "));
}

static void test_verify_finds_an_unflushed_record_whose_data_is_gone(
	void **state)
{
	fixture *f = *state;
	uint8_t key[600], rk[300];
	MDB_txn *txn = wbegin(f);
	MDB_val lk = {lru_key_of(txn, f, SHM_KIND_MSG, f->id.b, 16, key), key};
	MDB_val mk = {16, f->id.b};
	MDB_val rkv;

	mdb_txn_abort(txn);
	rkv = (MDB_val){room_key(f, rk), rk};
	txn = wbegin(f);
	/* Drop the message with all its bookkeeping, as a bad eviction would. */
	assert_int_equal(mdb_del(txn, f->env->msg, &mk, NULL), 0);
	assert_int_equal(mdb_del(txn, f->env->room, &rkv, NULL), 0);
	assert_int_equal(mdb_del(txn, f->env->lru, &lk, NULL), 0);
	assert_int_equal(shm__meta_put(txn, f->env, "entries", 0), 0);
	assert_int_equal(shm__meta_put(txn, f->env, "bytes", 0), 0);
	wcommit(txn);
	assert_int_equal(run_verify(f), 1);
	assert_true(found(f, "log seq 1 (msg_put"));
	assert_true(found(f, "unflushed but the message is not in L1"));
}

static void test_verify_finds_a_one_sided_graph_edge(void **state)
{
	fixture *f = *state;
	shm_uuid w;
	uint8_t key[SHM_OBJKEY_MAX];
	size_t klen;
	MDB_txn *txn;

	assert_int_equal(shm_uuid_parse(WEB, &w), 0);
	assert_int_equal(shm__objkey("test", &w, "Page/1", key, &klen), 0);
	txn = wbegin(f);
	MDB_val k = {klen, key}, v = {7, "Block/9"};
	assert_int_equal(mdb_put(txn, f->env->dep, &k, &v, 0), 0);
	wcommit(txn);
	assert_int_equal(run_verify(f), 1);
	assert_true(found(f, "dependency edge"));
	assert_true(found(f, "Page/1 -> Block/9 has no reverse edge"));
}

/* Puts key (WEB + obj, as given: not in canonical form) -> v into dbi, as
 * a libshm older than the lower-case UUID ids wrote it. */
static void legacy_put(fixture *f, MDB_dbi dbi, const char *obj,
                       const void *v, size_t vlen)
{
	uint8_t key[SHM_OBJKEY_MAX];
	shm_uuid w;
	MDB_txn *txn = wbegin(f);

	assert_int_equal(shm_uuid_parse(WEB, &w), 0);
	memcpy(key, w.b, 16);
	memcpy(key + 16, obj, strlen(obj));
	MDB_val k = {16 + strlen(obj), key}, d = {vlen, (void *)v};
	assert_int_equal(mdb_put(txn, dbi, &k, &d, 0), 0);
	wcommit(txn);
}

/* verify is for damaged stores, whose keys and values may hold any bytes:
 * its texts show them printably (\xNN), whole. Before, a room key, an edge's
 * object and an upper-case entry's type went into them raw. */
static void test_verify_shows_damaged_names_printably(void **state)
{
	fixture *f = *state;
	static const char edge_to[] = "Bl\x1b[2Jock/9\xff",
	                  marked[] = "Pe\x1b]0;x\x07rson/"
	                             "C0FFEE00-0000-4000-8000-0000000000CD";
	uint8_t mark[9] = {0}, rk[32] = "r\x1b[2J";
	MDB_txn *txn;

	legacy_put(f, f->env->dep, "Page/1", edge_to, strlen(edge_to));
	mark[8] = 1;
	legacy_put(f, f->env->mark, marked, mark, sizeof mark);
	memset(rk + 5, 0, sizeof rk - 5); /* room NUL be64(0) id(16 zeros) */
	txn = wbegin(f);
	MDB_val k = {6 + 8 + 16, rk}, v = {0, NULL};
	assert_int_equal(mdb_put(txn, f->env->room, &k, &v, 0), 0);
	wcommit(txn);

	assert_int_equal(run_verify(f), 3);
	assert_true(found(f, "room index 'r\\x1b[2J': message "));
	assert_true(found(f, "Page/1 -> Bl\\x1b[2Jock/9\\xff has no reverse"));
	assert_true(found(f, "/Pe\\x1b]0;x\\x07rson/C0FFEE00-0000-4000-8000-"
	                     "0000000000CD: a UUID ID in upper case"));
	for (size_t i = 0; i < f->n_found; i++) {
		const char *t = f->found[i];
		for (const char *c = t; *c; c++)
			if ((unsigned char)*c < 0x20 || *c == 0x7f)
				fail_msg("problem %zu: byte %02x", i, (unsigned)*c);
		assert_int_equal(shm__utf8_bad(t, strlen(t)), strlen(t));
	}
}

/* What an older libshm stored under a UUID ID in upper case (graph nodes
 * and edges, statics, marks) is out of libshm's reach: each entry is a
 * problem that names it, the lower-case object libshm keys, and what to do.
 * The same objects given in upper case now are stored in lower case:
 * clean. Before, verify found nothing. */
static void test_verify_finds_upper_case_uuid_ids_an_older_libshm_stored(
	void **state)
{
	fixture *f = *state;
	static const char page_up[] = "Page/C0FFEE00-0000-4000-8000-0000000000AB",
	                  person_up[] =
		"Person/C0FFEE00-0000-4000-8000-0000000000CD";
	const char *deps[] = {person_up};
	uint8_t one = 1, mark[9] = {0}, key[SHM_OBJKEY_MAX];
	shm_uuid w;
	shm_static *st;
	size_t klen;

	assert_int_equal(shm_uuid_parse(WEB, &w), 0);
	assert_int_equal(shm_deps_set(f->env, &w, page_up, true, deps, 1), 0);
	assert_int_equal(shm_object_save(f->env, &w, person_up), 0);
	assert_int_equal(shm_static_put(f->env, &w, page_up, "x", 1, &st), 0);
	shm_static_free(st);
	assert_int_equal(run_verify(f), 0);

	/* the same, as an older libshm stored them; the static moved to the
	 * upper-case key with its lru key, its record trimmed */
	legacy_put(f, f->env->obj, page_up, &one, 1);
	legacy_put(f, f->env->dep, page_up, person_up, strlen(person_up));
	legacy_put(f, f->env->ref, person_up, page_up, strlen(page_up));
	mark[8] = 1;
	legacy_put(f, f->env->mark, person_up, mark, sizeof mark);
	shm_info in;
	assert_int_equal(shm_env_info(f->env, &in), 0);
	assert_int_equal(shm_log_trim(f->env, in.next_seq - 1), 0);
	assert_int_equal(shm__objkey("test", &w, page_up, key, &klen), 0);
	MDB_txn *txn = wbegin(f);
	MDB_val k = {klen, key}, v;
	uint8_t lk[9 + SHM_OBJKEY_MAX], up[SHM_OBJKEY_MAX];
	size_t ll = lru_key_of(txn, f, SHM_KIND_STATIC, key, klen, lk);
	assert_int_equal(mdb_get(txn, f->env->stat, &k, &v), 0);
	memcpy(up, key, 16);
	memcpy(up + 16, page_up, klen - 16);
	MDB_val uk = {klen, up}, lv;
	assert_int_equal(mdb_put(txn, f->env->stat, &uk, &v, 0), 0);
	assert_int_equal(mdb_del(txn, f->env->stat, &k, NULL), 0);
	MDB_val lkv = {ll, lk};
	assert_int_equal(mdb_get(txn, f->env->lru, &lkv, &lv), 0);
	uint8_t lval[16];
	memcpy(lval, lv.mv_data, lv.mv_size);
	lv.mv_data = lval;
	assert_int_equal(mdb_del(txn, f->env->lru, &lkv, NULL), 0);
	memcpy(lk + 9, up, klen);
	assert_int_equal(mdb_put(txn, f->env->lru, &lkv, &lv, 0), 0);
	wcommit(txn);

	assert_int_equal(run_verify(f), 4);
	assert_true(found(f, "graph: object 8c5e1ab0-6d0a-4c5c-9b61-2f6a0e1d5a11/"
	                     "Page/C0FFEE00-0000-4000-8000-0000000000AB: a UUID "
	                     "ID in upper case, as an older libshm stored it; "
	                     "libshm keys this object Page/c0ffee00-0000-4000-"
	                     "8000-0000000000ab: libshm no longer walks it, "
	                     "declared again or not: run 'shmctl upgrade'"));
	assert_true(found(f, "graph: edge 8c5e1ab0-6d0a-4c5c-9b61-2f6a0e1d5a11/"
	                     "Page/C0FFEE00-0000-4000-8000-0000000000AB -> "
	                     "Person/C0FFEE00-0000-4000-8000-0000000000CD: a "
	                     "UUID ID in upper case, as an older libshm stored "
	                     "it; libshm keys this edge Page/c0ffee00-0000-4000-"
	                     "8000-0000000000ab -> Person/c0ffee00-0000-4000-"
	                     "8000-0000000000cd: libshm no longer walks it"));
	assert_true(found(f, "static 8c5e1ab0-6d0a-4c5c-9b61-2f6a0e1d5a11/Page/"
	                     "C0FFEE00-0000-4000-8000-0000000000AB: a UUID ID in "
	                     "upper case, as an older libshm stored it; libshm "
	                     "keys this object Page/c0ffee00-0000-4000-8000-"
	                     "0000000000ab: no reader gets it: it ages out of "
	                     "L1, or run 'shmctl upgrade'"));
	assert_true(found(f, "mark 8c5e1ab0-6d0a-4c5c-9b61-2f6a0e1d5a11/Person/"
	                     "C0FFEE00-0000-4000-8000-0000000000CD: a UUID ID in "
	                     "upper case, as an older libshm stored it; libshm "
	                     "keys this object Person/c0ffee00-0000-4000-8000-"
	                     "0000000000cd: the flusher mirrors its log record "
	                     "in lower case: run 'shmctl upgrade' to drop it"));
	/* an edge of a lower-case object to an upper-case one */
	const char *page = "Page/c0ffee00-0000-4000-8000-0000000000ab";
	legacy_put(f, f->env->dep, page, person_up, strlen(person_up));
	legacy_put(f, f->env->ref, person_up, page, strlen(page));
	assert_int_equal(run_verify(f), 5);
	assert_true(found(f, "graph: edge 8c5e1ab0-6d0a-4c5c-9b61-2f6a0e1d5a11/"
	                     "Page/c0ffee00-0000-4000-8000-0000000000ab -> "
	                     "Person/C0FFEE00-0000-4000-8000-0000000000CD: a "
	                     "UUID ID in upper case, as an older libshm stored "
	                     "it; libshm keys this edge Page/c0ffee00-0000-4000-"
	                     "8000-0000000000ab -> Person/c0ffee00-0000-4000-"
	                     "8000-0000000000cd: "));
}

/* A dead letter cut short, or whose lengths do not add up to its size, is
 * named by its seq. Good ones are no problem, one whose record is still in
 * the log too (letter 1: the message setup put). */
static void test_verify_finds_dead_letters_that_do_not_decode(void **state)
{
	fixture *f = *state;
	shm_log_rec rec;
	uint64_t seq;
	MDB_val k = {8, &seq}, v;
	uint8_t buf[64];
	MDB_txn *txn;

	memset(&rec, 0, sizeof rec);
	for (rec.seq = 1; rec.seq <= 4; rec.seq++)
		assert_int_equal(shm_dead_add(f->env, &rec, "redis", "bad"), 0);
	assert_int_equal(run_verify(f), 0);
	txn = wbegin(f);
	seq = 2;
	assert_int_equal(mdb_put(txn, f->env->dead, &k,
	                         &(MDB_val){3, "\x01\x00\xff"}, 0), 0);
	seq = 3;
	assert_int_equal(mdb_get(txn, f->env->dead, &k, &v), 0);
	assert_true(v.mv_size <= sizeof buf);
	memcpy(buf, v.mv_data, v.mv_size);
	buf[4]++; /* raw_size */
	v.mv_data = buf;
	assert_int_equal(mdb_put(txn, f->env->dead, &k, &v, 0), 0);
	wcommit(txn);
	assert_int_equal(run_verify(f), 2);
	assert_true(found(f, "dead letter 2: bad header of 3 bytes, version 1"));
	assert_true(found(f, "dead letter 3: bad lengths"));
}

static int count_letter(const shm_dead *d, void *user)
{
	(void)d;
	((int *)user)[0]++;
	return 0;
}

static int count_bad_letter(uint64_t seq, const char *why, void *user)
{
	(void)seq;
	(void)why;
	((int *)user)[1]++;
	return 0;
}

/* A dead letter whose bytes are not what shm_dead_add writes (its 0 byte,
 * its sink names, its UTF-8 reason) does not decode: shm_dead_walk and
 * verify name it by its seq where they passed it on, and shmctl log
 * --dead printed its sink and reason raw (a terminal escape). Byte 1 at
 * 0x20 is the input the fuzzing of tests/test_fuzz.c found. */
static void test_verify_finds_dead_letters_not_as_written(void **state)
{
#define AT(at, bytes) at, bytes, sizeof bytes - 1
	static const struct {
		size_t at;
		const char *bytes;
		size_t len;
		const char *why;
	} bad[] = { /* over "redis" at 16, "bad" at 32 */
		{AT(1, " "), "dead letter 1: bad header: byte 1 is 0x20, not 0"},
		{AT(16, "re\x1b[2J"), "dead letter 2: bad sink field"},
		{AT(16, "pg,\0\0"), "dead letter 3: bad sink field"},
		{AT(16, ",redis"), "dead letter 4: bad sink field"},
		{AT(16, "0123456789abcdef"), "dead letter 5: bad sink field"},
		{AT(32, "b\xff"), "dead letter 6: reason not UTF-8 without NUL"},
		{AT(32, "b\0"), "dead letter 7: reason not UTF-8 without NUL"},
	};
#undef AT
	enum { N = sizeof bad / sizeof *bad };
	fixture *f = *state;
	shm_log_rec rec;
	uint64_t seq;
	MDB_val k = {8, &seq}, v;
	uint8_t buf[64];
	MDB_txn *txn;
	int counts[2] = {0, 0};

	memset(&rec, 0, sizeof rec);
	for (rec.seq = 1; rec.seq <= N + 1; rec.seq++)
		assert_int_equal(shm_dead_add(f->env, &rec, "redis", "bad"), 0);
	txn = wbegin(f);
	for (seq = 1; seq <= N; seq++) {
		assert_int_equal(mdb_get(txn, f->env->dead, &k, &v), 0);
		assert_true(v.mv_size <= sizeof buf);
		memcpy(buf, v.mv_data, v.mv_size);
		memcpy(buf + bad[seq - 1].at, bad[seq - 1].bytes,
		       bad[seq - 1].len);
		v.mv_data = buf;
		assert_int_equal(mdb_put(txn, f->env->dead, &k, &v, 0), 0);
	}
	wcommit(txn);
	assert_int_equal(run_verify(f), N);
	for (size_t i = 0; i < N; i++)
		if (!found(f, bad[i].why))
			fail_msg("verify does not say '%s'", bad[i].why);
	assert_int_equal(shm_dead_walk(f->env, count_letter, count_bad_letter,
	                               counts), 0);
	assert_int_equal(counts[0], 1); /* letter N + 1 */
	assert_int_equal(counts[1], N);
}

static void test_verify_counts_without_a_callback(void **state)
{
	fixture *f = *state;
	uint8_t key[300];
	MDB_val k = {room_key(f, key), key};
	MDB_txn *txn = wbegin(f);
	size_t n = 0;

	assert_int_equal(mdb_del(txn, f->env->room, &k, NULL), 0);
	wcommit(txn);
	assert_int_equal(shm_verify(f->env, NULL, NULL, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(shm_verify(NULL, NULL, NULL, &n), SHM_EINVAL);
}

/* mdb_reader_list's line of a slot that holds a snapshot: "pid thread
 * txnid" (one that holds none, a pooled reset transaction, shows "-"). */
static int holds_snapshot(const char *line, void *ctx)
{
	int pid;
	size_t tid, txnid;

	if (sscanf(line, "%d %zx %zu", &pid, &tid, &txnid) == 3)
		*(bool *)ctx = true;
	return 0;
}

typedef struct reported {
	shm_env *env;
	size_t n;
	bool in_snapshot; /* a reader slot held a snapshot during a report */
} reported;

static void count_outside_snapshot(const char *problem, void *user)
{
	reported *r = user;

	r->n++;
	mdb_reader_list(r->env->mdb, holds_snapshot, &r->in_snapshot);
}

/* A reader that takes its time (a pipe nobody reads) must not pin the
 * snapshot: the problems are reported once it is released, the first
 * SHM_VERIFY_REPORT_MAX of them, and all are counted. */
static void test_verify_reports_the_first_problems_after_its_snapshot(
	void **state)
{
	fixture *f = *state;
	reported r = {.env = f->env};
	size_t n = 0;
	shm_info in;

	for (int i = 0; i < SHM_VERIFY_REPORT_MAX + 10; i++) {
		shm_msg m = tu_msg("many", i, "x");
		assert_int_equal(shm_msg_put(f->env, &m), 0);
	}
	/* the log gone while "flushed" says 0: a problem per message */
	assert_int_equal(shm_env_info(f->env, &in), 0);
	assert_int_equal(shm_log_trim(f->env, in.log_last), 0);
	MDB_txn *txn = wbegin(f);
	assert_int_equal(shm__meta_put(txn, f->env, "flushed", 0), 0);
	wcommit(txn);
	assert_int_equal(shm_verify(f->env, count_outside_snapshot, &r, &n), 0);
	assert_false(r.in_snapshot);
	assert_int_equal(n, SHM_VERIFY_REPORT_MAX + 11);
	assert_int_equal(r.n, SHM_VERIFY_REPORT_MAX);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
			test_verify_is_clean_after_every_kind_of_write, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			test_verify_finds_a_message_missing_from_the_room_index,
			setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_verify_quotes_the_room_of_a_message_printably,
			setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_verify_finds_a_room_key_without_its_message, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			test_verify_finds_lru_and_meta_count_mismatches, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			test_verify_finds_a_record_with_a_bad_checksum, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			test_verify_names_each_damaged_entry, setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_verify_names_a_record_under_another_seq_once, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			test_verify_names_a_record_cut_short_of_its_header, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			test_verify_finds_a_message_whose_content_changed, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			test_verify_finds_a_message_whose_text_is_not_utf8, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			test_verify_finds_a_deleted_message_that_still_says_something,
			setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_verify_finds_a_static_whose_content_changed, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			test_verify_finds_an_unflushed_record_whose_data_is_gone,
			setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_verify_finds_upper_case_uuid_ids_an_older_libshm_stored,
			setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_verify_shows_damaged_names_printably, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			test_verify_finds_a_one_sided_graph_edge, setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_verify_finds_dead_letters_that_do_not_decode, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			test_verify_finds_dead_letters_not_as_written, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			test_verify_counts_without_a_callback, setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_verify_reports_the_first_problems_after_its_snapshot,
			setup, teardown),
	};
	return cmocka_run_group_tests_name("verify", tests, NULL, NULL);
}
