/*
 * internal.h - what libshm's files share: the handle, the write transaction
 * helper, the L1 bookkeeping, counters and error text. Not installed.
 *
 * LMDB databases of an environment (format SHM_FORMAT_VERSION):
 *   meta    name (text)            -> uint64 (format, next_seq, flushed,
 *                                     entries, bytes, the L1 policy
 *                                     l1_max_entries/l1_max_bytes/l1_ttl_s/
 *                                     l2_ttl_s/compress_threshold,
 *                                     sink positions...)
 *   msg     id (16)                -> message value encoding (codec.h)
 *   room    room \0 be64(created_at) id(16) -> empty   (room pages)
 *   roomwm  room                   -> be64 newest created_at evicted
 *   lru     be64(seq) kind(1) key  -> u32 bytes, i64 write time
 *                                     (entries by last write; a read-through
 *                                     fill uses the flushed position)
 *   log     seq (INTEGERKEY)       -> log record (shm_log.h)
 *   dead    seq (INTEGERKEY)       -> dead letter
 *   static  website(16) object     -> static value encoding (static.c)
 *   lease   website(16) object     -> pid(4) expiry_us(8)
 *   obj     website(16) object     -> u8 direct
 *   dep     website(16) object     -> DUPSORT object it embeds
 *   ref     website(16) object     -> DUPSORT object embedding it
 *   mark    website(16) object     -> i64 time, u8 reason
 *
 * Invariants
 *  1. Every L1 entry (message or static) has exactly one lru key, whose seq
 *     is the seq of the entry's last log record; meta "entries"/"bytes"
 *     count the entries and their value bytes.
 *  2. An entry whose lru seq is above meta "flushed" is never evicted.
 */
#ifndef SHM_INTERNAL_H
#define SHM_INTERNAL_H

#include <lmdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <sys/types.h>

#include "shm.h"
#include "shm_log.h"
#include "resolve.h"
#include "text.h"

#define SHM_FORMAT_VERSION 1u
#define SHM_ATIME_SLOTS (1u << 16)
#define SHM_RPOOL 8
/* map size of a new environment opened with map_size 0 (the default) */
#define SHM_DEFAULT_MAP_SIZE ((size_t)1 << 30)
/* reader slots asked for with max_readers 0 (the default) */
#define SHM_DEFAULT_MAX_READERS 256u

/* The files shm_env_open makes in an environment's directory: LMDB's two,
 * stats.c's and wlock.c's. */
#define SHM_ENV_FILES "data.mdb", "lock.mdb", "shm.stats", "shm.wlock"

/* The policy of an environment that stores none (env.c: policy). */
#define SHM_DEFAULT_L1_MAX_ENTRIES 100000u
#define SHM_DEFAULT_L1_MAX_BYTES ((uint64_t)256 << 20)
#define SHM_DEFAULT_L1_TTL_S 300u
#define SHM_DEFAULT_L2_TTL_S 3600u
#define SHM_DEFAULT_COMPRESS_THRESHOLD 1024u

/* L1 entry kinds, the byte after the seq in lru keys. */
#define SHM_KIND_MSG 'M'
#define SHM_KIND_STATIC 'S'

/* The shared stats file (env/shm.stats), mapped by every process. */
typedef struct shm__shared {
	uint64_t magic;
	uint32_t version;
	uint32_t log_wake;        /* futex word of log waiters (log.c) */
	uint64_t next_seq_hint;   /* last committed next_seq, for log waiters */
	shm_counters c;           /* updated with atomic adds */
	uint32_t atime[SHM_ATIME_SLOTS]; /* approx. last access, seconds */
} shm__shared;

struct shm_env {
	MDB_env *mdb;
	MDB_dbi meta, msg, room, roomwm, lru, log, dead, stat, lease, obj, dep,
		ref, mark;
	shm_options opt;
	char *path;
	char *path_shown; /* path as error texts name it (shm__shown_long) */
	char *redis_url, *pg_conninfo; /* owned copies of opt's strings */
	shm_redis_addr redis_addr;     /* redis_url, parsed at open */
	char redis_ip[64];             /* its host, resolved at open: numeric,
	                                  so connecting needs no resolver; ""
	                                  for a unix socket */
	char *pg_hosts, *pg_hostaddr;  /* pg_conninfo's host list, and the
	                                  addresses they resolved to at open:
	                                  libpq's hostaddr (owned); NULL if
	                                  no host is a name, or libpq is told
	                                  the addresses otherwise */
	shm__shared *shared;   /* the shared file, for reading */
	shm__shared *sw;       /* where counters are written: shared, or a
	                          private scratch when opened read-only */
	size_t shared_size;
	shm_counters local;    /* this handle's counts (relaxed atomics) */
	shm_counters pending;  /* SHM__COUNT_READ counts not yet in sw->c */
	uint32_t unpublished;  /* SHM__COUNT_READ ticks since the last publish */
	unsigned long gate;    /* transactions of this handle in progress, and
	                          SHM__GATE_* (gate.c invariant 6); beside
	                          the read counters, whose line every read
	                          writes anyway */
	MDB_txn *rpool[SHM_RPOOL]; /* reset read transactions, reused; a
	                              slot is taken by swapping in NULL */
	struct shm__wlock *wlock; /* writers' lock (wlock.c); NULL read-only */
	int wlock_fd;          /* shm.wlock, its shared flock held while
	                          wlock is set (wlock.c invariant 3) */
	struct shm__rt *rt;    /* read-through connections (rt_pool.c) */
	struct shm_rtxn *spare_rtxn; /* one ended shm_rtxn kept for reuse */
	pid_t pid;             /* the process that opened it: shm_env_close
	                          in another one, a child of fork(), releases
	                          only that child's copy (env.c invariant 7) */
	/* registry.c invariant 8's registry of open handles, under its lock */
	dev_t dev;             /* the directory's, stat()ed at open */
	ino_t ino;
	bool registered;       /* in the registry: dev and ino are set */
	shm_env *reg_next;
	struct shm__inherited *inherited; /* LMDB handles of a parent whose
	                          close waits for this one's (invariant 8) */
};

/* ---- Redis addresses (redis_url.c) */
/* The numeric address (ip, len bytes) a's host resolves to, IPv4 first as
 * hiredis prefers; "" for a unix socket. May block on DNS: shm_env_open
 * calls it, the read path never. SHM_EINVAL naming url if the host does not
 * resolve. */
int shm__redis_resolve(const char *url, const shm_redis_addr *a, char *ip,
                       size_t len);

/* ---- host names as numeric addresses: resolve.h */

/* ---- errors (errors.c): set the thread's message, return rc */
int shm__err(int rc, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* For an LMDB/errno rc: "<what>: <strerror>". */
int shm__err_mdb(int rc, const char *what);
/* SHM_EINVAL for a NULL argument a public function needs: "<fn>: NULL
 * <arg>" (shm.h's Conventions). */
int shm__null(const char *fn, const char *arg);
/* The thread's last error text, set for rc, into buf without the " (<rc's
 * description>)" shm__err ended it with: its cause alone, for a text that
 * wraps it under another code (each text names one description), cut
 * between two characters if it does not fit. */
void shm__errcause(int rc, char *buf, size_t len);

/* ---- counters (stats.c) */
/* Counts in env->local (this handle) and in the shared counters. */
#define SHM__COUNT(env, field, n)                                              \
	do {                                                                   \
		__atomic_fetch_add(&(env)->local.field, (uint64_t)(n),     \
		                   __ATOMIC_RELAXED);                          \
		__atomic_fetch_add(&(env)->sw->c.field, (uint64_t)(n),     \
		                   __ATOMIC_RELAXED);                          \
	} while (0)
/* The same for the hot read path: the shared part waits in env->pending
 * and is added every SHM_PUBLISH_EVERY counts, at each write commit, at
 * shm_stats_shared and at close, so that gets do not bounce a shared cache
 * line between processes. */
#define SHM_PUBLISH_EVERY 64u
#define SHM__COUNT_READ(env, field, n)                                         \
	do {                                                                   \
		__atomic_fetch_add(&(env)->local.field, (uint64_t)(n),     \
		                   __ATOMIC_RELAXED);                          \
		__atomic_fetch_add(&(env)->pending.field, (uint64_t)(n),   \
		                   __ATOMIC_RELAXED);                          \
		shm__count_tick(env);                                          \
	} while (0)
void shm__count_tick(shm_env *env);
void shm__publish(shm_env *env);
/* Adds a latency sample; get samples are published like SHM__COUNT_READ. */
void shm__hist_add(shm_env *env, int which /* 0 put, 1 get */, uint64_t ns);
uint64_t shm__mono_ns(void);
/* Notes an access to an L1 entry (no lock, approximate). */
void shm__touch(shm_env *env, char kind, const void *key, size_t klen);
/* Starts loading the atime slot of (kind, key), so that the touch after an
 * LMDB lookup does not add a cache miss of its own. */
void shm__touch_prefetch(shm_env *env, char kind, const void *key,
                         size_t klen);
uint32_t shm__atime(shm_env *env, char kind, const void *key, size_t klen);
int shm__shared_open(shm_env *env);
/* Gives fd's file (named as name, in error texts) blocks for its first len
 * bytes (fallocate; growing it to len if shorter): a file written
 * through a shared mapping must have them, or a store into a hole on a
 * full disk kills the process with SIGBUS. 0, or an error naming the
 * file and, for a full disk or a file size limit, the cause. A file
 * system that cannot allocate ahead is left as it is (0). */
int shm__allocate(int fd, off_t len, const char *name);
void shm__shared_close(shm_env *env);

/* The msg database's key order (env.c): memcmp's, with a prefetch. */
int shm__cmp_key16(const MDB_val *a, const MDB_val *b);

/* ---- opening an environment (env.c) */
/* Our LMDB databases, in the order they are opened. */
struct shm__db {
	const char *name;
	size_t off;     /* of its MDB_dbi in shm_env */
	unsigned flags; /* mdb_dbi_open's */
};
#define SHM__N_DBS 13
extern const struct shm__db shm__dbs[SHM__N_DBS];
/* SHM_EVERSION, said: env is not an shm environment, for why. */
int shm__not_shm(shm_env *env, const char *why);

/* ---- the writers' lock (wlock.c), held around every LMDB write txn */
int shm__wlock_open(shm_env *env);
void shm__wlock_close(shm_env *env);
int shm__wlock_acquire(shm_env *env);
void shm__wlock_release(shm_env *env);

/* ---- LMDB's data file (datafile.c invariant 3) */
#define SHM__NO_PAGE UINT64_MAX /* LMDB's P_INVALID: the root of no tree */
/* What the meta page of a snapshot says, read from the data file. */
typedef struct shm__lmdb_meta {
	bool found;   /* false: no meta page of LMDB 0.9's format (datafile.c
	                 draws it) holds txn's snapshot, or a writer has
	                 overwritten it since; the rest is then 0 */
	unsigned psize;
	uint64_t txnid;
	uint64_t map_size;             /* the size stored in the environment */
	uint64_t free_root, main_root; /* SHM__NO_PAGE: empty */
} shm__lmdb_meta;
/* Reads both meta pages with pread (no page of the map); out is the one
 * of txn's snapshot, or with txn NULL the newest one. 0, or an errno if a
 * read failed (said). */
int shm__lmdb_meta_read(shm_env *env, MDB_txn *txn, shm__lmdb_meta *out);
/* Right after mdb_env_open, before anything is made next to the map:
 * invariant 3 before LMDB reads a page past the meta pages, and env.c
 * invariant 2 as far as the main database shows it. 0, or an error (said). */
int shm__check_env(shm_env *env);
/* Invariant 3 again in txn once our databases are open (main: LMDB's main
 * database), their pages counted too. */
int shm__check_pages_in_use(shm_env *env, MDB_txn *txn, MDB_dbi main);
/* mdb_env_open's MDB_INVALID on dir (named as shown), said as the damage
 * to the file found at fault. */
int shm__not_lmdb(const char *dir, const char *shown);

/* ---- the registry of the process's handles (registry.c invariant 8) */
/* Enters env, opened as dir; SHM_EBUSY (said) if this process has a
 * handle open on that directory. */
int shm__reg_add(shm_env *env, const char *dir);
/* shm_env_close's LMDB part, for a handle this process opened... */
void shm__reg_close(shm_env *env);
/* ... and in a child of fork(), for a handle it inherited. */
void shm__reg_close_inherited(shm_env *env);
/* Whether this process has a handle open on the environment in dir, by
 * its directory's identity (registry.c invariant 8): for code that opens it
 * with LMDB itself (the tests), which must not while one is. */
bool shm__env_open_here(const char *dir);

/* ---- read transactions (readers.c): pooled, never take the write lock */
int shm__rtxn_get(shm_env *env, MDB_txn **txn);
void shm__rtxn_put(shm_env *env, MDB_txn *txn);

/* ---- the transaction gate (gate.c invariant 6). Every LMDB transaction of
 * a handle, read or write, is begun after shm__gate_enter and ended before
 * shm__gate_leave, in one thread; adopting a map another process grew
 * (shm__map_adopt) waits until none is in progress. */
#define SHM__GATE_PENDING (1ul << 61) /* an adoption waits: a thread that
                                         holds no transaction waits too */
#define SHM__GATE_SHUT (1ul << 62)    /* the map is being replaced */
#define SHM__GATE_LOST (1ul << 63)    /* with SHUT: replacing it failed,
                                         the handle has no map */
#define SHM__GATE_FLAGS (SHM__GATE_PENDING | SHM__GATE_SHUT)
#define SHM__GATE_FORKED (1ul << 60)  /* set in a child of fork() on every
                                         handle it inherited (registry.c):
                                         its transactions are refused */
/* Transactions the calling thread has in progress, in any handle. */
extern __thread unsigned shm__txn_depth;
int shm__gate_wait(shm_env *env);
/* SHM_EINVAL, said, if env is a handle this process inherited through
 * fork() (the fork rule, shm.h); else 0. */
int shm__forked(shm_env *env);
/* 0, or an error (said) if the handle lost its map: no transaction then. */
static inline int shm__gate_enter(shm_env *env)
{
	if (__builtin_expect(__atomic_add_fetch(&env->gate, 1,
	                                        __ATOMIC_ACQUIRE) &
	                     (SHM__GATE_FLAGS | SHM__GATE_FORKED), 0))
		return shm__gate_wait(env);
	shm__txn_depth++;
	return 0;
}
static inline void shm__gate_leave(shm_env *env)
{
	shm__txn_depth--;
	__atomic_sub_fetch(&env->gate, 1, __ATOMIC_RELEASE);
}
/* After an mdb_txn_begin/renew of this thread failed with MDB_MAP_RESIZED,
 * outside the gate: maps the size another process gave the environment
 * (the caller then begins again), or says why it cannot (MDB_MAP_RESIZED:
 * this thread holds a transaction, or another one kept one open too long;
 * what names the caller's step). */
int shm__map_adopt(shm_env *env, const char *what);
/* After a write of this thread failed with MDB_MAP_FULL, outside the gate:
 * maps the size stored in the environment if it is larger than this map
 * (another process opened it with a larger map_size, its pages not past
 * this map yet): 0, the caller then writes again; SHM_ENOTFOUND (not said)
 * if it is not larger; else as shm__map_adopt. */
int shm__map_adopt_stored(shm_env *env, const char *what);
/* mdb_txn_begin while opening, before the handle is shared: a map another
 * process grew meanwhile is adopted at once, without the gate. */
int shm__begin_at_open(shm_env *env, unsigned flags, MDB_txn **txn);

/* ---- reader slots, their snapshots, the map's reserve (readers.c) */
/* Whether the map has its reserve free for a write of the caller, who
 * holds the writers' lock (wtxn.c invariant 7): most pages, or an eighth
 * of a smaller map, counting those never used yet, then those on LMDB's
 * free list from before the last commit (the last commit's are not reused
 * yet). Reads the free list only when the unused pages fall short; true
 * if it cannot tell. */
bool shm__map_has_reserve(shm_env *env, size_t most);

/* The oldest snapshot a reader slot holds (readers.c): LMDB reuses no page
 * freed since it began until it ends. pid 0: no slot holds one. */
typedef struct shm__snapshot {
	int pid;       /* the slot's process (perhaps dead: a stale slot) */
	size_t txnid;  /* the transaction it reads */
	size_t age;    /* transactions committed since */
	size_t pinned; /* bytes of freed pages it keeps from reuse */
} shm__snapshot;
int shm__oldest_snapshot(shm_env *env, shm__snapshot *out);
/* Calls fn for each reader slot in use: its pid, thread and the txnid of
 * its snapshot (0: it holds none, a reset pooled transaction). A non-zero
 * return of fn stops the walk and is returned. */
typedef int shm__reader_fn(int pid, size_t thread, size_t txnid, void *user);
int shm__readers(shm_env *env, shm__reader_fn *fn, void *user);
/* *pages: the pages on LMDB's free list in txn's snapshot that transaction
 * from or a later one freed. 0, or an error (said). */
int shm__free_pages(MDB_txn *txn, size_t from, size_t *pages);

/* ---- write transactions (wtxn.c) */
typedef struct shm__wtxn {
	shm_env *env;
	MDB_txn *txn;
	uint64_t begin_seq; /* next_seq at begin: records from here are ours */
	uint64_t next_seq; /* seq of the next record appended here */
	uint64_t flushed;
	uint64_t entries, bytes; /* meta "entries"/"bytes", written at commit */
	uint64_t begin_entries;  /* entries at begin (wtxn.c invariant 7) */
	uint64_t max_entries, max_bytes, ttl_s; /* the stored L1 policy */
	bool policy_read;  /* read by shm__policy_read once it is needed */
	bool counts_dirty;
	/* evictions/expirations of this transaction: counted once it commits
	 * (a rolled-back write evicted nothing) */
	uint64_t evicted, expired;
	bool awaited;      /* its records will be waited for: commit sets meta
	                    * "sink.pg.awaited" (wtxn.c invariant 6) */
	int64_t now;       /* one clock reading per transaction */
	int64_t filled_until; /* the last created_at this transaction filled
	                       * in (msg.c), 0 if none: the commit holds the
	                       * lock until the clock has passed it */
	uint8_t *buf;      /* scratch for record building, freed at end */
	size_t buf_cap;
} shm__wtxn;

/* Body of a write: runs inside w; returns 0 to commit, else rolls back. */
typedef int (*shm__write_fn)(shm__wtxn *w, void *ctx);
/* Reads the environment's L1 policy (meta l1_*) into w, once per txn:
 * only the writes that check capacity or expiry need it. */
int shm__policy_read(shm__wtxn *w);
/* Runs fn in a write transaction and commits. On MDB_MAP_FULL: rolls back,
 * evicts flushed entries in transactions of their own and runs fn again,
 * until it fits or none is left (wtxn.c invariant 3); still full ->
 * SHM_EFULL. Counts SHM_EFULL refusals. */
int shm__write(shm_env *env, shm__write_fn fn, void *ctx);
/* shm__write, and seqs[] = the records it appended, [first, next), for a
 * write that shm__wait_through then waits for: in write-through mode its
 * transaction marks its last record awaited (wtxn.c invariant 6), which
 * makes the flusher close the batch that holds it at once. A write that
 * will not wait uses shm__write. */
int shm__write_seqs(shm_env *env, shm__write_fn fn, void *ctx,
                    uint64_t seqs[2]);
/* In write-through mode, waits until PostgreSQL has applied the records
 * [seqs[0], seqs[1]) (within write_through_timeout_ms: SHM_ETIMEDOUT);
 * SHM_EL3 if it refused one (a dead letter of sink pg), else SHM_ECORRUPT
 * if the dead letter of one does not decode (whether PostgreSQL has it is
 * unknown). 0 at once in write-back mode or for no record. */
int shm__wait_through(shm_env *env, const uint64_t seqs[2]);
/* Decodes the dead letter of key k, value v into d (pointers into v);
 * SHM_ECORRUPT, shm_errmsg() naming its seq and what is wrong, if it does
 * not decode (verify.c checks every letter with it). */
int shm__dead_decode(const MDB_val *k, const MDB_val *v, shm_dead *d);
/* The first dead letter with seq in [first, last] that sink (e.g. "pg")
 * refused: 0 and *out, or SHM_ENOTFOUND. Letters in the range that do not
 * decode are gone past (dead.c invariant 3): bad[0] counts them, bad[1]
 * is the first one's seq. */
int shm__dead_of_sink(shm_env *env, uint64_t first, uint64_t last,
                      const char *sink, shm_dead *out, uint64_t bad[2]);

/* LZ4F_compressFrame(dst, cap, src, n, NULL)'s frame, with the
 * compression state (16 KiB) on the heap: LZ4F_compressFrame keeps it on
 * the stack, the application's thread's in a put or a get. cap:
 * LZ4F_compressFrameBound(n, NULL). The frame's size or an LZ4F error
 * code (LZ4F_isError). */
size_t shm__lz4_frame(void *dst, size_t cap, const void *src, size_t n);
/* Appends one record (compressing the payload above the threshold). */
int shm__log_append(shm__wtxn *w, uint8_t op, const void *key, size_t klen,
                    const void *payload, size_t plen, uint64_t *seq);
/* After a commit that appended records (next_seq_hint stored): wakes the
 * shm_log_wait callers of every process (log.c invariant 4). */
void shm__log_wake(shm_env *env);
/* The log's wake word, read before the state a waiter looks at. */
uint32_t shm__log_word(shm_env *env);
/* Sleeps at most ns (and 100 ms) unless the word moved past *seen, which
 * it updates: true when a commit or shm_log_wake came (log.c inv. 4). */
bool shm__log_sleep(shm_env *env, uint32_t *seen, uint64_t ns);

/* meta helpers inside a transaction */
int shm__meta_get(MDB_txn *txn, shm_env *env, const char *name, uint64_t *v);
int shm__meta_put(MDB_txn *txn, shm_env *env, const char *name, uint64_t v);

/* ---- object keys (graph.c / static.c): website(16) + object bytes */
#define SHM_OBJKEY_MAX (16 + SHM_MAX_OBJECT)
/* Whether s[0..len) is a UUID in the 8-4-4-4-12 hex form, either case (what
 * shm_uuid_parse takes); if so it is put in lower case, in place (uuid.c). */
bool shm__uuid_lower(char *s, size_t len);
/* qsort/bsearch order of shm_uuids: their 16 bytes, as memcmp. */
int shm__uuid_cmp(const void *a, const void *b);
/* fn: the public function, named when website or object is NULL. The key
 * holds the object in its canonical form (graph.c invariant 5). */
int shm__objkey(const char *fn, const shm_uuid *website, const char *object,
                uint8_t *key, size_t *klen);
/* o[0..len) (any bytes: a stored key's object) in canonical form into
 * canon, NUL-terminated (cut at SHM_MAX_OBJECT); whether it was not, its
 * ID a UUID with an upper-case digit, as an older libshm stored it
 * (graph.c invariant 5). */
bool shm__object_canon_of(const void *o, size_t len,
                          char canon[SHM_MAX_OBJECT + 1]);
/* Whether object o[0..len) (any bytes, canonical or not) is a website: its
 * TYPE, before the last '/', is SHM_WEBSITE_TYPE. Such an object is direct
 * whatever its obj byte says (graph.c): an older libshm stored some
 * indirect. */
bool shm__object_is_website(const char *o, size_t len);
/* Inside w (static.c): removes (website, object)'s static and its lease
 * if L1 holds them, then appends a STATIC_BUST record. *existed says if it
 * did. */
int shm__static_bust_w(shm__wtxn *w, const uint8_t *key, size_t klen,
                       bool *existed);
/* Inside w (graph.c): replaces key's declaration with direct and deps
 * (canonical objects, not key's own; duplicates are one edge) and appends
 * its GRAPH_SET record, as shm_deps_set does. */
int shm__deps_set_w(shm__wtxn *w, const uint8_t *key, size_t klen,
                    bool direct, char *const *deps, size_t n);
/* Inside w (graph.c): drops key's declaration and its edges to its
 * dependencies, both directions, and appends no record: for a key no
 * reader reads and no sink keeps (upgrade.c). */
int shm__object_forget_w(shm__wtxn *w, const uint8_t *key, size_t klen);
/* What shm__upgrade rewrote (upgrade.c). */
typedef struct shm__upgraded {
	size_t declared; /* objects declared again, in lower case or direct */
	size_t dropped;  /* old spellings of an object declared since */
	size_t statics;  /* statics busted */
	size_t marks;    /* marks dropped */
} shm__upgraded;
/* Rewrites what an older libshm stored in a form libshm no longer reads,
 * in one write transaction (upgrade.c); *out says what it did. */
int shm__upgrade(shm_env *env, shm__upgraded *out);
/* Whether the graph knows object (graph.c): declared by shm_deps_set, or
 * a dependency of a declared one; destroy forgets it. shmctl deps show
 * tells an unknown object from one without edges. */
int shm__object_known(shm_env *env, const shm_uuid *website,
                      const char *object, bool *known);

/* ---- L1 bookkeeping (l1.c) */
/* Records that entry (kind, key) now has its last log record at new_seq and
 * new_bytes value bytes; old_bytes is 0 for a new entry. Evicts
 * flushed entries first if a limit would be passed; SHM_EFULL when nothing
 * can be evicted, SHM_ETOOBIG when this transaction's own entries pass a
 * limit (no flusher can make room for them). */
int shm__l1_track(shm__wtxn *w, char kind, const void *key, size_t klen,
                  uint64_t old_seq, size_t old_bytes, uint64_t new_seq,
                  size_t new_bytes);
/* Removes entry (kind, key) from the bookkeeping (the caller deletes the
 * value itself). */
int shm__l1_untrack(shm__wtxn *w, char kind, const void *key, size_t klen,
                    uint64_t seq, size_t bytes);
/* Evicts up to max flushed entries, oldest and least recently read first. */
int shm__l1_evict(shm__wtxn *w, uint64_t max, uint64_t *evicted);
/* Where a walk of "lru" goes on in its next transaction (len 0: from the
 * first key). */
typedef struct shm__lru_pos {
	size_t len;
	uint8_t key[9 + SHM_OBJKEY_MAX];
} shm__lru_pos;
/* Drops flushed entries last written before `before` (µs), walking "lru"
 * from *pos: at most max drops and max_kept entries passed over (written
 * since) per call, so that one transaction holds the writers' lock for a
 * bounded time. *dropped grows by the drops; *more tells whether the walk
 * stopped early, *pos where the next call goes on. */
int shm__l1_drop_flushed(shm__wtxn *w, int64_t before, uint64_t max,
                         uint64_t max_kept, shm__lru_pos *pos,
                         uint64_t *dropped, bool *more);
/* Kind-specific removal of an evicted/expired entry: implemented by msg.c
 * (SHM_KIND_MSG) and static.c (SHM_KIND_STATIC). */
int shm__msg_drop(shm__wtxn *w, const void *key, size_t klen);
int shm__static_drop(shm__wtxn *w, const void *key, size_t klen);

/* Stores m in L1 without a log record (a read-through fill: L2/L3 already
 * have it), evictable at once. Skipped if L1 already has the id. */
int shm__msg_fill(shm_env *env, const shm_msg *m);
/* Frees the shm_rtxn kept for reuse (shm_env_close). */
void shm__rtxn_spare_free(shm_env *env);

/* ---- room index (room.c) */
int shm__room_add(shm__wtxn *w, const char *room, int64_t created_at,
                  const shm_uuid *id);
int shm__room_del(shm__wtxn *w, const char *room, int64_t created_at,
                  const shm_uuid *id);
/* Notes that a message of room created at created_at is missing from L1
 * (it left, came in by a fill, or was written by another host), so pages
 * reaching back that far are no longer complete in L1: raises the room's
 * watermark (room.c invariant 2). */
int shm__room_incomplete(shm__wtxn *w, const char *room, int64_t created_at);
uint64_t shm__room_count(MDB_txn *txn, shm_env *env);
/* Meta SHM__ROOM_FLOOR: the watermark every room has at least. */
int64_t shm__room_floor(MDB_txn *txn, shm_env *env);
/* The room's watermark as l1_page uses it (the room's own, or floor, from
 * shm__room_floor, if later): pages must be strictly newer to be complete. */
int64_t shm__room_watermark(MDB_txn *txn, shm_env *env, const char *room,
                            int64_t floor);
/* Meta key: a watermark every room has (set after an invalidation gap). */
#define SHM__ROOM_FLOOR "room_floor"
/* A room page's bound: the messages with (created_at, id) < (at, id), ids
 * ordered by memcmp of their 16 bytes (room.c invariant 5). A bare
 * timestamp T is (T, nil): no id is below the nil UUID; no bound is
 * (INT64_MAX, nil), after every time a message holds. */
typedef struct shm__room_cursor {
	int64_t at;
	shm_uuid id;
} shm__room_cursor;

/* ---- validation of text input, input shown printably: text.h */

/* ---- reaction order (codec.c) */
/* Reactions whose order is kept in the caller's shm__order (on its stack:
 * put runs on the application's threads, whose stacks may be small); more
 * get a malloc'd array. */
#define SHM_ORDER_SMALL 32
/* m's reactions sorted by emoji (strcmp: byte order; NULL reads as ""), the
 * order they are stored and written in, as pointers into m->reactions,
 * which is left as it is. */
typedef struct shm__order {
	const shm_reaction **r; /* small, or malloc'd */
	uint32_t dup; /* position in r of the second of two reactions with one
	                 emoji; 0 if each emoji is there once */
	const shm_reaction *small[SHM_ORDER_SMALL];
} shm__order;
/* Fills *o (not to be copied: r may point into it) with m's order: 0, to
 * be released with shm__order_free; ENOMEM, nothing to free, no text (the
 * caller says what it was doing). */
int shm__order_make(const shm_msg *m, shm__order *o);
void shm__order_free(shm__order *o);

/* ---- a message's times: one range for what put stores (codec.c) and
 * what JSON carries both ways (json_write.c, json_read.c): 0 is none
 * (created_at 0: put fills it in), else an instant of SHM_MSG_TIME_RANGE,
 * the instants after the epoch that RFC 3339 writes with a four-digit year
 * (time.c). */
#define SHM_MSG_TIME_RANGE                                                   \
	"1970-01-01T00:00:00.000001Z to 9999-12-31T23:59:59.999999Z (UTC)"
/* 0 if us is 0 (and not required: none) or in the range; SHM_ETIME else,
 * naming the field and the value: "<fn>: field '<field>': ..." (fn NULL:
 * "<field>: ..."). */
int shm__msg_time_check(const char *fn, const char *field, int64_t us,
                        bool required);

/* ---- invalidation keys (invalidate.c) */
/* Whether an SHM_INVAL_MSG key may carry created_at (shm_log.h): a time put
 * stores (1 to SHM_TIME_MAX_US), or 0 (unknown) when it has no room. Any
 * other would raise its room's watermark, or the lead every reset adds,
 * for good (invalidate.c invariants 4, 5). The flusher's parser of peers'
 * keys asks it too. */
bool shm__inval_created_ok(int64_t created_at, bool room);
/* Drops message id from L1 if L1 holds it flushed, as an invalidation
 * does (a fill that raced with one: readthrough.c); not counted as
 * received. */
int shm__inval_drop_msg(shm_env *env, const shm_uuid *id);

/* ---- read-through (readthrough.c; shm__rt_open and shm__rt_close
 * rt_pool.c, shm__rt_parents rt_pg.c); no-ops when not configured */
int shm__rt_open(shm_env *env);
/* forked: called in a child of the process that opened env (env.c
 * invariant 7): its copies of the connections are closed without a word
 * to the servers, whose sessions are the parent's. */
void shm__rt_close(shm_env *env, bool forked);
/* Asks L2 then L3 for id; on a hit fills L1 (no log record) and returns
 * a copy in *out. SHM_ENOTFOUND when the last level configured has no such
 * message (L1 when none is), SHM_EL3 or SHM_EL2 when that level failed
 * (readthrough.c invariant 5); the text keeps each failed level's reason,
 * or the reason a value was refused (rt_value.c invariant 4). */
int shm__rt_get(shm_env *env, const shm_uuid *id, shm_msg **out);
bool shm__rt_has_l3(const shm_env *env);
/* The parent PostgreSQL's row of a message names (put's reply counting:
 * none, as no row, means the message counts nowhere yet). */
typedef struct shm__l3_row {
	bool has_parent;
	shm_uuid parent;
} shm__l3_row;
/* out[i]: PostgreSQL's row of ids[i] (n distinct ids, sorted as memcmp
 * orders them), in one query within l3_timeout_ms (L3 configured). 0;
 * SHM_EL3 with the reason (counted in l3_errors), or ENOMEM. */
int shm__rt_parents(shm_env *env, const shm_uuid *ids, size_t n,
                    shm__l3_row *out);
/* PostgreSQL's page (L3 configured): 0, its *rows rows of which the *n
 * put would accept in *out (the others are left off and counted as L3's
 * errors, rt_value.c invariant 4); SHM_EL3 with the reason (a failed
 * query) or ENOMEM. */
int shm__rt_room_page(shm_env *env, const char *room,
                      const shm__room_cursor *before, uint32_t limit,
                      shm_msg ***out, size_t *n, size_t *rows);

#endif /* SHM_INTERNAL_H */
