/*
 * tools/shmctl/statics.c - shmctl's commands on statics and the object
 * graph: static get|put, deps set|show, touch, destroy, bust.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "shm.h"
#include "shmctl.h"

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

int cmd_static(int argc, char **argv)
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

int cmd_deps(int argc, char **argv)
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

int cmd_touch(int argc, char **argv)
{
	return cmd_object(argc, argv, "touch", shm_object_save);
}
int cmd_destroy(int argc, char **argv)
{
	return cmd_object(argc, argv, "destroy", shm_object_destroy);
}
int cmd_bust(int argc, char **argv)
{
	return cmd_object(argc, argv, "bust", shm_static_bust);
}
