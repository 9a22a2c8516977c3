-- Bookkeeping of the schema itself (repoaudit.store.database).

-- name: record_migration
-- A migration has run: its version, title and when.
INSERT INTO schema_version (version, title, applied_at) VALUES (?, ?, ?);

-- name: record_views
-- views.sql has run: the sha256 of its text and when, replacing the previous record.
INSERT OR REPLACE INTO schema_views (file, sha256, created_at) VALUES ('views.sql', ?, ?);
