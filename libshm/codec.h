/*
 * libshm/codec.h - the binary value encoding of a message: the "msg"
 * database value and the payload of MSG_* log records (the same bytes).
 *
 * Message value encoding, version 1, little-endian, 104-byte fixed part:
 *
 *   0    u8  version (1)          1  u8 type (shm_msg_type)
 *   2    u8  flags: bit 0 edited, bit 1 has_parent, bit 2 has_thread
 *   3    u8  0
 *   4    u64 seq of the entry's last log record (0: a read-through fill)
 *   12   id[16]                   28 i32 user_id     32 u32 edit_count
 *   36   i64 created_at           44 i64 updated_at  52 i64 last_reply_at
 *   60   u32 reply_count          64 u64 content_hash (XXH3-64)
 *   72   parent_id[16]            88 thread_id[16] (each all zeros when
 *                                    its flag is off)
 *   104  str room_id, str username, str content
 *        u32 n_mentions, n x i32
 *        u32 n_attachments, n x (id[16], u64 size, str filename,
 *                                str content_type, str url)
 *        u32 n_reactions, n x (str emoji, u32 n_users, n_users x i32)
 *        (reactions sorted by emoji, strcmp: byte order; each emoji once;
 *        users in the order given)
 *
 *   str = u32 len, len bytes, one NUL byte (so views can hand out C strings
 *   that point into the map); no NUL in the len bytes but content's (which
 *   is handed out with its length).
 *
 * Values are not compressed in L1 (content is handed out zero-copy); log
 * payloads are LZ4 frames above the threshold (shm_log.h).
 */
#ifndef SHM_CODEC_H
#define SHM_CODEC_H

#include "internal.h"

#define SHM_MSG_ENC_VERSION 1
#define SHM_MSG_FIXED 104
#define SHM_MSG_TYPE_OFF 1
#define SHM_MSG_FLAGS_OFF 2
#define SHM_MSG_SEQ_OFF 4
#define SHM_MSG_ID_OFF 12
#define SHM_MSG_CREATED_OFF 36
#define SHM_MSG_UPDATED_OFF 44
#define SHM_MSG_PARENT_OFF 72
#define SHM_MSG_THREAD_OFF 88

/* The last instant RFC 3339 (time.c) writes with a four-digit year,
 * 9999-12-31T23:59:59.999999Z: shm_time_parse refuses later ones, so
 * validation does too (JSON could not carry them back). */
#define SHM_TIME_MAX_US INT64_C(253402300799999999)

/* Bytes needed to encode m. */
size_t shm__msg_enc_size(const shm_msg *m);
/* Encodes m with seq into buf (shm__msg_enc_size(m) bytes); reactions in
 * ord, m's shm__order, sorted by emoji whatever m's order: one message, one
 * encoding. m keeps to shm.h's limits (at most SHM_MAX_LIST reactions, each
 * emoji once), as shm__msg_validate, shm_msg_react and the decoder see
 * to. */
void shm__msg_encode(const shm_msg *m, const shm_reaction *const *ord,
                     uint64_t seq, uint8_t *buf);
/* The seq stored in an encoded value (0 if too short). */
uint64_t shm__msg_enc_seq(const void *buf, size_t len);

/*
 * Decodes buf. With arena == NULL: *out is one malloc'd block holding the
 * message, its arrays and copies of its strings (free()). With an arena:
 * strings point into buf, the struct and arrays are carved from the arena
 * (grown with realloc-free chunks, see shm__arena). SHM_ECORRUPT, the text
 * naming the part, for bytes the encoder does not write (the zeros above,
 * a NUL inside a string), as for short or overlong ones. Reactions out of
 * emoji order or without users are read still: values put before they
 * were sorted and dropped hold them until their next write.
 */
typedef struct shm__arena shm__arena;
int shm__msg_decode(const void *buf, size_t len, shm__arena *arena,
                    shm_msg **out);

/* A chunked bump allocator: pointers stay valid until shm__arena_free. */
void *shm__arena_alloc(shm__arena *a, size_t n);
void shm__arena_free(shm__arena *a);
/* Forgets every allocation but keeps one chunk for reuse. */
void shm__arena_reset(shm__arena *a);
struct shm__arena {
	struct shm__arena_chunk *head;
};

/* Full validation of a message about to be stored (put): every field. */
int shm__msg_validate(const shm_options *opt, const shm_msg *m);
/* SHM_ETOOBIG, the text beginning with what, if m's encoding is larger
 * than a put accepts: twice max_content, and 64 KiB for the metadata. */
int shm__msg_size_check(const shm_options *opt, const shm_msg *m,
                        const char *what);

#endif
