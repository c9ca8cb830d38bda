/*
 * flusher/invalidate.h - the invalidation channel between hosts (a
 * "backplane", as hybrid caches call it).
 *
 * Each host runs its own environment (L1) and flusher; Redis and PostgreSQL
 * are shared. When this flusher's Redis sink has applied a batch, the
 * publisher sends one message on the Redis channel FL_INVAL_CHANNEL naming
 * the message ids and static keys the batch wrote. Every other host's
 * subscriber (a thread with its own Redis connection) drops those keys from
 * its L1 with shm_l1_invalidate_many(), so its next read goes to Redis or
 * PostgreSQL. A host ignores the messages that carry its own env id.
 *
 * Message format (text, one key per line, "\n" line ends):
 *
 *   shm-inval 2 <env-id>
 *   m <message uuid> <created_at, µs> <room_id>
 *   s <website uuid> <TYPE/ID>
 *   ...
 *
 * (objects have no whitespace: shm_object_check; in room_id, bytes up to
 * space, '%' and DEL are written %XX; created_at is a time put stores,
 * 1 to 9999-12-31T23:59:59.999999Z). The receiver hands the room to
 * shm_l1_invalidate_many: a message its L1 lacks makes its room's pages
 * that reach back to created_at ask PostgreSQL. A line whose room part
 * the receiver refuses (a created_at outside that range, a bad escape, a
 * room not UTF-8) keeps its id, dropped without the room. Version 1 (a
 * host not upgraded yet) has "m <uuid>" lines only and is still read; a
 * message whose payload does not decode is named by its id alone. A
 * batch with more keys than fit in FL_INVAL_MAX_MSG bytes is sent as
 * several messages.
 *
 * Gaps: Redis pub/sub keeps nothing for a disconnected subscriber. Every
 * time the subscription is (re)established after other hosts have been
 * heard from (meta "flusher.inval.peers_seen"), the subscriber drops every
 * flushed L1 entry and marks every room's pages until then incomplete
 * (shm_l1_invalidate_flushed), since it may have missed invalidations. A
 * host that never heard from another keeps its L1. A drop that failed is
 * such a gap too: the same drop is done once drops work again
 * (invalidate.c invariant 6); so is a message that does not parse (its
 * keys unknown, whatever env id it shows), at most once per backoff while
 * such messages keep coming (invariant 8).
 *
 * Stats (meta, shown by shmctl stat): flusher.inval.subscribed (0/1, now);
 * totals since the environment was made, each run going on from the last
 * one's: .published (messages), .publish_errors, .received (messages from
 * other hosts), .keys (keys named in them), .dropped, .kept (unflushed
 * local work), .resets (full drops after a gap, failed drops or a
 * malformed message), .errors (failed drops and full drops, malformed
 * messages, messages with refused rooms).
 */
#ifndef FL_INVALIDATE_H
#define FL_INVALIDATE_H

#include "fl.h"

#define FL_INVAL_CHANNEL "shm:inval"
#define FL_INVAL_MAX_MSG (256 * 1024)

typedef struct fl_inval fl_inval;

/* Starts the channel for env: the publisher (it connects on first use)
 * and, if subscribe, the subscriber thread. env_id must be non-empty and
 * free of whitespace. Returns 0 or an errno value (logged). */
int fl_inval_start(fl_inval **out, const fl_config *cfg, shm_env *env,
                   const char *env_id, bool subscribe);
/* The Redis sink's on_applied hook (user = the fl_inval): publishes the
 * keys of b's live records. Runs on the Redis worker's thread; failures are
 * logged and counted, never returned to the sink. */
void fl_inval_published(void *user, const fl_batch *b);
/* Stops the subscriber, writes the stats, closes and frees (NULL: no-op). */
void fl_inval_stop(fl_inval *iv);
/* Whether the subscriber is subscribed right now. */
bool fl_inval_subscribed(fl_inval *iv);

/* Building and parsing messages (exposed for the tests). */
/* Appends the keys of b's records (msg and static ops; superseded ones
 * skipped, duplicates in a row skipped) to out, as messages of at most
 * FL_INVAL_MAX_MSG bytes, each starting with the header; *n_msgs gets the
 * number of messages and ends[i] the end offset of message i (ends has
 * room for max_msgs). Returns 0 or ENOMEM/ENOSPC. */
int fl_inval_encode(const char *env_id, const fl_batch *b, fl_buf *out,
                    size_t *ends, size_t max_msgs, size_t *n_msgs);

/* A parsed message: keys point into keybuf (owned by the caller). */
typedef struct fl_inval_msg {
	char env_id[64];
	shm_inval_key *keys;
	size_t n, cap;
	uint8_t *keybuf;
	size_t kb_len, kb_cap;
	size_t rooms_refused; /* room parts refused: their keys have none */
	char room_why[160];   /* the first one's line and reason */
} fl_inval_msg;
/* Parses msg[0..len) into m (reusing its buffers). 0, or -1 if malformed
 * (the reason in err): not our header, or a line whose key does not read.
 * A line whose key reads but whose room part does not (no created_at, one
 * no message has, a bad escape, a room libshm refuses: too long, not
 * UTF-8) keeps its key without the room (created_at 0 unless the room
 * alone was bad), counted in m->rooms_refused. */
int fl_inval_parse(const char *msg, size_t len, fl_inval_msg *m, char *err,
                   size_t errlen);
void fl_inval_msg_free(fl_inval_msg *m);

#endif /* FL_INVALIDATE_H */
