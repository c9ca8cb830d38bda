/*
 * flusher/pg_reason.c - a PostgreSQL refusal as the reason its dead letter
 * keeps (shm_dead's 239 bytes; the ERROR line logs the whole text).
 *
 * Invariants
 *  1. The most useful fields come first, each only if it fits: what
 *     failed, SQLSTATE and the primary message, then the constraint,
 *     column and table where the message does not quote them, DETAIL,
 *     CONTEXT. So the cause and the constraint's name always fit.
 *  2. A field too long is cut with "..." at a character boundary, DETAIL
 *     in its middle, so that a long "Failing row contains (...)" shows its
 *     end too; every field is shown on one line, printably (text.h).
 *  3. out is left as it is when the result has no primary message (the
 *     sink's error text then says it all).
 */
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "fl.h"

/* Appends sep and s (NULL: nothing) to out (*len bytes of size), s shown
 * on one line; if it does not fit, as much as fits with "...": in its
 * middle (middle), so that its end is seen too (the row of a "Failing row
 * contains (...)"), else at its end. Nothing if less than 16 bytes are
 * left. */
static void reason_add(char *out, size_t size, size_t *len, const char *sep,
                       const char *s, bool middle)
{
	char shown[SHM__SHOWN_LONG_MAX], end[SHM__SHOWN_LONG_MAX];
	size_t n, k = strlen(sep), raw, room, head, tail, from, m = 0;

	if (!s || !*s || *len + k + 16 >= size)
		return;
	memcpy(out + *len, sep, k + 1);
	*len += k;
	room = size - 1 - *len;
	raw = strlen(s);
	n = shm__shown_lines_in(s, raw, shown, sizeof shown);
	if (n <= room) {
		memcpy(out + *len, shown, n + 1);
		*len += n;
		return;
	}
	tail = middle ? (room - 3) / 3 : 0;
	head = shm__utf8_cut(shown, room - 3 - tail);
	/* the end shown from s's own end (shown may have been cut short):
	 * the longest that fits in tail, starting on a character */
	end[0] = 0;
	for (from = raw > tail ? raw - tail : raw; tail && from < raw; from++) {
		if (((unsigned char)s[from] & 0xc0) == 0x80)
			continue;
		if ((m = shm__shown_lines_in(s + from, raw - from, end,
		                             sizeof end)) <= tail)
			break;
	}
	*len += (size_t)snprintf(out + *len, size - *len, "%.*s...%s",
	                         (int)head, shown, m <= tail ? end : "");
}

/* A name PostgreSQL's field gives that its primary message may not quote. */
static void reason_name(char *out, size_t size, size_t *len,
                        const char *label, const PGresult *res, int field,
                        const char *primary)
{
	const char *name = PQresultErrorField(res, field);
	char quoted[128];

	if (!name)
		return;
	snprintf(quoted, sizeof quoted, "\"%s\"", name);
	if (!strstr(primary, quoted))
		reason_add(out, size, len, label, name, false);
}

void fl_pg_refusal_reason(char *out, size_t size, const PGresult *res,
                          const char *what, const char *state)
{
	size_t len = 0;
	const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

	if (!primary)
		return; /* errmsg says it all */
	reason_add(out, size, &len, "", what, false);
	reason_add(out, size, &len, ": ", state, false);
	reason_add(out, size, &len, " ", primary, false);
	reason_name(out, size, &len, "; constraint ", res,
	            PG_DIAG_CONSTRAINT_NAME, primary);
	reason_name(out, size, &len, "; column ", res, PG_DIAG_COLUMN_NAME,
	            primary);
	reason_name(out, size, &len, "; table ", res, PG_DIAG_TABLE_NAME,
	            primary);
	reason_add(out, size, &len, "; DETAIL: ",
	           PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL), true);
	reason_add(out, size, &len, "; CONTEXT: ",
	           PQresultErrorField(res, PG_DIAG_CONTEXT), false);
}
