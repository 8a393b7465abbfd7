"""The Postgres store's SQL: every named query is used, and the files parse."""

import inspect

import pytest

from jobkit.builtin.postgres import store
from jobkit.builtin.postgres.queries import load_migrations, load_queries, parse_named_blocks


def test_every_named_query_is_used_by_the_store():
    source = inspect.getsource(store)
    unused = [name for name in load_queries() if f'"{name}"' not in source]
    assert unused == []


def test_every_query_the_store_names_exists():
    queries = load_queries()
    source = inspect.getsource(store)
    named = {part.split('"]')[0] for part in source.split('queries["')[1:]}
    assert named <= set(queries)


def test_a_query_defined_twice_is_an_error():
    with pytest.raises(ValueError, match="'a' is defined twice"):
        parse_named_blocks("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;\n")


def test_migrations_are_numbered_without_gaps():
    versions = [migration.version for migration in load_migrations()]
    assert versions == list(range(1, len(versions) + 1))
