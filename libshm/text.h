/*
 * text.h - checks of text input, its printable rendering in error texts
 * and their plurals (text.c), for libshm, the flusher and the tools, which link libshm
 * statically: shm__ names, not exported by the shared library. Not
 * installed.
 */
#ifndef SHM_TEXT_H
#define SHM_TEXT_H

#include <stdbool.h>
#include <stddef.h>

/* 0 if s[0..len) is valid UTF-8 without NUL; SHM_EUTF8 / SHM_ENUL else.
 * what names the field in the error message. */
int shm__check_text(const char *what, const char *s, size_t len, size_t max,
                    bool allow_empty);
/* Offset of the first byte of s[0..len) that does not start a valid UTF-8
 * sequence (the rules of shm__check_text, but NUL is allowed); len if all
 * of it is valid. */
size_t shm__utf8_bad(const char *s, size_t len);
/* Where to cut text (more than max bytes: text[max] is readable) at most
 * max bytes in without splitting a UTF-8 sequence: before the sequence
 * that byte max is in. */
size_t shm__utf8_cut(const char *text, size_t max);
/* Length of the UTF-8 sequence at p (avail bytes there) that encodes a
 * printable, non-space code point; 0 if invalid, whitespace or control. */
size_t shm__printable_seq(const unsigned char *p, size_t avail);

/* Input quoted in an error text, shown printably: its first
 * SHM__SHOWN_BYTES bytes, printable UTF-8 and ASCII spaces as they are,
 * any other byte (invalid UTF-8, controls, Unicode spaces) as \xNN, then
 * "..." if it goes on. Returns buf. The text must never carry the raw
 * bytes: it may be printed to a terminal or a log line. */
#define SHM__SHOWN_BYTES 80
#define SHM__SHOWN_MAX (SHM__SHOWN_BYTES * 4 + sizeof "...")
const char *shm__shown(const char *s, size_t len, char buf[SHM__SHOWN_MAX]);
/* shm__shown of a NUL-terminated s (read no further than it shows). */
const char *shm__shown_str(const char *s, char buf[SHM__SHOWN_MAX]);
/* shm__shown with room for a text of use only whole, a path or another
 * library's message: as many bytes as an error text holds (errors.c), so
 * that the cut seen is that text's, between characters. */
#define SHM__SHOWN_LONG_BYTES 512
#define SHM__SHOWN_LONG_MAX (SHM__SHOWN_LONG_BYTES * 4 + sizeof "...")
const char *shm__shown_long(const char *s, size_t len,
                            char buf[SHM__SHOWN_LONG_MAX]);
/* shm__shown_long of a NUL-terminated text of lines, another library's
 * message ("ERROR:  ...\nDETAIL:  ...\n", libpq's), on one line: each line
 * break, with the spaces and tabs that indent the next line, as one space
 * (one in a name the text quotes too), a final one dropped. */
const char *shm__shown_lines(const char *s, char buf[SHM__SHOWN_LONG_MAX]);
/* s[0..len) shown as shm__shown_lines shows it, whole, without "...": as
 * much of it as fits in buf (size bytes, size >= 1), cut between two
 * characters or escapes, NUL-terminated. Returns its length. A log line's
 * (flusher/log.c). */
size_t shm__shown_lines_in(const char *s, size_t len, char *buf, size_t size);

/* The plural "s" of a noun counted n, "" for 1: "%llu byte%s", n,
 * shm__plural(n). */
const char *shm__plural(unsigned long long n);

#endif
