#!/bin/sh
# tests/test_shmctl.sh - shmctl's command-line contract (issues 2 and 4)
# against throwaway environments: output shapes, all-or-nothing import with
# line numbers, exit codes (0 ok, 1 not found/problems, 2 usage, 65 bad
# input data, 70 internal). SHMCTL overrides the binary.
# Ends with "N passed, M failed"; exits non-zero if anything failed.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
SHMCTL=${SHMCTL:-$top/build/bin/shmctl}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/shmctl-test.XXXXXX")
follow_pid=""
flusher_pid=""
cleanup() {
	[ -n "$follow_pid" ] && kill "$follow_pid" 2>/dev/null
	[ -n "$flusher_pid" ] && kill -9 "$flusher_pid" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM
E=$tmp/env
export SHM_ENV="$E"
passed=0
failed=0

ok() { passed=$((passed + 1)); echo "ok - $1"; }
ko() {
	failed=$((failed + 1))
	echo "FAIL - $1"
	[ -s "$tmp/err" ] && sed 's/^/  stderr| /' "$tmp/err" | head -20
	[ -s "$tmp/out" ] && sed 's/^/  stdout| /' "$tmp/out" | head -20
	return 0
}
# t NAME WANT_EXIT CMD...: stdout in $tmp/out, stderr in $tmp/err
t() {
	name=$1 want=$2
	shift 2
	"$@" >"$tmp/out" 2>"$tmp/err" </dev/null
	rc=$?
	if [ "$rc" -eq "$want" ]; then ok "$name"; else ko "$name (exit $rc, want $want)"; fi
}
# ti NAME WANT_EXIT FILE CMD...: as t with stdin from FILE
ti() {
	name=$1 want=$2 in=$3
	shift 3
	"$@" >"$tmp/out" 2>"$tmp/err" <"$in"
	rc=$?
	if [ "$rc" -eq "$want" ]; then ok "$name"; else ko "$name (exit $rc, want $want)"; fi
}
# has NAME FILE PATTERN: FILE contains the fixed string PATTERN
has() {
	if grep -qF -- "$3" "$2"; then ok "$1"; else ko "$1: '$3' not in $(basename "$2")"; fi
}
hasnt() {
	if grep -qF -- "$3" "$2"; then ko "$1: '$3' in $(basename "$2")"; else ok "$1"; fi
}
# eq NAME GOT WANT
eq() {
	if [ "$2" = "$3" ]; then ok "$1"; else ko "$1: got '$2', want '$3'"; fi
}
stat_value() { "$SHMCTL" stat | awk -v n="$1" '$1 == n { print $2 }'; }

if [ ! -x "$SHMCTL" ]; then
	echo "test_shmctl: $SHMCTL not built" >&2
	echo "0 passed, 1 failed"
	exit 1
fi

ID=0190a4c4-1d2e-7abc-8def-0123456789ab
ID2=0190a4c4-1d2e-7abc-8def-0123456789ac
NOPE=0190a4c4-1d2e-7abc-8def-000000000000
W=8c5e1ab0-6d0a-4c5c-9b61-2f6a0e1d5a11

# ---------------------------------------------------------------- usage
t "help exits 0" 0 "$SHMCTL" --help
has "help documents exit codes" "$tmp/out" "65 bad input data"
# --env, which shmctl takes, and the -e OTHER that makes dump | import a copy
has "help documents --env" "$tmp/out" "-e DIR (or --env DIR, -eDIR)"
has "help's copy names the other environment" "$tmp/out" "'dump --kind msg | shmctl -e OTHER"
# import's shape said as what shmctl writes: "(seed shape)" named a
# document a clone does not have
has "help says import's shape" "$tmp/out" "messages as JSON lines, as get, room"
grep -q '^\.BI \\-e " DIR\\fR, \\fP" \\-\\-env " DIR"$' "$top/man/shmctl.1"
if [ $? -eq 0 ]; then ok "the man page documents -e and --env"; else ko "the man page documents -e and --env"; fi
t "command --help exits 0" 0 "$SHMCTL" get --help
t "no command is a usage error" 2 "$SHMCTL"
t "unknown command is a usage error" 2 "$SHMCTL" frobnicate
t "unknown option is a usage error" 2 "$SHMCTL" stat --frob
# an option given twice is a usage error naming it, not the last one winning
t "ls --kind twice is a usage error" 2 "$SHMCTL" ls --kind msg --kind static
has "naming the option" "$tmp/err" "shmctl: option '--kind' given twice"
t "room --limit twice is a usage error" 2 "$SHMCTL" room general --limit 1 --limit 2
has "naming it" "$tmp/err" "option '--limit' given twice"
t "a flag twice is a usage error" 2 "$SHMCTL" ls --json --json
t "-e twice is a usage error" 2 "$SHMCTL" -e "$E" --env "$tmp/absent" stat
has "naming -e" "$tmp/err" "option '-e' (--env) given twice"
t "-eDIR and -e DIR is a usage error" 2 "$SHMCTL" -e"$E" -e "$E" stat
t "missing argument is a usage error" 2 "$SHMCTL" get
has "naming the argument missing" "$tmp/err" "shmctl: missing UUID; usage: shmctl get UUID"
# a wrong count of arguments names what is wrong, not the synopsis alone
# ("shmctl: verify" said nothing of the 'now' that made it a usage error)
t "an extra argument is a usage error" 2 "$SHMCTL" verify now
has "naming it" "$tmp/err" "shmctl: unexpected argument 'now'; usage: shmctl verify"
t "stat's extra argument too" 2 "$SHMCTL" stat -j
has "naming it, a single dash included" "$tmp/err" "unexpected argument '-j'; usage: shmctl stat [--json]"
t "react's third argument missing" 2 "$SHMCTL" react "$ID" 7
has "is named as the synopsis names it" "$tmp/err" "shmctl: missing EMOJI; usage: shmctl react UUID USER_ID EMOJI [--remove]"
t "static put's OBJECT missing" 2 "$SHMCTL" static put "$W"
has "is named, not the optional FILE" "$tmp/err" "shmctl: missing OBJECT; usage: shmctl static put"
t "deps show with deps set's option" 2 "$SHMCTL" deps show "$W" Page/1 --direct
has "says whose option it is" "$tmp/err" "--direct is an option of deps set, not show"
t "static without get or put" 2 "$SHMCTL" static
has "says it needs one" "$tmp/err" "shmctl: static needs get or put; usage:"
t "no environment is a usage error" 2 env -u SHM_ENV "$SHMCTL" stat
t "absent environment is not found" 1 "$SHMCTL" -e "$tmp/absent" stat
t "-e DIR overrides SHM_ENV" 1 env SHM_ENV="$E" "$SHMCTL" -e "$tmp/absent2" stat
t "-e after the command is a usage error" 2 "$SHMCTL" stat -e "$tmp/absent2"
has "saying where -e goes" "$tmp/err" "-e DIR goes before the command: shmctl -e DIR stat ..."
t "so is --env, SHM_ENV unset" 2 env -u SHM_ENV "$SHMCTL" stat --env "$tmp/absent2"
has "saying so instead of 'no environment'" "$tmp/err" "--env DIR goes before the command"
t "version" 0 "$SHMCTL" --version

# --------------------------------------------------------------- import
cat >"$tmp/good.jsonl" <<EOF
{"room_id":"general","user_id":1,"username":"alice","content":"hello","message_type":"Text","created_at":"2026-11-23T10:00:00Z"}
{"id":"$ID","room_id":"general","user_id":2,"username":"bob","content":"hi alice 👋","message_type":"Text","created_at":"2026-11-23T10:00:01.5Z","updated_at":null,"metadata":{"edited":false,"edit_count":0,"reactions":{"👍":[1]},"mentions":[1],"attachments":[{"id":"$ID2","filename":"a.png","content_type":"image/png","size":12,"url":"https://x.test/a.png"}],"reply_count":0,"last_reply_at":null},"content_hash":"ignored","compressed_content":null,"parent_id":null,"thread_id":null}

{"room_id":"random","user_id":3,"username":"carol","content":"yo","message_type":"Image","created_at":"2026-11-23T09:00:00+01:00"}
EOF
t "import of a good file" 0 "$SHMCTL" import "$tmp/good.jsonl"
has "import says how many" "$tmp/out" "imported 3 messages"

cat >"$tmp/bad.jsonl" <<EOF
{"room_id":"general","user_id":1,"username":"alice","content":"fine","message_type":"Text"}
{"room_id":"general","user_id":1,"username":"alice","content":"x","message_type":"Foo"}
not json
{"id":"xyz","room_id":"general","user_id":1,"username":"alice","content":"x","message_type":"Text"}
{"room_id":"general","user_id":1,"username":"alice","content":"a\u0000b","message_type":"Text"}
{"room_id":"general","user_id":5000000000,"username":"alice","content":"x","message_type":"Text"}
{"room_id":"general","user_id":1,"username":"alice","content":"x","message_type":"Text","extra":true}
{"room_id":"general","user_id":1,"username":"alice","content":"x","message_type":"Text","created_at":"yesterday"}
EOF
printf '{"room_id":"g\377","user_id":1,"username":"a","content":"x","message_type":"Text"}\n' >>"$tmp/bad.jsonl"
echo '{"room_id":"general","user_id":1,"username":"alice","content":"also fine","message_type":"Text"}' >>"$tmp/bad.jsonl"
t "import with bad lines exits 65" 65 "$SHMCTL" import "$tmp/bad.jsonl"
has "line 2: unknown type" "$tmp/err" "2: unknown message_type 'Foo'"
has "line 3: malformed JSON" "$tmp/err" "3: malformed JSON"
has "line 4: bad UUID" "$tmp/err" "4: field 'id': malformed UUID 'xyz'"
has "line 5: NUL byte" "$tmp/err" "5: field 'content': NUL byte"
has "line 6: user_id range" "$tmp/err" "6: field 'user_id': expected integer in int32 range"
has "line 7: unknown field" "$tmp/err" "7: unknown field 'extra'"
has "line 8: bad timestamp" "$tmp/err" "8: field 'created_at': timestamp 'yesterday'"
has "line 9: invalid UTF-8" "$tmp/err" "9: invalid UTF-8"
hasnt "good line 1 not reported" "$tmp/err" "1: "
hasnt "good line 10 not reported" "$tmp/err" "10: "
has "import says nothing was imported" "$tmp/err" "nothing imported"
eq "bad import wrote no message" "$(stat_value messages)" 3
eq "bad import wrote no log record" "$(stat_value log_records)" 3
# a raw NUL byte (not the \u0000 of line 5) is named, not taken for an end
printf '{"room_id":"r","user_id":1,"username":"a","content":"a\000b","message_type":"Text"}\n' >"$tmp/nul.jsonl"
t "import of a raw NUL byte exits 65" 65 "$SHMCTL" import "$tmp/nul.jsonl"
has "naming it and where" "$tmp/err" "1: NUL byte at offset 54"

big=$(head -c 70000 /dev/zero | tr '\0' 'x')
printf '{"room_id":"r","user_id":1,"username":"a","content":"ok","message_type":"Text"}\n{"room_id":"r","user_id":1,"username":"a","content":"%s","message_type":"Text"}\n' "$big" >"$tmp/big.jsonl"
ti "oversized content exits 65 (stdin)" 65 "$tmp/big.jsonl" "$SHMCTL" import -
has "oversized content names line 2" "$tmp/err" "2: field 'content': 70000 bytes"
eq "oversized import wrote nothing" "$(stat_value messages)" 3
# An id twice in one import is refused, both lines named: which copy
# should win is not for import to guess.
cat "$tmp/good.jsonl" "$tmp/good.jsonl" >"$tmp/twice.jsonl"
t "an id twice in one import exits 65" 65 "$SHMCTL" -e "$tmp/env_twice" import "$tmp/twice.jsonl"
has "naming both lines" "$tmp/err" "6: id $ID: already on line 2"
hasnt "ids imports fill in are never repeats" "$tmp/err" "5: id"
has "and nothing imported" "$tmp/err" "1 bad line, nothing imported"
if [ -e "$tmp/env_twice" ]; then ko "and nothing created"; else ok "and nothing created"; fi

# A UTF-8 byte order mark (Windows editors write one) is skipped at the
# start of the input; one starting a later line is named.
bom=$(printf '\357\273\277')
{ printf '%s' "$bom"; head -n 1 "$tmp/good.jsonl"; } >"$tmp/bom.jsonl"
t "import of a file starting with a BOM" 0 "$SHMCTL" -e "$tmp/env_bom" import "$tmp/bom.jsonl"
has "imports its line" "$tmp/out" "imported 1 message"
{ head -n 1 "$tmp/good.jsonl"; printf '%s' "$bom"; head -n 1 "$tmp/good.jsonl"; } >"$tmp/bom2.jsonl"
t "a BOM starting line 2 exits 65" 65 "$SHMCTL" -e "$tmp/env_bom" import "$tmp/bom2.jsonl"
has "and is named" "$tmp/err" "2: UTF-8 byte order mark at the start of the line (skipped at the start of the input only)"

# Windows line ends (CRLF) and a last line without its newline are lines
# as any other: imported, or named by their number when bad.
line1=$(head -n 1 "$tmp/good.jsonl")
printf '%s\r\n\r\n%s' "$line1" "$line1" >"$tmp/crlf.jsonl"
t "import of CRLF lines, the last without newline" 0 "$SHMCTL" -e "$tmp/env_crlf" import "$tmp/crlf.jsonl"
has "imports both" "$tmp/out" "imported 2 messages"
printf '%s\r\n{"room_id":"r"}\r\n%s\r\n{bad' "$line1" "$line1" >"$tmp/crlf_bad.jsonl"
t "bad CRLF lines exit 65" 65 "$SHMCTL" -e "$tmp/env_crlf" import "$tmp/crlf_bad.jsonl"
has "naming line 2" "$tmp/err" "2: field 'user_id': missing"
has "and the last, without newline" "$tmp/err" "4: malformed JSON"
has "two bad lines" "$tmp/err" "shmctl: 2 bad lines, nothing imported"

# A rejected import creates nothing: the input is checked, put's checks
# too, before the environment is created.
echo garbage >"$tmp/garbage.jsonl"
ti "a bad import into a missing directory exits 65" 65 "$tmp/garbage.jsonl" "$SHMCTL" -e "$tmp/new" import -
if [ -e "$tmp/new" ]; then ko "and leaves it missing"; else ok "and leaves it missing"; fi
rm -rf "$tmp/new"
t "an import of a missing file into a missing directory exits 1" 1 "$SHMCTL" -e "$tmp/new" import "$tmp/no-such-file"
if [ -e "$tmp/new" ]; then ko "and leaves it missing"; else ok "and leaves it missing"; fi
rm -rf "$tmp/new"
mkdir "$tmp/new_empty"
ti "a bad import into an empty directory exits 65" 65 "$tmp/garbage.jsonl" "$SHMCTL" -e "$tmp/new_empty" import
eq "and leaves it empty" "$(ls -A "$tmp/new_empty")" ""
# 100 attachments of 3 KiB: JSON the parser takes, metadata put refuses
awk 'BEGIN { s = sprintf("%1000s", ""); gsub(/ /, "x", s)
	printf "{\"room_id\":\"r\",\"user_id\":1,\"username\":\"a\",\"content\":\"c\",\"message_type\":\"File\",\"metadata\":{\"attachments\":["
	for (i = 0; i < 100; i++)
		printf "%s{\"id\":\"'"$ID2"'\",\"filename\":\"%s\",\"content_type\":\"%s\",\"size\":1,\"url\":\"%s\"}", i ? "," : "", s, s, s
	print "]}}" }' >"$tmp/fat.jsonl"
cat "$tmp/good.jsonl" "$tmp/fat.jsonl" >"$tmp/fat2.jsonl"
t "metadata put refuses, in a missing directory, exits 65" 65 "$SHMCTL" -e "$tmp/new" import "$tmp/fat2.jsonl"
has "naming its line" "$tmp/err" "5: message: encoded metadata too large"
if [ -e "$tmp/new" ]; then ko "and leaves it missing"; else ok "and leaves it missing"; fi
rm -rf "$tmp/new"
# An import that fails once it has created the environment (here its
# commit: a file size limit stops data.mdb growing, exit 70) removes what
# it created, and only that: a missing directory is missing again, an
# existing one keeps what it held, an environment already there stays.
if command -v prlimit >/dev/null; then
	awk 'BEGIN { s = sprintf("%1000s", ""); gsub(/ /, "x", s)
		for (i = 0; i < 100; i++)
			printf "{\"room_id\":\"r\",\"user_id\":1,\"username\":\"a\",\"content\":\"%s%s%s%s%s%s%s%s%s%s%d\",\"message_type\":\"Text\"}\n", s, s, s, s, s, s, s, s, s, s, i }' >"$tmp/1mb.jsonl"
	# data.mdb may not pass 600 kB; SIGXFSZ ignored: the write fails
	small_files() { (trap '' XFSZ; exec prlimit --fsize=600000 "$@"); }
	t "an import whose commit fails exits 70" 70 small_files "$SHMCTL" -e "$tmp/new" import "$tmp/1mb.jsonl"
	has "saying why, naming the file and the limit" "$tmp/err" "/new/data.mdb: commit not written, nothing of it stored: the file cannot grow past 600000 bytes, this process's file size limit (ulimit -f)"
	has "and what it removed" "$tmp/err" "the environment this import created in $tmp/new is removed"
	if [ -e "$tmp/new" ]; then ko "and removes the directory it created ($(ls -A "$tmp/new" | tr '\n' ' '))"; else ok "and removes the directory it created"; fi
	rm -rf "$tmp/new"
	t "an import into a directory named with an ESC, whose commit fails, exits 70" 70 small_files "$SHMCTL" -e "$tmp/new$(printf '\033')" import "$tmp/1mb.jsonl"
	has "names it printably" "$tmp/err" "the environment this import created in $tmp/new\x1b is removed"
	if grep -q "$(printf '\033')" "$tmp/err"; then ko "and never raw"; else ok "and never raw"; fi
	rm -rf "$tmp/new$(printf '\033')"
	mkdir "$tmp/new_notes"
	echo mine >"$tmp/new_notes/notes"
	t "an import into a directory whose commit fails exits 70" 70 small_files "$SHMCTL" -e "$tmp/new_notes" import "$tmp/1mb.jsonl"
	eq "and leaves the directory as it was" "$(ls -A "$tmp/new_notes")" "notes"
	before=$("$SHMCTL" -e "$tmp/env_bom" dump --kind msg)
	t "an import into an environment whose commit fails exits 70" 70 small_files "$SHMCTL" -e "$tmp/env_bom" import "$tmp/1mb.jsonl"
	eq "and leaves the environment as it was" "$("$SHMCTL" -e "$tmp/env_bom" dump --kind msg)" "$before"
	t "which verify finds sound" 0 "$SHMCTL" -e "$tmp/env_bom" verify
fi
t "import of a missing file" 1 "$SHMCTL" import "$tmp/no-such-file"
: >"$tmp/empty.jsonl"
t "import of an empty file" 0 "$SHMCTL" import "$tmp/empty.jsonl"
has "empty import says 0" "$tmp/out" "imported 0 messages"

# A parent imported with reply_count 0 gets its replies counted, one with
# a count keeps it: the same lines give the same store in any order.
P0=0190a4c4-1d2e-7abc-8def-0000000000a0
P5=0190a4c4-1d2e-7abc-8def-0000000000a5
cat >"$tmp/thread.jsonl" <<EOF
{"id":"$P0","room_id":"th","user_id":1,"username":"a","content":"p0","message_type":"Text","created_at":"2026-01-01T00:00:00Z","metadata":{"reply_count":0}}
{"id":"0190a4c4-1d2e-7abc-8def-0000000000a1","room_id":"th","user_id":1,"username":"a","content":"r","message_type":"Text","created_at":"2026-01-01T00:00:01Z","parent_id":"$P0"}
{"id":"$P5","room_id":"th","user_id":1,"username":"a","content":"p5","message_type":"Text","created_at":"2026-01-01T00:00:00Z","metadata":{"reply_count":5,"last_reply_at":"2026-01-02T00:00:00Z"}}
{"id":"0190a4c4-1d2e-7abc-8def-0000000000a6","room_id":"th","user_id":1,"username":"a","content":"r","message_type":"Text","created_at":"2026-01-01T00:00:01Z","parent_id":"$P5"}
EOF
tac "$tmp/thread.jsonl" >"$tmp/thread_rev.jsonl"
for order in thread thread_rev; do
	t "import of a thread ($order)" 0 "$SHMCTL" -e "$tmp/$order" import "$tmp/$order.jsonl"
	"$SHMCTL" -e "$tmp/$order" get "$P0" >"$tmp/out"
	has "a parent with 0 counts its reply ($order)" "$tmp/out" '"reply_count":1,"last_reply_at":"2026-01-01T00:00:01Z"'
	"$SHMCTL" -e "$tmp/$order" get "$P5" >"$tmp/out"
	has "a parent with a count keeps it ($order)" "$tmp/out" '"reply_count":5,"last_reply_at":"2026-01-02T00:00:00Z"'
done
# (but for the updated_at of P0: counting its reply made a version of it,
# at the time of each import)
"$SHMCTL" -e "$tmp/thread" dump --kind msg | sed 's/"updated_at":"[^"]*"/"updated_at":T/' >"$tmp/thread.dump"
"$SHMCTL" -e "$tmp/thread_rev" dump --kind msg | sed 's/"updated_at":"[^"]*"/"updated_at":T/' >"$tmp/thread_rev.dump"
if cmp -s "$tmp/thread.dump" "$tmp/thread_rev.dump"; then ok "either order, one store"; else ko "either order, one store"; fi
if grep -c '"updated_at":T' "$tmp/thread.dump" | grep -qx 1; then ok "the parent counting its reply has a new version"; else ko "the parent counting its reply has a new version"; fi

# ------------------------------------------------------------ get, room
t "get of a known id" 0 "$SHMCTL" get "$ID"
has "get prints the seed shape" "$tmp/out" "{\"id\":\"$ID\",\"room_id\":\"general\",\"user_id\":2,\"username\":\"bob\",\"content\":\"hi alice 👋\",\"message_type\":\"Text\",\"created_at\":\"2026-11-23T10:00:01.500Z\",\"updated_at\":null,\"metadata\":{\"edited\":false,\"edit_count\":0,\"reactions\":{\"👍\":[1]},\"mentions\":[1],\"attachments\":[{\"id\":\"$ID2\",\"filename\":\"a.png\",\"content_type\":\"image/png\",\"size\":12,\"url\":\"https://x.test/a.png\"}],\"reply_count\":0,\"last_reply_at\":null},\"content_hash\":\""
has "get recomputes content_hash" "$tmp/out" "\"compressed_content\":null,\"parent_id\":null,\"thread_id\":null}"
hasnt "imported content_hash is ignored" "$tmp/out" "ignored"
eq "get prints one line" "$(wc -l <"$tmp/out")" 1
t "get of an unknown id exits 1" 1 "$SHMCTL" get "$NOPE"
# L1 is a cache: "not found" read as "lost" once a flushed message expired
has "saying L1 alone was read, and where else to look" "$tmp/err" "message $NOPE not in L1 (shmctl get reads L1 alone: a flushed message leaves it after l1_ttl_s or when evicted; Redis and PostgreSQL may hold it)"
t "get of a malformed id exits 65" 65 "$SHMCTL" get not-a-uuid

t "room page" 0 "$SHMCTL" room general
eq "room page has both messages" "$(wc -l <"$tmp/out")" 2
eq "room page is newest first" "$(head -n 1 "$tmp/out" | grep -c "\"id\":\"$ID\"")" 1
t "room page with limit" 0 "$SHMCTL" room general --limit 1
eq "limit 1 gives one line" "$(wc -l <"$tmp/out")" 1
# --name=VALUE, as GNU tools take it ("unknown option '--limit=1'" said
# the option was unknown)
t "room page with --limit=1" 0 "$SHMCTL" room general --limit=1
eq "is --limit 1" "$(wc -l <"$tmp/out")" 1
t "--env=DIR before the command" 0 env -u SHM_ENV "$SHMCTL" --env="$E" room general --limit=1
eq "is --env DIR" "$(wc -l <"$tmp/out")" 1
t "--limit=1 and --limit 2 are one option given twice" 2 "$SHMCTL" room general --limit=1 --limit 2
has "named without its value" "$tmp/err" "shmctl: option '--limit' given twice"
t "a flag given a value" 2 "$SHMCTL" ls --json=yes
has "says it takes none" "$tmp/err" "shmctl: option '--json' takes no value"
t "--env=DIR after the command" 2 env -u SHM_ENV "$SHMCTL" stat --env="$E"
has "says where it goes" "$tmp/err" "--env DIR goes before the command"
t "room page with before" 0 "$SHMCTL" room general --before 2026-11-23T10:00:01Z
eq "before keeps the older message" "$(grep -c '"content":"hello"' "$tmp/out")" 1
eq "before drops the newer message" "$(wc -l <"$tmp/out")" 1
t "room page of an empty room" 0 "$SHMCTL" room nobody-here
eq "empty room prints nothing" "$(wc -c <"$tmp/out")" 0
t "room --before malformed exits 65" 65 "$SHMCTL" room general --before tomorrow
t "room --before the epoch" 0 "$SHMCTL" room general --before 1970-01-01T00:00:00Z
eq "nothing is older than the epoch" "$(wc -c <"$tmp/out")" 0
printf '{"room_id":"general","user_id":1,"username":"u","content":"c","message_type":"Text","created_at":"1970-01-01T00:00:00Z"}\n' >"$tmp/epoch.jsonl"
ti "import of a created_at at the epoch exits 65" 65 "$tmp/epoch.jsonl" "$SHMCTL" import
has "and says why" "$tmp/err" "is the epoch, which a message cannot hold"
# nor a nil id, which put would replace with a new one: the message
# would be stored under an id the file does not have
printf '{"id":"00000000-0000-0000-0000-000000000000","room_id":"general","user_id":1,"username":"u","content":"c","message_type":"Text"}\n' >"$tmp/nil.jsonl"
ti "import of the nil UUID as id exits 65" 65 "$tmp/nil.jsonl" "$SHMCTL" import
has "and says why" "$tmp/err" "1: field 'id': the nil UUID, which a message cannot hold"
# type Delete is a soft-deleted message: its content is what a delete
# leaves, or it would be readable under a type that takes no change
printf '{"room_id":"general","user_id":1,"username":"u","content":"c","message_type":"Text"}\n{"room_id":"general","user_id":1,"username":"u","content":"still readable","message_type":"Delete"}\n' >"$tmp/deltype.jsonl"
ti "import of a Delete with other content exits 65" 65 "$tmp/deltype.jsonl" "$SHMCTL" import
has "naming its line and why" "$tmp/err" '2: message_type Delete: content must be "[Message supprimé]"'
# parent_id names another message
printf '{"id":"%s","room_id":"general","user_id":1,"username":"u","content":"c","message_type":"Text","parent_id":"%s"}\n' "$ID2" "$ID2" >"$tmp/self.jsonl"
ti "import of a message that is its own parent exits 65" 65 "$tmp/self.jsonl" "$SHMCTL" import
has "naming its line and why" "$tmp/err" "1: parent_id $ID2: the message's own id"
# a reply is in its parent's room, checked as the import leaves it
P1=0190a4c4-1d2e-7abc-8def-0000000000c1
printf '{"id":"%s","room_id":"a","user_id":1,"username":"u","content":"p","message_type":"Text"}\n{"room_id":"b","user_id":1,"username":"u","content":"r","message_type":"Text","parent_id":"%s"}\n' "$P1" "$P1" >"$tmp/rooms.jsonl"
ti "import of a reply in another room than its parent exits 65" 65 "$tmp/rooms.jsonl" "$SHMCTL" -e "$tmp/env_rooms" import
has "naming its line and both rooms" "$tmp/err" "2: room_id 'b': parent_id $P1 is in room 'a' (a reply is in its parent's room)"
if [ -e "$tmp/env_rooms" ]; then ko "and leaves no environment"; else ok "and leaves no environment"; fi
t "room --limit malformed is usage" 2 "$SHMCTL" room general --limit many
# a numeric option out of its range is a usage error naming it and its range
for v in 0 10001 -1 abc 99999999999999999999 ''; do
	t "room --limit '$v' is usage" 2 "$SHMCTL" room general --limit "$v"
	has "room --limit '$v' names the option and its range" "$tmp/err" "--limit '$v': must be an integer in 1..10000"
done
t "room --limit 10000, the most" 0 "$SHMCTL" room general --limit 10000
for v in -1 abc 99999999999999999999 ''; do
	t "log --from '$v' is usage" 2 "$SHMCTL" log --from "$v"
	has "log --from '$v' names the option and its range" "$tmp/err" "--from '$v': must be an integer in 0..18446744073709551615"
done

# -------------------------------------------------- edit, react, delete
t "edit" 0 "$SHMCTL" edit "$ID" "edited text"
"$SHMCTL" get "$ID" >"$tmp/out"
has "edit changed content" "$tmp/out" '"content":"edited text"'
has "edit set edited and edit_count" "$tmp/out" '"edited":true,"edit_count":1'
hasnt "edit set updated_at" "$tmp/out" '"updated_at":null'
t "edit of an unknown id exits 1" 1 "$SHMCTL" edit "$NOPE" x
t "edit with a malformed id exits 65" 65 "$SHMCTL" edit nope x
t "edit without content is usage" 2 "$SHMCTL" edit "$ID"

t "react" 0 "$SHMCTL" react "$ID" 7 "🎉"
"$SHMCTL" get "$ID" >"$tmp/out"
has "react added the user" "$tmp/out" '"🎉":[7]'
t "react again is idempotent" 0 "$SHMCTL" react "$ID" 7 "🎉"
"$SHMCTL" get "$ID" >"$tmp/out"
has "still one reaction" "$tmp/out" '"🎉":[7]'
t "react --remove" 0 "$SHMCTL" react "$ID" 7 "🎉" --remove
"$SHMCTL" get "$ID" >"$tmp/out"
hasnt "reaction removed" "$tmp/out" '[7]'
# a reaction without users is no reaction: import drops it, as removing
# its last user does
RX=0190a4c4-1d2e-7abc-8def-0000000000b1
echo "{\"id\":\"$RX\",\"room_id\":\"rx\",\"user_id\":1,\"username\":\"a\",\"content\":\"c\",\"message_type\":\"Text\",\"metadata\":{\"reactions\":{\"x\":[],\"y\":[2]}}}" >"$tmp/rx.jsonl"
t "import of a reaction without users" 0 "$SHMCTL" -e "$tmp/env_rx" import "$tmp/rx.jsonl"
"$SHMCTL" -e "$tmp/env_rx" get "$RX" >"$tmp/out"
has "drops it" "$tmp/out" '"reactions":{"y":[2]}'
t "react with a bad user id exits 65" 65 "$SHMCTL" react "$ID" seven "🎉"
# a user id is digits after one '-' at most: strtoll took " 7" and "+7"
before=$("$SHMCTL" get "$ID")
for v in ' 7' '+7' '' '7 ' '7x' '- 7' 2147483648 -2147483649; do
	t "react with user id '$v' exits 65" 65 "$SHMCTL" react "$ID" "$v" "🎉"
	has "react with user id '$v' names it and the range" "$tmp/err" "react: USER_ID '$v': must be an integer in -2147483648..2147483647"
done
eq "and changes nothing" "$("$SHMCTL" get "$ID")" "$before"
t "react with a negative user id" 0 "$SHMCTL" react "$ID" -2147483648 "🎉" --remove
t "react on an unknown id exits 1" 1 "$SHMCTL" react "$NOPE" 7 "🎉"

t "delete" 0 "$SHMCTL" delete "$ID"
"$SHMCTL" get "$ID" >"$tmp/out"
has "delete sets type Delete" "$tmp/out" '"message_type":"Delete"'
has "delete replaces content as in the seed" "$tmp/out" '"content":"[Message supprimé]"'
t "delete of an unknown id exits 1" 1 "$SHMCTL" delete "$NOPE"
before=$("$SHMCTL" get "$ID")
t "edit of a deleted message exits 65" 65 "$SHMCTL" edit "$ID" "back again"
has "saying so" "$tmp/err" "(message deleted)"
t "so does a reaction to it" 65 "$SHMCTL" react "$ID" 7 "🎉"
t "a second delete is harmless" 0 "$SHMCTL" delete "$ID"
eq "and none of them changes it" "$("$SHMCTL" get "$ID")" "$before"

# ------------------------------------------------------------ stat, log
t "stat" 0 "$SHMCTL" stat
has "stat shows messages" "$tmp/out" "messages "
has "stat shows flushed" "$tmp/out" "flushed "
has "stat shows map use" "$tmp/out" "map_used "
has "stat shows counters" "$tmp/out" "puts "
has "stat shows latency percentiles" "$tmp/out" "put_latency.p99_ns"
eq "stat counts the messages" "$(stat_value messages)" 3
t "stat --json" 0 "$SHMCTL" stat --json
has "stat --json has messages" "$tmp/out" '"messages":3'
eq "stat --json is one line" "$(wc -l <"$tmp/out")" 1

# flusher.running: whether a flusher holds flusher.lock now; the pid and
# other values it published stay after it ended (before, nothing told an
# operator that flusher.pid was a dead process's)
FL=$(dirname "$SHMCTL")/shm-flusher
R=$tmp/running
"$SHMCTL" -e "$R" init >/dev/null
eq "flusher.running: 0 where no flusher ever ran" "$("$SHMCTL" -e "$R" stat | awk '$1 == "flusher.running" { print $2 }')" 0
"$SHMCTL" -e "$R" stat >"$tmp/out" 2>&1
has "which says none ever ran here, not that flusher.* values are a last one's" "$tmp/out" "flusher.running                                   0  no shm-flusher runs now, and none has in this directory (no flusher.lock)"
# start_flusher: one on R that holds its lock (its Redis is nowhere: it
# retries) and has published its pid
start_flusher() {
	"$FL" -e "$R" --redis unix:///nonexistent/redis.sock --stats-interval-ms 100 \
		2>>"$tmp/flusher.log" &
	flusher_pid=$!
	i=0
	while [ "$("$SHMCTL" -e "$R" stat | awk '$1 == "flusher.pid" { print $2 }')" != "$flusher_pid" ] && [ $i -lt 100 ]; do
		sleep 0.05
		i=$((i + 1))
	done
}
# stopped_by SIG: flusher.running 0 and flusher.pid said to be gone once
# the running flusher is ended by SIG
stopped_by() {
	start_flusher
	t "stat while a flusher runs ($1 next)" 0 "$SHMCTL" -e "$R" stat
	has "says flusher.running 1" "$tmp/out" "flusher.running                                   1  an shm-flusher runs now"
	hasnt "and not that its pid is gone" "$tmp/out" "no longer runs"
	t "stat --json while it runs" 0 "$SHMCTL" -e "$R" stat --json
	has "says \"flusher.running\":1" "$tmp/out" '"flusher.running":1,'
	kill "-$1" "$flusher_pid"
	wait "$flusher_pid"
	flusher_pid=""
	t "stat once $1 ended it" 0 "$SHMCTL" -e "$R" stat
	has "says flusher.running 0" "$tmp/out" "flusher.running                                   0  no shm-flusher runs now: the flusher.* values are the last one's, as of its last publication (flusher.heartbeat)"
	has "and that its pid no longer runs" "$tmp/out" "pid of the flusher that published these, which no longer runs (flusher.running)"
	t "stat --json once it ended" 0 "$SHMCTL" -e "$R" stat --json
	has "says \"flusher.running\":0" "$tmp/out" '"flusher.running":0,'
	if command -v python3 >/dev/null; then
		cp "$tmp/out" "$tmp/running.json"
		t "which is valid JSON" 0 python3 -m json.tool "$tmp/running.json"
	fi
}
stopped_by TERM
stopped_by KILL
# a flusher.lock this user may not open: said, not guessed
nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null; then
	chmod 755 "$tmp" "$R"
	chmod 666 "$R/lock.mdb"
	chmod 600 "$R/flusher.lock"
fi
if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null &&
   nobody test -r "$R/data.mdb" && nobody test -x "$SHMCTL"; then
	t "stat of a flusher.lock it may not open" 0 nobody "$SHMCTL" -e "$R" stat
	has "says it cannot tell, and why" "$tmp/out" "flusher.running                             unknown  cannot tell whether an shm-flusher runs: $R/flusher.lock: Permission denied"
	t "stat --json of it" 0 nobody "$SHMCTL" -e "$R" stat --json
	has "is null there" "$tmp/out" '"flusher.running":null,'
	has "and why on stderr" "$tmp/err" "shmctl: cannot tell whether an shm-flusher runs: $R/flusher.lock: Permission denied"
else
	echo "skip - flusher.running unknown: needs root, setpriv, and a path nobody can reach"
fi
chmod 700 "$tmp"

records=$(stat_value log_records)
t "log" 0 "$SHMCTL" log
eq "log prints one line per record" "$(wc -l <"$tmp/out")" "$records"
has "log shows msg_put" "$tmp/out" " msg_put "
has "log shows msg_edit with the key" "$tmp/out" " msg_edit    $ID "
has "log shows msg_delete" "$tmp/out" " msg_delete "
eq "log starts at seq 1" "$(head -n 1 "$tmp/out" | cut -d' ' -f1)" 1
t "log --from" 0 "$SHMCTL" log --from 4
eq "log --from 4 skips three" "$(wc -l <"$tmp/out")" $((records - 3))
t "log --json" 0 "$SHMCTL" log --json --from 4
has "log --json has fields" "$tmp/out" '{"seq":4,"time":"'
has "log --json names the op" "$tmp/out" '"op":"msg_edit"'
t "log --from malformed is usage" 2 "$SHMCTL" log --from x
t "log --dead" 0 "$SHMCTL" log --dead

# ------------------------------------------------------ dump, verify, ls
t "dump" 0 "$SHMCTL" dump --kind msg
eq "dump has every message" "$(wc -l <"$tmp/out")" 3
cp "$tmp/out" "$tmp/dump.jsonl"
t "dump imports into a new environment" 0 "$SHMCTL" -e "$tmp/env2" import "$tmp/dump.jsonl"
"$SHMCTL" -e "$tmp/env2" dump --kind msg >"$tmp/dump2.jsonl"
if cmp -s "$tmp/dump.jsonl" "$tmp/dump2.jsonl"; then ok "dump | import round-trips"; else ko "dump | import round-trips"; fi
t "verify of a fresh copy" 0 "$SHMCTL" -e "$tmp/env2" verify
# a soft delete is final: the dump's deleted message, as it is, is taken
# again (nothing written); the message it was, brought back, is refused
t "dump imports again over its copy, deleted message and all" 0 "$SHMCTL" -e "$tmp/env2" import "$tmp/dump.jsonl"
before=$("$SHMCTL" get "$ID")
t "an import bringing a deleted message back exits 65" 65 "$SHMCTL" import "$tmp/good.jsonl"
has "naming its line and why" "$tmp/err" "2: shm_msg_put_many: message $ID is soft-deleted, and a soft delete is final"
eq "and changes nothing" "$("$SHMCTL" get "$ID")" "$before"
t "verify" 0 "$SHMCTL" verify
has "verify says ok" "$tmp/out" "ok"
t "a write command on a directory without environment exits 1" 1 "$SHMCTL" -e "$tmp/typo" touch 0b8e7c52-1c3d-4e5f-8a9b-0c1d2e3f4a5b Page/1
has "and says so" "$tmp/err" "$tmp/typo: no shm environment here, no such directory: "
eq "and creates nothing" "$(ls -A "$tmp" | grep -c '^typo$')" 0
# a name with an escape sequence and invalid UTF-8 is named printably
esc=$(printf 'typo\033]0;x\007\377')
t "a directory named with control bytes exits 1" 1 "$SHMCTL" -e "$tmp/$esc" stat
has "naming it printably" "$tmp/err" "$tmp/typo\\x1b]0;x\\x07\\xff: no shm environment here"
if LC_ALL=C grep -q "$(printf '[\001-\037\177-\377]')" "$tmp/err"; then ko "with no control or non-ASCII byte"; else ok "with no control or non-ASCII byte"; fi
mkdir "$tmp/empty"
t "stat of an empty directory exits 1" 1 "$SHMCTL" -e "$tmp/empty" stat
has "naming what is missing" "$tmp/err" "no shm environment here, no data.mdb"
: >"$tmp/empty/data.mdb"
t "stat of an empty data.mdb (a creation cut short) exits 1" 1 "$SHMCTL" -e "$tmp/empty" stat
has "saying so, not 'Bad file descriptor'" "$tmp/err" "$tmp/empty: no shm environment here, data.mdb is empty"
t "so does a write command" 1 "$SHMCTL" -e "$tmp/empty" touch 0b8e7c52-1c3d-4e5f-8a9b-0c1d2e3f4a5b Page/1
eq "which leaves it empty" "$(wc -c <"$tmp/empty/data.mdb")" 0
t "init creates an environment" 0 "$SHMCTL" -e "$tmp/empty" init
# saying which it did: "DIR: an shm environment" said neither
has "saying it created it" "$tmp/out" "$tmp/empty: shm environment created"
t "init again is harmless" 0 "$SHMCTL" -e "$tmp/empty" init
has "saying it was there" "$tmp/out" "$tmp/empty: an shm environment already, left as it was"
t "init of a directory whose name has a newline" 0 "$SHMCTL" -e "$tmp/nl
dir" init
has "names it printably, as the errors do" "$tmp/out" "$tmp/nl\\x0adir: shm environment created"
eq "on one line" "$(wc -l <"$tmp/out")" 1
rm -rf "$tmp/nl
dir"
t "which the other commands then open" 0 "$SHMCTL" -e "$tmp/empty" stat
# a backup: data.mdb alone, as mdb_copy writes it. A read-only command says
# what it lacks and what makes it, init does, and the copy then verifies
# (it said "environment has no stats file" and no more)
mkdir "$tmp/copy"
cp "$tmp/empty/data.mdb" "$tmp/copy/"
t "verify of a copy of data.mdb alone exits 1" 1 "$SHMCTL" -e "$tmp/copy" verify
has "naming the file and the fix" "$tmp/err" "$tmp/copy/shm.stats: environment has no stats file (data.mdb copied alone, as mdb_copy does? a read-write open makes it: shmctl -e $tmp/copy init)"
t "init takes the copy" 0 "$SHMCTL" -e "$tmp/copy" init
# saying what it made there: "left as it was" was untrue (verify's
# read-only open made lock.mdb, as any opener does)
has "saying what it made" "$tmp/out" "$tmp/copy: an shm environment already; made what it lacked: shm.stats, shm.wlock"
hasnt "not that it left it as it was" "$tmp/out" "left as it was"
t "init of the copy again" 0 "$SHMCTL" -e "$tmp/copy" init
has "left it as it was, now true" "$tmp/out" "$tmp/copy: an shm environment already, left as it was"
mkdir "$tmp/copy2"
cp "$tmp/empty/data.mdb" "$tmp/copy2/"
t "init of a copy nothing opened yet" 0 "$SHMCTL" -e "$tmp/copy2" init
eq "says it made the three" "$(cat "$tmp/out")" "$tmp/copy2: an shm environment already; made what it lacked: lock.mdb, shm.stats, shm.wlock"
t "which then verifies" 0 "$SHMCTL" -e "$tmp/copy" verify
t "readers" 0 "$SHMCTL" readers
eq "readers without readers says so (the man page's text)" "$(cat "$tmp/out")" "(no active readers)"
t "readers --clear-stale" 0 "$SHMCTL" readers --clear-stale
has "readers --clear-stale reports" "$tmp/out" "cleared "
t "readers --json" 0 "$SHMCTL" readers --json
eq "readers --json without readers prints nothing" "$(cat "$tmp/out")" ""
t "readers --json --clear-stale" 0 "$SHMCTL" readers --json --clear-stale
eq "readers --json --clear-stale: slots alone on stdout" "$(cat "$tmp/out")" ""
has "and the count on stderr" "$tmp/err" "cleared 0 stale reader slots"
t "ls" 0 "$SHMCTL" ls --kind msg
eq "ls lists the messages" "$(grep -c '^msg ' "$tmp/out")" 3
t "ls --kind bogus is usage" 2 "$SHMCTL" ls --kind bogus

# ----------------------------------------------- statics and the graph
printf 'hello static\n' >"$tmp/static.txt"
t "static put" 0 "$SHMCTL" static put "$W" "Page/1" "$tmp/static.txt"
# git hash-object of "hello static\n" (constant: git may be absent)
want_sha=8438d642a665029978f1c1443c183bbf7b0de594
eq "static put prints the git blob SHA-1" "$(cat "$tmp/out")" "$want_sha"
t "static get" 0 "$SHMCTL" static get "$W" "Page/1"
if cmp -s "$tmp/out" "$tmp/static.txt"; then ok "static get returns the content"; else ko "static get returns the content"; fi
t "static get --sha-only" 0 "$SHMCTL" static get "$W" "Page/1" --sha-only
eq "--sha-only prints SHA-1" "$(cat "$tmp/out")" "$want_sha"
t "static get --sha256 --sha-only" 0 "$SHMCTL" static get "$W" "Page/1" --sha256 --sha-only
if command -v sha256sum >/dev/null; then
	eq "--sha256 is SHA-256 of the content" "$(cat "$tmp/out")" "$(sha256sum <"$tmp/static.txt" | cut -d' ' -f1)"
fi
# dump (every kind) | import: the static lines are named for what they are
"$SHMCTL" dump >"$tmp/dump_all.jsonl"
ti "import of dump's every kind exits 65" 65 "$tmp/dump_all.jsonl" "$SHMCTL" -e "$tmp/env_all" import
has "naming the static's line" "$tmp/err" "$(($(stat_value messages) + 1)): a static from 'shmctl dump', not a message: import takes messages ('shmctl dump --kind msg')"
hasnt "not as an unknown field" "$tmp/err" "unknown field 'website'"
t "static get of an absent static exits 1" 1 "$SHMCTL" static get "$W" "Page/2"
t "static get with a bad website exits 65" 65 "$SHMCTL" static get nope "Page/1"
t "static put with a bad object exits 65" 65 "$SHMCTL" static put "$W" "no slash" "$tmp/static.txt"
t "static without subcommand is usage" 2 "$SHMCTL" static
t "static put --sha-only is usage" 2 "$SHMCTL" static put "$W" "Page/1" --sha-only

t "deps set" 0 "$SHMCTL" deps set "$W" "Page/1" --direct "Block/1"
t "deps set of a block" 0 "$SHMCTL" deps set "$W" "Block/1" "Person/1"
"$SHMCTL" ls --kind graph --json >"$tmp/ls.jsonl"
ti "import of ls --json exits 65" 65 "$tmp/ls.jsonl" "$SHMCTL" -e "$tmp/env_all" import
has "naming the graph entry" "$tmp/err" "1: a 'graph' entry from 'shmctl ls --json', not a message: import takes messages ('shmctl dump --kind msg')"
# a kind is quoted printably: raw, a newline in it forged a line
printf '{"kind":"x\\u001b[2J\\n: y"}\n' >"$tmp/kind.jsonl"
ti "import of a foreign line exits 65" 65 "$tmp/kind.jsonl" "$SHMCTL" -e "$tmp/env_all" import
has "its kind shown printably" "$tmp/err" "1: a 'x\\x1b[2J\\x0a: y' entry from 'shmctl ls --json'"
eq "in one line" "$(wc -l <"$tmp/err")" 2
t "deps show" 0 "$SHMCTL" deps show "$W" "Page/1"
eq "deps show lists direct deps" "$(cat "$tmp/out")" "Block/1"
t "deps show --recursive" 0 "$SHMCTL" deps show "$W" "Page/1" --recursive
eq "recursive walk goes through the block" "$(tr '\n' ' ' <"$tmp/out")" "Block/1 Person/1 "
t "deps show --referrers" 0 "$SHMCTL" deps show "$W" "Person/1" --referrers
eq "references of the person" "$(tr '\n' ' ' <"$tmp/out")" "Block/1 Page/1 "
# an object the graph does not know is said, not an empty answer (exit 0)
for o in "" --recursive --referrers; do
	# shellcheck disable=SC2086 # $o: no option, or one
	t "deps show${o:+ $o} of an object never declared exits 1" 1 "$SHMCTL" deps show "$W" "Page/404" $o
	eq "saying so" "$(cat "$tmp/err")" "shmctl: no object $W Page/404 in the graph: never declared (deps set), and no declared object embeds it"
done
t "deps show of an object only embedded" 0 "$SHMCTL" deps show "$W" "Person/1"
eq "has no dependencies" "$(cat "$tmp/out")" ""
t "deps set of an object without dependencies" 0 "$SHMCTL" deps set "$W" "Person/2"
t "deps show of it" 0 "$SHMCTL" deps show "$W" "Person/2"
eq "has none" "$(cat "$tmp/out")" ""
t "deps show --recursive --referrers is usage" 2 "$SHMCTL" deps show "$W" "Person/1" --recursive --referrers
has "the usage error names both options" "$tmp/err" "--recursive and --referrers exclude each other"
t "deps show of an object with invalid UTF-8 exits 65" 65 "$SHMCTL" deps show "$W" "$(printf 'Page/\377x')"
has "the invalid byte is shown escaped" "$tmp/err" "'Page/\xffx'"
# bad ids: refused, named (escaped), nothing written
last=$(stat_value log_last)
t "deps set with a malformed website exits 65" 65 "$SHMCTL" deps set "${W}0" "Page/1"
eq "naming it and the form expected" "$(cat "$tmp/err")" "shmctl: WEBSITE: uuid '${W}0': expected 8-4-4-4-12 hex digits (malformed UUID)"
t "deps set with a website of control characters exits 65" 65 "$SHMCTL" deps set "$(printf '\033[2J')" "Page/1"
eq "shown escaped" "$(cat "$tmp/err")" "shmctl: WEBSITE: uuid '\x1b[2J': expected 8-4-4-4-12 hex digits (malformed UUID)"
t "deps set with the nil website exits 65" 65 "$SHMCTL" deps set 00000000-0000-0000-0000-000000000000 "Page/1"
has "saying so" "$tmp/err" "the nil UUID is not a website"
t "deps set with a malformed dependency exits 65" 65 "$SHMCTL" deps set "$W" "Page/1" "Block/1" "Person/a b"
has "naming it" "$tmp/err" "dependency 1: object 'Person/a b': whitespace"
t "deps set of a website without --direct exits 65" 65 "$SHMCTL" deps set "$W" "Communication::Website/$W" "Page/1"
eq "saying it is always direct" "$(cat "$tmp/err")" "shmctl: object 'Communication::Website/$W': a website is always direct (every Communication::Website object is): declare it direct (invalid argument)"
eq "the refused commands wrote nothing" "$(stat_value log_last)" "$last"
t "deps show after them" 0 "$SHMCTL" deps show "$W" "Page/1"
eq "shows the dependencies as they were" "$(cat "$tmp/out")" "Block/1"
# A UUID has no case (PostgreSQL's uuid columns): a website, and an ID of
# the UUID form, in upper case are the lower-case ones, named so
U=$(echo "$W" | tr a-f A-F)
P=c0ffee00-0000-4000-8000-0000000000ab
PU=$(echo "$P" | tr a-f A-F)
t "deps set of the website object in upper case" 0 "$SHMCTL" deps set "$U" "Communication::Website/$U" --direct "Page/$PU"
t "deps show of it in lower case" 0 "$SHMCTL" deps show "$W" "Communication::Website/$W"
eq "is the same object, its dependency in lower case" "$(cat "$tmp/out")" "Page/$P"
t "deps show --referrers of the page in upper case" 0 "$SHMCTL" deps show "$U" "Page/$PU" --referrers
eq "names the website object in lower case" "$(cat "$tmp/out")" "Communication::Website/$W"
t "touch busts references" 0 "$SHMCTL" touch "$W" "Person/1"
t "static of a reference is busted" 1 "$SHMCTL" static get "$W" "Page/1"
t "ls --kind mark" 0 "$SHMCTL" ls --kind mark
has "mark listed" "$tmp/out" "mark $W Person/1"
t "ls --kind graph" 0 "$SHMCTL" ls --kind graph --json
has "graph listed as JSON" "$tmp/out" '"object":"Page/1","direct":true'
"$SHMCTL" static put "$W" "Page/1" "$tmp/static.txt" >/dev/null 2>&1
# --json field names, in order, as the man page lists them
keys() { grep -m 1 -- "$1" "$tmp/out" | grep -o '"[a-z_0-9]*":' | tr -d '":' | tr '\n' ' '; }
t "ls --json of every kind" 0 "$SHMCTL" ls --json
eq "ls --json: a message's fields" "$(keys '"kind":"msg"')" "kind id room_id created_at message_type size "
eq "ls --json: a static's fields" "$(keys '"kind":"static"')" "kind website object size sha1 sha256 generated_at "
eq "ls --json: a graph entry's fields" "$(keys '"kind":"graph"')" "kind website object direct deps "
eq "ls --json: a mark's fields" "$(keys '"kind":"mark"')" "kind website object time reason "
t "log --json of every record" 0 "$SHMCTL" log --json
eq "log --json: a record's fields" "$(keys '"seq":')" "seq time op key size raw_size lz4 "
t "bust" 0 "$SHMCTL" bust "$W" "Page/1"
t "busted static is gone" 1 "$SHMCTL" static get "$W" "Page/1"
t "destroy" 0 "$SHMCTL" destroy "$W" "Block/1"
t "deps of the destroyed object" 0 "$SHMCTL" deps show "$W" "Page/1"
eq "destroy dropped its edges" "$(cat "$tmp/out")" ""
t "deps show of the destroyed object exits 1" 1 "$SHMCTL" deps show "$W" "Block/1"
t "verify after the graph work" 0 "$SHMCTL" verify

# ---------------------------------------------------------- log --follow
last=$(stat_value log_last)
"$SHMCTL" log --follow --from $((last + 1)) >"$tmp/follow" 2>&1 &
follow_pid=$!
sleep 0.3
echo '{"room_id":"live","user_id":9,"username":"z","content":"tail me","message_type":"Text"}' >"$tmp/live.jsonl"
"$SHMCTL" import "$tmp/live.jsonl" >/dev/null 2>&1
i=0
while [ $i -lt 50 ] && ! grep -q ' msg_put ' "$tmp/follow"; do
	sleep 0.1
	i=$((i + 1))
done
kill -INT "$follow_pid" 2>/dev/null
wait "$follow_pid" 2>/dev/null
follow_rc=$?
follow_pid=""
if grep -q "^$((last + 1)) .* msg_put " "$tmp/follow"; then ok "log --follow shows a new record"; else ko "log --follow shows a new record"; fi
eq "log --follow stops on SIGINT with 0" "$follow_rc" 0

# An idle log --follow notices its reader is gone (head -1 has its line):
# it ends at once, not at the next record, nor at timeout's 5 s.
FO=$tmp/env_follow
"$SHMCTL" -e "$FO" import "$tmp/live.jsonl" >/dev/null 2>&1
t0=$(date +%s%N)
{ timeout 5 "$SHMCTL" -e "$FO" log --follow; echo $? >"$tmp/follow_rc"; } | head -1 >"$tmp/out"
ms=$((($(date +%s%N) - t0) / 1000000))
has "log --follow | head -1 has the record" "$tmp/out" " msg_put "
if [ "$ms" -lt 2000 ]; then ok "an idle log --follow ends with its reader ($ms ms)"; else ko "an idle log --follow ends with its reader: $ms ms"; fi
if [ "$(cat "$tmp/follow_rc")" != 124 ]; then ok "and not by timeout"; else ko "and not by timeout (exit 124)"; fi

# ------------------------------- log in chunks, over a trimmed log, idle follow
T=$tmp/env_trim
awk 'BEGIN { for (i = 0; i < 1200; i++) printf "{\"room_id\":\"t\",\"user_id\":1,\"username\":\"u\",\"content\":\"m%d\",\"message_type\":\"Text\"}\n", i }' >"$tmp/many.jsonl"
t "import 1200 messages" 0 "$SHMCTL" -e "$T" import "$tmp/many.jsonl"
t "log prints them, a chunk per read transaction" 0 "$SHMCTL" -e "$T" log
eq "all 1200, in order" "$(awk 'NR != $1 { bad = 1 } END { print NR, bad + 0 }' "$tmp/out")" "1200 0"
t "dump of 1200 messages, a chunk per read transaction" 0 "$SHMCTL" -e "$T" dump --kind msg
eq "dump has all 1200 once" "$(sort -u "$tmp/out" | wc -l)" 1200
cp "$tmp/out" "$tmp/many_dump.jsonl"
t "which imports into a new environment" 0 "$SHMCTL" -e "$tmp/env_many" import "$tmp/many_dump.jsonl"
"$SHMCTL" -e "$tmp/env_many" dump --kind msg >"$tmp/many_dump2.jsonl"
if cmp -s "$tmp/many_dump.jsonl" "$tmp/many_dump2.jsonl"; then ok "dump | import round-trips across chunks"; else ko "dump | import round-trips across chunks"; fi
FLUSHER=$(dirname "$SHMCTL")/shm-flusher
if [ -n "${SHM_TEST_REDIS:-}" ] && [ -x "$FLUSHER" ]; then
	t "the flusher drains and trims the log" 0 "$FLUSHER" -e "$T" --redis "$SHM_TEST_REDIS" --once --no-invalidation
	env_uuid=$(sed -n 's/.*(env id \([0-9a-f-]*\)).*/\1/p' "$tmp/err" | head -n 1)
	t "stat after the flusher" 0 "$SHMCTL" -e "$T" stat
	has "stat says what a flusher value means" "$tmp/out" "sink redis: log records applied"
	has "and when the flusher last published" "$tmp/out" "Unix time (s)"
	hasnt "every flusher value has its own description" "$tmp/out" "published by shm-flusher"
	eq "the names and values stay two columns" "$(awk '$1 == "flusher.redis.rows" { print $2 }' "$tmp/out")" 1200
	# the env id as the flusher's log (and shm_sink_positions) say it,
	# not as the two decimal halves meta keeps
	eq "stat shows the flusher's env id as its UUID" "$(awk '$1 == "flusher.env_id" { print $2 }' "$tmp/out")" "${env_uuid:-(none logged)}"
	hasnt "not as two halves" "$tmp/out" "flusher.env_id.hi"
	t "stat --json after the flusher" 0 "$SHMCTL" -e "$T" stat --json
	has "which says it as a string" "$tmp/out" "\"flusher.env_id\":\"$env_uuid\""
	t "one more message" 0 "$SHMCTL" -e "$T" import "$tmp/live.jsonl"
	t "log --from 1 over the trimmed log" 0 "$SHMCTL" -e "$T" log --from 1
	has "says what it cannot show" "$tmp/err" "log records 1..1200 were trimmed before they could be shown"
	t "the flusher trims it all" 0 "$FLUSHER" -e "$T" --redis "$SHM_TEST_REDIS" --once --no-invalidation
	t "log --from 1 over a log trimmed to nothing" 0 "$SHMCTL" -e "$T" log --from 1
	eq "shows nothing" "$(wc -c <"$tmp/out")" 0
	has "and says what it cannot show" "$tmp/err" "log records 1..1201 were trimmed before they could be shown"
	t "log --from 1201 over it" 0 "$SHMCTL" -e "$T" log --from 1201
	has "says the last one" "$tmp/err" "log record 1201 was trimmed before it could be shown"
	t "log --from 1202, past the last record" 0 "$SHMCTL" -e "$T" log --from 1202
	eq "says nothing" "$(wc -c <"$tmp/err")" 0
	t "log over a log trimmed to nothing" 0 "$SHMCTL" -e "$T" log
	eq "prints no record" "$(wc -c <"$tmp/out")" 0
	has "and says why it is empty" "$tmp/err" "the log is empty: records 1..1201 were applied by every sink and trimmed"
	"$SHMCTL" -e "$T" log --follow >/dev/null 2>&1 &
	follow_pid=$!
	sleep 1.5
	ticks=$(awk '{ print $14 + $15 }' "/proc/$follow_pid/stat")
	kill -INT "$follow_pid" 2>/dev/null
	wait "$follow_pid" 2>/dev/null
	follow_pid=""
	if [ "$ticks" -lt 30 ]; then ok "an idle log --follow sleeps ($ticks ticks of CPU in 1.5 s)"; else ko "an idle log --follow sleeps: $ticks ticks of CPU in 1.5 s"; fi
fi

# ------------------------------------------------------ verify finds damage
C=$tmp/env3
echo '{"room_id":"r","user_id":1,"username":"a","content":"CORRUPTME-4f1d","message_type":"Text"}' >"$tmp/c.jsonl"
"$SHMCTL" -e "$C" import "$tmp/c.jsonl" >/dev/null 2>&1
t "verify before damage" 0 "$SHMCTL" -e "$C" verify
# Same length, so the B-tree stays readable: only checksums catch it.
perl -0777 -pi -e 's/CORRUPTME-4f1d/CORRUPTED-4f1d/g' "$C/data.mdb"
t "verify finds a bad checksum" 1 "$SHMCTL" -e "$C" verify
has "verify names the log record once" "$tmp/out" "log record 1: checksum mismatch (corrupted or truncated data)"
hasnt "not as missing from its message" "$tmp/out" "no such log record"
t "log reports the corrupt record" 1 "$SHMCTL" -e "$C" log
has "log names the record once" "$tmp/err" "shmctl: log record 1: checksum mismatch (corrupted or truncated data)"
hasnt "log names it once, not as 'log seq 1: log record 1'" "$tmp/err" "log seq 1:"

# ------------------------------- foreign, cut and odd environments, inputs
t "a file as the environment is not found" 1 "$SHMCTL" -e "$tmp/good.jsonl" stat
has "a file as the environment: why" "$tmp/err" "$tmp/good.jsonl: Not a directory"
t "a file as the environment of a write is not found" 1 "$SHMCTL" -e "$tmp/good.jsonl" touch "$W" Page/1

if command -v mdb_load >/dev/null && command -v mdb_dump >/dev/null; then
	F=$tmp/foreign
	mkdir "$F"
	printf 'VERSION=3\nformat=bytevalue\ntype=btree\nHEADER=END\n 666f6f\n 626172\nDATA=END\n' |
		mdb_load "$F"
	# maxreaders is the lock file's, which any opener sizes
	mdb_dump "$F" | grep -v '^maxreaders=' >"$tmp/foreign.before"
	t "a write to a non-shm LMDB environment exits 65" 65 "$SHMCTL" -e "$F" touch "$W" Page/1
	has "non-shm environment: why" "$tmp/err" "$F: not an shm environment"
	mdb_dump "$F" | grep -v '^maxreaders=' >"$tmp/foreign.after"
	if cmp -s "$tmp/foreign.before" "$tmp/foreign.after" && [ ! -e "$F/shm.stats" ]; then
		ok "a non-shm LMDB environment is left as it was"
	else
		ko "a non-shm LMDB environment is left as it was"
	fi
fi

# A value the flusher publishes above 2^63 (a count, say, gone wild):
# stat --json says the number stat says, not a negative one.
if command -v mdb_load >/dev/null; then
	M=$tmp/env_meta
	cp -R "$E" "$M"
	printf 'VERSION=3\nformat=bytevalue\ndatabase=meta\ntype=btree\nHEADER=END\n %s\n ffffffffffffffff\nDATA=END\n' \
		"$(printf 'flusher.pg.rows' | od -An -tx1 | tr -d ' \n')" | mdb_load -s meta "$M"
	t "stat of a value above 2^63" 0 "$SHMCTL" -e "$M" stat
	has "says it" "$tmp/out" "18446744073709551615"
	t "stat --json of a value above 2^63" 0 "$SHMCTL" -e "$M" stat --json
	has "says the same number" "$tmp/out" '"flusher.pg.rows":18446744073709551615'
	has "still with the others" "$tmp/out" '{"messages":'
	if command -v python3 >/dev/null; then
		cp "$tmp/out" "$tmp/stat.json"
		t "which is valid JSON" 0 python3 -m json.tool "$tmp/stat.json"
	fi
fi

T=$tmp/cut
cp -R "$E" "$T"
truncate -s 8192 "$T/data.mdb"
t "verify of a cut data file exits 65" 65 "$SHMCTL" -e "$T" verify
has "cut data file: names it and both sizes" "$tmp/err" "$T/data.mdb: 8192 bytes, shorter than the "
t "a write to a cut data file exits 65" 65 "$SHMCTL" -e "$T" touch "$W" Page/1
# a torn copy that ends inside LMDB's meta pages is damage, not a version
truncate -s 100 "$T/data.mdb"
t "stat of a data file torn in its first page exits 65" 65 "$SHMCTL" -e "$T" stat
has "torn data file: names it and its size" "$tmp/err" "$T/data.mdb: 100 bytes, fewer than the 152 of LMDB's first meta page (corrupted or truncated data)"
hasnt "torn data file: not a format version" "$tmp/err" "format version"

mkdir "$tmp/adir"
t "static put of a directory exits 70" 70 "$SHMCTL" static put "$W" Page/9 "$tmp/adir"
has "static put of a directory: why" "$tmp/err" "$tmp/adir: Is a directory"
t "import of a directory exits 70" 70 "$SHMCTL" import "$tmp/adir"
has "import of a directory: why" "$tmp/err" "$tmp/adir: Is a directory"

# Arguments and file names quoted in an error text are shown printably
# (libshm/text.h): an ESC, a line break or invalid UTF-8 as \xNN, the rest
# as given; never raw on the terminal.
X=$(printf 'a\033[31mb\377c')
XS='a\x1b[31mb\xffc'
NL="x
y"
# printable NAME FILE WANT: FILE holds WANT and no ESC or 0xff byte
printable() {
	if LC_ALL=C grep -q "$(printf '[\033\377]')" "$2"; then
		ko "$1: a raw ESC or 0xff byte"
	else
		has "$1" "$2" "$3"
	fi
}
t "unknown option (before the command) exits 2" 2 "$SHMCTL" "-x$X"
printable "names it printably" "$tmp/err" "shmctl: unknown option '-x$XS'"
t "unknown command exits 2" 2 "$SHMCTL" "$X"
printable "names it printably" "$tmp/err" "shmctl: unknown command '$XS'"
t "unknown option of a command exits 2" 2 "$SHMCTL" stat "--$X"
printable "names it printably" "$tmp/err" "shmctl: unknown option '--$XS'"
t "a bad --limit exits 2" 2 "$SHMCTL" room general --limit "$X"
printable "names it printably" "$tmp/err" "shmctl: --limit '$XS': must be an integer in"
t "a --limit with a line break exits 2" 2 "$SHMCTL" room general --limit "$NL"
has "on one line" "$tmp/err" "shmctl: --limit 'x\x0ay': must be"
t "unknown 'static' command exits 2" 2 "$SHMCTL" static "$X"
printable "names it printably" "$tmp/err" "shmctl: unknown command 'static $XS'"
t "unknown 'deps' command exits 2" 2 "$SHMCTL" deps "$X"
printable "names it printably" "$tmp/err" "shmctl: unknown command 'deps $XS'"
t "unknown --kind exits 2" 2 "$SHMCTL" ls --kind "$X"
printable "names it printably" "$tmp/err" "shmctl: unknown kind '$XS'"
t "a bad USER_ID exits 65" 65 "$SHMCTL" react "$ID" "$X" "👍"
printable "names it printably" "$tmp/err" "shmctl: react: USER_ID '$XS': must be an integer in"
t "import of a missing FILE exits 1" 1 "$SHMCTL" import "$tmp/$X"
printable "names it printably" "$tmp/err" "shmctl: $tmp/$XS: No such file or directory"
t "static put of a missing FILE exits 1" 1 "$SHMCTL" static put "$W" Page/9 "$tmp/$X"
printable "names it printably" "$tmp/err" "shmctl: $tmp/$XS: No such file or directory"
mkdir "$tmp/$X"
t "import of a directory exits 70" 70 "$SHMCTL" import "$tmp/$X"
printable "names it printably" "$tmp/err" "shmctl: $tmp/$XS: Is a directory"
t "static put of a directory exits 70" 70 "$SHMCTL" static put "$W" Page/9 "$tmp/$X"
printable "names it printably" "$tmp/err" "shmctl: $tmp/$XS: Is a directory"
rmdir "$tmp/$X"

# A message whose stored text is not UTF-8 (damaged after the import) cannot
# be dumped as JSON: dump says which and why, and exits 1.
D=$tmp/env4
DID=0190a4c4-1d2e-7abc-8def-0000000000d1
echo "{\"id\":\"$DID\",\"room_id\":\"r\",\"user_id\":1,\"username\":\"a\",\"content\":\"NOTUTF8-9b2e\",\"message_type\":\"Text\"}" >"$tmp/d.jsonl"
"$SHMCTL" -e "$D" import "$tmp/d.jsonl" >/dev/null 2>&1
perl -0777 -pi -e 's/NOTUTF8-9b2e/\xff\xfeTUTF8-9b2e/g' "$D/data.mdb"
t "dump of a message it cannot write exits 1" 1 "$SHMCTL" -e "$D" dump --kind msg
has "dump names the message it dropped and why" "$tmp/err" "message $DID not dumped: shm_msg_to_json: field 'content': invalid UTF-8"
# verify finds it first, naming the message: not only its log record
t "verify of a message it cannot dump exits 1" 1 "$SHMCTL" -e "$D" verify
has "verify names the message and why" "$tmp/out" "message $DID: content: invalid UTF-8 at byte offset 0"
has "verify names its content_hash" "$tmp/out" "message $DID: content_hash "

# A dead letter whose reason spans lines, as PostgreSQL's do ("\nDETAIL:"),
# loaded raw in the encoding of libshm/dead.c (seq 1, time 0, sink pg).
if command -v mdb_load >/dev/null; then
	reason='duplicate key value violates unique constraint "m_pkey"
DETAIL: Key (id)=(1) already exists.'
	rlen=$(printf '%s' "$reason" | wc -c)
	hex=$(printf '%s' "$reason" | od -An -tx1 | tr -d ' \n')
	value=$(printf '0100%02x%02x00000000' $((rlen & 255)) $((rlen >> 8)))0000000000000000$(printf '%-32s' 7067 | tr ' ' 0)$hex
	printf 'VERSION=3\nformat=bytevalue\ndatabase=dead\ntype=btree\nintegerkey=1\nHEADER=END\n 0100000000000000\n %s\nDATA=END\n' "$value" |
		mdb_load -s dead "$D"
	t "log --dead --json" 0 "$SHMCTL" -e "$D" log --dead --json
	eq "log --dead --json: a letter's fields" "$(keys '"seq":')" "seq time sink op key reason "
	t "log --dead of a reason with a newline" 0 "$SHMCTL" -e "$D" log --dead
	eq "log --dead prints one line per letter" "$(wc -l <"$tmp/out")" 1
	has "log --dead folds the reason's newline" "$tmp/out" '1 1970-01-01T00:00:00Z pg corrupt -: duplicate key value violates unique constraint "m_pkey" DETAIL: Key (id)=(1) already exists.'

	# A letter cut to its first 3 bytes (seq 2) between two good ones (sink
	# redis, reasons "one" and "three"): log --dead names it by its seq and
	# lists the others, as log goes past a corrupt record; verify finds it.
	V=$tmp/env5
	"$SHMCTL" -e "$V" init >/dev/null 2>&1
	good() { # good SEQ REASON: the key and value lines of a letter
		printf ' %02x00000000000000\n 0100%02x0000000000' "$1" ${#2}
		printf '0000000000000000%s' "$(printf '%-32s' 7265646973 | tr ' ' 0)"
		printf '%s' "$2" | od -An -tx1 | tr -d ' \n'
		echo
	}
	{
		printf 'VERSION=3\nformat=bytevalue\ndatabase=dead\ntype=btree\nintegerkey=1\nHEADER=END\n'
		good 1 one
		printf ' 0200000000000000\n 0100ff\n'
		good 3 three
		printf 'DATA=END\n'
	} | mdb_load -s dead "$V"
	t "log --dead past a cut letter exits 1" 1 "$SHMCTL" -e "$V" log --dead
	has "log --dead names the cut letter" "$tmp/err" "shmctl: dead letter 2: bad header of 3 bytes, version 1"
	eq "log --dead lists the letters around it" "$(cut -d' ' -f1,3,6- "$tmp/out" | tr '\n' '|')" "1 redis one|3 redis three|"
	t "log --dead --json past a cut letter exits 1" 1 "$SHMCTL" -e "$V" log --dead --json
	has "log --dead --json names the cut letter" "$tmp/err" "dead letter 2: bad header"
	eq "log --dead --json lists the letters around it" "$(grep -o '"seq":[0-9]*' "$tmp/out" | tr '\n' ' ')" '"seq":1 "seq":3 '
	eq "stat counts the cut letter" "$("$SHMCTL" -e "$V" stat | awk '$1 == "dead_letters" { print $2 }')" 3
	t "verify finds the cut letter" 1 "$SHMCTL" -e "$V" verify
	eq "verify names it alone" "$(cat "$tmp/out")" "dead letter 2: bad header of 3 bytes, version 1 (corrupted or truncated data)"

	# dead drop: the only way to clear a letter (dead_letters stayed above
	# 0 for good, whatever the operator did); all or nothing
	t "dead drop of a seq without a letter exits 1" 1 "$SHMCTL" -e "$V" dead drop 1 4
	has "naming it" "$tmp/err" "shmctl: dead letter 4: there is none (shmctl log --dead lists them)"
	eq "and drops nothing" "$("$SHMCTL" -e "$V" stat | awk '$1 == "dead_letters" { print $2 }')" 3
	t "dead drop without SEQ exits 2" 2 "$SHMCTL" -e "$V" dead drop
	has "naming what is missing" "$tmp/err" "missing SEQ; usage: shmctl dead drop SEQ [SEQ ...]"
	t "dead drop of a SEQ twice exits 2" 2 "$SHMCTL" -e "$V" dead drop 1 1
	has "saying so" "$tmp/err" "SEQ 1 given twice"
	t "dead drop 0 exits 2" 2 "$SHMCTL" -e "$V" dead drop 0
	t "dead without drop exits 2" 2 "$SHMCTL" -e "$V" dead list
	eq "none of which drops a letter" "$("$SHMCTL" -e "$V" stat | awk '$1 == "dead_letters" { print $2 }')" 3
	t "dead drop of the cut letter" 0 "$SHMCTL" -e "$V" dead drop 2
	eq "says what it dropped" "$(cat "$tmp/out")" "dropped 1 dead letter"
	t "after which verify passes" 0 "$SHMCTL" -e "$V" verify
	t "and log --dead" 0 "$SHMCTL" -e "$V" log --dead
	"$SHMCTL" -e "$V" log --dead | cut -d' ' -f1 >"$tmp/seqs"
	t "dead drop of the seqs log --dead lists" 0 sh -c 'xargs -n 100 "$0" -e "$1" dead drop <"$2"' "$SHMCTL" "$V" "$tmp/seqs"
	eq "drops them" "$(cat "$tmp/out")" "dropped 2 dead letters"
	eq "leaving none" "$("$SHMCTL" -e "$V" stat | awk '$1 == "dead_letters" { print $2 }')" 0
fi

# --------------------------------------------- output that cannot be written
# A full disk is an error (70), not a truncated listing with status 0:
# only dump checked its writes.
if [ -w /dev/full ]; then
	"$SHMCTL" static put "$W" Page/8 "$tmp/static.txt" >/dev/null 2>&1
	for c in "ls" "stat" "log --json" "room general" "static get $W Page/8" "--help"; do
		# shellcheck disable=SC2086 # the words of $c are the arguments
		t "shmctl $c to a full disk exits 70" 70 sh -c "\"\$0\" $c >/dev/full" "$SHMCTL"
		has "saying why" "$tmp/err" "shmctl: write the output: No space left on device"
	done
fi

# ------------------------------------------- the man page renders cleanly
if command -v groff >/dev/null 2>&1; then
	groff -ww -man -z "$top/man/shmctl.1" >"$tmp/out" 2>"$tmp/err"
	eq "groff -ww -man finds nothing to warn about in the man page" "$?:$(cat "$tmp/err")" "0:"
fi

# ------------------------------------------- the man page's EXAMPLES, run
# as written, with temp paths for /var/lib/shm and /tmp/copy, this shmctl
# for shmctl, and log --follow stopped after 2 s
M=$tmp/man
mkdir "$M"
awk '/^\.SH EXAMPLES/ { on = 1 } on && /^\.nf/ { code = 1; next }
     code && /^\.fi/ { exit } code { print }' "$top/man/shmctl.1" |
	sed -e 's/\\-/-/g' -e 's/\\e/\\/g' -e "s|/var/lib/shm|$M/env|g" \
	    -e "s|/tmp/copy|$M/copy|g" \
	    -e 's|^shmctl log --follow|timeout 2 "$SHMCTL" log --follow|' >"$M/session.sh"
grep -q '^shmctl import' "$M/session.sh"
if [ $? -eq 0 ]; then ok "the man page has its examples"; else ko "the man page has its examples"; fi
(cd "$M" && shmctl() { "$SHMCTL" "$@"; } && . "$M/session.sh") >"$tmp/out" 2>"$tmp/err"
eq "they run as written (log --follow ended by its timeout)" "$?" 124
eq "import prints what the man page says, twice" "$(grep -c '^imported 1 message$' "$tmp/out")" 2
has "stat shows the message not yet flushed" "$tmp/out" "flusher_lag                                       1  "
eq "static put and get print the git blob SHA-1" "$(grep -c '^0d5af84e173cc2cfbff41da011d0bf2e5a247646$' "$tmp/out")" 2
eq "the copy has the message" "$("$SHMCTL" -e "$M/copy" stat | awk '$1 == "messages" { print $2 }')" 1
eq "log --follow shows the two records" "$(grep -o '"op":"[a-z_]*"' "$tmp/out" | tr '\n' ' ')" '"op":"msg_put" "op":"static_put" '

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
