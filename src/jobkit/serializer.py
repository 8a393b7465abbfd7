"""The Serializer protocol: how a job's ``__init__`` arguments, and what its ``run()``
returns, become JSON text and back.

The built-in ``jobkit.builtin.serializers`` answers the ``jobkit_serializer`` hook with a cattrs
converter that other plugins extend through ``jobkit_configure_converter``. Parameters are always
JSON: nothing read from a row is ever unpickled or imported by dotted path.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Serializer(Protocol):
    def dumps(self, job_class: type, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
        """The JSON text for these arguments of ``job_class.__init__``.

        Raises ``ParameterError`` naming the job, the parameter and its type when a value cannot
        be stored, so the mistake shows at enqueue rather than in the worker.
        """

    def loads(self, job_class: type, text: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The ``(args, kwargs)`` to call ``job_class`` with, from JSON text (a ``str``, never
        parsed JSON): the stored parameters as the store gives them back, which hold the value
        ``dumps`` returned but not always its text (the Postgres store keeps them as ``jsonb``,
        which reorders object keys, drops whitespace and keeps the last of duplicate keys); or
        the ``{"args": [...], "kwargs": {...}}`` text ``jobkit run`` and ``jobkit enqueue``
        build from their flags.

        Raises ``ParameterError`` when the text no longer fits ``job_class.__init__``.
        """

    def dumps_output(self, job_class: type, value: Any) -> str:
        """The JSON text for ``value``, what ``job_class.run()`` returned (never None: the
        runtime stores nothing for None without asking). Called in the pool child.

        Raises ``OutputError`` naming the job and the value's type when it cannot be stored.
        """

    def loads_output(self, text: str) -> Any:
        """The value back from the text ``dumps_output`` made (as the store gives it back: the
        same JSON value, not always the same text). Called wherever a result's ``output`` is
        read, so it cannot depend on the job class being importable there."""
