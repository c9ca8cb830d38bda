/*
 * libshm/msg.c - chat messages in L1: put, get, views, edit, soft delete,
 * reactions, read-through fills.
 *
 * Invariants
 *  1. Every stored state of a message is written by store() together with
 *     its log record (same transaction), its room index key and its L1
 *     bookkeeping; the log payload is the stored value, byte for byte.
 *  2. The value's seq field equals the seq of its lru key (l1.c).
 *  3. Validation happens before any write: bad input changes nothing.
 *  4. A created_at that libshm fills in (a put with created_at 0) is
 *     unique in the environment: the messages of one write get successive
 *     microseconds, and the next write's time comes after the last of
 *     them (fill_defaults), so that even shm_room_page's bare-timestamp
 *     bound skips none of them at a page boundary.
 *  5. A put that stores nothing leaves each message's created_at as the
 *     caller gave it: one it filled in is 0 again, so that a retry of the
 *     same message gets a time of its own (invariant 4) instead of one
 *     taken for the caller's, which may tie. The ids it filled in stay:
 *     a retry replaces rather than duplicates.
 *  6. An edit or a reaction never grows a message past the size a put
 *     accepts (shm__msg_size_check), so that dump | import takes back
 *     whatever is stored. One already larger (put by a process with a
 *     larger max_content) may stay as large or shrink.
 *  7. A soft delete is final: no write brings a deleted message back or
 *     changes what it says. Edit and react are SHM_EDELETED, a second
 *     delete writes nothing, a put is SHM_EDELETED unless it is the
 *     message exactly as stored (nothing written), and it takes no new
 *     reply (new to L1: one L1 dropped is new again; its reply_count
 *     still follows a reply moved away). A fill
 *     never replaces what L1 holds.
 *  8. A reply a put stores is in its parent's room and thread and not its
 *     ancestor, whenever L1 holds the parent as the write leaves it
 *     (check_replies). A parent L1 does not hold is not checked, as its
 *     reply_count is not counted; nor are a moved parent's replies (no
 *     index of them), nor fills.
 *  9. A reply whose id L1 does not hold (it left L1, was written by another
 *     host, or is new) is new to its parent only when nothing else can
 *     hold it: this put made its id, or its created_at is the write's own
 *     (it was 0: a re-put at a new time, not caught below), or the one the
 *     caller gave is after its room's watermark (room.c invariant 2:
 *     leaving L1 or a write elsewhere raised it to the message's
 *     created_at; a peer's clock ahead can raise it past this host's).
 *     Else, when it would bump a parent L1 holds and L3 is configured,
 *     PostgreSQL's row of it is its prior, as L1's value would be: the
 *     write stops, put_batch asks with no lock held, and runs the write
 *     again (each run asks about one more id at least); no answer is
 *     SHM_EL3, nothing written. Without L3, L1 alone judges: new. Not
 *     caught: a message that left L1 put again at a later created_at (0
 *     included) or in another room is taken for new: a reply put with
 *     created_at 0 never waits for PostgreSQL, whoever made its id. Nor
 *     is one put again with no parent or under a parent L1 does not hold
 *     (it bumps nothing, so nothing is asked): a parent L1 holds that
 *     PostgreSQL's row names keeps counting it.
 * 10. updated_at is the message's version (a hybrid logical clock): every
 *     change libshm makes to a stored message (edit, delete, reaction,
 *     the reply_count and last_reply_at a reply moves) sets it to
 *     max(now, the updated_at L1 held + 1 µs), so a version made from
 *     another is newer than it whatever the clocks of the hosts that
 *     wrote them (PostgreSQL keeps the newer: flusher/pg_sink.c invariant
 *     7). A put stores the updated_at it is given, unless it replaces a
 *     message L1 holds with an older one (0 included): a replace is a
 *     change too, newer than what it replaces, so it takes the change's
 *     (the caller's struct keeps what it gave). Otherwise L1's order and
 *     PostgreSQL's would differ, and the flusher would put PostgreSQL's
 *     row, the one replaced, back over the put. The flusher's put-back
 *     of such a row (shm_msg_put_newer) stores nothing over a version as
 *     new or newer, nor where L1 holds none.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

#include "codec.h"

/* The room_id of an encoded value (in place) and *created, without
 * decoding it all; NULL, the text set for SHM_ECORRUPT, if v is cut. */
static const char *enc_room(const MDB_val *v, int64_t *created)
{
	const uint8_t *p = v->mv_data;
	uint32_t len;

	if (v->mv_size < SHM_MSG_FIXED + 5) {
		shm__err(SHM_ECORRUPT, "message value too short");
		return NULL;
	}
	memcpy(&len, p + SHM_MSG_FIXED, 4);
	if (SHM_MSG_FIXED + 4 + (size_t)len + 1 > v->mv_size ||
	    p[SHM_MSG_FIXED + 4 + len] != 0) {
		shm__err(SHM_ECORRUPT, "message value: bad room_id");
		return NULL;
	}
	memcpy(created, p + 36, 8);
	return (const char *)p + SHM_MSG_FIXED + 4;
}

/*
 * *c: m as stored, its reactions without users dropped (a reaction with no
 * users is no reaction, as removing its last user leaves it: one state,
 * one encoding). *arr: c's own array if it needed one, which the caller
 * frees; NULL else.
 */
static int without_empty_reactions(const shm_msg *m, shm_msg *c,
                                   shm_reaction **arr)
{
	uint32_t i = 0, k = 0;

	*c = *m;
	*arr = NULL;
	while (i < m->n_reactions && m->reactions[i].n_users)
		i++;
	if (i == m->n_reactions)
		return 0;
	if (!(*arr = malloc(m->n_reactions * sizeof **arr)))
		return shm__err(ENOMEM, "message: %u reactions", m->n_reactions);
	for (i = 0; i < m->n_reactions; i++)
		if (m->reactions[i].n_users)
			(*arr)[k++] = m->reactions[i];
	c->reactions = *arr;
	c->n_reactions = k;
	return 0;
}

/* in as stored with seq (its empty reactions dropped, reactions sorted):
 * *buf, malloc'd (the caller frees it), of *size bytes. */
static int encode(const shm_msg *in, uint64_t seq, uint8_t **buf,
                  size_t *size)
{
	shm_reaction *arr;
	shm__order ord;
	shm_msg c;
	int rc;

	*buf = NULL;
	if ((rc = without_empty_reactions(in, &c, &arr)))
		return rc;
	*size = shm__msg_enc_size(&c);
	if (!(*buf = malloc(*size))) {
		rc = shm__err(ENOMEM, "message of %zu bytes", *size);
	} else if (shm__order_make(&c, &ord)) {
		free(*buf);
		*buf = NULL;
		rc = shm__err(ENOMEM, "message: order of %u reactions",
		              c.n_reactions);
	} else {
		shm__msg_encode(&c, ord.r, seq, *buf);
		shm__order_free(&ord);
	}
	free(arr);
	return rc;
}

/*
 * Stores m as the new state of its id, with a record of op (or no record
 * when op is 0: a read-through fill). old is the current value or NULL.
 */
static int store(shm__wtxn *w, uint8_t op, const shm_msg *m,
                 const MDB_val *old)
{
	shm_env *env = w->env;
	size_t size, old_bytes = 0;
	uint64_t seq = op ? w->next_seq : w->flushed, old_seq = 0;
	char old_room[SHM_MAX_ROOM + 1] = "";
	int64_t old_created = 0;
	MDB_val k = {16, (void *)m->id.b}, v;
	uint8_t *buf;
	int rc;

	/* Encode first: m may point into the map, which writes can move. */
	if ((rc = encode(m, seq, &buf, &size)))
		return rc;
	if (old) {
		const char *r = enc_room(old, &old_created);
		if (!r) {
			rc = SHM_ECORRUPT;
			goto out;
		}
		snprintf(old_room, sizeof old_room, "%s", r);
		old_seq = shm__msg_enc_seq(old->mv_data, old->mv_size);
		old_bytes = old->mv_size;
	}
	if ((rc = shm__l1_track(w, SHM_KIND_MSG, m->id.b, 16, old_seq, old_bytes,
	                        seq, size)))
		goto out;
	v.mv_size = size;
	v.mv_data = buf;
	if ((rc = mdb_put(w->txn, env->msg, &k, &v, 0))) {
		rc = shm__err_mdb(rc, "store message");
		goto out;
	}
	if (old && (old_created != m->created_at ||
	            strcmp(old_room, m->room_id) != 0) &&
	    (rc = shm__room_del(w, old_room, old_created, &m->id)))
		goto out;
	if ((!old || old_created != m->created_at ||
	     strcmp(old_room, m->room_id) != 0) &&
	    (rc = shm__room_add(w, m->room_id, m->created_at, &m->id)))
		goto out;
	if (op)
		rc = shm__log_append(w, op, m->id.b, 16, buf, size, NULL);
out:
	free(buf);
	return rc;
}

/* Current value of id in w, decoded into arena (strings point into the
 * map: valid until the next write in w). */
static int load(shm__wtxn *w, const shm_uuid *id, shm__arena *arena,
                shm_msg **m, MDB_val *raw)
{
	MDB_val k = {16, (void *)id->b};
	int rc = mdb_get(w->txn, w->env->msg, &k, raw);
	char s[37];

	if (rc == MDB_NOTFOUND) {
		shm_uuid_format(id, s);
		return shm__err(SHM_ENOTFOUND, "message %s is not in L1", s);
	}
	if (rc)
		return shm__err_mdb(rc, "read message");
	return shm__msg_decode(raw->mv_data, raw->mv_size, arena, m);
}

/* What a message of the batch replaced: its reply is counted once the
 * whole batch is stored. */
struct prior {
	shm_uuid parent; /* the parent the replaced value named, if had */
	bool had;
	bool later;      /* a later copy of the same id replaces this one */
	bool fill_time;  /* created_at was 0: the write's time is filled in */
	bool same;       /* a soft-deleted message put as it is: not written */
	bool parent_deleted; /* its parent was soft-deleted in L1 before the
	                      * batch */
	size_t first;    /* the id's first copy: its prior is the value from
	                  * before the batch */
	bool held;       /* L1 held the id before the batch */
	bool new_id;     /* its id was made for this put: stored nowhere */
	bool ask;        /* PostgreSQL is to be asked for its prior
	                  * (invariant 9) */
	bool asked;      /* l3 is PostgreSQL's answer */
	shm__l3_row l3;
};

/* The batch being put, and which parents it carries with their counts. */
struct put_many {
	const char *fn; /* the call made: shm_msg_put or shm_msg_put_many */
	shm_msg *msgs;
	size_t n;
	struct prior *prior; /* one per message */
	shm_uuid *ids; /* sorted ids of msgs with a reply_count; NULL if n < 2 */
	size_t n_ids;
	size_t bad;    /* index of the message refused by the write, or n */
	bool asking;   /* the write stopped to ask PostgreSQL (invariant 9) */
	bool newer_only; /* shm_msg_put_newer: only over an older version */
};

static bool counted_in_batch(const struct put_many *p, const shm_uuid *id)
{
	return p->ids &&
	       bsearch(id, p->ids, p->n_ids, sizeof *id, shm__uuid_cmp);
}

/* The parent an encoded value names, if it has one. */
static bool enc_parent(const MDB_val *v, shm_uuid *parent)
{
	const uint8_t *p = v->mv_data;

	if (v->mv_size < SHM_MSG_FIXED || !(p[SHM_MSG_FLAGS_OFF] & 2))
		return false;
	memcpy(parent->b, p + SHM_MSG_PARENT_OFF, 16);
	return true;
}

/* Invariant 10: the updated_at of a change to a message whose updated_at
 * was held (a fill's included). */
static int64_t newer_than(shm__wtxn *w, int64_t held)
{
	if (held >= SHM_TIME_MAX_US)
		return SHM_TIME_MAX_US; /* the end of time: stays */
	return held < w->now ? w->now : held + 1;
}

static void bump(shm__wtxn *w, shm_msg *m)
{
	m->updated_at = newer_than(w, m->updated_at);
}

/* Counts child in (delta +1) or out of (-1, never below 0) parent's
 * reply_count when parent is in L1 (otherwise L3 keeps its count). +1 also
 * raises last_reply_at; -1 keeps it (only a scan of every reply could
 * lower it). A parent the batch carries with a count keeps that count. */
static int adjust_parent(shm__wtxn *w, const shm_uuid *parent,
                         const shm_msg *child, int delta,
                         const struct put_many *batch)
{
	shm__arena arena = {0};
	shm_msg *p;
	MDB_val raw;
	int rc;

	if (memcmp(parent->b, child->id.b, 16) == 0 ||
	    counted_in_batch(batch, parent))
		return 0;
	rc = load(w, parent, &arena, &p, &raw);
	if (rc == SHM_ENOTFOUND || (rc == 0 && delta < 0 && !p->reply_count)) {
		rc = 0;
		goto out;
	}
	if (rc)
		goto out;
	if (delta < 0) {
		p->reply_count--;
	} else {
		if (p->reply_count < UINT32_MAX) /* stays there (shm.h) */
			p->reply_count++;
		if (child->created_at > p->last_reply_at)
			p->last_reply_at = child->created_at;
	}
	bump(w, p);
	rc = store(w, SHM_OP_MSG_REPLY, p, &raw);
out:
	shm__arena_free(&arena);
	return rc;
}

/*
 * A reply counts once in its parent's reply_count. A new reply bumps its
 * parent; replacing it under the same parent changes nothing (it was
 * counted when first put); replacing it under another parent (or none)
 * moves the count, from the old parent to the new one, so that each
 * parent counts the replies that name it now. Counted once the whole batch
 * is stored, against what it stored (a parent after its reply in the batch
 * counts it too), the moves away (delta -1) all before the arrivals (+1):
 * the result does not depend on the batch's order. Only an id's last copy
 * counts, against the value from before the batch, and only if it was
 * written (not a deleted message put as it is, nor shm_msg_put_newer's
 * put where L1 holds no older version).
 */
static int count_replies(shm__wtxn *w, const struct put_many *p, int delta)
{
	int rc;

	for (size_t i = 0; i < p->n; i++) {
		const shm_msg *m = &p->msgs[i];
		const struct prior *was = &p->prior[p->prior[i].first];
		const shm_uuid *to = delta < 0 ? &was->parent : &m->parent_id;

		if (p->prior[i].later || p->prior[i].same ||
		    !(delta < 0 ? was->had : m->has_parent))
			continue; /* not this id's last copy, or not written */
		if (was->had && m->has_parent &&
		    memcmp(was->parent.b, m->parent_id.b, 16) == 0)
			continue;
		if ((rc = adjust_parent(w, to, m, delta, p)))
			return rc;
	}
	return 0;
}

/* Invariant 4: a created_at filled in is the time of the write, one µs
 * after the one filled before it in the transaction, and the commit keeps
 * the lock until the clock has passed the last (wtxn.c invariant 5), so
 * that the next write's time comes after it. Filled again at each attempt
 * of the write (a full map's eviction runs the body again). */
static void fill_defaults(shm__wtxn *w, shm_msg *m, bool fill_time)
{
	if (shm_uuid_is_nil(&m->id))
		shm_uuid_v7(&m->id);
	if (fill_time) {
		m->created_at = w->filled_until ? w->filled_until + 1 : w->now;
		w->filled_until = m->created_at;
	}
	m->content_hash = XXH3_64bits(m->content ? m->content : "",
	                              m->content_len);
}

/* Whether an encoded value is a soft-deleted message. */
static bool enc_deleted(const MDB_val *v)
{
	return v->mv_size > SHM_MSG_TYPE_OFF &&
	       ((const uint8_t *)v->mv_data)[SHM_MSG_TYPE_OFF] == SHM_MSG_DELETE;
}

/* A soft delete is final: a put of a deleted id (old) may only be that
 * message exactly as stored (*same: nothing to write); SHM_EDELETED
 * else, its text naming fn, the call made. */
static int keep_deleted(const char *fn, const shm_msg *m, const MDB_val *old,
                        bool *same)
{
	uint8_t *buf;
	size_t size;
	char s[37];
	int rc;

	if ((rc = encode(m, shm__msg_enc_seq(old->mv_data, old->mv_size), &buf,
	                 &size)))
		return rc;
	*same = size == old->mv_size && memcmp(buf, old->mv_data, size) == 0;
	free(buf);
	if (*same)
		return 0;
	shm_uuid_format(&m->id, s);
	return shm__err(SHM_EDELETED, "%s: message %s is soft-deleted, and a "
	                "soft delete is final: a put may not replace it (only "
	                "its stored state, unchanged, is taken, as a no-op)",
	                fn, s);
}

/* Stores the batch's message i, its prior in p->prior[i] (replies are
 * counted after the batch). */
static int put_one(shm__wtxn *w, struct put_many *p, size_t i)
{
	shm_msg *m = &p->msgs[i];
	struct prior *was = &p->prior[i];
	MDB_val k = {16, m->id.b}, old;
	int rc;

	fill_defaults(w, m, was->fill_time);
	rc = mdb_get(w->txn, w->env->msg, &k, &old);
	if (rc && rc != MDB_NOTFOUND)
		return shm__err_mdb(rc, "read message");
	/* read before store: old points into the map, which the write moves */
	was->held = rc == 0;
	was->had = rc == 0 && enc_parent(&old, &was->parent);
	was->same = false;
	if (rc == 0 && enc_deleted(&old)) {
		if ((rc = keep_deleted(p->fn, m, &old, &was->same)) ==
		    SHM_EDELETED)
			p->bad = i;
		return rc;
	}
	if (p->newer_only && (rc != 0 || old.mv_size < SHM_MSG_FIXED)) {
		was->same = true; /* not held: nothing written */
		return 0;
	}
	if (rc == 0 && old.mv_size >= SHM_MSG_FIXED) {
		int64_t held;
		memcpy(&held, (const uint8_t *)old.mv_data + SHM_MSG_UPDATED_OFF,
		       8);
		if (p->newer_only && m->updated_at <= held) {
			was->same = true; /* held as new: nothing written */
			return 0;
		}
		if (m->updated_at < held) { /* invariant 10 */
			shm_msg replace = *m;
			replace.updated_at = newer_than(w, held);
			return store(w, SHM_OP_MSG_PUT, &replace, &old);
		}
	}
	return store(w, SHM_OP_MSG_PUT, m, rc == 0 ? &old : NULL);
}

/* Before the batch stores anything: whether each reply's parent is a
 * soft-deleted message in L1 (which takes no new reply). */
static int note_deleted_parents(shm__wtxn *w, struct put_many *p)
{
	for (size_t i = 0; i < p->n; i++) {
		MDB_val k = {16, p->msgs[i].parent_id.b}, v;
		int rc = p->msgs[i].has_parent
		                 ? mdb_get(w->txn, w->env->msg, &k, &v)
		                 : MDB_NOTFOUND;

		if (rc && rc != MDB_NOTFOUND)
			return shm__err_mdb(rc, "read message");
		p->prior[i].parent_deleted = rc == 0 && enc_deleted(&v);
	}
	return 0;
}

/* *loop: m would be its own ancestor, a walk up from its parent (parent,
 * in L1) meeting m. The walk ends at a root or a message L1 does not hold,
 * and after as many steps as L1 holds messages (a loop stored before these
 * checks is not walked forever). */
static int closes_loop(shm__wtxn *w, const shm_msg *m, const MDB_val *parent,
                       bool *loop)
{
	MDB_stat st;
	shm_uuid up;
	MDB_val k = {16, up.b}, v = *parent;
	int rc;

	*loop = false;
	if ((rc = mdb_stat(w->txn, w->env->msg, &st)))
		return shm__err_mdb(rc, "messages' count");
	for (size_t i = 0; i <= st.ms_entries && enc_parent(&v, &up); i++) {
		if (memcmp(up.b, m->id.b, 16) == 0) {
			*loop = true;
			return 0;
		}
		if ((rc = mdb_get(w->txn, w->env->msg, &k, &v)))
			return rc == MDB_NOTFOUND ? 0
			                          : shm__err_mdb(rc, "read message");
	}
	return 0;
}

/* Reply m (new to its parent: moved) against its parent as the batch
 * leaves it, when L1 holds it: in its room and thread, not a descendant of
 * m. SHM_EINVAL naming both, else 0. Read in the encoding, undecoded. */
static int check_parent(shm__wtxn *w, const shm_msg *m, bool moved)
{
	MDB_val k = {16, (void *)m->parent_id.b}, raw;
	const uint8_t *b, *thread;
	const char *room;
	char ps[37], s[37], t[37], r1[SHM__SHOWN_MAX], r2[SHM__SHOWN_MAX];
	int64_t created;
	shm_uuid th;
	bool loop;
	int rc = mdb_get(w->txn, w->env->msg, &k, &raw);

	if (rc == MDB_NOTFOUND)
		return 0; /* not checked, as its reply_count is not counted */
	if (rc)
		return shm__err_mdb(rc, "read message");
	if (!(room = enc_room(&raw, &created))) /* the fixed part is there */
		return SHM_ECORRUPT;
	b = raw.mv_data;
	thread = b[SHM_MSG_FLAGS_OFF] & 4   ? b + SHM_MSG_THREAD_OFF
	         : b[SHM_MSG_FLAGS_OFF] & 2 ? NULL /* unknown */
	                                    : b + SHM_MSG_ID_OFF; /* a root */
	shm_uuid_format(&m->parent_id, ps);
	if (strcmp(room, m->room_id) != 0)
		return shm__err(SHM_EINVAL, "room_id '%s': parent_id %s is in "
		                "room '%s' (a reply is in its parent's room)",
		                shm__shown_str(m->room_id, r1), ps,
		                shm__shown_str(room, r2));
	if (m->has_thread && thread && memcmp(thread, m->thread_id.b, 16)) {
		memcpy(th.b, thread, 16);
		shm_uuid_format(&m->thread_id, s);
		shm_uuid_format(&th, t);
		return shm__err(SHM_EINVAL, "thread_id %s: parent_id %s is in "
		                "thread %s (a reply's thread_id is its parent's, "
		                "or its parent's id when that is a root)", s, ps,
		                t);
	}
	if (!moved || (rc = closes_loop(w, m, &raw, &loop)) || !loop)
		return rc;
	shm_uuid_format(&m->id, s);
	return shm__err(SHM_EINVAL, "parent_id %s: that message is a reply "
	                "under %s (a reply is not its own ancestor)", ps, s);
}

/*
 * Each reply the batch stores (an id's last copy, not a deleted message
 * put as it is), as the batch leaves it: a soft-deleted message takes no
 * new reply (SHM_EDELETED: one moved or new to it, the parent deleted
 * before the batch), and check_parent. *bad: the message refused.
 */
static int check_replies(shm__wtxn *w, struct put_many *p)
{
	char ps[37];
	int rc;

	for (size_t i = 0; i < p->n; i++) {
		const shm_msg *m = &p->msgs[i];
		const struct prior *pr = &p->prior[i], *was = &p->prior[pr->first];
		bool moved;

		if (pr->later || pr->same || !m->has_parent)
			continue;
		moved = !was->had ||
		        memcmp(was->parent.b, m->parent_id.b, 16) != 0;
		if (moved && pr->parent_deleted) {
			shm_uuid_format(&m->parent_id, ps);
			rc = shm__err(SHM_EDELETED, "parent_id %s: that message is "
			              "soft-deleted, and takes no new reply", ps);
		} else {
			rc = check_parent(w, m, moved);
		}
		if (rc) {
			if (rc == SHM_EINVAL || rc == SHM_EDELETED)
				p->bad = i;
			return rc;
		}
	}
	return 0;
}

/* *yes: a reply's arrival would bump parent (adjust_parent): L1 holds it
 * as the batch leaves it, and the batch does not carry it with a count. */
static int bumps(shm__wtxn *w, const struct put_many *p,
                 const shm_uuid *parent, bool *yes)
{
	MDB_val k = {16, (void *)parent->b}, v;
	int rc = counted_in_batch(p, parent)
	                 ? MDB_NOTFOUND
	                 : mdb_get(w->txn, w->env->msg, &k, &v);

	*yes = rc == 0;
	return rc && rc != MDB_NOTFOUND ? shm__err_mdb(rc, "read message") : 0;
}

/*
 * Invariant 9: the prior of each reply the batch stores whose id L1 did not
 * hold. New (none) when this put made its id or its created_at, or when the
 * caller's created_at is after its room's watermark; else PostgreSQL's row
 * of it once asked. Until then, if L3 is configured and the reply would bump a
 * parent, the write stops (SHM_EL3, p->asking, those replies' ask set) for
 * put_batch to ask, with no lock held, and run it again. Without L3, L1
 * alone judges: new.
 */
static int judge_unheld(shm__wtxn *w, struct put_many *p)
{
	bool yes;
	int rc;

	for (size_t i = 0; i < p->n; i++) {
		const shm_msg *m = &p->msgs[i];
		const struct prior *pr = &p->prior[i];
		struct prior *was = &p->prior[pr->first];

		if (pr->later || pr->same || !m->has_parent || was->held ||
		    pr->new_id || pr->fill_time)
			continue;
		if (was->asked) {
			was->had = was->l3.has_parent;
			was->parent = was->l3.parent;
			continue;
		}
		if (!shm__rt_has_l3(w->env) ||
		    m->created_at >
		            shm__room_watermark(w->txn, w->env, m->room_id,
		                                shm__room_floor(w->txn, w->env)))
			continue;
		if ((rc = bumps(w, p, &m->parent_id, &yes)))
			return rc;
		if (yes)
			was->ask = p->asking = true;
	}
	return p->asking ? SHM_EL3 : 0;
}

static int put_many_body(shm__wtxn *w, void *ctx)
{
	struct put_many *p = ctx;
	int rc;

	p->asking = false; /* only judge_unheld stops a run to ask */
	if ((rc = note_deleted_parents(w, p)))
		return rc;
	for (size_t i = 0; i < p->n; i++)
		if ((rc = put_one(w, p, i)))
			return rc;
	if ((rc = check_replies(w, p)))
		return rc;
	if ((rc = judge_unheld(w, p)))
		return rc;
	if ((rc = count_replies(w, p, -1)))
		return rc;
	return count_replies(w, p, 1);
}

/* An id at an index of the batch, ordered by id then index. */
struct slot {
	shm_uuid id;
	size_t i;
};

static int cmp_slot(const void *a, const void *b)
{
	const struct slot *x = a, *y = b;
	int c = memcmp(x->id.b, y->id.b, 16);

	return c ? c : (x->i > y->i) - (x->i < y->i);
}

/*
 * Finds each id's copies (the last one is stored, the first one's prior is
 * what was there before) and the parents the batch carries with their
 * counts: a stored copy with a non-zero reply_count carries its counts, so
 * its replies do not bump it (dump | import copies a thread whose parent
 * already counts its replies). A parent carried with 0 (an import without
 * metadata) counts them as usual. Nil ids get new ones, which no reply can
 * name.
 */
static int batch_prepare(struct put_many *p)
{
	struct slot *s = NULL;
	size_t k = 0, run = 0;

	if (!(p->prior = calloc(p->n, sizeof *p->prior)))
		return shm__err(ENOMEM, "%zu messages", p->n);
	for (size_t i = 0; i < p->n; i++) {
		p->prior[i].first = i;
		p->prior[i].fill_time = p->msgs[i].created_at == 0;
		p->prior[i].new_id = shm_uuid_is_nil(&p->msgs[i].id);
	}
	if (p->n < 2)
		return 0;
	if (!(s = malloc(p->n * sizeof *s)) ||
	    !(p->ids = malloc(p->n * sizeof *p->ids))) {
		free(s);
		return shm__err(ENOMEM, "ids of %zu messages", p->n);
	}
	for (size_t i = 0; i < p->n; i++)
		if (!shm_uuid_is_nil(&p->msgs[i].id))
			s[k++] = (struct slot){p->msgs[i].id, i};
	qsort(s, k, sizeof *s, cmp_slot);
	for (size_t j = 0; j < k; j++) {
		struct prior *pr = &p->prior[s[j].i];
		pr->first = s[run].i;
		if (j + 1 < k && memcmp(s[j].id.b, s[j + 1].id.b, 16) == 0) {
			pr->later = true;
			continue;
		}
		if (p->msgs[s[j].i].reply_count)
			p->ids[p->n_ids++] = s[j].id;
		run = j + 1;
	}
	free(s);
	return 0;
}

/* The write, then in write-through mode the wait for PostgreSQL
 * (shm__wait_through). *stored: the write itself committed (it is in L1
 * and its log, whatever the wait says), for the counters; put_latency
 * times such writes alone, up to the commit. */
static int run_write(shm_env *env, shm__write_fn fn, void *ctx, uint64_t t0,
                     bool *stored)
{
	uint64_t seqs[2];
	int rc = shm__write_seqs(env, fn, ctx, seqs);

	if (rc == 0)
		shm__hist_add(env, 0, shm__mono_ns() - t0);
	*stored = rc == 0;
	return rc ? rc : shm__wait_through(env, seqs);
}

/* Invariant 9: PostgreSQL's rows of the replies judge_unheld asked for,
 * with no lock held. 0, or SHM_EL3 naming the first of them (or ENOMEM). */
static int ask_l3(shm_env *env, struct put_many *p)
{
	shm_uuid *ids = malloc(p->n * sizeof *ids);
	shm__l3_row *rows = malloc(p->n * sizeof *rows);
	size_t n = 0, first = p->n;
	char s[37], cause[512];
	int rc;

	if (!ids || !rows) {
		rc = shm__err(ENOMEM, "ids of %zu messages", p->n);
		goto out;
	}
	for (size_t i = 0; i < p->n; i++) {
		if (!p->prior[i].ask)
			continue;
		ids[n++] = p->msgs[i].id;
		if (first == p->n)
			first = i;
	}
	qsort(ids, n, sizeof *ids, shm__uuid_cmp);
	if ((rc = shm__rt_parents(env, ids, n, rows)) == SHM_EL3) {
		shm__errcause(rc, cause, sizeof cause);
		shm_uuid_format(&p->msgs[first].id, s);
		rc = shm__err(SHM_EL3, "%s: reply %s%s: L1 does not hold it, so "
		              "PostgreSQL is asked whether it has it already "
		              "(counted in its parent's reply_count), and could "
		              "not answer; nothing was written: %s", p->fn, s,
		              n > 1 ? " (and others)" : "", cause);
	}
	for (size_t i = 0; rc == 0 && i < p->n; i++) {
		const shm_uuid *at;
		if (!p->prior[i].ask)
			continue;
		at = bsearch(&p->msgs[i].id, ids, n, sizeof *ids, shm__uuid_cmp);
		p->prior[i].l3 = rows[at - ids];
		p->prior[i].asked = true;
		p->prior[i].ask = false;
	}
out:
	free(ids);
	free(rows);
	return rc;
}

/* shm_msg_put_many's work, its errors naming fn, the call made (*bad_index
 * already n). */
static int put_batch(const char *fn, shm_env *env, shm_msg *msgs, size_t n,
                     size_t *bad_index, bool newer_only, size_t *written)
{
	uint64_t t0 = shm__mono_ns();
	struct put_many p = {.fn = fn, .msgs = msgs, .n = n, .bad = n,
	                     .newer_only = newer_only};
	int rc;

	for (size_t i = 0; i < n; i++) {
		if ((rc = shm__msg_validate(&env->opt, &msgs[i]))) {
			if (bad_index)
				*bad_index = i;
			return rc;
		}
	}
	if (n == 0)
		return 0;
	bool stored = false;
	size_t same = 0;
	/* invariant 9: each run asks about at least one more id */
	if (!(rc = batch_prepare(&p)))
		while ((rc = run_write(env, put_many_body, &p, t0, &stored)) ==
		               SHM_EL3 &&
		       p.asking && !(rc = ask_l3(env, &p)))
			;
	if (rc && bad_index)
		*bad_index = p.bad;
	/* invariant 5: a write that stored nothing gives back the times it
	 * filled in; the ids it filled in stay */
	for (size_t i = 0; rc && !stored && p.prior && i < n; i++)
		if (p.prior[i].fill_time)
			msgs[i].created_at = 0;
	for (size_t i = 0; stored && i < n; i++)
		same += p.prior[i].same;
	free(p.prior);
	free(p.ids);
	if (stored && same < n)
		SHM__COUNT(env, puts, n - same);
	if (written)
		*written = stored ? n - same : 0;
	return rc;
}

int shm_msg_put_many(shm_env *env, shm_msg *msgs, size_t n, size_t *bad_index)
{
	if (bad_index)
		*bad_index = n; /* no message to blame (shm.h) */
	if (!env)
		return shm__null(__func__, "env");
	if (!msgs && n)
		return shm__null(__func__, "msgs");
	return put_batch(__func__, env, msgs, n, bad_index, false, NULL);
}

int shm_msg_put(shm_env *env, shm_msg *m)
{
	if (!env)
		return shm__null(__func__, "env");
	if (!m)
		return shm__null(__func__, "m");
	return put_batch(__func__, env, m, 1, NULL, false, NULL);
}

int shm_msg_put_newer(shm_env *env, shm_msg *m, bool *wrote)
{
	size_t written = 0;
	int rc;

	if (wrote)
		*wrote = false;
	if (!env)
		return shm__null(__func__, "env");
	if (!m)
		return shm__null(__func__, "m");
	rc = put_batch(__func__, env, m, 1, NULL, true, &written);
	if (wrote)
		*wrote = rc == 0 && written == 1;
	return rc;
}

/* ---- changes of an existing message */

typedef struct change {
	const shm_uuid *id;
	uint8_t op;
	const char *content;
	size_t len;
	int32_t user;
	const char *emoji;
	bool add;
	bool wrote; /* out: the change was stored (not a no-op) */
} change;

/* Reactions after adding/removing (user, emoji); *changed if different.
 * Arrays are carved from arena. */
static int react_apply(shm__arena *a, shm_msg *m, change *c, bool *changed)
{
	uint32_t n = m->n_reactions, i, j;
	shm_reaction *r = shm__arena_alloc(a, (n + 1) * sizeof *r);
	int found = -1;

	if (!r)
		return shm__err(ENOMEM, "reactions");
	memcpy(r, m->reactions, n * sizeof *r);
	for (i = 0; i < n; i++)
		if (strcmp(r[i].emoji, c->emoji) == 0)
			found = (int)i;
	*changed = false;
	if (c->add) {
		if (found < 0) { /* last: store() sorts by emoji */
			int32_t *u = shm__arena_alloc(a, sizeof *u);
			if (!u)
				return shm__err(ENOMEM, "reactions");
			*u = c->user;
			r[n++] = (shm_reaction){c->emoji, u, 1};
			*changed = true;
		} else {
			shm_reaction *x = &r[found];
			for (j = 0; j < x->n_users; j++)
				if (x->user_ids[j] == c->user)
					break;
			if (j == x->n_users) {
				if (x->n_users >= SHM_MAX_LIST)
					return shm__err(SHM_ETOOBIG, "reaction '%s': "
					                "%d users already", c->emoji,
					                SHM_MAX_LIST);
				int32_t *u = shm__arena_alloc(a, (x->n_users + 1) * 4);
				if (!u)
					return shm__err(ENOMEM, "reactions");
				memcpy(u, x->user_ids, x->n_users * 4);
				u[x->n_users] = c->user;
				x->user_ids = u;
				x->n_users++;
				*changed = true;
			}
		}
	} else if (found >= 0) {
		shm_reaction *x = &r[found];
		int32_t *u = shm__arena_alloc(a, x->n_users * 4 + 4);
		uint32_t k = 0;
		if (!u)
			return shm__err(ENOMEM, "reactions");
		for (j = 0; j < x->n_users; j++)
			if (x->user_ids[j] != c->user)
				u[k++] = x->user_ids[j];
		*changed = k != x->n_users;
		x->user_ids = u;
		x->n_users = k;
		if (k == 0) {
			memmove(r + found, r + found + 1,
			        (n - (uint32_t)found - 1) * sizeof *r);
			n--;
		}
	}
	if (n > SHM_MAX_LIST)
		return shm__err(SHM_ETOOBIG, "more than %d reactions", SHM_MAX_LIST);
	m->reactions = r;
	m->n_reactions = n;
	return 0;
}

static int change_body(shm__wtxn *w, void *ctx)
{
	change *c = ctx;
	shm__arena arena = {0};
	shm_msg *m;
	MDB_val raw;
	bool changed = true;
	int rc;

	c->wrote = false;
	if ((rc = load(w, c->id, &arena, &m, &raw)))
		goto out;
	if (m->type == SHM_MSG_DELETE) { /* a soft delete is final */
		if (c->op == SHM_OP_MSG_DELETE)
			goto out; /* already: nothing to write */
		char s[37];
		shm_uuid_format(c->id, s);
		rc = shm__err(SHM_EDELETED, "shm_%s: message %s is soft-"
		              "deleted, and a soft delete is final: no edit or "
		              "reaction changes it", shm_op_name(c->op), s);
		goto out;
	}
	switch (c->op) {
	case SHM_OP_MSG_EDIT:
		m->content = c->content;
		m->content_len = (uint32_t)c->len;
		m->content_hash = XXH3_64bits(c->content, c->len);
		m->edited = true;
		if (m->edit_count < UINT32_MAX) /* stays there (shm.h) */
			m->edit_count++;
		break;
	case SHM_OP_MSG_DELETE:
		m->type = SHM_MSG_DELETE;
		m->content = SHM_DELETED_CONTENT;
		m->content_len = (uint32_t)strlen(SHM_DELETED_CONTENT);
		m->content_hash = XXH3_64bits(m->content, m->content_len);
		break;
	case SHM_OP_MSG_REACT:
		rc = react_apply(&arena, m, c, &changed);
		break;
	}
	if (rc == 0 && changed)
		bump(w, m);
	if (rc == 0 && changed && c->op != SHM_OP_MSG_DELETE &&
	    raw.mv_size < shm__msg_enc_size(m)) {
		/* invariant 6: what is stored, a put takes back */
		char what[80], s[37];
		shm_uuid_format(c->id, s);
		snprintf(what, sizeof what, "shm_%s: message %s",
		         shm_op_name(c->op), s);
		rc = shm__msg_size_check(&w->env->opt, m, what);
	}
	if (rc == 0 && changed && (rc = store(w, c->op, m, &raw)) == 0)
		c->wrote = true;
out:
	shm__arena_free(&arena);
	return rc;
}

/* *stored: the change was stored (run_write's, and not a no-op): the
 * callers count it then, whatever write-through then says. */
static int run_change(shm_env *env, change *c, bool *stored)
{
	uint64_t t0 = shm__mono_ns();
	int rc = run_write(env, change_body, c, t0, stored);
	shm_msg *m;

	/* L1 dropped it (evicted, expired once flushed) or never held it
	 * (another host's): with read-through configured, the message is
	 * asked of L2, then L3, as a get would, and its fill in L1 is changed,
	 * as the application's get then edit would */
	if (rc == SHM_ENOTFOUND && env->rt) {
		if ((rc = shm__rt_get(env, c->id, &m)))
			return rc; /* SHM_ENOTFOUND: nowhere; SHM_EL3...: unknown */
		shm_msg_free(m);
		if ((rc = run_write(env, change_body, c, t0, stored)) ==
		    SHM_ENOTFOUND) {
			char s[37];
			shm_uuid_format(c->id, s);
			rc = shm__err(SHM_ENOTFOUND, "shm_%s: message %s: "
			              "read-through found it, but L1 dropped it "
			              "again before the change (L1 full, or an "
			              "invalidation): retry", shm_op_name(c->op),
			              s);
		}
	}
	*stored = *stored && c->wrote;
	return rc;
}

int shm_msg_edit(shm_env *env, const shm_uuid *id, const char *content,
                 size_t len)
{
	change c = {.id = id, .op = SHM_OP_MSG_EDIT, .content = content,
	            .len = len};
	bool stored;
	int rc;

	if (!env)
		return shm__null(__func__, "env");
	if (!id)
		return shm__null(__func__, "id");
	if (!content && len)
		return shm__null(__func__, "content");
	if (!content) /* (NULL, 0) is empty content, as in shm_msg_put */
		c.content = content = "";
	if ((rc = shm__check_text("content", content, len, env->opt.max_content,
	                          true)))
		return rc;
	rc = run_change(env, &c, &stored);
	if (stored)
		SHM__COUNT(env, edits, 1);
	return rc;
}

int shm_msg_delete(shm_env *env, const shm_uuid *id)
{
	change c = {.id = id, .op = SHM_OP_MSG_DELETE};
	bool stored;
	int rc;

	if (!env)
		return shm__null(__func__, "env");
	if (!id)
		return shm__null(__func__, "id");
	rc = run_change(env, &c, &stored);
	if (stored)
		SHM__COUNT(env, deletes, 1);
	return rc;
}

int shm_msg_react(shm_env *env, const shm_uuid *id, int32_t user_id,
                  const char *emoji, bool add)
{
	change c = {.id = id, .op = SHM_OP_MSG_REACT, .user = user_id,
	            .emoji = emoji, .add = add};
	bool stored;
	int rc;

	if (!env)
		return shm__null(__func__, "env");
	if (!id)
		return shm__null(__func__, "id");
	if (!emoji)
		return shm__null(__func__, "emoji");
	if ((rc = shm__check_text("emoji", emoji, strlen(emoji), SHM_MAX_EMOJI,
	                          false)))
		return rc;
	rc = run_change(env, &c, &stored);
	if (stored)
		SHM__COUNT(env, reacts, 1);
	return rc;
}

/* ---- reads */

int shm_msg_get(shm_env *env, const shm_uuid *id, shm_msg **out)
{
	uint64_t t0 = shm__mono_ns();
	MDB_txn *txn;
	MDB_val k = {16, (void *)(id ? id->b : NULL)}, v;
	int rc;

	if (out)
		*out = NULL;
	if (!env)
		return shm__null(__func__, "env");
	if (!id)
		return shm__null(__func__, "id");
	if (!out)
		return shm__null(__func__, "out");
	shm__touch_prefetch(env, SHM_KIND_MSG, id->b, 16);
	if ((rc = shm__rtxn_get(env, &txn)))
		return rc;
	rc = mdb_get(txn, env->msg, &k, &v);
	if (rc == 0)
		rc = shm__msg_decode(v.mv_data, v.mv_size, NULL, out);
	else if (rc != MDB_NOTFOUND)
		rc = shm__err_mdb(rc, "read message");
	shm__rtxn_put(env, txn);
	if (rc == 0) {
		SHM__COUNT_READ(env, l1_hits, 1);
		shm__touch(env, SHM_KIND_MSG, id->b, 16);
	} else if (rc == MDB_NOTFOUND) {
		SHM__COUNT(env, l1_misses, 1);
		rc = shm__rt_get(env, id, out);
	}
	/* an answer, "nowhere" included, is timed; a failure is not */
	if (rc == 0 || rc == SHM_ENOTFOUND)
		shm__hist_add(env, 1, shm__mono_ns() - t0);
	return rc;
}

struct shm_rtxn {
	shm_env *env;
	MDB_txn *txn;
	shm__arena arena;
};

int shm_rtxn_begin(shm_env *env, shm_rtxn **out)
{
	shm_rtxn *t;
	int rc;

	if (out)
		*out = NULL;
	if (!env)
		return shm__null(__func__, "env");
	if (!out)
		return shm__null(__func__, "out");
	/* The handle and its arena chunk are reused from the last end. */
	t = __atomic_exchange_n(&env->spare_rtxn, NULL, __ATOMIC_ACQUIRE);
	if (!t && !(t = calloc(1, sizeof *t)))
		return shm__err(ENOMEM, "read transaction");
	t->env = env;
	if ((rc = shm__rtxn_get(env, &t->txn))) {
		shm__arena_free(&t->arena);
		free(t);
		return rc;
	}
	*out = t;
	return 0;
}

void shm_rtxn_end(shm_rtxn *t)
{
	shm_rtxn *old;

	if (!t)
		return;
	shm__rtxn_put(t->env, t->txn);
	t->txn = NULL;
	shm__arena_reset(&t->arena);
	/* acquire too: old was reset by the thread that put it there */
	old = __atomic_exchange_n(&t->env->spare_rtxn, t, __ATOMIC_ACQ_REL);
	if (old) {
		shm__arena_free(&old->arena);
		free(old);
	}
}

void shm__rtxn_spare_free(shm_env *env)
{
	shm_rtxn *t = env->spare_rtxn;

	env->spare_rtxn = NULL;
	if (t) {
		shm__arena_free(&t->arena);
		free(t);
	}
}

int shm_msg_view(shm_rtxn *t, const shm_uuid *id, const shm_msg **out)
{
	MDB_val k = {16, (void *)(id ? id->b : NULL)}, v;
	shm_msg *m;
	int rc;

	if (out)
		*out = NULL;
	if (!t)
		return shm__null(__func__, "t");
	if (!id)
		return shm__null(__func__, "id");
	if (!out)
		return shm__null(__func__, "out");
	shm__touch_prefetch(t->env, SHM_KIND_MSG, id->b, 16);
	rc = mdb_get(t->txn, t->env->msg, &k, &v);
	if (rc == MDB_NOTFOUND) {
		char s[37];
		SHM__COUNT(t->env, l1_misses, 1);
		shm_uuid_format(id, s);
		return shm__err(SHM_ENOTFOUND, "message %s is not in L1", s);
	}
	if (rc)
		return shm__err_mdb(rc, "read message");
	if ((rc = shm__msg_decode(v.mv_data, v.mv_size, &t->arena, &m)))
		return rc;
	SHM__COUNT_READ(t->env, l1_hits, 1);
	shm__touch(t->env, SHM_KIND_MSG, id->b, 16);
	*out = m;
	return 0;
}

/* ---- L1 maintenance */

int shm__msg_drop(shm__wtxn *w, const void *key, size_t klen)
{
	MDB_val k = {klen, (void *)key}, v;
	char room[SHM_MAX_ROOM + 1];
	const char *r;
	int64_t created;
	shm_uuid id;
	int rc;

	if (klen != 16)
		return shm__err(SHM_ECORRUPT, "message key of %zu byte%s", klen,
		                shm__plural(klen));
	if ((rc = mdb_get(w->txn, w->env->msg, &k, &v)))
		return rc == MDB_NOTFOUND ? rc : shm__err_mdb(rc, "read message");
	if (!(r = enc_room(&v, &created)))
		return SHM_ECORRUPT;
	snprintf(room, sizeof room, "%s", r);
	memcpy(id.b, key, 16);
	if ((rc = mdb_del(w->txn, w->env->msg, &k, NULL)))
		return shm__err_mdb(rc, "drop message");
	if ((rc = shm__room_del(w, room, created, &id)))
		return rc;
	return shm__room_incomplete(w, room, created);
}

static int fill_body(shm__wtxn *w, void *ctx)
{
	const shm_msg *m = ctx;
	MDB_val k = {16, (void *)m->id.b}, v;
	int rc = mdb_get(w->txn, w->env->msg, &k, &v);

	if (rc == 0)
		return 0; /* L1 has it (maybe newer): never overwrite */
	if (rc != MDB_NOTFOUND)
		return shm__err_mdb(rc, "read message");
	if ((rc = store(w, 0, m, NULL)))
		return rc;
	/* L1 holds m but not its neighbours: no room page reaching down to
	 * m is complete in L1 (room.c, invariant 2) */
	return shm__room_incomplete(w, m->room_id, m->created_at);
}

int shm__msg_fill(shm_env *env, const shm_msg *m)
{
	int rc;

	if ((rc = shm__msg_validate(&env->opt, m)))
		return rc;
	if ((rc = shm__write(env, fill_body, (void *)m)) == 0)
		SHM__COUNT(env, fills, 1);
	return rc;
}
