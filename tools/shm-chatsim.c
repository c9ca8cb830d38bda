/*
 * tools/shm-chatsim.c - a chat application in miniature, for the demo and
 * as an example of the libshm API: posts messages in rooms, replies in
 * threads, edits, reacts and deletes, like users of a chat server would.
 *
 *   shm-chatsim [-e DIR] [-n MESSAGES] [-w WRITER] [-r ROOMS] [--seed N]
 *
 * Prints one summary line: how many of each operation it made (--help;
 * --version prints "shm-chatsim VERSION", SHM_VERSION).
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "shm.h"
#include "close_stdout.h"
#include "text.h" /* arguments shown printably */

static const char *const words[] = {
	"bonjour", "le", "déploiement", "est", "prêt", "on", "relance",
	"la", "synchro", "Git", "demain", "merci", "👍", "pour", "ce",
	"correctif", "du", "cache", "statique", "ça", "marche",
};
static const char *const emojis[] = {"👍", "🎉", "❤️", "😂", "👀"};
static const char *const names[] = {"alice", "bob", "chloé", "dmitri"};

static void sentence(char *out, size_t cap, unsigned *seed)
{
	size_t n = 0;
	int len = 3 + rand_r(seed) % 12;
	out[0] = 0;
	for (int i = 0; i < len && n + 32 < cap; i++)
		n += (size_t)snprintf(out + n, cap - n, "%s%s", i ? " " : "",
		                      words[rand_r(seed) % (sizeof words / sizeof *words)]);
}

static const char usage[] =
	"usage: shm-chatsim [-e DIR] [-n MESSAGES] [-w WRITER] [-r ROOMS] "
	"[--seed N]\n"
	"Writes a chat into the shm environment DIR (default: $SHM_ENV; created\n"
	"if missing), as one user process of a chat server would: messages in\n"
	"rooms, up to a fifth of them replies in the room and thread of a\n"
	"message not deleted, among edits, reactions and soft deletes of\n"
	"earlier ones.\n\n"
	"  -e DIR        environment directory\n"
	"  -n MESSAGES   messages to post (default 1000)\n"
	"  -w WRITER     this writer's number, 0..2147483: user ids\n"
	"                WRITER*1000+0..49, user id WRITER*1000+K named\n"
	"                alice/bob/chloé/dmitri (K mod 4) followed by K\n"
	"                (default 0)\n"
	"  -r ROOMS      rooms room-0 .. room-(ROOMS-1) (default 4)\n"
	"  --seed N      random seed (default: time and pid)\n"
	"  -h, --help    this help\n"
	"  -V, --version print \"shm-chatsim VERSION\" and exit\n\n"
	"Prints one summary line of what it did. Exit status: 0 ok, 1 a libshm\n"
	"call failed (the message says which), 2 usage error (an option given\n"
	"twice included), 70 output that could not all be written (a full\n"
	"disk).\n";

static int fail(const char *what)
{
	fprintf(stderr, "shm-chatsim: %s: %s\n", what, shm_errmsg());
	return 1;
}

/* What was wrong with the command line, as shmctl says it: status 2. */
__attribute__((format(printf, 1, 2))) static int usage_err(const char *fmt,
                                                          ...)
{
	va_list ap;

	fputs("shm-chatsim: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\n(see shm-chatsim --help)\n", stderr);
	return 2;
}

/* n and the noun for it, singular for 1. */
static const char *count_of(char *buf, size_t cap, unsigned long n,
                            const char *one, const char *many)
{
	snprintf(buf, cap, "%lu %s", n, n == 1 ? one : many);
	return buf;
}

/* An edit, reaction or delete that a chat meets too: the message was
 * deleted, or evicted from L1 once flushed. Anything else ends the run. */
static bool gone(int rc)
{
	return rc == SHM_EDELETED || rc == SHM_ENOTFOUND;
}

/* The decimal integer s in lo..hi into *v, digits only: none of these
 * options is negative, and strtoll alone takes spaces, '+' and '-' (2, and
 * said, else). */
static int arg_int(const char *opt, const char *s, long long lo,
                   long long hi, long long *v)
{
	char *end, shown[SHM__SHOWN_MAX];

	errno = 0;
	*v = strtoll(s, &end, 10);
	if (*s < '0' || *s > '9' || *end || errno || *v < lo || *v > hi)
		return usage_err("%s '%s': must be an integer in %lld..%lld",
		                 opt, shm__shown_str(s, shown), lo, hi);
	return 0;
}

static const struct option longopts[] = {
	{"seed", required_argument, NULL, 's'},
	{"help", no_argument, NULL, 'h'},
	{"version", no_argument, NULL, 'V'}, {0, 0, 0, 0}};

/* The option getopt_long refused (c '?': unknown, or a value given to a
 * flag; ':' its value missing), by its name as given: glibc's own message
 * named the binary by its path, and the usage followed it whole. optopt
 * is a long option's val (0 if none matched). */
static int bad_option(int c, char **argv)
{
	const struct option *o = longopts;
	char opt = (char)optopt, shown[SHM__SHOWN_MAX];

	if (!optopt) /* getopt went past it */
		return usage_err("unknown option '%s'",
		                 shm__shown_str(argv[optind - 1], shown));
	while (o->name && o->val != optopt)
		o++;
	if (c == ':' && o->name)
		return usage_err("option '--%s' needs a value", o->name);
	if (c == ':')
		return usage_err("option '-%c' needs a value", optopt);
	if (o->name && o->has_arg == no_argument) /* --help=x */
		return usage_err("option '--%s' takes no value", o->name);
	return usage_err("unknown option '-%s'", shm__shown(&opt, 1, shown));
}

static int run(int argc, char **argv)
{
	const char *dir = getenv("SHM_ENV");
	int n = 1000, writer = 0, rooms = 4, c;
	unsigned char seen[256] = {0}; /* options given, by getopt's code */
	unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
	long long v;
	unsigned long puts = 0, replies = 0, edits = 0, reacts = 0, deletes = 0;
	char w[5][48], shown[SHM__SHOWN_MAX];
	shm_uuid *ids;
	shm_options o;
	shm_env *env;

	opterr = 0; /* said by bad_option */
	while ((c = getopt_long(argc, argv, ":e:n:w:r:hV", longopts,
	                        NULL)) != -1) {
		if (c == '?' || c == ':')
			return bad_option(c, argv);
		/* which of two values was meant is not for us to guess */
		if (c != 'h' && seen[(unsigned char)c]++) {
			if (c == 's')
				return usage_err("option '--seed' given twice");
			return usage_err("option '-%c' given twice", c);
		}
		switch (c) {
		case 'h': fputs(usage, stdout); return 0;
		case 'V': printf("shm-chatsim %s\n", SHM_VERSION); return 0;
		case 'e': dir = optarg; break;
		case 'n':
			if (arg_int("-n", optarg, 1, INT_MAX, &v))
				return 2;
			n = (int)v;
			break;
		/* user ids writer * 1000 + 0..49 are int32 */
		case 'w':
			if (arg_int("-w", optarg, 0, (INT32_MAX - 49) / 1000, &v))
				return 2;
			writer = (int)v;
			break;
		case 'r':
			if (arg_int("-r", optarg, 1, INT_MAX, &v))
				return 2;
			rooms = (int)v;
			break;
		case 's':
			if (arg_int("--seed", optarg, 0, UINT_MAX, &v))
				return 2;
			seed = (unsigned)v;
			break;
		}
	}
	if (optind < argc)
		return usage_err("unexpected argument '%s'",
		                 shm__shown_str(argv[optind], shown));
	if (!dir)
		return usage_err("no environment: give -e DIR or set SHM_ENV");
	/* shm_options_init's map size 0: the environment's own (libshm's
	 * default in a new one); any other size would be stored in it at the
	 * first put if larger */
	shm_options_init(&o);
	if (shm_env_open(dir, &o, &env))
		return fail("open"); /* the message names dir */
	if (!(ids = calloc((size_t)n, sizeof *ids))) {
		fprintf(stderr, "shm-chatsim: -n %d: out of memory\n", n);
		return 1;
	}
	for (int i = 0; i < n; i++) {
		char room[32], text[512], user[32];
		int roll = rand_r(&seed) % 100;
		shm_msg m = {0};

		snprintf(room, sizeof room, "room-%d", rand_r(&seed) % rooms);
		sentence(text, sizeof text, &seed);
		m.room_id = room;
		int who = rand_r(&seed) % 50;
		/* one name per user id, as a chat server's users have */
		snprintf(user, sizeof user, "%s%d", names[who % 4], who);
		m.user_id = writer * 1000 + who;
		m.username = user;
		m.content = text;
		m.content_len = (uint32_t)strlen(text);
		m.type = SHM_MSG_TEXT;
		if (i > 0 && roll < 20) {
			/* a reply to an earlier message, in its room and thread
			 * (the parent's thread, or the parent itself when it is a
			 * root); one gone or deleted gets none (shm_msg_put) */
			shm_msg *parent;
			shm_uuid pid = ids[rand_r(&seed) % i];
			int rc = shm_msg_get(env, &pid, &parent);
			if (rc && rc != SHM_ENOTFOUND)
				return fail("get");
			if (rc == 0 && parent->type != SHM_MSG_DELETE) {
				m.has_parent = true;
				m.parent_id = pid;
				m.has_thread = parent->has_thread || !parent->has_parent;
				m.thread_id = parent->has_thread ? parent->thread_id
				                                 : parent->id;
				snprintf(room, sizeof room, "%s", parent->room_id);
				replies++;
			}
			if (rc == 0)
				shm_msg_free(parent);
		}
		if (shm_msg_put(env, &m))
			return fail("put");
		ids[i] = m.id;
		puts++;
		if (i > 0 && roll >= 20 && roll < 30) {
			sentence(text, sizeof text, &seed);
			strncat(text, " (modifié)", sizeof text - strlen(text) - 1);
			int rc = shm_msg_edit(env, &ids[rand_r(&seed) % i], text,
			                      strlen(text));
			if (rc == 0)
				edits++;
			else if (!gone(rc))
				return fail("edit");
		} else if (i > 0 && roll >= 30 && roll < 50) {
			int rc = shm_msg_react(env, &ids[rand_r(&seed) % i],
			                       m.user_id, emojis[rand_r(&seed) % 5],
			                       true);
			if (rc == 0)
				reacts++;
			else if (!gone(rc))
				return fail("react");
		} else if (i > 0 && roll >= 50 && roll < 53) {
			int rc = shm_msg_delete(env, &ids[rand_r(&seed) % i]);
			if (rc == 0)
				deletes++;
			else if (!gone(rc))
				return fail("delete");
		}
	}
	printf("writer %d: %s (%s), %s, %s, %s\n", writer,
	       count_of(w[0], sizeof w[0], puts, "message", "messages"),
	       count_of(w[1], sizeof w[1], replies, "reply", "replies"),
	       count_of(w[2], sizeof w[2], edits, "edit", "edits"),
	       count_of(w[3], sizeof w[3], reacts, "reaction", "reactions"),
	       count_of(w[4], sizeof w[4], deletes, "delete", "deletes"));
	free(ids);
	shm_env_close(env);
	return 0;
}

int main(int argc, char **argv)
{
	return tool_close_stdout("shm-chatsim", run(argc, argv));
}
