/*
 * libshm/redis_url.c - the one parser of Redis addresses, for libshm's
 * read-through and the flusher: redis://[[user]:password@]host[:port][/db]
 * (host a name, an IPv4 address or a bracketed IPv6 one: brackets hold
 * nothing else) and unix://[[user]:password@]/path[?db=N]; and the
 * resolution of the read-through's host name, once, at open (resolve.c).
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* The '@' ending "[[user]:]password@" at p (just after "://"), or NULL: the
 * last '@' of a redis:// URL (host, port and db have none), the "@/" before
 * a unix:// socket path (which may hold '@'). */
static const char *userinfo_end(const char *p, bool unix_socket)
{
	return unix_socket ? (*p == '/' ? NULL : strstr(p, "@/"))
	                   : strrchr(p, '@');
}

/* The message names the URL printably (shm__shown), with its password as
 * "***": error messages end up in logs. It hides more than the parser
 * takes for a password: in a URL without "://" before its last '@'
 * (mistyped), what is before that '@' from the start; in a unix:// one
 * whose path lacks its '/', what is before the last '@' when no "@/" is
 * there; the user name too when it holds an '@'. */
static int bad(const char *url, const char *what)
{
	const char *p = strstr(url, "://"), *last = strrchr(url, '@');
	p = p && (!last || p < last) ? p + 3 : url;
	const char *at = userinfo_end(p, strncmp(url, "unix://", 7) == 0);

	if (!at && *p != '/')
		at = strrchr(p, '@');

	/* the URL, its password as "***", as far as shm__shown shows it: the
	 * text then holds what is wrong whatever the URL */
	char hidden[SHM__SHOWN_BYTES + 2], shown[SHM__SHOWN_MAX];
	if (at) {
		const char *colon = memchr(p, ':', (size_t)(at - p));
		/* a user name holding '@' is a password and a mistyped rest
		 * as likely ("redis://s3cret@cache:1@x"): all of it hidden */
		if (colon && memchr(p, '@', (size_t)(colon - p)))
			colon = NULL;
		const char *pw = colon ? colon + 1 : p;
		snprintf(hidden, sizeof hidden, "%.*s***%s",
		         (int)(pw - url < SHM__SHOWN_BYTES ? pw - url
		                                           : SHM__SHOWN_BYTES),
		         url, at);
		url = hidden;
	}
	return shm__err(SHM_EINVAL, "redis URL '%s': %s",
	                shm__shown_str(url, shown), what);
}

/* The number the len digits at s write, if in 0..max; -1 else (strtol
 * alone takes spaces, '+' and '-'). */
static long digits(const char *s, size_t len, long max)
{
	long n = 0;

	if (!len)
		return -1;
	for (size_t i = 0; i < len; i++)
		if (s[i] < '0' || s[i] > '9' || (n = n * 10 + s[i] - '0') > max)
			return -1;
	return n;
}

/* Takes "[[user]:]password@" off the front of *p (see userinfo_end). */
static int parse_userinfo(const char *url, const char **p, bool unix_socket,
                          shm_redis_addr *a)
{
	const char *at = userinfo_end(*p, unix_socket);
	if (!at)
		return 0;
	const char *colon = memchr(*p, ':', (size_t)(at - *p));
	const char *pw = colon ? colon + 1 : *p;
	size_t ul = colon ? (size_t)(colon - *p) : 0, pl = (size_t)(at - pw);
	if (ul >= sizeof a->user)
		return bad(url, "user name too long");
	if (pl >= sizeof a->password)
		return bad(url, "password too long");
	memcpy(a->user, *p, ul);
	memcpy(a->password, pw, pl);
	*p = at + 1;
	return 0;
}

static int parse_unix(const char *url, shm_redis_addr *a)
{
	const char *p = url + 7, *q;
	int rc = parse_userinfo(url, &p, true, a);

	if (rc)
		return rc;
	q = strchr(p, '?');
	size_t len = q ? (size_t)(q - p) : strlen(p);

	if (!len || *p != '/')
		return bad(url, "expected unix://[[user]:password@]/absolute/path"
		                "[?db=N]");
	if (len >= sizeof a->host)
		return bad(url, "socket path too long");
	memcpy(a->host, p, len);
	a->unix_socket = true;
	if (q) {
		long db;
		if (strncmp(q, "?db=", 4) != 0 || !q[4])
			return bad(url, "expected ?db=N after the path");
		if ((db = digits(q + 4, strlen(q + 4), 100000)) < 0)
			return bad(url, "bad db number, not 0..100000");
		a->db = (int)db;
	}
	return 0;
}

/* Whether host is an IPv6 address, with no zone or a non-empty one after
 * its '%' (an interface's name or number: no ':', no other '%'). */
static bool is_ipv6(const char *host)
{
	char addr[INET6_ADDRSTRLEN];
	unsigned char bin[16];
	const char *zone = strchr(host, '%');
	size_t len = zone ? (size_t)(zone - host) : strlen(host);

	if (len >= sizeof addr ||
	    (zone && (!zone[1] || strpbrk(zone + 1, ":%"))))
		return false;
	memcpy(addr, host, len);
	addr[len] = '\0';
	return inet_pton(AF_INET6, addr, bin) == 1;
}

/* shm_redis_url_parse's work, into a zeroed *a: it may fill some of it and
 * fail. */
static int parse_url(const char *url, shm_redis_addr *a)
{
	if (strncmp(url, "unix://", 7) == 0)
		return parse_unix(url, a);
	if (strncmp(url, "redis://", 8) != 0)
		return bad(url, "expected redis://[[user]:password@]host[:port]"
		                "[/db] or unix://[[user]:password@]/path[?db=N]");
	const char *p = url + 8;
	int rc = parse_userinfo(url, &p, false, a);
	if (rc)
		return rc;
	const char *slash = strchr(p, '/'), *host = p, *colon;
	size_t hl = slash ? (size_t)(slash - p) : strlen(p), hostl;
	bool v6 = *p == '[';
	if (v6) { /* [IPv6 address] */
		const char *rb = memchr(p, ']', hl);
		if (!rb)
			return bad(url, "'[' without its ']'");
		host = p + 1;
		hostl = (size_t)(rb - host);
		colon = rb + 1 < p + hl ? rb + 1 : NULL;
		if (colon && *colon != ':')
			return bad(url, "expected ':PORT' or '/DB' after ']'");
	} else {
		colon = memchr(p, ':', hl);
		hostl = colon ? (size_t)(colon - p) : hl;
	}
	if (!hostl)
		return bad(url, "no host");
	if (hostl >= sizeof a->host)
		return bad(url, "host too long");
	/* a name, an IPv4 address, or in brackets an IPv6 one (with a zone) */
	for (size_t i = 0; i < hostl; i++) {
		unsigned char c = (unsigned char)host[i];
		if (!isalnum(c) && !strchr("-._", c) && !(v6 && strchr(":%", c))) {
			char why[40];
			if (isgraph(c) || c == ' ')
				snprintf(why, sizeof why,
				         "character '%c' in the host", c);
			else
				snprintf(why, sizeof why,
				         "character \\x%02x in the host", c);
			return bad(url, why);
		}
	}
	memcpy(a->host, host, hostl);
	if (v6 && !is_ipv6(a->host)) {
		char why[SHM__SHOWN_MAX + 64], shown[SHM__SHOWN_MAX];
		snprintf(why, sizeof why, "host '[%s]': not an IPv6 address, "
		         "which alone goes in brackets",
		         shm__shown_str(a->host, shown));
		return bad(url, why);
	}
	a->port = 6379;
	if (colon) {
		long port = digits(colon + 1, (size_t)(p + hl - colon - 1), 65535);
		if (port <= 0)
			return bad(url, "bad port, not 1..65535");
		a->port = (int)port;
	}
	if (slash && slash[1]) {
		long db = digits(slash + 1, strlen(slash + 1), 100000);
		if (db < 0)
			return bad(url, "bad db number, not 0..100000");
		a->db = (int)db;
	}
	return 0;
}

int shm_redis_url_parse(const char *url, shm_redis_addr *a)
{
	int rc;

	if (a)
		memset(a, 0, sizeof *a);
	if (!url)
		return shm__null(__func__, "url");
	if (!a)
		return shm__null(__func__, "out");
	if ((rc = parse_url(url, a)))
		memset(a, 0, sizeof *a); /* no half-read address */
	return rc;
}

int shm__redis_resolve(const char *url, const shm_redis_addr *a, char *ip,
                       size_t len)
{
	char why[300];

	*ip = '\0';
	if (!a->unix_socket &&
	    shm__resolve(a->host, ip, len, 0, why, sizeof why))
		return bad(url, why);
	return 0;
}
