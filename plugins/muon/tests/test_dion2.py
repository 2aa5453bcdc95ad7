"""Dion2: the paper's update rule written out, the selection and its error feedback, fraction = 1 as Muon, argument
checks, the spec, sharded parameters on one-rank meshes, and fsdp / hsdp / ddp on 2 processes against one."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
import torch
import torch.distributed as dist
from optreg_muon import Dion2, Muon
from optreg_muon.functional import dion2 as D
from optreg_muon.functional.newton_schulz import resolve_coefficients
from torch import nn

import optreg

# ---------------------------------------------------------------- the rule, written out


def _newton_schulz(X: torch.Tensor, coefficients: Any, eps: float) -> torch.Tensor:
    """The quintic iteration on one matrix: Frobenius-normalise (the norm floored at eps, as torch.optim.Muon), then
    X <- a X + b (X X^T) X + c (X X^T)^2 X on the wide orientation."""
    tall = X.shape[0] > X.shape[1]
    if tall:
        X = X.T
    X = X / X.norm().clamp(min=eps)
    for a, b, c in coefficients:
        A = X @ X.T
        X = a * X + (b * A + c * A @ A) @ X
    return X.T if tall else X


def _reference_step(
    X: torch.Tensor, M: torch.Tensor, G: torch.Tensor, *, lr: float, fraction: float, ef_decay: float,
    weight_decay: float, coefficients: Any, eps: float,
) -> None:
    """One Dion2 step on a matrix (in place), as the paper's algorithm reads: accumulate, select the rows (columns
    of a tall matrix) of largest L1 norm, orthogonalize them, decay them in the momentum, update them."""
    M += G
    rows, cols = M.shape
    by_rows = rows <= cols
    Mv, Xv = (M, X) if by_rows else (M.T, X.T)  # views: selecting columns is selecting rows of the transpose
    k = math.ceil(fraction * Mv.shape[0])
    norms = Mv.abs().sum(dim=1)
    chosen = sorted(torch.argsort(norms, descending=True)[:k].tolist())
    orth = _newton_schulz(Mv[chosen].T if not by_rows else Mv[chosen], coefficients, eps)  # the submatrix of M
    orth = orth.T if not by_rows else orth
    Mv[chosen] *= ef_decay
    X *= 1 - lr * weight_decay
    Xv[chosen] -= lr * math.sqrt(max(1.0, rows / cols)) * orth


def test_steps_match_the_rule_written_out() -> None:
    """Five steps on wide, tall, square (two of one shape: batched) and 3-D (flattened) float64 matrices.

    Same arithmetic in float64 on both sides (ns_dtype float64); the optimizer batches the two 3x8 selections
    into one bmm where the reference multiplies each alone, so the results agree to float64 rounding, not bits.
    """
    torch.manual_seed(0)
    shapes = [(6, 10), (12, 5), (8, 8), (8, 8), (4, 3, 5)]
    start = [torch.randn(s, dtype=torch.float64) for s in shapes]
    grads = [[torch.randn(s, dtype=torch.float64) for s in shapes] for _ in range(5)]
    options = {"lr": 0.05, "fraction": 0.3, "ef_decay": 0.9, "weight_decay": 0.1}
    params = [nn.Parameter(t.clone()) for t in start]
    opt = Dion2(params, **options, ns_dtype="float64")
    coefficients = resolve_coefficients("polar_express", 5)
    ref_x = [t.clone().reshape(t.shape[0], -1) for t in start]
    ref_m = [torch.zeros_like(x) for x in ref_x]
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = g.clone()
        opt.step()
        for x, m, g in zip(ref_x, ref_m, step_grads):
            _reference_step(x, m, g.reshape(x.shape), coefficients=coefficients, eps=1e-7, **options)
    for p, x, m in zip(params, ref_x, ref_m):
        torch.testing.assert_close(p.detach().reshape(x.shape), x, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(opt.state[p]["momentum_buffer"].reshape(m.shape), m, rtol=1e-12, atol=1e-12)


def test_maximize_steps_on_the_negated_gradient() -> None:
    torch.manual_seed(1)
    start, grad = torch.randn(6, 9, dtype=torch.float64), torch.randn(6, 9, dtype=torch.float64)
    a, b = nn.Parameter(start.clone()), nn.Parameter(start.clone())
    opt_a = Dion2([a], maximize=True, ns_dtype="float64")
    opt_b = Dion2([b], ns_dtype="float64")
    a.grad, b.grad = grad.clone(), -grad
    opt_a.step()
    opt_b.step()
    assert torch.equal(a.detach(), b.detach())


# ---------------------------------------------------------------- the selection and its error feedback


@pytest.mark.parametrize(("shape", "select_dim", "axis"), [((8, 12), "auto", 0), ((12, 8), "auto", 1),
                                                            ((8, 12), "cols", 1), ((12, 8), "rows", 0)])
def test_one_step_moves_only_the_selected_slices_and_decays_them_in_the_momentum(
    shape: tuple[int, int], select_dim: str, axis: int
) -> None:
    """Rows (of a wide matrix) or columns (of a tall one, or as asked): the k = ceil(0.25 n) of largest L1 norm
    move, each by a unit-norm slice (orthonormal rows of the submatrix) times lr; the momentum keeps the whole
    gradient elsewhere and ef_decay times it on the selected slices."""
    torch.manual_seed(2)
    grad = torch.randn(shape)
    p = nn.Parameter(torch.zeros(shape))
    opt = Dion2([p], lr=1.0, ef_decay=0.8, select_dim=select_dim, adjust_lr="none", ns_dtype="float32", ns_steps=8)
    p.grad = grad.clone()
    opt.step()
    n = shape[axis]
    k = math.ceil(0.25 * n)
    norms = grad.abs().sum(dim=1 - axis)
    chosen = set(torch.topk(norms, k).indices.tolist())
    moved = set((p.detach().abs().sum(dim=1 - axis) > 0).nonzero().flatten().tolist())
    assert moved == chosen
    # The submatrix is k x (other side), with k <= that side: Newton-Schulz makes its k slices orthonormal
    # (8 Polar Express steps converge to float32 rounding).
    slices = p.detach() if axis == 0 else p.detach().T
    sub = -slices[sorted(chosen)]
    torch.testing.assert_close(sub @ sub.T, torch.eye(k), rtol=0, atol=1e-4)
    mask = torch.zeros(n, dtype=torch.bool)
    mask[sorted(chosen)] = True
    mask = mask.unsqueeze(1) if axis == 0 else mask.unsqueeze(0)
    torch.testing.assert_close(opt.state[p]["momentum_buffer"], torch.where(mask, 0.8 * grad, grad))


def test_error_feedback_brings_every_row_in_turn() -> None:
    """With the same gradient every step and rows of nearly equal norm, the unselected rows keep accumulating
    until they outgrow the decayed ones: within 1 / fraction steps every row has been updated."""
    torch.manual_seed(3)
    rows, cols = 8, 16
    grad = torch.randn(rows, cols)
    grad = grad / grad.abs().sum(dim=1, keepdim=True) * torch.linspace(1.0, 1.1, rows).unsqueeze(1)
    p = nn.Parameter(torch.zeros(rows, cols))
    opt = Dion2([p], lr=0.1, fraction=0.25, ef_decay=0.5)
    updated = torch.zeros(rows, dtype=torch.bool)
    for _ in range(4):
        before = p.detach().clone()
        p.grad = grad.clone()
        opt.step()
        step_rows = (p.detach() != before).any(dim=1)
        assert int(step_rows.sum()) == 2  # ceil(0.25 * 8)
        updated |= step_rows
    assert bool(updated.all()), updated


def test_fraction_one_is_muon_without_nesterov() -> None:
    """fraction = 1 orthogonalizes the heavy-ball momentum B_t = G_t + ef_decay B_(t-1); Muon's EMA buffer is
    (1 - momentum) B_t, a scale the Frobenius normalisation removes. Equal up to float32 rounding of the
    normalisation (the inputs differ by that factor) and eps (1e-7 against norms of order 1-10)."""
    torch.manual_seed(4)
    shapes = [(6, 10), (12, 5), (3, 4, 4)]
    start = [torch.randn(s) for s in shapes]
    a = [nn.Parameter(t.clone()) for t in start]
    b = [nn.Parameter(t.clone()) for t in start]
    common = {"lr": 0.05, "weight_decay": 0.1, "ns_dtype": "float32", "ns_coefficients": "polar_express"}
    dion2 = Dion2(a, fraction=1.0, ef_decay=0.9, **common)
    muon = Muon(b, momentum=0.9, nesterov=False, **common)
    for _ in range(4):
        grads = [torch.randn(s) for s in shapes]
        for x, y, g in zip(a, b, grads):
            x.grad, y.grad = g.clone(), g.clone()
        dion2.step()
        muon.step()
    for x, y in zip(a, b):
        torch.testing.assert_close(x.detach(), y.detach(), rtol=1e-5, atol=1e-5)


def test_selection_counts_and_sides() -> None:
    assert [D.num_selected(n, 0.25) for n in (1, 4, 5, 8, 9)] == [1, 1, 2, 2, 3]
    assert D.num_selected(30, 0.1) == 3  # 0.1 * 30 is 3.0000000000000004 in floating point
    assert D.num_selected(7, 1.0) == 7
    assert D.selection_dim(4, 4, "auto") == -2 and D.selection_dim(5, 4, "auto") == -1
    assert D.selection_dim(5, 4, "rows") == -2 and D.selection_dim(4, 5, "cols") == -1


def test_ties_go_to_the_lower_index() -> None:
    """Equal norms: the first slices win, whatever topk would pick, so every process selects alike."""
    M = torch.zeros(6, 10)
    _sub, index = D.select_and_decay_(M, torch.ones(6, 10), flatten=True, fraction=0.5, dim=-2, ef_decay=0.5,
                                      take=None)
    assert index.tolist() == [0, 1, 2]
    assert torch.equal(M[:3], torch.full((3, 10), 0.5)) and torch.equal(M[3:], torch.ones(3, 10))


def test_a_batch_of_matrices_selects_per_matrix() -> None:
    """flatten = False: each matrix of a 3-D parameter selects its own rows."""
    torch.manual_seed(5)
    grad = torch.randn(3, 4, 10)
    p = nn.Parameter(torch.zeros(3, 4, 10))
    opt = Dion2([p], flatten=False, fraction=0.5)
    p.grad = grad.clone()
    opt.step()
    for i in range(3):
        chosen = set(torch.topk(grad[i].abs().sum(dim=1), 2).indices.tolist())
        assert set((p.detach()[i].abs().sum(dim=1) > 0).nonzero().flatten().tolist()) == chosen


# ---------------------------------------------------------------- arguments and the spec


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"fraction": 0.0}, r"fraction must be in \(0, 1\], got 0.0"),
        ({"fraction": 1.5}, r"fraction must be in \(0, 1\], got 1.5"),
        ({"ef_decay": -0.1}, r"ef_decay must be in \[0, 1\], got -0.1"),
        ({"select_dim": "diagonal"}, r"select_dim must be one of"),
        ({"ns_dtype": "float16"}, r"ns_dtype must be one of"),
        ({"preconditioning": "spectal"}, r"preconditioning must be one of"),
        ({"ns_coefficients": "muom"}, r"muom"),
        ({"adjust_lr": "sqrt"}, r"unknown adjust_lr rule"),
        ({"ns_dtype": "float64", "ns_backend": "triton"}, r"float64"),
    ],
)
def test_bad_arguments_are_refused_clearly(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Dion2([nn.Parameter(torch.zeros(4, 6))], **kwargs)


def test_a_bad_group_option_is_refused_before_it_is_added() -> None:
    opt = Dion2([nn.Parameter(torch.zeros(4, 6))])
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\], got 2.0"):
        opt.add_param_group({"params": [nn.Parameter(torch.zeros(3, 3))], "fraction": 2.0})
    assert len(opt.param_groups) == 1


def test_spec_builds_dion2_with_its_options() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 4))
    opt = optreg.build_optimizer(
        {"type": "dion2", "lr": 0.03, "fraction": 0.5, "ef_decay": 0.9, "select_dim": "rows", "adam_lr": 0.01,
         "weight_decay": 0.01, "ns_coefficients": "muon"},
        model,
    )
    assert isinstance(opt, Dion2)
    matrix = next(g for g in opt.param_groups if g["algorithm"] == "dion2")
    assert (matrix["lr"], matrix["fraction"], matrix["ef_decay"], matrix["select_dim"]) == (0.03, 0.5, 0.9, "rows")
    assert {g["algorithm"] for g in opt.param_groups} == {"dion2", "adamw"}
    with pytest.raises(optreg.SpecError, match="fraction"):
        optreg.build_optimizer({"type": "dion2", "fraction": 0.0}, model)


# ---------------------------------------------------------------- sharded parameters on one-rank meshes


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


@pytest.mark.parametrize(("names", "placements"), [(("shard",), "0"), (("tp",), "1"), (("shard", "tp"), "01")])
def test_sharded_parameters_step_as_plain_ones_bit_for_bit(one_rank: None, names: tuple[str, ...],
                                                          placements: str) -> None:
    """FSDP row shards, TP rowwise column shards and the 2-D fsdp_tp layout: each matrix is gathered whole, so
    the selection and the update are the plain tensors' to the bit; the momentum stays sharded."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    torch.manual_seed(6)
    mesh = init_device_mesh("cpu", (1,) * len(names), mesh_dim_names=names)
    where = [Shard(int(d)) for d in placements]
    shapes = [(5, 6), (6, 5), (5, 6), (4, 2, 3), (1, 5)]
    start = [torch.randn(s) for s in shapes]
    plain = [nn.Parameter(t.clone()) for t in start]
    sharded = [nn.Parameter(distribute_tensor(t.clone(), mesh, where)) for t in start]
    options = {"lr": 0.05, "fraction": 0.4, "weight_decay": 0.1, "cautious_wd": True}
    opt_plain, opt_sharded = Dion2(plain, **options), Dion2(sharded, **options)
    for _ in range(3):
        grads = [torch.randn(s) for s in shapes]
        for p, q, g in zip(plain, sharded, grads):
            p.grad = g.clone()
            q.grad = distribute_tensor(g.clone(), mesh, where)
        opt_plain.step()
        opt_sharded.step()
    for p, q in zip(plain, sharded):
        assert q.placements == tuple(where)
        assert torch.equal(p.detach(), q.detach().full_tensor())
        momentum = opt_sharded.state[q]["momentum_buffer"]
        assert momentum.placements == tuple(where)
        assert torch.equal(opt_plain.state[p]["momentum_buffer"], momentum.full_tensor())


# ---------------------------------------------------------------- 2 processes against one


@pytest.mark.distributed
def test_two_processes_equal_one(tmp_path: Any) -> None:
    """dion2 under fsdp (the issue's check, two option sets), hsdp 1x2 and ddp, 2 processes (one torchrun launch)
    against one process on the "matrices" model (12 same-shaped blocks batched, an uneven 5-row and an empty-shard
    1-row matrix).

    The sharded matrices are gathered whole, so the selection and Newton-Schulz see one process's numbers; the
    gradients are averaged over the ranks in another order than one process sums them, hence float32 tolerance.
    """
    pytest.importorskip("optreg_parallel")
    from optreg.testing.distributed import launch, max_difference, run_cases

    optimizers = {
        "default": {"type": "dion2", "adam_lr": 0.01},
        "rows_wd": {"type": "dion2", "fraction": 0.5, "select_dim": "rows", "weight_decay": 0.1,
                    "cautious_wd": True, "ns_dtype": "float32"},
    }
    strategies = {"fsdp": {"type": "fsdp"}, "hsdp": {"type": "hsdp", "replicate": 1, "shard": 2},
                  "ddp": {"type": "ddp"}}
    runs = [("default", "fsdp"), ("rows_wd", "fsdp"), ("default", "hsdp"), ("rows_wd", "ddp")]
    cases = {
        f"{o}-{s}": {"optimizer": optimizers[o], "parallelism": {**strategies[s], "timeout_s": 120},
                     "model": "matrices"}
        for o, s in runs
    }
    two = launch(cases, tmp_path, nproc=2, name="dion2")
    single = {k: {**c, "parallelism": {"type": "single"}} for k, c in cases.items()}
    one = run_cases(single)
    start = run_cases({"start": {**single["default-fsdp"], "stop": 0}})["start"]["params"]  # every case's init
    for key in cases:
        assert "error" not in one[key], one[key].get("traceback")
        assert "error" not in two[key], two[key].get("traceback")
        worst = {n: max_difference(two[key]["params"][n], one[key]["params"][n]) for n in one[key]["params"]}
        assert max(worst.values()) <= 2e-5, f"{key}: {worst}"
        moved = {n: max_difference(one[key]["params"][n], start[n]) for n in start}
        assert min(moved.values()) > 1e-3, f"{key}: a parameter did not train: {moved}"
