#!/bin/sh
# tests/test_readme_docs.sh - what README.md and man/shmctl.1 say that a
# machine can check against the code and the programs: every in-page link
# reaches a heading (GitHub's anchors), every file link a file; the
# shm-flusher option table against shm-flusher --help (names and defaults),
# shm-bench's options against its --help;
# the shm_options table against struct shm_options; the systemd unit and
# logrotate file of "Running it on a host" against shm-flusher,
# systemd-analyze and logrotate, its setup steps against the unit; shmctl's
# commands and exit codes against shmctl --help, tools/shmctl/shmctl.h and
# the man page.
# Ends with "N passed, M failed"; exits non-zero if anything failed.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
bin=$(cd "${SHM_BIN:-$top/build/bin}" 2>/dev/null && pwd)
readme=$top/README.md
man=$top/man/shmctl.1
tmp=$(mktemp -d "${TMPDIR:-/tmp}/readme-docs.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
. "$top/tests/harness/check.sh"
# FILE NAME: FILE's lines, each a problem, printed; empty passes
none() {
	sed 's/^/  | /' "$1"
	[ ! -s "$1" ]
	check "$2" $?
}

# ------------------------------------------------------------- links
# GitHub's anchor of a heading: lower case, every character but letters,
# digits, spaces, '-' and '_' dropped, spaces made '-'; a repeated one gets
# -1, -2... (C.UTF-8: letters beyond ASCII stay, '→' and '—' go)
awk '/^```/ { code = !code; next } !code && /^#+ / { sub(/^#+ +/, ""); print }' \
	"$readme" | LC_ALL=C.UTF-8 sed -e 's/.*/\L&/' -e 's/[^[:alnum:] _-]//g' \
	-e 's/ /-/g' | awk '{ n = seen[$0]++; print n ? $0 "-" n : $0 }' \
	>"$tmp/anchors"
grep -o '](#[^)]*)' "$readme" | sed 's/^](#//; s/)$//' | sort -u |
	while read -r a; do
		grep -qxF -- "$a" "$tmp/anchors" || echo "#$a: no heading has it"
	done >"$tmp/bad"
[ "$(grep -c '](#' "$readme")" -gt 20 ]
check "the README links to its sections" $?
none "$tmp/bad" "every ](#anchor) of the README reaches a heading"
grep -o '](\([^#):][^):]*\))' "$readme" | sed 's/^](//; s/)$//' | sort -u |
	while read -r f; do
		[ -e "$top/$f" ] || echo "$f: no such file"
	done >"$tmp/bad"
none "$tmp/bad" "every file the README links to exists"

# ------------------------------------------------- shm-flusher's options
# --help: one option per line, a wrapped one joined, as "NAME DEFAULT"
# (DEFAULT "-" when --help shows none, "" when it is empty)
"$bin/shm-flusher" --help >"$tmp/help"
check "shm-flusher --help exits 0" $?
awk 'function out() { if (o != "") print o; o = "" }
     /^ +-/ { out(); o = $0; next }
     /^ +[^ ]/ && o != "" { o = o " " $0; next }
     { out() } END { out() }' "$tmp/help" |
	sed -n 's/^ *\(-[A-Za-z], \)\{0,1\}--\([a-z0-9-]*\).*\[default: \(.*\)\]$/\2 \3/p
	        t
	        s/^ *\(-[A-Za-z], \)\{0,1\}--\([a-z0-9-]*\).*/\2 -/p' |
	sed 's/ ""$/ /' >"$tmp/help.opts"
[ "$(wc -l <"$tmp/help.opts")" -gt 30 ]
check "shm-flusher --help lists its options" $?
# the README's table: "| `--name ARG` | default | what |", '\|' inside
awk '/^\| option \| default \| what it does \|$/ { on = 1; next }
     on && !/^\|/ { exit } on && !/^\|---/ { print }' "$readme" |
	sed 's/\\|/¦/g' | awk -F'|' '{
		name = $2; sub(/^.*`--/, "", name); sub(/[ `[].*$/, "", name)
		d = $3; gsub(/[` ]/, "", d); print name " " d }' >"$tmp/readme.opts"
while read -r name def; do
	row=$(grep "^$name " "$tmp/readme.opts") ||
		{ echo "--$name: not in the README's table"; continue; }
	case $def in
	"" | -) ;; # empty, or none shown: the row says what it means
	*) [ "${row#* }" = "$def" ] ||
		echo "--$name: --help's default '$def', the README's '${row#* }'" ;;
	esac
done <"$tmp/help.opts" >"$tmp/bad"
none "$tmp/bad" "every shm-flusher option is in the README's table, with --help's default"
cut -d' ' -f1 "$tmp/help.opts" >"$tmp/help.names"
cut -d' ' -f1 "$tmp/readme.opts" | grep -vxF -f "$tmp/help.names" |
	sed 's/^/--/; s/$/: in the README'"'"'s table, not in --help/' >"$tmp/bad"
none "$tmp/bad" "the README's option table names no option --help lacks"

# --------------------------------------------------- shm_options fields
awk '/^typedef struct shm_options \{/ { on = 1; next } on && /^\} shm_options;/ { exit }
     on && /^\t[a-zA-Z_][a-zA-Z_0-9 ]*[ *][a-z_0-9]+;/ {
		sub(/;.*/, ""); sub(/^.*[ *]/, ""); print }' \
	"$top/libshm/shm.h" >"$tmp/fields"
[ "$(wc -l <"$tmp/fields")" -gt 15 ]
check "shm.h's struct shm_options has its fields" $?
awk '/^### Options \(`shm_options`\)/ { on = 1; next } on && /^#/ { exit }
     on && /^\| `/ { split($0, c, "|"); print c[2] }' "$readme" |
	grep -o '`[a-z_0-9]*`' | tr -d '`' >"$tmp/rows"
grep -vxF -f "$tmp/rows" "$tmp/fields" |
	sed 's/$/: a field of shm_options without a row in the README/' >"$tmp/bad"
grep -vxF -f "$tmp/fields" "$tmp/rows" |
	sed 's/$/: a README row, not a field of shm_options/' >>"$tmp/bad"
none "$tmp/bad" "the README's shm_options table has a row per field, and no other"

# ------------------------------------------------------ return codes
# "-FIRST to -LAST": the codes of SHM_ERRORS in shm.h, first and last
sed -n 's/^\tX(SHM_E[A-Z0-9]*, \(-[0-9]*\),.*/\1/p' "$top/libshm/shm.h" >"$tmp/codes"
range="$(head -n 1 "$tmp/codes") to $(tail -n 1 "$tmp/codes")"
[ "$(wc -l <"$tmp/codes")" -gt 10 ] &&
	tr '\n' ' ' <"$readme" | grep -qF -- "\`SHM_E*\`, $range,"
check "the README gives the SHM_E* codes' range, $range as in shm.h" $?

# -------------------------------------------------- shm-bench's options
# every option of its --help's synopsis in the README's Benchmarks section
"$bin/shm-bench" --help >"$tmp/help"
check "shm-bench --help exits 0" $?
sed -n '/^usage:/,/^  /p' "$tmp/help" | grep -o -- '--[a-z-]*' | sort -u \
	>"$tmp/bench.opts"
[ "$(wc -l <"$tmp/bench.opts")" -ge 6 ]
check "shm-bench --help's synopsis lists its options" $?
sed -n '/^## Benchmarks/,/^## /p' "$readme" >"$tmp/readme.bench"
while read -r o; do
	grep -qF -- "$o" "$tmp/readme.bench" ||
		echo "$o: in shm-bench --help, not in the README's Benchmarks"
done <"$tmp/bench.opts" >"$tmp/bad"
none "$tmp/bad" "every shm-bench option is in the README's Benchmarks section"

# ------------------------------------------------ running it on a host
# The README's systemd unit and logrotate file, as an operator copies them:
# the unit's ExecStart takes the config file --print-config wrote (and
# prints it back the same), systemd-analyze verify takes the unit and
# logrotate -d the rotation, where those programs are installed.
sed -n '/^### Running it on a host/,/^## /p' "$readme" >"$tmp/host"
awk '/^```ini$/ { on = 1; next } on && /^```$/ { exit } on { print }' \
	"$tmp/host" >"$tmp/shm-flusher.service"
awk 'seen && /^```$/ { if (on) exit; on = 1; next } on { print }
     /logrotate\.d\/shm-flusher/ { seen = 1 }' "$tmp/host" >"$tmp/rotate.conf"
grep -q '^ExecStart=/usr/local/bin/shm-flusher --config /etc/shm/flusher.conf$' \
	"$tmp/shm-flusher.service" && grep -q '^/var/log/shm/flusher.log {$' "$tmp/rotate.conf"
check "the README has a systemd unit and a logrotate file" $?
# The setup steps make the unit's user and group, and write the config file
# its ExecStart reads, naming the log file the logrotate file rotates.
awk '/^```sh$/ { on = 1; next } on && /^```$/ { exit } on { print }' \
	"$tmp/host" >"$tmp/setup.sh"
user=$(sed -n 's/^User=//p' "$tmp/shm-flusher.service")
group=$(sed -n 's/^Group=//p' "$tmp/shm-flusher.service")
{
	grep -q "^groupadd --system $group " "$tmp/setup.sh" ||
		echo "no groupadd of the unit's Group=$group"
	grep -q "^useradd --system --gid $group .* $user\$" "$tmp/setup.sh" ||
		echo "no useradd of the unit's User=$user in Group=$group"
	grep -q "^runuser -u $user -- shm-flusher " "$tmp/setup.sh" ||
		echo "--print-config not run as the unit's User=$user"
	grep -q -- "--log-file /var/log/shm/flusher.log --print-config >/etc/shm/flusher.conf\$" \
		"$tmp/setup.sh" ||
		echo "no config file of the logrotate file's log, where ExecStart reads it"
	grep -q "^chown $user /etc/shm/flusher.conf " "$tmp/setup.sh" ||
		echo "the config file not given to User=$user"
	grep -q "^install -d -m 0750 -o $user -g $group /var/log/shm\$" "$tmp/setup.sh" ||
		echo "no log directory User=$user may write"
} >"$tmp/bad"
none "$tmp/bad" "the setup steps make the unit's user, group, config file and log directory"
"$bin/shm-flusher" -e "$tmp/env" --redis unix:///nonexistent/redis.sock \
	--log-file "$tmp/flusher.log" --print-config >"$tmp/flusher.conf"
check "shm-flusher --print-config writes a config file" $?
mkdir "$tmp/unit"
sed -e "s|/usr/local/bin/shm-flusher|$bin/shm-flusher|" \
	-e "s|/etc/shm/flusher.conf|$tmp/flusher.conf|" \
	"$tmp/shm-flusher.service" >"$tmp/unit/shm-flusher.service"
cmd=$(sed -n 's/^ExecStart=//p' "$tmp/unit/shm-flusher.service")
# shellcheck disable=SC2086 # the words of the unit's ExecStart
$cmd --print-config >"$tmp/again.conf" && cmp -s "$tmp/flusher.conf" "$tmp/again.conf"
check "the unit's ExecStart takes that file and prints it back the same" $?
if command -v systemd-analyze >/dev/null 2>&1; then
	systemd-analyze verify "$tmp/unit/shm-flusher.service" >"$tmp/bad" 2>&1
	rc=$?
	[ -s "$tmp/bad" ] && rc=1
	sed 's/^/  | /' "$tmp/bad"
	check "systemd-analyze verify takes the unit, saying nothing" $rc
else
	echo "# systemd-analyze not installed: the unit not verified"
fi
if command -v logrotate >/dev/null 2>&1; then
	sed "s|/var/log/shm/flusher.log|$tmp/flusher.log|" "$tmp/rotate.conf" \
		>"$tmp/rotate.here"
	logrotate -d -s "$tmp/rotate.state" "$tmp/rotate.here" >"$tmp/out" 2>&1
	rc=$?
	grep -i 'error' "$tmp/out" | sed 's/^/  | /'
	grep -qi 'error' "$tmp/out" && rc=1
	check "logrotate -d takes the logrotate file" $rc
else
	echo "# logrotate not installed: the logrotate file not checked"
fi

# ------------------------------------------------------------ shmctl
"$bin/shmctl" --help >"$tmp/help"
check "shmctl --help exits 0" $?
sed -n 's/^  \([a-z][a-z]*\)\( \(get\|put\|set\|show\)\)\{0,1\}\([ ]\|$\).*/\1\2/p' \
	"$tmp/help" >"$tmp/cmds"
[ "$(wc -l <"$tmp/cmds")" -ge 20 ]
check "shmctl --help lists its commands" $?
sed -n '/^## shmctl/,/^## /p' "$readme" >"$tmp/readme.shmctl"
while read -r c; do
	grep -qF "\`$c" "$tmp/readme.shmctl" || echo "$c: not in the README's shmctl table"
	grep -qE "^\\.BI? \"?$c([ \"]|$)|^\\.BR $c( |$)" "$man" ||
		echo "$c: not in man/shmctl.1"
done <"$tmp/cmds" >"$tmp/bad"
none "$tmp/bad" "every shmctl command of --help is in the README and the man page"
# exit codes: tools/shmctl/shmctl.h's EX_ values, the README's list, the man page's
sed -n 's/^\tEX_[A-Z_]* = \([0-9]*\),\{0,1\}.*/\1/p' "$top/tools/shmctl/shmctl.h" |
	sort -n >"$tmp/codes"
sed -n 's/^- \*\*\([0-9]*\)\*\* .*/\1/p' "$tmp/readme.shmctl" | sort -n >"$tmp/readme.codes"
awk '/^\.SH EXIT STATUS/ { on = 1; next } on && /^\.SH/ { exit }
     on && /^\.B [0-9]+$/ { print $2 }' "$man" | sort -n >"$tmp/man.codes"
[ -s "$tmp/codes" ] && cmp -s "$tmp/codes" "$tmp/readme.codes" &&
	cmp -s "$tmp/codes" "$tmp/man.codes"
check "shmctl's exit codes: tools/shmctl/shmctl.h's ($(paste -sd' ' "$tmp/codes")), the README's ($(paste -sd' ' "$tmp/readme.codes")), the man page's ($(paste -sd' ' "$tmp/man.codes"))" $?

check_summary
