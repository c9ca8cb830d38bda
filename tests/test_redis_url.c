/* tests/test_redis_url.c - shm_redis_url_parse: every form libshm's
 * read-through and the flusher accept, and a clear error for each bad one;
 * shm_env_open refuses a bad redis_url before creating anything. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "internal.h"
#include "testutil.h"

static void parses(const char *url, const char *host, int port, int db,
                   const char *user, const char *password, bool unix_socket)
{
	shm_redis_addr a;
	assert_int_equal(shm_redis_url_parse(url, &a), 0);
	assert_string_equal(a.host, host);
	assert_int_equal(a.port, port);
	assert_int_equal(a.db, db);
	assert_string_equal(a.user, user);
	assert_string_equal(a.password, password);
	assert_int_equal(a.unix_socket, unix_socket);
}

static void refuses(const char *url, const char *why)
{
	shm_redis_addr a;
	assert_int_equal(shm_redis_url_parse(url, &a), SHM_EINVAL);
	if (!strstr(shm_errmsg(), why))
		fail_msg("'%s': message '%s' lacks '%s'", url, shm_errmsg(), why);
}

static void test_tcp_forms(void **state)
{
	parses("redis://localhost", "localhost", 6379, 0, "", "", false);
	parses("redis://10.0.0.2:6380/3", "10.0.0.2", 6380, 3, "", "", false);
	parses("redis://cache:7000/", "cache", 7000, 0, "", "", false);
	parses("redis://:s3cret@cache", "cache", 6379, 0, "", "s3cret", false);
	parses("redis://s3cret@cache/1", "cache", 6379, 1, "", "s3cret", false);
	parses("redis://app:p@ss:w/rd@cache:1/2", "cache", 1, 2, "app",
	       "p@ss:w/rd", false);
	/* an IPv6 address in brackets, as in URLs */
	parses("redis://[::1]:6380/2", "::1", 6380, 2, "", "", false);
	parses("redis://:pw@[fd00::5]", "fd00::5", 6379, 0, "", "pw", false);
	parses("redis://[::1]", "::1", 6379, 0, "", "", false);
	parses("redis://[::ffff:10.0.0.2]/1", "::ffff:10.0.0.2", 6379, 1, "",
	       "", false);
	parses("redis://[fe80::1%eth0]:6380", "fe80::1%eth0", 6380, 0, "", "",
	       false);
}

static void test_unix_forms(void **state)
{
	parses("unix:///run/redis.sock", "/run/redis.sock", 0, 0, "", "", true);
	parses("unix:///run/redis.sock?db=5", "/run/redis.sock", 0, 5, "", "",
	       true);
	parses("unix://:pw@/tmp/a@b/r.sock", "/tmp/a@b/r.sock", 0, 0, "", "pw",
	       true);
	parses("unix://app:pw@/r.sock?db=2", "/r.sock", 0, 2, "app", "pw", true);
}

static void test_bad_urls_say_what_is_wrong(void **state)
{
	char long_pw[400];
	refuses("http://cache", "expected redis://");
	refuses("cache:6379", "expected redis://");
	refuses("redis://", "no host");
	refuses("redis://:pw@", "no host");
	refuses("redis://cache:0", "bad port");
	refuses("redis://cache:65536", "bad port");
	refuses("redis://cache:63x9", "bad port");
	refuses("redis://cache/one", "bad db number");
	refuses("redis://cache/-1", "bad db number");
	/* numbers are digits: strtol took spaces and '+' */
	refuses("redis://cache:+80", "bad port, not 1..65535");
	refuses("redis://cache: 80", "bad port");
	refuses("redis://cache:", "bad port");
	refuses("redis://cache:99999999999999999999", "bad port");
	refuses("redis://cache/+1", "bad db number, not 0..100000");
	refuses("redis://cache/ 1", "bad db number");
	refuses("redis://cache/1 ", "bad db number");
	refuses("unix:///r.sock?db=+1", "bad db number, not 0..100000");
	refuses("unix:///r.sock?db=-0", "bad db number");
	/* what no host name holds is refused here, not sent to DNS */
	refuses("redis://cache?db=1", "character '?' in the host");
	refuses("redis://ca che:6379", "character ' ' in the host");
	refuses("redis://cache#1", "character '#' in the host");
	refuses("redis://[::1", "'[' without its ']'");
	refuses("redis://[::1]6379", "expected ':PORT' or '/DB' after ']'");
	refuses("redis://[]", "no host");
	/* brackets hold an IPv6 address: a name or an IPv4 address in them
	 * was taken as the host */
	refuses("redis://[name]", "'redis://[name]': host '[name]': not an "
	        "IPv6 address, which alone goes in brackets (invalid argument)");
	refuses("redis://[127.0.0.1]:6379", "host '[127.0.0.1]': not an IPv6");
	refuses("redis://[a:b]", "host '[a:b]': not an IPv6");
	refuses("redis://[::1::2]", "host '[::1::2]': not an IPv6");
	refuses("redis://[::1%]", "host '[::1%]': not an IPv6");
	refuses("redis://[::1%a:b]", "host '[::1%a:b]': not an IPv6");
	refuses("unix://run/redis.sock", "absolute/path");
	refuses("unix://", "absolute/path");
	refuses("unix:///r.sock?db=", "?db=N");
	refuses("unix:///r.sock?database=1", "?db=N");
	refuses("unix:///r.sock?db=1x", "bad db number");
	memset(long_pw, 'p', sizeof long_pw - 16);
	strcpy(long_pw + sizeof long_pw - 16, "@cache");
	char url[sizeof long_pw + 16] = "redis://:";
	strcat(url, long_pw);
	refuses(url, "password too long");
}

/* A refused URL is named with its password as "***" (messages end up in
 * logs), user and host kept. One whose "://" is mistyped too, or a unix://
 * one whose path lacks its '/': before, its text was shown whole, password
 * included. */
static void test_a_refused_url_does_not_show_its_password(void **state)
{
	static const struct { const char *url, *shown; } cases[] = {
		{"redis://app:s3cret@cache:notaport", "'redis://app:***@cache:notaport'"},
		{"redis://s3cret@cache/x", "'redis://***@cache/x'"},
		{"redis://:s3cret@", "'redis://:***@'"},
		{"unix://app:s3cret@/r.sock?db=x", "'unix://app:***@/r.sock?db=x'"},
		{"unix://s3cret@/r.sock?dbx", "'unix://***@/r.sock?dbx'"},
		{"redis:/app:s3cret@cache", "'redis:***@cache'"},
		{"redis:'//app:s3cret@cache:6379'", "'redis:***@cache:6379''"},
		{"redis//s3cret@cache", "'***@cache'"},
		{"redis:/app:s3cret@x://", "'redis:***@x://'"},
		{"rediss://app:s3cret@cache", "'rediss://app:***@cache'"},
		{"unix://app:s3cret@r.sock", "'unix://app:***@r.sock'"},
		{"unix://s3cret@", "'unix://***@'"},
		/* a password alone, then a mistyped rest with ':' and '@':
		 * the parser's user name was "s3cret@cache", shown */
		{"redis://s3cret@cache:1@]", "'redis://***@]'"},
		{"unix://s3cret@x:y@z", "'unix://***@z'"},
	};
	shm_redis_addr a;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		assert_int_equal(shm_redis_url_parse(cases[i].url, &a),
		                 SHM_EINVAL);
		if (strstr(shm_errmsg(), "s3cret") ||
		    !strstr(shm_errmsg(), cases[i].shown))
			fail_msg("'%s': message '%s', expected it to show %s",
			         cases[i].url, shm_errmsg(), cases[i].shown);
	}
}

/* A refused URL is quoted printably, as shm_errmsg() quotes any input
 * (README): it was quoted raw, a control character included (a terminal
 * escape, a newline that forges a log line) and invalid UTF-8 too. */
static void test_a_refused_url_is_shown_printably(void **state)
{
	static const struct { const char *url, *shown; } cases[] = {
		{"redis://ca\x1b[2Jche", "'redis://ca\\x1b[2Jche': character "
		                         "\\x1b in the host"},
		{"unix://r\xff.sock", "'unix://r\\xff.sock': expected"},
		{"redis://app:s3cret@ca\nche", "'redis://app:***@ca\\x0ache'"},
		{"redis\x7f://x", "'redis\\x7f://x'"},
	};
	shm_redis_addr a;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		assert_int_equal(shm_redis_url_parse(cases[i].url, &a),
		                 SHM_EINVAL);
		const char *m = shm_errmsg();
		bool printable = true;
		for (const unsigned char *p = (const unsigned char *)m; *p; p++)
			printable &= *p >= 0x20 && *p < 0x7f;
		if (!printable || !strstr(m, cases[i].shown))
			fail_msg("case %zu: message '%s', expected it to show %s",
			         i, m, cases[i].shown);
	}
	/* a long one is cut, the text keeping what is wrong and whole
	 * characters: its two parts around the password, each shown up to
	 * 80 bytes, could fill the text, which was cut at 511 bytes, the
	 * reason lost, inside an 'é' for some */
	for (int pad = 0; pad < 2; pad++) {
		char url[512] = "redis://";
		size_t n = strlen(url);
		memset(url + n, 1, 100); /* a user name */
		n += 100;
		n += (size_t)sprintf(url + n, ":s3cret@");
		memset(url + n, 'a', (size_t)pad);
		n += (size_t)pad;
		memset(url + n, 2, 50);
		n += 50;
		for (int i = 0; i < 20; i++)
			n += (size_t)sprintf(url + n, "é");
		assert_int_equal(shm_redis_url_parse(url, &a), SHM_EINVAL);
		const char *m = shm_errmsg();
		size_t len = strlen(m);
		if (shm__utf8_bad(m, len) != len || strstr(m, "s3cret") ||
		    !strstr(m, "': character \\x02 in the host (invalid "
		               "argument)"))
			fail_msg("pad %d: message '%s'", pad, m);
	}
}

static void test_env_open_refuses_a_bad_redis_url_and_creates_nothing(void **state)
{
	char *parent = tu_tmpdir(), dir[512];
	shm_options o;
	shm_env *env = NULL;
	struct stat st;

	snprintf(dir, sizeof dir, "%s/env", parent);
	shm_options_init(&o);
	o.redis_url = "redis://cache:notaport";
	assert_int_equal(shm_env_open(dir, &o, &env), SHM_EINVAL);
	assert_null(env);
	assert_non_null(strstr(shm_errmsg(), "bad port"));
	assert_int_not_equal(stat(dir, &st), 0);
	tu_rmdir(parent);
	free(parent);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tcp_forms),
		cmocka_unit_test(test_unix_forms),
		cmocka_unit_test(test_bad_urls_say_what_is_wrong),
		cmocka_unit_test(test_a_refused_url_does_not_show_its_password),
		cmocka_unit_test(test_a_refused_url_is_shown_printably),
		cmocka_unit_test(test_env_open_refuses_a_bad_redis_url_and_creates_nothing),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
