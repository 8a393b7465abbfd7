"""Tests of cron schedules: parsing, errors, and firings checked against croniter and across DST."""

from __future__ import annotations

import copy
import datetime
import pickle
import random
import time
from collections.abc import Callable, Iterator
from zoneinfo import ZoneInfo

import pytest
from croniter import CroniterBadDateError, croniter

from jobkit.errors import JobkitError
from jobkit.schedule import Schedule, ScheduleError

UTC = datetime.UTC
MINUTE = datetime.timedelta(minutes=1)
MICROSECOND = datetime.timedelta(microseconds=1)


def at(text: str) -> datetime.datetime:
    """An aware datetime from ISO text with an offset."""
    return datetime.datetime.fromisoformat(text)


def local(
    zone: str, year: int, month: int, day: int, hour: int = 0, minute: int = 0, *, fold: int = 0
) -> datetime.datetime:
    """A wall-clock time in ``zone``; ``fold=1`` picks the second of a repeated time."""
    return datetime.datetime(year, month, day, hour, minute, tzinfo=ZoneInfo(zone), fold=fold)


def firings(schedule: Schedule, after: datetime.datetime, count: int) -> list[datetime.datetime]:
    found = []
    for _ in range(count):
        after = schedule.next(after)
        found.append(after)
    return found


def iso(moments: list[datetime.datetime]) -> list[str]:
    return [moment.isoformat() for moment in moments]


# -- croniter as the oracle ---------------------------------------------------------------------
#
# croniter differs from Vixie cron (and from jobkit) in a few places, so the generator avoids them:
# it reads an equal range "5-5" as the whole field and a backwards range "5-1" as wrapping around
# (jobkit: just 5; an error), "7/2" in day_of_week oddly, and steps larger than the field are
# accepted (jobkit: an error). ``implement_cron_bug=True`` makes croniter treat a day field that
# starts with "*" (like "*/2") as unrestricted, which is Vixie's rule and jobkit's.
# In zones with DST croniter fires twice in a repeated hour, so it is only the oracle in UTC and in
# fixed-offset zones; the DST rules are checked against explicit expectations and a brute force.

MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
WEEKDAY_NAMES = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
LOW = (0, 0, 1, 1, 0)
HIGH = (59, 23, 31, 12, 6)


def value_text(rng: random.Random, field: int, value: int) -> str:
    spell = rng.choice((str.upper, str.lower, str.title))
    if field == 3 and rng.random() < 0.3:
        return spell(MONTH_NAMES[value - 1])
    if field == 4 and value < 7 and rng.random() < 0.3:
        return spell(WEEKDAY_NAMES[value])
    return str(value)


def item_text(rng: random.Random, field: int) -> str:
    low, high = LOW[field], HIGH[field]
    top = 7 if field == 4 else high  # Sunday as 7: alone or as the end of a range
    kind = rng.random()
    if kind < 0.4:
        return value_text(rng, field, rng.randint(low, top))
    step = rng.choice((rng.randint(1, 6), rng.randint(1, high - low + 1)))
    if kind < 0.8:
        start = rng.randint(low, top - 1)
        end = rng.randint(start + 1, top)
        range_text = f"{value_text(rng, field, start)}-{value_text(rng, field, end)}"
        return range_text if kind < 0.6 else f"{range_text}/{step}"
    return f"{value_text(rng, field, rng.randint(low, high))}/{step}"


def field_text(rng: random.Random, field: int) -> str:
    kind = rng.random()
    if kind < 0.3:
        return "*"
    if kind < 0.4:
        return f"*/{rng.randint(1, min(HIGH[field] - LOW[field] + 1, 12))}"
    count = 1 if rng.random() < 0.6 else rng.randint(2, 4)
    return ",".join(item_text(rng, field) for _ in range(count))


def random_expressions(rng: random.Random) -> Iterator[str]:
    while True:
        yield " ".join(field_text(rng, field) for field in range(5))


def random_moment(rng: random.Random, zone: datetime.tzinfo) -> datetime.datetime:
    moment = datetime.datetime(1971, 1, 1, tzinfo=UTC) + datetime.timedelta(
        seconds=rng.randint(0, 128 * 365 * 86400), microseconds=rng.randint(0, 999_999)
    )
    if rng.random() < 0.5:
        moment = moment.replace(second=0, microsecond=0)
    return moment.astimezone(zone)


FIXED_ZONES = [
    pytest.param(UTC, id="datetime.UTC"),
    pytest.param(ZoneInfo("UTC"), id="UTC"),
    pytest.param(datetime.timezone(datetime.timedelta(hours=5, minutes=30)), id="+05:30"),
    pytest.param(datetime.timezone(-datetime.timedelta(hours=3, minutes=30)), id="-03:30"),
    pytest.param(datetime.timezone(datetime.timedelta(hours=12, minutes=45)), id="+12:45"),
    pytest.param(ZoneInfo("Etc/GMT+11"), id="Etc/GMT+11"),
    pytest.param(ZoneInfo("Asia/Kolkata"), id="Asia/Kolkata"),
]
EXPRESSIONS_PER_ZONE = 300
NEXT_FIRINGS = 4
PREVIOUS_EXPRESSIONS_PER_ZONE = 80
PREVIOUS_FIRINGS = 3


def compare_with_croniter(
    zone: datetime.tzinfo,
    seed: str,
    count: int,
    firings_each: int,
    ours: Callable[[Schedule, datetime.datetime], datetime.datetime],
    theirs: Callable[[croniter], datetime.datetime],
) -> int:
    rng = random.Random(seed)
    mismatches: list[str] = []
    compared = never = 0
    for expression in random_expressions(rng):
        if compared >= count * firings_each:
            break
        start = random_moment(rng, zone)
        oracle = croniter(expression, start, ret_type=datetime.datetime, implement_cron_bug=True)
        try:
            schedule = Schedule.from_cron(expression, timezone=zone)
        except ScheduleError as error:
            assert "can never fire" in str(error), expression
            with pytest.raises(CroniterBadDateError):
                theirs(oracle)
            never += 1
            continue
        moment = start
        for index in range(firings_each):
            expected = theirs(oracle)
            moment = ours(schedule, moment)
            compared += 1
            if moment != expected or moment.tzinfo is not zone:
                mismatches.append(
                    f"{expression!r} from {start.isoformat()} (seed {seed!r}), firing {index + 1}: "
                    f"croniter {expected.isoformat()}, jobkit {moment.isoformat()}"
                )
                break
    assert not mismatches, "\n".join(mismatches[:20])
    assert never < count // 10  # the generator makes mostly schedules that fire
    return compared


@pytest.mark.parametrize("zone", FIXED_ZONES)
def test_next_agrees_with_croniter(zone: datetime.tzinfo) -> None:
    compared = compare_with_croniter(
        zone,
        f"next {zone}",
        EXPRESSIONS_PER_ZONE,
        NEXT_FIRINGS,
        ours=Schedule.next,
        theirs=lambda oracle: oracle.get_next(datetime.datetime),
    )
    assert compared == EXPRESSIONS_PER_ZONE * NEXT_FIRINGS


@pytest.mark.parametrize("zone", FIXED_ZONES)
def test_last_fire_at_or_before_agrees_with_croniter(zone: datetime.tzinfo) -> None:
    # croniter's get_prev is strictly before; firings are whole minutes, so one microsecond earlier
    # makes "at or before" the same question.
    compare_with_croniter(
        zone,
        f"previous {zone}",
        PREVIOUS_EXPRESSIONS_PER_ZONE,
        PREVIOUS_FIRINGS,
        ours=lambda schedule, moment: schedule.last_fire_at_or_before(moment - MICROSECOND),
        theirs=lambda oracle: oracle.get_prev(datetime.datetime),
    )


def test_croniter_is_not_the_oracle_in_a_repeated_hour() -> None:
    # Why DST zones are checked without croniter: it fires at both occurrences of 01:30.
    zone = ZoneInfo("America/New_York")
    start = local("America/New_York", 2024, 11, 2, 12)
    oracle = croniter("30 1 * * *", start, ret_type=datetime.datetime)
    theirs = [oracle.get_next(datetime.datetime) for _ in range(2)]
    ours = firings(Schedule.from_cron("30 1 * * *", timezone=zone), start, 2)
    assert iso(theirs) == ["2024-11-03T01:30:00-04:00", "2024-11-03T01:30:00-05:00"]
    assert iso(ours) == ["2024-11-03T01:30:00-04:00", "2024-11-04T01:30:00-05:00"]


# -- DST: explicit expectations -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "expression", "start", "expected"),
    [
        # spring forward: a daily job in the gap fires once, at the end of the gap
        (
            "America/New_York",
            "30 2 * * *",
            "2024-03-09T00:00:00-05:00",
            ["2024-03-09T02:30:00-05:00", "2024-03-10T03:00:00-04:00", "2024-03-11T02:30:00-04:00"],
        ),
        (
            "Europe/Berlin",
            "30 2 * * *",
            "2024-03-30T00:00:00+01:00",
            ["2024-03-30T02:30:00+01:00", "2024-03-31T03:00:00+02:00", "2024-04-01T02:30:00+02:00"],
        ),
        (
            "Australia/Sydney",
            "30 2 * * *",
            "2024-10-05T00:00:00+10:00",
            ["2024-10-05T02:30:00+10:00", "2024-10-06T03:00:00+11:00", "2024-10-07T02:30:00+11:00"],
        ),
        (
            "America/St_Johns",
            "30 2 * * *",
            "2024-03-09T00:00:00-03:30",
            ["2024-03-09T02:30:00-03:30", "2024-03-10T03:00:00-02:30", "2024-03-11T02:30:00-02:30"],
        ),
        (
            "Pacific/Chatham",  # the gap is 02:45-03:45
            "0 3 * * *",
            "2024-09-28T00:00:00+12:45",
            ["2024-09-28T03:00:00+12:45", "2024-09-29T03:45:00+13:45", "2024-09-30T03:00:00+13:45"],
        ),
        (
            "Asia/Kolkata",  # no DST
            "30 2 * * *",
            "2024-03-09T00:00:00+05:30",
            ["2024-03-09T02:30:00+05:30", "2024-03-10T02:30:00+05:30", "2024-03-11T02:30:00+05:30"],
        ),
        # fall back: a daily job in the repeated hour fires once, at its first occurrence
        (
            "America/New_York",
            "30 1 * * *",
            "2024-11-02T00:00:00-04:00",
            ["2024-11-02T01:30:00-04:00", "2024-11-03T01:30:00-04:00", "2024-11-04T01:30:00-05:00"],
        ),
        (
            "Europe/Berlin",
            "30 2 * * *",
            "2024-10-26T00:00:00+02:00",
            ["2024-10-26T02:30:00+02:00", "2024-10-27T02:30:00+02:00", "2024-10-28T02:30:00+01:00"],
        ),
        (
            "Australia/Sydney",
            "30 2 * * *",
            "2024-04-06T00:00:00+11:00",
            ["2024-04-06T02:30:00+11:00", "2024-04-07T02:30:00+11:00", "2024-04-08T02:30:00+10:00"],
        ),
        (
            "America/St_Johns",
            "30 1 * * *",
            "2024-11-02T00:00:00-02:30",
            ["2024-11-02T01:30:00-02:30", "2024-11-03T01:30:00-02:30", "2024-11-04T01:30:00-03:30"],
        ),
        (
            "Pacific/Chatham",  # 02:45-03:45 happens twice
            "0 3 * * *",
            "2024-04-06T00:00:00+13:45",
            ["2024-04-06T03:00:00+13:45", "2024-04-07T03:00:00+13:45", "2024-04-08T03:00:00+12:45"],
        ),
        # hourly across both changes
        (
            "America/New_York",
            "0 * * * *",
            "2024-03-10T00:30:00-05:00",
            ["2024-03-10T01:00:00-05:00", "2024-03-10T03:00:00-04:00", "2024-03-10T04:00:00-04:00"],
        ),
        (
            "America/New_York",
            "0 * * * *",
            "2024-11-03T00:30:00-04:00",
            ["2024-11-03T01:00:00-04:00", "2024-11-03T02:00:00-05:00", "2024-11-03T03:00:00-05:00"],
        ),
        (
            "Europe/Berlin",
            "0 * * * *",
            "2024-10-27T01:30:00+02:00",
            ["2024-10-27T02:00:00+02:00", "2024-10-27T03:00:00+01:00", "2024-10-27T04:00:00+01:00"],
        ),
        (
            "Pacific/Chatham",  # 03:00 is in the gap: it fires at 03:45, then 04:00 as usual
            "0 * * * *",
            "2024-09-29T01:30:00+12:45",
            ["2024-09-29T02:00:00+12:45", "2024-09-29T03:45:00+13:45", "2024-09-29T04:00:00+13:45"],
        ),
        (
            "Pacific/Chatham",
            "0 * * * *",
            "2024-04-07T01:30:00+13:45",
            ["2024-04-07T02:00:00+13:45", "2024-04-07T03:00:00+13:45", "2024-04-07T04:00:00+12:45"],
        ),
        # every minute: the gap is skipped, the repeated hour does not fire again
        (
            "America/New_York",
            "* * * * *",
            "2024-03-10T01:58:00-05:00",
            ["2024-03-10T01:59:00-05:00", "2024-03-10T03:00:00-04:00", "2024-03-10T03:01:00-04:00"],
        ),
        (
            "America/New_York",
            "* * * * *",
            "2024-11-03T01:58:00-04:00",
            ["2024-11-03T01:59:00-04:00", "2024-11-03T02:00:00-05:00", "2024-11-03T02:01:00-05:00"],
        ),
        # several matching times in one gap fire once, together
        (
            "Europe/Berlin",
            "0,30 2,3 * * *",
            "2024-03-31T00:00:00+01:00",
            ["2024-03-31T03:00:00+02:00", "2024-03-31T03:30:00+02:00", "2024-04-01T02:00:00+02:00"],
        ),
    ],
)
def test_firings_across_dst_changes(
    zone: str, expression: str, start: str, expected: list[str]
) -> None:
    schedule = Schedule.from_cron(expression, timezone=zone)
    found = firings(schedule, at(start), len(expected))
    assert iso(found) == expected
    assert all(moment.tzinfo is ZoneInfo(zone) for moment in found)


@pytest.mark.parametrize(
    ("zone", "spring_day", "fall_day", "hours_on_spring_day"),
    [
        ("America/New_York", (2024, 3, 10), (2024, 11, 3), 23),
        ("Europe/Berlin", (2024, 3, 31), (2024, 10, 27), 23),
        ("Australia/Sydney", (2024, 10, 6), (2024, 4, 7), 23),
        ("America/St_Johns", (2024, 3, 10), (2024, 11, 3), 23),
        ("Pacific/Chatham", (2024, 9, 29), (2024, 4, 7), 24),  # 03:00 fires at 03:45
        ("Asia/Kolkata", (2024, 3, 10), (2024, 11, 3), 24),
    ],
)
def test_hourly_fires_once_per_wall_hour(
    zone: str,
    spring_day: tuple[int, int, int],
    fall_day: tuple[int, int, int],
    hours_on_spring_day: int,
) -> None:
    schedule = Schedule.from_cron("@hourly", timezone=zone)
    for day, expected in ((spring_day, hours_on_spring_day), (fall_day, 24)):
        moment = local(zone, *day) - MICROSECOND
        end = local(zone, *day) + datetime.timedelta(days=1)
        found = []
        while (moment := schedule.next(moment)) < end:
            found.append(moment)
        assert len(found) == expected, iso(found)
        assert len({moment.replace(tzinfo=None) for moment in found}) == expected  # no wall repeats


@pytest.mark.parametrize(
    "zone",
    [
        "America/New_York",
        "Europe/Berlin",
        "Australia/Sydney",
        "Asia/Kolkata",
        "America/St_Johns",
        "Pacific/Chatham",
    ],
)
@pytest.mark.parametrize("month", [3, 4, 9, 10, 11])
def test_nine_oclock_stays_nine_oclock_local(zone: str, month: int) -> None:
    schedule = Schedule.from_cron("0 9 * * *", timezone=zone)
    after = datetime.datetime(2024, month, 1, tzinfo=UTC)
    found = firings(schedule, after, 31)
    assert [moment.time() for moment in found] == [datetime.time(9)] * 31
    assert [moment.date() for moment in found] == [
        found[0].date() + datetime.timedelta(days=index) for index in range(31)
    ]
    assert all(moment.tzinfo is schedule.timezone for moment in found)
    assert found[0].astimezone(UTC) > after


def test_an_after_in_another_zone_is_answered_in_the_schedules_zone() -> None:
    schedule = Schedule.from_cron("0 9 * * *", timezone="Europe/Berlin")
    found = schedule.next(at("2024-06-01T07:00:00+00:00"))  # 09:00 Berlin exactly: not after
    assert found.isoformat() == "2024-06-02T09:00:00+02:00"
    assert found.tzinfo is ZoneInfo("Europe/Berlin")


def test_after_in_the_second_pass_of_a_repeated_hour() -> None:
    new_york = "America/New_York"
    schedule = Schedule.from_cron("*/15 * * * *", timezone=new_york)
    second_pass = local(new_york, 2024, 11, 3, 1, 20, fold=1)  # 01:20 EST
    assert schedule.next(second_pass).isoformat() == "2024-11-03T02:00:00-05:00"
    assert schedule.last_fire_at_or_before(second_pass).isoformat() == "2024-11-03T01:45:00-04:00"
    first_pass = local(new_york, 2024, 11, 3, 1, 20)  # 01:20 EDT
    assert schedule.next(first_pass).isoformat() == "2024-11-03T01:30:00-04:00"
    assert schedule.last_fire_at_or_before(first_pass).isoformat() == "2024-11-03T01:15:00-04:00"


def test_last_fire_at_or_before_across_dst_changes() -> None:
    new_york = "America/New_York"
    in_gap = Schedule.from_cron("30 2 * * *", timezone=new_york)
    assert in_gap.last_fire_at_or_before(at("2024-03-10T03:00:00-04:00")).isoformat() == (
        "2024-03-10T03:00:00-04:00"
    )
    assert in_gap.last_fire_at_or_before(at("2024-03-10T01:59:59-05:00")).isoformat() == (
        "2024-03-09T02:30:00-05:00"
    )
    hourly = Schedule.from_cron("0 * * * *", timezone=new_york)
    assert hourly.last_fire_at_or_before(at("2024-11-03T01:59:00-05:00")).isoformat() == (
        "2024-11-03T01:00:00-04:00"
    )
    assert hourly.last_fire_at_or_before(at("2024-11-03T02:00:00-05:00")).isoformat() == (
        "2024-11-03T02:00:00-05:00"
    )


# -- DST: a brute force by the definition ---------------------------------------------------------
#
# Aware datetimes are compared in UTC here: Python compares two datetimes with the same tzinfo by
# wall clock, ignoring fold, and says a time in a repeated hour never equals one in another zone.
#
# Walk UTC minute by minute. The wall times first reached at an instant (several after a gap, none
# during the second pass of a repeated hour) fire there if any of them matches.

BRUTE_FORCE_ZONES = [
    ("America/New_York", 2024),
    ("Europe/Berlin", 2024),
    ("Australia/Sydney", 2024),
    ("America/St_Johns", 2024),
    ("America/St_Johns", 1988),  # double daylight time: a two-hour gap at 00:01
    ("Pacific/Chatham", 2024),
    ("Australia/Lord_Howe", 2024),  # a half-hour change
    ("Asia/Kolkata", 2024),
]
BRUTE_FORCE_EXPRESSIONS = [
    "* * * * *",
    "*/15 * * * *",
    "0 * * * *",
    "30 2 * * *",
    "0,30 1-3 * * *",
    "45 2,3 * * *",
    "59 0-3 * * *",
    "0 9 * * *",
    "1 0 * * *",
]


def offset_changes(zone: ZoneInfo, year: int) -> list[datetime.datetime]:
    moment = datetime.datetime(year, 1, 1, tzinfo=UTC)
    changes = []
    while moment.year == year:
        later = moment + datetime.timedelta(hours=6)
        if moment.astimezone(zone).utcoffset() != later.astimezone(zone).utcoffset():
            changes.append(later)
        moment = later
    return changes or [datetime.datetime(year, 3, 10, tzinfo=UTC)]


def first_reached_walls(
    zone: ZoneInfo, start: datetime.datetime, end: datetime.datetime
) -> list[tuple[datetime.datetime, list[datetime.datetime]]]:
    reached = []
    latest = (start - MINUTE).astimezone(zone).replace(tzinfo=None)
    moment = start
    while moment < end:
        wall = moment.astimezone(zone).replace(tzinfo=None)
        walls = []
        while latest < wall:
            latest += MINUTE
            walls.append(latest)
        reached.append((moment, walls))
        moment += MINUTE
    return reached


def matches(schedule: Schedule, wall: datetime.datetime) -> bool:
    in_month = wall.day in schedule.day_of_month
    in_week = wall.isoweekday() % 7 in schedule.day_of_week
    day = (in_month or in_week) if schedule.days_match_either else (in_month and in_week)
    return (
        day
        and wall.month in schedule.month
        and wall.hour in schedule.hour
        and wall.minute in schedule.minute
    )


@pytest.mark.parametrize(("zone_name", "year"), BRUTE_FORCE_ZONES)
def test_firings_match_a_brute_force_around_offset_changes(zone_name: str, year: int) -> None:
    zone = ZoneInfo(zone_name)
    rng = random.Random(f"brute force {zone_name} {year}")
    for change in offset_changes(zone, year):
        start, end = change - datetime.timedelta(hours=30), change + datetime.timedelta(hours=30)
        reached = first_reached_walls(zone, start, end)
        for expression in BRUTE_FORCE_EXPRESSIONS:
            schedule = Schedule.from_cron(expression, timezone=zone)
            expected = [
                moment
                for moment, walls in reached
                if any(matches(schedule, wall) for wall in walls)
            ]
            context = f"{expression!r} in {zone_name} around {change.isoformat()}"
            forward = []
            moment = start - MICROSECOND
            while (moment := schedule.next(moment).astimezone(UTC)) < end:
                forward.append(moment)
            assert forward == expected, context
            backward = []
            moment = end - MICROSECOND
            while (moment := schedule.last_fire_at_or_before(moment).astimezone(UTC)) >= start:
                backward.append(moment)
                moment -= MICROSECOND
            assert backward[::-1] == expected, context
            for _ in range(20):
                probe = start + datetime.timedelta(
                    seconds=rng.randint(3600, 54 * 3600), microseconds=rng.randint(0, 1)
                )
                following = schedule.next(probe.astimezone(zone))
                latest = schedule.last_fire_at_or_before(probe.astimezone(zone))
                assert following.tzinfo is latest.tzinfo is zone
                later = [moment for moment in expected if moment > probe]
                if later:
                    assert following.astimezone(UTC) == later[0], probe
                earlier = [moment for moment in expected if moment <= probe]
                if earlier:
                    assert latest.astimezone(UTC) == earlier[-1], probe
                assert schedule.next(latest).astimezone(UTC) == following.astimezone(UTC), probe


# -- parsing --------------------------------------------------------------------------------------


def test_fields_expand_to_sorted_values() -> None:
    schedule = Schedule.from_cron("5/15 1-10/3,23 */10 JAN-dec/4 mon-FRI")
    assert schedule.minute == (5, 20, 35, 50)
    assert schedule.hour == (1, 4, 7, 10, 23)
    assert schedule.day_of_month == (1, 11, 21, 31)
    assert schedule.month == (1, 5, 9)
    assert schedule.day_of_week == (1, 2, 3, 4, 5)
    assert schedule.expression == "5/15 1-10/3,23 */10 JAN-dec/4 mon-FRI"


@pytest.mark.parametrize(
    ("text", "weekdays"),
    [
        ("0", (0,)),
        ("7", (0,)),
        ("SUN", (0,)),
        ("sun", (0,)),
        ("0,7", (0,)),
        ("5-7", (0, 5, 6)),
        ("FRI-SUN", (0, 5, 6)),
        ("MON-SUN", (0, 1, 2, 3, 4, 5, 6)),
        ("SUN-SAT", (0, 1, 2, 3, 4, 5, 6)),
        ("0-7/2", (0, 2, 4, 6)),
        ("1-7/3", (0, 1, 4)),
        ("*/3", (0, 3, 6)),
        ("1/3", (1, 4)),  # N/step ends at Saturday
        ("MON/2", (1, 3, 5)),
        ("3-3", (3,)),
    ],
)
def test_day_of_week(text: str, weekdays: tuple[int, ...]) -> None:
    assert Schedule.from_cron(f"0 0 * * {text}").day_of_week == weekdays


def test_sunday_is_zero_or_seven() -> None:
    sunday = Schedule.from_cron("0 0 * * 0")
    assert Schedule.from_cron("0 0 * * 7") == sunday
    assert Schedule.from_cron("0 0 * * SUN") == sunday
    assert Schedule(minute=0, hour=0, day_of_week=7) == sunday
    found = firings(Schedule.from_cron("0 0 * * 7"), at("2024-01-01T00:00:00+00:00"), 2)
    assert iso(found) == ["2024-01-07T00:00:00+00:00", "2024-01-14T00:00:00+00:00"]


@pytest.mark.parametrize(
    ("named", "numbered"),
    [
        ("0 0 1 JAN *", "0 0 1 1 *"),
        ("0 0 1 jan-Mar *", "0 0 1 1-3 *"),
        ("0 0 1 feb,AUG,dec *", "0 0 1 2,8,12 *"),
        ("0 0 1 JAN-DEC/3 *", "0 0 1 1,4,7,10 *"),
        ("0 0 * * mon-fri", "0 0 * * 1-5"),
        ("0 0 * * Sat,Sun", "0 0 * * 0,6"),
        ("0 0 * * TUE/2", "0 0 * * 2,4,6"),
    ],
)
def test_names(named: str, numbered: str) -> None:
    assert Schedule.from_cron(named) == Schedule.from_cron(numbered)


@pytest.mark.parametrize(
    ("macro", "fields"),
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
        ("@DAILY", "0 0 * * *"),
    ],
)
def test_macros(macro: str, fields: str) -> None:
    schedule = Schedule.from_cron(macro)
    assert schedule == Schedule.from_cron(fields)
    assert str(schedule) == macro
    assert repr(schedule) == f"<Schedule {macro} UTC>"


@pytest.mark.parametrize(
    ("expression", "either", "days"),
    [
        # both restricted: a day matching EITHER field fires (the 13th, and every Friday)
        ("0 0 13 * FRI", True, [5, 12, 13, 19, 26]),
        ("0 0 1-31 * 1", True, list(range(1, 32))),
        # a field starting with * is unrestricted: a day must match BOTH
        ("0 0 */2 * FRI", False, [5, 19]),
        ("0 0 12 * */2", False, []),  # 12 Jan 2024 is a Friday
        ("0 0 1-7 * */7", False, [7]),  # the first Sunday
        ("0 0 13 * *", False, [13]),
        ("0 0 * * FRI", False, [5, 12, 19, 26]),
    ],
)
def test_day_of_month_or_day_of_week(expression: str, either: bool, days: list[int]) -> None:
    schedule = Schedule.from_cron(expression)
    assert schedule.days_match_either is either
    january = firings(schedule, at("2023-12-31T12:00:00+00:00"), 32)
    assert [moment.day for moment in january if moment.month == 1 and moment.year == 2024] == days


def test_keyword_fields_follow_the_same_rule() -> None:
    assert Schedule(day_of_month=13, day_of_week="FRI").days_match_either
    assert Schedule(day_of_month=[1, 15], day_of_week=[1]).days_match_either
    assert not Schedule(day_of_month="*/2", day_of_week=5).days_match_either
    assert not Schedule(day_of_month=13).days_match_either


@pytest.mark.parametrize(
    ("keywords", "expression"),
    [
        ({}, "* * * * *"),
        ({"minute": 0, "hour": 9}, "0 9 * * *"),
        ({"minute": [0, 30], "hour": "9-17", "day_of_week": "MON-FRI"}, "0,30 9-17 * * 1-5"),
        ({"minute": (15,), "day_of_month": 1, "month": "JAN,JUL"}, "15 * 1 1,7 *"),
        ({"minute": "*/5", "day_of_month": 13, "day_of_week": 5}, "*/5 * 13 * FRI"),
        ({"minute": 0, "hour": 0, "day_of_week": 0}, "@weekly"),
    ],
)
def test_keywords_equal_from_cron(keywords: dict, expression: str) -> None:
    made = Schedule(**keywords)
    read = Schedule.from_cron(expression)
    assert made == read
    assert hash(made) == hash(read)
    assert len({made, read}) == 1


def test_equality_includes_the_zone_and_the_day_rule() -> None:
    assert Schedule(timezone="Europe/Berlin") == Schedule(timezone=ZoneInfo("Europe/Berlin"))
    assert Schedule(timezone="Europe/Berlin") != Schedule(timezone="Europe/Paris")
    assert Schedule.from_cron("0 0 */2 * 1") != Schedule.from_cron("0 0 1-31/2 * 1")
    assert Schedule() != "* * * * *"


def test_str_and_repr() -> None:
    schedule = Schedule.from_cron("0 9 * * *")
    assert str(schedule) == "0 9 * * *"
    assert repr(schedule) == "<Schedule 0 9 * * * UTC>"
    assert str(Schedule.from_cron("  0\t9  * * mon-fri ")) == "0 9 * * mon-fri"
    made = Schedule(minute=0, hour=[9, 17], day_of_week="MON-FRI", timezone="Europe/Berlin")
    assert str(made) == "0 9,17 * * MON-FRI"
    assert repr(made) == "<Schedule 0 9,17 * * MON-FRI Europe/Berlin>"
    fixed = Schedule(timezone=datetime.timezone(datetime.timedelta(hours=5, minutes=30)))
    assert repr(fixed) == "<Schedule * * * * * UTC+05:30>"


def test_schedules_are_immutable_and_pickle() -> None:
    schedule = Schedule.from_cron("0 9 * * MON-FRI", timezone="America/New_York")
    with pytest.raises(AttributeError, match="immutable"):
        schedule._minutes = (1,)  # type: ignore[misc]
    with pytest.raises(AttributeError):
        schedule.extra = 1  # type: ignore[attr-defined]
    for copied in (pickle.loads(pickle.dumps(schedule)), copy.copy(schedule)):
        assert copied == schedule
        assert repr(copied) == repr(schedule)
    assert copy.deepcopy(Schedule(minute=[1, 2])) == Schedule(minute=[1, 2])


# -- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        (
            "0 9 * *",
            "a cron expression has 5 fields (minute hour day_of_month month day_of_week), "
            "got 4 in '0 9 * *'",
        ),
        ("0 9 * * * *", "got 6 in '0 9 * * * *'"),
        ("", "got 0 in ''"),
        ("61 * * * *", "minute 61 is out of range 0-59 in '61 * * * *'"),
        ("0 24 * * *", "hour 24 is out of range 0-23 in '0 24 * * *'"),
        ("0 0 0 * *", "day_of_month 0 is out of range 1-31"),
        ("0 0 32 * *", "day_of_month 32 is out of range 1-31"),
        ("0 0 * 13 *", "month 13 is out of range 1-12"),
        ("0 0 * 0 *", "month 0 is out of range 1-12"),
        ("0 0 * * 8", "day_of_week 8 is out of range 0-7 in '0 0 * * 8'"),
        ("0 0-99 * * *", "hour 99 is out of range 0-23"),
        (
            "0 0 * FOO *",
            "month has an unknown name 'FOO'; allowed: 1-12 or JAN-DEC in '0 0 * FOO *'",
        ),
        ("0 0 * MON *", "month has an unknown name 'MON'"),
        ("0 0 * * JAN", "day_of_week has an unknown name 'JAN'; allowed: 0-7 (0 and 7 are Sunday)"),
        ("0 0 * * MONDAY", "day_of_week has an unknown name 'MONDAY'"),
        ("x * * * *", "minute 'x' is not a number; allowed: 0-59 in 'x * * * *'"),
        ("1.5 * * * *", "minute '1.5' is not a number"),
        ("0 0 L * *", "day_of_month 'L' is not a number; allowed: 1-31"),
        ("0 0 ? * *", "day_of_month '?' is not a number"),
        ("*/0 * * * *", "minute step '0' in '*/0' must be a whole number from 1 to 60"),
        ("*/-1 * * * *", "minute step '-1' in '*/-1' must be a whole number from 1 to 60"),
        ("0 */x * * *", "hour step 'x' in '*/x' must be a whole number from 1 to 24"),
        ("0 */ * * *", "hour step '' in '*/'"),
        ("1-5/2/3 * * * *", "minute step '2/3' in '1-5/2/3'"),
        ("0 0 * * */MON", "day_of_week step 'MON'"),
        ("*/61 * * * *", "minute step 61 in '*/61' is larger than the field's 60 values (0-59)"),
        ("0 0 * */13 *", "month step 13 in '*/13' is larger than the field's 12 values"),
        (
            "0 0 5-1 * *",
            "day_of_month range '5-1' goes backwards; write the smaller value first "
            "(ranges do not wrap around) in '0 0 5-1 * *'",
        ),
        ("0 0 * * FRI-MON", "day_of_week range 'FRI-MON' goes backwards"),
        ("0 0 * NOV-FEB *", "month range 'NOV-FEB' goes backwards"),
        ("1,,2 * * * *", "minute list '1,,2' has an empty item in '1,,2 * * * *'"),
        ("0 1, * * *", "hour list '1,' has an empty item"),
        ("0 0 ,1 * *", "day_of_month list ',1' has an empty item"),
        ("-5 * * * *", "minute '-5' is missing a number"),
        ("5- * * * *", "minute '5-' is missing a number"),
        ("1-2-3 * * * *", "minute '2-3' is not a number"),
        (
            "@every_5m",
            "unknown macro '@every_5m'; allowed: @yearly, @annually, @monthly, @weekly, @daily, "
            "@midnight, @hourly",
        ),
        ("@reboot", "unknown macro '@reboot'"),
        ("0 0 30 2 *", "schedule '0 0 30 2 *' can never fire: month 2 has no day_of_month 30"),
        ("0 0 31 4,6,9,11 *", "month 4,6,9,11 has no day_of_month 31"),
        ("0 0 30,31 FEB *", "can never fire"),
        ("0 0 30 2 */2", "can never fire"),  # a *-led day_of_week: both must match
    ],
)
def test_invalid_expressions(expression: str, message: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        Schedule.from_cron(expression)
    assert message in str(caught.value)


def test_schedule_error_is_a_jobkit_error_and_a_value_error() -> None:
    assert issubclass(ScheduleError, JobkitError)
    assert issubclass(ScheduleError, ValueError)


def test_day_30_of_february_fires_when_day_of_week_may_match_instead() -> None:
    schedule = Schedule.from_cron("0 0 30 2 MON")  # both restricted: Mondays in February
    assert schedule.next(at("2024-01-01T00:00:00+00:00")).isoformat() == "2024-02-05T00:00:00+00:00"


@pytest.mark.parametrize(
    ("keywords", "message"),
    [
        ({"minute": 61}, "minute 61 is out of range 0-59 in '61 * * * *'"),
        ({"hour": [1, 25]}, "hour 25 is out of range 0-23 in '* 1,25 * * *'"),
        ({"day_of_week": "8"}, "day_of_week 8 is out of range 0-7 in '* * * * 8'"),
        ({"month": "FOO"}, "month has an unknown name 'FOO'"),
        ({"minute": []}, "minute is an empty list; give at least one value, or '*'"),
        ({"minute": ["1"]}, "minute list ['1'] must hold only ints"),
        ({"hour": True}, "hour must be an int, a cron field str or a list of ints, got bool"),
        ({"hour": 1.5}, "got float"),
        ({"hour": {1, 2}}, "got set"),
        ({"minute": "1 2"}, "minute '1 2' must be one cron field, without spaces"),
        ({"minute": ""}, "minute '' must be one cron field"),
        ({"day_of_month": 31, "month": [4, 6]}, "can never fire: month 4,6 has no day_of_month 31"),
        ({"timezone": "Mars/Olympus_Mons"}, "unknown timezone 'Mars/Olympus_Mons'"),
        ({"timezone": "../etc/passwd"}, "unknown timezone '../etc/passwd'"),
        ({"timezone": 5}, "timezone must be an IANA name, a zoneinfo.ZoneInfo or a datetime"),
    ],
)
def test_invalid_keywords(keywords: dict, message: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        Schedule(**keywords)
    assert message in str(caught.value)


def test_from_cron_takes_a_timezone_and_checks_it() -> None:
    with pytest.raises(ScheduleError, match="unknown timezone 'Nowhere/Land'"):
        Schedule.from_cron("0 9 * * *", timezone="Nowhere/Land")
    with pytest.raises(ScheduleError, match="a cron expression must be a str, got int"):
        Schedule.from_cron(5)  # type: ignore[arg-type]


def test_naive_datetimes_are_refused() -> None:
    schedule = Schedule.from_cron("0 9 * * *")
    naive = datetime.datetime(2024, 1, 1)
    with pytest.raises(ScheduleError, match=r"next\(\) needs an aware datetime, got naive 2024"):
        schedule.next(naive)
    with pytest.raises(ScheduleError, match=r"last_fire_at_or_before\(\) needs an aware datetime"):
        schedule.last_fire_at_or_before(naive)
    with pytest.raises(TypeError, match=r"next\(\) takes a datetime, got date"):
        schedule.next(datetime.date(2024, 1, 1))  # type: ignore[arg-type]


# -- next() and last_fire_at_or_before() ----------------------------------------------------------


def test_next_is_strictly_after_and_whole_minutes() -> None:
    every_minute = Schedule()
    assert every_minute.next(at("2024-01-01T10:00:00+00:00")) == at("2024-01-01T10:01:00+00:00")
    assert every_minute.next(at("2024-01-01T10:00:30.5+00:00")) == at("2024-01-01T10:01:00+00:00")
    assert every_minute.next(at("2024-01-01T09:59:59.999999+00:00")) == at(
        "2024-01-01T10:00:00+00:00"
    )
    assert every_minute.last_fire_at_or_before(at("2024-01-01T10:00:00+00:00")) == at(
        "2024-01-01T10:00:00+00:00"
    )
    assert every_minute.last_fire_at_or_before(at("2024-01-01T10:00:59.9+00:00")) == at(
        "2024-01-01T10:00:00+00:00"
    )


def test_next_crosses_years_and_month_ends() -> None:
    yearly = Schedule.from_cron("@yearly")
    assert yearly.next(at("2024-12-31T23:59:30+00:00")) == at("2025-01-01T00:00:00+00:00")
    assert yearly.last_fire_at_or_before(at("2025-01-01T00:00:00+00:00")) == at(
        "2025-01-01T00:00:00+00:00"
    )
    last_days = Schedule.from_cron("0 12 31 * *")
    found = firings(last_days, at("2024-01-31T12:00:00+00:00"), 3)
    assert iso(found) == [
        "2024-03-31T12:00:00+00:00",
        "2024-05-31T12:00:00+00:00",
        "2024-07-31T12:00:00+00:00",
    ]


def test_rare_schedules_jump_instead_of_walking() -> None:
    leap_day = Schedule.from_cron("0 0 29 2 *")
    assert leap_day.next(at("2025-03-01T00:00:00+00:00")) == at("2028-02-29T00:00:00+00:00")
    assert leap_day.next(at("2096-03-01T00:00:00+00:00")) == at("2104-02-29T00:00:00+00:00")
    assert leap_day.last_fire_at_or_before(at("2104-02-28T00:00:00+00:00")) == at(
        "2096-02-29T00:00:00+00:00"
    )
    leap_sunday = Schedule.from_cron("0 0 29 2 */7")  # Feb 29 AND a Sunday
    assert leap_sunday.next(at("2004-03-01T00:00:00+00:00")) == at("2032-02-29T00:00:00+00:00")
    assert leap_sunday.last_fire_at_or_before(at("2032-02-28T00:00:00+00:00")) == at(
        "2004-02-29T00:00:00+00:00"
    )
    started = time.perf_counter()
    moment = at("2001-01-01T00:00:00+00:00")
    for _ in range(200):
        moment = leap_day.next(moment - datetime.timedelta(days=1500))
    assert time.perf_counter() - started < 1.0  # walking minute by minute would take minutes


def test_returned_datetimes_are_in_the_schedules_zone() -> None:
    schedule = Schedule.from_cron("0 9 * * *", timezone="Australia/Sydney")
    after = at("2024-06-01T00:00:00+00:00")
    found = schedule.next(after)
    assert found.tzinfo is ZoneInfo("Australia/Sydney")
    assert found.isoformat() == "2024-06-02T09:00:00+10:00"
    previous = schedule.last_fire_at_or_before(after)
    assert previous.tzinfo is ZoneInfo("Australia/Sydney")
    assert previous.isoformat() == "2024-06-01T09:00:00+10:00"


# The migration note from plain.worker (docs/scheduling.md) ------------------------------------

# Each of plain.worker's expressions with the firings its scheduler gives after 2026-01-01 00:00
# (worked out by running plain.worker's scheduling.py), and the jobkit expression the note
# rewrites it to.
PLAIN_WORKER_REWRITES = [
    ("0 9 * * 0", "0 9 * * MON", ["01-05 09:00", "01-12 09:00", "01-19 09:00", "01-26 09:00"]),
    ("0 9 * * 0", "0 9 * * 1", ["01-05 09:00", "01-12 09:00", "01-19 09:00", "01-26 09:00"]),
    (
        "0 9 * * 0-4",
        "0 9 * * MON-FRI",
        ["01-01 09:00", "01-02 09:00", "01-05 09:00", "01-06 09:00", "01-07 09:00"],
    ),
    ("0 9 * * 0-4", "0 9 * * 1-5", ["01-01 09:00", "01-02 09:00", "01-05 09:00"]),
    (
        "0 9 * * 5,6",
        "0 9 * * SAT,SUN",
        ["01-03 09:00", "01-04 09:00", "01-10 09:00", "01-11 09:00"],
    ),
    ("0 9 * * 5,6", "0 9 * * 6,0", ["01-03 09:00", "01-04 09:00", "01-10 09:00"]),
    ("@weekly", "0 0 * * MON", ["01-05 00:00", "01-12 00:00", "01-19 00:00"]),
    (
        "0 0 */2 * *",
        "0 0 2-30/2 * *",
        ["01-02 00:00", "01-04 00:00", "01-06 00:00", "01-08 00:00", "01-10 00:00"],
    ),
    ("0 0 1 */3 *", "0 0 1 3-12/3 *", ["03-01 00:00", "06-01 00:00", "09-01 00:00", "12-01 00:00"]),
    (
        "1-10/3 * * * *",
        "3-9/3 * * * *",
        ["01-01 00:03", "01-01 00:06", "01-01 00:09", "01-01 01:03"],
    ),
]


def firings_in_2026(schedule: Schedule, count: int, keep=lambda moment: True) -> list[str]:
    moment, found = at("2026-01-01T00:00+00:00"), []
    while len(found) < count:
        moment = schedule.next(moment)
        if keep(moment):
            found.append(moment.strftime("%m-%d %H:%M"))
    return found


@pytest.mark.parametrize(("plain", "rewritten", "expected"), PLAIN_WORKER_REWRITES)
def test_each_rewrite_of_the_migration_note_fires_when_plain_worker_did(plain, rewritten, expected):
    assert firings_in_2026(Schedule.from_cron(rewritten), len(expected)) == expected
    # The expression as plain.worker wrote it fires at other times in jobkit: the note is needed.
    assert firings_in_2026(Schedule.from_cron(plain), len(expected)) != expected


def test_where_plain_worker_needed_both_day_fields_the_note_checks_one_in_run():
    # "0 0 13 * FRI" fired on Friday the 13th only; "0 9 1-7 * MON" on the first Monday.
    friday_13th = firings_in_2026(
        Schedule.from_cron("0 0 13 * *"), 3, lambda day: day.weekday() == 4
    )
    first_monday = firings_in_2026(Schedule.from_cron("0 9 * * MON"), 4, lambda day: day.day <= 7)

    assert friday_13th == ["02-13 00:00", "03-13 00:00", "11-13 00:00"]
    assert first_monday == ["01-05 09:00", "02-02 09:00", "03-02 09:00", "04-06 09:00"]
