# tests/harness/check.sh - the shell tests' tally, sourced: check NAME
# STATUS counts one check (0 passes) and says "ok - NAME" or "FAIL - NAME";
# check_summary prints the "N passed, M failed" line tests/run.sh reads
# and returns non-zero if anything failed.
passed=0
failed=0
check() {
	if [ "$2" -eq 0 ]; then passed=$((passed + 1)); echo "ok - $1"
	else failed=$((failed + 1)); echo "FAIL - $1"; fi
}
check_summary() {
	echo "$passed passed, $failed failed"
	[ "$failed" -eq 0 ]
}
