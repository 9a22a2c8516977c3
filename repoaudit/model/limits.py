"""What one registry may make a run spend, as data injected into a source like the retry policy."""

from __future__ import annotations

from dataclasses import dataclass

KiB = 1024
MiB = 1024 * KiB

# go-containerregistry reads at most this much of an error body; so do we.
_MAX_ERROR_BODY = 64 * KiB


@dataclass(frozen=True)
class Limits:
    """How much one registry may make a run spend; data, injected like the retry policy."""

    manifest_body: int = 4 * MiB  # Distribution refuses to store a larger manifest
    config_body: int = 8 * MiB  # configs with long histories reach about 1 MiB
    page_body: int = 8 * MiB  # one catalog or tag-list page; registries that ignore n send every tag at once
    error_body: int = _MAX_ERROR_BODY  # read this much of an error body, then stop
    token_body: int = 1 * MiB  # a token endpoint's answer (a JWT of a few KiB)
    max_pages: int = 10_000  # 10 million names at n=1000
    max_redirects: int = 5  # S3/GCS-backed blob GETs redirect once
    deadline_factor: float = 4.0  # a whole response within this many per-read timeouts (120 s by default)
    requests_per_repository: int = 1_000  # plus requests_per_tag for each tag listed
    requests_per_tag: int = 100  # HEAD + GET + config, an index's children, and their retries
    breaker: int = 20  # this many requests in a row exhausting their retries stop the run
