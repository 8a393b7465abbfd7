-- Stands in for migration 0011, which another branch adds: delete this file when that one is
-- merged (load_migrations refuses two migrations numbered 0011).
SELECT 1;
