"""The built-in schedules against their closed forms, worked out by hand at telling steps."""

from __future__ import annotations

import itertools
import math

import pytest

from bench_core.catalog import load_catalog
from bench_core.plugins import schedules
from bench_core.specs import ScheduleSpec

SPECS: dict[str, ScheduleSpec] = {spec.name: spec for spec in schedules.optbench_schedules()}
OPTIONS = {
    "constant": {},
    "step": {"gamma": 0.1, "milestones": (0.5, 0.75)},
    "exponential": {"final": 0.01},
    "cosine": {"final": 0.0},
    "warmup_cosine": {"warmup": 0.05, "final": 0.0},
    "one_cycle": {"peak": 0.3, "initial": 0.04, "final": 4e-6},
    "lr_range": {"start": 1e-6},
}


def multiplier(name: str, step: int, total: int, **options: object) -> float:
    """What the runner computes: the spec's defaults overridden by the suite's options."""
    spec = SPECS[name]
    return spec.multiplier(step, total, **(dict(spec.options) | options))


def test_every_schedule_declares_its_options_with_defaults_and_a_description():
    assert {name: dict(spec.options) for name, spec in SPECS.items()} == OPTIONS
    for spec in SPECS.values():
        assert spec.description and "\n" not in spec.description


@pytest.mark.parametrize("name", sorted(OPTIONS))
@pytest.mark.parametrize("total", [1, 2, 7, 100, 1000])
def test_defaults_stay_within_0_and_1_and_never_rise_after_warmup(name, total):
    values = [multiplier(name, step, total) for step in range(total + 1)]
    assert all(0.0 <= v <= 1.0 and math.isfinite(v) for v in values)
    peak = values.index(max(values))
    assert all(a >= b for a, b in zip(values[peak:], values[peak + 1:], strict=False))


def test_constant_is_one_everywhere():
    assert {multiplier("constant", step, total) for total in (1, 10, 999) for step in range(total + 1)} == {1.0}


@pytest.mark.parametrize(("step", "expected"), [(0, 1.0), (49, 1.0), (50, 0.1), (74, 0.1), (75, 0.01), (99, 0.01)])
def test_step_multiplies_by_gamma_at_each_milestone(step, expected):
    assert multiplier("step", step, 100) == pytest.approx(expected)


def test_step_with_custom_gamma_and_milestones():
    assert [multiplier("step", s, 10, gamma=0.5, milestones=[0.2]) for s in (0, 1, 2, 9)] == [1.0, 1.0, 0.5, 0.5]
    assert multiplier("step", 7, 100, milestones=[0.07]) == pytest.approx(0.1), "7 / 100 reaches the 0.07 milestone"
    assert multiplier("step", 5, 10, milestones=[]) == 1.0


@pytest.mark.parametrize(("step", "expected"), [(0, 1.0), (25, 0.01**0.25), (50, 0.1), (100, 0.01)])
def test_exponential_decays_geometrically_to_final(step, expected):
    assert multiplier("exponential", step, 100) == pytest.approx(expected)


def test_exponential_loses_the_same_factor_every_step():
    ratios = [multiplier("exponential", s + 1, 10, final=0.5) / multiplier("exponential", s, 10, final=0.5)
              for s in range(10)]
    assert ratios == pytest.approx([0.5**0.1] * 10)


@pytest.mark.parametrize(("final", "step", "expected"), [
    (0.0, 0, 1.0), (0.0, 25, 0.5 * (1 + math.sqrt(0.5))), (0.0, 50, 0.5), (0.0, 100, 0.0),
    (0.1, 0, 1.0), (0.1, 50, 0.55), (0.1, 100, 0.1),
])
def test_cosine_goes_from_one_to_final(final, step, expected):
    assert multiplier("cosine", step, 100, final=final) == pytest.approx(expected, abs=1e-12)


def test_warmup_ramps_linearly_to_one_then_follows_a_cosine():
    # 100 steps, 10 of warmup: the ramp is (step + 1) / 11 and reaches 1 at step 10.
    values = [multiplier("warmup_cosine", s, 100, warmup=0.1) for s in range(101)]
    assert values[0] == pytest.approx(1 / 11)
    assert values[:11] == pytest.approx([(s + 1) / 11 for s in range(11)])
    assert max(values) == values[10] == 1.0
    assert values[55] == pytest.approx(0.5), "halfway through the 90 steps of cosine"
    assert values[100] == pytest.approx(0.0, abs=1e-12)
    assert multiplier("warmup_cosine", 100, 100, warmup=0.1, final=0.2) == pytest.approx(0.2)


def test_warmup_starts_near_zero_with_the_defaults():
    assert multiplier("warmup_cosine", 0, 1000) == pytest.approx(1 / 51)  # 5% of 1000 steps
    assert multiplier("warmup_cosine", 50, 1000) == 1.0


def test_zero_warmup_is_plain_cosine():
    for step in (0, 13, 50, 99):
        assert multiplier("warmup_cosine", step, 100, warmup=0.0) == pytest.approx(multiplier("cosine", step, 100))


@pytest.mark.parametrize(("step", "expected"), [
    (0, 0.04),                                    # starts at initial = 1 / div_factor
    (15, 0.04 + 0.96 * 0.5),                      # halfway up the rising half-cosine
    (30, 1.0),                                    # the peak, at 30% of the run
    (65, 4e-6 + (1 - 4e-6) * 0.5),                # halfway down
    (100, 4e-6),                                  # ends at final = 1 / (div_factor * final_div_factor)
])
def test_one_cycle_rises_to_one_at_the_peak_then_anneals_to_final(step, expected):
    assert multiplier("one_cycle", step, 100) == pytest.approx(expected)


def test_one_cycle_follows_cosines_step_by_step():
    total, peak, initial, final = 40, 0.25, 0.1, 0.001
    for step in range(total + 1):
        if step < 10:
            expected = initial + (1 - initial) * (1 - math.cos(math.pi * step / 10)) / 2
        else:
            expected = final + (1 - final) * (1 + math.cos(math.pi * (step - 10) / 30)) / 2
        got = multiplier("one_cycle", step, total, peak=peak, initial=initial, final=final)
        assert got == pytest.approx(expected), step


def test_lr_range_grows_by_the_same_factor_every_step_from_start_to_one():
    values = [multiplier("lr_range", step, 60, start=1e-6) for step in range(61)]
    assert values[0] == pytest.approx(1e-6) and values[60] == pytest.approx(1.0)
    assert values[10] == pytest.approx(1e-5) and values[30] == pytest.approx(1e-3)  # ten steps per decade
    ratios = [b / a for a, b in itertools.pairwise(values)]
    assert max(ratios) == pytest.approx(min(ratios)) == pytest.approx(10 ** 0.1)


@pytest.mark.parametrize(("name", "options", "option"), [
    ("step", {"gamma": 0.0}, "gamma"),
    ("step", {"gamma": -0.5}, "gamma"),
    ("step", {"gamma": "0.1"}, "gamma"),
    ("step", {"milestones": [0.5, 1.5]}, "milestones"),
    ("step", {"milestones": 0.5}, "milestones"),
    ("step", {"milestones": "0.5"}, "milestones"),
    ("exponential", {"final": 0.0}, "final"),
    ("exponential", {"final": 2.0}, "final"),
    ("cosine", {"final": -0.1}, "final"),
    ("cosine", {"final": float("nan")}, "final"),
    ("cosine", {"final": True}, "final"),
    ("warmup_cosine", {"warmup": 1.0}, "warmup"),
    ("warmup_cosine", {"warmup": -0.1}, "warmup"),
    ("warmup_cosine", {"final": 1.5}, "final"),
    ("one_cycle", {"peak": 0.0}, "peak"),
    ("lr_range", {"start": 0.0}, "start"),
    ("lr_range", {"start": 2.0}, "start"),
    ("one_cycle", {"peak": 1.0}, "peak"),
    ("one_cycle", {"initial": 1.2}, "initial"),
    ("one_cycle", {"final": -1e-3}, "final"),
])
def test_invalid_options_raise_naming_the_option(name, options, option):
    with pytest.raises(ValueError, match=f"schedule option '?{option}\\b"):
        multiplier(name, 0, 10, **options)


def test_built_in_schedules_are_discovered_through_their_entry_point(monkeypatch):
    monkeypatch.setenv("OPTBENCH_DISABLE_PLUGIN_AUTOLOAD", "1")
    catalog = load_catalog()
    for name in OPTIONS:
        assert name in catalog.schedules
        assert catalog.origin[("schedule", name)] == "schedules"
