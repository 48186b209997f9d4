#!/usr/bin/env bash
# Set up everything from nothing: Debian's chromium (for the browser test), a venv in .venv,
# the CPU build of torch, and tensormagic with its test and demo extras. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
. .venv/bin/activate
log=$(mktemp)
quietly() {  # pip's build chatter goes to a log, shown only when a step fails
    "$@" >"$log" 2>&1 || { cat "$log"; echo "setup failed: $*" >&2; exit 1; }
}
quietly python -m pip install -q --upgrade pip
# torch first, pinned: the CPU build lies on local disk; an unpinned torch pulls a CUDA build.
quietly python -m pip install -q torch==2.13.0
quietly python -m pip install -q -e ".[test,demo]"
quietly python -m ipykernel install --sys-prefix --name python3
rm -f "$log"
