-- One row per tick of a schedule entry that was enqueued: the primary key is what makes each
-- tick's job enqueued exactly once, however many workers run the scheduler. A scheduler inserts
-- the tick in the same transaction as the job's request, so a worker that dies before its
-- commit leaves neither, and a peer enqueues the tick instead.
CREATE TABLE {schema}.schedule_ticks (
    key text NOT NULL,
    fire_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (key, fire_at)
);
