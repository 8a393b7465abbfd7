"""Cron schedules: read a five-field cron expression and find its firings in a time zone, DST too.

``Schedule.from_cron("0 9 * * MON-FRI", timezone="Europe/Berlin").next(now)`` is the first 09:00
Berlin weekday after ``now``. Schedules are immutable, hashable values with minute resolution;
``next()`` and ``last_fire_at_or_before()`` are pure functions of their argument.
"""

from __future__ import annotations

import bisect
import calendar
import datetime
import math
import re
from collections.abc import Mapping
from typing import Protocol, runtime_checkable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jobkit.errors import JobkitError

__all__ = ["Recurrence", "Schedule", "ScheduleError"]


@runtime_checkable
class Recurrence(Protocol):
    """What the scheduler needs of a schedule: ``Schedule`` is one, and a
    ``jobkit_parse_schedule`` plugin may return its own. ``str()`` of it is shown by
    ``jobkit schedule``."""

    def next(self, after: datetime.datetime) -> datetime.datetime:
        """The first firing strictly after ``after`` (aware), as an aware datetime."""

    def last_fire_at_or_before(self, moment: datetime.datetime) -> datetime.datetime:
        """The latest firing at or before ``moment`` (aware), as an aware datetime."""


class ScheduleError(JobkitError, ValueError):
    """A cron expression or schedule field is invalid, can never fire, or ``next()`` was given a
    naive datetime. The message names the field, the offending text and what is allowed."""


FieldValue = int | str | list[int] | tuple[int, ...]
"""What each keyword of ``Schedule(...)`` accepts: an int, a cron field, or a list of ints."""

_UTC = datetime.UTC
_MINUTE = datetime.timedelta(minutes=1)
_FIELD_NAMES = ("minute", "hour", "day_of_month", "month", "day_of_week")

_MONTH_NAMES = {
    name: number
    for number, name in enumerate(
        ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), 1
    )
}
_WEEKDAY_NAMES = {
    name: number for number, name in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"))
}
_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# The longest each month can be; February's 29th happens in leap years.
_LONGEST_MONTH = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_NUMBER = re.compile(r"[0-9]+")
_NAME = re.compile(r"[A-Za-z]+")


class _Field:
    """How one of the five cron fields is read: its bounds and its names."""

    def __init__(
        self,
        name: str,
        low: int,
        high: int,
        *,
        names: Mapping[str, int] | None = None,
        star_high: int | None = None,
        allowed: str | None = None,
    ) -> None:
        self.name = name
        self.low = low
        self.high = high  # the largest value that may be written (7 for Sunday in day_of_week)
        self.star_high = high if star_high is None else star_high  # where ``*`` and ``N/step`` end
        self.names = names or {}
        self.allowed = allowed or f"{low}-{high}"
        self.span = self.star_high - low + 1  # the largest sensible step

    def parse(self, text: str, expression: str) -> frozenset[int]:
        """Return the values ``text`` (one cron field) stands for; ``expression`` is for errors."""
        values: set[int] = set()
        for item in text.split(","):
            if not item:
                raise self._error(f"list {text!r} has an empty item", expression)
            values.update(self._parse_item(item, expression))
        if self.name == "day_of_week" and 7 in values:
            values.discard(7)
            values.add(0)
        return frozenset(values)

    def _parse_item(self, item: str, expression: str) -> range:
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not _NUMBER.fullmatch(step_text) or int(step_text) < 1:
                raise self._error(
                    f"step {step_text!r} in {item!r} must be a whole number from 1 to {self.span}",
                    expression,
                )
            step = int(step_text)
            if step > self.span:
                raise self._error(
                    f"step {step} in {item!r} is larger than the field's {self.span} values "
                    f"({self.low}-{self.star_high}); it would only ever match the first one",
                    expression,
                )
        if base == "*":
            return range(self.low, self.star_high + 1, step)
        start_text, dash, end_text = base.partition("-")
        start = self._value(start_text, item, expression)
        if dash:
            end = self._value(end_text, item, expression)
            if end == 0 and self.name == "day_of_week" and end_text.upper() == "SUN" and start:
                end = 7  # MON-SUN: Sunday as the end of a range is day 7
            if end < start:
                raise self._error(
                    f"range {base!r} goes backwards; write the smaller value first "
                    f"(ranges do not wrap around)",
                    expression,
                )
        elif slash:
            end = max(start, self.star_high)  # "5/15" is "5-59/15"
        else:
            end = start
        return range(start, end + 1, step)

    def _value(self, text: str, item: str, expression: str) -> int:
        if _NUMBER.fullmatch(text):
            value = int(text)
            if not self.low <= value <= self.high:
                raise self._error(f"{value} is out of range {self.low}-{self.high}", expression)
            return value
        if self.names and _NAME.fullmatch(text) and text.upper() in self.names:
            return self.names[text.upper()]
        if self.names and _NAME.fullmatch(text):
            raise self._error(f"has an unknown name {text!r}; allowed: {self.allowed}", expression)
        if not text:
            raise self._error(f"{item!r} is missing a number; allowed: {self.allowed}", expression)
        raise self._error(f"{text!r} is not a number; allowed: {self.allowed}", expression)

    def _error(self, detail: str, expression: str) -> ScheduleError:
        return ScheduleError(f"{self.name} {detail} in {expression!r}")


_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day_of_month", 1, 31),
    _Field("month", 1, 12, names=_MONTH_NAMES, allowed="1-12 or JAN-DEC"),
    _Field(
        "day_of_week",
        0,
        7,
        names=_WEEKDAY_NAMES,
        star_high=6,
        allowed="0-7 (0 and 7 are Sunday) or SUN-SAT",
    ),
)


def _schedule_from_cron(text: str, timezone: str | datetime.tzinfo) -> Schedule:
    return Schedule.from_cron(text, timezone=timezone)


class Schedule:
    """When something fires: a cron expression read in a time zone, with minute resolution.

    Build one with keywords, ``Schedule(minute=0, hour=9, day_of_week="MON-FRI")``, where each
    field is an int, a cron field (``"*"``, ``"1,15"``, ``"9-17"``, ``"*/15"``, ``"1-10/2"``,
    ``"5/15"``, names like ``"JAN-MAR"`` or ``"MON-FRI"``) or a list of ints; or from text with
    :meth:`from_cron`. ``timezone`` is an IANA name, a ``ZoneInfo`` or a ``datetime.timezone``.

    Reading rules, Vixie cron's unless said otherwise:

    - ``N/step`` runs from N to the field's end (``5/15`` in minutes is 5,20,35,50; in
      day_of_week it ends at Saturday, 6). ``a-a`` is just ``a``. A range must not go backwards
      (``5-1`` is an error, not a wrap-around); ``MON-SUN`` is allowed and means Monday to Sunday.
      A step larger than the field (``*/61`` in minutes) is an error.
    - Sunday is 0 or 7.
    - Day of month and day of week: when both are restricted, a day matches if EITHER does
      (``0 0 13 * FRI`` fires on every 13th and every Friday; ``0 0 1-31 * MON`` on every day).
      A field is unrestricted when its text starts with ``*`` -- including ``*/2`` -- and then a
      day must match BOTH. An int or a list of ints given as a keyword is restricted.
    - An expression that can never fire (``0 0 30 2 *``) is an error when the schedule is made.

    Times are wall-clock times in the schedule's zone, and DST changes are handled this way:

    - a matching wall time that does not exist (skipped by a spring-forward change) fires once,
      at the first instant after the gap (02:30 on the day New York skips 02:00-03:00 fires at
      03:00 EDT); several matching times in one gap fire once, together;
    - a matching wall time that happens twice (a fall-back change) fires once, at its first
      occurrence. So an hourly or every-minute schedule does not fire again during the repeated
      hour: in New York on the fall-back day "0 * * * *" fires at 01:00 EDT and then 02:00 EST,
      two real hours apart.

    Python compares two datetimes that share a tzinfo by wall clock, ignoring ``fold``; to order
    or deduplicate firings around a fall-back change, compare ``.astimezone(datetime.UTC)``.
    """

    __slots__ = (
        "_days_or",
        "_expression",
        "_hours",
        "_key",
        "_minutes",
        "_month_days",
        "_months",
        "_times",
        "_timezone",
        "_timezone_name",
        "_weekdays",
    )

    _expression: str
    _timezone: datetime.tzinfo
    _timezone_name: str
    _minutes: tuple[int, ...]
    _hours: tuple[int, ...]
    _month_days: tuple[int, ...]
    _months: tuple[int, ...]
    _weekdays: tuple[int, ...]
    _days_or: bool
    _times: tuple[int, ...]
    _key: tuple[object, ...]

    def __init__(
        self,
        *,
        minute: FieldValue = "*",
        hour: FieldValue = "*",
        day_of_month: FieldValue = "*",
        month: FieldValue = "*",
        day_of_week: FieldValue = "*",
        timezone: str | datetime.tzinfo = "UTC",
    ) -> None:
        given = (minute, hour, day_of_month, month, day_of_week)
        texts = tuple(
            _field_text(name, value) for name, value in zip(_FIELD_NAMES, given, strict=True)
        )
        restricted = (
            not isinstance(day_of_month, str) or not day_of_month.startswith("*"),
            not isinstance(day_of_week, str) or not day_of_week.startswith("*"),
        )
        self._setup(" ".join(texts), texts, restricted, timezone)

    @classmethod
    def from_cron(cls, text: str, timezone: str | datetime.tzinfo = "UTC") -> Schedule:
        """Read a cron expression: five whitespace-separated fields (minute hour day_of_month
        month day_of_week), or one of the macros ``@yearly @annually @monthly @weekly @daily
        @midnight @hourly``. ``str()`` of the result is ``text`` (whitespace normalized)."""
        if not isinstance(text, str):
            raise ScheduleError(f"a cron expression must be a str, got {type(text).__name__}")
        expression = " ".join(text.split())
        fields_text = expression
        if expression.startswith("@"):
            if expression.lower() not in _MACROS:
                raise ScheduleError(
                    f"unknown macro {expression!r}; allowed: {', '.join(_MACROS)}, "
                    f"or five fields like '0 9 * * *'"
                )
            fields_text = _MACROS[expression.lower()]
        texts = tuple(fields_text.split())
        if len(texts) != 5:
            raise ScheduleError(
                f"a cron expression has 5 fields (minute hour day_of_month month day_of_week), "
                f"got {len(texts)} in {expression!r}"
            )
        restricted = (not texts[2].startswith("*"), not texts[4].startswith("*"))
        schedule = cls.__new__(cls)
        schedule._setup(expression, texts, restricted, timezone)
        return schedule

    def _setup(
        self,
        expression: str,
        texts: tuple[str, ...],
        restricted: tuple[bool, bool],
        timezone: str | datetime.tzinfo,
    ) -> None:
        tz, tz_name = _load_timezone(timezone)
        minutes, hours, month_days, months, weekdays = (
            tuple(sorted(field.parse(text, expression)))
            for field, text in zip(_FIELDS, texts, strict=True)
        )
        days_or = restricted[0] and restricted[1]
        if not days_or and not any(day <= _LONGEST_MONTH[m] for m in months for day in month_days):
            raise ScheduleError(
                f"schedule {expression!r} can never fire: month {texts[3]} has no "
                f"day_of_month {texts[2]}"
            )
        values = {
            "_expression": expression,
            "_timezone": tz,
            "_timezone_name": tz_name,
            "_minutes": minutes,
            "_hours": hours,
            "_month_days": month_days,
            "_months": months,
            "_weekdays": weekdays,
            "_days_or": days_or,
            "_times": tuple(h * 60 + m for h in hours for m in minutes),
            "_key": (minutes, hours, month_days, months, weekdays, days_or, tz_name),
        }
        for name, value in values.items():
            object.__setattr__(self, name, value)

    # -- the value ------------------------------------------------------------------------------

    @property
    def expression(self) -> str:
        """The cron text: as given to ``from_cron``, or built from the keyword fields."""
        return self._expression

    @property
    def timezone(self) -> datetime.tzinfo:
        """The zone whose wall clock the schedule follows."""
        return self._timezone

    @property
    def minute(self) -> tuple[int, ...]:
        """The minutes (0-59) that match, sorted."""
        return self._minutes

    @property
    def hour(self) -> tuple[int, ...]:
        """The hours (0-23) that match, sorted."""
        return self._hours

    @property
    def day_of_month(self) -> tuple[int, ...]:
        """The days of the month (1-31) in the field, sorted."""
        return self._month_days

    @property
    def month(self) -> tuple[int, ...]:
        """The months (1-12) that match, sorted."""
        return self._months

    @property
    def day_of_week(self) -> tuple[int, ...]:
        """The weekdays in the field, sorted, Sunday as 0 (7 is read as 0)."""
        return self._weekdays

    @property
    def days_match_either(self) -> bool:
        """True when both day fields are restricted, so a day matching either one fires."""
        return self._days_or

    def __str__(self) -> str:
        return self._expression

    def __repr__(self) -> str:
        return f"<Schedule {self._expression} {self._timezone_name}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Schedule):
            return NotImplemented
        return self._key == other._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Schedule is immutable; cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Schedule is immutable; cannot delete {name!r}")

    def __reduce__(self) -> tuple[object, ...]:
        return (_schedule_from_cron, (self._expression, self._timezone))

    # -- firings --------------------------------------------------------------------------------

    def next(self, after: datetime.datetime) -> datetime.datetime:
        """Return the first firing strictly after ``after`` (an aware datetime), as an aware
        datetime in the schedule's zone. See the class docstring for DST changes."""
        after_utc = self._as_utc(after, "next")
        local = after_utc.astimezone(self._timezone)
        wall = local.replace(tzinfo=None)
        start = wall.replace(second=0, microsecond=0) + _MINUTE
        repeat_end = self._repeat_end(local, after_utc)
        if repeat_end is not None:
            # ``after`` is in the second pass of a repeated hour: times up to the end of that hour
            # already fired on the first pass.
            start = max(start, _ceil_minute(repeat_end))
        while True:
            wall_match = self._first_match_from(start, after)
            instant = self._instant(wall_match)
            if instant > after_utc:
                return instant.astimezone(self._timezone)
            start = wall_match + _MINUTE

    def last_fire_at_or_before(self, moment: datetime.datetime) -> datetime.datetime:
        """Return the latest firing at or before ``moment`` (an aware datetime), as an aware
        datetime in the schedule's zone: the firing a scheduler that wakes at ``moment`` is due
        to run. Same DST rules as :meth:`next`; ``next(last_fire_at_or_before(t)) == next(t)``."""
        moment_utc = self._as_utc(moment, "last_fire_at_or_before")
        local = moment_utc.astimezone(self._timezone)
        end = local.replace(tzinfo=None, second=0, microsecond=0)
        repeat_end = self._repeat_end(local, moment_utc)
        if repeat_end is not None:
            # First-pass times up to the end of the repeated hour have fired already.
            end = max(end, _ceil_minute(repeat_end) - _MINUTE)
        while True:
            wall_match = self._last_match_at_or_before(end, moment)
            instant = self._instant(wall_match)
            if instant <= moment_utc:
                return instant.astimezone(self._timezone)
            end = wall_match - _MINUTE

    def _as_utc(self, moment: datetime.datetime, method: str) -> datetime.datetime:
        if not isinstance(moment, datetime.datetime):
            raise TypeError(f"{method}() takes a datetime, got {type(moment).__name__}")
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ScheduleError(
                f"{method}() needs an aware datetime, got naive {moment.isoformat()}; "
                f"attach a zone, e.g. moment.replace(tzinfo=schedule.timezone)"
            )
        return moment.astimezone(_UTC)

    def _instant(self, wall: datetime.datetime) -> datetime.datetime:
        """The UTC instant a matching wall time fires at: its first occurrence, or the end of
        the gap it falls in."""
        first = wall.replace(tzinfo=self._timezone).astimezone(_UTC)
        if first.astimezone(self._timezone).replace(tzinfo=None) == wall:
            return first
        # ``wall`` is skipped by a spring-forward change. fold=0 reads it with the offset from
        # before the change, fold=1 with the one after; the change lies between the two.
        other = wall.replace(tzinfo=self._timezone, fold=1).astimezone(_UTC)
        return self._change_between(min(first, other), max(first, other))

    def _repeat_end(
        self, local: datetime.datetime, utc: datetime.datetime
    ) -> datetime.datetime | None:
        """If ``local`` is the second occurrence of a repeated wall time, the naive wall time at
        which the repeated stretch ends; otherwise None."""
        if not local.fold:
            return None
        first_offset = local.replace(fold=0).utcoffset()
        second_offset = local.utcoffset()
        if first_offset is None or second_offset is None or first_offset <= second_offset:
            return None
        change = self._change_between(utc - (first_offset - second_offset), utc)
        return (change + first_offset).replace(tzinfo=None)

    def _change_between(self, low: datetime.datetime, high: datetime.datetime) -> datetime.datetime:
        """The first instant after ``low`` with ``high``'s UTC offset (zone changes fall on
        whole seconds)."""
        tz = self._timezone
        low_second = math.floor(low.timestamp())
        high_second = math.ceil(high.timestamp())
        low_offset = datetime.datetime.fromtimestamp(low_second, tz).utcoffset()
        while high_second - low_second > 1:
            middle = (low_second + high_second) // 2
            if datetime.datetime.fromtimestamp(middle, tz).utcoffset() == low_offset:
                low_second = middle
            else:
                high_second = middle
        return datetime.datetime.fromtimestamp(high_second, _UTC)

    # -- wall-clock search, field by field --------------------------------------------------------

    def _day_matches(self, day: datetime.date) -> bool:
        in_month = day.day in self._month_days
        in_week = day.isoweekday() % 7 in self._weekdays
        return (in_month or in_week) if self._days_or else (in_month and in_week)

    def _first_match_from(self, start: datetime.datetime, origin: object) -> datetime.datetime:
        """The first matching naive wall time at or after ``start`` (a whole minute)."""
        day = start.date()
        if self._day_matches(day) and day.month in self._months:
            index = bisect.bisect_left(self._times, start.hour * 60 + start.minute)
            if index < len(self._times):
                return _at(day, self._times[index])
        year, month, first_day = day.year, day.month, day.day + 1
        while year <= datetime.MAXYEAR:
            index = bisect.bisect_left(self._months, month)
            if index == len(self._months):
                year, month, first_day = year + 1, self._months[0], 1
                continue
            if self._months[index] != month:
                month, first_day = self._months[index], 1
            for number in range(first_day, calendar.monthrange(year, month)[1] + 1):
                candidate = datetime.date(year, month, number)
                if self._day_matches(candidate):
                    return _at(candidate, self._times[0])
            year, month, first_day = (year, month + 1, 1) if month < 12 else (year + 1, 1, 1)
        raise ScheduleError(f"{self!r} does not fire after {origin} before the year 10000")

    def _last_match_at_or_before(self, end: datetime.datetime, origin: object) -> datetime.datetime:
        """The latest matching naive wall time at or before ``end`` (a whole minute)."""
        day = end.date()
        if self._day_matches(day) and day.month in self._months:
            index = bisect.bisect_right(self._times, end.hour * 60 + end.minute)
            if index:
                return _at(day, self._times[index - 1])
        year, month, last_day = day.year, day.month, day.day - 1
        while year >= datetime.MINYEAR:
            index = bisect.bisect_right(self._months, month)
            if index == 0:
                year, month, last_day = year - 1, self._months[-1], 31
                continue
            if self._months[index - 1] != month:
                month, last_day = self._months[index - 1], 31
            last_day = min(last_day, calendar.monthrange(year, month)[1])
            for number in range(last_day, 0, -1):
                candidate = datetime.date(year, month, number)
                if self._day_matches(candidate):
                    return _at(candidate, self._times[-1])
            year, month, last_day = (year, month - 1, 31) if month > 1 else (year - 1, 12, 31)
        raise ScheduleError(f"{self!r} does not fire at or before {origin} after the year 1")


def _at(day: datetime.date, minute_of_day: int) -> datetime.datetime:
    return datetime.datetime(day.year, day.month, day.day, *divmod(minute_of_day, 60))


def _ceil_minute(wall: datetime.datetime) -> datetime.datetime:
    floor = wall.replace(second=0, microsecond=0)
    return floor if floor == wall else floor + _MINUTE


def _field_text(name: str, value: object) -> str:
    """The cron text of one keyword field, checked for type."""
    if isinstance(value, str):
        if not value or any(character.isspace() for character in value):
            raise ScheduleError(
                f"{name} {value!r} must be one cron field, without spaces, like '*' or '1-5'"
            )
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, list | tuple):
        if not value:
            raise ScheduleError(f"{name} is an empty list; give at least one value, or '*'")
        if not all(isinstance(item, int) and not isinstance(item, bool) for item in value):
            raise ScheduleError(f"{name} list {value!r} must hold only ints")
        return ",".join(str(item) for item in value)
    raise ScheduleError(
        f"{name} must be an int, a cron field str or a list of ints, got {type(value).__name__}"
    )


def _load_timezone(timezone: object) -> tuple[datetime.tzinfo, str]:
    if isinstance(timezone, str):
        try:
            zone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ScheduleError(
                f"unknown timezone {timezone!r}; expected an IANA name such as 'UTC', "
                f"'Europe/Berlin' or 'America/New_York'"
            ) from None
        return zone, timezone
    if isinstance(timezone, ZoneInfo):
        return timezone, timezone.key if timezone.key is not None else repr(timezone)
    if isinstance(timezone, datetime.timezone):
        return timezone, str(timezone)
    raise ScheduleError(
        f"timezone must be an IANA name, a zoneinfo.ZoneInfo or a datetime.timezone, "
        f"got {timezone!r}"
    )
