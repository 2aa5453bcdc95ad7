"""MoMo's loss plumbing and the Mechanic wrapper's torch-facing behaviour."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

import optreg
from optreg.testing.parity import assert_histories_close, batches, small_model, train


@pytest.mark.parametrize("name", ["momo", "momo_adam"])
def test_momo_takes_the_loss_from_latest_loss(name):
    data = batches(10)
    model_a, model_b = small_model(), small_model()
    opt_a = optreg.build_optimizer({"type": name}, model_a)
    opt_b = optreg.build_optimizer({"type": name}, model_b)
    with_closure = train(model_a, opt_a, data, with_closure=True)
    history = []
    for x, y in data:
        opt_b.zero_grad()
        loss = nn.functional.mse_loss(model_b(x), y)
        loss.backward()
        opt_b.latest_loss = loss
        assert opt_b.step() is None
        assert opt_b.latest_loss is None, "the loss must be consumed by the step"
        history.append([p.detach().clone() for p in model_b.parameters()])
    assert_histories_close(history, with_closure, rtol=0, atol=0)


@pytest.mark.parametrize("name", ["momo", "momo_adam"])
def test_momo_without_a_loss_says_how_to_give_it(name):
    model = small_model()
    optimizer = optreg.build_optimizer({"type": name}, model)
    x, y = batches(1)[0]
    nn.functional.mse_loss(model(x), y).backward()
    with pytest.raises(ValueError, match="latest_loss"):
        optimizer.step()


def test_momo_step_size_never_exceeds_lr():
    """Far from the lower bound the Polyak step is large: MoMo takes at most lr (here tiny)."""
    param = nn.Parameter(torch.tensor([10.0]))
    optimizer = optreg.build_optimizer({"type": "momo", "lr": 1e-3}, [param])
    loss = (param**2).sum()
    loss.backward()
    optimizer.step(lambda: loss.detach())
    torch.testing.assert_close(param.detach(), torch.tensor([10.0 - 1e-3 * 20.0]))
    # and near the bound it takes the Polyak step: f = x^2, d = 2x, tau = f / |d|^2 -> x/2
    param2 = nn.Parameter(torch.tensor([1.0]))
    optimizer2 = optreg.build_optimizer({"type": "momo", "lr": 10.0}, [param2])
    loss2 = (param2**2).sum()
    loss2.backward()
    optimizer2.step(lambda: loss2.detach())
    torch.testing.assert_close(param2.detach(), torch.tensor([0.5]))


def _mechanic(inner=None, **extra):
    model = small_model()
    spec = {"type": "mechanic", "inner": inner or {"type": "sgd", "lr": 0.1}, **extra}
    return model, optreg.build_optimizer(spec, model)


def test_mechanic_shares_groups_and_state_with_the_inner_optimizer():
    model, optimizer = _mechanic()
    assert isinstance(optimizer.inner, torch.optim.SGD)
    assert optimizer.param_groups is optimizer.inner.param_groups
    train(model, optimizer, batches(5))
    assert optimizer.scale > 1e-6
    assert all("mechanic_s" in g and g["mechanic_s"].shape == (6,) for g in optimizer.param_groups)
    # an LR scheduler on the wrapper drives the inner optimizer
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    train(model, optimizer, batches(1), scheduler=scheduler)
    assert optimizer.inner.param_groups[0]["lr"] == pytest.approx(0.05)
    import copy

    twin = copy.deepcopy(optimizer)  # torch's __getstate__ alone would drop the inner optimizer
    assert twin.param_groups is twin.inner.param_groups and twin.scale == optimizer.scale


def test_mechanic_checkpoint_keeps_torchs_shape_and_loads_weights_only():
    model, optimizer = _mechanic({"type": "sgd", "lr": 0.1, "momentum": 0.9})
    train(model, optimizer, batches(5))
    state = optimizer.state_dict()
    assert set(state) == {"state", "param_groups"}
    assert set(state["state"][0]) == {"momentum_buffer", "mechanic_x_ref"}
    assert "mechanic_x_ref" not in optimizer.inner.state[next(model.parameters())], "the inner state was modified"
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    model2, optimizer2 = _mechanic({"type": "sgd", "lr": 0.1, "momentum": 0.9})
    model2.load_state_dict(model.state_dict())
    optimizer2.load_state_dict(loaded)
    assert optimizer2.scale == optimizer.scale
    data = batches(8)[5:]
    assert_histories_close(train(model, optimizer, data), train(model2, optimizer2, data), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("inner", "expected"),
    [({"type": "sgd", "lr": 0.1}, set()), ({"type": "dog"}, {"step_factor"}), ({"type": "momo"}, {"step_factor"})],
)
def test_mechanic_spec_capabilities_are_its_inner_optimizers(inner, expected):
    """step_factor exactly when the inner optimizer takes it (torch's SGD does not; its `foreach` is the inner's)."""
    spec = optreg.get_registry().optimizer_spec({"type": "mechanic", "inner": inner})
    assert spec.capabilities() == expected
    _, optimizer = _mechanic(inner)
    assert optimizer.supports_step_factor == ("step_factor" in expected)


def test_mechanic_honours_the_inner_maximize():
    """Maximizing f with inner maximize = true follows minimizing -f (the kit checks it bit for bit on its MLP)."""
    model, optimizer = _mechanic({"type": "sgd", "lr": 0.1, "maximize": True})
    before = [p.detach().clone() for p in model.parameters()]
    for x, y in batches(20):
        optimizer.zero_grad()
        (-nn.functional.mse_loss(model(x), y)).backward()
        optimizer.step()
    assert optimizer.scale > 1e-4, "Mechanic's scale did not grow: it saw the ascent as a wrong direction"
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_mechanic_step_factor_needs_an_inner_that_supports_it():
    model, optimizer = _mechanic()
    x, y = batches(1)[0]
    nn.functional.mse_loss(model(x), y).backward()
    with pytest.raises(TypeError, match="SGD does not"):
        optimizer.step(step_factor=torch.ones(()))


def test_mechanic_add_param_group_reaches_the_inner_optimizer():
    model, optimizer = _mechanic()
    extra = nn.Parameter(torch.ones(3))
    optimizer.add_param_group({"params": [("extra", extra)], "lr": 0.2})
    assert optimizer.inner.param_groups[-1]["params"] == [extra]
    assert optimizer.param_groups[-1]["mechanic_s"] is optimizer.param_groups[0]["mechanic_s"]
    (extra.sum() + sum(p.sum() for p in model.parameters())).backward()
    optimizer.step()
    assert not torch.equal(extra.detach(), torch.ones(3))



@pytest.mark.parametrize(
    ("spec", "option", "value"),
    [
        ({"type": "prodigy", "per_group_d": True}, "per_group_d", True),
        ({"type": "momo", "beta": 0.5}, "beta", 0.5),
        ({"type": "momo_adam", "betas": [0.5, 0.9]}, "betas", (0.5, 0.9)),
    ],
    ids=["prodigy", "momo", "momo_adam"],
)
def test_deepcopy_keeps_constructor_options(spec, option, value):
    """torch's __getstate__ keeps only defaults/state/groups; constructor-level options must survive too."""
    import copy

    model = small_model()
    optimizer = optreg.build_optimizer(spec, model)
    train(model, optimizer, batches(3), with_closure=True)
    twin = copy.deepcopy(optimizer)
    assert getattr(twin, option) == value
    assert twin.state_dict()["param_groups"] == optimizer.state_dict()["param_groups"]
    assert "scratch" not in optimizer.__getstate__(), "work buffers (up to a param's size) must not be pickled"
    assert twin.scratch is not optimizer.scratch
