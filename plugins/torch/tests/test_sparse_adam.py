"""SparseAdam on what it is for, sparse gradients (nn.Embedding(sparse=True)): the checks of the kit that its
dense-gradient problems cannot run, plus 0 difference with torch's class and the sparse-gradient contract."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import nn

import optreg
from optreg.testing import assert_state_equal

ROWS, DIM, STEPS = 30, 4, 20


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Embedding(ROWS, DIM, sparse=True)


TARGETS = torch.randn(ROWS, DIM, generator=torch.Generator().manual_seed(1))


def _batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    idx = torch.randint(0, ROWS // 2, (8,), generator=torch.Generator().manual_seed(100 + step))  # rows >= 15 unused
    return idx, TARGETS[idx]


def _train(model: nn.Module, optimizer: torch.optim.Optimizer, steps: range, sign: float = 1.0) -> list[float]:
    losses = []
    for step in steps:
        idx, target = _batch(step)

        def closure(idx: torch.Tensor = idx, target: torch.Tensor = target) -> torch.Tensor:
            optimizer.zero_grad(set_to_none=True)
            loss = sign * ((model(idx) - target) ** 2).sum()
            loss.backward()
            return loss

        losses.append(float(optimizer.step(closure).detach()))
    return losses


OPTIONS = {"lr": 0.05, "betas": [0.8, 0.99], "eps": 1e-6}


def _pair() -> tuple[nn.Module, torch.optim.Optimizer]:
    model = _model()
    return model, optreg.build_optimizer({"type": "sparse_adam", **OPTIONS}, model)


def test_equals_torch_sparse_adam_to_zero_difference() -> None:
    ours_model, ours = _pair()
    theirs_model = _model()
    theirs = torch.optim.SparseAdam(theirs_model.parameters(), lr=0.05, betas=(0.8, 0.99), eps=1e-6)
    assert _train(ours_model, ours, range(STEPS)) == _train(theirs_model, theirs, range(STEPS))
    assert torch.equal(ours_model.weight, theirs_model.weight)
    assert_state_equal(ours.state_dict()["state"], theirs.state_dict()["state"])


def test_descends_and_leaves_rows_without_gradient_alone() -> None:
    model, optimizer = _pair()
    before = model.weight.detach().clone()
    losses = _train(model, optimizer, range(100))
    assert sum(losses[-10:]) < 0.5 * sum(losses[:10])
    assert torch.equal(model.weight[ROWS // 2:], before[ROWS // 2:]), "rows that never had a gradient moved"


def test_a_dense_gradient_is_refused_clearly() -> None:
    model = nn.Linear(3, 2)
    optimizer = optreg.build_optimizer({"type": "sparse_adam"}, model)
    model(torch.ones(1, 3)).sum().backward()
    with pytest.raises(RuntimeError, match="does not support dense gradients"):
        optimizer.step()


def test_resume_equals_an_unbroken_run() -> None:
    model_a, opt_a = _pair()
    _train(model_a, opt_a, range(10))
    model_b, opt_b = _pair()
    _train(model_b, opt_b, range(5))
    buffer = io.BytesIO()
    torch.save({"model": model_b.state_dict(), "optimizer": opt_b.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    model_c, opt_c = _pair()
    model_c.load_state_dict(saved["model"])
    opt_c.load_state_dict(saved["optimizer"])
    _train(model_c, opt_c, range(5, 10))
    assert torch.equal(model_a.weight, model_c.weight)
    assert_state_equal(opt_a.state_dict(), opt_c.state_dict())


def test_deepcopy_continues_as_the_original() -> None:
    model, optimizer = _pair()
    _train(model, optimizer, range(3))
    model_copy, optimizer_copy = copy.deepcopy((model, optimizer))
    _train(model, optimizer, range(3, 6))
    _train(model_copy, optimizer_copy, range(3, 6))
    assert torch.equal(model.weight, model_copy.weight)


def test_maximize_equals_minimizing_the_negated_loss() -> None:
    model_a, opt_a = _pair()
    model_b = _model()
    opt_b = optreg.build_optimizer({"type": "sparse_adam", **OPTIONS, "maximize": True}, model_b)
    _train(model_a, opt_a, range(5))
    _train(model_b, opt_b, range(5), sign=-1.0)
    assert torch.equal(model_a.weight, model_b.weight)


def test_a_parameter_without_gradient_is_skipped() -> None:
    torch.manual_seed(0)
    used, unused = nn.Embedding(5, 2, sparse=True), nn.Embedding(5, 2, sparse=True)
    optimizer = optreg.build_optimizer({"type": "sparse_adam"}, nn.ModuleDict({"used": used, "unused": unused}))
    before = unused.weight.detach().clone()
    used(torch.tensor([0, 1])).sum().backward()
    optimizer.step()
    assert torch.equal(unused.weight, before) and unused.weight.grad is None


def test_state_estimate_equals_the_state_after_a_step() -> None:
    from optreg.memory import estimate_state, measured_state_bytes

    model, optimizer = _pair()
    estimate = estimate_state(optreg.get_registry().optimizer_spec({"type": "sparse_adam", **OPTIONS}), model)
    _train(model, optimizer, range(1))
    assert estimate.complete
    assert estimate.total_bytes == estimate.first_step_bytes == measured_state_bytes(optimizer) == 2 * ROWS * DIM * 4
