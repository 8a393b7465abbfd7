-- Flow control: the claim times of each rate-limited key (a queue, a job name or a concurrency
-- key, named like 'queue:emails'), newest last, as many as its max_starts. A claimer that holds
-- the key's advisory lock counts those within the window and appends its own. A new table that
-- only workers with limits read or write: a running fleet takes it, and workers that predate it
-- never touch it.
CREATE TABLE {schema}.limit_starts (
    key text PRIMARY KEY,
    starts timestamptz[] NOT NULL
);
