/*
 * conninfo.c - a PostgreSQL conninfo checked as libpq (15) checks it before
 * it asks a server (libpq-connect.html), so that one that would fail every
 * connect is refused where it is given (shm_env_open, the flusher's start,
 * shm-dataset) instead of being retried for ever. tests/test_env.c holds
 * the verdicts against libpq's own.
 *
 * 1. Only the values of the options checked here are quoted (ports,
 *    integers, enumerations, TLS versions, hosts and addresses): none is
 *    a secret (but a URI's port when the URI has no '@': it may be a
 *    password, "user:password/db" read as "host:port/db"). libpq's
 *    parse errors quote fragments of the text, a
 *    password's perhaps: a keyword=value string's are said here instead,
 *    and a URI's are shown with libpq's quoted parts left out. An unknown
 *    option's name is shown, never its value.
 * 2. A value the conninfo does not give is libpq's: its environment
 *    variable's, else its built-in default; neither when a service is
 *    named, whose file (not read here) may set the option.
 */
#include <ctype.h>
#include <errno.h>
#include <libpq-fe.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>

#include "conninfo.h"
#include "resolve.h"
#include "shm.h"
#include "text.h"

/* An option's value as libpq would take it (NULL: none), and what to call
 * it in a message: its keyword, or the variable it came from. */
typedef struct {
	const char *val, *name;
	bool dflt; /* libpq's built-in default */
} opt_val;

typedef struct {
	PQconninfoOption *opts;
	bool service;
	bool port_may_be_secret; /* a URI without '@': "user:password/db"
	                            gives libpq "password" as the port */
} conn;

static opt_val get(const conn *c, const char *kw)
{
	opt_val v = {NULL, kw, false};

	for (PQconninfoOption *o = c->opts; o->keyword; o++) {
		if (strcmp(o->keyword, kw))
			continue;
		if (o->val || c->service)
			v.val = o->val;
		else if (o->envvar && (v.val = getenv(o->envvar)))
			v.name = o->envvar;
		else
			v.dflt = (v.val = o->compiled) != NULL;
		break;
	}
	return v;
}

/* libpq's integer (parse_int_param): spaces around an optional sign and
 * decimal digits, within an int. */
static bool int_in(const char *p, size_t n, long *out)
{
	const char *e = p + n;
	bool neg = false;
	long v = 0;

	while (p < e && isspace((unsigned char)*p))
		p++;
	if (p < e && (*p == '+' || *p == '-'))
		neg = *p++ == '-';
	if (p == e || !isdigit((unsigned char)*p))
		return false;
	while (p < e && isdigit((unsigned char)*p)) {
		v = v * 10 + (*p++ - '0');
		if (v > (long)INT_MAX + 1)
			return false;
	}
	while (p < e && isspace((unsigned char)*p))
		p++;
	v = neg ? -v : v;
	if (p != e || v > INT_MAX)
		return false;
	*out = v;
	return true;
}

/* Elements of a comma-separated list, as libpq counts them. */
static size_t elems(const char *list)
{
	size_t n = 1;

	for (; *list; list++)
		n += *list == ',';
	return n;
}

/* The i-th element of list (its length in *n). */
static const char *elem(const char *list, size_t i, size_t *n)
{
	while (i--)
		list += strcspn(list, ",") + 1;
	*n = strcspn(list, ",");
	return list;
}

static int bad(char *why, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int bad(char *why, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, len, fmt, ap);
	va_end(ap);
	return SHM_EINVAL;
}

/* Host, address and port lists of matching lengths (libpq's
 * connectOptions2), each port a number, each socket path short enough
 * for a socket address (PQconnectPoll). */
static int check_hosts(const conn *c, char *why, size_t len)
{
	opt_val host = get(c, "host"), addr = get(c, "hostaddr"),
	        port = get(c, "port");
	size_t nh = host.val && *host.val ? elems(host.val) : 0,
	       na = addr.val && *addr.val ? elems(addr.val) : 0,
	       np = port.val && *port.val ? elems(port.val) : 0,
	       n = na ? na : nh ? nh : 1, k;
	char shown[SHM__SHOWN_MAX];
	const char *p;
	long num;

	if (na && nh && na != nh)
		return bad(why, len, "%s: %zu address%s for %zu host%s (one "
		           "each)", addr.name, na, na == 1 ? "" : "es", nh,
		           shm__plural(nh));
	if (np > 1 && np != n)
		return bad(why, len, "%s: %zu ports for %zu host%s (one for "
		           "all, or one each)", port.name, np, n,
		           shm__plural(n));
	for (size_t i = 0; i < np; i++) {
		p = elem(port.val, i, &k);
		if (k && (!int_in(p, k, &num) || num < 1 || num > 65535) &&
		    c->port_may_be_secret && !strcmp(port.name, "port"))
			return bad(why, len, "the URI's port (after the host's "
			           "':') is not a port number (an integer from 1 "
			           "to 65535), not shown: a password goes in "
			           "user:password@host");
		if (k && (!int_in(p, k, &num) || num < 1 || num > 65535))
			return bad(why, len, "%s '%s': not a port number (an "
			           "integer from 1 to 65535, or empty for the "
			           "default)", port.name, shm__shown(p, k, shown));
	}
	for (size_t i = 0; i < nh; i++) {
		size_t hk, ak = 0;
		const char *h = elem(host.val, i, &hk);
		char path[sizeof ((struct sockaddr_un *)0)->sun_path + 32];
		int plen;

		if (na)
			elem(addr.val, i, &ak);
		if (ak || !hk || (*h != '/' && *h != '@'))
			continue; /* an address, the default or a name */
		num = 5432; /* libpq's DEF_PGPORT, for an empty port */
		if (np) {
			p = elem(port.val, np == 1 ? 0 : i, &k);
			if (k)
				int_in(p, k, &num);
		}
		plen = snprintf(path, sizeof path, "%.*s/.s.PGSQL.%ld",
		                (int)hk, h, num);
		if (plen >= (int)sizeof ((struct sockaddr_un *)0)->sun_path)
			return bad(why, len, "%s '%s': its socket path is %d "
			           "bytes with port %ld, at most %zu",
			           host.name, shm__shown(h, hk, shown), plen,
			           num, sizeof ((struct sockaddr_un *)0)->sun_path
			           - 1);
	}
	return 0;
}

/* Whether libpq would connect over TCP to one of the hosts: an address,
 * or a host that is no socket directory (an empty one is libpq's). */
static bool any_tcp(const conn *c)
{
	opt_val host = get(c, "host"), addr = get(c, "hostaddr");
	size_t nh = host.val && *host.val ? elems(host.val) : 0,
	       na = addr.val && *addr.val ? elems(addr.val) : 0, k;
	const char *h;

	for (size_t i = 0; i < (na > nh ? na : nh); i++) {
		if (i < na && (elem(addr.val, i, &k), k))
			return true;
		if (i < nh && (h = elem(host.val, i, &k), k) && *h != '/' &&
		    *h != '@')
			return true;
	}
	return false;
}

/* libpq's integer options, connect_timeout read by a blocking connect,
 * the others on each TCP socket, those after keepalives only with
 * keepalives on (not 0), a negative value as 0, within Linux's bounds
 * (net/tcp.h's MAX_TCP_KEEPIDLE, MAX_TCP_KEEPINTVL, MAX_TCP_KEEPCNT). */
static const struct {
	const char *kw;
	long lo, hi;
	bool tcp;
} ints[] = {
	{"connect_timeout", INT_MIN, INT_MAX, false},
	{"keepalives", INT_MIN, INT_MAX, true},
	{"keepalives_idle", 1, 32767, true},
	{"keepalives_interval", 1, 32767, true},
	{"keepalives_count", 1, 127, true},
	{"tcp_user_timeout", INT_MIN, INT_MAX, true},
};

static int check_ints(const conn *c, char *why, size_t len)
{
	bool tcp = any_tcp(c), keepalives = true;
	char shown[SHM__SHOWN_MAX], range[64] = "";
	opt_val v;
	long num;

	for (size_t i = 0; i < sizeof ints / sizeof *ints; i++) {
		if ((ints[i].tcp && !tcp) || (i > 1 && !keepalives) ||
		    !(v = get(c, ints[i].kw)).val)
			continue;
		if (int_in(v.val, strlen(v.val), &num) && num >= ints[i].lo &&
		    num <= ints[i].hi) {
			if (i == 1)
				keepalives = num != 0;
			continue;
		}
		if (ints[i].lo != INT_MIN)
			snprintf(range, sizeof range, " from %ld to %ld",
			         ints[i].lo, ints[i].hi);
		return bad(why, len, "%s '%s': not an integer%s", v.name,
		           shm__shown_str(v.val, shown), range);
	}
	return 0;
}

static const struct {
	const char *kw, *const *ok;
} enums[] = {
	{"sslmode", (const char *const[]){"disable", "allow", "prefer",
	                                   "require", "verify-ca",
	                                   "verify-full", NULL}},
	{"gssencmode", (const char *const[]){"disable", "prefer", "require",
	                                      NULL}},
	{"channel_binding", (const char *const[]){"disable", "prefer",
	                                           "require", NULL}},
	{"target_session_attrs", (const char *const[]){"any", "read-write",
	                                                "read-only", "primary",
	                                                "standby",
	                                                "prefer-standby",
	                                                NULL}},
};

/* libpq's TLS versions, lowest first, in any case; -1 if v is none. */
static int tls_rank(const char *v)
{
	static const char *const tls[] = {"TLSv1", "TLSv1.1", "TLSv1.2",
	                                  "TLSv1.3"};

	for (int i = 0; i < 4; i++)
		if (!strcasecmp(v, tls[i]))
			return i;
	return -1;
}

static int check_values(const conn *c, char *why, size_t len)
{
	char shown[SHM__SHOWN_MAX], list[128];
	opt_val v, tls[2];

	for (size_t i = 0; i < sizeof enums / sizeof *enums; i++) {
		size_t j = 0, n = 0;

		v = get(c, enums[i].kw);
		if (!v.val)
			continue;
		for (; enums[i].ok[j] && strcmp(v.val, enums[i].ok[j]); j++)
			;
		if (enums[i].ok[j])
			continue;
		for (j = 0; enums[i].ok[j]; j++)
			n += (size_t)snprintf(list + n, sizeof list - n, "%s%s",
			                      j ? ", " : "", enums[i].ok[j]);
		return bad(why, len, "%s '%s': not one of %s", v.name,
		           shm__shown_str(v.val, shown), list);
	}
	tls[0] = get(c, "ssl_min_protocol_version");
	tls[1] = get(c, "ssl_max_protocol_version");
	for (int i = 0; i < 2; i++)
		if (tls[i].val && *tls[i].val && tls_rank(tls[i].val) < 0)
			return bad(why, len, "%s '%s': not one of TLSv1, TLSv1.1, "
			           "TLSv1.2, TLSv1.3 (or empty)", tls[i].name,
			           shm__shown_str(tls[i].val, shown));
	if (tls[0].val && *tls[0].val && tls[1].val && *tls[1].val &&
	    tls_rank(tls[1].val) < tls_rank(tls[0].val))
		return bad(why, len, "%s '%s' is below %s '%s'%s", tls[1].name,
		           tls[1].val, tls[0].name, tls[0].val,
		           tls[0].dflt ? " (libpq's default)" : "");
	return 0;
}

/* Whether libpq knows the option name[0..n) (an alias too). */
static bool known(const char *name, size_t n)
{
	char *s = malloc(n + 3), *err = NULL;
	PQconninfoOption *o;
	bool ok;

	if (!s)
		return true; /* then libpq's own text is shown */
	snprintf(s, n + 3, "%.*s=x", (int)n, name);
	o = PQconninfoParse(s, &err);
	ok = o || !err; /* out of memory: libpq's own text too */
	free(s);
	PQconninfoFree(o);
	PQfreemem(err);
	return ok;
}

/* What libpq refused first in a keyword=value string (its conninfo_parse),
 * into why; 0 if nothing is found (then libpq's text is shown). */
static int kv_fault(const char *s, char *why, size_t len)
{
	const char *name, *prev = NULL;
	size_t n, prev_n = 0;
	char shown[SHM__SHOWN_MAX];

	while (*s) {
		if (isspace((unsigned char)*s)) {
			s++;
			continue;
		}
		for (name = s; *s && *s != '=' && !isspace((unsigned char)*s);)
			s++;
		n = (size_t)(s - name);
		while (isspace((unsigned char)*s))
			s++;
		if (*s != '=' && prev)
			return bad(why, len, "after option '%s', a word without "
			           "'=' (a value with spaces goes in single "
			           "quotes)", shm__shown(prev, prev_n, shown));
		if (*s != '=')
			return bad(why, len, "its first word has no '=' "
			           "(keyword=value pairs, or a postgresql:// "
			           "URI)");
		for (s++; isspace((unsigned char)*s);)
			s++;
		if (*s == '\'') {
			for (s++; *s != '\''; s++) {
				if (!*s)
					return bad(why, len, "option '%s': its "
					           "quoted value has no closing "
					           "quote", shm__shown(name, n, shown));
				if (*s == '\\' && s[1])
					s++;
			}
			s++;
		} else {
			for (; *s && !isspace((unsigned char)*s); s++)
				if (*s == '\\' && s[1])
					s++;
		}
		if (!known(name, n))
			return bad(why, len, "unknown connection option '%s'",
			           shm__shown(name, n, shown));
		prev = name;
		prev_n = n;
	}
	return 0;
}

/* An unknown option among the query parameters of uri (scheme: its
 * prefix's length), into why; 0 if none is found, or the fault is before
 * the query (all before its '?', which the user information may hold,
 * does not parse alone), or a parameter before it is not judged here
 * (percent-encoded, without '=', with two): libpq's text is shown then. */
static int uri_fault(const char *uri, size_t scheme, char *why, size_t len)
{
	const char *s = uri + scheme, *q;
	size_t at = strcspn(s, "@/"), n, k;
	char shown[SHM__SHOWN_MAX], *head, *err = NULL;
	PQconninfoOption *o;

	if (s[at] == '@')
		s += at + 1;
	if (!(q = strchr(s, '?')) ||
	    !(head = strndup(uri, (size_t)(q - uri))))
		return 0;
	o = PQconninfoParse(head, &err);
	free(head);
	PQfreemem(err);
	if (!o)
		return 0;
	PQconninfoFree(o);
	for (s = q + 1; *s; s += n + (s[n] == '&')) {
		n = strcspn(s, "&");
		k = strcspn(s, "=");
		if (k >= n || memchr(s + k + 1, '=', n - k - 1) ||
		    memchr(s, '%', n))
			return 0;
		if (!(k == 3 && !strncmp(s, "ssl=true", 8) && n == 8) &&
		    !known(s, k))
			return bad(why, len, "unknown connection option '%s'",
			           shm__shown(s, k, shown));
	}
	return 0;
}

/* libpq's reason on one line, each part it quotes left out: "...". */
static int libpq_said(const char *err, char *why, size_t len)
{
	char cut[256], shown[SHM__SHOWN_LONG_MAX];
	size_t n = 0;
	bool quoted = false;

	for (; *err && *err != '\n' && n + 5 < sizeof cut; err++) {
		if (*err == '"' && (quoted = !quoted)) {
			memcpy(cut + n, "\"...", 4);
			n += 4;
		} else if (!quoted) {
			cut[n++] = *err;
		}
	}
	return bad(why, len, "libpq cannot parse it: %s",
	           shm__shown_long(cut, n, shown));
}

int shm__pg_check_conninfo(const char *conninfo, char *why, size_t why_len)
{
	size_t uri = !strncmp(conninfo, "postgresql://", 13) ? 13
	             : !strncmp(conninfo, "postgres://", 11) ? 11 : 0;
	/* a bare database name: libpq's rule for the dbname it is passed as */
	bool expands = uri || strchr(conninfo, '=');
	char *err = NULL;
	conn c = {PQconninfoParse(expands ? conninfo : "", &err), false, false};
	const char *addr;
	int rc;

	if (!c.opts) {
		if (!err) {
			snprintf(why, why_len, "parse: %s", strerror(ENOMEM));
			return ENOMEM;
		}
		if (!(rc = uri ? uri_fault(conninfo, uri, why, why_len)
		               : kv_fault(conninfo, why, why_len)))
			rc = libpq_said(err, why, why_len);
		PQfreemem(err);
		return rc;
	}
	c.service = get(&c, "service").val != NULL; /* or PGSERVICE */
	c.port_may_be_secret = uri && conninfo[uri + strcspn(conninfo + uri,
	                                                    "@/?")] != '@';
	/* shm__pg_resolve's rule, which refuses such an element at each
	 * connect, a service or not */
	addr = get(&c, "hostaddr").val;
	if (!addr)
		addr = getenv("PGHOSTADDR");
	if (!(addr && *addr && (rc = shm__pg_check_hostaddr(addr, why,
	                                                     why_len))) &&
	    !(rc = check_hosts(&c, why, why_len)) &&
	    !(rc = check_ints(&c, why, why_len)))
		rc = check_values(&c, why, why_len);
	PQconninfoFree(c.opts);
	return rc;
}
