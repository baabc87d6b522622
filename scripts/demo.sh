#!/usr/bin/env bash
# Start a local S3 server and mount its bucket at a directory (default /tmp/sealfs-demo), so
# you can `ls` it and copy files in. Unmount with `umount DIR`; stop the server with
# `scripts/local-s3.sh stop`.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-/tmp/sealfs-demo}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/opt/sealfs-tools/target}"

scripts/local-s3.sh start
set -a; . .local-s3/env; set +a
cargo build --release --quiet
mkdir -p "$dir"
if mountpoint -q "$dir"; then umount "$dir"; fi
"$CARGO_TARGET_DIR/release/sealfs" mount "s3://$SEALFS_TEST_BUCKET/demo" "$dir" \
  --force-path-style --log-file "$PWD/.local-s3/sealfs-demo.log"
echo "sealfs: s3://$SEALFS_TEST_BUCKET/demo is mounted at $dir"
echo "  try:  cp -r /etc/ssl $dir/ && ls -l $dir/ssl"
echo "  done: umount $dir && scripts/local-s3.sh stop"
