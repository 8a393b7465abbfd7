-- jobkit: no transaction
-- The operations API lists results newest first within one status, and within one queue: these
-- indexes let a page read just its rows, in order, however many results are kept. They are built
-- CONCURRENTLY, so workers that keep writing results while a deploy migrates are never blocked;
-- each statement is a transaction of its own, and a build that failed half-way (an invalid index)
-- is dropped and made again by the next `jobkit migrate`.
CREATE INDEX CONCURRENTLY IF NOT EXISTS results_by_status
    ON {schema}.results (status, ended_at, id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS results_by_queue_status
    ON {schema}.results (queue, status, ended_at, id);
