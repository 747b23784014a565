#!/usr/bin/env bash
# The whole test suite: every cargo test (all features, and none), then the
# browser test of the example server's uploader page in headless Chromium.
# Installs what the browser test needs (Debian's chromium, playwright-core)
# when it is missing; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

# The object-store tests run against moto's S3 server (under CI=true they fail
# rather than skip without it).
if ! command -v moto_server >/dev/null 2>&1; then
  echo "== installing moto's S3 server"
  python3 -m pip install --quiet 'moto[server]'
  # pyenv puts new console scripts on PATH only after a rehash.
  if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
  hash -r
  command -v moto_server >/dev/null 2>&1 ||
    export PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
fi

echo "== cargo test (all features)"
cargo test --all-features
echo "== cargo test (no default features)"
cargo test --no-default-features --lib --tests
FUZZ_SECONDS=15 scripts/fuzz-smoke.sh

if [ -f tests/browser/upload.mjs ] && [ -f examples/server.rs ]; then
  echo "== browser test"
  scripts/browser-test.sh
fi
