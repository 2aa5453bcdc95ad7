"""The accelerator code path (0-dim tensor coefficients, no host reads) run on CPU.

On CPU the optimizers read their step coefficients into Python floats (one-pass
scalar overloads); on GPUs they keep them as tensors so a step never syncs. CI
has no GPU, so these tests switch the CPU to the tensor path and check it
against the float path and for the step_factor contract.
"""

from __future__ import annotations

import pytest
from optreg_schedulefree import _common

import optreg
from optreg.testing import assert_step_factor_contract
from optreg.testing.parity import assert_histories_close, batches, small_model, train

SPECS = [
    {"type": "schedule_free_adamw", "lr": 0.01, "weight_decay": 0.01, "warmup_steps": 3},
    {"type": "schedule_free_adamw", "lr": 0.01, "foreach": True, "weight_decay_at_y": False, "weight_decay": 0.01},
    {"type": "schedule_free_sgd", "lr": 0.2, "weight_decay": 1e-3},
    {"type": "schedule_free_sgd", "lr": 0.2, "foreach": True},
    {"type": "schedule_free_radam", "lr": 0.01},
    {"type": "schedule_free_radam", "lr": 0.01, "silent_sgd_phase": False, "foreach": True},
    {"type": "schedule_free", "inner": {"type": "sgd", "lr": 0.2}, "weight_decay_at_y": 1e-3},
]


@pytest.fixture
def tensor_path(monkeypatch):
    monkeypatch.setattr(_common, "HOST_SCALARS_ON_CPU", False)


def _run(spec, steps=12):
    model = small_model()
    optimizer = optreg.build_optimizer(spec, model)
    return train(model, optimizer, batches(steps), with_closure=True), optimizer


@pytest.mark.parametrize("spec", SPECS, ids=[f"{s['type']}-{i}" for i, s in enumerate(SPECS)])
def test_tensor_path_matches_the_float_path(spec, monkeypatch):
    floats, _ = _run(spec)
    monkeypatch.setattr(_common, "HOST_SCALARS_ON_CPU", False)
    tensors, _ = _run(spec)
    assert_histories_close(tensors, floats, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("spec", SPECS, ids=[f"{s['type']}-{i}" for i, s in enumerate(SPECS)])
def test_tensor_path_step_factor(spec, tensor_path):
    if spec.get("inner", {}).get("type") == "sgd":
        pytest.skip("torch's SGD inner optimizer does not take step_factor")
    assert_step_factor_contract(lambda model: optreg.build_optimizer(spec, model))
