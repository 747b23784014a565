#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run): every cargo test (all features,
# and none), the fuzz targets' regressions and a short fuzz run, the browser test
# of the example server's uploader page in headless Chromium, then real tus and
# IETF-draft clients against the example server (scripts/clients-test.sh).
#
# Every test it runs must run: the prerequisites are checked (and installed when
# an installer can) before anything is built, the script stops naming each one
# that is missing, and SIGNED_UPLOAD_REQUIRE_ALL=1 makes a test that still cannot
# reach its outside service fail instead of skipping. Run locally, it gives the
# verdict CI gives.
#
#   moto_server          S3 API server for tests/object_store.rs (pip install 'moto[server]')
#   root, mount tmpfs    tests/it/fs_full.rs mounts a 2 MiB tmpfs
#   chromium, playwright-core   the browser test (installed as scripts/browser-test.sh does)
#   tus clients          npm packages, the Uppy bundle and tuspy in a venv
#                        (installed by scripts/clients-test.sh install)
#   nightly, cargo-fuzz  scripts/fuzz-smoke.sh installs them itself
#
# Safe to run again: installs happen only for what is missing. Every step is
# bounded in time:
#   INSTALL_TIMEOUT=900  seconds per install or check
#   TEST_TIMEOUT=3600    seconds per cargo test run, the fuzz smoke, the browser
#                        test and the tus client test
set -euo pipefail
cd "$(dirname "$0")/.."

export SIGNED_UPLOAD_REQUIRE_ALL=1
install_timeout="${INSTALL_TIMEOUT:-900}"
test_timeout="${TEST_TIMEOUT:-3600}"
missing=()

# ---- moto's S3 server, for tests/object_store.rs
if ! command -v moto_server >/dev/null 2>&1; then
  echo "== installing moto's S3 server"
  timeout "$install_timeout" python3 -m pip install --quiet 'moto[server]' || true
  # pyenv puts new console scripts on PATH only after a rehash.
  if command -v pyenv >/dev/null 2>&1; then pyenv rehash || true; fi
  hash -r
  if ! command -v moto_server >/dev/null 2>&1; then
    scripts="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null || true)"
    [ -n "$scripts" ] && export PATH="$scripts:$PATH"
  fi
fi
# A pyenv shim can exist for a version that lacks the command: run it.
if ! timeout 120 moto_server --help >/dev/null 2>&1; then
  missing+=("moto_server, callable (tests/object_store.rs; pip install 'moto[server]')")
fi

# ---- root and a tmpfs mount, for tests/it/fs_full.rs
if [ "$(id -u)" != 0 ]; then
  missing+=("root (tests/it/fs_full.rs mounts a tmpfs)")
else
  probe="$(mktemp -d)"
  if timeout 60 mount -t tmpfs -o size=64k tmpfs "$probe" 2>/dev/null; then
    timeout 60 umount "$probe" || missing+=("umount of a tmpfs (tests/it/fs_full.rs)")
  else
    missing+=("mount -t tmpfs, which fails even as root here (tests/it/fs_full.rs)")
  fi
  rmdir "$probe" 2>/dev/null || true
fi

# ---- Chromium and playwright-core, for the browser test
echo "== browser test prerequisites"
if ! timeout "$install_timeout" scripts/browser-test.sh install; then
  missing+=("chromium and tests/browser/node_modules/playwright-core (scripts/browser-test.sh install)")
fi

# ---- tus-js-client, Uppy and tuspy, for the tus client test
echo "== tus client test prerequisites"
if ! timeout "$install_timeout" scripts/clients-test.sh install; then
  missing+=("tus-js-client, Uppy's bundle, tuspy or chromium (scripts/clients-test.sh install)")
fi

if [ "${#missing[@]}" -gt 0 ]; then
  echo "test-all: cannot run every test; missing:" >&2
  for what in "${missing[@]}"; do echo "  - $what" >&2; done
  exit 1
fi

echo "== cargo test (all features)"
timeout "$test_timeout" cargo test --all-features
echo "== cargo test (no default features)"
timeout "$test_timeout" cargo test --no-default-features --lib --tests
echo "== fuzz regressions and smoke"
FUZZ_SECONDS=15 timeout "$test_timeout" scripts/fuzz-smoke.sh
echo "== browser test"
timeout "$test_timeout" scripts/browser-test.sh
echo "== tus clients"
timeout "$test_timeout" scripts/clients-test.sh
echo "test-all: every test ran and passed"
