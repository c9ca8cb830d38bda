#!/bin/sh
# tests/test_shmctl_room.sh - shmctl room's paging through a created_at
# shared by many messages: the "next page" line a full page ends with on
# stderr, given back as --before and --before-id, walks the room with every
# message once, in (created_at, id) DESC order; stdout stays the messages'
# JSON lines; a bad --before-id is refused. Needs no server (room reads L1).
# SHMCTL overrides the binary. Ends with "N passed, M failed".
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
SHMCTL=${SHMCTL:-$top/build/bin/shmctl}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/shmctl-room.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
export SHM_ENV="$tmp/env"
. "$top/tests/harness/check.sh"
# run NAME WANT_EXIT CMD...: stdout in $tmp/out, stderr in $tmp/err
run() {
	name=$1 want=$2
	shift 2
	"$@" >"$tmp/out" 2>"$tmp/err" </dev/null
	rc=$?
	[ "$rc" -eq "$want" ]
	check "$name (exit $rc, want $want)" $?
}
has() { grep -qF -- "$3" "$2"; check "$1" $?; }
eq() {
	[ "$2" = "$3" ]
	check "$1: got '$2', want '$3'" $?
}
ids() { sed -n 's/^{"id":"\([0-9a-f-]*\)".*/\1/p' "$1"; }
# the options the "next page" line of $tmp/err names, or nothing
next_opts() { sed -n 's/^shmctl: next page: //p' "$tmp/err"; }

if [ ! -x "$SHMCTL" ]; then
	echo "test_shmctl_room: $SHMCTL not built" >&2
	echo "0 passed, 1 failed"
	exit 1
fi

# 20 messages on one created_at (ids whose first bytes spread over 00..ff),
# two newer, one older; keys "created_at id", sorted as the pages must be
T=2026-01-01T00:00:01.000001Z
i=0
: >"$tmp/in.jsonl"
: >"$tmp/keys"
while [ $i -lt 23 ]; do
	id=$(printf '%02x%06x-0000-4000-8000-%012x' $(((i * 89) % 256)) "$i" "$i")
	case $i in
	20 | 21) at=2026-01-01T00:00:0$((i - 18)).000001Z ;;
	22) at=2026-01-01T00:00:00.000001Z ;;
	*) at=$T ;;
	esac
	printf '{"id":"%s","room_id":"tied","user_id":1,"username":"u","content":"m%d","message_type":"Text","created_at":"%s"}\n' \
		"$id" "$i" "$at" >>"$tmp/in.jsonl"
	echo "$at $id" >>"$tmp/keys"
	i=$((i + 1))
done
LC_ALL=C sort -r "$tmp/keys" | cut -d' ' -f2 >"$tmp/want"
run "import the tied room" 0 "$SHMCTL" import "$tmp/in.jsonl"

# ------------------------------------------------ walking with the line
for limit in 1 3 7 23; do
	: >"$tmp/walk"
	opts=""
	pages=0
	while :; do
		# shellcheck disable=SC2086 # opts: the line's words
		"$SHMCTL" room tied --limit "$limit" $opts >"$tmp/out" 2>"$tmp/err"
		rc=$?
		[ "$rc" -eq 0 ] || break
		ids "$tmp/out" >>"$tmp/walk"
		pages=$((pages + 1))
		opts=$(next_opts)
		[ -n "$opts" ] && [ "$pages" -le 30 ] || break
	done
	eq "limit $limit: every page exits 0" "$rc" 0
	eq "limit $limit: the walk ends" "$opts" ""
	eq "limit $limit: every message once" "$(sort "$tmp/walk" | uniq | wc -l)" 23
	cmp -s "$tmp/walk" "$tmp/want"
	check "limit $limit: in (created_at, id) DESC order, none twice" $?
done
eq "limit 23: a full last page says a next one, which is empty" "$pages" 2

# ------------------------------------------------ what a page prints
run "a page inside the tie" 0 "$SHMCTL" room tied --limit 2 --before "$T" \
	--before-id "$(sed -n 10p "$tmp/want")"
eq "two lines, both JSON messages" "$(ids "$tmp/out" | wc -l)" 2
eq "the first, right after the bound" "$(ids "$tmp/out" | head -n 1)" "$(sed -n 11p "$tmp/want")"
has "a full page names the next one's options" "$tmp/err" \
	"shmctl: next page: --before $T --before-id $(sed -n 12p "$tmp/want")"
eq "stderr holds that line alone" "$(wc -l <"$tmp/err")" 1
run "a short page" 0 "$SHMCTL" room tied --limit 50
eq "has all" "$(wc -l <"$tmp/out")" 23
eq "and no next page line" "$(wc -c <"$tmp/err")" 0
# --before alone keeps its meaning: older than T, the whole tie left out
run "--before alone" 0 "$SHMCTL" room tied --before "$T"
eq "is the older message alone" "$(ids "$tmp/out")" "$(tail -n 1 "$tmp/want")"

# ------------------------------------------------ bad --before-id
ID=$(head -n 1 "$tmp/want")
run "--before-id without --before is a usage error" 2 "$SHMCTL" room tied --before-id "$ID"
has "saying what it needs" "$tmp/err" "shmctl: --before-id needs --before"
eq "printing no message" "$(wc -c <"$tmp/out")" 0
run "--before-id given twice is a usage error" 2 "$SHMCTL" room tied --before "$T" \
	--before-id "$ID" --before-id "$ID"
has "named" "$tmp/err" "shmctl: option '--before-id' given twice"
run "a malformed --before-id is bad input data, as a malformed --before" 65 \
	"$SHMCTL" room tied --before "$T" --before-id not-a-uuid
has "naming the option and the value" "$tmp/err" \
	"shmctl: --before-id: uuid 'not-a-uuid': expected 8-4-4-4-12 hex digits"
eq "printing no message" "$(wc -c <"$tmp/out")" 0
run "the nil UUID as --before-id is refused" 65 "$SHMCTL" room tied --before "$T" \
	--before-id 00000000-0000-0000-0000-000000000000
has "saying no message holds it" "$tmp/err" "the nil UUID, which no message holds"

check_summary
