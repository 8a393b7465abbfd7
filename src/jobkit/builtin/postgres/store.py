"""The Postgres store: requests, processes, results and workers in their own schema, with
psycopg 3 and a psycopg_pool connection pool. Every statement is a named block of
``sql/queries.sql``; this module is the only one that runs them."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import os
import re
import select
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from typing import Any, LiteralString, TypeVar

import attrs
import psycopg
import psycopg_pool
from psycopg import sql

from jobkit.errors import (
    LeaseLost,
    ParameterTypeError,
    StoreDataError,
    StoreError,
    StoreUnavailable,
    TickBusy,
)
from jobkit.records import (
    FAILED,
    STAT_KEYS,
    Attempt,
    AttemptState,
    Completion,
    FinishReport,
    FlowLimit,
    JobFilter,
    JobProcess,
    JobRequest,
    JobResult,
    JobState,
    LimitScope,
    MemberResult,
    PipelineState,
    QueueCounts,
    QueuePause,
    Stage,
    Stats,
    Status,
    WorkerInfo,
    WorkflowLink,
    WorkflowState,
)
from jobkit.redaction import redact_credentials

from .queries import load_migrations, load_queries

logger = logging.getLogger("jobkit.postgres")

RecordT = TypeVar("RecordT", JobRequest, JobProcess, JobResult)

_CLEAR_BATCH = 10_000
MIGRATION_LOCK_POLL = 0.1
"""Seconds between two tries for the lock another `jobkit migrate` holds."""

_SERVER_ENDED_SESSION = {
    "57P01",  # admin_shutdown: a fast or smart shutdown, or pg_terminate_backend
    "57P02",  # crash_shutdown: another backend crashed and the server is resetting
    "57P03",  # cannot_connect_now: the server is starting up or in recovery
    "57P05",  # idle_session_timeout
    "25P03",  # idle_in_transaction_session_timeout
    "53300",  # too_many_connections: every connection slot is taken
}
"""SQLSTATEs outside class 08 (connection exception) that mean this connection is gone or none
can be had now, while the same statement on a new connection later may well work."""

_DETAIL_SHOWN = 200
"""Characters of the server's detail line that an error message quotes."""

_REFUSED_VALUES = ("22", "23", "54")
"""SQLSTATE classes of values the database refuses: data exception (out of range, invalid
text), integrity constraint violation (a CHECK, NOT NULL or key the values break), program limit
exceeded (an index row or a value too large). The same values fail again, wherever they go."""


class SchemaMissing(StoreError):
    """jobkit's schema or tables are not there: ``jobkit migrate`` has not run."""


_REFUSED_LOGIN = re.compile(
    r"password authentication failed|no password supplied|no pg_hba\.conf entry|"
    r"(database|role) \"[^\"]*\" does not exist|permission denied for database|"
    r"is not permitted to log in"
)
"""What libpq says when the server refuses a login for a wrong setting (its SQLSTATE, class 28
or 3D, is not kept for a failed connection attempt)."""


def server_and_database(url: str) -> tuple[str, str]:
    """The server (``host:port``, or ``socket <dir>/.s.PGSQL.<port>``; each of several hosts)
    and the database that ``url`` connects to, as libpq resolves them: the ``PG*`` environment
    variables and libpq's defaults fill in what ``url`` leaves out. No password."""
    defaults = {
        option.keyword.decode(): option.val.decode()
        for option in psycopg.pq.Conninfo.get_defaults()
        if option.val is not None
    }
    info = {**defaults, **psycopg.conninfo.conninfo_to_dict(url)}
    hosts = str(info.get("host") or info.get("hostaddr") or "localhost").split(",")
    ports = str(info.get("port") or "").split(",")
    ports += [ports[-1]] * (len(hosts) - len(ports))  # libpq: one port serves every host
    servers = [
        f"socket {host}/.s.PGSQL.{port or 5432}"
        if host.startswith("/")
        else f"{host}:{port or 5432}"
        for host, port in zip(hosts, ports, strict=False)
    ]
    return ", ".join(servers), str(info.get("dbname") or info.get("user") or "")


def store_error(error: psycopg.Error) -> StoreError:
    """The StoreError for a psycopg error, by what retrying can do about it.

    StoreUnavailable: the connection failed or none could be had (no SQLSTATE from the server,
    class 08, the server ending sessions, every slot taken); retrying later may work.
    StoreDataError: the database refused the values (classes 22, 23, 54); retrying cannot work.
    SchemaMissing: the tables are not there. StoreError: the rest, from a full disk, a read-only
    server, a cancelled statement or a missing privilege to a deadlock: the database is there
    and the values are fine, so it may pass later, but it is not a connection failure.
    Each names the SQLSTATE and the database's own message."""
    state = error.sqlstate
    cause = _database_says(error)
    if isinstance(error, psycopg.errors.UndefinedTable | psycopg.errors.InvalidSchemaName):
        return SchemaMissing(
            f"jobkit's tables are missing ({cause}): run `jobkit migrate` (or apply "
            f"`jobkit migrate --sql`)"
        )
    if state is None:  # no answer from the server: libpq, or psycopg itself, failed
        if isinstance(error, psycopg.OperationalError) and _REFUSED_LOGIN.search(cause):
            # libpq keeps no SQLSTATE for a refused login: its text tells a wrong setting,
            # which waiting will not fix, from a server that cannot be reached.
            return StoreError(f"the database refused the connection: {cause}")
        if isinstance(error, psycopg.OperationalError | psycopg.InterfaceError):
            return StoreUnavailable(f"the database is unreachable: {cause}")
        if isinstance(error, psycopg.DataError):
            return StoreDataError(f"a value cannot be sent or read back: {cause}")
        return StoreError(f"the database driver failed: {cause}")
    if state.startswith("08") or state in _SERVER_ENDED_SESSION:
        return StoreUnavailable(f"the database is unreachable: {cause}")
    if state.startswith(_REFUSED_VALUES):
        return StoreDataError(
            f"the database refused the values it was sent ({cause}); sending them again fails again"
        )
    return StoreError(f"the database refused the statement: {cause}")


def _database_says(error: psycopg.Error) -> str:
    """The SQLSTATE, its condition and the server's message, detail and hint; or, from a
    connection attempt or the driver, its own message on one line. Never the statement or
    its parameters, and a detail cut at ``_DETAIL_SHOWN`` characters (a constraint's detail
    quotes the whole failing row, parameters included)."""
    diag = error.diag
    if error.sqlstate is None or diag.message_primary is None:
        message = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
        if error.sqlstate is None:
            return message
        return f"SQLSTATE {error.sqlstate} {type(error).__name__}: {message}"
    said = f"SQLSTATE {error.sqlstate} {type(error).__name__}: {diag.message_primary}"
    if detail := diag.message_detail:
        said += f"; {detail if len(detail) <= _DETAIL_SHOWN else detail[:_DETAIL_SHOWN] + '...'}"
    if diag.message_hint:
        said += f"; hint: {diag.message_hint}"
    return said


@contextlib.contextmanager
def _store_errors() -> Iterator[None]:
    """psycopg errors become the StoreError ``store_error`` picks, the psycopg error its
    cause; every other exception passes through."""
    try:
        yield
    except psycopg.Error as error:
        raise store_error(error) from error


def _record(record_class: type[RecordT], data: dict[str, Any]) -> RecordT:
    """``record_class`` from a row's columns by name, with ``headers`` selected as JSON text."""
    headers = data["headers"]
    data["headers"] = {} if headers == "{}" else json.loads(headers)
    if "status" in data:
        data["status"] = Status(data["status"])
    return record_class(**data)


def _make_record(
    record_class: type[RecordT],
) -> Callable[[Any], Callable[[Sequence[Any]], RecordT]]:
    """A psycopg row factory building ``record_class`` from rows that select its columns by
    name."""

    def factory(cursor: Any) -> Callable[[Sequence[Any]], RecordT]:
        names = [column.name for column in cursor.description]
        return lambda values: _record(record_class, dict(zip(names, values, strict=True)))

    return factory


def _active(cursor: Any) -> Callable[[Sequence[Any]], JobRequest | JobProcess]:
    """The row factory of ``find_active``: a JobRequest from a 'requested' row, a JobProcess
    from a 'processing' one (whose last columns, worker_id and claimed_at, requests lack)."""
    names = [column.name for column in cursor.description][1:]
    request_names = names[: names.index("worker_id")]

    def make(values: Sequence[Any]) -> JobRequest | JobProcess:
        kind, *columns = values
        if kind == "requested":
            return _record(JobRequest, dict(zip(request_names, columns, strict=False)))
        return _record(JobProcess, dict(zip(names, columns, strict=True)))

    return make


_STAGE_RECORDS: dict[Stage, type[JobRequest]] = {
    Stage.REQUESTED: JobRequest,
    Stage.PROCESSING: JobProcess,
    Stage.FINISHED: JobResult,
}


def _job_state(cursor: Any) -> Callable[[Sequence[Any]], JobState]:
    """The row factory of ``job_state``: the stage, and its record from the columns it has."""
    names = [column.name for column in cursor.description][1:]

    def make(values: Sequence[Any]) -> JobState:
        stage, *columns = values
        record_class = _STAGE_RECORDS[Stage(stage)]
        fields = {field.name for field in attrs.fields(record_class)}
        data = {name: value for name, value in zip(names, columns, strict=True) if name in fields}
        return JobState(stage=Stage(stage), attempt=_record(record_class, data))

    return make


PROBE_PREFIX = "jobkit probe "
"""How a listener's probe payload starts: with a space, which no queue name holds."""


class PostgresListener:
    """A dedicated autocommit connection that LISTENs on the wake-up channel; ``send_probe``
    sends a notification over another connection."""

    def __init__(
        self,
        url: str,
        listen_statement: sql.SQL,
        queues: Sequence[str],
        send_probe: Callable[[str], None],
    ):
        self._queues = set(queues)
        self._send_probe = send_probe
        self._probes: dict[str, float] = {}
        self._probes_lock = threading.Lock()
        application_name = f"{os.environ.get('PGAPPNAME', 'jobkit')}:listener"
        with _store_errors():
            self._connection = psycopg.connect(
                url, autocommit=True, application_name=application_name
            )
            self._connection.execute(listen_statement)

    def fileno(self) -> int:
        return self._connection.fileno()

    def drain(self) -> set[str]:
        with _store_errors():
            woken = {notify.payload for notify in self._connection.notifies(timeout=0)}
        heard = [payload for payload in woken if payload.startswith(PROBE_PREFIX)]
        if heard:
            with self._probes_lock:
                for payload in heard:
                    self._probes.pop(payload, None)
        return woken & self._queues

    def probe(self) -> None:
        payload = f"{PROBE_PREFIX}{uuid.uuid4().hex}"
        with self._probes_lock:
            self._probes[payload] = time.monotonic()
        self._send_probe(payload)

    def unheard_for(self) -> float:
        with self._probes_lock:
            oldest = min(self._probes.values(), default=None)
        return 0.0 if oldest is None else time.monotonic() - oldest

    def close(self) -> None:
        self._connection.close()


class CommitWatcher:
    """Calls callbacks once the transactions they wait for commit, asking PostgreSQL
    (``pg_xact_status``) from a thread that runs only while something is watched."""

    INTERVAL = 1.0
    """Seconds between asking about the watched transactions."""

    def __init__(self, statuses: Callable[[list[str]], dict[str, str | None]]):
        self._statuses = statuses
        self._waiting: dict[str, list[Callable[[], None]]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()

    def watch(self, xid: str, callback: Callable[[], None]) -> None:
        with self._lock:
            self._waiting.setdefault(xid, []).append(callback)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="jobkit-commit-watcher", daemon=True
                )
                self._thread.start()

    def close(self) -> None:
        self._closed.set()

    def _run(self) -> None:
        while not self._closed.wait(self.INTERVAL):
            with self._lock:
                xids = list(self._waiting)
            try:
                statuses = self._statuses(xids)
            except StoreError as error:
                logger.warning("cannot ask the database about enqueue commits: %s", error)
                continue
            with self._lock:
                ended = {
                    xid: self._waiting.pop(xid)
                    for xid in xids
                    if statuses.get(xid) != "in progress"
                }
                if not self._waiting:
                    self._thread = None
            for xid, callbacks in ended.items():
                if statuses.get(xid) == "committed":
                    for callback in callbacks:
                        callback()
            if self._thread is None:
                return


class PostgresStore:
    """The built-in Store (see ``jobkit.store.Store`` for each method's contract)."""

    def __init__(self, url: str, schema: str, *, pool_size: int = 10):
        self.url = url
        self.schema = schema
        self.channel = f"{schema}_requests"
        replacements = {
            "schema": sql.Identifier(schema),
            "requests_seq": sql.Literal(f"{sql.Identifier(schema).as_string()}.requests_seq"),
            "channel": sql.Literal(self.channel),
            "channel_identifier": sql.Identifier(self.channel),
        }
        # Each query rendered once and compacted: executed as one SQL object (not a Composed
        # joined again at every call), and but for finish_and_claim (6.8 KB as written, 4.3 KB
        # compacted) under the 4 KB up to which psycopg caches its conversion of a query.
        texts = load_queries()
        plain = _with_claim_blocks(texts, replacements, "ready_requests")
        self.queries = {
            name: sql.SQL(_compact(name, sql.SQL(text).format(**plain).as_string()))
            for name, text in texts.items()
        }
        # finish_and_claim whose claim keeps flow limits: one statement written once, with
        # ready_requests_within_limits in the place of ready_requests.
        within_limits = _with_claim_blocks(texts, replacements, "ready_requests_within_limits")
        self.finish_and_claim_within_limits = sql.SQL(
            _compact(
                "finish_and_claim_within_limits",
                sql.SQL(texts["finish_and_claim"]).format(**within_limits).as_string(),
            )
        )
        self.migrations = [
            (migration, [sql.SQL(part).format(**replacements) for part in migration.statements()])
            for migration in load_migrations()
        ]
        self._pool = psycopg_pool.ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            kwargs={"autocommit": True},
            timeout=10,
            open=False,
            name=f"jobkit:{schema}",
            check=self._check_pooled,
        )
        self._opened = False
        self._pool_size = pool_size
        self._async_pool: psycopg_pool.AsyncConnectionPool[Any] | None = None
        self._async_pool_loop: asyncio.AbstractEventLoop | None = None
        self._async_pool_opening: asyncio.Task[None] | None = None
        self._direct: psycopg.Connection[Any] | None = None
        self._direct_lock = threading.Lock()
        self._commits = CommitWatcher(self._transaction_statuses)

    def __repr__(self) -> str:
        return f"PostgresStore(schema={self.schema!r})"

    def location(self) -> str:
        where, database = server_and_database(self.url)
        return f"PostgreSQL database {database!r} at {where}, schema {self.schema}"

    # Connections ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _connection(self, connection: Any = None) -> Iterator[psycopg.Connection[Any]]:
        """The caller's connection, or an autocommit one from the pool."""
        if connection is not None:
            _check_connection(connection, psycopg.Connection)
            with _store_errors():
                yield connection
            return
        if not self._opened:
            self._check_reachable()
            self._pool.open(wait=False)
            self._opened = True
        with _store_errors(), self._pool.connection() as pooled:
            yield pooled

    @contextlib.asynccontextmanager
    async def _aconnection(
        self, connection: Any = None
    ) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """The caller's async connection, or an autocommit one from the async pool of the
        running event loop (made on first use, and made again for a new loop: a pool's
        connections belong to the loop that opened them)."""
        if connection is not None:
            _check_connection(connection, psycopg.AsyncConnection)
            with _store_errors():
                yield connection
            return
        pool = await self._async_pool_of_this_loop()
        with _store_errors():
            async with pool.connection() as pooled:
                yield pooled

    async def _async_pool_of_this_loop(self) -> psycopg_pool.AsyncConnectionPool[Any]:
        """The async pool of the running loop, opened once however many tasks ask at once (a
        first opening that failed, the server out of reach, is tried again by the next)."""
        loop = asyncio.get_running_loop()
        pool, opening = self._async_pool, self._async_pool_opening
        if (
            pool is None
            or self._async_pool_loop is not loop
            or opening is None
            or (opening.done() and (opening.cancelled() or opening.exception() is not None))
        ):
            pool = psycopg_pool.AsyncConnectionPool(
                self.url,
                min_size=1,
                max_size=self._pool_size,
                kwargs={"autocommit": True},
                timeout=10,
                open=False,
                name=f"jobkit:{self.schema}:async",
            )
            self._async_pool, self._async_pool_loop = pool, loop
            self._async_pool_opening = opening = loop.create_task(self._open_async_pool(pool))
        await asyncio.shield(opening)  # a caller cancelled must not cancel the others' opening
        return pool

    async def _open_async_pool(self, pool: psycopg_pool.AsyncConnectionPool[Any]) -> None:
        await asyncio.to_thread(self._check_reachable)
        await pool.open(wait=False)

    def _check_pooled(self, connection: psycopg.Connection[Any]) -> None:
        """The pool's check of a connection before it hands it out, so that a restart of the
        database costs no enqueue: a connection the server closed while it sat in the pool is
        replaced before a statement is sent on it (so nothing needs to be retried).

        A healthy idle connection has nothing to read, so it is handed out without a round
        trip; one whose socket became readable (the server's goodbye, or EOF) is pinged. When
        the ping fails, the server ended every session, so the idle ones beside it are gone
        too: the pool is drained to replace them all now. (The pool tries the next connection
        at once after the first failed check, but waits 1, 2, 4 s ... after further ones.)"""
        try:
            poll = select.poll()
            poll.register(connection.fileno(), select.POLLIN)
            if poll.poll(0):
                psycopg_pool.ConnectionPool.check_connection(connection)
        except psycopg.Error:
            self._pool.drain()
            raise

    def _check_reachable(self) -> None:
        """Fail at once, naming the server, rather than after the pool's timeout."""
        try:
            psycopg.connect(self.url, connect_timeout=5).close()
        except psycopg.OperationalError as error:
            where, database = server_and_database(self.url)
            message = (
                f"cannot connect to PostgreSQL at {where}, database {database!r} (the "
                f"database_url setting, e.g. JOBKIT_DATABASE_URL): "
                + redact_credentials(" ".join(line.strip() for line in str(error).splitlines()))
            )
            # A refused login (a wrong role, password or database) is no outage to wait out.
            unavailable = isinstance(store_error(error), StoreUnavailable)
            raise (StoreUnavailable if unavailable else StoreError)(message) from error

    @contextlib.contextmanager
    def _direct_connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection of its own for heartbeats and the clock, opened again at once when it
        is lost: the pool's reconnection backoff (1, 2, 4, 8, 16 s, ...) must not keep a live
        worker from beating once the database is back."""
        with self._direct_lock, _store_errors():
            if self._direct is None or self._direct.closed:
                self._direct = psycopg.connect(
                    self.url,
                    autocommit=True,
                    connect_timeout=5,
                    application_name=f"{os.environ.get('PGAPPNAME', 'jobkit')}:heartbeat",
                )
            try:
                yield self._direct
            except psycopg.Error as error:
                if isinstance(store_error(error), StoreUnavailable):
                    self._direct.close()
                    self._direct = None
                raise

    @contextlib.contextmanager
    def transaction(self, connection: Any = None) -> Iterator[psycopg.Connection[Any]]:
        with self._connection(connection) as conn:
            if connection is not None and _idle_outside_autocommit(conn):
                # Open the caller's implicit transaction first, so the block below is a
                # savepoint in it: psycopg would otherwise begin and commit one of its own.
                conn.execute(self.queries["database_now"])
            with conn.transaction():
                yield conn

    @contextlib.asynccontextmanager
    async def atransaction(
        self, connection: Any = None
    ) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        async with self._aconnection(connection) as conn:
            if connection is not None and _idle_outside_autocommit(conn):
                await conn.execute(self.queries["database_now"])
            async with conn.transaction():
                yield conn

    def after_commit(self, connection: Any, callback: Callable[[], None]) -> None:
        if _committed_already(connection):
            callback()
        elif _in_transaction(connection):
            with self._connection(connection) as conn:
                row = conn.execute(self.queries["current_transaction"]).fetchone()
            if row is not None:
                self._commits.watch(row[0], callback)

    async def aafter_commit(self, connection: Any, callback: Callable[[], None]) -> None:
        if _committed_already(connection):
            callback()
        elif _in_transaction(connection):
            async with self._aconnection(connection) as conn:
                cursor = await conn.execute(self.queries["current_transaction"])
                row = await cursor.fetchone()
            if row is not None:
                self._commits.watch(row[0], callback)

    def _transaction_statuses(self, xids: list[str]) -> dict[str, str | None]:
        with self._connection() as conn:
            rows = conn.execute(self.queries["transaction_statuses"], {"xids": xids}).fetchall()
        return dict(rows)

    # Producer side ---------------------------------------------------------------------------

    def enqueue(
        self, requests: Sequence[JobRequest], *, connection: Any = None
    ) -> list[JobRequest]:
        if not requests:
            return []
        with self._connection(connection) as conn:
            rows = conn.execute(self.queries["enqueue"], _enqueue_params(requests)).fetchall()
        return _stamped(requests, rows)

    async def aenqueue(
        self, requests: Sequence[JobRequest], *, connection: Any = None
    ) -> list[JobRequest]:
        if not requests:
            return []
        async with self._aconnection(connection) as conn:
            cursor = await conn.execute(self.queries["enqueue"], _enqueue_params(requests))
            rows = await cursor.fetchall()
        return _stamped(requests, rows)

    def create_workflows(self, links: Sequence[WorkflowLink], *, connection: Any) -> None:
        rows = [
            [
                str(link.id),
                str(link.root_id),
                _storable_text(link.name),
                str(link.callback.id) if link.callback else None,
                link.callback_on_failure,
                [[str(member.job_id), member.job_name] for member in link.members],
            ]
            for link in links
        ]
        with self._connection(connection) as conn:
            conn.execute(self.queries["create_workflows"], {"workflows": json.dumps(rows)})

    def workflow_members(self, workflow_id: uuid.UUID) -> list[MemberResult]:
        with self._connection() as conn, conn.cursor(row_factory=_member_row) as cursor:
            return cursor.execute(self.queries["workflow_members"], {"id": workflow_id}).fetchall()

    def workflow(self, root_id: uuid.UUID) -> list[WorkflowState]:
        links: dict[uuid.UUID, WorkflowState] = {}
        with self._connection() as conn:
            cursor = conn.execute(self.queries["workflow_links"], {"root_id": root_id})
            for row in cursor:
                link_id, root, _, name, created, unfinished, failed, callback, on_failure = row[:9]
                link = links.get(link_id)
                if link is None:
                    link = links[link_id] = WorkflowState(
                        id=link_id,
                        root_id=root,
                        name=name,
                        created_at=created,
                        unfinished=unfinished,
                        failed=failed,
                        callback_id=callback,
                        callback_on_failure=on_failure,
                        released_at=row[9],
                        members=[],
                    )
                link.members.append(_member_row(cursor)(row[10:]))
        return list(links.values())

    def workflow_of_job(self, job_id: uuid.UUID) -> uuid.UUID | None:
        with self._connection() as conn:
            row = conn.execute(self.queries["workflow_of_job"], {"job_id": job_id}).fetchone()
        return None if row is None else row[0]

    def create_pipeline(self, pipeline: PipelineState, *, connection: Any) -> None:
        params = {
            "job_id": pipeline.job_id,
            "job_name": pipeline.job_name,
            "step": pipeline.step,
            "workspace": pipeline.workspace_json,
        }
        with self._connection(connection) as conn:
            conn.execute(self.queries["create_pipeline"], params)

    def pipeline(self, job_id: uuid.UUID) -> PipelineState | None:
        with self._connection() as conn, conn.cursor(row_factory=_pipeline_row) as cursor:
            return cursor.execute(self.queries["pipeline"], {"job_id": job_id}).fetchone()

    def pipeline_steps(self) -> dict[str, dict[str, int]]:
        steps: dict[str, dict[str, int]] = {}
        with self._connection() as conn:
            for job_name, step, count in conn.execute(self.queries["pipeline_steps"]):
                steps.setdefault(job_name, {})[step] = count
        return steps

    def find_pipelines(self, *, workspace_json: str, limit: int) -> list[PipelineState]:
        params = {"workspace": workspace_json, "limit": limit}
        with self._connection() as conn, conn.cursor(row_factory=_pipeline_row) as cursor:
            return cursor.execute(self.queries["find_pipelines"], params).fetchall()

    def find_active(
        self, *, job_name: str, concurrency_key: str | None, connection: Any = None
    ) -> tuple[list[JobRequest], list[JobProcess]]:
        params = {"job_name": job_name, "concurrency_key": concurrency_key}
        with self._connection(connection) as conn, conn.cursor(row_factory=_active) as cursor:
            return _requests_and_processes(cursor.execute(self.queries["find_active"], params))

    async def afind_active(
        self, *, job_name: str, concurrency_key: str | None, connection: Any = None
    ) -> tuple[list[JobRequest], list[JobProcess]]:
        params = {"job_name": job_name, "concurrency_key": concurrency_key}
        async with self._aconnection(connection) as conn:
            cursor = conn.cursor(row_factory=_active)
            await cursor.execute(self.queries["find_active"], params)
            return _requests_and_processes(await cursor.fetchall())

    def _fetch(
        self, conn: psycopg.Connection[Any], query: str, params: Any, record: type[RecordT]
    ) -> list[RecordT]:
        with conn.cursor(row_factory=_make_record(record)) as cursor:
            return cursor.execute(self.queries[query], params).fetchall()

    # Worker side -----------------------------------------------------------------------------

    def claim(
        self,
        *,
        worker_id: uuid.UUID,
        queues: Sequence[str],
        limit: int,
        limits: Sequence[FlowLimit] = (),
    ) -> list[JobProcess]:
        return self.finish_and_claim(
            worker_id=worker_id, completions=(), queues=queues, limit=limit, limits=limits
        )[1]

    def finish(
        self, *, worker_id: uuid.UUID, completions: Sequence[Completion], connection: Any = None
    ) -> FinishReport:
        return self.finish_and_claim(
            worker_id=worker_id, completions=completions, queues=(), limit=0, connection=connection
        )[0]

    def finish_and_claim(
        self,
        *,
        worker_id: uuid.UUID,
        completions: Sequence[Completion],
        queues: Sequence[str],
        limit: int,
        started: Sequence[tuple[uuid.UUID, datetime.datetime]] = (),
        limits: Sequence[FlowLimit] = (),
        connection: Any = None,
    ) -> tuple[FinishReport, list[JobProcess]]:
        claiming = limit > 0 and bool(queues)
        params = {
            "worker_id": worker_id,
            "started": json.dumps([[str(id_), at.timestamp()] for id_, at in started]),
            "outcomes": _outcomes_json(completions),
            "queues": list(queues) if claiming else [],
            "limit": limit if claiming else 0,
        }
        # The limits this claim could break: a queue's only if the worker claims from it.
        kept = [
            flow for flow in limits if flow.scope is not LimitScope.QUEUE or flow.name in queues
        ]
        # Queues whose workers a limit may be holding back, now that an attempt of it ends.
        freed = sorted(
            {
                c.process.queue
                for c in completions
                for flow in limits
                if flow.max_running is not None
                and flow.applies_to(c.process.queue, c.process.job_name, c.process.concurrency_key)
            }
        )
        with self._connection(connection) as conn:
            if claiming and kept:
                with self._bounded_transaction(conn):
                    rows = self._claim_within_limits(conn, params, kept)
                    if freed:
                        conn.execute(self.queries["wake_queues"], {"queues": freed})
            elif freed:
                with self._bounded_transaction(conn):
                    rows = conn.execute(self.queries["finish_and_claim"], params).fetchall()
                    conn.execute(self.queries["wake_queues"], {"queues": freed})
            else:
                query = "finish_and_claim" if completions or started else "claim"
                rows = conn.execute(self.queries[query], params).fetchall()
        written: dict[uuid.UUID, uuid.UUID | None] = {}
        processes = []
        shared: dict[Any, Any] = {}
        for row in rows:
            if row[0] == "finished":
                written[row[1]] = row[2]
            else:
                processes.append(_process_from_row(row, shared))
        lost = [c.process.id for c in completions if c.process.id not in written]
        return FinishReport(written=written, lost_lease=lost), processes

    @contextlib.contextmanager
    def _bounded_transaction(self, conn: psycopg.Connection[Any]) -> Iterator[None]:
        """A transaction the server ends if it idles for seconds: a frozen worker's."""
        with conn.transaction():
            conn.execute(self.queries["bound_idle_transaction"])
            yield

    def _claim_within_limits(
        self, conn: psycopg.Connection[Any], params: dict[str, Any], limits: list[FlowLimit]
    ) -> list[Any]:
        """finish_and_claim under the advisory locks of ``limits``. A claim that a limit cut
        short (it took the limit's last room, passing over requests behind) leaves the limit
        closed: the next one, in the same transaction, passes over that limit's requests
        altogether and takes what waits behind them; one claim per limit at most."""
        conn.execute(
            self.queries["lock_limits"],
            {"schema": self.schema, "keys": sorted(flow.key for flow in limits)},
        )
        params = {**params, "limits": _limits_json(limits)}
        rated = _limits_json([flow for flow in limits if flow.max_starts is not None])
        rows: list[Any] = []
        wanted = params["limit"]
        for _ in range(len(limits) + 1):
            found = conn.execute(self.finish_and_claim_within_limits, params).fetchall()
            rows += found
            claimed = [row[1] for row in found if row[0] == "claimed"]
            if claimed and rated != "[]":
                conn.execute(self.queries["record_starts"], {"limits": rated, "ids": claimed})
            wanted -= len(claimed)
            if not claimed or not wanted:
                break
            params |= {"limit": wanted, "started": "[]", "outcomes": "[]"}
        return rows

    def seconds_until_next_start(
        self,
        *,
        queues: Sequence[str],
        limits: Sequence[FlowLimit] = (),
        since: datetime.datetime | None = None,
    ) -> float | None:
        rated = [
            flow
            for flow in limits
            if flow.max_starts is not None
            and (flow.scope is not LimitScope.QUEUE or flow.name in queues)
        ]
        with self._connection() as conn:
            row = conn.execute(
                self.queries["seconds_until_next_start"], {"queues": list(queues)}
            ).fetchone()
            waits = [] if row is None or row[0] is None else [row[0]]
            if rated:
                row = conn.execute(
                    self.queries["seconds_until_limits_reopen"],
                    {"limits": _limits_json(rated), "since": since},
                ).fetchone()
                waits += [] if row is None or row[0] is None else [row[0]]
        return max(0.0, min(waits)) if waits else None

    def link_reruns(
        self, links: Sequence[tuple[uuid.UUID, uuid.UUID]], *, connection: Any = None
    ) -> None:
        payload = json.dumps([[str(result_id), str(request_id)] for result_id, request_id in links])
        with self._connection(connection) as conn:
            conn.execute(self.queries["link_reruns"], {"links": payload})

    def lock_for_retry(
        self, result_ids: Sequence[uuid.UUID], *, connection: Any
    ) -> list[JobResult]:
        with self._connection(connection) as conn:
            return self._fetch(conn, "lock_for_retry", {"ids": list(result_ids)}, JobResult)

    def release(
        self,
        *,
        worker_id: uuid.UUID,
        process_ids: Sequence[uuid.UUID],
        connection: Any = None,
    ) -> list[uuid.UUID]:
        if not process_ids:
            return []
        params = {"worker_id": worker_id, "ids": list(process_ids)}
        with self._connection(connection) as conn:
            rows = conn.execute(self.queries["release_processes"], params).fetchall()
        return [row[0] for row in rows]

    def release_held_rerun(self, *, request_id: uuid.UUID, start_at: datetime.datetime) -> bool:
        with self._connection() as conn:
            row = conn.execute(
                self.queries["release_held_rerun"], {"id": request_id, "start_at": start_at}
            ).fetchone()
        return bool(row and row[0])

    def release_unknown(
        self, *, worker_id: uuid.UUID, known_ids: Sequence[uuid.UUID]
    ) -> list[uuid.UUID]:
        params = {"worker_id": worker_id, "known": list(known_ids)}
        with self._connection() as conn:
            rows = conn.execute(self.queries["release_unknown_processes"], params).fetchall()
        return [row[0] for row in rows]

    def listen(self, *, queues: Sequence[str]) -> PostgresListener:
        return PostgresListener(self.url, self.queries["listen"], queues, self._send_probe)

    def _send_probe(self, payload: str) -> None:
        with self._connection() as conn:
            conn.execute(self.queries["probe_listener"], {"payload": payload})

    def register_worker(self, worker: WorkerInfo) -> WorkerInfo:
        params = {"id": worker.id, "hostname": worker.hostname, "pid": worker.pid}
        params["queues"] = list(worker.queues)
        with self._connection() as conn, conn.cursor(row_factory=_worker_row) as cursor:
            stored = cursor.execute(self.queries["register_worker"], params).fetchone()
        assert stored is not None
        return stored

    def heartbeat(self, *, worker_id: uuid.UUID) -> datetime.datetime:
        with self._direct_connection() as conn, psycopg.ClientCursor(conn) as cursor:
            # Two statements in one message: the server binds parameters of one statement
            # only, so the cursor binds them itself.
            cursor.execute(self.queries["heartbeat"], {"id": worker_id})
            cursor.nextset()
            row = cursor.fetchone()
            if row is None:
                now = conn.execute(self.queries["database_now"]).fetchone()
                raise LeaseLost(
                    f"worker {worker_id} has no heartbeat row at {now[0] if now else '?'}: "
                    f"it was declared dead and removed"
                )
        return row[0]

    def unregister_worker(self, *, worker_id: uuid.UUID, connection: Any = None) -> None:
        with self._connection(connection) as conn:
            conn.execute(self.queries["unregister_worker"], {"id": worker_id})

    def workers(self) -> list[WorkerInfo]:
        with self._connection() as conn, conn.cursor(row_factory=_worker_row) as cursor:
            return cursor.execute(self.queries["list_workers"]).fetchall()

    def lock_dead_worker(
        self, *, worker_id: uuid.UUID, heartbeat_timeout: float, connection: Any
    ) -> list[JobProcess] | None:
        with self._connection(connection) as conn:
            conn.execute(self.queries["bound_idle_transaction"])
            conn.execute(self.queries["rescue_lock_timeout"])
            params = {"id": worker_id, "timeout": float(heartbeat_timeout)}
            try:
                with conn.transaction():  # a savepoint: a row we may not lock is no error
                    row = conn.execute(self.queries["lock_dead_worker"], params).fetchone()
            except psycopg.errors.LockNotAvailable:
                return None
            if row is not None and not row[0]:
                return None
            return self._fetch(conn, "processes_of_workers", {"ids": [worker_id]}, JobProcess)

    def dead_workers(self, *, heartbeat_timeout: float) -> dict[uuid.UUID, list[JobProcess]]:
        with self._connection() as conn:
            rows = conn.execute(
                self.queries["dead_workers"], {"timeout": float(heartbeat_timeout)}
            ).fetchall()
            dead = [row[0] for row in rows]
            if not dead:
                return {}
            processes = self._fetch(conn, "processes_of_workers", {"ids": dead}, JobProcess)
        found: dict[uuid.UUID, list[JobProcess]] = {worker_id: [] for worker_id in dead}
        for process in processes:
            found[process.worker_id].append(process)
        return found

    def database_now(self) -> datetime.datetime:
        with self._direct_connection() as conn:
            row = conn.execute(self.queries["database_now"]).fetchone()
        assert row is not None
        return row[0]

    # Reading and housekeeping ----------------------------------------------------------------

    # Operations ------------------------------------------------------------------------------

    def list_attempts(
        self,
        *,
        filter: JobFilter,
        limit: int,
        after: tuple[datetime.datetime, uuid.UUID] | None = None,
    ) -> list[Attempt]:
        params = _filter_params(filter) | {
            "limit": limit,
            "after_at": after[0] if after else None,
            "after_id": after[1] if after else None,
        }
        branches = []
        if params["pending"] or params["scheduled"]:
            branches.append("list_requests")
        if params["running"]:
            branches.append("list_processes")
        if params["statuses"]:
            branches.append("list_results_in_queues" if filter.queues else "list_results")
        found: list[Attempt] = []
        with self._connection() as conn:
            for branch in branches:
                if branch.startswith("list_results") and params["error"] is not None:
                    found += self._search_results(conn, branch, params)
                    continue
                # Not prepared: a plan made for one filter's NULLs would serve another badly.
                with conn.cursor(row_factory=_attempt_row) as cursor:
                    found += cursor.execute(self.queries[branch], params, prepare=False).fetchall()
        found.sort(key=lambda attempt: (attempt.at, attempt.id), reverse=True)
        return found[:limit]

    SEARCH_WINDOW = 2000
    """How many of each status's newest results an error-text search reads before it turns to
    the trigram index for that status."""

    def _search_results(
        self, conn: psycopg.Connection[Any], branch: str, params: dict[str, Any]
    ) -> list[Attempt]:
        """An error-text search of the results: the newest ``SEARCH_WINDOW`` of each status
        (``search_recent_results``), then, for each status whose window was full and may hide
        a match newer than the page's last, the rest of it along the trigram index."""
        probe = self.queries[_SEARCH_PROBES[branch]]
        windows = conn.execute(
            probe, params | {"window": self.SEARCH_WINDOW}, prepare=False
        ).fetchall()
        ids = [match for *_, matches in windows for match in matches]
        with conn.cursor(row_factory=_attempt_row) as cursor:
            found = cursor.execute(self.queries["results_by_ids"], {"ids": ids}).fetchall()
        found.sort(key=lambda attempt: (attempt.at, attempt.id), reverse=True)
        limit = params["limit"]
        last = (found[limit - 1].at, found[limit - 1].id) if len(found) >= limit else None
        for status, final, queue, scanned, oldest_at, oldest_id, _ in windows:
            if scanned < self.SEARCH_WINDOW or (last is not None and (oldest_at, oldest_id) < last):
                continue  # read whole, or what it did not read is older than the page
            rest = params | {
                "statuses": [status],
                "finals": [final],
                "queues": None if queue is None else [queue],
                "after_at": oldest_at,
                "after_id": oldest_id,
            }
            with conn.cursor(row_factory=_attempt_row) as cursor:
                found += cursor.execute(self.queries[branch], rest, prepare=False).fetchall()
        return found

    def job_attempts(self, job_id: uuid.UUID) -> list[Attempt]:
        with self._connection() as conn, conn.cursor(row_factory=_attempt_row) as cursor:
            return cursor.execute(self.queries["job_attempts"], {"job_id": job_id}).fetchall()

    def cancel_attempt(
        self, *, attempt_id: uuid.UUID, source: str, why: str
    ) -> tuple[str, uuid.UUID | None] | None:
        with self._connection() as conn:
            row = conn.execute(
                self.queries["cancel_attempt"], {"id": attempt_id, "source": source, "why": why}
            ).fetchone()
        return None if row is None else (row[0], row[1])

    def delete_job(self, *, job_id: uuid.UUID) -> tuple[str, int]:
        with self._connection() as conn, conn.transaction() as transaction:
            row = conn.execute(self.queries["delete_job"], {"job_id": job_id}).fetchone()
            assert row is not None
            running, deleted, moved_to = row
            if running:
                return "running", 0
            # An attempt that moved while the statement ran (claimed, or followed by a
            # rerun) is seen now, by this statement's fresh snapshot: keep everything.
            if (
                moved_to
                and conn.execute(self.queries["live_attempts"], {"ids": moved_to}).fetchone()
            ):
                raise psycopg.Rollback(transaction)
            return "deleted", deleted
        return "moved", 0

    def count_results_by_time(
        self, *, buckets: int, bucket_seconds: int
    ) -> tuple[datetime.datetime, list[tuple[datetime.datetime, str, int]]]:
        with self._connection() as conn:
            rows = conn.execute(
                self.queries["count_results_by_time"],
                {"buckets": buckets, "bucket": bucket_seconds},
            ).fetchall()
        return rows[0][0], [
            (bucket, status, count) for _, bucket, status, count in rows if bucket is not None
        ]

    def run_now(self, *, attempt_id: uuid.UUID) -> bool:
        with self._connection() as conn:
            row = conn.execute(self.queries["run_now"], {"id": attempt_id}).fetchone()
        return bool(row and row[0])

    def cancel_requests(self, *, worker_id: uuid.UUID) -> dict[uuid.UUID, str]:
        with self._connection() as conn:
            rows = conn.execute(self.queries["cancel_requests"], {"worker_id": worker_id})
            return {attempt_id: source or "" for attempt_id, source in rows.fetchall()}

    def pause_queue(self, *, queue: str, source: str) -> tuple[QueuePause, bool]:
        with self._connection() as conn:
            row = conn.execute(
                self.queries["pause_queue"], {"queue": queue, "source": source}
            ).fetchone()
        assert row is not None
        return QueuePause(queue=row[0], paused_at=row[1], source=row[2]), row[3]

    def resume_queue(self, *, queue: str) -> bool:
        with self._connection() as conn:
            row = conn.execute(self.queries["resume_queue"], {"queue": queue}).fetchone()
        return bool(row and row[0])

    def paused_queues(self) -> list[QueuePause]:
        with self._connection() as conn:
            rows = conn.execute(self.queries["paused_queues"]).fetchall()
        return [QueuePause(queue=q, paused_at=at, source=source) for q, at, source in rows]

    def count_attempts(self, *, filter: JobFilter, cap: int) -> tuple[int, bool]:
        params = _filter_params(filter)
        with self._connection() as conn:
            row = conn.execute(
                self.queries["count_attempts"], params | {"cap": cap + 1}, prepare=False
            ).fetchone()
            counts = list(row) if row else [0, 0, 0]
            if max(counts) <= cap:
                return sum(counts), True
            explained = conn.execute(
                sql.SQL("EXPLAIN (FORMAT JSON) ") + self.queries["count_attempts"],
                params | {"cap": None},
                prepare=False,
            ).fetchone()
        estimate = _estimated_rows(explained[0][0]["Plan"] if explained else {})
        return max(estimate, sum(counts)), False

    def get_result(self, attempt_id: uuid.UUID) -> JobResult | None:
        state = self.job_state(attempt_id)
        return None if state is None else state.result

    def job_state(self, attempt_id: uuid.UUID) -> JobState | None:
        with self._connection() as conn, conn.cursor(row_factory=_job_state) as cursor:
            return cursor.execute(self.queries["job_state"], {"id": attempt_id}).fetchone()

    async def aget_result(self, attempt_id: uuid.UUID) -> JobResult | None:
        state = await self.ajob_state(attempt_id)
        return None if state is None else state.result

    async def ajob_state(self, attempt_id: uuid.UUID) -> JobState | None:
        async with self._aconnection() as conn:
            cursor = conn.cursor(row_factory=_job_state)
            await cursor.execute(self.queries["job_state"], {"id": attempt_id})
            return await cursor.fetchone()

    def stats(
        self,
        *,
        include_results: bool = True,
        heartbeat_timeout: float | None = None,
        queues: Sequence[str] | None = None,
    ) -> Stats:
        params = {
            "include_results": include_results,
            "heartbeat_timeout": None if heartbeat_timeout is None else float(heartbeat_timeout),
            "queues": None if queues is None else list(queues),
        }
        with self._connection() as conn:
            rows = conn.execute(self.queries["stats"], params).fetchall()
        stats = Stats()
        for queue, figure, count, age in rows:
            if figure in ("workers_active", "workers_stale"):
                setattr(stats, figure, count)
            elif figure == "paused":
                stats.queues.setdefault(queue, QueueCounts()).paused = True
            elif figure in STAT_KEYS:
                counts = stats.queues.setdefault(queue, QueueCounts())
                setattr(counts, figure, getattr(counts, figure) + count)
                if age is not None:
                    counts.oldest_pending_age = age
        for counts in stats.queues.values():
            stats.total.add(counts)
        return stats

    def record_tick(self, *, key: str, fire_at: datetime.datetime, connection: Any) -> bool:
        with self._connection(connection) as conn:
            params = {"schema": self.schema, "key": key}
            (ours,) = conn.execute(self.queries["try_tick_lock"], params).fetchone() or (False,)
            if not ours:
                raise TickBusy(
                    f"another transaction is recording a tick of the schedule entry {key!r} "
                    f"and has not ended"
                )
            row = conn.execute(
                self.queries["record_tick"], {"key": key, "fire_at": fire_at}
            ).fetchone()
        return row is not None

    def last_ticks(self, keys: Sequence[str]) -> dict[str, datetime.datetime]:
        with self._connection() as conn:
            rows = conn.execute(self.queries["last_ticks"], {"keys": list(keys)}).fetchall()
        return dict(rows)

    VACUUM_DEAD_ROWS = 10_000
    """Dead rows a queue table may hold before a worker vacuums it."""

    def maintain(self) -> None:
        with self._connection() as conn:
            conn.execute(self.queries["fold_result_counts"], {"schema": self.schema})
            self._vacuum_queue_tables(conn)

    def _vacuum_queue_tables(self, conn: psycopg.Connection[Any]) -> None:
        """VACUUM the queue tables that hold many dead rows (``queue_tables_to_vacuum``), one
        worker at a time, skipping a table autovacuum is busy with. A role that does not own
        them gets PostgreSQL's warning and nothing is vacuumed (autovacuum must do it)."""
        params = {"schema": self.schema, "dead_rows": self.VACUUM_DEAD_ROWS}
        tables = [row[0] for row in conn.execute(self.queries["queue_tables_to_vacuum"], params)]
        if not tables:
            return
        locked = conn.execute(self.queries["try_vacuum_lock"], params).fetchone()
        if not locked or not locked[0]:
            return
        try:
            for table in tables:
                conn.execute(
                    sql.SQL("VACUUM (SKIP_LOCKED) {}.{}").format(
                        sql.Identifier(self.schema), sql.Identifier(table)
                    )
                )
        finally:
            conn.execute(self.queries["vacuum_unlock"], params)

    def clear_results(self, *, older_than: float) -> int:
        deleted = 0
        with self._connection() as conn:
            conn.execute(self.queries["clear_ticks"], {"older_than": float(older_than)})
            conn.execute(self.queries["clear_workflows"], {"older_than": float(older_than)})
            conn.execute(self.queries["clear_pipelines"], {"older_than": float(older_than)})
            while True:
                cursor = conn.execute(
                    self.queries["clear_results"],
                    {"older_than": float(older_than), "batch": _CLEAR_BATCH},
                )
                deleted += cursor.rowcount
                if cursor.rowcount < _CLEAR_BATCH:
                    return deleted

    def purge(self) -> int:
        with self._connection() as conn:
            row = conn.execute(self.queries["purge"]).fetchone()
        return int(row[0]) if row else 0

    # Schema ----------------------------------------------------------------------------------

    def migrate(self) -> list[str]:
        """Apply what is missing, under a session lock that serializes concurrent runs: each
        transactional migration in a transaction of its own; each statement of one marked ``no
        transaction`` (``CREATE INDEX CONCURRENTLY``) on its own, after dropping any index a
        failed concurrent build left invalid."""
        applied_now = []
        lock = {"schema": self.schema}
        with self._connection() as conn:
            # Locked first: concurrent CREATE SCHEMA IF NOT EXISTS of a new schema would fail.
            while conn.execute(self.queries["lock_migrations"], lock).fetchone() != (True,):
                time.sleep(MIGRATION_LOCK_POLL)
            try:
                conn.execute(self.queries["bootstrap_migrations"])
                applied = {row[0] for row in conn.execute(self.queries["applied_migrations"])}
                for migration, statements in self.migrations:
                    if migration.version in applied:
                        continue
                    record = {"version": migration.version, "name": migration.name}
                    if migration.transactional:
                        with conn.transaction():
                            conn.execute(statements[0])
                            conn.execute(self.queries["record_migration"], record)
                    else:
                        for (name,) in conn.execute(
                            self.queries["invalid_indexes"], lock
                        ).fetchall():
                            conn.execute(
                                sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}.{}").format(
                                    sql.Identifier(self.schema), sql.Identifier(name)
                                )
                            )
                        for statement in statements:
                            conn.execute(statement)
                        conn.execute(self.queries["record_migration"], record)
                    applied_now.append(f"{migration.version:04d}_{migration.name}")
            finally:
                conn.execute(self.queries["unlock_migrations"], lock)
        return applied_now

    def migration_sql(self) -> str:
        # Composed without a connection: psycopg quotes names and values itself.
        transactional = [self.queries["bootstrap_migrations"].as_string()]
        on_their_own: list[str] = []
        for migration, statements in self.migrations:
            record = {"version": migration.version, "name": migration.name}
            parts = transactional if migration.transactional else on_their_own
            parts.append(f"-- {migration.version:04d}_{migration.name}")
            parts.extend(statement.as_string() for statement in statements)
            parts.append(_with_values(self.queries["record_migration"], record))
        script = "BEGIN;\n\n" + "\n\n".join(transactional) + "\n\nCOMMIT;\n"
        if on_their_own:
            script += (
                "\n-- Each statement below runs on its own, outside a transaction (CREATE INDEX "
                "CONCURRENTLY).\n\n" + "\n\n".join(on_their_own) + "\n"
            )
        return script

    def check_schema(self) -> None:
        latest = self.migrations[-1][0].version
        try:
            with self._connection() as conn:
                row = conn.execute(self.queries["latest_migration"]).fetchone()
        except SchemaMissing:  # no migrations table: nothing applied yet
            applied = 0
        else:
            applied = row[0] if row else 0
        if applied < latest:
            raise StoreError(
                f"the jobkit tables in schema {self.schema!r} are at migration {applied} of "
                f"{latest}: run `jobkit migrate` (or apply `jobkit migrate --sql`)"
            )

    def close(self) -> None:
        self._commits.close()
        with self._direct_lock:
            if self._direct is not None:
                self._direct.close()
                self._direct = None
        if self._opened:
            self._pool.close()
            self._opened = False

    async def aclose(self) -> None:
        if self._async_pool is not None:
            await self._async_pool.close()
            self._async_pool = self._async_pool_loop = self._async_pool_opening = None


def _process_from_row(row: Sequence[Any], shared: dict[Any, Any]) -> JobProcess:
    """A JobProcess from a 'claimed' row of finish_and_claim (columns in its SELECT order).
    ``shared`` makes the worker id and the claim time, the same in every row of one claim, one
    object each: the worker's pipes then pickle them once a batch, not once an attempt (a
    third of a claimed attempt's pickling, and a fifth of its unpickling in the child)."""
    headers = row[11]
    return JobProcess(
        id=row[1],
        job_id=row[3],
        job_name=row[4],
        parameters=row[5],
        queue=row[6],
        priority=row[7],
        retries=row[8],
        retry_attempt=row[9],
        concurrency_key=row[10],
        headers={} if headers == "{}" else json.loads(headers),
        source=row[12],
        retry_of=row[13],
        start_at=row[14],
        created_at=row[15],
        worker_id=shared.setdefault(row[16], row[16]),
        claimed_at=shared.setdefault(row[17], row[17]),
        timeout=row[18],
    )


def _limits_json(limits: Sequence[FlowLimit]) -> str:
    """Flow limits as the queries read them: [key, scope, name, max_running, max_starts, per]."""
    return json.dumps(
        [
            [flow.key, flow.scope.value, flow.name, flow.max_running, flow.max_starts, flow.per]
            for flow in limits
        ]
    )


def _outcomes_json(completions: Sequence[Completion]) -> str:
    return json.dumps(
        [
            [
                str(c.process.id),
                c.outcome.status.value,
                _storable_text(c.outcome.error),
                _storable_text(c.outcome.error_type),
                c.started_at.timestamp() if c.started_at else None,
                c.ended_at.timestamp(),
                c.outcome.rerun_in,
                c.outcome.rerun_uses_retry,
                c.outcome.hold_rerun,
                c.outcome.output,
            ]
            for c in completions
        ]
    )


def _with_claim_blocks(
    texts: dict[str, LiteralString], replacements: dict[str, sql.Composable], ready: str
) -> dict[str, sql.Composable]:
    """``replacements`` with the blocks the claim is made of, rendered in order: the block
    ``ready`` (which requests it takes) as ``ready_requests``, then ``claim_ctes`` and
    ``claimed_rows``, which ``finish_and_claim`` and ``claim`` are written with."""
    blocks = dict(replacements, ready_requests=sql.SQL(texts[ready]).format(**replacements))
    for name in ("claim_ctes", "claimed_rows"):
        blocks[name] = sql.SQL(texts[name]).format(**blocks)
    return blocks


def _compact(name: str, text: str) -> str:
    """The query ``name`` as it is sent: its lines without indentation, without the lines that
    hold only a comment (the server would parse and skip them at every execution), after one
    comment that names it, so it can be told apart in ``pg_stat_activity`` and the server's
    logs (``-- jobkit: finish_and_claim``)."""
    lines = (line.strip() for line in text.splitlines())
    return "\n".join(
        [f"-- jobkit: {name}", *(line for line in lines if line and not line.startswith("--"))]
    )


def _with_values(query: sql.Composable, values: dict[str, Any]) -> str:
    """The text of ``query`` with its ``%(name)s`` placeholders replaced by ``values`` as SQL
    literals, composed without a connection (a literal ``%`` in a query is ``%%`` for psycopg
    as for Python's ``%`` operator, so the two read placeholders alike)."""
    return query.as_string() % {
        name: sql.Literal(value).as_string() for name, value in values.items()
    }


def _idle_outside_autocommit(
    connection: psycopg.Connection[Any] | psycopg.AsyncConnection[Any],
) -> bool:
    idle = connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    return idle and not connection.autocommit


def _storable_text(text: str) -> str:
    """``text`` as PostgreSQL text can hold it: NUL and lone surrogates (what ``os.fsdecode``
    makes of a file name that is not UTF-8) written as backslash escapes, so an error message
    or a source file name that has one is still written, and still says what it said."""
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _storable_headers(headers: dict[str, str]) -> str:
    """The JSON text of a request's headers (set by plugins), each key and value storable."""
    if not headers:
        return "{}"
    return json.dumps({_storable_text(k): _storable_text(v) for k, v in headers.items()})


def _worker_row(cursor: Any) -> Callable[[Sequence[Any]], WorkerInfo]:
    names = [column.name for column in cursor.description]
    return lambda values: WorkerInfo(**dict(zip(names, values, strict=True)))


_SEARCH_PROBES = {
    "list_results": "search_recent_results",
    "list_results_in_queues": "search_recent_results_in_queues",
}
"""The first look of an error-text search, for each listing of results (``_search_results``)."""

_STATE_STATUSES = {
    state: state.upper() for state in ("successful", "errored", "deferred", "lost", "cancelled")
}
_FAILED_STATUSES = ("ERRORED", "LOST", "CANCELLED")


def _filter_params(filter: JobFilter) -> dict[str, Any]:
    """The parameters of the listing and counting queries for ``filter``: which stages to read,
    the result statuses to read in full and those whose final attempts only ("failed")."""
    states = set(filter.states) or {state.value for state in AttemptState}
    every = [status for state, status in _STATE_STATUSES.items() if state in states]
    final = [s for s in _FAILED_STATUSES if FAILED in states and s not in every]
    error = filter.error_contains or None  # every result holds the empty text
    return {
        "pending": AttemptState.PENDING in states,
        "scheduled": AttemptState.SCHEDULED in states,
        "running": AttemptState.RUNNING in states,
        "statuses": every + final,
        "finals": [False] * len(every) + [True] * len(final),
        "every": every,
        "final": final,
        "queues": list(filter.queues) or None,
        "names": list(filter.job_names) or None,
        "key": filter.concurrency_key,
        "since": filter.since,
        "until": filter.until,
        "error": None if error is None else f"%{_escape_like(error)}%",
    }


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _estimated_rows(plan: dict[str, Any]) -> int:
    """The planner's estimate of the rows its scans of jobkit's tables return."""
    if plan.get("Relation Name") in ("requests", "processes", "results"):
        return int(plan.get("Plan Rows", 0))
    return sum(_estimated_rows(child) for child in plan.get("Plans", ()))


def _pipeline_row(cursor: Any) -> Callable[[Sequence[Any]], PipelineState]:
    names = [column.name for column in cursor.description]
    return lambda values: PipelineState(**dict(zip(names, values, strict=True)))


def _member_row(cursor: Any) -> Callable[[Sequence[Any]], MemberResult]:
    def make(values: Sequence[Any]) -> MemberResult:
        job_id, job_name, position, status, output_json, ended_at = values
        return MemberResult(
            job_id=job_id,
            job_name=job_name,
            position=position,
            status=None if status is None else Status(status),
            output_json=output_json,
            ended_at=ended_at,
        )

    return make


def _attempt_row(cursor: Any) -> Callable[[Sequence[Any]], Attempt]:
    names = [column.name for column in cursor.description]

    def make(values: Sequence[Any]) -> Attempt:
        data = dict(zip(names, values, strict=True))
        headers = data["headers"]
        data["headers"] = {} if headers == "{}" else json.loads(headers)
        data["state"] = AttemptState(data["state"])
        data.pop("depth", None)
        return Attempt(**data)

    return make


def _enqueue_params(requests: Sequence[JobRequest]) -> dict[str, str]:
    """The parameters of the ``enqueue`` query: the requests as one JSON array of rows."""
    rows_json = json.dumps(
        [
            [
                str(r.id),
                str(r.job_id),
                r.job_name,
                r.parameters,
                r.queue,
                r.priority,
                r.retries,
                r.retry_attempt,
                r.concurrency_key,
                _storable_headers(r.headers),
                _storable_text(r.source),
                str(r.retry_of) if r.retry_of else None,
                r.start_at.timestamp() if r.start_at else None,
                r.delay,
                r.timeout,
            ]
            for r in requests
        ]
    )
    return {"rows": rows_json}


def _stamped(requests: Sequence[JobRequest], rows: Sequence[Any]) -> list[JobRequest]:
    """``requests`` with ``start_at`` and ``created_at`` from the rows ``enqueue`` returned."""
    stored = {row[0]: row for row in rows}
    for request in requests:
        _, request.start_at, request.created_at = stored[request.id]
    return list(requests)


def _requests_and_processes(
    records: Iterable[JobRequest | JobProcess],
) -> tuple[list[JobRequest], list[JobProcess]]:
    """``find_active``'s rows apart: the pending requests, then the processes."""
    requests: list[JobRequest] = []
    processes: list[JobProcess] = []
    for record in records:
        if isinstance(record, JobProcess):
            processes.append(record)
        else:
            requests.append(record)
    return requests, processes


def _check_connection(connection: Any, expected: type) -> None:
    """Refuse a connection of the other kind: a sync one on the async path, or the reverse."""
    if isinstance(connection, psycopg.Connection | psycopg.AsyncConnection) and not isinstance(
        connection, expected
    ):
        if expected is psycopg.AsyncConnection:
            fix = "pass a psycopg.AsyncConnection, or call run_in_worker() / enqueue_many()"
        else:
            fix = "pass a psycopg.Connection, or call await arun_in_worker() / aenqueue_many()"
        raise ParameterTypeError(
            f"connection must be a psycopg {expected.__name__} here, got a psycopg "
            f"{type(connection).__name__}: {fix}"
        )


def _committed_already(connection: Any) -> bool:
    """Whether an insert on ``connection`` is committed once it returns: jobkit's own
    connection (None), or one outside a transaction (autocommit, not inside ``transaction()``)."""
    return (
        connection is None
        or connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    )


def _in_transaction(connection: Any) -> bool:
    """Whether ``connection`` is in a transaction that may still commit (a failed one, INERROR,
    can only roll back)."""
    return bool(connection.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS)
