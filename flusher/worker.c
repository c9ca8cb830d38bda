/*
 * flusher/worker.c - one thread per sink: tail the log from the sink's own
 * cursor, cut batches, apply them, survive outages and poison records.
 *
 * The cycle:
 *   1. connect (on failure: capped exponential backoff, retry for ever;
 *      --once gives up after once-retries failures in a row, of the sink
 *      or of reads of the log)
 *   2. after every (re)connect or failure, ask the sink for its durable
 *      position (PostgreSQL's shm_sink_positions row) and believe it:
 *      records at or below it are dropped from the batch in hand; a
 *      position past the cursor was committed unseen, and the sink does
 *      what follows its COMMIT again for those records (ops->caught_up)
 *   3. cut a batch: wait (shm_log_wait) for a record past the cursor, then
 *      read until batch-records records or until the oldest is batch-ms old,
 *      or until the batch holds a record a write-through writer waits for
 *      (invariant 5); a backlog (batch-records there at once) lets the
 *      batch take up to batch-max-records; a read of the log that fails (no
 *      reader slot left, ...) waits the same capped backoff as a sink
 *      failure before the next try
 *   4. apply: FL_OK -> cursor = batch end, meta "sink.<name>.applied" set;
 *      FL_TRANSIENT -> backoff, same batch again; FL_REJECT -> find the
 *      culprit (the sink names it, or the range is replayed in halves down
 *      to one record), count its refusals, and after poison-retries of them
 *      (at once when the sink says retrying cannot change it) set it aside
 *      (shm_dead_add) and go on without it
 *
 * Invariants
 *  1. The cursor only moves past a record once the sink has it or it is a
 *     dead letter: nothing is skipped, and trimming (min of all cursors)
 *     never deletes a record a sink still needs.
 *  2. A batch's position range (from, upto] is fixed once cut: retries
 *     replay the same range, only minus dead letters.
 *  3. A record that fails its checksum is a dead letter at once (retrying
 *     cannot change its bytes).
 *  4. No write is begun while the worker holds its log iterator: inside
 *     the iterator's read transaction a write could not adopt a map
 *     another process grew (libshm's gate.c invariant 6).
 *  5. A batch stops waiting for more records as soon as it holds the seq
 *     in the sink's awaited meta (fl_sink_ops.awaited: the last record of
 *     the latest write whose writer waits for this sink), i.e. when
 *     from < awaited <= upto. Write-through waits for pg alone, which has
 *     "sink.pg.awaited" (libshm's wtxn.c invariant 6); redis has none and
 *     reads none. The mark is read after each read of the log: it is
 *     committed with its records, so a batch that holds them sees it (or
 *     a later one, past the batch: those records are in the log already,
 *     the next read takes them and the batch closes then, or fills up).
 *     Only the awaited record closes a batch early: a busy log still
 *     makes batch-records batches, and a stale mark (at or below the
 *     cursor: applied, its writer done or dead) changes nothing. A mark that cannot be read: batch-ms, as
 *     without one.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fl.h"

struct fl_worker {
	pthread_t thread;
	fl_sink *sink;
	shm_env *env;
	const fl_config *cfg;
	bool once;
	uint64_t once_upto;
	bool has_notify;
	pthread_t notify; /* sent FL_SIG_DONE once done is set */
	char meta_name[48];

	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop;       /* under lock */
	bool done;       /* under lock */
	int result;      /* 0 ok, -1 gave up */

	uint64_t applied;    /* atomic */
	fl_stats st;         /* fields updated with atomics */

	/* thread-local state */
	fl_batch b;
	uint64_t isolate_upto;    /* isolating a poison record up to here */
	size_t isolate_max;       /* ... with batches of at most this many */
	/* records set aside in the batch in flight: a range cut in halves
	 * re-reads them from the log, and must not set them aside twice */
	uint64_t *deadseq;
	size_t n_deadseq, cap_deadseq;
	uint64_t poison_seq;
	uint64_t poison_count;
	uint64_t backoff_ms;      /* the next wait after a sink failure */
	uint64_t read_backoff_ms; /* ... after a failed read of the log */
	uint64_t fails;           /* failures in a row */
	uint64_t read_fails;      /* failed reads of the log in a row */
	char record_what[64];     /* "recording sink.<name>.applied" */
	fl_repeat record_fail;    /* meta writes of the position */
	fl_repeat read_fail;      /* log reads */
};

#define ADD(w, f, n) __atomic_fetch_add(&(w)->st.f, (uint64_t)(n), __ATOMIC_RELAXED)

uint64_t fl_mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

bool fl_stopped(pthread_mutex_t *lock, const bool *stop)
{
	pthread_mutex_lock(lock);
	bool s = *stop;
	pthread_mutex_unlock(lock);
	return s;
}

void fl_nap(pthread_mutex_t *lock, pthread_cond_t *cond, const bool *stop,
            uint64_t ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += (time_t)(ms / 1000);
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(lock);
	while (!*stop && pthread_cond_timedwait(cond, lock, &ts) != ETIMEDOUT)
		;
	pthread_mutex_unlock(lock);
}

static bool stopping(fl_worker *w)
{
	return fl_stopped(&w->lock, &w->stop);
}

/* Sleeps ms, or less if stopped. */
static void nap(fl_worker *w, uint64_t ms)
{
	fl_nap(&w->lock, &w->cond, &w->stop, ms);
}

static const char *name(const fl_worker *w)
{
	return w->sink->ops->name;
}

/* Waits *ms (a stop cuts it short), then doubles it up to backoff-max-ms:
 * the capped exponential backoff of every retry here. */
static void back_off(fl_worker *w, uint64_t *ms)
{
	nap(w, *ms);
	*ms = fl_backoff_next(w->cfg, *ms);
}

/* Meta first, then the position the main thread trims to: meta
 * "flushed" (the trim) never gets ahead of a sink's meta position. */
static void set_applied(fl_worker *w, uint64_t pos)
{
	int rc;

	if ((rc = shm_meta_set(w->env, w->meta_name, pos)))
		fl_repeat_fail(&w->record_fail, FL_WARN, "cannot record %s = %"
		               PRIu64 ": %s", w->meta_name, pos, shm_errmsg());
	else
		fl_repeat_ok(&w->record_fail);
	__atomic_store_n(&w->applied, pos, __ATOMIC_RELEASE);
	__atomic_store_n(&w->st.applied, pos, __ATOMIC_RELAXED);
	shm_log_wake(w->env); /* write-through writers wait for it */
}

/* --once has made its last attempt, at the sink or at reading the log:
 * the worker gives up (run). */
static bool given_up(const fl_worker *w)
{
	return w->once && (w->fails >= w->cfg->once_retries ||
	                   w->read_fails >= w->cfg->once_retries);
}

/* A failure that is not the data's fault: back off, maybe give up. what
 * names the step, NULL when the sink's message does (a connect's: "connect
 * ...", "--pg-schema ...", "AUTH on ..."). */
static void failed(fl_worker *w, const char *what)
{
	w->fails++;
	ADD(w, errors, 1);
	if (w->fails == 1)
		w->backoff_ms = w->cfg->backoff_min_ms;
	if (given_up(w)) {
		fl_log(FL_ERROR, name(w), "%s%s%s; giving up (--once: %" PRIu64
		       " failure%s in a row) at %" PRIu64 " of %" PRIu64,
		       what ? what : "", what ? ": " : "", w->sink->errmsg,
		       w->fails, w->fails == 1 ? "" : "s", w->b.from,
		       w->once_upto);
		return;
	}
	fl_log(w->fails == 1 ? FL_WARN : FL_INFO, name(w),
	       "%s%s%s; retry %" PRIu64 " in %" PRIu64 " ms",
	       what ? what : "", what ? ": " : "", w->sink->errmsg, w->fails,
	       w->backoff_ms);
	back_off(w, &w->backoff_ms);
}

static void recovered(fl_worker *w)
{
	if (w->fails)
		fl_log(FL_INFO, name(w), "back after %" PRIu64 " failure%s",
		       w->fails, w->fails == 1 ? "" : "s");
	w->fails = 0;
}

static bool was_dead(const fl_worker *w, uint64_t seq)
{
	for (size_t i = 0; i < w->n_deadseq; i++)
		if (w->deadseq[i] == seq)
			return true;
	return false;
}

/* Sets rec aside with reason; said: the text for the log, when the
 * letter keeps a shorter one (NULL: reason). */
static void dead_letter(fl_worker *w, const shm_log_rec *rec,
                        const char *reason, const char *said)
{
	int rc = shm_dead_add(w->env, rec, name(w), reason);

	if (w->n_deadseq == w->cap_deadseq) {
		size_t cap = w->cap_deadseq ? w->cap_deadseq * 2 : 8;
		uint64_t *d = realloc(w->deadseq, cap * sizeof *d);
		if (d) {
			w->deadseq = d;
			w->cap_deadseq = cap;
		}
	}
	if (w->n_deadseq < w->cap_deadseq)
		w->deadseq[w->n_deadseq++] = rec->seq;

	ADD(w, dead, 1);
	if (!said)
		said = reason;
	if (rc)
		fl_log(FL_ERROR, name(w), "seq %" PRIu64 " (%s): cannot store "
		       "the dead letter: %s; skipping it anyway: %s",
		       rec->seq, shm_op_name(rec->op), shm_errmsg(), said);
	else
		fl_log(FL_ERROR, name(w), "seq %" PRIu64 " (%s) set aside as a "
		       "dead letter: %s", rec->seq, shm_op_name(rec->op),
		       said);
}

/* A read of the log failed: said once and reminded (fl_repeat), then the
 * backoff, so that a failure that lasts costs no CPU; with --once, counted
 * toward once-retries as a sink's failures are (the last one says it gives
 * up, and run() stops). */
static void read_failed(fl_worker *w)
{
	w->read_fails++;
	if (given_up(w)) {
		fl_log(FL_ERROR, name(w), "log read after %" PRIu64 ": %s; "
		       "giving up (--once: %" PRIu64 " failure%s in a row) at %"
		       PRIu64 " of %" PRIu64, w->b.upto, shm_errmsg(),
		       w->read_fails, w->read_fails == 1 ? "" : "s", w->b.from,
		       w->once_upto);
		return;
	}
	fl_repeat_fail(&w->read_fail, FL_ERROR, "log read after %" PRIu64
	               ": %s", w->b.upto, shm_errmsg());
	back_off(w, &w->read_backoff_ms);
}

/* A record that fails its checksum, just read by *it: set aside as a dead
 * letter with the iterator closed, then read on past it in a new one (0,
 * or the error of that open: *it is then NULL). The dead letter is a write:
 * begun inside the iterator's read transaction, it could not adopt a map
 * another process grew meanwhile (libshm's gate.c invariant 6) and would be
 * lost. The record's bytes live in that transaction: copied first. */
static int set_aside_corrupt(fl_worker *w, shm_log_iter **it,
                             shm_log_rec *rec)
{
	char reason[200];
	uint8_t *raw = NULL;

	snprintf(reason, sizeof reason, "corrupt log record: %s", shm_errmsg());
	if (rec->raw && (raw = malloc(rec->raw_size)))
		memcpy(raw, rec->raw, rec->raw_size); /* else without them */
	rec->raw = raw;
	rec->key = rec->payload = NULL;
	rec->key_len = rec->payload_len = 0;
	shm_log_iter_close(*it);
	*it = NULL;
	dead_letter(w, rec, reason, NULL);
	free(raw);
	w->b.upto = rec->seq;
	return shm_log_iter_open(w->env, w->b.upto + 1, it);
}

/* Reads records after the batch into it, up to max of them. */
static void fill(fl_worker *w, size_t max)
{
	shm_log_iter *it = NULL;
	shm_log_rec rec;
	size_t n0 = w->b.n;
	uint64_t upto0 = w->b.upto, next = 0;
	int rc;

	if (w->once && w->b.upto >= w->once_upto)
		return;
	/* read before the iterator's snapshot: every seq below is in it */
	shm_meta_get(w->env, "next_seq", &next);
	if ((rc = shm_log_iter_open(w->env, w->b.upto + 1, &it))) {
		read_failed(w);
		return;
	}
	while (w->b.n < max) {
		memset(&rec, 0, sizeof rec);
		rc = shm_log_iter_next(it, &rec);
		if (rc == SHM_ENOTFOUND)
			break;
		if (rc == 0 && w->once && rec.seq > w->once_upto)
			break;
		if ((rc == 0 || rc == SHM_ECORRUPT) && rec.seq > w->b.upto &&
		    was_dead(w, rec.seq)) {
			w->b.upto = rec.seq; /* set aside already */
			continue;
		}
		if (rc == SHM_ECORRUPT && rec.seq > w->b.upto) {
			if (set_aside_corrupt(w, &it, &rec)) {
				read_failed(w);
				return;
			}
			continue;
		}
		if (rc) {
			shm_log_iter_close(it); /* no snapshot held meanwhile */
			read_failed(w);
			return;
		}
		if (rec.seq <= w->b.upto)
			continue; /* cannot happen: the log only grows */
		if (rec.seq > w->b.upto + 1) /* seqs have no holes but this */
			fl_log(FL_WARN, name(w), "records (%" PRIu64 "..%" PRIu64
			       "] were trimmed before this sink had them; "
			       "skipping", w->b.upto,
			       rec.seq - 1);
		if (fl_batch_add(&w->b, &rec)) {
			fl_log(FL_ERROR, name(w), "out of memory for a batch");
			break;
		}
	}
	shm_log_iter_close(it);
	fl_repeat_ok(&w->read_fail);
	w->read_fails = 0;
	w->read_backoff_ms = w->cfg->backoff_min_ms;
	if (rc == SHM_ENOTFOUND && w->b.n == n0 && w->b.upto == upto0 &&
	    next > w->b.upto + 1) {
		/* the records up to next - 1 were trimmed before this sink
		 * was configured: it can never have them */
		uint64_t to = next - 1;
		if (w->once && to > w->once_upto)
			to = w->once_upto;
		fl_log(FL_WARN, name(w), "records (%" PRIu64 "..%" PRIu64 "] "
		       "were trimmed before this sink had them; skipping",
		       w->b.upto, to);
		w->b.upto = to;
	}
}

static int64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Invariant 5: a writer waits for a record the batch holds. Read after
 * the batch's last read of the log. */
static bool awaited(fl_worker *w)
{
	uint64_t seq = 0;

	if (!w->sink->ops->awaited ||
	    shm_meta_get(w->env, w->sink->ops->awaited, &seq))
		return false;
	return seq > w->b.from && seq <= w->b.upto;
}

/* Cuts the next batch into w->b (empty if nothing came). A batch that
 * reaches batch-records with no wait (a backlog: catching up after an
 * outage or a restart, --once) takes what else the log holds, up to
 * batch-max-records: fewer, larger transactions and pipelines while
 * steady state keeps the batch-records / batch-ms rule. */
static void cut(fl_worker *w)
{
	size_t max = w->cfg->batch_records;
	size_t big = w->cfg->batch_max_records;

	if (w->isolate_upto > w->b.upto)
		max = big = w->isolate_max ? w->isolate_max : 1;
	if (shm_log_wait(w->env, w->b.upto + 1, 100) != 0)
		return;
	fill(w, max);
	if (w->b.n >= max && big > max) {
		fill(w, big);
		return;
	}
	if (w->once)
		return;
	while (w->b.n > 0 && w->b.n < max && !stopping(w) && !awaited(w)) {
		int64_t age_ms = (now_us() - w->b.r[0].time) / 1000;
		if (age_ms < 0)
			age_ms = 0;
		if ((uint64_t)age_ms >= w->cfg->batch_ms)
			break;
		uint64_t left = w->cfg->batch_ms - (uint64_t)age_ms;
		if (shm_log_wait(w->env, w->b.upto + 1, (uint32_t)left) != 0)
			break;
		fill(w, max);
	}
}

/* Believes the sink's own position: drops what it already has. */
static int resync(fl_worker *w)
{
	uint64_t pos;
	int r = w->sink->ops->position(w->sink, &pos);

	if (r <= 0)
		return r;
	/* A position past this environment's last record belongs to another
	 * log: taking it would skip records never applied. The pg sink has
	 * refused a row of another environment (env_uuid) already: past
	 * that, it is this environment's older self, restored from a copy,
	 * or another one where the table has no env_uuid. */
	uint64_t next_seq = 0, last;
	if (shm_meta_get(w->env, "next_seq", &next_seq)) {
		fl_sink_seterr(w->sink, "read next_seq: %s", shm_errmsg());
		return -1;
	}
	last = next_seq ? next_seq - 1 : 0;
	if (pos > last) {
		fl_sink_seterr(w->sink, "the sink says env-id '%s' applied up "
		               "to %" PRIu64 ", but this environment's log ends "
		               "at %" PRIu64 " (this environment restored from "
		               "an older copy of itself; or two environments "
		               "under one env-id, where shm_sink_positions has "
		               "no env_uuid column): nothing is applied until "
		               "its row in shm_sink_positions is fixed (deleted: "
		               "this environment then starts at its own "
		               "position; or each environment given its own "
		               "--env-id)", w->sink->env_id, pos, last);
		if (!w->fails) /* said once; each retry names it (failed) */
			fl_log(FL_ERROR, name(w), "%s", w->sink->errmsg);
		return -1;
	}
	uint64_t cur = w->b.from;
	if (pos == cur)
		return 0;
	fl_log(pos < cur ? FL_WARN : FL_INFO, name(w),
	       "position %" PRIu64 " from the sink replaces %" PRIu64 "%s",
	       pos, cur, pos < cur ? " (records already trimmed from the "
	                             "log cannot be replayed)" : "");
	if (pos > cur && w->sink->ops->caught_up) /* committed unseen */
		w->sink->ops->caught_up(w->sink, cur, pos);
	if (pos >= w->b.upto || pos < w->b.from) {
		/* all applied already, or the sink is behind what we thought:
		 * start over from its position */
		fl_batch_clear(&w->b);
		w->b.from = w->b.upto = pos;
	} else {
		size_t i = 0;
		while (i < w->b.n)
			if (w->b.r[i].seq <= pos)
				fl_batch_remove(&w->b, i);
			else
				i++;
		w->b.from = pos;
	}
	set_applied(w, pos);
	return 0;
}

static void applied_ok(fl_worker *w, uint64_t t0)
{
	size_t rows = w->b.n;

	ADD(w, batches, 1);
	ADD(w, rows, rows);
	ADD(w, superseded, w->b.older);
	__atomic_store_n(&w->st.last_batch_us,
	                 (uint64_t)(now_us() - (int64_t)t0), __ATOMIC_RELAXED);
	fl_log(FL_DEBUG, name(w), "applied %zu records (%" PRIu64 "..%" PRIu64
	       "]", rows, w->b.from, w->b.upto);
	set_applied(w, w->b.upto);
	if (w->sink->on_applied) /* invalidation publisher (invalidate.h) */
		w->sink->on_applied(w->sink->on_applied_user, &w->b);
	uint64_t upto = w->b.upto;
	fl_batch_clear(&w->b);
	w->b.from = w->b.upto = upto;
	w->poison_count = 0;
	size_t k = 0; /* forget those now at or below the cursor */
	for (size_t i = 0; i < w->n_deadseq; i++)
		if (w->deadseq[i] > upto)
			w->deadseq[k++] = w->deadseq[i];
	w->n_deadseq = k;
	if (w->isolate_upto > upto && w->isolate_max < SIZE_MAX / 2)
		w->isolate_max *= 2; /* that part was clean: take more */
}

/* The sink refused the batch's data. */
static void rejected(fl_worker *w)
{
	long idx = w->b.reject;
	size_t live = 0, last = 0;

	ADD(w, retries, 1);
	for (size_t i = 0; i < w->b.n; i++)
		if (!w->b.r[i].superseded) {
			live++;
			last = i;
		}
	if (idx < 0 && live == 1)
		idx = (long)last;
	if (idx < 0) {
		/* culprit unknown: replay this range in halves (a half that
		 * passes doubles the next one, see applied_ok) down to one
		 * record; the records cut off go back to the log */
		size_t keep = w->b.n / 2 ? w->b.n / 2 : 1;
		fl_log(FL_WARN, name(w), "batch (%" PRIu64 "..%" PRIu64 "] "
		       "refused (%s): applying it in batches of %zu to find "
		       "the culprit", w->b.from, w->b.upto, w->sink->errmsg,
		       keep);
		if (w->b.upto > w->isolate_upto)
			w->isolate_upto = w->b.upto;
		w->isolate_max = keep;
		while (w->b.n > keep)
			fl_batch_remove(&w->b, w->b.n - 1);
		w->b.upto = w->b.n ? w->b.r[w->b.n - 1].seq : w->b.from;
		return;
	}
	fl_rec *r = &w->b.r[idx];
	if (w->poison_seq != r->seq) {
		w->poison_seq = r->seq;
		w->poison_count = 0;
	}
	w->poison_count++;
	if (w->poison_count < w->cfg->poison_retries && !w->b.reject_final) {
		fl_log(FL_WARN, name(w), "seq %" PRIu64 " refused (%" PRIu64
		       "/%" PRIu64 "): %s", r->seq, w->poison_count,
		       w->cfg->poison_retries, w->sink->errmsg);
		nap(w, w->cfg->backoff_min_ms);
		return;
	}
	shm_log_rec rec;
	memset(&rec, 0, sizeof rec);
	rec.seq = r->seq;
	rec.time = r->time;
	rec.op = r->op;
	rec.key = r->key;
	rec.key_len = r->key_len;
	rec.payload = r->payload;
	rec.payload_len = r->payload_len;
	rec.raw = r->raw_size ? r->raw : NULL;
	rec.raw_size = r->raw_size;
	if (w->sink->dead_reason[0]) /* the letter's short, the log's whole */
		dead_letter(w, &rec, w->sink->dead_reason, w->sink->errmsg);
	else
		dead_letter(w, &rec, w->sink->errmsg[0] ? w->sink->errmsg
		                                        : w->b.reason, NULL);
	w->poison_count = 0;
	fl_batch_remove(&w->b, (size_t)idx); /* upto stays: moves past it */
}

static void *run(void *arg)
{
	fl_worker *w = arg;
	bool need_position = true;

	fl_log(FL_INFO, name(w), "starting at %s = %" PRIu64 "%s",
	       w->meta_name, w->b.upto, w->once ? " (--once)" : "");
	for (;;) {
		bool in_flight = w->b.n > 0 || w->b.upto > w->b.from;
		if (!in_flight && stopping(w))
			break;
		/* --once ends drained and having reached the sink once: with
		 * nothing to drain, an unreachable sink is still exit 3 */
		if (!in_flight && w->once && w->b.upto >= w->once_upto &&
		    !need_position)
			break;
		if (given_up(w)) {
			w->result = -1; /* failed() or read_failed() said why */
			break;
		}
		if (stopping(w) && w->fails)
			break; /* the batch in flight cannot be applied now */
		if (w->sink->ops->connect(w->sink) != FL_OK) {
			ADD(w, reconnects, 1);
			failed(w, NULL); /* the sink says which step */
			need_position = true;
			continue;
		}
		if (need_position) {
			if (resync(w) < 0) {
				failed(w, "position");
				continue;
			}
			need_position = false;
		}
		if (!in_flight) {
			if (stopping(w))
				break;
			cut(w);
			if (w->b.n == 0 && w->b.upto == w->b.from)
				continue;
		}
		uint64_t t0 = (uint64_t)now_us();
		w->sink->errmsg[0] = 0;
		w->sink->dead_reason[0] = 0;
		w->b.reject_final = false;
		w->b.older = 0;
		int rc = w->sink->ops->apply(w->sink, &w->b);
		if (rc == FL_OK) {
			recovered(w);
			applied_ok(w, t0);
		} else if (rc == FL_REJECT) {
			recovered(w);
			rejected(w);
		} else {
			ADD(w, retries, 1);
			failed(w, "batch failed");
			need_position = true;
		}
	}
	if (w->once && w->result == 0 && w->b.from < w->once_upto) {
		w->result = -1; /* --once promised a drain it did not make */
		fl_log(FL_WARN, name(w), "stopped by a signal at %" PRIu64
		       " of %" PRIu64 " (--once: exit 3)", w->b.from,
		       w->once_upto);
	}
	w->sink->ops->disconnect(w->sink);
	pthread_mutex_lock(&w->lock);
	w->done = true;
	pthread_mutex_unlock(&w->lock);
	fl_log(FL_INFO, name(w), "stopped at %" PRIu64, w->b.from);
	if (w->has_notify) /* alive: it joins this thread before it ends */
		pthread_kill(w->notify, FL_SIG_DONE);
	return NULL;
}

int fl_worker_start(fl_worker **out, fl_sink *sink, shm_env *env,
                    const fl_config *cfg, bool once, uint64_t once_upto,
                    const pthread_t *notify)
{
	fl_worker *w = calloc(1, sizeof *w);
	pthread_condattr_t ca;
	uint64_t pos = 0;
	int rc;

	if (!w) {
		sink->ops->destroy(sink);
		return ENOMEM;
	}
	w->sink = sink;
	w->env = env;
	w->cfg = cfg;
	w->once = once;
	w->once_upto = once_upto;
	if ((w->has_notify = notify != NULL))
		w->notify = *notify;
	snprintf(w->meta_name, sizeof w->meta_name, "sink.%s.applied",
	         sink->ops->name);
	snprintf(w->record_what, sizeof w->record_what, "recording %s",
	         w->meta_name);
	fl_repeat_init(&w->record_fail, sink->ops->name, w->record_what,
	               cfg->remind_interval_s);
	fl_repeat_init(&w->read_fail, sink->ops->name, "reading the log",
	               cfg->remind_interval_s);
	pthread_mutex_init(&w->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&w->cond, &ca);
	pthread_condattr_destroy(&ca);
	fl_batch_init(&w->b);
	if ((rc = shm_meta_get(env, w->meta_name, &pos))) {
		fl_log(FL_ERROR, sink->ops->name, "cannot read %s: %s",
		       w->meta_name, shm_errmsg());
		goto fail;
	}
	w->b.from = w->b.upto = pos;
	w->applied = w->st.applied = pos;
	w->backoff_ms = w->read_backoff_ms = cfg->backoff_min_ms;
	if ((rc = pthread_create(&w->thread, NULL, run, w)))
		goto fail;
	*out = w;
	return 0;
fail:
	sink->ops->destroy(sink);
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->lock);
	free(w);
	return rc ? rc : EIO;
}

void fl_worker_stop(fl_worker *w)
{
	pthread_mutex_lock(&w->lock);
	w->stop = true;
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
	shm_log_wake(w->env); /* a worker waiting for records sees stop */
}

bool fl_worker_done(fl_worker *w)
{
	pthread_mutex_lock(&w->lock);
	bool d = w->done;
	pthread_mutex_unlock(&w->lock);
	return d;
}

int fl_worker_join(fl_worker *w)
{
	int result;

	pthread_join(w->thread, NULL);
	result = w->result;
	fl_batch_free(&w->b);
	free(w->deadseq);
	w->sink->ops->destroy(w->sink);
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->lock);
	free(w);
	return result;
}

const char *fl_worker_name(const fl_worker *w)
{
	return name(w);
}

uint64_t fl_worker_applied(fl_worker *w)
{
	return __atomic_load_n(&w->applied, __ATOMIC_ACQUIRE);
}

void fl_worker_stats(fl_worker *w, fl_stats *out)
{
	out->batches = __atomic_load_n(&w->st.batches, __ATOMIC_RELAXED);
	out->rows = __atomic_load_n(&w->st.rows, __ATOMIC_RELAXED);
	out->retries = __atomic_load_n(&w->st.retries, __ATOMIC_RELAXED);
	out->errors = __atomic_load_n(&w->st.errors, __ATOMIC_RELAXED);
	out->dead = __atomic_load_n(&w->st.dead, __ATOMIC_RELAXED);
	out->reconnects = __atomic_load_n(&w->st.reconnects, __ATOMIC_RELAXED);
	out->superseded = __atomic_load_n(&w->st.superseded, __ATOMIC_RELAXED);
	out->applied = __atomic_load_n(&w->st.applied, __ATOMIC_RELAXED);
	out->last_batch_us = __atomic_load_n(&w->st.last_batch_us,
	                                     __ATOMIC_RELAXED);
}
