"""Engines on the test database (psycopg 3 dialect), with the tests' tables in jobkit's test
schema so they go with it."""

from __future__ import annotations

import pytest
import sqlalchemy
from sa_jobs import Base


@pytest.fixture
def runtime(jobkit_runtime_factory, monkeypatch):
    """A runtime with this plugin and no other installed one (a Redis lock plugin installed
    beside it would take the keyed enqueues)."""
    monkeypatch.setenv("JOBKIT_DISABLE_PLUGIN_AUTOLOAD", "1")
    return jobkit_runtime_factory(plugins=["jobkit_sqlalchemy"])


@pytest.fixture
def url(jobkit_settings):
    return sqlalchemy.make_url(jobkit_settings.database_url)


@pytest.fixture
def engine(url, jobkit_settings):
    engine = sqlalchemy.create_engine(
        url.set(drivername="postgresql+psycopg"),
        connect_args={"options": f"-csearch_path={jobkit_settings.schema}"},
    )
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    yield engine
    engine.dispose()
