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

int shm__err(int rc, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(errbuf, sizeof errbuf, fmt, ap);
	va_end(ap);
	if (n >= 0 && (size_t)n < sizeof errbuf - 4)
		snprintf(errbuf + n, sizeof errbuf - (size_t)n, " (%s)",
		         shm_strerror(rc));
	return rc;
}

int shm__err_mdb(int rc, const char *what)
{
	snprintf(errbuf, sizeof errbuf, "%s: %s", what, shm_strerror(rc));
	return rc;
}
