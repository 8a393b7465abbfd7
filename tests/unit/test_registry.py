"""Tests of the job registry: names, re-registration, and the errors that say how to fix them."""

from __future__ import annotations

import re

import pytest

import jobkit.registry
from jobkit.errors import JobkitError, UnknownJobError
from jobkit.job import Job, is_async_job
from jobkit.registry import JobRegistry, register_job


class SendEmail(Job):
    def run(self) -> None:
        pass


class SendWelcome(Job):
    def run(self) -> None:
        pass


def qualified(job_class: type) -> str:
    return f"{__name__}.{job_class.__qualname__}"


@pytest.fixture
def registry() -> JobRegistry:
    return JobRegistry()


def test_the_default_name_is_module_and_qualified_name(registry):
    assert registry.register(SendEmail) is SendEmail

    assert registry.name_of(SendEmail) == f"{__name__}.SendEmail"
    assert registry.get(f"{__name__}.SendEmail") is SendEmail


def test_a_nested_class_is_named_by_its_qualified_name(registry):
    class Outer:
        class Nested(Job):
            pass

    registry.register(Outer.Nested)

    assert registry.name_of(Outer.Nested) == (
        f"{__name__}.test_a_nested_class_is_named_by_its_qualified_name.<locals>.Outer.Nested"
    )


def test_a_given_name_replaces_the_default(registry):
    registry.register(SendEmail, "email.send")

    assert registry.name_of(SendEmail) == "email.send"
    assert registry.get("email.send") is SendEmail
    assert f"{__name__}.SendEmail" not in registry


def test_the_registry_lists_names_in_order(registry):
    registry.register(SendWelcome, "b.welcome")
    registry.register(SendEmail, "a.email")

    assert list(registry) == ["a.email", "b.welcome"]
    assert registry.items() == [("a.email", SendEmail), ("b.welcome", SendWelcome)]
    assert "a.email" in registry
    assert "c.other" not in registry


@pytest.mark.parametrize("name", [None, "email.send"])
def test_registering_the_same_class_again_is_harmless(registry, name):
    registry.register(SendEmail, name)
    registry.register(SendEmail, name)

    assert registry.items() == [(registry.name_of(SendEmail), SendEmail)]


def test_a_name_taken_by_another_class_is_an_error_naming_both(registry):
    registry.register(SendEmail, "welcome")
    message = (
        f"job name 'welcome' is already registered to {qualified(SendEmail)}; pass "
        f"register_job(name=...) to give {qualified(SendWelcome)} another name"
    )

    with pytest.raises(JobkitError, match=f"^{re.escape(message)}$"):
        registry.register(SendWelcome, "welcome")

    assert registry.get("welcome") is SendEmail
    with pytest.raises(UnknownJobError):
        registry.name_of(SendWelcome)


class NotAJob:
    pass


@pytest.mark.parametrize("value", [NotAJob, int, SendEmail(), "app.SendEmail", None])
def test_registering_something_that_is_not_a_job_class_is_an_error(registry, value):
    message = f"register_job expects a Job subclass, got {value!r}"

    with pytest.raises(JobkitError, match=f"^{re.escape(message)}$"):
        registry.register(value)

    assert registry.items() == []


class AsyncRun(Job):
    async def run(self) -> None:
        pass


class AsyncGeneratorRun(Job):
    async def run(self):  # type: ignore[override]
        yield


def test_an_async_run_is_registered_as_an_async_job(registry):
    registry.register(AsyncRun, "async")

    assert registry.get("async") is AsyncRun
    assert is_async_job(AsyncRun) and not is_async_job(SendEmail)
    registry.register(SendEmail, "sync")
    assert registry.is_async("async") and not registry.is_async("sync")
    assert not registry.is_async("never.Registered")


def test_a_job_registered_again_as_it_is_now_is_async_or_not_as_it_is_now(registry):
    """A reloaded module registers its class again under the same name: what was async may
    not be any more."""
    registry.register(AsyncRun, "changes")
    Reloaded = type("AsyncRun", (Job,), {"run": lambda self: None, "__module__": __name__})
    registry.register(Reloaded, "changes")

    assert not registry.is_async("changes")


def test_an_async_generator_run_is_refused_with_what_to_write_instead(registry):
    with pytest.raises(JobkitError) as raised:
        registry.register(AsyncGeneratorRun)

    assert str(raised.value).startswith(f"{qualified(AsyncGeneratorRun)}.run is an async generator")
    assert "`async def run(self)` without `yield`" in str(raised.value)
    assert registry.items() == []


def test_name_of_an_unregistered_class_says_how_to_register_it(registry):
    message = f"{qualified(SendEmail)} is not registered: decorate it with @register_job"

    with pytest.raises(UnknownJobError, match=f"^{re.escape(message)}$"):
        registry.name_of(SendEmail)


def test_get_of_an_unknown_name_raises_unknown_job_error(registry):
    registry.register(SendEmail)

    with pytest.raises(UnknownJobError, match=r"^no job is registered under the name 'nope'$"):
        registry.get("nope")


def test_unknown_job_error_is_a_jobkit_error():
    assert issubclass(UnknownJobError, JobkitError)


# The register_job decorator ---------------------------------------------------------------------


@pytest.fixture
def global_registry(monkeypatch) -> JobRegistry:
    fresh = JobRegistry()
    monkeypatch.setattr(jobkit.registry, "registry", fresh)
    return fresh


def test_register_job_decorator_registers_under_the_default_name(global_registry):
    @register_job
    class Cleanup(Job):
        pass

    assert global_registry.items() == [(qualified(Cleanup), Cleanup)]


def test_register_job_decorator_with_a_name(global_registry):
    @register_job(name="cleanup")
    class Cleanup(Job):
        pass

    assert global_registry.get("cleanup") is Cleanup
    assert global_registry.name_of(Cleanup) == "cleanup"


def test_register_job_decorator_returns_the_class_itself(global_registry):
    assert register_job(SendEmail) is SendEmail
    assert register_job(name="welcome")(SendWelcome) is SendWelcome


# plain.worker's names ---------------------------------------------------------------------------


class PlainWorkerJob(Job):
    def get_queue(self) -> str:
        return "emails"

    def run(self) -> None:
        pass


def test_a_plain_worker_method_is_refused_naming_jobkits(registry):
    message = (
        f"{qualified(PlainWorkerJob)} defines get_queue(), plain.worker's name, which jobkit "
        f"never calls: rename it default_queue() (jobkit follows plain.jobs' names)"
    )

    with pytest.raises(JobkitError, match=f"^{re.escape(message)}$"):
        registry.register(PlainWorkerJob)
    assert qualified(PlainWorkerJob) not in registry


def test_every_plain_worker_method_is_named_with_its_replacement(registry):
    class Ported(Job):
        def get_priority(self) -> int:
            return 10

        def get_retries(self) -> int:
            return 3

        def get_retry_delay(self, attempt: int) -> int:
            return 2**attempt

        def get_unique_key(self) -> str:
            return "one"

    with pytest.raises(JobkitError) as raised:
        registry.register(Ported)

    assert str(raised.value).endswith(
        "defines get_priority() and get_retries() and get_retry_delay() and get_unique_key(), "
        "plain.worker's names, which jobkit never calls: rename them default_priority() and "
        "default_retries() and calculate_retry_delay() and default_concurrency_key() (jobkit "
        "follows plain.jobs' names)"
    )


def test_a_plain_worker_method_inherited_from_a_base_is_refused_too(registry):
    class Child(PlainWorkerJob):
        pass

    with pytest.raises(JobkitError, match=r"defines get_queue\(\), plain.worker's name"):
        registry.register(Child)


def test_a_get_method_beside_jobkits_is_the_jobs_own_helper(registry):
    class Migrated(PlainWorkerJob):
        def default_queue(self) -> str:
            return self.get_queue()

    assert registry.register(Migrated) is Migrated
