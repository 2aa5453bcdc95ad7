"""Every schedule against its closed form at every point of a run and past it, in steps and in tokens."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import pytest
import schedule_formulas as F
import torch

import optreg

LRS = (1.0, 3e-4)  # two param groups, each with its own initial LR
K = 64  # tokens per step in the tokens variants


def cases(k: int, units: str) -> Iterator[tuple[str, dict[str, Any], int, Callable[..., float]]]:
    """(id, spec, run length T, closed form) with every count scaled by ``k``."""
    T = 100 * k
    u = {"units": units}
    yield ("constant_with_warmup", {"type": "constant_with_warmup", "warmup_steps": 10 * k, "warmup_min_lr": 1e-5, **u},
           T, partial(F.constant_with_warmup, w=10 * k, wmin=1e-5))
    yield ("linear_with_warmup", {"type": "linear_with_warmup", "warmup_steps": 10 * k, **u},
           T, partial(F.linear_with_warmup, w=10 * k))
    yield ("linear_with_warmup-alpha0", {"type": "linear_with_warmup", "warmup_fraction": 0.25, "alpha_f": 0.0, **u},
           T, partial(F.linear_with_warmup, w=25 * k, alpha=0.0))
    yield ("cos_with_warmup", {"type": "cos_with_warmup", "warmup_steps": 10 * k, "alpha_f": 0.05, **u},
           T, partial(F.cos_with_warmup, w=10 * k, alpha=0.05))
    yield ("cos_with_warmup-nowarmup", {"type": "cos_with_warmup", "warmup_steps": 0, "alpha_f": 0.0, **u},
           T, partial(F.cos_with_warmup, w=0, alpha=0.0))
    yield ("half_cos_with_warmup", {"type": "half_cos_with_warmup", "warmup_fraction": 0.1, **u},
           T, partial(F.half_cos_with_warmup, w=10 * k))
    yield ("cos_with_warmup_and_linear_decay",
           {"type": "cos_with_warmup_and_linear_decay", "warmup_steps": 10 * k, "decay_fraction": 0.2,
            "decay_min_lr": 1e-5, **u},
           T, partial(F.cos_with_warmup_and_linear_decay, w=10 * k, d=20 * k, dmin=1e-5))
    yield ("inv_sqrt_with_warmup", {"type": "inv_sqrt_with_warmup", "warmup_steps": 10 * k, "alpha_f": 0.0, **u},
           T, partial(F.inv_sqrt_with_warmup, w=10 * k, alpha=0.0))
    yield ("exponential", {"type": "exponential", "lr_min": 1e-6, **u}, T, partial(F.exponential, lr_min=1e-6))
    for shape in ("linear", "cosine", "sqrt"):
        yield (f"wsd-{shape}",
               {"type": "wsd", "warmup_steps": 10 * k, "decay_fraction": 0.2, "decay_shape": shape, **u},
               T, partial(F.wsd, w=10 * k, d=20 * k, shape=shape))
    yield ("wsd-no-stable", {"type": "wsd", "warmup_fraction": 0.3, "decay_steps": 70 * k, "warmup_min_lr": 1e-6,
                             "decay_min_lr": 1e-6, **u},
           T, partial(F.wsd, w=30 * k, d=70 * k, wmin=1e-6, dmin=1e-6))
    yield ("wsds",
           {"type": "wsds", "period_lengths": [50 * k, 30 * k, 20 * k], "period_lr_multipliers": [1.0, 0.5, 0.25],
            "warmup_steps": 10 * k, "decay_fraction": 0.2, **u},
           T, partial(F.wsds, lengths=[50 * k, 30 * k, 20 * k], w=10 * k, decays=[10 * k, 6 * k, 4 * k],
                      mults=[1.0, 0.5, 0.25]))
    yield ("wsds-cosine",
           {"type": "wsds", "period_lengths": [40 * k, 60 * k], "warmup_fraction": 0.25, "decay_steps": 15 * k,
            "decay_shape": "cosine", "decay_min_lr": 1e-5, **u},
           T, partial(F.wsds, lengths=[40 * k, 60 * k], w=10 * k, decays=[15 * k, 15 * k], shape="cosine",
                      dmin=1e-5))
    yield ("power_lr", {"type": "power_lr", "warmup_steps": 10 * k, "b": -0.5, "decay_steps": 20 * k, **u},
           T, partial(F.power_lr, w=10 * k, b=-0.5, d=20 * k))
    yield ("power_lr-no-tail", {"type": "power_lr", "warmup_steps": 5 * k, "b": -0.51, **u},
           T, partial(F.power_lr, w=5 * k, b=-0.51))
    yield ("warmup_cosine_decay",
           {"type": "warmup_cosine_decay", "warmup_steps": 10 * k, "decay_steps": 80 * k, "init_value": 1e-5,
            "end_value": 1e-6, **u},
           T, lambda lr0, c, T: F.optax_warmup_cosine_decay(c, init_value=1e-5, peak_value=lr0, warmup_steps=10 * k,
                                                           decay_steps=80 * k, end_value=1e-6))
    yield ("warmup_cosine_decay-exponent-run-length",
           {"type": "warmup_cosine_decay", "warmup_fraction": 0.2, "exponent": 2.0, **u},
           T, lambda lr0, c, T: F.optax_warmup_cosine_decay(c, init_value=0.0, peak_value=lr0, warmup_steps=20 * k,
                                                           decay_steps=T, exponent=2.0))

    # sequential: the next schedule starts from the previous one's LR at the end of its segment.
    def seq_cos_then_constant(lr0, c, T, override=False):
        if override and c >= 80 * k:
            start = seq_cos_then_constant(lr0, 80 * k, T)
            p = min((c - 80 * k) / (10 * k), 1.0)
            return 0.01 * lr0 + (start - 0.01 * lr0) * (1 + math.cos(math.pi * p)) / 2
        if c < 60 * k:
            return F.cos_with_warmup(lr0, c, 60 * k, w=10 * k)
        return F.cos_with_warmup(lr0, 60 * k, 60 * k, w=10 * k)

    cos_then_constant = {"type": "sequential", "durations": [60 * k],
                         "schedules": [{"type": "cos_with_warmup", "warmup_steps": 10 * k, **u},
                                       {"type": "constant", **u}], **u}
    yield ("sequential", cos_then_constant, T, seq_cos_then_constant)
    yield ("sequential-override",
           {**cos_then_constant, "override_decay": {"start": 80 * k, "duration": 10 * k, "shape": "cosine",
                                                    "end_lr_fraction": 0.01}},
           T, partial(seq_cos_then_constant, override=True))

    def seq_warmup_then_linear(lr0, c, T):
        if c < 50 * k:
            return F.constant_with_warmup(lr0, c, 50 * k, w=10 * k)
        return F.linear_with_warmup(lr0, c - 50 * k, T - 50 * k, w=0, alpha=0.0)

    yield ("sequential-last-gets-rest-of-run",
           {"type": "sequential", "durations": [50 * k],
            "schedules": [{"type": "constant_with_warmup", "warmup_steps": 10 * k, **u},
                          {"type": "linear_with_warmup", "warmup_steps": 0, "alpha_f": 0.0, **u}], **u},
           T, seq_warmup_then_linear)

    # OLMo-core's boundary rule: at B = 50k the finishing cosine's last LR (its floor), not the wsd's step 0
    # (which is 0, the start of its warmup); the wsd's warmup runs from just after B.
    def seq_cos_then_wsd(lr0, c, T):
        if c <= 50 * k:
            return F.cos_with_warmup(lr0, c, 50 * k, w=10 * k)
        top = F.cos_with_warmup(lr0, 50 * k, 50 * k, w=10 * k)
        return F.wsd(top, c - 50 * k, T - 50 * k, w=5 * k, d=20 * k)

    yield ("sequential-boundary-before-a-warmup",
           {"type": "sequential", "durations": [50 * k],
            "schedules": [{"type": "cos_with_warmup", "warmup_steps": 10 * k, **u},
                          {"type": "wsd", "warmup_steps": 5 * k, "decay_steps": 20 * k, **u}], **u},
           T, seq_cos_then_wsd)

    def seq_cut_cosine(lr0, c, T):  # a 100-long cosine cut after 40, then a WSD-like nested sequence
        top = F.cos_with_warmup(lr0, min(c, 40 * k), 100 * k, w=0, alpha=0.0)
        if c < 40 * k:
            return top
        inner = c - 40 * k
        if inner < 30 * k:
            return top
        return F.linear_with_warmup(top, inner - 30 * k, T - 70 * k, w=0, alpha=0.0)

    yield ("sequential-nested-own-t_max",
           {"type": "sequential", "durations": [40 * k],
            "schedules": [{"type": "cos_with_warmup", "warmup_steps": 0, "alpha_f": 0.0, "t_max": 100 * k, **u},
                          {"type": "sequential", "durations": [30 * k], **u,
                           "schedules": [{"type": "constant", **u},
                                         {"type": "linear_with_warmup", "warmup_steps": 0, "alpha_f": 0.0, **u}]}],
            **u},
           T, seq_cut_cosine)


    stages = [{"duration": 10 * k, "start_lr": 0.0, "end_lr_fraction": 1.0},
              {"duration": 50 * k, "end_lr_fraction": 1.0},
              {"duration": 30 * k, "shape": "cosine", "end_lr_fraction": 0.1},
              {"duration": 5 * k, "start_lr_fraction": 0.05, "end_lr_fraction": 0.0, "shape": "sqrt"}]
    yield ("composable", {"type": "composable", "stages": stages, **u}, T, partial(F.composable, stages=stages))
    override = {"start": 40 * k, "duration": 25 * k, "shape": "cosine", "end_lr_fraction": 0.02}
    yield ("composable-override", {"type": "composable", "stages": stages, "override_decay": override, **u}, T,
           partial(F.composable, stages=stages, override_decay=override))
    # Stages shorter than the run: the last end LR is held (t_max plays no part).
    short = [{"duration": 20 * k, "start_lr_fraction": 0.5, "end_lr": 1e-4}]
    yield ("composable-short", {"type": "composable", "stages": short, **u}, T, partial(F.composable, stages=short))


STEPS = list(cases(1, "steps"))
TOKENS = list(cases(K, "tokens"))
IDS = [c[0] for c in STEPS]


def _points(T: int, k: int) -> list[int]:
    # Every step of the run and 30% past it; for tokens also points between steps.
    base = [c * k for c in range(int(T / k * 1.3) + 1)]
    return sorted(set(base + [p + k // 3 for p in base] if k > 1 else base))


@pytest.mark.parametrize(("name", "spec", "T", "formula"), STEPS + TOKENS,
                         ids=[f"{c[0]}-steps" for c in STEPS] + [f"{c[0]}-tokens" for c in TOKENS])
def test_get_lr_matches_closed_form(name, spec, T, formula, optreg_registry) -> None:
    schedule = optreg_registry.scheduler_spec(spec)
    k = 1 if spec["units"] == "steps" else K
    for lr0 in LRS:
        for c in _points(T, k):
            got = schedule.get_lr(lr0, c, T)
            want = formula(lr0, c, T)
            assert math.isclose(got, want, rel_tol=1e-12, abs_tol=1e-15), f"{name} lr0={lr0} at {c}: {got} != {want}"


@pytest.mark.parametrize(("name", "spec", "T", "formula"), STEPS + TOKENS,
                         ids=[f"{c[0]}-steps" for c in STEPS] + [f"{c[0]}-tokens" for c in TOKENS])
def test_scheduler_drives_every_group_along_the_closed_form(name, spec, T, formula, optreg_registry) -> None:
    params = [torch.nn.Parameter(torch.zeros(2)) for _ in LRS]
    optimizer = torch.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(params, LRS)], lr=LRS[0])
    scheduler = optreg_registry.build_scheduler(spec, optimizer, t_max=T)
    tokens = spec["units"] == "tokens"
    # Uneven token counts per step: the LR follows the tokens seen, not the step count.
    sizes = [K, K // 2, 3 * K // 2, 1] if tokens else [1]
    seen = 0
    for step in range(int(1.2 * T / (K if tokens else 1)) + 2):
        for group, lr0 in zip(optimizer.param_groups, LRS):
            assert math.isclose(group["lr"], formula(lr0, seen, T), rel_tol=1e-12, abs_tol=1e-15), (name, step, seen)
            assert group["initial_lr"] == lr0
        optimizer.step()
        n = sizes[step % len(sizes)]
        scheduler.step(tokens=n) if tokens else scheduler.step()
        seen += n


@pytest.mark.parametrize(("name", "spec", "T", "formula"), STEPS + TOKENS,
                         ids=[f"{c[0]}-steps" for c in STEPS] + [f"{c[0]}-tokens" for c in TOKENS])
def test_own_t_max_is_what_get_lr_uses(name, spec, T, formula, optreg_registry) -> None:
    # The spec's own t_max wins over whatever the caller passes (None, shorter, longer), as the built scheduler.
    schedule = optreg_registry.scheduler_spec({**spec, "t_max": T})
    k = 1 if spec["units"] == "steps" else K
    for c in _points(T, k)[::7]:
        want = formula(1.0, c, T)
        for passed in (None, T // 2, 3 * T):
            got = schedule.get_lr(1.0, c, passed)
            assert math.isclose(got, want, rel_tol=1e-12, abs_tol=1e-15), f"{name} at {c}, t_max={passed}"


@pytest.mark.parametrize(("name", "spec", "T", "formula"), STEPS, ids=IDS)
def test_negative_current_gives_the_lr_at_zero(name, spec, T, formula, optreg_registry) -> None:
    schedule = optreg_registry.scheduler_spec(spec)
    for lr0 in LRS:
        for c in (-1, -0.5, -T):
            assert schedule.get_lr(lr0, c, T) == schedule.get_lr(lr0, 0, T) == pytest.approx(formula(lr0, 0, T))
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError, match="finite"):
            schedule.get_lr(1.0, bad, T)


def test_tokens_and_steps_agree_when_counts_scale(optreg_registry) -> None:
    for (name, s_spec, s_T, _), (_, t_spec, t_T, _) in zip(STEPS, TOKENS):
        steps = optreg_registry.scheduler_spec(s_spec)
        tokens = optreg_registry.scheduler_spec(t_spec)
        for c in range(0, 131):
            a, b = steps.get_lr(0.5, c, s_T), tokens.get_lr(0.5, c * K, t_T)
            assert math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15), (name, c, a, b)


# ------------------------------------------------------------- boundaries, by hand


def lr(spec: dict[str, Any], c: float, T: int | None = 100, lr0: float = 1.0) -> float:
    return optreg.get_registry().scheduler_spec(spec).get_lr(lr0, c, T)


def test_boundaries_of_the_warmup_schedules() -> None:
    cos = {"type": "cos_with_warmup", "warmup_steps": 10, "alpha_f": 0.1, "warmup_min_lr": 0.1}
    assert lr(cos, 0) == 0.1  # step 0: warmup_min_lr
    assert lr(cos, 5) == pytest.approx(0.55)
    assert lr(cos, 10) == 1.0  # end of warmup: the peak, exactly
    assert lr(cos, 55) == pytest.approx(0.55)  # half way through the cosine: the mean of peak and floor
    assert lr(cos, 100) == pytest.approx(0.1) and lr(cos, 1000) == pytest.approx(0.1)  # t_max and past it
    lin = {"type": "linear_with_warmup", "warmup_steps": 20, "alpha_f": 0.0}
    assert [lr(lin, c) for c in (0, 10, 20, 60, 100, 150)] == pytest.approx([0, 0.5, 1, 0.5, 0, 0])
    half = {"type": "half_cos_with_warmup", "warmup_steps": 10, "alpha_f": 0.0}
    assert lr(half, 10) == pytest.approx(0.5)  # the warmup ends at the middle of the cosine
    assert lr(half, 100) == pytest.approx(0.0) and lr(half, 55) == pytest.approx((1 + math.cos(0.75 * math.pi)) / 2)
    inv = {"type": "inv_sqrt_with_warmup", "warmup_steps": 25, "alpha_f": 0.0}
    assert [lr(inv, c, None) for c in (25, 100, 2500)] == pytest.approx([1.0, 0.5, 0.1])  # no t_max needed
    exp = {"type": "exponential", "lr_min": 1e-4}
    assert [lr(exp, c) for c in (0, 25, 50, 100, 200)] == pytest.approx([1e-4, 1e-3, 1e-2, 1.0, 1.0])
    cww = {"type": "constant_with_warmup", "warmup_fraction": 0.1}
    assert [lr(cww, c, 50) for c in (0, 4, 5, 50, 99)] == pytest.approx([0, 0.8, 1, 1, 1])


def test_boundaries_of_the_decay_tails() -> None:
    wsd = {"type": "wsd", "warmup_steps": 10, "decay_steps": 40, "decay_min_lr": 0.1}
    assert [lr(wsd, c) for c in (0, 10, 59, 60, 80, 100, 120)] == pytest.approx([0, 1, 1, 1, 0.55, 0.1, 0.1])
    assert lr({**wsd, "decay_shape": "sqrt"}, 70) == pytest.approx(0.1 + 0.9 * 0.5)  # p = 1/4: 1 - sqrt(p) = 1/2
    assert lr({**wsd, "decay_shape": "cosine"}, 80) == pytest.approx(0.55)
    cl = {"type": "cos_with_warmup_and_linear_decay", "warmup_steps": 0, "decay_steps": 50, "alpha_f": 0.0}
    assert lr(cl, 50) == pytest.approx(0.5)  # start of the tail: the cosine's LR there
    assert lr(cl, 75) == pytest.approx(0.25) and lr(cl, 100) == 0.0 and lr(cl, 130) == 0.0
    pw = {"type": "power_lr", "warmup_steps": 4, "b": -0.5, "decay_steps": 36}
    assert [lr(pw, c) for c in (2, 4, 16, 64, 82, 100, 110)] == pytest.approx([0.5, 1, 0.5, 0.25, 0.125, 0, 0])
    # wsds, as OLMo-core: period i ends at E(i) with decay_min_lr (the checkpoint there sees the decayed LR);
    # the next period's peak starts just after.
    wsds = {"type": "wsds", "period_lengths": [20, 20], "warmup_steps": 4, "decay_steps": 8,
            "period_lr_multipliers": [1.0, 0.5], "decay_min_lr": 0.01}
    points = (0, 2, 4, 11, 12, 16, 19, 20, 21, 31, 32, 36, 39, 40, 41, 60)
    want = [0, 0.5, 1, 1, 1, 0.505, 0.13375, 0.01, 0.5, 0.5, 0.5, 0.255, 0.07125, 0.01, 0.01, 0.01]
    assert [lr(wsds, c, None) for c in points] == pytest.approx(want)


def test_sequential_boundary_is_the_finishing_schedules_last_lr() -> None:
    # OLMo-core's SequentialScheduler: `current <= scheduler_max` runs the finishing schedule, so at the
    # boundary the LR is its last LR, not the next schedule's step 0 (0.0 here: the wsd starts with a warmup).
    seq = {"type": "sequential", "durations": [50],
           "schedules": [{"type": "constant"}, {"type": "wsd", "warmup_steps": 10, "decay_steps": 10}]}
    assert [lr(seq, c, 100) for c in (49, 50, 51, 55, 60)] == pytest.approx([1.0, 1.0, 0.1, 0.5, 1.0])
    nested = {"type": "sequential", "durations": [30], "schedules": [
        {"type": "linear_with_warmup", "warmup_steps": 0, "alpha_f": 0.5}, seq]}
    assert [lr(nested, c, 130) for c in (30, 31, 80, 81)] == pytest.approx([0.5, 0.5, 0.5, 0.05])


def test_composable_stage_boundaries_as_olmo_core() -> None:
    # Stages are half open [S, S + duration): a boundary gives the next stage's start LR (an explicit one
    # jumps); after the last stage its end LR holds; t_max plays no part.
    spec = {"type": "composable", "stages": [
        {"duration": 4, "start_lr": 0.0, "end_lr_fraction": 1.0},
        {"duration": 4, "end_lr_fraction": 0.5},
        {"duration": 2, "start_lr_fraction": 0.2, "end_lr": 0.1, "shape": "cosine"}]}
    points = (0, 2, 4, 6, 8, 9, 10, 50)
    assert [lr(spec, c, None, lr0=2.0) for c in points] == pytest.approx([0, 1, 2, 1.5, 0.4, 0.25, 0.1, 0.1])
    assert [lr(spec, c, 7, lr0=2.0) for c in points] == [lr(spec, c, None, lr0=2.0) for c in points]
    override = {**spec, "override_decay": {"start": 6, "duration": 4, "end_lr_fraction": 0.0}}
    assert [lr(override, c, None, lr0=2.0) for c in (5, 6, 8, 10, 20)] == pytest.approx([1.75, 1.5, 0.75, 0, 0])


def test_optax_warmup_cosine_decay_values() -> None:
    # optax.warmup_cosine_decay_schedule(init_value=0.0, peak_value=1.0, warmup_steps=100, decay_steps=1000)
    spec = {"type": "warmup_cosine_decay", "warmup_steps": 100, "decay_steps": 1000}
    assert lr(spec, 0, None) == 0.0
    assert lr(spec, 50, None) == 0.5
    assert lr(spec, 100, None) == 1.0
    assert lr(spec, 550, None) == pytest.approx(0.5)
    assert lr(spec, 1000, None) == pytest.approx(0.0, abs=1e-15)
    assert lr(spec, 5000, None) == pytest.approx(0.0, abs=1e-15)  # held after decay_steps
    # end_value, init_value and exponent as optax: peak * ((1 - a) * cos_factor ** e + a), a = end / peak.
    full = {**spec, "init_value": 0.1, "end_value": 0.2, "exponent": 2.0}
    assert lr(full, 0, None, lr0=2.0) == pytest.approx(0.1)
    assert lr(full, 550, None, lr0=2.0) == pytest.approx(2.0 * (0.9 * 0.25 + 0.1))
    assert lr(full, 1000, None, lr0=2.0) == pytest.approx(0.2)
    # decay_steps defaults to the run length.
    assert lr({"type": "warmup_cosine_decay", "warmup_steps": 100}, 550, 1000) == pytest.approx(0.5)


def test_fractions_round_half_to_even_as_olmo_core() -> None:
    # OLMo-core resolves a fraction as round(t_max * fraction): Python's round, half to even.
    assert F.olmo_count(0.0125, 1000) == 12 and F.olmo_count(0.125, 20) == 2 and F.olmo_count(0.375, 20) == 8
    for fraction, T in ((0.0125, 1000), (0.125, 20), (0.375, 20), (0.1, 20), (0.25, 10)):
        w = F.olmo_count(fraction, T)
        spec = {"type": "constant_with_warmup", "warmup_fraction": fraction}
        assert [lr(spec, c, T) for c in range(T + 1)] == pytest.approx(
            [F.constant_with_warmup(1.0, c, T, w=w) for c in range(T + 1)]), (fraction, T)
    d = F.olmo_count(0.25, 10)  # 2.5 -> 2
    wsd = {"type": "wsd", "warmup_steps": 0, "decay_fraction": 0.25}
    assert [lr(wsd, c, 10) for c in range(11)] == pytest.approx([F.wsd(1.0, c, 10, w=0, d=d) for c in range(11)])
    # Every fraction of every schedule, against the same rule (half-way cases in both directions).
    T = 20
    cos = {"type": "cos_with_warmup_and_linear_decay", "warmup_fraction": 0.125, "decay_fraction": 0.375}
    assert [lr(cos, c, T) for c in range(T + 1)] == pytest.approx(
        [F.cos_with_warmup_and_linear_decay(1.0, c, T, w=2, d=8) for c in range(T + 1)])
    power = {"type": "power_lr", "warmup_fraction": 0.125, "decay_fraction": 0.125, "b": -0.5}
    assert [lr(power, c, T) for c in range(T + 1)] == pytest.approx(
        [F.power_lr(1.0, c, T, w=2, b=-0.5, d=2) for c in range(T + 1)])
    for name, formula in (("linear_with_warmup", F.linear_with_warmup), ("cos_with_warmup", F.cos_with_warmup),
                          ("half_cos_with_warmup", F.half_cos_with_warmup),
                          ("inv_sqrt_with_warmup", F.inv_sqrt_with_warmup)):
        spec = {"type": name, "warmup_fraction": 0.125}
        assert [lr(spec, c, T) for c in range(T + 1)] == pytest.approx(
            [formula(1.0, c, T, w=F.olmo_count(0.125, T)) for c in range(T + 1)]), name
    optax = {"type": "warmup_cosine_decay", "warmup_fraction": 0.125}
    assert [lr(optax, c, T) for c in range(T + 1)] == pytest.approx(
        [F.optax_warmup_cosine_decay(c, init_value=0.0, peak_value=1.0, warmup_steps=2, decay_steps=T)
         for c in range(T + 1)])
    # wsds: fractions of the first period (warmup) and of each period (decay); 0.25 * 10 = 2.5 -> 2.
    wsds = {"type": "wsds", "period_lengths": [10, 14], "warmup_fraction": 0.25, "decay_fraction": 0.25}
    want = [F.wsds(1.0, c, lengths=[10, 14], w=F.olmo_count(0.25, 10),
                   decays=[F.olmo_count(0.25, 10), F.olmo_count(0.25, 14)]) for c in range(26)]
    assert [lr(wsds, c, None) for c in range(26)] == pytest.approx(want)


def test_t_max_in_the_spec_wins_over_the_run(optreg_registry) -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    spec = {"type": "cos_with_warmup", "warmup_steps": 0, "alpha_f": 0.0, "t_max": 50}
    scheduler = optreg_registry.build_scheduler(spec, optimizer, t_max=1000)
    assert scheduler.t_max == 50
    for _ in range(25):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.5)
