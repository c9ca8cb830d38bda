/* libshm/uuid.c - UUID parsing, formatting and time-ordered v7 generation. */
#include <pthread.h>
#include <string.h>
#include <sys/random.h>

#include "internal.h"

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int shm_uuid_parse(const char *s, shm_uuid *out)
{
	static const int dash[] = {8, 13, 18, 23};
	shm_uuid u;
	int i, j = 0, d = 0;
	char shown[SHM__SHOWN_MAX];

	if (out)
		memset(out, 0, sizeof *out);
	if (!s)
		return shm__null(__func__, "s");
	if (!out)
		return shm__null(__func__, "out");
	if (strlen(s) != 36)
		goto bad;
	for (i = 0; i < 36; i++) {
		if (d < 4 && i == dash[d]) {
			if (s[i] != '-')
				goto bad;
			d++;
			continue;
		}
		int hi = hexval(s[i]), lo = hexval(s[i + 1]);
		if (hi < 0 || lo < 0)
			goto bad;
		u.b[j++] = (uint8_t)(hi << 4 | lo);
		i++;
	}
	*out = u;
	return 0;
bad:
	return shm__err(SHM_EUUID, "uuid '%s': expected 8-4-4-4-12 hex digits",
	                shm__shown_str(s, shown));
}

bool shm__uuid_lower(char *s, size_t len)
{
	if (len != 36)
		return false;
	for (size_t i = 0; i < 36; i++)
		if (i == 8 || i == 13 || i == 18 || i == 23 ? s[i] != '-'
		                                            : hexval(s[i]) < 0)
			return false;
	for (size_t i = 0; i < 36; i++)
		if (s[i] >= 'A' && s[i] <= 'F')
			s[i] = (char)(s[i] - 'A' + 'a');
	return true;
}

int shm__uuid_cmp(const void *a, const void *b)
{
	return memcmp(a, b, 16);
}

void shm_uuid_format(const shm_uuid *u, char out[37])
{
	static const char hex[] = "0123456789abcdef";
	int i, o = 0;

	for (i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[o++] = '-';
		out[o++] = hex[u->b[i] >> 4];
		out[o++] = hex[u->b[i] & 15];
	}
	out[o] = '\0';
}

bool shm_uuid_is_nil(const shm_uuid *u)
{
	static const shm_uuid nil;
	return memcmp(u, &nil, sizeof nil) == 0;
}

/* UUIDv7: 48-bit ms timestamp, then a 12-bit counter in rand_a so ids made in
 * the same millisecond by this process stay ordered, then 62 random bits. */
void shm_uuid_v7(shm_uuid *out)
{
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	static uint64_t last_ms;
	static uint16_t counter;
	uint64_t ms = (uint64_t)shm_now_us() / 1000;
	uint8_t rnd[10];
	uint16_t c;

	if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) {
		/* getrandom on Linux >= 3.17 does not fail for 10 bytes; keep a
		 * usable id anyway from the clock. */
		uint64_t t = shm__mono_ns();
		memcpy(rnd, &t, 8);
		rnd[8] = rnd[9] = 0x5a;
	}
	pthread_mutex_lock(&lock);
	if (ms <= last_ms) {
		ms = last_ms;
		if (++counter > 0x0fff) { /* borrow the next millisecond */
			ms = ++last_ms;
			counter = 0;
		}
	} else {
		last_ms = ms;
		counter = (uint16_t)((rnd[0] << 8 | rnd[1]) & 0x01ff);
	}
	c = counter;
	pthread_mutex_unlock(&lock);

	for (int i = 0; i < 6; i++)
		out->b[i] = (uint8_t)(ms >> (40 - 8 * i));
	out->b[6] = (uint8_t)(0x70 | (c >> 8));
	out->b[7] = (uint8_t)c;
	out->b[8] = (uint8_t)(0x80 | (rnd[2] & 0x3f));
	memcpy(out->b + 9, rnd + 3, 7);
}
