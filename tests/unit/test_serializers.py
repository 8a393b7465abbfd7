"""Tests of the built-in JSON serializer (``jobkit.builtin.serializers``), made the way the
kernel makes it: through the ``jobkit_serializer`` hook of a plugin manager."""

import dataclasses
import datetime
import decimal
import enum
import json
import uuid
from typing import Any

import attrs
import pluggy
import pytest

import jobkit.builtin.serializers
import jobkit.hookspecs
from jobkit.errors import OutputError, ParameterError
from jobkit.hookspecs import hookimpl
from jobkit.job import Job
from jobkit.serializer import Serializer
from jobkit.settings import Settings

PLUS_TWO = datetime.timezone(datetime.timedelta(hours=2))
MINUS_FIVE_THIRTY = datetime.timezone(-datetime.timedelta(hours=5, minutes=30))


@pytest.fixture
def pm():
    pm = pluggy.PluginManager("jobkit")
    pm.add_hookspecs(jobkit.hookspecs)
    pm.register(jobkit.builtin.serializers, "jobkit.builtin.serializers")
    return pm


@pytest.fixture
def serializer(pm):
    return make_serializer(pm)


def make_serializer(pm):
    return pm.hook.jobkit_serializer(settings=Settings(), pluginmanager=pm)


# Types and jobs ---------------------------------------------------------------------------------


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Size(enum.IntEnum):
    SMALL = 1
    LARGE = 3


class Flavour(enum.StrEnum):
    VANILLA = "vanilla"


@attrs.frozen
class Address:
    street: str
    since: datetime.date


@attrs.frozen
class Customer:
    name: str
    address: Address
    tags: tuple[str, ...] = ()
    last_seen: datetime.datetime | None = None
    extra: dict[str, Any] = attrs.field(factory=dict)


@dataclasses.dataclass
class Line:
    sku: str
    price: decimal.Decimal
    quantity: int = 1


@dataclasses.dataclass
class Order:
    id: uuid.UUID
    lines: list[Line]
    customer: Customer


class Money:
    """A type jobkit does not know: a plugin teaches the converter about it."""

    def __init__(self, cents: int, currency: str):
        self.cents = cents
        self.currency = currency

    def __eq__(self, other):
        return isinstance(other, Money) and (other.cents, other.currency) == (
            self.cents,
            self.currency,
        )

    def __hash__(self):
        return hash((self.cents, self.currency))


class Unknown:
    """A type nobody taught the converter about."""


@attrs.frozen
class Invoice:
    total: Unknown


class UnannotatedJob(Job):
    def __init__(self, value, *rest, **extra):
        pass


class WelcomeUserJob(Job):
    def __init__(self, user_id: int, name: str):
        pass


class SignatureJob(Job):
    def __init__(
        self,
        first: int,
        /,
        second: str,
        *dates: datetime.date,
        amount: decimal.Decimal = decimal.Decimal("0"),
        **ids: uuid.UUID,
    ):
        pass


class OptionalJob(Job):
    def __init__(self, user_id: int, note: str = "", *, when: datetime.datetime | None = None):
        pass


class PaymentJob(Job):
    def __init__(self, amount: Money):
        pass


class UnknownJob(Job):
    def __init__(self, thing: Unknown):
        pass


class InvoiceJob(Job):
    def __init__(self, invoice: Invoice):
        pass


class NoInitJob(Job):
    pass


class UnresolvableJob(Job):
    def __init__(self, user: "NotDefinedAnywhere"):  # noqa: F821
        pass


def annotated_job(annotation):
    """A job whose one parameter, ``value``, is annotated ``annotation``."""

    class AnnotatedJob(Job):
        def __init__(self, value):
            pass

    AnnotatedJob.__init__.__annotations__["value"] = annotation
    return AnnotatedJob


def round_trip(serializer, job_class, *args, **kwargs):
    text = serializer.dumps(job_class, args, kwargs)
    json.loads(text)  # plain JSON, readable by anyone
    return serializer.loads(job_class, text)


def assert_identical(loaded, original):
    """Equal, and of the same types all the way down (and datetimes at the same offset)."""
    assert type(loaded) is type(original), (loaded, original)
    assert loaded == original
    if isinstance(original, datetime.datetime | datetime.time):
        assert loaded.utcoffset() == original.utcoffset()
    elif isinstance(original, list | tuple):
        for loaded_item, original_item in zip(loaded, original, strict=True):
            assert_identical(loaded_item, original_item)
    elif isinstance(original, dict):
        for key, item in original.items():
            assert_identical(loaded[key], item)
    elif attrs.has(type(original)) or dataclasses.is_dataclass(original):
        names = (
            [field.name for field in attrs.fields(type(original))]
            if attrs.has(type(original))
            else [field.name for field in dataclasses.fields(original)]
        )
        for name in names:
            assert_identical(getattr(loaded, name), getattr(original, name))


CUSTOMER = Customer(
    name="Ada",
    address=Address("1 Analytical Row", datetime.date(1843, 9, 1)),
    tags=("vip", "early"),
    last_seen=datetime.datetime(2026, 1, 1, 9, 30, tzinfo=PLUS_TWO),
    extra={"since": (2020, 1), "at": datetime.datetime(2025, 5, 5, 5, 5)},
)
ORDER = Order(
    id=uuid.UUID("12345678-1234-5678-1234-567812345678"),
    lines=[Line("A-1", decimal.Decimal("9.99")), Line("B-2", decimal.Decimal("0.10"), 3)],
    customer=CUSTOMER,
)


# The serializer ---------------------------------------------------------------------------------


def test_serializer_is_a_serializer(serializer):
    assert isinstance(serializer, jobkit.builtin.serializers.JsonSerializer)
    assert isinstance(serializer, Serializer)


def test_another_plugin_serializer_wins(pm):
    sentinel = object()

    class OtherSerializerPlugin:
        @hookimpl
        def jobkit_serializer(self, settings, pluginmanager):
            return sentinel

    pm.register(OtherSerializerPlugin())
    assert make_serializer(pm) is sentinel


def test_stored_format(serializer):
    text = serializer.dumps(WelcomeUserJob, (42,), {"name": "Ada"})
    assert text == '{"args":[42],"kwargs":{"name":"Ada"}}'
    assert serializer.loads(WelcomeUserJob, text) == ((42,), {"name": "Ada"})


def test_stored_format_of_tagged_values(serializer):
    when = datetime.datetime(2026, 1, 1, tzinfo=PLUS_TWO)
    text = serializer.dumps(UnannotatedJob, (when,), {"pair": (1, "a")})
    assert json.loads(text) == {
        "args": [{"__jobkit__": "datetime", "value": "2026-01-01T00:00:00+02:00"}],
        "kwargs": {"pair": {"__jobkit__": "tuple", "value": [1, "a"]}},
    }


def test_loads_returns_a_tuple_and_a_dict(serializer):
    args, kwargs = round_trip(serializer, WelcomeUserJob, 1, "x")
    assert args == (1, "x")
    assert type(args) is tuple
    assert kwargs == {}
    assert type(kwargs) is dict


# Round trips ------------------------------------------------------------------------------------

ANNOTATED = [
    (datetime.datetime, datetime.datetime(2026, 1, 1, 12, 0, tzinfo=PLUS_TWO)),
    (datetime.datetime, datetime.datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=MINUS_FIVE_THIRTY)),
    (datetime.datetime, datetime.datetime(2026, 1, 1, 12, 0, tzinfo=datetime.UTC)),
    (datetime.datetime, datetime.datetime(2026, 1, 1, 12, 0)),
    (datetime.date, datetime.date(2026, 2, 28)),
    (datetime.time, datetime.time(23, 59, 59, 999999)),
    (datetime.time, datetime.time(8, 0, tzinfo=PLUS_TWO)),
    (uuid.UUID, uuid.UUID("12345678-1234-5678-1234-567812345678")),
    (decimal.Decimal, decimal.Decimal("1.10")),
    (decimal.Decimal, decimal.Decimal("-0.000000000000000000000001")),
    (decimal.Decimal, decimal.Decimal("12345678901234567890.123456789")),
    (Color, Color.BLUE),
    (Size, Size.LARGE),
    (Flavour, Flavour.VANILLA),
    (tuple[int, ...], (1, 2, 3)),
    (tuple[int, ...], ()),
    (tuple[int, str], (1, "a")),
    (list[datetime.date], [datetime.date(2026, 1, 1), datetime.date(2026, 1, 2)]),
    (dict[str, decimal.Decimal], {"a": decimal.Decimal("1.5"), "b": decimal.Decimal("2")}),
    (dict[str, list[int]], {"a": [1, 2], "b": []}),
    (int | None, None),
    (int | None, 5),
    (datetime.datetime | None, datetime.datetime(2026, 1, 1, tzinfo=PLUS_TWO)),
    (uuid.UUID | None, None),
    (Address, Address("Main St", datetime.date(2020, 1, 1))),
    (Customer, CUSTOMER),
    (Order, ORDER),
    (list[Line], ORDER.lines),
    (bytes, b"\x00\xffbinary"),
    (str, "caf\u00e9 \u2603"),
    (int, 2**80),
    (float, 0.1),
    (bool, False),
    (dict, {"at": datetime.date(2026, 1, 1), "pair": (1, 2)}),
    (list, [uuid.UUID(int=1), (1,)]),
    (tuple, (1, datetime.time(1, 2))),
    (list[Any], [decimal.Decimal("1.1"), ("a", "b")]),
    (dict[str, Any], {"__jobkit__": "not a tag", "at": datetime.date(2026, 1, 1)}),
    (Any, uuid.UUID(int=7)),
    (object, (1, [2, (3,)])),
]


@pytest.mark.parametrize(
    ("annotation", "value"), ANNOTATED, ids=[repr(value)[:40] for _, value in ANNOTATED]
)
def test_annotated_round_trip(serializer, annotation, value):
    job_class = annotated_job(annotation)
    args, kwargs = round_trip(serializer, job_class, value)
    assert_identical(args[0], value)
    args, kwargs = round_trip(serializer, job_class, value=value)
    assert_identical(kwargs["value"], value)


UNANNOTATED = [
    None,
    True,
    0,
    -(2**70),
    1.5,
    "",
    "text",
    [],
    {},
    [1, "a", None, [2.5]],
    {"a": {"b": [1, {"c": None}]}},
    datetime.datetime(2026, 1, 1, 12, 0, tzinfo=PLUS_TWO),
    datetime.datetime(2026, 1, 1, 12, 0),
    datetime.date(2026, 1, 1),
    datetime.time(12, 30, 15),
    datetime.time(12, 30, tzinfo=MINUS_FIVE_THIRTY),
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    decimal.Decimal("1.10"),
    (),
    (1, "a", (2, (3,))),
    [{"when": datetime.date(2026, 1, 1)}, (decimal.Decimal("0.1"), uuid.UUID(int=1))],
    {"nested": {"list": [(1, 2), {"d": datetime.datetime(2026, 1, 1, tzinfo=PLUS_TWO)}]}},
    {"__jobkit__": "datetime", "value": "2026-01-01"},
    {"__jobkit__": {"__jobkit__": "tuple", "value": [1]}, "value": ("x",)},
    [{"__jobkit__": 1}],
]


@pytest.mark.parametrize("value", UNANNOTATED, ids=[repr(value)[:40] for value in UNANNOTATED])
def test_unannotated_round_trip(serializer, value):
    args, kwargs = round_trip(serializer, UnannotatedJob, value, value, key=value)
    assert_identical(args, (value, value))
    assert_identical(kwargs, {"key": value})


def test_dict_with_the_tag_key_is_escaped(serializer):
    value = {"__jobkit__": "date", "value": "2026-01-01"}
    text = serializer.dumps(UnannotatedJob, (value,), {})
    assert json.loads(text)["args"] == [{"__jobkit__": "dict", "value": value}]
    assert serializer.loads(UnannotatedJob, text) == ((value,), {})


def test_naive_datetime_stays_naive(serializer):
    naive = datetime.datetime(2026, 1, 1, 12, 0)
    for job_class in (UnannotatedJob, annotated_job(datetime.datetime)):
        (loaded,), _ = round_trip(serializer, job_class, naive)
        assert loaded.tzinfo is None


def test_decimal_is_stored_as_a_string(serializer):
    job_class = annotated_job(decimal.Decimal)
    text = serializer.dumps(job_class, (decimal.Decimal("0.1000000000000000055511151231"),), {})
    assert json.loads(text)["args"] == ["0.1000000000000000055511151231"]


# Positional and keyword arguments ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((1, "two"), {}),
        ((1,), {"second": "two"}),
        ((1, "two", datetime.date(2026, 1, 1), datetime.date(2026, 1, 2)), {}),
        ((1, "two"), {"amount": decimal.Decimal("3.30")}),
        ((1, "two"), {"order": uuid.UUID(int=1), "user": uuid.UUID(int=2)}),
        ((1,), {"second": "two", "first": uuid.UUID(int=3)}),  # positional-only name in **ids
    ],
)
def test_positional_and_keyword_arguments(serializer, args, kwargs):
    loaded_args, loaded_kwargs = round_trip(serializer, SignatureJob, *args, **kwargs)
    assert_identical(loaded_args, args)
    assert_identical(loaded_kwargs, kwargs)


def test_var_positional_and_var_keyword_are_converted_by_their_annotation(serializer):
    text = serializer.dumps(
        SignatureJob, (1, "two", datetime.date(2026, 1, 1)), {"order": uuid.UUID(int=1)}
    )
    assert json.loads(text) == {
        "args": [1, "two", "2026-01-01"],
        "kwargs": {"order": "00000000-0000-0000-0000-000000000001"},
    }


def test_defaults_are_not_stored(serializer):
    assert serializer.dumps(OptionalJob, (1,), {}) == '{"args":[1],"kwargs":{}}'
    assert serializer.loads(OptionalJob, '{"args":[1],"kwargs":{}}') == ((1,), {})


def test_keyword_only_argument(serializer):
    when = datetime.datetime(2026, 1, 1, tzinfo=PLUS_TWO)
    args, kwargs = round_trip(serializer, OptionalJob, 1, when=when)
    assert args == (1,)
    assert_identical(kwargs, {"when": when})


def test_job_without_init_takes_no_arguments(serializer):
    assert serializer.dumps(NoInitJob, (), {}) == '{"args":[],"kwargs":{}}'
    assert serializer.loads(NoInitJob, '{"args":[],"kwargs":{}}') == ((), {})


# Plugins ----------------------------------------------------------------------------------------


class MoneyPlugin:
    @hookimpl
    def jobkit_configure_converter(self, converter):
        converter.register_unstructure_hook(Money, lambda money: f"{money.cents} {money.currency}")
        converter.register_structure_hook(Money, lambda data, _: Money(*_parse_money(data)))


def _parse_money(data):
    cents, currency = data.split(" ")
    return int(cents), currency


class CompactDatetimePlugin:
    @hookimpl
    def jobkit_configure_converter(self, converter):
        converter.register_unstructure_hook(
            datetime.datetime, lambda value: value.strftime("%Y%m%dT%H%M%S%z")
        )
        converter.register_structure_hook(
            datetime.datetime,
            lambda data, _: datetime.datetime.strptime(data, "%Y%m%dT%H%M%S%z"),
        )


def test_plugin_makes_a_type_storable(pm):
    pm.register(MoneyPlugin())
    serializer = make_serializer(pm)
    text = serializer.dumps(PaymentJob, (Money(1250, "EUR"),), {})
    assert text == '{"args":["1250 EUR"],"kwargs":{}}'
    assert serializer.loads(PaymentJob, text) == ((Money(1250, "EUR"),), {})


def test_plugin_hooks_win_over_builtin_ones(pm):
    pm.register(CompactDatetimePlugin())
    serializer = make_serializer(pm)
    when = datetime.datetime(2026, 1, 1, 9, 30, tzinfo=PLUS_TWO)
    job_class = annotated_job(datetime.datetime)
    text = serializer.dumps(job_class, (when,), {})
    assert text == '{"args":["20260101T093000+0200"],"kwargs":{}}'
    (loaded,), _ = serializer.loads(job_class, text)
    assert_identical(loaded, when)


def test_plugin_hooks_apply_inside_attrs_classes(pm):
    pm.register(CompactDatetimePlugin())
    serializer = make_serializer(pm)
    text = serializer.dumps(annotated_job(Customer), (CUSTOMER,), {})
    assert '"last_seen":"20260101T093000+0200"' in text
    (loaded,), _ = serializer.loads(annotated_job(Customer), text)
    assert_identical(loaded, CUSTOMER)


def test_unannotated_values_keep_the_tagged_form_whatever_the_plugins(pm):
    pm.register(CompactDatetimePlugin())
    serializer = make_serializer(pm)
    when = datetime.datetime(2026, 1, 1, tzinfo=PLUS_TWO)
    text = serializer.dumps(UnannotatedJob, (when,), {})
    assert '"2026-01-01T00:00:00+02:00"' in text


# Errors at dumps --------------------------------------------------------------------------------

ANNOTATE_HINT = "Annotate the parameter in UnannotatedJob.__init__"
HOOKS_HINT = "converter.register_structure_hook("


def type_name(cls):
    return f"{cls.__module__}.{cls.__qualname__}"


@pytest.mark.parametrize(
    ("job_class", "args", "kwargs", "expected"),
    [
        pytest.param(
            UnannotatedJob,
            (Unknown(),),
            {},
            ["UnannotatedJob parameter 'value' has type", type_name(Unknown), ANNOTATE_HINT],
            id="unannotated custom class",
        ),
        pytest.param(
            UnannotatedJob,
            (Address("x", datetime.date(2020, 1, 1)),),
            {},
            ["'value'", type_name(Address), ANNOTATE_HINT, "(value: Address)"],
            id="unannotated attrs instance",
        ),
        pytest.param(
            UnannotatedJob,
            ({1, 2},),
            {},
            ["'value'", "has type set,", ANNOTATE_HINT],
            id="unannotated set",
        ),
        pytest.param(
            UnannotatedJob,
            (Flavour.VANILLA,),
            {},
            ["'value'", type_name(Flavour), ANNOTATE_HINT],
            id="unannotated str enum",
        ),
        pytest.param(
            UnannotatedJob,
            ({1: "a"},),
            {},
            ["'value'", "a dict with a key of type int", "convert the keys to str"],
            id="unannotated dict with int keys",
        ),
        pytest.param(
            UnannotatedJob,
            (object(),),
            {},
            ["'value' has type object: a bare object() holds no data to store"],
            id="unannotated object()",
        ),
        pytest.param(
            UnannotatedJob,
            (1,),
            {"payload": [1, {"x": Unknown()}]},
            ["parameter 'extra' (item 'payload' of **extra)", type_name(Unknown)],
            id="unannotated nested in **kwargs",
        ),
        pytest.param(
            UnannotatedJob,
            (1, 2, [Unknown()]),
            {},
            ["parameter 'rest' (item 1 of *rest)", "rest[1][0]", type_name(Unknown)],
            id="unannotated nested in *args",
        ),
        pytest.param(
            annotated_job(dict[str, Any]),
            ({"a": Unknown()},),
            {},
            ["'value'", type_name(Unknown), "value['a']", "allows any value"],
            id="Any inside an annotation",
        ),
        pytest.param(
            annotated_job(Customer),
            (Customer("x", Address("y", datetime.date(2020, 1, 1)), extra={"u": Unknown()}),),
            {},
            ["'value'", type_name(Unknown), "value['extra']['u']", "allows any value"],
            id="Any inside an attrs class",
        ),
        pytest.param(
            UnknownJob,
            (Unknown(),),
            {},
            ["UnknownJob parameter 'thing' has type", type_name(Unknown), HOOKS_HINT],
            id="annotated unknown type",
        ),
        pytest.param(
            InvoiceJob,
            (Invoice(Unknown()),),
            {},
            [
                "InvoiceJob parameter 'invoice'",
                type_name(Unknown),
                "register_structure_hook(Unknown",
            ],
            id="attrs class with a field of unknown type",
        ),
        pytest.param(
            UnannotatedJob,
            (float("nan"),),
            {},
            ["UnannotatedJob parameter 'value' is nan", "JSON cannot hold"],
            id="nan",
        ),
        pytest.param(
            annotated_job(float),
            (float("inf"),),
            {},
            ["parameter 'value' is inf", "JSON cannot hold"],
            id="annotated inf",
        ),
        pytest.param(
            annotated_job(list[float]),
            ([1.0, float("-inf")],),
            {},
            ["parameter 'value' is -inf at value[1]"],
            id="nested inf",
        ),
        pytest.param(
            WelcomeUserJob,
            ("42",),
            {"name": "Ada"},
            ["WelcomeUserJob parameter 'user_id' is annotated int but was given str ('42')"],
            id="annotated int given str",
        ),
        pytest.param(
            annotated_job(Address),
            ({"street": "x", "since": "2020-01-01"},),
            {},
            ["parameter 'value' is annotated", type_name(Address), "was given dict"],
            id="annotated attrs class given dict",
        ),
        pytest.param(
            annotated_job(uuid.UUID | None),
            ("12345678-1234-5678-1234-567812345678",),
            {},
            ["parameter 'value' is annotated", "was given str"],
            id="annotated optional given the wrong type",
        ),
        pytest.param(
            WelcomeUserJob,
            (42, "A\x00da"),
            {},
            ["WelcomeUserJob parameter 'name' contains the NUL character (\\x00), which"],
            id="NUL",
        ),
        pytest.param(
            UnannotatedJob,
            ({"files": ["ok.txt", "caf\udce9.txt"]},),
            {},
            [
                "UnannotatedJob parameter 'value' contains text that is not valid Unicode at "
                "value['files'][1]: the surrogate '\\udce9' (os.fsdecode makes",
                "text.encode('utf-8', 'surrogateescape').decode('utf-8', 'replace')",
            ],
            id="lone surrogate in a nested string",
        ),
        pytest.param(
            UnannotatedJob,
            (1,),
            {"tags": {"caf\udce9": 1}},
            [
                "parameter 'extra' (item 'tags' of **extra) contains text that is not valid "
                "Unicode at extra['tags'] (a key): the surrogate '\\udce9'"
            ],
            id="lone surrogate in a dict key",
        ),
        pytest.param(
            annotated_job(str),
            ("\ud83d\ude00",),
            {},
            ["parameter 'value' contains text that is not valid Unicode: the surrogate '\\ud83d'"],
            id="a surrogate pair as two characters",
        ),
    ],
)
def test_dumps_refuses_what_it_cannot_store(serializer, job_class, args, kwargs, expected):
    with pytest.raises(ParameterError) as excinfo:
        serializer.dumps(job_class, args, kwargs)
    message = str(excinfo.value)
    for part in expected:
        assert part in message


@pytest.mark.parametrize(
    "text", ["😀 past U+FFFF", "a backslash and u0000: \\u0000", "\\ud83d as text", "é"]
)
def test_text_postgresql_can_hold_is_stored_as_it_is(serializer, text):
    stored = serializer.dumps(annotated_job(str), (text,), {})
    assert serializer.loads(annotated_job(str), stored) == ((text,), {})


@pytest.mark.parametrize(
    ("job_class", "value"),
    [
        (UnannotatedJob, object()),
        (UnannotatedJob, {1: "a"}),
        (UnannotatedJob, {"a": {2: "b"}}),
        (annotated_job(dict[str, Any]), {"a": object()}),
        (annotated_job(list), [object()]),
    ],
)
def test_no_hint_suggests_an_annotation_that_holds_any_json_value(serializer, job_class, value):
    # docs/serialization.md: annotated object, Any, or a bare list, dict or tuple, a parameter
    # holds JSON values as they are: suggesting one of those would not store the value.
    with pytest.raises(ParameterError) as excinfo:
        serializer.dumps(job_class, (value,), {})
    message = str(excinfo.value)
    for annotation in ("object", "Any", "list", "dict", "tuple"):
        assert f": {annotation})" not in message
    assert "annotate that place" not in message
    assert "Annotate the parameter" not in message


def test_hook_hint_is_an_example_plugin(serializer):
    with pytest.raises(ParameterError) as excinfo:
        serializer.dumps(UnknownJob, (Unknown(),), {})
    message = str(excinfo.value)
    assert "def jobkit_configure_converter(converter):" in message
    assert "converter.register_unstructure_hook(Unknown, " in message
    assert "converter.register_structure_hook(Unknown, " in message


def test_unstructure_hook_without_structure_hook_is_refused_at_dumps(pm):
    class HalfPlugin:
        @hookimpl
        def jobkit_configure_converter(self, converter):
            converter.register_unstructure_hook(Money, lambda money: money.cents)

    pm.register(HalfPlugin())
    serializer = make_serializer(pm)
    with pytest.raises(
        ParameterError, match=r"PaymentJob parameter 'amount' .*cannot be read back"
    ):
        serializer.dumps(PaymentJob, (Money(1, "EUR"),), {})


@pytest.mark.parametrize(
    ("job_class", "args", "kwargs", "problem"),
    [
        (WelcomeUserJob, (1, "a", "b"), {}, "too many positional arguments"),
        (WelcomeUserJob, (1,), {}, "missing a required argument: 'name'"),
        (WelcomeUserJob, (1, "a"), {"email": "x"}, "unexpected keyword argument 'email'"),
        (WelcomeUserJob, (1, "a"), {"name": "b"}, "multiple values for argument 'name'"),
        (SignatureJob, (), {"first": 1, "second": "a"}, "'first'"),
        (OptionalJob, (1, "note", "extra"), {}, "too many positional arguments"),
        (NoInitJob, (1,), {}, "too many positional arguments"),
    ],
)
def test_dumps_refuses_arguments_that_do_not_fit_init(serializer, job_class, args, kwargs, problem):
    with pytest.raises(ParameterError) as excinfo:
        serializer.dumps(job_class, args, kwargs)
    message = str(excinfo.value)
    assert f"{job_class.__qualname__} was given arguments that do not fit" in message
    assert f"{job_class.__qualname__}.__init__(self" in message
    assert problem in message


def test_dumps_refuses_unresolvable_annotations(serializer):
    with pytest.raises(ParameterError, match=r"UnresolvableJob.__init__ has annotations") as info:
        serializer.dumps(UnresolvableJob, (1,), {})
    assert "NotDefinedAnywhere" in str(info.value)


# Errors at loads --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("not json", "WelcomeUserJob parameters are not valid JSON"),
        ('{"args": [1, "a"]', "not valid JSON"),
        ('{"args": [NaN, "a"], "kwargs": {}}', "not valid JSON"),
        ("[1, 2]", "not in jobkit's stored form"),
        ('{"args": {}, "kwargs": {}}', "not in jobkit's stored form"),
        ('{"args": [], "kwargs": {}, "extra": 1}', "not in jobkit's stored form"),
    ],
)
def test_loads_refuses_text_that_is_not_stored_parameters(serializer, text, expected):
    with pytest.raises(ParameterError, match=expected):
        serializer.loads(WelcomeUserJob, text)


@pytest.mark.parametrize(
    ("job_class", "text", "expected"),
    [
        (
            WelcomeUserJob,
            '{"args":[],"kwargs":{"user_id":1}}',
            "it has no value for the required parameter 'name'",
        ),
        (
            WelcomeUserJob,
            '{"args":[1,"a"],"kwargs":{"email":"x"}}',
            "it has a value for 'email', which is not a parameter of __init__",
        ),
        (
            WelcomeUserJob,
            '{"args":[1,"a","b"],"kwargs":{}}',
            "it has 3 positional arguments, and __init__ takes 2",
        ),
        (
            WelcomeUserJob,
            '{"args":[1,"a"],"kwargs":{"name":"b"}}',
            "it gives parameter 'name' both by position and by name",
        ),
        (
            SignatureJob,
            '{"args":[],"kwargs":{"first":1,"second":"a"}}',
            "it has no value for the required parameter 'first'",
        ),
    ],
)
def test_loads_refuses_parameters_that_no_longer_fit_init(serializer, job_class, text, expected):
    with pytest.raises(ParameterError) as excinfo:
        serializer.loads(job_class, text)
    message = str(excinfo.value)
    assert f"{job_class.__qualname__} cannot be made from these parameters: " in message
    assert expected in message
    assert f"{job_class.__qualname__}.__init__ is (self" in message
    # Where the parameters came from (a stored request, a command line) is the caller's to say.
    assert "stored" not in message


@pytest.mark.parametrize(
    ("job_class", "text", "expected"),
    [
        (WelcomeUserJob, '{"args":["forty-two","a"],"kwargs":{}}', "parameter 'user_id'"),
        (annotated_job(datetime.date), '{"args":["yesterday"],"kwargs":{}}', "'value'"),
        (annotated_job(uuid.UUID), '{"args":[17],"kwargs":{}}', "'value'"),
        (annotated_job(decimal.Decimal), '{"args":["abc"],"kwargs":{}}', "'value'"),
        (annotated_job(Color), '{"args":["green"],"kwargs":{}}', "'value'"),
        (annotated_job(Address), '{"args":[{"street":"x"}],"kwargs":{}}', "'value'"),
        (annotated_job(dict), '{"args":[[1]],"kwargs":{}}', "expected dict, got list"),
        (
            SignatureJob,
            '{"args":[1,"a","2026-13-01"],"kwargs":{}}',
            "parameter 'dates' (item 0 of *dates)",
        ),
        (
            UnannotatedJob,
            '{"args":[{"__jobkit__":"matrix","value":[]}],"kwargs":{}}',
            "unknown '__jobkit__' tag",
        ),
        (
            UnannotatedJob,
            '{"args":[{"__jobkit__":"datetime","value":"noon"}],"kwargs":{}}',
            "parameter 'value' cannot be read",
        ),
        (
            UnannotatedJob,
            '{"args":[{"__jobkit__":"tuple","value":"ab"}],"kwargs":{}}',
            "expected a JSON array",
        ),
    ],
)
def test_loads_refuses_values_that_cannot_be_read(serializer, job_class, text, expected):
    with pytest.raises(ParameterError) as excinfo:
        serializer.loads(job_class, text)
    message = str(excinfo.value)
    assert job_class.__qualname__ in message
    assert "cannot be read as" in message
    assert expected in message
    assert "stored" not in message


def test_loads_of_a_type_without_hooks_says_so(serializer):
    with pytest.raises(ParameterError, match=r"no structure hook for .*Unknown"):
        serializer.loads(UnknownJob, '{"args":[{}],"kwargs":{}}')


# Outputs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ({"a": [1, 2.5, None, True]}, '{"a":[1,2.5,null,true]}'),
        ("é \U0001f600", '"\\u00e9 \\ud83d\\ude00"'),
        (
            [datetime.date(2026, 1, 31), decimal.Decimal("19.90"), ("x", 1)],
            '[{"__jobkit__":"date","value":"2026-01-31"},'
            '{"__jobkit__":"decimal","value":"19.90"},'
            '{"__jobkit__":"tuple","value":["x",1]}]',
        ),
        ({"__jobkit__": 1}, '{"__jobkit__":"dict","value":{"__jobkit__":1}}'),
    ],
)
def test_an_output_is_stored_in_the_tagged_form_and_read_back(serializer, value, text):
    assert serializer.dumps_output(Job, value) == text
    assert serializer.loads_output(text) == value
    assert serializer.loads_output(json.dumps(json.loads(text), indent=1)) == value


@dataclasses.dataclass
class Report:
    rows: int


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Report(3), "a value of type test_serializers.Report, which jobkit cannot store"),
        ({"when": {1, 2}}, "a value of type set at output['when']"),
        (float("inf"), "returned inf, which JSON cannot hold"),
        ([{"k": "\x00"}], r"the NUL character (\x00) at output[0]['k']"),
    ],
)
def test_an_output_that_cannot_be_stored_is_an_output_error(serializer, value, expected):
    with pytest.raises(OutputError) as excinfo:
        serializer.dumps_output(Job, value)
    message = str(excinfo.value)
    assert message.startswith("Job.run() returned ")
    assert expected in message
