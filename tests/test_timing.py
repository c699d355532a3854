"""Due times of scheduled messages: time zones, `at:` times, quiet hours and DST."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.timing import in_quiet_hours, out_of_quiet_hours, step_due, zone_of

MOSCOW = ZoneInfo("Europe/Moscow")  # UTC+3 all year
BERLIN = ZoneInfo("Europe/Berlin")  # 2026: 02:00->03:00 on 29 Mar, 03:00->02:00 on 25 Oct
NEW_YORK = ZoneInfo("America/New_York")  # 2026: 02:00->03:00 on 8 Mar, 02:00->01:00 on 1 Nov
VLADIVOSTOK = ZoneInfo("Asia/Vladivostok")  # UTC+10 all year
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")  # DST moves the clock by 30 minutes

NIGHT = (time(21, 0), time(10, 0))  # wraps midnight
LUNCH = (time(13, 0), time(14, 0))  # does not
ZERO = timedelta(0)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def wall(moment: datetime, zone: ZoneInfo) -> tuple[str, str]:
    """Local date, time and UTC offset, to pin the wall clock a lead sees."""
    local = moment.astimezone(zone)
    return local.strftime("%Y-%m-%d %H:%M"), local.strftime("%z")


def msk(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=MOSCOW)


# ---- quiet hours ----


@pytest.mark.parametrize(
    ("due", "expected"),
    [
        pytest.param(msk(10, 23, 30), msk(11, 10), id="late evening: next morning"),
        pytest.param(msk(10, 0, 0), msk(10, 10), id="midnight: same morning"),
        pytest.param(msk(10, 9, 59), msk(10, 10), id="09:59: same morning"),
        pytest.param(msk(10, 10, 0), msk(10, 10), id="10:00 is allowed"),
        pytest.param(msk(10, 20, 59), msk(10, 20, 59), id="20:59 is allowed"),
        pytest.param(msk(10, 21, 0), msk(11, 10), id="21:00 is quiet"),
        pytest.param(msk(31, 22, 0), datetime(2026, 4, 1, 10, tzinfo=MOSCOW), id="month end"),
    ],
)
def test_quiet_hours_wrapping_midnight(due: datetime, expected: datetime) -> None:
    assert out_of_quiet_hours(due, MOSCOW, NIGHT) == expected
    # the same through a step: a base and `after` that land on `due`
    base = (due - timedelta(hours=1)).astimezone(UTC)
    result = step_due(base, timedelta(hours=1), None, MOSCOW, NIGHT)
    assert result == expected
    assert result.tzinfo is UTC


def test_quiet_hours_keep_seconds_outside_and_catch_them_inside() -> None:
    assert not in_quiet_hours(msk(10, 20, 59) + timedelta(seconds=59.999), MOSCOW, NIGHT)
    assert in_quiet_hours(msk(10, 9, 59) + timedelta(seconds=59.999), MOSCOW, NIGHT)
    assert out_of_quiet_hours(msk(10, 9, 59) + timedelta(seconds=30), MOSCOW, NIGHT) == msk(10, 10)


@pytest.mark.parametrize(
    ("due", "expected"),
    [
        pytest.param(msk(10, 12, 59), msk(10, 12, 59), id="before"),
        pytest.param(msk(10, 13, 0), msk(10, 14), id="start is quiet"),
        pytest.param(msk(10, 13, 30), msk(10, 14), id="inside"),
        pytest.param(msk(10, 14, 0), msk(10, 14), id="end is allowed"),
        pytest.param(msk(10, 23, 30), msk(10, 23, 30), id="night is fine"),
    ],
)
def test_quiet_hours_not_wrapping(due: datetime, expected: datetime) -> None:
    assert out_of_quiet_hours(due, MOSCOW, LUNCH) == expected
    assert in_quiet_hours(due, MOSCOW, LUNCH) == (due != expected)


@pytest.mark.parametrize("quiet", [None, (time(10), time(10))], ids=["none", "start == end"])
def test_no_quiet_window(quiet: tuple[time, time] | None) -> None:
    for hour in range(24):
        moment = msk(10, hour, 30)
        assert not in_quiet_hours(moment, MOSCOW, quiet)
        assert out_of_quiet_hours(moment, MOSCOW, quiet) == moment
    assert step_due(utc(2026, 3, 10, 20), timedelta(hours=1), None, MOSCOW, quiet) == utc(
        2026, 3, 10, 21
    )


def test_quiet_hours_use_the_leads_zone() -> None:
    moment = utc(2026, 3, 10, 20, 30)  # 23:30 in Moscow, 21:30 in Berlin, 16:30 in New York
    assert in_quiet_hours(moment, MOSCOW, NIGHT)
    assert in_quiet_hours(moment, BERLIN, NIGHT)
    assert not in_quiet_hours(moment, NEW_YORK, NIGHT)
    assert out_of_quiet_hours(moment, BERLIN, NIGHT) == utc(2026, 3, 11, 9)  # 10:00 CET


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        step_due(datetime(2026, 3, 10, 12), ZERO, None, MOSCOW, NIGHT)
    with pytest.raises(ValueError, match="timezone-aware"):
        out_of_quiet_hours(datetime(2026, 3, 10, 12), MOSCOW, NIGHT)
    with pytest.raises(ValueError, match="before its base"):
        step_due(utc(2026, 3, 10), timedelta(hours=-1), None, MOSCOW, NIGHT)


# ---- `at:` times ----


@pytest.mark.parametrize(
    ("base", "after", "at", "expected"),
    [
        pytest.param(msk(10, 15), timedelta(days=1), time(11), msk(11, 11), id="1d from 15:00"),
        pytest.param(msk(10, 9), timedelta(days=1), time(11), msk(11, 11), id="1d from 09:00"),
        pytest.param(msk(10, 15), timedelta(days=3), time(11), msk(13, 11), id="3d"),
        pytest.param(msk(10, 15), timedelta(hours=24), time(11), msk(11, 11), id="24h is 1d"),
        pytest.param(msk(10, 9), ZERO, time(11), msk(10, 11), id="0 before 11:00: today"),
        pytest.param(msk(10, 15), ZERO, time(11), msk(11, 11), id="0 after 11:00: tomorrow"),
        pytest.param(msk(10, 11), ZERO, time(11), msk(10, 11), id="0 at 11:00: now"),
        pytest.param(msk(10, 10), timedelta(hours=3), time(11), msk(11, 11), id="3h: next"),
        pytest.param(msk(10, 9), timedelta(minutes=90), time(11), msk(10, 11), id="90m: today"),
        pytest.param(msk(10, 15), timedelta(hours=36), time(11), msk(12, 11), id="36h"),
        pytest.param(msk(10, 10), timedelta(hours=25), time(10, 30), msk(12, 10, 30), id="25h"),
    ],
)
def test_at(base: datetime, after: timedelta, at: time, expected: datetime) -> None:
    assert step_due(base.astimezone(UTC), after, at, MOSCOW, NIGHT) == expected


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        pytest.param(time(8), msk(11, 10), id="morning: window end same day"),
        pytest.param(time(22), msk(12, 10), id="evening: window end next day"),
        pytest.param(time(10), msk(11, 10), id="window end itself"),
    ],
)
def test_at_inside_quiet_hours_goes_to_the_window_end(at: time, expected: datetime) -> None:
    assert step_due(msk(10, 15).astimezone(UTC), timedelta(days=1), at, MOSCOW, NIGHT) == expected


def test_at_across_the_date_line() -> None:
    # 20:00 UTC on 10 Mar is already 06:00 on 11 Mar in Vladivostok: "1d" counts from the
    # lead's date, so the step is 12 Mar 11:00 local, which is 01:00 UTC on 12 Mar.
    due = step_due(utc(2026, 3, 10, 20), timedelta(days=1), time(11), VLADIVOSTOK, NIGHT)
    assert due == utc(2026, 3, 12, 1)
    assert wall(due, VLADIVOSTOK) == ("2026-03-12 11:00", "+1000")
    # 03:00 UTC on 15 Jan is still 22:00 on 14 Jan in New York: "0 at 11:00" is 11:00 on 15 Jan.
    due = step_due(utc(2026, 1, 15, 3), ZERO, time(11), NEW_YORK, NIGHT)
    assert due == utc(2026, 1, 15, 16)


def test_quiet_hours_across_the_date_line() -> None:
    # 23:30 UTC is 09:30 next day in Vladivostok: quiet, released at 10:00 local (00:00 UTC).
    assert out_of_quiet_hours(utc(2026, 3, 10, 23, 30), VLADIVOSTOK, NIGHT) == utc(2026, 3, 11)
    # 01:30 UTC is 20:30 the day before in New York: allowed; 02:30 UTC is 21:30: quiet.
    assert out_of_quiet_hours(utc(2026, 1, 15, 1, 30), NEW_YORK, NIGHT) == utc(2026, 1, 15, 1, 30)
    assert out_of_quiet_hours(utc(2026, 1, 15, 2, 30), NEW_YORK, NIGHT) == utc(2026, 1, 15, 15)


# ---- DST ----


def test_at_in_the_spring_gap_is_the_first_instant_after_it() -> None:
    # 02:30 does not exist in Berlin on 29 Mar 2026: 03:00 CEST, the moment the clock jumps.
    due = step_due(utc(2026, 3, 28, 14), timedelta(days=1), time(2, 30), BERLIN, None)
    assert due == utc(2026, 3, 29, 1)
    assert wall(due, BERLIN) == ("2026-03-29 03:00", "+0200")
    # 02:15 does not exist in New York on 8 Mar 2026: 03:00 EDT.
    due = step_due(utc(2026, 3, 7, 17), timedelta(days=1), time(2, 15), NEW_YORK, None)
    assert due == utc(2026, 3, 8, 7)
    assert wall(due, NEW_YORK) == ("2026-03-08 03:00", "-0400")
    # Lord Howe jumps 02:00 -> 02:30 on 4 Oct 2026: 02:15 becomes 02:30 (+11:00).
    due = step_due(utc(2026, 10, 3, 1), timedelta(days=1), time(2, 15), LORD_HOWE, None)
    assert due == utc(2026, 10, 3, 15, 30)
    assert wall(due, LORD_HOWE) == ("2026-10-04 02:30", "+1100")


def test_at_in_the_fall_back_hour_is_its_first_occurrence() -> None:
    # 02:30 happens twice in Berlin on 25 Oct 2026: first in CEST (00:30 UTC).
    due = step_due(utc(2026, 10, 24, 13), timedelta(days=1), time(2, 30), BERLIN, None)
    assert due == utc(2026, 10, 25, 0, 30)
    assert wall(due, BERLIN) == ("2026-10-25 02:30", "+0200")
    # 01:30 happens twice in New York on 1 Nov 2026: first in EDT (05:30 UTC).
    due = step_due(utc(2026, 10, 31, 16), timedelta(days=1), time(1, 30), NEW_YORK, None)
    assert due == utc(2026, 11, 1, 5, 30)
    assert wall(due, NEW_YORK) == ("2026-11-01 01:30", "-0400")


def test_at_between_the_two_occurrences_waits_for_the_next_day() -> None:
    # base 02:45 CEST, after the first 02:30 and before the second: only the first counts.
    due = step_due(utc(2026, 10, 25, 0, 45), ZERO, time(2, 30), BERLIN, None)
    assert due == utc(2026, 10, 26, 1, 30)
    assert wall(due, BERLIN) == ("2026-10-26 02:30", "+0100")


@pytest.mark.parametrize(
    ("zone", "base", "expected", "local"),
    [
        # 11:00 CET -> 11:00 CEST: 23 real hours
        (BERLIN, utc(2026, 3, 28, 10), utc(2026, 3, 29, 9), ("2026-03-29 11:00", "+0200")),
        # 15:00 CET -> 11:00 CEST
        (BERLIN, utc(2026, 3, 28, 14), utc(2026, 3, 29, 9), ("2026-03-29 11:00", "+0200")),
        # 11:00 CEST -> 11:00 CET: 25 real hours
        (BERLIN, utc(2026, 10, 24, 9), utc(2026, 10, 25, 10), ("2026-10-25 11:00", "+0100")),
        # 11:00 EST -> 11:00 EDT
        (NEW_YORK, utc(2026, 3, 7, 16), utc(2026, 3, 8, 15), ("2026-03-08 11:00", "-0400")),
        # 11:00 EDT -> 11:00 EST
        (NEW_YORK, utc(2026, 10, 31, 15), utc(2026, 11, 1, 16), ("2026-11-01 11:00", "-0500")),
    ],
)
def test_one_day_at_11_stays_11_local_across_dst(
    zone: ZoneInfo, base: datetime, expected: datetime, local: tuple[str, str]
) -> None:
    due = step_due(base, timedelta(days=1), time(11), zone, NIGHT)
    assert due == expected
    assert wall(due, zone) == local


@pytest.mark.parametrize(
    ("zone", "base", "local"),
    [
        (BERLIN, utc(2026, 3, 28, 10), ("2026-03-29 12:00", "+0200")),  # from 11:00 CET
        (BERLIN, utc(2026, 10, 24, 9), ("2026-10-25 10:00", "+0100")),  # from 11:00 CEST
        (NEW_YORK, utc(2026, 3, 7, 16), ("2026-03-08 12:00", "-0400")),  # from 11:00 EST
        (NEW_YORK, utc(2026, 10, 31, 15), ("2026-11-01 10:00", "-0500")),  # from 11:00 EDT
    ],
)
def test_24h_without_at_is_24_real_hours_across_dst(
    zone: ZoneInfo, base: datetime, local: tuple[str, str]
) -> None:
    due = step_due(base, timedelta(hours=24), None, zone, NIGHT)
    assert due == base + timedelta(hours=24)
    assert wall(due, zone) == local


def test_one_hour_across_the_gap_is_sixty_minutes() -> None:
    due = step_due(utc(2026, 3, 29, 0, 30), timedelta(hours=1), None, BERLIN, None)
    assert due == utc(2026, 3, 29, 1, 30)
    assert wall(due, BERLIN) == ("2026-03-29 03:30", "+0200")  # from 01:30 CET


def test_quiet_window_end_in_the_gap() -> None:
    quiet = (time(21), time(2, 30))
    # 22:00 CET on 28 Mar: the window would end at 02:30, which 29 Mar skips: 03:00 CEST.
    due = out_of_quiet_hours(utc(2026, 3, 28, 21), BERLIN, quiet)
    assert due == utc(2026, 3, 29, 1)
    assert wall(due, BERLIN) == ("2026-03-29 03:00", "+0200")
    # 01:00 EST on 8 Mar in New York: 03:00 EDT.
    due = out_of_quiet_hours(utc(2026, 3, 8, 6), NEW_YORK, (time(22), time(2, 30)))
    assert due == utc(2026, 3, 8, 7)
    assert not in_quiet_hours(due, NEW_YORK, (time(22), time(2, 30)))
    # through a step whose `at` is inside the window
    due = step_due(utc(2026, 3, 27, 12), timedelta(days=1), time(23), BERLIN, quiet)
    assert due == utc(2026, 3, 29, 1)


def test_quiet_window_open_only_inside_the_gap_waits_a_day_more() -> None:
    # "02:01-02:00" leaves 02:00-02:01 open, which 29 Mar skips: the 03:00 CEST the gap
    # resolves to is quiet again, so the message waits for 02:00 on 30 Mar.
    quiet = (time(2, 1), time(2))
    due = out_of_quiet_hours(utc(2026, 3, 28, 22, 59), BERLIN, quiet)
    assert due == utc(2026, 3, 30)
    assert wall(due, BERLIN) == ("2026-03-30 02:00", "+0200")


def test_quiet_window_end_in_the_repeated_hour() -> None:
    quiet = (time(21), time(2, 30))
    # from the evening: the first 02:30 (CEST, 00:30 UTC)
    assert out_of_quiet_hours(utc(2026, 10, 24, 21), BERLIN, quiet) == utc(2026, 10, 25, 0, 30)
    # 02:45 CEST, between the two 02:30s: allowed
    assert not in_quiet_hours(utc(2026, 10, 25, 0, 45), BERLIN, quiet)
    # 02:00 and 02:15 CET, the second pass: quiet again, and released at the second 02:30,
    # not sent back in time to the first
    for moment in (utc(2026, 10, 25, 1), utc(2026, 10, 25, 1, 15)):
        assert in_quiet_hours(moment, BERLIN, quiet)
        due = out_of_quiet_hours(moment, BERLIN, quiet)
        assert due == utc(2026, 10, 25, 1, 30)
        assert wall(due, BERLIN) == ("2026-10-25 02:30", "+0100")


# ---- zones ----


@pytest.mark.parametrize(
    ("lead_zone", "expected"),
    [
        ("Asia/Vladivostok", "Asia/Vladivostok"),
        (" America/New_York ", "America/New_York"),
        (None, "Europe/Moscow"),
        ("", "Europe/Moscow"),
        ("   ", "Europe/Moscow"),
        ("Mars/Olympus_Mons", "Europe/Moscow"),
        ("UTC+3", "Europe/Moscow"),
        ("Europe", "Europe/Moscow"),
        ("../../etc/passwd", "Europe/Moscow"),
        ("/etc/localtime", "Europe/Moscow"),
    ],
)
def test_zone_of(lead_zone: str | None, expected: str) -> None:
    assert zone_of(lead_zone, "Europe/Moscow") == ZoneInfo(expected)


# ---- properties ----

ZONES = [MOSCOW, BERLIN, NEW_YORK, VLADIVOSTOK, LORD_HOWE]
# DST changes, each with its zone, so that many examples land near one in the right zone
# (uniform dates in a random zone rarely do).
TRANSITIONS = [
    (BERLIN, utc(2026, 3, 29, 1)),  # spring: 02:00 -> 03:00
    (BERLIN, utc(2026, 10, 25, 1)),  # autumn: 03:00 -> 02:00
    (BERLIN, utc(2021, 3, 28, 1)),
    (NEW_YORK, utc(2026, 3, 8, 7)),  # spring: 02:00 -> 03:00
    (NEW_YORK, utc(2026, 11, 1, 6)),  # autumn: 02:00 -> 01:00
    (NEW_YORK, utc(2029, 11, 4, 6)),
    (LORD_HOWE, utc(2026, 4, 4, 15)),  # autumn: 02:00 -> 01:30
    (LORD_HOWE, utc(2026, 10, 3, 15, 30)),  # spring: 02:00 -> 02:30
]

uniform = st.tuples(
    st.sampled_from(ZONES),
    st.datetimes(
        min_value=datetime(2020, 1, 1), max_value=datetime(2030, 12, 31), timezones=st.just(UTC)
    ),
)
near_transition = st.sampled_from(TRANSITIONS).flatmap(
    lambda change: st.tuples(
        st.just(change[0]),
        st.integers(-24 * 60 * 60, 24 * 60 * 60).map(
            lambda seconds: change[1] + timedelta(seconds=seconds)
        ),
    )
)
zoned_moments = st.one_of(uniform, near_transition)
# Hours around 02:00 are where clocks jump, so they get extra weight.
clock_times = st.builds(
    time,
    st.one_of(st.integers(0, 23), st.integers(1, 3)),
    st.one_of(st.integers(0, 59), st.sampled_from([0, 15, 30])),
)
quiet_windows = st.one_of(st.none(), st.tuples(clock_times, clock_times))
# Short waits keep a base near a DST change near it; long ones cover the rest.
durations = st.one_of(
    st.integers(0, 2).map(lambda days: timedelta(days=days)),
    st.integers(0, 14).map(lambda days: timedelta(days=days)),
    st.integers(0, 2 * 24 * 60).map(lambda minutes: timedelta(minutes=minutes)),
    st.integers(0, 21 * 24 * 60).map(lambda minutes: timedelta(minutes=minutes)),
)


def is_transition(instant: datetime, zone: ZoneInfo) -> bool:
    """Whether the zone's offset changes exactly at `instant` (the end of a DST gap)."""
    before = (instant - timedelta(seconds=1)).astimezone(zone).utcoffset()
    return before != instant.astimezone(zone).utcoffset()


def wall_time(instant: datetime, zone: ZoneInfo) -> time:
    return instant.astimezone(zone).time()


@settings(max_examples=300, deadline=None)
@given(
    zoned=zoned_moments,
    after=durations,
    at=st.one_of(st.none(), clock_times),
    quiet=quiet_windows,
)
def test_step_due_properties(
    zoned: tuple[ZoneInfo, datetime],
    after: timedelta,
    at: time | None,
    quiet: tuple[time, time] | None,
) -> None:
    zone, base = zoned
    due = step_due(base, after, at, zone, quiet)
    assert due.tzinfo is UTC
    assert not in_quiet_hours(due, zone, quiet)
    assert out_of_quiet_hours(due, zone, quiet) == due

    # Before quiet hours: the `after` and `at` rule alone.
    raw = step_due(base, after, at, zone, None)
    target = base + after
    whole_days = at is not None and after > ZERO and after % timedelta(days=1) == ZERO
    if at is None:
        assert raw == target
    elif whole_days:
        # "1d at 11:00" is the next calendar day at 11:00, maybe sooner than 24 hours
        assert raw >= base
        assert raw.astimezone(zone).date() == base.astimezone(zone).date() + after
    else:
        # the first `at` not earlier than base + after (the first occurrence of a repeated
        # hour only, hence up to a day and an hour of waiting)
        assert target <= raw < target + timedelta(hours=25)
    if at is not None:
        assert wall_time(raw, zone) == at or is_transition(raw, zone)

    # Quiet hours only ever move the time forward, to the window's end.
    if in_quiet_hours(raw, zone, quiet):
        assert quiet is not None
        assert due > raw
        assert wall_time(due, zone) == quiet[1] or is_transition(due, zone)
    else:
        assert due == raw
    assert due >= (base if whole_days else target)


@settings(max_examples=300, deadline=None)
@given(zoned=zoned_moments, quiet=quiet_windows)
def test_out_of_quiet_hours_properties(
    zoned: tuple[ZoneInfo, datetime], quiet: tuple[time, time] | None
) -> None:
    zone, moment = zoned
    moved = out_of_quiet_hours(moment, zone, quiet)
    assert moved.tzinfo is UTC
    assert not in_quiet_hours(moved, zone, quiet)
    assert out_of_quiet_hours(moved, zone, quiet) == moved
    if not in_quiet_hours(moment, zone, quiet):
        assert moved == moment
        return
    assert quiet is not None
    # the window's end, normally within a day; two when a near-24-hour window (02:01-02:00)
    # has its only open minute skipped by the spring-forward gap ...
    assert moment < moved <= moment + timedelta(hours=49)
    assert wall_time(moved, zone) == quiet[1] or is_transition(moved, zone)
    # ... and the earliest allowed moment: the second before it is still quiet
    assert in_quiet_hours(moved - timedelta(seconds=1), zone, quiet)
