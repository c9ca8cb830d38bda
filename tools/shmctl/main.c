/*
 * tools/shmctl/main.c - inspect and operate an shm environment from the
 * shell: the usage text, the options before COMMAND, the dispatch.
 *
 * Like mdb_stat and varnishstat/varnishlog: the environment is opened
 * read-only unless the command writes; output is for humans by default and
 * JSON (one object per line) with --json; exit codes are part of the
 * interface (see usage_text). Every subcommand is one cmd_* function that
 * returns an exit code, in its group's file (shmctl.h lists them); errors
 * go to stderr as "shmctl: <what failed>".
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../close_stdout.h"
#include "internal.h"
#include "shm.h"
#include "shmctl.h"

const char *prog = "shmctl";
const char *env_dir;

static const char usage_text[] =
"usage: shmctl [-e DIR] COMMAND [ARGS]\n"
"\n"
"Inspects and operates the shm environment in DIR (default: $SHM_ENV).\n"
"Opens it read-only unless the command writes (marked *).\n"
"\n"
"Creating the environment\n"
"  init                             * creates the environment if missing (the\n"
"                                     other commands, import aside, need one)\n"
"Messages\n"
"  import [FILE|-]                  * messages as JSON lines, as get, room\n"
"                                     and dump --kind msg write them; all\n"
"                                     or nothing: bad lines are reported as\n"
"                                     'LINE: reason' and nothing is written;\n"
"                                     one transaction (more than L1's limits\n"
"                                     hold fails with 65: split the file)\n"
"  get UUID                           the message as one JSON object\n"
"  room ROOM [--before RFC3339 [--before-id UUID]] [--limit N]\n"
"                                     a room page, JSON lines, newest first\n"
"                                     (limit 1..10000, default 50), older\n"
"                                     than --before; with --before-id, than\n"
"                                     that message (created_at, then id);\n"
"                                     a full page ends with 'shmctl: next\n"
"                                     page: --before T --before-id ID' on\n"
"                                     stderr, the next page's options (ties\n"
"                                     on T included)\n"
"  edit UUID CONTENT                * new content (edited, edit_count + 1)\n"
"  delete UUID                      * soft delete (type Delete)\n"
"  react UUID USER_ID EMOJI [--remove]\n"
"                                   * add (or remove) a reaction\n"
"Statics and the object graph (OBJECT is TYPE/ID, WEBSITE a UUID)\n"
"  static get WEBSITE OBJECT [--sha1|--sha256] [--sha-only]\n"
"                                     content to stdout (never generates);\n"
"                                     --sha-only prints the SHA (SHA-1 git\n"
"                                     blob by default) instead\n"
"  static put WEBSITE OBJECT [FILE|-] [--sha1|--sha256]\n"
"                                   * stores content, prints its SHA\n"
"  deps set WEBSITE OBJECT [--direct] [DEP ...]\n"
"                                   * replaces OBJECT's direct dependencies\n"
"                                     (a Communication::Website/ID OBJECT\n"
"                                     is always direct: give --direct)\n"
"  deps show WEBSITE OBJECT [--recursive|--referrers]\n"
"                                     direct dependencies, the recursive\n"
"                                     walk, or the references (who embeds it)\n"
"  touch WEBSITE OBJECT             * save: bust it and its references, mark\n"
"  destroy WEBSITE OBJECT           * as touch, then drop its edges\n"
"  bust WEBSITE OBJECT              * bust its static alone\n"
"Inspection\n"
"  stat [--json]                      counters and state, like varnishstat -1\n"
"  ls [--kind msg|static|graph|mark] [--json]\n"
"                                     one line per entry (default: every kind)\n"
"  log [--from SEQ] [--follow] [--json] [--dead]\n"
"                                     one line per log record (seq, time, op,\n"
"                                     key, size); --follow tails it live;\n"
"                                     --dead lists the dead letters instead\n"
"  dead drop SEQ [SEQ ...]          * drops those dead letters (records a\n"
"                                     sink set aside), all or nothing: once\n"
"                                     their cause is fixed and their data\n"
"                                     written again (or unwanted)\n"
"  dump [--kind msg|static|all]       every entry as JSON lines (default all);\n"
"                                     'dump --kind msg | shmctl -e OTHER\n"
"                                     import' copies messages to another\n"
"                                     environment\n"
"  verify                             checks checksums (log records, content\n"
"                                     hashes, statics' SHAs), indexes, log vs\n"
"                                     data, dead letters, object ids (none in\n"
"                                     upper case, as an older libshm stored)\n"
"  upgrade                          * rewrites what an older libshm stored\n"
"                                     that libshm no longer reads (upper-case\n"
"                                     UUID ids, which verify names; websites\n"
"                                     stored indirect), in one transaction\n"
"  readers [--clear-stale] [--json]\n"
"                                     LMDB reader slots (pid, thread, txnid\n"
"                                     of the snapshot held, its age in\n"
"                                     transactions committed since, dead:\n"
"                                     yes for a dead process's slot, which\n"
"                                     --clear-stale frees)\n"
"\n"
"Options, before COMMAND: -e DIR (or --env DIR, -eDIR) the environment\n"
"directory; -h, --help; -V, --version. An option's value may also follow\n"
"an '=': --env=DIR, --limit=N.\n"
"\n"
"Exit status: 0 ok; 1 not found (a missing FILE too), or problems found\n"
"(verify, log); 2 usage error; 65 bad input data (malformed JSON, UUID,\n"
"object, timestamp, text; incompatible environment version, not an shm\n"
"environment, data file cut short); 70 internal or system error\n"
"(including: L1 full of unflushed work, or the map behind a reader's old\n"
"snapshot: see readers; LMDB errors; a FILE that cannot be read, such as a\n"
"directory; output that could not all be written).\n";

static const struct {
	const char *name;
	int (*fn)(int argc, char **argv);
} commands[] = {
	{"init", cmd_init},     {"import", cmd_import}, {"get", cmd_get},       {"room", cmd_room},
	{"edit", cmd_edit},     {"delete", cmd_delete}, {"react", cmd_react},
	{"stat", cmd_stat},     {"log", cmd_log},       {"dump", cmd_dump},
	{"verify", cmd_verify}, {"readers", cmd_readers}, {"dead", cmd_dead},
	{"upgrade", cmd_upgrade},
	{"static", cmd_static}, {"deps", cmd_deps},     {"touch", cmd_touch},
	{"destroy", cmd_destroy}, {"bust", cmd_bust},   {"ls", cmd_ls},
};

/* --help: the usage on stdout. A write that fails inside fputs (a text
 * longer than stdout's buffer) is said here, with its errno: the flush at
 * exit would find only the stream's error flag. */
static int help(void)
{
	errno = 0;
	if (fputs(usage_text, stdout) == EOF)
		return tool_write_failed(prog, errno);
	return EX_OK;
}

static int run(int argc, char **argv)
{
	int i = 1;
	bool env_given = false;
	char b[SHM__SHOWN_MAX];

	env_dir = getenv("SHM_ENV");
	while (i < argc && argv[i][0] == '-') {
		const char *a = argv[i];
		if (!strcmp(a, "-h") || !strcmp(a, "--help"))
			return help();
		if (!strcmp(a, "-V") || !strcmp(a, "--version")) {
			printf("shmctl %s\n", SHM_VERSION);
			return EX_OK;
		}
		if (strncmp(a, "-e", 2) && strcmp(a, "--env") &&
		    strncmp(a, "--env=", 6))
			return usage_err("unknown option '%s'",
			                 shm__shown_str(a, b));
		if (env_given)
			return usage_err("option '-e' (--env) given twice");
		env_given = true;
		if (a[1] == 'e' && a[2]) { /* -eDIR */
			env_dir = a + 2;
			i++;
			continue;
		}
		if (!strncmp(a, "--env=", 6)) {
			env_dir = a + 6;
			i++;
			continue;
		}
		if (i + 1 >= argc)
			return usage_err("%s needs a directory", a);
		env_dir = argv[i + 1];
		i += 2;
	}
	if (i >= argc) {
		fputs(usage_text, stderr);
		return EX_USAGE_;
	}
	if (!strcmp(argv[i], "help"))
		return help();
	for (size_t c = 0; c < sizeof commands / sizeof *commands; c++) {
		if (strcmp(commands[c].name, argv[i]) != 0)
			continue;
		for (int j = i + 1; j < argc && strcmp(argv[j], "--"); j++) {
			if (!strcmp(argv[j], "--help") || !strcmp(argv[j], "-h"))
				return help();
			/* the commands take no -e: said, rather than read as an
			 * argument ('stat [--json]') or as no -e at all */
			bool eq = !strncmp(argv[j], "--env=", 6);
			const char *f = eq ? "--env" : argv[j];
			if (eq || !strcmp(f, "-e") || !strcmp(f, "--env"))
				return usage_err("%s DIR goes before the command: "
				                 "shmctl %s DIR %s ...", f, f,
				                 argv[i]);
		}
		if (!env_dir || !*env_dir)
			return usage_err("no environment: give -e DIR or set "
			                 "SHM_ENV");
		return commands[c].fn(argc - i - 1, argv + i + 1);
	}
	return usage_err("unknown command '%s'", shm__shown_str(argv[i], b));
}

int main(int argc, char **argv)
{
	return tool_close_stdout(prog, run(argc, argv));
}
