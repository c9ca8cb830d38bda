#!/bin/sh
# tests/test_soak.sh - a soak in half a minute: shm-flusher as a daemon with
# both sinks while shm-chatsim writers run, through Redis and PostgreSQL
# restarts, SIGHUPs after its log file was moved away, a SIGKILL and a
# SIGTERM. What a long run would show growing or lost shows here: the
# daemon's open files come back to as many as after its start once the
# servers are back (a leak per reconnect or per reopen would not), every
# message the writers wrote is in PostgreSQL once, as L1 holds it, Redis
# holds no other state of one and every message written after its last
# restart, the log ends trimmed, no dead letter. Servers of its own (it
# restarts them). Ends with "N passed, M failed".
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
bin=$(cd "${SHM_BIN:-$top/build/bin}" 2>/dev/null && pwd)
unset SHM_TEST_DIR SHM_TEST_REDIS SHM_TEST_PG SHM_TEST_PG_TCP SHM_TEST_PG_PORT \
	SHM_KEEP_DIR
SHM_SERVERS_SH=$top/tests/harness/servers.sh
. "$top/tests/harness/servers.sh"
. "$top/tests/harness/check.sh"

if ! shm_servers_start >/dev/null 2>&1; then
	echo "FAIL - redis-server and PostgreSQL start"
	echo "0 passed, 1 failed"
	exit 1
fi
tmp=$SHM_TEST_DIR
env=$tmp/env
fpid=""
finish() {
	touch "$tmp/stop"
	[ -n "$fpid" ] && kill -KILL "$fpid" 2>/dev/null
	wait
	shm_servers_stop
}
trap finish EXIT
trap 'finish; exit 130' INT TERM

# Redis values stay JSON (no LZ4 frame) so that SQL can read them back.
start_flusher() {
	"$bin/shm-flusher" -e "$env" --redis "$SHM_TEST_REDIS" \
		--pg "$SHM_TEST_PG" --log-file "$tmp/flusher.log" \
		--backoff-max-ms 400 --compress-threshold 100000000 \
		2>>"$tmp/flusher.err" &
	fpid=$!
}
stat_of() {
	"$bin/shmctl" -e "$env" stat | awk -v n="$1" '$1 == n { v = $2 } END { print v + 0 }'
}
fds() { ls "/proc/$fpid/fd" | wc -l; }
# Writer W: chatsim runs of 40 messages until $tmp/stop.
writer() {
	i=0
	while [ ! -e "$tmp/stop" ]; do
		i=$((i + 1))
		"$bin/shm-chatsim" -e "$env" -w "$1" -n 40 --seed "$1$i" \
			>>"$tmp/writers.out" 2>>"$tmp/writers.err" ||
			echo "writer $1, run $i: exit $?" >>"$tmp/writers.err"
		sleep 0.2
	done
}
# Up to 20 s for both sinks to have applied seq $1 and the invalidation
# subscriber to be back: the daemon's connections all open.
settle() {
	n=0
	while [ $n -lt 100 ]; do
		if [ "$(stat_of sink.pg.applied)" -ge "$1" ] &&
		   [ "$(stat_of sink.redis.applied)" -ge "$1" ] &&
		   [ "$(stat_of flusher.inval.subscribed)" = 1 ]; then
			return 0
		fi
		sleep 0.2
		n=$((n + 1))
	done
	return 1
}
# Up to 10 s for the daemon's open files to be $1 again.
fds_back_to() {
	n=0
	while [ "$(fds)" -ne "$1" ] && [ $n -lt 50 ]; do
		sleep 0.2
		n=$((n + 1))
	done
	[ "$(fds)" -eq "$1" ]
}
# Servers' downs and ups, and a SIGHUP with the log file moved away.
round() {
	shm_redis_stop
	sleep 0.3
	shm_redis_start >/dev/null 2>&1
	shm_pg_restart fast >/dev/null 2>&1
	mv "$tmp/flusher.log" "$tmp/flusher.log.$1"
	kill -HUP "$fpid"
	settle "$(stat_of next_seq)"
}

"$bin/shmctl" -e "$env" init >/dev/null
start_flusher
writer 1 &
w1=$!
writer 2 &
w2=$!
settle 1
check "the flusher applies the writers' records into both sinks" $?
base=$(fds)
bad=""
for r in 1 2 3; do
	round "$r" || bad="$bad $r(not settled)"
	fds_back_to "$base" || bad="$bad $r($(fds) open files, $base at start)"
done
[ -z "$bad" ]
check "its open files come back to $base after each restart of Redis and PostgreSQL and SIGHUP:${bad:- ok}" $?
[ -s "$tmp/flusher.log.3" ] && grep -q 'log reopened' "$tmp/flusher.log"
check "each SIGHUP opens a new log file, the moved one kept" $?

kill -KILL "$fpid"
wait "$fpid" 2>/dev/null
start_flusher
settle "$(stat_of next_seq)"
base=$(fds)
round 4
fds_back_to "$base"
check "after a SIGKILL, the new flusher's open files come back too ($base)" $?

# the last writer starts after Redis's last restart: Redis holds its messages
shm_redis_stop
shm_redis_start >/dev/null 2>&1
settle "$(stat_of next_seq)"
"$bin/shm-chatsim" -e "$env" -w 9 -n 100 >>"$tmp/writers.out" 2>>"$tmp/writers.err"
touch "$tmp/stop"
wait "$w1" "$w2"
settle "$(($(stat_of next_seq) - 1))"
kill -TERM "$fpid"
wait "$fpid"
check "SIGTERM: the flusher exits 0" $?
fpid=""

[ ! -s "$tmp/writers.err" ]
check "no writer failed" $?
[ ! -s "$tmp/writers.err" ] || sed 's/^/  | /' "$tmp/writers.err"
wrote=$(awk '{ n += $3 } END { print n }' "$tmp/writers.out")
[ "$(stat_of log_records)" = 0 ] && [ "$(stat_of dead_letters)" = 0 ]
check "the log ends trimmed, no dead letter" $?
rows=$(shm_psql -tAc 'SELECT count(*) FROM messages')
[ "$rows" = "$wrote" ]
check "PostgreSQL has the $wrote messages the writers wrote ($rows rows)" $?

# L1's messages and Redis's values, read back by PostgreSQL: a value is
# what PostgreSQL holds, field for field
"$bin/shmctl" -e "$env" dump --kind msg >"$tmp/l1.jsonl"
sock=${SHM_TEST_REDIS#unix://}
redis-cli -s "$sock" --scan --pattern 'msg:*' >"$tmp/keys"
xargs -n 200 redis-cli -s "$sock" --raw MGET <"$tmp/keys" >"$tmp/redis.jsonl"
shm_psql -c 'CREATE TABLE soak_l1 (j jsonb); CREATE TABLE soak_redis (j jsonb)'
load() {
	shm_psql -c "\\copy $1 (j) FROM STDIN WITH (FORMAT csv, QUOTE E'\\x01', DELIMITER E'\\x02')" <"$2"
}
load soak_l1 "$tmp/l1.jsonl"
load soak_redis "$tmp/redis.jsonl"
differ() {
	shm_psql -tAc "SELECT count(*) FROM $1 s LEFT JOIN messages m
	  ON m.id = (s.j->>'id')::uuid WHERE m.id IS NULL
	  OR m.room_id <> s.j->>'room_id' OR m.user_id <> (s.j->>'user_id')::int
	  OR m.username <> s.j->>'username' OR m.content <> s.j->>'content'
	  OR m.message_type <> s.j->>'message_type'
	  OR m.created_at <> (s.j->>'created_at')::timestamptz
	  OR m.updated_at IS DISTINCT FROM (s.j->>'updated_at')::timestamptz
	  OR m.metadata <> s.j->'metadata' OR m.content_hash <> s.j->>'content_hash'
	  OR m.parent_id IS DISTINCT FROM (s.j->>'parent_id')::uuid
	  OR m.thread_id IS DISTINCT FROM (s.j->>'thread_id')::uuid"
}
[ "$(wc -l <"$tmp/l1.jsonl")" = "$rows" ] && [ "$(differ soak_l1)" = 0 ]
check "PostgreSQL holds each message as L1 does" $?
[ -s "$tmp/redis.jsonl" ] && [ "$(differ soak_redis)" = 0 ]
check "Redis holds no other state of a message than PostgreSQL's" $?
missing=$(shm_psql -tAc "SELECT count(*) FROM messages m WHERE m.user_id
  BETWEEN 9000 AND 9049 AND NOT EXISTS (SELECT 1 FROM soak_redis s
  WHERE (s.j->>'id')::uuid = m.id)")
[ "$missing" = 0 ]
check "Redis holds every message written after its last restart" $?
[ "$failed" -eq 0 ] || sed 's/^/  | /' "$tmp/flusher.err" "$tmp/flusher.log" | tail -n 30
check_summary
