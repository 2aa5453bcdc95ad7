"""The global reductions under sharding, without torchrun (optreg-parallel's equivalence test runs 2 ranks).

Every sum over the parameters (d's numerator and denominator, DoG's distance and gradient norm, the
inner products of Mechanic and MoMo) goes through ``optreg.optim.inner_product`` and the family's
``l1_norm`` / ``sum_probe`` on :func:`local` shards, collected by ``GlobalSums``. These tests check
that a plain tensor takes exactly the single-process arithmetic (bit for bit, no collective), and that
the DTensor path (on a one-rank mesh in this process) gives the plain run's trajectory.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
import torch.distributed as dist
from optreg_paramfree import COCOB, DAdaptAdamW, DAdaptLion, DAdaptSGD, DoG, DoWG, Mechanic, Momo, MomoAdam, Prodigy
from optreg_paramfree.optim._common import GlobalSums, l1_norm, local, sum_probe
from torch import nn

from optreg.optim import accumulate_dtype, give_loss, inner_product

DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]


def _tensors(dtype: torch.dtype) -> list[torch.Tensor]:
    """Contiguous, transposed (non-contiguous), strided, 0-size and a real view of a complex tensor."""
    g = torch.Generator().manual_seed(0)
    base = torch.randn(37, 29, generator=g).to(dtype)
    out = [base, base.t(), base[::3, 1::2], torch.zeros(0, 4, dtype=dtype), torch.randn(513, generator=g).to(dtype)]
    complex_dtype = {torch.float32: torch.complex64, torch.float64: torch.complex128}.get(dtype)
    if complex_dtype is not None:
        out.append(torch.view_as_real(torch.randn(6, 5, generator=g, dtype=complex_dtype)))
    return out


# ---------------------------------------------------------------- plain tensors: the single-process arithmetic


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_inner_product_is_the_former_dot_on_plain_tensors(dtype):
    """``inner_product`` replaced the family's ``dot``: the same dtype, the same ops, the same bits."""
    for a in _tensors(dtype):
        b = torch.randn(a.shape, generator=torch.Generator().manual_seed(1)).to(dtype)
        acc = torch.promote_types(dtype, torch.float32)
        former = torch.dot(a.to(acc).reshape(-1), b.to(acc).reshape(-1))
        got = inner_product(local(a), local(b))
        assert type(got) is torch.Tensor and got.dtype == former.dtype == accumulate_dtype(a)
        assert torch.equal(got, former), (tuple(a.shape), a.stride())


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_l1_norm_and_sum_probe_on_plain_tensors(dtype):
    acc = torch.promote_types(dtype, torch.float32)
    for t in _tensors(dtype):
        buffer = torch.empty_like(t)
        assert torch.equal(l1_norm(t, buffer), torch.abs(t).sum(dtype=acc))
        assert torch.equal(buffer, t.abs())
        assert torch.equal(sum_probe(t), t.sum(dtype=acc))
        assert sum_probe(t).dtype == acc
    nan = torch.tensor([1.0, float("nan")], dtype=dtype)
    assert sum_probe(nan).isnan()


def test_local_of_a_plain_tensor_is_itself():
    t = torch.randn(3, 4)
    assert local(t) is t


@pytest.mark.parametrize("like_dtype", [torch.float64, torch.float32], ids=str)
def test_global_sums_of_plain_tensors_are_the_running_sums(like_dtype):
    """Each ``add`` of a plain term is ``sum + term`` at once (the former code, bit for bit); ``totals``
    adds nothing and starts no collective (no process group here)."""
    assert not (dist.is_available() and dist.is_initialized())
    like = torch.tensor(0.5, dtype=like_dtype)
    g = torch.Generator().manual_seed(2)
    terms = [[torch.randn((), generator=g, dtype=dt) * 10.0 ** e for dt, e in
              ((torch.float32, -3), (torch.float64, 5), (torch.float32, 12))] for _ in range(4)]
    sums = GlobalSums(like, 3)
    former = [torch.zeros_like(like)] * 3
    for row in terms:
        for i, term in enumerate(row):
            sums.add(i, term, torch.ones(2))
            former[i] = former[i] + term
    totals = sums.totals()
    assert len(totals) == 3
    for got, want in zip(totals, former):
        assert type(got) is torch.Tensor and got.dtype == want.dtype and torch.equal(got, want)
    empty = GlobalSums(like, 2).totals()
    assert all(torch.equal(t, torch.zeros_like(like)) and t.dtype == like.dtype for t in empty)


def _prodigy_run(steps: int, state_hook: Callable[[dict[str, Any]], None] | None = None) -> list[torch.Tensor]:
    torch.manual_seed(0)
    params = [nn.Parameter(torch.randn(5, 6)), nn.Parameter(torch.randn(6, 4).t()),
              nn.Parameter(torch.randn(3, 2, dtype=torch.complex64))]
    opt = Prodigy(params, d0=1e-3, weight_decay=0.01)
    g = torch.Generator().manual_seed(3)
    for step in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=g, dtype=p.dtype)
        opt.step()
        if step == 2 and state_hook is not None:
            saved = copy.deepcopy(opt.state_dict())
            state_hook(saved)
            opt = Prodigy(params, d0=1e-3, weight_decay=0.01)
            opt.load_state_dict(saved)
    return [p.detach().clone() for p in params]


def test_prodigy_statistics_are_shaped_like_the_param_and_the_former_flat_layout_loads():
    """With slice_p = 1, ``s`` and ``p0`` are shaped like the param (so a sharded run shards them alike);
    a checkpoint from before, where they were flat, loads and continues bit for bit."""
    params = [nn.Parameter(torch.randn(5, 6)), nn.Parameter(torch.randn(3, 2, dtype=torch.complex64))]
    opt = Prodigy(params)
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()
    assert opt.state[params[0]]["s"].shape == (5, 6) and opt.state[params[0]]["p0"].shape == (5, 6)
    assert opt.state[params[1]]["s"].shape == (3, 2, 2) and opt.state[params[1]]["s"].dtype == torch.float32

    def flatten(saved: dict[str, Any]) -> None:
        for state in saved["state"].values():
            state["s"], state["p0"] = state["s"].reshape(-1).clone(), state["p0"].reshape(-1).clone()

    unbroken = _prodigy_run(8)
    assert all(torch.equal(a, b) for a, b in zip(unbroken, _prodigy_run(8, lambda saved: None)))
    assert all(torch.equal(a, b) for a, b in zip(unbroken, _prodigy_run(8, flatten)))


# ---------------------------------------------------------------- DTensors on a one-rank mesh (this process)


@contextlib.contextmanager
def _one_rank_mesh() -> Iterator[Any]:
    from torch.distributed.device_mesh import init_device_mesh

    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    if dist.is_initialized():
        pytest.skip("a process group is already initialised")
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        yield init_device_mesh("cpu", (1,), mesh_dim_names=("shard",))
    finally:
        dist.destroy_process_group()


def _mechanic(params: Any) -> torch.optim.Optimizer:
    return Mechanic(torch.optim.SGD(params, lr=0.1, momentum=0.9, foreach=False), s_init=0.1)


BUILDERS: dict[str, Callable[[Any], torch.optim.Optimizer]] = {
    "prodigy": lambda ps: Prodigy(ps, d0=1e-3, weight_decay=0.01, use_bias_correction=True),
    "prodigy-slice_p": lambda ps: Prodigy(ps, d0=1e-3, slice_p=3, betas=(0.0, 0.99), decouple=False, weight_decay=0.01),
    "dadapt_adamw": lambda ps: DAdaptAdamW(ps, d0=1e-3, weight_decay=0.01),
    "dadapt_sgd": lambda ps: DAdaptSGD(ps, d0=0.1, momentum=0.9, weight_decay=1e-4),
    "dadapt_lion": lambda ps: DAdaptLion(ps, d0=0.1, betas=(0.9, 0.5)),
    "dog": lambda ps: DoG(ps, weight_decay=1e-4, init_step_value=1e-2),
    "dowg": lambda ps: DoWG(ps, init_estim_sq_dist=1e-2),
    "cocob": lambda ps: COCOB(ps),
    "mechanic": _mechanic,
    "momo": lambda ps: Momo(ps, weight_decay=1e-3, bias_correction=True, adapt_lower_bound=True),
    "momo_adam": lambda ps: MomoAdam(ps, lr=0.1, weight_decay=1e-3, adapt_lower_bound=True),
}


#: Passes over the params that end in global sums, per step (D-Adapt SGD and Mechanic need a norm first;
#: Prodigy's slice_p works on the local tensor of a param every rank holds whole; COCOB sums nothing).
PASSES = dict.fromkeys(BUILDERS, 1) | {"dadapt_sgd": 2, "mechanic": 2, "prodigy-slice_p": 0, "cocob": 0}


def _train(build: Callable[[Any], torch.optim.Optimizer], shard: Callable[[torch.Tensor, bool], torch.Tensor],
           steps: int = 6) -> list[torch.Tensor]:
    """Params of shapes (5, 6), (5,) and (1, 5) in two groups (one at half the LR), one of them replicated."""
    g = torch.Generator().manual_seed(0)
    shapes = [((5, 6), False), ((5,), True), ((1, 5), False)]
    params = [nn.Parameter(shard(torch.randn(shape, generator=g), replicate)) for shape, replicate in shapes]
    opt = build([{"params": params[:2]}, {"params": params[2:]}])
    opt.param_groups[1]["lr"] *= 0.5
    for step in range(steps):
        for p, (shape, replicate) in zip(params, shapes):
            p.grad = shard(torch.randn(shape, generator=g), replicate)
        loss = torch.tensor(1.0 / (step + 1))
        give_loss(opt, loss)
        opt.step(lambda loss=loss: loss)
        for group in opt.param_groups:  # every estimate stays a plain tensor (no DTensor leaks into a scalar)
            assert all(type(v) is torch.Tensor for v in group.values() if isinstance(v, torch.Tensor))
    return [p.full_tensor() if hasattr(p, "full_tensor") else p.detach().clone() for p in params]


@pytest.mark.parametrize("name", list(BUILDERS))
def test_dtensor_params_on_one_rank_follow_the_plain_run(name, monkeypatch):
    """The DTensor path (local shards reduced, GlobalSums' collective) on a one-rank mesh: the same
    trajectory as plain tensors, every estimate a plain tensor. Two ranks: optreg-parallel's test."""
    import optreg_paramfree.optim._common as common
    from torch.distributed.tensor import Replicate, Shard, distribute_tensor

    plain = _train(BUILDERS[name], lambda t, replicate: t)
    collectives: list[torch.Size] = []
    reduced = common.reduced
    monkeypatch.setattr(common, "reduced", lambda t: collectives.append(t.shape) or reduced(t))
    with _one_rank_mesh() as mesh:
        sharded = _train(BUILDERS[name], lambda t, replicate: distribute_tensor(
            t, mesh, [Replicate() if replicate else Shard(0)]))
    assert len(collectives) == 6 * PASSES[name] * 2  # per step and pass, one for Shard(0) and one for Replicate()
    for a, b in zip(plain, sharded):
        assert type(b) is torch.Tensor
        torch.testing.assert_close(b, a, rtol=0, atol=0)
