"""The accelerator code path (0-dim tensor coefficients, no host reads) run on CPU.

On CPU the optimizers read their step coefficients into Python floats (one-pass
scalar overloads); on GPUs they keep them as tensors so a step never syncs. CI
has no GPU, so these tests switch the CPU to the tensor path and check it
against the float path and for the step_factor contract.
"""

from __future__ import annotations

import pytest
from optreg_paramfree import _common

import optreg
from optreg.testing import assert_step_factor_contract
from optreg.testing.parity import assert_histories_close, batches, small_model, train

SPECS = [
    {"type": "prodigy", "weight_decay": 0.01, "betas": [0.9, 0.99]},
    {"type": "prodigy", "betas": [0.0, 0.99], "decouple": False, "weight_decay": 1e-3},
    {"type": "dadapt_adamw", "weight_decay": 0.01},
    {"type": "dadapt_sgd", "momentum": 0.9, "d0": 1e-3},
    {"type": "dadapt_lion", "weight_decay": 0.01},
    {"type": "dog", "weight_decay": 1e-3},
    {"type": "dowg"},
    {"type": "cocob"},
    {"type": "mechanic", "inner": {"type": "dog", "init_step": "learning_rate", "init_step_value": 0.05}},
    {"type": "momo", "weight_decay": 1e-3},
    {"type": "momo_adam", "weight_decay": 1e-3, "weight_decay_mode": "decoupled"},
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
