#!/bin/sh
# tests/test_readme_example.sh - the README's C API example ("The C API in a
# page") is a whole program: this extracts that code block, compiles it with
# the README's command line against the build under test (SHM_BIN, as make
# test passes it) and runs it twice on a fresh environment.
# Ends with "N passed, M failed"; exits non-zero if anything failed.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${SHM_BIN:-$top/build/bin}/.." 2>/dev/null && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/readme-example.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
passed=0
failed=0
check() { # NAME: the last command's status
	if [ "$2" -eq 0 ]; then passed=$((passed + 1)); echo "ok - $1"
	else failed=$((failed + 1)); echo "FAIL - $1"; fi
}

sh "$top/tests/harness/readme_example.sh" >"$tmp/app.c"
grep -q 'int main' "$tmp/app.c"
check "the README has the example as a whole program" $?
# a library built with sanitizers (make SANITIZER=...) needs them at link
san=""
for s in address undefined thread; do
	case $s in address) sym=__asan_ ;; undefined) sym=__ubsan_ ;; thread) sym=__tsan_ ;; esac
	nm "$build/lib/libshm.a" 2>/dev/null | grep -q "$sym" && san="$san,$s"
done
cc -Wall -Wextra -Werror ${san:+-fsanitize=${san#,}} -o "$tmp/app" "$tmp/app.c" \
	-I"$top/libshm" "$build/lib/libshm.a" -llmdb -llz4 -lxxhash -ljansson \
	-lcrypto -lhiredis -lpq -pthread 2>"$tmp/cc.err"
check "it compiles with the README's command line" $?
[ -s "$tmp/cc.err" ] && sed 's/^/  cc| /' "$tmp/cc.err"
"$tmp/app" "$tmp/env" >"$tmp/out1" 2>&1 && "$tmp/app" "$tmp/env" >"$tmp/out2" 2>&1
check "it runs, twice on one environment" $?
printf 'ada: bonsoir\nroom general: 1 message(s)\nedits: 1\n' | cmp -s - "$tmp/out1"
check "it prints what the README says (first run)" $?
grep -qx 'room general: 2 message(s)' "$tmp/out2"
check "the second run finds both messages in the room" $?
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
