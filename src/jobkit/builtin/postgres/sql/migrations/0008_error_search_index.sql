-- jobkit: no transaction
-- The operations API's error-text search (`jobkit jobs --error`, the dashboard's) is a substring
-- match, error ILIKE '%text%', which no b-tree serves: without this index it reads every result
-- the other filters leave (about a second with a million results). A trigram GIN index on error
-- (pg_trgm) answers it from the index. pg_trgm is a trusted extension: a role that may create in
-- the database (its owner, on a managed server too) installs it without being superuser; it goes
-- in the first schema of the search_path (public), where gin_trgm_ops is found, never in jobkit's
-- schema (dropping that schema would drop it for every schema of the database). Built
-- CONCURRENTLY, so workers keep writing results while a deploy migrates.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX CONCURRENTLY IF NOT EXISTS results_error_trigrams
    ON {schema}.results USING gin (error gin_trgm_ops);
