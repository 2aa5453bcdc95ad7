"""Under parallelism strategies, without torchrun: building under a tensor-parallel strategy, sharded (DTensor)
parameters on one-rank meshes (FSDP / HSDP row shards, TP colwise / rowwise shards, 2-D fsdp_tp), and Dion's
indifference to the rounding of a rank-deficient gradient (the cause of its difference from one process under
DDP). The 2-process runs are optreg-parallel's equivalence test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
import torch.distributed as dist
from optreg_muon import Dion, Muon, NorMuon
from optreg_muon.functional import matrix as F
from torch import nn

import optreg
from optreg import BuildContext
from optreg.parallel import ParallelismStrategy

FAMILY = ["muon", "normuon", "dion"]


class _StandInTP(ParallelismStrategy):
    """A strategy with a tensor-parallel mesh (a stand-in object: no process group needed)."""

    def mesh(self, role: str) -> Any:
        super().mesh(role)
        return object() if role == "tp" else None


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 4))


@pytest.mark.parametrize("name", FAMILY)
def test_a_tensor_parallel_strategy_builds(name: str) -> None:
    opt = optreg.build_optimizer({"type": name}, _mlp(), context=BuildContext(strategy=_StandInTP()))
    assert {g["algorithm"] for g in opt.param_groups} == {name, "adamw"}


@pytest.mark.parametrize("name", FAMILY)
def test_a_strategy_without_tensor_parallel_builds(name: str) -> None:
    assert optreg.build_optimizer({"type": name}, _mlp(), context=BuildContext(strategy=ParallelismStrategy()))


# ---------------------------------------------------------------- DTensor parameters on a one-rank mesh


@pytest.fixture(scope="module")
def one_rank() -> Iterator[None]:
    """A one-process gloo group (an in-memory store): DTensors and device meshes without torchrun."""
    if dist.is_initialized():
        pytest.skip("a process group is already initialized")
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def _distribute(tensors: list[torch.Tensor], names: tuple[str, ...], placements: list[Any]) -> list[nn.Parameter]:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import distribute_tensor

    mesh = init_device_mesh("cpu", (1,) * len(names), mesh_dim_names=names)
    return [nn.Parameter(distribute_tensor(t.clone(), mesh, placements)) for t in tensors]


def test_a_matrix_sharded_over_a_tp_mesh_is_accepted(one_rank: None) -> None:
    from torch.distributed.tensor import Shard

    weight, bias = _distribute([torch.randn(4, 6), torch.randn(4)], ("tp",), [Shard(0)])
    for cls in (Muon, NorMuon, Dion):
        assert [len(g["params"]) for g in cls([weight, bias]).param_groups] == [1, 1]
    opt = Muon([torch.randn(4, 6, requires_grad=True)])
    opt.add_param_group({"params": [weight]})
    assert len(opt.param_groups) == 2 and opt.param_groups[1]["params"] == [weight]


def _layouts() -> dict[str, tuple[tuple[str, ...], list[Any], list[Any]]]:
    """Each layout: mesh dimension names, the placements of matrices, and those of 1-D params (biases).

    As the strategies lay them out: FSDP / HSDP shard rows; TP shards colwise weights (and their biases) by
    rows, ``Shard(0)``, and rowwise weights by columns, ``Shard(1)`` (their biases replicated); ``fsdp_tp``
    adds FSDP's row shards over ``shard`` on the 2-D ``("shard", "tp")`` mesh.
    """
    from torch.distributed.tensor import Replicate, Shard

    return {
        "fsdp": (("shard",), [Shard(0)], [Shard(0)]),
        "hsdp": (("replicate", "shard"), [Replicate(), Shard(0)], [Replicate(), Shard(0)]),
        "tp_colwise": (("tp",), [Shard(0)], [Shard(0)]),
        "tp_rowwise": (("tp",), [Shard(1)], [Replicate()]),
        "fsdp_tp_colwise": (("shard", "tp"), [Shard(0), Shard(0)], [Shard(0), Shard(0)]),
        "fsdp_tp_rowwise": (("shard", "tp"), [Shard(0), Shard(1)], [Shard(0), Replicate()]),
    }


def _distribute_like(tensors: list[torch.Tensor], layout: str) -> list[nn.Parameter]:
    names, matrix, vector = _layouts()[layout]
    return [_distribute([t], names, matrix if t.ndim >= 2 else vector)[0] for t in tensors]


def _assert_same(a: torch.Tensor, b: torch.Tensor, *, exact: bool, what: str = "param") -> None:
    if exact:
        assert torch.equal(a, b), what
    else:
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, msg=what)


@pytest.mark.parametrize("layout", list(_layouts()))
@pytest.mark.parametrize("cls", [Muon, NorMuon, Dion])
def test_sharded_parameters_step_as_plain_ones_bit_for_bit(one_rank: None, cls: type, layout: str) -> None:
    """The matrix step gathers each DTensor whole and applies its part: the same numbers as plain tensors,
    and every parameter (and its momentum) keeps its mesh and placements. The non-matrix parameters' AdamW
    agrees to float rounding, not bit for bit: a plain tensor takes torch's fused kernel, a DTensor (which that
    kernel refuses beside plain step counters) the per-tensor path, and the two round differently."""
    torch.manual_seed(0)
    shapes = [(5, 6), (6, 5), (5, 6), (4, 2, 3), (1, 5), (5,)]
    start = [torch.randn(s) for s in shapes]
    grads = [[torch.randn(s) for s in shapes] for _ in range(4)]
    names = _layouts()[layout][0]
    plain = [nn.Parameter(t.clone()) for t in start]
    sharded = _distribute_like(start, layout)
    placements = [q.placements for q in sharded]
    options = {"lr": 0.05, "weight_decay": 0.1, "cautious_wd": True}
    opt_plain, opt_sharded = cls(plain, **options), cls(sharded, **options)
    for step_grads in grads:
        for p, q, g in zip(plain, sharded, step_grads):
            p.grad = g.clone()
            q.grad = _distribute_like([g], layout)[0].detach()
        opt_plain.step()
        opt_sharded.step()
    for p, q, where, first in zip(plain, sharded, placements, start):
        assert q.device_mesh.mesh_dim_names == names and q.placements == where
        assert not torch.equal(p.detach(), first)  # the step moved it
        _assert_same(p.detach(), q.detach().full_tensor(), exact=p.ndim >= 2)
    for p, q in zip(plain, sharded):
        assert opt_plain.state[p].keys() == opt_sharded.state[q].keys()
        for key, value in opt_plain.state[p].items():
            other = opt_sharded.state[q][key]
            _assert_same(value, other.full_tensor() if hasattr(other, "full_tensor") else other, exact=p.ndim >= 2,
                         what=key)
    for q, where in zip(sharded, placements):
        if q.ndim >= 2:  # the matrix update's momentum stays sharded like its parameter
            assert opt_sharded.state[q]["momentum_buffer"].placements == where


# ---------------------------------------------------------------- Dion and the rounding of a rank-deficient gradient


def _layernorm_gradients() -> tuple[list[torch.Tensor], list[torch.Tensor], nn.Module]:
    """The gradients of a weight feeding a LayerNorm over 10 steps: on the whole batch (one process) and as
    the mean of the two halves' (what DDP's all-reduce gives). Their rows sum to zero (LayerNorm removes the
    mean), so the matrix has rank < min(rows, cols); the two differ in the last bits only."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.LayerNorm(5))
    whole, halves = [], []
    for step in range(10):
        g = torch.Generator().manual_seed(step)
        x, y = torch.randn(8, 6, generator=g), torch.randn(8, 5, generator=g)
        parts = []
        for rows in (slice(0, 8), slice(0, 4), slice(4, 8)):
            model.zero_grad()
            nn.functional.mse_loss(model(x[rows]), y[rows]).backward()
            parts.append(model[0].weight.grad.clone())
        whole.append(parts[0])
        halves.append((parts[1] + parts[2]) / 2)
    return whole, halves, model


def _dion_run(grads: list[torch.Tensor], start: torch.Tensor) -> torch.Tensor:
    p = nn.Parameter(start.clone())
    opt = Dion([p], lr=0.02)
    for g in grads:
        p.grad = g.clone()
        opt.step()
    return p.detach()


def test_dion_does_not_turn_the_rounding_of_a_rank_deficient_gradient_into_a_step(monkeypatch) -> None:
    whole, halves, model = _layernorm_gradients()
    assert 0 < (whole[0] - halves[0]).abs().max() < 1e-6  # last-bit differences
    assert torch.linalg.svdvals(whole[0])[-1] < 1e-6 * torch.linalg.svdvals(whole[0])[0]  # rank-deficient
    start = model[0].weight.detach()
    assert (_dion_run(whole, start) - _dion_run(halves, start)).abs().max() < 1e-5
    # Without the floor (every column of R normalised, noise included) the two runs part by whole steps:
    monkeypatch.setattr(F, "dion_floor", lambda norms: torch.zeros((), dtype=norms.dtype))
    assert (_dion_run(whole, start) - _dion_run(halves, start)).abs().max() > 1e-3


def test_a_dion_column_below_the_floor_adds_nothing_and_keeps_its_basis_vector() -> None:
    g = torch.diag(torch.tensor([1.0, 0.5, 1e-9]))
    M, Q = torch.zeros(3, 3), torch.eye(3)
    update = F.dion_update_(M, Q, g, rows=3, cols=3, power_iters=1, mu=0.9, eps=1e-8, take=None)
    assert torch.allclose(update.abs(), torch.diag(torch.tensor([1.0, 1.0, 0.0])))
    assert torch.equal(Q[:, 2], torch.tensor([0.0, 0.0, 1.0]))
    assert F.dion_floor(torch.tensor([[2.0, 1.0]])) == pytest.approx(2.0 * torch.finfo(torch.float32).eps ** 0.5)
