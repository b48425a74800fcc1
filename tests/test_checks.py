"""neuralsolve.checks: every check returns the normalised value or raises with a message that
names the argument, what was expected and what came; a bool is never a number."""

from __future__ import annotations

import numpy as np
import pytest

from neuralsolve.checks import (
    check_bool,
    check_choice,
    check_int,
    check_nonnegative_float,
    check_nonnegative_int,
    check_positive_float,
    check_positive_int,
    check_probability,
    check_real,
)
from neuralsolve.errors import InvalidTypeError


def test_integers_are_normalised() -> None:
    assert check_positive_int("n", 3) == 3
    out = check_positive_int("n", np.int64(3))
    assert out == 3 and type(out) is int
    assert check_nonnegative_int("seed", 0) == 0
    assert check_int("k", 5, minimum=1, maximum=5) == 5
    assert check_int("max_iters", None, minimum=0, allow_none=True) is None


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: check_positive_int("n", 0), ValueError, "n must be a positive integer, got 0"),
        (lambda: check_positive_int("n", True), InvalidTypeError, "got bool True.*bool is not"),
        (lambda: check_positive_int("n", 8.0), InvalidTypeError, r"got float 8\.0: pass 8"),
        (lambda: check_positive_int("n", "8"), InvalidTypeError, "n must be a positive integer"),
        (lambda: check_nonnegative_int("seed", -1), ValueError, "non-negative integer, got -1"),
        (lambda: check_int("n", 1, minimum=2), ValueError, "n must be >= 2, got 1"),
        (lambda: check_int("k", 9, minimum=1, maximum=4), ValueError, r"in 1\.\.4, got 9"),
        (lambda: check_int("k", 9, maximum=4), ValueError, "k must be <= 4, got 9"),
        (lambda: check_int("m", 1.5, allow_none=True), TypeError, "an integer or None"),
        (lambda: check_real("rtol", -1e-3, low=0.0), ValueError, "rtol must be finite and >= 0"),
        (lambda: check_real("lr", float("nan")), ValueError, "lr must be finite"),
        (lambda: check_real("b", 1.0, low=0.0, high=1.0, high_open=True), ValueError, r"\[0, 1\)"),
        (lambda: check_real("x", "a"), InvalidTypeError, "x must be a real number, got str"),
        (lambda: check_positive_float("nu", 0.0), ValueError, "nu must be a finite positive"),
        (lambda: check_positive_float("nu", float("inf")), ValueError, "finite positive"),
        (lambda: check_nonnegative_float("f", -0.1), ValueError, "f must be a finite non-negative"),
        (lambda: check_probability("p", 1.5), ValueError, r"p must be finite and in \[0, 1\]"),
        (lambda: check_choice("kind", "edge", ("cell", "node")), ValueError, "'cell' or 'node'"),
        (lambda: check_choice("dim", 4, (1, 2, 3)), ValueError, "dim must be 1, 2 or 3, got 4"),
        (lambda: check_bool("periodic", "yes"), InvalidTypeError, "True or False, got 'yes'"),
    ],
)
def test_messages_say_what_was_expected_and_what_came(call, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        call()


def test_a_wrong_kind_is_both_a_type_error_and_a_value_error() -> None:
    # The checks merged into this module raised one or the other for a wrong type.
    for error in (TypeError, ValueError):
        with pytest.raises(error):
            check_positive_int("n", 2.5)
    with pytest.raises(TypeError):
        check_bool("flag", 1)


def test_choice_returns_the_value_and_survives_arrays() -> None:
    assert check_choice("kind", "cell", ["cell", "node"]) == "cell"
    with pytest.raises(ValueError, match="kind must be 'cell' or 'node'"):
        check_choice("kind", np.zeros(3), ["cell", "node"])
    assert check_probability("beta", 0.0, open_high=True) == 0.0
    assert check_positive_float("dt", 1) == 1.0
