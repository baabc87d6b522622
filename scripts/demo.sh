#!/usr/bin/env bash
# Start a local S3 server and mount a client-side encrypted prefix of its bucket at a directory
# (default /tmp/sealfs-demo), so you can `ls` it and copy files in while the bucket only ever
# holds ciphertext. The key file is .local-s3/demo.key. Unmount with `umount DIR`; stop the
# server with `scripts/local-s3.sh stop`.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-/tmp/sealfs-demo}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/opt/sealfs-tools/target}"

scripts/local-s3.sh start
set -a; . .local-s3/env; set +a
cargo build --release --quiet
mkdir -p "$dir"
if mountpoint -q "$dir"; then umount "$dir"; fi
sealfs="$CARGO_TARGET_DIR/release/sealfs"
key="$PWD/.local-s3/demo.key"
[ -f "$key" ] || "$sealfs" keygen --out "$key"
# local-s3.sh starts each server with an empty bucket, so the demo prefix is new every time.
"$sealfs" init "s3://$SEALFS_TEST_BUCKET/demo" --encryption client --key-file "$key" --force-path-style
"$sealfs" mount "s3://$SEALFS_TEST_BUCKET/demo" "$dir" --encryption client --key-file "$key" \
  --force-path-style --log-file "$PWD/.local-s3/sealfs-demo.log"
echo "sealfs: s3://$SEALFS_TEST_BUCKET/demo is mounted at $dir, encrypted client-side"
echo "  try:  cp -r /etc/ssl $dir/ && ls -l $dir/ssl"
echo "  done: umount $dir && scripts/local-s3.sh stop"
