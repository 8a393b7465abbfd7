"""Text PostgreSQL cannot hold (the NUL character) is refused at enqueue, or escaped in results,
never left to fail a batch."""

import pytest

from jobkit import ParameterError, Status
from jobkit.testing import run_jobs
from testapp.text_jobs import Echo, FailWithNul


def test_a_parameter_with_nul_is_refused_at_enqueue(jobkit_runtime):
    with pytest.raises(ParameterError, match=r"Echo parameter 'text' contains the NUL character"):
        Echo("a\x00b").run_in_worker()
    assert jobkit_runtime.store.stats().total.pending == 0


def test_a_backslash_u0000_text_is_not_a_nul(jobkit_runtime):
    request = Echo("a\\u0000b").run_in_worker()
    (result,) = run_jobs(jobkit_runtime)
    assert result.status is Status.SUCCESSFUL
    assert request is not None and '"a\\\\u0000b"' in request.parameters


def test_a_concurrency_key_with_nul_is_refused(jobkit_runtime):
    with pytest.raises(ParameterError, match="concurrency_key must be a string without NUL"):
        Echo("x").run_in_worker(concurrency_key="k\x00")


def test_an_error_message_with_nul_is_written_escaped(jobkit_runtime):
    request = FailWithNul().run_in_worker()
    (result,) = run_jobs(jobkit_runtime)
    assert result.status is Status.ERRORED
    stored = jobkit_runtime.get_result(request.id)
    assert "bad byte \\x00 in the message" in stored.error
