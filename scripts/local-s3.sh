#!/usr/bin/env bash
# Start or stop a local S3 server (Garage, single node) on 127.0.0.1 for sealfs's tests, demo
# and benchmarks. Installs Garage once into a stable place outside the clone and reuses it.
#
#   scripts/local-s3.sh start   # then: source .local-s3/env
#   scripts/local-s3.sh stop
#   scripts/local-s3.sh kill-s3 | restart-s3   # durability tests: S3 vanishes / comes back
#
# Settings are written as shell exports to .local-s3/env (git-ignored): AWS_ENDPOINT_URL_S3,
# AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, SEALFS_TEST_BUCKET.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
state="$here/.local-s3"
tools="${SEALFS_TOOLS_DIR:-/opt/sealfs-tools}"
garage_version=2.5.0
garage="$tools/garage-$garage_version/bin/garage"

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Three consecutive free ports from $1 up (another server, e.g. from another clone, may hold
# the default ones).
pick_ports() {
  local base=$1
  while port_busy "$base" || port_busy $((base + 1)) || port_busy $((base + 3)); do
    base=$((base + 10))
  done
  s3_port=$base; rpc_port=$((base + 1)); admin_port=$((base + 3))
}

install_garage() {
  [ -x "$garage" ] && return 0
  echo "local-s3: building Garage $garage_version (once; about 20 minutes on 2 cores)" >&2
  mkdir -p "$tools"
  cargo install garage --version "$garage_version" --locked --root "$tools/garage-$garage_version" >&2
}

install_moto() {
  [ -x "$tools/moto-venv/bin/moto_server" ] && return 0
  echo "local-s3: installing moto (S3+KMS server used for SSE-S3/SSE-KMS tests)" >&2
  python3 -m venv "$tools/moto-venv" >&2
  "$tools/moto-venv/bin/pip" install -q 'moto[server]' >&2
}

# moto answers S3 and KMS on one port; it applies and echoes SSE-S3/SSE-KMS (Garage does not).
start_moto() {
  install_moto
  local port=$((s3_port + 100))
  while port_busy "$port"; do port=$((port + 1)); done
  nohup "$tools/moto-venv/bin/moto_server" -H 127.0.0.1 -p "$port" > "$state/moto.log" 2>&1 &
  echo $! > "$state/moto.pid"
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$port/moto-api/" >/dev/null 2>&1 && break
    sleep 0.2
  done
  curl -sf "http://127.0.0.1:$port/moto-api/" >/dev/null || {
    echo "local-s3: moto did not start; see $state/moto.log" >&2; exit 1; }
  curl -sf -X PUT "http://127.0.0.1:$port/sealfs-test" >/dev/null
  local key_id
  key_id=$(curl -sf -X POST "http://127.0.0.1:$port/" \
    -H 'X-Amz-Target: TrentService.CreateKey' -H 'Content-Type: application/x-amz-json-1.1' \
    -H 'Authorization: AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/kms/aws4_request, SignedHeaders=host, Signature=0' \
    -d '{"Description":"sealfs test key"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["KeyMetadata"]["KeyId"])')
  cat >> "$state/env" <<ENV
# moto: S3 (applies SSE-S3/SSE-KMS) and KMS on one port.
export AWS_ENDPOINT_URL_KMS=http://127.0.0.1:$port
export SEALFS_MOTO_ENDPOINT=http://127.0.0.1:$port
export SEALFS_TEST_KMS_KEY_ID=$key_id
ENV
}

install_localstack() {
  [ -x "$tools/localstack-venv/bin/python" ] && \
    "$tools/localstack-venv/bin/python" -c 'import localstack, service_identity' 2>/dev/null && return 0
  echo "local-s3: installing LocalStack 3.8.1 (KMS that refuses disabled keys; about 90 s)" >&2
  python3 -m venv "$tools/localstack-venv" >&2
  # Pins from DESIGN-NOTES: newer dependencies break LocalStack 3.8.1.
  "$tools/localstack-venv/bin/pip" install -q 'localstack-core[base-runtime]==3.8.1' \
    'moto-ext[all]==5.0.15.post4' 'cryptography>=41.0.5,<43' 'pyopenssl>=23,<24.3' 'cbor2<5.7' \
    'psutil<6' 'service_identity<24.2' >&2
}

# LocalStack: its KMS for what moto does not do (refuse a disabled key), and its S3 as a third
# server for `sealfs doctor`'s tests (bucket sealfs-test).
start_localstack() {
  install_localstack
  local port=$((s3_port + 200))
  while port_busy "$port"; do port=$((port + 1)); done
  mkdir -p "$state/localstack"
  OVERRIDE_IN_DOCKER=0 FILESYSTEM_ROOT="$state/localstack" SERVICES=kms,s3 \
  GATEWAY_LISTEN="127.0.0.1:$port" EAGER_SERVICE_LOADING=1 SKIP_SSL_CERT_DOWNLOAD=1 DNS_ADDRESS=0 \
  PERSISTENCE=0 nohup "$tools/localstack-venv/bin/python" -m localstack.runtime.main \
    > "$state/localstack.log" 2>&1 &
  echo $! > "$state/localstack.pid"
  for _ in $(seq 150); do
    curl -sf "http://127.0.0.1:$port/_localstack/health" >/dev/null 2>&1 && break
    sleep 0.2
  done
  curl -sf "http://127.0.0.1:$port/_localstack/health" >/dev/null || {
    echo "local-s3: LocalStack did not start; see $state/localstack.log" >&2; exit 1; }
  curl -sf -X PUT "http://127.0.0.1:$port/sealfs-test" >/dev/null
  cat >> "$state/env" <<ENV
# LocalStack: a KMS endpoint where DisableKey makes Decrypt fail.
export SEALFS_LOCALSTACK_KMS=http://127.0.0.1:$port
ENV
}

stop() {
  if [ -f "$state/localstack.pid" ]; then
    pid=$(cat "$state/localstack.pid")
    # Its SIGTERM sometimes hangs: SIGKILL after 5 s.
    if kill "$pid" 2>/dev/null; then
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$state/localstack.pid"
  fi
  if [ -f "$state/moto.pid" ]; then
    kill "$(cat "$state/moto.pid")" 2>/dev/null || true
    rm -f "$state/moto.pid"
  fi
  if [ -f "$state/garage.pid" ]; then
    pid=$(cat "$state/garage.pid")
    if kill "$pid" 2>/dev/null; then
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$state/garage.pid"
  fi
}

# Run Garage on the config in $state (keys as given), wait until it is healthy.
run_garage() {
  GARAGE_DEFAULT_ACCESS_KEY="$1" GARAGE_DEFAULT_SECRET_KEY="$2" \
  GARAGE_DEFAULT_BUCKET=sealfs-test RUST_LOG=warn \
    nohup "$garage" -c "$state/garage.toml" server --single-node --default-bucket \
    >> "$state/garage.log" 2>&1 &
  echo $! > "$state/garage.pid"
  local admin
  admin=$(sed -n '/^\[admin\]/,$ s/^api_bind_addr = "\(.*\)"/\1/p' "$state/garage.toml")
  for _ in $(seq 100); do
    if curl -sf "http://$admin/health" >/dev/null 2>&1; then break; fi
    sleep 0.2
  done
  curl -sf "http://$admin/health" >/dev/null || {
    echo "local-s3: Garage did not become healthy; see $state/garage.log" >&2
    tail -20 "$state/garage.log" >&2; exit 1; }
}

# For durability tests: make the S3 server vanish (SIGKILL, data kept), or bring it back on
# the same port with the same data.
kill_s3() {
  [ -f "$state/garage.pid" ] && kill -9 "$(cat "$state/garage.pid")" 2>/dev/null || true
  rm -f "$state/garage.pid"
}
restart_s3() {
  kill_s3
  # shellcheck disable=SC1091
  . "$state/env"
  run_garage "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY"
  for _ in $(seq 50); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "$AWS_ENDPOINT_URL_S3/sealfs-test" || true)
    [ "$code" = 403 ] || [ "$code" = 200 ] && break
    sleep 0.2
  done
}

start() {
  install_garage
  stop
  pick_ports "${SEALFS_S3_PORT:-3900}"
  mkdir -p "$state"
  # Fresh data on every start: tests expect an empty bucket.
  rm -rf "$state/meta" "$state/data"
  local secret key_id key_secret
  secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
  key_id="GK$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  key_secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
  cat > "$state/garage.toml" <<CONF
metadata_dir = "$state/meta"
data_dir = "$state/data"
db_engine = "sqlite"
metadata_fsync = false
data_fsync = false
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc_port"
rpc_public_addr = "127.0.0.1:$rpc_port"
rpc_secret = "$secret"
[s3_api]
s3_region = "us-east-1"
api_bind_addr = "127.0.0.1:$s3_port"
root_domain = ".s3.localhost"
[admin]
api_bind_addr = "127.0.0.1:$admin_port"
admin_token = "$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
CONF
  : > "$state/garage.log"
  run_garage "$key_id" "$key_secret"
  cat > "$state/env" <<ENV
export AWS_ENDPOINT_URL_S3=http://127.0.0.1:$s3_port
export AWS_ACCESS_KEY_ID=$key_id
export AWS_SECRET_ACCESS_KEY=$key_secret
export AWS_REGION=us-east-1
export SEALFS_TEST_BUCKET=sealfs-test
# Local only: keep the AWS SDK from probing the EC2 metadata address for credentials/region.
export AWS_EC2_METADATA_DISABLED=true
ENV
  # Wait until the bucket answers S3 requests (the default bucket is made at start-up).
  for _ in $(seq 50); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$s3_port/sealfs-test" || true)
    [ "$code" = 403 ] || [ "$code" = 200 ] && break
    sleep 0.2
  done
  start_moto
  start_localstack
  echo "local-s3: Garage on http://127.0.0.1:$s3_port, bucket sealfs-test; moto (S3+KMS) on the port in SEALFS_MOTO_ENDPOINT; LocalStack (KMS, and S3 with bucket sealfs-test) at SEALFS_LOCALSTACK_KMS; settings in $state/env" >&2
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  kill-s3) kill_s3 ;;
  restart-s3) restart_s3 ;;
  install) install_garage; install_moto; install_localstack ;;
  *) echo "usage: $0 start|stop|install|kill-s3|restart-s3" >&2; exit 2 ;;
esac
