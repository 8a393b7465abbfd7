-- Every query the Postgres store runs, one named block each.
-- A block starts with "-- name: <name>"; the comment lines after it say what it is for.
-- {schema} is the jobkit schema and {channel} the wake-up channel, both filled in as quoted
-- identifiers or literals when the store starts; %(name)s are psycopg parameters.
-- Every time is the database's: now() for the statement's transaction, never the caller's clock.

-- name: bootstrap_migrations
-- The schema and the table that records applied migrations (run before any migration).
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {schema}.migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: lock_migrations
-- Serialize concurrent `jobkit migrate` runs, for the session (some migrations run outside any
-- transaction). A try, repeated by the caller: a run that waited inside a statement would hold a
-- snapshot that CREATE INDEX CONCURRENTLY, in the run that holds the lock, waits out (a deadlock).
SELECT pg_try_advisory_lock(hashtextextended('jobkit migrate ' || %(schema)s, 0));

-- name: unlock_migrations
-- Let the next `jobkit migrate` run.
SELECT pg_advisory_unlock(hashtextextended('jobkit migrate ' || %(schema)s, 0));

-- name: invalid_indexes
-- Indexes of the schema a failed CREATE INDEX CONCURRENTLY left invalid (to drop and build again).
SELECT c.relname
FROM pg_index AS i
JOIN pg_class AS c ON c.oid = i.indexrelid
JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND NOT i.indisvalid;

-- name: applied_migrations
-- The versions already applied.
SELECT version FROM {schema}.migrations ORDER BY version;

-- name: record_migration
-- Note that a migration was applied.
INSERT INTO {schema}.migrations (version, name) VALUES (%(version)s, %(name)s);

-- name: latest_migration
-- The newest applied version, to check the schema is up to date (fails if not migrated).
SELECT coalesce(max(version), 0) FROM {schema}.migrations;

-- name: enqueue
-- Insert requests in one statement and notify each queue at commit. %(rows)s is one JSON
-- array of rows, each [id, job_id, job_name, parameters (JSON text), queue, priority, retries,
-- retry_attempt, concurrency_key, headers (JSON text), source, retry_of, start_at (epoch
-- seconds or null), delay (seconds), timeout (seconds or null)]: one jsonb parameter, parsed once, is far faster than
-- many array parameters (and than json, whose ->> parses each element again).
-- Rows keep their order, so bulk inserts stay first-in first-out.
WITH inserted AS (
    INSERT INTO {schema}.requests (
        id, job_id, job_name, parameters, queue, priority, retries, retry_attempt,
        concurrency_key, headers, source, retry_of, start_at, timeout
    )
    SELECT
        (r->>0)::uuid, (r->>1)::uuid, r->>2, (r->>3)::jsonb, r->>4, (r->>5)::integer,
        (r->>6)::integer, (r->>7)::integer, r->>8, (r->>9)::jsonb, r->>10, (r->>11)::uuid,
        coalesce(to_timestamp((r->>12)::float8), now() + make_interval(secs => (r->>13)::float8)),
        (r->>14)::float8
    FROM jsonb_array_elements(%(rows)s::jsonb) WITH ORDINALITY AS e(r, position)
    ORDER BY e.position
    RETURNING id, queue, start_at, created_at
),
notified AS (
    SELECT pg_notify({channel}, queue) FROM (SELECT DISTINCT queue FROM inserted) AS queues
)
SELECT id, start_at, created_at FROM inserted
WHERE (SELECT count(*) FROM notified) >= 0;

-- name: find_active
-- The pending requests and the claimed or running attempts of a job class, optionally with one
-- concurrency key. One statement, so one snapshot: a job claimed meanwhile is in exactly one of
-- the two lists (read by two statements, it could be in neither: gone from requests when they
-- are read, not yet in processes when those were). Rows are ('requested', the request's
-- columns, NULL, NULL) in enqueue order, then ('processing', the process's columns) in claim
-- order.
SELECT
    kind, id, job_id, job_name, parameters::text, queue, priority, retries, retry_attempt,
    concurrency_key, headers::text, source, retry_of, start_at, created_at, timeout,
    worker_id, claimed_at
FROM (
    SELECT
        'requested' AS kind, id, job_id, job_name, parameters, queue, priority, retries,
        retry_attempt, concurrency_key, headers, source, retry_of, start_at, created_at,
        timeout, NULL::uuid AS worker_id, NULL::timestamptz AS claimed_at, seq
    FROM {schema}.requests
    WHERE job_name = %(job_name)s
      AND (%(concurrency_key)s::text IS NULL OR concurrency_key = %(concurrency_key)s)
    UNION ALL
    SELECT
        'processing', id, job_id, job_name, parameters, queue, priority, retries,
        retry_attempt, concurrency_key, headers, source, retry_of, start_at, created_at,
        timeout, worker_id, claimed_at, seq
    FROM {schema}.processes
    WHERE job_name = %(job_name)s
      AND (%(concurrency_key)s::text IS NULL OR concurrency_key = %(concurrency_key)s)
) AS active
ORDER BY kind DESC, claimed_at, seq;

-- name: seconds_until_next_start
-- How long until the earliest request of the worker's queues that is not ready yet.
SELECT extract(epoch FROM min(start_at) - now())::float8
FROM {schema}.requests
WHERE queue = ANY(%(queues)s::text[]) AND start_at > now();

-- name: finish_and_claim
-- The worker's round trip, one statement (so one round trip and one commit): write results for
-- the worker's completed processes, enqueue the retries and deferrals they ask for, and claim up
-- to %(limit)s ready requests of %(queues)s.
--   Finish: delete each process the worker still owns and insert its result. A process it no
--   longer owns (rescued by another worker) is not in "done" and gets no second result.
--   %(outcomes)s is one jsonb array of [id, status, error, error_type, started_at, ended_at
--   (epoch seconds, database clock), rerun_in (seconds or null), rerun_uses_retry, hold_rerun
--   (seconds or null: the rerun waits that long at most, for on_aborted, unless released),
--   output (the JSON text of what run() returned, as a string; null when it returned None)].
--   Claim: each queue's head is read in index order (priority, start, enqueue order) with its
--   own LIMIT, so a claim reads a few index entries however many requests wait; the heads are
--   merged. SKIP LOCKED lets concurrent claims pass each other; a row is moved by only one.
--   %(started)s is a jsonb array of [id, started_at (epoch seconds)] of attempts that started
--   running since the last round trip (never ones finished in this one): their processes get
--   started_at, so a rescue can tell them from attempts that never ran.
-- The claim is the claim_ctes block, which names the requests it claims with the ready_requests
-- block (ready_requests_within_limits when the worker keeps flow limits), put in their places
-- when the store starts.
-- Rows come back as ('finished', id, retry_request_id) or ('claimed', the process's columns).
WITH started AS (
    UPDATE {schema}.processes AS p
    SET started_at = to_timestamp((s->>1)::float8)
    FROM jsonb_array_elements(%(started)s::jsonb) AS s
    WHERE p.id = (s->>0)::uuid AND p.worker_id = %(worker_id)s AND p.started_at IS NULL
),
outcome AS (
    SELECT
        (o->>0)::uuid AS id, o->>1 AS status, o->>2 AS error, o->>3 AS error_type,
        to_timestamp((o->>4)::float8) AS ran_from, to_timestamp((o->>5)::float8) AS ran_to,
        (o->>6)::float8 AS rerun_in, (o->>7)::boolean AS rerun_uses_retry,
        (o->>8)::float8 AS hold_rerun, (o->>9)::jsonb AS output
    FROM jsonb_array_elements(%(outcomes)s::jsonb) AS o
),
done AS (
    DELETE FROM {schema}.processes AS p
    USING outcome AS o
    WHERE p.id = o.id AND p.worker_id = %(worker_id)s
    RETURNING p.*, o.status, o.error, o.error_type, o.ran_from, o.ran_to, o.rerun_in,
        o.rerun_uses_retry, o.hold_rerun, o.output
),
rerun AS (
    -- A job a fault interrupted (LOST, CANCELLED) goes back to its place in line: its start
    -- time and seq. A retry after an error, or a deferral, waits its delay and queues behind
    -- the jobs already ready. A held rerun waits for its hold too (release_held_rerun ends it
    -- once on_aborted returned), keeping its place in line.
    INSERT INTO {schema}.requests (
        id, job_id, job_name, parameters, queue, priority, retries, retry_attempt,
        concurrency_key, headers, source, retry_of, start_at, timeout, seq
    )
    OVERRIDING SYSTEM VALUE
    SELECT
        -- A new attempt id as jobkit.records.new_attempt_id makes one (the UUID version 7 layout:
        -- the Unix time in milliseconds, then random bits), so results' primary key grows at its
        -- right edge.
        encode(
            set_bit(set_bit(overlay(uuid_send(gen_random_uuid())
                placing substring(int8send((extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                FROM 1 FOR 6), 52, 1), 53, 1),
            'hex')::uuid,
        job_id, job_name, parameters, queue, priority, retries,
        retry_attempt + CASE WHEN rerun_uses_retry THEN 1 ELSE 0 END,
        concurrency_key, headers, source, id,
        CASE
            WHEN hold_rerun IS NOT NULL THEN now() + make_interval(secs => greatest(hold_rerun, rerun_in))
            WHEN back_in_line THEN start_at
            ELSE now() + make_interval(secs => rerun_in)
        END,
        timeout,
        CASE WHEN back_in_line THEN seq ELSE nextval({requests_seq}) END
    FROM (
        SELECT *, status IN ('LOST', 'CANCELLED') AND rerun_in = 0 AS back_in_line FROM done
    ) AS reruns
    WHERE rerun_in IS NOT NULL
    RETURNING id, retry_of, queue
),
notified AS (
    SELECT pg_notify({channel}, queue) FROM (SELECT DISTINCT queue FROM rerun) AS queues
),
finished AS (
    INSERT INTO {schema}.results (
        id, job_id, job_name, parameters, queue, priority, retries, retry_attempt,
        concurrency_key, headers, source, retry_of, start_at, created_at, timeout, worker_id,
        status, error, error_type, started_at, ended_at, retry_request_id, output
    )
    SELECT
        d.id, d.job_id, d.job_name, d.parameters, d.queue, d.priority, d.retries,
        d.retry_attempt, d.concurrency_key, d.headers, d.source, d.retry_of, d.start_at,
        d.created_at, d.timeout, d.worker_id, d.status, d.error, d.error_type,
        coalesce(d.ran_from, d.started_at), d.ran_to, rerun.id, d.output
    FROM done AS d
    LEFT JOIN rerun ON rerun.retry_of = d.id
    RETURNING id, retry_request_id
),
{claim_ctes}
SELECT
    'finished' AS kind, id, retry_request_id, NULL::uuid AS job_id, NULL AS job_name,
    NULL AS parameters, NULL AS queue, NULL::integer AS priority, NULL::integer AS retries,
    NULL::integer AS retry_attempt, NULL AS concurrency_key, NULL AS headers, NULL AS source,
    NULL::uuid AS retry_of, NULL::timestamptz AS start_at, NULL::timestamptz AS created_at,
    NULL::uuid AS worker_id, NULL::timestamptz AS claimed_at, NULL::float8 AS timeout
FROM finished
WHERE (SELECT count(*) FROM notified) >= 0
UNION ALL
{claimed_rows};

-- name: claim
-- finish_and_claim for a round trip with nothing to finish and no start to mark (an idle worker
-- woken by a new job, a worker's first claim): the claim alone, the same blocks. Skipping the
-- finish's empty parts saves a fifth to a quarter of the statement's time, most of it on the
-- latency of the first job after an idle spell.
WITH {claim_ctes}
{claimed_rows};

-- name: claim_ctes
-- The claim, as the last CTEs of finish_and_claim and claim: the requests ready_requests names
-- move to processes, owned by %(worker_id)s, in claim order.
ready AS (
    {ready_requests}
),
moved AS (
    DELETE FROM {schema}.requests AS r
    USING ready
    WHERE r.id = ready.id
    RETURNING r.*
),
claimed AS (
    INSERT INTO {schema}.processes (
        id, job_id, job_name, parameters, queue, priority, retries, retry_attempt,
        concurrency_key, headers, source, retry_of, start_at, created_at, timeout, seq,
        worker_id
    )
    SELECT
        id, job_id, job_name, parameters, queue, priority, retries, retry_attempt,
        concurrency_key, headers, source, retry_of, start_at, created_at, timeout, seq,
        %(worker_id)s
    FROM moved
    ORDER BY priority DESC, start_at, seq
    RETURNING *
)

-- name: claimed_rows
-- The claimed processes as finish_and_claim and claim return them: ('claimed', the process's
-- columns), read by _process_from_row.
SELECT
    'claimed', id, NULL, job_id, job_name, parameters::text, queue, priority, retries,
    retry_attempt, concurrency_key, headers::text, source, retry_of, start_at, created_at,
    worker_id, claimed_at, timeout
FROM claimed

-- name: ready_requests
-- The claim's choice (no flow limits): the ready requests to claim, by id.
SELECT head.id
FROM unnest(%(queues)s::text[]) AS q(name)
-- A paused queue is not claimed from (its jobs stay pending until it is resumed).
CROSS JOIN LATERAL (
    SELECT id, priority, start_at, seq
    FROM {schema}.requests
    WHERE queue = q.name AND start_at <= now()
    ORDER BY priority DESC, start_at, seq
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
) AS head
WHERE NOT EXISTS (SELECT 1 FROM {schema}.queue_pauses AS paused WHERE paused.queue = q.name)
ORDER BY head.priority DESC, head.start_at, head.seq
LIMIT %(limit)s

-- name: ready_requests_within_limits
-- finish_and_claim's claim for a worker that keeps flow limits, run after lock_limits in the same
-- transaction (so it sees every claim that committed before it took the locks). %(limits)s is a
-- jsonb array of [key, scope, name, max_running, max_starts, per]. Each limit's room is what
-- neither its running count (processes of its scope, less those this round trip finishes) nor
-- its starts within the window (limit_starts) leave. Each queue's head is read as
-- ready_requests reads it, passing over the requests of limits with no room (so they do not
-- block the rest of their queue); of the heads, a request is taken only while every limit it
-- counts in still has room, in claim order.
WITH limits AS (
    SELECT
        l->>0 AS key, l->>1 AS scope, l->>2 AS name, (l->>3)::integer AS max_running,
        (l->>4)::integer AS max_starts, (l->>5)::float8 AS per
    FROM jsonb_array_elements(%(limits)s::jsonb) AS l
),
room AS (
    SELECT
        limits.key, limits.scope, limits.name,
        least(
            limits.max_running - (
                SELECT count(*) FROM {schema}.processes AS p
                WHERE limits.name = CASE limits.scope
                        WHEN 'queue' THEN p.queue
                        WHEN 'job_name' THEN p.job_name
                        ELSE p.concurrency_key
                    END
                  AND NOT (p.worker_id = %(worker_id)s AND p.id IN (SELECT id FROM outcome))
            ),
            limits.max_starts - (
                SELECT count(*)
                FROM {schema}.limit_starts AS s, unnest(s.starts) AS started(at)
                WHERE s.key = limits.key
                  AND started.at > statement_timestamp() - make_interval(secs => limits.per)
            )
        ) AS room
    FROM limits
),
closed AS (
    SELECT
        coalesce(array_agg(name) FILTER (WHERE scope = 'queue'), '{{}}') AS queues,
        coalesce(array_agg(name) FILTER (WHERE scope = 'job_name'), '{{}}') AS job_names,
        coalesce(array_agg(name) FILTER (WHERE scope = 'concurrency_key'), '{{}}') AS keys
    FROM room
    WHERE room <= 0
),
heads AS (
    SELECT head.*
    FROM unnest(%(queues)s::text[]) AS q(name)
    CROSS JOIN closed
    CROSS JOIN LATERAL (
        SELECT id, priority, start_at, seq, queue, job_name, concurrency_key
        FROM {schema}.requests
        WHERE queue = q.name AND start_at <= now()
          AND job_name <> ALL(closed.job_names) AND concurrency_key <> ALL(closed.keys)
        ORDER BY priority DESC, start_at, seq
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    ) AS head
    WHERE q.name <> ALL(closed.queues)
      AND NOT EXISTS (SELECT 1 FROM {schema}.queue_pauses AS paused WHERE paused.queue = q.name)
),
places AS (
    SELECT
        heads.id, room.room,
        row_number() OVER (
            PARTITION BY room.key ORDER BY heads.priority DESC, heads.start_at, heads.seq
        ) AS place
    FROM heads
    JOIN room ON room.name = CASE room.scope
            WHEN 'queue' THEN heads.queue
            WHEN 'job_name' THEN heads.job_name
            ELSE heads.concurrency_key
        END
)
SELECT heads.id
FROM heads
-- NOT IN, so the places past a limit's room are found once (NOT EXISTS would number them again
-- for each head).
WHERE heads.id NOT IN (SELECT id FROM places WHERE place > room)
ORDER BY heads.priority DESC, heads.start_at, heads.seq
LIMIT %(limit)s

-- name: bound_idle_transaction
-- The first statement of a worker's transactions of several statements (a claim within flow
-- limits, a finish that wakes queues, a rescue). Only the store's code runs between their
-- statements, so one left idle for seconds belongs to a frozen worker (SIGSTOP, a paused VM), and
-- its locks would stay held for as long as it is frozen: every peer's claim under the same limits
-- would wait for them, and a rescue leaves a worker whose rows are locked alone. The server ends
-- such a session.
SET LOCAL idle_in_transaction_session_timeout = '5s';

-- name: lock_limits
-- Serialize the claims that count against the same flow limits, for the rest of the
-- transaction: one advisory lock per limit key (%(keys)s), taken in one order, so two claimers
-- never wait for each other in a circle. A transaction lock, so a claimer that dies lets go.
SELECT count(pg_advisory_xact_lock(lock_id))
FROM (
    SELECT DISTINCT hashtextextended('jobkit limit ' || %(schema)s || ' ' || key, 0) AS lock_id
    FROM unnest(%(keys)s::text[]) AS k(key)
    ORDER BY lock_id
) AS locks;

-- name: record_starts
-- After a claim within limits, in its transaction: append the claim time of each claimed
-- attempt (%(ids)s) to every rate limit it counts in, keeping the newest max_starts of each.
-- %(limits)s is as for ready_requests_within_limits (rate limits only).
INSERT INTO {schema}.limit_starts AS s (key, starts)
SELECT limits.key, array_agg(statement_timestamp())
FROM jsonb_array_elements(%(limits)s::jsonb) AS l
CROSS JOIN LATERAL (SELECT l->>0 AS key, l->>1 AS scope, l->>2 AS name) AS limits
JOIN {schema}.processes AS p ON limits.name = CASE limits.scope
        WHEN 'queue' THEN p.queue
        WHEN 'job_name' THEN p.job_name
        ELSE p.concurrency_key
    END
WHERE p.id = ANY(%(ids)s::uuid[])
GROUP BY limits.key
ON CONFLICT (key) DO UPDATE
SET starts = (s.starts || excluded.starts)[
    greatest(1, cardinality(s.starts) + cardinality(excluded.starts) - (
        SELECT (l->>4)::integer FROM jsonb_array_elements(%(limits)s::jsonb) AS l
        WHERE l->>0 = s.key
    ) + 1):];

-- name: seconds_until_limits_reopen
-- Seconds until the first of the rate limits %(limits)s (as for ready_requests_within_limits)
-- that has no room now has room again: its oldest start in the window leaves it. NULL if none
-- is full. With %(since)s, a limit that was full then counts too, at 0 or less if it has room
-- again already (the caller's claim at that time found it full).
SELECT extract(epoch FROM min(reopen) - statement_timestamp())::float8
FROM (
    SELECT s.starts[cardinality(s.starts) - (l->>4)::integer + 1]
        + make_interval(secs => (l->>5)::float8) AS reopen
    FROM jsonb_array_elements(%(limits)s::jsonb) AS l
    JOIN {schema}.limit_starts AS s ON s.key = l->>0
    WHERE cardinality(s.starts) >= (l->>4)::integer
) AS full_limits
WHERE reopen > coalesce(%(since)s::timestamptz, statement_timestamp());

-- name: wake_queues
-- Wake the workers of %(queues)s (at commit): a limited attempt of theirs ended, so a claim
-- that a limit held back may take one now.
SELECT count(pg_notify({channel}, queue)) FROM unnest(%(queues)s::text[]) AS q(queue);

-- name: link_reruns
-- Point results at the requests that run their jobs again (a deferral re-enqueued through its
-- lock and should_enqueue, in the transaction that wrote the result; an operator's retry).
-- %(links)s is a jsonb array of [result id, request id].
UPDATE {schema}.results AS r
SET retry_request_id = (l->>1)::uuid
FROM jsonb_array_elements(%(links)s::jsonb) AS l
WHERE r.id = (l->>0)::uuid;

-- name: lock_for_retry
-- The results among %(ids)s that no attempt follows yet, locked for an operator's retry, which
-- links each to its new request in the same transaction; one another transaction is retrying
-- now is skipped (it is taken).
SELECT
    id, job_id, job_name, parameters::text, queue, priority, retries, retry_attempt,
    concurrency_key, headers::text, source, retry_of, start_at, created_at, worker_id,
    status, error, error_type, started_at, ended_at, retry_request_id, timeout
FROM {schema}.results
WHERE id = ANY(%(ids)s::uuid[]) AND retry_request_id IS NULL
ORDER BY ended_at
FOR UPDATE SKIP LOCKED;

-- name: release_held_rerun
-- Let a rerun held for on_aborted start at %(start_at)s (its place in line, or its retry delay
-- after the attempt ended), unless it starts sooner already; wake the workers of its queue.
WITH released AS (
    UPDATE {schema}.requests
    SET start_at = %(start_at)s
    WHERE id = %(id)s AND start_at > %(start_at)s
    RETURNING queue
),
notified AS (
    SELECT pg_notify({channel}, queue) FROM released
)
SELECT count(*) FROM released WHERE (SELECT count(*) FROM notified) >= 0;

-- name: release_processes
-- Put claimed attempts that never started back in the queue, unchanged, for any worker (one an
-- operator cancelled meanwhile ends CANCELLED instead).
WITH released AS (
    DELETE FROM {schema}.processes
    WHERE id = ANY(%(ids)s::uuid[]) AND worker_id = %(worker_id)s
    RETURNING *
),
cancelled AS (
    -- Never started, but an operator cancelled it meanwhile: it ends CANCELLED, not queued.
    INSERT INTO {schema}.results (
        id, job_id, job_name, parameters, queue, priority, retries, retry_attempt,
        concurrency_key, headers, source, retry_of, start_at, created_at, timeout, worker_id,
        status, error, error_type, started_at, ended_at, retry_request_id
    )
    SELECT
        id, job_id, job_name, parameters, queue, priority, retries, retry_attempt,
        concurrency_key, headers, source, retry_of, start_at, created_at, timeout, worker_id,
        'CANCELLED', 'cancelled by an operator (' || coalesce(cancel_source, '') || ')',
        'CancelledByOperator', NULL, now(), NULL
    FROM released
    WHERE cancel_requested_at IS NOT NULL
),
restored AS (
    INSERT INTO {schema}.requests (
        id, job_id, job_name, parameters, queue, priority, retries, retry_attempt,
        concurrency_key, headers, source, retry_of, start_at, created_at, timeout, seq
    )
    OVERRIDING SYSTEM VALUE
    SELECT
        id, job_id, job_name, parameters, queue, priority, retries, retry_attempt,
        concurrency_key, headers, source, retry_of, start_at, created_at, timeout, seq
    FROM released
    WHERE cancel_requested_at IS NULL
    RETURNING id, queue
),
notified AS (
    SELECT pg_notify({channel}, queue) FROM (SELECT DISTINCT queue FROM restored) AS queues
)
SELECT id FROM restored WHERE (SELECT count(*) FROM notified) >= 0;

-- name: release_unknown_processes
-- Put back in the queue, unchanged, the attempts a worker owns in the database but does not
-- hold (a claim whose answer was lost, a release that failed): its processes not in %(known)s.
WITH released AS (
    DELETE FROM {schema}.processes
    WHERE worker_id = %(worker_id)s AND id <> ALL(%(known)s::uuid[])
    RETURNING *
),
cancelled AS (
    -- Never started, but an operator cancelled it meanwhile: it ends CANCELLED, not queued.
    INSERT INTO {schema}.results (
        id, job_id, job_name, parameters, queue, priority, retries, retry_attempt,
        concurrency_key, headers, source, retry_of, start_at, created_at, timeout, worker_id,
        status, error, error_type, started_at, ended_at, retry_request_id
    )
    SELECT
        id, job_id, job_name, parameters, queue, priority, retries, retry_attempt,
        concurrency_key, headers, source, retry_of, start_at, created_at, timeout, worker_id,
        'CANCELLED', 'cancelled by an operator (' || coalesce(cancel_source, '') || ')',
        'CancelledByOperator', NULL, now(), NULL
    FROM released
    WHERE cancel_requested_at IS NOT NULL
),
restored AS (
    INSERT INTO {schema}.requests (
        id, job_id, job_name, parameters, queue, priority, retries, retry_attempt,
        concurrency_key, headers, source, retry_of, start_at, created_at, timeout, seq
    )
    OVERRIDING SYSTEM VALUE
    SELECT
        id, job_id, job_name, parameters, queue, priority, retries, retry_attempt,
        concurrency_key, headers, source, retry_of, start_at, created_at, timeout, seq
    FROM released
    WHERE cancel_requested_at IS NULL
    RETURNING id, queue
),
notified AS (
    SELECT pg_notify({channel}, queue) FROM (SELECT DISTINCT queue FROM restored) AS queues
)
SELECT id FROM restored WHERE (SELECT count(*) FROM notified) >= 0;

-- name: register_worker
-- A worker's heartbeat row, stamped by the database clock when it is written (clock_timestamp(),
-- not now(): a statement that waited on a lock must not stamp the time it started waiting).
INSERT INTO {schema}.workers (id, hostname, pid, queues, started_at, last_heartbeat_at)
VALUES (%(id)s, %(hostname)s, %(pid)s, %(queues)s, clock_timestamp(), clock_timestamp())
RETURNING id, hostname, pid, queues, started_at, last_heartbeat_at;

-- name: heartbeat
-- Record that a worker is alive; the second statement returns the database's time (and nothing if
-- the row is gone). Both go in one message, run by the server as one implicit transaction, so a
-- worker frozen at any moment (SIGSTOP, a paused VM) never holds its own row locked: a peer's
-- rescue, which leaves a locked row alone, would never take its jobs.
-- The first statement waits for whoever holds the worker's row, so that the UPDATE, which then
-- waits for nobody, stamps the time after the wait (an UPDATE that waits for a row lock computes
-- its new values before the wait). The time is when the row is written (clock_timestamp()): a
-- beat held up by a lock on the table must not stamp the moment it started waiting, or peers would
-- think the worker silent longer than it was.
SELECT 1 FROM {schema}.workers WHERE id = %(id)s FOR UPDATE;
UPDATE {schema}.workers
SET last_heartbeat_at = clock_timestamp()
WHERE id = %(id)s
RETURNING last_heartbeat_at;

-- name: unregister_worker
-- Remove a worker's heartbeat row on a clean exit.
DELETE FROM {schema}.workers WHERE id = %(id)s;

-- name: list_workers
-- Every registered worker.
SELECT id, hostname, pid, queues, started_at, last_heartbeat_at
FROM {schema}.workers
ORDER BY started_at;

-- name: dead_workers
-- Workers whose last heartbeat is more than %(timeout)s seconds old by the database clock, and
-- the owners of processes whose worker row is gone (claimed that long ago). The database's own
-- start counts as every worker's heartbeat: after a restart, live workers get a whole timeout to
-- beat again rather than all looking dead because the database was down.
SELECT id
FROM {schema}.workers
WHERE greatest(last_heartbeat_at, pg_postmaster_start_time())
    < now() - make_interval(secs => %(timeout)s)
UNION
SELECT DISTINCT p.worker_id
FROM {schema}.processes AS p
WHERE NOT EXISTS (SELECT 1 FROM {schema}.workers AS w WHERE w.id = p.worker_id)
  AND greatest(p.claimed_at, pg_postmaster_start_time())
    < now() - make_interval(secs => %(timeout)s);

-- name: rescue_lock_timeout
-- A rescue waits at most a second for any lock (a table locked by a migration, rows a live worker
-- is writing): it gives up and tries at the next sweep rather than act on what it read before.
-- (It is also bounded as the worker's other transactions are, by bound_idle_transaction: a
-- rescuer frozen with the dead worker's row locked would keep every other away.)
SET LOCAL lock_timeout = '1s';

-- name: lock_dead_worker
-- Inside the rescue's transaction: whether the worker's heartbeat is still older than %(timeout)s
-- seconds by the database's clock now (clock_timestamp(), after any wait), locking its row so that
-- its next beat waits for the rescue's outcome. NOWAIT: a row someone else holds (its own beat in
-- flight) is left alone. No row: the worker's row is gone, and only its processes are left.
SELECT greatest(last_heartbeat_at, pg_postmaster_start_time())
    < clock_timestamp() - make_interval(secs => %(timeout)s)
FROM {schema}.workers
WHERE id = %(id)s
FOR UPDATE NOWAIT;

-- name: processes_of_workers
-- The processes of the given workers, oldest claim first.
SELECT
    id, job_id, job_name, parameters::text, queue, priority, retries, retry_attempt,
    concurrency_key, headers::text, source, retry_of, start_at, created_at, timeout,
    worker_id, claimed_at, started_at, cancel_source
FROM {schema}.processes
WHERE worker_id = ANY(%(ids)s::uuid[])
ORDER BY claimed_at;

-- name: database_now
-- The database's clock.
SELECT now();

-- name: job_state
-- Where the job of one attempt id is now, in one statement (one snapshot: a job moving from one
-- stage to the next meanwhile is seen in exactly one). Follow its results forward from that id
-- through each result's retry request; the attempt after the last result reached (or the id
-- itself, when it has no result) is looked for among the requests and the processes. Rows are
-- (stage, the columns of every stage's record, NULL where a stage has none): 'processing' or
-- 'requested' for that attempt when it is there, 'finished' for the last result reached; the
-- first row is the answer, none when no attempt has this id.
WITH RECURSIVE attempts AS (
    SELECT r.id, r.retry_request_id, 1 AS depth FROM {schema}.results AS r WHERE r.id = %(id)s
    UNION ALL
    SELECT r.id, r.retry_request_id, a.depth + 1
    FROM {schema}.results AS r
    JOIN attempts AS a ON r.id = a.retry_request_id
),
last_result AS (
    SELECT id, retry_request_id FROM attempts ORDER BY depth DESC LIMIT 1
),
next_attempt AS (
    SELECT CASE WHEN EXISTS (SELECT 1 FROM last_result)
        THEN (SELECT retry_request_id FROM last_result)
        ELSE %(id)s::uuid
    END AS id
)
SELECT
    stage, id, job_id, job_name, parameters::text, queue, priority, retries, retry_attempt,
    concurrency_key, headers::text, source, retry_of, start_at, created_at, timeout,
    worker_id, claimed_at, started_at, status, error, error_type, ended_at, retry_request_id,
    output::text AS output_json
FROM (
    SELECT
        'processing' AS stage, 1 AS rank, p.id, job_id, job_name, parameters, queue, priority,
        retries, retry_attempt, concurrency_key, headers, source, retry_of, start_at,
        created_at, timeout, worker_id, claimed_at, started_at, NULL AS status, NULL AS error,
        NULL AS error_type, NULL::timestamptz AS ended_at, NULL::uuid AS retry_request_id,
        NULL::jsonb AS output
    FROM {schema}.processes AS p JOIN next_attempt AS n ON p.id = n.id
    UNION ALL
    SELECT
        'requested', 2, q.id, job_id, job_name, parameters, queue, priority, retries,
        retry_attempt, concurrency_key, headers, source, retry_of, start_at, created_at,
        timeout, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
    FROM {schema}.requests AS q JOIN next_attempt AS n ON q.id = n.id
    UNION ALL
    SELECT
        'finished', 3, r.id, job_id, job_name, parameters, queue, priority, retries,
        retry_attempt, concurrency_key, headers, source, retry_of, start_at, created_at,
        timeout, worker_id, NULL, started_at, status, error, error_type, ended_at,
        r.retry_request_id, output
    FROM {schema}.results AS r JOIN last_result AS l ON r.id = l.id
) AS found
ORDER BY rank
LIMIT 1;

-- name: stats
-- Counts per queue and stage: ready requests, scheduled requests, processes, results by status.
-- Results are counted from result_counts and the changes not folded into it yet (migration 0006),
-- a few rows however many results are kept.
-- Rows are (queue, figure, count, age). The pending row's age is the seconds since the queue's
-- oldest ready request became ready (now() minus the earliest start_at <= now()): min() comes
-- from the same single pass over requests as the counts, so it costs nothing extra (no index
-- gives it cheaper: the claim index orders by priority before start_at).
-- With %(heartbeat_timeout)s, the registered workers by the rule of dead_workers, as
-- 'workers_stale' and 'workers_active' rows with a NULL queue; with NULL, no worker rows.
-- With %(queues)s, only the jobs of those queues; with NULL, every queue's.
SELECT queue, stage, count(*),
    CASE WHEN stage = 'pending' THEN extract(epoch FROM now() - min(start_at))::float8 END
FROM (
    SELECT queue, start_at,
        CASE WHEN start_at <= now() THEN 'pending' ELSE 'scheduled' END AS stage
    FROM {schema}.requests
    WHERE %(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[])
) AS r
GROUP BY queue, stage
UNION ALL
SELECT queue, 'running', count(*), NULL FROM {schema}.processes
WHERE %(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[])
GROUP BY 1
UNION ALL
SELECT queue, 'paused', 1, NULL FROM {schema}.queue_pauses
WHERE %(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[])
UNION ALL
SELECT queue, lower(status), sum(count)::bigint, NULL
FROM (
    SELECT queue, status, count FROM {schema}.result_counts
    UNION ALL
    SELECT queue, status, change FROM {schema}.result_count_changes
) AS counted
WHERE %(include_results)s AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]))
GROUP BY 1, 2
HAVING sum(count) <> 0
UNION ALL
SELECT
    NULL,
    CASE WHEN greatest(last_heartbeat_at, pg_postmaster_start_time())
            < now() - make_interval(secs => %(heartbeat_timeout)s::float8)
        THEN 'workers_stale' ELSE 'workers_active' END,
    count(*),
    NULL
FROM {schema}.workers
WHERE %(heartbeat_timeout)s::float8 IS NOT NULL
GROUP BY 2;

-- name: fold_result_counts
-- Fold the changes of the result counts into result_counts, in one statement (one snapshot: the
-- changes it deletes are the ones it adds). One fold at a time, by a transaction-level advisory
-- lock that a second fold finds taken and so does nothing (two folds would wait on each other's
-- counter rows). A count that falls to 0 keeps its row (stats leave it out).
WITH folded AS (
    DELETE FROM {schema}.result_count_changes
    WHERE (SELECT pg_try_advisory_xact_lock(hashtextextended('jobkit counts ' || %(schema)s, 0)))
    RETURNING queue, status, change
)
INSERT INTO {schema}.result_counts AS c (queue, status, count)
SELECT queue, status, sum(change)::bigint FROM folded
GROUP BY queue, status
ORDER BY queue, status
ON CONFLICT (queue, status) DO UPDATE SET count = c.count + excluded.count;

-- name: queue_tables_to_vacuum
-- The queue tables that hold more than %(dead_rows)s dead rows. Every job leaves a dead row in
-- requests and in processes, and the claim index keeps an entry for each dead request at its
-- head, where every claim starts reading: until VACUUM removes them, each claim walks past them
-- all (8 ms with a million, against 0.1 ms), however many live rows follow. Autovacuum's rule
-- (a fifth of the live rows) lets a big queue collect hundreds of thousands, and with
-- autovacuum off nothing clears them; so workers VACUUM these themselves (Store.maintain).
SELECT relname
FROM pg_stat_user_tables
WHERE schemaname = %(schema)s
  AND relname IN ('requests', 'processes', 'result_count_changes')
  AND n_dead_tup > %(dead_rows)s;

-- name: try_vacuum_lock
-- One worker vacuums a schema's queue tables at a time: a session-level advisory lock, since
-- VACUUM runs outside a transaction.
SELECT pg_try_advisory_lock(hashtextextended('jobkit vacuum ' || %(schema)s, 0));

-- name: vacuum_unlock
SELECT pg_advisory_unlock(hashtextextended('jobkit vacuum ' || %(schema)s, 0));

-- name: clear_results
-- Delete results that ended before the retention window, a batch at a time.
WITH expired AS (
    SELECT id FROM {schema}.results
    WHERE ended_at < now() - make_interval(secs => %(older_than)s)
    LIMIT %(batch)s
)
DELETE FROM {schema}.results AS r USING expired WHERE r.id = expired.id;

-- name: clear_workflows
-- Delete the workflows that ended before the retention window (every member ended, and the
-- callback, if any, released before it; members go with them). A chain stopped at a failure is
-- kept: retrying the failed job resumes it.
DELETE FROM {schema}.workflows AS w
WHERE w.unfinished = 0
    AND coalesce(
        w.released_at,
        CASE WHEN w.callback_id IS NULL THEN (
            SELECT max(m.ended_at) FROM {schema}.workflow_members AS m WHERE m.workflow_id = w.id
        ) END
    ) < now() - make_interval(secs => %(older_than)s);

-- name: clear_pipelines
-- Delete the pipelines that ended before the retention window.
DELETE FROM {schema}.pipelines
WHERE step IS NULL AND updated_at < now() - make_interval(secs => %(older_than)s);

-- name: clear_ticks
-- Delete schedule ticks older than the retention window, except each entry's latest (which
-- catch_up = "latest" compares the current tick with).
DELETE FROM {schema}.schedule_ticks AS t
WHERE t.fire_at < now() - make_interval(secs => %(older_than)s)
    AND t.fire_at < (SELECT max(fire_at) FROM {schema}.schedule_ticks WHERE key = t.key);

-- name: purge
-- Delete every request, process, result and schedule tick (and workflow and pipeline, which the
-- count leaves out: their jobs are counted).
WITH
    workflows AS (DELETE FROM {schema}.workflows),
    pipelines AS (DELETE FROM {schema}.pipelines),
    requests AS (DELETE FROM {schema}.requests RETURNING 1),
    processes AS (DELETE FROM {schema}.processes RETURNING 1),
    results AS (DELETE FROM {schema}.results RETURNING 1),
    ticks AS (DELETE FROM {schema}.schedule_ticks RETURNING 1)
SELECT (SELECT count(*) FROM requests)
    + (SELECT count(*) FROM processes)
    + (SELECT count(*) FROM results)
    + (SELECT count(*) FROM ticks);

-- name: try_tick_lock
-- Before record_tick, in its transaction: whether no other transaction is recording a tick of the
-- entry %(key)s now. A tick's transaction runs hooks (should_enqueue, the enqueue hooks), so a
-- peer's may stay open for long, or for as long as its worker is frozen; waiting on its row would
-- hold up every other entry of this scheduler, so the caller tries this one again later instead.
SELECT pg_try_advisory_xact_lock(
    hashtextextended('jobkit tick ' || %(schema)s || ' ' || %(key)s, 0)
);

-- name: record_tick
-- Claim a schedule tick inside the enqueue's transaction, after try_tick_lock: a row comes back
-- only for the first caller. A caller that got the lock while another transaction still holds
-- the tick's row (one of a jobkit older than the lock) waits for its end, then gets nothing (or,
-- after a rollback, the tick).
INSERT INTO {schema}.schedule_ticks (key, fire_at) VALUES (%(key)s, %(fire_at)s)
ON CONFLICT DO NOTHING
RETURNING 1;

-- name: last_ticks
-- The latest recorded tick of each key.
SELECT key, max(fire_at) FROM {schema}.schedule_ticks
WHERE key = ANY(%(keys)s)
GROUP BY key;

-- name: listen
-- Subscribe the listener connection to wake-ups.
LISTEN {channel_identifier};

-- name: probe_listener
-- A notification for one listener only (its payload is no queue's name), sent from another
-- connection, to check that the listener still hears.
SELECT pg_notify({channel}, %(payload)s);

-- name: current_transaction
-- The id of the caller's transaction (assigning one if it has written nothing yet), to ask
-- about its fate later from another connection.
SELECT pg_current_xact_id()::text;

-- name: transaction_statuses
-- Each watched transaction's fate: 'committed', 'aborted', 'in progress', or NULL once it is
-- too old for the database to remember.
SELECT xid, pg_xact_status(xid::xid8) FROM unnest(%(xids)s::text[]) AS xid;

-- name: list_requests
-- Operations API, one branch of a listing: waiting attempts (pending: ready now; scheduled:
-- later), newest enqueued first, after the cursor (at, id). %(names)s, %(queues)s, %(key)s,
-- %(since)s, %(until)s are NULL when not filtered on. Requests have no error: a filter on error
-- text leaves none (%(error)s not NULL).
SELECT
    id, job_id, job_name, parameters::text, queue, priority, retries, retry_attempt,
    concurrency_key, headers::text, source, retry_of, start_at, created_at, timeout,
    CASE WHEN start_at <= now() THEN 'pending' ELSE 'scheduled' END AS state,
    created_at AS at
FROM {schema}.requests
WHERE ((%(pending)s AND start_at <= now()) OR (%(scheduled)s AND start_at > now()))
  AND %(error)s::text IS NULL
  AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s))
  AND (%(names)s::text[] IS NULL OR job_name = ANY(%(names)s))
  AND (%(key)s::text IS NULL OR concurrency_key = %(key)s)
  AND (%(since)s::timestamptz IS NULL OR created_at >= %(since)s)
  AND (%(until)s::timestamptz IS NULL OR created_at < %(until)s)
  AND (%(after_at)s::timestamptz IS NULL OR (created_at, id) < (%(after_at)s, %(after_id)s::uuid))
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s;

-- name: list_processes
-- Operations API, one branch of a listing: running (claimed) attempts, newest started (or
-- claimed) first, after the cursor.
SELECT
    id, job_id, job_name, parameters::text, queue, priority, retries, retry_attempt,
    concurrency_key, headers::text, source, retry_of, start_at, created_at, timeout,
    'running' AS state, coalesce(started_at, claimed_at) AS at, worker_id, claimed_at,
    started_at, cancel_requested_at
FROM {schema}.processes
WHERE %(error)s::text IS NULL
  AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s))
  AND (%(names)s::text[] IS NULL OR job_name = ANY(%(names)s))
  AND (%(key)s::text IS NULL OR concurrency_key = %(key)s)
  AND (%(since)s::timestamptz IS NULL OR coalesce(started_at, claimed_at) >= %(since)s)
  AND (%(until)s::timestamptz IS NULL OR coalesce(started_at, claimed_at) < %(until)s)
  AND (%(after_at)s::timestamptz IS NULL
       OR (coalesce(started_at, claimed_at), id) < (%(after_at)s, %(after_id)s::uuid))
ORDER BY at DESC, id DESC
LIMIT %(limit)s;

-- name: list_results
-- Operations API, one branch of a listing: ended attempts, newest first, after the cursor. Each
-- wanted status is read on its own along results_by_status (status, ended_at, id), at most
-- %(limit)s rows each, and the heads merged, as the claim reads each queue's head: a page reads
-- a few index entries however many results are kept. A status with "final" true keeps only the
-- attempts no other attempt follows (the "failed" filter).
SELECT page.*
FROM unnest(%(statuses)s::text[], %(finals)s::boolean[]) AS wanted(status, final)
CROSS JOIN LATERAL (
    SELECT
        id, job_id, job_name, parameters::text, queue, priority, retries, retry_attempt,
        concurrency_key, headers::text, source, retry_of, start_at, created_at, timeout,
        lower(status) AS state, ended_at AS at, worker_id, started_at, ended_at, error,
        error_type, retry_request_id
    FROM {schema}.results
    WHERE status = wanted.status
      AND (NOT wanted.final OR retry_request_id IS NULL)
      AND (%(names)s::text[] IS NULL OR job_name = ANY(%(names)s))
      AND (%(key)s::text IS NULL OR concurrency_key = %(key)s)
      AND (%(since)s::timestamptz IS NULL OR ended_at >= %(since)s)
      AND (%(until)s::timestamptz IS NULL OR ended_at < %(until)s)
      AND (%(error)s::text IS NULL OR (error <> '' AND error ILIKE %(error)s))
      AND (%(after_at)s::timestamptz IS NULL OR (ended_at, id) < (%(after_at)s, %(after_id)s::uuid))
    ORDER BY ended_at DESC, id DESC
    LIMIT %(limit)s
) AS page
ORDER BY page.at DESC, page.id DESC
LIMIT %(limit)s;

-- name: list_results_in_queues
-- list_results for some queues: each (queue, status) read on its own along
-- results_by_queue_status (queue, status, ended_at, id).
SELECT page.*
FROM unnest(%(queues)s::text[]) AS q(queue)
CROSS JOIN unnest(%(statuses)s::text[], %(finals)s::boolean[]) AS wanted(status, final)
CROSS JOIN LATERAL (
    SELECT
        id, job_id, job_name, parameters::text, queue, priority, retries, retry_attempt,
        concurrency_key, headers::text, source, retry_of, start_at, created_at, timeout,
        lower(status) AS state, ended_at AS at, worker_id, started_at, ended_at, error,
        error_type, retry_request_id
    FROM {schema}.results
    WHERE queue = q.queue
      AND status = wanted.status
      AND (NOT wanted.final OR retry_request_id IS NULL)
      AND (%(names)s::text[] IS NULL OR job_name = ANY(%(names)s))
      AND (%(key)s::text IS NULL OR concurrency_key = %(key)s)
      AND (%(since)s::timestamptz IS NULL OR ended_at >= %(since)s)
      AND (%(until)s::timestamptz IS NULL OR ended_at < %(until)s)
      AND (%(error)s::text IS NULL OR (error <> '' AND error ILIKE %(error)s))
      AND (%(after_at)s::timestamptz IS NULL OR (ended_at, id) < (%(after_at)s, %(after_id)s::uuid))
    ORDER BY ended_at DESC, id DESC
    LIMIT %(limit)s
) AS page
ORDER BY page.at DESC, page.id DESC
LIMIT %(limit)s;

-- name: search_recent_results
-- Operations API, an error-text search's first look: in each wanted status, the newest
-- %(window)s results the other filters keep (along results_by_status, as list_results reads),
-- which of them hold the text (at most %(limit)s), how many were read and the oldest. A text
-- that many errors hold is found here in a few milliseconds, where the trigram index would read
-- every match; the store searches the rest of a status only when its window may hide a match
-- the page needs.
SELECT wanted.status, wanted.final, NULL::text AS queue, probe.*
FROM unnest(%(statuses)s::text[], %(finals)s::boolean[]) AS wanted(status, final)
CROSS JOIN LATERAL (
    SELECT
        count(*) AS scanned,
        (array_agg(ended_at ORDER BY ended_at, id))[1] AS oldest_at,
        (array_agg(id ORDER BY ended_at, id))[1] AS oldest_id,
        coalesce(
            (array_agg(id ORDER BY ended_at DESC, id DESC)
                FILTER (WHERE error <> '' AND error ILIKE %(error)s))[1:%(limit)s],
            '{{}}'
        ) AS matches
    FROM (
        SELECT id, ended_at, error FROM {schema}.results
        WHERE status = wanted.status
          AND (NOT wanted.final OR retry_request_id IS NULL)
          AND (%(names)s::text[] IS NULL OR job_name = ANY(%(names)s))
          AND (%(key)s::text IS NULL OR concurrency_key = %(key)s)
          AND (%(since)s::timestamptz IS NULL OR ended_at >= %(since)s)
          AND (%(until)s::timestamptz IS NULL OR ended_at < %(until)s)
          AND (%(after_at)s::timestamptz IS NULL OR (ended_at, id) < (%(after_at)s, %(after_id)s::uuid))
        ORDER BY ended_at DESC, id DESC
        LIMIT %(window)s
    ) AS recent
) AS probe;

-- name: search_recent_results_in_queues
-- search_recent_results for some queues: each (queue, status) read on its own along
-- results_by_queue_status.
SELECT wanted.status, wanted.final, q.queue, probe.*
FROM unnest(%(queues)s::text[]) AS q(queue)
CROSS JOIN unnest(%(statuses)s::text[], %(finals)s::boolean[]) AS wanted(status, final)
CROSS JOIN LATERAL (
    SELECT
        count(*) AS scanned,
        (array_agg(ended_at ORDER BY ended_at, id))[1] AS oldest_at,
        (array_agg(id ORDER BY ended_at, id))[1] AS oldest_id,
        coalesce(
            (array_agg(id ORDER BY ended_at DESC, id DESC)
                FILTER (WHERE error <> '' AND error ILIKE %(error)s))[1:%(limit)s],
            '{{}}'
        ) AS matches
    FROM (
        SELECT id, ended_at, error FROM {schema}.results
        WHERE queue = q.queue AND status = wanted.status
          AND (NOT wanted.final OR retry_request_id IS NULL)
          AND (%(names)s::text[] IS NULL OR job_name = ANY(%(names)s))
          AND (%(key)s::text IS NULL OR concurrency_key = %(key)s)
          AND (%(since)s::timestamptz IS NULL OR ended_at >= %(since)s)
          AND (%(until)s::timestamptz IS NULL OR ended_at < %(until)s)
          AND (%(after_at)s::timestamptz IS NULL OR (ended_at, id) < (%(after_at)s, %(after_id)s::uuid))
        ORDER BY ended_at DESC, id DESC
        LIMIT %(window)s
    ) AS recent
) AS probe;

-- name: results_by_ids
-- Operations API: the results of some attempts, by primary key, as the listings show them.
SELECT
    id, job_id, job_name, parameters::text, queue, priority, retries, retry_attempt,
    concurrency_key, headers::text, source, retry_of, start_at, created_at, timeout,
    lower(status) AS state, ended_at AS at, worker_id, started_at, ended_at, error,
    error_type, retry_request_id
FROM {schema}.results
WHERE id = ANY(%(ids)s::uuid[]);

-- name: count_attempts
-- Operations API: how many attempts a listing's filter matches, up to %(cap)s in each table
-- (NULL: no cap, for the planner's estimate).
SELECT
    (SELECT count(*) FROM (
        SELECT 1 FROM {schema}.requests
        WHERE ((%(pending)s AND start_at <= now()) OR (%(scheduled)s AND start_at > now()))
          AND %(error)s::text IS NULL
          AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s))
          AND (%(names)s::text[] IS NULL OR job_name = ANY(%(names)s))
          AND (%(key)s::text IS NULL OR concurrency_key = %(key)s)
          AND (%(since)s::timestamptz IS NULL OR created_at >= %(since)s)
          AND (%(until)s::timestamptz IS NULL OR created_at < %(until)s)
        LIMIT %(cap)s) AS r),
    (SELECT count(*) FROM (
        SELECT 1 FROM {schema}.processes
        WHERE %(running)s AND %(error)s::text IS NULL
          AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s))
          AND (%(names)s::text[] IS NULL OR job_name = ANY(%(names)s))
          AND (%(key)s::text IS NULL OR concurrency_key = %(key)s)
          AND (%(since)s::timestamptz IS NULL OR coalesce(started_at, claimed_at) >= %(since)s)
          AND (%(until)s::timestamptz IS NULL OR coalesce(started_at, claimed_at) < %(until)s)
        LIMIT %(cap)s) AS p),
    (SELECT count(*) FROM (
        SELECT 1 FROM {schema}.results
        WHERE (status = ANY(%(every)s)
               OR (status = ANY(%(final)s) AND retry_request_id IS NULL))
          AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s))
          AND (%(names)s::text[] IS NULL OR job_name = ANY(%(names)s))
          AND (%(key)s::text IS NULL OR concurrency_key = %(key)s)
          AND (%(since)s::timestamptz IS NULL OR ended_at >= %(since)s)
          AND (%(until)s::timestamptz IS NULL OR ended_at < %(until)s)
          AND (%(error)s::text IS NULL OR (error <> '' AND error ILIKE %(error)s))
        LIMIT %(cap)s) AS d);

-- name: job_attempts
-- Operations API: every attempt of a job, oldest first. Its results are followed from the first
-- attempt (whose id is the job's) through each result's retry request, by primary key; then the
-- attempt that waits or runs now, if any.
WITH RECURSIVE chain AS (
    SELECT r.*, 1 AS depth FROM {schema}.results AS r WHERE r.id = %(job_id)s
    UNION ALL
    SELECT r.*, chain.depth + 1
    FROM {schema}.results AS r
    JOIN chain ON r.id = chain.retry_request_id
),
next AS (
    SELECT coalesce(
        (SELECT retry_request_id FROM chain ORDER BY depth DESC LIMIT 1),
        CASE WHEN NOT EXISTS (SELECT 1 FROM chain) THEN %(job_id)s::uuid END
    ) AS id
)
SELECT
    id, job_id, job_name, parameters::text, queue, priority, retries, retry_attempt,
    concurrency_key, headers::text, source, retry_of, start_at, created_at, timeout,
    lower(status) AS state, ended_at AS at, worker_id, NULL::timestamptz AS claimed_at,
    started_at, ended_at, error, error_type, retry_request_id,
    NULL::timestamptz AS cancel_requested_at, output::text AS output_json, depth
FROM chain
UNION ALL
SELECT
    id, job_id, job_name, parameters::text, queue, priority, retries, retry_attempt,
    concurrency_key, headers::text, source, retry_of, start_at, created_at, timeout, 'running',
    coalesce(started_at, claimed_at), worker_id, claimed_at, started_at, NULL, '', '', NULL,
    cancel_requested_at, NULL, 1000000
FROM {schema}.processes
WHERE id = (SELECT id FROM next)
UNION ALL
SELECT
    id, job_id, job_name, parameters::text, queue, priority, retries, retry_attempt,
    concurrency_key, headers::text, source, retry_of, start_at, created_at, timeout,
    CASE WHEN start_at <= now() THEN 'pending' ELSE 'scheduled' END, created_at, NULL, NULL,
    NULL, NULL, '', '', NULL, NULL, NULL, 1000000
FROM {schema}.requests
WHERE id = (SELECT id FROM next)
ORDER BY depth;

-- name: pause_queue
-- Stop workers claiming from a queue (its jobs stay pending); a queue paused already stays as it
-- was. Returns the pause.
WITH paused AS (
    INSERT INTO {schema}.queue_pauses (queue, source) VALUES (%(queue)s, %(source)s)
    ON CONFLICT (queue) DO NOTHING
    RETURNING queue, paused_at, source, true AS now_paused
)
SELECT queue, paused_at, source, now_paused FROM paused
UNION ALL
SELECT queue, paused_at, source, false FROM {schema}.queue_pauses
WHERE queue = %(queue)s AND NOT EXISTS (SELECT 1 FROM paused);

-- name: resume_queue
-- Let workers claim from a queue again, and wake them; true if it was paused.
WITH resumed AS (
    DELETE FROM {schema}.queue_pauses WHERE queue = %(queue)s RETURNING queue
),
notified AS (
    SELECT pg_notify({channel}, queue) FROM resumed
)
SELECT count(*) > 0 FROM resumed WHERE (SELECT count(*) FROM notified) >= 0;

-- name: paused_queues
-- Every paused queue, with when and by whom.
SELECT queue, paused_at, source FROM {schema}.queue_pauses ORDER BY queue;

-- name: cancel_attempt
-- An operator cancels an attempt. Waiting: it becomes a CANCELLED result with no rerun, in this
-- statement. Running: the request is noted on its process, and its worker is told (a
-- notification on the wake-up channel whose payload names the worker); the worker ends it and
-- writes the result, as only the owner may. Returns ('cancelled', NULL) or ('requested',
-- worker_id), or nothing when the attempt is neither waiting nor running (it ended, or moved
-- between the tables while this statement looked: ask again).
WITH waiting AS (
    DELETE FROM {schema}.requests WHERE id = %(id)s RETURNING *
),
ended AS (
    INSERT INTO {schema}.results (
        id, job_id, job_name, parameters, queue, priority, retries, retry_attempt,
        concurrency_key, headers, source, retry_of, start_at, created_at, timeout, worker_id,
        status, error, error_type, started_at, ended_at, retry_request_id
    )
    SELECT
        id, job_id, job_name, parameters, queue, priority, retries, retry_attempt,
        concurrency_key, headers, source, retry_of, start_at, created_at, timeout, NULL,
        'CANCELLED', %(why)s, 'CancelledByOperator', NULL, now(), NULL
    FROM waiting
    RETURNING id
),
running AS (
    UPDATE {schema}.processes
    SET cancel_requested_at = coalesce(cancel_requested_at, now()),
        cancel_source = coalesce(cancel_source, %(source)s)
    WHERE id = %(id)s AND NOT EXISTS (SELECT 1 FROM waiting)
    RETURNING worker_id
),
told AS (
    SELECT pg_notify({channel}, 'jobkit cancel ' || worker_id::text) FROM running
)
SELECT 'cancelled', NULL::uuid FROM ended
UNION ALL
SELECT 'requested', worker_id FROM running WHERE (SELECT count(*) FROM told) >= 0;

-- name: cancel_requests
-- The attempts of a worker an operator asked to cancel, with who asked.
SELECT id, cancel_source FROM {schema}.processes
WHERE worker_id = %(worker_id)s AND cancel_requested_at IS NOT NULL;

-- name: delete_job
-- An operator deletes a job that does not run: every result of it, found from its first attempt
-- (whose id is the job's) through each result's retry request, by primary key, and the request
-- its latest attempt waits in, if any. Nothing goes when its latest attempt is claimed or running
-- (a running attempt is never deleted). Returns whether it runs, how many rows went, and the ids
-- an attempt of it could have moved to while this statement ran (a claim, a finish that wrote a
-- rerun, an operator's retry: the caller looks for them again before it commits).
WITH RECURSIVE chain AS (
    SELECT r.id, r.retry_request_id, 1 AS depth FROM {schema}.results AS r WHERE r.id = %(job_id)s
    UNION ALL
    SELECT r.id, r.retry_request_id, chain.depth + 1
    FROM {schema}.results AS r
    JOIN chain ON r.id = chain.retry_request_id
),
next AS (
    SELECT coalesce(
        (SELECT retry_request_id FROM chain ORDER BY depth DESC LIMIT 1),
        CASE WHEN NOT EXISTS (SELECT 1 FROM chain) THEN %(job_id)s::uuid END
    ) AS id
),
running AS (
    SELECT id FROM {schema}.processes WHERE id = (SELECT id FROM next)
),
waiting AS (
    DELETE FROM {schema}.requests
    WHERE id = (SELECT id FROM next) AND NOT EXISTS (SELECT 1 FROM running)
    RETURNING id
),
ended AS (
    DELETE FROM {schema}.results
    WHERE id IN (SELECT id FROM chain) AND NOT EXISTS (SELECT 1 FROM running)
    RETURNING retry_request_id
)
SELECT
    EXISTS (SELECT 1 FROM running),
    (SELECT count(*) FROM waiting) + (SELECT count(*) FROM ended),
    array(
        SELECT id FROM next WHERE id IS NOT NULL
        UNION
        SELECT retry_request_id FROM ended WHERE retry_request_id IS NOT NULL
    );

-- name: live_attempts
-- Those of %(ids)s that wait or run now (a fresh look, inside a delete's transaction).
SELECT id FROM {schema}.requests WHERE id = ANY(%(ids)s::uuid[])
UNION ALL
SELECT id FROM {schema}.processes WHERE id = ANY(%(ids)s::uuid[]);

-- name: run_now
-- An operator lets a scheduled attempt start now: its start_at becomes now() (a request that is
-- ready already keeps its place), and the workers of its queue are woken, as an enqueue wakes
-- them. True if it was scheduled.
WITH moved AS (
    UPDATE {schema}.requests
    SET start_at = now()
    WHERE id = %(id)s AND start_at > now()
    RETURNING queue
),
notified AS (
    SELECT pg_notify({channel}, queue) FROM moved
)
SELECT count(*) > 0 FROM moved WHERE (SELECT count(*) FROM notified) >= 0;

-- name: count_results_by_time
-- Operations API: how many results ended in each of the last %(buckets)s buckets of %(bucket)s
-- seconds (the current one, up to now, last), by status, with the start of the current bucket by
-- the database clock (one row of it and NULLs when nothing ended). Buckets start at multiples of
-- their length since 2000-01-01 UTC. Reads results_ended_at (BRIN), so only the blocks of the
-- window.
WITH span AS (
    SELECT date_bin(
        make_interval(secs => %(bucket)s::float8), now(), timestamptz '2000-01-01 00:00:00+00'
    ) AS current_bucket
)
SELECT span.current_bucket, counted.bucket, counted.status, counted.count
FROM span
LEFT JOIN LATERAL (
    SELECT
        date_bin(
            make_interval(secs => %(bucket)s::float8), ended_at,
            timestamptz '2000-01-01 00:00:00+00'
        ) AS bucket,
        status,
        count(*) AS count
    FROM {schema}.results
    WHERE ended_at >= span.current_bucket
        - make_interval(secs => %(bucket)s::float8 * (%(buckets)s - 1))
    GROUP BY 1, 2
) AS counted ON true
ORDER BY counted.bucket, counted.status;

-- name: create_workflows
-- Insert workflows and their members, in the transaction that enqueues the members and the held
-- callbacks. %(workflows)s is a jsonb array of [id, root_id, name, callback_id (or null),
-- callback_on_failure, members: [[job_id, job_name], ...] in order], the links of a root in
-- their order. A member's row refers to its workflow's, checked at the end of the statement.
WITH flows AS (
    INSERT INTO {schema}.workflows (
        id, root_id, position, name, unfinished, callback_id, callback_on_failure
    )
    SELECT
        (w->>0)::uuid, (w->>1)::uuid, (e.position - 1)::integer, w->>2,
        jsonb_array_length(w->5), (w->>3)::uuid, (w->>4)::boolean
    FROM jsonb_array_elements(%(workflows)s::jsonb) WITH ORDINALITY AS e(w, position)
)
INSERT INTO {schema}.workflow_members (workflow_id, position, job_id, job_name)
SELECT (w->>0)::uuid, m.position - 1, (m.member->>0)::uuid, m.member->>1
FROM jsonb_array_elements(%(workflows)s::jsonb) AS w
CROSS JOIN LATERAL jsonb_array_elements(w->5) WITH ORDINALITY AS m(member, position);

-- name: workflow_members
-- The members of one workflow, in order, with their final results so far (what its callback
-- receives).
SELECT job_id, job_name, position, status, output::text AS output_json, ended_at
FROM {schema}.workflow_members
WHERE workflow_id = %(id)s
ORDER BY position;

-- name: create_pipeline
-- Record a pipeline in the transaction that enqueues it: its first step and initial workspace.
INSERT INTO {schema}.pipelines (job_id, job_name, step, workspace)
VALUES (%(job_id)s, %(job_name)s, %(step)s, %(workspace)s::jsonb);

-- name: pipeline
-- One pipeline's step and workspace, as saved after its last step that ended.
SELECT job_id, job_name, step, workspace::text AS workspace_json, created_at, updated_at
FROM {schema}.pipelines
WHERE job_id = %(job_id)s;

-- name: find_pipelines
-- Pipelines whose workspace contains %(workspace)s (jsonb @>, along pipelines_workspace), the
-- most recently updated first.
SELECT job_id, job_name, step, workspace::text AS workspace_json, created_at, updated_at
FROM {schema}.pipelines
WHERE workspace @> %(workspace)s::jsonb
ORDER BY updated_at DESC, job_id
LIMIT %(limit)s;

-- name: workflow_links
-- The links of the workflow %(root_id)s in order (a group has one), each with its members and
-- their final results so far, one row per member.
SELECT
    w.id, w.root_id, w.position AS link_position, w.name, w.created_at, w.unfinished, w.failed,
    w.callback_id, w.callback_on_failure, w.released_at,
    m.job_id, m.job_name, m.position, m.status, m.output::text AS output_json, m.ended_at
FROM {schema}.workflows AS w
JOIN {schema}.workflow_members AS m ON m.workflow_id = w.id
WHERE w.root_id = %(root_id)s
ORDER BY w.position, m.position;

-- name: workflow_of_job
-- The workflow a job belongs to, as a member or as a callback (NULL: none).
SELECT coalesce(
    (SELECT w.root_id FROM {schema}.workflow_members AS m
     JOIN {schema}.workflows AS w ON w.id = m.workflow_id WHERE m.job_id = %(job_id)s),
    (SELECT root_id FROM {schema}.workflows WHERE callback_id = %(job_id)s LIMIT 1)
);

-- name: pipeline_steps
-- How many pipelines that have not ended wait at or run each step, by job name (along
-- pipelines_at_step).
SELECT job_name, step, count(*) FROM {schema}.pipelines
WHERE step IS NOT NULL
GROUP BY job_name, step
ORDER BY job_name, step;
