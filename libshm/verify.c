/*
 * libshm/verify.c - consistency check of an environment (shmctl verify).
 *
 * Reads everything in one read transaction (one snapshot, no write lock),
 * keeping each broken invariant as one line of text (the first
 * SHM_VERIFY_REPORT_MAX; the others are counted), and reports them once the
 * transaction has ended: a slow report (a pipe nobody reads) pins no
 * snapshot, which would keep LMDB from reusing freed pages until the map
 * fills. The invariants checked:
 *  1. Log: every record decodes and passes its checksum, its key equals its
 *     seq, and its seq is below meta "next_seq". A record that fails is
 *     one problem: its data is not also said to lack it (step 5).
 *  2. Messages: every value decodes, its id equals its key, it passes put's
 *     checks (text UTF-8 without NUL...; the content limit aside, which is
 *     the writer's), its content_hash is its content's XXH3 (the one check
 *     of its content once its log record is trimmed), its room index key
 *     exists; every room index key points to a message of that room and
 *     created_at.
 *  3. Statics: every value decodes, its SHA-1 and SHA-256 are its
 *     content's, and its stored seq is its lru seq.
 *  4. L1 bookkeeping (internal.h invariant 1): every message and static has
 *     exactly one lru key and every lru key an entry; meta "entries" and
 *     "bytes" equal the lru count and the sum of the lru byte counts; a
 *     message's stored seq equals its lru seq (0 for a read-through fill).
 *  5. Log vs data (shm_log.h invariant 2): an entry whose lru seq is above
 *     meta "flushed" has that record in the log, with the same key; for a
 *     message op record above "flushed", the message exists with an lru seq
 *     at or above the record's; for a static whose last record above
 *     "flushed" is STATIC_PUT, the static exists with exactly that seq.
 *  6. Graph: dep and ref edges mirror each other (graph.c invariant 1).
 *  7. Dead letters: every letter decodes (its key a seq, its header of
 *     dead.c's version, its lengths its size). Nothing ties one to the log:
 *     it outlives its record, which it holds a copy of.
 *  8. Object keys are canonical (graph.c invariant 5) in obj, dep (key and
 *     object), static and mark: an ID that is a UUID is in lower case. An
 *     older libshm stored the application's spelling; libshm never reads
 *     such an entry, which shm__upgrade (upgrade.c) rewrites. ref mirrors
 *     dep (step 6): its entries are not said twice.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "codec.h"
#include "internal.h"

typedef struct vctx {
	shm_env *env;
	shm_options any_size; /* env's, max_content lifted: put's checks */
	MDB_txn *txn;
	char **kept;   /* the first n_kept problems' texts; NULL: count only */
	size_t n_kept; /* at most SHM_VERIFY_REPORT_MAX */
	size_t problems;
	bool oom;      /* a text could not be kept: the check fails */
} vctx;

__attribute__((format(printf, 2, 3))) static void problem(vctx *c,
                                                         const char *fmt, ...)
{
	va_list ap, again;
	char *text;
	int n;

	c->problems++;
	if (!c->kept || c->oom || c->n_kept == SHM_VERIFY_REPORT_MAX)
		return;
	/* whole, never cut (inside a character): names are shown printably */
	va_start(ap, fmt);
	va_copy(again, ap);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n >= 0 && (text = malloc((size_t)n + 1))) {
		vsnprintf(text, (size_t)n + 1, fmt, again);
		c->kept[c->n_kept++] = text;
	} else {
		c->oom = true;
	}
	va_end(again);
}

/* An L1 entry as found in lru (or a log record's key, for step 5). */
typedef struct vent {
	char kind;
	uint8_t op;
	uint64_t seq;
	uint32_t bytes;
	size_t klen;
	uint8_t *key;
} vent;

typedef struct vlist {
	vent *v;
	size_t n, cap;
} vlist;

static int vlist_add(vlist *l, char kind, uint64_t seq, const void *key,
                     size_t klen, uint32_t bytes, uint8_t op)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 256;
		vent *v = realloc(l->v, cap * sizeof *v);
		if (!v)
			return ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	vent *e = &l->v[l->n];
	if (!(e->key = malloc(klen ? klen : 1)))
		return ENOMEM;
	memcpy(e->key, key, klen);
	e->klen = klen;
	e->kind = kind;
	e->seq = seq;
	e->bytes = bytes;
	e->op = op;
	l->n++;
	return 0;
}

/* Keys of the log records step 1 found broken, ascending (the log's
 * order): the records exist, what they say is unknown. */
typedef struct seqlist {
	uint64_t *v;
	size_t n, cap;
} seqlist;

static int seqlist_add(seqlist *l, uint64_t seq)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		uint64_t *v = realloc(l->v, cap * sizeof *v);
		if (!v)
			return ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = seq;
	return 0;
}

static bool seqlist_has(const seqlist *l, uint64_t seq)
{
	size_t lo = 0, hi = l->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (l->v[mid] < seq)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < l->n && l->v[lo] == seq;
}

static void vlist_free(vlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].key);
	free(l->v);
}

/* Orders by kind, key, then seq. */
static int vent_cmp(const void *a, const void *b)
{
	const vent *x = a, *y = b;
	size_t n = x->klen < y->klen ? x->klen : y->klen;
	int d;

	if (x->kind != y->kind)
		return x->kind < y->kind ? -1 : 1;
	if ((d = memcmp(x->key, y->key, n)) != 0)
		return d;
	if (x->klen != y->klen)
		return x->klen < y->klen ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* First entry of (kind, key) in a sorted list, NULL if none. */
static const vent *vlist_find(const vlist *l, char kind, const void *key,
                              size_t klen)
{
	vent probe = {.kind = kind, .key = (uint8_t *)key, .klen = klen};
	size_t lo = 0, hi = l->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (vent_cmp(&l->v[mid], &probe) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < l->n && l->v[lo].kind == kind && l->v[lo].klen == klen &&
	    memcmp(l->v[lo].key, key, klen) == 0)
		return &l->v[lo];
	return NULL;
}

/* Human name of an entry key: a message UUID or "website/object". */
/* A key as verify names it: "<uuid>" or "<uuid>/<object>", the object
 * shown printably (a damaged store may hold any bytes), never cut: an
 * object is at most SHM_MAX_OBJECT bytes. */
#define KEYNAME_MAX (37 + SHM__SHOWN_LONG_MAX)

static const char *keyname(char kind, const uint8_t *key, size_t klen,
                           char *buf, size_t cap)
{
	char u[37], shown[SHM__SHOWN_LONG_MAX];
	shm_uuid id;

	if (klen < 16) {
		snprintf(buf, cap, "(%zu-byte key)", klen);
		return buf;
	}
	memcpy(id.b, key, 16);
	shm_uuid_format(&id, u);
	if (kind == SHM_KIND_MSG && klen == 16)
		snprintf(buf, cap, "%s", u);
	else
		snprintf(buf, cap, "%s/%s", u,
		         shm__shown_long((const char *)key + 16, klen - 16,
		                         shown));
	return buf;
}

static uint64_t be64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static int cursor(vctx *c, MDB_dbi dbi, MDB_cursor **cur)
{
	int rc = mdb_cursor_open(c->txn, dbi, cur);

	return rc ? shm__err_mdb(rc, "verify: open cursor") : 0;
}

static char kind_of_op(uint8_t op)
{
	if (shm_op_is_msg(op))
		return SHM_KIND_MSG;
	if (op == SHM_OP_STATIC_PUT || op == SHM_OP_STATIC_BUST)
		return SHM_KIND_STATIC;
	return 0;
}

/* 1. The log; collects records above flushed that touch L1 entries, and
 * the keys of broken ones. */
static int check_log(vctx *c, uint64_t next_seq, uint64_t flushed,
                     vlist *recs, seqlist *broken)
{
	MDB_cursor *cur;
	MDB_val k, v;
	uint8_t *buf = NULL;
	size_t cap = 0;
	int rc, op = MDB_FIRST;

	if ((rc = cursor(c, c->env->log, &cur)))
		return rc;
	while ((rc = mdb_cursor_get(cur, &k, &v, op)) == 0) {
		shm_log_rec rec;
		uint64_t seq = 0;
		int drc;

		op = MDB_NEXT;
		if (k.mv_size != 8) {
			problem(c, "log: key of %zu byte%s", k.mv_size,
			        shm__plural(k.mv_size));
			continue;
		}
		memcpy(&seq, k.mv_data, 8);
		if (seq >= next_seq)
			problem(c,
			        "log seq %" PRIu64 ": at or above next_seq %" PRIu64,
			        seq, next_seq);
		drc = shm_log_decode(v.mv_data, v.mv_size, &rec, &buf, &cap);
		if (drc == ENOMEM) {
			rc = drc;
			break;
		}
		if (drc || rec.seq != seq) {
			/* decode's text names the record by the seq its header
			 * holds: the key's too, unless they differ */
			if (drc && rec.seq == seq)
				problem(c, "%s", shm_errmsg());
			else if (drc)
				problem(c, "log seq %" PRIu64 ": %s", seq,
				        shm_errmsg());
			else
				problem(c, "log seq %" PRIu64 ": record says seq "
				        "%" PRIu64, seq, rec.seq);
			if ((rc = seqlist_add(broken, seq)))
				break;
			continue;
		}
		char kind = kind_of_op(rec.op);
		if (kind && seq > flushed &&
		    (rc = vlist_add(recs, kind, seq, rec.key, rec.key_len, 0,
		                    rec.op)))
			break;
	}
	mdb_cursor_close(cur);
	free(buf);
	if (rc == MDB_NOTFOUND)
		rc = 0;
	return rc ? shm__err_mdb(rc, "verify: read log") : 0;
}

/* 4. lru keys: well formed, one per entry, pointing at an existing entry. */
static int check_lru(vctx *c, vlist *lru, uint64_t *bytes)
{
	MDB_cursor *cur;
	MDB_val k, v, d;
	int rc, op = MDB_FIRST;
	char name[KEYNAME_MAX];

	*bytes = 0;
	if ((rc = cursor(c, c->env->lru, &cur)))
		return rc;
	while ((rc = mdb_cursor_get(cur, &k, &v, op)) == 0) {
		const uint8_t *p = k.mv_data;
		uint32_t b = 0;

		op = MDB_NEXT;
		if (k.mv_size < 9 + 16) {
			problem(c, "lru: key of %zu byte%s", k.mv_size,
			        shm__plural(k.mv_size));
			continue;
		}
		char kind = (char)p[8];
		MDB_val ek = {k.mv_size - 9, (void *)(p + 9)};
		keyname(kind, ek.mv_data, ek.mv_size, name, sizeof name);
		if (v.mv_size >= 4)
			memcpy(&b, v.mv_data, 4);
		else
			problem(c, "lru %s: value of %zu byte%s", name,
			        v.mv_size, shm__plural(v.mv_size));
		*bytes += b;
		if (kind == SHM_KIND_MSG)
			rc = mdb_get(c->txn, c->env->msg, &ek, &d);
		else if (kind == SHM_KIND_STATIC)
			rc = mdb_get(c->txn, c->env->stat, &ek, &d);
		else {
			problem(c, "lru: unknown kind 0x%02x", (unsigned)p[8]);
			continue;
		}
		if (rc == MDB_NOTFOUND)
			problem(c, "lru %s (seq %" PRIu64 "): no such %s", name,
			        be64(p), kind == SHM_KIND_MSG ? "message" : "static");
		else if (rc)
			break;
		if ((rc = vlist_add(lru, kind, be64(p), ek.mv_data, ek.mv_size, b,
		                    0)))
			break;
	}
	mdb_cursor_close(cur);
	if (rc == MDB_NOTFOUND)
		rc = 0;
	if (rc)
		return shm__err_mdb(rc, "verify: read lru");
	if (lru->n)
		qsort(lru->v, lru->n, sizeof *lru->v, vent_cmp);
	for (size_t i = 1; i < lru->n; i++)
		if (lru->v[i - 1].kind == lru->v[i].kind &&
		    lru->v[i - 1].klen == lru->v[i].klen &&
		    memcmp(lru->v[i - 1].key, lru->v[i].key, lru->v[i].klen) == 0)
			problem(c, "lru %s: several keys (seq %" PRIu64
			           " and %" PRIu64 ")",
			        keyname(lru->v[i].kind, lru->v[i].key,
			                lru->v[i].klen, name, sizeof name),
			        lru->v[i - 1].seq, lru->v[i].seq);
	return 0;
}

/* Whether the room index has the key of message m. */
static int room_has(vctx *c, const shm_msg *m, bool *has)
{
	size_t rl = strlen(m->room_id);
	uint8_t key[SHM_MAX_ROOM + 1 + 8 + 16];
	MDB_val k = {rl + 1 + 8 + 16, key}, d;
	uint64_t t = (uint64_t)m->created_at;
	int rc;

	if (rl > SHM_MAX_ROOM) {
		*has = false;
		return 0;
	}
	memcpy(key, m->room_id, rl);
	key[rl] = 0;
	for (int i = 0; i < 8; i++)
		key[rl + 1 + i] = (uint8_t)(t >> (56 - 8 * i));
	memcpy(key + rl + 1 + 8, m->id.b, 16);
	rc = mdb_get(c->txn, c->env->room, &k, &d);
	*has = rc == 0;
	return rc == MDB_NOTFOUND ? 0 : rc;
}

/* 2. + 4. Messages and their index keys. */
static int check_msgs(vctx *c, const vlist *lru, uint64_t *count)
{
	MDB_cursor *cur;
	MDB_val k, v;
	int rc, op = MDB_FIRST;
	char name[64], room[SHM__SHOWN_MAX];

	*count = 0;
	if ((rc = cursor(c, c->env->msg, &cur)))
		return rc;
	while ((rc = mdb_cursor_get(cur, &k, &v, op)) == 0) {
		shm_msg *m = NULL;
		const vent *e;
		bool has;

		op = MDB_NEXT;
		++*count;
		keyname(SHM_KIND_MSG, k.mv_data, k.mv_size, name, sizeof name);
		if (k.mv_size != 16) {
			problem(c, "message %s: key is not a UUID", name);
			continue;
		}
		e = vlist_find(lru, SHM_KIND_MSG, k.mv_data, 16);
		if (!e)
			problem(c, "message %s: no lru key", name);
		int drc = shm_msg_decode(v.mv_data, v.mv_size, &m);
		if (drc == ENOMEM) {
			rc = drc;
			break;
		}
		if (drc) {
			problem(c, "message %s: value does not decode: %s", name,
			        shm_errmsg());
			continue;
		}
		if (memcmp(m->id.b, k.mv_data, 16) != 0)
			problem(c, "message %s: value holds another id", name);
		if (shm__msg_validate(&c->any_size, m) != 0)
			problem(c, "message %s: %s", name, shm_errmsg());
		uint64_t h = XXH3_64bits(m->content, m->content_len);
		if (h != m->content_hash)
			problem(c,
			        "message %s: content_hash %016" PRIx64
			        " but its content hashes to %016" PRIx64,
			        name, m->content_hash, h);
		uint64_t vseq = shm__msg_enc_seq(v.mv_data, v.mv_size);
		if (e && vseq != 0 && vseq != e->seq)
			problem(c,
			        "message %s: value seq %" PRIu64
			        " but lru seq %" PRIu64,
			        name, vseq, e->seq);
		if ((rc = room_has(c, m, &has))) {
			free(m);
			break;
		}
		if (!has)
			problem(c, "message %s: no room index key (room '%s')",
			        name, shm__shown_str(m->room_id, room));
		free(m);
	}
	mdb_cursor_close(cur);
	if (rc == MDB_NOTFOUND)
		rc = 0;
	if (rc == ENOMEM)
		return shm__err(rc, "verify: messages");
	return rc ? shm__err_mdb(rc, "verify: read messages") : 0;
}

/* 2. Room index keys point at messages of that room and time. */
static int check_room(vctx *c)
{
	MDB_cursor *cur;
	MDB_val k, v, d;
	int rc, op = MDB_FIRST;
	char name[64], room[SHM__SHOWN_MAX], its_room[SHM__SHOWN_MAX];

	if ((rc = cursor(c, c->env->room, &cur)))
		return rc;
	while ((rc = mdb_cursor_get(cur, &k, &v, op)) == 0) {
		const uint8_t *p = k.mv_data;
		const uint8_t *z = memchr(p, 0, k.mv_size);
		shm_msg *m = NULL;

		op = MDB_NEXT;
		if (!z || k.mv_size - (size_t)(z - p) != 1 + 8 + 16) {
			problem(c, "room index: malformed key of %zu byte%s",
			        k.mv_size, shm__plural(k.mv_size));
			continue;
		}
		size_t rl = (size_t)(z - p);
		int64_t t = (int64_t)be64(z + 1);
		MDB_val id = {16, (void *)(z + 9)};
		keyname(SHM_KIND_MSG, id.mv_data, 16, name, sizeof name);
		rc = mdb_get(c->txn, c->env->msg, &id, &d);
		if (rc == MDB_NOTFOUND) {
			problem(c, "room index '%s': message %s absent",
			        shm__shown((const char *)p, rl, room), name);
			continue;
		}
		if (rc)
			break;
		if (shm_msg_decode(d.mv_data, d.mv_size, &m) != 0)
			continue; /* reported by check_msgs */
		if (strlen(m->room_id) != rl || memcmp(m->room_id, p, rl) != 0 ||
		    m->created_at != t)
			problem(c,
			        "room index '%s': message %s is in room '%s' "
			        "at %" PRId64 ", index says %" PRId64,
			        shm__shown((const char *)p, rl, room), name,
			        shm__shown_str(m->room_id, its_room), m->created_at,
			        t);
		free(m);
	}
	mdb_cursor_close(cur);
	if (rc == MDB_NOTFOUND)
		rc = 0;
	return rc ? shm__err_mdb(rc, "verify: read room index") : 0;
}

/* A static's SHAs are its content's. */
static void check_shas(vctx *c, const char *name, const shm_static *s)
{
	char hex[65];

	shm_sha_hex(SHM_SHA1_GIT, s->content, s->content_len, hex);
	if (strcmp(hex, s->sha1) != 0)
		problem(c, "static %s: sha1 %s but its content hashes to %s",
		        name, s->sha1, hex);
	shm_sha_hex(SHM_SHA256, s->content, s->content_len, hex);
	if (strcmp(hex, s->sha256) != 0)
		problem(c, "static %s: sha256 %s but its content hashes to %s",
		        name, s->sha256, hex);
}

/* 3. + 4. Statics. */
static int check_statics(vctx *c, const vlist *lru, uint64_t *count)
{
	MDB_cursor *cur;
	MDB_val k, v;
	int rc, op = MDB_FIRST;
	char name[KEYNAME_MAX];

	*count = 0;
	if ((rc = cursor(c, c->env->stat, &cur)))
		return rc;
	while ((rc = mdb_cursor_get(cur, &k, &v, op)) == 0) {
		shm_static *s = NULL;

		op = MDB_NEXT;
		++*count;
		keyname(SHM_KIND_STATIC, k.mv_data, k.mv_size, name, sizeof name);
		const vent *e =
			vlist_find(lru, SHM_KIND_STATIC, k.mv_data, k.mv_size);
		if (!e)
			problem(c, "static %s: no lru key", name);
		/* The value is u64 seq (LE) + the static encoding (static.c). */
		if (v.mv_size < 8) {
			problem(c, "static %s: value of %zu byte%s", name,
			        v.mv_size, shm__plural(v.mv_size));
			continue;
		}
		uint64_t vseq = 0;
		for (int i = 7; i >= 0; i--)
			vseq = vseq << 8 | ((const uint8_t *)v.mv_data)[i];
		if (e && vseq != 0 && vseq != e->seq)
			problem(c,
			        "static %s: value seq %" PRIu64
			        " but lru seq %" PRIu64,
			        name, vseq, e->seq);
		int drc = shm_static_decode((const uint8_t *)v.mv_data + 8,
		                            v.mv_size - 8, &s);
		if (drc == ENOMEM) {
			rc = drc;
			break;
		}
		if (drc)
			problem(c, "static %s: value does not decode: %s", name,
			        shm_errmsg());
		else
			check_shas(c, name, s);
		shm_static_free(s);
	}
	mdb_cursor_close(cur);
	if (rc == MDB_NOTFOUND)
		rc = 0;
	if (rc == ENOMEM)
		return shm__err(rc, "verify: statics");
	return rc ? shm__err_mdb(rc, "verify: read statics") : 0;
}

/* 5. Log vs data. recs is sorted by (kind, key, seq). */
static void check_log_vs_data(vctx *c, const vlist *recs, const vlist *lru,
                              const seqlist *broken, uint64_t flushed)
{
	char name[KEYNAME_MAX];

	/* Entries above flushed have their record (a broken one is said). */
	for (size_t i = 0; i < lru->n; i++) {
		const vent *e = &lru->v[i];
		if (e->seq <= flushed || seqlist_has(broken, e->seq))
			continue;
		bool found = false;
		for (const vent *r = vlist_find(recs, e->kind, e->key, e->klen);
		     r && r < recs->v + recs->n && r->kind == e->kind &&
		     r->klen == e->klen && memcmp(r->key, e->key, e->klen) == 0;
		     r++)
			if (r->seq == e->seq)
				found = true;
		if (!found)
			problem(c,
			        "%s %s: unflushed (seq %" PRIu64 " > flushed %" PRIu64
			        ") but no such log record for it",
			        e->kind == SHM_KIND_MSG ? "message" : "static",
			        keyname(e->kind, e->key, e->klen, name, sizeof name),
			        e->seq, flushed);
	}
	/* Records above flushed have their data. */
	for (size_t i = 0; i < recs->n; i++) {
		const vent *r = &recs->v[i];
		bool last = i + 1 == recs->n || recs->v[i + 1].kind != r->kind ||
		            recs->v[i + 1].klen != r->klen ||
		            memcmp(recs->v[i + 1].key, r->key, r->klen) != 0;
		const vent *e = vlist_find(lru, r->kind, r->key, r->klen);
		keyname(r->kind, r->key, r->klen, name, sizeof name);
		if (r->kind == SHM_KIND_MSG) {
			if (!e)
				problem(c,
				        "log seq %" PRIu64 " (%s %s): unflushed but "
				        "the message is not in L1",
				        r->seq, shm_op_name(r->op), name);
			else if (e->seq < r->seq)
				problem(c,
				        "log seq %" PRIu64 " (%s %s): message is at "
				        "older seq %" PRIu64,
				        r->seq, shm_op_name(r->op), name, e->seq);
		} else if (last && r->op == SHM_OP_STATIC_PUT) {
			if (!e)
				problem(c,
				        "log seq %" PRIu64 " (static_put %s): "
				        "unflushed but the static is not in L1",
				        r->seq, name);
			else if (e->seq != r->seq)
				problem(c,
				        "log seq %" PRIu64 " (static_put %s): "
				        "static is at seq %" PRIu64,
				        r->seq, name, e->seq);
		}
	}
}

/* 6. Every dep edge has its ref edge and back. */
static int check_edges(vctx *c, MDB_dbi from, MDB_dbi to, const char *what)
{
	MDB_cursor *cur, *other;
	MDB_val k, v;
	int rc, op = MDB_FIRST;
	uint8_t key[SHM_OBJKEY_MAX];
	char name[KEYNAME_MAX], shown[SHM__SHOWN_LONG_MAX];

	if ((rc = cursor(c, from, &cur)))
		return rc;
	if ((rc = cursor(c, to, &other))) {
		mdb_cursor_close(cur);
		return rc;
	}
	while ((rc = mdb_cursor_get(cur, &k, &v, op)) == 0) {
		op = MDB_NEXT;
		if (k.mv_size < 16 || v.mv_size > SHM_OBJKEY_MAX - 16) {
			problem(c, "%s: malformed edge", what);
			continue;
		}
		memcpy(key, k.mv_data, 16);
		memcpy(key + 16, v.mv_data, v.mv_size);
		MDB_val ok = {16 + v.mv_size, key};
		MDB_val ov = {k.mv_size - 16, (uint8_t *)k.mv_data + 16};
		int r2 = mdb_cursor_get(other, &ok, &ov, MDB_GET_BOTH);
		if (r2 == MDB_NOTFOUND)
			problem(c, "graph: %s edge %s -> %s has no reverse edge",
			        what,
			        keyname(0, k.mv_data, k.mv_size, name, sizeof name),
			        shm__shown_long(v.mv_data, v.mv_size, shown));
		else if (r2) {
			rc = r2;
			break;
		}
	}
	mdb_cursor_close(other);
	mdb_cursor_close(cur);
	if (rc == MDB_NOTFOUND)
		rc = 0;
	return rc ? shm__err_mdb(rc, "verify: read graph") : 0;
}

/* 7. Every dead letter decodes. */
static int check_dead(vctx *c)
{
	MDB_cursor *cur;
	MDB_val k, v;
	int rc, op = MDB_FIRST;

	if ((rc = cursor(c, c->env->dead, &cur)))
		return rc;
	while ((rc = mdb_cursor_get(cur, &k, &v, op)) == 0) {
		shm_dead d;

		op = MDB_NEXT;
		if (shm__dead_decode(&k, &v, &d))
			problem(c, "%s", shm_errmsg()); /* names its seq */
	}
	mdb_cursor_close(cur);
	if (rc == MDB_NOTFOUND)
		rc = 0;
	return rc ? shm__err_mdb(rc, "verify: read dead letters") : 0;
}

/* What to do about an entry of each database of step 8. */
static const char *upper_remedy(const vctx *c, MDB_dbi dbi)
{
	if (dbi == c->env->stat)
		return "no reader gets it: it ages out of L1, or run 'shmctl "
		       "upgrade'";
	if (dbi == c->env->mark)
		return "the flusher mirrors its log record in lower case: run "
		       "'shmctl upgrade' to drop it";
	return "libshm no longer walks it, declared again or not: run "
	       "'shmctl upgrade'";
}

/* 8. Keys (and dep's objects) of dbi in canonical form. */
static int check_canon(vctx *c, MDB_dbi dbi, const char *what)
{
	MDB_cursor *cur;
	MDB_val k, v;
	int rc, op = MDB_FIRST;
	char name[KEYNAME_MAX], canon[SHM_MAX_OBJECT + 1],
		dcanon[SHM_MAX_OBJECT + 1], shown[SHM__SHOWN_LONG_MAX],
		dshown[SHM__SHOWN_LONG_MAX], dcshown[SHM__SHOWN_LONG_MAX];

	if ((rc = cursor(c, dbi, &cur)))
		return rc;
	while ((rc = mdb_cursor_get(cur, &k, &v, op)) == 0) {
		op = MDB_NEXT;
		if (k.mv_size < 16)
			continue; /* steps 3 and 6 say it */
		bool key_up = shm__object_canon_of(
			(const uint8_t *)k.mv_data + 16, k.mv_size - 16, canon);
		bool dep_up = dbi == c->env->dep &&
		              shm__object_canon_of(v.mv_data, v.mv_size, dcanon);
		if (!key_up && !dep_up)
			continue;
		keyname(0, k.mv_data, k.mv_size, name, sizeof name);
		const char *obj = key_up ? shm__shown_long(canon, strlen(canon),
		                                           shown)
		                         : name + 37; /* after "<website>/" */
		if (dbi != c->env->dep) {
			problem(c, "%s %s: a UUID ID in upper case, as an older "
			        "libshm stored it; libshm keys this object %s: "
			        "%s", what, name, obj, upper_remedy(c, dbi));
			continue;
		}
		const char *dep = shm__shown_long(v.mv_data, v.mv_size, dshown);
		problem(c, "%s %s -> %s: a UUID ID in upper case, as an older "
		        "libshm stored it; libshm keys this edge %s -> %s: %s",
		        what, name, dep, obj,
		        dep_up ? shm__shown_long(dcanon, strlen(dcanon), dcshown)
		               : dep,
		        upper_remedy(c, dbi));
	}
	mdb_cursor_close(cur);
	if (rc == MDB_NOTFOUND)
		rc = 0;
	return rc ? shm__err_mdb(rc, "verify: read object keys") : 0;
}

/* Every check, in c->txn's snapshot. */
static int check_snapshot(vctx *c)
{
	shm_env *env = c->env;
	vlist recs = {0}, lru = {0};
	seqlist broken = {0};
	uint64_t next_seq = 0, flushed = 0, entries = 0, bytes = 0;
	uint64_t lru_bytes = 0, n_msgs = 0, n_statics = 0;
	int rc;

	if ((rc = shm__meta_get(c->txn, env, "next_seq", &next_seq)) ||
	    (rc = shm__meta_get(c->txn, env, "flushed", &flushed)) ||
	    (rc = shm__meta_get(c->txn, env, "entries", &entries)) ||
	    (rc = shm__meta_get(c->txn, env, "bytes", &bytes)))
		goto out;
	if (flushed >= next_seq && next_seq > 0 && flushed > 0)
		problem(c,
		        "meta: flushed %" PRIu64 " at or above next_seq %" PRIu64,
		        flushed, next_seq);
	if ((rc = check_log(c, next_seq, flushed, &recs, &broken)) ||
	    (rc = check_lru(c, &lru, &lru_bytes)) ||
	    (rc = check_msgs(c, &lru, &n_msgs)) || (rc = check_room(c)) ||
	    (rc = check_statics(c, &lru, &n_statics)))
		goto out;
	if (entries != lru.n)
		problem(c, "meta: entries %" PRIu64 " but %zu lru keys", entries,
		        lru.n);
	if (n_msgs + n_statics != lru.n)
		problem(c,
		        "L1: %" PRIu64 " messages + %" PRIu64
		        " statics but %zu lru keys",
		        n_msgs, n_statics, lru.n);
	if (bytes != lru_bytes)
		problem(c, "meta: bytes %" PRIu64 " but lru entries sum to %" PRIu64,
		        bytes, lru_bytes);
	if (recs.n)
		qsort(recs.v, recs.n, sizeof *recs.v, vent_cmp);
	check_log_vs_data(c, &recs, &lru, &broken, flushed);
	if ((rc = check_edges(c, env->dep, env->ref, "dependency")) == 0 &&
	    (rc = check_edges(c, env->ref, env->dep, "reference")) == 0 &&
	    (rc = check_dead(c)) == 0 &&
	    (rc = check_canon(c, env->obj, "graph: object")) == 0 &&
	    (rc = check_canon(c, env->dep, "graph: edge")) == 0 &&
	    (rc = check_canon(c, env->stat, "static")) == 0)
		rc = check_canon(c, env->mark, "mark");
out:
	vlist_free(&recs);
	vlist_free(&lru);
	free(broken.v);
	return rc;
}

int shm_verify(shm_env *env, void (*report)(const char *problem, void *user),
               void *user, size_t *problems)
{
	vctx c = {.env = env};
	int rc;

	if (problems)
		*problems = 0;
	if (!env)
		return shm__null(__func__, "env");
	c.any_size = env->opt;
	c.any_size.max_content = UINT32_MAX;
	if (report && !(c.kept = calloc(SHM_VERIFY_REPORT_MAX, sizeof *c.kept)))
		return shm__err(ENOMEM, "shm_verify: problem list");
	if ((rc = shm__rtxn_get(env, &c.txn)) == 0) {
		rc = check_snapshot(&c);
		shm__rtxn_put(env, c.txn); /* reset: the snapshot is released */
	}
	if (rc == 0 && c.oom)
		rc = shm__err(ENOMEM, "shm_verify: keeping the text of "
		              "problem %zu", c.n_kept + 1);
	for (size_t i = 0; i < c.n_kept; i++) {
		report(c.kept[i], user);
		free(c.kept[i]);
	}
	free(c.kept);
	if (problems && !rc)
		*problems = c.problems;
	return rc;
}
