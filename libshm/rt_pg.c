/*
 * libshm/rt_pg.c - the read-through's PostgreSQL (L3): connections and
 * queries within l3_timeout_ms, the get of a message, and PostgreSQL's
 * rows of the replies a put may count (shm__rt_parents).
 *
 * Invariant (numbered in readthrough.c's list)
 *  6. Nothing is written on the application's stderr: the notices and
 *     warnings PostgreSQL sends are dropped (pg_notice).
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pg_row.h"
#include "readthrough.h"

/* ---- L3 */

/* SHM_EL3: what failed, on server (pg_server's; NULL: none named), with
 * the first line of libpq's or the server's text (NULL: none) and the
 * SQLSTATE if there is one. */
static int l3_err(const char *what, const char *server, const char *text,
                  const char *state)
{
	char shown[SHM__SHOWN_LONG_MAX];

	if (!text || !*text)
		text = "no reason given";
	return shm__err(SHM_EL3, "PostgreSQL %s%s%s%s%s%s: %s", what,
	                server ? " on " : "", server ? server : "",
	                state ? " (SQLSTATE " : "", state ? state : "",
	                state ? ")" : "",
	                shm__shown_long(text, strcspn(text, "\n"), shown));
}

/* The server libpq is connecting or connected to on c, into buf: its host
 * as the conninfo gave it (a name, not the address it resolved to; of a
 * list, the one tried) and its port, shown printably. NULL if libpq names
 * no host. */
static const char *pg_server(const PGconn *c, char *buf, size_t len)
{
	const char *host = PQhost(c), *port = PQport(c);
	char raw[400], shown[SHM__SHOWN_LONG_MAX];

	if (!host || !*host)
		return NULL;
	snprintf(raw, sizeof raw, "%s%s%s", host, port && *port ? " port " : "",
	         port ? port : "");
	snprintf(buf, len, "%s", shm__shown_long(raw, strlen(raw), shown));
	return buf;
}

/* libpq's default notice processor prints what the server sends as
 * notices (a NOTICE or WARNING a function raises, the WARNING of an
 * immediate shutdown) on stderr, the application's: a library keeps off
 * it. They are dropped: a failure that matters comes as an error, and the
 * text of that error is what a get reports. */
static void pg_notice(void *arg, const char *msg)
{
}

/* Connects before deadline, in UTF-8 whatever PGCLIENTENCODING or the
 * conninfo says (later keywords win over the conninfo expanded from
 * dbname): values are UTF-8, and a character another encoding lacks would
 * fail the whole query. Named "shm-readthrough" in pg_stat_activity
 * unless the conninfo or PGAPPNAME gives an application_name. To the
 * addresses the hosts resolved to at open (hostaddr: libpq resolves
 * nothing, the names stay its host). NULL with the reason (SHM_EL3) on
 * failure. Either way L3's pool names the server tried from then on. */
static PGconn *pg_connect(shm_env *env, uint64_t deadline)
{
	const char *kw[] = {"fallback_application_name", "dbname",
	                    "client_encoding",
	                    env->pg_hostaddr ? "hostaddr" : NULL, NULL};
	const char *val[] = {"shm-readthrough", env->pg_conninfo, "UTF8",
	                     env->pg_hostaddr, NULL};
	PGconn *c = PQconnectStartParams(kw, val, 1);
	char server[SHM__SHOWN_LONG_MAX];

	if (!c) {
		l3_err("connection", NULL, "out of memory", NULL);
		return NULL;
	}
	PQsetNoticeProcessor(c, pg_notice, NULL); /* before any exchange */
	if (PQstatus(c) == CONNECTION_BAD)
		goto fail;
	for (;;) {
		PostgresPollingStatusType st = PQconnectPoll(c);
		if (st == PGRES_POLLING_OK) {
			shm__rt_pool_name(&env->rt->l3,
			                  pg_server(c, server, sizeof server));
			return c;
		}
		if (st == PGRES_POLLING_FAILED)
			goto fail;
		if (shm__rt_wait_fd(PQsocket(c),
		                    st == PGRES_POLLING_READING ? POLLIN
		                                                : POLLOUT,
		                    deadline)) {
			const char *at = pg_server(c, server, sizeof server);

			shm__rt_late(&env->rt->l3, "connection", "to", at);
			shm__rt_pool_name(&env->rt->l3, at);
			PQfinish(c);
			return NULL;
		}
	}
fail:
	/* libpq names the address it was given: the hosts say which server */
	if (env->pg_hosts) {
		char what[SHM__SHOWN_LONG_MAX + 20], shown[SHM__SHOWN_LONG_MAX];
		snprintf(what, sizeof what, "connection to %s",
		         shm__shown_long(env->pg_hosts, strlen(env->pg_hosts),
		                         shown));
		l3_err(what, NULL, PQerrorMessage(c), NULL);
	} else {
		l3_err("connection", NULL, PQerrorMessage(c), NULL);
	}
	shm__rt_pool_name(&env->rt->l3, pg_server(c, server, sizeof server));
	PQfinish(c);
	return NULL;
}

/* Runs one query with params within deadline: 0 and *out (the last
 * result, of any status, NULL if none); ETIMEDOUT; SHM_EL3 (the reason set,
 * the server named) when libpq could not send or read. */
static int pg_query(PGconn *c, const char *sql, int n,
                    const char *const *params, uint64_t deadline,
                    PGresult **out)
{
	char server[SHM__SHOWN_LONG_MAX];
	PGresult *res, *last = NULL;
	int rc = 0;

	if (!PQsendQueryParams(c, sql, n, NULL, params, NULL, NULL, 0))
		return l3_err("query", pg_server(c, server, sizeof server),
		              PQerrorMessage(c), NULL);
	for (;;) {
		while (!PQisBusy(c)) {
			if (!(res = PQgetResult(c))) {
				*out = last;
				return 0;
			}
			PQclear(last);
			last = res;
		}
		/* No PQcancel on a timeout: it connects and waits for the
		 * server with no timeout, so a stopped server would hang the
		 * caller. The caller drops the connection instead. */
		if (shm__rt_wait_fd(PQsocket(c), POLLIN, deadline))
			rc = ETIMEDOUT;
		else if (!PQconsumeInput(c))
			rc = l3_err("query", pg_server(c, server, sizeof server),
			            PQerrorMessage(c), NULL);
		if (rc) {
			PQclear(last);
			return rc;
		}
	}
}

/* SHM_EL3 naming the server of c and its reason for res (not
 * PGRES_TUPLES_OK). */
static int l3_refused(const PGconn *c, const PGresult *res)
{
	const char *text = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	char server[SHM__SHOWN_LONG_MAX];

	return l3_err("query", pg_server(c, server, sizeof server),
	              text ? text : PQresStatus(PQresultStatus(res)),
	              PQresultErrorField(res, PG_DIAG_SQLSTATE));
}

/* A new PostgreSQL connection in the caller's slot of L3's pool before
 * deadline, or NULL with the reason (SHM_EL3), the slot given back and L3
 * skipped for a while. */
static PGconn *l3_connect(shm_env *env, uint64_t deadline)
{
	PGconn *c = pg_connect(env, deadline);

	if (!c)
		shm__rt_pool_drop(&env->rt->l3, NULL, true);
	return c;
}

int shm__rt_l3_query(shm_env *env, const char *sql, int n,
                     const char *const *params, PGresult **res)
{
	struct rt_pool *p = &env->rt->l3;
	uint64_t deadline = shm__mono_ns() + ms_ns(env->opt.l3_timeout_ms);
	char server[SHM__SHOWN_LONG_MAX];
	bool reused, ended;
	void *c;
	int rc;

	if ((rc = shm__rt_pool_take(p, deadline, &c)))
		return shm__rt_take_failed(p, rc);
	if (!(reused = c != NULL) && !(c = l3_connect(env, deadline)))
		return SHM_EL3;
	for (;;) {
		*res = NULL;
		rc = pg_query(c, sql, n, params, deadline, res);
		ended = rc != ETIMEDOUT && PQstatus(c) == CONNECTION_BAD;
		if (rc == ETIMEDOUT)
			rc = shm__rt_late(p, "query", "on",
			                  pg_server(c, server, sizeof server));
		else if (rc == 0 && PQresultStatus(*res) != PGRES_TUPLES_OK)
			rc = l3_refused(c, *res);
		if (rc == 0) {
			shm__rt_pool_give(p, c);
			return 0;
		}
		PQclear(*res);
		*res = NULL;
		if (!reused || !ended)
			break;
		PQfinish(c); /* its slot stays this caller's */
		reused = false;
		if (!(c = l3_connect(env, deadline)))
			return SHM_EL3;
	}
	shm__rt_pool_drop(p, c, true); /* unknown state after a timeout */
	return rc;
}

int shm__rt_l3_get(shm_env *env, const shm_uuid *id, shm_msg **out)
{
	char s[37];
	const char *params[1] = {s};
	PGresult *res;
	int rc;

	shm_uuid_format(id, s);
	if ((rc = shm__rt_l3_query(env,
	                           "SELECT " SHM_PG_MSG_JSON " FROM messages "
	                           "WHERE id = $1", 1, params, &res)))
		return rc;
	if (PQntuples(res) == 0)
		rc = SHM_ENOTFOUND;
	else
		rc = shm__rt_level_msg(env, "PostgreSQL", id, NULL,
		                       PQgetvalue(res, 0, 0),
		                       (size_t)PQgetlength(res, 0, 0), out);
	PQclear(res);
	return rc;
}

/* ---- whether PostgreSQL holds messages (put's reply counting, msg.c) */

int shm__rt_parents(shm_env *env, const shm_uuid *ids, size_t n,
                    shm__l3_row *out)
{
	char *list = malloc(n * 37 + 3), *p = list;
	const char *params[1] = {list};
	PGresult *res;
	int rc;

	if (!list)
		return shm__err(ENOMEM, "a query of %zu ids", n);
	*p++ = '{';
	for (size_t i = 0; i < n; i++) {
		if (i)
			*p++ = ',';
		shm_uuid_format(&ids[i], p);
		p += 36;
		out[i] = (shm__l3_row){0};
	}
	memcpy(p, "}", 2);
	rc = shm__rt_l3_query(env, "SELECT id::text, parent_id::text FROM "
	                      "messages WHERE id = ANY($1::uuid[])", 1, params,
	                      &res);
	free(list);
	if (rc) {
		SHM__COUNT(env, l3_errors, 1);
		return rc;
	}
	for (int r = 0; rc == 0 && r < PQntuples(res); r++) {
		shm_uuid id;
		const shm_uuid *at;
		shm__l3_row *row;

		if (shm_uuid_parse(PQgetvalue(res, r, 0), &id) ||
		    !(at = bsearch(&id, ids, n, sizeof *ids, shm__uuid_cmp))) {
			rc = l3_err("answer", NULL, "a row of an id not asked for",
			            NULL);
			break;
		}
		row = &out[at - ids];
		row->has_parent = !PQgetisnull(res, r, 1);
		if (row->has_parent &&
		    shm_uuid_parse(PQgetvalue(res, r, 1), &row->parent))
			rc = l3_err("answer", NULL, "a malformed parent_id", NULL);
	}
	PQclear(res);
	if (rc)
		SHM__COUNT(env, l3_errors, 1);
	return rc;
}
