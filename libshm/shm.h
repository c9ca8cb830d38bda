/*
 * shm.h - shared L1 cache on LMDB with a write log, for several processes.
 *
 * One environment directory holds one LMDB map shared by every process on the
 * host that opens it. Every write (message, static, graph change, mark) appends
 * one record to the write log in the same LMDB transaction as the data, so an
 * unflushed datum exists if and only if its log record does. The daemon
 * shm-flusher mirrors the log into Redis (L2) and PostgreSQL (L3).
 *
 * Conventions
 *  - Every function returning int returns 0 on success, a negative SHM_E* code
 *    (see SHM_ERRORS), an LMDB MDB_* code, or a positive errno value.
 *    shm_strerror() names any of them; shm_errmsg() says what failed and
 *    with which input for the last error of the calling thread, and ends
 *    with shm_strerror()'s text (print one or the other).
 *  - Out-parameters: a function returning int first sets every
 *    out-parameter it is given (the pointers it fills: *out, *n, *len, a
 *    struct) to NULL, 0 or all zeros, before it checks anything, and fills
 *    them only when it succeeds. After any failure they are NULL/0, so a
 *    cleanup path may free them whatever the result. The exceptions say
 *    what a failure leaves: shm_msg_put_many's *bad_index, shm_msg_from_
 *    json's err, shm_log_iter_next's and shm_log_decode's rec on
 *    SHM_ECORRUPT (shm_log.h). Parameters read and written (shm_msg_put's
 *    message, shm_log_decode's buffer, the *_json_append buffers of
 *    shm_log.h) follow their own functions' rules.
 *  - NULL: a NULL handle (shm_env, shm_rtxn, shm_log_iter) or a NULL
 *    pointer a function needs (every out-pointer not said to be optional)
 *    makes a function returning int fail with SHM_EINVAL, changing nothing
 *    but its out-parameters (above), shm_errmsg() naming the function and
 *    the argument. The others: the
 *    close, end and free functions do nothing with NULL; shm_env_options
 *    and shm_env_path return NULL; shm_stats_local fills *out with zeros
 *    for a NULL env (and does nothing with a NULL out). The value helpers
 *    taking no handle (shm_options_init, shm_uuid_format, shm_uuid_v7,
 *    shm_uuid_is_nil, shm_time_format, shm_sha_hex, shm_hist_percentile)
 *    need their pointers: NULL is a programmer's error there.
 *  - Timestamps are int64 microseconds since the Unix epoch (UTC), the
 *    precision of PostgreSQL's timestamptz. 0 means "none" / "fill in".
 *  - Ownership is stated on every function that returns memory.
 *
 * Fork rule: an shm_env handle must not be used across fork(). A child opens
 * its own handle with shm_env_open() (LMDB's rule: the lock table and the map
 * are tied to the process that opened them). Every call of a child that
 * would reach LMDB through a handle it inherited (a transaction,
 * shm_env_sync, shm_env_reader_check, shm_log_wait) fails with SHM_EINVAL,
 * shm_errmsg() saying so. Calls on the shared stats file alone work there
 * (shm_stats_shared, which leaves the parent's reads not yet published to
 * the parent; shm_stats_local, shm_log_wake, shm_env_options,
 * shm_env_path). The one call that releases anything a child may make
 * on the handle it inherited is shm_env_close(), which frees the child's
 * copy and nothing of the parent's: its reader slots, its Redis and
 * PostgreSQL sessions and its counts stay the parent's (the child keeps a
 * few hundred bytes of LMDB's, unfreed). The inherited handle is not the
 * child's open (below): its own shm_env_open of that directory works, and
 * closing the inherited one before or after it is safe (after: its LMDB
 * part is closed with the child's own handle).
 *
 * One open per process: open a directory once per process and share that
 * handle between threads. LMDB's POSIX locks are per process: closing a
 * second handle on the same directory would drop the first one's, and
 * another process's stale-reader check would then free its reader slots
 * while it reads. So shm_env_open of a directory this process has open
 * (the same directory by any path: a symlink, "dir/.", read-only or not)
 * fails with SHM_EBUSY, opening and changing nothing; once that handle is
 * closed, the directory opens again. Two threads opening one directory at
 * once: one gets the handle, the other SHM_EBUSY.
 *
 * Threads: a handle may be used from several threads at once; writes
 * serialise on LMDB's write lock, reads never take it. An shm_rtxn belongs to
 * the thread that began it.
 *
 * Map size: when another process grows the map (shm_options.map_size), a
 * call of this process that needs the larger map adopts it first. That
 * waits until no transaction of the handle is in progress (1 s at most;
 * other threads' calls wait meanwhile) and fails with MDB_MAP_RESIZED,
 * saying why, if the calling thread holds a transaction (an shm_rtxn, a
 * log iterator, of any environment) or another thread holds one longer:
 * the next call tries again. Keep read transactions short.
 */
#ifndef SHM_H
#define SHM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SHM_VERSION "0.1.0"

/* ---------------------------------------------------------------- errors */

/* X(name, code, message): one table makes the enum and shm_strerror(). A
 * message holds no parentheses: texts end with " (message)" (errors.c). */
#define SHM_ERRORS(X)                                                          \
	X(SHM_EINVAL, -32900, "invalid argument")                              \
	X(SHM_EUUID, -32901, "malformed UUID")                                 \
	X(SHM_EUTF8, -32902, "text is not valid UTF-8")                        \
	X(SHM_ENUL, -32903, "text contains a NUL byte")                        \
	X(SHM_ETOOBIG, -32904, "value larger than the configured maximum")     \
	X(SHM_ETYPE, -32905, "unknown message type")                           \
	X(SHM_EJSON, -32906, "malformed JSON")                                 \
	X(SHM_ENOTFOUND, -32907, "not found")                                  \
	X(SHM_EVERSION, -32908, "environment has an incompatible format version") \
	X(SHM_EFULL, -32909, "L1 or map full: flusher behind, or an old read " \
	  "snapshot held")                                                     \
	X(SHM_ECORRUPT, -32910, "corrupted or truncated data")                 \
	X(SHM_ETIMEDOUT, -32911, "timed out")                                  \
	X(SHM_EOBJECT, -32912, "malformed object identifier")                  \
	X(SHM_EBUSY, -32913, "in use: held by another process, or already "    \
	  "open in this one")                                                  \
	X(SHM_EL2, -32914, "Redis L2 error")                                   \
	X(SHM_EL3, -32915, "PostgreSQL L3 error")                              \
	X(SHM_ETIME, -32916, "malformed or out-of-range timestamp")            \
	X(SHM_EREADONLY, -32917, "environment opened read-only")               \
	X(SHM_EGENERATOR, -32918, "static generator failed")                  \
	X(SHM_EDELETED, -32919, "message deleted")

enum shm_error {
#define SHM__ERR_ENUM(name, code, msg) name = code,
	SHM_ERRORS(SHM__ERR_ENUM)
#undef SHM__ERR_ENUM
};

/* Static description of any return code (SHM_E*, MDB_*, errno). Never NULL. */
const char *shm_strerror(int rc);

/* ---------------------------------------------------------- environment */

typedef struct shm_env shm_env;

typedef enum shm_durability {
	SHM_DURABILITY_NOSYNC = 0,  /* no fsync at commit; the flusher syncs
	                               every sync_interval (default 1 s) */
	SHM_DURABILITY_NOMETASYNC,  /* fsync data, not the meta page */
	SHM_DURABILITY_SYNC         /* fsync data and meta at every commit */
} shm_durability;

typedef enum shm_write_mode {
	SHM_WRITE_BACK = 0, /* a write returns once in L1 (and its log) */
	SHM_WRITE_THROUGH   /* a message, graph or mark write returns once
	                       PostgreSQL has applied it (its transaction
	                       marks its last record awaited, meta
	                       "sink.pg.awaited", and the flusher sends the
	                       batch that holds it at once, without waiting
	                       batch-ms for more records): SHM_ETIMEDOUT after
	                       write_through_timeout_ms (stored, applied later),
	                       SHM_EL3 if PostgreSQL refused it (dead letter),
	                       SHM_ECORRUPT if the dead letter of one of its
	                       records does not decode (refused or not:
	                       unknown) */
} shm_write_mode;

typedef enum shm_sha_kind {
	SHM_SHA1_GIT = 0, /* SHA-1 of "blob <len>\0" + content (git hash-object) */
	SHM_SHA256 = 1    /* SHA-256 of the content (GitLab) */
} shm_sha_kind;

/* The smallest non-zero map_size (1 MiB): smaller ones are SHM_EINVAL. */
#define SHM_MAP_SIZE_MIN (1 << 20)
/* The most reader slots an environment may ask for: 64 bytes each in
 * lock.mdb, which never shrinks (4 MiB here). */
#define SHM_MAX_READERS_MAX 65536u

/* Start from shm_options_init() (or pass NULL to shm_env_open): a zeroed
 * struct is not the defaults. Its 0 is the default for what the
 * environment holds for every process, map_size, max_readers and the
 * policy (l1_*, l2_ttl_s, compress_threshold), and 0 is the default value
 * of the enums and flags; elsewhere 0 is taken as said: a max_content of
 * 0 refuses every non-empty content, a timeout or lease of 0 ms
 * (write_through_timeout_ms, l2/l3_timeout_ms, lease_ms, lease_wait_ms)
 * is over at once (a lease_ms of 0 is 1 ms: its taker holds it for that
 * long). shm_env_options shows the values in force, not those asked for,
 * where they differ: map_size, max_readers, the policy, lease_ms. */
typedef struct shm_options {
	size_t map_size;            /* bytes of the LMDB map. 0 (the
	                             * default): the environment's own, the
	                             * size stored in it (1 GiB in a new one).
	                             * Non-zero: this process maps that much
	                             * (at least the pages in use), and LMDB
	                             * stores it in the environment if larger
	                             * than the size stored, for every process.
	                             * shm_env_options shows the size in force,
	                             * which grows when this process adopts a
	                             * larger map another process stored
	                             * ("Map size" above). At least
	                             * SHM_MAP_SIZE_MIN */
	unsigned max_readers;       /* LMDB reader slots, one table for
	                             * every process (default 256; 0: the
	                             * default; at most SHM_MAX_READERS_MAX,
	                             * one per reading thread). The first process to open
	                             * the environment while no other has it
	                             * open makes the table at least this
	                             * large (LMDB's lock file never
	                             * shrinks); the others get the table as
	                             * it is, whatever they ask.
	                             * shm_env_options shows the slots in
	                             * force */
	/* The policy belongs to the environment (stored in it, obeyed by
	 * every process, shm-flusher included): 0 keeps the stored value
	 * (the default in brackets in a new environment); non-zero sets it
	 * for every process. After shm_env_open, shm_env_options shows the
	 * values in force at the open. One set by a later open reaches a
	 * handle at its next write for l1_*, at its next open for l2_ttl_s
	 * and compress_threshold (shm_policy_get reads the stored ones;
	 * shm-flusher reads them at every batch). */
	uint64_t l1_max_entries;    /* messages + statics (100000) */
	uint64_t l1_max_bytes;      /* stored value bytes (256 MiB) */
	uint32_t l1_ttl_s;          /* flushed entries older expire (300) */
	uint32_t l2_ttl_s;          /* Redis EX of mirrored keys and
	                             * read-through fills (3600) */
	uint32_t compress_threshold; /* LZ4-frame log payloads and Redis
	                              * values above, in bytes (1024) */
	uint32_t max_content;       /* max message/static content (64 KiB) */
	shm_durability durability;  /* default SHM_DURABILITY_NOSYNC */
	shm_write_mode write_mode;  /* default SHM_WRITE_BACK */
	uint32_t write_through_timeout_ms; /* default 5000 */
	const char *redis_url;      /* read-through L2 (shm_redis_url_parse) */
	const char *pg_conninfo;    /* read-through L3: libpq conninfo or
	                             * database name (checked at open) */
	uint32_t l2_timeout_ms;     /* per read-through level (default 50) */
	uint32_t l3_timeout_ms;     /* default 50 */
	uint32_t lease_ms;          /* static generator lease (default 10000) */
	uint32_t lease_wait_ms;     /* max wait for another generator (30000) */
	bool read_only;             /* open read-only (tools) */
	bool must_exist;            /* read-write, but never create: a dir
	                             * without an environment is SHM_ENOTFOUND
	                             * (shm-flusher; read_only implies it) */
} shm_options;

/* Fills *o with the defaults documented above. */
void shm_options_init(shm_options *o);

/*
 * Opens (creating if needed) the environment in directory dir. opt may be
 * NULL for defaults. A read-write open clears the reader slots of dead
 * processes (a read-only one leaves them to shm_env_reader_check, so tools
 * can show them). Fails, changing nothing,
 * with SHM_EVERSION if the directory was written by an incompatible format
 * version or holds an LMDB environment that is not an shm one (only an empty
 * map is made one), SHM_ECORRUPT if data.mdb has fewer pages than are in use
 * or ends inside LMDB's two meta pages (a cut or torn copy; the message
 * names the file and what it lacks), SHM_EINVAL if dir is too long for its
 * files' paths or an option is invalid (redis_url, pg_conninfo: one libpq
 * would refuse at every connect before it asks a server, a port 'abc' say,
 * as shm-flusher's --pg, durability, write_mode,
 * map_size below SHM_MAP_SIZE_MIN, max_readers above
 * SHM_MAX_READERS_MAX; the host names of redis_url and of
 * pg_conninfo (each of a host list, or
 * PGHOST's) are resolved here, once, where a slow DNS may block: one that
 * does not resolve is invalid, and gets never resolve them, PostgreSQL's
 * being given to libpq as hostaddr; a pg_conninfo with its own hostaddr,
 * or a service, or PGHOSTADDR or PGSERVICE set, is used as given, a
 * hostaddr element that is not a numeric address being invalid), and with
 * SHM_EBUSY if this process has dir open already (One open per process,
 * above: share that handle between threads). *opt and its strings
 * (redis_url, pg_conninfo) are copied: they need not outlive the call. On
 * success *out is a handle
 * owned by the caller, released with shm_env_close(); on failure *out is
 * NULL (Conventions).
 */
int shm_env_open(const char *dir, const shm_options *opt, shm_env **out);
/* Releases env; NULL: does nothing. Its directory can then be opened
 * again in this process. In a child of fork() of the process that opened
 * env, releases the child's copy only (the fork rule above). */
void shm_env_close(shm_env *env);

/* Text of the calling thread's last error: what failed, with which input,
 * ending with shm_strerror()'s description of the code, once: print it
 * alone. Input quoted in it is shown printably: its first 80 bytes, any
 * byte that is not printable UTF-8 or an ASCII space (a control, invalid
 * UTF-8) as \xNN, "..." if it goes on. Valid until the thread's next
 * failing call. Never NULL. */
const char *shm_errmsg(void);

/* The options the handle was opened with, and its directory: env's (its
 * copies of the strings too), valid until shm_env_close(env). NULL for a
 * NULL env. */
const shm_options *shm_env_options(const shm_env *env);
const char *shm_env_path(const shm_env *env);

/* A Redis address: redis://[[user]:password@]host[:port][/db] (port 6379,
 * db 0 by default; host a name, an IPv4 address or [an IPv6 one], brackets
 * holding nothing else: any other character in it is refused) or unix://[[user]:password@]/path
 * [?db=N]; a user name
 * means Redis 6 ACLs (AUTH user password). shm_env_open checks
 * shm_options.redis_url with it; the flusher parses --redis with it. */
typedef struct shm_redis_addr {
	char host[256];     /* host name, or the socket path (unix_socket) */
	int port;           /* 0 for a unix socket */
	int db;
	char user[128];     /* "" for the default user */
	char password[256]; /* "" for none */
	bool unix_socket;
} shm_redis_addr;
/* 0, or SHM_EINVAL with shm_errmsg() naming what is wrong in url. */
int shm_redis_url_parse(const char *url, shm_redis_addr *out);

/* Forces the map to disk (what the flusher does periodically in nosync). */
int shm_env_sync(shm_env *env);

/* Clears reader slots of dead processes; *cleared (may be NULL) gets their
 * number. */
int shm_env_reader_check(shm_env *env, int *cleared);

/* --------------------------------------------------------------- UUIDs */

typedef struct shm_uuid {
	uint8_t b[16];
} shm_uuid;

/* Parses the canonical 8-4-4-4-12 hex form (either case). SHM_EUUID else. */
int shm_uuid_parse(const char *s, shm_uuid *out);
/* Writes 36 characters + NUL, lowercase. */
void shm_uuid_format(const shm_uuid *u, char out[37]);
/* A new time-ordered UUIDv7 (RFC 9562), monotonic within the process. */
void shm_uuid_v7(shm_uuid *out);
bool shm_uuid_is_nil(const shm_uuid *u);

/* ---------------------------------------------------------- timestamps */

int64_t shm_now_us(void);
/* RFC 3339 like chrono's serde output: "2026-11-23T10:00:00.123456Z"
 * (fraction of 0, 3 or 6 digits). out needs 40 bytes. */
void shm_time_format(int64_t us, char out[40]);
/* Accepts RFC 3339 with any offset and 0-9 fraction digits, for instants
 * within years 0000..9999 in UTC (what shm_time_format writes back).
 * SHM_ETIME else. */
int shm_time_parse(const char *s, int64_t *us);

/* ------------------------------------------------------------ messages */

typedef enum shm_msg_type {
	SHM_MSG_TEXT = 0,
	SHM_MSG_IMAGE,
	SHM_MSG_FILE,
	SHM_MSG_AUDIO,
	SHM_MSG_VIDEO,
	SHM_MSG_SYSTEM,
	SHM_MSG_EDIT,
	SHM_MSG_DELETE,
	SHM_MSG_REACTION,
	SHM_MSG_TYPE_COUNT
} shm_msg_type;

/* "Text", "Image", ... (static string), NULL if out of range. */
const char *shm_msg_type_name(shm_msg_type t);
/* Exact, case-sensitive names as above. SHM_ETYPE else. */
int shm_msg_type_parse(const char *s, shm_msg_type *out);

/* Content of a soft-deleted message, as in the seed. Type Delete is a
 * soft-deleted message: a put of one must carry this content (SHM_EINVAL
 * else), as shm_msg_delete leaves it; read-through takes no other either. */
#define SHM_DELETED_CONTENT "[Message supprimé]"

/* Limits that do not depend on options. */
#define SHM_MAX_ROOM 255     /* bytes of room_id */
#define SHM_MAX_USERNAME 255 /* bytes of username */
#define SHM_MAX_EMOJI 64     /* bytes of a reaction key */
#define SHM_MAX_NAME 1024    /* bytes of attachment filename/type/url */
#define SHM_MAX_LIST 4096    /* mentions, attachments, reactions, users */
#define SHM_MAX_PAGE 10000   /* messages of a room page (shm_room_page) */

/* Strings of a message given to put or the JSON writer: NULL is taken as
 * "" wherever empty is allowed (username, content with content_len 0, an
 * attachment's filename, content_type and url); room_id and emojis must be
 * non-empty. What get, views and pages return has no NULL string, and each
 * is NUL-terminated, content too (a NUL after its content_len bytes, which
 * hold none): printf("%s") may print them. */
typedef struct shm_attachment {
	shm_uuid id;
	const char *filename;     /* UTF-8, 0..SHM_MAX_NAME bytes */
	const char *content_type; /* likewise */
	uint64_t size;            /* at most INT64_MAX */
	const char *url;          /* likewise */
} shm_attachment;

typedef struct shm_reaction {
	const char *emoji;       /* UTF-8, 1..SHM_MAX_EMOJI bytes */
	const int32_t *user_ids; /* in the order they reacted */
	uint32_t n_users;
} shm_reaction;

/* The seed's OptimizedMessage, field for field (compressed_content aside:
 * compression applies to whole stored values and log payloads). */
typedef struct shm_msg {
	shm_uuid id;           /* nil on put: a UUIDv7 is generated */
	const char *room_id;   /* UTF-8, 1..SHM_MAX_ROOM bytes */
	int32_t user_id;
	const char *username;  /* UTF-8, 0..SHM_MAX_USERNAME bytes */
	const char *content;   /* UTF-8, no NUL, content_len bytes */
	uint32_t content_len;
	shm_msg_type type;
	/* Times: µs since the epoch, UTC, from 1970-01-01T00:00:00.000001Z
	 * to 9999-12-31T23:59:59.999999Z, the one range put stores, the
	 * JSON writer writes and the reader reads (SHM_ETIME outside it,
	 * naming the field and the value); 0 is none. */
	int64_t created_at;    /* 0 on put: filled with the write's time,
	                        * unique (shm_msg_put) */
	int64_t updated_at;    /* 0: none. The time of the message's last
	                        * change, and its version: every change
	                        * (edit, delete, reaction, a reply's count)
	                        * sets it to max(now, the one L1 held + 1 µs),
	                        * so a version made from another is newer
	                        * whatever the hosts' clocks (at the end of
	                        * the range it stays there); PostgreSQL keeps
	                        * the row with the newer one (README, "Several
	                        * hosts"). A put stores the one given, but
	                        * for a replace of a message L1 holds with an
	                        * older one (0 included), a change like the
	                        * others: max(now, the one L1 held + 1 µs);
	                        * m keeps what it gave. */
	/* metadata */
	bool edited;
	uint32_t edit_count;
	/* n_reactions, one per emoji, in any order for put and the JSON
	 * writer; stored, read back (get, views, pages) and written as JSON
	 * sorted by emoji (strcmp: byte order). */
	const shm_reaction *reactions;
	uint32_t n_reactions;
	const int32_t *mentions;
	uint32_t n_mentions;
	const shm_attachment *attachments;
	uint32_t n_attachments;
	uint32_t reply_count;
	int64_t last_reply_at; /* 0: none */
	/* optimisations */
	uint64_t content_hash; /* XXH3-64 of content; always computed on put */
	/* threads: never the nil UUID; parent_id never id (shm_msg_put) */
	bool has_parent;
	shm_uuid parent_id;    /* the message this one replies to */
	bool has_thread;
	shm_uuid thread_id;    /* its thread's root: for a reply, its
	                        * parent's thread_id, or its parent's id
	                        * when the parent has none (a root may
	                        * carry its own id, as in the seed) */
} shm_msg;

/*
 * Validates and stores m (fills m->id if nil, m->created_at if 0, and
 * m->content_hash), with its log record, in one transaction. Putting an id
 * that exists replaces it, unless it is soft-deleted: a soft delete is
 * final, and a put of a deleted id is SHM_EDELETED, changing nothing, but
 * for the deleted message exactly as stored (as shm_msg_get returns it: a
 * dump imported again), which writes nothing, as a second shm_msg_delete
 * does. A created_at of 0 becomes the time of the write:
 * the messages of one shm_msg_put_many get successive microseconds in
 * their order, and every time filled in is later than those filled in
 * before it, in any process, so no two such messages share a created_at
 * (times a caller gives may tie: shm_room_page_before pages through
 * ties). A reply is checked against its parent as L1 holds it once
 * the write is done (one L1 does not hold is not checked): it is in the
 * parent's room, its thread_id (if any) is the parent's thread (see
 * shm_msg), and it is not the parent's ancestor (SHM_EINVAL naming both);
 * a soft-deleted parent takes no new reply (SHM_EDELETED; the replies it
 * had stay, and may be put again while L1 holds them: one it dropped is
 * new to it, refused too). A reply counts once in its parent's
 * reply_count
 * (when the parent is in L1): a new reply bumps it and last_reply_at (and
 * the parent's updated_at, as an edit does); a replace under the same
 * parent changes nothing; a replace under another parent (or none) moves
 * the count (each parent changed gets a new updated_at). A reply whose id L1 does not hold may
 * be one it dropped (evicted, expired, or written by another host): it is
 * new when the put makes its id (nil) or its created_at (0), or when the
 * created_at given is after its room's watermark (the newest created_at
 * of a message of the room that left L1 or was written elsewhere, which a
 * peer's clock ahead can put past this host's); else, with
 * pg_conninfo, PostgreSQL is asked for its row (within l3_timeout_ms,
 * never under the writers' lock), which stands for what L1 would have
 * held: counted already, or counted under the parent it names, which
 * loses it. PostgreSQL not answering: SHM_EL3, nothing stored (a retry
 * asks again). Without pg_conninfo it is new; and so is a message L1
 * dropped put again with a later created_at (0 included) or in another
 * room: a reply put with created_at 0 never waits for PostgreSQL. One
 * put again with no parent, or under a parent L1 does not hold, is not
 * looked up: a parent L1 holds that PostgreSQL's row names keeps its
 * count.
 * Reactions are stored sorted by emoji,
 * whatever m's order (m's array is left as it is; each user list keeps its
 * order), and a reaction without users is dropped (it is no reaction, as
 * after shm_msg_react removes its last user): one message, one encoding.
 * Only what the JSON side can carry back
 * is accepted (timestamps 1970..9999, sizes within int64, each emoji once,
 * each user once per reaction). On bad input, returns the matching SHM_E*
 * code and changes nothing.
 * A put that fails without storing m (bad input, SHM_EFULL, ...) gives
 * m->created_at back as it was: one it filled in is 0 again, so that a
 * retry of m gets a new time, unique as above, not one taken for the
 * caller's. An id it filled in stays (and content_hash): a retry of m
 * stores it under that id, replacing rather than duplicating it if it was
 * stored after all. When m was stored and only write-through's wait
 * failed (SHM_ETIMEDOUT, SHM_EL3, SHM_ECORRUPT), m keeps what was stored.
 * (SHM_EL3 of a reply PostgreSQL could not judge stored nothing: its text
 * says so. Either way a retry of m is safe.)
 */
int shm_msg_put(shm_env *env, shm_msg *m);
/* All or nothing: every message validated, then all stored in one
 * transaction. *bad_index (if not NULL) gets the index of the message
 * refused (by its own fields, as a put of a deleted id or as a reply: see
 * shm_msg_put, the parent taken as the batch leaves it), n when no one
 * message is to blame (success included).
 * A batch that alone passes l1_max_entries or l1_max_bytes can never fit:
 * SHM_ETOOBIG (send it in smaller batches).
 * A parent the batch carries with a non-zero reply_count keeps that count
 * (its replies in the batch do not bump it): dump | import copies a thread
 * whose parent already counts its replies. The replies PostgreSQL is
 * asked about are asked in one query. Replies are counted after the
 * whole batch is stored, so the order of msgs does not change the result;
 * an id twice in msgs is stored as its last copy. A failure gives back
 * created_at as shm_msg_put does, for every message of msgs. */
int shm_msg_put_many(shm_env *env, shm_msg *msgs, size_t n, size_t *bad_index);

/*
 * Copy: *out is one allocation owned by the caller, freed with
 * shm_msg_free(); every pointer inside points into it. On an L1 miss,
 * read-through asks L2 then L3 when configured; the last level configured
 * (L3, else L2, else L1) is the record: SHM_ENOTFOUND only when it has no
 * such message, SHM_EL3 (or SHM_EL2) when it could not say (unreachable,
 * timed out, skipped after a recent failure, or holding a value put would
 * refuse). A failed L2 with L3 configured just leaves L3 to answer.
 * shm_errmsg() names each failed level's reason.
 */
int shm_msg_get(shm_env *env, const shm_uuid *id, shm_msg **out);
void shm_msg_free(shm_msg *m);

/* Read transaction for zero-copy views. Never takes the write lock. It
 * reads L1 as it was at shm_rtxn_begin: writes made since, the calling
 * thread's own included, are not seen through it (SHM_ENOTFOUND for a
 * message put since). Keep it short ("Map size" above; an old snapshot
 * also holds pages back: SHM_EFULL). */
typedef struct shm_rtxn shm_rtxn;
int shm_rtxn_begin(shm_env *env, shm_rtxn **out);
/* Ends the transaction: every view obtained through it dies here. NULL:
 * does nothing. */
void shm_rtxn_end(shm_rtxn *t);
/*
 * Zero-copy view of a message in L1 only (no read-through): strings and
 * content point into the memory map; *out and the arrays it points to live in
 * the transaction's arena. Everything is valid until shm_rtxn_end(t).
 */
int shm_msg_view(shm_rtxn *t, const shm_uuid *id, const shm_msg **out);

/* Edit, delete and react change the message as L1 holds it. One L1 does
 * not hold (dropped once flushed: evicted, or expired after l1_ttl_s; or
 * another host's) is read through first, as shm_msg_get would, and its
 * fill changed: SHM_ENOTFOUND only when the record (L3, else L2, else L1
 * alone) has no such message, SHM_EL3 (SHM_EL2) when it could not say,
 * nothing written. Without read-through configured, L1 alone answers: a
 * message it dropped is SHM_ENOTFOUND.
 *
 * Each change makes a new version: updated_at = max(now, the one L1
 * held + 1 µs) (shm_msg).
 *
 * Edit: new content, updated_at (above), edited = true, edit_count + 1
 * (edit_count and a parent's reply_count stop at UINT32_MAX).
 * SHM_EDELETED for a soft-deleted message (its content stays deleted).
 * An edit or a reaction that would grow a message past what shm_msg_put
 * accepts (an encoding of 2 * max_content + 64 KiB) is SHM_ETOOBIG. */
int shm_msg_edit(shm_env *env, const shm_uuid *id, const char *content,
                 size_t len);
/* Soft delete: type Delete, content SHM_DELETED_CONTENT, updated_at as an
 * edit's.
 * Idempotent: a deleted message is left as it is (no new write). */
int shm_msg_delete(shm_env *env, const shm_uuid *id);
/* Adds (add = true) or removes user_id's emoji reaction, updated_at as an
 * edit's. Idempotent (no change: nothing written, updated_at kept). A new
 * emoji takes its place in emoji order, a new user the end of its list.
 * SHM_EDELETED for a soft-deleted message. */
int shm_msg_react(shm_env *env, const shm_uuid *id, int32_t user_id,
                  const char *emoji, bool add);

/*
 * A room page, newest first: messages of room below a bound, at most limit
 * (1..SHM_MAX_PAGE), ordered by (created_at, id) DESC, ids compared as
 * memcmp of their 16 bytes (PostgreSQL's uuid order).
 * shm_room_page_before's bound is a message's place: those with
 * (created_at, id) < (before, *before_id). The next page older than a page
 * is asked with before and before_id the created_at and id of its last
 * message: it begins right after it, skipping none, even of a tie (times
 * a caller gives may tie: shm_msg_put). before 0: no bound, from the
 * newest (before_id then NULL). before_id NULL: the bare timestamp, as
 * shm_room_page. SHM_EINVAL for a before_id with before 0, or the nil
 * UUID; SHM_ETIME for a negative before; the room_id checks of
 * shm_msg_put; SHM_EINVAL for a limit out of range.
 * shm_room_page's bound is a bare timestamp: created_at < before (0: no
 * bound). Paging with it, before = the created_at of the last message,
 * skips the messages of that created_at left off the page; libshm's
 * filled-in times never tie, so it skips none of those.
 * Served from the L1 room index; from PostgreSQL when L1 cannot answer it
 * completely and L3 is configured, leaving off (and counting in l3_errors)
 * the rows shm_msg_put would refuse. If PostgreSQL then fails (unreachable,
 * timed out, skipped after a recent failure), SHM_EL3 with *out NULL and
 * *n 0: never L1's part of the page, which could read as the end of the
 * room. Without L3 configured, L1's page is the answer, complete or not.
 * *out is an array of *n messages owned by the caller, freed with
 * shm_msgs_free().
 */
int shm_room_page_before(shm_env *env, const char *room, int64_t before,
                         const shm_uuid *before_id, uint32_t limit,
                         shm_msg ***out, size_t *n);
int shm_room_page(shm_env *env, const char *room, int64_t before,
                  uint32_t limit, shm_msg ***out, size_t *n);
void shm_msgs_free(shm_msg **msgs, size_t n);

/* ---------------------------------------------------------------- JSON */

/*
 * The seed's serde shape: {"id","room_id","user_id","username","content",
 * "message_type","created_at","updated_at","metadata":{"edited",
 * "edit_count","reactions","mentions","attachments","reply_count",
 * "last_reply_at"},"content_hash","compressed_content":null,"parent_id",
 * "thread_id"}, reactions sorted by emoji whatever m's order (as put
 * stores them). *json is malloc'd, owned by the caller (free()); *len
 * (if not NULL) gets its length. Errors: SHM_EUTF8 (a text field is not
 * valid UTF-8; NUL bytes in content are written as \u0000), SHM_ETYPE,
 * SHM_EINVAL (two reactions with one emoji, an attachment size beyond
 * INT64_MAX, a NULL array or content with a non-zero count, a reaction
 * with users and no emoji), SHM_ETIME (a time outside the range of
 * shm_msg's times, above, or a created_at of 0, which the reader would
 * refuse), SHM_EUUID (a nil id, or a nil parent_id or thread_id given,
 * which the reader refuses too), ENOMEM; *json is then NULL. shm_log.h
 * has an appending form.
 */
int shm_msg_to_json(const shm_msg *m, char **json, size_t *len);
/*
 * Parses one JSON object of that shape; its reactions may come in any key
 * order and are sorted by emoji in *out. Missing id, created_at,
 * content_hash and metadata are left for shm_msg_put to fill in; an id
 * given nil or a timestamp at the epoch, which mean none there, are
 * refused, and so is a time outside the range of shm_msg's times
 * (SHM_ETIME naming the field: what put would refuse). On error
 * returns SHM_EJSON/SHM_EUUID/SHM_ETYPE/... and writes the reason into
 * err (if not NULL and errlen > 0; "" on success). *out is freed with
 * shm_msg_free().
 */
int shm_msg_from_json(const char *json, size_t len, shm_msg **out,
                      char *err, size_t errlen);

/* ------------------------------------------------------------- statics */

/* Objects are "TYPE/ID", split at the last '/': 1..486 bytes (an LMDB key
 * holds 511: 9 bytes of L1 index + 16 of website + the object), printable,
 * no whitespace or control characters; TYPE and ID non-empty. An ID of the
 * 8-4-4-4-12 hex form is a UUID, case-insensitive as in PostgreSQL: every
 * function taking an object stores and compares it in lower case, so
 * "Person/7F3C...-..." and "Person/7f3c...-..." are one object, and lists,
 * keys and log records give it back in lower case. Any other ID (other UUID
 * spellings included: braces, no hyphens) is text, compared byte for
 * byte. */
#define SHM_MAX_OBJECT 486
int shm_object_check(const char *object);

typedef struct shm_static {
	const void *content;   /* content_len bytes, then a NUL not counted
	                        * (text prints as a C string) */
	size_t content_len;
	char sha1[41];         /* git blob SHA-1, hex */
	char sha256[65];       /* SHA-256 of the content, hex */
	int64_t generated_at;  /* µs since the epoch: when it was generated
	                        * or put */
} shm_static;

/*
 * Generator callback: produce the content of (website, object). Store a
 * malloc'd buffer in *content (libshm frees it, whatever the return) and
 * its length in *len. Return 0, or non-zero to fail (the get returns
 * SHM_EGENERATOR). It runs with no transaction held and may call libshm,
 * e.g. get the statics its output embeds; a get of the static it is
 * generating, directly or through other generators (a page embedding a
 * block embedding the page), fails at once with SHM_EGENERATOR naming
 * the cycle, instead of waiting for itself.
 */
typedef int (*shm_static_gen_fn)(const shm_uuid *website, const char *object,
                                 void *user, void **content, size_t *len);

/*
 * Returns the static of (website, object), running gen only on a miss.
 * Across processes only one runs the generator for a key at a time; the
 * others (processes or threads) wait (at most lease_wait_ms, then
 * SHM_ETIMEDOUT) without holding a transaction. *out is one allocation owned by the caller (shm_static_free);
 * it carries both SHAs, so either kind can be read. gen NULL is
 * shm_static_peek's lookup but SHM_EINVAL on a miss. Errors of the
 * generator's result: SHM_EGENERATOR (it returned non-zero), SHM_EINVAL
 * (NULL content with a non-zero len), SHM_ETOOBIG (more than max_content);
 * nothing is stored then, and the next get runs a generator again.
 */
int shm_static_get(shm_env *env, const shm_uuid *website, const char *object,
                   shm_static_gen_fn gen, void *user, shm_static **out);
/* Stores content as the static of (website, object); *out (may be NULL)
 * gets it as shm_static_get's. */
int shm_static_put(shm_env *env, const shm_uuid *website, const char *object,
                   const void *content, size_t len, shm_static **out);
/* Never generates: SHM_ENOTFOUND on a miss. */
int shm_static_peek(shm_env *env, const shm_uuid *website, const char *object,
                    shm_static **out);
void shm_static_free(shm_static *s);
/* SHA of content computed as kind, hex into out (65 bytes). */
void shm_sha_hex(shm_sha_kind kind, const void *content, size_t len,
                 char out[65]);

/* ------------------------------------------------- object graph, busting */

/* The type of website objects: every "Communication::Website/<id>" object
 * (the website's own, or another website embedded in its pages) is direct,
 * declared or not, as Osuny's websites are direct objects by their class. */
#define SHM_WEBSITE_TYPE "Communication::Website"

/*
 * Replaces object's direct dependencies (the objects its output embeds) and
 * declares whether object is direct (attached to the website: the website
 * itself, pages, posts, categories, events) or indirect (people,
 * organisations, blocks, media). Dependencies not declared yet are indirect,
 * websites excepted (SHM_WEBSITE_TYPE). An object among its own dependencies,
 * or a website declared indirect (direct false), is refused (SHM_EINVAL).
 */
int shm_deps_set(shm_env *env, const shm_uuid *website, const char *object,
                 bool direct, const char *const *deps, size_t n_deps);

/* A list of objects: *out is one allocation owned by the caller, freed with
 * free(); it holds n NUL-terminated strings. */
typedef struct shm_objlist {
	size_t n;
	char **items;
} shm_objlist;

/* The three below give an empty list (n 0, not an error) for an object the
 * graph does not know, as for a known one without edges: shmctl deps show
 * tells them apart. */
/* Direct dependencies of object (no recursion). */
int shm_deps_get(shm_env *env, const shm_uuid *website, const char *object,
                 shm_objlist **out);
/* Recursive dependencies: forward walk through indirect objects, stopping at
 * direct ones (included, not expanded), cycles cut. Object itself excluded. */
int shm_deps_recursive(shm_env *env, const shm_uuid *website,
                       const char *object, shm_objlist **out);
/* References: the same walk backwards (who embeds object). */
int shm_deps_referrers(shm_env *env, const shm_uuid *website,
                       const char *object, shm_objlist **out);
/* Whether object is direct: a website (SHM_WEBSITE_TYPE), or declared so. */
int shm_object_is_direct(shm_env *env, const shm_uuid *website,
                         const char *object, bool *direct);

/* Save: busts object and its references, marks object for the cleanup. */
int shm_object_save(shm_env *env, const shm_uuid *website, const char *object);
/* Destroy: as save, then drops object's edges. */
int shm_object_destroy(shm_env *env, const shm_uuid *website,
                       const char *object);
/* Busts object's static and SHA alone. */
int shm_static_bust(shm_env *env, const shm_uuid *website, const char *object);

/* --------------------------------------------------------------- stats */

#define SHM_HIST_BUCKETS 48 /* bucket i: latencies in [2^i, 2^(i+1)) ns */

typedef struct shm_hist {
	uint64_t count;
	uint64_t bucket[SHM_HIST_BUCKETS];
} shm_hist;

/* Upper bound of the p-th percentile (0 < p <= 100), in ns; 0 if empty.
 * A p of 0 or less (or NaN) gives 0, one above 100 the 100th. */
uint64_t shm_hist_percentile(const shm_hist *h, double p);

/* X(field, description): one table makes the struct, the shared counters
 * and shmctl stat's output. */
#define SHM_COUNTERS(X)                                                        \
	X(l1_hits, "message gets answered by L1")                              \
	X(l1_misses, "message gets not in L1")                                 \
	X(l2_hits, "read-through answers from Redis")                          \
	X(l2_misses, "read-through misses in Redis")                           \
	X(l3_hits, "read-through answers from PostgreSQL")                     \
	X(l3_misses, "read-through misses in PostgreSQL")                      \
	X(l2_errors, "Redis read-through errors and timeouts, fills included") \
	X(l3_errors, "PostgreSQL read-through errors and timeouts")            \
	X(fills, "entries filled into L1 by read-through")                     \
	X(puts, "messages put")                                                \
	X(edits, "messages edited")                                            \
	X(deletes, "messages soft-deleted")                                    \
	X(reacts, "reactions added or removed")                                \
	X(room_pages, "room pages served")                                     \
	X(room_pages_l3, "room pages answered by PostgreSQL")                  \
	X(writes_failed_full, "writes refused with SHM_EFULL: L1 or map full") \
	X(evictions, "entries evicted (capacity)")                             \
	X(expirations, "entries expired (L1 TTL)")                             \
	X(static_hits, "statics answered by L1")                               \
	X(static_misses, "statics not in L1")                                  \
	X(static_generated, "statics generated")                               \
	X(static_waits, "static gets that waited for another generator")       \
	X(static_takeovers, "generator leases taken over")                     \
	X(busts, "statics busted")                                             \
	X(marks, "objects marked for the connection cleanup")                  \
	X(log_appends, "log records appended")                                 \
	X(log_bytes_raw, "log payload bytes before compression")               \
	X(log_bytes_stored, "log payload bytes stored")                        \
	X(invalidations, "entries dropped by other hosts' writes") \
	X(inval_received, "invalidation keys received from other hosts")

typedef struct shm_counters {
#define SHM__CNT_FIELD(name, desc) uint64_t name;
	SHM_COUNTERS(SHM__CNT_FIELD)
#undef SHM__CNT_FIELD
	/* only calls that succeed are timed: a failure's time says little */
	shm_hist put_latency; /* shm_msg_put/put_many/edit/delete/react whose
	                       * write committed, up to the commit (not a
	                       * write-through wait for PostgreSQL) */
	shm_hist get_latency; /* shm_msg_get that answered: 0 or
	                       * SHM_ENOTFOUND */
} shm_counters;

/* Counters since the environment was created (all processes). */
int shm_stats_shared(shm_env *env, shm_counters *out);
/* Counters of this handle only; all 0 for a NULL env. */
void shm_stats_local(shm_env *env, shm_counters *out);

typedef struct shm_info {
	uint64_t messages, statics, rooms, graph_objects, marks;
	uint64_t l1_bytes;          /* value bytes counted against l1_max_bytes */
	uint64_t log_records, log_first, log_last; /* first/last 0 if empty */
	uint64_t next_seq;          /* the next record's sequence number */
	uint64_t flushed;           /* every sink has applied up to here */
	uint64_t dead_letters;
	size_t map_size;
	size_t map_used;            /* bytes of the pages in use: LMDB's
	                             * high-water mark less its free list
	                             * (pages freed for later writes to reuse;
	                             * those an old snapshot holds back count
	                             * as free too) */
	unsigned readers_used;       /* reader slots in use (pid set), the
	                             * caller's own and stale ones of dead
	                             * processes included */
	unsigned readers_max;
	uint32_t format_version;
} shm_info;

int shm_env_info(shm_env *env, shm_info *out);

#ifdef __cplusplus
}
#endif
#endif /* SHM_H */
