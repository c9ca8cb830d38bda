#!/bin/sh
# tests/test_demo.sh - the README's first command, make demo (tools/demo.sh),
# with fewer messages, against the build under test (SHM_BIN, as make test
# passes it) and servers of its own: it passes its own checks, and its
# output, read from a file as in a CI log, is plain text.
# Ends with "N passed, M failed"; exits non-zero if anything failed.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
bin=$(cd "${SHM_BIN:-$top/build/bin}" 2>/dev/null && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/demo-test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
. "$top/tests/harness/check.sh"

env -u SHM_TEST_DIR -u SHM_TEST_REDIS -u SHM_TEST_PG -u SHM_TEST_PG_TCP \
	-u SHM_KEEP_DIR SHM_BIN="$bin" WRITERS=2 PER_WRITER=300 \
	sh "$top/tools/demo.sh" >"$tmp/out" 2>&1
check "the demo exits 0" $?
grep -qx 'demo: OK - 600 messages in L1, PostgreSQL and Redis agree' "$tmp/out"
check "L1, PostgreSQL and Redis hold the writers' 600 messages" $?
grep -q '^shm-flusher exited with 0;' "$tmp/out"
check "the flusher exits 0 on SIGTERM" $?
esc=$(printf '\033')
! grep -q "$esc" "$tmp/out"
check "its output to a file has no terminal escapes" $?
grep -qx '== shmctl verify' "$tmp/out"
check "its steps are headed '== STEP'" $?
servers=$(sed -n 's|^servers: redis on unix://\(.*\)/redis.sock$|\1|p' "$tmp/out")
[ -n "$servers" ] && [ ! -e "$servers" ]
check "it leaves nothing behind (servers stopped, their dir gone)" $?
[ "$failed" -eq 0 ] || sed 's/^/  | /' "$tmp/out" | tail -n 40
check_summary
