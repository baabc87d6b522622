#!/usr/bin/env bash
# Benchmark sealfs (none and client modes) against s3fs, rclone mount (plain and crypt,
# --vfs-cache-mode writes) and a raw aws-sdk-s3 baseline, all on the same local Garage in the
# same run. Prints a table (medians, ratios to raw and to s3fs) and saves every figure as JSON.
#
#   scripts/bench.sh                 # RUNS=3 FIO_SECS=10 by default
#   RUNS=1 FIO_SECS=5 SYSTEMS="raw sealfs-client s3fs" scripts/bench.sh
#   TLS=1 scripts/bench.sh           # every system through a local TLS terminator (HTTPS)
#
# Disk caches (SYSTEMS sealfs-client-dc, s3fs-cache, rclone-full): sealfs client mode with
# --cache-dir (4 GiB, memory cache 256 MiB), s3fs with use_cache, rclone with
# --vfs-cache-mode full (4 GiB); rows dc_*: a 2 GiB file read cold, read again (page cache
# dropped: from the disk cache), read after a remount, and random 4 KiB reads over it. raw's
# dc_* rows are the same reads from the bucket, for the ratio.
#
# Needs root (drops the page cache between cold runs) and apt packages s3fs, rclone, fio,
# attr (installed if missing). Not a test: figures depend on this machine and its load.
set -euo pipefail
cd "$(dirname "$0")/.."
here=$(pwd)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/opt/sealfs-tools/target}"
RUNS=${RUNS:-3}
FIO_SECS=${FIO_SECS:-10}
SYSTEMS=${SYSTEMS:-"raw sealfs-none sealfs-client s3fs rclone rclone-crypt"}
work=${BENCH_DIR:-/tmp/sealfs-bench}
out=${BENCH_OUT:-$here/bench-results.json}

need=()
for t in s3fs rclone fio; do command -v $t >/dev/null || need+=("$t"); done
if [ ${#need[@]} -gt 0 ]; then
  pkgs=$(printf '%s\n' "${need[@]}")
  apt-get install -y -qq $pkgs >/dev/null 2>&1 || { apt-get update -qq; apt-get install -y -qq $pkgs >/dev/null; }
fi

cargo build --release --bin sealfs --example raw --example populate --example tls_terminator >&2
bin=$CARGO_TARGET_DIR/release
sealfs=$bin/sealfs
raw=$bin/examples/raw

scripts/local-s3.sh start >&2
trap 'cleanup' EXIT
set -a; . .local-s3/env; set +a
unset AWS_CA_BUNDLE
bucket=$SEALFS_TEST_BUCKET
mkdir -p "$work"
s3fs_tls=()
if [ -n "${TLS:-}" ]; then
  # Every system talks HTTPS to the same Garage through one terminator (a CA made for the
  # run). sealfs and raw trust it through AWS_CA_BUNDLE, rclone through --ca-cert (it refuses
  # AWS_CA_BUNDLE with its own HTTP client: see rcl), s3fs skips verification (libcurl; the
  # handshake is once per connection either way).
  "$bin/examples/tls_terminator" "${AWS_ENDPOINT_URL_S3#http://}" "$work/ca.pem" > "$work/tls.url" &
  tls_pid=$!
  for _ in $(seq 100); do [ -s "$work/tls.url" ] && break; sleep 0.1; done
  AWS_ENDPOINT_URL_S3=$(cat "$work/tls.url"); export AWS_ENDPOINT_URL_S3
  export AWS_CA_BUNDLE=$work/ca.pem RCLONE_CA_CERT=$work/ca.pem
  s3fs_tls=(-o no_check_certificate)
  echo "bench: over HTTPS at $AWS_ENDPOINT_URL_S3" >&2
fi
rcl() { env -u AWS_CA_BUNDLE rclone "$@"; }
results=$work/results.jsonl
# BENCH_KEEP=1 adds to the previous run's figures (e.g. to run some systems again).
[ -n "${BENCH_KEEP:-}" ] || : > "$results"

# ---------------------------------------------------------------------------------------
# Fixtures (local): 1 GiB and 4 GiB of random bytes, 1,000 files of 4 KiB, a flat directory
# of 10,000 empty files and a tree of 100 directories x 100 files.
[ -f "$work/1g.bin" ] || head -c 1G /dev/urandom > "$work/1g.bin"
[ -f "$work/4g.bin" ] || head -c 4G /dev/urandom > "$work/4g.bin"
[ -f "$work/2g.bin" ] || head -c 2G /dev/urandom > "$work/2g.bin"
# (The 1,000 small files get new bytes before each write: fresh_small, below.)
if [ ! -d "$work/flat" ]; then
  mkdir -p "$work/flat"; (cd "$work/flat" && seq -w 1 10000 | sed 's/^/e/' | xargs touch)
fi
if [ ! -d "$work/tree" ]; then
  for d in $(seq -w 1 100); do
    mkdir -p "$work/tree/d$d"; (cd "$work/tree/d$d" && seq -w 1 100 | sed 's/^/f/' | xargs touch)
  done
fi

key=$work/client.key
[ -f "$key" ] || "$sealfs" keygen --out "$key" 2>/dev/null
passwd=$work/s3fs.passwd
echo "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" > "$passwd"; chmod 600 "$passwd"
export RCLONE_CONFIG_GARAGE_TYPE=s3 RCLONE_CONFIG_GARAGE_PROVIDER=Other
export RCLONE_CONFIG_GARAGE_ENDPOINT=$AWS_ENDPOINT_URL_S3 RCLONE_CONFIG_GARAGE_REGION=us-east-1
export RCLONE_CONFIG_GARAGE_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID
export RCLONE_CONFIG_GARAGE_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY
export RCLONE_CONFIG_GARAGE_FORCE_PATH_STYLE=true
export RCLONE_CONFIG_GCRYPT_TYPE=crypt RCLONE_CONFIG_GCRYPT_REMOTE=garage:$bucket/rclone-crypt
RCLONE_CONFIG_GCRYPT_PASSWORD=$(rclone obscure sealfs-bench); export RCLONE_CONFIG_GCRYPT_PASSWORD

mnt=$work/mnt
mkdir -p "$mnt"
rc_port=5572

cleanup() {
  set +e
  mountpoint -q "$mnt" && { fusermount3 -u "$mnt" 2>/dev/null || umount -l "$mnt"; }
  [ -n "${tls_pid:-}" ] && kill "$tls_pid" 2>/dev/null
  scripts/local-s3.sh stop >&2
}

now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc | sed 's/^\./0./'; }
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }
record() { # system workload value unit [requests]
  printf '{"system":"%s","workload":"%s","value":%s,"unit":"%s","requests":%s}\n' \
    "$1" "$2" "$3" "$4" "${5:-null}" >> "$results"
  printf '  %-14s %-22s %10s %s%s\n' "$1" "$2" "$3" "$4" "${5:+  ($5 requests)}" >&2
}

# mount SYSTEM PREFIX: the system's view of s3://bucket/PREFIX at $mnt.
mount_sys() {
  local sys=$1 prefix=$2
  case $sys in
    sealfs-none)
      "$sealfs" mount "s3://$bucket/$prefix" "$mnt" --force-path-style ;;
    sealfs-client)
      "$sealfs" init "s3://$bucket/$prefix" --key-file "$key" --encryption client \
        --force-path-style 2>/dev/null || true
      "$sealfs" mount "s3://$bucket/$prefix" "$mnt" --key-file "$key" --force-path-style ;;
    sealfs-client-dc)
      "$sealfs" init "s3://$bucket/$prefix" --key-file "$key" --encryption client \
        --force-path-style 2>/dev/null || true
      "$sealfs" mount "s3://$bucket/$prefix" "$mnt" --key-file "$key" --force-path-style \
        --cache-dir "$work/sealfs-dc" --cache-dir-size 4GiB --cache-size-mib 256 ;;
    s3fs)
      s3fs "$bucket:/" "$mnt" -o "passwd_file=$passwd,url=$AWS_ENDPOINT_URL_S3" \
        -o use_path_request_style,endpoint=us-east-1 "${s3fs_tls[@]}" ;;
    s3fs-cache)
      mkdir -p "$work/s3fs-dc"
      s3fs "$bucket:/" "$mnt" -o "passwd_file=$passwd,url=$AWS_ENDPOINT_URL_S3" \
        -o use_path_request_style,endpoint=us-east-1,use_cache="$work/s3fs-dc" "${s3fs_tls[@]}" ;;
    rclone-full)
      rcl mount "garage:$bucket/$prefix" "$mnt" --vfs-cache-mode full --vfs-cache-max-size 4G \
        --rc --rc-addr "127.0.0.1:$rc_port" --rc-no-auth --cache-dir "$work/rclone-dc" \
        --log-file "$work/rclone.log" & ;;
    # In the background rather than --daemon: rclone 1.60's daemon mode gave up with "mount
    # not ready" here although the mount itself works.
    rclone)
      rcl mount "garage:$bucket/$prefix" "$mnt" --vfs-cache-mode writes \
        --rc --rc-addr "127.0.0.1:$rc_port" --rc-no-auth --cache-dir "$work/rclone-cache" \
        --log-file "$work/rclone.log" & ;;
    rclone-crypt)
      rcl mount "gcrypt:$prefix" "$mnt" --vfs-cache-mode writes \
        --rc --rc-addr "127.0.0.1:$rc_port" --rc-no-auth --cache-dir "$work/rclone-cache" \
        --log-file "$work/rclone.log" & ;;
  esac
  case $sys in rclone*) rclone_pid=$! ;; esac
  case $sys in sealfs-*) sealfs_mount_pid=$(sealfs_pid "$prefix") ;; esac
  for _ in $(seq 100); do mountpoint -q "$mnt" && break; sleep 0.1; done
  mountpoint -q "$mnt" || { echo "bench: $sys did not mount" >&2; exit 1; }
  # s3fs mounts the bucket: the prefix is a directory in it.
  case $sys in s3fs*) mkdir -p "$mnt/$prefix" ;; esac
}
dir_of() { case $1 in s3fs*) echo "$mnt/$2" ;; *) echo "$mnt" ;; esac; }

# rclone uploads after close: "durable" means its upload queue is empty.
wait_durable() {
  case $1 in
    rclone*)
      sleep 0.5
      while :; do
        # (local: the caller's loop variable is also called s)
        local stats
        stats=$(rclone rc --url "http://127.0.0.1:$rc_port" vfs/stats 2>/dev/null || echo '{}')
        python3 -c 'import json,sys; d=json.load(sys.stdin).get("diskCache",{}); sys.exit(0 if d.get("uploadsInProgress",0)+d.get("uploadsQueued",0)==0 else 1)' <<<"$stats" && break
        sleep 0.1
      done ;;
  esac
}
unmount_sys() {
  wait_durable "$1"
  fusermount3 -u "$mnt" 2>/dev/null || umount "$mnt"
  for _ in $(seq 50); do mountpoint -q "$mnt" || break; sleep 0.1; done
  # The next rclone mount needs the rc port this one holds until it exits; a sealfs process
  # may still be writing directory indexes: let it finish before the next workload.
  case $1 in
    rclone*) wait "$rclone_pid" 2>/dev/null || true ;;
    sealfs-*) for _ in $(seq 300); do kill -0 "$sealfs_mount_pid" 2>/dev/null || break; sleep 0.1; done ;;
  esac
  # rclone keeps file data in its disk cache across mounts: cold means empty.
  rm -rf "$work/rclone-cache"
}
requests() { # total S3 requests made by this sealfs mount so far (nothing for the peers)
  { "$sealfs" stats "$mnt" 2>/dev/null || true; } | awk '$1=="requests"{print $2}'
}
sealfs_pid() { pgrep -f "sealfs mount s3://$bucket/$1 " | head -1; }

fio_iops() { # file bs -> IOPS
  fio --name=r --filename="$1" --rw=randread --bs="$2" --ioengine=psync --iodepth=1 \
    --runtime="$FIO_SECS" --time_based --readonly --invalidate=0 --output-format=json 2>/dev/null |
    python3 -c 'import json,sys; print(round(json.load(sys.stdin)["jobs"][0]["read"]["iops"],1))'
}

secs() { sed -n 's/.*seconds=\([0-9.]*\).*/\1/p'; }
per_sec() { awk -F'ops=' -v s="$FIO_SECS" '{printf "%.1f", $2/s}'; }

bench_raw() {
  local p=bench-raw-$RANDOM
  fresh_1g
  record raw seq_write_1g "$("$raw" put "$work/1g-fresh.bin" "s3://$bucket/$p/f" | secs)" s
  record raw cold_read_1g "$("$raw" get "s3://$bucket/$p/f" | secs)" s
  record raw rand_4k_cold_iops "$("$raw" random "s3://$bucket/$p/f" 4096 "$FIO_SECS" | per_sec)" iops
  record raw rand_64k_cold_iops "$("$raw" random "s3://$bucket/$p/f" 65536 "$FIO_SECS" | per_sec)" iops
  fresh_small
  record raw small_create_1000 "$("$raw" put-dir "$work/small" "s3://$bucket/$p/small" | secs)" s
  record raw small_stat_1000 "$("$raw" head-dir "s3://$bucket/$p/small" | secs)" s
  record raw small_read_1000 "$("$raw" get-dir "s3://$bucket/$p/small" | secs)" s
  # The listing alone (no HEAD): what `ls -l` costs when the listing suffices.
  record raw ls_l_10k "$("$raw" list "s3://$bucket/listing-plain/flat" | secs)" s
  record raw stat_10k_sequential_heads "$("$raw" head-dir "s3://$bucket/listing-plain/flat" | secs)" s
}

# Garage stores a block it already holds (same content hash) only once: writing the same
# 1 GiB again would cost it no disk writes, flattering every system that stores plaintext
# (client-mode ciphertext is new each time). Each write gets fresh random bytes (untimed).
fresh_1g() { head -c 1G /dev/urandom > "$work/1g-fresh.bin"; }
# The same for the 1,000 small files (4 KiB each: Garage keeps them as blocks, not inline).
# Measured with raw put-dir: 2.85-3.08 s with new bytes, 2.43-2.50 s writing the same files
# again, so reused files favoured every system but client mode by about 0.5 s.
fresh_small() {
  rm -rf "$work/small"; mkdir -p "$work/small"
  python3 -c 'import os, sys
for i in range(1, 1001):
    with open(f"{sys.argv[1]}/f{i:04}", "wb") as f: f.write(os.urandom(4096))' "$work/small"
}

bench_mount() {
  local sys=$1 p=bench-$1-$RANDOM d t r0 r1 pid
  mount_sys "$sys" "$p"; d=$(dir_of "$sys" "$p"); r0=$(requests)
  fresh_1g
  t=$(now); cp "$work/1g-fresh.bin" "$d/f"; wait_durable "$sys"; record "$sys" seq_write_1g "$(since "$t")" s "$(r1=$(requests); [ -n "$r1" ] && echo $((r1 - r0)))"
  unmount_sys "$sys"; drop_caches
  mount_sys "$sys" "$p"; d=$(dir_of "$sys" "$p"); r0=$(requests)
  t=$(now); cat "$d/f" > /dev/null; record "$sys" cold_read_1g "$(since "$t")" s "$(r1=$(requests); [ -n "$r1" ] && echo $((r1 - r0)))"
  t=$(now); cat "$d/f" > /dev/null; record "$sys" hot_read_1g "$(since "$t")" s
  unmount_sys "$sys"; drop_caches
  mount_sys "$sys" "$p"; d=$(dir_of "$sys" "$p"); r0=$(requests)
  record "$sys" rand_4k_cold_iops "$(fio_iops "$d/f" 4k)" iops "$(r1=$(requests); [ -n "$r1" ] && echo $((r1 - r0)))"
  record "$sys" rand_64k_cold_iops "$(fio_iops "$d/f" 64k)" iops
  record "$sys" rand_4k_hot_iops "$(fio_iops "$d/f" 4k)" iops
  unmount_sys "$sys"
  mount_sys "$sys" "$p"; d=$(dir_of "$sys" "$p"); r0=$(requests)
  fresh_small
  t=$(now); cp -r "$work/small" "$d/small"; wait_durable "$sys"; record "$sys" small_create_1000 "$(since "$t")" s "$(r1=$(requests); [ -n "$r1" ] && echo $((r1 - r0)))"
  unmount_sys "$sys"; drop_caches
  mount_sys "$sys" "$p"; d=$(dir_of "$sys" "$p"); r0=$(requests)
  t=$(now); stat "$d"/small/* > /dev/null; record "$sys" small_stat_1000 "$(since "$t")" s "$(r1=$(requests); [ -n "$r1" ] && echo $((r1 - r0)))"
  r0=$(requests)
  t=$(now); cat "$d"/small/* > /dev/null; record "$sys" small_read_1000 "$(since "$t")" s "$(r1=$(requests); [ -n "$r1" ] && echo $((r1 - r0)))"
  unmount_sys "$sys"
  drop_objects "$p"
}
# Every system writes >1 GiB per run: delete it (Garage frees the blocks after its GC delay),
# so that a full run stays within a few tens of GiB of disk.
drop_objects() {
  rcl purge "garage:$bucket/$1" -q 2>/dev/null || true
  rcl purge "garage:$bucket/rclone-crypt/$1" -q 2>/dev/null || true
}

# Listing fixtures, once per system family: plain objects (rclone copy) serve raw, sealfs
# none, s3fs and rclone; client mode and rclone crypt need their own encodings.
populate_listings() {
  local sys=$1
  case $sys in
    raw|sealfs-none|s3fs|rclone)
      # Once per server start (local-s3.sh starts with an empty bucket).
      [ -n "${plain_listing_done:-}" ] && return 0
      rcl copy "$work/flat" "garage:$bucket/listing-plain/flat" --transfers 32 -q
      rcl copy "$work/tree" "garage:$bucket/listing-plain/tree" --transfers 32 -q
      plain_listing_done=1 ;;
    sealfs-client)
      mount_sys sealfs-client listing-client
      cp -r "$work/flat" "$work/tree" "$mnt/"
      unmount_sys sealfs-client ;;
    rclone-crypt)
      rcl copy "$work/flat" "gcrypt:listing/flat" --transfers 32 -q
      rcl copy "$work/tree" "gcrypt:listing/tree" --transfers 32 -q ;;
  esac
}
listing_prefix() {
  case $1 in sealfs-client) echo listing-client ;; rclone-crypt) echo listing ;; *) echo listing-plain ;; esac
}
# The first `ls -l` ever of the directory through sealfs: no directory index exists yet, so
# every file costs a HEAD (in parallel); that listing writes the index later runs use.
first_listing() {
  local sys=$1 p d t r0 r1
  case $sys in sealfs-*) ;; *) return 0 ;; esac
  p=$(listing_prefix "$sys")
  drop_caches
  mount_sys "$sys" "$p"; d=$(dir_of "$sys" "$p")
  r0=$(requests)
  t=$(now); ls -l "$d/flat" > /dev/null; record "$sys" ls_l_10k_first "$(since "$t")" s "$(r1=$(requests); [ -n "$r1" ] && echo $((r1 - r0)))"
  unmount_sys "$sys"
}
bench_listing() {
  local sys=$1 p d t r0 r1
  p=$(listing_prefix "$sys")
  drop_caches
  mount_sys "$sys" "$p"; d=$(dir_of "$sys" "$p")
  r0=$(requests)
  t=$(now); ls -l "$d/flat" > /dev/null; record "$sys" ls_l_10k "$(since "$t")" s "$(r1=$(requests); [ -n "$r1" ] && echo $((r1 - r0)))"
  r0=$(requests)
  t=$(now); find "$d/tree" > /dev/null; record "$sys" find_10k "$(since "$t")" s "$(r1=$(requests); [ -n "$r1" ] && echo $((r1 - r0)))"
  unmount_sys "$sys"
}

# The disk caches: a 2 GiB file (written through the system, caches then emptied) read
# cold, again with the page cache dropped (the memory caches hold less than 2 GiB: the
# disk cache serves), after a remount, and at random in 4 KiB reads.
bench_dc() {
  local sys=$1 p=bench-$1-$RANDOM d t r0 r1
  rm -rf "$work/sealfs-dc" "$work/s3fs-dc" "$work/rclone-dc"
  mount_sys "$sys" "$p"; d=$(dir_of "$sys" "$p")
  cp "$work/2g.bin" "$d/f"
  unmount_sys "$sys"
  rm -rf "$work/sealfs-dc" "$work/s3fs-dc" "$work/rclone-dc"; drop_caches
  mount_sys "$sys" "$p"; d=$(dir_of "$sys" "$p"); r0=$(requests)
  t=$(now); cat "$d/f" > /dev/null; record "$sys" dc_cold_read_2g "$(since "$t")" s "$(r1=$(requests); [ -n "$r1" ] && echo $((r1 - r0)))"
  drop_caches; r0=$(requests)
  t=$(now); cat "$d/f" > /dev/null; record "$sys" dc_again_read_2g "$(since "$t")" s "$(r1=$(requests); [ -n "$r1" ] && echo $((r1 - r0)))"
  unmount_sys "$sys"; drop_caches
  mount_sys "$sys" "$p"; d=$(dir_of "$sys" "$p"); r0=$(requests)
  t=$(now); cat "$d/f" > /dev/null; record "$sys" dc_remount_read_2g "$(since "$t")" s "$(r1=$(requests); [ -n "$r1" ] && echo $((r1 - r0)))"
  drop_caches; r0=$(requests)
  record "$sys" dc_rand_4k_iops "$(fio_iops "$d/f" 4k)" iops "$(r1=$(requests); [ -n "$r1" ] && echo $((r1 - r0)))"
  unmount_sys "$sys"
  rm -rf "$work/sealfs-dc" "$work/s3fs-dc" "$work/rclone-dc"
  drop_objects "$p"
}
# raw has no cache: its dc_* rows are the same reads from the bucket.
bench_raw_dc() {
  local p=bench-rawdc-$RANDOM v
  "$raw" put "$work/2g.bin" "s3://$bucket/$p/f" > /dev/null
  v=$("$raw" get "s3://$bucket/$p/f" | secs)
  record raw dc_cold_read_2g "$v" s
  record raw dc_again_read_2g "$("$raw" get "s3://$bucket/$p/f" | secs)" s
  record raw dc_remount_read_2g "$("$raw" get "s3://$bucket/$p/f" | secs)" s
  record raw dc_rand_4k_iops "$("$raw" random "s3://$bucket/$p/f" 4096 "$FIO_SECS" | per_sec)" iops
  drop_objects "$p"
}

bench_rss() {
  local sys=$1 p=bench-rss-$RANDOM pid hwm
  mount_sys "$sys" "$p"; pid=$(sealfs_pid "$p")
  cp "$work/4g.bin" "$mnt/f"
  hwm=$(awk '/VmHWM/{print $2}' "/proc/$pid/status")
  record "$sys" peak_rss_write_4g "$((hwm / 1024))" MiB
  unmount_sys "$sys"
  drop_objects "$p"
}

is_dc() { case $1 in *-dc|s3fs-cache|rclone-full) return 0 ;; *) return 1 ;; esac; }
for s in $SYSTEMS; do is_dc "$s" || { populate_listings "$s"; first_listing "$s"; }; done
for run in $(seq "$RUNS"); do
  echo "== run $run of $RUNS" >&2
  for s in $SYSTEMS; do
    if [ "$s" = raw ]; then
      [ -n "${NO_MAIN_ROWS:-}" ] || bench_raw
      bench_raw_dc
    elif is_dc "$s"; then bench_dc "$s"
    else bench_mount "$s"; bench_listing "$s"; fi
  done
done
for s in ${RSS_SYSTEMS-$SYSTEMS}; do case $s in sealfs-none|sealfs-client) bench_rss "$s" ;; esac; done

python3 - "$results" "$out" "$RUNS" <<'PY'
import json, statistics, sys
# bc prints ".5" for 0.5: make such values JSON numbers.
rows = [json.loads(l.replace('"value":.', '"value":0.')) for l in open(sys.argv[1])]
med = {}
for r in rows:
    med.setdefault((r["system"], r["workload"]), []).append(r)
def m(sys_, wl):
    rs = med.get((sys_, wl))
    return statistics.median(r["value"] for r in rs) if rs else None
systems = list(dict.fromkeys(r["system"] for r in rows))
workloads = list(dict.fromkeys(r["workload"] for r in rows))
summary = {}
print()
print(f"{'workload':24}" + "".join(f"{s:>16}" for s in systems))
for wl in workloads:
    unit = next(r["unit"] for r in rows if r["workload"] == wl)
    cells = []
    for s in systems:
        v = m(s, wl)
        summary.setdefault(s, {})[wl] = v
        cells.append("" if v is None else (f"{v:.2f}" if v < 100 else f"{v:.0f}"))
    print(f"{wl + ' (' + unit + ')':24}" + "".join(f"{c:>16}" for c in cells))
def ratios(base):
    print(f"\nratio to {base} (time: lower is better; iops: higher is better)")
    print(f"{'workload':24}" + "".join(f"{s:>16}" for s in systems))
    for wl in workloads:
        b = m(base, wl)
        if not b:
            continue
        cells = [("" if m(s, wl) is None else f"{m(s, wl) / b:.2f}x") for s in systems]
        print(f"{wl:24}" + "".join(f"{c:>16}" for c in cells))
for base in ("raw", "s3fs", "s3fs-cache"):
    if base in systems:
        ratios(base)
reqs = {}
for r in rows:
    if r["requests"] is not None:
        reqs.setdefault(r["system"], {}).setdefault(r["workload"], []).append(r["requests"])
if reqs:
    print("\nS3 requests per workload (sealfs's own counters, median)")
    for s, w in reqs.items():
        print(f"  {s}: " + ", ".join(f"{k} {int(statistics.median(v))}" for k, v in w.items()))
json.dump({"runs": int(sys.argv[3]), "medians": summary, "all": rows,
           "requests": {s: {k: statistics.median(v) for k, v in w.items()} for s, w in reqs.items()}},
          open(sys.argv[2], "w"), indent=1)
print(f"\nsaved {sys.argv[2]}")
PY
