-- manifests without its PRIMARY KEY (registry, digest). DuckDB keeps a primary key's ART index whole in
-- memory, never evicted: every commit that adds manifests loads it (about 100 MB at a million manifests,
-- growing with the database) and the index of the rows it adds, so a collection's memory grew with the
-- registry whatever its limits. Uniqueness is kept by the writers instead: a collection stores a digest
-- once per run and copies only manifests the database lacks (writer.py, _key_stage), a merge only those
-- its target lacks (merge.sql's new_manifests); tests/test_store.py checks both. DuckDB cannot drop a
-- constraint, so the table is rebuilt, same columns, with registry and digest NOT NULL as before.

-- name: schema
CREATE TABLE _manifests_rebuilt AS SELECT * FROM manifests;
DROP TABLE manifests;
ALTER TABLE _manifests_rebuilt RENAME TO manifests;
ALTER TABLE manifests ALTER COLUMN registry SET NOT NULL;
ALTER TABLE manifests ALTER COLUMN digest SET NOT NULL;
