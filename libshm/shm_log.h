/*
 * shm_log.h - the write log, sink positions and dead letters, for the
 * flusher and the tools. Applications only need shm.h. NULL handles and
 * pointers are refused as shm.h's Conventions say.
 *
 * Log record format (version 1), the value of key `seq` (MDB_INTEGERKEY,
 * uint64) in the "log" database. Integers are little-endian.
 *
 *   0       1       2               4                               8
 *   +-------+-------+---------------+-------------------------------+
 *   |  ver  |  op   |     flags     |            key_len            |
 *   +-------+-------+---------------+-------------------------------+
 *   |                        seq (uint64)                           |  8
 *   +---------------------------------------------------------------+
 *   |                 time (int64, microseconds, UTC)               | 16
 *   +-------------------------------+-------------------------------+
 *   |   stored_len (payload bytes)  |   raw_len (after LZ4 decode)  | 24
 *   +-------------------------------+-------------------------------+
 *   |   checksum: XXH3-64 of the record with this field zeroed      | 32
 *   +---------------------------------------------------------------+
 *   |  key (key_len bytes) ...  | payload (stored_len bytes) ...    | 40
 *   +---------------------------------------------------------------+
 *
 *   flags bit 0 (SHM_LOG_LZ4): the payload is an LZ4 frame of raw_len bytes
 *   (set when raw_len > compress_threshold and the frame is smaller).
 *
 * Sink positions live in meta as "sink.<name>.applied" (names "redis",
 * "pg"); a write-through write waits for "sink.pg.applied" >= its seq.
 * Before it waits, its own transaction set "sink.pg.awaited" to that seq:
 * the highest seq a writer has waited for, which only grows and may be
 * stale (its writer done or dead: then it is at or below the position,
 * and means nothing). The pg sink's worker closes its batch at once when
 * the batch holds "sink.pg.awaited" (flusher/worker.c invariant 5),
 * instead of waiting batch-ms for more records; no writer waits for
 * Redis, which has no such mark.
 *
 * Ops, their key and their (raw) payload:
 *   MSG_PUT, MSG_EDIT, MSG_DELETE, MSG_REACT, MSG_REPLY
 *       key = message id (16 bytes); payload = the message's full new state
 *       in the value encoding (libshm/codec.h). MSG_REPLY is the parent's
 *       new reply_count/last_reply_at after a reply was put.
 *   STATIC_PUT   key = website (16) + object; payload = static encoding
 *   STATIC_BUST  key = website (16) + object; payload empty
 *   GRAPH_SET    key = website (16) + object; payload = u8 direct, then
 *                u32 n, then n times (u16 len, object bytes)
 *   GRAPH_DROP   key = website (16) + object; payload empty
 *   MARK         key = website (16) + object; payload = u8 reason (1 save,
 *                2 destroy)
 *
 * Invariants
 *  1. seq is strictly increasing across all processes (assigned under the
 *     LMDB write lock) and never reused, even after a trim.
 *  2. A record is appended in the same transaction as the data it
 *     describes: an unflushed datum exists iff its record does.
 *  3. Records are trimmed only up to the flushed position, the minimum of
 *     every sink's applied position.
 */
#ifndef SHM_LOG_H
#define SHM_LOG_H

#include "shm.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SHM_LOG_VERSION 1
#define SHM_LOG_HEADER 40
#define SHM_LOG_LZ4 0x1

typedef enum shm_op {
	SHM_OP_MSG_PUT = 1,
	SHM_OP_MSG_EDIT = 2,
	SHM_OP_MSG_DELETE = 3,
	SHM_OP_MSG_REACT = 4,
	SHM_OP_MSG_REPLY = 5,
	SHM_OP_STATIC_PUT = 16,
	SHM_OP_STATIC_BUST = 17,
	SHM_OP_GRAPH_SET = 18,
	SHM_OP_GRAPH_DROP = 19,
	SHM_OP_MARK = 20
} shm_op;

/* "msg_put", ... ; "unknown" for anything else. */
const char *shm_op_name(int op);
static inline bool shm_op_is_msg(int op)
{
	return op >= SHM_OP_MSG_PUT && op <= SHM_OP_MSG_REPLY;
}

/* A decoded record. key and payload point into the iterator's read
 * transaction (or its decompression buffer): valid until the next
 * shm_log_iter_next() or shm_log_iter_close(). */
typedef struct shm_log_rec {
	uint64_t seq;
	int64_t time;
	uint8_t version;
	uint8_t op;
	uint16_t flags;
	const uint8_t *key;
	uint32_t key_len;
	const uint8_t *payload;   /* decompressed */
	uint32_t payload_len;
	uint32_t stored_len;      /* bytes in the map (compressed or not) */
	const uint8_t *raw;       /* the whole stored record */
	uint32_t raw_size;
} shm_log_rec;

typedef struct shm_log_iter shm_log_iter;

/* Iterates records with seq >= from, in order, inside one read transaction
 * that sees the log as of the open. *out is freed with shm_log_iter_close,
 * in the thread that opened it (like an shm_rtxn, shm.h). */
int shm_log_iter_open(shm_env *env, uint64_t from, shm_log_iter **out);
/* 0 and *rec filled; SHM_ENOTFOUND at the end; SHM_ECORRUPT for a record
 * that fails its checksum or format (rec->seq is then set, so the caller can
 * set it aside and go on: the iterator has moved past it; rec as
 * shm_log_decode leaves it). After any other failure *rec is all zeros. */
int shm_log_iter_next(shm_log_iter *it, shm_log_rec *rec);
void shm_log_iter_close(shm_log_iter *it);

/* Decodes and checks one stored record (raw bytes of a log value).
 * buf/buf_cap: a malloc'd decompression buffer the function may grow
 * (the caller's, freed with free() whatever the result). On SHM_ECORRUPT
 * rec keeps what could be read, for shm_dead_add: the header's fields
 * (seq alone from a record cut inside its header, nothing from one of
 * fewer than 16 bytes), raw and raw_size when the header is whole; key
 * and payload are NULL. After any other failure *rec is all zeros. */
int shm_log_decode(const void *raw, size_t size, shm_log_rec *rec,
                   uint8_t **buf, size_t *buf_cap);

/* Deletes records with seq <= upto and raises the flushed position to upto
 * (entries written at or before it become evictable). Never lowers it.
 * An upto past the last record written (next_seq - 1) is SHM_EINVAL,
 * changing nothing: no sink can have applied a record to come. */
int shm_log_trim(shm_env *env, uint64_t upto);

/* The meta names of the write-through contract (above). */
#define SHM_META_PG_APPLIED "sink.pg.applied"
#define SHM_META_PG_AWAITED "sink.pg.awaited"

/* Named uint64 values in the environment's meta database (sink positions,
 * flusher stats), of 1..200 bytes (SHM_EINVAL else). Missing names read
 * as 0. shm_meta_set takes names with a dot ("sink.pg.applied",
 * "flusher.heartbeat"): one without is libshm's own bookkeeping (format,
 * next_seq, flushed, entries, the policy...), read by shm_meta_get,
 * refused with SHM_EINVAL here. */
int shm_meta_get(shm_env *env, const char *name, uint64_t *value);
int shm_meta_set(shm_env *env, const char *name, uint64_t value);
/* Sets several at once, atomically: one bad name sets none. */
int shm_meta_set_many(shm_env *env, const char *const *names,
                      const uint64_t *values, size_t n);
/* Calls fn for every meta name starting with prefix (read transaction). */
int shm_meta_each(shm_env *env, const char *prefix,
                  void (*fn)(const char *name, uint64_t value, void *user),
                  void *user);

/* The policy stored in the environment (shm_options: what the last process
 * to set each option set, else the default), read now. The flusher reads it
 * per batch, so an application's l2_ttl_s reaches the mirrored keys. */
typedef struct shm_policy {
	uint64_t l1_max_entries, l1_max_bytes;
	uint32_t l1_ttl_s, l2_ttl_s, compress_threshold;
} shm_policy;
int shm_policy_get(shm_env *env, shm_policy *out);

/* Dead letters: records a sink rejected for good, keyed by seq. */
typedef struct shm_dead {
	uint64_t seq;
	int64_t time;       /* when it was set aside */
	char sink[16];
	char reason[240];
	const uint8_t *raw; /* the original stored record */
	uint32_t raw_size;
} shm_dead;

/* Sets rec aside for sink (1..15 printable ASCII characters, no space or
 * comma: SHM_EINVAL else), or adds sink to
 * the letter another sink set it aside in; the names of one letter share
 * the 15 characters of its sink field: SHM_EINVAL, the letter unchanged,
 * when sink does not fit beside them. A letter at rec's seq that does not
 * decode is replaced, the new reason beginning "replaced a letter that
 * did not decode: <what was wrong>; <sink>: <reason>". The reason is kept
 * as UTF-8 (its first 239 bytes): a byte that is not becomes '?'. */
int shm_dead_add(shm_env *env, const shm_log_rec *rec, const char *sink,
                 const char *reason);
/* Calls fn for each dead letter in seq order; stops when fn returns non-0.
 * *d and what it points to are valid during the call. A letter that does
 * not decode ends the walk: SHM_ECORRUPT, shm_errmsg() naming its seq
 * ("dead letter 7: bad header ..."). */
int shm_dead_each(shm_env *env, int (*fn)(const shm_dead *d, void *user),
                  void *user);
/* As shm_dead_each, but a letter that does not decode is passed to bad
 * (when not NULL), and the walk goes on: its seq (0 if its key is not one)
 * and why (shm_errmsg()'s text then, valid during the call). bad
 * returning non-0 stops the walk as fn's does; 0 then, as at the end. */
int shm_dead_walk(shm_env *env, int (*fn)(const shm_dead *d, void *user),
                  int (*bad)(uint64_t seq, const char *why, void *user),
                  void *user);

/* Drops the dead letters of seqs[0..n) (each given once), one that does
 * not decode too, in one write transaction: all or nothing. SHM_ENOTFOUND,
 * naming it, when one seq has no letter (nothing dropped then). A letter
 * is the only copy of its record once the log is trimmed: drop it once its
 * cause is fixed and its data written again, or known to be unwanted. A
 * write-through write reads the letters of its own records when its wait
 * ends: a letter set aside less than write_through_timeout_ms ago may still
 * be read so. */
int shm_dead_drop(shm_env *env, const uint64_t *seqs, size_t n);

/* Blocks until a record with seq >= from may exist or timeout_ms passes
 * (no transaction held; asleep on a futex that every commit of records
 * wakes; on a read-only handle, for at most 10 ms at a time). Returns 0
 * when there may be something (a commit came, or shm_log_wake: read to
 * know), SHM_ETIMEDOUT otherwise, its text naming from and the wait. */
int shm_log_wait(shm_env *env, uint64_t from, uint32_t timeout_ms);
/* Ends every shm_log_wait on this environment, in every process, with 0,
 * as a commit does (a waiter that should stop then sees its flag).
 * SHM_EREADONLY on a read-only handle. */
int shm_log_wake(shm_env *env);

/* shm_msg_put of m, only over the version of m's id L1 holds with an
 * older updated_at: the look and the put in one write, so that a local
 * write between them is never replaced (the flusher's put-back of
 * PostgreSQL's newer row, flusher/pg_newer.c). L1 not holding the id, or
 * holding it at the same or a later updated_at: 0, nothing written.
 * *wrote (may be NULL): whether m was stored. A soft-deleted one:
 * SHM_EDELETED, as shm_msg_put. */
int shm_msg_put_newer(shm_env *env, shm_msg *m, bool *wrote);

/* Payload decoders for the flusher and tools. *out is one allocation owned
 * by the caller (shm_msg_free / shm_static_free). SHM_ECORRUPT if bad. */
int shm_msg_decode(const void *buf, size_t len, shm_msg **out);
int shm_static_decode(const void *buf, size_t len, shm_static **out);
/* A MSG_* payload's room and created_at, without decoding the rest:
 * *room points into buf (room_len bytes, NUL-terminated there).
 * SHM_ECORRUPT if the fixed part or the room string is malformed (not
 * 1..SHM_MAX_ROOM bytes of UTF-8 without NUL, as put takes it). */
int shm_msg_payload_room(const void *buf, size_t len, const char **room,
                         size_t *room_len, int64_t *created_at);

/*
 * A message's JSON (the bytes shm_msg_to_json returns) appended to a growing
 * buffer, for the flusher's hot path: one buffer reused for every message,
 * no allocation per message once it is large enough.
 *   *buf: NULL (then *len and *cap 0) or a malloc'd block of *cap bytes
 *   holding *len < *cap bytes; owned by the caller (free()), who keeps it
 *   after the call, whatever its result. It is grown with realloc as needed
 *   (*buf and *cap updated, even on failure) and kept NUL-terminated.
 *   On success *len grows by the JSON's length, and *meta_off and *meta_len
 *   (each may be NULL) get the offset in *buf of the "metadata" object
 *   and its length. On failure *len is unchanged (the bytes appended are
 *   taken back) and the result is the error of shm_msg_to_json: SHM_EUTF8,
 *   SHM_ETYPE, SHM_EINVAL (two reactions with one emoji, attachment size
 *   beyond INT64_MAX, a NULL array or content with a non-zero count, a
 *   reaction with users and no emoji), SHM_ETIME (a time outside the range
 *   of shm_msg's times, or a created_at of 0), SHM_EUUID (a nil id, or a
 *   nil parent_id or thread_id given), ENOMEM; shm_errmsg() names the
 *   field.
 */
int shm_msg_json_append(const shm_msg *m, char **buf, size_t *len,
                        size_t *cap, size_t *meta_off, size_t *meta_len);

/* The same JSON's "metadata" object alone (the bytes shm_msg_json_append
 * puts at *meta_off), appended the same way; the same errors, except that
 * only the metadata's strings and time are checked. */
int shm_msg_metadata_json_append(const shm_msg *m, char **buf, size_t *len,
                                 size_t *cap);

/*
 * Static value encoding (STATIC_PUT payload and "static" database value),
 * little-endian:
 *   u8 version (1) | u8 flags (bit 0: content is an LZ4 frame) | u16 0 |
 *   i64 generated_at | u8 sha1[20] | u8 sha256[32] | u32 raw_len |
 *   u32 stored_len | content (stored_len bytes)
 * With bit 0, content is exactly one whole LZ4 frame of raw_len bytes:
 * one without its end mark, or with bytes after it, is SHM_ECORRUPT.
 */

/* Housekeeping run by the flusher: evicts flushed entries whose L1 TTL has
 * passed; *expired (may be NULL) gets their number (0 after a failure,
 * though the batches before it may have expired some). */
int shm_l1_expire(shm_env *env, uint64_t *expired);

/* The most problems shm_verify reports the text of (it counts them all):
 * more lines than anyone reads, at most ~1 MiB held until they are. */
#define SHM_VERIFY_REPORT_MAX 1000

/*
 * Checks the environment's consistency in one read snapshot (libshm/verify.c
 * lists the invariants): log records and their checksums, message values
 * (put's checks, content_hash) and statics (their SHAs) against their
 * content, message values vs the room index, L1 bookkeeping (lru keys, meta entries/bytes), log vs data,
 * graph edges, dead letters. *problems (may be NULL) gets the number of
 * problems found. report (may be NULL) is called once for each of the first
 * SHM_VERIFY_REPORT_MAX, in the order found, with a line of text valid
 * during the call, after the read transaction has ended: it may take its
 * time (write to a pipe nobody reads) without keeping writers from reusing
 * freed pages. Returns 0 when the check ran (whatever it found), an error
 * code when it could not (the problems found until then are reported
 * still, *problems being 0 as after any failure).
 */
int shm_verify(shm_env *env, void (*report)(const char *problem, void *user),
               void *user, size_t *problems);

/*
 * Invalidation by other hosts' writes (libshm/invalidate.c). With several
 * hosts, each with its own environment and flusher against shared Redis and
 * PostgreSQL, the flushers publish the keys they wrote on a Redis channel
 * (flusher/invalidate.c) and drop them from the other hosts' L1 with these
 * calls, so the next read goes through to L2/L3.
 *
 * Rule: only a FLUSHED entry is dropped. An entry with unflushed local
 * work (lru seq above meta "flushed") is kept: this host's pending record
 * is applied to the sinks after the other host's write. PostgreSQL keeps
 * the newer of the two (updated_at, shm_msg), and when that is the other
 * host's the flusher puts it back into this L1; Redis keeps the last one
 * applied.
 * No log record is written (an invalidation is not a write); dropped
 * entries are counted in the "invalidations" counter. Keys not in L1 (the
 * common case) cost a read transaction, never the write lock.
 *
 * kind: SHM_INVAL_MSG, key = message id (16 bytes); SHM_INVAL_STATIC,
 * key = website (16) + object (the log record's key for both: a UUID ID in
 * lower case, as libshm keys it; any other spelling names no entry).
 *
 * room (NUL-terminated, 1..SHM_MAX_ROOM bytes) and created_at: for
 * SHM_INVAL_MSG, the message's room and creation time, or NULL and 0 when
 * unknown. created_at is a time put stores (1 us to
 * 9999-12-31T23:59:59.999999Z), or 0 without a room: any other makes the
 * call SHM_EINVAL (a later one would raise the room's watermark for
 * good). A message this L1 does not hold was written elsewhere: L1 can no
 * longer answer that room's pages reaching back to created_at, so they come
 * from PostgreSQL (the room's watermark, libshm/room.c invariant 2).
 */
#define SHM_INVAL_MSG 'M'
#define SHM_INVAL_STATIC 'S'

typedef struct shm_inval_key {
	int kind;
	const void *key;
	size_t klen;
	const char *room;
	int64_t created_at;
} shm_inval_key;

/* SHM_INVAL_MSG for MSG_* ops, SHM_INVAL_STATIC for STATIC_PUT/BUST, 0 for
 * ops that leave no L1 entry another host could hold (graph, marks). */
int shm_inval_kind_of_op(int op);
/* Drops (kind, key) if it is in L1 and flushed; *dropped (may be NULL)
 * gets 1 if it was dropped, 0 if absent or kept. */
int shm_l1_invalidate(shm_env *env, int kind, const void *key, size_t klen,
                      uint64_t *dropped);
/* The same for n keys, in one write transaction (none if no key needs it).
 * *dropped and *kept (either may be NULL) get the entries dropped and those
 * kept for their unflushed local work. All keys are checked first: a bad
 * one (SHM_EINVAL, its text naming it as keys[N], shm_l1_invalidate's as
 * keys[0]) changes nothing. */
int shm_l1_invalidate_many(shm_env *env, const shm_inval_key *keys, size_t n,
                           uint64_t *dropped, uint64_t *kept);
/* Drops every flushed entry (messages and statics) and marks every room's
 * pages created until now incomplete (other hosts may have added to them):
 * what a host does after a gap in the channel, when invalidations may have
 * been missed. *dropped (may be NULL) gets their number (0 after a
 * failure, though the batches before it may have dropped some). */
int shm_l1_invalidate_flushed(shm_env *env, uint64_t *dropped);

#ifdef __cplusplus
}
#endif
#endif /* SHM_LOG_H */
