-- Counts of results per queue and status, so that `jobkit stats` reads a few rows however many
-- results are kept. Every statement that inserts or deletes results adds its net change per queue
-- and status to result_count_changes, by a statement-level trigger: only inserts, so concurrent
-- workers never wait for one another on a counter row. Workers fold the changes into result_counts
-- now and then (Store.maintain); stats add the two. A result's queue and status never change once
-- it is written, so updates need no trigger. The counts start from the results of the moment
-- migration 0007 runs.
CREATE TABLE {schema}.result_counts (
    queue text NOT NULL,
    status text NOT NULL,
    count bigint NOT NULL,
    PRIMARY KEY (queue, status)
);

CREATE TABLE {schema}.result_count_changes (
    queue text NOT NULL,
    status text NOT NULL,
    change bigint NOT NULL
);

CREATE FUNCTION {schema}.count_inserted_results() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {schema}.result_count_changes (queue, status, change)
    SELECT queue, status, count(*) FROM inserted GROUP BY queue, status;
    RETURN NULL;
END
$$;

CREATE FUNCTION {schema}.count_deleted_results() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {schema}.result_count_changes (queue, status, change)
    SELECT queue, status, -count(*) FROM deleted GROUP BY queue, status;
    RETURN NULL;
END
$$;

CREATE FUNCTION {schema}.count_no_results() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM {schema}.result_counts;
    DELETE FROM {schema}.result_count_changes;
    RETURN NULL;
END
$$;

CREATE TRIGGER results_counted_on_insert AFTER INSERT ON {schema}.results
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.count_inserted_results();

CREATE TRIGGER results_counted_on_delete AFTER DELETE ON {schema}.results
    REFERENCING OLD TABLE AS deleted
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.count_deleted_results();

CREATE TRIGGER results_counted_on_truncate AFTER TRUNCATE ON {schema}.results
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.count_no_results();
