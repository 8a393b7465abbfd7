"""settings_environ gives a subprocess the test's settings; load_settings reads them back."""

import attrs

from jobkit.settings import Settings, load_settings, with_plugin_sections
from jobkit.testing import settings_environ


@attrs.frozen
class Section:
    url: str = "redis://localhost"
    timeout: float = 10.0


def test_settings_survive_the_trip_through_the_environment(tmp_path):
    settings = Settings(
        database_url="postgresql://u@h/db",
        schema="s",
        imports=["a.b", "c"],
        heartbeat_interval=1,
        heartbeat_timeout=5,
        worker_max_processes=3,
        sections={"redis_lock": Section(url="redis://r:1/2", timeout=3.5)},
    )
    environ = settings_environ(settings)

    assert environ["JOBKIT_IMPORTS"] == "a.b,c"
    assert "JOBKIT_RESULTS_RETENTION" not in environ  # defaults are left out
    loaded = load_settings(environ=environ, cwd=tmp_path)
    loaded = with_plugin_sections(loaded, [{"redis_lock": Section}], environ=environ)
    assert loaded == settings
