/*
 * time.c - the clock and RFC 3339 timestamps (chrono's serde form).
 *
 * Timestamps are int64 microseconds since the Unix epoch, UTC. Conversions
 * between days and civil dates use the proleptic Gregorian calendar, done
 * with integer arithmetic (no gmtime/timegm: no locale, no TZ, no range
 * limit of time_t).
 *
 * Formatting follows chrono's DateTime<Utc> serde output (AutoSi seconds):
 *   "2026-11-23T10:00:00Z"         whole second
 *   "2026-11-23T10:00:00.123Z"     whole millisecond
 *   "2026-11-23T10:00:00.123456Z"  otherwise
 * Years outside 0000..9999 are written with a sign, as chrono does.
 *
 * Parsing accepts RFC 3339 date-times: "YYYY-MM-DDTHH:MM:SS[.f]OFFSET" with
 * 'T', 't' or ' ' between date and time, 0 to 9 fraction digits (truncated
 * to microseconds), and OFFSET 'Z', 'z' or +HH:MM / -HH:MM. Nothing else:
 * no leap second (:60), no trailing characters, every field range-checked,
 * and the instant itself, in UTC, within years 0000..9999: what formatting
 * writes with four digits, so every parsed time formats back to a parsable
 * string ("9999-12-31T23:59:59-14:00" is 10000-01-01 in UTC: refused).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "codec.h"

#define US_PER_SEC INT64_C(1000000)
#define SEC_PER_DAY INT64_C(86400)
#define TIME_MIN_US INT64_C(-62167219200000000) /* 0000-01-01T00:00:00Z */

int64_t shm_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * US_PER_SEC + ts.tv_nsec / 1000;
}

/* Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
	z += 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	unsigned doe = (unsigned)(z - era * 146097);
	unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	unsigned mp = (5 * doy + 2) / 153;
	*d = doy - (153 * mp + 2) / 5 + 1;
	*m = mp < 10 ? mp + 3 : mp - 9;
	*y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static int64_t floor_div(int64_t a, int64_t b)
{
	int64_t q = a / b;
	return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

void shm_time_format(int64_t us, char out[40])
{
	int64_t secs = us / US_PER_SEC;
	int64_t frac = us % US_PER_SEC; /* made 0 .. 999999, without overflow */
	if (frac < 0) {
		frac += US_PER_SEC;
		secs--;
	}
	int64_t days = floor_div(secs, SEC_PER_DAY);
	int64_t sod = secs - days * SEC_PER_DAY;
	int64_t y;
	unsigned m, d;
	char year[24];
	char fs[24] = "";
	char buf[96];

	civil_from_days(days, &y, &m, &d);
	if (y >= 0 && y <= 9999) {
		/* The common case without snprintf (the flusher formats two
		 * or three timestamps per message). */
		unsigned v[6] = {(unsigned)y, m, d, (unsigned)(sod / 3600),
		                 (unsigned)(sod / 60 % 60), (unsigned)(sod % 60)};
		char *o = out;
		*o++ = (char)('0' + v[0] / 1000);
		*o++ = (char)('0' + v[0] / 100 % 10);
		*o++ = (char)('0' + v[0] / 10 % 10);
		*o++ = (char)('0' + v[0] % 10);
		for (int i = 1; i < 6; i++) {
			*o++ = "--T::"[i - 1];
			*o++ = (char)('0' + v[i] / 10);
			*o++ = (char)('0' + v[i] % 10);
		}
		if (frac != 0) {
			unsigned f = (unsigned)frac, nd = 6;
			if (f % 1000 == 0) {
				f /= 1000;
				nd = 3;
			}
			*o++ = '.';
			for (unsigned k = nd; k-- > 0; f /= 10)
				o[k] = (char)('0' + f % 10);
			o += nd;
		}
		*o++ = 'Z';
		*o = '\0';
		return;
	}
	if (y >= 0 && y <= 9999)
		snprintf(year, sizeof year, "%04" PRId64, y);
	else
		snprintf(year, sizeof year, "%+05" PRId64, y);
	if (frac != 0 && frac % 1000 == 0)
		snprintf(fs, sizeof fs, ".%03u", (unsigned)(frac / 1000));
	else if (frac != 0)
		snprintf(fs, sizeof fs, ".%06u", (unsigned)frac);
	snprintf(buf, sizeof buf, "%s-%02u-%02uT%02u:%02u:%02u%sZ", year, m, d,
	         (unsigned)(sod / 3600), (unsigned)(sod / 60 % 60),
	         (unsigned)(sod % 60), fs);
	/* At most 35 bytes: int64 microseconds stay within +-294247 years. */
	size_t n = strlen(buf);
	if (n > 39)
		n = 39;
	memcpy(out, buf, n);
	out[n] = '\0';
}

/* Reads exactly n decimal digits at *p; -1 if any is not a digit. */
static int64_t digits(const char **p, int n)
{
	int64_t v = 0;

	for (int i = 0; i < n; i++) {
		char c = (*p)[i];
		if (c < '0' || c > '9')
			return -1;
		v = v * 10 + (c - '0');
	}
	*p += n;
	return v;
}

static bool is_leap(int64_t y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static unsigned month_days(int64_t y, unsigned m)
{
	static const unsigned md[12] = {31, 28, 31, 30, 31, 30,
	                                31, 31, 30, 31, 30, 31};
	return m == 2 && is_leap(y) ? 29 : md[m - 1];
}

static int bad(const char *s, const char *why)
{
	char shown[SHM__SHOWN_MAX];

	return shm__err(SHM_ETIME, "timestamp '%s': %s",
	                shm__shown_str(s, shown), why);
}

int shm_time_parse(const char *s, int64_t *us)
{
	const char *p = s;
	int64_t y, mo, d, h, mi, se, frac = 0, off = 0;

	if (us)
		*us = 0;
	if (!s)
		return shm__null(__func__, "s");
	if (!us)
		return shm__null(__func__, "us");
	if ((y = digits(&p, 4)) < 0 || *p++ != '-' ||
	    (mo = digits(&p, 2)) < 0 || *p++ != '-' ||
	    (d = digits(&p, 2)) < 0)
		return bad(s, "expected RFC 3339 date YYYY-MM-DD");
	if (mo < 1 || mo > 12)
		return bad(s, "month out of range");
	if (d < 1 || d > month_days(y, (unsigned)mo))
		return bad(s, "day out of range");
	if (*p != 'T' && *p != 't' && *p != ' ')
		return bad(s, "expected 'T' between date and time");
	p++;
	if ((h = digits(&p, 2)) < 0 || *p++ != ':' ||
	    (mi = digits(&p, 2)) < 0 || *p++ != ':' ||
	    (se = digits(&p, 2)) < 0)
		return bad(s, "expected time HH:MM:SS");
	if (h > 23)
		return bad(s, "hour out of range");
	if (mi > 59)
		return bad(s, "minute out of range");
	if (se == 60)
		return bad(s, "leap seconds are not supported");
	if (se > 59)
		return bad(s, "second out of range");
	if (*p == '.') {
		int n = 0;
		p++;
		while (*p >= '0' && *p <= '9') {
			if (++n > 9)
				return bad(s, "more than 9 fraction digits");
			if (n <= 6)
				frac = frac * 10 + (*p - '0');
			p++;
		}
		if (n == 0)
			return bad(s, "no digit after '.'");
		for (; n < 6; n++)
			frac *= 10;
	}
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		int sign = *p++ == '-' ? -1 : 1;
		int64_t oh, om;
		if ((oh = digits(&p, 2)) < 0 || *p++ != ':' ||
		    (om = digits(&p, 2)) < 0)
			return bad(s, "expected offset +HH:MM or -HH:MM");
		if (oh > 23 || om > 59)
			return bad(s, "offset out of range");
		off = sign * (oh * 3600 + om * 60);
	} else {
		return bad(s, "expected 'Z' or an offset +HH:MM");
	}
	if (*p != '\0')
		return bad(s, "trailing characters");

	int64_t secs = days_from_civil(y, (unsigned)mo, (unsigned)d) *
	                       SEC_PER_DAY +
	               h * 3600 + mi * 60 + se - off;
	int64_t t = secs * US_PER_SEC + frac;
	if (t < TIME_MIN_US)
		return bad(s, "before 0000-01-01T00:00:00Z in UTC");
	if (t > SHM_TIME_MAX_US)
		return bad(s, "after 9999-12-31T23:59:59.999999Z in UTC");
	*us = t;
	return 0;
}
