#!/usr/bin/env bash
# Crash and race soak of the release example server on FsStorage (docs/protocol.md, "Durability":
# a chunk answered 202 is durable; two processes may serve one session; exactly one
# request completes a session).
#
#   kill -9  rounds of a 4-in-flight chunked upload (8-32 MiB of random bytes, 1 MiB
#            chunks in random order); the server is killed with SIGKILL at a random
#            moment, one round in four just as the last chunks are sent; restarted on
#            the same --dir with the same key; a status query, the missing ranges
#            resent, the file downloaded with a signed GET and its sha-256 checked.
#            Every chunk answered before the kill must still be stored.
#   race     rounds against two servers on one folder: every chunk but the last to
#            either server, then the last to both at the same moment; the stored
#            file's sha-256, the same File in both answers, and exactly one
#            `upload completed` line in the two servers' logs.
#
# Usage
#   scripts/soak.sh            100 kill rounds, 1,000 race rounds
#   scripts/soak.sh --short    10 kill rounds, 50 race rounds (CI)
#   SERVER_BIN=PATH            drive a server built elsewhere instead of building this one
#
# Prints one line per part; exits 1 if any chunk acknowledged before a kill was lost,
# any file was corrupted or could not be completed, or any race round did not complete
# exactly once.
set -uo pipefail
SHORT=0
case ${1:-} in
  --short) SHORT=1 ;;
  '') ;;
  *) echo "usage: $0 [--short]" >&2; exit 2 ;;
esac
source "$(dirname "${BASH_SOURCE[0]}")/server-lib.sh"
if ((SHORT)); then KILL_ROUNDS=10 RACE_ROUNDS=50; else KILL_ROUNDS=100 RACE_ROUNDS=1000; fi
build

# ------------------------------------------------------------------ kill -9
lost=0 corrupted=0 incomplete=0 aimed=0 with_acks=0 already_done=0
t0=$SECONDS
start_server kill - "$W/kill"
for round in $(seq "$KILL_ROUNDS"); do
  at=
  if ((RANDOM % 4 == 0)); then at=--at-completion; aimed=$((aimed + 1)); fi
  before=$(timeout 300 node "$CLIENTS" kill-before --port "${SPORT[kill]}" --pid "${SPID[kill]}" --key "$KEY" \
    --state "$W/round.json" --round "$round" $at)
  # The client killed the server with SIGKILL; reap it and start it again on the same folder.
  pid=${SPID[kill]}
  kill -9 "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  unset "SPID[kill]" "SPORT[kill]"
  start_server kill - "$W/kill"
  after=$(timeout 300 node "$CLIENTS" kill-after --port "${SPORT[kill]}" --key "$KEY" --state "$W/round.json")
  if [ -z "$before" ] || [ -z "$after" ]; then
    log "kill round $round: a client failed: before=$before after=$after"
    incomplete=$((incomplete + 1))
    continue
  fi
  read -r l c done q < <(j "$after" '`${r.lost} ${r.corrupted ? 1 : 0} ${r.completed ? 1 : 0} ${r.statusQuery}`')
  lost=$((lost + l)); corrupted=$((corrupted + c))
  ((done)) || incomplete=$((incomplete + 1))
  (($(j "$before" 'r.acked') > 0)) && with_acks=$((with_acks + 1))
  [ "$q" = 200 ] || [ "$q" = 201 ] && already_done=$((already_done + 1))
  if [ "$l" != 0 ] || [ "$c" != 0 ] || [ "$done" != 1 ]; then
    log "kill round $round: before $before; after $after"
  fi
  rm -rf "$W/kill/soak" "$W/round.json" "$W/round.json.bin"
done
stop_server kill
verdict kill-9 "$KILL_ROUNDS rounds in $((SECONDS - t0)) s ($aimed aimed at the completion, $with_acks with chunks acknowledged before the kill, $already_done found complete after the restart), acknowledged chunks lost $lost, corrupted files $corrupted, rounds not completed $incomplete" \
  "$([ "$lost" = 0 ] && [ "$corrupted" = 0 ] && [ "$incomplete" = 0 ] && echo 1)" \
  "no acknowledged chunk lost, no corrupted file, every round completed"

# ------------------------------------------------------------------ race
start_server race1 - "$W/race"
start_server race2 - "$W/race"
r=$(timeout 3600 node "$CLIENTS" race --key "$KEY" --rounds "$RACE_ROUNDS" --dir "$W/race" \
  --port1 "${SPORT[race1]}" --port2 "${SPORT[race2]}" --log1 "$W/race1.log" --log2 "$W/race2.log")
[ -n "$r" ] || r='{"rounds":0,"corrupted":-1,"notOne":-1,"differentFiles":-1,"failed":-1,"seconds":0,"answerPairs":{},"completionCounts":{}}'
verdict race "$(j "$r" '`${r.rounds} rounds in ${r.seconds} s, two servers on one folder, the last chunk to both at once: corrupted files ${r.corrupted}, rounds without exactly one completion ${r.notOne} (completions per round ${JSON.stringify(r.completionCounts)}), answers with different Files ${r.differentFiles}, rounds with a refused chunk ${r.failed}, answer pairs ${JSON.stringify(r.answerPairs)}`')" \
  "$(met "const r=$r; r.rounds===$RACE_ROUNDS && r.corrupted===0 && r.notOne===0 && r.differentFiles===0 && r.failed===0")" \
  "no corrupted file, exactly one completion per round, the same File in both answers"
[ "$(j "$r" 'r.failures.length')" = 0 ] || log "race failures: $(j "$r" 'JSON.stringify(r.failures)')"
stop_server race1
stop_server race2

exit $FAILED
