#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ for a bounded time and fails on any
# crash. Installs cargo-fuzz and the nightly toolchain when they are missing;
# safe to run again, from any directory.
#
#   FUZZ_SECONDS=60   seconds per target (default 60)
#   FUZZ_TARGETS="…"  which targets (default: all of them)
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

for target in $targets; do
  echo "== cargo fuzz build $target"
  cargo +nightly fuzz build "$target" || exit 1
done

logs="fuzz/target/smoke-logs"
mkdir -p "$logs"
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
