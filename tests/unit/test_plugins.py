"""Tests of the plugin manager factory: built-ins, the ``plugins`` setting, entry points, blocked
plugins, ``describe_plugins`` and ``notify``."""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import re

import pytest

import unitplugins.entry_point_plugin
import unitplugins.module_plugin
import unitplugins.objects
from jobkit.errors import PluginError
from jobkit.hookspecs import hookimpl
from jobkit.plugins import (
    BUILTIN_PLUGINS,
    PluginInfo,
    create_plugin_manager,
    describe_plugins,
    notify,
)
from jobkit.records import JobRequest
from jobkit.settings import Settings

BUILTIN_HOOKS = {
    "jobkit.builtin.postgres": ["jobkit_store"],
    "jobkit.builtin.serializers": ["jobkit_serializer"],
    "jobkit.builtin.locks": ["jobkit_async_enqueue_lock", "jobkit_enqueue_lock"],
    "jobkit.builtin.embedded": ["jobkit_database_url"],
    "jobkit.builtin.cron": [
        "jobkit_add_commands",
        "jobkit_add_worker_services",
        "jobkit_parse_schedule",
        "jobkit_register_jobs",
        "jobkit_schedule_entries",
    ],
    "jobkit.builtin.logcontext": ["jobkit_run_job"],
    "jobkit.builtin.otel": [
        "jobkit_add_worker_services",
        "jobkit_configure_runtime",
        "jobkit_enqueue",
        "jobkit_job_cancelled",
        "jobkit_job_committed",
        "jobkit_job_deleted",
        "jobkit_job_finished",
        "jobkit_job_rescheduled",
        "jobkit_job_retried",
        "jobkit_queue_paused",
        "jobkit_queue_resumed",
        "jobkit_run_job",
        "jobkit_settings_defaults",
        "jobkit_worker_stats_reported",
    ],
}

BUILTIN_PLACES = {
    "jobkit.builtin.postgres": {"jobkit_store": "trylast"},
    "jobkit.builtin.serializers": {"jobkit_serializer": "trylast"},
    "jobkit.builtin.locks": {
        "jobkit_async_enqueue_lock": "trylast",
        "jobkit_enqueue_lock": "trylast",
    },
    "jobkit.builtin.embedded": {"jobkit_database_url": "trylast"},
    "jobkit.builtin.cron": {
        "jobkit_parse_schedule": "trylast",
        "jobkit_schedule_entries": "trylast",
    },
    "jobkit.builtin.logcontext": {"jobkit_run_job": "wrapper, tryfirst"},
    "jobkit.builtin.otel": {"jobkit_enqueue": "wrapper", "jobkit_run_job": "wrapper"},
}


def make(**settings) -> tuple:
    settings = Settings(**settings)
    return create_plugin_manager(settings, load_entrypoints=False), settings


def registered_names(pm) -> set[str]:
    return {name for name, plugin in pm.list_name_plugin() if plugin is not None}


def info_of(pm, settings: Settings, name: str) -> PluginInfo:
    [info] = [info for info in describe_plugins(pm, settings) if info.name == name]
    return info


# Built-ins --------------------------------------------------------------------------------------


def test_every_builtin_plugin_is_registered_under_its_module_name():
    pm, _ = make()

    assert registered_names(pm) == set(BUILTIN_PLUGINS)
    for name in BUILTIN_PLUGINS:
        assert pm.get_plugin(name) is importlib.import_module(name)


def test_builtins_are_described_with_the_hooks_they_implement_and_their_place():
    pm, settings = make()

    assert describe_plugins(pm, settings) == [
        PluginInfo(name, "builtin", None, None, BUILTIN_HOOKS[name], False, BUILTIN_PLACES[name])
        for name in sorted(BUILTIN_HOOKS)
    ]


@pytest.mark.parametrize("name", BUILTIN_PLUGINS)
def test_disable_plugins_blocks_a_builtin(name):
    pm, settings = make(disable_plugins=[name])

    assert pm.is_blocked(name)
    assert pm.get_plugin(name) is None
    assert registered_names(pm) == set(BUILTIN_PLUGINS) - {name}
    for hook_name in BUILTIN_HOOKS[name]:
        implementers = [impl.plugin_name for impl in getattr(pm.hook, hook_name).get_hookimpls()]
        assert name not in implementers
    assert info_of(pm, settings, name) == PluginInfo(name, "builtin", None, None, [], blocked=True)


def test_the_kernel_cannot_be_disabled():
    with pytest.raises(
        PluginError,
        match=r"^jobkit\.core is the kernel and cannot be disabled; wrap its hooks instead$",
    ):
        make(disable_plugins=["jobkit.core"])


def test_disabling_an_unknown_plugin_is_an_error_listing_the_known_ones(install):
    # `install` stands in for the environment's entry points: none are installed here.
    message = (
        "setting disable_plugins names 'jobkit.builtin.postgress', which is not an installed "
        "plugin; known plugins: jobkit.builtin.cron, jobkit.builtin.embedded, "
        "jobkit.builtin.locks, jobkit.builtin.logcontext, jobkit.builtin.otel, "
        "jobkit.builtin.postgres, "
        "jobkit.builtin.serializers, unitplugins.module_plugin"
    )

    with pytest.raises(PluginError, match=f"^{re.escape(message)}$"):
        make(plugins=["unitplugins.module_plugin"], disable_plugins=["jobkit.builtin.postgress"])


# The plugins setting ----------------------------------------------------------------------------


def test_plugins_setting_registers_a_module_by_dotted_path():
    pm, settings = make(plugins=["unitplugins.module_plugin"])

    assert pm.get_plugin("unitplugins.module_plugin") is unitplugins.module_plugin
    assert info_of(pm, settings, "unitplugins.module_plugin") == PluginInfo(
        "unitplugins.module_plugin", "setting", None, None, ["jobkit_job_enqueued"]
    )


def test_plugins_setting_registers_an_object_by_module_and_attribute():
    pm, settings = make(plugins=["unitplugins.objects:adds_nothing"])

    assert pm.get_plugin("unitplugins.objects:adds_nothing") is unitplugins.objects.adds_nothing
    assert info_of(pm, settings, "unitplugins.objects:adds_nothing").hooks == [
        "jobkit_worker_started"
    ]


def test_a_plugin_from_the_setting_can_be_disabled():
    pm, settings = make(
        plugins=["unitplugins.module_plugin"], disable_plugins=["unitplugins.module_plugin"]
    )

    assert pm.get_plugin("unitplugins.module_plugin") is None
    assert pm.hook.jobkit_job_enqueued.get_hookimpls() == []
    assert info_of(pm, settings, "unitplugins.module_plugin").blocked


@pytest.mark.parametrize(
    ("dotted", "problem"),
    [
        ("unitplugins.no_such_module", "No module named 'unitplugins.no_such_module'"),
        (
            "unitplugins.objects:no_such_object",
            "module 'unitplugins.objects' has no attribute 'no_such_object'",
        ),
    ],
)
def test_a_plugin_that_cannot_be_imported_is_an_error(dotted, problem):
    message = f"setting plugins names {dotted!r}, which cannot be imported: {problem}"

    with pytest.raises(PluginError, match=f"^{re.escape(message)}$"):
        make(plugins=[dotted])


def test_a_plugin_implementing_an_unknown_hook_is_an_error_naming_plugin_and_hook():
    with pytest.raises(PluginError) as raised:
        make(plugins=["unitplugins.misspelt"])

    message = str(raised.value)
    assert "implements an unknown hook" in message
    assert "unitplugins.misspelt" in message
    assert "'jobkit_job_finsihed'" in message


# Entry points -----------------------------------------------------------------------------------


def test_an_entry_point_plugin_is_loaded_under_its_entry_point_name(install):
    install("jobkit-fake", "1.2.3", {"fake": "unitplugins.entry_point_plugin"})

    pm = create_plugin_manager(Settings())

    assert pm.get_plugin("fake") is unitplugins.entry_point_plugin
    implementers = [impl.plugin_name for impl in pm.hook.jobkit_job_finished.get_hookimpls()]
    assert implementers == ["jobkit.builtin.otel", "fake"]


def test_describe_plugins_lists_an_entry_point_plugin_after_the_builtins(install):
    install("jobkit-fake", "1.2.3", {"fake": "unitplugins.entry_point_plugin"})
    settings = Settings()

    infos = describe_plugins(create_plugin_manager(settings), settings)

    assert [info.name for info in infos] == [*sorted(BUILTIN_PLUGINS), "fake"]
    fake = infos[-1]
    assert (fake.name, fake.source, fake.hooks, fake.blocked) == (
        "fake",
        "entry point",
        ["jobkit_job_finished"],
        False,
    )


def test_an_entry_point_plugin_is_blocked_by_its_name(install):
    # A blocked entry point is never loaded, so a broken plugin can be switched off.
    install("jobkit-fake", "1.2.3", {"fake": "unitplugins.entry_point_plugin"})
    install("jobkit-broken", "0.1", {"broken": "unitplugins.broken_on_import"})
    settings = Settings(disable_plugins=["broken"])

    pm = create_plugin_manager(settings)

    assert pm.is_blocked("broken")
    assert pm.get_plugin("fake") is unitplugins.entry_point_plugin
    assert info_of(pm, settings, "broken") == PluginInfo(
        "broken", "entry point", None, None, [], blocked=True
    )


@pytest.mark.parametrize("distribution", ["jobkit-broken", "jobkit_broken", "JobKit.Broken"])
def test_every_entry_point_of_a_distribution_is_blocked_by_its_name(install, distribution):
    install("jobkit-fake", "1.2.3", {"fake": "unitplugins.entry_point_plugin"})
    install(
        "jobkit-broken",
        "0.1",
        {"broken": "unitplugins.broken_on_import", "broken_too": "unitplugins.broken_on_import"},
    )

    pm = create_plugin_manager(Settings(disable_plugins=[distribution]))

    assert pm.is_blocked("broken")
    assert pm.is_blocked("broken_too")
    assert not pm.is_blocked("fake")
    assert pm.get_plugin("fake") is unitplugins.entry_point_plugin


def test_an_entry_point_that_fails_to_load_is_an_error_naming_plugin_and_distribution(install):
    install("jobkit-broken", "0.1", {"broken": "unitplugins.broken_on_import"})
    message = (
        "plugin 'broken' from jobkit-broken 0.1 failed to load (unitplugins.broken_on_import): "
        "RuntimeError('this plugin is broken'); uninstall it or add it to disable_plugins"
    )

    with pytest.raises(PluginError, match=f"^{re.escape(message)}$") as raised:
        create_plugin_manager(Settings())

    assert isinstance(raised.value.__cause__, RuntimeError)


@pytest.mark.parametrize("value", ["1", "true"])
def test_disable_plugin_autoload_prevents_loading_entry_points(install, monkeypatch, value):
    install("jobkit-broken", "0.1", {"broken": "unitplugins.broken_on_import"})
    install("jobkit-fake", "1.2.3", {"fake": "unitplugins.entry_point_plugin"})
    monkeypatch.setenv("JOBKIT_DISABLE_PLUGIN_AUTOLOAD", value)

    pm = create_plugin_manager(Settings())

    assert registered_names(pm) == set(BUILTIN_PLUGINS)


@pytest.mark.parametrize("value", ["", "0"])
def test_entry_points_load_when_autoload_is_not_disabled(install, monkeypatch, value):
    install("jobkit-fake", "1.2.3", {"fake": "unitplugins.entry_point_plugin"})
    monkeypatch.setenv("JOBKIT_DISABLE_PLUGIN_AUTOLOAD", value)

    pm = create_plugin_manager(Settings())

    assert pm.get_plugin("fake") is unitplugins.entry_point_plugin


def test_load_entrypoints_false_prevents_loading_entry_points(install):
    install("jobkit-broken", "0.1", {"broken": "unitplugins.broken_on_import"})

    pm = create_plugin_manager(Settings(), load_entrypoints=False)

    assert registered_names(pm) == set(BUILTIN_PLUGINS)


def test_entry_point_plugins_are_among_the_known_plugins_for_disable_plugins(install):
    install("jobkit-fake", "1.2.3", {"fake": "unitplugins.entry_point_plugin"})

    message = (
        "setting disable_plugins names 'fkae', which is not an installed plugin; known plugins: "
        "fake, jobkit.builtin.cron, jobkit.builtin.embedded, jobkit.builtin.locks, "
        "jobkit.builtin.logcontext, jobkit.builtin.otel, jobkit.builtin.postgres, "
        "jobkit.builtin.serializers"
    )

    with pytest.raises(PluginError, match=f"^{re.escape(message)}$"):
        create_plugin_manager(Settings(disable_plugins=["fkae"]))


# Which plugin answers ---------------------------------------------------------------------------

ASKED_FIRST = "asked first: wins unless it answers None"


def asked_lock(pm) -> str:
    """The name inside the lock that pluggy's call of ``jobkit_enqueue_lock`` returns."""
    lock = pm.hook.jobkit_enqueue_lock(
        job_name="app.Job", concurrency_key="k", connection=None, settings=Settings()
    )
    with lock as name:
        return name


def test_of_two_entry_point_locks_the_one_registered_last_is_asked_first_and_marked(install):
    # Entry points are registered in the order of their names, and pluggy asks the last first.
    install("jobkit-alpha-lock", "1.0", {"alpha": "unitplugins.locks:alpha"})
    install("jobkit-beta-lock", "2.0", {"beta": "unitplugins.locks:beta"})
    settings = Settings()
    pm = create_plugin_manager(settings)

    infos = describe_plugins(pm, settings, hook="jobkit_enqueue_lock")

    assert [(info.name, info.precedence["jobkit_enqueue_lock"]) for info in infos] == [
        ("beta", ASKED_FIRST),
        ("alpha", "asked only if beta answers None"),
        ("jobkit.builtin.locks", "trylast, asked only if beta, alpha answer None"),
    ]
    assert asked_lock(pm) == "beta"
    assert info_of(pm, settings, "beta").precedence == {"jobkit_enqueue_lock": ASKED_FIRST}


def test_wrappers_come_first_and_tryfirst_is_asked_before_later_registrations(install):
    install("jobkit-alpha-lock", "1.0", {"alpha": "unitplugins.locks:alpha"})
    install("jobkit-beta-lock", "2.0", {"beta": "unitplugins.locks:beta"})
    # The plugins setting is registered after the entry points: "urgent" would be asked first
    # anyway; it is tryfirst, so it would be even if it came first.
    settings = Settings(plugins=["unitplugins.locks:urgent", "unitplugins.locks:observer"])
    pm = create_plugin_manager(settings)

    infos = describe_plugins(pm, settings, hook="jobkit_enqueue_lock")

    assert [(info.name, info.precedence["jobkit_enqueue_lock"]) for info in infos] == [
        ("unitplugins.locks:observer", "wrapper"),
        ("unitplugins.locks:urgent", f"tryfirst, {ASKED_FIRST}"),
        ("beta", "asked only if unitplugins.locks:urgent answers None"),
        ("alpha", "asked only if unitplugins.locks:urgent, beta answer None"),
        (
            "jobkit.builtin.locks",
            "trylast, asked only if unitplugins.locks:urgent, beta, alpha answer None",
        ),
    ]
    assert asked_lock(pm) == "urgent"


def test_a_plugin_alone_on_a_hook_has_no_place_to_mark():
    pm, settings = make(
        plugins=["unitplugins.locks:alpha"], disable_plugins=["jobkit.builtin.locks"]
    )

    assert info_of(pm, settings, "unitplugins.locks:alpha").precedence == {}


def test_listing_by_hook_leaves_out_the_plugins_that_do_not_implement_it():
    pm, settings = make(plugins=["unitplugins.module_plugin"])

    infos = describe_plugins(pm, settings, hook="jobkit_job_enqueued")

    assert [info.name for info in infos] == ["unitplugins.module_plugin"]


# Broken plugins ---------------------------------------------------------------------------------


def test_kept_broken_an_entry_point_that_fails_to_load_is_listed_with_its_error(install):
    install("jobkit-fake", "1.2.3", {"fake": "unitplugins.entry_point_plugin"})
    install("jobkit-broken", "0.1", {"broken": "unitplugins.broken_on_import"})
    settings = Settings()

    pm = create_plugin_manager(settings, keep_broken=True)

    assert pm.get_plugin("fake") is unitplugins.entry_point_plugin
    assert not pm.has_plugin("broken")
    assert info_of(pm, settings, "broken") == PluginInfo(
        "broken",
        "entry point",
        "jobkit-broken",
        "0.1",
        [],
        broken="plugin 'broken' from jobkit-broken 0.1 failed to load "
        "(unitplugins.broken_on_import): RuntimeError('this plugin is broken'); uninstall it "
        "or add it to disable_plugins",
    )
    assert [info.name for info in describe_plugins(pm, settings, hook="jobkit_store")] == [
        "jobkit.builtin.postgres",
        "broken",
    ]


@pytest.mark.parametrize(
    ("dotted", "error"),
    [
        (
            "unitplugins.broken_on_import",
            "setting plugins names 'unitplugins.broken_on_import', which cannot be imported: "
            "this plugin is broken",
        ),
        (
            "unitplugins.wrong_argument",
            "plugin 'unitplugins.wrong_argument' (from the plugins setting) does not fit its "
            "hooks: ",
        ),
        (
            "unitplugins.misspelt",
            "plugin 'unitplugins.misspelt' implements an unknown hook: unknown hook "
            "'jobkit_job_finsihed' in plugin <module 'unitplugins.misspelt' from ",
        ),
    ],
)
def test_kept_broken_a_plugin_of_the_setting_is_listed_with_its_error(dotted, error):
    settings = Settings(plugins=[dotted, "unitplugins.module_plugin"])

    pm = create_plugin_manager(settings, load_entrypoints=False, keep_broken=True)

    assert not pm.has_plugin(dotted)
    assert pm.get_plugin("unitplugins.module_plugin") is unitplugins.module_plugin
    info = info_of(pm, settings, dotted)
    assert (info.source, info.hooks, info.broken[: len(error)]) == ("setting", [], error)


@pytest.mark.parametrize(
    "dotted", ["unitplugins.broken_on_import", "unitplugins.wrong_argument", "unitplugins.misspelt"]
)
def test_without_keep_broken_a_broken_plugin_is_still_an_error(dotted):
    with pytest.raises(PluginError, match=re.escape(dotted)):
        make(plugins=[dotted])


# Events -----------------------------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    @hookimpl
    def jobkit_job_enqueued(self, request):
        self.calls.append(("enqueued", request))

    @hookimpl
    def jobkit_job_started(self, process):
        # Asks for only one of the hook's arguments (job, process).
        self.calls.append(("started", process))


class Broken:
    @hookimpl
    def jobkit_job_enqueued(self, request):
        raise RuntimeError("telemetry is down")


@pytest.mark.parametrize("order", ["broken first", "broken last"])
def test_notify_calls_every_implementation_even_when_one_raises(caplog, order):
    pm, _ = make()
    first, second = Recorder(), Recorder()
    plugins = [("first", first), ("broken", Broken()), ("second", second)]
    if order == "broken last":
        plugins.append(plugins.pop(1))
    for name, plugin in plugins:
        pm.register(plugin, name)
    request = JobRequest(job_name="app.Job", parameters="{}")

    with caplog.at_level(logging.ERROR, logger="jobkit.plugins"):
        notify(pm.hook.jobkit_job_enqueued, request=request)

    assert first.calls == [("enqueued", request)]
    assert second.calls == [("enqueued", request)]
    [record] = caplog.records
    assert record.name == "jobkit.plugins"
    assert record.levelno == logging.ERROR
    assert record.getMessage() == "plugin 'broken' failed in jobkit_job_enqueued"
    assert record.exc_info is not None
    assert str(record.exc_info[1]) == "telemetry is down"


def test_notify_passes_each_implementation_only_the_arguments_it_asks_for():
    pm, _ = make()
    recorder = Recorder()
    pm.register(recorder, "recorder")

    notify(pm.hook.jobkit_job_started, job="the job", process="the process")

    assert recorder.calls == [("started", "the process")]


def test_notify_without_implementations_does_nothing(caplog):
    pm, _ = make(disable_plugins=["jobkit.builtin.otel"])

    notify(pm.hook.jobkit_job_finished, result=None)

    assert caplog.records == []
