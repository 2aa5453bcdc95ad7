"""optreg.optim: the step_factor plumbing shared by optreg's optimizers."""

from __future__ import annotations

import pytest
import torch

from optreg.optim import (
    OptregOptimizer,
    WrappedOptimizer,
    as_scalar,
    gate_grad,
    params_with_grads,
    prepare_step_factor,
    scalar_dtype,
)


class GatedSGD(OptregOptimizer):
    """Plain SGD written on the base class, gated by step_factor."""

    def __init__(self, params, lr=0.1):
        super().__init__(params, {"lr": lr})

    def _step_group(self, group, step_factor, loss):
        for p in group["params"]:
            if p.grad is None:
                continue
            grad = gate_grad(p.grad, step_factor)
            lr = group["lr"] if step_factor is None else group["lr"] * step_factor
            p.sub_(grad * lr)


def test_prepare_step_factor_validates():
    assert prepare_step_factor(None, torch.device("cpu")) is None
    factor = prepare_step_factor(torch.tensor([1], dtype=torch.int64), torch.device("cpu"))
    assert factor.shape == () and factor.dtype == torch.float32
    with pytest.raises(TypeError, match="one-element tensor"):
        prepare_step_factor(1.0, torch.device("cpu"))
    with pytest.raises(TypeError, match="one-element tensor"):
        prepare_step_factor(torch.ones(2), torch.device("cpu"))


def test_gate_grad_blocks_non_finite_values():
    grad = torch.tensor([float("nan"), float("inf"), 1.0])
    assert torch.equal(gate_grad(grad, torch.tensor(0.0)), torch.zeros(3))
    assert gate_grad(grad, None) is grad
    assert torch.equal(gate_grad(grad[2:], torch.tensor(1.0)), grad[2:])


def test_base_step_runs_the_closure_and_gates():
    p = torch.nn.Parameter(torch.ones(3))
    opt = GatedSGD([p])

    def closure():
        opt.zero_grad()
        loss = (p**2).sum()
        loss.backward()
        return loss

    assert opt.step(closure).item() == 3.0
    assert torch.allclose(p, torch.full((3,), 0.8))
    p.grad = torch.full((3,), float("nan"))
    opt.step(step_factor=torch.zeros(()))
    assert torch.allclose(p, torch.full((3,), 0.8))


class Lookahead(WrappedOptimizer):
    """A tiny Lookahead (Zhang et al. 2019) on the wrapper base: slow weights in ``wrapper_state``."""

    def __init__(self, inner, alpha=0.5, k=2):
        self.alpha, self.k = alpha, k
        super().__init__(inner)

    def _init_group(self, group):
        group.setdefault("wrapper_count", 0)

    def _step_group(self, group, step_factor, loss):
        raise AssertionError("a wrapper steps its inner optimizer instead")

    @torch.no_grad()
    def step(self, closure=None, *, step_factor=None):
        loss = self.inner.step(closure)
        for group in self.param_groups:
            group["wrapper_count"] += 1
            for p in group["params"]:
                slow = self.wrapper_state.setdefault(p, {"wrapper_slow": p.detach().clone()})["wrapper_slow"]
                if group["wrapper_count"] % self.k == 0:
                    slow.add_(p - slow, alpha=self.alpha)
                    p.copy_(slow)
        return loss


def _lookahead_run(opt, model, steps, start=0):
    for step in range(start, start + steps):
        opt.zero_grad()
        x = torch.randn(4, 3, generator=torch.Generator().manual_seed(step))
        model(x).square().mean().backward()
        opt.step()


def test_wrapped_optimizer_shares_groups_and_merges_its_state_into_checkpoints():
    import io

    torch.manual_seed(0)
    model_a = torch.nn.Linear(3, 2)
    model_b = torch.nn.Linear(3, 2)
    model_b.load_state_dict(model_a.state_dict())
    opt_a = Lookahead(torch.optim.SGD(model_a.parameters(), lr=0.1, momentum=0.9))
    assert opt_a.param_groups is opt_a.inner.param_groups and opt_a.state is opt_a.inner.state
    _lookahead_run(opt_a, model_a, 6)

    opt_b = Lookahead(torch.optim.SGD(model_b.parameters(), lr=0.1, momentum=0.9))
    _lookahead_run(opt_b, model_b, 3)
    saved = opt_b.state_dict()
    assert {"momentum_buffer", "wrapper_slow"} <= set(saved["state"][0])
    buffer = io.BytesIO()
    torch.save(saved, buffer)
    buffer.seek(0)
    model_c = torch.nn.Linear(3, 2)
    model_c.load_state_dict(model_b.state_dict())
    opt_c = Lookahead(torch.optim.SGD(model_c.parameters(), lr=0.1, momentum=0.9))
    opt_c.load_state_dict(torch.load(buffer, weights_only=True))
    assert "wrapper_slow" not in opt_c.inner.state_dict()["state"][0]
    _lookahead_run(opt_c, model_c, 3, start=3)
    for a, c in zip(model_a.parameters(), model_c.parameters()):
        assert torch.equal(a, c)


def test_wrapped_optimizer_add_group_and_pickle():
    import copy

    a, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(3))
    opt = Lookahead(torch.optim.SGD([a], lr=0.1), alpha=0.25)
    opt.add_param_group({"params": [b]})
    assert len(opt.inner.param_groups) == 2 and opt.param_groups[1]["wrapper_count"] == 0
    clone = copy.deepcopy(opt)
    assert clone.alpha == 0.25 and isinstance(clone.inner, torch.optim.SGD)
    with pytest.raises(TypeError, match=r"inner must be a torch\.optim\.Optimizer"):
        Lookahead(object())


def test_wrapped_optimizer_runs_its_own_state_dict_hooks():
    """Hooks registered on a wrapper run (torch's contract), and what they return is what is used."""
    a = torch.nn.Parameter(torch.ones(2))
    opt = Lookahead(torch.optim.SGD([a], lr=0.1))
    fired = []
    opt.register_state_dict_pre_hook(lambda o: fired.append("pre"))
    opt.register_state_dict_post_hook(lambda o, sd: {**sd, "mark": fired.append("post") or 1})
    saved = opt.state_dict()
    assert fired == ["pre", "post"] and saved["mark"] == 1
    fired.clear()
    other = Lookahead(torch.optim.SGD([torch.nn.Parameter(torch.ones(2))], lr=0.1))
    other.register_load_state_dict_pre_hook(
        lambda o, sd: fired.append("load_pre") or {**sd, "param_groups": [{**sd["param_groups"][0], "lr": 0.5}]}
    )
    other.register_load_state_dict_post_hook(lambda o: fired.append("load_post"))
    other.load_state_dict(saved)
    assert fired == ["load_pre", "load_post"]
    assert other.param_groups[0]["lr"] == 0.5, "the pre-hook's returned dict was not the one loaded"


class CachingSGD(OptregOptimizer):
    """Keeps a constructor option outside the groups and a per-tensor cache keyed by id() (transient)."""

    TRANSIENT = ("cache",)

    def __init__(self, params, lr=0.1, scale=2.0):
        self.scale = scale
        super().__init__(params, {"lr": lr})
        self._init_transient()

    def _init_transient(self):
        self.cache = {}

    def _step_group(self, group, step_factor, loss):
        for p in group["params"]:
            self.cache.setdefault(id(p), p.grad)
            p.sub_(p.grad * group["lr"] * self.scale)


def test_optreg_optimizer_pickles_its_own_attributes_but_not_transient_ones():
    import copy
    import pickle

    p = torch.nn.Parameter(torch.ones(3))
    opt = CachingSGD([p], scale=3.0)
    p.grad = torch.ones(3)
    opt.step()
    for clone in (copy.deepcopy(opt), pickle.loads(pickle.dumps(opt))):
        assert clone.scale == 3.0, "a constructor option was lost"
        assert clone.cache == {}, "a transient cache (keyed by id()) was copied"
        assert clone._optimizer_step_pre_hooks == {}


def test_params_with_grads_skips_params_without_one_and_rejects_sparse():
    a, b = torch.zeros(2, requires_grad=True), torch.zeros(2, requires_grad=True)
    a.grad = torch.ones(2)
    assert params_with_grads({"params": [a, b]}) == [a]
    b.grad = torch.ones(2).to_sparse()
    with pytest.raises(RuntimeError, match="sparse gradients"):
        params_with_grads({"params": [a, b]})


def test_as_scalar_is_a_float64_0_dim_tensor_on_cpu():
    from_float, from_tensor = as_scalar(0.5, torch.device("cpu")), as_scalar(torch.tensor([2.0]), torch.device("cpu"))
    assert from_float.dtype == from_tensor.dtype == torch.float64 == scalar_dtype(torch.device("cpu"))
    assert from_float.shape == from_tensor.shape == () and float(from_tensor) == 2.0
    assert scalar_dtype(torch.device("mps")) == torch.float32  # MPS has no float64


# ---------------------------------------------------------------- the toolbox


def test_check_number_speaks_like_a_spec_bound():
    from optreg.optim import check_betas, check_number

    check_number("lr", 0.0, ge=0)
    check_number("lr", torch.tensor(0.1), ge=0)  # a tensor LR is taken as is
    with pytest.raises(ValueError, match=r"^lr must be >= 0, got -1\.0$"):
        check_number("lr", -1.0, ge=0)
    with pytest.raises(ValueError, match=r"^eps must be > 0, got 0$"):
        check_number("eps", 0, gt=0)
    with pytest.raises(ValueError, match=r"must be a finite number, got nan"):
        check_number("lr", float("nan"), ge=0)
    with pytest.raises(ValueError, match=r"must be a finite number, got True"):
        check_number("lr", True, ge=0)
    with pytest.raises(ValueError, match=r"^betas\[1\] must be in \[0, 1\), got 1\.0$"):
        check_betas((0.9, 1.0))
    with pytest.raises(ValueError, match="must hold 3 numbers, got 2"):
        check_betas((0.9, 0.99), count=3)


def test_use_foreach_policy():
    from optreg.optim import use_foreach

    cpu = [torch.zeros(2)]
    assert use_foreach(None, cpu) is False, "on CPU the per-tensor loop is faster"
    assert use_foreach(True, cpu) is True and use_foreach(False, cpu) is False
    assert use_foreach(None, []) is False
    meta = [torch.empty(2, device="meta")]
    assert use_foreach(None, meta) is True


def test_commit_takes_the_new_values_only_where_the_step_is_taken():
    from optreg.optim import commit_

    dst = torch.tensor([1.0, 2.0])
    commit_(dst, torch.tensor([5.0, float("nan")]), torch.tensor(False))
    assert dst.tolist() == [1.0, 2.0]
    commit_(dst, torch.tensor([5.0, 6.0]), torch.tensor(True))
    assert dst.tolist() == [5.0, 6.0]
    commit_(dst, torch.tensor([7.0, 8.0]), None)
    assert dst.tolist() == [7.0, 8.0]


def test_coef_is_a_float_on_cpu_and_a_tensor_on_the_accelerator_path():
    from optreg.optim import accelerator_path, coef, host_scalars

    value, like = torch.tensor(0.5, dtype=torch.float64), torch.zeros(3)
    assert coef(value, like) == 0.5 and isinstance(coef(value, like), float) and host_scalars(like.device)
    with accelerator_path():
        assert coef(value, like) is value and not host_scalars(like.device)
    assert isinstance(coef(value, like), float), "the switch is restored"


def test_scratch_reuses_one_buffer_per_slot_on_cpu():
    from optreg.optim import Scratch

    scratch = Scratch()
    a = scratch.get(torch.zeros(4, 3))
    b = scratch.get(torch.zeros(2, 2))
    assert a.shape == (4, 3) and b.shape == (2, 2) and a.data_ptr() == b.data_ptr()
    assert scratch.get(torch.zeros(2), slot=1).data_ptr() != a.data_ptr()
    param = torch.nn.Parameter(torch.zeros(3))  # what steps pass most often
    assert scratch.get(param).data_ptr() == a.data_ptr(), "a parameter's buffer is reused like a tensor's"


class LossTaker(GatedSGD):
    def __init__(self, params):
        super().__init__(params)
        self.latest_loss = None
        self.latest_grad_norm = None


def test_give_loss_reaches_the_optimizers_that_take_it_through_wrappers():
    from optreg.optim import TakesGradNorm, TakesLoss, give_loss

    inner = LossTaker([torch.nn.Parameter(torch.zeros(2))])
    outer = Lookahead(inner)
    assert isinstance(inner, TakesLoss) and isinstance(inner, TakesGradNorm) and not isinstance(outer, TakesLoss)
    loss, norm = torch.tensor(3.0), torch.tensor(2.0)
    give_loss(outer, loss, grad_norm=norm)
    assert inner.latest_loss is loss and inner.latest_grad_norm is norm
    assert not hasattr(outer, "latest_loss")


def test_refuse_complex_names_the_optimizer_and_why():
    from optreg.optim import refuse_complex

    refuse_complex([torch.zeros(2)], "X", "why")
    with pytest.raises(TypeError, match=r"X does not support complex parameters \(it orthogonalizes\)"):
        refuse_complex([("w", torch.zeros(2, dtype=torch.complex64))], "X", "it orthogonalizes")


def test_group_device():
    from optreg.optim import group_device

    assert group_device({"params": []}) == torch.device("cpu")
    assert group_device({"params": [torch.empty(1, device="meta")]}).type == "meta"


class KeepsFp32Buffer(GatedSGD):
    """Keeps a float32 buffer under bf16 params: torch's load casts it to bf16, the fix-up restores it."""

    def _step_group(self, group, step_factor, loss):
        for p in group["params"]:
            self.state[p].setdefault("buffer", torch.full(p.shape, 1 / 3, dtype=torch.float32))

    def _after_load_state_dict(self, state_dict):
        for i, state in enumerate(self.state.values()):  # exact: from the dict as loaded, not torch's bf16 cast
            state["buffer"] = state_dict["state"][i]["buffer"].float()


def test_after_load_runs_before_the_users_post_hooks_and_survives_pickling():
    import pickle

    p = torch.nn.Parameter(torch.zeros(2, dtype=torch.bfloat16))
    opt = KeepsFp32Buffer([p])
    opt.step()
    saved = opt.state_dict()
    for target in (KeepsFp32Buffer([p]), pickle.loads(pickle.dumps(opt))):
        seen: list[torch.dtype] = []
        target.register_load_state_dict_post_hook(
            lambda o, seen=seen: seen.append(next(iter(o.state.values()))["buffer"].dtype)
        )
        target.load_state_dict(saved)
        target.load_state_dict(saved)
        assert seen == [torch.float32] * 2, "the user's post-hook must see the state after the fix-up"
        hooks = target._optimizer_load_state_dict_post_hooks.values()
        assert sum(h.__name__ == "_after_load" for h in hooks) == 1, "loading again must not add the fix-up again"
        assert next(iter(target.state.values()))["buffer"][0].item() == torch.tensor(1 / 3).item(), "not exact"


def test_real_view_and_keep_factor():
    from optreg.optim import keep_factor, real_view

    z = torch.zeros(3, dtype=torch.complex128)
    real_view(z).add_(1.0)
    assert torch.equal(z, torch.full((3,), 1 + 1j, dtype=torch.complex128)), "the view writes through"
    x = torch.zeros(2)
    assert real_view(x) is x
    one, zero = torch.ones((), dtype=torch.float64), torch.zeros((), dtype=torch.float64)
    assert keep_factor(one, 0.9).dtype == torch.float64 and keep_factor(one, 0.9).item() == 0.9
    assert keep_factor(zero, 0.9).item() == 1.0


def test_run_closure_enables_grad_and_passes_none_through():
    from optreg.optim import run_closure

    assert run_closure(None) is None
    x = torch.ones(2, requires_grad=True)
    with torch.no_grad():
        loss = run_closure(lambda: (x * 2).sum())
    assert loss.requires_grad, "the closure runs with gradients enabled inside a no_grad step"


def test_lazy_exports_serve_names_on_first_use_only():
    import types

    from optreg.lazy import lazy_exports

    getattr_, dir_ = lazy_exports("pkg", {"dumps": "json"}, {"own": 1})
    module = types.ModuleType("pkg")
    module.__getattr__ = getattr_
    import json

    assert module.dumps is json.dumps and dir_() == ["dumps", "own"]
    with pytest.raises(AttributeError, match="module 'pkg' has no attribute 'nope'"):
        _ = module.nope


def test_inner_product_and_reduced_on_plain_tensors():
    from optreg.optim import inner_product, is_sharded, reduced

    a = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.bfloat16)
    assert inner_product(a, a).dtype == torch.float32 and inner_product(a, a).item() == 30.0
    z = torch.tensor([1 + 2j], dtype=torch.complex128)
    assert inner_product(z, z).item() == 5.0 and inner_product(z, z).dtype == torch.float64
    t = torch.ones(())
    assert reduced(t) is t and not is_sharded(t)


def test_per_sample_grads_are_each_examples_gradient_of_the_batch_loss():
    """DP-SGD's input: the gradient of the loss of a batch of one example, for every example, by vmap; checked
    against one backward per example (the same math, another summation order: float32 tolerance)."""
    from torch import nn

    from optreg.optim import per_sample_grads

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Tanh(), nn.Linear(4, 1))
    model[0].bias.requires_grad_(False)  # frozen: no grad_sample

    def loss_fn(m, x, y):
        return nn.functional.mse_loss(m(x), y)

    x, y = torch.randn(5, 3), torch.randn(5, 1)
    loss = per_sample_grads(model, loss_fn, x, y)
    assert torch.allclose(loss, loss_fn(model, x, y).detach(), atol=1e-6)
    assert not loss.requires_grad
    assert getattr(model[0].bias, "grad_sample", None) is None
    assert all(p.grad is None for p in model.parameters()), ".grad must be left alone"
    for i in range(5):
        model.zero_grad()
        loss_fn(model, x[i:i + 1], y[i:i + 1]).backward()
        for name, p in model.named_parameters():
            if p.requires_grad:
                assert p.grad_sample.shape == (5, *p.shape)
                assert torch.allclose(p.grad_sample[i], p.grad, atol=1e-6), name
