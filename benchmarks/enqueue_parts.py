"""What a single enqueue costs, part by part, beside the raw SQL floor's INSERT.

    python benchmarks/enqueue_parts.py                  # JOBKIT_DATABASE_URL, else embedded
    python benchmarks/enqueue_parts.py --rounds 8 --record

Four ways to insert one job, each in its own autocommit statement, alternated in batches so that
each is measured in the same minutes as the others (this machine's speed changes from hour to
hour); the medians of the batches, in ms a job, wall clock and the client's CPU:

- ``floor``: the shared harness's raw SQL queue, an INSERT into a table with a bigserial key, one
  index and a statement-level NOTIFY trigger, on a plain psycopg connection;
- ``statement``: jobkit's enqueue statement, with the parameters jobkit builds, on a plain psycopg
  connection: what the database spends on a jobkit job, and psycopg;
- ``store``: ``Store.enqueue`` of a built request, through the store's connection pool;
- ``run_in_worker``: what an app calls, with the hooks, the serializer and the enqueue plan.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

FLOOR_SCHEMA = "jobkit_bench_floor"
FLOOR_TABLE = f"""
    CREATE TABLE {FLOOR_SCHEMA}.jobs (
        id bigserial PRIMARY KEY,
        priority int NOT NULL DEFAULT 0,
        payload jsonb NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now());
    CREATE INDEX ON {FLOOR_SCHEMA}.jobs (priority DESC, id);
    CREATE FUNCTION {FLOOR_SCHEMA}.wake() RETURNS trigger LANGUAGE plpgsql AS
        $$ BEGIN PERFORM pg_notify('{FLOOR_SCHEMA}', ''); RETURN NULL; END $$;
    CREATE TRIGGER wake AFTER INSERT ON {FLOOR_SCHEMA}.jobs
        FOR EACH STATEMENT EXECUTE FUNCTION {FLOOR_SCHEMA}.wake();
"""
FLOOR_INSERT = f"INSERT INTO {FLOOR_SCHEMA}.jobs (priority, payload) VALUES (0, %s)"


def measure(parts: dict[str, Callable[[int], None]], rounds: int, batch: int) -> dict:
    """Median ms a job of each part, wall clock and client CPU, over ``rounds`` alternations."""
    wall: dict[str, list[float]] = {name: [] for name in parts}
    cpu: dict[str, list[float]] = {name: [] for name in parts}
    for insert in parts.values():  # warm up: connections, prepared statements
        for number in range(20):
            insert(number)
    for _ in range(rounds):
        for name, insert in parts.items():
            began, began_cpu = time.perf_counter(), time.process_time()
            for number in range(batch):
                insert(number)
            wall[name].append((time.perf_counter() - began) / batch * 1000)
            cpu[name].append((time.process_time() - began_cpu) / batch * 1000)
    return {
        name: {"wall_ms": statistics.median(wall[name]), "cpu_ms": statistics.median(cpu[name])}
        for name in parts
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=8, help="alternations of the four parts")
    parser.add_argument("--batch", type=int, default=300, help="enqueues a part does a round")
    parser.add_argument("--record", action="store_true", help="write benchmarks/results/*.json")
    args = parser.parse_args()

    import attrs
    import psycopg
    from bench_jobs import Noop

    from jobkit.builtin.postgres.store import _enqueue_params
    from jobkit.records import new_attempt_id
    from jobkit.runtime import get_runtime

    runtime = get_runtime()
    store = runtime.store
    store.migrate()
    store.purge()
    request = runtime.build_request(Noop(0))

    def fresh() -> list:
        """The built request with new ids (building it again would be the client's work)."""
        return [attrs.evolve(request, id=new_attempt_id(), job_id=new_attempt_id())]

    connection = psycopg.connect(store.url, autocommit=True)
    connection.execute(f"DROP SCHEMA IF EXISTS {FLOOR_SCHEMA} CASCADE")
    connection.execute(f"CREATE SCHEMA {FLOOR_SCHEMA}")
    connection.execute(FLOOR_TABLE)
    statement = store.queries["enqueue"]
    parts: dict[str, Callable[[int], None]] = {
        "floor": lambda n: connection.execute(FLOOR_INSERT, [json.dumps({"number": n})]),
        "statement": lambda n: connection.execute(statement, _enqueue_params(fresh())).fetchall(),
        "store": lambda n: store.enqueue(fresh()),
        "run_in_worker": lambda n: Noop(n).run_in_worker(),
    }
    try:
        figures = measure(parts, args.rounds, args.batch)
    finally:
        connection.execute(f"DROP SCHEMA {FLOOR_SCHEMA} CASCADE")
        connection.close()
        store.purge()
    floor = figures["floor"]["wall_ms"]
    print(f"{'part':>14}  {'ms a job':>9}  {'client CPU':>10}  {'floor / part':>12}")
    for name, figure in figures.items():
        figure["floor_ratio"] = floor / figure["wall_ms"]
        print(
            f"{name:>14}  {figure['wall_ms']:9.3f}  {figure['cpu_ms']:10.3f}  "
            f"{figure['floor_ratio']:12.2f}"
        )
    if args.record:
        now = datetime.datetime.now(datetime.UTC)
        path = HERE / "results" / f"enqueue-parts-{now:%Y-%m-%dT%H%M}.json"
        payload = {
            "date": now.isoformat(timespec="seconds"),
            "rounds": args.rounds,
            "batch": args.batch,
            "figures": figures,
        }
        path.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"recorded in {path.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
