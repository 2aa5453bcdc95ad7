"""A NaN or inf gradient is never silently absorbed: it shows in the params (and in the estimate).

After one non-finite gradient element, and then finite gradients, every parameter element is
either NaN or still moving (nothing silently frozen), the element that got the bad gradient is
not finite, and an optimizer with an estimate (``d``, ``eta``, Mechanic's ``s``, MoMo's ``gamma``)
shows it as NaN. Before the fix DAdaptLion froze the element (``sign(NaN)`` is 0 on CPU) with NaN
in its momentum for good; Prodigy and D-Adapt kept ``d`` finite and stopped counting steps; MoMo
stepped 0 for good; DoG and DoWG froze every param on an inf gradient (``eta = 0``).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import optreg

# name -> (spec, the param-group key holding the estimate, or None)
CASES = {
    "prodigy": ({"type": "prodigy"}, "d"),
    "dadapt_adamw": ({"type": "dadapt_adamw"}, "d"),
    "dadapt_sgd": ({"type": "dadapt_sgd", "momentum": 0.9, "d0": 1e-3}, "d"),
    "dadapt_lion": ({"type": "dadapt_lion"}, "d"),
    "dadapt_lion-decay": ({"type": "dadapt_lion", "weight_decay": 0.1, "per_group_d": True}, "d"),
    "dog": ({"type": "dog"}, "eta"),
    "dowg": ({"type": "dowg"}, "eta"),
    "cocob": ({"type": "cocob"}, None),
    "mechanic": ({"type": "mechanic", "inner": {"type": "sgd", "lr": 0.1}}, "mechanic_s"),
    "mechanic-dog": ({"type": "mechanic", "inner": {"type": "dog"}}, "mechanic_s"),
    "momo": ({"type": "momo"}, "gamma"),
    "momo_adam": ({"type": "momo_adam"}, "gamma"),
}


def test_every_name_is_covered():
    registry = optreg.get_registry()
    names = registry.names("optimizer")
    ours = {n for n in names if registry.provider("optimizer", n).distribution == "optreg-paramfree"}
    assert ours <= {spec["type"] for spec, _ in CASES.values()}


def _grads(params: list[torch.Tensor], step: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(step)
    return [torch.randn(p.shape, generator=g) for p in params]


@pytest.mark.parametrize("bad", [float("nan"), float("inf")], ids=["nan", "inf"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_a_nonfinite_gradient_is_visible(name, bad):
    spec, key = CASES[name]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))
    params = list(model.parameters())
    optimizer = optreg.build_optimizer(spec, model)
    loss = torch.tensor(0.5)  # MoMo's model of the loss needs one; the gradients below are given

    def step(number: int, *, poison: bool = False) -> None:
        for p, g in zip(params, _grads(params, number)):
            p.grad = g
        if poison:
            params[0].grad[1, 2] = bad
        optimizer.step(lambda: loss)

    for number in range(3):
        step(number)
    step(3, poison=True)
    for number in range(4, 6):
        before = [p.detach().clone() for p in params]
        step(number)
    assert not math.isfinite(float(params[0].detach()[1, 2])), "the element with the bad gradient still looks fine"
    for i, (p, b) in enumerate(zip(params, before)):
        frozen = torch.isfinite(p) & (p == b)
        assert not frozen.any(), f"param {i}: {int(frozen.sum())} finite elements silently stopped moving"
    if key is not None:
        estimate = optimizer.param_groups[0][key]
        assert torch.isnan(estimate).any(), f"the estimate {key} = {estimate} hides the bad gradient"


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_skipped_step_with_nan_gradients_changes_nothing_later(name):
    """The NaN detection does not fire on a step_factor = 0 step (its gradients are gated out)."""
    spec, key = CASES[name]
    if spec["type"] == "mechanic" and spec["inner"]["type"] == "sgd":
        pytest.skip("torch's SGD inner optimizer does not take step_factor")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))
    params = list(model.parameters())
    optimizer = optreg.build_optimizer(spec, model)
    for number in range(4):
        for p, g in zip(params, _grads(params, number)):
            p.grad = g.fill_(float("nan")) if number == 2 else g
        factor = torch.zeros(()) if number == 2 else torch.ones(())
        optimizer.step(lambda: torch.tensor(0.5), step_factor=factor)
    assert all(torch.isfinite(p).all() for p in params)
    if key is not None:
        assert torch.isfinite(optimizer.param_groups[0][key]).all()
