/*
 * libshm/dead.c - dead letters: log records a sink rejected for good.
 *
 * The flusher sets a poison record aside here and moves on; the record stays
 * inspectable (shmctl log --dead) after the log itself is trimmed, until an
 * operator drops it (shmctl dead drop).
 *
 * Dead letter encoding, version 1, the value of key seq (MDB_INTEGERKEY,
 * uint64) in the "dead" database; little-endian:
 *
 *   0       1       2               4                               8
 *   +-------+-------+---------------+-------------------------------+
 *   |  ver  |   0   |  reason_len   |     raw_size (record bytes)   |
 *   +-------+-------+---------------+-------------------------------+
 *   |          time (int64 us, UTC): when it was set aside          |  8
 *   +---------------------------------------------------------------+
 *   |          sink (16 bytes, NUL-padded: "redis", "pg", "pg,redis")| 16
 *   +---------------------------------------------------------------+
 *   |  reason (reason_len bytes, UTF-8)  | raw (the stored record)  | 32
 *   +---------------------------------------------------------------+
 *
 * A letter that is not so (its 0 byte, sink names, UTF-8 reason without
 * NUL, lengths) does not decode: damage is named, never printed raw.
 *
 * Invariants
 *  1. One dead letter per seq. When a second sink rejects a record already
 *     set aside, its name joins the sink field (sorted, comma-separated,
 *     whole: a name that does not fit is refused, never cut) and the
 *     first reason is kept with the second appended; adding the same
 *     (seq, sink) again changes nothing, so a flusher killed after adding
 *     and before moving its cursor may add it again harmlessly.
 *  2. raw is the record exactly as it was stored (possibly corrupt): it is
 *     never decoded here.
 *  3. A letter that does not decode is never passed over in silence. A
 *     sink setting aside the record of its seq replaces it (the record
 *     comes from the log again: a sink adds it before it moves past it;
 *     the old letter's sinks and reason are lost with its bytes), and the
 *     new reason begins with what was wrong with it ("replaced a letter
 *     that did not decode: bad header ...; pg: ..."), so shmctl log --dead
 *     still shows it. A scan by seq range (shm__dead_of_sink) goes past
 *     it, as shm_dead_walk does, and counts it for its caller to say.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define DEAD_VERSION 1
#define DEAD_HEADER 32
#define DEAD_REASON_MAX 239

struct dead_add {
	uint64_t seq;
	const uint8_t *raw;
	uint32_t raw_size;
	char sink[16];
	char reason[DEAD_REASON_MAX + 1];
};

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* Cuts a UTF-8 sequence that truncation left incomplete at the end. */
static void utf8_cut(char *s)
{
	size_t n = strlen(s), i = n;

	while (i > 0 && ((unsigned char)s[i - 1] & 0xC0) == 0x80)
		i--;
	if (i > 0) {
		unsigned char c = (unsigned char)s[i - 1];
		size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
		if (n - (i - 1) < need)
			s[i - 1] = 0;
	}
}

/* The reason as the format has it, UTF-8: a byte of no valid sequence
 * (a server's text in another encoding) becomes '?'. */
static void utf8_fix(char *s)
{
	size_t n = strlen(s), i = 0;

	while ((i += shm__utf8_bad(s + i, n - i)) < n)
		s[i++] = '?';
}

/* A sink is a name: 1..15 printable ASCII characters, no comma (the
 * separator of the sink field). */
static bool sink_ok(const char *sink)
{
	size_t n = strlen(sink);

	if (n == 0 || n > 15)
		return false;
	for (size_t i = 0; i < n; i++)
		if (sink[i] <= ' ' || sink[i] > '~' || sink[i] == ',')
			return false;
	return true;
}

/* The sink field f (16 bytes) as shm_dead_add writes it: sink_ok names
 * joined by commas, then NUL bytes to its end. */
static bool sink_field_ok(const uint8_t *f)
{
	size_t n = strnlen((const char *)f, 16), from = 0;

	if (n == 0 || n == 16)
		return false;
	for (size_t i = n; i < 16; i++)
		if (f[i])
			return false;
	for (size_t i = 0; i <= n; i++) {
		if (i < n && f[i] != ',') {
			if (f[i] <= ' ' || f[i] > '~')
				return false;
		} else if (i == from) {
			return false; /* an empty name */
		} else {
			from = i + 1;
		}
	}
	return true;
}

int shm__dead_decode(const MDB_val *k, const MDB_val *v, shm_dead *d)
{
	const uint8_t *p = v->mv_data;
	uint16_t rl;
	uint32_t raw;

	uint64_t seq = 0;

	if (k->mv_size != 8)
		return shm__err(SHM_ECORRUPT, "dead letter: key of %zu byte%s, "
		                "not a seq", k->mv_size,
		                shm__plural(k->mv_size));
	memcpy(&seq, k->mv_data, 8);
	if (v->mv_size < DEAD_HEADER || p[0] != DEAD_VERSION)
		return shm__err(SHM_ECORRUPT, "dead letter %" PRIu64 ": bad header "
		                "of %zu byte%s, version %d", seq, v->mv_size,
		                shm__plural(v->mv_size),
		                v->mv_size ? p[0] : -1);
	rl = get16(p + 2);
	raw = get32(p + 4);
	if ((size_t)DEAD_HEADER + rl + raw != v->mv_size || rl > DEAD_REASON_MAX)
		return shm__err(SHM_ECORRUPT, "dead letter %" PRIu64 ": bad "
		                "lengths", seq);
	/* what shm_dead_add writes, and readers print: no byte of it raw */
	if (p[1] != 0)
		return shm__err(SHM_ECORRUPT, "dead letter %" PRIu64 ": bad "
		                "header: byte 1 is 0x%02x, not 0", seq, p[1]);
	if (!sink_field_ok(p + 16))
		return shm__err(SHM_ECORRUPT, "dead letter %" PRIu64 ": bad "
		                "sink field: not sink names joined by commas",
		                seq);
	if (memchr(p + DEAD_HEADER, 0, rl) ||
	    shm__utf8_bad((const char *)p + DEAD_HEADER, rl) != rl)
		return shm__err(SHM_ECORRUPT, "dead letter %" PRIu64 ": reason "
		                "not UTF-8 without NUL", seq);
	memset(d, 0, sizeof *d);
	d->seq = seq;
	d->time = (int64_t)get64(p + 8);
	memcpy(d->sink, p + 16, 16);
	d->sink[15] = 0;
	memcpy(d->reason, p + DEAD_HEADER, rl);
	d->reason[rl] = 0;
	d->raw = p + DEAD_HEADER + rl;
	d->raw_size = raw;
	return 0;
}

/* Whether the comma-separated list names sink. */
static bool has_sink(const char *list, const char *sink)
{
	size_t n = strlen(sink), len;

	for (const char *p = list; *p; p += len + (p[len] == ',')) {
		len = strcspn(p, ",");
		if (len == n && memcmp(p, sink, n) == 0)
			return true;
	}
	return false;
}

/* Appends name (len bytes) to the list in out (the sink field), after a
 * comma if it names one already; false if it does not fit. */
static bool append_name(char out[16], const char *name, size_t len)
{
	size_t n = strlen(out), sep = n > 0;

	if (n + sep + len > 15)
		return false;
	if (sep)
		out[n] = ',';
	memcpy(out + n + sep, name, len);
	out[n + sep + len] = 0;
	return true;
}

/* list (sorted, comma-separated) with sink, which it lacks, in its place,
 * into out; SHM_EINVAL if they do not fit the 15 characters of the sink
 * field (a name is never cut: invariant 1 compares whole names). */
static int add_sink(char out[16], const char *list, const char *sink,
                    uint64_t seq)
{
	size_t sl = strlen(sink), len;
	bool placed = false, fits = true;

	out[0] = 0;
	for (const char *p = list; *p && fits; p += len + (p[len] == ',')) {
		len = strcspn(p, ",");
		/* sink goes before the first name that sorts after it (sink
		 * is not one of them: a prefix of it sorts before) */
		if (!placed && strncmp(p, sink, len) > 0) {
			fits = append_name(out, sink, sl);
			placed = true;
		}
		fits = fits && append_name(out, p, len);
	}
	if (fits && !placed)
		fits = append_name(out, sink, sl);
	if (fits)
		return 0;
	return shm__err(SHM_EINVAL, "dead letter %llu: sink '%s' does not fit "
	                "beside '%s' in the sink field of 15 characters",
	                (unsigned long long)seq, sink, list);
}

static int dead_add_body(shm__wtxn *w, void *ctx)
{
	struct dead_add *c = ctx;
	shm_env *env = w->env;
	MDB_val k = {8, &c->seq}, v;
	const uint8_t *raw = c->raw;
	uint32_t raw_size = c->raw_size;
	char sink[16], reason[DEAD_REASON_MAX + 1];
	uint8_t *buf;
	size_t rl;
	int rc;

	snprintf(sink, sizeof sink, "%s", c->sink);
	snprintf(reason, sizeof reason, "%s", c->reason);
	rc = mdb_get(w->txn, env->dead, &k, &v);
	if (rc == 0) {
		shm_dead old;
		char merged[3 * sizeof reason]; /* a cause, a name, 2 reasons */
		if (shm__dead_decode(&k, &v, &old) == 0) {
			if (has_sink(old.sink, c->sink))
				return 0; /* this sink already set it aside */
			if ((rc = add_sink(sink, old.sink, c->sink, c->seq)))
				return rc;
			snprintf(merged, sizeof merged, "%s; %s: %s", old.reason,
			         c->sink, c->reason);
			if (old.raw_size && !raw_size) {
				raw = old.raw;
				raw_size = old.raw_size;
			}
		} else { /* invariant 3 */
			char why[sizeof reason];
			shm__errcause(SHM_ECORRUPT, why, sizeof why);
			const char *what = strstr(why, ": ");
			snprintf(merged, sizeof merged, "replaced a letter that "
			         "did not decode: %s; %s: %s",
			         what ? what + 2 : why, c->sink, c->reason);
		}
		size_t ml = strlen(merged);
		if (ml > DEAD_REASON_MAX)
			ml = DEAD_REASON_MAX;
		memcpy(reason, merged, ml);
		reason[ml] = 0;
		utf8_cut(reason);
	} else if (rc != MDB_NOTFOUND) {
		return shm__err_mdb(rc, "dead letter read");
	}
	utf8_fix(reason);
	rl = strlen(reason);
	if (!(buf = malloc(DEAD_HEADER + rl + raw_size)))
		return shm__err(ENOMEM, "dead letter: out of memory");
	memset(buf, 0, DEAD_HEADER);
	buf[0] = DEAD_VERSION;
	put16(buf + 2, (uint16_t)rl);
	put32(buf + 4, raw_size);
	put64(buf + 8, (uint64_t)w->now);
	memcpy(buf + 16, sink, strlen(sink));
	memcpy(buf + DEAD_HEADER, reason, rl);
	if (raw_size)
		memcpy(buf + DEAD_HEADER + rl, raw, raw_size);
	v.mv_size = DEAD_HEADER + rl + raw_size;
	v.mv_data = buf;
	rc = mdb_put(w->txn, env->dead, &k, &v, 0);
	free(buf);
	return rc ? shm__err_mdb(rc, "dead letter write") : 0;
}

int shm_dead_add(shm_env *env, const shm_log_rec *rec, const char *sink,
                 const char *reason)
{
	struct dead_add c;

	if (!env)
		return shm__null(__func__, "env");
	if (!rec)
		return shm__null(__func__, "rec");
	if (!sink)
		return shm__null(__func__, "sink");
	if (!reason)
		return shm__null(__func__, "reason");
	if (!rec->seq || !sink_ok(sink))
		return shm__err(SHM_EINVAL, "shm_dead_add: need a record with "
		                "a seq and a sink name of 1..15 printable ASCII "
		                "characters, no space or comma");
	if (env->opt.read_only)
		return shm__err(SHM_EREADONLY, "shm_dead_add: read-only");
	memset(&c, 0, sizeof c);
	c.seq = rec->seq;
	c.raw = rec->raw;
	c.raw_size = rec->raw ? rec->raw_size : 0;
	snprintf(c.sink, sizeof c.sink, "%s", sink);
	snprintf(c.reason, sizeof c.reason, "%s", reason ? reason : "");
	utf8_cut(c.reason);
	return shm__write(env, dead_add_body, &c);
}

struct dead_drop {
	const uint64_t *seqs;
	size_t n;
};

static int dead_drop_body(shm__wtxn *w, void *ctx)
{
	struct dead_drop *c = ctx;

	for (size_t i = 0; i < c->n; i++) {
		uint64_t seq = c->seqs[i];
		MDB_val k = {8, &seq};
		int rc = mdb_del(w->txn, w->env->dead, &k, NULL);
		if (rc == MDB_NOTFOUND)
			return shm__err(SHM_ENOTFOUND, "dead letter %" PRIu64
			                ": there is none (shmctl log --dead lists "
			                "them)", seq);
		if (rc)
			return shm__err_mdb(rc, "dead letter drop");
	}
	return 0;
}

int shm_dead_drop(shm_env *env, const uint64_t *seqs, size_t n)
{
	struct dead_drop c = {seqs, n};

	if (!env)
		return shm__null(__func__, "env");
	if (!seqs && n)
		return shm__null(__func__, "seqs");
	if (env->opt.read_only)
		return shm__err(SHM_EREADONLY, "shm_dead_drop: read-only");
	return shm__write(env, dead_drop_body, &c);
}

int shm__dead_of_sink(shm_env *env, uint64_t first, uint64_t last,
                      const char *sink, shm_dead *out, uint64_t bad[2])
{
	MDB_txn *txn;
	MDB_cursor *cur = NULL;
	MDB_val k = {8, &first}, v;
	bool found = false;
	int rc, op = MDB_SET_RANGE;

	bad[0] = bad[1] = 0;
	if ((rc = shm__rtxn_get(env, &txn)))
		return rc;
	if ((rc = mdb_cursor_open(txn, env->dead, &cur))) {
		rc = shm__err_mdb(rc, "dead letters: cursor");
		goto out;
	}
	/* the whole range: a letter past the first match may not decode */
	for (; (rc = mdb_cursor_get(cur, &k, &v, op)) == 0; op = MDB_NEXT) {
		shm_dead d;
		uint64_t seq = 0;
		if (k.mv_size == 8)
			memcpy(&seq, k.mv_data, 8);
		if (seq > last)
			break;
		if (shm__dead_decode(&k, &v, &d)) { /* invariant 3 */
			if (bad[0]++ == 0)
				bad[1] = seq;
		} else if (!found && has_sink(d.sink, sink)) {
			*out = d;
			found = true;
		}
	}
	if (rc && rc != MDB_NOTFOUND)
		rc = shm__err_mdb(rc, "dead letters");
	else
		rc = found ? 0 : SHM_ENOTFOUND;
out:
	if (cur)
		mdb_cursor_close(cur);
	shm__rtxn_put(env, txn);
	return rc;
}

int shm_dead_walk(shm_env *env, int (*fn)(const shm_dead *d, void *user),
                  int (*bad)(uint64_t seq, const char *why, void *user),
                  void *user)
{
	MDB_txn *txn = NULL;
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	int rc, op = MDB_FIRST;

	if (!env)
		return shm__null(__func__, "env");
	if (!fn)
		return shm__null(__func__, "fn");
	if ((rc = shm__rtxn_get(env, &txn)))
		return rc;
	if ((rc = mdb_cursor_open(txn, env->dead, &cur))) {
		rc = shm__err_mdb(rc, "dead letters: cursor");
		goto out;
	}
	while ((rc = mdb_cursor_get(cur, &k, &v, op)) == 0) {
		shm_dead d;
		uint64_t seq = 0;
		char why[512];
		op = MDB_NEXT;
		if ((rc = shm__dead_decode(&k, &v, &d)) == 0) {
			if (fn(&d, user))
				break;
			continue;
		}
		if (!bad)
			goto out;
		if (k.mv_size == 8)
			memcpy(&seq, k.mv_data, 8);
		/* a copy: bad may call libshm, which rewrites shm_errmsg() */
		snprintf(why, sizeof why, "%s", shm_errmsg());
		rc = 0;
		if (bad(seq, why, user))
			break;
	}
	rc = rc == MDB_NOTFOUND ? 0 : rc ? shm__err_mdb(rc, "dead letters") : 0;
out:
	if (cur)
		mdb_cursor_close(cur);
	shm__rtxn_put(env, txn);
	return rc;
}

int shm_dead_each(shm_env *env, int (*fn)(const shm_dead *d, void *user),
                  void *user)
{
	if (!env)
		return shm__null(__func__, "env");
	if (!fn)
		return shm__null(__func__, "fn");
	return shm_dead_walk(env, fn, NULL, user);
}
