"""The torch.compile'd per-tensor paths agree with eager.

The chunked-dispatch checks always run (two kernels, ~30 s of compiling on 2 cores); the
per-algorithm comparisons are opt-in (``OPTREG_COMPILE_TESTS=1``: 10-40 s per kernel);
bench/family_step.py adam exercises the same paths at scale.
"""

from __future__ import annotations

import os

import pytest
import torch

import optreg

pytestmark = pytest.mark.slow

opt_in = pytest.mark.skipif(
    os.environ.get("OPTREG_COMPILE_TESTS") != "1",
    reason="compiling takes 10-40 s per kernel on a 2-core CPU; set OPTREG_COMPILE_TESTS=1 to run",
)


def _compare(spec, shapes, *, steps=3, factors=None, groups=lambda params: params, seed=0):
    """Step an eager and a compiled optimizer of ``spec`` side by side (same params and gradients;
    ``factors`` maps a step to its step_factor) and assert the params end equal."""
    torch.manual_seed(seed)
    eager = [torch.randn(s) for s in shapes]
    comp = [p.clone() for p in eager]
    opt_e = optreg.build_optimizer(spec, groups(eager))
    opt_c = optreg.build_optimizer({**spec, "compile": True}, groups(comp))
    for step in range(steps):
        factor = (factors or {}).get(step)
        for p, q in zip(eager, comp):
            p.grad = torch.randn_like(p)
            q.grad = p.grad.clone()
        opt_e.step(step_factor=factor)
        opt_c.step(step_factor=factor)
    for p, q in zip(eager, comp):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6)


@opt_in
@pytest.mark.parametrize(
    "spec",
    [
        {"type": "adamw", "lr": 0.01, "foreach": False, "weight_decay": 0.1},
        {"type": "adamw", "lr": 0.01, "state_dtype": "bfloat16"},
        {"type": "ademamix", "lr": 0.01, "alpha_warmup": 4, "beta3_warmup": 4},
        {"type": "madam", "lr": 0.01},
        {"type": "laprop", "lr": 0.01, "weight_decay": 0.1},
        {"type": "simplified_ademamix", "lr": 0.01, "bias_correction1": True, "alpha": 2.0},
    ],
    ids=lambda s: s["type"] + ("-bf16" if "state_dtype" in s else ""),
)
def test_compiled_matches_eager(spec):
    _compare(spec, [(5, 7), (7,), (3, 2, 2)], steps=4, factors={2: torch.ones(())})


@pytest.mark.parametrize("spec", [{"type": "adamw", "lr": 0.01, "foreach": False}, {"type": "laprop", "lr": 0.01}],
                         ids=lambda s: s["type"])
def test_chunked_compile_serves_any_mix_of_shapes(spec):
    """Several tensors per compiled call: equal to eager, and a new model's mix of sizes and ranks
    reuses the graphs already built (a chunk, a single call, a 1-element call) instead of recompiling.

    One param group (``no_decay = []``): plain tensors' 1-D members otherwise form a second group without
    weight decay, whose own mix of sizes is what the two models would then share or not."""
    spec = {**spec, "no_decay": []}
    from torch._dynamo.utils import counters

    from optreg.compiling import COMPILE_CHUNK

    first = [(5, 7), (7,), (3, 2, 2), (), (1,), (9, 4), (4, 9), (11,), (2,), (6, 6), (2, 3, 1, 2)]
    assert len(first) > 2 * COMPILE_CHUNK
    _compare(spec, first, seed=1)
    graphs = counters["stats"]["unique_graphs"]
    _compare(spec, [(13,), (8, 8), (3, 5), (17, 2), (2, 2, 2), (100,), (1, 1), (4, 1, 3)], seed=1)
    assert counters["stats"]["unique_graphs"] == graphs


def test_past_the_recompile_limit_the_step_runs_eagerly_with_a_warning(monkeypatch):
    """Param groups with different constant options need graphs of their own; past the limit
    (torch's own would fail the step under fullgraph) the updates run eagerly, same result."""
    from optreg import compiling

    monkeypatch.setattr(compiling, "RECOMPILE_LIMIT", 1)
    monkeypatch.setattr(compiling, "_WARNED_LIMIT", set())

    def groups(params):
        return [{"params": [params[0]], "betas": (0.9, 0.99)}, {"params": [params[1]], "betas": (0.8, 0.95)}]

    with pytest.warns(RuntimeWarning, match="remaining updates run eagerly"):
        _compare({"type": "laprop", "lr": 0.01}, [(3, 5), (6,)], groups=groups, seed=2)
