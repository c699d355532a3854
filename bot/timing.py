"""When a scheduled message is due: the lead's time zone, `at:` times of day and quiet hours.

Pure functions over aware datetimes; nothing here reads a clock. Every result is an aware
UTC datetime, because that is what the scheduler stores and compares.

Wall-clock rules, applied everywhere a local date and time of day become an instant:

* A wall time that does not exist (the spring-forward gap, e.g. 02:30 in Europe/Berlin on the
  last Sunday of March) becomes the first valid instant after the gap (03:00 CEST there).
* A wall time that occurs twice (fall back) is its FIRST occurrence (fold=0), with one
  exception: moving out of quiet hours never goes back in time, so a moment in the repeated
  hour that is already past the first occurrence of the window's end goes to the second one.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

QuietHours = tuple[time, time]

_DAY = timedelta(days=1)
_EPOCH = datetime(1970, 1, 1)
# A window end that lands in a DST gap resolves to the gap's end, which a (pathological)
# window can cover again; the next move is then to the next day's end, which cannot. A few
# moves always suffice; the bound turns a logic error into an exception, not a hang.
_MAX_QUIET_MOVES = 4


def zone_of(lead_timezone: str | None, default: str) -> ZoneInfo:
    """The lead's own time zone, or the scenario's `settings.timezone` when it is unusable.

    Unusable means missing, empty, or not a zone name (`"UTC+3"`, `"Europe"`, a path): a
    lead's zone comes from outside data, and a bad one must not stop their messages. The
    default is trusted: the scenario schema has already validated it, so a bad default
    raises `ZoneInfoNotFoundError` (or `ValueError`) rather than being hidden.
    """
    if lead_timezone and lead_timezone.strip():
        try:
            return ZoneInfo(lead_timezone.strip())
        # ValueError: empty or path-like keys, and files that are not TZif (`zone.tab`);
        # OSError: directories on some platforms.
        except (ZoneInfoNotFoundError, ValueError, OSError):
            pass
    return ZoneInfo(default)


def in_quiet_hours(moment: datetime, zone: ZoneInfo, quiet: QuietHours | None) -> bool:
    """Whether the local wall time of `moment` in `zone` lies inside the quiet window.

    The window is `[start, end)`: the start is quiet, the end is not ("21:00-10:00" lets a
    message out at 10:00 sharp and holds one due at 21:00). `start > end` wraps midnight;
    `start == end` (and `None`) means no window at all, not a 24-hour one. The test is by
    wall time, so in a repeated fall-back hour both passes through the window are quiet.
    """
    _require_aware(moment, "moment")
    if quiet is None:
        return False
    start, end = quiet
    if start == end:
        return False
    wall = moment.astimezone(zone).time()
    if start < end:
        return start <= wall < end
    return wall >= start or wall < end


def out_of_quiet_hours(moment: datetime, zone: ZoneInfo, quiet: QuietHours | None) -> datetime:
    """`moment` moved to the end of the quiet window it falls in, else `moment` itself (UTC).

    The end is on the same local date, except for the late part of a window that wraps
    midnight (23:30 in "21:00-10:00" goes to 10:00 the next day). An end in a DST gap becomes
    the first instant after the gap; an end that occurs twice is its first occurrence unless
    `moment` is already past it, then the second. The result is never earlier than `moment`,
    never inside the window, and moving it again changes nothing. (Should the gap's end still
    be inside the window, as with "02:01-02:00" on a spring-forward night, the next day's
    end is used.)
    """
    _require_aware(moment, "moment")
    result = moment.astimezone(UTC)
    for _ in range(_MAX_QUIET_MOVES):
        if not in_quiet_hours(result, zone, quiet):
            return result
        assert quiet is not None  # in_quiet_hours is False without a window
        result = _window_end(result, zone, quiet)
    raise RuntimeError(f"could not leave quiet hours {quiet} in {zone.key} from {moment}")


def step_due(
    base: datetime,
    after: timedelta,
    at: time | None,
    zone: ZoneInfo,
    quiet: QuietHours | None,
) -> datetime:
    """When a step (or anything scheduled the same way) is due, as an aware UTC datetime.

    `base` is when the wait starts (the previous step's send time, or the chain's start).

    * No `at`: `base + after` in real elapsed time, so `1h` is 60 minutes and `24h` across a
      DST change shows a wall time one hour off from the base's.
    * `at` with a whole number of days (`1d`, `2d`, `1w`; also `24h`, which is the same
      duration): `at` on the local calendar date `after` days after the base's local date,
      so "1d at 11:00" is 11:00 the next day even across a DST change, and even when that
      is less than 24 hours away (base 15:00 -> next day 11:00, 20 hours later). Never
      earlier than `base`.
    * `at` with any other `after` (`0`, `30m`, `36h`): the first `at` not earlier than
      `base + after`: `at` on the local date of `base + after`, or the next day's if that
      has passed. An `at` that occurs twice counts at its first occurrence only: when
      `base + after` falls between the two, the step goes out the next day.

    An `at` inside a DST gap becomes the first instant after the gap. Last, the due time is
    moved out of quiet hours (see `out_of_quiet_hours`), so an `at` inside the window sends
    at the window's end.
    """
    _require_aware(base, "base")
    if after < timedelta(0):
        raise ValueError(f"a step cannot be due before its base: after={after}")
    base = base.astimezone(UTC)
    if at is None:
        due = base + after
    elif after and after % _DAY == timedelta(0):
        day = base.astimezone(zone).date() + timedelta(days=after.days)
        due = _at_on_or_after(day, at, zone, not_before=base)
    else:
        target = base + after
        due = _at_on_or_after(target.astimezone(zone).date(), at, zone, not_before=target)
    return out_of_quiet_hours(due, zone, quiet)


def earlier_by(moment: datetime, span: timedelta, zone: ZoneInfo) -> datetime:
    """`span` before `moment`, as a person in `zone` counts: whole days on the calendar at the
    same wall time ("a day before" a 10:00 meeting is 10:00 the day before, across a DST
    change too), the rest of `span` in real time."""
    _require_aware(moment, "moment")
    days, rest = divmod(span, _DAY)
    local = moment.astimezone(zone)
    return local_instant(local.date() - days * _DAY, local.time(), zone) - rest


def local_instant(day: date, wall: time, zone: ZoneInfo, *, fold: int = 0) -> datetime:
    """The UTC instant at which `zone` shows `wall` on `day`.

    A repeated wall time is its first occurrence (`fold=0`) or its second (`fold=1`); a
    missing one (in a DST gap, or a skipped day like Pacific/Apia's 2011-12-30) is the first
    valid instant after the gap, whatever `fold`.
    """
    naive = datetime.combine(day, wall.replace(tzinfo=None, fold=0))
    instant = naive.replace(tzinfo=zone, fold=fold).astimezone(UTC)
    # A wall time that exists comes back unchanged from a round trip; one in a gap does not.
    if instant.astimezone(zone).replace(tzinfo=None) == naive:
        return instant
    return _gap_end(naive, zone)


def _require_aware(moment: datetime, name: str) -> None:
    # A naive datetime here is a bug upstream (local or UTC?); guessing would send at the
    # wrong hour in silence.
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got naive {moment}")


def _at_on_or_after(day: date, at: time, zone: ZoneInfo, *, not_before: datetime) -> datetime:
    """`at` on `day`, or on the first later day on which it is not earlier than `not_before`."""
    due = local_instant(day, at, zone)
    # One step is the rule; a loop only because a zone may jump its calendar backwards.
    while due < not_before:
        day += _DAY
        due = local_instant(day, at, zone)
    return due


def _window_end(moment: datetime, zone: ZoneInfo, quiet: QuietHours) -> datetime:
    """The end of the quiet window that `moment` (inside it) falls in, never before `moment`."""
    start, end = quiet
    local = moment.astimezone(zone)
    day = local.date()
    if start > end and local.time() >= start:
        day += _DAY  # the evening part of a window that wraps midnight ends tomorrow
    first = local_instant(day, end, zone, fold=0)
    if first > moment:
        return first
    # `moment` is in the second pass of a repeated hour, after the end's first occurrence.
    return local_instant(day, end, zone, fold=1)


def _gap_end(naive: datetime, zone: ZoneInfo) -> datetime:
    """The first valid instant after the DST gap that swallowed the wall time `naive`."""
    # Within a gap zoneinfo gives the offsets from either side of the transition for the two
    # folds. The transition lies between the two readings of `naive`; offsets change on
    # whole seconds, so a binary search over seconds finds it exactly.
    one = naive.replace(tzinfo=zone, fold=0).utcoffset()
    other = naive.replace(tzinfo=zone, fold=1).utcoffset()
    assert one is not None  # a ZoneInfo always has an offset; this only narrows the type
    assert other is not None
    low = math.floor((naive - max(one, other) - _EPOCH).total_seconds())
    high = math.ceil((naive - min(one, other) - _EPOCH).total_seconds())
    offset_before = _offset_at(low, zone)
    while high - low > 1:
        middle = (low + high) // 2
        if _offset_at(middle, zone) == offset_before:
            low = middle
        else:
            high = middle
    return datetime.fromtimestamp(high, UTC)


def _offset_at(timestamp: int, zone: ZoneInfo) -> timedelta | None:
    return datetime.fromtimestamp(timestamp, UTC).astimezone(zone).utcoffset()
