"""The CPU side of the default kernel: which blocks are batched, the lean iteration and its halved products.

No timings here: ``bench/muon_step.py`` measures them (docs/muon.md, Benchmark). These tests pin that the
code does what the measured rule says, and that the faster paths compute the same numbers.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from optreg_muon import Muon
from optreg_muon.functional import matrix as F
from optreg_muon.functional import newton_schulz as NS
from optreg_muon.functional.newton_schulz import newton_schulz, resolve_coefficients

CPU = torch.device("cpu")
QUINTIC = resolve_coefficients("muon", 5)
#: bf16 keeps 8 significant bits: one ulp on [1, 2) is 2^-7, and smaller below 1.
BF16_ULP_AT_1 = 2.0**-7


@pytest.mark.parametrize("threads", [1, 2])
def test_the_batching_rule_is_a_size_bound_per_thread_on_cpu_only(threads: int) -> None:
    """On CPU blocks up to BATCH_MAX_ELEMENTS_PER_THREAD (2^17) elements per torch thread are batched, larger ones
    are not; on other devices every block is."""
    assert F.BATCH_MAX_ELEMENTS_PER_THREAD == 2**17
    batched = {1: [(16, 16), (256, 256), (128, 1024), (1024, 128), (2**17, 1)],
               2: [(256, 256), (384, 384), (512, 512), (256, 1024), (2**18, 1)]}
    alone = {1: [(384, 384), (512, 512), (256, 1024), (1024, 1024), (2**17 + 1, 1)],
             2: [(768, 768), (1024, 1024), (1024, 4096), (2**18 + 1, 1)]}
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        assert torch.get_num_threads() == threads
        for shape in batched[threads]:
            assert F.batch_blocks(shape, CPU), shape
        for shape in alone[threads]:
            assert not F.batch_blocks(shape, CPU), shape
            assert F.batch_blocks(shape, torch.device("cuda")), shape  # only the device type is read
        assert F.batch_blocks((3, 1024, 1024), torch.device("meta"))
        assert not F.batch_blocks((3, 1024, 1024), CPU)  # the last two dims decide
    finally:
        torch.set_num_threads(saved)


class _Calls:
    """Records the shape of every Newton-Schulz call ``orthogonalize`` makes (and still computes it)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.shapes: list[tuple[int, ...]] = []
        real = F.newton_schulz

        def spy(G: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
            self.shapes.append(tuple(G.shape))
            return real(G, *args, **kwargs)

        monkeypatch.setattr(F, "newton_schulz", spy)


def test_orthogonalize_batches_exactly_the_blocks_the_rule_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Small blocks of one shape share one call; blocks above the bound get one call each (also inside a 3-D
    param or a block of heads); ``batched=False`` gives every block its own call, ``any_size`` (``foreach =
    true``) batches every shape. Results do not depend on it.
    (The suite runs torch with one thread: conftest.py.)"""
    assert torch.get_num_threads() == 1
    g = torch.Generator().manual_seed(0)
    small = [torch.randn(256, 256, generator=g) for _ in range(2)]
    large = [torch.randn(384, 384, generator=g) for _ in range(2)]
    calls = _Calls(monkeypatch)
    out = F.orthogonalize(small + large, QUINTIC, flatten=True)
    assert sorted(calls.shapes) == sorted([(2, 256, 256), (384, 384), (384, 384)])
    calls.shapes.clear()
    alone = F.orthogonalize(small + large, QUINTIC, flatten=True, batched=False)
    assert sorted(calls.shapes) == sorted([(256, 256)] * 2 + [(384, 384)] * 2)
    calls.shapes.clear()
    F.orthogonalize(small + large, QUINTIC, flatten=True, any_size=True)  # foreach = true: every size batched
    assert sorted(calls.shapes) == sorted([(2, 256, 256), (2, 384, 384)])
    for (a, _), (b, _) in zip(out, alone):
        torch.testing.assert_close(a.float(), b.float(), rtol=0, atol=2 * BF16_ULP_AT_1)

    monkeypatch.setattr(F, "BATCH_MAX_ELEMENTS_PER_THREAD", 8 * 8)  # tiny stand-ins for large blocks
    calls.shapes.clear()
    batch3d = torch.randn(3, 8, 16, generator=g)  # flatten=False: a batch of three 8x16 matrices
    fused = torch.randn(16, 8, generator=g)  # two heads of 8x8 (64 elements: batched with each other)
    F.orthogonalize([batch3d], QUINTIC, flatten=False)
    F.orthogonalize([fused], QUINTIC, flatten=True, num_heads=2)
    F.orthogonalize([batch3d], QUINTIC, flatten=False, any_size=True)
    assert calls.shapes == [(8, 16)] * 3 + [(2, 8, 8), (3, 8, 16)]


def test_muon_steps_unbatched_params_one_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """A param whose blocks are not batched is a step unit of its own (momentum, Newton-Schulz, update before
    the next param's), the batched ones share a unit; the result equals the all-at-once ``foreach=False`` step."""
    monkeypatch.setattr(F, "BATCH_MAX_ELEMENTS_PER_THREAD", 12 * 12)
    g = torch.Generator().manual_seed(1)
    shapes = [(16, 16), (8, 8), (16, 16), (8, 8), (2, 8, 8)]
    params = [torch.nn.Parameter(torch.randn(*s, generator=g)) for s in shapes]
    twins = [torch.nn.Parameter(p.detach().clone()) for p in params]
    opt = Muon(params, lr=0.02, weight_decay=0.1)
    ref = Muon(twins, lr=0.02, weight_decay=0.1, foreach=False)
    group = opt.param_groups[0]
    assert opt._step_units(group, params) == [[0], [2], [1, 3, 4]]
    assert ref._step_units(ref.param_groups[0], twins) == [[0], [1], [2], [3], [4]]
    every_size = Muon(params, foreach=True)  # batches whatever the size: one unit
    assert every_size._step_units(every_size.param_groups[0], params) == [[0, 1, 2, 3, 4]]
    for _ in range(3):
        for p, q in zip(params, twins):
            p.grad = torch.randn(p.shape, generator=g)
            q.grad = p.grad.clone()
        opt.step()
        ref.step()
    for p, q in zip(params, twins):
        assert torch.equal(opt.state[p]["momentum_buffer"], ref.state[q]["momentum_buffer"])
        torch.testing.assert_close(p, q, rtol=0, atol=3 * 0.02 * 2 * BF16_ULP_AT_1)


@pytest.mark.parametrize("rows", [NS.SYMMETRIC_MIN_SIDE, NS.SYMMETRIC_MIN_SIDE + 1])
@pytest.mark.parametrize("batch", [(), (2,)])
def test_halved_symmetric_products_equal_the_whole_ones(rows: int, batch: tuple[int, ...]) -> None:
    """From SYMMETRIC_MIN_SIDE rows, X X^T and b A + c A A are computed by halves and mirrored: exactly symmetric,
    and equal to the whole product up to bf16 rounding (every entry is the same dot product)."""
    g = torch.Generator().manual_seed(2)
    X = (torch.randn(*batch, rows, rows + 40, generator=g) / rows).bfloat16()
    A = torch.empty(*batch, rows, rows, dtype=torch.bfloat16)
    NS._gram_into(X, A)
    assert torch.equal(A, A.mT)
    torch.testing.assert_close(A.float(), (X @ X.mT).float(), rtol=2 * BF16_ULP_AT_1, atol=1e-6)
    B = torch.empty_like(A)
    NS._poly_into(A, -4.7750, 2.0315, B)
    assert torch.equal(B, B.mT)
    whole = (torch.addmm if A.ndim == 2 else torch.baddbmm)(A, A, A, beta=-4.7750, alpha=2.0315)
    torch.testing.assert_close(B.float(), whole.float(), rtol=2 * BF16_ULP_AT_1, atol=1e-5)


@pytest.mark.parametrize("preconditioning", ["frobenius", "aol", "spectral"])
@pytest.mark.parametrize("shape", [(520, 600), (600, 520), (2, 520, 600)])
def test_lean_kernel_equals_the_torch_kernel(shape: tuple[int, ...], preconditioning: str) -> None:
    """The CPU "auto" kernel (buffers reused across steps, halved symmetric products, preconditioning in place)
    computes torch's products: within bf16 rounding of ``backend="torch"`` (2 ulps per entry, one relative in
    Frobenius norm, as for batched products), for wide, tall and batched inputs. It never writes to its input
    unless told it may (``overwrite``)."""
    G = torch.randn(*shape, generator=torch.Generator().manual_seed(3))
    before = G.clone()
    coefficients = resolve_coefficients("turbo_aol", 4) if preconditioning == "aol" else QUINTIC
    lean = newton_schulz(G, coefficients, preconditioning=preconditioning)
    assert torch.equal(G, before)
    ref = newton_schulz(G, coefficients, preconditioning=preconditioning, backend="torch")
    torch.testing.assert_close(lean.float(), ref.float(), rtol=0, atol=2 * BF16_ULP_AT_1)
    assert float((lean.float() - ref.float()).norm() / ref.float().norm()) <= BF16_ULP_AT_1
    scratch = G.bfloat16()
    assert torch.equal(newton_schulz(scratch, coefficients, preconditioning=preconditioning, overwrite=True), lean)
