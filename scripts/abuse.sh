#!/usr/bin/env bash
# Hostile clients against the release example server (docs/protocol.md, "Body idle timeout" and
# "Storage limits", and serve::Server's connection limits): silent
# and stalling connections, trickled bodies, 100,000 chunks on one URL, bad paths, the
# pending-bytes quota, bodies over the size limit. One line of figures per item, each
# ending with `ok` or `FAILED: <target>`; exits 1 if any target is missed.
#
# Usage
#   scripts/abuse.sh           the full form (up to 25 minutes on 2 cores, most of it
#                              the 100,000 chunks)
#   scripts/abuse.sh --short   the CI form (under 3 minutes): fewer chunks, fewer
#                              connections at the default cap
#
# SERVER_BIN=PATH drives a server built elsewhere instead of building this one.
#
# Clients: curl and Node's http client where an item names a real client, otherwise
# Node's standard library (scripts/hostile.mjs). Each item starts its own server on
# 127.0.0.1:0 with a fresh --dir; every server is stopped and the work folder removed
# at exit. Servers that face silent connections run with `--header-timeout 10`, so
# the targets below that speak of the header timeout mean 10 s there.
set -uo pipefail
SHORT=0
case ${1:-} in
  --short) SHORT=1 ;;
  '') ;;
  *) echo "usage: $0 [--short]" >&2; exit 2 ;;
esac
source "$(dirname "${BASH_SOURCE[0]}")/server-lib.sh"

if ((SHORT)); then CHUNKS=10000 CAP_CONNS=2000; else CHUNKS=100000 CAP_CONNS=10000; fi
SILENT=10000
HT=10                  # --header-timeout given to the servers that face silent connections
# 10,000 connections take 10,000 descriptors in the client and as many in the server
ulimit -n "$(ulimit -Hn)" 2>/dev/null
(($(ulimit -n) >= SILENT + 1000)) || die "ulimit -n is $(ulimit -n) (hard $(ulimit -Hn)); $((SILENT + 1000)) needed"
build

# ------------------------------------------------------------------ 2 (in the background)
# The trickle waits two body-timeout windows (60 s); it runs while item 1 does.
start_server slow - "$W/slow"
client trickle slow --step 5000 --bound 150 > "$W/trickle.json" 2>&1 &
TRICKLE=$!
client post-no-body slow --bound 90 > "$W/post.json" 2>&1 &
POST=$!

# ------------------------------------------------------------------ 1: silent connections
start_server silent - "$W/silent" --max-connections $((SILENT + 2000)) --header-timeout $HT
r=$(client silent silent --count $SILENT --bound $((HT + 40)))
verdict silent-connections "$(j "$r" '`${r.connected} opened in ${r.openedSeconds} s, the server held ${r.serverFdsPeak} (${r.stillOpen} never reached it: listen queue overflow) and closed them all ${r.serverHeldSeconds} s after the last one opened, none open longer than ${r.longestSeconds} s (header timeout '$HT' s), peak RSS ${r.peakRssMiB} MiB, upload answered in ${r.upload.answeredSeconds} s (status ${r.upload.status})`')" \
  "$(met "const r=$r; r.connected===$SILENT && r.stillOpen===0 && r.serverFdsNow<=0 && r.serverHeldSeconds<=$HT+5 && r.longestSeconds<=$HT+5 && r.peakRssMiB<64 && r.upload.ok && r.upload.answeredSeconds<=1")" \
  "all $SILENT reach the server and are closed within $((HT + 5)) s, RSS under 64 MiB, upload answered within 1 s"

r=$(client preface silent --count 50 --step 5000 --bound $((HT + 30)))
verdict h2-preface-trickle "$(j "$r" '`${r.count} connections sending the HTTP/2 preface a byte every 5 s, ${r.closedByServer} closed by the server, the last after ${r.longestSeconds} s (header timeout '$HT' s), at most ${r.maxBytesSent} bytes sent`')" \
  "$(met "const r=$r; r.closedByServer===50 && r.longestSeconds<=$HT+5")" "all closed within $((HT + 5)) s"
stop_server silent

# The default cap (1024): the rest wait in the kernel's queue, served as earlier ones close.
start_server cap - "$W/cap" --header-timeout $HT
waves=$(((CAP_CONNS + 1023) / 1024))
r=$(client silent cap --count $CAP_CONNS --bound $(((waves + 2) * HT + 60)))
verdict default-cap "$(j "$r" '`at the default --max-connections (1024): ${r.openedNow} of ${r.requested} silent connections connected within ${r.openedSeconds} s, ${r.closedByServer} closed by the server, all gone after ${r.allClosedSeconds} s, ${r.failed} connects failed ${JSON.stringify(r.failures)}; an upload behind them answered in ${r.upload.answeredSeconds} s (status ${r.upload.status}); peak RSS ${r.peakRssMiB} MiB`')" \
  "$(met "const r=$r; r.serverAlive && r.stillOpen===0 && r.upload.ok")" "the server keeps serving: every connection closed, the upload answered"
stop_server cap

# Out of file descriptors: the server under `ulimit -n 1024`, 1,100 silent connections.
start_server fds 1024 "$W/fds" --max-connections $((SILENT + 2000)) --header-timeout $HT
r=$(client silent fds --count 1100 --bound $((HT + 40)) --cpu-window 5)
verdict fd-limit "$(j "$r" '`server under ulimit -n 1024: ${r.openedNow} silent connections open (the server held ${r.serverFdsPeak} descriptors for them, ${r.stillOpen} never reached it), server CPU ${(r.cpuShare*100).toFixed(1)} % of a core while out of descriptors, an upload answered after ${r.upload.answeredSeconds} s (status ${r.upload.status}, header timeout '$HT' s), server ${r.serverAlive ? "running" : "GONE"}`')" \
  "$(met "const r=$r; r.serverAlive && r.cpuShare!==null && r.cpuShare<0.05 && r.serverFdsNow<=0 && r.upload.ok && r.upload.answeredSeconds<=$HT+5")" \
  "server running, under 5 % CPU, upload answered within $((HT + 5)) s"
stop_server fds

# ------------------------------------------------------------------ 2: trickle
wait $TRICKLE $POST
r=$(cat "$W/trickle.json")
verdict trickle "$(j "$r" '`10 MB PUT at a byte every 5 s: ${r.status} ${r.code} after ${r.seconds} s, ${r.bytesSent} bytes sent (body timeout 30 s)`')" \
  "$(met "const r=$r; r.status===408 && r.code==='body_timeout' && r.seconds<=61")" "408 body_timeout within two 30 s windows (+1 s)"
r=$(cat "$W/post.json")
verdict post-without-body "$(j "$r" '`POST /upload-url with Content-Length: 1000 and no body: ${r.answer ? "answered " + r.answer + " and " : ""}${r.closed ? "closed" : "still open"} after ${r.seconds} s (header timeout 30 s)`')" \
  "$(met "const r=$r; r.closed && r.seconds<=31")" "answered or closed within the header timeout"
stop_server slow

# ------------------------------------------------------------------ 3: many chunks
start_server chunks - "$W/chunks"
r=$(client many-chunks chunks --count $CHUNKS --parallel 4 --stall 200 --dir "$W/chunks" --max-seconds $((SHORT ? 120 : 1500)))
verdict many-chunks "$(j "$r" '`${r.count} of '$CHUNKS' one-byte chunks answered 202 on one URL in ${r.seconds} s (${r.rate}/s, 4 in flight), p50 ${r.p50FirstMs} ms first 1000 / ${r.p50LastMs} ms last 1000 (p99 ${r.p99FirstMs} / ${r.p99LastMs}), session files ${(r.sessionDiskBytes/1048576).toFixed(1)} MiB on disk`')" \
  "$(met "const r=$r; r.count===$CHUNKS && r.p50LastMs<=2*r.p50FirstMs")" "all $CHUNKS answered 202 in the time bound, p50 of the last 1000 within 2x the first 1000"
verdict stalled-chunks "$(j "$r" '`200 chunk requests with headers and no body on that session: RSS ${r.rssBeforeMiB} -> ${r.rssPeakStalledMiB} MiB (+${r.stallAddedMiB} MiB), ${r.stalledAnsweredEarly} answered early, status query ${r.statusAfter} with ${r.receivedAfter} bytes`')" \
  "$(met "const r=$r; r.stallAddedMiB!==null && r.stallAddedMiB<32 && r.serverAlive")" "under 32 MiB added"
stop_server chunks

# ------------------------------------------------------------------ 4: paths
start_server paths - "$W/paths"
put_chunk() { # PATH -> "status code" of a first chunk (1 byte of 2) sent by curl
  local url body status
  url=$(node "$CLIENTS" sign --port "${SPORT[paths]}" --key "$KEY" --path "$1")
  status=$(curl -sS -o "$W/body.json" -w '%{http_code}' --max-time 30 -X PUT --data-binary x -H 'Content-Range: bytes 0-0/2' "$url")
  echo "$status $(node -e 'try { console.log(JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).error?.code ?? "-") } catch { console.log("-") }' "$W/body.json")"
}
dirs_outside_uploads() { find "$W/paths" -mindepth 1 -path "$W/paths/.uploads" -prune -o -type d -print | sort; }
before=$(dirs_outside_uploads)
seg=$(printf 'a%.0s' $(seq 256))
a=$(put_chunk "abuse/$seg.bin")
long=$(for i in $(seq 420); do printf 'segment%03d/' $((i % 1000)); done)
long=${long:0:4201}x.bin
b=$(put_chunk "$long")
left=$(comm -13 <(echo "$before") <(dirs_outside_uploads) | wc -l)
mkdir -p "$W/outside"
ln -s "$W/outside" "$W/paths/linked"
c=$(put_chunk "linked/file.bin")
outside=$(find "$W/outside" -mindepth 1 | wc -l)
verdict paths "256-byte segment: $a; ${#long}-character path: $b, $left folders left under --dir; through a symbolic link: $c, $outside entries written behind it" \
  "$([ "$a" = "400 path_invalid" ] && [ "${b%% *}" = 400 ] && [ "$left" = 0 ] && [ "$c" = "400 path_invalid" ] && [ "$outside" = 0 ] && echo 1)" \
  "400 path_invalid on the first chunk, nothing left on disk"
stop_server paths

# ------------------------------------------------------------------ 5: quota
if "$BIN" --help | grep -q -- '--max-pending'; then
  start_server quota - "$W/quota" --max-pending $((64 * 1048576))
  r=$(client quota quota --puts 20 --put-size 8000000 --chunks 16)
  verdict quota "$(j "$r" '`--max-pending 64 MiB, 20 simultaneous 8 MB PUTs on one URL: ${JSON.stringify(r.putStatuses)}; session chunks meanwhile: ${JSON.stringify(r.chunkStatusesDuring)}; ${r.acked} chunks acknowledged, ${r.lost} lost; status query ${r.statusQuery}; completed ${r.finalStatus}, sha-256 ${r.shaOk ? "right" : "WRONG"}`')" \
    "$(met "const r=$r; r.storageFull && r.other5xx.length===0 && r.lost===0 && r.shaOk")" \
    "507 storage_full past the quota, no other 5xx, acknowledged chunks kept, right sha-256"
  stop_server quota
else
  echo "quota: skipped: no --max-pending"
fi

# ------------------------------------------------------------------ 6: over the limit
start_server limit - "$W/limit" --max-size 1048576
head -c $((64 * 1048576)) /dev/urandom > "$W/64m.bin"
url=$(node "$CLIENTS" sign --port "${SPORT[limit]}" --key "$KEY" --path abuse/over.bin)
curl_over() { # extra curl flags: how many of 10 read the 413 envelope with curl exit 0
  local good=0 i rc status
  for i in $(seq 10); do
    status=$(curl -sS -o "$W/over.json" -w '%{http_code}' --max-time 60 -H 'Expect:' "$@" -T "$W/64m.bin" "$url" 2> "$W/curl.err")
    rc=$?
    [ "$rc" = 0 ] && [ "$status" = 413 ] && grep -q '"too_large"' "$W/over.json" && good=$((good + 1))
    [ "$rc" != 0 ] && log "curl $* exit $rc: $(head -c 200 "$W/curl.err")"
  done
  echo $good
}
c1=$(curl_over)
c2=$(curl_over -H 'Transfer-Encoding: chunked')
n1=$(client over-limit limit --rounds 10 --size $((64 * 1048576)))
n2=$(client over-limit limit --rounds 10 --size $((64 * 1048576)) --chunked)
verdict over-limit "64 MiB PUT against --max-size 1 MiB, 413 too_large read: curl Content-Length $c1/10, curl chunked $c2/10, Node http Content-Length $(j "$n1" 'r.good')/10 $(j "$n1" 'JSON.stringify(r.errors)'), Node http chunked $(j "$n2" 'r.good')/10 $(j "$n2" 'JSON.stringify(r.errors)')" \
  "$(met "$c1===10 && $c2===10 && $(j "$n1" 'r.good')===10 && $(j "$n2" 'r.good')===10")" "10 out of 10 for each client and framing"
stop_server limit

exit $FAILED
