#!/usr/bin/env bash
# Set up (scripts/setup.sh), then run the whole test suite: engine, magic, the demo notebooks
# in a real kernel, and JupyterLab in a real browser. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
