"""Collect jobs from files: each ``-f`` path is a repoaudit config file or Flux YAML, told apart by content."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from repoaudit.errors import ConfigError
from repoaudit.jobs.configfile import load_config
from repoaudit.jobs.flux import load_flux
from repoaudit.jobs.job import CollectJob
from repoaudit.loader import load_documents


def is_repoaudit_config(path: Path) -> bool:
    """A repoaudit config file has a top-level ``registries`` key; anything else is read as Flux YAML."""
    try:
        docs = load_documents(path, kind="flux", empty_ok=True)
    except ConfigError:
        return False  # load_flux reports the error with its line
    return len(docs) == 1 and isinstance(docs[0].body, dict) and "registries" in docs[0].body


def load_jobs(paths: Iterable[str | Path]) -> list[CollectJob]:
    """The collect jobs of repoaudit config files and Flux ``ImageRepository`` objects (files or folders)."""
    paths = [Path(p) for p in paths]
    jobs: list[CollectJob] = []
    flux_paths = []
    for path in paths:
        if path.is_file() and is_repoaudit_config(path):
            jobs.extend(load_config(path))
        else:
            flux_paths.append(path)
    if flux_paths:
        jobs.extend(load_flux(flux_paths))
    if not jobs:
        raise ConfigError(f"no ImageRepository or registries found in {', '.join(map(str, paths))}")
    return jobs
