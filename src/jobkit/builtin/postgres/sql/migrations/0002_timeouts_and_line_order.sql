-- A job's time limit in seconds (NULL: none), carried from request to process to result.
ALTER TABLE {schema}.requests ADD COLUMN timeout double precision CHECK (timeout > 0);
ALTER TABLE {schema}.processes ADD COLUMN timeout double precision;
ALTER TABLE {schema}.results ADD COLUMN timeout double precision;

-- A claimed job keeps its place in line (its request's seq), so that when it goes back to the
-- queue unstarted, or after a fault interrupted it, it is claimed again before later jobs.
ALTER TABLE {schema}.processes ADD COLUMN seq bigint NOT NULL DEFAULT 0;

-- When the attempt started in a pool child (NULL: claimed, not started yet), so the jobs of a
-- dead worker that never started go back to the queue instead of being recorded LOST.
ALTER TABLE {schema}.processes ADD COLUMN started_at timestamptz;
