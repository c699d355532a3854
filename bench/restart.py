"""The restart test at full size: 10,000 messages, two delivery worker processes killed with
SIGKILL three times, on SQLite and on PostgreSQL (tests/delivery/test_restart.py,
`test_killed_workers_lose_nothing_and_repeat_only_what_was_on_the_wire`).

The test suite runs it with 1,000 messages; this runs it with `--messages` (10,000 by default)
in a pytest child process and prints the test's summary line for each database: the time the
delivery took, how many sends a kill repeated (at most `bot.delivery.CONCURRENCY` per killed
worker), the claims, and each worker's sends. It fails as the test fails. PostgreSQL is the
tests' (LEADBOT_TEST_POSTGRES_URL, 127.0.0.1:5432 by default); without it that half is
skipped. The environment is passed through. Run by hand; never part of the test run.

    .venv/bin/python bench/restart.py                    # 10,000 messages, both databases
    .venv/bin/python bench/restart.py --messages 20000 --database sqlite
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEST = "tests/delivery/test_restart.py"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument(
        "--database", choices=("sqlite", "postgresql"), help="only this one (default: both)"
    )
    args = parser.parse_args()
    selection = "killed" + (f" and {args.database}" if args.database else "")
    command = [sys.executable, "-m", "pytest", TEST, "-k", selection, "-s", "-q"]
    env = {**os.environ, "LEADBOT_RESTART_MESSAGES": str(args.messages)}
    print(f"{' '.join(command[2:])} with {args.messages} messages", flush=True)
    began = time.monotonic()
    output: list[str] = []
    with subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as child:
        assert child.stdout is not None
        for line in child.stdout:
            output.append(line)
            if line.startswith(("sqlite:", "postgresql:")):  # the test's summary line
                print(line, end="", flush=True)
    tail = [line for line in output if " passed" in line or " failed" in line or "skipped" in line]
    if child.returncode != 0:
        print("".join(output[-60:]), end="")
    print(f"{tail[-1].strip() if tail else 'no result'}; {time.monotonic() - began:.0f}s")
    return child.returncode


if __name__ == "__main__":
    sys.exit(main())
