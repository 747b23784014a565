# Shared by scripts/abuse.sh and scripts/soak.sh (sourced, not run): builds and starts
# the release example server on 127.0.0.1:0, reads its port from the ready line, and
# stops every server it started (by process id) and removes the work folder at exit.
#
# Sets REPO, W (the work folder), KEY (the signing key the servers share) and BIN.

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CLIENTS=$REPO/scripts/hostile.mjs
W=$(mktemp -d "${TMPDIR:-/tmp}/tsu-$(basename "$0" .sh).XXXXXX")
KEY=key-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
# SERVER_BIN: a server binary built elsewhere (then nothing is built here)
BIN=${SERVER_BIN:-$REPO/target/release/examples/server}
declare -A SPID SPORT
FAILED=0

log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

cleanup() {
  local name pid i
  for name in "${!SPID[@]}"; do
    pid=${SPID[$name]}
    kill "$pid" 2>/dev/null
  done
  for name in "${!SPID[@]}"; do
    pid=${SPID[$name]}
    for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

build() {
  for tool in node curl; do command -v "$tool" >/dev/null || die "$tool is needed"; done
  [ -n "${SERVER_BIN:-}" ] && return 0
  (cd "$REPO" && cargo build --release --example server >&2) || die "cannot build the release example server"
}

# start_server NAME FD_LIMIT DIR [server flags...]: the release example server on
# 127.0.0.1:0 with DIR as --dir, under `ulimit -n FD_LIMIT` (or the script's own limit
# with `-`); sets SPID[NAME] and SPORT[NAME]. Its output goes to $W/NAME.log (appended,
# so a restart keeps the earlier lines). RUST_LOG=warn,server=info: one line per completion.
start_server() {
  local name=$1 fds=$2 dir=$3 i port
  shift 3
  mkdir -p "$dir"
  touch "$W/$name.log"
  local before
  before=$(wc -l < "$W/$name.log")
  (
    [ "$fds" != - ] && ulimit -n "$fds"
    SIGNED_UPLOAD_KEY=$KEY RUST_LOG=warn,server=info exec "$BIN" --addr 127.0.0.1:0 --dir "$dir" "$@"
  ) >> "$W/$name.log" 2>&1 &
  SPID[$name]=$!
  for i in $(seq 100); do
    port=$(tail -n +$((before + 1)) "$W/$name.log" | sed -n 's|^listening on http://127\.0\.0\.1:\([0-9]*\).*|\1|p' | head -1)
    [ -n "$port" ] && { SPORT[$name]=$port; return 0; }
    kill -0 "${SPID[$name]}" 2>/dev/null || break
    sleep 0.1
  done
  die "server $name did not print its ready line (see below)
$(tail -5 "$W/$name.log")"
}

# stop_server NAME [SIGNAL]: stop it (SIGTERM, SIGKILL after 5 s) and reap it.
stop_server() {
  local name=$1 sig=${2:-TERM} pid=${SPID[$1]:-} i
  [ -n "$pid" ] || return 0
  kill -"$sig" "$pid" 2>/dev/null
  for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  unset "SPID[$name]" "SPORT[$name]"
}

# client COMMAND NAME [args...]: the Node client COMMAND against server NAME.
client() {
  local cmd=$1 name=$2
  shift 2
  node "$CLIENTS" "$cmd" --port "${SPORT[$name]}" --pid "${SPID[$name]}" --key "$KEY" "$@"
}

# j JSON EXPR: a field of the client's JSON answer (a JavaScript expression on `r`).
j() { node -e 'const r = JSON.parse(process.argv[1]); const v = eval(process.argv[2]); console.log(typeof v === "object" ? JSON.stringify(v) : v)' "$1" "$2"; }

# verdict NAME FIGURES TARGET_MET [TARGET]: one line of figures ending with ok or FAILED.
verdict() {
  if [ "$3" = 1 ]; then
    printf '%s: %s: ok\n' "$1" "$2"
  else
    printf '%s: %s: FAILED: %s\n' "$1" "$2" "$4"
    FAILED=1
  fi
}

# all conditions true (arithmetic or awk-free comparisons done by the caller): 1 or 0
met() { node -e 'process.stdout.write(eval(process.argv[1]) ? "1" : "0")' "$1"; }
