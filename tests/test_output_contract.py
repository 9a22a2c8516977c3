"""The output contract: every verb that prints rows, in every format it offers, on the demo database.

Each output is parsed back (json.loads, the csv module, yaml) and checked against the contract:
timestamps ISO 8601 UTC with Z, integers as integers, lists as arrays (in CSV cells too), one null.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from repoaudit.analysis.queries import load_queries
from repoaudit.cli import main
from repoaudit.model.output import encode, records

ROOT = Path(__file__).resolve().parents[1]
POLICY = ROOT / "data" / "policies" / "native-keep-releases.yaml"
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
LOOKS_LIKE_TIME = re.compile(r"^\d{4}-\d\d-\d\d[ T]\d\d:\d\d")
BAD_NULLS = {"NaN", "nan", "None", "<NA>", "NaT"}


def run(*args) -> str:
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def walk(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from walk(v)
    elif isinstance(value, list):
        for v in value:
            yield from walk(v)
    else:
        yield value


def check_json(text: str):
    data = json.loads(text)
    for value in walk(data):
        assert not isinstance(value, float) or value == value, "NaN in JSON"
        if isinstance(value, str) and LOOKS_LIKE_TIME.match(value):
            assert ISO_Z.match(value), value
        assert value not in BAD_NULLS, value
    return data


def check_csv(text: str):
    rows = list(csv.reader(io.StringIO(text)))
    assert rows and len({len(r) for r in rows}) == 1, "ragged CSV"
    for row in rows[1:]:
        for cell in row:
            assert cell not in BAD_NULLS, row
            if LOOKS_LIKE_TIME.match(cell):
                assert ISO_Z.match(cell), cell
            if cell.startswith("[") or cell.startswith("{"):
                json.loads(cell)  # lists and maps are JSON, not Python reprs
    for i, name in enumerate(rows[0]):
        cells = [row[i] for row in rows[1:] if row[i]]
        assert not cells or not all(re.fullmatch(r"-?\d+\.0", c) for c in cells), f"{name}: integers as floats"
    return rows


def check_table(text: str):
    assert text.strip()
    for word in BAD_NULLS:
        assert not re.search(rf"(?<![\w.]){re.escape(word)}(?![\w.])", text), word
    assert not re.search(r"\d\.\d+e\+\d+", text), "bytes in scientific notation"


CHECK = {"json": check_json, "csv": check_csv, "table": check_table}


def verbs():
    yield "snapshots", ["snapshots"], ("table", "csv", "json")
    yield "sql", ["sql", "SELECT * FROM snapshots"], ("table", "csv", "json")
    yield "queries", ["queries"], ("table", "csv", "json")
    yield "status", ["status"], ("table", "csv", "json", "yaml")
    yield "history", ["history", "payments/ledger:stable"], ("table", "csv", "json")
    yield "posture", ["posture"], ("table", "csv", "json")
    yield "retention-plan", ["retention", "plan", "--policy", POLICY], ("table", "csv", "json")
    for name in load_queries():
        yield f"query-{name}", ["query", name], ("table", "csv", "json")


CASES = [pytest.param(args, fmt, id=f"{verb}-{fmt}") for verb, args, fmts in verbs() for fmt in fmts]


@pytest.mark.parametrize("args, fmt", CASES)
def test_every_verb_every_format(demo_db, args, fmt):
    needs_db = args[0] != "queries"
    text = run(*args, *(["--db", demo_db] if needs_db else []), "--format", fmt)
    if fmt == "yaml":
        docs = list(yaml.safe_load_all(text))
        assert docs and all(isinstance(d, dict) for d in docs)
        check_json(json.dumps(docs, default=str))
        return
    CHECK[fmt](text)


@pytest.mark.parametrize("name", ["snapshots", "tags", "stale_images"])
def test_export_csv(demo_db, tmp_path, name):
    path = tmp_path / f"{name}.csv"
    run("export", name, "--db", demo_db, "--csv", path)
    assert check_csv(path.read_text()) == check_csv(run("export", name, "--db", demo_db, "--csv", "-"))


def test_retention_plan_json_has_candidates_and_integer_totals(demo_db):
    plan = check_json(run("retention", "plan", "--policy", POLICY, "--db", demo_db, "--format", "json"))
    [policy] = plan["plans"]
    assert policy["candidates"], "the demo plan should have candidates (their datetimes once crashed)"
    assert isinstance(policy["totals"]["candidate_images"], int)


def test_retention_apply_formats(demo_db, tmp_path):
    plan = tmp_path / "plan.json"
    run("retention", "plan", "--policy", POLICY, "--db", demo_db, "-o", plan)
    for fmt in ("table", "csv", "json"):
        result = CliRunner().invoke(main, ["retention", "apply", str(plan), "--db", str(demo_db), "--format", fmt],
                                    catch_exceptions=False)
        assert result.exit_code == 0, result.output
        CHECK[fmt](result.stdout)


def test_encoder_contract():
    import pandas as pd

    frame = pd.DataFrame({
        "at": [pd.Timestamp("2026-01-31 12:00:00"), pd.NaT],
        "n": [1.0, None],
        "tags": [["a", "b"], None],
        "unique_bytes": [20109820000.0, 5.0],
        "note": [None, "x"],
    })
    assert records(frame) == [
        {"at": "2026-01-31T12:00:00Z", "n": 1, "tags": ["a", "b"], "unique_bytes": 20109820000, "note": None},
        {"at": None, "n": None, "tags": None, "unique_bytes": 5, "note": "x"}]
    rows = list(csv.reader(io.StringIO(encode(frame, "csv"))))
    assert rows[1] == ["2026-01-31T12:00:00Z", "1", '["a","b"]', "20109820000", ""]
    assert rows[2] == ["", "", "", "5", "x"]
    table = encode(frame, "table")
    assert "18.7 GiB" in table and "a, b" in table and "NaN" not in table and "None" not in table
    assert "20109820000" in encode(frame, "table", raw=True)
    digest = "sha256:" + "0123456789abcdef" * 4
    short = encode(pd.DataFrame({"digest": [digest]}), "table")
    assert "sha256:0123456789ab" in short and digest not in short
    assert digest in encode(pd.DataFrame({"digest": [digest]}), "table", raw=True)


def test_what_writers_did_as_json(demo_db, tmp_path):
    """ingest and merge print what they did; --format json makes it one document for scripts."""
    import shutil

    from conftest import FIXTURES

    db = tmp_path / "copy.duckdb"
    shutil.copy(demo_db, db)
    cases = [
        (["ingest", "trivy", FIXTURES / "trivy" / "alpine-310.json"], {"kind": "trivy", "unmatched": 1}),
        (["ingest", "grype", FIXTURES / "grype"], {"kind": "grype"}),
        (["ingest", "pods", FIXTURES / "kubernetes" / "k9s-pod-docker-pullable.json", "--cluster", "c"],
         {"cluster": "c", "unchanged": False}),
    ]
    for args, expected in cases:
        [doc] = check_json(run(*args, "--db", db, "--format", "json"))
        assert expected.items() <= doc.items(), doc
        text = run(*args, "--db", db)  # again, as people read it: already ingested / unchanged
        assert not text.startswith("[")
    merged = check_json(run("merge", db, "-o", tmp_path / "merged.duckdb", "--format", "json"))
    assert [m["registry"] for m in merged] == ["registry.example.com"] and isinstance(merged[0]["tags"], int)


def test_tables_fit_the_terminal_and_pipes_get_whole_lines(demo_db):
    """A terminal's width bounds every line (long cells cut, columns wrapped into blocks); a pipe gets
    each row whole on one line."""
    import repoaudit
    from repoaudit.model.output import to_table

    with repoaudit.open(demo_db, read_only=True) as audit:
        frame = audit.query("stale_repositories")
        wide = audit.query("fixable_critical_deployed")
    for f in (frame, wide):
        fitted = to_table(f, width=80)
        assert max(len(line) for line in fitted.splitlines()) <= 80
        whole = to_table(f)
        assert len(whole.splitlines()) == len(f) + 1
    assert "…" in to_table(wide, width=60)
