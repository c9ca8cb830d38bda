/*
 * tools/shmctl/common.c - what every shmctl command uses: usage errors, the
 * exit code of a library error, opening the environment, the argument
 * scanner and checks of numbers and UUIDs, a JSON line's output.
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "shm.h"
#include "shmctl.h"

int usage_err(const char *fmt, ...)
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
int exit_for(int rc)
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
int fail(int rc)
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
int open_env_as(bool write, bool create, shm_env **env)
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

int open_env(bool write, shm_env **env)
{
	return open_env_as(write, false, env);
}

int parse_uuid_arg(const char *s, const char *what, shm_uuid *u)
{
	if (shm_uuid_parse(s, u) != 0) {
		/* libshm's text: the value escaped, the form expected */
		fprintf(stderr, "%s: %s: %s\n", prog, what, shm_errmsg());
		return EX_DATA;
	}
	return EX_OK;
}

/* Digits only: strtoull alone also takes spaces, '+' and '-'. */
bool parse_u64(const char *s, uint64_t *v)
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
int opt_u64(const char *name, const char *s, uint64_t lo, uint64_t hi,
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

int scan(int argc, char **argv, optdef *opts, char ***pos, int *npos)
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
			/* --name VALUE, or --name=VALUE as GNU tools take it */
			const char *eq = strchr(a + 2, '=');
			size_t nl = eq ? (size_t)(eq - (a + 2)) : strlen(a + 2);
			optdef *o = opts;
			while (o && o->name && (strlen(o->name) != nl ||
			                        strncmp(o->name, a + 2, nl)))
				o++;
			if (!o || !o->name)
				return usage_err("unknown option '%s'",
				                 shm__shown_str(a, b));
			if (o->value)
				return usage_err("option '--%s' given twice",
				                 o->name);
			if (o->has_arg && eq) {
				o->value = eq + 1;
			} else if (o->has_arg) {
				if (i + 1 >= argc)
					return usage_err("option '%s' needs a value",
					                 a);
				o->value = argv[++i];
			} else if (eq) {
				return usage_err("option '--%s' takes no value",
				                 o->name);
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

const char *optv(const optdef *opts, const char *name)
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
int arity(const char *use, char **pos, int npos, int min, int max)
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

void emit(FILE *out, json_t *o)
{
	char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);

	if (s)
		fprintf(out, "%s\n", s);
	free(s);
	json_decref(o);
}
