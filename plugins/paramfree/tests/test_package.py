"""The package's shape seen from Python: lazy exports, constructor checks in the spec's words, loads."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

import optreg
from optreg.optim import TakesLoss

NAMES = ["COCOB", "DAdaptAdamW", "DAdaptLion", "DAdaptSGD", "DoG", "DoWG", "Mechanic", "Momo", "MomoAdam", "Prodigy"]


def test_importing_the_package_imports_no_torch_and_exports_the_classes_lazily():
    code = (
        "import sys, optreg_paramfree as pf; before = 'torch' in sys.modules; "
        "specs = {s.TYPE for s in pf.ALL_SPECS}; cls = pf.Prodigy; "
        "print(before, 'torch' in sys.modules, cls.__module__, len(specs))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "True", "optreg_paramfree.optim.prodigy", "10"]


@pytest.mark.parametrize("name", NAMES)
def test_every_class_is_exported_from_the_package_and_from_optim(name):
    import optreg_paramfree
    import optreg_paramfree.optim

    assert getattr(optreg_paramfree, name) is getattr(optreg_paramfree.optim, name)
    assert name in optreg_paramfree.__all__ and name in dir(optreg_paramfree)


def test_an_unknown_attribute_is_an_attribute_error():
    import optreg_paramfree

    with pytest.raises(AttributeError, match="no attribute 'Adam'"):
        optreg_paramfree.Adam  # noqa: B018


def _params():
    return [nn.Parameter(torch.zeros(3))]


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("Prodigy", {"lr": -1.0}, "lr must be >= 0, got -1.0"),
        ("Prodigy", {"betas": (0.9, 1.0)}, r"betas\[1\] must be in \[0(\.0)?, 1(\.0)?\), got 1.0"),
        ("Prodigy", {"beta3": 1.5}, r"beta3 must be in \[0, 1\), got 1.5"),
        ("Prodigy", {"d_coef": 0.0}, "d_coef must be > 0, got 0.0"),
        ("Prodigy", {"growth_rate": 0.5}, "growth_rate must be >= 1, got 0.5"),
        ("Prodigy", {"slice_p": 0}, r"slice_p must be in \[1, 1048576\], got 0"),
        ("DAdaptAdamW", {"eps": -1.0}, "eps must be >= 0, got -1.0"),
        ("DAdaptSGD", {"momentum": 1.0}, r"momentum must be in \[0, 1\), got 1.0"),
        ("DAdaptLion", {"d0": 0.0}, "d0 must be > 0, got 0.0"),
        ("DoG", {"init_step_value": 0.0}, "init_step_value must be > 0, got 0.0"),
        ("DoG", {"init_step": "lr"}, "init_step must be one of"),
        ("DoWG", {"eps": 0.0}, "eps must be > 0, got 0.0"),
        ("COCOB", {"alpha": 0.0}, "alpha must be > 0, got 0.0"),
        ("Momo", {"beta": 1.0}, r"beta must be in \[0, 1\), got 1.0"),
        ("Momo", {"lower_bound": float("nan")}, "lower_bound must be a finite number"),
        ("MomoAdam", {"weight_decay": -0.1}, "weight_decay must be >= 0, got -0.1"),
        ("MomoAdam", {"weight_decay_mode": "l2"}, "weight_decay_mode must be one of"),
    ],
)
def test_constructor_checks_say_what_the_spec_says(name, kwargs, message):
    import optreg_paramfree

    with pytest.raises(ValueError, match=message):
        getattr(optreg_paramfree, name)(_params(), **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"num_betas": 16}, r"num_betas must be in \[1, 15\], got 16"), ({"s_init": 0.0}, "s_init must be > 0")],
)
def test_mechanic_constructor_checks(kwargs, message):
    from optreg_paramfree import Mechanic

    with pytest.raises(ValueError, match=message):
        Mechanic(torch.optim.SGD(_params(), lr=0.1), **kwargs)


def test_momo_takes_the_loss_and_mechanic_hands_it_over_with_give_loss():
    """MoMo is a TakesLoss; Mechanic is not (it needs no loss), and give_loss reaches MoMo through it."""
    from optreg.optim import give_loss
    from optreg.testing.parity import assert_histories_close, batches, small_model, train

    spec = {"type": "mechanic", "inner": {"type": "momo"}, "s_init": 1e-2}
    model_a, model_b = small_model(), small_model()
    opt_a, opt_b = optreg.build_optimizer(spec, model_a), optreg.build_optimizer(spec, model_b)
    assert isinstance(opt_b.inner, TakesLoss) and not isinstance(opt_b, TakesLoss)
    data = batches(6)
    with_closure = train(model_a, opt_a, data, with_closure=True)
    history = []
    for x, y in data:
        opt_b.zero_grad()
        loss = nn.functional.mse_loss(model_b(x), y)
        loss.backward()
        give_loss(opt_b, loss.detach())
        opt_b.step()
        assert opt_b.inner.latest_loss is None
        history.append([p.detach().clone() for p in model_b.parameters()])
    assert_histories_close(history, with_closure, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("spec", "key"), [({"type": "prodigy"}, "d"), ({"type": "dog"}, "eta"), ({"type": "momo"}, "lb")]
)
def test_scalars_are_fixed_up_before_the_users_load_post_hooks(spec, key):
    """A checkpoint holding an estimate as a number (or on another device) is turned into the 0-dim
    float64 tensor on the params' device before the user's post-hooks see the optimizer."""
    model = nn.Linear(3, 2)
    optimizer = optreg.build_optimizer(spec, model)
    state = optimizer.state_dict()
    for group in state["param_groups"]:
        group[key] = 0.25
    seen = []
    optimizer.register_load_state_dict_post_hook(lambda opt: seen.append(opt.param_groups[0][key]))
    optimizer.load_state_dict(state)
    assert isinstance(seen[0], torch.Tensor) and seen[0].dtype == torch.float64 and seen[0].ndim == 0
    assert float(seen[0]) == 0.25
