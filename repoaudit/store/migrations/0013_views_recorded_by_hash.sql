-- The views and macros of views.sql are created again whenever its text changes: this table keeps the
-- sha256 of the text they were last created from, which every writable open compares.

-- name: schema
CREATE TABLE schema_views (
    file        VARCHAR PRIMARY KEY,   -- views.sql
    sha256      VARCHAR NOT NULL,      -- of the file's text
    created_at  TIMESTAMP NOT NULL
);
