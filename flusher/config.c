/*
 * flusher/config.c - one option table drives the flags, the config file,
 * validation, --help and --print-config.
 *
 * Precedence: the table's defaults, then the config file (--config FILE,
 * lines "key = value", the long option names as keys, a value in double
 * quotes taken without them; '#' comments on lines of their own), then
 * the command-line flags (--key value, --key=value, short forms -e/-c/-h).
 * A setting is given at most once in the file and once on the command line
 * (--name and --no-name are one setting): which of two was meant is not
 * for the flusher to guess.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conninfo.h"
#include "fl.h"

enum opt_type { O_STR, O_UINT, O_BOOL };
enum opt_where { W_BOTH, W_FLAG };

typedef struct fl_opt {
	const char *name;
	char short_name;
	enum opt_type type;
	enum opt_where where;
	size_t off;
	const char *def;
	uint64_t min, max;      /* O_UINT */
	const char *const *choices; /* O_STR: allowed values, NULL = any */
	const char *help;
	const char *arg;        /* O_STR without choices: its name in --help */
} fl_opt;

#define OFF(f) offsetof(fl_config, f)
#define U(lo, hi) (lo), (hi)

static const char *const sha_choices[] = {"sha1", "sha256", NULL};
static const char *const level_choices[] = {"debug", "info", "warn",
                                            "error", NULL};

static const fl_opt opts[] = {
	{"env", 'e', O_STR, W_BOTH, OFF(env_dir), "", U(0, 0), NULL,
	 "environment directory (an application or shmctl init creates it); "
	 "empty: $SHM_ENV", "DIR"},
	{"redis", 0, O_STR, W_BOTH, OFF(redis_url), "", U(0, 0), NULL,
	 "Redis sink: redis://[[user]:password@]host[:port][/db] or "
	 "unix://[[user]:password@]/path[?db=N], a standalone primary (not a "
	 "Cluster node, a replica or a Sentinel); empty: no Redis sink",
	 "URL"},
	{"pg", 0, O_STR, W_BOTH, OFF(pg_conninfo), "", U(0, 0), NULL,
	 "PostgreSQL sink: libpq conninfo, URI or database name; empty: no "
	 "PostgreSQL sink",
	 "CONNINFO"},
	{"config", 'c', O_STR, W_FLAG, OFF(config_file), "", U(0, 0), NULL,
	 "config file: one 'key = value' per line, keys as these options", "FILE"},
	{"once", 0, O_BOOL, W_FLAG, OFF(once), "no", U(0, 0), NULL,
	 "drain what the log holds now into every sink, then exit "
	 "(exit 3 if a sink could not be drained, or a signal stopped it "
	 "first)", NULL},
	{"cleanup-now", 0, O_BOOL, W_FLAG, OFF(cleanup_now), "no", U(0, 0),
	 NULL, "run one connection cleanup round (needs --pg), then exit "
	 "(exit 3 if PostgreSQL is unreachable or a website failed); it sees "
	 "the graph changes and marks PostgreSQL has: with --once, after "
	 "draining the log", NULL},
	{"cleanup-interval", 0, O_UINT, W_BOTH, OFF(cleanup_interval_s),
	 "3600", U(0, 604800), NULL,
	 "run the grouped connection cleanup this often (s); 0: never", NULL},
	{"batch-records", 0, O_UINT, W_BOTH, OFF(batch_records), "100",
	 U(1, 1000000), NULL, "a batch closes at this many records...", NULL},
	{"batch-max-records", 0, O_UINT, W_BOTH, OFF(batch_max_records),
	 "20000", U(1, 1000000), NULL,
	 "when the log holds a backlog, a batch takes up to this many records "
	 "at once (steady state: batch-records)", NULL},
	{"batch-ms", 0, O_UINT, W_BOTH, OFF(batch_ms), "100", U(0, 600000),
	 NULL, "...or when its oldest record is this old (ms); at once when "
	 "it holds the record a write-through write waits for", NULL},
	{"l2-ttl", 0, O_UINT, W_BOTH, OFF(l2_ttl_s), "0", U(0, 315360000),
	 NULL, "Redis EX of mirrored keys (s); 0: the environment's l2_ttl_s "
	 "(what the applications set in shm_options, else 3600)", NULL},
	{"compress-threshold", 0, O_UINT, W_BOTH, OFF(compress_threshold),
	 "0", U(0, UINT32_MAX), NULL,
	 "Redis values longer than this are stored as LZ4 frames (bytes); 0: "
	 "the environment's compress_threshold (else 1024)", NULL},
	{"static-sha", 0, O_STR, W_BOTH, OFF(static_sha), "sha1", U(0, 0),
	 sha_choices,
	 "SHA written to <website>-<object>-sha: sha1 (git blob) or sha256", NULL},
	{"sync-interval-ms", 0, O_UINT, W_BOTH, OFF(sync_interval_ms), "1000",
	 U(0, 3600000), NULL,
	 "fsync the environment this often (nosync mode); 0: never", NULL},
	{"reader-check-ms", 0, O_UINT, W_BOTH, OFF(reader_check_ms), "10000",
	 U(0, 3600000), NULL, "clear stale LMDB reader slots this often; 0: never",
	 NULL},
	{"expire-interval-ms", 0, O_UINT, W_BOTH, OFF(expire_interval_ms),
	 "1000", U(0, 3600000), NULL,
	 "evict flushed L1 entries past their TTL this often; 0: never", NULL},
	{"trim-interval-ms", 0, O_UINT, W_BOTH, OFF(trim_interval_ms), "100",
	 U(1, 3600000), NULL, "trim the log to the slowest sink this often", NULL},
	{"stats-interval-ms", 0, O_UINT, W_BOTH, OFF(stats_interval_ms),
	 "1000", U(1, 3600000), NULL,
	 "publish flusher.* stats (shmctl stat) this often", NULL},
	{"remind-interval", 0, O_UINT, W_BOTH, OFF(remind_interval_s), "60",
	 U(1, 86400), NULL,
	 "a failure that repeats (trim, sync, stats, a sink's position, a "
	 "read of the log, a drop of other hosts' keys or of the flushed L1 "
	 "after a reconnect, a peer's bad rooms) is logged when it starts, "
	 "then this often with a count, and when it ends (s)", NULL},
	{"backoff-min-ms", 0, O_UINT, W_BOTH, OFF(backoff_min_ms), "100",
	 U(1, 3600000), NULL,
	 "first retry delay after a sink failure, a failed read of the log "
	 "or a new failure to drop other hosts' keys", NULL},
	{"backoff-max-ms", 0, O_UINT, W_BOTH, OFF(backoff_max_ms), "10000",
	 U(1, 3600000), NULL, "retry delays double up to this cap", NULL},
	{"poison-retries", 0, O_UINT, W_BOTH, OFF(poison_retries), "3",
	 U(1, 1000), NULL,
	 "a record a sink refuses this many times becomes a dead letter (at "
	 "once: one PostgreSQL refuses for undoing a soft delete)", NULL},
	{"once-retries", 0, O_UINT, W_BOTH, OFF(once_retries), "3",
	 U(1, 1000), NULL,
	 "--once: give a sink up after this many failures in a row (of the "
	 "sink, or of reads of the log)", NULL},
	{"redis-timeout-ms", 0, O_UINT, W_BOTH, OFF(redis_timeout_ms), "5000",
	 U(1, 3600000), NULL, "Redis connect and command timeout", NULL},
	{"pg-timeout-ms", 0, O_UINT, W_BOTH, OFF(pg_timeout_ms), "10000",
	 U(1000, 3600000), NULL,
	 "PostgreSQL connect timeout and statement_timeout", NULL},
	{"pg-schema", 0, O_STR, W_BOTH, OFF(pg_schema), "", U(0, 0), NULL,
	 "SQL file (sql/schema.sql) applied at each PostgreSQL connect", "FILE"},
	{"env-id", 0, O_STR, W_BOTH, OFF(env_id), "", U(0, 0), NULL,
	 "this environment's name in shm_sink_positions (at most 63 printable "
	 "ASCII characters, no spaces); empty: a UUID made once and kept in "
	 "the environment", "ID"},
	{"invalidation", 0, O_BOOL, W_BOTH, OFF(invalidation), "yes", U(0, 0),
	 NULL, "with --redis: publish the keys written on Redis channel "
	 "shm:inval and drop other hosts' writes from this L1 (several hosts)", NULL},
	{"map-size-mb", 0, O_UINT, W_BOTH, OFF(map_size_mb), "0",
	 U(0, 1u << 24), NULL, "LMDB map size to open with (MiB; a size larger "
	 "than the environment's is stored in it); 0: the environment's own",
	 NULL},
	{"log-file", 0, O_STR, W_BOTH, OFF(log_file), "", U(0, 0), NULL,
	 "log to this file (reopened on SIGHUP); empty: stderr", "FILE"},
	{"log-level", 0, O_STR, W_BOTH, OFF(log_level), "info", U(0, 0),
	 level_choices, "log messages of this level and above", NULL},
	{"print-config", 0, O_BOOL, W_FLAG, OFF(print_config), "no", U(0, 0),
	 NULL, "check the configuration as a start does, print it as a config "
	 "file (relative paths made absolute) and exit", NULL},
	{"version", 'V', O_BOOL, W_FLAG, OFF(version), "no", U(0, 0), NULL,
	 "print the version and exit", NULL},
	{"help", 'h', O_BOOL, W_FLAG, OFF(help), "no", U(0, 0), NULL,
	 "this help", NULL},
};
#define N_OPTS (sizeof opts / sizeof opts[0])

static const fl_opt *find_long(const char *name, size_t len)
{
	for (size_t i = 0; i < N_OPTS; i++)
		if (strlen(opts[i].name) == len &&
		    strncmp(opts[i].name, name, len) == 0)
			return &opts[i];
	return NULL;
}

static const fl_opt *find_short(char c)
{
	for (size_t i = 0; i < N_OPTS; i++)
		if (opts[i].short_name == c)
			return &opts[i];
	return NULL;
}

static int parse_bool(const char *v, bool *out)
{
	if (!strcasecmp(v, "yes") || !strcasecmp(v, "true") ||
	    !strcmp(v, "1") || !strcasecmp(v, "on"))
		*out = true;
	else if (!strcasecmp(v, "no") || !strcasecmp(v, "false") ||
	         !strcmp(v, "0") || !strcasecmp(v, "off"))
		*out = false;
	else
		return -1;
	return 0;
}

/* Sets one option from its text value; err says why not. */
static int set_opt(fl_config *c, const fl_opt *o, const char *v, char *err,
                   size_t errlen)
{
	char *field = (char *)c + o->off, shown[SHM__SHOWN_MAX];

	switch (o->type) {
	case O_STR: {
		/* a flag's: a file's line ends there (--print-config) */
		const char *nl = strchr(v, '\n');
		if (nl) {
			snprintf(err, errlen, "%s: byte %zu is a line break, "
			         "which no config file line holds", o->name,
			         (size_t)(nl - v));
			return -1;
		}
		if (o->choices) {
			bool ok = false;
			for (const char *const *ch = o->choices; *ch; ch++)
				ok |= strcasecmp(*ch, v) == 0;
			if (!ok) {
				int n = snprintf(err, errlen, "%s: '%s' is not "
				                 "one of", o->name,
				                 shm__shown_str(v, shown));
				for (const char *const *ch = o->choices;
				     *ch && n >= 0 && (size_t)n < errlen; ch++)
					n += snprintf(err + n, errlen - (size_t)n,
					              "%s %s", ch == o->choices
					              ? "" : ",", *ch);
				return -1;
			}
		}
		char *dup = strdup(v), **dst = (char **)field;
		if (!dup) {
			snprintf(err, errlen, "%s: out of memory", o->name);
			return -1;
		}
		free(*dst);
		*dst = dup;
		return 0;
	}
	case O_UINT: { /* digits only: strtoull takes spaces, '+' and '-' */
		char *end;
		errno = 0;
		unsigned long long n = strtoull(v, &end, 10);
		if (*v < '0' || *v > '9' || *end || errno || n < o->min ||
		    n > o->max) {
			snprintf(err, errlen, "%s: '%s' is not an integer in "
			         "[%" PRIu64 ", %" PRIu64 "]", o->name,
			         shm__shown_str(v, shown), o->min, o->max);
			return -1;
		}
		*(uint64_t *)field = n;
		return 0;
	}
	case O_BOOL:
		if (parse_bool(v, (bool *)field)) {
			snprintf(err, errlen, "%s: '%s' is not yes or no",
			         o->name, shm__shown_str(v, shown));
			return -1;
		}
		return 0;
	}
	return -1;
}

static char *trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = 0;
	return s;
}

/* Whether v has a '#' after a blank: a comment, in most config files. */
static bool has_comment(const char *v)
{
	for (const char *h = strchr(v, '#'); h; h = strchr(h + 1, '#'))
		if (h > v && (h[-1] == ' ' || h[-1] == '\t'))
			return true;
	return false;
}

static int load_file(fl_config *c, const char *path, char *err, size_t errlen)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	FILE *f = fopen(path, "r");
	int lineno = 0, rc = 0, set_on[N_OPTS] = {0}; /* line of each key */
	char where[SHM__SHOWN_MAX], shown[SHM__SHOWN_MAX];

	shm__shown_str(path, where);
	if (!f) {
		snprintf(err, errlen, "config %s: %s", where, strerror(errno));
		return -1;
	}
	while ((len = getline(&line, &cap, f)) >= 0) {
		char *s, *eq, *key, *val;
		lineno++;
		if (memchr(line, '\0', (size_t)len)) {
			snprintf(err, errlen, "%s:%d: NUL byte (not a text file?)",
			         where, lineno);
			rc = -1;
			break;
		}
		s = line;
		if (lineno == 1 && strncmp(s, "\xef\xbb\xbf", 3) == 0)
			s += 3; /* a UTF-8 byte order mark, as editors write */
		s = trim(s);
		if (!*s || *s == '#')
			continue;
		if (!(eq = strchr(s, '='))) {
			snprintf(err, errlen, "%s:%d: expected 'key = value'",
			         where, lineno);
			rc = -1;
			break;
		}
		*eq = 0;
		key = trim(s);
		val = trim(eq + 1);
		size_t vl = strlen(val);
		bool quoted = vl >= 2 && val[0] == '"' && val[vl - 1] == '"';
		if (quoted) {
			val[vl - 1] = 0;
			val++;
		}
		const fl_opt *o = find_long(key, strlen(key));
		if (!o || o->where == W_FLAG) {
			snprintf(err, errlen, o ? "%s:%d: '%s' is no config file "
			         "key: give --%s on the command line" : "%s:%d: "
			         "unknown option '%s'", where, lineno,
			         shm__shown_str(key, shown), o ? o->name : "");
			rc = -1;
			break;
		}
		if (set_on[o - opts]) { /* two values: which one was meant? */
			snprintf(err, errlen, "%s:%d: '%s' is already set on "
			         "line %d", where, lineno, o->name,
			         set_on[o - opts]);
			rc = -1;
			break;
		}
		set_on[o - opts] = lineno;
		if (!quoted && has_comment(val)) {
			snprintf(err, errlen, "%s:%d: %s: '%s': a comment takes a "
			         "line of its own (quote the value if the '#' is "
			         "part of it)", where, lineno, o->name,
			         shm__shown_str(val, shown));
			rc = -1;
			break;
		}
		char why[512];
		if (set_opt(c, o, val, why, sizeof why)) {
			snprintf(err, errlen, "%s:%d: %s", where, lineno, why);
			rc = -1;
			break;
		}
	}
	if (rc == 0 && ferror(f)) { /* EISDIR: fopen takes a directory */
		snprintf(err, errlen, "config %s: %s", where, strerror(errno));
		rc = -1;
	}
	free(line);
	fclose(f);
	return rc;
}

/* Walks argv; apply = false only looks for --config. */
static int parse_argv(fl_config *c, int argc, char **argv, bool apply,
                      char *err, size_t errlen)
{
	bool given[N_OPTS] = {false};
	char shown[SHM__SHOWN_MAX];

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *val = NULL;
		const fl_opt *o;
		bool attached = false;

		if (a[0] == '-' && a[1] == '-' && a[2]) {
			const char *name = a + 2, *eq = strchr(name, '=');
			size_t nl = eq ? (size_t)(eq - name) : strlen(name);
			o = find_long(name, nl);
			if (!o && !eq && nl > 3 && !strncmp(name, "no-", 3)) {
				/* --no-invalidation: a yes/no setting off */
				o = find_long(name + 3, nl - 3);
				if (o && (o->type != O_BOOL || o->where != W_BOTH))
					o = NULL;
				val = "no";
				attached = true;
			}
			if (!o) {
				snprintf(err, errlen, "unknown option '%s' "
				         "(see --help)", shm__shown_str(a, shown));
				return -1;
			}
			if (eq) {
				val = eq + 1;
				attached = true;
			}
		} else if (a[0] == '-' && a[1] && a[1] != '-') {
			if (!(o = find_short(a[1]))) {
				snprintf(err, errlen, "unknown option '%s' "
				         "(see --help)", shm__shown_str(a, shown));
				return -1;
			}
			if (a[2]) {
				val = a + 2;
				attached = true;
			}
		} else {
			snprintf(err, errlen, "unexpected argument '%s' "
			         "(see --help)", shm__shown_str(a, shown));
			return -1;
		}
		if (o->type == O_BOOL && o->where == W_FLAG && attached) {
			/* --once, --help...: no yes/no setting, no --no- form */
			snprintf(err, errlen, "option '%s' takes no value (see "
			         "--help)", shm__shown_str(a, shown));
			return -1;
		}
		if (given[o - opts]) {
			snprintf(err, errlen, "option --%s given twice (see "
			         "--help)", o->name);
			return -1;
		}
		given[o - opts] = true;
		if (o->type == O_BOOL && !attached) {
			val = "yes";
		} else if (!attached) {
			if (i + 1 >= argc) {
				snprintf(err, errlen, "option '%s' needs a "
				         "value", shm__shown_str(a, shown));
				return -1;
			}
			val = argv[++i];
		}
		/* pass 1 takes --config alone, pass 2 everything else */
		bool is_config = strcmp(o->name, "config") == 0;
		if (apply != is_config) {
			char why[512];
			if (set_opt(c, o, val, why, sizeof why)) {
				snprintf(err, errlen, "%s", why);
				return -1;
			}
		}
	}
	return 0;
}

/* The env-id names this environment in shm_sink_positions and on the
 * invalidation channel, whose messages carry it between spaces, in at most
 * 63 bytes (fl_env_id): one that does not fit is refused here, not cut
 * into another host's name, nor left to turn invalidation off at start. */
static int check_env_id(const char *id, char *err, size_t errlen)
{
	size_t len = strlen(id);

	if (len > 63) {
		snprintf(err, errlen, "env-id: %zu bytes, at most 63", len);
		return -1;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char b = (unsigned char)id[i];
		if (b <= ' ' || b >= 0x7f) {
			snprintf(err, errlen, "env-id: byte %zu (0x%02x) is not a "
			         "printable ASCII character other than space", i,
			         b);
			return -1;
		}
	}
	return 0;
}

int fl_config_load(fl_config *c, int argc, char **argv, char *err,
                   size_t errlen)
{
	char pg_why[600];

	memset(c, 0, sizeof *c);
	for (size_t i = 0; i < N_OPTS; i++)
		if (set_opt(c, &opts[i], opts[i].def, err, errlen))
			return -1;
	if (parse_argv(c, argc, argv, false, err, errlen))
		return -1;
	if (c->config_file && *c->config_file &&
	    load_file(c, c->config_file, err, errlen))
		return -1;
	if (parse_argv(c, argc, argv, true, err, errlen))
		return -1;
	if (c->help || c->version) /* --print-config: checked as a start */
		return 0;
	const char *shm_env = getenv("SHM_ENV"); /* as shmctl's */
	if (!*c->env_dir && shm_env && *shm_env) {
		free(c->env_dir);
		if (!(c->env_dir = strdup(shm_env))) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
	}
	if (!*c->env_dir) {
		snprintf(err, errlen, "no environment: give -e DIR (or env = "
		         "DIR in the config file, or set SHM_ENV)");
		return -1;
	}
	if (!*c->redis_url && !*c->pg_conninfo) {
		snprintf(err, errlen, "no sink: give --redis URL and/or --pg "
		         "CONNINFO");
		return -1;
	}
	if (c->backoff_max_ms < c->backoff_min_ms) {
		snprintf(err, errlen, "backoff-max-ms (%" PRIu64 ") is below "
		         "backoff-min-ms (%" PRIu64 ")", c->backoff_max_ms,
		         c->backoff_min_ms);
		return -1;
	}
	if (c->batch_max_records < c->batch_records) { /* it would not apply */
		snprintf(err, errlen, "batch-max-records (%" PRIu64 ") is below "
		         "batch-records (%" PRIu64 ")", c->batch_max_records,
		         c->batch_records);
		return -1;
	}
	if (*c->redis_url && shm_redis_url_parse(c->redis_url, &c->redis_addr)) {
		snprintf(err, errlen, "--redis: %s", shm_errmsg());
		return -1;
	}
	/* what libpq refuses without a server is a config error, not an
	 * outage to retry */
	if (*c->pg_conninfo &&
	    shm__pg_check_conninfo(c->pg_conninfo, pg_why, sizeof pg_why)) {
		snprintf(err, errlen, "--pg: %s", pg_why);
		return -1;
	}
	if (check_env_id(c->env_id, err, errlen))
		return -1;
	if (*c->pg_schema) { /* read at each connect: a directory never is */
		struct stat st;
		const char *why = NULL;
		if (access(c->pg_schema, R_OK) || stat(c->pg_schema, &st))
			why = strerror(errno);
		else if (!S_ISREG(st.st_mode))
			why = "not a regular file";
		if (why) {
			char shown[SHM__SHOWN_MAX];
			snprintf(err, errlen, "--pg-schema %s: %s",
			         shm__shown_str(c->pg_schema, shown), why);
			return -1;
		}
	}
	for (char *p = c->static_sha; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	return 0;
}

/* What follows an option's name in --help: " N", " FILE", " a|b", or for a
 * yes/no setting "[=no]" (--name alone means yes, --no-name no). */
static void arg_help(const fl_opt *o, char *out, size_t n)
{
	size_t len = 0;

	if (o->type == O_BOOL) {
		if (o->where == W_BOTH)
			snprintf(out, n, "[=no]");
		return;
	}
	if (o->type == O_UINT || !o->choices) {
		snprintf(out, n, " %s", o->type == O_UINT ? "N" :
		         o->arg ? o->arg : "S");
		return;
	}
	for (size_t i = 0; o->choices[i] && len < n; i++)
		len += (size_t)snprintf(out + len, n - len, "%c%s",
		                        i ? '|' : ' ', o->choices[i]);
}

void fl_config_help(FILE *f, const char *prog)
{
	fprintf(f,
	        "usage: %s -e DIR [--redis URL] [--pg CONNINFO] [options]\n"
	        "Mirrors an shm environment's write log into Redis and "
	        "PostgreSQL (at least one of --redis, --pg).\n\n", prog);
	for (size_t i = 0; i < N_OPTS; i++) {
		const fl_opt *o = &opts[i];
		char head[80], arg[40] = "";
		arg_help(o, arg, sizeof arg);
		snprintf(head, sizeof head, "%s%c%s--%s%s",
		         o->short_name ? "-" : "",
		         o->short_name ? o->short_name : ' ',
		         o->short_name ? ", " : "  ", o->name, arg);
		/* a name too long for its column gets a line of its own */
		const char *h = head + (o->short_name ? 0 : 1);
		if (strlen(h) > 28)
			fprintf(f, "  %s\n  %-28s %s", h, "", o->help);
		else
			fprintf(f, "  %-28s %s", h, o->help);
		if (o->where == W_BOTH) /* flags alone (--once...) are off */
			fprintf(f, " [default: %s]", *o->def ? o->def : "\"\"");
		fputc('\n', f);
	}
	fprintf(f,
	        "\nSignals: SIGTERM/SIGINT finish the batch in flight and exit "
	        "0; SIGHUP reopens --log-file.\n"
	        "Exit codes: 0 ok, 1 environment cannot be opened or another "
	        "flusher holds it, 2 usage or config error, 3 --once could "
	        "not drain a sink (or a signal stopped it first), or "
	        "--cleanup-now met an unreachable PostgreSQL or a failing "
	        "website, 70 the output of --help, --version or "
	        "--print-config could not all be written.\n"
	        "Settings are 'key = value' in --config, keys as the long "
	        "names, '#' starting a comment line (quote a value holding "
	        "' #'), no line break; yes/no ones take --name[=yes|no] or "
	        "--no-name. A "
	        "setting is given at most once in the file and once on the "
	        "command line, which overrides the file.\n");
}

/* A path option's relative value as the start that --print-config checks
 * would take it: from the working directory, which a service reading the
 * file has another of (systemd's is /). buf, or v itself. */
static const char *print_path(const fl_opt *o, const char *v, char *buf,
                              size_t n)
{
	char cwd[4096];
	bool path = o->off == OFF(env_dir) || o->off == OFF(pg_schema) ||
	            o->off == OFF(log_file);

	if (!path || !*v || *v == '/' || !getcwd(cwd, sizeof cwd))
		return v;
	if ((size_t)snprintf(buf, n, "%s%s%s", cwd,
	                     strcmp(cwd, "/") ? "/" : "", v) >= n)
		return v;
	return buf;
}

void fl_config_print(FILE *f, const fl_config *c)
{
	fprintf(f, "# shm-flusher configuration (shm-flusher --config FILE)\n");
	for (size_t i = 0; i < N_OPTS; i++) {
		const fl_opt *o = &opts[i];
		const char *field = (const char *)c + o->off;
		char abs[8192];
		if (o->where == W_FLAG)
			continue;
		fprintf(f, "\n# %s (default: %s)\n", o->help,
		        *o->def ? o->def : "empty");
		switch (o->type) {
		case O_STR: {
			const char *v = *(char *const *)field ?
			                *(char *const *)field : "";
			v = print_path(o, v, abs, sizeof abs);
			size_t vl = strlen(v);
			/* quoted when a file would read it otherwise */
			bool q = has_comment(v) ||
			         (vl && (isspace((unsigned char)v[0]) ||
			                 isspace((unsigned char)v[vl - 1]))) ||
			         (vl >= 2 && v[0] == '"' && v[vl - 1] == '"');
			if (!vl) /* no trailing blank */
				fprintf(f, "%s =\n", o->name);
			else
				fprintf(f, q ? "%s = \"%s\"\n" : "%s = %s\n", o->name,
				        v);
			break;
		}
		case O_UINT:
			fprintf(f, "%s = %" PRIu64 "\n", o->name,
			        *(const uint64_t *)field);
			break;
		case O_BOOL:
			fprintf(f, "%s = %s\n", o->name,
			        *(const bool *)field ? "yes" : "no");
			break;
		}
	}
}

void fl_config_free(fl_config *c)
{
	for (size_t i = 0; i < N_OPTS; i++)
		if (opts[i].type == O_STR) {
			char **p = (char **)((char *)c + opts[i].off);
			free(*p);
			*p = NULL;
		}
}
