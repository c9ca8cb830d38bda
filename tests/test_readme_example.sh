#!/bin/sh
# tests/test_readme_example.sh - the README's C API example ("The C API in a
# page") is a whole program: this extracts that code block, compiles it with
# the README's command line against the build under test (SHM_BIN, as make
# test passes it) and runs it twice on a fresh environment; then it runs
# the README's by-hand session ("Try it by hand") with servers of its own.
# Ends with "N passed, M failed"; exits non-zero if anything failed.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${SHM_BIN:-$top/build/bin}/.." 2>/dev/null && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/readme-example.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
. "$top/tests/harness/check.sh"

sh "$top/tests/harness/readme_example.sh" >"$tmp/app.c"
grep -q 'int main' "$tmp/app.c"
check "the README has the example as a whole program" $?
# a library built with sanitizers (make SANITIZER=...) needs them at link
san=""
for s in address undefined thread; do
	case $s in address) sym=__asan_ ;; undefined) sym=__ubsan_ ;; thread) sym=__tsan_ ;; esac
	nm "$build/lib/libshm.a" 2>/dev/null | grep -q "$sym" && san="$san,$s"
done
# the README's command line, as written, run where its relative paths
# (app.c, libshm, build/lib) are those of the build under test
cmd=$(tr '\n' ' ' <"$top/README.md" |
	sed -n 's/.*build it statically like the tools: `\([^`]*\)`.*/\1/p')
case $cmd in "cc -o app app.c "*) ;; *) cmd="" ;; esac
[ -n "$cmd" ]
check "the README says how to build it from a clone (cc -o app app.c ...)" $?
mkdir "$tmp/build" && ln -s "$top/libshm" "$tmp/libshm" &&
	ln -s "$build/lib" "$tmp/build/lib" &&
	(cd "$tmp" && eval "$cmd -Wall -Wextra -Werror ${san:+-fsanitize=${san#,}}") \
	2>"$tmp/cc.err"
check "it compiles with the README's command line" $?
[ -s "$tmp/cc.err" ] && sed 's/^/  cc| /' "$tmp/cc.err"
"$tmp/app" "$tmp/env" >"$tmp/out1" 2>&1 && "$tmp/app" "$tmp/env" >"$tmp/out2" 2>&1
check "it runs, twice on one environment" $?
printf 'ada: bonsoir\nroom general: 1 message(s)\nedits: 1\n' | cmp -s - "$tmp/out1"
check "it prints what the README says (first run)" $?
grep -qx 'room general: 2 message(s)' "$tmp/out2"
check "the second run finds both messages in the room" $?

# its error idiom on a write that fails: an L1 of one entry, unflushed
cat >"$tmp/fill.c" <<'EOF'
#include <shm.h>
int main(int argc, char **argv)
{
	shm_env *env;
	shm_options o;
	shm_msg m = {.room_id = "r", .username = "u", .content = "x",
	             .content_len = 1, .type = SHM_MSG_TEXT};
	int rc;

	shm_options_init(&o);
	o.l1_max_entries = 1;
	if (argc < 2 || shm_env_open(argv[1], &o, &env))
		return 1;
	rc = shm_msg_put(env, &m);
	shm_env_close(env);
	return rc != 0;
}
EOF
cc ${san:+-fsanitize=${san#,}} -o "$tmp/fill" "$tmp/fill.c" -I"$top/libshm" \
	"$build/lib/libshm.a" -llmdb -llz4 -lxxhash -ljansson -lcrypto -lhiredis \
	-lpq -pthread && "$tmp/fill" "$tmp/full"
check "an environment whose L1 is full" $?
# errx exits without closing the environment: no leak report for that
ASAN_OPTIONS=detect_leaks=0 "$tmp/app" "$tmp/full" >"$tmp/out3" 2>&1
rc=$?
[ "$rc" -eq 1 ] && grep -q 'L1 holds 1 entries' "$tmp/out3" &&
	[ "$(grep -o 'L1 or map full' "$tmp/out3" | wc -l)" -eq 1 ]
check "there, its put fails saying why and the code's description once" $?
sed 's/^/  | /' "$tmp/out3"

# ------------------------------------------------------ "Try it by hand"
# The README's by-hand session, as written, with this build's binaries for
# build/bin (its "make" left out: the build under test is made), a temp
# path for /tmp/shm-try, and servers of its own (not the run's: it starts
# and stops them itself).
awk '/^## Try it by hand/ { on = 1 } on && /^```sh$/ { code = 1; next }
     code && /^```$/ { exit } code { print }' "$top/README.md" |
	sed -e '/^make /d' -e "s|build/bin/|$build/bin/|g" \
	    -e "s|/tmp/shm-try|$tmp/try|g" >"$tmp/by-hand.sh"
grep -q '^shm_servers_start' "$tmp/by-hand.sh" &&
	grep -q "^$build/bin/shm-flusher " "$tmp/by-hand.sh"
check "the README has the by-hand session" $?
(cd "$top" && env -u SHM_TEST_DIR -u SHM_TEST_REDIS -u SHM_TEST_PG \
	-u SHM_TEST_PG_TCP -u SHM_ENV sh -e "$tmp/by-hand.sh") >"$tmp/hand.out" 2>&1
check "it runs as written" $?
grep -q '^writer 1: 200 messages' "$tmp/hand.out"
check "the writer says what it did" $?
[ "$(grep -c '^flusher_lag  *0 ' "$tmp/hand.out")" -eq 1 ] &&
	grep -q '^log_records  *0 ' "$tmp/hand.out"
check "stat shows the log before the flusher and empty after --once" $?
[ "$(grep -xE '200|300' "$tmp/hand.out" | paste -sd ' ')" = "200 300" ]
check "PostgreSQL has the 200 messages, then the 300" $?
grep -qx 'shm-flusher exited with 0' "$tmp/hand.out"
check "the daemon exits 0 on SIGTERM" $?
servers=$(sed -n 's|^servers: redis on unix://\(.*\)/redis.sock$|\1|p' "$tmp/hand.out")
[ -n "$servers" ] && [ ! -e "$servers" ] && [ ! -e "$tmp/try" ]
check "and it leaves nothing behind (servers stopped, their dir gone)" $?
[ "$failed" -eq 0 ] || sed 's/^/  | /' "$tmp/hand.out" | tail -n 40

# Typed by hand, the session runs in an interactive shell: a Ctrl-C there
# (a command line given up) must not end that shell nor stop its servers,
# and leaving the shell still stops them. bash, as it reads a script on
# stdin line by line (dash reads ahead and drops what it read on SIGINT).
printf '%s\n' '. tests/harness/servers.sh' 'shm_servers_dir' 'kill -INT $$' \
	'echo "still here: $SHM_TEST_DIR"' >"$tmp/ctrl-c.sh"
(cd "$top" && env -u SHM_TEST_DIR bash --norc --noprofile -i <"$tmp/ctrl-c.sh") \
	>"$tmp/ctrl-c.out" 2>/dev/null
left=$(sed -n 's/^still here: //p' "$tmp/ctrl-c.out")
[ -n "$left" ]
check "a Ctrl-C in the interactive shell that sourced servers.sh leaves it running" $?
[ -n "$left" ] && [ ! -e "$left" ]
check "and the servers' dir goes when that shell exits" $?
check_summary
