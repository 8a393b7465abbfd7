-- What a successful attempt's run() returned, as the serializer's JSON (NULL: it returned None,
-- or the attempt did not succeed). A nullable column without a default: adding it changes only
-- the catalog, at once however many results are kept, so a running fleet takes it; workers that
-- predate it write results without it (NULL), and new workers write it.
ALTER TABLE {schema}.results ADD COLUMN output jsonb;
