"""train()/eval() modes, checkpoints in every mode combination, BatchNorm re-estimation, wrapper details."""

from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch
from optreg_schedulefree import reestimate_batchnorm
from torch import nn

import optreg
from optreg.scheduling import schedule_warning_of
from optreg.testing import assert_state_equal
from optreg.testing.parity import batches, small_model, train

SPECS = [
    {"type": "schedule_free_adamw", "lr": 0.01, "weight_decay": 0.01},
    {"type": "schedule_free_sgd", "lr": 0.2},
    {"type": "schedule_free_radam", "lr": 0.01, "silent_sgd_phase": False},
    {"type": "schedule_free", "inner": {"type": "sgd", "lr": 0.2}, "weight_decay_at_y": 0.01},
]
IDS = [s["type"] for s in SPECS]


def _params(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_modes_switch_params_between_y_and_x(spec):
    model = small_model()
    optimizer = optreg.build_optimizer(spec, model)
    assert optimizer.training, "a fresh optimizer starts in train mode"
    optimizer.eval()
    optimizer.train()  # before any step there is no z: nothing to switch
    assert_state_equal(_params(small_model()), _params(model), "params before the first step")
    train(model, optimizer, batches(5))
    y = _params(model)
    optimizer.train()  # already in train mode: harmless
    assert_state_equal(y, _params(model), "params after a second train()")
    optimizer.eval()
    x = _params(model)
    assert not optimizer.training
    assert any(not torch.equal(a, b) for a, b in zip(x, y)), "eval() did not move the params to x"
    optimizer.eval()  # twice: harmless
    assert_state_equal(x, _params(model), "params after a second eval()")
    assert all(g.get("train_mode", g.get("sf_train_mode")) is False for g in optimizer.state_dict()["param_groups"])
    optimizer.train()
    for a, b in zip(y, _params(model)):  # y -> x -> y is two lerps: equal up to rounding
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_step_in_eval_mode_raises_a_clear_error(spec):
    model = small_model()
    optimizer = optreg.build_optimizer(spec, model)
    train(model, optimizer, batches(2))
    optimizer.eval()
    x, y = batches(1)[0]
    nn.functional.mse_loss(model(x), y).backward()
    with pytest.raises(RuntimeError, match=r"eval mode.*optimizer\.train\(\)"):
        optimizer.step()


def _checkpoint(model, optimizer) -> io.BytesIO:
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, buffer)
    buffer.seek(0)
    return buffer


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
@pytest.mark.parametrize("saved_in", ["train", "eval"])
@pytest.mark.parametrize("loaded_in", ["train", "eval"])
def test_checkpoint_in_any_mode_resumes_the_same_run(spec, saved_in, loaded_in):
    data = batches(12)
    # the unbroken run: 6 steps, the mode switch a checkpoint is saved in, then 6 more steps
    model_a = small_model()
    opt_a = optreg.build_optimizer(spec, model_a)
    train(model_a, opt_a, data[:6])
    if saved_in == "eval":
        opt_a.eval()
        eval_params = _params(model_a)
    buffer = _checkpoint(model_a, opt_a)
    opt_a.train()
    train(model_a, opt_a, data[6:])

    # the resumed run: a fresh model and optimizer, in either mode, load the checkpoint
    model_b = small_model(seed=1)
    opt_b = optreg.build_optimizer(spec, model_b)
    getattr(opt_b, loaded_in)()
    checkpoint = torch.load(buffer, weights_only=True)
    model_b.load_state_dict(checkpoint["model"])
    opt_b.load_state_dict(checkpoint["optimizer"])
    assert opt_b.training == (saved_in == "train"), "the optimizer must adopt the mode the checkpoint was saved in"
    if saved_in == "eval":
        assert_state_equal(eval_params, _params(model_b), "eval params of the checkpoint")
    opt_b.train()
    train(model_b, opt_b, data[6:])

    assert_state_equal(_params(model_a), _params(model_b), "params after resuming")
    assert_state_equal(opt_a.state_dict(), opt_b.state_dict(), "optimizer state after resuming")
    opt_a.eval()
    opt_b.eval()
    assert_state_equal(_params(model_a), _params(model_b), "eval params after resuming")


class BNNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(6, 8)
        self.bn = nn.BatchNorm1d(8, momentum=0.3)
        self.out = nn.Linear(8, 3)

    def forward(self, x):
        return self.out(torch.relu(self.bn(self.fc(x))))


def test_batchnorm_statistics_are_reestimated_at_x():
    model = BNNet()
    optimizer = optreg.build_optimizer({"type": "schedule_free_sgd", "lr": 0.2}, model)
    data = batches(10)
    train(model, optimizer, data)
    inputs = [x for x, _ in data[:4]]
    used = reestimate_batchnorm(model, optimizer, iter(inputs + inputs[:1]), num_batches=4)
    assert used == 4
    assert not optimizer.training, "the helper leaves the optimizer in eval mode (params at x)"
    assert model.training and model.bn.momentum == 0.3, "the model's flag and the BatchNorm momentum are restored"
    with torch.no_grad():  # the exact average over the 4 batches of the batch statistics at x
        feats = [model.fc(x) for x in inputs]
        mean = torch.stack([f.mean(0) for f in feats]).mean(0)
        var = torch.stack([f.var(0, unbiased=True) for f in feats]).mean(0)
    torch.testing.assert_close(model.bn.running_mean, mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model.bn.running_var, var, rtol=1e-5, atol=1e-6)
    assert int(model.bn.num_batches_tracked) == 4
    # at y the statistics would differ: the helper really evaluated at x
    optimizer.train()
    with torch.no_grad():
        mean_y = torch.stack([model.fc(x).mean(0) for x in inputs]).mean(0)
    assert not torch.allclose(mean_y, mean, rtol=1e-4, atol=1e-5)


def test_batchnorm_helper_with_a_custom_forward_and_the_wrapper():
    model = BNNet()
    optimizer = optreg.build_optimizer({"type": "schedule_free", "inner": {"type": "sgd", "lr": 0.2}}, model)
    data = batches(6)
    train(model, optimizer, data)
    model.eval()
    seen = []
    used = reestimate_batchnorm(model, optimizer, data, forward=lambda m, batch: seen.append(m(batch[0])))
    assert used == len(seen) == 6
    assert not model.training, "the model's eval flag is restored"
    assert not optimizer.training


def test_wrapper_rejects_an_inner_optimizer_with_momentum():
    from optreg_schedulefree import ScheduleFree
    from optreg_schedulefree.specs import inner_momentum

    model = small_model()
    with pytest.raises(ValueError, match=r"momentum = 0\.9; set it to 0"):
        ScheduleFree(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))
    with pytest.raises(ValueError, match=r"betas = 0\.9"):
        ScheduleFree(torch.optim.Adam(model.parameters()))
    assert ScheduleFree(torch.optim.Adam(model.parameters(), betas=(0.0, 0.99))).training
    assert inner_momentum({"betas": (0.9, 0.99)}) == ("betas", 0.9)
    assert inner_momentum({"betas": (0.0, 0.99), "momentum": 0.0}) is None


def test_wrapper_weights_use_lr_times_d_of_an_adaptive_inner_optimizer():
    from optreg_schedulefree import ScheduleFree

    from optreg.optim import OptregOptimizer

    class Adaptive(OptregOptimizer):
        """SGD whose step is lr * d with d = 4 (stands for prodigy / dadapt, which expose group["d"])."""

        def __init__(self, params):
            super().__init__(params, {"lr": 0.05, "d": 4.0})

        def _step_group(self, group, step_factor, loss):
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(p.grad, alpha=-group["lr"] * group["d"])

    model = small_model()
    optimizer = ScheduleFree(Adaptive(model.parameters()))
    train(model, optimizer, batches(2))
    assert float(optimizer.param_groups[0]["sf_lr_max"]) == pytest.approx(0.2)


def test_wrapper_survives_deepcopy():
    import copy

    model = small_model()
    optimizer = optreg.build_optimizer({"type": "schedule_free", "inner": {"type": "sgd", "lr": 0.1}}, model)
    train(model, optimizer, batches(2))
    twin = copy.deepcopy(optimizer)
    assert twin.param_groups is twin.inner.param_groups and twin.momentum == 0.9 and len(twin.wrapper_state) == 4


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_a_copy_keeps_the_mode_and_continues_like_the_original(spec, how):
    """A copy taken in eval mode is in eval mode (params at x) and, back in train mode, steps exactly as the
    original does (the same ops on the same values)."""
    model = small_model()
    optimizer = optreg.build_optimizer(spec, model)
    data = batches(8)
    train(model, optimizer, data[:4])
    optimizer.eval()
    twin_model, twin = copy.deepcopy((model, optimizer)) if how == "deepcopy" else pickle.loads(
        pickle.dumps((model, optimizer))
    )
    assert not twin.training, "the copy of an optimizer in eval mode must be in eval mode"
    assert_state_equal(_params(model), _params(twin_model), "eval params of the copy")
    for opt, net in ((optimizer, model), (twin, twin_model)):
        opt.train()
        train(net, opt, data[4:])
        opt.eval()
    assert_state_equal(_params(model), _params(twin_model), "params after the copy and the original continue")
    assert_state_equal(optimizer.state_dict(), twin.state_dict(), "state after the copy and the original continue")


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_the_work_buffer_is_not_pickled(spec):
    """``scratch`` (a buffer as large as the largest param) is TRANSIENT: left out of pickles, rebuilt empty."""
    if spec["type"] == "schedule_free_sgd":
        spec = {**spec, "weight_decay": 1e-3}  # plain SGD steps with the gradient itself: no buffer
    model = small_model()
    optimizer = optreg.build_optimizer(spec, model)
    train(model, optimizer, batches(2))
    assert optimizer.scratch._buffers, "the step used no work buffer: the check would prove nothing"
    assert "scratch" not in optimizer.__getstate__()
    twin = copy.deepcopy(optimizer)
    assert twin.scratch is not optimizer.scratch and not twin.scratch._buffers


def test_a_varying_schedule_warns_for_the_optimizers_not_for_the_wrapper():
    """The three optimizers replace the schedule (``schedule_warning``); the wrapper takes its warmup from one."""
    for spec in SPECS[:3]:
        note = schedule_warning_of(optreg.build_optimizer(spec, small_model()))
        assert note is not None and "constant LR" in note, spec
    assert schedule_warning_of(optreg.build_optimizer(SPECS[3], small_model())) is None


def test_wrapper_step_factor_needs_an_inner_that_supports_it():
    model = small_model()
    optimizer = optreg.build_optimizer({"type": "schedule_free", "inner": {"type": "sgd", "lr": 0.1}}, model)
    x, y = batches(1)[0]
    nn.functional.mse_loss(model(x), y).backward()
    with pytest.raises(TypeError, match="SGD does not"):
        optimizer.step(step_factor=torch.ones(()))


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_core_scheduler_drives_the_lr(spec):
    model = small_model()
    optimizer = optreg.build_optimizer(spec, model)
    scheduler = optreg.build_scheduler({"type": "constant"}, optimizer, t_max=10)
    reference_model = small_model()
    reference = optreg.build_optimizer(spec, reference_model)
    scheduled = train(model, optimizer, batches(5), scheduler=scheduler)
    assert_state_equal(scheduled, train(reference_model, reference, batches(5)))
