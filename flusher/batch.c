/*
 * flusher/batch.c - batches of log records copied out of LMDB, coalescing,
 * and the small buffers and encoders both sinks use.
 *
 * A batch owns a copy of each record (in its chunks, not one allocation per
 * record: the fl_rec fields point into them), so it outlives the read
 * transaction it came from and survives retries, reconnects and backoff
 * unchanged. Key and payload point into the copy of the stored record when
 * they are part of it (an uncompressed payload); only a decompressed
 * payload is copied apart.
 */
#include <errno.h>
#include <lz4frame.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "fl.h"

struct fl_chunk {
	fl_chunk *next;
	size_t used, cap;
	_Alignas(16) uint8_t data[];
};

#define CHUNK_SIZE (1u << 20)
/* At most this much of spare chunks is kept between batches. */
#define SPARE_MAX (64u << 20)

void fl_batch_init(fl_batch *b)
{
	memset(b, 0, sizeof *b);
	b->reject = -1;
}

/* n bytes, 8-aligned like malloc's for the decoders' sake */
static uint8_t *batch_alloc(fl_batch *b, size_t n)
{
	fl_chunk *c = b->mem;

	n = (n + 7) & ~(size_t)7;
	if (!c || c->cap - c->used < n) {
		size_t cap = n > CHUNK_SIZE ? n : CHUNK_SIZE;
		if (cap == CHUNK_SIZE && b->spare) {
			c = b->spare;
			b->spare = c->next;
			b->spare_bytes -= CHUNK_SIZE;
		} else if (!(c = malloc(sizeof *c + cap))) {
			return NULL;
		}
		c->next = b->mem;
		c->used = 0;
		c->cap = cap;
		b->mem = c;
	}
	c->used += n;
	return c->data + c->used - n;
}

/* A copy of len bytes at p, or a pointer into the copy of raw when p is
 * part of raw (a decompressed payload lies anywhere else, above raw too:
 * compared as addresses, inside raw's bounds). */
static const uint8_t *keep(fl_batch *b, const uint8_t *p, size_t len,
                           const shm_log_rec *rec, const uint8_t *raw)
{
	uintptr_t at = (uintptr_t)p, base = (uintptr_t)rec->raw;
	uint8_t *d;

	if (!len)
		return raw ? raw : (const uint8_t *)"";
	if (rec->raw && at >= base && at - base < rec->raw_size &&
	    len <= rec->raw_size - (at - base))
		return raw + (at - base);
	if (!(d = batch_alloc(b, len)))
		return NULL;
	memcpy(d, p, len);
	return d;
}

/*
 * A graph or mark record's key with its object in libshm's canonical form
 * (graph.c invariant 5), a copy when it was not (the stored record stays
 * as it was, for dead letters); NULL without memory. A libshm older than
 * that form logged an object as its application spelled it, so one object
 * may come in two spellings, which PostgreSQL keeps in one row: coalescing
 * and the sinks must see one key, or the batch's two rows for that row make
 * ON CONFLICT DO UPDATE refuse the batch, every time it is retried.
 */
static const uint8_t *canon_key(fl_batch *b, int op, const uint8_t *key,
                                size_t klen)
{
	int cls = fl_op_class(op);
	size_t tl, at;
	char id[36];
	uint8_t *d;

	if ((cls != 'G' && cls != 'K') || klen <= 16 ||
	    !fl_object_split((const char *)key + 16, klen - 16, &tl) ||
	    klen - (at = 16 + tl + 1) != 36)
		return key;
	memcpy(id, key + at, 36);
	fl_object_id_canon(id, 36);
	if (memcmp(id, key + at, 36) == 0)
		return key;
	if (!(d = batch_alloc(b, klen)))
		return NULL;
	memcpy(d, key, at);
	memcpy(d + at, id, 36);
	return d;
}

int fl_batch_add(fl_batch *b, const shm_log_rec *rec)
{
	size_t klen = rec->key ? rec->key_len : 0;
	size_t plen = rec->payload ? rec->payload_len : 0;
	size_t rlen = rec->raw ? rec->raw_size : 0;
	uint8_t *raw = NULL;
	fl_rec *r;

	if (b->n == b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 128;
		fl_rec *nr = realloc(b->r, cap * sizeof *nr);
		if (!nr)
			return ENOMEM;
		b->r = nr;
		b->cap = cap;
	}
	if (rlen && !(raw = batch_alloc(b, rlen)))
		return ENOMEM;
	if (rlen)
		memcpy(raw, rec->raw, rlen);
	r = &b->r[b->n];
	memset(r, 0, sizeof *r);
	r->seq = rec->seq;
	r->time = rec->time;
	r->op = rec->op;
	r->key = keep(b, rec->key, klen, rec, raw);
	if (r->key)
		r->key = canon_key(b, r->op, r->key, klen);
	r->key_len = (uint32_t)klen;
	r->payload = keep(b, rec->payload, plen, rec, raw);
	r->payload_len = (uint32_t)plen;
	r->raw = raw;
	r->raw_size = (uint32_t)rlen;
	if (!r->key || !r->payload)
		return ENOMEM;
	b->n++;
	if (rec->seq > b->upto)
		b->upto = rec->seq;
	return 0;
}

void fl_batch_remove(fl_batch *b, size_t i)
{
	if (i >= b->n)
		return;
	memmove(&b->r[i], &b->r[i + 1], (b->n - i - 1) * sizeof *b->r);
	b->n--;
}

/*
 * Keeps as many chunks of CHUNK_SIZE as this batch used (at most SPARE_MAX)
 * for the next ones, and frees the rest: a backlog's batches (20,000
 * records, ~16 MiB) reuse the same memory instead of faulting fresh pages in
 * each time, and the first small batch after it gives the memory back. A
 * record larger than a chunk had its own, freed here.
 */
static void chunks_release(fl_batch *b)
{
	size_t used = 0;

	while (b->mem) {
		fl_chunk *c = b->mem;
		b->mem = c->next;
		if (c->cap != CHUNK_SIZE) {
			free(c);
			continue;
		}
		c->used = 0;
		c->next = b->spare;
		b->spare = c;
		b->spare_bytes += CHUNK_SIZE;
		used += CHUNK_SIZE;
	}
	size_t keep = used < SPARE_MAX ? used : SPARE_MAX;
	while (b->spare_bytes > keep) {
		fl_chunk *c = b->spare;
		b->spare = c->next;
		b->spare_bytes -= CHUNK_SIZE;
		free(c);
	}
}

void fl_batch_clear(fl_batch *b)
{
	chunks_release(b);
	b->n = 0;
	b->from = b->upto = 0;
	b->reject = -1;
	b->reason[0] = 0;
}

void fl_batch_free(fl_batch *b)
{
	fl_batch_clear(b);
	while (b->spare) {
		fl_chunk *c = b->spare;
		b->spare = c->next;
		free(c);
	}
	free(b->r);
	fl_batch_init(b);
}

int fl_op_class(int op)
{
	if (shm_op_is_msg(op))
		return 'M';
	switch (op) {
	case SHM_OP_STATIC_PUT:
	case SHM_OP_STATIC_BUST:
		return 'S';
	case SHM_OP_GRAPH_SET:
	case SHM_OP_GRAPH_DROP:
		return 'G';
	case SHM_OP_MARK:
		return 'K';
	}
	return 0;
}

int fl_batch_coalesce(fl_batch *b)
{
	size_t cap = 16;
	long *slot;

	for (size_t i = 0; i < b->n; i++) {
		b->r[i].superseded = false;
		b->r[i].first_op = b->r[i].op;
	}
	if (b->n < 2)
		return 0;
	while (cap < b->n * 2)
		cap *= 2;
	if (!(slot = malloc(cap * sizeof *slot)))
		return ENOMEM;
	for (size_t i = 0; i < cap; i++)
		slot[i] = -1;
	/* newest first: the first record seen for a key is the one kept */
	for (size_t j = b->n; j-- > 0;) {
		fl_rec *r = &b->r[j];
		int cls = fl_op_class(r->op);
		if (!cls)
			continue;
		uint64_t h = XXH3_64bits_withSeed(r->key, r->key_len,
		                                  (uint64_t)cls);
		for (size_t s = h & (cap - 1);; s = (s + 1) & (cap - 1)) {
			if (slot[s] < 0) {
				slot[s] = (long)j;
				break;
			}
			fl_rec *o = &b->r[slot[s]];
			if (fl_op_class(o->op) == cls &&
			    o->key_len == r->key_len &&
			    memcmp(o->key, r->key, r->key_len) == 0) {
				r->superseded = true;
				o->first_op = r->op; /* earlier than any before */
				break;
			}
		}
	}
	free(slot);
	return 0;
}

/* ------------------------------------------------------------- buffers */

int fl_buf_reserve(fl_buf *b, size_t more)
{
	if (b->len + more + 1 <= b->cap)
		return 0;
	size_t cap = b->cap ? b->cap : 4096;
	while (cap < b->len + more + 1)
		cap *= 2;
	char *p = realloc(b->p, cap);
	if (!p)
		return ENOMEM;
	b->p = p;
	b->cap = cap;
	return 0;
}

int fl_buf_add(fl_buf *b, const void *s, size_t len)
{
	if (fl_buf_reserve(b, len))
		return ENOMEM;
	memcpy(b->p + b->len, s, len);
	b->len += len;
	b->p[b->len] = 0;
	return 0;
}

int fl_buf_adds(fl_buf *b, const char *s)
{
	return fl_buf_add(b, s, strlen(s));
}

int fl_buf_add_int(fl_buf *b, const char *pre, int64_t v, const char *post)
{
	char s[24], *e = s + sizeof s, *d = e;
	uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;

	do
		*--d = (char)('0' + u % 10);
	while ((u /= 10));
	if (v < 0)
		*--d = '-';
	if (fl_buf_adds(b, pre) || fl_buf_add(b, d, (size_t)(e - d)))
		return ENOMEM;
	return fl_buf_adds(b, post);
}

int fl_buf_addf(fl_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || fl_buf_reserve(b, (size_t)n))
		return ENOMEM;
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

/* COPY ... FROM STDIN (FORMAT text): backslash, tab, newline and carriage
 * return are escaped; everything else (valid UTF-8, no NUL) goes as is. */
int fl_buf_copy_field(fl_buf *b, const char *s, size_t len)
{
	if (fl_buf_reserve(b, len * 2))
		return ENOMEM;
	char *d = b->p + b->len;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		switch (c) {
		case '\\': *d++ = '\\'; *d++ = '\\'; break;
		case '\t': *d++ = '\\'; *d++ = 't'; break;
		case '\n': *d++ = '\\'; *d++ = 'n'; break;
		case '\r': *d++ = '\\'; *d++ = 'r'; break;
		default: *d++ = c;
		}
	}
	b->len = (size_t)(d - b->p);
	b->p[b->len] = 0;
	return 0;
}

void fl_buf_free(fl_buf *b)
{
	free(b->p);
	memset(b, 0, sizeof *b);
}

/* --------------------------------------------------------------- misc */

int fl_lz4_maybe(const void *data, size_t len, size_t threshold,
                 const void **out, size_t *out_len, bool *owned)
{
	LZ4F_preferences_t prefs;
	size_t cap, n;
	void *dst;

	if (len <= threshold) {
		*out = data;
		*out_len = len;
		*owned = false;
		return 0;
	}
	memset(&prefs, 0, sizeof prefs);
	prefs.frameInfo.contentSize = len; /* lets readers size their buffer */
	cap = LZ4F_compressFrameBound(len, &prefs);
	if (!(dst = malloc(cap)))
		return ENOMEM;
	n = LZ4F_compressFrame(dst, cap, data, len, &prefs);
	if (LZ4F_isError(n)) {
		free(dst);
		return EINVAL;
	}
	*out = dst;
	*out_len = n;
	*owned = true;
	return 0;
}

bool fl_object_split(const char *obj, size_t len, size_t *type_len)
{
	for (size_t i = len; i-- > 0;)
		if (obj[i] == '/') {
			*type_len = i;
			return i > 0 && i + 1 < len;
		}
	return false;
}

void fl_object_id_canon(char *id, size_t len)
{
	shm_uuid u;
	char s[37];

	if (len != 36)
		return;
	memcpy(s, id, 36);
	s[36] = 0;
	if (shm_uuid_parse(s, &u) == 0) {
		shm_uuid_format(&u, s);
		memcpy(id, s, 36);
	}
}

void fl_sink_seterr(fl_sink *s, const char *fmt, ...)
{
	char text[SHM__SHOWN_LONG_BYTES + 2]; /* a byte past: "..." */
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	shm__shown_lines(text, s->errmsg);
	s->dead_reason[0] = 0; /* another error's */
}
