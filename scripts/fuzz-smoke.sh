#!/usr/bin/env bash
# Replays every input kept under fuzz/regressions/<target>/ through its target,
# then runs every cargo-fuzz target of fuzz/ for a bounded time; fails on any
# crash. Installs cargo-fuzz and the nightly toolchain when they are missing;
# safe to run again, from any directory.
#
#   FUZZ_SECONDS=60   seconds per target (default 60)
#   FUZZ_TARGETS="…"  which targets to fuzz (default: all of them); the
#                     regressions of every target are replayed whatever this says
#
# Each target starts from its committed seeds (fuzz/seeds/<target>/) plus the
# local, ignored corpus (fuzz/corpus/<target>/), with its dictionary when it has
# one. A crash leaves its input under fuzz/artifacts/<target>/. Per target it
# prints one summary line (executions, executions per second, coverage), and at
# the end `fuzz: N passed, M failed`.
set -uo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-60}"
targets="${FUZZ_TARGETS:-signed_url content_range upload_session request}"

if ! rustup toolchain list | grep -q '^nightly'; then
  rustup toolchain install nightly --profile minimal || exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked || exit 1
fi

# Targets with kept regression inputs: every folder of fuzz/regressions/ names one.
replay_targets=""
for dir in fuzz/regressions/*/; do
  [ -d "$dir" ] || continue
  replay_targets="$replay_targets $(basename "$dir")"
done
known="$(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml)"
for target in $replay_targets; do
  grep -qx "$target" <<<"$known" || {
    echo "fuzz/regressions/$target/ names no target of fuzz/Cargo.toml"
    exit 1
  }
done

built=" "
for target in $targets $replay_targets; do
  [[ $built == *" $target "* ]] && continue
  built="$built$target "
  echo "== cargo fuzz build $target"
  cargo +nightly fuzz build "$target" || exit 1
done

logs="fuzz/target/smoke-logs"
mkdir -p "$logs"

# Each regression input runs once through its target (libFuzzer runs the files it
# is given and exits: no fuzzing, nothing written). A crash, or an input that was
# not run, fails the script here, before any time is spent fuzzing. Files named
# *.txt or *.md are notes on a case (found by a proptest twin, say), not inputs.
for target in $replay_targets; do
  inputs=()
  notes=0
  for input in "fuzz/regressions/$target"/*; do
    [ -f "$input" ] || continue
    case "$input" in
      *.txt | *.md) notes=$((notes + 1)) ;;
      *) inputs+=("$input") ;;
    esac
  done
  if [ "${#inputs[@]}" -eq 0 ]; then
    echo "replay $target: no input to replay, only $notes note(s) (their cases are pinned as tests)"
    continue
  fi
  log="$logs/$target.regressions.log"
  echo "== replay ${#inputs[@]} regression input(s) of $target (log: $log)"
  cargo +nightly fuzz run "$target" "${inputs[@]}" -- -runs=1 -timeout=10 -rss_limit_mb=4096 >"$log" 2>&1
  status=$?
  executed="$(grep -c '^Executed ' "$log")"
  if [ "$status" -ne 0 ] || [ "$executed" -ne "${#inputs[@]}" ]; then
    grep -E 'panicked at|ERROR: libFuzzer|SUMMARY|^Running: |^thread' "$log" | head -n 20
    echo "replay $target: FAILED (exit $status, $executed of ${#inputs[@]} inputs run)"
    exit 1
  fi
  echo "replay $target: ok, ${#inputs[@]} input(s)"
done
dict_for() {
  case "$1" in
    signed_url) echo fuzz/dict/url.dict ;;
    content_range) echo fuzz/dict/header.dict ;;
    request)
      cat fuzz/dict/url.dict fuzz/dict/header.dict >"$logs/request.dict"
      echo "$logs/request.dict"
      ;;
    *) echo "" ;;
  esac
}

passed=0
failed=0
for target in $targets; do
  mkdir -p "fuzz/corpus/$target" "fuzz/seeds/$target" "fuzz/artifacts/$target"
  args=(-max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=4096)
  dict="$(dict_for "$target")"
  if [ -n "$dict" ]; then
    args+=(-dict="$dict")
  fi
  log="$logs/$target.log"
  echo "== fuzz $target for ${seconds}s (log: $log)"
  cargo +nightly fuzz run "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- "${args[@]}" >"$log" 2>&1
  status=$?
  runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
  time_s="$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -n 1)"
  speed="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)"
  last="$(grep -E '^#[0-9]+' "$log" | tail -n 1)"
  cov="$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")"
  ft="$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")"
  corpus="$(sed -n 's/.* corp: \([0-9]*\/[0-9A-Za-z]*\).*/\1/p' <<<"$last")"
  if [ "$status" -eq 0 ]; then
    passed=$((passed + 1))
    verdict="ok"
  else
    failed=$((failed + 1))
    verdict="FAILED (exit $status)"
    grep -E 'panicked at|ERROR: libFuzzer|SUMMARY|Test unit written|^thread' "$log" | head -n 20
  fi
  echo "fuzz $target: $verdict, ${runs:-?} execs in ${time_s:-?} s, ${speed:-?} exec/s, cov ${cov:-?}, ft ${ft:-?}, corpus ${corpus:-?}"
done

echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
