/* tests/test_flusher.c - shm-flusher: configuration, lock, dead letters, and
 * end-to-end mirroring into a real Redis and PostgreSQL (SHM_TEST_REDIS,
 * SHM_TEST_PG, started by tests/run.sh; those tests skip without them). */
#include <arpa/inet.h>
#include <dirent.h>
#include <dlfcn.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "flusher_test.h"
#include "internal.h"
#include "../flusher/invalidate.h"
#include "pg_row.h"

/* ------------------------------------------------------------- config */

static void test_config_defaults_file_then_flags(void **state)
{
	char *dir = tu_tmpdir(), path[4096], err[512];
	fl_config c;

	snprintf(path, sizeof path, "%s/flusher.conf", dir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fprintf(f, "# comment\n\nenv = /from/file\nbatch-records = 500\n"
	        "pg = \"host=/tmp port=5 dbname=x\"\nstatic-sha = SHA256\n");
	fclose(f);
	char *argv[] = {"shm-flusher", "--config", path, "--batch-records=7",
	                "--redis", "unix:///tmp/r.sock", "-e", "/from/flag",
	                "--once", NULL};
	assert_int_equal(fl_config_load(&c, 9, argv, err, sizeof err), 0);
	assert_string_equal(c.env_dir, "/from/flag");
	assert_int_equal(c.batch_records, 7);
	assert_int_equal(c.batch_ms, 100);           /* default */
	assert_int_equal(c.sync_interval_ms, 1000);  /* default */
	assert_string_equal(c.pg_conninfo, "host=/tmp port=5 dbname=x");
	assert_string_equal(c.static_sha, "sha256");
	assert_true(c.once);
	fl_config_free(&c);
	ft_rmdir(dir);
	free(dir);
}

static void test_config_rejects_bad_input_with_reason(void **state)
{
	char err[512];
	fl_config c;
	struct {
		char *argv[7];
		const char *want;
	} cases[] = {
		{{"f", "-e", "d", "--pg", "x", "--batch-records=0"}, "batch-records"},
		/* a number is digits: strtoull took " 5" and "+5" */
		{{"f", "-e", "d", "--pg", "x", "--batch-ms", " 5"},
		 "batch-ms: ' 5' is not an integer in [0, 600000]"},
		{{"f", "-e", "d", "--pg", "x", "--batch-ms=+5"},
		 "batch-ms: '+5' is not an integer in [0, 600000]"},
		{{"f", "-e", "d", "--pg", "x", "--batch-ms=5 "},
		 "batch-ms: '5 ' is not an integer"},
		{{"f", "-e", "d", "--pg", "x", "--batch-ms="},
		 "batch-ms: '' is not an integer"},
		{{"f", "-e", "d", "--pg", "x", "--batch-ms=-0"},
		 "batch-ms: '-0' is not an integer"},
		{{"f", "-e", "d", "--pg", "x", "--compress-threshold",
		  "18446744073709551616"}, "compress-threshold: "
		 "'18446744073709551616' is not an integer in [0, 4294967295]"},
		{{"f", "-e", "d", "--pg", "x", "--bogus"}, "unknown option"},
		/* the allowed values named: "see --help" named none */
		{{"f", "-e", "d", "--pg", "x", "--static-sha=md5"},
		 "static-sha: 'md5' is not one of sha1, sha256"},
		{{"f", "-e", "d", "--pg", "x", "--log-level", "verbose"},
		 "log-level: 'verbose' is not one of debug, info, warn, error"},
		{{"f", "-e", "d", "--redis", "http://x", NULL}, "redis URL"},
		{{"f", "-e", "d", "--redis", "redis://h:99999", NULL}, "bad port"},
		{{"f", "-e", "d", "--redis", "unix://relative", NULL},
		 "absolute/path"},
		{{"f", "-e", "d", NULL}, "no sink"},
		{{"f", "--pg", "x", NULL}, "no environment"},
		{{"f", "-e", "d", "--pg", "x", "--batch-ms"}, "needs a value"},
		{{"f", "-e", "d", "--pg", "postgresql://u:pa%%zz@h/db", NULL},
		 "libpq cannot parse it: invalid percent-encoded token"},
		{{"f", "-e", "d", "--pg", "dbname=x", "--pg-schema",
		  "/nonexistent/schema.sql"}, "/nonexistent/schema.sql: No such"},
		{{"f", "-e", "d", "--pg", "dbname=x", "--pg-schema", "/"},
		 "--pg-schema /: not a regular file"},
		/* libpq connects to a hostaddr as given: a name there fails
		 * every connect, which the flusher would retry for ever */
		{{"f", "-e", "d", "--pg", "hostaddr=db.example dbname=x", NULL},
		 "--pg: hostaddr 'db.example': not a numeric address"},
		{{"f", "-e", "d", "--pg", "hostaddr=127.0.0.1,x", NULL},
		 "hostaddr 'x': not a numeric address"},
		{{"f", "-e", "d", "--pg", "dbname=x", "--no-once"},
		 "unknown option '--no-once'"},
		/* a flag alone is no yes/no setting: --once=no did a drain,
		 * --help=no showed no help */
		{{"f", "-e", "d", "--pg", "dbname=x", "--once=no"},
		 "option '--once=no' takes no value"},
		{{"f", "-e", "d", "--pg", "dbname=x", "--help=no"},
		 "option '--help=no' takes no value"},
		{{"f", "-e", "d", "--pg", "dbname=x", "-Vx"},
		 "option '-Vx' takes no value"},
		/* the name in shm_sink_positions and on the invalidation
		 * channel: a space or a 64th byte is refused, not trimmed at
		 * start-up into another host's name or no invalidation */
		{{"f", "-e", "d", "--pg", "dbname=x", "--env-id", "host a"},
		 "env-id: byte 4 (0x20) is not a printable ASCII character"},
		{{"f", "-e", "d", "--pg", "dbname=x", "--env-id",
		  "0123456789012345678901234567890123456789012345678901234567890123"},
		 "env-id: 64 bytes, at most 63"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		int argc = 0;
		while (argc < 7 && cases[i].argv[argc])
			argc++;
		err[0] = 0;
		assert_int_not_equal(fl_config_load(&c, argc, cases[i].argv,
		                                    err, sizeof err), 0);
		if (!strstr(err, cases[i].want))
			fail_msg("case %zu: '%s' does not mention '%s'", i, err,
			         cases[i].want);
		assert_null(strstr(err, "zz")); /* the password stays out */
		fl_config_free(&c);
	}
}

/* A config file line that is not 'key = value' is refused, naming the
 * file and the line. */
static void test_config_file_line_without_equals_is_refused(void **state)
{
	char *dir = tu_tmpdir(), path[4096], err[512], want[4200];
	fl_config c;

	snprintf(path, sizeof path, "%s/flusher.conf", dir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fprintf(f, "env = /e\npg = dbname=x\n# batch-ms = 5\nbatch-ms 50\n");
	fclose(f);
	char *argv[] = {"shm-flusher", "--config", path, NULL};
	assert_int_not_equal(fl_config_load(&c, 3, argv, err, sizeof err), 0);
	snprintf(want, sizeof want, "%s:4: expected 'key = value'", path);
	assert_string_equal(err, want);
	fl_config_free(&c);
	ft_rmdir(dir);
	free(dir);
}

/* A key given twice in a config file is an error naming both lines (which
 * value was meant?); so is a flag given twice on the command line (the
 * last one won before), --name and --no-name being one setting; a flag
 * still overrides the file's key. */
static void test_config_file_key_twice_is_refused(void **state)
{
	char *dir = tu_tmpdir(), path[4096], err[512];
	fl_config c;

	snprintf(path, sizeof path, "%s/flusher.conf", dir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fprintf(f, "env = /e\nbatch-ms = 50\npg = dbname=x\nbatch-ms = 70\n");
	fclose(f);
	char *argv[] = {"shm-flusher", "--config", path, NULL};
	assert_int_not_equal(fl_config_load(&c, 3, argv, err, sizeof err), 0);
	assert_non_null(strstr(err, ":4: 'batch-ms' is already set on line 2"));
	fl_config_free(&c);
	struct {
		char *argv[9];
		const char *want;
	} twice[] = {
		{{"f", "-e", "/e", "--pg", "dbname=x", "--batch-ms", "50",
		  "--batch-ms=70"}, "option --batch-ms given twice"},
		{{"f", "-e", "/e", "--pg", "dbname=x", "--env", "/f"},
		 "option --env given twice"},
		{{"f", "-e", "/e", "--redis", "unix:///r", "--invalidation",
		  "--no-invalidation"}, "option --invalidation given twice"},
		{{"f", "-e", "/e", "--pg", "dbname=x", "--once", "--once"},
		 "option --once given twice"},
		{{"f", "--config", path, "-c", path}, "option --config given "
		 "twice"},
	};
	for (size_t i = 0; i < sizeof twice / sizeof twice[0]; i++) {
		int argc = 0;
		while (argc < 9 && twice[i].argv[argc])
			argc++;
		err[0] = 0;
		assert_int_not_equal(fl_config_load(&c, argc, twice[i].argv,
		                                    err, sizeof err), 0);
		if (!strstr(err, twice[i].want))
			fail_msg("case %zu: '%s' does not mention '%s'", i, err,
			         twice[i].want);
		fl_config_free(&c);
	}
	f = fopen(path, "w");
	assert_non_null(f);
	fprintf(f, "env = /e\nbatch-ms = 50\npg = dbname=x\n");
	fclose(f);
	char *over[] = {"shm-flusher", "--config", path, "--batch-ms", "70",
	                NULL};
	assert_int_equal(fl_config_load(&c, 5, over, err, sizeof err), 0);
	assert_int_equal(c.batch_ms, 70);
	fl_config_free(&c);
	ft_rmdir(dir);
	free(dir);
}

/* Whether err may go to a terminal as it is: UTF-8 without controls. */
static bool printable_text(const char *err)
{
	size_t n = strlen(err);

	for (size_t i = 0; i < n; i++)
		if ((unsigned char)err[i] < 0x20 || err[i] == 0x7f)
			return false;
	return shm__utf8_bad(err, n) == n;
}

/* A value, an option or a file name quoted in a config error is shown
 * printably (as libshm's error texts show input): an escape sequence or
 * invalid UTF-8 reaches stderr as \xNN, never raw. */
static void test_config_errors_show_values_printably(void **state)
{
	char *dir = tu_tmpdir(), path[4096], err[1024];
	fl_config c;
	struct {
		char *argv[7];
		const char *want;
	} cases[] = {
		{{"f", "-e", "d", "--pg", "x", "--batch-ms", "\x1b[2J5"},
		 "batch-ms: '\\x1b[2J5' is not an integer"},
		{{"f", "-e", "d", "--pg", "x", "--static-sha=sha\xff"},
		 "static-sha: 'sha\\xff' is not one of"},
		{{"f", "-e", "d", "--pg", "x", "--invalidation=\rno"},
		 "invalidation: '\\x0dno' is not yes or no"},
		{{"f", "-e", "d", "--pg", "x", "--bo\x1b]0;x\x07gus"},
		 "unknown option '--bo\\x1b]0;x\\x07gus'"},
		{{"f", "-e", "d", "--pg", "x", "\xc3("},
		 "unexpected argument '\\xc3('"},
		{{"f", "-e", "d", "--pg", "x", "--once=\x1b"},
		 "option '--once=\\x1b' takes no value"},
		{{"f", "-e", "d", "--pg", "dbname=x", "--pg-schema", "/no/\x1b[1m"},
		 "--pg-schema /no/\\x1b[1m: No such file"},
		{{"f", "-e", "d", "--redis", "redis://h\x1b:1", NULL},
		 "h\\x1b"},
		{{"f", "-c", "/no/\x9b" "31m.conf", NULL},
		 "config /no/\\x9b31m.conf: No such file"},
		/* an unknown option's name, and ours */
		{{"f", "-e", "d", "--pg", "a\"b\x1b=1", NULL},
		 "--pg: unknown connection option 'a\"b\\x1b'"},
		{{"f", "-e", "d", "--pg", "hostaddr=1.2.3\x1b", NULL},
		 "--pg: hostaddr '1.2.3\\x1b': not a numeric address"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		int argc = 0;
		while (argc < 7 && cases[i].argv[argc])
			argc++;
		err[0] = 0;
		assert_int_not_equal(fl_config_load(&c, argc, cases[i].argv,
		                                    err, sizeof err), 0);
		if (!strstr(err, cases[i].want) || !printable_text(err))
			fail_msg("case %zu: '%s' is not '%s' shown", i, err,
			         cases[i].want);
		fl_config_free(&c);
	}
	snprintf(path, sizeof path, "%s/\x1b[31m.conf", dir);
	const char *lines[] = {
		"env = /e\npg = dbname=x\nbatch-ms = 5\x1b[0m\n",
		"env = /e\npg = dbname=x\nbatch\xe2\x80\x8b-ms = 5\n",
		"env = /e\npg = dbname=x\nstatic-sha = sha1 #\x07\n",
	};
	const char *want[] = {
		"\\x1b[31m.conf:3: batch-ms: '5\\x1b[0m' is not an integer",
		"\\x1b[31m.conf:3: unknown option 'batch\\xe2\\x80\\x8b-ms'",
		"\\x1b[31m.conf:3: static-sha: 'sha1 #\\x07': a comment",
	};
	char *argv[] = {"shm-flusher", "--config", path, NULL};
	for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
		FILE *f = fopen(path, "w");
		assert_non_null(f);
		fputs(lines[i], f);
		fclose(f);
		err[0] = 0;
		assert_int_not_equal(fl_config_load(&c, 3, argv, err,
		                                    sizeof err), 0);
		if (!strstr(err, want[i]) || !printable_text(err))
			fail_msg("line %zu: '%s' is not '%s' shown", i, err,
			         want[i]);
		fl_config_free(&c);
	}
	ft_rmdir(dir);
	free(dir);
}

/* A number in the config file is digits, as on the command line: the
 * value is named with its line. */
static void test_config_file_numbers_are_digits(void **state)
{
	char *dir = tu_tmpdir(), path[4096], err[512];
	char *argv[] = {"shm-flusher", "--config", path, NULL};
	fl_config c;

	snprintf(path, sizeof path, "%s/flusher.conf", dir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fprintf(f, "env = /e\npg = dbname=x\nbatch-ms = +5\n");
	fclose(f);
	assert_int_not_equal(fl_config_load(&c, 3, argv, err, sizeof err), 0);
	if (!strstr(err, ":3: batch-ms: '+5' is not an integer in [0, 600000]"))
		fail_msg("'%s'", err);
	fl_config_free(&c);
	ft_rmdir(dir);
	free(dir);
}

/* A command-line-only option in the config file is said to be one, with
 * where it goes: "unknown option 'once' (command line only)" called it
 * unknown. */
static void test_config_file_flag_only_key_says_where_it_goes(void **state)
{
	char *dir = tu_tmpdir(), path[4096], err[512];
	char *argv[] = {"shm-flusher", "--config", path, NULL};
	fl_config c;

	snprintf(path, sizeof path, "%s/flusher.conf", dir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fprintf(f, "env = /e\npg = dbname=x\nonce = yes\n");
	fclose(f);
	assert_int_not_equal(fl_config_load(&c, 3, argv, err, sizeof err), 0);
	if (!strstr(err, "flusher.conf:3: 'once' is no config file key: give "
	                 "--once on the command line"))
		fail_msg("'%s'", err);
	fl_config_free(&c);
	ft_rmdir(dir);
	free(dir);
}

/* A config file that cannot be read as lines of text is named with why:
 * a directory (read as an empty file before), a NUL byte (said to be a
 * line too long before). A UTF-8 byte order mark starting it is skipped,
 * as shmctl import skips one. */
static void test_config_file_unreadable_as_text_is_named(void **state)
{
	char *dir = tu_tmpdir(), path[4096], err[512];
	char *argv[] = {"shm-flusher", "--config", path, NULL};
	fl_config c;
	FILE *f;

	snprintf(path, sizeof path, "%s", dir);
	assert_int_not_equal(fl_config_load(&c, 3, argv, err, sizeof err), 0);
	if (!strstr(err, "Is a directory"))
		fail_msg("a directory: '%s'", err);
	fl_config_free(&c);

	snprintf(path, sizeof path, "%s/flusher.conf", dir);
	assert_non_null(f = fopen(path, "w"));
	static const char nul[] = "env = /e\npg = dbname=x\nbatch-ms = 5\0 0\n";
	fwrite(nul, 1, sizeof nul - 1, f);
	fclose(f);
	assert_int_not_equal(fl_config_load(&c, 3, argv, err, sizeof err), 0);
	if (!strstr(err, ":3: NUL byte"))
		fail_msg("a NUL byte: '%s'", err);
	fl_config_free(&c);

	assert_non_null(f = fopen(path, "w"));
	fprintf(f, "\xef\xbb\xbf" "env = /e\npg = dbname=x\n");
	fclose(f);
	assert_int_equal(fl_config_load(&c, 3, argv, err, sizeof err), 0);
	assert_string_equal(c.env_dir, "/e");
	fl_config_free(&c);
	ft_rmdir(dir);
	free(dir);
}

/* A yes/no setting: --name or --name=yes on, --name=no or --no-name off. */
static void test_config_yes_no_settings(void **state)
{
	char err[512];
	fl_config c;
	char *on[] = {"f", "-e", "d", "--redis", "unix:///r", "--invalidation"};
	char *off[] = {"f", "-e", "d", "--redis", "unix:///r",
	               "--no-invalidation"};
	char *off2[] = {"f", "-e", "d", "--redis", "unix:///r",
	                "--invalidation=no"};

	assert_int_equal(fl_config_load(&c, 6, on, err, sizeof err), 0);
	assert_true(c.invalidation);
	fl_config_free(&c);
	assert_int_equal(fl_config_load(&c, 6, off, err, sizeof err), 0);
	assert_false(c.invalidation);
	fl_config_free(&c);
	assert_int_equal(fl_config_load(&c, 6, off2, err, sizeof err), 0);
	assert_false(c.invalidation);
	fl_config_free(&c);
}

static void test_config_help_lists_every_option_with_default(void **state)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	fl_config_help(f, "shm-flusher");
	fclose(f);
	assert_non_null(strstr(buf, "--batch-records N"));
	assert_non_null(strstr(buf, "[default: 100]"));
	assert_non_null(strstr(buf, "--sync-interval-ms"));
	assert_non_null(strstr(buf, "-e, --env DIR"));
	assert_non_null(strstr(buf, "--invalidation[=no]"));
	assert_non_null(strstr(buf, "[default: yes]"));
	assert_non_null(strstr(buf, "--static-sha sha1|sha256"));
	/* a name longer than its column is on a line of its own, the help
	 * below it in the column of the others */
	assert_non_null(strstr(buf, "\n    --log-level debug|info|warn|error\n"
	                            "                               log "));
	assert_non_null(strstr(buf, "\n    --batch-ms N               "
	                            "...or when"));
	free(buf);
}

/* fl_main with stdout going to path: its exit code. */
static int main_to_file(int argc, char **argv, const char *path)
{
	int saved = dup(1), fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	int code;

	assert_true(saved >= 0 && fd >= 0);
	fflush(stdout);
	dup2(fd, 1);
	close(fd);
	code = fl_main(argc, argv);
	fflush(stdout);
	dup2(saved, 1);
	close(saved);
	return code;
}

/* --print-config prints only a configuration a start would accept: the
 * cross-field, URL, conninfo, --pg-schema and --log-file checks come
 * first, with a start's message and exit code 1, and nothing printed. A
 * flag's value with a line break, which no config file line holds, is
 * refused as the file would refuse it. */
static void test_config_print_config_checks_as_a_start_does(void **state)
{
	char *dir = tu_tmpdir(), out[4200], log[4200], err[512];
	fl_config c;
	struct stat st;
	struct {
		char *argv[9];
		const char *want;
	} bad[] = {
		{{"f", "--print-config", "-e", "d", NULL}, "no sink"},
		{{"f", "--print-config", "--pg", "dbname=x", NULL},
		 "no environment"},
		{{"f", "--print-config", "-e", "d", "--redis", "http://x", NULL},
		 "redis URL"},
		{{"f", "--print-config", "-e", "d", "--pg",
		  "postgresql://u:pa%%zz@h/db", NULL}, "libpq cannot parse it"},
		/* libpq refuses it at each connect, before asking a server:
		 * the flusher started and retried for ever (--once: exit 3) */
		{{"f", "--print-config", "-e", "d", "--pg",
		  "host=/tmp port=abc dbname=x", NULL}, "--pg: port 'abc': not "
		 "a port number (an integer from 1 to 65535, or empty for the "
		 "default)"},
		{{"f", "--print-config", "-e", "d", "--pg", "dbname=x",
		  "--backoff-min-ms=500", "--backoff-max-ms=100", NULL},
		 "backoff-max-ms (100) is below backoff-min-ms (500)"},
		{{"f", "--print-config", "-e", "d", "--pg", "dbname=x",
		  "--batch-records=50000", NULL},
		 "batch-max-records (20000) is below batch-records (50000)"},
		{{"f", "--print-config", "-e", "d", "--pg", "dbname=x",
		  "--pg-schema", "/"}, "--pg-schema /: not a regular file"},
		{{"f", "--print-config", "-e", "d", "--pg", "dbname=x",
		  "--env-id", "host a"}, "env-id: byte 4"},
		/* printed, it was a file setting redis too (or refused as
		 * one that sets it twice) */
		{{"f", "--print-config", "-e", "/e\nredis = redis://other",
		  "--pg", "dbname=x"}, "env: byte 2 is a line break"},
	};

	snprintf(out, sizeof out, "%s/printed.conf", dir);
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		int argc = 0;
		while (argc < 9 && bad[i].argv[argc])
			argc++;
		err[0] = 0;
		assert_int_not_equal(fl_config_load(&c, argc, bad[i].argv, err,
		                                    sizeof err), 0);
		if (!strstr(err, bad[i].want))
			fail_msg("case %zu: '%s' does not mention '%s'", i, err,
			         bad[i].want);
		fl_config_free(&c);
		assert_int_equal(main_to_file(argc, bad[i].argv, out),
		                 FL_EXIT_USAGE);
		assert_int_equal(stat(out, &st), 0);
		assert_int_equal(st.st_size, 0);
	}
	/* a log file the flusher could not open */
	snprintf(log, sizeof log, "%s/no/such/dir/flusher.log", dir);
	char *nolog[] = {"f", "--print-config", "-e", "d", "--pg", "dbname=x",
	                 "--log-file", log, NULL};
	assert_int_equal(main_to_file(8, nolog, out), FL_EXIT_USAGE);
	assert_int_equal(stat(out, &st), 0);
	assert_int_equal(st.st_size, 0);

	/* a good one is printed, and what is printed starts the same way */
	char *good[] = {"f", "--print-config", "-e", "/e", "--redis",
	                "unix:///r.sock", "--batch-ms=70", NULL};
	assert_int_equal(main_to_file(7, good, out), FL_EXIT_OK);
	char *again[] = {"f", "--config", out, NULL};
	assert_int_equal(fl_config_load(&c, 3, again, err, sizeof err), 0);
	assert_string_equal(c.env_dir, "/e");
	assert_string_equal(c.redis_url, "unix:///r.sock");
	assert_int_equal(c.batch_ms, 70);
	assert_false(c.print_config);
	fl_config_free(&c);

	/* one that cannot all be written (a full disk) is no success: 70,
	 * as the other tools' (test_tools: the message) */
	if (access("/dev/full", W_OK) == 0) {
		char *help[] = {"f", "--help", NULL};
		char *version[] = {"f", "--version", NULL};
		assert_int_equal(main_to_file(7, good, "/dev/full"),
		                 FL_EXIT_WRITE);
		assert_int_equal(main_to_file(2, help, "/dev/full"),
		                 FL_EXIT_WRITE);
		assert_int_equal(main_to_file(2, version, "/dev/full"),
		                 FL_EXIT_WRITE);
	}
	ft_rmdir(dir);
	free(dir);
}

/* A --pg libpq would refuse at each connect before asking a server is a
 * config error, as one it cannot parse is: named with its value (none of
 * them secret), printably. An unknown option is named, as shm-dataset and
 * libshm name it ('invalid connection option "..."' hid it), its value
 * not; nor is a password, of which libpq's text quoted a word. */
static void test_config_refuses_a_conninfo_libpq_would_refuse(void **state)
{
	static const struct {
		const char *pg, *want;
	} cases[] = {
		{"host=/tmp port=abc dbname=x", "--pg: port 'abc': not a port "
		 "number"},
		{"host=a,b port=5432,99999 dbname=x", "--pg: port '99999': not "
		 "a port number"},
		{"host=a,b,c port=1,2", "--pg: port: 2 ports for 3 hosts"},
		{"dbname=x sslmode=requires", "--pg: sslmode 'requires': not "
		 "one of disable, allow, prefer, require, verify-ca, "
		 "verify-full"},
		{"dbname=x target_session_attrs=rw", "--pg: "
		 "target_session_attrs 'rw': not one of"},
		{"dbname=x connect_timeout=5s", "--pg: connect_timeout '5s': "
		 "not an integer"},
		{"host=db keepalives_idle=0", "--pg: keepalives_idle '0': not "
		 "an integer from 1 to 32767"},
		{"hostx=s3cret dbname=x", "--pg: unknown connection option "
		 "'hostx'"},
		{"postgresql://u:s3cret@h/db?hostx=s3cret", "--pg: unknown "
		 "connection option 'hostx'"},
		{"dbname=x password=pass s3cret", "--pg: after option "
		 "'password', a word without '='"},
		{"dbname=x port=5\x1b[2J", "--pg: port '5\\x1b[2J': not a "
		 "port number"},
	};
	char err[1024];
	fl_config c;

	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		char *argv[] = {"f", "-e", "d", "--pg", (char *)cases[i].pg,
		                NULL};
		err[0] = 0;
		assert_int_not_equal(fl_config_load(&c, 5, argv, err,
		                                    sizeof err), 0);
		if (!strstr(err, cases[i].want) || !printable_text(err) ||
		    strstr(err, "s3cret"))
			fail_msg("%s: '%s', not '%s' alone", cases[i].pg, err,
			         cases[i].want);
		fl_config_free(&c);
	}
	/* a database name alone is a conninfo too (libpq's rule), whose
	 * port is PGPORT's; what a service file may set is not looked for
	 * there */
	const char *good[] = {"shm", "service=shm dbname=x"};
	for (size_t i = 0; i < 2; i++) {
		char *argv[] = {"f", "-e", "d", "--pg", (char *)good[i], NULL};
		if (fl_config_load(&c, 5, argv, err, sizeof err))
			fail_msg("%s: '%s'", good[i], err);
		fl_config_free(&c);
		setenv("PGPORT", "abc", 1);
	}
	char *shm[] = {"f", "-e", "d", "--pg", "shm", NULL};
	assert_int_not_equal(fl_config_load(&c, 5, shm, err, sizeof err), 0);
	assert_string_equal(err, "--pg: PGPORT 'abc': not a port number (an "
	                    "integer from 1 to 65535, or empty for the "
	                    "default)");
	fl_config_free(&c);
	unsetenv("PGPORT");
}

/* '#' starts a comment at the start of a line only: "log-file = x.log # the
 * log" opened a file named "x.log # the log" (a URL or conninfo took the
 * comment too), while a number refused it. A value with " #" is refused,
 * naming the line, unless quoted; --print-config quotes one it prints. */
static void test_config_file_comment_after_a_value_is_refused(void **state)
{
	char *dir = tu_tmpdir(), path[4096], out[4200], err[512];
	char *argv[] = {"shm-flusher", "--config", path, NULL};
	fl_config c;
	FILE *f;

	snprintf(path, sizeof path, "%s/flusher.conf", dir);
	assert_non_null(f = fopen(path, "w"));
	fprintf(f, "env = /e\npg = dbname=x\nlog-file = /tmp/x.log # the log\n");
	fclose(f);
	assert_int_not_equal(fl_config_load(&c, 3, argv, err, sizeof err), 0);
	if (!strstr(err, ":3: log-file: '/tmp/x.log # the log': a comment "
	                 "takes a line of its own"))
		fail_msg("'%s'", err);
	fl_config_free(&c);

	/* quoted, or without a blank before it, '#' is part of the value */
	assert_non_null(f = fopen(path, "w"));
	fprintf(f, "env = /e\npg = \"dbname=x password='a #b'\"\n"
	        "env-id = host#1\n");
	fclose(f);
	assert_int_equal(fl_config_load(&c, 3, argv, err, sizeof err), 0);
	assert_string_equal(c.pg_conninfo, "dbname=x password='a #b'");
	assert_string_equal(c.env_id, "host#1");
	fl_config_free(&c);

	/* --print-config writes it so that it reads back the same */
	snprintf(out, sizeof out, "%s/printed.conf", dir);
	char *print[] = {"f", "--print-config", "-e", "/e", "--pg",
	                 "dbname=x password='a #b'", NULL};
	assert_int_equal(main_to_file(6, print, out), FL_EXIT_OK);
	/* no line ends in a blank: an empty value is "key =" */
	char line[4096];
	int empty = 0;
	assert_non_null(f = fopen(out, "r"));
	while (fgets(line, sizeof line, f)) {
		size_t n = strcspn(line, "\n");
		assert_true(n == 0 || line[n - 1] != ' ');
		empty += strcmp(line, "redis =\n") == 0;
	}
	fclose(f);
	assert_int_equal(empty, 1);
	char *again[] = {"f", "--config", out, NULL};
	assert_int_equal(fl_config_load(&c, 3, again, err, sizeof err), 0);
	assert_string_equal(c.pg_conninfo, "dbname=x password='a #b'");
	fl_config_free(&c);
	unlink(out);
	ft_rmdir(dir);
	free(dir);
}

/* --print-config writes a relative env, pg-schema or log-file as the path
 * the start it checked would take, from its working directory: the file is
 * read by a service in another (systemd's is /), where "sql/schema.sql"
 * named no file and a relative env another environment. Absolute ones are
 * written as given. */
static void test_config_print_config_makes_relative_paths_absolute(void **state)
{
	char *dir = tu_tmpdir(), out[4200], cwd[4096], line[8300];
	char want[3][8300];
	FILE *f;

	snprintf(out, sizeof out, "%s/printed.conf", dir);
	assert_non_null(getcwd(cwd, sizeof cwd));
	assert_int_equal(chdir(dir), 0);
	assert_non_null(f = fopen("schema.sql", "w"));
	fclose(f);
	char *print[] = {"f", "--print-config", "-e", "env", "--pg", "dbname=x",
	                 "--pg-schema", "schema.sql", "--log-file", "f.log",
	                 NULL};
	int code = main_to_file(10, print, out);
	assert_int_equal(chdir(cwd), 0);
	assert_int_equal(code, FL_EXIT_OK);
	snprintf(want[0], sizeof want[0], "env = %s/env\n", dir);
	snprintf(want[1], sizeof want[1], "pg-schema = %s/schema.sql\n", dir);
	snprintf(want[2], sizeof want[2], "log-file = %s/f.log\n", dir);
	int found = 0;
	assert_non_null(f = fopen(out, "r"));
	while (fgets(line, sizeof line, f))
		for (int i = 0; i < 3; i++)
			found += strcmp(line, want[i]) == 0;
	fclose(f);
	assert_int_equal(found, 3);

	char *abs[] = {"f", "--print-config", "-e", "/e", "--pg", "dbname=x",
	               NULL};
	assert_int_equal(main_to_file(6, abs, out), FL_EXIT_OK);
	assert_int_equal(tu_lines_with(out, "env = /e"), 1);
	ft_rmdir(dir);
	free(dir);
}

static void test_batch_coalesce_keeps_last_state_per_key(void **state)
{
	fl_batch b;
	uint8_t k1[16] = {1}, k2[16] = {2};
	shm_log_rec r;

	fl_batch_init(&b);
	memset(&r, 0, sizeof r);
	const struct { uint64_t seq; int op; uint8_t *key; } recs[] = {
		{1, SHM_OP_MSG_PUT, k1}, {2, SHM_OP_MSG_PUT, k2},
		{3, SHM_OP_MSG_EDIT, k1}, {4, SHM_OP_STATIC_BUST, k1},
		{5, SHM_OP_MSG_DELETE, k1},
	};
	for (size_t i = 0; i < 5; i++) {
		r.seq = recs[i].seq;
		r.op = (uint8_t)recs[i].op;
		r.key = recs[i].key;
		r.key_len = 16;
		assert_int_equal(fl_batch_add(&b, &r), 0);
	}
	assert_int_equal(fl_batch_coalesce(&b), 0);
	assert_true(b.r[0].superseded);  /* put k1: edited, then deleted */
	assert_false(b.r[1].superseded); /* k2 */
	assert_true(b.r[2].superseded);
	assert_false(b.r[3].superseded); /* a static is another key class */
	assert_false(b.r[4].superseded);
	assert_int_equal(b.upto, 5);
	fl_batch_free(&b);
}

/* Records spanning several chunks, the batch cleared, refilled with other
 * bytes: the chunks are reused (no new ones while spares last) and every
 * record reads back its own bytes, in every batch; a small batch after them
 * gives the spare memory back but for its own chunk. */
/* A decompressed payload lies apart from the stored record (raw): the batch
 * copies it, wherever it lies, above raw too (a thread's malloc arena is
 * often mapped above the LMDB map). It used to take any payload above raw
 * for a part of raw, and pointed past the copy of raw: the PostgreSQL
 * sink then read wild memory ("message payload does not decode", or a
 * crash). */
static void test_batch_copies_a_payload_that_lies_above_the_record(void **state)
{
	static uint8_t mem[4096];
	uint8_t *raw = mem, *payload = mem + 1024; /* raw is 64 bytes */
	shm_log_rec r = {.seq = 1, .op = SHM_OP_MSG_PUT};
	fl_batch b;

	memset(raw, 'r', 64);
	memset(payload, 'p', 100);
	r.raw = raw;
	r.raw_size = 64;
	r.key = raw + 40; /* the key is part of the record */
	r.key_len = 16;
	r.payload = payload; /* decompressed, elsewhere */
	r.payload_len = 100;
	fl_batch_init(&b);
	assert_int_equal(fl_batch_add(&b, &r), 0);
	const uint8_t *copy = b.r[0].raw;
	assert_ptr_equal(b.r[0].key, copy + 40);
	assert_true(b.r[0].payload < copy || b.r[0].payload >= copy + 64);
	memset(payload, 0, 100); /* the batch has its own copy */
	for (int i = 0; i < 100; i++)
		assert_int_equal(b.r[0].payload[i], 'p');
	fl_batch_free(&b);
}

static void test_batch_reuses_its_chunks_between_batches(void **state)
{
	enum { N = 3000, PLEN = 1000 }; /* ~3 MiB: four chunks */
	static uint8_t payload[PLEN];
	uint8_t key[16] = {0};
	shm_log_rec r;
	fl_batch b;

	fl_batch_init(&b);
	for (int round = 0; round < 3; round++) {
		memset(&r, 0, sizeof r);
		for (uint32_t i = 0; i < N; i++) {
			memset(payload, (int)(i + round * 7) & 0xff, PLEN);
			memcpy(key, &i, sizeof i);
			r.seq = round * N + i + 1;
			r.op = SHM_OP_MSG_PUT;
			r.key = key;
			r.key_len = 16;
			r.payload = payload;
			r.payload_len = PLEN;
			assert_int_equal(fl_batch_add(&b, &r), 0);
		}
		for (uint32_t i = 0; i < N; i++) {
			uint32_t k;
			memcpy(&k, b.r[i].key, sizeof k);
			assert_int_equal(k, i);
			assert_int_equal(b.r[i].payload_len, PLEN);
			for (size_t j = 0; j < PLEN; j += 111)
				assert_int_equal(b.r[i].payload[j],
				                 (i + round * 7) & 0xff);
		}
		if (round > 0)
			assert_int_equal(b.spare_bytes, 0); /* all reused */
		fl_batch_clear(&b);
		assert_null(b.mem);
		assert_true(b.spare_bytes >= (size_t)N * PLEN);
	}
	r.seq++;
	assert_int_equal(fl_batch_add(&b, &r), 0);
	assert_int_equal(b.r[0].payload_len, PLEN);
	fl_batch_clear(&b);
	assert_int_equal(b.spare_bytes, 1u << 20); /* one chunk */
	fl_batch_free(&b);
	assert_null(b.spare);
	assert_int_equal(b.spare_bytes, 0);
}

/* ------------------------------------------------------------ workers */

/* A sink that takes every batch at once: the worker alone, no server. */
static int mem_connect(fl_sink *s)
{
	(void)s;
	return FL_OK;
}

static int mem_position(fl_sink *s, uint64_t *pos)
{
	(void)s;
	(void)pos;
	return 0;
}

static int mem_apply(fl_sink *s, fl_batch *b)
{
	(void)s;
	(void)b;
	return FL_OK;
}

static void mem_disconnect(fl_sink *s)
{
	(void)s;
}

static void mem_destroy(fl_sink *s)
{
	free(s);
}

static const fl_sink_ops mem_ops = {
	.name = "mem", .connect = mem_connect, .position = mem_position,
	.apply = mem_apply, .disconnect = mem_disconnect,
	.destroy = mem_destroy};
/* the same with a mark a write-through writer would set (pg's) */
static const fl_sink_ops mem_awaited_ops = {
	.name = "mem", .awaited = "sink.mem.awaited", .connect = mem_connect,
	.position = mem_position, .apply = mem_apply,
	.disconnect = mem_disconnect, .destroy = mem_destroy};

/* A sink that applies everything at once, for cfg and env. */
static fl_sink *mem_sink(const fl_config *cfg, shm_env *env)
{
	fl_sink *s = calloc(1, sizeof *s);

	assert_non_null(s);
	s->ops = &mem_ops;
	s->cfg = cfg;
	s->env = env;
	return s;
}

static uint64_t cpu_ms(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000 +
	       (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000;
}

static uint64_t worker_reaches(fl_worker *w, uint64_t pos, unsigned ms)
{
	uint64_t end = ft_ms() + ms;
	while (fl_worker_applied(w) < pos && ft_ms() < end)
		tu_sleep_ms(10);
	return fl_worker_applied(w);
}

/* Takes every free reader slot of env (and its pooled read transactions):
 * a new read transaction then fails with MDB_READERS_FULL. */
static size_t hold_every_reader(shm_env *env, shm_rtxn **held, size_t max)
{
	size_t n = 0;
	int rc;

	while (n < max && (rc = shm_rtxn_begin(env, &held[n])) == 0)
		n++;
	assert_true(n < max);
	assert_int_equal(rc, MDB_READERS_FULL);
	return n;
}

/* An environment in dir with 8 reader slots (hold_every_reader fills them)
 * and cfg loaded from argv. */
static shm_env *few_readers_env(const char *dir, fl_config *cfg, int argc,
                                char **argv)
{
	char err[512];
	shm_options o;

	shm_options_init(&o);
	o.max_readers = 8;
	shm_env *env = tu_open(dir, &o);
	assert_int_equal(fl_config_load(cfg, argc, argv, err, sizeof err), 0);
	return env;
}

/* The log cannot be read (the reader table is full) while records wait:
 * the worker retries with the sinks' capped exponential backoff instead of
 * spinning (under 20% of a CPU over 2 s; it was a whole one), catches up
 * once a read works again, and a stop cuts its wait short. */
static void test_worker_backs_off_while_the_log_cannot_be_read(void **state)
{
	char *dir = tu_tmpdir();
	/* a sink is required; this one is never connected to */
	char *argv[] = {"shm-flusher", "-e", dir, "--pg", "dbname=unused", NULL};
	shm_rtxn *held[64];
	fl_config cfg;
	fl_worker *w;
	size_t n;

	shm_env *env = few_readers_env(dir, &cfg, 5, argv);
	fl_sink *s = mem_sink(&cfg, env);
	shm_msg m = tu_msg("r", 1, "before");
	assert_int_equal(shm_msg_put(env, &m), 0);
	assert_int_equal(fl_worker_start(&w, s, env, &cfg, false, 0, NULL), 0);
	assert_int_equal(worker_reaches(w, 1, 5000), 1);

	n = hold_every_reader(env, held, 64);
	for (int i = 0; i < 10; i++) {
		m = tu_msg("r", 1, "while the readers are full");
		assert_int_equal(shm_msg_put(env, &m), 0);
	}
	uint64_t c0 = cpu_ms(), t0 = ft_ms();
	tu_sleep_ms(2000);
	uint64_t cpu = cpu_ms() - c0, wall = ft_ms() - t0;
	fprintf(stderr, "reads failing: %" PRIu64 " ms of CPU in %" PRIu64
	        " ms\n", cpu, wall);
	assert_int_equal(fl_worker_applied(w), 1);
	assert_true(cpu * 5 < wall);

	for (size_t i = 0; i < n; i++)
		shm_rtxn_end(held[i]);
	t0 = ft_ms();
	assert_int_equal(worker_reaches(w, 11, 5000), 11);
	fprintf(stderr, "caught up in %" PRIu64 " ms\n", ft_ms() - t0);

	n = hold_every_reader(env, held, 64);
	m = tu_msg("r", 1, "full again");
	assert_int_equal(shm_msg_put(env, &m), 0);
	tu_sleep_ms(3000); /* the wait between retries is 1.6 s by now */
	t0 = ft_ms();
	fl_worker_stop(w);
	assert_int_equal(fl_worker_join(w), 0);
	fprintf(stderr, "stopped in %" PRIu64 " ms\n", ft_ms() - t0);
	assert_true(ft_ms() - t0 < 1000);
	for (size_t i = 0; i < n; i++)
		shm_rtxn_end(held[i]);
	fl_config_free(&cfg);
	shm_env_close(env);
	ft_rmdir(dir);
	free(dir);
}

/* A worker reads the awaited mark of its sink's ops alone (pg's; no
 * writer waits for Redis): a sink without one reads none, and a
 * "sink.<name>.awaited" set by hand closes none of its batches, which wait
 * batch-ms (10 s here). Before, every worker read "sink.<name>.awaited"
 * at each wait, the Redis one a meta nothing sets. With the mark in its
 * ops, the batch that holds the marked record is applied at once. */
static void test_worker_reads_the_awaited_mark_of_its_sink_alone(
	void **state)
{
	char *dir = tu_tmpdir(), err[512];
	char *argv[] = {"shm-flusher", "-e", dir, "--pg", "dbname=unused",
	                "--batch-ms", "10000", NULL};
	fl_config cfg;
	fl_worker *w;
	uint64_t seq, t0;

	shm_env *env = tu_open(dir, NULL);
	assert_int_equal(fl_config_load(&cfg, 7, argv, err, sizeof err), 0);
	for (int with_mark = 0; with_mark < 2; with_mark++) {
		shm_msg m = tu_msg("a", 1, "awaited by hand");
		assert_int_equal(shm_msg_put(env, &m), 0);
		seq = ft_meta(env, "next_seq") - 1;
		assert_int_equal(shm_meta_set(env, "sink.mem.awaited", seq), 0);
		fl_sink *s = mem_sink(&cfg, env);
		if (with_mark)
			s->ops = &mem_awaited_ops;
		t0 = ft_ms();
		assert_int_equal(fl_worker_start(&w, s, env, &cfg, false, 0,
		                                 NULL), 0);
		if (with_mark) {
			assert_int_equal(worker_reaches(w, seq, 5000), seq);
			fprintf(stderr, "awaited record applied after %" PRIu64
			        " ms\n", ft_ms() - t0);
		} else {
			tu_sleep_ms(1000);
			assert_int_equal(fl_worker_applied(w), seq - 1);
		}
		fl_worker_stop(w);
		assert_int_equal(fl_worker_join(w), 0); /* its batch applied */
	}
	fl_config_free(&cfg);
	shm_env_close(env);
	ft_rmdir(dir);
	free(dir);
}

/* --once while the log cannot be read (the reader table full): the failed
 * reads count toward once-retries as a sink's failures do, so the worker
 * gives up after 3 of them (backoff 10 then 20 ms) with a non-zero result
 * and one ERROR line naming the log read, instead of waiting for ever. */
static void test_once_gives_up_when_the_log_cannot_be_read(void **state)
{
	char *dir = tu_tmpdir(), logf[4200];
	char *argv[] = {"shm-flusher", "-e", dir, "--pg", "dbname=unused",
	                "--once-retries", "3", "--backoff-min-ms", "10", NULL};
	shm_rtxn *held[64];
	fl_config cfg;
	fl_worker *w;
	size_t n;

	shm_env *env = few_readers_env(dir, &cfg, 9, argv);
	snprintf(logf, sizeof logf, "%s.flusher.log", dir);
	assert_int_equal(fl_log_open(logf, FL_INFO), 0);
	fl_sink *s = mem_sink(&cfg, env);
	/* the worker reads its position, then waits for records */
	assert_int_equal(fl_worker_start(&w, s, env, &cfg, true, 3, NULL), 0);
	n = hold_every_reader(env, held, 64);
	for (int i = 0; i < 3; i++) {
		shm_msg m = tu_msg("r", 1, "never read");
		assert_int_equal(shm_msg_put(env, &m), 0);
	}
	uint64_t t0 = ft_ms();
	while (!fl_worker_done(w) && ft_ms() - t0 < 5000)
		tu_sleep_ms(10);
	bool done = fl_worker_done(w);
	fprintf(stderr, "--once with the log unreadable: %s after %" PRIu64
	        " ms\n", done ? "gave up" : "still trying", ft_ms() - t0);
	uint64_t applied = fl_worker_applied(w);
	fl_worker_stop(w);
	int result = fl_worker_join(w);
	for (size_t i = 0; i < n; i++)
		shm_rtxn_end(held[i]);
	fl_log_close();
	if (!done)
		fail_msg("--once still waiting for the log after 5 s");
	assert_int_not_equal(result, 0);
	assert_int_equal(ft_log_count(dir, "giving up"), 1);
	assert_int_equal(ft_log_count(dir, "ERROR mem: log read after 0: "), 2);
	assert_int_equal(ft_log_count(dir, "; giving up (--once: 3 failures "
	                                   "in a row) at 0 of 3"), 1);
	assert_int_equal(applied, 0);
	fl_config_free(&cfg);
	shm_env_close(env);
	ft_rmdir(dir);
	free(dir);
}

static void test_lock_refuses_a_second_flusher(void **state)
{
	char *dir = tu_tmpdir(), err[512];
	int fd1 = -1, fd2 = -1;

	assert_int_equal(fl_lock_env(dir, &fd1, err, sizeof err), 0);
	assert_int_not_equal(fl_lock_env(dir, &fd2, err, sizeof err), 0);
	assert_non_null(strstr(err, "another shm-flusher"));
	close(fd1);
	assert_int_equal(fl_lock_env(dir, &fd2, err, sizeof err), 0);
	close(fd2);
	ft_rmdir(dir);
	free(dir);
}

/* shmctl stat's probe (a shared flock on flusher.lock, dropped at once)
 * does not make a starting flusher fail: fl_lock_env waits it out. Before,
 * a start that met one failed ("another shm-flusher already runs": exit
 * 2, which the README's systemd unit does not restart). */
static void test_lock_waits_out_a_stat_probe(void **state)
{
	char *dir = tu_tmpdir(), path[4200], err[512], c;
	int fd = -1, p[2], st;

	snprintf(path, sizeof path, "%s/flusher.lock", dir);
	assert_int_equal(pipe(p), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) { /* the probe, held 50 ms */
		int f = open(path, O_RDONLY | O_CREAT, 0644);
		if (f < 0 || flock(f, LOCK_SH | LOCK_NB) != 0 ||
		    write(p[1], "x", 1) != 1)
			_exit(1);
		tu_sleep_ms(50);
		_exit(0);
	}
	close(p[1]);
	assert_int_equal(read(p[0], &c, 1), 1);
	close(p[0]);
	assert_int_equal(fl_lock_env(dir, &fd, err, sizeof err), 0);
	close(fd);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	ft_rmdir(dir);
	free(dir);
}

/* The flusher never creates an environment: with --once, a mistyped -e (an
 * empty or a missing directory) is exit 2 with a message saying so, and
 * nothing is written there. */
static void test_flusher_refuses_a_directory_without_environment(void **state)
{
	char *dir = tu_tmpdir(), missing[4200];
	char *argv[] = {"shm-flusher", "-e", dir, "--redis", "unix:///none",
	                "--once", NULL};
	DIR *d;
	struct dirent *e;
	int files = 0;

	assert_int_equal(fl_main(6, argv), FL_EXIT_ENV);
	assert_non_null(strstr(shm_errmsg(), "no shm environment here"));
	assert_non_null(d = opendir(dir));
	while ((e = readdir(d)))
		files += e->d_name[0] != '.';
	closedir(d);
	assert_int_equal(files, 0);
	snprintf(missing, sizeof missing, "%s/typo", dir);
	argv[2] = missing;
	assert_int_equal(fl_main(6, argv), FL_EXIT_ENV);
	assert_int_not_equal(access(missing, F_OK), 0);
	assert_non_null(strstr(shm_errmsg(), ", no such directory:"));
	/* a data.mdb made but not written (a creation cut short) is no
	 * environment either: the flusher does not make it one */
	struct stat st;
	int fd;
	snprintf(missing, sizeof missing, "%s/data.mdb", dir);
	assert_true((fd = open(missing, O_CREAT | O_WRONLY, 0644)) >= 0);
	close(fd);
	argv[2] = dir;
	assert_int_equal(fl_main(6, argv), FL_EXIT_ENV);
	assert_non_null(strstr(shm_errmsg(), "data.mdb is empty"));
	assert_int_equal(stat(missing, &st), 0);
	assert_int_equal(st.st_size, 0);
	ft_rmdir(dir);
	free(dir);
}

/* An error that ends the flusher is said once: with the log on stderr (the
 * default) as its ERROR line; with --log-file, there and once on stderr. */
static void test_exit_errors_are_said_once(void **state)
{
	FT_NEED_SERVERS();
	char *dir = tu_tmpdir(), *empty = tu_tmpdir(), logf[4200];
	const char *to_file[] = {"--log-file", logf, NULL};

	/* --once on a directory without an environment */
	assert_int_equal(ft_flush_once(empty, NULL), FL_EXIT_ENV);
	assert_int_equal(ft_log_count(empty, "no shm environment"), 1);
	snprintf(logf, sizeof logf, "ERROR main: no shm environment in %s yet "
	         "(run shmctl init or start an application)", empty);
	assert_int_equal(ft_log_count(empty, logf), 1);

	/* a second flusher on a locked environment */
	shm_env *env = tu_open(dir, NULL);
	pid_t fl = ft_spawn_flusher(dir, NULL);
	assert_true(ft_log_waits_for(dir, "INFO main: shm-flusher", 5000));
	assert_int_equal(ft_wait(ft_spawn_flusher(dir, NULL)), FL_EXIT_ENV);
	assert_int_equal(ft_log_count(dir, "another shm-flusher"), 1);

	/* with --log-file: the ERROR line there, a plain line on stderr */
	snprintf(logf, sizeof logf, "%s.second.log", dir);
	assert_int_equal(ft_wait(ft_spawn_flusher(dir, to_file)), FL_EXIT_ENV);
	assert_int_equal(ft_log_count(dir, "another shm-flusher"), 2);
	assert_int_equal(ft_log_count(dir, "shm-flusher: another shm-flusher"),
	                 1);
	FILE *f = fopen(logf, "r");
	char line[2048];
	unsigned n = 0;
	while (f && fgets(line, sizeof line, f))
		n += strstr(line, "ERROR main: another shm-flusher") != NULL;
	if (f)
		fclose(f);
	assert_int_equal(n, 1);
	unlink(logf);

	kill(fl, SIGTERM);
	assert_int_equal(ft_wait(fl), 0);
	shm_env_close(env);
	ft_rmdir(empty);
	free(empty);
	ft_rmdir(dir);
	free(dir);
}

/* The line a daemon logs while it waits for the environment in dir. */
static void waiting_line(const char *dir, char *out, size_t len)
{
	snprintf(out, len, "WARN main: no shm environment in %s yet (run "
	         "shmctl init or start an application); waiting for it", dir);
}

/* A daemon started before the first application (its directory not even
 * made yet) waits for the environment, saying so once, then mirrors it;
 * SIGTERM ends a wait too. */
static void test_daemon_waits_for_the_environment(void **state)
{
	FT_NEED_SERVERS();
	char *parent = tu_tmpdir(), dir[1024], says[1200];
	ft_plan p = {.n = 10};

	ft_reset_servers();
	snprintf(dir, sizeof dir, "%s/not-yet", parent);
	pid_t fl = ft_spawn_flusher(dir, NULL);
	tu_sleep_ms(1200); /* a few rounds of waiting */
	assert_int_equal(kill(fl, 0), 0); /* still there, waiting */
	waiting_line(dir, says, sizeof says);
	assert_int_equal(ft_log_count(dir, says), 1);
	assert_int_equal(ft_write(dir, 0, &p), 0);
	uint64_t end = ft_ms() + 10000;
	while (ft_sql_int("SELECT count(*) FROM messages") < 10 &&
	       ft_ms() < end)
		tu_sleep_ms(50);
	assert_int_equal(ft_sql_int("SELECT count(*) FROM messages"), 10);
	kill(fl, SIGTERM);
	assert_int_equal(ft_wait(fl), 0);

	char *empty = tu_tmpdir();
	fl = ft_spawn_flusher(empty, NULL);
	tu_sleep_ms(200);
	kill(fl, SIGTERM);
	assert_int_equal(ft_wait(fl), 0);
	waiting_line(empty, says, sizeof says);
	assert_int_equal(ft_log_count(empty, says), 1);
	ft_rmdir(empty);
	free(empty);
	ft_rmdir(dir);
	ft_rmdir(parent);
	free(parent);
}

/* The lock is taken in the directory of the environment opened, never in
 * one it makes: a directory not there (gone, or mistyped) is an error
 * naming it, and stays absent; so does a daemon stopped while it waits for
 * a mistyped -e. Before, fl_lock_env made the directory and its
 * flusher.lock. */
static void test_lock_makes_no_directory(void **state)
{
	char *parent = tu_tmpdir(), dir[1024], err[2048], says[1200];
	const char *sinks[] = {"--redis", "unix:///none", "--pg", "", NULL};
	int fd = -1;

	snprintf(dir, sizeof dir, "%s/typo", parent);
	assert_int_equal(fl_lock_env(dir, &fd, err, sizeof err), -1);
	assert_int_equal(fd, -1);
	assert_non_null(strstr(err, dir));
	assert_non_null(strstr(err, strerror(ENOENT)));
	assert_int_not_equal(access(dir, F_OK), 0);

	pid_t fl = ft_spawn_flusher(dir, sinks);
	waiting_line(dir, says, sizeof says);
	assert_true(ft_log_waits_for(dir, says, 5000));
	kill(fl, SIGTERM);
	assert_int_equal(ft_wait(fl), FL_EXIT_OK);
	assert_int_not_equal(access(dir, F_OK), 0);
	ft_rmdir(dir); /* its log */
	tu_rmdir(parent);
	free(parent);
}

/* flusher.lock is made group-writable under umask 0002, as libshm's files
 * are, so a flusher run as another user of the group takes it next (the
 * service after an operator's --once as root); one this user may not open
 * is named with the fix. Before, it was made 0644 and the next user's
 * flusher exited 2 with "flusher.lock: Permission denied" alone. */
static void test_lock_file_lets_the_group_take_it(void **state)
{
	char *dir = tu_tmpdir(), err[2048], path[1100], want[1400];
	struct stat st;
	mode_t was = umask(0002);
	int fd = -1, wst;

	assert_int_equal(fl_lock_env(dir, &fd, err, sizeof err), 0);
	umask(was);
	close(fd);
	snprintf(path, sizeof path, "%s/flusher.lock", dir);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0664);

	assert_int_equal(chmod(dir, 0755), 0); /* the file's mode, not dir's */
	assert_int_equal(chmod(path, 0600), 0);
	snprintf(want, sizeof want, "%s/flusher.lock: %s: every shm-flusher of "
	         "the environment takes this lock: give this user write access "
	         "to it, e.g. one group for every user of the environment, a "
	         "setgid directory, umask 0002", dir, strerror(EACCES));
	pid_t pid = fork(); /* a user that may not bypass file modes */
	assert_true(pid >= 0);
	if (pid == 0) {
		if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
			_exit(3);
		if (fl_lock_env(dir, &fd, err, sizeof err) == 0)
			_exit(1);
		if (strcmp(err, want) != 0) {
			fprintf(stderr, "got '%s'\nwant '%s'\n", err, want);
			_exit(2);
		}
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &wst, 0), pid);
	assert_true(WIFEXITED(wst));
	assert_int_equal(WEXITSTATUS(wst), 0);
	tu_rmdir(dir);
	free(dir);
}

struct positions {
	uint64_t flushed, pg, redis;
};

static void take_position(const char *name, uint64_t v, void *user)
{
	struct positions *p = user;
	if (!strcmp(name, "flushed"))
		p->flushed = v;
	else if (!strcmp(name, "sink.pg.applied"))
		p->pg = v;
	else if (!strcmp(name, "sink.redis.applied"))
		p->redis = v;
}

/* In any snapshot, the trim (meta flushed) is not ahead of a sink's meta
 * position: a sink records its position before the trim may use it. */
static void test_flushed_never_passes_a_sinks_position(void **state)
{
	FT_NEED_SERVERS();
	char *dir = tu_tmpdir();
	ft_plan p = {.n = 20000};
	unsigned samples = 0, ahead = 0;

	ft_reset_servers();
	shm_env *env = tu_open(dir, NULL);
	pid_t fl = ft_spawn_flusher(dir, NULL);
	pid_t w = ft_spawn_writer(dir, 0, &p);
	for (int st; waitpid(w, &st, WNOHANG) == 0; samples++) {
		struct positions pos = {0};
		assert_int_equal(shm_meta_each(env, "", take_position, &pos), 0);
		ahead += pos.flushed > (pos.pg < pos.redis ? pos.pg : pos.redis);
	}
	tu_child_del(w);
	kill(fl, SIGTERM);
	assert_int_equal(ft_wait(fl), 0);
	fprintf(stderr, "%u snapshots, %u with flushed ahead\n", samples,
	        ahead);
	assert_true(samples > 50);
	assert_int_equal(ahead, 0);
	shm_env_close(env);
	ft_rmdir(dir);
	free(dir);
}

/* --------------------------------------------------------- dead letters */

struct dead_seen {
	int n;
	shm_dead d[8];
	char reason[8][240];
	uint32_t raw_size[8];
};

static int collect_dead(const shm_dead *d, void *user)
{
	struct dead_seen *s = user;
	if (s->n < 8) {
		s->d[s->n] = *d;
		snprintf(s->reason[s->n], 240, "%s", d->reason);
		s->raw_size[s->n] = d->raw_size;
	}
	s->n++;
	return 0;
}

static void test_dead_letters_merge_sinks_and_keep_raw(void **state)
{
	char *dir = tu_tmpdir();
	shm_env *env = tu_open(dir, NULL);
	shm_log_rec rec;
	uint8_t raw[50];
	struct dead_seen s = {0};

	memset(&rec, 0, sizeof rec);
	memset(raw, 0xAB, sizeof raw);
	rec.seq = 42;
	rec.raw = raw;
	rec.raw_size = sizeof raw;
	assert_int_equal(shm_dead_add(env, &rec, "redis", "bad json"), 0);
	assert_int_equal(shm_dead_add(env, &rec, "redis", "again"), 0);
	assert_int_equal(shm_dead_add(env, &rec, "pg", "22P02 bad uuid"), 0);
	rec.seq = 7;
	assert_int_equal(shm_dead_add(env, &rec, "pg", "x"), 0);
	assert_int_not_equal(shm_dead_add(env, &rec, "", "x"), 0);
	assert_int_equal(shm_dead_each(env, collect_dead, &s), 0);
	assert_int_equal(s.n, 2);
	assert_int_equal(s.d[0].seq, 7);
	assert_int_equal(s.d[1].seq, 42);
	assert_string_equal(s.d[1].sink, "pg,redis");
	assert_string_equal(s.reason[1], "bad json; pg: 22P02 bad uuid");
	assert_int_equal(s.raw_size[1], sizeof raw);
	shm_env_close(env);
	ft_rmdir(dir);
	free(dir);
}

struct bad_seen {
	int n;
	uint64_t seq[8];
	char why[8][512];
};

static int collect_bad(uint64_t seq, const char *why, void *user)
{
	struct bad_seen *b = ((void **)user)[1];
	if (b->n < 8) {
		b->seq[b->n] = seq;
		snprintf(b->why[b->n], sizeof b->why[0], "%s", why);
	}
	b->n++;
	return 0;
}

static int collect_good(const shm_dead *d, void *user)
{
	return collect_dead(d, ((void **)user)[0]);
}

/* shm_dead_walk goes past a letter that does not decode, naming it (by its
 * seq) to its second callback; shm_dead_each stops there, SHM_ECORRUPT, as
 * it always has. */
static void test_dead_letter_walk_goes_past_a_corrupt_one(void **state)
{
	char *dir = tu_tmpdir();
	shm_env *env = tu_open(dir, NULL);
	shm_log_rec rec;
	struct dead_seen s = {0};
	struct bad_seen b = {0};
	void *both[2] = {&s, &b};
	uint64_t seq = 2;
	MDB_val k = {8, &seq}, v = {3, "\x01\x00\xff"};
	MDB_txn *txn;

	memset(&rec, 0, sizeof rec);
	for (rec.seq = 1; rec.seq <= 3; rec.seq++)
		assert_int_equal(shm_dead_add(env, &rec, "redis", "r"), 0);
	assert_int_equal(mdb_txn_begin(env->mdb, NULL, 0, &txn), 0);
	assert_int_equal(mdb_put(txn, env->dead, &k, &v, 0), 0);
	assert_int_equal(mdb_txn_commit(txn), 0);

	assert_int_equal(shm_dead_walk(env, collect_good, collect_bad, both),
	                 0);
	assert_int_equal(s.n, 2);
	assert_int_equal(s.d[0].seq, 1);
	assert_int_equal(s.d[1].seq, 3);
	assert_int_equal(b.n, 1);
	assert_int_equal(b.seq[0], 2);
	assert_non_null(strstr(b.why[0], "dead letter 2: bad header "
	                                  "of 3 bytes, version 1"));

	s.n = 0;
	assert_int_equal(shm_dead_each(env, collect_dead, &s), SHM_ECORRUPT);
	assert_int_equal(s.n, 1);
	assert_non_null(strstr(shm_errmsg(), "dead letter 2: bad header"));
	shm_env_close(env);
	ft_rmdir(dir);
	free(dir);
}

/* Puts at seq a dead letter that does not decode (a header cut to 3
 * bytes), as a bad disk or an old bug could leave it. */
static void put_bad_letter(shm_env *env, uint64_t seq)
{
	MDB_val k = {8, &seq}, v = {3, "\x01\x00\xff"};
	MDB_txn *txn;

	assert_int_equal(mdb_txn_begin(env->mdb, NULL, 0, &txn), 0);
	assert_int_equal(mdb_put(txn, env->dead, &k, &v, 0), 0);
	assert_int_equal(mdb_txn_commit(txn), 0);
}

/* A sink setting aside a record whose seq holds a letter that does not
 * decode replaces it (the record's bytes come from the log again), and
 * the new letter says what it replaced, first, whatever the length of
 * the sink's reason: the corruption is never passed over in silence
 * (dead.c invariant 3). */
static void test_dead_letter_over_a_corrupt_one_says_it_replaced_it(
	void **state)
{
	char *dir = tu_tmpdir();
	shm_env *env = tu_open(dir, NULL);
	shm_log_rec rec;
	struct dead_seen s = {0};
	char long_reason[400];

	memset(&rec, 0, sizeof rec);
	rec.raw = (const uint8_t *)"abc";
	rec.raw_size = 3;
	put_bad_letter(env, 2);
	put_bad_letter(env, 3);
	rec.seq = 2;
	assert_int_equal(shm_dead_add(env, &rec, "pg", "22P02 bad uuid"), 0);
	memset(long_reason, 'x', sizeof long_reason - 1);
	long_reason[sizeof long_reason - 1] = 0;
	rec.seq = 3;
	assert_int_equal(shm_dead_add(env, &rec, "redis", long_reason), 0);

	assert_int_equal(shm_dead_each(env, collect_dead, &s), 0);
	assert_int_equal(s.n, 2);
	assert_int_equal(s.d[0].seq, 2);
	assert_string_equal(s.d[0].sink, "pg");
	assert_string_equal(s.reason[0], "replaced a letter that did not "
	                    "decode: bad header of 3 bytes, version 1; pg: "
	                    "22P02 bad uuid");
	assert_int_equal(s.raw_size[0], 3);
	assert_string_equal(s.d[1].sink, "redis");
	assert_non_null(strstr(s.reason[1], "replaced a letter that did not "
	                       "decode: bad header of 3 bytes, version 1; "
	                       "redis: xxx"));
	assert_int_equal(strlen(s.reason[1]), 239);
	/* and a second sink merges into the replacement as into any letter */
	rec.seq = 2;
	assert_int_equal(shm_dead_add(env, &rec, "redis", "ERR"), 0);
	s.n = 0;
	assert_int_equal(shm_dead_each(env, collect_dead, &s), 0);
	assert_string_equal(s.d[0].sink, "pg,redis");
	assert_non_null(strstr(s.reason[0], "pg: 22P02 bad uuid; redis: ERR"));
	shm_env_close(env);
	ft_rmdir(dir);
	free(dir);
}

/* The sink field holds 15 characters: a sink that does not fit beside
 * those named already is refused (SHM_EINVAL) and the letter is left as
 * it was; every name that fits is kept, sorted, once. */
static void test_dead_letter_sink_that_does_not_fit_is_refused(void **state)
{
	static const char *const names[] = {"h", "b", "g", "a", "f", "c",
	                                    "e", "d", "e"};
	char *dir = tu_tmpdir();
	shm_env *env = tu_open(dir, NULL);
	shm_log_rec rec;
	struct dead_seen s = {0};

	memset(&rec, 0, sizeof rec);
	rec.seq = 9;
	assert_int_equal(shm_dead_add(env, &rec, "abcdefghij", "first"), 0);
	assert_int_equal(shm_dead_add(env, &rec, "klmnopqrst", "second"),
	                 SHM_EINVAL);
	fprintf(stderr, "%s\n", shm_errmsg());
	assert_non_null(strstr(shm_errmsg(), "'klmnopqrst'"));
	rec.seq = 10;
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		assert_int_equal(shm_dead_add(env, &rec, names[i], names[i]), 0);
	assert_int_equal(shm_dead_add(env, &rec, "i", "i"), SHM_EINVAL);
	assert_int_equal(shm_dead_each(env, collect_dead, &s), 0);
	assert_int_equal(s.n, 2);
	assert_string_equal(s.d[0].sink, "abcdefghij");
	assert_string_equal(s.reason[0], "first");
	assert_string_equal(s.d[1].sink, "a,b,c,d,e,f,g,h");
	assert_string_equal(s.reason[1], "h; b: b; g: g; a: a; f: f; c: c; "
	                                 "e: e; d: d");
	shm_env_close(env);
	ft_rmdir(dir);
	free(dir);
}

/* A letter's reason is UTF-8 (dead.c's format, and what shmctl log --dead
 * --json can write): a byte of a server's text that is not becomes '?'.
 * Its sink is a name: printable ASCII, else refused, nothing written. */
static void test_dead_letter_reason_is_utf8_and_sink_a_name(void **state)
{
	char *dir = tu_tmpdir();
	shm_env *env = tu_open(dir, NULL);
	shm_log_rec rec;
	struct dead_seen s = {0};

	memset(&rec, 0, sizeof rec);
	rec.seq = 5;
	assert_int_equal(shm_dead_add(env, &rec, "pg", "bad \xff byte, "
	                              "\xed\xa0\x80 surrogate, é kept"), 0);
	assert_int_equal(shm_dead_add(env, &rec, "redis", "cut \xe2\x82 short"), 0);
	assert_int_equal(shm_dead_add(env, &rec, "re\x01", "x"), SHM_EINVAL);
	assert_non_null(strstr(shm_errmsg(), "sink"));
	assert_int_equal(shm_dead_add(env, &rec, "r\xc3\xa9", "x"), SHM_EINVAL);
	assert_int_equal(shm_dead_add(env, &rec, "a b", "x"), SHM_EINVAL);
	assert_int_equal(shm_dead_each(env, collect_dead, &s), 0);
	assert_int_equal(s.n, 1);
	assert_string_equal(s.d[0].sink, "pg,redis");
	assert_string_equal(s.reason[0], "bad ? byte, ??? surrogate, é kept; "
	                                 "redis: cut ?? short");
	shm_env_close(env);
	ft_rmdir(dir);
	free(dir);
}

/* ------------------------------------------------------- integration */

static void test_once_mirrors_10000_messages_from_two_writers(void **state)
{
	FT_NEED_SERVERS();
	char *dir = tu_tmpdir();
	ft_plan p = {.n = 5000, .edit_every = 10, .del_every = 25,
	             .long_every = 100, .react_every = 40};
	pid_t w0, w1;

	ft_reset_servers();
	w0 = ft_spawn_writer(dir, 0, &p);
	w1 = ft_spawn_writer(dir, 1, &p);
	assert_int_equal(ft_wait(w0), 0);
	assert_int_equal(ft_wait(w1), 0);
	uint64_t t0 = ft_ms();
	assert_int_equal(ft_flush_once(dir, NULL), 0);
	fprintf(stderr, "flushed 10000 messages + edits/deletes in %" PRIu64
	        " ms\n", ft_ms() - t0);

	assert_int_equal(ft_sql_int("SELECT count(*) FROM messages"), 10000);
	assert_int_equal(ft_sql_int("SELECT count(DISTINCT id) FROM messages"),
	                 10000);
	/* deletes after edits: the last state won, in log order */
	assert_int_equal(ft_sql_int("SELECT count(*) FROM messages WHERE "
	                            "message_type = 'Delete' AND content = "
	                            "'[Message supprimé]'"), 2 * 200);
	assert_int_equal(ft_sql_int("SELECT count(*) FROM messages WHERE "
	                            "content LIKE 'edit 2 of %'"),
	                 2 * (500 - 100));
	assert_int_equal(ft_sql_int("SELECT count(*) FROM messages WHERE "
	                            "(metadata->>'edit_count')::int = 2"),
	                 2 * 500);
	assert_int_equal(ft_sql_int("SELECT count(*) FROM messages WHERE "
	                            "jsonb_array_length(metadata->'reactions'"
	                            "->'👍') = 2"), 2 * 125);
	assert_int_equal(ft_redis_int("DBSIZE"), 10000);

	shm_env *env = tu_open(dir, NULL);
	assert_int_equal(ft_check_messages(env, 0, 2, &p), 0);
	uint64_t last = ft_meta(env, "next_seq") - 1;
	assert_int_equal(ft_meta(env, "sink.pg.applied"), last);
	assert_int_equal(ft_meta(env, "sink.redis.applied"), last);
	char sql[256];
	snprintf(sql, sizeof sql, "SELECT applied FROM shm_sink_positions "
	         "WHERE sink = 'pg'");
	assert_int_equal(ft_sql_int(sql), (long long)last);
	assert_int_equal(tu_log_count(env), 0); /* trimmed */
	assert_true(ft_meta(env, "flusher.pg.batches") > 0);
	assert_int_equal(ft_meta(env, "flusher.pg.rows"), last);
	assert_int_equal(ft_meta(env, "flusher.redis.dead"), 0);

	/* a second --once has nothing to do and changes nothing */
	shm_env_close(env);
	assert_int_equal(ft_flush_once(dir, NULL), 0);
	assert_int_equal(ft_sql_int("SELECT count(*) FROM messages"), 10000);
	/* the position row deleted by hand is recreated from meta: one new
	 * message, nothing applied twice */
	ft_sql("DELETE FROM shm_sink_positions");
	ft_plan one = {.n = 1};
	assert_int_equal(ft_write(dir, 2, &one), 0);
	assert_int_equal(ft_flush_once(dir, NULL), 0);
	assert_int_equal(ft_sql_int("SELECT count(*) FROM messages"), 10001);
	assert_int_equal(ft_sql_int(sql), (long long)last + 1);
	ft_rmdir(dir);
	free(dir);
}

/* New messages go straight into messages by COPY; a put of an id that
 * PostgreSQL already has sends its batch back through the upsert, with
 * nothing applied twice (the trigger counts each row's INSERT/UPDATE). */
static void test_put_of_a_row_postgres_has_is_upserted_once(void **state)
{
	FT_NEED_SERVERS();
	char *dir = tu_tmpdir();
	ft_plan first = {.n = 300}, second = {.n = 300};
	shm_uuid old = ft_id(0, 5), edited = ft_id(0, 6);

	ft_reset_servers();
	ft_install_apply_counter();
	assert_int_equal(ft_write(dir, 0, &first), 0);
	assert_int_equal(ft_flush_once(dir, NULL), 0);
	assert_int_equal(ft_sql_int("SELECT sum(n) FROM test_apply_count"),
	                 300);

	/* one batch: new messages, a re-put of a flushed one, an edit */
	shm_env *env = tu_open(dir, NULL);
	shm_msg m = tu_msg("room-5", 100, "put again");
	m.id = old;
	assert_int_equal(shm_msg_put(env, &m), 0);
	assert_int_equal(shm_msg_edit(env, &edited, "edited", 6), 0);
	shm_env_close(env);
	assert_int_equal(ft_write(dir, 1, &second), 0);
	assert_int_equal(ft_flush_once(dir, NULL), 0);

	assert_int_equal(ft_sql_int("SELECT count(*) FROM messages"), 600);
	assert_int_equal(ft_sql_int("SELECT count(*) FROM messages WHERE "
	                            "content = 'put again' AND id = "
	                            "'01930000-0000-7000-8000-000000000005'"),
	                 1);
	assert_int_equal(ft_sql_int("SELECT count(*) FROM messages WHERE "
	                            "content = 'edited' AND id = "
	                            "'01930000-0000-7000-8000-000000000006'"),
	                 1);
	/* 300 + 300 inserts, 2 updates, none twice */
	assert_int_equal(ft_sql_int("SELECT sum(n) FROM test_apply_count"),
	                 602);
	assert_int_equal(ft_sql_int("SELECT max(n) FROM test_apply_count"), 2);
	ft_remove_apply_counter();
	env = tu_open(dir, NULL);
	assert_int_equal(ft_meta(env, "sink.pg.applied"),
	                 ft_meta(env, "next_seq") - 1);
	shm_env_close(env);
	ft_rmdir(dir);
	free(dir);
}

/* id's reply_count in L1, and in PostgreSQL's row (-1: no row). */
static uint32_t l1_replies(shm_env *env, const shm_uuid *id)
{
	shm_msg *got;
	uint32_t n;

	assert_int_equal(shm_msg_get(env, id, &got), 0);
	n = got->reply_count;
	shm_msg_free(got);
	return n;
}

static long long pg_replies(const shm_uuid *id)
{
	char s[37], sql[200];

	shm_uuid_format(id, s);
	snprintf(sql, sizeof sql, "SELECT (metadata->>'reply_count')::int FROM "
	         "messages WHERE id = '%s'", s);
	return ft_sql_int(sql);
}

/* Flushes dir's log, then opens it with o and drops id from L1 (flushed:
 * as an eviction, an expiry or another host's write would). */
static shm_env *flush_then_drop(const char *dir, const shm_options *o,
                                const shm_uuid *id)
{
	uint64_t dropped;
	shm_env *env;

	assert_int_equal(ft_flush_once(dir, NULL), 0);
	env = tu_open(dir, o);
	assert_int_equal(shm_l1_invalidate(env, SHM_INVAL_MSG, id->b, 16,
	                                   &dropped), 0);
	assert_int_equal(dropped, 1);
	return env;
}

/* A reply put again after L1 dropped it used to bump its parent again, in
 * L1 and, through the flusher, in Redis and PostgreSQL: counted once more
 * at each such put. With L3 configured, PostgreSQL's row says it is no new
 * reply (or one moved from another parent, which loses it); a reply
 * PostgreSQL does not hold still counts, its id and an old created_at
 * given by the caller. shm_msg_put_many the same. */
static void test_a_reply_l1_dropped_counts_once_when_put_again(void **state)
{
	FT_NEED_SERVERS();
	char *dir = tu_tmpdir();
	const int64_t t = 1600000000000000; /* 2020: before the watermark */
	shm_msg p = tu_msg("thread", 1, "parent"), q = tu_msg("thread", 1, "q"),
	        r = tu_msg("thread", 2, "reply"), n1, batch[2];
	shm_options o;
	shm_env *env;

	ft_reset_servers();
	shm_options_init(&o);
	o.pg_conninfo = ft_pg;
	o.l3_timeout_ms = 2000;
	p.id = ft_id(7, 1);
	q.id = ft_id(7, 2);
	r.id = ft_id(7, 3);
	p.created_at = t;
	q.created_at = t + 1;
	r.created_at = t + 2;
	r.has_parent = r.has_thread = true;
	r.parent_id = r.thread_id = p.id;
	env = tu_open(dir, &o);
	assert_int_equal(shm_msg_put(env, &p), 0);
	assert_int_equal(shm_msg_put(env, &q), 0);
	assert_int_equal(shm_msg_put(env, &r), 0);
	shm_env_close(env);
	env = flush_then_drop(dir, &o, &r.id);
	assert_int_equal(pg_replies(&p.id), 1);

	assert_int_equal(shm_msg_put(env, &r), 0); /* as it was */
	assert_int_equal(l1_replies(env, &p.id), 1);
	n1 = r;
	n1.id = ft_id(7, 4);
	n1.created_at = t + 3;
	n1.content = "a new reply, dated long ago";
	n1.content_len = (uint32_t)strlen(n1.content);
	assert_int_equal(shm_msg_put(env, &n1), 0);
	assert_int_equal(l1_replies(env, &p.id), 2);
	shm_env_close(env);

	env = flush_then_drop(dir, &o, &r.id);
	assert_int_equal(pg_replies(&p.id), 2);
	batch[0] = r;
	batch[1] = n1;
	batch[1].id = ft_id(7, 5);
	assert_int_equal(shm_msg_put_many(env, batch, 2, NULL), 0);
	assert_int_equal(l1_replies(env, &p.id), 3);
	shm_env_close(env);

	/* moved under q: PostgreSQL's row names p, which loses it */
	env = flush_then_drop(dir, &o, &r.id);
	assert_int_equal(pg_replies(&p.id), 3);
	r.parent_id = r.thread_id = q.id;
	assert_int_equal(shm_msg_put(env, &r), 0);
	assert_int_equal(l1_replies(env, &p.id), 2);
	assert_int_equal(l1_replies(env, &q.id), 1);
	assert_int_equal(tu_verify(env), 0);
	shm_env_close(env);
	assert_int_equal(ft_flush_once(dir, NULL), 0);
	assert_int_equal(pg_replies(&p.id), 2);
	assert_int_equal(pg_replies(&q.id), 1);
	char ps[37];
	shm_uuid_format(&p.id, ps);
	ft_assert_redis_msg_has(ps, "\"reply_count\":2,");
	ft_rmdir(dir);
	free(dir);
}

/* The id's row in PostgreSQL: 1 if it is soft-deleted as a delete leaves
 * it (type Delete, its content replaced), 0 if not, -1 if absent. */
static long long pg_deleted(const char *id)
{
	char sql[300];

	snprintf(sql, sizeof sql, "SELECT (message_type = 'Delete' AND content "
	         "= '%s')::int FROM messages WHERE id = '%s'",
	         SHM_DELETED_CONTENT, id);
	return ft_sql_int(sql);
}

/* The one dead letter of the environment in dir: its seq, sink and reason,
 * and the number of letters there. */
static int one_dead_letter(const char *dir, struct dead_seen *s)
{
	shm_env *env = tu_open(dir, NULL);

	memset(s, 0, sizeof *s);
	assert_int_equal(shm_dead_each(env, collect_dead, s), 0);
	assert_int_equal(ft_meta(env, "flusher.pg.dead"), (uint64_t)s->n);
	assert_int_equal(ft_meta(env, "flusher.redis.dead"), 0);
	shm_env_close(env);
	return s->n;
}

/* dir's L1 holds id soft-deleted. */
static void l1_holds_deleted(const char *dir, const shm_uuid *id)
{
	shm_env *env = tu_open(dir, NULL);
	shm_msg *got;

	assert_int_equal(shm_msg_get(env, id, &got), 0);
	assert_int_equal(got->type, SHM_MSG_DELETE);
	assert_string_equal(got->content, SHM_DELETED_CONTENT);
	shm_msg_free(got);
	shm_env_close(env);
}

/* A soft delete is final in PostgreSQL too (pg_sink.c invariant 6). A put
 * of an id PostgreSQL holds soft-deleted, from an L1 that does not hold it
 * (here another environment: another host, or an L1 that evicted it), and
 * an edit of a message another host deleted, used to undo the delete in
 * L3 through the upsert. Each such record is now a dead letter at once
 * naming the id, the rest of its batch applied once; PostgreSQL's row is
 * put back into that L1 and, through its log, into Redis. A deleted row
 * still takes another deleted state (here a reaction). */
static void test_postgres_keeps_a_soft_delete_final(void **state)
{
	FT_NEED_SERVERS();
	char *a = tu_tmpdir(), *b = tu_tmpdir(), *c = tu_tmpdir(), x[37],
	     w[37];
	struct dead_seen d;
	shm_env *env;

	ft_reset_servers();
	ft_install_apply_counter();
	/* host A: X put and deleted, W put */
	shm_msg mx = tu_msg("undel", 1, "secret"), mw = tu_msg("undel", 2, "w");
	mx.id = ft_id(9, 1);
	mw.id = ft_id(9, 2);
	shm_uuid_format(&mx.id, x);
	shm_uuid_format(&mw.id, w);
	env = tu_open(a, NULL);
	assert_int_equal(shm_msg_put(env, &mx), 0);
	assert_int_equal(shm_msg_put(env, &mw), 0);
	assert_int_equal(shm_msg_delete(env, &mx.id), 0);
	shm_env_close(env);
	assert_int_equal(ft_flush_once(a, NULL), 0);
	assert_int_equal(pg_deleted(x), 1);

	/* host B: X put as it was before its delete, in one batch with two
	 * new messages (the direct COPY meets X: the batch is upserted) */
	shm_msg n[3] = {tu_msg("undel", 3, "new 1"), mx, tu_msg("undel", 4,
	                                                         "new 2")};
	n[1].type = SHM_MSG_TEXT;
	n[1].content = "secret";
	n[1].content_len = 6;
	env = tu_open(b, NULL);
	assert_int_equal(shm_msg_put_many(env, n, 3, NULL), 0);
	shm_env_close(env);
	assert_int_equal(ft_flush_once(b, NULL), 0);
	assert_int_equal(pg_deleted(x), 1);
	assert_int_equal(ft_sql_int("SELECT count(*) FROM messages"), 4);
	/* X, W, then the two new ones: each applied once, X not again */
	assert_int_equal(ft_sql_int("SELECT sum(n) FROM test_apply_count"), 4);
	assert_int_equal(ft_sql_int("SELECT max(n) FROM test_apply_count"), 1);
	assert_int_equal(one_dead_letter(b, &d), 1);
	assert_int_equal(d.d[0].seq, 2);
	assert_string_equal(d.d[0].sink, "pg");
	assert_non_null(strstr(d.reason[0], x));
	assert_non_null(strstr(d.reason[0], "soft-deleted in PostgreSQL"));
	assert_true(ft_log_mentions(b, "dead letter"));
	assert_true(ft_log_mentions(b, "put back into L1"));
	env = tu_open(b, NULL);
	assert_int_equal(ft_meta(env, "sink.pg.applied"), 3);
	shm_env_close(env);
	/* PostgreSQL's row is back in B's L1, and its record takes it to
	 * Redis, which had the refused state (and to PostgreSQL: the same) */
	l1_holds_deleted(b, &mx.id);
	assert_int_equal(ft_flush_once(b, NULL), 0);
	ft_assert_redis_msg_has(x, "\"message_type\":\"Delete\"");
	assert_int_equal(pg_deleted(x), 1);
	assert_int_equal(one_dead_letter(b, &d), 1);

	/* host A: W, which another host deleted in PostgreSQL, edited in A's
	 * L1 (a record that goes by the staging table, not the COPY) */
	char sql[300];
	snprintf(sql, sizeof sql, "UPDATE messages SET message_type = 'Delete',"
	         " content = '%s' WHERE id = '%s'", SHM_DELETED_CONTENT, w);
	ft_sql(sql);
	env = tu_open(a, NULL);
	assert_int_equal(shm_msg_edit(env, &mw.id, "edited", 6), 0);
	shm_env_close(env);
	assert_int_equal(ft_flush_once(a, NULL), 0);
	assert_int_equal(pg_deleted(w), 1);
	assert_int_equal(one_dead_letter(a, &d), 1);
	assert_non_null(strstr(d.reason[0], w));
	assert_non_null(strstr(d.reason[0], "msg_edit"));
	l1_holds_deleted(a, &mw.id);

	/* host C: X put deleted, with a reaction: another deleted state,
	 * taken (a newer one: pg_sink.c invariant 7) */
	static const int32_t who[] = {7};
	shm_reaction re = {"x", who, 1};
	shm_msg del = mx;
	del.updated_at = shm_now_us();
	del.type = SHM_MSG_DELETE;
	del.content = SHM_DELETED_CONTENT;
	del.content_len = (uint32_t)strlen(SHM_DELETED_CONTENT);
	del.reactions = &re;
	del.n_reactions = 1;
	env = tu_open(c, NULL);
	assert_int_equal(shm_msg_put(env, &del), 0);
	shm_env_close(env);
	assert_int_equal(ft_flush_once(c, NULL), 0);
	assert_int_equal(pg_deleted(x), 1);
	snprintf(sql, sizeof sql, "SELECT jsonb_array_length(metadata->"
	         "'reactions'->'x') FROM messages WHERE id = '%s'", x);
	assert_int_equal(ft_sql_int(sql), 1);
	assert_int_equal(one_dead_letter(c, &d), 0);
	ft_remove_apply_counter();
	ft_rmdir(a);
	ft_rmdir(b);
	ft_rmdir(c);
	free(a);
	free(b);
	free(c);
}

/* PostgreSQL's updated_at of id (µs), -1 if absent, 0 if NULL. */
static long long pg_updated_at(const char *id)
{
	char sql[200];

	snprintf(sql, sizeof sql, "SELECT COALESCE((extract(epoch FROM "
	         "updated_at) * 1000000)::bigint, 0) FROM messages WHERE id = "
	         "'%s'", id);
	return ft_sql_int(sql);
}

/* PostgreSQL's content of id is want. */
static void pg_content_is(const char *id, const char *want)
{
	char sql[200];

	snprintf(sql, sizeof sql, "SELECT (content = '%s')::int FROM messages "
	         "WHERE id = '%s'", want, id);
	assert_int_equal(ft_sql_int(sql), 1);
}

/* dir's L1 holds id with that content and updated_at. */
static void l1_holds(const char *dir, const shm_uuid *id, const char *content,
                     int64_t updated_at)
{
	shm_env *env = tu_open(dir, NULL);
	shm_msg *got;

	assert_int_equal(shm_msg_get(env, id, &got), 0);
	assert_string_equal(got->content, content);
	assert_int_equal(got->updated_at, updated_at);
	shm_msg_free(got);
	shm_env_close(env);
}

/* The newer version wins in PostgreSQL (pg_sink.c invariant 7). Host B
 * wrote X at a later updated_at than A's edit of it (B's edit of what it
 * read, or a clock ahead): A's flusher, applying its edit after B's,
 * leaves B's row, commits the rest of the batch, moves its position past
 * the edit (no dead letter, no retry), counts it in
 * flusher.pg.superseded, and puts PostgreSQL's row back into A's L1,
 * whose next flush takes it to Redis. A put of X (an existing id, so the
 * direct COPY falls back to the upsert) at an older updated_at from a
 * host whose L1 does not hold X (C) is refused the same way; one at the
 * same updated_at is applied (a replay is idempotent), and so is an older
 * one replacing what A's L1 holds, which L1 makes newer (msg.c invariant
 * 10). Before, the last record applied won, whatever its age. */
static void test_postgres_keeps_the_newer_version(void **state)
{
	FT_NEED_SERVERS();
	char *a = tu_tmpdir(), *b = tu_tmpdir(), *c = tu_tmpdir(), x[37], w[37];
	char y[37];
	const int64_t t0 = shm_now_us(), t_b = t0 + INT64_C(60000000);
	struct dead_seen d;
	shm_env *env;

	ft_reset_servers();
	shm_msg mx = tu_msg("newer", 1, "v1 from A");
	shm_msg mw = tu_msg("newer", 2, "w"), my = tu_msg("newer", 3, "y");
	mx.id = ft_id(11, 1);
	mw.id = ft_id(11, 2);
	my.id = ft_id(11, 3);
	mx.updated_at = mw.updated_at = t0;
	shm_uuid_format(&mx.id, x);
	shm_uuid_format(&mw.id, w);
	shm_uuid_format(&my.id, y);
	env = tu_open(a, NULL);
	assert_int_equal(shm_msg_put(env, &mx), 0);
	assert_int_equal(shm_msg_put(env, &mw), 0);
	shm_env_close(env);
	assert_int_equal(ft_flush_once(a, NULL), 0);

	/* host B: X at a minute later */
	shm_msg bx = mx;
	bx.content = "v3 from B";
	bx.content_len = 9;
	bx.updated_at = t_b;
	env = tu_open(b, NULL);
	assert_int_equal(shm_msg_put(env, &bx), 0);
	shm_env_close(env);
	assert_int_equal(ft_flush_once(b, NULL), 0);
	pg_content_is(x, "v3 from B");

	/* host A: X edited (now: older than B's), W edited, Y new, in one
	 * batch */
	env = tu_open(a, NULL);
	assert_int_equal(shm_msg_edit(env, &mx.id, "v2 from A", 9), 0);
	assert_int_equal(shm_msg_edit(env, &mw.id, "w2", 2), 0);
	assert_int_equal(shm_msg_put(env, &my), 0);
	uint64_t last = ft_meta(env, "next_seq") - 1;
	shm_env_close(env);
	assert_int_equal(ft_flush_once(a, NULL), 0);
	pg_content_is(x, "v3 from B");
	assert_int_equal(pg_updated_at(x), t_b);
	pg_content_is(w, "w2");
	pg_content_is(y, "y");
	assert_int_equal(one_dead_letter(a, &d), 0);
	env = tu_open(a, NULL);
	assert_int_equal(ft_meta(env, "sink.pg.applied"), last);
	assert_int_equal(ft_meta(env, "flusher.pg.superseded"), 1);
	assert_int_equal(ft_meta(env, "flusher.pg.retries"), 0);
	assert_int_equal(ft_meta(env, "flusher.redis.superseded"), 0);
	shm_env_close(env);
	assert_true(ft_log_mentions(a, "PostgreSQL kept its newer row"));
	assert_true(ft_log_mentions(a, "put back into L1"));
	/* B's row is back in A's L1; its record takes it to Redis */
	l1_holds(a, &mx.id, "v3 from B", t_b);
	assert_int_equal(ft_flush_once(a, NULL), 0);
	ft_assert_redis_msg_has(x, "v3 from B");
	pg_content_is(x, "v3 from B");

	/* a put of X by a host whose L1 does not hold it, older than
	 * PostgreSQL's row: refused the same way, the row put back there */
	shm_msg ax = mx;
	ax.content = "v4 put by C";
	ax.content_len = 11;
	ax.updated_at = t_b - 1;
	env = tu_open(c, NULL);
	assert_int_equal(shm_msg_put(env, &ax), 0);
	last = ft_meta(env, "next_seq") - 1;
	shm_env_close(env);
	assert_int_equal(ft_flush_once(c, NULL), 0);
	pg_content_is(x, "v3 from B");
	l1_holds(c, &mx.id, "v3 from B", t_b);
	env = tu_open(c, NULL);
	assert_int_equal(ft_meta(env, "sink.pg.applied"), last);
	assert_int_equal(ft_meta(env, "flusher.pg.superseded"), 1);
	shm_env_close(env);
	assert_int_equal(one_dead_letter(c, &d), 0);

	/* one at the same updated_at: applied */
	ax.content = "v5 put by A";
	ax.updated_at = t_b;
	env = tu_open(a, NULL);
	assert_int_equal(shm_msg_put(env, &ax), 0);
	shm_env_close(env);
	assert_int_equal(ft_flush_once(a, NULL), 0);
	pg_content_is(x, "v5 put by A");
	/* an older one replacing what A's L1 holds: a change, newer than
	 * what it replaces (msg.c invariant 10), so applied too */
	ax.content = "v6 put by A";
	ax.updated_at = t_b - 10;
	env = tu_open(a, NULL);
	assert_int_equal(shm_msg_put(env, &ax), 0);
	shm_env_close(env);
	assert_int_equal(ft_flush_once(a, NULL), 0);
	pg_content_is(x, "v6 put by A");
	assert_int_equal(pg_updated_at(x), t_b + 1);
	l1_holds(a, &mx.id, "v6 put by A", t_b + 1);
	env = tu_open(a, NULL);
	assert_int_equal(ft_meta(env, "flusher.pg.superseded"), 1);
	shm_env_close(env);
	assert_int_equal(one_dead_letter(a, &d), 0);
	ft_rmdir(a);
	ft_rmdir(b);
	ft_rmdir(c);
	free(a);
	free(b);
	free(c);
}

/* A flusher killed between the COMMIT of a batch that held an older
 * version and its put-back of PostgreSQL's row (pg_newer.c), or whose
 * COMMIT's answer was lost: the position in PostgreSQL is past the
 * record, so the next start applies nothing of it. Here that state is
 * made by hand (A's edit of X, older than B's row, and A's position in
 * shm_sink_positions moved past it, its meta mirror not). The start that
 * finds the sink's position past its own does the batch's follow-up
 * again (pg_newer.c invariant 4): B's row is put back into A's L1 and its
 * record takes it to Redis. Before, A's L1 and Redis served A's older
 * edit until their TTLs. */
static void test_newer_row_put_back_after_a_kill_past_the_commit(
	void **state)
{
	FT_NEED_SERVERS();
	char *a = tu_tmpdir(), *b = tu_tmpdir(), x[37], sql[256];
	const char *ha[] = {"--env-id", "ha", NULL};
	const char *hb[] = {"--env-id", "hb", NULL};
	const int64_t t0 = shm_now_us(), t_b = t0 + INT64_C(60000000);
	struct dead_seen d;
	shm_env *env;

	ft_reset_servers();
	shm_msg mx = tu_msg("killed", 1, "v1 from A");
	mx.id = ft_id(12, 1);
	mx.updated_at = t0;
	shm_uuid_format(&mx.id, x);
	env = tu_open(a, NULL);
	assert_int_equal(shm_msg_put(env, &mx), 0);
	shm_env_close(env);
	assert_int_equal(ft_flush_once(a, ha), 0);
	shm_msg bx = mx;
	bx.content = "v3 from B";
	bx.content_len = 9;
	bx.updated_at = t_b;
	env = tu_open(b, NULL);
	assert_int_equal(shm_msg_put(env, &bx), 0);
	shm_env_close(env);
	assert_int_equal(ft_flush_once(b, hb), 0);

	/* A's edit, older than B's row; its batch "committed" (refused) */
	env = tu_open(a, NULL);
	assert_int_equal(shm_msg_edit(env, &mx.id, "v2 from A", 9), 0);
	uint64_t last = ft_meta(env, "next_seq") - 1;
	assert_true(ft_meta(env, "sink.pg.applied") < last);
	shm_env_close(env);
	snprintf(sql, sizeof sql, "UPDATE shm_sink_positions SET applied = %"
	         PRIu64 " WHERE env_id = 'ha'", last);
	ft_sql(sql);

	assert_int_equal(ft_flush_once(a, ha), 0);
	pg_content_is(x, "v3 from B");
	l1_holds(a, &mx.id, "v3 from B", t_b);
	assert_true(ft_log_mentions(a, "put back into L1"));
	assert_int_equal(ft_flush_once(a, ha), 0);
	pg_content_is(x, "v3 from B");
	ft_assert_redis_msg_has(x, "v3 from B");
	assert_int_equal(one_dead_letter(a, &d), 0);
	ft_rmdir(a);
	ft_rmdir(b);
	free(a);
	free(b);
}

/* The batch holding an older version commits, and PostgreSQL's newer
 * rows then cannot be read to be put back (here a trigger leaves the
 * session's search_path naming no schema once, as a connection lost right
 * after the COMMIT would fail that read): the worker says so, reconnects,
 * finds the position past its own and puts the rows back then
 * (pg_newer.c invariant 4). Before, it said WARN and went on: L1 and
 * Redis kept the older version until their TTLs. */
static void test_newer_rows_unread_after_the_commit_are_put_back_later(
	void **state)
{
	FT_NEED_SERVERS();
	char *a = tu_tmpdir(), *b = tu_tmpdir(), x[37];
	const char *fast[] = {"--backoff-min-ms", "10", NULL};
	const int64_t t0 = shm_now_us(), t_b = t0 + INT64_C(60000000);
	struct dead_seen d;
	shm_env *env;

	ft_reset_servers();
	shm_msg mx = tu_msg("unread", 1, "v1 from A");
	mx.id = ft_id(13, 1);
	mx.updated_at = t0;
	shm_uuid_format(&mx.id, x);
	env = tu_open(a, NULL);
	assert_int_equal(shm_msg_put(env, &mx), 0);
	shm_env_close(env);
	assert_int_equal(ft_flush_once(a, NULL), 0);
	shm_msg bx = mx;
	bx.content = "v3 from B";
	bx.content_len = 9;
	bx.updated_at = t_b;
	env = tu_open(b, NULL);
	assert_int_equal(shm_msg_put(env, &bx), 0);
	shm_env_close(env);
	assert_int_equal(ft_flush_once(b, NULL), 0);

	ft_sql("CREATE TABLE IF NOT EXISTS test_break_once (x int);"
	       "INSERT INTO test_break_once VALUES (1);"
	       "CREATE OR REPLACE FUNCTION test_break_search_path() RETURNS "
	       "trigger LANGUAGE plpgsql AS $$ BEGIN IF EXISTS (SELECT 1 FROM "
	       "public.test_break_once) THEN DELETE FROM public.test_break_once;"
	       " PERFORM set_config('search_path', 'test_no_such_schema', "
	       "false); END IF; RETURN NEW; END $$;"
	       "DROP TRIGGER IF EXISTS test_break ON messages;"
	       "CREATE TRIGGER test_break BEFORE INSERT ON messages FOR EACH "
	       "ROW EXECUTE FUNCTION test_break_search_path()");
	env = tu_open(a, NULL);
	assert_int_equal(shm_msg_edit(env, &mx.id, "v2 from A", 9), 0);
	uint64_t last = ft_meta(env, "next_seq") - 1;
	shm_env_close(env);
	assert_int_equal(ft_flush_once(a, fast), 0);
	ft_sql("DROP TRIGGER test_break ON messages;"
	       "DROP FUNCTION test_break_search_path();"
	       "DROP TABLE test_break_once");
	assert_true(ft_log_mentions(a, "test_no_such_schema") ||
	            ft_log_mentions(a, "does not exist"));
	pg_content_is(x, "v3 from B");
	l1_holds(a, &mx.id, "v3 from B", t_b);
	env = tu_open(a, NULL);
	assert_int_equal(ft_meta(env, "sink.pg.applied"), last);
	shm_env_close(env);
	assert_int_equal(one_dead_letter(a, &d), 0);
	ft_rmdir(a);
	ft_rmdir(b);
	free(a);
	free(b);
}

/* One batch with a put that would undo a soft delete (X) and a put older
 * than PostgreSQL's row (Y), from a host whose L1 holds neither (C): the
 * first try is aborted by X (kept deleted), X is a dead letter at once,
 * and the batch applied again without it keeps Y's newer row, counted
 * once in flusher.pg.superseded (not once per try); both rows are put
 * back into C's L1. */
static void test_kept_delete_and_older_version_in_one_batch(void **state)
{
	FT_NEED_SERVERS();
	char *a = tu_tmpdir(), *c = tu_tmpdir(), x[37], y[37];
	const int64_t t_a = shm_now_us() + INT64_C(60000000);
	struct dead_seen d;
	shm_env *env;

	ft_reset_servers();
	shm_msg mx = tu_msg("both", 1, "secret"), my = tu_msg("both", 2, "y A");
	mx.id = ft_id(14, 1);
	my.id = ft_id(14, 2);
	my.updated_at = t_a;
	shm_uuid_format(&mx.id, x);
	shm_uuid_format(&my.id, y);
	env = tu_open(a, NULL);
	assert_int_equal(shm_msg_put(env, &mx), 0);
	assert_int_equal(shm_msg_put(env, &my), 0);
	assert_int_equal(shm_msg_delete(env, &mx.id), 0);
	shm_env_close(env);
	assert_int_equal(ft_flush_once(a, NULL), 0);
	assert_int_equal(pg_deleted(x), 1);

	shm_msg n[2] = {mx, my};
	n[0].type = SHM_MSG_TEXT;
	n[1].content = "y C";
	n[1].content_len = 3;
	n[1].updated_at = t_a - 1;
	env = tu_open(c, NULL);
	assert_int_equal(shm_msg_put_many(env, n, 2, NULL), 0);
	uint64_t last = ft_meta(env, "next_seq") - 1;
	shm_env_close(env);
	assert_int_equal(ft_flush_once(c, NULL), 0);
	assert_int_equal(pg_deleted(x), 1);
	pg_content_is(y, "y A");
	assert_int_equal(one_dead_letter(c, &d), 1);
	assert_non_null(strstr(d.reason[0], x));
	env = tu_open(c, NULL);
	assert_int_equal(ft_meta(env, "sink.pg.applied"), last);
	assert_int_equal(ft_meta(env, "flusher.pg.superseded"), 1);
	shm_env_close(env);
	l1_holds_deleted(c, &mx.id);
	l1_holds(c, &my.id, "y A", t_a);
	ft_rmdir(a);
	ft_rmdir(c);
	free(a);
	free(c);
}

/* A record refused over a soft-deleted row whose L1 holds that row
 * already (as after a restart that names the record again) has nothing put
 * back: the log says so, not "put back into L1" (said before, though
 * nothing was written). */
static void test_kept_delete_l1_already_holds_is_not_said_put_back(
	void **state)
{
	FT_NEED_SERVERS();
	char *a = tu_tmpdir(), *b = tu_tmpdir(), x[37], sql[512];
	const char *one[] = {"--batch-records", "1", "--batch-max-records",
	                     "1", NULL};
	struct dead_seen d;
	shm_env *env;
	shm_msg *row;

	ft_reset_servers();
	shm_msg mx = tu_msg("again", 1, "secret");
	mx.id = ft_id(10, 1);
	shm_uuid_format(&mx.id, x);
	env = tu_open(a, NULL);
	assert_int_equal(shm_msg_put(env, &mx), 0);
	assert_int_equal(shm_msg_delete(env, &mx.id), 0);
	shm_env_close(env);
	assert_int_equal(ft_flush_once(a, NULL), 0);
	assert_int_equal(pg_deleted(x), 1);

	/* B: X as it was before its delete, then PostgreSQL's row itself */
	PGconn *pg = ft_pg_connect();
	assert_non_null(pg);
	snprintf(sql, sizeof sql, "SELECT " SHM_PG_MSG_JSON " FROM messages "
	         "WHERE id = '%s'", x);
	PGresult *res = PQexec(pg, sql);
	assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
	assert_int_equal(PQntuples(res), 1);
	char why[256];
	assert_int_equal(shm_msg_from_json(PQgetvalue(res, 0, 0),
	                                   (size_t)PQgetlength(res, 0, 0), &row,
	                                   why, sizeof why), 0);
	PQclear(res);
	PQfinish(pg);
	env = tu_open(b, NULL);
	assert_int_equal(shm_msg_put(env, &mx), 0);
	assert_int_equal(shm_msg_put(env, row), 0);
	shm_msg_free(row);
	shm_env_close(env);

	/* one record a batch: the first, X undeleted, is refused alone */
	assert_int_equal(ft_flush_once(b, one), 0);
	assert_int_equal(one_dead_letter(b, &d), 1);
	assert_int_equal(d.d[0].seq, 1);
	assert_non_null(strstr(d.reason[0], "soft-deleted in PostgreSQL"));
	assert_true(ft_log_mentions(b, "L1 holds PostgreSQL's soft-deleted "
	                               "row already, nothing to put back"));
	assert_false(ft_log_mentions(b, "put back into L1"));
	l1_holds_deleted(b, &mx.id);
	env = tu_open(b, NULL);
	assert_int_equal(ft_meta(env, "sink.pg.applied"), 2);
	shm_env_close(env);
	assert_int_equal(pg_deleted(x), 1);
	ft_rmdir(a);
	ft_rmdir(b);
	free(a);
	free(b);
}

/* The flusher puts PostgreSQL's soft-deleted row back into L1: a reply
 * there, L1 holding it (its refused record is not flushed, so L1 keeps
 * it), is a replace under the same parent, which its count keeps. */
static void test_a_reply_put_back_keeps_its_parents_count(void **state)
{
	FT_NEED_SERVERS();
	char *dir = tu_tmpdir(), rs[37], sql[300];
	shm_msg p = tu_msg("back", 1, "parent"), r = tu_msg("back", 2, "reply");
	shm_env *env;

	ft_reset_servers();
	p.id = ft_id(8, 1);
	r.id = ft_id(8, 2);
	r.has_parent = r.has_thread = true;
	r.parent_id = r.thread_id = p.id;
	env = tu_open(dir, NULL);
	assert_int_equal(shm_msg_put(env, &p), 0);
	assert_int_equal(shm_msg_put(env, &r), 0);
	shm_env_close(env);
	assert_int_equal(ft_flush_once(dir, NULL), 0);
	/* another host deletes it; this one edits it */
	shm_uuid_format(&r.id, rs);
	snprintf(sql, sizeof sql, "UPDATE messages SET message_type = 'Delete',"
	         " content = '%s' WHERE id = '%s'", SHM_DELETED_CONTENT, rs);
	ft_sql(sql);
	env = tu_open(dir, NULL);
	assert_int_equal(shm_msg_edit(env, &r.id, "edited", 6), 0);
	shm_env_close(env);
	assert_int_equal(ft_flush_once(dir, NULL), 0);
	assert_true(ft_log_mentions(dir, "put back into L1"));
	l1_holds_deleted(dir, &r.id);
	env = tu_open(dir, NULL);
	assert_int_equal(l1_replies(env, &p.id), 1);
	shm_env_close(env);
	assert_int_equal(ft_flush_once(dir, NULL), 0);
	assert_int_equal(pg_replies(&p.id), 1);
	ft_rmdir(dir);
	free(dir);
}

/* A row the upsert did not write for another reason than a soft delete
 * (here a trigger that skips it) is refused without a culprit: the batch
 * is replayed in halves down to that record, which is set aside, the rest
 * applied; the queue does not stall on it. */
static void test_upsert_short_of_rows_without_a_delete_does_not_stall(
	void **state)
{
	FT_NEED_SERVERS();
	char *dir = tu_tmpdir();
	const char *fast[] = {"--backoff-min-ms", "10", "--poison-retries", "1",
	                      NULL};
	struct dead_seen d;
	shm_msg a = tu_msg("skip", 1, "a"), b = tu_msg("skip", 2, "b");

	ft_reset_servers();
	ft_sql("CREATE OR REPLACE FUNCTION test_skip() RETURNS trigger "
	       "LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;"
	       "DROP TRIGGER IF EXISTS test_skip ON messages;"
	       "CREATE TRIGGER test_skip BEFORE UPDATE ON messages FOR EACH ROW "
	       "WHEN (NEW.content = 'skip me') EXECUTE FUNCTION test_skip()");
	shm_env *env = tu_open(dir, NULL);
	assert_int_equal(shm_msg_put(env, &a), 0);
	assert_int_equal(shm_msg_put(env, &b), 0);
	shm_env_close(env);
	assert_int_equal(ft_flush_once(dir, fast), 0);
	env = tu_open(dir, NULL);
	assert_int_equal(shm_msg_edit(env, &a.id, "skip me", 7), 0);
	assert_int_equal(shm_msg_edit(env, &b.id, "b2", 2), 0);
	shm_env_close(env);
	assert_int_equal(ft_flush_once(dir, fast), 0);
	ft_sql("DROP TRIGGER test_skip ON messages");
	assert_int_equal(ft_sql_int("SELECT count(*) FROM messages WHERE "
	                            "content IN ('a', 'b2')"), 2);
	assert_int_equal(one_dead_letter(dir, &d), 1);
	assert_int_equal(d.d[0].seq, 3);
	assert_non_null(strstr(d.reason[0], "fewer rows than staged"));
	env = tu_open(dir, NULL);
	assert_int_equal(ft_meta(env, "sink.pg.applied"), 4);
	shm_env_close(env);
	ft_rmdir(dir);
	free(dir);
}

/* New messages with default metadata are COPYed without the column, so
 * PostgreSQL fills in the column's default: only while that default is
 * the seed's default metadata. Changed under a running flusher (between
 * its batches), every later row must still hold its own metadata. */
static void test_rows_keep_their_metadata_whatever_the_default(void **state)
{
	FT_NEED_SERVERS();
	char *dir = tu_tmpdir();
	ft_plan p = {.n = 300, .edit_every = 10, .react_every = 7};

	ft_reset_servers();
	shm_env *env = tu_open(dir, NULL);
	pid_t fl = ft_spawn_flusher(dir, NULL);
	assert_int_equal(ft_write_in_child(dir, 0, &p), 0);
	uint64_t last = ft_meta(env, "next_seq") - 1;
	assert_int_equal(ft_wait_meta(env, "sink.pg.applied", last, 10000),
	                 last);
	assert_int_equal(ft_sql_int("SELECT count(*) FROM messages WHERE "
	                            "metadata = '{}'"), 0);

	ft_sql("ALTER TABLE messages ALTER COLUMN metadata SET DEFAULT '{}'");
	assert_int_equal(ft_write_in_child(dir, 1, &p), 0);
	last = ft_meta(env, "next_seq") - 1;
	assert_int_equal(ft_wait_meta(env, "sink.pg.applied", last, 10000),
	                 last);
	/* SIGTERM ends the batch in flight, not the backlog: Redis too must
	 * have every record before ft_check_messages looks at its keys */
	assert_int_equal(ft_wait_meta(env, "sink.redis.applied", last, 10000),
	                 last);
	kill(fl, SIGTERM);
	assert_int_equal(ft_wait(fl), 0);
	assert_int_equal(ft_sql_int("SELECT count(*) FROM messages"), 600);
	assert_int_equal(ft_sql_int("SELECT count(*) FROM messages WHERE "
	                            "metadata = '{}'"), 0);
	assert_int_equal(ft_check_messages(env, 0, 2, &p), 0);
	/* the WARN names the database, the fix and what happens meanwhile */
	assert_int_equal(ft_log_count(dir, "metadata's default"), 1);
	assert_true(ft_log_mentions(dir, "in database shm on "));
	assert_true(ft_log_mentions(dir, "re-apply sql/schema.sql (psql -f) "
	                            "or run ALTER TABLE messages ALTER COLUMN "
	                            "metadata SET DEFAULT '{\"edited\":false,"));
	assert_true(ft_log_mentions(dir, "every new row is sent with its "
	                            "metadata (correct, slower)"));

	/* back to sql/schema.sql's default, for the next tests */
	ft_sql("ALTER TABLE messages ALTER COLUMN metadata SET DEFAULT "
	       "'{\"edited\":false,\"edit_count\":0,\"reactions\":{},"
	       "\"mentions\":[],\"attachments\":[],\"reply_count\":0,"
	       "\"last_reply_at\":null}'");
	shm_env_close(env);
	ft_rmdir(dir);
	free(dir);
}

/* Rows are sent in UTF-8 whatever PGCLIENTENCODING says: in LATIN1 the
 * server converted 'é' as if it were two LATIN1 characters, and refused a
 * character LATIN1 lacks (the record became a dead letter). */
static void test_pgclientencoding_changes_no_row(void **state)
{
	FT_NEED_SERVERS();
	char *dir = tu_tmpdir();
	ft_plan p = {.n = 50, .react_every = 7};

	ft_reset_servers();
	assert_int_equal(ft_write(dir, 0, &p), 0);
	shm_env *env = tu_open(dir, NULL);
	shm_msg m = tu_msg("room-🐘", 5, "éléphant 🐘");
	assert_int_equal(shm_msg_put(env, &m), 0);
	setenv("PGCLIENTENCODING", "LATIN1", 1);
	int rc = ft_flush_once(dir, NULL);
	unsetenv("PGCLIENTENCODING");
	assert_int_equal(rc, 0);
	assert_int_equal(ft_meta(env, "flusher.pg.dead"), 0);
	assert_int_equal(ft_sql_int("SELECT count(*) FROM messages WHERE "
	                            "content = 'éléphant 🐘' AND "
	                            "room_id = 'room-🐘'"), 1);
	assert_int_equal(ft_check_messages(env, 0, 1, &p), 0);
	shm_env_close(env);
	ft_rmdir(dir);
	free(dir);
}

static void test_statics_graph_and_marks_are_mirrored(void **state)
{
	FT_NEED_SERVERS();
	char *dir = tu_tmpdir(), web[37], key[128];
	shm_env *env = tu_open(dir, NULL);
	shm_uuid w;
	shm_static *st = NULL;
	redisContext *rc;
	char *got;
	size_t gl;

	ft_reset_servers();
	shm_uuid_v7(&w);
	shm_uuid_format(&w, web);
	char big[5000];
	memset(big, 'x', sizeof big);
	assert_int_equal(shm_static_put(env, &w, "Page/home", "<h1>home</h1>",
	                                13, &st), 0);
	char sha1[41];
	memcpy(sha1, st->sha1, sizeof sha1);
	shm_static_free(st);
	assert_int_equal(shm_static_put(env, &w, "Post/big", big, sizeof big,
	                                &st), 0);
	shm_static_free(st);
	assert_int_equal(shm_static_put(env, &w, "Page/gone", "bye", 3, &st), 0);
	shm_static_free(st);
	const char *home_deps[] = {"Block/b1", "Person/p1"};
	const char *b1_deps[] = {"Person/p1"};
	assert_int_equal(shm_deps_set(env, &w, "Page/home", true, home_deps, 2), 0);
	assert_int_equal(shm_deps_set(env, &w, "Block/b1", false, b1_deps, 1), 0);
	assert_int_equal(shm_static_bust(env, &w, "Page/gone"), 0);
	shm_env_close(env);
	assert_int_equal(ft_flush_once(dir, NULL), 0);

	assert_non_null(rc = ft_redis());
	snprintf(key, sizeof key, "%s-Page/home-static", web);
	ft_redis_get(rc, key, &got, &gl);
	assert_non_null(got);
	assert_string_equal(got, "<h1>home</h1>");
	free(got);
	snprintf(key, sizeof key, "%s-Page/home-sha", web);
	ft_redis_get(rc, key, &got, &gl);
	assert_non_null(got);
	assert_string_equal(got, sha1);
	free(got);
	snprintf(key, sizeof key, "%s-Post/big-static", web);
	ft_redis_get(rc, key, &got, &gl); /* stored as an LZ4 frame */
	assert_non_null(got);
	assert_int_equal(gl, sizeof big);
	free(got);
	snprintf(key, sizeof key, "%s-Page/gone-static", web);
	ft_redis_get(rc, key, &got, &gl);
	assert_null(got);
	assert_int_equal(ft_sql_int("SELECT count(*) FROM shm_objects WHERE "
	                            "object_type = 'Page' AND object_id = "
	                            "'home' AND direct"), 1);
	assert_int_equal(ft_sql_int("SELECT count(*) FROM shm_edges"), 3);

	/* saving the person busts its references and marks it; destroying
	 * the block drops its edges both ways */
	env = tu_open(dir, NULL);
	assert_int_equal(shm_object_save(env, &w, "Person/p1"), 0);
	assert_int_equal(shm_object_destroy(env, &w, "Block/b1"), 0);
	shm_env_close(env);
	assert_int_equal(ft_flush_once(dir, NULL), 0);
	snprintf(key, sizeof key, "%s-Page/home-static", web);
	ft_redis_get(rc, key, &got, &gl);
	assert_null(got); /* busted as a reference of Person/p1 */
	assert_int_equal(ft_sql_int("SELECT count(*) FROM shm_edges"), 1);
	assert_int_equal(ft_sql_int("SELECT count(*) FROM shm_edges WHERE "
	                            "dep_type = 'Person'"), 1);
	assert_int_equal(ft_sql_int("SELECT count(*) FROM shm_objects WHERE "
	                            "object_type = 'Block'"), 0);
	assert_int_equal(ft_sql_int("SELECT count(*) FROM shm_marks"), 2);
	assert_int_equal(ft_sql_int("SELECT reason FROM shm_marks WHERE "
	                            "object_type = 'Block'"), 2);
	redisFree(rc);
	ft_rmdir(dir);
	free(dir);
}

/* A GRAPH_DROP of X inside a batch removes edges to X set before it in the
 * batch, but keeps those set after it. */
static void test_graph_drop_inside_a_batch_respects_order(void **state)
{
	FT_NEED_SERVERS();
	char *dir = tu_tmpdir();
	shm_env *env = tu_open(dir, NULL);
	shm_uuid w;
	const char *x[] = {"Person/x"};

	ft_reset_servers();
	shm_uuid_v7(&w);
	assert_int_equal(shm_deps_set(env, &w, "Page/a", true, x, 1), 0);
	assert_int_equal(shm_deps_set(env, &w, "Person/x", false, NULL, 0), 0);
	assert_int_equal(shm_object_destroy(env, &w, "Person/x"), 0);
	assert_int_equal(shm_deps_set(env, &w, "Page/b", true, x, 1), 0);
	shm_env_close(env);
	assert_int_equal(ft_flush_once(dir, NULL), 0);
	assert_int_equal(ft_sql_int("SELECT count(*) FROM shm_edges"), 1);
	assert_int_equal(ft_sql_int("SELECT count(*) FROM shm_edges WHERE "
	                            "object_id = 'b'"), 1);
	ft_rmdir(dir);
	free(dir);
}

/* Records as a libshm older than the canonical object form logged them: one
 * page in two spellings of its UUID ID (a declaration and a mark each). */
struct legacy {
	const shm_uuid *w;
};

static int legacy_body(shm__wtxn *w, void *ctx)
{
	struct legacy *c = ctx;
	static const char *const pages[] = {
		"Page/C0FFEE00-0000-4000-8000-0000000000AB",
		"Page/c0ffee00-0000-4000-8000-0000000000ab"};
	uint8_t key[128], set[32] = {1, 0, 0, 0, 0}, reason;
	size_t n = 5;
	uint64_t seq;
	int rc;

	for (int i = 0; i < 2; i++) {
		size_t kl = 16 + strlen(pages[i]);
		memcpy(key, c->w->b, 16);
		memcpy(key + 16, pages[i], kl - 16);
		if (i == 1) { /* the second declaration embeds Person/x */
			set[1] = 1;
			set[5] = 8;
			memcpy(set + 7, "Person/x", 8);
			n = 15;
		}
		reason = (uint8_t)(1 + i);
		if ((rc = shm__log_append(w, SHM_OP_GRAPH_SET, key, kl, set, n,
		                          &seq)) ||
		    (rc = shm__log_append(w, SHM_OP_MARK, key, kl, &reason, 1,
		                          &seq)))
			return rc;
	}
	return 0;
}

/* The flusher sees one object in both spellings: one row of each table,
 * the last record's, and the batch passes. Before, PostgreSQL refused the
 * batch (ON CONFLICT DO UPDATE cannot affect row a second time), every
 * retry: --once exited 3 and nothing was applied. */
static void test_legacy_records_of_one_object_in_two_spellings_apply(void **state)
{
	FT_NEED_SERVERS();
	char *dir = tu_tmpdir();
	shm_env *env = tu_open(dir, NULL);
	shm_uuid w;
	struct legacy c = {&w};

	ft_reset_servers();
	shm_uuid_v7(&w);
	assert_int_equal(shm__write(env, legacy_body, &c), 0);
	shm_env_close(env);
	assert_int_equal(ft_flush_once(dir, NULL), 0);
	assert_int_equal(ft_sql_int("SELECT count(*) FROM shm_objects WHERE "
	                            "object_id = 'c0ffee00-0000-4000-8000-"
	                            "0000000000ab' AND direct"), 1);
	assert_int_equal(ft_sql_int("SELECT count(*) FROM shm_objects"), 1);
	assert_int_equal(ft_sql_int("SELECT count(*) FROM shm_edges WHERE "
	                            "dep_id = 'x'"), 1);
	assert_int_equal(ft_sql_int("SELECT count(*) FROM shm_marks WHERE "
	                            "reason = 2"), 1);
	assert_int_equal(ft_sql_int("SELECT count(*) FROM shm_marks"), 1);
	ft_rmdir(dir);
	free(dir);
}

/* Appends a record whose payload is not a message (the sinks refuse it for
 * good), then one whose bytes no longer match their checksum. */
struct inject {
	int corrupt;
};

static int inject_body(shm__wtxn *w, void *ctx)
{
	struct inject *c = ctx;
	uint8_t key[16] = {0x01, 0x93, 0, 0, 0, 0, 0x70, 0, 0x80, 0, 0x77};
	uint64_t seq;
	int rc = shm__log_append(w, SHM_OP_MSG_PUT, key, 16, "not a message",
	                         13, &seq);
	if (rc || !c->corrupt)
		return rc;
	MDB_val k = {8, &seq}, v;
	if ((rc = mdb_get(w->txn, w->env->log, &k, &v)))
		return rc;
	uint8_t *copy = malloc(v.mv_size);
	memcpy(copy, v.mv_data, v.mv_size);
	copy[v.mv_size - 1] ^= 0xFF; /* a flipped payload byte */
	v.mv_data = copy;
	rc = mdb_put(w->txn, w->env->log, &k, &v, 0);
	free(copy);
	return rc;
}

static void test_poison_records_become_dead_letters(void **state)
{
	FT_NEED_SERVERS();
	char *dir = tu_tmpdir();
	shm_env *env = tu_open(dir, NULL);
	struct inject undecodable = {0}, corrupt = {1};
	ft_plan p = {.n = 300};

	ft_reset_servers();
	/* PostgreSQL alone refuses one message: the batch fails as a whole,
	 * the flusher isolates the culprit record by record */
	ft_sql("ALTER TABLE messages DROP CONSTRAINT IF EXISTS test_poison;"
	       "ALTER TABLE messages ADD CONSTRAINT test_poison CHECK "
	       "(content <> 'poison for pg')");
	shm_env_close(env);
	assert_int_equal(ft_write(dir, 0, &p), 0);
	env = tu_open(dir, NULL);
	assert_int_equal(shm__write(env, inject_body, &undecodable), 0);
	assert_int_equal(shm__write(env, inject_body, &corrupt), 0);
	shm_msg m = tu_msg("room-p", 5, "poison for pg");
	assert_int_equal(shm_msg_put(env, &m), 0);
	shm_env_close(env);
	p.n = 600; /* 300 more after the poison */
	env = NULL;
	{
		/* writer 1 with its own ids */
		assert_int_equal(ft_write(dir, 1, &p), 0);
	}
	const char *fast[] = {"--backoff-min-ms", "10", NULL};
	assert_int_equal(ft_flush_once(dir, fast), 0);
	ft_sql("ALTER TABLE messages DROP CONSTRAINT test_poison");

	assert_int_equal(ft_sql_int("SELECT count(*) FROM messages"), 300 + 600);
	assert_int_equal(ft_redis_int("DBSIZE"), 300 + 600 + 1);
	env = tu_open(dir, NULL);
	struct dead_seen s = {0};
	assert_int_equal(shm_dead_each(env, collect_dead, &s), 0);
	assert_int_equal(s.n, 3);
	assert_string_equal(s.d[0].sink, "pg,redis"); /* undecodable */
	assert_string_equal(s.d[1].sink, "pg,redis"); /* checksum */
	assert_non_null(strstr(s.reason[1], "corrupt"));
	assert_string_equal(s.d[2].sink, "pg");       /* CHECK violation */
	assert_non_null(strstr(s.reason[2], "23514"));
	assert_true(s.raw_size[2] > 0);
	assert_int_equal(ft_meta(env, "flusher.pg.dead"), 3);
	assert_int_equal(ft_meta(env, "flusher.redis.dead"), 2);
	assert_int_equal(tu_log_count(env), 0);
	shm_info info;
	assert_int_equal(shm_env_info(env, &info), 0);
	assert_int_equal(info.dead_letters, 3);
	shm_env_close(env);
	ft_rmdir(dir);
	free(dir);
}

/* A PostgreSQL refusal of a long row as a dead letter (239 bytes of
 * reason, shm_dead): its SQLSTATE, its primary message, the constraint
 * refused and the failing row, that row cut in its middle ("...") so that
 * its end is seen too. It used to be the error's whole text cut at 239
 * bytes: the row's head alone. The constraint, column and table
 * PostgreSQL names in its fields are given when its message does not
 * quote them (here a trigger's RAISE). */
static void test_long_row_refused_keeps_the_useful_parts_as_its_reason(
	void **state)
{
	FT_NEED_SERVERS();
	char *dir = tu_tmpdir(), content[3001];
	const char *fast[] = {"--backoff-min-ms", "10", "--poison-retries", "1",
	                      NULL};
	const char *check = "test_long_row_refused_by_a_constraint_named_so";
	struct dead_seen d = {0};
	char sql[512];

	ft_reset_servers();
	snprintf(sql, sizeof sql, "ALTER TABLE messages DROP CONSTRAINT IF "
	         "EXISTS %s; ALTER TABLE messages ADD CONSTRAINT %s CHECK "
	         "(length(content) < 2000)", check, check);
	ft_sql(sql);
	ft_sql("CREATE OR REPLACE FUNCTION test_rule() RETURNS trigger "
	       "LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused by a "
	       "rule' USING ERRCODE = '23514', CONSTRAINT = 'test_rule', "
	       "COLUMN = 'content', TABLE = 'messages'; END $$;"
	       "DROP TRIGGER IF EXISTS test_rule ON messages;"
	       "CREATE TRIGGER test_rule BEFORE INSERT ON messages FOR EACH ROW "
	       "WHEN (NEW.content = 'against the rule') EXECUTE FUNCTION "
	       "test_rule()");
	memset(content, 'x', sizeof content - 1);
	content[sizeof content - 1] = 0;
	shm_env *env = tu_open(dir, NULL);
	shm_msg m = tu_msg("long-row", 7, content);
	assert_int_equal(shm_msg_put(env, &m), 0);
	m = tu_msg("rule", 8, "against the rule");
	assert_int_equal(shm_msg_put(env, &m), 0);
	shm_env_close(env);
	assert_int_equal(ft_flush_once(dir, fast), 0);
	snprintf(sql, sizeof sql, "ALTER TABLE messages DROP CONSTRAINT %s",
	         check);
	ft_sql(sql);
	ft_sql("DROP TRIGGER test_rule ON messages");

	env = tu_open(dir, NULL);
	assert_int_equal(shm_dead_each(env, collect_dead, &d), 0);
	shm_env_close(env);
	assert_int_equal(d.n, 2);
	for (int i = 0; i < 2; i++)
		fprintf(stderr, "reason (%zu bytes): %s\n", strlen(d.reason[i]),
		        d.reason[i]);
	assert_non_null(strstr(d.reason[0], "23514 new row for relation "
	                        "\"messages\" violates check constraint"));
	assert_non_null(strstr(d.reason[0], check));
	const char *row = strstr(d.reason[0], "; DETAIL: Failing row contains (");
	assert_non_null(row);
	assert_non_null(strstr(row, "long-row, "));       /* its head, */
	assert_non_null(strstr(row, "..."));              /* its middle cut */
	assert_non_null(strstr(row, ", null, null)."));   /* and its end */
	assert_non_null(strstr(d.reason[1], "23514 refused by a rule; "
	                        "constraint test_rule; column content; table "
	                        "messages; CONTEXT: "));
	/* the log's ERROR line has PostgreSQL's whole text */
	assert_int_equal(ft_log_count(dir, "set aside as a dead letter: "
	                              "messages: 23514 ERROR:  new row for "
	                              "relation"), 1);
	ft_rmdir(dir);
	free(dir);
}

/* ------------------------- the map grown while a worker reads the log */

/* This binary's mdb_cursor_get comes before LMDB's for libshm's code.
 * Armed (grow_at: a log record's seq, set in the flusher's process alone),
 * the first cursor that steps forward (MDB_NEXT: a log iterator past its
 * first record) onto that record has another process grow the map
 * (grow_go, grow_done: pipes to and from it) before it returns: the
 * reader goes on in the read transaction it holds, in the map it had. */
static uint64_t grow_at;
static int grow_go = -1, grow_done = -1;

int mdb_cursor_get(MDB_cursor *cur, MDB_val *k, MDB_val *v,
                   MDB_cursor_op op)
{
	static int (*lmdb)(MDB_cursor *, MDB_val *, MDB_val *, MDB_cursor_op);
	int (*f)(MDB_cursor *, MDB_val *, MDB_val *, MDB_cursor_op);
	uint64_t at = __atomic_load_n(&grow_at, __ATOMIC_ACQUIRE), seq;
	char c;
	int rc;

	if (!(f = __atomic_load_n(&lmdb, __ATOMIC_ACQUIRE))) {
		*(void **)&f = dlsym(RTLD_NEXT, "mdb_cursor_get");
		__atomic_store_n(&lmdb, f, __ATOMIC_RELEASE);
	}
	rc = f(cur, k, v, op);
	if (rc || !at || op != MDB_NEXT || k->mv_size != 8)
		return rc;
	memcpy(&seq, k->mv_data, 8);
	if (seq != at || !__atomic_compare_exchange_n(&grow_at, &at, 0, false,
	                                              __ATOMIC_ACQ_REL,
	                                              __ATOMIC_ACQUIRE))
		return rc;
	if (write(grow_go, "g", 1) != 1 || read(grow_done, &c, 1) != 1)
		abort();
	return rc;
}

/* A worker meets a record that fails its checksum while another process
 * grows the map under its log iterator: the record is still set aside as
 * a dead letter, for both sinks, and the flusher says no error (the write
 * of the dead letter cannot adopt the new map inside the iterator's read
 * transaction, gate.c invariant 6). */
static void test_corrupt_record_met_as_the_map_grows_is_set_aside(void **state)
{
	FT_NEED_SERVERS();
	char *dir = tu_tmpdir();
	struct inject corrupt = {1};
	struct dead_seen s = {0};
	ft_plan p = {.n = 300};
	const size_t grown = 8 * FT_MIB;
	int go[2], done[2];
	shm_options o;
	char c;

	ft_reset_servers();
	shm_options_init(&o);
	o.map_size = 4 * FT_MIB;
	shm_env *env = tu_open(dir, &o);
	shm_env_close(env);
	assert_int_equal(ft_write(dir, 0, &p), 0);
	env = tu_open(dir, NULL);
	assert_int_equal(shm__write(env, inject_body, &corrupt), 0);
	uint64_t bad = ft_meta(env, "next_seq") - 1;
	shm_env_close(env);
	assert_int_equal(ft_write(dir, 1, &p), 0);

	assert_int_equal(pipe(go), 0);
	assert_int_equal(pipe(done), 0);
	pid_t g = fork();
	assert_true(g >= 0);
	if (g == 0) {
		if (read(go[0], &c, 1) != 1)
			_exit(3);
		int rc = ft_grow_map(dir, o.map_size, &grown, 1, 0);
		_exit(rc ? rc : write(done[1], "d", 1) == 1 ? 0 : 4);
	}
	tu_child_add(g);
	grow_go = go[1];
	grow_done = done[0];
	grow_at = bad; /* in the flusher's process: disarmed here at once */
	pid_t fl = ft_spawn_flusher(dir, (const char *const[]){"--once", NULL});
	grow_at = 0;
	assert_int_equal(ft_wait(fl), 0);
	assert_int_equal(ft_wait(g), 0); /* it grew the map */
	for (int i = 0; i < 2; i++) {
		close(go[i]);
		close(done[i]);
	}

	assert_int_equal(ft_sql_int("SELECT count(*) FROM messages"), 600);
	assert_int_equal(ft_redis_int("DBSIZE"), 600);
	env = tu_open(dir, NULL);
	assert_true(shm_env_options(env)->map_size >= grown);
	assert_int_equal(shm_dead_each(env, collect_dead, &s), 0);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.d[0].seq, bad);
	assert_string_equal(s.d[0].sink, "pg,redis");
	assert_non_null(strstr(s.reason[0], "corrupt"));
	assert_true(s.raw_size[0] > 0);
	assert_false(ft_log_mentions(dir, "cannot store the dead letter"));
	assert_int_equal(ft_log_count(dir, " ERROR "), 2); /* one per sink */
	shm_env_close(env);
	ft_rmdir(dir);
	free(dir);
}

/* Without --map-size-mb the flusher works in the map the environment has
 * (64 MiB here): it does not grow it to a new environment's 1 GiB, which
 * the applications' processes would then not see in theirs. With it, the
 * map takes the size given. */
static void test_flusher_keeps_the_environments_map_size(void **state)
{
	FT_NEED_SERVERS();
	char *dir = tu_tmpdir();
	const char *bigger[] = {"--map-size-mb", "128", NULL};
	shm_options o;

	ft_reset_servers();
	shm_options_init(&o);
	o.map_size = (size_t)64 << 20;
	shm_env *env = tu_open(dir, &o);
	shm_msg m = tu_msg("map", 1, "in a 64 MiB map");
	assert_int_equal(shm_msg_put(env, &m), 0);
	shm_env_close(env);
	assert_int_equal(tu_stored_map_size(dir), (size_t)64 << 20);

	assert_int_equal(ft_flush_once(dir, NULL), 0);
	assert_int_equal(ft_sql_int("SELECT count(*) FROM messages"), 1);
	assert_int_equal(tu_stored_map_size(dir), (size_t)64 << 20);

	m = tu_msg("map", 1, "another");
	env = tu_open(dir, &o);
	assert_int_equal(shm_msg_put(env, &m), 0);
	shm_env_close(env);
	assert_int_equal(ft_flush_once(dir, bigger), 0);
	assert_int_equal(ft_sql_int("SELECT count(*) FROM messages"), 2);
	assert_int_equal(tu_stored_map_size(dir), (size_t)128 << 20);
	ft_rmdir(dir);
	free(dir);
}

static void test_once_exits_3_when_a_sink_is_unreachable(void **state)
{
	FT_NEED_SERVERS();
	char *dir = tu_tmpdir();
	ft_plan p = {.n = 50};
	const char *dead_redis[] = {"--redis", "unix:///nonexistent/redis.sock",
	                            "--backoff-min-ms", "10",
	                            "--once-retries", "2", NULL};

	ft_reset_servers();
	assert_int_equal(ft_write(dir, 0, &p), 0);
	assert_int_equal(ft_flush_once(dir, dead_redis), FL_EXIT_SINK);
	/* PostgreSQL was drained all the same; the log is kept for Redis */
	assert_int_equal(ft_sql_int("SELECT count(*) FROM messages"), 50);
	shm_env *env = tu_open(dir, NULL);
	assert_int_equal(tu_log_count(env), 50);
	shm_env_close(env);
	assert_int_equal(ft_flush_once(dir, NULL), 0);
	env = tu_open(dir, NULL);
	assert_int_equal(tu_log_count(env), 0);
	assert_int_equal(ft_redis_int("DBSIZE"), 50);
	shm_env_close(env);
	/* nothing left to drain: a wrong --redis is still exit 3, not 0 */
	unsigned gave_up = ft_log_count(dir, "giving up (--once");
	assert_int_equal(ft_flush_once(dir, dead_redis), FL_EXIT_SINK);
	assert_int_equal(ft_log_count(dir, "giving up (--once"), gave_up + 1);
	ft_rmdir(dir);
	free(dir);
}

/* A process that dies holding a read transaction leaves its reader slot
 * (its snapshot keeps every page freed since from reuse: the map fills
 * up). The daemon's reader check clears it, says so, and counts it in
 * flusher.readers_cleared. The test opens the environment only after: a
 * read-write open clears such slots too. */
static void test_daemon_clears_a_dead_readers_slot(void **state)
{
	FT_NEED_SERVERS();
	char *dir = tu_tmpdir();
	const char *args[] = {"--reader-check-ms", "100", NULL};
	int st;

	shm_env_close(tu_open(dir, NULL));
	pid_t fl = ft_spawn_flusher(dir, args);
	assert_true(ft_log_waits_for(dir, "starting at", 10000));
	pid_t r = fork();
	assert_true(r >= 0);
	if (r == 0) {
		shm_env *e;
		shm_rtxn *t;
		if (shm_env_open(dir, NULL, &e) || shm_rtxn_begin(e, &t))
			_exit(1);
		kill(getpid(), SIGKILL);
		_exit(2);
	}
	assert_int_equal(waitpid(r, &st, 0), r);
	assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	assert_true(ft_log_waits_for(dir, "INFO readers: cleared 1 stale "
	                                  "reader slot", 10000));
	kill(fl, SIGTERM);
	assert_int_equal(ft_wait(fl), 0);
	shm_env *env = tu_open(dir, NULL);
	assert_int_equal(ft_meta(env, "flusher.readers_cleared"), 1);
	shm_env_close(env);
	ft_rmdir(dir);
	free(dir);
}

/* The flusher's totals (meta) after a restart. */
typedef struct ft_totals {
	uint64_t syncs, expired, readers_cleared, published, received, keys;
} ft_totals;

static void totals_read(shm_env *env, ft_totals *t)
{
	t->syncs = ft_meta(env, "flusher.syncs");
	t->expired = ft_meta(env, "flusher.expired");
	t->readers_cleared = ft_meta(env, "flusher.readers_cleared");
	t->published = ft_meta(env, "flusher.inval.published");
	t->received = ft_meta(env, "flusher.inval.received");
	t->keys = ft_meta(env, "flusher.inval.keys");
}

/* Leaves a reader slot of a dead process in dir (its pid exits with
 * SIGKILL holding a read transaction). */
static void kill_a_reader(const char *dir)
{
	int st;
	pid_t r = fork();

	assert_true(r >= 0);
	if (r == 0) {
		shm_env *e;
		shm_rtxn *t;
		if (shm_env_open(dir, NULL, &e) || shm_rtxn_begin(e, &t))
			_exit(1);
		kill(getpid(), SIGKILL);
		_exit(2);
	}
	assert_int_equal(waitpid(r, &st, 0), r);
	assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
}

/* Publishes a peer's invalidation naming one message this host lacks. */
static void publish_peer_key(void)
{
	char id[37], msg[128];
	shm_uuid u;
	redisContext *c = ft_redis();

	assert_non_null(c);
	shm_uuid_v7(&u);
	shm_uuid_format(&u, id);
	snprintf(msg, sizeof msg, "shm-inval 2 hostZ\nm %s\n", id);
	redisReply *r = redisCommand(c, "PUBLISH %s %s", FL_INVAL_CHANNEL, msg);
	assert_non_null(r);
	assert_int_equal(r->type, REDIS_REPLY_INTEGER);
	assert_int_equal(r->integer, 1); /* the flusher's subscriber */
	freeReplyObject(r);
	redisFree(c);
}

/* One round of each total moving for real: a message synced (nosync),
 * mirrored (its invalidation published) and expired (l1_ttl_s 1), a dead
 * reader's slot cleared, a peer's invalidation received. t: the totals
 * before the round; each must grow by what the round did. */
static void totals_move(const char *dir, shm_env *env, const ft_totals *t)
{
	shm_msg m = tu_msg("totals", 1, "expires in a second");

	assert_int_equal(ft_wait_meta(env, "flusher.inval.subscribed", 1,
	                              10000), 1);
	assert_int_equal(shm_msg_put(env, &m), 0);
	assert_true(ft_wait_meta(env, "flusher.inval.published",
	                         t->published + 1, 10000) > t->published);
	assert_int_equal(ft_wait_meta(env, "flusher.expired", t->expired + 1,
	                              10000), t->expired + 1);
	assert_true(ft_wait_meta(env, "flusher.syncs", t->syncs + 1, 10000) >
	            t->syncs);
	kill_a_reader(dir);
	assert_int_equal(ft_wait_meta(env, "flusher.readers_cleared",
	                              t->readers_cleared + 1, 10000),
	                 t->readers_cleared + 1);
	publish_peer_key();
	assert_int_equal(ft_wait_meta(env, "flusher.inval.received",
	                              t->received + 1, 10000), t->received + 1);
	assert_int_equal(ft_wait_meta(env, "flusher.inval.keys", t->keys + 1,
	                              10000), t->keys + 1);
}

/* flusher.syncs, .expired, .readers_cleared and flusher.inval.* are
 * totals since the environment was made, as flusher.<sink>.* and
 * cleanup.total.* are: a restarted flusher goes on from what the last one
 * published, it does not start again from 0. */
static void test_totals_carry_over_a_restart(void **state)
{
	FT_NEED_SERVERS();
	char *dir = tu_tmpdir();
	const char *args[] = {"--reader-check-ms", "100",
	                      "--expire-interval-ms", "100",
	                      "--sync-interval-ms", "100",
	                      "--stats-interval-ms", "100",
	                      "--batch-ms", "5", NULL};
	shm_options o;
	ft_totals before, after;

	ft_reset_servers();
	shm_options_init(&o);
	o.l1_ttl_s = 1;
	o.durability = SHM_DURABILITY_NOSYNC;
	shm_env *env = tu_open(dir, &o);
	pid_t fl = ft_spawn_flusher(dir, args);
	memset(&before, 0, sizeof before);
	totals_move(dir, env, &before);
	kill(fl, SIGTERM);
	assert_int_equal(ft_wait(fl), 0);
	totals_read(env, &before);

	fl = ft_spawn_flusher(dir, args);
	/* the new flusher's first stats: the totals it went on from */
	uint64_t end = ft_ms() + 10000;
	while (ft_meta(env, "flusher.pid") != (uint64_t)fl && ft_ms() < end)
		tu_sleep_ms(20);
	assert_int_equal(ft_meta(env, "flusher.pid"), (uint64_t)fl);
	assert_int_equal(ft_wait_meta(env, "flusher.inval.subscribed", 1,
	                              10000), 1);
	totals_read(env, &after);
	assert_true(after.syncs >= before.syncs);
	assert_int_equal(after.expired, before.expired);
	assert_int_equal(after.readers_cleared, before.readers_cleared);
	assert_true(after.published >= before.published);
	assert_int_equal(after.received, before.received);
	assert_int_equal(after.keys, before.keys);
	totals_move(dir, env, &before);
	kill(fl, SIGTERM);
	assert_int_equal(ft_wait(fl), 0);
	totals_read(env, &after);
	assert_int_equal(after.expired, before.expired + 1);
	assert_int_equal(after.readers_cleared, before.readers_cleared + 1);
	assert_int_equal(after.received, before.received + 1);
	assert_int_equal(after.keys, before.keys + 1);
	assert_true(after.syncs > before.syncs);
	assert_true(after.published > before.published);
	shm_env_close(env);
	ft_rmdir(dir);
	free(dir);
}

/* ------------------------- PostgreSQL's position against the environment's */

static const char *const fast_give_up[] = {"--backoff-min-ms", "10",
                                           "--once-retries", "2", NULL};

/* The flusher dying between PostgreSQL's COMMIT and its own bookkeeping
 * (meta sink.pg.applied) leaves PostgreSQL ahead of the environment: the
 * next run believes PostgreSQL's position, says so, and applies nothing
 * twice. Made here by draining PostgreSQL with Redis unreachable (the log
 * is kept), then setting sink.pg.applied back to 0. */
static void test_sink_ahead_of_its_recorded_position_applies_nothing_twice(
	void **state)
{
	FT_NEED_SERVERS();
	char *dir = tu_tmpdir();
	ft_plan p = {.n = 50};
	const char *dead_redis[] = {"--redis", "unix:///nonexistent/redis.sock",
	                            "--backoff-min-ms", "10",
	                            "--once-retries", "2", NULL};

	ft_reset_servers();
	ft_install_apply_counter();
	assert_int_equal(ft_write(dir, 0, &p), 0);
	assert_int_equal(ft_flush_once(dir, dead_redis), FL_EXIT_SINK);
	shm_env *env = tu_open(dir, NULL);
	assert_int_equal(ft_meta(env, "sink.pg.applied"), 50);
	assert_int_equal(shm_meta_set(env, "sink.pg.applied", 0), 0);
	assert_int_equal(tu_log_count(env), 50);
	shm_env_close(env);

	assert_int_equal(ft_flush_once(dir, NULL), 0);
	assert_true(ft_log_mentions(dir, "position 50 from the sink replaces "
	                                 "0"));
	assert_int_equal(ft_sql_int("SELECT count(*) FROM test_apply_count"),
	                 50);
	assert_int_equal(ft_sql_int("SELECT max(n) FROM test_apply_count"), 1);
	assert_int_equal(ft_redis_int("DBSIZE"), 50);
	env = tu_open(dir, NULL);
	assert_int_equal(ft_meta(env, "sink.pg.applied"), 50);
	assert_int_equal(tu_log_count(env), 0);
	assert_int_equal(ft_check_messages(env, 0, 1, &p), 0);
	shm_env_close(env);
	ft_remove_apply_counter();
	ft_rmdir(dir);
	free(dir);
}

/* PostgreSQL's position moved under a running flusher (a second flusher
 * on another host under the same env-id applied records; here an UPDATE,
 * 20 -> 25): the batch (20..30] finds the row not at 20, is not applied,
 * the position is read again and the batch keeps only what lies past it.
 * Nothing is applied twice; PostgreSQL's position wins (records 21..25 are
 * the other flusher's to have applied). */
static void test_position_moved_under_a_running_flusher_is_read_again(
	void **state)
{
	FT_NEED_SERVERS();
	char *dir = tu_tmpdir();
	const char *slow[] = {"--batch-ms", "1500", "--backoff-min-ms", "10",
	                      "--no-invalidation", NULL};
	ft_plan p = {.n = 20};

	ft_reset_servers();
	ft_install_apply_counter();
	assert_int_equal(ft_write(dir, 0, &p), 0);
	pid_t fl = ft_spawn_flusher(dir, slow);
	shm_env *env = tu_open(dir, NULL);
	assert_int_equal(ft_wait_meta(env, "sink.pg.applied", 20, 10000), 20);
	shm_env_close(env);
	ft_sql("UPDATE shm_sink_positions SET applied = 25");
	p.n = 10;
	assert_int_equal(ft_write_in_child(dir, 1, &p), 0); /* seqs 21..30 */
	env = tu_open(dir, NULL);
	assert_int_equal(ft_wait_meta(env, "sink.pg.applied", 30, 10000), 30);
	assert_int_equal(ft_wait_meta(env, "sink.redis.applied", 30, 10000),
	                 30);
	kill(fl, SIGTERM);
	assert_int_equal(ft_wait(fl), 0);
	assert_true(ft_log_mentions(dir, "(applied elsewhere?): re-reading "
	                                 "it"));
	assert_true(ft_log_mentions(dir, "position 25 from the sink replaces "
	                                 "20"));
	assert_int_equal(ft_sql_int("SELECT applied FROM shm_sink_positions"),
	                 30);
	assert_int_equal(ft_sql_int("SELECT count(*) FROM messages"), 25);
	assert_int_equal(ft_sql_int("SELECT max(n) FROM test_apply_count"), 1);
	assert_int_equal(ft_redis_int("DBSIZE"), 30);
	assert_int_equal(tu_log_count(env), 0);
	shm_env_close(env);
	ft_remove_apply_counter();
	ft_rmdir(dir);
	free(dir);
}

/* Redis back to no memory limit, whatever a test left. */
static int redis_unlimited(void **state)
{
	if (ft_redis_url)
		ft_redis_cmd("CONFIG SET maxmemory 0");
	return ft_teardown(state);
}

/* Redis refusing writes for a while (its maxmemory reached, noeviction:
 * "OOM command not allowed ..."): a temporary error, not the records'
 * fault. The batch is retried, no record is set aside, PostgreSQL goes on;
 * --once gives up (exit 3) saying why, the log kept for Redis; Redis given
 * room, the next run catches up. */
static void test_redis_out_of_memory_is_retried_not_dead_lettered(
	void **state)
{
	FT_NEED_SERVERS();
	char *dir = tu_tmpdir();
	ft_plan p = {.n = 30};
	shm_info in;

	ft_reset_servers();
	assert_int_equal(ft_write(dir, 0, &p), 0);
	ft_redis_cmd("CONFIG SET maxmemory-policy noeviction");
	ft_redis_cmd("CONFIG SET maxmemory 1");
	assert_int_equal(ft_flush_once(dir, fast_give_up), FL_EXIT_SINK);
	ft_redis_cmd("CONFIG SET maxmemory 0");
	assert_true(ft_log_mentions(dir, "redis: OOM command not allowed"));
	assert_true(ft_log_mentions(dir, "giving up (--once: 2 failures in "
	                                 "a row)"));
	assert_int_equal(ft_sql_int("SELECT count(*) FROM messages"), 30);
	assert_int_equal(ft_redis_int("DBSIZE"), 0);
	shm_env *env = tu_open(dir, NULL);
	assert_int_equal(shm_env_info(env, &in), 0);
	assert_int_equal(in.dead_letters, 0);
	assert_int_equal(tu_log_count(env), 30);
	shm_env_close(env);

	assert_int_equal(ft_flush_once(dir, NULL), 0);
	assert_int_equal(ft_redis_int("DBSIZE"), 30);
	env = tu_open(dir, NULL);
	assert_int_equal(shm_env_info(env, &in), 0);
	assert_int_equal(in.dead_letters, 0);
	assert_int_equal(tu_log_count(env), 0);
	assert_int_equal(ft_check_messages(env, 0, 1, &p), 0);
	shm_env_close(env);
	ft_rmdir(dir);
	free(dir);
}

/* Copies file from to to (the environment closed). */
static void copy_file(const char *from, const char *to)
{
	char buf[65536];
	ssize_t n;
	int in = open(from, O_RDONLY), out;

	assert_true(in >= 0);
	out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(out >= 0);
	while ((n = read(in, buf, sizeof buf)) > 0)
		assert_int_equal(write(out, buf, (size_t)n), n);
	assert_int_equal(n, 0);
	close(in);
	close(out);
}

/*
 * An environment restored from an older copy of itself (same env_uuid)
 * whose log now ends before the position PostgreSQL holds for it: the
 * records it writes reuse sequence numbers PostgreSQL has applied, and
 * believing that position would skip them. The pg sink refuses: an ERROR
 * naming the env-id, both positions and the likely cause, nothing applied,
 * the log kept, --once exit 3. Deleting the row (the README's remedy)
 * starts it at its own position: then everything arrives.
 */
static void test_environment_restored_from_an_older_copy_is_refused(
	void **state)
{
	FT_NEED_SERVERS();
	char *dir = tu_tmpdir(), data[4200], copy[4200], uuid[37], want[300];
	ft_plan p = {.n = 20};

	ft_reset_servers();
	snprintf(data, sizeof data, "%s/data.mdb", dir);
	snprintf(copy, sizeof copy, "%s.copy", dir);
	assert_int_equal(ft_write(dir, 0, &p), 0);
	assert_int_equal(ft_flush_once(dir, NULL), 0);
	copy_file(data, copy);
	p.n = 10;
	assert_int_equal(ft_write(dir, 1, &p), 0);
	assert_int_equal(ft_flush_once(dir, NULL), 0);
	assert_int_equal(ft_sql_int("SELECT applied FROM shm_sink_positions"),
	                 30);
	copy_file(copy, data); /* restored: its log ends at 20 */
	unlink(copy);
	p.n = 5;
	assert_int_equal(ft_write(dir, 2, &p), 0); /* seqs 21..25 */

	assert_int_equal(ft_flush_once(dir, fast_give_up), FL_EXIT_SINK);
	shm_env *env = tu_open(dir, NULL);
	assert_int_equal(fl_env_uuid(env, uuid), 0);
	snprintf(want, sizeof want, "the sink says env-id '%s' applied up to "
	         "30, but this environment's log ends at 25", uuid);
	assert_true(ft_log_mentions(dir, want));
	assert_true(ft_log_mentions(dir, "restored from an older copy"));
	/* one ERROR line of its own, not one more at each retry (the retry
	 * lines name it: "position: the sink says ...") */
	assert_int_equal(ft_log_count(dir, "ERROR pg: the sink says env-id"), 1);
	assert_int_equal(ft_log_count(dir, "pg: position: the sink says"), 2);
	assert_int_equal(ft_sql_int("SELECT count(*) FROM messages"), 30);
	assert_int_equal(ft_sql_int("SELECT applied FROM shm_sink_positions"),
	                 30);
	assert_int_equal(ft_meta(env, "sink.pg.applied"), 20);
	assert_int_equal(tu_log_count(env), 5);
	shm_env_close(env);

	ft_sql("DELETE FROM shm_sink_positions");
	assert_int_equal(ft_flush_once(dir, NULL), 0);
	assert_int_equal(ft_sql_int("SELECT count(*) FROM messages"), 35);
	assert_int_equal(ft_sql_int("SELECT applied FROM shm_sink_positions"),
	                 25);
	env = tu_open(dir, NULL);
	assert_int_equal(tu_log_count(env), 0);
	assert_int_equal(ft_check_messages(env, 2, 1, &p), 0);
	shm_env_close(env);
	ft_rmdir(dir);
	free(dir);
}

/* Records the log no longer holds when PostgreSQL's position says it
 * needs them: PostgreSQL restored from an older backup (its position, 5,
 * behind the environment's 20, the log trimmed), or a pg sink added to a
 * flusher that ran with Redis alone. The flusher warns, naming what it
 * cannot replay, skips it, and goes on: later records arrive. */
static void test_sink_behind_a_trimmed_log_warns_and_goes_on(void **state)
{
	FT_NEED_SERVERS();
	char *dir = tu_tmpdir(), *later = tu_tmpdir();
	const char *no_pg[] = {"--pg", "", NULL};
	ft_plan p = {.n = 20};

	ft_reset_servers();
	assert_int_equal(ft_write(dir, 0, &p), 0);
	assert_int_equal(ft_flush_once(dir, NULL), 0);
	ft_sql("UPDATE shm_sink_positions SET applied = 5");
	p.n = 5;
	assert_int_equal(ft_write(dir, 1, &p), 0);
	assert_int_equal(ft_flush_once(dir, NULL), 0);
	assert_true(ft_log_mentions(dir, "position 5 from the sink replaces 20 "
	                                 "(records already trimmed from the "
	                                 "log cannot be replayed)"));
	assert_int_equal(ft_sql_int("SELECT count(*) FROM messages"), 25);
	assert_int_equal(ft_sql_int("SELECT applied FROM shm_sink_positions"),
	                 25);
	shm_env *env = tu_open(dir, NULL);
	assert_int_equal(ft_meta(env, "sink.pg.applied"), 25);
	assert_int_equal(tu_log_count(env), 0);
	shm_env_close(env);

	ft_reset_servers();
	p.n = 10;
	assert_int_equal(ft_write(later, 2, &p), 0);
	assert_int_equal(ft_flush_once(later, no_pg), 0);
	assert_int_equal(ft_flush_once(later, NULL), 0);
	assert_true(ft_log_mentions(later, "records (0..10] were trimmed "
	                                   "before this sink had them; "
	                                   "skipping"));
	assert_int_equal(ft_sql_int("SELECT count(*) FROM messages"), 0);
	assert_int_equal(ft_sql_int("SELECT applied FROM shm_sink_positions"),
	                 10);
	p.n = 5;
	assert_int_equal(ft_write(later, 3, &p), 0);
	assert_int_equal(ft_flush_once(later, NULL), 0);
	assert_int_equal(ft_sql_int("SELECT count(*) FROM messages"), 5);

	/* the same when later records wait behind the hole: Redis left out
	 * of a run, which trimmed (15..19], then given again. The batch
	 * began at 20 without a word. */
	const char *no_redis[] = {"--redis", "", NULL};
	p.n = 4;
	assert_int_equal(ft_write(later, 4, &p), 0);
	assert_int_equal(ft_flush_once(later, no_redis), 0);
	p.n = 3;
	assert_int_equal(ft_write(later, 5, &p), 0);
	assert_int_equal(ft_flush_once(later, NULL), 0);
	assert_true(ft_log_mentions(later, "WARN redis: records (15..19] were "
	                                   "trimmed before this sink had them; "
	                                   "skipping"));
	env = tu_open(later, NULL);
	assert_int_equal(ft_meta(env, "sink.redis.applied"), 22);
	shm_env_close(env);
	ft_rmdir(dir);
	ft_rmdir(later);
	free(dir);
	free(later);
}

/* A log line too long for fl_log's buffer (2 KiB), or a message too long
 * for fl_log_alert's and fl_repeat_fail's (1 KiB), is cut between two
 * characters: the log stays UTF-8. It was cut at a byte count, inside a
 * character for one parity of the line's prefix in two. */
static void test_long_log_lines_are_cut_between_characters(void **state)
{
	char *dir = tu_tmpdir(), logf[4200], text[3001], *buf;
	fl_repeat r;
	size_t len;

	for (int i = 0; i < 1500; i++)
		memcpy(text + 2 * i, "\xc3\xa9", 2);
	text[3000] = 0;
	snprintf(logf, sizeof logf, "%s/flusher.log", dir);
	assert_int_equal(fl_log_open(logf, FL_INFO), 0);
	/* components of both parities shift the cut by one byte */
	fl_log(FL_INFO, "a", "%s", text);
	fl_log(FL_INFO, "ab", "%s", text);
	fl_log(FL_INFO, "a", "x%s", text);
	fl_log(FL_INFO, "ab", "x%s", text);
	fl_repeat_init(&r, "a", "a test", 60);
	fl_repeat_fail(&r, FL_WARN, "%s", text);
	fl_repeat_ok(&r);
	fl_repeat_fail(&r, FL_WARN, "x%s", text);
	fl_log_close();
	FILE *f = fopen(logf, "rb");
	assert_non_null(f);
	assert_non_null(buf = malloc(64 * 1024));
	len = fread(buf, 1, 64 * 1024, f);
	fclose(f);
	assert_true(len > 0);
	assert_int_equal(shm__utf8_bad(buf, len), len);
	size_t lines = 0;
	for (size_t i = 0; i < len; i++)
		lines += buf[i] == '\n';
	assert_int_equal(lines, 7);
	assert_int_equal(buf[len - 1], '\n');
	free(buf);
	ft_rmdir(dir);
	free(dir);
}

/* A log line is printable whatever its message quotes: an ESC, a BEL, a
 * tab, invalid UTF-8 as \xNN, line breaks (and the indentation after them)
 * as one space. Only CR/LF were folded: the ESC and BEL reached the file
 * raw. A line too long is cut between two escapes, not inside one. */
static void test_log_line_shows_control_bytes_escaped(void **state)
{
	char *dir = tu_tmpdir(), logf[4200], text[1001], buf[8192];
	static const char want[] = " INFO t: esc \\x1b[2J bel \\x07 tab"
	                           "\\x09end next \\xff done\n";

	memset(text, 0x1b, sizeof text - 1);
	text[sizeof text - 1] = 0;
	snprintf(logf, sizeof logf, "%s/flusher.log", dir);
	assert_int_equal(fl_log_open(logf, FL_INFO), 0);
	fl_log(FL_INFO, "t", "esc \x1b[2J bel \a tab\tend\r\n  next \xff"
	       " done\n");
	fl_log(FL_INFO, "t", "%s", text);
	fl_log_close();
	FILE *f = fopen(logf, "rb");
	assert_non_null(f);
	size_t len = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[len] = 0;
	char *second = strchr(buf, '\n') + 1;
	size_t first_len = (size_t)(second - buf);
	assert_true(first_len > strlen(want));
	assert_memory_equal(buf + first_len - strlen(want), want, strlen(want));
	/* the second: every ESC as "\x1b", whole, as many as 2 KiB hold */
	size_t l2 = len - first_len;
	assert_true(l2 <= 2048 && l2 > 2048 - 4);
	assert_int_equal(second[l2 - 1], '\n');
	char *esc = strstr(second, "t: ") + 3;
	assert_int_equal((size_t)(second + l2 - 1 - esc) % 4, 0);
	for (char *p = esc; p < second + l2 - 1; p += 4)
		assert_memory_equal(p, "\\x1b", 4);
	for (size_t i = 0; i < len; i++)
		assert_true(buf[i] == '\n' || (buf[i] >= 0x20 && buf[i] < 0x7f));
	ft_rmdir(dir);
	free(dir);
}

/* A sink's error text quotes a server's (a Redis error reply, PostgreSQL's
 * lines): it is kept on one line, control bytes and invalid UTF-8 as \xNN,
 * so that its log line and dead letter hold no raw escape sequence. */
static void test_sink_error_is_one_printable_line(void **state)
{
	fl_sink s = {0};
	char big[700];

	fl_sink_seterr(&s, "%s: %s", "SET", "ERR bad \x1b[2J\r\n\tnext\xff\n");
	assert_string_equal(s.errmsg, "SET: ERR bad \\x1b[2J next\\xff");
	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	fl_sink_seterr(&s, "%s", big);
	assert_int_equal(strlen(s.errmsg), SHM__SHOWN_LONG_BYTES + 3);
	assert_string_equal(s.errmsg + SHM__SHOWN_LONG_BYTES, "...");
}

/* PostgreSQL's syntax error quotes the statement's line ("LINE 1: ..."):
 * a --pg-schema file with an ESC in a name has it in the error the log
 * says, shown as \x1b, on the log line of that error. */
static void test_pg_error_text_is_logged_printably(void **state)
{
	FT_NEED_SERVERS();
	char *dir = tu_tmpdir(), schema[4096], log[4096];
	ft_plan p = {.n = 1};

	snprintf(schema, sizeof schema, "%s.schema.sql", dir);
	FILE *f = fopen(schema, "w");
	assert_non_null(f);
	fputs("CREATE TABLE \"t\x1b[31m\" (;\n", f);
	fclose(f);
	const char *args[] = {"--pg-schema", schema, "--backoff-min-ms", "10",
	                      "--once-retries", "1", NULL};
	ft_reset_servers();
	assert_int_equal(ft_write(dir, 0, &p), 0);
	assert_int_equal(ft_flush_once(dir, args), FL_EXIT_SINK);
	assert_true(ft_log_mentions(dir, "PostgreSQL refused it (fix the file: "
	                            "it is applied at each connect): 42601 "
	                            "ERROR:  syntax error at or near \";\" "
	                            "LINE 1: CREATE TABLE \"t\\x1b[31m\" (;"));
	assert_int_equal(ft_log_count(dir, "\x1b"), 0);
	/* every line is a log entry: none begins with the text's next line */
	snprintf(log, sizeof log, "%s.flusher.log", dir);
	assert_int_equal(tu_lines_with(log, ""), ft_log_count(dir, "Z "));
	unlink(schema);
	ft_rmdir(dir);
	free(dir);
}

/* Writes text into path (replacing it). */
static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

/*
 * --pg-schema is read again at each connect: a file that is gone, became a
 * directory, or holds SQL PostgreSQL refuses (a data exception, SQLSTATE
 * 22012: the class of a poison record's refusals) by the time the daemon
 * reconnects fails that connect, and is retried like an outage: nothing is
 * set aside, the records wait; the file good again, they are all applied
 * once. The log names the file, says what went wrong with it and that
 * fixing the file is what to do (it said "unreachable: pg-schema ...", as
 * if PostgreSQL could not be reached).
 */
static void test_pg_schema_failing_at_a_reconnect_is_retried(void **state)
{
	FT_NEED_SERVERS();
	char *dir = tu_tmpdir(), schema[4096], want[4300];
	ft_plan p1 = {.n = 10}, p2 = {.n = 10};
	shm_info in;

	ft_reset_servers();
	snprintf(schema, sizeof schema, "%s.schema.sql", dir);
	write_text(schema, "SELECT 1;\n");
	const char *extra[] = {"--pg-schema", schema, "--redis", "",
	                       "--backoff-min-ms", "10", "--backoff-max-ms",
	                       "100", NULL};
	assert_int_equal(ft_write(dir, 0, &p1), 0);
	pid_t fl = ft_spawn_flusher(dir, extra);
	shm_env *env = tu_open(dir, NULL);
	uint64_t last = ft_meta(env, "next_seq") - 1;
	assert_int_equal(ft_wait_meta(env, "sink.pg.applied", last, 10000),
	                 last);

	/* gone: the connection ended by the server, the reconnect fails */
	assert_int_equal(unlink(schema), 0);
	ft_sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
	       "WHERE application_name = 'shm-flusher'");
	assert_int_equal(ft_write_in_child(dir, 1, &p2), 0);
	snprintf(want, sizeof want, "pg: --pg-schema %s: cannot read it (put "
	         "the file back: it is read at each connect): No such file or "
	         "directory; retry ", schema);
	assert_true(ft_log_waits_for(dir, want, 5000));
	/* a directory */
	assert_int_equal(mkdir(schema, 0755), 0);
	snprintf(want, sizeof want, "pg: --pg-schema %s: cannot read it (put "
	         "the file back: it is read at each connect): not a regular "
	         "file; retry ", schema);
	assert_true(ft_log_waits_for(dir, want, 5000));
	assert_int_equal(rmdir(schema), 0);
	/* SQL that PostgreSQL refuses as it would a poison record's */
	write_text(schema, "SELECT 1/0;\n");
	snprintf(want, sizeof want, "pg: --pg-schema %s: PostgreSQL refused it "
	         "(fix the file: it is applied at each connect): 22012 ERROR:  "
	         "division by zero; retry ", schema);
	assert_true(ft_log_waits_for(dir, want, 5000));
	assert_false(ft_log_mentions(dir, "unreachable"));
	assert_int_equal(ft_meta(env, "sink.pg.applied"), last);
	assert_int_equal(kill(fl, 0), 0);

	write_text(schema, "SELECT 1;\n");
	last = ft_meta(env, "next_seq") - 1;
	assert_int_equal(ft_wait_meta(env, "sink.pg.applied", last, 10000),
	                 last);
	kill(fl, SIGTERM);
	assert_int_equal(ft_wait(fl), 0);
	assert_true(ft_log_mentions(dir, "pg: back after"));
	assert_false(ft_log_mentions(dir, "dead letter"));
	assert_int_equal(shm_env_info(env, &in), 0);
	assert_int_equal(in.dead_letters, 0);
	assert_int_equal(ft_sql_int("SELECT count(*) FROM messages"), 20);
	shm_env_close(env);
	unlink(schema);
	ft_rmdir(dir);
	free(dir);
}

/* A database without shm's tables (here: a search_path that reaches none):
 * the error says how to make them, and --once's last attempt says it gives
 * up, not that it will retry. */
static void test_once_without_the_schema_names_it_and_gives_up(void **state)
{
	FT_NEED_SERVERS();
	char *dir = tu_tmpdir(), pg[1024];
	ft_plan p = {.n = 5};

	snprintf(pg, sizeof pg, "%s options='-c search_path=nowhere'", ft_pg);
	const char *no_schema[] = {"--pg", pg, "--backoff-min-ms", "10",
	                           "--once-retries", "3", NULL};
	ft_reset_servers();
	assert_int_equal(ft_write(dir, 0, &p), 0);
	assert_int_equal(ft_flush_once(dir, no_schema), FL_EXIT_SINK);
	assert_true(ft_log_mentions(dir, "42P01"));
	assert_true(ft_log_mentions(dir, "apply sql/schema.sql (psql -f) or "
	                            "pass --pg-schema FILE"));
	assert_true(ft_log_mentions(dir, "retry 2 in 20 ms"));
	assert_false(ft_log_mentions(dir, "retry 3 in"));
	assert_int_equal(ft_log_count(dir, "giving up"), 1);
	assert_true(ft_log_mentions(dir, "ERROR pg: position: read position: "
	                            "42P01"));
	ft_rmdir(dir);
	free(dir);
}

/* A PostgreSQL that accepts the TCP connection but never answers (a listen
 * socket nobody accepts on: a fault a real server does not produce on
 * demand): each connect gives up after pg-timeout-ms, here 1 s, below
 * libpq's own connect_timeout floor of 2 s. */
static void test_pg_connect_gives_up_after_pg_timeout_ms(void **state)
{
	FT_NEED_SERVERS();
	char *dir = tu_tmpdir(), pg[128], port[16];
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t alen = sizeof a;
	int l = socket(AF_INET, SOCK_STREAM, 0);
	ft_plan p = {.n = 5};

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof a), 0);
	assert_int_equal(listen(l, 8), 0);
	assert_int_equal(getsockname(l, (struct sockaddr *)&a, &alen), 0);
	snprintf(port, sizeof port, "%u", ntohs(a.sin_port));
	snprintf(pg, sizeof pg, "host=127.0.0.1 port=%s dbname=x", port);
	const char *mute[] = {"--pg", pg, "--pg-timeout-ms", "1000",
	                      "--once-retries", "1", NULL};

	ft_reset_servers();
	assert_int_equal(ft_write(dir, 0, &p), 0);
	uint64_t t0 = ft_ms();
	assert_int_equal(ft_flush_once(dir, mute), FL_EXIT_SINK);
	uint64_t took = ft_ms() - t0;
	assert_true(ft_log_mentions(dir, "connect: timed out after 1000 ms"));
	assert_true(took >= 1000 && took < 1900);
	close(l);
	ft_rmdir(dir);
	free(dir);
}

/* ------------------------------------------ a resolver the test controls */

/* This binary's getaddrinfo comes before libc's for the flusher's code,
 * libshm and hiredis alike (the connects below run in this process):
 * SLOW_HOST resolves to 127.0.0.1 after SLOW_DNS_MS, as through a slow DNS
 * server; NO_HOST, and names that begin with it, do not resolve; any other
 * name, and a lookup of
 * numeric hosts only (AI_NUMERICHOST, which never asks a DNS server), is
 * libc's. */
#define SLOW_HOST "slow-dns.shm.test"
#define NO_HOST "no-such-host.shm.test"
#define SLOW_DNS_MS 1000

int getaddrinfo(const char *node, const char *service,
                const struct addrinfo *hints, struct addrinfo **res)
{
	int (*libc)(const char *, const char *, const struct addrinfo *,
	            struct addrinfo **);

	*(void **)&libc = dlsym(RTLD_NEXT, "getaddrinfo");
	if (hints && (hints->ai_flags & AI_NUMERICHOST))
		return libc(node, service, hints, res);
	if (node && strncmp(node, NO_HOST, strlen(NO_HOST)) == 0)
		return EAI_NONAME;
	if (node && strcmp(node, SLOW_HOST) == 0) {
		tu_sleep_ms(SLOW_DNS_MS);
		node = "127.0.0.1";
	}
	return libc(node, service, hints, res);
}

/* A loopback listen socket nobody accepts on (the kernel completes the
 * handshakes, nothing answers); its port in *port. */
static int mute_listener(int *port)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t alen = sizeof a;
	int l = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(l >= 0);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof a), 0);
	assert_int_equal(listen(l, 8), 0);
	assert_int_equal(getsockname(l, (struct sockaddr *)&a, &alen), 0);
	*port = ntohs(a.sin_port);
	return l;
}

/* The flusher's config for the sink given by flag (--redis or --pg) at
 * where; the environment directory is never opened here. */
static void load_cfg(fl_config *c, const char *flag, const char *where)
{
	char *argv[] = {"shm-flusher", "-e", "/nonexistent", (char *)flag,
	                (char *)where, NULL};
	char err[512];

	if (fl_config_load(c, 5, argv, err, sizeof err))
		fail_msg("config: %s", err);
}

/* shm-flusher names a PostgreSQL host it cannot connect to, or resolve,
 * printably in its log: libpq's message quotes the socket path raw, and
 * the name went in raw too. The flusher gives up (--once) either way. */
static void test_pg_connect_error_shows_the_host_printably(void **state)
{
	char *dir = tu_tmpdir(), log[4200];
	const char *conninfo[] = {"host=/nonexistent\x1b[31m dbname=x",
	                          "host=" NO_HOST "\x1b[31m dbname=x"};
	const char *says[] = {"on socket \"/nonexistent\\x1b[31m/.s.PGSQL.",
	                      "host " NO_HOST "\\x1b[31m does not resolve"};
	shm_env *env = tu_open(dir, NULL);
	shm_msg m = tu_msg("r", 1, "x");

	assert_int_equal(shm_msg_put(env, &m), 0);
	shm_env_close(env);
	snprintf(log, sizeof log, "%s.flusher.log", dir);
	for (size_t i = 0; i < 2; i++) {
		const char *args[] = {"--redis", "", "--pg", conninfo[i],
		                      "--once-retries", "1", NULL};
		unlink(log);
		assert_int_equal(ft_flush_once(dir, args), FL_EXIT_SINK);
		if (!tu_lines_with(log, says[i]) || tu_lines_with(log, "\x1b"))
			fail_msg("%s: no '%s' in %s, or a raw ESC", conninfo[i],
			         says[i], log);
	}
	ft_rmdir(dir);
	free(dir);
}

/* Whether the log at path has a line with s, and no ESC or 0xff byte. */
static bool log_shows(const char *path, const char *s)
{
	return tu_lines_with(path, s) && !tu_lines_with(path, "\x1b") &&
	       !tu_lines_with(path, "\xff");
}

/* shm-flusher names its environment directory and its files printably: a
 * directory not there yet (--once), a --log-file it cannot open, the start
 * line, a flusher.lock it cannot open. Before, their bytes went into its
 * log and stderr raw. */
static void test_flusher_names_its_paths_printably(void **state)
{
	char *tmp = tu_tmpdir(), dir[4200], log[4300], says[4400];
	const char *pg[] = {"--redis", "", "--pg", "host=/nonexistent dbname=x",
	                    "--once-retries", "1", NULL};
	const char *bad_log[] = {"--redis", "", "--pg", "dbname=x",
	                         "--log-file", "/nonexistent/l\x1b[31m", NULL};

	snprintf(dir, sizeof dir, "%s/e\x1b[31m\xff", tmp);
	snprintf(log, sizeof log, "%s.flusher.log", dir);
	assert_int_equal(ft_flush_once(dir, pg), FL_EXIT_ENV);
	snprintf(says, sizeof says, "no shm environment in %s/e\\x1b[31m\\xff "
	         "yet", tmp);
	assert_true(log_shows(log, says));

	unlink(log);
	assert_int_equal(ft_flush_once(dir, bad_log), FL_EXIT_USAGE);
	assert_true(log_shows(log, "log-file /nonexistent/l\\x1b[31m: "));

	shm_env *env = tu_open(dir, NULL);
	shm_msg m = tu_msg("r", 1, "x");
	assert_int_equal(shm_msg_put(env, &m), 0);
	shm_env_close(env);
	unlink(log);
	assert_int_equal(ft_flush_once(dir, pg), FL_EXIT_SINK);
	snprintf(says, sizeof says, "on %s/e\\x1b[31m\\xff (env id", tmp);
	assert_true(log_shows(log, says));

	snprintf(says, sizeof says, "%s/flusher.lock", dir);
	assert_int_equal(unlink(says), 0);
	assert_int_equal(mkdir(says, 0755), 0); /* open fails: EISDIR */
	unlink(log);
	assert_int_equal(ft_flush_once(dir, pg), FL_EXIT_ENV);
	snprintf(says, sizeof says, "%s/e\\x1b[31m\\xff/flusher.lock: %s", tmp,
	         strerror(EISDIR));
	assert_true(log_shows(log, says));
	unlink(log);
	tu_rmdir(tmp);
	free(tmp);
}

/* Redis's host name is resolved at each connect of the flusher, within
 * redis-timeout-ms: a resolver slower than that is a connect failure that
 * says so, in about redis-timeout-ms, never the resolver's own time; a
 * name that does not resolve says why; a slow name within the timeout,
 * and localhost, connect. No server needed (a listener nobody answers:
 * the flusher's connect needs no reply without a password). */
static void test_redis_connect_resolves_within_redis_timeout_ms(void **state)
{
	char url[128], err[512], want[512];
	redisContext *rc;
	fl_config c;
	int port, l = mute_listener(&port);

	snprintf(url, sizeof url, "redis://%s:%d", SLOW_HOST, port);
	load_cfg(&c, "--redis", url);
	c.redis_timeout_ms = 200;
	uint64_t t0 = ft_ms();
	rc = fl_redis_connect(&c, err, sizeof err);
	uint64_t took = ft_ms() - t0;
	fprintf(stderr, "slow name: %" PRIu64 " ms: %s\n", took,
	        rc ? "connected" : err);
	if (rc || took > 200 + 150)
		fail_msg("a connect through a slow name took %" PRIu64 " ms "
		         "(redis-timeout-ms 200) and %s", took,
		         rc ? "connected" : err);
	snprintf(want, sizeof want, "connect %s:%d: host %s did not resolve "
	         "within 200 ms", SLOW_HOST, port, SLOW_HOST);
	assert_string_equal(err, want);
	fl_config_free(&c);

	snprintf(url, sizeof url, "redis://:pw@%s:%d", NO_HOST, port);
	load_cfg(&c, "--redis", url);
	assert_null(fl_redis_connect(&c, err, sizeof err));
	snprintf(want, sizeof want, "connect %s:%d: host %s does not resolve: "
	         "%s", NO_HOST, port, NO_HOST, gai_strerror(EAI_NONAME));
	assert_string_equal(err, want);
	fl_config_free(&c);

	/* the slow name within the timeout, then localhost: connected */
	snprintf(url, sizeof url, "redis://%s:%d", SLOW_HOST, port);
	load_cfg(&c, "--redis", url);
	c.redis_timeout_ms = SLOW_DNS_MS + 2000;
	rc = fl_redis_connect(&c, err, sizeof err);
	if (!rc)
		fail_msg("slow name within the timeout: %s", err);
	redisFree(rc);
	fl_config_free(&c);
	snprintf(url, sizeof url, "redis://localhost:%d", port);
	load_cfg(&c, "--redis", url);
	rc = fl_redis_connect(&c, err, sizeof err);
	if (!rc)
		fail_msg("localhost: %s", err);
	redisFree(rc);
	fl_config_free(&c);
	close(l);
}

/*
 * What PostgreSQL sends the sink's connection as a notice (a WARNING the
 * --pg-schema file raises at each connect) is one WARN line of the
 * --log-file, in its format; nothing reaches stderr. It was an INFO line:
 * the sink logged every notice at INFO, whatever its severity.
 */
static void test_pg_sink_server_warning_is_a_warn_line_of_the_log(
	void **state)
{
	FT_NEED_SERVERS();
	char *dir = tu_tmpdir(), schema[4096], logf[4096];
	ft_plan p = {.n = 5};

	ft_reset_servers();
	snprintf(schema, sizeof schema, "%s.schema.sql", dir);
	write_text(schema, "DO $$BEGIN RAISE WARNING 'from the schema file'; "
	           "END$$;\n");
	snprintf(logf, sizeof logf, "%s.log", dir);
	const char *extra[] = {"--pg-schema", schema, "--redis", "",
	                       "--log-file", logf, NULL};
	assert_int_equal(ft_write(dir, 0, &p), 0);
	assert_int_equal(ft_flush_once(dir, extra), FL_EXIT_OK);
	assert_int_equal(ft_log_file_lines(logf, "WARN pg: server: WARNING:  "
	                                   "from the schema file"), 1);
	ft_assert_no_stderr(dir);
	unlink(schema);
	unlink(logf);
	ft_rmdir(dir);
	free(dir);
}

/* PostgreSQL's host names are resolved at each connect of the flusher,
 * within pg-timeout-ms, and libpq is given the addresses (hostaddr): a
 * slow resolver is a connect failure that says so within pg-timeout-ms;
 * a name that does not resolve, alone or in a list, says which. With the
 * test PostgreSQL: a slow name within the timeout, localhost, and a list
 * (a missing socket directory, then a name) connect. */
static void test_pg_connect_resolves_within_pg_timeout_ms(void **state)
{
	char conninfo[512], err[512], want[512];
	PGconn *pg;
	fl_config c;
	int port, l = mute_listener(&port);

	snprintf(conninfo, sizeof conninfo, "host=%s port=%d dbname=x "
	         "connect_timeout=30", SLOW_HOST, port);
	load_cfg(&c, "--pg", conninfo);
	c.pg_timeout_ms = 300; /* below the option's floor: the test's time */
	uint64_t t0 = ft_ms();
	pg = (PGconn *)fl_pg_connect(&c, "test", "pg", err, sizeof err);
	uint64_t took = ft_ms() - t0;
	fprintf(stderr, "slow name: %" PRIu64 " ms: %s\n", took,
	        pg ? "connected" : err);
	if (pg || took > 300 + 150)
		fail_msg("a connect through a slow name took %" PRIu64 " ms "
		         "(pg-timeout-ms 300) and %s", took,
		         pg ? "connected" : err);
	snprintf(want, sizeof want, "connect: host %s did not resolve within "
	         "300 ms", SLOW_HOST);
	assert_string_equal(err, want);
	fl_config_free(&c);

	/* a list fails so only when no host of it is left */
	snprintf(conninfo, sizeof conninfo, "host=%s,%s port=%d,%d "
	         "dbname=x", NO_HOST, NO_HOST, port, port);
	load_cfg(&c, "--pg", conninfo);
	assert_null(fl_pg_connect(&c, "test", "pg", err, sizeof err));
	snprintf(want, sizeof want, "connect: host %s does not resolve: %s",
	         NO_HOST, gai_strerror(EAI_NONAME));
	assert_string_equal(err, want);
	fl_config_free(&c);
	close(l);

	const char *pgport = getenv("SHM_TEST_PG_PORT");
	const char *user = getenv("SHM_TEST_PG_USER");
	if (!ft_pg || !pgport || !user) {
		skip();
		return;
	}
	/* the last: a standby whose name is gone, then the server */
	const char *hosts[] = {SLOW_HOST, "localhost", "/nonexistent,localhost",
	                       NO_HOST ",localhost"};
	for (size_t i = 0; i < sizeof hosts / sizeof hosts[0]; i++) {
		bool two = strchr(hosts[i], ',') != NULL;
		snprintf(conninfo, sizeof conninfo, "host=%s port=%s%s%s "
		         "dbname=shm user=%s", hosts[i], pgport, two ? "," : "",
		         two ? pgport : "", user);
		load_cfg(&c, "--pg", conninfo);
		c.pg_timeout_ms = SLOW_DNS_MS + 4000;
		pg = (PGconn *)fl_pg_connect(&c, "test", "pg", err, sizeof err);
		if (!pg)
			fail_msg("host=%s: %s", hosts[i], err);
		PGresult *r = PQexec(pg, "SELECT 1");
		assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
		PQclear(r);
		PQfinish(pg);
		fl_config_free(&c);
	}
}

/* A failed assertion leaves a test before it can unset PGAPPNAME. */
static int unset_pgappname(void **state)
{
	unsetenv("PGAPPNAME");
	return 0;
}

/* What pg_stat_activity says of the application_name of the connection
 * fl_pg_connect makes to conninfo for app. malloc'd. */
static char *pg_connect_app_name(const char *conninfo, const char *app)
{
	char err[512], *name;
	fl_config c;

	load_cfg(&c, "--pg", conninfo);
	PGconn *pg = (PGconn *)fl_pg_connect(&c, app, "pg", err, sizeof err);
	if (!pg)
		fail_msg("%s: %s", conninfo, err);
	PGresult *r = PQexec(pg, "SELECT application_name FROM "
	                     "pg_stat_activity WHERE pid = pg_backend_pid()");
	assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
	assert_int_equal(PQntuples(r), 1);
	name = strdup(PQgetvalue(r, 0, 0));
	PQclear(r);
	PQfinish(pg);
	fl_config_free(&c);
	return name;
}

/* The flusher's PostgreSQL connections are named by what they do
 * ("shm-flusher", "shm-flusher-cleanup") unless the user names them, as
 * libshm's read-through's are: the conninfo's application_name wins, and
 * so does PGAPPNAME (libpq's fallback_application_name). PGAPPNAME was
 * overridden. */
static void test_pg_connect_names_the_connection_unless_the_user_does(
	void **state)
{
	FT_NEED_SERVERS();
	char conninfo[4200], *name;

	name = pg_connect_app_name(ft_pg, "shm-flusher");
	assert_string_equal(name, "shm-flusher");
	free(name);
	snprintf(conninfo, sizeof conninfo, "%s application_name=ops-sink",
	         ft_pg);
	name = pg_connect_app_name(conninfo, "shm-flusher");
	assert_string_equal(name, "ops-sink");
	free(name);
	setenv("PGAPPNAME", "ops-env", 1);
	name = pg_connect_app_name(ft_pg, "shm-flusher-cleanup");
	unsetenv("PGAPPNAME");
	assert_string_equal(name, "ops-env");
	free(name);
}

/* Two environments under one --env-id, in a shm_sink_positions without
 * env_uuid (an older schema: no owner check): the second's flusher finds a
 * PostgreSQL position past the end of its own log. It must not take it (that
 * would skip every record up to it): it says why, applies nothing, keeps its
 * log, and --once exits 3; once the row is fixed everything flows. (With
 * env_uuid the pg sink refuses the row first:
 * test_position_row_of_another_environment_is_refused.) */
static void test_position_past_the_log_end_is_refused(void **state)
{
	FT_NEED_SERVERS();
	char *a = tu_tmpdir(), *b = tu_tmpdir();
	ft_plan many = {.n = 30}, few = {.n = 10};
	const char *same[] = {"--env-id", "same", "--backoff-min-ms", "10",
	                      "--once-retries", "2", NULL};

	ft_reset_servers();
	ft_sql("ALTER TABLE shm_sink_positions DROP COLUMN env_uuid");
	assert_int_equal(ft_write(a, 0, &many), 0);
	assert_int_equal(ft_flush_once(a, same), 0);
	assert_int_equal(ft_write(b, 1, &few), 0);
	assert_int_equal(ft_flush_once(b, same), FL_EXIT_SINK);
	ft_sql("ALTER TABLE shm_sink_positions ADD COLUMN env_uuid uuid");
	assert_true(ft_log_mentions(b, "the sink says env-id 'same' applied up "
	                               "to 30, but this environment's log ends "
	                               "at 10"));
	assert_true(ft_log_mentions(b, "two environments under one env-id"));
	assert_int_equal(ft_sql_int("SELECT count(*) FROM messages"), 30);
	shm_env *env = tu_open(b, NULL);
	assert_int_equal(ft_meta(env, "sink.pg.applied"), 0);
	assert_int_equal(tu_log_count(env), 10);
	shm_env_close(env);

	ft_sql("DELETE FROM shm_sink_positions WHERE env_id = 'same'");
	assert_int_equal(ft_flush_once(b, same), 0);
	assert_int_equal(ft_sql_int("SELECT count(*) FROM messages"), 40);
	ft_rmdir(a);
	ft_rmdir(b);
	free(a);
	free(b);
}

/* The position row knows its environment (env_uuid): a second environment
 * under the same env-id is refused even when the row's position lies
 * within its log (30 records here, the row at 10), where taking it would
 * skip its first 10 records. A row of an older schema (no owner) is
 * claimed; a table without the column still works, with a warning. */
static void test_position_row_of_another_environment_is_refused(void **state)
{
	FT_NEED_SERVERS();
	char *a = tu_tmpdir(), *b = tu_tmpdir();
	ft_plan few = {.n = 10}, many = {.n = 30};
	const char *same[] = {"--env-id", "same", "--backoff-min-ms", "10",
	                      "--once-retries", "2", NULL};

	ft_reset_servers();
	assert_int_equal(ft_write(a, 0, &few), 0);
	assert_int_equal(ft_flush_once(a, same), 0);
	assert_int_equal(ft_write(b, 1, &many), 0);
	assert_int_equal(ft_flush_once(b, same), FL_EXIT_SINK);
	assert_true(ft_log_mentions(b, "two environments under one env-id"));
	assert_int_equal(ft_sql_int("SELECT count(*) FROM messages"), 10);
	shm_env *env = tu_open(b, NULL);
	assert_int_equal(tu_log_count(env), 30);
	shm_env_close(env);

	/* an ownerless row (written before env_uuid existed) is claimed */
	ft_sql("UPDATE shm_sink_positions SET env_uuid = NULL");
	assert_int_equal(ft_write(a, 0, &(ft_plan){.n = 15}), 0);
	assert_int_equal(ft_flush_once(a, same), 0);
	assert_int_equal(ft_sql_int("SELECT count(*) FROM shm_sink_positions "
	                            "WHERE env_uuid IS NOT NULL"), 1);
	assert_int_equal(ft_sql_int("SELECT count(*) FROM messages"), 15);

	/* without the column: no owner check, a warning, rows flow */
	ft_sql("ALTER TABLE shm_sink_positions DROP COLUMN env_uuid");
	assert_int_equal(ft_write(a, 0, &(ft_plan){.n = 20}), 0);
	assert_int_equal(ft_flush_once(a, same), 0);
	ft_sql("ALTER TABLE shm_sink_positions ADD COLUMN env_uuid uuid");
	assert_true(ft_log_mentions(a, "has no env_uuid column"));
	assert_int_equal(ft_sql_int("SELECT count(*) FROM messages"), 20);

	ft_sql("DELETE FROM shm_sink_positions WHERE env_id = 'same'");
	assert_int_equal(ft_flush_once(b, same), 0);
	assert_int_equal(ft_sql_int("SELECT count(*) FROM messages"), 50);
	ft_rmdir(a);
	ft_rmdir(b);
	free(a);
	free(b);
}

/* TTL and first 4 bytes of msg:<id> in Redis. */
static long long mirrored(const shm_uuid *id, char head[5])
{
	char key[48], s[37], cmd[80];
	shm_uuid_format(id, s);
	snprintf(key, sizeof key, "msg:%s", s);
	redisContext *c = ft_redis();
	assert_non_null(c);
	redisReply *r = redisCommand(c, "GETRANGE %s 0 3", key);
	assert_non_null(r);
	assert_int_equal(r->type, REDIS_REPLY_STRING);
	assert_int_equal(r->len, 4);
	memcpy(head, r->str, 4);
	head[4] = 0;
	freeReplyObject(r);
	redisFree(c);
	snprintf(cmd, sizeof cmd, "TTL %s", key);
	return ft_redis_int(cmd);
}

/* l2_ttl_s and compress_threshold belong to the environment: what an
 * application sets in shm_options reaches the mirrored keys through a
 * flusher run with the defaults; --l2-ttl / --compress-threshold override
 * them for that flusher alone (the environment keeps the application's). */
static void test_application_l2_ttl_and_threshold_reach_redis(void **state)
{
	FT_NEED_SERVERS();
	static const char lz4_magic[] = "\x04\x22\x4d\x18";
	char *dir = tu_tmpdir(), head[5], text[300];
	shm_options o;
	shm_policy pol;

	ft_reset_servers();
	memset(text, 'a', sizeof text - 1);
	text[sizeof text - 1] = 0;
	shm_options_init(&o);
	o.l2_ttl_s = 120;
	o.compress_threshold = 64;
	shm_env *app = tu_open(dir, &o);
	shm_msg a = tu_msg("ttl", 1, text);
	assert_int_equal(shm_msg_put(app, &a), 0);
	shm_env_close(app);
	assert_int_equal(ft_flush_once(dir, NULL), 0);
	long long ttl = mirrored(&a.id, head);
	assert_true(ttl > 100 && ttl <= 120);
	assert_memory_equal(head, lz4_magic, 4);

	shm_env *plain = tu_open(dir, NULL);
	shm_msg b = tu_msg("ttl", 2, text);
	assert_int_equal(shm_msg_put(plain, &b), 0);
	shm_env_close(plain);
	const char *flags[] = {"--l2-ttl", "600", "--compress-threshold",
	                       "100000", NULL};
	assert_int_equal(ft_flush_once(dir, flags), 0);
	ttl = mirrored(&b.id, head);
	assert_true(ttl > 580 && ttl <= 600);
	assert_memory_equal(head, "{\"id", 4);
	plain = tu_open(dir, NULL);
	assert_int_equal(shm_policy_get(plain, &pol), 0);
	assert_int_equal(pol.l2_ttl_s, 120);
	assert_int_equal(pol.compress_threshold, 64);
	shm_env_close(plain);
	ft_rmdir(dir);
	free(dir);
}

/* redis-url with an ACL user and password: the sink and the invalidation
 * channel AUTH, and the messages arrive; with a wrong password the log names
 * the AUTH error, --once gives up (exit 3) and Redis gets nothing new; the
 * password never reaches the log, an unreachable server's included. */
static void test_redis_acl_user_in_the_url(void **state)
{
	FT_NEED_SERVERS();
	char *dir = tu_tmpdir(), user[64], url[1200];
	ft_plan p1 = {.n = 50}, p2 = {.n = 10};

	ft_reset_servers();
	snprintf(user, sizeof user, "shm-flusher-%d", (int)getpid());
	redisContext *rc = ft_redis();
	assert_non_null(rc);
	redisReply *rep = redisCommand(rc, "ACL SETUSER %s on >s3cr@t ~msg:* "
	                                   "&shm:inval +set +ping +select "
	                                   "+publish +subscribe", user);
	assert_non_null(rep);
	assert_int_equal(rep->type, REDIS_REPLY_STATUS);
	freeReplyObject(rep);
	for (int wrong = 0; wrong <= 1; wrong++) {
		tu_redis_url_with_auth(ft_redis_url, user,
		                       wrong ? "nope" : "s3cr@t", url,
		                       sizeof url);
		const char *extra[] = {"--redis", url, "--backoff-min-ms", "10",
		                       "--once-retries", "2", NULL};
		assert_int_equal(ft_write(dir, wrong, wrong ? &p2 : &p1), 0);
		assert_int_equal(ft_flush_once(dir, extra),
		                 wrong ? FL_EXIT_SINK : 0);
		assert_int_equal(ft_redis_int("DBSIZE"), 50);
	}
	/* nor when the server cannot be reached */
	const char *dead[] = {"--redis", url, "--backoff-min-ms", "10",
	                      "--once-retries", "2", NULL};
	tu_redis_url_with_auth("unix:///nonexistent/redis.sock", user,
	                       "s3cr@t", url, sizeof url);
	assert_int_equal(ft_flush_once(dir, dead), FL_EXIT_SINK);
	assert_true(ft_log_mentions(dir, "connect unix:/nonexistent/redis.sock"));
	char want[1300];
	snprintf(want, sizeof want, "AUTH on unix:%s: WRONGPASS",
	         ft_redis_url + strlen("unix://"));
	assert_true(ft_log_mentions(dir, want)); /* the server named */
	/* the user's rights cover every command the flusher sends (SET,
	 * PUBLISH, SUBSCRIBE, PING) */
	assert_false(ft_log_mentions(dir, "NOPERM"));
	assert_false(ft_log_mentions(dir, "s3cr@t")); /* never logged */
	shm_env *env = tu_open(dir, NULL);
	assert_int_equal(ft_check_messages(env, 0, 1, &p1), 0);
	shm_env_close(env);
	freeReplyObject(redisCommand(rc, "ACL DELUSER %s", user));
	redisFree(rc);
	ft_rmdir(dir);
	free(dir);
}

static void test_daemon_follows_writes_and_exits_0_on_sigterm(void **state)
{
	FT_NEED_SERVERS();
	char *dir = tu_tmpdir();
	ft_plan p = {.n = 2000};
	const char *second_args[] = {NULL};

	ft_reset_servers();
	shm_env *env = tu_open(dir, NULL);
	pid_t fl = ft_spawn_flusher(dir, NULL);
	tu_sleep_ms(200);
	/* a second flusher on the same environment is refused */
	assert_int_equal(ft_wait(ft_spawn_flusher(dir, second_args)),
	                 FL_EXIT_ENV);
	pid_t w = ft_spawn_writer(dir, 0, &p);
	assert_int_equal(ft_wait(w), 0);
	uint64_t last = ft_meta(env, "next_seq") - 1;
	uint64_t t0 = ft_ms();
	assert_int_equal(ft_wait_meta(env, "sink.pg.applied", last, 10000), last);
	assert_int_equal(ft_wait_meta(env, "sink.redis.applied", last, 10000),
	                 last);
	fprintf(stderr, "caught up %" PRIu64 " ms after the writer ended\n",
	        ft_ms() - t0);
	tu_sleep_ms(1200); /* a stats round */
	assert_true(ft_meta(env, "flusher.heartbeat") > 0);
	assert_int_equal(ft_meta(env, "flusher.pid"), (uint64_t)fl);
	kill(fl, SIGTERM);
	assert_int_equal(ft_wait(fl), 0);
	assert_int_equal(tu_log_count(env), 0);
	assert_int_equal(ft_sql_int("SELECT count(*) FROM messages"), 2000);
	shm_env_close(env);
	ft_rmdir(dir);
	free(dir);
}

/* Waits until the file at path has a line with s. */
static bool file_waits_for(const char *path, const char *s)
{
	uint64_t end = ft_ms() + 5000;
	while (!tu_lines_with(path, s) && ft_ms() < end)
		tu_sleep_ms(50);
	return tu_lines_with(path, s) > 0;
}

/* SIGHUP reopens --log-file (logrotate moved the old one away); a reopen
 * that fails keeps the old file and says so where the starter sees it,
 * on stderr too: the old file may be gone from every directory. */
static void test_sighup_reopens_the_log_file(void **state)
{
	FT_NEED_SERVERS();
	char *dir = tu_tmpdir(), logf[4200], old[4300], older[4300],
	     says[4400];
	const char *to_file[] = {"--log-file", logf, NULL};

	snprintf(logf, sizeof logf, "%s.hup.log", dir);
	snprintf(old, sizeof old, "%s.1", logf);
	snprintf(older, sizeof older, "%s.2", logf);
	shm_env_close(tu_open(dir, NULL));
	pid_t fl = ft_spawn_flusher(dir, to_file);
	assert_true(file_waits_for(logf, "INFO main: shm-flusher"));
	assert_int_equal(rename(logf, old), 0);
	kill(fl, SIGHUP);
	assert_true(file_waits_for(logf, "INFO main: log reopened"));
	assert_int_equal(tu_lines_with(old, "log reopened"), 0);

	/* a directory where the file was: fopen fails (EISDIR) */
	assert_int_equal(rename(logf, older), 0);
	assert_int_equal(mkdir(logf, 0755), 0);
	kill(fl, SIGHUP);
	snprintf(says, sizeof says, "ERROR main: reopen %s: Is a directory",
	         logf);
	assert_true(file_waits_for(older, says));
	snprintf(says, sizeof says, "shm-flusher: reopen %s: Is a directory",
	         logf);
	assert_true(ft_log_waits_for(dir, says, 5000));
	kill(fl, SIGTERM);
	assert_int_equal(ft_wait(fl), 0);
	assert_true(tu_lines_with(older, "exiting (0)") > 0);
	rmdir(logf);
	unlink(old);
	unlink(older);
	ft_rmdir(dir);
	free(dir);
}

/* The whole of file path, NUL-terminated; the caller frees it. */
static char *read_whole(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf = NULL;
	size_t n = 0;

	assert_non_null(f);
	buf = calloc(1, 1 << 16);
	assert_non_null(buf);
	n = fread(buf, 1, (1 << 16) - 1, f);
	buf[n] = 0;
	fclose(f);
	return buf;
}

/* With --log-file, fl_log_alert's copy on stderr is printable as its log
 * line is (ESC, BEL, invalid UTF-8 as \xNN, line breaks folded), on one
 * line. It was written raw: the ESC sequence reached the terminal. */
static void test_alert_on_stderr_shows_control_bytes_escaped(void **state)
{
	char *dir = tu_tmpdir(), logf[4200], err[4096], *text;
	static const char want[] = "esc \\x1b[2J bel \\x07 next \\xff done";
	int status, to_parent[2];

	snprintf(logf, sizeof logf, "%s/flusher.log", dir);
	assert_int_equal(pipe(to_parent), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (dup2(to_parent[1], STDERR_FILENO) < 0 ||
		    fl_log_open(logf, FL_INFO) != 0)
			_exit(10);
		fl_log_alert("t", "esc \x1b[2J bel \a\r\n  next \xff done\n");
		fl_log_close();
		_exit(0);
	}
	close(to_parent[1]);
	ssize_t got = read(to_parent[0], err, sizeof err - 1);
	err[got > 0 ? got : 0] = 0;
	close(to_parent[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_string_equal(err, "shm-flusher: esc \\x1b[2J bel \\x07 next "
	                         "\\xff done\n");
	/* the log line shows the message the same way */
	text = read_whole(logf);
	assert_non_null(strstr(text, " ERROR t: "));
	assert_non_null(strstr(text, want));
	free(text);
	ft_rmdir(dir);
	free(dir);
}

/* Logs five lines to logf in a child, the second cut short and the third
 * refused by a file size limit (which cuts a write short, then fails it
 * with EFBIG, as a full disk does with ENOSPC), the fourth "fourth, " and
 * the text again; returns the file's text (the caller frees it), the
 * child's stderr in err. Asserts that every line starts with a time and
 * that the count of lines lost comes, once, before the fourth. */
static char *log_to_a_full_disk(const char *logf, const char *again,
                                char *err, size_t errlen)
{
	int status, to_parent[2];

	assert_int_equal(pipe(to_parent), 0); /* stderr: no file size limit */
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct rlimit rl;
		struct stat st;
		signal(SIGXFSZ, SIG_IGN); /* write fails with EFBIG instead */
		if (dup2(to_parent[1], STDERR_FILENO) < 0 ||
		    fl_log_open(logf, FL_INFO) != 0)
			_exit(10);
		fl_log(FL_INFO, "t", "first, written whole");
		if (stat(logf, &st) != 0 || getrlimit(RLIMIT_FSIZE, &rl) != 0)
			_exit(11);
		rlim_t max = rl.rlim_cur;
		rl.rlim_cur = (rlim_t)st.st_size + 20; /* the next line cut */
		if (setrlimit(RLIMIT_FSIZE, &rl) != 0)
			_exit(12);
		fl_log(FL_INFO, "t", "second, cut after 20 bytes");
		fl_log(FL_WARN, "t", "third, not written at all");
		rl.rlim_cur = max; /* space again */
		if (setrlimit(RLIMIT_FSIZE, &rl) != 0)
			_exit(13);
		fl_log(FL_INFO, "t", "fourth, %s", again);
		fl_log(FL_INFO, "t", "fifth");
		fl_log_close();
		_exit(0);
	}
	close(to_parent[1]);
	ssize_t got = read(to_parent[0], err, errlen - 1);
	err[got > 0 ? got : 0] = 0;
	close(to_parent[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	char *text = read_whole(logf);
	fprintf(stderr, "the log:\n%.2000s\n", text);
	/* the line cut short is ended: every line starts with a time */
	char *line = text, *nl;
	int lines = 0;
	while ((nl = strchr(line, '\n'))) {
		assert_true(nl - line >= 20 && line[4] == '-' && line[10] == 'T');
		line = nl + 1;
		lines++;
	}
	assert_string_equal(line, ""); /* ends with a line break */
	assert_int_equal(lines, 5);
	assert_non_null(strstr(text, "INFO t: first, written whole\n"));
	assert_null(strstr(text, "second, cut after 20 bytes"));
	assert_null(strstr(text, "third"));
	assert_non_null(strstr(text, " WARN log: 2 lines lost since 20"));
	assert_true(strstr(text, "lines lost") < strstr(text, "INFO t: fourth"));
	assert_int_equal(tu_lines_with(logf, "lines lost"), 1);
	assert_non_null(strstr(text, "INFO t: fifth\n"));
	return text;
}

/* A log file that stops taking writes (a full disk) loses lines, but never
 * in silence: the first loss is said on stderr, a line cut short is ended,
 * and the first line written again is preceded by the count of lines
 * lost, since when and why, on a line of its own: also when that line
 * and the count's, which names the file, are long (a name of control
 * bytes, each shown as \xNN), where the count was left out. Before, lines
 * were dropped without a word and the next one was glued to the torn
 * one. */
static void test_log_lines_lost_to_a_full_disk_are_counted(void **state)
{
	char *dir = tu_tmpdir(), logf[4200], want[4600], err[8192];
	char name[241], long_line[1901];

	snprintf(logf, sizeof logf, "%s.full.log", dir);
	char *text = log_to_a_full_disk(logf, "written again", err, sizeof err);
	assert_non_null(strstr(text, "INFO t: fourth, written again\n"));
	snprintf(want, sizeof want, " (write %s: File too large)\n20", logf);
	assert_non_null(strstr(text, want));
	/* the first loss said on stderr, once */
	snprintf(want, sizeof want, "shm-flusher: write %s: File too large: "
	         "log lines are lost until a write works again, which logs "
	         "their count first\n", logf);
	assert_string_equal(err, want);
	free(text);
	unlink(logf);

	memset(name, 1, sizeof name - 1);
	name[sizeof name - 1] = 0;
	memset(long_line, 'x', sizeof long_line - 1);
	long_line[sizeof long_line - 1] = 0;
	snprintf(logf, sizeof logf, "%s/%s", dir, name);
	assert_int_equal(mkdir(logf, 0755), 0);
	snprintf(logf, sizeof logf, "%s/%s/%s", dir, name, name);
	free(log_to_a_full_disk(logf, long_line, err, sizeof err));
	unlink(logf);
	ft_rmdir(dir);
	free(dir);
}

/* --once stopped by SIGTERM before the log is drained finishes its batch in
 * flight but exits 3, not 0: a script's `shm-flusher --once && ...` must not
 * believe it drained. A second --once completes, nothing applied twice. */
static void test_once_stopped_by_sigterm_exits_3(void **state)
{
	FT_NEED_SERVERS();
	char *dir = tu_tmpdir();
	ft_plan p = {.n = 20000};
	const char *small[] = {"--once", "--batch-max-records", "100", NULL};

	ft_reset_servers();
	assert_int_equal(ft_write(dir, 0, &p), 0);
	shm_env *env = tu_open(dir, NULL);
	pid_t fl = ft_spawn_flusher(dir, small);
	assert_true(ft_wait_meta(env, "sink.pg.applied", 1, 10000) >= 1);
	kill(fl, SIGTERM);
	assert_int_equal(ft_wait(fl), FL_EXIT_SINK);
	assert_true(ft_log_mentions(dir, "(--once: exit 3)"));
	uint64_t applied = ft_meta(env, "sink.pg.applied");
	assert_true(applied < 20000);
	assert_int_equal(ft_sql_int("SELECT count(*) FROM messages"),
	                 (long long)applied);
	assert_int_equal(ft_flush_once(dir, NULL), 0);
	assert_int_equal(ft_sql_int("SELECT count(*) FROM messages"), 20000);
	assert_int_equal(ft_redis_int("DBSIZE"), 20000);
	assert_int_equal(tu_log_count(env), 0);
	shm_env_close(env);
	ft_rmdir(dir);
	free(dir);
}

static shm_env *open_through(const char *dir, uint32_t timeout_ms)
{
	shm_options o;
	shm_options_init(&o);
	o.write_mode = SHM_WRITE_THROUGH;
	o.write_through_timeout_ms = timeout_ms;
	return tu_open(dir, &o);
}

/* Write-through: a write returns once PostgreSQL has its records. Without
 * a flusher it times out (the write is stored and counted all the same);
 * with one, the row is there when the call returns; a record PostgreSQL
 * refuses is SHM_EL3, not 0; graph writes and marks wait too. */
static void test_write_through_returns_once_postgres_has_it(void **state)
{
	FT_NEED_SERVERS();
	char *dir = tu_tmpdir(), sql[200], s[37];
	shm_counters c;
	shm_uuid w;
	const char *fast[] = {"--backoff-min-ms", "10", "--poison-retries", "1",
	                      NULL};

	ft_reset_servers();
	shm_uuid_v7(&w);
	shm_env *env = open_through(dir, 300);
	shm_msg a = tu_msg("wt", 1, "no flusher yet");
	assert_int_equal(shm_msg_put(env, &a), SHM_ETIMEDOUT);
	assert_int_equal(shm_deps_set(env, &w, "Page/p", true, NULL, 0),
	                 SHM_ETIMEDOUT);
	shm_stats_local(env, &c);
	assert_int_equal(c.puts, 1); /* stored, though not yet in L3 */
	shm_env_close(env);

	pid_t fl = ft_spawn_flusher(dir, fast);
	env = open_through(dir, 10000);
	shm_msg b = tu_msg("wt", 2, "with a flusher");
	assert_int_equal(shm_msg_put(env, &b), 0);
	shm_uuid_format(&b.id, s);
	snprintf(sql, sizeof sql, "SELECT count(*) FROM messages WHERE id = "
	         "'%s'", s);
	assert_int_equal(ft_sql_int(sql), 1); /* there when put returned */
	assert_int_equal(ft_sql_int("SELECT count(*) FROM messages"), 2);
	assert_int_equal(shm_object_save(env, &w, "Page/p"), 0);
	assert_int_equal(ft_sql_int("SELECT count(*) FROM shm_marks"), 1);

	ft_sql("ALTER TABLE messages DROP CONSTRAINT IF EXISTS test_wt;"
	       "ALTER TABLE messages ADD CONSTRAINT test_wt CHECK "
	       "(content NOT LIKE 'refused%') NOT VALID");
	shm_msg bad = tu_msg("wt", 3, "refused by a constraint");
	assert_int_equal(shm_msg_put(env, &bad), SHM_EL3);
	assert_non_null(strstr(shm_errmsg(), "dead letter"));
	ft_sql("ALTER TABLE messages DROP CONSTRAINT test_wt");
	shm_env_close(env);
	kill(fl, SIGTERM);
	assert_int_equal(ft_wait(fl), 0);
	ft_rmdir(dir);
	free(dir);
}

/* Write-through: a put undoing a delete PostgreSQL holds (L1 did not hold
 * the deleted message) is SHM_EL3 naming the id, not 0, and when it
 * returns L1 holds PostgreSQL's row again (pg_sink.c invariant 6). */
static void test_write_through_put_undoing_a_delete_in_postgres_is_el3(
	void **state)
{
	FT_NEED_SERVERS();
	char *dir = tu_tmpdir(), x[37], sql[400];
	const char *fast[] = {"--backoff-min-ms", "10", NULL};
	shm_msg m = tu_msg("wt-undel", 1, "secret"), *got;

	ft_reset_servers();
	m.id = ft_id(9, 3);
	shm_uuid_format(&m.id, x);
	snprintf(sql, sizeof sql, "INSERT INTO messages (id, room_id, user_id,"
	         " username, content, message_type, created_at, content_hash)"
	         " VALUES ('%s', 'wt-undel', 1, 'alice', '%s', 'Delete', now(),"
	         " '0')", x, SHM_DELETED_CONTENT);
	ft_sql(sql);
	shm_env_close(tu_open(dir, NULL));
	pid_t fl = ft_spawn_flusher(dir, fast);
	shm_env *env = open_through(dir, 10000);
	assert_int_equal(shm_msg_put(env, &m), SHM_EL3);
	assert_non_null(strstr(shm_errmsg(), x));
	assert_non_null(strstr(shm_errmsg(), "soft-deleted in PostgreSQL"));
	assert_int_equal(pg_deleted(x), 1);
	assert_int_equal(shm_msg_get(env, &m.id, &got), 0);
	assert_int_equal(got->type, SHM_MSG_DELETE);
	shm_msg_free(got);
	shm_env_close(env);
	kill(fl, SIGTERM);
	assert_int_equal(ft_wait(fl), 0);
	ft_rmdir(dir);
	free(dir);
}

/* A write-through write does not wait for the flusher's batch-ms: the
 * batch that holds its record is sent at once (worker.c invariant 5), with
 * batch-ms 10 s here and each such write given 5 s. Only an awaited record
 * does that: write-back records stay batched, past a mark whose waiter was
 * killed (applied at once: left behind, it closes nothing more) and past
 * one whose write returned. Before, each write took the 10 s. */
static void test_write_through_does_not_wait_for_batch_ms(void **state)
{
	FT_NEED_SERVERS();
	char *dir = tu_tmpdir();
	const char *slow[] = {"--batch-ms", "10000", NULL};
	shm_uuid web;
	uint64_t t0, mark;

	ft_reset_servers();
	shm_uuid_v7(&web);
	shm_env *env = tu_open(dir, NULL); /* write-back */
	pid_t orphan = fork();
	if (orphan == 0) { /* no flusher yet: waits until killed */
		shm_env *e = open_through(dir, 60000);
		shm_msg m = tu_msg("wt", 1, "its writer is killed waiting");
		_exit(e && shm_msg_put(e, &m) == 0 ? 0 : 1);
	}
	tu_child_add(orphan);
	/* its record is in: the next seq is past it */
	assert_true(ft_wait_meta(env, "next_seq", 2, 10000) >= 2);
	mark = ft_meta(env, "next_seq") - 1;
	assert_int_equal(ft_meta(env, SHM_META_PG_AWAITED), mark);
	kill(orphan, SIGKILL);
	assert_int_equal(ft_wait(orphan), 128 + SIGKILL);

	pid_t fl = ft_spawn_flusher(dir, slow);
	t0 = ft_ms();
	assert_true(ft_wait_meta(env, SHM_META_PG_APPLIED, mark, 5000) >= mark);
	fprintf(stderr, "the killed writer's record applied after %llu ms\n",
	        (unsigned long long)(ft_ms() - t0));

	for (int i = 2; i <= 4; i++) {
		shm_msg m = tu_msg("wt", i, "write-back, batched");
		assert_int_equal(shm_msg_put(env, &m), 0);
	}
	tu_sleep_ms(1000); /* the marks left behind close no batch */
	assert_int_equal(ft_meta(env, SHM_META_PG_APPLIED), mark);
	assert_int_equal(ft_sql_int("SELECT count(*) FROM messages"), 1);

	/* a write-through process of its own (one open per process): exit 0,
	 * or which step failed or took 5 s */
	pid_t wt = fork();
	if (wt == 0) {
		shm_env *through = open_through(dir, 5000);
		shm_msg m = tu_msg("wt", 5, "write-through");
		t0 = ft_ms();
		if (!through || shm_msg_put(through, &m) != 0)
			_exit(1);
		fprintf(stderr, "write-through put: %llu ms with batch-ms "
		        "10000\n", (unsigned long long)(ft_ms() - t0));
		if (ft_ms() - t0 >= 5000)
			_exit(2);
		t0 = ft_ms();
		if (shm_object_save(through, &web, "Page/p") != 0)
			_exit(3);
		_exit(ft_ms() - t0 < 5000 ? 0 : 4);
	}
	tu_child_add(wt);
	assert_int_equal(ft_wait(wt), 0);
	/* the write-back records that were in its batch went with it */
	assert_int_equal(ft_sql_int("SELECT count(*) FROM messages"), 5);
	assert_int_equal(ft_sql_int("SELECT count(*) FROM shm_marks"), 1);

	/* and after it, write-back records are batched again */
	shm_msg late = tu_msg("wt", 6, "write-back again");
	assert_int_equal(shm_msg_put(env, &late), 0);
	tu_sleep_ms(1000);
	assert_int_equal(ft_sql_int("SELECT count(*) FROM messages"), 5);
	shm_env_close(env);
	kill(fl, SIGTERM);
	assert_int_equal(ft_wait(fl), 0);
	ft_rmdir(dir);
	free(dir);
}

/* Write-through's look for PostgreSQL's dead letters among a write's
 * records goes past one that does not decode: a refusal after it is
 * still SHM_EL3, naming the corrupt one too; a corrupt one alone is
 * SHM_ECORRUPT (PostgreSQL may have refused that record), never 0. */
static void test_write_through_sees_a_refusal_past_a_corrupt_letter(
	void **state)
{
	char *dir = tu_tmpdir();
	shm_env *env = open_through(dir, 1000);
	shm_log_rec rec;

	memset(&rec, 0, sizeof rec);
	put_bad_letter(env, 4);
	rec.seq = 5;
	assert_int_equal(shm_dead_add(env, &rec, "pg", "22P02 bad uuid"), 0);
	rec.seq = 8;
	assert_int_equal(shm_dead_add(env, &rec, "redis", "ERR"), 0);
	assert_int_equal(shm_meta_set(env, "sink.pg.applied", 20), 0);

	assert_int_equal(shm__wait_through(env, (uint64_t[2]){3, 7}), SHM_EL3);
	assert_non_null(strstr(shm_errmsg(), "refused record 5, set aside as "
	                       "a dead letter (shmctl log --dead): 22P02 bad "
	                       "uuid; and the dead letter of record 4 does not "
	                       "decode"));
	assert_int_equal(shm__wait_through(env, (uint64_t[2]){3, 5}),
	                 SHM_ECORRUPT);
	assert_non_null(strstr(shm_errmsg(), "PostgreSQL is past record 4, "
	                       "but the dead letter of record 4 does not "
	                       "decode"));
	/* a letter of another sink only: PostgreSQL has it */
	assert_int_equal(shm__wait_through(env, (uint64_t[2]){6, 10}), 0);
	shm_env_close(env);
	ft_rmdir(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_config_defaults_file_then_flags, ft_teardown),
		cmocka_unit_test_teardown(test_config_rejects_bad_input_with_reason, ft_teardown),
		cmocka_unit_test_teardown(test_config_yes_no_settings, ft_teardown),
		cmocka_unit_test_teardown(test_config_file_key_twice_is_refused, ft_teardown),
		cmocka_unit_test_teardown(test_config_file_numbers_are_digits, ft_teardown),
		cmocka_unit_test_teardown(test_config_file_flag_only_key_says_where_it_goes,
		                          ft_teardown),
		cmocka_unit_test_teardown(test_config_errors_show_values_printably, ft_teardown),
		cmocka_unit_test_teardown(test_config_file_unreadable_as_text_is_named, ft_teardown),
		cmocka_unit_test_teardown(test_config_help_lists_every_option_with_default, ft_teardown),
		cmocka_unit_test_teardown(test_config_file_comment_after_a_value_is_refused, ft_teardown),
		cmocka_unit_test_teardown(test_config_print_config_checks_as_a_start_does, ft_teardown),
		cmocka_unit_test_teardown(test_config_print_config_makes_relative_paths_absolute,
		                          ft_teardown),
		cmocka_unit_test_teardown(test_config_refuses_a_conninfo_libpq_would_refuse,
		                          ft_teardown),
		cmocka_unit_test_teardown(test_batch_coalesce_keeps_last_state_per_key, ft_teardown),
		cmocka_unit_test_teardown(test_batch_reuses_its_chunks_between_batches, ft_teardown),
		cmocka_unit_test_teardown(test_batch_copies_a_payload_that_lies_above_the_record, ft_teardown),
		cmocka_unit_test_teardown(test_worker_backs_off_while_the_log_cannot_be_read, ft_teardown),
		cmocka_unit_test_teardown(test_worker_reads_the_awaited_mark_of_its_sink_alone, ft_teardown),
		cmocka_unit_test_teardown(test_once_gives_up_when_the_log_cannot_be_read, ft_teardown),
		cmocka_unit_test_teardown(test_lock_refuses_a_second_flusher, ft_teardown),
		cmocka_unit_test_teardown(test_lock_waits_out_a_stat_probe, ft_teardown),
		cmocka_unit_test_teardown(test_flusher_refuses_a_directory_without_environment, ft_teardown),
		cmocka_unit_test_teardown(test_exit_errors_are_said_once, ft_teardown),
		cmocka_unit_test_teardown(test_daemon_waits_for_the_environment, ft_teardown),
		cmocka_unit_test_teardown(test_lock_makes_no_directory, ft_teardown),
		cmocka_unit_test_teardown(test_lock_file_lets_the_group_take_it,
		                          ft_teardown),
		cmocka_unit_test_teardown(test_flushed_never_passes_a_sinks_position, ft_teardown),
		cmocka_unit_test_teardown(test_dead_letters_merge_sinks_and_keep_raw, ft_teardown),
		cmocka_unit_test_teardown(test_dead_letter_sink_that_does_not_fit_is_refused, ft_teardown),
		cmocka_unit_test_teardown(test_dead_letter_reason_is_utf8_and_sink_a_name, ft_teardown),
		cmocka_unit_test_teardown(test_dead_letter_walk_goes_past_a_corrupt_one, ft_teardown),
		cmocka_unit_test_teardown(test_dead_letter_over_a_corrupt_one_says_it_replaced_it, ft_teardown),
		cmocka_unit_test_teardown(test_once_mirrors_10000_messages_from_two_writers, ft_teardown),
		cmocka_unit_test_teardown(test_put_of_a_row_postgres_has_is_upserted_once, ft_teardown),
		cmocka_unit_test_teardown(test_a_reply_l1_dropped_counts_once_when_put_again, ft_teardown),
		cmocka_unit_test_teardown(test_rows_keep_their_metadata_whatever_the_default, ft_teardown),
		cmocka_unit_test_teardown(test_pgclientencoding_changes_no_row, ft_teardown),
		cmocka_unit_test_teardown(test_statics_graph_and_marks_are_mirrored, ft_teardown),
		cmocka_unit_test_teardown(test_graph_drop_inside_a_batch_respects_order, ft_teardown),
		cmocka_unit_test_teardown(test_legacy_records_of_one_object_in_two_spellings_apply, ft_teardown),
		cmocka_unit_test_teardown(test_poison_records_become_dead_letters, ft_teardown),
		cmocka_unit_test_teardown(
			test_long_row_refused_keeps_the_useful_parts_as_its_reason,
			ft_teardown),
		cmocka_unit_test_teardown(test_postgres_keeps_a_soft_delete_final, ft_teardown),
		cmocka_unit_test_teardown(test_postgres_keeps_the_newer_version, ft_teardown),
		cmocka_unit_test_teardown(
			test_newer_row_put_back_after_a_kill_past_the_commit,
			ft_teardown),
		cmocka_unit_test_teardown(
			test_newer_rows_unread_after_the_commit_are_put_back_later,
			ft_teardown),
		cmocka_unit_test_teardown(
			test_kept_delete_and_older_version_in_one_batch,
			ft_teardown),
		cmocka_unit_test_teardown(test_kept_delete_l1_already_holds_is_not_said_put_back, ft_teardown),
		cmocka_unit_test_teardown(test_a_reply_put_back_keeps_its_parents_count, ft_teardown),
		cmocka_unit_test_teardown(test_upsert_short_of_rows_without_a_delete_does_not_stall, ft_teardown),
		cmocka_unit_test_teardown(test_corrupt_record_met_as_the_map_grows_is_set_aside, ft_teardown),
		cmocka_unit_test_teardown(test_flusher_keeps_the_environments_map_size, ft_teardown),
		cmocka_unit_test_teardown(test_once_exits_3_when_a_sink_is_unreachable, ft_teardown),
		cmocka_unit_test_teardown(test_totals_carry_over_a_restart,
		                          ft_teardown),
		cmocka_unit_test_teardown(test_daemon_clears_a_dead_readers_slot,
		                          ft_teardown),
		cmocka_unit_test_teardown(
			test_config_file_line_without_equals_is_refused,
			ft_teardown),
		cmocka_unit_test_teardown(
			test_sink_ahead_of_its_recorded_position_applies_nothing_twice,
			ft_teardown),
		cmocka_unit_test_teardown(
			test_environment_restored_from_an_older_copy_is_refused,
			ft_teardown),
		cmocka_unit_test_teardown(
			test_sink_behind_a_trimmed_log_warns_and_goes_on,
			ft_teardown),
		cmocka_unit_test_teardown(
			test_position_moved_under_a_running_flusher_is_read_again,
			ft_teardown),
		cmocka_unit_test_teardown(
			test_redis_out_of_memory_is_retried_not_dead_lettered,
			redis_unlimited),
		cmocka_unit_test_teardown(test_sink_error_is_one_printable_line, ft_teardown),
		cmocka_unit_test(test_long_log_lines_are_cut_between_characters),
		cmocka_unit_test(test_log_line_shows_control_bytes_escaped),
		cmocka_unit_test(
			test_alert_on_stderr_shows_control_bytes_escaped),
		cmocka_unit_test_teardown(test_pg_error_text_is_logged_printably, ft_teardown),
		cmocka_unit_test_teardown(test_once_without_the_schema_names_it_and_gives_up, ft_teardown),
		cmocka_unit_test_teardown(test_pg_schema_failing_at_a_reconnect_is_retried, ft_teardown),
		cmocka_unit_test_teardown(test_pg_connect_gives_up_after_pg_timeout_ms, ft_teardown),
		cmocka_unit_test_teardown(test_redis_connect_resolves_within_redis_timeout_ms, ft_teardown),
		cmocka_unit_test_teardown(
			test_pg_sink_server_warning_is_a_warn_line_of_the_log,
			ft_teardown),
		cmocka_unit_test_teardown(test_pg_connect_resolves_within_pg_timeout_ms, ft_teardown),
		cmocka_unit_test_teardown(
			test_pg_connect_names_the_connection_unless_the_user_does,
			unset_pgappname),
		cmocka_unit_test_teardown(test_pg_connect_error_shows_the_host_printably, ft_teardown),
		cmocka_unit_test_teardown(test_flusher_names_its_paths_printably, ft_teardown),
		cmocka_unit_test_teardown(test_position_past_the_log_end_is_refused, ft_teardown),
		cmocka_unit_test_teardown(test_position_row_of_another_environment_is_refused, ft_teardown),
		cmocka_unit_test_teardown(test_application_l2_ttl_and_threshold_reach_redis, ft_teardown),
		cmocka_unit_test_teardown(test_redis_acl_user_in_the_url, ft_teardown),
		cmocka_unit_test_teardown(test_daemon_follows_writes_and_exits_0_on_sigterm, ft_teardown),
		cmocka_unit_test_teardown(test_sighup_reopens_the_log_file, ft_teardown),
		cmocka_unit_test_teardown(test_log_lines_lost_to_a_full_disk_are_counted, ft_teardown),
		cmocka_unit_test_teardown(test_once_stopped_by_sigterm_exits_3, ft_teardown),
		cmocka_unit_test_teardown(test_write_through_returns_once_postgres_has_it, ft_teardown),
		cmocka_unit_test_teardown(test_write_through_put_undoing_a_delete_in_postgres_is_el3, ft_teardown),
		cmocka_unit_test_teardown(test_write_through_does_not_wait_for_batch_ms, ft_teardown),
		cmocka_unit_test_teardown(test_write_through_sees_a_refusal_past_a_corrupt_letter, ft_teardown),
	};
	return cmocka_run_group_tests(tests, ft_group_setup, NULL);
}
