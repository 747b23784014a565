#!/usr/bin/env bash
# Whole-process upload benchmarks on 127.0.0.1: the example server (examples/server.rs,
# FsStorage, release build) against a bare hyper baseline (examples/baseline.rs), nginx's
# WebDAV PUT, the Node tus server (@tus/server + @tus/file-store) and rustus, in the same
# run, systems interleaved run by run. Writes the table into BENCHMARKS.md and draws
# BENCHMARKS.svg (throughput against chunk size and parallelism).
#
# The tus scenarios drive every tus server with one client, tus-js-client in Node
# (benches/peers/tus-client.mjs): our server through a signed URL from its
# `POST /upload-url` (durable: FsStorage syncs before it answers), rustus and the Node
# tus server through their /files endpoint (neither syncs before answering):
#   tus-one   the whole file in one PATCH (tus-js-client's default)
#   tus-seq   PATCHes of 16 MiB, one at a time (chunkSize)
#   tus-par4  4 parts in parallel (parallelUploads: 4, each part one PATCH), then the
#             final upload (concatenation). A server whose OPTIONS does not offer
#             `concatenation` is not run here and the report says so; the Node tus
#             server's one-PATCH upload runs beside it for reference.
# tus-one and tus-seq also time `dd conv=fsync` and plain `dd` of the same file in the
# same rounds: the cost of the flush our server makes and the others skip.
#
# Many uploads at once, with benches/peers/many-client.mjs (each URL signed for our
# server; every answer must be 2xx, else the run fails), against the bare hyper baseline
# and nginx:
#   many      MANY_COUNT uploads of 1 MiB, 200 in flight
#   small     SMALL_COUNT uploads of 16 KiB, 64 in flight (requests per second, latency,
#             server CPU per request)
#
# Usage
#   scripts/bench.sh            everything: installs, builds, runs, report, chart
#   scripts/bench.sh install    installs, builds and test data only
#   scripts/bench.sh report     the report and chart again from the last results
#
# Environment (all optional)
#   QUICK=1          smoke run: 256 MiB instead of 1 GiB, 2 timed runs, 1 sweep run, fewer requests
#                    (MANY_COUNT 400, SMALL_COUNT 2000)
#   RUNS=5           timed runs per figure, after 1 warm-up that is not counted
#   SWEEP_RUNS=3     runs per point of the chunk size x parallelism sweep
#   SCENARIOS="..."  subset of: limits simple-new simple-replace chunk-seq chunk-par4 complete
#                    many small tus-one tus-seq tus-par4 sweep verify
#   MANY_COUNT=1000  uploads per run of `many` (QUICK=1: 400)
#   SMALL_COUNT=10000  uploads per run of `small` (QUICK=1: 2000); as with BIG_MIB, any other
#                    count of either makes a diagnostic run
#   BIG_MIB=N        size of the big file in MiB (default 1024, QUICK=1: 256); any other
#                    size makes a diagnostic run, which never writes BENCHMARKS.md
#   BENCH_DIR=/tmp/tsu-bench   everything generated (installs, data, stores, results) goes here
#   QUIET_MAX=10 QUIET_PCT=10  before each run, wait up to QUIET_MAX s for the machine to be
#                    less than QUIET_PCT % busy
#   OTHER_RETRIES=2  repeat a run (at most this often) when other processes used more than
#                    0.25 s + 10% of the machine's CPU during it
#   CLIENT_TIMEOUT=300  seconds, bound on any one client command
#   RUSTUS_BUILD_TIMEOUT=1200  seconds allowed for `cargo install rustus`
#   RUSTUS=0         neither build nor run rustus (its entries read "not measured")
#   NO_WRITE=1       do not touch BENCHMARKS.md / BENCHMARKS.svg (results stay under BENCH_DIR)
#
# Only a full run (not QUICK=1, every scenario) writes BENCHMARKS.md and BENCHMARKS.svg; the
# report names the commit it measured and whether the tree had uncommitted changes. A figure
# or target counts only what this run measured: every run of an entry, warm-up included,
# must exit 0 and, where it stores a file, store the source's bytes (compared byte for byte
# right after the run); otherwise the report says "not measured" and why. Criterion's
# output of an earlier run is deleted before the verification is measured.
#
# Traps of a small shared VM, handled here: the previous run's output is deleted (and dirty
# pages flushed) right before each timed run, with no pause in between (memory left free for
# ~2 s is handed back to the host, and writing into it costs several times more); writing a
# new path and replacing a file are measured apart (a rename over a file makes ext4 write the
# new one out at once); systems are interleaved run by run and ratios are taken per round;
# other processes' CPU during each run is recorded, and a run they disturbed is repeated.
#
# Only 127.0.0.1 is used; every loop is bounded; only processes this script started are
# stopped, by their process id.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PEERS=$REPO/benches/peers
W=${BENCH_DIR:-/tmp/tsu-bench}
QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
  RUNS=${RUNS:-2}; SWEEP_RUNS=${SWEEP_RUNS:-1}; BIG_MIB=${BIG_MIB:-256}; MANY_COUNT=${MANY_COUNT:-400}
  SMALL_COUNT=${SMALL_COUNT:-2000}; SIGN_ITER=200000; MODE=QUICK
else
  RUNS=${RUNS:-5}; SWEEP_RUNS=${SWEEP_RUNS:-3}; BIG_MIB=${BIG_MIB:-1024}; MANY_COUNT=${MANY_COUNT:-1000}
  SMALL_COUNT=${SMALL_COUNT:-10000}; SIGN_ITER=1000000; MODE=full
fi
[[ $BIG_MIB =~ ^[1-9][0-9]*$ ]] || { echo "BIG_MIB must be a whole number of MiB" >&2; exit 2; }
[[ $MANY_COUNT =~ ^[1-9][0-9]*$ ]] || { echo "MANY_COUNT must be a whole number" >&2; exit 2; }
[[ $SMALL_COUNT =~ ^[1-9][0-9]*$ ]] || { echo "SMALL_COUNT must be a whole number" >&2; exit 2; }
[ "$MODE" = full ] && { [ "$BIG_MIB" != 1024 ] || [ "$MANY_COUNT" != 1000 ] || [ "$SMALL_COUNT" != 10000 ]; } && MODE=diagnostic
SMALL_MIB=64
CHUNK=$((16 * 1024 * 1024))
MANY_CONC=200
MANY_SIZE=$((1024 * 1024))
SMALL_CONC=64
SMALL_SIZE=$((16 * 1024))
ALL_SCENARIOS="limits simple-new simple-replace chunk-seq chunk-par4 complete many small tus-one tus-seq tus-par4 sweep verify"
SCENARIOS=${SCENARIOS:-$ALL_SCENARIOS}
CLIENT_TIMEOUT=${CLIENT_TIMEOUT:-300}
TUS_SERVER_VER=2.4.5
TUS_FILE_STORE_VER=2.1.1
TUS_JS_VER=4.3.1
RUSTUS_VER=0.5.10
KEY=bench-key-$(date +%s)-$$
# ports, 127.0.0.1 only
P_OURS=18110 P_BASE=18111 P_NGINX=18112 P_TUS=18113 P_RUSTUS=18114 P_SINK=18115 P_SOCAT=18116

log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
want_scn() { [[ " $SCENARIOS " == *" $1 "* ]]; }

# ------------------------------------------------------------------ installs and builds
install_apt() {
  local need=()
  command -v nginx >/dev/null || need+=(nginx)
  command -v socat >/dev/null || need+=(socat)
  command -v curl >/dev/null || need+=(curl)
  command -v gnuplot >/dev/null || need+=(gnuplot-nox)
  [ -x /usr/bin/time ] || need+=(time)
  ((${#need[@]})) || return 0
  log "apt-get install ${need[*]}"
  # keep Debian's nginx service from starting on 0.0.0.0:80 during the install
  local made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; made_policy=1; fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >&2
  local rc=$?
  ((made_policy)) && rm -f /usr/sbin/policy-rc.d
  return $rc
}

install_node_pkgs() {
  command -v node >/dev/null || die "node (>= 20.19, needed by @tus/server 2.x) is not installed"
  node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=19)?0:1)' ||
    die "node $(node -v) is too old for @tus/server $TUS_SERVER_VER (needs >= 20.19)"
  mkdir -p "$W/node"
  local have_s have_f have_c
  have_s=$(node -p "require('$W/node/node_modules/@tus/server/package.json').version" 2>/dev/null)
  have_f=$(node -p "require('$W/node/node_modules/@tus/file-store/package.json').version" 2>/dev/null)
  have_c=$(node -p "require('$W/node/node_modules/tus-js-client/package.json').version" 2>/dev/null)
  [ "$have_s" = "$TUS_SERVER_VER" ] && [ "$have_f" = "$TUS_FILE_STORE_VER" ] && [ "$have_c" = "$TUS_JS_VER" ] && return 0
  log "npm install @tus/server@$TUS_SERVER_VER @tus/file-store@$TUS_FILE_STORE_VER tus-js-client@$TUS_JS_VER into $W/node"
  [ -f "$W/node/package.json" ] || echo '{"name":"bench-peers","private":true}' > "$W/node/package.json"
  (cd "$W/node" && npm install --no-audit --no-fund --save-exact "@tus/server@$TUS_SERVER_VER" \
    "@tus/file-store@$TUS_FILE_STORE_VER" "tus-js-client@$TUS_JS_VER" >&2)
}

HAVE_RUSTUS=0
CUR_SCN=          # the scenario running (some servers are configured for it)
install_rustus() {
  [ -x "$W/rustus/bin/rustus" ] && { HAVE_RUSTUS=1; return 0; }
  [ -e "$W/rustus/BUILD_FAILED" ] && { log "rustus: an earlier build failed ($W/rustus/BUILD_FAILED); skipping it"; return 0; }
  mkdir -p "$W/rustus" "$W/logs"
  log "cargo install rustus@$RUSTUS_VER (bounded to ${RUSTUS_BUILD_TIMEOUT:-1200}s; log: $W/logs/rustus-build.log)"
  local t0=$SECONDS
  if timeout "${RUSTUS_BUILD_TIMEOUT:-1200}" cargo install rustus --version "$RUSTUS_VER" --locked --root "$W/rustus" > "$W/logs/rustus-build.log" 2>&1; then
    log "rustus built in $((SECONDS - t0))s"; HAVE_RUSTUS=1
  else
    log "rustus build failed or timed out after $((SECONDS - t0))s; skipping it"
    echo "failed after $((SECONDS - t0))s" > "$W/rustus/BUILD_FAILED"
  fi
}

build_all() {
  mkdir -p "$W/bin"
  if [ ! -x "$W/bin/sink" ] || [ "$PEERS/sink.rs" -nt "$W/bin/sink" ]; then
    log "rustc sink.rs"
    rustc --edition 2021 -O -o "$W/bin/sink" "$PEERS/sink.rs" || die "cannot build sink.rs"
  fi
  log "cargo build --release --example server --example baseline"
  (cd "$REPO" && cargo build --release --features fs --example server --example baseline >&2) || die "build failed"
  OURS_BIN=$REPO/target/release/examples/server
  BASE_BIN=$REPO/target/release/examples/baseline
  if want_scn verify; then
    log "cargo bench --bench upload --no-run"
    (cd "$REPO" && cargo bench --bench upload --no-run >&2 2>/dev/null) || die "bench build failed"
  fi
}

make_data() {
  mkdir -p "$W/data"
  local m f
  for m in $SMALL_MIB $BIG_MIB; do
    f=$W/data/${m}m.bin
    if [ "$(stat -c %s "$f" 2>/dev/null)" != $((m * 1048576)) ]; then
      log "making $f ($m MiB of random bytes)"
      head -c $((m * 1048576)) /dev/urandom > "$f.part" && mv "$f.part" "$f"
    fi
  done
  SMALL=$W/data/${SMALL_MIB}m.bin
  BIG=$W/data/${BIG_MIB}m.bin
}

install_all() {
  [ "$(id -u)" = 0 ] || die "run as root (apt installs, chown of the nginx store)"
  install_apt || die "apt install failed"
  install_node_pkgs || die "npm install failed"
  if [ "${RUSTUS:-1}" = 0 ]; then log "RUSTUS=0: rustus is neither built nor run"; else install_rustus; fi
  build_all
  make_data
}

# ------------------------------------------------------------------ servers
declare -A SPID        # server -> pid of the process this script started
STARTED=()

wait_port() { # port: wait until something accepts on 127.0.0.1:port (at most 10 s)
  local i
  for i in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

start_server() {
  local srv=$1 pid port
  [ -n "${SPID[$srv]:-}" ] && return 0
  mkdir -p "$W/run" "$W/store"
  case $srv in
    ours)
      rm -rf "$W/store/ours"; mkdir -p "$W/store/ours"
      SIGNED_UPLOAD_KEY=$KEY RUST_LOG=warn "$OURS_BIN" --addr "127.0.0.1:$P_OURS" --dir "$W/store/ours" \
        --max-size $((8 * 1024 * 1024 * 1024)) > "$W/run/ours.out" 2>&1 &
      pid=$! port=$P_OURS ;;
    baseline)
      rm -rf "$W/store/baseline"; mkdir -p "$W/store/baseline"
      "$BASE_BIN" "127.0.0.1:$P_BASE" "$W/store/baseline" > "$W/run/baseline.out" 2>&1 &
      pid=$! port=$P_BASE ;;
    nginx)
      rm -rf "$W/store/nginx" "$W/store/nginx-tmp" "$W/run/nginx"
      mkdir -p "$W/store/nginx" "$W/store/nginx-tmp" "$W/run/nginx"
      chown nobody:nogroup "$W/store/nginx" "$W/store/nginx-tmp" 2>/dev/null   # workers run as nobody
      sed -e "s|@WORK@|$W|g" -e "s|@PORT@|$P_NGINX|g" "$PEERS/nginx-dav.conf" > "$W/run/nginx/nginx.conf"
      nginx -p "$W/run/nginx/" -c "$W/run/nginx/nginx.conf" > "$W/run/nginx.out" 2>&1 &
      pid=$! port=$P_NGINX ;;
    tus-node)
      rm -rf "$W/store/tus-node"; mkdir -p "$W/store/tus-node"
      PEERS_NODE_DIR=$W/node node "$PEERS/tus-server.mjs" 127.0.0.1 "$P_TUS" "$W/store/tus-node" > "$W/run/tus-node.out" 2>&1 &
      pid=$! port=$P_TUS ;;
    rustus)
      rm -rf "$W/store/rustus"; mkdir -p "$W/store/rustus"
      # rustus takes each PATCH body whole, in memory (default limit 256 KiB): raise the
      # limit to the largest PATCH of the scenario (16 MiB chunks; the whole file, or a
      # quarter of it, in the tus scenarios with one PATCH per upload)
      local body=$CHUNK
      case $CUR_SCN in tus-one|tus-par4) body=$((BIG_MIB * 1048576)) ;; esac
      "$W/rustus/bin/rustus" --host 127.0.0.1 --port "$P_RUSTUS" --data-dir "$W/store/rustus" \
        --info-dir "$W/store/rustus" --max-body-size "$body" > "$W/run/rustus.out" 2>&1 &
      pid=$! port=$P_RUSTUS ;;
    sink)
      "$W/bin/sink" "127.0.0.1:$P_SINK" > "$W/run/sink.out" 2>&1 &
      pid=$! port=$P_SINK ;;
    socat)
      socat -u -b 1048576 "TCP-LISTEN:$P_SOCAT,bind=127.0.0.1,reuseaddr,fork" OPEN:/dev/null > "$W/run/socat.out" 2>&1 &
      pid=$! port=$P_SOCAT ;;
    *) die "unknown server $srv" ;;
  esac
  STARTED+=("$pid")
  SPID[$srv]=$pid
  wait_port "$port" || die "$srv did not start listening on 127.0.0.1:$port (see $W/run/$srv.out)"
}

stop_server() {
  local srv=$1 pid=${SPID[$1]:-} i q keep=()
  [ -n "$pid" ] || return 0
  kill "$pid" 2>/dev/null
  for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  for q in "${STARTED[@]}"; do [ "$q" != "$pid" ] && keep+=("$q"); done
  STARTED=("${keep[@]}")
  unset "SPID[$srv]"
}

cleanup() {
  local pid
  for pid in "${STARTED[@]}"; do [ -n "$pid" ] && kill "$pid" 2>/dev/null; done
  wait 2>/dev/null
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# CPU seconds (user+system) of a server process and its direct children (nginx workers)
server_cpu() {
  local pid=${SPID[$1]:-} p t=0 f
  [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || { echo -; return; }
  for p in $pid $(pgrep -P "$pid"); do
    f=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null) || continue
    set -- $f
    t=$((t + ${12} + ${13}))     # utime + stime, fields 14 and 15 of /proc/PID/stat
  done
  awk -v t="$t" -v hz="$(getconf CLK_TCK)" 'BEGIN{printf "%.2f", t/hz}'
}

# peak RSS (VmHWM, KiB) of the largest of the server process and its direct children
server_rss() {
  local pid=${SPID[$1]:-} p m=0 v
  [ -n "$pid" ] && [ -r "/proc/$pid/status" ] || { echo -; return; }
  for p in $pid $(pgrep -P "$pid"); do
    v=$(awk '/^VmHWM:/{print $2}' "/proc/$p/status" 2>/dev/null)
    [ -n "$v" ] && ((v > m)) && m=$v
  done
  echo "$m"
}

# machine-wide busy CPU ticks (user nice system irq softirq steal) and all ticks
cpu_ticks() { awk '/^cpu /{b=$2+$3+$4+$7+$8+$9; print b, b+$5+$6}' /proc/stat; }

wait_quiet() {
  local deadline=$((SECONDS + ${QUIET_MAX:-10})) a b
  while ((SECONDS < deadline)); do
    a=$(cpu_ticks); sleep 0.5; b=$(cpu_ticks)
    awk -v a="$a" -v b="$b" -v pct="${QUIET_PCT:-10}" 'BEGIN{split(a,x," "); split(b,y," "); t=y[2]-x[2]; exit !(t > 0 && (y[1]-x[1])*100/t < pct)}' && return 0
  done
  log "  (machine not quiet after ${QUIET_MAX:-10}s; running anyway)"
}

# top other processes by CPU, recorded once per scenario (what else was running)
record_others() {
  { echo "== $1 $(date -u +%T)"; ps -eo pid,pcpu,etimes,comm --sort=-pcpu | head -8; } >> "$RES/others.txt"
}

# ------------------------------------------------------------------ entries
# An entry is one column of a scenario: a server and how the client drives it.
server_of() {
  case $1 in
    ours*) echo ours ;;
    rustus*) echo rustus ;;
    tus-node*) echo tus-node ;;
    *) echo "$1" ;;
  esac
}

signed() { node "$PEERS/sign-url.mjs" "http://127.0.0.1:$P_OURS" "$1" "$KEY" put; }

# a signed upload URL for PATH from the example server's own `POST /upload-url`
minted() {
  curl -fsS --max-time 10 -H 'content-type: application/json' \
    -d "{\"folder\":\"${1%/*}\",\"filename\":\"${1##*/}\"}" "http://127.0.0.1:$P_OURS/upload-url" |
    node -e 'let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => console.log(JSON.parse(s).signedUrl))'
}

# the tus endpoint of ENTRY's server for PATH (our server: a URL minted for that path)
tus_endpoint() {
  case $(server_of "$1") in
    ours) minted "$2" ;;
    rustus) echo "http://127.0.0.1:$P_RUSTUS/files" ;;
    tus-node) echo "http://127.0.0.1:$P_TUS/files" ;;
  esac
}

# the client command for ENTRY in SCENARIO, round R: sets CMD, STORED (the file the run
# stores, tus:DIR for a tus server, empty when it stores none) and SOURCE (what it sends)
client_cmd() {
  local scn=$1 e=$2 r=$3 p="bench/$1-$2-r$3.bin" file=$BIG
  [ "$scn" = simple-replace ] && p="bench/$scn-$e.bin"
  STORED=
  case $scn:$e in
    simple-*:ours|chunk-par4:ours-put)
      CMD=(curl -fsS -o /dev/null -T "$file" "$(signed "$p")"); STORED=$W/store/ours/$p ;;
    simple-*:baseline) CMD=(curl -fsS -o /dev/null -T "$file" "http://127.0.0.1:$P_BASE/$p"); STORED=$W/store/baseline/$p ;;
    simple-*:nginx) CMD=(curl -fsS -o /dev/null -T "$file" "http://127.0.0.1:$P_NGINX/$p"); STORED=$W/store/nginx/$p ;;
    simple-*:sink) CMD=(curl -fsS -o /dev/null -T "$file" "http://127.0.0.1:$P_SINK/$p") ;;
    chunk-*:ours|complete:ours*)
      local par=1; [ "$scn" != chunk-seq ] && par=4
      [ "$e" = ours-small ] && file=$SMALL
      CMD=(node "$PEERS/upload-client.mjs" range "http://127.0.0.1:$P_OURS" "$file" --path "$p" --key "$KEY" --chunk "$CHUNK" --parallel "$par")
      STORED=$W/store/ours/$p ;;
    chunk-seq:sink|chunk-par4:sink)
      local par=1; [ "$scn" = chunk-par4 ] && par=4
      CMD=(node "$PEERS/upload-client.mjs" range "http://127.0.0.1:$P_SINK" "$file" --path "$p" --chunk "$CHUNK" --parallel "$par") ;;
    chunk-*:tus-node)   # one at a time in every scenario: @tus/file-store has no concatenation
      CMD=(node "$PEERS/upload-client.mjs" tus "http://127.0.0.1:$P_TUS/files" "$file" --chunk "$CHUNK" --parallel 1)
      STORED=tus:$W/store/tus-node ;;
    chunk-seq:rustus|chunk-par4:rustus-seq)
      CMD=(node "$PEERS/upload-client.mjs" tus "http://127.0.0.1:$P_RUSTUS/files" "$file" --chunk "$CHUNK" --parallel 1)
      STORED=tus:$W/store/rustus ;;
    chunk-par4:rustus)
      CMD=(node "$PEERS/upload-client.mjs" tus "http://127.0.0.1:$P_RUSTUS/files" "$file" --chunk "$CHUNK" --parallel 4)
      STORED=tus:$W/store/rustus ;;
    many:ours) CMD=(node "$PEERS/many-client.mjs" "http://127.0.0.1:$P_OURS" --count "$MANY_COUNT" --concurrency "$MANY_CONC" --size "$MANY_SIZE" --prefix "bench/many-r$r" --key "$KEY") ;;
    many:baseline) CMD=(node "$PEERS/many-client.mjs" "http://127.0.0.1:$P_BASE" --count "$MANY_COUNT" --concurrency "$MANY_CONC" --size "$MANY_SIZE" --prefix "bench/many-r$r") ;;
    many:nginx) CMD=(node "$PEERS/many-client.mjs" "http://127.0.0.1:$P_NGINX" --count "$MANY_COUNT" --concurrency "$MANY_CONC" --size "$MANY_SIZE" --prefix "bench/many-r$r") ;;
    small:ours) CMD=(node "$PEERS/many-client.mjs" "http://127.0.0.1:$P_OURS" --count "$SMALL_COUNT" --concurrency "$SMALL_CONC" --size "$SMALL_SIZE" --prefix "bench/small-r$r" --key "$KEY") ;;
    small:baseline) CMD=(node "$PEERS/many-client.mjs" "http://127.0.0.1:$P_BASE" --count "$SMALL_COUNT" --concurrency "$SMALL_CONC" --size "$SMALL_SIZE" --prefix "bench/small-r$r") ;;
    small:nginx) CMD=(node "$PEERS/many-client.mjs" "http://127.0.0.1:$P_NGINX" --count "$SMALL_COUNT" --concurrency "$SMALL_CONC" --size "$SMALL_SIZE" --prefix "bench/small-r$r") ;;
    sweep:ours-c*)
      local c=${e#ours-c}; c=${c%-p*}; local par=${e##*-p}
      CMD=(node "$PEERS/upload-client.mjs" range "http://127.0.0.1:$P_OURS" "$file" --path "$p" --key "$KEY" --chunk $((c * 1048576)) --parallel "$par")
      STORED=$W/store/ours/$p ;;
    tus-*:ours|tus-*:rustus|tus-*:tus-node*)
      # one client, tus-js-client, for every tus server
      local targs=()
      case $scn:$e in
        tus-seq:*) targs=(--chunk "$CHUNK") ;;
        tus-par4:tus-node-one) ;;   # reference: the Node tus server takes no parts
        tus-par4:*) targs=(--parallel 4) ;;
      esac
      CMD=(env "PEERS_NODE_DIR=$W/node" node "$PEERS/tus-client.mjs" "$(tus_endpoint "$e" "$p")" "$file"
        --deadline-s "$CLIENT_TIMEOUT" "${targs[@]}")
      STORED=tus:$W/store/$(server_of "$e")
      [ "$(server_of "$e")" = ours ] && STORED=$W/store/ours/$p ;;
    limits:dd-fsync|tus-*:dd-fsync) CMD=(dd if="$file" of="$W/store/dd.out" bs=1M conv=fsync status=none); STORED=$W/store/dd.out ;;
    limits:dd-nofsync|tus-*:dd-nofsync) CMD=(dd if="$file" of="$W/store/dd.out" bs=1M status=none); STORED=$W/store/dd.out ;;
    limits:tcp-raw) CMD=(socat -u -b 1048576 "OPEN:$file" "TCP:127.0.0.1:$P_SOCAT") ;;
    *) die "no client for $e in $scn" ;;
  esac
  BYTES=$(stat -c %s "$file")
  SOURCE=$file
  [ "$scn" = many ] && BYTES=$((MANY_COUNT * MANY_SIZE))
  [ "$scn" = small ] && BYTES=$((SMALL_COUNT * SMALL_SIZE))
}

# remove what the previous run of ENTRY stored (not for replacements), then flush dirty
# pages: every run starts from an empty store with no pending writeback (not timed)
clean() { # ENTRY SCENARIO
  local srv; srv=$(server_of "$1")
  if [ "$2" = simple-replace ]; then
    [ "$srv" = nginx ] && rm -rf "$W/store/nginx-tmp/"*
    sync; return
  fi
  case $srv in
    ours)
      rm -rf "$W/store/ours/bench"
      find "$W/store/ours/.uploads" -mindepth 1 -maxdepth 1 ! -name tmp -exec rm -rf {} + 2>/dev/null ;;
    baseline) rm -rf "$W/store/baseline/bench" ;;
    nginx) rm -rf "$W/store/nginx/bench" "$W/store/nginx-tmp/"* ;;
    tus-node) rm -rf "$W/store/tus-node/"* ;;
    rustus) rm -rf "$W/store/rustus/"* ;;
    dd-*) rm -f "$W/store/dd.out" ;;
  esac
  sync
}

# run_one SCENARIO ENTRY ROUND: time one client command, append one line to runs.tsv.
# The previous output is deleted right before the timed run, with no pause in between.
run_one() {
  local scn=$1 e=$2 round=$3 srv try c0 c1 t0 t1 rc u s m0 m1 scpu ccpu other wall line ok note
  srv=$(server_of "$e")
  for try in $(seq 0 "${OTHER_RETRIES:-2}"); do
    client_cmd "$scn" "$e" "$round"
    wait_quiet
    clean "$e" "$scn"
    c0=$(server_cpu "$srv")
    m0=$(cpu_ticks)
    t0=$(date +%s%N)
    timeout "$CLIENT_TIMEOUT" /usr/bin/time -f '%U %S %M' -o "$W/run/time.txt" "${CMD[@]}" > "$W/run/client.out" 2> "$W/run/client.err"
    rc=$?
    t1=$(date +%s%N)
    m1=$(cpu_ticks)
    c1=$(server_cpu "$srv")
    read -r u s _ < <(tail -1 "$W/run/time.txt")
    scpu=-
    [ "$c0" != - ] && [ "$c1" != - ] && scpu=$(awk -v a="$c0" -v b="$c1" 'BEGIN{printf "%.2f", b-a}')
    ccpu=$(awk -v u="${u:-0}" -v s="${s:-0}" 'BEGIN{print u+s}')
    wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.6f", (b-a)/1e9}')
    other=$(awk -v a="$m0" -v b="$m1" -v c="$ccpu" -v s="$scpu" -v hz="$(getconf CLK_TCK)" \
      'BEGIN{split(a,x," "); split(b,y," "); o=(y[1]-x[1])/hz-c-(s=="-"?0:s); printf "%.2f", (o<0?0:o)}')
    # what the client reported beyond its wall time (completion latency, percentiles), as JSON
    note=$(head -c 2000 "$W/run/client.out" | tr -d '\n\t')
    [ -n "$note" ] || note=-
    line=$(printf '%s\t%s\t%s\t%s\t%.2f\t%s\t%s\t%s\t%s\t%s' "$scn" "$e" "$round" "$wall" "$ccpu" "$scpu" "$BYTES" "$rc" "$other" "$note")
    [ "$rc" != 0 ] && log "  $scn $e round $round FAILED rc=$rc: $(tail -3 "$W/run/client.err" | tr '\n' ' ')"
    ok=$(awk -v o="$other" -v w="$wall" -v n="$(nproc)" 'BEGIN{print (o <= 0.25 + 0.1*w*n) ? 1 : 0}')
    if [ "$ok" = 1 ] || [ "$try" = "${OTHER_RETRIES:-2}" ]; then
      echo "$line" >> "$RES/runs.tsv"
      log "  $scn $e r$round wall=${wall}s client=${ccpu}s server=${scpu}s other=${other}s rc=$rc"
      check_stored "$scn" "$e" "$round" "$rc"
      return
    fi
    echo "$line" >> "$RES/rejected.tsv"
    log "  $scn $e r$round rejected (other processes used ${other}s CPU during it): retrying"
  done
}

# Compare what run ROUND of ENTRY stored with what it sent, byte for byte, right after the
# run (the next run's cleaning removes it). One line of verify.tsv per counted run:
#   ok        the stored file is the source
#   MISMATCH  it differs          missing   nothing stored where it should be
#   failed    the client exited non-zero, nothing to compare
#   none      the entry stores no file (sink, raw socket; `many` and `small` check every
#             status instead: many-client.mjs exits non-zero unless every answer is 2xx)
check_stored() {
  local scn=$1 e=$2 round=$3 rc=$4 f=$STORED verdict id
  if [ -z "$f" ]; then
    verdict=none
  elif [ "$rc" != 0 ]; then
    verdict=failed
  else
    if [[ $f == tus:* ]]; then
      id=$(node -p "new URL(JSON.parse(require('fs').readFileSync('$W/run/client.out','utf8')).location).pathname.split('/').pop()" 2>/dev/null)
      f=${f#tus:}/$id
    fi
    if [ ! -f "$f" ]; then verdict=missing
    elif cmp -s "$f" "$SOURCE"; then verdict=ok
    else verdict=MISMATCH
    fi
  fi
  printf '%s\t%s\t%s\t%s\n' "$scn" "$e" "$round" "$verdict" >> "$RES/verify.tsv"
  case $verdict in ok|none) ;; *) log "  $scn $e r$round stored bytes: $verdict ($f)" ;; esac
}

# ------------------------------------------------------------------ scenarios
entries_for() {
  local r=()
  case $1 in
    limits) r=(dd-fsync dd-nofsync tcp-raw) ;;
    simple-new|simple-replace) r=(ours baseline nginx sink) ;;
    chunk-seq) r=(ours tus-node rustus sink) ;;
    chunk-par4) r=(ours ours-put rustus rustus-seq tus-node sink) ;;
    complete) r=(ours-small ours) ;;
    many|small) r=(ours baseline nginx) ;;
    tus-one|tus-seq) r=(ours rustus tus-node dd-fsync dd-nofsync) ;;
    tus-par4) r=(ours rustus tus-node tus-node-one) ;;
    sweep) local c p; for p in 1 2 4; do for c in 4 8 16 32; do r+=("ours-c$c-p$p"); done; done ;;
  esac
  echo "${r[@]}"
}

# An entry that cannot run is left out of its scenario, with the reason in support.tsv
# (scenario, entry, skipped|unsupported, why), which the report shows in its place.
not_run() { # SCENARIO ENTRY KIND WHY
  printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$RES/support.tsv"
  log "  $2 left out of $1 ($3): $4"
}

# the tus extensions a server offers (its OPTIONS answer), for ENTRY's server
tus_extensions() { # ENTRY
  local url
  url=$(tus_endpoint "$1" bench/probe.bin) || return 1
  curl -sS --max-time 10 -o /dev/null -D - -X OPTIONS -H 'Tus-Resumable: 1.0.0' "$url" |
    tr -d '\r' | awk 'tolower($1) == "tus-extension:" {print $2}'
}

scenario() { # SCENARIO ROUNDS_FIRST ROUNDS_LAST
  local scn=$1 first=$2 last=$3 e r srv entries="" ext
  CUR_SCN=$scn
  for e in $(entries_for "$scn"); do
    if [ "$(server_of "$e")" = rustus ] && [ "$HAVE_RUSTUS" != 1 ]; then
      local why="no $W/rustus/bin/rustus"
      [ -e "$W/rustus/BUILD_FAILED" ] && why="its build $(cat "$W/rustus/BUILD_FAILED")"
      [ "${RUSTUS:-1}" = 0 ] && why="RUSTUS=0"
      not_run "$scn" "$e" skipped "rustus is not installed ($why)"
      continue
    fi
    entries+="$e "
  done
  log "== $scn ($entries): rounds $first..$last (round 0 is a warm-up), interleaved"
  record_others "$scn"
  for e in $entries; do
    srv=$(server_of "$e")
    case $srv in dd-*|tcp-raw) [ "$srv" = tcp-raw ] && start_server socat ;; *) start_server "$srv" ;; esac
  done
  if [ "$scn" = tus-par4 ]; then   # parts need the concatenation extension: ask each server
    local keep=""
    for e in $entries; do
      if [ "$e" != tus-node-one ]; then
        ext=$(tus_extensions "$e")
        if [[ ",$ext," != *,concatenation,* ]]; then
          not_run "$scn" "$e" unsupported "its OPTIONS offers no concatenation (Tus-Extension: ${ext:-none})"
          continue
        fi
      fi
      keep+="$e "
    done
    entries=$keep
  fi
  for r in $(seq "$first" "$last"); do
    for e in $entries; do
      [ "$e" = tcp-raw ] && SPID[tcp-raw]=${SPID[socat]}
      run_one "$scn" "$e" "$r"
    done
  done
  # peak RSS per server over the scenario, then stop them (each scenario starts fresh servers)
  local done_srv=" "
  for e in $entries; do
    srv=$(server_of "$e")
    [[ $done_srv == *" $srv "* ]] && continue
    done_srv+="$srv "
    case $srv in dd-*) continue ;; tcp-raw) srv=socat ;; esac
    echo -e "$scn\t$srv\t$(server_rss "$srv")" >> "$RES/rss.tsv"
    stop_server "$srv"
  done
  unset "SPID[tcp-raw]"
}

verify_scenario() {
  log "== verify: criterion (cargo bench --bench upload -- verify) and Node's signer"
  record_others verify
  # an earlier run's estimates must not stand in for this one's
  local crit=$REPO/target/criterion/verify rc est
  rm -rf "$crit"
  # built first, then measured on a quiet machine (the build and the sweep's writeback
  # would otherwise fall into the measurement)
  if ! (cd "$REPO" && cargo bench --bench upload --no-run > "$RES/criterion-build.txt" 2>&1); then
    log "  bench build failed (see $RES/criterion-build.txt): verification not measured"
    printf 'criterion\tbuild failed\n' >> "$RES/status.tsv"
  else
    wait_quiet
    (cd "$REPO" && cargo bench --bench upload -- verify --warm-up-time 2 --measurement-time 5 2>&1) | tee "$RES/criterion-verify.txt" | grep -E '^verify|time:' >&2
    rc=${PIPESTATUS[0]}
    printf 'criterion\t%s\n' "$rc" >> "$RES/status.tsv"
    if [ "$rc" = 0 ]; then
      for est in valid invalid; do
        node -e "const e=JSON.parse(require('fs').readFileSync('$crit/$est/new/estimates.json','utf8')); console.log('$est\t'+e.median.point_estimate.toFixed(1)+'\t'+e.median.confidence_interval.lower_bound.toFixed(1)+'\t'+e.median.confidence_interval.upper_bound.toFixed(1))" >> "$RES/verify-ns.tsv" ||
          log "  no criterion estimates for verify/$est: not measured"
      done
    else
      log "  criterion failed (exit $rc, see $RES/criterion-verify.txt): verification not measured"
    fi
  fi
  local i
  for i in 1 2 3; do
    node "$PEERS/sign-bench.mjs" "$SIGN_ITER" 3 >> "$RES/sign.txt" 2>&1
    rc=$?
    printf 'node-sign\t%s\n' "$rc" >> "$RES/status.tsv"
    [ "$rc" = 0 ] || log "  Node's signer failed (exit $rc): not measured"
  done
  grep -E '^(fixed|built|verify):' "$RES/sign.txt" >&2
}

# the commit measured, and whether the tree differs from it (any tracked or untracked file)
commit_state() {
  local head changes
  head=$(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null) || { echo "unknown (not a git checkout)"; return; }
  changes=$(cd "$REPO" && git status --porcelain --untracked-files=normal | wc -l)
  if [ "$changes" = 0 ]; then echo "$head (clean tree)"
  else echo "$head (dirty tree: $changes files differ from it)"; fi
}

versions() {
  {
    echo "date_utc: $(date -u +%FT%TZ)"
    echo "commit: $(commit_state)"
    echo "scenarios: $SCENARIOS"
    echo "kernel: $(uname -srm)"
    echo "cpu: $(nproc) x $(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo) (sha_ni: $(grep -qw sha_ni /proc/cpuinfo && echo yes || echo no))"
    echo "mem: $(awk '/MemTotal/{printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
    echo "fs: $(df -T "$W" | awk 'NR==2{print $2" on "$1}') (stores and data under $W)"
    echo "mode: $MODE, $RUNS timed runs + 1 warm-up, sweep $SWEEP_RUNS runs, big file ${BIG_MIB} MiB, many $MANY_COUNT x 1 MiB, small $SMALL_COUNT x 16 KiB"
    echo "nginx: $(nginx -v 2>&1 | sed 's/.*: //')"
    echo "curl: $(curl --version | head -1 | cut -d' ' -f1-2)"
    echo "node: $(node -v)"
    echo "@tus/server: $(node -p "require('$W/node/node_modules/@tus/server/package.json').version" 2>/dev/null)"
    echo "@tus/file-store: $(node -p "require('$W/node/node_modules/@tus/file-store/package.json').version" 2>/dev/null)"
    echo "tus-js-client: $(node -p "require('$W/node/node_modules/tus-js-client/package.json').version" 2>/dev/null)"
    echo "rustus: $("$W/rustus/bin/rustus" --version 2>/dev/null | head -1)"
    echo "rustc: $(rustc --version)"
    echo "gnuplot: $(gnuplot --version 2>/dev/null)"
  } > "$RES/versions.txt"
  cat "$RES/versions.txt" >&2
}

report() {
  local res=${1:-$W/results}
  [ -s "$res/runs.tsv" ] || die "no results in $res"
  node "$PEERS/report.mjs" "$res" > "$res/report.md" || die "report failed"
  node "$PEERS/report.mjs" "$res" --sweep > "$res/sweep.dat"
  gnuplot -e "datafile='$res/sweep.dat'; outfile='$res/chart.svg'" "$PEERS/chart.gp" || log "gnuplot failed"
  cat "$res/report.md"
  local why=
  [ "${NO_WRITE:-0}" = 1 ] && why="NO_WRITE=1"
  grep -qx "scenarios: $ALL_SCENARIOS" "$res/versions.txt" 2>/dev/null || why="not every scenario ran"
  grep -q '^mode: full,' "$res/versions.txt" 2>/dev/null || why="not a full run"
  [ "$QUICK" = 1 ] && why="QUICK=1"
  if [ -n "$why" ]; then
    log "BENCHMARKS.md and BENCHMARKS.svg left as they are ($why); the report is $res/report.md"
  else
    node "$PEERS/report.mjs" "$res" --into "$REPO/BENCHMARKS.md" || die "cannot write BENCHMARKS.md"
    [ -s "$res/chart.svg" ] && cp "$res/chart.svg" "$REPO/BENCHMARKS.svg"
    log "wrote BENCHMARKS.md and BENCHMARKS.svg"
  fi
}

# ------------------------------------------------------------------ main
main() {
  case ${1:-all} in
    install) install_all; return ;;
    report) report "$W/results"; return ;;
    all) ;;
    *) echo "usage: $0 [all|install|report]" >&2; exit 2 ;;
  esac
  install_all
  mkdir -p "$W/run" "$W/store"
  RES=$W/results-$(date -u +%Y%m%dT%H%M%S)
  mkdir -p "$RES"
  ln -sfn "$RES" "$W/results"
  printf '# scenario\tentry\tround\twall_s\tclient_cpu_s\tserver_cpu_s\tbytes\trc\tother_cpu_s\tclient_report\n' > "$RES/runs.tsv"
  versions
  local scn
  for scn in $SCENARIOS; do
    case $scn in
      sweep) scenario sweep 1 "$SWEEP_RUNS" ;;
      verify) verify_scenario ;;
      limits|simple-new|simple-replace|chunk-seq|chunk-par4|complete|many|small|tus-one|tus-seq|tus-par4) scenario "$scn" 0 "$RUNS" ;;
      *) die "unknown scenario $scn" ;;
    esac
  done
  rm -f "$W/store/dd.out"
  report "$RES"
  log "results: $RES"
}
main "$@"
