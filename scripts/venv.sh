# Sourced by run.sh and test.sh: make .venv hold the project (and extras), reinstalling only
# when pyproject.toml changed.
set -euo pipefail

ensure_venv() {
    local extras="$1"
    local python="${PYTHON:-python3}"
    if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        echo "Leadbot needs Python 3.11 or newer as '$python' (set PYTHON=/path/to/python3.x)" >&2
        exit 2
    fi
    local stamp
    stamp=".venv/.installed-$(cat pyproject.toml | sha256sum | cut -c1-16)${extras}"
    if [ ! -x .venv/bin/python ]; then
        "$python" -m venv .venv
    fi
    if [ ! -f "$stamp" ]; then
        .venv/bin/python -m pip install --quiet --upgrade pip
        .venv/bin/python -m pip install --quiet -e ".${extras}"
        rm -f .venv/.installed-*
        touch "$stamp"
    fi
}
