/*
 * tests/test_tools.c - the tools of tools/ (shmctl, shm-chatsim,
 * shm-dataset) open an existing environment at the map size it has: they
 * show it, and their writes do not store a larger one in it (LMDB stores a
 * process's map size at its first commit when it is larger). A new
 * environment they create gets libshm's default, 1 GiB. A data file cut
 * short makes them exit with libshm's message, not die by SIGBUS. Every
 * program, shm-flusher and shm-bench too, prints its version.
 *
 * The binaries: $SHM_BIN (what tests/run.sh exports), else ../bin next to
 * this test binary (BUILD/tests/ -> BUILD/bin/).
 */
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <lmdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

#define MIB ((size_t)1 << 20)

static char bin_dir[PATH_MAX];

/* Runs bin_dir/tool with argv (NULL-terminated, argv[0] the tool's name),
 * stdin from in (NULL: /dev/null), its output fd (1 or 2) into out (cap
 * bytes, NUL-terminated; NULL: discarded), its stdout into the file
 * stdout_to when fd_out is 2 (NULL: the test's); returns its exit status. */
static int run_io(int fd_out, const char *in, const char *stdout_to,
                  char *out, size_t cap, char *const argv[])
{
	char path[PATH_MAX + 64];
	int p[2], st;
	size_t len = 0;
	ssize_t n;
	pid_t pid;

	snprintf(path, sizeof path, "%s/%s", bin_dir, argv[0]);
	assert_int_equal(pipe(p), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int fd = open(in ? in : "/dev/null", O_RDONLY);
		if (fd < 0)
			_exit(126);
		dup2(fd, 0);
		if (stdout_to) {
			if ((fd = open(stdout_to, O_WRONLY)) < 0)
				_exit(126);
			dup2(fd, 1);
		}
		dup2(p[1], fd_out);
		close(p[0]);
		close(p[1]);
		execv(path, argv);
		_exit(127);
	}
	close(p[1]);
	tu_child_add(pid);
	char sink[4096];
	while ((n = read(p[0], out ? out + len : sink,
	                 out ? cap - 1 - len : sizeof sink)) > 0)
		if (out)
			len += (size_t)n;
	close(p[0]);
	if (out)
		out[len] = '\0';
	assert_int_equal(waitpid(pid, &st, 0), pid);
	tu_child_del(pid);
	assert_true(WIFEXITED(st));
	return WEXITSTATUS(st);
}

static int run_fd(int fd_out, const char *in, char *out, size_t cap,
                  char *const argv[])
{
	return run_io(fd_out, in, NULL, out, cap, argv);
}

/* run_fd with the tool's stdout into out. */
static int run(const char *in, char *out, size_t cap, char *const argv[])
{
	return run_fd(1, in, out, cap, argv);
}

/* path: a JSON-lines file of one message to import. */
static void write_one_message(const char *path)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs("{\"room_id\":\"tools\",\"user_id\":2,\"username\":\"bob\","
	      "\"content\":\"imported\",\"message_type\":\"Text\"}\n", f);
	fclose(f);
}

/* An environment of 64 MiB holding one message; *id gets its id. */
static char *env_64mib(shm_uuid *id)
{
	char *dir = tu_tmpdir();
	shm_options o;

	shm_options_init(&o);
	o.map_size = 64 * MIB;
	shm_env *env = tu_open(dir, &o);
	shm_msg m = tu_msg("tools", 1, "in a 64 MiB map");
	assert_int_equal(shm_msg_put(env, &m), 0);
	*id = m.id;
	shm_env_close(env);
	assert_int_equal(tu_stored_map_size(dir), 64 * MIB);
	return dir;
}

/* shmctl stat says the map size the environment has, not the size shmctl
 * would give a new one. */
static void test_shmctl_stat_shows_the_environments_map_size(void **state)
{
	shm_uuid id;
	char *dir = env_64mib(&id), out[16384], *line;
	unsigned long long size = 0;

	assert_int_equal(run(NULL, out, sizeof out,
	                     (char *[]){"shmctl", "-e", dir, "stat", NULL}), 0);
	assert_non_null(line = strstr(out, "\nmap_size "));
	assert_int_equal(sscanf(line, " map_size %llu", &size), 1);
	assert_int_equal(size, 64 * MIB);
	tu_rmdir(dir);
	free(dir);
}

/* shmctl's writing commands work in the environment's own map: the size
 * stored in it stays 64 MiB. */
static void test_shmctl_writes_keep_the_environments_map_size(void **state)
{
	static const char w[] = "8c5e1ab0-6d0a-4c5c-9b61-2f6a0e1d5a11";
	shm_uuid id;
	char *dir = env_64mib(&id), sid[37], in[PATH_MAX], *in_dir;

	shm_uuid_format(&id, sid);
	assert_int_equal(run(NULL, NULL, 0, (char *[]){"shmctl", "-e", dir,
	                     "edit", sid, "edited", NULL}), 0);
	assert_int_equal(tu_stored_map_size(dir), 64 * MIB);
	assert_int_equal(run(NULL, NULL, 0, (char *[]){"shmctl", "-e", dir,
	                     "react", sid, "7", "+1", NULL}), 0);
	assert_int_equal(run(NULL, NULL, 0, (char *[]){"shmctl", "-e", dir,
	                     "deps", "set", (char *)w, "Page/1", "--direct",
	                     "Block/1", NULL}), 0);
	assert_int_equal(run(NULL, NULL, 0, (char *[]){"shmctl", "-e", dir,
	                     "touch", (char *)w, "Block/1", NULL}), 0);
	assert_int_equal(run(NULL, NULL, 0, (char *[]){"shmctl", "-e", dir,
	                     "init", NULL}), 0);
	in_dir = tu_tmpdir();
	snprintf(in, sizeof in, "%s/in.jsonl", in_dir);
	write_one_message(in);
	assert_int_equal(run(in, NULL, 0, (char *[]){"shmctl", "-e", dir,
	                     "import", NULL}), 0);
	assert_int_equal(tu_stored_map_size(dir), 64 * MIB);
	tu_rmdir(in_dir);
	free(in_dir);
	tu_rmdir(dir);
	free(dir);
}

/* shmctl init and import create a new environment at libshm's default. */
static void test_shmctl_creates_at_libshms_default(void **state)
{
	char *dir = tu_tmpdir(), *other = tu_tmpdir(), in[PATH_MAX];

	tu_rmdir(dir);
	assert_int_equal(run(NULL, NULL, 0,
	                     (char *[]){"shmctl", "-e", dir, "init", NULL}), 0);
	assert_int_equal(tu_stored_map_size(dir), 1024 * MIB);
	snprintf(in, sizeof in, "%s/in.jsonl", dir);
	write_one_message(in);
	tu_rmdir(other);
	assert_int_equal(run(in, NULL, 0, (char *[]){"shmctl", "-e", other,
	                     "import", NULL}), 0);
	assert_int_equal(tu_stored_map_size(other), 1024 * MIB);
	tu_rmdir(dir);
	tu_rmdir(other);
	free(dir);
	free(other);
}

/* shm-chatsim, one of an application's processes, writes in the map the
 * environment has. */
static void test_chatsim_keeps_the_environments_map_size(void **state)
{
	shm_uuid id;
	char *dir = env_64mib(&id);

	assert_int_equal(run(NULL, NULL, 0, (char *[]){"shm-chatsim", "-e", dir,
	                     "-n", "50", "--seed", "1", NULL}), 0);
	assert_int_equal(tu_stored_map_size(dir), 64 * MIB);
	tu_rmdir(dir);
	free(dir);
}

/* shm-chatsim writes replies as shm_msg_put takes them: in their parent's
 * room and thread, never to a deleted parent (it picked deleted ones and
 * exited 1 on the put's SHM_EDELETED). */
static void test_chatsim_writes_replies_in_their_parents_room_and_thread(
	void **state)
{
	char *dir = tu_tmpdir();
	size_t replies = 0;

	assert_int_equal(run(NULL, NULL, 0, (char *[]){"shm-chatsim", "-e", dir,
	                     "-n", "1000", "--seed", "1", NULL}), 0);
	shm_env *env = tu_open(dir, NULL);
	for (int r = 0; r < 4; r++) {
		char room[16];
		shm_msg **page, *p;
		size_t n;
		snprintf(room, sizeof room, "room-%d", r);
		assert_int_equal(shm_room_page(env, room, 0, SHM_MAX_PAGE, &page,
		                               &n), 0);
		for (size_t i = 0; i < n; i++) {
			const shm_msg *m = page[i];
			if (!m->has_parent)
				continue;
			replies++;
			assert_int_equal(shm_msg_get(env, &m->parent_id, &p), 0);
			assert_string_equal(p->room_id, m->room_id);
			assert_true(m->has_thread);
			assert_memory_equal(m->thread_id.b,
			                    p->has_thread ? p->thread_id.b : p->id.b,
			                    16);
			shm_msg_free(p);
		}
		shm_msgs_free(page, n);
	}
	assert_true(replies > 100);
	assert_int_equal(tu_verify(env), 0);
	shm_env_close(env);
	tu_rmdir(dir);
	free(dir);
}

/* shm-chatsim's users are a chat's: one user id, one name, whichever
 * writer process posts for them (it gave one name to 50 user ids). */
static void test_chatsim_gives_each_user_id_one_name(void **state)
{
	char *dir = tu_tmpdir();
	char names[50][32] = {{0}};
	size_t seen = 0;

	for (int w = 0; w < 2; w++)
		assert_int_equal(run(NULL, NULL, 0, (char *[]){"shm-chatsim", "-e",
		                     dir, "-n", "300", "-w", "7", "--seed",
		                     w ? "2" : "1", NULL}), 0);
	shm_env *env = tu_open(dir, NULL);
	for (int r = 0; r < 4; r++) {
		char room[16];
		shm_msg **page;
		size_t n;
		snprintf(room, sizeof room, "room-%d", r);
		assert_int_equal(shm_room_page(env, room, 0, SHM_MAX_PAGE, &page,
		                               &n), 0);
		for (size_t i = 0; i < n; i++) {
			int k = page[i]->user_id - 7000;
			assert_true(k >= 0 && k < 50);
			if (!names[k][0]) {
				snprintf(names[k], sizeof names[k], "%s",
				         page[i]->username);
				seen++;
			}
			assert_string_equal(page[i]->username, names[k]);
		}
		shm_msgs_free(page, n);
	}
	assert_true(seen > 40);
	assert_string_not_equal(names[0], names[1]);
	shm_env_close(env);
	tu_rmdir(dir);
	free(dir);
}

/* data.mdb's size and modification time, to see that nothing wrote. */
static void data_stamp(const char *dir, struct stat *st)
{
	char path[PATH_MAX];

	snprintf(path, sizeof path, "%s/data.mdb", dir);
	assert_int_equal(stat(path, st), 0);
}

/* A bad argument of shm-chatsim is a usage error (2) naming the option and
 * its range, before the environment is opened. atoi took "1e3" for 1 and
 * "x" for 0; -w -1 read names[-1], -w 3000000 overflowed the user ids; an
 * argument left over (each case has one) was ignored; an option given
 * twice (the last cases) took the last value. */
static void test_chatsim_refuses_bad_arguments_naming_them(void **state)
{
	static const struct {
		const char *opt, *val, *want;
	} cases[] = {
		{"-n", "1e3", "-n '1e3': must be an integer in 1..2147483647"},
		{"-n", "0", "-n '0': must be an integer in 1.."},
		{"-n", " 5", "-n ' 5': must be"},
		{"-w", "-1", "-w '-1': must be an integer in 0..2147483"},
		{"-w", "-0", "-w '-0': must be an integer in 0..2147483"},
		{"-n", "+5", "-n '+5': must be"},
		{"-n", "5 ", "-n '5 ': must be"},
		{"-r", "", "-r '': must be an integer in 1.."},
		{"--seed", "99999999999999999999", "--seed '99999999999999999999': "
		 "must be"},
		{"-w", "3000000", "-w '3000000': must be an integer in 0..2147483"},
		{"-r", "x", "-r 'x': must be an integer in 1.."},
		{"--seed", "x", "--seed 'x': must be an integer in 0..4294967295"},
		{"-n", "1", "unexpected argument 'extra'"},
		/* given twice instead of "extra": which value was meant? */
		{"-n", "5", "option '-n' given twice"},
		{"--seed", "5", "option '--seed' given twice"},
		{"-e", "/nonexistent", "option '-e' given twice"},
	};
	shm_uuid id;
	char *dir = env_64mib(&id), err[1024];
	struct stat before, after;

	data_stamp(dir, &before);
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		bool twice = strstr(cases[i].want, "twice") != NULL;
		int rc = run_fd(2, NULL, err, sizeof err, (char *[]){
		        "shm-chatsim", "-e", dir, (char *)cases[i].opt,
		        (char *)cases[i].val, twice ? (char *)cases[i].opt
		        : "extra", twice ? (char *)cases[i].val : NULL, NULL});
		if (rc != 2 || !strstr(err, cases[i].want))
			fail_msg("%s '%s': exit %d, '%s'", cases[i].opt,
			         cases[i].val, rc, err);
	}
	data_stamp(dir, &after);
	assert_int_equal(after.st_size, before.st_size);
	assert_int_equal(after.st_mtim.tv_nsec, before.st_mtim.tv_nsec);
	assert_int_equal(after.st_mtim.tv_sec, before.st_mtim.tv_sec);
	tu_rmdir(dir);
	free(dir);
}

/* An option getopt refuses is said as shmctl says its usage errors: one
 * line naming it as given, then where help is. glibc's message named the
 * binary by its full path, and the whole usage followed it. */
static void test_chatsim_says_a_bad_option_as_shmctl_does(void **state)
{
	static const struct {
		const char *a, *want;
	} cases[] = {
		{"-x", "unknown option '-x'"},
		{"--foo", "unknown option '--foo'"},
		{"-n", "option '-n' needs a value"},
		{"--seed", "option '--seed' needs a value"},
		{"--help=1", "option '--help' takes no value"},
	};
	char err[4096], want[256];

	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		int rc = run_fd(2, NULL, err, sizeof err, (char *[]){
		        "shm-chatsim", (char *)cases[i].a, NULL});
		snprintf(want, sizeof want, "shm-chatsim: %s\n(see shm-chatsim "
		         "--help)\n", cases[i].want);
		if (rc != 2 || strcmp(err, want))
			fail_msg("%s: exit %d, '%s'", cases[i].a, rc, err);
	}
}

/* An argument quoted in a usage error is shown printably (libshm/text.h):
 * an ESC, a line break or invalid UTF-8 as \xNN, never raw on the
 * terminal; the message stays one line and names it. */
#define RAW "a\033[31mb\377c\nd"
#define SHOWN "a\\x1b[31mb\\xffc\\x0ad"

/* err: want_rc's text, holding want and lines line breaks. */
static void assert_shown(const char *what, int rc, int want_rc,
                         const char *err, const char *want, int lines)
{
	int n = 0;

	for (const char *p = err; (p = strchr(p, '\n')); p++)
		n++;
	if (rc != want_rc || strpbrk(err, "\033\377") || !strstr(err, want) ||
	    n != lines)
		fail_msg("%s: exit %d, '%s'", what, rc, err);
}

static void test_chatsim_shows_bad_arguments_printably(void **state)
{
	static const struct {
		const char *a, *b, *want;
	} cases[] = {
		{"-n", RAW, "shm-chatsim: -n '" SHOWN "': must be an integer"},
		{"--seed", RAW, "shm-chatsim: --seed '" SHOWN "': must be"},
		{"--" RAW, NULL, "shm-chatsim: unknown option '--" SHOWN "'"},
		{"-\033", NULL, "shm-chatsim: unknown option '-\\x1b'"},
		{"-\377", NULL, "shm-chatsim: unknown option '-\\xff'"},
		{"-e", "/nonexistent", "shm-chatsim: unexpected argument '"
		 SHOWN "'"},
	};
	char err[1024];

	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		int rc = run_fd(2, NULL, err, sizeof err, (char *[]){
		        "shm-chatsim", (char *)cases[i].a, (char *)cases[i].b,
		        cases[i].b && !strcmp(cases[i].a, "-e") ? RAW : NULL,
		        NULL});
		/* and "(see shm-chatsim --help)" */
		assert_shown(cases[i].a, rc, 2, err, cases[i].want, 2);
	}
}

/* shm-dataset's bad option values, and libpq's text, which quotes the
 * conninfo's socket directory and spans lines ("\n\tIs the server
 * running..."): shown printably, on one line. */
static void test_dataset_shows_bad_arguments_and_postgres_text_printably(
	void **state)
{
	static const struct {
		const char *a, *b, *want;
	} cases[] = {
		{"--websites", RAW, "shm-dataset: --websites '" SHOWN "': must"},
		{"--obsolete", RAW, "shm-dataset: --obsolete '" SHOWN "': must"},
		{"--graph", RAW, "shm-dataset: --graph '" SHOWN "': must be pg"},
		{"--" RAW, NULL, "shm-dataset: unknown option '--" SHOWN "'"},
	};
	char err[4096];

	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		int rc = run_fd(2, NULL, err, sizeof err, (char *[]){
		        "shm-dataset", (char *)cases[i].a, (char *)cases[i].b,
		        "--quiet", NULL});
		/* the unknown option is followed by where help is */
		assert_shown(cases[i].a, rc, 2, err, cases[i].want,
		             cases[i].b ? 1 : 2);
	}
	int rc = run_fd(2, NULL, err, sizeof err, (char *[]){
	        "shm-dataset", "--pg", "host='/nonexistent/" RAW "' dbname=x",
	        "--connections", "100", "--quiet", NULL});
	/* its line breaks fold to spaces, the one in the name too */
	assert_shown("--pg", rc, 1, err, "\"/nonexistent/a\\x1b[31mb\\xffc d/"
	             ".s.PGSQL.", 1);
	assert_non_null(strstr(err, "failed: No such file or directory Is the "
	                            "server running"));
}

/* A --pg that libpq would refuse before asking a server is a usage error
 * (exit 2), said as shm-flusher and libshm say it (one check): the
 * option and its value named; an unknown option named, its value not;
 * never a password, a word of which libpq's own text quoted ("missing "="
 * after "s3cret"", exit 1 then, PostgreSQL's error). */
static void test_dataset_refuses_a_conninfo_libpq_would_refuse(
	void **state)
{
	static const struct {
		const char *pg, *want;
	} cases[] = {
		{"host=/tmp port=abc dbname=x", "port 'abc': not a port number "
		 "(an integer from 1 to 65535, or empty for the default)"},
		{"dbname=x sslmode=bogus", "sslmode 'bogus': not one of "
		 "disable, allow, prefer, require, verify-ca, verify-full"},
		{"hostx=s3cret dbname=x", "unknown connection option 'hostx'"},
		{"dbname=x password=pass s3cret", "after option 'password', a "
		 "word without '=' (a value with spaces goes in single quotes)"},
		{"dbname=x port=5\033[31m\377", "port '5\\x1b[31m\\xff': not a "
		 "port number"},
	};
	char err[4096], want[512];

	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		int rc = run_fd(2, NULL, err, sizeof err, (char *[]){
		        "shm-dataset", "--pg", (char *)cases[i].pg,
		        "--connections", "10", "--quiet", NULL});
		snprintf(want, sizeof want, "shm-dataset: --pg: %s", cases[i].want);
		if (rc != 2 || !strstr(err, want) || strchr(err, '\n') !=
		    err + strlen(err) - 1 || strstr(err, "s3cret"))
			fail_msg("%s: exit %d, '%s'", cases[i].pg, rc, err);
	}
}

/* A bad option is said as shm-chatsim says it: what is wrong with it, in
 * one line, then where help is. "unknown or incomplete option" said
 * neither which (a value missing, or an argument no option takes), and
 * the whole usage followed it. */
static void test_dataset_says_a_bad_option_as_chatsim_does(void **state)
{
	static const struct {
		const char *a, *want;
	} cases[] = {
		{"--wesbites", "unknown option '--wesbites'"},
		{"--websites", "option '--websites' needs a value"},
		{"--pg", "option '--pg' needs a value"},
		{"extra", "unexpected argument 'extra'"},
		{"--wesbites=2", "unknown option '--wesbites'"},
		{"--help=yes", "option '--help' takes no value"},
	};
	char err[4096], want[256];

	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		int rc = run_fd(2, NULL, err, sizeof err, (char *[]){
		        "shm-dataset", "--quiet", (char *)cases[i].a, NULL});
		snprintf(want, sizeof want, "shm-dataset: %s\n(see shm-dataset "
		         "--help)\n", cases[i].want);
		if (rc != 2 || strcmp(err, want))
			fail_msg("%s: exit %d, '%s'", cases[i].a, rc, err);
	}
	/* --name=VALUE is --name VALUE, as shm-chatsim, shm-bench,
	 * shm-flusher and shmctl take it ("unknown option '--websites=2'") */
	char out[4096];
	int rc = run_fd(1, NULL, out, sizeof out, (char *[]){
	        "shm-dataset", "--websites=2", "--connections=10", NULL});
	assert_int_equal(rc, 0);
	assert_non_null(strstr(out, "websites 2\n"));
	rc = run_fd(2, NULL, err, sizeof err, (char *[]){
	        "shm-dataset", "--websites=2", "--websites", "3", NULL});
	assert_int_equal(rc, 2);
	assert_non_null(strstr(err, "option '--websites' given twice"));
}

/* shm-bench's bad arguments are said, naming them, before anything is
 * started: a stray argument printed the usage alone, and "--seed -1" was
 * taken (strtoull's 2^64 - 1) and ran the benchmark. */
static void test_bench_refuses_bad_arguments_naming_them(void **state)
{
	static const struct {
		const char *a, *b, *want;
	} cases[] = {
		{"extra", NULL, "shm-bench: unexpected argument 'extra'\n"
		 "(see shm-bench --help)\n"},
		{"--seed", "-1", "shm-bench: --seed '-1': must be an integer in "
		 "0..18446744073709551615\n"},
		{"--rounds", "+2", "shm-bench: --rounds '+2': must be an integer "
		 "in 1..100\n"},
		{"--rounds", "0", "shm-bench: --rounds '0': must be an integer "
		 "in 1..100\n"},
	};
	char err[4096];

	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		int rc = run_fd(2, NULL, err, sizeof err, (char *[]){
		        "shm-bench", (char *)cases[i].a, (char *)cases[i].b,
		        NULL});
		if (rc != 2 || strcmp(err, cases[i].want))
			fail_msg("%s: exit %d, '%s'", cases[i].a, rc, err);
	}
}

/* The summary counts in words that agree with them: "1 message (1
 * reply), 1 edit, 1 reaction, 1 delete", not "1 replies". Two messages
 * under seeds 1..12 make each of them once (rand_r's sequence). */
static void test_chatsim_summary_says_one_in_the_singular(void **state)
{
	static const char *const one[] = {"(1 reply)", ", 1 edit,",
	                                  ", 1 reaction,", ", 1 delete\n"};
	static const char *const bad[] = {"1 replies", "1 edits",
	                                  "1 reactions", "1 deletes"};
	shm_uuid id;
	char *dir = env_64mib(&id), out[256], all[4096] = "";

	assert_int_equal(run(NULL, out, sizeof out, (char *[]){"shm-chatsim",
	                     "-e", dir, "-n", "1", NULL}), 0);
	assert_string_equal(out, "writer 0: 1 message (0 replies), 0 edits, "
	                         "0 reactions, 0 deletes\n");
	for (int seed = 1; seed <= 12; seed++) {
		char s[8];
		snprintf(s, sizeof s, "%d", seed);
		assert_int_equal(run(NULL, out, sizeof out, (char *[]){
		                     "shm-chatsim", "-e", dir, "-n", "2",
		                     "--seed", s, NULL}), 0);
		strcat(all, out);
	}
	for (size_t i = 0; i < 4; i++) {
		if (!strstr(all, one[i]) || strstr(all, bad[i]))
			fail_msg("'%s' or '%s' in:\n%s", one[i], bad[i], all);
	}
	tu_rmdir(dir);
	free(dir);
}

/* shm-dataset --env loads its graph into the map the environment has. */
static void test_dataset_keeps_the_environments_map_size(void **state)
{
	shm_uuid id;
	char *dir = env_64mib(&id);

	assert_int_equal(run(NULL, NULL, 0, (char *[]){"shm-dataset", "--env",
	                     dir, "--connections", "500", "--quiet", NULL}), 0);
	assert_int_equal(tu_stored_map_size(dir), 64 * MIB);
	tu_rmdir(dir);
	free(dir);
}

/* Every program prints "NAME VERSION" (SHM_VERSION) with --version and -V,
 * and exits 0 without opening anything: shm-chatsim, shm-dataset and
 * shm-bench took it for an unknown option (exit 2, 1 and 2). */
static void test_every_tool_prints_its_version(void **state)
{
	static const char *const tools[] = {"shmctl", "shm-flusher",
	                                    "shm-chatsim", "shm-dataset",
	                                    "shm-bench"};
	char out[256], want[128];

	for (size_t i = 0; i < sizeof tools / sizeof *tools; i++)
		for (int j = 0; j < 2; j++) {
			char *opt = j ? "-V" : "--version";
			int rc = run(NULL, out, sizeof out,
			             (char *[]){(char *)tools[i], opt, NULL});
			snprintf(want, sizeof want, "%s %s\n", tools[i],
			         SHM_VERSION);
			if (rc != 0 || strcmp(out, want))
				fail_msg("%s %s: exit %d, '%s'", tools[i], opt,
				         rc, out);
		}
}

/* A usage error (an unknown option, an option without its value) is exit
 * 2 in every program, its --help saying so: shm-dataset and shm-flusher
 * said 1 (shm-flusher's 2 was an environment it could not open, now 1). */
static void test_every_tool_exits_2_on_a_usage_error(void **state)
{
	static const char *const tools[] = {"shmctl", "shm-flusher",
	                                    "shm-chatsim", "shm-dataset",
	                                    "shm-bench"};
	static char out[16384];
	char err[4096];

	for (size_t i = 0; i < sizeof tools / sizeof *tools; i++) {
		int rc = run_fd(2, NULL, err, sizeof err, (char *[]){
		                (char *)tools[i], "--no-such-option", NULL});
		if (rc != 2 || !strstr(err, "--no-such-option"))
			fail_msg("%s --no-such-option: exit %d, '%s'",
			         tools[i], rc, err);
		rc = run(NULL, out, sizeof out,
		         (char *[]){(char *)tools[i], "--help", NULL});
		if (rc != 0 || !strstr(out, "2 usage"))
			fail_msg("%s --help: exit %d, no \"2 usage\" in it",
			         tools[i], rc);
	}
}

/* Every program's --help (exit 0, on stdout) lists -h, --help and -V,
 * --version, as the README says: shm-bench's left out its own -h. */
static void test_every_tools_help_lists_help_and_version(void **state)
{
	static const char *const tools[] = {"shmctl", "shm-flusher",
	                                    "shm-chatsim", "shm-dataset",
	                                    "shm-bench"};
	static char out[16384];

	for (size_t i = 0; i < sizeof tools / sizeof *tools; i++) {
		int rc = run(NULL, out, sizeof out,
		             (char *[]){(char *)tools[i], "--help", NULL});
		if (rc != 0 || !strstr(out, "-h, --help") ||
		    !strstr(out, "-V, --version"))
			fail_msg("%s --help: exit %d, -h, --help %s, "
			         "-V, --version %s", tools[i], rc,
			         strstr(out, "-h, --help") ? "listed" : "missing",
			         strstr(out, "-V, --version") ? "listed"
			                                      : "missing");
	}
}

/* A data file cut short is refused, not a SIGBUS: shmctl stat and verify
 * exit 65 and say which file lacks which page (libshm's message). */
static void test_shmctl_refuses_a_cut_data_file(void **state)
{
	char *dir = tu_env_after_many_commits(), err[4096];
	char want[PATH_MAX + 64];
	const char *cmds[] = {"stat", "verify"};

	snprintf(want, sizeof want, "%s/data.mdb: %lld bytes, but page ", dir,
	         (long long)tu_cut_at_highest_root(dir));
	for (size_t i = 0; i < 2; i++) {
		assert_int_equal(run_fd(2, NULL, err, sizeof err,
		                        (char *[]){"shmctl", "-e", dir,
		                                   (char *)cmds[i], NULL}), 65);
		assert_non_null(strstr(err, want));
		assert_non_null(strstr(err, "lies beyond them (corrupted or "
		                            "truncated data)\n"));
	}
	tu_rmdir(dir);
	free(dir);
}

/* Puts key -> the vlen bytes of v into database db of dir's environment
 * with LMDB itself: what libshm would not write (now). No handle of this
 * process may be open on dir. */
static void put_raw(const char *dir, const char *db, const void *key,
                    size_t klen, const void *v, size_t vlen)
{
	MDB_env *m;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_val k = {klen, (void *)key}, d = {vlen, (void *)v};

	assert_int_equal(mdb_env_create(&m), 0);
	assert_int_equal(mdb_env_set_maxdbs(m, 16), 0);
	assert_int_equal(mdb_env_open(m, dir, 0, 0664), 0);
	assert_int_equal(mdb_txn_begin(m, NULL, 0, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, db, 0, &dbi), 0);
	assert_int_equal(mdb_put(txn, dbi, &k, &d, 0), 0);
	assert_int_equal(mdb_txn_commit(txn), 0);
	mdb_env_close(m);
}

/* Sets meta name to the len bytes of v (put_raw). */
static void put_raw_meta(const char *dir, const char *name, const void *v,
                         size_t len)
{
	put_raw(dir, "meta", name, strlen(name), v, len);
}

/* A read that fails half-way through stat (a meta value of 4 bytes, not a
 * u64) exits 65 naming it and prints nothing: --json printed the object
 * up to the failure, never closed ("{...," without "}"), and the human
 * output the lines before it. */
static void test_shmctl_stat_prints_nothing_when_a_read_fails(void **state)
{
	shm_uuid id;
	char *dir = env_64mib(&id), out[16384];
	uint32_t torn = 7;

	put_raw_meta(dir, "flusher.env_id.hi", &torn, sizeof torn);
	for (int json = 0; json < 2; json++) {
		char *argv[] = {"shmctl", "-e", dir, "stat",
		                json ? "--json" : NULL, NULL};
		assert_int_equal(run(NULL, out, sizeof out, argv), 65);
		if (*out)
			fail_msg("stat%s printed '%.200s'", json ? " --json" : "",
			         out);
		assert_int_equal(run_fd(2, NULL, out, sizeof out, argv), 65);
		assert_non_null(strstr(out, "meta 'flusher.env_id.hi': 4 bytes, "
		                            "expected 8"));
	}
	tu_rmdir(dir);
	free(dir);
}

/* A website object is direct by its type, whatever an older libshm
 * stored for it (it let one be declared indirect): ls shows it direct, as
 * every reader takes it, and says the stored byte differs. It showed
 * "indirect" and "direct":false. */
static void test_shmctl_ls_shows_a_website_stored_indirect_as_direct(
	void **state)
{
	static const char site[] =
		"Communication::Website/0b8e7c52-1111-4222-8333-444455556666";
	shm_uuid id, ws;
	char *dir = env_64mib(&id), out[4096];
	uint8_t key[128], indirect = 0;

	shm_uuid_v7(&ws);
	shm_env *env = tu_open(dir, NULL);
	assert_int_equal(shm_deps_set(env, &ws, site, true, NULL, 0), 0);
	assert_int_equal(shm_deps_set(env, &ws, "Person/1", false, NULL, 0), 0);
	shm_env_close(env);
	memcpy(key, ws.b, 16);
	memcpy(key + 16, site, sizeof site - 1);
	put_raw(dir, "obj", key, 16 + sizeof site - 1, &indirect, 1);

	char *ls[] = {"shmctl", "-e", dir, "ls", "--kind", "graph", NULL};
	assert_int_equal(run(NULL, out, sizeof out, ls), 0);
	char w[37], want[512];
	shm_uuid_format(&ws, w);
	snprintf(want, sizeof want,
	         "graph %s %s direct 0 stored-indirect\n"
	         "graph %s Person/1 indirect 0\n", w, site, w);
	assert_string_equal(out, want);
	char *json[] = {"shmctl", "-e", dir, "ls", "--kind", "graph", "--json",
	                NULL};
	assert_int_equal(run(NULL, out, sizeof out, json), 0);
	snprintf(want, sizeof want,
	         "{\"kind\":\"graph\",\"website\":\"%s\",\"object\":"
	         "\"%s\",\"direct\":true,\"deps\":0,"
	         "\"stored_direct\":false}\n"
	         "{\"kind\":\"graph\",\"website\":\"%s\",\"object\":"
	         "\"Person/1\",\"direct\":false,\"deps\":0}\n", w, site, w);
	assert_string_equal(out, want);
	tu_rmdir(dir);
	free(dir);
}

/* shmctl verify says a graph node an older libshm stored under a UUID ID
 * in upper case, and exits 1 (problems found); the same object declared
 * in upper case now is stored in lower case: ok, 0. shmctl upgrade drops
 * the old spelling (the lower-case object is declared). */
static void test_shmctl_verify_names_an_upper_case_uuid_id(void **state)
{
	static const char page[] = "Page/C0FFEE00-0000-4000-8000-0000000000AB";
	shm_uuid id, ws;
	char *dir = env_64mib(&id), out[4096], w[37], want[512];
	uint8_t key[128], direct = 1;
	char *verify[] = {"shmctl", "-e", dir, "verify", NULL};

	shm_uuid_v7(&ws);
	shm_uuid_format(&ws, w);
	shm_env *env = tu_open(dir, NULL);
	assert_int_equal(shm_deps_set(env, &ws, page, true, NULL, 0), 0);
	shm_env_close(env);
	assert_int_equal(run(NULL, out, sizeof out, verify), 0);
	/* in words that agree with the counts: "1 messages" before */
	assert_non_null(strstr(out, "ok: 1 message, 0 statics, 2 log records"));

	memcpy(key, ws.b, 16);
	memcpy(key + 16, page, sizeof page - 1);
	put_raw(dir, "obj", key, 16 + sizeof page - 1, &direct, 1);
	assert_int_equal(run(NULL, out, sizeof out, verify), 1);
	snprintf(want, sizeof want,
	         "graph: object %s/%s: a UUID ID in upper case, as an older "
	         "libshm stored it; libshm keys this object Page/c0ffee00-0000-"
	         "4000-8000-0000000000ab: libshm no longer walks it, declared "
	         "again or not: run 'shmctl upgrade'\n", w, page);
	assert_string_equal(out, want);
	assert_int_equal(run_fd(2, NULL, out, sizeof out, verify), 1);
	assert_string_equal(out, "shmctl: verify: 1 problem\n");

	/* as it says: upgrade, then verify is clean */
	char *upgrade[] = {"shmctl", "-e", dir, "upgrade", NULL};
	assert_int_equal(run(NULL, out, sizeof out, upgrade), 0);
	assert_string_equal(out, "upgraded: 0 graph objects declared again, "
	                         "1 old spelling dropped, 0 statics busted, 0 "
	                         "marks dropped\n");
	assert_int_equal(run(NULL, out, sizeof out, verify), 0);
	assert_int_equal(run(NULL, out, sizeof out, upgrade), 0);
	assert_string_equal(out, "nothing to upgrade\n");
	tu_rmdir(dir);
	free(dir);
}

/* A fraction that is not a number fails the range check (NaN compared
 * false both ways, and loaded a site of 5 connections); an environment
 * that cannot be opened is named once. */
static void test_dataset_refuses_nan_and_names_the_environment_once(
	void **state)
{
	char err[1024];

	for (int i = 0; i < 2; i++) {
		char *opt = i ? "--marked" : "--obsolete";
		assert_int_equal(run_fd(2, NULL, err, sizeof err, (char *[]){
		                 "shm-dataset", opt, "nan", "--quiet", NULL}), 2);
		if (!strstr(err, opt))
			fail_msg("%s nan: '%s'", opt, err);
	}
	assert_int_equal(run_fd(2, NULL, err, sizeof err, (char *[]){
	                 "shm-dataset", "--env", "/dev/null", "--quiet",
	                 NULL}), 1);
	assert_non_null(strstr(err, "/dev/null: Not a directory"));
	assert_null(strstr(err, "/dev/null: /dev/null"));
}

/* Without --pg and --env shm-dataset says it loaded nothing; a database
 * without sql/schema.sql is named with the fix, not only PostgreSQL's
 * 'relation does not exist'. */
static void test_dataset_says_where_it_loaded_nothing(void **state)
{
	const char *pg = getenv("SHM_TEST_PG");
	char err[2048], conninfo[1024];

	assert_int_equal(run_fd(2, NULL, err, sizeof err, (char *[]){
	                 "shm-dataset", "--connections", "100", "--quiet",
	                 NULL}), 0);
	assert_non_null(strstr(err, "no --pg or --env: generated, loaded "
	                            "nowhere"));
	if (!pg || !*pg)
		skip();
	/* a search_path without the schema's tables: as a new database */
	snprintf(conninfo, sizeof conninfo, "%s options='-csearch_path="
	         "shm_test_no_schema'", pg);
	assert_int_equal(run_fd(2, NULL, err, sizeof err, (char *[]){
	                 "shm-dataset", "--pg", conninfo, "--connections",
	                 "100", "--quiet", NULL}), 1);
	assert_non_null(strstr(err, "does not exist"));
	assert_non_null(strstr(err, "apply sql/schema.sql to that database "
	                            "first"));
}

/* The kept connections are rounded for each of the five source types, at
 * least one each: --help said "the kept ones exactly", but 10 connections
 * 90% obsolete keep 5, not 1, and so make 50. */
static void test_dataset_help_says_how_connections_are_kept(void **state)
{
	char out[8192];
	long conn = 0, kept = 0;
	const char *p;

	assert_int_equal(run(NULL, out, sizeof out, (char *[]){
	                 "shm-dataset", "--help", NULL}), 0);
	assert_null(strstr(out, "kept ones exactly"));
	assert_non_null(strstr(out, "at least one each (a small N keeps"));
	assert_int_equal(run(NULL, out, sizeof out, (char *[]){
	                 "shm-dataset", "--connections", "10", "--obsolete",
	                 "0.9", NULL}), 0);
	assert_non_null(p = strstr(out, "\nconnections "));
	conn = atol(p + 13);
	assert_non_null(p = strstr(out, "\nkept "));
	kept = atol(p + 6);
	assert_int_equal(kept, 5);
	assert_true(conn >= 40 && conn <= 60);
}

/* A --graph that cannot do what it says is a usage error (exit 2) naming
 * the options, before anything is opened: --env DIR --graph pg left the
 * environment untouched (and said "no --pg or --env" without --pg),
 * --graph pg or both without --pg loaded the graph nowhere, exit 0. */
static void test_dataset_refuses_a_graph_it_cannot_load(void **state)
{
	char *dir = tu_tmpdir(), err[1024], env[PATH_MAX];
	const struct {
		const char *a[4], *want;
	} cases[] = {
		{{"--env", env, "--graph", "pg"},
		 "shm-dataset: --env with --graph pg: the graph is all --env "
		 "loads"},
		{{"--graph", "pg", "--quiet", NULL},
		 "shm-dataset: --graph pg needs --pg"},
		{{"--env", env, "--graph", "both"},
		 "shm-dataset: --graph both needs --pg"},
		{{"--graph", "env", "--quiet", NULL},
		 "shm-dataset: --graph env needs --env"},
	};

	snprintf(env, sizeof env, "%s/env", dir);
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		int rc = run_fd(2, NULL, err, sizeof err, (char *[]){
		        "shm-dataset", "--connections", "100",
		        (char *)cases[i].a[0], (char *)cases[i].a[1],
		        (char *)cases[i].a[2], (char *)cases[i].a[3], NULL});
		if (rc != 2 || !strstr(err, cases[i].want))
			fail_msg("case %zu: exit %d, '%s'", i, rc, err);
		/* refused before the environment is created */
		assert_int_equal(access(env, F_OK), -1);
	}
	/* what the defaults do still works: --env alone loads the graph */
	assert_int_equal(run(NULL, NULL, 0, (char *[]){"shm-dataset", "--env",
	                     env, "--graph", "env", "--connections", "100",
	                     "--quiet", NULL}), 0);
	tu_rmdir(dir);
	free(dir);
}

/* A numeric option is digits (a fraction DIGITS[.DIGITS]) in its range,
 * else exit 2 naming the option and the value: strtol and strtod took
 * " 1", "+1", "1e-1", "inf" or "0x1p-1", an empty value as 0, and an
 * overflowing one as LONG_MAX. */
/* An option given twice is a usage error naming it (exit 2): the last one
 * won before. */
static void test_dataset_refuses_an_option_given_twice(void **state)
{
	char err[1024];

	assert_int_equal(run_fd(2, NULL, err, sizeof err, (char *[]){
	                 "shm-dataset", "--connections", "10", "--quiet",
	                 "--connections", "20", NULL}), 2);
	assert_non_null(strstr(err, "shm-dataset: option '--connections' "
	                            "given twice"));
	assert_int_equal(run_fd(2, NULL, err, sizeof err, (char *[]){
	                 "shm-dataset", "--connections", "10", "--quiet",
	                 "--quiet", NULL}), 2);
	assert_non_null(strstr(err, "option '--quiet' given twice"));
}

static void test_dataset_refuses_bad_numbers_naming_them(void **state)
{
	static const struct {
		const char *opt, *val, *want;
	} cases[] = {
		{"--websites", "", "must be an integer in 1..1000000"},
		{"--websites", " 1", "must be an integer in 1..1000000"},
		{"--websites", "+1", "must be an integer"},
		{"--websites", "1x", "must be an integer"},
		{"--websites", "0", "must be an integer"},
		{"--websites", "99999999999999999999", "must be an integer"},
		{"--connections", "-10", "must be an integer in 10..1000000 (a "
		 "site is built in memory, about 410 bytes a connection)"},
		{"--connections", "1000001", "must be an integer in 10..1000000"},
		{"--seed", "-1", "must be an integer in 0..18446744073709551615"},
		{"--seed", "18446744073709551616", "must be an integer"},
		{"--obsolete", "", "must be a decimal number in [0, 0.95)"},
		{"--obsolete", " 0.5", "must be a decimal number"},
		{"--obsolete", "+0.5", "must be a decimal number"},
		{"--obsolete", "1e-1", "must be a decimal number"},
		{"--obsolete", "0x1p-1", "must be a decimal number"},
		{"--obsolete", ".5", "must be a decimal number"},
		{"--obsolete", "5.", "must be a decimal number"},
		{"--obsolete", "0.95", "must be a decimal number"},
		{"--marked", "inf", "must be a decimal number in [0, 1]"},
		{"--marked", "-0", "must be a decimal number"},
		{"--marked", "1.5", "must be a decimal number"},
	};
	char err[1024], want[256];

	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		int rc = run_fd(2, NULL, err, sizeof err, (char *[]){
		        "shm-dataset", (char *)cases[i].opt,
		        (char *)cases[i].val, "--quiet", NULL});
		snprintf(want, sizeof want, "shm-dataset: %s '%s': %s",
		         cases[i].opt, cases[i].val, cases[i].want);
		if (rc != 2 || !strstr(err, want))
			fail_msg("%s '%s': exit %d, '%s'", cases[i].opt,
			         cases[i].val, rc, err);
	}
	assert_int_equal(run(NULL, NULL, 0, (char *[]){"shm-dataset",
	                     "--obsolete", "0.5", "--marked", "1", "--seed",
	                     "0", "--connections", "10", "--quiet", NULL}), 0);
}

/* --connections is bounded by the memory a site takes, built whole before
 * it is loaded: 100000000 was accepted, needed 41 GB and was killed by the
 * OOM killer; it is refused at once naming the option, its limit and why,
 * and the limit itself runs in well under 1 GB. */
static void test_dataset_bounds_connections_to_what_memory_holds(
	void **state)
{
	char err[1024];
	struct rusage ru;

	assert_int_equal(run_fd(2, NULL, err, sizeof err, (char *[]){
	                 "shm-dataset", "--connections", "100000000",
	                 "--quiet", NULL}), 2);
	assert_non_null(strstr(err, "shm-dataset: --connections '100000000': "
	                            "must be an integer in 10..1000000 (a site "
	                            "is built in memory, about 410 bytes a "
	                            "connection)"));
	assert_int_equal(run(NULL, NULL, 0, (char *[]){"shm-dataset",
	                     "--connections", "1000000", "--quiet", NULL}), 0);
	assert_int_equal(getrusage(RUSAGE_CHILDREN, &ru), 0);
#if !defined __SANITIZE_ADDRESS__ && !defined __SANITIZE_THREAD__
	/* a sanitizer's shadow memory makes it 2.6 GB (address) or 1.4 GB
	 * (thread) */
	if (ru.ru_maxrss >= 1024 * 1024) /* KiB */
		fail_msg("--connections 1000000 took %ld KiB", ru.ru_maxrss);
#endif
}

/* Output that cannot all be written (a full disk) exits 70 saying so, as
 * shmctl's: shm-chatsim's summary and shm-dataset's counts, and their
 * --help and --version, exited 0 with nothing written; so did shm-bench's
 * --help, --version and --list (its results too: the same last step, not
 * run here); shm-flusher's --help, --version and --print-config exited 1,
 * its usage error. */
static void test_tools_say_a_full_disk(void **state)
{
	shm_uuid id;
	char *dir = env_64mib(&id), err[1024], want[64];
	char *const cases[][8] = {
		{"shm-chatsim", "-e", dir, "-n", "5", "--seed", "1", NULL},
		{"shm-chatsim", "--help", NULL},
		{"shm-chatsim", "--version", NULL},
		{"shm-dataset", "--connections", "10", NULL},
		{"shm-dataset", "--help", NULL},
		{"shm-dataset", "--version", NULL},
		{"shm-bench", "--help", NULL},
		{"shm-bench", "--version", NULL},
		{"shm-bench", "--list", NULL},
		{"shm-flusher", "--help", NULL},
		{"shm-flusher", "--version", NULL},
		{"shm-flusher", "--print-config", "-e", dir, "--pg", "dbname=x",
		 NULL},
	};

	if (access("/dev/full", W_OK) != 0)
		skip();
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		int rc = run_io(2, NULL, "/dev/full", err, sizeof err,
		                cases[i]);
		snprintf(want, sizeof want, "%s: write the output: No space "
		         "left on device\n", cases[i][0]);
		if (rc != 70 || !strstr(err, want))
			fail_msg("%s %s: exit %d, '%s'", cases[i][0],
			         cases[i][1], rc, err);
	}
	tu_rmdir(dir);
	free(dir);
}

/* A child that opens dir read-only and holds a read transaction until it
 * is killed; returned once the transaction is begun. */
static pid_t reader_holding(const char *dir)
{
	int p[2];
	char c;

	assert_int_equal(pipe(p), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		shm_options o;
		shm_env *env;
		shm_rtxn *t;
		close(p[0]);
		shm_options_init(&o);
		o.read_only = true;
		if (shm_env_open(dir, &o, &env) || shm_rtxn_begin(env, &t) ||
		    write(p[1], "x", 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	close(p[1]);
	tu_child_add(pid);
	assert_int_equal(read(p[0], &c, 1), 1);
	close(p[0]);
	return pid;
}

/* The rows of out (shmctl readers' lines, text or --json) of pid, and how
 * many of them have mark. */
static void rows_of(const char *out, pid_t pid, bool json, const char *mark,
                    int *rows, int *marked)
{
	char line[512];
	size_t len, m = strlen(mark);
	int got;

	*rows = *marked = 0;
	for (const char *l = out; *l; l += len + (l[len] == '\n')) {
		len = strcspn(l, "\n");
		snprintf(line, sizeof line, "%.*s", (int)len, l);
		if (sscanf(line, json ? "{\"pid\":%d," : "%d", &got) != 1 ||
		    got != pid)
			continue;
		++*rows;
		if (json ? strstr(line, mark) != NULL
		         : len >= m && !strcmp(line + len - m, mark))
			++*marked;
	}
}

/* out has rows of pid's, every one of them with mark. */
static void all_rows_marked(const char *out, pid_t pid, bool json,
                            const char *mark)
{
	int rows, marked;

	rows_of(out, pid, json, mark, &rows, &marked);
	assert_true(rows > 0);
	assert_int_equal(marked, rows);
}

/* shmctl readers says which slots are dead processes' (those
 * --clear-stale frees): a reader killed by SIGKILL while it held a read
 * transaction is "yes" (--json: "dead":true), a live one "no" (false).
 * Before, nothing told them apart. */
static void test_shmctl_readers_marks_dead_processes(void **state)
{
	char *dir = tu_tmpdir(), out[16384];
	char *text[] = {"shmctl", "-e", dir, "readers", NULL};
	char *json[] = {"shmctl", "-e", dir, "readers", "--json", NULL};
	char *clear[] = {"shmctl", "-e", dir, "readers", "--clear-stale", NULL};
	int rows, marked, st;

	shm_env_close(tu_open(dir, NULL));
	pid_t live = reader_holding(dir), dead = reader_holding(dir);
	assert_int_equal(kill(dead, SIGKILL), 0);
	assert_int_equal(waitpid(dead, &st, 0), dead);
	tu_child_del(dead);

	assert_int_equal(run(NULL, out, sizeof out, text), 0);
	assert_non_null(strstr(out, " txnid        age dead\n"));
	all_rows_marked(out, dead, false, " yes");
	all_rows_marked(out, live, false, " no");

	assert_int_equal(run(NULL, out, sizeof out, json), 0);
	all_rows_marked(out, dead, true, ",\"dead\":true}");
	all_rows_marked(out, live, true, ",\"dead\":false}");

	/* --clear-stale frees what was marked, and only that */
	assert_int_equal(run(NULL, out, sizeof out, clear), 0);
	rows_of(out, dead, false, " yes", &rows, &marked);
	assert_int_equal(rows, 0);
	all_rows_marked(out, live, false, " no");

	kill(live, SIGKILL);
	waitpid(live, &st, 0);
	tu_child_del(live);
	tu_rmdir(dir);
	free(dir);
}

static int kill_children(void **state)
{
	tu_children_stop(NULL);
	return 0;
}

int main(void)
{
	const char *s = getenv("SHM_BIN");
	char exe[PATH_MAX], probe[PATH_MAX + 16];
	ssize_t n;

	if (s && *s) {
		snprintf(bin_dir, sizeof bin_dir, "%s", s);
	} else if ((n = readlink("/proc/self/exe", exe, sizeof exe - 1)) > 0) {
		exe[n] = 0;
		snprintf(bin_dir, sizeof bin_dir, "%s/../bin", dirname(exe));
	}
	snprintf(probe, sizeof probe, "%s/shmctl", bin_dir);
	if (access(probe, X_OK) != 0) {
		fprintf(stderr, "test_tools: no shmctl in '%s' (set SHM_BIN)\n",
		        bin_dir);
		return 1;
	}
#define T(f) cmocka_unit_test_teardown(f, kill_children)
	const struct CMUnitTest tests[] = {
		T(test_shmctl_stat_shows_the_environments_map_size),
		T(test_shmctl_writes_keep_the_environments_map_size),
		T(test_shmctl_creates_at_libshms_default),
		T(test_chatsim_keeps_the_environments_map_size),
		T(test_chatsim_refuses_bad_arguments_naming_them),
		T(test_chatsim_says_a_bad_option_as_shmctl_does),
		T(test_chatsim_shows_bad_arguments_printably),
		T(test_dataset_shows_bad_arguments_and_postgres_text_printably),
		T(test_dataset_says_a_bad_option_as_chatsim_does),
		T(test_dataset_refuses_a_conninfo_libpq_would_refuse),
		T(test_bench_refuses_bad_arguments_naming_them),
		T(test_chatsim_summary_says_one_in_the_singular),
		T(test_chatsim_writes_replies_in_their_parents_room_and_thread),
		T(test_chatsim_gives_each_user_id_one_name),
		T(test_dataset_keeps_the_environments_map_size),
		T(test_shmctl_refuses_a_cut_data_file),
		T(test_shmctl_stat_prints_nothing_when_a_read_fails),
		T(test_shmctl_ls_shows_a_website_stored_indirect_as_direct),
		T(test_shmctl_verify_names_an_upper_case_uuid_id),
		T(test_dataset_refuses_nan_and_names_the_environment_once),
		T(test_dataset_says_where_it_loaded_nothing),
		T(test_dataset_refuses_bad_numbers_naming_them),
		T(test_dataset_bounds_connections_to_what_memory_holds),
		T(test_dataset_refuses_an_option_given_twice),
		T(test_tools_say_a_full_disk),
		T(test_every_tool_prints_its_version),
		T(test_every_tools_help_lists_help_and_version),
		T(test_every_tool_exits_2_on_a_usage_error),
		T(test_dataset_refuses_a_graph_it_cannot_load),
		T(test_dataset_help_says_how_connections_are_kept),
		T(test_shmctl_readers_marks_dead_processes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
