#!/usr/bin/env bash
# Install Leadbot into .venv and run it: `leadbot run` by default, or the leadbot command given
# (scripts/run.sh chat, scripts/run.sh check). Without a messenger token in .env the bot talks
# to you in this terminal, on SQLite, with no other service needed.
cd "$(dirname "$0")/.."
source scripts/venv.sh
ensure_venv ""
[ -f .env ] || cp .env.example .env
exec .venv/bin/leadbot "${@:-run}"
