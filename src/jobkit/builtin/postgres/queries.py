"""Loads the named SQL blocks of ``sql/queries.sql`` and the numbered ``sql/migrations/``.

A block starts with ``-- name: <name>``; everything up to the next such line is its SQL. Only
``jobkit.builtin.postgres.store`` runs them.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import LiteralString, NamedTuple, cast

_NAME_LINE = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)
_MIGRATION_FILE = re.compile(r"^(\d{4})_(\w+)\.sql$")


def parse_named_blocks(text: str) -> dict[str, LiteralString]:
    """``{name: sql}`` for each ``-- name:`` block of ``text``."""
    parts = _NAME_LINE.split(text)
    blocks: dict[str, LiteralString] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in blocks:
            raise ValueError(f"query {name!r} is defined twice")
        blocks[name] = cast(LiteralString, body.strip())
    return blocks


def load_queries() -> dict[str, LiteralString]:
    text = resources.files(__package__).joinpath("sql/queries.sql").read_text(encoding="utf-8")
    return parse_named_blocks(text)


NO_TRANSACTION = "-- jobkit: no transaction"
"""The first line of a migration whose statements must each run on their own (``CREATE INDEX
CONCURRENTLY``): they run one by one, outside a transaction."""


class Migration(NamedTuple):
    version: int
    name: str
    sql: LiteralString
    transactional: bool = True

    def statements(self) -> list[LiteralString]:
        """The migration as the statements to run: the whole file for a transactional one, else
        each statement on its own (they end with ``;`` at the end of a line)."""
        if self.transactional:
            return [self.sql]
        code = "\n".join(
            line for line in self.sql.splitlines() if not line.lstrip().startswith("--")
        )
        parts = re.split(r";[ \t]*$", code, flags=re.MULTILINE)
        return [cast(LiteralString, part.strip() + ";") for part in parts if part.strip()]


def load_migrations() -> list[Migration]:
    """The migrations in version order; file names are ``NNNN_description.sql``."""
    folder = resources.files(__package__).joinpath("sql/migrations")
    migrations = []
    for entry in folder.iterdir():
        match = _MIGRATION_FILE.match(entry.name)
        if match:
            sql = cast(LiteralString, entry.read_text(encoding="utf-8"))
            transactional = not sql.startswith(NO_TRANSACTION)
            migrations.append(Migration(int(match[1]), match[2], sql, transactional))
    migrations.sort()
    versions = [migration.version for migration in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError(f"migration versions must be 1, 2, 3, ... without gaps; found {versions}")
    return migrations
