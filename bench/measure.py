"""What a benchmark part costs, measured the same way in every benchmark: wall time, CPU time
(this process's, plus its PostgreSQL server processes' when the server runs on this machine),
statements and transactions; and the report's small helpers."""

from __future__ import annotations

import asyncio
import os
import resource
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import Pool


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def progress(message: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---- what a part costs: wall, CPU (this process and its PostgreSQL backends), statements ----


class Statements:
    """Statements and transactions of every engine of this process: a statement is one
    execution on a cursor (an executemany, or a batch of a multi-row INSERT, counts once);
    SQLite's own BEGIN is not counted, PostgreSQL's is never a statement of its own."""

    def __init__(self) -> None:
        self.statements = 0
        self.transactions = 0

    def install(self) -> None:
        event.listen(Engine, "before_cursor_execute", self._statement)
        event.listen(Engine, "begin", self._begin)

    def _statement(self, _c: Any, _cur: Any, statement: str, *_args: Any) -> None:
        if not statement.lstrip()[:5].upper().startswith("BEGIN"):
            self.statements += 1

    def _begin(self, _connection: Any) -> None:
        self.transactions += 1


class Backends:
    """CPU time of the PostgreSQL server processes serving this process's connections, read
    from /proc/<pid>/stat (only when the server runs on this machine, else `known` is False).
    A closed connection keeps the CPU time last read for it."""

    TICK = os.sysconf("SC_CLK_TCK")

    def __init__(self) -> None:
        self.seconds_of: dict[int, float] = {}

    def install(self) -> None:
        event.listen(Pool, "connect", self._connect)
        event.listen(Pool, "close", self._close)

    @property
    def known(self) -> bool:
        return bool(self.seconds_of)

    def _pid(self, record: Any) -> int | None:
        get_pid = getattr(getattr(record, "driver_connection", None), "get_server_pid", None)
        return get_pid() if get_pid is not None else None

    def _connect(self, _dbapi: Any, record: Any) -> None:
        pid = self._pid(record)
        seconds = self._read(pid) if pid is not None else None
        if pid is not None and seconds is not None:
            self.seconds_of[pid] = seconds

    def _close(self, _dbapi: Any, record: Any) -> None:
        pid = self._pid(record)
        if pid in self.seconds_of:
            self.seconds_of[pid] = self._read(pid) or self.seconds_of[pid]

    def _read(self, pid: int) -> float | None:
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
                fields = stat.read().rpartition(")")[2].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / self.TICK  # utime + stime

    def seconds(self) -> float:
        for pid, last in self.seconds_of.items():
            self.seconds_of[pid] = self._read(pid) or last
        return sum(self.seconds_of.values())


STATEMENTS = Statements()  # installed in the child processes only
BACKENDS = Backends()


@dataclass(frozen=True)
class Meter:
    wall: float
    cpu: float
    server: float
    statements: int
    transactions: int

    @classmethod
    def now(cls) -> Meter:
        # The reading of /proc first and the wall clock last: the wall time of a part does
        # not include this reading.
        server = BACKENDS.seconds()
        statements, transactions = STATEMENTS.statements, STATEMENTS.transactions
        return cls(time.perf_counter(), time.process_time(), server, statements, transactions)

    def since(self) -> dict[str, float]:
        """What was spent since this reading."""
        wall, cpu = time.perf_counter(), time.process_time()
        return {
            "wall": wall - self.wall,
            "cpu": cpu - self.cpu,
            "server": BACKENDS.seconds() - self.server,
            "statements": STATEMENTS.statements - self.statements,
            "transactions": STATEMENTS.transactions - self.transactions,
        }


async def postgres_execute(url: str, statement: str) -> None:
    """Run one statement (a schema made or dropped) on the server of a PostgreSQL URL."""
    import asyncpg

    plain = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(plain)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def postgres_schema(url: str, statement: str) -> None:
    asyncio.run(postgres_execute(url, statement))


def cpu_of(spent: dict[str, float]) -> float:
    return spent["cpu"] + spent["server"]


def rates(count: float, spent: dict[str, float]) -> tuple[float, float]:
    """Per wall second and per CPU second."""
    return count / max(spent["wall"], 1e-9), count / max(cpu_of(spent), 1e-9)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:,.1f}x" if a and b else "-"
