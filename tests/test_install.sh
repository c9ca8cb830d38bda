#!/bin/sh
# tests/test_install.sh - what a user of an installed libshm gets: make
# install into a temp DESTDIR and PREFIX (from a default build of its own in
# the temp dir: the build under test keeps its flags), then the shared
# library's versioned name, symlinks and SONAME (libshm.so.MAJOR, MAJOR from
# SHM_VERSION in shm.h), shm.pc, and the README's C API example compiled with
# `pkg-config --cflags --libs shm` (NEEDED libshm.so.MAJOR, runs with
# LD_LIBRARY_PATH) and linked with libshm.a and the libraries shm.pc names
# for it.
# Ends with "N passed, M failed"; exits non-zero if anything failed.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/install-test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
. "$top/tests/harness/check.sh"
show() { # FILE: indented, if not empty
	[ -s "$1" ] && sed 's/^/  | /' "$1"
}

version=$(sed -n 's/^#define SHM_VERSION "\(.*\)"$/\1/p' "$top/libshm/shm.h")
major=${version%%.*}
prefix=/opt/shm
dest=$tmp/dest
lib=$dest$prefix/lib
echo "# version $version, expecting SONAME libshm.so.$major"

# A build without sanitizers, whatever the suite's: make test passes its
# SANITIZER in the environment, and its BUILD and jobserver in MAKEFLAGS.
MAKEFLAGS='' MFLAGS='' make -C "$top" BUILD="$tmp/build" SANITIZER= \
	DESTDIR="$dest" PREFIX="$prefix" install >"$tmp/make.log" 2>&1
rc=$?
check "make install DESTDIR=\$tmp PREFIX=$prefix" $rc
[ $rc -ne 0 ] && tail -n 20 "$tmp/make.log" | sed 's/^/  make| /'

links_ok() { # DIR: libshm.so.VERSION a file, the two others relative links to it
	[ -f "$1/libshm.so.$version" ] && [ ! -L "$1/libshm.so.$version" ] || return 1
	for l in "libshm.so.$major" libshm.so; do
		[ -L "$1/$l" ] || return 1
		case $(readlink "$1/$l") in /*) return 1 ;; esac
		[ "$(readlink -f "$1/$l")" = "$(readlink -f "$1/libshm.so.$version")" ] || return 1
	done
}
links_ok "$tmp/build/lib"
check "the build dir has libshm.so.$version, libshm.so.$major and libshm.so" $?
links_ok "$lib"
rc=$?
check "and so has PREFIX/lib after make install" $rc
[ $rc -ne 0 ] && ls -l "$lib" | sed 's/^/  ls| /'

readelf -d "$lib/libshm.so.$version" >"$tmp/lib.dyn" 2>&1
grep -q "(SONAME).*\[libshm\.so\.$major\]$" "$tmp/lib.dyn"
check "the installed library's SONAME is libshm.so.$major" $?
grep '(SONAME)' "$tmp/lib.dyn" | sed 's/^/  readelf| /'

# The ABI is the public API: the functions shm.h and shm_log.h declare
# (their static inline ones aside), and no internal (shm__) symbol.
declared() { # HEADER: the functions it declares, one per line
	printf '#include <%s>\n' "$1" | cc -E -I"$dest$prefix/include" -x c - |
		awk -v h="/$1\"" '/^# [0-9]+ "/ { f = $3 "" ; next }
			substr(f, length(f) - length(h) + 1) == h' |
		tr '\n' ' ' | tr ';{}' '\n\n\n' | grep -vwE 'static|typedef' |
		grep -oE '\<shm_[a-z][a-z0-9_]*[[:space:]]*\(' | tr -d ' \t('
}
{ declared shm.h; declared shm_log.h; } | sort -u >"$tmp/declared"
nm -D --defined-only "$lib/libshm.so.$version" | awk '{ print $3 }' |
	sort -u >"$tmp/exported"
[ "$(wc -l <"$tmp/declared")" -gt 50 ]
check "shm.h and shm_log.h declare $(wc -l <"$tmp/declared") functions" $?
! grep '^shm__' "$tmp/exported" >"$tmp/internal"
check "the library exports no shm__ symbol" $?
[ -s "$tmp/internal" ] && echo "  $(wc -l <"$tmp/internal") exported, e.g. $(head -n 3 "$tmp/internal" | tr '\n' ' ')"
comm -23 "$tmp/declared" "$tmp/exported" >"$tmp/missing"
[ ! -s "$tmp/missing" ]
check "it exports every function they declare" $?
show "$tmp/missing"
comm -13 "$tmp/declared" "$tmp/exported" | grep -v '^shm__' >"$tmp/extra"
[ ! -s "$tmp/extra" ]
check "and no other symbol" $?
show "$tmp/extra"

pc=$lib/pkgconfig/shm.pc
grep -qx "prefix=$prefix" "$pc"
check "shm.pc is in PREFIX/lib/pkgconfig and names PREFIX (not DESTDIR)" $?
# what a user with shm installed in PREFIX runs, DESTDIR being the sysroot
pkgc() {
	PKG_CONFIG_PATH="$lib/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$dest" pkg-config "$@"
}
[ "$(pkgc --modversion shm)" = "$version" ]
check "pkg-config --modversion shm says $version" $?

sh "$top/tests/harness/readme_example.sh" >"$tmp/app.c"
printf 'ada: bonsoir\nroom general: 1 message(s)\nedits: 1\n' >"$tmp/expected"

flags=$(pkgc --cflags --libs shm)
echo "# pkg-config --cflags --libs shm: $flags"
# shellcheck disable=SC2086
cc -Wall -Wextra -Werror -o "$tmp/app" "$tmp/app.c" $flags 2>"$tmp/cc.err"
check "the README example compiles with pkg-config --cflags --libs shm" $?
show "$tmp/cc.err"
readelf -d "$tmp/app" >"$tmp/app.dyn" 2>&1
grep -q "(NEEDED).*\[libshm\.so\.$major\]$" "$tmp/app.dyn" &&
	! grep -q '(NEEDED).*\[libshm\.so\]$' "$tmp/app.dyn"
check "the program's NEEDED names libshm.so.$major" $?
grep '(NEEDED).*libshm' "$tmp/app.dyn" | sed 's/^/  readelf| /'
LD_LIBRARY_PATH="$lib" "$tmp/app" "$tmp/env" >"$tmp/out" 2>&1 &&
	cmp -s "$tmp/expected" "$tmp/out"
check "it runs with LD_LIBRARY_PATH=PREFIX/lib and prints the README's lines" $?
show "$tmp/out"

# libshm.a in place of -lshm, with the libraries of the modules shm.pc's
# Requires.private names and its Libs.private: all that libshm.a needs.
# (Not pkg-config --static: Debian's libpq.pc asks for -lpgcommon and
# Kerberos and LDAP libraries that libpq-dev does not install.)
requires=$(pkgc --print-requires-private shm)
# shellcheck disable=SC2086
flags="$(pkgc --cflags shm) $lib/libshm.a $(pkg-config --libs $requires) $(sed -n 's/^Libs.private: //p' "$pc")"
echo "# libshm.a: $flags"
# shellcheck disable=SC2086
cc -Wall -Wextra -Werror -o "$tmp/app.static" "$tmp/app.c" $flags 2>"$tmp/cc.err" &&
	! readelf -d "$tmp/app.static" | grep -q '(NEEDED).*libshm'
check "with libshm.a and shm.pc's Requires.private and Libs.private it links (no libshm NEEDED)" $?
show "$tmp/cc.err"
"$tmp/app.static" "$tmp/env.static" >"$tmp/out" 2>&1 &&
	cmp -s "$tmp/expected" "$tmp/out"
check "that program runs and prints the README's lines" $?
show "$tmp/out"

check_summary
