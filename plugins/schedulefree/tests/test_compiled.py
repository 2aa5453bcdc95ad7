"""``compile = true``: the fused per-tensor kernel equals the eager step.

The schedule-free AdamW check always runs (one kernel, ~20 s of compiling on 2 cores);
the RAdam variants are opt-in (``OPTREG_COMPILE_TESTS=1``).
"""

from __future__ import annotations

import os

import pytest
import torch

import optreg
from optreg.testing import assert_step_factor_contract

pytestmark = pytest.mark.slow

SHAPES = [(5, 7), (7,), (3, 2, 2), (), (1,), (9, 4), (4, 9), (11,), (2,), (6, 6)]
ADAMW = {"type": "schedule_free_adamw", "lr": 0.01, "weight_decay": 0.1, "warmup_steps": 2}


def _compare(spec: dict, steps: int = 8) -> None:
    """Eager and compiled runs from the same start: equal in train mode (y) and in eval mode (x),
    through a skipped step with NaN gradients (factor 0) and a taken one (factor 1). A complex param
    goes through the compiled kernel as its view_as_real.

    Compiled and eager are different code paths (inductor fuses, reorders and may contract into
    FMAs differently per CPU kind): equal within a float32 tolerance, not bit for bit."""
    torch.manual_seed(0)
    eager = [torch.randn(s) for s in SHAPES] + [torch.randn(4, 3, dtype=torch.complex64)]
    comp = [p.clone() for p in eager]
    opt_e = optreg.build_optimizer(spec, eager)
    opt_c = optreg.build_optimizer({**spec, "compile": True}, comp)
    for step in range(steps):
        factor = torch.zeros(()) if step == 3 else torch.ones(()) if step == 5 else None
        for p, q in zip(eager, comp):
            p.grad = torch.full_like(p, float("nan")) if step == 3 else torch.randn_like(p)
            q.grad = p.grad.clone()
        opt_e.step(step_factor=factor)
        opt_c.step(step_factor=factor)
    for p, q in zip(eager, comp):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6)
    for p in eager:
        assert torch.isfinite(p).all()
    opt_e.eval()
    opt_c.eval()
    for p, q in zip(eager, comp):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6)
    for key in ("z", "exp_avg_sq"):
        for p, q in zip(eager, comp):
            torch.testing.assert_close(opt_c.state[q][key], opt_e.state[p][key], rtol=1e-5, atol=1e-6)


def test_compiled_schedule_free_adamw_matches_eager():
    _compare(ADAMW)


def test_compiled_step_factor_contract():
    """A plain compiled step passes keep = True to the kernel a step_factor step runs: one graph, so a
    factor of 1 equals the plain step bit for bit (and 0 with NaN gradients changes nothing)."""
    # a list of params (no no-decay groups): every param has _compare's constants, so its graphs are reused
    spec = {**ADAMW, "compile": True}
    assert_step_factor_contract(lambda model: optreg.build_optimizer(spec, list(model.parameters())))


@pytest.mark.skipif(os.environ.get("OPTREG_COMPILE_TESTS") != "1",
                    reason="compiling takes 10-40 s per kernel variant; set OPTREG_COMPILE_TESTS=1 to run")
@pytest.mark.parametrize("spec", [
    {"type": "schedule_free_radam", "lr": 0.01, "weight_decay": 0.1, "weight_decay_at_y": False},
    {"type": "schedule_free_radam", "lr": 0.01, "silent_sgd_phase": False},
], ids=["decay_at_z", "sgd_phase"])
def test_compiled_schedule_free_radam_matches_eager(spec):
    _compare(spec)


def test_compile_leaves_non_contiguous_params_to_the_eager_path():
    """A transposed (non-contiguous) param cannot be flattened: it takes the eager step, same result."""
    torch.manual_seed(1)
    eager = torch.randn(6, 4).t().clone()  # clone keeps the transposed strides: a non-contiguous 4x6 leaf
    comp = eager.clone()
    assert not comp.is_contiguous()
    opt_e = optreg.build_optimizer({"type": "schedule_free_adamw", "lr": 0.01}, [eager])
    opt_c = optreg.build_optimizer({"type": "schedule_free_adamw", "lr": 0.01, "compile": True}, [comp])
    for _ in range(3):
        eager.grad = torch.randn_like(eager)
        comp.grad = eager.grad.clone()
        opt_e.step()
        opt_c.step()
    # exact: both optimizers step this param with the very same eager ops (nothing was compiled for it)
    torch.testing.assert_close(comp, eager, rtol=0, atol=0)


@pytest.mark.skipif(os.environ.get("OPTREG_COMPILE_TESTS") != "1",
                    reason="compiling takes 10-40 s per kernel variant; set OPTREG_COMPILE_TESTS=1 to run")
def test_compiled_float64_stays_float64():
    """float64 params: the compiled kernel agrees with the (float64-pure, kit-checked) eager step to float64
    precision. A coefficient rounded to float32 anywhere in the kernel would be off by ~1e-8 relative."""
    torch.manual_seed(0)
    eager = [torch.randn(s, dtype=torch.float64) for s in SHAPES]
    comp = [p.clone() for p in eager]
    opt_e = optreg.build_optimizer(ADAMW, eager)
    opt_c = optreg.build_optimizer({**ADAMW, "compile": True}, comp)
    for _ in range(6):
        for p, q in zip(eager, comp):
            p.grad = torch.randn_like(p)
            q.grad = p.grad.clone()
        opt_e.step()
        opt_c.step()
    for p, q in zip(eager, comp):
        assert q.dtype == torch.float64 and opt_c.state[q]["exp_avg_sq"].dtype == torch.float64
        torch.testing.assert_close(q, p, rtol=1e-12, atol=1e-14)
