/*
 * resolve.h - host names as numeric addresses within a deadline
 * (resolve.c), for libshm and the flusher, which links libshm statically:
 * shm__ names, not exported by the shared library. Not installed.
 */
#ifndef SHM_RESOLVE_H
#define SHM_RESOLVE_H

#include <stddef.h>
#include <stdint.h>

/* shm_env_open resolves the read-through servers' names (the read path
 * never does), the flusher its servers' names at each connect. With
 * timeout_ms 0 a lookup takes as long as the resolver; otherwise it gives
 * up after timeout_ms, leaving the resolver to a thread of its own ("host
 * H did not resolve within N ms"). */
/* The numeric address (ip, len bytes) host resolves to, IPv4 first; 0, or
 * -1 and why ("host H does not resolve: ..."). A numeric host is its own
 * address, without the resolver. */
int shm__resolve(const char *host, char *ip, size_t len, uint64_t timeout_ms,
                 char *why, size_t why_len);
/* conninfo's hosts (or PGHOST's, if it has none) resolved for libpq, all
 * within timeout_ms: 0, *hosts (that host list) and *hostaddr (one numeric
 * address per host, empty for a socket), both malloc'd; both NULL when no
 * host is a name (sockets, numeric addresses) or libpq is told the
 * addresses otherwise (hostaddr, PGHOSTADDR, a service). Else SHM_EINVAL
 * naming a host that does not resolve (in time) or an element of hostaddr
 * (PGHOSTADDR's) that is not a numeric address, or ENOMEM, with why.
 * conninfo is one libpq accepts (a bare database name is one). */
int shm__pg_resolve(const char *conninfo, uint64_t timeout_ms, char **hosts,
                    char **hostaddr, char *why, size_t why_len);
/* libpq connects to each element of a hostaddr list (a conninfo's, or
 * PGHOSTADDR) as given, and one that is not a numeric address fails every
 * connect the same way: 0, or SHM_EINVAL and why naming it. Empty elements
 * (take the host's name) are libpq's. */
int shm__pg_check_hostaddr(const char *list, char *why, size_t why_len);

#endif
