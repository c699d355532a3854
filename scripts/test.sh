#!/usr/bin/env bash
# Install Leadbot with its test tools into .venv, check the style and run every test.
# Tests that need PostgreSQL skip with the reason when it is not running, unless
# LEADBOT_REQUIRE_SERVICES=1 (CI sets it). Extra arguments go to pytest.
cd "$(dirname "$0")/.."
source scripts/venv.sh
ensure_venv "[test]"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/pytest "$@"
