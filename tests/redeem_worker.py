"""A process of its own that redeems one code many times at once, for the exactly-once test
in tests/test_redemption.py.

    python -m tests.redeem_worker URL SCENARIO_DIR NOW CODE NAME COUNT

It opens its own Database on URL, prints "ready" once connected, waits for a line on stdin
(so that two workers fire together), redeems CODE COUNT times concurrently with the sources
NAME-0 ... NAME-<COUNT-1> (distinct, so the brute-force lockout stays out of it) and prints
the statuses as a JSON list.
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import datetime
from pathlib import Path

from bot.clock import FakeClock
from bot.engine.funnel import Funnel
from bot.redemption import Redemptions
from bot.scenario.active import ActiveScenario
from bot.scenario.loader import load_scenario
from storage.database import Database


async def main(url: str, folder: str, now: str, code: str, name: str, count: int) -> None:
    db = Database(url)
    try:
        scenario = ActiveScenario(load_scenario(Path(folder)))
        redemptions = Redemptions(Funnel(db, scenario, FakeClock(datetime.fromisoformat(now))))
        async with db.unit_of_work():  # connected before the start signal
            pass
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        outcomes = await asyncio.gather(
            *(redemptions.redeem(code, source=f"{name}-{i}", by=name) for i in range(count))
        )
        print(json.dumps([outcome.status for outcome in outcomes]), flush=True)
    finally:
        await db.dispose()


if __name__ == "__main__":
    url, folder, now, code, name, count = sys.argv[1:]
    asyncio.run(main(url, folder, now, code, name, int(count)))
