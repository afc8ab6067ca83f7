#!/usr/bin/env bash
# The real Automerge client for tests/automerge and benchmarks/automerge_bench.py: Debian's
# nodejs and npm (installed when node is missing), then @automerge/automerge at the version
# pinned in tests/automerge/js/package.json, into tests/automerge/js/node_modules. Does nothing
# when that version is already there.
set -euo pipefail
DIR="$(cd "$(dirname "$0")/.." && pwd)/tests/automerge/js"
PINNED="$(sed -n 's/.*"@automerge\/automerge": *"\([^"]*\)".*/\1/p' "$DIR/package.json")"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "installing Debian's nodejs and npm ..." >&2
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
installed="$(node -p 'require(process.argv[1]).version' "$DIR/node_modules/@automerge/automerge/package.json" 2>/dev/null || true)"
if [ "$installed" != "$PINNED" ]; then
    echo "npm install @automerge/automerge@$PINNED ..." >&2
    (cd "$DIR" && npm install --no-audit --no-fund --loglevel=error)
fi
echo "automerge js: node $(node --version), @automerge/automerge $PINNED"
