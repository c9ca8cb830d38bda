/*
 * libshm/rt_value.c - the values a level answers with, a Redis value or a
 * PostgreSQL row's JSON, decoded and checked as put would accept them.
 *
 * Invariant (numbered in readthrough.c's list)
 *  4. A level answers only with the message asked for, as put would accept
 *     it: a value holding another id, malformed, larger than any message's
 *     JSON (json_max), without created_at or refused by put's validation
 *     is bad data, counted as that level's error, never served nor filled;
 *     the next level is asked. A room page's rows pass the same checks
 *     (shm__rt_level_msg) but the id's: a bad row is counted as L3's
 *     error and left off the page, as a get of its id serves no message.
 */
#include <errno.h>
#include <lz4frame.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "codec.h"
#include "readthrough.h"

/*
 * The largest JSON of a message put accepts. Its encoding is at most
 * 2 * max_content + 64 KiB (shm__msg_validate), and no encoded byte takes
 * more than 6 in JSON, our writer's or PostgreSQL's: a control character
 * is written \u00XX; an int32 (4 bytes) at most "-2147483648, "; an id (16)
 * 36 characters and quotes. 4 KiB more for the keys and punctuation. With
 * the default 64 KiB max_content: 1.13 MiB.
 */
static size_t json_max(const shm_env *env)
{
	return 6 * (2 * (size_t)env->opt.max_content + 65536) + 4096;
}

size_t shm__rt_redis_value_max(const shm_env *env)
{
	return json_max(env) + json_max(env) / 4096 + 64;
}

/* Grows a decompression buffer: 8 times the frame first, then doubling,
 * never past max; SHM_ETOOBIG once it is max already. */
static int grow(char **buf, size_t *cap, size_t frame, size_t max)
{
	size_t n = *cap ? *cap * 2 : frame * 8 + 1024;
	char *p;

	if (*cap >= max)
		return SHM_ETOOBIG;
	if (n > max)
		n = max;
	if (!(p = realloc(*buf, n)))
		return ENOMEM;
	*buf = p;
	*cap = n;
	return 0;
}

/* Decompresses the LZ4 frame buf into *out (malloc'd, *used bytes), at
 * most max bytes of it; buf is that one whole frame, nothing after it.
 * SHM_ECORRUPT (why says why) or ENOMEM. */
static int unlz4(const char *buf, size_t len, size_t max, char **out,
                 size_t *used, char *why, size_t whylen)
{
	size_t cap = 0, off = 0, r, dst, src;
	char *json = NULL;
	LZ4F_dctx *d;
	int rc = 0;

	if (LZ4F_isError(LZ4F_createDecompressionContext(&d, LZ4F_VERSION)))
		return ENOMEM;
	*used = 0;
	for (;;) {
		if (*used == cap && (rc = grow(&json, &cap, len, max)))
			break;
		dst = cap - *used;
		src = len - off;
		r = LZ4F_decompress(d, json + *used, &dst, buf + off, &src, NULL);
		*used += dst;
		off += src;
		if (LZ4F_isError(r) || (r && off >= len && dst == 0))
			rc = SHM_ECORRUPT;
		if (rc || r == 0)
			break;
	}
	LZ4F_freeDecompressionContext(d);
	if (rc == 0 && off < len) {
		free(json);
		snprintf(why, whylen, "%zu byte%s after its LZ4 frame", len - off,
		         shm__plural(len - off));
		return SHM_ECORRUPT;
	}
	if (rc == 0) {
		*out = json;
		return 0;
	}
	free(json);
	if (rc == ENOMEM)
		return rc;
	if (rc == SHM_ETOOBIG)
		snprintf(why, whylen, "LZ4 frame inflating past %zu bytes, "
		         "more than any message's JSON", max);
	else
		snprintf(why, whylen, "not a whole LZ4 frame");
	return SHM_ECORRUPT;
}

/* Decodes a level's value: JSON, or an LZ4 frame of JSON, of at most
 * json_max bytes. SHM_ECORRUPT (why says why) or ENOMEM. */
static int value_to_msg(shm_env *env, const char *buf, size_t len,
                        shm_msg **out, char *why, size_t whylen)
{
	static const uint8_t magic[4] = {0x04, 0x22, 0x4d, 0x18};
	size_t max = json_max(env);
	char *json = NULL;
	int rc;

	if (len >= 4 && memcmp(buf, magic, 4) == 0) {
		if ((rc = unlz4(buf, len, max, &json, &len, why, whylen)))
			return rc;
		buf = json;
	}
	if (len > max) {
		snprintf(why, whylen, "%zu bytes of JSON, more than any "
		         "message's (%zu)", len, max);
		rc = SHM_ECORRUPT;
	} else if ((rc = shm_msg_from_json(buf, len, out, why, whylen)) &&
	           rc != ENOMEM) {
		rc = SHM_ECORRUPT;
	}
	free(json);
	/* The JSON's content_hash is ignored (PostgreSQL's rows are built
	 * without it): computed here, before the message is used anywhere,
	 * Redis included. */
	if (rc == 0)
		(*out)->content_hash =
			XXH3_64bits((*out)->content, (*out)->content_len);
	return rc;
}

/* m is id's message (id NULL: any) as put would store it: created_at is
 * never 0 there (put gives a message without one the time of the put). */
static int check_msg(shm_env *env, const shm_uuid *id, const shm_msg *m,
                     char *why, size_t whylen)
{
	char got[37];
	int rc;

	if (id && memcmp(m->id.b, id->b, 16) != 0) {
		shm_uuid_format(&m->id, got);
		snprintf(why, whylen, "holds message %s", got);
		return SHM_ECORRUPT;
	}
	if (m->created_at == 0) {
		snprintf(why, whylen, "no created_at");
		return SHM_ECORRUPT;
	}
	if ((rc = shm__msg_validate(&env->opt, m))) {
		shm__errcause(rc, why, whylen);
		return SHM_ECORRUPT;
	}
	return 0;
}

int shm__rt_level_msg(shm_env *env, const char *level,
                      const shm_uuid *id, const char *row,
                      const char *buf, size_t len, shm_msg **out)
{
	char why[256] = "";
	int rc = value_to_msg(env, buf, len, out, why, sizeof why);

	if (rc == 0 && (rc = check_msg(env, id, *out, why, sizeof why))) {
		shm_msg_free(*out);
		*out = NULL;
	}
	if (rc == 0)
		return 0;
	if (row)
		return shm__err(rc, "%s row %s: %s", level, row, why);
	return shm__err(rc, "%s value: %s", level, why);
}
