-- jobkit: no transaction
-- Migration 8's trigram index took an entry for every result, the successful ones too (their
-- error is ''): each result a worker wrote cost a GIN insertion and, now and then, a merge of the
-- index's pending list into the tree, inside a worker's round trip. Only results that hold an
-- error are ever searched for one: the index now covers those alone (the listing's error
-- predicate says error <> '', so the planner may use it). Built CONCURRENTLY, so workers keep
-- writing results while a deploy migrates; the old index is dropped after.
CREATE INDEX CONCURRENTLY IF NOT EXISTS results_error_trigrams_of_errors
    ON {schema}.results USING gin (error gin_trgm_ops) WHERE error <> '';
DROP INDEX CONCURRENTLY IF EXISTS {schema}.results_error_trigrams;
