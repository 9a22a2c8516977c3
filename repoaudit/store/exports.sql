-- Exports (repoaudit.store.exports). What each table's export selects, and the COPY that writes it, are
-- templates in exports.py: they name the table being exported.

-- name: base_tables
-- The database's own tables (no views), by name.
SELECT table_name FROM information_schema.tables
WHERE table_schema = 'main' AND table_type = 'BASE TABLE'
ORDER BY table_name;

-- name: table_columns
SELECT column_name FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position;

-- name: table_column_types
SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position;

