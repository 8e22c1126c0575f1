"""The shared argument checks: what they accept, what they return, what each rejection says."""

import numpy as np
import pytest

from solvers import checks


def test_real_array_returns_float64_for_integers_and_keeps_float_dtypes():
    assert checks.real_array("X", [[1, 2], [3, 4]]).dtype == np.float64
    assert checks.real_array("X", np.ones(3, np.float32)).dtype == np.float32


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (["a", "b"], checks.DtypeError, "X must be a real numeric array"),
        ([True, False], checks.DtypeError, "X must be real numbers"),
        ([1 + 2j], checks.DtypeError, "X must be real numbers"),
        ([[1.0], [1.0, 2.0]], ValueError, "X must be a rectangular array"),
        (np.zeros(0), ValueError, "X must not be empty"),
        ([1.0, np.nan], ValueError, "X contains NaN or inf"),
        ([[1.0]], ValueError, "X must have 1 axis;"),
    ],
)
def test_real_array_rejections_name_the_argument(value, error, message):
    with pytest.raises(error, match=message):
        checks.real_array("X", value, ndim=1)


def test_a_dtype_error_is_caught_as_a_type_error_and_as_a_value_error():
    for caught in (TypeError, ValueError):
        with pytest.raises(caught):
            checks.real_array("X", ["a"])


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: checks.integer("steps", 1.0), TypeError),
        (lambda: checks.integer("steps", True), TypeError),
        (lambda: checks.integer("steps", 0, 1), ValueError),
        (lambda: checks.positive("steps", -1.0), ValueError),
        (lambda: checks.choice("steps", "x", {"a", "b"}), ValueError),
    ],
)
def test_scalar_checks_reject_with_the_argument_named(call, error):
    with pytest.raises(error, match="steps"):
        call()


def test_scalar_checks_accept_numpy_scalars_of_the_right_kind():
    assert checks.integer("n", np.int64(10)) == 10
    assert checks.positive("tol", np.float32(1e-6)) == pytest.approx(1e-6)
