/*
 * conninfo.h - a PostgreSQL conninfo checked as libpq checks it before it
 * asks any server (conninfo.c), for libshm's read-through, the flusher and
 * shm-dataset, which link libshm statically: shm__ names, not exported by
 * the shared library. Not installed.
 */
#ifndef SHM_CONNINFO_H
#define SHM_CONNINFO_H

#include <stddef.h>

/* 0 if libpq would take conninfo, given as the dbname of a connect that
 * expands it (a keyword=value string, a postgresql:// URI, or a bare
 * database name) with the PG* variables of the environment; else
 * SHM_EINVAL and why, printable: the first thing that would fail every
 * connect before a server is asked (a text libpq cannot parse, an unknown
 * option, a port, integer or enumerated value it refuses, lists of hosts,
 * addresses and ports that do not match, a socket path too long, a
 * hostaddr element that is not a numeric address), naming the option or
 * variable and, for those values, the value; or ENOMEM. An unknown
 * option's name is shown, never its value, nor a password. Options a
 * service file may set are not looked for in the environment when a
 * service is named (the file may say otherwise). */
int shm__pg_check_conninfo(const char *conninfo, char *why, size_t why_len);

#endif
