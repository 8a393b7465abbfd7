-- A workflow member's DEFERRED result whose rerun should_enqueue declined is final too. Such a
-- result is written before the decision (its write frees the concurrency key the decision
-- reads), and the rerun, when there is one, is linked to it later in the same transaction. So
-- the member trigger now waits for the commit (a deferred constraint trigger) and reads the
-- result again then: a result still with no rerun has ended its member, DEFERRED included.
-- A function replaced and a trigger made again, in one transaction: a running fleet takes it.

CREATE OR REPLACE FUNCTION {schema}.workflow_member_ended() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    flow {schema}.workflows%ROWTYPE;
    was_status text;
    was_ended boolean;
    callback_queue text;
BEGIN
    -- Read at commit: a rerun linked since the insert means the member has not ended.
    PERFORM 1 FROM {schema}.results WHERE id = NEW.id AND retry_request_id IS NULL;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    SELECT * INTO flow FROM {schema}.workflows
    WHERE id = (NEW.headers->>'jobkit-workflow')::uuid
    FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    SELECT status, status IS NOT NULL INTO was_status, was_ended
    FROM {schema}.workflow_members
    WHERE workflow_id = flow.id AND job_id = NEW.job_id;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    UPDATE {schema}.workflow_members
    SET status = NEW.status, output = NEW.output, result_id = NEW.id, ended_at = NEW.ended_at
    WHERE workflow_id = flow.id AND job_id = NEW.job_id;
    UPDATE {schema}.workflows
    SET unfinished = unfinished - CASE WHEN was_ended THEN 0 ELSE 1 END,
        failed = failed
            - CASE WHEN was_ended AND was_status <> 'SUCCESSFUL' THEN 1 ELSE 0 END
            + CASE WHEN NEW.status <> 'SUCCESSFUL' THEN 1 ELSE 0 END
    WHERE id = flow.id
    RETURNING * INTO flow;
    IF flow.unfinished = 0 AND flow.released_at IS NULL AND flow.callback_id IS NOT NULL
            AND (flow.failed = 0 OR flow.callback_on_failure) THEN
        UPDATE {schema}.workflows SET released_at = now() WHERE id = flow.id;
        UPDATE {schema}.requests SET start_at = now()
        WHERE id = flow.callback_id
        RETURNING queue INTO callback_queue;
        IF callback_queue IS NOT NULL THEN
            PERFORM pg_notify({channel}, callback_queue);
        END IF;
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER workflow_member_ended ON {schema}.results;

-- Only a workflow member's result with no rerun at its insert queues an event (a plain job's
-- result is passed over by the WHEN as the row is written); the function runs at the commit.
CREATE CONSTRAINT TRIGGER workflow_member_ended
AFTER INSERT ON {schema}.results
DEFERRABLE INITIALLY DEFERRED
FOR EACH ROW
WHEN (NEW.headers ? 'jobkit-workflow' AND NEW.retry_request_id IS NULL)
EXECUTE FUNCTION {schema}.workflow_member_ended();
