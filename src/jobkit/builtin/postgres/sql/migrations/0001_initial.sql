-- The three stages of a job (requests, processes, results) and the workers' heartbeats.
-- One attempt keeps one id through all three tables; job_id is the first attempt's id.

CREATE TABLE {schema}.requests (
    id uuid PRIMARY KEY,
    job_id uuid NOT NULL,
    job_name text NOT NULL,
    parameters jsonb NOT NULL,
    queue text NOT NULL,
    priority integer NOT NULL DEFAULT 0,
    retries integer NOT NULL DEFAULT 0 CHECK (retries >= 0),
    retry_attempt integer NOT NULL DEFAULT 0 CHECK (retry_attempt >= 0),
    concurrency_key text NOT NULL DEFAULT '',
    headers jsonb NOT NULL DEFAULT '{{}}',
    source text NOT NULL DEFAULT '',
    retry_of uuid,
    start_at timestamptz NOT NULL DEFAULT now(),
    created_at timestamptz NOT NULL DEFAULT now(),
    seq bigint GENERATED ALWAYS AS IDENTITY (SEQUENCE NAME {schema}.requests_seq)
);

-- The claim reads this index in order: highest priority, earliest start, first enqueued.
CREATE INDEX requests_claim_order ON {schema}.requests (queue, priority DESC, start_at, seq);
CREATE INDEX requests_concurrency_key ON {schema}.requests (job_name, concurrency_key)
    WHERE concurrency_key <> '';

CREATE TABLE {schema}.processes (
    id uuid PRIMARY KEY,
    job_id uuid NOT NULL,
    job_name text NOT NULL,
    parameters jsonb NOT NULL,
    queue text NOT NULL,
    priority integer NOT NULL,
    retries integer NOT NULL,
    retry_attempt integer NOT NULL,
    concurrency_key text NOT NULL,
    headers jsonb NOT NULL,
    source text NOT NULL,
    retry_of uuid,
    start_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL,
    worker_id uuid NOT NULL,
    claimed_at timestamptz NOT NULL DEFAULT now()
);

-- No index on worker_id: processes holds only the jobs running now, and a scan of it is cheap.
CREATE INDEX processes_concurrency_key ON {schema}.processes (job_name, concurrency_key)
    WHERE concurrency_key <> '';

CREATE TABLE {schema}.results (
    id uuid PRIMARY KEY,
    job_id uuid NOT NULL,
    job_name text NOT NULL,
    parameters jsonb NOT NULL,
    queue text NOT NULL,
    priority integer NOT NULL,
    retries integer NOT NULL,
    retry_attempt integer NOT NULL,
    concurrency_key text NOT NULL,
    headers jsonb NOT NULL,
    source text NOT NULL,
    retry_of uuid,
    start_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL,
    worker_id uuid,
    status text NOT NULL
        CHECK (status IN ('SUCCESSFUL', 'ERRORED', 'DEFERRED', 'LOST', 'CANCELLED')),
    error text NOT NULL DEFAULT '',
    error_type text NOT NULL DEFAULT '',
    started_at timestamptz,
    ended_at timestamptz NOT NULL DEFAULT now(),
    retry_request_id uuid
);

-- Results arrive in ended_at order, so a BRIN index serves the retention delete at a fraction
-- of a b-tree's cost per insert. get_result follows attempts by primary key.
CREATE INDEX results_ended_at ON {schema}.results USING brin (ended_at);

CREATE TABLE {schema}.workers (
    id uuid PRIMARY KEY,
    hostname text NOT NULL,
    pid integer NOT NULL,
    queues text[] NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    last_heartbeat_at timestamptz NOT NULL DEFAULT now()
);
