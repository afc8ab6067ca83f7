#!/usr/bin/env bash
# Make sure a Rust toolchain that builds for wasm32-unknown-unknown is here (plugins and the
# toolchain tests need one). Debian's rustc, cargo and libstd-rust-dev-wasm32 carry the target's
# standard library (and lld its linker), so no rustup download is needed. Does nothing when one is found.
set -euo pipefail
PY="${1:-.venv/bin/python}"
if "$PY" -c 'from aspen.toolchain.rust import find_toolchain; find_toolchain()' 2>/dev/null; then
    exit 0
fi
echo "installing Debian's Rust with the wasm32 target (rustc cargo libstd-rust-dev-wasm32) ..." >&2
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends rustc cargo libstd-rust-dev-wasm32 >/dev/null
# The target links with /usr/bin/rust-lld, a link to the lld-NN that libstd-rust-dev-wasm32 only
# recommends (so --no-install-recommends leaves it dangling): install the package it names.
lld_package="$(readlink /usr/bin/rust-lld || true)"
if [ -n "$lld_package" ] && ! command -v rust-lld >/dev/null; then
    $SUDO apt-get install -y -qq --no-install-recommends "$lld_package" >/dev/null
fi
"$PY" -c 'from aspen.toolchain.rust import find_toolchain; print("wasm32 toolchain:", find_toolchain())'
