#!/usr/bin/env bash
# Install Leadbot with its test tools into .venv, check the style and run every test.
# Tests that need PostgreSQL skip with the reason when it is not running, unless
# LEADBOT_REQUIRE_SERVICES=1 (CI sets it). Extra arguments go to pytest.
#
# The whole suite runs on every core, at most 4 (pytest-xdist, one worker a core;
# LEADBOT_TEST_WORKERS sets another number, 0 or 1 runs it in this process). Most of its time
# is spent waiting for other processes (the bot, the emulators, the databases), so two
# workers on two cores take about half the time. A run given a test file
# (`./scripts/test.sh tests/test_rules.py`, or `...py::test_name`) runs in one process,
# without the workers' start-up (a folder runs on the workers); so does a run given -s,
# --pdb or --sw, and one with its own -n or -p no:xdist runs as that says.
cd "$(dirname "$0")/.."
source scripts/venv.sh
ensure_venv "[test]"
.venv/bin/ruff check .
.venv/bin/ruff format --check .

parallel=1
for arg in "$@"; do
    case "$arg" in
        -n* | --numprocesses* | --dist* | no:xdist | -pno:xdist | --pdb* | --trace | -s | \
            --capture=no | --sw | --stepwise*)
            parallel=0 ;;
        -*) ;;
        *) if [ -f "${arg%%::*}" ]; then parallel=0; fi ;;
    esac
done
# At most 4 by default: each worker holds its own PostgreSQL connections (100 by default in
# all), emulators and bots.
cores="$(nproc 2>/dev/null || echo 1)"
workers="${LEADBOT_TEST_WORKERS:-$((cores < 4 ? cores : 4))}"
if [ "$parallel" = 1 ] && [ "$workers" -gt 1 ] && .venv/bin/python -c 'import xdist' 2>/dev/null
then
    # worksteal: a worker that runs out of tests takes half of what another still has queued,
    # so both stay busy to the end (with `load`, one core sat idle for the last two minutes
    # while the other worked through its queue of end-to-end tests). A module's emulator may
    # start in both workers; that costs a fraction of a second.
    set -- -n "$workers" --dist worksteal "$@"
fi
exec .venv/bin/pytest "$@"
