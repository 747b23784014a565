#!/usr/bin/env bash
# Real tus clients against the example server: tus-js-client 4 in Node, Uppy 6's
# Tus plugin in headless Chromium (from a page on another origin), tuspy 1.1.
# Each upload's stored bytes are downloaded through a signed GET URL and must
# hash to what the client sent, and the server must have logged exactly one
# completion for it, of the right size (tests/clients/verify.mjs).
#
#   scripts/clients-test.sh           install what is missing, then the test
#   scripts/clients-test.sh install   install what is missing and check that
#                                     it works; fails naming what does not
#
# Installs, idempotent: npm ci in tests/clients (exact versions from its
# package-lock), Uppy bundled for a plain page with esbuild, a Python venv in
# tests/clients/venv with tuspy==1.1.*, Debian's chromium as
# scripts/browser-test.sh does.
#
#   CHROMIUM=PATH        the browser (default /usr/bin/chromium)
#   CLIENTS_TIMEOUT=300  seconds allowed for each client's run
set -euo pipefail
cd "$(dirname "$0")/.."

mode="${1:-test}"
case "$mode" in
  test | install) ;;
  *) echo "usage: $0 [install]" >&2; exit 2 ;;
esac
clients=tests/clients

chromium="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$chromium" ] && [ -z "${CHROMIUM:-}" ]; then
  echo "installing chromium"
  export DEBIAN_FRONTEND=noninteractive
  { timeout 600 apt-get update -qq && timeout 900 apt-get install -y -qq chromium >/dev/null; } ||
    echo "apt-get install chromium failed" >&2
fi

# every package of package.json present at its pinned version
pinned() {
  (cd "$clients" && timeout 60 node --input-type=module -e '
    import { readFileSync } from "node:fs";
    const deps = JSON.parse(readFileSync("package.json")).dependencies;
    for (const [name, version] of Object.entries(deps)) {
      const got = JSON.parse(readFileSync(`node_modules/${name}/package.json`)).version;
      if (got !== version) process.exit(1);
    }') >/dev/null 2>&1
}
if ! pinned; then
  (cd "$clients" && timeout 600 npm ci --no-audit --no-fund --loglevel=error) ||
    echo "npm ci in $clients failed" >&2
fi
bundle="$clients/uppy/uppy.bundle.js"
if [ -x "$clients/node_modules/.bin/esbuild" ] &&
  { [ ! -s "$bundle" ] || [ "$clients/uppy/entry.js" -nt "$bundle" ] || [ "$clients/uppy/signed-tus.js" -nt "$bundle" ] || [ "$clients/package-lock.json" -nt "$bundle" ]; }; then
  timeout 120 "$clients/node_modules/.bin/esbuild" "$clients/uppy/entry.js" --bundle --format=iife \
    --platform=browser --target=chrome100 --outfile="$bundle" --log-level=warning ||
    echo "esbuild could not bundle Uppy" >&2
fi
python="$clients/venv/bin/python"
if [ ! -x "$python" ]; then
  timeout 120 python3 -m venv "$clients/venv" || echo "python3 -m venv failed" >&2
fi
if [ -x "$python" ] &&
  ! "$python" -c 'import importlib.metadata as m, sys; sys.exit(0 if m.version("tuspy").startswith("1.1.") else 1)' 2>/dev/null; then
  timeout 600 "$python" -m pip install -q --disable-pip-version-check 'tuspy==1.1.*' ||
    echo "pip install tuspy failed" >&2
fi

broken=()
timeout 60 "$chromium" --version >/dev/null 2>&1 || broken+=("chromium ($chromium --version fails)")
pinned || broken+=("the npm packages of $clients/package.json at their pinned versions (npm ci)")
(cd "$clients" && timeout 60 node --input-type=module -e "import 'playwright-core'; import 'tus-js-client'") >/dev/null 2>&1 ||
  broken+=("playwright-core and tus-js-client (cannot be imported from $clients)")
[ -s "$bundle" ] || broken+=("the Uppy bundle $bundle (esbuild)")
timeout 60 "$python" -c 'import tusclient.client' >/dev/null 2>&1 || broken+=("tuspy 1.1 in $clients/venv")
if [ "${#broken[@]}" -gt 0 ]; then
  echo "client tests cannot run: ${broken[*]}" >&2
  exit 1
fi
[ "$mode" = install ] && exit 0

cargo build --example server
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
server="$target_dir/debug/examples/server"
key=clients-test-key
run_timeout="${CLIENTS_TIMEOUT:-300}"

work=$(mktemp -d)
pid=""
finisher=""
cleanup() {
  [ -n "$finisher" ] && kill "$finisher" 2>/dev/null && wait "$finisher" 2>/dev/null
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# The page's origin for Uppy: a port that was free a moment ago, below the
# range the kernel hands out to outgoing connections, so none takes it meanwhile.
page_port=$(python3 -c '
import random, socket
for port in random.sample(range(20000, 32000), 200):
    try:
        socket.create_server(("127.0.0.1", port)).close()
    except OSError:
        continue
    print(port)
    break')
[ -n "$page_port" ] || { echo "no free port for the Uppy page" >&2; exit 1; }
starts=0
# start_server ADDR: the server on a fresh log; sets pid and base
start_server() {
  starts=$((starts + 1))
  local log="$work/server-$starts.log"
  env -u SIGNED_UPLOAD_KEYS SIGNED_UPLOAD_KEY="$key" RUST_LOG=server=info NO_COLOR=1 \
    "$server" --addr "$1" --dir "$work/uploads" --allow-origin "http://127.0.0.1:$page_port" >"$log" 2>&1 &
  pid=$!
  base=""
  for _ in $(seq 1 300); do
    base=$(grep -o 'listening on http://[0-9.:]*' "$log" | head -n 1 | sed 's/listening on //' || true)
    [ -n "$base" ] && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  cat "$log"
  echo "the example server did not start on $1" >&2
  exit 1
}

results="$work/results.jsonl"
rc=0
start_server 127.0.0.1:0
echo "== example server at $base, Uppy's page at http://127.0.0.1:$page_port"

echo "== tus-js-client"
(cd "$clients" && timeout "$run_timeout" node tus-js.mjs --base "$base") | tee -a "$results" || rc=1

echo "== tus-js-client: resume from the stored URLs after kill -9 and a restart (tus, ietf-draft-03, ietf-draft-05)"
state="$work/tus-js-urls.json"
restarts=("" -ietf-draft-03 -ietf-draft-05)
begin_cases=$(printf 'restart-begin%s,' "${restarts[@]}")
finish_cases=$(printf 'restart-finish%s,' "${restarts[@]}")
(cd "$clients" && timeout "$run_timeout" node tus-js.mjs --base "$base" --cases "${begin_cases%,}" --state "$state") |
  tee -a "$results" || rc=1
{ kill -9 "$pid" && wait "$pid"; } 2>/dev/null || true
pid=""
# the client starts while the server is down and retries until it is back
(cd "$clients" && timeout "$run_timeout" node tus-js.mjs --base "$base" --cases "${finish_cases%,}" --state "$state") \
  >"$work/finish.jsonl" &
finisher=$!
sleep 0.7
start_server "${base#http://}"
finish_rc=0
wait "$finisher" || finish_rc=$?
finisher=""
tee -a "$results" <"$work/finish.jsonl"
[ "$finish_rc" = 0 ] || rc=1

echo "== tuspy"
timeout "$run_timeout" "$python" "$clients/tuspy_cases.py" --base "$base" | tee -a "$results" || rc=1

echo "== Uppy in headless Chromium"
CHROMIUM="$chromium" timeout "$run_timeout" node "$clients/uppy/run.mjs" --base "$base" --page-port "$page_port" |
  tee -a "$results" || rc=1

echo "== stored bytes and completions"
logs=()
for ((n = 1; n <= starts; n++)); do logs+=(--log "$work/server-$n.log"); done
timeout 120 node "$clients/verify.mjs" --base "$base" --key "$key" --results "$results" "${logs[@]}" || rc=1
for ((n = 1; n <= starts; n++)); do
  if grep -qE ' (WARN|ERROR) ' "$work/server-$n.log"; then
    echo "-- warnings and errors in the log of server start $n"
    grep -E ' (WARN|ERROR) ' "$work/server-$n.log" | tail -n 40
  fi
done
exit "$rc"
