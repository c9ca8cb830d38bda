/*
 * libshm/graph.c - objects, their dependency graph, busting by references
 * and the marks for the connection cleanup (Osuny's "Cacher les statics").
 *
 * An object is "TYPE/ID" inside a website (a UUID); its keys in every
 * database are website(16) + object bytes in canonical form (shm__objkey,
 * invariant 5). The website itself is the object
 * "Communication::Website/<website uuid>". A website is direct by its type:
 * every "Communication::Website/<id>" object (this website or another one
 * embedded here) is direct, declared or not, and shm_deps_set refuses to
 * declare one indirect; any other object is direct iff declared so. The
 * flusher's connection cleanup applies the same rule (its graph in C,
 * flusher/cleanup_graph.c, and its old way's SQL, cleanup_baseline.c).
 *
 * Databases (see internal.h):
 *   obj   key -> u8 direct (1) / indirect (0), set by shm_deps_set
 *   dep   key -> DUPSORT object that key's output embeds (forward edges)
 *   ref   key -> DUPSORT object whose output embeds key (reverse edges)
 *   mark  key -> i64 time (us), u8 reason (1 save, 2 destroy)
 *
 * Walks (shm_deps_recursive forward over dep, shm_deps_referrers backward
 * over ref): breadth-first from the start object; every object reached is
 * included; indirect objects are expanded, direct ones are included but not
 * expanded; an object already seen is not visited again (cycles cut); the
 * start object is always expanded and never included. Results are sorted.
 *
 * Busting (save, destroy, bust), in one write transaction each:
 *   save     STATIC_BUST for the object and each of its references (always,
 *            whether or not L1 still holds the static: Redis may, after an
 *            L1 eviction), then MARK (reason 1).
 *   destroy  as save with MARK reason 2, then GRAPH_DROP: the object's
 *            declaration and every edge touching it, both directions (a
 *            destroyed object embeds nothing and is embedded by nothing).
 *   bust     STATIC_BUST for the object alone.
 *
 * Invariants
 *  1. For every dep entry (k -> o) there is a ref entry (o -> k), and back.
 *  2. Every change here appends its log record in the same transaction,
 *     but shm__object_forget_w's (upgrade.c: an older libshm's spelling of
 *     an object, which no reader reads and no sink keys).
 *  3. Bad input (object, website, dependency, the object among its own
 *     dependencies, a website declared indirect) is refused before any
 *     transaction begins: nothing changes.
 *  4. shm_deps_set stores no edge from an object to itself.
 *  5. Objects are stored, compared and logged in canonical form: an ID of
 *     the 8-4-4-4-12 hex form is a UUID and is put in lower case, as
 *     PostgreSQL prints its uuid columns (Osuny's connections, where
 *     "Person/7F3C..." and "Person/7f3c..." are one object); any other ID
 *     is kept byte for byte. The caller's spelling never reaches a key.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "internal.h"

/*
 * LMDB's largest key is 511 bytes; the L1 index (lru) prefixes a static's
 * key with 9 bytes (be64 seq + kind), and the key is 16 bytes of website +
 * the object: objects longer than this cannot be stored.
 */
#define SHM__LMDB_MAXKEY 511
#define SHM__OBJECT_LIMIT                                                      \
	(SHM_MAX_OBJECT < SHM__LMDB_MAXKEY - 9 - 16                            \
	         ? SHM_MAX_OBJECT                                              \
	         : SHM__LMDB_MAXKEY - 9 - 16)

static int mdberr(int rc, const char *what)
{
	return rc == MDB_MAP_FULL ? rc : shm__err_mdb(rc, what);
}

/* ------------------------------------------------------------ objects */

__attribute__((nonnull)) static int object_check_len(const char *object,
                                                 size_t len)
{
	char b[SHM__SHOWN_MAX];
	const char *slash;
	size_t i = 0, k;

	if (len == 0)
		return shm__err(SHM_EOBJECT, "object '': empty, expected TYPE/ID");
	if (len > SHM__OBJECT_LIMIT) /* len is cut there: not the length */
		return shm__err(SHM_EOBJECT,
		                "object '%s': longer than the %d bytes allowed",
		                shm__shown(object, len, b), SHM__OBJECT_LIMIT);
	while (i < len) {
		k = shm__printable_seq((const unsigned char *)object + i,
		                          len - i);
		if (k == 0)
			return shm__err(SHM_EOBJECT,
			                "object '%s': whitespace, control character "
			                "or invalid UTF-8 at byte %zu",
			                shm__shown(object, len, b), i);
		i += k;
	}
	slash = memrchr(object, '/', len);
	if (slash == NULL)
		return shm__err(SHM_EOBJECT, "object '%s': no '/', expected TYPE/ID",
		                shm__shown(object, len, b));
	if (slash == object)
		return shm__err(SHM_EOBJECT, "object '%s': empty TYPE",
		                shm__shown(object, len, b));
	if (slash == object + len - 1)
		return shm__err(SHM_EOBJECT, "object '%s': empty ID",
		                shm__shown(object, len, b));
	return 0;
}

int shm_object_check(const char *object)
{
	if (object == NULL)
		return shm__null(__func__, "object");
	/* strnlen: a runaway string is reported as too long, not scanned */
	return object_check_len(object, strnlen(object, SHM_MAX_OBJECT + 1));
}

/* Invariant 5, in place: o[0..len) passed object_check_len. */
static void object_canon(char *o, size_t len)
{
	size_t id = (size_t)((const char *)memrchr(o, '/', len) - o) + 1;

	shm__uuid_lower(o + id, len - id);
}

bool shm__object_canon_of(const void *o, size_t len,
                          char canon[SHM_MAX_OBJECT + 1])
{
	const char *slash;
	size_t id;

	if (len > SHM_MAX_OBJECT)
		len = SHM_MAX_OBJECT; /* not an object libshm stores */
	memcpy(canon, o, len);
	canon[len] = '\0';
	if (!(slash = len ? memrchr(canon, '/', len) : NULL))
		return false;
	id = (size_t)(slash - canon) + 1;
	return shm__uuid_lower(canon + id, len - id) &&
	       memcmp(canon, o, len) != 0;
}

static int website_check(const shm_uuid *website)
{
	if (shm_uuid_is_nil(website))
		return shm__err(SHM_EUUID, "website "
		                           "00000000-0000-0000-0000-000000000000: "
		                           "the nil UUID is not a website");
	return 0;
}

int shm__objkey(const char *fn, const shm_uuid *website, const char *object,
                uint8_t *key, size_t *klen)
{
	size_t len;
	int rc;

	if (!website)
		return shm__null(fn, "website");
	if (!object)
		return shm__null(fn, "object");
	if ((rc = website_check(website)) || (rc = shm_object_check(object)))
		return rc;
	len = strlen(object);
	memcpy(key, website->b, 16);
	memcpy(key + 16, object, len);
	object_canon((char *)key + 16, len);
	*klen = 16 + len;
	return 0;
}

/* key of (website of key0, object o/olen) into buf */
static size_t sibling_key(const uint8_t *key0, const void *o, size_t olen,
                          uint8_t *buf)
{
	memcpy(buf, key0, 16);
	memcpy(buf + 16, o, olen);
	return 16 + olen;
}

bool shm__object_is_website(const char *o, size_t len)
{
	size_t tl = sizeof SHM_WEBSITE_TYPE - 1;

	return len > tl + 1 && memcmp(o, SHM_WEBSITE_TYPE "/", tl + 1) == 0 &&
	       memchr(o + tl + 1, '/', len - tl - 1) == NULL;
}

static int is_direct_txn(shm_env *env, MDB_txn *txn, const uint8_t *key,
                         size_t klen, bool *direct)
{
	MDB_val k = {klen, (void *)key}, d;
	int rc;

	*direct = shm__object_is_website((const char *)key + 16, klen - 16);
	if (*direct)
		return 0;
	rc = mdb_get(txn, env->obj, &k, &d);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc)
		return mdberr(rc, "object graph: read obj");
	*direct = d.mv_size >= 1 && ((const uint8_t *)d.mv_data)[0] != 0;
	return 0;
}

/* -------------------------------------------------------- object sets */

/* Insertion-ordered set of strings (open addressing over indexes). */
typedef struct objset {
	char **items;
	size_t n, cap;
	uint32_t *slots; /* index + 1, 0 = empty */
	size_t nslots;   /* power of two */
} objset;

static void objset_free(objset *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->items[i]);
	free(s->items);
	free(s->slots);
	memset(s, 0, sizeof *s);
}

static int objset_grow(objset *s)
{
	size_t ns = s->nslots ? s->nslots * 2 : 64;
	uint32_t *slots = calloc(ns, sizeof *slots);

	if (slots == NULL)
		return ENOMEM;
	for (size_t i = 0; i < s->n; i++) {
		size_t h = XXH3_64bits(s->items[i], strlen(s->items[i]));
		while (slots[h & (ns - 1)])
			h++;
		slots[h & (ns - 1)] = (uint32_t)(i + 1);
	}
	free(s->slots);
	s->slots = slots;
	s->nslots = ns;
	return 0;
}

/* Adds o[0..len) if absent; *added (if not NULL) says whether it was. */
static int objset_add(objset *s, const void *o, size_t len, bool *added)
{
	size_t h;
	char *copy;

	if (added)
		*added = false;
	if ((s->n + 1) * 2 > s->nslots && objset_grow(s))
		return shm__err(ENOMEM, "object set");
	for (h = XXH3_64bits(o, len);; h++) {
		uint32_t i = s->slots[h & (s->nslots - 1)];
		if (i == 0)
			break;
		if (strlen(s->items[i - 1]) == len &&
		    memcmp(s->items[i - 1], o, len) == 0)
			return 0;
	}
	if (s->n == s->cap) {
		size_t nc = s->cap ? s->cap * 2 : 16;
		char **it = realloc(s->items, nc * sizeof *it);
		if (it == NULL)
			return shm__err(ENOMEM, "object set");
		s->items = it;
		s->cap = nc;
	}
	if ((copy = malloc(len + 1)) == NULL)
		return shm__err(ENOMEM, "object set");
	memcpy(copy, o, len);
	copy[len] = '\0';
	s->items[s->n++] = copy;
	s->slots[h & (s->nslots - 1)] = (uint32_t)s->n;
	if (added)
		*added = true;
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Builds the caller's list from items[from..n), sorted. */
static int objset_to_list(objset *s, size_t from, shm_objlist **out)
{
	size_t n = s->n - from, bytes = sizeof(shm_objlist) + n * sizeof(char *);
	shm_objlist *l;
	char *p;

	for (size_t i = from; i < s->n; i++)
		bytes += strlen(s->items[i]) + 1;
	if ((l = malloc(bytes)) == NULL)
		return shm__err(ENOMEM, "object list of %zu objects", n);
	l->n = n;
	l->items = (char **)(l + 1);
	p = (char *)(l->items + n);
	for (size_t i = 0; i < n; i++) {
		size_t len = strlen(s->items[from + i]) + 1;
		memcpy(p, s->items[from + i], len);
		l->items[i] = p;
		p += len;
	}
	qsort(l->items, n, sizeof *l->items, cmp_str);
	*out = l;
	return 0;
}

/* -------------------------------------------------------------- walks */

/* Adds every value of key in a DUPSORT dbi to s (added ones in order). */
static int dups_add(MDB_txn *txn, MDB_dbi dbi, const uint8_t *key,
                    size_t klen, objset *s)
{
	MDB_cursor *cur;
	MDB_val k = {klen, (void *)key}, d;
	int rc;

	if ((rc = mdb_cursor_open(txn, dbi, &cur)))
		return mdberr(rc, "object graph: cursor");
	for (rc = mdb_cursor_get(cur, &k, &d, MDB_SET_KEY); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT_DUP)) {
		int arc = objset_add(s, d.mv_data, d.mv_size, NULL);
		if (arc) {
			mdb_cursor_close(cur);
			return arc;
		}
	}
	mdb_cursor_close(cur);
	return rc == MDB_NOTFOUND ? 0 : mdberr(rc, "object graph: walk");
}

/*
 * The walk described at the top, from start_key over dbi (dep forward, ref
 * backward). On success s->items[0] is the start object and s->items[1..]
 * the objects reached.
 */
static int walk(shm_env *env, MDB_txn *txn, MDB_dbi dbi,
                const uint8_t *start_key, size_t klen, objset *s)
{
	uint8_t key[SHM_OBJKEY_MAX];
	int rc;

	if ((rc = objset_add(s, start_key + 16, klen - 16, NULL)))
		return rc;
	for (size_t head = 0; head < s->n; head++) {
		size_t kl = sibling_key(start_key, s->items[head],
		                        strlen(s->items[head]), key);
		if (head > 0) {
			bool direct;
			if ((rc = is_direct_txn(env, txn, key, kl, &direct)))
				return rc;
			if (direct)
				continue; /* included, not expanded */
		}
		if ((rc = dups_add(txn, dbi, key, kl, s)))
			return rc;
	}
	return 0;
}

/* ---------------------------------------------------------- reads */

enum walk_kind { WALK_DIRECT_DEPS, WALK_RECURSIVE, WALK_REFERRERS };
static const char *const walk_fn[] = {"shm_deps_get", "shm_deps_recursive",
                                      "shm_deps_referrers"};

static int graph_read(shm_env *env, const shm_uuid *website,
                      const char *object, enum walk_kind kind,
                      shm_objlist **out)
{
	uint8_t key[SHM_OBJKEY_MAX];
	size_t klen;
	objset s = {0};
	MDB_txn *txn;
	int rc;

	if (out == NULL)
		return shm__null(walk_fn[kind], "out");
	*out = NULL;
	if (!env)
		return shm__null(walk_fn[kind], "env");
	if ((rc = shm__objkey(walk_fn[kind], website, object, key, &klen)))
		return rc;
	if ((rc = shm__rtxn_get(env, &txn)))
		return rc;
	if (kind == WALK_DIRECT_DEPS) {
		/* item 0 stands for the object itself, as in a walk */
		rc = objset_add(&s, key + 16, klen - 16, NULL);
		if (rc == 0)
			rc = dups_add(txn, env->dep, key, klen, &s);
	} else {
		rc = walk(env, txn, kind == WALK_RECURSIVE ? env->dep : env->ref,
		          key, klen, &s);
	}
	shm__rtxn_put(env, txn);
	if (rc == 0)
		rc = objset_to_list(&s, 1, out);
	objset_free(&s);
	return rc;
}

int shm_deps_get(shm_env *env, const shm_uuid *website, const char *object,
                 shm_objlist **out)
{
	return graph_read(env, website, object, WALK_DIRECT_DEPS, out);
}

int shm_deps_recursive(shm_env *env, const shm_uuid *website,
                       const char *object, shm_objlist **out)
{
	return graph_read(env, website, object, WALK_RECURSIVE, out);
}

int shm_deps_referrers(shm_env *env, const shm_uuid *website,
                       const char *object, shm_objlist **out)
{
	return graph_read(env, website, object, WALK_REFERRERS, out);
}

int shm_object_is_direct(shm_env *env, const shm_uuid *website,
                         const char *object, bool *direct)
{
	uint8_t key[SHM_OBJKEY_MAX];
	size_t klen;
	MDB_txn *txn;
	int rc;

	if (direct)
		*direct = false;
	if (!env)
		return shm__null(__func__, "env");
	if (!direct)
		return shm__null(__func__, "direct");
	if ((rc = shm__objkey(__func__, website, object, key, &klen)))
		return rc;
	if ((rc = shm__rtxn_get(env, &txn)))
		return rc;
	rc = is_direct_txn(env, txn, key, klen, direct);
	shm__rtxn_put(env, txn);
	return rc;
}

int shm__object_known(shm_env *env, const shm_uuid *website,
                      const char *object, bool *known)
{
	uint8_t key[SHM_OBJKEY_MAX];
	MDB_val k, d;
	MDB_txn *txn;
	int rc;

	*known = false;
	if ((rc = shm__objkey(__func__, website, object, key, &k.mv_size)))
		return rc;
	k.mv_data = key;
	if ((rc = shm__rtxn_get(env, &txn)))
		return rc;
	/* declared: an obj entry (shm_deps_set writes one with its edges) */
	rc = mdb_get(txn, env->obj, &k, &d);
	if (rc == MDB_NOTFOUND)
		rc = mdb_get(txn, env->ref, &k, &d);
	shm__rtxn_put(env, txn);
	*known = rc == 0;
	return rc == 0 || rc == MDB_NOTFOUND ? 0
	                                     : mdberr(rc, "object graph: read");
}

/* -------------------------------------------------------- deps_set */

struct deps_set {
	const uint8_t *key;
	size_t klen;
	bool direct;
	objset *deps;
	const uint8_t *payload;
	size_t plen;
};

/* Deletes the edges from key to its dependencies (both directions). */
static int drop_outgoing(shm__wtxn *w, const uint8_t *key, size_t klen)
{
	shm_env *env = w->env;
	objset old = {0};
	uint8_t dk[SHM_OBJKEY_MAX];
	MDB_val k = {klen, (void *)key};
	int rc;

	if ((rc = dups_add(w->txn, env->dep, key, klen, &old)))
		goto out;
	for (size_t i = 0; i < old.n; i++) {
		size_t olen = strlen(old.items[i]);
		MDB_val rk = {sibling_key(key, old.items[i], olen, dk), dk};
		MDB_val rv = {klen - 16, (void *)(key + 16)};
		rc = mdb_del(w->txn, env->ref, &rk, &rv);
		if (rc && rc != MDB_NOTFOUND) {
			rc = mdberr(rc, "object graph: delete reverse edge");
			goto out;
		}
	}
	rc = mdb_del(w->txn, env->dep, &k, NULL);
	rc = rc == MDB_NOTFOUND ? 0 : rc ? mdberr(rc, "object graph: delete edges") : 0;
out:
	objset_free(&old);
	return rc;
}

/* Deletes the edges from other objects to key (both directions). */
static int drop_incoming(shm__wtxn *w, const uint8_t *key, size_t klen)
{
	shm_env *env = w->env;
	objset old = {0};
	uint8_t rk_[SHM_OBJKEY_MAX];
	MDB_val k = {klen, (void *)key};
	int rc;

	if ((rc = dups_add(w->txn, env->ref, key, klen, &old)))
		goto out;
	for (size_t i = 0; i < old.n; i++) {
		size_t olen = strlen(old.items[i]);
		MDB_val rk = {sibling_key(key, old.items[i], olen, rk_), rk_};
		MDB_val rv = {klen - 16, (void *)(key + 16)};
		rc = mdb_del(w->txn, env->dep, &rk, &rv);
		if (rc && rc != MDB_NOTFOUND) {
			rc = mdberr(rc, "object graph: delete edge");
			goto out;
		}
	}
	rc = mdb_del(w->txn, env->ref, &k, NULL);
	rc = rc == MDB_NOTFOUND ? 0 : rc ? mdberr(rc, "object graph: delete reverse edges") : 0;
out:
	objset_free(&old);
	return rc;
}

static int deps_set_body(shm__wtxn *w, void *ctx)
{
	struct deps_set *c = ctx;
	shm_env *env = w->env;
	uint8_t dk[SHM_OBJKEY_MAX], dir = c->direct;
	MDB_val k = {c->klen, (void *)c->key}, v = {1, &dir};
	uint64_t seq;
	int rc;

	if ((rc = drop_outgoing(w, c->key, c->klen)))
		return rc;
	if ((rc = mdb_put(w->txn, env->obj, &k, &v, 0)))
		return mdberr(rc, "object graph: declare object");
	for (size_t i = 0; i < c->deps->n; i++) {
		size_t dlen = strlen(c->deps->items[i]);
		MDB_val dv = {dlen, c->deps->items[i]};
		MDB_val rk = {sibling_key(c->key, c->deps->items[i], dlen, dk), dk};
		MDB_val rv = {c->klen - 16, (void *)(c->key + 16)};
		if ((rc = mdb_put(w->txn, env->dep, &k, &dv, 0)) ||
		    (rc = mdb_put(w->txn, env->ref, &rk, &rv, 0)))
			return mdberr(rc, "object graph: add edge");
	}
	return shm__log_append(w, SHM_OP_GRAPH_SET, c->key, c->klen, c->payload,
	                       c->plen, &seq);
}

/* The GRAPH_SET payload (shm_log.h): u8 direct, u32 n, then each
 * dependency as u16 length + bytes; *out malloc'd. */
static int graph_set_payload(bool direct, const objset *s, uint8_t **out,
                             size_t *len)
{
	size_t plen = 5;
	uint8_t *p;

	for (size_t i = 0; i < s->n; i++)
		plen += 2 + strlen(s->items[i]);
	if ((*out = p = malloc(plen)) == NULL)
		return ENOMEM;
	*p++ = direct ? 1 : 0;
	uint32_t n32 = (uint32_t)s->n;
	memcpy(p, &n32, 4); /* little-endian hosts only (see shm_log.h) */
	p += 4;
	for (size_t i = 0; i < s->n; i++) {
		uint16_t l = (uint16_t)strlen(s->items[i]);
		memcpy(p, &l, 2);
		memcpy(p + 2, s->items[i], l);
		p += 2 + l;
	}
	*len = plen;
	return 0;
}

int shm__deps_set_w(shm__wtxn *w, const uint8_t *key, size_t klen,
                    bool direct, char *const *deps, size_t n)
{
	objset s = {0};
	uint8_t *payload = NULL;
	size_t plen;
	int rc = 0;

	for (size_t i = 0; i < n && !rc; i++)
		rc = objset_add(&s, deps[i], strlen(deps[i]), NULL);
	if (!rc && (rc = graph_set_payload(direct, &s, &payload, &plen)))
		rc = shm__err(rc, "object graph: graph record");
	if (!rc) {
		struct deps_set c = {key, klen, direct, &s, payload, plen};
		rc = deps_set_body(w, &c);
	}
	free(payload);
	objset_free(&s);
	return rc;
}

int shm__object_forget_w(shm__wtxn *w, const uint8_t *key, size_t klen)
{
	MDB_val k = {klen, (void *)key};
	int rc;

	if ((rc = drop_outgoing(w, key, klen)))
		return rc;
	rc = mdb_del(w->txn, w->env->obj, &k, NULL);
	return rc && rc != MDB_NOTFOUND ? mdberr(rc, "object graph: forget")
	                                : 0;
}

int shm_deps_set(shm_env *env, const shm_uuid *website, const char *object,
                 bool direct, const char *const *deps, size_t n_deps)
{
	uint8_t key[SHM_OBJKEY_MAX], *payload = NULL;
	size_t klen, plen;
	objset s = {0};
	struct deps_set c;
	int rc;

	if (!env)
		return shm__null(__func__, "env");
	if ((rc = shm__objkey(__func__, website, object, key, &klen)))
		return rc;
	if (!direct && shm__object_is_website((const char *)key + 16, klen - 16))
		return shm__err(SHM_EINVAL, "object '%s': a website is always "
		                "direct (every " SHM_WEBSITE_TYPE " object is): "
		                "declare it direct", object);
	if (n_deps > 0 && deps == NULL)
		return shm__null(__func__, "deps");
	if (n_deps > UINT32_MAX)
		return shm__err(SHM_ETOOBIG, "object '%s': %zu dependencies",
		                object, n_deps);
	/* canonical (invariant 5); duplicates are one edge; the set keeps the
	 * caller's order */
	for (size_t i = 0; i < n_deps; i++) {
		char dep[SHM_MAX_OBJECT];
		size_t dl;
		if (!deps[i]) {
			rc = shm__err(SHM_EINVAL, "shm_deps_set: NULL deps[%zu]",
			              i);
			goto out;
		}
		if ((rc = shm_object_check(deps[i]))) {
			char msg[600];
			snprintf(msg, sizeof msg, "%s", shm_errmsg());
			rc = shm__err(rc, "object '%s': dependency %zu: %s",
			              object, i, msg);
			goto out;
		}
		dl = strlen(deps[i]);
		memcpy(dep, deps[i], dl);
		object_canon(dep, dl);
		if (dl == klen - 16 && memcmp(dep, key + 16, dl) == 0) {
			bool same = strcmp(deps[i], object) == 0;
			rc = shm__err(SHM_EINVAL, "object '%s': dependency %zu "
			              "%s%s%sis the object itself: an object "
			              "cannot depend on itself", object, i,
			              same ? "" : "('", same ? "" : deps[i],
			              same ? "" : "', the same UUID in other "
			                          "case) ");
			goto out;
		}
		if ((rc = objset_add(&s, dep, dl, NULL)))
			goto out;
	}
	if ((rc = graph_set_payload(direct, &s, &payload, &plen))) {
		rc = shm__err(rc, "object '%s': graph record", object);
		goto out;
	}
	c = (struct deps_set){key, klen, direct, &s, payload, plen};
	uint64_t seqs[2];
	if ((rc = shm__write_seqs(env, deps_set_body, &c, seqs)) == 0)
		rc = shm__wait_through(env, seqs); /* the graph is L3's too */
out:
	free(payload);
	objset_free(&s);
	return rc;
}

/* ------------------------------------------------------- busting */

enum bust_mode { BUST_ONE, BUST_SAVE, BUST_DESTROY };
static const char *const bust_fn[] = {"shm_static_bust", "shm_object_save",
                                      "shm_object_destroy"};

struct bust {
	const uint8_t *key;
	size_t klen;
	enum bust_mode mode;
	/* out, reset by each run of the body */
	uint64_t busted;
};

static int bust_body(shm__wtxn *w, void *ctx)
{
	struct bust *c = ctx;
	shm_env *env = w->env;
	uint8_t key[SHM_OBJKEY_MAX];
	objset s = {0};
	uint64_t seq;
	int rc;

	c->busted = 0;
	if (c->mode == BUST_ONE)
		rc = objset_add(&s, c->key + 16, c->klen - 16, NULL);
	else
		rc = walk(env, w->txn, env->ref, c->key, c->klen, &s);
	for (size_t i = 0; i < s.n && !rc; i++) {
		bool existed;
		size_t kl = sibling_key(c->key, s.items[i],
		                        strlen(s.items[i]), key);
		rc = shm__static_bust_w(w, key, kl, &existed);
		c->busted++;
	}
	objset_free(&s);
	if (rc || c->mode == BUST_ONE)
		return rc;

	/* the mark for the connection cleanup */
	uint8_t reason = c->mode == BUST_SAVE ? 1 : 2, mv[9];
	MDB_val k = {c->klen, (void *)c->key}, v = {sizeof mv, mv};
	memcpy(mv, &w->now, 8);
	mv[8] = reason;
	if ((rc = mdb_put(w->txn, env->mark, &k, &v, 0)))
		return mdberr(rc, "mark");
	if ((rc = shm__log_append(w, SHM_OP_MARK, c->key, c->klen, &reason, 1,
	                          &seq)))
		return rc;
	if (c->mode == BUST_SAVE)
		return 0;

	if ((rc = drop_outgoing(w, c->key, c->klen)) ||
	    (rc = drop_incoming(w, c->key, c->klen)))
		return rc;
	rc = mdb_del(w->txn, env->obj, &k, NULL);
	if (rc && rc != MDB_NOTFOUND)
		return mdberr(rc, "object graph: undeclare object");
	return shm__log_append(w, SHM_OP_GRAPH_DROP, c->key, c->klen, "", 0,
	                       &seq);
}

static int bust_run(shm_env *env, const shm_uuid *website,
                    const char *object, enum bust_mode mode)
{
	uint8_t key[SHM_OBJKEY_MAX];
	struct bust c = {0};
	int rc;

	if (!env)
		return shm__null(bust_fn[mode], "env");
	if ((rc = shm__objkey(bust_fn[mode], website, object, key, &c.klen)))
		return rc;
	c.key = key;
	c.mode = mode;
	uint64_t seqs[2];
	/* statics are L1's and Redis's alone: a bust of one waits for no one */
	if (mode == BUST_ONE) {
		if ((rc = shm__write(env, bust_body, &c)))
			return rc;
		SHM__COUNT(env, busts, c.busted);
		return 0;
	}
	if ((rc = shm__write_seqs(env, bust_body, &c, seqs)))
		return rc;
	SHM__COUNT(env, busts, c.busted);
	SHM__COUNT(env, marks, 1);
	return shm__wait_through(env, seqs); /* marks and drops are L3's */
}

int shm_object_save(shm_env *env, const shm_uuid *website, const char *object)
{
	return bust_run(env, website, object, BUST_SAVE);
}

int shm_object_destroy(shm_env *env, const shm_uuid *website,
                       const char *object)
{
	return bust_run(env, website, object, BUST_DESTROY);
}

int shm_static_bust(shm_env *env, const shm_uuid *website, const char *object)
{
	return bust_run(env, website, object, BUST_ONE);
}
