"""The plugin manager: built-ins, entry points, the ``plugins`` setting, blocked plugins.

The manager comes from ``create_plugin_manager(settings)``, never from a module global, so a
worker's pool children rebuild exactly the same one from the settings they are given.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import os
import re
from typing import Any

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
    """pluggy's manager, remembering the distribution each entry-point plugin came from."""

    def __init__(self) -> None:
        super().__init__("jobkit")
        self.distributions: dict[str, importlib.metadata.Distribution] = {}


def create_plugin_manager(
    settings: Settings, *, load_entrypoints: bool = True
) -> pluggy.PluginManager:
    """Make the plugin manager for ``settings``.

    Order: block ``disable_plugins``; register ``BUILTIN_PLUGINS``; load the ``jobkit``
    entry-point group (unless ``load_entrypoints`` is false or ``JOBKIT_DISABLE_PLUGIN_AUTOLOAD``
    is set); register the ``plugins`` setting; check every implementation has a spec.
    """
    pm = JobkitPluginManager()
    pm.add_hookspecs(hookspecs)
    installed = _entry_points()
    entry_points = installed if _autoload(load_entrypoints) else []
    # Block against every installed entry point, loaded or not, so disable_plugins means the
    # same with JOBKIT_DISABLE_PLUGIN_AUTOLOAD=1.
    _block(pm, settings, installed)

    for name in BUILTIN_PLUGINS:
        if not pm.is_blocked(name):
            pm.register(importlib.import_module(name), name)
    for entry_point in entry_points:
        if pm.is_blocked(entry_point.name) or pm.has_plugin(entry_point.name):
            continue
        try:
            plugin = entry_point.load()
        except Exception as error:
            raise PluginError(
                f"plugin {entry_point.name!r} from {_distribution_label(entry_point)} failed to "
                f"load ({entry_point.value}): {error!r}; uninstall it or add it to "
                f"disable_plugins"
            ) from error
        _register(pm, plugin, entry_point.name, f"from {_distribution_label(entry_point)}")
        if entry_point.dist is not None:
            pm.distributions[entry_point.name] = entry_point.dist
    for dotted in settings.plugins:
        if pm.is_blocked(dotted) or pm.has_plugin(dotted):
            continue
        plugin = _import_plugin(dotted)
        if not pm.is_registered(plugin):  # a built-in or an entry point, listed again
            _register(pm, plugin, dotted, "from the plugins setting")

    pm.hook.jobkit_add_hookspecs.call_historic(kwargs={"pluginmanager": pm})
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as error:
        raise PluginError(f"plugin {error.plugin!r} implements an unknown hook: {error}") from error
    return pm


def _register(pm: pluggy.PluginManager, plugin: Any, name: str, origin: str) -> None:
    try:
        pm.register(plugin, name)
    except pluggy.PluginValidationError as error:
        raise PluginError(f"plugin {name!r} ({origin}) does not fit its hooks: {error}") from error


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


def describe_plugins(pm: pluggy.PluginManager, settings: Settings) -> list[PluginInfo]:
    """Every registered and blocked plugin, with where it came from and the hooks it implements."""
    distributions = getattr(pm, "distributions", {})
    infos = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            infos.append(PluginInfo(name, _source(name, settings), None, None, [], blocked=True))
            continue
        dist = distributions.get(name)
        hooks = sorted(caller.name for caller in pm.get_hookcallers(plugin) or [])
        infos.append(
            PluginInfo(
                name=name,
                source=_source(name, settings, from_entry_point=dist is not None),
                distribution=dist.name if dist is not None else None,
                version=dist.version if dist is not None else None,
                hooks=hooks,
            )
        )
    return sorted(
        infos, key=lambda info: (info.source != "core", info.source != "builtin", info.name)
    )


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
