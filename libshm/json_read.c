/*
 * json_read.c - messages from the seed's serde JSON shape (drawn in
 * json_write.c), parsed by jansson.
 *
 * Input is checked strictly, the way serde would with deny_unknown_fields:
 *  1. Unknown fields are rejected at every level; duplicate keys too.
 *  2. Required: room_id, user_id, username, content, message_type. Optional
 *     (left zero for shm_msg_put to fill in): id, created_at, content_hash,
 *     metadata and each of metadata's fields. Option<> fields (updated_at,
 *     parent_id, thread_id, last_reply_at, compressed_content) may be
 *     missing or null; a nil parent_id or thread_id is refused (SHM_EUUID),
 *     as put refuses it.
 *  3. content_hash, if given, must be a string and is ignored: shm_msg_put
 *     always recomputes it (XXH3-64 of the content), so an imported hash
 *     can never disagree with its content. compressed_content, if given,
 *     must be null or an array of bytes, and is ignored too (compression
 *     applies to stored values and log records).
 *  4. Each failure has its own code and a reason naming the field:
 *     SHM_EJSON (syntax, types, ranges, missing/unknown fields), SHM_EUUID,
 *     SHM_ETYPE, SHM_ETIME, SHM_EUTF8, SHM_ENUL, SHM_ETOOBIG (static limits
 *     of shm.h; the content size limit depends on the environment and is
 *     checked by shm_msg_put).
 *
 * Layout of shm_msg_from_json's result: one malloc'd block, freed with
 * shm_msg_free() (free()):
 *   shm_msg | shm_reaction[] | shm_attachment[] | int32 user ids of every
 *   reaction | int32 mentions[] | strings, each NUL-terminated
 * It is built in two passes over the parsed tree: the first validates and
 * measures (arena without memory), the second fills the block.
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

typedef struct arena {
	char *base; /* NULL while measuring */
	size_t off;
} arena;

static void *arena_alloc(arena *a, size_t n, size_t align)
{
	void *p;

	a->off = (a->off + align - 1) & ~(align - 1);
	p = a->base ? a->base + a->off : NULL;
	a->off += n;
	return p;
}

static const char *arena_str(arena *a, const char *s, size_t len)
{
	char *p = arena_alloc(a, len + 1, 1);

	if (p) {
		memcpy(p, s, len);
		p[len] = '\0';
	}
	return p;
}

typedef struct pctx {
	arena a;
	char *err;
	size_t errlen;
} pctx;

__attribute__((format(printf, 3, 4))) static int fail(pctx *c, int rc,
                                                      const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	if (c->err && c->errlen)
		snprintf(c->err, c->errlen, "%s", buf);
	return shm__err(rc, "%s", buf);
}

static const char *type_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT: return "object";
	case JSON_ARRAY: return "array";
	case JSON_STRING: return "string";
	case JSON_INTEGER: return "integer";
	case JSON_REAL: return "number";
	case JSON_TRUE:
	case JSON_FALSE: return "boolean";
	case JSON_NULL: return "null";
	}
	return "value";
}

static int want(pctx *c, const char *path, const char *what, const json_t *v)
{
	return fail(c, SHM_EJSON, "field '%s': expected %s, got %s", path, what,
	            type_name(v));
}

static int check_fields(pctx *c, json_t *o, const char *where,
                        const char *const *known)
{
	const char *key;
	char shown[SHM__SHOWN_MAX];
	json_t *v;

	json_object_foreach(o, key, v) {
		const char *const *k = known;
		while (*k && strcmp(*k, key) != 0)
			k++;
		if (!*k)
			return fail(c, SHM_EJSON, "unknown field '%s%s'", where,
			            shm__shown_str(key, shown));
	}
	return 0;
}

/* Validates text s[0..len) and copies it into the arena. */
static int take_text(pctx *c, const char *s, size_t len, const char *path,
                     size_t max, bool allow_empty, const char **out,
                     uint32_t *out_len)
{
	int rc;

	if (len == 0 && !allow_empty)
		return fail(c, SHM_EINVAL, "field '%s': must not be empty", path);
	if (len > max)
		return fail(c, SHM_ETOOBIG,
		            "field '%s': %zu bytes, at most %zu allowed", path, len,
		            max);
	/* jansson guarantees UTF-8; this also catches \u0000 (JSON_ALLOW_NUL). */
	if ((rc = shm__check_text(path, s, len, max, allow_empty)) != 0) {
		/* shm__check_text says "<path>: <reason>". */
		char msg[256];
		const char *why = msg;
		size_t pl = strlen(path);
		shm__errcause(rc, msg, sizeof msg);
		if (strncmp(why, path, pl) == 0 && why[pl] == ':')
			why += pl + 2;
		return fail(c, rc, "field '%s': %s", path, why);
	}
	*out = arena_str(&c->a, s, len);
	if (out_len)
		*out_len = (uint32_t)len;
	return 0;
}

static int get_str(pctx *c, json_t *v, const char *path, size_t max,
                   bool allow_empty, const char **out, uint32_t *out_len)
{
	if (!json_is_string(v))
		return want(c, path, "string", v);
	return take_text(c, json_string_value(v), json_string_length(v), path,
	                 max, allow_empty, out, out_len);
}

static int get_int(pctx *c, json_t *v, const char *path, json_int_t lo,
                   json_int_t hi, const char *what, json_int_t *out)
{
	if (!json_is_integer(v) || json_integer_value(v) < lo ||
	    json_integer_value(v) > hi)
		return fail(c, SHM_EJSON, "field '%s': expected %s%s%s", path,
		            what, json_is_integer(v) ? "" : ", got ",
		            json_is_integer(v) ? "" : type_name(v));
	*out = json_integer_value(v);
	return 0;
}

static int get_i32(pctx *c, json_t *v, const char *path, int32_t *out)
{
	json_int_t x;
	int rc = get_int(c, v, path, INT32_MIN, INT32_MAX,
	                 "integer in int32 range", &x);
	if (!rc)
		*out = (int32_t)x;
	return rc;
}

static int get_u32(pctx *c, json_t *v, const char *path, uint32_t *out)
{
	json_int_t x;
	int rc = get_int(c, v, path, 0, UINT32_MAX, "integer in uint32 range",
	                 &x);
	if (!rc)
		*out = (uint32_t)x;
	return rc;
}

static int get_uuid(pctx *c, json_t *v, const char *path, shm_uuid *out)
{
	char shown[SHM__SHOWN_MAX];

	if (!json_is_string(v))
		return want(c, path, "UUID string", v);
	if (json_string_length(v) != 36 ||
	    shm_uuid_parse(json_string_value(v), out) != 0)
		return fail(c, SHM_EUUID, "field '%s': malformed UUID '%s'",
		            path, shm__shown(json_string_value(v),
		                             json_string_length(v), shown));
	return 0;
}

/* A UUID or null/missing (*has = false). */
static int get_opt_uuid(pctx *c, json_t *v, const char *path, bool *has,
                        shm_uuid *out)
{
	*has = false;
	if (!v || json_is_null(v))
		return 0;
	*has = true;
	int rc = get_uuid(c, v, path, out);
	if (!rc && shm_uuid_is_nil(out)) /* put refuses it: no message's */
		return fail(c, SHM_EUUID, "field '%s': the nil UUID, which "
		            "names no message (null for none)", path);
	return rc;
}

/* An RFC 3339 string, or (nullable) null/missing -> 0. */
static int get_time(pctx *c, json_t *v, const char *path, bool nullable,
                    int64_t *out)
{
	int rc;

	*out = 0;
	if (!v || (nullable && json_is_null(v)))
		return 0;
	if (!json_is_string(v))
		return want(c, path, nullable ? "RFC 3339 string or null"
		                              : "RFC 3339 string",
		            v);
	if (json_string_length(v) != strlen(json_string_value(v)))
		return fail(c, SHM_ETIME, "field '%s': NUL in timestamp", path);
	if ((rc = shm_time_parse(json_string_value(v), out)) != 0) {
		char msg[256];
		shm__errcause(rc, msg, sizeof msg);
		return fail(c, rc, "field '%s': %s", path, msg);
	}
	if (*out == 0) /* 0 is "none" (or "now" for created_at) in shm_msg */
		return fail(c, SHM_ETIME, "field '%s': %s is the epoch, which "
		            "a message cannot hold: 0 means none", path,
		            json_string_value(v));
	if (*out < 0) /* put's range (SHM_MSG_TIME_RANGE), which the writer's */
		return fail(c, SHM_ETIME, "field '%s': %s is before 1970: a "
		            "message's times are " SHM_MSG_TIME_RANGE, path,
		            json_string_value(v));
	return 0;
}

static int get_list(pctx *c, json_t *v, const char *path, size_t *n)
{
	if (!json_is_array(v))
		return want(c, path, "array", v);
	*n = json_array_size(v);
	if (*n > SHM_MAX_LIST)
		return fail(c, SHM_ETOOBIG,
		            "field '%s': %zu items, at most %d allowed", path, *n,
		            SHM_MAX_LIST);
	return 0;
}

static int cmp_reaction(const void *a, const void *b)
{
	return strcmp(((const shm_reaction *)a)->emoji,
	              ((const shm_reaction *)b)->emoji);
}

static const char *const top_fields[] = {
	"id", "room_id", "user_id", "username", "content", "message_type",
	"created_at", "updated_at", "metadata", "content_hash",
	"compressed_content", "parent_id", "thread_id", NULL};
static const char *const meta_fields[] = {
	"edited", "edit_count", "reactions", "mentions", "attachments",
	"reply_count", "last_reply_at", NULL};
static const char *const att_fields[] = {"id", "filename", "content_type",
                                         "size", "url", NULL};

static int parse_metadata(pctx *c, json_t *md, shm_msg *m)
{
	json_t *v, *rx, *mn, *at;
	char path[SHM__SHOWN_MAX + 32], shown[SHM__SHOWN_MAX];
	int rc;

	if (!json_is_object(md))
		return want(c, "metadata", "object", md);
	if ((rc = check_fields(c, md, "metadata.", meta_fields)))
		return rc;
	if ((v = json_object_get(md, "edited"))) {
		if (!json_is_boolean(v))
			return want(c, "metadata.edited", "boolean", v);
		m->edited = json_is_true(v);
	}
	if ((v = json_object_get(md, "edit_count")) &&
	    (rc = get_u32(c, v, "metadata.edit_count", &m->edit_count)))
		return rc;
	if ((v = json_object_get(md, "reply_count")) &&
	    (rc = get_u32(c, v, "metadata.reply_count", &m->reply_count)))
		return rc;
	if ((rc = get_time(c, json_object_get(md, "last_reply_at"),
	                   "metadata.last_reply_at", true, &m->last_reply_at)))
		return rc;

	if ((rx = json_object_get(md, "reactions"))) {
		const char *emoji;
		json_t *ids;
		shm_reaction *arr, tmp;
		size_t i = 0;

		if (!json_is_object(rx))
			return want(c, "metadata.reactions", "object", rx);
		if (json_object_size(rx) > SHM_MAX_LIST)
			return fail(c, SHM_ETOOBIG,
			            "field 'metadata.reactions': %zu emojis, at "
			            "most %d allowed",
			            json_object_size(rx), SHM_MAX_LIST);
		m->n_reactions = (uint32_t)json_object_size(rx);
		arr = arena_alloc(&c->a, m->n_reactions * sizeof *arr,
		                  _Alignof(shm_reaction));
		m->reactions = arr;
		json_object_foreach(rx, emoji, ids) {
			shm_reaction *r = arr ? &arr[i] : &tmp;
			int32_t *uids;
			size_t n;

			if (!*emoji)
				return fail(c, SHM_EINVAL, "field "
				            "'metadata.reactions': an emoji must "
				            "not be empty");
			/* the emoji shown printably (it may hold controls) */
			snprintf(path, sizeof path, "metadata.reactions.%s",
			         shm__shown_str(emoji, shown));
			if ((rc = take_text(c, emoji, strlen(emoji), path,
			                    SHM_MAX_EMOJI, false, &r->emoji,
			                    NULL)))
				return rc;
			if ((rc = get_list(c, ids, path, &n)))
				return rc;
			r->n_users = (uint32_t)n;
			uids = arena_alloc(&c->a, n * sizeof *uids,
			                   _Alignof(int32_t));
			r->user_ids = uids;
			for (size_t j = 0; j < n; j++) {
				char ip[sizeof path + 24];
				int32_t u;
				snprintf(ip, sizeof ip, "%s[%zu]", path, j);
				if ((rc = get_i32(c, json_array_get(ids, j), ip,
				                  &u)))
					return rc;
				for (size_t k = 0; k < j; k++)
					if (json_integer_value(json_array_get(
					            ids, k)) == u)
						return fail(c, SHM_EJSON,
						            "field '%s': duplicate "
						            "user id %" PRId32,
						            path, u);
				if (uids)
					uids[j] = u;
			}
			if (n)
				i++; /* else no users, no reaction: dropped */
		}
		m->n_reactions = (uint32_t)i;
		if (arr && m->n_reactions > 1)
			qsort(arr, m->n_reactions, sizeof *arr, cmp_reaction);
	}

	if ((mn = json_object_get(md, "mentions"))) {
		size_t n;
		int32_t *arr;

		if ((rc = get_list(c, mn, "metadata.mentions", &n)))
			return rc;
		m->n_mentions = (uint32_t)n;
		arr = arena_alloc(&c->a, n * sizeof *arr, _Alignof(int32_t));
		m->mentions = arr;
		for (size_t j = 0; j < n; j++) {
			int32_t u;
			snprintf(path, sizeof path, "metadata.mentions[%zu]", j);
			if ((rc = get_i32(c, json_array_get(mn, j), path, &u)))
				return rc;
			if (arr)
				arr[j] = u;
		}
	}

	if ((at = json_object_get(md, "attachments"))) {
		size_t n;
		shm_attachment *arr, tmp;

		if ((rc = get_list(c, at, "metadata.attachments", &n)))
			return rc;
		m->n_attachments = (uint32_t)n;
		arr = arena_alloc(&c->a, n * sizeof *arr,
		                  _Alignof(shm_attachment));
		m->attachments = arr;
		for (size_t j = 0; j < n; j++) {
			shm_attachment *a = arr ? &arr[j] : &tmp;
			json_t *ao = json_array_get(at, j);
			char where[64];
			json_int_t size;
			static const struct {
				const char *name;
				size_t off;
			} strs[] = {
				{"filename", offsetof(shm_attachment, filename)},
				{"content_type",
				 offsetof(shm_attachment, content_type)},
				{"url", offsetof(shm_attachment, url)},
			};

			snprintf(where, sizeof where, "metadata.attachments[%zu]",
			         j);
			if (!json_is_object(ao))
				return want(c, where, "object", ao);
			snprintf(path, sizeof path, "%s.", where);
			if ((rc = check_fields(c, ao, path, att_fields)))
				return rc;
			for (size_t k = 0; k < sizeof strs / sizeof *strs; k++) {
				json_t *sv = json_object_get(ao, strs[k].name);
				snprintf(path, sizeof path, "%s.%s", where,
				         strs[k].name);
				if (!sv)
					return fail(c, SHM_EJSON,
					            "field '%s': missing", path);
				if ((rc = get_str(c, sv, path, SHM_MAX_NAME, true,
				                  (const char **)((char *)a +
				                                  strs[k].off),
				                  NULL)))
					return rc;
			}
			snprintf(path, sizeof path, "%s.id", where);
			if (!json_object_get(ao, "id"))
				return fail(c, SHM_EJSON, "field '%s': missing",
				            path);
			if ((rc = get_uuid(c, json_object_get(ao, "id"), path,
			                   &a->id)))
				return rc;
			snprintf(path, sizeof path, "%s.size", where);
			if (!json_object_get(ao, "size"))
				return fail(c, SHM_EJSON, "field '%s': missing",
				            path);
			if ((rc = get_int(c, json_object_get(ao, "size"), path, 0,
			                  INT64_MAX, "unsigned integer", &size)))
				return rc;
			a->size = (uint64_t)size;
		}
	}
	return 0;
}

/* One pass: validates root and fills *m (and the arena, when it has memory). */
static int parse(pctx *c, json_t *root, shm_msg *m)
{
	static const char *const required[] = {"room_id", "user_id",
	                                       "username", "content",
	                                       "message_type"};
	char shown[SHM__SHOWN_MAX];
	json_t *v;
	int rc;

	memset(m, 0, sizeof *m);
	if (!json_is_object(root))
		return fail(c, SHM_EJSON, "expected a JSON object, got %s",
		            type_name(root));
	if ((rc = check_fields(c, root, "", top_fields)))
		return rc;
	for (size_t i = 0; i < sizeof required / sizeof *required; i++)
		if (!json_object_get(root, required[i]))
			return fail(c, SHM_EJSON, "field '%s': missing",
			            required[i]);

	if ((v = json_object_get(root, "id"))) {
		if ((rc = get_uuid(c, v, "id", &m->id)))
			return rc;
		if (shm_uuid_is_nil(&m->id)) /* put's "none": a new id */
			return fail(c, SHM_EUUID, "field 'id': the nil UUID, "
			            "which a message cannot hold: nil means "
			            "none (leave id out for a new one)");
	}
	if ((rc = get_str(c, json_object_get(root, "room_id"), "room_id",
	                  SHM_MAX_ROOM, false, &m->room_id, NULL)))
		return rc;
	if ((rc = get_i32(c, json_object_get(root, "user_id"), "user_id",
	                  &m->user_id)))
		return rc;
	if ((rc = get_str(c, json_object_get(root, "username"), "username",
	                  SHM_MAX_USERNAME, true, &m->username, NULL)))
		return rc;
	if ((rc = get_str(c, json_object_get(root, "content"), "content",
	                  UINT32_MAX, true, &m->content, &m->content_len)))
		return rc;
	v = json_object_get(root, "message_type");
	if (!json_is_string(v))
		return want(c, "message_type", "string", v);
	if (json_string_length(v) != strlen(json_string_value(v)))
		return fail(c, SHM_ENUL, "field 'message_type': NUL byte at "
		            "offset %zu", strlen(json_string_value(v)));
	if (shm_msg_type_parse(json_string_value(v), &m->type) != 0)
		return fail(c, SHM_ETYPE, "unknown message_type '%s': not "
		            "one of Text, Image, File, Audio, Video, System, "
		            "Edit, Delete, Reaction",
		            shm__shown_str(json_string_value(v), shown));
	if ((rc = get_time(c, json_object_get(root, "created_at"), "created_at",
	                   false, &m->created_at)))
		return rc;
	if ((rc = get_time(c, json_object_get(root, "updated_at"), "updated_at",
	                   true, &m->updated_at)))
		return rc;
	if ((v = json_object_get(root, "metadata")) &&
	    (rc = parse_metadata(c, v, m)))
		return rc;
	/* Ignored: shm_msg_put recomputes the hash from the content. */
	if ((v = json_object_get(root, "content_hash")) && !json_is_string(v))
		return want(c, "content_hash", "string", v);
	if ((v = json_object_get(root, "compressed_content")) &&
	    !json_is_null(v)) {
		size_t i;
		json_t *b;
		if (!json_is_array(v))
			return want(c, "compressed_content", "null or array", v);
		json_array_foreach(v, i, b) {
			json_int_t x;
			char path[64];
			snprintf(path, sizeof path, "compressed_content[%zu]", i);
			if ((rc = get_int(c, b, path, 0, 255, "byte (0..255)",
			                  &x)))
				return rc;
		}
	}
	if ((rc = get_opt_uuid(c, json_object_get(root, "parent_id"),
	                       "parent_id", &m->has_parent, &m->parent_id)))
		return rc;
	if ((rc = get_opt_uuid(c, json_object_get(root, "thread_id"),
	                       "thread_id", &m->has_thread, &m->thread_id)))
		return rc;
	return 0;
}

/*
 * jansson's lexer ignores a failed growth of its token buffer: the byte it
 * could not store is dropped and the parse goes on, so a string or an
 * integer may come out a character short. These two sums catch it: every
 * byte of the text's strings (decoded) and integers must be in the tree.
 * Reals are left out on both sides (a real's text has many spellings).
 */
static uint32_t hex4(const char *s)
{
	uint32_t v = 0;

	for (int i = 0; i < 4; i++)
		v = v << 4 | (uint32_t)(s[i] <= '9' ? s[i] - '0'
		                                    : (s[i] | 0x20) - 'a' + 10);
	return v;
}

/* The sum over json's tokens, which jansson accepted: valid JSON. */
static size_t text_sum(const char *s, size_t len)
{
	size_t sum = 0, i = 0;

	while (i < len) {
		if (s[i] == '"') {
			for (i++; s[i] != '"'; sum++) {
				if (s[i] != '\\') {
					i++;
					continue;
				}
				if (s[i + 1] != 'u') {
					i += 2;
					continue;
				}
				uint32_t cp = hex4(s + i + 2);
				i += 6;
				if (cp >= 0xd800 && cp < 0xdc00) { /* + low half */
					i += 6;
					sum += 3;
				} else {
					sum += cp < 0x80 ? 0 : cp < 0x800 ? 1 : 2;
				}
			}
			i++;
		} else if (s[i] == '-' || (s[i] >= '0' && s[i] <= '9')) {
			size_t t = i;
			bool real = false;
			while (i < len && s[i] && strchr("+-0123456789.eE", s[i]))
				real |= strchr(".eE", s[i++]) != NULL;
			if (!real) /* "-0" reads as 0 */
				sum += i - t - (i - t == 2 && s[t] == '-' &&
				                s[t + 1] == '0');
		} else {
			i++;
		}
	}
	return sum;
}

static size_t tree_sum(json_t *j)
{
	const char *key;
	size_t sum = 0, i;
	json_t *v;

	switch (json_typeof(j)) {
	case JSON_STRING:
		return json_string_length(j);
	case JSON_INTEGER:
		return (size_t)snprintf(NULL, 0, "%" JSON_INTEGER_FORMAT,
		                        json_integer_value(j));
	case JSON_OBJECT:
		json_object_foreach(j, key, v)
			sum += strlen(key) + tree_sum(v);
		return sum;
	case JSON_ARRAY:
		json_array_foreach(j, i, v)
			sum += tree_sum(v);
		return sum;
	default:
		return 0;
	}
}

int shm_msg_from_json(const char *json, size_t len, shm_msg **out,
                      char *err, size_t errlen)
{
	pctx c = {.err = err, .errlen = errlen};
	json_error_t je = {0};
	json_t *root;
	shm_msg dummy, *m;
	int rc;

	if (err && errlen)
		err[0] = '\0';
	if (out)
		*out = NULL;
	if (!json)
		return fail(&c, SHM_EINVAL, "shm_msg_from_json: NULL json");
	if (!out)
		return fail(&c, SHM_EINVAL, "shm_msg_from_json: NULL out");
	/* jansson would report a raw NUL as the end of the input */
	const char *nul = memchr(json, '\0', len);
	if (nul)
		return fail(&c, SHM_ENUL, "NUL byte at offset %zu: JSON writes "
		            "one in a string as \\u0000", (size_t)(nul - json));
	root = json_loadb(json, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL,
	                  &je);
	if (!root) {
		/* jansson leaves its error empty, code unset, when only its
		 * lexer's buffer cannot be allocated */
		if (!je.text[0])
			return fail(&c, ENOMEM, "out of memory parsing JSON");
		/* jansson's text quotes the input ("near '<token>'") */
		char why[SHM__SHOWN_MAX];
		shm__shown_str(je.text, why);
		switch (json_error_code(&je)) {
		case json_error_invalid_utf8:
			return fail(&c, SHM_EUTF8, "invalid UTF-8 at byte %d",
			            je.position);
		case json_error_invalid_syntax:
			if (strncmp(je.text, "invalid Unicode", 15) == 0)
				return fail(&c, SHM_EUTF8, "%s at byte %d", why,
				            je.position);
			return fail(&c, SHM_EJSON, "malformed JSON: %s at byte %d",
			            why, je.position);
		case json_error_null_byte_in_key:
			return fail(&c, SHM_ENUL, "NUL byte in a key at byte %d",
			            je.position);
		case json_error_out_of_memory:
			return fail(&c, ENOMEM, "out of memory parsing JSON");
		default:
			return fail(&c, SHM_EJSON, "malformed JSON: %s at byte %d",
			            why, je.position);
		}
	}
	if (tree_sum(root) != text_sum(json, len)) {
		rc = fail(&c, ENOMEM, "out of memory parsing JSON: jansson "
		          "lost a character");
		goto out;
	}
	/* Pass 1: validate and measure. */
	c.a.off = sizeof(shm_msg);
	if ((rc = parse(&c, root, &dummy)))
		goto out;
	/* Pass 2: fill one block (the same walk cannot fail now). */
	size_t size = c.a.off;
	if (!(c.a.base = malloc(size))) {
		rc = fail(&c, ENOMEM, "out of memory for %zu bytes", size);
		goto out;
	}
	m = (shm_msg *)c.a.base;
	c.a.off = sizeof(shm_msg);
	if ((rc = parse(&c, root, m))) {
		free(m);
		goto out;
	}
	*out = m;
out:
	json_decref(root);
	return rc;
}
