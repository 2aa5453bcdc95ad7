"""Skip-step behaviour: spikes and NaNs skipped exactly, no host sync, fallback, statistics, resume, noop."""

from __future__ import annotations

import contextlib
import io
import warnings

import pytest
import torch
from optreg_sign import Lion
from optreg_skipstep import SkipStepOptimizer, SpikeDetector

import optreg
from optreg.testing import assert_state_equal, make_problem


def params_of(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def backward(model, opt, step):
    opt.zero_grad(set_to_none=True)
    loss = model.loss(step)
    loss.backward()
    return loss.detach()


def build(spec, model):
    return optreg.build_optimizer(spec, model)


def split_stats(state_dict):
    """(the inner optimizer's state dict, the skip statistics): the statistics are ``skip_step_*`` entries of
    ``param_groups[0]``."""
    groups = [dict(group) for group in state_dict["param_groups"]]
    stats = {k[len("skip_step_"):]: groups[0].pop(k) for k in list(groups[0]) if k.startswith("skip_step_")}
    return {**state_dict, "param_groups": groups}, stats


def stats_of(opt):
    """The skip statistics as ``opt.state_dict()`` saves them."""
    return split_stats(opt.state_dict())[1]


SMALL = {"rolling_interval_length": 16, "min_samples": 8}


# ---------------------------------------------------------------- exactness


@pytest.mark.parametrize(
    ("wrapped", "plain"),
    [
        ({"type": "skip_step", "inner": {"type": "lion", "lr": 0.01, "weight_decay": 0.1}, **SMALL},
         {"type": "lion", "lr": 0.01, "weight_decay": 0.1}),
        ({"type": "skip_step_lion", "lr": 0.01, "weight_decay": 0.1, **SMALL},
         {"type": "lion", "lr": 0.01, "weight_decay": 0.1}),
        ({"type": "skip_step", "inner": {"type": "signum", "lr": 0.01, "nesterov": True, "correct_bias": True},
          **SMALL},
         {"type": "signum", "lr": 0.01, "nesterov": True, "correct_bias": True}),
        ({"type": "skip_step_adamw", "lr": 0.01, "weight_decay": 0.1, **SMALL},
         {"type": "adamw", "lr": 0.01, "weight_decay": 0.1}),
        ({"type": "skip_step", "inner": {"type": "adamw", "lr": 0.01, "foreach": True}, **SMALL},
         {"type": "adamw", "lr": 0.01, "foreach": True}),
        ({"type": "skip_step_adamw", "lr": 0.01, "fused": True, **SMALL},
         {"type": "adamw", "lr": 0.01, "fused": True}),
    ],
    ids=["skip_step-lion", "skip_step_lion", "skip_step-signum", "skip_step_adamw", "skip_step-adamw-foreach",
         "skip_step_adamw-fused"],
)
def test_without_spikes_equals_the_inner_optimizer(wrapped, plain):
    torch.manual_seed(0)
    model_a, model_b = make_problem("mlp"), make_problem("mlp")
    opt_a, opt_b = build(wrapped, model_a), build(plain, model_b)
    for step in range(30):
        opt_a.latest_loss = backward(model_a, opt_a, step)
        opt_a.step()
        assert not bool(opt_a.step_skipped), f"step {step} was skipped without a spike"
        backward(model_b, opt_b, step)
        opt_b.step()
    assert_state_equal(params_of(model_a), params_of(model_b), "params")
    state_a, stats = split_stats(opt_a.state_dict())
    assert int(stats["num_skipped"]) == 0
    assert_state_equal(state_a, opt_b.state_dict(), "state")


def _run_with_faults(spec, faults, steps=24):
    """Train with the wrapper; ``faults[step]`` is "loss" (a 1e9 loss) or "nan" (a NaN grad)."""
    torch.manual_seed(0)
    model = make_problem("mlp")
    opt = build(spec, model)
    skipped = []
    for step in range(steps):
        loss = backward(model, opt, step)
        if faults.get(step) == "loss":
            loss = torch.tensor(1e9)
        elif faults.get(step) == "nan":
            model.fc2.weight.grad[0, 0] = float("nan")
        before_p, before_s = params_of(model), _clone(opt.state_dict())
        opt.latest_loss = loss
        opt.step()
        skipped.append(bool(opt.step_skipped))
        if skipped[-1]:
            after_s = split_stats(opt.state_dict())[0]
            before_s = split_stats(before_s)[0]
            assert_state_equal(before_p, params_of(model), f"params after skipped step {step}")
            assert_state_equal(before_s, after_s, f"inner state after skipped step {step}")
    return model, opt, skipped


def _clone(state):
    if isinstance(state, torch.Tensor):
        return state.clone()
    if isinstance(state, dict):
        return {k: _clone(v) for k, v in state.items()}
    if isinstance(state, list):
        return [_clone(v) for v in state]
    return state


@pytest.mark.parametrize(
    "spec",
    [
        {"type": "skip_step_lion", "lr": 0.01, **SMALL},
        {"type": "skip_step", "inner": {"type": "signum", "lr": 0.01}, **SMALL},
        {"type": "skip_step_adamw", "lr": 0.01, **SMALL},
        {"type": "skip_step_adamw", "lr": 0.01, "fused": True, **SMALL},
        {"type": "skip_step", "inner": {"type": "sgd", "lr": 0.05, "momentum": 0.9}, **SMALL},
    ],
    ids=["lion", "signum", "adamw", "adamw-fused", "sgd-host-synced"],
)
def test_loss_spike_and_nan_grad_are_skipped_and_training_continues(spec):
    faults = {3: "nan", 12: "loss", 13: "loss", 18: "nan"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the sgd case warns about its host-synced fallback
        model, opt, skipped = _run_with_faults(spec, faults)
    assert [s for s, flag in enumerate(skipped) if flag] == sorted(faults), skipped
    stats = opt.statistics()
    assert int(stats["num_skipped"]) == 4 and int(stats["num_steps"]) == 24
    # A skipped step is the same as no step at all: replay the run without the faulty steps.
    torch.manual_seed(0)
    reference = make_problem("mlp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ref_opt = build({k: v for k, v in spec.items() if k not in SMALL}, reference)
    inner = ref_opt.inner if isinstance(ref_opt, SkipStepOptimizer) else ref_opt
    for step in range(24):
        backward(reference, inner, step)
        if step not in faults:
            inner.step()
    assert_state_equal(params_of(reference), params_of(model), "params vs a run that omitted the faulty steps")
    # the reference of the sgd case is a host-synced wrapper too: its shared groups hold statistics
    ref_state, state = split_stats(inner.state_dict())[0], split_stats(opt.state_dict())[0]
    assert_state_equal(ref_state, state, "optimizer state (step counters included) vs that run")


def test_a_spike_does_not_hide_the_next_one():
    detector = SpikeDetector(rolling_interval_length=32, sigma_factor=6.0, min_samples=8)
    g = torch.Generator().manual_seed(0)
    values = (1.0 + 0.01 * torch.randn(40, generator=g)).tolist()
    decisions = []
    for i, value in enumerate(values):
        if i in (20, 22, 30):
            value = 1e9
        decisions.append(float(detector.update(torch.tensor(value), None)))
    assert [i for i, f in enumerate(decisions) if f == 0] == [20, 22, 30]
    window = detector.state["loss_window"]
    assert float(window.max()) < 1.2, "a spike must enter the window clipped to the threshold"


def test_a_lasting_level_shift_is_accepted_after_a_while():
    detector = SpikeDetector(rolling_interval_length=64, sigma_factor=6.0, min_samples=16)
    g = torch.Generator().manual_seed(0)
    for value in (1.0 + 0.01 * torch.randn(64, generator=g)).tolist():
        assert float(detector.update(torch.tensor(value), None)) == 1
    decisions = [float(detector.update(torch.tensor(1.5 + 0.01 * i % 0.02), None)) for i in range(200)]
    first_taken = decisions.index(1.0)
    assert 0 < first_taken < 100, f"the new level was first accepted after {first_taken} steps"
    assert all(d == 1.0 for d in decisions[first_taken + 20:]), "after adapting, the new level must stay accepted"


def test_before_min_samples_only_non_finite_values_skip():
    detector = SpikeDetector(rolling_interval_length=16, sigma_factor=1.0, min_samples=8)
    values = [1.0, 1.1, 50.0, float("nan"), 0.9, float("inf"), 1.0]
    decisions = [float(detector.update(torch.tensor(v), torch.tensor(1.0))) for v in values]
    assert decisions == [1, 1, 1, 0, 1, 0, 1]
    assert int(detector.state["loss_count"]) == 5, "non-finite values are never recorded"


def test_explicit_grad_norm_is_used():
    torch.manual_seed(0)
    model = make_problem("mlp")
    opt = build({"type": "skip_step_lion", "lr": 0.01, **SMALL}, model)
    for step in range(12):
        opt.latest_loss = backward(model, opt, step)
        opt.latest_grad_norm = torch.tensor(1.0 + 0.001 * step)
        opt.step()
        assert not bool(opt.step_skipped)
    before = params_of(model)
    opt.latest_loss = backward(model, opt, 12)
    opt.latest_grad_norm = torch.tensor(1e6)
    opt.step()
    assert bool(opt.step_skipped)
    assert_state_equal(before, params_of(model), "params")
    assert opt.latest_loss is None and opt.latest_grad_norm is None, "step() consumes latest_*"


def test_give_loss_hands_the_loss_and_the_grad_norm_over():
    """The train loop calls ``optreg.optim.give_loss``: the wrapper takes both (TakesLoss, TakesGradNorm)."""
    from optreg.optim import TakesGradNorm, TakesLoss, give_loss

    torch.manual_seed(0)
    model = make_problem("mlp")
    opt = build({"type": "skip_step_lion", "lr": 0.01, **SMALL}, model)
    assert isinstance(opt, TakesLoss) and isinstance(opt, TakesGradNorm)
    for step in range(10):
        give_loss(opt, backward(model, opt, step), grad_norm=torch.tensor(1.0 + 0.001 * step))
        opt.step()
    before = params_of(model)
    give_loss(opt, backward(model, opt, 10), grad_norm=torch.tensor(1e6))
    assert opt.latest_grad_norm is not None and opt.latest_loss is not None
    opt.step()
    assert bool(opt.step_skipped)
    assert_state_equal(before, params_of(model), "params")
    assert int(opt.statistics()["grad_norm_samples"]) == 11  # the spike entered the window, clipped


def test_closure_loss_is_tracked_without_latest_loss():
    torch.manual_seed(0)
    model = make_problem("mlp")
    opt = build({"type": "skip_step_lion", "lr": 0.01, "track_grad_norm": False, **SMALL}, model)
    for step in range(5):

        def closure(step=step):
            opt.zero_grad()
            loss = model.loss(step)
            loss.backward()
            return loss

        opt.step(closure)
    assert int(stats_of(opt)["loss_count"]) == 5
    assert int(stats_of(opt)["grad_norm_count"]) == 0


# ---------------------------------------------------------------- no host sync


@contextlib.contextmanager
def no_host_sync():
    """Make every Python-level way of reading a tensor value back to the host raise."""

    def forbidden(*args, **kwargs):
        raise AssertionError("host-device sync on the skip-step path")

    names = ("item", "__bool__", "__float__", "__int__", "__index__", "tolist", "numpy")
    saved = {name: getattr(torch.Tensor, name) for name in names}
    try:
        for name in names:
            setattr(torch.Tensor, name, forbidden)
        yield
    finally:
        for name, fn in saved.items():
            setattr(torch.Tensor, name, fn)


def test_the_patch_catches_syncs():
    with no_host_sync(), pytest.raises(AssertionError, match="host-device sync"):
        bool(torch.tensor(1.0) > 0)
    with no_host_sync(), pytest.raises(AssertionError, match="host-device sync"):
        torch.tensor(1.0).item()


@pytest.mark.parametrize(
    "spec",
    [
        {"type": "skip_step_lion", "lr": 0.01, "weight_decay": 0.1, **SMALL},
        {"type": "skip_step_lion", "lr": 0.01, "foreach": True, **SMALL},
        {"type": "skip_step", "inner": {"type": "signum", "lr": 0.01, "nesterov": True, "correct_bias": True},
         **SMALL},
        {"type": "skip_step", "inner": {"type": "signsgd", "lr": 0.01, "use_shape_scaling": True}, **SMALL},
        {"type": "skip_step_adamw", "lr": 0.01, **SMALL},
        {"type": "skip_step_adamw", "lr": 0.01, "fused": True, **SMALL},
        {"type": "skip_step", "inner": {"type": "adamw", "lr": 0.01, "foreach": True}, **SMALL},
        {"type": "noop", **SMALL},
    ],
    ids=["lion", "lion-foreach", "signum", "signsgd", "adamw", "adamw-fused", "adamw-foreach", "noop"],
)
def test_no_host_sync_on_the_step(spec):
    torch.manual_seed(0)
    model = make_problem("mlp")
    opt = build(spec, model)
    for step in range(20):  # crosses min_samples, with a spike and a NaN grad on the way
        loss = backward(model, opt, step)
        if step == 12:
            loss = torch.tensor(1e9)
        if step == 15:
            model.fc1.weight.grad.fill_(float("nan"))
        with no_host_sync():
            opt.latest_loss = loss
            opt.step()
            opt.step(step_factor=torch.zeros(()))  # the caller's own gate composes, still without a sync
    assert int(opt.statistics()["num_skipped"]) == 2


@pytest.mark.gpu
def test_no_sync_under_cuda_sync_debug_mode():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    torch.manual_seed(0)
    model = make_problem("mlp").cuda()
    opt = build({"type": "skip_step_lion", "lr": 0.01, **SMALL}, model)

    def loss_at(step):
        g = torch.Generator().manual_seed(1000 + step % 4)
        x = torch.randn(32, 8, generator=g).cuda()
        y = torch.sin(x @ model.teacher.float())
        return torch.nn.functional.mse_loss(model(x), y)

    for step in range(12):
        opt.zero_grad()
        loss = loss_at(step)
        loss.backward()
        torch.cuda.set_sync_debug_mode("error")
        try:
            opt.latest_loss = loss.detach()
            opt.step()
        finally:
            torch.cuda.set_sync_debug_mode("default")


# ---------------------------------------------------------------- fallback


def test_inner_without_step_factor_warns_once_and_skips_host_side():
    torch.manual_seed(0)
    model = make_problem("mlp")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        opt = build({"type": "skip_step", "inner": {"type": "sgd", "lr": 0.05, "momentum": 0.9}, **SMALL}, model)
        for step in range(12):
            opt.latest_loss = backward(model, opt, step)
            opt.step()
        before = params_of(model)
        momentum = {k: v.clone() for k, v in opt.state_dict()["state"][0].items()}
        backward(model, opt, 12)
        opt.latest_loss = torch.tensor(float("nan"))
        opt.step()
    fallback = [w for w in caught if "host-device sync" in str(w.message)]
    assert len(fallback) == 1, [str(w.message) for w in caught]
    assert fallback[0].category is RuntimeWarning
    assert bool(opt.step_skipped)
    assert_state_equal(before, params_of(model), "params")
    assert_state_equal(momentum, opt.state_dict()["state"][0], "SGD momentum")


def test_the_host_synced_fallback_does_sync():
    """The fallback is documented as synced: prove the patch sees it (so the no-sync test means something)."""
    torch.manual_seed(0)
    model = make_problem("mlp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        opt = build({"type": "skip_step", "inner": {"type": "sgd", "lr": 0.05}}, model)
    opt.latest_loss = backward(model, opt, 0)
    with no_host_sync(), pytest.raises(AssertionError, match="host-device sync"):
        opt.step()


# ---------------------------------------------------------------- schedulers, checkpoints, noop


def test_scheduler_drives_the_inner_groups():
    torch.manual_seed(0)
    model = make_problem("mlp")
    opt = build({"type": "skip_step_lion", "lr": 0.01, **SMALL}, model)
    assert opt.param_groups is opt.inner.param_groups
    sched = optreg.build_scheduler({"type": "constant"}, opt, t_max=10)
    lambda_sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5**step)
    for step in range(3):
        opt.latest_loss = backward(model, opt, step)
        opt.step()
        sched.step()
        lambda_sched.step()
    assert opt.inner.param_groups[0]["lr"] == pytest.approx(0.01 * 0.5**3)


def test_statistics_survive_save_and_load():
    spec = {"type": "skip_step_lion", "lr": 0.01, **SMALL}
    torch.manual_seed(0)
    model_a = make_problem("mlp")
    opt_a = build(spec, model_a)
    for step in range(10):
        opt_a.latest_loss = backward(model_a, opt_a, step)
        opt_a.step()
    buffer = io.BytesIO()
    torch.save(opt_a.state_dict(), buffer)
    buffer.seek(0)
    model_b = make_problem("mlp")
    model_b.load_state_dict(model_a.state_dict())
    opt_b = build(spec, model_b)
    opt_b.load_state_dict(torch.load(buffer, weights_only=True))
    assert_state_equal(opt_a.state_dict(), opt_b.state_dict(), "state after load")
    # Only restored statistics know the loss level: a 10x loss is a spike for both.
    for model, opt in ((model_a, opt_a), (model_b, opt_b)):
        loss = backward(model, opt, 10)
        opt.latest_loss = loss * 10
        opt.step()
        assert bool(opt.step_skipped)
    assert_state_equal(params_of(model_a), params_of(model_b), "params")


def _trained(spec, steps=10):
    torch.manual_seed(0)
    model = make_problem("mlp")
    opt = build(spec, model)
    for step in range(steps):
        opt.latest_loss = backward(model, opt, step)
        opt.step()
    return model, opt


def test_the_statistics_are_entries_of_the_first_param_group():
    """torch's state-dict shape ({"state", "param_groups"}): the statistics are ``skip_step_*`` entries of
    ``param_groups[0]``, the very tensors the detector updates (and copies of them in a state dict)."""
    _, opt = _trained({"type": "skip_step_lion", "lr": 0.01, **SMALL})
    state_dict = opt.state_dict()
    assert sorted(state_dict) == ["param_groups", "state"]
    stats = split_stats(state_dict)[1]
    assert sorted(stats) == sorted(opt.detector.state)
    assert opt.param_groups[0]["skip_step_loss_window"] is opt.detector.state["loss_window"]
    assert stats["loss_window"] is not opt.detector.state["loss_window"], "a state dict holds copies"
    assert all(not k.startswith("skip_step_") for group in opt.param_groups[1:] for k in group)
    assert all(not k.startswith("skip_step_") for entries in state_dict["state"].values() for k in entries)


def test_a_checkpoint_of_the_old_layout_still_loads():
    """Before the statistics moved into ``param_groups[0]`` they were a top-level ``"skip_step"`` entry (the inner
    state dict plus the detector's ``state_dict()``): such a checkpoint restores the same statistics."""
    spec = {"type": "skip_step_lion", "lr": 0.01, **SMALL}
    model_a, opt_a = _trained(spec)
    inner, _ = split_stats(opt_a.state_dict())
    old = {**inner, "skip_step": opt_a.detector.state_dict()}
    assert old["skip_step"]["rolling_interval_length"] == SMALL["rolling_interval_length"]
    buffer = io.BytesIO()
    torch.save(old, buffer)
    buffer.seek(0)
    model_b = make_problem("mlp")
    model_b.load_state_dict(model_a.state_dict())
    opt_b = build(spec, model_b)
    opt_b.load_state_dict(torch.load(buffer, weights_only=True))
    assert_state_equal(opt_a.state_dict(), opt_b.state_dict(), "state after loading the old layout")
    assert opt_b.param_groups[0]["skip_step_loss_count"] is opt_b.detector.state["loss_count"]
    for model, opt in ((model_a, opt_a), (model_b, opt_b)):
        opt.latest_loss = backward(model, opt, 10) * 10
        opt.step()
        assert bool(opt.step_skipped), "the restored statistics know the loss level"


def test_a_plain_inner_state_dict_keeps_the_statistics():
    _, opt = _trained({"type": "skip_step_lion", "lr": 0.01, **SMALL})
    before = _clone(stats_of(opt))
    opt.load_state_dict(split_stats(opt.state_dict())[0])  # what the inner optimizer alone would save
    assert_state_equal(before, stats_of(opt), "statistics after loading a plain inner state dict")
    assert opt.param_groups[0]["skip_step_num_steps"] is opt.detector.state["num_steps"]


@pytest.mark.parametrize("flatten", [False, True], ids=["nested", "flattened"])
def test_torch_distributed_checkpoint_state_dicts_keep_the_statistics(flatten):
    """``get_optimizer_state_dict`` keeps only ``state`` and ``param_groups`` (a top-level entry would be lost);
    the statistics are in ``param_groups[0]``, so they survive it and ``set_optimizer_state_dict``."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_optimizer_state_dict,
        set_optimizer_state_dict,
    )

    spec = {"type": "skip_step_lion", "lr": 0.01, **SMALL}
    model_a, opt_a = _trained(spec)
    options = StateDictOptions(flatten_optimizer_state_dict=flatten)
    saved = get_optimizer_state_dict(model_a, opt_a, options=options)
    model_b = make_problem("mlp")
    model_b.load_state_dict(model_a.state_dict())
    opt_b = build(spec, model_b)
    set_optimizer_state_dict(model_b, opt_b, saved, options=options)
    assert_state_equal(stats_of(opt_a), stats_of(opt_b), "statistics through torch.distributed.checkpoint")
    assert int(opt_b.statistics()["num_steps"]) == 10


def test_the_skip_options_have_one_default():
    """The spec fields, SkipStepOptimizer and SpikeDetector declare the same defaults (the kit's defaults check
    cannot see them: the skip options are not keyword arguments of the inner optimizer)."""
    import inspect

    import attrs
    from optreg_skipstep import NoOpSpec, SkipStepAdamWSpec, SkipStepLionSpec, SkipStepSpec
    from optreg_skipstep.specs import SKIP_FIELDS

    wrapper = inspect.signature(SkipStepOptimizer.__init__).parameters
    detector = inspect.signature(SpikeDetector.__init__).parameters
    for cls in (SkipStepSpec, SkipStepLionSpec, SkipStepAdamWSpec, NoOpSpec):
        fields = attrs.fields_dict(cls)
        for name in SKIP_FIELDS:
            assert fields[name].default == wrapper[name].default, (cls.__name__, name)
            if name in detector:
                assert fields[name].default == detector[name].default, (cls.__name__, name)


def test_loading_with_another_window_length_keeps_the_newest_values():
    a = SpikeDetector(rolling_interval_length=8, min_samples=2)
    for value in range(1, 12):  # ring of 8 holds 4..11
        a.update(torch.tensor(float(value)), None)
    b = SpikeDetector(rolling_interval_length=4, min_samples=2)
    b.load_state_dict(a.state_dict())
    assert sorted(b.state["loss_window"].tolist()) == [8.0, 9.0, 10.0, 11.0]
    assert int(b.state["loss_count"]) == 4
    c = SpikeDetector(rolling_interval_length=16, min_samples=2)
    c.load_state_dict(a.state_dict())
    assert c.state["loss_window"][:8].tolist() == [float(v) for v in range(4, 12)]
    assert int(c.state["loss_count"]) == 8
    c.update(torch.tensor(12.0), None)
    assert float(c.state["loss_window"][8]) == 12.0


def test_noop_tracks_statistics_and_never_moves():
    torch.manual_seed(0)
    model = make_problem("mlp")
    opt = build({"type": "noop", **SMALL}, model)
    before = params_of(model)
    for step in range(12):
        opt.latest_loss = backward(model, opt, step)
        opt.step()
    opt.latest_loss = torch.tensor(1e9)
    backward(model, opt, 12)
    opt.step()
    assert bool(opt.step_skipped), "noop reports what skip_step would have skipped"
    stats = opt.statistics()
    assert int(stats["loss_samples"]) == 13 and int(stats["num_skipped"]) == 1
    assert float(stats["grad_norm_mean"]) > 0
    assert_state_equal(before, params_of(model), "noop params")
    assert opt.state_dict()["state"] == {}


def test_wrapping_a_ready_optimizer_directly():
    torch.manual_seed(0)
    model = make_problem("mlp")
    opt = SkipStepOptimizer(Lion(model.parameters(), lr=0.01), rolling_interval_length=8, sigma_factor=3.0)
    assert opt.detector.min_samples == 4
    for step in range(3):
        opt.latest_loss = backward(model, opt, step)
        opt.step()
    assert "SkipStepOptimizer(rolling_interval_length=8" in repr(opt)
    extra = torch.nn.Parameter(torch.zeros(3))
    opt.add_param_group({"params": [extra]})
    assert opt.inner.param_groups[-1]["params"][0] is extra and len(opt.param_groups) == 2


def test_deepcopy_and_state_dict_hooks():
    import copy

    torch.manual_seed(0)
    model = make_problem("mlp")
    opt = build({"type": "skip_step_lion", "lr": 0.01, **SMALL}, model)
    opt.latest_loss = backward(model, opt, 0)
    opt.step()
    clone = copy.deepcopy(opt)
    assert isinstance(clone.inner, Lion) and clone.inner is not opt.inner
    assert_state_equal(opt.state_dict(), clone.state_dict(), "deepcopy")
    seen = []
    opt.register_state_dict_post_hook(lambda o, sd: seen.append(sorted(sd)))
    opt.register_load_state_dict_post_hook(lambda o: seen.append("loaded"))
    opt.load_state_dict(opt.state_dict())
    assert seen == [["param_groups", "state"], "loaded"]


# ---------------------------------------------------------------- dtypes, complex, groups added later, copies


def test_float64_params_keep_float64_statistics():
    """The grad norm and the loss of float64 params are judged and recorded in float64 (never rounded)."""
    from optreg.testing.problems import TinyRegression

    torch.manual_seed(0)
    model = TinyRegression(dtype=torch.float64)
    opt = build({"type": "skip_step_lion", "lr": 0.01, **SMALL}, model)
    assert opt.detector.dtype == torch.float64
    norms = []
    for step in range(3):
        backward(model, opt, step)
        norms.append(torch.linalg.vector_norm(torch.cat([p.grad.reshape(-1) for p in model.parameters()])))
        opt.latest_loss = 1.0 + step * 1e-12  # a Python float: float32 would round every one of these to 1.0
        opt.step()
    window = stats_of(opt)
    assert window["loss_window"].dtype == torch.float64 and window["grad_norm_window"].dtype == torch.float64
    assert window["loss_window"][:3].tolist() == [1.0, 1.0 + 1e-12, 1.0 + 2e-12]
    # a norm of per-tensor norms vs the norm of the concatenation: equal to float64 rounding (float32: ~1e-8)
    torch.testing.assert_close(window["grad_norm_window"][:3], torch.stack(norms), rtol=1e-14, atol=0.0)


def test_float32_params_keep_float32_statistics():
    torch.manual_seed(0)
    model = make_problem("mlp")
    opt = build({"type": "skip_step_lion", "lr": 0.01, **SMALL}, model)
    opt.latest_loss = backward(model, opt, 0)
    opt.step()
    assert stats_of(opt)["grad_norm_window"].dtype == torch.float32


def test_grad_norm_of_complex_and_low_precision_gradients():
    from optreg_skipstep import grad_norm

    g = torch.Generator().manual_seed(0)
    z = torch.nn.Parameter(torch.randn(4, 3, dtype=torch.complex128, generator=g))
    z.grad = torch.randn(4, 3, dtype=torch.complex128, generator=g)
    expected = torch.linalg.vector_norm(torch.view_as_real(z.grad))
    got = grad_norm([z], torch.device("cpu"))
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, expected, rtol=1e-15, atol=0.0)
    b = torch.nn.Parameter(torch.zeros(1000, dtype=torch.bfloat16))
    b.grad = torch.full((1000,), 0.1, dtype=torch.bfloat16)
    got = grad_norm([b], torch.device("cpu"))
    assert got.dtype == torch.float32  # bf16 gradients accumulate in float32
    torch.testing.assert_close(got, torch.linalg.vector_norm(b.grad.float()), rtol=1e-6, atol=0.0)
    mixed = grad_norm([b, z], torch.device("cpu"))
    assert mixed.dtype == torch.float64


def test_adding_a_float64_group_widens_the_statistics():
    torch.manual_seed(0)
    model = make_problem("mlp")
    opt = build({"type": "skip_step_lion", "lr": 0.01, **SMALL}, model)
    opt.latest_loss = backward(model, opt, 0)
    opt.step()
    extra = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    opt.add_param_group({"params": [("extra", extra)]})  # the model's groups are named, so this one is too
    assert opt.detector.dtype == torch.float64
    backward(model, opt, 1)
    extra.grad = torch.full((3,), 1e-3, dtype=torch.float64)
    opt.step()
    assert int(stats_of(opt)["grad_norm_count"]) == 2
    assert not torch.equal(extra.detach(), torch.ones(3, dtype=torch.float64)), "the added float64 group moved"


@pytest.mark.parametrize("named", [False, True], ids=["tensors", "named"])
def test_noop_add_param_group(named):
    """noop never moves (so the kit's add_param_group check is skipped): the added group's grads are tracked."""
    from optreg.testing.problems import TinyRegression

    torch.manual_seed(0)
    model = TinyRegression()
    pairs = list(model.named_parameters())
    first = [(n, p) for n, p in pairs if not n.startswith("fc2.")]
    added = [(n, p) for n, p in pairs if n.startswith("fc2.")]
    if not named:
        first, added = [p for _, p in first], [p for _, p in added]
    opt = build({"type": "noop", **SMALL}, first)
    opt.add_param_group({"params": added})
    assert sorted(id(p) for g in opt.param_groups for p in g["params"]) == sorted(id(p) for _, p in pairs)
    before = params_of(model)
    backward(model, opt, 0)
    expected = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for _, p in pairs]))
    opt.step()
    assert float(stats_of(opt)["grad_norm_window"][0]) == pytest.approx(float(expected), rel=1e-6)
    assert_state_equal(before, params_of(model), "noop params")


def test_pickle_drops_hooks_as_torch_does():
    """A hook (here a lambda, which cannot be pickled) is not part of a copy, as for torch.optim optimizers."""
    import copy
    import pickle

    torch.manual_seed(0)
    model = make_problem("mlp")
    opt = build({"type": "skip_step_lion", "lr": 0.01, **SMALL}, model)
    fired = []
    opt.register_step_pre_hook(lambda o, args, kwargs: fired.append(1))
    opt.latest_loss = backward(model, opt, 0)
    opt.step()
    copies = {"pickle": pickle.loads(pickle.dumps((model, opt))), "deepcopy": copy.deepcopy((model, opt))}
    opt.latest_loss = backward(model, opt, 1)
    opt.step()
    for how, (model_copy, opt_copy) in copies.items():
        assert not opt_copy._optimizer_step_pre_hooks, f"{how} kept a hook"
        opt_copy.latest_loss = backward(model_copy, opt_copy, 1)
        opt_copy.step()
        assert_state_equal(params_of(model), params_of(model_copy), f"params ({how})")
        assert_state_equal(opt.state_dict(), opt_copy.state_dict(), f"state ({how})")
    assert fired == [1, 1], "the original's hook still runs (once per original step)"


def test_step_factor_capability_follows_the_inner_optimizer():
    """``step_factor`` without a host sync is only possible when the inner optimizer gates on the device."""
    reg = optreg.get_registry()
    with_sgd = reg.optimizer_spec({"type": "skip_step", "inner": {"type": "sgd"}})
    with_lion = reg.optimizer_spec({"type": "skip_step", "inner": {"type": "lion"}})
    assert "step_factor" not in with_sgd.capabilities()
    assert "step_factor" in with_lion.capabilities()
    model = make_problem("mlp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert build({"type": "skip_step", "inner": {"type": "sgd"}}, model).supports_step_factor is False
    assert build({"type": "skip_step", "inner": {"type": "lion"}}, model).supports_step_factor is True
    assert build({"type": "noop"}, model).supports_step_factor is True


# ---------------------------------------------------------------- what a NaN gradient does


def test_a_nan_gradient_step_is_skipped_and_only_finite_values_are_recorded():
    """NaN grad, finite loss: skipped (params and inner state bit-identical); the grad norm is not recorded,
    the finite loss is (each metric records its own finite value); both counters advance."""
    torch.manual_seed(0)
    model = make_problem("mlp")
    opt = build({"type": "skip_step_lion", "lr": 0.01, **SMALL}, model)
    for step in range(4):
        opt.latest_loss = backward(model, opt, step)
        opt.step()
    before_stats = _clone(stats_of(opt))
    before_params = params_of(model)
    opt.latest_loss = backward(model, opt, 4)
    model.fc1.weight.grad[0, 0] = float("nan")
    opt.step()
    assert bool(opt.step_skipped)
    assert_state_equal(before_params, params_of(model), "params after a NaN-gradient step")
    stats = stats_of(opt)
    assert_state_equal(before_stats["grad_norm_window"], stats["grad_norm_window"], "grad-norm window")
    assert int(stats["grad_norm_count"]) == int(before_stats["grad_norm_count"])
    assert int(stats["loss_count"]) == int(before_stats["loss_count"]) + 1
    assert int(stats["num_steps"]) == 5 and int(stats["num_skipped"]) == 1


def test_without_grad_norm_tracking_a_nan_gradient_reaches_the_param():
    """``track_grad_norm = false`` and a finite loss: nothing flags the step, so the inner Lion takes it and the
    NaN shows in the param (never a silently frozen coordinate)."""
    torch.manual_seed(0)
    model = make_problem("mlp")
    opt = build({"type": "skip_step_lion", "lr": 0.01, "track_grad_norm": False, **SMALL}, model)
    opt.latest_loss = backward(model, opt, 0)
    model.fc1.weight.grad[0, 0] = float("nan")
    opt.step()
    assert not bool(opt.step_skipped)
    assert model.fc1.weight[0, 0].isnan()
    assert torch.isfinite(model.fc1.weight.view(-1)[1:]).all()


def test_statistics_dtype_must_be_float32_or_float64():
    with pytest.raises(ValueError, match=r"torch\.float32 or torch\.float64, got torch\.bfloat16"):
        SpikeDetector(dtype=torch.bfloat16)
    with pytest.raises(ValueError, match=r"torch\.float32 or torch\.float64, got torch\.int64"):
        SpikeDetector().to(dtype=torch.int64)
    detector = SpikeDetector(rolling_interval_length=4, min_samples=2).to(dtype=torch.float64)
    assert detector.state["loss_window"].dtype == torch.float64 and detector.state["loss_count"].dtype == torch.int64


@pytest.mark.parametrize("native", [True, False], ids=["c_kernel", "torch"])
def test_grad_norm_matches_a_float64_reference_on_both_paths(native, monkeypatch):
    """float32 CPU gradients go through the C sum of squares (float64 accumulation, threads from 2**18
    elements), the rest (bf16, non-contiguous, complex) through torch's norms; without a C compiler all of
    them through torch. The C path is the float64 reference's to float32 rounding; torch's float32 reduction is
    within ~2e-6 here (its accumulation is float32)."""
    from optreg_skipstep import grad_norm

    import optreg.native

    if not native:
        monkeypatch.setattr(optreg.native, "find_c_compiler", lambda: None)
    optreg.native.load_library.cache_clear()
    try:
        g = torch.Generator().manual_seed(0)
        shapes = [(600, 500), (7,), (3, 5)]  # 300000 elements: the threaded branch
        params = [torch.nn.Parameter(torch.zeros(s)) for s in shapes]
        for p in params:
            p.grad = torch.randn(p.shape, generator=g) * 3
        odd = torch.nn.Parameter(torch.zeros(5, 4))
        odd.grad = torch.randn(4, 5, generator=g).t()  # non-contiguous
        half = torch.nn.Parameter(torch.zeros(9, dtype=torch.bfloat16))
        half.grad = torch.randn(9, generator=g).bfloat16()
        everything = [*params, odd, half]
        reference = torch.linalg.vector_norm(torch.cat([p.grad.double().flatten() for p in everything]))
        got = grad_norm(everything, torch.device("cpu"))
        assert got.dtype == torch.float32
        torch.testing.assert_close(got.double(), reference, rtol=2e-7 if native else 1e-5, atol=0.0)
        from optreg_skipstep._native import sum_of_squares

        assert (sum_of_squares([p.grad for p in params]) is not None) == native
    finally:
        optreg.native.load_library.cache_clear()
