/*
 * tools/shmctl/log.c - shmctl log: the write log's records (--follow
 * tails it), or the dead letters (--dead).
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../close_stdout.h"
#include "internal.h"
#include "shm.h"
#include "shm_log.h"
#include "shmctl.h"

static volatile sig_atomic_t stopping;

/* "uuid" for a message key, "website/object" for an object key. */
static void key_name(int op, const uint8_t *key, size_t klen, char *buf,
                     size_t cap)
{
	shm_uuid u;
	char s[37];

	if (klen < 16) {
		snprintf(buf, cap, "-");
		return;
	}
	memcpy(u.b, key, 16);
	shm_uuid_format(&u, s);
	if (shm_op_is_msg(op) || klen == 16)
		snprintf(buf, cap, "%s", s);
	else
		snprintf(buf, cap, "%s/%.*s", s, (int)(klen - 16),
		         (const char *)key + 16);
}

static void on_signal(int sig)
{
	(void)sig;
	stopping = 1;
}

static void print_rec(FILE *out, const shm_log_rec *r, bool json)
{
	char t[40], key[600];

	shm_time_format(r->time, t);
	key_name(r->op, r->key, r->key_len, key, sizeof key);
	if (!json) {
		fprintf(out, "%" PRIu64 " %s %-11s %s %" PRIu32 "%s\n", r->seq, t,
		       shm_op_name(r->op), key, r->stored_len,
		       (r->flags & SHM_LOG_LZ4) ? " lz4" : "");
		return;
	}
	json_t *o = json_object();
	if (!o)
		return;
	json_object_set_new(o, "seq", json_integer((json_int_t)r->seq));
	json_object_set_new(o, "time", json_string(t));
	json_object_set_new(o, "op", json_string(shm_op_name(r->op)));
	json_object_set_new(o, "key", json_string(key));
	json_object_set_new(o, "size", json_integer(r->stored_len));
	json_object_set_new(o, "raw_size", json_integer(r->payload_len));
	json_object_set_new(o, "lz4", json_boolean(r->flags & SHM_LOG_LZ4));
	char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	if (s)
		fprintf(out, "%s\n", s);
	free(s);
	json_decref(o);
}

/* Prints s with each run of control characters (a letter an older
 * flusher wrote may hold the newline before a PostgreSQL reason's
 * "DETAIL:") as one space: one dead letter, one line. */
static void put_one_line(FILE *f, const char *s)
{
	bool gap = false, any = false;

	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch < 0x20 || ch == 0x7f) {
			gap = true;
			continue;
		}
		if (gap && any)
			putc(' ', f);
		putc(ch, f);
		gap = false;
		any = true;
	}
}

/* The walk's lines go to memory (out, err) and are printed after it: the
 * callbacks run inside its read transaction, which a blocked pipe must not
 * keep open (see CHUNK below). */
typedef struct deadctx {
	bool json;
	uint8_t *buf;
	size_t cap;
	size_t corrupt; /* letters that did not decode, named on err */
	FILE *out, *err;
} deadctx;

/* A letter that does not decode: why names it by its seq ("dead letter 7:
 * bad header ..."); the others are listed still, as log does. */
static int print_bad_dead(uint64_t seq, const char *why, void *user)
{
	deadctx *c = user;

	(void)seq;
	c->corrupt++;
	fprintf(c->err, "%s: %s\n", prog, why);
	return 0;
}

static int print_dead(const shm_dead *d, void *user)
{
	deadctx *c = user;
	shm_log_rec r;
	char t[40], key[600] = "-";
	const char *op = "corrupt";

	shm_time_format(d->time, t);
	if (shm_log_decode(d->raw, d->raw_size, &r, &c->buf, &c->cap) == 0) {
		op = shm_op_name(r.op);
		key_name(r.op, r.key, r.key_len, key, sizeof key);
	}
	if (!c->json) {
		fprintf(c->out, "%" PRIu64 " %s %s %s %s: ", d->seq, t, d->sink,
		        op, key);
		put_one_line(c->out, d->reason);
		putc('\n', c->out);
		return 0;
	}
	json_t *o;

	o = json_object();
	if (o) {
		json_object_set_new(o, "seq", json_integer((json_int_t)d->seq));
		json_object_set_new(o, "time", json_string(t));
		json_object_set_new(o, "sink", json_string(d->sink));
		json_object_set_new(o, "op", json_string(op));
		json_object_set_new(o, "key", json_string(key));
		json_object_set_new(o, "reason", json_string(d->reason));
		char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
		if (s)
			fprintf(c->out, "%s\n", s);
		free(s);
		json_decref(o);
	}
	return 0;
}

/* Says that the records from..to were trimmed (applied by every sink and
 * deleted) before log could show them. */
static void say_trimmed(uint64_t from, uint64_t to)
{
	if (from == to)
		fprintf(stderr, "%s: log record %" PRIu64 " was trimmed before "
		        "it could be shown\n", prog, from);
	else
		fprintf(stderr, "%s: log records %" PRIu64 "..%" PRIu64 " were "
		        "trimmed before they could be shown\n", prog, from, to);
}

/* Whether stdout's reader has gone: the write end of a pipe whose read end
 * is closed polls POLLERR (a socket's, POLLHUP); a file never does. */
static bool output_gone(void)
{
	struct pollfd p = {.fd = STDOUT_FILENO, .events = 0};

	return poll(&p, 1, 0) == 1 && (p.revents & (POLLERR | POLLHUP));
}

/* One pass from *next: up to CHUNK records read in one transaction into
 * memory, then printed; *got of them. Records trimmed before they could be
 * shown (a gap after *next) are said on stderr. */
static int log_pass(shm_env *env, bool json, uint64_t *next, size_t *got,
                    size_t *corrupt)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&buf, &len);
	shm_log_iter *it;
	shm_log_rec r;
	int rc, ex = EX_OK;

	if (!mem)
		return fail(errno);
	if ((rc = shm_log_iter_open(env, *next, &it))) {
		fclose(mem);
		free(buf);
		return fail(rc);
	}
	while (*got < CHUNK && !stopping) {
		rc = shm_log_iter_next(it, &r);
		if (rc == SHM_ENOTFOUND)
			break;
		if (rc && rc != SHM_ECORRUPT) {
			ex = fail(rc);
			break;
		}
		if (*next && r.seq > *next && *got == 0)
			say_trimmed(*next, r.seq - 1);
		if (rc == SHM_ECORRUPT) {
			/* the text names the record's seq (shm_log_iter_next) */
			fprintf(stderr, "%s: %s\n", prog, shm_errmsg());
			++*corrupt;
		} else {
			print_rec(mem, &r, json);
		}
		*next = r.seq + 1;
		++*got;
	}
	shm_log_iter_close(it); /* before printing: see CHUNK */
	fclose(mem);
	if (len && fwrite(buf, 1, len, stdout) != len && ex == EX_OK)
		ex = tool_write_failed(prog, errno);
	free(buf);
	return ex;
}

int cmd_log(int argc, char **argv)
{
	optdef opts[] = {{"from", true, NULL}, {"follow", false, NULL},
	                 {"json", false, NULL}, {"dead", false, NULL},
	                 {NULL, false, NULL}};
	char **pos;
	int npos, ex, rc;
	uint64_t next = 0;
	size_t corrupt = 0;
	shm_env *env;

	if ((ex = scan(argc, argv, opts, &pos, &npos)))
		return ex;
	if ((ex = arity("log [--from SEQ] [--follow] [--json] [--dead]", pos,
	                npos, 0, 0)))
		return ex;
	if ((ex = opt_u64("from", optv(opts, "from"), 0, UINT64_MAX, &next)))
		return ex;
	bool json = optv(opts, "json"), follow = optv(opts, "follow");
	if (optv(opts, "dead") && (follow || optv(opts, "from")))
		return usage_err("--dead takes no --from or --follow");
	if ((ex = open_env(false, &env)))
		return ex;
	if (optv(opts, "dead")) {
		deadctx c = {.json = json};
		char *out = NULL, *err = NULL;
		size_t out_len = 0, err_len = 0;
		c.out = open_memstream(&out, &out_len);
		c.err = open_memstream(&err, &err_len);
		rc = c.out && c.err
		             ? shm_dead_walk(env, print_dead, print_bad_dead, &c)
		             : -1;
		if (c.out)
			fclose(c.out);
		if (c.err)
			fclose(c.err);
		fwrite(out, 1, out_len, stdout);
		fwrite(err, 1, err_len, stderr);
		free(out);
		free(err);
		free(c.buf);
		if (rc == -1)
			fprintf(stderr, "%s: out of memory\n", prog);
		ex = rc == -1 ? EX_INTERNAL : rc ? fail(rc)
		     : c.corrupt ? EX_NOTFOUND : EX_OK;
		shm_env_close(env);
		return ex;
	}
	if (follow) {
		struct sigaction sa = {.sa_handler = on_signal};
		sigaction(SIGINT, &sa, NULL);
		sigaction(SIGTERM, &sa, NULL);
	}
	ex = EX_OK;
	bool gone = false;
	while (!stopping && ex == EX_OK) {
		size_t got = 0;
		uint64_t ns = 0; /* every seq below it was written before the pass */
		shm_meta_get(env, "next_seq", &ns);
		ex = log_pass(env, json, &next, &got, &corrupt);
		if (ex == EX_OK && fflush(stdout) != 0)
			ex = tool_write_failed(prog, errno);
		if (ex != EX_OK || stopping)
			break;
		if (got == CHUNK)
			continue; /* more is waiting */
		/* Trimming deletes the oldest records: a pass that saw none of
		 * the seqs from next up to ns saw them all deleted. */
		if (got == 0 && ns > next) {
			if (next)
				say_trimmed(next, ns - 1);
			else /* no --from: all of it; an empty output says why */
				fprintf(stderr, "%s: the log is empty: records "
				        "1..%" PRIu64 " were applied by every sink "
				        "and trimmed (shmctl stat: flushed)\n", prog,
				        ns - 1);
			next = ns;
		}
		if (!follow)
			break;
		rc = shm_log_wait(env, next, 200);
		if (rc && rc != SHM_ETIMEDOUT)
			ex = fail(rc);
		else if ((gone = output_gone()))
			break; /* idle, nobody reads: as tail -f, end */
	}
	shm_env_close(env);
	if (gone)
		raise(SIGPIPE); /* what the next write would get */
	if (ex == EX_OK && corrupt)
		ex = EX_NOTFOUND;
	return ex;
}
