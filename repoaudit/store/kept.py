"""The tables a commit keeps besides the snapshot's rows: links, integer keys, blob references, latest images.

Their statements are in ``kept.sql``. What stays here as Python are templates over ``_KEYED`` (which
table's which column is keyed from which dictionary): the key lookups are the same join written for
each keyed column, so they are generated from that one table rather than copied out by hand.
"""

from __future__ import annotations

import duckdb

from repoaudit.store.sql import statements

SQL = statements(__package__, "kept.sql")

# Integer keys (schema migration 10): dictionary -> (the column it names, its sequence) ...
_DICTIONARIES = {"digest_keys": ("digest", "digest_key_seq"), "repository_keys": ("repository", "repository_key_seq")}



# ... and the columns keyed from each: (dictionary, table, key column, named column).
_KEYED = (("digest_keys", "manifests", "manifest_key", "digest"),
          ("digest_keys", "manifests", "config_key", "config_digest"),
          ("digest_keys", "layers", "manifest_key", "manifest_digest"),
          ("digest_keys", "layers", "blob_key", "digest"),
          ("digest_keys", "manifest_children", "index_key", "index_digest"),
          ("digest_keys", "manifest_children", "child_key", "child_digest"),
          ("digest_keys", "repository_links", "manifest_key", "digest"),
          ("repository_keys", "repository_links", "repository_key", "repository"),
          ("repository_keys", "repositories", "repository_key", "repository"))



# The blobs of this many manifests are grouped at a time (see parts): at 5 blobs a manifest, the 1,000,000
# manifests of bench/memory.py's largest run grouped in one go outgrew the commit's 128 MB, a quarter fit.
PART_MANIFESTS = 250_000


def parts(con: duckdb.DuckDBPyConnection, manifests: str) -> int:
    """In how many parts to group the blobs of the manifests listed in table ``manifests`` (by blob key modulo
    the parts): a statement per part, each under the memory limit however many manifests a commit brings."""
    return -(-con.execute(f"SELECT count(*) FROM {manifests}").fetchone()[0] // PART_MANIFESTS) or 1



def _key_names(con: duckdb.DuckDBPyConnection, tables: dict[str, str]) -> None:
    """Key every digest or repository name that rows of ``tables`` (table -> relation) leave unkeyed.

    A template: one SELECT per keyed column of the given tables, per dictionary.
    """
    for dictionary, (name, sequence) in _DICTIONARIES.items():
        missing = " UNION ALL ".join(f"SELECT registry, {column} AS name FROM {tables[table]} "
                                     f"WHERE {key} IS NULL AND {column} IS NOT NULL"
                                     for d, table, key, column in _KEYED if d == dictionary and table in tables)
        if missing:
            con.execute(f"""
                INSERT INTO {dictionary} (registry, {name}, key)
                SELECT registry, name, nextval('{sequence}') FROM (
                    SELECT DISTINCT n.registry, n.name FROM ({missing}) n
                    ANTI JOIN {dictionary} k ON k.registry = n.registry AND k.{name} = n.name)""")



def _with_keys(table: str, relation: str, dictionaries: dict[str, str] | None = None) -> str:
    """SELECT of every column of ``relation`` (rows shaped like ``table``) with its NULL keys looked up.

    ``dictionaries`` names where to look each dictionary up (default: the dictionary itself).
    """
    columns = [(d, key, column) for d, t, key, column in _KEYED if t == table]
    where = dictionaries or {}
    joins = " ".join(f"LEFT JOIN {where.get(d, d)} k{i} ON k{i}.registry = t.registry "
                     f"AND k{i}.{_DICTIONARIES[d][0]} = t.{column}"
                     for i, (d, _, column) in enumerate(columns))
    keys = ", ".join(f"coalesce(t.{key}, k{i}.key) AS {key}" for i, (_, key, _) in enumerate(columns))
    return f"SELECT t.* REPLACE ({keys}) FROM {relation} t {joins}" if columns else f"SELECT * FROM {relation}"



def copy_with_keys(con: duckdb.DuckDBPyConnection, tables: dict[str, str]) -> None:
    """INSERT the rows of each relation into its table (table -> relation) with their keys filled in.

    Writing keys as rows arrive, rather than updating them afterwards, keeps the transaction from
    holding an undo copy of every row it touched (the snapshot's new links use it).
    """
    _key_names(con, tables)
    for table, relation in tables.items():
        con.execute(f"INSERT INTO main.{table} BY NAME {_with_keys(table, relation)}")



def fold_links(con: duckdb.DuckDBPyConnection, snapshot_id: int) -> None:
    """Fold one snapshot's (repository, manifest) links into ``repository_links`` (schema migration 9).

    Runs inside the snapshot's transaction, after its row is written. The snapshot may be older than
    some already folded (a merge of old shards), so first and last sightings are compared, not assumed.
    """
    con.execute(SQL["fold_snapshot"], [int(snapshot_id)])
    con.execute(SQL["fold_known_links"])
    con.execute(SQL["fold_new_links"])
    copy_with_keys(con, {"repository_links": "main._repoaudit_new_links"})
    con.execute(SQL["fold_done"])



def assign_keys(con: duckdb.DuckDBPyConnection) -> None:
    """Key every digest and repository name stored without one (schema migration 10), in the caller's transaction.

    Staged rows come in keyed (SnapshotWriter._key_stage) and new links too (copy_with_keys); this catches
    the rest: databases from before the keys, merges, in-memory databases. Only unkeyed rows are read.
    A template over ``_KEYED``: a probe and an UPDATE per table with keyed columns.
    """
    by_table: dict[str, list[tuple[str, str]]] = {}
    for _, table, key, column in _KEYED:
        by_table.setdefault(table, []).append((key, column))
    unkeyed = {table: " OR ".join(f"({key} IS NULL AND {column} IS NOT NULL)" for key, column in columns)
               for table, columns in by_table.items()}
    # A commit usually leaves nothing unkeyed: a row probe per table saves reading every table's key columns.
    unkeyed = {table: where for table, where in unkeyed.items()
               if con.execute(f"SELECT count(*) FROM (SELECT 1 FROM {table} WHERE {where} LIMIT 1)").fetchone()[0]}
    if not unkeyed:
        return
    _key_names(con, {table: table for table in unkeyed})
    for table, where in unkeyed.items():
        columns = by_table[table]
        # One pass per table, matched by rowid: joining the table itself again in UPDATE ... FROM is slower.
        sets = ", ".join(f"{key} = x.{key}" for key, _ in columns)
        relation = f"(SELECT rowid AS row_id, * FROM {table} WHERE {where})"
        con.execute(f"UPDATE {table} SET {sets} FROM ({_with_keys(table, relation)}) x WHERE {table}.rowid = x.row_id")



def count_blob_refs(con: duckdb.DuckDBPyConnection) -> None:
    """Add the blob references of manifests now both stored and reached to ``blob_refs`` (schema migration 10).

    Links are never removed and stored manifests never change, so counting each manifest once, the first
    time it has a manifests row and a link, keeps the table equal to a count over all reached manifests.
    ``manifest_sole_bytes`` (migration 11) is recounted for the manifests whose blobs this changes: the new
    ones, and those that held alone a blob a new one now shares.
    """
    con.execute(SQL["count_new_manifests"])
    con.execute(SQL["count_new_refs_table"])
    count = parts(con, "main._repoaudit_count")
    for part in range(count):
        con.execute(SQL["count_new_refs"], {"parts": count, "part": part})
    for name in ("count_changed_holders", "count_add_known_refs", "count_add_new_refs", "count_mark_counted"):
        con.execute(SQL[name])
    sum_sole_bytes(con, changed_only=True)
    con.execute(SQL["count_done"])



def sum_sole_bytes(con: duckdb.DuckDBPyConnection, *, changed_only: bool = False) -> None:
    """Recount ``manifest_sole_bytes`` from ``blob_refs``: for every manifest, or (``changed_only``, inside
    :func:`count_blob_refs`) for those its working table ``_repoaudit_sole`` lists."""
    if changed_only:
        con.execute(SQL["sole_bytes_clear_changed"])
        con.execute(SQL["sole_bytes_sum_changed"])
    else:
        con.execute(SQL["sole_bytes_clear"])
        con.execute(SQL["sole_bytes_sum"])



def refresh_latest_images(con: duckdb.DuckDBPyConnection, registry: str | None = None) -> None:
    """Recompute ``latest_images`` (schema migration 11) for one registry, or all of them."""
    con.execute(SQL["latest_images_clear"], {"registry": registry})
    con.execute(SQL["latest_images_fill"], {"registry": registry})



def key_and_count(con: duckdb.DuckDBPyConnection) -> None:
    """Keys for everything new, then the blob references of newly reached manifests."""
    assign_keys(con)
    count_blob_refs(con)



def refill_latest(con: duckdb.DuckDBPyConnection) -> None:
    """Count blob references (migration 10), then fill the tables migration 11 adds."""
    count_blob_refs(con)
    sum_sole_bytes(con)
    refresh_latest_images(con)



def maintain(con: duckdb.DuckDBPyConnection, snapshot_id: int) -> None:
    """What a commit keeps besides the rows themselves: the snapshot's links, keys, blob references, and its
    registry's latest images."""
    fold_links(con, snapshot_id)
    key_and_count(con)
    registry = con.execute("SELECT registry FROM snapshots WHERE snapshot_id = ?", [int(snapshot_id)]).fetchone()[0]
    refresh_latest_images(con, registry)



def rebuild_links(con: duckdb.DuckDBPyConnection) -> None:
    """Recompute ``repository_links``, keys, blob references and latest images from every snapshot: for
    plain-SQL databases."""
    con.execute(SQL["rebuild_clear"])
    key_and_count(con)
    refresh_latest_images(con)

