"""Rate-limit budgets: the headers in every dialect, and a run that stops before --keep-budget, partial.

The registry is a fake with a Docker Hub pull quota: every manifest GET is a pull, a HEAD is free, each
manifest answer says how many pulls remain, and a pull past the limit is refused with 429, as Docker
Hub does. A real registry has no quota to run out of, so this is a fault the fake is for.
"""

from __future__ import annotations

import json

import httpx
import pytest
from click.testing import CliRunner
from fakeregistry import FakeRegistry, FakeRegistryServer, error

import repoaudit
from repoaudit.cli import main
from repoaudit.errors import BudgetExhausted, ConfigError
from repoaudit.model.options import CollectOptions
from repoaudit.model.retry import NO_BACKOFF
from repoaudit.sources.ratelimit import read_rate_limit

URL = "https://registry.test"


class QuotaRegistry(FakeRegistry):
    """Docker Hub's pull quota: ``limit`` manifest GETs, told in ``ratelimit-*`` on manifest answers."""

    def __init__(self, limit: int):
        super().__init__()
        self.limit = limit
        self.pulls = 0
        self.refused = 0

    def handle(self, request: httpx.Request) -> httpx.Response:
        is_manifest = "/manifests/" in request.url.path
        if is_manifest and request.method == "GET":
            if self.pulls >= self.limit:
                self.refused += 1
                return error(429, "TOOMANYREQUESTS", "You have reached your pull rate limit.")
            self.pulls += 1
        response = super().handle(request)
        if is_manifest:
            response.headers["ratelimit-limit"] = f"{self.limit};w=21600"
            response.headers["ratelimit-remaining"] = f"{self.limit - self.pulls};w=21600"
            response.headers["docker-ratelimit-source"] = "192.0.2.1"
        return response


def quota_registry(limit: int) -> QuotaRegistry:
    """Eight repositories of three tags; in each, two tags name the same image (a release and latest)."""
    fake = QuotaRegistry(limit)
    for r in range(8):
        repo = f"team/svc{r}"
        fake.add_image(repo, "1.0", f"{r}-old".encode())
        digest = fake.add_image(repo, "2.0", f"{r}-new".encode())
        fake.tags[repo]["latest"] = digest
    return fake


def collect(tmp_path, fake, **kw):
    with repoaudit.open(tmp_path / "db.duckdb") as audit:
        result = audit.collect(URL, transport=fake.transport(), retry=NO_BACKOFF, progress=False,
                               use_credential_store=False, concurrency=1, **kw)
        repositories = audit.sql("SELECT repository, status, error FROM repositories ORDER BY repository")
        errors = audit.sql("SELECT * FROM collection_errors")
        tags = audit.sql("SELECT repository, tag FROM tags")
        snapshot = audit.sql("SELECT status, error, rate_limit FROM snapshots").iloc[0]
    return result, repositories, errors, tags, snapshot


def test_budget_stop_leaves_a_partial_snapshot_with_the_unreached_repositories_listed(tmp_path):
    fake = quota_registry(limit=12)
    result, repositories, errors, tags, snapshot = collect(tmp_path, fake, keep_budget=5)

    # Stopped on its own before the budget fell below 5, never cut off by the registry.
    assert fake.refused == 0
    assert fake.limit - fake.pulls == 5
    assert result.status == snapshot["status"] == "partial"
    assert "--keep-budget" in snapshot["error"] and "not reached" in snapshot["error"]

    # What was read is whole; the rest is named, in the result, the repositories and the errors.
    read = repositories[repositories.status == "ok"].repository.tolist()
    assert read and result.not_reached
    assert set(read) | set(result.not_reached) == {f"team/svc{r}" for r in range(8)}
    assert not set(read) & set(result.not_reached)
    assert set(tags.repository) >= set(read)
    assert all(len(tags[tags.repository == r]) == 3 for r in read)
    unreached = repositories[repositories.repository.isin(result.not_reached)]
    assert (unreached.status != "ok").all()
    assert unreached.error.str.contains("--keep-budget").all()
    budget_errors = errors[errors.error_type == "BudgetExhausted"]
    assert set(budget_errors.repository) == set(result.not_reached)
    assert json.loads(snapshot["rate_limit"])["ratelimit-remaining"] == "5;w=21600"


def test_a_pull_budget_is_spent_on_images_not_tags(tmp_path):
    """Once the registry shows it counts pulls, tags are resolved with free HEADs: two tags naming the
    same image cost one pull. Only the very first manifest, before any answer told of a quota, is a GET
    by tag."""
    fake = quota_registry(limit=1000)
    result, repositories, _, tags, _ = collect(tmp_path, fake)
    assert result.status == "complete" and not result.not_reached
    assert len(tags) == 24
    images = 16
    assert fake.pulls <= images + 1
    assert result.requests["HEAD manifest"] >= 24 - 1


def test_keep_budget_zero_spends_the_whole_budget_and_still_stops_before_a_429(tmp_path):
    fake = quota_registry(limit=12)
    result, _, _, _, snapshot = collect(tmp_path, fake, keep_budget=0)
    assert fake.pulls == 12 and fake.refused == 0
    assert result.status == "partial" and result.not_reached


def test_a_registry_without_rate_limit_headers_is_never_stopped(tmp_path):
    fake = FakeRegistry()
    for r in range(3):
        fake.add_image(f"team/svc{r}", "1", f"{r}".encode())
    result, _, errors, _, _ = collect(tmp_path, fake, keep_budget=1_000_000)
    assert result.status == "complete" and not result.not_reached and errors.empty


def test_the_cli_lists_the_repositories_not_reached(tmp_path):
    fake = quota_registry(limit=12)
    with FakeRegistryServer(fake) as server:
        out = CliRunner().invoke(main, ["collect", server.url, "--db", str(tmp_path / "db.duckdb"),
                                        "--no-posture", "--no-progress", "--concurrency", "1",
                                        "--max-concurrency", "1", "--keep-budget", "5"])
    assert out.exit_code == 0, out.output
    assert ": partial (full)" in out.output
    listed = next(line for line in out.output.splitlines() if "not reached" in line)
    with repoaudit.open(tmp_path / "db.duckdb", read_only=True) as audit:
        unreached = audit.sql("SELECT repository FROM collection_errors WHERE error_type = 'BudgetExhausted'")
    assert len(unreached) >= 1
    assert all(name in listed for name in unreached.repository)
    assert fake.refused == 0 and fake.limit - fake.pulls == 5

    out = CliRunner().invoke(main, ["collect", server.url, "--keep-budget", "-1"])
    assert out.exit_code == 2 and "-1" in out.output


def test_keep_budget_is_checked_where_the_options_are_built():
    with pytest.raises(ConfigError, match="keep budget"):
        CollectOptions(keep_budget=-1)


@pytest.mark.parametrize("headers, remaining, limit, pulls_only", [
    # Docker Hub: pulls per 6-hour window, named by ;w=
    ({"ratelimit-limit": "100;w=21600", "ratelimit-remaining": "76;w=21600"}, 76, 100, True),
    ({"RateLimit-Limit": "200;w=21600", "RateLimit-Remaining": "0;w=21600",
      "docker-ratelimit-source": "192.0.2.1"}, 0, 200, True),
    # IETF draft (-00 to -06), separate fields; a list names several windows and the smallest counts
    ({"RateLimit-Limit": "10, 10;w=1, 1000;w=3600", "RateLimit-Remaining": "9",
      "RateLimit-Reset": "1"}, 9, 10, False),
    # GitHub, GitLab, Quay, API gateways
    ({"X-RateLimit-Limit": "5000", "X-RateLimit-Remaining": "4999", "X-RateLimit-Reset": "1700000000"},
     4999, 5000, False),
    # IETF draft combined field: -05/-06 and -07 on
    ({"RateLimit": "limit=100, remaining=50, reset=30"}, 50, 100, False),
    ({"RateLimit": '"default";r=50;t=30', "RateLimit-Policy": '"default";q=100;w=60'}, 50, 100, False),
    # two dialects at once: the most restrictive wins
    ({"X-RateLimit-Remaining": "40", "RateLimit-Remaining": "30"}, 30, None, False),
])
def test_rate_limit_dialects(headers, remaining, limit, pulls_only):
    rate = read_rate_limit(httpx.Headers(headers))
    assert (rate.remaining, rate.limit, rate.pulls_only) == (remaining, limit, pulls_only)


@pytest.mark.parametrize("headers", [
    {},
    {"ratelimit-limit": "100;w=21600"},  # a limit alone says nothing of what is left
    {"ratelimit-remaining": "lots"},
    {"X-RateLimit-Remaining": "-3"},
    {"RateLimit": "reset=30"},
])
def test_no_budget_is_read_from_headers_that_do_not_tell_one(headers):
    assert read_rate_limit(httpx.Headers(headers)) is None


def test_what_spends_a_budget():
    hub = read_rate_limit(httpx.Headers({"ratelimit-remaining": "5;w=21600"}))
    assert hub.spends("GET", "manifest")
    assert not hub.spends("HEAD", "manifest") and not hub.spends("GET", "blob") and not hub.spends("GET", "tags")
    api = read_rate_limit(httpx.Headers({"x-ratelimit-remaining": "5"}))
    assert api.spends("HEAD", "manifest") and api.spends("GET", "tags")


def test_budget_exhausted_is_a_registry_error_with_its_reason():
    exc = BudgetExhausted("stopped", registry="r", repository="a/b")
    assert str(exc) == "r/a/b: stopped" and exc.reason == "stopped"
