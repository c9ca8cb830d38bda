/*
 * json_write.c - messages to the seed's serde JSON shape (read back by
 * json_read.c).
 *
 * Output is written by hand, straight into a growing buffer (a jansson tree
 * per message, then a dump, cost ~5 us: most of the flusher's CPU);
 * jansson is used for parsing only. shm_msg_json_append is the writer,
 * shm_msg_to_json a wrapper, shm_msg_metadata_json_append its "metadata"
 * object alone (the PostgreSQL column). Compact, UTF-8, keys in the seed's struct
 * order:
 *   {"id":"<uuid>","room_id":"..","user_id":1,"username":"..","content":"..",
 *    "message_type":"Text","created_at":"<rfc3339>","updated_at":null,
 *    "metadata":{"edited":false,"edit_count":0,"reactions":{"<emoji>":[ids]},
 *                "mentions":[],"attachments":[{"id","filename",
 *                "content_type","size","url"}],"reply_count":0,
 *                "last_reply_at":null},
 *    "content_hash":"<16 lowercase hex>","compressed_content":null,
 *    "parent_id":null,"thread_id":null}
 * Reactions are written sorted by emoji (byte order) whatever the struct's
 * order, as put stores them: one message, one JSON. A reaction without
 * users is no reaction: the writer skips it, the reader drops it ("x":[]),
 * put does not store it, as removing its last user leaves none. Zero timestamps
 * (updated_at, last_reply_at) are written as null; NULL strings as "".
 * NUL bytes in content are written as \u0000. Refused:
 * text that is not valid UTF-8 (SHM_EUTF8), an unknown type (SHM_ETYPE),
 * two reactions with one emoji and an attachment size beyond int64
 * (SHM_EINVAL), a time the reader would refuse (SHM_ETIME: outside
 * SHM_MSG_TIME_RANGE, or a created_at of 0), a nil id, which the reader
 * refuses as none, and a nil parent_id or thread_id, which it refuses as
 * naming no message (SHM_EUUID); each error names the field.
 * Writer, reader and put take one range of times (internal.h).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* The writer appends to a caller's growing buffer (the flusher reuses one
 * per sink: no allocation per message once it is large enough). Rules, the
 * ones of jansson's JSON_COMPACT dump the seed's serde output matches: no
 * spaces, '"' and '\\' escaped, \b \f \n \r \t, other bytes below 0x20
 * (NUL included: content may hold it) as \u00XX with uppercase hex, '/',
 * DEL and non-ASCII as is, integers in decimal. */
typedef struct jout {
	char *p;
	size_t len, cap;
	int rc;             /* first failure: ENOMEM or SHM_EUTF8 */
	const char *what;   /* SHM_EUTF8: the field, "<what>[<idx>]<sub>" */
	long idx;
	const char *sub;
	size_t bad_at;      /* SHM_EUTF8: byte offset in that field */
} jout;

static bool jgrow(jout *o, size_t more)
{
	if (more < o->cap && o->len + more + 1 <= o->cap)
		return true;
	if (more > SIZE_MAX / 4 - o->len) {
		o->rc = ENOMEM;
		return false;
	}
	size_t cap = o->cap ? o->cap : 512;
	while (cap < o->len + more + 1)
		cap *= 2;
	char *p = realloc(o->p, cap);
	if (!p) {
		o->rc = ENOMEM;
		return false;
	}
	o->p = p;
	o->cap = cap;
	return true;
}

static bool jadd(jout *o, const char *s, size_t n)
{
	if (!jgrow(o, n))
		return false;
	memcpy(o->p + o->len, s, n);
	o->len += n;
	o->p[o->len] = '\0';
	return true;
}

#define JLIT(o, s) jadd((o), "" s, sizeof(s) - 1)

static bool jint(jout *o, int64_t v)
{
	char s[24], *e = s + sizeof s, *d = e;
	uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;

	do
		*--d = (char)('0' + u % 10);
	while ((u /= 10));
	if (v < 0)
		*--d = '-';
	return jadd(o, d, (size_t)(e - d));
}

/* "s" escaped; SHM_EUTF8 (naming what[idx]sub) if not valid UTF-8. */
static bool jstr(jout *o, const char *s, size_t len, const char *what,
                 long idx, const char *sub)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *u = (const unsigned char *)s;
	size_t bad;

	if (!s)
		len = 0;
	if ((bad = shm__utf8_bad(s, len)) != len) {
		o->rc = SHM_EUTF8;
		o->what = what;
		o->idx = idx;
		o->sub = sub;
		o->bad_at = bad;
		return false;
	}
	if (!jgrow(o, len * 6 + 2))
		return false;
	char *d = o->p + o->len;
	*d++ = '"';
	for (size_t i = 0; i < len; i++) {
		unsigned char c = u[i];
		if (c >= 0x20 && c != '"' && c != '\\') {
			*d++ = (char)c;
			continue;
		}
		*d++ = '\\';
		switch (c) {
		case '"': *d++ = '"'; break;
		case '\\': *d++ = '\\'; break;
		case '\b': *d++ = 'b'; break;
		case '\f': *d++ = 'f'; break;
		case '\n': *d++ = 'n'; break;
		case '\r': *d++ = 'r'; break;
		case '\t': *d++ = 't'; break;
		default:
			*d++ = 'u'; *d++ = '0'; *d++ = '0';
			*d++ = hex[c >> 4]; *d++ = hex[c & 15];
		}
	}
	*d++ = '"';
	o->len = (size_t)(d - o->p);
	o->p[o->len] = '\0';
	return true;
}

/* A C string, NULL written as "". */
static bool jcstr(jout *o, const char *s, const char *what, long idx,
                  const char *sub)
{
	return jstr(o, s ? s : "", s ? strlen(s) : 0, what, idx, sub);
}

static bool juuid(jout *o, const shm_uuid *u)
{
	char s[40];

	s[0] = '"';
	shm_uuid_format(u, s + 1);
	s[37] = '"';
	return jadd(o, s, 38);
}

static bool jtime(jout *o, int64_t us)
{
	char s[44];

	s[0] = '"';
	shm_time_format(us, s + 1);
	size_t n = strlen(s);
	s[n++] = '"';
	return jadd(o, s, n);
}

/* Zero (unset) is null. */
static bool jtime_or_null(jout *o, int64_t us)
{
	return us ? jtime(o, us) : JLIT(o, "null");
}

/* ord: m's reactions in the order written (reaction_order). */
static bool jmetadata(jout *o, const shm_msg *m, const shm_reaction **ord)
{
	if (!(m->edited ? JLIT(o, "{\"edited\":true,\"edit_count\":")
	                : JLIT(o, "{\"edited\":false,\"edit_count\":")) ||
	    !jint(o, m->edit_count) || !JLIT(o, ",\"reactions\":{"))
		return false;
	for (uint32_t i = 0, n = 0; i < m->n_reactions; i++) {
		const shm_reaction *r = ord[i];
		if (!r->n_users)
			continue; /* no users, no reaction: as put stores it */
		if ((n++ && !JLIT(o, ",")) ||
		    !jcstr(o, r->emoji, "metadata.reactions",
		           (long)(r - m->reactions), " (emoji)") ||
		    !JLIT(o, ":["))
			return false;
		for (uint32_t j = 0; j < r->n_users; j++)
			if ((j && !JLIT(o, ",")) || !jint(o, r->user_ids[j]))
				return false;
		if (!JLIT(o, "]"))
			return false;
	}
	if (!JLIT(o, "},\"mentions\":["))
		return false;
	for (uint32_t i = 0; i < m->n_mentions; i++)
		if ((i && !JLIT(o, ",")) || !jint(o, m->mentions[i]))
			return false;
	if (!JLIT(o, "],\"attachments\":["))
		return false;
	for (uint32_t i = 0; i < m->n_attachments; i++) {
		const shm_attachment *a = &m->attachments[i];
		const char *w = "metadata.attachments";
		if ((i && !JLIT(o, ",")) || !JLIT(o, "{\"id\":") ||
		    !juuid(o, &a->id) || !JLIT(o, ",\"filename\":") ||
		    !jcstr(o, a->filename, w, (long)i, ".filename") ||
		    !JLIT(o, ",\"content_type\":") ||
		    !jcstr(o, a->content_type, w, (long)i, ".content_type") ||
		    !JLIT(o, ",\"size\":") || !jint(o, (int64_t)a->size) ||
		    !JLIT(o, ",\"url\":") ||
		    !jcstr(o, a->url, w, (long)i, ".url") || !JLIT(o, "}"))
			return false;
	}
	return JLIT(o, "],\"reply_count\":") && jint(o, m->reply_count) &&
	       JLIT(o, ",\"last_reply_at\":") &&
	       jtime_or_null(o, m->last_reply_at) && JLIT(o, "}");
}

/* A NULL array with a count of n: SHM_EINVAL naming field. */
static int null_with(const char *fn, const char *field, uint32_t n)
{
	return shm__err(SHM_EINVAL, "%s: field '%s': NULL with %" PRIu32, fn,
	                field, n);
}

/* A nil parent_id or thread_id, which the reader refuses, as put does. */
static int nil_link(const char *fn, const char *field)
{
	return shm__err(SHM_EUUID, "%s: field '%s': the nil UUID, which the "
	                "reader refuses: it names no message (null for none)",
	                fn, field);
}

/* What the writer refuses before writing anything: what it cannot write
 * (a type, a size), a time, id or link the reader would refuse (whole:
 * the message's own times, id and links too, not only its metadata's),
 * and the pointers put refuses (shm.h: a NULL array or content with a
 * count, a reaction with users but no emoji). */
static int check_msg(const shm_msg *m, const char *fn, bool whole)
{
	int rc;

	if (!shm_msg_type_name(m->type))
		return shm__err(SHM_ETYPE, "%s: message type %d", fn,
		                (int)m->type);
	if (!m->content && m->content_len)
		return shm__err(SHM_EINVAL, "%s: field 'content': NULL with "
		                "length %" PRIu32, fn, m->content_len);
	if (!m->reactions && m->n_reactions)
		return null_with(fn, "metadata.reactions", m->n_reactions);
	if (!m->mentions && m->n_mentions)
		return null_with(fn, "metadata.mentions", m->n_mentions);
	if (!m->attachments && m->n_attachments)
		return null_with(fn, "metadata.attachments", m->n_attachments);
	for (uint32_t i = 0; i < m->n_reactions; i++) {
		const shm_reaction *r = &m->reactions[i];
		if (!r->n_users)
			continue; /* not written (jmetadata) */
		if (!r->user_ids)
			return shm__err(SHM_EINVAL, "%s: field 'metadata."
			                "reactions[%" PRIu32 "]': NULL user_ids "
			                "with %" PRIu32 " users", fn, i,
			                r->n_users);
		if (!r->emoji || !*r->emoji)
			return shm__err(SHM_EINVAL, "%s: field 'metadata."
			                "reactions[%" PRIu32 "]': no emoji", fn,
			                i);
	}
	/* times the reader takes back (SHM_MSG_TIME_RANGE) */
	if ((whole && ((rc = shm__msg_time_check(fn, "created_at",
	                                         m->created_at, true)) ||
	               (rc = shm__msg_time_check(fn, "updated_at",
	                                         m->updated_at, false)))) ||
	    (rc = shm__msg_time_check(fn, "metadata.last_reply_at",
	                              m->last_reply_at, false)))
		return rc;
	/* the id the reader takes back: nil is none there (put's new id) */
	if (whole && shm_uuid_is_nil(&m->id))
		return shm__err(SHM_EUUID, "%s: field 'id': the nil UUID, which "
		                "the reader refuses: nil means none (put makes "
		                "a new id)", fn);
	/* the links the reader takes back: nil names no message there */
	if (whole && m->has_parent && shm_uuid_is_nil(&m->parent_id))
		return nil_link(fn, "parent_id");
	if (whole && m->has_thread && shm_uuid_is_nil(&m->thread_id))
		return nil_link(fn, "thread_id");
	for (uint32_t i = 0; i < m->n_attachments; i++)
		if (m->attachments[i].size > (uint64_t)INT64_MAX)
			return shm__err(SHM_EINVAL,
			                "%s: field 'metadata.attachments[%" PRIu32
			                "].size': %" PRIu64
			                " beyond the JSON integer range",
			                fn, i, m->attachments[i].size);
	return 0;
}

/* m's reactions in emoji byte order, the order put stores them in, so one
 * message has one JSON: 0 and *o, which the caller frees
 * (shm__order_free). SHM_EINVAL if two reactions have one emoji (a JSON
 * object cannot hold one key twice), ENOMEM; nothing to free then. */
static int reaction_order(const shm_msg *m, const char *fn, shm__order *o)
{
	const char *e;
	char shown[SHM__SHOWN_MAX];
	long a, b;

	if (shm__order_make(m, o))
		return shm__err(ENOMEM, "%s: order of %" PRIu32 " reactions", fn,
		                m->n_reactions);
	if (!o->dup)
		return 0;
	e = o->r[o->dup]->emoji;
	a = o->r[o->dup - 1] - m->reactions;
	b = o->r[o->dup] - m->reactions;
	shm__order_free(o);
	return shm__err(SHM_EINVAL, "%s: field 'metadata.reactions': emoji "
	                "'%s' in reactions[%ld] and [%ld]", fn,
	                shm__shown_str(e ? e : "", shown),
	                a < b ? a : b, a < b ? b : a);
}

static int jdone(jout *o, bool ok, char **buf, size_t *len, size_t *cap,
                 const char *fn);

static int msg_json(const shm_msg *m, char **buf, size_t *len, size_t *cap,
                    size_t *meta_off, size_t *meta_len, const char *fn)
{
	shm__order ord;
	const char *type;
	size_t moff = 0, mlen = 0;
	char hash[48];
	jout o;
	bool ok;
	int rc;

	if ((rc = check_msg(m, fn, true)) ||
	    (rc = reaction_order(m, fn, &ord)))
		return rc;
	type = shm_msg_type_name(m->type);
	o = (jout){.p = *buf, .len = *len, .cap = *buf ? *cap : 0};
	ok = JLIT(&o, "{\"id\":") && juuid(&o, &m->id) &&
	     JLIT(&o, ",\"room_id\":") &&
	     jcstr(&o, m->room_id, "room_id", -1, "") &&
	     JLIT(&o, ",\"user_id\":") && jint(&o, m->user_id) &&
	     JLIT(&o, ",\"username\":") &&
	     jcstr(&o, m->username, "username", -1, "") &&
	     JLIT(&o, ",\"content\":") &&
	     jstr(&o, m->content ? m->content : "",
	          m->content ? m->content_len : 0, "content", -1, "") &&
	     JLIT(&o, ",\"message_type\":\"") && jadd(&o, type, strlen(type)) &&
	     JLIT(&o, "\",\"created_at\":") && jtime(&o, m->created_at) &&
	     JLIT(&o, ",\"updated_at\":") && jtime_or_null(&o, m->updated_at) &&
	     JLIT(&o, ",\"metadata\":");
	if (ok) {
		moff = o.len;
		ok = jmetadata(&o, m, ord.r);
		mlen = o.len - moff;
	}
	shm__order_free(&ord);
	if (ok) {
		static const char pre[] = ",\"content_hash\":\"";
		uint64_t h = m->content_hash;
		memcpy(hash, pre, sizeof pre - 1);
		for (int k = 15; k >= 0; k--, h >>= 4)
			hash[sizeof pre - 1 + k] = "0123456789abcdef"[h & 15];
		hash[sizeof pre - 1 + 16] = '"';
		ok = jadd(&o, hash, sizeof pre - 1 + 17);
	}
	ok = ok && JLIT(&o, ",\"compressed_content\":null,\"parent_id\":") &&
	     (m->has_parent ? juuid(&o, &m->parent_id) : JLIT(&o, "null")) &&
	     JLIT(&o, ",\"thread_id\":") &&
	     (m->has_thread ? juuid(&o, &m->thread_id) : JLIT(&o, "null")) &&
	     JLIT(&o, "}");
	if (ok) {
		if (meta_off)
			*meta_off = moff;
		if (meta_len)
			*meta_len = mlen;
	}
	return jdone(&o, ok, buf, len, cap, fn);
}

/* Hands the buffer back (it may have moved or grown, even on failure);
 * on failure takes back what was appended and says why. */
static int jdone(jout *o, bool ok, char **buf, size_t *len, size_t *cap,
                 const char *fn)
{
	*buf = o->p;
	*cap = o->cap;
	if (ok) {
		*len = o->len;
		return 0;
	}
	if (o->p)
		o->p[*len] = '\0';
	if (o->rc == SHM_EUTF8) {
		if (o->idx < 0)
			return shm__err(SHM_EUTF8,
			                "%s: field '%s%s': invalid UTF-8 at byte "
			                "offset %zu",
			                fn, o->what, o->sub, o->bad_at);
		return shm__err(SHM_EUTF8,
		                "%s: field '%s[%ld]%s': invalid UTF-8 at byte "
		                "offset %zu",
		                fn, o->what, o->idx, o->sub, o->bad_at);
	}
	return shm__err(ENOMEM, "%s: out of memory for %zu bytes of JSON", fn,
	                o->len);
}

/* The arguments of the *_json_append functions: SHM_EINVAL naming fn and
 * the one that is wrong. */
static int append_check(const char *fn, const shm_msg *m, char **buf,
                        const size_t *len, const size_t *cap)
{
	if (!m)
		return shm__null(fn, "m");
	if (!buf)
		return shm__null(fn, "buf");
	if (!len)
		return shm__null(fn, "len");
	if (!cap)
		return shm__null(fn, "cap");
	if (!*buf && *len)
		return shm__err(SHM_EINVAL, "%s: NULL *buf with *len %zu", fn,
		                *len);
	if (*buf && *len >= *cap)
		return shm__err(SHM_EINVAL, "%s: *len %zu not below *cap %zu",
		                fn, *len, *cap);
	return 0;
}

int shm_msg_json_append(const shm_msg *m, char **buf, size_t *len,
                        size_t *cap, size_t *meta_off, size_t *meta_len)
{
	int rc;

	if (meta_off)
		*meta_off = 0;
	if (meta_len)
		*meta_len = 0;
	if ((rc = append_check(__func__, m, buf, len, cap)))
		return rc;
	return msg_json(m, buf, len, cap, meta_off, meta_len, __func__);
}

int shm_msg_metadata_json_append(const shm_msg *m, char **buf, size_t *len,
                                 size_t *cap)
{
	const char *fn = "shm_msg_metadata_json_append";
	shm__order ord;
	jout o;
	bool ok;
	int rc;

	if ((rc = append_check(fn, m, buf, len, cap)))
		return rc;
	if ((rc = check_msg(m, fn, false)) ||
	    (rc = reaction_order(m, fn, &ord)))
		return rc;
	o = (jout){.p = *buf, .len = *len, .cap = *buf ? *cap : 0};
	ok = jmetadata(&o, m, ord.r);
	shm__order_free(&ord);
	return jdone(&o, ok, buf, len, cap, fn);
}

int shm_msg_to_json(const shm_msg *m, char **json, size_t *len)
{
	char *buf = NULL;
	size_t n = 0, cap = 0;
	int rc;

	if (json)
		*json = NULL;
	if (len)
		*len = 0;
	if (!m)
		return shm__null(__func__, "m");
	if (!json)
		return shm__null(__func__, "json");
	if ((rc = msg_json(m, &buf, &n, &cap, NULL, NULL, "shm_msg_to_json"))) {
		free(buf);
		return rc;
	}
	*json = buf;
	if (len)
		*len = n;
	return 0;
}
