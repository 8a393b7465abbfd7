"""The built-in JSON serializer: a job's ``__init__`` arguments to JSON text and back, through a
cattrs converter that plugins extend with ``jobkit_configure_converter``.

Each argument is converted by the annotation of its ``__init__`` parameter, so the worker gets
back exactly what the producer passed: ``converter.unstructure(value, unstructure_as=annotation)``
on the way in, ``converter.structure(data, annotation)`` on the way out. A parameter without an
annotation (or annotated ``Any`` / ``object``) holds JSON values as they are, and datetimes,
dates, times, UUIDs, Decimals and tuples in a tagged form that needs no annotation to read back::

    {"args":[42],"kwargs":{"when":{"__jobkit__":"datetime","value":"2026-01-01T00:00:00+02:00"}}}

A dict that has a ``"__jobkit__"`` key of its own is stored as ``{"__jobkit__": "dict", "value":
{...}}``. Anything else is refused at enqueue with a ``ParameterError`` that says how to fix it.

What ``run()`` returns (the job's output) is stored in the same tagged form, with no annotation
(``dumps_output``), and refused with an ``OutputError``.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import datetime
import decimal
import inspect
import json
import math
import typing
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import cattrs
import cattrs.preconf.json
import pluggy

from jobkit.errors import OutputError, ParameterError
from jobkit.hookspecs import hookimpl
from jobkit.settings import Settings

__all__ = ["TAG_KEY", "JsonSerializer", "jobkit_serializer"]

TAG_KEY = "__jobkit__"
"""The key that marks a tagged value in the JSON of an unannotated parameter."""


@hookimpl(trylast=True)
def jobkit_serializer(settings: Settings, pluginmanager: pluggy.PluginManager) -> JsonSerializer:
    """JSON through a cattrs converter: jobkit's hooks, then every plugin's."""
    converter = cattrs.preconf.json.make_converter()
    _register_builtin_hooks(converter)
    # Plugins go second: a hook registered later for the same type replaces jobkit's.
    pluginmanager.hook.jobkit_configure_converter(converter=converter)
    return JsonSerializer(converter)


class JsonSerializer:
    """The Serializer that stores ``{"args": [...], "kwargs": {...}}`` as compact JSON text,
    converting each value by its ``__init__`` parameter's annotation through ``converter``."""

    def __init__(self, converter: cattrs.Converter):
        self.converter = converter
        self._signatures: dict[type, _Signature] = {}

    def dumps(self, job_class: type, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
        signature = self._signatures.get(job_class) or self._inspect(job_class)
        problem = signature.binding_problem(len(args), kwargs)
        if problem is not None:
            raise _arguments_error(signature, args, kwargs, problem)
        stored_args = [
            _dump(signature, *signature.for_position(index), value)
            for index, value in enumerate(args)
        ]
        stored_kwargs = {
            name: _dump(signature, *signature.for_keyword(name), value)
            for name, value in kwargs.items()
        }
        try:
            text = _encode_json({"args": stored_args, "kwargs": stored_kwargs})
        except (TypeError, ValueError) as error:
            raise _unstorable_error(signature, stored_args, stored_kwargs, error) from None
        # json writes NUL as \u0000 and surrogates (lone, or a pair for a character past
        # U+FFFF) as \udXXX: only then can a string hold what PostgreSQL refuses.
        if "\\u0000" in text or "\\ud" in text:
            _check_storable_text(signature, stored_args, stored_kwargs)
        return text

    def loads(self, job_class: type, text: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
        signature = self._signatures.get(job_class) or self._inspect(job_class)
        stored_args, stored_kwargs = _parse_stored(signature, text)
        problem = signature.binding_problem(len(stored_args), stored_kwargs)
        if problem is not None:
            raise _parameters_error(signature, problem)
        args = tuple(
            _load(signature, *signature.for_position(index), data)
            for index, data in enumerate(stored_args)
        )
        kwargs = {
            name: _load(signature, *signature.for_keyword(name), data)
            for name, data in stored_kwargs.items()
        }
        return args, kwargs

    def dumps_output(self, job_class: type, value: Any) -> str:
        """``value`` in the tagged form of an unannotated parameter: a job's output is read
        back where its class may not be importable (``jobkit show``, a dashboard), so no
        annotation may be needed to read it."""
        data = _encode_free(value)
        try:
            text = _encode_json(data)
        except (TypeError, ValueError):
            raise _output_error(job_class, data) from None
        # As in dumps: only an escape can hide a string PostgreSQL refuses (an emoji is a
        # valid surrogate pair).
        if "\\u0000" in text or "\\ud" in text:
            found = _find_unstorable_text(data, "output")
            if found is not None:
                raise _output_text_error(job_class, *found)
        return text

    def loads_output(self, text: str) -> Any:
        return _decode_free(_decode_json(text))

    def _inspect(self, job_class: type) -> _Signature:
        signature = _Signature.of(job_class, self.converter)
        self._signatures[job_class] = signature
        return signature


# Per-class signatures ---------------------------------------------------------------------------

_POSITIONAL_ONLY = inspect.Parameter.POSITIONAL_ONLY
_NOT_POSITIONAL = 1 << 30
"""The ``position`` of a parameter that cannot be given by position."""


@dataclasses.dataclass(slots=True)
class _Parameter:
    """One parameter of a job's ``__init__``, with the functions that store and read its values
    (each element's, for ``*args`` and ``**kwargs``)."""

    name: str
    kind: inspect._ParameterKind
    position: int
    annotation: Any
    annotated: bool
    check: type | tuple[type, ...] | None
    """A cheap ``isinstance`` check of the value against the annotation, or None."""
    unstructure: Callable[[Any], Any]
    structure: Callable[[Any], Any]


@dataclasses.dataclass(slots=True)
class _Signature:
    """What ``dumps`` and ``loads`` need of a job's ``__init__``, worked out once per class."""

    job_class: type
    job_name: str
    signature: inspect.Signature
    positional: tuple[_Parameter, ...]
    keywords: dict[str, _Parameter]
    var_positional: _Parameter | None
    var_keyword: _Parameter | None
    required: tuple[_Parameter, ...]

    def binding_problem(self, count: int, keywords: Mapping[str, Any]) -> str | None:
        """Why ``count`` positional arguments and these keyword arguments do not fit
        ``__init__``, or None when they do."""
        if count > len(self.positional) and self.var_positional is None:
            return f"it has {count} positional arguments, and __init__ takes {len(self.positional)}"
        for name in keywords:
            parameter = self.keywords.get(name)
            if parameter is None:
                if self.var_keyword is None:
                    return f"it has a value for {name!r}, which is not a parameter of __init__"
            elif parameter.position < count:
                return f"it gives parameter {name!r} both by position and by name"
        for parameter in self.required:
            if parameter.position >= count and (
                parameter.name not in keywords or parameter.kind is _POSITIONAL_ONLY
            ):
                return f"it has no value for the required parameter {parameter.name!r}"
        return None

    def for_position(self, index: int) -> tuple[_Parameter, int | None]:
        """The parameter that takes positional argument ``index`` (of those that bind), and
        for ``*args`` which item it is."""
        if index < len(self.positional):
            return self.positional[index], None
        return typing.cast(_Parameter, self.var_positional), index - len(self.positional)

    def for_keyword(self, name: str) -> tuple[_Parameter, str | None]:
        """The parameter that takes keyword argument ``name`` (of those that bind), and for
        ``**kwargs`` which item it is."""
        parameter = self.keywords.get(name)
        if parameter is not None:
            return parameter, None
        return typing.cast(_Parameter, self.var_keyword), name

    @classmethod
    def of(cls, job_class: type, converter: cattrs.Converter) -> _Signature:
        job_name = job_class.__qualname__
        init = typing.cast(Any, job_class).__init__
        if init is object.__init__:
            # Job.__new__ lets object.__init__ accept anything; the job uses no parameters.
            signature = inspect.Signature([inspect.Parameter("self", _POSITIONAL_ONLY)])
            hints: dict[str, Any] = {}
        else:
            try:
                signature = inspect.signature(init)
            except (TypeError, ValueError) as error:
                raise ParameterError(
                    f"{job_name}.__init__ has no signature jobkit can read ({error}); define "
                    f"__init__ as a plain Python method"
                ) from error
            try:
                hints = typing.get_type_hints(init)
            except Exception as error:
                raise ParameterError(
                    f"{job_name}.__init__ has annotations that cannot be resolved ({error!r}); "
                    f"jobkit needs them to convert the parameters, so import the names they "
                    f"use at module level (not under TYPE_CHECKING) in {job_class.__module__}"
                ) from error
            # Errors show `user_id: int`, not the text `from __future__ import annotations` keeps.
            signature = signature.replace(
                parameters=[
                    parameter.replace(annotation=hints.get(parameter.name, parameter.annotation))
                    for parameter in signature.parameters.values()
                ],
                return_annotation=hints.get("return", signature.return_annotation),
            )
        parameters = list(signature.parameters.values())[1:]  # skip self
        positional: list[_Parameter] = []
        keywords: dict[str, _Parameter] = {}
        var_positional = var_keyword = None
        required: list[_Parameter] = []
        for parameter in parameters:
            kind = parameter.kind
            is_positional = kind in (_POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
            prepared = _prepare_parameter(
                job_name,
                parameter,
                hints.get(parameter.name, Any),
                len(positional) if is_positional else _NOT_POSITIONAL,
                converter,
            )
            if is_positional:
                positional.append(prepared)
            if kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY):
                keywords[parameter.name] = prepared
            if kind is inspect.Parameter.VAR_POSITIONAL:
                var_positional = prepared
            elif kind is inspect.Parameter.VAR_KEYWORD:
                var_keyword = prepared
            elif parameter.default is inspect.Parameter.empty:
                required.append(prepared)
        return cls(
            job_class=job_class,
            job_name=job_name,
            signature=signature,
            positional=tuple(positional),
            keywords=keywords,
            var_positional=var_positional,
            var_keyword=var_keyword,
            required=tuple(required),
        )


def _prepare_parameter(
    job_name: str,
    parameter: inspect.Parameter,
    annotation: Any,
    position: int,
    converter: cattrs.Converter,
) -> _Parameter:
    annotated = annotation is not Any and annotation is not object
    unstructure: Callable[[Any], Any]
    structure: Callable[[Any], Any]
    if not annotated:
        unstructure, structure = _encode_free, _decode_free
    else:
        try:
            unstructure = converter.get_unstructure_hook(annotation)
            structure_hook = converter.get_structure_hook(annotation)
        except Exception as error:
            # Fail when the parameter is used, not for every job of the class.
            unstructure, structure = _unsupported_annotation(
                job_name, parameter.name, annotation, error
            )
        else:

            def structure(data: Any) -> Any:
                return structure_hook(data, annotation)

    return _Parameter(
        name=parameter.name,
        kind=parameter.kind,
        position=position,
        annotation=annotation,
        annotated=annotated,
        check=_shallow_check(annotation) if annotated else None,
        unstructure=unstructure,
        structure=structure,
    )


def _unsupported_annotation(
    job_name: str, name: str, annotation: Any, error: Exception
) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    """Functions that refuse every value of a parameter whose annotation the converter cannot
    handle, saying which type needs hooks."""
    unknown = getattr(error, "type_", None) or annotation
    detail = "" if isinstance(error, cattrs.StructureHandlerNotFoundError) else f" ({error})"

    def unstructure(value: Any) -> Any:
        raise ParameterError(
            f"{job_name} parameter {name!r} has type {_name(type(value))}, which jobkit cannot "
            f"store as JSON: its annotation {_name(annotation)} cannot be read back{detail}. "
            + _converter_hint(unknown)
        )

    def structure(data: Any) -> Any:
        raise ParameterError(
            f"{job_name} parameter {name!r} cannot be read as {_name(annotation)}: jobkit's "
            f"converter has no structure hook for {_name(unknown)}{detail}; register one "
            f"through jobkit_configure_converter (docs/serialization.md)"
        )

    return unstructure, structure


def _shallow_check(annotation: Any) -> type | tuple[type, ...] | None:
    """The classes a value of ``annotation`` must be an instance of, when that is cheap to say:
    enough to catch ``user_id: int`` given a str at enqueue rather than in the worker."""
    if annotation is None or annotation is type(None):
        return type(None)
    if annotation is float:
        return (float, int)
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is _UnionType:
        checks = [_shallow_check(member) for member in typing.get_args(annotation)]
        if any(check is None for check in checks):
            return None
        flat: list[type] = []
        for check in checks:
            flat.extend(check if isinstance(check, tuple) else (check,))  # type: ignore[arg-type]
        return tuple(flat)
    candidate = origin if origin is not None else annotation
    if not isinstance(candidate, type):
        return None
    try:
        isinstance(None, candidate)
    except TypeError:  # a Protocol that is not runtime_checkable, for one
        return None
    return candidate


_UnionType = type(int | None)


# Converter hooks --------------------------------------------------------------------------------

_FREE_CONTAINERS: dict[Any, type] = {
    list: list,
    tuple: tuple,
    dict: dict,
    collections.abc.Sequence: collections.abc.Sequence,
    collections.abc.MutableSequence: collections.abc.MutableSequence,
    collections.abc.Mapping: collections.abc.Mapping,
    collections.abc.MutableMapping: collections.abc.MutableMapping,
}


def _free_container(annotation: Any) -> type | None:
    """The container class of ``list``, ``dict[str, Any]``, ``tuple[Any, ...]`` and the like,
    whose items are as free as an unannotated parameter's; None for other annotations."""
    origin = typing.get_origin(annotation) or annotation
    try:
        container = _FREE_CONTAINERS.get(origin)
    except TypeError:  # unhashable annotation
        return None
    if container is None:
        return None
    for argument in typing.get_args(annotation):
        is_key = argument is str and issubclass(container, collections.abc.Mapping)
        if not (argument is Any or argument is object or argument is Ellipsis or is_key):
            return None
    return container


def _is_free(annotation: Any) -> bool:
    return annotation is Any or annotation is object or _free_container(annotation) is not None


def _free_structure_hook(annotation: Any) -> Callable[[Any, Any], Any]:
    container = _free_container(annotation)

    def structure(data: Any, _: Any) -> Any:
        value = _decode_free(data)
        if container is not None and not isinstance(value, container):
            raise ValueError(f"expected {_name(container)}, got {_name(type(value))}")
        return value

    return structure


def _structure_decimal(data: Any, _: Any) -> decimal.Decimal:
    if isinstance(data, float):
        data = repr(data)
    elif not isinstance(data, str | int):
        raise ValueError(f"expected a decimal string, got {_name(type(data))}")
    try:
        return decimal.Decimal(data)
    except decimal.InvalidOperation:
        raise ValueError(f"{data!r} is not a decimal number") from None


def _register_builtin_hooks(converter: cattrs.Converter) -> None:
    """jobkit's own hooks, on top of cattrs's JSON preset (datetime and date as ISO strings,
    bytes as base85, enums by value, attrs classes and dataclasses as dicts)."""
    converter.register_unstructure_hook(datetime.time, datetime.time.isoformat)
    converter.register_structure_hook(
        datetime.time, lambda data, _: datetime.time.fromisoformat(data)
    )
    converter.register_unstructure_hook(uuid.UUID, str)
    converter.register_structure_hook(uuid.UUID, lambda data, _: uuid.UUID(data))
    converter.register_unstructure_hook(decimal.Decimal, str)
    converter.register_structure_hook(decimal.Decimal, _structure_decimal)
    # Any, object, bare list/dict/tuple and their Any-item forms, at any depth (an attrs field
    # annotated ``dict[str, Any]``, say), use the same tagged form as unannotated parameters.
    converter.register_unstructure_hook_func(_is_free, _encode_free)
    converter.register_structure_hook_factory(_is_free, _free_structure_hook)
    # cattrs would call the type on any value (bool("false") is True, int(5.7) is 5): a stored
    # value of the wrong JSON type means the job changed, and must not run on a guess.
    converter.register_structure_hook(bool, _exactly(bool))
    converter.register_structure_hook(int, _exactly(int))
    converter.register_structure_hook(float, _exactly(int, float))
    converter.register_structure_hook(str, _exactly(str))


def _exactly(*accepted: type) -> Callable[[Any, Any], Any]:
    def structure(data: Any, cls: Any) -> Any:
        if type(data) not in accepted:
            raise ValueError(f"expected {cls.__name__}, got {type(data).__name__} {data!r}")
        return cls(data)

    return structure


# The tagged form of unannotated values ----------------------------------------------------------


class _Unstorable:
    """Put in place of a value the tagged form cannot hold; ``json`` then refuses it, and the
    error path finds it to say where it was."""

    __slots__ = ("reason", "value")

    def __init__(self, value: Any, reason: str = ""):
        self.value = value
        self.reason = reason


_JSON_SCALARS = frozenset({str, int, bool, float, type(None)})
_TAGGED: dict[type, tuple[str, Callable[[Any], Any]]] = {
    datetime.datetime: ("datetime", datetime.datetime.isoformat),
    datetime.date: ("date", datetime.date.isoformat),
    datetime.time: ("time", datetime.time.isoformat),
    uuid.UUID: ("uuid", str),
    decimal.Decimal: ("decimal", str),
    tuple: ("tuple", lambda value: [_encode_free(item) for item in value]),
}


def _encode_free(value: Any) -> Any:
    """``value`` as JSON data, with the types JSON lacks tagged; exact types only, so a str
    enum or a NamedTuple is refused rather than read back as a plain str or tuple."""
    cls = type(value)
    if cls in _JSON_SCALARS:
        return value
    if cls is list:
        return [_encode_free(item) for item in value]
    if cls is dict:
        encoded = {}
        for key, item in value.items():
            if type(key) is not str:
                return _Unstorable(value, f"a dict with a key of type {_name(type(key))}")
            encoded[key] = _encode_free(item)
        if TAG_KEY in encoded:
            return {TAG_KEY: "dict", "value": encoded}
        return encoded
    tagged = _TAGGED.get(cls)
    if tagged is None:
        return _Unstorable(value)
    return {TAG_KEY: tagged[0], "value": tagged[1](value)}


_UNTAGGED: dict[str, Callable[[Any], Any]] = {
    "datetime": datetime.datetime.fromisoformat,
    "date": datetime.date.fromisoformat,
    "time": datetime.time.fromisoformat,
    "uuid": uuid.UUID,
    "decimal": lambda data: _structure_decimal(data, decimal.Decimal),
    "tuple": lambda data: tuple(_decode_free(item) for item in _expect(list, data)),
    "dict": lambda data: {key: _decode_free(item) for key, item in _expect(dict, data).items()},
}


def _expect(cls: type, data: Any) -> Any:
    if type(data) is not cls:
        raise ValueError(f"expected a JSON {'array' if cls is list else 'object'}, got {data!r}")
    return data


def _decode_free(data: Any) -> Any:
    cls = type(data)
    if cls is list:
        return [_decode_free(item) for item in data]
    if cls is dict:
        if TAG_KEY not in data:
            return {key: _decode_free(item) for key, item in data.items()}
        tag = data[TAG_KEY]
        untag = _UNTAGGED.get(tag) if isinstance(tag, str) else None
        if untag is None or "value" not in data:
            raise ValueError(
                f"{data!r} has an unknown {TAG_KEY!r} tag; it was written by another version "
                f"of jobkit"
            )
        return untag(data["value"])
    return data


# Steps of dumps and loads -----------------------------------------------------------------------

_encode_json = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_decode_json = json.JSONDecoder(parse_constant=_reject_constant).decode


def _dump(signature: _Signature, parameter: _Parameter, item: int | str | None, value: Any) -> Any:
    check = parameter.check
    if check is not None and not isinstance(value, check):
        expected = _name(parameter.annotation)
        raise ParameterError(
            f"{signature.job_name} {_describe(parameter, item)} is annotated {expected} but was "
            f"given {_name(type(value))} ({_short_repr(value)}); pass a value of that type or "
            f"change the annotation in {signature.job_name}.__init__"
        )
    try:
        return parameter.unstructure(value)
    except ParameterError:
        raise
    except Exception as error:
        raise ParameterError(
            f"{signature.job_name} {_describe(parameter, item)} has type {_name(type(value))}, "
            f"which jobkit's converter failed to convert as {_name(parameter.annotation)}: "
            f"{error!r}; check the hooks registered for it through jobkit_configure_converter"
        ) from error


def _load(signature: _Signature, parameter: _Parameter, item: int | str | None, data: Any) -> Any:
    try:
        return parameter.structure(data)
    except ParameterError:
        raise
    except Exception as error:
        if isinstance(error, cattrs.BaseValidationError):
            problem = "; ".join(cattrs.transform_error(error, path=_path(parameter, item)))
        else:
            problem = str(error) or repr(error)
        expected = _name(parameter.annotation) if parameter.annotated else "a JSON value"
        raise ParameterError(
            f"{signature.job_name} {_describe(parameter, item)} cannot be read as {expected} "
            f"from {_short_repr(data)}: {problem}"
        ) from error


def _parse_stored(signature: _Signature, text: str) -> tuple[list[Any], dict[str, Any]]:
    try:
        stored = _decode_json(text)
    except (TypeError, ValueError) as error:
        raise ParameterError(
            f"{signature.job_name} parameters are not valid JSON ({error}): {_short_repr(text)}"
        ) from error
    if type(stored) is dict and stored.keys() <= {"args", "kwargs"}:
        stored_args = stored.get("args", [])
        stored_kwargs = stored.get("kwargs", {})
        if type(stored_args) is list and type(stored_kwargs) is dict:
            return stored_args, stored_kwargs
    raise ParameterError(
        f"{signature.job_name} parameters are not in jobkit's stored form "
        f'{{"args": [...], "kwargs": {{...}}}}: {_short_repr(text)}'
    )


# Error messages ---------------------------------------------------------------------------------


def _arguments_error(
    signature: _Signature, args: tuple[Any, ...], kwargs: Mapping[str, Any], problem: str
) -> ParameterError:
    try:  # Python's own words for it, when it has them
        signature.signature.bind(None, *args, **kwargs)
    except TypeError as error:
        problem = str(error)
    return ParameterError(
        f"{signature.job_name} was given arguments that do not fit "
        f"{signature.job_name}.__init__{signature.signature}: {problem}; make the job with the "
        f"arguments its __init__ takes"
    )


def _parameters_error(signature: _Signature, problem: str) -> ParameterError:
    """The error of ``loads`` for parameters that do not fit ``__init__``. Whoever gave them
    (a worker reading a stored request, ``jobkit enqueue --kwargs``) says where they came from."""
    return ParameterError(
        f"{signature.job_name} cannot be made from these parameters: {problem}; "
        f"{signature.job_name}.__init__ is {signature.signature}"
    )


def _unstorable_error(
    signature: _Signature,
    stored_args: list[Any],
    stored_kwargs: dict[str, Any],
    error: Exception,
) -> ParameterError:
    """The ParameterError for the value ``json`` refused, found by walking the stored data."""
    for parameter, item, data in _places(signature, stored_args, stored_kwargs):
        root = _path(parameter, item)
        found = _find_unstorable(data, root)
        if found is None:
            continue
        path, value, reason = found
        where = "" if path == root else f" at {path}"
        subject = f"{signature.job_name} {_describe(parameter, item)}"
        if isinstance(value, float):
            return ParameterError(
                f"{subject} is {value!r}{where}, which JSON cannot hold; pass a finite number "
                f"or None"
            )
        if reason is None:  # left as it was by a converter hook that does not know the type
            what = f"type {_name(type(value))}" if not where else f"a {_name(type(value))}{where}"
            return ParameterError(
                f"{subject} has {what}, which jobkit cannot store as JSON: "
                + _converter_hint(type(value))
            )
        # The tagged form refused it: it sits where no annotation says what it is.
        if reason:
            what = f"{reason}{where}"
        else:
            what = f"type {_name(type(value))}" if not where else f"a {_name(type(value))}{where}"
        if type(value) is object:
            return ParameterError(
                f"{subject} has {what}: a bare object() holds no data to store, under any "
                f"annotation (annotated object, a parameter holds JSON values); pass the values "
                f"the job needs instead (see docs/serialization.md)"
            )
        if isinstance(value, dict):  # with a key that is not a string
            return ParameterError(
                f"{subject} has {what}, which jobkit cannot store as JSON: the keys of a JSON "
                f"object are strings, whatever the annotation; convert the keys to str, or pass "
                f"a list of [key, value] pairs (see docs/serialization.md)"
            )
        if not parameter.annotated:
            fix = f"Annotate the parameter in {signature.job_name}.__init__ with its type"
            if not where:
                fix += f" ({parameter.name}: {type(value).__qualname__})"
        else:
            fix = (
                f"It sits where the annotation {_name(parameter.annotation)} allows any value "
                f"(Any, object, or a bare list, dict or tuple); annotate that place with the "
                f"value's type"
            )
        return ParameterError(
            f"{subject} has {what}, which jobkit cannot store as JSON without an annotation. "
            f"Where no annotation says what a value is, jobkit stores JSON values (None, bool, "
            f"int, float, str, lists, dicts with str keys) and datetime, date, time, UUID, "
            f"Decimal and tuple values. {fix}: attrs classes, dataclasses and enums are then "
            f"converted by jobkit, other types by converter hooks from a plugin "
            f"(jobkit_configure_converter, see docs/serialization.md)"
        )
    return ParameterError(f"{signature.job_name} parameters cannot be stored as JSON: {error}")


_OUTPUT_HOLDS = (
    "An output holds JSON values (None, bool, int, finite float, str, lists, dicts with str "
    "keys) and datetime, date, time, UUID, Decimal and tuple values"
)


def _output_error(job_class: type, data: Any) -> OutputError:
    """The OutputError for the part of an output ``json`` refused, found by walking it."""
    subject = f"{job_class.__qualname__}.run() returned"
    found = _find_unstorable(data, "output")
    if found is None:
        return OutputError(f"{subject} a value jobkit cannot store as JSON. {_OUTPUT_HOLDS}")
    path, value, reason = found
    where = "" if path == "output" else f" at {path}"
    if isinstance(value, float):
        what = f"{value!r}{where}, which JSON cannot hold"
    else:
        what = reason + where if reason else f"a value of type {_name(type(value))}{where}"
        what += ", which jobkit cannot store as its output"
    return OutputError(
        f"{subject} {what}. {_OUTPUT_HOLDS}: return those (an id, or dataclasses.asdict() of "
        f"an object, say), or None to store nothing (docs/serialization.md#job-outputs)"
    )


def _output_text_error(job_class: type, path: str, text: str) -> OutputError:
    where = "" if path == "output" else f" at {path}"
    problem = (
        "the NUL character (\\x00)"
        if "\x00" in text
        else "text that is not valid Unicode (a surrogate)"
    )
    return OutputError(
        f"{job_class.__qualname__}.run() returned {problem}{where}, which PostgreSQL cannot "
        f"store in JSON; encode it (base64, say) before returning it"
    )


def _check_storable_text(
    signature: _Signature, stored_args: list[Any], stored_kwargs: dict[str, Any]
) -> None:
    """Raise a ParameterError naming the parameter, and the place in it, of the first string
    PostgreSQL cannot hold: one with NUL, or one that is not valid Unicode (a surrogate)."""
    for parameter, item, data in _places(signature, stored_args, stored_kwargs):
        root = _path(parameter, item)
        found = _find_unstorable_text(data, root)
        if found is None:
            continue
        path, text = found
        where = "" if path == root else f" at {path}"
        subject = f"{signature.job_name} {_describe(parameter, item)}"
        if "\x00" in text:
            raise ParameterError(
                f"{subject} contains the NUL character (\\x00){where}, which PostgreSQL cannot "
                f"store in text or JSON; encode it (e.g. as bytes, base64 or a list of code "
                f"points) before enqueueing"
            )
        surrogate = next(char for char in text if "\ud800" <= char <= "\udfff")
        raise ParameterError(
            f"{subject} contains text that is not valid Unicode{where}: the surrogate "
            f"{surrogate!r} (os.fsdecode makes those of bytes that are not UTF-8), which "
            f"PostgreSQL cannot store; repair it before enqueueing (e.g. "
            f"text.encode('utf-8', 'surrogateescape').decode('utf-8', 'replace')), or pass the "
            f"original bytes base64-encoded"
        )


def _places(
    signature: _Signature, stored_args: list[Any], stored_kwargs: dict[str, Any]
) -> list[tuple[_Parameter, int | str | None, Any]]:
    """Each stored value with its parameter (and its item of ``*args`` or ``**kwargs``)."""
    places: list[tuple[_Parameter, int | str | None, Any]] = [
        (*signature.for_position(index), data) for index, data in enumerate(stored_args)
    ]
    places += [(*signature.for_keyword(name), data) for name, data in stored_kwargs.items()]
    return places


def _find_unstorable_text(data: Any, path: str) -> tuple[str, str] | None:
    """The path and text of the first string (or dict key) in ``data`` that holds NUL or a
    surrogate."""
    if isinstance(data, str):
        return None if _storable(data) else (path, data)
    if isinstance(data, dict):
        for key, item in data.items():
            if isinstance(key, str) and not _storable(key):
                return f"{path} (a key)", key
            found = _find_unstorable_text(item, f"{path}[{key!r}]")
            if found is not None:
                return found
    elif isinstance(data, list | tuple):
        for index, item in enumerate(data):
            found = _find_unstorable_text(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def _storable(text: str) -> bool:
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _find_unstorable(data: Any, path: str) -> tuple[str, Any, str | None] | None:
    """The path, value and reason of the first thing in ``data`` that JSON cannot hold; the
    reason is None for a value a converter hook left as it was, and "" or a description for
    one the tagged form refused."""
    if isinstance(data, _Unstorable):
        return path, data.value, data.reason
    if isinstance(data, float):
        return None if math.isfinite(data) else (path, data, None)
    if data is None or isinstance(data, str | int):
        return None
    if isinstance(data, dict):
        if data.get(TAG_KEY) in ("dict", "tuple") and "value" in data:
            return _find_unstorable(data["value"], path)
        for key, item in data.items():
            if key is not None and not isinstance(key, str | int | float):
                return path, data, f"a dict with a key of type {_name(type(key))}"
            found = _find_unstorable(item, f"{path}[{key!r}]")
            if found is not None:
                return found
        return None
    if isinstance(data, list | tuple):
        for index, item in enumerate(data):
            found = _find_unstorable(item, f"{path}[{index}]")
            if found is not None:
                return found
        return None
    return path, data, None


def _converter_hint(cls: Any) -> str:
    name = cls.__qualname__ if isinstance(cls, type) else "YourType"
    return (
        f"jobkit's converter has no hooks for {_name(cls)}. Register them in a plugin:\n\n"
        f"    @hookimpl  # from jobkit.hookspecs import hookimpl\n"
        f"    def jobkit_configure_converter(converter):\n"
        f"        converter.register_unstructure_hook({name}, lambda value: ...)  # to JSON\n"
        f"        converter.register_structure_hook({name}, lambda data, cls: ...)  # and back\n\n"
        f"or pass something JSON can hold (an id, say) and load the object in run(); see "
        f"docs/serialization.md"
    )


def _describe(parameter: _Parameter, item: int | str | None) -> str:
    """``parameter 'user'``; for an element of ``*args`` or ``**kwargs``, which one."""
    if item is None:
        return f"parameter {parameter.name!r}"
    stars = "*" if isinstance(item, int) else "**"
    return f"parameter {parameter.name!r} (item {item!r} of {stars}{parameter.name})"


def _path(parameter: _Parameter, item: int | str | None) -> str:
    return parameter.name if item is None else f"{parameter.name}[{item!r}]"


def _name(annotation: Any) -> str:
    if isinstance(annotation, type) and typing.get_origin(annotation) is None:
        if annotation.__module__ == "builtins":
            return annotation.__qualname__
        return f"{annotation.__module__}.{annotation.__qualname__}"
    return str(annotation).replace("typing.", "")


def _short_repr(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
