/* libshm/errors.c - return codes and the per-thread last error text. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

static _Thread_local char errbuf[512] = "no error";

const char *shm_strerror(int rc)
{
	switch (rc) {
	case 0:
		return "success";
#define SHM__ERR_CASE(name, code, msg)                                         \
	case name:                                                             \
		return msg;
		SHM_ERRORS(SHM__ERR_CASE)
#undef SHM__ERR_CASE
	default:
		break;
	}
	if (rc >= MDB_KEYEXIST && rc <= MDB_LAST_ERRCODE)
		return mdb_strerror(rc);
	if (rc > 0)
		return strerror(rc);
	return "unknown error";
}

const char *shm_errmsg(void)
{
	return errbuf;
}

/* Whether text ends with "<sep><desc><close>". */
static bool ends_with(const char *text, size_t n, const char *sep,
                      const char *desc, const char *close)
{
	size_t s = strlen(sep), d = strlen(desc), c = strlen(close);

	return n >= s + d + c && memcmp(text + n - c, close, c) == 0 &&
	       memcmp(text + n - c - d, desc, d) == 0 &&
	       memcmp(text + n - c - d - s, sep, s) == 0;
}

/* The rule of every error text: it names rc's description once, at its end
 * (so shm_errmsg() is printed alone): appended unless the text already ends
 * with it, e.g. a message that wraps another one of the same code. No
 * description holds parentheses, and no text ends with a parenthesis of
 * its own ("at most N allowed by max_content", not "at most N allowed
 * (max_content)"): none reads "(a (b))" or "(a) (b)". A text too long for
 * errbuf is cut between two characters and marked "...", before the
 * description: shm_errmsg() is always valid UTF-8 (descriptions are
 * ASCII) and always ends with it. */
int shm__err(int rc, const char *fmt, ...)
{
	const char *desc = shm_strerror(rc);
	size_t tail = strlen(desc) + sizeof " ()" - 1, n;
	va_list ap;
	int got;

	va_start(ap, fmt);
	got = vsnprintf(errbuf, sizeof errbuf, fmt, ap);
	va_end(ap);
	if (got < 0) { /* fmt could not be formatted: the description alone */
		snprintf(errbuf, sizeof errbuf, "%s", desc);
		return rc;
	}
	n = (size_t)got;
	if (n + tail >= sizeof errbuf) {
		n = shm__utf8_cut(errbuf, sizeof errbuf - 1 - tail - 3);
		n += (size_t)sprintf(errbuf + n, "...");
	} else if (ends_with(errbuf, n, " (", desc, ")") ||
	           ends_with(errbuf, n, ": ", desc, "") || /* shm__err_mdb */
	           ends_with(errbuf, n, " ", desc, "")) { /* "id not found" */
		return rc;
	}
	snprintf(errbuf + n, sizeof errbuf - n, " (%s)", desc);
	return rc;
}

void shm__errcause(int rc, char *buf, size_t len)
{
	const char *desc = shm_strerror(rc);
	size_t n = strlen(errbuf);

	if (ends_with(errbuf, n, " (", desc, ")"))
		n -= strlen(desc) + 3;
	if (n >= len)
		n = shm__utf8_cut(errbuf, len - 1);
	snprintf(buf, len, "%.*s", (int)n, errbuf);
}

int shm__null(const char *fn, const char *arg)
{
	return shm__err(SHM_EINVAL, "%s: NULL %s", fn, arg);
}

int shm__err_mdb(int rc, const char *what)
{
	snprintf(errbuf, sizeof errbuf, "%s: %s", what, shm_strerror(rc));
	return rc;
}
