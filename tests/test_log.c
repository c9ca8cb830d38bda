/* tests/test_log.c - the write log: one record per write in the same
 * transaction, increasing seqs, checksums, LZ4 payloads, iteration, trim. */
#include <lmdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

#include "codec.h"
#include "fuzz.h"
#include "testutil.h"

static char *dir;
static shm_env *env;

static int setup(void **state)
{
	dir = tu_tmpdir();
	env = tu_open(dir, NULL);
	return 0;
}

static int teardown(void **state)
{
	shm_env_close(env);
	tu_rmdir(dir);
	free(dir);
	return 0;
}

static void test_every_write_appends_one_record_in_order(void **state)
{
	shm_msg m = tu_msg("l", 1, "x");
	shm_log_iter *it;
	shm_log_rec r;
	int ops[4];
	int n = 0;

	assert_int_equal(shm_msg_put(env, &m), 0);
	assert_int_equal(shm_msg_edit(env, &m.id, "y", 1), 0);
	assert_int_equal(shm_msg_react(env, &m.id, 2, "👍", true), 0);
	assert_int_equal(shm_msg_delete(env, &m.id), 0);
	assert_int_equal(shm_log_iter_open(env, 0, &it), 0);
	uint64_t prev = 0;
	while (shm_log_iter_next(it, &r) == 0) {
		assert_true(n < 4);
		assert_true(r.seq > prev);
		prev = r.seq;
		ops[n++] = r.op;
		assert_int_equal(r.key_len, 16);
		assert_memory_equal(r.key, m.id.b, 16);
		assert_int_equal(r.version, SHM_LOG_VERSION);
		shm_msg *p;
		assert_int_equal(shm_msg_decode(r.payload, r.payload_len, &p), 0);
		if (r.op == SHM_OP_MSG_EDIT)
			assert_string_equal(p->content, "y");
		shm_msg_free(p);
	}
	shm_log_iter_close(it);
	assert_int_equal(n, 4);
	assert_int_equal(ops[0], SHM_OP_MSG_PUT);
	assert_int_equal(ops[1], SHM_OP_MSG_EDIT);
	assert_int_equal(ops[2], SHM_OP_MSG_REACT);
	assert_int_equal(ops[3], SHM_OP_MSG_DELETE);
	assert_string_equal(shm_op_name(SHM_OP_MSG_EDIT), "msg_edit");
}

static void test_large_payloads_are_lz4_frames_and_decode(void **state)
{
	char *big = malloc(20000);
	shm_log_iter *it;
	shm_log_rec r;
	shm_msg *p;

	for (int i = 0; i < 19999; i++)
		big[i] = "abcdefgh "[i % 9];
	big[19999] = 0;
	shm_msg m = tu_msg("big", 1, big);
	assert_int_equal(shm_msg_put(env, &m), 0);
	assert_int_equal(shm_log_iter_open(env, 0, &it), 0);
	assert_int_equal(shm_log_iter_next(it, &r), 0);
	assert_true(r.flags & SHM_LOG_LZ4);
	assert_true(r.stored_len < r.payload_len / 4);
	assert_memory_equal(r.raw + SHM_LOG_HEADER + 16, "\x04\x22\x4d\x18", 4);
	assert_int_equal(shm_msg_decode(r.payload, r.payload_len, &p), 0);
	assert_string_equal(p->content, big);
	shm_msg_free(p);
	shm_log_iter_close(it);
	shm_counters c;
	shm_stats_local(env, &c);
	assert_true(c.log_bytes_stored < c.log_bytes_raw);
	free(big);
}

static void test_small_payloads_stay_uncompressed(void **state)
{
	shm_msg m = tu_msg("s", 1, "short");
	shm_log_iter *it;
	shm_log_rec r;

	assert_int_equal(shm_msg_put(env, &m), 0);
	assert_int_equal(shm_log_iter_open(env, 0, &it), 0);
	assert_int_equal(shm_log_iter_next(it, &r), 0);
	assert_false(r.flags & SHM_LOG_LZ4);
	assert_int_equal(r.stored_len, r.payload_len);
	shm_log_iter_close(it);
}

/* Flips one byte of record seq in the map, as a disk fault would. */
static void corrupt_record(uint64_t seq, size_t off)
{
	MDB_txn *txn;
	MDB_val k = {8, &seq}, v;
	assert_int_equal(mdb_txn_begin(env->mdb, NULL, 0, &txn), 0);
	assert_int_equal(mdb_get(txn, env->log, &k, &v), 0);
	uint8_t *copy = malloc(v.mv_size);
	memcpy(copy, v.mv_data, v.mv_size);
	copy[off] ^= 0x40;
	MDB_val nv = {v.mv_size, copy};
	assert_int_equal(mdb_put(txn, env->log, &k, &nv, 0), 0);
	assert_int_equal(mdb_txn_commit(txn), 0);
	free(copy);
}

static void test_corrupted_record_is_reported_and_iteration_goes_on(void **state)
{
	shm_msg m[3] = {tu_msg("c", 1, "one"), tu_msg("c", 1, "two"),
	                tu_msg("c", 1, "three")};
	shm_log_iter *it;
	shm_log_rec r;

	assert_int_equal(shm_msg_put_many(env, m, 3, NULL), 0);
	corrupt_record(2, SHM_LOG_HEADER + 20);
	assert_int_equal(shm_log_iter_open(env, 0, &it), 0);
	assert_int_equal(shm_log_iter_next(it, &r), 0);
	assert_int_equal(r.seq, 1);
	assert_int_equal(shm_log_iter_next(it, &r), SHM_ECORRUPT);
	assert_int_equal(r.seq, 2);
	assert_non_null(strstr(shm_errmsg(), "checksum"));
	assert_non_null(strstr(shm_errmsg(), "log record 2:"));
	assert_null(strstr(shm_errmsg(), "log seq")); /* named once */
	assert_int_equal(shm_log_iter_next(it, &r), 0);
	assert_int_equal(r.seq, 3);
	assert_int_equal(shm_log_iter_next(it, &r), SHM_ENOTFOUND);
	shm_log_iter_close(it);

	/* a header whose seq is damaged: the text names the key's seq too */
	corrupt_record(3, 8);
	assert_int_equal(shm_log_iter_open(env, 3, &it), 0);
	assert_int_equal(shm_log_iter_next(it, &r), SHM_ECORRUPT);
	assert_int_equal(r.seq, 3);
	assert_ptr_equal(strstr(shm_errmsg(), "log seq 3: log record "),
	                 shm_errmsg());
	shm_log_iter_close(it);
}

static void test_truncated_record_is_corrupt(void **state)
{
	uint8_t buf[SHM_LOG_HEADER + 4] = {SHM_LOG_VERSION, 1};
	uint8_t *dbuf = NULL;
	size_t cap = 0;
	shm_log_rec r;

	assert_int_equal(shm_log_decode(buf, 10, &r, &dbuf, &cap), SHM_ECORRUPT);
	assert_int_equal(shm_log_decode(buf, sizeof buf, &r, &dbuf, &cap),
	                 SHM_ECORRUPT);
	free(dbuf);
}

/* shm_msg_payload_room hands out a NUL-terminated room_id of room_len
 * bytes: one with a NUL inside, or not UTF-8, is a malformed payload. */
static void test_payload_room_refuses_a_malformed_room(void **state)
{
	shm_msg m = tu_msg("room", 1, "x");
	shm_log_iter *it;
	shm_log_rec r;
	uint8_t p[512];
	const char *room;
	size_t len;
	int64_t at;

	assert_int_equal(shm_msg_put(env, &m), 0);
	assert_int_equal(shm_log_iter_open(env, 0, &it), 0);
	assert_int_equal(shm_log_iter_next(it, &r), 0);
	assert_true(r.payload_len <= sizeof p);
	memcpy(p, r.payload, r.payload_len);
	shm_log_iter_close(it);
	assert_int_equal(shm_msg_payload_room(p, r.payload_len, &room, &len,
	                                      &at), 0);
	assert_int_equal(len, 4);
	assert_int_equal(at, m.created_at);
	size_t off = (size_t)(room - (const char *)p);
	p[off + 1] = 0;
	assert_int_equal(shm_msg_payload_room(p, r.payload_len, &room, &len,
	                                      &at), SHM_ECORRUPT);
	assert_non_null(strstr(shm_errmsg(), "bad room_id"));
	assert_null(room);
	p[off + 1] = 0xff;
	assert_int_equal(shm_msg_payload_room(p, r.payload_len, &room, &len,
	                                      &at), SHM_ECORRUPT);
	assert_int_equal(len, 0);
}

/* The first record's payload, copied into p (*n bytes). */
static void first_payload(uint8_t *p, size_t cap, size_t *n)
{
	shm_log_iter *it;
	shm_log_rec r;

	assert_int_equal(shm_log_iter_open(env, 0, &it), 0);
	assert_int_equal(shm_log_iter_next(it, &r), 0);
	assert_true(r.payload_len <= cap);
	memcpy(p, r.payload, r.payload_len);
	*n = r.payload_len;
	shm_log_iter_close(it);
}

/* Where the encoded string s (u32 length, bytes) of p begins. */
static size_t str_at(const uint8_t *p, size_t n, const char *s)
{
	uint8_t want[64];
	uint32_t len = (uint32_t)strlen(s);

	memcpy(want, &len, 4);
	memcpy(want + 4, s, len);
	const uint8_t *at = memmem(p, n, want, 4 + len);
	assert_non_null(at);
	return (size_t)(at - p) + 4;
}

/* A message value decodes only as the encoder writes it (codec.h): a byte
 * it leaves zero that is not (byte 3, a parent or thread id whose flag is
 * off: a flag bit lost), or a NUL inside a string handed out as a C string
 * (which cut it short, the bytes after it unseen by put's checks and
 * verify) is corrupt, the text naming the part. Before, each of these
 * decoded, to a message that encodes to other bytes. */
static void test_msg_decode_refuses_what_the_encoder_never_writes(
	void **state)
{
	int32_t users[] = {3};
	shm_reaction rx = {"zz", users, 1};
	shm_attachment at = {.filename = "f.png", .content_type = "image/png",
	                     .size = 9, .url = "http://u"};
	shm_msg m = tu_msg("room", 1, "content");
	static const struct {
		const char *find; /* a string whose second byte becomes NUL */
		size_t at;        /* or an offset in the fixed part */
		uint8_t flags;    /* with byte 2 then */
		const char *why;
	} bad[] = {
		{NULL, 3, 6, "bad header: unknown flags"},
		{NULL, SHM_MSG_PARENT_OFF + 5, 4,
		 "bad header: a parent_id without its flag"},
		{NULL, SHM_MSG_THREAD_OFF, 2,
		 "bad header: a thread_id without its flag"},
		{"room", 0, 6, "malformed body: room_id"},
		{"bob", 0, 6, "malformed body: username"},
		{"f.png", 0, 6, "malformed body: attachments"},
		{"image/png", 0, 6, "malformed body: attachments"},
		{"http://u", 0, 6, "malformed body: attachments"},
		{"zz", 0, 6, "malformed body: reactions"},
	};
	uint8_t p[1024], q[1024];
	shm_msg *got;
	size_t n;

	m.username = "bob";
	m.attachments = &at;
	m.n_attachments = 1;
	m.reactions = &rx;
	m.n_reactions = 1;
	m.has_parent = m.has_thread = true;
	shm_uuid_v7(&m.parent_id);
	m.thread_id = m.parent_id;
	shm_uuid_v7(&at.id);
	assert_int_equal(shm_msg_put(env, &m), 0);
	first_payload(p, sizeof p, &n);
	assert_int_equal(p[2], 6);
	assert_int_equal(shm_msg_decode(p, n, &got), 0);
	shm_msg_free(got);
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		size_t off = bad[i].at;
		memcpy(q, p, n);
		if (bad[i].find) {
			off = str_at(q, n, bad[i].find) + 1;
			q[off] = 0;
		} else {
			q[off] = 1;
		}
		q[2] = bad[i].flags;
		got = NULL;
		assert_int_equal(shm_msg_decode(q, n, &got), SHM_ECORRUPT);
		assert_null(got);
		if (!strstr(shm_errmsg(), bad[i].why))
			fail_msg("'%s' does not say '%s'", shm_errmsg(),
			         bad[i].why);
	}
	/* content carries its length: a NUL in it is put's checks' to find */
	memcpy(q, p, n);
	q[str_at(q, n, "content") + 2] = 0;
	assert_int_equal(shm_msg_decode(q, n, &got), 0);
	assert_int_equal(got->content_len, 7);
	assert_memory_equal(got->content, "co\0tent", 7);
	shm_msg_free(got);
}

/* A record whose checksum holds but whose raw length lies (a writer's bug,
 * or a forged record) is corrupt: one of 0xffffffff bytes made the buffer
 * size wrap to 0, and LZ4 wrote the payload past the end of the buffer. */
static void test_lz4_record_claiming_a_wrong_raw_length_is_corrupt(
	void **state)
{
	static char content[60001];
	uint32_t lies[] = {UINT32_MAX, UINT32_MAX - 1, 200000000, 60000};
	shm_log_iter *it;
	shm_log_rec r;
	uint8_t *rec, *dbuf = NULL;
	size_t size, cap = 0;

	memset(content, 'a', sizeof content - 1);
	shm_msg m = tu_msg("lz4", 1, content);
	assert_int_equal(shm_msg_put(env, &m), 0);
	assert_int_equal(shm_log_iter_open(env, 0, &it), 0);
	assert_int_equal(shm_log_iter_next(it, &r), 0);
	assert_true(r.flags & SHM_LOG_LZ4);
	size = r.raw_size;
	assert_non_null(rec = malloc(size));
	memcpy(rec, r.raw, size);
	shm_log_iter_close(it);
	for (size_t i = 0; i < sizeof lies / sizeof lies[0]; i++) {
		uint64_t sum;
		memcpy(rec + 28, &lies[i], 4);
		memset(rec + 32, 0, 8);
		sum = XXH3_64bits(rec, size);
		memcpy(rec + 32, &sum, 8);
		assert_int_equal(shm_log_decode(rec, size, &r, &dbuf, &cap),
		                 SHM_ECORRUPT);
		assert_null(r.payload);
		assert_true(cap < 1u << 20); /* no buffer of the size it claims */
	}
	free(dbuf);
	free(rec);
}

/* Version 1 has the ops and the flag shm_log.h lists: a record (checksum
 * right) with another op or flag is corrupt, as its sinks would otherwise
 * each skip it in silence rather than set it aside. */
static void test_record_of_an_unknown_op_or_flag_is_corrupt(void **state)
{
	shm_msg m = tu_msg("op", 1, "x");
	static const struct {
		uint8_t op;
		uint16_t flags;
		const char *why;
	} bad[] = {{0, 0, "unknown op 0"}, {6, 0, "unknown op 6"},
	           {21, 0, "unknown op 21"}, {255, 0, "unknown op 255"},
	           {SHM_OP_MSG_PUT, 2, "unknown flags 0x0002"},
	           {SHM_OP_MSG_PUT, 0x8000, "unknown flags 0x8000"}};
	shm_log_iter *it;
	shm_log_rec r;
	uint8_t rec[512], *dbuf = NULL;
	size_t size, cap = 0;

	assert_int_equal(shm_msg_put(env, &m), 0);
	assert_int_equal(shm_log_iter_open(env, 0, &it), 0);
	assert_int_equal(shm_log_iter_next(it, &r), 0);
	assert_true(r.raw_size <= sizeof rec);
	size = r.raw_size;
	memcpy(rec, r.raw, size);
	shm_log_iter_close(it);
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		uint64_t sum;
		rec[1] = bad[i].op;
		memcpy(rec + 2, &bad[i].flags, 2);
		memset(rec + 32, 0, 8);
		sum = XXH3_64bits(rec, size);
		memcpy(rec + 32, &sum, 8);
		assert_int_equal(shm_log_decode(rec, size, &r, &dbuf, &cap),
		                 SHM_ECORRUPT);
		if (!strstr(shm_errmsg(), bad[i].why))
			fail_msg("'%s' does not say '%s'", shm_errmsg(),
			         bad[i].why);
		assert_int_equal(r.seq, 1);
	}
	free(dbuf);
}

/* xorshift64: the same mutations on every run */
static uint64_t next_rand(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* One change of p (n bytes, cap room) of the kinds a fuzzer makes: a bit
 * flipped, a byte or a u32 (a length) set to an extreme, the record cut
 * short, its tail taken from another record o. Returns the new size. */
static size_t mutate(uint8_t *p, size_t n, size_t cap, const uint8_t *o,
                     size_t on, uint64_t *s)
{
	static const uint32_t extremes[] = {0, 1, 0x7fffffff, 0xffffffff,
	                                    0xfffffff0};
	size_t at = n ? next_rand(s) % n : 0;
	uint32_t v;

	switch (next_rand(s) % 5) {
	case 0:
		if (n)
			p[at] ^= (uint8_t)(1u << (next_rand(s) % 8));
		return n;
	case 1:
		if (n)
			p[at] = next_rand(s) & 1 ? 0 : 0xff;
		return n;
	case 2:
		v = extremes[next_rand(s) % 5];
		if (at + 4 <= n)
			memcpy(p + at, &v, 4);
		return n;
	case 3:
		return at;
	default: {
		size_t from = on ? next_rand(s) % on : 0, len = on - from;
		if (at + len > cap)
			len = cap - at;
		memcpy(p + at, o + from, len);
		return at + len;
	}
	}
}

/* Reactions sorted by emoji, each with users: as put writes them. */
static bool reactions_as_put_writes(const shm_msg *m)
{
	for (uint32_t i = 0; i < m->n_reactions; i++)
		if (!m->reactions[i].n_users ||
		    (i && strcmp(m->reactions[i - 1].emoji,
		                 m->reactions[i].emoji) >= 0))
			return false;
	return true;
}

/* A MSG_* payload that decoded is one the encoder writes (codec.h), but
 * for the reactions of old values; a failure says what it decoded. */
static void check_msg_payload(const uint8_t *p, size_t n)
{
	shm_msg *m = NULL;
	shm__order o;
	int rc = shm_msg_decode(p, n, &m);

	if (rc) {
		assert_int_equal(rc, SHM_ECORRUPT);
		assert_null(m);
		assert_non_null(strstr(shm_errmsg(), "message value"));
		return;
	}
	if (reactions_as_put_writes(m)) {
		size_t en = shm__msg_enc_size(m);
		uint8_t *e = malloc(en);
		assert_non_null(e);
		assert_int_equal(shm__order_make(m, &o), 0);
		shm__msg_encode(m, o.r, shm__msg_enc_seq(p, n), e);
		shm__order_free(&o);
		assert_int_equal(en, n);
		assert_memory_equal(e, p, n);
		free(e);
	}
	shm_msg_free(m);
}

/* Decoding a record and its payload takes any bytes: 20000 mutations of
 * real records (SHM_FUZZ_ITERS, SHM_FUZZ_SEED: fuzz.h; a message with
 * every field, one large enough to be an LZ4 frame, statics, graph and
 * mark records), their checksum made right half of the time, each either
 * decodes or is SHM_ECORRUPT with a text naming what (never another code,
 * a read outside the bytes under the sanitizer builds, nor a message that
 * encodes to other bytes). Each decoder is given its bytes in a block of
 * their size (fz_exact), so ASan sees a read past them. */
static void test_decoders_take_any_mutation_of_a_record(void **state)
{
	enum { NREC = 16 };
	const unsigned long rounds = fz_iters(20000);
	double t0 = fz_now();
	static char big[3000];
	int32_t users[] = {4, 2};
	int32_t mention = 7;
	shm_reaction rx[] = {{"zz", users, 2}, {"ab", users + 1, 1}};
	shm_attachment at = {.filename = "f.png", .content_type = "image/png",
	                     .size = 9, .url = "http://u"};
	shm_msg m = tu_msg("room", 1, "content"), m2;
	uint8_t *rec[NREC], *buf, *dbuf = NULL;
	size_t size[NREC], n = 0, cap = 0, bcap = 0;
	uint64_t seed = fz_seed(), decoded = 0;
	shm_uuid w;
	shm_log_iter *it;
	shm_log_rec r;
	const char *deps[] = {"Block/1", "Person/2"};

	for (size_t i = 0; i < sizeof big - 1; i++)
		big[i] = "shm fuzz "[i % 9];
	m.reactions = rx;
	m.n_reactions = 2;
	m.attachments = &at;
	m.n_attachments = 1;
	m.mentions = &mention;
	m.n_mentions = 1;
	m.has_parent = m.has_thread = true;
	shm_uuid_v7(&m.parent_id);
	m.thread_id = m.parent_id;
	shm_uuid_v7(&at.id);
	m2 = tu_msg("room", 2, big);
	shm_uuid_v7(&w);
	assert_int_equal(shm_msg_put(env, &m), 0);
	assert_int_equal(shm_msg_put(env, &m2), 0);
	assert_int_equal(shm_msg_react(env, &m.id, 9, "b", true), 0);
	assert_int_equal(shm_static_put(env, &w, "Page/1", "<p>", 3, NULL), 0);
	assert_int_equal(shm_static_put(env, &w, "Page/2", big, sizeof big - 1,
	                                NULL), 0);
	assert_int_equal(shm_deps_set(env, &w, "Page/1", true, deps, 2), 0);
	assert_int_equal(shm_object_destroy(env, &w, "Block/1"), 0);
	assert_int_equal(shm_log_iter_open(env, 0, &it), 0);
	while (n < NREC && shm_log_iter_next(it, &r) == 0) {
		assert_non_null(rec[n] = malloc(r.raw_size));
		memcpy(rec[n], r.raw, r.raw_size);
		size[n] = r.raw_size;
		bcap = size[n] > bcap ? size[n] : bcap;
		n++;
	}
	shm_log_iter_close(it);
	assert_true(n >= 8);
	assert_non_null(buf = malloc(2 * bcap));
	for (unsigned long round = 0; round < rounds; round++) {
		size_t a = next_rand(&seed) % n, b = next_rand(&seed) % n;
		size_t len = size[a];
		memcpy(buf, rec[a], len);
		for (uint64_t k = next_rand(&seed) % 3; k < 3; k++)
			len = mutate(buf, len, 2 * bcap, rec[b], size[b], &seed);
		if (len >= SHM_LOG_HEADER && next_rand(&seed) & 1) {
			memset(buf + 32, 0, 8);
			uint64_t sum = XXH3_64bits(buf, len);
			memcpy(buf + 32, &sum, 8);
		}
		uint8_t *x = fz_exact(&(fz_input){.p = buf, .n = len}, false);
		int rc = shm_log_decode(x, len, &r, &dbuf, &cap);
		if (rc) {
			assert_int_equal(rc, SHM_ECORRUPT);
			assert_non_null(strstr(shm_errmsg(), "log record"));
			assert_null(r.payload);
			free(x);
			continue;
		}
		decoded++;
		/* the payload alone, in x or in dbuf (decompressed: larger) */
		uint8_t *pl = fz_exact(&(fz_input){.p = (uint8_t *)r.payload,
		                                   .n = r.payload_len}, false);
		if (shm_op_is_msg(r.op)) {
			check_msg_payload(pl, r.payload_len);
		} else if (r.op == SHM_OP_STATIC_PUT) {
			shm_static *st = NULL;
			rc = shm_static_decode(pl, r.payload_len, &st);
			if (rc) {
				assert_int_equal(rc, SHM_ECORRUPT);
				assert_non_null(strstr(shm_errmsg(),
				                       "static value"));
			}
			shm_static_free(st);
		}
		free(pl);
		free(x);
	}
	fz_report("log records", rounds, decoded, t0);
	assert_true(decoded > rounds / 10); /* the payloads were reached */
	for (size_t i = 0; i < n; i++)
		free(rec[i]);
	free(buf);
	free(dbuf);
}

static void test_iterator_starts_at_a_position(void **state)
{
	shm_msg m[5];
	shm_log_iter *it;
	shm_log_rec r;

	for (int i = 0; i < 5; i++)
		m[i] = tu_msg("p", i, "x");
	assert_int_equal(shm_msg_put_many(env, m, 5, NULL), 0);
	assert_int_equal(shm_log_iter_open(env, 4, &it), 0);
	assert_int_equal(shm_log_iter_next(it, &r), 0);
	assert_int_equal(r.seq, 4);
	assert_int_equal(shm_log_iter_next(it, &r), 0);
	assert_int_equal(r.seq, 5);
	assert_int_equal(shm_log_iter_next(it, &r), SHM_ENOTFOUND);
	shm_log_iter_close(it);
}

static void test_trim_deletes_up_to_and_raises_flushed(void **state)
{
	shm_msg m[5];
	shm_info in;

	for (int i = 0; i < 5; i++)
		m[i] = tu_msg("t", i, "x");
	assert_int_equal(shm_msg_put_many(env, m, 5, NULL), 0);
	assert_int_equal(shm_log_trim(env, 3), 0);
	assert_int_equal(shm_env_info(env, &in), 0);
	assert_int_equal(in.log_records, 2);
	assert_int_equal(in.log_first, 4);
	assert_int_equal(in.log_last, 5);
	assert_int_equal(in.flushed, 3);
	assert_int_equal(in.next_seq, 6);
	assert_int_equal(in.messages, 5); /* trimming keeps the data */
	assert_int_equal(shm_log_trim(env, 1), 0); /* never lowers */
	assert_int_equal(shm_env_info(env, &in), 0);
	assert_int_equal(in.flushed, 3);
	/* seqs are never reused after a trim of everything */
	assert_int_equal(shm_log_trim(env, 5), 0);
	shm_msg x = tu_msg("t", 1, "after");
	assert_int_equal(shm_msg_put(env, &x), 0);
	assert_int_equal(shm_env_info(env, &in), 0);
	assert_int_equal(in.log_first, 6);
}

/* No sink can have applied a record not yet written: a trim past the last
 * seq would make the next writes evictable before any sink has them. */
static void test_trim_past_the_log_end_is_refused_and_changes_nothing(
	void **state)
{
	shm_msg m[3];
	shm_info in;

	for (int i = 0; i < 3; i++)
		m[i] = tu_msg("t", i, "x");
	assert_int_equal(shm_msg_put_many(env, m, 3, NULL), 0);
	assert_int_equal(shm_log_trim(env, 4), SHM_EINVAL);
	assert_non_null(strstr(shm_errmsg(), "shm_log_trim: upto 4 is past "
	                                     "the last record written, 3"));
	assert_int_equal(shm_log_trim(env, UINT64_MAX), SHM_EINVAL);
	assert_int_equal(shm_env_info(env, &in), 0);
	assert_int_equal(in.log_records, 3);
	assert_int_equal(in.flushed, 0);
	assert_int_equal(shm_log_trim(env, 3), 0); /* the last one is fine */
	assert_int_equal(shm_env_info(env, &in), 0);
	assert_int_equal(in.log_records, 0);
	assert_int_equal(in.flushed, 3);
}

static void test_meta_values_round_trip(void **state)
{
	uint64_t v = 1;
	const char *names[] = {"sink.redis.applied", "sink.pg.applied"};
	uint64_t vals[] = {10, 20};

	assert_int_equal(shm_meta_get(env, "sink.none", &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(shm_meta_set_many(env, names, vals, 2), 0);
	assert_int_equal(shm_meta_get(env, "sink.pg.applied", &v), 0);
	assert_int_equal(v, 20);
	assert_int_equal(shm_meta_set(env, "", 1), SHM_EINVAL);
	v = 1;
	assert_int_equal(shm_meta_get(env, "", &v), SHM_EINVAL);
	assert_string_equal(shm_errmsg(), "meta name '': not 1..200 bytes "
	                                  "(invalid argument)");
	assert_int_equal(v, 0);
}

/* Names without a dot are libshm's own bookkeeping: setting next_seq back
 * made every later write fail (MDB_KEYEXIST), a format of 7 made the
 * environment unopenable, a flushed past the log evicted unflushed work.
 * shm_meta_set refuses them, and a batch holding one writes nothing. */
static void test_meta_set_refuses_libshms_own_names(void **state)
{
	const char *names[] = {"sink.x.applied", "next_seq"};
	uint64_t vals[] = {5, 1}, v;
	shm_msg m = tu_msg("meta", 1, "x");
	shm_info in;

	assert_int_equal(shm_msg_put(env, &m), 0);
	assert_int_equal(shm_meta_set(env, "format", 7), SHM_EINVAL);
	assert_non_null(strstr(shm_errmsg(), "meta name 'format': libshm's "
	                                     "own"));
	assert_int_equal(shm_meta_set(env, "flushed", 99), SHM_EINVAL);
	assert_int_equal(shm_meta_set_many(env, names, vals, 2), SHM_EINVAL);
	assert_non_null(strstr(shm_errmsg(), "'next_seq'"));
	assert_int_equal(shm_meta_get(env, "sink.x.applied", &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(shm_env_info(env, &in), 0);
	assert_int_equal(in.next_seq, 2);
	assert_int_equal(in.flushed, 0);
	assert_int_equal(in.format_version, 1);
	assert_int_equal(shm_msg_put(env, &m), 0); /* writes still work */
}

/* A refused meta name is quoted as shm_errmsg quotes input: printably,
 * its first 80 bytes; the raw bytes (a newline, an escape) reached the
 * text, 200 of them. */
static void test_meta_name_refused_is_shown_printably(void **state)
{
	char long_name[300];
	uint64_t v;

	assert_int_equal(shm_meta_set(env, "line\nbreak", 1), SHM_EINVAL);
	assert_non_null(strstr(shm_errmsg(), "meta name 'line\\x0abreak': "
	                                     "libshm's own"));
	memset(long_name, 'a', sizeof long_name - 1);
	long_name[0] = '\x1b';
	long_name[sizeof long_name - 1] = 0;
	assert_int_equal(shm_meta_get(env, long_name, &v), SHM_EINVAL);
	assert_null(strchr(shm_errmsg(), '\x1b'));
	assert_non_null(strstr(shm_errmsg(), "meta name '\\x1baaa"));
	assert_non_null(strstr(shm_errmsg(), "aaa...': not 1..200 bytes"));
}

static void test_log_wait_wakes_on_a_new_record(void **state)
{
	shm_msg m = tu_msg("w", 1, "x");
	/* the text is the timeout's, not a previous error's */
	assert_int_equal(shm_log_trim(env, 5), SHM_EINVAL);
	assert_int_equal(shm_log_wait(env, 1, 20), SHM_ETIMEDOUT);
	assert_string_equal(shm_errmsg(), "shm_log_wait: no record 1 or "
	                                  "later within 20 ms (timed out)");
	assert_int_equal(shm_msg_put(env, &m), 0);
	assert_int_equal(shm_log_wait(env, 1, 1000), 0);
}

/* A wait that finds nothing sleeps on the log's futex (log.c invariant
 * 4): it used to wake every millisecond to poll the hint, ~300 context
 * switches in 300 ms; now one per 100 ms cap at most. */
static void test_log_wait_sleeps_instead_of_polling(void **state)
{
	struct rusage a, b;

	assert_int_equal(getrusage(RUSAGE_THREAD, &a), 0);
	assert_int_equal(shm_log_wait(env, 1, 300), SHM_ETIMEDOUT);
	assert_int_equal(getrusage(RUSAGE_THREAD, &b), 0);
	long switches = (b.ru_nvcsw - a.ru_nvcsw) + (b.ru_nivcsw - a.ru_nivcsw);
	if (switches > 20)
		fail_msg("%ld context switches in a 300 ms wait", switches);
}

struct waiter {
	uint64_t from;
	int rc;
};

static void *wait_long(void *arg)
{
	struct waiter *w = arg;
	w->rc = shm_log_wait(env, w->from, 20000);
	return NULL;
}

/* shm_log_wake ends a wait that no record would end (the flusher's stop);
 * and a commit ends one at once, whatever its from. */
static void test_log_wake_ends_a_wait(void **state)
{
	struct waiter w = {.from = 1000, .rc = -1};
	pthread_t t;
	uint64_t t0 = shm__mono_ns();

	assert_int_equal(pthread_create(&t, NULL, wait_long, &w), 0);
	tu_sleep_ms(50);
	assert_int_equal(shm_log_wake(env), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(w.rc, 0);
	/* a generous bound: without the wake it is 20 s and SHM_ETIMEDOUT */
	assert_true(shm__mono_ns() - t0 < 10000000000ull);

	shm_msg m = tu_msg("w", 1, "x");
	w.rc = -1;
	assert_int_equal(pthread_create(&t, NULL, wait_long, &w), 0);
	tu_sleep_ms(50);
	assert_int_equal(shm_msg_put(env, &m), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(w.rc, 0);
	assert_true(shm__mono_ns() - t0 < 10000000000ull);
	assert_int_equal(shm_log_wake(NULL), SHM_EINVAL);
}

/* A read-only handle (shmctl log --follow) cannot set the futex's bit: it
 * used to poll every millisecond; it now sleeps on the word 10 ms at a
 * time, and still sees a record another process commits. In a child: one
 * open per process. Exit 0, or the failing step. */
static void test_read_only_wait_sleeps_and_sees_records(void **state)
{
	uint64_t next = 0;
	assert_int_equal(shm_meta_get(env, "next_seq", &next), 0);
	pid_t pid = fork();
	if (pid == 0) {
		shm_options o;
		shm_env *ro;
		struct rusage a, b;
		shm_options_init(&o);
		o.read_only = true;
		if (shm_env_open(dir, &o, &ro))
			_exit(1);
		getrusage(RUSAGE_THREAD, &a);
		if (shm_log_wait(ro, next + 1000, 300) != SHM_ETIMEDOUT)
			_exit(2);
		getrusage(RUSAGE_THREAD, &b);
		if ((b.ru_nvcsw - a.ru_nvcsw) + (b.ru_nivcsw - a.ru_nivcsw) > 100)
			_exit(3); /* 300 when it polled each millisecond */
		uint64_t t0 = shm__mono_ns();
		while (shm__mono_ns() - t0 < 5000000000ull)
			if (shm_log_wait(ro, next, 1000) == 0 &&
			    __atomic_load_n(&ro->shared->next_seq_hint,
			                    __ATOMIC_ACQUIRE) > next)
				_exit(0);
		_exit(4);
	}
	assert_true(pid > 0);
	tu_sleep_ms(500);
	shm_msg m = tu_msg("ro", 1, "seen by a read-only waiter");
	assert_int_equal(shm_msg_put(env, &m), 0);
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

int main(void)
{
	fz_init();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_every_write_appends_one_record_in_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_large_payloads_are_lz4_frames_and_decode, setup, teardown),
		cmocka_unit_test_setup_teardown(test_small_payloads_stay_uncompressed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupted_record_is_reported_and_iteration_goes_on, setup, teardown),
		cmocka_unit_test(test_truncated_record_is_corrupt),
		cmocka_unit_test_setup_teardown(test_payload_room_refuses_a_malformed_room, setup, teardown),
		cmocka_unit_test_setup_teardown(test_msg_decode_refuses_what_the_encoder_never_writes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lz4_record_claiming_a_wrong_raw_length_is_corrupt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_record_of_an_unknown_op_or_flag_is_corrupt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_decoders_take_any_mutation_of_a_record, setup, teardown),
		cmocka_unit_test_setup_teardown(test_iterator_starts_at_a_position, setup, teardown),
		cmocka_unit_test_setup_teardown(test_trim_deletes_up_to_and_raises_flushed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_trim_past_the_log_end_is_refused_and_changes_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_meta_values_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_meta_set_refuses_libshms_own_names, setup, teardown),
		cmocka_unit_test_setup_teardown(test_meta_name_refused_is_shown_printably, setup, teardown),
		cmocka_unit_test_setup_teardown(test_log_wait_wakes_on_a_new_record, setup, teardown),
		cmocka_unit_test_setup_teardown(test_log_wait_sleeps_instead_of_polling, setup, teardown),
		cmocka_unit_test_setup_teardown(test_log_wake_ends_a_wait, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_only_wait_sleeps_and_sees_records, setup, teardown),
	};
	return cmocka_run_group_tests_name("log", tests, NULL, NULL);
}
