"""The optreg conformance kit over every schedule of optreg-torch; expected LRs come from torch's own schedulers.

A case's ``expected`` maps a count (steps, or tokens) to the LR torch's scheduler gives at that step, run
here step by step (``torch_reference.torch_lrs``); past the end of torch's one-cycle (which raises) and of
its cosine annealing (which goes back up) the expected value is optreg's documented hold of the final LR.
"""

from __future__ import annotations

from torch.optim import lr_scheduler as L
from torch_reference import torch_lrs

from optreg.testing import ErrorCase, SchedulerCase, SchedulerConformance

DISTRIBUTION = "optreg-torch"
TOK = 32  # tokens per step in the tokens cases


def _points(lrs: list[float], points: tuple[int, ...], scale: int = 1) -> dict[int, float]:
    return {p * scale: lrs[p] for p in points}


def _case(spec: dict, make, points: tuple[int, ...], *, steps: int = 130, t_max: int | None = None,
          lr0: float = 1.0, tokens: bool = False, extra: dict[int, float] | None = None, **kw) -> SchedulerCase:
    lrs = torch_lrs(make, steps, lr0)
    scale = TOK if tokens else 1
    expected = {**_points(lrs, points, scale), **{k * scale: v for k, v in (extra or {}).items()}}
    return SchedulerCase(spec=spec, t_max=t_max, initial_lr=lr0, expected=expected,
                         step_tokens=TOK if tokens else 1, **kw)


P = (0, 1, 9, 10, 11, 29, 30, 31, 59, 60, 99, 100, 129)
T = 100
ONE_CYCLE_END = torch_lrs(lambda o: L.OneCycleLR(o, max_lr=0.5, total_steps=T), T, 0.5)[-1]
ONE_CYCLE_3_END = torch_lrs(
    lambda o: L.OneCycleLR(o, max_lr=1.0, total_steps=50, pct_start=0.25, anneal_strategy="linear", three_phase=True),
    50,
)[-1]


class TestTorchSchedules(SchedulerConformance):
    distribution = DISTRIBUTION
    cases = [
        _case({"type": "step", "step_size": 10, "gamma": 0.5}, lambda o: L.StepLR(o, 10, gamma=0.5), P),
        _case({"type": "step", "step_size": 10 * TOK, "gamma": 0.5, "units": "tokens"},
              lambda o: L.StepLR(o, 10, gamma=0.5), P, tokens=True),
        _case({"type": "multistep", "milestones": [10, 30, 60], "gamma": 0.2},
              lambda o: L.MultiStepLR(o, [10, 30, 60], gamma=0.2), P, lr0=0.3),
        _case({"type": "polynomial", "power": 2.0}, lambda o: L.PolynomialLR(o, total_iters=T, power=2.0), P,
              t_max=T, rel_tol=1e-12),
        _case({"type": "polynomial", "power": 0.5, "t_max": 60 * TOK, "units": "tokens"},
              lambda o: L.PolynomialLR(o, total_iters=60, power=0.5), P, tokens=True, rel_tol=1e-12, abs_tol=1e-15),
        _case({"type": "onecycle"}, lambda o: L.OneCycleLR(o, max_lr=0.5, total_steps=T), P[:-2], steps=T,
              t_max=T, lr0=0.5, extra={100: ONE_CYCLE_END, 129: ONE_CYCLE_END}),
        _case({"type": "onecycle", "t_max": 50, "pct_start": 0.25, "anneal_strategy": "linear", "three_phase": True},
              lambda o: L.OneCycleLR(o, max_lr=1.0, total_steps=50, pct_start=0.25, anneal_strategy="linear",
                                     three_phase=True),
              (0, 5, 11, 12, 13, 23, 24, 30, 49), steps=50, extra={50: ONE_CYCLE_3_END, 70: ONE_CYCLE_3_END}),
        _case({"type": "cyclic", "base_lr": 0.1, "step_size_up": 10, "step_size_down": 5, "mode": "triangular2"},
              lambda o: L.CyclicLR(o, base_lr=0.1, max_lr=1.0, step_size_up=10, step_size_down=5, mode="triangular2"),
              P),
        _case({"type": "cyclic", "base_lr": 0.01, "step_size_up": 7 * TOK, "mode": "exp_range", "gamma": 0.999,
               "units": "tokens"},
              lambda o: L.CyclicLR(o, base_lr=0.01, max_lr=1.0, step_size_up=7, mode="exp_range", gamma=0.999**TOK),
              P, tokens=True, rel_tol=1e-9),
        _case({"type": "cosine_warm_restarts", "t_0": 10, "t_mult": 2, "eta_min": 0.01},
              lambda o: L.CosineAnnealingWarmRestarts(o, T_0=10, T_mult=2, eta_min=0.01), P),
        _case({"type": "cosine_warm_restarts", "t_0": 25 * TOK, "units": "tokens"},
              lambda o: L.CosineAnnealingWarmRestarts(o, T_0=25), P, tokens=True),
        _case({"type": "cosine"}, lambda o: L.CosineAnnealingLR(o, T_max=T), P[:-1], t_max=T, rel_tol=1e-9,
              abs_tol=1e-12, extra={129: 0.0}),
        _case({"type": "cosine_annealing", "eta_min": 0.05, "t_max": 60},
              lambda o: L.CosineAnnealingLR(o, T_max=60, eta_min=0.05), (0, 1, 10, 30, 59, 60), rel_tol=1e-9,
              extra={100: 0.05}),
        _case({"type": "linear"}, lambda o: L.LinearLR(o, start_factor=1.0, end_factor=0.0, total_iters=T), P,
              t_max=T, rel_tol=1e-9, abs_tol=1e-12),
        _case({"type": "linear_ramp", "start_factor": 0.25, "end_factor": 1.0, "t_max": 10},
              lambda o: L.LinearLR(o, start_factor=0.25, end_factor=1.0, total_iters=10), P, rel_tol=1e-12),
    ]
    error_cases = [
        ErrorCase(spec={"type": "step"}, path="$.step_size", match="required"),
        ErrorCase(spec={"type": "step", "step_size": 0}, path="$.step_size", match=r"in \[1, "),
        ErrorCase(spec={"type": "step", "step_size": 5, "gamma": 0.0}, path="$.gamma", match="> 0"),
        ErrorCase(spec={"type": "multistep", "milestones": [30, 10]}, path="$.milestones[1]", match="increase"),
        ErrorCase(spec={"type": "multistep", "milestones": []}, path="$.milestones", match="at least one"),
        ErrorCase(spec={"type": "polynomial", "power": 0.0}, path="$.power", match="> 0"),
        ErrorCase(spec={"type": "onecycle", "pct_start": 1.0}, path="$.pct_start", match=r"in \(0, 1\)"),
        ErrorCase(spec={"type": "onecycle", "three_phase": True, "pct_start": 0.5}, path="$.pct_start",
                  match="pct_start < 0.5"),
        ErrorCase(spec={"type": "onecycle", "anneal_strategy": "cosine"}, path="$.anneal_strategy", match="'cos'"),
        ErrorCase(spec={"type": "cyclic"}, path="$.base_lr", match="required"),
        ErrorCase(spec={"type": "cyclic", "base_lr": 0.1, "mode": "sine"}, path="$.mode", match="triangular"),
        ErrorCase(spec={"type": "cosine_warm_restarts", "t_0": 10, "t_mult": 0}, path="$.t_mult", match=r"in \[1, "),
        ErrorCase(spec={"type": "cosine", "eta_min": -1.0}, path="$.eta_min", match=">= 0"),
        ErrorCase(spec={"type": "linear", "start_factor": 1.5}, path="$.start_factor", match=r"in \[0, 1\]"),
    ]
