/*
 * flusher/pg_conn.c - PostgreSQL connections as the flusher opens them, for
 * the sink and the connection cleanup: pg-conninfo with a fallback
 * application name, in UTF-8, resolved and connected within pg-timeout-ms.
 * libpq's own connect_timeout counts whole seconds and at least 2, so the
 * connect is driven here (PQconnectStart + PQconnectPoll) against a
 * deadline in milliseconds; and libpq resolves a host name with no deadline
 * at all, so the hosts are resolved here first, anew at each connect (a
 * server that moved is found again), and libpq is given their addresses as
 * hostaddr (the names stay its host, for authentication, SSL and its
 * messages). What the server sends as notices is logged from the start
 * (notice): libpq would print it on stderr, outside the log's format.
 */
#include <errno.h>
#include <libpq-fe.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>

#include "fl.h"
#include "resolve.h"

/* Waits until the connection is ready for what PQconnectPoll asked, or the
 * deadline: 0 ready, -1 timed out. */
static int wait_socket(PGconn *c, PostgresPollingStatusType st,
                       int64_t deadline)
{
	struct pollfd p = {PQsocket(c),
	                   st == PGRES_POLLING_READING ? POLLIN : POLLOUT, 0};
	for (;;) {
		int64_t left = deadline - (int64_t)fl_mono_ms();
		if (left <= 0)
			return -1;
		int n = poll(&p, 1, (int)left);
		if (n > 0 || (n < 0 && errno != EINTR))
			return 0; /* an error shows in PQconnectPoll */
	}
}

/* A notice libpq passes on (the server's NOTICE or WARNING, libpq's
 * own) as one line of the log of the component comp names, at the level
 * of its severity: INFO for NOTICE and INFO, DEBUG for LOG and DEBUG, WARN
 * for the others (WARNING; an error libpq read outside a query). libpq's
 * text as it is: fl_log shows it on one printable line. */
static void notice(void *comp, const PGresult *res)
{
	const char *sev =
		PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
	int level = FL_WARN;

	if (sev && (!strcmp(sev, "NOTICE") || !strcmp(sev, "INFO")))
		level = FL_INFO;
	else if (sev && (!strcmp(sev, "LOG") || !strncmp(sev, "DEBUG", 5)))
		level = FL_DEBUG;
	fl_log(level, comp, "server: %s", PQresultErrorMessage(res));
}

PGconn *fl_pg_connect(const fl_config *cfg, const char *app,
                      const char *comp, char *err, size_t errlen)
{
	/* later keywords win: app is a fallback, so the conninfo's
	 * application_name (expanded from dbname) or PGAPPNAME names the
	 * connection first, as libshm's read-through's; the encoding after
	 * it is not overridden: rows are UTF-8 whatever PGCLIENTENCODING or
	 * the conninfo say (another one would convert them, or refuse them);
	 * nor the addresses its host names resolved to, last */
	const char *conninfo = cfg->pg_conninfo ? cfg->pg_conninfo : "";
	const char *kw[] = {"fallback_application_name", "dbname",
	                    "client_encoding", "hostaddr", NULL};
	const char *val[] = {app, conninfo, "UTF8", NULL, NULL};
	int64_t deadline = (int64_t)fl_mono_ms() + (int64_t)cfg->pg_timeout_ms;
	PostgresPollingStatusType st = PGRES_POLLING_WRITING;
	char *hosts, *hostaddr, why[300], shown[SHM__SHOWN_LONG_MAX];
	PGconn *c = NULL;

	if (shm__pg_resolve(conninfo, cfg->pg_timeout_ms, &hosts, &hostaddr,
	                    why, sizeof why)) {
		snprintf(err, errlen, "connect: %s", why);
		return NULL;
	}
	if (!(val[3] = hostaddr))
		kw[3] = NULL;
	if (!(c = PQconnectStartParams(kw, val, 1))) {
		snprintf(err, errlen, "connect: out of memory");
		goto fail;
	}
	PQsetNoticeReceiver(c, notice, (void *)comp); /* before any message */
	while (PQstatus(c) != CONNECTION_BAD && st != PGRES_POLLING_OK &&
	       st != PGRES_POLLING_FAILED) {
		if (wait_socket(c, st, deadline)) {
			snprintf(err, errlen, "connect: timed out after %llu ms",
			         (unsigned long long)cfg->pg_timeout_ms);
			goto fail;
		}
		st = PQconnectPoll(c);
	}
	if (PQstatus(c) != CONNECTION_OK) {
		/* its first line, which names a host or socket of conninfo */
		const char *why = PQerrorMessage(c);
		snprintf(err, errlen, "connect: %s",
		         shm__shown_long(why, strcspn(why, "\n"), shown));
		goto fail;
	}
	free(hosts);
	free(hostaddr);
	return c;
fail:
	PQfinish(c);
	free(hosts);
	free(hostaddr);
	return NULL;
}
