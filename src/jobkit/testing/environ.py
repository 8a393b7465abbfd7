"""Settings as ``JOBKIT_*`` environment variables, to give a subprocess (a ``jobkit worker``,
a producer script) the same settings as the test that starts it."""

from __future__ import annotations

from typing import Any

import attrs

from jobkit.settings import ENV_PREFIX, Settings


def settings_environ(settings: Settings) -> dict[str, str]:
    """``JOBKIT_*`` variables for every setting of ``settings`` that differs from its default,
    plugins' sections included (``JOBKIT_<SECTION>_<FIELD>``)."""
    environ = {}
    defaults = Settings()
    for field in attrs.fields(Settings):
        if field.name in ("sections", "config_file"):
            continue
        value = getattr(settings, field.name)
        if value != getattr(defaults, field.name):
            environ[ENV_PREFIX + field.name.upper()] = _text(value)
    for section, values in settings.sections.items():
        for field in attrs.fields(type(values)):
            name = f"{ENV_PREFIX}{section.upper()}_{field.name.upper()}"
            environ[name] = _text(getattr(values, field.name))
    return environ


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return ",".join(str(item) for item in value)
    return str(value)
