/* libshm/text.c - validation of text input (UTF-8, NUL bytes, sizes), and
 * input shown printably in error texts, their counts in the plural. */
#include <stdio.h>
#include <string.h>

#include "internal.h"

/* Length of the valid UTF-8 sequence at s (max n bytes), 0 if invalid.
 * Rejects overlongs, surrogates and code points above U+10FFFF. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		return n >= 2 && (s[1] & 0xc0) == 0x80 ? 2 : 0;
	if (c >= 0xe0 && c <= 0xef) {
		if (n < 3 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80)
			return 0;
		if (c == 0xe0 && s[1] < 0xa0)
			return 0; /* overlong */
		if (c == 0xed && s[1] > 0x9f)
			return 0; /* surrogate */
		return 3;
	}
	if (c >= 0xf0 && c <= 0xf4) {
		if (n < 4 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80 ||
		    (s[3] & 0xc0) != 0x80)
			return 0;
		if (c == 0xf0 && s[1] < 0x90)
			return 0;
		if (c == 0xf4 && s[1] > 0x8f)
			return 0;
		return 4;
	}
	return 0;
}

int shm__check_text(const char *what, const char *s, size_t len, size_t max,
                    bool allow_empty)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;

	if (!s)
		return shm__err(SHM_EINVAL, "%s: missing", what);
	if (len == 0 && !allow_empty)
		return shm__err(SHM_EINVAL, "%s: empty", what);
	if (len > max)
		return shm__err(SHM_ETOOBIG, "%s: %zu bytes, at most %zu allowed",
		                what, len, max);
	while (i < len) {
		if (p[i] == 0)
			return shm__err(SHM_ENUL, "%s: NUL byte at offset %zu",
			                what, i);
		size_t k = utf8_seq(p + i, len - i);
		if (k == 0)
			return shm__err(SHM_EUTF8,
			                "%s: invalid UTF-8 at byte offset %zu", what,
			                i);
		i += k;
	}
	return 0;
}

size_t shm__utf8_bad(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;

	while (i < len) {
		if (p[i] < 0x80) { /* the common case: no call */
			i++;
			continue;
		}
		size_t k = utf8_seq(p + i, len - i);
		if (k == 0)
			return i;
		i += k;
	}
	return len;
}

size_t shm__utf8_cut(const char *text, size_t max)
{
	size_t k = max;

	while (k > 0 && max - k < 3 && ((unsigned char)text[k] & 0xc0) == 0x80)
		k--;
	return ((unsigned char)text[k] & 0xc0) == 0x80 ? max : k;
}

size_t shm__printable_seq(const unsigned char *p, size_t avail)
{
	uint32_t cp;
	size_t n;

	if (p[0] < 0x80)
		return p[0] > 0x20 && p[0] < 0x7f;
	if (p[0] >= 0xc2 && p[0] <= 0xdf) {
		n = 2;
		cp = p[0] & 0x1f;
	} else if (p[0] >= 0xe0 && p[0] <= 0xef) {
		n = 3;
		cp = p[0] & 0x0f;
	} else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		n = 4;
		cp = p[0] & 0x07;
	} else {
		return 0;
	}
	if (avail < n)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
	    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0; /* overlong, out of range, surrogate */
	if (cp <= 0xa0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200b) ||
	    cp == 0x2028 || cp == 0x2029 || cp == 0x202f || cp == 0x205f ||
	    cp == 0x3000 || cp == 0xfeff)
		return 0; /* C1 controls, NBSP, Unicode spaces, BOM */
	return n;
}

/* s[0..n) shown into buf: printable UTF-8 and ASCII spaces as they are,
 * any other byte as \xNN, line breaks folded if fold (shm__shown_lines);
 * as many whole characters and escapes as fit in cap bytes. Returns the
 * bytes written (no NUL). */
static size_t show(const unsigned char *u, size_t n, bool fold, char *buf,
                   size_t cap)
{
	static const char hex[] = "0123456789abcdef";
	size_t i = 0, o = 0, k;

	while (i < n) {
		if (fold && (u[i] == '\n' || u[i] == '\r')) {
			while (i < n && (u[i] == '\n' || u[i] == '\r' ||
			                 u[i] == '\t' || u[i] == ' '))
				i++;
			if (i == n || o == cap)
				break; /* a final line break is dropped */
			buf[o++] = ' ';
			continue;
		}
		k = u[i] == ' ' ? 1 : shm__printable_seq(u + i, n - i);
		if (o + (k ? k : 4) > cap)
			break;
		if (k) {
			memcpy(buf + o, u + i, k);
			o += k;
			i += k;
		} else {
			buf[o++] = '\\';
			buf[o++] = 'x';
			buf[o++] = hex[u[i] >> 4];
			buf[o++] = hex[u[i++] & 15];
		}
	}
	return o;
}

/* shm__shown of s[0..len) up to max bytes of it, line breaks folded if
 * fold (shm__shown_lines); buf holds max * 4 + sizeof "..." bytes. */
static const char *shown(const char *s, size_t len, size_t max, bool fold,
                         char *buf)
{
	size_t o = show((const unsigned char *)s, len < max ? len : max, fold,
	                buf, SIZE_MAX);

	strcpy(buf + o, len > max ? "..." : "");
	return buf;
}

const char *shm__shown(const char *s, size_t len, char buf[SHM__SHOWN_MAX])
{
	return shown(s, len, SHM__SHOWN_BYTES, false, buf);
}

const char *shm__shown_str(const char *s, char buf[SHM__SHOWN_MAX])
{
	return shm__shown(s, strnlen(s, SHM__SHOWN_BYTES + 1), buf);
}

const char *shm__shown_long(const char *s, size_t len,
                            char buf[SHM__SHOWN_LONG_MAX])
{
	return shown(s, len, SHM__SHOWN_LONG_BYTES, false, buf);
}

const char *shm__shown_lines(const char *s, char buf[SHM__SHOWN_LONG_MAX])
{
	return shown(s, strnlen(s, SHM__SHOWN_LONG_BYTES + 1),
	             SHM__SHOWN_LONG_BYTES, true, buf);
}

size_t shm__shown_lines_in(const char *s, size_t len, char *buf, size_t size)
{
	size_t o = show((const unsigned char *)s, len, true, buf, size - 1);

	buf[o] = 0;
	return o;
}

const char *shm__plural(unsigned long long n)
{
	return n == 1 ? "" : "s";
}
