/*
 * tools/shmctl/msg.c - shmctl's message commands: init (which creates the
 * environment, as import does), import, get, room, edit, delete, react.
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "codec.h" /* shm__msg_validate: import checks before creating */
#include "internal.h"
#include "shm.h"
#include "shmctl.h"

/* Digits after one '-' at most: strtoll alone also takes spaces and '+'. */
static bool parse_i32(const char *s, int32_t *v)
{
	char *end;

	if (!s || s[*s == '-'] < '0' || s[*s == '-'] > '9')
		return false;
	errno = 0;
	long long x = strtoll(s, &end, 10);
	if (errno || *end || x < INT32_MIN || x > INT32_MAX)
		return false;
	*v = (int32_t)x;
	return true;
}

static int print_msg(const shm_msg *m)
{
	char *js;
	size_t len;
	int rc = shm_msg_to_json(m, &js, &len);

	if (rc)
		return fail(rc);
	fwrite(js, 1, len, stdout);
	putchar('\n');
	free(js);
	return EX_OK;
}

/* The messages an import read, each with its line number. */
typedef struct batch {
	shm_msg *msgs;   /* copies of *owned[i], as put_many takes them */
	shm_msg **owned; /* shm_msg_from_json's blocks: the strings live there */
	size_t *lines;
	size_t n, cap;
} batch;

static void batch_free(batch *b)
{
	for (size_t i = 0; i < b->n; i++)
		free(b->owned[i]);
	free(b->msgs);
	free(b->owned);
	free(b->lines);
}

/* Takes m (freed on failure): 0, or ENOMEM. */
static int batch_add(batch *b, shm_msg *m, size_t line)
{
	if (b->n == b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 1024;
		shm_msg *x = realloc(b->msgs, cap * sizeof *x);
		shm_msg **y = realloc(b->owned, cap * sizeof *y);
		size_t *z = realloc(b->lines, cap * sizeof *z);
		if (x)
			b->msgs = x;
		if (y)
			b->owned = y;
		if (z)
			b->lines = z;
		if (!x || !y || !z) {
			free(m);
			return ENOMEM;
		}
		b->cap = cap;
	}
	b->msgs[b->n] = *m;
	b->owned[b->n] = m;
	b->lines[b->n++] = line;
	return 0;
}

/* Checks a parsed message as put will, before import creates anything:
 * the content limit, then put's own checks (shm__msg_validate), both with
 * the options shmctl opens with. False, the reason said as "LINE: reason",
 * if put would refuse it. */
static bool check_for_put(size_t line, const shm_msg *m)
{
	static shm_options opt;
	uint32_t max;

	if (!opt.max_content)
		shm_options_init(&opt);
	max = opt.max_content;
	if (m->content_len > max) {
		fprintf(stderr,
		        "%zu: field 'content': %" PRIu32 " bytes, at most %" PRIu32
		        " allowed\n",
		        line, m->content_len, max);
		return false;
	}
	if (shm__msg_validate(&opt, m) != 0) {
		fprintf(stderr, "%zu: %s\n", line, shm_errmsg());
		return false;
	}
	return true;
}

/* Says what a line that is no message is, if another command of shmctl
 * wrote it: a static of dump (website, object), an entry of ls --json
 * (kind). False for any other line. */
static bool say_foreign(size_t line, const char *s, size_t len)
{
	json_t *o = json_loadb(s, len, 0, NULL);
	json_t *kind = json_object_get(o, "kind"); /* NULL if o is not one */
	bool known = true;
	char shown[SHM__SHOWN_MAX];

	if (json_is_string(kind)) /* input: shown printably */
		fprintf(stderr, "%zu: a '%s' entry from 'shmctl ls --json'",
		        line, shm__shown(json_string_value(kind),
		                         json_string_length(kind), shown));
	else if (json_object_get(o, "website") && json_object_get(o, "object") &&
	         !json_object_get(o, "room_id"))
		fprintf(stderr, "%zu: a static from 'shmctl dump'", line);
	else
		known = false;
	if (known)
		fprintf(stderr, ", not a message: import takes messages "
		        "('shmctl dump --kind msg')\n");
	json_decref(o);
	return known;
}

/* The UTF-8 byte order mark, which some editors write first. */
#define BOM "\xef\xbb\xbf"

/* Reads f's messages into b: each bad line is said on stderr as "LINE:
 * reason" and counted in *bad. EX_OK, or the exit code of a failure to
 * read. */
static int read_msgs(FILE *f, const char *name, batch *b, size_t *bad)
{
	char *line = NULL, err[512];
	size_t cap = 0, lineno = 0;
	ssize_t len;
	int ex = EX_OK;

	while ((len = getline(&line, &cap, f)) >= 0) {
		const char *s = line;
		shm_msg *m;
		int rc;

		lineno++;
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			len--;
		line[len] = '\0';
		if (len >= 3 && memcmp(s, BOM, 3) == 0) {
			if (lineno > 1) {
				fprintf(stderr, "%zu: UTF-8 byte order mark at the "
				        "start of the line (skipped at the start "
				        "of the input only)\n", lineno);
				++*bad;
				continue;
			}
			s += 3; /* an editor's signature, not data */
			len -= 3;
		}
		if ((ssize_t)strspn(s, " \t") >= len)
			continue; /* blank line */
		rc = shm_msg_from_json(s, (size_t)len, &m, err, sizeof err);
		if (rc == ENOMEM) {
			ex = fail(rc);
			break;
		}
		if (rc) {
			if (rc != SHM_EJSON || !say_foreign(lineno, s, (size_t)len))
				fprintf(stderr, "%zu: %s\n", lineno, err);
			++*bad;
			continue;
		}
		if (!check_for_put(lineno, m)) {
			free(m);
			++*bad;
			continue;
		}
		if (batch_add(b, m, lineno)) {
			fprintf(stderr, "%s: out of memory\n", prog);
			ex = EX_INTERNAL;
			break;
		}
	}
	if (ex == EX_OK && ferror(f)) {
		int e = errno;
		char shown[SHM__SHOWN_LONG_MAX];
		fprintf(stderr, "%s: %s: %s\n", prog,
		        shm__shown_long(name, strlen(name), shown), strerror(e));
		ex = EX_INTERNAL;
	}
	free(line);
	return ex;
}

/* A message's id, its line, and the first line with that id. */
typedef struct idline {
	shm_uuid id;
	size_t line, first;
} idline;

static int cmp_id_line(const void *a, const void *b)
{
	const idline *x = a, *y = b;
	int c = memcmp(x->id.b, y->id.b, 16);

	return c ? c : (x->line > y->line) - (x->line < y->line);
}

static int cmp_line(const void *a, const void *b)
{
	const idline *x = a, *y = b;

	return (x->line > y->line) - (x->line < y->line);
}

/* Says each line whose id an earlier line has, in line order ("LINE: id X:
 * already on line N"): which copy should win is not import's to guess.
 * Their number, or SIZE_MAX out of memory. */
static size_t say_repeats(const batch *b)
{
	idline *v = malloc((b->n + 1) * sizeof *v); /* + 1: never malloc(0) */
	idline *rep = malloc((b->n + 1) * sizeof *rep);
	size_t k = 0, n = 0;
	char id[37];

	if (!v || !rep) {
		free(v);
		free(rep);
		return SIZE_MAX;
	}
	for (size_t i = 0; i < b->n; i++)
		if (!shm_uuid_is_nil(&b->msgs[i].id)) /* nil: a new id each */
			v[k++] = (idline){b->msgs[i].id, b->lines[i], 0};
	qsort(v, k, sizeof *v, cmp_id_line);
	for (size_t j = 1, first = 0; j < k; j++) {
		if (memcmp(v[j].id.b, v[j - 1].id.b, 16) != 0) {
			first = j;
			continue;
		}
		rep[n] = v[j];
		rep[n++].first = v[first].line;
	}
	qsort(rep, n, sizeof *rep, cmp_line);
	for (size_t j = 0; j < n; j++) {
		shm_uuid_format(&rep[j].id, id);
		fprintf(stderr, "%zu: id %s: already on line %zu\n", rep[j].line,
		        id, rep[j].first);
	}
	free(v);
	free(rep);
	return n;
}

/* What the directory lacked before import or init opened it: if the
 * import creates the environment and then fails, it removes what it made,
 * and nothing that was there before; init says what it made. */
static const char *const env_files[] = {SHM_ENV_FILES};
#define N_ENV_FILES (sizeof env_files / sizeof *env_files)
typedef struct absent {
	bool dir, env;            /* no directory; no data.mdb in it */
	bool file[N_ENV_FILES];   /* no such file in it */
} absent;

static bool is_absent(const char *path)
{
	struct stat st;

	return lstat(path, &st) != 0 && errno == ENOENT;
}

static void note_absent(absent *a)
{
	char path[4200];

	a->dir = is_absent(env_dir);
	for (size_t i = 0; i < N_ENV_FILES; i++) {
		snprintf(path, sizeof path, "%s/%s", env_dir, env_files[i]);
		a->file[i] = is_absent(path);
	}
	a->env = a->file[0]; /* data.mdb */
}

/* Removes path (rmdir for a directory): counted in *removed, or said on
 * stderr and counted in *failed; one already gone is neither. */
static void remove_path(const char *path, bool dir, size_t *removed,
                        size_t *failed)
{
	char shown[SHM__SHOWN_LONG_MAX];

	if ((dir ? rmdir(path) : unlink(path)) == 0) {
		++*removed;
	} else if (errno != ENOENT) {
		int e = errno;
		fprintf(stderr, "%s: remove %s: %s\n", prog,
		        shm__shown_long(path, strlen(path), shown), strerror(e));
		++*failed;
	}
}

/* After a failed import, once its handle is closed: if it created the
 * environment, removes the files it made, and the directory if it made
 * that too (left if anything else is in it now); an environment that was
 * there before is left alone, its other files too (another process may
 * have them open). */
static void remove_made(const absent *a)
{
	char path[4200], shown[SHM__SHOWN_LONG_MAX];
	size_t removed = 0, failed = 0;

	if (!a->env)
		return;
	for (size_t i = 0; i < N_ENV_FILES; i++) {
		snprintf(path, sizeof path, "%s/%s", env_dir, env_files[i]);
		if (a->file[i])
			remove_path(path, false, &removed, &failed);
	}
	if (a->dir)
		remove_path(env_dir, true, &removed, &failed);
	if (removed && !failed)
		fprintf(stderr, "%s: the environment this import created in %s "
		        "is removed\n", prog,
		        shm__shown_long(env_dir, strlen(env_dir), shown));
}

int cmd_init(int argc, char **argv)
{
	optdef opts[] = {{NULL, false, NULL}};
	char **pos, path[4200], made[64] = "";
	int npos, ex;
	shm_env *env;
	absent a;

	if ((ex = scan(argc, argv, opts, &pos, &npos)))
		return ex;
	if ((ex = arity("init", pos, npos, 0, 0)))
		return ex;
	/* what was there, for the message: a data.mdb with pages (an empty
	 * one is a creation cut short, which the open completes), and the
	 * other files (a copy of data.mdb alone has none of them) */
	struct stat st;
	snprintf(path, sizeof path, "%s/data.mdb", env_dir);
	bool existed = stat(path, &st) == 0 && st.st_size > 0;
	note_absent(&a);
	if ((ex = open_env_as(true, true, &env)))
		return ex;
	shm_env_close(env);
	for (size_t i = 1; i < N_ENV_FILES; i++) { /* [0]: data.mdb */
		snprintf(path, sizeof path, "%s/%s", env_dir, env_files[i]);
		if (a.file[i] && !is_absent(path))
			snprintf(made + strlen(made), sizeof made - strlen(made),
			         "%s%s", *made ? ", " : "", env_files[i]);
	}
	/* the directory as every other message shows it: printable */
	char shown[SHM__SHOWN_LONG_MAX];
	const char *dir = shm__shown_long(env_dir, strlen(env_dir), shown);
	if (!existed)
		printf("%s: shm environment created\n", dir);
	else if (*made)
		printf("%s: an shm environment already; made what it lacked: "
		       "%s\n", dir, made);
	else
		printf("%s: an shm environment already, left as it was\n",
		       dir);
	return EX_OK;
}

int cmd_import(int argc, char **argv)
{
	optdef opts[] = {{NULL, false, NULL}};
	char **pos;
	int npos, ex, rc;
	FILE *f = stdin;
	const char *name = "stdin";
	size_t bad = 0, bi = SIZE_MAX;
	batch b = {0};
	absent before;
	shm_env *env;

	if ((ex = scan(argc, argv, opts, &pos, &npos)))
		return ex;
	if ((ex = arity("import [FILE|-]", pos, npos, 0, 1)))
		return ex;
	if (npos == 1 && strcmp(pos[0], "-") != 0) {
		name = pos[0];
		if (!(f = fopen(name, "r"))) {
			int e = errno;
			char shown[SHM__SHOWN_LONG_MAX];
			fprintf(stderr, "%s: %s: %s\n", prog,
			        shm__shown_long(name, strlen(name), shown),
			        strerror(e));
			return e == ENOENT ? EX_NOTFOUND : EX_INTERNAL;
		}
	}
	ex = read_msgs(f, name, &b, &bad);
	if (f != stdin)
		fclose(f);
	size_t rep = ex == EX_OK ? say_repeats(&b) : 0;
	if (rep == SIZE_MAX) {
		fprintf(stderr, "%s: out of memory\n", prog);
		ex = EX_INTERNAL;
	} else {
		bad += rep;
	}
	if (ex == EX_OK && bad) {
		fprintf(stderr, "%s: %zu bad line%s, nothing imported\n", prog, bad,
		        bad == 1 ? "" : "s");
		ex = EX_DATA;
	}
	/* Only a valid input creates the environment (as init does), and
	 * one that fails after that leaves none. */
	if (ex != EX_OK)
		goto out;
	note_absent(&before);
	if ((ex = open_env_as(true, true, &env))) {
		remove_made(&before);
		goto out;
	}
	rc = b.n ? shm_msg_put_many(env, b.msgs, b.n, &bi) : 0;
	if (rc) {
		ex = exit_for(rc);
		if (ex == EX_DATA && bi < b.n)
			fprintf(stderr, "%zu: %s\n", b.lines[bi], shm_errmsg());
		else
			fprintf(stderr, "%s: %s\n", prog, shm_errmsg());
		fprintf(stderr, "%s: nothing imported\n", prog);
	} else {
		printf("imported %zu message%s\n", b.n, b.n == 1 ? "" : "s");
	}
	shm_env_close(env);
	if (rc)
		remove_made(&before);
out:
	batch_free(&b);
	return ex;
}

int cmd_get(int argc, char **argv)
{
	optdef opts[] = {{NULL, false, NULL}};
	char **pos;
	int npos, ex, rc;
	shm_uuid id;
	shm_env *env;
	shm_msg *m;

	if ((ex = scan(argc, argv, opts, &pos, &npos)))
		return ex;
	if ((ex = arity("get UUID", pos, npos, 1, 1)))
		return ex;
	if ((ex = parse_uuid_arg(pos[0], "get", &id)) ||
	    (ex = open_env(false, &env)))
		return ex;
	rc = shm_msg_get(env, &id, &m);
	if (rc == SHM_ENOTFOUND) {
		/* L1 is a cache: one who finds a message gone from it (expired
		 * after l1_ttl_s, evicted) is told where else it may be */
		fprintf(stderr, "%s: message %s not in L1 (shmctl get reads L1 "
		        "alone: a flushed message leaves it after l1_ttl_s or "
		        "when evicted; Redis and PostgreSQL may hold it)\n",
		        prog, pos[0]);
		ex = EX_NOTFOUND;
	} else if (rc) {
		ex = fail(rc);
	} else {
		ex = print_msg(m);
		shm_msg_free(m);
	}
	shm_env_close(env);
	return ex;
}

/* After a full page (there may be more), the options of the next one on
 * stderr: stdout stays JSON lines of messages, as import reads them. */
static void say_next_page(const shm_msg *last)
{
	char t[40], id[37];

	shm_time_format(last->created_at, t);
	shm_uuid_format(&last->id, id);
	fprintf(stderr, "%s: next page: --before %s --before-id %s\n", prog, t,
	        id);
}

int cmd_room(int argc, char **argv)
{
	optdef opts[] = {{"before", true, NULL}, {"before-id", true, NULL},
	                 {"limit", true, NULL}, {NULL, false, NULL}};
	char **pos;
	int npos, ex, rc;
	int64_t before = 0;
	uint64_t limit = 50;
	shm_uuid bid, *before_id = NULL;
	shm_env *env;
	shm_msg **msgs;
	size_t n;

	if ((ex = scan(argc, argv, opts, &pos, &npos)))
		return ex;
	if ((ex = arity("room ROOM [--before RFC3339 [--before-id UUID]] "
	                "[--limit N]", pos, npos, 1, 1)))
		return ex;
	if ((ex = opt_u64("limit", optv(opts, "limit"), 1, SHM_MAX_PAGE,
	                  &limit)))
		return ex;
	if (optv(opts, "before-id") && !optv(opts, "before"))
		return usage_err("--before-id needs --before: a page's bound is "
		                 "the created_at and id of one message (the "
		                 "last of the page before)");
	if (optv(opts, "before") &&
	    (rc = shm_time_parse(optv(opts, "before"), &before)))
		return fail(rc);
	if (optv(opts, "before-id")) {
		if ((ex = parse_uuid_arg(optv(opts, "before-id"), "--before-id",
		                         &bid)))
			return ex;
		before_id = &bid;
	}
	if ((ex = open_env(false, &env)))
		return ex;
	if (optv(opts, "before") && before <= 0) { /* 0 is "no bound" below */
		shm_env_close(env);
		return EX_OK; /* nothing is older than 1970 */
	}
	rc = shm_room_page_before(env, pos[0], before, before_id,
	                          (uint32_t)limit, &msgs, &n);
	if (rc) {
		ex = fail(rc);
	} else {
		for (size_t i = 0; i < n && ex == EX_OK; i++)
			ex = print_msg(msgs[i]);
		if (ex == EX_OK && n == limit)
			say_next_page(msgs[n - 1]);
		shm_msgs_free(msgs, n);
	}
	shm_env_close(env);
	return ex;
}

int cmd_edit(int argc, char **argv)
{
	optdef opts[] = {{NULL, false, NULL}};
	char **pos;
	int npos, ex, rc;
	shm_uuid id;
	shm_env *env;

	if ((ex = scan(argc, argv, opts, &pos, &npos)))
		return ex;
	if ((ex = arity("edit UUID CONTENT", pos, npos, 2, 2)))
		return ex;
	if ((ex = parse_uuid_arg(pos[0], "edit", &id)) ||
	    (ex = open_env(true, &env)))
		return ex;
	rc = shm_msg_edit(env, &id, pos[1], strlen(pos[1]));
	ex = rc ? fail(rc) : EX_OK;
	shm_env_close(env);
	return ex;
}

int cmd_delete(int argc, char **argv)
{
	optdef opts[] = {{NULL, false, NULL}};
	char **pos;
	int npos, ex, rc;
	shm_uuid id;
	shm_env *env;

	if ((ex = scan(argc, argv, opts, &pos, &npos)))
		return ex;
	if ((ex = arity("delete UUID", pos, npos, 1, 1)))
		return ex;
	if ((ex = parse_uuid_arg(pos[0], "delete", &id)) ||
	    (ex = open_env(true, &env)))
		return ex;
	rc = shm_msg_delete(env, &id);
	ex = rc ? fail(rc) : EX_OK;
	shm_env_close(env);
	return ex;
}

int cmd_react(int argc, char **argv)
{
	optdef opts[] = {{"remove", false, NULL}, {NULL, false, NULL}};
	char **pos;
	int npos, ex, rc;
	shm_uuid id;
	int32_t user;
	shm_env *env;
	char b[SHM__SHOWN_MAX];

	if ((ex = scan(argc, argv, opts, &pos, &npos)))
		return ex;
	if ((ex = arity("react UUID USER_ID EMOJI [--remove]", pos, npos, 3,
	                3)))
		return ex;
	if (!parse_i32(pos[1], &user)) {
		fprintf(stderr, "%s: react: USER_ID '%s': must be an integer in "
		        "%" PRId32 "..%" PRId32 "\n", prog,
		        shm__shown_str(pos[1], b), INT32_MIN, INT32_MAX);
		return EX_DATA;
	}
	if ((ex = parse_uuid_arg(pos[0], "react", &id)) ||
	    (ex = open_env(true, &env)))
		return ex;
	rc = shm_msg_react(env, &id, user, pos[2], !optv(opts, "remove"));
	ex = rc ? fail(rc) : EX_OK;
	shm_env_close(env);
	return ex;
}
