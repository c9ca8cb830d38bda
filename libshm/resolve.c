/*
 * libshm/resolve.c - the read-through servers' host names, resolved once,
 * at shm_env_open, so that no get waits for DNS: a host name as a numeric
 * address (Redis's, redis_url.c), and PostgreSQL's hosts as a libpq
 * hostaddr list.
 *
 * libpq resolves a host name with a blocking getaddrinfo inside
 * PQconnectStartParams, before any deadline of ours applies; given
 * hostaddr it connects to that numeric address and keeps host for
 * authentication, SSL and its messages.
 */
#include <errno.h>
#include <libpq-fe.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "internal.h"

int shm__resolve(const char *host, char *ip, size_t len, char *why,
                 size_t why_len)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC,
	                         .ai_socktype = SOCK_STREAM}, *res, *p;
	int rc;

	*ip = '\0';
	if ((rc = getaddrinfo(host, NULL, &hints, &res))) {
		snprintf(why, why_len, "host %s does not resolve: %s", host,
		         rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
		return -1;
	}
	for (p = res; p && p->ai_family != AF_INET; p = p->ai_next)
		;
	if (!p)
		p = res;
	rc = getnameinfo(p->ai_addr, p->ai_addrlen, ip, (socklen_t)len, NULL,
	                 0, NI_NUMERICHOST);
	freeaddrinfo(res);
	if (rc) {
		*ip = '\0';
		snprintf(why, why_len, "host %s: its address: %s", host,
		         gai_strerror(rc));
		return -1;
	}
	return 0;
}

/* libpq's rule: a host item that is empty (the default socket), or begins
 * with '/' or '@' (abstract socket), is not a network address. */
static bool pg_is_socket(const char *item, size_t n)
{
	return n == 0 || item[0] == '/' || item[0] == '@';
}

/* The hostaddr list for hosts (libpq's comma-separated host list): one
 * item per host, its numeric address, or empty for a socket (libpq then
 * uses the host). 0 and *out (malloc'd; NULL if no host is a name: libpq
 * resolves neither a socket nor a numeric address), or SHM_EINVAL naming
 * a host that does not resolve. */
static int pg_hostaddrs(const char *hosts, char **out)
{
	size_t cap = 1, used = 0;
	char *list, ip[64], why[300], host[1024];
	const char *p = hosts;
	bool named = false;

	for (const char *c = hosts; *c; c++)
		cap += *c == ',';
	cap *= sizeof ip; /* the longest numeric address and a comma each */
	if (!(list = malloc(cap)))
		return shm__err(ENOMEM, "pg_conninfo: hostaddr list");
	for (;;) {
		size_t n = strcspn(p, ",");

		*ip = '\0';
		if (!pg_is_socket(p, n)) {
			if (n >= sizeof host) {
				free(list);
				return shm__err(SHM_EINVAL, "pg_conninfo: a host "
				                "name of %zu bytes", n);
			}
			memcpy(host, p, n);
			host[n] = '\0';
			if (shm__resolve(host, ip, sizeof ip, why, sizeof why)) {
				free(list);
				return shm__err(SHM_EINVAL, "pg_conninfo: %s", why);
			}
			named |= strcmp(ip, host) != 0;
		}
		used += (size_t)snprintf(list + used, cap - used, "%s%s",
		                         p == hosts ? "" : ",", ip);
		if (!p[n])
			break;
		p += n + 1;
	}
	if (!named) {
		free(list);
		list = NULL;
	}
	*out = list;
	return 0;
}

int shm__pg_resolve(const char *conninfo, char **hosts, char **hostaddr)
{
	const char *host = NULL, *addr = NULL, *service = NULL;
	PQconninfoOption *opts, *o;
	char *why = NULL;
	int rc;

	*hosts = *hostaddr = NULL;
	/* a bare database name is not a connection string: no options */
	if (!(opts = PQconninfoParse(conninfo, &why))) {
		if (!why)
			return shm__err(ENOMEM, "pg_conninfo: parse");
		PQfreemem(why);
	}
	for (o = opts; o && o->keyword; o++) {
		if (!o->val)
			continue;
		if (strcmp(o->keyword, "host") == 0)
			host = o->val;
		else if (strcmp(o->keyword, "hostaddr") == 0)
			addr = o->val;
		else if (strcmp(o->keyword, "service") == 0)
			service = o->val;
	}
	/* what the conninfo does not say, libpq takes from a service file,
	 * then from the environment */
	if (!service)
		service = getenv("PGSERVICE");
	if (!addr)
		addr = getenv("PGHOSTADDR");
	if (!host)
		host = getenv("PGHOST");
	/* libpq's own hostaddr, or a service file's hosts, are used as given */
	if ((addr && *addr) || (service && *service) || !host)
		rc = 0;
	else if ((rc = pg_hostaddrs(host, hostaddr)) == 0 && *hostaddr &&
	         !(*hosts = strdup(host))) {
		free(*hostaddr);
		*hostaddr = NULL;
		rc = shm__err(ENOMEM, "pg_conninfo: hosts");
	}
	PQconninfoFree(opts);
	return rc;
}
