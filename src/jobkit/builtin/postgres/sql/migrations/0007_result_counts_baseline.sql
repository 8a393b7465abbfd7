-- The result counts' starting point: the results there are, counted in one statement (so in one
-- snapshot) that also drops the changes this snapshot already holds (a data-modifying WITH runs in
-- full, read or not). Changes committed after the snapshot stay and add to it, so the counts are
-- exact while workers keep writing results. A migration of its own, after the triggers' (0006)
-- committed: counting a big results table takes seconds, and nothing here keeps workers from
-- writing results meanwhile.
WITH counted AS (
    DELETE FROM {schema}.result_count_changes RETURNING 1
)
INSERT INTO {schema}.result_counts (queue, status, count)
SELECT queue, status, count(*)
FROM {schema}.results
GROUP BY queue, status;
