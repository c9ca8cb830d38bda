/*
 * libshm/resolve.c - host names as numeric addresses, for hiredis (Redis's
 * host) and libpq (PostgreSQL's hosts, as a hostaddr list), so that a
 * connect never waits for DNS: shm_env_open resolves the read-through
 * servers' names once, without a deadline; the flusher resolves its
 * servers' names at each connect, within its connect timeout.
 *
 * libpq resolves a host name with a blocking getaddrinfo inside
 * PQconnectStartParams/PQconnectPoll, hiredis inside its connect, before
 * any deadline of theirs or ours applies; given hostaddr, libpq connects to
 * that numeric address and keeps host for authentication, SSL and its
 * messages; given a numeric host, hiredis resolves nothing.
 *
 * A lookup with a deadline runs getaddrinfo in a thread of its own that
 * the caller may leave behind:
 *  1. the lookup (struct lookup) is shared by the caller and the thread,
 *     and freed by the last of the two to leave it (refs, under mu);
 *  2. the caller leaves at the deadline or once done is set, whichever
 *     comes first; the thread, once getaddrinfo returns: a resolver that
 *     never answers costs one parked thread, never the caller's time;
 *  3. the thread runs with every signal blocked (a daemon's SIGTERM is for
 *     its own threads) and detached (nobody joins it).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <libpq-fe.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "internal.h"

/* host's numeric address now, as long as the resolver takes; flags for
 * getaddrinfo (AI_NUMERICHOST: a numeric host only, never the resolver). */
static int lookup_now(const char *host, int flags, char *ip, size_t len,
                      char *why, size_t why_len)
{
	struct addrinfo hints = {.ai_flags = flags, .ai_family = AF_UNSPEC,
	                         .ai_socktype = SOCK_STREAM}, *res, *p;
	char shown[SHM__SHOWN_MAX];
	int rc;

	*ip = '\0';
	if ((rc = getaddrinfo(host, NULL, &hints, &res))) {
		snprintf(why, why_len, "host %s does not resolve: %s",
		         shm__shown_str(host, shown),
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
		snprintf(why, why_len, "host %s: its address: %s",
		         shm__shown_str(host, shown), gai_strerror(rc));
		return -1;
	}
	return 0;
}

/* One lookup with a deadline (invariants 1-3 above). */
struct lookup {
	pthread_mutex_t mu;
	pthread_cond_t cv;   /* done was set */
	int refs;            /* the caller, the thread: the last frees */
	bool done;
	int rc;              /* lookup_now's */
	char ip[NI_MAXHOST];
	char why[300];
	char host[];
};

static void lookup_leave(struct lookup *l)
{
	pthread_mutex_lock(&l->mu);
	int refs = --l->refs;
	pthread_mutex_unlock(&l->mu);
	if (refs)
		return;
	pthread_cond_destroy(&l->cv);
	pthread_mutex_destroy(&l->mu);
	free(l);
}

static void *lookup_thread(void *arg)
{
	struct lookup *l = arg;
	char ip[NI_MAXHOST], why[300];
	int rc = lookup_now(l->host, 0, ip, sizeof ip, why, sizeof why);

	pthread_mutex_lock(&l->mu);
	l->rc = rc;
	memcpy(l->ip, ip, sizeof ip);
	memcpy(l->why, why, sizeof why);
	l->done = true;
	pthread_cond_signal(&l->cv);
	pthread_mutex_unlock(&l->mu);
	lookup_leave(l);
	return NULL;
}

/* host's numeric address, the lookup left behind at deadline_ns (of
 * shm__mono_ns): -1 and why naming timeout_ms (what the caller allowed)
 * then. */
static int lookup_until(const char *host, uint64_t deadline_ns,
                        uint64_t timeout_ms, char *ip, size_t len, char *why,
                        size_t why_len)
{
	size_t n = strlen(host) + 1;
	struct lookup *l;
	pthread_condattr_t ca;
	pthread_attr_t ta;
	pthread_t t;
	sigset_t all, old;
	char shown[SHM__SHOWN_MAX];
	int rc;

	*ip = '\0';
	/* a numeric host needs no resolver, nor a thread */
	if (lookup_now(host, AI_NUMERICHOST, ip, len, why, why_len) == 0)
		return 0;
	if (!(l = calloc(1, sizeof *l + n))) {
		snprintf(why, why_len, "host %s: %s",
		         shm__shown_str(host, shown), strerror(ENOMEM));
		return -1;
	}
	memcpy(l->host, host, n);
	l->refs = 2;
	pthread_mutex_init(&l->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&l->cv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_attr_init(&ta);
	pthread_attr_setdetachstate(&ta, PTHREAD_CREATE_DETACHED);
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	rc = pthread_create(&t, &ta, lookup_thread, l);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&ta);
	if (rc) {
		l->refs = 1;
		lookup_leave(l);
		snprintf(why, why_len, "host %s: resolver thread: %s",
		         shm__shown_str(host, shown), strerror(rc));
		return -1;
	}

	struct timespec until = {(time_t)(deadline_ns / 1000000000u),
	                         (long)(deadline_ns % 1000000000u)};
	pthread_mutex_lock(&l->mu);
	while (!l->done &&
	       pthread_cond_timedwait(&l->cv, &l->mu, &until) != ETIMEDOUT)
		;
	if (!l->done) {
		rc = -1;
		snprintf(why, why_len, "host %s did not resolve within %llu ms",
		         shm__shown_str(host, shown),
		         (unsigned long long)timeout_ms);
	} else if ((rc = l->rc))
		snprintf(why, why_len, "%s", l->why);
	else if (snprintf(ip, len, "%s", l->ip) >= (int)len) {
		rc = -1;
		*ip = '\0';
		snprintf(why, why_len, "host %s: its address %s is too long",
		         shm__shown_str(host, shown), l->ip);
	}
	pthread_mutex_unlock(&l->mu);
	lookup_leave(l);
	return rc;
}

int shm__resolve(const char *host, char *ip, size_t len, uint64_t timeout_ms,
                 char *why, size_t why_len)
{
	if (!timeout_ms)
		return lookup_now(host, 0, ip, len, why, why_len);
	return lookup_until(host, shm__mono_ns() + timeout_ms * 1000000u,
	                    timeout_ms, ip, len, why, why_len);
}

/* libpq's rule: a host item that is empty (the default socket), or begins
 * with '/' or '@' (abstract socket), is not a network address. */
static bool pg_is_socket(const char *item, size_t n)
{
	return n == 0 || item[0] == '/' || item[0] == '@';
}

/* The hostaddr list for hosts (libpq's comma-separated host list): one
 * item per host, its numeric address, or empty for a socket (libpq then
 * uses the host), all of them resolved before deadline_ns (0: none;
 * timeout_ms the time it stands for). In a list, a name that does not
 * resolve (in time) gets an empty item too: libpq tries it itself, as it
 * would without us, and goes on to the next host (a standby whose name is
 * gone must not stop the others). 0 and *out (malloc'd; NULL if no host
 * is a name: libpq resolves neither a socket nor a numeric address), or
 * SHM_EINVAL naming a host that does not resolve when no host of the list
 * is left, ENOMEM, with why. */
static int pg_hostaddrs(const char *hosts, uint64_t deadline_ns,
                        uint64_t timeout_ms, char **out, char *why,
                        size_t why_len)
{
	size_t cap = 1, used = 0;
	char *list, ip[64], host[1024];
	const char *p = hosts;
	bool named = false, list_of_many = strchr(hosts, ',') != NULL;
	size_t usable = 0;
	int rc;

	for (const char *c = hosts; *c; c++)
		cap += *c == ',';
	cap *= sizeof ip; /* the longest numeric address and a comma each */
	if (!(list = malloc(cap))) {
		snprintf(why, why_len, "hostaddr list: %s", strerror(ENOMEM));
		return ENOMEM;
	}
	for (;;) {
		size_t n = strcspn(p, ",");

		*ip = '\0';
		if (!pg_is_socket(p, n)) {
			if (n >= sizeof host) {
				free(list);
				snprintf(why, why_len, "a host name of %zu bytes",
				         n);
				return SHM_EINVAL;
			}
			memcpy(host, p, n);
			host[n] = '\0';
			rc = deadline_ns ? lookup_until(host, deadline_ns,
			                                timeout_ms, ip, sizeof ip,
			                                why, why_len)
			                 : lookup_now(host, 0, ip, sizeof ip, why,
			                              why_len);
			if (rc && !list_of_many) {
				free(list);
				return SHM_EINVAL;
			}
			if (rc)
				*ip = '\0'; /* libpq's to try; why kept */
			else
				usable++;
			named |= !rc && strcmp(ip, host) != 0;
		} else {
			usable++;
		}
		used += (size_t)snprintf(list + used, cap - used, "%s%s",
		                         p == hosts ? "" : ",", ip);
		if (!p[n])
			break;
		p += n + 1;
	}
	if (!usable) {
		free(list);
		return SHM_EINVAL; /* why: the last host's */
	}
	if (!named) {
		free(list);
		list = NULL;
	}
	*out = list;
	return 0;
}

int shm__pg_check_hostaddr(const char *list, char *why, size_t why_len)
{
	unsigned char a[sizeof(struct in6_addr)];
	char one[INET6_ADDRSTRLEN + 64], shown[SHM__SHOWN_MAX];

	for (const char *p = list; *p;) {
		size_t n = strcspn(p, ",");
		if (n >= sizeof one) {
			snprintf(why, why_len, "hostaddr '%s': not a numeric "
			         "address", shm__shown(p, n, shown));
			return SHM_EINVAL;
		}
		memcpy(one, p, n);
		one[n] = '\0';
		if (n && inet_pton(AF_INET, one, a) != 1 &&
		    inet_pton(AF_INET6, one, a) != 1) {
			snprintf(why, why_len, "hostaddr '%s': not a numeric "
			         "address (IPv4 or IPv6; a name goes in host)",
			         shm__shown_str(one, shown));
			return SHM_EINVAL;
		}
		p += n + (p[n] == ',');
	}
	return 0;
}

int shm__pg_resolve(const char *conninfo, uint64_t timeout_ms, char **hosts,
                    char **hostaddr, char *why, size_t why_len)
{
	uint64_t deadline_ns = timeout_ms ? shm__mono_ns() +
	                                    timeout_ms * 1000000u : 0;
	const char *host = NULL, *addr = NULL, *service = NULL;
	PQconninfoOption *opts, *o;
	char *perr = NULL;
	int rc;

	*hosts = *hostaddr = NULL;
	/* a bare database name is not a connection string: no options */
	if (!(opts = PQconninfoParse(conninfo, &perr))) {
		if (!perr) {
			snprintf(why, why_len, "parse: %s", strerror(ENOMEM));
			return ENOMEM;
		}
		PQfreemem(perr);
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
	if (addr && *addr)
		rc = shm__pg_check_hostaddr(addr, why, why_len);
	else if ((service && *service) || !host)
		rc = 0;
	else if ((rc = pg_hostaddrs(host, deadline_ns, timeout_ms, hostaddr,
	                            why, why_len)) == 0 &&
	         *hostaddr && !(*hosts = strdup(host))) {
		free(*hostaddr);
		*hostaddr = NULL;
		snprintf(why, why_len, "hosts: %s", strerror(ENOMEM));
		rc = ENOMEM;
	}
	PQconninfoFree(opts);
	return rc;
}
