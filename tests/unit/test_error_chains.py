"""The error-chain plugin (tests/support/error_chains.py) fails a test whose expected error loops."""

from __future__ import annotations

import pytest

from airflow_s3stream.errors import DestinationError, SourceError
from tests.support.error_chains import chain_loop


def _self_caused() -> DestinationError:
    error = DestinationError("bucket 'gone' does not exist")
    error.__cause__ = error
    return error


def test_a_finite_chain_has_no_loop() -> None:
    try:
        try:
            raise KeyError("k")
        except KeyError as exc:
            raise SourceError("s3://b/k: not found") from exc
    except SourceError as error:
        assert chain_loop(error) is None


def test_an_error_that_is_its_own_cause_or_context_is_a_loop() -> None:
    assert chain_loop(_self_caused()) == "DestinationError(\"bucket 'gone' does not exist\") is its own __cause__"
    error = SourceError("x")
    error.__context__ = error
    assert chain_loop(error) == "SourceError('x') is its own __context__"


def test_a_loop_further_down_the_chain_is_named_link_by_link() -> None:
    outer, middle, inner = SourceError("outer"), DestinationError("middle"), KeyError("inner")
    outer.__cause__, middle.__context__, inner.__cause__ = middle, inner, middle
    loop = (
        "DestinationError('middle') -> __context__ -> KeyError(\"'inner'\") -> __cause__ -> DestinationError('middle')"
    )
    assert chain_loop(outer) == loop


def test_a_shared_cause_reached_twice_is_not_a_loop() -> None:
    shared = KeyError("shared")
    error = SourceError("x")
    error.__cause__, error.__context__ = shared, shared
    assert chain_loop(error) is None


def test_pytest_raises_fails_the_test_when_the_caught_error_is_its_own_cause() -> None:
    error = _self_caused()
    try:
        with pytest.raises(DestinationError):
            raise error
    except pytest.fail.Exception as failure:
        assert "loop in its chain: DestinationError" in str(failure)
        assert "is its own __cause__" in str(failure)
    else:
        pytest.fail("pytest.raises accepted an error that is its own __cause__")


def test_pytest_raises_still_accepts_an_ordinary_chain() -> None:
    with pytest.raises(SourceError, match="not found") as caught:
        try:
            raise KeyError("k")
        except KeyError as exc:
            raise SourceError("s3://b/k: not found") from exc
    assert isinstance(caught.value.__cause__, KeyError)
