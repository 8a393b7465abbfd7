"""``call_awaiting``: an action hook called as pluggy calls it, with an awaitable answer awaited
between its wrappers' halves, in the calling task (how a pool child runs an async job through
``jobkit_run_job``)."""

from __future__ import annotations

import asyncio
import contextvars

import pluggy
import pytest

from jobkit.errors import PluginError
from jobkit.plugins import call_awaiting

hookspec = pluggy.HookspecMarker("demo")
hookimpl = pluggy.HookimplMarker("demo")
current: contextvars.ContextVar[str] = contextvars.ContextVar("current", default="")


class Spec:
    @hookspec(firstresult=True)
    def demo_run(self, key: str, log: list[str]):  # type: ignore[empty-body]
        """Run ``key``."""


class Answers:
    """Answers with a coroutine that notes the context it runs in, after a moment's wait."""

    @hookimpl
    def demo_run(self, key: str, log: list[str]):
        async def run() -> str:
            await asyncio.sleep(0.01)
            log.append(f"run {key} in {current.get()}")
            if key == "bad":
                raise ValueError("bad key")
            return f"ran {key}"

        return run()


class Wraps:
    """A new-style wrapper that sets the context variable around the call."""

    @hookimpl(wrapper=True)
    def demo_run(self, key: str, log: list[str]):
        token = current.set(key)
        log.append(f"before {key}")
        try:
            return (yield).upper()
        except ValueError as error:
            log.append(f"saw {error}")
            raise
        finally:
            log.append(f"after {key}")
            current.reset(token)


class OldStyle:
    @hookimpl(hookwrapper=True)
    def demo_run(self, key: str, log: list[str]):
        outcome = yield
        if outcome.exception is None:
            outcome.force_result(outcome.get_result() + "!")


class YieldsTwice:
    @hookimpl(wrapper=True)
    def demo_run(self, key: str, log: list[str]):
        yield
        yield


def manager(*plugins: object) -> pluggy.PluginManager:
    pm = pluggy.PluginManager("demo")
    pm.add_hookspecs(Spec)
    for plugin in plugins:
        pm.register(plugin)
    return pm


def test_wrappers_run_around_the_awaited_answer_in_each_task_s_own_context():
    pm = manager(Answers(), Wraps())
    logs: dict[str, list[str]] = {"a": [], "b": []}

    async def both() -> list[str]:
        calls = (call_awaiting(pm.hook.demo_run, key=k, log=logs[k]) for k in logs)
        return await asyncio.gather(*calls)

    assert asyncio.run(both()) == ["RAN A", "RAN B"]
    for key, log in logs.items():
        assert log == [f"before {key}", f"run {key} in {key}", f"after {key}"]


def test_an_exception_of_the_awaited_answer_is_thrown_into_the_wrappers():
    pm = manager(Answers(), Wraps())
    log: list[str] = []

    with pytest.raises(ValueError, match="bad key"):
        asyncio.run(call_awaiting(pm.hook.demo_run, key="bad", log=log))

    assert log == ["before bad", "run bad in bad", "saw bad key", "after bad"]


def test_an_old_style_hookwrapper_gets_a_result_it_can_replace():
    pm = manager(Answers(), OldStyle())

    assert asyncio.run(call_awaiting(pm.hook.demo_run, key="a", log=[])) == "ran a!"


def test_a_wrapper_that_yields_twice_is_a_plugin_error():
    pm = manager(Answers(), YieldsTwice())

    with pytest.raises(PluginError, match="demo_run wrapper yielded twice"):
        asyncio.run(call_awaiting(pm.hook.demo_run, key="a", log=[]))


def test_a_plain_answer_is_returned_as_it_is():
    class Plain:
        @hookimpl
        def demo_run(self, key: str, log: list[str]):
            return f"plain {key}"

    pm = manager(Plain(), Wraps())

    assert asyncio.run(call_awaiting(pm.hook.demo_run, key="a", log=[])) == "PLAIN A"
