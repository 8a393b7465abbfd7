-- What operators do to jobs. A running attempt an operator asked to cancel: its worker ends it and
-- records it CANCELLED, without a rerun. A paused queue: workers claim nothing from it; its jobs
-- stay pending until it is resumed.
ALTER TABLE {schema}.processes ADD COLUMN cancel_requested_at timestamptz;
ALTER TABLE {schema}.processes ADD COLUMN cancel_source text;

CREATE TABLE {schema}.queue_pauses (
    queue text PRIMARY KEY,
    paused_at timestamptz NOT NULL DEFAULT now(),
    source text NOT NULL DEFAULT ''
);
