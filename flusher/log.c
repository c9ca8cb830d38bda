/*
 * flusher/log.c - leveled, timestamped log lines, reopened on SIGHUP.
 *
 * One line per event, written with a single fwrite under a mutex so threads
 * never interleave: "2026-01-02T03:04:05.678Z INFO pg: applied 100 rows ...".
 * Until fl_log_open() is called (tests), lines go to stderr at level INFO.
 * A failure that repeats is said once, reminded, and ended (fl_repeat).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "fl.h"

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static FILE *log_fp;       /* NULL: stderr */
static char *log_path;     /* NULL: stderr */
static int log_level = FL_INFO;

static const char *const level_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};

const char *fl_log_level_name(int level)
{
	return level >= FL_DEBUG && level <= FL_ERROR ? level_names[level] : "?";
}

int fl_log_level_parse(const char *s)
{
	for (int i = FL_DEBUG; i <= FL_ERROR; i++)
		if (strcasecmp(s, level_names[i]) == 0)
			return i;
	if (strcasecmp(s, "warning") == 0)
		return FL_WARN;
	return -1;
}

int fl_log_open(const char *path, int level)
{
	FILE *fp = NULL;

	if (path && *path && strcmp(path, "-") != 0) {
		if (!(fp = fopen(path, "a")))
			return errno;
		setvbuf(fp, NULL, _IOLBF, 0);
	}
	pthread_mutex_lock(&log_lock);
	if (log_fp)
		fclose(log_fp);
	free(log_path);
	log_fp = fp;
	log_path = fp ? strdup(path) : NULL;
	log_level = level;
	pthread_mutex_unlock(&log_lock);
	return 0;
}

int fl_log_reopen(void)
{
	int rc = 0;

	pthread_mutex_lock(&log_lock);
	if (log_path) {
		FILE *fp = fopen(log_path, "a");
		if (fp) {
			setvbuf(fp, NULL, _IOLBF, 0);
			fclose(log_fp);
			log_fp = fp;
		} else {
			rc = errno; /* keep writing to the old file */
		}
	}
	pthread_mutex_unlock(&log_lock);
	return rc;
}

void fl_log_close(void)
{
	pthread_mutex_lock(&log_lock);
	if (log_fp)
		fclose(log_fp);
	log_fp = NULL;
	free(log_path);
	log_path = NULL;
	pthread_mutex_unlock(&log_lock);
}

/* vsnprintf into msg, cut between two characters if it is too long (its
 * last byte, msg[size - 2], decides where). */
static void cut_msg(char *msg, size_t size, const char *fmt, va_list ap)
{
	if (vsnprintf(msg, size, fmt, ap) >= (int)size)
		msg[shm__utf8_cut(msg, size - 2)] = 0;
}

void fl_log(int level, const char *comp, const char *fmt, ...)
{
	char line[2048];
	struct timespec ts;
	struct tm tm;
	va_list ap;
	int n;

	if (level < log_level)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = snprintf(line, sizeof line,
	             "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s: ",
	             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
	             tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
	             fl_log_level_name(level), comp);
	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof line - 2) /* cut between two characters */
		n = (int)shm__utf8_cut(line, sizeof line - 2);
	/* one event, one line: fold embedded newlines (server messages) */
	for (int i = 0; i < n; i++)
		if (line[i] == '\n' || line[i] == '\r')
			line[i] = ' ';
	while (n > 0 && line[n - 1] == ' ')
		n--;
	line[n++] = '\n';
	pthread_mutex_lock(&log_lock);
	fwrite(line, 1, (size_t)n, log_fp ? log_fp : stderr);
	pthread_mutex_unlock(&log_lock);
}

void fl_log_alert(const char *comp, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	cut_msg(msg, sizeof msg, fmt, ap);
	va_end(ap);
	fl_log(FL_ERROR, comp, "%s", msg);
	pthread_mutex_lock(&log_lock);
	bool to_file = log_fp != NULL;
	pthread_mutex_unlock(&log_lock);
	if (to_file)
		fprintf(stderr, "shm-flusher: %s\n", msg);
}

/* ------------------------------------------------------------ repeats */

/* Whole seconds, rounded. */
static uint64_t secs(uint64_t ms)
{
	return (ms + 500) / 1000;
}

void fl_repeat_init(fl_repeat *r, const char *comp, const char *what,
                    uint64_t remind_s)
{
	memset(r, 0, sizeof *r);
	r->comp = comp;
	r->what = what;
	r->remind_ms = remind_s * 1000;
}

void fl_repeat_fail(fl_repeat *r, int level, const char *fmt, ...)
{
	char msg[1024];
	uint64_t now = fl_mono_ms();
	va_list ap;

	va_start(ap, fmt);
	cut_msg(msg, sizeof msg, fmt, ap);
	va_end(ap);
	r->total++;
	if (!r->failing) {
		r->failing = true;
		r->first_ms = r->said_ms = now;
		r->unsaid = 0;
		fl_log(level, r->comp, "%s", msg);
		return;
	}
	r->unsaid++;
	if (now - r->said_ms < r->remind_ms)
		return;
	fl_log(level, r->comp, "%s: still failing: %" PRIu64 " time%s in the "
	       "last %" PRIu64 " s; the last: %s", r->what, r->unsaid,
	       r->unsaid == 1 ? "" : "s", secs(now - r->said_ms), msg);
	r->said_ms = now;
	r->unsaid = 0;
}

void fl_repeat_ok(fl_repeat *r)
{
	if (!r->failing)
		return;
	fl_log(FL_INFO, r->comp, "%s works again, after %" PRIu64 " failure%s "
	       "in %" PRIu64 " s", r->what, r->total, r->total == 1 ? "" : "s",
	       secs(fl_mono_ms() - r->first_ms));
	r->failing = false;
	r->total = 0;
}
