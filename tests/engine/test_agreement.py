"""How close two training paths are, and how close they must be."""

from __future__ import annotations

import math

import torch

from cephalo.engine.checks.agreement import (
    MAX_USEFUL_REL_L2,
    SAME_MATHS,
    Agreement,
    Tolerance,
    agreement,
    perturbed,
    rounding,
)


def test_agreement_of_equal_scaled_and_broken_tensors():
    a = [torch.randn(3, 4), torch.randn(5)]
    same = agreement(a, [t.clone() for t in a])
    assert math.isclose(same.cosine, 1.0) and same.rel_l2 == 0.0 and same.within(SAME_MATHS)
    doubled = agreement(a, [2 * t for t in a])
    assert math.isclose(doubled.cosine, 1.0, rel_tol=1e-9) and math.isclose(doubled.rel_l2, 1.0, rel_tol=1e-9)
    assert not doubled.within(SAME_MATHS)  # the direction alone would not catch a gradient off by 2x
    nan = agreement(a, [a[0], torch.full((5,), float("nan"))])
    assert not nan.finite and not nan.within(Tolerance(-1.0, math.inf)) and str(nan) == "not finite"
    assert agreement([torch.zeros(3)], [torch.zeros(3)]).within(SAME_MATHS)


def test_the_tolerance_widens_to_the_floor_never_below_its_own():
    floor = Agreement(cosine=0.99999, rel_l2=2e-3)
    widened = SAME_MATHS.widened(floor, 10)
    assert widened.max_rel_l2 == 2e-2 and math.isclose(widened.min_cosine, 0.9999)
    assert SAME_MATHS.widened(Agreement(1.0, 1e-6), 10) == SAME_MATHS
    assert widened.useful and not SAME_MATHS.widened(Agreement(0.9, MAX_USEFUL_REL_L2), 2).useful
    assert SAME_MATHS.widened(Agreement(float("nan"), float("nan"), finite=False), 10) == SAME_MATHS


def test_perturbed_weights_are_reproducible_and_leave_counters_and_the_global_generator_alone():
    state = {"w": torch.ones(1000), "num_batches_tracked": torch.tensor(7)}
    before = torch.get_rng_state()
    a, b = perturbed(state, 2.0**-8, seed=3), perturbed(state, 2.0**-8, seed=3)
    assert torch.equal(a["w"], b["w"]) and torch.equal(a["num_batches_tracked"], state["num_batches_tracked"])
    assert 0.5 * 2**-8 < (a["w"] - 1).std() < 2 * 2**-8
    assert torch.equal(before, torch.get_rng_state())


def test_the_rounding_of_a_run():
    cpu = torch.device("cpu")
    assert rounding(None, cpu) == "fp32" and rounding(torch.bfloat16, cpu) == "bf16"
    assert rounding(torch.float16, cpu) == "fp16"
