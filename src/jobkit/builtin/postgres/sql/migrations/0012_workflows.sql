-- Workflows: groups of jobs whose final results release a callback job (fan-out and fan-in),
-- chains built of them, and pipelines. New tables and triggers only, so a running fleet takes it:
-- workers that predate it enqueue no workflow, and their results pass the triggers' WHEN at once.

CREATE TABLE {schema}.workflows (
    id uuid PRIMARY KEY,
    -- The workflow as the caller sees it: a group is its own root; each link of a chain has the
    -- chain's first link as its root.
    root_id uuid NOT NULL,
    -- Its place among its root's links (a chain's order).
    position integer NOT NULL,
    name text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    -- Members that have no final result yet, and members whose final result is not SUCCESSFUL.
    unfinished integer NOT NULL CHECK (unfinished >= 0),
    failed integer NOT NULL DEFAULT 0 CHECK (failed >= 0),
    -- The request held back (start_at far in the future) until every member has ended; NULL: none.
    callback_id uuid,
    -- Whether the callback runs when a member failed (a group's does, a chain's next link not).
    callback_on_failure boolean NOT NULL,
    -- When the callback was released: once per workflow, ever.
    released_at timestamptz
);
CREATE INDEX workflows_root ON {schema}.workflows (root_id);

CREATE TABLE {schema}.workflow_members (
    workflow_id uuid NOT NULL REFERENCES {schema}.workflows ON DELETE CASCADE,
    position integer NOT NULL,
    job_id uuid NOT NULL UNIQUE,
    job_name text NOT NULL,
    -- The member's final result (one no attempt follows): NULL while it has none.
    status text,
    output jsonb,
    result_id uuid,
    ended_at timestamptz,
    PRIMARY KEY (workflow_id, position)
);

-- A member's final result, in the transaction that writes it (the worker's finish, a rescue, an
-- operator's cancel): record it on its member row and, when it was the last member to end,
-- release the callback. The workflow's row lock orders two transactions ending its last two
-- members at the same moment: the second sees the first's count, so the callback is released
-- once. A member retried by an operator after it failed counts again when its new attempt ends.
CREATE FUNCTION {schema}.workflow_member_ended() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    flow {schema}.workflows%ROWTYPE;
    was_status text;
    was_ended boolean;
    callback_queue text;
BEGIN
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

-- Only a workflow member's final result calls the function: a plain job's result is passed over
-- by the WHEN, evaluated as the row is written, with nothing queued for the end of the statement.
-- A DEFERRED result always has a rerun (some are linked to it after their insert).
CREATE TRIGGER workflow_member_ended
AFTER INSERT ON {schema}.results
FOR EACH ROW
WHEN (NEW.headers ? 'jobkit-workflow' AND NEW.retry_request_id IS NULL
      AND NEW.status <> 'DEFERRED')
EXECUTE FUNCTION {schema}.workflow_member_ended();

-- Pipelines (django-db-queue's): a job that runs its steps in order, one attempt per step,
-- sharing a workspace. Its row holds the step to run next (NULL once it ended) and the workspace
-- as saved after the last step that ended, found by content through the GIN index (`@>`).
CREATE TABLE {schema}.pipelines (
    job_id uuid PRIMARY KEY,
    job_name text NOT NULL,
    step text,
    workspace jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX pipelines_workspace ON {schema}.pipelines USING gin (workspace jsonb_path_ops);
-- The pipelines that have not ended, by job and step (`jobkit stats`); ended ones stay out of it.
CREATE INDEX pipelines_at_step ON {schema}.pipelines (job_name, step) WHERE step IS NOT NULL;

-- A pipeline step's result (DEFERRED: the next step follows; SUCCESSFUL: the pipeline ended)
-- carries {{"step": the next step or null, "workspace": ...}} as its output: saved on the
-- pipeline's row in the transaction that writes the result, so the step that runs next, or the
-- retry of one that failed, reads the workspace as it was saved.
CREATE FUNCTION {schema}.pipeline_step_ended() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE {schema}.pipelines
    SET step = NEW.output->>'step', workspace = NEW.output->'workspace', updated_at = now()
    WHERE job_id = NEW.job_id;
    RETURN NULL;
END
$$;

CREATE TRIGGER pipeline_step_ended
AFTER INSERT ON {schema}.results
FOR EACH ROW
WHEN (NEW.headers ? 'jobkit-pipeline' AND NEW.output IS NOT NULL
      AND NEW.status IN ('SUCCESSFUL', 'DEFERRED'))
EXECUTE FUNCTION {schema}.pipeline_step_ended();
