/*
 * flusher/log.c - leveled, timestamped log lines, reopened on SIGHUP.
 *
 * One line per event, written with a single write(2) under a mutex so
 * threads never interleave: "2026-01-02T03:04:05.678Z INFO pg: applied 100
 * rows ...", printable UTF-8 whatever its message holds (line breaks
 * folded, other bytes shown \xNN: shm__shown_lines_in). Until
 * fl_log_open() is called (tests), lines go to stderr at level INFO. A
 * failure that repeats is said once, reminded, and ended (fl_repeat).
 *
 * Invariant: a line not written whole (a full disk) is never lost in
 * silence. It is counted; the first line written again is preceded by one
 * saying how many were lost, since when and why, on a line of its own (a
 * line cut short is ended first); the first loss is said on stderr too
 * when the log is a file.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "fl.h"

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static int log_fd = -1;    /* -1: stderr */
static char *log_path;     /* NULL: stderr */
static char log_shown[SHM__SHOWN_LONG_MAX]; /* log_path, printable */
static int log_level = FL_INFO;

/* Lines not written whole since the last line that was (under log_lock). */
static struct {
	uint64_t lines;
	int err;           /* the last failure's errno */
	char since[80];    /* the first one's time */
	bool torn;         /* the log ends inside a line */
} lost;

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

static int open_append(const char *path)
{
	return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0666);
}

int fl_log_open(const char *path, int level)
{
	int fd = -1;

	if (path && *path && strcmp(path, "-") != 0) {
		if ((fd = open_append(path)) < 0)
			return errno;
	}
	pthread_mutex_lock(&log_lock);
	if (log_fd >= 0)
		close(log_fd);
	free(log_path);
	log_fd = fd;
	log_path = fd >= 0 ? strdup(path) : NULL;
	if (log_path)
		shm__shown_long(path, strlen(path), log_shown);
	log_level = level;
	memset(&lost, 0, sizeof lost);
	pthread_mutex_unlock(&log_lock);
	return 0;
}

int fl_log_reopen(void)
{
	int rc = 0;

	pthread_mutex_lock(&log_lock);
	if (log_path) {
		int fd = open_append(log_path);
		if (fd >= 0) {
			close(log_fd);
			log_fd = fd;
			if (lseek(fd, 0, SEEK_END) == 0) /* a new file */
				lost.torn = false;
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
	if (log_fd >= 0)
		close(log_fd);
	log_fd = -1;
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

/* Writes buf whole unless write fails: the bytes written (fewer: errno
 * says why). */
static size_t write_all(int fd, const char *buf, size_t n)
{
	size_t done = 0;

	while (done < n) {
		ssize_t w = write(fd, buf + done, n - done);
		if (w > 0)
			done += (size_t)w;
		else if (w == 0)
			errno = EIO;
		if (w <= 0 && errno != EINTR)
			break;
	}
	return done;
}

/* Writes one line (n bytes, its '\n' included) under log_lock, preceded by
 * the count of lines lost, if any. True when this line is the first lost
 * since a line was written whole. */
static bool write_line(const char *stamp, const char *line, size_t n)
{
	char out[1024 + 2048]; /* the count's line, then line (<= 2048) */
	size_t k = 0;

	if (lost.lines) {
		int m = snprintf(out, 1024, "%s%s WARN log: %" PRIu64 " line%s "
		                 "lost since %s (write %s: %s)\n",
		                 lost.torn ? "\n" : "", stamp, lost.lines,
		                 shm__plural(lost.lines), lost.since,
		                 log_path ? log_shown : "stderr",
		                 strerror(lost.err));
		k = m < 1024 ? (size_t)m : shm__utf8_cut(out, 1022) + 1;
		out[k - 1] = '\n'; /* a long path cut: the line still ends */
	}
	memcpy(out + k, line, n);
	k += n;
	size_t w = write_all(log_fd >= 0 ? log_fd : STDERR_FILENO, out, k);
	if (w == k) {
		memset(&lost, 0, sizeof lost);
		return false;
	}
	lost.err = errno;
	lost.torn |= w > 0;
	if (lost.lines++)
		return false;
	snprintf(lost.since, sizeof lost.since, "%s", stamp);
	return true;
}

void fl_log(int level, const char *comp, const char *fmt, ...)
{
	char msg[2048], line[2048], stamp[80];
	char first_lost[SHM__SHOWN_LONG_MAX + 256] = "";
	struct timespec ts;
	struct tm tm;
	va_list ap;
	int n;

	if (level < log_level)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	snprintf(stamp, sizeof stamp, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ",
	         tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
	         tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
	n = snprintf(line, sizeof line, "%s %s %s: ", stamp,
	             fl_log_level_name(level), comp);
	va_start(ap, fmt);
	cut_msg(msg, sizeof msg, fmt, ap);
	va_end(ap);
	/* one event, one printable line: line breaks folded (server
	 * messages), other controls and invalid UTF-8 shown \xNN, cut between
	 * two characters or escapes, room left for the '\n' */
	n += (int)shm__shown_lines_in(msg, strlen(msg), line + n,
	                              sizeof line - (size_t)n);
	while (n > 0 && line[n - 1] == ' ')
		n--;
	line[n++] = '\n';
	pthread_mutex_lock(&log_lock);
	if (write_line(stamp, line, (size_t)n) && log_path)
		snprintf(first_lost, sizeof first_lost, "shm-flusher: write %s: "
		         "%s: log lines are lost until a write works again, "
		         "which logs their count first\n", log_shown,
		         strerror(lost.err));
	pthread_mutex_unlock(&log_lock);
	if (*first_lost)
		fputs(first_lost, stderr);
}

void fl_log_alert(const char *comp, const char *fmt, ...)
{
	char msg[1024], shown[sizeof msg * 4];
	va_list ap;

	va_start(ap, fmt);
	cut_msg(msg, sizeof msg, fmt, ap);
	va_end(ap);
	fl_log(FL_ERROR, comp, "%s", msg);
	pthread_mutex_lock(&log_lock);
	bool to_file = log_fd >= 0;
	pthread_mutex_unlock(&log_lock);
	if (!to_file)
		return;
	/* one printable line, shown as fl_log shows it (whole: 4 bytes
	 * at most for each of msg's) */
	shm__shown_lines_in(msg, strlen(msg), shown, sizeof shown);
	fprintf(stderr, "shm-flusher: %s\n", shown);
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
	       shm__plural(r->unsaid), secs(now - r->said_ms), msg);
	r->said_ms = now;
	r->unsaid = 0;
}

void fl_repeat_ok(fl_repeat *r)
{
	if (!r->failing)
		return;
	fl_log(FL_INFO, r->comp, "%s works again, after %" PRIu64 " failure%s "
	       "in %" PRIu64 " s", r->what, r->total, shm__plural(r->total),
	       secs(fl_mono_ms() - r->first_ms));
	r->failing = false;
	r->total = 0;
}
