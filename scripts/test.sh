#!/usr/bin/env bash
# Run every test: unit tests, and integration tests through a real FUSE mount against a local
# S3 server (Garage) that this script starts and stops. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/opt/sealfs-tools/target}"

[ -e /dev/fuse ] || { echo "test.sh: /dev/fuse is missing" >&2; exit 1; }
# fuse3, curl and the tools the tests drive, installed when missing (root or sudo).
scripts/install-deps.sh

scripts/local-s3.sh start
trap 'scripts/local-s3.sh stop' EXIT
set -a; . .local-s3/env; set +a

log=$(mktemp)
cargo test --all-targets "$@" 2>&1 | tee "$log"
# The same filesystem suites again in client-side and SSE-C modes (one suite, a matrix of
# modes); SSE-S3/SSE-KMS have their own tests on moto (tests/sse.rs), Garage ignoring them.
# Unmodified tools (tests/tools.rs) run in none (above) and client mode. The client-mode pass
# talks HTTPS, as every real deployment does: through a TLS terminator the tests start in front
# of Garage, with a CA made for the run (named by AWS_CA_BUNDLE; tests/common/tls.rs).
SEALFS_TEST_TLS=1 SEALFS_TEST_ENCRYPTION=client cargo test --test mount --test listing --test model --test posix --test tools --test hosts --test crash "$@" 2>&1 | tee -a "$log"
SEALFS_TEST_ENCRYPTION=sse-c cargo test --test mount --test listing --test model --test posix "$@" 2>&1 | tee -a "$log"
# Durability tests kill and freeze the S3 server itself: alone, one at a time, in both modes.
for mode in none client; do
  SEALFS_TEST_ENCRYPTION=$mode cargo test --test durability "$@" -- --ignored --test-threads 1 2>&1 | tee -a "$log"
done
# One closing line over every test binary (the last binary cargo runs may have no tests).
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
rm -f "$log"
