"""The Parquet lake: `_schema.json` with stable types, and `--append` adds new snapshots as new files
without rewriting the partitions already there."""

from __future__ import annotations

import hashlib
import json

import pytest
from click.testing import CliRunner
from pusher import layer_bytes

import repoaudit
from repoaudit.cli import main
from repoaudit.errors import ConfigError
from repoaudit.store.exports import SCHEMA_FILE, read_lake_schema, read_parquet_sql


def files(lake) -> dict[str, str]:
    return {str(p.relative_to(lake)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(lake.rglob("*.parquet"))}


@pytest.fixture
def db(registry, pusher, tmp_path):
    pusher.push_image("team/app", ["1", "2"], layers=[layer_bytes("app", 1000)])
    with repoaudit.open(tmp_path / "db.duckdb") as audit:
        audit.collect(registry.url, progress=False)
    return tmp_path / "db.duckdb"


def test_append_adds_new_snapshots_and_leaves_old_partitions(db, registry, pusher, tmp_path):
    lake = tmp_path / "lake"
    runner = CliRunner()
    first = runner.invoke(main, ["export", "--db", str(db), "--parquet", str(lake), "--append"])
    assert first.exit_code == 0, first.output
    before = files(lake)
    schema = read_lake_schema(lake)
    tags = schema["tables"]["tags"]
    assert tags["mode"] == "append" and tags["snapshots"] == {"1": 2}
    assert [p["name"] for p in tags["partitions"]] == ["registry", "snapshot_date"]
    # JSON columns are stored as their text, with the database's type kept beside it.
    options = next(c for c in schema["tables"]["snapshots"]["columns"] if c["name"] == "options")
    assert options == {"name": "options", "type": "JSON", "stored_as": "VARCHAR"}

    # Nothing new: nothing appended to the snapshot tables.
    again = runner.invoke(main, ["export", "--db", str(db), "--parquet", str(lake), "--append"])
    assert again.exit_code == 0 and files(lake).keys() >= {k for k in before if k.startswith("tags/")}
    assert {k for k in files(lake) if k.startswith("tags/")} == {k for k in before if k.startswith("tags/")}

    pusher.push_image("team/app", ["3"], layers=[layer_bytes("app3", 1000)])
    with repoaudit.open(db) as audit:
        audit.collect(registry.url, progress=False)
    assert runner.invoke(main, ["export", "--db", str(db), "--parquet", str(lake), "--append"]).exit_code == 0
    after = files(lake)
    for path, digest in before.items():
        if path.startswith(("tags/", "snapshots/", "repositories/")):
            assert after[path] == digest, f"{path} was rewritten"
    assert len([p for p in after if p.startswith("tags/")]) == 2 * len([p for p in before if p.startswith("tags/")])
    assert read_lake_schema(lake)["tables"]["tags"]["snapshots"] == {"1": 2, "2": 3}
    with repoaudit.open(db, read_only=True) as audit:
        for table in ("tags", "snapshots", "manifests", "layers"):
            cols = ", ".join(audit.sql(f"SELECT * FROM {table} LIMIT 0").columns)
            original = audit.sql(f"SELECT {cols} FROM {table}").astype(str)
            back = audit.sql(f"SELECT {cols} FROM {read_parquet_sql(lake, table)}").astype(str)
            key = list(original.columns)
            assert original.sort_values(key).values.tolist() == back.sort_values(key).values.tolist(), table


def test_append_refuses_what_is_not_its_lake(db, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "x.txt").write_text("x")
    with repoaudit.open(db, read_only=True) as audit:
        with pytest.raises(ConfigError, match="not a lake"):
            audit.export_parquet(other, append=True)
        with pytest.raises(ConfigError, match="not both"):
            audit.export_parquet(tmp_path / "new", append=True, overwrite=True)
        lake = tmp_path / "lake"
        audit.export_parquet(lake)
        schema = json.loads((lake / SCHEMA_FILE).read_text())
        next(c for c in schema["tables"]["tags"]["columns"] if c["name"] == "tag")["stored_as"] = "BIGINT"
        (lake / SCHEMA_FILE).write_text(json.dumps(schema))
        with pytest.raises(ConfigError, match=r"column tags\.tag is BIGINT in the lake but VARCHAR"):
            audit.export_parquet(lake, append=True)
        (lake / SCHEMA_FILE).write_text("{not json")
        with pytest.raises(ConfigError, match="not a readable lake schema"):
            audit.export_parquet(lake, append=True)
