#!/usr/bin/env bash
# Install the system packages the tests need and a fresh Debian/Ubuntu machine lacks: fuse3
# (fusermount3, for every mount), curl (local-s3.sh waits on the servers with it) and the
# unmodified tools the tests drive through a mount (tests/tools.rs: rsync, restic, sqlite3,
# git). Called by scripts/test.sh and .ci/run; does nothing when all are there.
set -euo pipefail

need=()
command -v fusermount3 >/dev/null || need+=(fuse3)
command -v curl >/dev/null || need+=(curl)
command -v python3 >/dev/null || need+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
# groff renders the man pages tests/manual.rs checks.
command -v groff >/dev/null || need+=(groff-base)
for tool in rsync restic sqlite3 git; do
  command -v "$tool" >/dev/null || need+=("$tool")
done
[ ${#need[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${need[*]}" >&2
if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null; then
  sudo=(sudo)
else
  echo "install-deps: missing ${need[*]}; as root run: apt-get install ${need[*]}" >&2
  exit 1
fi
command -v apt-get >/dev/null || {
  echo "install-deps: no apt-get here; install these with your package manager: ${need[*]}" >&2
  exit 1
}
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${need[@]}"
