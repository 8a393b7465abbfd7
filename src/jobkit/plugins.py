"""The plugin manager: built-ins, entry points, the ``plugins`` setting, blocked plugins.

The manager comes from ``create_plugin_manager(settings)``, never from a module global, so a
worker's pool children rebuild exactly the same one from the settings they are given.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import inspect
import logging
import os
import re
from collections.abc import Generator, Iterator
from typing import Any, cast

import attrs
import pluggy

from jobkit import hookspecs
from jobkit.errors import PluginError
from jobkit.settings import Settings

logger = logging.getLogger("jobkit.plugins")

ENTRY_POINT_GROUP = "jobkit"

BUILTIN_PLUGINS = (
    "jobkit.builtin.postgres",
    "jobkit.builtin.serializers",
    "jobkit.builtin.locks",
    "jobkit.builtin.embedded",
    "jobkit.builtin.cron",
    "jobkit.builtin.logcontext",
    "jobkit.builtin.otel",
)
"""The built-in plugins, registered by name like any other; each can be blocked."""

CORE_PLUGIN = "jobkit.core"
"""The name the kernel's own hook implementations (enqueue, run) are registered under."""


class JobkitPluginManager(pluggy.PluginManager):
    """pluggy's manager, remembering the distribution each entry-point plugin came from, and
    the plugins that failed to load when it was made to list them (``keep_broken``)."""

    def __init__(self) -> None:
        super().__init__("jobkit")
        self.distributions: dict[str, importlib.metadata.Distribution] = {}
        self.broken: dict[str, str] = {}
        """Plugin name -> why it could not be registered."""


def create_plugin_manager(
    settings: Settings, *, load_entrypoints: bool = True, keep_broken: bool = False
) -> pluggy.PluginManager:
    """Make the plugin manager for ``settings``.

    Order: block ``disable_plugins``; register ``BUILTIN_PLUGINS``; load the ``jobkit``
    entry-point group (unless ``load_entrypoints`` is false or ``JOBKIT_DISABLE_PLUGIN_AUTOLOAD``
    is set); register the ``plugins`` setting; check every implementation has a spec.

    A plugin that cannot be imported, does not fit its hooks or implements an unknown hook is a
    ``PluginError`` naming it, so no process runs without a plugin it was configured with. With
    ``keep_broken`` (``jobkit plugins``, which must list what is wrong) it is left out instead
    and its error kept in ``pm.broken``.
    """
    pm = JobkitPluginManager()
    pm.add_hookspecs(hookspecs)
    installed = _entry_points()
    entry_points = installed if _autoload(load_entrypoints) else []
    # Block against every installed entry point, loaded or not, so disable_plugins means the
    # same with JOBKIT_DISABLE_PLUGIN_AUTOLOAD=1.
    _block(pm, settings, installed)

    def loading(name: str) -> contextlib.AbstractContextManager[None]:
        return _kept_broken(pm, name) if keep_broken else contextlib.nullcontext()

    for name in BUILTIN_PLUGINS:
        if not pm.is_blocked(name):
            pm.register(importlib.import_module(name), name)
    for entry_point in entry_points:
        name = entry_point.name
        if pm.is_blocked(name) or pm.has_plugin(name) or name in pm.broken:
            continue
        if entry_point.dist is not None:
            pm.distributions[name] = entry_point.dist
        with loading(name):
            _register(pm, _load_entry_point(entry_point), name, _distribution_label(entry_point))
    for dotted in settings.plugins:
        if pm.is_blocked(dotted) or pm.has_plugin(dotted):
            continue
        with loading(dotted):
            plugin = _import_plugin(dotted)
            if not pm.is_registered(plugin):  # a built-in or an entry point, listed again
                _register(pm, plugin, dotted, "the plugins setting")

    pm.hook.jobkit_add_hookspecs.call_historic(kwargs={"pluginmanager": pm})
    while True:
        try:
            pm.check_pending()
            return pm
        except pluggy.PluginValidationError as error:
            name = pm.get_name(error.plugin) or repr(error.plugin)
            with loading(name):
                raise PluginError(
                    f"plugin {name!r} implements an unknown hook: {error}; check the name "
                    f"against jobkit's hooks (docs/hooks.md), or upgrade jobkit if the plugin "
                    f"needs a newer one"
                ) from error
            pm.unregister(error.plugin)


@contextlib.contextmanager
def _kept_broken(pm: JobkitPluginManager, name: str) -> Iterator[None]:
    """Keep the ``PluginError`` of the plugin ``name`` in ``pm.broken`` instead of raising it."""
    try:
        yield
    except PluginError as error:
        pm.broken[name] = str(error)


def _load_entry_point(entry_point: importlib.metadata.EntryPoint) -> Any:
    try:
        return entry_point.load()
    except Exception as error:
        raise PluginError(
            f"plugin {entry_point.name!r} from {_distribution_label(entry_point)} failed to "
            f"load ({entry_point.value}): {error!r}; uninstall it or add it to disable_plugins"
        ) from error


def _register(pm: pluggy.PluginManager, plugin: Any, name: str, origin: str) -> None:
    try:
        pm.register(plugin, name)
    except pluggy.PluginValidationError as error:
        raise PluginError(
            f"plugin {name!r} (from {origin}) does not fit its hooks: {error}"
        ) from error


def _autoload(load_entrypoints: bool) -> bool:
    return load_entrypoints and os.environ.get("JOBKIT_DISABLE_PLUGIN_AUTOLOAD", "") in ("", "0")


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    return sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _block(
    pm: pluggy.PluginManager,
    settings: Settings,
    entry_points: list[importlib.metadata.EntryPoint],
) -> None:
    """Block plugins by plugin name, or by distribution name (every entry point it ships)."""
    by_distribution: dict[str, list[str]] = {}
    for entry_point in entry_points:
        if entry_point.dist is not None:
            by_distribution.setdefault(_normalize(entry_point.dist.name), []).append(
                entry_point.name
            )
    known = {*BUILTIN_PLUGINS, *settings.plugins, *(ep.name for ep in entry_points)}
    for name in settings.disable_plugins:
        if name == CORE_PLUGIN:
            raise PluginError(
                f"{CORE_PLUGIN} is the kernel and cannot be disabled; wrap its hooks instead"
            )
        if _normalize(name) in by_distribution:
            for plugin_name in by_distribution[_normalize(name)]:
                pm.set_blocked(plugin_name)
        elif name in known:
            pm.set_blocked(name)
        else:
            raise PluginError(
                f"setting disable_plugins names {name!r}, which is not an installed plugin; "
                f"known plugins: {', '.join(sorted(known))}"
            )


def _import_plugin(dotted: str) -> Any:
    module_name, _, attribute = dotted.partition(":")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, attribute) if attribute else module
    except Exception as error:
        raise PluginError(
            f"setting plugins names {dotted!r}, which cannot be imported: {error}"
        ) from error


def _distribution_label(entry_point: importlib.metadata.EntryPoint) -> str:
    dist = entry_point.dist
    return f"{dist.name} {dist.version}" if dist is not None else "an unknown distribution"


# Events -----------------------------------------------------------------------------------------


def notify(hook: pluggy.HookCaller, **kwargs: Any) -> None:
    """Call an event hook's implementations one by one, logging and swallowing each failure, so
    a broken plugin can never stop the others or lose a result row."""
    for impl in reversed(hook.get_hookimpls()):
        try:
            impl.function(*[kwargs[name] for name in impl.argnames])
        except Exception:
            logger.exception("plugin %r failed in %s", impl.plugin_name, hook.name)


# Actions around awaited work -------------------------------------------------------------------


async def call_awaiting(hook: pluggy.HookCaller, **kwargs: Any) -> Any:
    """Call a firstresult action hook as pluggy does, but await an implementation's answer when
    it is awaitable, between its wrappers' halves: each wrapper runs up to its ``yield``, the
    answer is awaited, and the wrappers get it (or its exception) back, innermost first. All of
    it runs in the calling task, so a wrapper's context variables (log context, the current
    span) hold for the awaited work and for it alone. Old-style ``hookwrapper=True`` wrappers
    get a ``pluggy.Result`` as from pluggy."""
    teardowns: list[tuple[Any, Any]] = []
    result: Any = None
    exception: BaseException | None = None
    try:
        for impl in reversed(hook.get_hookimpls()):
            args = [kwargs[name] for name in impl.argnames]
            if impl.wrapper or impl.hookwrapper:
                wrapper = cast(Generator[None, Any, Any], impl.function(*args))
                next(wrapper)
                teardowns.append((impl, wrapper))
                continue
            answer = impl.function(*args)
            if inspect.isawaitable(answer):
                answer = await answer
            if answer is not None:
                result = answer
                break
    except BaseException as error:
        exception = error
    for impl, wrapper in reversed(teardowns):
        if impl.hookwrapper:
            outcome = pluggy.Result(result, exception)
            with contextlib.suppress(StopIteration):
                wrapper.send(outcome)
            exception = outcome.exception
            result = None if exception is not None else outcome.get_result()
            continue
        try:
            if exception is not None:
                wrapper.throw(exception)
            else:
                wrapper.send(result)
            raise PluginError(f"plugin {impl.plugin_name!r}: its {hook.name} wrapper yielded twice")
        except StopIteration as stop:
            result, exception = stop.value, None
        except BaseException as error:
            result, exception = None, error
    if exception is not None:
        raise exception
    return result


# Contributions ----------------------------------------------------------------------------------


def contributions(hook: pluggy.HookCaller, **kwargs: Any) -> list[tuple[str, Any]]:
    """Call a contribution hook's implementations in the order pluggy calls them, and return
    each answer that is not None with the name of the plugin that gave it, so an error about an
    answer can say where it came from."""
    answers = []
    for impl in reversed(hook.get_hookimpls()):
        answer = impl.function(*[kwargs[name] for name in impl.argnames])
        if answer is not None:
            answers.append((impl.plugin_name, answer))
    return answers


# Listing ----------------------------------------------------------------------------------------


@attrs.frozen
class PluginInfo:
    """One plugin as ``jobkit plugins`` shows it."""

    name: str
    source: str
    """``builtin``, ``core``, ``entry point`` or ``setting``."""
    distribution: str | None
    version: str | None
    hooks: list[str]
    blocked: bool = False
    precedence: dict[str, str] = attrs.field(factory=dict)
    """For each of its hooks where its place among the plugins matters, that place: ``wrapper``,
    ``tryfirst``, ``trylast``, and on a firstresult hook that other plugins answer too, ``asked
    first: wins unless it answers None`` or ``asked only if <plugins> answer None``."""
    broken: str | None = None
    """Why the plugin could not be loaded; it implements nothing until that is fixed."""


def describe_plugins(
    pm: pluggy.PluginManager, settings: Settings, hook: str | None = None
) -> list[PluginInfo]:
    """Every registered, blocked and broken plugin, with where it came from and the hooks it
    implements. With ``hook``, only the plugins that implement it, in the order pluggy calls
    them, then the broken ones (they may implement it: they could not be loaded to tell)."""
    distributions = getattr(pm, "distributions", {})
    infos = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            infos.append(PluginInfo(name, _source(name, settings), None, None, [], blocked=True))
            continue
        callers = pm.get_hookcallers(plugin) or []
        places = {caller.name: _precedence(caller, plugin) for caller in callers}
        infos.append(
            _described(
                name,
                settings,
                distributions.get(name),
                hooks=sorted(places),
                precedence={hook_name: place for hook_name, place in places.items() if place},
            )
        )
    for name, error in getattr(pm, "broken", {}).items():
        infos.append(_described(name, settings, distributions.get(name), broken=error))
    infos.sort(key=lambda info: (info.source != "core", info.source != "builtin", info.name))
    if hook is None:
        return infos
    called = [impl.plugin_name for impl in reversed(getattr(pm.hook, hook).get_hookimpls())]
    implementing = sorted(
        (info for info in infos if info.name in called), key=lambda info: called.index(info.name)
    )
    return implementing + [info for info in infos if info.broken is not None]


def _described(
    name: str,
    settings: Settings,
    dist: importlib.metadata.Distribution | None,
    *,
    hooks: list[str] | None = None,
    precedence: dict[str, str] | None = None,
    broken: str | None = None,
) -> PluginInfo:
    return PluginInfo(
        name=name,
        source=_source(name, settings, from_entry_point=dist is not None),
        distribution=dist.name if dist is not None else None,
        version=dist.version if dist is not None else None,
        hooks=hooks or [],
        precedence=precedence or {},
        broken=broken,
    )


def _precedence(caller: pluggy.HookCaller, plugin: object) -> str:
    """Where ``plugin``'s implementation stands among the hook's (``PluginInfo.precedence``).

    pluggy calls wrappers first, outermost first; then the other implementations: ``tryfirst``
    ones, plain ones, ``trylast`` ones, and within each group the plugin registered last
    first. A firstresult hook stops at the first answer that is not None.
    """
    called = list(reversed(caller.get_hookimpls()))
    [impl] = [candidate for candidate in called if candidate.plugin is plugin]
    marks = {
        "wrapper": impl.wrapper or impl.hookwrapper,
        "tryfirst": impl.tryfirst,
        "trylast": impl.trylast,
    }
    place = [mark for mark, applies in marks.items() if applies]
    answering = [
        candidate for candidate in called if not (candidate.wrapper or candidate.hookwrapper)
    ]
    firstresult = caller.spec is not None and caller.spec.opts.get("firstresult", False)
    if firstresult and impl in answering and len(answering) > 1:
        before = [candidate.plugin_name for candidate in answering[: answering.index(impl)]]
        if before:
            verb = "answers" if len(before) == 1 else "answer"
            place.append(f"asked only if {', '.join(before)} {verb} None")
        else:
            place.append("asked first: wins unless it answers None")
    return ", ".join(place)


def _source(name: str, settings: Settings, *, from_entry_point: bool = False) -> str:
    if name == CORE_PLUGIN:
        return "core"
    if name in BUILTIN_PLUGINS:
        return "builtin"
    if from_entry_point:
        return "entry point"
    if name in settings.plugins:
        return "setting"
    return "entry point"
