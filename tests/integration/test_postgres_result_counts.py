"""The Postgres store's result counts (migrations 6 and 7): exact while workers finish jobs and
fold the counts at the same time, and from the moment a running fleet migrates."""

import json
import secrets
import threading
import uuid

import attrs
import psycopg
import pytest
from psycopg import sql

from jobkit.records import Status, WorkerInfo
from jobkit.runtime import Runtime
from jobkit.testing.store_contract import completion, make_request

STATUSES = [Status.SUCCESSFUL, Status.ERRORED, Status.LOST, Status.CANCELLED]


def finish_some(store, worker_id, batch: int, round_: int) -> None:
    """Enqueue ``batch`` jobs over two queues, claim them and finish them with mixed statuses."""
    queues = ["counts-a", "counts-b"]
    store.enqueue([make_request(queue=queues[n % 2]) for n in range(batch)], connection=None)
    processes = store.claim(worker_id=worker_id, queues=queues, limit=batch)
    store.finish(
        worker_id=worker_id,
        completions=[
            completion(process, STATUSES[(n + round_) % len(STATUSES)])
            for n, process in enumerate(processes)
        ],
    )


def counted(store) -> dict[tuple[str, str], int]:
    """The result counts ``stats`` gives, per queue and status."""
    found = {}
    for queue, counts in store.stats().queues.items():
        for status in STATUSES:
            number = getattr(counts, status.value.lower())
            if number:
                found[queue, status.value] = number
    return found


def actual(url: str, schema: str) -> dict[tuple[str, str], int]:
    """The results there are, counted row by row."""
    with psycopg.connect(url, autocommit=True) as connection:
        rows = connection.execute(
            sql.SQL("SELECT queue, status, count(*) FROM {}.results GROUP BY 1, 2").format(
                sql.Identifier(schema)
            )
        ).fetchall()
    return {(queue, status): number for queue, status, number in rows}


def register(store) -> uuid.UUID:
    info = WorkerInfo(id=uuid.uuid4(), hostname="counts", pid=1, queues=("counts-a", "counts-b"))
    store.register_worker(info)
    return info.id


@pytest.fixture
def fresh_schema(jobkit_settings):
    schema = f"jobkit_counts_{secrets.token_hex(4)}"
    runtimes = []

    def runtime() -> Runtime:
        made = Runtime.from_settings(attrs.evolve(jobkit_settings, schema=schema))
        runtimes.append(made)
        return made

    yield schema, runtime
    for made in runtimes:
        made.close()
    with psycopg.connect(jobkit_settings.database_url, autocommit=True) as connection:
        connection.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
        )


def test_counts_stay_exact_while_workers_finish_and_fold_at_once(jobkit_runtime, jobkit_settings):
    store = jobkit_runtime.store
    done = threading.Event()
    errors: list[BaseException] = []

    def finishing() -> None:
        worker_id = register(store)
        try:
            for round_ in range(15):
                finish_some(store, worker_id, 20, round_)
        except BaseException as error:
            errors.append(error)

    def folding() -> None:
        try:
            while not done.is_set():
                store.maintain()
        except BaseException as error:
            errors.append(error)

    workers = [threading.Thread(target=finishing) for _ in range(3)]
    folders = [threading.Thread(target=folding) for _ in range(2)]
    for thread in workers + folders:
        thread.start()
    for thread in workers:
        thread.join()
    done.set()
    for thread in folders:
        thread.join()

    assert errors == []
    expected = actual(jobkit_settings.database_url, jobkit_settings.schema)
    assert sum(expected.values()) >= 600  # each claims what is there: a few stay pending
    assert counted(store) == expected
    store.maintain()
    assert counted(store) == expected
    store.clear_results(older_than=0)
    assert counted(store) == {}


def test_the_counts_start_exact_when_a_running_fleet_migrates(fresh_schema, jobkit_settings):
    """Results written before migration 6, and while 6 and 7 apply, are each counted once."""
    schema, runtime = fresh_schema
    old = runtime().store
    # The schema as the release before migration 6 left it; this code stands in for that
    # release's workers, and it writes results.output, so migration 10's column is there too.
    outputs = [entry for entry in old.migrations if entry[0].name == "result_outputs"]
    old.migrations = [*old.migrations[:5], *outputs]
    old.migrate()
    worker_id = register(old)
    for round_ in range(5):
        finish_some(old, worker_id, 40, round_)

    writing = threading.Event()
    stop = threading.Event()
    errors: list[BaseException] = []

    def keep_finishing() -> None:
        try:
            round_ = 0
            while not stop.is_set():
                finish_some(old, worker_id, 10, round_)
                round_ += 1
                writing.set()
        except BaseException as error:
            errors.append(error)

    writer = threading.Thread(target=keep_finishing)
    writer.start()
    writing.wait(10)
    triggers, baseline = runtime().store, runtime().store
    triggers.migrations = triggers.migrations[:6]
    baseline.migrations = baseline.migrations[:7]
    try:
        assert triggers.migrate() == ["0006_result_counts"]
        finish_some(old, worker_id, 10, 0)  # between the two migrations, for certain
        assert baseline.migrate() == ["0007_result_counts_baseline"]
        finish_some(old, worker_id, 10, 1)  # the old workers write on after the migration
    finally:
        stop.set()
        writer.join()

    assert errors == []
    expected = actual(jobkit_settings.database_url, schema)
    assert sum(expected.values()) >= 5 * 40 + 10 + 10
    assert counted(baseline) == expected
    baseline.maintain()
    assert counted(baseline) == expected


# The plans: what the operations' queries read ----------------------------------------------------


def plan_of(runtime, query: str, params) -> dict:
    """The executed plan (EXPLAIN ANALYZE, JSON) of one of the store's queries."""
    explain = sql.SQL("EXPLAIN (ANALYZE, FORMAT JSON) ") + runtime.store.queries[query]
    with psycopg.connect(runtime.settings.database_url, autocommit=True) as connection:
        return connection.execute(explain, params).fetchone()[0][0]["Plan"]


def scans(plan: dict) -> set[tuple[str, str]]:
    """(node type, index or table) of every scan in ``plan``."""
    found = set()
    if "Relation Name" in plan:
        found.add((plan["Node Type"], plan.get("Index Name") or plan["Relation Name"]))
    for child in plan.get("Plans", []):
        found |= scans(child)
    return found


@pytest.fixture
def many_results(jobkit_runtime, jobkit_settings):
    """20,000 results over 20 queues and the five statuses, analyzed."""
    schema = sql.Identifier(jobkit_settings.schema)
    with psycopg.connect(jobkit_settings.database_url, autocommit=True) as connection:
        connection.execute(
            sql.SQL(
                "INSERT INTO {0}.results (id, job_id, job_name, parameters, queue, priority, "
                "retries, retry_attempt, concurrency_key, headers, source, start_at, created_at, "
                "status, error, error_type, started_at, ended_at) "
                "SELECT id, id, 'app.Job', '{{}}', 'q' || (n % 20), 0, 0, 0, '', '{{}}', '', "
                "now(), now(), (ARRAY['SUCCESSFUL','ERRORED','DEFERRED','LOST','CANCELLED'])"
                "[1 + n % 5], '', '', now(), now() - make_interval(secs => n) "
                "FROM (SELECT n, gen_random_uuid() AS id FROM generate_series(1, 20000) AS n) AS m"
            ).format(schema)
        )
        connection.execute(sql.SQL("ANALYZE {}.results").format(schema))
    return jobkit_runtime


@pytest.mark.parametrize(
    ("query", "filter_", "index"),
    [
        ("list_results", {"states": ("errored",)}, "results_by_status"),
        ("list_results", {"states": ("failed",)}, "results_by_status"),
        (
            "list_results_in_queues",
            {"states": ("errored",), "queues": ("q1",)},
            "results_by_queue_status",
        ),
    ],
)
def test_a_page_of_results_reads_its_index_not_the_table(many_results, query, filter_, index):
    from jobkit.builtin.postgres.store import _filter_params
    from jobkit.records import JobFilter

    params = _filter_params(JobFilter(**filter_)) | {
        "limit": 50,
        "after_at": None,
        "after_id": None,
    }
    read = scans(plan_of(many_results, query, params))
    assert {name for _, name in read} == {index}, read
    assert all(node.startswith("Index") for node, _ in read), read


def test_stats_read_no_result_row(many_results):
    params = {"include_results": True, "heartbeat_timeout": 30.0, "queues": None}
    read = {name for _, name in scans(plan_of(many_results, "stats", params))}
    assert not any(name.startswith("results") for name in read), read
    assert "result_counts" in read or "result_counts_pkey" in read


def test_an_error_text_search_reads_the_trigram_index(many_results, jobkit_settings):
    """Migration 8's trigram index serves the listing's substring match: a rare text is found
    through it, not by reading every result of each status."""
    from jobkit.builtin.postgres.store import _filter_params
    from jobkit.records import JobFilter

    schema = sql.Identifier(jobkit_settings.schema)
    with psycopg.connect(jobkit_settings.database_url, autocommit=True) as connection:
        connection.execute(
            sql.SQL(
                "UPDATE {}.results SET error = 'Traceback ...' || chr(10) || "
                "'ValueError: failed ' || (ctid::text) WHERE status = 'ERRORED'"
            ).format(schema)
        )
        # As autovacuum leaves it in production: the update's dead rows gone, and the trigram
        # index's pending list (its fast-update buffer) merged into it. Left to chance, the
        # pending list's size swayed the planner's cost of the index between runs.
        connection.execute(sql.SQL("VACUUM (ANALYZE) {}.results").format(schema))
    params = _filter_params(JobFilter(error_contains="failed (12,3")) | {
        "limit": 50,
        "after_at": None,
        "after_id": None,
    }
    plan = plan_of(many_results, "list_results", params)
    assert '"Index Name": "results_error_trigrams_of_errors"' in json.dumps(plan), plan
    assert not any(node == "Seq Scan" for node, _ in scans(plan)), plan


@pytest.mark.parametrize("window", [3, 700])
@pytest.mark.parametrize(
    "filter_",
    [
        {"error_contains": "ValueError"},  # held by every errored result
        {"error_contains": "failed 1"},  # by one in nine
        {"error_contains": "failed 123."},  # by one in a thousand
        {"error_contains": "nowhere"},
        {"error_contains": "ValueError", "states": ("failed",)},
        {"error_contains": "failed 1", "queues": ("q1", "q6")},
    ],
)
def test_an_error_text_search_finds_what_reading_everything_finds(
    many_results, jobkit_settings, monkeypatch, window, filter_
):
    """The search reads each status's newest results first, then the rest of those whose
    window may hide a match (PostgresStore._search_results): pages, and the page after, are
    those of a search that reads every result at once."""
    from jobkit.builtin.postgres.store import PostgresStore
    from jobkit.records import JobFilter

    schema = sql.Identifier(jobkit_settings.schema)
    with psycopg.connect(jobkit_settings.database_url, autocommit=True) as connection:
        connection.execute(
            sql.SQL(
                "UPDATE {}.results SET error = 'Traceback ...' || chr(10) || "
                "'ValueError: failed ' || abs(hashtext(id::text)) % 1000 || '.' "
                "WHERE status IN ('ERRORED', 'LOST')"
            ).format(schema)
        )
    store = many_results.store
    job_filter = JobFilter(**filter_)

    def two_pages() -> list[list[uuid.UUID]]:
        first = store.list_attempts(filter=job_filter, limit=40)
        after = (first[-1].at, first[-1].id) if first else None
        second = store.list_attempts(filter=job_filter, limit=40, after=after) if after else []
        return [[attempt.id for attempt in page] for page in (first, second)]

    monkeypatch.setattr(PostgresStore, "SEARCH_WINDOW", 10**9)  # reads everything at once
    expected = two_pages()
    monkeypatch.setattr(PostgresStore, "SEARCH_WINDOW", window)
    assert two_pages() == expected
    if filter_["error_contains"] != "nowhere":
        assert expected[0], "the search should find something"
