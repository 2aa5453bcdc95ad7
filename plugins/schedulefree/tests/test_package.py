"""The package's shape: no torch until an optimizer is asked for, the constructors' checks, the toolbox hooks."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import optreg
from optreg.optim import OptregOptimizer, WrappedOptimizer
from optreg.testing.parity import batches, small_model, train


def test_the_plugin_specs_and_package_import_no_torch():
    code = ("import sys, optreg_schedulefree, optreg_schedulefree.plugin, optreg_schedulefree.specs; "
            "print('torch' in sys.modules); optreg_schedulefree.ScheduleFreeAdamW; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "True"], "the package must load torch only when an optimizer class is asked for"


def test_public_names():
    import optreg_schedulefree
    from optreg_schedulefree import optim, specs

    for name in optreg_schedulefree.__all__:
        assert getattr(optreg_schedulefree, name) is getattr(optim if hasattr(optim, name) else specs, name)
    assert isinstance(optreg_schedulefree.ScheduleFreeRAdam([torch.zeros(2, requires_grad=True)]),
                      optreg_schedulefree.ScheduleFreeAdamW)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        optreg_schedulefree.Nope  # noqa: B018
    names = ("ScheduleFreeAdamWSpec", "ScheduleFreeSGDSpec", "ScheduleFreeRAdamSpec", "ScheduleFreeSpec")
    assert tuple(getattr(specs, n) for n in names) == specs.ALL_SPECS
    assert issubclass(specs.ScheduleFreeSpec, optreg.WrapperSpec)


def _param():
    return [torch.nn.Parameter(torch.zeros(3))]


@pytest.mark.parametrize(("make", "message"), [
    (lambda o: o.ScheduleFreeAdamW(_param(), lr=-1.0), r"^lr must be >= 0, got -1\.0$"),
    (lambda o: o.ScheduleFreeAdamW(_param(), betas=(0.0, 0.999)), r"^betas\[0\] must be in \(0, 1\), got 0\.0$"),
    (lambda o: o.ScheduleFreeAdamW(_param(), betas=(0.9, 1.0)),
     r"^betas\[1\] must be in \[0(\.0)?, 1(\.0)?\), got 1\.0$"),
    (lambda o: o.ScheduleFreeAdamW(_param(), betas=(0.9,)), r"^betas must hold 2 numbers, got 1$"),
    (lambda o: o.ScheduleFreeAdamW(_param(), eps=-1e-8), r"^eps must be >= 0"),
    (lambda o: o.ScheduleFreeRAdam(_param(), warmup_steps=-1),
     r"^warmup_steps must be in \[0, 1125899906842624\], got -1$"),
    (lambda o: o.ScheduleFreeRAdam(_param(), r=float("nan")), r"^r must be a finite number"),
    (lambda o: o.ScheduleFreeSGD(_param(), momentum=1.0), r"^momentum must be in \(0, 1\), got 1\.0$"),
    (lambda o: o.ScheduleFreeSGD(_param(), weight_lr_power=-2.0), r"^weight_lr_power must be >= 0"),
    (lambda o: o.ScheduleFreeSGD(_param(), weight_decay=-0.1), r"^weight_decay must be >= 0, got -0\.1$"),
    (lambda o: o.ScheduleFree(torch.optim.SGD(_param(), lr=0.1), momentum=0.0), r"^momentum must be in \(0, 1\)"),
    (lambda o: o.ScheduleFree(torch.optim.SGD(_param(), lr=0.1), weight_decay_at_y=-1.0),
     r"^weight_decay_at_y must be >= 0"),
], ids=lambda v: "" if callable(v) else v.split(" must")[0].strip("^\\"))
def test_constructors_check_their_arguments_in_the_specs_words(make, message):
    from optreg_schedulefree import optim

    with pytest.raises(ValueError, match=message):
        make(optim)


@pytest.mark.parametrize("spec", [
    {"type": "schedule_free_adamw", "lr": 0.01},
    {"type": "schedule_free_sgd", "lr": 0.2},
], ids=lambda s: s["type"])
def test_a_loaded_checkpoint_is_fixed_up_before_the_users_post_hooks(spec):
    """The step scalars of a loaded state dict (here written by hand as plain numbers) are 0-dim float64
    tensors again when the user's load_state_dict post-hooks run (``_after_load_state_dict``)."""
    model = small_model()
    optimizer = optreg.build_optimizer(spec, model)
    train(model, optimizer, batches(3))
    state_dict = optimizer.state_dict()
    for group in state_dict["param_groups"]:
        group["k"] = int(group["k"])
        del group["weight_sum"]
    seen = []
    optimizer.register_load_state_dict_post_hook(
        lambda opt: seen.extend((g["k"], g["weight_sum"]) for g in opt.param_groups)
    )
    optimizer.load_state_dict(state_dict)
    assert seen and all(isinstance(t, torch.Tensor) and t.dim() == 0 and t.dtype == torch.float64
                        for pair in seen for t in pair)
    assert float(seen[0][0]) == 3.0 and float(seen[0][1]) == 0.0


class _TakesLoss(OptregOptimizer):
    """A momentum-free SGD that records the loss it is handed (stands for MoMo and other loss-aware methods)."""

    def __init__(self, params):
        super().__init__(params, {"lr": 0.1})
        self.latest_loss = None
        self.losses = []

    def _step_group(self, group, step_factor, loss):
        self.losses.append(self.latest_loss)
        for p in group["params"]:
            if p.grad is not None:
                p.add_(p.grad, alpha=-group["lr"])


class _Passthrough(WrappedOptimizer):
    """A wrapper that adds nothing (stands for a wrapper between schedule_free and a loss-aware optimizer)."""

    def step(self, closure=None, *, step_factor=None):
        return self.inner.step(closure)


@pytest.mark.parametrize("nested", [False, True], ids=["inner", "inner-of-inner"])
def test_the_wrapper_hands_the_closures_loss_to_an_inner_optimizer_that_takes_it(nested):
    from optreg_schedulefree import ScheduleFree

    model = small_model()
    inner = _TakesLoss(model.parameters())
    optimizer = ScheduleFree(_Passthrough(inner) if nested else inner)
    x, y = batches(1)[0]

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        return loss

    loss = optimizer.step(closure)
    assert inner.losses and all(seen is loss for seen in inner.losses)
