# tests/harness/servers.sh - throwaway redis-server and PostgreSQL for tests.
#
# Source it from sh/bash, then:
#   shm_servers_start        # both; or shm_redis_start / shm_pg_start
#   ... tests using $SHM_TEST_REDIS and $SHM_TEST_PG ...
#   shm_servers_stop         # also run by the EXIT trap it installs (and,
#                            # in a script, by its INT and TERM traps)
#
# Everything lives in one temp dir ($SHM_TEST_DIR, removed on stop):
#   redis: unix socket $SHM_TEST_DIR/redis.sock (no TCP), no persistence
#   pg:    initdb + pg_ctl cluster in $SHM_TEST_DIR/pg, unix socket dir
#          $SHM_TEST_DIR, plus loopback TCP on a free port; fsync off
#          (throwaway data), schema sql/schema.sql applied to database "shm".
# Exports:
#   SHM_TEST_REDIS  unix:///.../redis.sock
#   SHM_TEST_PG     libpq conninfo "host=<dir> port=<port> dbname=shm user=<u>"
#   SHM_TEST_PG_TCP the same over 127.0.0.1
# Helpers for fault tests: shm_redis_stop / shm_redis_start (same socket),
# shm_pg_restart, shm_pg_stop, shm_pg_start, shm_psql ARGS...
#
# PostgreSQL refuses to run as root: as root the cluster runs as the
# unprivileged system user $SHM_TEST_USER (default shmtest, created with
# useradd if missing), and the temp dir is handed to that user.

SHM_TEST_USER=${SHM_TEST_USER:-shmtest}
: "${SHM_TOP:=$(cd "$(dirname "${SHM_SERVERS_SH:-tests/harness/servers.sh}")/../.." 2>/dev/null && pwd)}"

shm__log() { echo "servers: $*" >&2; }

shm__pgbin() {
	for d in /usr/lib/postgresql/*/bin; do
		[ -x "$d/initdb" ] && { echo "$d"; return 0; }
	done
	command -v initdb >/dev/null 2>&1 && { dirname "$(command -v initdb)"; return 0; }
	return 1
}

# Runs a command as the cluster owner (root -> $SHM_TEST_USER), from /
# (the owner may not enter the caller's directory; every path is absolute).
shm__as_owner() {
	if [ "$(id -u)" -eq 0 ]; then
		if command -v runuser >/dev/null 2>&1; then
			(cd / && runuser -u "$SHM_TEST_USER" -- "$@")
		else
			(cd / && su -s /bin/sh "$SHM_TEST_USER" -c "$(printf '%s ' "$@")")
		fi
	else
		"$@"
	fi
}

shm__free_port() {
	# A loopback port nobody listens on (per /proc/net/tcp), in an odd range.
	p=$(( 20000 + ($$ * 7 + $(date +%N | sed 's/^0*//;s/^$/0/') ) % 20000 ))
	i=0
	while [ $i -lt 200 ]; do
		hex=$(printf '%04X' "$p")
		if ! grep -qi ":$hex [0-9A-F:]* 0A " /proc/net/tcp /proc/net/tcp6 2>/dev/null; then
			echo "$p"; return 0
		fi
		p=$(( p + 1 )); i=$(( i + 1 ))
	done
	return 1
}

shm_servers_dir() {
	if [ -z "${SHM_TEST_DIR:-}" ]; then
		SHM_TEST_DIR=$(mktemp -d /tmp/shm-test.XXXXXX) || return 1
		export SHM_TEST_DIR
		chmod 755 "$SHM_TEST_DIR"
		trap 'shm_servers_stop' EXIT
		# a script ends on Ctrl-C; an interactive shell (the README's
		# by-hand session) keeps it for its command line
		case $- in
		*i*) ;;
		*) trap 'shm_servers_stop; exit 130' INT TERM ;;
		esac
	fi
}

shm__ensure_user() {
	[ "$(id -u)" -eq 0 ] || return 0
	if ! id "$SHM_TEST_USER" >/dev/null 2>&1; then
		shm__log "creating system user $SHM_TEST_USER"
		useradd --system --no-create-home --shell /usr/sbin/nologin \
			"$SHM_TEST_USER" || return 1
	fi
}

# ---------------------------------------------------------------- redis

shm_redis_start() {
	shm_servers_dir || return 1
	command -v redis-server >/dev/null 2>&1 || {
		shm__log "redis-server not found (make deps)"; return 1; }
	sock="$SHM_TEST_DIR/redis.sock"
	redis-server --port 0 --unixsocket "$sock" --unixsocketperm 777 \
		--save '' --appendonly no --daemonize yes \
		--pidfile "$SHM_TEST_DIR/redis.pid" \
		--logfile "$SHM_TEST_DIR/redis.log" --dir "$SHM_TEST_DIR" \
		>/dev/null || { shm__log "redis-server failed"; return 1; }
	i=0
	while [ $i -lt 100 ]; do
		redis-cli -s "$sock" ping >/dev/null 2>&1 && break
		sleep 0.05; i=$((i + 1))
	done
	redis-cli -s "$sock" ping >/dev/null 2>&1 || {
		shm__log "redis-server did not answer"; cat "$SHM_TEST_DIR/redis.log" >&2; return 1; }
	SHM_TEST_REDIS="unix://$sock"
	export SHM_TEST_REDIS
	shm__log "redis on $SHM_TEST_REDIS"
}

shm_redis_stop() {
	[ -n "${SHM_TEST_DIR:-}" ] && [ -f "$SHM_TEST_DIR/redis.pid" ] || return 0
	pid=$(cat "$SHM_TEST_DIR/redis.pid" 2>/dev/null)
	[ -n "$pid" ] && kill "$pid" 2>/dev/null
	i=0
	while [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do
		sleep 0.05; i=$((i + 1))
	done
	rm -f "$SHM_TEST_DIR/redis.pid"
}

# --------------------------------------------------------------- postgres

shm_psql() {
	# psql against the test database, as the cluster owner.
	PGOPTIONS="-c client_min_messages=warning" \
	shm__as_owner "$SHM_PGBIN/psql" -X -q -v ON_ERROR_STOP=1 \
		-h "$SHM_TEST_DIR" -p "$SHM_TEST_PG_PORT" -U "$SHM_TEST_PG_USER" \
		-d shm "$@"
}

shm_pg_start() {
	shm_servers_dir || return 1
	SHM_PGBIN=$(shm__pgbin) || { shm__log "PostgreSQL binaries not found (make deps)"; return 1; }
	export SHM_PGBIN
	shm__ensure_user || return 1
	pgdata="$SHM_TEST_DIR/pg"
	if [ "$(id -u)" -eq 0 ]; then
		SHM_TEST_PG_USER=$SHM_TEST_USER
	else
		SHM_TEST_PG_USER=$(id -un)
	fi
	export SHM_TEST_PG_USER
	if [ ! -d "$pgdata" ]; then
		[ "$(id -u)" -eq 0 ] && chown "$SHM_TEST_USER" "$SHM_TEST_DIR"
		shm__as_owner "$SHM_PGBIN/initdb" -D "$pgdata" -U "$SHM_TEST_PG_USER" \
			-A trust -E UTF8 --locale=C.UTF-8 --no-sync \
			>"$SHM_TEST_DIR/initdb.log" 2>&1 || {
			shm__log "initdb failed:"; cat "$SHM_TEST_DIR/initdb.log" >&2; return 1; }
		SHM_TEST_PG_PORT=$(shm__free_port) || { shm__log "no free port"; return 1; }
		export SHM_TEST_PG_PORT
		cat >>"$pgdata/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $SHM_TEST_PG_PORT
unix_socket_directories = '$SHM_TEST_DIR'
fsync = off
# fsync off: throwaway data, and a test never crashes the OS. synchronous_commit
# stays on: an immediate shutdown (a crash for PostgreSQL) must not lose an
# acknowledged COMMIT, or the flusher could not be tested for exactly-once.
full_page_writes = off
max_connections = 100
shared_buffers = 128MB
log_min_messages = warning
EOF
	fi
	shm__as_owner "$SHM_PGBIN/pg_ctl" -D "$pgdata" -l "$SHM_TEST_DIR/pg.log" \
		-w -t 60 start >/dev/null || {
		shm__log "pg_ctl start failed:"; cat "$SHM_TEST_DIR/pg.log" >&2; return 1; }
	SHM_TEST_PG="host=$SHM_TEST_DIR port=$SHM_TEST_PG_PORT dbname=shm user=$SHM_TEST_PG_USER"
	SHM_TEST_PG_TCP="host=127.0.0.1 port=$SHM_TEST_PG_PORT dbname=shm user=$SHM_TEST_PG_USER"
	export SHM_TEST_PG SHM_TEST_PG_TCP
	if ! shm__as_owner "$SHM_PGBIN/psql" -X -q -h "$SHM_TEST_DIR" \
		-p "$SHM_TEST_PG_PORT" -U "$SHM_TEST_PG_USER" -d postgres -tAc \
		"SELECT 1 FROM pg_database WHERE datname = 'shm'" | grep -q 1; then
		shm__as_owner "$SHM_PGBIN/createdb" -h "$SHM_TEST_DIR" \
			-p "$SHM_TEST_PG_PORT" -U "$SHM_TEST_PG_USER" shm || return 1
	fi
	if [ -f "$SHM_TOP/sql/schema.sql" ]; then
		shm_psql <"$SHM_TOP/sql/schema.sql" || { shm__log "schema failed"; return 1; }
	fi
	shm__log "postgres on $SHM_TEST_PG (tcp port $SHM_TEST_PG_PORT)"
}

# The exactly-once tests restart PostgreSQL with an immediate shutdown and
# count rows: every acknowledged COMMIT must be kept. A cluster reused
# through an exported SHM_TEST_DIR (a by-hand one) may be set otherwise.
shm_pg_check_commits_kept() {
	v=$(shm_psql -tAc 'SHOW synchronous_commit') || return 1
	[ "$v" != off ] && return 0
	shm__log "the cluster in $SHM_TEST_DIR has synchronous_commit = off: the restart tests need every acknowledged commit kept (unset SHM_TEST_DIR for throwaway servers, or set it on)"
	return 1
}

shm_pg_stop() {
	[ -n "${SHM_TEST_DIR:-}" ] && [ -f "$SHM_TEST_DIR/pg/postmaster.pid" ] || return 0
	shm__as_owner "$SHM_PGBIN/pg_ctl" -D "$SHM_TEST_DIR/pg" -m "${1:-fast}" \
		-w -t 60 stop >/dev/null 2>&1
}

shm_pg_restart() {
	shm_pg_stop "${1:-fast}" && shm_pg_start
}

# ------------------------------------------------------------------ both

shm_servers_start() {
	shm_redis_start && shm_pg_start
}

shm_servers_stop() {
	[ -n "${SHM_TEST_DIR:-}" ] || return 0
	shm_redis_stop
	shm_pg_stop immediate
	case "$SHM_TEST_DIR" in
	/tmp/shm-test.*) [ -z "${SHM_KEEP_DIR:-}" ] && rm -rf "$SHM_TEST_DIR" ;;
	esac
	unset SHM_TEST_DIR SHM_TEST_REDIS SHM_TEST_PG SHM_TEST_PG_TCP
	trap - EXIT INT TERM
}
