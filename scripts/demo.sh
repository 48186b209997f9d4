#!/usr/bin/env bash
# Set up (scripts/setup.sh), then the main job: run demo_notebooks/quickstart.ipynb headless in a
# real kernel and write demo_notebooks/_build/quickstart.html (open it in a browser), and print
# the derivation of the seed example in the terminal.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m tensormagic "A[i,k] := B[i,j] * C[j,k] * D[l,l]" --wrt "B C"
.venv/bin/python demo_notebooks/run_demo.py "$@"
