"""The benchmarks run at a tiny size: an interface change breaks a test here, not a benchmark
nobody runs. The figures at this size are noise, so nothing here asserts a rate or a PASS;
what is asserted is that the report is complete (every goal line, with its figure) and
consistent (what was queued is pending, what was sent is recorded as sent, no window over a
pacing limit)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from bot.pacing import Limit

ROOT = Path(__file__).resolve().parent.parent
OUTBOX = ROOT / "bench" / "outbox.py"
FUNNEL = ROOT / "bench" / "funnel.py"

LEADS, STEPS = 400, 2
PACED = ((30, 31), (200, 201))  # RATE:ROWS, each just over one window
TINY = [
    *("--leads", str(LEADS), "--steps", str(STEPS)),
    *("--enqueue-sample", "100", "--claims", "5", "--drain", "50"),
    *(arg for rate, rows in PACED for arg in ("--paced", f"{rate}:{rows}")),
    *("--managers", "30:31", "--memory-baseline", "100"),
    *("--aps-add-sample", "20", "--aps-fetches", "1", "--aps-fire", "10"),
]
NUMBER = r"[\d,]+(?:\.\d+)?"
GOALS = [
    rf"GOAL drain >= 5,000/s: {NUMBER}/s per CPU second \((tick|pump)\) -> (PASS|FAIL); "
    rf"wall {NUMBER}/s -> (PASS|FAIL)",
    *(
        rf"GOAL paced {rate}/s: >= 99% of the limit, 0 violations: {NUMBER}%, 0 violations "
        rf"-> (PASS|FAIL)"
        for rate, _ in PACED
    ),
    rf"GOAL paced 30/s with a post waiting: >= 99% of the limit, 0 violations: {NUMBER}%, "
    rf"0 violations -> (PASS|FAIL)",
    rf"GOAL a 100,000-lead broadcast queued in < 10 s \(extrapolated from {LEADS:,} leads\): "
    rf"{NUMBER} s CPU -> (PASS|FAIL); {NUMBER} s wall -> (PASS|FAIL)",
    rf"GOAL claim p99 < 20 ms: {NUMBER} ms CPU -> (PASS|FAIL); {NUMBER} ms wall -> (PASS|FAIL)",
    rf"GOAL peak memory <= 1.2x the small load's \(the same claims and sends\): {NUMBER}x "
    rf"-> (PASS|FAIL)",
]
APSCHEDULER_GOALS = [
    rf"GOAL {re.escape(name)} >= 10x add_job\(\): {NUMBER}x per CPU second -> (PASS|FAIL); "
    rf"{NUMBER}x wall -> (PASS|FAIL)"
    for name in ("enqueue()", "broadcasts.enqueue")
]


def integer(text: str) -> int:
    return int(text.replace(",", ""))


def run(script: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert done.returncode == 0, f"{script.name} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def check_outbox_report(report: str, *, apscheduler: bool) -> None:
    for goal in GOALS + (APSCHEDULER_GOALS if apscheduler else []):
        assert re.search(goal, report), f"no goal line like {goal!r} in:\n{report}"
    if apscheduler:
        assert re.search(rf"APScheduler add_job\(\): 20 jobs, {NUMBER}/s wall", report)
    else:
        assert "GOAL enqueue >= 10x add_job(): not measured (--skip-apscheduler)" in report

    load = re.search(rf"Load: ({NUMBER}) leads x (\d+) messages = ({NUMBER}) pending", report)
    assert load, report
    assert integer(load[1]) == LEADS
    assert integer(load[3]) == LEADS * STEPS  # every message queued is pending

    drains = re.findall(
        rf"(tick|pump) +at ({NUMBER}) pending: ({NUMBER}) sent \(({NUMBER}) recorded sent, "
        rf"(\d+) left sending\) in {NUMBER} s wall, {NUMBER} s CPU: {NUMBER}/s wall, "
        rf"{NUMBER}/s per CPU second; ({NUMBER}) statements",
        report,
    )
    assert [(mode, integer(pending)) for mode, pending, *_ in drains] == [
        ("tick", LEADS * STEPS),
        ("pump", LEADS * STEPS),
        ("tick", 100),
        ("pump", 100),
    ], report
    for _, _, sent, recorded, left, statements in drains:
        assert integer(sent) >= 50
        assert integer(recorded) == integer(sent)  # each message is one row, recorded sent
        assert left == "0"
        assert float(statements) > 0

    paced = re.findall(
        r"sent (\d+), posted (\d+), recorded sent (\d+), left sending (\d+); "
        r"violations: overall (\d+), per chat (\d+), per group (\d+)",
        report,
    )
    assert len(paced) == len(PACED) + 1, report
    for sent, posted, recorded, left, *violations in paced:
        assert int(sent) + int(posted) == int(recorded)
        assert left == "0"
        assert violations == ["0", "0", "0"]
    post = re.search(
        rf"the waiting post went out ({NUMBER}) s after the group's last post "
        rf"\(its slot: ({NUMBER}) s\).*posts recorded: sent, sent",
        report,
    )
    assert post, report
    assert float(post[1]) >= float(post[2])  # never before its slot

    # `enqueue()` is one statement a row.
    assert re.search(r"enqueue\(\), 1,000 a transaction: 100 rows, .*; 1\.00 statements", report)
    assert re.search(rf"a {LEADS:,}-lead broadcast queued in {NUMBER} s wall", report)
    assert re.search(rf"claim_due of \d+ with {LEADS * STEPS:,} pending: p50 {NUMBER} ms", report)
    assert re.search(
        rf"{NUMBER} MB at {LEADS * STEPS:,} pending, {NUMBER} MB at 100 pending", report
    )


@pytest.mark.alone  # its paced part counts the sends in each window of the wall clock
def test_outbox_bench_on_sqlite() -> None:
    check_outbox_report(run(OUTBOX, *TINY), apscheduler=True)


@pytest.mark.postgres
@pytest.mark.alone
def test_outbox_bench_on_postgresql(postgres_url: str) -> None:
    # APScheduler's store is a SQLite file whatever the database: measured once, above.
    report = run(OUTBOX, *TINY, "--database", postgres_url, "--skip-apscheduler")
    check_outbox_report(report, apscheduler=False)


def test_funnel_bench_on_sqlite() -> None:
    check_funnel_report(run(FUNNEL, "--prospects", str(PROSPECTS)), goal=500)


@pytest.mark.postgres
def test_funnel_bench_on_postgresql(postgres_url: str) -> None:
    report = run(FUNNEL, "--prospects", str(PROSPECTS), "--database", postgres_url)
    check_funnel_report(report, goal=1_000)


PROSPECTS = 3


def check_funnel_report(report: str, *, goal: int) -> None:
    modes = re.findall(
        rf"^  (echo|baseline|engine|dispatcher) +x(\d+) +({NUMBER}) updates: +{NUMBER} ms CPU, "
        rf"+({NUMBER}) statements an update; +{NUMBER} updates/s wall, p50 +{NUMBER} ms, "
        rf"p99 +{NUMBER} ms$",
        report,
        re.MULTILINE,
    )
    assert {(mode, int(at_once)) for mode, at_once, _, _ in modes} == {
        (mode, at_once)
        for mode in ("echo", "baseline", "engine", "dispatcher")
        for at_once in (1, 20)
    }, report
    for mode, _, updates, statements in modes:
        assert integer(updates) == PROSPECTS * 6, report  # six updates a prospect, every way
        if mode == "echo":
            assert float(statements) == 0, report  # no database
        elif mode == "baseline":
            assert float(statements) == 2, report  # find the prospect, insert the event
        else:
            assert float(statements) > 2, report  # a turn reads and writes more
    assert re.search(
        rf"GOAL CPU per update through the dispatcher <= 3x the echo and <= 2 ms: {NUMBER} ms, "
        rf"{NUMBER}x the echo \({NUMBER} ms\) -> (PASS|FAIL)",
        report,
    ), report
    assert re.search(
        rf"GOAL 20 prospects at once >= {goal:,} updates/s, p99 < 50 ms: {NUMBER} updates/s, "
        rf"p99 {NUMBER} ms -> (PASS|FAIL)",
        report,
    ), report


def bench_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_outbox", OUTBOX)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_the_window_check_sees_a_window_over_the_limit() -> None:
    """The bench's '0 violations' means something: its check finds one send too many."""
    bench = bench_module()
    limit = Limit(rate=30.0, burst=30)
    waves = [n / 1024 for n in range(30)] + [1 + n / 1024 for n in range(30)]  # exact floats
    assert bench.violations(waves, limit) == 0
    assert bench.achieved(waves, limit) == (1.0, 1)
    assert bench.violations([*waves[:30], 0.99, *waves[31:]], limit) == 1  # 10 ms early
    assert bench.violations([*waves[:30], 0.9995, *waves[31:]], limit) == 0  # clocks' slack
    assert bench.violations([0.0, 0.5], Limit(rate=1.0, burst=1)) == 1
    assert bench.violations([0.0, 1.0], Limit(rate=1.0, burst=1)) == 0
    assert bench.achieved([0.0, 0.5], limit) == (None, 0)  # within one window: no share


REPORT = ROOT / "bench" / "report.py"


def report_statements(output: str) -> dict[str, int]:
    """Statements of the whole report and of each section, from the bench's lines."""
    return {
        m[1]: int(m[2])
        for m in re.finditer(
            r"^\s*(\w+)\s+wall [\d.]+ s\s+CPU [\d.]+ s\s+statements (\d+)", output, re.M
        )
    }


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_report_bench_reads_in_a_fixed_number_of_statements(
    database: str, request: pytest.FixtureRequest
) -> None:
    """The report is aggregates in SQL: twice the leads and events, the same statements."""
    url = "sqlite" if database == "sqlite" else request.getfixturevalue("postgres_url")
    small, large = (
        run(REPORT, "--leads", str(leads), "--events", str(10 * leads), "--database", url)
        for leads in (150, 300)
    )
    goal = rf"GOAL report for {{leads}} leads and {NUMBER} events < 5 s: {NUMBER} s wall -> "
    assert re.search(goal.format(leads=150), small), small
    assert re.search(goal.format(leads=300), large), large
    counted = report_statements(small)
    assert {"baseline", "report", "funnel", "ab", "conversation"} <= counted.keys(), small
    assert report_statements(large) == counted
    assert counted["report"] == sum(
        v for k, v in counted.items() if k not in ("baseline", "report")
    )


PROCESSES = ROOT / "bench" / "processes.py"
PROCESS_COUNTS, UPDATES, MESSAGES, WARM_UP = (1, 2), 60, 60, 5


@pytest.mark.postgres
@pytest.mark.alone  # its processes share the cores: rates beside other tests mean nothing
def test_processes_bench(postgres_url: str, redis_url: str) -> None:
    from tests.e2e.telegram import EmulatorUnavailable, _unavailable, ensure_emulator_installed

    try:
        ensure_emulator_installed()  # its Telegram is the emulator: skipped as the e2e tests
    except EmulatorUnavailable as exc:
        _unavailable(str(exc))
    report = run(
        PROCESSES,
        *("--processes", ",".join(map(str, PROCESS_COUNTS))),
        *("--updates", str(UPDATES), "--messages", str(MESSAGES), "--warm-up", str(WARM_UP)),
        *("--database", postgres_url, "--redis", redis_url),
    )
    check_processes_report(report)


def check_processes_report(report: str) -> None:
    assert re.search(r"os\.cpu_count\(\) = \d+", report), report
    assert "processes  events/s  ms CPU/event  messages/s  ms CPU/message" in report, report
    rows = re.findall(
        rf"^ +(\d+) +({NUMBER}) +({NUMBER}) +({NUMBER}) +({NUMBER})$", report, re.MULTILINE
    )
    assert [int(n) for n, *_ in rows] == list(PROCESS_COUNTS), report
    for _, *figures in rows:
        assert all(float(f.replace(",", "")) > 0 for f in figures), report

    events = re.findall(
        rf"^events +(\d+) processes: ({NUMBER}) updates in {NUMBER} s wall, {NUMBER} s CPU "
        rf"of the bots; .* leads ({NUMBER}) \(= ({NUMBER}) warm-up \+ {NUMBER}\), replies "
        rf"sent ({NUMBER}); proxy \[([\d, ]+)\]$",
        report,
        re.MULTILINE,
    )
    assert [int(n) for n, *_ in events] == list(PROCESS_COUNTS), report
    for n, updates, leads, warm_up, replies, served in events:
        assert integer(updates) == UPDATES
        assert integer(warm_up) == WARM_UP * int(n)
        # Every update posted was handled: a lead each, a reply each.
        assert integer(leads) == integer(warm_up) + UPDATES, report
        assert integer(replies) == integer(leads), report
        shares = [int(s) for s in served.split(",")]
        assert len(shares) == int(n), report  # every web process took updates
        assert sum(shares) == integer(leads), report

    sent = re.findall(
        rf"^messages +(\d+) processes: sent ({NUMBER}) of ({NUMBER}) in {NUMBER} s wall, "
        rf"{NUMBER} s CPU of the workers; .* delivered ({NUMBER});",
        report,
        re.MULTILINE,
    )
    assert [int(n) for n, *_ in sent] == list(PROCESS_COUNTS), report
    for _, done, queued, delivered in sent:
        assert integer(done) == integer(queued) == integer(delivered) == MESSAGES, report

    assert re.search(
        rf"^2 processes: {NUMBER}x events/s of 1, {NUMBER}x messages/s of 1$",
        report,
        re.MULTILINE,
    ), report


def test_the_time_trigger_scan_bench_runs_and_a_quiet_scan_reads_a_few_statements() -> None:
    """bench/time_triggers.py at 300 leads: every line, and a quiet scan's statements do not
    grow with the leads (what is read is what is due, by index)."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "time_triggers.py"), "--leads", "300"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "leads: 300"
    assert re.fullmatch(rf"first scan: {NUMBER} chains started, {NUMBER} statements, "
                        rf"{NUMBER} ms CPU", lines[1])  # fmt: skip
    quiet = re.fullmatch(rf"quiet scan: ({NUMBER}) statements, {NUMBER} ms CPU", lines[2])
    assert quiet is not None, lines[2]
    assert float(quiet[1]) <= 6  # a read per time-triggered chain and the transaction
    assert re.fullmatch(rf"baseline \(every lead's id read once\): {NUMBER} ms CPU", lines[3])
    assert re.fullmatch(rf"ratio quiet scan / baseline: {NUMBER}x", lines[4])
