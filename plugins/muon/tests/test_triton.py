"""The symmetric Triton kernels, run on CPU under TRITON_INTERPRET=1 (tiny shapes: the interpreter is slow)."""

import os

import pytest
import torch

if not torch.cuda.is_available():
    # Before triton is imported: triton.language reads the flag at import time.
    os.environ.setdefault("TRITON_INTERPRET", "1")

pytest.importorskip("triton", reason="the Triton kernels are an optional extra: pip install 'optreg-muon[triton]'")
pytest.importorskip("numpy", reason="Triton's CPU interpreter needs numpy")

from optreg_muon.functional import triton_ns
from optreg_muon.functional.newton_schulz import newton_schulz, resolve_coefficients


def _device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_sym_gram_matches_matmul(dtype: torch.dtype) -> None:
    """Edge tiles (37 rows, 21 columns, 16-wide tiles) and a transposed, batched view."""
    torch.manual_seed(0)
    Y = torch.randn(37, 21, device=_device()).to(dtype)
    ref = Y.float() @ Y.float().T
    got = triton_ns.sym_gram(Y)
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(got.float(), ref, rtol=tol, atol=tol * ref.abs().max().item())
    assert torch.equal(got, got.T), "the mirrored tiles must equal the computed ones"
    Yb = torch.randn(2, 20, 33, device=_device()).to(dtype).mT  # (2, 33, 20), non-contiguous
    refb = Yb.float() @ Yb.float().mT
    torch.testing.assert_close(triton_ns.sym_gram(Yb).float(), refb, rtol=tol, atol=tol * refb.abs().max().item())


def test_sym_poly_matches_matmul() -> None:
    torch.manual_seed(1)
    X = torch.randn(18, 30, device=_device())
    A = X @ X.T
    got = triton_ns.sym_gram(A, alpha=2.0315, add=A, beta=-4.775)
    torch.testing.assert_close(got, torch.addmm(A, A, A, beta=-4.775, alpha=2.0315), rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("shape", [(40, 24), (24, 40), (2, 20, 20)])
def test_triton_newton_schulz_equals_torch(shape: tuple[int, ...]) -> None:
    torch.manual_seed(2)
    G = torch.randn(*shape, device=_device())
    coefficients = resolve_coefficients("muon", 5)
    for preconditioning in ("frobenius", "aol"):
        got = newton_schulz(G, coefficients, preconditioning=preconditioning, dtype=torch.float32, backend="triton")
        ref = newton_schulz(G, coefficients, preconditioning=preconditioning, dtype=torch.float32, backend="torch")
        torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)
    got16 = newton_schulz(G, coefficients, backend="triton")
    ref16 = newton_schulz(G, coefficients, backend="torch")
    assert got16.dtype == torch.bfloat16
    torch.testing.assert_close(got16.float(), ref16.float(), rtol=0.05, atol=0.03)


def test_triton_unavailable_on_cpu_without_interpreter(monkeypatch) -> None:
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert not triton_ns.available(torch.device("cpu"))
    with pytest.raises(RuntimeError, match="CUDA"):
        newton_schulz(torch.randn(4, 4), resolve_coefficients("muon", 1), backend="triton")


@pytest.mark.gpu
def test_cuda_auto_backend_uses_triton() -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    G = torch.randn(256, 512, device="cuda")
    coefficients = resolve_coefficients("muon", 5)
    got = newton_schulz(G, coefficients)
    ref = newton_schulz(G, coefficients, backend="torch")
    torch.testing.assert_close(got.float(), ref.float(), rtol=0.05, atol=0.03)
