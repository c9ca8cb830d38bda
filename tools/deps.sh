#!/bin/sh
# Installs the Debian 12 packages shm needs to build, test and run its demo.
# As root it runs apt-get; otherwise it lists exactly what is missing.
set -eu
PKGS="build-essential pkg-config liblmdb-dev lmdb-utils libhiredis-dev libpq-dev
liblz4-dev libxxhash-dev libcmocka-dev libjansson-dev libssl-dev
redis-server redis-tools postgresql postgresql-client git util-linux logrotate"
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && { echo "deps: all packages present"; exit 0; }
if [ "$(id -u)" -ne 0 ]; then
	echo "deps: missing Debian packages:$missing" >&2
	echo "deps: run as root, or: sudo apt-get install -y$missing" >&2
	exit 1
fi
echo "deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
# The packaged servers are not used: tests and the demo start their own.
for s in redis-server postgresql; do
	service "$s" stop >/dev/null 2>&1 || true
done
echo "deps: done"
