#!/bin/sh
# tests/run.sh - runs every test: the cmocka binaries given as arguments and
# the tests/*.sh scripts, with a throwaway redis-server and PostgreSQL
# cluster (tests/harness/servers.sh) for the integration tests.
# Ends with one line: "N passed, M failed" (N, M counted in tests).
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top" || exit 70
SHM_SERVERS_SH=tests/harness/servers.sh
. tests/harness/servers.sh
if ! shm_servers_start || ! shm_pg_check_commits_kept; then
	echo "run.sh: could not start redis-server/PostgreSQL (see above)" >&2
	echo "0 passed, 1 failed"
	exit 1
fi
export SHM_TEST_REDIS SHM_TEST_PG SHM_TOP="$top"
# the binaries of the build under test (make passes its BUILD's, maybe
# relative: made absolute, as tests cd elsewhere)
bin=${SHM_BIN:-$top/build/bin}
bin=$(cd "$bin" && pwd) || exit 1
export PATH="$bin:$PATH" SHMCTL="${SHMCTL:-$bin/shmctl}"

passed=0
failed=0
failures=""
log=$(mktemp)
# A test that hangs fails after this many seconds (timeout signals the
# test's whole process group: its forked children too).
limit=${SHM_TEST_TIMEOUT:-600}
timed_out() {
	[ "$1" -eq 124 ] || [ "$1" -eq 137 ] || return 1
	echo "=== $2: TIMED OUT after $limit s (killed with its children)"
}
for t in "$@"; do
	name=$(basename "$t")
	echo "=== $name"
	timeout -k 10 "$limit" "$t" >"$log" 2>&1
	rc=$?
	cat "$log"
	timed_out "$rc" "$name"
	p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test(s)\./\1/p' "$log" | tail -n 1)
	f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test(s), listed below:/\1/p' "$log" | tail -n 1)
	p=${p:-0}
	f=${f:-0}
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		f=1 # crashed or failed before cmocka's summary
	fi
	passed=$((passed + p))
	failed=$((failed + f))
	[ "$f" -ne 0 ] && failures="$failures $name"
done
for s in tests/test_*.sh; do
	[ -f "$s" ] || continue
	name=$(basename "$s")
	echo "=== $name"
	timeout -k 10 "$limit" sh "$s" >"$log" 2>&1
	rc=$?
	cat "$log"
	timed_out "$rc" "$name"
	line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1)
	p=$(echo "$line" | sed -n 's/^\([0-9]*\) passed.*/\1/p')
	f=$(echo "$line" | sed -n 's/.*passed, \([0-9]*\) failed/\1/p')
	p=${p:-0}
	f=${f:-0}
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		f=1
	fi
	passed=$((passed + p))
	failed=$((failed + f))
	[ "$f" -ne 0 ] && failures="$failures $name"
done
rm -f "$log"
shm_servers_stop
[ -n "$failures" ] && echo "failing:$failures"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
