/*
 * tools/shmctl.c - inspect and operate an shm environment from the shell.
 *
 * Like mdb_stat and varnishstat/varnishlog: the environment is opened
 * read-only unless the command writes; output is for humans by default and
 * JSON (one object per line) with --json; exit codes are part of the
 * interface (see usage()). Every subcommand is one cmd_* function that
 * returns an exit code; errors go to stderr as "shmctl: <what failed>".
 *
 * It includes internal.h for the commands that walk databases (dump, ls,
 * readers): those only read, dump and ls a chunk per read transaction.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "close_stdout.h"
#include "codec.h" /* shm__msg_validate: import checks before creating */
#include "internal.h"
#include "shm.h"
#include "shm_log.h"

enum {
	EX_OK = 0,
	EX_NOTFOUND = 1, /* not found, or problems found (verify) */
	EX_USAGE_ = 2,
	EX_DATA = 65,    /* bad input data */
	EX_INTERNAL = 70
};

static const char *prog = "shmctl";
static const char *env_dir;
static volatile sig_atomic_t stopping;

static const char usage_text[] =
"usage: shmctl [-e DIR] COMMAND [ARGS]\n"
"\n"
"Inspects and operates the shm environment in DIR (default: $SHM_ENV).\n"
"Opens it read-only unless the command writes (marked *).\n"
"\n"
"Creating the environment\n"
"  init                             * creates the environment if missing (the\n"
"                                     other commands, import aside, need one)\n"
"Messages\n"
"  import [FILE|-]                  * messages as JSON lines, as get, room\n"
"                                     and dump --kind msg write them; all\n"
"                                     or nothing: bad lines are reported as\n"
"                                     'LINE: reason' and nothing is written;\n"
"                                     one transaction (more than L1's limits\n"
"                                     hold fails with 65: split the file)\n"
"  get UUID                           the message as one JSON object\n"
"  room ROOM [--before RFC3339] [--limit N]\n"
"                                     a room page, JSON lines, newest first\n"
"                                     (limit 1..10000, default 50)\n"
"  edit UUID CONTENT                * new content (edited, edit_count + 1)\n"
"  delete UUID                      * soft delete (type Delete)\n"
"  react UUID USER_ID EMOJI [--remove]\n"
"                                   * add (or remove) a reaction\n"
"Statics and the object graph (OBJECT is TYPE/ID, WEBSITE a UUID)\n"
"  static get WEBSITE OBJECT [--sha1|--sha256] [--sha-only]\n"
"                                     content to stdout (never generates);\n"
"                                     --sha-only prints the SHA (SHA-1 git\n"
"                                     blob by default) instead\n"
"  static put WEBSITE OBJECT [FILE|-] [--sha1|--sha256]\n"
"                                   * stores content, prints its SHA\n"
"  deps set WEBSITE OBJECT [--direct] [DEP ...]\n"
"                                   * replaces OBJECT's direct dependencies\n"
"                                     (a Communication::Website/ID OBJECT\n"
"                                     is always direct: give --direct)\n"
"  deps show WEBSITE OBJECT [--recursive|--referrers]\n"
"                                     direct dependencies, the recursive\n"
"                                     walk, or the references (who embeds it)\n"
"  touch WEBSITE OBJECT             * save: bust it and its references, mark\n"
"  destroy WEBSITE OBJECT           * as touch, then drop its edges\n"
"  bust WEBSITE OBJECT              * bust its static alone\n"
"Inspection\n"
"  stat [--json]                      counters and state, like varnishstat -1\n"
"  ls [--kind msg|static|graph|mark] [--json]\n"
"                                     one line per entry (default: every kind)\n"
"  log [--from SEQ] [--follow] [--json] [--dead]\n"
"                                     one line per log record (seq, time, op,\n"
"                                     key, size); --follow tails it live;\n"
"                                     --dead lists the dead letters instead\n"
"  dead drop SEQ [SEQ ...]          * drops those dead letters (records a\n"
"                                     sink set aside), all or nothing: once\n"
"                                     their cause is fixed and their data\n"
"                                     written again (or unwanted)\n"
"  dump [--kind msg|static|all]       every entry as JSON lines (default all);\n"
"                                     'dump --kind msg | shmctl -e OTHER\n"
"                                     import' copies messages to another\n"
"                                     environment\n"
"  verify                             checks checksums (log records, content\n"
"                                     hashes, statics' SHAs), indexes, log vs\n"
"                                     data, dead letters, object ids (none in\n"
"                                     upper case, as an older libshm stored)\n"
"  upgrade                          * rewrites what an older libshm stored\n"
"                                     that libshm no longer reads (upper-case\n"
"                                     UUID ids, which verify names; websites\n"
"                                     stored indirect), in one transaction\n"
"  readers [--clear-stale] [--json]\n"
"                                     LMDB reader slots (pid, thread, txnid\n"
"                                     of the snapshot held, its age in\n"
"                                     transactions committed since, dead:\n"
"                                     yes for a dead process's slot, which\n"
"                                     --clear-stale frees)\n"
"\n"
"Options, before COMMAND: -e DIR (or --env DIR, -eDIR) the environment\n"
"directory; -h, --help; -V, --version\n"
"\n"
"Exit status: 0 ok; 1 not found (a missing FILE too), or problems found\n"
"(verify, log); 2 usage error; 65 bad input data (malformed JSON, UUID,\n"
"object, timestamp, text; incompatible environment version, not an shm\n"
"environment, data file cut short); 70 internal or system error\n"
"(including: L1 full of unflushed work, or the map behind a reader's old\n"
"snapshot: see readers; LMDB errors; a FILE that cannot be read, such as a\n"
"directory; output that could not all be written).\n";

/* ------------------------------------------------------------ helpers */

__attribute__((format(printf, 1, 2))) static int usage_err(const char *fmt,
                                                          ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n(see %s --help)\n", prog);
	return EX_USAGE_;
}

/* Exit code for a library return code. */
static int exit_for(int rc)
{
	switch (rc) {
	case 0:
		return EX_OK;
	case SHM_ENOTFOUND:
	case ENOENT:
	case ENOTDIR: /* -e FILE: no environment there */
		return EX_NOTFOUND;
	case SHM_EINVAL:
	case SHM_EUUID:
	case SHM_EUTF8:
	case SHM_ENUL:
	case SHM_ETOOBIG:
	case SHM_ETYPE:
	case SHM_EJSON:
	case SHM_ETIME:
	case SHM_EOBJECT:
	case SHM_EVERSION:
	case SHM_ECORRUPT:
	case SHM_EDELETED: /* edit or react: the message is deleted */
		return EX_DATA;
	default:
		return EX_INTERNAL;
	}
}

/* Reports the thread's last library error, returns its exit code. */
static int fail(int rc)
{
	fprintf(stderr, "%s: %s\n", prog, shm_errmsg());
	return exit_for(rc);
}

/* Commands open an existing environment (a mistyped -e must not create
 * one); init and import create it when missing (dump | import into a new
 * DIR copies messages). Always at the environment's own map size
 * (shm_options_init's map_size 0): stat shows it, and a write never stores
 * a larger one, which LMDB would do at shmctl's first commit (a new
 * environment gets libshm's default, 1 GiB). */
static int open_env_as(bool write, bool create, shm_env **env)
{
	shm_options o;
	int rc;

	shm_options_init(&o);
	o.read_only = !write;
	o.must_exist = !create;
	if ((rc = shm_env_open(env_dir, &o, env)))
		return fail(rc);
	return EX_OK;
}

static int open_env(bool write, shm_env **env)
{
	return open_env_as(write, false, env);
}

static int parse_uuid_arg(const char *s, const char *what, shm_uuid *u)
{
	if (shm_uuid_parse(s, u) != 0) {
		/* libshm's text: the value escaped, the form expected */
		fprintf(stderr, "%s: %s: %s\n", prog, what, shm_errmsg());
		return EX_DATA;
	}
	return EX_OK;
}

/* Digits only: strtoull alone also takes spaces, '+' and '-'. */
static bool parse_u64(const char *s, uint64_t *v)
{
	char *end;

	if (!s || *s < '0' || *s > '9')
		return false;
	errno = 0;
	unsigned long long x = strtoull(s, &end, 10);
	if (errno || *end)
		return false;
	*v = x;
	return true;
}

/* The value of a numeric option in lo..hi, if given (*v untouched else):
 * EX_OK, or a usage error naming the option and its range. */
static int opt_u64(const char *name, const char *s, uint64_t lo, uint64_t hi,
                   uint64_t *v)
{
	char b[SHM__SHOWN_MAX];
	uint64_t x;

	if (!s)
		return EX_OK;
	if (!parse_u64(s, &x) || x < lo || x > hi)
		return usage_err("--%s '%s': must be an integer in %" PRIu64
		                 "..%" PRIu64, name, shm__shown_str(s, b), lo, hi);
	*v = x;
	return EX_OK;
}

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

/* Reads all of f into a malloc'd buffer: 0 and *out, *len; an errno value
 * and *out NULL else. */
static int read_all(FILE *f, char **out, size_t *len)
{
	size_t cap = 65536, n = 0;
	char *buf = malloc(cap);

	*out = NULL; /* until it is all read */
	*len = 0;
	if (!buf)
		return ENOMEM;
	errno = 0;
	for (;;) {
		if (n == cap) {
			char *b = realloc(buf, cap *= 2);
			if (!b) {
				free(buf);
				return ENOMEM;
			}
			buf = b;
		}
		size_t r = fread(buf + n, 1, cap - n, f);
		n += r;
		if (r == 0)
			break;
	}
	if (ferror(f)) {
		int e = errno ? errno : EIO; /* EISDIR for a directory */
		free(buf);
		return e;
	}
	*out = buf;
	*len = n;
	return 0;
}

/* Simple argument scanner: options (--name [value]) anywhere after the
 * command word, "--" ends them; the rest are positional. An option given
 * twice is a usage error: which of its values was meant? Arguments quoted
 * in an error text are shown printably (text.h), as everywhere in shmctl. */
typedef struct optdef {
	const char *name;
	bool has_arg;
	const char *value; /* set when seen; "" for flags */
} optdef;

static int scan(int argc, char **argv, optdef *opts, char ***pos, int *npos)
{
	static char *posv[256];
	char b[SHM__SHOWN_MAX];
	bool dashdash = false;

	*npos = 0;
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		if (!dashdash && strcmp(a, "--") == 0) {
			dashdash = true;
			continue;
		}
		if (!dashdash && a[0] == '-' && a[1] == '-') {
			optdef *o = opts;
			while (o && o->name && strcmp(o->name, a + 2) != 0)
				o++;
			if (!o || !o->name)
				return usage_err("unknown option '%s'",
				                 shm__shown_str(a, b));
			if (o->value)
				return usage_err("option '%s' given twice", a);
			if (o->has_arg) {
				if (i + 1 >= argc)
					return usage_err("option '%s' needs a value",
					                 a);
				o->value = argv[++i];
			} else {
				o->value = "";
			}
			continue;
		}
		if (*npos >= (int)(sizeof posv / sizeof *posv))
			return usage_err("too many arguments");
		posv[(*npos)++] = argv[i];
	}
	*pos = posv;
	return EX_OK;
}

static const char *optv(const optdef *opts, const char *name)
{
	for (; opts->name; opts++)
		if (strcmp(opts->name, name) == 0)
			return opts->value;
	return NULL;
}

/* EX_OK when min <= npos <= max (max < 0: no bound), else a usage error
 * naming what is wrong, then use, the command's synopsis ("react UUID
 * USER_ID EMOJI [--remove]"): the first argument too many, or the first
 * one missing, as use names it (its words in capitals, outside brackets). */
static int arity(const char *use, char **pos, int npos, int min, int max)
{
	char b[SHM__SHOWN_MAX];
	int depth = 0, k = 0;

	if (max >= 0 && npos > max)
		return usage_err("unexpected argument '%s'; usage: shmctl %s",
		                 shm__shown_str(pos[max], b), use);
	if (npos >= min)
		return EX_OK;
	for (const char *p = use; *p; p += strspn(p, " ")) {
		int n = (int)strcspn(p, " ");
		if (!depth && *p >= 'A' && *p <= 'Z' && k++ == npos)
			return usage_err("missing %.*s; usage: shmctl %s", n, p,
			                 use);
		for (; n--; p++)
			depth += (*p == '[') - (*p == ']');
	}
	return usage_err("missing argument; usage: shmctl %s", use);
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

/* ----------------------------------------------------------- messages */

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

static int cmd_init(int argc, char **argv)
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

static int cmd_import(int argc, char **argv)
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

static int cmd_get(int argc, char **argv)
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
		fprintf(stderr, "%s: message %s not found\n", prog, pos[0]);
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

static int cmd_room(int argc, char **argv)
{
	optdef opts[] = {{"before", true, NULL}, {"limit", true, NULL},
	                 {NULL, false, NULL}};
	char **pos;
	int npos, ex, rc;
	int64_t before = 0;
	uint64_t limit = 50;
	shm_env *env;
	shm_msg **msgs;
	size_t n;

	if ((ex = scan(argc, argv, opts, &pos, &npos)))
		return ex;
	if ((ex = arity("room ROOM [--before RFC3339] [--limit N]", pos, npos,
	                1, 1)))
		return ex;
	if ((ex = opt_u64("limit", optv(opts, "limit"), 1, SHM_MAX_PAGE,
	                  &limit)))
		return ex;
	if (optv(opts, "before") &&
	    (rc = shm_time_parse(optv(opts, "before"), &before)))
		return fail(rc);
	if ((ex = open_env(false, &env)))
		return ex;
	if (optv(opts, "before") && before <= 0) { /* 0 is "no bound" below */
		shm_env_close(env);
		return EX_OK; /* nothing is older than 1970 */
	}
	rc = shm_room_page(env, pos[0], before, (uint32_t)limit, &msgs, &n);
	if (rc) {
		ex = fail(rc);
	} else {
		for (size_t i = 0; i < n && ex == EX_OK; i++)
			ex = print_msg(msgs[i]);
		shm_msgs_free(msgs, n);
	}
	shm_env_close(env);
	return ex;
}

static int cmd_edit(int argc, char **argv)
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

static int cmd_delete(int argc, char **argv)
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

static int cmd_react(int argc, char **argv)
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

/* ------------------------------------------------------ statics, graph */

static int cmd_static(int argc, char **argv)
{
	optdef opts[] = {{"sha1", false, NULL}, {"sha256", false, NULL},
	                 {"sha-only", false, NULL}, {NULL, false, NULL}};
	const char *use_get =
		"static get WEBSITE OBJECT [--sha1|--sha256] [--sha-only]";
	const char *use_put =
		"static put WEBSITE OBJECT [FILE|-] [--sha1|--sha256]";
	char **pos;
	int npos, ex, rc;
	shm_uuid website;
	shm_env *env;
	shm_static *s = NULL;
	char b[SHM__SHOWN_MAX], shown[SHM__SHOWN_LONG_MAX];

	if (argc < 1)
		return usage_err("static needs get or put; usage:\n  shmctl %s\n"
		                 "  shmctl %s", use_get, use_put);
	bool put = strcmp(argv[0], "put") == 0;
	if (!put && strcmp(argv[0], "get") != 0)
		return usage_err("unknown command 'static %s'",
		                 shm__shown_str(argv[0], b));
	if ((ex = scan(argc - 1, argv + 1, opts, &pos, &npos)))
		return ex;
	if (optv(opts, "sha1") && optv(opts, "sha256"))
		return usage_err("--sha1 and --sha256 exclude each other");
	bool sha256 = optv(opts, "sha256") != NULL;
	if (put && optv(opts, "sha-only"))
		return usage_err("--sha-only is an option of static get, not "
		                 "put; usage: shmctl %s", use_put);
	if ((ex = arity(put ? use_put : use_get, pos, npos, 2, put ? 3 : 2)) ||
	    (ex = parse_uuid_arg(pos[0], "WEBSITE", &website)))
		return ex;
	if ((ex = open_env(put, &env)))
		return ex;
	if (put) {
		FILE *f = stdin;
		char *buf;
		size_t len;
		const char *name = npos == 3 ? pos[2] : "-";
		shm__shown_long(name, strlen(name), shown);
		if (strcmp(name, "-") != 0 && !(f = fopen(name, "rb"))) {
			int e = errno;
			fprintf(stderr, "%s: %s: %s\n", prog, shown, strerror(e));
			ex = e == ENOENT ? EX_NOTFOUND : EX_INTERNAL;
			goto out;
		}
		rc = read_all(f, &buf, &len);
		if (f != stdin)
			fclose(f);
		if (rc) {
			fprintf(stderr, "%s: %s: %s\n", prog, shown, strerror(rc));
			ex = EX_INTERNAL;
			goto out;
		}
		rc = shm_static_put(env, &website, pos[1], buf, len, &s);
		free(buf);
	} else {
		rc = shm_static_peek(env, &website, pos[1], &s);
	}
	if (rc == SHM_ENOTFOUND) {
		fprintf(stderr, "%s: no static for %s %s\n", prog, pos[0], pos[1]);
		ex = EX_NOTFOUND;
	} else if (rc) {
		ex = fail(rc);
	} else if (put || optv(opts, "sha-only")) {
		printf("%s\n", sha256 ? s->sha256 : s->sha1);
	} else {
		fwrite(s->content, 1, s->content_len, stdout);
	}
	shm_static_free(s);
out:
	shm_env_close(env);
	return ex;
}

static int cmd_deps(int argc, char **argv)
{
	optdef opts[] = {{"direct", false, NULL}, {"recursive", false, NULL},
	                 {"referrers", false, NULL}, {NULL, false, NULL}};
	const char *use_set = "deps set WEBSITE OBJECT [--direct] [DEP ...]";
	const char *use_show =
		"deps show WEBSITE OBJECT [--recursive|--referrers]";
	char **pos;
	int npos, ex, rc;
	shm_uuid website;
	shm_env *env;
	char b[SHM__SHOWN_MAX];

	if (argc < 1)
		return usage_err("deps needs set or show; usage:\n  shmctl %s\n"
		                 "  shmctl %s", use_set, use_show);
	bool set = strcmp(argv[0], "set") == 0;
	if (!set && strcmp(argv[0], "show") != 0)
		return usage_err("unknown command 'deps %s'",
		                 shm__shown_str(argv[0], b));
	if ((ex = scan(argc - 1, argv + 1, opts, &pos, &npos)))
		return ex;
	if (set && (optv(opts, "recursive") || optv(opts, "referrers")))
		return usage_err("--%s is an option of deps show, not set; "
		                 "usage: shmctl %s",
		                 optv(opts, "recursive") ? "recursive"
		                                         : "referrers", use_set);
	if (optv(opts, "recursive") && optv(opts, "referrers"))
		return usage_err("--recursive and --referrers exclude each "
		                 "other");
	if (!set && optv(opts, "direct"))
		return usage_err("--direct is an option of deps set, not show; "
		                 "usage: shmctl %s", use_show);
	if ((ex = arity(set ? use_set : use_show, pos, npos, 2,
	                set ? -1 : 2)) ||
	    (ex = parse_uuid_arg(pos[0], "WEBSITE", &website)))
		return ex;
	if ((ex = open_env(set, &env)))
		return ex;
	if (set) {
		rc = shm_deps_set(env, &website, pos[1], optv(opts, "direct"),
		                  (const char *const *)pos + 2,
		                  (size_t)(npos - 2));
		ex = rc ? fail(rc) : EX_OK;
	} else {
		shm_objlist *l = NULL;
		bool known = true;
		if (optv(opts, "referrers"))
			rc = shm_deps_referrers(env, &website, pos[1], &l);
		else if (optv(opts, "recursive"))
			rc = shm_deps_recursive(env, &website, pos[1], &l);
		else
			rc = shm_deps_get(env, &website, pos[1], &l);
		/* an empty answer: no edges, or no such object? */
		if (!rc && !l->n)
			rc = shm__object_known(env, &website, pos[1], &known);
		if (rc) {
			ex = fail(rc);
		} else if (!known) {
			fprintf(stderr, "%s: no object %s %s in the graph: never "
			        "declared (deps set), and no declared object embeds "
			        "it\n", prog, pos[0], pos[1]);
			ex = EX_NOTFOUND;
		} else {
			for (size_t i = 0; i < l->n; i++)
				printf("%s\n", l->items[i]);
			ex = EX_OK;
		}
		free(l);
	}
	shm_env_close(env);
	return ex;
}

/* touch, destroy, bust */
static int cmd_object(int argc, char **argv, const char *name,
                      int (*fn)(shm_env *, const shm_uuid *, const char *))
{
	optdef opts[] = {{NULL, false, NULL}};
	char use[64];
	char **pos;
	int npos, ex, rc;
	shm_uuid website;
	shm_env *env;

	snprintf(use, sizeof use, "%s WEBSITE OBJECT", name);
	if ((ex = scan(argc, argv, opts, &pos, &npos)))
		return ex;
	if ((ex = arity(use, pos, npos, 2, 2)) ||
	    (ex = parse_uuid_arg(pos[0], "WEBSITE", &website)) ||
	    (ex = open_env(true, &env)))
		return ex;
	rc = fn(env, &website, pos[1]);
	ex = rc ? fail(rc) : EX_OK;
	shm_env_close(env);
	return ex;
}

static int cmd_touch(int argc, char **argv)
{
	return cmd_object(argc, argv, "touch", shm_object_save);
}
static int cmd_destroy(int argc, char **argv)
{
	return cmd_object(argc, argv, "destroy", shm_object_destroy);
}
static int cmd_bust(int argc, char **argv)
{
	return cmd_object(argc, argv, "bust", shm_static_bust);
}

/* --------------------------------------------------------------- stat */

/* --json writes the object itself: jansson's integers are signed, and a
 * u64 above 2^63 came out negative. Everything goes to out, a memory
 * stream, printed only once the whole of it is written: a read failing
 * half-way prints nothing (its --json was an object never closed). */
typedef struct statout {
	FILE *out;
	bool json;
	bool oom;      /* a name or value could not be written */
	size_t n;      /* values written */
	uint64_t env_id[2]; /* meta flusher.env_id.hi and .lo */
	bool env_id_said;
	int running;   /* flusher_running's answer */
} statout;

/* JSON's name, then the value's text. */
static void stat_json(statout *o, const char *name, const char *value)
{
	json_t *k = json_string(name);
	char *ks = k ? json_dumps(k, JSON_ENCODE_ANY) : NULL;

	if (ks && value)
		fprintf(o->out, "%s%s:%s", o->n++ ? "," : "{", ks, value);
	else
		o->oom = true;
	free(ks);
	json_decref(k);
}

static void stat_u64(statout *o, const char *name, uint64_t v,
                     const char *desc)
{
	char num[24];

	if (o->json) {
		snprintf(num, sizeof num, "%" PRIu64, v);
		stat_json(o, name, num);
	} else {
		fprintf(o->out, "%-30s %20" PRIu64 "  %s\n", name, v, desc);
	}
}

/* stat_json of jansson's text of r (NULL: out of memory), r released. */
static void stat_jansson(statout *o, const char *name, json_t *r)
{
	char *text = r ? json_dumps(r, JSON_ENCODE_ANY) : NULL;

	stat_json(o, name, text);
	free(text);
	json_decref(r);
}

static void stat_str(statout *o, const char *name, const char *v,
                     const char *desc)
{
	if (o->json)
		stat_jansson(o, name, json_string(v));
	else
		fprintf(o->out, "%-30s %20s  %s\n", name, v, desc);
}

static void stat_real(statout *o, const char *name, double v,
                      const char *desc)
{
	if (o->json)
		stat_jansson(o, name, json_real(v));
	else
		fprintf(o->out, "%-30s %20.4f  %s\n", name, v, desc);
}

/* What the values shm-flusher publishes in meta mean, by the last part of
 * their name: flusher.<sink>.X, flusher.inval.X, cleanup.last.X and
 * cleanup.total.X; the others by their whole name. */
typedef struct {
	const char *name, *desc;
} meta_desc;

static const meta_desc sink_desc[] = { /* flusher/loop.c */
	{"batches", "batches applied"},
	{"rows", "log records applied"},
	{"retries", "batches retried"},
	{"errors", "failures (connection, timeout, server)"},
	{"dead", "records set aside as dead letters"},
	{"reconnects", "failed connection attempts"},
	{"lag_records", "records not yet applied"},
	{"lag_ms", "age of the oldest record not yet applied, ms"},
	{"rows_per_s", "records applied per second, last interval"},
	{"last_batch_ms", "the last batch's duration, ms"},
	{NULL, NULL}};
static const meta_desc inval_desc[] = { /* flusher/invalidate.c */
	{"subscribed", "1 while subscribed to other hosts' writes"},
	{"published", "messages published"},
	{"publish_errors", "messages not published"},
	{"received", "messages from other hosts"},
	{"keys", "keys those messages named"},
	{"dropped", "L1 entries dropped"},
	{"kept", "keys kept: unflushed work of this host"},
	{"resets", "drops of every flushed L1 entry (after a reconnect)"},
	{"errors", "messages or drops that failed"},
	{"peers_seen", "1 once another host was heard from"},
	{NULL, NULL}};
static const meta_desc cleanup_desc[] = { /* flusher/cleanup.c */
	{"websites", "websites with marks"},
	{"websites_failed", "websites whose task failed"},
	{"sources", "direct sources"},
	{"statements", "SQL statements"},
	{"dep_loads", "dependency loads"},
	{"deleted", "connections deleted"},
	{"inserted", "connections inserted"},
	{"marks_cleared", "marks cleared"},
	{"duration_ms", "duration, ms"},
	{"at", "end, Unix time (s)"},
	{NULL, NULL}};
static const meta_desc whole_desc[] = {
	{"flusher.heartbeat", "its last publication of these, Unix time (s): "
	                      "every stats-interval-ms while it runs"},
	{"flusher.started_at", "its start, Unix time (s)"},
	{"flusher.trimmed_to", "log trimmed up to this seq"},
	{"flusher.syncs", "mdb_env_sync calls (nosync mode)"},
	{"flusher.expired", "flushed L1 entries expired (l1_ttl_s)"},
	{"flusher.readers_cleared", "stale reader slots cleared"},
	{"cleanup.rounds", "connection cleanup rounds run"},
	{NULL, NULL}};

static const char *meta_desc_of(const meta_desc *t, const char *name)
{
	for (; t->name; t++)
		if (strcmp(t->name, name) == 0)
			return t->desc;
	return NULL;
}

/* The environment's UUID, kept by shm-flusher in two u64 halves: said
 * once, in its place among the flusher.* values, as the UUID its log
 * and shm_sink_positions show (flusher/loop.c's fl_env_uuid reads it so,
 * a missing half as 0). */
static void stat_env_id(statout *o)
{
	shm_uuid u;
	char s[37];

	if (o->env_id_said)
		return;
	o->env_id_said = true;
	memcpy(u.b, &o->env_id[0], 8);
	memcpy(u.b + 8, &o->env_id[1], 8);
	shm_uuid_format(&u, s);
	stat_str(o, "flusher.env_id", s, "this environment's UUID: the "
	         "flusher's default --env-id, shm_sink_positions.env_uuid");
}

static void stat_meta(const char *name, uint64_t value, void *user)
{
	const char *dot = strrchr(name, '.'), *what;
	const char *last = dot ? dot + 1 : name;
	char desc[128];
	size_t n = strlen(name);
	int sink = 0; /* flusher.<sink>.X: the sink's name's length */

	if (!strcmp(name, "flusher.env_id.hi") ||
	    !strcmp(name, "flusher.env_id.lo")) {
		stat_env_id(user);
		return;
	}
	if (strncmp(name, "flusher.", 8) == 0 && dot > name + 8 &&
	    !memchr(name + 8, '.', (size_t)(dot - (name + 8))))
		sink = (int)(dot - (name + 8));

	if (!strcmp(name, "flusher.pid"))
		snprintf(desc, sizeof desc, "pid of the flusher that published "
		         "these%s", ((statout *)user)->running == 0
		         ? ", which no longer runs (flusher.running)" : "");
	else if ((what = meta_desc_of(whole_desc, name)))
		snprintf(desc, sizeof desc, "%s", what);
	else if (strncmp(name, "sink.", 5) == 0 && n > 13 &&
	         strcmp(name + n - 8, ".applied") == 0)
		snprintf(desc, sizeof desc, "sink %.*s: log applied up to here",
		         (int)(n - 13), name + 5);
	else if (strcmp(name, SHM_META_PG_AWAITED) == 0)
		snprintf(desc, sizeof desc, "sink pg: the last record a "
		         "write-through write waited for (libshm)");
	else if (strncmp(name, "flusher.inval.", 14) == 0 &&
	         (what = meta_desc_of(inval_desc, last)))
		snprintf(desc, sizeof desc, "invalidation: %s", what);
	else if (sink && (what = meta_desc_of(sink_desc, last)))
		snprintf(desc, sizeof desc, "sink %.*s: %s", sink, name + 8,
		         what);
	else if (strncmp(name, "cleanup.last.", 13) == 0 &&
	         (what = meta_desc_of(cleanup_desc, last)))
		snprintf(desc, sizeof desc, "cleanup, last round: %s", what);
	else if (strncmp(name, "cleanup.total.", 14) == 0 &&
	         (what = meta_desc_of(cleanup_desc, last)))
		snprintf(desc, sizeof desc, "cleanup, all rounds: %s", what);
	else
		snprintf(desc, sizeof desc, "published by shm-flusher");
	stat_u64(user, name, value, desc);
}

/* Whether an shm-flusher runs on the environment now: 1, 0, or -1 (why
 * says) if flusher.lock cannot be opened or locked. A flusher flocks it
 * for its lifetime (flusher/loop.c invariant 1): a shared lock, taken
 * without waiting and dropped at once, is refused while one runs. The
 * file is never made here (none: no flusher ever ran). */
static int flusher_running(char *why, size_t len)
{
	char path[4200], shown[SHM__SHOWN_LONG_MAX];
	int fd, rc, e;

	snprintf(path, sizeof path, "%s/flusher.lock", env_dir);
	if ((fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)) < 0) {
		if ((e = errno) == ENOENT)
			return 0;
	} else {
		rc = flock(fd, LOCK_SH | LOCK_NB);
		e = errno;
		close(fd); /* and the lock, if taken */
		if (rc == 0 || e == EWOULDBLOCK)
			return rc != 0;
	}
	snprintf(why, len, "cannot tell whether an shm-flusher runs: %s: %s",
	         shm__shown_long(path, strlen(path), shown), strerror(e));
	return -1;
}

/* flusher.running: o->running, and what it means for the flusher.*
 * values, which a flusher that ended leaves as they were. */
static void stat_running(statout *o, const char *why)
{
	if (o->running > 0)
		stat_u64(o, "flusher.running", 1, "an shm-flusher runs now (it "
		         "holds flusher.lock)");
	else if (o->running == 0)
		stat_u64(o, "flusher.running", 0, "no shm-flusher runs now: the "
		         "flusher.* values are the last one's, as of its last "
		         "publication (flusher.heartbeat)");
	else if (o->json)
		stat_json(o, "flusher.running", "null");
	else
		stat_str(o, "flusher.running", "unknown", why);
}

/* what: the calls timed (failed ones are not). */
static void stat_hist(statout *o, const char *name, const shm_hist *h,
                      const char *what)
{
	char n[64], d[96];

	snprintf(n, sizeof n, "%s.count", name);
	snprintf(d, sizeof d, "%s: samples (%s)", name, what);
	stat_u64(o, n, h->count, d);
	snprintf(n, sizeof n, "%s.p50_ns", name);
	snprintf(d, sizeof d, "%s: median, ns (bucket upper bound)", name);
	stat_u64(o, n, shm_hist_percentile(h, 50), d);
	snprintf(n, sizeof n, "%s.p99_ns", name);
	snprintf(d, sizeof d, "%s: 99th percentile, ns (bucket upper bound)",
	         name);
	stat_u64(o, n, shm_hist_percentile(h, 99), d);
}

static int cmd_stat(int argc, char **argv)
{
	optdef opts[] = {{"json", false, NULL}, {NULL, false, NULL}};
	char **pos;
	int npos, ex, rc;
	shm_env *env;
	shm_info in;
	shm_counters c;
	statout o = {0};
	char *text = NULL, why[4400];
	size_t len = 0;

	if ((ex = scan(argc, argv, opts, &pos, &npos)))
		return ex;
	if ((ex = arity("stat [--json]", pos, npos, 0, 0)))
		return ex;
	if ((ex = open_env(false, &env)))
		return ex;
	if ((rc = shm_env_info(env, &in)) || (rc = shm_stats_shared(env, &c))) {
		ex = fail(rc);
		goto out;
	}
	if (!(o.out = open_memstream(&text, &len)))
		goto oom;
	o.json = optv(opts, "json");
	stat_u64(&o, "messages", in.messages, "messages in L1");
	stat_u64(&o, "statics", in.statics, "statics in L1");
	stat_u64(&o, "rooms", in.rooms, "rooms in the L1 room index");
	stat_u64(&o, "graph_objects", in.graph_objects,
	         "objects declared in the graph");
	stat_u64(&o, "marked_objects", in.marks,
	         "objects marked for the connection cleanup");
	stat_u64(&o, "l1_bytes", in.l1_bytes, "L1 value bytes (capacity)");
	stat_u64(&o, "l1_max_entries", shm_env_options(env)->l1_max_entries,
	         "L1 entry limit (the environment's)");
	stat_u64(&o, "l1_max_bytes", shm_env_options(env)->l1_max_bytes,
	         "L1 byte limit (the environment's)");
	stat_u64(&o, "l1_ttl_s", shm_env_options(env)->l1_ttl_s,
	         "flushed entries older than this expire (the environment's)");
	stat_u64(&o, "log_records", in.log_records, "records in the write log");
	stat_u64(&o, "log_first", in.log_first, "first record's seq (0: empty)");
	stat_u64(&o, "log_last", in.log_last, "last record's seq (0: empty)");
	stat_u64(&o, "next_seq", in.next_seq, "next record's seq");
	stat_u64(&o, "flushed", in.flushed,
	         "flushed position (every sink has applied up to here)");
	stat_u64(&o, "flusher_lag",
	         in.next_seq > in.flushed + 1 ? in.next_seq - 1 - in.flushed : 0,
	         "records written but not yet flushed");
	stat_u64(&o, "dead_letters", in.dead_letters,
	         "records set aside by a sink");
	stat_u64(&o, "map_size", in.map_size, "LMDB map size, bytes");
	stat_u64(&o, "map_used", in.map_used, "LMDB map used, bytes");
	stat_u64(&o, "readers_used", in.readers_used, "LMDB reader slots in use (this shmctl's and stale ones included)");
	stat_u64(&o, "readers_max", in.readers_max, "LMDB reader slots");
	stat_u64(&o, "format_version", in.format_version,
	         "environment format version");
#define SHM__STAT_CNT(name, desc) stat_u64(&o, #name, c.name, desc);
	SHM_COUNTERS(SHM__STAT_CNT)
#undef SHM__STAT_CNT
	stat_real(&o, "compression_ratio",
	          c.log_bytes_raw ? (double)c.log_bytes_stored /
	                                    (double)c.log_bytes_raw
	                          : 1.0,
	          "log payload bytes stored / raw");
	stat_hist(&o, "put_latency", &c.put_latency, "message writes committed");
	stat_hist(&o, "get_latency", &c.get_latency,
	          "message gets answered, not found included");
	o.running = flusher_running(why, sizeof why);
	if (o.running < 0 && o.json)
		fprintf(stderr, "%s: %s\n", prog, why);
	stat_running(&o, why);
	if ((rc = shm_meta_get(env, "flusher.env_id.hi", &o.env_id[0])) ||
	    (rc = shm_meta_get(env, "flusher.env_id.lo", &o.env_id[1])) ||
	    (rc = shm_meta_each(env, "sink.", stat_meta, &o)) ||
	    (rc = shm_meta_each(env, "flusher.", stat_meta, &o)) ||
	    (rc = shm_meta_each(env, "cleanup.", stat_meta, &o))) {
		ex = fail(rc);
		goto out;
	}
	if (o.json)
		fputs("}\n", o.out);
	rc = fclose(o.out);
	o.out = NULL;
	if (rc || o.oom)
		goto oom;
	ex = fwrite(text, 1, len, stdout) == len ? EX_OK
	                                         : tool_write_failed(prog, errno);
	goto out;
oom:
	fprintf(stderr, "%s: out of memory\n", prog);
	ex = EX_INTERNAL;
out:
	if (o.out)
		fclose(o.out);
	free(text);
	shm_env_close(env);
	return ex;
}

/* ---------------------------------------------------------------- log */

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

/* Prints s with each run of control characters (the newline before a
 * PostgreSQL reason's "DETAIL:") as one space: one dead letter, one line. */
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

/* Records (log) or entries (dump, ls) per read transaction: printing (to a
 * pipe that may block) happens after the transaction, which must not pin an
 * LMDB snapshot meanwhile (writers could not reuse freed pages and the map
 * would fill). */
#define CHUNK 512

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

static int cmd_log(int argc, char **argv)
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

/* ------------------------------------------------------- dump, ls */

static char *base64(const uint8_t *p, size_t n)
{
	static const char a[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char *out = malloc((n + 2) / 3 * 4 + 1), *o = out;

	if (!out)
		return NULL;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)p[i + 1] << 8;
		if (i + 2 < n)
			v |= p[i + 2];
		*o++ = a[v >> 18 & 63];
		*o++ = a[v >> 12 & 63];
		*o++ = i + 1 < n ? a[v >> 6 & 63] : '=';
		*o++ = i + 2 < n ? a[v & 63] : '=';
	}
	*o = '\0';
	return out;
}

typedef struct lsctx {
	bool json;
	bool dump;
	size_t bad;
	shm_env *env;
	MDB_txn *txn; /* the chunk's: graph's dependency counts */
	FILE *out;    /* the chunk's output, printed after its transaction */
} lsctx;

typedef void walkfn(const MDB_val *k, const MDB_val *v, lsctx *c);

/* Output held in memory by a chunk at most (statics are large): a chunk
 * ends at CHUNK entries or once past this. */
#define CHUNK_BYTES (1 << 20)

/* Where a walk resumes: a copy of the last key read (keys are valid only
 * inside their transaction); NULL before the first chunk. */
typedef struct walkpos {
	void *key;
	size_t len, cap;
} walkpos;

static int walkpos_keep(walkpos *pos, const MDB_val *k)
{
	if (k->mv_size > pos->cap) {
		void *p = realloc(pos->key, k->mv_size);
		if (!p)
			return shm__err_mdb(ENOMEM, "walk: copy a key");
		pos->key = p;
		pos->cap = k->mv_size;
	}
	memcpy(pos->key, k->mv_data, k->mv_size);
	pos->len = k->mv_size;
	return 0;
}

/* Puts cur on the first entry after pos (the first of all before the first
 * chunk). None of the databases walked is MDB_DUPSORT: a key is an entry. */
static int walk_seek(MDB_txn *txn, MDB_dbi dbi, MDB_cursor *cur,
                     const walkpos *pos, MDB_val *k, MDB_val *v)
{
	MDB_val last = {pos->len, pos->key};
	int rc;

	if (!pos->key)
		return mdb_cursor_get(cur, k, v, MDB_FIRST);
	*k = last;
	rc = mdb_cursor_get(cur, k, v, MDB_SET_RANGE);
	if (rc == 0 && mdb_cmp(txn, dbi, k, &last) == 0)
		rc = mdb_cursor_get(cur, k, v, MDB_NEXT);
	return rc;
}

/* Reads the entries of dbi after pos, CHUNK at most, in one read
 * transaction, formats them into memory with fn, and prints them once the
 * transaction has ended (see CHUNK). *more: the walk goes on. */
static int walk_chunk(shm_env *env, MDB_dbi dbi, walkfn *fn, lsctx *c,
                      walkpos *pos, bool *more)
{
	char *buf = NULL;
	size_t len = 0, n = 0;
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, v, last = {0, NULL}; /* the last entry formatted: none yet */
	int rc;

	*more = false;
	if (!(c->out = open_memstream(&buf, &len)))
		return shm__err_mdb(errno, "walk: output buffer");
	if ((rc = shm__rtxn_get(env, &txn)))
		goto out;
	if ((rc = mdb_cursor_open(txn, dbi, &cur))) {
		shm__rtxn_put(env, txn);
		rc = shm__err_mdb(rc, "open cursor");
		goto out;
	}
	c->txn = txn;
	rc = walk_seek(txn, dbi, cur, pos, &k, &v);
	for (; rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (n == CHUNK || ftell(c->out) >= CHUNK_BYTES) {
			*more = true;
			break;
		}
		fn(&k, &v, c);
		last = k;
		n++;
	}
	if (rc && rc != MDB_NOTFOUND)
		rc = shm__err_mdb(rc, "walk");
	else
		rc = last.mv_data ? walkpos_keep(pos, &last) : 0;
	mdb_cursor_close(cur);
	shm__rtxn_put(env, txn); /* before printing: see CHUNK */
	c->txn = NULL;
out:
	fclose(c->out);
	c->out = NULL;
	if (!rc && len && fwrite(buf, 1, len, stdout) != len)
		rc = shm__err_mdb(errno, "write the output");
	free(buf);
	return rc;
}

/* Walks every entry of dbi in key order, a chunk per read transaction: each
 * chunk is its own snapshot, so an entry present for the whole walk is
 * printed once, one written or deleted during it may or may not be. */
static int walk(shm_env *env, MDB_dbi dbi, walkfn *fn, lsctx *c)
{
	walkpos pos = {0};
	bool more = true;
	int rc = 0;

	while (more && !rc)
		rc = walk_chunk(env, dbi, fn, c, &pos, &more);
	free(pos.key);
	return rc;
}

static void emit(FILE *out, json_t *o)
{
	char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);

	if (s)
		fprintf(out, "%s\n", s);
	free(s);
	json_decref(o);
}

static void each_msg(const MDB_val *k, const MDB_val *v, lsctx *c)
{
	shm_msg *m;
	char id[37], t[40];

	if (shm_msg_decode(v->mv_data, v->mv_size, &m) != 0) {
		fprintf(stderr, "%s: message value does not decode: %s\n", prog,
		        shm_errmsg());
		c->bad++;
		return;
	}
	if (c->dump) {
		char *js;
		size_t len;
		if (shm_msg_to_json(m, &js, &len) == 0) {
			fwrite(js, 1, len, c->out);
			fputc('\n', c->out);
			free(js);
		} else {
			shm_uuid_format(&m->id, id);
			fprintf(stderr, "%s: message %s not dumped: %s\n", prog,
			        id, shm_errmsg());
			c->bad++;
		}
	} else {
		shm_uuid_format(&m->id, id);
		shm_time_format(m->created_at, t);
		if (c->json) {
			json_t *o = json_object();
			json_object_set_new(o, "kind", json_string("msg"));
			json_object_set_new(o, "id", json_string(id));
			json_object_set_new(o, "room_id", json_string(m->room_id));
			json_object_set_new(o, "created_at", json_string(t));
			json_object_set_new(o, "message_type",
			                    json_string(shm_msg_type_name(m->type)));
			json_object_set_new(o, "size",
			                    json_integer((json_int_t)v->mv_size));
			emit(c->out, o);
		} else {
			/* room last: it is the one field that may hold spaces */
			fprintf(c->out, "msg %s %s %s %zu %s\n", id, t,
			        shm_msg_type_name(m->type), v->mv_size,
			        m->room_id);
		}
	}
	free(m);
}

static void obj_split(const MDB_val *k, char id[37], const char **obj,
                      int *olen)
{
	shm_uuid u;

	memcpy(u.b, k->mv_data, 16);
	shm_uuid_format(&u, id);
	*obj = (const char *)k->mv_data + 16;
	*olen = (int)(k->mv_size - 16);
}

static void each_static(const MDB_val *k, const MDB_val *v, lsctx *c)
{
	shm_static *s;
	char id[37], t[40];
	const char *obj;
	int olen;

	if (k->mv_size < 16)
		return;
	obj_split(k, id, &obj, &olen);
	/* The "static" value is u64 seq + the static encoding (static.c). */
	if (v->mv_size < 8 ||
	    shm_static_decode((const uint8_t *)v->mv_data + 8, v->mv_size - 8,
	                      &s) != 0) {
		fprintf(stderr, "%s: static %s/%.*s does not decode: %s\n", prog,
		        id, olen, obj, shm_errmsg());
		c->bad++;
		return;
	}
	shm_time_format(s->generated_at, t);
	if (c->json || c->dump) {
		json_t *o = json_object();
		if (!c->dump)
			json_object_set_new(o, "kind", json_string("static"));
		json_object_set_new(o, "website", json_string(id));
		json_object_set_new(o, "object", json_stringn(obj, (size_t)olen));
		json_object_set_new(o, "size",
		                    json_integer((json_int_t)s->content_len));
		json_object_set_new(o, "sha1", json_string(s->sha1));
		json_object_set_new(o, "sha256", json_string(s->sha256));
		json_object_set_new(o, "generated_at", json_string(t));
		if (c->dump) {
			json_t *txt = json_stringn(s->content, s->content_len);
			if (txt && !memchr(s->content, 0, s->content_len)) {
				json_object_set_new(o, "content", txt);
			} else {
				char *b = base64(s->content, s->content_len);
				json_decref(txt);
				json_object_set_new(o, "content_base64",
				                    json_string(b ? b : ""));
				free(b);
			}
		}
		emit(c->out, o);
	} else {
		fprintf(c->out, "static %s %.*s %zu %s %s\n", id, olen, obj,
		        s->content_len, s->sha1, t);
	}
	shm_static_free(s);
}

static void each_graph(const MDB_val *k, const MDB_val *v, lsctx *c)
{
	char id[37];
	const char *obj;
	int olen;
	bool stored = v->mv_size >= 1 && ((const uint8_t *)v->mv_data)[0];
	size_t ndeps = 0;
	MDB_cursor *cur;

	if (k->mv_size < 16)
		return;
	obj_split(k, id, &obj, &olen);
	/* what every reader takes: a website is direct, whatever is stored */
	bool direct = stored || shm__object_is_website(obj, (size_t)olen);
	if (mdb_cursor_open(c->txn, c->env->dep, &cur) == 0) {
		MDB_val kk = *k, vv;
		if (mdb_cursor_get(cur, &kk, &vv, MDB_SET) == 0)
			mdb_cursor_count(cur, &ndeps);
		mdb_cursor_close(cur);
	}
	if (c->json) {
		json_t *o = json_object();
		json_object_set_new(o, "kind", json_string("graph"));
		json_object_set_new(o, "website", json_string(id));
		json_object_set_new(o, "object", json_stringn(obj, (size_t)olen));
		json_object_set_new(o, "direct", json_boolean(direct));
		json_object_set_new(o, "deps", json_integer((json_int_t)ndeps));
		if (stored != direct)
			json_object_set_new(o, "stored_direct", json_false());
		emit(c->out, o);
	} else {
		fprintf(c->out, "graph %s %.*s %s %zu%s\n", id, olen, obj,
		        direct ? "direct" : "indirect", ndeps,
		        stored != direct ? " stored-indirect" : "");
	}
}

static void each_mark(const MDB_val *k, const MDB_val *v, lsctx *c)
{
	char id[37], t[40] = "-";
	const char *obj, *why = "?";
	int olen;
	int64_t when = 0;

	if (k->mv_size < 16)
		return;
	obj_split(k, id, &obj, &olen);
	if (v->mv_size >= 9) {
		memcpy(&when, v->mv_data, 8);
		uint8_t r = ((const uint8_t *)v->mv_data)[8];
		why = r == 1 ? "save" : r == 2 ? "destroy" : "?";
		shm_time_format(when, t);
	}
	if (c->json) {
		json_t *o = json_object();
		json_object_set_new(o, "kind", json_string("mark"));
		json_object_set_new(o, "website", json_string(id));
		json_object_set_new(o, "object", json_stringn(obj, (size_t)olen));
		json_object_set_new(o, "time", json_string(t));
		json_object_set_new(o, "reason", json_string(why));
		emit(c->out, o);
	} else {
		fprintf(c->out, "mark %s %.*s %s %s\n", id, olen, obj, t, why);
	}
}

static int cmd_ls_dump(int argc, char **argv, bool dump)
{
	optdef ls_opts[] = {{"kind", true, NULL}, {"json", false, NULL},
	                    {NULL, false, NULL}};
	optdef dump_opts[] = {{"kind", true, NULL}, {NULL, false, NULL}};
	optdef *opts = dump ? dump_opts : ls_opts;
	const char *use = dump ? "dump [--kind msg|static|all]"
	                       : "ls [--kind msg|static|graph|mark] [--json]";
	char **pos;
	int npos, ex, rc = 0;
	shm_env *env;
	lsctx c = {.dump = dump};
	char b[SHM__SHOWN_MAX];

	if ((ex = scan(argc, argv, opts, &pos, &npos)))
		return ex;
	if ((ex = arity(use, pos, npos, 0, 0)))
		return ex;
	const char *kind = optv(opts, "kind");
	if (!kind)
		kind = "all";
	bool all = strcmp(kind, "all") == 0;
	if (!all && strcmp(kind, "msg") && strcmp(kind, "static") &&
	    (dump || (strcmp(kind, "graph") && strcmp(kind, "mark"))))
		return usage_err("unknown kind '%s'; usage: shmctl %s",
		                 shm__shown_str(kind, b), use);
	c.json = !dump && optv(opts, "json");
	if ((ex = open_env(false, &env)))
		return ex;
	c.env = env;
	if (all || !strcmp(kind, "msg"))
		rc = walk(env, env->msg, each_msg, &c);
	if (!rc && (all || !strcmp(kind, "static")))
		rc = walk(env, env->stat, each_static, &c);
	if (!rc && !dump && (all || !strcmp(kind, "graph")))
		rc = walk(env, env->obj, each_graph, &c);
	if (!rc && !dump && (all || !strcmp(kind, "mark")))
		rc = walk(env, env->mark, each_mark, &c);
	ex = rc ? fail(rc) : c.bad ? EX_NOTFOUND : EX_OK;
	shm_env_close(env);
	return ex;
}

static int cmd_ls(int argc, char **argv)
{
	return cmd_ls_dump(argc, argv, false);
}
static int cmd_dump(int argc, char **argv)
{
	return cmd_ls_dump(argc, argv, true);
}

/* ------------------------------------------------- verify, readers */

/* Called after shm_verify's snapshot is released; counts the lines. */
static void report_problem(const char *problem, void *user)
{
	++*(size_t *)user;
	printf("%s\n", problem);
}

static int cmd_verify(int argc, char **argv)
{
	optdef opts[] = {{NULL, false, NULL}};
	char **pos;
	int npos, ex, rc;
	shm_env *env;
	size_t problems = 0, shown = 0;

	if ((ex = scan(argc, argv, opts, &pos, &npos)))
		return ex;
	if ((ex = arity("verify", pos, npos, 0, 0)))
		return ex;
	if ((ex = open_env(false, &env)))
		return ex;
	rc = shm_verify(env, report_problem, &shown, &problems);
	if (rc) {
		ex = fail(rc);
	} else if (problems) {
		fprintf(stderr, "%s: verify: %zu problem%s", prog, problems,
		        problems == 1 ? "" : "s");
		if (shown < problems)
			fprintf(stderr, ", the first %zu shown", shown);
		fputc('\n', stderr);
		ex = EX_NOTFOUND;
	} else {
		shm_info in;
		if (shm_env_info(env, &in) == 0)
			printf("ok: %" PRIu64 " message%s, %" PRIu64
			       " static%s, %" PRIu64 " log record%s\n",
			       in.messages, in.messages == 1 ? "" : "s",
			       in.statics, in.statics == 1 ? "" : "s",
			       in.log_records, in.log_records == 1 ? "" : "s");
		else
			printf("ok\n");
		ex = EX_OK;
	}
	shm_env_close(env);
	return ex;
}

/* Rewrites what an older libshm stored in a form libshm no longer reads
 * (libshm/upgrade.c), in one transaction; says what it did. */
static int cmd_upgrade(int argc, char **argv)
{
	optdef opts[] = {{NULL, false, NULL}};
	char **pos;
	int npos, ex, rc;
	shm_env *env;
	shm__upgraded u;

	if ((ex = scan(argc, argv, opts, &pos, &npos)))
		return ex;
	if ((ex = arity("upgrade", pos, npos, 0, 0)))
		return ex;
	if ((ex = open_env(true, &env)))
		return ex;
	if ((rc = shm__upgrade(env, &u)))
		ex = fail(rc);
	else if (!u.declared && !u.dropped && !u.statics && !u.marks)
		printf("nothing to upgrade\n");
	else
		printf("upgraded: %zu graph object%s declared again, %zu old "
		       "spelling%s dropped, %zu static%s busted, %zu mark%s "
		       "dropped\n", u.declared, u.declared == 1 ? "" : "s",
		       u.dropped, u.dropped == 1 ? "" : "s", u.statics,
		       u.statics == 1 ? "" : "s", u.marks,
		       u.marks == 1 ? "" : "s");
	shm_env_close(env);
	return ex;
}

/* dead drop SEQ...: drops those dead letters in one transaction, all or
 * nothing (a SEQ without a letter: exit 1, nothing dropped). */
static int cmd_dead(int argc, char **argv)
{
	optdef opts[] = {{NULL, false, NULL}};
	const char *use = "dead drop SEQ [SEQ ...]";
	uint64_t seqs[256];
	char **pos, b[SHM__SHOWN_MAX];
	int npos, ex, rc;
	shm_env *env;

	if (argc < 1)
		return usage_err("dead needs drop; usage: shmctl %s", use);
	if (strcmp(argv[0], "drop") != 0)
		return usage_err("unknown command 'dead %s'",
		                 shm__shown_str(argv[0], b));
	if ((ex = scan(argc - 1, argv + 1, opts, &pos, &npos)) ||
	    (ex = arity(use, pos, npos, 1, -1)))
		return ex;
	for (int i = 0; i < npos; i++) {
		if (!parse_u64(pos[i], &seqs[i]) || !seqs[i])
			return usage_err("SEQ '%s': not a record's seq (an "
			                 "integer from 1, as shmctl log --dead "
			                 "shows it)", shm__shown_str(pos[i], b));
		for (int j = 0; j < i; j++)
			if (seqs[j] == seqs[i])
				return usage_err("SEQ %" PRIu64 " given twice",
				                 seqs[i]);
	}
	if ((ex = open_env(true, &env)))
		return ex;
	if ((rc = shm_dead_drop(env, seqs, (size_t)npos)))
		ex = fail(rc);
	else
		printf("dropped %d dead letter%s\n", npos, npos == 1 ? "" : "s");
	shm_env_close(env);
	return ex;
}

/* The reader slots, one line each: pid, thread, the txnid of the
 * snapshot ("-" for none) and its age: how many transactions were committed
 * since. The last txnid is read after the slot was, so the age is never
 * negative. --json: one object per slot with those names, the thread as
 * the same hex text, txnid and age null for none. */
typedef struct readers_out {
	MDB_env *mdb;
	bool json;
	int lfd;    /* DIR/lock.mdb, for reader_dead; -1: cannot tell */
	unsigned n; /* slots printed */
} readers_out;

/* Whether pid, which holds a reader slot, has died: 1, 0, or -1 if it
 * cannot be told. As LMDB's stale-reader check (--clear-stale) tells it:
 * a process with a reader slot holds an fcntl write lock on byte pid of
 * lock.mdb, which the kernel drops when it dies; F_GETLK sees another
 * process's, never this one's (alive). lfd must stay open until the
 * handle is closed: closing any descriptor of lock.mdb drops this
 * process's fcntl locks on it, LMDB's too. */
static int reader_dead(int lfd, int pid)
{
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET,
	                   .l_start = pid, .l_len = 1};

	if (pid == getpid())
		return 0;
	if (lfd < 0 || fcntl(lfd, F_GETLK, &fl) != 0)
		return -1;
	return fl.l_type == F_UNLCK;
}

static int reader_row(int pid, size_t thread, size_t txnid, void *ctx)
{
	readers_out *o = ctx;
	MDB_envinfo ei;
	char th[32], id[32] = "-", age[32] = "-";
	bool has_age = txnid && mdb_env_info(o->mdb, &ei) == 0;
	int dead = reader_dead(o->lfd, pid);

	snprintf(th, sizeof th, "%zx", thread);
	if (o->json) {
		json_t *j = json_object();
		json_object_set_new(j, "pid", json_integer(pid));
		json_object_set_new(j, "thread", json_string(th));
		json_object_set_new(j, "txnid", txnid ? json_integer(
		                    (json_int_t)txnid) : json_null());
		json_object_set_new(j, "age", has_age ? json_integer(
		                    (json_int_t)(ei.me_last_txnid - txnid))
		                    : json_null());
		json_object_set_new(j, "dead", dead < 0 ? json_null()
		                                        : json_boolean(dead));
		emit(stdout, j);
		o->n++;
		return ferror(stdout) ? -1 : 0;
	}
	if (o->n++ == 0 && printf("%10s %16s %12s %10s %4s\n", "pid",
	                          "thread", "txnid", "age", "dead") < 0)
		return -1;
	if (txnid)
		snprintf(id, sizeof id, "%zu", txnid);
	if (has_age)
		snprintf(age, sizeof age, "%zu",
		         (size_t)ei.me_last_txnid - txnid);
	return printf("%10d %16s %12s %10s %4s\n", pid, th, id, age,
	              dead < 0 ? "?" : dead ? "yes" : "no") < 0 ? -1 : 0;
}

static int cmd_readers(int argc, char **argv)
{
	optdef opts[] = {{"clear-stale", false, NULL}, {"json", false, NULL},
	                 {NULL, false, NULL}};
	char **pos;
	int npos, ex, rc;
	shm_env *env;

	if ((ex = scan(argc, argv, opts, &pos, &npos)))
		return ex;
	if ((ex = arity("readers [--clear-stale] [--json]", pos, npos, 0, 0)))
		return ex;
	if ((ex = open_env(false, &env)))
		return ex;
	char lock[4200];
	snprintf(lock, sizeof lock, "%s/lock.mdb", env_dir);
	readers_out o = {env->mdb, optv(opts, "json") != NULL,
	                 open(lock, O_RDONLY | O_CLOEXEC), 0};
	if (optv(opts, "clear-stale")) {
		int cleared = 0;
		if ((rc = shm_env_reader_check(env, &cleared))) {
			ex = fail(rc);
			goto out;
		}
		/* with --json, stdout holds the slots' objects alone */
		fprintf(o.json ? stderr : stdout, "cleared %d stale reader "
		        "slot%s\n", cleared, cleared == 1 ? "" : "s");
	}
	shm__readers(env, reader_row, &o);
	if (!o.n && !o.json)
		printf("(no active readers)\n");
	ex = EX_OK;
out:
	shm_env_close(env);
	if (o.lfd >= 0) /* after the close: reader_dead */
		close(o.lfd);
	return ex;
}

/* --------------------------------------------------------------- main */

static const struct {
	const char *name;
	int (*fn)(int argc, char **argv);
} commands[] = {
	{"init", cmd_init},     {"import", cmd_import}, {"get", cmd_get},       {"room", cmd_room},
	{"edit", cmd_edit},     {"delete", cmd_delete}, {"react", cmd_react},
	{"stat", cmd_stat},     {"log", cmd_log},       {"dump", cmd_dump},
	{"verify", cmd_verify}, {"readers", cmd_readers}, {"dead", cmd_dead},
	{"upgrade", cmd_upgrade},
	{"static", cmd_static}, {"deps", cmd_deps},     {"touch", cmd_touch},
	{"destroy", cmd_destroy}, {"bust", cmd_bust},   {"ls", cmd_ls},
};

/* --help: the usage on stdout. A write that fails inside fputs (a text
 * longer than stdout's buffer) is said here, with its errno: the flush at
 * exit would find only the stream's error flag. */
static int help(void)
{
	errno = 0;
	if (fputs(usage_text, stdout) == EOF)
		return tool_write_failed(prog, errno);
	return EX_OK;
}

static int run(int argc, char **argv)
{
	int i = 1;
	bool env_given = false;
	char b[SHM__SHOWN_MAX];

	env_dir = getenv("SHM_ENV");
	while (i < argc && argv[i][0] == '-') {
		const char *a = argv[i];
		if (!strcmp(a, "-h") || !strcmp(a, "--help"))
			return help();
		if (!strcmp(a, "-V") || !strcmp(a, "--version")) {
			printf("shmctl %s\n", SHM_VERSION);
			return EX_OK;
		}
		if (strncmp(a, "-e", 2) && strcmp(a, "--env"))
			return usage_err("unknown option '%s'",
			                 shm__shown_str(a, b));
		if (env_given)
			return usage_err("option '-e' (--env) given twice");
		env_given = true;
		if (a[1] == 'e' && a[2]) { /* -eDIR */
			env_dir = a + 2;
			i++;
			continue;
		}
		if (i + 1 >= argc)
			return usage_err("%s needs a directory", a);
		env_dir = argv[i + 1];
		i += 2;
	}
	if (i >= argc) {
		fputs(usage_text, stderr);
		return EX_USAGE_;
	}
	if (!strcmp(argv[i], "help"))
		return help();
	for (size_t c = 0; c < sizeof commands / sizeof *commands; c++) {
		if (strcmp(commands[c].name, argv[i]) != 0)
			continue;
		for (int j = i + 1; j < argc && strcmp(argv[j], "--"); j++) {
			if (!strcmp(argv[j], "--help") || !strcmp(argv[j], "-h"))
				return help();
			/* the commands take no -e: said, rather than read as an
			 * argument ('stat [--json]') or as no -e at all */
			if (!strcmp(argv[j], "-e") || !strcmp(argv[j], "--env"))
				return usage_err("%s DIR goes before the command: "
				                 "shmctl %s DIR %s ...", argv[j],
				                 argv[j], argv[i]);
		}
		if (!env_dir || !*env_dir)
			return usage_err("no environment: give -e DIR or set "
			                 "SHM_ENV");
		return commands[c].fn(argc - i - 1, argv + i + 1);
	}
	return usage_err("unknown command '%s'", shm__shown_str(argv[i], b));
}

int main(int argc, char **argv)
{
	return tool_close_stdout(prog, run(argc, argv));
}
