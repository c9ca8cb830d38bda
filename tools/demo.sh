#!/bin/sh
# tools/demo.sh - the main job, end to end (make demo): a throwaway Redis and
# PostgreSQL in a temp dir, the schema, shm-flusher, four chat writer
# processes on one shared L1, then what the tools show, and a check that L1,
# Redis and PostgreSQL agree. Stops everything it started.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top" || exit 1
bin=${SHM_BIN:-$top/build/bin} # make demo passes its BUILD's
WRITERS=${WRITERS:-4}
PER_WRITER=${PER_WRITER:-2500}

SHM_SERVERS_SH=tests/harness/servers.sh
. tests/harness/servers.sh
# a step's heading: bold on a terminal, plain text in a log or a pipe
step() {
	if [ -t 1 ]; then printf '\n\033[1m== %s\033[0m\n' "$*"
	else printf '\n== %s\n' "$*"; fi
}

echo "demo: throwaway Redis and PostgreSQL, shm-flusher mirroring one shared L1"
echo "demo: into them, $WRITERS writer processes, then what shmctl shows (about 5-10 s)"

step "starting redis-server and PostgreSQL in a temp dir"
shm_servers_start || exit 1
env_dir="$SHM_TEST_DIR/env"
redis_sock=${SHM_TEST_REDIS#unix://}
flusher_pid=""
cleanup() {
	[ -n "$flusher_pid" ] && kill "$flusher_pid" 2>/dev/null && wait "$flusher_pid" 2>/dev/null
	shm_servers_stop
}
trap 'cleanup' EXIT
trap 'cleanup; exit 130' INT TERM

step "shmctl init: the shared L1 environment in $env_dir"
"$bin/shmctl" -e "$env_dir" init || exit 1

step "shm-flusher: tailing $env_dir into Redis and PostgreSQL"
"$bin/shm-flusher" -e "$env_dir" --redis "$SHM_TEST_REDIS" --pg "$SHM_TEST_PG" \
	--log-file "$SHM_TEST_DIR/flusher.log" &
flusher_pid=$!
sleep 0.3
kill -0 "$flusher_pid" 2>/dev/null || { cat "$SHM_TEST_DIR/flusher.log"; exit 1; }

step "$WRITERS writer processes chatting in one shared L1 (libshm)"
start=$(date +%s.%N)
pids=""
for w in $(seq 1 "$WRITERS"); do
	"$bin/shm-chatsim" -e "$env_dir" -w "$w" -n "$PER_WRITER" --seed "$w" &
	pids="$pids $!"
done
fail=0
for p in $pids; do wait "$p" || fail=1; done
[ "$fail" -eq 0 ] || { echo "demo: a writer failed"; exit 1; }
end=$(date +%s.%N)
echo "writers done in $(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.2f", e - s }') s"

step "waiting for the flusher to catch up"
i=0
while [ $i -lt 300 ]; do
	lag=$("$bin/shmctl" -e "$env_dir" stat | awk '$1 == "flusher_lag" {print $2}')
	[ "$lag" = "0" ] && break
	sleep 0.1; i=$((i + 1))
done
echo "flusher lag: $lag records"
# the flusher publishes its counters once a second: wait for a round
# after the catch-up, so they are not shown from before it
beat() { "$bin/shmctl" -e "$env_dir" stat | awk '$1 == "flusher.heartbeat" {print $2}'; }
b0=$(beat); i=0
while [ "$(beat)" = "$b0" ] && [ $i -lt 30 ]; do sleep 0.1; i=$((i + 1)); done

step "shmctl stat (selected lines: name, value, what it means)"
"$bin/shmctl" -e "$env_dir" stat | grep -E '^(messages|rooms|log_records|next_seq|flushed|flusher_lag|dead_letters|map_used|puts|edits|deletes|reacts|compression_ratio|put_latency\.p(50|99)_ns|sink\.(redis|pg)\.applied|flusher\.(redis|pg)\.(batches|rows|retries|errors)) '

step "shmctl room room-0 --limit 3 (newest first)"
"$bin/shmctl" -e "$env_dir" room room-0 --limit 3

problems=""
problem() { problems="$problems; $*"; }

step "shmctl verify"
"$bin/shmctl" -e "$env_dir" verify || problem "shmctl verify failed"

step "L1 vs PostgreSQL vs Redis"
l1=$("$bin/shmctl" -e "$env_dir" stat | awk '$1 == "messages" {print $2}')
pg=$(shm_psql -tAc "SELECT count(*) FROM messages")
pg_deleted=$(shm_psql -tAc "SELECT count(*) FROM messages WHERE message_type = 'Delete'")
pg_edited=$(shm_psql -tAc "SELECT count(*) FROM messages WHERE (metadata->>'edited')::boolean")
rd=$(redis-cli -s "$redis_sock" --scan --pattern 'msg:*' | wc -l)
deletes=$("$bin/shmctl" -e "$env_dir" stat | awk '$1 == "deletes" {print $2}')
edits=$("$bin/shmctl" -e "$env_dir" stat | awk '$1 == "edits" {print $2}')
# N, the writers' count of WHAT: the messages N of them hit (fewer when
# some hit a message twice)
hit() {
	if [ "$1" = "$2" ]; then echo "$1 (the writers' $2 $3)"
	else echo "$1 (the writers' $2 $3: some hit a message twice)"; fi
}
printf '%-36s %s\n' "messages in L1 (shmctl stat):" "$l1" \
	"rows in PostgreSQL messages:" "$pg" \
	"msg:* keys in Redis:" "$rd" \
	"soft-deleted messages in PostgreSQL:" "$(hit "$pg_deleted" "$deletes" deletes)" \
	"edited messages in PostgreSQL:" "$(hit "$pg_edited" "$edits" edits)"
one=$("$bin/shmctl" -e "$env_dir" room room-1 --limit 1 | sed -n 's/.*"id":"\([0-9a-f-]*\)".*/\1/p' | head -n 1)
if [ -n "$one" ]; then
	echo "one message in L1 (shmctl get $one):"
	"$bin/shmctl" -e "$env_dir" get "$one"
	echo "the same message in Redis (GET msg:$one):"
	redis-cli -s "$redis_sock" --raw GET "msg:$one"
fi

step "statics: a page embeds a block that shows a person; saving the person busts the page"
site=0b8e7c52-1c3d-4e5f-8a9b-0c1d2e3f4a5b
page=Communication::Website::Page/team
ctl() { "$bin/shmctl" -e "$env_dir" "$@"; }
ctl deps set "$site" "$page" --direct Communication::Block/b1
ctl deps set "$site" Communication::Block/b1 University::Person/ada
echo "<h1>Team</h1><p>Ada</p>" | ctl static put "$site" "$page" - >/dev/null
echo "static of $page, SHA-1 (git blob): $(ctl static get "$site" "$page" --sha-only)"
echo "references of University::Person/ada: $(ctl deps show "$site" University::Person/ada --referrers | paste -sd ' ')"
wait_flushed() {
	i=0
	while [ $i -lt 100 ]; do
		[ "$(ctl stat | awk '$1 == "flusher_lag" {print $2}')" = "0" ] && return
		sleep 0.05; i=$((i + 1))
	done
}
wait_flushed
echo "Redis: $(redis-cli -s "$redis_sock" --scan --pattern "$site-*" | sort | paste -sd ' ')"
ctl touch "$site" University::Person/ada
wait_flushed
if ctl static get "$site" "$page" >/dev/null 2>&1; then
	problem "the page's static is still cached after the touch"
else
	echo "after touch University::Person/ada: the page's static is busted in L1"
fi
left=$(redis-cli -s "$redis_sock" --scan --pattern "$site-*" | wc -l)
echo "Redis: $left keys left for the site"
[ "$left" -eq 0 ] || problem "$left Redis keys of the busted static left"

step "stopping shm-flusher (SIGTERM: final flush, exit 0)"
kill -TERM "$flusher_pid"
wait "$flusher_pid"
rc=$?
flusher_pid=""
echo "shm-flusher exited with $rc; its last log lines:"
tail -n 3 "$SHM_TEST_DIR/flusher.log"

[ "$l1" = "$pg" ] && [ "$pg" = "$rd" ] ||
	problem "L1 $l1, PostgreSQL $pg, Redis $rd messages"
[ "$rc" -eq 0 ] || problem "shm-flusher exited with $rc"
# where to go from here, with this build's paths
next_steps() {
	b=${bin#"$top"/}
	echo
	echo "To go further:"
	echo "  the README's \"Try it by hand\": these steps one command at a time"
	if [ -n "${SHM_KEEP_DIR:-}" ]; then
		echo "  the environment is kept: $b/shmctl -e $env_dir stat (or ls, log, dump);"
		echo "    the servers are stopped; rm -rf $SHM_TEST_DIR when done"
	else
		echo "  SHM_KEEP_DIR=1 make demo    keeps the environment for shmctl -e DIR stat, ls, log, dump"
	fi
	echo "  WRITERS=8 PER_WRITER=5000 make demo    more writer processes, more messages"
	echo "  $b/shmctl --help, man man/shmctl.1, $b/shm-flusher --help"
	echo "  make test    every test"
}
if [ -z "$problems" ]; then
	printf '\ndemo: OK - %s messages in L1, PostgreSQL and Redis agree\n' "$l1"
	next_steps
	exit 0
fi
printf '\ndemo: FAILED%s\n' "$problems" | sed 's/FAILED; /FAILED - /'
exit 1
