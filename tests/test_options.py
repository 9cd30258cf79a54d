"""The option validators plugins share with the built-ins: what they accept, and one-line refusals naming the option."""

from __future__ import annotations

import math

import pytest
import torch

from bench_core.options import MAX_ELEMENTS, check_elements, check_integer, check_number


def refusal(call) -> str:
    """The message of the ValueError ``call()`` raises, checked to be one line."""
    with pytest.raises(ValueError) as raised:
        call()
    message = str(raised.value)
    assert "\n" not in message, message
    return message


@pytest.mark.parametrize(("value", "expected"), [(0, 0.0), (0.0, 0.0), (3, 3.0), (2.5, 2.5), (1e300, 1e300)])
def test_check_number_accepts_finite_numbers_at_or_above_the_minimum_as_floats(value, expected):
    got = check_number("noise", value, 0)
    assert got == expected and type(got) is float


@pytest.mark.parametrize("value", [-1, -1e-12, math.nan, math.inf, -math.inf, True, False, "1", None, [1]])
def test_check_number_refuses_what_is_not_a_finite_number_at_or_above_the_minimum(value):
    message = refusal(lambda: check_number("noise", value, 0))
    assert message == f"noise={value!r} is invalid: expected a finite number >= 0"


def test_check_number_strict_refuses_the_minimum_itself():
    assert check_number("scale", 1e-9, 0, strict=True) == 1e-9
    assert refusal(lambda: check_number("scale", 0, 0, strict=True)) == \
        "scale=0 is invalid: expected a finite number > 0"
    assert refusal(lambda: check_number("scale", 0.5, 1.5)) == "scale=0.5 is invalid: expected a finite number >= 1.5"


@pytest.mark.parametrize(("value", "expected"), [(1, 1), (7, 7), (7.0, 7), (10**6, 10**6)])
def test_check_integer_accepts_whole_numbers_in_range_as_ints(value, expected):
    got = check_integer("dim", value, 1, maximum=10**6)
    assert got == expected and type(got) is int


@pytest.mark.parametrize("value", [0, -3, 2.5, math.nan, math.inf, True, "3", None])
def test_check_integer_refuses_what_is_not_a_whole_number_at_or_above_the_minimum(value):
    message = refusal(lambda: check_integer("dim", value, 1))
    assert message == f"dim={value!r} is invalid: expected an integer >= 1"


def test_check_integer_refuses_a_size_above_its_maximum_and_has_none_by_default():
    assert refusal(lambda: check_integer("width", 4097, 1, maximum=4096)) == \
        "width=4097 is invalid: expected an integer <= 4096"
    assert check_integer("width", 4096, 1, maximum=4096) == 4096
    assert check_integer("seed", 2**70, 0) == 2**70


def test_check_elements_refuses_a_product_of_options_above_the_maximum():
    check_elements("width=100, depth=10", 1000, maximum=1000)  # at the maximum: accepted
    assert refusal(lambda: check_elements("width=100, depth=11", 1100, maximum=1000)) == \
        "width=100, depth=11 is invalid: 1,100 numbers to hold, more than 1,000"


def test_the_default_maximum_is_a_hundred_million_numbers():
    assert MAX_ELEMENTS == 10**8
    check_elements("n=10000, dim=10000", 10**8)
    assert "more than 100,000,000" in refusal(lambda: check_elements("n=10001, dim=10000", 10001 * 10**4))


def test_a_built_in_problem_refuses_a_bad_option_with_the_validators_message(catalog):
    """The built-ins use these validators: the same message reaches a plugin author and a suite's user."""
    with pytest.raises(ValueError, match=r"^noise=-1 is invalid: expected a finite number >= 0$"):
        catalog.problems["quadratic"].build(device=torch.device("cpu"), **(dict(catalog.problems["quadratic"].options) |
                                                              {"noise": -1}))
