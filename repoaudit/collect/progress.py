"""Progress for long collections, only for people: a tqdm bar when stderr is a terminal, a widget in
Jupyter, nothing otherwise (a cron job's or CI's log gets the command's summary, not bar frames)."""

from __future__ import annotations

import sys
from typing import Protocol, TextIO


class Progress(Protocol):
    def repositories(self, total: int) -> None: ...
    def tags_found(self, count: int) -> None: ...
    def tag_done(self) -> None: ...
    def repository_done(self) -> None: ...
    def close(self) -> None: ...


class NullProgress:
    def repositories(self, total: int) -> None: pass
    def tags_found(self, count: int) -> None: pass
    def tag_done(self) -> None: pass
    def repository_done(self) -> None: pass
    def close(self) -> None: pass


class TqdmProgress:
    """Two bars, repositories and tags; ``tqdm.auto`` picks the notebook widget inside Jupyter."""

    def __init__(self, label: str = "", *, leave: bool = True):
        from tqdm.auto import (
            tqdm,  # imported here so library users without a terminal pay nothing
        )

        self._tqdm = tqdm
        self._label = label
        self._leave = leave
        self._repos = None
        self._tags = None

    def repositories(self, total: int) -> None:
        self._repos = self._tqdm(total=total, desc=f"{self._label} repositories".strip(), unit="repo",
                                 leave=self._leave, dynamic_ncols=True)
        self._tags = self._tqdm(total=0, desc=f"{self._label} tags".strip(), unit="tag",
                                leave=self._leave, dynamic_ncols=True)

    def tags_found(self, count: int) -> None:
        if self._tags is not None:
            self._tags.total += count
            self._tags.refresh()

    def tag_done(self) -> None:
        if self._tags is not None:
            self._tags.update(1)

    def repository_done(self) -> None:
        if self._repos is not None:
            self._repos.update(1)

    def close(self) -> None:
        for bar in (self._tags, self._repos):
            if bar is not None:
                bar.close()


def in_notebook() -> bool:
    """Whether this runs in a Jupyter kernel (where tqdm.auto draws a widget)."""
    shell = sys.modules.get("IPython")
    get_ipython = getattr(shell, "get_ipython", None)
    return bool(get_ipython and get_ipython() is not None and "IPKernelApp" in getattr(get_ipython(), "config", {}))


def for_people(label: str = "", *, stream: TextIO | None = None) -> Progress:
    """Bars where a person watches (a terminal on stderr, or a notebook), else no progress at all."""
    stream = stream if stream is not None else sys.stderr
    isatty = getattr(stream, "isatty", None)
    if in_notebook() or (isatty is not None and isatty()):
        return TqdmProgress(label)
    return NullProgress()
