/*
 * flusher/json.c - the hot-path writer of a message's JSON, byte for byte
 * what shm_msg_to_json (libshm/json.c, jansson) returns.
 *
 * Why: building a jansson tree per record and dumping it was half of the
 * flusher's CPU (perf, 100,000 messages: ~5 us of ~6 us per record), paid
 * once per sink. This writer appends straight into an fl_buf.
 *
 * Output rules it shares with jansson's JSON_COMPACT | JSON_PRESERVE_ORDER
 * dump: keys in shm_msg_to_json's order, no spaces, '"' and '\\' escaped,
 * \b \f \n \r \t, other bytes below 0x20 as \u00XX (uppercase hex), '/'
 * and non-ASCII as is, integers in decimal.
 *
 * Anything it is not sure to write exactly as jansson would (a string that
 * is not strictly valid UTF-8, two reactions with one emoji, an attachment
 * size beyond int64, an unknown type) makes it return FL_JSON_FALLBACK
 * with the buffer unchanged: the caller then asks shm_msg_to_json, which
 * gives the same bytes or the authoritative error. tests/test_fl_json.c
 * compares both on generated and hostile messages.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "fl.h"

/* Strict UTF-8 (RFC 3629: no overlongs, no surrogates, <= U+10FFFF). */
static bool utf8_ok(const unsigned char *s, size_t len)
{
	size_t i = 0;

	while (i < len) {
		unsigned c = s[i];
		if (c < 0x80) {
			i++;
			continue;
		}
		size_t n;
		unsigned cp, min;
		if (c >= 0xC2 && c <= 0xDF) {
			n = 1; cp = c & 0x1F; min = 0x80;
		} else if (c >= 0xE0 && c <= 0xEF) {
			n = 2; cp = c & 0x0F; min = 0x800;
		} else if (c >= 0xF0 && c <= 0xF4) {
			n = 3; cp = c & 0x07; min = 0x10000;
		} else {
			return false;
		}
		if (len - i <= n)
			return false;
		for (size_t k = 1; k <= n; k++) {
			unsigned d = s[i + k];
			if ((d & 0xC0) != 0x80)
				return false;
			cp = cp << 6 | (d & 0x3F);
		}
		if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			return false;
		i += n + 1;
	}
	return true;
}

/* "s" escaped; false if s is not valid UTF-8 (or out of memory: *oom). */
static bool str(fl_buf *b, const char *s, size_t len, bool *oom)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *u = (const unsigned char *)s;

	if (!utf8_ok(u, len))
		return false;
	if (fl_buf_reserve(b, len * 6 + 2)) {
		*oom = true;
		return false;
	}
	char *d = b->p + b->len;
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
	b->len = (size_t)(d - b->p);
	b->p[b->len] = 0;
	return true;
}

static bool cstr(fl_buf *b, const char *s, bool *oom)
{
	return str(b, s ? s : "", s ? strlen(s) : 0, oom);
}

static bool lit(fl_buf *b, const char *s, bool *oom)
{
	if (fl_buf_add(b, s, strlen(s))) {
		*oom = true;
		return false;
	}
	return true;
}

static bool num(fl_buf *b, long long v, bool *oom)
{
	char s[24];
	int n = snprintf(s, sizeof s, "%lld", v);

	if (fl_buf_add(b, s, (size_t)n)) {
		*oom = true;
		return false;
	}
	return true;
}

static bool uuid(fl_buf *b, const shm_uuid *u, bool *oom)
{
	char s[40];

	s[0] = '"';
	shm_uuid_format(u, s + 1);
	s[37] = '"';
	if (fl_buf_add(b, s, 38)) {
		*oom = true;
		return false;
	}
	return true;
}

static bool time_str(fl_buf *b, int64_t us, bool *oom)
{
	char s[44];

	s[0] = '"';
	shm_time_format(us, s + 1);
	size_t n = strlen(s);
	s[n++] = '"';
	if (fl_buf_add(b, s, n)) {
		*oom = true;
		return false;
	}
	return true;
}

static bool time_or_null(fl_buf *b, int64_t us, bool *oom)
{
	return us ? time_str(b, us, oom) : lit(b, "null", oom);
}

static bool metadata(fl_buf *b, const shm_msg *m, bool *oom)
{
	if (!lit(b, m->edited ? "{\"edited\":true,\"edit_count\":"
	                      : "{\"edited\":false,\"edit_count\":", oom) ||
	    !num(b, m->edit_count, oom) || !lit(b, ",\"reactions\":{", oom))
		return false;
	for (uint32_t i = 0; i < m->n_reactions; i++) {
		const shm_reaction *r = &m->reactions[i];
		const char *e = r->emoji ? r->emoji : "";
		for (uint32_t j = 0; j < i; j++) /* jansson would merge them */
			if (!strcmp(e, m->reactions[j].emoji
			                       ? m->reactions[j].emoji : ""))
				return false;
		if ((i && !lit(b, ",", oom)) || !cstr(b, e, oom) ||
		    !lit(b, ":[", oom))
			return false;
		for (uint32_t j = 0; j < r->n_users; j++)
			if ((j && !lit(b, ",", oom)) ||
			    !num(b, r->user_ids[j], oom))
				return false;
		if (!lit(b, "]", oom))
			return false;
	}
	if (!lit(b, "},\"mentions\":[", oom))
		return false;
	for (uint32_t i = 0; i < m->n_mentions; i++)
		if ((i && !lit(b, ",", oom)) || !num(b, m->mentions[i], oom))
			return false;
	if (!lit(b, "],\"attachments\":[", oom))
		return false;
	for (uint32_t i = 0; i < m->n_attachments; i++) {
		const shm_attachment *a = &m->attachments[i];
		if (a->size > (uint64_t)INT64_MAX)
			return false;
		if ((i && !lit(b, ",", oom)) || !lit(b, "{\"id\":", oom) ||
		    !uuid(b, &a->id, oom) || !lit(b, ",\"filename\":", oom) ||
		    !cstr(b, a->filename, oom) ||
		    !lit(b, ",\"content_type\":", oom) ||
		    !cstr(b, a->content_type, oom) ||
		    !lit(b, ",\"size\":", oom) ||
		    !num(b, (long long)a->size, oom) ||
		    !lit(b, ",\"url\":", oom) || !cstr(b, a->url, oom) ||
		    !lit(b, "}", oom))
			return false;
	}
	return lit(b, "],\"reply_count\":", oom) &&
	       num(b, m->reply_count, oom) &&
	       lit(b, ",\"last_reply_at\":", oom) &&
	       time_or_null(b, m->last_reply_at, oom) && lit(b, "}", oom);
}

int fl_msg_metadata_json(fl_buf *b, const shm_msg *m)
{
	size_t len0 = b->len;
	bool oom = false;

	if (metadata(b, m, &oom))
		return 0;
	b->len = len0;
	if (b->p)
		b->p[len0] = 0;
	return oom ? ENOMEM : FL_JSON_FALLBACK;
}

int fl_msg_json(fl_buf *b, const shm_msg *m, size_t *meta_off,
                size_t *meta_len)
{
	const char *type = shm_msg_type_name(m->type);
	size_t len0 = b->len, moff = 0, mlen = 0;
	bool oom = false, ok;
	char hash[40];

	if (!type)
		return FL_JSON_FALLBACK;
	snprintf(hash, sizeof hash, ",\"content_hash\":\"%016" PRIx64 "\"",
	         m->content_hash);
	ok = lit(b, "{\"id\":", &oom) && uuid(b, &m->id, &oom) &&
	     lit(b, ",\"room_id\":", &oom) && cstr(b, m->room_id, &oom) &&
	     lit(b, ",\"user_id\":", &oom) && num(b, m->user_id, &oom) &&
	     lit(b, ",\"username\":", &oom) && cstr(b, m->username, &oom) &&
	     lit(b, ",\"content\":", &oom) &&
	     str(b, m->content ? m->content : "",
	         m->content ? m->content_len : 0, &oom) &&
	     lit(b, ",\"message_type\":\"", &oom) && lit(b, type, &oom) &&
	     lit(b, "\",\"created_at\":", &oom) &&
	     time_str(b, m->created_at, &oom) &&
	     lit(b, ",\"updated_at\":", &oom) &&
	     time_or_null(b, m->updated_at, &oom) &&
	     lit(b, ",\"metadata\":", &oom);
	if (ok) {
		moff = b->len;
		ok = metadata(b, m, &oom);
		mlen = b->len - moff;
	}
	ok = ok && lit(b, hash, &oom) &&
	     lit(b, ",\"compressed_content\":null,\"parent_id\":", &oom) &&
	     (m->has_parent ? uuid(b, &m->parent_id, &oom)
	                    : lit(b, "null", &oom)) &&
	     lit(b, ",\"thread_id\":", &oom) &&
	     (m->has_thread ? uuid(b, &m->thread_id, &oom)
	                    : lit(b, "null", &oom)) &&
	     lit(b, "}", &oom);
	if (ok) {
		if (meta_off)
			*meta_off = moff;
		if (meta_len)
			*meta_len = mlen;
		return 0;
	}
	b->len = len0;
	if (b->p)
		b->p[len0] = 0;
	return oom ? ENOMEM : FL_JSON_FALLBACK;
}
