#!/bin/sh
# tests/run_integration.sh - runs the flusher's integration tests (or the
# binaries given) against a throwaway redis-server and PostgreSQL started by
# tests/harness/servers.sh, stopped on exit. tests/run.sh does the same for
# every test; this is the short path while working on the flusher.
#   sh tests/run_integration.sh [BUILD_DIR | TEST_BINARY...]
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top" || exit 70
SHM_TOP=$top
SHM_SERVERS_SH=tests/harness/servers.sh
. tests/harness/servers.sh
build=build
if [ $# -ge 1 ] && [ -d "$1" ]; then
	build=$1
	shift
fi
[ $# -eq 0 ] && set -- "$build/tests/test_flusher" "$build/tests/test_flusher_faults"
shm_servers_start && shm_pg_check_commits_kept ||
	{ echo "run_integration.sh: servers did not start" >&2; exit 1; }
export SHM_TEST_REDIS SHM_TEST_PG SHM_TOP
rc=0
for t in "$@"; do
	[ -x "$t" ] || { echo "run_integration.sh: $t: not built" >&2; rc=1; continue; }
	echo "=== $(basename "$t")"
	"$t" || rc=1
done
exit $rc
