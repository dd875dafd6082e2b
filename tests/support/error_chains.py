"""A pytest plugin: an exception caught by ``pytest.raises`` must have a finite chain.

An error that is its own ``__cause__`` (``raise to_error(exc) from exc`` when ``to_error`` hands
the package's own error back) or that reaches itself again through ``__cause__`` and
``__context__`` makes every naive walker of the chain (an error reporter, a log formatter) loop
for ever. Python's traceback printer copes, so no test notices unless it looks: this plugin looks
at every exception a test expects, through ``ExceptionInfo.fill_unfilled``, which both forms of
``pytest.raises`` (and ``pytest.RaisesGroup``) call with what they caught, and fails the test
naming the loop. Registered in ``tests/conftest.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import TracebackType
from typing import Any

import pytest
from _pytest._code.code import ExceptionInfo

__all__ = ["chain_loop", "pytest_configure", "pytest_unconfigure"]

_PATCH_KEY = pytest.StashKey[pytest.MonkeyPatch]()


def _links(exc: BaseException) -> Iterator[tuple[str, BaseException]]:
    """The exceptions ``exc`` points at: its cause, its context and, for a group, its members."""
    if exc.__cause__ is not None:
        yield "__cause__", exc.__cause__
    if exc.__context__ is not None:
        yield "__context__", exc.__context__
    members = getattr(exc, "exceptions", None)  # an exception group (Python 3.11+)
    if isinstance(members, tuple):
        for i, member in enumerate(members):
            if isinstance(member, BaseException):
                yield f"exceptions[{i}]", member


def _name(exc: BaseException) -> str:
    return f"{type(exc).__name__}({str(exc)[:80]!r})"


def chain_loop(exc: BaseException) -> str | None:
    """``None`` when every path from ``exc`` along ``__cause__``, ``__context__`` (and a group's
    members) ends; else the loop, e.g. ``DestinationError('...') is its own __cause__`` or
    ``A -> __context__ -> B -> __cause__ -> A``. Iterative: a long chain cannot hit the recursion limit."""
    finished: set[int] = set()  # every path from these ends
    path: list[tuple[BaseException, str]] = [(exc, "")]  # the walk so far, with the link taken from each
    on_path: dict[int, int] = {id(exc): 0}
    pending: list[Iterator[tuple[str, BaseException]]] = [_links(exc)]
    while pending:
        step = next(pending[-1], None)
        current = path[-1][0]
        if step is None:
            pending.pop()
            path.pop()
            del on_path[id(current)]
            finished.add(id(current))
            continue
        link, target = step
        path[-1] = (current, link)
        if id(target) in on_path:
            start = on_path[id(target)]
            if start == len(path) - 1:
                return f"{_name(current)} is its own {link}"
            return "".join(f"{_name(e)} -> {taken} -> " for e, taken in path[start:]) + _name(target)
        if id(target) not in finished:
            on_path[id(target)] = len(path)
            path.append((target, ""))
            pending.append(_links(target))
    return None


def _checked_fill_unfilled(self: ExceptionInfo[Any], exc_info: tuple[type[Any], Any, TracebackType]) -> None:
    loop = chain_loop(exc_info[1])
    if loop is not None:
        pytest.fail(f"the exception pytest.raises caught has a loop in its chain: {loop}", pytrace=False)
    _original_fill_unfilled(self, exc_info)


_original_fill_unfilled = ExceptionInfo.fill_unfilled


def pytest_configure(config: pytest.Config) -> None:
    patch = pytest.MonkeyPatch()
    patch.setattr(ExceptionInfo, "fill_unfilled", _checked_fill_unfilled)
    config.stash[_PATCH_KEY] = patch


def pytest_unconfigure(config: pytest.Config) -> None:
    config.stash[_PATCH_KEY].undo()
