/* libshm/codec.c - message value encoding and decoding (see codec.h),
 * and the validation of messages before they are encoded. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"

struct shm__arena_chunk {
	struct shm__arena_chunk *next;
	size_t used, cap;
	max_align_t data[];
};

void *shm__arena_alloc(shm__arena *a, size_t n)
{
	struct shm__arena_chunk *c = a->head;

	n = (n + 15) & ~(size_t)15;
	if (!c || c->cap - c->used < n) {
		size_t cap = n > 8192 ? n : 8192;
		c = malloc(sizeof *c + cap);
		if (!c)
			return NULL;
		c->next = a->head;
		c->used = 0;
		c->cap = cap;
		a->head = c;
	}
	void *p = (char *)c->data + c->used;
	c->used += n;
	return p;
}

void shm__arena_reset(shm__arena *a)
{
	while (a->head && a->head->next) {
		struct shm__arena_chunk *n = a->head->next;
		free(a->head);
		a->head = n;
	}
	if (a->head)
		a->head->used = 0;
}

void shm__arena_free(shm__arena *a)
{
	while (a->head) {
		struct shm__arena_chunk *n = a->head->next;
		free(a->head);
		a->head = n;
	}
}

static size_t str_size(const char *s)
{
	return 4 + (s ? strlen(s) : 0) + 1;
}

size_t shm__msg_enc_size(const shm_msg *m)
{
	size_t n = SHM_MSG_FIXED + str_size(m->room_id) + str_size(m->username) +
	           4 + m->content_len + 1;
	n += 4 + 4 * (size_t)m->n_mentions;
	n += 4;
	for (uint32_t i = 0; i < m->n_attachments; i++) {
		const shm_attachment *a = &m->attachments[i];
		n += 16 + 8 + str_size(a->filename) + str_size(a->content_type) +
		     str_size(a->url);
	}
	n += 4;
	for (uint32_t i = 0; i < m->n_reactions; i++)
		n += str_size(m->reactions[i].emoji) + 4 +
		     4 * (size_t)m->reactions[i].n_users;
	return n;
}

static uint8_t *w32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); return p + 4; }
static uint8_t *w64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); return p + 8; }

static uint8_t *wbytes(uint8_t *p, const char *s, size_t len)
{
	p = w32(p, (uint32_t)len);
	if (len)
		memcpy(p, s, len);
	p[len] = 0;
	return p + len + 1;
}

static uint8_t *wstr(uint8_t *p, const char *s)
{
	return wbytes(p, s ? s : "", s ? strlen(s) : 0);
}

static const char *emoji_of(const shm_reaction *r)
{
	return r->emoji ? r->emoji : "";
}

static int cmp_emoji(const void *a, const void *b)
{
	return strcmp(emoji_of(*(const shm_reaction *const *)a),
	              emoji_of(*(const shm_reaction *const *)b));
}

/* Sorts ord, n reactions, by emoji: shm__order's dup. */
static uint32_t sort_reactions(const shm_reaction **ord, uint32_t n)
{
	uint32_t i;

	for (i = 1; i < n && cmp_emoji(&ord[i - 1], &ord[i]) < 0; i++)
		;
	if (i >= n)
		return 0; /* strictly increasing: sorted, no emoji twice */
	qsort(ord, n, sizeof *ord, cmp_emoji);
	for (i = 1; i < n; i++)
		if (cmp_emoji(&ord[i - 1], &ord[i]) == 0)
			return i;
	return 0;
}

int shm__order_make(const shm_msg *m, shm__order *o)
{
	uint32_t n = m->n_reactions;

	o->r = o->small;
	if (n > SHM_ORDER_SMALL && !(o->r = malloc(n * sizeof *o->r)))
		return ENOMEM;
	for (uint32_t i = 0; i < n; i++)
		o->r[i] = &m->reactions[i];
	o->dup = sort_reactions(o->r, n);
	return 0;
}

void shm__order_free(shm__order *o)
{
	if (o->r != o->small)
		free(o->r);
}

void shm__msg_encode(const shm_msg *m, const shm_reaction *const *ord,
                     uint64_t seq, uint8_t *buf)
{
	uint8_t *p = buf;

	memset(buf, 0, SHM_MSG_FIXED);
	buf[0] = SHM_MSG_ENC_VERSION;
	buf[1] = (uint8_t)m->type;
	buf[2] = (uint8_t)((m->edited ? 1 : 0) | (m->has_parent ? 2 : 0) |
	                   (m->has_thread ? 4 : 0));
	w64(buf + 4, seq);
	memcpy(buf + 12, m->id.b, 16);
	w32(buf + 28, (uint32_t)m->user_id);
	w32(buf + 32, m->edit_count);
	w64(buf + 36, (uint64_t)m->created_at);
	w64(buf + 44, (uint64_t)m->updated_at);
	w64(buf + 52, (uint64_t)m->last_reply_at);
	w32(buf + 60, m->reply_count);
	w64(buf + 64, m->content_hash);
	if (m->has_parent)
		memcpy(buf + 72, m->parent_id.b, 16);
	if (m->has_thread)
		memcpy(buf + 88, m->thread_id.b, 16);
	p = buf + SHM_MSG_FIXED;
	p = wstr(p, m->room_id);
	p = wstr(p, m->username);
	p = wbytes(p, m->content, m->content_len);
	p = w32(p, m->n_mentions);
	for (uint32_t i = 0; i < m->n_mentions; i++)
		p = w32(p, (uint32_t)m->mentions[i]);
	p = w32(p, m->n_attachments);
	for (uint32_t i = 0; i < m->n_attachments; i++) {
		const shm_attachment *a = &m->attachments[i];
		memcpy(p, a->id.b, 16);
		p = w64(p + 16, a->size);
		p = wstr(p, a->filename);
		p = wstr(p, a->content_type);
		p = wstr(p, a->url);
	}
	p = w32(p, m->n_reactions);
	for (uint32_t i = 0; i < m->n_reactions; i++) {
		const shm_reaction *r = ord[i];
		p = wstr(p, r->emoji);
		p = w32(p, r->n_users);
		for (uint32_t j = 0; j < r->n_users; j++)
			p = w32(p, (uint32_t)r->user_ids[j]);
	}
}

uint64_t shm__msg_enc_seq(const void *buf, size_t len)
{
	uint64_t s = 0;
	if (len >= SHM_MSG_FIXED)
		memcpy(&s, (const uint8_t *)buf + SHM_MSG_SEQ_OFF, 8);
	return s;
}

/* Bounds-checked reader over an encoded value. */
typedef struct rd {
	const uint8_t *p, *end;
	bool bad;
} rd;

static uint32_t r32(rd *r)
{
	uint32_t v = 0;
	if (r->end - r->p < 4) {
		r->bad = true;
		return 0;
	}
	memcpy(&v, r->p, 4);
	r->p += 4;
	return v;
}

static uint64_t r64(rd *r)
{
	uint64_t v = 0;
	if (r->end - r->p < 8) {
		r->bad = true;
		return 0;
	}
	memcpy(&v, r->p, 8);
	r->p += 8;
	return v;
}

/* Returns the string in place (NUL-terminated in the buffer) and *len its
 * length; "" and 0 once r is bad. A cstr (every string but content, which
 * has its length) holds no NUL: its reader sees it whole. */
static const char *rstr(rd *r, uint32_t *len, bool cstr)
{
	uint32_t n = r32(r);
	const char *s;
	if (r->bad || (size_t)(r->end - r->p) < (size_t)n + 1 || r->p[n] != 0 ||
	    (cstr && memchr(r->p, 0, n))) {
		r->bad = true;
		*len = 0;
		return "";
	}
	s = (const char *)r->p;
	r->p += n + 1;
	*len = n;
	return s;
}

static void rskip(rd *r, size_t n)
{
	if ((size_t)(r->end - r->p) < n)
		r->bad = true;
	else
		r->p += n;
}

/* Where decoded pieces go: one malloc'd block (copying strings), or an
 * arena (strings stay in the buffer). */
typedef struct sink {
	shm__arena *arena;
	uint8_t *block, *cur; /* copy mode */
} sink;

static void *take(sink *s, size_t n)
{
	if (s->arena)
		return shm__arena_alloc(s->arena, n);
	void *p = s->cur;
	s->cur += (n + 7) & ~(size_t)7;
	return p;
}

static const char *keep_str(sink *s, const char *str, uint32_t len)
{
	if (s->arena)
		return str;
	char *d = take(s, (size_t)len + 1);
	memcpy(d, str, (size_t)len + 1);
	return d;
}

/* Walks the variable part; with s == NULL only measures (*need). On
 * SHM_ECORRUPT, *at names the part that is wrong. */
static int walk(const uint8_t *buf, size_t len, sink *s, shm_msg *m,
                size_t *need, const char **at)
{
	rd r = {buf + SHM_MSG_FIXED, buf + len, false};
	size_t n = 0;
	uint32_t l;
	const char *str;

#define STR(field)                                                             \
	do {                                                                   \
		str = rstr(&r, &l, true);                                      \
		n += ((size_t)l + 1 + 7) & ~(size_t)7;                         \
		if (s && !r.bad)                                               \
			field = keep_str(s, str, l);                           \
	} while (0)

	*at = "room_id";
	STR(m->room_id);
	if (!r.bad)
		*at = "username";
	STR(m->username);
	if (!r.bad)
		*at = "content";
	str = rstr(&r, &l, false);
	n += ((size_t)l + 1 + 7) & ~(size_t)7;
	if (s && !r.bad) {
		m->content = keep_str(s, str, l);
		m->content_len = l;
	}
	if (!r.bad)
		*at = "mentions";
	uint32_t nm = r32(&r);
	if (r.bad || nm > SHM_MAX_LIST || (size_t)(r.end - r.p) < 4 * (size_t)nm)
		return SHM_ECORRUPT;
	n += ((size_t)nm * 4 + 7) & ~(size_t)7;
	if (s) {
		int32_t *a = take(s, (size_t)nm * 4);
		if (!a)
			return ENOMEM;
		memcpy(a, r.p, (size_t)nm * 4);
		m->mentions = a;
		m->n_mentions = nm;
	}
	rskip(&r, (size_t)nm * 4);
	*at = "attachments";
	uint32_t na = r32(&r);
	if (r.bad || na > SHM_MAX_LIST)
		return SHM_ECORRUPT;
	shm_attachment *att = NULL;
	n += ((size_t)na * sizeof *att + 7) & ~(size_t)7;
	if (s) {
		att = take(s, (size_t)na * sizeof *att);
		if (!att)
			return ENOMEM;
		m->attachments = att;
		m->n_attachments = na;
	}
	for (uint32_t i = 0; i < na && !r.bad; i++) {
		shm_attachment tmp, *a = att ? &att[i] : &tmp;
		if ((size_t)(r.end - r.p) < 24)
			return SHM_ECORRUPT;
		memcpy(a->id.b, r.p, 16);
		r.p += 16;
		a->size = r64(&r);
		STR(a->filename);
		STR(a->content_type);
		STR(a->url);
	}
	if (!r.bad)
		*at = "reactions";
	uint32_t nr = r32(&r);
	if (r.bad || nr > SHM_MAX_LIST)
		return SHM_ECORRUPT;
	shm_reaction *re = NULL;
	n += ((size_t)nr * sizeof *re + 7) & ~(size_t)7;
	if (s) {
		re = take(s, (size_t)nr * sizeof *re);
		if (!re)
			return ENOMEM;
		m->reactions = re;
		m->n_reactions = nr;
	}
	for (uint32_t i = 0; i < nr && !r.bad; i++) {
		shm_reaction tmp, *x = re ? &re[i] : &tmp;
		STR(x->emoji);
		uint32_t nu = r32(&r);
		if (r.bad || nu > SHM_MAX_LIST ||
		    (size_t)(r.end - r.p) < 4 * (size_t)nu)
			return SHM_ECORRUPT;
		n += ((size_t)nu * 4 + 7) & ~(size_t)7;
		if (s) {
			int32_t *u = take(s, (size_t)nu * 4);
			if (!u)
				return ENOMEM;
			memcpy(u, r.p, (size_t)nu * 4);
			x->user_ids = u;
			x->n_users = nu;
		}
		r.p += (size_t)nu * 4;
	}
#undef STR
	if (!r.bad && r.p != r.end)
		*at = "bytes after its end";
	if (r.bad || r.p != r.end)
		return SHM_ECORRUPT;
	if (need)
		*need = n;
	return 0;
}

/* What is wrong in the fixed part of b (len bytes), NULL if nothing: the
 * bytes the encoder leaves zero are zero (byte 3, and a parent or thread
 * id its flag does not announce: a flag bit lost shows). */
static const char *header_bad(const uint8_t *b, size_t len)
{
	static const uint8_t zero[16];

	if (len < SHM_MSG_FIXED)
		return "shorter than its fixed part";
	if (b[0] != SHM_MSG_ENC_VERSION)
		return "unknown version";
	if (b[1] >= SHM_MSG_TYPE_COUNT)
		return "unknown type";
	if (b[2] > 7 || b[3] != 0)
		return "unknown flags";
	if (!(b[2] & 2) && memcmp(b + SHM_MSG_PARENT_OFF, zero, 16) != 0)
		return "a parent_id without its flag";
	if (!(b[2] & 4) && memcmp(b + SHM_MSG_THREAD_OFF, zero, 16) != 0)
		return "a thread_id without its flag";
	return NULL;
}

int shm__msg_decode(const void *buf, size_t len, shm__arena *arena,
                    shm_msg **out)
{
	const uint8_t *b = buf;
	shm_msg hdr = {0}, *m;
	size_t need = 0;
	const char *bad;
	uint64_t v;
	int rc;

	/* The body is walked field by field, each length leading to the next:
	 * start loading all its cache lines now, not one miss after another. */
	for (uintptr_t l = ((uintptr_t)b | 63) + 1; l < (uintptr_t)b + len;
	     l += 64)
		__builtin_prefetch((const void *)l, 0, 0);
	if ((bad = header_bad(b, len)))
		return shm__err(SHM_ECORRUPT, "message value of %zu byte%s: bad "
		                "header: %s", len, shm__plural(len), bad);
	if (walk(b, len, NULL, &hdr, &need, &bad))
		return shm__err(SHM_ECORRUPT, "message value of %zu byte%s: "
		                "malformed body: %s", len, shm__plural(len),
		                bad);
	if (arena) {
		m = shm__arena_alloc(arena, sizeof *m);
		if (!m)
			return shm__err(ENOMEM, "message view");
	} else {
		size_t total = ((sizeof *m + 7) & ~(size_t)7) + need;
		m = malloc(total);
		if (!m)
			return shm__err(ENOMEM, "message copy of %zu bytes", total);
	}
	memset(m, 0, sizeof *m);
	m->type = (shm_msg_type)b[1];
	m->edited = b[2] & 1;
	m->has_parent = (b[2] & 2) != 0;
	m->has_thread = (b[2] & 4) != 0;
	memcpy(m->id.b, b + 12, 16);
	memcpy(&m->user_id, b + 28, 4);
	memcpy(&m->edit_count, b + 32, 4);
	memcpy(&v, b + SHM_MSG_CREATED_OFF, 8);
	m->created_at = (int64_t)v;
	memcpy(&v, b + 44, 8);
	m->updated_at = (int64_t)v;
	memcpy(&v, b + 52, 8);
	m->last_reply_at = (int64_t)v;
	memcpy(&m->reply_count, b + 60, 4);
	memcpy(&m->content_hash, b + 64, 8);
	if (m->has_parent)
		memcpy(m->parent_id.b, b + 72, 16);
	if (m->has_thread)
		memcpy(m->thread_id.b, b + 88, 16);
	sink s = {.arena = arena};
	if (!arena)
		s.block = s.cur = (uint8_t *)m + ((sizeof *m + 7) & ~(size_t)7);
	if ((rc = walk(b, len, &s, m, NULL, &bad))) {
		if (!arena)
			free(m);
		return rc == ENOMEM ? shm__err(ENOMEM, "message view")
		                    : shm__err(SHM_ECORRUPT, "message value");
	}
	*out = m;
	return 0;
}

int shm_msg_payload_room(const void *buf, size_t len, const char **room,
                         size_t *room_len, int64_t *created_at)
{
	const uint8_t *b = buf;
	uint32_t n;
	uint64_t v;

	if (room)
		*room = NULL;
	if (room_len)
		*room_len = 0;
	if (created_at)
		*created_at = 0;
	if (!buf)
		return shm__null(__func__, "buf");
	if (!room)
		return shm__null(__func__, "room");
	if (!room_len)
		return shm__null(__func__, "room_len");
	if (!created_at)
		return shm__null(__func__, "created_at");
	if (len < SHM_MSG_FIXED + 4 || b[0] != SHM_MSG_ENC_VERSION)
		return shm__err(SHM_ECORRUPT, "message value: bad header");
	memcpy(&n, b + SHM_MSG_FIXED, 4);
	const char *r = (const char *)b + SHM_MSG_FIXED + 4;
	/* a room_id as put takes it: UTF-8, its NUL the one after it */
	if (n == 0 || n > SHM_MAX_ROOM || len - SHM_MSG_FIXED - 4 <= n ||
	    r[n] != 0 || memchr(r, 0, n) || shm__utf8_bad(r, n) != n)
		return shm__err(SHM_ECORRUPT, "message value: bad room_id");
	memcpy(&v, b + SHM_MSG_CREATED_OFF, 8);
	*room = r;
	*room_len = n;
	*created_at = (int64_t)v;
	return 0;
}

int shm_msg_decode(const void *buf, size_t len, shm_msg **out)
{
	if (!out)
		return shm__null(__func__, "out");
	*out = NULL;
	if (!buf && len)
		return shm__null(__func__, "buf");
	return shm__msg_decode(buf, len, NULL, out);
}

void shm_msg_free(shm_msg *m)
{
	free(m);
}

void shm_msgs_free(shm_msg **msgs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(msgs ? msgs[i] : NULL);
	free(msgs);
}

static int check_opt_text(const char *what, const char *s, size_t max)
{
	return shm__check_text(what, s ? s : "", s ? strlen(s) : 0, max, true);
}

int shm__msg_time_check(const char *fn, const char *field, int64_t us,
                        bool required)
{
	/* "<fn>: field '<field>'" or "<field>" */
	const char *f0 = fn ? fn : "", *f1 = fn ? ": field '" : "",
	           *f2 = fn ? "'" : "";
	char t[40];

	if (us > 0 && us <= SHM_TIME_MAX_US)
		return 0;
	if (us == 0 && !required)
		return 0;
	if (us == 0)
		return shm__err(SHM_ETIME, "%s%s%s%s: 0 is no time (put fills it "
		                "in), and the epoch it would be written as is "
		                "none to the reader: a message's times are "
		                SHM_MSG_TIME_RANGE, f0, f1, field, f2);
	shm_time_format(us, t);
	return shm__err(SHM_ETIME, "%s%s%s%s: %lld us (%s) is %s: a message's "
	                "times are " SHM_MSG_TIME_RANGE, f0, f1, field, f2,
	                (long long)us, t, us < 0 ? "before 1970" : "after 9999");
}

static int check_times(const shm_msg *m)
{
	int rc;

	if ((rc = shm__msg_time_check(NULL, "created_at", m->created_at,
	                              false)) ||
	    (rc = shm__msg_time_check(NULL, "updated_at", m->updated_at,
	                              false)))
		return rc;
	return shm__msg_time_check(NULL, "metadata.last_reply_at",
	                           m->last_reply_at, false);
}

/* Sizes are JSON integers (int64), as the reader and writer (json_read.c,
 * json_write.c) say. */
static int check_attachments(const shm_msg *m)
{
	int rc;

	for (uint32_t i = 0; i < m->n_attachments; i++) {
		const shm_attachment *a = &m->attachments[i];
		if ((rc = check_opt_text("attachment filename", a->filename,
		                         SHM_MAX_NAME)) ||
		    (rc = check_opt_text("attachment content_type",
		                         a->content_type, SHM_MAX_NAME)) ||
		    (rc = check_opt_text("attachment url", a->url, SHM_MAX_NAME)))
			return rc;
		if (a->size > (uint64_t)INT64_MAX)
			return shm__err(SHM_EINVAL, "metadata.attachments[%u]."
			                "size: %llu is beyond INT64_MAX, the JSON "
			                "integer range", i,
			                (unsigned long long)a->size);
	}
	return 0;
}

static int cmp_i32(const void *a, const void *b)
{
	int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
	return (x > y) - (x < y);
}

/* User ids of a reaction checked on the stack; more are malloc'd. */
#define USERS_SMALL 64

/* Each user reacts once per emoji (the JSON reader refuses a repeat).
 * Sorted copy: n log n, whatever the list. */
static int check_users(const shm_reaction *r)
{
	int32_t small[USERS_SMALL], *ids = small;
	char shown[SHM__SHOWN_MAX];
	int rc = 0;

	if (r->n_users < 2)
		return 0; /* nothing to repeat (user_ids may be NULL) */
	if (r->n_users > USERS_SMALL &&
	    !(ids = malloc(r->n_users * sizeof *ids)))
		return shm__err(ENOMEM, "metadata.reactions '%s': check of %u "
		                "user ids", shm__shown_str(r->emoji, shown),
		                r->n_users);
	memcpy(ids, r->user_ids, r->n_users * sizeof *ids);
	qsort(ids, r->n_users, sizeof *ids, cmp_i32);
	for (uint32_t j = 1; j < r->n_users && !rc; j++)
		if (ids[j] == ids[j - 1])
			rc = shm__err(SHM_EINVAL, "metadata.reactions '%s': "
			              "user id %d listed twice",
			              shm__shown_str(r->emoji, shown), (int)ids[j]);
	if (ids != small)
		free(ids);
	return rc;
}

/* At most one reaction per emoji (a JSON object holds a key once). */
static int check_emojis(const shm_msg *m)
{
	shm__order o;
	char shown[SHM__SHOWN_MAX];
	int rc = 0;

	if (shm__order_make(m, &o))
		return shm__err(ENOMEM, "metadata.reactions: order of %u "
		                "reactions", m->n_reactions);
	if (o.dup)
		rc = shm__err(SHM_EINVAL, "reaction '%s' listed twice",
		              shm__shown_str(o.r[o.dup]->emoji, shown));
	shm__order_free(&o);
	return rc;
}

static int check_reactions(const shm_msg *m)
{
	char shown[SHM__SHOWN_MAX];
	int rc;

	for (uint32_t i = 0; i < m->n_reactions; i++) {
		const shm_reaction *r = &m->reactions[i];
		if ((rc = shm__check_text("reaction emoji", r->emoji,
		                          r->emoji ? strlen(r->emoji) : 0,
		                          SHM_MAX_EMOJI, false)))
			return rc;
		if (r->n_users > SHM_MAX_LIST)
			return shm__err(SHM_ETOOBIG, "reaction '%s': %u users, at "
			                "most %d", shm__shown_str(r->emoji, shown),
			                r->n_users, SHM_MAX_LIST);
		if (r->n_users && !r->user_ids)
			return shm__err(SHM_EINVAL, "reaction '%s': NULL user_ids "
			                "with %u users",
			                shm__shown_str(r->emoji, shown), r->n_users);
		if ((rc = check_users(r)))
			return rc;
	}
	return check_emojis(m);
}

/* parent_id names another message: not the nil UUID (no message's id),
 * not m itself; thread_id is not the nil UUID. A thread_id without a
 * parent, or m's own (a thread's root naming its thread), is the seed's
 * to have: the two fields are independent there (msg.c checks a reply's
 * against the parent L1 holds). */
static int check_links(const shm_msg *m)
{
	char s[37];

	if (m->has_parent && shm_uuid_is_nil(&m->parent_id))
		return shm__err(SHM_EINVAL, "parent_id: the nil UUID, which "
		                "names no message");
	if (m->has_thread && shm_uuid_is_nil(&m->thread_id))
		return shm__err(SHM_EINVAL, "thread_id: the nil UUID, which "
		                "names no message");
	shm_uuid_format(&m->id, s);
	if (m->has_parent && memcmp(m->parent_id.b, m->id.b, 16) == 0)
		return shm__err(SHM_EINVAL, "parent_id %s: the message's own id "
		                "(a message is no reply to itself)", s);
	return 0;
}

/* Type Delete is a soft-deleted message (final: msg.c invariant 7), whose
 * content is what a soft delete leaves, as in the seed. */
static int check_deleted(const shm_msg *m)
{
	size_t n = strlen(SHM_DELETED_CONTENT);

	if (m->type != SHM_MSG_DELETE ||
	    (m->content_len == n && memcmp(m->content, SHM_DELETED_CONTENT,
	                                   n) == 0))
		return 0;
	return shm__err(SHM_EINVAL, "message_type Delete: content must be \""
	                SHM_DELETED_CONTENT "\" (SHM_DELETED_CONTENT), what a "
	                "soft delete leaves; got %u byte%s of other content",
	                m->content_len, shm__plural(m->content_len));
}

/* Accepts exactly what the JSON writer and reader (json_write.c,
 * json_read.c) round-trip, so a stored message can always be read back,
 * dumped and mirrored, and nothing the model forbids in a message alone
 * (check_links, check_deleted). */
int shm__msg_validate(const shm_options *opt, const shm_msg *m)
{
	int rc;

	if (!m)
		return shm__err(SHM_EINVAL, "message: NULL");
	if ((unsigned)m->type >= SHM_MSG_TYPE_COUNT)
		return shm__err(SHM_ETYPE, "message_type %d: not one of Text, "
		                "Image, File, Audio, Video, System, Edit, Delete, "
		                "Reaction", (int)m->type);
	if ((rc = shm__check_text("room_id", m->room_id,
	                          m->room_id ? strlen(m->room_id) : 0,
	                          SHM_MAX_ROOM, false)) ||
	    (rc = check_opt_text("username", m->username, SHM_MAX_USERNAME)))
		return rc;
	if (!m->content && m->content_len)
		return shm__err(SHM_EINVAL, "content: NULL with length %u",
		                m->content_len);
	if ((rc = shm__check_text("content", m->content ? m->content : "",
	                          m->content_len, opt->max_content, true)) ||
	    (rc = check_times(m)))
		return rc;
	if (m->n_mentions > SHM_MAX_LIST || m->n_attachments > SHM_MAX_LIST ||
	    m->n_reactions > SHM_MAX_LIST)
		return shm__err(SHM_ETOOBIG, "metadata: more than %d mentions, "
		                "attachments or reactions", SHM_MAX_LIST);
	if (m->n_mentions && !m->mentions)
		return shm__err(SHM_EINVAL, "metadata: NULL mentions, "
		                "n_mentions %u", m->n_mentions);
	if (m->n_attachments && !m->attachments)
		return shm__err(SHM_EINVAL, "metadata: NULL attachments, "
		                "n_attachments %u", m->n_attachments);
	if (m->n_reactions && !m->reactions)
		return shm__err(SHM_EINVAL, "metadata: NULL reactions, "
		                "n_reactions %u", m->n_reactions);
	if ((rc = check_attachments(m)) || (rc = check_reactions(m)) ||
	    (rc = check_links(m)) || (rc = check_deleted(m)))
		return rc;
	return shm__msg_size_check(opt, m, "message");
}

int shm__msg_size_check(const shm_options *opt, const shm_msg *m,
                        const char *what)
{
	size_t size = shm__msg_enc_size(m),
	       max = (size_t)opt->max_content * 2 + 65536;

	if (size > max)
		return shm__err(SHM_ETOOBIG, "%s: encoded metadata too large: "
		                "%zu bytes encoded, at most %zu (twice "
		                "max_content, and 64 KiB)", what, size, max);
	return 0;
}

static const char *const type_names[SHM_MSG_TYPE_COUNT] = {
	"Text", "Image", "File", "Audio", "Video",
	"System", "Edit", "Delete", "Reaction",
};

const char *shm_msg_type_name(shm_msg_type t)
{
	return (unsigned)t < SHM_MSG_TYPE_COUNT ? type_names[t] : NULL;
}

int shm_msg_type_parse(const char *s, shm_msg_type *out)
{
	char shown[SHM__SHOWN_MAX];

	if (out)
		*out = (shm_msg_type)0;
	if (!s)
		return shm__null(__func__, "s");
	if (!out)
		return shm__null(__func__, "out");
	for (int i = 0; i < SHM_MSG_TYPE_COUNT; i++) {
		if (strcmp(s, type_names[i]) == 0) {
			*out = (shm_msg_type)i;
			return 0;
		}
	}
	return shm__err(SHM_ETYPE, "message_type '%s': not one of Text, "
	                "Image, File, Audio, Video, System, Edit, Delete, "
	                "Reaction", shm__shown_str(s, shown));
}
